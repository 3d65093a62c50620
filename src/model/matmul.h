/* matmul.h (internal to the model module): the matmuls of a linear layer, dispatched to
 * the selected backend (naive loops, OpenBLAS, hand-written AVX-512). Weights are stored
 * (N, K) = (out, in), row-major. All pointers are dense row-major arrays. */
#ifndef THERMO_MODEL_MATMUL_H
#define THERMO_MODEL_MATMUL_H

/* out (M, N) = inp (M, K) · w (N, K)ᵀ + bias (N); bias may be NULL. Overwrites out. */
void th_mm_forward(float *out, const float *inp, const float *w, const float *bias, int M, int N,
                   int K);

/* Backward of th_mm_forward, accumulating:
 *   dinp (M, K) += dout (M, N) · w (N, K)
 *   dw   (N, K) += dout (M, N)ᵀ · inp (M, K)
 *   dbias (N)   += Σ over the M rows of dout   (skipped if dbias is NULL)
 * Every sum runs in a fixed order for a given thread count. */
void th_mm_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                    const float *w, int M, int N, int K);

/* The naive twins, kept as the oracle for tests and the fallback. */
void th_mm_forward_naive(float *out, const float *inp, const float *w, const float *bias, int M,
                         int N, int K);
void th_mm_backward_naive(float *dinp, float *dw, float *dbias, const float *dout,
                          const float *inp, const float *w, int M, int N, int K);

#endif
