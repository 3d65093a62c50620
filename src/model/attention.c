/* attention.c: one query row of causal attention (th_attention_row, shared by the training
 * forward and KV-cache inference), vectorized in an order fixed by the head size alone: q·k
 * in eight lanes reduced by one fixed tree, the softmax's exponentials by a polynomial the
 * compiler vectorizes, p·v lane-wise in key order. So results never depend on the thread
 * count, and decode cost grows with the context only by the bytes of keys and values. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "model/kernels.h"

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

/* e^x as kernels.c's exp_vec: x = n·ln2 + r, e^r by Taylor to r^6 (< 2e-7 relative), 2^n in
 * the exponent bits; inputs clamped to [-87, 88], NaN stays NaN. Softmax arguments here are <= 0. */
static inline float exp_poly(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693145751953125f - n * 1.42860682030941723e-6f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666679f + r * (0.00833333377f + r * 0.00138888892f)))));
    // NaN: r and so p are NaN already; n is zeroed first (converting NaN to int is undefined)
    int32_t bits = ((int32_t)(n == n ? n : 0.0f) + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

void th_attention_row(float *out, float *att, const float *q, const float *k, const float *v, int n_keys,
                      size_t kv_stride, int hs, float scale) {
    // att[t2] = softmax over t2 < n_keys of scale · q·k[t2]; out = Σ att[t2] · v[t2]
    float maxv = -INFINITY;
    for (int t2 = 0; t2 < n_keys; t2++) {
        float dot = dot_fixed(q, k + (size_t)t2 * kv_stride, hs) * scale;
        att[t2] = dot;
        maxv = dot > maxv ? dot : maxv;
    }
    for (int t2 = 0; t2 < n_keys; t2++) att[t2] = exp_poly(att[t2] - maxv);
    float sum = 0.0f;
    for (int t2 = 0; t2 < n_keys; t2++) sum += att[t2];
    float inv = 1.0f / sum;
    for (int t2 = 0; t2 < n_keys; t2++) att[t2] *= inv;
    int h8 = hs & ~7;
    for (int i = 0; i < hs; i++) out[i] = 0.0f;
    for (int t2 = 0; t2 < n_keys; t2++) {
        const float *vr = v + (size_t)t2 * kv_stride;
        float p = att[t2];
        for (int i = 0; i < h8; i += 8) {
            v8 o, w;
            LOAD8(o, out + i);
            LOAD8(w, vr + i);
            o += p * w;
            memcpy(out + i, &o, sizeof o);
        }
        for (int i = h8; i < hs; i++) out[i] += p * vr[i];
    }
}
