/* test_sense_sysfs.c: the sysfs/procfs backends (thermal, hwmon, rapl, procstat, host) on
 * the fixture trees of a laptop, a desktop and a two-socket server; RAPL counter wraps and
 * counters that go backwards; and the faults a real machine throws: a sensor file deleted
 * mid-run, garbage in a file, a permission error with its fix, an out-of-range zone;
 * health (ok / stale / stuck / vanished / nonsense) on an injected clock. */
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sense/sense_internal.h"
#include "test_util.h"
#include "thermo/sense.h"

static uint64_t fake_ns;
static uint64_t fake_clock(void *user) {
    (void)user;
    return fake_ns;
}

static char fixture[1024];
static const char *fixture_dir(const char *name) {
    snprintf(fixture, sizeof fixture, "%s/tests/fixtures/sysfs/%s", test_source_dir(), name);
    return fixture;
}

/* A writable copy of a fixture tree (so tests can delete and corrupt files). */
static const char *copy_fixture(const char *name) {
    static char dst[4200];
    const char *tmp = test_tmp_dir("sense_sysfs");
    snprintf(dst, sizeof dst, "%s/%s", tmp, name);
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dst, fixture_dir(name), dst);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot copy fixture %s\n", name);
        exit(2);
    }
    return dst;
}

static void write_file(const char *root, const char *rel, const char *text) {
    const char *p = test_path_in(root, rel);
    CHECK(test_write_text(p, text), "cannot write %s", p);
}

static th_sense_config cfg_for(const char *root) {
    th_sense_config c = th_sense_config_default();
    c.root = root;
    c.clock_ns = fake_clock;
    return c;
}

static int probe_of(const char *backend, const th_sense_config *c) {
    for (size_t i = 0; i < th_sense_backend_count(); i++)
        if (strcmp(th_sense_backend_name(i), backend) == 0) return th_sense_backend_probe(i, c);
    return -1;
}

static void test_laptop(void) {
    printf("-- laptop: x86_pkg_temp + acpitz zones, coretemp, one RAPL package\n");
    th_sense_config c = cfg_for(fixture_dir("laptop"));
    CHECK(probe_of("thermal", &c) > 0, "thermal zones found");
    CHECK(probe_of("hwmon", &c) > probe_of("thermal", &c), "coretemp preferred over zones");
    CHECK(probe_of("rapl", &c) > 0, "rapl found");
    CHECK(probe_of("procstat", &c) > 0, "proc/stat found");
    CHECK(probe_of("nvml", &c) >= 0, "nvml probe runs");
    CHECK(probe_of("trace", &c) == 0, "no trace without a path");

    th_sensor *s;
    th_sample x;
    CHECK(th_sensor_open("thermal", &c, &s) == TH_OK, "%s", th_last_error());
    CHECK(th_sensor_read(s, &x) == TH_OK && (x.valid & TH_SAMPLE_TEMP) && x.temp_mc == 53000,
          "x86_pkg_temp picked over acpitz: %d", x.temp_mc);
    CHECK(strcmp(x.source, "thermal:x86_pkg_temp") == 0 && x.origin == TH_ORIGIN_MEASURED, "%s", x.source);
    th_sense_limits lim;
    CHECK(th_sensor_limits(s, &lim) == TH_OK && lim.slowdown_mc == 0 && lim.shutdown_mc == 0,
          "x86_pkg_temp's disabled (0) trips are ignored");
    th_sensor_close(s);

    c.zone = "acpitz";
    CHECK(th_sensor_open("thermal", &c, &s) == TH_OK, "%s", th_last_error());
    CHECK(th_sensor_read(s, &x) == TH_OK && x.temp_mc == 47000, "configured zone: %d", x.temp_mc);
    CHECK(th_sensor_limits(s, &lim) == TH_OK && lim.shutdown_mc == 103000, "critical trip = shutdown");
    th_sensor_close(s);
    c.zone = "no-such-zone";
    CHECK(th_sensor_open("thermal", &c, &s) == TH_ERR_UNSUPPORTED && strstr(th_last_error(), "no-such-zone"), "%s",
          th_last_error());
    c.zone = NULL;

    CHECK(th_sensor_open("hwmon", &c, &s) == TH_OK, "%s", th_last_error());
    CHECK(th_sensor_read(s, &x) == TH_OK && x.temp_mc == 53000 && strstr(x.source, "coretemp/Package id 0"),
          "coretemp package: %d %s", x.temp_mc, x.source);
    CHECK(!(x.valid & (TH_SAMPLE_POWER | TH_SAMPLE_ENERGY)), "no CPU power from hwmon here");
    CHECK(th_sensor_limits(s, &lim) == TH_OK && lim.max_operating_mc == 100000 && lim.shutdown_mc == 100000,
          "temp1_max / temp1_crit");
    th_sensor_close(s);

    fake_ns = 1000000000ull;
    CHECK(th_sensor_open("rapl", &c, &s) == TH_OK, "%s", th_last_error());
    fake_ns += 100000000ull;
    CHECK(th_sensor_read(s, &x) == TH_OK && (x.valid & TH_SAMPLE_ENERGY) && x.energy_uj == 0,
          "energy since open starts at 0: %llu", (unsigned long long)x.energy_uj);
    CHECK(strcmp(x.source, "rapl:package-0") == 0, "psys, core, uncore and the mmio duplicate not summed: %s",
          x.source);
    CHECK((x.valid & TH_SAMPLE_POWER) && x.power_uw == 0, "static counter: 0 W measured, not missing");
    th_sensor_close(s);

    CHECK(th_sensor_open(NULL, &c, &s) == TH_OK && strcmp(th_sensor_backend(s), "host") == 0, "auto picks host");
    CHECK(th_sensor_read(s, &x) == TH_OK, "%s", th_last_error());
    CHECK((x.valid & TH_SAMPLE_TEMP) && (x.valid & TH_SAMPLE_ENERGY) && x.temp_mc == 53000, "host merges temp+energy");
    CHECK(strstr(x.source, "coretemp") && strstr(x.source, "rapl:package-0") && strstr(x.source, "procstat"), "%s",
          x.source);
    th_sensor_close(s);
}

static void test_desktop(void) {
    printf("-- desktop: k10temp, nvme, amdgpu; no zones, no RAPL\n");
    th_sense_config c = cfg_for(fixture_dir("desktop"));
    CHECK(probe_of("thermal", &c) == 0, "no thermal zones");
    CHECK(probe_of("rapl", &c) == 0, "no rapl");
    th_sensor *s;
    th_sample x;
    CHECK(th_sensor_open("rapl", &c, &s) == TH_ERR_UNSUPPORTED, "rapl open says unsupported");
    CHECK(th_sensor_open("thermal", &c, &s) == TH_ERR_UNSUPPORTED, "thermal open says unsupported");
    CHECK(th_sensor_open("hwmon", &c, &s) == TH_OK, "%s", th_last_error());
    CHECK(th_sensor_read(s, &x) == TH_OK && x.temp_mc == 61250 && strstr(x.source, "k10temp/Tctl"),
          "Tctl, not the drive or the GPU: %d %s", x.temp_mc, x.source);
    CHECK(!(x.valid & TH_SAMPLE_POWER), "the GPU's power1_average is not the CPU's");
    th_sensor_close(s);
    c.zone = "nvme";
    CHECK(th_sensor_open("hwmon", &c, &s) == TH_OK && th_sensor_read(s, &x) == TH_OK && x.temp_mc == 38850,
          "chip chosen by name: %d", x.temp_mc);
    th_sensor_close(s);
    c.zone = "amdgpu";
    CHECK(th_sensor_open("hwmon", &c, &s) == TH_OK && th_sensor_read(s, &x) == TH_OK &&
              (x.valid & TH_SAMPLE_POWER) && x.power_uw == 35000000,
          "amdgpu power1_average in µW: %lld", (long long)x.power_uw);
    th_sensor_close(s);
    c.zone = NULL;
    CHECK(th_sensor_open(NULL, &c, &s) == TH_OK && strcmp(th_sensor_backend(s), "host") == 0, "auto: host");
    CHECK(th_sensor_read(s, &x) == TH_OK && (x.valid & TH_SAMPLE_TEMP) && !(x.valid & TH_SAMPLE_ENERGY),
          "host without RAPL: temperature, no energy");
    th_sensor_close(s);
}

static void test_server(void) {
    printf("-- server: two packages, two coretemp, RAPL packages + dram\n");
    th_sense_config c = cfg_for(fixture_dir("server"));
    th_sensor *s;
    th_sample x;
    CHECK(th_sensor_open("hwmon", &c, &s) == TH_OK, "%s", th_last_error());
    CHECK(th_sensor_read(s, &x) == TH_OK && x.temp_mc == 66000, "hottest package governs: %d", x.temp_mc);
    CHECK(strstr(x.source, "max of 2") != NULL, "%s", x.source);
    th_sense_limits lim;
    CHECK(th_sensor_limits(s, &lim) == TH_OK && lim.max_operating_mc == 88000 && lim.shutdown_mc == 98000, "limits");
    th_sensor_close(s);
    CHECK(th_sensor_open("rapl", &c, &s) == TH_OK, "%s", th_last_error());
    CHECK(th_sensor_read(s, &x) == TH_OK, "%s", th_last_error());
    CHECK(strcmp(x.source, "rapl:package-0+dram+package-1+dram") == 0, "%s", x.source);
    th_sensor_close(s);

    /* energy over time on a writable copy: both packages and both dram zones add up */
    const char *root = copy_fixture("server");
    c = cfg_for(root);
    fake_ns = 5000000000ull;
    CHECK(th_sensor_open("rapl", &c, &s) == TH_OK, "%s", th_last_error());
    write_file(root, "sys/class/powercap/intel-rapl:0/energy_uj", "123476789012\n");   /* +20 J */
    write_file(root, "sys/class/powercap/intel-rapl:0:0/energy_uj", "23461789012\n");  /* +5 J */
    write_file(root, "sys/class/powercap/intel-rapl:1/energy_uj", "98780432109\n");    /* +15 J */
    write_file(root, "sys/class/powercap/intel-rapl:1:0/energy_uj", "21102765432\n");  /* +4 J */
    fake_ns += 200000000ull;                                                            /* 0.2 s */
    CHECK(th_sensor_read(s, &x) == TH_OK, "%s", th_last_error());
    CHECK(x.energy_uj == 44000000ull, "44 J summed: %llu", (unsigned long long)x.energy_uj);
    CHECK(llabs(x.power_uw - 220000000ll) <= 1, "220 W: %lld", (long long)x.power_uw);
    th_sensor_close(s);
}

static void test_rapl_wrap(void) {
    printf("-- RAPL counter wrap and backwards counters\n");
    uint64_t d;
    const uint64_t range = 262143328850ull;
    CHECK(th_rapl_delta(100, 300, range, 1.0, 5000, "x", &d) == TH_OK && d == 200, "plain step");
    CHECK(th_rapl_delta(range - 1000, 500, range, 1.0, 5000, "x", &d) == TH_OK && d == 1500, "wrap: %llu",
          (unsigned long long)d);
    CHECK(th_rapl_delta(5000000, 4000000, range, 0.1, 5000, "x/energy_uj", &d) == TH_ERR_FORMAT &&
              strstr(th_last_error(), "not a wrap") && strstr(th_last_error(), "x/energy_uj"),
          "a 1 J step backwards is not a 262 kJ wrap: %s", th_last_error());
    CHECK(th_rapl_delta(500, 100, 0, 1.0, 5000, "x", &d) == TH_ERR_FORMAT, "backwards with no range");
    CHECK(th_rapl_delta(100, range + 5, range, 1.0, 5000, "x", &d) == TH_ERR_FORMAT &&
              strstr(th_last_error(), "above its wrap range"),
          "a reading above max_energy_range_uj is nonsense, not a step: %s", th_last_error());

    const char *root = copy_fixture("laptop");
    th_sense_config c = cfg_for(root);
    fake_ns = 10000000000ull;
    write_file(root, "sys/class/powercap/intel-rapl:0/energy_uj", "262143000000\n");
    th_sensor *s;
    th_sample x;
    CHECK(th_sensor_open("rapl", &c, &s) == TH_OK, "%s", th_last_error());
    fake_ns += 1000000000ull;
    CHECK(th_sensor_read(s, &x) == TH_OK && x.energy_uj == 0, "first read");
    write_file(root, "sys/class/powercap/intel-rapl:0/energy_uj", "11671150\n"); /* wrapped: +12 J */
    fake_ns += 1000000000ull;
    CHECK(th_sensor_read(s, &x) == TH_OK, "%s", th_last_error());
    CHECK(x.energy_uj == 12000000ull, "wrap counted: %llu µJ", (unsigned long long)x.energy_uj);
    CHECK(llabs(x.power_uw - 12000000ll) <= 1, "12 W across the wrap: %lld", (long long)x.power_uw);
    write_file(root, "sys/class/powercap/intel-rapl:0/energy_uj", "1000\n"); /* backwards, no wrap */
    fake_ns += 1000000000ull;
    CHECK(th_sensor_read(s, &x) == TH_ERR_FORMAT && x.fault == TH_HEALTH_NONSENSE && !(x.valid & TH_SAMPLE_ENERGY),
          "backwards counter is nonsense: %s", th_last_error());
    CHECK(th_sensor_health(s, NULL, 0) == TH_HEALTH_NONSENSE, "health says nonsense");
    write_file(root, "sys/class/powercap/intel-rapl:0/energy_uj", "3001000\n"); /* +3 J after resync */
    fake_ns += 1000000000ull;
    CHECK(th_sensor_read(s, &x) == TH_OK && x.energy_uj == 15000000ull, "resynchronised: %llu",
          (unsigned long long)x.energy_uj);
    CHECK(th_sensor_health(s, NULL, 0) == TH_HEALTH_OK, "healthy again");
    th_sensor_close(s);
}

static void test_faults(void) {
    printf("-- faults: vanish mid-run, garbage, permission, nonsense values, stale, stuck\n");
    const char *root = copy_fixture("laptop");
    th_sense_config c = cfg_for(root);
    c.stale_s = 2.0;
    c.stuck_s = 10.0;
    fake_ns = 20000000000ull;
    th_sensor *s;
    th_sample x;
    char why[400];
    CHECK(th_sensor_open("hwmon", &c, &s) == TH_OK, "%s", th_last_error());
    CHECK(th_sensor_read(s, &x) == TH_OK && th_sensor_health(s, why, sizeof why) == TH_HEALTH_OK, "starts ok");

    /* garbage */
    write_file(root, "sys/class/hwmon/hwmon4/temp1_input", "N/A\n");
    fake_ns += 100000000ull;
    CHECK(th_sensor_read(s, &x) == TH_ERR_FORMAT && !(x.valid & TH_SAMPLE_TEMP), "garbage rejected");
    CHECK(strstr(th_last_error(), "temp1_input") && strstr(th_last_error(), "N/A"), "message names file and text: %s",
          th_last_error());
    CHECK(th_sensor_health(s, why, sizeof why) == TH_HEALTH_NONSENSE && strstr(why, "temp1_input"), "%s", why);

    /* out of range (the -274 °C zone of thermald#550) */
    write_file(root, "sys/class/hwmon/hwmon4/temp1_input", "-274000\n");
    fake_ns += 100000000ull;
    CHECK(th_sensor_read(s, &x) == TH_ERR_FORMAT && !(x.valid & TH_SAMPLE_TEMP), "-274 °C rejected");
    CHECK(strstr(th_last_error(), "-274.000") != NULL, "%s", th_last_error());
    CHECK(th_sensor_health(s, NULL, 0) == TH_HEALTH_NONSENSE, "nonsense");

    /* recovers */
    write_file(root, "sys/class/hwmon/hwmon4/temp1_input", "54000\n");
    fake_ns += 100000000ull;
    CHECK(th_sensor_read(s, &x) == TH_OK && x.temp_mc == 54000, "recovers");
    CHECK(th_sensor_health(s, NULL, 0) == TH_HEALTH_OK, "ok again");

    /* stuck: identical reading for longer than stuck_s */
    for (int i = 0; i < 120; i++) {
        fake_ns += 100000000ull;
        th_sensor_read(s, &x);
    }
    CHECK(th_sensor_health(s, why, sizeof why) == TH_HEALTH_STUCK && strstr(why, "54.000"), "stuck after 12 s: %s",
          why);
    write_file(root, "sys/class/hwmon/hwmon4/temp1_input", "54001\n");
    fake_ns += 100000000ull;
    CHECK(th_sensor_read(s, &x) == TH_OK && th_sensor_health(s, NULL, 0) == TH_HEALTH_OK, "a change unsticks");

    /* stale: no read for longer than stale_s */
    fake_ns += 3000000000ull;
    CHECK(th_sensor_health(s, why, sizeof why) == TH_HEALTH_STALE && strstr(why, "3.0 s"), "stale: %s", why);
    fake_ns += 100000000ull;
    CHECK(th_sensor_read(s, &x) == TH_OK && th_sensor_health(s, NULL, 0) == TH_HEALTH_OK, "fresh again");

    /* transient EIO: stale only once it lasts longer than stale_s */
    th_sense_inject_errno("hwmon4/temp1_input", EIO);
    fake_ns += 100000000ull;
    CHECK(th_sensor_read(s, &x) == TH_ERR_IO && x.fault == TH_HEALTH_STALE, "EIO read fails");
    CHECK(th_sensor_health(s, NULL, 0) == TH_HEALTH_OK, "one failed read is not yet stale");
    fake_ns += 2500000000ull;
    CHECK(th_sensor_read(s, &x) == TH_ERR_IO && th_sensor_health(s, why, sizeof why) == TH_HEALTH_STALE &&
              strstr(why, "Input/output error"),
          "persistent EIO is stale: %s", why);
    th_sense_inject_errno(NULL, 0);

    /* vanished: delete the file mid-run */
    char p[2048];
    snprintf(p, sizeof p, "%s/sys/class/hwmon/hwmon4/temp1_input", root);
    CHECK(unlink(p) == 0, "delete %s", p);
    fake_ns += 100000000ull;
    CHECK(th_sensor_read(s, &x) == TH_ERR_IO && x.fault == TH_HEALTH_VANISHED, "vanished read fails");
    CHECK(strstr(th_last_error(), "vanished") && strstr(th_last_error(), "temp1_input"), "%s", th_last_error());
    CHECK(th_sensor_health(s, why, sizeof why) == TH_HEALTH_VANISHED, "%s", why);
    th_sensor_close(s);

    /* the thermal backend, deleted zone */
    CHECK(th_sensor_open("thermal", &c, &s) == TH_OK, "%s", th_last_error());
    snprintf(p, sizeof p, "%s/sys/class/thermal/thermal_zone2/temp", root);
    CHECK(unlink(p) == 0, "delete zone temp");
    CHECK(th_sensor_read(s, &x) == TH_ERR_IO && th_sensor_health(s, NULL, 0) == TH_HEALTH_VANISHED, "zone vanished");
    th_sensor_close(s);

    /* permission: energy_uj is root-only since Linux 5.10. Tests run as root, so inject EACCES;
     * as a normal user also try the real chmod. */
    c = cfg_for(root);
    th_sense_inject_errno("intel-rapl:0/energy_uj", EACCES);
    CHECK(th_sensor_open("rapl", &c, &s) == TH_ERR_IO, "locked counter fails open");
    CHECK(strstr(th_last_error(), "needs read permission") && strstr(th_last_error(), "sudo chmod o+r") &&
              strstr(th_last_error(), "intel-rapl:0/energy_uj"),
          "message gives the fix: %s", th_last_error());
    CHECK(probe_of("rapl", &c) == 0, "locked counter: not offered by auto");
    CHECK(th_sensor_open("host", &c, &s) == TH_OK, "host still works without energy: %s", th_last_error());
    CHECK(th_sensor_read(s, &x) == TH_OK && (x.valid & TH_SAMPLE_TEMP) && !(x.valid & TH_SAMPLE_ENERGY),
          "host: temp without energy");
    th_sensor_close(s);
    th_reading *r;
    size_t n;
    CHECK(th_sense_list(&c, 0, &r, &n) == TH_OK, "list");
    int said = 0;
    for (size_t i = 0; i < n; i++)
        if (r[i].status != TH_OK && strstr(r[i].message, "sudo chmod")) said = 1;
    CHECK(said, "listing shows the permission problem");
    th_free(r);
    th_sense_inject_errno(NULL, 0);
    if (geteuid() != 0) {
        snprintf(p, sizeof p, "%s/sys/class/powercap/intel-rapl:0/energy_uj", root);
        chmod(p, 0);
        CHECK(th_sensor_open("rapl", &c, &s) == TH_ERR_IO && strstr(th_last_error(), "needs read permission"),
              "real EACCES: %s", th_last_error());
        chmod(p, 0644);
    }
}

static void test_procstat(void) {
    printf("-- /proc/stat utilization\n");
    const char *root = copy_fixture("desktop");
    th_sense_config c = cfg_for(root);
    th_sensor *s;
    th_sample x;
    write_file(root, "proc/stat", "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 100 0 100 800 0 0 0 0 0 0\n");
    CHECK(th_sensor_open("procstat", &c, &s) == TH_OK, "%s", th_last_error());
    CHECK(th_sensor_read(s, &x) == TH_OK && !(x.valid & TH_SAMPLE_UTIL), "no jiffy elapsed: no util, not zero");
    write_file(root, "proc/stat", "cpu  175 0 100 820 5 0 0 0 0 0\n"); /* +75 busy, +25 idle/iowait */
    CHECK(th_sensor_read(s, &x) == TH_OK && (x.valid & TH_SAMPLE_UTIL) && fabs(x.util - 0.75) < 1e-12,
          "util 0.75: %g", x.util);
    write_file(root, "proc/stat", "cpu  100 0 100 800 0 0 0 0 0 0\n");
    CHECK(th_sensor_read(s, &x) == TH_ERR_FORMAT && x.fault == TH_HEALTH_NONSENSE, "counters backwards");
    write_file(root, "proc/stat", "cpu  1 2 x\n");
    CHECK(th_sensor_read(s, &x) == TH_ERR_FORMAT && strstr(th_last_error(), "proc/stat"), "%s", th_last_error());
    write_file(root, "proc/stat", "intr 1 2 3\n");
    CHECK(th_sensor_read(s, &x) == TH_ERR_FORMAT, "no cpu line");
    th_sensor_close(s);
    uint64_t t, i;
    CHECK(th_procstat_parse("cpu  10132153 290696 3084719 46828483 16683 0 25195 0 175628 0", "p", &t, &i) == TH_OK &&
              i == 46828483ull + 16683ull && t == 10132153ull + 290696 + 3084719 + 46828483 + 16683 + 25195,
          "guest time not counted twice");
}

static void test_listing(void) {
    printf("-- listing every reading\n");
    const char *names[] = {"laptop", "desktop", "server"};
    size_t expect_min[] = {10, 7, 8};
    for (int k = 0; k < 3; k++) {
        th_sense_config c = cfg_for(fixture_dir(names[k]));
        th_reading *r;
        size_t n;
        CHECK(th_sense_list(&c, 0, &r, &n) == TH_OK && n >= expect_min[k], "%s: %zu readings", names[k], n);
        int temps = 0, all_measured = 1, bad = 0;
        for (size_t i = 0; i < n; i++) {
            temps += r[i].kind == TH_KIND_TEMP && r[i].status == TH_OK;
            all_measured &= r[i].measured;
            bad += r[i].status != TH_OK && r[i].kind != TH_KIND_POWER;
            CHECK(r[i].unit && *r[i].unit, "unit");
        }
        CHECK(temps >= 3 && all_measured && bad == 0, "%s: %d temps, %d bad", names[k], temps, bad);
        th_free(r);
    }
    th_sense_config c = cfg_for("/nonexistent-root");
    th_reading *r;
    size_t n = 99;
    CHECK(th_sense_list(&c, 0, &r, &n) == TH_OK && n == 0, "nothing found under an empty root: %zu", n);
    th_free(r);
    CHECK(th_sense_list_sim(&c, &r, &n) == TH_OK && n >= 4, "simulated readings");
    for (size_t i = 0; i < n; i++) CHECK(!r[i].measured && strncmp(r[i].source, "sim:", 4) == 0, "%s", r[i].source);
    th_free(r);
    th_sensor *s;
    CHECK(th_sensor_open(NULL, &c, &s) == TH_OK && strcmp(th_sensor_backend(s), "sim") == 0 &&
              th_sensor_origin(s) == TH_ORIGIN_MODELED,
          "auto falls back to the simulated plant, labelled modeled");
    th_sensor_close(s);
    /* a VM: /proc/stat but no temperature anywhere. Utilization alone is not a sensor. */
    const char *vm = copy_fixture("desktop");
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/sys'", vm);
    CHECK(system(cmd) == 0, "strip sys");
    c = cfg_for(vm);
    CHECK(th_sensor_open(NULL, &c, &s) == TH_OK && strcmp(th_sensor_backend(s), "sim") == 0,
          "auto on a VM picks the simulated plant, not procstat: %s", th_sensor_backend(s));
    th_sensor_close(s);
    CHECK(th_sense_list(&c, 0, &r, &n) == TH_OK && n == 0, "utilization alone is not listed as hardware: %zu", n);
    th_free(r);
    CHECK(th_sensor_open("procstat", &c, &s) == TH_OK, "procstat when named");
    th_sensor_close(s);
    CHECK(th_sensor_open("bogus", &c, &s) == TH_ERR_INVALID && strstr(th_last_error(), "host"), "%s", th_last_error());
}

int main(void) {
    test_laptop();
    test_desktop();
    test_server();
    test_rapl_wrap();
    test_faults();
    test_procstat();
    test_listing();
    return test_summary();
}
