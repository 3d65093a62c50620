/* matmul_avx512.h (internal to the model module): hand-written AVX-512 matmuls of a linear
 * layer, the kernels of the "avx512" compute backend (th_compute_avx512_ops, compute.h), also
 * linked alone by the kernel lab in dev/matmul. Weights are (N, K) = (out, in), row-major;
 * every array is dense row-major and may be unaligned. Work is split between OpenMP threads
 * over output tiles only, so every output element is reduced in one fixed order: results are
 * bit-identical for any thread count. The kernels execute AVX-512F instructions whatever the
 * build's -march: call them only where th_mm_avx512_available() says 1. They exist only in
 * x86-64 builds. Measurements: dev/matmul/README.md. */
#ifndef THERMO_MODEL_MATMUL_AVX512_H
#define THERMO_MODEL_MATMUL_AVX512_H

/* 1 if the kernels were compiled in and the CPU running this (asked at run time, cpuid and
 * the OS's register state) has AVX-512F, else 0. */
int th_mm_avx512_available(void);

/* out (M, N) = inp (M, K) · w (N, K)ᵀ + bias (N); bias may be NULL. Overwrites out.
 * Allocates packing buffers per thread (about 1.5 MB); if that allocation fails it falls back
 * to plain loops (correct, slow, rounded differently), so it never fails. */
void th_mm_avx512_forward(float *out, const float *inp, const float *w, const float *bias, int M,
                          int N, int K);

/* Backward of th_mm_avx512_forward, accumulating:
 *   dinp (M, K) += dout (M, N) · w (N, K)
 *   dw   (N, K) += dout (M, N)ᵀ · inp (M, K)
 *   dbias (N)   += Σ over the M rows of dout
 * Any of dinp, dw, dbias may be NULL to skip that gradient. */
void th_mm_avx512_backward(float *dinp, float *dw, float *dbias, const float *dout,
                           const float *inp, const float *w, int M, int N, int K);

/* M = 1 (decode): out (N) = w (N, K) · x (K) + bias (N); bias may be NULL. Memory-bound:
 * rows are split between threads, each row is one dot product in a fixed order. */
void th_mm_avx512_gemv(float *out, const float *x, const float *w, const float *bias, int N,
                       int K);

#endif
