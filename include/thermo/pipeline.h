/* pipeline.h: the wiring of the engine into runs: the model benchmark (train step,
 * prefill and decode speed, memory) and, as they land, the training and generation loops
 * that the thermal governor paces and the eco ledger measures. */
#ifndef THERMO_PIPELINE_H
#define THERMO_PIPELINE_H

#include "thermo/core.h"
#include "thermo/eco.h"
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
} th_bench_model_opts;

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
    double decode_rss_mb;       /* peak RSS after inference, before training allocates */
    double peak_rss_mb;         /* peak RSS of the whole benchmark (training included) */
    float first_loss;           /* loss of the first training step, ≈ ln(V) at init */
} th_bench_model_result;

th_bench_model_opts th_bench_model_defaults(void);

/* Builds a model of shape `cfg` with random weights and measures it. Inference runs first,
 * so decode_rss_mb is the footprint of inference alone. */
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
    uint64_t t_ns;     /* end of the step, CLOCK_MONOTONIC */
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
    double cpu_tdp_w;          /* > 0: when the sensor gives neither an energy counter nor power,
                                  model the CPU's power from its utilization (th_cpu_model_power_uw) */
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
    th_origin origin;          /* measured or modeled */
    char governor[32];         /* governor name, or "fixed" for a fixed duty */
    double limit_c;            /* temperature limit in force */
    double above_limit_s;      /* time the samples spent above the limit */
    double busy_s, idle_s;     /* work-loop time in units, and idle injected by pacing */
    uint64_t fail_safe_decisions;
    char governor_status[160]; /* the governor's account of its last decision */
} th_run_figures;

/* Opens the sensor, starts the sampler thread and the telemetry log. Fails with the
 * sensor's or the log's status (message names the backend or path). */
th_status th_run_start(const th_run_opts *o, th_run **out);

/* The work loop marks its units of work (a micro-batch, a token). unit_end then waits as
 * the pace says (idle injection, the governor's duty); the measured busy fraction drives
 * the simulated plant (a real device heats by itself). unit_end returns
 * TH_ERR_INTERRUPTED once th_run_interrupt was called. Both accept NULL (no-ops). */
void th_run_unit_begin(th_run *r);
th_status th_run_unit_end(th_run *r);

/* Async-signal-safe: cuts the current and every later pacing wait short. */
void th_run_interrupt(th_run *r);

/* Logs a training step record to the telemetry log (no-op without a log). */
void th_run_log_step(th_run *r, const th_step_record *rec);

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
    const char *run_meta;  /* JSON recorded in checkpoints: the settings a resume reuses */
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
} th_train_opts;

typedef struct {
    long steps_done;       /* total steps completed, resumed ones included */
    float last_loss, last_val_loss, first_val_loss;
    double seconds;        /* wall time of this call */
    long tokens;           /* tokens processed by this call */
    /* guards */
    char stopped_by[32];   /* "" (ran to the end), "budget", "forecast", "early stop", "zombie" */
    char stop_reason[256]; /* the guard's words */
    double energy_j;       /* IT energy of this call's steps (from the run's ledger; 0 without one) */
    double energy_saved_j; /* planned steps not run x mean step energy, when a guard stopped early */
    th_health_summary health;
    char forecast[256];    /* the latest cost forecast, "" before min_steps */
} th_train_result;

/* Defaults: 4 x 64, no accumulation, AdamW defaults, warmup 10% of steps (at most 100),
 * lr_min = lr / 10, validation every 50 steps over 8 batches, checkpoints at the end. */
th_train_opts th_train_defaults(long steps);

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

/* The version of the JSON layout: 1 is the first with this key; older files have none. */
#define TH_RUN_REPORT_VERSION 1

#endif
