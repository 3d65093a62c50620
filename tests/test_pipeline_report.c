/* test_pipeline_report.c: the run report (th_run_report) built from synthetic figures and
 * the real factor tables: the summary's few lines carry the energy basis, the grid
 * factor's source and year, the per-token cost, the peak against the limit and the pacing
 * cost; the full text names every factor's source; the JSON has the keys the CLI always
 * wrote (plus report_version) and reads back; a failed write leaves the old file; runs
 * without energy or without factors; allocation failures. */
#include <jansson.h>
#include <unistd.h>

#include "test_util.h"
#include "thermo/pipeline.h"

static th_eco_factors factors(const char *region, const char *preset) {
    th_eco_tables *t = NULL;
    th_eco_factors f;
    memset(&f, 0, sizeof f);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/data/factors", test_source_dir());
    CHECK(th_eco_tables_load(&t, dir) == TH_OK && th_eco_factors_resolve(t, region, preset, &f) == TH_OK, "factors %s",
          region);
    th_eco_tables_free(t);
    return f;
}

/* A generate run on the simulated plant: 2410 J over 61 s, 1270 tokens, 3.7 s idle of 61. */
static th_run_figures figures(void) {
    th_run_figures g;
    memset(&g, 0, sizeof g);
    g.have_energy = 1;
    g.energy = (th_energy_figure){2410.0, 61.0, TH_ECO_BASIS_MODELED, "sim:laptop-cpu"};
    g.seconds = 61.0;
    g.temp_c = 80.2;
    g.temp_max_c = 88.3;
    g.samples = 610;
    snprintf(g.sensor, sizeof g.sensor, "sim:laptop-cpu");
    g.origin = TH_ORIGIN_MODELED;
    snprintf(g.governor, sizeof g.governor, "predictive");
    g.limit_c = 91.0;
    g.above_limit_s = 0.0;
    g.busy_s = 57.3;
    g.idle_s = 3.7;
    snprintf(g.governor_status, sizeof g.governor_status, "predicted 90.1 C in 2 s; duty 0.93");
    return g;
}

static const th_run_units units = {"generate", 1270, 0, "max-tokens", 100, "loop: period 7"};

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static void test_text(void) {
    th_eco_factors f = factors("WORLD", NULL);
    th_run_figures g = figures();
    th_run_report *r = NULL;
    CHECK(th_run_report_build(&g, &f, &units, &r) == TH_OK && r && th_run_report_has_energy(r), "build");
    if (!r) return;
    char *s = NULL;
    CHECK(th_run_report_text(r, TH_REPORT_SUMMARY, &s) == TH_OK && s, "summary");
    printf("%s", s);
    int lines = count_lines(s);
    CHECK(lines >= 4 && lines <= 6, "summary has %d lines", lines);
    CHECK(!strncmp(s, "eco: MODELED by the simulated plant (sim:laptop-cpu", 51), "first line names the basis:\n%s", s);
    CHECK(strstr(s, "2.41 kJ IT over 61 s, modeled") && strstr(s, "WORLD 445 g/kWh, IEA 2024") &&
              strstr(s, "PUE 1 own-machine"),
          "energy and the grid factor with its source and year:\n%s", s);
    CHECK(strstr(s, "per token 1.9 J, 235 \xc2\xb5g CO2e"), "per-token energy (2410 J / 1270) and CO2e:\n%s", s);
    CHECK(strstr(s, "peak 88.3 \xc2\xb0""C modeled (limit 91.0, 0.0 s above)") && strstr(s, "pacing 6 % idle (predictive)"),
          "thermal and pacing figures:\n%s", s);
    CHECK(strstr(s, "wasted by loop: period 7: 100 tokens"), "waste line:\n%s", s);
    CHECK(strstr(s, "--report full"), "points to the full report:\n%s", s);
    th_free(s);

    CHECK(th_run_report_text(r, TH_REPORT_FULL, &s) == TH_OK && s, "full");
    int missing = 0;
    for (int i = 0; i < TH_ECO_F_COUNT; i++) {
        const th_eco_factor *x = &f.f[i];
        if (i == TH_ECO_F_METHANE || !x->available) continue;
        if (!strstr(s, x->source)) {
            missing++;
            fprintf(stderr, "full text lacks the source of %s: %s\n", th_eco_factor_name((th_eco_factor_id)i), x->source);
        }
    }
    CHECK(missing == 0, "%d factor sources missing", missing);
    CHECK(strstr(s, "== eco report: generate ==") && strstr(s, "NOTE: no hardware sensor was read") &&
              strstr(s, "equivalences (EPA)") && strstr(s, "governor: predicted 90.1 C") && strstr(s, "per token ") &&
              strstr(s, "wasted by loop: period 7: 100 tokens"),
          "full text:\n%s", s);
    CHECK(!strstr(s, "per step"), "a per-step line without steps");
    th_free(s);
    CHECK(th_run_report_text(r, (th_report_style)9, &s) == TH_ERR_INVALID && s == NULL, "unknown style");
    th_run_report_free(r);

    // measured, with a fail-safe decision, no temperature, per step only
    g.origin = TH_ORIGIN_MEASURED;
    g.energy.basis = TH_ECO_BASIS_MEASURED_COUNTER;
    snprintf(g.sensor, sizeof g.sensor, "rapl:package-0");
    g.temp_max_c = g.temp_c = NAN;
    g.fail_safe_decisions = 3;
    th_run_units u = {"train", 0, 12, NULL, 0, NULL};
    CHECK(th_run_report_build(&g, &f, &u, &r) == TH_OK, "build measured");
    CHECK(th_run_report_text(r, TH_REPORT_SUMMARY, &s) == TH_OK, "summary");
    CHECK(!strncmp(s, "eco: MEASURED by rapl:package-0", 31) && strstr(s, "measured-counter") &&
              strstr(s, "per step 201 J") && !strstr(s, "peak") && strstr(s, "3 fail-safe decisions"),
          "measured summary:\n%s", s);
    th_free(s);
    th_run_report_free(r);
}

static void test_json(const char *dir) {
    th_eco_factors f = factors("WORLD", NULL);
    th_run_figures g = figures();
    th_run_report *r = NULL;
    CHECK(th_run_report_build(&g, &f, &units, &r) == TH_OK, "build");
    char path[4300];
    snprintf(path, sizeof path, "%s/report.json", dir);
    remove(path);
    CHECK(th_run_report_write_json(r, path) == TH_OK, "write");
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    CHECK(j != NULL, "read back: %s", err.text);
    if (j) {
        static const char *keys[] = {"energy_it_kwh", "energy_facility_kwh", "co2e_kg", "water_onsite_l",
                                     "water_offsite_l", "nox_g", "cars_year", "basis", "energy_source", "duration_s",
                                     "region", "preset", "methane_enabled", "factors", "per_unit", "command",
                                     "stop_reason", "wasted", "measured", "temp_peak_c", "temp_last_c", "thermal",
                                     "report_version", NULL};
        for (int k = 0; keys[k]; k++) CHECK(json_object_get(j, keys[k]) != NULL, "no key %s", keys[k]);
        double kwh = json_number_value(json_object_get(j, "energy_it_kwh"));
        CHECK(fabs(kwh * TH_J_PER_KWH - 2410.0) < 2410.0 * 1e-9, "energy %.12g J", kwh * TH_J_PER_KWH); // 10 digits
        json_t *tok = json_object_get(json_object_get(j, "per_unit"), "token");
        CHECK(tok && fabs(json_number_value(json_object_get(tok, "energy_it_j")) - 2410.0 / 1270) < 1e-9 &&
                  json_number_value(json_object_get(tok, "count")) == 1270,
              "per token");
        CHECK(json_integer_value(json_object_get(j, "report_version")) == TH_RUN_REPORT_VERSION, "version");
        CHECK(json_is_false(json_object_get(j, "measured")) &&
                  !strcmp(json_string_value(json_object_get(j, "basis")), "modeled"),
              "modeled, not measured");
        CHECK(!strcmp(json_string_value(json_object_get(j, "command")), "generate") &&
                  !strcmp(json_string_value(json_object_get(j, "stop_reason")), "max-tokens"),
              "command and stop reason");
        json_t *w = json_object_get(j, "wasted");
        CHECK(w && json_number_value(json_object_get(w, "tokens")) == 100 &&
                  fabs(json_number_value(json_object_get(w, "energy_it_j")) - 2410.0 * 100 / 1270) < 1e-7,
              "wasted");
        json_t *th = json_object_get(j, "thermal");
        CHECK(th && !strcmp(json_string_value(json_object_get(th, "governor")), "predictive") &&
                  json_number_value(json_object_get(th, "limit_c")) == 91.0 &&
                  json_number_value(json_object_get(th, "idle_s")) == 3.7,
              "thermal");
        json_t *grid = json_object_get(json_object_get(j, "factors"), "grid_g_per_kwh");
        CHECK(grid && strstr(json_string_value(json_object_get(grid, "source")), "IEA"), "grid factor source");
        json_decref(j);
    }

    // a failed write leaves the old file as it was, and no temporary behind
    char *before = test_read_file(path, NULL);
    char tmp[4400];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(mkdir(tmp, 0755) == 0, "a directory where the temporary goes");
    CHECK(th_run_report_write_json(r, path) == TH_ERR_IO, "write over a blocked temporary succeeded");
    char *after = test_read_file(path, NULL);
    CHECK(before && after && !strcmp(before, after), "the old report was changed");
    free(after);
    rmdir(tmp);
    char ro[4300], in_ro[4400];
    snprintf(ro, sizeof ro, "%s/readonly", dir);
    snprintf(in_ro, sizeof in_ro, "%s/report.json", ro);
    mkdir(ro, 0755);
    chmod(ro, 0755);
    FILE *old = fopen(in_ro, "w");
    CHECK(old && fputs("{\"old\": true}\n", old) >= 0 && fclose(old) == 0, "old file");
    chmod(ro, 0555);
    if (geteuid() != 0) { // root writes anywhere
        CHECK(th_run_report_write_json(r, in_ro) == TH_ERR_IO && strstr(th_last_error(), "readonly"),
              "write into an unwritable directory");
        after = test_read_file(in_ro, NULL);
        CHECK(after && !strcmp(after, "{\"old\": true}\n"), "the old file in the unwritable directory changed");
        free(after);
    }
    chmod(ro, 0755);
    snprintf(in_ro, sizeof in_ro, "%s/no/such/dir/report.json", dir);
    CHECK(th_run_report_write_json(r, in_ro) == TH_ERR_IO && !test_file_exists(in_ro),
          "write into a missing directory");
    free(before);

    // the CodeCarbon row
    snprintf(path, sizeof path, "%s/emissions.csv", dir);
    remove(path);
    CHECK(th_run_report_append_emissions(r, path) == TH_OK && th_run_report_append_emissions(r, path) == TH_OK,
          "emissions: %s", th_last_error());
    char *csv = test_read_file(path, NULL);
    CHECK(csv && !strncmp(csv, th_eco_emissions_csv_header(), strlen(th_eco_emissions_csv_header())) &&
              count_lines(csv) == 3 && strstr(csv, ",generate,"),
          "emissions.csv:\n%s", csv ? csv : "");
    free(csv);
    th_run_report_free(r);
}

static void test_without(const char *dir) {
    char path[4300];
    snprintf(path, sizeof path, "%s/none.json", dir);
    remove(path);
    th_run_figures g = figures();
    th_eco_factors f = factors("WORLD", NULL);
    th_run_report *r = NULL;
    char *s = NULL;

    // no energy figure: a report that says so and writes nothing
    g.have_energy = 0;
    CHECK(th_run_report_build(&g, &f, &units, &r) == TH_OK && !th_run_report_has_energy(r), "build without energy");
    CHECK(th_run_report_text(r, TH_REPORT_SUMMARY, &s) == TH_OK && strstr(s, "no energy figure") &&
              strstr(s, "610 samples"),
          "summary without energy:\n%s", s);
    th_free(s);
    CHECK(th_run_report_text(r, TH_REPORT_FULL, &s) == TH_OK && strstr(s, "no energy figure"), "full without energy");
    th_free(s);
    CHECK(th_run_report_write_json(r, path) == TH_ERR_STATE && !test_file_exists(path), "JSON without energy");
    th_run_report_free(r);

    // no factors: energy only
    g = figures();
    CHECK(th_run_report_build(&g, NULL, &units, &r) == TH_OK && th_run_report_has_energy(r), "build without factors");
    CHECK(th_run_report_text(r, TH_REPORT_SUMMARY, &s) == TH_OK && strstr(s, "2.41 kJ") && strstr(s, "not priced") &&
              !strstr(s, "CO2e ("),
          "summary without factors:\n%s", s);
    th_free(s);
    CHECK(th_run_report_write_json(r, path) == TH_OK, "JSON without factors");
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    CHECK(j && json_object_get(j, "energy_it_kwh") && !json_object_get(j, "co2e_kg") &&
              json_is_null(json_object_get(json_object_get(json_object_get(j, "per_unit"), "token"), "co2e_g")),
          "energy keys only");
    json_decref(j);
    snprintf(path, sizeof path, "%s/none.csv", dir);
    CHECK(th_run_report_append_emissions(r, path) == TH_ERR_STATE && !test_file_exists(path),
          "emissions without factors");
    th_run_report_free(r);

    // factors that cannot price the energy: the build fails with the footprint's message
    f.f[TH_ECO_F_PUE].available = 0;
    CHECK_FAIL(th_run_report_build(&g, &f, &units, &r), TH_ERR_INVALID, "PUE", "unpriceable factors");
    CHECK(r == NULL, "a report came back from a failed build");
    CHECK(th_run_report_build(NULL, NULL, NULL, &r) == TH_ERR_INVALID, "NULL figures");

    // every allocation failing in turn: a status, never a crash or a half-built report
    f = factors("WORLD", NULL);
    int nomem = 0;
    for (long n = 1; n <= 4; n++) {
        th_alloc_fail_nth(n);
        th_status st = th_run_report_build(&g, &f, &units, &r);
        if (st == TH_OK) st = th_run_report_text(r, TH_REPORT_FULL, &s);
        th_alloc_fail_nth(0);
        nomem += st == TH_ERR_NOMEM;
        CHECK(st == TH_OK || st == TH_ERR_NOMEM, "allocation %ld: %s", n, th_status_name(st));
        if (st == TH_OK) th_free(s);
        th_run_report_free(r);
        r = NULL;
    }
    CHECK(nomem == 2, "%d of the first 4 allocations failing gave NOMEM (want: the report and its text)", nomem);
}

int main(void) {
    const char *dir = test_tmp_dir("pipeline_report");
    test_text();
    test_json(dir);
    test_without(dir);
    return test_summary();
}
