/* compute.h (internal to the model module): the compute backend interface (ggml style: a
 * static const table of function pointers per backend, optional entries NULL, a probe score)
 * and the matmul entry points the model calls, which dispatch to the selected backend.
 * Weights are stored (N, K) = (out, in), row-major; every array is dense row-major. */
#ifndef THERMO_MODEL_COMPUTE_H
#define THERMO_MODEL_COMPUTE_H

#include <stdint.h>

#include "thermo/core.h"

/* Bumped whenever th_compute_ops changes; a backend built against another version is refused. */
#define TH_COMPUTE_API_VERSION 3

typedef void (*th_mm_forward_fn)(float *out, const float *inp, const float *w, const float *bias, int M, int N,
                                 int K);
typedef void (*th_mm_backward_fn)(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                                  const float *w, int M, int N, int K);
/* th_mm_backward with some outputs overwritten rather than accumulated into: set is a mask of
 * TH_MM_SET_DINP (dinp =) and TH_MM_SET_DW (dw = and dbias =). */
typedef void (*th_mm_backward_set_fn)(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                                      const float *w, int M, int N, int K, int set);
#define TH_MM_SET_DINP 1
#define TH_MM_SET_DW 2
typedef void (*th_mm_gemv_fn)(float *out, const float *x, const float *w, const float *bias, int N, int K);

/* A compute backend. probe runs on this machine, at run time (cpuid, not the compiler's
 * flags): 0 means the backend cannot run here and none of its kernels may ever be called;
 * otherwise a score, the highest wins "auto". Kernel entries may be NULL: the naive kernel
 * runs instead (gemv NULL: the backend's own forward with M = 1). A backend fills in only
 * what it accelerates, and must follow the contracts of the th_mm_* functions below. */
typedef struct th_compute_ops {
    const char *name;
    int api_version; /* TH_COMPUTE_API_VERSION */
    int (*probe)(void);
    const char *needs; /* what a probe of 0 lacks, for messages ("a CPU with AVX-512F"); NULL: nothing */
    th_mm_forward_fn mm_forward;
    th_mm_backward_fn mm_backward;
    th_mm_gemv_fn gemv;
    /* optional: a library with its own thread pool follows th_threads_set (called for every
     * registered backend that has it, selected or not) */
    void (*set_threads)(int n);
    /* Reserved for backends that own the weight layout (bf16, q8 blocks, device memory); NULL
     * in every backend today, and the model never calls it yet. The contract it is for:
     * convert one (N, K) float weight into the backend's layout, allocated with th_alloc into
     * *packed (freed with th_free), and the model then passes *packed as `w` to this backend's
     * kernels. Changing a weight means packing it again. */
    th_status (*pack_weight)(void **packed, const float *w, int N, int K);
    /* optional (API version 2): bf16 mixed precision, the contracts of th_mm_forward_bf16 and
     * th_mm_backward_bf16 below; NULL: the naive bf16 loops run instead */
    th_mm_forward_fn mm_forward_bf16;
    th_mm_backward_fn mm_backward_bf16;
    /* optional (API version 3): the contracts of th_mm_backward_set and th_mm_backward_set_bf16
     * below, which save the zeroing pass and the read of the outputs; NULL: the outputs are
     * zeroed and the accumulating kernel runs */
    th_mm_backward_set_fn mm_backward_set;
    th_mm_backward_set_fn mm_backward_set_bf16;
} th_compute_ops;

/* The registered backends (the registry, with its order, is in compute.c). */
extern const th_compute_ops th_compute_naive_ops, th_compute_blas_ops, th_compute_avx512_ops,
    th_compute_avx2_ops;

/* The checks behind th_compute_select for a backend given by its table (the registry's, or a
 * test's own): TH_ERR_UNSUPPORTED if its api_version is not TH_COMPUTE_API_VERSION or its
 * probe is 0 (the message says what it needs); the selection is unchanged then. */
th_status th_compute_select_ops(const th_compute_ops *ops);

/* The backend in use (resolving "auto" on first use); never NULL. */
const th_compute_ops *th_compute_ops_current(void);

/* out (M, N) = inp (M, K) · w (N, K)ᵀ + bias (N); bias may be NULL. Overwrites out.
 * M = 1 (decode) goes to the backend's gemv. */
void th_mm_forward(float *out, const float *inp, const float *w, const float *bias, int M, int N, int K);

/* Backward of th_mm_forward, accumulating:
 *   dinp (M, K) += dout (M, N) · w (N, K)
 *   dw   (N, K) += dout (M, N)ᵀ · inp (M, K)
 *   dbias (N)   += Σ over the M rows of dout
 * Any of dinp, dw, dbias may be NULL to skip that gradient. Every sum runs in a fixed order
 * for a given thread count (avx512, avx2, naive: for any thread count; avx512 and avx2: one
 * FMA chain per element in index order). */
void th_mm_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                    int M, int N, int K);

/* th_mm_backward with the outputs named in set (TH_MM_SET_DINP, TH_MM_SET_DW: dw and dbias)
 * overwritten instead of accumulated into: the same bits as zeroing them first and calling
 * th_mm_backward (a sum that starts at +0 loses nothing by starting there), without the
 * zeroing pass and without reading them. */
void th_mm_backward_set(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                        int M, int N, int K, int set);

/* The naive kernels (matmul_naive.c): one output element per loop iteration, summed in index
 * order. The oracle for tests and the fallback for every NULL entry. */
void th_mm_forward_naive(float *out, const float *inp, const float *w, const float *bias, int M, int N, int K);
void th_mm_backward_naive(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                          const float *w, int M, int N, int K);

/* x rounded to the nearest bf16 (ties to even), returned as the float it denotes; a NaN
 * stays a quiet NaN, values beyond bf16's largest finite round to infinity. bf16 keeps f32's
 * 8 exponent bits, so nothing that is finite and normal in f32 underflows. */
static inline float th_bf16_round(float x) {
    union {
        float f;
        uint32_t u;
    } v = {x};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) v.u |= 0x00400000u;
    else v.u += 0x7fffu + ((v.u >> 16) & 1u);
    v.u &= 0xffff0000u;
    return v.f;
}

/* bf16 mixed precision: th_mm_forward and th_mm_backward with every matmul operand (inp, w,
 * dout) rounded to bf16 (th_bf16_round) and the products summed in fp32; the bias is added
 * and dbias summed in fp32, unrounded. Same accumulation contract and NULL skips. Every sum
 * runs in a fixed order for any thread count (avx2, avx512, naive). Two orders exist: index
 * order, one fp32 multiply-add per product (naive, avx2, avx512 without AVX512_BF16: the same
 * bits as th_mm_*_naive_bf16), and pairs (avx512 with vdpbf16ps: each pair of the reduction
 * added odd product first, products unrounded, DAZ/FTZ: the bits of th_mm_*_pairs_bf16 in
 * matmul_avx512.h; fp32 rounding differences from index order, far below bf16's). bf16 keeps
 * fp32's exponent range, so no loss scaling is needed: gradients that fp32 holds as normals
 * stay normal; only the pair path flushes subnormals (below 2^-126), as fp32 FTZ would.
 * Weights and activations stay fp32 in memory: backends round them while packing, so no bf16
 * copy outlives a call. */
void th_mm_forward_bf16(float *out, const float *inp, const float *w, const float *bias, int M, int N, int K);
void th_mm_backward_bf16(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                         const float *w, int M, int N, int K);

/* th_mm_backward_bf16 with the outputs in set overwritten (as th_mm_backward_set). */
void th_mm_backward_set_bf16(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                             const float *w, int M, int N, int K, int set);

/* The naive bf16 loops (matmul_naive.c), in index order: the oracle for the index-order bf16
 * backends (the pair order's is th_mm_*_pairs_bf16, matmul_avx512.h). */
void th_mm_forward_naive_bf16(float *out, const float *inp, const float *w, const float *bias, int M, int N,
                              int K);
void th_mm_backward_naive_bf16(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                               const float *w, int M, int N, int K);

#endif
