/* govern.h: thermal governors and the pace actuator (DESIGN §1, §4).
 *
 * A governor is a pure decision: (its state, the latest sensor sample, dt) → a pace, that
 * is a duty cycle in (0, 1] and a thread cap. It never sleeps, reads a file or touches the
 * work loop. Five governors sit in one registry: "none" (full speed, the baseline),
 * "bang_bang" and "step_wise" (the Linux thermal framework's), "pid" (Linux
 * power_allocator) and "predictive" (online RC-model identification, picks the highest
 * duty whose predicted temperature stays under the limit).
 *
 * Fail-safe (invariant 2): every governor but "none" answers a sample the sensor judged
 * unhealthy (stale, stuck, vanished, nonsense: the sensor tracks that, with a reason),
 * a failed read, a missing sample or temperature, or an implausible value with the
 * configured safe duty, flags the output (entered_fail_safe / left_fail_safe on the
 * transitions, for the caller to log) and says "fail-safe: <reason>" in
 * th_governor_status(). The governor itself logs nothing.
 *
 * The pace actuator is the only part that touches the work loop: the control thread
 * publishes the governor's duty with th_pace_set(); the work loop brackets each unit of work
 * with th_pace_begin_unit() / th_pace_end_unit() and then calls th_pace_wait(), which sleeps
 * for the kernel's idle-injection time t_idle = t_run·(1/duty − 1). Pacing only inserts
 * waits: it never changes what is computed (invariant 1). The pace touches nothing else:
 * whoever drives a simulated plant marks each unit's start and end on it. */
#ifndef THERMO_GOVERN_H
#define THERMO_GOVERN_H

#include <stddef.h>
#include <stdint.h>

#include "thermo/core.h"
#include "thermo/sense.h"

#define TH_GOV_API_VERSION 1

/* ---------------------------------------------------------------------------------
 * configuration */

typedef struct {
    double limit_c;     /* the temperature to stay under (°C); required */
    double period_s;    /* nominal control period (default 0.1: the kernel's passive poll) */
    double safe_duty;   /* fail-safe duty (default 0.5) */
    double min_duty;    /* lowest duty any governor outputs: "off" for bang_bang (default 0.05) */
    int max_threads;    /* thread cap published with every decision, 0 = no cap (default 0).
                           Governors do not vary it: a thread count can change reductions */
    int recover_samples; /* good samples in a row that end a fail-safe (default 3) */

    /* what is known of the plant (a profile, `thermo calibrate`, or nothing): 0 = unknown */
    double p_idle_w, p_max_w;  /* power at duty 0 and 1 (pid's power → duty; predictive prior) */
    double r_k_per_w, tau_s;   /* thermal resistance and time constant (predictive prior) */
    double t_ambient_c;        /* ambient (predictive prior; pid's default sustainable power) */
    double sensor_lag_s;       /* the sensor's first-order lag (predictive compensates it) */
    double sensor_quantum_c, sensor_noise_c; /* the sensor's step and noise (the safe band's allowance) */
    double t_shutdown_c;       /* the device's shutdown temperature: limit_c must be below it (0: unknown) */

    double hysteresis_c;       /* bang_bang and step_wise trip hysteresis (default 2) */
    double switch_on_c;        /* pid: below this, full power and PID reset (default limit − 10) */
    double sustainable_power_w; /* pid feed-forward (default (limit − T_amb)/R when known,
                                   else p_idle + (p_max − p_idle)/2) */
    double margin_c;           /* predictive: aim this far below the limit (default 1.2, with the offset
                                  filter always open: 0 s above in every benchmark scenario); 0: derived from the
                                  sensor, 3 σ of the Kalman filter's steady-state die estimate (lag, noise,
                                  quantization, period) plus the quantizer's bias, widened by two reading σ
                                  while the model is unconverged or its innovations signal a change */
    double guard_c;            /* predictive: held under the limit on top of the margin at all times, against a
                                  change no sensor has shown yet (default 0: the derived margin only, so an
                                  unannounced slower fan or warmer room goes over for seconds, by up to the
                                  rise the benchmark's causal bound states; set it to that rise for 0 s above) */
    double horizon_s;          /* predictive: look-ahead (default 10) */
    double forgetting;         /* predictive: RLS forgetting factor per block (default 0.995) */
    double block_s;            /* predictive: samples are averaged over blocks this long before
                                  identification (default 0: tau_s/10 within [2 periods, 1 s], 1 s
                                  without a prior; a block as long as tau biased the fit) */
    /* predictive, the safe band (needs the prior: p_max_w, r_k_per_w, tau_s): full duty while
     * a worst-case bound shows the limit cannot be reached within sensor_lag_s + reaction_s
     * at full duty, converged model or not. The plausible plant: heat capacity down to
     * c_min_factor·C, R up to r_max_factor·R, power up to p_margin·max(P_max, measured),
     * ambient up to T_amb + ambient_margin_c. Outside the band and before the model has
     * converged, the duty is the highest whose worst-case prediction over the horizon stays
     * under the limit. */
    double reaction_s;         /* time for a cut to take effect: pace window + a period (default 2.5) */
    double c_min_factor;       /* default 0.6 (a plant may heat 1/0.6 = 1.67x faster than the prior) */
    double r_max_factor;       /* default 1.5 */
    double p_margin;           /* default 1.15 */
    double ambient_margin_c;   /* default 10 */
    int safe_band;             /* predictive: 1 (th_gov_config_default) = full duty inside the worst-case
                                  safe band; 0 = off. Outside it, until the identified model has converged
                                  to a plant the prior makes plausible, the prior model decides (with the
                                  Kalman offset as integral action), so an unconverged or wrong
                                  identification never holds the plant far under the limit */
    int objective;             /* TH_GOV_OBJ_THROUGHPUT (default) or TH_GOV_OBJ_ENERGY */
    /* predictive, the gradient-norm feed-forward (th_gov_config_set_coupling): on only where
     * a coupling was measured. ff_lag_s > 0: the heat follows a gradient-norm spike by this
     * many seconds, and a spike lowers the duty from ff_lead_s before that until it ends.
     * 0 (default): off, ff_note says why. */
    double ff_lag_s;
    double ff_lead_s;          /* default 1 (the field manual's "1 second before") */
    char ff_note[120];
} th_gov_config;

/* What predictive maximizes under the limit: work, or (energy) the lowest modeled joules per
 * unit of work: P(u, T_ss(u))/u over the duties the limit allows (leakage falls with
 * temperature, idle power does not, so the answer is usually full speed). */
#define TH_GOV_OBJ_THROUGHPUT 0
#define TH_GOV_OBJ_ENERGY 1

/* Defaults for a limit; every plant field unknown. */
th_gov_config th_gov_config_default(double limit_c);
/* Fills the plant fields (powers, R, τ = R·C, ambient, sensor lag) from a profile. */
void th_gov_config_set_plant(th_gov_config *c, const th_thermal_profile *p);
/* A measured coupling between the gradient norm and the heat: the datasheet.json that
 * `thermo analyze` writes (flat keys r_peak, t_lag_s, profile). t_lag_s < 0: the gradient
 * norm leads the heat by −t_lag_s seconds. */
typedef struct {
    double r_peak, t_lag_s;
    char profile[64]; /* the profile (machine) it was measured on; "" if not recorded */
    char path[256];
} th_gov_coupling;

/* Reads a coupling file. Fails with TH_ERR_IO (missing, unreadable: the caller then runs
 * with the feed-forward off and says so), TH_ERR_FORMAT naming the field (r_peak or t_lag_s
 * absent or not finite, |r_peak| > 1), TH_ERR_INVALID when it records a profile other than
 * `profile_name` (NULL: not checked). */
th_status th_gov_coupling_load(const char *path, const char *profile_name, th_gov_coupling *out);
/* Turns the feed-forward on in c when k shows a usable coupling (|r_peak| >= 0.5 and
 * t_lag_s < 0); otherwise off. Either way c->ff_note says which and why (k NULL: "no coupling
 * analysis given"). Returns 1 when on. */
int th_gov_config_set_coupling(th_gov_config *c, const th_gov_coupling *k);

/* The default limit for a profile: t_max_operating_c − 2 °C (room for sensor error). */
double th_gov_default_limit_c(const th_thermal_profile *p);

/* ---------------------------------------------------------------------------------
 * governors */

/* One decision's input: the latest sample and the sensor's word on its health. The
 * governor trusts that word: freshness and sticking are the sensor's to track
 * (th_sensor_health, or the sampler's callback). */
typedef struct {
    const th_sample *sample;   /* NULL: no reading at all (fail-safe) */
    th_status read_status;     /* status of the read that produced it (TH_OK) */
    th_sense_health health;    /* the sensor's health; OK for a plant read every period */
    const char *health_why;    /* its reason text (may be NULL) */
    double grad_norm;          /* the latest training step's gradient norm (> 0); 0: none published.
                                  Used only by a feed-forward with a measured coupling */
    double unit_s;             /* busy seconds of the work's last unit (th_pace_last_unit_s): the
                                  device is on for a unit, off for its wait, so the die ripples
                                  about the mean a duty sets; 0: continuous work or unknown */
} th_gov_input;

typedef struct {
    double duty;           /* in [min_duty, 1] */
    int threads;           /* thread cap, 0 = no cap */
    int fail_safe;         /* 1: the sample was not trusted and duty is the safe duty */
    int entered_fail_safe; /* 1: this decision entered the fail-safe, or changed its reason */
    int left_fail_safe;    /* 1: this decision left it (enough good samples in a row) */
    double predicted_c;    /* predictive: expected temperature at the horizon; NaN otherwise */
} th_gov_output;

size_t th_governor_count(void);
/* Name and source ("Linux drivers/thermal/gov_step_wise.c ...") of registry entry i; NULL past the end. */
const char *th_governor_name(size_t i);
const char *th_governor_source(size_t i);

typedef struct th_governor th_governor;

/* Creates governor `name` with a copy of cfg (defaults fill zero fields). Fails with
 * TH_ERR_INVALID for an unknown name (the message lists the known ones) or an impossible
 * config (limit not finite, safe/min duty outside (0, 1], ...), TH_ERR_NOMEM. */
th_status th_governor_create(const char *name, const th_gov_config *cfg, th_governor **out);
void th_governor_free(th_governor *g);

/* One decision, dt_s seconds after the previous one (the first call may pass 0). Never
 * fails: a bad input gives the fail-safe output. Pure: the same state and the same input
 * give the same output and the same next state. Not thread-safe on one governor. */
void th_governor_decide(th_governor *g, const th_gov_input *in, double dt_s, th_gov_output *out);

/* Forgets what was learned and decided (back to the state after create). */
void th_governor_reset(th_governor *g);

const char *th_governor_get_name(const th_governor *g);
const th_gov_config *th_governor_config(const th_governor *g);
/* One line on the last decision: "fail-safe: stale: ..." (the reason a caller logs when
 * entered_fail_safe is set) or the governor's own account ("predictive: R 0.080 K/W,
 * tau 20.1 s, ..."). Valid until the next decide. */
const char *th_governor_status(const th_governor *g);

/* What the predictive governor has identified (fails with TH_ERR_UNSUPPORTED for the others). */
typedef struct {
    int valid;           /* the parameters describe a stable plant (0 < a < 1, R > 0) */
    int converged;       /* enough data and small prediction error: the model is trusted */
    int power_input;     /* 1: identified against power (R in K/W); 0: against duty (K per unit duty) */
    double r;            /* thermal resistance: K/W (power_input) or K per unit duty */
    double tau_s;        /* time constant */
    double t_ambient_c;  /* ambient (with duty input: ambient + R·P_idle) */
    double offset_c;     /* the fast disturbance estimate added to the steady temperature */
    double t_est_c;      /* the filter's estimate of the die's temperature now (the sensor's lag and
                            quantization undone); NaN before the first sample */
    double rms_error_c;  /* recent RMS one-block prediction error */
    long blocks;         /* identification updates so far */
    long changes;        /* plant changes detected (each re-opens the identification) */
    double margin_c;     /* the margin in use when nothing is suspected (configured or derived) */
    double die_sd_c;     /* the filter's steady-state σ of the die estimate the margin came from */
    double allowance_c;  /* added to the margin while the model is unconverged or a change suspected */
    long alarms;         /* innovation alarms (a change of R or ambient suspected within samples) */
    int suspect;         /* the last decision used the widened margin */
} th_gov_model;
th_status th_governor_model(const th_governor *g, th_gov_model *out);

/* ---------------------------------------------------------------------------------
 * the pace actuator */

#define TH_PACE_WINDOW_S 2.0     /* default sliding window of the measured duty */
#define TH_PACE_MAX_SLICE_S 0.05 /* default longest sleep before a wait re-reads the duty */

typedef struct {
    double window_s;    /* sliding window of the measured duty (TH_PACE_WINDOW_S) */
    double max_slice_s; /* a wait re-reads the published duty at least this often (TH_PACE_MAX_SLICE_S) */
    /* the work loop's clock (NULL: th_now_ns): tests inject a recorded one to check the
     * bookkeeping without timing anything */
    uint64_t (*now_ns)(void *user);
    void *clock_user;
} th_pace_config;

typedef struct {
    uint64_t units;      /* units of work ended */
    uint64_t busy_ns;    /* time inside units */
    uint64_t idle_ns;    /* idle injected by th_pace_wait (what pacing cost) */
    uint64_t waits;      /* waits that slept */
    uint64_t interrupts; /* waits cut short by th_pace_interrupt */
} th_pace_stats;

typedef struct th_pace th_pace;

th_pace_config th_pace_config_default(void);
/* A pace at duty 1, no thread cap. Fails with TH_ERR_NOMEM or TH_ERR_IO (no pipe). */
th_status th_pace_create(const th_pace_config *cfg, th_pace **out);
void th_pace_free(th_pace *p);

/* Controller side: publishes a duty (clamped to [0.001, 1]; NaN → ignored) and thread cap. */
void th_pace_set(th_pace *p, double duty, int threads);
double th_pace_duty(const th_pace *p);
int th_pace_threads(const th_pace *p);

/* Work-loop side (one thread). begin/end bracket one unit of work; wait then sleeps
 * t_idle = t_run·(1/duty − 1), re-reading the published duty while it sleeps, and returns
 * TH_OK, or TH_ERR_INTERRUPTED at once if th_pace_interrupt was called (before or during
 * the wait; it stays interrupted until th_pace_clear_interrupt). */
void th_pace_begin_unit(th_pace *p);
void th_pace_end_unit(th_pace *p);
th_status th_pace_wait(th_pace *p);

/* Async-signal-safe: sets an atomic flag and writes one byte to a pipe. */
void th_pace_interrupt(th_pace *p);
void th_pace_clear_interrupt(th_pace *p);
int th_pace_interrupted(const th_pace *p);

/* Seconds the next th_pace_wait would still sleep now (the pace's clock): the idle rule
 * for the last unit at the published duty, less the time since it ended; 0 if none. */
double th_pace_wait_left_s(const th_pace *p);

/* Achieved duty: busy time / wall time over the sliding window (1 before any unit). */
double th_pace_measured_duty(const th_pace *p);
/* Busy seconds of the last unit that ended (0 before any): safe from any thread. */
double th_pace_last_unit_s(const th_pace *p);
void th_pace_get_stats(const th_pace *p, th_pace_stats *out);

/* The idle-injection rule itself: idle seconds after t_run_s of work at duty d
 * (t_run·(1/d − 1); 0 for d >= 1; d clamped to 0.001). */
double th_pace_idle_s(double t_run_s, double duty);

/* ---------------------------------------------------------------------------------
 * the governor benchmark (thermo bench governor): every governor on the simulated plant,
 * in simulated time, across scenarios. */

typedef enum {
    TH_SCEN_STEADY = 0,       /* full demand from ambient */
    TH_SCEN_AMBIENT_STEP,     /* ambient +8 °C halfway */
    TH_SCEN_COOLING_DEGRADED, /* R +30 % halfway (a fan slows) */
    TH_SCEN_BURSTY,           /* demand switches between 0 and 1 in bursts (inference) */
    TH_SCEN_LONG_TRAINING,    /* full demand for two hours */
    TH_SCEN_GRAD_SPIKES_PLANTED, /* full demand; gradient-norm spikes, and a PLANTED coupling: the
                                    plant's power follows each spike TH_PLANTED_LAG_S later (the
                                    default plant never has one, DESIGN §5) */
    TH_SCEN_COUNT
} th_scenario_kind;

#define TH_PLANTED_LAG_S 3.0   /* the planted coupling: heat follows a spike by 3 s ... */
#define TH_PLANTED_GAIN 0.4    /* ... as if the duty were 1.4x higher while the spike lasts */

const char *th_scenario_name(th_scenario_kind k);
/* Parses a name from th_scenario_name; -1 if unknown. */
int th_scenario_parse(const char *name);

typedef struct {
    double limit_c;      /* 0: th_gov_default_limit_c(profile) */
    double period_s;     /* control and sensor period (default 0.1: 10 Hz) */
    double duration_s;   /* 0: the scenario's own (600 s, 1200 s, 7200 s) */
    uint64_t seed;       /* sensor noise and burst pattern */
    double trace_hz;     /* rows per simulated second in the trace (default 1) */
    const char *trace_path; /* CSV t_s,temp_c,sensor_c,duty,power_w,work (NULL: none) */
    int objective;          /* the governors' th_gov_config.objective (TH_GOV_OBJ_THROUGHPUT) */
    double guard_c;         /* the governors' th_gov_config.guard_c (default 0) */
    double margin_c;        /* the governors' th_gov_config.margin_c; NaN (default): the config's default */
    int feed_forward;       /* 1: in the planted scenario the governor is given the planted
                               coupling (r_peak 1, t_lag_s -TH_PLANTED_LAG_S); its row is
                               labelled "<governor>+ff". Elsewhere no coupling exists: off */
} th_bench_gov_opts;

th_bench_gov_opts th_bench_gov_defaults(void);

typedef struct {
    char scenario[96];      /* "<kind>/<profile name>" */
    char governor[32];
    double limit_c, duration_s;
    double above_limit_s;   /* simulated seconds with the true temperature above the limit */
    double max_overshoot_c; /* max(true temperature − limit), 0 if never above */
    double max_temp_c;
    double work, oracle_work, work_fraction; /* work in full-speed seconds */
    double oracle_duty;     /* the oracle's duty (before a mid-run change) */
    double energy_j, energy_per_work_j;
    double optimal_work;    /* the optimal control bound: full duty until the limit, then the
                               duty that holds it exactly, knowing the plant (through any change) */
    double work_vs_optimal; /* work / optimal_work (<= 1 up to the bound's step error) */
    /* the causal bound: the optimal policy held causal_margin_c under the limit all run, the
     * die's rise (at the oracle's hold) between a mid-run change and the moment the lagged,
     * quantized sensor could first show it: its noiseless reading moved by max(q/2, noise).
     * Any governor that learns of the change through that sensor must sit about that far
     * under the limit beforehand to stay at 0 s above; 0 (= the optimal) without a change */
    double causal_margin_c, causal_work, work_vs_causal;
    double optimal_energy_per_work_j; /* J per unit of work of that optimal policy */
    double race_energy_per_work_j;    /* the same work (min(work, optimal_work)) done race-to-idle */
    double pace_energy_per_work_j;    /* ... and pace-to-cool: the lowest constant duty that does it */
    double pace_duty;                 /* that constant duty */
    double throttled_s;     /* seconds the modeled hardware slowdown was engaged */
    double fail_safe_s;     /* seconds the governor spent in fail-safe */
    double mean_duty;
    double decision_us;     /* measured mean wall time of one decide */
    long decisions;
    double margin_c;        /* predictive: the margin it used when nothing was suspected; NaN otherwise */
    long alarms;            /* predictive: innovation alarms (suspected changes); 0 otherwise */
    double sensor_above_s;  /* seconds the sensor's reading (lagged, noisy, quantized: what a user
                               sees) was above the limit; above_limit_s counts the die's */
} th_bench_gov_result;

/* Runs one governor on one scenario of one profile. Fails with TH_ERR_INVALID (unknown
 * governor, bad options), TH_ERR_IO (trace not writable), TH_ERR_NOMEM. */
th_status th_bench_governor(const th_thermal_profile *profile, th_scenario_kind kind, const char *governor,
                            const th_bench_gov_opts *opts, th_bench_gov_result *out);

/* The pacing a run needed, the bound a governor's pacing is judged by: the idle seconds the
 * optimal policy (full duty until the limit, then the duty that holds it exactly, knowing the
 * plant) must add to do busy_s seconds of work on plant p starting at start_c, with other_s
 * seconds the run spent outside units of work (neither busy nor paced; spread evenly, so the
 * loop's unpaced duty is busy/(busy + other)). 0 on a run that never reaches the limit. Fails
 * with the profile's status, TH_ERR_INVALID for negative times or a limit even idle cannot
 * hold (*idle_s NaN). */
th_status th_gov_necessary_idle(const th_thermal_profile *p, double limit_c, double start_c, double busy_s,
                                double other_s, double *idle_s);

/* The constant duty whose steady temperature is limit_c (bisection on
 * th_plant_steady_temp_c); 1 if full speed stays under it, 0 if even idle does not. */
double th_bench_oracle_duty(const th_thermal_profile *p, double limit_c);

#endif
