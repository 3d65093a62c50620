/* test_serve_dashboard.c: the dashboard at / in a real headless browser (Debian's
 * chromium). Starts the server on a free loopback port, makes a few completions, lets
 * chromium load the page and poll for a few (virtual) seconds, and checks what the DOM
 * shows against /metrics: the recent requests listed (count, token counts, energy at most
 * the session's), joules per token, the limit, the thermal state and that samples were
 * plotted. Writes a screenshot (to $THERMO_DASHBOARD_PNG when set). Skips, passing, only
 * when chromium is not installed (scripts/setup installs it). */
#include <jansson.h>

#include "test_util.h"
#include "thermo/io.h"
#include "thermo/serve.h"

static char model[600];

static int run(const char *cmd) { return system(cmd) == 0; }

static double metric(int port, const char *name) {
    char cmd[800];
    SPATH(m, "metrics.txt");
    snprintf(cmd, sizeof cmd, "curl -s -m 10 -o '%s' http://127.0.0.1:%d/metrics", m, port);
    char *t = run(cmd) ? test_read_file(m, NULL) : NULL;
    double v = NAN;
    size_t n = strlen(name);
    for (const char *p = t; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, name, n) && p[n] == ' ') v = atof(p + n + 1);
    free(t);
    return v;
}

/* The text of the element with id (from the dumped DOM) into out; 0 when absent. */
static int by_id(const char *dom, const char *id, char *out, size_t n) {
    char key[64];
    snprintf(key, sizeof key, "id=\"%s\"", id);
    const char *p = dom ? strstr(dom, key) : NULL;
    p = p ? strchr(p, '>') : NULL;
    if (!p) return 0;
    size_t k = 0;
    for (p++; *p && *p != '<' && k + 1 < n; p++) out[k++] = *p;
    out[k] = 0;
    return 1;
}

int main(void) {
    if (!run("command -v chromium >/dev/null 2>&1")) {
        printf("SKIP: chromium is not installed (scripts/setup installs it); the dashboard was not tested in a browser\n");
        return 0;
    }
    const char *dir = scratch_make("dashboard");
    snprintf(model, sizeof model, "%s/model", dir);
    th_gpt2_config cfg = {128, 50257, 2, 2, 32, 1e-5f};
    th_gpt2 *m = NULL;
    CHECK(th_gpt2_create(&cfg, &m) == TH_OK, "model");
    th_gpt2_init_random(m, 3);
    CHECK(th_hf_save(m, model) == TH_OK, "save model: %s", th_last_error());
    th_gpt2_free(m);
    th_threads_set(2);

    th_serve_opts o = th_serve_defaults();
    o.model_path = model;
    o.port = 0;
    o.run.sensor = "sim";
    o.run.governor = "none";
    o.run.temp_limit_c = 80;
    o.run.hz = 20;
    th_server *s = NULL;
    if (th_server_start(&o, &s) != TH_OK) {
        fprintf(stderr, "FAIL server start: %s\n", th_last_error());
        return 1;
    }
    int port = th_server_port(s);

    /* three completions of known lengths */
    const int lens[3] = {5, 9, 13};
    char cmd[3000];
    for (int k = 0; k < 3; k++) {
        snprintf(cmd, sizeof cmd,
                 "curl -s -m 20 -o /dev/null --data-binary '{\"prompt\":[%d,2,3],\"max_tokens\":%d,\"temperature\":1,\"seed\":%d}' "
                 "http://127.0.0.1:%d/v1/completions", 10 + k, lens[k], k, port);
        CHECK(run(cmd), "completion %d", k);
    }
    double jpt_before = metric(port, "thermo_joules_per_token");
    double energy_before = metric(port, "thermo_energy_joules_total");

    /* the page in the browser: 6 s of virtual time is six polls of /metrics and /v1/recent */
    SPATH(dom_path, "dom.html");
    SPATH(png, "dashboard.png");
    SPATH(profile, "chromium-profile");
    const char *flags = "--headless --no-sandbox --disable-gpu --no-first-run --disable-extensions "
                        "--virtual-time-budget=6000 --window-size=1200,900";
    snprintf(cmd, sizeof cmd, "timeout 90 chromium %s --user-data-dir='%s' --dump-dom http://127.0.0.1:%d/ > '%s' 2>/dev/null",
             flags, profile, port, dom_path);
    CHECK(run(cmd), "chromium --dump-dom ran");
    const char *shot = getenv("THERMO_DASHBOARD_PNG") ? getenv("THERMO_DASHBOARD_PNG") : png;
    snprintf(cmd, sizeof cmd, "timeout 90 chromium %s --user-data-dir='%s' --screenshot='%s' http://127.0.0.1:%d/ >/dev/null 2>&1",
             flags, profile, shot, port);
    CHECK(run(cmd), "chromium --screenshot ran");
    size_t png_len = 0;
    char *png_data = test_read_file(shot, &png_len);
    CHECK(png_data && png_len > 1000 && !memcmp(png_data, "\x89PNG", 4), "screenshot %s (%zu bytes)", shot, png_len);
    free(png_data);
    double jpt_after = metric(port, "thermo_joules_per_token");
    double limit = metric(port, "thermo_temperature_limit_celsius");
    double finished = metric(port, "thermo_request_finish_total{reason=\"length\"}") +
                      metric(port, "thermo_request_finish_total{reason=\"stop\"}") +
                      metric(port, "thermo_request_finish_total{reason=\"loop\"}");
    double energy_after = metric(port, "thermo_energy_joules_total");

    char *dom = test_read_file(dom_path, NULL);
    char v[128];
    /* data came: the plots have samples */
    const char *sm = dom ? strstr(dom, "data-samples=\"") : NULL;
    int samples = sm ? atoi(sm + 14) : 0;
    CHECK(samples >= 2, "the page polled /metrics (%d samples)", samples);
    /* the listed requests: as many rows as finished requests, with their token counts */
    const char *tab = dom ? strstr(dom, "id=\"recent\"") : NULL;
    int rows = 0, tokens_seen[3] = {0, 0, 0};
    double energy_listed = 0;
    for (const char *p = tab ? strstr(tab, "<td>") : NULL; p; p = strstr(p, "<td>")) {
        double cell[7];
        int c = 0;
        for (; c < 7 && p && !strncmp(p, "<td>", 4); c++) {
            cell[c] = atof(p + (strncmp(p + 4, "cmpl-", 5) ? 4 : 9));
            p = strstr(p, "</td>");
            p = p ? p + 5 : NULL;
        }
        if (c < 7) break;
        rows++;
        for (int k = 0; k < 3; k++) tokens_seen[k] |= (int)cell[1] == lens[k];
        CHECK(cell[4] > 0, "row %d: an energy figure (%g J)", rows, cell[4]);
        energy_listed += cell[4];
        if (!p || strncmp(p, "</tr>", 5)) break;
    }
    CHECK(rows == 3 && finished == 3, "recent requests listed: %d rows, /metrics %g finished", rows, finished);
    CHECK(tokens_seen[0] && tokens_seen[1] && tokens_seen[2], "each request's tokens listed");
    CHECK(energy_listed > 0 && energy_listed <= energy_after * 1.001, "listed energy %g J within the session's %g J",
          energy_listed, energy_after);
    /* the figures: J/token between /metrics before and after the page loaded (idle energy
     * only adds to it), shown to 4 significant digits */
    CHECK(by_id(dom, "jpt", v, sizeof v) && atof(v) >= jpt_before * 0.999 && atof(v) <= jpt_after * 1.001,
          "J/token shown %s, /metrics %g .. %g", v, jpt_before, jpt_after);
    CHECK(energy_after >= energy_before, "energy counter monotone");
    CHECK(by_id(dom, "limit", v, sizeof v) && fabs(atof(v) - limit) < 0.051, "limit shown %s, /metrics %g", v, limit);
    CHECK(by_id(dom, "state", v, sizeof v) && !strcmp(v, "ok"), "thermal state shown '%s'", v);
    CHECK(by_id(dom, "running", v, sizeof v) && !strcmp(v, "0"), "running shown '%s'", v);
    CHECK(by_id(dom, "origin", v, sizeof v) && strstr(v, "MODELED by sim:"), "temperature origin shown '%s'", v);
    free(dom);

    CHECK(th_server_stop(s, 1, NULL) == TH_OK, "stop");
    scratch_cleanup();
    return test_summary();
}
