/* test_sense_nvml.c: the NVML backend against tests/fake_nvml/fake_nvml.c, built here with
 * `cc -shared -fPIC` and loaded through THERMO_NVML_LIB: readings and units, thresholds,
 * the old-driver throttle-reasons fallback, a GPU lost at open and mid-run, queries the
 * GPU does not support, NVML uninitialized, init failure, the library absent, several
 * GPUs listed; and that no NVML setter is ever called (nor named in the backend). */
#include <unistd.h>

#include "test_util.h"
#include "thermo/sense.h"

static char lib_new[4200], lib_old[4200], setter_log[4200];

static void build_fake(void) {
    const char *dir = test_tmp_dir("sense_nvml");
    snprintf(lib_new, sizeof lib_new, "%s/libfake-nvml.so", dir);
    snprintf(lib_old, sizeof lib_old, "%s/libfake-nvml-old.so", dir);
    snprintf(setter_log, sizeof setter_log, "%s/setters.log", dir);
    const char *cc = getenv("CC");
    if (!cc || !*cc) cc = "cc";
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "%s -shared -fPIC -O1 -o '%s' '%s/tests/fake_nvml/fake_nvml.c'", cc, lib_new,
             test_source_dir());
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot build the fake NVML: %s\n", cmd);
        exit(2);
    }
    snprintf(cmd, sizeof cmd, "%s -shared -fPIC -O1 -DFAKE_NVML_OLD_DRIVER -o '%s' '%s/tests/fake_nvml/fake_nvml.c'",
             cc, lib_old, test_source_dir());
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot build the old-driver fake NVML\n");
        exit(2);
    }
    unlink(setter_log);
    setenv("FAKE_NVML_LOG", setter_log, 1);
}

static void reset_env(void) {
    unsetenv("FAKE_NVML_MODE");
    unsetenv("FAKE_NVML_TEMPS");
    unsetenv("FAKE_NVML_COUNT");
    unsetenv("FAKE_NVML_REASONS");
    unsetenv("FAKE_NVML_POWER_MW");
    setenv("THERMO_NVML_LIB", lib_new, 1);
}

static void test_readings(void) {
    printf("-- readings, units, thresholds\n");
    reset_env();
    setenv("FAKE_NVML_TEMPS", "61,62,63", 1);
    setenv("FAKE_NVML_POWER_MW", "312500", 1);
    setenv("FAKE_NVML_REASONS", "0x44", 1); /* SW power cap + HW thermal slowdown */
    th_sense_config c = th_sense_config_default();
    th_sensor *s;
    CHECK(th_sensor_open("nvml", &c, &s) == TH_OK, "%s", th_last_error());
    th_sample x;
    CHECK(th_sensor_read(s, &x) == TH_OK, "%s", th_last_error());
    CHECK(x.temp_mc == 61000 && x.power_uw == 312500000, "°C→m°C, mW→µW: %d %lld", x.temp_mc, (long long)x.power_uw);
    CHECK((x.valid & TH_SAMPLE_ENERGY) && x.energy_uj == 0, "energy since open starts at 0");
    CHECK((x.valid & TH_SAMPLE_UTIL) && fabs(x.util - 0.60) < 1e-12, "util %g", x.util);
    CHECK((x.valid & TH_SAMPLE_THROTTLE) && x.throttle_reasons == (TH_THROTTLE_SW_POWER_CAP | TH_THROTTLE_HW_THERMAL),
          "reasons 0x%x", x.throttle_reasons);
    CHECK(strcmp(x.source, "nvml:0:NVIDIA H100 80GB HBM3") == 0 && x.origin == TH_ORIGIN_MEASURED, "%s", x.source);
    CHECK(th_sensor_read(s, &x) == TH_OK && x.temp_mc == 62000 && x.energy_uj == 25000000ull,
          "scripted temps; energy mJ→µJ: %llu", (unsigned long long)x.energy_uj);
    th_sense_limits lim;
    CHECK(th_sensor_limits(s, &lim) == TH_OK && lim.shutdown_mc == 92000 && lim.slowdown_mc == 89000 &&
              lim.max_operating_mc == 87000,
          "thresholds");
    th_sensor_close(s);

    setenv("THERMO_NVML_LIB", lib_old, 1);
    CHECK(th_sensor_open("nvml", &c, &s) == TH_OK && th_sensor_read(s, &x) == TH_OK &&
              (x.valid & TH_SAMPLE_THROTTLE) && x.throttle_reasons == 0x44,
          "old driver: ClocksThrottleReasons fallback");
    th_sensor_close(s);
    setenv("THERMO_NVML_LIB", lib_new, 1);

    c.device = 3;
    CHECK(th_sensor_open("nvml", &c, &s) == TH_ERR_INVALID && strstr(th_last_error(), "out of range"), "%s",
          th_last_error());
}

static void test_modes(void) {
    printf("-- error modes\n");
    th_sense_config c = th_sense_config_default();
    th_sensor *s;
    th_sample x;
    char why[400];

    reset_env();
    setenv("FAKE_NVML_MODE", "not_supported", 1);
    CHECK(th_sensor_open("nvml", &c, &s) == TH_OK, "%s", th_last_error());
    CHECK(th_sensor_read(s, &x) == TH_OK && x.valid == TH_SAMPLE_TEMP, "unsupported queries are left out: 0x%x",
          x.valid);
    CHECK(th_sensor_health(s, NULL, 0) == TH_HEALTH_OK, "still healthy");
    th_sense_limits lim;
    CHECK(th_sensor_limits(s, &lim) == TH_OK && lim.slowdown_mc == 0, "no thresholds: 0 = unknown");
    th_sensor_close(s);

    reset_env();
    setenv("FAKE_NVML_MODE", "lost_after=3", 1);
    CHECK(th_sensor_open("nvml", &c, &s) == TH_OK, "%s", th_last_error());
    int ok = 0;
    th_status st = TH_OK;
    for (int i = 0; i < 6 && (st = th_sensor_read(s, &x)) == TH_OK; i++) ok++;
    CHECK(ok == 3 && st == TH_ERR_IO && x.fault == TH_HEALTH_VANISHED, "lost mid-run after 3 reads: %d", ok);
    CHECK(strstr(th_last_error(), "is lost") != NULL, "%s", th_last_error());
    CHECK(th_sensor_health(s, why, sizeof why) == TH_HEALTH_VANISHED && strstr(why, "GPU 0"), "%s", why);
    th_sensor_close(s);

    reset_env();
    setenv("FAKE_NVML_MODE", "lost", 1);
    CHECK(th_sensor_open("nvml", &c, &s) == TH_OK, "handles still come back for a lost GPU");
    CHECK(th_sensor_read(s, &x) == TH_ERR_IO && x.fault == TH_HEALTH_VANISHED, "lost from the start");
    th_sensor_close(s);

    reset_env();
    setenv("FAKE_NVML_MODE", "uninit", 1);
    CHECK(th_sensor_open("nvml", &c, &s) == TH_OK, "open");
    CHECK(th_sensor_read(s, &x) == TH_ERR_STATE && x.fault == TH_HEALTH_VANISHED &&
              strstr(th_last_error(), "not initialized"),
          "uninitialized: %s", th_last_error());
    th_sensor_close(s);

    reset_env();
    setenv("FAKE_NVML_MODE", "init_fail", 1);
    CHECK(th_sensor_open("nvml", &c, &s) == TH_ERR_UNSUPPORTED && strstr(th_last_error(), "Driver Not Loaded"), "%s",
          th_last_error());

    reset_env();
    setenv("FAKE_NVML_COUNT", "0", 1);
    CHECK(th_sensor_open("nvml", &c, &s) == TH_ERR_UNSUPPORTED && strstr(th_last_error(), "no NVIDIA GPU"), "%s",
          th_last_error());

    reset_env();
    setenv("THERMO_NVML_LIB", "/nonexistent/libnvidia-ml.so.1", 1);
    CHECK(th_sensor_open("nvml", &c, &s) == TH_ERR_UNSUPPORTED && strstr(th_last_error(), "cannot load"), "%s",
          th_last_error());
    size_t k = 0;
    while (strcmp(th_sense_backend_name(k), "nvml") != 0) k++;
    CHECK(th_sense_backend_probe(k, &c) == 0, "library absent: probe 0");
    c.nvml_lib = lib_new; /* the config's path beats the environment */
    CHECK(th_sense_backend_probe(k, &c) == 50, "config path");
}

static void test_list(void) {
    printf("-- listing several GPUs\n");
    reset_env();
    setenv("FAKE_NVML_COUNT", "2", 1);
    th_sense_config c = th_sense_config_default();
    c.root = "/nonexistent-root"; /* only NVML */
    th_reading *r;
    size_t n;
    CHECK(th_sense_list(&c, 0, &r, &n) == TH_OK, "%s", th_last_error());
    int gpu0 = 0, gpu1 = 0, temps = 0;
    for (size_t i = 0; i < n; i++) {
        gpu0 += strstr(r[i].name, "GPU 0") != NULL;
        gpu1 += strstr(r[i].name, "GPU 1") != NULL;
        if (r[i].kind == TH_KIND_TEMP && r[i].status == TH_OK) temps++;
        CHECK(r[i].measured, "measured");
    }
    CHECK(gpu0 >= 4 && gpu1 >= 4 && temps == 2, "both GPUs listed: %d %d %d", gpu0, gpu1, temps);
    th_free(r);
}

static void test_never_sets(void) {
    printf("-- no NVML setter is ever called or named\n");
    CHECK(access(setter_log, F_OK) != 0, "the fake's setter log is empty");
    char path[4200];
    snprintf(path, sizeof path, "%s/src/sense/nvml.c", test_source_dir());
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "open %s", path);
    if (!f) return;
    char line[1024];
    int bad = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "\"nvmlDeviceSet") || strstr(line, "\"nvmlDeviceReset") || strstr(line, "\"nvmlDeviceClear") ||
            strstr(line, "\"nvmlSystemSet"))
            bad++;
    fclose(f);
    CHECK(bad == 0, "nvml.c resolves %d setter symbols", bad);
}

int main(void) {
    build_fake();
    test_readings();
    test_modes();
    test_list();
    test_never_sets();
    return test_summary();
}
