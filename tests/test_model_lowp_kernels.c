/* test_model_lowp_kernels.c: the decode matvec kernels of the low-precision weights, bit for
 * bit. Every kernel this CPU runs (AVX2, AVX-512) against its naive twin (lowp_gemv_ref with
 * the kernel's lanes, which sums in the same order) for K that are odd, not multiples of 8
 * or 16, or q8 block counts odd or not multiples of 8 or 16, and row counts that leave a
 * partial group of eight (or four); the same bytes at 1, 2 and 3 threads; each vector
 * activation quantizer against ggml's reference, ties included; lowp_mm's dispatch against
 * the naive path. */
#include <stdint.h>

#include "model/lowp.h"
#include "test_util.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static float frand(uint64_t *s) { /* xorshift64, uniform in [-1, 1) */
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return (float)((*s >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

static void set_threads(int n) {
#ifdef _OPENMP
    omp_set_num_threads(n);
#else
    (void)n;
#endif
}

/* One weight of N x K: the twin vs kernel kn, with and without bias, at 1, 2 and 3
 * threads, and from a row offset; failures counted by CHECK. */
static void check_shape(const lowp_kernel *kn, th_dtype dt, int N, int K, uint64_t *s) {
    float *wf = th_alloc(sizeof(float) * (size_t)N * K), *x = th_alloc(sizeof(float) * K);
    float *bias = th_alloc(sizeof(float) * N), *ref = th_alloc(sizeof(float) * N), *got = th_alloc(sizeof(float) * N);
    lowp_q8_block *xq = th_alloc(sizeof(lowp_q8_block) * (K / LOWP_QK + 1));
    lowp_weight w;
    for (int i = 0; i < N * K; i++) wf[i] = frand(s) * 0.1f;
    for (int k = 0; k < K; k++) x[k] = frand(s) * (k % 5 == 0 ? 8.0f : 1.0f);
    for (int n = 0; n < N; n++) bias[n] = frand(s);
    if (lowp_pack(&w, dt, wf, N, K) != TH_OK) {
        CHECK(0, "%s %dx%d: pack\n", th_dtype_name(dt), N, K);
        goto done;
    }
    if (dt == TH_DTYPE_Q8) lowp_quantize_q8(xq, x, K);
    for (int withb = 0; withb < 2; withb++) {
        const float *b = withb ? bias : NULL;
        set_threads(2);
        lowp_gemv_ref(ref, &w, 0, x, xq, b, N, kn->lanes);
        for (int t = 1; t <= 3; t++) {
            set_threads(t);
            memset(got, 0xff, sizeof(float) * N);
            kn->gemv(got, &w, 0, x, xq, b, N);
            int off = 0;
            for (int n = 0; n < N; n++) off += memcmp(&got[n], &ref[n], sizeof(float)) != 0;
            CHECK(off == 0, "%s %s %dx%d bias %d threads %d: differs from its twin in %d rows (row 0: %.9g vs %.9g)\n",
                  kn->name, th_dtype_name(dt), N, K, withb, t, off, got[0], ref[0]);
        }
        set_threads(2);
        if (N > 3) { /* rows from an offset: the rows themselves, not their place in a group */
            kn->gemv(got, &w, 3, x, xq, b ? b + 3 : NULL, N - 3);
            CHECK(memcmp(got, ref + 3, sizeof(float) * (N - 3)) == 0, "%s %s %dx%d: row0 3\n", kn->name,
                  th_dtype_name(dt), N, K);
        }
    }
    lowp_weight_free(&w);
done:
    th_free(xq);
    th_free(got);
    th_free(ref);
    th_free(bias);
    th_free(x);
    th_free(wf);
}

static const char *const kernel_names[] = {"avx2", "avx512"};

static void test_gemv_bitwise(void) {
    uint64_t s = 12345;
    const int k16[] = {1, 7, 8, 9, 15, 16, 17, 100, 768, 777, 3072};
    const int kq8[] = {32, 64, 96, 224, 256, 288, 544, 768, 3072}; /* 1, 2, 3, 7, 8, 9, 17, 24, 96 blocks */
    const int ns[] = {1, 3, 4, 5, 7, 8, 9, 13, 16, 17, 67}; /* partial and whole groups of 4 and 8 rows */
    for (int ki = 0; ki < 2; ki++) {
        const lowp_kernel *k16k = lowp_kernel_by_name(kernel_names[ki], TH_DTYPE_F16);
        const lowp_kernel *kq8k = lowp_kernel_by_name(kernel_names[ki], TH_DTYPE_Q8);
        printf("kernel %s: bf16/f16 %s, q8 %s\n", kernel_names[ki], k16k ? "checked" : "not on this CPU",
               kq8k ? "checked" : "not on this CPU");
        for (int ni = 0; ni < (int)(sizeof ns / sizeof ns[0]); ni++) {
            for (int j = 0; k16k && j < (int)(sizeof k16 / sizeof k16[0]); j++) {
                check_shape(k16k, TH_DTYPE_BF16, ns[ni], k16[j], &s);
                check_shape(k16k, TH_DTYPE_F16, ns[ni], k16[j], &s);
            }
            for (int j = 0; kq8k && j < (int)(sizeof kq8 / sizeof kq8[0]); j++) check_shape(kq8k, TH_DTYPE_Q8, ns[ni], kq8[j], &s);
        }
    }
}

/* The vector quantizers write ggml's bytes: random rows, exact halves (roundf takes them away
 * from zero), values just below a half, a zero block (d = 0), tiny values (a subnormal d). */
static void test_quantize(void) {
    enum { NB = 64, K = NB * LOWP_QK };
    float x[K];
    lowp_q8_block a[NB], b[NB];
    uint64_t s = 99;
    for (int k = 0; k < K; k++) x[k] = frand(&s) * (k < K / 2 ? 1.0f : 300.0f);
    /* block 0: amax 127, so d = 1 and x · (1/d) = x exactly: ties at every .5 */
    for (int i = 0; i < LOWP_QK; i++) x[i] = (float)(i - 16) + 0.5f;
    x[31] = 127.0f;
    x[30] = -0.5f;
    x[29] = 0.49999997f;
    x[28] = -126.5f;
    for (int i = 0; i < LOWP_QK; i++) x[LOWP_QK + i] = 0.0f;                            /* block 1: zeros */
    for (int i = 0; i < LOWP_QK; i++) x[2 * LOWP_QK + i] = (float)(i - 7) * 1e-5f;      /* block 2: a subnormal d */
    for (int i = 0; i < LOWP_QK; i++) x[3 * LOWP_QK + i] = i % 2 ? -1000.0f : 999.75f; /* block 3 */
    lowp_quantize_q8(a, x, K);
    for (int ki = 0; ki < 2; ki++) {
        const lowp_kernel *kn = lowp_kernel_by_name(kernel_names[ki], TH_DTYPE_Q8);
        if (!kn) continue;
        memset(b, 0x55, sizeof b);
        kn->quantize(b, x, K);
        int off = 0;
        for (int j = 0; j < NB; j++) off += memcmp(&a[j], &b[j], sizeof a[j]) != 0;
        CHECK(off == 0, "%s quantizer differs from the reference in %d of %d blocks\n", kn->name, off, NB);
        CHECK(memcmp(&a[0], &b[0], sizeof a[0]) == 0, "%s quantizer ties: q %d %d %d\n", kn->name, b[0].qs[0],
              b[0].qs[15], b[0].qs[30]);
    }
    CHECK(a[0].d == 0x3c00 && a[0].qs[0] == -16 && a[0].qs[15] == -1 && a[0].qs[16] == 1 && a[0].qs[30] == -1 &&
              a[0].qs[29] == 0 && a[0].qs[28] == -127,
          "ties away from zero: d %04x q %d %d %d %d %d %d\n", a[0].d, a[0].qs[0], a[0].qs[15], a[0].qs[16], a[0].qs[30],
          a[0].qs[29], a[0].qs[28]);
}

/* lowp_mm at M = 1 through the dispatch (the fastest quantizer and kernel) against the naive twins. */
static void test_mm_dispatch(void) {
    enum { N = 37, K = 768 };
    uint64_t s = 5;
    float *wf = th_alloc(sizeof(float) * N * K), x[K], bias[N], a[N], b[N];
    lowp_q8_block xq[K / LOWP_QK];
    for (int i = 0; i < N * K; i++) wf[i] = frand(&s) * 0.05f;
    for (int k = 0; k < K; k++) x[k] = frand(&s);
    for (int n = 0; n < N; n++) bias[n] = frand(&s);
    const th_dtype dts[3] = {TH_DTYPE_BF16, TH_DTYPE_F16, TH_DTYPE_Q8};
    for (int d = 0; d < 3; d++) {
        lowp_weight w;
        CHECK(lowp_pack(&w, dts[d], wf, N, K) == TH_OK, "pack\n");
        lowp_force_naive(1);
        lowp_mm(a, x, &w, 0, bias, 1, N, NULL, xq);
        lowp_force_naive(0);
        lowp_mm(b, x, &w, 0, bias, 1, N, NULL, xq);
        CHECK(memcmp(a, b, sizeof a) == 0, "%s: lowp_mm (%s) differs from the naive path\n", th_dtype_name(dts[d]),
              lowp_kernel_name(dts[d]));
        lowp_weight_free(&w);
    }
    th_free(wf);
}

/* lowp_dequant_row of an f16 row (the f16 prefill path, widened by th_f16_widen: F16C where
 * the CPU has it) gives lowp_f16_to_f32's very floats for every half but the NaNs (zeros,
 * subnormals, infinities, both signs), at row lengths that leave a tail of 0 .. 7. */
static void test_f16_rows(void) {
    enum { N = 65536 };
    static uint16_t h[N];
    static float got[N];
    int n = 0;
    for (uint32_t v = 0; v < N; v++)
        if (((v >> 10) & 0x1f) != 0x1f || (v & 0x3ff) == 0) h[n++] = (uint16_t)v;
    for (int len = n - 7; len <= n; len++) {
        lowp_weight w = {.dtype = TH_DTYPE_F16, .rows = 1, .K = len, .row_bytes = (size_t)len * 2, .data = (uint8_t *)h};
        lowp_dequant_row(got, &w, 0);
        int off = 0;
        for (int i = 0; i < len; i++) {
            float want = lowp_f16_to_f32(h[i]);
            off += memcmp(&got[i], &want, sizeof want) != 0;
        }
        CHECK(off == 0, "f16 rows of %d: %d halves widened unlike lowp_f16_to_f32\n", len, off);
    }
}

int main(void) {
    printf("low-precision kernels: bf16/f16 %s, q8 %s\n", lowp_kernel_name(TH_DTYPE_F16), lowp_kernel_name(TH_DTYPE_Q8));
    test_gemv_bitwise();
    test_quantize();
    test_mm_dispatch();
    test_f16_rows();
    return test_summary();
}
