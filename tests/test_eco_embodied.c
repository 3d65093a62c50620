/* test_eco_embodied.c: the ledger's embodied and storage lines (issue 21) against hand-computed
 * figures: interval arithmetic, allocation by the time the hardware is held (a paced run
 * holding it longer pays more), storage bytes x replicas x kWh/TB-year x PUE and embodied
 * copies, the table loader's bad rows, --hardware bad input, unknown devices kept unknown,
 * and the run report's text, JSON and emissions.csv columns. */
#include <jansson.h>

#include "../src/eco/eco_internal.h"
#include "test_util.h"
#include "thermo/eco.h"
#include "thermo/pipeline.h"

#define YEAR_S (365.25 * 86400.0)

static th_eco_embodied_table *table;

static int near(double a, double b) { return fabs(a - b) <= 1e-9 * fmax(1.0, fabs(b)); }

static void test_ranges(void) {
    th_eco_range a = {1, 2, 4}, b = {0.5, 1, 3};
    th_eco_range s = th_eco_range_add(a, b);
    CHECK(s.lo == 1.5 && s.mid == 3 && s.hi == 7, "add %g %g %g", s.lo, s.mid, s.hi);
    th_eco_range m = th_eco_range_mul(a, b);
    CHECK(m.lo == 0.5 && m.mid == 2 && m.hi == 12, "mul %g %g %g", m.lo, m.mid, m.hi);
    th_eco_range k = th_eco_range_scale(a, 2.5);
    CHECK(k.lo == 2.5 && k.mid == 5 && k.hi == 10, "scale");
    CHECK(isnan(th_eco_range_scale(a, -1).mid), "negative scale is unknown");
    th_eco_range u = th_eco_range_add(a, (th_eco_range){NAN, NAN, NAN});
    CHECK(isnan(u.mid), "unknown + known is unknown, never the known part alone");
    CHECK(th_eco_range_wide(a) && !th_eco_range_wide(th_eco_range_point(3)) && !th_eco_range_wide((th_eco_range){1, 1.1, 1.2}),
          "wide above 1.25x");
    char buf[64];
    th_eco_fmt_range(buf, sizeof buf, (th_eco_range){0.0041, 0.0123, 0.038}, "g");
    CHECK(!strcmp(buf, "12.3 mg (4.1 mg to 38 mg)"), "interval text: %s", buf);
    th_eco_fmt_range(buf, sizeof buf, th_eco_range_point(2.5), "g");
    CHECK(!strcmp(buf, "2.5 g"), "point text: %s", buf);
    th_eco_fmt_range(buf, sizeof buf, (th_eco_range){NAN, NAN, NAN}, "g");
    CHECK(!strcmp(buf, "unknown"), "unknown text: %s", buf);
}

static void test_allocation(void) {
    th_eco_hardware hw;
    CHECK(th_eco_hardware_parse(table, "gpu:h100*2,dram-gb:24,share:0.5", NULL, 0, &hw) == TH_OK, "parse: %s", th_last_error());
    CHECK(hw.n == 2 && hw.dev[0].known && !strcmp(hw.dev[0].row.device, "h100") && hw.dev[0].count == 2, "devices");
    th_eco_embodied e;
    CHECK(th_eco_embodied_compute(&hw, 3600.0, &e) == TH_OK, "compute");
    // h100: 278 kg x 2 cards x share 0.5 x 1 h / 3 y; dram: 0.4 kg/GB x 24 GB x 0.5 x 1 h / 4 y
    double h100 = 278e3 * 2 * 0.5 * 3600 / (3 * YEAR_S), dram = 0.4e3 * 24 * 0.5 * 3600 / (4 * YEAR_S);
    CHECK(near(e.dev_g[0].mid, h100) && fabs(h100 - 10.571146) < 1e-6, "h100 %.8g g (hand: 10.571146)", e.dev_g[0].mid);
    CHECK(near(e.dev_g[1].mid, dram) && fabs(dram - 0.1368925) < 1e-7, "dram %.8g g (hand: 0.1368925)", e.dev_g[1].mid);
    CHECK(near(e.dev_g[0].lo, 193e3 * 3600 / (3 * YEAR_S)) && near(e.dev_g[0].hi, 445e3 * 3600 / (3 * YEAR_S)), "h100 range");
    CHECK(near(e.total_g.mid, h100 + dram) && near(e.total_g.lo, e.dev_g[0].lo + e.dev_g[1].lo) &&
              near(e.total_g.hi, e.dev_g[0].hi + e.dev_g[1].hi),
          "total = sum, end by end");
    CHECK(near(e.adp_g, 5.8 * 3600 / (3 * YEAR_S) + 0.0504 * 24 * 0.5 * 3600 / (4 * YEAR_S)), "ADP %g g", e.adp_g);
    // paced to 60 % duty: the same work holds the hardware 1/0.6 as long and pays that much more
    th_eco_embodied paced;
    th_eco_embodied_compute(&hw, 3600.0 / 0.6, &paced);
    CHECK(near(paced.total_g.mid, e.total_g.mid / 0.6), "paced %.6g vs full %.6g", paced.total_g.mid, e.total_g.mid);

    CHECK(th_eco_hardware_parse(table, "gpu:h100,gpu-life-y:6", NULL, 0, &hw) == TH_OK, "life override: %s", th_last_error());
    th_eco_embodied_compute(&hw, 3600.0, &e);
    CHECK(hw.dev[0].life_y == 6 && near(e.dev_g[0].mid, 278e3 * 3600 / (6 * YEAR_S)), "6-year life halves the charge");
    CHECK(th_eco_embodied_compute(&hw, -1, &e) == TH_ERR_INVALID, "negative held time");
}

static void test_host_and_unknown(void) {
    th_eco_hardware hw;
    CHECK(th_eco_hardware_parse(table, NULL, "AMD EPYC 7B13 64-Core Processor", 16, &hw) == TH_OK, "host");
    CHECK(hw.n == 2 && hw.dev[0].known && !strcmp(hw.dev[0].row.device, "cpu-server") && hw.dev[1].count == 16 &&
              !strcmp(hw.spec, "host") && strstr(hw.dev[0].how, "host"),
          "EPYC maps to cpu-server, 16 GB of dram");
    CHECK(th_eco_hardware_parse(table, "", "Mystery RISC-V 9000", 8, &hw) == TH_OK, "unknown host CPU kept");
    CHECK(hw.n == 2 && !hw.dev[0].known, "unknown CPU is not known");
    th_eco_embodied e;
    th_eco_embodied_compute(&hw, 3600, &e);
    CHECK(isnan(e.dev_g[0].mid) && e.n_unknown == 1, "unknown figure is NaN, not 0");
    CHECK(near(e.total_g.mid, 0.4e3 * 8 * 3600 / (4 * YEAR_S)), "total of the known devices only");
    CHECK(th_eco_hardware_parse(table, "host,gpu:rtx-4090", "Intel(R) Core(TM) i7-8700", 32, &hw) == TH_OK &&
              hw.n == 3 && !strcmp(hw.dev[0].row.device, "cpu-client"),
          "host + a named card");
}

static void test_bad_input(void) {
    th_eco_hardware hw;
    CHECK_FAIL(th_eco_hardware_parse(table, "gpu:h900", NULL, 0, &hw), TH_ERR_INVALID, "gpu:h900: unknown device", "unknown gpu");
    CHECK(strstr(th_last_error(), "h100") != NULL, "message lists the known: %s", th_last_error());
    CHECK_FAIL(th_eco_hardware_parse(table, "dram-gb:-4", NULL, 0, &hw), TH_ERR_INVALID, "dram-gb:-4", "negative size");
    CHECK_FAIL(th_eco_hardware_parse(table, "ssd-tb:0", NULL, 0, &hw), TH_ERR_INVALID, "ssd-tb:0", "zero size");
    CHECK_FAIL(th_eco_hardware_parse(table, "gpu:h100,gpu-life-y:-1", NULL, 0, &hw), TH_ERR_INVALID, "gpu-life-y:-1",
               "negative life");
    CHECK_FAIL(th_eco_hardware_parse(table, "tpu:v4", NULL, 0, &hw), TH_ERR_INVALID, "unknown key 'tpu'", "unknown key");
    CHECK_FAIL(th_eco_hardware_parse(table, "gpu:h100*0", NULL, 0, &hw), TH_ERR_INVALID, "count '0'", "zero count");
    CHECK_FAIL(th_eco_hardware_parse(table, "share:1.5", NULL, 0, &hw), TH_ERR_INVALID, "share:1.5", "share above 1");
    CHECK_FAIL(th_eco_hardware_parse(table, "cpu:epyc,,", NULL, 0, &hw), TH_ERR_INVALID, "empty entry", "empty entry");
    CHECK_FAIL(th_eco_hardware_parse(table, "tape-life-y:3", NULL, 0, &hw), TH_ERR_INVALID, "'tape' is not a device class",
               "unknown class life");
}

static void test_storage(void) {
    th_eco_hardware hw;
    th_eco_hardware_parse(table, "store:ssd", NULL, 0, &hw);
    th_eco_storage_charge c;
    // 1 TB x 3 replicas x 10.5 kWh/TB-yr x 1 y x PUE 1.5 = 47.25 kWh; x 400 g/kWh = 18.9 kg;
    // embodied 1 TB x 3 copies x 110 kg x 1 y / 6 y = 55 kg
    CHECK(th_eco_storage_charge_compute(&hw, 1e12, 3, YEAR_S, 1.5, 400, &c) == TH_OK, "charge");
    CHECK(near(c.energy_kwh.mid, 47.25) && near(c.energy_kwh.hi, 1 * 3 * 11.4 * 1.5), "energy %g kWh", c.energy_kwh.mid);
    CHECK(near(c.co2e_g.mid, 18900), "operational %g g", c.co2e_g.mid);
    CHECK(near(c.embodied_g.mid, 55000) && near(c.embodied_g.lo, 9000) && near(c.embodied_g.hi, 80000), "embodied %g g",
          c.embodied_g.mid);
    CHECK(near(c.total_g.mid, 73900) && near(c.total_g.lo, 18900 + 9000), "total %g", c.total_g.mid);
    th_eco_hardware_parse(table, "ssd-tb:2,store:ssd", NULL, 0, &hw);
    th_eco_storage_charge_compute(&hw, 1e12, 3, YEAR_S, 1.5, 400, &c);
    CHECK(c.copies_embodied == 2 && near(c.embodied_g.mid, 2 * 110e3 / 6), "named drive carries one copy");
    CHECK_FAIL(th_eco_storage_charge_compute(&hw, -1, 3, 1, 1, 400, &c), TH_ERR_INVALID, "negative", "negative bytes");
    CHECK_FAIL(th_eco_storage_charge_compute(&hw, 1, 0.5, 1, 1, 400, &c), TH_ERR_INVALID, "replicas", "replicas < 1");
    th_eco_hardware_parse(table, "store:dram", NULL, 0, &hw);
    th_eco_storage_charge_compute(&hw, 1e9, 1, YEAR_S, 1, 0, &c);
    CHECK(near(c.embodied_g.mid, 0.4e3 / 4), "an index in memory: 1 GB of dram over its life share: %g g", c.embodied_g.mid);

    th_eco_kept k;
    memset(&k, 0, sizeof k);
    const char *dir = test_tmp_dir("eco_kept");
    char cmd[9000];
    snprintf(cmd, sizeof cmd,
             "cd '%s' && rm -rf out && mkdir -p out/data out/model out/replay && head -c 1000 /dev/zero > out/checkpoint.bin && "
             "head -c 300 /dev/zero > out/data/train.bin && head -c 20 /dev/zero > out/model/config.json && "
             "head -c 7 /dev/zero > out/replay/r.bin && head -c 5 /dev/zero > out/teacher-cache.tlc",
             dir);
    CHECK(system(cmd) == 0, "fixture");
    snprintf(cmd, sizeof cmd, "%s/out", dir);
    CHECK(th_eco_kept_scan(&k, cmd) == TH_OK && k.bytes == 1332, "scan %g bytes", k.bytes);
    double ck = 0, sh = 0, rp = 0, tc = 0, md = 0;
    for (size_t i = 0; i < k.n; i++) {
        const char *w = k.item[i].what;
        double b = k.item[i].bytes;
        if (!strcmp(w, "checkpoints")) ck = b;
        if (!strcmp(w, "token shards")) sh = b;
        if (!strcmp(w, "replay reservoirs")) rp = b;
        if (!strcmp(w, "teacher caches")) tc = b;
        if (!strcmp(w, "model")) md = b;
    }
    CHECK(ck == 1000 && sh == 300 && rp == 7 && tc == 5 && md == 20, "kinds %g %g %g %g %g", ck, sh, rp, tc, md);
    snprintf(cmd, sizeof cmd, "%s/absent", dir);
    CHECK(th_eco_kept_scan(&k, cmd) == TH_OK && k.bytes == 1332, "a missing dir adds nothing");
    CHECK_FAIL(th_eco_kept_add(&k, "x", -3), TH_ERR_INVALID, "negative", "negative kept size");
}

/* Writes the data tables into dir with `edit` applied to embodied.csv (sed expression). */
static const char *bad_tables(const char *name, const char *edit) {
    static char dir[4400];
    snprintf(dir, sizeof dir, "%s", test_tmp_dir(name));
    char cmd[9400];
    snprintf(cmd, sizeof cmd, "sed -e '%s' '%s/data/factors/embodied.csv' > '%s/embodied.csv' && cp '%s/data/factors/storage_energy.csv' '%s/'",
             edit, test_source_dir(), dir, test_source_dir(), dir);
    CHECK(system(cmd) == 0, "write %s", name);
    return dir;
}

static void test_loader(void) {
    th_eco_embodied_table *t = NULL;
    // the h100 row's source emptied: refused, naming file, line and column
    const char *d = bad_tables("emb_nosource", "/^h100,/s/,\"Boavizta[^\"]*\",/,,/");
    CHECK_FAIL(th_eco_embodied_load(d, &t), TH_ERR_FORMAT, "(source): empty; every value needs a source", "row without source");
    CHECK(strstr(th_last_error(), "embodied.csv: row 14, column 10") && !t, "names file and line: %s", th_last_error());
    d = bad_tables("emb_order", "s/^dram,dram,GB,ddr|dram|memory,0.065,0.4,/dram,dram,GB,ddr|dram|memory,0.5,0.4,/");
    CHECK_FAIL(th_eco_embodied_load(d, &t), TH_ERR_FORMAT, "not in order", "low above central");
    d = bad_tables("emb_life", "/^a100,/s/,NA,3,/,NA,-3,/");
    CHECK_FAIL(th_eco_embodied_load(d, &t), TH_ERR_FORMAT, "(life_years): '-3'", "negative life");
    d = bad_tables("emb_class", "s/^rtx-4090,gpu,/rtx-4090,npu,/");
    CHECK_FAIL(th_eco_embodied_load(d, &t), TH_ERR_FORMAT, "'npu' is not cpu", "unknown class");
    d = bad_tables("emb_dup", "s/^a100,/h100,/");
    CHECK_FAIL(th_eco_embodied_load(d, &t), TH_ERR_FORMAT, "duplicate key 'h100'", "duplicate");
    d = bad_tables("emb_neg", "s/^hdd,hdd,TB,hdd|disk|sata,1.1,/hdd,hdd,TB,hdd|disk|sata,-1.1,/");
    CHECK_FAIL(th_eco_embodied_load(d, &t), TH_ERR_FORMAT, "-1.1 is negative", "negative factor");
    d = bad_tables("emb_year", "/^ssd,/s/,2022,/,22,/");
    CHECK_FAIL(th_eco_embodied_load(d, &t), TH_ERR_FORMAT, "(year): '22'", "bad year");
    d = bad_tables("emb_ok", "s/x/x/");
    CHECK(th_eco_embodied_load(d, &t) == TH_OK && t, "unchanged copy loads: %s", th_last_error());
    th_eco_embodied_free(t);
}

static th_eco_factors factors(void) {
    th_eco_tables *t = NULL;
    th_eco_factors f;
    memset(&f, 0, sizeof f);
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/data/factors", test_source_dir());
    CHECK(th_eco_tables_load(&t, dir) == TH_OK && th_eco_factors_resolve(t, "WORLD", NULL, &f) == TH_OK, "factors");
    th_eco_tables_free(t);
    th_eco_factor_set(&f, TH_ECO_F_GRID_CO2E, 400, "test");
    return f;
}

static void test_run_report(void) {
    th_eco_factors f = factors();
    th_run_figures g;
    memset(&g, 0, sizeof g);
    g.have_energy = 1;
    g.energy = (th_energy_figure){3.6e6, 100.0, TH_ECO_BASIS_MODELED, "sim:laptop-cpu"}; // 1 kWh -> 400 g
    g.seconds = 3600.0;
    g.origin = TH_ORIGIN_MODELED;
    snprintf(g.sensor, sizeof g.sensor, "sim:laptop-cpu");
    snprintf(g.governor, sizeof g.governor, "fixed");
    g.temp_c = g.temp_max_c = NAN;
    th_run_units u = {"train", 1000, 10, NULL, 0, NULL};
    th_run_report *r = NULL;
    CHECK(th_run_report_build(&g, &f, &u, &r) == TH_OK, "build");
    th_eco_hardware hw;
    th_eco_hardware_parse(table, "gpu:h100,cpu:mystery-cpu-free", NULL, 0, &hw);
    CHECK(hw.n == 0, "a named unknown device is refused, not kept");
    th_eco_hardware_parse(table, "gpu:h100", "Mystery RISC-V 9000", 0, &hw);
    hw.n = 1;
    CHECK(th_eco_hardware_parse(table, "host,gpu:h100", "Mystery RISC-V 9000", 0, &hw) == TH_OK && hw.n == 2, "host + h100");
    th_eco_kept k;
    memset(&k, 0, sizeof k);
    th_eco_kept_add(&k, "checkpoints", 1e9);
    CHECK(th_run_report_add_embodied(r, &hw, &k) == TH_OK, "add: %s", th_last_error());
    char *s = NULL;
    CHECK(th_run_report_text(r, TH_REPORT_SUMMARY, &s) == TH_OK, "summary");
    double h100 = 278e3 * 3600 / (3 * YEAR_S);
    CHECK(s && strstr(s, "embodied >= 10.6 g (7.34 g to 16.9 g) CO2e, 3.6e+03 s held (h100; 1 unknown)") &&
              strstr(s, "storage 1 GB kept x1"),
          "one summary line: %s", s);
    th_free(s);
    CHECK(th_run_report_text(r, TH_REPORT_FULL, &s) == TH_OK, "full");
    CHECK(s && strstr(s, "Mystery RISC-V 9000 (host: th_cpu_name): unknown") && strstr(s, "row h100") &&
              strstr(s, "Boavizta") && strstr(s, "replicas 1 (default for own-machine") && strstr(s, "embodied per token"),
          "full section: %s", s);
    th_free(s);
    const char *dir = test_tmp_dir("eco_embodied_report");
    char path[4500], csv[4400];
    snprintf(path, sizeof path, "%s/r.json", dir);
    CHECK(th_run_report_write_json(r, path) == TH_OK, "json");
    json_t *j = json_load_file(path, 0, NULL);
    json_t *e = json_object_get(j, "embodied");
    CHECK(e && near(json_real_value(json_object_get(json_object_get(e, "co2e_g"), "central")), h100) &&
              json_integer_value(json_object_get(e, "unknown_devices")) == 1 && json_object_get(j, "storage") &&
              json_object_get(j, "co2e_total_g") && json_object_get(j, "co2e_kg") && json_object_get(j, "per_unit"),
          "JSON keys, old ones kept");
    double share = json_real_value(json_object_get(json_object_get(j, "embodied_storage_share"), "central"));
    CHECK(share > 0.02 && share < 0.03, "share %g (10.6 / 410.6)", share);
    json_decref(j);
    snprintf(csv, sizeof csv, "%s/emissions.csv", dir);
    remove(csv);
    CHECK(th_run_report_append_emissions(r, csv) == TH_OK, "emissions: %s", th_last_error());
    th_csv c;
    CHECK(th_csv_read(csv, &c) == TH_OK && c.ncols == 45, "45 columns");
    if (c.ncols == 45 && c.nrows == 1) {
        CHECK(!strcmp(c.header[36], "wue") && !strcmp(c.header[38], "embodied_kg"), "ours after CodeCarbon's");
        CHECK(near(atof(th_csv_cell(&c, 0, 38)), h100 * 1e-3) && atof(th_csv_cell(&c, 0, 44)) == 3600, "embodied_kg, held");
    }
    th_csv_free(&c);
    // a file CodeCarbon itself started: appended with its columns only
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "head -n 1 '%s' | cut -d, -f1-37 > '%s.cc'", csv, csv);
    CHECK(system(cmd) == 0, "codecarbon header");
    snprintf(path, sizeof path, "%s.cc", csv);
    CHECK(th_run_report_append_emissions(r, path) == TH_OK, "append to CodeCarbon's file: %s", th_last_error());
    CHECK(th_csv_read(path, &c) == TH_OK && c.ncols == 37 && c.nrows == 1, "CodeCarbon's columns only");
    th_csv_free(&c);
    th_run_report_free(r);
}

int main(void) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/data/factors", test_source_dir());
    CHECK(th_eco_embodied_load(dir, &table) == TH_OK, "table: %s", th_last_error());
    if (!table) return test_summary();
    test_ranges();
    test_allocation();
    test_host_and_unknown();
    test_bad_input();
    test_storage();
    test_loader();
    test_run_report();
    th_eco_embodied_free(table);
    return test_summary();
}
