/* attention.c: one query row of causal attention (th_attention_row, shared by the training
 * forward and KV-cache inference, th_attention_row_f16 over an f16 KV cache and
 * th_attention_row_q8 over a q8_0 one), vectorized
 * in an order fixed by the head size alone: q·k in eight lanes reduced by one fixed tree, the
 * softmax's exponentials by a polynomial the compiler vectorizes, p·v lane-wise in key order.
 * So results never depend on the thread count, and decode cost grows with the context only
 * by the bytes of keys and values. Half keys and values are widened (exactly) to f32 in small
 * tiles first, by vcvtph2ps where cpuid reports F16C, so the f16 row sums the same products in
 * the same order as the f32 row on the widened values. q8_0 keys and values (32 int8 and one
 * half scale a block) are dequantized the same way, d·q exact in f32 (an 11-bit mantissa
 * times an 8-bit integer), by vpmovsxbd/vcvtdq2ps where cpuid reports AVX2 and F16C: so q8
 * attention equals f32 attention over the dequantized cache bit for bit. */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "model/gpt2_internal.h"
#include "model/kernels.h"
#include "model/lowp.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define TH_HAVE_X86 1
#endif

typedef float v8 __attribute__((vector_size(8 * sizeof(float))));

/* eight floats from p into the v8 lvalue `dst` (a macro, not a function returning v8: a
 * vector return value's ABI changes where AVX is not enabled, e.g. the fuzz build) */
#define LOAD8(dst, p) memcpy(&(dst), (p), sizeof(v8))

/* Σ a[i]·b[i]: eight lanes over i, lanes summed ((0+4)+(2+6))+((1+5)+(3+7)), then the tail. */
static inline float dot_fixed(const float *a, const float *b, int n) {
    v8 acc = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        v8 x, y;
        LOAD8(x, a + i);
        LOAD8(y, b + i);
        acc += x * y;
    }
    float s = ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* out[i] += p · w[i], eight lanes at a time (each element's sum runs in key order). */
static inline void axpy_fixed(float *out, float p, const float *w, int n) {
    int n8 = n & ~7;
    for (int i = 0; i < n8; i += 8) {
        v8 o, x;
        LOAD8(o, out + i);
        LOAD8(x, w + i);
        o += p * x;
        memcpy(out + i, &o, sizeof o);
    }
    for (int i = n8; i < n; i++) out[i] += p * w[i];
}

typedef int32_t v8i __attribute__((vector_size(8 * sizeof(int32_t))));

/* lanes of a where m is all ones, else of b (a macro for the same reason as LOAD8; m is
 * evaluated twice, so it must have no side effects) */
#define SELECT8(m, a, b) ((v8)(((v8i)(a) & (m)) | ((v8i)(b) & ~(m))))

/* th_exp_poly (kernels.h) of p[0..8) in place, the same operations in the same order lane by lane (so the
 * same bits): rintf as (t + 1.5·2^23) - 1.5·2^23, which rounds to nearest even exactly as
 * rintf does for |t| < 2^22 (here |t| <= 127). Written out because GCC does not vectorize
 * rintf without -fno-trapping-math. */
static inline void exp_poly8(float *p) {
    v8 x;
    LOAD8(x, p);
    const v8 lo = {-87, -87, -87, -87, -87, -87, -87, -87}, hi = {88, 88, 88, 88, 88, 88, 88, 88};
    x = SELECT8(x < lo, lo, x);
    x = SELECT8(x > hi, hi, x);
    v8 n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    v8 r = x - n * 0.693145751953125f - n * 1.42860682030941723e-6f;
    v8 e = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666679f + r * (0.00833333377f + r * 0.00138888892f)))));
    v8i ni = __builtin_convertvector(SELECT8(n == n, n, (v8){0}), v8i);
    v8i bits = (ni + 127) << 23;
    e = e * (v8)bits;
    memcpy(p, &e, sizeof e);
}

/* att[0..n) = softmax of the scores already in att, whose maximum is maxv. */
static void softmax_inplace(float *att, int n, float maxv) {
    int t2 = 0;
    for (; t2 < n; t2++) att[t2] -= maxv;
    for (t2 = 0; t2 + 8 <= n; t2 += 8) exp_poly8(att + t2);
    for (; t2 < n; t2++) att[t2] = th_exp_poly(att[t2]);
    float sum = 0.0f;
    for (t2 = 0; t2 < n; t2++) sum += att[t2];
    float inv = 1.0f / sum;
    for (t2 = 0; t2 < n; t2++) att[t2] *= inv;
}

/* Head size 64 (every GPT-2 size): dot_fixed's and axpy_fixed's sums with q and the output
 * row held in registers across the keys, the same operations in the same order. v8u reads
 * eight floats at any float alignment (the unrolled loops then keep everything in ymm
 * registers, which per-vector memcpy into arrays does not). */
#define HS64 64
typedef float v8u __attribute__((vector_size(8 * sizeof(float)), aligned(4), may_alias));
static inline float dot64(const v8 *q, const v8 *k) {
    v8 acc = {0};
#pragma GCC unroll 8
    for (int j = 0; j < HS64 / 8; j++) acc += q[j] * k[j];
    return ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]));
}

/* The body of a head-size-64 attention row, q and the output row in registers; LOAD_ROW(dst,
 * t2, rows) fills dst[0..8) with key or value row t2 of `rows` as floats. A macro so that the
 * f32 and the f16 (F16C, its own target attribute) kernels share one body: the same sums in
 * the same order, which is what makes them agree bit for bit on widened values. */
#define ATTEND64_BODY(LOAD_ROW)                                                                     \
    do {                                                                                            \
        v8 qv[HS64 / 8], kk[HS64 / 8], o[HS64 / 8];                                                 \
        _Pragma("GCC unroll 8") for (int j = 0; j < HS64 / 8; j++) qv[j] = *(const v8u *)(q + 8 * j); \
        float maxv = -INFINITY;                                                                     \
        for (int t2 = 0; t2 < n_keys; t2++) {                                                       \
            LOAD_ROW(kk, t2, k);                                                                    \
            float dot = dot64(qv, kk) * scale;                                                      \
            att[t2] = dot;                                                                          \
            maxv = dot > maxv ? dot : maxv;                                                         \
        }                                                                                           \
        softmax_inplace(att, n_keys, maxv);                                                         \
        _Pragma("GCC unroll 8") for (int j = 0; j < HS64 / 8; j++) o[j] = (v8){0};                  \
        for (int t2 = 0; t2 < n_keys; t2++) {                                                       \
            LOAD_ROW(kk, t2, v);                                                                    \
            float p = att[t2];                                                                      \
            _Pragma("GCC unroll 8") for (int j = 0; j < HS64 / 8; j++) o[j] += p * kk[j];           \
        }                                                                                           \
        _Pragma("GCC unroll 8") for (int j = 0; j < HS64 / 8; j++) *(v8u *)(out + 8 * j) = o[j];    \
    } while (0)

#define LOAD_ROW_F32(dst, t2, rows)                                                                 \
    _Pragma("GCC unroll 8") for (int j = 0; j < HS64 / 8; j++) dst[j] =                             \
        *(const v8u *)(rows + (size_t)(t2) * kv_stride + 8 * j)

static void attend64_f32(float *out, float *att, const float *q, const float *k, const float *v, int n_keys,
                         size_t kv_stride, float scale) {
    ATTEND64_BODY(LOAD_ROW_F32);
}

void th_attention_row(float *out, float *att, const float *q, const float *k, const float *v, int n_keys,
                      size_t kv_stride, int hs, float scale) {
    if (hs == HS64) {
        attend64_f32(out, att, q, k, v, n_keys, kv_stride, scale);
        return;
    }
    // att[t2] = softmax over t2 < n_keys of scale · q·k[t2]; out = Σ att[t2] · v[t2]
    float maxv = -INFINITY;
    for (int t2 = 0; t2 < n_keys; t2++) {
        float dot = dot_fixed(q, k + (size_t)t2 * kv_stride, hs) * scale;
        att[t2] = dot;
        maxv = dot > maxv ? dot : maxv;
    }
    softmax_inplace(att, n_keys, maxv);
    for (int i = 0; i < hs; i++) out[i] = 0.0f;
    for (int t2 = 0; t2 < n_keys; t2++) axpy_fixed(out, att[t2], v + (size_t)t2 * kv_stride, hs);
}

/* ---------------------------------------------------------------------------------
 * f16 keys and values */

static atomic_int force_portable;
static atomic_int f16c_state; /* 0: not asked yet, 1: no F16C, 2: F16C */

void th_f16_force_portable(int on) { atomic_store(&force_portable, on); }

#ifdef TH_HAVE_X86
#define TGT __attribute__((target("avx2,f16c")))

TGT static void widen_f16c(float *dst, const uint16_t *src, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    for (; i < n; i++) dst[i] = _cvtsh_ss(src[i]);
}

/* attend64_f32 with the keys and values (rows of HS64 halves) widened by vcvtph2ps as loaded */
#define LOAD_ROW_F16C(dst, t2, rows)                                                                \
    _Pragma("GCC unroll 8") for (int j = 0; j < HS64 / 8; j++) dst[j] =                             \
        (v8)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(rows + (size_t)(t2) * HS64 + 8 * j)))

TGT static void attend64_f16c(float *out, float *att, const float *q, const uint16_t *k, const uint16_t *v,
                              int n_keys, float scale) {
    ATTEND64_BODY(LOAD_ROW_F16C);
}

/* rounding mode 0 in the immediate: to nearest, ties to even (lowp_f32_to_f16's rounding) */
TGT static void narrow_f16c(uint16_t *dst, const float *src, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(dst + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), 0));
    for (; i < n; i++) dst[i] = _cvtss_sh(src[i], 0);
}

static int cpu_f16c(void) {
    unsigned a, b, c, d;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#else
static int cpu_f16c(void) { return 0; }
#endif

/* 1 when the F16C conversions are used: cpuid asked once, then remembered. */
static int use_f16c(void) {
    if (atomic_load_explicit(&force_portable, memory_order_relaxed)) return 0;
    int s = atomic_load_explicit(&f16c_state, memory_order_relaxed);
    if (s == 0) {
        s = cpu_f16c() ? 2 : 1;
        atomic_store_explicit(&f16c_state, s, memory_order_relaxed);
    }
    return s == 2;
}

const char *th_f16_kernel(void) { return use_f16c() ? "f16c" : "portable"; }

void th_f16_widen(float *dst, const uint16_t *src, int n) {
#ifdef TH_HAVE_X86
    if (use_f16c()) {
        widen_f16c(dst, src, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++) dst[i] = lowp_f16_to_f32(src[i]);
}

void th_f16_narrow(uint16_t *dst, const float *src, int n) {
#ifdef TH_HAVE_X86
    if (use_f16c()) {
        narrow_f16c(dst, src, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++) dst[i] = lowp_f32_to_f16(src[i]);
}

/* The portable path of the f16 and q8 caches: keys and values converted to f32 rows
 * TH_KV_TILE_FLOATS at a time into a tile that stays in L1, then the f32 row's sums (dot,
 * softmax, p·v in key order), so the result equals th_attention_row on the converted rows.
 * to_f32(tile, rows, first, n, hs) converts rows first .. first+n-1 of `rows`. */
typedef void (*kv_rows_to_f32)(float *tile, const void *rows, int first, int n, int hs);

static void attend_tiled(float *out, float *att, const float *q, const void *k, const void *v, int n_keys, int hs,
                         float scale, kv_rows_to_f32 to_f32) {
    float tile[TH_KV_TILE_FLOATS];
    int per = TH_KV_TILE_FLOATS / hs;
    float maxv = -INFINITY;
    for (int t0 = 0; t0 < n_keys; t0 += per) {
        int nt = n_keys - t0 < per ? n_keys - t0 : per;
        to_f32(tile, k, t0, nt, hs);
        for (int j = 0; j < nt; j++) {
            float dot = dot_fixed(q, tile + (size_t)j * hs, hs) * scale;
            att[t0 + j] = dot;
            maxv = dot > maxv ? dot : maxv;
        }
    }
    softmax_inplace(att, n_keys, maxv);
    for (int i = 0; i < hs; i++) out[i] = 0.0f;
    for (int t0 = 0; t0 < n_keys; t0 += per) {
        int nt = n_keys - t0 < per ? n_keys - t0 : per;
        to_f32(tile, v, t0, nt, hs);
        for (int j = 0; j < nt; j++) axpy_fixed(out, att[t0 + j], tile + (size_t)j * hs, hs);
    }
}

static void widen_f16_rows(float *tile, const void *rows, int first, int n, int hs) {
    th_f16_widen(tile, (const uint16_t *)rows + (size_t)first * hs, n * hs);
}

static void dequant_q8_rows(float *tile, const void *rows, int first, int n, int hs) {
    lowp_dequant_q8(tile, (const lowp_q8_block *)rows + (size_t)first * (hs / LOWP_QK), n * hs);
}

void th_attention_row_f16(float *out, float *att, const float *q, const uint16_t *k, const uint16_t *v,
                          int n_keys, int hs, float scale) {
#ifdef TH_HAVE_X86
    if (hs == HS64 && use_f16c()) {
        attend64_f16c(out, att, q, k, v, n_keys, scale);
        return;
    }
#endif
    attend_tiled(out, att, q, k, v, n_keys, hs, scale, widen_f16_rows);
}

/* ---------------------------------------------------------------------------------
 * q8_0 keys and values: each head's row of hs values is hs / 32 blocks (lowp_q8_block). */

void th_q8_kv_quantize(lowp_q8_block *dst, const float *src, int n) {
    if (use_f16c() && lowp_avx2_usable())
        lowp_quantize_q8_avx2(dst, src, n);
    else
        lowp_quantize_q8(dst, src, n);
}

#ifdef TH_HAVE_X86
/* dst[0..8) = row t2 of `rows` (HS64 / LOWP_QK blocks a row) dequantized: eight int8
 * sign-extended, converted (exact) and multiplied by the block's widened scale, the same
 * product as lowp_dequant_q8's */
#define LOAD_ROW_Q8(dst, t2, rows)                                                                  \
    do {                                                                                            \
        const lowp_q8_block *blk_ = rows + (size_t)(t2) * (HS64 / LOWP_QK);                         \
        _Pragma("GCC unroll 2") for (int b_ = 0; b_ < HS64 / LOWP_QK; b_++) {                       \
            __m256 d_ = _mm256_set1_ps(_cvtsh_ss(blk_[b_].d));                                      \
            _Pragma("GCC unroll 4") for (int j_ = 0; j_ < LOWP_QK / 8; j_++) dst[4 * b_ + j_] =     \
                (v8)_mm256_mul_ps(d_, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(                      \
                                          _mm_loadl_epi64((const __m128i *)(blk_[b_].qs + 8 * j_))))); \
        }                                                                                           \
    } while (0)

TGT static void attend64_q8(float *out, float *att, const float *q, const lowp_q8_block *k, const lowp_q8_block *v,
                            int n_keys, float scale) {
    ATTEND64_BODY(LOAD_ROW_Q8);
}
#endif

const char *th_q8_kv_kernel(void) { return use_f16c() ? "avx2" : "portable"; }

void th_attention_row_q8(float *out, float *att, const float *q, const lowp_q8_block *k, const lowp_q8_block *v,
                         int n_keys, int hs, float scale) {
#ifdef TH_HAVE_X86
    if (hs == HS64 && use_f16c()) {
        attend64_q8(out, att, q, k, v, n_keys, scale);
        return;
    }
#endif
    attend_tiled(out, att, q, k, v, n_keys, hs, scale, dequant_q8_rows);
}
