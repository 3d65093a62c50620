/* telemetry.c: the telemetry log (samples from the sampler thread and step records from
 * the work loop, one file, one clock) as CSV or JSONL, and its reader, used by trace
 * replay and the analysis tools. Appends take one mutex around a buffered write, so the
 * work loop waits at most for another row's formatting. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sense/sense_internal.h"

static const char *header =
    "t_s,kind,source,temp_c,power_w,energy_j,util,duty,threads,step,loss,grad_norm,lr,tokens,step_ms";

struct th_telemetry {
    FILE *f;
    th_telemetry_format fmt;
    uint64_t t0_ns;
    pthread_mutex_t mu;
    th_status err;
    char err_msg[512];
    char path[512];
};

th_telemetry_format th_telemetry_format_for(const char *path) {
    size_t n = strlen(path);
    if ((n >= 6 && strcmp(path + n - 6, ".jsonl") == 0) || (n >= 5 && strcmp(path + n - 5, ".json") == 0))
        return TH_TELEMETRY_JSONL;
    return TH_TELEMETRY_CSV;
}

th_status th_telemetry_open(const char *path, th_telemetry_format fmt, uint64_t t0_ns, th_telemetry **out) {
    th_telemetry *t = th_calloc(1, sizeof *t);
    if (!t) return th_fail(TH_ERR_NOMEM, "telemetry: out of memory");
    t->f = fopen(path, "w");
    if (!t->f) {
        th_status st = th_fail(TH_ERR_IO, "%s: cannot create telemetry log (%s)", path, strerror(errno));
        th_free(t);
        return st;
    }
    t->fmt = fmt;
    t->t0_ns = t0_ns;
    th_sense_fmt(t->path, sizeof t->path, "%s", path);
    pthread_mutex_init(&t->mu, NULL);
    if (fmt == TH_TELEMETRY_CSV && fprintf(t->f, "%s\n", header) < 0) {
        th_status st = th_fail(TH_ERR_IO, "%s: write failed (%s)", path, strerror(errno));
        fclose(t->f);
        pthread_mutex_destroy(&t->mu);
        th_free(t);
        return st;
    }
    *out = t;
    return TH_OK;
}

/* A row being built: one cell per column, "" = empty. */
typedef struct {
    char cell[15][112];
} row_buf;

enum { C_T, C_KIND, C_SOURCE, C_TEMP, C_POWER, C_ENERGY, C_UTIL, C_DUTY, C_THREADS, C_STEP, C_LOSS, C_GRAD, C_LR,
       C_TOKENS, C_STEP_MS, N_COLS };
static const char *col_names[N_COLS] = {"t_s",  "kind",    "source", "temp_c", "power_w",   "energy_j", "util",
                                        "duty", "threads", "step",   "loss",   "grad_norm", "lr",       "tokens",
                                        "step_ms"};

static void put_num(row_buf *r, int col, const char *fmt, double v) {
    if (isfinite(v)) th_sense_fmt(r->cell[col], sizeof r->cell[col], fmt, v);
}

/* Writes a row under the mutex; records the first error. */
static th_status emit(th_telemetry *t, const row_buf *r) {
    pthread_mutex_lock(&t->mu);
    if (t->err != TH_OK) {
        th_status st = th_fail(t->err, "%s", t->err_msg);
        pthread_mutex_unlock(&t->mu);
        return st;
    }
    int bad = 0;
    if (t->fmt == TH_TELEMETRY_CSV) {
        for (int c = 0; c < N_COLS && !bad; c++) {
            const char *v = r->cell[c];
            if (c > 0 && fputc(',', t->f) == EOF) bad = 1;
            if (c == C_SOURCE && strpbrk(v, ",\"\n\r")) {
                if (fputc('"', t->f) == EOF) bad = 1;
                for (const char *p = v; *p && !bad; p++)
                    if ((*p == '"' && fputc('"', t->f) == EOF) || fputc(*p, t->f) == EOF) bad = 1;
                if (fputc('"', t->f) == EOF) bad = 1;
            } else if (fputs(v, t->f) == EOF) {
                bad = 1;
            }
        }
        if (!bad && fputc('\n', t->f) == EOF) bad = 1;
    } else {
        if (fputc('{', t->f) == EOF) bad = 1;
        int first = 1;
        for (int c = 0; c < N_COLS && !bad; c++) {
            const char *v = r->cell[c];
            if (!v[0]) continue;
            if (fprintf(t->f, "%s\"%s\":", first ? "" : ",", col_names[c]) < 0) bad = 1;
            first = 0;
            if (c == C_KIND || c == C_SOURCE) {
                if (fputc('"', t->f) == EOF) bad = 1;
                for (const char *p = v; *p && !bad; p++) {
                    unsigned char ch = (unsigned char)*p;
                    if (ch == '"' || ch == '\\') bad = fprintf(t->f, "\\%c", ch) < 0;
                    else if (ch < 0x20) bad = fprintf(t->f, "\\u%04x", ch) < 0;
                    else bad = fputc(ch, t->f) == EOF;
                }
                if (fputc('"', t->f) == EOF) bad = 1;
            } else if (fputs(v, t->f) == EOF) {
                bad = 1;
            }
        }
        if (!bad && fputs("}\n", t->f) == EOF) bad = 1;
    }
    th_status st = TH_OK;
    if (bad) {
        t->err = TH_ERR_IO;
        th_sense_fmt(t->err_msg, sizeof t->err_msg, "%s: telemetry write failed (%s)", t->path, strerror(errno));
        st = th_fail(TH_ERR_IO, "%s", t->err_msg);
    }
    pthread_mutex_unlock(&t->mu);
    return st;
}

static double rel_s(const th_telemetry *t, uint64_t t_ns) {
    return t_ns >= t->t0_ns ? (double)(t_ns - t->t0_ns) / 1e9 : -(double)(t->t0_ns - t_ns) / 1e9;
}

th_status th_telemetry_add_sample(th_telemetry *t, const th_sample *s, double duty, int threads) {
    row_buf r;
    memset(&r, 0, sizeof r);
    put_num(&r, C_T, "%.6f", rel_s(t, s->t_ns));
    th_sense_fmt(r.cell[C_KIND], sizeof r.cell[C_KIND], "sample");
    th_sense_fmt(r.cell[C_SOURCE], sizeof r.cell[C_SOURCE], "%s", s->source);
    if (s->valid & TH_SAMPLE_TEMP) put_num(&r, C_TEMP, "%.3f", s->temp_mc / 1000.0);
    if (s->valid & TH_SAMPLE_POWER) put_num(&r, C_POWER, "%.6f", (double)s->power_uw / 1e6);
    if (s->valid & TH_SAMPLE_ENERGY) put_num(&r, C_ENERGY, "%.6f", (double)s->energy_uj / 1e6);
    if (s->valid & TH_SAMPLE_UTIL) put_num(&r, C_UTIL, "%.6f", s->util);
    put_num(&r, C_DUTY, "%.6f", duty);
    if (threads >= 0) th_sense_fmt(r.cell[C_THREADS], sizeof r.cell[C_THREADS], "%d", threads);
    return emit(t, &r);
}

th_status th_telemetry_add_step(th_telemetry *t, const th_telemetry_step *s) {
    row_buf r;
    memset(&r, 0, sizeof r);
    put_num(&r, C_T, "%.6f", rel_s(t, s->t_ns));
    th_sense_fmt(r.cell[C_KIND], sizeof r.cell[C_KIND], "step");
    put_num(&r, C_DUTY, "%.6f", s->duty);
    if (s->threads >= 0) th_sense_fmt(r.cell[C_THREADS], sizeof r.cell[C_THREADS], "%d", s->threads);
    if (s->step >= 0) th_sense_fmt(r.cell[C_STEP], sizeof r.cell[C_STEP], "%ld", s->step);
    put_num(&r, C_LOSS, "%.9g", s->loss);
    put_num(&r, C_GRAD, "%.9g", s->grad_norm);
    put_num(&r, C_LR, "%.9g", s->lr);
    if (s->tokens >= 0) th_sense_fmt(r.cell[C_TOKENS], sizeof r.cell[C_TOKENS], "%ld", s->tokens);
    if (s->step_ms >= 0) put_num(&r, C_STEP_MS, "%.3f", s->step_ms);
    return emit(t, &r);
}

th_status th_telemetry_flush(th_telemetry *t) {
    pthread_mutex_lock(&t->mu);
    if (t->err == TH_OK && fflush(t->f) != 0) {
        t->err = TH_ERR_IO;
        th_sense_fmt(t->err_msg, sizeof t->err_msg, "%s: telemetry flush failed (%s)", t->path, strerror(errno));
    }
    th_status st = t->err == TH_OK ? TH_OK : th_fail(t->err, "%s", t->err_msg);
    pthread_mutex_unlock(&t->mu);
    return st;
}

th_status th_telemetry_close(th_telemetry *t) {
    if (!t) return TH_OK;
    th_status st = th_telemetry_flush(t);
    if (fclose(t->f) != 0 && st == TH_OK)
        st = th_fail(TH_ERR_IO, "%s: telemetry close failed (%s)", t->path, strerror(errno));
    pthread_mutex_destroy(&t->mu);
    th_free(t);
    return st;
}

/* ---------------------------------------------------------------------------------
 * reader */

static const uint32_t col_bit[N_COLS] = {0, 0, 0, TH_COL_TEMP, TH_COL_POWER, TH_COL_ENERGY, TH_COL_UTIL,
                                         TH_COL_DUTY, TH_COL_THREADS, TH_COL_STEP, TH_COL_LOSS, TH_COL_GRAD_NORM,
                                         TH_COL_LR, TH_COL_TOKENS, TH_COL_STEP_MS};

static th_status set_num(th_telemetry_row *row, int c, double v, const char *where) {
    if (!isfinite(v)) return th_fail(TH_ERR_FORMAT, "%s: column %s is not a finite number", where, col_names[c]);
    int integral = c == C_THREADS || c == C_STEP || c == C_TOKENS;
    if (integral && (v != floor(v) || fabs(v) > 9e15))
        return th_fail(TH_ERR_FORMAT, "%s: column %s must be an integer", where, col_names[c]);
    switch (c) {
    case C_T: row->t_s = v; return TH_OK;
    case C_TEMP: row->temp_c = v; break;
    case C_POWER: row->power_w = v; break;
    case C_ENERGY: row->energy_j = v; break;
    case C_UTIL: row->util = v; break;
    case C_DUTY: row->duty = v; break;
    case C_THREADS: row->threads = (int)v; break;
    case C_STEP: row->step = (long)v; break;
    case C_LOSS: row->loss = v; break;
    case C_GRAD: row->grad_norm = v; break;
    case C_LR: row->lr = v; break;
    case C_TOKENS: row->tokens = (long)v; break;
    case C_STEP_MS: row->step_ms = v; break;
    }
    row->has |= col_bit[c];
    return TH_OK;
}

static th_status set_kind(th_telemetry_row *row, const char *v, const char *where) {
    if (strcmp(v, "sample") == 0) row->is_step = 0;
    else if (strcmp(v, "step") == 0) row->is_step = 1;
    else return th_fail(TH_ERR_FORMAT, "%s: kind must be 'sample' or 'step', got '%.20s'", where, v);
    return TH_OK;
}

/* Splits one CSV line into N_COLS cells in place (RFC 4180 quotes). */
static th_status split_csv(char *line, char **cells, const char *where) {
    int n = 0;
    char *p = line;
    for (;;) {
        if (n == N_COLS) return th_fail(TH_ERR_FORMAT, "%s: more than %d columns", where, N_COLS);
        if (*p == '"') {
            char *w = ++p;
            cells[n] = w;
            for (;;) {
                if (*p == '\0') return th_fail(TH_ERR_FORMAT, "%s: unterminated quote", where);
                if (*p == '"' && p[1] == '"') {
                    *w++ = '"';
                    p += 2;
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    *w++ = *p++;
                }
            }
            if (*p != ',' && *p != '\0') return th_fail(TH_ERR_FORMAT, "%s: text after a closing quote", where);
            char end = *p;
            *w = '\0';
            n++;
            if (end == '\0') break;
            p++;
        } else {
            cells[n++] = p;
            char *comma = strchr(p, ',');
            if (!comma) break;
            *comma = '\0';
            p = comma + 1;
        }
    }
    if (n != N_COLS) return th_fail(TH_ERR_FORMAT, "%s: %d columns, expected %d", where, n, N_COLS);
    return TH_OK;
}

static th_status parse_csv_row(char *line, th_telemetry_row *row, const char *where) {
    char *cells[N_COLS];
    th_status st = split_csv(line, cells, where);
    if (st != TH_OK) return st;
    if (!cells[C_T][0]) return th_fail(TH_ERR_FORMAT, "%s: t_s is empty", where);
    if ((st = set_kind(row, cells[C_KIND], where)) != TH_OK) return st;
    th_sense_fmt(row->source, sizeof row->source, "%s", cells[C_SOURCE]);
    for (int c = 0; c < N_COLS; c++) {
        if (c == C_KIND || c == C_SOURCE || !cells[c][0]) continue;
        char *end;
        errno = 0;
        double v = strtod(cells[c], &end);
        if (errno || end == cells[c] || *end)
            return th_fail(TH_ERR_FORMAT, "%s: column %s is not a number: '%.20s'", where, col_names[c], cells[c]);
        if ((st = set_num(row, c, v, where)) != TH_OK) return st;
    }
    return TH_OK;
}

static th_status parse_json_row(const char *line, th_telemetry_row *row, const char *where) {
    json_error_t err;
    json_t *o = json_loads(line, 0, &err);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return th_fail(TH_ERR_FORMAT, "%s: not a JSON object (%s)", where, o ? "" : err.text);
    }
    th_status st = TH_OK;
    const char *key;
    json_t *v;
    int have_t = 0, have_kind = 0;
    json_object_foreach(o, key, v) {
        int c = 0;
        while (c < N_COLS && strcmp(col_names[c], key) != 0) c++;
        if (c == N_COLS) {
            st = th_fail(TH_ERR_FORMAT, "%s: unknown key '%s'", where, key);
            break;
        }
        if (c == C_KIND || c == C_SOURCE) {
            if (!json_is_string(v)) {
                st = th_fail(TH_ERR_FORMAT, "%s: %s must be a string", where, key);
                break;
            }
            if (c == C_KIND) {
                if ((st = set_kind(row, json_string_value(v), where)) != TH_OK) break;
                have_kind = 1;
            } else {
                th_sense_fmt(row->source, sizeof row->source, "%s", json_string_value(v));
            }
        } else {
            if (!json_is_number(v)) {
                st = th_fail(TH_ERR_FORMAT, "%s: %s must be a number", where, key);
                break;
            }
            if ((st = set_num(row, c, json_number_value(v), where)) != TH_OK) break;
            have_t |= c == C_T;
        }
    }
    if (st == TH_OK && (!have_t || !have_kind)) st = th_fail(TH_ERR_FORMAT, "%s: t_s and kind are required", where);
    json_decref(o);
    return st;
}

th_status th_telemetry_read(const char *path, th_telemetry_row **rows_out, size_t *n_out) {
    FILE *f = fopen(path, "r");
    if (!f) return th_fail(TH_ERR_IO, "%s: cannot open telemetry file (%s)", path, strerror(errno));
    th_status st = TH_OK;
    th_telemetry_row *rows = NULL;
    size_t n = 0, cap = 0;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    long lineno = 0;
    int fmt = -1; /* decided by the first non-empty line */
    while ((len = getline(&line, &line_cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        char where[600];
        th_sense_fmt(where, sizeof where, "%s:%ld", path, lineno);
        if (fmt < 0) {
            if (line[0] == '{') {
                fmt = TH_TELEMETRY_JSONL;
            } else {
                fmt = TH_TELEMETRY_CSV;
                if (strcmp(line, header) != 0) {
                    st = th_fail(TH_ERR_FORMAT, "%s: not a telemetry header (expected '%s')", where, header);
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
        th_telemetry_row *row = &rows[n];
        memset(row, 0, sizeof *row);
        st = fmt == TH_TELEMETRY_CSV ? parse_csv_row(line, row, where) : parse_json_row(line, row, where);
        if (st != TH_OK) break;
        n++;
    }
    if (st == TH_OK && ferror(f)) st = th_fail(TH_ERR_IO, "%s: read error", path);
    free(line);
    fclose(f);
    if (st != TH_OK) {
        th_free(rows);
        return st;
    }
    *rows_out = rows;
    *n_out = n;
    return TH_OK;
}
