/* matmul_naive.c: the "naive" compute backend, plain loops with one output element per loop
 * iteration summed in index order. It runs everywhere, is the oracle the tests hold every
 * other backend to, and serves every kernel entry a backend leaves NULL. */
#include "model/compute.h"

#include <stddef.h>

void th_mm_forward_naive(float *out, const float *inp, const float *w, const float *bias, int M, int N, int K) {
    // out (M,N) = inp (M,K) · w (N,K)ᵀ + bias (N)
#pragma omp parallel for collapse(2) schedule(static)
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)m * K;
            const float *wr = w + (size_t)n * K;
            float acc = bias ? bias[n] : 0.0f;
            for (int k = 0; k < K; k++) acc += x[k] * wr[k];
            out[(size_t)m * N + n] = acc;
        }
    }
}

void th_mm_backward_naive(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                          const float *w, int M, int N, int K) {
    // dinp (M,K) += dout (M,N) · w (N,K)
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int m = 0; m < M; m++) {
            const float *d = dout + (size_t)m * N;
            float *dx = dinp + (size_t)m * K;
            for (int n = 0; n < N; n++) {
                const float *wr = w + (size_t)n * K;
                float dn = d[n];
                for (int k = 0; k < K; k++) dx[k] += dn * wr[k];
            }
        }
    }
    // dw (N,K) += dout (M,N)ᵀ · inp (M,K); dbias (N) += Σ_m dout
    if (dw || dbias) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            float db = 0.0f;
            for (int m = 0; m < M; m++) {
                float dn = dout[(size_t)m * N + n];
                if (dw) {
                    float *dwr = dw + (size_t)n * K;
                    const float *x = inp + (size_t)m * K;
                    for (int k = 0; k < K; k++) dwr[k] += dn * x[k];
                }
                db += dn;
            }
            if (dbias) dbias[n] += db;
        }
    }
}

static int probe_naive(void) { return 100; }

const th_compute_ops th_compute_naive_ops = {
    .name = "naive",
    .api_version = TH_COMPUTE_API_VERSION,
    .probe = probe_naive,
    .mm_forward = th_mm_forward_naive,
    .mm_backward = th_mm_backward_naive,
};

/* ---------------------------------------------------------------------------------
 * bf16 mixed precision: the loops above with each operand rounded (th_bf16_round) */

void th_mm_forward_naive_bf16(float *out, const float *inp, const float *w, const float *bias, int M, int N,
                              int K) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)m * K;
            const float *wr = w + (size_t)n * K;
            float acc = bias ? bias[n] : 0.0f;
            for (int k = 0; k < K; k++) acc += th_bf16_round(x[k]) * th_bf16_round(wr[k]);
            out[(size_t)m * N + n] = acc;
        }
    }
}

void th_mm_backward_naive_bf16(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                               const float *w, int M, int N, int K) {
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int m = 0; m < M; m++) {
            const float *d = dout + (size_t)m * N;
            float *dx = dinp + (size_t)m * K;
            for (int n = 0; n < N; n++) {
                const float *wr = w + (size_t)n * K;
                float dn = th_bf16_round(d[n]);
                for (int k = 0; k < K; k++) dx[k] += dn * th_bf16_round(wr[k]);
            }
        }
    }
    if (dw || dbias) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            float db = 0.0f;
            for (int m = 0; m < M; m++) {
                float dn = dout[(size_t)m * N + n];
                if (dw) {
                    float *dwr = dw + (size_t)n * K;
                    const float *x = inp + (size_t)m * K;
                    float dr = th_bf16_round(dn);
                    for (int k = 0; k < K; k++) dwr[k] += dr * th_bf16_round(x[k]);
                }
                db += dn;
            }
            if (dbias) dbias[n] += db;
        }
    }
}
