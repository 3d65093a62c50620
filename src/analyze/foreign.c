/* foreign.c: other tools' logs as telemetry rows, so `thermo analyze` runs on the logs
 * people already have: nvidia-smi's `--query-gpu=timestamp,temperature.gpu,power.draw,
 * utilization.gpu --format=csv[,nounits]` output (sample rows), and a training log, CSV or
 * JSONL, with a time column and a gradient-norm column (step rows). Times become wall-clock
 * seconds since the Unix epoch, so the two logs align by wall time. */
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "analyze/analyze_internal.h"

#define MAX_COLS 64

/* Cell text without the spaces nvidia-smi puts after each comma. */
static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

/* "2024/01/15 10:23:45.123", "2024-01-15T10:23:45.5Z", "2024-01-15 10:23:45": local time
 * unless it ends in Z (UTC). Returns 0 if the text is not such a time. */
static int parse_wall_time(const char *s, double *out) {
    int y, mo, d, h, mi, n = 0;
    double sec;
    char sep1, sep2, mid;
    if (sscanf(s, "%d%c%d%c%d%c%d:%d:%lf%n", &y, &sep1, &mo, &sep2, &d, &mid, &h, &mi, &sec, &n) != 9) return 0;
    if (sep1 != sep2 || (sep1 != '/' && sep1 != '-') || (mid != ' ' && mid != 'T')) return 0;
    const char *rest = s + n;
    int utc = *rest == 'Z';
    if (utc) rest++;
    if (*rest) return 0;
    struct tm tm = {0};
    tm.tm_year = y - 1900, tm.tm_mon = mo - 1, tm.tm_mday = d, tm.tm_hour = h, tm.tm_min = mi;
    tm.tm_sec = (int)floor(sec), tm.tm_isdst = -1;
    time_t t = utc ? timegm(&tm) : mktime(&tm);
    if (t == (time_t)-1) return 0;
    *out = (double)t + (sec - floor(sec));
    return 1;
}

/* A number with an optional unit suffix, converted to `want` ("W", "C", "%"): "45.2 W",
 * "45200 mW", "63", "[N/A]". Returns 1 (value), 0 (N/A or empty), -1 (not a number or a
 * unit that is not `want`'s; *why says which). */
static int parse_quantity(const char *s, const char *want, double *out, const char **why) {
    if (!*s || strstr(s, "N/A") || strstr(s, "Not Supported") || strstr(s, "Unknown")) return 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s || !isfinite(v)) return *why = "not a number", -1;
    while (*end == ' ') end++;
    double scale = 1;
    if (!*end) scale = 1;
    else if (!strcmp(want, "W") && !strcmp(end, "W")) scale = 1;
    else if (!strcmp(want, "W") && !strcmp(end, "mW")) scale = 1e-3;
    else if (!strcmp(want, "W") && !strcmp(end, "kW")) scale = 1e3;
    else if (!strcmp(want, "C") && (!strcmp(end, "C") || !strcmp(end, "°C"))) scale = 1;
    else if (!strcmp(want, "%") && !strcmp(end, "%")) scale = 1;
    else return *why = "a unit that does not belong to this column", -1;
    *out = v * scale;
    return 1;
}

/* The column whose header starts with one of `names` (a header cell may carry a unit,
 * "power.draw [W]"); the unit in brackets goes to unit (empty when none). -1: none. */
static int find_col(char **cells, int n, const char *const *names, char *unit, size_t unit_n) {
    for (const char *const *nm = names; *nm; nm++)
        for (int i = 0; i < n; i++) {
            size_t k = strlen(*nm);
            if (strncmp(cells[i], *nm, k) != 0 || (cells[i][k] && cells[i][k] != ' ')) continue;
            const char *b = strchr(cells[i] + k, '[');
            th_an_fmt(unit, unit_n, "%.*s", b ? (int)strcspn(b + 1, "]") : 0, b ? b + 1 : "");
            return i;
        }
    return -1;
}

int th_analyze_is_nvsmi_header(const char *line) {
    return strstr(line, "temperature.gpu") != NULL || strstr(line, "power.draw") != NULL;
}

static th_status grow(th_telemetry_row **rows, size_t n, size_t *cap, const char *path) {
    if (n < *cap) return TH_OK;
    size_t nc = *cap ? 2 * *cap : 256;
    th_telemetry_row *r = th_calloc(nc, sizeof *r);
    if (!r) return th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
    if (n) memcpy(r, *rows, n * sizeof *r);
    th_free(*rows);
    *rows = r, *cap = nc;
    return TH_OK;
}

static void note_bad(th_telemetry_read_report *rep, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note_bad(th_telemetry_read_report *rep, const char *fmt, ...) {
    if (!rep->bad_lines++) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(rep->first_bad, sizeof rep->first_bad, fmt, ap);
        va_end(ap);
    }
}

th_status th_analyze_read_nvsmi(const char *path, th_telemetry_row **rows_out, size_t *n_out,
                                th_analyze_foreign_report *rep) {
    memset(rep, 0, sizeof *rep);
    FILE *f = fopen(path, "r");
    if (!f) return th_fail(TH_ERR_IO, "%s: cannot open the nvidia-smi log", path);
    th_telemetry_row *rows = NULL;
    size_t n = 0, cap = 0, line_cap = 0;
    char *line = NULL, *cells[MAX_COLS];
    int c_time = -1, c_temp = -1, c_pow = -1, c_util = -1, ncols = 0;
    char u_temp[16] = "", u_pow[16] = "", u_util[16] = "";
    long lineno = 0;
    double last_t = NAN;
    th_status st = TH_OK;
    static const char *const n_time[] = {"timestamp", NULL}, *const n_temp[] = {"temperature.gpu", NULL},
                             *const n_pow[] = {"power.draw", "power.draw.average", "power.draw.instant", NULL},
                             *const n_util[] = {"utilization.gpu", NULL};
    while (getline(&line, &line_cap, f) >= 0) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (!*trim(line)) continue;
        int nc = th_csv_split(line, cells, MAX_COLS);
        for (int i = 0; i < nc; i++) cells[i] = trim(cells[i]);
        if (!ncols) { /* the header */
            ncols = nc;
            c_time = find_col(cells, nc, n_time, u_temp, sizeof u_temp);
            c_temp = find_col(cells, nc, n_temp, u_temp, sizeof u_temp);
            c_pow = find_col(cells, nc, n_pow, u_pow, sizeof u_pow);
            c_util = find_col(cells, nc, n_util, u_util, sizeof u_util);
            if (c_time < 0) {
                st = th_fail(TH_ERR_FORMAT, "%s:%ld: no timestamp column in the nvidia-smi header (query timestamp first)",
                             path, lineno);
                break;
            }
            if (c_temp < 0) th_an_fmt(rep->missing, sizeof rep->missing, "%s: no temperature.gpu column", path);
            else if (c_pow < 0) th_an_fmt(rep->missing, sizeof rep->missing, "%s: no power.draw column", path);
            if (u_pow[0] && strcmp(u_pow, "W") != 0) {
                st = th_fail(TH_ERR_FORMAT, "%s:%ld: power.draw is in [%s]; expected [W]", path, lineno, u_pow);
                break;
            }
            continue;
        }
        if (nc != ncols) {
            note_bad(&rep->read, "%s:%ld: %d columns, the header has %d", path, lineno, nc, ncols);
            continue;
        }
        if ((st = grow(&rows, n, &cap, path)) != TH_OK) break;
        th_telemetry_row *r = &rows[n];
        memset(r, 0, sizeof *r);
        if (!parse_wall_time(cells[c_time], &r->t_s)) {
            note_bad(&rep->read, "%s:%ld: column timestamp: '%.40s' is not a time (YYYY/MM/DD HH:MM:SS.mmm)", path, lineno,
                     cells[c_time]);
            continue;
        }
        if (r->t_s == last_t) { /* one line per GPU at each timestamp: the first GPU's */
            rep->other_gpu_lines++;
            continue;
        }
        last_t = r->t_s;
        r->kind = TH_ROW_SAMPLE;
        r->origin = TH_ORIGIN_MEASURED;
        r->has = TH_COL_ORIGIN;
        th_an_fmt(r->source, sizeof r->source, "nvidia-smi");
        struct {
            int col;
            const char *name, *unit;
            double *dst;
            uint32_t bit;
        } q[3] = {{c_temp, "temperature.gpu", "C", &r->temp_c, TH_COL_TEMP},
                  {c_pow, "power.draw", "W", &r->power_w, TH_COL_POWER},
                  {c_util, "utilization.gpu", "%", &r->util, TH_COL_UTIL}};
        for (int k = 0; k < 3; k++) {
            if (q[k].col < 0) continue;
            const char *why = "";
            int got = parse_quantity(cells[q[k].col], q[k].unit, q[k].dst, &why);
            if (got > 0) r->has |= q[k].bit;
            else if (got == 0 && !rep->na_lines++)
                th_an_fmt(rep->first_na, sizeof rep->first_na, "%s:%ld: column %s is '%s' (not available)", path, lineno,
                          q[k].name, cells[q[k].col]);
            else if (got < 0)
                note_bad(&rep->read, "%s:%ld: column %s: '%.30s' is %s; the cell is left out", path, lineno, q[k].name,
                         cells[q[k].col], why);
        }
        if (r->has & TH_COL_UTIL) r->util /= 100.0;
        n++;
    }
    free(line); /* getline's */
    fclose(f);
    if (st == TH_OK && !ncols) st = th_fail(TH_ERR_FORMAT, "%s: the nvidia-smi log is empty", path);
    if (st == TH_OK && !n) st = th_fail(TH_ERR_FORMAT, "%s: no readable line after the header", path);
    if (st != TH_OK) {
        th_free(rows);
        return st;
    }
    rep->read.rows = n;
    *rows_out = rows, *n_out = n;
    return TH_OK;
}

/* ---------------------------------------------------------------------------------
 * training logs */

static const char *const default_time_cols[] = {"timestamp", "_timestamp", "time", "wall_time", "t_s", NULL};
static const char *const default_grad_cols[] = {"grad_norm", "train/grad_norm", "gradient_norm", "grad-norm", NULL};

/* A time cell: seconds (a number: epoch or any other clock the user offsets) or a date. */
static int parse_time_cell(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end != s && !*end && isfinite(v)) return *out = v, 1;
    return parse_wall_time(s, out);
}

static int pick(const char *want, const char *const *defaults, char **names, int n) {
    for (int i = 0; want && i < n; i++)
        if (!strcmp(names[i], want)) return i;
    if (want) return -1;
    for (const char *const *d = defaults; *d; d++)
        for (int i = 0; i < n; i++)
            if (!strcmp(names[i], *d)) return i;
    return -1;
}

static void join_names(char *dst, size_t cap, const char *want, const char *const *defaults) {
    if (want) {
        th_an_fmt(dst, cap, "'%s'", want);
        return;
    }
    size_t w = 0;
    dst[0] = '\0';
    for (const char *const *d = defaults; *d && w + 1 < cap; d++)
        w += (size_t)snprintf(dst + w, cap - w, "%s'%s'", w ? ", " : "", *d);
}

/* A JSON value as text for the cell parser (numbers and strings; anything else: ""). */
static void json_cell(json_t *v, char *buf, size_t n) {
    if (json_is_string(v)) th_an_fmt(buf, n, "%s", json_string_value(v));
    else if (json_is_number(v)) th_an_fmt(buf, n, "%.17g", json_number_value(v));
    else buf[0] = '\0';
}

th_status th_analyze_read_steps(const char *path, const char *time_col, const char *grad_col, th_telemetry_row **rows_out,
                                size_t *n_out, th_analyze_foreign_report *rep) {
    memset(rep, 0, sizeof *rep);
    FILE *f = fopen(path, "r");
    if (!f) return th_fail(TH_ERR_IO, "%s: cannot open the training log", path);
    th_telemetry_row *rows = NULL;
    size_t n = 0, cap = 0, line_cap = 0;
    char *line = NULL, *cells[MAX_COLS], *names[MAX_COLS], hdr_copy[8192], tcell[128], gcell[128];
    int ncols = 0, c_t = -1, c_g = -1, jsonl = -1;
    long lineno = 0;
    th_status st = TH_OK;
    while (getline(&line, &line_cap, f) >= 0) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (!*trim(line)) continue;
        if (jsonl < 0) jsonl = line[0] == '{';
        const char *tv = NULL, *gv = NULL;
        json_t *o = NULL;
        if (jsonl) {
            json_error_t err;
            o = json_loads(line, 0, &err);
            if (!json_is_object(o)) {
                json_decref(o);
                note_bad(&rep->read, "%s:%ld: not a JSON object", path, lineno);
                continue;
            }
            const char *key;
            json_t *v;
            int nk = 0;
            json_object_foreach(o, key, v) if (nk < MAX_COLS) names[nk++] = (char *)key;
            c_t = pick(time_col, default_time_cols, names, nk);
            c_g = pick(grad_col, default_grad_cols, names, nk);
            if (c_t >= 0) json_cell(json_object_get(o, names[c_t]), tcell, sizeof tcell), tv = tcell;
            if (c_g >= 0) json_cell(json_object_get(o, names[c_g]), gcell, sizeof gcell), gv = gcell;
            json_decref(o);
            if (!tv) { /* a record without the time key (an eval line, say): not a step */
                rep->other_lines++;
                continue;
            }
        } else {
            int nc = th_csv_split(line, cells, MAX_COLS);
            for (int i = 0; i < nc; i++) cells[i] = trim(cells[i]);
            if (!ncols) {
                ncols = nc;
                th_an_fmt(hdr_copy, sizeof hdr_copy, "%s", "");
                size_t w = 0;
                for (int i = 0; i < nc; i++) { /* keep the names: the line buffer is reused */
                    size_t k = strlen(cells[i]) + 1;
                    if (w + k > sizeof hdr_copy) break;
                    memcpy(hdr_copy + w, cells[i], k);
                    names[i] = hdr_copy + w, w += k;
                }
                c_t = pick(time_col, default_time_cols, names, nc);
                c_g = pick(grad_col, default_grad_cols, names, nc);
                char want[200];
                if (c_t < 0) {
                    join_names(want, sizeof want, time_col, default_time_cols);
                    st = th_fail(TH_ERR_FORMAT, "%s:%ld: no time column (looked for %s; name it with --time-col)", path,
                                 lineno, want);
                    break;
                }
                if (c_g < 0) {
                    join_names(want, sizeof want, grad_col, default_grad_cols);
                    st = th_fail(TH_ERR_FORMAT, "%s:%ld: no gradient-norm column (looked for %s; name it with --grad-col)",
                                 path, lineno, want);
                    break;
                }
                continue;
            }
            if (nc != ncols) {
                note_bad(&rep->read, "%s:%ld: %d columns, the header has %d", path, lineno, nc, ncols);
                continue;
            }
            tv = cells[c_t], gv = cells[c_g];
        }
        double t, g = NAN;
        if (!parse_time_cell(tv, &t)) {
            note_bad(&rep->read, "%s:%ld: column %s: '%.40s' is not a time", path, lineno,
                     jsonl ? (time_col ? time_col : "time") : names[c_t], tv);
            continue;
        }
        if ((st = grow(&rows, n, &cap, path)) != TH_OK) break;
        th_telemetry_row *r = &rows[n++];
        memset(r, 0, sizeof *r);
        r->t_s = t, r->kind = TH_ROW_STEP, r->is_step = 1;
        char *end;
        if (gv && *gv) g = strtod(gv, &end);
        if (gv && *gv && (*end || !isfinite(g) || g < 0)) {
            note_bad(&rep->read, "%s:%ld: column %s: '%.30s' is not a gradient norm; the cell is left out", path, lineno,
                     jsonl ? (grad_col ? grad_col : "grad_norm") : names[c_g], gv);
        } else if (gv && *gv) {
            r->grad_norm = g, r->has |= TH_COL_GRAD_NORM;
        } else if (!rep->na_lines++) {
            th_an_fmt(rep->first_na, sizeof rep->first_na, "%s:%ld: no gradient norm on this line", path, lineno);
        }
    }
    free(line); /* getline's */
    fclose(f);
    if (st == TH_OK && jsonl < 0) st = th_fail(TH_ERR_FORMAT, "%s: the training log is empty", path);
    if (st == TH_OK && !n) {
        char want[200];
        join_names(want, sizeof want, time_col, default_time_cols);
        st = th_fail(TH_ERR_FORMAT, "%s: no line with a time (looked for %s)", path, want);
    }
    if (st != TH_OK) {
        th_free(rows);
        return st;
    }
    rep->read.rows = n;
    *rows_out = rows, *n_out = n;
    return TH_OK;
}
