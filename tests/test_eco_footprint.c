/* test_eco_footprint.c: the footprint arithmetic in closed form (PUE, CO2e, on-site and
 * off-site water, pollutants with a generator share, upstream methane, per-unit figures),
 * the GPT-4o-scale example (7,546 t CO2e = ~1,640 car-years = ~8,900-9,000 acres of forest
 * = ~900 homes' energy use = ~1,400 homes' electricity), the price per joule against the
 * footprint, the text (full and summary) and JSON reports, the
 * CodeCarbon-compatible emissions.csv (header handling, never corrupting a file), and
 * `thermo estimate` end to end including bad input. */
#include <jansson.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "eco/eco_internal.h"
#include "test_util.h"
#include "thermo/eco.h"

static th_eco_tables *tables;

static th_eco_factors factors_for(const char *region, const char *preset) {
    th_eco_factors f;
    th_status st = th_eco_factors_resolve(tables, region, preset, &f);
    CHECK(st == TH_OK, "resolve %s: %s", region, th_last_error());
    return f;
}

static th_energy_figure kwh(double k) {
    th_energy_figure e = {k * TH_J_PER_KWH, 3600.0, TH_ECO_BASIS_MEASURED_COUNTER, "rapl:package-0"};
    return e;
}

static void test_closed_form(void) {
    th_eco_factors f = factors_for("US", NULL);
    th_eco_factor_set(&f, TH_ECO_F_PUE, 1.5, "test");
    th_eco_factor_set(&f, TH_ECO_F_GRID_CO2E, 400, "test");
    th_eco_factor_set(&f, TH_ECO_F_WUE_SITE, 0.5, "test");
    th_eco_factor_set(&f, TH_ECO_F_EWIF, 2.0, "test");
    th_energy_figure it = kwh(1.0);
    th_eco_footprint fp;
    CHECK(th_eco_footprint_compute(&it, &f, &fp) == TH_OK, "%s", th_last_error());
    CHECK(fabs(fp.energy_it_kwh - 1.0) < 1e-12 && fabs(fp.energy_facility_kwh - 1.5) < 1e-12, "PUE: %g -> %g kWh",
          fp.energy_it_kwh, fp.energy_facility_kwh);
    CHECK(fabs(fp.co2e_g - 600.0) < 1e-9, "CO2e %g g, want 600", fp.co2e_g);
    CHECK(fabs(fp.water_onsite_l - 0.5) < 1e-12, "on-site water on IT energy: %g", fp.water_onsite_l);
    CHECK(fabs(fp.water_offsite_l - 3.0) < 1e-12, "off-site water on facility energy: %g", fp.water_offsite_l);
    CHECK(fabs(fp.nox_g - 1.5 * 0.29) < 1e-12 && fabs(fp.so2_g - 1.5 * 0.26) < 1e-12, "US NOx %g SO2 %g", fp.nox_g, fp.so2_g);
    CHECK(isnan(fp.pm25_g), "grid PM2.5 has no source: the total must be unknown, got %g", fp.pm25_g);
    CHECK(fp.it.basis == TH_ECO_BASIS_MEASURED_COUNTER && strcmp(fp.it.source, "rapl:package-0") == 0, "basis kept");
    CHECK(fabs(fp.cars_year - 600e-6 / 4.60) < 1e-15, "car-years %g", fp.cars_year);

    /* A quarter from diesel backup generators: pollutants split, CO2e and water unchanged. */
    th_eco_factor_set(&f, TH_ECO_F_GEN_SHARE, 0.25, "--generator-share");
    CHECK(th_eco_footprint_compute(&it, &f, &fp) == TH_OK, "generator share");
    CHECK(fabs(fp.energy_generator_kwh - 0.375) < 1e-12 && fabs(fp.energy_grid_kwh - 1.125) < 1e-12, "split %g/%g",
          fp.energy_grid_kwh, fp.energy_generator_kwh);
    CHECK(fabs(fp.nox_g - (1.125 * 0.29 + 0.375 * 6.4)) < 1e-12, "NOx with generators %g", fp.nox_g);
    CHECK(fabs(fp.so2_g - 1.125 * 0.26) < 1e-12, "SO2 with generators %g", fp.so2_g);
    CHECK(fabs(fp.gen_pm25_g - 0.375 * 0.20) < 1e-12 && isnan(fp.pm25_g), "generator PM %g, total unknown", fp.gen_pm25_g);
    CHECK(fabs(fp.co2e_g - 600.0) < 1e-9, "CO2e unchanged by the share: %g", fp.co2e_g);
    th_eco_factor_set(&f, TH_ECO_F_GEN_SHARE, 1.0, "--generator-share");
    th_eco_footprint_compute(&it, &f, &fp);
    CHECK(fabs(fp.pm25_g - 1.5 * 0.20) < 1e-12, "all-generator PM2.5 is known: %g", fp.pm25_g);

    /* Upstream methane, off by default, adds grid kWh x gas share x factor. */
    th_eco_factors m = factors_for("US", NULL);
    th_energy_figure ten = kwh(10.0);
    th_eco_footprint base, with;
    th_eco_footprint_compute(&ten, &m, &base);
    CHECK(base.co2e_methane_g == 0.0, "methane must be off by default");
    m.methane_enabled = 1;
    CHECK(th_eco_footprint_compute(&ten, &m, &with) == TH_OK, "%s", th_last_error());
    double add = 10.0 * m.f[TH_ECO_F_GAS_SHARE].value * m.f[TH_ECO_F_METHANE].value;
    CHECK(fabs(with.co2e_methane_g - add) < 1e-9 && fabs(with.co2e_g - base.co2e_g - add) < 1e-9, "methane %g, want %g",
          with.co2e_methane_g, add);

    /* Per-unit: per token. */
    th_eco_footprint per;
    CHECK(th_eco_footprint_per_unit(&base, 1000.0, &per) == TH_OK, "per unit");
    CHECK(fabs(per.co2e_g - base.co2e_g / 1000) < 1e-12 && fabs(per.it.energy_j - 36000.0) < 1e-9 &&
              fabs(per.water_offsite_l - base.water_offsite_l / 1000) < 1e-15,
          "per-token CO2e %g J %g", per.co2e_g, per.it.energy_j);
    CHECK(th_eco_footprint_per_unit(&base, 0.0, &per) == TH_ERR_INVALID, "zero units accepted");

    th_energy_figure badfig = kwh(-1.0);
    CHECK(th_eco_footprint_compute(&badfig, &m, &per) == TH_ERR_INVALID, "negative energy accepted");
    badfig.energy_j = NAN;
    CHECK(th_eco_footprint_compute(&badfig, &m, &per) == TH_ERR_INVALID, "NaN energy accepted");
}

/* 10 GWh at 754.6 g/kWh = 7,546 t CO2e, the GPT-4o-scale example. */
static void check_gpt4o(double co2e_kg, double cars, double acres, double homes_energy, double homes_elec, const char *who) {
    CHECK(fabs(co2e_kg - 7546000.0) < 1e-3, "%s: CO2e %.3f kg, want 7,546 t", who, co2e_kg);
    CHECK(fabs(cars - 1640.0) < 1.0, "%s: %.1f car-years, want ~1,640", who, cars);
    CHECK(acres >= 8900.0 && acres <= 9000.0, "%s: %.0f acres of forest, want 8,900-9,000", who, acres);
    CHECK(fabs(homes_energy - 900.0) < 15.0, "%s: %.0f homes' energy use, want ~900", who, homes_energy);
    CHECK(fabs(homes_elec - 1400.0) < 50.0, "%s: %.0f homes' electricity, want ~1,400", who, homes_elec);
}

static void test_gpt4o_example(void) {
    th_eco_factors f = factors_for(NULL, NULL);
    th_eco_factor_set(&f, TH_ECO_F_GRID_CO2E, 754.6, "--grid-g-per-kwh");
    th_energy_figure it;
    CHECK(th_energy_estimate(1000.0, 10000, 1000.0, &it) == TH_OK, "estimate");
    th_eco_footprint fp;
    CHECK(th_eco_footprint_compute(&it, &f, &fp) == TH_OK, "%s", th_last_error());
    CHECK(fabs(fp.energy_facility_kwh - 1e7) < 1e-3, "10 GWh, got %g kWh", fp.energy_facility_kwh);
    check_gpt4o(fp.co2e_g * 1e-3, fp.cars_year, fp.forest_acres, fp.homes_energy_year, fp.homes_electricity_year, "api");
}

static void test_reports(void) {
    th_eco_factors f = factors_for("FR", "datacenter");
    th_energy_figure it = {7.2e6, 7200.0, TH_ECO_BASIS_MODELED, "sim-plant:h100-sxm"};
    th_eco_footprint fp;
    th_eco_footprint_compute(&it, &f, &fp);

    char small[16];
    size_t need = 0;
    CHECK(th_eco_report_text(&fp, TH_ECO_TEXT_FULL, small, sizeof small, &need) == TH_ERR_INVALID && need > sizeof small, "small buffer");
    char *text = malloc(need + 1);
    CHECK(th_eco_report_text(&fp, TH_ECO_TEXT_FULL, text, need + 1, NULL) == TH_OK, "text report");
    CHECK(strstr(text, "modeled") && strstr(text, "sim-plant:h100-sxm"), "text says the energy was modeled:\n%s", text);
    CHECK(strstr(text, "Uptime Institute") && strstr(text, "2024"), "text names the PUE source and year");
    CHECK(strstr(text, "NOx") && strstr(text, "unknown"), "text marks the unsourced NOx for FR");
    free(text);

    void *jv = NULL;
    CHECK(th_eco_report_json(&fp, NULL, &jv) == TH_OK && jv, "json");
    json_t *o = jv;
    CHECK(strcmp(json_string_value(json_object_get(o, "basis")), "modeled") == 0, "json basis");
    CHECK(json_is_null(json_object_get(o, "nox_g")) && json_is_null(json_object_get(o, "pm25_g")), "unknown pollutants are null");
    CHECK(fabs(json_real_value(json_object_get(o, "energy_facility_kwh")) - 2.0 * 1.56) < 1e-12, "facility kWh");
    json_t *pue = json_object_get(json_object_get(o, "factors"), "pue");
    CHECK(pue && json_real_value(json_object_get(pue, "value")) == 1.56 &&
              strstr(json_string_value(json_object_get(pue, "source")), "Uptime") &&
              strcmp(json_string_value(json_object_get(pue, "year")), "2024") == 0,
          "json factor provenance");
    json_decref(o);
}

/* The price per joule charges exactly what the footprint does, in every region and preset,
 * with upstream methane and a generator share, and says when off-site water is unknown. */
static void test_price(void) {
    const char *regions[] = {"WORLD", "US", "FR", "DE", "IN", "SE"};
    const char *presets[] = {"own-machine", "datacenter"};
    const double joules[] = {1.0, 3.6e6, 12345.678};
    int cases = 0;
    for (size_t r = 0; r < sizeof regions / sizeof regions[0]; r++)
        for (size_t p = 0; p < 2; p++)
            for (int methane = 0; methane < 2; methane++)
                for (int gen = 0; gen < 2; gen++) {
                    th_eco_factors f = factors_for(regions[r], presets[p]);
                    f.methane_enabled = methane;
                    if (gen) th_eco_factor_set(&f, TH_ECO_F_GEN_SHARE, 0.25, "test");
                    th_eco_price price;
                    CHECK(th_eco_price_of(&f, &price) == TH_OK, "%s %s: %s", regions[r], presets[p], th_last_error());
                    for (size_t k = 0; k < sizeof joules / sizeof joules[0]; k++) {
                        th_energy_figure it = {joules[k], 1.0, TH_ECO_BASIS_MEASURED_POWER, "test"};
                        th_eco_footprint fp;
                        CHECK(th_eco_footprint_compute(&it, &f, &fp) == TH_OK, "%s", th_last_error());
                        double co2 = joules[k] * price.g_co2e_per_j, water = joules[k] * price.ml_water_per_j;
                        double want_water = (fp.water_onsite_l + fp.water_offsite_l) * 1000.0;
                        CHECK(fabs(co2 - fp.co2e_g) <= 1e-12 * fp.co2e_g, "%s %s methane %d gen %d: %.17g g, footprint %.17g",
                              regions[r], presets[p], methane, gen, co2, fp.co2e_g);
                        CHECK(price.water_known && fabs(water - want_water) <= 1e-12 * want_water,
                              "%s %s: %.17g mL, footprint %.17g", regions[r], presets[p], water, want_water);
                        cases++;
                    }
                    if (methane) {
                        th_eco_price off;
                        f.methane_enabled = 0;
                        th_eco_price_of(&f, &off);
                        CHECK(price.g_co2e_per_j > off.g_co2e_per_j, "%s: methane adds nothing", regions[r]);
                    }
                }
    CHECK(cases == 6 * 2 * 2 * 2 * 3, "%d cases", cases);

    // no EWIF: water is the on-site part alone, and says so
    th_eco_factors f = factors_for("US", "datacenter");
    f.f[TH_ECO_F_EWIF].available = 0;
    th_eco_price price;
    CHECK(th_eco_price_of(&f, &price) == TH_OK && !price.water_known &&
              fabs(price.ml_water_per_j - f.f[TH_ECO_F_WUE_SITE].value * 1000.0 / TH_J_PER_KWH) < 1e-18,
          "without EWIF: known %d, %g mL/J", price.water_known, price.ml_water_per_j);
    f.f[TH_ECO_F_GRID_CO2E].available = 0;
    CHECK(th_eco_price_of(&f, &price) == TH_ERR_INVALID, "priced without a grid intensity");
    CHECK(th_eco_price_of(NULL, &price) == TH_ERR_INVALID, "NULL factors");
}

/* The summary: two lines with the energy basis and source, and the grid factor's source
 * and year; the full text stays the full text. */
static void test_summary_text(void) {
    struct {
        const char *region, *preset, *source;
        th_eco_basis basis;
    } cases[] = {{"WORLD", NULL, "IEA", TH_ECO_BASIS_MODELED},
                 {"US", "datacenter", "Our World in Data", TH_ECO_BASIS_MEASURED_COUNTER}};
    for (size_t i = 0; i < 2; i++) {
        th_eco_factors f = factors_for(cases[i].region, cases[i].preset);
        th_energy_figure it = {2410.0, 61.0, cases[i].basis, "sim:laptop-cpu"};
        th_eco_footprint fp;
        th_eco_footprint_compute(&it, &f, &fp);
        char text[2048];
        size_t len = 0;
        CHECK(th_eco_report_text(&fp, TH_ECO_TEXT_SUMMARY, text, sizeof text, &len) == TH_OK && len == strlen(text),
              "summary: %s", th_last_error());
        int lines = 0;
        for (const char *c = text; *c; c++) lines += *c == '\n';
        printf("%s", text);
        CHECK(lines >= 1 && lines <= 6, "%d lines:\n%s", lines, text);
        CHECK(strstr(text, th_eco_basis_name(cases[i].basis)) && strstr(text, "sim:laptop-cpu"),
              "summary lacks the energy basis and source:\n%s", text);
        CHECK(strstr(text, cases[i].source) && strstr(text, f.f[TH_ECO_F_GRID_CO2E].year) &&
                  strstr(text, cases[i].region),
              "summary lacks the grid factor's source %s and year %s:\n%s", cases[i].source,
              f.f[TH_ECO_F_GRID_CO2E].year, text);
        CHECK(strstr(text, "2.41 kJ"), "energy in kJ:\n%s", text);
        CHECK(!strstr(text, "Uptime Institute") && !strstr(text, "equivalences"), "the summary is the full text:\n%s", text);
    }
    th_eco_footprint fp;
    th_eco_factors f = factors_for("FR", NULL);
    th_energy_figure it = {1.0, 1.0, TH_ECO_BASIS_MODELED, "x"};
    th_eco_footprint_compute(&it, &f, &fp);
    char text[16];
    CHECK(th_eco_report_text(&fp, (th_eco_text_style)7, text, sizeof text, NULL) == TH_ERR_INVALID, "unknown style");

    char b[32];
    th_eco_fmt_si(b, sizeof b, 2410.0, "J");
    CHECK(!strcmp(b, "2.41 kJ"), "%s", b);
    th_eco_fmt_si(b, sizeof b, 2.4e-7, "g");
    CHECK(!strcmp(b, "240 ng"), "%s", b);
    th_eco_fmt_si(b, sizeof b, 0.0019, "J");
    CHECK(!strcmp(b, "1.9 mJ"), "%s", b);
    th_eco_fmt_si(b, sizeof b, 3e6, "g");
    CHECK(!strcmp(b, "3 t"), "%s", b);
    th_eco_fmt_si(b, sizeof b, 0.0, "L");
    CHECK(!strcmp(b, "0 L"), "%s", b);
    th_eco_fmt_si(b, sizeof b, NAN, "L");
    CHECK(!strcmp(b, "unknown"), "%s", b);
}

static long file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (long)st.st_size : -1;
}

static void test_emissions_csv(void) {
    const char *dir = test_tmp_dir("eco_emissions");
    char path[4400], cmd[9000];
    snprintf(path, sizeof path, "%s/emissions.csv", dir);
    remove(path);

    th_eco_factors f = factors_for("DE", "datacenter");
    th_energy_figure it = {TH_J_PER_KWH, 1800.0, TH_ECO_BASIS_MEASURED_COUNTER, "rapl:package-0+nvml:0"};
    th_eco_footprint fp;
    th_eco_footprint_compute(&it, &f, &fp);
    th_eco_emissions_row row;
    th_eco_emissions_row_init(&row);
    row.timestamp = "2026-01-02T03:04:05";
    row.project_name = "thermo, \"demo\"";
    row.run_id = "run-1";
    row.gpu_energy_kwh = 0.8;
    row.cpu_energy_kwh = 0.2;
    row.country_iso_code = "DEU";
    row.tracking_mode = "machine";

    CHECK(th_eco_emissions_csv_append(path, &fp, &row) == TH_OK, "new file: %s", th_last_error());
    CHECK(th_eco_emissions_csv_append(path, &fp, &row) == TH_OK, "append: %s", th_last_error());
    th_csv c;
    CHECK(th_csv_read(path, &c) == TH_OK, "read back: %s", th_last_error());
    CHECK(c.ncols == 45 && c.nrows == 2, "%zu columns, %zu rows", c.ncols, c.nrows);
    if (c.ncols == 45 && c.nrows == 2) {
        CHECK(strcmp(c.header[0], "timestamp") == 0 && strcmp(c.header[5], "emissions") == 0 &&
                  strcmp(c.header[16], "energy_consumed") == 0 && strcmp(c.header[35], "pue") == 0 &&
                  strcmp(c.header[36], "wue") == 0,
              "CodeCarbon column order");
        CHECK(strcmp(th_csv_cell(&c, 1, 1), "thermo, \"demo\"") == 0, "quoted project name: %s", th_csv_cell(&c, 1, 1));
        double emissions = atof(th_csv_cell(&c, 0, th_csv_col(&c, "emissions")));
        double energy = atof(th_csv_cell(&c, 0, th_csv_col(&c, "energy_consumed")));
        double rate = atof(th_csv_cell(&c, 0, th_csv_col(&c, "emissions_rate")));
        CHECK(fabs(emissions - 1.56 * 381.0e-3) < 1e-12, "emissions %g kg", emissions);
        CHECK(fabs(energy - 1.56) < 1e-12, "energy_consumed %g kWh (facility)", energy);
        CHECK(fabs(rate - emissions / 1800.0) < 1e-15, "emissions_rate %g kg/s", rate);
        CHECK(atof(th_csv_cell(&c, 0, th_csv_col(&c, "duration"))) == 1800.0, "duration s");
        CHECK(th_csv_cell(&c, 0, th_csv_col(&c, "latitude"))[0] == '\0', "unknown fields empty");
        CHECK(strcmp(th_csv_cell(&c, 0, th_csv_col(&c, "on_cloud")), "N") == 0, "on_cloud N");
        CHECK(atof(th_csv_cell(&c, 0, th_csv_col(&c, "wue"))) == 0.49, "wue column");
    }
    th_csv_free(&c);

    /* A file with another header is refused and left byte-for-byte as it was. */
    char other[4400];
    snprintf(other, sizeof other, "%s/old.csv", dir);
    snprintf(cmd, sizeof cmd, "printf 'timestamp,project_name,run_id,duration,emissions\\n2021,x,y,1,2\\n' > '%s'", other);
    CHECK(system(cmd) == 0, "write old file");
    char *before = test_read_file(other, NULL);
    CHECK(th_eco_emissions_csv_append(other, &fp, &row) == TH_ERR_FORMAT, "foreign header accepted");
    CHECK(strstr(th_last_error(), "column 4 is 'duration', expected 'experiment_id'"), "message: %s", th_last_error());
    char *after = test_read_file(other, NULL);
    CHECK(before && after && strcmp(before, after) == 0, "refused file was modified");
    free(before);
    free(after);

    /* Our header but an incomplete last row: refused, unchanged. */
    snprintf(cmd, sizeof cmd, "head -c -1 '%s' > '%s'", path, other);
    CHECK(system(cmd) == 0, "truncate copy");
    long sz = file_size(other);
    CHECK(th_eco_emissions_csv_append(other, &fp, &row) == TH_ERR_FORMAT, "file without final newline accepted");
    CHECK(file_size(other) == sz, "refused file grew");

    /* Empty file: gets the header. */
    snprintf(cmd, sizeof cmd, ": > '%s'", other);
    CHECK(system(cmd) == 0, "empty file");
    CHECK(th_eco_emissions_csv_append(other, &fp, &row) == TH_OK, "empty file: %s", th_last_error());
    char *t = test_read_file(other, NULL);
    CHECK(t && strncmp(t, th_eco_emissions_csv_header(), strlen(th_eco_emissions_csv_header())) == 0, "header written");
    free(t);
    CHECK(th_eco_emissions_csv_append("/nonexistent-dir/emissions.csv", &fp, &row) == TH_ERR_IO, "unwritable path");
}

/* Runs `thermo estimate ARGS`, captures stdout and stderr, returns the exit code. */
static int run_cli(const char *args, char **out, char **err) {
    const char *bin = getenv("THERMO_BIN");
    const char *dir = test_tmp_dir("eco_cli");
    char o[4400], e[4400], cmd[12000];
    snprintf(o, sizeof o, "%s/out.txt", dir);
    snprintf(e, sizeof e, "%s/err.txt", dir);
    snprintf(cmd, sizeof cmd, "'%s' estimate %s > '%s' 2> '%s'", bin, args, o, e);
    int st = system(cmd);
    *out = test_read_file(o, NULL);
    *err = test_read_file(e, NULL);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void) {
    const char *bin = getenv("THERMO_BIN");
    CHECK(bin && *bin, "THERMO_BIN is not set (CTest sets it to the built thermo)");
    if (!bin || !*bin) return;
    char *out, *err;
    int rc = run_cli("--power-w 1000 --devices 10000 --hours 1000 --pue 1.0 --grid-g-per-kwh 754.6 --json", &out, &err);
    CHECK(rc == 0, "estimate exit %d, stderr: %s", rc, err ? err : "");
    json_error_t jerr;
    json_t *o = out ? json_loads(out, 0, &jerr) : NULL;
    CHECK(o != NULL, "estimate --json output is not JSON: %s", out ? out : "(none)");
    if (o) {
        const char *keys[] = {"energy_it_kwh", "energy_facility_kwh", "co2e_kg", "water_onsite_l", "water_offsite_l",
                              "nox_g", "so2_g", "pm25_g", "cars_year", "forest_acres", "homes_energy_year",
                              "homes_electricity_year", "factors", "basis"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) CHECK(json_object_get(o, keys[i]) != NULL, "key %s missing", keys[i]);
        CHECK(strcmp(json_string_value(json_object_get(o, "basis")), "estimate") == 0, "basis must be \"estimate\"");
        check_gpt4o(json_real_value(json_object_get(o, "co2e_kg")), json_real_value(json_object_get(o, "cars_year")),
                    json_real_value(json_object_get(o, "forest_acres")), json_real_value(json_object_get(o, "homes_energy_year")),
                    json_real_value(json_object_get(o, "homes_electricity_year")), "cli");
        json_t *g = json_object_get(json_object_get(o, "factors"), "grid_g_per_kwh");
        CHECK(g && json_real_value(json_object_get(g, "value")) == 754.6 && json_object_get(g, "unit") &&
                  json_object_get(g, "source") && json_object_get(g, "year"),
              "grid factor with value, unit, source, year");
        json_t *car = json_object_get(json_object_get(o, "factors"), "car_t_per_year");
        CHECK(car && strstr(json_string_value(json_object_get(car, "source")), "EPA"), "car factor source");
        json_decref(o);
    }
    free(out);
    free(err);

    rc = run_cli("--power-w 700 --devices 8 --hours 10 --pue 1.56 --region US --generator-share 0.1", &out, &err);
    CHECK(rc == 0 && out && strstr(out, "estimate") && strstr(out, "EIA"), "text estimate for US: rc %d\n%s%s", rc,
          out ? out : "", err ? err : "");
    free(out);
    free(err);

    /* Bad input: a clear message naming the flag, row or column, and a non-zero exit. */
    char bad_factors[4400];
    snprintf(bad_factors, sizeof bad_factors, "%s/bad_grid.csv", test_tmp_dir("eco_cli"));
    FILE *bf = fopen(bad_factors, "w");
    if (bf) {
        fputs("region,name,g_co2e_per_kwh,source,year,basis\nQQ,Q,abc,s,2024,b\n", bf);
        fclose(bf);
    }
    char args[5000];
    snprintf(args, sizeof args, "--power-w 300 --devices 1 --hours 1 --pue 1 --factors '%s'", bad_factors);
    struct {
        const char *args, *want;
        int code;
    } cases[] = {
        {"--power-w 300 --devices 1 --hours 1 --pue 1 --region XX", "--region", 2},
        {"--power-w 300 --devices 1 --hours 1 --pue 0.5", "--pue", 2},
        {"--power-w 300 --devices 1 --hours 1 --pue 6", "--pue", 2},
        {"--power-w 300 --devices 1 --hours 1 --pue 1 --generator-share 1.5", "--generator-share", 2},
        {"--power-w 300 --devices 1 --hours 1 --pue 1 --generator-share -0.1", "--generator-share", 2},
        {"--power-w 300 --devices 1 --hours 1 --pue 1 --grid-g-per-kwh 2500", "--grid-g-per-kwh", 2},
        {"--power-w -3 --devices 1 --hours 1 --pue 1", "--power-w", 2},
        {"--power-w 300 --devices 1 --hours 1", "--pue is required", 2},
        {"--power-w 300 --devices 1 --hours 1 --pue 1 --region US --grid-g-per-kwh 100", "exclude each other", 2},
        {"--power-w 300 --devices 1 --hours 1 --pue 1 --wue x", "--wue", 2},
        {args, "row 2, column 3 (g_co2e_per_kwh)", 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rc = run_cli(cases[i].args, &out, &err);
        CHECK(rc == cases[i].code, "'%s': exit %d, want %d", cases[i].args, rc, cases[i].code);
        CHECK(err && strstr(err, cases[i].want), "'%s': stderr lacks '%s': %s", cases[i].args, cases[i].want, err ? err : "");
        CHECK(out && out[0] == '\0', "'%s': printed a result despite the error", cases[i].args);
        free(out);
        free(err);
    }
}

int main(void) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/data/factors", test_source_dir());
    CHECK(th_eco_tables_load(&tables, dir) == TH_OK, "tables: %s", th_last_error());
    if (!tables) return test_summary();
    test_closed_form();
    test_gpt4o_example();
    test_reports();
    test_price();
    test_summary_text();
    test_emissions_csv();
    th_eco_tables_free(tables);
    test_cli();
    return test_summary();
}
