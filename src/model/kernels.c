/* kernels.c: the non-matmul layers of GPT-2 (embeddings, LayerNorm, causal attention,
 * GELU, residual, cross-entropy), each a forward/backward pair on flat row-major arrays.
 * Parallel loops split work by output element only, so sums never depend on threads. */
#include "model/kernels.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "thermo/model.h"

/* th_exp_poly on 8 floats with AVX2, operation for operation (the same bits), for the
 * cross-entropy backward and GELU: gcc does not vectorize the scalar form's clamps and
 * conversion ("control flow in loop"). max(c, x) and min(c, x) return x when x is NaN, as the
 * scalar clamps do. */
#if defined(__AVX2__)
#include <immintrin.h>
#define TH_EXP8 1
static inline __m256 exp8(__m256 x) {
    x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x);
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(0.693145751953125f)));
    r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(1.42860682030941723e-6f)));
    __m256 p = _mm256_add_ps(_mm256_set1_ps(0.00833333377f), _mm256_mul_ps(r, _mm256_set1_ps(0.00138888892f)));
    p = _mm256_add_ps(_mm256_set1_ps(0.0416666679f), _mm256_mul_ps(r, p));
    p = _mm256_add_ps(_mm256_set1_ps(0.166666672f), _mm256_mul_ps(r, p));
    p = _mm256_add_ps(_mm256_set1_ps(0.5f), _mm256_mul_ps(r, p));
    p = _mm256_add_ps(_mm256_set1_ps(1.0f), _mm256_mul_ps(r, p));
    p = _mm256_add_ps(_mm256_set1_ps(1.0f), _mm256_mul_ps(r, p));
    __m256 n0 = _mm256_and_ps(n, _mm256_cmp_ps(n, n, _CMP_ORD_Q)); // NaN -> 0
    __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n0), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}
#endif

/* Channel block for reductions over rows: each thread owns whole blocks and walks the rows
 * in order, so sums over rows are fixed regardless of the thread count. */
#define CHANNEL_BLOCK 64

/* ---------------------------------------------------------------------------------
 * embeddings */

void th_encoder_forward(float *out, const int *tokens, const float *wte, const float *wpe, int B,
                        int T, int C, int pos0) {
    // out is (B,T,C), tokens (B,T), wte (V,C), wpe (maxT,C)
#pragma omp parallel for schedule(static)
    for (int bt = 0; bt < B * T; bt++) {
        float *o = out + (size_t)bt * C;
        const float *te = wte + (size_t)tokens[bt] * C;
        const float *pe = wpe + (size_t)(pos0 + bt % T) * C;
        for (int c = 0; c < C; c++) o[c] = te[c] + pe[c];
    }
}

void th_encoder_backward(float *dwte, float *dwpe, const float *dout, const int *tokens, int B, int T,
                         int C) {
    // dout is (B,T,C); rows sharing a token add into the same dwte row, so the loop is
    // split by channel blocks and each block visits the rows in order.
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += CHANNEL_BLOCK) {
        int c1 = c0 + CHANNEL_BLOCK < C ? c0 + CHANNEL_BLOCK : C;
        for (int bt = 0; bt < B * T; bt++) {
            const float *d = dout + (size_t)bt * C;
            float *te = dwte + (size_t)tokens[bt] * C;
            float *pe = dwpe + (size_t)(bt % T) * C;
            for (int c = c0; c < c1; c++) {
                te[c] += d[c];
                pe[c] += d[c];
            }
        }
    }
}

/* ---------------------------------------------------------------------------------
 * LayerNorm */

void th_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                          const float *bias, int N, int C, float eps) {
    // inp, out are (N,C); mean, rstd (N)
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        float *o = out + (size_t)i * C;
        float m = 0.0f;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        float v = 0.0f;
        for (int c = 0; c < C; c++) {
            float d = x[c] - m;
            v += d * d;
        }
        v /= C;
        float s = 1.0f / sqrtf(v + eps);
        for (int c = 0; c < C; c++) o[c] = (x[c] - m) * s * weight[c] + bias[c];
        if (mean) mean[i] = m;
        if (rstd) rstd[i] = s;
    }
}

void th_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, const float *mean, const float *rstd,
                           int N, int C) {
    // per row: the input gradient needs two row means of the normalized gradient
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        const float *d = dout + (size_t)i * C;
        const float *x = inp + (size_t)i * C;
        float *dx = dinp + (size_t)i * C;
        float m = mean[i], s = rstd[i];
        float dnorm_mean = 0.0f, dnorm_norm_mean = 0.0f;
        for (int c = 0; c < C; c++) {
            float norm = (x[c] - m) * s;
            float dnorm = weight[c] * d[c];
            dnorm_mean += dnorm;
            dnorm_norm_mean += dnorm * norm;
        }
        dnorm_mean /= C;
        dnorm_norm_mean /= C;
        for (int c = 0; c < C; c++) {
            float norm = (x[c] - m) * s;
            float dnorm = weight[c] * d[c];
            dx[c] += (dnorm - dnorm_mean - norm * dnorm_norm_mean) * s;
        }
    }
    // parameter gradients sum over rows: split by channel blocks
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += CHANNEL_BLOCK) {
        int c1 = c0 + CHANNEL_BLOCK < C ? c0 + CHANNEL_BLOCK : C;
        for (int i = 0; i < N; i++) {
            const float *d = dout + (size_t)i * C;
            const float *x = inp + (size_t)i * C;
            float m = mean[i], s = rstd[i];
            for (int c = c0; c < c1; c++) {
                dweight[c] += (x[c] - m) * s * d[c];
                dbias[c] += d[c];
            }
        }
    }
}

/* ---------------------------------------------------------------------------------
 * causal self-attention */

/* th_attention_row (one query row) is in attention.c. */

void th_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH) {
    // qkv (B,T,3C), out (B,T,C), att (B,NH,T,T); only t2 <= t is written and read
    int C3 = 3 * C, hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(3) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            for (int h = 0; h < NH; h++) {
                const float *base = qkv + (size_t)b * T * C3 + h * hs;
                float *a = att + (((size_t)b * NH + h) * T + t) * T;
                th_attention_row(out + ((size_t)b * T + t) * C + h * hs, a, base + (size_t)t * C3, base + C,
                                 base + 2 * C, t + 1, (size_t)C3, hs, scale);
                for (int t2 = t + 1; t2 < T; t2++) a[t2] = 0.0f;
            }
        }
    }
}

/* Σ x[i]·y[i] in a fixed order: with AVX2, eight lane sums over blocks of 8 (multiply, then
 * add) added in a fixed tree, then the tail in index order; otherwise in index order. */
static inline float dot_fixed(const float *x, const float *y, int n) {
    int i = 0;
    float s = 0.0f;
#ifdef TH_EXP8
    if (n >= 8) {
        __m256 acc = _mm256_mul_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(y));
        for (i = 8; i + 8 <= n; i += 8)
            acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        s = _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
    }
#endif
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

void th_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                           const float *att, int B, int T, int C, int NH) {
    // one (b, h) pair owns its slice of dq, dk and dv, so threads never share a sum
    int C3 = 3 * C, hs = C / NH;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < NH; h++) {
            float *datt = scratch + ((size_t)b * NH + h) * T;
            for (int t = 0; t < T; t++) {
                const float *a = att + (((size_t)b * NH + h) * T + t) * T;
                const float *d = dout + ((size_t)b * T + t) * C + h * hs;
                const float *q = qkv + ((size_t)b * T + t) * C3 + h * hs;
                float *dq = dqkv + ((size_t)b * T + t) * C3 + h * hs;
                // through out = att · v
                for (int t2 = 0; t2 <= t; t2++) {
                    const float *v = qkv + ((size_t)b * T + t2) * C3 + 2 * C + h * hs;
                    float *dv = dqkv + ((size_t)b * T + t2) * C3 + 2 * C + h * hs;
                    datt[t2] = dot_fixed(d, v, hs);
                    for (int i = 0; i < hs; i++) dv[i] += a[t2] * d[i];
                }
                // through the softmax: dpre = att · (datt - Σ att·datt)
                float s = 0.0f;
                for (int t2 = 0; t2 <= t; t2++) s += a[t2] * datt[t2];
                // through pre = scale · q·k
                for (int t2 = 0; t2 <= t; t2++) {
                    float dpre = a[t2] * (datt[t2] - s) * scale;
                    const float *k = qkv + ((size_t)b * T + t2) * C3 + C + h * hs;
                    float *dk = dqkv + ((size_t)b * T + t2) * C3 + C + h * hs;
                    for (int i = 0; i < hs; i++) {
                        dq[i] += dpre * k[i];
                        dk[i] += dpre * q[i];
                    }
                }
            }
        }
    }
}

/* ---------------------------------------------------------------------------------
 * GELU (tanh approximation) and residual */

#define GELU_SCALE 0.7978845608028654f /* sqrt(2/pi) */

static inline float gelu_y(float x) { return GELU_SCALE * (x + 0.044715f * x * x * x); }

static inline float gelu_scalar(float x) { return x / (1.0f + th_exp_poly(-2.0f * gelu_y(x))); }

static inline float gelu_grad_scalar(float x) {
    float sg = 1.0f / (1.0f + th_exp_poly(-2.0f * gelu_y(x)));
    return sg + 2.0f * x * sg * (1.0f - sg) * GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x);
}

#ifdef TH_EXP8
/* gelu_scalar and gelu_grad_scalar on 8 floats, operation for operation (the same bits). */
static inline __m256 gelu_y8(__m256 x) {
    __m256 cube = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), x), x), x);
    return _mm256_mul_ps(_mm256_set1_ps(GELU_SCALE), _mm256_add_ps(x, cube));
}
static inline __m256 gelu8(__m256 x) {
    __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), gelu_y8(x)));
    return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}
static inline __m256 gelu_grad8(__m256 x) {
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), gelu_y8(x)));
    __m256 sg = _mm256_div_ps(one, _mm256_add_ps(one, e));
    __m256 t = _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(2.0f), x), sg);
    t = _mm256_mul_ps(_mm256_mul_ps(t, _mm256_sub_ps(one, sg)), _mm256_set1_ps(GELU_SCALE));
    __m256 dy = _mm256_add_ps(one, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(3.0f * 0.044715f), x), x));
    return _mm256_add_ps(sg, _mm256_mul_ps(t, dy));
}
#endif

/* 0.5·x·(1 + tanh(y)) = x·σ(2y) = x / (1 + e^(-2y)), y = √(2/π)·(x + 0.044715·x³): one
 * vectorized exp (th_exp_poly) and a division instead of libm's scalar tanhf, and no
 * cancellation where the output is small (1 + tanh(y) for y ≪ 0 loses its digits to it).
 * Tested against the tanh form in double: forward within 1e-5 relative (the float rounding
 * of y, amplified by |2y| where GELU is tiny), backward within 1e-5 of max(|gelu'|, 0.1).
 * The backward: gelu' = σ + 2x·σ(1-σ)·y'. Blocks of 8 go to the AVX2 form, the tail to the
 * scalar one (the same bits either way), so the bits depend on neither the thread count nor
 * the compute backend. */
void th_gelu_forward(float *out, const float *inp, int N) {
    int n8 = N / 8;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n8; b++) {
#ifdef TH_EXP8
        _mm256_storeu_ps(out + 8 * b, gelu8(_mm256_loadu_ps(inp + 8 * b)));
#else
        for (int i = 8 * b; i < 8 * b + 8; i++) out[i] = gelu_scalar(inp[i]);
#endif
    }
    for (int i = 8 * n8; i < N; i++) out[i] = gelu_scalar(inp[i]);
}

void th_gelu_backward_inplace(float *d, const float *inp, int N) {
    int n8 = N / 8;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n8; b++) {
#ifdef TH_EXP8
        __m256 g = gelu_grad8(_mm256_loadu_ps(inp + 8 * b));
        _mm256_storeu_ps(d + 8 * b, _mm256_mul_ps(_mm256_loadu_ps(d + 8 * b), g));
#else
        for (int i = 8 * b; i < 8 * b + 8; i++) d[i] *= gelu_grad_scalar(inp[i]);
#endif
    }
    for (int i = 8 * n8; i < N; i++) d[i] *= gelu_grad_scalar(inp[i]);
}

void th_residual_forward(float *out, const float *a, const float *b, int N) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) out[i] = a[i] + b[i];
}

/* ---------------------------------------------------------------------------------
 * cross-entropy */

/* Σ_v e^(row[v] - maxv) in a fixed order: with AVX2, eight lane sums over blocks of 8 (exp8),
 * added in a fixed tree, then the tail in index order; otherwise one sum in index order.
 * A NaN anywhere gives NaN. */
static float sum_exp(const float *row, int V, float maxv) {
    int v = 0;
    float sum = 0.0f;
#ifdef TH_EXP8
    __m256 acc = _mm256_setzero_ps(), mv = _mm256_set1_ps(maxv);
    for (; v + 8 <= V; v += 8) acc = _mm256_add_ps(acc, exp8(_mm256_sub_ps(_mm256_loadu_ps(row + v), mv)));
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    sum = _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
#endif
    for (; v < V; v++) sum += th_exp_poly(row[v] - maxv);
    return sum;
}

int th_crossentropy_forward(float *losses, float *lse, const float *logits, const int *targets, int N,
                            int V) {
    int counted = 0;
#pragma omp parallel for schedule(static) reduction(+ : counted)
    for (int i = 0; i < N; i++) {
        const float *row = logits + (size_t)i * V;
        float maxv = -INFINITY;
#pragma omp simd reduction(max : maxv)
        for (int v = 0; v < V; v++) maxv = row[v] > maxv ? row[v] : maxv;
        float l = maxv + logf(sum_exp(row, V, maxv));
        lse[i] = l;
        if (targets[i] == TH_IGNORE_INDEX) {
            losses[i] = 0.0f;
        } else {
            losses[i] = l - row[targets[i]];
            counted++;
        }
    }
    return counted;
}

void th_crossentropy_backward_inplace(float *logits, const float *lse, const int *targets, int N, int V,
                                      float scale) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        float *row = logits + (size_t)i * V;
        if (targets[i] == TH_IGNORE_INDEX) {
            memset(row, 0, sizeof(float) * (size_t)V);
            continue;
        }
        float l = lse[i];
        int v = 0;
#ifdef TH_EXP8
        __m256 lv = _mm256_set1_ps(l), sv = _mm256_set1_ps(scale);
        for (; v + 8 <= V; v += 8)
            _mm256_storeu_ps(row + v, _mm256_mul_ps(exp8(_mm256_sub_ps(_mm256_loadu_ps(row + v), lv)), sv));
#endif
        for (; v < V; v++) row[v] = th_exp_poly(row[v] - l) * scale;
        row[targets[i]] -= scale;
    }
}
