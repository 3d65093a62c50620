/* sheet.c: the data sheet (JSON and Markdown) and its plots, hand-written SVG that any
 * browser shows offline: temperature, power and duty against time; RLE and grad norm
 * against time; r against lag. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/analyze_internal.h"

static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static const char *origin_text(const th_analysis *a) {
    return a->replayed ? "replayed" : a->meta.modeled == 1 ? "modeled" : a->meta.modeled == 0 ? "measured" : "unknown";
}

th_status th_analysis_json(const th_analysis *a, char **out) {
    json_t *o = json_object(), *figs = json_object(), *xc = json_array(), *w = json_array();
    json_object_set_new(o, "session_id", json_string(a->meta.id));
    json_object_set_new(o, "date", json_string(a->meta.date));
    json_object_set_new(o, "model", json_string(a->meta.model));
    json_object_set_new(o, "data", json_string(origin_text(a)));
    json_object_set_new(o, "sensor", json_string(a->meta.sensor));
    json_object_set_new(o, "profile", json_string(a->meta.profile));
    json_object_set_new(o, "ambient_c", num(a->meta.ambient_c));
    json_object_set_new(o, "ambient_how", json_string(a->meta.ambient_how));
    json_object_set_new(o, "ambient_sd_c", num(a->ambient_sd_c));
    json_object_set_new(o, "duration_s", num(a->duration_s));
    json_object_set_new(o, "rows", json_integer((json_int_t)a->rows));
    json_object_set_new(o, "sample_rows", json_integer((json_int_t)a->sample_rows));
    json_object_set_new(o, "step_rows", json_integer((json_int_t)a->step_rows));
    json_object_set_new(o, "bad_rows", json_integer((json_int_t)a->bad_rows));
    json_object_set_new(o, "n_grid", json_integer((json_int_t)a->n_grid));
    json_object_set_new(o, "n_samples", json_integer((json_int_t)a->n_samples));
    json_object_set_new(o, "dropped", json_integer((json_int_t)a->dropped));
    json_object_set_new(o, "p_ref_w", num(a->p_ref_w));
    json_object_set_new(o, "p_ref_how", json_string(a->p_ref_how));
    json_object_set_new(o, "p_idle_w", num(a->p_idle_w));
    json_object_set_new(o, "p_idle_how", json_string(a->p_idle_how));
    for (int i = 0; i < TH_AN_COUNT; i++) {
        const th_an_figure *f = &a->fig[i];
        json_t *e = json_pack("{s:o, s:s, s:s, s:s}", "value", num(f->value), "unit", f->unit, "how", f->how,
                              "interpretation", f->interp);
        if (!isfinite(f->value)) json_object_set_new(e, "reason", json_string(f->how));
        if (isfinite(f->sd)) json_object_set_new(e, "sd", json_real(f->sd));
        json_object_set_new(figs, f->key, e);
        json_object_set_new(o, f->key, num(f->value)); /* flat copies for scripts */
    }
    json_object_set_new(o, "figures", figs);
    for (int k = -a->max_lag; k <= a->max_lag; k++)
        json_array_append_new(xc, json_pack("{s:i, s:o, s:i}", "lag_s", k, "r", num(a->xcorr_r[k + a->max_lag]),
                                            "pairs", a->xcorr_pairs[k + a->max_lag]));
    json_object_set_new(o, "xcorr", xc);
    json_object_set_new(o, "causal", json_string(a->causal));
    json_object_set_new(o, "r_significance_bound", num(a->r_bound));
    json_object_set_new(o, "n_eff", num(a->n_eff));
    for (int i = 0; i < a->n_warnings; i++) json_array_append_new(w, json_string(a->warnings[i]));
    json_object_set_new(o, "warnings", w);
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(8));
    json_decref(o);
    if (!text) return th_fail(TH_ERR_NOMEM, "analyze: out of memory for the JSON");
    *out = text;
    return TH_OK;
}

static void fmt_value(char *dst, size_t n, const th_an_figure *f) {
    if (isfinite(f->value) && isfinite(f->sd))
        th_an_fmt(dst, n, "%.4g ± %.2g%s%s", f->value, f->sd, f->unit[0] ? " " : "", f->unit);
    else if (isfinite(f->value)) th_an_fmt(dst, n, "%.4g%s%s", f->value, f->unit[0] ? " " : "", f->unit);
    else th_an_fmt(dst, n, "n/a");
}

/* A table cell: '|' escaped so it does not split the Markdown table. */
static void cell(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputc('\\', f);
        fputc(*s, f);
    }
}

static int write_markdown(const th_analysis *a, FILE *f) {
    fprintf(f, "# Thermal-optimization coupling data sheet\n\n");
    if (a->meta.modeled == 1)
        fprintf(f, "> **MODELED DATA.** Temperature and power come from %s (%s), not from a hardware sensor. The "
                   "figures describe the model's physics, not a device.\n\n",
                a->replayed ? "a replayed recording" : "a model or a source that is not a known hardware sensor",
                a->meta.sensor);
    else if (a->meta.modeled == 0)
        fprintf(f, "> Measured data from %s.\n\n", a->meta.sensor);
    else
        fprintf(f, "> Data origin unknown (no session metadata, no sample source).\n\n");
    fprintf(f, "| | |\n|---|---|\n");
    fprintf(f, "| session | %s |\n| date | %s |\n| model | %s |\n", a->meta.id, a->meta.date[0] ? a->meta.date : "n/a",
            a->meta.model[0] ? a->meta.model : "n/a");
    fprintf(f, "| data | %s (%s) |\n", origin_text(a), a->meta.sensor[0] ? a->meta.sensor : "no source");
    if (isfinite(a->meta.ambient_c)) fprintf(f, "| ambient | %.2f °C (%s) |\n", a->meta.ambient_c, a->meta.ambient_how);
    else fprintf(f, "| ambient | n/a |\n");
    fprintf(f, "| duration | %.1f s |\n", a->duration_s);
    fprintf(f, "| rows | %zu (%zu samples, %zu steps, %zu bad lines skipped) |\n", a->rows, a->sample_rows,
            a->step_rows, a->bad_rows);
    fprintf(f, "| alignment | 1 Hz grid, ±2 s tolerance: n_samples %zu of %zu, dropped %zu |\n", a->n_samples,
            a->n_grid, a->dropped);
    fprintf(f, "| P_ref | %.4g W (%s) |\n| P_idle | %.4g W (%s) |\n\n", a->p_ref_w, a->p_ref_how, a->p_idle_w,
            a->p_idle_how);
    fprintf(f, "## Figures\n\n| figure | value | reading | how / why n/a |\n|---|---|---|---|\n");
    for (int i = 0; i < TH_AN_COUNT; i++) {
        char v[64];
        fmt_value(v, sizeof v, &a->fig[i]);
        fprintf(f, "| %s | %s | ", a->fig[i].label, v);
        cell(f, a->fig[i].interp);
        fprintf(f, " | ");
        cell(f, a->fig[i].how);
        fprintf(f, " |\n");
    }
    fprintf(f, "\n## Cross-correlation of RLE(t) with grad norm(t + k)\n\n| k (s) | r | pairs |\n|---|---|---|\n");
    for (int k = -a->max_lag; k <= a->max_lag; k++) {
        double r = a->xcorr_r[k + a->max_lag];
        if (isfinite(r)) fprintf(f, "| %+d | %.3f | %d |\n", k, r, a->xcorr_pairs[k + a->max_lag]);
        else fprintf(f, "| %+d | n/a | %d |\n", k, a->xcorr_pairs[k + a->max_lag]);
    }
    fprintf(f, "\n**Causal order:** %s\n\n", a->causal);
    fprintf(f, "Manual's rules: t_lag < 0: gradient spikes precede RLE drops; |r| > 0.5 strong, 0.3-0.5 moderate, "
               "< 0.3 weak; tau < 2 s fast, 2-5 s normal, > 5 s slow; eta_p > 0.8 high, 0.6-0.8 moderate, < 0.6 low.\n\n");
    if (a->n_warnings) {
        fprintf(f, "## Warnings\n\n");
        for (int i = 0; i < a->n_warnings; i++) fprintf(f, "- %s\n", a->warnings[i]);
        fprintf(f, "\n");
    }
    fprintf(f, "## Plots\n\n![temperature, power, duty](thermal.svg)\n\n![RLE and grad norm](rle_grad.svg)\n\n"
               "![correlation against lag](xcorr.svg)\n");
    return ferror(f) ? -1 : 0;
}

/* ---------------------------------------------------------------------------------
 * SVG */

enum { W = 760, PANEL_H = 150, LEFT = 70, RIGHT = 20, TOP = 30, GAP = 40 };

/* One panel: axes, min/max labels, the series as polylines broken at NaN. */
static void svg_panel(FILE *f, int y0, const char *title, const char *color, const double *x, const double *y,
                      size_t n, int bars) {
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) continue;
        xmin = fmin(xmin, x[i]), xmax = fmax(xmax, x[i]), ymin = fmin(ymin, y[i]), ymax = fmax(ymax, y[i]);
    }
    int pw = W - LEFT - RIGHT;
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"13\" font-family=\"sans-serif\">%s</text>\n", LEFT, y0 - 8, title);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n", LEFT, y0, pw,
            PANEL_H);
    if (!isfinite(xmin)) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" font-family=\"sans-serif\" fill=\"#a00\">no data</text>\n",
                LEFT + 10, y0 + PANEL_H / 2);
        return;
    }
    if (bars) ymin = fmin(ymin, 0), ymax = fmax(ymax, 0);
    if (xmax == xmin) xmax = xmin + 1;
    if (ymax == ymin) ymax += 0.5, ymin -= 0.5;
    double pad = 0.05 * (ymax - ymin);
    ymin -= pad, ymax += pad;
#define PX(v) (LEFT + ((v) - xmin) / (xmax - xmin) * pw)
#define PY(v) (y0 + PANEL_H - ((v) - ymin) / (ymax - ymin) * PANEL_H)
    fprintf(f, "<g font-size=\"11\" font-family=\"sans-serif\" fill=\"#333\">"
               "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.4g</text>"
               "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.4g</text>"
               "<text x=\"%d\" y=\"%d\">%.4g</text><text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.4g</text></g>\n",
            LEFT - 4, y0 + 10, ymax, LEFT - 4, y0 + PANEL_H, ymin, LEFT, y0 + PANEL_H + 14, xmin, LEFT + pw,
            y0 + PANEL_H + 14, xmax);
    if (bars) {
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#888\"/>\n", LEFT, LEFT + pw, PY(0.0),
                PY(0.0));
        for (size_t i = 0; i < n; i++) {
            if (!isfinite(y[i])) continue;
            double cx = PX(x[i]), top = PY(fmax(y[i], 0.0)), bot = PY(fmin(y[i], 0.0));
            fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"16\" height=\"%.1f\" fill=\"%s\"/>\n", cx - 8, top,
                    fmax(bot - top, 0.5), color);
        }
        return;
    }
    int open = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) {
            if (open) fprintf(f, "\"/>\n"), open = 0;
            continue;
        }
        if (!open) fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"", color), open = 1;
        fprintf(f, "%.1f,%.1f ", PX(x[i]), PY(y[i]));
    }
    if (open) fprintf(f, "\"/>\n");
#undef PX
#undef PY
}

static th_status svg_file(const char *path, const char *title, int panels, const char *const *titles,
                          const char *const *colors, const double *x, const double *const *ys, size_t n, int bars) {
    th_atomic_file *af;
    th_status st = th_atomic_open(path, &af);
    if (st != TH_OK) return st;
    FILE *f = th_atomic_stream(af);
    int h = TOP + panels * (PANEL_H + GAP) + 10;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
               "height=\"%d\" viewBox=\"0 0 %d %d\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
               "<text x=\"%d\" y=\"18\" font-size=\"15\" font-family=\"sans-serif\" font-weight=\"bold\">%s</text>\n",
            W, h, W, h, LEFT, title);
    for (int p = 0; p < panels; p++)
        svg_panel(f, TOP + 14 + p * (PANEL_H + GAP), titles[p], colors[p], x, ys[p], n, bars);
    fprintf(f, "</svg>\n");
    return th_atomic_commit(af); /* a stream error fails it */
}

th_status th_analysis_write(const th_analysis *a, const char *dir) {
    char path[4200];
    char *json = NULL;
    th_status st = th_analysis_json(a, &json);
    if (st != TH_OK) return st;
    th_an_fmt(path, sizeof path, "%s/datasheet.json", dir);
    th_atomic_file *af;
    st = th_atomic_open(path, &af);
    if (st == TH_OK) {
        th_atomic_write(af, json, strlen(json));
        th_atomic_write(af, "\n", 1);
        st = th_atomic_commit(af);
    }
    free(json); /* jansson's */
    if (st != TH_OK) return st;
    th_an_fmt(path, sizeof path, "%s/datasheet.md", dir);
    if ((st = th_atomic_open(path, &af)) != TH_OK) return st;
    if (write_markdown(a, th_atomic_stream(af))) th_atomic_fail(af, th_fail(TH_ERR_IO, "%s: write failed", path));
    if ((st = th_atomic_commit(af)) != TH_OK) return st;

    const char *tag = a->meta.modeled == 1 ? " (MODELED: simulated plant)" : a->meta.modeled == 0 ? " (measured)" : "";
    char title[256];
    th_an_fmt(path, sizeof path, "%s/thermal.svg", dir);
    th_an_fmt(title, sizeof title, "Session %s: temperature, power, duty%s", a->meta.id, tag);
    const char *t1[] = {"temperature (°C) vs time (s)", "power (W) vs time (s)", "duty vs time (s)"};
    const char *c1[] = {"#c0392b", "#2c7fb8", "#27ae60"};
    const double *y1[] = {a->temp_c, a->power_w, a->duty};
    if ((st = svg_file(path, title, 3, t1, c1, a->t_s, y1, a->n_grid, 0)) != TH_OK) return st;
    th_an_fmt(path, sizeof path, "%s/rle_grad.svg", dir);
    th_an_fmt(title, sizeof title, "Session %s: RLE and gradient norm%s", a->meta.id, tag);
    const char *t2[] = {"RLE vs time (s)", "grad norm vs time (s)"};
    const char *c2[] = {"#8e44ad", "#d35400"};
    const double *y2[] = {a->rle, a->grad_norm};
    if ((st = svg_file(path, title, 2, t2, c2, a->t_s, y2, a->n_grid, 0)) != TH_OK) return st;
    th_an_fmt(path, sizeof path, "%s/xcorr.svg", dir);
    th_an_fmt(title, sizeof title, "Session %s: r of RLE(t) with grad norm(t+k)%s", a->meta.id, tag);
    double lags[2 * TH_AN_MAX_LAG + 1];
    int nl = 2 * a->max_lag + 1;
    for (int k = 0; k < nl; k++) lags[k] = k - a->max_lag;
    const char *t3[] = {"r vs lag k (s); k < 0: grad norm leads"};
    const char *c3[] = {"#34495e"};
    const double *y3[] = {a->xcorr_r};
    return svg_file(path, title, 1, t3, c3, lags, y3, (size_t)nl, 1);
}
