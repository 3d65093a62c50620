/* matmul_backward.c: kernel lab for the backward matmuls of a linear layer, accumulating
 *   dinp (M, K) += dout (M, N) · w (N, K)        ("dinp")
 *   dw   (N, K) += dout (M, N)ᵀ · inp (M, K)     ("dw")
 *   dbias (N)   += Σ_m dout (M, N)               ("dbias")
 * at the GPT-2 124M training shapes (M = B·T = 256). Each variant is validated first (small
 * odd shapes in full with unaligned pointers; the real shapes on sampled elements; 1 vs 2
 * threads bit-identical), then timed on 1 and 2 threads.
 * Variants:
 *   1  naive loops (oracle twin; validated only)
 *   2  OpenBLAS cblas_sgemm (beta = 1) / a plain loop for dbias
 *   4  AVX-512 packed GEMM through strided views: th_mm_avx512_backward (src/model)
 * Build and run: see dev/matmul/Makefile; ./matmul_backward. */
#include "common.h"

#include "model/matmul_avx512.h"

enum { DINP, DW, DBIAS };
static const char *part_name[] = {"dinp", "dw", "dbias"};

static void backward1(int part, float *g, const float *dout, const float *inp, const float *w,
                      int M, int N, int K)
{
    if (part == DINP) {
#pragma omp parallel for
        for (int m = 0; m < M; m++)
            for (int k = 0; k < K; k++) {
                float s = g[(size_t)m * K + k];
                for (int n = 0; n < N; n++) s += dout[(size_t)m * N + n] * w[(size_t)n * K + k];
                g[(size_t)m * K + k] = s;
            }
    } else if (part == DW) {
#pragma omp parallel for
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) {
                float s = g[(size_t)n * K + k];
                for (int m = 0; m < M; m++) s += dout[(size_t)m * N + n] * inp[(size_t)m * K + k];
                g[(size_t)n * K + k] = s;
            }
    } else {
        for (int n = 0; n < N; n++) {
            float s = 0;
            for (int m = 0; m < M; m++) s += dout[(size_t)m * N + n];
            g[n] += s;
        }
    }
}

static void backward2(int part, float *g, const float *dout, const float *inp, const float *w,
                      int M, int N, int K)
{
    if (part == DINP)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dout, N, w, K, 1.0f,
                    g, K);
    else if (part == DW)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, dout, N, inp, K, 1.0f,
                    g, K);
    else /* llm.c's loop, vectorised by gcc over n */
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) g[n] += dout[(size_t)m * N + n];
}

static void backward4(int part, float *g, const float *dout, const float *inp, const float *w,
                      int M, int N, int K)
{
    th_mm_avx512_backward(part == DINP ? g : NULL, part == DW ? g : NULL,
                          part == DBIAS ? g : NULL, dout, inp, w, M, N, K);
}

typedef void (*backward_fn)(int, float *, const float *, const float *, const float *, int, int,
                            int);
static const struct {
    const char *name;
    backward_fn fn;
} variants[] = {{NULL, NULL}, {"naive", backward1}, {"openblas", backward2}, {NULL, NULL},
                {"avx512-packed", backward4}};

static size_t out_len(int part, int M, int N, int K)
{
    return part == DINP ? (size_t)M * K : part == DW ? (size_t)N * K : (size_t)N;
}

/* Exact value of element idx of the gradient (g0 its initial value) in double. */
static double exact_grad(int part, const float *g0, const float *dout, const float *inp,
                         const float *w, int M, int N, int K, size_t idx, double *abs_sum)
{
    double s = g0[idx], a = fabs(g0[idx]);
    if (part == DINP) {
        size_t m = idx / K, k = idx % K;
        for (int n = 0; n < N; n++) {
            double p = (double)dout[m * N + n] * w[(size_t)n * K + k];
            s += p, a += fabs(p);
        }
    } else if (part == DW) {
        size_t n = idx / K, k = idx % K;
        for (int m = 0; m < M; m++) {
            double p = (double)dout[(size_t)m * N + n] * inp[(size_t)m * K + k];
            s += p, a += fabs(p);
        }
    } else {
        for (int m = 0; m < M; m++) s += dout[(size_t)m * N + idx], a += fabs(dout[(size_t)m * N + idx]);
    }
    *abs_sum = a;
    return s;
}

/* Runs variant v for one part on fresh copies of g0; checks `samples` elements (all if 0). */
static int validate(int v, int part, const float *g0, const float *dout, const float *inp,
                    const float *w, int M, int N, int K, int samples, double *worst)
{
    size_t len = out_len(part, M, N, K);
    float *g = xmalloc(len * sizeof(float) + 4), *g2 = xmalloc(len * sizeof(float) + 4);
    float *gu = g + 1; /* unaligned */
    memcpy(gu, g0, len * sizeof(float));
    memcpy(g2, g0, len * sizeof(float));
    set_threads(1);
    variants[v].fn(part, gu, dout, inp, w, M, N, K);
    set_threads(2);
    variants[v].fn(part, g2, dout, inp, w, M, N, K);
    int bad = 0;
    size_t count = samples ? (size_t)samples : len;
    for (size_t s = 0; s < count && !bad; s++) {
        size_t idx = samples ? (s == 0 ? len - 1 : (size_t)(lab_rng % len)) : s;
        lab_rng ^= lab_rng << 13, lab_rng ^= lab_rng >> 7, lab_rng ^= lab_rng << 17;
        double as, ex = exact_grad(part, g0, dout, inp, w, M, N, K, idx, &as);
        char what[64];
        snprintf(what, sizeof what, "%s %s", variants[v].name, part_name[part]);
        bad = check_value(what, (long)idx, gu[idx], ex, as, worst);
    }
    if (!bad && v != 2 && !same_bits(gu, g2, len)) {
        fprintf(stderr, "%s %s: 1-thread and 2-thread results differ\n", variants[v].name,
                part_name[part]);
        bad = 1;
    }
    free(g), free(g2);
    return bad;
}

typedef struct {
    backward_fn fn;
    int part;
    float *g;
    const float *dout, *inp, *w;
    int M, N, K;
} call_ctx;

static void call_once(void *p)
{
    call_ctx *c = p;
    c->fn(c->part, c->g, c->dout, c->inp, c->w, c->M, c->N, c->K);
}

int main(void)
{
    int shapes[][2] = {{2304, 768}, {768, 768}, {3072, 768}, {768, 3072}, {50257, 768}};
    int vlist[] = {2, 4};
    int fails = 0;
    printf("backward, accumulating; avx512 available: %d (dbias: G adds/s vs a plain loop); "
           "best of 5-50 runs; load avg %.2f\n", th_mm_avx512_available(), load_avg());

    int small[][3] = {{1, 1, 1}, {13, 31, 17}, {37, 77, 53}, {25, 65, 300}, {300, 33, 20},
                      {12, 32, 16}, {257, 40, 3}};
    set_threads(2);
    for (size_t s = 0; s < sizeof small / sizeof small[0]; s++) {
        int M = small[s][0], N = small[s][1], K = small[s][2];
        float *dout = rand_array((size_t)M * N + 1), *inp = rand_array((size_t)M * K + 1);
        float *w = rand_array((size_t)N * K + 1);
        for (int part = DINP; part <= DBIAS; part++) {
            float *g0 = rand_array(out_len(part, M, N, K));
            for (int v = 1; v <= 4; v++)
                if (variants[v].fn)
                    fails += validate(v, part, g0, dout + 1, inp + 1, w + 1, M, N, K, 0, NULL);
            free(g0);
        }
        free(dout), free(inp), free(w);
    }
    printf("small odd shapes, unaligned, all elements, tol %.0e·Σ|ab|: %s\n", TOL_REL,
           fails ? "FAIL" : "ok");

    printf("%-6s %-6s %-13s %-15s %9s %9s %7s %9s %7s  %s\n", "part", "M", "NxK", "variant",
           "worst/tol", "1t GF/s", "1t/blas", "2t GF/s", "2t/blas", "1t==2t bits");
    const int M = 256;
    for (int part = DINP; part <= DBIAS; part++)
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            int N = shapes[si][0], K = shapes[si][1];
            float *dout = rand_array((size_t)M * N), *inp = rand_array((size_t)M * K);
            float *w = rand_array((size_t)N * K), *g0 = rand_array(out_len(part, M, N, K));
            float *g = xmalloc(out_len(part, M, N, K) * sizeof(float));
            double flops = part == DBIAS ? (double)M * N : 2.0 * M * N * K, blas_gf[3] = {0};
            for (size_t vi = 0; vi < 2; vi++) {
                int v = vlist[vi];
                double worst = 0;
                int bad = validate(v, part, g0, dout, inp, w, M, N, K, 1000, &worst);
                fails += bad;
                double gf[3] = {0};
                for (int nt = 1; nt <= 2; nt++) {
                    set_threads(nt);
                    memcpy(g, g0, out_len(part, M, N, K) * sizeof(float));
                    call_ctx c = {variants[v].fn, part, g, dout, inp, w, M, N, K};
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
                printf("%-6s %-6d %-13s %-15s %9.3f %9.1f %7.2f %9.1f %7.2f  %s\n", part_name[part],
                       M, nk, part == DBIAS && v == 2 ? "plain-loop" : variants[v].name, worst, gf[1], gf[1] / blas_gf[1], gf[2],
                       gf[2] / blas_gf[2], bad ? "FAIL" : v == 2 ? "(n/a)" : "yes");
                fflush(stdout);
            }
            free(dout), free(inp), free(w), free(g0), free(g);
        }
    printf("%s; load avg %.2f\n", fails ? "VALIDATION FAILED" : "all variants validated", load_avg());
    return fails ? 1 : 0;
}
