/* matmul_avx512.h (internal to the model module): hand-written AVX-512 matmuls of a linear
 * layer, the kernels of the "avx512" compute backend (th_compute_avx512_ops, compute.h: its
 * bf16 and set entries are reached through that table), also linked by the kernel lab in
 * dev/matmul; and the oracle of its bf16 pair arithmetic. Weights are (N, K) = (out, in),
 * row-major; every array is dense row-major and may be unaligned. However the work is split
 * between OpenMP threads, every output element is reduced in one fixed order: results are
 * bit-identical for any thread count. The kernels execute AVX-512F instructions whatever the
 * build's -march: call them only where th_mm_avx512_available() says 1. They exist only in
 * x86-64 builds. Measurements: dev/matmul/README.md. */
#ifndef THERMO_MODEL_MATMUL_AVX512_H
#define THERMO_MODEL_MATMUL_AVX512_H

/* 1 if the kernels were compiled in and the CPU running this (asked at run time, cpuid and
 * the OS's register state) has AVX-512F, else 0. */
int th_mm_avx512_available(void);

/* out (M, N) = inp (M, K) · w (N, K)ᵀ + bias (N); bias may be NULL. Overwrites out.
 * Allocates packing buffers (up to ~4 MiB shared, ~1 MiB per thread); if that fails it falls back
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

/* 1 if the bf16 kernels can use vdpbf16ps here: the kernels were compiled in, and the CPU has
 * AVX-512F and AVX512_BF16 (cpuid leaf 7 subleaf 1, EAX bit 5) and the OS saves the zmm state
 * (OSXSAVE, XCR0 bits 1, 2, 5, 6, 7), else 0. */
int th_mm_avx512_bf16_dot_available(void);

/* Whether the avx512 backend's bf16 entries use vdpbf16ps (the pair layout, checked against
 * th_mm_*_pairs_bf16) or widen bf16 to fp32 (the index-order layout, the same bits as
 * th_mm_*_naive_bf16). want < 0: only asks (the default is "where available"); 0: widen;
 * 1: vdpbf16ps where available. Returns the choice now in force. For tests and benchmarks:
 * process-wide, not to be changed while a matmul runs. */
int th_mm_avx512_bf16_dot(int want);

/* One step of vdpbf16ps on one lane, as measured on this project's hosts (AMD Zen 5, 8 M
 * random cases over the whole exponent range, no mismatch; it is what Intel's SDM states):
 * x0, y0 the even and x1, y1 the odd elements of a pair, bf16 values given as the floats they
 * denote. Inputs (the four and acc) that are subnormal count as zero (DAZ); each product is
 * exact (no rounding and no overflow: its exponent range is wider than fp32's); then
 * t = acc + x1·y1 and t + x0·y0 are each rounded to fp32, nearest even, and a subnormal
 * result is flushed to a zero of its sign (FTZ), whatever MXCSR says. So the odd product is
 * added first, and an element is not one FMA chain in index order: the sum rounds twice per
 * pair, in another order. */
float th_mm_bf16_pair_step(float acc, float x0, float y0, float x1, float y1);

/* The pair oracle, plain C on any CPU: th_mm_forward_naive_bf16 and th_mm_backward_naive_bf16
 * (compute.h) with each reduction taken in pairs (0, 1), (2, 3), … of its index, the last one
 * of an odd length paired with 0, through th_mm_bf16_pair_step from the bias (forward), or
 * from the value in dinp/dw (backward, accumulating). dbias (N) += the fp32 sum of dout's
 * rows in order, unrounded. The avx512 backend's BF_PAIRS kernels give these very bits. */
void th_mm_forward_pairs_bf16(float *out, const float *inp, const float *w, const float *bias, int M, int N, int K);
void th_mm_backward_pairs_bf16(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                               const float *w, int M, int N, int K);

#endif
