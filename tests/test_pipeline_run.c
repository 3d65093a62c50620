/* test_pipeline_run.c: a monitored run end to end through the CLI. A short training run
 * with --telemetry and --report-json: the log holds sample and step rows on one clock, the
 * samples are labelled modeled (this machine has no sensors: the simulated plant) and the
 * report's energy equals what its own telemetry log integrates to. Also `thermo sensors`
 * and `thermo monitor` on this machine and on a fixture tree. */
#include <jansson.h>

#include "test_util.h"
#include "thermo/sense.h"

static const char *bin(void) {
    const char *b = getenv("THERMO_BIN");
    return b && *b ? b : "./build/thermo";
}

static int run(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void test_train_telemetry(const char *dir) {
    char data[4200], out[4200], tel[4200], rep[4200], cmd[20000];
    snprintf(data, sizeof data, "%s/corpus.txt", dir);
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(tel, sizeof tel, "%s/telemetry.csv", dir);
    snprintf(rep, sizeof rep, "%s/report.json", dir);
    FILE *f = fopen(data, "w");
    for (int i = 0; i < 300; i++) fprintf(f, "Verse %d: and the light was good, and it was so.\n", i);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "'%s' train --model small --data '%s' --steps 12 --batch 2 --seq 32 --val-every 6 --val-batches 1 "
             "--out '%s' --hz 20 --telemetry '%s' --report-json '%s' 2>'%s/stderr.txt'",
             bin(), data, out, tel, rep, dir);
    CHECK(run(cmd) == 0, "train with telemetry failed: %s", cmd);

    th_telemetry_row *rows = NULL;
    size_t n = 0;
    CHECK(th_telemetry_read(tel, &rows, &n) == TH_OK, "telemetry unreadable: %s", th_last_error());
    size_t samples = 0, steps = 0, modeled = 0, ordered = 1;
    double first_e = NAN, last_e = NAN, prev_t = -1;
    long last_step = 0;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].t_s < prev_t - 0.05) ordered = 0; // rows of two threads interleave within a tick
        prev_t = rows[i].t_s > prev_t ? rows[i].t_s : prev_t;
        if (rows[i].is_step) {
            steps++;
            CHECK(rows[i].step == last_step + 1, "step rows out of order at %ld", rows[i].step);
            last_step = rows[i].step;
            CHECK((rows[i].has & TH_COL_LOSS) && (rows[i].has & TH_COL_GRAD_NORM), "step row without loss");
        } else {
            samples++;
            modeled += strncmp(rows[i].source, "sim:", 4) == 0;
            if (rows[i].has & TH_COL_ENERGY) {
                if (isnan(first_e)) first_e = rows[i].energy_j;
                last_e = rows[i].energy_j;
            }
        }
    }
    printf("telemetry: %zu rows, %zu samples (%zu modeled), %zu steps\n", n, samples, modeled, steps);
    CHECK(steps == 12, "%zu step rows", steps);
    CHECK(samples >= 3, "%zu sample rows", samples);
    CHECK(modeled == samples, "a sample on this machine is not labelled sim: (%zu of %zu)", modeled, samples);
    CHECK(ordered, "rows are not on one increasing clock");

    json_error_t err;
    json_t *j = json_load_file(rep, 0, &err);
    CHECK(j != NULL, "report %s: %s", rep, err.text);
    if (j) {
        double kwh = json_number_value(json_object_get(j, "energy_it_kwh"));
        double log_j = last_e - first_e;
        printf("ledger: report %.6f J, telemetry integrates to %.6f J\n", kwh * 3.6e6, log_j);
        CHECK(log_j > 0 && fabs(kwh * 3.6e6 - log_j) <= 1e-6 * log_j + 1e-6, "report %.9g J != telemetry %.9g J",
              kwh * 3.6e6, log_j);
        CHECK(strcmp(json_string_value(json_object_get(j, "basis")), "modeled") == 0, "basis %s",
              json_string_value(json_object_get(j, "basis")));
        CHECK(json_is_false(json_object_get(j, "measured")), "report claims measured");
        CHECK(json_object_get(json_object_get(j, "per_unit"), "token") != NULL, "no per-token figures");
        json_decref(j);
    }
    snprintf(cmd, sizeof cmd, "grep -q 'MODELED by the simulated plant' '%s/stderr.txt'", dir);
    CHECK(run(cmd) == 0, "the run's report does not say the energy is modeled");
    snprintf(cmd, sizeof cmd, "grep -q 'equivalences (EPA)' '%s/stderr.txt'", dir);
    CHECK(run(cmd) != 0, "the default report is the full one, not the summary");
    th_free(rows);
}

static void test_sensors_cli(const char *dir) {
    char cmd[8192], path[4200];
    snprintf(path, sizeof path, "%s/sensors.json", dir);
    snprintf(cmd, sizeof cmd, "'%s' sensors --json > '%s'", bin(), path);
    CHECK(run(cmd) == 0, "thermo sensors --json failed");
    json_error_t err;
    json_t *j = json_load_file(path, 0, &err);
    CHECK(json_is_array(j) && json_array_size(j) > 0, "sensors --json is not a non-empty array");
    size_t i;
    json_t *e;
    int any_measured = 0;
    json_array_foreach(j, i, e) any_measured |= json_is_true(json_object_get(e, "measured"));
    CHECK(!any_measured, "this VM has no sensors, yet a reading claims measured: true");
    json_decref(j);

    snprintf(cmd, sizeof cmd, "'%s' sensors --json --sysfs-root '%s/tests/fixtures/sysfs/laptop' > '%s'", bin(),
             test_source_dir(), path);
    CHECK(run(cmd) == 0, "thermo sensors on the laptop fixture failed");
    j = json_load_file(path, 0, &err);
    int temps = 0;
    json_array_foreach(j, i, e) temps += json_is_true(json_object_get(e, "measured")) &&
                                         !strcmp(json_string_value(json_object_get(e, "unit")), "°C");
    CHECK(temps > 0, "no measured temperature on the laptop fixture");
    json_decref(j);

    snprintf(path, sizeof path, "%s/monitor.csv", dir);
    snprintf(cmd, sizeof cmd, "'%s' monitor --hz 20 --out '%s' -- sh -c 'sleep 0.4; exit 3' 2>/dev/null", bin(), path);
    CHECK(run(cmd) == 3, "monitor did not pass on the command's exit code 3");
    th_telemetry_row *rows = NULL;
    size_t n = 0;
    CHECK(th_telemetry_read(path, &rows, &n) == TH_OK && n >= 4, "monitor logged %zu rows", n);
    th_free(rows);
}

/* A sensor with utilization only (/proc/stat) and --tdp-w: the energy comes from the CPU power
 * model and is labelled modeled, never measured. Uses the model the training test saved. */
static void test_cpu_power_model(const char *dir) {
    char cmd[9000], rep[4200];
    snprintf(rep, sizeof rep, "%s/cpu_model.json", dir);
    remove(rep); // a report left by an earlier run must not pass for this one
    snprintf(cmd, sizeof cmd,
             "'%s' generate --model '%s/run/model' --prompt 'And it was so' --max-tokens 120 --temperature 0 "
             "--sensor procstat --tdp-w 15 --report full --report-json '%s' >/dev/null 2>'%s/generate.txt'",
             bin(), dir, rep, dir);
    CHECK(run(cmd) == 0, "generate with the CPU power model failed: %s", cmd);
    snprintf(cmd, sizeof cmd, "grep -q '== eco report: generate ==' '%s/generate.txt' && grep -q 'NOTE: energy is MODELED' "
             "'%s/generate.txt' && grep -q '^factors$' '%s/generate.txt'", dir, dir, dir);
    CHECK(run(cmd) == 0, "--report full did not print the full report");
    snprintf(cmd, sizeof cmd, "'%s' generate --model '%s/run/model' --prompt x --report long >/dev/null 2>&1", bin(), dir);
    CHECK(run(cmd) == 2, "--report long is not a usage error");
    json_error_t err;
    json_t *j = json_load_file(rep, 0, &err);
    CHECK(j != NULL, "report: %s", err.text);
    if (!j) return;
    const char *basis = json_string_value(json_object_get(j, "basis"));
    const char *src = json_string_value(json_object_get(j, "energy_source"));
    double kwh = json_number_value(json_object_get(j, "energy_it_kwh"));
    printf("cpu power model: %.3g J, basis %s, source %s\n", kwh * 3.6e6, basis, src);
    CHECK(basis && !strcmp(basis, "modeled"), "basis %s", basis ? basis : "(none)");
    CHECK(src && strstr(src, "cpu model: TDP 15 W"), "source %s", src ? src : "(none)");
    // TDP 15 W x (0.1 + 0.9 u^3) lies in [1.5, 15] W over the run
    double d = json_number_value(json_object_get(j, "duration_s"));
    CHECK(d > 0 && kwh * 3.6e6 >= 1.5 * d * 0.99 && kwh * 3.6e6 <= 15 * d * 1.01, "energy %.3g J over %.3g s", kwh * 3.6e6, d);
    CHECK(json_is_false(json_object_get(j, "measured")), "modeled energy reported as measured");
    json_decref(j);
}

int main(void) {
    const char *dir = test_tmp_dir("pipeline_run");
    test_train_telemetry(dir);
    test_cpu_power_model(dir);
    test_sensors_cli(dir);
    return test_summary();
}
