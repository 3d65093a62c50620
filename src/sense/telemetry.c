/* telemetry.c: the telemetry log (samples with the decision made on each, and the work
 * loop's steps and tokens; one file, one clock) as CSV or JSONL, and its one reader, used
 * by trace replay and the analysis tools: strict, or tolerant of damaged lines, and able
 * to read the previous format. Appends take one mutex around a buffered write, so the
 * work loop waits at most for another row's formatting. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sense/sense_internal.h"

/* The columns, in file order; C_OLD_DUTY is the previous format's single duty column,
 * known to the reader only. */
enum {
    C_T, C_KIND, C_ORIGIN, C_SOURCE, C_TEMP, C_POWER, C_ENERGY, C_UTIL, C_HEALTH, C_DUTY_SET, C_DUTY_MEASURED,
    C_THREADS, C_STEP, C_LOSS, C_GRAD, C_LR, C_TOKENS, C_STEP_MS, C_UNIT_J, N_COLS,
    C_OLD_DUTY = N_COLS, N_KNOWN
};
static const char *const col_names[N_KNOWN] = {
    "t_s",     "kind", "origin",    "source", "temp_c", "power_w", "energy_j", "util",    "health", "duty_set",
    "duty_measured", "threads", "step", "loss", "grad_norm", "lr", "tokens", "step_ms", "unit_j", "duty"};
static const uint32_t col_bit[N_KNOWN] = {
    0, 0, TH_COL_ORIGIN, 0, TH_COL_TEMP, TH_COL_POWER, TH_COL_ENERGY, TH_COL_UTIL, TH_COL_HEALTH, TH_COL_DUTY_SET,
    TH_COL_DUTY_MEASURED, TH_COL_THREADS, TH_COL_STEP, TH_COL_LOSS, TH_COL_GRAD_NORM, TH_COL_LR, TH_COL_TOKENS,
    TH_COL_STEP_MS, TH_COL_UNIT_J, 0};
/* The previous format's header, column by column. */
static const int old_cols[] = {C_T,       C_KIND,    C_SOURCE, C_TEMP, C_POWER, C_ENERGY, C_UTIL,   C_OLD_DUTY,
                               C_THREADS, C_STEP,    C_LOSS,   C_GRAD, C_LR,    C_TOKENS, C_STEP_MS};
#define N_OLD_COLS ((int)(sizeof old_cols / sizeof old_cols[0]))
#define MAX_HEADER_COLS 64

static int is_text(int c) { return c == C_KIND || c == C_ORIGIN || c == C_SOURCE || c == C_HEALTH; }

static const char *const kind_names[] = {"sample", "step", "token"};

const char *th_origin_name(th_origin o) {
    switch (o) {
    case TH_ORIGIN_MEASURED: return "measured";
    case TH_ORIGIN_MODELED: return "modeled";
    case TH_ORIGIN_REPLAYED: return "replayed";
    }
    return "unknown";
}

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

static int write_header(FILE *f) {
    for (int c = 0; c < N_COLS; c++)
        if (fprintf(f, "%s%s", c ? "," : "", col_names[c]) < 0) return -1;
    return fputc('\n', f) == EOF ? -1 : 0;
}

th_status th_telemetry_open(const char *path, th_telemetry_format fmt, uint64_t t0_ns, th_telemetry **out) {
    th_status st = TH_OK;
    th_telemetry *t = th_calloc(1, sizeof *t);
    if (!t) return th_fail(TH_ERR_NOMEM, "telemetry: out of memory");
    t->f = fopen(path, "w");
    if (!t->f) {
        st = th_fail(TH_ERR_IO, "%s: cannot create telemetry log (%s)", path, strerror(errno));
        goto done;
    }
    t->fmt = fmt;
    t->t0_ns = t0_ns;
    th_fmt(t->path, sizeof t->path, "%s", path);
    if (fmt == TH_TELEMETRY_CSV && write_header(t->f) != 0) {
        st = th_fail(TH_ERR_IO, "%s: write failed (%s)", path, strerror(errno));
        goto done;
    }
    pthread_mutex_init(&t->mu, NULL);
    *out = t;
    t = NULL;
done:
    if (t) {
        if (t->f) fclose(t->f);
        th_free(t);
    }
    return st;
}

/* A row being built: one cell per column, "" = empty. */
typedef struct {
    char cell[N_COLS][112];
} row_buf;

static void put_num(row_buf *r, int col, const char *fmt, double v) {
    if (isfinite(v)) th_fmt(r->cell[col], sizeof r->cell[col], fmt, v);
}

static void put_text(row_buf *r, int col, const char *v) { th_fmt(r->cell[col], sizeof r->cell[col], "%s", v); }

static void put_pace(row_buf *r, const th_telemetry_pace *p) {
    if (!p) return;
    put_num(r, C_DUTY_SET, "%.6f", p->duty_set);
    put_num(r, C_DUTY_MEASURED, "%.6f", p->duty_measured);
    if (p->threads >= 0) th_fmt(r->cell[C_THREADS], sizeof r->cell[C_THREADS], "%d", p->threads);
}

/* One CSV cell, quoted (RFC 4180) when it holds a comma, quote or line break. */
static int put_csv_cell(FILE *f, const char *v) {
    if (!strpbrk(v, ",\"\n\r")) return fputs(v, f) == EOF;
    if (fputc('"', f) == EOF) return 1;
    for (const char *p = v; *p; p++)
        if ((*p == '"' && fputc('"', f) == EOF) || fputc(*p, f) == EOF) return 1;
    return fputc('"', f) == EOF;
}

static int put_json_string(FILE *f, const char *v) {
    if (fputc('"', f) == EOF) return 1;
    for (const char *p = v; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        int bad = ch == '"' || ch == '\\' ? fprintf(f, "\\%c", ch) < 0
                  : ch < 0x20             ? fprintf(f, "\\u%04x", ch) < 0
                                          : fputc(ch, f) == EOF;
        if (bad) return 1;
    }
    return fputc('"', f) == EOF;
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
            if (c > 0 && fputc(',', t->f) == EOF) bad = 1;
            if (!bad) bad = put_csv_cell(t->f, r->cell[c]);
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
            if (!bad) bad = is_text(c) ? put_json_string(t->f, v) : fputs(v, t->f) == EOF;
        }
        if (!bad && fputs("}\n", t->f) == EOF) bad = 1;
    }
    th_status st = TH_OK;
    if (bad) {
        t->err = TH_ERR_IO;
        th_fmt(t->err_msg, sizeof t->err_msg, "%s: telemetry write failed (%s)", t->path, strerror(errno));
        st = th_fail(TH_ERR_IO, "%s", t->err_msg);
    }
    pthread_mutex_unlock(&t->mu);
    return st;
}

static double rel_s(const th_telemetry *t, uint64_t t_ns) {
    return t_ns >= t->t0_ns ? (double)(t_ns - t->t0_ns) / 1e9 : -(double)(t->t0_ns - t_ns) / 1e9;
}

th_status th_telemetry_add_sample(th_telemetry *t, const th_sample *s, th_sense_health h, const th_telemetry_pace *p) {
    row_buf r;
    memset(&r, 0, sizeof r);
    put_num(&r, C_T, "%.6f", rel_s(t, s->t_ns));
    put_text(&r, C_KIND, kind_names[TH_ROW_SAMPLE]);
    put_text(&r, C_ORIGIN, th_origin_name(s->origin));
    put_text(&r, C_SOURCE, s->source);
    if (s->valid & TH_SAMPLE_TEMP) put_num(&r, C_TEMP, "%.3f", s->temp_mc / 1000.0);
    if (s->valid & TH_SAMPLE_POWER) put_num(&r, C_POWER, "%.6f", (double)s->power_uw / 1e6);
    if (s->valid & TH_SAMPLE_ENERGY) put_num(&r, C_ENERGY, "%.6f", (double)s->energy_uj / 1e6);
    if (s->valid & TH_SAMPLE_UTIL) put_num(&r, C_UTIL, "%.6f", s->util);
    put_text(&r, C_HEALTH, th_sense_health_name(h));
    put_pace(&r, p);
    return emit(t, &r);
}

th_status th_telemetry_add_unit(th_telemetry *t, const th_telemetry_unit *u) {
    row_buf r;
    memset(&r, 0, sizeof r);
    put_num(&r, C_T, "%.6f", rel_s(t, u->t_ns));
    put_text(&r, C_KIND, kind_names[u->kind == TH_UNIT_TOKEN ? TH_ROW_TOKEN : TH_ROW_STEP]);
    put_text(&r, C_ORIGIN, th_origin_name(u->origin));
    put_pace(&r, &u->pace);
    if (u->step >= 0) th_fmt(r.cell[C_STEP], sizeof r.cell[C_STEP], "%ld", u->step);
    put_num(&r, C_LOSS, "%.9g", u->loss);
    put_num(&r, C_GRAD, "%.9g", u->grad_norm);
    put_num(&r, C_LR, "%.9g", u->lr);
    if (u->tokens >= 0) th_fmt(r.cell[C_TOKENS], sizeof r.cell[C_TOKENS], "%ld", u->tokens);
    if (u->step_ms >= 0) put_num(&r, C_STEP_MS, "%.3f", u->step_ms);
    put_num(&r, C_UNIT_J, "%.9g", u->unit_j);
    return emit(t, &r);
}

th_status th_telemetry_flush(th_telemetry *t) {
    pthread_mutex_lock(&t->mu);
    if (t->err == TH_OK && fflush(t->f) != 0) {
        t->err = TH_ERR_IO;
        th_fmt(t->err_msg, sizeof t->err_msg, "%s: telemetry flush failed (%s)", t->path, strerror(errno));
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

/* One row being parsed: the row, and the previous format's duty if the line had one. */
typedef struct {
    th_telemetry_row *row;
    int have_kind, have_t;
    double old_duty;
    int have_old_duty;
    const char *where;
} row_parse;

static th_status set_num(row_parse *rp, int c, double v) {
    th_telemetry_row *row = rp->row;
    if (!isfinite(v)) return th_fail(TH_ERR_FORMAT, "%s: column %s is not a finite number", rp->where, col_names[c]);
    int integral = c == C_THREADS || c == C_STEP || c == C_TOKENS;
    if (integral && (v != floor(v) || fabs(v) > 9e15))
        return th_fail(TH_ERR_FORMAT, "%s: column %s must be an integer", rp->where, col_names[c]);
    switch (c) {
    case C_T: row->t_s = v; rp->have_t = 1; return TH_OK;
    case C_OLD_DUTY: rp->old_duty = v; rp->have_old_duty = 1; return TH_OK;
    case C_TEMP: row->temp_c = v; break;
    case C_POWER: row->power_w = v; break;
    case C_ENERGY: row->energy_j = v; break;
    case C_UTIL: row->util = v; break;
    case C_DUTY_SET: row->duty_set = v; break;
    case C_DUTY_MEASURED: row->duty_measured = v; break;
    case C_THREADS: row->threads = (int)v; break;
    case C_STEP: row->step = (long)v; break;
    case C_LOSS: row->loss = v; break;
    case C_GRAD: row->grad_norm = v; break;
    case C_LR: row->lr = v; break;
    case C_TOKENS: row->tokens = (long)v; break;
    case C_STEP_MS: row->step_ms = v; break;
    case C_UNIT_J: row->unit_j = v; break;
    }
    row->has |= col_bit[c];
    return TH_OK;
}

static th_status set_text(row_parse *rp, int c, const char *v) {
    th_telemetry_row *row = rp->row;
    if (c == C_SOURCE) {
        th_fmt(row->source, sizeof row->source, "%s", v);
    } else if (c == C_KIND) {
        int k = 0;
        while (k < 3 && strcmp(v, kind_names[k]) != 0) k++;
        if (k == 3) return th_fail(TH_ERR_FORMAT, "%s: kind must be sample, step or token, got '%.20s'", rp->where, v);
        row->kind = (th_row_kind)k;
        rp->have_kind = 1;
    } else if (c == C_ORIGIN) {
        th_origin o = TH_ORIGIN_MEASURED;
        while (o <= TH_ORIGIN_REPLAYED && strcmp(v, th_origin_name(o)) != 0) o++;
        if (o > TH_ORIGIN_REPLAYED)
            return th_fail(TH_ERR_FORMAT, "%s: origin must be measured, modeled or replayed, got '%.20s'", rp->where, v);
        row->origin = o;
        row->has |= TH_COL_ORIGIN;
    } else {
        th_sense_health h = TH_HEALTH_OK;
        while (h <= TH_HEALTH_NONSENSE && strcmp(v, th_sense_health_name(h)) != 0) h++;
        if (h > TH_HEALTH_NONSENSE) return th_fail(TH_ERR_FORMAT, "%s: unknown health '%.20s'", rp->where, v);
        row->health = h;
        row->has |= TH_COL_HEALTH;
    }
    return TH_OK;
}

/* One CSV cell of column c (empty: absent, except t_s and kind, which are required). */
static th_status set_cell(row_parse *rp, int c, const char *v) {
    if (c == C_T && !v[0]) return th_fail(TH_ERR_FORMAT, "%s: t_s is empty", rp->where);
    if (c != C_KIND && !v[0]) return TH_OK;
    if (is_text(c)) return set_text(rp, c, v);
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end)
        return th_fail(TH_ERR_FORMAT, "%s: column %s is not a number: '%.20s'", rp->where, col_names[c], v);
    return set_num(rp, c, x);
}

/* The previous format, read in this one place: its one duty column meant the published
 * duty on sample rows and the measured duty on step rows, and it had no origin column, so
 * a sample's origin is taken from its source name, where "sim:" meant the simulated plant.
 * Returns 1 if the row was in the previous format. */
static int upgrade_previous_format(row_parse *rp) {
    th_telemetry_row *row = rp->row;
    int old = 0;
    if (rp->have_old_duty) {
        if (row->kind == TH_ROW_SAMPLE) {
            row->duty_set = rp->old_duty;
            row->has |= TH_COL_DUTY_SET;
        } else {
            row->duty_measured = rp->old_duty;
            row->has |= TH_COL_DUTY_MEASURED;
        }
        old = 1;
    }
    if (!(row->has & TH_COL_ORIGIN) && row->source[0]) {
        row->origin = strncmp(row->source, "sim:", 4) == 0 ? TH_ORIGIN_MODELED : TH_ORIGIN_MEASURED;
        row->has |= TH_COL_ORIGIN;
        old = 1;
    }
    return old;
}

typedef struct {
    const char *path;
    int tolerant;
    int fmt; /* -1 until the first non-empty line */
    int ncols;
    int map[MAX_HEADER_COLS]; /* header cell -> column, -1: unknown (tolerant mode ignores it) */
    int has_kind_col;
} reader;

static int col_index(const char *name) {
    for (int c = 0; c < N_KNOWN; c++)
        if (strcmp(col_names[c], name) == 0) return c;
    return -1;
}

/* The CSV header: strict mode takes this format's or the previous one's exactly; tolerant
 * mode any set of named columns with t_s among them. */
static th_status read_header(reader *rd, char *line, const char *where) {
    char *cells[MAX_HEADER_COLS];
    int n = th_csv_split(line, cells, MAX_HEADER_COLS);
    int have_t = 0, exact = n == N_COLS, old = n == N_OLD_COLS;
    for (int i = 0; i < n; i++) {
        rd->map[i] = col_index(cells[i]);
        have_t |= rd->map[i] == C_T;
        rd->has_kind_col |= rd->map[i] == C_KIND;
        exact &= rd->map[i] == i;
        old = old && rd->map[i] == old_cols[i]; // short-circuit: old_cols has N_OLD_COLS entries
    }
    rd->ncols = n;
    if (rd->tolerant && n > 0 && have_t) return TH_OK;
    if (!rd->tolerant && (exact || old)) return TH_OK;
    if (rd->tolerant) return th_fail(TH_ERR_FORMAT, "%s: the header has no t_s column (not a telemetry log?)", where);
    char want[400];
    size_t w = 0;
    for (int c = 0; c < N_COLS; c++) w += (size_t)snprintf(want + w, sizeof want - w, "%s%s", c ? "," : "", col_names[c]);
    return th_fail(TH_ERR_FORMAT, "%s: not a telemetry header (expected '%s')", where, want);
}

static th_status parse_csv_row(reader *rd, char *line, row_parse *rp) {
    char *cells[MAX_HEADER_COLS];
    int n = th_csv_split(line, cells, MAX_HEADER_COLS);
    if (n < 0) return th_fail(TH_ERR_FORMAT, "%s: more than %d columns or an unterminated quote", rp->where, rd->ncols);
    if (n != rd->ncols) return th_fail(TH_ERR_FORMAT, "%s: %d columns, expected %d", rp->where, n, rd->ncols);
    th_status st = TH_OK;
    for (int i = 0; i < n && st == TH_OK; i++)
        if (rd->map[i] >= 0) st = set_cell(rp, rd->map[i], cells[i]);
    return st;
}

static th_status parse_json_row(reader *rd, const char *line, row_parse *rp) {
    json_error_t err;
    json_t *o = json_loads(line, 0, &err);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return th_fail(TH_ERR_FORMAT, "%s: not a JSON object (%s)", rp->where, o ? "" : err.text);
    }
    th_status st = TH_OK;
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v) {
        int c = col_index(key);
        if (c < 0) {
            if (rd->tolerant) continue; /* an extra key is not damage */
            st = th_fail(TH_ERR_FORMAT, "%s: unknown key '%s'", rp->where, key);
            break;
        }
        if (is_text(c) != json_is_string(v) || (!is_text(c) && !json_is_number(v))) {
            st = th_fail(TH_ERR_FORMAT, "%s: %s must be a %s", rp->where, key, is_text(c) ? "string" : "number");
            break;
        }
        st = is_text(c) ? set_text(rp, c, json_string_value(v)) : set_num(rp, c, json_number_value(v));
        if (st != TH_OK) break;
    }
    json_decref(o);
    return st;
}

/* Parses one line into *row; kind and t_s are required, except that tolerant mode infers
 * a missing kind (a log reduced to a few columns). */
static th_status parse_row(reader *rd, char *line, th_telemetry_row *row, const char *where, int *old) {
    memset(row, 0, sizeof *row);
    row_parse rp = {.row = row, .where = where};
    th_status st = rd->fmt == TH_TELEMETRY_CSV ? parse_csv_row(rd, line, &rp) : parse_json_row(rd, line, &rp);
    if (st != TH_OK) return st;
    if (!rp.have_kind && rd->tolerant && (rd->fmt == TH_TELEMETRY_JSONL || !rd->has_kind_col)) {
        row->kind = (row->has & (TH_COL_STEP | TH_COL_GRAD_NORM | TH_COL_LOSS)) ? TH_ROW_STEP : TH_ROW_SAMPLE;
        rp.have_kind = 1;
    }
    if (!rp.have_t || !rp.have_kind) return th_fail(TH_ERR_FORMAT, "%s: t_s and kind are required", where);
    row->is_step = row->kind != TH_ROW_SAMPLE;
    *old |= upgrade_previous_format(&rp);
    return TH_OK;
}

th_status th_telemetry_read_opts(const char *path, const th_telemetry_read_options *opts, th_telemetry_row **rows_out,
                                 size_t *n_out, th_telemetry_read_report *rep_out) {
    reader rd = {.path = path, .tolerant = opts && opts->tolerant, .fmt = -1};
    th_telemetry_read_report rep;
    memset(&rep, 0, sizeof rep);
    th_telemetry_row *rows = NULL;
    size_t n = 0, cap = 0;
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    long lineno = 0;
    th_status st = TH_OK;
    FILE *f = fopen(path, "r");
    if (!f) return th_fail(TH_ERR_IO, "%s: cannot open telemetry file (%s)", path, strerror(errno));
    while ((len = getline(&line, &line_cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        char where[600];
        th_fmt(where, sizeof where, "%s:%ld", path, lineno);
        if (rd.fmt < 0) {
            rd.fmt = line[0] == '{' ? TH_TELEMETRY_JSONL : TH_TELEMETRY_CSV;
            if (rd.fmt == TH_TELEMETRY_CSV) {
                if ((st = read_header(&rd, line, where)) != TH_OK) break;
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
        st = parse_row(&rd, line, &rows[n], where, &rep.old_format);
        if (st == TH_OK) {
            n++;
        } else if (rd.tolerant && st == TH_ERR_FORMAT) {
            if (!rep.bad_lines) {
                rep.first_bad_line = lineno;
                th_fmt(rep.first_bad, sizeof rep.first_bad, "%s", th_last_error());
            }
            rep.bad_lines++;
            if (opts->on_bad_line) opts->on_bad_line(lineno, th_last_error(), opts->user);
            st = TH_OK;
        } else {
            break;
        }
    }
    if (st == TH_OK && ferror(f)) st = th_fail(TH_ERR_IO, "%s: read error", path);
    if (st == TH_OK && rd.tolerant && rd.fmt < 0) st = th_fail(TH_ERR_FORMAT, "%s: the telemetry log is empty", path);
    if (st == TH_OK && rd.tolerant && n == 0)
        st = th_fail(TH_ERR_FORMAT, "%s: no readable row (%zu line%s skipped)", path, rep.bad_lines,
                     rep.bad_lines == 1 ? "" : "s");
    free(line); /* getline's buffer comes from malloc */
    fclose(f);
    if (st != TH_OK) {
        th_free(rows);
        return st;
    }
    rep.rows = n;
    *rows_out = rows;
    *n_out = n;
    if (rep_out) *rep_out = rep;
    return TH_OK;
}

th_status th_telemetry_read(const char *path, th_telemetry_row **rows, size_t *n) {
    return th_telemetry_read_opts(path, NULL, rows, n, NULL);
}
