/* test_analyze_cli.c: the analysis commands end to end: `thermo session` (20 steps of the
 * small preset at 5 Hz on the simulated plant) writes telemetry, session.json labelled
 * modeled and the data sheet; `thermo analyze --json` prints it; `thermo repro` compares;
 * `thermo calibrate --simulate` writes a profile that loads; bad input exits 3 with a message;
 * nvidia-smi output with --steps, --time-col, --grad-col, --offset gives a measured data sheet. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "thermo/sense.h"

static int run(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static long slurp(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t got = fread(buf, 1, n - 1, f);
    buf[got] = '\0';
    fclose(f);
    return (long)got;
}

int main(void) {
    const char *bin = getenv("THERMO_BIN");
    if (!bin || !*bin) bin = "build/thermo";
    const char *dir = test_tmp_dir("analyze_cli");
    char cmd[32768], path[4300];
    static char buf[1 << 16];

    snprintf(cmd, sizeof cmd, "rm -rf '%s/s1' && '%s' session --steps 20 --hz 5 --duration 60 --val-every 0 --out '%s/s1' "
             "> '%s/session.log' 2>&1", dir, bin, dir, dir);
    CHECK(run(cmd) == 0, "thermo session failed: see %s/session.log", dir);
    snprintf(path, sizeof path, "%s/s1/session.json", dir);
    CHECK(slurp(path, buf, sizeof buf) > 0 && strstr(buf, "\"modeled\"") && strstr(buf, "\"ambient_c\"") &&
          strstr(buf, "\"sim:laptop-cpu\""), "session.json: %s", buf);
    const char *files[] = {"telemetry.csv", "report.json", "datasheet.md", "datasheet.json", "thermal.svg",
                           "rle_grad.svg", "xcorr.svg"};
    for (int i = 0; i < 7; i++) {
        snprintf(path, sizeof path, "%s/s1/%s", dir, files[i]);
        CHECK(slurp(path, buf, sizeof buf) > 100, "%s missing or empty", files[i]);
    }
    snprintf(path, sizeof path, "%s/s1/datasheet.md", dir);
    CHECK(slurp(path, buf, sizeof buf) > 0 && strstr(buf, "MODELED DATA"), "the data sheet says modeled");

    snprintf(cmd, sizeof cmd, "'%s' analyze '%s/s1' --json --out '%s/a1' > '%s/a1.json' 2> '%s/a1.log'", bin, dir, dir, dir, dir);
    CHECK(run(cmd) == 0, "thermo analyze failed");
    snprintf(path, sizeof path, "%s/a1.json", dir);
    CHECK(slurp(path, buf, sizeof buf) > 0 && strstr(buf, "\"data\": \"modeled\"") && strstr(buf, "\"n_samples\"") &&
          strstr(buf, "\"t_lag_s\"") && strstr(buf, "\"tau_s\""), "analyze --json output");

    /* the simulated plant has no grad-norm coupling: none is reported on its own session */
    CHECK(strstr(buf, "\"r_peak\"") && (strstr(buf, "weak") || strstr(buf, "\"r_peak\": null")),
          "r_peak on the simulated plant's session reads weak");

    /* other tools' logs through the CLI: nvidia-smi output with a training log on its wall clock */
    snprintf(cmd, sizeof cmd, "TZ=UTC '%s' analyze '%s/tests/fixtures/analyze/foreign/nvsmi_units.csv' --steps "
             "'%s/tests/fixtures/analyze/foreign/train_log.jsonl' --time-col _timestamp --grad-col train/grad_norm "
             "--offset 0 --json --out '%s/smi' > '%s/smi.json' 2> '%s/smi.log'", bin, test_source_dir(), test_source_dir(),
             dir, dir, dir);
    CHECK(run(cmd) == 0, "thermo analyze on nvidia-smi + training log");
    snprintf(path, sizeof path, "%s/smi.json", dir);
    CHECK(slurp(path, buf, sizeof buf) > 0 && strstr(buf, "\"data\": \"measured\"") && strstr(buf, "\"sensor\": \"nvidia-smi\"") &&
          strstr(buf, "\"step_rows\": 239"), "nvidia-smi data sheet");

    snprintf(cmd, sizeof cmd, "'%s' repro '%s/s1' '%s/s1' --json > '%s/r.json' 2> '%s/r.log'", bin, dir, dir, dir, dir);
    CHECK(run(cmd) == 0, "thermo repro failed");
    snprintf(path, sizeof path, "%s/r.json", dir);
    CHECK(slurp(path, buf, sizeof buf) > 0 && strstr(buf, "\"all_agree\": true"), "a session agrees with itself: %s", buf);
    {
        // figures without two values are named in the verdict, never passed off as agreeing
        const char *nc = strstr(buf, "\"not_compared\": ");
        int n_nc = nc ? atoi(nc + strlen("\"not_compared\": ")) : -1;
        char log[4096];
        snprintf(path, sizeof path, "%s/r.log", dir);
        CHECK(n_nc >= 0 && slurp(path, log, sizeof log) > 0 &&
                  (n_nc == 0 ? strstr(log, "agree within") && !strstr(log, "not compared")
                             : strstr(log, "not compared (< 2 values)") != NULL),
              "repro verdict and not_compared %d agree: %s", n_nc, log);
    }

    snprintf(cmd, sizeof cmd, "'%s' calibrate --simulate --profile laptop-cpu --out '%s/cal.json' 2>/dev/null", bin, dir);
    CHECK(run(cmd) == 0, "thermo calibrate --simulate failed");
    snprintf(path, sizeof path, "%s/cal.json", dir);
    th_thermal_profile p;
    CHECK(th_profile_load(path, &p) == TH_OK && p.r_k_per_w > 2.375 && p.r_k_per_w < 2.625, "calibrated profile: %s R %g",
          th_last_error(), p.r_k_per_w);

    snprintf(path, sizeof path, "%s/empty.csv", dir);
    fclose(fopen(path, "w"));
    snprintf(cmd, sizeof cmd, "'%s' analyze '%s' 2> '%s/empty.log'", bin, path, dir);
    CHECK(run(cmd) == 3, "empty log exits 3");
    snprintf(path, sizeof path, "%s/empty.log", dir);
    CHECK(slurp(path, buf, sizeof buf) > 0 && strstr(buf, "empty"), "message names the problem: %s", buf);
    snprintf(cmd, sizeof cmd, "'%s' repro '%s/s1' > /dev/null 2>&1", bin, dir);
    CHECK(run(cmd) == 2, "repro with one session is a usage error");
    return test_summary();
}
