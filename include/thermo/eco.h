/* eco.h: the environmental ledger. Turns energy figures (read from counters, integrated
 * from polled power, or taken from a power model) into facility energy, CO2e, water,
 * local air pollutants and EPA equivalences, using factor tables that carry a source,
 * a year and a basis on every row (CSV files in data/factors/). Every figure says where it came
 * from (DESIGN.md invariant 4): energy carries its basis and source, each factor its
 * table row or the flag that set it. */
#ifndef THERMO_ECO_H
#define THERMO_ECO_H

#include <stddef.h>
#include <stdint.h>

#include "thermo/core.h"
#include "thermo/sense.h" /* th_sample, th_origin: the ledger reads energy from samples */

/* Joules in one kilowatt-hour: the one conversion every figure here goes through. */
#define TH_J_PER_KWH 3.6e6

/* ---------------------------------------------------------------------------------
 * energy figures with their basis */

typedef enum {
    TH_ECO_BASIS_MEASURED_COUNTER = 0, /* difference of a cumulative hardware energy counter */
    TH_ECO_BASIS_MEASURED_POWER = 1,   /* polled power, integrated over the sample times */
    TH_ECO_BASIS_MODELED = 2,          /* a power model (TDP x utilization curve, simulated plant) */
    TH_ECO_BASIS_ESTIMATE = 3,         /* planning estimate P x N x hours; never a measurement */
} th_eco_basis;

/* "measured-counter", "measured-power", "modeled", "estimate". */
const char *th_eco_basis_name(th_eco_basis b);

typedef struct {
    double energy_j;    /* IT energy over the window, joules */
    double duration_s;  /* window length, seconds (0 if unknown) */
    th_eco_basis basis;
    char source[128];   /* sensor or model: "rapl:package-0", "nvml:0", "sim-plant:h100-sxm" */
} th_energy_figure;

/* Cumulative counter, e.g. RAPL energy_uj (joules_per_unit 1e-6, wraps to 0 after
 * max_energy_range_uj) or NVML total energy (1e-3 J per unit, max_range 0 = never wraps).
 * The counter must be read at least once per wrap period: two wraps between samples look
 * like one. */
typedef struct {
    char source[128];
    double joules_per_unit;
    uint64_t max_range;      /* largest value before the wrap to 0; 0 = no wrap */
    int have_last;
    uint64_t last_value;
    uint64_t t_first_ns, t_last_ns;
    double total_units;      /* accumulated (unwrapped) delta */
    uint64_t wraps;
    size_t samples;
} th_energy_counter;

/* Prepares `c`. Fails (TH_ERR_INVALID) on a NULL/empty source or joules_per_unit <= 0. */
th_status th_energy_counter_init(th_energy_counter *c, const char *source, double joules_per_unit, uint64_t max_range);

/* Adds a reading taken at t_ns (CLOCK_MONOTONIC). A value below the previous one is a
 * wrap when max_range > 0 (delta = max_range - last + value, as RAPL and the kernel's
 * powercap do); with max_range 0 it is a counter reset and is rejected (TH_ERR_INVALID),
 * as are readings above max_range and times going backwards. On failure `c` is unchanged. */
th_status th_energy_counter_add(th_energy_counter *c, uint64_t t_ns, uint64_t value);

/* The energy since the first reading, basis measured-counter. TH_ERR_STATE with fewer
 * than two readings. */
th_status th_energy_counter_figure(const th_energy_counter *c, th_energy_figure *out);

/* Integrates power samples with the trapezoid rule over their times. Used for polled
 * power (basis measured-power) and for modeled power (basis modeled). */
typedef struct {
    char source[128];
    th_eco_basis basis;
    int have_last;
    uint64_t t_first_ns, t_last_ns;
    uint64_t last_power_uw;
    double energy_j;
    size_t samples;
} th_power_integrator;

/* basis must be TH_ECO_BASIS_MEASURED_POWER or TH_ECO_BASIS_MODELED. */
th_status th_power_integrator_init(th_power_integrator *p, const char *source, th_eco_basis basis);
/* Adds a sample; t_ns must not go backwards (TH_ERR_INVALID, `p` unchanged). */
th_status th_power_integrator_add(th_power_integrator *p, uint64_t t_ns, uint64_t power_uw);
/* TH_ERR_STATE with fewer than two samples. */
th_status th_power_integrator_figure(const th_power_integrator *p, th_energy_figure *out);

/* CPU power model for machines with no RAPL: P = TDP x (0.1 + 0.9 u^3), u in [0, 1] the
 * whole-machine CPU utilization. This is CodeCarbon's CPU-load mode (mlco2/codecarbon,
 * codecarbon/external/hardware.py, v3); CodeCarbon checked it against RAPL on 5 CPUs
 * (data/hardware/cpu_load_profiling). Feed the result to a TH_ECO_BASIS_MODELED
 * integrator. Fails on tdp_w outside (0, 2000] or u outside [0, 1]. */
th_status th_cpu_model_power_uw(double tdp_w, double util, uint64_t *power_uw);

/* Sum of device figures (CPU package + GPU + ...) into one IT figure. The basis is the
 * weakest of the parts (estimate < modeled < measured-power < measured-counter); the
 * source lists the parts joined by '+', truncated with "..." if long. Duration is the
 * longest part. Fails on n == 0 or a negative energy. */
th_status th_energy_sum(const th_energy_figure *parts, size_t n, th_energy_figure *out);

/* Planning estimate: E_IT = power_w x devices x hours (basis estimate, source
 * "estimate: P x N x hours"); PUE is applied by the footprint like for any figure.
 * Fails on power_w outside (0, 100000], devices outside [1, 10^7], hours outside (0, 10^6]. */
th_status th_energy_estimate(double power_w, double devices, double hours, th_energy_figure *out);

/* ---------------------------------------------------------------------------------
 * the run's energy ledger */

/* The run's energy ledger, pushed to by samples. Three figures are kept side by side and
 * the best one with two readings wins: the energy counter first (differences of the
 * sample's energy_uj through th_energy_counter: a reading that goes down or back in time is
 * rejected and ignored), polled power second (trapezoid rule), a CPU power model last
 * (th_cpu_model_power_uw from cpu_tdp_w and the sample's utilization). Thread-safe (one
 * mutex): samples from the sampler thread, queries from the work loop. */
typedef struct {
    const char *source;  /* sensor name for the figure; NULL or "": the samples' own source */
    th_origin origin;    /* anything but measured (a simulated plant, a replayed trace) makes
                            every figure's basis modeled: it is not measured now */
    double cpu_tdp_w;    /* > 0 enables the model; 0 leaves a run without counter or power
                            without an energy figure */
} th_eco_ledger_config;
typedef struct th_eco_ledger th_eco_ledger;

/* Creates an empty ledger. TH_ERR_INVALID on a NULL config or a cpu_tdp_w outside
 * [0, 2000] W; TH_ERR_NOMEM. *out is NULL on failure; release with th_eco_ledger_free. */
th_status th_eco_ledger_create(const th_eco_ledger_config *c, th_eco_ledger **out);
void th_eco_ledger_free(th_eco_ledger *l);

/* Adds one sample. Fields without their valid bit, negative power, utilization outside
 * [0, 1], counters going down and times going backwards are ignored field by field; a NULL
 * ledger or sample is a no-op. A sample whose origin is not measured makes the figures
 * modeled. */
void th_eco_ledger_add(th_eco_ledger *l, const th_sample *s);

/* IT energy since the first reading up to t_ns, joules: the last figure plus the latest
 * power times the time since the last reading (so a unit shorter than the sampling period
 * is charged its share, not 0 or all). The latest power is the last two counter readings'
 * difference over their interval, the last polled power, or the last modeled power, for
 * whichever figure wins. Monotone: never below a value it returned before, so unit charges
 * (differences of successive calls) are never negative and add up to the last value
 * returned. That equals the final figure (called at the last reading's time) unless the
 * power fell during the last sampling period, in which case the extrapolation already
 * charged up to that period x the fall more. 0 before any reading; a t_ns before the last
 * reading gets the figure at the last reading. */
double th_eco_ledger_energy_at(th_eco_ledger *l, uint64_t t_ns);

/* The winning figure (basis, source, duration from its first to its last reading).
 * TH_ERR_STATE before any figure has two readings; TH_ERR_INVALID on NULL. */
th_status th_eco_ledger_figure(th_eco_ledger *l, th_energy_figure *out);

/* ---------------------------------------------------------------------------------
 * factors */

typedef enum {
    TH_ECO_F_GRID_CO2E = 0,     /* g CO2e / kWh of grid electricity */
    TH_ECO_F_PUE,               /* facility / IT energy, dimensionless */
    TH_ECO_F_WUE_SITE,          /* L / kWh of IT energy, on-site cooling water */
    TH_ECO_F_EWIF,              /* L / kWh of facility energy, consumed at power plants */
    TH_ECO_F_GRID_NOX,          /* g / kWh of grid electricity */
    TH_ECO_F_GRID_SO2,          /* g / kWh */
    TH_ECO_F_GRID_PM25,         /* g / kWh */
    TH_ECO_F_GEN_SHARE,         /* fraction of facility energy from diesel backup generators */
    TH_ECO_F_GEN_NOX,           /* g / kWh of generator output (NOx + NMHC limit) */
    TH_ECO_F_GEN_PM25,          /* g / kWh of generator output (PM limit, all of it PM2.5 or less) */
    TH_ECO_F_GAS_SHARE,         /* fraction of the region's generation from gas (from the mix) */
    TH_ECO_F_METHANE,           /* g CO2e / kWh of gas generation, upstream methane; off by default */
    TH_ECO_F_CAR_YEAR,          /* t CO2e per passenger car-year */
    TH_ECO_F_FOREST_ACRE_YEAR,  /* t CO2 sequestered per acre of US forest a year */
    TH_ECO_F_HOME_ENERGY_YEAR,  /* t CO2e per home's total energy use a year */
    TH_ECO_F_HOME_ELEC_YEAR,    /* t CO2e per home's electricity use a year */
    TH_ECO_F_COUNT
} th_eco_factor_id;

/* Stable snake_case name ("grid_g_per_kwh", "pue", ...) and unit text ("g/kWh"). */
const char *th_eco_factor_name(th_eco_factor_id id);
const char *th_eco_factor_unit(th_eco_factor_id id);

typedef struct {
    double value;
    int available;      /* 0: no sourced value exists; figures needing it are reported unknown */
    char source[256];   /* publication or dataset, or "user: --flag" */
    char year[16];      /* data year or edition, e.g. "2023" */
    char basis[256];    /* accounting basis and caveats; "[unverified]" marks unsourced values */
    char origin[256];   /* where it was read: "data/factors/grid_intensity.csv row 12", "--pue" */
} th_eco_factor;

typedef struct {
    char region[48];       /* region code the factors were resolved for ("US", "WORLD") */
    char region_name[64];
    char preset[48];       /* "own-machine" or "datacenter" */
    th_eco_factor f[TH_ECO_F_COUNT];
    int methane_enabled;   /* 1: add TH_ECO_F_METHANE x gas share to CO2e */
} th_eco_factors;

/* The factor tables, loaded from a directory of CSV files: grid_intensity.csv,
 * generation_mix.csv, ewif_fuel.csv, pollutants.csv, presets.csv, wue_cooling.csv and
 * constants.csv (each file's comment lines describe it; every row has source, year, basis).
 * Opaque. */
typedef struct th_eco_tables th_eco_tables;

/* Loads every table from `dir` (NULL: THERMO_DATA_DIR/factors, or $THERMO_DATA_DIR/factors
 * when that environment variable is set). Strict: a missing file or column, a
 * non-numeric or out-of-range value, or a duplicate key fails with TH_ERR_FORMAT (or
 * TH_ERR_IO) and a message naming the file, row and column. *out is NULL on failure;
 * release with th_eco_tables_free. */
th_status th_eco_tables_load(th_eco_tables **out, const char *dir);
void th_eco_tables_free(th_eco_tables *t);

/* Replaces one table with a user file that has the same columns as one of the default
 * tables; which table is decided by the header. The file is checked as strictly as the
 * defaults; on failure the loaded table is unchanged. */
th_status th_eco_tables_replace(th_eco_tables *t, const char *path);

/* Number of regions in the grid-intensity table and the i-th region code (NULL past the end). */
size_t th_eco_tables_region_count(const th_eco_tables *t);
const char *th_eco_tables_region_code(const th_eco_tables *t, size_t i);

/* Fills `out` for `region` (case-insensitive code from the grid table; NULL = "WORLD") and
 * `preset` ("own-machine": PUE 1.0, on-site water 0; "datacenter": PUE and WUE from the
 * preset table; NULL = "own-machine"). EWIF is computed from the region's generation mix
 * and the per-fuel EWIF table; the gas share comes from the same mix; pollutant factors
 * from the region's row if any (else marked unavailable); generator share 0; methane off.
 * Unknown region or preset: TH_ERR_INVALID naming it. */
th_status th_eco_factors_resolve(const th_eco_tables *t, const char *region, const char *preset, th_eco_factors *out);

/* Sets the on-site WUE from the cooling-type table (wue_cooling.csv: "none",
 * "closed-loop-dry", operator fleet averages, ...). Unknown type: TH_ERR_INVALID listing
 * the known ones. */
th_status th_eco_factors_set_cooling(const th_eco_tables *t, th_eco_factors *f, const char *cooling);

/* Overrides one factor with a user value; `origin` says who set it ("--pue", "api").
 * Range checks (TH_ERR_INVALID naming the factor and the range): grid 0..2000 g/kWh,
 * PUE 1..5, WUE and EWIF 0..20 L/kWh, pollutants 0..100 g/kWh, shares 0..1, methane
 * 0..1000 g/kWh, equivalences (0, 1000] t. On failure the factor is unchanged. */
th_status th_eco_factor_set(th_eco_factors *f, th_eco_factor_id id, double value, const char *origin);

/* ---------------------------------------------------------------------------------
 * footprint */

typedef struct {
    th_energy_figure it;           /* the IT energy and its basis, copied from the input */
    double energy_it_kwh;
    double energy_facility_kwh;    /* IT x PUE */
    double energy_grid_kwh;        /* facility x (1 - generator share) */
    double energy_generator_kwh;   /* facility x generator share */
    double co2e_g;                 /* facility x grid intensity (+ methane when enabled) */
    double co2e_methane_g;         /* the upstream-methane part of co2e_g (0 when off) */
    double water_onsite_l;         /* IT x WUE_site */
    double water_offsite_l;        /* facility x EWIF */
    double nox_g, so2_g, pm25_g;   /* grid part + generator part; NaN when a needed factor is unavailable */
    double gen_nox_g, gen_pm25_g;  /* the generator part alone */
    double cars_year, forest_acres, homes_energy_year, homes_electricity_year;
    th_eco_factors factors;        /* every factor that applied, with its source */
} th_eco_footprint;

/* Computes the footprint of `it` under `f`. Fails (TH_ERR_INVALID) on a negative or
 * non-finite energy or on an unavailable grid intensity or PUE. Generator-supplied energy
 * carries grid CO2e and water too (the genset's own fuel is not modeled separately). */
th_status th_eco_footprint_compute(const th_energy_figure *it, const th_eco_factors *f, th_eco_footprint *out);

/* Prices per joule of IT energy, worked out once when the factors are resolved, so that a
 * unit of work costs energy x price (th_guard_cost_priced) without a footprint per unit.
 *   g_co2e_per_j = PUE x (grid + (1 - generator share) x gas share x methane, if enabled) / J_PER_KWH
 *   ml_water_per_j = (WUE_site + PUE x EWIF) x 1000 / J_PER_KWH
 * exactly what th_eco_footprint_compute charges. With EWIF unavailable water_known is 0
 * and ml_water_per_j holds the on-site part alone. Fails like th_eco_footprint_compute on
 * an unavailable grid intensity, PUE or on-site WUE, or methane on without a gas share. */
typedef struct {
    double g_co2e_per_j, ml_water_per_j;
    int water_known;
} th_eco_price;
th_status th_eco_price_of(const th_eco_factors *f, th_eco_price *out);

/* Per-unit figures (per token, per step): every extensive quantity of `fp` divided by
 * `units` (> 0, finite); factors and basis are kept. */
th_status th_eco_footprint_per_unit(const th_eco_footprint *fp, double units, th_eco_footprint *out);

/* ---------------------------------------------------------------------------------
 * reports */

typedef enum { TH_ECO_TEXT_SUMMARY = 0, TH_ECO_TEXT_FULL = 1 } th_eco_text_style;

/* A human-readable block written into buf (NUL-terminated). FULL: energy with its basis,
 * CO2e, water, pollutants, equivalences, then each factor with its source and year.
 * SUMMARY: two lines, the energy with its basis and source, then CO2e with the region, the
 * grid factor's value, source and year and the PUE, water and pollutants (each line
 * indented by two spaces, ending in '\n'). *len (optional) gets the length needed
 * excluding the NUL; TH_ERR_INVALID if it did not fit or on an unknown style. buf NULL with
 * cap 0 only measures (TH_OK). */
th_status th_eco_report_text(const th_eco_footprint *fp, th_eco_text_style style, char *buf, size_t cap, size_t *len);

/* A quantity in engineering notation, three significant digits: 2410 J -> "2.41 kJ",
 * 2.4e-7 g -> "240 ng", 3e6 g -> "3 t"; NaN -> "unknown". Always NUL-terminated. */
void th_eco_fmt_si(char *buf, size_t cap, double value, const char *unit);

/* The short name of a factor's source for one-line summaries: its text up to the first
 * ',', '(' or ';', cut at a word to at most 32 characters ("IEA", "Uptime Institute Global
 * Data Center..."). Always NUL-terminated. */
void th_eco_source_short(const th_eco_factor *x, char *buf, size_t cap);

/* The footprint as a JSON object (jansson json_t *, returned as void * so this header does
 * not pull in jansson): keys energy_it_kwh, energy_facility_kwh, co2e_kg, water_onsite_l,
 * water_offsite_l, nox_g, so2_g, pm25_g (null when unknown), cars_year, forest_acres,
 * homes_energy_year, homes_electricity_year, basis, energy_source, duration_s, region,
 * preset, methane_enabled and factors {name: {value, unit, source, year, basis, origin}}.
 * `basis_override` (NULL = the energy's basis name) replaces the "basis" value. The caller
 * owns the object (json_decref). */
th_status th_eco_report_json(const th_eco_footprint *fp, const char *basis_override, void **json_out);

/* Run metadata for one emissions.csv row; NULL strings and NaN numbers are written empty. */
typedef struct {
    const char *timestamp;       /* ISO 8601; NULL = now, UTC */
    const char *project_name, *run_id, *experiment_id;
    double cpu_power_w, gpu_power_w, ram_power_w;          /* mean power */
    double cpu_energy_kwh, gpu_energy_kwh, ram_energy_kwh; /* IT energy per component */
    double cpu_utilization_percent, ram_utilization_percent, ram_used_gb;
    const char *country_name, *country_iso_code, *region, *cloud_provider, *cloud_region;
    const char *os, *python_version, *codecarbon_version, *cpu_model, *gpu_model, *tracking_mode;
    double cpu_count, gpu_count, longitude, latitude, ram_total_size_gb;
    int on_cloud;
    /* the columns after CodeCarbon's: embodied and storage kg CO2e (low, central, high),
     * abiotic depletion kg Sb-eq, the seconds the hardware was held */
    double embodied_kg_low, embodied_kg, embodied_kg_high;
    double storage_kg_low, storage_kg, storage_kg_high;
    double adp_kg_sb_eq, hardware_held_s;
} th_eco_emissions_row;

/* Fills `row` with NULL strings and NaN numbers (so unknown fields come out empty). */
void th_eco_emissions_row_init(th_eco_emissions_row *row);

/* The header written by th_eco_emissions_csv_append: CodeCarbon's emissions.csv columns
 * (mlco2/codecarbon output_methods/emissions_data.py, v3), in its order, then ours:
 * embodied_kg_low, embodied_kg, embodied_kg_high, storage_kg_low, storage_kg,
 * storage_kg_high, adp_kg_sb_eq, hardware_held_s. */
const char *th_eco_emissions_csv_header(void);

/* Appends one row for `fp` to the CSV at `path`: duration s, emissions kg CO2e,
 * emissions_rate kg/s, power W, energy kWh (energy_consumed = facility energy, PUE
 * included), water_consumed L (on-site, as CodeCarbon), pue, wue. A new or empty file gets
 * the header first. An existing file must start with exactly that header (or with
 * CodeCarbon's alone: then the row has CodeCarbon's columns only) and end with a newline,
 * else TH_ERR_FORMAT naming the first differing column and nothing is written.
 * The row goes out in one write on an O_APPEND descriptor, so the file never holds a
 * partial row from us unless the disk fills (then TH_ERR_IO). */
th_status th_eco_emissions_csv_append(const char *path, const th_eco_footprint *fp, const th_eco_emissions_row *row);

/* ---------------------------------------------------------------------------------
 * embodied carbon, storage, and ranges (issue 21)
 *
 * The hardware's manufacturing footprint is spread over its service life and charged to a
 * run by the time the run held it (wall time, pacing waits included: a paced run holds the
 * hardware longer). Kept files (checkpoints, token shards, caches) are charged their bytes x
 * time x energy per TB-year x replicas x PUE, priced at the grid factor, plus their share of
 * the storage's manufacturing. Factors disagree between sources, so every such figure is a
 * range: low, central, high; sums add the ends (the interval of the sum). */

typedef struct {
    double lo, mid, hi; /* mid NaN: unknown */
} th_eco_range;

/* A point value as a range (lo = mid = hi = v). */
th_eco_range th_eco_range_point(double v);
/* a + b, end by end; unknown if either is. */
th_eco_range th_eco_range_add(th_eco_range a, th_eco_range b);
/* a x k for k >= 0 (a negative or non-finite k gives unknown). */
th_eco_range th_eco_range_scale(th_eco_range a, double k);
/* a x b for non-negative ranges: [a.lo b.lo, a.mid b.mid, a.hi b.hi]. */
th_eco_range th_eco_range_mul(th_eco_range a, th_eco_range b);
/* 1 when the range is worth printing as an interval: hi > 1.25 x lo (or lo 0 < hi). */
int th_eco_range_wide(th_eco_range r);
/* "12.3 g" or, when wide, "12.3 g (4.1 to 38 g)"; unknown -> "unknown". */
void th_eco_fmt_range(char *buf, size_t cap, th_eco_range r, const char *unit);

/* One row of data/factors/embodied.csv: the manufacturing footprint of one unit of a device
 * (a package, a card, a server, a GB, a TB), its abiotic depletion (NaN: no source) and the
 * default service life. */
typedef struct {
    char device[32];     /* row key: "cpu-server", "dram", "h100" */
    char cls[16];        /* cpu, dram, ssd, hdd, gpu, server */
    char unit[16];       /* package, GB, TB, card, server */
    char match[96];      /* '|'-separated name substrings that map a device name to the row */
    th_eco_range kg_co2e;
    double kg_sb_eq;
    double life_y;
    char source[320], year[16], basis[320];
    char origin[256];    /* "data/factors/embodied.csv row 9" */
} th_eco_embodied_row;

/* One row of data/factors/storage_energy.csv: kWh per TB-year kept (IT energy). */
typedef struct {
    char medium[16];     /* ssd, hdd, dram */
    th_eco_range kwh_per_tb_year;
    char source[256], year[16], basis[256], origin[256];
} th_eco_storage_row;

typedef struct th_eco_embodied_table th_eco_embodied_table;

/* Loads embodied.csv and storage_energy.csv from `dir` (NULL: the factor directory
 * th_eco_tables_load uses). Strict like the other tables: a row without a source, year or
 * basis, a non-number, low > central > high out of order, a negative value or a life
 * outside (0, 50] years, a duplicate key or an unknown class fails with TH_ERR_FORMAT naming
 * the file, row and column. *out NULL on failure; release with th_eco_embodied_free. */
th_status th_eco_embodied_load(const char *dir, th_eco_embodied_table **out);
void th_eco_embodied_free(th_eco_embodied_table *t);

/* The row keyed `device` (case-insensitive), or the first of class `cls` (NULL: any) whose
 * match list has a substring of `name`; NULL when none does. */
const th_eco_embodied_row *th_eco_embodied_find(const th_eco_embodied_table *t, const char *cls, const char *name);

#define TH_ECO_HW_MAX 16

/* One device the work holds: `count` units of its row (packages, cards, GB, TB). */
typedef struct {
    char name[80];       /* as named or detected: "AMD EPYC 7B13", "24 GB", "h100" */
    char cls[16];
    char how[64];        /* "host: /proc/cpuinfo", "host: /proc/meminfo", "--hardware" */
    int known;           /* 0: no factor row maps it: its figure is unknown, never 0 */
    double count;
    double life_y;       /* the row's, or the override */
    char life_how[32];   /* "table" or "--hardware gpu-life-y" */
    th_eco_embodied_row row;
} th_eco_device;

typedef struct {
    th_eco_device dev[TH_ECO_HW_MAX];
    size_t n;
    double share;        /* fraction of the devices the work holds (a VM slice); default 1 */
    double replicas;     /* copies of every kept byte; NaN: the default for the preset */
    char medium[16];     /* where kept files live: ssd (default), hdd */
    th_eco_storage_row medium_energy;
    th_eco_embodied_row medium_embodied;
    int drive_named;     /* a device of the medium's class is listed: it carries the first copy */
    char spec[256];      /* the spec as given, or "host" */
} th_eco_hardware;

/* Fills `out` from a spec: comma-separated entries
 *   cpu:NAME[*N]  gpu:NAME[*N]  server:NAME[*N]   (a row key or a name its match list maps)
 *   dram-gb:X  ssd-tb:X  hdd-tb:X                 (sizes > 0)
 *   host                                           (the host's CPU and memory, as below)
 *   share:F  replicas:N  store:ssd|hdd  CLASS-life-y:Y   (F in (0, 1], N in [1, 100], Y in (0, 50])
 * spec NULL or "" means "host": the CPU `host_cpu` (th_cpu_name; NULL or "": none) and
 * `host_dram_gb` of memory (<= 0: none). A host CPU no row maps is kept as unknown; a named
 * device no row maps, an unknown key, a negative or zero size, count or life fail with
 * TH_ERR_INVALID naming the entry (and the known devices). */
th_status th_eco_hardware_parse(const th_eco_embodied_table *t, const char *spec, const char *host_cpu,
                                double host_dram_gb, th_eco_hardware *out);

/* MemTotal of /proc/meminfo in GB (1e9 bytes); NaN when unreadable. */
double th_eco_host_dram_gb(void);

/* The embodied charge of holding `hw` for held_s seconds. */
typedef struct {
    double held_s;
    th_eco_range dev_g[TH_ECO_HW_MAX];  /* per device, g CO2e; mid NaN for unknown ones */
    double dev_adp_g[TH_ECO_HW_MAX];    /* g Sb-eq; NaN where no source gives it */
    th_eco_range total_g;               /* the known devices */
    double adp_g;                       /* the devices with ADP */
    size_t n_unknown, n_no_adp;
} th_eco_embodied;

/* g = kg x 1000 x count x share x held_s / (life_y x 365.25 x 86400), each device; fails
 * (TH_ERR_INVALID) on a negative or non-finite held_s or a NULL argument. */
th_status th_eco_embodied_compute(const th_eco_hardware *hw, double held_s, th_eco_embodied *out);

/* Files kept by the work, by kind. */
#define TH_ECO_KEPT_MAX 8
typedef struct {
    struct {
        char what[32];   /* "checkpoints", "token shards", "teacher caches", "replay reservoirs", "model", "other" */
        double bytes;
    } item[TH_ECO_KEPT_MAX];
    size_t n;
    double bytes;
} th_eco_kept;

/* Adds `bytes` (>= 0, finite; else TH_ERR_INVALID) to the kind `what` (a new kind past
 * TH_ECO_KEPT_MAX goes to "other"). */
th_status th_eco_kept_add(th_eco_kept *k, const char *what, double bytes);

/* Walks `dir` (recursively, not following links) and adds each regular file by kind, from
 * its name: checkpoint*, *.ckpt -> checkpoints; *.bin under data/ or named train/val ->
 * token shards; a path with "teacher" or "cache" -> teacher caches; "replay" -> replay
 * reservoirs; model/ and *.safetensors -> model; the rest -> other. A missing dir adds
 * nothing (TH_OK); an unreadable one fails with TH_ERR_IO naming it. */
th_status th_eco_kept_scan(th_eco_kept *k, const char *dir);

/* What keeping `bytes` on hw's medium for held_s costs. */
typedef struct {
    double bytes, replicas, held_s;
    th_eco_range energy_kwh;   /* facility energy: TB x replicas x kWh/TB-yr x years x PUE */
    th_eco_range co2e_g;       /* energy x grid intensity */
    th_eco_range embodied_g;   /* TB x copies charged x kg/TB x 1000 x held / life */
    th_eco_range total_g;
    double copies_embodied;    /* replicas, less the one the named drive already carries */
} th_eco_storage_charge;

/* Fails (TH_ERR_INVALID) on negative bytes, held_s or grid, replicas < 1 or PUE < 1. */
th_status th_eco_storage_charge_compute(const th_eco_hardware *hw, double bytes, double replicas, double held_s,
                                        double pue, double grid_g_per_kwh, th_eco_storage_charge *out);

#endif
