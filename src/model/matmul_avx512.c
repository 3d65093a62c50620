/* matmul_avx512.c: the "avx512" compute backend, hand-written AVX-512 matmuls (see
 * matmul_avx512.h) in fp32 and in bf16 mixed precision. The training products go through
 * the shared BLIS-style driver of gemm_driver.h (the team packs the shared operand, dynamic
 * chunks, B prefetch, windows of the reduction); this file gives it its blocking, packers
 * and an MR×32 micro-kernel. The decode GEMV is a plain multi-row dot product.
 *
 * fp32: every element of C is one chain of FMAs over the reduction in index order (stored
 * and reloaded between KC steps, which rounds nothing), so results are the same bits for any
 * thread count and any blocking (DESIGN.md invariant 1).
 *
 * bf16, two layouts, chosen at run time:
 *  - BF_PAIRS where the CPU has AVX512_BF16: A and B are packed as bf16 pairs along the
 *    reduction (A as 32-bit pairs that are broadcast, B as 16 columns × 2 k per zmm) and
 *    multiplied by vdpbf16ps, two products per lane and instruction. Its arithmetic, found on
 *    this CPU and stated in th_mm_bf16_pair_step (matmul_avx512.h), is not an FMA chain in
 *    index order, so its oracle is th_mm_forward_pairs_bf16 / th_mm_backward_pairs_bf16.
 *  - BF_WIDE elsewhere (AVX-512F only): operands rounded to bf16 as they are packed, stored
 *    and multiplied as fp32 by the fp32 kernel: the same bits as the naive bf16 oracle (a
 *    product of two bf16 values is exact in fp32), at fp32 speed.
 *
 * With gcc on x86-64 the kernels are always compiled for AVX-512F (a target pragma when the
 * build's -march lacks it) and the pair kernel for AVX512_BF16, so one binary carries them;
 * the CPU is asked at run time (cpuid and the OS's zmm state), and a CPU without AVX-512F
 * never executes any of it. */
#include "model/matmul_avx512.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "model/compute.h"

#if defined(__x86_64__) && (defined(__AVX512F__) || (defined(__GNUC__) && !defined(__clang__)))
#define TH_AVX512_BUILT 1
#if defined(__AVX512BF16__) || (defined(__GNUC__) && !defined(__clang__))
#define TH_AVX512BF16_BUILT 1
#endif
#endif

#ifdef TH_AVX512_BUILT
#include <cpuid.h>
#endif

/* vdpbf16ps in use for bf16: -1 until first asked, then 0 or 1 (th_mm_avx512_bf16_dot). */
static _Atomic int dot_state = -1;

/* ----------------------------------------------------------------------------------------
 * The pair oracle (plain C, any CPU). */

/* x with a subnormal value replaced by a zero of its sign (DAZ on an input, FTZ on a result). */
static inline float flush_subnormal(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0) u &= 0x80000000u;
    memcpy(&x, &u, 4);
    return x;
}

float th_mm_bf16_pair_step(float acc, float x0, float y0, float x1, float y1)
{
    /* bf16 products are exact in double, whose exponent range also holds them unrounded */
    double p1 = (double)flush_subnormal(x1) * flush_subnormal(y1);
    double p0 = (double)flush_subnormal(x0) * flush_subnormal(y0);
    float t = flush_subnormal((float)((double)flush_subnormal(acc) + p1));
    return flush_subnormal((float)((double)t + p0));
}

/* Σ over q < len of x(q)·y(q) in pairs (q even, q odd; the odd one of a last lone q is 0),
 * from acc: x(q) = x[q*xs], y(q) = y[q*ys], both rounded to bf16. */
static float pair_dot(float acc, const float *x, long xs, const float *y, long ys, int len)
{
    for (int q = 0; q < len; q += 2) {
        float x0 = th_bf16_round(x[q * xs]), y0 = th_bf16_round(y[q * ys]);
        float x1 = q + 1 < len ? th_bf16_round(x[(q + 1) * xs]) : 0.0f;
        float y1 = q + 1 < len ? th_bf16_round(y[(q + 1) * ys]) : 0.0f;
        acc = th_mm_bf16_pair_step(acc, x0, y0, x1, y1);
    }
    return acc;
}

void th_mm_forward_pairs_bf16(float *out, const float *inp, const float *w, const float *bias, int M, int N, int K)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++)
            out[(size_t)m * N + n] = pair_dot(bias ? bias[n] : 0.0f, inp + (size_t)m * K, 1, w + (size_t)n * K, 1, K);
}

void th_mm_backward_pairs_bf16(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                               const float *w, int M, int N, int K)
{
    for (int m = 0; dinp && m < M; m++)
        for (int k = 0; k < K; k++) /* dinp (m, k) over n */
            dinp[(size_t)m * K + k] = pair_dot(dinp[(size_t)m * K + k], dout + (size_t)m * N, 1, w + k, K, N);
    for (int n = 0; dw && n < N; n++)
        for (int k = 0; k < K; k++) /* dw (n, k) over m */
            dw[(size_t)n * K + k] = pair_dot(dw[(size_t)n * K + k], dout + n, N, inp + k, K, M);
    for (int n = 0; dbias && n < N; n++) { /* fp32, rows in order, then added */
        float s = 0.0f;
        for (int m = 0; m < M; m++) s += dout[(size_t)m * N + n];
        dbias[n] += s;
    }
}

#ifdef TH_AVX512_BUILT
#ifndef __AVX512F__
#pragma GCC push_options
#pragma GCC target("avx512f")
#define TH_AVX512_TARGET_PUSHED 1
#endif
#include <immintrin.h>

/* ----------------------------------------------------------------------------------------
 * Blocking for a 2 MiB L2 and a 48 KiB L1d per core (Zen 5; Intel server cores alike). MR×NR
 * is the register tile (MR·2 accumulators of 16 floats); KC the step of the reduction between
 * two passes through C. An A block (MC×KC, up to 384 KiB in fp32) stays in L2 while the B
 * micro-panels (KC×32, 32 KiB; 16 KiB in bf16 pairs) pass through L1. The split of the work
 * between threads (gemm_driver.h) never changes what any element sums. */

#ifndef TH_MM_AVX512_MR
#define TH_MM_AVX512_MR 12
#endif
#define MR TH_MM_AVX512_MR
#define NR 32
#ifndef TH_MM_AVX512_KC /* the lab may build other KC (even); 512 was not steadily faster on this noisy host */
#define TH_MM_AVX512_KC 256
#endif
#define KC TH_MM_AVX512_KC
#define MC_MAX (MR * 32)
#define NC_MAX 1024
#define CHUNKS 16
#define MIN_PANELS 4
#define PF_ROWS 16 /* how far ahead the packing loops prefetch the rows they read */
#define SHARED_MAX ((size_t)1 << 20) /* elements of the shared operand's buffer */
_Static_assert(MR >= 1 && MR <= 14, "MR·2 accumulators, 2 B vectors and a broadcast must fit 32 zmm registers");

#define BF_WIDE 1  /* bf16 operands stored and multiplied as fp32 */
#define BF_PAIRS 2 /* bf16 pairs along the reduction, vdpbf16ps */
#define A_ESZ(bf) ((bf) == BF_PAIRS ? sizeof(uint16_t) : sizeof(float))
#define B_ESZ(bf) A_ESZ(bf)
#define KP(kc, bf) ((bf) == BF_PAIRS ? ((kc) + 1) / 2 * 2 : (kc))
#define BF16_LAYOUT() (th_mm_avx512_bf16_dot(-1) ? BF_PAIRS : BF_WIDE)
#include "model/gemm_driver.h" /* the driver, compiled here for AVX-512F */

static inline __mmask16 mask_first(int n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

/* bf16 bits of 16 floats in the upper half of each lane (the lower half is garbage), round
 * to nearest even; a NaN stays a (quiet) NaN: th_bf16_round's rule. */
static inline __m512i bf16_hi16(__m512 v)
{
    __m512i x = _mm512_castps_si512(v);
    __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
    __m512i r = _mm512_add_epi32(x, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
    __m512i q = _mm512_or_si512(x, _mm512_set1_epi32(0x400000));
    return _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), r, q);
}

/* 16 floats rounded to bf16 (as the floats they denote) when bf16 is set. */
static inline __m512 opnd16(__m512 v, int bf16)
{
    return bf16 ? _mm512_castsi512_ps(_mm512_and_si512(bf16_hi16(v), _mm512_set1_epi32((int)0xffff0000u))) : v;
}

/* 16 pairs: lane i holds bf16(even[i]) in its low half and bf16(odd[i]) in its high half,
 * the order vdpbf16ps reads a pair in. */
static inline __m512 pairs16(__m512 even, __m512 odd)
{
    __m512i lo = _mm512_srli_epi32(bf16_hi16(even), 16);
    __m512i hi = _mm512_and_si512(bf16_hi16(odd), _mm512_set1_epi32((int)0xffff0000u));
    return _mm512_castsi512_ps(_mm512_or_si512(lo, hi));
}

/* The 16 pairs of 32 consecutive floats lo (0-15) and hi (16-31): lane i = (2i, 2i+1). */
static inline __m512 pairs_of_run(__m512 lo, __m512 hi)
{
    __m256i a = _mm512_cvtepi32_epi16(_mm512_srli_epi32(bf16_hi16(lo), 16));
    __m256i b = _mm512_cvtepi32_epi16(_mm512_srli_epi32(bf16_hi16(hi), 16));
    return _mm512_castsi512_ps(_mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1));
}

/* In-register transpose of a 16×16 block: r[i] holds row i on entry, column i on exit. */
static inline void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
        __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
}

/* Packs the source S, whose row r (r < rows ≤ 16) is contiguous along the reduction at
 * src + r*ss, transposed: dst[o*lds + r] for o < len (fp32, rounded to bf16 for BF_WIDE) or
 * o < (len+1)/2 (BF_PAIRS: pair o of row r, a lone last value paired with 0); lanes rows to
 * width-1 (width ≤ 16) are zero. 32-bit values are stored, width per o. */
static void pack_transposed(void *dstv, long lds, int width, const float *src, long ss, int rows, int len, int bf)
{
    float *dst = dstv;
    int per = bf == BF_PAIRS ? 32 : 16, outs = bf == BF_PAIRS ? (len + 1) / 2 : len;
    __mmask16 wmask = mask_first(width);
    for (int q0 = 0; q0 < len; q0 += per) {
        __mmask16 m0 = mask_first(len - q0), m1 = mask_first(len - q0 - 16);
        __m512 r[16];
        for (int i = 0; i < 16; i++) {
            const float *s = src + i * ss + q0;
            if (i >= rows) r[i] = _mm512_setzero_ps();
            else if (bf == BF_PAIRS) r[i] = pairs_of_run(_mm512_maskz_loadu_ps(m0, s), _mm512_maskz_loadu_ps(m1, s + 16));
            else r[i] = opnd16(_mm512_maskz_loadu_ps(m0, s), bf);
        }
        transpose16(r);
        int o0 = q0 / per * 16, on = min_i(16, outs - o0);
        for (int o = 0; o < on; o++) _mm512_mask_storeu_ps(dst + (long)(o0 + o) * lds, wmask, r[o]);
    }
}

/* Packs the source S whose reduction index q is the row src + q*rs, contiguous across the
 * panel's lanes r < cols (≤ 32): dst[o*lds + r] for o < len (fp32, rounded for BF_WIDE) or
 * o < (len+1)/2 (BF_PAIRS: rows 2o and 2o+1 paired, a lone last row paired with 0); lanes
 * cols to width-1 (width ≤ 32) are zero. Rows PF_ROWS ahead are prefetched. */
static void pack_rows(void *dstv, long lds, int width, const float *src, long rs, int cols, int len, int bf)
{
    float *dst = dstv;
    __mmask16 c0 = mask_first(cols), c1 = mask_first(cols - 16), w0 = mask_first(width), w1 = mask_first(width - 16);
    int step = bf == BF_PAIRS ? 2 : 1;
    for (int q = 0; q < len; q += step) {
        const float *s = src + (long)q * rs;
        if (q + PF_ROWS < len) _mm_prefetch((const char *)(s + PF_ROWS * rs), _MM_HINT_T0);
        float *d = dst + (long)(q / step) * lds;
        for (int h = 0; h < 2 && (h == 0 || width > 16); h++) {
            __mmask16 cm = h ? c1 : c0;
            __m512 v = _mm512_maskz_loadu_ps(cm, s + 16 * h);
            if (bf == BF_PAIRS)
                v = pairs16(v, q + 1 < len ? _mm512_maskz_loadu_ps(cm, s + rs + 16 * h) : _mm512_setzero_ps());
            else
                v = opnd16(v, bf);
            _mm512_mask_storeu_ps(d + 16 * h, h ? w1 : w0, v);
        }
    }
}

/* The views have a unit stride on one side of each operand: A is row-major (the forward's
 * input, dinp's dout: csa == 1) or dw's doutᵀ (rsa == 1); B is wᵀ (rsb == 1) or row-major
 * (dinp's w, dw's input: csb == 1). */
static void pack_a(const gemm_view *g, void *ap, int i0, int mc, int q0, int kc)
{
    size_t panel = (size_t)MR * KP(kc, g->bf16) * A_ESZ(g->bf16);
    for (int ir = 0; ir < mc; ir += MR) {
        int rows = min_i(g->m - (i0 + ir), MR);
        char *dst = (char *)ap + (size_t)(ir / MR) * panel;
        const float *src = g->a + (long)(i0 + ir) * g->rsa + (long)q0 * g->csa;
        if (g->csa == 1) pack_transposed(dst, MR, MR, src, g->rsa, rows, kc, g->bf16);
        else pack_rows(dst, MR, MR, src, g->csa, rows, kc, g->bf16);
    }
}

static void pack_b(const gemm_view *g, void *bp, int j0, int nc, int q0, int kc)
{
    size_t panel = (size_t)NR * KP(kc, g->bf16) * B_ESZ(g->bf16);
    for (int jr = 0; jr < nc; jr += NR) {
        int cols = g->n - (j0 + jr);
        float *dst = (float *)((char *)bp + (size_t)(jr / NR) * panel);
        const float *src = g->b + (long)q0 * g->rsb + (long)(j0 + jr) * g->csb;
        if (g->csb == 1) {
            pack_rows(dst, NR, NR, src, g->rsb, min_i(cols, NR), kc, g->bf16);
            continue;
        }
        for (int h = 0; h < NR; h += 16)
            pack_transposed(dst + h, NR, 16, src + (long)h * g->csb, g->csb, cols - h < 0 ? 0 : min_i(cols - h, 16), kc,
                            g->bf16);
    }
}

/* The accumulators of a tile: from the bias (or +0) when init, else from C. */
static inline __attribute__((always_inline)) void acc_load(__m512 acc[MR][2], const float *c, long ldc, int init,
                                                           const float *bias)
{
    __m512 b0 = init && bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
    __m512 b1 = init && bias ? _mm512_loadu_ps(bias + 16) : _mm512_setzero_ps();
    for (int i = 0; i < MR; i++) {
        acc[i][0] = init ? b0 : _mm512_loadu_ps(c + i * ldc);
        acc[i][1] = init ? b1 : _mm512_loadu_ps(c + i * ldc + 16);
    }
}

static inline __attribute__((always_inline)) void acc_store(__m512 acc[MR][2], float *c, long ldc)
{
    for (int i = 0; i < MR; i++) {
        _mm512_storeu_ps(c + i * ldc, acc[i][0]);
        _mm512_storeu_ps(c + i * ldc + 16, acc[i][1]);
    }
}

/* The fp32 register tile (fp32 and BF_WIDE): C (MR, 32) (+)= ap (kc, MR)-packed · bp (kc, 32),
 * one FMA per product, in order. */
static void kernel_f32(int kc, const void *apv, const void *bpv, float *c, long ldc, int init, const float *bias)
{
    const float *ap = apv, *bp = bpv;
    __m512 acc[MR][2];
    acc_load(acc, c, ldc, init, bias);
    for (int q = 0; q < kc; q++, ap += MR, bp += NR) {
        __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
        for (int i = 0; i < MR; i++) {
            __m512 a = _mm512_set1_ps(ap[i]);
            acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
        }
    }
    acc_store(acc, c, ldc);
}

#ifdef TH_AVX512BF16_BUILT
#ifndef __AVX512BF16__
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bf16")
#define TH_AVX512BF16_TARGET_PUSHED 1
#endif
/* The BF_PAIRS register tile: per pair of the reduction, one vdpbf16ps per accumulator (a
 * broadcast A pair against 16 columns' pairs), th_mm_bf16_pair_step's arithmetic. The pairs
 * are moved as floats (vbroadcastss, vmovaps): bits only, no arithmetic. */
static void kernel_pairs(int kc, const void *apv, const void *bpv, float *c, long ldc, int init, const float *bias)
{
    const float *ap = apv, *bp = bpv;
    __m512 acc[MR][2];
    acc_load(acc, c, ldc, init, bias);
    for (int q = 0; q < (kc + 1) / 2; q++, ap += MR, bp += NR) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(bp), b1 = (__m512bh)_mm512_load_si512(bp + 16);
        for (int i = 0; i < MR; i++) {
            __m512bh a = (__m512bh)_mm512_castps_si512(_mm512_set1_ps(ap[i]));
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], a, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], a, b1);
        }
    }
    acc_store(acc, c, ldc);
}
#ifdef TH_AVX512BF16_TARGET_PUSHED
#pragma GCC pop_options
#endif
#endif

static gemm_kernel_fn kernel_of(const gemm_view *g)
{
#ifdef TH_AVX512BF16_BUILT
    if (g->bf16 == BF_PAIRS) return kernel_pairs;
#endif
    return kernel_f32;
}

/* One row of the GEMV: two accumulators over 32-float steps, a masked tail, then a fixed
 * reduction tree. Used for every row so that the row blocking cannot change a result. */
static inline float dot_row(const float *w, const float *x, int K)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int k = 0;
    for (; k + 32 <= K; k += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k), _mm512_loadu_ps(x + k), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k + 16), _mm512_loadu_ps(x + k + 16), s1);
    }
    if (k < K) {
        __mmask16 m0 = mask_first(K - k), m1 = mask_first(K - k - 16);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, w + k), _mm512_maskz_loadu_ps(m0, x + k), s0);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, w + k + 16),
                             _mm512_maskz_loadu_ps(m1, x + k + 16), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/* ----------------------------------------------------------------------------------------
 * The public entry points (matmul_avx512.h). */

void th_mm_avx512_forward(float *out, const float *inp, const float *w, const float *bias, int M, int N, int K)
{
    forward_f32(out, inp, w, bias, M, N, K);
}

void th_mm_avx512_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                           const float *w, int M, int N, int K)
{
    backward_f32(dinp, dw, dbias, dout, inp, w, M, N, K);
}

/* One row at a time: a thread's rows are contiguous (static schedule), so it reads its part
 * of W as one sequential stream, which the hardware prefetchers follow; four rows side by
 * side (sharing x's loads) were four short streams that they did not. bench/lowp_kernels f32,
 * 2026-12-02 Zen 4 VM, two interleaved runs, share of the read bandwidth at 1 / 2 threads:
 * 47-51 / 74-75 % with four rows, 95 / 99-100 % with one (82-87 / 92 % with a software
 * prefetch 4 KiB ahead, so none). Same bits: each row is dot_row either way. */
void th_mm_avx512_gemv(float *out, const float *x, const float *w, const float *bias, int N,
                       int K)
{
OMP_FOR
    for (int n = 0; n < N; n++) out[n] = dot_row(w + (size_t)n * K, x, K) + (bias ? bias[n] : 0.0f);
}

#ifdef TH_AVX512_TARGET_PUSHED
#pragma GCC pop_options
#endif
#endif /* TH_AVX512_BUILT */

/* ----------------------------------------------------------------------------------------
 * The backend: compiled with the build's own flags, so the probes run on any x86-64. */

int th_mm_avx512_available(void)
{
#ifdef TH_AVX512_BUILT
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
#else
    return 0;
#endif
}

int th_mm_avx512_bf16_dot_available(void)
{
#ifdef TH_AVX512BF16_BUILT
    unsigned a, b, c, d, xcr0_lo, xcr0_hi;
    if (!th_mm_avx512_available() || !__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5))) return 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0; /* OSXSAVE: xgetbv may run */
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    return (xcr0_lo & 0xe6u) == 0xe6u; /* the OS saves xmm, ymm, opmask and all of zmm0-31 */
#else
    return 0;
#endif
}

int th_mm_avx512_bf16_dot(int want)
{
    int s = atomic_load(&dot_state);
    if (want >= 0 || s < 0) {
        s = th_mm_avx512_bf16_dot_available() && want != 0;
        atomic_store(&dot_state, s);
    }
    return s;
}

static int probe_avx512(void) { return th_mm_avx512_available() ? 300 : 0; }

const th_compute_ops th_compute_avx512_ops = {
    .name = "avx512",
    .api_version = TH_COMPUTE_API_VERSION,
    .probe = probe_avx512,
#ifdef TH_AVX512_BUILT
    .needs = "a CPU with AVX-512F",
    .mm_forward = forward_f32,
    .mm_backward = backward_f32,
    .gemv = th_mm_avx512_gemv,
    .mm_forward_bf16 = forward_bf16,
    .mm_backward_bf16 = backward_bf16,
    .mm_backward_set = backward_set_f32,
    .mm_backward_set_bf16 = backward_set_bf16,
#else
    .needs = "an x86-64 build with gcc or -mavx512f",
#endif
};
