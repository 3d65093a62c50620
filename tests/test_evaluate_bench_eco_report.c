/* test_evaluate_bench_eco_report.c: the eco-benchmark's rating rule and its HTML report,
 * on results built by hand (no measurement: every figure is known), then the page in a real
 * headless browser (Debian's chromium, as test_serve_dashboard).
 *
 * The pure rules (evaluate.h): the uniform baseline's bits per byte, the quality band, one
 * band for overlapping energy ranges (chained), the marginal verdict between front neighbours.
 * th_bench_eco_rate on five models, bits per byte / median Wh per 1k queries [min, max]:
 *   trained  2.00 / 1.00 [0.90, 1.10]   cheapest comparable: 5 stars, front
 *   close    2.05 / 1.60 [1.05, 1.70]   4 stars by its median, but its range overlaps trained's:
 *                                        5 stars, "same band as trained"; dominated: off the front
 *   bigger   1.99 / 3.50 [3.40, 3.60]   1 star, front, 3.5 x trained's energy for 0.5 % better
 *                                        bits per byte: flagged (not with a 0.1 % gain threshold)
 *   random   3.95 / 0.50 [0.45, 0.55]   the cheapest, but worse than the uniform baseline (3.90):
 *                                        not comparable: quality, no stars, off the front
 *   broken   not rated (a failed check): no stars, last in the table
 * names from paths ("runs/trained/model" -> "trained/model") and from a --names list.
 * The browser: the page's table rows (data-name, data-stars, the filled stars drawn) and the
 * plot's points (data-name, data-x, data-y) against the JSON document's names, ranks, ratings
 * and figures; a screenshot (to $THERMO_ECO_PNG when set). Skips the browser part, passing,
 * only when chromium is not installed. */
#include <jansson.h>

#include "test_util.h"
#include "thermo/pipeline.h"

static void model(th_bench_eco_model *em, const char *path, double bpb, double wh, double lo, double hi) {
    memset(em, 0, sizeof *em);
    em->path = path;
    em->ppl.predicted = 1000;
    em->ppl.bytes = 4000; // uniform: 1000 x log2(50257) / 4000 = 3.904 bits per byte
    em->ppl.bits_per_byte = bpb;
    em->ppl.perplexity = exp2(bpb * 4.0);
    em->vocab_size = 50257;
    em->queries = 10;
    em->have_energy = 1;
    em->per_kq.energy_it_kwh = wh / 1e3;
    em->j_query = wh * 3.6;
    em->s_wh_per_kq = (th_bench_eco_spread){wh, lo, hi, 5};
    em->s_j_query = (th_bench_eco_spread){wh * 3.6, lo * 3.6, hi * 3.6, 5};
    em->s_j_tok_prefill = em->s_j_tok_decode = (th_bench_eco_spread){0.01, 0.009, 0.011, 5};
    em->j_tok_prefill = em->j_tok_decode = 0.01;
    em->tokens_per_s = 100;
    em->fig.origin = TH_ORIGIN_MODELED;
    snprintf(em->fig.sensor, sizeof em->fig.sensor, "sim:laptop-cpu");
    snprintf(em->fig.governor, sizeof em->fig.governor, "none");
    snprintf(em->checks, sizeof em->checks, "by hand");
}

static const th_bench_eco_model *named(const th_bench_eco_result *r, const char *name) {
    for (int i = 0; i < r->n_models; i++)
        if (!strcmp(r->models[i].name, name)) return &r->models[i];
    return NULL;
}

/* the value of attribute `attr` in the tag starting at p (within the next '>') */
static int attr(const char *p, const char *attr_name, char *out, size_t n) {
    char key[64];
    snprintf(key, sizeof key, " %s=\"", attr_name);
    const char *end = strchr(p, '>'), *a = strstr(p, key);
    if (!a || (end && a > end)) return 0;
    a += strlen(key);
    size_t k = 0;
    for (; *a && *a != '"' && k + 1 < n; a++) out[k++] = *a;
    out[k] = 0;
    return 1;
}

static void pure_rules(void) {
    CHECK(fabs(th_eval_uniform_bpb(1000, 4000, 50257) - 1000 * log2(50257.0) / 4000) < 1e-12, "uniform bpb");
    CHECK(isnan(th_eval_uniform_bpb(0, 4000, 50257)) && isnan(th_eval_uniform_bpb(10, 0, 50257)), "uniform: NaN");
    double bpb[4] = {2.0, 2.19, 2.21, NAN};
    int c[4], el[4] = {1, 1, 1, 1};
    CHECK(th_eval_quality_comparable(bpb, el, 4, 0.10, c) == TH_OK && c[0] && c[1] && !c[2] && !c[3],
          "band 10 %%: %d %d %d %d", c[0], c[1], c[2], c[3]);
    el[0] = 0; // the best not eligible: the band follows the best eligible
    CHECK(th_eval_quality_comparable(bpb, el, 4, 0.10, c) == TH_OK && !c[0] && c[1] && c[2], "band without model 0");
    CHECK(th_eval_quality_comparable(bpb, NULL, 4, -1, c) == TH_ERR_INVALID, "negative band");
    // chained overlap: 1 [0.9,1.1], 1.5 [1.05,1.6], 2 [1.55,2.1] share one band; 5 [4.9,5.1] does not
    double e[4] = {1, 1.5, 2, 5}, lo[4] = {0.9, 1.05, 1.55, 4.9}, hi[4] = {1.1, 1.6, 2.1, 5.1};
    int s[4], tie[4];
    CHECK(th_eval_energy_stars_spread(e, lo, hi, NULL, 4, s, tie) == TH_OK && s[0] == 5 && s[1] == 5 && s[2] == 5 &&
              s[3] == 1 && tie[0] == 1 && tie[1] == 0 && tie[2] == 0 && tie[3] == -1,
          "chained overlap: stars %d %d %d %d, ties %d %d %d %d", s[0], s[1], s[2], s[3], tie[0], tie[1], tie[2],
          tie[3]);
    CHECK(th_eval_energy_stars_spread(e, NULL, NULL, NULL, 4, s, NULL) == TH_OK && s[0] == 5 && s[1] == 5 &&
              s[2] == 4 && s[3] == 1,
          "no ranges: the medians' bands %d %d %d %d", s[0], s[1], s[2], s[3]);
    // the verdict: 1.99 at 3.5 x for 0.5 % is flagged; 1.5 at 2 x for 25 % is not
    double q[3] = {2.0, 1.99, 1.5}, en[3] = {1.0, 3.5, 7.0}, m[3], ra[3], g[3];
    int front[3] = {1, 1, 1}, prev[3], fl[3];
    CHECK(th_eval_front_marginal(q, en, front, 3, 3, 0.01, prev, m, ra, g, fl) == TH_OK && prev[0] == -1 &&
              prev[1] == 0 && prev[2] == 1 && fl[1] && !fl[2] && !fl[0] && fabs(m[1] - 2.5 / 0.01) < 1e-6 &&
              fabs(ra[2] - 2) < 1e-12 && fabs(g[2] - 0.49 / 1.99) < 1e-12,
          "verdicts: prev %d %d, flagged %d %d, marginal %g", prev[1], prev[2], fl[1], fl[2], m[1]);
    CHECK(th_eval_front_marginal(q, en, front, 3, 1, 0.01, prev, m, ra, g, fl) == TH_ERR_INVALID, "k <= 1");
}

/* The page in chromium against the JSON: rows in rank order with their stars, plot points. */
static void browser(const char *html_path, const char *json_text) {
    if (system("command -v chromium >/dev/null 2>&1") != 0) {
        printf("SKIP: chromium is not installed (scripts/setup installs it); the report was not rendered\n");
        return;
    }
    SPATH(dom_path, "eco-dom.html");
    SPATH(png, "eco.png");
    SPATH(profile, "chromium-profile");
    const char *flags = "--headless --no-sandbox --disable-gpu --no-first-run --disable-extensions "
                        "--virtual-time-budget=2000 --window-size=1400,1500";
    char cmd[6000];
    snprintf(cmd, sizeof cmd, "timeout 90 chromium %s --user-data-dir='%s' --dump-dom 'file://%s' > '%s' 2>/dev/null",
             flags, profile, html_path, dom_path);
    CHECK(system(cmd) == 0, "chromium --dump-dom ran");
    const char *shot = getenv("THERMO_ECO_PNG") ? getenv("THERMO_ECO_PNG") : png;
    snprintf(cmd, sizeof cmd, "timeout 90 chromium %s --user-data-dir='%s' --screenshot='%s' 'file://%s' >/dev/null 2>&1",
             flags, profile, shot, html_path);
    CHECK(system(cmd) == 0, "chromium --screenshot ran");
    size_t png_len = 0;
    char *png_data = test_read_file(shot, &png_len);
    CHECK(png_data && png_len > 1000 && !memcmp(png_data, "\x89PNG", 4), "screenshot %s (%zu bytes)", shot, png_len);
    free(png_data);

    char *dom = test_read_file(dom_path, NULL);
    json_error_t jerr;
    json_t *root = json_loads(json_text, 0, &jerr), *arr = json_object_get(root, "models");
    CHECK(dom && root, "DOM and JSON read");
    if (!dom || !root) goto done;
    size_t n = json_array_size(arr);
    // the table: row k is the model of JSON rank k+1, with its stars drawn filled
    const char *row = strstr(dom, "id=\"models\"");
    size_t rows = 0;
    for (row = row ? strstr(row, "<tr data-name=") : NULL; row; row = strstr(row + 1, "<tr data-name=")) {
        char name[80], stars[8];
        CHECK(attr(row, "data-name", name, sizeof name) && attr(row, "data-stars", stars, sizeof stars), "row attrs");
        json_t *m = NULL;
        for (size_t i = 0; i < n; i++)
            if (json_integer_value(json_object_get(json_array_get(arr, i), "rank")) == (json_int_t)rows + 1)
                m = json_array_get(arr, i);
        const char *want = m ? json_string_value(json_object_get(m, "name")) : "";
        json_int_t rating = m && json_is_integer(json_object_get(m, "rating"))
                                ? json_integer_value(json_object_get(m, "rating")) : 0;
        CHECK(!strcmp(name, want) && atoi(stars) == rating, "row %zu: %s (%s stars), JSON rank %zu: %s (%lld)",
              rows, name, stars, rows + 1, want, (long long)rating);
        const char *end = strstr(row, "</tr>");
        int filled = 0;
        for (const char *p = strstr(row, "\xe2\x98\x85"); p && end && p < end; p = strstr(p + 3, "\xe2\x98\x85"))
            filled++; // U+2605 BLACK STAR, as the browser decoded &#9733;
        CHECK(filled == rating, "row %s: %d filled stars drawn, rating %lld", name, filled, (long long)rating);
        const char *front = strstr(row, "\xe2\x97\x86"); // U+25C6, the front's mark
        CHECK((front && front < end) == json_is_true(json_object_get(m, "pareto")), "row %s: front mark", name);
        rows++;
    }
    CHECK(rows == n, "%zu rows for %zu models", rows, n);
    // the plot: one point per model with energy, at its JSON figures
    int points = 0;
    for (const char *p = strstr(dom, "class=\"pt\""); p; p = strstr(p + 1, "class=\"pt\"")) {
        char name[80], x[32], y[32];
        CHECK(attr(p, "data-name", name, sizeof name) && attr(p, "data-x", x, sizeof x) &&
                  attr(p, "data-y", y, sizeof y),
              "point attrs");
        for (size_t i = 0; i < n; i++) {
            json_t *m = json_array_get(arr, i);
            if (strcmp(json_string_value(json_object_get(m, "name")), name)) continue;
            double wx = json_number_value(json_object_get(m, "wh_per_1k_queries"));
            double wy = json_number_value(json_object_get(m, "bits_per_byte"));
            CHECK(fabs(atof(x) - wx) <= 1e-4 * wx && fabs(atof(y) - wy) <= 1e-4 * wy, "point %s at (%s, %s), JSON "
                  "(%g, %g)", name, x, y, wx, wy);
            points++;
        }
    }
    CHECK(points == 4, "4 models plotted (the broken one has no energy), got %d", points);
    CHECK(strstr(dom, "modeled") && strstr(dom, "precision: <span id=\"precision\">f32</span>"),
          "the page names the sensor basis and the precision");
done:
    json_decref(root);
    free(dom);
}

int main(void) {
    pure_rules();

    th_bench_eco_model ms[5];
    model(&ms[0], "/tmp/x/runs/trained/model", 2.00, 1.00, 0.90, 1.10);
    model(&ms[1], "/tmp/x/close", 2.05, 1.60, 1.05, 1.70);
    model(&ms[2], "/tmp/x/bigger/", 1.99, 3.50, 3.40, 3.60);
    model(&ms[3], "/tmp/x/random", 3.95, 0.50, 0.45, 0.55);
    model(&ms[4], "/tmp/x/broken", NAN, NAN, NAN, NAN);
    ms[4].have_energy = 0;
    ms[4].queries = 0;
    ms[4].s_wh_per_kq.n = 0;
    snprintf(ms[4].not_rated, sizeof ms[4].not_rated, "KV-cache logits differ");
    th_bench_eco_result r;
    memset(&r, 0, sizeof r);
    r.models = ms;
    r.n_models = 5;
    snprintf(r.cpu, sizeof r.cpu, "Test CPU");
    r.threads = 1;
    r.matmul = "naive";
    snprintf(r.factors.region, sizeof r.factors.region, "WORLD");
    th_bench_eco_opts o = th_bench_eco_defaults();
    CHECK(th_bench_eco_rate(&r, &o) == TH_OK, "rate: %s", th_last_error());
    const th_bench_eco_model *tr = named(&r, "trained/model"), *cl = named(&r, "close"), *bg = named(&r, "bigger"),
                             *rn = named(&r, "random"), *bk = named(&r, "broken");
    CHECK(tr && cl && bg && rn && bk, "names from paths");
    if (!(tr && cl && bg && rn && bk)) return test_summary();
    CHECK(tr->stars == 5 && tr->pareto && tr->comparable && tr->tie == 1, "trained: 5 stars, front, tied with close");
    CHECK(cl->stars == 5 && !cl->pareto && cl->tie == 0, "close: overlapping ranges, no band split (%d stars)",
          cl->stars);
    CHECK(bg->stars == 1 && bg->pareto && bg->front_prev == 0 && bg->flagged && fabs(bg->energy_ratio - 3.5) < 1e-9,
          "bigger: 1 star, front after trained, flagged (ratio %g, gain %g)", bg->energy_ratio, bg->gain_rel);
    CHECK(!rn->comparable && rn->stars == 0 && !rn->pareto && rn->bpb_saved < 0 && strstr(rn->not_comparable, "band"),
          "random: not comparable, off the front (saved %g)", rn->bpb_saved);
    CHECK(rn->stars <= tr->stars && bk->stars == 0 && !bk->pareto, "the random and the broken never above");
    CHECK(fabs(tr->quality_per_wh - (1000 * log2(50257.0) / 4000 - 2.0) / 1.0) < 1e-9, "quality per Wh: %g",
          tr->quality_per_wh);
    CHECK(!strcmp(r.precision, "f32") && r.repeats == 5, "precision and repeats copied");
    char *table = NULL, *json = NULL;
    CHECK(th_bench_eco_table(&r, &table) == TH_OK && strstr(table, "same band as trained/model: energy ranges overlap") &&
              strstr(table, "FLAGGED") && strstr(table, "not comparable: quality") &&
              strstr(table, "trained/model ") < strstr(table, "close ") && strstr(table, "close ") <
              strstr(table, "bigger ") && strstr(table, "bigger ") < strstr(table, "random ") &&
              strstr(table, "random ") < strstr(table, "broken "),
          "table sorted by quality per cost, ties and verdicts said: %s", table ? table : th_last_error());
    th_free(table);

    // a looser verdict threshold, and names given
    th_bench_eco_opts loose = o;
    loose.flag_min_gain = 0.001;
    loose.names = "a,b,c,d,e";
    CHECK(th_bench_eco_rate(&r, &loose) == TH_OK && !named(&r, "c")->flagged && named(&r, "c")->pareto &&
              !strcmp(ms[0].name, "a"),
          "gain threshold 0.1 %%: bigger not flagged; --names used");
    loose.names = "a,b";
    CHECK(th_bench_eco_rate(&r, &loose) == TH_ERR_INVALID && strstr(th_last_error(), "5 non-empty names"),
          "a names list of the wrong length: %s", th_last_error());
    loose.names = NULL;
    loose.flag_energy_ratio = 1;
    CHECK(th_bench_eco_rate(&r, &loose) == TH_ERR_INVALID, "flag ratio 1 refused");
    CHECK(th_bench_eco_rate(&r, &o) == TH_OK, "rate again with the defaults");

    CHECK(th_bench_eco_json(&r, &json) == TH_OK, "json: %s", th_last_error());
    const char *dir = scratch_make("eco_report");
    char html[4200];
    snprintf(html, sizeof html, "%s/eco.html", dir);
    CHECK(th_bench_eco_write_html(&r, html) == TH_OK, "write HTML: %s", th_last_error());
    char *page = test_read_file(html, NULL);
    CHECK(page && strstr(page, "&#9733;&#9733;&#9733;&#9733;&#9733;") && !strstr(page, "&#9734;&#9734;&#9734;&#9734;&#9734;") &&
              strstr(page, "not comparable: quality") && strstr(page, "title=\"/tmp/x/runs/trained/model\"") &&
              !strstr(page, ">/tmp/x/"),
          "5 filled stars, short names shown, full paths only in titles");
    free(page);
    if (json) browser(html, json);
    th_free(json);
    scratch_cleanup();
    return test_summary();
}
