/* pipeline.h: the wiring of the engine into runs: the model benchmark (train step,
 * prefill and decode speed, memory) and, as they land, the training and generation loops
 * that the thermal governor paces and the eco ledger measures. */
#ifndef THERMO_PIPELINE_H
#define THERMO_PIPELINE_H

#include "thermo/analyze.h"
#include "thermo/core.h"
#include "thermo/eco.h"
#include "thermo/evaluate.h"
#include "thermo/govern.h"
#include "thermo/guard.h"
#include "thermo/io.h"
#include "thermo/model.h"
#include "thermo/sense.h"
#include "thermo/text.h"

/* ---------------------------------------------------------------------------------
 * model benchmark */

typedef struct {
    int batch, seq;      /* training shape (B, T); defaults 4, 64 */
    int train_steps;     /* timed steps; the median is reported (default 5, after 1 warm-up) */
    int prompt_tokens;   /* prefill length before decoding (default 128) */
    int decode_tokens;   /* decoded tokens timed (default 64) */
    int threads;         /* 0: keep the current setting */
    int baseline_naive;  /* also time training steps with the naive matmul loops */
    int baseline_steps;  /* timed naive steps (default 2) */
    uint64_t seed;
    /* inference precision table (issue 16): one row per dtype, each on a fresh model packed
     * at that precision; n_dtypes 0: no table */
    th_dtype dtypes[4];
    int n_dtypes;
    int embed_f32;       /* keep wte (embedding and lm_head) in f32 in the packed rows */
    int quality_tokens;  /* tokens of the quality gate per row (0: none) */
    const char *model_path; /* the precision table on this model's weights (NULL: random ones) */
    /* training rows after the main one, timed in the same run on the same model (issue 17) */
    int train_bf16;       /* also time training with TH_PRECISION_BF16 on the selected backend */
    const char *train_vs; /* also time f32 training on this compute backend (NULL: none) */
    /* the whole benchmark, ceilings included, this many times (default 3); every figure is
     * the best of the rounds, since a noisy machine only ever slows one down */
    int rounds;
    th_kv_dtype kv_dtype; /* KV cache of the --dtype rows (TH_KV_AUTO: th_gpt2_kv_dtype's choice per row) */
} th_bench_model_opts;

/* One row of the precision table: prefill, decode and the context probe on a model packed
 * at `dtype`, the peak RSS from the packing on (the f32 load before it not counted). */
typedef struct {
    th_dtype dtype;
    double prefill_tok_s, prefill_fma_share;   /* prompt_tokens long */
    double prefill512_tok_s, prefill512_fma_share; /* 512 tokens (or the context) long */
    int prefill512_tokens;                      /* that prompt's length */
    double decode_tok_s, decode_read_share, decode_bytes_per_token;
    double decode_ctx64_tok_s, decode_ctx512_tok_s; /* 32 tokens after 64 and after 512 of context */
    double ctx_bytes_ratio; /* bytes a token reads after 64 over those after 512 (weights + KV at the probes'
                               mean contexts): the 512/64 ratio a decode bound by its bytes alone shows */
    double rss_mb;                              /* peak RSS from packing to the end (VmHWM reset) */
    int rss_reset;                              /* 0: the reset failed; rss_mb is the process peak */
    double ppl_ratio, mean_kl, top1_agreement;  /* vs f32 on quality_tokens tokens (th_precision_quality) */
    th_kv_dtype kv_dtype;                       /* the row's KV cache (auto resolved) */
} th_bench_dtype_row;

typedef struct {
    size_t params;
    int threads;
    const char *matmul; /* backend name used for the main figures */
    double train_step_ms;       /* median over the timed steps: forward + backward + AdamW */
    double train_step_ms_min;
    double train_gflops;        /* model FLOPs per step (6·N·tokens + attention) / time */
    double train_step_ms_naive; /* 0 unless baseline_naive */
    double prefill_tok_s;
    double decode_tok_s;
    double decode_rss_mb;       /* peak RSS of inference (VmHWM reset after the ceilings), before training */
    double peak_rss_mb;         /* peak RSS of inference and training, the ceilings' buffer not counted */
    float first_loss;           /* loss of the first training step, ≈ ln(V) at init */
    /* the machine's ceilings measured in the same run (the best of the rounds), and the
     * figures as shares of them; ceilings_worst: the slowest round's, to show the spread */
    th_ceilings ceilings, ceilings_worst;
    int rounds;
    double decode_bytes_per_token; /* weights read per decoded token + the KV cache at mid-decode */
    double decode_read_share;      /* decode_tok_s x decode_bytes_per_token / read bandwidth */
    double prefill_fma_share;      /* prefill model FLOPs (2·N per token + attention) / FMA peak */
    double train_fma_share;        /* train_gflops / FMA peak */
    th_bench_dtype_row rows[4];    /* the precision table, opts.n_dtypes rows */
    int n_rows;
    const char *lowp_kernel;       /* th_lowp_kernel() */
    /* Modeled energy, not measured: the default simulated plant's profile (laptop-cpu) at
     * duty 1, p_max_w x step time, leakage excluded (NaN where the profile is not found). */
    double modeled_power_w;
    double train_j_step;           /* main row: modeled_power_w x train_step_ms */
    /* the bf16 row (0 unless opts.train_bf16) and the train_vs row (0 unless set) */
    double train_step_ms_bf16, train_step_ms_min_bf16, train_gflops_bf16, train_fma_share_bf16, train_j_step_bf16;
    const char *vs_matmul;
    double train_step_ms_vs, train_gflops_vs, train_fma_share_vs, train_j_step_vs;
} th_bench_model_result;

/* The quality of a packed model `m` against its f32 original `ref` (same shape, same
 * weights before packing) on tokens (n), scored in windows of `window` positions (0: the
 * context), each window on a fresh cache: position i predicts token i + 1. KL is
 * KL(p_f32 ‖ p_m) in nats, summed in double. TH_ERR_INVALID for different shapes or n < 2. */
typedef struct {
    long tokens;           /* positions scored */
    double ppl_f32, ppl;   /* perplexities of ref and m on the tokens */
    double ppl_ratio;      /* ppl / ppl_f32 */
    double mean_kl;        /* mean over positions of KL(p_f32 ‖ p_m), nats */
    double top1_agreement; /* share of positions where both argmaxes agree */
} th_precision_quality_result;

th_status th_precision_quality(th_gpt2 *ref, th_gpt2 *m, const int *tokens, int n, int window,
                               th_precision_quality_result *out);

th_bench_model_opts th_bench_model_defaults(void);

/* Builds a model of shape `cfg` with random weights and measures it, after measuring the
 * machine's ceilings (th_ceilings_measure) with the same threads. Inference runs first, so
 * decode_rss_mb is the footprint of inference alone. */
th_status th_bench_model(const th_gpt2_config *cfg, const th_bench_model_opts *opts,
                         th_bench_model_result *out);

/* ---------------------------------------------------------------------------------
 * training loop */

/* What one optimizer step did; handed to on_step, and later to the telemetry log. */
typedef struct {
    long step;         /* steps completed, 1-based */
    long total_steps;
    float loss;        /* mean training loss over the step's micro-batches */
    double grad_norm;  /* global norm before clipping */
    float lr;
    long tokens;       /* tokens processed by this step */
    double step_ms;
    float val_loss;    /* NaN unless a validation ran after this step */
    uint64_t t_ns;     /* when the step's unit closed (after its pacing wait), CLOCK_MONOTONIC */
    int saved;         /* a checkpoint was written after this step */
} th_step_record;

/* ---------------------------------------------------------------------------------
 * a monitored run: the sensor and its sampler thread, the telemetry log, and the energy
 * ledger that the eco report is computed from. train and generate open one around their
 * work loop; the work loop reports its units of work (to measure its duty, which drives
 * the simulated plant) and its step records. */

typedef struct {
    const char *sensor;        /* backend name, NULL or "auto": the best found (sim if none) */
    th_sense_config sense;     /* root, profile, ... (th_sense_config_default()) */
    double hz;                 /* sampling rate, default 10 */
    const char *telemetry_path; /* CSV or JSONL (by extension); NULL: no log */
    const char *governor;      /* registry name (th_governor_name); NULL: "predictive" */
    double temp_limit_c;       /* NaN: the device's max operating temperature − 2 °C (plant
                                  profile or sensor limits), else 80 °C */
    double fixed_duty;         /* NaN: the governor decides; else pace at this duty, always */
    double gov_margin_c;       /* NaN: the governor's default margin (th_gov_config.margin_c); 0: derived */
    double cpu_tdp_w;          /* > 0: when the sensor gives neither an energy counter nor power,
                                  model the CPU's power from its utilization (th_cpu_model_power_uw) */
    const th_eco_factors *factors; /* prices each unit's energy in CO2e and water (NULL: energy only) */
    int max_threads;           /* thread cap the governor publishes and units apply (0: none, the
                                  default; with a backend whose sums depend on the thread count a
                                  cap changes the numerics) */
    int drive_plant_from_util; /* simulated plant only: heat at this machine's measured CPU
                                  utilization (/proc/stat) instead of the work loop's duty */
    const char *coupling_path; /* predictive governor: a coupling analysis (`thermo analyze`'s
                                  datasheet.json) that turns on the gradient-norm feed-forward
                                  where it shows a usable coupling; NULL or a missing file: off,
                                  and the figures' feed_forward says why */
} th_run_opts;

th_run_opts th_run_opts_default(void);

typedef struct th_run th_run;

/* Energy and sensor figures of a run so far. */
typedef struct {
    th_energy_figure energy;   /* IT energy over the run and its basis (counter, power, modeled) */
    int have_energy;           /* 0 until two samples with energy or power arrived */
    double seconds;            /* wall time since th_run_start */
    double temp_c, temp_max_c; /* last and highest temperature read (NaN if none) */
    uint64_t samples, failed_reads;
    char sensor[96];           /* source of the samples */
    th_origin origin;          /* measured, modeled or replayed */
    char origin_name[16];      /* th_origin_name(origin) */
    char governor[32];         /* governor name, or "fixed" for a fixed duty */
    double limit_c;            /* temperature limit in force */
    double above_limit_s;      /* time the samples spent above the limit */
    double busy_s, idle_s;     /* work-loop time in units, and idle injected by pacing */
    uint64_t fail_safe_decisions;
    char governor_status[160]; /* the governor's account of its last decision */
    double ambient_c;          /* the simulated plant's ambient, else the first temperature read (NaN: none) */
    char ambient_how[64];      /* "simulated plant profile", "first sensor sample (t 0.00 s)" */
    char profile[64];          /* the plant profile's name ("" for real sensors) */
    double co2e_g, water_ml;   /* the energy so far priced with the run's factors (0 without) */
    char feed_forward[120];    /* the gradient-norm feed-forward: on (with its lag) or off and why;
                                  "" without a predictive governor */
    double necessary_idle_s;   /* simulated plant only: the idle the optimal policy, knowing the plant,
                                  would have had to inject for the same work from the same start
                                  (th_gov_necessary_idle); the rest of idle_s was the governor's
                                  caution. NaN on real hardware */
} th_run_figures;

/* Opens the sensor, starts the sampler thread and the telemetry log. Fails with the
 * sensor's or the log's status (message names the backend or path). */
th_status th_run_start(const th_run_opts *o, th_run **out);

/* The work loop marks its units of work (a micro-batch, a token). unit_end then waits as
 * the pace says (idle injection, the governor's duty); the measured busy fraction drives
 * the simulated plant (a real device heats by itself). unit_end returns
 * TH_ERR_INTERRUPTED once th_run_interrupt was called. cost (may be NULL) gets what the
 * unit cost; without a run it is all 0. Both accept a NULL run (no-ops). */
typedef struct {
    double busy_s, idle_s; /* inside the unit; idle injected after it by pacing */
    double energy_j;       /* IT energy the ledger charged to it: from the end of the previous
                              unit to the end of this one's wait (units tile the run, so their
                              charges add up to the run's energy) */
    double co2e_g, water_ml; /* energy_j priced with the run's factors (0 without factors) */
} th_unit_cost;

void th_run_unit_begin(th_run *r);
th_status th_run_unit_end(th_run *r, th_unit_cost *cost);
/* sum += c, field by field. */
void th_unit_cost_add(th_unit_cost *sum, const th_unit_cost *c);

/* Async-signal-safe: cuts the current and every later pacing wait short. */
void th_run_interrupt(th_run *r);

/* Logs a training step record and what its units cost (cost may be NULL) to the telemetry
 * log (no-op without a log). */
void th_run_log_step(th_run *r, const th_step_record *rec, const th_unit_cost *cost);

/* Logs the unit that produced a generated token: the prefill (index 0, tokens = the
 * prompt's length) produced the first; decoding token i (index i, tokens 1) produced token
 * i + 1. So a generation of N tokens has N token rows. With the time the model call took and
 * the unit's cost. No-op without a log. */
void th_run_log_token(th_run *r, long index, long tokens, double ms, const th_unit_cost *cost);

/* Current figures (thread-safe). */
void th_run_figures_now(th_run *r, th_run_figures *out);

/* The sensor behind the run (for limits and the governor). */
th_sensor *th_run_sensor(th_run *r);

/* Stops the sampler, closes the log and the sensor, fills the final figures (may be
 * NULL) and frees the run. Returns the first telemetry write error, if any. */
th_status th_run_stop(th_run *r, th_run_figures *out);

typedef struct {
    long steps;            /* total optimizer steps of the run (the schedule's length) */
    int batch, seq;        /* micro-batch shape (B, T) */
    int grad_accum;        /* micro-batches per step (>= 1) */
    th_adamw_config opt;
    float lr_min;          /* cosine floor */
    int warmup_steps;
    int val_every;         /* validate every N steps and at the end (0: never) */
    int val_batches;       /* batches per validation (0: one pass over the split) */
    int save_every;        /* checkpoint every N steps and at the end (0: only at the end) */
    const char *checkpoint_path; /* NULL: no checkpoints */
    th_run_meta meta;      /* recorded in checkpoints: the settings a resume reuses; the loop
                              keeps its last_val_loss current */
    /* Called after every step (may be NULL). */
    void (*on_step)(const th_step_record *rec, void *user);
    /* Polled between micro-batches; non-zero stops the run after saving (may be NULL). */
    int (*should_stop)(void *user);
    /* Monitored run (may be NULL): micro-batches are marked as units of work. */
    th_run *run;
    void *user;

    /* waste guards (guard.h). NaN/Inf in the loss or gradients is always caught before the
     * update; health.mode OFF only turns off spike skips and rollbacks. */
    th_train_health_config health;   /* default: on (6 sigma over 128 steps, rollback after 3) */
    th_early_stop_config early_stop; /* patience 0: off (default) */
    th_budget_config budget;         /* all 0: no budget (default) */
    th_guard_cost forecast_limit;    /* all 0: forecast reported, never refuses (default) */
    const th_eco_factors *factors;   /* prices energy in CO2e and water (NULL: energy and time only) */
    int preflight;                   /* 1 (default): memory, init loss, checkpoint round trip first */
    int from_scratch;                /* the model is freshly initialized: check loss ≈ ln(V) */
    /* Fault injection for tests: called after the backward, before the health check. */
    void (*inject)(th_gpt2 *m, long step, float *loss, void *user);
    /* Distillation hooks (NULL: none), both called with hook_user. teacher: before each
     * micro-batch's unit of work, with the batch about to be trained on; it may mark units of
     * its own on `run` (their cost is its to book: the step's cost leaves them out); a non-OK
     * status ends the run with it. micro_loss: replaces the micro-batch's forward and mean
     * cross-entropy backward; it must accumulate loss_scale · d loss/dθ into m's gradients
     * and return the loss that the step record and the guards see. */
    th_status (*teacher)(const int *inputs, const int *targets, int B, int T, void *hook_user);
    th_status (*micro_loss)(th_gpt2 *m, const int *inputs, const int *targets, int B, int T, float loss_scale,
                            float *loss, void *hook_user);
    void *hook_user;
    /* Continual-learning hooks (NULL: none; both get `user`). mix_batch sees each (B, T)
     * micro-batch as drawn and may overwrite rows of it (replay); `micro` counts the
     * schedule's micro-batches, step x grad_accum + k, so a mixer keyed on it resumes
     * exactly. penalty runs after the step's backward, before the gradient norm: it adds a
     * regulariser's gradient to th_gpt2_grads(m) (a failure stops the run with its status). */
    void (*mix_batch)(int *inputs, int *targets, int B, int T, long micro, void *user);
    th_status (*penalty)(th_gpt2 *m, void *user);
    /* Data-parallel training (dist.h; NULL: one process, gradients accumulated in float as
     * ever). With it grad_accum is the step's global micro-batch count G: every process draws
     * all G micro-batches (the data cursor stays the same everywhere), computes the ones
     * th_dp_mine gives it into zeroed gradients, and th_dp_step_end makes the gradients the
     * exact fixed-point sum, so the weights are the same bits whatever the assignment or the
     * process count. should_stop is agreed at step starts; rank 0 alone writes checkpoints,
     * between barriers. Budget and forecast limits are per process: leave them off. */
    struct th_dp *dp;
    /* Matmul precision of the run's forwards and backwards, validation included: a
     * th_precision, TH_PRECISION_F32 (0, default) or TH_PRECISION_BF16; th_train sets it on
     * the model (th_gpt2_set_precision) and leaves it set. */
    int precision;
} th_train_opts;

typedef struct {
    long steps_done;       /* total steps completed, resumed ones included */
    float last_loss, last_val_loss, first_val_loss;
    double seconds;        /* wall time of this call */
    long tokens;           /* tokens processed by this call */
    /* guards */
    char stopped_by[32];   /* "" (ran to the end), "budget", "forecast", "early stop", "zombie" */
    char stop_reason[352]; /* the guard's words (th_early_stop_verdict.reason and the like) */
    double energy_j;       /* IT energy of this call's steps (from the run's ledger; 0 without one) */
    double energy_saved_j; /* planned steps not run x mean step energy, when a guard stopped early */
    th_health_summary health;
    char forecast[256];    /* the latest cost forecast, "" before min_steps */
} th_train_result;

/* Defaults: 4 x 64, no accumulation, AdamW defaults, warmup 10% of steps (at most 100),
 * lr_min = lr / 10, validation every 50 steps over 8 batches, checkpoints at the end. */
th_train_opts th_train_defaults(long steps);
/* th_train_defaults for a run's settings (every field of s is taken as set: decide the
 * defaults first): shape, accumulation, AdamW, lr (floor lr / 10), warmup, and s recorded as
 * the checkpoints' metadata. */
th_train_opts th_train_opts_from_meta(const th_run_meta *s);

/* Trains `m` from state `st` (st->step steps already done; for a resume, restore the
 * loader's cursor and the model's AdamW state from the checkpoint first) up to
 * o->steps. train yields (B, T) batches; val may be NULL. On a stop request it saves a
 * checkpoint (if a path is set) and returns TH_ERR_INTERRUPTED. The sequence of batches,
 * losses and weights depends only on the model, the data, the seed, the options and the
 * thread count: a run stopped at any step and resumed from its checkpoint ends with the
 * same weights as one that was not. */
th_status th_train(th_gpt2 *m, th_data_loader *train, th_data_loader *val, const th_train_opts *o,
                   th_train_state *st, th_train_result *out);

/* Mean loss over `batches` (B, T) validation batches (0: one pass) from the loader's start;
 * the loader must have been opened with the same B and T. */
th_status th_evaluate(th_gpt2 *m, th_data_loader *val, int B, int T, int batches, float *loss);

/* ---------------------------------------------------------------------------------
 * a training job: model, settings, data, monitored run, th_train, saved model */

#define TH_TRAIN_JOB_MAX_DATA 64

typedef struct {
    const char *model;         /* a preset (from scratch), a model file or directory; NULL: "small" */
    const char *const *data;   /* text files, directories of .txt, or one token shard; NULL: the
                                  embedded corpus (th_train_job_default_corpus) */
    size_t n_data;
    const char *val_shard;     /* validation shard when data is a shard */
    const char *out_dir;       /* model/, checkpoint.bin, data/ (default runs/default) */
    int resume;                /* continue from OUT/checkpoint.bin with its recorded settings */
    th_run_meta settings;      /* the settings given (has bits); the rest come from the checkpoint
                                  on resume, else the defaults (300 steps, 8 x 64, ...) */
    int val_every, val_batches, save_every; /* default 50, 8, 0 */
    th_guard_mode spike_mode;  /* default stop */
    int early_stop_patience;   /* 0: off */
    double early_stop_delta;   /* default 0.001 */
    th_budget_config budget;
    th_guard_cost forecast_limit;
    int preflight;             /* default 1 */
    th_run_opts run;           /* the monitored run (sensor, governor, telemetry, factors) */
    double deadline_s;         /* > 0: stop as an interruption would after this many seconds */
    void (*on_step)(const th_step_record *rec, void *user);
    int (*should_stop)(void *user);
    /* Called with the run once it started (for a signal handler's th_run_interrupt and the
     * progress line) and with NULL before it stops. May be NULL. */
    void (*on_run_started)(th_run *run, void *user);
    void *user;
    /* Distillation (NULL: none): a model to train instead of opening `model` (borrowed, not
     * freed; `model` still names where the tokenizer comes from; ignored on resume), and
     * th_train_opts' teacher, micro_loss and hook_user, passed through. */
    th_gpt2 *start_model;
    th_status (*teacher)(const int *inputs, const int *targets, int B, int T, void *hook_user);
    th_status (*micro_loss)(th_gpt2 *m, const int *inputs, const int *targets, int B, int T, float loss_scale,
                            float *loss, void *hook_user);
    void *hook_user;
    /* Data-parallel training (dist.h; NULL: one process): settings.grad_accum is then the
     * global count. Rank 0 builds the data shards and writes the checkpoint and the model;
     * every rank opens the model and data, and a failure on any rank fails all of them. */
    struct th_dp *dp;
} th_train_job;

th_train_job th_train_job_defaults(void);
/* The first file of the embedded corpus (for messages). */
const char *th_train_job_default_corpus(void);

typedef struct {
    th_run_meta settings;      /* the settings that applied */
    int from_scratch;
    th_model_format input_format;
    long start_step;           /* steps done before this call (resume) */
    th_train_result train;
    int have_figures;          /* the monitored run stopped cleanly: figures are valid */
    th_run_figures figures;
    int deadline_hit;          /* stopped by deadline_s */
    char checkpoint_path[4200], model_dir[4200], llmc_path[4300]; /* llmc_path "" unless written */
} th_train_job_result;

/* Runs the job. Progress goes to th_log (INFO lines: model, data, training) and on_step.
 * Fails with the status of whatever failed (the message names the file or setting);
 * TH_ERR_INTERRUPTED after a stop request or the deadline, with the checkpoint saved and
 * out->figures holding the energy spent all the same. The model is saved only when the
 * job ran to its end or a guard stopped it. */
th_status th_train_job_run(const th_train_job *j, th_train_job_result *out);

/* ---------------------------------------------------------------------------------
 * continual learning (issue 19, capabilities.md §2): stateful updates of a trained model
 * from new data, with replay, a forgetting gate before promotion, atomic promotion with
 * the previous model kept, and drift-triggered updates that energy and heat may veto.
 *
 * The state directory is a `thermo train --out DIR` directory as it is:
 *   DIR/checkpoint.bin   the current model: weights, AdamW moments, RNG, data cursor, settings
 *   DIR/model/           its Hugging Face export (what a server loads), tokenizer files
 *   DIR/data/{train,val}.bin   the old data: the reservoir's source and the held-out old slice
 * and what updates add under DIR/learn/:
 *   state.json           {"version", "previous_version"}: the current model's version (0: as trained)
 *   previous.bin         the model the last promotion (or rollback) replaced
 *   replay.bin           the reservoir of old windows (text.h), rebuilt when its source changes
 *   ewc.bin              the diagonal Fisher of the current model over reservoir windows
 *   ledger.jsonl         one line per finished update: figures, gate verdict, cost
 *   journal.json         present only while a promotion or rollback is under way
 *   pending/             an update not yet finished: checkpoint.bin, update.json, data/
 *   rejected.bin         the last candidate the gate refused
 * A kill at any moment leaves DIR/checkpoint.bin a complete, checksummed model (old or
 * new); the next call (or th_learn_recover) finishes an interrupted promotion.
 *
 * The gate: promote when forgetting = ppl_old_after / ppl_old_before − 1 is at most
 * max_forgetting; beyond it, only by the gain rule: the new-data loss fell by at least
 * gain_ratio x the old-data loss rise, both in nats per token (ln of the perplexity
 * ratios; default 10: old-data quality weighs ten times new-data quality [ours]). Never when
 * a perplexity is not finite or the new data did not improve. */

typedef struct {
    const char *state_dir;          /* required */
    const char *const *data;        /* new data: text files or directories of .txt, or one token
                                       shard with val_shard (a held-out new slice is required) */
    size_t n_data;
    const char *val_shard;
    const char *replay_from;        /* old data (text, or a shard): NULL: DIR/data/train.bin and
                                       val.bin; text is built into DIR/learn/old/ */
    double replay;                  /* share of the rows drawn from the reservoir, [0, 1); 0.05 */
    int replay_windows;             /* reservoir capacity (256) */
    long steps, tokens;             /* the update's length, one of them (tokens: rounded up to
                                       whole steps); neither: 100 steps */
    long stop_after;                /* > 0: stop once the update has done this many steps; it stays
                                       pending and resume continues it (bit-identically) */
    int resume;                     /* continue the pending update with its recorded settings */
    th_run_meta settings;           /* given lr, batch, seq, grad_accum, warmup, seed, weight decay,
                                       clip (has bits); the rest: the state's recorded settings;
                                       warmup 1 % of the update's steps (at least 1), cosine to lr/10 */
    double max_forgetting;          /* relative rise of old-data perplexity tolerated (0.02) */
    double gain_ratio;              /* the gain rule's factor, in nats per token (10; 0: no rule) */
    double ewc_lambda;              /* EWC strength (0: off) */
    int ewc_windows;                /* reservoir windows the Fisher is estimated on (256) */
    double l2_init_lambda;          /* L2-to-init strength (0: off) */
    int eval_batches;               /* batches per perplexity slice (8; 0: the whole split) */
    int save_every;                 /* pending checkpoint every N steps (0: at the end and on a stop) */
    th_guard_mode spike_mode;       /* th_train's health guard (default stop) */
    th_budget_config budget;
    th_run_opts run;                /* the monitored run around the update */
    void (*on_step)(const th_step_record *rec, void *user);
    int (*should_stop)(void *user);
    void (*on_run_started)(th_run *run, void *user); /* the run, then NULL before it stops */
    /* Test hook: called after each promotion stage (1 journal written, 2 previous model
     * kept, 3 candidate renamed into place, 4 model exported); NULL: none. */
    void (*on_promote_stage)(int stage, void *user);
    void *user;
} th_learn_opts;

th_learn_opts th_learn_defaults(void);

typedef struct {
    int pending;                    /* the update stopped before its end: resume continues it */
    int promoted;                   /* the candidate is now the current model */
    char verdict[384];              /* the gate's reason in words ("" while pending) */
    double ppl_old_before, ppl_old_after, ppl_new_before, ppl_new_after;
    double forgetting, new_gain;    /* relative, as the gate defines them */
    long steps_done, steps_total;   /* of the update (all calls) */
    long tokens, replay_rows;       /* trained on (all calls); rows drawn from the reservoir */
    double energy_j, co2e_g, water_ml, seconds; /* the update's monitored runs, all calls */
    double j_per_ppl, co2e_g_per_ppl; /* cost per unit of new-data perplexity recovered
                                         (NaN when none was recovered) */
    long version;                   /* the current model's version after the call */
    th_train_result train;          /* this call's training */
    int have_figures;
    th_run_figures figures;         /* this call's monitored run */
} th_learn_result;

/* Runs (or, with resume, continues) one update of the state in o->state_dir and gates it.
 * Bad input fails with TH_ERR_INVALID (conflicting or missing options, a state that is not
 * one, an update pending without resume) or TH_ERR_FORMAT (data that does not tokenize or is
 * too short, a pending update, sidecar or data of another model shape or vocabulary), and the
 * current model is untouched; TH_ERR_INTERRUPTED after a stop request (the update pending).
 * Reaching stop_after is TH_OK with out->pending. Progress goes to th_log. */
th_status th_learn_run(const th_learn_opts *o, th_learn_result *out);

/* Makes the previous model current again (and the current one previous, so a second
 * rollback undoes the first), atomically, re-exporting DIR/model. TH_ERR_INVALID when there
 * is no previous model, TH_ERR_FORMAT when it is of another shape; *version (may be NULL)
 * gets the version now current. */
th_status th_learn_rollback(const char *state_dir, long *version);

/* Drops a pending update (the current model is untouched). TH_OK when there is none. */
th_status th_learn_discard(const char *state_dir);

/* Finishes a promotion or rollback that a kill interrupted (a no-op when none was). */
th_status th_learn_recover(const char *state_dir);

/* The hot-load hook for a server: the current version and the directory of its Hugging
 * Face export. `thermo serve --model-from-state DIR` (serve.h: th_serve_opts.state_dir)
 * polls DIR/learn/state.json (replaced atomically after each export, so a changed file
 * names a complete model/) and reloads model_dir for new requests while in-flight ones
 * finish on the weights they started with (th_server_reload). */
th_status th_learn_current(const char *state_dir, long *version, char *model_dir, size_t cap);

/* drift watch: the per-token NLL of incoming text under the current model, fed to th_drift
 * against a frozen reference (th_learn_drift_reference over the state's whole held-out old
 * slice under the current model, measured again after each promotion).
 *
 * With watch_s > 0 it is a watcher: it polls watch_dir every poll_ms for regular files it
 * has not scored yet (names starting with '.' are skipped: write a file elsewhere or under a
 * dot name and rename it into place), scores each new file once, and stops after watch_s
 * seconds or when should_stop says so (SIGINT/SIGTERM). What it has scored, the update it
 * owes and the energy its updates spent are kept in DIR/learn/watch.json (replaced
 * atomically after each file), so a restarted watcher skips what it saw and continues; a
 * file is known by its name, size and modification time (rewritten: scored again). The
 * detector itself starts afresh from the reference on each start.
 *
 * With an update template, drift schedules an update on the files from the one where it
 * fired on (at most TH_TRAIN_JOB_MAX_DATA). It runs only when th_update_gate allows: its
 * expected energy (3 x the scoring pass's joules per token x the update's tokens: a training
 * token costs a forward and a backward of about twice the forward) fits what is left of
 * gate.energy_budget_j (a budget for all the watch's updates, across restarts), and the
 * governor's thermal margin (the run's limit − the temperature now) is at least
 * gate.min_margin_c. A refused update stays owed and is tried again at each poll; the skip
 * and its reason are logged (th_log) and counted. An update pending from a killed watcher is
 * continued first. */

typedef struct {
    const char *state_dir;
    const char *watch_dir;          /* incoming text: its regular files, in byte order of name */
    th_drift_config drift;          /* th_drift_defaults() */
    int seq;                        /* NLL window (0: the state's recorded seq) */
    th_run_opts run;                /* the monitored run around scoring (energy per token, heat) */
    double watch_s;                 /* > 0: poll for new files this long; 0: one pass over what is there */
    int poll_ms;                    /* between polls (1000) */
    int (*should_stop)(void *user); /* polled between windows and polls (NULL: never) */
    void *user;
    const th_learn_opts *update;    /* NULL: detect only; else the update drift schedules (its data,
                                       n_data and resume are the watcher's; steps/tokens its length) */
    th_update_gate_config gate;     /* the watch's energy budget (0: none) and thermal margin (5 C) */
} th_learn_watch_opts;

typedef struct {
    long tokens;                    /* NLL values fed by this call */
    size_t n_files;
    char **files;                   /* the files this call scored, in order (th_learn_watch_result_free) */
    int drift;                      /* drift was detected by this call */
    long drift_index;               /* the token (0-based, in this call's stream) where it first fired, else -1 */
    size_t drift_file;              /* the file it first fired in (n_files when none) */
    long drifts;                    /* drift events (the detector goes on after each) */
    long ph_alarms, test_alarms, tests;
    double ref_nll, stream_nll;     /* mean NLL of the (last) reference and of the stream */
    double stat, p;                 /* the first confirming (or the last) two-sample test */
    double j_per_token;             /* energy of scoring per token (NaN without an energy figure) */
    long polls;
    long updates_run, updates_promoted, updates_skipped, updates_failed; /* this call */
    char last_skip[256];            /* the last skip's reason ("" when none) */
    double update_energy_j;         /* energy of the watch's updates, all calls (watch.json) */
    long version;                   /* the current model's version at the end */
    int have_figures;
    th_run_figures figures;         /* the last scoring segment's monitored run */
} th_learn_watch_result;

/* The drift reference of cfg (th_drift_set_reference): cfg->reference / cfg->window runs
 * (at least 1) of cfg->window consecutive tokens' NLL under m, their starts spread evenly
 * across windows [w_begin, w_end) of dl (opened with B 1 and the scoring T; windows start
 * at multiples of T, each scored as a forward of T tokens as incoming text is), so that the
 * reference spans the old data's passages and not one of them; out[0..cfg->reference).
 * The loader is left reset. TH_ERR_INVALID when the range holds fewer windows than the
 * runs need without overlapping, the model's status otherwise. */
th_status th_learn_drift_reference(th_gpt2 *m, th_data_loader *dl, int T, uint64_t w_begin, uint64_t w_end,
                                   const th_drift_config *cfg, double *out);
th_learn_watch_opts th_learn_watch_defaults(void);
/* Fails with TH_ERR_INVALID when the state or the directory is missing or the reference slice
 * is shorter than drift.reference tokens, TH_ERR_INTERRUPTED when an update was interrupted
 * (it stays pending; the next watcher continues it), with the tokenizer's, model's or
 * watch.json's status otherwise. A file that does not read or tokenize, and an update that
 * fails on its data, are logged, counted and skipped: the watch goes on. */
th_status th_learn_watch(const th_learn_watch_opts *o, th_learn_watch_result *out);
void th_learn_watch_result_free(th_learn_watch_result *r);

/* ---------------------------------------------------------------------------------
 * a coupling-analysis session: a training job bounded in steps and time, with telemetry,
 * session.json and the data sheet (analyze.h) */

typedef struct {
    const char *out_dir;   /* DIR: telemetry.csv, session.json, run/ (the job's output), data sheet */
    double duration_s;     /* wall-clock bound (default 90): the job stops as an interruption would */
    double hz;             /* telemetry rate (default 1) */
    double ambient_c;      /* NaN (default): the plant's ambient, else the first sample */
} th_session_opts;

th_session_opts th_session_defaults(void);

typedef struct {
    th_train_job_result job;
    th_session_meta meta;
    th_analysis *analysis; /* the data sheet's figures (th_analysis_free); NULL on failure */
    char telemetry_path[4200], meta_path[4200];
} th_session_result;

/* Runs `job` (its out_dir, telemetry and deadline are the session's) and analyzes it.
 * Reaching the deadline is a normal end (meta.stopped_by "duration"). session.json is
 * written even when the job fails (stopped_by "error"); then the job's status is returned. */
th_status th_session_run(const th_train_job *job, const th_session_opts *o, th_session_result *out);

/* ---------------------------------------------------------------------------------
 * generation: prefill, then a token loop paced and charged by the monitored run */

typedef enum {
    TH_GEN_STOP_MAX_TOKENS = 0, /* max_tokens generated */
    TH_GEN_STOP_END_OF_TEXT,    /* the model sampled <|endoftext|> (not handed out) */
    TH_GEN_STOP_CONTEXT_FULL,   /* the KV cache reached the model's context */
    TH_GEN_STOP_LOOP,           /* the loop guard stopped a stuck stream (stop_detail says how) */
    TH_GEN_STOP_BUDGET,         /* the next token's projected cost does not fit a budget */
    TH_GEN_STOP_INTERRUPTED,    /* th_run_interrupt during a unit */
    TH_GEN_STOP_CALLER,         /* on_token returned non-zero */
} th_gen_stop;

/* "max-tokens", "end of text", "context full", "loop", "budget", "interrupted", "caller". */
const char *th_gen_stop_name(th_gen_stop s);

typedef struct {
    long max_tokens;              /* tokens to generate at most (default 64) */
    th_sampler_config sampling;   /* default temperature 0.8, top-k 40, top-p 0.95 */
    uint64_t seed;                /* sampling seed (default 1337) */
    th_loop_guard_config loop_guard; /* default: stop on a loop */
    th_budget_config budget;      /* all 0: none; charged with each token's unit cost */
    th_run *run;                  /* monitored run (NULL: unpaced, uncharged) */
    /* Each generated token as it is decided (bytes NULL for an id with none); a non-zero
     * return stops the generation after this token (TH_GEN_STOP_CALLER). May be NULL. */
    int (*on_token)(int token, const char *bytes, size_t len, void *user);
    /* The loop guard's warning in warn mode (may be NULL). */
    void (*on_warning)(const char *msg, void *user);
    void *user;
} th_generate_opts;

th_generate_opts th_generate_defaults(void);

typedef struct {
    long prompt_tokens, generated;
    th_gen_stop stop;
    char stop_detail[256];           /* the loop guard's or the budget's words ("" otherwise) */
    double prefill_s, decode_s;      /* wall time of the prefill unit and of the token loop */
    double prefill_tok_s, decode_tok_s;
    th_unit_cost prefill_cost, decode_cost; /* sums of the units' costs */
    th_loop_verdict loop;            /* the loop guard's latest verdict (kind NONE: no loop) */
} th_generate_result;

/* Encodes `prompt` for `cfg` (NULL or "": <|endoftext|>, as a new document starts) into
 * *ids (th_alloc'ed, the caller frees). Fails with the tokenizer's status, TH_ERR_INVALID
 * when the prompt fills the context, TH_ERR_FORMAT for an id outside the vocabulary. */
th_status th_generate_prompt(const th_tokenizer *tok, const th_gpt2_config *cfg, const char *prompt, int **ids,
                             size_t *n);

/* Continues `prompt` (n_prompt ids, 1 .. context - 1) with KV-cache decoding. Stops for the
 * reasons of th_gen_stop; stopping is not an error. Tokens are bit-identical whatever the
 * pacing (the run only inserts waits). Fails on a model error, bad options or no memory;
 * *out holds what was done up to then. */
th_status th_generate(th_gpt2 *m, const th_tokenizer *tok, const int *prompt, size_t n_prompt,
                      const th_generate_opts *o, th_generate_result *out);

/* ---------------------------------------------------------------------------------
 * distillation (issue 18): a student trained on a teacher's outputs with DistilGPT-2's loss
 * (model.h), whose footprint includes the teacher: its in-loop forward passes (each a unit
 * of work of its own on the run, paced by the same governor, booked per step) or its share
 * of a cache of top-k log-probabilities (io.h's teacher cache), and, when given, a share of
 * the teacher's pre-training (unknown otherwise, never 0). */

typedef enum { TH_TEACHER_INLOOP = 0, TH_TEACHER_CACHE = 1 } th_teacher_mode;

#define TH_DISTILL_MAX_STUDENT_LAYERS 64

typedef struct {
    th_train_job job;         /* job.model: the teacher (a model file or directory; its tokenizer);
                                 data, out_dir, settings, guards and run as for training. The
                                 distillation sets start_model, data, val_shard and the hooks */
    int layers[TH_DISTILL_MAX_STUDENT_LAYERS]; /* student block i = teacher block layers[i] */
    int n_layers;             /* 0: th_distill_default_layers */
    const char *student_config; /* NULL: the blocks; "random": their shape, random init; else a
                                 preset (random init) or a model path (its weights) */
    th_distill_loss_config loss;
    th_teacher_mode mode;
    const char *cache_path;   /* mode CACHE: made by th_distill_cache_run from the same teacher and data */
    double cache_students;    /* students sharing the cache (>= 1, default 1): each is charged 1/n */
    double pretraining_kwh;   /* the teacher's pre-training energy; NaN (default): unknown */
    double pretraining_share; /* the share of it charged to this student (default 1) */
} th_distill_job;

th_distill_job th_distill_job_defaults(void);

typedef struct {
    th_train_job_result train;  /* the student's job: settings, losses, figures, paths */
    th_gpt2_config teacher_cfg, student_cfg;
    int layers[TH_DISTILL_MAX_STUDENT_LAYERS], n_layers; /* 0 layers: the student did not come from blocks */
    th_teacher_mode mode;
    long teacher_passes;        /* in-loop teacher forwards (micro-batches) */
    double teacher_tokens;      /* tokens the teacher scored for this student (in-loop or read from the cache) */
    th_unit_cost teacher;       /* in-loop: the sum of the teacher's units */
    double student_j;           /* the student's own steps (its units; the teacher's left out) */
    double cache_j;             /* cache: what making it cost (its header); NaN unknown */
    double cache_tokens;        /* tokens the cache covers */
    double cache_share_j;       /* cache_j / cache_students */
    double teacher_j_per_token; /* in-loop: measured here; cache: from the cache's making */
    double cache_estimate_j;    /* in-loop: what a cache of the train split would cost at that rate */
    double inloop_estimate_j;   /* cache: what the in-loop teacher would have cost this run */
    double read_j;              /* cache: the lookups' share of the student's energy */
    double break_even_students; /* students after which a cache costs less than the in-loop teacher
                                   (INFINITY: never; NaN: no figure) */
    double pretraining_j;       /* NaN: unknown */
    double co2e_g_per_j, water_ml_per_j; /* the run's price (0 without factors) */
    char steps_csv[4300];       /* OUT/distill_steps.csv: the teacher's ledger line per step */
} th_distill_result;

/* Checks everything it can before writing anything: the teacher loads, the student's blocks
 * or config fit it (vocabulary, context; width when alpha-cos > 0), --seq within the context,
 * a cache of this teacher (fingerprint), this data (fingerprint of the train shard), this
 * --seq, complete. Only then are OUT/data and the job's files written. Fails with
 * TH_ERR_INVALID / TH_ERR_FORMAT naming the file and the problem, or the job's status;
 * out->train holds the job's figures as th_train_job_run leaves them. */
th_status th_distill_run(const th_distill_job *d, th_distill_result *out);

/* The footprint lines as text (*text th_alloc'd): the student's steps, the teacher (in-loop
 * or cache share), the pre-training share (or "unknown"), the total, and the break-even. */
th_status th_distill_report_text(const th_distill_result *r, char **text);
/* The same as JSON to path (atomic). TH_ERR_IO names it. */
th_status th_distill_write_json(const th_distill_result *r, const char *path);
/* One emissions.csv row per known line (experiment_id "distill:student", "distill:teacher-
 * inloop" or "distill:teacher-cache-share", "distill:teacher-pretraining"), priced with
 * factors. TH_ERR_STATE without an energy figure. */
th_status th_distill_append_emissions(const th_distill_result *r, const th_eco_factors *factors, const char *path);

typedef struct {
    const char *teacher;      /* model file or directory */
    const char *const *data;  /* as th_train_job's (NULL: the embedded corpus) */
    size_t n_data;
    const char *out_path;     /* the cache file */
    int top_k;                /* default 64 */
    int seq;                  /* windows of seq + 1 tokens (default 64: the student's --seq) */
    int batch;                /* windows per teacher forward (default 8) */
    int resume;               /* continue a partial cache at out_path (same teacher, data, k, seq) */
    int save_every;           /* publish the partial cache every N batches (default 64) */
    th_run_opts run;          /* the monitored run that measures it */
    int (*should_stop)(void *user);
    void (*on_run_started)(th_run *run, void *user);
    void *user;
} th_distill_cache_opts;

th_distill_cache_opts th_distill_cache_defaults(void);

typedef struct {
    th_tcache_header header;  /* as written */
    th_run_figures figures;   /* this call's run */
    int have_figures;
    double tokens;            /* tokens scored by this call */
} th_distill_cache_result;

/* Runs the teacher over every window of the train split of the data and writes its top-k
 * log-probabilities, the energy of this call added to the header's. Interrupted (should_stop
 * or th_run_interrupt): the windows done so far are published (resumable), TH_ERR_INTERRUPTED.
 * Errors name the file; a resume of a cache made from another teacher, data, k or seq is
 * TH_ERR_INVALID and leaves it as it was. */
th_status th_distill_cache_run(const th_distill_cache_opts *o, th_distill_cache_result *out);

/* ---------------------------------------------------------------------------------
 * eco-benchmark: models rated by quality per joule, gram CO2e and litre of water
 *
 * For each model, inside its own monitored run:
 *   checks   tokenizer round trip on the data's first KB, every data token inside the
 *            model's vocabulary, KV cache against the full forward (evaluate.h's tolerance),
 *            the data's loss against the "last_val_loss" a checkpoint's run_meta recorded
 *            (evaluate.h's loss rule); a model that fails one is "not rated: <reason>",
 *            never rated down;
 *   prefill  the perplexity pass over the data (evaluate.h's recipe, each window a unit of
 *            work): one warm-up pass, then passes until min_s have gone by; J per predicted
 *            token;
 *   decode   queries: `prompts` prompts (the data's first non-empty lines, at most
 *            TH_BENCH_ECO_PROMPT_TOKENS tokens each) x {greedy, seeded sampling}, each
 *            decoding exactly `decode` tokens through the KV cache, each token a unit of work;
 *            the first query is a warm-up, then rounds of the others until min_s have gone
 *            by. A query's energy (its prompt's prefill included) gives Wh, CO2e, water and
 *            pollutants per 1,000 queries; J per decoded token is that energy over the
 *            query's decoded tokens.
 * Energy is the difference of th_run_figures_now over each steady window; each window is
 * measured `repeats` times and a figure is the median, with its min-max range. Rating:
 * th_bench_eco_rate (evaluate.h's rule: quality band, stars over the comparable models
 * with no split of overlapping ranges, Pareto front of bits per byte against Wh per 1,000
 * queries, marginal verdicts). */

#define TH_BENCH_ECO_MAX_MODELS 32
#define TH_BENCH_ECO_MAX_PROMPTS 16
#define TH_BENCH_ECO_PROMPT_TOKENS 32
#define TH_BENCH_ECO_MAX_REPEATS 25

typedef struct {
    th_run_opts run;               /* one monitored run per model; its telemetry_path is
                                      rewritten by each model's run */
    const th_eco_factors *factors; /* prices the footprint of 1,000 queries (required) */
    int ctx;                       /* perplexity window (0: each model's context) */
    int prompts;                   /* 1..TH_BENCH_ECO_MAX_PROMPTS (default 4): 2 x prompts queries */
    int decode;                    /* tokens decoded per query (default 32) */
    double min_s;                  /* length of each steady window, seconds (default 1) */
    uint64_t seed;                 /* the sampled queries' seed (default 1337) */
    int repeats;                   /* each steady window measured this many times (default 5);
                                      figures are the median, with min and max */
    double quality_band;           /* rated against each other: bpb <= best x (1 + band)
                                      (default TH_EVAL_QUALITY_BAND) */
    double flag_energy_ratio;      /* the verdict: flagged at >= this energy ratio ... */
    double flag_min_gain;          /* ... for a relative bpb gain under this (defaults
                                      TH_EVAL_FLAG_ENERGY_RATIO, TH_EVAL_FLAG_MIN_GAIN) */
    const char *names;             /* short names, comma-separated, one per model; NULL: each
                                      path's last component (with its parent when that is
                                      "model" or two would be the same) */
    const char *precision;         /* inference precision every model is packed at once loaded
                                      (th_dtype_names: "f32" (default), "bf16", "f16", "q8";
                                      the embedding stays packed too), and reported */
} th_bench_eco_opts;

/* A figure measured over repeated windows: the median and the range. */
typedef struct {
    double median, min, max;
    int n;                         /* windows measured (0: none, all NaN) */
} th_bench_eco_spread;

typedef struct {
    const char *path;              /* the caller's string (th_bench_eco's models[i]) */
    char not_rated[256];           /* "" when rated, else the first check it failed */
    char checks[512];              /* what the checks found */
    th_ppl_result ppl;
    double kv_diff;                /* largest KV-cache logit difference */
    double recorded_val_loss;      /* NaN: none recorded */
    double j_tok_prefill;          /* J per predicted token, prefill window */
    double j_tok_decode, j_query;  /* J per decoded token, per query, decode window */
    double tokens_per_s;           /* decoded tokens per second, decode window */
    long prefill_tokens, queries, decode_tokens; /* counted in the steady windows */
    int have_energy;               /* the run had an energy figure and j_query is finite */
    th_eco_footprint per_kq;       /* footprint of 1,000 queries (when have_energy) */
    double temp_mean_c, temp_peak_c, above_limit_s, duty_mean;
    th_run_figures fig;            /* the model's run */
    int stars;                     /* 1..5, 0 when not rated */
    int pareto;                    /* on the front of bits per byte against Wh per 1,000 queries,
                                      among models that save bits over the uniform baseline */
    /* the repeated windows: j_tok_prefill, j_tok_decode, j_query and tokens_per_s above are
       the medians of these */
    th_bench_eco_spread s_j_tok_prefill, s_j_tok_decode, s_j_query, s_tokens_per_s;
    th_bench_eco_spread s_wh_per_kq;  /* Wh per 1,000 queries, from s_j_query */
    char name[64];                 /* the short name (opts names, or from the path) */
    double bpb_uniform;            /* the uniform baseline on the data (th_eval_uniform_bpb) */
    double bpb_saved;              /* bpb_uniform - ppl.bits_per_byte */
    double quality_per_wh;         /* bpb_saved / Wh per 1,000 queries (NaN: no energy) */
    int comparable;                /* within the quality band of the best (evaluate.h rule 2) */
    char not_comparable[160];      /* "" when comparable or not rated, else why */
    int tie;                       /* ranges overlap: the model whose band it shares, or -1 */
    int front_prev;                /* on the front: the cheaper neighbour, or -1 */
    double marginal_wh_per_bpb;    /* to front_prev: extra Wh/1kq per bpb gained (else NaN) */
    double energy_ratio, gain_rel; /* to front_prev: energy ratio, relative bpb gain */
    int flagged;                   /* the seed's verdict: costs >= k x for a gain < g */
    int vocab_size;                /* the model's (the uniform baseline's V) */
} th_bench_eco_model;

typedef struct {
    th_bench_eco_model *models;
    int n_models;
    int modeled;                   /* some model's energy or temperature came from a model */
    char cpu[256];                 /* th_cpu_name */
    int threads;
    const char *matmul;            /* the matmul backend's name */
    th_eco_factors factors;        /* a copy of the factors the footprints were priced with */
    int repeats;                   /* the options the rating used, for the documents */
    double quality_band, flag_energy_ratio, flag_min_gain;
    char precision[16];
} th_bench_eco_result;

/* prompts 4, decode 32, min_s 1, seed 1337, ctx 0, repeats 5, quality band, verdict and
 * precision "f32" as documented above; run: th_run_opts_default() at 50 Hz
 * (short windows: finer energy steps) with governor "none" (a benchmark measures the model,
 * not the pacing, whose idle time would be charged to the model). */
th_bench_eco_opts th_bench_eco_defaults(void);

/* Checks, measures and rates models[0..n) (paths: HF dir, .safetensors, llm.c .bin,
 * checkpoint; a directory's own tokenizer if it has one, else GPT-2's) on the held-out text
 * text[0..len). A model failing a check is reported with not_rated set: TH_OK. An error
 * status (its message names the model) when the benchmark itself could not run: a model
 * that does not load, data of fewer than 2 tokens or without a non-empty line, a decode
 * length leaving no room for a prompt, the run's sensor or log, TH_ERR_INTERRUPTED;
 * TH_ERR_INVALID for n outside [1, TH_BENCH_ECO_MAX_MODELS] or bad options. Progress goes
 * to th_log (info). On success *out is the caller's (th_bench_eco_free); the model paths
 * are borrowed and must outlive it. */
th_status th_bench_eco(const char *const *models, int n, const char *text, size_t len, const th_bench_eco_opts *o,
                       th_bench_eco_result **out);

/* The rating of r's models from their measured figures alone (th_bench_eco calls it; a
 * caller may re-rate with other options): short names, uniform baseline and bits saved,
 * quality per Wh, the quality band, stars over the comparable models with one band for
 * overlapping energy ranges, the Pareto front and the marginal verdicts (evaluate.h's rule),
 * and the options copied into r. Fails with TH_ERR_INVALID on bad options or a names list
 * whose count differs from the models'. */
th_status th_bench_eco_rate(th_bench_eco_result *r, const th_bench_eco_opts *o);
void th_bench_eco_free(th_bench_eco_result *r);

/* The result as a text table (a MODELED note first when it applies, one row per model,
 * the rating rule and the machine, then each model's checks). *text is th_alloc'd. */
th_status th_bench_eco_table(const th_bench_eco_result *r, char **text);

/* The result as one JSON document: models (figures, rating, not_rated, checks, a basis
 * per figure; name, path, rank in the table's order, bits saved over the uniform baseline
 * and per Wh, comparable / not_comparable, each energy figure's *_spread {median, min, max,
 * n}, band_shared_with, the front neighbour's marginal figures, flagged and verdict),
 * rating_rule, rating_options, precision, machine, factors. *text is th_alloc'd (no
 * trailing newline). The table and the HTML rows are sorted by quality per Wh (rated first,
 * then not comparable, then not rated); the JSON keeps the input order and gives "rank". */
th_status th_bench_eco_json(const th_bench_eco_result *r, char **text);

/* The JSON document / a self-contained HTML report (table and quality-against-energy
 * scatter with the Pareto front, no external assets) written atomically to path
 * (th_atomic_*: the old file or the new one, never a mix). TH_ERR_IO names the path. */
th_status th_bench_eco_write_json(const th_bench_eco_result *r, const char *path);
th_status th_bench_eco_write_html(const th_bench_eco_result *r, const char *path);

/* ---------------------------------------------------------------------------------
 * calibration experiment: the live step response that analyze.h's th_calibrate_fit fits
 * (th_calibrate_simulated runs the same on a simulated plant in simulated time) */

/* On the sensor `sensor` (NULL: auto), inside a monitored run at fixed duty 1 sampled at
 * o->hz: idle o->idle_s, a CPU burn loop of 20 ms units for o->load_s, idle o->idle_s; the
 * samples logged to telemetry_path (required; CSV or JSONL) are read back and fitted, with
 * the limits and name of the profile `profile` when it names one (else generic limits).
 * *fig (may be NULL) gets the run's figures: fig->origin says whether the data was
 * measured. Fails with the sensor's, the log's or the fit's status. Takes 2 idle_s + load_s
 * of wall time; the phases are announced through th_log (info). */
th_status th_calibrate_live(const char *sensor, const char *profile, const th_calib_opts *o,
                            const char *telemetry_path, th_calib_result *out, th_run_figures *fig);

/* ---------------------------------------------------------------------------------
 * run report (L): the report that ends a monitored run, built in the library from one
 * structure, so that the text (summary or full) and the JSON cannot disagree. Every figure
 * says where it came from: energy its basis and sensor, CO2e and water their factors. */

typedef enum { TH_REPORT_SUMMARY = 0, TH_REPORT_FULL = 1 } th_report_style;

typedef struct {
    const char *command;        /* "train", "generate" */
    double tokens, steps;       /* per-unit figures for those > 0 */
    const char *stop_reason;    /* why the run ended; NULL: not reported */
    double wasted_tokens;       /* tokens a guard judged wasted, priced per token */
    const char *waste_what;     /* what wasted them ("loop: period 7 ..."); NULL: "a guard" */
} th_run_units;

typedef struct th_run_report th_run_report;

/* Builds the report of a run from its final figures, the resolved factors (NULL: energy
 * and thermal figures only, no footprint) and its units (NULL: none). Copies everything it
 * needs: the arguments may go away afterwards. A run without an energy figure still gets a
 * report (th_run_report_has_energy 0) that says so. Fails with TH_ERR_INVALID on a NULL
 * fig or out, with the footprint's status when the factors cannot price the energy, and
 * with TH_ERR_NOMEM; *out is NULL on failure. Release with th_run_report_free. */
th_status th_run_report_build(const th_run_figures *fig, const th_eco_factors *f, const th_run_units *u,
                              th_run_report **out);
void th_run_report_free(th_run_report *r);

/* 1 when the run had an energy figure (so there is a footprint to write). */
int th_run_report_has_energy(const th_run_report *r);

/* The report as text, th_alloc'd into *text (the caller th_frees it). SUMMARY: about five
 * lines: the energy basis and sensor, energy and CO2e with the region and the grid
 * factor's source and year, water, per-unit cost, peak temperature against the limit with
 * the time above it, the pacing cost, and where the rest is. FULL: everything, with every
 * factor's source, year and basis. TH_ERR_INVALID on NULL arguments or an unknown style,
 * TH_ERR_NOMEM. */
th_status th_run_report_text(const th_run_report *r, th_report_style style, char **text);

/* Writes the report as JSON to `path` through an atomic file: the footprint's keys
 * (th_eco_report_json; energy keys only without factors) plus per_unit, command,
 * stop_reason, wasted, measured, temp_peak_c, temp_last_c, thermal and report_version. On
 * any failure the file at `path` is untouched (TH_ERR_IO naming it, TH_ERR_NOMEM);
 * TH_ERR_STATE without an energy figure. */
th_status th_run_report_write_json(const th_run_report *r, const char *path);

/* Appends the run's CodeCarbon emissions.csv row (th_eco_emissions_csv_append, with the
 * command as experiment_id and the mean power as CPU power). TH_ERR_STATE without an
 * energy figure or without factors; otherwise the CSV writer's status. */
th_status th_run_report_append_emissions(const th_run_report *r, const char *path);

/* Adds the ledger's embodied and storage lines (issue 21): the manufacturing footprint of
 * the devices in `hw`, allocated by the run's wall time (the time the hardware was held,
 * pacing waits included), and the files in `kept` (NULL: none) charged for the same time
 * (th_eco_storage_charge_compute; replicas NaN in hw: 1 on own-machine, 3 on datacenter) and,
 * for scale, per 30 days kept. Every text style, the JSON (keys embodied, storage,
 * co2e_total_g, embodied_storage_share) and the emissions.csv row then carry them, as
 * low / central / high. TH_ERR_STATE without a footprint (no energy or no factors),
 * TH_ERR_INVALID on NULL arguments; on failure the report is unchanged. */
th_status th_run_report_add_embodied(th_run_report *r, const th_eco_hardware *hw, const th_eco_kept *kept);

/* The version of the JSON layout: 1 is the first with this key; older files have none. */
#define TH_RUN_REPORT_VERSION 1

#endif
