/* kernels.h (internal to the model module; th_ prefixed, being symbols of the static library):
 * the GPT-2 layers as forward/backward pairs.
 * Arguments go outputs, inputs, weights, sizes. Backward functions accumulate (+=) into
 * their d-prefixed outputs. Every reduction runs in an order fixed by the sizes alone,
 * never by the thread count, so results are bit-identical across thread counts. */
#ifndef THERMO_MODEL_KERNELS_H
#define THERMO_MODEL_KERNELS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* out (N, C) = wte[tokens[i]] + wpe[pos0 + i % T] for N = B·T rows. */
void th_encoder_forward(float *out, const int *tokens, const float *wte, const float *wpe, int B,
                        int T, int C, int pos0);
void th_encoder_backward(float *dwte, float *dwpe, const float *dout, const int *tokens, int B, int T,
                         int C);

/* out (N, C) = (inp - mean) · rstd · weight + bias per row; mean, rstd (N) may be NULL. */
void th_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                          const float *bias, int N, int C, float eps);
void th_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                           const float *inp, const float *weight, const float *mean, const float *rstd,
                           int N, int C);

/* One query row of one head: att (n_keys) = softmax(scale · q·k[t2]) over the first n_keys
 * keys, out (hs) = Σ att[t2] · v[t2]. Key and value rows are kv_stride floats apart. Shared by
 * the training forward and KV-cache inference so both compute the same sums. */
void th_attention_row(float *out, float *att, const float *q, const float *k, const float *v, int n_keys,
                      size_t kv_stride, int hs, float scale);

/* Causal multi-head attention over a full (B, T) batch.
 * qkv is (B, T, 3C) with q, k, v each (NH, hs) per position; out is (B, T, C);
 * att (B, NH, T, T) keeps the softmax probabilities for the backward. */
void th_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH);
/* dqkv (B, T, 3C) +=; scratch holds B·NH·T floats. */
void th_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv,
                           const float *att, int B, int T, int C, int NH);

/* GELU, tanh approximation (HF "gelu_new"), elementwise over N. */
void th_gelu_forward(float *out, const float *inp, int N);
/* d = d · gelu'(inp), in place. */
void th_gelu_backward_inplace(float *d, const float *inp, int N);

/* out = a + b, elementwise over N (out may alias a). */
void th_residual_forward(float *out, const float *a, const float *b, int N);

/* losses (N) = logsumexp(logits row) - logits[target]; lse (N) keeps the logsumexp.
 * Rows whose target is TH_IGNORE_INDEX get loss 0. Returns the number of counted rows. */
int th_crossentropy_forward(float *losses, float *lse, const float *logits, const int *targets, int N,
                            int V);
/* In place: logits (N, V) become d(scale · Σ losses)/dlogits = scale · (softmax - onehot);
 * ignored rows become 0. */
void th_crossentropy_backward_inplace(float *logits, const float *lse, const int *targets, int N, int V,
                                      float scale);

/* exp(x) in a form the compiler vectorizes (glibc's vector expf needs -ffast-math, which
 * this project does not use): x = n·ln2 + r with |r| <= ln2/2, e^r by its Taylor series to
 * r^6 (truncation < 2e-7 relative), 2^n built in the exponent bits. Inputs are clamped to
 * [-87, 88], the normal float range; NaN stays NaN. Shared by the cross-entropy
 * (kernels.c) and attention's softmax (attention.c). */
static inline float th_exp_poly(float x) {
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


#endif
