/* matmul_avx2.c: the "avx2" compute backend, a hand-written packed fp32 GEMM for CPUs with
 * AVX2 + FMA and no AVX-512 (AMD Zen, older Intel), in fp32 and in bf16 mixed precision.
 * The BLIS-style driver C (+)= A·B of gemm_driver.h (shared with avx512: A and B packed into
 * panels, the reduction in KC steps) serves the forward pass and both backward products
 * through strided views; this file gives it its packers and a 6×16 register-blocked
 * micro-kernel. The decode GEMV is a plain multi-row dot product. Every
 * element of C is one chain of FMAs over the reduction in index order (stored and reloaded
 * between KC steps, which rounds nothing), whoever computes it and however C is blocked, so
 * results are bit-identical for any thread count (DESIGN.md invariant 1).
 *
 * bf16: every operand is rounded to bf16 (round to nearest even) as it is packed, products
 * are summed in fp32. The B panels are stored as 16-bit values, half the bytes of fp32, and
 * widened in registers (one unpack against zero per 8 values): this CPU has no bf16 dot
 * product instruction. The A panels hold the rounded values as fp32 (they are broadcast).
 *
 * With gcc on x86-64 the kernels are compiled for AVX2 + FMA whatever the build's -march (a
 * target pragma), and the CPU is asked at run time (probe_avx2). */
#include <stdint.h>
#include <string.h>

#include "model/compute.h"

#if defined(__x86_64__) && ((defined(__AVX2__) && defined(__FMA__)) || (defined(__GNUC__) && !defined(__clang__)))
#define TH_AVX2_BUILT 1
#endif

#ifdef TH_AVX2_BUILT
#if !defined(__AVX2__) || !defined(__FMA__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define TH_AVX2_TARGET_PUSHED 1
#endif
#include <immintrin.h>

/* ----------------------------------------------------------------------------------------
 * Blocking for this kind of host (Zen 3: 32 KiB L1d, 512 KiB L2 per core, a shared L3). MR×NR
 * is the register tile (12 accumulators of 8 floats); KC is the step of the reduction between
 * two passes through C. An A block (MC×KC, up to 264 KiB) stays in L2 while the B micro-panels
 * (KC×16, 16 KiB; 8 KiB in bf16) pass through L1. The operand whose other side is the smaller
 * one (A when m <= n: the forward's and dinp's B·T rows) is packed once per call, by all
 * threads, into a buffer of at most SHARED_MAX floats (a longer reduction goes in windows);
 * the threads then take chunks of the other side (CHUNKS or more, fewer where chunks of C's
 * columns would be narrower than MIN_PANELS panels; dynamically: a thread that another load
 * preempts is helped by the others) and pack the other operand's block of their chunk
 * themselves, a KC step at a time, prefetching the next step's block into L2 while the kernel runs. */

#define MR 6
#define NR 16
#define KC 256
#define MC_MAX 264
#define NC_MAX 512
#define CHUNKS 16
#define MIN_PANELS 8
#define PF_ROWS 16 /* how far ahead the packing loops prefetch the rows they read */
#define SHARED_MAX ((size_t)1 << 20) /* elements of the shared operand's buffer */
/* the bf16 layout (1): A panels hold the rounded values as fp32, B panels 16-bit values */
#define A_ESZ(bf) sizeof(float)
#define B_ESZ(bf) ((bf) ? sizeof(uint16_t) : sizeof(float))
#define KP(kc, bf) (kc)
#define BF16_LAYOUT() 1
#include "model/gemm_driver.h" /* the driver, compiled here for AVX2 + FMA */

/* bf16 bits of 8 floats, round to nearest even; a NaN stays a (quiet) NaN. */
static inline __m256i bf16_bits8(__m256 v)
{
    __m256i x = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(x, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)), 16);
    __m256i q = _mm256_srli_epi32(_mm256_or_si256(x, _mm256_set1_epi32(0x400000)), 16);
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    return _mm256_blendv_epi8(r, q, nan);
}

/* Writes 8 floats as packed-B values for columns [8h, 8h+8) of row q of a panel. fp32:
 * bp[q*NR + 8h + j]. bf16: 16-bit values in the order the micro-kernel widens them, columns
 * 0-3, 8-11, 4-7, 12-15 (an unpack against zero per 128-bit lane yields 0-7 and 8-15). */
static inline void put_b8(void *bp, int bf16, int q, int h, __m256 v)
{
    if (!bf16) {
        _mm256_store_ps((float *)bp + q * NR + 8 * h, v);
        return;
    }
    uint16_t *d = (uint16_t *)bp + q * NR;
    __m256i p = _mm256_packus_epi32(bf16_bits8(v), _mm256_setzero_si256());
    _mm_storel_epi64((__m128i *)(d + 4 * h), _mm256_castsi256_si128(p));
    _mm_storel_epi64((__m128i *)(d + 8 + 4 * h), _mm256_extracti128_si256(p, 1));
}

/* In-register transpose of 8×8: r[i] holds row i on entry, column i on exit. */
static inline void transpose8(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* 8 floats rounded to bf16 (as the floats they denote) when bf16 is set. */
static inline __m256 opnd8(__m256 v, int bf16)
{
    return bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(bf16_bits8(v), 16)) : v;
}

/* Stores the first six floats of v at d: four, then two (stores never leave a micro-panel,
 * so threads that pack neighbouring panels never write each other's floats). */
static inline void store6(float *d, __m256 v)
{
    _mm_storeu_ps(d, _mm256_castps256_ps128(v));
    _mm_storel_pi((__m64 *)(d + 4), _mm256_extractf128_ps(v, 1));
}

/* Packs A rows [i0, i0+mc) × reduction [q0, q0+kc) as MR-row micro-panels:
 * ap[ir*kc + q*MR + i] = A(i0+ir+i, q0+q), zero past the last row. Full micro-panels of a
 * row-major A (the forward's input, dinp's dout) go through 8×8 register transposes, each
 * column stored as 8 floats whose last two the next column overwrites (AMD's masked stores
 * are slow); dw's column-major A (doutᵀ) is read row by row of dout, contiguous mc floats for
 * each q, six at a time into the mc/6 panels. */
static void pack_a(const gemm_view *g, void *apv, int i0, int mc, int q0, int kc)
{
    float *ap = apv;
    int bf = g->bf16;
    int full = (g->m - i0 < mc ? g->m - i0 : mc) / MR * MR; /* rows in full micro-panels */
    if (g->rsa == 1 && g->csa != 1) {
        for (int q = 0; q < kc; q++) {
            const float *src = g->a + (long)i0 + (long)(q0 + q) * g->csa;
            if (q + PF_ROWS < kc) /* the row PF_ROWS ahead, one line in 16 floats */
                for (int i = 0; i < full; i += 16) _mm_prefetch((const char *)(src + PF_ROWS * g->csa + i), _MM_HINT_T0);
            int ir = 0;
            for (; ir < full && i0 + ir + 8 <= g->m; ir += MR) { /* 8 floats within the row */
                __m256 v = opnd8(_mm256_loadu_ps(src + ir), bf);
                if (q + 1 < kc) _mm256_storeu_ps(ap + (long)ir * kc + q * MR, v);
                else store6(ap + (long)ir * kc + q * MR, v);
            }
            for (; ir < full; ir += MR)
                for (int i = 0; i < MR; i++) ap[(long)ir * kc + q * MR + i] = opnd(src[ir + i], bf);
        }
    }
    for (int ir = 0; ir < mc; ir += MR) {
        int rows = g->m - (i0 + ir) < MR ? g->m - (i0 + ir) : MR;
        float *dst = ap + (long)ir * kc;
        const float *src = g->a + (long)(i0 + ir) * g->rsa + (long)q0 * g->csa;
        int q = 0;
        if (rows == MR && g->rsa == 1 && g->csa != 1) continue; /* packed above */
        if (rows == MR && g->csa == 1) {
            for (; q + 8 <= kc; q += 8) {
                __m256 r[8];
                for (int i = 0; i < MR; i++) r[i] = opnd8(_mm256_loadu_ps(src + (long)i * g->rsa + q), bf);
                r[6] = r[7] = _mm256_setzero_ps();
                transpose8(r);
                for (int k = 0; k < 7; k++) _mm256_storeu_ps(dst + (q + k) * MR, r[k]);
                if (q + 8 < kc) _mm256_storeu_ps(dst + (q + 7) * MR, r[7]);
                else store6(dst + (q + 7) * MR, r[7]);
            }
        }
        for (; q < kc; q++) /* edges and tails */
            for (int i = 0; i < MR; i++)
                dst[q * MR + i] = i < rows ? opnd(src[(long)i * g->rsa + (long)q * g->csa], bf) : 0.0f;
    }
}

/* Packs B reduction [q0, q0+kc) × columns [j0, j0+nc) as 16-column panels of kc rows
 * (fp32: bp[jr*kc + q*NR + j], bf16: the put_b8 order in 16-bit values), zero past the last
 * column. The forward's B is a weight read transposed (rsb == 1): 8×8 register transposes.
 * Contiguous rows (csb == 1: dinp's w, dw's input) are read a row at a time across all the
 * full panels, PF_ROWS rows prefetched ahead. */
static void pack_b(const gemm_view *g, void *bp, int j0, int nc, int q0, int kc)
{
    int bf = g->bf16;
    size_t esz = bf ? sizeof(uint16_t) : sizeof(float);
    int full = (g->n - j0 < nc ? g->n - j0 : nc) / NR * NR; /* columns in full panels */
    if (g->csb == 1) /* contiguous rows: row by row across the panels, so each row is one stream */
        for (int q = 0; q < kc; q++) {
            const float *s = g->b + (long)(q0 + q) * g->rsb + j0;
            if (q + PF_ROWS < kc)
                for (int jr = 0; jr < full; jr += NR) _mm_prefetch((const char *)(s + PF_ROWS * g->rsb + jr), _MM_HINT_T0);
            for (int jr = 0; jr < full; jr += NR) {
                char *dst = (char *)bp + (size_t)jr * kc * esz;
                put_b8(dst, bf, q, 0, _mm256_loadu_ps(s + jr));
                put_b8(dst, bf, q, 1, _mm256_loadu_ps(s + jr + 8));
            }
        }
    for (int jr = 0; jr < nc; jr += NR) {
        int cols = g->n - (j0 + jr) < NR ? g->n - (j0 + jr) : NR;
        char *dst = (char *)bp + (size_t)jr * kc * esz;
        const float *src = g->b + (long)q0 * g->rsb + (long)(j0 + jr) * g->csb;
        if (g->csb == 1 && cols == NR) continue; /* packed above */
        int q = 0;
        if (g->rsb == 1 && cols == NR) {
            for (; q + 8 <= kc; q += 8)
                for (int h = 0; h < 2; h++) {
                    __m256 r[8];
                    for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(src + (long)(8 * h + j) * g->csb + q);
                    transpose8(r);
                    for (int k = 0; k < 8; k++) put_b8(dst, bf, q + k, h, r[k]);
                }
        }
        for (; q < kc; q++) { /* edges and other strides: one row of the panel at a time */
            float row[NR] __attribute__((aligned(32)));
            for (int j = 0; j < NR; j++) row[j] = j < cols ? src[(long)q * g->rsb + (long)j * g->csb] : 0.0f;
            put_b8(dst, bf, q, 0, _mm256_load_ps(row));
            put_b8(dst, bf, q, 1, _mm256_load_ps(row + 8));
        }
    }
}

/* The register tile: C (MR, 16) (+)= ap (kc, MR)-packed · bp (kc, 16). Full tiles only;
 * every accumulator adds its kc products in order, one FMA each. The twelve accumulators are
 * named variables: gcc spills an array of them to the stack on every iteration. */
#define ROW_FMA(i, c0, c1)                                                                         \
    do {                                                                                           \
        __m256 a_ = _mm256_broadcast_ss(ap + (i));                                                 \
        c0 = _mm256_fmadd_ps(a_, b0, c0);                                                          \
        c1 = _mm256_fmadd_ps(a_, b1, c1);                                                          \
    } while (0)
#define TILE_FMA()                                                                                 \
    do {                                                                                           \
        ROW_FMA(0, c00, c01);                                                                      \
        ROW_FMA(1, c10, c11);                                                                      \
        ROW_FMA(2, c20, c21);                                                                      \
        ROW_FMA(3, c30, c31);                                                                      \
        ROW_FMA(4, c40, c41);                                                                      \
        ROW_FMA(5, c50, c51);                                                                      \
    } while (0)

static inline __attribute__((always_inline)) void kernel(int kc, const float *ap, const void *bpv, int bf16,
                                                         float *c, long ldc, int init, const float *bias)
{
    _Static_assert(MR == 6, "the micro-kernel names six rows of accumulators");
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (init) {
        __m256 b0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
        __m256 b1 = bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
        c00 = c10 = c20 = c30 = c40 = c50 = b0;
        c01 = c11 = c21 = c31 = c41 = c51 = b1;
    } else {
        c00 = _mm256_loadu_ps(c), c01 = _mm256_loadu_ps(c + 8);
        c10 = _mm256_loadu_ps(c + ldc), c11 = _mm256_loadu_ps(c + ldc + 8);
        c20 = _mm256_loadu_ps(c + 2 * ldc), c21 = _mm256_loadu_ps(c + 2 * ldc + 8);
        c30 = _mm256_loadu_ps(c + 3 * ldc), c31 = _mm256_loadu_ps(c + 3 * ldc + 8);
        c40 = _mm256_loadu_ps(c + 4 * ldc), c41 = _mm256_loadu_ps(c + 4 * ldc + 8);
        c50 = _mm256_loadu_ps(c + 5 * ldc), c51 = _mm256_loadu_ps(c + 5 * ldc + 8);
    }
    if (bf16) {
        const __m256i *bp = bpv, zero = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int q = 0; q < kc; q++) {
            __m256i v = _mm256_load_si256(bp + q);
            __m256 b0 = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, v));
            __m256 b1 = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, v));
            TILE_FMA();
            ap += MR;
        }
    } else {
        const float *bp = bpv;
#pragma GCC unroll 4
        for (int q = 0; q < kc; q++) {
            __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
            TILE_FMA();
            ap += MR;
            bp += NR;
        }
    }
    _mm256_storeu_ps(c, c00), _mm256_storeu_ps(c + 8, c01);
    _mm256_storeu_ps(c + ldc, c10), _mm256_storeu_ps(c + ldc + 8, c11);
    _mm256_storeu_ps(c + 2 * ldc, c20), _mm256_storeu_ps(c + 2 * ldc + 8, c21);
    _mm256_storeu_ps(c + 3 * ldc, c30), _mm256_storeu_ps(c + 3 * ldc + 8, c31);
    _mm256_storeu_ps(c + 4 * ldc, c40), _mm256_storeu_ps(c + 4 * ldc + 8, c41);
    _mm256_storeu_ps(c + 5 * ldc, c50), _mm256_storeu_ps(c + 5 * ldc + 8, c51);
}
#undef TILE_FMA
#undef ROW_FMA

/* Two instances, so that the precision test is outside the reduction loop. */
static void kernel_f32(int kc, const void *ap, const void *bp, float *c, long ldc, int init, const float *bias)
{
    kernel(kc, ap, bp, 0, c, ldc, init, bias);
}
static void kernel_bf16(int kc, const void *ap, const void *bp, float *c, long ldc, int init, const float *bias)
{
    kernel(kc, ap, bp, 1, c, ldc, init, bias);
}
static gemm_kernel_fn kernel_of(const gemm_view *g) { return g->bf16 ? kernel_bf16 : kernel_f32; }

/* Horizontal sum of 8 lanes in a fixed tree. */
static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* M = 1 (decode): out (N) = w (N, K) · x (K) + bias. Four rows share the loads of x; each
 * row is two accumulators over 16-float steps, a scalar tail in order, then a fixed tree. */
static void gemv(float *out, const float *x, const float *w, const float *bias, int N, int K)
{
    int nb = (N + 3) / 4, k16 = K / 16 * 16;
OMP_FOR
    for (int b = 0; b < nb; b++) {
        int n0 = b * 4, rows = N - n0 < 4 ? N - n0 : 4;
        __m256 s[4][2];
        for (int r = 0; r < 4; r++) s[r][0] = s[r][1] = _mm256_setzero_ps();
        for (int k = 0; k < k16; k += 16) {
            __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
            for (int r = 0; r < rows; r++) {
                const float *wr = w + (size_t)(n0 + r) * K + k;
                s[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(wr), x0, s[r][0]);
                s[r][1] = _mm256_fmadd_ps(_mm256_loadu_ps(wr + 8), x1, s[r][1]);
            }
        }
        for (int r = 0; r < rows; r++) {
            float t = hsum8(_mm256_add_ps(s[r][0], s[r][1]));
            const float *wr = w + (size_t)(n0 + r) * K;
            for (int k = k16; k < K; k++) t += wr[k] * x[k];
            out[n0 + r] = t + (bias ? bias[n0 + r] : 0.0f);
        }
    }
}

#ifdef TH_AVX2_TARGET_PUSHED
#pragma GCC pop_options
#endif
#endif /* TH_AVX2_BUILT */

/* ----------------------------------------------------------------------------------------
 * The backend: compiled with the build's own flags, so the probe runs on any x86-64. Its
 * score (250) puts it above blas (200): as fast or faster on the training shapes measured on
 * an AVX2 EPYC (bench model), and, unlike OpenBLAS, thread-count invariant. */

static int probe_avx2(void)
{
#ifdef TH_AVX2_BUILT
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 250 : 0;
#else
    return 0;
#endif
}

const th_compute_ops th_compute_avx2_ops = {
    .name = "avx2",
    .api_version = TH_COMPUTE_API_VERSION,
    .probe = probe_avx2,
#ifdef TH_AVX2_BUILT
    .needs = "a CPU with AVX2 and FMA",
    .mm_forward = forward_f32,
    .mm_backward = backward_f32,
    .gemv = gemv,
    .mm_forward_bf16 = forward_bf16,
    .mm_backward_bf16 = backward_bf16,
    .mm_backward_set = backward_set_f32,
    .mm_backward_set_bf16 = backward_set_bf16,
#else
    .needs = "an x86-64 build with gcc or -mavx2 -mfma",
#endif
};
