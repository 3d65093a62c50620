/* guard.h: wasted-compute guards. Small state machines that a work loop feeds one
 * observation at a time (a token, a training step, a validation loss, an agent call) and
 * that answer with a verdict: continue, warn, skip this update, roll back, stop, refuse.
 * They do no I/O, never sleep and never print; the only exceptions are the session
 * guard's state file and the preflight checks that read /proc/meminfo or write a
 * temporary checkpoint, which say so. Defaults come from the anchors collected in
 * shared/references/waste.md (section numbers below refer to it); values marked [ours]
 * have no anchor and are this project's choice. */
#ifndef THERMO_GUARD_H
#define THERMO_GUARD_H

#include <stddef.h>
#include <stdint.h>

#include "thermo/core.h"
#include "thermo/eco.h"
#include "thermo/model.h"
#include "thermo/io.h"

/* ---------------------------------------------------------------------------------
 * shared vocabulary */

typedef enum {
    TH_GUARD_OFF = 0,  /* the guard observes nothing and always says continue */
    TH_GUARD_WARN = 1, /* report, but let the work go on */
    TH_GUARD_STOP = 2, /* report and ask the caller to stop */
} th_guard_mode;

/* "off", "warn", "stop"; parse accepts the same words (TH_ERR_INVALID otherwise). */
const char *th_guard_mode_name(th_guard_mode m);
th_status th_guard_mode_parse(const char *text, th_guard_mode *out);

typedef enum {
    TH_GUARD_CONTINUE = 0, /* nothing to do */
    TH_GUARD_WARNED = 1,   /* a pattern fired in warn mode: log it, carry on */
    TH_GUARD_SKIP = 2,     /* training: drop this step's update (zero it, do not apply AdamW) */
    TH_GUARD_ROLLBACK = 3, /* training: restore the last good checkpoint, skip the batches */
    TH_GUARD_HALT = 4,     /* stop the work now */
    TH_GUARD_REFUSE = 5,   /* budget / forecast: do not start (or continue) this work */
} th_guard_action;

/* "continue", "warned", "skip", "rollback", "stop", "refuse". */
const char *th_guard_action_name(th_guard_action a);

/* A cost vector: what a unit of work (a token, a step, a run) cost or will cost. */
typedef struct {
    double energy_j;
    double co2e_g;
    double water_ml; /* on-site + off-site water, millilitres */
    double seconds;
} th_guard_cost;

/* The cost of `energy_j` IT energy taking `seconds`: energy x the price per joule
 * (th_eco_price_of, worked out once from the resolved factors). With p NULL only energy and
 * time are filled and CO2e and water are 0; a price without off-site water (water_known 0)
 * charges the on-site water alone. A negative or non-finite energy or time is charged as 0. */
void th_guard_cost_priced(double energy_j, double seconds, const th_eco_price *p, th_guard_cost *out);

/* units x a per-unit footprint (th_eco_footprint_per_unit): the price of `units` wasted
 * tokens or steps. seconds is left 0. */
void th_guard_cost_of_units(const th_eco_footprint *per_unit, double units, th_guard_cost *out);

/* 64-bit FNV-1a (offset basis 0xcbf29ce484222325, prime 0x100000001b3). */
uint64_t th_fnv1a64(const void *data, size_t len);

/* ---------------------------------------------------------------------------------
 * loop guard for generation: fed one token id at a time.
 *
 * Two detectors, both on by default (waste.md §2 and §7: detection beats penalties,
 * because sentence loops reinforce themselves, Xu et al. 2022):
 *  - exact cycle: the tail of the stream is one pattern of period p (1..max_period)
 *    repeated; it fires once the periodic region holds at least min_repeats copies and
 *    at least min_loop_tokens tokens. Defaults: periods 1..64, 3 copies, 48 tokens
 *    (waste.md §7, from vllm-mlx PR 723: "periods 1–128, ≥3 exact copies covering ≥48
 *    tokens"; vLLM's check_sequence_repetition is the same test with min_count ≥ 2).
 *    Cost: one comparison per period per token (O(max_period)), O(max_period) memory.
 *  - near-duplicate n-grams: over the last ngram_window tokens, fires when one n-gram
 *    occurs ngram_max_count times (default 4-grams, 256 tokens, 8 repeats: warpfront/
 *    hipfire PR 125) or, once the window is full, when the fraction of n-grams in it that
 *    repeat an earlier one reaches ngram_max_fraction (default 0.6 [ours]; 0 = off). The
 *    count test also needs the repeats to span min_loop_tokens [ours], so it never fires
 *    on less evidence than an exact cycle (a period-1 loop is reported as one). A
 *    rolling hash table keeps this O(1) amortized per token.
 * Natural repetitive text (a list of numbers counting up, a table) has no exact period
 * and few repeated 4-grams, so it does not fire; tests check this on tokenized text. */

typedef struct {
    th_guard_mode mode;        /* default TH_GUARD_STOP */
    int max_period;            /* 64; 1..1024 */
    int min_repeats;           /* 3; >= 2 */
    int min_loop_tokens;       /* 48 */
    int ngram_n;               /* 4; 1..16, 0 = n-gram detector off */
    int ngram_window;          /* 256; > ngram_n, <= 65536 */
    int ngram_max_count;       /* 8; 0 = off */
    double ngram_max_fraction; /* 0.6; 0 = off */
} th_loop_guard_config;

th_loop_guard_config th_loop_guard_defaults(void);

typedef enum { TH_LOOP_NONE = 0, TH_LOOP_PERIOD = 1, TH_LOOP_NGRAM = 2, TH_LOOP_NGRAM_FRACTION = 3 } th_loop_kind;

typedef struct {
    th_guard_action action; /* CONTINUE, WARNED (first detection in warn mode) or HALT (stop mode, sticky) */
    th_loop_kind kind;      /* what fired (TH_LOOP_NONE if nothing yet) */
    int period;             /* cycle length in tokens (PERIOD), or n (NGRAM*) */
    int repeats;            /* whole copies of the cycle so far (PERIOD), or occurrences (NGRAM) */
    double fraction;        /* repeated n-gram fraction of the window (NGRAM_FRACTION) */
    long start;             /* 0-based index of the first token of the repeating region */
    long detected_at;       /* 0-based index of the token at which it fired */
    long tokens_burned;     /* tokens from `start` through the last token fed while the loop held */
    char reason[192];       /* "loop: period 7 repeated 4 times since token 113" */
} th_loop_verdict;

typedef struct th_loop_guard th_loop_guard;

/* Validates cfg (NULL: defaults; TH_ERR_INVALID naming the field) and allocates. */
th_status th_loop_guard_create(const th_loop_guard_config *cfg, th_loop_guard **out);
void th_loop_guard_free(th_loop_guard *g);
/* Forgets the stream (a new request). */
void th_loop_guard_reset(th_loop_guard *g);

/* Feeds the next token (any int: ids are compared, not looked up). Returns the action
 * for this token and, if v is not NULL, fills the current verdict. After a detection in
 * stop mode every later call returns HALT; in warn mode WARNED is returned once per
 * detected loop and tokens_burned keeps counting while the stream stays in it. */
th_guard_action th_loop_guard_feed(th_loop_guard *g, int token, th_loop_verdict *v);

/* The latest verdict (kind NONE before any detection). */
void th_loop_guard_verdict(const th_loop_guard *g, th_loop_verdict *v);
/* Tokens fed since create/reset. */
long th_loop_guard_tokens(const th_loop_guard *g);

/* ---------------------------------------------------------------------------------
 * session guard for agent loops: a sequence of calls (an agent driving `thermo
 * generate`) sharing a session id. Each call is an event with a prompt hash, an output
 * hash, an optional error hash and its energy. The patterns, after OpenHands'
 * StuckDetector (waste.md §1, StuckDetectionThresholds defaults):
 *  - same prompt and same output `same_output` = 4 times in a row (action_observation=4);
 *  - the same error `same_error` = 3 times in a row (action_error=3; the legacy detector
 *    matched 3 identical errors whatever the code that raised them, as we do);
 *  - a cycle of period 2..max_period (default 8, waste.md §7 "detect any period ≤8") whose
 *    last `cycle_events` = 6 events satisfy event[i] == event[i+p] (alternating_pattern=6
 *    for p = 2, the ABABAB ping-pong; longer periods need max(6, 2p) events).
 * Events are equal when prompt and output hashes (and error hashes) are equal. The guard
 * keeps the last TH_SESSION_KEEP events, the energy of the whole session and of the
 * current loop (from the first event of the repeating region). */

#define TH_SESSION_KEEP 32
#define TH_SESSION_ID_MAX 128

typedef struct {
    th_guard_mode mode; /* default TH_GUARD_STOP */
    int same_output;    /* 4 */
    int same_error;     /* 3 */
    int cycle_events;   /* 6 */
    int max_period;     /* 8 (2..TH_SESSION_KEEP/2) */
} th_session_guard_config;

th_session_guard_config th_session_guard_defaults(void);

typedef struct {
    uint64_t prompt_hash, output_hash, error_hash; /* error_hash 0 = no error */
    double energy_j;                               /* energy of this call (0 if unknown) */
} th_session_event;

typedef enum {
    TH_SESSION_NONE = 0,
    TH_SESSION_SAME_OUTPUT = 1, /* "same prompt and output" */
    TH_SESSION_SAME_ERROR = 2,  /* "same error" */
    TH_SESSION_CYCLE = 3,       /* "cycle" (period 2: "alternating A/B") */
} th_session_pattern;

typedef struct {
    th_guard_action action;     /* CONTINUE, WARNED or HALT */
    th_session_pattern pattern;
    int period;                 /* events per cycle (1 for same output / same error) */
    int repeats;                /* events matching the pattern, this one included */
    long loop_start;            /* 1-based call number where the repeating region starts */
    long calls;                 /* calls recorded in the session, this one included */
    double loop_energy_j;       /* energy of the calls from loop_start through this one */
    double session_energy_j;    /* energy of every call in the session */
    char reason[352];           /* "session s1: same prompt and output 4 times since call 3 (12.0 J)" */
} th_session_verdict;

/* Plain data, so it can be stored and copied. */
typedef struct {
    th_session_guard_config cfg;
    char session[TH_SESSION_ID_MAX];
    long calls;                       /* events recorded so far */
    double energy_j;                  /* sum over all events */
    long fired;                       /* how many calls fired a pattern */
    int n;                            /* events held (<= TH_SESSION_KEEP), oldest first */
    th_session_event ev[TH_SESSION_KEEP];
    th_session_verdict last;          /* verdict of the latest call */
} th_session_guard;

/* Session ids are 1..127 printable ASCII characters, no spaces, quotes or backslashes.
 * cfg NULL: defaults. TH_ERR_INVALID on a bad id or config. */
th_status th_session_guard_init(th_session_guard *g, const char *session, const th_session_guard_config *cfg);

/* Records one call and checks the patterns; fills v (may be NULL). Pure. */
th_guard_action th_session_guard_record(th_session_guard *g, const th_session_event *e, th_session_verdict *v);

/* The state as a small JSON file: {"format": "thermo-session-guard", "version": 1,
 * "session", "calls", "energy_j", "fired", "config": {...}, "events": [{"prompt",
 * "output", "error" (16 hex digits or null), "energy_j"}], "last": {...}}.
 * save writes path.tmp, fsyncs, renames and fsyncs the directory. load validates every
 * field (TH_ERR_FORMAT naming the file and field; TH_ERR_IO if unreadable); g is
 * untouched on failure. */
th_status th_session_guard_save(const th_session_guard *g, const char *path);
th_status th_session_guard_load(th_session_guard *g, const char *path);

/* The whole read-modify-write for separate processes: takes an exclusive lock on
 * path.lock (flock), loads `path` if it exists (its session must equal `session`, else
 * TH_ERR_INVALID), else starts a new session with cfg; records e, saves, unlocks.
 * g (may be NULL) receives the state after the call. */
th_status th_session_guard_record_file(const char *path, const char *session, const th_session_guard_config *cfg,
                                       const th_session_event *e, th_session_verdict *v, th_session_guard *g);

const char *th_session_pattern_name(th_session_pattern p);

/* ---------------------------------------------------------------------------------
 * budgets: limits on energy, CO2e, water and time. Before each unit of work the caller
 * asks th_budget_allow with the unit's projected cost (or NULL: the running mean of the
 * units charged so far); a unit is allowed only if used + projected stays within every
 * limit, so a run with steady units never overshoots by a step (waste.md §7: "check
 * before each step against projected next-step energy (no one-turn overshoot)", the
 * check mini-swe-agent makes before each query). With no history and no projection the
 * first unit is allowed: it is the probe that measures the cost. */

typedef enum {
    TH_BUDGET_ENERGY = 0,
    TH_BUDGET_CO2E = 1,
    TH_BUDGET_WATER = 2,
    TH_BUDGET_TIME = 3,
    TH_BUDGET_NUM
} th_budget_kind;

/* "energy", "co2e", "water", "time" and their units "J", "g", "mL", "s". */
const char *th_budget_kind_name(th_budget_kind k);
const char *th_budget_kind_unit(th_budget_kind k);

typedef struct {
    /* limits; 0 or NaN = none. energy_wh is added as a second energy limit (the tighter wins). */
    double energy_j, energy_wh, co2e_g, water_ml, seconds;
    /* projection = mean + margin_sigma x standard deviation of the units so far (default 0) */
    double margin_sigma;
} th_budget_config;

typedef struct {
    double limit[TH_BUDGET_NUM]; /* 0 = none */
    double used[TH_BUDGET_NUM];
    double sum_sq[TH_BUDGET_NUM];
    double margin_sigma;
    long units;
    int stopped;                 /* th_budget_allow said no */
    th_budget_kind stopped_by;   /* the first budget that would have been exceeded */
    double stopped_projection;   /* projected cost of the refused unit in that budget */
} th_budget;

/* TH_ERR_INVALID on a negative or infinite limit. A config with no limit is valid (the
 * budget then only accounts). */
th_status th_budget_init(th_budget *b, const th_budget_config *cfg);

/* The projected next-unit cost from the units charged so far (all 0 before the first). */
void th_budget_projection(const th_budget *b, th_guard_cost *out);

/* 1 if a unit of cost `projected` (NULL: th_budget_projection) fits in every budget,
 * else 0, and the budget remembers which one ended the run. Once it said no it keeps
 * saying no. */
int th_budget_allow(th_budget *b, const th_guard_cost *projected);

/* Adds the measured cost of a unit that ran. */
void th_budget_charge(th_budget *b, const th_guard_cost *actual);

/* "budget: energy limit 1000 J reached after 20 units: used 960 J (96.0%), 40 J left,
 * next unit projected 48 J" or "budget: within limits after 20 units (energy 960 of 1000 J)". */
void th_budget_describe(const th_budget *b, char *buf, size_t cap);

/* ---------------------------------------------------------------------------------
 * training health: fed each step's loss and global grad norm BEFORE the update.
 *  - a non-finite loss or grad norm: SKIP, and the value never enters the statistics
 *    (Megatron checks by default; llm.c's detector lets a NaN through, waste.md §3);
 *  - a spike: z = (x - mean) / sd over the last `window` accepted values of loss or grad
 *    norm above z_threshold: SKIP; defaults 6 sigma over 128 steps, armed after 64 values
 *    (OLMo-core SkipStepOptimizer: sigma_factor 6, rolling_interval_length 128, inactive
 *    until max(20, 64) samples). Only upward spikes count: a sudden drop does not diverge
 *    [ours; OLMo uses |z|]. sd is floored at min_rel_sd x |mean| [ours, 1e-3] so a
 *    noiseless series does not fire on rounding. Skipped values stay out of the window.
 *  - rollback_skips (3) skipped steps within rollback_window (100) steps: ROLLBACK (waste.md
 *    §7: "after 3 skips in 100 steps, auto-rollback ~100 steps and skip the batch range";
 *    PaLM restarted ~100 steps before a spike and skipped 200–500 batches). The caller
 *    restores its last good checkpoint, skips the batches, multiplies the LR by lr_factor
 *    (0.5 [ours]; OPT lowered the LR after explosions) and calls th_train_health_rolled_back.
 *  - more than max_rollbacks (3 [ours]) rollbacks: HALT, the run is a zombie (waste.md §7,
 *    DeepSpeed stuck at the minimum loss scale).
 * SKIP, ROLLBACK and HALT all mean: do not apply this step's update. Every event is
 * recorded with its step and the energy it wasted. The decisions depend only on the
 * losses and norms, so a governed and an ungoverned run decide the same (invariant 1). */

typedef struct {
    th_guard_mode mode;     /* STOP: act; WARN: spikes return WARNED and the update goes ahead
                               (non-finite values are always SKIP); OFF: only NaN/Inf checks */
    double z_threshold;     /* 6 */
    int window;             /* 128 (2..4096) */
    int min_history;        /* 64 (2..window) */
    double min_rel_sd;      /* 1e-3 */
    int rollback_skips;     /* 3; 0 = never roll back */
    int rollback_window;    /* 100 steps */
    int max_rollbacks;      /* 3; 0 = unlimited */
    double lr_factor;       /* 0.5, suggested LR multiplier after a rollback */
    int check_grad;         /* 1: grad-norm spikes count too (it leads loss, BLOOM) */
} th_train_health_config;

th_train_health_config th_train_health_defaults(void);

typedef enum {
    TH_TRAIN_OK = 0,
    TH_TRAIN_NONFINITE_LOSS = 1,
    TH_TRAIN_NONFINITE_GRAD = 2,
    TH_TRAIN_LOSS_SPIKE = 3,
    TH_TRAIN_GRAD_SPIKE = 4,
    TH_TRAIN_ROLLBACK = 5,
    TH_TRAIN_ZOMBIE = 6,
} th_train_event_kind;

/* "ok", "nan/inf loss", "nan/inf grad norm", "loss spike", "grad-norm spike", "rollback", "zombie". */
const char *th_train_event_name(th_train_event_kind k);

typedef struct {
    long step;
    th_train_event_kind kind;
    double value;     /* the offending loss or grad norm (NaN/Inf kept as is) */
    double z;         /* its z-score (NaN if not computed) */
    double energy_j;  /* energy this event wasted: the step's energy, or the rolled-back steps' */
} th_health_event;

#define TH_HEALTH_EVENTS_KEEP 64

typedef struct {
    th_guard_action action;  /* CONTINUE, WARNED, SKIP, ROLLBACK or HALT */
    th_health_event event;   /* kind OK when action is CONTINUE */
    long rollback_to_hint;   /* for ROLLBACK: restore a checkpoint at or before this step */
    double lr_factor;        /* for ROLLBACK: suggested LR multiplier */
    char reason[192];        /* "step 412: loss spike 9.81 (z 14.2 over 128 steps): update skipped" */
} th_health_verdict;

typedef struct th_train_health th_train_health;

th_status th_train_health_create(const th_train_health_config *cfg, th_train_health **out);
void th_train_health_free(th_train_health *h);

/* One step, before its update. step is the caller's step number (monotonic); energy_j the
 * step's energy (what skipping it wastes). Returns the action; v (may be NULL) says why. */
th_guard_action th_train_health_check(th_train_health *h, long step, double loss, double grad_norm, double energy_j,
                                      th_health_verdict *v);

/* The caller restored the checkpoint of `restored_step` after a ROLLBACK, discarding
 * the energy of the steps since (discarded_j). Clears the recent-skip count; the
 * statistics keep only values from steps <= restored_step. */
void th_train_health_rolled_back(th_train_health *h, long restored_step, double discarded_j);

typedef struct {
    long steps_seen, steps_skipped, nonfinite, spikes, rollbacks;
    double energy_wasted_j;  /* skipped steps + discarded by rollbacks */
    int n_events;            /* events held, oldest first (the last TH_HEALTH_EVENTS_KEEP) */
    th_health_event events[TH_HEALTH_EVENTS_KEEP];
} th_health_summary;

void th_train_health_summary(const th_train_health *h, th_health_summary *out);

/* ---------------------------------------------------------------------------------
 * early stopping: plateau and leak. Fed each validation loss.
 *  - plateau: no improvement of at least min_delta over the best for `patience`
 *    validations in a row: HALT (Keras/Lightning EarlyStopping; defaults patience 3 from
 *    Lightning, min_delta 0.001 from NeMo, waste.md §4). A non-finite validation loss
 *    also halts (Lightning check_finite=True).
 *  - leak: a validation loss below the floor max(leak_floor, leak_train_ratio x the
 *    training loss) is implausibly good: flagged "possible validation leak" (WARNED; the
 *    OPT-175B logbook's "unreasonably low perplexity" was a data bug, waste.md §5).
 *    leak_floor is in nats per token, set by the caller from what it knows about the data
 *    (0 = off); leak_train_ratio (default 0.5 [ours]) compares with the training loss of
 *    the same step: held-out text scored at less than half the training loss is most
 *    likely in the training set or trivially easy (0 = off).
 * On a stop the verdict reports steps left of planned_steps and the energy saved at the
 * mean energy per step the caller passes. */

typedef struct {
    th_guard_mode mode;      /* STOP (default) or WARN (report the plateau, do not halt) */
    int patience;            /* 3 */
    double min_delta;        /* 0.001 */
    double leak_floor;       /* 0 = off */
    double leak_train_ratio; /* 0.5 */
    long planned_steps;      /* for the savings report (0: unknown) */
} th_early_stop_config;

th_early_stop_config th_early_stop_defaults(void);

typedef struct {
    th_guard_action action;  /* CONTINUE, WARNED or HALT */
    int improved;            /* this validation is the new best (keep its checkpoint) */
    int leak;                /* the leak flag fired on this validation */
    int bad_evals;           /* validations since the best */
    long best_step;
    double best_val;
    long steps_left;         /* planned_steps - step at a stop (0 if unknown) */
    double energy_saved_j;   /* steps_left x mean step energy at a stop */
    char reason[352];        /* the plateau or spike, what stopping saves, and the leak note when both fired */
} th_early_stop_verdict;

typedef struct {
    th_early_stop_config cfg;
    long evals, best_step;
    double best_val;
    int bad_evals;
    int stopped, leaks;
} th_early_stop;

th_status th_early_stop_init(th_early_stop *es, const th_early_stop_config *cfg);

/* One validation after `step`. train_loss is the training loss at that step (NaN:
 * unknown, the ratio test is skipped); mean_step_energy_j prices the steps saved. */
th_guard_action th_early_stop_update(th_early_stop *es, long step, double val_loss, double train_loss,
                                     double mean_step_energy_j, th_early_stop_verdict *v);

/* ---------------------------------------------------------------------------------
 * cost forecast: after min_steps steps, projects the cost of the planned run as
 * done + remaining x a robust per-step cost (the 10%-trimmed mean of the last `window`
 * steps), with a range from their 10th and 90th percentiles; updated every step. With
 * limits set, it answers REFUSE as soon as a central projection exceeds one (waste.md §7:
 * predict from measured J/step after ~50 steps and refuse over budget automatically;
 * carbontracker predicts after the first epoch but asks a human). */

typedef struct {
    long planned_steps;      /* > 0 */
    long min_steps;          /* 50 */
    int window;              /* 256 recent steps (8..65536) */
    th_guard_cost limit;     /* per field: 0 or NaN = none */
} th_forecast_config;

th_forecast_config th_forecast_defaults(long planned_steps);

typedef struct {
    th_guard_action action;  /* CONTINUE, or REFUSE once a limit is exceeded (sticky) */
    int ready;               /* min_steps reached */
    long steps_done;
    th_guard_cost done;      /* cost of the steps so far */
    th_guard_cost per_step;  /* robust per-step cost */
    th_guard_cost total, low, high; /* projected totals for planned_steps */
    th_budget_kind exceeded; /* which limit, for REFUSE */
    char reason[256];        /* "forecast: 1000 steps, 3.2 kJ (3.0–3.5), 0.41 g CO2e, ... */
} th_forecast_verdict;

typedef struct th_forecast th_forecast;

th_status th_forecast_create(const th_forecast_config *cfg, th_forecast **out);
void th_forecast_free(th_forecast *f);
/* Adds one step's measured cost and updates the projection. */
th_guard_action th_forecast_step(th_forecast *f, const th_guard_cost *step_cost, th_forecast_verdict *v);

/* ---------------------------------------------------------------------------------
 * preflight checks before a long run (waste.md §5) */

typedef struct {
    size_t tokens;
    size_t windows;          /* non-overlapping T-token inputs with their targets: (n - 1) / T */
    size_t out_of_range;     /* ids outside [0, vocab) */
    size_t first_bad_index;  /* index of the first out-of-range id (if any) */
    int first_bad_value;
} th_preflight_data_report;

/* Checks a token array for training at sequence length T: not empty, at least T + 1
 * tokens (one input window and its shifted targets), every id in [0, vocab). Fails with
 * TH_ERR_INVALID and a message naming `label` and the problem; r (may be NULL) is filled
 * either way. */
th_status th_preflight_tokens(const char *label, const int *tokens, size_t n, int vocab, int T,
                              th_preflight_data_report *r);

/* Loss at init for a from-scratch model: |loss - ln(vocab)| <= tol (tol <= 0: 0.3, waste.md
 * §7 after Karpathy's recipe "verify loss @ init"; ln 50257 = 10.82). TH_ERR_INVALID with
 * the expected value otherwise (NaN fails too). */
th_status th_preflight_check_init_loss(double loss, int vocab, double tol);

/* Runs one forward over the first B x T window pairs of `tokens` (inputs tokens[i],
 * targets tokens[i+1]) and applies th_preflight_check_init_loss; *loss_out (may be NULL)
 * gets the loss. Needs B x T + 1 tokens. */
th_status th_preflight_init_loss(th_gpt2 *m, const int *tokens, size_t n, int B, int T, double tol,
                                 double *loss_out);

typedef struct {
    size_t params_bytes, grads_bytes, adam_bytes, activations_bytes, total_bytes;
    size_t available_bytes;  /* MemAvailable (0 if not read) */
    size_t margin_bytes;
} th_preflight_memory;

/* Bytes that training cfg at (B, T) allocates: parameters, gradients, both AdamW
 * moments (4 bytes each per parameter: 16 B/param, waste.md §5) and the activation block
 * exactly as src/model/gpt2.c ensure_activations lays it out (every buffer padded to 16
 * floats, plus 2·B·T token ids). Pure. */
th_status th_preflight_train_memory(const th_gpt2_config *cfg, int B, int T, th_preflight_memory *out);

/* MemAvailable from <root>/proc/meminfo (root NULL or "": "/"), in bytes. */
th_status th_preflight_mem_available(const char *root, size_t *bytes);

/* Estimate vs. MemAvailable minus margin_bytes (SIZE_MAX: 1 GiB, llama.cpp's fit margin,
 * waste.md §5). TH_ERR_NOMEM with both figures when it does not fit; out (may be NULL)
 * gets the figures. */
th_status th_preflight_memory_check(const th_gpt2_config *cfg, int B, int T, const char *root,
                                    size_t margin_bytes, th_preflight_memory *out);

/* Compares two models bit for bit: config, parameters, AdamW moments and step count.
 * TH_ERR_FORMAT naming the first differing tensor and index. */
th_status th_preflight_compare_models(th_gpt2 *a, th_gpt2 *b);

/* Saves m and st (may be NULL) with th_checkpoint_save to tmp_path, loads it back,
 * compares bit for bit (and st's step, RNG, cursor and metadata) and removes the file.
 * Proves a resume will work before hours are spent (waste.md §7, one-step dry run). */
th_status th_preflight_checkpoint_roundtrip(th_gpt2 *m, const th_train_state *st, const char *tmp_path);

/* ---------------------------------------------------------------------------------
 * drift detectors for continual learning (capabilities.md §2.3, §2.4): fed one scalar at a
 * time (a token's NLL under the served model). Pure code, no I/O.
 *
 * Page-Hinkley (River's drift/page_hinkley.py, mode "up"): running mean x̄ of the values
 * seen, m = alpha·m + (x − x̄ − delta), M = min m; an alarm when at least min_instances
 * values were seen and m − M > threshold, after which the detector starts afresh.
 * Defaults are River's: min_instances 30, delta 0.005, threshold 50, alpha 1 − 1e-4.
 *
 * The two-sample test compares the last `window` values with a frozen reference. Per-token
 * NLL is dependent at two scales: a passage is easy or hard for many tokens in a row, and
 * passages of one domain differ in level (KJV's later books score ~0.5 nats above its
 * earlier ones under a model trained on it). A test that treats tokens as independent
 * (Alibi Detect's KSDrift: two-sample KS at p 0.05) rejects same-domain text far more often
 * than its level says, and so does a test on block means whose reference is one contiguous
 * passage: its variance is the within-passage one. The default test is therefore on
 * window means (TH_DRIFT_TEST_WINDOWS) [ours]: the reference is K = reference / window
 * runs of `window` consecutive values, drawn spread across the old held-out data (see
 * th_learn_drift_reference), so the spread of their K means is the spread of a same-domain
 * window's mean, between-passage variance included. The recent window's mean m is then
 * tested as a new draw against the K means (mean c̄, sample sd s): the Student prediction
 * interval t = (m − c̄ − min_rise) / (s·√(1 + 1/K)) with K − 1 degrees of freedom,
 * one-sided (a rise of the NLL, as Page-Hinkley's mode "up": text the model predicts
 * better than its reference needs no update). Dependence shorter than a window does not
 * matter, since the window is the unit. min_rise_nats (default 0.25) shifts the null: drift
 * needs a rise significantly above 0.25 nats per token, a rise too small to be worth an
 * update's energy being not drift whatever its significance [ours]. Block-mean Welch t
 * (TH_DRIFT_TEST_BLOCK_T, blocks of `block` values, min_rise subtracted the same way) and
 * the iid KS test (TH_DRIFT_TEST_KS, no min_rise) stay selectable so that they can be
 * measured apart.
 *
 * th_drift combines them: drift is a Page-Hinkley alarm that the two-sample test confirms
 * (the recent window differs from the reference) on the value of the alarm or on one of 8
 * evenly spaced values in the `window` after it (the recent window may still hold values
 * from before the change when the alarm comes), each at p < p_value / features / 8
 * (Bonferroni over the 8 tries): at most p_value per alarm. Page-Hinkley there sees each
 * value standardized by the reference's mean and per-value standard deviation sd [ours]: a
 * token's NLL has a spread of several nats, so on raw values River's threshold of 50 fires
 * every few hundred tokens of unchanged text; standardized, the threshold is in reference
 * standard deviations. Its delta is max(ph.delta, min_rise / (2 sd)): CUSUM's reference
 * value is half the smallest shift worth detecting, so Page-Hinkley looks for the rise the
 * test will confirm. Each detector's own alarms are reported too, so their false-alarm
 * rates can be measured apart. */

typedef struct {
    long min_instances;
    double delta, threshold, alpha;
} th_page_hinkley_config;

typedef struct {
    th_page_hinkley_config cfg;
    long n;
    double mean, sum, min_sum;
} th_page_hinkley;

th_page_hinkley_config th_page_hinkley_defaults(void);
/* TH_ERR_INVALID for min_instances < 1, a negative or non-finite delta or threshold, or
 * alpha outside (0, 1]. */
th_status th_page_hinkley_init(th_page_hinkley *p, const th_page_hinkley_config *cfg);
/* Feeds x; 1 on an alarm (the detector then starts afresh), else 0. Non-finite x is ignored. */
int th_page_hinkley_update(th_page_hinkley *p, double x);

/* The two-sample KS statistic sup |F_a − F_b| of two samples already sorted ascending. */
double th_ks_statistic_sorted(const double *a, size_t na, const double *b, size_t nb);
/* Its asymptotic p-value: the Kolmogorov distribution's tail at (√n_e + 0.12 + 0.11/√n_e)·D
 * with n_e = na·nb/(na + nb) (Stephens' correction, as in Numerical Recipes' kstwo). */
double th_ks_pvalue(double d, size_t na, size_t nb);

/* Two-sided p-value of Student's t with df > 0 degrees of freedom (the regularized
 * incomplete beta I_{df/(df+t²)}(df/2, 1/2)); 1 for t = 0, NaN for a NaN t or df <= 0. */
double th_student_t_pvalue(double t, double df);

/* Welch's t on block means: a[0..na) and b[0..nb) are each cut into ⌊n / block⌋
 * consecutive blocks (a remainder at the start is left out) and the blocks' means compared.
 * *t is (mean_b − mean_a) / se, *df Welch-Satterthwaite's; *p the two-sided p-value.
 * TH_ERR_INVALID when block is 0 or either side has fewer than 2 blocks. */
th_status th_block_t_test(const double *a, size_t na, const double *b, size_t nb, size_t block, double *t, double *df,
                          double *p);

/* The prediction test of a new mean m against k earlier means[0..k) (mean c̄, sample sd s):
 * *t = (m − c̄ − shift) / (s·√(1 + 1/k)), *df = k − 1, *p the one-sided P(T_df >= t) (a
 * zero s gives t ±inf or 0 and p 0 or 1). TH_ERR_INVALID when k < 2 or shift or m is not
 * finite. */
th_status th_prediction_t_test(const double *means, size_t k, double m, double shift, double *t, double *df,
                               double *p);

typedef enum {
    TH_DRIFT_TEST_BLOCK_T = 0, /* Welch's t on block means: assumes the reference is one passage's worth */
    TH_DRIFT_TEST_KS = 1,      /* two-sample KS on the raw values: assumes independent values */
    TH_DRIFT_TEST_WINDOWS = 2  /* the recent window's mean against the reference's window means (default) */
} th_drift_test;

typedef struct {
    th_page_hinkley_config ph;
    size_t reference;  /* values in the frozen reference (default 4096: 16 windows) */
    size_t window;     /* recent values the two-sample test compares with it (default 256) */
    size_t block;      /* values per block of the block test (default 32) */
    double p_value;    /* 0.05 */
    double min_rise_nats; /* a rise of the mean NLL up to this is not drift (default 0.25; >= 0) */
    int features;      /* Bonferroni divisor (default 1: one NLL stream) */
    th_drift_test test;
} th_drift_config;

th_drift_config th_drift_defaults(void);

typedef struct {
    int ph_alarm;      /* Page-Hinkley fired on this value */
    int test_alarm;    /* a full, non-overlapping window ended on this value and the test rejected */
    int drift;         /* a Page-Hinkley alarm confirmed by the test on the recent window (once per alarm) */
    double stat, p;    /* the last test's statistic (t, or KS D) and p-value (NaN before one ran) */
    long index;        /* 0-based index of this value in the stream */
} th_drift_verdict;

typedef struct th_drift th_drift;

/* TH_ERR_INVALID on a bad config (sizes 0, reference or window over 2^24, fewer than 2
 * blocks in the window or the reference for the block test, fewer than 3 windows in the
 * reference for the windows test, p outside (0, 1), features < 1, a negative or non-finite
 * min_rise_nats, an unknown test, a bad Page-Hinkley config); TH_ERR_NOMEM. */
th_status th_drift_create(const th_drift_config *cfg, th_drift **out);
void th_drift_free(th_drift *d);
/* Freezes the reference: the first `reference` values of x[0..n) (TH_ERR_INVALID when n is
 * smaller), in stream order; for the windows test value i belongs to window i / window,
 * each window being consecutive values (th_learn_drift_reference draws them spread across
 * the old data). Until it is set, update feeds Page-Hinkley only and never reports drift. */
th_status th_drift_set_reference(th_drift *d, const double *x, size_t n);
/* Feeds one value (non-finite values are skipped: no verdict change, index not advanced). */
th_drift_verdict th_drift_update(th_drift *d, double x);

/* Whether a drift-triggered update may run now. It runs only if the update's expected
 * energy fits the budget (energy_budget_j <= 0: no budget) and the thermal margin
 * (limit_c − temp_c) is at least min_margin_c (a NaN temperature or limit: no thermal
 * figure, allowed and said so). Returns TH_GUARD_CONTINUE or TH_GUARD_REFUSE and the
 * reason in words ("expected 812 J exceeds the budget of 500 J", ...). */
typedef struct {
    double energy_budget_j;
    double min_margin_c; /* default 5 [ours] */
} th_update_gate_config;

th_guard_action th_update_gate(const th_update_gate_config *cfg, double expected_j, double temp_c, double limit_c,
                               char *reason, size_t cap);

#endif
