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

/* A cache for up to `capacity` positions (<= max_seq_len). */
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
