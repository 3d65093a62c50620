/* lowp.h (internal to the model module): inference weights in bf16, f16 or q8_0 blocks,
 * packed once from f32, the kernels that read them (AVX-512 and AVX2/FMA/F16C versions, the
 * widest the CPU runs chosen by cpuid at run time, and a naive twin of each that is the
 * oracle) and the model's packed state. */
#ifndef THERMO_MODEL_LOWP_H
#define THERMO_MODEL_LOWP_H

#include <stddef.h>
#include <stdint.h>

#include "thermo/model.h"

#define LOWP_QK 32 /* weights per q8_0 block, as ggml's Q8_0 */

/* One q8_0 block: d · qs[i] is the weight; d an IEEE half (ggml's block_q8_0 layout). */
typedef struct {
    uint16_t d;
    int8_t qs[LOWP_QK];
} lowp_q8_block;

/* Scalar conversions: float to half and to bf16 round to nearest, ties to even (what
 * vcvtps2ph with rounding mode 0 does); NaN stays NaN. */
uint16_t lowp_f32_to_f16(float f);
float lowp_f16_to_f32(uint16_t h);
uint16_t lowp_f32_to_bf16(float f);
float lowp_bf16_to_f32(uint16_t h);

/* One (rows, K) weight in a packed format. Row r starts at data + r · row_bytes. */
typedef struct {
    th_dtype dtype;
    int rows, K;
    size_t row_bytes;
    uint8_t *data; /* th_alloc'ed, NULL for f32 */
} lowp_weight;

/* Bytes of one packed row of K weights (K % 32 == 0 for Q8). */
size_t lowp_row_bytes(th_dtype d, int K);
/* Packs rows x K floats; TH_ERR_NOMEM, TH_ERR_INVALID for q8 with K not a multiple of 32. */
th_status lowp_pack(lowp_weight *w, th_dtype d, const float *src, int rows, int K);
void lowp_weight_free(lowp_weight *w);
/* out (K) = row r of w, as f32. */
void lowp_dequant_row(float *out, const lowp_weight *w, int r);
/* out (K, a multiple of 32) = the K / 32 q8_0 blocks b as f32: d · q, exact in f32 (an 11-bit
 * mantissa times an 8-bit integer). Weight rows and the q8 KV cache both read blocks so. */
void lowp_dequant_q8(float *out, const lowp_q8_block *b, int K);

/* An activation row quantized to q8_0 blocks (K / 32 of them), for the q8 dot products.
 * The _avx2 twin writes the same bytes for finite x (call it only if lowp_avx2_usable()). */
void lowp_quantize_q8(lowp_q8_block *out, const float *x, int K);
void lowp_quantize_q8_avx2(lowp_q8_block *out, const float *x, int K);
/* The same bytes with AVX-512 (call it only if lowp_avx512_usable()). */
void lowp_quantize_q8_avx512(lowp_q8_block *out, const float *x, int K);

/* out (N) = bias (or 0) + W[row0 .. row0+N) · x, x of K floats (for Q8, xq holds x quantized
 * by lowp_quantize_q8 and x is not read). Rows split across threads; every row's sum runs in
 * one order fixed by K (the kernel's lanes, then a fixed tree), so results do not depend on
 * the thread count, and the naive twin lowp_gemv_ref with the kernel's lane count sums in
 * the same order: the two agree to the bit. */
typedef void (*lowp_gemv_fn)(float *out, const lowp_weight *w, int row0, const float *x,
                             const lowp_q8_block *xq, const float *bias, int N);
/* The twin: lanes 8 follows the AVX2 kernels, 16 the AVX-512 ones (lowp.c says how). */
void lowp_gemv_ref(float *out, const lowp_weight *w, int row0, const float *x, const lowp_q8_block *xq,
                   const float *bias, int N, int lanes);
/* lowp_gemv_ref with 8 lanes. */
void lowp_gemv_naive(float *out, const lowp_weight *w, int row0, const float *x, const lowp_q8_block *xq,
                     const float *bias, int N);
void lowp_gemv_avx2(float *out, const lowp_weight *w, int row0, const float *x, const lowp_q8_block *xq,
                    const float *bias, int N);
/* q8 only if lowp_avx512_vnni_usable(), bf16 and f16 if lowp_avx512_usable(). */
void lowp_gemv_avx512(float *out, const lowp_weight *w, int row0, const float *x, const lowp_q8_block *xq,
                      const float *bias, int N);
/* 1 when the CPU running this has AVX2, FMA and F16C (cpuid, asked at run time). */
int lowp_avx2_usable(void);
/* 1 when it also has AVX-512 F, BW, VL and DQ with the OS saving their state; _vnni: and
 * AVX512-VNNI. */
int lowp_avx512_usable(void);
int lowp_avx512_vnni_usable(void);

/* A kernel: its name, the lanes its twin sums in, the gemv and the q8 activation quantizer. */
typedef struct {
    const char *name;
    int lanes;
    lowp_gemv_fn gemv;
    void (*quantize)(lowp_q8_block *out, const float *x, int K);
} lowp_kernel;
/* The kernel called name ("avx512", "avx2", "naive") if this CPU runs it for format d, else
 * NULL. lowp_kernel_fast: the widest of them. */
const lowp_kernel *lowp_kernel_by_name(const char *name, th_dtype d);
const lowp_kernel *lowp_kernel_fast(th_dtype d);
/* The kernel lowp_mm uses for d: lowp_kernel_fast(d)'s name, or "naive" after
 * lowp_force_naive(1), which selects the twins (with the fast kernel's lane count: tests). */
const char *lowp_kernel_name(th_dtype d);
void lowp_force_naive(int on);

/* The packed inference state of a model: the four per-layer matmul weights (all layers
 * stacked, rows = L · N) and, unless embed_f32, the tied wte (embedding and lm_head). */
enum { LOWP_QKV, LOWP_ATTPROJ, LOWP_FC, LOWP_FCPROJ, LOWP_WTE, LOWP_NUM };
typedef struct gpt2_lowp {
    th_dtype dtype;
    int embed_f32;
    lowp_weight w[LOWP_NUM];
} gpt2_lowp;

void gpt2_lowp_free(gpt2_lowp *lp);

#define LOWP_PANEL_ROWS 512 /* rows of W dequantized at a time for M > 1 */

/* out (M, N) = inp (M, K) · W[row0 .. row0+N)ᵀ + bias (may be NULL). M = 1: the packed gemv
 * (q8: the row quantized to int8 blocks in xq, K / 32 of them); M > 1: panels of
 * LOWP_PANEL_ROWS rows of W dequantized to f32 and multiplied by th_mm_forward (the fp32
 * GEMM), so a prefill reads f32 activations. scratch holds lowp_mm_scratch_floats(M, K). */
void lowp_mm(float *out, const float *inp, const lowp_weight *w, int row0, const float *bias, int M, int N,
             float *scratch, lowp_q8_block *xq);
size_t lowp_mm_scratch_floats(int M, int K);

#endif
