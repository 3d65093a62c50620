/* embodied.c: the hardware's manufacturing footprint (data/factors/embodied.csv) and the
 * energy of keeping bytes (storage_energy.csv), the devices a run holds (--hardware or the
 * host), and the embodied charge of holding them for a time, all carried as low / central /
 * high ranges because the sources disagree (DRAM per GB by 27x). */
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

#define SECONDS_PER_YEAR (365.25 * 86400.0)

/* ---------------------------------------------------------------------------------
 * ranges */

static th_eco_range unknown_range(void) { return (th_eco_range){NAN, NAN, NAN}; }

th_eco_range th_eco_range_point(double v) { return (th_eco_range){v, v, v}; }

th_eco_range th_eco_range_add(th_eco_range a, th_eco_range b) {
    if (isnan(a.mid) || isnan(b.mid)) return unknown_range();
    return (th_eco_range){a.lo + b.lo, a.mid + b.mid, a.hi + b.hi};
}

th_eco_range th_eco_range_scale(th_eco_range a, double k) {
    if (!isfinite(k) || k < 0 || isnan(a.mid)) return unknown_range();
    return (th_eco_range){a.lo * k, a.mid * k, a.hi * k};
}

th_eco_range th_eco_range_mul(th_eco_range a, th_eco_range b) {
    if (isnan(a.mid) || isnan(b.mid)) return unknown_range();
    return (th_eco_range){a.lo * b.lo, a.mid * b.mid, a.hi * b.hi};
}

int th_eco_range_wide(th_eco_range r) {
    if (isnan(r.mid)) return 0;
    return r.lo > 0 ? r.hi > 1.25 * r.lo : r.hi > 0;
}

void th_eco_fmt_range(char *buf, size_t cap, th_eco_range r, const char *unit) {
    if (!cap) return;
    char mid[32], lo[32], hi[32];
    th_eco_fmt_si(mid, sizeof mid, r.mid, unit);
    if (isnan(r.mid) || !th_eco_range_wide(r)) {
        snprintf(buf, cap, "%s", mid);
        return;
    }
    th_eco_fmt_si(lo, sizeof lo, r.lo, unit);
    th_eco_fmt_si(hi, sizeof hi, r.hi, unit);
    snprintf(buf, cap, "%s (%s to %s)", mid, lo, hi);
}

/* ---------------------------------------------------------------------------------
 * the tables */

struct th_eco_embodied_table {
    th_eco_embodied_row *rows;
    size_t n;
    th_eco_storage_row *media;
    size_t n_media;
};

static const char *const classes[] = {"cpu", "dram", "ssd", "hdd", "gpu", "server", NULL};

static int number(const char *s, double *out) {
    if (!*s || isspace((unsigned char)*s)) return 0;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

static int year_ok(const char *y, const char *basis) {
    if (!strcmp(y, "unknown")) return strstr(basis, "[unverified") != NULL;
    if (strlen(y) != 4) return 0;
    for (int i = 0; i < 4; i++)
        if (!isdigit((unsigned char)y[i])) return 0;
    int v = atoi(y);
    return v >= 1990 && v <= 2100;
}

/* Column indices of `names` in c (all must exist, and nothing else). */
static th_status columns(const th_csv *c, const char *const *names, size_t n, int *col) {
    for (size_t i = 0; i < n; i++)
        if ((col[i] = th_csv_col(c, names[i])) < 0) return th_fail(TH_ERR_FORMAT, "%s: missing column '%s'", c->path, names[i]);
    if (c->ncols != n) {
        for (size_t j = 0; j < c->ncols; j++) {
            int known = 0;
            for (size_t i = 0; i < n; i++) known |= !strcmp(c->header[j], names[i]);
            if (!known) return th_fail(TH_ERR_FORMAT, "%s: unknown column '%s' (column %zu)", c->path, c->header[j], j + 1);
        }
    }
    if (c->nrows == 0) return th_fail(TH_ERR_FORMAT, "%s: no rows", c->path);
    return TH_OK;
}

/* Checks the source, year and basis of row r and copies them. */
static th_status provenance(const th_csv *c, size_t r, const int *col, char *source, size_t scap, char *year,
                            size_t ycap, char *basis, size_t bcap) {
    const char *s = th_csv_cell(c, r, (size_t)col[0]), *y = th_csv_cell(c, r, (size_t)col[1]),
               *b = th_csv_cell(c, r, (size_t)col[2]);
    size_t line = c->line[r];
    if (!*s) return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %d (source): empty; every value needs a source", c->path, line, col[0] + 1);
    if (!*b) return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %d (basis): empty", c->path, line, col[2] + 1);
    if (!year_ok(y, b))
        return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %d (year): '%s' is not a year (1990-2100, or 'unknown' with [unverified] in the basis)",
                       c->path, line, col[1] + 1, y);
    snprintf(source, scap, "%s", s);
    snprintf(year, ycap, "%s", y);
    snprintf(basis, bcap, "%s", b);
    return TH_OK;
}

/* Reads three columns starting at col[0] as an ordered, non-negative low / central / high. */
static th_status range_cells(const th_csv *c, size_t r, const int *col, const char *const *names, th_eco_range *out) {
    double v[3];
    size_t line = c->line[r];
    for (int i = 0; i < 3; i++) {
        const char *cell = th_csv_cell(c, r, (size_t)col[i]);
        if (!number(cell, &v[i]))
            return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %d (%s): '%s' is not a number", c->path, line, col[i] + 1, names[i], cell);
        if (v[i] < 0)
            return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %d (%s): %g is negative", c->path, line, col[i] + 1, names[i], v[i]);
    }
    if (!(v[0] <= v[1] && v[1] <= v[2]))
        return th_fail(TH_ERR_FORMAT, "%s: row %zu: low %g, central %g, high %g are not in order", c->path, line, v[0], v[1], v[2]);
    *out = (th_eco_range){v[0], v[1], v[2]};
    return TH_OK;
}

static th_status parse_devices(const th_csv *c, th_eco_embodied_table *t) {
    static const char *const names[] = {"device", "class", "unit", "match", "kg_co2e_low", "kg_co2e_central",
                                        "kg_co2e_high", "kg_sb_eq", "life_years", "source", "year", "basis"};
    int col[12];
    th_status st = columns(c, names, 12, col);
    if (st != TH_OK) return st;
    if (!(t->rows = th_calloc(c->nrows, sizeof *t->rows))) return th_fail(TH_ERR_NOMEM, "%s: out of memory", c->path);
    for (size_t r = 0; r < c->nrows; r++) {
        th_eco_embodied_row *row = &t->rows[r];
        size_t line = c->line[r];
        const char *key = th_csv_cell(c, r, (size_t)col[0]), *cls = th_csv_cell(c, r, (size_t)col[1]);
        if (!*key || strlen(key) >= sizeof row->device)
            return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %d (device): must be 1 to %zu characters", c->path, line,
                           col[0] + 1, sizeof row->device - 1);
        int k = 0;
        while (classes[k] && strcmp(classes[k], cls)) k++;
        if (!classes[k])
            return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %d (class): '%s' is not cpu, dram, ssd, hdd, gpu or server",
                           c->path, line, col[1] + 1, cls);
        snprintf(row->device, sizeof row->device, "%s", key);
        snprintf(row->cls, sizeof row->cls, "%s", cls);
        snprintf(row->unit, sizeof row->unit, "%s", th_csv_cell(c, r, (size_t)col[2]));
        snprintf(row->match, sizeof row->match, "%s", th_csv_cell(c, r, (size_t)col[3]));
        if ((st = range_cells(c, r, col + 4, names + 4, &row->kg_co2e)) != TH_OK) return st;
        const char *adp = th_csv_cell(c, r, (size_t)col[7]), *life = th_csv_cell(c, r, (size_t)col[8]);
        if (!strcmp(adp, "NA"))
            row->kg_sb_eq = NAN;
        else if (!number(adp, &row->kg_sb_eq) || row->kg_sb_eq < 0)
            return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %d (kg_sb_eq): '%s' is not a non-negative number or NA",
                           c->path, line, col[7] + 1, adp);
        if (!number(life, &row->life_y) || !(row->life_y > 0 && row->life_y <= 50))
            return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %d (life_years): '%s' is not in (0, 50] years", c->path,
                           line, col[8] + 1, life);
        if ((st = provenance(c, r, col + 9, row->source, sizeof row->source, row->year, sizeof row->year, row->basis,
                             sizeof row->basis)) != TH_OK)
            return st;
        snprintf(row->origin, sizeof row->origin, "%.200s row %zu", c->path, line);
        for (size_t q = 0; q < r; q++)
            if (!strcasecmp(t->rows[q].device, row->device))
                return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %d (device): duplicate key '%s'", c->path, line,
                               col[0] + 1, row->device);
        t->n = r + 1;
    }
    return TH_OK;
}

static th_status parse_media(const th_csv *c, th_eco_embodied_table *t) {
    static const char *const names[] = {"medium", "kwh_per_tb_year_low", "kwh_per_tb_year_central",
                                        "kwh_per_tb_year_high", "source", "year", "basis"};
    int col[7];
    th_status st = columns(c, names, 7, col);
    if (st != TH_OK) return st;
    if (!(t->media = th_calloc(c->nrows, sizeof *t->media))) return th_fail(TH_ERR_NOMEM, "%s: out of memory", c->path);
    for (size_t r = 0; r < c->nrows; r++) {
        th_eco_storage_row *m = &t->media[r];
        const char *key = th_csv_cell(c, r, (size_t)col[0]);
        if (strcmp(key, "ssd") && strcmp(key, "hdd") && strcmp(key, "dram"))
            return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %d (medium): '%s' is not ssd, hdd or dram", c->path,
                           c->line[r], col[0] + 1, key);
        snprintf(m->medium, sizeof m->medium, "%s", key);
        if ((st = range_cells(c, r, col + 1, names + 1, &m->kwh_per_tb_year)) != TH_OK) return st;
        if ((st = provenance(c, r, col + 4, m->source, sizeof m->source, m->year, sizeof m->year, m->basis,
                             sizeof m->basis)) != TH_OK)
            return st;
        snprintf(m->origin, sizeof m->origin, "%.200s row %zu", c->path, c->line[r]);
        for (size_t q = 0; q < r; q++)
            if (!strcmp(t->media[q].medium, key))
                return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %d (medium): duplicate key '%s'", c->path, c->line[r],
                               col[0] + 1, key);
        t->n_media = r + 1;
    }
    return TH_OK;
}

th_status th_eco_embodied_load(const char *dir, th_eco_embodied_table **out) {
    if (!out) return th_fail(TH_ERR_INVALID, "embodied table: NULL output");
    *out = NULL;
    char dbuf[1024], path[1200];
    if (!dir) {
        const char *env = getenv("THERMO_DATA_DIR");
        snprintf(dbuf, sizeof dbuf, "%s/factors", env && *env ? env : THERMO_DATA_DIR);
        dir = dbuf;
    }
    th_eco_embodied_table *t = th_calloc(1, sizeof *t);
    if (!t) return th_fail(TH_ERR_NOMEM, "embodied table: out of memory");
    th_csv c;
    snprintf(path, sizeof path, "%s/embodied.csv", dir);
    th_status st = th_csv_read(path, &c);
    if (st == TH_OK) {
        st = parse_devices(&c, t);
        th_csv_free(&c);
    }
    snprintf(path, sizeof path, "%s/storage_energy.csv", dir);
    if (st == TH_OK && (st = th_csv_read(path, &c)) == TH_OK) {
        st = parse_media(&c, t);
        th_csv_free(&c);
    }
    if (st != TH_OK) {
        th_eco_embodied_free(t);
        return st;
    }
    *out = t;
    return TH_OK;
}

void th_eco_embodied_free(th_eco_embodied_table *t) {
    if (!t) return;
    th_free(t->rows);
    th_free(t->media);
    th_free(t);
}

/* Case-insensitive: does `hay` contain `needle` (n bytes)? */
static int contains(const char *hay, const char *needle, size_t n) {
    if (!n) return 0;
    for (; *hay; hay++)
        if (!strncasecmp(hay, needle, n)) return 1;
    return 0;
}

const th_eco_embodied_row *th_eco_embodied_find(const th_eco_embodied_table *t, const char *cls, const char *name) {
    if (!t || !name || !*name) return NULL;
    for (size_t i = 0; i < t->n; i++)
        if ((!cls || !strcmp(t->rows[i].cls, cls)) && !strcasecmp(t->rows[i].device, name)) return &t->rows[i];
    for (size_t i = 0; i < t->n; i++) {
        if (cls && strcmp(t->rows[i].cls, cls)) continue;
        for (const char *p = t->rows[i].match; *p;) {
            size_t n = strcspn(p, "|");
            if (contains(name, p, n)) return &t->rows[i];
            p += n;
            if (*p == '|') p++;
        }
    }
    return NULL;
}

static const th_eco_storage_row *find_medium(const th_eco_embodied_table *t, const char *medium) {
    for (size_t i = 0; i < t->n_media; i++)
        if (!strcmp(t->media[i].medium, medium)) return &t->media[i];
    return NULL;
}

/* ---------------------------------------------------------------------------------
 * the hardware a run holds */

/* The device keys of class cls, joined for messages. */
static void known_devices(const th_eco_embodied_table *t, const char *cls, char *buf, size_t cap) {
    th_textbuf b = {buf, cap, 0};
    buf[0] = '\0';
    for (size_t i = 0; i < t->n; i++)
        if (!cls || !strcmp(t->rows[i].cls, cls)) th_textbuf_printf(&b, "%s%s", b.len ? ", " : "", t->rows[i].device);
}

static th_status add_device(th_eco_hardware *hw, const char *cls, const char *name, const char *how, double count,
                            const th_eco_embodied_row *row) {
    if (hw->n == TH_ECO_HW_MAX) return th_fail(TH_ERR_INVALID, "--hardware: more than %d devices", TH_ECO_HW_MAX);
    th_eco_device *d = &hw->dev[hw->n++];
    memset(d, 0, sizeof *d);
    snprintf(d->name, sizeof d->name, "%s", name);
    snprintf(d->cls, sizeof d->cls, "%s", cls);
    snprintf(d->how, sizeof d->how, "%s", how);
    d->count = count;
    d->known = row != NULL;
    if (row) {
        d->row = *row;
        d->life_y = row->life_y;
        snprintf(d->life_how, sizeof d->life_how, "table");
    } else {
        d->life_y = NAN;
        snprintf(d->life_how, sizeof d->life_how, "none");
    }
    return TH_OK;
}

static th_status add_host(const th_eco_embodied_table *t, th_eco_hardware *hw, const char *cpu, double dram_gb) {
    th_status st = TH_OK;
    if (cpu && *cpu) st = add_device(hw, "cpu", cpu, "host: th_cpu_name", 1, th_eco_embodied_find(t, "cpu", cpu));
    if (st == TH_OK && dram_gb > 0) {
        char name[32];
        snprintf(name, sizeof name, "%.3g GB", dram_gb);
        st = add_device(hw, "dram", name, "host: /proc/meminfo", dram_gb, th_eco_embodied_find(t, "dram", "dram"));
    }
    return st;
}

/* A positive, finite number, all of s. */
static int positive(const char *s, double *v) { return number(s, v) && *v > 0; }

/* One "KEY:VALUE" entry of a spec. */
static th_status parse_entry(const th_eco_embodied_table *t, th_eco_hardware *hw, char *e, const char *cpu,
                             double dram_gb) {
    char list[400];
    if (!strcmp(e, "host")) return add_host(t, hw, cpu, dram_gb);
    char *colon = strchr(e, ':');
    if (!colon) return th_fail(TH_ERR_INVALID, "--hardware: '%s' is not KEY:VALUE (or host)", e);
    *colon = '\0';
    const char *key = e;
    char *val = colon + 1;
    double v;
    if (!strcmp(key, "cpu") || !strcmp(key, "gpu") || !strcmp(key, "server")) {
        double n = 1;
        char *star = strrchr(val, '*');
        if (star) {
            *star = '\0';
            if (!positive(star + 1, &n) || n != floor(n) || n > 1e6)
                return th_fail(TH_ERR_INVALID, "--hardware %s:%s: count '%s' is not a whole number in [1, 1e6]", key, val, star + 1);
        }
        const th_eco_embodied_row *row = th_eco_embodied_find(t, key, val);
        if (!row) {
            known_devices(t, key, list, sizeof list);
            return th_fail(TH_ERR_INVALID, "--hardware %s:%s: unknown device (known %s rows: %s)", key, val, key, list);
        }
        return add_device(hw, key, val, "--hardware", n, row);
    }
    static const struct {
        const char *key, *cls, *unit;
    } sizes[] = {{"dram-gb", "dram", "GB"}, {"ssd-tb", "ssd", "TB"}, {"hdd-tb", "hdd", "TB"}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        if (strcmp(key, sizes[i].key)) continue;
        if (!positive(val, &v) || v > 1e7)
            return th_fail(TH_ERR_INVALID, "--hardware %s:%s: size must be a number in (0, 1e7] %s", key, val, sizes[i].unit);
        const th_eco_embodied_row *row = th_eco_embodied_find(t, sizes[i].cls, sizes[i].cls);
        if (!row) return th_fail(TH_ERR_INVALID, "--hardware %s: no '%s' row in the embodied table", key, sizes[i].cls);
        char name[32];
        snprintf(name, sizeof name, "%.4g %s", v, sizes[i].unit);
        return add_device(hw, sizes[i].cls, name, "--hardware", v, row);
    }
    if (!strcmp(key, "share")) {
        if (!positive(val, &v) || v > 1) return th_fail(TH_ERR_INVALID, "--hardware share:%s: must be in (0, 1]", val);
        hw->share = v;
        return TH_OK;
    }
    if (!strcmp(key, "replicas")) {
        if (!number(val, &v) || v < 1 || v > 100) return th_fail(TH_ERR_INVALID, "--hardware replicas:%s: must be in [1, 100]", val);
        hw->replicas = v;
        return TH_OK;
    }
    if (!strcmp(key, "store")) {
        if (strcmp(val, "ssd") && strcmp(val, "hdd") && strcmp(val, "dram"))
            return th_fail(TH_ERR_INVALID, "--hardware store:%s: must be ssd, hdd or dram (an index held in memory)", val);
        snprintf(hw->medium, sizeof hw->medium, "%s", val);
        return TH_OK;
    }
    size_t kl = strlen(key);
    if (kl > 7 && !strcmp(key + kl - 7, "-life-y")) {
        char cls[16];
        snprintf(cls, sizeof cls, "%.*s", (int)(kl - 7), key);
        int k = 0;
        while (classes[k] && strcmp(classes[k], cls)) k++;
        if (!classes[k]) return th_fail(TH_ERR_INVALID, "--hardware %s: '%s' is not a device class (cpu, dram, ssd, hdd, gpu, server)", key, cls);
        if (!positive(val, &v) || v > 50) return th_fail(TH_ERR_INVALID, "--hardware %s:%s: life must be in (0, 50] years", key, val);
        return TH_OK; // applied after all devices are in (parse's second pass)
    }
    return th_fail(TH_ERR_INVALID,
                   "--hardware: unknown key '%s' (cpu, gpu, server, dram-gb, ssd-tb, hdd-tb, host, share, replicas, "
                   "store, CLASS-life-y)", key);
}

/* Applies CLASS-life-y:Y overrides in `spec` to the devices (entries already checked). */
static void apply_lives(th_eco_hardware *hw, char *spec) {
    for (char *save = NULL, *e = strtok_r(spec, ",", &save); e; e = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*e)) e++;
        char *colon = strchr(e, ':');
        if (!colon) continue;
        size_t kl = (size_t)(colon - e);
        if (kl <= 7 || strncmp(colon - 7, "-life-y", 7)) continue;
        double v = atof(colon + 1);
        for (size_t i = 0; i < hw->n; i++)
            if (strlen(hw->dev[i].cls) == kl - 7 && !strncmp(hw->dev[i].cls, e, kl - 7) && hw->dev[i].known) {
                hw->dev[i].life_y = v;
                snprintf(hw->dev[i].life_how, sizeof hw->dev[i].life_how, "--hardware %.*s", (int)kl, e);
            }
    }
}

th_status th_eco_hardware_parse(const th_eco_embodied_table *t, const char *spec, const char *host_cpu,
                                double host_dram_gb, th_eco_hardware *out) {
    if (!t || !out) return th_fail(TH_ERR_INVALID, "--hardware: NULL argument");
    memset(out, 0, sizeof *out);
    out->share = 1.0;
    out->replicas = NAN;
    snprintf(out->medium, sizeof out->medium, "ssd");
    th_status st = TH_OK;
    char *copy = NULL;
    if (!spec || !*spec) {
        snprintf(out->spec, sizeof out->spec, "host");
        st = add_host(t, out, host_cpu, host_dram_gb);
    } else {
        snprintf(out->spec, sizeof out->spec, "%s", spec);
        size_t n = strlen(spec);
        if (spec[0] == ',' || spec[n - 1] == ',' || strstr(spec, ",,"))
            return th_fail(TH_ERR_INVALID, "--hardware '%s': empty entry", spec);
        if (!(copy = th_alloc(2 * n + 2))) return th_fail(TH_ERR_NOMEM, "--hardware: out of memory");
        memcpy(copy, spec, n + 1);
        char *lives = copy + n + 1;
        memcpy(lives, spec, n + 1);
        for (char *save = NULL, *e = strtok_r(copy, ",", &save); e && st == TH_OK; e = strtok_r(NULL, ",", &save)) {
            while (isspace((unsigned char)*e)) e++;
            char *end = e + strlen(e);
            while (end > e && isspace((unsigned char)end[-1])) *--end = '\0';
            if (!*e) {
                st = th_fail(TH_ERR_INVALID, "--hardware '%s': empty entry", spec);
                break;
            }
            st = parse_entry(t, out, e, host_cpu, host_dram_gb);
        }
        if (st == TH_OK) apply_lives(out, lives);
    }
    const th_eco_storage_row *m = st == TH_OK ? find_medium(t, out->medium) : NULL;
    const th_eco_embodied_row *me = st == TH_OK ? th_eco_embodied_find(t, out->medium, out->medium) : NULL;
    if (st == TH_OK && (!m || !me))
        st = th_fail(TH_ERR_INVALID, "--hardware store:%s: no %s row in the storage energy or embodied table", out->medium, out->medium);
    if (st == TH_OK) {
        out->medium_energy = *m;
        out->medium_embodied = *me;
        for (size_t i = 0; i < out->n; i++) out->drive_named |= !strcmp(out->dev[i].cls, out->medium);
    }
    th_free(copy);
    if (st != TH_OK) {
        char keep[sizeof out->spec];
        memcpy(keep, out->spec, sizeof keep);
        memset(out, 0, sizeof *out);
        memcpy(out->spec, keep, sizeof keep);
    }
    return st;
}

double th_eco_host_dram_gb(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return NAN;
    char line[256];
    double gb = NAN;
    while (fgets(line, sizeof line, f)) {
        unsigned long long kb;
        if (sscanf(line, "MemTotal: %llu kB", &kb) == 1) {
            gb = (double)kb * 1024.0 / 1e9;
            break;
        }
    }
    fclose(f);
    return gb;
}

/* ---------------------------------------------------------------------------------
 * the charge */

th_status th_eco_embodied_compute(const th_eco_hardware *hw, double held_s, th_eco_embodied *out) {
    if (!hw || !out) return th_fail(TH_ERR_INVALID, "embodied: NULL argument");
    if (!isfinite(held_s) || held_s < 0) return th_fail(TH_ERR_INVALID, "embodied: held time %g s is not a non-negative number", held_s);
    memset(out, 0, sizeof *out);
    out->held_s = held_s;
    out->total_g = th_eco_range_point(0);
    for (size_t i = 0; i < hw->n && i < TH_ECO_HW_MAX; i++) {
        const th_eco_device *d = &hw->dev[i];
        if (!d->known || !(d->life_y > 0)) {
            out->dev_g[i] = unknown_range();
            out->dev_adp_g[i] = NAN;
            out->n_unknown++;
            out->n_no_adp++;
            continue;
        }
        double k = 1000.0 * d->count * hw->share * held_s / (d->life_y * SECONDS_PER_YEAR);
        out->dev_g[i] = th_eco_range_scale(d->row.kg_co2e, k);
        out->total_g = th_eco_range_add(out->total_g, out->dev_g[i]);
        out->dev_adp_g[i] = d->row.kg_sb_eq * k;
        if (isnan(out->dev_adp_g[i]))
            out->n_no_adp++;
        else
            out->adp_g += out->dev_adp_g[i];
    }
    return TH_OK;
}
