/* lowp_avx2.c: the AVX2 + FMA + F16C kernels of the low-precision weights: bf16 widened to
 * f32 by a 16-bit shift, f16 by vcvtph2ps, both multiplied by FMA into eight lanes; q8_0
 * rows against int8 activation blocks with vpmaddubsw/vpmaddwd (the signs moved onto the
 * weights so the unsigned operand is |x|, shared by the rows read together), the scale
 * products of eight blocks made by one vector multiply; an activation quantizer that writes
 * ggml's bytes. Compiled with target attributes and called only after cpuid says the CPU has
 * all three. Rows are read one at a time by default (ROWS_*), so each thread streams its
 * contiguous rows in order, with a software prefetch a fixed distance ahead; a row's sum
 * order depends on K alone, never on the thread count or the rows read together, and
 * lowp_gemv_naive follows it. */
#include <cpuid.h>
#include <immintrin.h>
#include <stdatomic.h>

#include "model/lowp.h"

/* F16C by cpuid leaf 1 (ecx bit 29): clang 14's __builtin_cpu_supports does not know "f16c". */
static int cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

/* Asked once: cpuid traps to the hypervisor on a VM (microseconds), and the dispatch asks
 * before every decode matmul. Racing first callers store the same value. */
int lowp_avx2_usable(void) {
    static _Atomic int known = -1;
    int k = atomic_load_explicit(&known, memory_order_relaxed);
    if (k < 0) {
        __builtin_cpu_init();
        k = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
        atomic_store_explicit(&known, k, memory_order_relaxed);
    }
    return k;
}

#define TGT __attribute__((target("avx2,fma,f16c")))

/* Prefetch distances (-D overrides them to retune; 0 turns prefetching off): bytes ahead of
 * each bf16/f16 row, q8 blocks ahead of each row; with one row at a time (below), ahead in
 * the thread's one stream. 4 KiB and 120 blocks (4,080 bytes) since 2026-12-02 (the AVX-512
 * kernels' tuning); 2 KiB and 96 blocks before, tuned on a Zen 3 VM for several rows. */
#ifndef PF16
#define PF16 4096
#endif
#ifndef Q8_PF
#define Q8_PF 120
#endif

TGT static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

TGT static inline __m256 load8(const uint16_t *h, int bf16) {
    __m128i raw = _mm_loadu_si128((const __m128i *)h);
    if (bf16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
    return _mm256_cvtph_ps(raw);
}

TGT static float tail16(const uint16_t *h, const float *x, int k0, int K, int bf16) {
    float s = 0.0f;
    for (int k = k0; k < K; k++) s += (bf16 ? lowp_bf16_to_f32(h[k]) : _cvtsh_ss(h[k])) * x[k];
    return s;
}

/* How many rows share each load of x (and of q8's |x|), by format. A row's own sum is the
 * same at any of these (its lanes, in k order). One: a thread then reads its contiguous rows
 * as one sequential stream, which the hardware prefetchers follow, where rows read side by
 * side are short streams they do not. On the 2026-12-02 Zen 4 VM (bench/lowp_kernels ... avx2,
 * 1.25 GiB arena, best of 3, two interleaved runs, share of the read bandwidth at 1 / 2
 * threads), against 4 (bf16, q8) and 8 (f16) rows at the old distances: bf16 41 / 47-58 % ->
 * 55-61 / 56-79 %, f16 42-45 / 59-60 % -> 59-62 / 65-71 %, q8 33-36 / 31-32 % -> 68-75 /
 * 61-88 %. One row caps bf16/f16 at one 8-lane FMA per FMA latency (its single accumulator
 * keeps the lane order): about 14 GB/s a thread at 3.5 GHz, near what one thread streamed
 * there. On a Zen 3 VM (the last AVX2-only host, not re-measured), eight rows had gained f16
 * +4 points and lost bf16 -5 and q8 -10 against four. */
#define ROWS_MAX 8
#ifndef ROWS_F16
#define ROWS_F16 1
#endif
#ifndef ROWS_BF16
#define ROWS_BF16 1
#endif
#ifndef ROWS_Q8
#define ROWS_Q8 1
#endif

/* Rows row .. row+nr-1 (nr <= rows) of a bf16 (bf16 = 1) or f16 weight; rows past nr repeat
 * row 0 (read, never stored). Inlined into one copy per format with rows and bf16 constant,
 * so the widening is fixed and the accumulators stay in registers. */
TGT static inline __attribute__((always_inline)) void rows16(float *out, const lowp_weight *w, int row,
                                                             const float *x, const float *bias, int nr,
                                                             const int bf16, const int rows) {
    int K = w->K, K8 = K & ~7;
    const uint16_t *h[ROWS_MAX];
    __m256 acc[ROWS_MAX];
#pragma GCC unroll 8
    for (int j = 0; j < rows; j++) {
        h[j] = (const uint16_t *)(w->data + (size_t)(row + (j < nr ? j : 0)) * w->row_bytes);
        acc[j] = _mm256_setzero_ps();
    }
    for (int k = 0; k < K8; k += 8) {
#if PF16 > 0
        if ((k & 31) == 0) {
#pragma GCC unroll 8
            for (int j = 0; j < rows; j++) _mm_prefetch((const char *)(h[j] + k) + PF16, _MM_HINT_T0);
        }
#endif
        __m256 xv = _mm256_loadu_ps(x + k);
#pragma GCC unroll 8
        for (int j = 0; j < rows; j++) acc[j] = _mm256_fmadd_ps(load8(h[j] + k, bf16), xv, acc[j]);
    }
    float sum[ROWS_MAX] = {0}; /* the lanes summed at constant indices: acc[] stays in registers */
#pragma GCC unroll 8
    for (int j = 0; j < rows; j++) sum[j] = hsum8(acc[j]);
    for (int j = 0; j < nr; j++) out[j] = (bias ? bias[j] : 0.0f) + (sum[j] + tail16(h[j], x, K8, K, bf16));
}

TGT static void rows16_bf16(float *out, const lowp_weight *w, int row, const float *x, const float *bias, int nr) {
    rows16(out, w, row, x, bias, nr, 1, ROWS_BF16);
}
TGT static void rows16_f16(float *out, const lowp_weight *w, int row, const float *x, const float *bias, int nr) {
    rows16(out, w, row, x, bias, nr, 0, ROWS_F16);
}

/* The fp16 scales of eight consecutive blocks as floats: gathered in two general registers
 * (the integer pipes are idle here) and widened by one vcvtph2ps. */
TGT static inline __m256 scales8(const lowp_q8_block *b) {
    uint64_t lo = 0, hi = 0;
    for (int i = 0; i < 4; i++) {
        lo |= (uint64_t)b[i].d << (16 * i);
        hi |= (uint64_t)b[i + 4].d << (16 * i);
    }
    return _mm256_cvtph_ps(_mm_set_epi64x((long long)hi, (long long)lo));
}

/* One block of one row: Σ over its 32 bytes of w · x as eight float lanes (lane l: bytes
 * 4l .. 4l+3). |x| times w with x's sign by vpmaddubsw (pairs: |2 · 127 · 127| fits int16),
 * pairs to int32 by vpmaddwd with ones; every step exact. */
TGT static inline __m256 block_dot(const lowp_q8_block *b, __m256i ax, __m256i qx) {
    __m256i wq = _mm256_loadu_si256((const __m256i *)b->qs);
    __m256i p16 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(wq, qx));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

/* block i of every row into acc[0..ROWS_Q8), row j's scale product being the float SC(j) */
#define Q8_BLOCK(i, SC)                                                                             \
    do {                                                                                            \
        __m256i qx = _mm256_loadu_si256((const __m256i *)xq[i].qs);                                 \
        __m256i ax = _mm256_sign_epi8(qx, qx); /* |x| as unsigned bytes (|q| <= 127) */             \
        _Pragma("GCC unroll 8") for (int j = 0; j < ROWS_Q8; j++) acc[j] =                          \
            _mm256_fmadd_ps(_mm256_broadcast_ss(&SC), block_dot(b[j] + (i), ax, qx), acc[j]);       \
    } while (0)

/* Rows row .. row+nr-1 (nr <= ROWS_Q8) of a q8 weight against the activation blocks xq: per
 * block, |x| once for the rows, then per row block_dot and one FMA with the scale product
 * d_w · d_x. The products of eight blocks are made by one vector multiply ahead of their dot
 * products and broadcast from memory, so the loop does no scalar conversion; blocks past a
 * multiple of eight convert their scales one by one. Lane l of a row accumulates in block
 * order; the lanes are summed at the end by hsum8 (lowp_gemv_naive sums in the same order). */
TGT static void rows_q8(float *out, const lowp_weight *w, int row, const lowp_q8_block *xq, const float *bias,
                        int nr) {
    int nb = w->K / LOWP_QK, nb8 = nb & ~7;
    const lowp_q8_block *b[ROWS_MAX];
    __m256 acc[ROWS_MAX];
#pragma GCC unroll 8
    for (int j = 0; j < ROWS_Q8; j++) {
        b[j] = (const lowp_q8_block *)(w->data + (size_t)(row + (j < nr ? j : 0)) * w->row_bytes);
        acc[j] = _mm256_setzero_ps();
    }
    _Alignas(32) float sc[ROWS_MAX][8];
    for (int i0 = 0; i0 < nb8; i0 += 8) {
#if Q8_PF > 0
        for (int c = 0; c < 8 * (int)sizeof(lowp_q8_block); c += 64) {
#pragma GCC unroll 8
            for (int j = 0; j < ROWS_Q8; j++) _mm_prefetch((const char *)(b[j] + i0 + Q8_PF) + c, _MM_HINT_T0);
        }
#endif
        __m256 dx = scales8(xq + i0);
#pragma GCC unroll 8
        for (int j = 0; j < ROWS_Q8; j++) _mm256_store_ps(sc[j], _mm256_mul_ps(scales8(b[j] + i0), dx));
        for (int i = 0; i < 8; i++) Q8_BLOCK(i0 + i, sc[j][i]);
    }
    for (int i = nb8; i < nb; i++) {
        float dx = _cvtsh_ss(xq[i].d);
#pragma GCC unroll 8
        for (int j = 0; j < ROWS_Q8; j++) sc[j][0] = _cvtsh_ss(b[j][i].d) * dx;
        Q8_BLOCK(i, sc[j][0]);
    }
    float sum[ROWS_MAX] = {0}; /* the lanes summed at constant indices: acc[] stays in registers */
#pragma GCC unroll 8
    for (int j = 0; j < ROWS_Q8; j++) sum[j] = hsum8(acc[j]);
    for (int j = 0; j < nr; j++) out[j] = (bias ? bias[j] : 0.0f) + sum[j];
}

/* ggml's quantize_row_q8_0_ref eight lanes at a time, to the bit (for finite x): the same
 * amax (max is exact in any order), the same d, 1 / d and x · (1 / d); roundf's halves away
 * from zero rebuilt exactly from the truncation and the (exact) fraction left over. */
TGT void lowp_quantize_q8_avx2(lowp_q8_block *out, const float *x, int K) {
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int b = 0; b < K / LOWP_QK; b++) {
        const float *xb = x + (size_t)b * LOWP_QK;
        __m256 v[4];
        for (int i = 0; i < 4; i++) v[i] = _mm256_loadu_ps(xb + 8 * i);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v[0], absmask), _mm256_and_ps(v[1], absmask)),
                                 _mm256_max_ps(_mm256_and_ps(v[2], absmask), _mm256_and_ps(v[3], absmask)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float d = _mm_cvtss_f32(m4) / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        out[b].d = lowp_f32_to_f16(d);
        __m256 idv = _mm256_set1_ps(id);
        __m256i q[4];
        for (int i = 0; i < 4; i++) {
            __m256 s = _mm256_mul_ps(v[i], idv);
            __m256 t = _mm256_round_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m256 f = _mm256_sub_ps(s, t); /* exact: |s| < 2^23 */
            __m256 up = _mm256_and_ps(_mm256_cmp_ps(f, half, _CMP_GE_OQ), one);
            __m256 down = _mm256_and_ps(_mm256_cmp_ps(f, _mm256_sub_ps(_mm256_setzero_ps(), half), _CMP_LE_OQ), one);
            q[i] = _mm256_cvttps_epi32(_mm256_sub_ps(_mm256_add_ps(t, up), down));
        }
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256((__m256i *)out[b].qs, _mm256_permutevar8x32_epi32(p, order));
    }
}

void lowp_gemv_avx2(float *out, const lowp_weight *w, int row0, const float *x, const lowp_q8_block *xq,
                    const float *bias, int N) {
    int NR = w->dtype == TH_DTYPE_Q8 ? ROWS_Q8 : w->dtype == TH_DTYPE_BF16 ? ROWS_BF16 : ROWS_F16;
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
