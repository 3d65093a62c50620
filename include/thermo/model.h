/* model.h: the GPT-2 engine. Config, parameters in one allocation with a table of
 * tensors, training forward/backward with mean cross-entropy, AdamW with a warmup +
 * cosine schedule, KV-cache incremental inference, and the token sampler.
 *
 * Layout follows Hugging Face's GPT2LMHeadModel except that every matmul weight is
 * stored (out, in), row-major, so a forward is out = inp · Wᵀ + b and a decode step reads
 * each weight row once, contiguously. HF's Conv1D stores (in, out): loaders transpose.
 * The output projection is tied to the token embedding wte. */
#ifndef THERMO_MODEL_H
#define THERMO_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "thermo/core.h"

/* ---------------------------------------------------------------------------------
 * config */

typedef struct {
    int max_seq_len; /* context length (HF n_positions) */
    int vocab_size;
    int num_layers;
    int num_heads;
    int channels;  /* n_embd; must be divisible by num_heads */
    float ln_eps;  /* layer_norm_epsilon, 1e-5 for GPT-2 */
} th_gpt2_config;

/* Checks every field and the relations between them; on failure the message names the
 * field, its value and the rule (e.g. "channels 100 is not divisible by num_heads 3"). */
th_status th_gpt2_config_validate(const th_gpt2_config *cfg);

/* Fills `cfg` for a named shape: "gpt2" (124M), "distilgpt2", "gpt2-medium", "small"
 * (a few million parameters, the embedded default) and "tiny" (tests). */
th_status th_gpt2_config_preset(const char *name, th_gpt2_config *cfg);

/* Names of the presets, NULL-terminated. */
extern const char *const th_gpt2_preset_names[];

/* ---------------------------------------------------------------------------------
 * parameter table. The NUM tensors below live back to back in one float allocation,
 * in this order; per-layer tensors have a leading num_layers dimension. */

enum {
    TH_P_WTE,      /* (V, C) token embedding, also the output projection */
    TH_P_WPE,      /* (maxT, C) position embedding */
    TH_P_LN1W,     /* (L, C) */
    TH_P_LN1B,     /* (L, C) */
    TH_P_QKVW,     /* (L, 3C, C) attention c_attn, rows q then k then v */
    TH_P_QKVB,     /* (L, 3C) */
    TH_P_ATTPROJW, /* (L, C, C) attention c_proj */
    TH_P_ATTPROJB, /* (L, C) */
    TH_P_LN2W,     /* (L, C) */
    TH_P_LN2B,     /* (L, C) */
    TH_P_FCW,      /* (L, 4C, C) mlp c_fc */
    TH_P_FCB,      /* (L, 4C) */
    TH_P_FCPROJW,  /* (L, C, 4C) mlp c_proj */
    TH_P_FCPROJB,  /* (L, C) */
    TH_P_LNFW,     /* (C) final layer norm */
    TH_P_LNFB,     /* (C) */
    TH_P_NUM
};

typedef struct {
    const char *name; /* "wte", "qkvw", ... */
    int ndim;         /* 1..3, including the leading layer dimension */
    int shape[3];
    size_t offset; /* in floats from the start of the parameter block */
    size_t count;  /* floats */
    int decay;     /* 1 for 2-D weights (matmuls and embeddings): AdamW decays only these */
} th_tensor_info;

/* Describes tensor `which` (TH_P_*) of a model with this config. */
void th_gpt2_tensor_info(const th_gpt2_config *cfg, int which, th_tensor_info *out);
/* Total number of parameters (floats). */
size_t th_gpt2_num_params(const th_gpt2_config *cfg);

/* ---------------------------------------------------------------------------------
 * the model */

typedef struct th_gpt2 th_gpt2;

/* Allocates a model with uninitialized parameters. Training buffers (gradients, AdamW
 * moments, activations) are allocated on first use. Fails with TH_ERR_INVALID on a bad
 * config and TH_ERR_NOMEM if the parameters do not fit. */
th_status th_gpt2_create(const th_gpt2_config *cfg, th_gpt2 **out);
void th_gpt2_free(th_gpt2 *m);

const th_gpt2_config *th_gpt2_get_config(const th_gpt2 *m);

/* GPT-2's initialization: N(0, 0.02) for weights and embeddings, residual projections
 * (attention and MLP c_proj) scaled by 1/sqrt(2·L), zero biases, unit LayerNorm gains.
 * Deterministic in the seed. */
void th_gpt2_init_random(th_gpt2 *m, uint64_t seed);

/* The parameter block (th_gpt2_num_params floats, layout per th_gpt2_tensor_info). */
float *th_gpt2_params(th_gpt2 *m);

/* Gradients, same layout; NULL before the first backward. */
float *th_gpt2_grads(th_gpt2 *m);

/* ---------------------------------------------------------------------------------
 * training */

#define TH_IGNORE_INDEX (-1) /* a target with this id contributes no loss (padding) */

/* Forward over a batch. inputs and targets are (B, T) token ids; targets may be NULL
 * for logits only. With targets, *loss gets the mean cross-entropy over the targets that
 * are not TH_IGNORE_INDEX (NaN if there are none). Token ids outside [0, V) and sizes
 * outside the config are rejected with TH_ERR_INVALID before any work is done.
 * Reallocates activations if (B, T) grows. */
th_status th_gpt2_forward(th_gpt2 *m, const int *inputs, const int *targets, int B, int T,
                          float *loss);

/* The (B, T, V) logits of the last forward. Invalidated by th_gpt2_backward, which
 * turns them into their gradient in place. */
const float *th_gpt2_logits(const th_gpt2 *m);

/* Per-position losses (B, T) of the last forward with targets (0 where ignored). */
const float *th_gpt2_losses(const th_gpt2 *m);

/* Sets every gradient to zero (allocating them on first use). */
th_status th_gpt2_zero_grad(th_gpt2 *m);

/* Training precision (issue 17): the operands of every matmul of the forward and backward
 * (the linear layers and the tied lm_head, both directions). TH_PRECISION_BF16 rounds them to
 * bf16 and sums the products in fp32; weights, master copies, gradients, AdamW moments,
 * LayerNorm, softmax, attention and every reduction stay fp32, and results stay the same for
 * any thread count. bf16 keeps fp32's exponent range, so no loss scaling is needed. */
typedef enum { TH_PRECISION_F32 = 0, TH_PRECISION_BF16 = 1 } th_precision;
/* "f32", "bf16"; "?" for anything else. */
const char *th_precision_name(th_precision p);
/* Sets the model's training precision (default TH_PRECISION_F32) for the forwards and
 * backwards that follow; an unknown value means f32. Inference (th_gpt2_kv_*) is unaffected. */
void th_gpt2_set_train_precision(th_gpt2 *m, th_precision p);
th_precision th_gpt2_get_train_precision(const th_gpt2 *m);

/* Backward of the last forward (which must have had targets). Accumulates into the
 * gradients: d(loss_scale · mean loss)/dθ is added, so gradient accumulation over k
 * micro-batches passes loss_scale = 1/k. */
th_status th_gpt2_backward(th_gpt2 *m, float loss_scale);

/* Global L2 norm of all gradients, summed in double in a fixed order. */
double th_gpt2_grad_norm(const th_gpt2 *m);

typedef struct {
    float lr;
    float beta1, beta2;
    float eps;
    float weight_decay; /* decoupled; applied to tensors with decay = 1 only */
    float grad_clip;    /* max global norm; <= 0 disables clipping */
} th_adamw_config;

/* Defaults: lr 3e-4, betas (0.9, 0.95), eps 1e-8, weight decay 0.1, clip 1.0. */
th_adamw_config th_adamw_defaults(void);

/* One AdamW update with the current gradients (PyTorch's torch.optim.AdamW, with bias
 * correction). If cfg->grad_clip > 0 and grad_norm exceeds it, gradients are scaled by
 * grad_clip / (grad_norm + 1e-6) first, as torch.nn.utils.clip_grad_norm_ does.
 * `lr` overrides cfg->lr (the schedule's value). Advances the step counter. */
th_status th_gpt2_adamw_step(th_gpt2 *m, const th_adamw_config *cfg, float lr, double grad_norm);

/* AdamW state for checkpoints: first and second moments (NULL before the first step)
 * and the number of steps taken. */
float *th_gpt2_adam_m(th_gpt2 *m);
float *th_gpt2_adam_v(th_gpt2 *m);
long th_gpt2_adam_steps(const th_gpt2 *m);
/* Allocates the moments (zeroed) if needed and sets the step count, for a resume. */
th_status th_gpt2_adam_restore(th_gpt2 *m, long steps);

typedef struct {
    float lr_max;
    float lr_min;     /* floor of the cosine */
    int warmup_steps; /* linear from lr_max/warmup to lr_max */
    int total_steps;  /* cosine from lr_max at warmup to lr_min at total_steps */
} th_lr_schedule;

/* Learning rate for 0-based `step`. */
float th_lr_at(const th_lr_schedule *s, int step);

/* ---------------------------------------------------------------------------------
 * distillation: DistilGPT-2's loss as forward/backward pairs, the backward from a caller's
 * logit and hidden-state gradients, and the student built from a teacher's blocks.
 *
 * Rows are positions (N = B·T). A row whose target is TH_IGNORE_INDEX counts in no term
 * (targets NULL: every row counts). Each term is a mean over the counted rows, as
 * Hugging Face's distiller takes KLDivLoss(reduction="batchmean") over the selected rows. */

/* losses (N) = T² · KL(softmax(zt/T) ‖ softmax(zs/T)) per row, zs and zt (N, V); rows not
 * counted get 0. Returns the sum over the rows, in double. */
double th_kl_temp_forward(float *losses, const float *zs, const float *zt, const int *targets, int N, int V,
                          float temp);
/* dzs (N, V) += scale · d(Σ losses)/dzs = scale · T · (softmax(zs/T) − softmax(zt/T)). */
void th_kl_temp_backward(float *dzs, const float *zs, const float *zt, const int *targets, int N, int V,
                         float temp, float scale);

/* The same with a cached teacher: row i keeps k distinct token ids (ids, (N, k), each in
 * [0, V)) and their log-probabilities at temperature 1 (logp (N, k), k <= 4096). The teacher's
 * distribution at T is softmax(z/T) of the log-probabilities where the ids outside the k share
 * the rest of the mass, 1 − Σ exp(logp), evenly: the student is not pushed to put all its mass
 * on k ids when the teacher did not. Equals the dense KL for k = V. */
double th_kl_topk_forward(float *losses, const float *zs, const int *ids, const float *logp, int k,
                          const int *targets, int N, int V, float temp);
void th_kl_topk_backward(float *dzs, const float *zs, const int *ids, const float *logp, int k,
                         const int *targets, int N, int V, float temp, float scale);

/* losses (N) = 1 − cos(hs[i], ht[i]) over C, with torch's CosineEmbeddingLoss formula
 * cos = a·b / sqrt((|a|² + 1e-12)(|b|² + 1e-12)). Returns the sum. */
double th_cosine_forward(float *losses, const float *hs, const float *ht, const int *targets, int N, int C);
/* dhs (N, C) += scale · d(Σ losses)/dhs. */
void th_cosine_backward(float *dhs, const float *hs, const float *ht, const int *targets, int N, int C,
                        float scale);

typedef struct {
    float temperature; /* T (default 2) */
    float alpha_kl;    /* weight of T²·KL (default 0.5) */
    float alpha_ce;    /* weight of the cross-entropy on the data (default 0.5) */
    float alpha_cos;   /* weight of 1 − cos of the last hidden states (default 0) */
} th_distill_loss_config;

/* T 2, α_kl 0.5, α_ce 0.5, α_cos 0: Hugging Face's train.py defaults. */
th_distill_loss_config th_distill_loss_defaults(void);

/* The teacher's side of one batch: dense (logits, and hidden when α_cos > 0) or cached
 * (topk_ids, topk_logp, k > 0). Borrowed for the call. */
typedef struct {
    const float *logits; /* (B, T, V) */
    const float *hidden; /* (B, T, C): the teacher's last hidden state (th_gpt2_last_hidden) */
    const int *topk_ids; /* (B·T, k) */
    const float *topk_logp;
    int k;
} th_distill_teacher;

typedef struct {
    float total;         /* α_kl·kl + α_ce·ce + α_cos·cos */
    float kl, ce, cos;   /* each term's mean (NaN for a term whose α is 0 and that was skipped) */
} th_distill_loss_parts;

/* The final LayerNorm's output (B, T, C) of the last forward: the hidden state that enters
 * the output projection (Hugging Face's last hidden_states). */
const float *th_gpt2_last_hidden(const th_gpt2 *m);

/* Backward of the last forward (with or without targets) from a caller's loss: dlogits
 * (B, T, V) is d loss/d logits, dhidden (B, T, C, may be NULL) is added to the gradient of
 * the last hidden state. Accumulates into the gradients. dlogits may be the model's own
 * logits buffer (cast from th_gpt2_logits); the logits are invalid afterwards either way.
 * TH_ERR_STATE without a forward since the last backward. */
th_status th_gpt2_backward_from(th_gpt2 *m, const float *dlogits, const float *dhidden);

/* One micro-batch of distillation on `student`: its forward on inputs (B, T) with targets,
 * the loss of `c` against teacher `t`, and the backward of loss_scale · total, accumulated
 * into the gradients (as th_gpt2_backward does with its mean cross-entropy). The teacher's
 * arrays must match the student's B, T, V (and C for the cosine). scratch holds
 * th_distill_scratch_floats floats, the caller's. Fails with TH_ERR_INVALID on a missing
 * teacher array or bad config (message names it) and with th_gpt2_forward's errors. */
th_status th_distill_loss_step(th_gpt2 *student, const int *inputs, const int *targets, int B, int T,
                               const th_distill_teacher *t, const th_distill_loss_config *c, float loss_scale,
                               float *scratch, th_distill_loss_parts *out);
size_t th_distill_scratch_floats(const th_gpt2_config *student, int B, int T);

#define TH_DISTILL_MAX_LAYERS 1024

/* The student's blocks by default: DistilGPT-2's {0, 2, 4, 7, 9, 11} for a 12-layer
 * teacher, else every other block from 0. Writes at most cap indices; returns the count. */
int th_distill_default_layers(int teacher_layers, int *out, int cap);

/* A new student with the teacher's width, heads, vocabulary and context whose block i is
 * the teacher's block layers[i] (every tensor of it), with wte, wpe and the final norm
 * copied. TH_ERR_INVALID, naming the index, for n outside [1, teacher layers], an index
 * out of range or one given twice. *out is the caller's (th_gpt2_free). */
th_status th_gpt2_from_teacher_blocks(const th_gpt2 *teacher, const int *layers, int n, th_gpt2 **out);

/* ---------------------------------------------------------------------------------
 * continual-learning regularisers: L2-to-init and EWC (capabilities.md §2.3: Avalanche's
 * ewc_lambda · Σ F·(θ − θ*)², no ½; F the diagonal empirical Fisher, the mean over
 * minibatches of the squared minibatch gradient) */

/* Penalty lambda · Σ w_i (θ_i − θ*_i)² over n parameters, summed in double in index order;
 * w NULL means w_i = 1 (L2-to-init). If grad is not NULL, its gradient 2·lambda·w_i·(θ_i − θ*_i)
 * is added to grad[i]. Returns the penalty. */
double th_penalty_quadratic(const float *theta, const float *anchor, const float *weight, size_t n, double lambda,
                            float *grad);

/* Diagonal empirical Fisher of `m` at its current parameters: for each of `batches` batches
 * that next_batch(i, inputs, targets, user) writes ((B, T) ids), the gradient of the
 * batch's mean loss, squared element-wise, averaged over the batches into fisher
 * (th_gpt2_num_params floats). Uses and leaves the model's gradients (zero them before
 * training). Fails with the model's status or TH_ERR_INVALID for batches < 1; fisher is
 * written only on success. */
th_status th_fisher_diag(th_gpt2 *m, int B, int T, int batches,
                         void (*next_batch)(int i, int *inputs, int *targets, void *user), void *user, float *fisher);

/* ---------------------------------------------------------------------------------
 * inference with a KV cache (one sequence) */

typedef struct th_gpt2_kv th_gpt2_kv;

/* A cache for up to `capacity` positions (<= max_seq_len), of the element type
 * th_gpt2_kv_dtype(m) (see th_kv_dtype). TH_ERR_INVALID for a capacity out of range, for
 * q8 when the head size (channels / num_heads) is not a multiple of 32, and for f16 or q8
 * when it is above 1024; TH_ERR_NOMEM. */
th_status th_gpt2_kv_create(const th_gpt2 *m, int capacity, th_gpt2_kv **out);
void th_gpt2_kv_free(th_gpt2_kv *kv);
void th_gpt2_kv_reset(th_gpt2_kv *kv);
int th_gpt2_kv_len(const th_gpt2_kv *kv);

/* Runs n new tokens at positions kv_len .. kv_len+n-1, appending their keys and values.
 * n > 1 is a prefill (matmuls over n rows), n = 1 a decode step. Writes the logits of
 * every new position to `logits` (n, V) if all_logits, else only the last one (V).
 * Fails with TH_ERR_INVALID if the cache would overflow or a token is out of range. */
th_status th_gpt2_infer(th_gpt2 *m, th_gpt2_kv *kv, const int *tokens, int n, float *logits,
                        int all_logits);

/* ---------------------------------------------------------------------------------
 * inference precision (lowp.c): the matmul weights read by inference in bf16, f16 or
 * ggml-compatible q8_0 blocks (32 int8 weights and one fp16 scale; a decode step multiplies
 * them by the activation row quantized the same way, with int8 dot products). Packed once;
 * the f32 copies of the packed tensors are given back to the system (their pages read as
 * zeros afterwards), so a packed model serves inference only: th_gpt2_forward refuses it.
 * What is packed: the four matmul weights of every block; the tied wte (the embedding and
 * the lm_head, 31 % of GPT-2 124M's decode bytes) too unless embed_f32. Biases, LayerNorms
 * and the position table stay f32, and so do the activations; the KV cache is f16 by
 * default for packed weights (th_kv_dtype). Kernels:
 * AVX2 + FMA + F16C where cpuid reports them (th_lowp_kernel), else plain loops; each row's
 * sum runs in an order fixed by its length, so results do not depend on the thread count.
 * A decode step (th_gpt2_infer with n = 1, and every row of th_gpt2_infer_batch, which stays
 * bit-identical to it) multiplies the packed rows directly; a prefill (n > 1) dequantizes
 * panels of 512 rows to f32 (in the KV cache's scratch) and runs the fp32 GEMM on f32
 * activations. */

typedef enum { TH_DTYPE_F32 = 0, TH_DTYPE_BF16 = 1, TH_DTYPE_F16 = 2, TH_DTYPE_Q8 = 3 } th_dtype;

/* "f32", "bf16", "f16", "q8", indexed by th_dtype, NULL-terminated. */
extern const char *const th_dtype_names[];
/* TH_ERR_INVALID naming the string and the known names. */
th_status th_dtype_parse(const char *s, th_dtype *out);
const char *th_dtype_name(th_dtype d); /* "?" for a value outside the enum */

/* The KV cache's element type. f16: keys and values rounded to half (to nearest, ties to
 * even) when stored, widened exactly when read, so attention sums the same products in the
 * same order as over f32 keys and values, and a decode step at context 512 reads half the
 * bytes of the cache. q8: each head's key and value rows quantized to q8_0 blocks when
 * stored (32 int8 and one half scale, ggml's block_q8_0 and the q8 weights' block: 34 bytes
 * per 32 values, 53 % of f16's), dequantized exactly (d·q in f32) when read, so attention
 * equals f32 attention over the dequantized cache bit for bit; needs a head size that is a
 * multiple of 32 (every GPT-2 size: 64). TH_KV_AUTO (the zero value): f32 for the f32
 * model (the oracle packed models are compared against), f16 for bf16 and f16 weights, q8
 * for q8 weights (f16 where the head size is not a multiple of 32). Why q8 with q8: measured
 * 2026-12-01 (bench/kv_quality, a 300-step small model from `thermo train`, 4096 tokens of
 * its validation text, against f32 weights and f32 KV), q8 KV costs a mean KL of 1.6e-8 nats
 * on f32 weights and moves q8 weights' 6.94e-6 to 6.97e-6 (ppl ratio 0.999887 -> 0.999882,
 * top-1 0.9980 -> 0.9978); on random GPT-2 124M, 1024 tokens of the same text, KL 5.8e-7
 * on f32 weights, q8 weights' 3.61e-5 -> 3.66e-5 (ppl ratio 1.000088 -> 0.999958, top-1
 * 0.9658 both); and at context 512 a q8 decode step reads 6 % fewer bytes (the bytes-bound
 * 512/64 ratio 0.89 -> 0.94). bf16/f16 weights keep f16: there q8 KV would be most of the
 * error (f16 weights on GPT-2: KL 5.6e-8 with f16 KV, 6.8e-7 with q8 KV). */
typedef enum { TH_KV_AUTO = 0, TH_KV_F32 = 1, TH_KV_F16 = 2, TH_KV_Q8 = 3 } th_kv_dtype;

/* "auto", "f32", "f16", "q8", indexed by th_kv_dtype, NULL-terminated. */
extern const char *const th_kv_dtype_names[];
/* TH_ERR_INVALID naming the string and the known names. */
th_status th_kv_dtype_parse(const char *s, th_kv_dtype *out);
const char *th_kv_dtype_name(th_kv_dtype d); /* "?" for a value outside the enum */

typedef struct {
    th_dtype dtype;
    int embed_f32; /* 1: keep wte (embedding and lm_head) in f32 */
    th_kv_dtype kv_dtype; /* of the KV caches made from now on (th_gpt2_set_precision applies it through th_gpt2_set_kv_dtype) */
} th_infer_precision;

/* The element type of the KV caches th_gpt2_kv_create makes from `m` from now on (caches
 * made before keep theirs). An unknown value means TH_KV_AUTO. */
void th_gpt2_set_kv_dtype(th_gpt2 *m, th_kv_dtype d);
/* The element type a cache made now would have, TH_KV_AUTO resolved (never TH_KV_AUTO). */
th_kv_dtype th_gpt2_kv_dtype(const th_gpt2 *m);
/* A cache's element type (TH_KV_F32, TH_KV_F16 or TH_KV_Q8). */
th_kv_dtype th_gpt2_kv_cache_dtype(const th_gpt2_kv *kv);
/* Bytes the cache's keys and values take (allocated for its whole capacity). */
size_t th_gpt2_kv_bytes(const th_gpt2_kv *kv);
/* Bytes one stored key or value element takes: 4 (f32), 2 (f16), 34 / 32 (q8); 4 for auto. */
double th_kv_dtype_bytes(th_kv_dtype d);
/* The kernel a cache of element type d attends with on this CPU: "f32" for f32; for f16 the
 * conversions, "f16c" or "portable"; for q8 the dequantizing attention, "avx2" or "portable". */
const char *th_kv_kernel(th_kv_dtype d);

/* Packs `m` for inference at p's precision (f32: nothing to do). Irreversible: calling it
 * again with another precision fails with TH_ERR_STATE. TH_ERR_INVALID for q8 when channels
 * is not a multiple of 32, TH_ERR_NOMEM (the model is unchanged on failure). */
th_status th_gpt2_set_precision(th_gpt2 *m, const th_infer_precision *p);
/* The precision inference uses (TH_DTYPE_F32 until packed); *embed_f32 if not NULL. */
th_dtype th_gpt2_precision(const th_gpt2 *m, int *embed_f32);
/* Bytes of weights one decode step reads at the model's precision (the position table
 * counts one row). */
double th_gpt2_decode_weight_bytes(const th_gpt2 *m);
/* The low-precision kernels in use on this CPU: "avx2" or "naive". */
const char *th_lowp_kernel(void);

/* ---------------------------------------------------------------------------------
 * batched decoding (infer_batch.c): one decode step for several sequences at once, each
 * with its own KV cache, in one pass over the weights. Batch invariance: every row's
 * logits are bit-identical whatever the other rows are and however many there are,
 * because each row's sums run in one order fixed by the model's shape alone (the naive
 * backend's: bias, then the products in index order; the layer norms, attention and GELU
 * row by row). The prefill stays th_gpt2_infer, so with the naive backend selected a
 * sequence decoded here follows th_gpt2_infer's (and th_generate's) logits bit for bit;
 * with another backend the decode differs from it in the last bits of the sums. */

typedef struct th_gpt2_batch th_gpt2_batch;

/* Scratch for steps of up to max_rows sequences. TH_ERR_INVALID for max_rows < 1,
 * TH_ERR_NOMEM. */
th_status th_gpt2_batch_create(const th_gpt2 *m, int max_rows, th_gpt2_batch **out);
void th_gpt2_batch_free(th_gpt2_batch *b);

/* One decode step: row i runs tokens[i] at position th_gpt2_kv_len(kvs[i]) of its own
 * cache, appends its key and value there, and writes its logits to logits + i·V. The
 * caches must be distinct. Fails, with no cache changed, with TH_ERR_INVALID for n outside
 * [1, max_rows], a cache made for another model, a full cache or a token out of range (the
 * message names the row). */
th_status th_gpt2_infer_batch(th_gpt2 *m, th_gpt2_batch *b, th_gpt2_kv *const *kvs, const int *tokens, int n,
                              float *logits);

/* ---------------------------------------------------------------------------------
 * sampling */

typedef struct {
    float temperature; /* 0 = greedy (argmax) */
    int top_k;         /* 0 = off */
    float top_p;       /* 1 = off; nucleus sampling over the top-k survivors */
} th_sampler_config;

typedef struct th_sampler th_sampler;

th_status th_sampler_create(int vocab_size, const th_sampler_config *cfg, uint64_t seed,
                            th_sampler **out);
void th_sampler_free(th_sampler *s);
/* Picks the next token from logits (vocab_size). Ties in greedy mode go to the lowest id. */
int th_sampler_next(th_sampler *s, const float *logits);

/* ---------------------------------------------------------------------------------
 * compute backends and threads. The matmuls of every linear layer run on one process-wide
 * backend from a registry: "avx512" (hand-written kernels; bit-identical sums for any thread
 * count), "blas" (OpenBLAS, in builds with it), "naive" (plain loops: the oracle and the
 * fallback). Each has a probe score on this machine, worked out at run time (the CPU is asked,
 * not the compiler), 0 = cannot run here. By default ("auto") the highest score runs: avx512
 * where the CPU has AVX-512F, else blas where built, else naive. Select between runs, not
 * while another thread is inside the model. */

/* The number of registered backends, and the name of backend i (NULL past the end). */
size_t th_compute_count(void);
const char *th_compute_name(size_t i);

/* Backend i's score on this machine: 0 if it cannot run here (or i is past the end). */
int th_compute_probe(size_t i);

/* Selects the backend for later calls. NULL or "auto": the highest score. Fails, leaving the
 * selection as it was, with TH_ERR_INVALID for an unknown name and TH_ERR_UNSUPPORTED for a
 * backend that cannot run here (score 0) or was built for another backend API version. The
 * first two messages list every backend with its score here. */
th_status th_compute_select(const char *name);

/* The name of the backend in use (resolving "auto"); a static string, never NULL. */
const char *th_compute_current(void);

/* Threads used by kernels and BLAS (>= 1). Results are bit-identical for the same
 * thread count; changing it may change the last bits of BLAS sums. */
void th_threads_set(int n);
int th_threads_get(void);

#endif
