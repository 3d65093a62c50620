/* lowp_avx2.c: the AVX2 + FMA + F16C kernels of the low-precision weights: bf16 widened to
 * f32 by a 16-bit shift, f16 by vcvtph2ps, both multiplied by FMA into eight lanes; q8_0
 * rows against int8 activation blocks with vpmaddubsw/vpmaddwd (the signs moved onto the
 * activations so the unsigned operand is |w|), one fp16 scale product per block. Compiled
 * with target attributes and called only after cpuid says the CPU has all three. Four rows
 * share each load of x; a row's sum order depends on K alone, never on the thread count. */
#include <cpuid.h>
#include <immintrin.h>

#include "model/lowp.h"

/* F16C by cpuid leaf 1 (ecx bit 29): clang 14's __builtin_cpu_supports does not know "f16c". */
static int cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

int lowp_avx2_usable(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
}

#define TGT __attribute__((target("avx2,fma,f16c")))

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

/* Rows n .. n+nr-1 (nr <= 4) of a bf16 or f16 weight. */
TGT static void rows16(float *out, const lowp_weight *w, int row, const float *x, const float *bias, int nr) {
    int K = w->K, K8 = K & ~7, bf16 = w->dtype == TH_DTYPE_BF16;
    const uint16_t *h[4];
    __m256 acc[4];
    for (int j = 0; j < 4; j++) {
        h[j] = (const uint16_t *)(w->data + (size_t)(row + (j < nr ? j : 0)) * w->row_bytes);
        acc[j] = _mm256_setzero_ps();
    }
    for (int k = 0; k < K8; k += 8) {
        __m256 xv = _mm256_loadu_ps(x + k);
        acc[0] = _mm256_fmadd_ps(load8(h[0] + k, bf16), xv, acc[0]);
        acc[1] = _mm256_fmadd_ps(load8(h[1] + k, bf16), xv, acc[1]);
        acc[2] = _mm256_fmadd_ps(load8(h[2] + k, bf16), xv, acc[2]);
        acc[3] = _mm256_fmadd_ps(load8(h[3] + k, bf16), xv, acc[3]);
    }
    for (int j = 0; j < nr; j++) out[j] = (bias ? bias[j] : 0.0f) + (hsum8(acc[j]) + tail16(h[j], x, K8, K, bf16));
}

/* Σ over one block of qw · qx as eight int32 lanes turned to float. */
TGT static inline __m256 block_dot(const int8_t *qw, __m256i qx) {
    __m256i w = _mm256_loadu_si256((const __m256i *)qw);
    __m256i aw = _mm256_sign_epi8(w, w);            /* |w| as unsigned bytes (|q| <= 127) */
    __m256i sx = _mm256_sign_epi8(qx, w);           /* x with w's sign */
    __m256i p16 = _mm256_maddubs_epi16(aw, sx);     /* pairs: |2 · 127 · 127| fits int16 */
    __m256i p32 = _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
    return _mm256_cvtepi32_ps(p32);
}

TGT static void rows_q8(float *out, const lowp_weight *w, int row, const lowp_q8_block *xq, const float *bias,
                        int nr) {
    int nb = w->K / LOWP_QK;
    const lowp_q8_block *b[4];
    __m256 acc[4];
    for (int j = 0; j < 4; j++) {
        b[j] = (const lowp_q8_block *)(w->data + (size_t)(row + (j < nr ? j : 0)) * w->row_bytes);
        acc[j] = _mm256_setzero_ps();
    }
    for (int i = 0; i < nb; i++) {
        __m256i qx = _mm256_loadu_si256((const __m256i *)xq[i].qs);
        float dx = _cvtsh_ss(xq[i].d);
        for (int j = 0; j < 4; j++) {
            __m256 d = _mm256_set1_ps(_cvtsh_ss(b[j][i].d) * dx);
            acc[j] = _mm256_fmadd_ps(d, block_dot(b[j][i].qs, qx), acc[j]);
        }
    }
    for (int j = 0; j < nr; j++) out[j] = (bias ? bias[j] : 0.0f) + hsum8(acc[j]);
}

void lowp_gemv_avx2(float *out, const lowp_weight *w, int row0, const float *x, const lowp_q8_block *xq,
                    const float *bias, int N) {
    int groups = (N + 3) / 4;
#pragma omp parallel for schedule(static)
    for (int g = 0; g < groups; g++) {
        int n = g * 4, nr = N - n < 4 ? N - n : 4;
        if (w->dtype == TH_DTYPE_Q8)
            rows_q8(out + n, w, row0 + n, xq, bias ? bias + n : NULL, nr);
        else
            rows16(out + n, w, row0 + n, x, bias ? bias + n : NULL, nr);
    }
}
