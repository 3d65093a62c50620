/* matmul_gemv.c: kernel lab for decode (M = 1), out (N) = w (N, K) · x (K) + bias (N). This is
 * memory-bound: all 124M weights (~500 MB) are streamed once per token, so we first measure the
 * machine's read bandwidth (a streaming AVX-512 sum over 512 MB on 1 and 2 threads), then each
 * GEMV variant in GB/s of weights read, per shape (cycling through copies >= 1 GB so nothing is
 * served from cache) and for a whole GPT-2 124M token (12 layers × 4 matmuls + the lm_head).
 * Every variant is validated first (all rows vs a double sum; odd shapes unaligned; 1 vs 2
 * threads bit-identical). Variants:
 *   1  naive loops (oracle twin; validated only)
 *   2  OpenBLAS cblas_sgemv
 *   3  AVX-512, one row at a time, 4 accumulators
 *   4  AVX-512, 4 rows at a time sharing the x loads, 2 accumulators each: th_mm_avx512_gemv
 *   5  variant 4 plus software prefetch of the next 4 rows
 * Build and run: see dev/matmul/Makefile; ./matmul_gemv. */
#include "common.h"

#include <immintrin.h>

#include "model/matmul_avx512.h"

static void gemv1(float *out, const float *x, const float *w, const float *bias, int N, int K)
{
#pragma omp parallel for
    for (int n = 0; n < N; n++) {
        float s = bias ? bias[n] : 0.0f;
        for (int k = 0; k < K; k++) s += w[(size_t)n * K + k] * x[k];
        out[n] = s;
    }
}

static void gemv2(float *out, const float *x, const float *w, const float *bias, int N, int K)
{
    if (bias)
        memcpy(out, bias, (size_t)N * sizeof(float));
    else
        memset(out, 0, (size_t)N * sizeof(float));
    cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, w, K, x, 1, 1.0f, out, 1);
}

static __mmask16 mask_first(int n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

static void gemv3(float *out, const float *x, const float *w, const float *bias, int N, int K)
{
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *row = w + (size_t)n * K;
        __m512 s[4];
        for (int a = 0; a < 4; a++) s[a] = _mm512_setzero_ps();
        int k = 0;
        for (; k + 64 <= K; k += 64)
            for (int a = 0; a < 4; a++)
                s[a] = _mm512_fmadd_ps(_mm512_loadu_ps(row + k + 16 * a),
                                       _mm512_loadu_ps(x + k + 16 * a), s[a]);
        for (int a = 0; k < K; k += 16, a++) {
            __mmask16 m = mask_first(K - k);
            s[a] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, row + k), _mm512_maskz_loadu_ps(m, x + k),
                                   s[a]);
        }
        __m512 t = _mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3]));
        out[n] = _mm512_reduce_add_ps(t) + (bias ? bias[n] : 0.0f);
    }
}

static void gemv4(float *out, const float *x, const float *w, const float *bias, int N, int K)
{
    th_mm_avx512_gemv(out, x, w, bias, N, K);
}

/* variant 5: as 4, prefetching the next block of 4 rows while reading this one */
static void gemv5(float *out, const float *x, const float *w, const float *bias, int N, int K)
{
    int nb = (N + 3) / 4;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < nb; b++) {
        int n0 = b * 4, rows = N - n0 < 4 ? N - n0 : 4;
        const float *wr[4], *pf[4];
        for (int r = 0; r < 4; r++) {
            wr[r] = w + (size_t)(n0 + (r < rows ? r : rows - 1)) * K;
            int nn = n0 + 4 + r < N ? n0 + 4 + r : N - 1;
            pf[r] = w + (size_t)nn * K;
        }
        __m512 s[4][2];
        for (int r = 0; r < 4; r++) s[r][0] = s[r][1] = _mm512_setzero_ps();
        int k = 0;
        for (; k + 32 <= K; k += 32) {
            __m512 x0 = _mm512_loadu_ps(x + k), x1 = _mm512_loadu_ps(x + k + 16);
            for (int r = 0; r < 4; r++) {
                _mm_prefetch((const char *)(pf[r] + k), _MM_HINT_T0);
                _mm_prefetch((const char *)(pf[r] + k + 16), _MM_HINT_T0);
                s[r][0] = _mm512_fmadd_ps(_mm512_loadu_ps(wr[r] + k), x0, s[r][0]);
                s[r][1] = _mm512_fmadd_ps(_mm512_loadu_ps(wr[r] + k + 16), x1, s[r][1]);
            }
        }
        if (k < K) {
            __mmask16 m0 = mask_first(K - k), m1 = mask_first(K - k - 16);
            __m512 x0 = _mm512_maskz_loadu_ps(m0, x + k), x1 = _mm512_maskz_loadu_ps(m1, x + k + 16);
            for (int r = 0; r < 4; r++) {
                s[r][0] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, wr[r] + k), x0, s[r][0]);
                s[r][1] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, wr[r] + k + 16), x1, s[r][1]);
            }
        }
        for (int r = 0; r < rows; r++)
            out[n0 + r] = _mm512_reduce_add_ps(_mm512_add_ps(s[r][0], s[r][1])) +
                          (bias ? bias[n0 + r] : 0.0f);
    }
}

typedef void (*gemv_fn)(float *, const float *, const float *, const float *, int, int);
static const struct {
    const char *name;
    gemv_fn fn;
} variants[] = {{NULL, NULL},           {"naive", gemv1},        {"openblas", gemv2},
                {"avx512-1row", gemv3}, {"avx512-4rows", gemv4}, {"avx512-4rows-pf", gemv5}};
#define NVAR 5

static int validate(int v, int N, int K, int offset)
{
    float *w0 = rand_array((size_t)N * K + 1), *x0 = rand_array((size_t)K + 1);
    float *b0 = rand_array((size_t)N + 1), *o1 = xmalloc((size_t)(N + 1) * 4), *o2 = xmalloc((size_t)(N + 1) * 4);
    const float *w = w0 + offset, *x = x0 + offset, *bias = b0 + offset;
    float *out = o1 + offset;
    set_threads(1);
    variants[v].fn(out, x, w, bias, N, K);
    set_threads(2);
    variants[v].fn(o2, x, w, bias, N, K);
    int bad = 0;
    for (int n = 0; n < N && !bad; n++) {
        double s = bias[n], a = fabs(bias[n]);
        for (int k = 0; k < K; k++) {
            double p = (double)w[(size_t)n * K + k] * x[k];
            s += p, a += fabs(p);
        }
        bad = check_value(variants[v].name, n, out[n], s, a, NULL);
    }
    if (!bad && v != 2 && !same_bits(out, o2, (size_t)N)) {
        fprintf(stderr, "%s: 1-thread and 2-thread results differ (N=%d K=%d)\n", variants[v].name, N, K);
        bad = 1;
    }
    free(w0), free(x0), free(b0), free(o1), free(o2);
    return bad;
}

/* ---------------------------------------------------------------------------------------- */
/* memory read bandwidth: sum of a 512 MB buffer, split between threads */

static float *bw_buf;
static size_t bw_len;
static volatile float bw_sink;

static void stream_sum(void *unused)
{
    (void)unused;
    float total = 0.0f;
#pragma omp parallel reduction(+ : total)
    {
        int nt = omp_get_num_threads(), t = omp_get_thread_num();
        size_t chunk = bw_len / (size_t)nt / 64 * 64, lo = chunk * (size_t)t;
        __m512 s[4];
        for (int a = 0; a < 4; a++) s[a] = _mm512_setzero_ps();
        for (size_t i = lo; i < lo + chunk; i += 64)
            for (int a = 0; a < 4; a++) s[a] = _mm512_add_ps(s[a], _mm512_load_ps(bw_buf + i + 16 * a));
        total += _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3])));
    }
    bw_sink = total;
}

/* ---------------------------------------------------------------------------------------- */
/* a set of weight matrices run back to back (one token, or copies of one shape) */

typedef struct {
    gemv_fn fn;
    int count;
    float **w, **out, **bias;
    int *N, *K;
    const float *x;
} pass_ctx;

static void pass_once(void *p)
{
    pass_ctx *c = p;
    for (int i = 0; i < c->count; i++) c->fn(c->out[i], c->x, c->w[i], c->bias[i], c->N[i], c->K[i]);
}

static pass_ctx make_pass(int count, const int *N, const int *K)
{
    pass_ctx c = {0};
    c.count = count;
    c.w = xmalloc(sizeof(float *) * count), c.out = xmalloc(sizeof(float *) * count);
    c.bias = xmalloc(sizeof(float *) * count);
    c.N = xmalloc(sizeof(int) * count), c.K = xmalloc(sizeof(int) * count);
    for (int i = 0; i < count; i++) {
        c.N[i] = N[i], c.K[i] = K[i];
        /* offset by one float: real weight rows are not 64-byte aligned either */
        c.w[i] = rand_array((size_t)N[i] * K[i] + 1) + 1;
        c.bias[i] = rand_array((size_t)N[i]);
        c.out[i] = xmalloc((size_t)N[i] * sizeof(float));
    }
    c.x = rand_array(3072);
    return c;
}

static void free_pass(pass_ctx *c)
{
    for (int i = 0; i < c->count; i++) free(c->w[i] - 1), free(c->bias[i]), free(c->out[i]);
    free(c->w), free(c->out), free(c->bias), free(c->N), free(c->K), free((void *)c->x);
}

static double pass_bytes(const pass_ctx *c)
{
    double b = 0;
    for (int i = 0; i < c->count; i++) b += 4.0 * c->N[i] * c->K[i];
    return b;
}

int main(void)
{
    int fails = 0;
    printf("decode GEMV out(N) = w(N,K)·x(K) + b; avx512 available: %d; best of 7 runs; "
           "load avg %.2f\n", th_mm_avx512_available(), load_avg());

    int small[][2] = {{1, 1}, {3, 17}, {5, 33}, {7, 100}, {33, 768}, {13, 3072}, {50257, 768},
                      {2304, 768}, {768, 3072}};
    for (int v = 1; v <= NVAR; v++)
        for (size_t s = 0; s < sizeof small / sizeof small[0]; s++)
            for (int off = 0; off < 2; off++) fails += validate(v, small[s][0], small[s][1], off);
    printf("validation (all rows, aligned and unaligned, tol %.0e·Σ|wx|, 1t==2t bits): %s\n",
           TOL_REL, fails ? "FAIL" : "ok");

    bw_len = (size_t)512 << 18; /* 512 MB of floats */
    bw_buf = rand_array(bw_len);
    printf("\nread bandwidth, streaming AVX-512 sum over %zu MB:\n", bw_len * 4 >> 20);
    for (int nt = 1; nt <= 2; nt++) {
        set_threads(nt);
        double t = time_best(stream_sum, NULL, 9, NULL);
        printf("  %d thread%s: %6.1f GB/s\n", nt, nt > 1 ? "s" : " ", bw_len * 4.0 / t * 1e-9);
    }
    free(bw_buf);

    printf("\n%-16s %-16s %9s %7s %9s %7s\n", "weights", "variant", "1t GB/s", "1t/blas", "2t GB/s",
           "2t/blas");
    int shapes[][2] = {{2304, 768}, {768, 768}, {3072, 768}, {768, 3072}, {50257, 768}, {0, 0}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int Ns[512], Ks[512], count;
        char label[32];
        if (shapes[si][0]) { /* copies of one shape, >= 1 GB in all */
            double bytes = 4.0 * shapes[si][0] * shapes[si][1];
            count = (int)ceil(1e9 / bytes);
            for (int i = 0; i < count; i++) Ns[i] = shapes[si][0], Ks[i] = shapes[si][1];
            snprintf(label, sizeof label, "%dx%d", shapes[si][0], shapes[si][1]);
        } else { /* one GPT-2 124M token: 12 × (qkv, attn proj, fc, fc proj) + lm_head */
            count = 0;
            for (int l = 0; l < 12; l++) {
                int n[4] = {2304, 768, 3072, 768}, k[4] = {768, 768, 768, 3072};
                for (int j = 0; j < 4; j++) Ns[count] = n[j], Ks[count++] = k[j];
            }
            Ns[count] = 50257, Ks[count++] = 768;
            snprintf(label, sizeof label, "gpt2-token");
        }
        pass_ctx c = make_pass(count, Ns, Ks);
        double blas[3] = {0};
        for (int v = 2; v <= NVAR; v++) {
            double gbs[3] = {0};
            c.fn = variants[v].fn;
            for (int nt = 1; nt <= 2; nt++) {
                set_threads(nt);
                double t = time_best(pass_once, &c, 7, NULL);
                gbs[nt] = pass_bytes(&c) / t * 1e-9;
                if (v == 2) blas[nt] = gbs[nt];
                if (!shapes[si][0] && nt == 2) snprintf(label, sizeof label, "gpt2-token");
            }
            printf("%-16s %-16s %9.1f %7.2f %9.1f %7.2f", label, variants[v].name, gbs[1],
                   gbs[1] / blas[1], gbs[2], gbs[2] / blas[2]);
            if (!shapes[si][0])
                printf("   tok/s 1t %.1f 2t %.1f (matmuls only)", gbs[1] * 1e9 / pass_bytes(&c),
                       gbs[2] * 1e9 / pass_bytes(&c));
            printf("\n");
            fflush(stdout);
        }
        free_pass(&c);
    }
    printf("%s; load avg %.2f\n", fails ? "VALIDATION FAILED" : "all variants validated", load_avg());
    return fails ? 1 : 0;
}
