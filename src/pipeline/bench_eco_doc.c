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

/* The rule, with the options the rating used, in one sentence (JSON and HTML). */
static void rating_rule(const th_bench_eco_result *r, char *out, size_t n) {
    snprintf(out, n,
             "quality: bits per byte of the data; baseline: uniform over the vocabulary; models are rated against "
             "each other only within +%.0f %% of the best bits per byte (others: not comparable: quality, no "
             "stars); stars 5 - floor(5 (e - min) / (max - min)) over the median Wh per 1k queries of the "
             "comparable models (AI Energy Score's bands; one band for all when the range is under %.0f %%), "
             "models whose min-max ranges over %d windows overlap share the best band among them; Pareto: bits per "
             "byte vs Wh among models that save bits over the baseline; flagged: a front model costing >= %.3g x "
             "its cheaper neighbour's energy for < %.3g %% better bits per byte (seed 5.8)",
             100 * r->quality_band, 100 * TH_EVAL_STARS_MIN_SPREAD, r->repeats, r->flag_energy_ratio,
             100 * r->flag_min_gain);
}

/* 0: rated, 1: measured but not comparable on quality, 2: not rated or no energy */
static int row_class(const th_bench_eco_model *em) {
    return em->stars > 0 ? 0 : !em->not_rated[0] && em->have_energy ? 1 : 2;
}

/* The models' order in the documents: rated first, then not comparable, then not rated;
 * inside each, quality per Wh descending (NaN last), then the input order. */
static void doc_order(const th_bench_eco_result *r, int *order) {
    for (int i = 0; i < r->n_models; i++) order[i] = i;
    for (int a = 1; a < r->n_models; a++)
        for (int b = a; b > 0; b--) {
            const th_bench_eco_model *x = &r->models[order[b]], *y = &r->models[order[b - 1]];
            int cx = row_class(x), cy = row_class(y);
            double qx = isfinite(x->quality_per_wh) ? x->quality_per_wh : -INFINITY;
            double qy = isfinite(y->quality_per_wh) ? y->quality_per_wh : -INFINITY;
            if (!(cx < cy || (cx == cy && qx > qy))) break;
            int t = order[b];
            order[b] = order[b - 1];
            order[b - 1] = t;
        }
}

/* The verdict between a front model and its cheaper neighbour, in words ("" when none). */
static void verdict_text(const th_bench_eco_result *r, const th_bench_eco_model *em, char *out, size_t n) {
    out[0] = 0;
    if (em->front_prev < 0) return;
    const char *prev = r->models[em->front_prev].name;
    if (em->flagged)
        snprintf(out, n, "FLAGGED: %.2f x the energy of %s for %.2f %% better bits/byte (rule: >= %.3g x for < %.3g %%)",
                 em->energy_ratio, prev, 100 * em->gain_rel, r->flag_energy_ratio, 100 * r->flag_min_gain);
    else
        snprintf(out, n, "ok: %.2f x the energy of %s for %.2f %% better bits/byte (%.3g Wh/1k per bit/byte)",
                 em->energy_ratio, prev, 100 * em->gain_rel, em->marginal_wh_per_bpb);
}

/* ---------------------------------------------------------------------------------
 * the table */

th_status th_bench_eco_table(const th_bench_eco_result *r, char **text) {
    eco_doc d = {NULL, 0, 0, 0};
    int order[TH_BENCH_ECO_MAX_MODELS];
    doc_order(r, order);
    if (r->modeled)
        put(&d, "NOTE: energy and temperature are MODELED on a simulated plant (%s), not measured.\n",
            r->models[0].fig.sensor);
    put(&d, "%-20s %8s %7s %10s %10s %-19s %10s %10s %10s %8s %6s  %s\n", "model", "bits/B", "saved", "saved/Wh",
        "perplexity", "Wh/1kq med [min-max]", "J/tok dec", "gCO2e/1kq", "mL H2O/1kq", "tok/s", "peakC", "rating");
    for (int k = 0; k < r->n_models; k++) {
        const th_bench_eco_model *em = &r->models[order[k]];
        if (em->queries == 0) { // stopped by a check before any measurement
            put(&d, "%-20s %8s %7s %10s %10s %-19s %10s %10s %10s %8s %6s  not rated: %s\n", em->name, "-", "-", "-",
                "-", "-", "-", "-", "-", "-", "-", em->not_rated);
            continue;
        }
        char wh[40];
        snprintf(wh, sizeof wh, "%.3g [%.3g-%.3g]", wh_per_kq(em), em->s_wh_per_kq.min, em->s_wh_per_kq.max);
        put(&d, "%-20s %8.4g %7.3g %10.3g %10.4g %-19s %10.4g %10.4g %10.4g %8.1f %6.1f  ", em->name,
            em->ppl.bits_per_byte, em->bpb_saved, em->quality_per_wh, em->ppl.perplexity, wh, em->j_tok_decode,
            em->per_kq.co2e_g, water_ml(&em->per_kq), em->tokens_per_s, em->temp_peak_c);
        if (em->not_rated[0]) put(&d, "not rated: %s", em->not_rated);
        else if (em->not_comparable[0]) put(&d, "not comparable: quality (%s)", em->not_comparable);
        else put(&d, "%d star%s%s", em->stars, em->stars == 1 ? "" : "s", em->pareto ? ", Pareto" : "");
        if (em->tie >= 0) put(&d, " (same band as %s: energy ranges overlap)", r->models[em->tie].name);
        if (em->flagged) put(&d, " FLAGGED");
        put(&d, "\n");
    }
    char rule[1024];
    rating_rule(r, rule, sizeof rule);
    put(&d, "rule: %s\nmachine: %s, %d threads, %s, precision %s; energy: median of %d windows per figure\n", rule,
        r->cpu, r->threads, r->matmul, r->precision, r->repeats);
    for (int k = 0; k < r->n_models; k++) {
        char v[256];
        verdict_text(r, &r->models[order[k]], v, sizeof v);
        if (v[0]) put(&d, "front %s: %s\n", r->models[order[k]].name, v);
    }
    for (int k = 0; k < r->n_models; k++)
        put(&d, "checks %s (%s): %s\n", r->models[order[k]].name, r->models[order[k]].path, r->models[order[k]].checks);
    return doc_finish(&d, text, "table");
}

/* ---------------------------------------------------------------------------------
 * the JSON document */

static json_t *num_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *spread_json(const th_bench_eco_spread *s, int e) {
    if (!e || s->n == 0) return json_null();
    return json_pack("{s:o, s:o, s:o, s:i}", "median", num_or_null(s->median), "min", num_or_null(s->min), "max",
                     num_or_null(s->max), "n", s->n);
}

static json_t *model_json(const th_bench_eco_result *r, const th_bench_eco_model *em, int rank) {
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
    /* issue 22: names, quality against the baseline, spreads, ties and verdicts */
    json_object_set_new(j, "name", json_string(em->name));
    json_object_set_new(j, "path", json_string(em->path));
    json_object_set_new(j, "rank", json_integer(rank));
    json_object_set_new(j, "bits_per_byte_uniform", num_or_null(em->bpb_uniform));
    json_object_set_new(j, "bits_per_byte_saved", num_or_null(em->bpb_saved));
    json_object_set_new(j, "bpb_saved_per_wh_per_1k_queries", num_or_null(e ? em->quality_per_wh : NAN));
    json_object_set_new(j, "comparable", json_boolean(em->comparable));
    json_object_set_new(j, "not_comparable",
                        em->not_comparable[0] ? json_sprintf("quality: %s", em->not_comparable) : json_null());
    json_object_set_new(j, "band_shared_with", em->tie >= 0 ? json_string(r->models[em->tie].name) : json_null());
    json_object_set_new(j, "wh_per_1k_queries_spread", spread_json(&em->s_wh_per_kq, e));
    json_object_set_new(j, "j_per_query_spread", spread_json(&em->s_j_query, e));
    json_object_set_new(j, "j_per_token_prefill_spread", spread_json(&em->s_j_tok_prefill, e));
    json_object_set_new(j, "j_per_token_decode_spread", spread_json(&em->s_j_tok_decode, e));
    json_object_set_new(j, "tokens_per_s_spread", spread_json(&em->s_tokens_per_s, e));
    int f = em->front_prev >= 0;
    char v[256];
    verdict_text(r, em, v, sizeof v);
    json_object_set_new(j, "front_prev", f ? json_string(r->models[em->front_prev].name) : json_null());
    json_object_set_new(j, "marginal_wh_per_1k_per_bpb", num_or_null(f ? em->marginal_wh_per_bpb : NAN));
    json_object_set_new(j, "energy_ratio_to_prev", num_or_null(f ? em->energy_ratio : NAN));
    json_object_set_new(j, "bpb_gain_rel_to_prev", num_or_null(f ? em->gain_rel : NAN));
    json_object_set_new(j, "flagged", json_boolean(em->flagged));
    json_object_set_new(j, "verdict", v[0] ? json_string(v) : json_null());
    const char *eb = energy_basis_word(em), *tb = em->fig.origin == TH_ORIGIN_MODELED ? "modeled" : "measured";
    json_t *b = json_object();
    static const char *const quality[] = {"perplexity", "bits_per_byte", "tokens_per_s", "duty_mean", NULL};
    static const char *const energy[] = {"j_per_token_prefill", "j_per_token_decode", "wh_per_1k_queries",
                                         "co2e_g_per_1k_queries", "water_ml_per_1k_queries",
                                         "nox_mg_per_1k_queries", "so2_mg_per_1k_queries",
                                         "pm25_mg_per_1k_queries", "rating", "bpb_saved_per_wh_per_1k_queries",
                                         NULL};
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
    int order[TH_BENCH_ECO_MAX_MODELS], rank[TH_BENCH_ECO_MAX_MODELS];
    doc_order(r, order);
    for (int k = 0; k < r->n_models; k++) rank[order[k]] = k + 1;
    json_t *root = json_object(), *arr = json_array();
    for (int i = 0; i < r->n_models; i++) json_array_append_new(arr, model_json(r, &r->models[i], rank[i]));
    json_object_set_new(root, "models", arr);
    char rule[1024];
    rating_rule(r, rule, sizeof rule);
    json_object_set_new(root, "rating_rule", json_string(rule));
    json_object_set_new(root, "rating_options",
                        json_pack("{s:f, s:f, s:f, s:f, s:i, s:s}", "quality_band", r->quality_band,
                                  "flag_energy_ratio", r->flag_energy_ratio, "flag_min_gain", r->flag_min_gain,
                                  "stars_min_spread", TH_EVAL_STARS_MIN_SPREAD, "repeats", r->repeats, "baseline",
                                  "uniform over the model's vocabulary"));
    json_object_set_new(root, "precision", json_string(r->precision));
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

/* a figure and its min-max range, "1.05 (0.98-1.12)" */
static void html_spread(eco_doc *d, double median, const th_bench_eco_spread *s) {
    if (s->n > 1) put(d, "<td>%.3g <span class=\"r\">(%.3g&ndash;%.3g)</span></td>", median, s->min, s->max);
    else put(d, "<td>%.3g</td>", median);
}

static void html_table(eco_doc *d, const th_bench_eco_result *r, const int *order) {
    put(d, "<table id=\"models\"><tr><th class=\"l\">model</th><th class=\"l\">rating</th><th>Pareto</th>"
           "<th>bits/byte</th><th>saved vs uniform</th><th>saved per Wh/1k</th><th>Wh/1k queries (min&ndash;max)</th>"
           "<th>J/token prefill</th><th>J/token decode</th><th>g CO2e/1k</th><th>mL water/1k</th>"
           "<th>tokens/s</th><th>peak &deg;C</th><th class=\"n\">notes</th></tr>\n");
    for (int k = 0; k < r->n_models; k++) {
        const th_bench_eco_model *em = &r->models[order[k]];
        put(d, "<tr data-name=\"");
        html_escape(d, em->name);
        put(d, "\" data-stars=\"%d\" data-pareto=\"%d\"><td class=\"l\" title=\"", em->stars, em->pareto);
        html_escape(d, em->path);
        put(d, "\">");
        html_escape(d, em->name);
        put(d, "</td><td class=\"l\">");
        if (em->not_rated[0]) put(d, "not rated");
        else if (em->not_comparable[0]) put(d, "not comparable: quality");
        else if (em->stars > 0) {
            put(d, "<span class=\"stars\" aria-label=\"%d of 5 stars\">", em->stars);
            for (int s = 0; s < 5; s++) put(d, s < em->stars ? "&#9733;" : "<span class=\"off\">&#9734;</span>");
            put(d, "</span>");
        }
        put(d, "</td><td class=\"c\">%s</td>", em->pareto ? "<span class=\"front\">&#9670; front</span>" : "");
        if (em->queries > 0) put(d, "<td>%.4g</td><td>%.3g</td>", em->ppl.bits_per_byte, em->bpb_saved);
        else put(d, "<td></td><td></td>");
        if (em->have_energy) {
            put(d, "<td>%.3g</td>", em->quality_per_wh);
            html_spread(d, wh_per_kq(em), &em->s_wh_per_kq);
            put(d, "<td>%.3g</td><td>%.3g</td>", em->j_tok_prefill, em->j_tok_decode);
            put(d, "<td>%.3g</td><td>%.3g</td>", em->per_kq.co2e_g, water_ml(&em->per_kq));
        } else {
            put(d, "<td></td><td></td><td></td><td></td><td></td><td></td>");
        }
        if (em->queries > 0)
            put(d, "<td>%.1f</td><td>%.1f</td>", em->tokens_per_s, em->temp_peak_c);
        else put(d, "<td></td><td></td>");
        put(d, "<td class=\"n\">");
        if (em->not_rated[0]) html_escape(d, em->not_rated);
        if (em->not_comparable[0]) html_escape(d, em->not_comparable);
        if (em->tie >= 0) {
            put(d, "same band as ");
            html_escape(d, r->models[em->tie].name);
            put(d, ": energy ranges overlap. ");
        }
        char v[256];
        verdict_text(r, em, v, sizeof v);
        if (v[0]) {
            put(d, "<span class=\"%s\">", em->flagged ? "flag" : "ok");
            html_escape(d, v);
            put(d, "</span>");
        }
        put(d, "</td></tr>\n");
    }
    put(d, "</table>\n");
}

static int plotted(const th_bench_eco_model *em) {
    return em->have_energy && isfinite(em->ppl.bits_per_byte) && isfinite(wh_per_kq(em));
}

/* Bits per byte against Wh per 1,000 queries with each model's energy range as a bar, the
 * uniform baseline as a dashed line, the front as a line. */
static void html_scatter(eco_doc *d, const th_bench_eco_result *r) {
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY, base = NAN;
    int same_base = 1;
    for (int i = 0; i < r->n_models; i++) {
        const th_bench_eco_model *em = &r->models[i];
        if (!plotted(em)) continue;
        double lo = em->s_wh_per_kq.n ? em->s_wh_per_kq.min : wh_per_kq(em);
        double hi = em->s_wh_per_kq.n ? em->s_wh_per_kq.max : wh_per_kq(em);
        xmin = fmin(xmin, lo), xmax = fmax(xmax, hi);
        ymin = fmin(ymin, em->ppl.bits_per_byte), ymax = fmax(ymax, em->ppl.bits_per_byte);
        if (isnan(base)) base = em->bpb_uniform;
        else if (fabs(base - em->bpb_uniform) > 1e-9 * base) same_base = 0;
    }
    if (!(xmin <= xmax)) return;
    if (same_base && isfinite(base)) ymin = fmin(ymin, base), ymax = fmax(ymax, base);
    const double W = 760, H = 420, L = 70, R = 160, T = 20, B = 50; // R: room for the labels
    double dx = xmax > xmin ? xmax - xmin : (xmin > 0 ? 0.2 * xmin : 1);
    double dy = ymax > ymin ? ymax - ymin : (ymin > 0 ? 0.2 * ymin : 1);
    double x0 = fmax(0, xmin - 0.15 * dx), x1 = xmax + 0.15 * dx, y0 = fmax(0, ymin - 0.15 * dy),
           y1 = ymax + 0.15 * dy;
#define PX(x) (L + ((x) - x0) / (x1 - x0) * (W - L - R))
#define PY(y) (H - B - ((y) - y0) / (y1 - y0) * (H - T - B))
    put(d, "<h2>Quality against energy per query</h2>\n<svg id=\"scatter\" xmlns=\"http://www.w3.org/2000/svg\" "
           "width=\"%.0f\" height=\"%.0f\" font-size=\"12\">\n<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" "
           "height=\"%.0f\" fill=\"none\" stroke=\"#444\"/>\n", W, H, L, T, W - L - R, H - T - B);
    for (int t = 0; t <= 4; t++) { // ticks
        double xv = x0 + (x1 - x0) * t / 4, yv = y0 + (y1 - y0) * t / 4;
        put(d, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%.3g</text>", PX(xv), H - B + 15, xv);
        put(d, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.3g</text>\n", L - 4, PY(yv) + 4, yv);
    }
    put(d, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">Wh per 1,000 queries (%s; bar: min&ndash;max of %d "
           "windows) &#8594; lower is better</text>\n", (L + W - R) / 2, H - 12, r->modeled ? "modeled" : "measured",
        r->repeats);
    put(d, "<text x=\"14\" y=\"%.0f\" transform=\"rotate(-90 14 %.0f)\" text-anchor=\"middle\">bits per byte (lower "
           "is better)</text>\n", (T + H - B) / 2, (T + H - B) / 2);
    if (same_base && isfinite(base))
        put(d, "<line x1=\"%.0f\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#888\" stroke-dasharray=\"5,4\"/>"
               "<text x=\"%.0f\" y=\"%.1f\" fill=\"#666\">uniform baseline %.3g</text>\n", L, W - R, PY(base),
            PY(base), W - R + 4, PY(base) + 4, base);
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
            put(d, "%.1f,%.1f ", PX(wh_per_kq(&r->models[order[a]])), PY(r->models[order[a]].ppl.bits_per_byte));
        put(d, "\"/>\n");
    }
    int drawn = 0;
    for (int i = 0; i < r->n_models; i++) {
        const th_bench_eco_model *em = &r->models[i];
        if (!plotted(em)) continue;
        double x = wh_per_kq(em), y = em->ppl.bits_per_byte, cx = PX(x), cy = PY(y);
        if (em->s_wh_per_kq.n > 1)
            put(d, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#555\" stroke-width=\"1.5\"/>",
                PX(em->s_wh_per_kq.min), PX(em->s_wh_per_kq.max), cy, cy);
        const char *fill = em->pareto ? "#d62728" : em->stars > 0 ? "#1f77b4" : "#bbbbbb";
        if (em->pareto)
            put(d, "<path class=\"pt\" d=\"M%.1f %.1fl7 7l-7 7l-7 -7z\" fill=\"%s\"", cx, cy - 7, fill);
        else
            put(d, "<circle class=\"pt\" cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"%s\"", cx, cy, fill);
        put(d, " data-name=\"");
        html_escape(d, em->name);
        put(d, "\" data-x=\"%.6g\" data-y=\"%.6g\"/>", x, y);
        // labels alternate above and below so that close points stay readable; the right
        // margin leaves room for a 20-character name
        put(d, "<text x=\"%.1f\" y=\"%.1f\">", cx + 9, cy + (drawn++ % 2 ? 16 : -8));
        html_escape(d, em->name);
        put(d, "</text>\n");
    }
#undef PX
#undef PY
    put(d, "</svg>\n<p>&#9670; red: the Pareto front (line); blue: rated; grey: not comparable or not rated. "
           "The dashed line is the uniform baseline: a model above it predicts worse than chance.</p>\n");
}

th_status th_bench_eco_write_html(const th_bench_eco_result *r, const char *path) {
    eco_doc d = {NULL, 0, 0, 0};
    int order[TH_BENCH_ECO_MAX_MODELS];
    doc_order(r, order);
    put(&d, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>thermo bench eco</title>\n"
            "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
            "td,th{border:1px solid #999;padding:4px 6px;text-align:right;white-space:nowrap}th{white-space:normal}"
            "table{font-size:14px}td.l,th.l{text-align:left}td.n,th.n{text-align:left;white-space:normal;min-width:"
            "16em;max-width:24em}td.c{text-align:center}.stars{color:#e0a800;font-size:1.2em;letter-spacing:1px}.off{color:#ccc}.front{color:#d62728}"
            ".r{color:#666;font-size:.85em}.flag{color:#b00;font-weight:bold}.ok{color:#060}"
            ".note{background:#fff3cd;padding:8px;border:1px solid #e0c36c}</style></head><body>\n"
            "<h1>thermo bench eco</h1>\n");
    if (r->modeled)
        put(&d, "<p class=\"note\" id=\"basis\">Energy and temperature figures are <b>modeled</b> on a simulated "
                "plant (%s), not measured by a hardware sensor.</p>\n", r->models[0].fig.sensor);
    else
        put(&d, "<p id=\"basis\">Energy measured by the sensor %s.</p>\n", r->models[0].fig.sensor);
    put(&d, "<p id=\"machine\">Machine: ");
    html_escape(&d, r->cpu);
    put(&d, ", %d threads; build: %s matmul; precision: <span id=\"precision\">", r->threads, r->matmul);
    html_escape(&d, r->precision);
    put(&d, "</span>; governor %s; region ", r->models[0].fig.governor);
    html_escape(&d, r->factors.region);
    put(&d, ". Each energy figure is the median of %d windows, with its min&ndash;max range.</p>\n", r->repeats);
    char rule[1024];
    rating_rule(r, rule, sizeof rule);
    put(&d, "<p id=\"rule\">Rule: ");
    html_escape(&d, rule);
    put(&d, ". Rows are sorted by bits per byte saved per Wh per 1,000 queries.</p>\n");
    html_table(&d, r, order);
    html_scatter(&d, r);
    put(&d, "</body></html>\n");
    char *text = NULL;
    th_status st = doc_finish(&d, &text, "HTML report");
    if (st != TH_OK) return st;
    st = th_atomic_write_file(path, text, d.n);
    th_free(text);
    return st;
}
