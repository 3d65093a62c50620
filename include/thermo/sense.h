/* sense.h: sensors and telemetry. Temperature, power, energy and utilization samples from
 * Linux thermal zones, hwmon, RAPL powercap, /proc/stat, NVIDIA NVML (dlopen'd at run
 * time), a simulated thermal plant and a recorded trace, all behind one sensor handle;
 * sensor health for the governor's fail-safe; a sampler thread; the telemetry log that
 * holds samples and the work loop's step records (CSV or JSONL).
 *
 * Every sample says where it came from (DESIGN invariant 4): `origin` is measured, modeled
 * (the simulated plant) or replayed (a recorded trace), and the telemetry log keeps it in
 * its own column; `source` names the sensor ("hwmon:coretemp/Package id 0",
 * "rapl:package-0", "nvml:0:NVIDIA H100", "sim:h100-sxm"). */
#ifndef THERMO_SENSE_H
#define THERMO_SENSE_H

#include <stddef.h>
#include <stdint.h>

#include "thermo/core.h"

/* ---------------------------------------------------------------------------------
 * samples */

enum {
    TH_SAMPLE_TEMP = 1u << 0,     /* temp_mc is valid */
    TH_SAMPLE_POWER = 1u << 1,    /* power_uw is valid */
    TH_SAMPLE_ENERGY = 1u << 2,   /* energy_uj is valid */
    TH_SAMPLE_UTIL = 1u << 3,     /* util is valid */
    TH_SAMPLE_THROTTLE = 1u << 4, /* throttle_reasons is valid */
};

/* Throttle reason bits, NVML's clocks-event-reason values (the simulated plant sets
 * HW_THERMAL while its modeled hardware slowdown is engaged). */
enum {
    TH_THROTTLE_GPU_IDLE = 0x1,
    TH_THROTTLE_SW_POWER_CAP = 0x4,
    TH_THROTTLE_HW_SLOWDOWN = 0x8,
    TH_THROTTLE_SW_THERMAL = 0x20,
    TH_THROTTLE_HW_THERMAL = 0x40,
    TH_THROTTLE_HW_POWER_BRAKE = 0x80,
};

typedef enum { TH_ORIGIN_MEASURED = 0, TH_ORIGIN_MODELED = 1, TH_ORIGIN_REPLAYED = 2 } th_origin;

/* "measured", "modeled", "replayed" ("unknown" for anything else). */
const char *th_origin_name(th_origin o);

/* Plausibility bounds: a temperature outside them is NONSENSE, never a number to trust. */
#define TH_SENSE_TEMP_MIN_MC (-40000)
#define TH_SENSE_TEMP_MAX_MC 150000

/* Defaults of th_sense_config and the sampler, named once. */
#define TH_SENSE_STALE_S 2.0       /* no good reading for this long: stale */
#define TH_SENSE_STUCK_S 120.0     /* the same milli-degree for this long: stuck */
#define TH_SENSE_MAX_POWER_W 5000.0 /* RAPL: a counter step implying more is nonsense */
#define TH_SENSE_HZ 10.0           /* sampling rate */

/* Sensor health, the governor's input for the fail-safe (invariant 2). */
typedef enum {
    TH_HEALTH_OK = 0,
    TH_HEALTH_STALE = 1,    /* no fresh good reading for longer than stale_s */
    TH_HEALTH_STUCK = 2,    /* the temperature has not changed by one milli-degree for stuck_s */
    TH_HEALTH_VANISHED = 3, /* the sensor's file or device disappeared (GPU lost, hot-unplug) */
    TH_HEALTH_NONSENSE = 4, /* garbage text, out-of-range value, counter running backwards */
} th_sense_health;

typedef struct {
    uint64_t t_ns;             /* CLOCK_MONOTONIC (or the config's clock) when read */
    int32_t temp_mc;           /* milli-degrees Celsius */
    int64_t power_uw;          /* microwatts */
    uint64_t energy_uj;        /* microjoules since the sensor was opened, wraps corrected */
    double util;               /* 0..1: CPU or GPU busy fraction */
    uint32_t throttle_reasons; /* TH_THROTTLE_* bits */
    uint32_t valid;            /* TH_SAMPLE_* bits: a field without its bit holds no reading */
    th_origin origin;
    th_sense_health fault;     /* the backend's diagnosis when a read fails, else OK */
    char source[96];
} th_sample;

/* Name of a health value ("ok", "stale", "stuck", "vanished", "nonsense"). */
const char *th_sense_health_name(th_sense_health h);

/* ---------------------------------------------------------------------------------
 * simulated thermal plant (DESIGN §4): one lumped RC node per device,
 *   C·dT/dt = P − (T − T_amb)/R,  P = P_idle + (P_max − P_idle)·u·f + P_leak(T),
 *   P_leak(T) = leak_w_at_ref · 2^((T − leak_ref_c)/leak_doubling_c),
 * where u is the work loop's measured duty and f the hardware throttle factor (1, or 0.5
 * while T is above t_slowdown_c, released 1 °C below it; 0 after a shutdown at
 * t_shutdown_c). The sensor sees the temperature through a first-order lag, seeded
 * Gaussian noise and quantization. */

typedef struct {
    char name[64];
    double r_k_per_w, c_j_per_k;  /* thermal resistance to ambient, heat capacity */
    double p_idle_w, p_max_w;     /* power at duty 0 and duty 1, leakage excluded */
    double t_ambient_c, t_max_operating_c, t_slowdown_c, t_shutdown_c;
    double leak_w_at_ref, leak_ref_c, leak_doubling_c; /* leak_w_at_ref 0: no leakage */
    double sensor_quantum_c, sensor_noise_c, sensor_lag_s; /* 0: exact, noiseless, no lag */
    char source[1024];            /* where the figures come from */
} th_thermal_profile;

/* Loads and validates a profile JSON file with exactly the keys of th_thermal_profile.
 * Fails with TH_ERR_IO (unreadable) or TH_ERR_FORMAT naming the file and the key: a
 * missing, unknown or mistyped key, R/C/leak_doubling not > 0, powers < 0 or
 * p_max_w < p_idle_w, t_slowdown_c < t_max_operating_c, t_shutdown_c < t_slowdown_c,
 * t_max_operating_c <= t_ambient_c, negative sensor settings. *out is untouched on failure. */
th_status th_profile_load(const char *path, th_thermal_profile *out);

/* `name_or_path` containing '/' or ending in ".json" is a path; otherwise the bundled
 * profile <THERMO_DATA_DIR>/profiles/<name>.json (env THERMO_DATA_DIR overrides the
 * directory). Bundled: laptop-cpu, desktop-cpu, server-cpu, rtx-4090, a100-sxm4, h100-sxm. */
th_status th_profile_find(const char *name_or_path, th_thermal_profile *out);

/* The checks of th_profile_load on an in-memory profile; `where` names it in messages. */
th_status th_profile_validate(const th_thermal_profile *p, const char *where);

typedef struct th_plant th_plant;

/* A plant at ambient temperature, duty 0, noise seeded with `seed`. The profile is copied. */
th_status th_plant_create(const th_thermal_profile *p, uint64_t seed, th_plant **out);
void th_plant_free(th_plant *pl);

/* Advances the plant by dt_s seconds at constant duty (0..1). The linear part is
 * integrated exactly (exponential step), leakage and the throttle are held per sub-step
 * of at most τ/50, so any dt is stable. Not thread-safe against other calls on the same
 * plant except th_plant_set_duty / th_plant_throttle_factor. */
th_status th_plant_step(th_plant *pl, double dt_s, double duty);

/* The duty (0..1) the plant heats at from now, published atomically. In the real-time mode
 * prefer th_plant_set_duty_at, which first advances to the moment of the change. */
void th_plant_set_duty(th_plant *pl, double duty);
double th_plant_get_duty(const th_plant *pl);

/* Real-time mode: advances by the time elapsed since the previous call (the first call
 * only sets the reference; a time at or before the last one does not step) at the duty
 * last set. Thread-safe against th_plant_set_duty_at and th_plant_read. */
th_status th_plant_advance_to(th_plant *pl, uint64_t now_ns);

/* Real-time mode, the work loop's side: advances to now_ns at the duty that held until
 * now, then sets the new one (1 when a unit of work starts, 0 when it ends), so the plant
 * heats during the work and cools during the pace's waits. now_ns is on the sensor's clock. */
th_status th_plant_set_duty_at(th_plant *pl, double duty, uint64_t now_ns);

/* The sensor's view now: lagged, noisy, quantized temperature; power, energy since
 * creation; as util, the time-weighted duty since the previous read (the duty set, before
 * any time has passed); TH_THROTTLE_HW_THERMAL while throttled; origin modeled, source
 * "sim:<name>". Fails (fault VANISHED) after a modeled shutdown. */
th_status th_plant_read(th_plant *pl, uint64_t t_ns, th_sample *out);

double th_plant_temp_c(const th_plant *pl);     /* true (unlagged) temperature */
double th_plant_power_w(const th_plant *pl);    /* current total power, leakage included */
double th_plant_energy_j(const th_plant *pl);   /* energy since creation */
double th_plant_time_s(const th_plant *pl);     /* simulated seconds since creation */
/* Throughput multiplier the caller's work rate must apply: 1, 0.5 throttled, 0 shut down.
 * Safe to call from any thread. */
double th_plant_throttle_factor(const th_plant *pl);
const th_thermal_profile *th_plant_profile(const th_plant *pl);
/* Steady temperature at constant duty (fixed point of the model, leakage included);
 * NaN if leakage runs away (no fixed point below 1000 °C). Unthrottled. */
double th_plant_steady_temp_c(const th_thermal_profile *p, double duty);

/* ---------------------------------------------------------------------------------
 * sensors: one handle over one backend, with health tracking */

typedef struct {
    const char *root;        /* prefix for /sys and /proc (default "/") */
    const char *profile;     /* sim: bundled name or path (default "laptop-cpu") */
    const char *trace_path;  /* trace: a telemetry CSV/JSONL to replay */
    double trace_speed;      /* trace: recorded seconds per wall second (default 1) */
    const char *nvml_lib;    /* nvml: library path (default $THERMO_NVML_LIB, else "libnvidia-ml.so.1") */
    int device;              /* nvml: GPU index (default 0) */
    const char *zone;        /* thermal/hwmon: preferred zone type or chip name (NULL: auto) */
    uint64_t seed;           /* sim: noise seed */
    double stale_s;          /* health: no good reading for this long = stale (TH_SENSE_STALE_S) */
    double stuck_s;          /* health: identical temperature this long = stuck (TH_SENSE_STUCK_S) */
    double max_power_w;      /* RAPL: above this implied power a counter step is nonsense (TH_SENSE_MAX_POWER_W) */
    uint64_t (*clock_ns)(void *user); /* time source (default th_now_ns); tests inject one */
    void *clock_user;
} th_sense_config;

th_sense_config th_sense_config_default(void);

/* Backends in the registry, in order: "host" (thermal/hwmon temperature + RAPL energy +
 * /proc/stat util, merged), "nvml", "hwmon", "thermal", "rapl", "procstat", "trace", "sim". */
size_t th_sense_backend_count(void);
const char *th_sense_backend_name(size_t i);
/* The backend's probe score on this config (0 = unsupported, higher = preferred). */
int th_sense_backend_probe(size_t i, const th_sense_config *cfg);

typedef struct th_sensor th_sensor;

/* Opens backend `name`, or with NULL / "auto" the highest-scoring backend that reads a
 * temperature (rapl and procstat only when named; "sim" scores 1,
 * so auto always succeeds unless the profile is bad). Fails with TH_ERR_UNSUPPORTED when
 * the named backend finds nothing, TH_ERR_IO with the path and the fix when permission is
 * missing, TH_ERR_FORMAT for a bad profile or trace. */
th_status th_sensor_open(const char *name, const th_sense_config *cfg, th_sensor **out);
void th_sensor_close(th_sensor *s);

/* Reads one sample. On success the fields with their TH_SAMPLE_* bit hold readings that
 * passed the plausibility checks (temperature −40..150 °C, power 0..max_power_w,
 * util 0..1, energy not decreasing). On failure the status says why (th_last_error names
 * the file and problem), out->fault classifies it and out->valid holds only what could
 * still be read. Never blocks longer than the file reads (or NVML calls) it makes. */
th_status th_sensor_read(th_sensor *s, th_sample *out);

/* Health now (uses the config's clock), with a one-line reason in why (may be NULL). */
th_sense_health th_sensor_health(th_sensor *s, char *why, size_t why_len);

const char *th_sensor_backend(const th_sensor *s);
th_origin th_sensor_origin(const th_sensor *s);
/* The simulated plant behind a "sim" sensor (NULL for the others): the work loop sets its
 * measured duty there and reads the throttle factor. */
th_plant *th_sensor_plant(th_sensor *s);
/* The sensor's clock, in ns: CLOCK_MONOTONIC, or the config's test clock when it has one. */
uint64_t th_sensor_now(const th_sensor *s);

/* Device temperature limits in milli-°C, 0 where unknown: from the plant profile, NVML
 * thresholds, thermal trip points (passive → slowdown, critical → shutdown) or hwmon
 * temp*_max / temp*_crit. */
typedef struct {
    int32_t max_operating_mc, slowdown_mc, shutdown_mc;
} th_sense_limits;
th_status th_sensor_limits(th_sensor *s, th_sense_limits *out);

/* ---------------------------------------------------------------------------------
 * listing every reading (thermo sensors) */

typedef enum { TH_KIND_TEMP = 0, TH_KIND_POWER, TH_KIND_ENERGY, TH_KIND_UTIL, TH_KIND_LIMIT } th_reading_kind;

typedef struct {
    char name[96];    /* "coretemp/Package id 0", "package-0", "cpu", "GPU 0 NVIDIA H100" */
    th_reading_kind kind;
    char source[64];  /* backend and file, "hwmon:hwmon3/temp1_input", "rapl:intel-rapl:0/energy_uj" */
    double value;     /* in unit; NaN when status != TH_OK */
    const char *unit; /* "°C", "W", "J", "fraction" */
    int measured;     /* 0 for the simulated plant */
    th_status status; /* a reading that failed keeps its message here */
    char message[512];
} th_reading;

/* Every reading every measured backend finds under cfg->root (RAPL power needs two
 * counter reads `interval_s` apart; 0 skips power). *out is allocated with th_alloc,
 * freed by the caller with th_free; *n may be 0 (nothing found: the caller says so and
 * falls back to th_sense_list_sim). */
th_status th_sense_list(const th_sense_config *cfg, double interval_s, th_reading **out, size_t *n);
/* The simulated plant's readings (measured = 0) for the config's profile. */
th_status th_sense_list_sim(const th_sense_config *cfg, th_reading **out, size_t *n);

/* ---------------------------------------------------------------------------------
 * telemetry log: samples and the work loop's units in one file, columns
 *   t_s,kind,origin,source,temp_c,power_w,energy_j,util,health,duty_set,duty_measured,
 *   threads,step,loss,grad_norm,lr,tokens,step_ms,unit_j
 * t_s: seconds since the log's t0. kind: sample | step (a training step) | token (one
 * generated token; the prefill is token 0 with tokens = the prompt length). origin:
 * measured | modeled | replayed. health: the sensor's health (sample rows). duty_set: the
 * governor's decision made on this very sample (sample rows) or in force (unit rows);
 * duty_measured: the pace's measured duty. unit_j: the IT energy charged to the unit.
 * Empty cells where a column does not apply; JSONL has the same keys, absent where a
 * column does not apply. */

typedef enum { TH_TELEMETRY_CSV = 0, TH_TELEMETRY_JSONL = 1 } th_telemetry_format;

/* The pace a row records. NaN duty / threads < 0: empty cells. */
typedef struct {
    double duty_set, duty_measured;
    int threads;
} th_telemetry_pace;

typedef enum { TH_UNIT_STEP = 0, TH_UNIT_TOKEN = 1 } th_unit_kind;

/* One unit of work as the work loop reports it. NaN / negative marks a field as absent. */
typedef struct {
    th_unit_kind kind;
    uint64_t t_ns;
    long step;                  /* step number, or token index (0 = the prefill) */
    double loss, grad_norm, lr; /* NaN for tokens */
    long tokens;
    double step_ms;
    double unit_j;              /* IT energy charged to this unit (NaN: unknown) */
    th_telemetry_pace pace;
    th_origin origin;           /* of the energy figure: the run's sensor origin */
} th_telemetry_unit;

enum {
    TH_COL_TEMP = 1u << 0, TH_COL_POWER = 1u << 1, TH_COL_ENERGY = 1u << 2, TH_COL_UTIL = 1u << 3,
    TH_COL_DUTY_SET = 1u << 4, TH_COL_THREADS = 1u << 5, TH_COL_STEP = 1u << 6, TH_COL_LOSS = 1u << 7,
    TH_COL_GRAD_NORM = 1u << 8, TH_COL_LR = 1u << 9, TH_COL_TOKENS = 1u << 10, TH_COL_STEP_MS = 1u << 11,
    TH_COL_DUTY_MEASURED = 1u << 12, TH_COL_UNIT_J = 1u << 13, TH_COL_ORIGIN = 1u << 14, TH_COL_HEALTH = 1u << 15,
};

typedef enum { TH_ROW_SAMPLE = 0, TH_ROW_STEP = 1, TH_ROW_TOKEN = 2 } th_row_kind;

/* One parsed row; `has` holds a TH_COL_* bit for each non-empty cell. */
typedef struct {
    double t_s;
    th_row_kind kind;
    int is_step;            /* kind != TH_ROW_SAMPLE: a unit of work (step or token) */
    th_origin origin;       /* TH_COL_ORIGIN */
    char source[96];
    double temp_c, power_w, energy_j, util;
    th_sense_health health; /* TH_COL_HEALTH */
    double duty_set, duty_measured;
    int threads;
    long step;
    double loss, grad_norm, lr;
    long tokens;
    double step_ms, unit_j;
    uint32_t has;
} th_telemetry_row;

typedef struct th_telemetry th_telemetry;

/* Creates (truncates) `path`; format from fmt. t0_ns is the run start. CSV gets the header
 * line. Fails with TH_ERR_IO naming the path. */
th_status th_telemetry_open(const char *path, th_telemetry_format fmt, uint64_t t0_ns, th_telemetry **out);
/* The format a path implies: ".jsonl"/".json" → JSONL, anything else CSV. */
th_telemetry_format th_telemetry_format_for(const char *path);
/* Thread-safe appends (one short mutex around a buffered write). A sample row holds the
 * sample's valid fields, its origin and source, the health h and the pace p (NULL: empty
 * pace cells). The first write error is remembered and returned by this and every later
 * call and by th_telemetry_close. */
th_status th_telemetry_add_sample(th_telemetry *t, const th_sample *s, th_sense_health h, const th_telemetry_pace *p);
th_status th_telemetry_add_unit(th_telemetry *t, const th_telemetry_unit *u);
th_status th_telemetry_flush(th_telemetry *t);
/* Flushes, closes, frees; returns the first error seen. NULL is a no-op. */
th_status th_telemetry_close(th_telemetry *t);

/* How to read a log. Strict (tolerant = 0): the CSV header must be this format's or the
 * previous one's (one `duty` column, no origin/health/unit_j), and the first bad line
 * fails the read with TH_ERR_FORMAT naming the file, line and column. Tolerant: the
 * header names the columns present (t_s required, unknown ones ignored, JSONL unknown
 * keys ignored), a line that does not parse is skipped, counted and passed to on_bad_line
 * (optional) with its line number and reason. */
typedef struct {
    int tolerant;
    void (*on_bad_line)(long line, const char *why, void *user);
    void *user;
} th_telemetry_read_options;

typedef struct {
    size_t rows;          /* rows read */
    size_t bad_lines;     /* lines skipped (tolerant mode) */
    long first_bad_line;  /* its line number, 0 if none */
    char first_bad[640];  /* "path:line: reason" of the first skipped line */
    int old_format;       /* rows in the previous format (one duty column, no origin) were read */
} th_telemetry_read_report;

/* Reads a CSV or JSONL telemetry file (opts NULL: strict; rep may be NULL). Rows of the
 * previous format map their `duty` to duty_set on sample rows and duty_measured on step
 * rows, and take their origin from the source name ("sim:" modeled, else measured).
 * *rows is th_alloc'ed (th_free). Fails with TH_ERR_IO (unreadable), TH_ERR_NOMEM or
 * TH_ERR_FORMAT; tolerant mode fails only on an empty file, a header without t_s, or no
 * readable row. The outputs are untouched on failure. */
th_status th_telemetry_read_opts(const char *path, const th_telemetry_read_options *opts, th_telemetry_row **rows,
                                 size_t *n, th_telemetry_read_report *rep);
/* th_telemetry_read_opts in strict mode. */
th_status th_telemetry_read(const char *path, th_telemetry_row **rows, size_t *n);

/* ---------------------------------------------------------------------------------
 * sampler thread: reads a sensor at `hz` on absolute CLOCK_MONOTONIC deadlines, keeps the
 * latest sample for lock-free-enough polling (a mutex held for one struct copy) and calls
 * on_sample from the sampler thread with the read's status and the sensor's health and
 * reason. It writes nothing: the caller decides and records inside on_sample, so a
 * telemetry row can carry the decision made on its own sample. */

/* why: th_sensor_health's reason, "" when healthy; valid for the call only. */
typedef void (*th_sample_fn)(const th_sample *s, th_status st, th_sense_health h, const char *why, void *user);

typedef struct {
    double hz;               /* default TH_SENSE_HZ */
    th_sensor *sensor;       /* required; the sampler is its only reader while running */
    th_sample_fn on_sample;  /* optional; runs on the sampler thread, keep it short */
    void *user;
} th_sense_sampler_config;

typedef struct th_sense_sampler th_sense_sampler;

/* Fails with TH_ERR_INVALID (no sensor, rate outside 0.001..10000 Hz), TH_ERR_NOMEM, or
 * TH_ERR_IO (no thread). */
th_status th_sense_sampler_start(const th_sense_sampler_config *cfg, th_sense_sampler **out);
/* Stops and joins the thread (at most one period), frees the sampler. The sensor stays
 * open (the caller's). NULL is a no-op. */
void th_sense_sampler_stop(th_sense_sampler *sp);
/* Copies the latest sample, its read status and health; returns 0 before the first read. */
int th_sense_sampler_latest(th_sense_sampler *sp, th_sample *out, th_status *st, th_sense_health *h);
/* Reads taken so far, and deadlines missed (a read that overran its period). */
uint64_t th_sense_sampler_reads(th_sense_sampler *sp);
uint64_t th_sense_sampler_overruns(th_sense_sampler *sp);

#endif
