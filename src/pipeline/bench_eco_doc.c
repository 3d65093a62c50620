/* bench_eco_doc.c: the eco-benchmark's documents (pipeline.h): the text table, the JSON
 * document and the self-contained HTML report, each built from th_bench_eco_result alone
 * so that the CLI only prints or names a file. Files are written atomically. */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thermo/pipeline.h"

/* ---------------------------------------------------------------------------------
 * a growing text, th_alloc'd; the first failed allocation sticks */

typedef struct {
    char *p;
    size_t n, cap;
    int failed;
} eco_doc;

static void put(eco_doc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(eco_doc *d, const char *fmt, ...) {
    if (d->failed) return;
    va_list ap;
    va_start(ap, fmt);
    int need = vsnprintf(d->p ? d->p + d->n : NULL, d->p ? d->cap - d->n : 0, fmt, ap);
    va_end(ap);
    if (need < 0) {
        d->failed = 1;
        return;
    }
    if (d->p && d->n + (size_t)need < d->cap) {
        d->n += (size_t)need;
        return;
    }
    size_t cap = d->cap ? d->cap : 4096;
    while (cap <= d->n + (size_t)need) cap *= 2;
    char *bigger = th_realloc(d->p, cap);
    if (!bigger) {
        d->failed = 1;
        return;
    }
    d->p = bigger;
    d->cap = cap;
    va_start(ap, fmt);
    vsnprintf(d->p + d->n, d->cap - d->n, fmt, ap);
    va_end(ap);
    d->n += (size_t)need;
}

/* Hands the text to *text, or frees it and fails. */
static th_status doc_finish(eco_doc *d, char **text, const char *what) {
    if (d->failed || !d->p) {
        th_free(d->p);
        *text = NULL;
        return th_fail(TH_ERR_NOMEM, "bench eco: out of memory for the %s", what);
    }
    *text = d->p;
    return TH_OK;
}

/* ---------------------------------------------------------------------------------
 * shared figures */

static double water_ml(const th_eco_footprint *fp) { return (fp->water_onsite_l + fp->water_offsite_l) * 1e3; }

static double wh_per_kq(const th_bench_eco_model *em) { return em->per_kq.energy_it_kwh * 1e3; }

static const char *energy_basis_word(const th_bench_eco_model *em) {
    return em->fig.energy.basis == TH_ECO_BASIS_MODELED || em->fig.energy.basis == TH_ECO_BASIS_ESTIMATE ? "modeled"
                                                                                                        : "measured";
}

static const char *RATING_RULE = "stars 5 - floor(5 (e - min) / (max - min)) over Wh per 1k queries of the rated "
                                 "models, clamped to 1..5; Pareto: perplexity vs Wh";

/* ---------------------------------------------------------------------------------
 * the table */

th_status th_bench_eco_table(const th_bench_eco_result *r, char **text) {
    eco_doc d = {NULL, 0, 0, 0};
    if (r->modeled)
        put(&d, "NOTE: energy and temperature are MODELED on a simulated plant (%s), not measured.\n",
            r->models[0].fig.sensor);
    put(&d, "%-28s %10s %8s %10s %10s %10s %10s %10s %8s %6s  %s\n", "model", "perplexity", "bits/B", "J/tok pre",
        "J/tok dec", "Wh/1kq", "gCO2e/1kq", "mL H2O/1kq", "tok/s", "peakC", "rating");
    for (int i = 0; i < r->n_models; i++) {
        const th_bench_eco_model *em = &r->models[i];
        if (em->queries == 0) { // stopped by a check before any measurement
            put(&d, "%-28s %10s %8s %10s %10s %10s %10s %10s %8s %6s  not rated: %s\n", em->path, "-", "-", "-",
                "-", "-", "-", "-", "-", "-", em->not_rated);
            continue;
        }
        put(&d, "%-28s %10.4g %8.4g %10.4g %10.4g %10.4g %10.4g %10.4g %8.1f %6.1f  ", em->path, em->ppl.perplexity,
            em->ppl.bits_per_byte, em->j_tok_prefill, em->j_tok_decode, wh_per_kq(em), em->per_kq.co2e_g,
            water_ml(&em->per_kq), em->tokens_per_s, em->temp_peak_c);
        if (em->not_rated[0]) put(&d, "not rated: %s\n", em->not_rated);
        else put(&d, "%d star%s%s\n", em->stars, em->stars == 1 ? "" : "s", em->pareto ? ", Pareto" : "");
    }
    put(&d, "stars: five equal bands of the Wh/1k-queries range among rated models (AI Energy Score's rule); "
            "machine: %s, %d threads, %s\n", r->cpu, r->threads, r->matmul);
    for (int i = 0; i < r->n_models; i++) put(&d, "checks %s: %s\n", r->models[i].path, r->models[i].checks);
    return doc_finish(&d, text, "table");
}

/* ---------------------------------------------------------------------------------
 * the JSON document */

static json_t *num_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *model_json(const th_bench_eco_model *em) {
    const th_eco_footprint *fp = &em->per_kq;
    int e = em->have_energy;
    json_t *j = json_object();
    json_object_set_new(j, "model", json_string(em->path));
    json_object_set_new(j, "perplexity", num_or_null(em->ppl.perplexity));
    json_object_set_new(j, "bits_per_byte", num_or_null(em->ppl.bits_per_byte));
    json_object_set_new(j, "tokens_scored", json_integer(em->ppl.predicted));
    json_object_set_new(j, "j_per_token_prefill", num_or_null(e ? em->j_tok_prefill : NAN));
    json_object_set_new(j, "j_per_token_decode", num_or_null(e ? em->j_tok_decode : NAN));
    json_object_set_new(j, "wh_per_1k_queries", num_or_null(e ? wh_per_kq(em) : NAN));
    json_object_set_new(j, "co2e_g_per_1k_queries", num_or_null(e ? fp->co2e_g : NAN));
    json_object_set_new(j, "water_ml_per_1k_queries", num_or_null(e ? water_ml(fp) : NAN));
    json_object_set_new(j, "nox_mg_per_1k_queries", num_or_null(e ? fp->nox_g * 1e3 : NAN));
    json_object_set_new(j, "so2_mg_per_1k_queries", num_or_null(e ? fp->so2_g * 1e3 : NAN));
    json_object_set_new(j, "pm25_mg_per_1k_queries", num_or_null(e ? fp->pm25_g * 1e3 : NAN));
    json_object_set_new(j, "tokens_per_s", num_or_null(em->tokens_per_s));
    json_object_set_new(j, "temp_mean_c", num_or_null(em->temp_mean_c));
    json_object_set_new(j, "temp_peak_c", num_or_null(em->temp_peak_c));
    json_object_set_new(j, "above_limit_s", num_or_null(em->above_limit_s));
    json_object_set_new(j, "duty_mean", num_or_null(em->duty_mean));
    json_object_set_new(j, "queries_measured", json_integer(em->queries));
    json_object_set_new(j, "recorded_val_loss", num_or_null(em->recorded_val_loss));
    json_object_set_new(j, "rating", em->stars > 0 ? json_integer(em->stars) : json_null());
    json_object_set_new(j, "pareto", json_boolean(em->pareto));
    json_object_set_new(j, "not_rated", em->not_rated[0] ? json_string(em->not_rated) : json_null());
    json_object_set_new(j, "checks", json_string(em->checks));
    const char *eb = energy_basis_word(em), *tb = em->fig.origin == TH_ORIGIN_MODELED ? "modeled" : "measured";
    json_t *b = json_object();
    static const char *const quality[] = {"perplexity", "bits_per_byte", "tokens_per_s", "duty_mean", NULL};
    static const char *const energy[] = {"j_per_token_prefill", "j_per_token_decode", "wh_per_1k_queries",
                                         "co2e_g_per_1k_queries", "water_ml_per_1k_queries",
                                         "nox_mg_per_1k_queries", "so2_mg_per_1k_queries",
                                         "pm25_mg_per_1k_queries", "rating", NULL};
    static const char *const thermal[] = {"temp_mean_c", "temp_peak_c", "above_limit_s", NULL};
    for (int k = 0; quality[k]; k++) json_object_set_new(b, quality[k], json_string("measured"));
    for (int k = 0; energy[k]; k++) json_object_set_new(b, energy[k], json_string(eb));
    for (int k = 0; thermal[k]; k++) json_object_set_new(b, thermal[k], json_string(tb));
    json_object_set_new(j, "basis", b);
    return j;
}

/* The factors block: region, preset and every factor with its source, from the first
 * model's footprint report (the factors are the same for every model). */
static json_t *factors_json(const th_bench_eco_result *r) {
    for (int i = 0; i < r->n_models; i++) {
        void *fj = NULL;
        if (!r->models[i].have_energy || th_eco_report_json(&r->models[i].per_kq, NULL, &fj) != TH_OK) continue;
        json_t *full = fj, *factors = json_object();
        json_object_set(factors, "region", json_object_get(full, "region"));
        json_object_set(factors, "preset", json_object_get(full, "preset"));
        json_object_update(factors, json_object_get(full, "factors"));
        json_decref(full);
        return factors;
    }
    return json_null();
}

/* jansson's text (malloc'd) copied into a th_alloc'd one. */
static th_status json_text(const th_bench_eco_result *r, char **text) {
    *text = NULL;
    json_t *root = json_object(), *arr = json_array();
    for (int i = 0; i < r->n_models; i++) json_array_append_new(arr, model_json(&r->models[i]));
    json_object_set_new(root, "models", arr);
    json_object_set_new(root, "rating_rule", json_string(RATING_RULE));
    const th_bench_eco_model *m0 = &r->models[0];
    json_t *mach = json_pack("{s:i, s:s, s:s, s:s, s:s, s:s}", "threads", r->threads, "cpu", r->cpu, "build",
                             r->matmul, "sensor", m0->fig.sensor, "sensor_basis",
                             r->modeled ? "modeled (simulated plant)" : "measured", "governor", m0->fig.governor);
    json_object_set_new(root, "machine", mach);
    json_object_set_new(root, "factors", factors_json(r));
    char *out = json_dumps(root, JSON_REAL_PRECISION(6));
    json_decref(root);
    if (!out) return th_fail(TH_ERR_NOMEM, "bench eco: out of memory for the JSON");
    size_t n = strlen(out);
    *text = th_alloc(n + 1);
    if (*text) memcpy(*text, out, n + 1);
    free(out);
    return *text ? TH_OK : th_fail(TH_ERR_NOMEM, "bench eco: out of memory for the JSON");
}

th_status th_bench_eco_json(const th_bench_eco_result *r, char **text) { return json_text(r, text); }

th_status th_bench_eco_write_json(const th_bench_eco_result *r, const char *path) {
    char *text = NULL;
    th_status st = json_text(r, &text);
    if (st != TH_OK) return st;
    size_t n = strlen(text);
    text[n] = '\n'; // the NUL becomes the file's last newline
    st = th_atomic_write_file(path, text, n + 1);
    th_free(text);
    return st;
}

/* ---------------------------------------------------------------------------------
 * the HTML report */

static void html_escape(eco_doc *d, const char *s) {
    for (; *s; s++) {
        if (*s == '<') put(d, "&lt;");
        else if (*s == '>') put(d, "&gt;");
        else if (*s == '&') put(d, "&amp;");
        else if (*s == '"') put(d, "&quot;");
        else put(d, "%c", *s);
    }
}

static void html_table(eco_doc *d, const th_bench_eco_result *r) {
    put(d, "<table><tr><th class=\"l\">model</th><th>perplexity</th><th>bits/byte</th><th>J/token prefill</th>"
           "<th>J/token decode</th><th>Wh/1k queries</th><th>g CO2e/1k</th><th>mL water/1k</th>"
           "<th>tokens/s</th><th>peak &deg;C</th><th class=\"l\">rating</th></tr>\n");
    for (int i = 0; i < r->n_models; i++) {
        const th_bench_eco_model *em = &r->models[i];
        put(d, "<tr><td class=\"l\">");
        html_escape(d, em->path);
        put(d, "</td><td>%.4g</td><td>%.4g</td>", em->ppl.perplexity, em->ppl.bits_per_byte);
        if (em->have_energy)
            put(d, "<td>%.4g</td><td>%.4g</td><td>%.4g</td><td>%.4g</td><td>%.4g</td>", em->j_tok_prefill,
                em->j_tok_decode, wh_per_kq(em), em->per_kq.co2e_g, water_ml(&em->per_kq));
        else
            put(d, "<td></td><td></td><td></td><td></td><td></td>");
        put(d, "<td>%.1f</td><td>%.1f</td><td class=\"l\">", em->tokens_per_s, em->temp_peak_c);
        if (em->not_rated[0]) {
            put(d, "not rated: ");
            html_escape(d, em->not_rated);
        } else {
            for (int s = 0; s < em->stars; s++) put(d, "&#9734;");
            if (em->pareto) put(d, " &#9733; Pareto");
        }
        put(d, "</td></tr>\n");
    }
    put(d, "</table>\n");
}

static int plotted(const th_bench_eco_model *em) { return em->have_energy && isfinite(em->ppl.perplexity); }

/* The scatter of perplexity against Wh per 1,000 queries, the front as a staircase. */
static void html_scatter(eco_doc *d, const th_bench_eco_result *r) {
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int i = 0; i < r->n_models; i++) {
        if (!plotted(&r->models[i])) continue;
        double x = wh_per_kq(&r->models[i]), y = r->models[i].ppl.perplexity;
        xmin = fmin(xmin, x), xmax = fmax(xmax, x), ymin = fmin(ymin, y), ymax = fmax(ymax, y);
    }
    if (!(xmin <= xmax)) return;
    const double W = 640, H = 400, L = 70, R = 20, T = 20, B = 50;
    double dx = xmax > xmin ? xmax - xmin : (xmin > 0 ? xmin : 1), dy = ymax > ymin ? ymax - ymin : (ymin > 0 ? ymin : 1);
    double x0 = xmin - 0.1 * dx, x1 = xmax + 0.1 * dx, y0 = ymin - 0.1 * dy, y1 = ymax + 0.1 * dy;
#define PX(x) (L + ((x) - x0) / (x1 - x0) * (W - L - R))
#define PY(y) (H - B - ((y) - y0) / (y1 - y0) * (H - T - B))
    put(d, "<h2>Quality against energy per query</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
           "height=\"%.0f\" font-size=\"12\">\n<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\" "
           "fill=\"none\" stroke=\"#444\"/>\n", W, H, L, T, W - L - R, H - T - B);
    put(d, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">Wh per 1,000 queries (%s) &#8594; lower is "
           "better</text>\n", (L + W - R) / 2, H - 12, r->modeled ? "modeled" : "measured");
    put(d, "<text x=\"14\" y=\"%.0f\" transform=\"rotate(-90 14 %.0f)\" text-anchor=\"middle\">perplexity (lower "
           "is better)</text>\n", (T + H - B) / 2, (T + H - B) / 2);
    put(d, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"start\">%.4g</text><text x=\"%.0f\" y=\"%.0f\" "
           "text-anchor=\"end\">%.4g</text>\n", L, H - B + 15, x0, W - R, H - B + 15, x1);
    put(d, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.4g</text><text x=\"%.0f\" y=\"%.0f\" "
           "text-anchor=\"end\">%.4g</text>\n", L - 4, H - B, y0, L - 4, T + 10, y1);
    int order[TH_BENCH_ECO_MAX_MODELS], nf = 0;
    for (int i = 0; i < r->n_models; i++)
        if (r->models[i].pareto) order[nf++] = i;
    for (int a = 1; a < nf; a++) // insertion sort by energy
        for (int b = a; b > 0 && wh_per_kq(&r->models[order[b]]) < wh_per_kq(&r->models[order[b - 1]]); b--) {
            int t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
    if (nf > 1) {
        put(d, "<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" points=\"");
        for (int a = 0; a < nf; a++)
            put(d, "%.1f,%.1f ", PX(wh_per_kq(&r->models[order[a]])), PY(r->models[order[a]].ppl.perplexity));
        put(d, "\"/>\n");
    }
    for (int i = 0; i < r->n_models; i++) {
        const th_bench_eco_model *em = &r->models[i];
        if (!plotted(em)) continue;
        double cx = PX(wh_per_kq(em)), cy = PY(em->ppl.perplexity);
        put(d, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"%s\"/><text x=\"%.1f\" y=\"%.1f\">", cx, cy,
            em->pareto ? "#d62728" : em->not_rated[0] ? "#bbbbbb" : "#1f77b4", cx + 8, cy - 8);
        html_escape(d, em->path);
        put(d, "</text>\n");
    }
#undef PX
#undef PY
    put(d, "</svg>\n<p>Red: the Pareto front; grey: not rated.</p>\n");
}

th_status th_bench_eco_write_html(const th_bench_eco_result *r, const char *path) {
    eco_doc d = {NULL, 0, 0, 0};
    put(&d, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>thermo bench eco</title>\n"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #999;padding:4px 8px;text-align:right}td.l,th.l{text-align:left}"
            ".note{background:#fff3cd;padding:8px;border:1px solid #e0c36c}</style></head><body>\n"
            "<h1>thermo bench eco</h1>\n");
    if (r->modeled)
        put(&d, "<p class=\"note\">Energy and temperature figures are <b>modeled</b> on a simulated plant, not "
                "measured by a hardware sensor.</p>\n");
    put(&d, "<p>Region ");
    html_escape(&d, r->factors.region);
    put(&d, ". Stars: five equal bands of the Wh per 1,000 queries range among the rated models (AI Energy "
            "Score's rule); &#9733; on the Pareto front of perplexity against energy.</p>\n");
    html_table(&d, r);
    html_scatter(&d, r);
    put(&d, "</body></html>\n");
    char *text = NULL;
    th_status st = doc_finish(&d, &text, "HTML report");
    if (st != TH_OK) return st;
    st = th_atomic_write_file(path, text, d.n);
    th_free(text);
    return st;
}
