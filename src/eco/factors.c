/* factors.c: the factor tables (CSV files in data/factors/) and their resolution into one set of
 * factors for a region. Every row carries source, year and basis; every resolved factor
 * remembers the file and row it came from, or the flag that overrode it. Loading is
 * strict (DESIGN.md invariant 5): a bad table is rejected whole with a message naming the
 * file, row and column, and nothing already loaded changes. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eco/eco_internal.h"
#include "thermo/eco.h"

#ifndef THERMO_DATA_DIR
#define THERMO_DATA_DIR "data"
#endif

/* ---------------------------------------------------------------------------------
 * factor names and units */

static const struct {
    const char *name, *unit;
} factor_info[TH_ECO_F_COUNT] = {
    [TH_ECO_F_GRID_CO2E] = {"grid_g_per_kwh", "g CO2e/kWh"},
    [TH_ECO_F_PUE] = {"pue", "ratio"},
    [TH_ECO_F_WUE_SITE] = {"wue_site_l_per_kwh", "L/kWh IT"},
    [TH_ECO_F_EWIF] = {"ewif_l_per_kwh", "L/kWh"},
    [TH_ECO_F_GRID_NOX] = {"grid_nox_g_per_kwh", "g/kWh"},
    [TH_ECO_F_GRID_SO2] = {"grid_so2_g_per_kwh", "g/kWh"},
    [TH_ECO_F_GRID_PM25] = {"grid_pm25_g_per_kwh", "g/kWh"},
    [TH_ECO_F_GEN_SHARE] = {"generator_share", "fraction"},
    [TH_ECO_F_GEN_NOX] = {"generator_nox_g_per_kwh", "g/kWh"},
    [TH_ECO_F_GEN_PM25] = {"generator_pm25_g_per_kwh", "g/kWh"},
    [TH_ECO_F_GAS_SHARE] = {"gas_share", "fraction"},
    [TH_ECO_F_METHANE] = {"methane_g_per_kwh_gas", "g CO2e/kWh gas"},
    [TH_ECO_F_CAR_YEAR] = {"car_t_per_year", "t CO2e"},
    [TH_ECO_F_FOREST_ACRE_YEAR] = {"forest_t_per_acre_year", "t CO2"},
    [TH_ECO_F_HOME_ENERGY_YEAR] = {"home_energy_t_per_year", "t CO2e"},
    [TH_ECO_F_HOME_ELEC_YEAR] = {"home_electricity_t_per_year", "t CO2e"},
};

/* Accepted range of each factor, for tables and overrides alike. */
static const struct {
    double lo, hi;
    int lo_open;
} factor_range[TH_ECO_F_COUNT] = {
    [TH_ECO_F_GRID_CO2E] = {0, 2000, 0},      [TH_ECO_F_PUE] = {1, 5, 0},
    [TH_ECO_F_WUE_SITE] = {0, 20, 0},         [TH_ECO_F_EWIF] = {0, 20, 0},
    [TH_ECO_F_GRID_NOX] = {0, 100, 0},        [TH_ECO_F_GRID_SO2] = {0, 100, 0},
    [TH_ECO_F_GRID_PM25] = {0, 100, 0},       [TH_ECO_F_GEN_SHARE] = {0, 1, 0},
    [TH_ECO_F_GEN_NOX] = {0, 100, 0},         [TH_ECO_F_GEN_PM25] = {0, 100, 0},
    [TH_ECO_F_GAS_SHARE] = {0, 1, 0},         [TH_ECO_F_METHANE] = {0, 1000, 0},
    [TH_ECO_F_CAR_YEAR] = {0, 1000, 1},       [TH_ECO_F_FOREST_ACRE_YEAR] = {0, 1000, 1},
    [TH_ECO_F_HOME_ENERGY_YEAR] = {0, 1000, 1}, [TH_ECO_F_HOME_ELEC_YEAR] = {0, 1000, 1},
};

const char *th_eco_factor_name(th_eco_factor_id id) {
    return (unsigned)id < TH_ECO_F_COUNT ? factor_info[id].name : "unknown";
}

const char *th_eco_factor_unit(th_eco_factor_id id) {
    return (unsigned)id < TH_ECO_F_COUNT ? factor_info[id].unit : "";
}

static int in_range(th_eco_factor_id id, double v) {
    if (!isfinite(v)) return 0;
    if (factor_range[id].lo_open ? v <= factor_range[id].lo : v < factor_range[id].lo) return 0;
    return v <= factor_range[id].hi;
}

th_status th_eco_factor_set(th_eco_factors *f, th_eco_factor_id id, double value, const char *origin) {
    if (!f || (unsigned)id >= TH_ECO_F_COUNT) return th_fail(TH_ERR_INVALID, "factor override: bad arguments");
    const char *who = origin && *origin ? origin : "api";
    if (!in_range(id, value))
        return th_fail(TH_ERR_INVALID, "%s: %s %g is outside the accepted range %s%g, %g] %s", who, factor_info[id].name,
                       value, factor_range[id].lo_open ? "(" : "[", factor_range[id].lo, factor_range[id].hi,
                       factor_info[id].unit);
    th_eco_factor *x = &f->f[id];
    x->value = value;
    x->available = 1;
    snprintf(x->source, sizeof x->source, "user: %s", who);
    snprintf(x->year, sizeof x->year, "n/a");
    snprintf(x->basis, sizeof x->basis, "user override");
    snprintf(x->origin, sizeof x->origin, "%s", who);
    return TH_OK;
}

/* ---------------------------------------------------------------------------------
 * table specifications */

typedef enum { T_GRID, T_MIX, T_EWIF, T_POLLUTANTS, T_PRESETS, T_COOLING, T_CONSTANTS, T_COUNT } table_kind;

#define MAX_NUM 8
#define MIX_FUELS 8

typedef struct {
    const char *name;
    double lo, hi;
    int nullable; /* "NA" accepted: no sourced value */
} num_spec;

typedef struct {
    const char *file;
    const char *key[2]; /* one or two key columns */
    const char *text;   /* one free-text column, or NULL */
    num_spec num[MAX_NUM];
    size_t nnum;
} table_spec;

static const char *mix_fuels[MIX_FUELS] = {"coal", "gas", "oil", "nuclear", "hydro", "wind", "solar", "other"};

static const table_spec specs[T_COUNT] = {
    [T_GRID] = {"grid_intensity.csv", {"region", NULL}, "name", {{"g_co2e_per_kwh", 0, 2000, 0}}, 1},
    [T_MIX] = {"generation_mix.csv",
               {"region", NULL},
               NULL,
               {{"coal", 0, 1, 0},
                {"gas", 0, 1, 0},
                {"oil", 0, 1, 0},
                {"nuclear", 0, 1, 0},
                {"hydro", 0, 1, 0},
                {"wind", 0, 1, 0},
                {"solar", 0, 1, 0},
                {"other", 0, 1, 0}},
               8},
    [T_EWIF] = {"ewif_fuel.csv", {"fuel", NULL}, NULL, {{"l_per_kwh", 0, 20, 0}}, 1},
    [T_POLLUTANTS] = {"pollutants.csv",
                      {"region", NULL},
                      NULL,
                      {{"nox_g_per_kwh", 0, 100, 1}, {"so2_g_per_kwh", 0, 100, 1}, {"pm25_g_per_kwh", 0, 100, 1}},
                      3},
    [T_PRESETS] = {"presets.csv", {"preset", "factor"}, NULL, {{"value", 0, 20, 0}}, 1},
    [T_COOLING] = {"wue_cooling.csv", {"cooling", NULL}, NULL, {{"l_per_kwh", 0, 20, 0}}, 1},
    [T_CONSTANTS] = {"constants.csv", {"name", NULL}, "unit", {{"value", 0, 1000, 0}}, 1},
};

/* Names and units constants.csv must define, and the factor each one fills. */
static const struct {
    const char *name, *unit;
    th_eco_factor_id id;
} constant_names[] = {
    {"generator_nox_g_per_kwh", "g/kWh", TH_ECO_F_GEN_NOX},
    {"generator_pm25_g_per_kwh", "g/kWh", TH_ECO_F_GEN_PM25},
    {"methane_g_co2e_per_kwh_gas", "g CO2e/kWh", TH_ECO_F_METHANE},
    {"car_t_co2e_per_year", "t CO2e", TH_ECO_F_CAR_YEAR},
    {"forest_t_co2_per_acre_year", "t CO2", TH_ECO_F_FOREST_ACRE_YEAR},
    {"home_energy_t_co2e_per_year", "t CO2e", TH_ECO_F_HOME_ENERGY_YEAR},
    {"home_electricity_t_co2e_per_year", "t CO2e", TH_ECO_F_HOME_ELEC_YEAR},
};
#define N_CONSTANTS (sizeof constant_names / sizeof constant_names[0])

typedef struct {
    char key[2][48];
    char text[64];
    double v[MAX_NUM];
    int avail[MAX_NUM];
    char source[256], year[16], basis[256];
    size_t line;
} row_t;

typedef struct {
    row_t *rows;
    size_t n;
    char path[512];
} table_t;

struct th_eco_tables {
    table_t t[T_COUNT];
};

static void table_free(table_t *t) {
    th_free(t->rows);
    memset(t, 0, sizeof *t);
}

/* Does the header hold exactly the columns of `spec` (in any order)? */
static int header_matches(const th_csv *c, const table_spec *s) {
    size_t want = 3 + s->nnum + (s->key[1] ? 2 : 1) + (s->text ? 1 : 0);
    if (c->ncols != want) return 0;
    if (th_csv_col(c, "source") < 0 || th_csv_col(c, "year") < 0 || th_csv_col(c, "basis") < 0) return 0;
    for (int k = 0; k < 2; k++)
        if (s->key[k] && th_csv_col(c, s->key[k]) < 0) return 0;
    if (s->text && th_csv_col(c, s->text) < 0) return 0;
    for (size_t i = 0; i < s->nnum; i++)
        if (th_csv_col(c, s->num[i].name) < 0) return 0;
    return 1;
}

static th_status missing_column(const th_csv *c, const table_spec *s) {
    const char *need[3 + MAX_NUM + 3];
    size_t n = 0;
    need[n++] = s->key[0];
    if (s->key[1]) need[n++] = s->key[1];
    if (s->text) need[n++] = s->text;
    for (size_t i = 0; i < s->nnum; i++) need[n++] = s->num[i].name;
    need[n++] = "source";
    need[n++] = "year";
    need[n++] = "basis";
    for (size_t i = 0; i < n; i++)
        if (th_csv_col(c, need[i]) < 0) return th_fail(TH_ERR_FORMAT, "%s: missing column '%s'", c->path, need[i]);
    for (size_t j = 0; j < c->ncols; j++) {
        int known = 0;
        for (size_t i = 0; i < n; i++) known |= strcmp(c->header[j], need[i]) == 0;
        if (!known) return th_fail(TH_ERR_FORMAT, "%s: unknown column '%s' (column %zu)", c->path, c->header[j], j + 1);
    }
    return th_fail(TH_ERR_FORMAT, "%s: header does not match %s", c->path, s->file);
}

static int year_ok(const char *year, const char *basis) {
    if (strcmp(year, "n/a") == 0) return strstr(basis, "definition") != NULL;
    if (strcmp(year, "unknown") == 0) return strstr(basis, "[unverified") != NULL;
    if (strlen(year) != 4) return 0;
    for (int i = 0; i < 4; i++)
        if (!isdigit((unsigned char)year[i])) return 0;
    int y = atoi(year);
    return y >= 1990 && y <= 2100;
}

static int parse_number(const char *s, double *out) {
    if (!*s || isspace((unsigned char)*s)) return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end != '\0' || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

/* Parses and checks every row of `c` as a `kind` table into `out`. */
static th_status table_parse(const th_csv *c, table_kind kind, table_t *out) {
    const table_spec *s = &specs[kind];
    memset(out, 0, sizeof *out);
    if (!header_matches(c, s)) return missing_column(c, s);
    if (c->nrows == 0) return th_fail(TH_ERR_FORMAT, "%s: no rows", c->path);
    out->rows = th_calloc(c->nrows, sizeof *out->rows);
    if (!out->rows) return th_fail(TH_ERR_NOMEM, "%s: out of memory", c->path);
    snprintf(out->path, sizeof out->path, "%s", c->path);
    int csrc = th_csv_col(c, "source"), cyear = th_csv_col(c, "year"), cbasis = th_csv_col(c, "basis");
    for (size_t r = 0; r < c->nrows; r++) {
        row_t *row = &out->rows[r];
        size_t line = c->line[r];
        row->line = line;
        for (int k = 0; k < 2 && s->key[k]; k++) {
            int col = th_csv_col(c, s->key[k]);
            const char *v = th_csv_cell(c, r, (size_t)col);
            if (!*v || strlen(v) >= sizeof row->key[k])
                return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %d (%s): key must be 1 to %zu characters", c->path,
                               line, col + 1, s->key[k], sizeof row->key[k] - 1);
            snprintf(row->key[k], sizeof row->key[k], "%s", v);
        }
        if (s->text) snprintf(row->text, sizeof row->text, "%s", th_csv_cell(c, r, (size_t)th_csv_col(c, s->text)));
        for (size_t i = 0; i < s->nnum; i++) {
            int col = th_csv_col(c, s->num[i].name);
            const char *v = th_csv_cell(c, r, (size_t)col);
            if (s->num[i].nullable && strcmp(v, "NA") == 0) {
                row->avail[i] = 0;
                continue;
            }
            double x;
            if (!parse_number(v, &x))
                return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %d (%s): '%s' is not a number%s", c->path, line,
                               col + 1, s->num[i].name, v, s->num[i].nullable ? " or NA" : "");
            if (x < s->num[i].lo || x > s->num[i].hi)
                return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %d (%s): %g is outside [%g, %g]", c->path, line,
                               col + 1, s->num[i].name, x, s->num[i].lo, s->num[i].hi);
            row->v[i] = x;
            row->avail[i] = 1;
        }
        const char *src = th_csv_cell(c, r, (size_t)csrc), *year = th_csv_cell(c, r, (size_t)cyear),
                   *basis = th_csv_cell(c, r, (size_t)cbasis);
        if (!*src) return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %d (source): empty; every value needs a source", c->path, line, csrc + 1);
        if (!*basis) return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %d (basis): empty", c->path, line, cbasis + 1);
        if (!year_ok(year, basis))
            return th_fail(TH_ERR_FORMAT,
                           "%s: row %zu, column %d (year): '%s' is not a year (1990-2100; 'n/a' only for a definition, "
                           "'unknown' only with [unverified] in the basis)",
                           c->path, line, cyear + 1, year);
        snprintf(row->source, sizeof row->source, "%s", src);
        snprintf(row->year, sizeof row->year, "%s", year);
        snprintf(row->basis, sizeof row->basis, "%s", basis);
        for (size_t q = 0; q < r; q++) {
            const row_t *o = &out->rows[q];
            if (strcasecmp(o->key[0], row->key[0]) == 0 && (!s->key[1] || strcasecmp(o->key[1], row->key[1]) == 0))
                return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %d (%s): duplicate key '%s%s%s' (first at row %zu)",
                               c->path, line, th_csv_col(c, s->key[0]) + 1, s->key[0], row->key[0], s->key[1] ? "/" : "",
                               s->key[1] ? row->key[1] : "", o->line);
        }
    }
    out->n = c->nrows;
    return TH_OK;
}

/* Checks that need a whole table: mix shares sum to 1, every fuel has an EWIF, presets
 * define PUE and WUE with sane values, constants are complete with the right units. */
static th_status table_check(table_t *t, table_kind kind) {
    if (kind == T_MIX) {
        for (size_t r = 0; r < t->n; r++) {
            double sum = 0;
            for (int i = 0; i < MIX_FUELS; i++) sum += t->rows[r].v[i];
            if (fabs(sum - 1.0) > 0.02)
                return th_fail(TH_ERR_FORMAT, "%s: row %zu: shares sum to %.4f, expected 1 (+/- 0.02)", t->path,
                               t->rows[r].line, sum);
        }
    } else if (kind == T_EWIF) {
        for (int i = 0; i < MIX_FUELS; i++) {
            int found = 0;
            for (size_t r = 0; r < t->n; r++) found |= strcmp(t->rows[r].key[0], mix_fuels[i]) == 0;
            if (!found) return th_fail(TH_ERR_FORMAT, "%s: no row for fuel '%s'", t->path, mix_fuels[i]);
        }
        if (t->n != MIX_FUELS) {
            for (size_t r = 0; r < t->n; r++) {
                int known = 0;
                for (int i = 0; i < MIX_FUELS; i++) known |= strcmp(t->rows[r].key[0], mix_fuels[i]) == 0;
                if (!known)
                    return th_fail(TH_ERR_FORMAT, "%s: row %zu: unknown fuel '%s' (coal, gas, oil, nuclear, hydro, wind, solar, other)",
                                   t->path, t->rows[r].line, t->rows[r].key[0]);
            }
        }
    } else if (kind == T_PRESETS) {
        for (size_t r = 0; r < t->n; r++) {
            const row_t *row = &t->rows[r];
            th_eco_factor_id id;
            if (strcmp(row->key[1], "pue") == 0)
                id = TH_ECO_F_PUE;
            else if (strcmp(row->key[1], "wue_site") == 0)
                id = TH_ECO_F_WUE_SITE;
            else
                return th_fail(TH_ERR_FORMAT, "%s: row %zu, column factor: '%s' must be pue or wue_site", t->path, row->line, row->key[1]);
            if (!in_range(id, row->v[0]))
                return th_fail(TH_ERR_FORMAT, "%s: row %zu, column value: %s %g is outside [%g, %g]", t->path, row->line,
                               row->key[1], row->v[0], factor_range[id].lo, factor_range[id].hi);
            const char *other = id == TH_ECO_F_PUE ? "wue_site" : "pue";
            int found = 0;
            for (size_t q = 0; q < t->n; q++)
                found |= strcasecmp(t->rows[q].key[0], row->key[0]) == 0 && strcmp(t->rows[q].key[1], other) == 0;
            if (!found) return th_fail(TH_ERR_FORMAT, "%s: preset '%s' has no %s row", t->path, row->key[0], other);
        }
    } else if (kind == T_CONSTANTS) {
        for (size_t r = 0; r < t->n; r++) {
            const row_t *row = &t->rows[r];
            size_t k = 0;
            while (k < N_CONSTANTS && strcmp(constant_names[k].name, row->key[0]) != 0) k++;
            if (k == N_CONSTANTS) return th_fail(TH_ERR_FORMAT, "%s: row %zu, column name: unknown constant '%s'", t->path, row->line, row->key[0]);
            if (strcmp(row->text, constant_names[k].unit) != 0)
                return th_fail(TH_ERR_FORMAT, "%s: row %zu, column unit: '%s' must be '%s'", t->path, row->line, row->text, constant_names[k].unit);
            if (!in_range(constant_names[k].id, row->v[0]))
                return th_fail(TH_ERR_FORMAT, "%s: row %zu, column value: %g is outside the range of %s", t->path,
                               row->line, row->v[0], row->key[0]);
        }
        for (size_t k = 0; k < N_CONSTANTS; k++) {
            int found = 0;
            for (size_t r = 0; r < t->n; r++) found |= strcmp(t->rows[r].key[0], constant_names[k].name) == 0;
            if (!found) return th_fail(TH_ERR_FORMAT, "%s: no row for constant '%s'", t->path, constant_names[k].name);
        }
    }
    return TH_OK;
}

static th_status table_load(const char *path, table_kind kind, table_t *out) {
    th_csv c;
    th_status st = th_csv_read(path, &c);
    if (st != TH_OK) return st;
    st = table_parse(&c, kind, out);
    if (st == TH_OK) st = table_check(out, kind);
    if (st != TH_OK) table_free(out);
    th_csv_free(&c);
    return st;
}

static const char *default_dir(char *buf, size_t cap) {
    const char *env = getenv("THERMO_DATA_DIR");
    snprintf(buf, cap, "%s/factors", env && *env ? env : THERMO_DATA_DIR);
    return buf;
}

th_status th_eco_tables_load(th_eco_tables **out, const char *dir) {
    if (!out) return th_fail(TH_ERR_INVALID, "eco tables: NULL output");
    *out = NULL;
    char dbuf[1024];
    if (!dir) dir = default_dir(dbuf, sizeof dbuf);
    th_eco_tables *t = th_calloc(1, sizeof *t);
    if (!t) return th_fail(TH_ERR_NOMEM, "eco tables: out of memory");
    for (int k = 0; k < T_COUNT; k++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", dir, specs[k].file);
        th_status st = table_load(path, (table_kind)k, &t->t[k]);
        if (st != TH_OK) {
            th_eco_tables_free(t);
            return st;
        }
    }
    *out = t;
    return TH_OK;
}

void th_eco_tables_free(th_eco_tables *t) {
    if (!t) return;
    for (int k = 0; k < T_COUNT; k++) table_free(&t->t[k]);
    th_free(t);
}

th_status th_eco_tables_replace(th_eco_tables *t, const char *path) {
    if (!t || !path) return th_fail(TH_ERR_INVALID, "eco tables: NULL argument");
    th_csv c;
    th_status st = th_csv_read(path, &c);
    if (st != TH_OK) return st;
    int kind = -1;
    for (int k = 0; k < T_COUNT && kind < 0; k++)
        if (header_matches(&c, &specs[k])) kind = k;
    if (kind < 0) {
        /* Not an exact match: report against the table whose columns it shares most. */
        int best = -1, best_score = 0;
        for (int k = 0; k < T_COUNT; k++) {
            int score = 0;
            for (int i = 0; i < 2; i++) score += specs[k].key[i] && th_csv_col(&c, specs[k].key[i]) >= 0 ? 2 : 0;
            if (specs[k].text) score += th_csv_col(&c, specs[k].text) >= 0;
            for (size_t i = 0; i < specs[k].nnum; i++) score += th_csv_col(&c, specs[k].num[i].name) >= 0;
            if (score > best_score) best_score = score, best = k;
        }
        if (best >= 0 && best_score >= 3)
            st = missing_column(&c, &specs[best]);
        else
            st = th_fail(TH_ERR_FORMAT, "%s: header matches none of the factor tables (grid_intensity, generation_mix, "
                                        "ewif_fuel, pollutants, presets, wue_cooling, constants)", path);
        th_csv_free(&c);
        return st;
    }
    table_t fresh;
    st = table_parse(&c, (table_kind)kind, &fresh);
    if (st == TH_OK) st = table_check(&fresh, (table_kind)kind);
    th_csv_free(&c);
    if (st != TH_OK) {
        table_free(&fresh);
        return st;
    }
    table_free(&t->t[kind]);
    t->t[kind] = fresh;
    return TH_OK;
}

size_t th_eco_tables_region_count(const th_eco_tables *t) { return t ? t->t[T_GRID].n : 0; }

const char *th_eco_tables_region_code(const th_eco_tables *t, size_t i) {
    return t && i < t->t[T_GRID].n ? t->t[T_GRID].rows[i].key[0] : NULL;
}

/* ---------------------------------------------------------------------------------
 * resolution */

static const row_t *find(const table_t *t, const char *k0, const char *k1) {
    for (size_t r = 0; r < t->n; r++)
        if (strcasecmp(t->rows[r].key[0], k0) == 0 && (!k1 || strcasecmp(t->rows[r].key[1], k1) == 0)) return &t->rows[r];
    return NULL;
}

static void from_row(th_eco_factor *x, const table_t *t, const row_t *row, double value) {
    x->value = value;
    x->available = 1;
    snprintf(x->source, sizeof x->source, "%s", row->source);
    snprintf(x->year, sizeof x->year, "%s", row->year);
    snprintf(x->basis, sizeof x->basis, "%s", row->basis);
    snprintf(x->origin, sizeof x->origin, "%.200s row %zu", t->path, row->line);
}

static void unavailable(th_eco_factor *x, const char *why) {
    memset(x, 0, sizeof *x);
    x->value = NAN;
    snprintf(x->source, sizeof x->source, "none");
    snprintf(x->year, sizeof x->year, "n/a");
    snprintf(x->basis, sizeof x->basis, "%s", why);
    snprintf(x->origin, sizeof x->origin, "none");
}

/* EWIF of a region = sum over fuels of share x per-fuel EWIF (Li et al.'s method). */
static void resolve_ewif(const th_eco_tables *t, const char *region, th_eco_factors *out) {
    const table_t *mix = &t->t[T_MIX], *ew = &t->t[T_EWIF];
    const row_t *m = find(mix, region, NULL);
    if (!m) {
        char why[200];
        snprintf(why, sizeof why, "no generation mix for region %s; off-site water unknown (set it with --ewif)", region);
        unavailable(&out->f[TH_ECO_F_EWIF], why);
        unavailable(&out->f[TH_ECO_F_GAS_SHARE], why);
        return;
    }
    double ewif = 0;
    for (int i = 0; i < MIX_FUELS; i++) ewif += m->v[i] * find(ew, mix_fuels[i], NULL)->v[0];
    th_eco_factor *x = &out->f[TH_ECO_F_EWIF];
    const row_t *coal = find(ew, "coal", NULL);
    x->value = ewif;
    x->available = 1;
    snprintf(x->source, sizeof x->source, "computed: mix (%.100s) x per-fuel EWIF (%.100s)", m->source, coal->source);
    snprintf(x->year, sizeof x->year, "%s", m->year);
    snprintf(x->basis, sizeof x->basis, "sum of generation share x fuel EWIF; mix basis: %.90s; EWIF basis: %.90s",
             m->basis, coal->basis);
    snprintf(x->origin, sizeof x->origin, "%.120s row %zu x %.120s", mix->path, m->line, ew->path);
    from_row(&out->f[TH_ECO_F_GAS_SHARE], mix, m, m->v[1]);
}

/* The key of row i of a table (user), for th_names_join. */
static const char *row_key_at(size_t i, void *user) {
    const table_t *t = user;
    return i < t->n ? t->rows[i].key[0] : NULL;
}

th_status th_eco_factors_resolve(const th_eco_tables *t, const char *region, const char *preset, th_eco_factors *out) {
    if (!t || !out) return th_fail(TH_ERR_INVALID, "eco factors: NULL argument");
    if (!region) region = "WORLD";
    if (!preset) preset = "own-machine";
    const row_t *g = find(&t->t[T_GRID], region, NULL);
    if (!g) {
        char list[600];
        th_names_join(list, sizeof list, row_key_at, (void *)&t->t[T_GRID], ", ");
        return th_fail(TH_ERR_INVALID, "unknown region '%s' (known: %s)", region, list);
    }
    const row_t *pp = find(&t->t[T_PRESETS], preset, "pue"), *pw = find(&t->t[T_PRESETS], preset, "wue_site");
    if (!pp || !pw) return th_fail(TH_ERR_INVALID, "unknown preset '%s' (see %s)", preset, t->t[T_PRESETS].path);

    memset(out, 0, sizeof *out);
    snprintf(out->region, sizeof out->region, "%s", g->key[0]);
    snprintf(out->region_name, sizeof out->region_name, "%s", g->text);
    snprintf(out->preset, sizeof out->preset, "%s", pp->key[0]);
    from_row(&out->f[TH_ECO_F_GRID_CO2E], &t->t[T_GRID], g, g->v[0]);
    from_row(&out->f[TH_ECO_F_PUE], &t->t[T_PRESETS], pp, pp->v[0]);
    from_row(&out->f[TH_ECO_F_WUE_SITE], &t->t[T_PRESETS], pw, pw->v[0]);
    resolve_ewif(t, g->key[0], out);

    const row_t *p = find(&t->t[T_POLLUTANTS], g->key[0], NULL);
    static const th_eco_factor_id pol[3] = {TH_ECO_F_GRID_NOX, TH_ECO_F_GRID_SO2, TH_ECO_F_GRID_PM25};
    for (int i = 0; i < 3; i++) {
        if (p && p->avail[i]) {
            from_row(&out->f[pol[i]], &t->t[T_POLLUTANTS], p, p->v[i]);
        } else {
            char why[200];
            snprintf(why, sizeof why, "no sourced %s rate for region %s", i == 0 ? "NOx" : i == 1 ? "SO2" : "PM2.5",
                     g->key[0]);
            unavailable(&out->f[pol[i]], why);
        }
    }

    th_eco_factor *share = &out->f[TH_ECO_F_GEN_SHARE];
    share->value = 0.0;
    share->available = 1;
    snprintf(share->source, sizeof share->source, "default: no backup generation");
    snprintf(share->year, sizeof share->year, "n/a");
    snprintf(share->basis, sizeof share->basis, "definition: grid supplies all energy unless set");
    snprintf(share->origin, sizeof share->origin, "default");

    for (size_t k = 0; k < N_CONSTANTS; k++) {
        const row_t *row = find(&t->t[T_CONSTANTS], constant_names[k].name, NULL);
        from_row(&out->f[constant_names[k].id], &t->t[T_CONSTANTS], row, row->v[0]);
    }
    out->methane_enabled = 0;
    return TH_OK;
}

th_status th_eco_factors_set_cooling(const th_eco_tables *t, th_eco_factors *f, const char *cooling) {
    if (!t || !f || !cooling) return th_fail(TH_ERR_INVALID, "cooling: NULL argument");
    const row_t *row = find(&t->t[T_COOLING], cooling, NULL);
    if (!row) {
        char list[400];
        th_names_join(list, sizeof list, row_key_at, (void *)&t->t[T_COOLING], ", ");
        return th_fail(TH_ERR_INVALID, "unknown cooling type '%s' (known: %s)", cooling, list);
    }
    from_row(&f->f[TH_ECO_F_WUE_SITE], &t->t[T_COOLING], row, row->v[0]);
    return TH_OK;
}
