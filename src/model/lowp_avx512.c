/* lowp_avx512.c: the AVX-512 kernels of the low-precision weights, for hosts whose cpuid
 * reports AVX-512 F, BW, VL and DQ (and VNNI for q8): bf16 widened to f32 by a 16-bit shift
 * and f16 by vcvtph2ps, sixteen at a time, multiplied by FMA into sixteen lanes; q8_0 rows
 * against int8 activation blocks two blocks a register with vpdpbusd (the signs moved onto
 * the weights so the unsigned operand is |x|, shared by the rows of a group): an exact int32
 * sum of four products a lane, times the blocks' scale product by one FMA; an activation
 * quantizer that writes ggml's bytes. Compiled with target attributes, called only after
 * cpuid says the CPU has the features. A row's sum order depends on K alone (sixteen lanes,
 * then a fixed tree), never on the thread count; lowp_gemv_ref(…, 16) follows it, bit for
 * bit. The AVX2 kernels (lowp_avx2.c) stay for every other x86-64 host. */
#include <cpuid.h>
#include <immintrin.h>
#include <stdatomic.h>

#include "model/lowp.h"

/* cpuid leaf 7 (sub-leaf 0): ebx bits 16 (F), 17 (DQ), 30 (BW), 31 (VL); ecx bit 11 (VNNI).
 * The OS must also save the zmm and opmask state: xgetbv's XCR0 bits 1, 2, 5, 6 and 7. */
static int cpu_avx512(int need_vnni) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE)) return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0xe6u) != 0xe6u) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const unsigned fbw = (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31);
    if ((b & fbw) != fbw) return 0;
    return !need_vnni || (c & (1u << 11));
}

/* Each asked once (cpuid traps to the hypervisor on a VM); racing first callers store the
 * same value. AVX2, FMA and F16C are required too: the tails reuse their scalar forms. */
int lowp_avx512_usable(void) {
    static _Atomic int known = -1;
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (k < 0) {
        k = lowp_avx2_usable() && cpu_avx512(0);
        atomic_store_explicit(&known, k, memory_order_relaxed);
    }
    return k;
}

int lowp_avx512_vnni_usable(void) {
    static _Atomic int known = -1;
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (k < 0) {
        k = lowp_avx512_usable() && cpu_avx512(1);
        atomic_store_explicit(&known, k, memory_order_relaxed);
    }
    return k;
}

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define TGT_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

/* Rows a call reads at once, and how far ahead it prefetches (-D overrides each to retune).
 * One row at a time: a thread then reads its rows as one sequential stream (a thread's rows
 * are contiguous), which the hardware prefetchers follow, where eight rows read side by side
 * are eight short streams that they do not. The result is the same either way: each row has
 * its own accumulators and its own fixed order; only the sharing of x's loads between rows
 * (and q8's |x| and sign mask) is given up. From bench/lowp_kernels, 1.25 GiB arena, best of
 * 3, two interleaved runs, 2026-12-02, Zen 4 VM (share of the read bandwidth of the same run):
 *   bf16, 1 / 2 threads: 8 rows 44-52 % / 50-73 %; 1 row 73-90 % / 69-98 %
 *   f16:                 8 rows 49-51 % / 47-67 %; 1 row 74-84 % / 79-94 %
 *   q8:  4 rows 32-33 % / 37-48 %; 1 row 65-83 % / 73-85 %; 2 rows 36-38 % / 35-38 %
 * Prefetch: bf16/f16 bytes ahead in the row (with one row, ahead in the stream), q8 blocks
 * ahead; 0 turns it off, and it is off by default: with one row, two more interleaved runs without it against 4 KiB / 120 blocks
 * (4,080 bytes) ahead gave f16 87-90 % against 53-57 % at one thread, bf16 85-87 % against
 * 79-81 %, q8 74-76 % against 65-74 % (two threads: within noise). With eight rows, a
 * prefetch of the next row group had beaten 2 KiB ahead in the row (41-46 % against 37-40 %,
 * bf16, one thread); on the Zen 5 VM before, q8 at four rows streamed 63, 67, 93, 91 and 57 % at
 * 48, 96, 192, 320 and 0 blocks. */
#ifndef PF16_512
#define PF16_512 0
#endif
#ifndef Q8_PF_512
#define Q8_PF_512 0
#endif
#define ROWS_MAX 8
#ifndef ROWS16_512
#define ROWS16_512 1
#endif
#ifndef ROWS_Q8_512
#define ROWS_Q8_512 1
#endif

/* The sixteen lanes summed: lane l + lane l+8, then the AVX2 kernels' eight-lane tree
 * ((0+4)+(2+6))+((1+5)+(3+7)); lowp_gemv_ref sums in this order. */
TGT static inline float hsum16(__m512 v) {
    __m256 h = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Sixteen weights from h (lanes past the mask zero) widened to f32, exactly. */
TGT static inline __m512 load16(const uint16_t *h, __mmask16 m, int bf16) {
    __m256i raw = _mm256_maskz_loadu_epi16(m, h);
    if (bf16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
    return _mm512_cvtph_ps(raw);
}

/* Rows row .. row+nr-1 (nr <= ROWS16_512) of a bf16 (bf16 = 1) or f16 weight: weight k goes
 * to lane k mod 16 by one FMA, the last partial sixteen by masked loads and a masked FMA (so
 * the other lanes are not touched). Rows past nr repeat row 0 (read, never stored). */
TGT static inline __attribute__((always_inline)) void rows16(float *out, const lowp_weight *w, int row,
                                                             const float *x, const float *bias, int nr,
                                                             const int bf16) {
    int K = w->K, K16 = K & ~15;
    const uint16_t *h[ROWS_MAX];
    __m512 acc[ROWS_MAX];
#pragma GCC unroll 8
    for (int j = 0; j < ROWS16_512; j++) {
        h[j] = (const uint16_t *)(w->data + (size_t)(row + (j < nr ? j : 0)) * w->row_bytes);
        acc[j] = _mm512_setzero_ps();
    }
    for (int k = 0; k < K16; k += 16) {
#if PF16_512 > 0
        if ((k & 31) == 0) {
#pragma GCC unroll 8
            for (int j = 0; j < ROWS16_512; j++) _mm_prefetch((const char *)(h[j] + k) + PF16_512, _MM_HINT_T0);
        }
#endif
        __m512 xv = _mm512_loadu_ps(x + k);
#pragma GCC unroll 8
        for (int j = 0; j < ROWS16_512; j++) acc[j] = _mm512_fmadd_ps(load16(h[j] + k, 0xffff, bf16), xv, acc[j]);
    }
    if (K16 < K) {
        __mmask16 m = (__mmask16)((1u << (K - K16)) - 1);
        __m512 xv = _mm512_maskz_loadu_ps(m, x + K16);
#pragma GCC unroll 8
        for (int j = 0; j < ROWS16_512; j++) acc[j] = _mm512_mask3_fmadd_ps(load16(h[j] + K16, m, bf16), xv, acc[j], m);
    }
    float sum[ROWS_MAX] = {0}; /* the lanes summed at constant indices: acc[] stays in registers */
#pragma GCC unroll 8
    for (int j = 0; j < ROWS16_512; j++) sum[j] = hsum16(acc[j]);
    for (int j = 0; j < nr; j++) out[j] = (bias ? bias[j] : 0.0f) + sum[j];
}

TGT static void rows16_bf16(float *out, const lowp_weight *w, int row, const float *x, const float *bias, int nr) {
    rows16(out, w, row, x, bias, nr, 1);
}
TGT static void rows16_f16(float *out, const lowp_weight *w, int row, const float *x, const float *bias, int nr) {
    rows16(out, w, row, x, bias, nr, 0);
}

/* The fp16 scales of n <= 8 consecutive blocks as floats (lanes past n: 0): gathered in two
 * general registers (the integer pipes are idle here; vpgatherdd, and building them in
 * memory, measured slower) and widened by one vcvtph2ps. */
TGT static inline __attribute__((always_inline)) __m256 scales8(const lowp_q8_block *b, const int n) {
    uint64_t lo = 0, hi = 0;
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        if (i < n) lo |= (uint64_t)b[i].d << (16 * i);
        if (i + 4 < n) hi |= (uint64_t)b[i + 4].d << (16 * i);
    }
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)hi, (long long)lo));
}

/* The 64 quant bytes of blocks b[0] and b[1] (b[1] not read when one = 1: zeros). */
TGT static inline __m512i pair_bytes(const lowp_q8_block *b, const int one) {
    __m256i lo = _mm256_loadu_si256((const __m256i *)b[0].qs);
    return one ? _mm512_zextsi256_si512(lo)
               : _mm512_inserti64x4(_mm512_castsi256_si512(lo), _mm256_loadu_si256((const __m256i *)b[1].qs), 1);
}

/* Blocks i0 .. i0+n-1 (n <= 8) of the rows b[0 .. ROWS_Q8_512) into acc: see rows_q8.
 * Inlined with n = 8 for the whole chunks, so the pairs unroll with no test. */
TGT_VNNI static inline __attribute__((always_inline)) void q8_chunk(__m512 *acc, const lowp_q8_block *const *b,
                                                                    const lowp_q8_block *xq, int i0, const int n) {
    const __m512i zero = _mm512_setzero_si512();
    const __m512i halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    __m256 dx = scales8(xq + i0, n);
    __m512 sc[ROWS_MAX];
#pragma GCC unroll 8
    for (int j = 0; j < ROWS_Q8_512; j++) sc[j] = _mm512_castps256_ps512(_mm256_mul_ps(scales8(b[j] + i0, n), dx));
#pragma GCC unroll 4
    for (int p = 0; p < n; p += 2) {
        const int one = p + 1 == n;
        int i = i0 + p;
        __m512i qx = pair_bytes(xq + i, one);
        __m512i ax = _mm512_abs_epi8(qx); /* |x| as unsigned bytes (|q| <= 127) */
        __mmask64 neg = _mm512_movepi8_mask(qx);
        __m512i pick = _mm512_add_epi32(_mm512_set1_epi32(p), halves); /* lanes 0..7: p, 8..15: p+1 */
        __mmask16 lanes = one ? 0x00ff : 0xffff;
#pragma GCC unroll 8
        for (int j = 0; j < ROWS_Q8_512; j++) {
            __m512i wq = pair_bytes(b[j] + i, one);
            __m512i ws = _mm512_mask_sub_epi8(wq, neg, zero, wq);
            __m512 s = _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(zero, ax, ws));
            acc[j] = _mm512_mask3_fmadd_ps(_mm512_permutexvar_ps(pick, sc[j]), s, acc[j], lanes);
        }
    }
}

/* Rows row .. row+nr-1 (nr <= ROWS_Q8_512) of a q8 weight against the activation blocks xq.
 * Blocks go two to a register: block i's bytes 4l .. 4l+3 to lane 8 · (i mod 2) + l. Per
 * pair: |x| and x's sign mask once for the rows, then per row the weights with x's sign
 * (vpsubb under the mask), vpdpbusd (|x| unsigned times signed w, four products a lane into
 * int32: exact), vcvtdq2ps and one FMA with the blocks' scale products d_w · d_x (made eight
 * blocks at a time by one vector multiply, each lane's product picked by vpermps). An odd
 * last block fills lanes 0..7 only (a masked FMA); the lanes are summed by hsum16. */
TGT_VNNI static void rows_q8(float *out, const lowp_weight *w, int row, const lowp_q8_block *xq, const float *bias,
                             int nr) {
    int nb = w->K / LOWP_QK, nb8 = nb & ~7;
    const lowp_q8_block *b[ROWS_MAX];
    __m512 acc[ROWS_MAX];
#pragma GCC unroll 8
    for (int j = 0; j < ROWS_Q8_512; j++) {
        b[j] = (const lowp_q8_block *)(w->data + (size_t)(row + (j < nr ? j : 0)) * w->row_bytes);
        acc[j] = _mm512_setzero_ps();
    }
    for (int i0 = 0; i0 < nb8; i0 += 8) {
#if Q8_PF_512 > 0
        for (int c = 0; c < 8 * (int)sizeof(lowp_q8_block); c += 64) {
#pragma GCC unroll 8
            for (int j = 0; j < ROWS_Q8_512; j++) _mm_prefetch((const char *)(b[j] + i0 + Q8_PF_512) + c, _MM_HINT_T0);
        }
#endif
        q8_chunk(acc, b, xq, i0, 8);
    }
    if (nb8 < nb) q8_chunk(acc, b, xq, nb8, nb - nb8);
    float sum[ROWS_MAX] = {0}; /* the lanes summed at constant indices: acc[] stays in registers */
#pragma GCC unroll 8
    for (int j = 0; j < ROWS_Q8_512; j++) sum[j] = hsum16(acc[j]);
    for (int j = 0; j < nr; j++) out[j] = (bias ? bias[j] : 0.0f) + sum[j];
}

/* ggml's quantize_row_q8_0_ref a block (two registers) at a time, to the bit (for finite x):
 * the same amax (max is exact in any order), the same d, 1 / d and x · (1 / d); roundf's
 * halves away from zero rebuilt exactly from the truncation and the (exact) fraction left
 * over; vpmovsdb narrows (|q| <= 127, no saturation happens). */
TGT void lowp_quantize_q8_avx512(lowp_q8_block *out, const float *x, int K) {
    const __m512 half = _mm512_set1_ps(0.5f), mhalf = _mm512_set1_ps(-0.5f), one = _mm512_set1_ps(1.0f);
    for (int b = 0; b < K / LOWP_QK; b++) {
        const float *xb = x + (size_t)b * LOWP_QK;
        __m512 v[2] = {_mm512_loadu_ps(xb), _mm512_loadu_ps(xb + 16)};
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v[0]), _mm512_abs_ps(v[1])));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        out[b].d = lowp_f32_to_f16(d);
        __m512 idv = _mm512_set1_ps(id);
        for (int i = 0; i < 2; i++) {
            __m512 s = _mm512_mul_ps(v[i], idv);
            __m512 t = _mm512_roundscale_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m512 f = _mm512_sub_ps(s, t); /* exact: |s| < 2^23 */
            t = _mm512_mask_add_ps(t, _mm512_cmp_ps_mask(f, half, _CMP_GE_OQ), t, one);
            t = _mm512_mask_sub_ps(t, _mm512_cmp_ps_mask(f, mhalf, _CMP_LE_OQ), t, one);
            _mm_storeu_si128((__m128i *)(out[b].qs + 16 * i), _mm512_cvtsepi32_epi8(_mm512_cvttps_epi32(t)));
        }
    }
}

/* Rows split over the threads in groups of the format's row count (static: the same rows
 * to the same thread at any count, and every row's sum is its own). q8 needs VNNI. */
void lowp_gemv_avx512(float *out, const lowp_weight *w, int row0, const float *x, const lowp_q8_block *xq,
                      const float *bias, int N) {
    int NR = w->dtype == TH_DTYPE_Q8 ? ROWS_Q8_512 : ROWS16_512;
    int groups = (N + NR - 1) / NR;
#pragma omp parallel for schedule(static)
    for (int g = 0; g < groups; g++) {
        int n = g * NR, nr = N - n < NR ? N - n : NR;
        if (w->dtype == TH_DTYPE_Q8)
            rows_q8(out + n, w, row0 + n, xq, bias ? bias + n : NULL, nr);
        else if (w->dtype == TH_DTYPE_BF16)
            rows16_bf16(out + n, w, row0 + n, x, bias ? bias + n : NULL, nr);
        else
            rows16_f16(out + n, w, row0 + n, x, bias ? bias + n : NULL, nr);
    }
}
