/* matmul_naive.c: the "naive" compute backend, plain loops with one output element per loop
 * iteration summed in index order. It runs everywhere, is the oracle the tests hold every
 * other backend to, and serves every kernel entry a backend leaves NULL. */
#include "model/compute.h"

#include <stddef.h>

/* An operand as the kernel multiplies it: itself, or rounded to bf16 (th_bf16_round) for the
 * bf16 mixed-precision oracle. `bf16` is a constant at every call, so each public kernel below
 * compiles to its own plain loop. */
static inline float operand(float x, int bf16) { return bf16 ? th_bf16_round(x) : x; }

static inline void forward_loops(float *out, const float *inp, const float *w, const float *bias, int M, int N,
                                 int K, int bf16) {
    // out (M,N) = inp (M,K) · w (N,K)ᵀ + bias (N)
#pragma omp parallel for collapse(2) schedule(static)
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)m * K;
            const float *wr = w + (size_t)n * K;
            float acc = bias ? bias[n] : 0.0f;
            for (int k = 0; k < K; k++) acc += operand(x[k], bf16) * operand(wr[k], bf16);
            out[(size_t)m * N + n] = acc;
        }
    }
}

static inline void backward_loops(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                                  const float *w, int M, int N, int K, int bf16) {
    // dinp (M,K) += dout (M,N) · w (N,K)
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int m = 0; m < M; m++) {
            const float *d = dout + (size_t)m * N;
            float *dx = dinp + (size_t)m * K;
            for (int n = 0; n < N; n++) {
                const float *wr = w + (size_t)n * K;
                float dn = operand(d[n], bf16);
                for (int k = 0; k < K; k++) dx[k] += dn * operand(wr[k], bf16);
            }
        }
    }
    // dw (N,K) += dout (M,N)ᵀ · inp (M,K); dbias (N) += Σ_m dout (never rounded: a reduction)
    if (dw || dbias) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            float db = 0.0f;
            for (int m = 0; m < M; m++) {
                float dn = dout[(size_t)m * N + n];
                if (dw) {
                    float *dwr = dw + (size_t)n * K;
                    const float *x = inp + (size_t)m * K;
                    float dr = operand(dn, bf16);
                    for (int k = 0; k < K; k++) dwr[k] += dr * operand(x[k], bf16);
                }
                db += dn;
            }
            if (dbias) dbias[n] += db;
        }
    }
}

void th_mm_forward_naive(float *out, const float *inp, const float *w, const float *bias, int M, int N, int K) {
    forward_loops(out, inp, w, bias, M, N, K, 0);
}

void th_mm_backward_naive(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                          const float *w, int M, int N, int K) {
    backward_loops(dinp, dw, dbias, dout, inp, w, M, N, K, 0);
}

static int probe_naive(void) { return 100; }

const th_compute_ops th_compute_naive_ops = {
    .name = "naive",
    .api_version = TH_COMPUTE_API_VERSION,
    .probe = probe_naive,
    .mm_forward = th_mm_forward_naive,
    .mm_backward = th_mm_backward_naive,
};

/* bf16 mixed precision: the same loops with each operand rounded (th_bf16_round) */

void th_mm_forward_naive_bf16(float *out, const float *inp, const float *w, const float *bias, int M, int N,
                              int K) {
    forward_loops(out, inp, w, bias, M, N, K, 1);
}

void th_mm_backward_naive_bf16(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                               const float *w, int M, int N, int K) {
    backward_loops(dinp, dw, dbias, dout, inp, w, M, N, K, 1);
}
