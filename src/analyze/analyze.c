/* analyze.c: the coupling analysis (DESIGN §5): alignment of sample and step rows on a
 * 1 Hz grid, the figures and the reproducibility comparison (the first-order fit: fit.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "analyze/analyze_internal.h"

th_analyze_opts th_analyze_defaults(void) {
    th_analyze_opts o;
    memset(&o, 0, sizeof o);
    o.hz = 1.0;
    o.tolerance_s = 2.0;
    o.window_s = 10.0;
    o.slope_window_s = 5.0;
    o.max_lag = 3;
    o.ambient_c = o.p_ref_w = o.p_idle_w = NAN;
    return o;
}

/* ---------------------------------------------------------------------------------
 * the analysis' fixed choices */

#define AN_MIN_PAIRS 8              /* a Pearson r needs this many finite pairs */
#define AN_XCORR_MIN_SECONDS 30     /* fewer aligned seconds: r_peak is flagged as unreliable */
#define AN_SLOPE_MIN_C_PER_S 0.05   /* |dT/dt| below this: no transient, τ_local not formed */
#define AN_DT_MIN_C 1.0             /* T − T_amb at or below this: hA = P/(T − T_amb) left out */
#define AN_TAU_LOCAL_MAX_RECORDS 10 /* a local τ longer than 10x the record is noise */
#define AN_FULL_RATE_QUANTILE 0.9   /* the full-duty token rate: 90th percentile of busy rates */
#define AN_P_IDLE_QUANTILE 0.05     /* P_idle without a profile: 5th percentile of power */
#define AN_DETREND_HALF_S 7.0       /* the cross-correlation's high-pass: a centered 15 s moving average */
#define AN_AVG_SCAN 64              /* avg_width looks past at most this many repeated times */
#define AN_NVSMI_AVG_S 1.0          /* nvidia-smi: power.draw averages the last second, utilization.gpu at most that */
#define AN_DPDT_MAX_STEPS 2         /* dP/dt's backward difference reaches back at most 2 grid steps */

/* |r| > 0.5 strong, >= 0.3 moderate, else weak: the manual's reading, used by the figure's
 * interpretation and by the causal sentence. */
#define AN_R_STRONG 0.5
#define AN_R_MODERATE 0.3
static const struct {
    const char *word, *reading;
} r_strengths[3] = {
    {"strong", "strong (|r| > 0.5)"},
    {"moderate", "moderate (|r| 0.3-0.5)"},
    {"weak", "weak (|r| < 0.3)"},
};

static int r_strength(double r) {
    double a = fabs(r);
    return a > AN_R_STRONG ? 0 : a >= AN_R_MODERATE ? 1 : 2;
}

/* ---------------------------------------------------------------------------------
 * the manual's readings */

const char *th_an_interp_tau(double t) {
    if (!isfinite(t)) return "";
    return t < 2 ? "fast (< 2 s)" : t <= 5 ? "normal (2-5 s)" : "slow (> 5 s)";
}
const char *th_an_interp_eta_p(double e) {
    if (!isfinite(e)) return "";
    return e > 0.8 ? "high (> 0.8)" : e >= 0.6 ? "moderate (0.6-0.8)" : "low (< 0.6)";
}
const char *th_an_interp_r(double r) {
    if (!isfinite(r)) return "";
    return r_strengths[r_strength(r)].reading;
}

/* ---------------------------------------------------------------------------------
 * small statistics */

double th_an_slope(const double *x, const double *y, size_t n) {
    double sx = 0, sy = 0, sxx = 0, sxy = 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) continue;
        sx += x[i], sy += y[i], sxx += x[i] * x[i], sxy += x[i] * y[i];
        m++;
    }
    if (m < 3) return NAN;
    double d = m * sxx - sx * sx;
    return d > 0 ? (m * sxy - sx * sy) / d : NAN;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile of the finite values into *out (NaN if none); sorts a copy, so it can
 * fail with TH_ERR_NOMEM. */
static th_status quantile(const double *v, size_t n, double q, double *out) {
    double *c = th_alloc((n ? n : 1) * sizeof *c);
    if (!c) return th_fail(TH_ERR_NOMEM, "analyze: out of memory for a quantile of %zu values", n);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(v[i])) c[m++] = v[i];
    double r = NAN;
    if (m) {
        qsort(c, m, sizeof *c, cmp_double);
        r = c[(size_t)floor(q * (m - 1) + 0.5)];
    }
    th_free(c);
    *out = r;
    return TH_OK;
}

static double mean_of(const double *v, size_t n, size_t *count) {
    double s = 0;
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(v[i])) s += v[i], m++;
    if (count) *count = m;
    return m ? s / m : NAN;
}

/* Pearson r over pairs (a[i], b[i + k]) where both are finite. */
static double pearson_lag(const double *a, const double *b, size_t n, int k, int *pairs) {
    double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        long j = (long)i + k;
        if (j < 0 || j >= (long)n || !isfinite(a[i]) || !isfinite(b[j])) continue;
        sa += a[i], sb += b[j], saa += a[i] * a[i], sbb += b[j] * b[j], sab += a[i] * b[j];
        m++;
    }
    *pairs = m;
    if (m < AN_MIN_PAIRS) return NAN;
    double va = saa - sa * sa / m, vb = sbb - sb * sb / m;
    if (!(va > 1e-12 * (saa + 1e-300)) || !(vb > 1e-12 * (sbb + 1e-300))) return NAN;
    return (sab - sa * sb / m) / sqrt(va * vb);
}

/* Removes the slow part of v in place: v minus its centered moving average over ±half
 * points (finite points only; a point with fewer than half finite neighbours becomes NaN).
 * A symmetric filter moves no event in time, and it takes out warm-up curves and the
 * decay of the gradient norm over training, which a straight line leaves in and which
 * correlate with anything else that drifts. tmp: scratch of n. */
static void detrend(double *v, double *tmp, size_t n, int half) {
    for (size_t i = 0; i < n; i++) {
        size_t lo = i >= (size_t)half ? i - half : 0, hi = i + half < n ? i + half : n - 1;
        double s = 0;
        int m = 0;
        for (size_t j = lo; j <= hi; j++)
            if (isfinite(v[j])) s += v[j], m++;
        tmp[i] = isfinite(v[i]) && m > half ? v[i] - s / m : NAN;
    }
    memcpy(v, tmp, n * sizeof *v);
}

/* ---------------------------------------------------------------------------------
 * alignment */

typedef struct {
    double t, v;
} pt;

/* The value of a stream at grid time tk: the mean of its points in [tk − h/2, tk + h/2),
 * else linear interpolation between the nearest points on both sides when both lie within
 * tol, else the nearest one within tol, else NaN. pts sorted by t; *cur is a cursor. */
static double at(const pt *p, size_t n, double tk, double h, double tol, size_t *cur) {
    while (*cur < n && p[*cur].t < tk - h / 2) (*cur)++;
    double s = 0;
    size_t m = 0;
    for (size_t i = *cur; i < n && p[i].t < tk + h / 2; i++) s += p[i].v, m++;
    if (m) return s / m;
    const pt *before = *cur > 0 ? &p[*cur - 1] : NULL, *after = *cur < n ? &p[*cur] : NULL;
    int ok_b = before && tk - before->t <= tol, ok_a = after && after->t - tk <= tol;
    if (ok_b && ok_a) return before->v + (after->v - before->v) * (tk - before->t) / (after->t - before->t);
    if (ok_b) return before->v;
    if (ok_a) return after->v;
    return NAN;
}

/* The seconds reading i of a sorted stream of averages covers: since the previous reading
 * (a repeated time: since the last earlier one; the first reading: until the next distinct
 * time), at most cap (nvidia-smi's 1 s window, else tolerance_s); 0 when alone or behind
 * more than AN_AVG_SCAN repeats of its time (a point, and no quadratic scan). */
static double avg_width(const pt *p, size_t n, size_t i, double cap) {
    for (size_t j = i; j-- > 0 && i - j <= AN_AVG_SCAN;)
        if (p[j].t < p[i].t) return fmin(cap, p[i].t - p[j].t);
    for (size_t j = i + 1; j < n && j - i <= AN_AVG_SCAN; j++)
        if (p[j].t > p[i].t) return fmin(cap, p[j].t - p[i].t);
    return 0;
}

/* The grid value of a stream of averages: reading i is the mean over (t_i − w_i, t_i]
 * (avg_width: RAPL- and NVML-derived power, nvidia-smi's power.draw and utilization.gpu),
 * so the grid point's value is the mean of the readings weighted by how much of
 * [tk − h/2, tk + h/2) each interval covers. Dating a 1 s average at its end, as a plain
 * mean of the readings inside the interval does, moves every power change half a second
 * late, and the cross-correlation's lag with it. A zero-width reading counts as a point. No
 * interval touching the point: linear interpolation between the nearest intervals'
 * midpoints when both lie within tol, else the nearer one within tol, else NaN. Starts
 * t_i − w_i are nondecreasing; *cur is a cursor. */
static double at_avg(const pt *p, size_t n, double cap, double tk, double h, double tol, size_t *cur) {
    double lo = tk - h / 2, hi = tk + h / 2, s = 0, sw = 0;
    while (*cur < n && p[*cur].t <= lo) (*cur)++;
    for (size_t i = *cur; i < n; i++) {
        double w = avg_width(p, n, i, cap);
        if (p[i].t - w >= hi) break;
        double ov = w > 0 ? fmin(p[i].t, hi) - fmax(p[i].t - w, lo) : p[i].t >= lo && p[i].t < hi ? 1e-9 * h : 0;
        if (ov > 0) s += ov * p[i].v, sw += ov;
    }
    if (sw > 0) return s / sw;
    const pt *before = *cur > 0 ? &p[*cur - 1] : NULL, *after = *cur < n ? &p[*cur] : NULL;
    double tb = before ? before->t - avg_width(p, n, *cur - 1, cap) / 2 : NAN;
    double ta = after ? after->t - avg_width(p, n, *cur, cap) / 2 : NAN;
    int ok_b = before && tk - tb <= tol, ok_a = after && ta - tk <= tol;
    if (ok_b && ok_a && ta > tb) return before->v + (after->v - before->v) * (tk - tb) / (ta - tb);
    if (ok_b) return before->v;
    if (ok_a) return after->v;
    return NAN;
}

static int cmp_row(const void *a, const void *b) {
    const th_telemetry_row *x = a, *y = b;
    return x->t_s < y->t_s ? -1 : x->t_s > y->t_s;
}

static void warn(th_analysis *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(th_analysis *a, const char *fmt, ...) {
    if (a->n_warnings >= TH_AN_MAX_WARN) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->warnings[a->n_warnings++], sizeof a->warnings[0], fmt, ap);
    va_end(ap);
}

static void fig_set(th_analysis *a, th_an_figure_id id, double v, const char *interp, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void fig_set(th_analysis *a, th_an_figure_id id, double v, const char *interp, const char *fmt, ...) {
    th_an_figure *f = &a->fig[id];
    f->value = v;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->how, sizeof f->how, fmt, ap);
    va_end(ap);
    th_an_fmt(f->interp, sizeof f->interp, "%s", interp ? interp : "");
    f->sd = NAN;
}

static const struct {
    const char *key, *label, *unit;
} fig_names[TH_AN_COUNT] = {
    {"eta_util", "η_util", ""},          {"eta_stability", "η_stability", ""},
    {"a_load", "A_load", ""},            {"tau_sustain_s", "τ_sustain", "s"},
    {"rle", "RLE", ""},                  {"sigma_opt", "σ_opt", ""},
    {"tau_local_s", "τ_th local", "s"},  {"tau_s", "τ_th fitted", "s"},
    {"r_k_per_w", "R fitted", "K/W"},    {"c_j_per_k", "C fitted", "J/K"},
    {"fit_rms_c", "fit RMS error", "°C"}, {"eta_p", "η_p", ""},
    {"balance_rms_w", "energy-balance residual RMS", "W"}, {"balance_rel", "energy-balance residual / mean P", ""},
    {"r_peak", "r_peak", ""},            {"t_lag_s", "t_lag", "s"},
};

void th_analysis_free(th_analysis *a) {
    if (!a) return;
    th_free(a->t_s);
    th_free(a);
}

th_origin th_analyze_origin_of_source(const char *source) {
    static const char *const hardware[] = {"hwmon:", "rapl:", "nvml:", "thermal:", "procstat:", "nvidia-smi"};
    if (strstr(source, "(replay)") || strncmp(source, "trace", 5) == 0) return TH_ORIGIN_REPLAYED;
    for (size_t i = 0; i < sizeof hardware / sizeof *hardware; i++)
        if (strncmp(source, hardware[i], strlen(hardware[i])) == 0) return TH_ORIGIN_MEASURED;
    return TH_ORIGIN_MODELED;
}

/* What the stages of th_analyze_rows share. Scratch arrays are th_alloc'd here and freed
 * once at the end; the grid arrays belong to the analysis (a->t_s heads them). */
typedef struct {
    th_analyze_opts o;
    const char *samples_file, *steps_file; /* for the warnings (NULL: rows given directly) */
    th_analysis *a;
    th_telemetry_row *rows; /* the rows with a time, sorted */
    size_t m;
    pt *ps; /* the five streams below, n_rows each */
    double pow_cap_s, util_cap_s; /* the longest interval a power / util reading averages (at_avg) */
    pt *s_temp, *s_pow, *s_duty, *s_grad, *s_util, *s_eta;
    size_t n_temp, n_pow, n_duty, n_grad, n_util, n_eta;
    int have_util_col;
    size_t n_stab_sub;           /* grid points whose η_stability came from their own sample rows */
    int eta_util_unknown;        /* no tokens/step_ms and no util column: RLE takes η_util as 1 */
    const char *eta_how;
    double h, amb;               /* grid step (s) and the ambient used (°C) */
    double *dTdt, *dPdt;         /* local slopes on the grid */
    double *hAv, *tau_loc;       /* per grid point; scratch for the cross-correlation after */
    th_fo_fit fit;
    int have_fit;
    double R, tau_fit;           /* the fitted R, else the profile's; the fitted τ */
} an_ctx;

/* Copies the rows with a time (steps shifted by step_offset_s), sorts them and reads the
 * counts and the sensor metadata from them. */
static th_status an_rows(an_ctx *c, const th_telemetry_row *rows_in, size_t n_rows) {
    th_analysis *a = c->a;
    size_t m = 0;
    for (size_t i = 0; i < n_rows; i++) {
        if (!isfinite(rows_in[i].t_s)) continue;
        c->rows[m] = rows_in[i];
        if (c->rows[m].is_step) c->rows[m].t_s += c->o.step_offset_s;
        m++;
    }
    c->m = a->rows = m;
    double tmax_seen = -INFINITY;
    for (size_t i = 0; i < m; i++) {
        if (c->rows[i].t_s < tmax_seen) a->reordered++;
        tmax_seen = fmax(tmax_seen, c->rows[i].t_s);
    }
    if (a->reordered && !c->samples_file) warn(a, "%zu rows were out of time order; sorted by t_s before alignment", a->reordered);
    if (m == 0) return th_fail(TH_ERR_FORMAT, "analyze: no row with a time");
    qsort(c->rows, m, sizeof *c->rows, cmp_row);
    int sim_source = 0, measured_source = 0;
    for (size_t i = 0; i < m; i++) {
        const th_telemetry_row *r = &c->rows[i];
        if (r->is_step) {
            a->step_rows++;
            continue;
        }
        a->sample_rows++;
        th_origin o = r->origin;
        if (!(r->has & TH_COL_ORIGIN) && r->source[0]) o = th_analyze_origin_of_source(r->source);
        else if (!(r->has & TH_COL_ORIGIN)) continue;
        if (o != TH_ORIGIN_MEASURED) sim_source = 1, a->replayed |= o == TH_ORIGIN_REPLAYED;
        else measured_source = 1;
        if (!a->meta.sensor[0] && r->source[0]) th_an_fmt(a->meta.sensor, sizeof a->meta.sensor, "%s", r->source);
    }
    if (sim_source) a->meta.modeled = 1; /* a simulated temperature is never shown as measured */
    else if (measured_source && a->meta.modeled < 0) a->meta.modeled = 0;
    return TH_OK;
}

/* Splits the rows into time series (temperature, power, duty, util from samples; grad norm
 * from steps) and warns about what is missing or misaligned. */
static void an_streams(an_ctx *c, size_t n_rows) {
    th_analysis *a = c->a;
    c->s_temp = c->ps, c->s_pow = c->ps + n_rows, c->s_duty = c->ps + 2 * n_rows, c->s_grad = c->ps + 3 * n_rows,
    c->s_util = c->ps + 4 * n_rows;
    c->pow_cap_s = c->util_cap_s = c->o.tolerance_s;
    double s_t0 = INFINITY, s_t1 = -INFINITY, k_t0 = INFINITY, k_t1 = -INFINITY;
    for (size_t i = 0; i < c->m; i++) {
        const th_telemetry_row *r = &c->rows[i];
        if (!r->is_step) {
            s_t0 = fmin(s_t0, r->t_s), s_t1 = fmax(s_t1, r->t_s);
            if (r->has & TH_COL_TEMP) c->s_temp[c->n_temp++] = (pt){r->t_s, r->temp_c};
            if (r->has & TH_COL_POWER) c->s_pow[c->n_pow++] = (pt){r->t_s, r->power_w};
            if (r->has & TH_COL_DUTY_SET) c->s_duty[c->n_duty++] = (pt){r->t_s, r->duty_set};
            if (r->has & TH_COL_UTIL) c->s_util[c->n_util++] = (pt){r->t_s, r->util}, c->have_util_col = 1;
            if (strcmp(r->source, "nvidia-smi") == 0) c->pow_cap_s = c->util_cap_s = AN_NVSMI_AVG_S;
        } else {
            k_t0 = fmin(k_t0, r->t_s), k_t1 = fmax(k_t1, r->t_s);
            if (r->has & TH_COL_GRAD_NORM) c->s_grad[c->n_grad++] = (pt){r->t_s, r->grad_norm};
        }
    }
    if (!c->n_duty) memcpy(c->s_duty, c->s_util, c->n_util * sizeof *c->s_util), c->n_duty = c->n_util;
    double tol = c->o.tolerance_s;
    if (a->sample_rows && a->step_rows && (k_t0 > s_t1 + tol || k_t1 < s_t0 - tol))
        warn(a, "step rows (%.1f-%.1f s) and sample rows (%.1f-%.1f s) do not overlap in time: different clocks? "
                "(--step-offset shifts the step rows)", k_t0, k_t1, s_t0, s_t1);
    const char *sf = c->samples_file ? c->samples_file : "the log", *gf = c->steps_file ? c->steps_file : sf;
    if (!c->n_temp) warn(a, "%s: no temperature value in any row (column temp_c / temperature.gpu): thermal figures are NaN", sf);
    if (!c->n_pow) warn(a, "%s: no power value in any row (column power_w / power.draw): power figures are NaN", sf);
    if (!c->n_grad) warn(a, "%s: no step row with a gradient norm (column grad_norm): sigma_opt and the cross-correlation are NaN", gf);
}

static int has_rate(const th_telemetry_row *r) {
    return r->is_step && (r->has & TH_COL_TOKENS) && (r->has & TH_COL_STEP_MS) && r->step_ms > 0;
}

/* η_util per step: achieved rate (tokens per wall second since the previous step ended)
 * over the full-duty rate (a high percentile of tokens per busy second, step_ms). */
static th_status an_eta_util(an_ctx *c) {
    th_analysis *a = c->a;
    c->s_eta = th_alloc((a->step_rows + 1) * sizeof *c->s_eta);
    double *busy_rate = th_alloc((a->step_rows + 1) * sizeof *busy_rate);
    th_status st = TH_OK;
    if (!c->s_eta || !busy_rate) {
        st = th_fail(TH_ERR_NOMEM, "analyze: out of memory");
        goto done;
    }
    size_t n_busy = 0;
    for (size_t i = 0; i < c->m; i++)
        if (has_rate(&c->rows[i])) busy_rate[n_busy++] = c->rows[i].tokens / (c->rows[i].step_ms / 1e3);
    double full_rate;
    if ((st = quantile(busy_rate, n_busy, AN_FULL_RATE_QUANTILE, &full_rate)) != TH_OK) goto done;
    if (n_busy >= 2 && full_rate > 0) {
        double prev_end = NAN;
        for (size_t i = 0; i < c->m; i++) {
            const th_telemetry_row *r = &c->rows[i];
            if (!has_rate(r)) continue;
            double wall = isfinite(prev_end) && r->t_s > prev_end ? r->t_s - prev_end : r->step_ms / 1e3;
            prev_end = r->t_s;
            double e = r->tokens / wall / full_rate;
            c->s_eta[c->n_eta++] = (pt){r->t_s, e > 1 ? 1 : e < 0 ? 0 : e};
        }
        c->eta_how = "tokens per wall second between step ends / full-duty rate (90th percentile of tokens per busy "
                     "second, step_ms)";
    } else if (c->have_util_col) {
        c->eta_how = "measured duty (util column): no step rows with tokens and step_ms";
    } else {
        c->eta_util_unknown = 1;
    }
done:
    th_free(busy_rate);
    return st;
}

/* Puts every stream on the grid (o.hz) and allocates the analysis' series and the scratch
 * arrays that go with them. */
static th_status an_grid(an_ctx *c) {
    th_analysis *a = c->a;
    const th_analyze_opts *o = &c->o;
    double h = c->h = 1.0 / o->hz, t0 = c->rows[0].t_s, t1 = c->rows[c->m - 1].t_s;
    size_t ng = (size_t)floor((t1 - t0) * o->hz + 1e-9) + 1;
    double *buf = th_alloc(11 * ng * sizeof *buf);
    c->dTdt = th_alloc(4 * ng * sizeof *c->dTdt);
    if (!buf || !c->dTdt) {
        th_free(buf);
        return th_fail(TH_ERR_NOMEM, "analyze: out of memory for %zu grid points", ng);
    }
    c->dPdt = c->dTdt + ng, c->hAv = c->dTdt + 2 * ng, c->tau_loc = c->dTdt + 3 * ng;
    a->n_grid = ng;
    a->t0_s = t0;
    a->duration_s = t1 - t0;
    a->t_s = buf, a->temp_c = buf + ng, a->power_w = buf + 2 * ng, a->duty = buf + 3 * ng, a->grad_norm = buf + 4 * ng;
    a->eta_util = buf + 5 * ng, a->eta_stab = buf + 6 * ng, a->a_load = buf + 7 * ng, a->tau_sustain = buf + 8 * ng;
    a->rle = buf + 9 * ng, a->resid_w = buf + 10 * ng;
    size_t c_temp = 0, c_pow = 0, c_duty = 0, c_grad = 0, c_eta = 0;
    double tol = o->tolerance_s;
    for (size_t k = 0; k < ng; k++) {
        double tk = t0 + k * h;
        a->t_s[k] = tk - t0;
        a->temp_c[k] = at(c->s_temp, c->n_temp, tk, h, tol, &c_temp);
        a->power_w[k] = at_avg(c->s_pow, c->n_pow, c->pow_cap_s, tk, h, tol, &c_pow);
        a->duty[k] = at(c->s_duty, c->n_duty, tk, h, tol, &c_duty);
        a->grad_norm[k] = at(c->s_grad, c->n_grad, tk, h, tol, &c_grad);
        a->eta_util[k] = c->n_eta ? at(c->s_eta, c->n_eta, tk, h, tol, &c_eta) : NAN;
        if (isfinite(a->temp_c[k]) && (c->n_pow == 0 || isfinite(a->power_w[k]))) a->n_samples++;
    }
    if (!c->n_eta && c->have_util_col) {
        size_t cu = 0;
        for (size_t k = 0; k < ng; k++) a->eta_util[k] = at_avg(c->s_util, c->n_util, c->util_cap_s, t0 + k * h, h, tol, &cu);
    }
    a->dropped = ng - a->n_samples;
    if (a->dropped)
        warn(a, "%zu of %zu grid points dropped: no temperature%s within +-%.1f s", a->dropped, ng,
             c->n_pow ? " or power" : "", tol);
    return TH_OK;
}

/* Ambient, P_ref and P_idle: given, else from the session's profile, else from the log.
 * An ambient that was not recorded (none given, none in session.json, or session.json's
 * is only the first sensor sample) is left NaN here: the first-order fit takes it as a
 * free parameter (an_fit). */
static th_status an_references(an_ctx *c) {
    th_analysis *a = c->a;
    th_status st = TH_OK;
    double amb = c->o.ambient_c;
    a->ambient_sd_c = NAN;
    if (isfinite(amb)) th_an_fmt(a->meta.ambient_how, sizeof a->meta.ambient_how, "given (--ambient)");
    else if (isfinite(a->meta.ambient_c) && strncmp(a->meta.ambient_how, "first", 5) != 0) amb = a->meta.ambient_c;
    else if (isfinite(a->meta.ambient_c))
        warn(a, "session.json's ambient %.2f C is the first sensor sample, not a recorded ambient: fitted instead",
             a->meta.ambient_c);
    if (isfinite(amb)) a->ambient_sd_c = 0;
    c->amb = a->meta.ambient_c = amb;
    if (!isfinite(amb)) th_an_fmt(a->meta.ambient_how, sizeof a->meta.ambient_how, "not recorded");
    a->p_ref_w = c->o.p_ref_w;
    if (isfinite(a->p_ref_w)) th_an_fmt(a->p_ref_how, sizeof a->p_ref_how, "given");
    else if (isfinite(a->meta.p_max_w)) a->p_ref_w = a->meta.p_max_w, th_an_fmt(a->p_ref_how, sizeof a->p_ref_how, "profile p_max_w");
    else {
        if ((st = quantile(a->power_w, a->n_grid, 1.0, &a->p_ref_w)) != TH_OK) return st;
        th_an_fmt(a->p_ref_how, sizeof a->p_ref_how, "highest power in the log (no profile)");
    }
    a->p_idle_w = c->o.p_idle_w;
    if (isfinite(a->p_idle_w)) th_an_fmt(a->p_idle_how, sizeof a->p_idle_how, "given");
    else if (isfinite(a->meta.p_idle_w)) a->p_idle_w = a->meta.p_idle_w, th_an_fmt(a->p_idle_how, sizeof a->p_idle_how, "profile p_idle_w");
    else {
        st = quantile(a->power_w, a->n_grid, AN_P_IDLE_QUANTILE, &a->p_idle_w);
        th_an_fmt(a->p_idle_how, sizeof a->p_idle_how, "5th percentile of power in the log (no profile)");
    }
    return st;
}

/* The fit's input: the sample rows that carry both temperature and power, on the log's
 * own clock (no grid averaging); a log whose temperature and power sit on separate rows
 * is fitted on the grid instead. Returns the count (0: use the grid). */
static size_t fit_points(an_ctx *c, double *t, double *T, double *P) {
    size_t n = 0;
    for (size_t i = 0; i < c->m; i++) {
        const th_telemetry_row *r = &c->rows[i];
        if (r->is_step || !(r->has & TH_COL_TEMP) || !(r->has & TH_COL_POWER)) continue;
        t[n] = r->t_s - c->a->t0_s, T[n] = r->temp_c, P[n] = r->power_w, n++;
    }
    return n >= 8 ? n : 0;
}

/* τ, R, C fitted over the session: ambient held where it was recorded, else a free
 * parameter whose value and uncertainty become the session's ambient. A fit that does not
 * converge leaves those figures (and a not-recorded ambient) NaN with the reason; running
 * out of memory fails. */
static th_status an_fit(an_ctx *c) {
    th_analysis *a = c->a;
    int free_amb = !isfinite(c->amb);
    if (c->n_temp && c->n_pow) {
        /* scratch: the temperature and power streams, done with once on the grid (2 x n_rows
         * points = 4 x n_rows doubles, m <= n_rows) */
        double *buf = (double *)c->s_temp;
        size_t n = fit_points(c, buf, buf + c->m, buf + 2 * c->m);
        const char *on = n ? "sample rows" : "1 Hz grid points";
        th_status fs = n ? th_fit_first_order(buf, buf + c->m, buf + 2 * c->m, n, c->amb, 0, &c->fit)
                         : th_fit_first_order(a->t_s, a->temp_c, a->power_w, a->n_grid, c->amb, 0, &c->fit);
        if (fs == TH_ERR_NOMEM) return fs;
        if (fs == TH_OK) {
            c->have_fit = 1;
            char amb_text[96];
            if (free_amb) {
                c->amb = a->meta.ambient_c = c->fit.t_ambient_c;
                a->ambient_sd_c = c->fit.t_ambient_sd_c;
                th_an_fmt(a->meta.ambient_how, sizeof a->meta.ambient_how, "fitted (free parameter of the first-order fit, +-%.2f C)",
                          c->fit.t_ambient_sd_c);
                th_an_fmt(amb_text, sizeof amb_text, "T_amb fitted %.2f +- %.2f C", c->fit.t_ambient_c, c->fit.t_ambient_sd_c);
            } else {
                th_an_fmt(amb_text, sizeof amb_text, "T_amb %.2f C held", c->amb);
            }
            fig_set(a, TH_AN_TAU_FIT, c->fit.tau_s, th_an_interp_tau(c->fit.tau_s),
                    "max likelihood of T = T_amb + R*lowpass_tau(P) + d0*exp(-t/tau) over %zu %s, %s", c->fit.n, on, amb_text);
            fig_set(a, TH_AN_R_FIT, c->fit.r_k_per_w, NULL, "from the same fit (noise: temperature %.3g C, power %.3g W a reading)",
                    c->fit.temp_noise_c, c->fit.power_noise_w);
            fig_set(a, TH_AN_C_FIT, c->fit.c_j_per_k, NULL, "tau / R");
            fig_set(a, TH_AN_FIT_RMS, c->fit.rms_c, NULL, "RMS of T - model over the session");
            a->fig[TH_AN_TAU_FIT].sd = c->fit.tau_sd_s;
            a->fig[TH_AN_R_FIT].sd = c->fit.r_sd_k_per_w;
            a->fig[TH_AN_C_FIT].sd = c->fit.c_sd_j_per_k;
        } else {
            for (int id = TH_AN_TAU_FIT; id <= TH_AN_FIT_RMS; id++) fig_set(a, (th_an_figure_id)id, NAN, NULL, "%s", th_last_error());
            warn(a, "first-order fit: %s", th_last_error());
        }
    } else {
        for (int id = TH_AN_TAU_FIT; id <= TH_AN_FIT_RMS; id++)
            fig_set(a, (th_an_figure_id)id, NAN, NULL, "needs temperature and power");
    }
    if (free_amb && !c->have_fit) {
        th_an_fmt(a->meta.ambient_how, sizeof a->meta.ambient_how, "not recorded, and the fit that would give it failed");
        if (c->n_temp) warn(a, "ambient not recorded and not fitted: figures that need T - T_amb are NaN (give --ambient)");
    }
    c->R = c->have_fit ? c->fit.r_k_per_w : a->meta.r_k_per_w;
    c->tau_fit = c->have_fit ? c->fit.tau_s : NAN;
    return TH_OK;
}

/* Per grid point: local slopes, hA, η_stability, A_load, τ_local and τ_sustain, RLE. */
static void an_local(an_ctx *c, size_t *n_local, size_t *n_fallback) {
    th_analysis *a = c->a;
    size_t ng = a->n_grid;
    int half_s = (int)floor(c->o.slope_window_s * c->o.hz / 2 + 0.5), half_w = (int)floor(c->o.window_s * c->o.hz / 2 + 0.5);
    if (half_s < 1) half_s = 1;
    if (half_w < 1) half_w = 1;
    for (size_t k = 0; k < ng; k++) {
        size_t lo = k >= (size_t)half_s ? k - half_s : 0, hi = k + half_s < ng ? k + half_s : ng - 1;
        c->dTdt[k] = isfinite(a->temp_c[k]) ? th_an_slope(a->t_s + lo, a->temp_c + lo, hi - lo + 1) : NAN;
        c->dPdt[k] = NAN; /* backward difference: a rise is dated where it happens (see an_xcorr) */
        for (size_t j = k; j-- > 0 && k - j <= AN_DPDT_MAX_STEPS;)
            if (isfinite(a->power_w[j])) {
                c->dPdt[k] = (a->power_w[k] - a->power_w[j]) / (a->t_s[k] - a->t_s[j]);
                break;
            }
        double dT = a->temp_c[k] - c->amb;
        c->hAv[k] = isfinite(dT) && dT > AN_DT_MIN_C && isfinite(a->power_w[k]) ? a->power_w[k] / dT : NAN;
    }
    *n_local = *n_fallback = 0;
    size_t cur = 0;
    for (size_t k = 0; k < ng; k++) {
        /* η_stability: 1 - CV(hA) over the sample rows inside this grid point's interval
         * when it holds 3 or more (a sub-second window, dated where the rows are), else
         * over the grid points of the ±window_s/2 window */
        double tk = a->t0_s + a->t_s[k], s = 0, ss = 0;
        int cnt = 0;
        while (cur < c->m && c->rows[cur].t_s < tk - c->h / 2) cur++;
        for (size_t i = cur; i < c->m && c->rows[i].t_s < tk + c->h / 2; i++) {
            const th_telemetry_row *r = &c->rows[i];
            double dT = r->temp_c - c->amb;
            if (r->is_step || (r->has & (TH_COL_TEMP | TH_COL_POWER)) != (TH_COL_TEMP | TH_COL_POWER) || !(dT > AN_DT_MIN_C)) continue;
            s += r->power_w / dT, ss += (r->power_w / dT) * (r->power_w / dT), cnt++;
        }
        if (cnt < 3) {
            size_t lo = k >= (size_t)half_w ? k - half_w : 0, hi = k + half_w < ng ? k + half_w : ng - 1;
            s = ss = 0, cnt = 0;
            for (size_t j = lo; j <= hi; j++)
                if (isfinite(c->hAv[j])) s += c->hAv[j], ss += c->hAv[j] * c->hAv[j], cnt++;
        } else {
            c->n_stab_sub++;
        }
        a->eta_stab[k] = NAN;
        if (cnt >= 3 && s > 0) {
            double mu = s / cnt, var = fmax(0, ss / cnt - mu * mu);
            double e = 1 - sqrt(var) / mu;
            a->eta_stab[k] = e < 0 ? 0 : e > 1 ? 1 : e;
        }
        a->a_load[k] = isfinite(c->dPdt[k]) && a->p_ref_w > 0 ? 1 + fabs(c->dPdt[k]) / a->p_ref_w : NAN;
        c->tau_loc[k] = NAN;
        if (isfinite(c->R) && isfinite(c->dTdt[k]) && fabs(c->dTdt[k]) >= AN_SLOPE_MIN_C_PER_S && isfinite(a->power_w[k])) {
            double tl = (c->amb + c->R * a->power_w[k] - a->temp_c[k]) / c->dTdt[k];
            if (tl > 0 && tl < AN_TAU_LOCAL_MAX_RECORDS * fmax(a->duration_s, 1)) c->tau_loc[k] = tl;
        }
        /* τ_sustain is the plant's fitted τ: the local ratio divides an instantaneous power
         * by a slope over slope_window_s, which turns every power spike into a spurious
         * τ_sustain swing (it hid planted couplings); without a fit, the local one */
        if (isfinite(c->tau_fit)) a->tau_sustain[k] = isfinite(a->temp_c[k]) ? c->tau_fit : NAN, *n_fallback += isfinite(a->temp_c[k]);
        else a->tau_sustain[k] = c->tau_loc[k], *n_local += isfinite(c->tau_loc[k]);
        double eu = isfinite(a->eta_util[k]) ? a->eta_util[k] : c->eta_util_unknown ? 1.0 : NAN;
        a->rle[k] = eu * a->eta_stab[k] / (a->a_load[k] * (1 + 1 / a->tau_sustain[k]));
    }
}

/* The session figures: means and medians of the per-point series, σ_opt, η_p and the
 * energy balance. */
static th_status an_figures(an_ctx *c, size_t n_local, size_t n_fallback) {
    th_analysis *a = c->a;
    const th_analyze_opts *o = &c->o;
    size_t ng = a->n_grid, cnt;
    th_status st;
    double v = mean_of(a->eta_util, ng, &cnt);
    if (cnt) fig_set(a, TH_AN_ETA_UTIL, v, NULL, "mean over %zu grid points of %s", cnt, c->eta_how);
    else fig_set(a, TH_AN_ETA_UTIL, NAN, NULL, "no step rows with tokens and step_ms, and no util column");
    v = mean_of(a->eta_stab, ng, &cnt);
    if (cnt) fig_set(a, TH_AN_ETA_STABILITY, v, NULL, "mean over %zu points of 1 - CV(hA), hA = P/(T - T_amb), over the point's own sample rows (%zu points) or else a %.0f s window; rows with T - T_amb <= %.0f C left out", cnt, c->n_stab_sub, o->window_s, AN_DT_MIN_C);
    else fig_set(a, TH_AN_ETA_STABILITY, NAN, NULL, "needs power and a temperature above ambient + %.0f C at 3+ points in a window", AN_DT_MIN_C);
    v = mean_of(a->a_load, ng, &cnt);
    if (cnt) fig_set(a, TH_AN_A_LOAD, v, NULL, "mean of 1 + |dP/dt|/P_ref, dP/dt the backward difference on the grid, P_ref %.1f W (%s)", a->p_ref_w, a->p_ref_how);
    else fig_set(a, TH_AN_A_LOAD, NAN, NULL, "needs power");
    if ((st = quantile(c->tau_loc, ng, 0.5, &v)) != TH_OK) return st;
    if (isfinite(v)) fig_set(a, TH_AN_TAU_LOCAL, v, th_an_interp_tau(v), "median of (T_amb + R*P - T)/(dT/dt) where |dT/dt| >= %.2f C/s, dT/dt the slope over %.0f s", AN_SLOPE_MIN_C_PER_S, o->slope_window_s);
    else if (isfinite(c->R)) fig_set(a, TH_AN_TAU_LOCAL, NAN, NULL, "dT/dt never reached %.2f C/s: no transient", AN_SLOPE_MIN_C_PER_S);
    else fig_set(a, TH_AN_TAU_LOCAL, NAN, NULL, "needs R (no fit, no profile)");
    if ((st = quantile(a->tau_sustain, ng, 0.5, &v)) != TH_OK) return st;
    if (isfinite(v) && n_fallback) fig_set(a, TH_AN_TAU_SUSTAIN, v, th_an_interp_tau(v), "the fitted tau_th at all %zu points with a temperature", n_fallback);
    else if (isfinite(v)) fig_set(a, TH_AN_TAU_SUSTAIN, v, th_an_interp_tau(v), "no fit: median of the local estimate at %zu points", n_local);
    else fig_set(a, TH_AN_TAU_SUSTAIN, NAN, NULL, "no local or fitted tau");
    v = mean_of(a->rle, ng, &cnt);
    if (cnt) fig_set(a, TH_AN_RLE, v, NULL, "mean over %zu points of eta_util*eta_stability/(A_load*(1 + 1/tau_sustain))%s", cnt,
                     c->eta_util_unknown ? ", eta_util unknown (no tokens, step_ms or util) and taken as 1: RLE is an upper bound" : "");
    else fig_set(a, TH_AN_RLE, NAN, NULL, "no point has all of eta_util, eta_stability, A_load and tau_sustain");

    /* σ_opt over the step rows themselves */
    double s = 0, ss = 0;
    size_t n = c->n_grad;
    for (size_t i = 0; i < n; i++) s += c->s_grad[i].v, ss += c->s_grad[i].v * c->s_grad[i].v;
    if (n >= 2 && s > 0) {
        double mu = s / n, sd = sqrt(fmax(0, (ss - n * mu * mu) / (n - 1)));
        fig_set(a, TH_AN_SIGMA_OPT, sd / mu, NULL, "std/mean of grad_norm over %zu step rows", n);
    } else {
        fig_set(a, TH_AN_SIGMA_OPT, NAN, NULL, "needs 2+ step rows with grad_norm (%zu)", n);
    }

    /* η_p */
    double sp = 0, su = 0;
    cnt = 0;
    for (size_t k = 0; k < ng; k++)
        if (isfinite(a->power_w[k])) sp += a->power_w[k], su += a->power_w[k] - a->p_idle_w, cnt++;
    if (cnt && sp > 0 && isfinite(a->p_idle_w))
        fig_set(a, TH_AN_ETA_P, su / sp, th_an_interp_eta_p(su / sp), "mean(P - P_idle)/mean(P) over %zu points, P_idle %.2f W (%s)", cnt, a->p_idle_w, a->p_idle_how);
    else
        fig_set(a, TH_AN_ETA_P, NAN, NULL, "needs power");

    /* energy balance with the profile's R, C where the session names one, else the fitted */
    double Rb = a->meta.r_k_per_w, Cb = a->meta.c_j_per_k;
    const char *which = "the profile's R and C";
    if (!(isfinite(Rb) && isfinite(Cb)))
        Rb = c->have_fit ? c->fit.r_k_per_w : NAN, Cb = c->have_fit ? c->fit.c_j_per_k : NAN, which = "the fitted R and C";
    ss = sp = 0;
    cnt = 0;
    for (size_t k = 0; k < ng; k++) {
        a->resid_w[k] = a->power_w[k] - (a->temp_c[k] - c->amb) / Rb - Cb * c->dTdt[k];
        if (isfinite(a->resid_w[k])) ss += a->resid_w[k] * a->resid_w[k], sp += a->power_w[k], cnt++;
    }
    if (cnt) {
        fig_set(a, TH_AN_BALANCE_RMS, sqrt(ss / cnt), NULL, "RMS over %zu points of P - (T - T_amb)/R - C*dT/dt with %s (R %.4g K/W, C %.4g J/K)", cnt, which, Rb, Cb);
        fig_set(a, TH_AN_BALANCE_REL, sqrt(ss / cnt) / (sp / cnt), NULL, "the RMS residual over the mean power");
    } else {
        fig_set(a, TH_AN_BALANCE_RMS, NAN, NULL, "needs temperature, power and R, C (fit or profile)");
        fig_set(a, TH_AN_BALANCE_REL, NAN, NULL, "needs temperature, power and R, C (fit or profile)");
    }
    return TH_OK;
}

/* The normal quantile z with P(|Z| > z) = 1 − 0.95^(1/m): the largest of m correlations, each
 * tested at that level, exceeds its bound on noise alone 5 % of the time (Šidák, exact for
 * independent lags, conservative for correlated ones). Without it, the best of 7 lags tested
 * at 95 % each reads up to 1 − 0.95^7 = 30 % of pure-noise sessions as a coupling. Bisection
 * on erfc. */
static double family_z(int m) {
    double alpha = 1.0 - pow(0.95, 1.0 / (m > 1 ? m : 1)), lo = 0.0, hi = 10.0;
    for (int i = 0; i < 100; i++) {
        double mid = 0.5 * (lo + hi);
        if (erfc(mid / M_SQRT2) > alpha) lo = mid;
        else hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* Cross-correlation of RLE(t) with grad norm(t + k), both high-passed (detrend); r_peak, t_lag
 * and the causal reading. Uses hAv and tau_loc as scratch. */
static void an_xcorr(an_ctx *c) {
    th_analysis *a = c->a;
    size_t ng = a->n_grid;
    int max_lag = c->o.max_lag;
    if (c->n_grad && a->n_samples < AN_XCORR_MIN_SECONDS)
        warn(a, "only %zu aligned seconds: the cross-correlation rests on few pairs; run 60 s or more for a "
                "reliable r_peak", a->n_samples);
    double *x = c->hAv, *g = c->tau_loc;
    memcpy(x, a->rle, ng * sizeof *x);
    memcpy(g, a->grad_norm, ng * sizeof *g);
    int half = (int)floor(AN_DETREND_HALF_S * c->o.hz + 0.5);
    detrend(x, c->dPdt, ng, half);
    detrend(g, c->dPdt, ng, half);
    int best = 0, any = 0;
    double best_r = NAN;
    for (int k = -max_lag; k <= max_lag; k++) {
        int idx = k + max_lag;
        a->xcorr_r[idx] = pearson_lag(x, g, ng, k, &a->xcorr_pairs[idx]);
        double r = a->xcorr_r[idx];
        if (!isfinite(r)) continue;
        if (!any || fabs(r) > fabs(best_r) + 1e-12 || (fabs(fabs(r) - fabs(best_r)) <= 1e-12 && abs(k) < abs(best)))
            best = k, best_r = r, any = 1;
    }
    if (!any) {
        char why[120];
        if (c->n_grad) th_an_fmt(why, sizeof why, "fewer than %d grid points with both RLE and grad norm at every lag", AN_MIN_PAIRS);
        else th_an_fmt(why, sizeof why, "no grad norm (no step rows)");
        fig_set(a, TH_AN_R_PEAK, NAN, NULL, "%s", why);
        fig_set(a, TH_AN_T_LAG, NAN, NULL, "%s", why);
        th_an_fmt(a->causal, sizeof a->causal, "no causal reading: %s", why);
        return;
    }
    double lag = best * c->h;
    /* significance: series that follow themselves from second to second hold fewer
     * independent pairs than they have points (Bartlett: N_eff = N (1 − ρx ρg)/(1 + ρx ρg),
     * ρ the lag-1 autocorrelations); an |r| under the bound z/sqrt(N_eff − 3), z the
     * family-wise 95 % quantile for the lags tried (family_z), is read as weak whatever its
     * size: a slow common drift is not a coupling */
    int pairs = a->xcorr_pairs[best + max_lag], p1x, p1g;
    double rx = pearson_lag(x, x, ng, 1, &p1x), rg = pearson_lag(g, g, ng, 1, &p1g);
    double rr = isfinite(rx) && isfinite(rg) ? fmax(0, rx * rg) : 0;
    double n_eff = pairs * (1 - rr) / (1 + rr);
    double bound = n_eff > 4 ? fmin(1.0, family_z(2 * max_lag + 1) / sqrt(n_eff - 3)) : 1;
    a->r_bound = bound, a->n_eff = n_eff;
    int significant = fabs(best_r) >= bound;
    char interp[200];
    if (significant) th_an_fmt(interp, sizeof interp, "%s", th_an_interp_r(best_r));
    else th_an_fmt(interp, sizeof interp, "weak: not significant (|r| < %.2f, the 95 %% bound for the best of %d lags over %.0f independent pairs)", bound, 2 * max_lag + 1, n_eff);
    fig_set(a, TH_AN_R_PEAK, best_r, interp, "Pearson r of RLE(t) and grad_norm(t + t_lag), each minus its centered %.0f s moving average, %d pairs", 2 * AN_DETREND_HALF_S + 1, a->xcorr_pairs[best + max_lag]);
    fig_set(a, TH_AN_T_LAG, lag, NULL, "the lag in -%d..+%d s with the largest |r|", max_lag, max_lag);
    const char *strength = significant ? r_strengths[r_strength(best_r)].word : "weak (not significant)";
    const char *sense = best_r < 0 ? "inverse" : "direct";
    if (best < 0)
        th_an_fmt(a->causal, sizeof a->causal, "t_lag < 0: gradient-norm changes precede RLE changes by %.0f s; %s %s coupling (%s)", -lag, strength, sense, best_r < 0 ? "gradient spikes precede RLE drops" : "gradient spikes precede RLE rises");
    else if (best > 0)
        th_an_fmt(a->causal, sizeof a->causal, "t_lag > 0: RLE changes precede gradient-norm changes by %.0f s; %s %s coupling", lag, strength, sense);
    else
        th_an_fmt(a->causal, sizeof a->causal, "t_lag = 0: RLE and gradient norm move together (no causal order at 1 s resolution); %s %s coupling", strength, sense);
}

static th_status analyze_rows_named(const th_telemetry_row *rows_in, size_t n_rows, const th_session_meta *meta,
                                   const th_analyze_opts *o_in, const char *samples_file, const char *steps_file,
                                   th_analysis **out) {
    an_ctx c;
    memset(&c, 0, sizeof c);
    c.samples_file = samples_file, c.steps_file = steps_file;
    c.o = o_in ? *o_in : th_analyze_defaults();
    if (!(c.o.hz > 0)) c.o.hz = 1;
    if (!(c.o.tolerance_s >= 0)) c.o.tolerance_s = 2;
    if (c.o.max_lag < 0 || c.o.max_lag > TH_AN_MAX_LAG) c.o.max_lag = 3;
    th_status st = TH_OK;
    th_analysis *a = c.a = th_calloc(1, sizeof *a);
    c.rows = n_rows ? th_alloc(n_rows * sizeof *c.rows) : NULL;
    c.ps = n_rows ? th_alloc(5 * n_rows * sizeof *c.ps) : NULL;
    if (!a || (n_rows && (!c.rows || !c.ps))) {
        st = th_fail(TH_ERR_NOMEM, "analyze: out of memory");
        goto done;
    }
    if (meta) a->meta = *meta;
    else th_session_meta_init(&a->meta);
    for (int i = 0; i < TH_AN_COUNT; i++) {
        a->fig[i].key = fig_names[i].key, a->fig[i].label = fig_names[i].label, a->fig[i].unit = fig_names[i].unit;
        fig_set(a, (th_an_figure_id)i, NAN, NULL, "not computed");
    }
    a->max_lag = c.o.max_lag;
    a->n_eff = a->r_bound = NAN;
    for (int k = 0; k < 2 * TH_AN_MAX_LAG + 1; k++) a->xcorr_r[k] = NAN;

    size_t n_local, n_fallback;
    if ((st = an_rows(&c, rows_in, n_rows)) != TH_OK) goto done;
    an_streams(&c, n_rows);
    if ((st = an_eta_util(&c)) != TH_OK || (st = an_grid(&c)) != TH_OK || (st = an_references(&c)) != TH_OK ||
        (st = an_fit(&c)) != TH_OK)
        goto done;
    an_local(&c, &n_local, &n_fallback);
    if ((st = an_figures(&c, n_local, n_fallback)) != TH_OK) goto done;
    an_xcorr(&c);
done:
    th_free(c.rows);
    th_free(c.ps);
    th_free(c.s_eta);
    th_free(c.dTdt);
    if (st != TH_OK) {
        th_analysis_free(a);
        return st;
    }
    *out = a;
    return TH_OK;
}

th_status th_analyze_rows(const th_telemetry_row *rows, size_t n, const th_session_meta *meta,
                          const th_analyze_opts *o, th_analysis **out) {
    return analyze_rows_named(rows, n, meta, o, NULL, NULL, out);
}

/* ---------------------------------------------------------------------------------
 * from a path */

/* 1 if the file's first non-empty line is nvidia-smi's CSV header. */
static int sniff_nvsmi(const char *path) {
    FILE *f = fopen(path, "r");
    char line[1024];
    int yes = 0;
    while (f && fgets(line, sizeof line, f))
        if (line[strspn(line, " \t\r\n")]) {
            yes = line[0] != '{' && th_analyze_is_nvsmi_header(line);
            break;
        }
    if (f) fclose(f);
    return yes;
}

/* Our telemetry: strict first, tolerant when strict rejects it. strict_err gets the reason. */
static th_status read_ours(const char *tel, th_telemetry_row **rows, size_t *n, th_telemetry_read_report *rep,
                           char *strict_err, size_t cap) {
    th_status st = th_telemetry_read_opts(tel, NULL, rows, n, rep);
    if (st == TH_ERR_FORMAT || (st == TH_OK && *n == 0)) {
        th_an_fmt(strict_err, cap, "%s", st == TH_OK ? "no rows" : th_last_error());
        if (st == TH_OK) th_free(*rows);
        *rows = NULL;
        th_telemetry_read_options ro = {.tolerant = 1};
        st = th_telemetry_read_opts(tel, &ro, rows, n, rep);
    }
    if (st == TH_OK && rep->old_format) /* the reader guessed these origins from "sim:"; analyze's rule decides */
        for (size_t i = 0; i < *n; i++) (*rows)[i].has &= ~(uint32_t)TH_COL_ORIGIN;
    return st;
}

/* Rows out of time order or sharing a time, in file order: the first of each named by line
 * (lines counted from the first data line; exact when no line was skipped). */
static void order_warnings(th_analysis *a, const char *file, const th_telemetry_row *rows, size_t n, int kind_step,
                           int header_lines, int exact) {
    size_t back = 0, dup = 0, first_back = 0, first_dup = 0;
    double last = NAN;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].is_step != kind_step) continue;
        if (rows[i].t_s < last && !back++) first_back = i;
        if (rows[i].t_s == last && !dup++) first_dup = i;
        last = isfinite(last) ? fmax(last, rows[i].t_s) : rows[i].t_s;
    }
    const char *what = kind_step ? "step" : "sample";
    if (back)
        warn(a, "%s:%s%zu: %zu %s row%s out of time order (t %.3f s after t %.3f s); sorted by time", file,
             exact ? "" : "~", first_back + 1 + header_lines, back, what, back == 1 ? "" : "s", rows[first_back].t_s,
             rows[first_back - 1].t_s);
    if (dup)
        warn(a, "%s:%s%zu: %zu %s row%s repeat the previous row's time (t %.3f s); averaged on the grid, left out of the fit",
             file, exact ? "" : "~", first_dup + 1 + header_lines, dup, what, dup == 1 ? "" : "s", rows[first_dup].t_s);
}

static void foreign_warnings(th_analysis *a, const char *file, const th_analyze_foreign_report *r) {
    if (r->read.bad_lines)
        warn(a, "%s: %zu line%s or cell%s skipped; first: %s", file, r->read.bad_lines, r->read.bad_lines == 1 ? "" : "s",
             r->read.bad_lines == 1 ? "" : "s", r->read.first_bad);
    if (r->na_lines) warn(a, "%zu line%s with a field not available; first: %s", r->na_lines, r->na_lines == 1 ? "" : "s", r->first_na);
    if (r->other_gpu_lines) warn(a, "%s: %zu lines of further GPUs ignored: the first GPU's lines are read", file, r->other_gpu_lines);
    if (r->missing[0]) warn(a, "%s", r->missing);
}

th_status th_analyze_path(const char *path, const th_analyze_opts *o, th_analysis **out) {
    struct stat sb;
    if (stat(path, &sb) != 0) return th_fail(TH_ERR_IO, "%s: no such session directory or telemetry file", path);
    char tel[4200], meta_path[4200];
    th_session_meta meta;
    th_session_meta_init(&meta);
    int have_meta = 0;
    if (S_ISDIR(sb.st_mode)) {
        th_an_fmt(tel, sizeof tel, "%s/telemetry.csv", path);
        if (stat(tel, &sb) != 0) th_an_fmt(tel, sizeof tel, "%s/telemetry.jsonl", path);
        if (stat(tel, &sb) != 0) return th_fail(TH_ERR_IO, "%s: no telemetry.csv or telemetry.jsonl in the session directory", path);
        th_an_fmt(meta_path, sizeof meta_path, "%s/session.json", path);
        if (stat(meta_path, &sb) == 0) {
            th_status st = th_session_meta_read(meta_path, &meta);
            if (st != TH_OK) return st;
            have_meta = 1;
        }
    } else {
        th_an_fmt(tel, sizeof tel, "%s", path);
    }
    th_telemetry_row *rows = NULL, *steps = NULL, *all = NULL;
    size_t n = 0, n_steps = 0;
    char strict_err[600] = "";
    th_telemetry_read_report rep = {0};
    th_analyze_foreign_report nv = {0}, sr = {0};
    th_analysis *a = NULL;
    int nvsmi = sniff_nvsmi(tel), jsonl = th_telemetry_format_for(tel) == TH_TELEMETRY_JSONL;
    th_status st = nvsmi ? th_analyze_read_nvsmi(tel, &rows, &n, &nv) : read_ours(tel, &rows, &n, &rep, strict_err, sizeof strict_err);
    if (st == TH_OK && o && o->steps_path) st = th_analyze_read_steps(o->steps_path, o->time_col, o->grad_col, &steps, &n_steps, &sr);
    if (st != TH_OK) goto done;
    size_t kept = n, replaced = 0;
    if (steps) { /* the log's own step rows give way to the training log's */
        if (!(all = th_alloc((n + n_steps) * sizeof *all))) {
            st = th_fail(TH_ERR_NOMEM, "analyze: out of memory");
            goto done;
        }
        kept = 0;
        for (size_t i = 0; i < n; i++) {
            if (rows[i].is_step) replaced++;
            else all[kept++] = rows[i];
        }
        memcpy(all + kept, steps, n_steps * sizeof *steps);
    }
    st = analyze_rows_named(all ? all : rows, kept + n_steps, have_meta ? &meta : NULL, o, tel,
                            steps ? o->steps_path : NULL, &a);
    if (st != TH_OK) goto done;
    if (strict_err[0]) warn(a, "strict reader: %s; read tolerantly instead", strict_err);
    a->bad_rows = rep.bad_lines + nv.read.bad_lines + sr.read.bad_lines;
    if (rep.bad_lines)
        warn(a, "%zu line%s skipped; first: %s", rep.bad_lines, rep.bad_lines == 1 ? "" : "s", rep.first_bad);
    if (nvsmi) {
        foreign_warnings(a, tel, &nv);
        th_an_fmt(a->meta.sensor, sizeof a->meta.sensor, "nvidia-smi");
    }
    if (steps) foreign_warnings(a, o->steps_path, &sr);
    if (replaced) warn(a, "%zu step rows of %s replaced by --steps %s", replaced, tel, o->steps_path);
    order_warnings(a, tel, rows, n, 0, jsonl ? 0 : 1, rep.bad_lines + nv.read.bad_lines + nv.other_gpu_lines == 0);
    if (!steps) order_warnings(a, tel, rows, n, 1, jsonl ? 0 : 1, rep.bad_lines == 0);
    else order_warnings(a, o->steps_path, steps, n_steps, 1, 1, sr.read.bad_lines + sr.other_lines == 0);
    if (!a->meta.id[0]) {
        const char *base = strrchr(path, '/');
        th_an_fmt(a->meta.id, sizeof a->meta.id, "%s", base && base[1] ? base + 1 : path);
    }
    *out = a;
    a = NULL;
done:
    th_free(rows);
    th_free(steps);
    th_free(all);
    th_analysis_free(a);
    return st;
}

/* ---------------------------------------------------------------------------------
 * reproducibility */

static const th_an_figure_id repro_ids[TH_REPRO_FIGURES] = {TH_AN_ETA_UTIL, TH_AN_ETA_STABILITY, TH_AN_RLE,
                                                            TH_AN_SIGMA_OPT, TH_AN_TAU_FIT, TH_AN_R_FIT,
                                                            TH_AN_ETA_P, TH_AN_R_PEAK, TH_AN_T_LAG};

th_status th_repro_compare(const th_analysis *const *a, size_t n, th_repro_result *out) {
    if (n < 2) return th_fail(TH_ERR_INVALID, "repro: needs at least two sessions, got %zu", n);
    memset(out, 0, sizeof *out);
    out->all_agree = 1;
    for (int f = 0; f < TH_REPRO_FIGURES; f++) {
        th_repro_figure *r = &out->fig[f];
        r->id = repro_ids[f];
        double s = 0, lo = INFINITY, hi = -INFINITY;
        for (size_t i = 0; i < n; i++) {
            double v = a[i]->fig[r->id].value;
            if (!isfinite(v)) continue;
            s += v, lo = fmin(lo, v), hi = fmax(hi, v), r->n++;
        }
        r->mean = r->n ? s / r->n : NAN;
        r->min = r->n ? lo : NAN;
        r->max = r->n ? hi : NAN;
        if (r->n < 2) {
            r->spread = NAN;
            r->agree = -1;
            out->not_compared++;
            continue;
        }
        double dev = fmax(hi - r->mean, r->mean - lo);
        if (r->id == TH_AN_T_LAG) {
            r->spread = dev;
            r->agree = dev <= 1.0 + 1e-9;
        } else {
            r->spread = fabs(r->mean) > 0 ? dev / fabs(r->mean) : (dev == 0 ? 0 : INFINITY);
            r->agree = r->spread <= 0.2 + 1e-12;
        }
        if (!r->agree) out->all_agree = 0;
    }
    return TH_OK;
}
