/* load.c: session metadata (session.json) and the tolerant telemetry reader the analysis
 * falls back on when th_telemetry_read rejects a damaged or reduced log. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/analyze_internal.h"

void th_an_fmt(char *dst, size_t n, const char *fmt, ...) {
    if (!n) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(dst, n, fmt, ap);
    va_end(ap);
    if (k < 0) dst[0] = '\0';
}

/* ---------------------------------------------------------------------------------
 * session.json */

void th_session_meta_init(th_session_meta *m) {
    memset(m, 0, sizeof *m);
    m->ambient_c = m->p_idle_w = m->p_max_w = m->r_k_per_w = m->c_j_per_k = NAN;
    m->duration_s = m->hz = NAN;
    m->steps = -1;
    m->modeled = -1;
}

static void get_str(json_t *o, const char *key, char *dst, size_t n) {
    json_t *v = json_object_get(o, key);
    if (json_is_string(v)) th_an_fmt(dst, n, "%s", json_string_value(v));
}

static void get_num(json_t *o, const char *key, double *dst) {
    json_t *v = json_object_get(o, key);
    if (json_is_number(v)) *dst = json_number_value(v);
}

th_status th_session_meta_read(const char *path, th_session_meta *out) {
    json_error_t err;
    json_t *o = json_load_file(path, 0, &err);
    if (!o) {
        FILE *f = fopen(path, "r");
        if (!f) return th_fail(TH_ERR_IO, "%s: cannot open session metadata (%s)", path, strerror(errno));
        fclose(f);
        return th_fail(TH_ERR_FORMAT, "%s:%d: not valid JSON: %s", path, err.line, err.text);
    }
    if (!json_is_object(o)) {
        json_decref(o);
        return th_fail(TH_ERR_FORMAT, "%s: session metadata must be a JSON object", path);
    }
    th_session_meta m;
    th_session_meta_init(&m);
    get_str(o, "id", m.id, sizeof m.id);
    get_str(o, "date", m.date, sizeof m.date);
    get_str(o, "model", m.model, sizeof m.model);
    get_str(o, "profile", m.profile, sizeof m.profile);
    get_str(o, "sensor", m.sensor, sizeof m.sensor);
    get_str(o, "ambient_how", m.ambient_how, sizeof m.ambient_how);
    get_str(o, "stopped_by", m.stopped_by, sizeof m.stopped_by);
    get_num(o, "ambient_c", &m.ambient_c);
    get_num(o, "p_idle_w", &m.p_idle_w);
    get_num(o, "p_max_w", &m.p_max_w);
    get_num(o, "r_k_per_w", &m.r_k_per_w);
    get_num(o, "c_j_per_k", &m.c_j_per_k);
    get_num(o, "duration_s", &m.duration_s);
    get_num(o, "hz", &m.hz);
    json_t *v = json_object_get(o, "steps");
    if (json_is_integer(v)) m.steps = (long)json_integer_value(v);
    v = json_object_get(o, "data");
    if (json_is_string(v)) m.modeled = strcmp(json_string_value(v), "modeled") == 0 ? 1 : 0;
    json_decref(o);
    *out = m;
    return TH_OK;
}

static void set_num(json_t *o, const char *key, double v) {
    json_object_set_new(o, key, isfinite(v) ? json_real(v) : json_null());
}

th_status th_session_meta_write(const char *path, const th_session_meta *m) {
    json_t *o = json_object();
    if (!o) return th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
    json_object_set_new(o, "id", json_string(m->id));
    json_object_set_new(o, "date", json_string(m->date));
    json_object_set_new(o, "model", json_string(m->model));
    set_num(o, "ambient_c", m->ambient_c);
    json_object_set_new(o, "ambient_how", json_string(m->ambient_how));
    json_object_set_new(o, "profile", json_string(m->profile));
    json_object_set_new(o, "sensor", json_string(m->sensor));
    json_object_set_new(o, "data", json_string(m->modeled == 1 ? "modeled" : m->modeled == 0 ? "measured" : "unknown"));
    set_num(o, "p_idle_w", m->p_idle_w);
    set_num(o, "p_max_w", m->p_max_w);
    set_num(o, "r_k_per_w", m->r_k_per_w);
    set_num(o, "c_j_per_k", m->c_j_per_k);
    set_num(o, "duration_s", m->duration_s);
    set_num(o, "hz", m->hz);
    json_object_set_new(o, "steps", json_integer(m->steps));
    json_object_set_new(o, "stopped_by", json_string(m->stopped_by));
    char tmp[4200];
    th_an_fmt(tmp, sizeof tmp, "%s.tmp", path);
    int bad = json_dump_file(o, tmp, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0 || rename(tmp, path) != 0;
    json_decref(o);
    if (bad) {
        remove(tmp);
        return th_fail(TH_ERR_IO, "%s: cannot write session metadata", path);
    }
    return TH_OK;
}

/* ---------------------------------------------------------------------------------
 * tolerant telemetry reader */

enum { K_T, K_KIND, K_SOURCE, K_TEMP, K_POWER, K_ENERGY, K_UTIL, K_DUTY, K_THREADS, K_STEP, K_LOSS, K_GRAD, K_LR,
       K_TOKENS, K_STEP_MS, K_COUNT };
static const char *const col_names[K_COUNT] = {"t_s",  "kind",    "source", "temp_c", "power_w",   "energy_j", "util",
                                               "duty", "threads", "step",   "loss",   "grad_norm", "lr",       "tokens",
                                               "step_ms"};
static const uint32_t col_bit[K_COUNT] = {0, 0, 0, TH_COL_TEMP, TH_COL_POWER, TH_COL_ENERGY, TH_COL_UTIL,
                                          TH_COL_DUTY, TH_COL_THREADS, TH_COL_STEP, TH_COL_LOSS, TH_COL_GRAD_NORM,
                                          TH_COL_LR, TH_COL_TOKENS, TH_COL_STEP_MS};

static int col_index(const char *name) {
    for (int c = 0; c < K_COUNT; c++)
        if (strcmp(col_names[c], name) == 0) return c;
    return -1;
}

/* Splits a CSV line in place; returns the cell count, or -1 on a broken quote. */
static int split(char *p, char **cells, int max) {
    int n = 0;
    for (;;) {
        if (n == max) return -1;
        if (*p == '"') {
            char *w = ++p;
            cells[n++] = w;
            for (;;) {
                if (!*p) return -1;
                if (*p == '"' && p[1] == '"') *w++ = '"', p += 2;
                else if (*p == '"') { p++; break; }
                else *w++ = *p++;
            }
            char end = *p;
            *w = '\0';
            if (end == '\0') break;
            if (end != ',') return -1;
            p++;
        } else {
            cells[n++] = p;
            char *comma = strchr(p, ',');
            if (!comma) break;
            *comma = '\0';
            p = comma + 1;
        }
    }
    return n;
}

/* Stores one cell's value; 0 if it is not a number. */
static int store(th_telemetry_row *r, int c, const char *text) {
    if (c == K_KIND) {
        if (!strcmp(text, "step")) r->is_step = 1;
        else if (!strcmp(text, "sample")) r->is_step = 0;
        else return 0;
        return 1;
    }
    if (c == K_SOURCE) {
        th_an_fmt(r->source, sizeof r->source, "%s", text);
        return 1;
    }
    if (!text[0]) return 1;
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v)) return 0;
    switch (c) {
    case K_T: r->t_s = v; return 1;
    case K_TEMP: r->temp_c = v; break;
    case K_POWER: r->power_w = v; break;
    case K_ENERGY: r->energy_j = v; break;
    case K_UTIL: r->util = v; break;
    case K_DUTY: r->duty = v; break;
    case K_THREADS: r->threads = (int)v; break;
    case K_STEP: r->step = (long)v; break;
    case K_LOSS: r->loss = v; break;
    case K_GRAD: r->grad_norm = v; break;
    case K_LR: r->lr = v; break;
    case K_TOKENS: r->tokens = (long)v; break;
    case K_STEP_MS: r->step_ms = v; break;
    default: return 1;
    }
    r->has |= col_bit[c];
    return 1;
}

static int parse_json_line(const char *line, th_telemetry_row *r) {
    json_t *o = json_loads(line, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return 0;
    }
    int ok = 1, have_t = 0, have_kind = 0;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        int c = col_index(key);
        if (c < 0) continue; /* an extra key is not damage */
        char buf[128];
        if (json_is_string(v)) th_an_fmt(buf, sizeof buf, "%s", json_string_value(v));
        else if (json_is_number(v)) th_an_fmt(buf, sizeof buf, "%.17g", json_number_value(v));
        else { ok = 0; break; }
        if (!store(r, c, buf)) { ok = 0; break; }
        have_t |= c == K_T;
        have_kind |= c == K_KIND;
    }
    json_decref(o);
    if (ok && !have_kind) r->is_step = (r->has & (TH_COL_STEP | TH_COL_GRAD_NORM | TH_COL_LOSS)) != 0;
    return ok && have_t;
}

th_status th_an_read_tolerant(const char *path, th_telemetry_row **rows_out, size_t *n_out, size_t *bad_out,
                              char *first_bad, size_t first_bad_len) {
    FILE *f = fopen(path, "r");
    if (!f) return th_fail(TH_ERR_IO, "%s: cannot open telemetry file (%s)", path, strerror(errno));
    th_status st = TH_OK;
    th_telemetry_row *rows = NULL;
    size_t n = 0, cap = 0, bad = 0;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    long lineno = 0;
    int fmt = -1, ncols = 0, map[32];
    if (first_bad_len) first_bad[0] = '\0';
    while ((len = getline(&line, &line_cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        if (fmt < 0) {
            fmt = line[0] == '{';
            if (!fmt) { /* CSV: the header names the columns */
                char *cells[32];
                ncols = split(line, cells, 32);
                int have_t = 0;
                for (int c = 0; c < ncols; c++) {
                    map[c] = col_index(cells[c]);
                    have_t |= map[c] == K_T;
                }
                if (ncols <= 0 || !have_t) {
                    st = th_fail(TH_ERR_FORMAT, "%s:%ld: the header has no t_s column (not a telemetry log?)", path,
                                 lineno);
                    break;
                }
                continue;
            }
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 256;
            th_telemetry_row *nr = th_calloc(nc, sizeof *nr);
            if (!nr) {
                st = th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
                break;
            }
            if (n) memcpy(nr, rows, n * sizeof *nr);
            th_free(rows);
            rows = nr;
            cap = nc;
        }
        th_telemetry_row *r = &rows[n];
        memset(r, 0, sizeof *r);
        int ok;
        if (fmt == 1) {
            ok = parse_json_line(line, r);
        } else {
            char *cells[32];
            int k = split(line, cells, 32);
            ok = k == ncols;
            int have_kind = 0;
            for (int c = 0; c < k && ok; c++) {
                if (map[c] < 0) continue;
                if (map[c] == K_T && !cells[c][0]) ok = 0;
                else ok = store(r, map[c], cells[c]);
                have_kind |= map[c] == K_KIND;
            }
            if (ok && !have_kind) r->is_step = (r->has & (TH_COL_STEP | TH_COL_GRAD_NORM | TH_COL_LOSS)) != 0;
        }
        if (ok) {
            n++;
        } else {
            if (!bad && first_bad_len)
                th_an_fmt(first_bad, first_bad_len, "%s:%ld: line does not parse (%s)", path, lineno,
                          fmt == 1 ? "not a telemetry JSON object" : "wrong column count or not a number");
            bad++;
        }
    }
    free(line);
    fclose(f);
    if (st == TH_OK && fmt < 0) st = th_fail(TH_ERR_FORMAT, "%s: the telemetry log is empty", path);
    if (st == TH_OK && n == 0)
        st = th_fail(TH_ERR_FORMAT, "%s: no readable row (%zu line%s skipped)", path, bad, bad == 1 ? "" : "s");
    if (st != TH_OK) {
        th_free(rows);
        return st;
    }
    *rows_out = rows;
    *n_out = n;
    *bad_out = bad;
    return TH_OK;
}
