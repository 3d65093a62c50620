/* analyze.h: thermal-optimization coupling analysis (DESIGN §5, the field manual's
 * procedure). A session's telemetry log (sample rows and step rows on one clock) is
 * aligned onto a 1 Hz grid; from it come η_util, η_stability, A_load, τ_sustain, RLE(t),
 * σ_opt, τ_th (local, and fitted by least squares to the first-order model), η_p, the
 * energy-balance residual and the cross-correlation of RLE(t) with ∇f(t+k); a data sheet
 * (Markdown, JSON) and hand-written SVG plots; `thermo calibrate`'s step-response fit of
 * a thermal profile; and `thermo repro`'s agreement check across sessions.
 *
 * The analysis reports what the data holds: a figure that cannot be computed is NaN with
 * a reason, never a default. Every data sheet says whether its data was measured or
 * modeled (the simulated plant), as DESIGN invariant 4 asks. */
#ifndef THERMO_ANALYZE_H
#define THERMO_ANALYZE_H

#include <stddef.h>

#include "thermo/core.h"
#include "thermo/sense.h"

/* ---------------------------------------------------------------------------------
 * session metadata (DIR/session.json, written by `thermo session`) */

typedef struct {
    char id[64], date[64];      /* "20250101T120000-1234", ISO 8601 UTC */
    char model[256], profile[128], sensor[96]; /* sensor: the samples' source ("sim:laptop-cpu") */
    double ambient_c;           /* NaN: unknown */
    char ambient_how[96];       /* "first sensor sample", "--ambient" */
    int modeled;                /* 1: simulated plant, 0: measured, -1: unknown */
    double p_idle_w, p_max_w, r_k_per_w, c_j_per_k; /* the plant profile's (NaN: unknown) */
    double duration_s, hz;
    long steps;
    char stopped_by[64];        /* "steps", "duration", "error" */
} th_session_meta;

/* All numbers NaN / -1, strings empty. */
void th_session_meta_init(th_session_meta *m);
/* Reads / writes session.json. Read fails with TH_ERR_IO or TH_ERR_FORMAT naming the file;
 * keys that are absent stay as th_session_meta_init leaves them. */
th_status th_session_meta_read(const char *path, th_session_meta *out);
th_status th_session_meta_write(const char *path, const th_session_meta *m);

/* ---------------------------------------------------------------------------------
 * the analysis */

typedef struct {
    double hz;            /* grid rate (default 1) */
    double tolerance_s;   /* a grid point takes rows within ± this; farther is a gap (default 2) */
    double window_s;      /* η_stability window (default 10) */
    double slope_window_s; /* dT/dt and dP/dt: least-squares slope over this window (default 5) */
    int max_lag;          /* cross-correlation lags −max_lag…+max_lag grid steps (default 3) */
    double ambient_c;     /* NaN: session.json's recorded one, else fitted (a free parameter of the first-order fit) */
    double p_ref_w;       /* P_ref of A_load. NaN: the profile's p_max_w, else the highest power seen */
    double p_idle_w;      /* NaN: the profile's p_idle_w, else the 5th percentile of power */
    double step_offset_s; /* added to step rows' times (a step log on a shifted clock); default 0 */
    const char *steps_path; /* a training log (CSV or JSONL) whose lines become the step rows; NULL: none */
    const char *time_col, *grad_col; /* its columns; NULL: the first of the common names found */
} th_analyze_opts;

th_analyze_opts th_analyze_defaults(void);

typedef enum {
    TH_AN_ETA_UTIL = 0,   /* mean η_util */
    TH_AN_ETA_STABILITY,  /* mean η_stability */
    TH_AN_A_LOAD,         /* mean A_load */
    TH_AN_TAU_SUSTAIN,    /* median τ_sustain (s) */
    TH_AN_RLE,            /* mean RLE */
    TH_AN_SIGMA_OPT,      /* std(∇f)/mean(∇f) over the step rows */
    TH_AN_TAU_LOCAL,      /* median local ΔT/(dT/dt) (s) */
    TH_AN_TAU_FIT,        /* τ_th fitted to the first-order model (s) */
    TH_AN_R_FIT,          /* R fitted (K/W) */
    TH_AN_C_FIT,          /* C = τ/R (J/K) */
    TH_AN_FIT_RMS,        /* RMS error of that fit (°C) */
    TH_AN_ETA_P,          /* mean(P − P_idle)/mean(P) */
    TH_AN_BALANCE_RMS,    /* RMS of P − (T − T_amb)/R − C·dT/dt (W) */
    TH_AN_BALANCE_REL,    /* that RMS / mean P */
    TH_AN_R_PEAK,         /* signed r at t_lag */
    TH_AN_T_LAG,          /* lag k (s) with the largest |r| of corr(RLE(t), ∇f(t+k)) */
    TH_AN_COUNT
} th_an_figure_id;

typedef struct {
    const char *key;      /* JSON key: "eta_util", "tau_s", "r_peak", "t_lag_s", ... */
    const char *label;    /* "η_util", ... */
    const char *unit;     /* "" when dimensionless */
    double value;         /* NaN when it could not be computed */
    double sd;            /* its standard error where the figure is fitted, else NaN */
    char how[240];        /* how it was computed, or why it is NaN */
    char interp[160];     /* the manual's reading ("" when the manual has none) */
} th_an_figure;

#define TH_AN_MAX_LAG 10
#define TH_AN_MAX_WARN 12

typedef struct {
    th_session_meta meta;
    size_t rows, sample_rows, step_rows; /* rows read */
    size_t bad_rows;                     /* lines skipped by the tolerant reader */
    size_t reordered;                    /* rows that were out of time order (sorted) */
    size_t n_grid;                       /* grid points from the first row to the last */
    size_t n_samples;                    /* grid points with temperature (and power, when logged) */
    size_t dropped;                      /* n_grid − n_samples: no reading within tolerance */
    double t0_s, duration_s, p_ref_w, p_idle_w;
    double ambient_sd_c;                 /* 0: given or recorded; else the fit's standard error; NaN: unknown */
    char p_ref_how[96], p_idle_how[96];
    /* the 1 Hz series (n_grid each; NaN where undefined) */
    double *t_s, *temp_c, *power_w, *duty, *grad_norm, *eta_util, *eta_stab, *a_load, *tau_sustain, *rle, *resid_w;
    th_an_figure fig[TH_AN_COUNT];
    int max_lag;
    double xcorr_r[2 * TH_AN_MAX_LAG + 1]; /* index k + max_lag; NaN: too few pairs */
    int xcorr_pairs[2 * TH_AN_MAX_LAG + 1];
    char causal[240];                      /* the causal reading of t_lag and r_peak */
    int replayed;                          /* a sample row was replayed (modeled is then 1) */
    double n_eff, r_bound;                 /* independent pairs at t_lag, and the 95 % bound on |r| */
    char warnings[TH_AN_MAX_WARN][240];
    int n_warnings;
} th_analysis;

/* Analyzes parsed telemetry rows (any order; sorted by time here). `meta` may be NULL.
 * Fails only with TH_ERR_NOMEM, or TH_ERR_FORMAT when no row has a time at all; too few
 * rows for a figure give that figure NaN with its reason, and a warning. */
/* The origin of a sample row in a log without an origin column (the previous format,
 * other tools' logs): only a source that names a hardware backend (hwmon:, rapl:, nvml:,
 * thermal:, procstat:, nvidia-smi) is measured; "trace..." or "(replay)" is replayed;
 * any other name ("sim", "sim:laptop-cpu", "plant", a name we do not know) is modeled,
 * so a log of unknown provenance is never shown as measured. */
th_origin th_analyze_origin_of_source(const char *source);

th_status th_analyze_rows(const th_telemetry_row *rows, size_t n, const th_session_meta *meta,
                          const th_analyze_opts *o, th_analysis **out);

/* `path` is a session directory (telemetry.csv or telemetry.jsonl, session.json if
 * present) or a telemetry file. Reads with th_telemetry_read; if that rejects the file
 * (truncated line, missing or extra columns), reads again tolerantly: the header names
 * the columns present, a line that does not parse is skipped and counted (a warning
 * names the first). Fails with TH_ERR_IO (unreadable) or TH_ERR_FORMAT (empty, no t_s
 * column, no row) naming the file. */
th_status th_analyze_path(const char *path, const th_analyze_opts *o, th_analysis **out);

void th_analysis_free(th_analysis *a);

/* ---------------------------------------------------------------------------------
 * other tools' logs, read into telemetry rows (t_s: wall-clock seconds since the epoch) */

typedef struct {
    th_telemetry_read_report read; /* rows, and the lines or cells skipped (first one named) */
    size_t na_lines;               /* cells not available ([N/A], an empty grad norm) */
    char first_na[320];            /* "path:line: column power.draw is '[N/A]'" */
    size_t other_gpu_lines;        /* nvidia-smi: lines of further GPUs (the first GPU is read) */
    size_t other_lines;            /* training log: JSONL records without the time key */
    char missing[320];             /* nvidia-smi: "path: no power.draw column" ("" when complete) */
} th_analyze_foreign_report;

/* 1 if a CSV header line is nvidia-smi's --query-gpu output (temperature.gpu, power.draw). */
int th_analyze_is_nvsmi_header(const char *line);

/* nvidia-smi --query-gpu=timestamp,temperature.gpu,power.draw,utilization.gpu
 * --format=csv[,nounits] -l N: header names with or without "[unit]", values with or
 * without unit suffixes ("45.2 W", "63 %"; mW and kW converted, any other unit rejected
 * for that cell), "[N/A]" cells left out and counted, timestamps "YYYY/MM/DD
 * HH:MM:SS.mmm" as local time. With several GPUs (one line each per timestamp) the first
 * is read. Sample rows, origin measured, source "nvidia-smi". Fails with TH_ERR_IO,
 * TH_ERR_NOMEM, or TH_ERR_FORMAT (empty, no timestamp column, power not in [W], no
 * readable line) naming the file and line. */
th_status th_analyze_read_nvsmi(const char *path, th_telemetry_row **rows, size_t *n, th_analyze_foreign_report *rep);

/* A training log, CSV with a header or JSONL: time_col (NULL: timestamp, _timestamp, time,
 * wall_time, t_s) holds seconds (any clock) or a date ("2024-01-15T10:23:45.5Z"; local
 * time without the Z); grad_col (NULL: grad_norm, train/grad_norm, gradient_norm,
 * grad-norm) the gradient norm. Step rows; a line without a grad norm is a step row
 * without one. Fails with TH_ERR_IO, TH_ERR_NOMEM, or TH_ERR_FORMAT (empty, no such
 * column, no line with a time) naming the file, the line and the columns looked for. */
th_status th_analyze_read_steps(const char *path, const char *time_col, const char *grad_col, th_telemetry_row **rows,
                                size_t *n, th_analyze_foreign_report *rep);

/* The data sheet as JSON text (malloc'ed; the caller frees with free()). */
th_status th_analysis_json(const th_analysis *a, char **out);
/* Writes DIR/datasheet.md, DIR/datasheet.json and the plots DIR/thermal.svg (temperature,
 * power and duty against time), DIR/rle_grad.svg (RLE and grad norm against time) and
 * DIR/xcorr.svg (r against lag). Fails with TH_ERR_IO naming the file. */
th_status th_analysis_write(const th_analysis *a, const char *dir);

/* ---------------------------------------------------------------------------------
 * the first-order fit: T(t) = T_amb + R·y_τ(t) + d0·e^(−(t−t0)/τ), where y_τ is P passed
 * through τ·dy/dt = P − y from y(t0) = 0, each power reading held over the interval that
 * ends at it (the exact solution when a reading is the average power since the previous
 * one, as RAPL- and NVML-derived power is).
 * Fitted by maximum likelihood with two white noises: the sensor's on the temperature and
 * the recorded power's (a reading P + n held over its interval, so the model carries
 * −R·lowpass_τ(n), a slow wander that least squares would read as signal). For each τ
 * and noise ratio the model is linear in (T_amb, R, d0): a Kalman filter whitens the
 * residuals and weighted least squares solves it; τ and the ratio by golden-section
 * search, started from the output-error (plain least-squares) fit. */

typedef struct {
    double r_k_per_w, tau_s, c_j_per_k, t_ambient_c;
    double sensor_lag_s; /* the sensor's first-order lag (0 unless fitted) */
    double rms_c;      /* RMS of T − model */
    size_t n;
    int ambient_fitted; /* 1: T_amb was a free parameter */
    /* one-standard-error uncertainties: the covariance of (T_amb, R, d0) at the optimum
     * (from the whitened residuals), combined in quadrature with the spread of each
     * coefficient over the τ interval where −2 log L rises by at most 1 (the profile
     * likelihood's 68 % interval; its curvature when sharper than 0.5 % steps). NaN when
     * not formed; t_ambient_sd_c is 0 when the ambient was held. */
    double tau_sd_s, r_sd_k_per_w, t_ambient_sd_c;
    double c_sd_j_per_k; /* the same profile's C = τ/R (τ and R errors move together) */
    /* the fitted noises: the temperature sensor's sd, and the sd of one power reading's
     * error (0 when the power's noise is not seen; NaN when not formed) */
    double temp_noise_c, power_noise_w;
} th_fo_fit;

/* t ascending, n >= 8, NaN entries skipped. ambient_c NaN: fitted; else held. max_lag_s > 0
 * also fits a first-order sensor lag in [0, max_lag_s] (the model's output passed through
 * it), in steps of max(0.1 s, the sample period). Fails with
 * TH_ERR_INVALID (too few points, power constant so R is unobservable, no finite optimum). */
th_status th_fit_first_order(const double *t_s, const double *temp_c, const double *power_w, size_t n,
                             double ambient_c, double max_lag_s, th_fo_fit *out);

/* ---------------------------------------------------------------------------------
 * calibration (thermo calibrate): idle, full duty, idle; fits R, C, τ, P_idle, P_max */

typedef struct {
    double idle_s, load_s; /* each idle phase, and the load phase (default 60, 180) */
    double hz;             /* sampling rate (default 10) */
    uint64_t seed;         /* sensor noise (simulated) */
} th_calib_opts;

typedef struct {
    th_thermal_profile profile; /* the fitted profile (loadable by th_profile_load) */
    th_fo_fit fit;
    double p_idle_w, p_max_w;   /* mean power over the idle phases / the load phase's second half */
    size_t samples;
} th_calib_result;

th_calib_opts th_calib_defaults(void);

/* The experiment on a simulated plant of profile `plant`, in simulated time, read through
 * the plant's sensor model (lag, noise, quantization). */
th_status th_calibrate_simulated(const th_thermal_profile *plant, const th_calib_opts *o, th_calib_result *out);

/* Fits a profile from recorded samples (time, temperature, power). `base` gives the limits
 * and the name (NULL: generic limits). load_start_s/load_end_s bound the load phase. */
th_status th_calibrate_fit(const double *t_s, const double *temp_c, const double *power_w, size_t n,
                           double load_start_s, double load_end_s, const th_thermal_profile *base,
                           const char *name, th_calib_result *out);

/* Writes a profile JSON with exactly the keys th_profile_load reads (temporary file + rename). */
th_status th_profile_write(const char *path, const th_thermal_profile *p);

/* ---------------------------------------------------------------------------------
 * reproducibility (thermo repro) */

typedef struct {
    th_an_figure_id id;
    double mean, min, max;
    double spread;  /* max |x − mean| / |mean| (t_lag: in seconds) */
    int n;          /* sessions with a finite value */
    int agree;      /* 1: within ±20 % (t_lag: within ±1 s); 0: not; -1: fewer than 2 values */
} th_repro_figure;

#define TH_REPRO_FIGURES 9

typedef struct {
    th_repro_figure fig[TH_REPRO_FIGURES];
    int all_agree;  /* every figure with >= 2 values agrees */
    int not_compared; /* figures with fewer than 2 values (agree -1): the verdict names them */
} th_repro_result;

th_status th_repro_compare(const th_analysis *const *a, size_t n, th_repro_result *out);

#endif
