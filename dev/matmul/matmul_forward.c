/* matmul_forward.c: kernel lab for the forward matmul of a linear layer,
 *   out (M, N) = inp (M, K) · w (N, K)ᵀ + bias (N),
 * at the GPT-2 124M shapes (training M = 256, prefill M = 128). Every variant is first
 * validated (small odd shapes in full, unaligned; the real shapes on sampled elements; and
 * bit-identical results on 1 and 2 threads), then timed on 1 and 2 threads.
 * Variants:
 *   1  naive loops (the oracle twin; validated only, too slow to time)
 *   2  OpenBLAS cblas_sgemm (out prefilled with bias, beta = 1)
 *   3  AVX-512 dot products along K, no packing: 4 rows × 6 weight rows of accumulators,
 *      one horizontal sum per output
 *   4  AVX-512 packed GEMM, MR×32 micro-kernel: th_mm_avx512_forward (src/model)
 * Build and run: see dev/matmul/Makefile; ./matmul_forward [variant]. */
#include "common.h"

#include <immintrin.h>

#include "model/matmul_avx512.h"

/* ---------------------------------------------------------------------------------------- */
/* variant 1: naive */

static void forward1(float *out, const float *inp, const float *w, const float *bias, int M,
                     int N, int K)
{
#pragma omp parallel for
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float s = bias ? bias[n] : 0.0f;
            for (int k = 0; k < K; k++) s += inp[(size_t)m * K + k] * w[(size_t)n * K + k];
            out[(size_t)m * N + n] = s;
        }
}

/* variant 2: OpenBLAS */

static void forward2(float *out, const float *inp, const float *w, const float *bias, int M,
                     int N, int K)
{
    for (int m = 0; m < M; m++) {
        if (bias)
            memcpy(out + (size_t)m * N, bias, (size_t)N * sizeof(float));
        else
            memset(out + (size_t)m * N, 0, (size_t)N * sizeof(float));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, inp, K, w, K, 1.0f, out,
                N);
}

/* variant 3: register-blocked dot products, RM rows of inp × RN rows of w */

#define RM 4
#define RN 6

static void forward3(float *out, const float *inp, const float *w, const float *bias, int M,
                     int N, int K)
{
    int tm = (M + RM - 1) / RM, tn = (N + RN - 1) / RN;
    __mmask16 tail = (__mmask16)((1u << (K % 16)) - 1u);
#pragma omp parallel for schedule(static)
    for (long t = 0; t < (long)tm * tn; t++) {
        int m0 = (int)(t % tm) * RM, n0 = (int)(t / tm) * RN;
        const float *a[RM], *b[RN];
        for (int i = 0; i < RM; i++) a[i] = inp + (size_t)(m0 + i < M ? m0 + i : M - 1) * K;
        for (int j = 0; j < RN; j++) b[j] = w + (size_t)(n0 + j < N ? n0 + j : N - 1) * K;
        __m512 acc[RM][RN];
        for (int i = 0; i < RM; i++)
            for (int j = 0; j < RN; j++) acc[i][j] = _mm512_setzero_ps();
        int k = 0;
        for (; k + 16 <= K; k += 16) {
            __m512 bv[RN];
            for (int j = 0; j < RN; j++) bv[j] = _mm512_loadu_ps(b[j] + k);
            for (int i = 0; i < RM; i++) {
                __m512 av = _mm512_loadu_ps(a[i] + k);
                for (int j = 0; j < RN; j++) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
            }
        }
        if (k < K) {
            __m512 bv[RN];
            for (int j = 0; j < RN; j++) bv[j] = _mm512_maskz_loadu_ps(tail, b[j] + k);
            for (int i = 0; i < RM; i++) {
                __m512 av = _mm512_maskz_loadu_ps(tail, a[i] + k);
                for (int j = 0; j < RN; j++) acc[i][j] = _mm512_fmadd_ps(av, bv[j], acc[i][j]);
            }
        }
        for (int i = 0; i < RM && m0 + i < M; i++)
            for (int j = 0; j < RN && n0 + j < N; j++)
                out[(size_t)(m0 + i) * N + n0 + j] =
                    _mm512_reduce_add_ps(acc[i][j]) + (bias ? bias[n0 + j] : 0.0f);
    }
}

/* variant 4: production */

static void forward4(float *out, const float *inp, const float *w, const float *bias, int M,
                     int N, int K)
{
    th_mm_avx512_forward(out, inp, w, bias, M, N, K);
}

typedef void (*forward_fn)(float *, const float *, const float *, const float *, int, int, int);
static const struct {
    const char *name;
    forward_fn fn;
} variants[] = {
    {NULL, NULL},
    {"naive", forward1},
    {"openblas", forward2},
    {"avx512-dot4x6", forward3},
    {"avx512-packed", forward4},
};
#define NVAR 4

/* ---------------------------------------------------------------------------------------- */
/* validation */

/* The exact value of out[m][n] in double, and Σ|inp·w| for the tolerance. */
static double exact_out(const float *inp, const float *w, const float *bias, int K, int m, int n,
                        double *abs_sum)
{
    double s = bias ? bias[n] : 0.0, a = bias ? fabs(bias[n]) : 0.0;
    for (int k = 0; k < K; k++) {
        double p = (double)inp[(size_t)m * K + k] * w[(size_t)n * K + k];
        s += p;
        a += fabs(p);
    }
    *abs_sum = a;
    return s;
}

/* Full check on a small shape with pointers offset by one float (unaligned). */
static int validate_small(int v, int M, int N, int K, int with_bias)
{
    float *inp0 = rand_array((size_t)M * K + 1), *w0 = rand_array((size_t)N * K + 1);
    float *b0 = rand_array((size_t)N + 1), *out0 = xmalloc(((size_t)M * N + 1) * sizeof(float));
    float *inp = inp0 + 1, *w = w0 + 1, *bias = with_bias ? b0 + 1 : NULL, *out = out0 + 1;
    for (size_t i = 0; i < (size_t)M * N; i++) out[i] = NAN; /* must be overwritten */
    variants[v].fn(out, inp, w, bias, M, N, K);
    int bad = 0;
    for (int m = 0; m < M && !bad; m++)
        for (int n = 0; n < N && !bad; n++) {
            double as, ex = exact_out(inp, w, bias, K, m, n, &as);
            bad = check_value(variants[v].name, (long)m * N + n, out[(size_t)m * N + n], ex, as,
                              NULL);
        }
    free(inp0), free(w0), free(b0), free(out0);
    return bad;
}

/* Sampled check on a real shape plus the bit-identity of 1 vs 2 threads. */
static int validate_big(int v, const float *inp, const float *w, const float *bias, float *out,
                        float *out2, int M, int N, int K, double *worst)
{
    set_threads(1);
    variants[v].fn(out, inp, w, bias, M, N, K);
    set_threads(2);
    variants[v].fn(out2, inp, w, bias, M, N, K);
    int bad = 0;
    for (int s = 0; s < 2000 && !bad; s++) {
        int m = s < 4 ? (s & 1) * (M - 1) : (int)(lab_rng % (unsigned)M);
        lab_rng ^= lab_rng << 13, lab_rng ^= lab_rng >> 7, lab_rng ^= lab_rng << 17;
        int n = s < 4 ? (s >> 1) * (N - 1) : (int)(lab_rng % (unsigned)N);
        double as, ex = exact_out(inp, w, bias, K, m, n, &as);
        bad = check_value(variants[v].name, (long)m * N + n, out[(size_t)m * N + n], ex, as, worst);
    }
    if (!bad && v != 2 && !same_bits(out, out2, (size_t)M * N)) {
        fprintf(stderr, "%s: 1-thread and 2-thread results differ\n", variants[v].name);
        bad = 1;
    }
    return bad;
}

/* ---------------------------------------------------------------------------------------- */
/* timing */

typedef struct {
    forward_fn fn;
    float *out;
    const float *inp, *w, *bias;
    int M, N, K;
} call_ctx;

static void call_once(void *p)
{
    call_ctx *c = p;
    c->fn(c->out, c->inp, c->w, c->bias, c->M, c->N, c->K);
}

int main(int argc, char **argv)
{
    int only = argc > 1 ? atoi(argv[1]) : 0;
    int shapes[][2] = {{2304, 768}, {768, 768}, {3072, 768}, {768, 3072}, {50257, 768}};
    int Ms[] = {256, 128};
    printf("forward out(M,N) = inp(M,K)·w(N,K)ᵀ + b; avx512 available: %d, MR build: %s; "
           "best of 5-50 runs; load avg %.2f\n", th_mm_avx512_available(), MR_NAME, load_avg());

    /* 1. small odd shapes, every element, unaligned */
    int small[][3] = {{1, 1, 1}, {1, 50, 33}, {13, 31, 17}, {37, 77, 53}, {25, 65, 300},
                      {100, 33, 257}, {12, 32, 16}, {24, 64, 512}};
    int fails = 0;
    set_threads(2);
    for (int v = 1; v <= NVAR; v++) {
        if (only && v != only && v != 2) continue;
        for (size_t s = 0; s < sizeof small / sizeof small[0]; s++)
            for (int b = 0; b < 2; b++) fails += validate_small(v, small[s][0], small[s][1], small[s][2], b);
    }
    printf("small odd shapes, unaligned, all elements, tol %.0e·Σ|ab|: %s\n", TOL_REL,
           fails ? "FAIL" : "ok");

    printf("%-6s %-13s %-15s %9s %9s %7s %9s %7s  %s\n", "M", "NxK", "variant", "worst/tol",
           "1t GF/s", "1t/blas", "2t GF/s", "2t/blas", "1t==2t bits");
    for (size_t mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            int M = Ms[mi], N = shapes[si][0], K = shapes[si][1];
            float *inp = rand_array((size_t)M * K), *w = rand_array((size_t)N * K);
            float *bias = rand_array((size_t)N);
            float *out = xmalloc((size_t)M * N * sizeof(float));
            float *out2 = xmalloc((size_t)M * N * sizeof(float));
            double flops = 2.0 * M * N * K, blas_gf[3] = {0, 0, 0};
            for (int v = 2; v <= NVAR; v++) {
                if (only && v != only && v != 2) continue;
                double worst = 0;
                int bad = validate_big(v, inp, w, bias, out, out2, M, N, K, &worst);
                fails += bad;
                double gf[3] = {0, 0, 0};
                for (int nt = 1; nt <= 2; nt++) {
                    set_threads(nt);
                    call_ctx c = {variants[v].fn, out, inp, w, bias, M, N, K};
                    double t0 = now_s();
                    call_once(&c);
                    double once = now_s() - t0;
                    int reps = once > 0 ? (int)(1.0 / once) : 50;
                    reps = reps < 5 ? 5 : reps > 50 ? 50 : reps;
                    gf[nt] = flops / time_best(call_once, &c, reps, NULL) * 1e-9;
                    if (v == 2) blas_gf[nt] = gf[nt];
                }
                char nk[32];
                snprintf(nk, sizeof nk, "%dx%d", N, K);
                printf("%-6d %-13s %-15s %9.3f %9.1f %7.2f %9.1f %7.2f  %s\n", M, nk,
                       variants[v].name, worst, gf[1], gf[1] / blas_gf[1], gf[2],
                       gf[2] / blas_gf[2], bad ? "FAIL" : v == 2 ? "(n/a)" : "yes");
                fflush(stdout);
            }
            free(inp), free(w), free(bias), free(out), free(out2);
        }
    printf("%s; load avg %.2f\n", fails ? "VALIDATION FAILED" : "all variants validated", load_avg());
    return fails ? 1 : 0;
}
