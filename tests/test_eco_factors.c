/* test_eco_factors.c: the shipped factor tables (every row sourced, the required regions
 * present, EWIF computed from the mix), presets, cooling types, overrides with range
 * checks, user tables replacing defaults, and malformed tables rejected with the row and
 * column named and nothing changed. */
#include "test_util.h"
#include "thermo/eco.h"

static th_eco_tables *load_default(void) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/data/factors", test_source_dir());
    th_eco_tables *t = NULL;
    th_status st = th_eco_tables_load(&t, dir);
    CHECK(st == TH_OK && t, "default tables: %s", th_last_error());
    return t;
}

static const char *write_file(const char *name, const char *text) {
    const char *p = test_path_in(test_tmp_dir("eco_factors"), name);
    CHECK(test_write_text(p, text), "cannot write %s", p);
    return p;
}

static void test_defaults(th_eco_tables *t) {
    size_t n = th_eco_tables_region_count(t);
    CHECK(n >= 26, "world + at least 25 regions, have %zu", n);
    const char *need[] = {"WORLD", "US", "CN", "IN", "DE", "FR", "GB", "JP", "BR", "PL", "SE", "NO", "AU", "ZA", "CA", "KR"};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        th_eco_factors f;
        th_status st = th_eco_factors_resolve(t, need[i], NULL, &f);
        CHECK(st == TH_OK, "region %s: %s", need[i], th_last_error());
        if (st != TH_OK) continue;
        const th_eco_factor *g = &f.f[TH_ECO_F_GRID_CO2E];
        CHECK(g->available && g->value > 0 && g->value < 2000, "%s grid %g", need[i], g->value);
        CHECK(g->source[0] && g->year[0] && g->basis[0], "%s grid factor lacks source/year/basis", need[i]);
    }
    /* Every region in the grid table has a generation mix, so off-site water is known. */
    for (size_t i = 0; i < n; i++) {
        th_eco_factors f;
        const char *code = th_eco_tables_region_code(t, i);
        th_eco_factors_resolve(t, code, NULL, &f);
        CHECK(f.f[TH_ECO_F_EWIF].available && f.f[TH_ECO_F_EWIF].value >= 0 && f.f[TH_ECO_F_EWIF].value < 3,
              "region %s EWIF %g", code, f.f[TH_ECO_F_EWIF].value);
        for (int k = 0; k < TH_ECO_F_COUNT; k++)
            if (f.f[k].available)
                CHECK(f.f[k].source[0] && f.f[k].year[0] && f.f[k].basis[0] && f.f[k].origin[0],
                      "region %s factor %s lacks provenance", code, th_eco_factor_name((th_eco_factor_id)k));
    }
    CHECK(th_eco_tables_region_code(t, n) == NULL, "past-the-end region code");

    th_eco_factors w;
    th_eco_factors_resolve(t, NULL, NULL, &w);
    CHECK(strcmp(w.region, "WORLD") == 0 && w.f[TH_ECO_F_GRID_CO2E].value == 445.0, "world default 445, got %g",
          w.f[TH_ECO_F_GRID_CO2E].value);
    CHECK(strstr(w.f[TH_ECO_F_GRID_CO2E].source, "IEA") && strcmp(w.f[TH_ECO_F_GRID_CO2E].year, "2024") == 0,
          "world source %s year %s", w.f[TH_ECO_F_GRID_CO2E].source, w.f[TH_ECO_F_GRID_CO2E].year);
    CHECK(w.f[TH_ECO_F_PUE].value == 1.0 && w.f[TH_ECO_F_WUE_SITE].value == 0.0, "own-machine: PUE 1, WUE 0");
    CHECK(w.f[TH_ECO_F_GEN_SHARE].value == 0.0 && !w.methane_enabled, "generator share 0 and methane off by default");
    CHECK(w.f[TH_ECO_F_CAR_YEAR].value == 4.60 && w.f[TH_ECO_F_FOREST_ACRE_YEAR].value == 0.84 &&
              w.f[TH_ECO_F_HOME_ENERGY_YEAR].value == 8.30 && w.f[TH_ECO_F_HOME_ELEC_YEAR].value == 5.505,
          "EPA equivalences");
    CHECK(w.f[TH_ECO_F_GEN_NOX].value == 6.4 && w.f[TH_ECO_F_GEN_PM25].value == 0.20, "EPA Tier 2 standby limits");

    th_eco_factors us;
    CHECK(th_eco_factors_resolve(t, "us", "datacenter", &us) == TH_OK, "lower-case region: %s", th_last_error());
    CHECK(strcmp(us.region, "US") == 0 && us.f[TH_ECO_F_GRID_CO2E].value == 369.5, "US grid %g", us.f[TH_ECO_F_GRID_CO2E].value);
    CHECK(us.f[TH_ECO_F_PUE].value == 1.56 && us.f[TH_ECO_F_WUE_SITE].value == 0.49, "datacenter preset PUE %g WUE %g",
          us.f[TH_ECO_F_PUE].value, us.f[TH_ECO_F_WUE_SITE].value);
    CHECK(strstr(us.f[TH_ECO_F_PUE].source, "Uptime") != NULL, "PUE source %s", us.f[TH_ECO_F_PUE].source);
    CHECK(us.f[TH_ECO_F_GRID_NOX].value == 0.29 && us.f[TH_ECO_F_GRID_SO2].value == 0.26, "US NOx/SO2");
    CHECK(!us.f[TH_ECO_F_GRID_PM25].available, "US grid PM2.5 has no sourced value and must say so");
    /* US mix (OWID/Ember 2021 shares in generation_mix.csv) x Li et al. per-fuel EWIF. */
    double ewif = 0.216 * 1.70 + 0.380 * 1.14 + 0.008 * 1.32 + 0.188 * 2.27 + 0.059 * 0 + 0.091 * 0 + 0.040 * 0 + 0.017 * 1.80;
    CHECK(fabs(us.f[TH_ECO_F_EWIF].value - ewif) < 1e-9, "US EWIF %.6f, want %.6f", us.f[TH_ECO_F_EWIF].value, ewif);
    CHECK(fabs(us.f[TH_ECO_F_GAS_SHARE].value - 0.380) < 1e-12, "US gas share %g", us.f[TH_ECO_F_GAS_SHARE].value);
    th_eco_factors no;
    th_eco_factors_resolve(t, "NO", NULL, &no);
    CHECK(no.f[TH_ECO_F_EWIF].value < 0.05, "hydro-heavy Norway EWIF %g", no.f[TH_ECO_F_EWIF].value);
    CHECK(!no.f[TH_ECO_F_GRID_NOX].available, "no NOx source for NO");

    th_eco_factors bad;
    CHECK(th_eco_factors_resolve(t, "XX", NULL, &bad) == TH_ERR_INVALID, "unknown region accepted");
    CHECK(strstr(th_last_error(), "XX") && strstr(th_last_error(), "unknown region"), "message: %s", th_last_error());
    CHECK(strstr(th_last_error(), "(known: ") && strstr(th_last_error(), ", US") && strstr(th_last_error(), "WORLD"),
          "the message lists the regions: %s", th_last_error());
    CHECK(th_eco_factors_resolve(t, "US", "spaceship", &bad) == TH_ERR_INVALID, "unknown preset accepted");

    CHECK(th_eco_factors_set_cooling(t, &us, "none") == TH_OK && us.f[TH_ECO_F_WUE_SITE].value == 0.0, "cooling none");
    CHECK(th_eco_factors_set_cooling(t, &us, "aws-global-2024") == TH_OK && us.f[TH_ECO_F_WUE_SITE].value == 0.15, "cooling aws");
    CHECK(th_eco_factors_set_cooling(t, &us, "lake") == TH_ERR_INVALID && us.f[TH_ECO_F_WUE_SITE].value == 0.15,
          "unknown cooling accepted or changed WUE");
}

static void test_overrides(th_eco_tables *t) {
    th_eco_factors f;
    th_eco_factors_resolve(t, "DE", NULL, &f);
    struct {
        th_eco_factor_id id;
        double v;
    } bad[] = {{TH_ECO_F_GRID_CO2E, 2001},  {TH_ECO_F_GRID_CO2E, -1}, {TH_ECO_F_PUE, 0.99},     {TH_ECO_F_PUE, 5.01},
               {TH_ECO_F_GEN_SHARE, 1.01},  {TH_ECO_F_GEN_SHARE, -0.01}, {TH_ECO_F_WUE_SITE, -0.1}, {TH_ECO_F_EWIF, 21},
               {TH_ECO_F_CAR_YEAR, 0},      {TH_ECO_F_GRID_NOX, NAN}, {TH_ECO_F_PUE, INFINITY}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        th_eco_factor before = f.f[bad[i].id];
        CHECK(th_eco_factor_set(&f, bad[i].id, bad[i].v, "--test") == TH_ERR_INVALID, "%s = %g accepted",
              th_eco_factor_name(bad[i].id), bad[i].v);
        CHECK(strstr(th_last_error(), "--test") && strstr(th_last_error(), th_eco_factor_name(bad[i].id)),
              "message names flag and factor: %s", th_last_error());
        CHECK(memcmp(&before, &f.f[bad[i].id], sizeof before) == 0, "rejected override changed %s", th_eco_factor_name(bad[i].id));
    }
    CHECK(th_eco_factor_set(&f, TH_ECO_F_GRID_CO2E, 2000, "--grid-g-per-kwh") == TH_OK, "2000 is the upper bound");
    CHECK(th_eco_factor_set(&f, TH_ECO_F_PUE, 1.2, "--pue") == TH_OK && f.f[TH_ECO_F_PUE].value == 1.2, "PUE override");
    CHECK(strcmp(f.f[TH_ECO_F_PUE].origin, "--pue") == 0 && strstr(f.f[TH_ECO_F_PUE].source, "user"), "override origin %s",
          f.f[TH_ECO_F_PUE].origin);
    CHECK(th_eco_factor_set(&f, TH_ECO_F_GRID_PM25, 0.01, "api") == TH_OK && f.f[TH_ECO_F_GRID_PM25].available,
          "override makes a missing factor available");
}

/* A malformed table must fail with `want` in the message, and leave the loaded table as it was. */
static void expect_bad(th_eco_tables *t, const char *name, const char *text, const char *want) {
    const char *p = write_file(name, text);
    th_status st = th_eco_tables_replace(t, p);
    CHECK(st == TH_ERR_FORMAT, "%s: status %d (%s)", name, st, th_last_error());
    CHECK(strstr(th_last_error(), want) != NULL, "%s: message '%s' lacks '%s'", name, th_last_error(), want);
    CHECK(strstr(th_last_error(), name) != NULL, "%s: message does not name the file: %s", name, th_last_error());
    th_eco_factors f;
    CHECK(th_eco_factors_resolve(t, "US", NULL, &f) == TH_OK && f.f[TH_ECO_F_GRID_CO2E].value == 369.5,
          "%s: a rejected file changed the tables", name);
}

static void test_bad_files(th_eco_tables *t) {
    const char *H = "region,name,g_co2e_per_kwh,source,year,basis\n";
    char buf[2048];
    expect_bad(t, "missing_col.csv", "region,name,source,year,basis\nUS,x,src,2023,b\n", "missing column 'g_co2e_per_kwh'");
    snprintf(buf, sizeof buf, "%sAA,A,12,s,2023,b\nBB,B,lots,s,2023,b\n", H);
    expect_bad(t, "non_numeric.csv", buf, "row 3, column 3 (g_co2e_per_kwh)");
    snprintf(buf, sizeof buf, "%sAA,A,12,s,2023,b\nBB,B,2500,s,2023,b\n", H);
    expect_bad(t, "absurd.csv", buf, "row 3, column 3 (g_co2e_per_kwh): 2500 is outside [0, 2000]");
    snprintf(buf, sizeof buf, "%sAA,A,12,s,2023,b\n# note\naa,A2,13,s,2023,b\n", H);
    expect_bad(t, "duplicate.csv", buf, "row 4, column 1 (region): duplicate key 'aa' (first at row 2)");
    snprintf(buf, sizeof buf, "%sAA,A,12,,2023,b\n", H);
    expect_bad(t, "no_source.csv", buf, "(source): empty");
    snprintf(buf, sizeof buf, "%sAA,A,12,s,23,b\n", H);
    expect_bad(t, "bad_year.csv", buf, "(year)");
    snprintf(buf, sizeof buf, "%sAA,A,12,s,unknown,sourced\n", H);
    expect_bad(t, "unknown_year.csv", buf, "(year)");
    snprintf(buf, sizeof buf, "%sAA,A,12,s,2023\n", H);
    expect_bad(t, "short_row.csv", buf, "row 2: 5 fields, the header has 6");
    snprintf(buf, sizeof buf, "%sAA,\"A,12,s,2023,b\n", H);
    expect_bad(t, "unterminated.csv", buf, "unterminated quoted field");
    snprintf(buf, sizeof buf, "%sAA,A\"x,12,s,2023,b\n", H);
    expect_bad(t, "stray_quote.csv", buf, "row 2, column 2: bad quoting");
    snprintf(buf, sizeof buf, "%sAA,A,12 ,s,2023,b\n", H);
    expect_bad(t, "trailing_space.csv", buf, "is not a number");
    expect_bad(t, "extra_col.csv", "region,name,g_co2e_per_kwh,source,year,basis,colour\nAA,A,1,s,2023,b,red\n",
               "unknown column 'colour'");
    expect_bad(t, "mix_sum.csv",
               "region,coal,gas,oil,nuclear,hydro,wind,solar,other,source,year,basis\nUS,0.5,0.5,0.5,0,0,0,0,0,s,2021,b\n",
               "shares sum to 1.5000");
    expect_bad(t, "mix_missing.csv", "region,coal,gas,oil,nuclear,hydro,solar,other,source,year,basis\nUS,1,0,0,0,0,0,0,s,2021,b\n",
               "missing column 'wind'");
    expect_bad(t, "ewif_incomplete.csv", "fuel,l_per_kwh,source,year,basis\ncoal,1.7,s,2023,b\n", "no row for fuel 'gas'");
    expect_bad(t, "pollutant_na.csv", "region,nox_g_per_kwh,so2_g_per_kwh,pm25_g_per_kwh,source,year,basis\nUS,NA,x,NA,s,2022,b\n",
               "'x' is not a number or NA");
    expect_bad(t, "const_unit.csv",
               "name,value,unit,source,year,basis\ncar_t_co2e_per_year,4.6,kg,s,2018,b\n", "'kg' must be 't CO2e'");
    expect_bad(t, "unrelated.csv", "a,b\n1,2\n", "matches none of the factor tables");
    expect_bad(t, "empty.csv", "", "empty file");

    /* A valid user table replaces the default one. */
    snprintf(buf, sizeof buf, "# my utility's published intensity\n%s\"XX\",\"My grid, Inc.\",123.5,\"utility report\",2024,\"annual average\"\r\n", H);
    const char *p = write_file("user_grid.csv", buf);
    CHECK(th_eco_tables_replace(t, p) == TH_OK, "user grid file: %s", th_last_error());
    th_eco_factors f;
    CHECK(th_eco_factors_resolve(t, "XX", NULL, &f) == TH_OK && f.f[TH_ECO_F_GRID_CO2E].value == 123.5, "user region: %s",
          th_last_error());
    CHECK(strcmp(f.region_name, "My grid, Inc.") == 0, "quoted field: %s", f.region_name);
    CHECK(strstr(f.f[TH_ECO_F_GRID_CO2E].origin, "user_grid.csv row 3") != NULL, "origin %s", f.f[TH_ECO_F_GRID_CO2E].origin);
    CHECK(!f.f[TH_ECO_F_EWIF].available, "region without a mix: EWIF must be unknown, not guessed");
    CHECK(th_eco_factors_resolve(t, "US", NULL, &f) == TH_ERR_INVALID, "replaced table still has US");
}

static void test_bad_directory(void) {
    char cmd[9000];
    const char *dir = test_tmp_dir("eco_factors_dir");
    snprintf(cmd, sizeof cmd, "cp '%s'/data/factors/*.csv '%s'/ && printf 'name,value,unit,source,year,basis\\n' > '%s'/constants.csv",
             test_source_dir(), dir, dir);
    CHECK(system(cmd) == 0, "copy tables");
    th_eco_tables *t = (th_eco_tables *)1;
    CHECK(th_eco_tables_load(&t, dir) == TH_ERR_FORMAT && t == NULL, "directory with an empty constants table loads");
    CHECK(strstr(th_last_error(), "constants.csv") != NULL, "message: %s", th_last_error());
    CHECK(th_eco_tables_load(&t, "/nonexistent/factors") == TH_ERR_IO && t == NULL, "missing directory loads");
}

int main(void) {
    th_eco_tables *t = load_default();
    if (!t) return test_summary();
    test_defaults(t);
    test_overrides(t);
    test_bad_files(t);
    th_eco_tables_free(t);
    test_bad_directory();
    return test_summary();
}
