/* gpt2_internal.h (internal to the model module): the model struct shared by the training
 * code (gpt2.c), the optimizer (adamw.c) and KV-cache inference (infer.c). */
#ifndef THERMO_MODEL_GPT2_INTERNAL_H
#define THERMO_MODEL_GPT2_INTERNAL_H

#include <stdint.h>

#include "model/lowp.h"
#include "thermo/model.h"

/* Pointers into the one parameter (or gradient) block, one per TH_P_* tensor. */
typedef struct {
    float *t[TH_P_NUM];
} gpt2_tensors;

/* Training activations for one (B, T), in one allocation. */
typedef struct {
    float *encoded;   // (B,T,C) embeddings, the residual stream entering layer 0
    float *ln1;       // (L,B,T,C)
    float *ln1_mean;  // (L,B,T)
    float *ln1_rstd;  // (L,B,T)
    float *qkv;       // (L,B,T,3C)
    float *atty;      // (L,B,T,C) attention output before c_proj
    float *att;       // (L,B,NH,T,T) softmax probabilities
    float *residual2; // (L,B,T,C) stream after attention
    float *ln2;       // (L,B,T,C)
    float *ln2_mean;  // (L,B,T)
    float *ln2_rstd;  // (L,B,T)
    float *fch;       // (L,B,T,4C) c_fc output
    float *fch_gelu;  // (L,B,T,4C)
    float *residual3; // (L,B,T,C) stream after the MLP
    float *lnf;       // (B,T,C)
    float *lnf_mean;  // (B,T)
    float *lnf_rstd;  // (B,T)
    float *logits;    // (B,T,V), turned into dlogits by the backward
    float *lse;       // (B,T) log-sum-exp of each logits row
    float *losses;    // (B,T)
    float *proj;      // (B,T,C) scratch for c_proj outputs before the residual add
} gpt2_acts;

/* Backward scratch, reused layer after layer. */
typedef struct {
    float *dresidual; // (B,T,C)
    float *dbtc;      // (B,T,C)
    float *dqkv;      // (B,T,3C)
    float *dfch;      // (B,T,4C)
    float *datt;      // (B,NH,T)
} gpt2_grad_scratch;

struct th_gpt2 {
    th_gpt2_config cfg;
    size_t num_params;
    float *params;
    gpt2_tensors p;
    // training state, allocated on first use
    float *grads;
    gpt2_tensors g;
    int grads_zero_pending; // th_gpt2_zero_grad ran and nothing was written since: the grads
                            // are zero but their memory is not (the next backward overwrites)
    float *adam_m, *adam_v;
    long adam_steps;
    float *act_block;
    gpt2_acts a;
    gpt2_grad_scratch s;
    int act_B, act_T; // capacity of the activations
    int B, T;         // shape of the last forward
    int *inputs, *targets;   // copies of the last forward's (B,T) ids
    int have_targets;
    int n_counted;    // targets that were not ignored in the last forward
    int backward_ready; // a forward with targets ran and no backward consumed it yet
    int forward_fresh;  // a forward (with or without targets) ran and no backward consumed it yet
    struct gpt2_lowp *lowp; // packed inference weights (lowp.c); NULL: f32
    th_precision precision; // of the training matmuls (th_gpt2_set_train_precision)
    th_kv_dtype kv_dtype;   // of the KV caches created from now on (th_gpt2_set_kv_dtype)
};

void gpt2_point_tensors(const th_gpt2_config *cfg, float *block, gpt2_tensors *out);

/* Makes a pending zeroing real (memset), for code about to read or add to the gradients
 * outside a backward; a no-op otherwise. */
void gpt2_grads_materialize(th_gpt2 *m);

/* ---- KV cache (infer.c, attention.c) ----
 * A cache stores keys and values head-major, (L, NH, capacity, hs) each, in f32, f16 or
 * q8_0 blocks (th_kv_dtype; q8: hs / 32 blocks a position and head), so one head's keys
 * are contiguous for decode's attention. */

/* The cache's model shape and capacity (for the batched decode, infer_batch.c). */
const th_gpt2_config *th_gpt2_kv_shape(const th_gpt2_kv *kv, int *capacity);
/* Stores one position's key and value rows (C floats each, heads side by side) in layer l
 * at position pos (< capacity), rounded to half for an f16 cache, quantized to q8_0 blocks
 * (each head's row on its own) for a q8 one. */
void gpt2_kv_store(th_gpt2_kv *kv, int l, int pos, const float *k, const float *v);
/* out (hs) = attention of query q (hs) over positions 0..n_keys-1 of head h of layer l;
 * att holds n_keys floats of scratch. */
void gpt2_kv_attend(const th_gpt2_kv *kv, int l, int h, float *out, float *att, const float *q, int n_keys,
                    float scale);
/* The first key and value of head h of layer l in the cache's element type (floats, halves
 * or q8_0 blocks), for tests that check the attention against the stored rows. */
void gpt2_kv_head(const th_gpt2_kv *kv, int l, int h, const void **k, const void **v);
/* Counts one appended position. */
void th_gpt2_kv_advance(th_gpt2_kv *kv);

/* th_attention_row over half keys and values, k and v (n_keys, hs) contiguous: widens tiles
 * of TH_KV_TILE_FLOATS (hs <= TH_KV_TILE_FLOATS) and sums exactly as th_attention_row does,
 * so the result equals th_attention_row on the widened values bit for bit. */
#define TH_KV_TILE_FLOATS 1024
void th_attention_row_f16(float *out, float *att, const float *q, const uint16_t *k, const uint16_t *v,
                          int n_keys, int hs, float scale);
/* n halves to floats (exact) and n floats to halves (to nearest, ties to even, as
 * lowp_f32_to_f16); vcvtph2ps / vcvtps2ph where cpuid reports F16C, else lowp.c's scalars. */
void th_f16_widen(float *dst, const uint16_t *src, int n);
void th_f16_narrow(uint16_t *dst, const float *src, int n);
/* "f16c" or "portable"; th_f16_force_portable(1) selects the portable loops (tests). */
const char *th_f16_kernel(void);
void th_f16_force_portable(int on);

/* th_attention_row over q8_0 keys and values, k and v (n_keys, hs / 32 blocks) contiguous,
 * hs a multiple of 32 and <= TH_KV_TILE_FLOATS: equals th_attention_row on the keys and
 * values dequantized by lowp_dequant_q8, bit for bit (head size 64 dequantizes in
 * registers with AVX2 + F16C, else tiles in L1). */
void th_attention_row_q8(float *out, float *att, const float *q, const lowp_q8_block *k, const lowp_q8_block *v,
                         int n_keys, int hs, float scale);
/* n floats (n % 32 == 0) to n / 32 q8_0 blocks (lowp_quantize_q8's bytes for finite values;
 * its AVX2 twin where cpuid allows and th_f16_force_portable is off); lowp_dequant_q8 reads
 * them back (d·q, exact). */
void th_q8_kv_quantize(lowp_q8_block *dst, const float *src, int n);
/* "avx2" or "portable": the q8 KV cache's attention; th_f16_force_portable(1) selects the
 * portable loops for it too. */
const char *th_q8_kv_kernel(void);

/* The backward of the last forward from the gradient of its logits, dlogits (B, T, V) (may
 * be the logits buffer itself), plus dhidden (B, T, C) added to the gradient of the final
 * LayerNorm's output (NULL: none). Accumulates into the gradients, which must exist. */
void gpt2_backward_from_dlogits(th_gpt2 *m, const float *dlogits, const float *dhidden);

#endif
