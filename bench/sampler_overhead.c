/* sampler_overhead.c: what the 10 Hz sampler thread costs, as a fraction of one core.
 * Runs the sampler (sensor read + health + telemetry row) for a fixed wall time while the
 * main thread sleeps, and divides the process CPU time (getrusage user + system) by the
 * wall time: once on the simulated plant, once on a fixture sysfs tree through the "host"
 * backend (hwmon + RAPL + /proc/stat file reads). Target: below 0.5 % of one core.
 *
 * usage: sampler_overhead [SECONDS per backend, default 20] [HZ, default 10]
 * build: cc -std=c11 -O2 -D_GNU_SOURCE -Iinclude -Isrc bench/sampler_overhead.c \
 *        build-sense/libthermo_lib.a -ljansson -lm -fopenmp ... (see the report) */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "thermo/sense.h"

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* What a monitored run does with each sample, minus the decision: one telemetry row. */
static void log_sample(const th_sample *s, th_status st, th_sense_health h, const char *why, void *user) {
    (void)st;
    (void)why;
    if (s->valid) th_telemetry_add_sample(user, s, h, NULL);
}

static int run(const char *label, const char *backend, const th_sense_config *cfg, double seconds, double hz,
               const char *log_path) {
    th_sensor *s;
    th_telemetry *t;
    th_sense_sampler *sp;
    if (th_sensor_open(backend, cfg, &s) != TH_OK || th_telemetry_open(log_path, TH_TELEMETRY_CSV, th_now_ns(), &t) != TH_OK) {
        fprintf(stderr, "%s: %s\n", label, th_last_error());
        return 1;
    }
    th_sense_sampler_config sc = {hz, s, log_sample, t};
    double c0 = cpu_s();
    uint64_t w0 = th_now_ns();
    if (th_sense_sampler_start(&sc, &sp) != TH_OK) {
        fprintf(stderr, "%s: %s\n", label, th_last_error());
        return 1;
    }
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
    uint64_t reads = th_sense_sampler_reads(sp), overruns = th_sense_sampler_overruns(sp);
    th_sense_sampler_stop(sp);
    double wall = (double)(th_now_ns() - w0) / 1e9, cpu = cpu_s() - c0;
    th_telemetry_close(t);
    th_sensor_close(s);
    printf("%-34s %6.1f s wall  %5llu reads  %2llu overruns  CPU %.4f s  = %.3f %% of one core  (%.1f us/read)\n", label,
           wall, (unsigned long long)reads, (unsigned long long)overruns, cpu, 100.0 * cpu / wall,
           reads ? cpu / (double)reads * 1e6 : 0.0);
    return 0;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 20.0, hz = argc > 2 ? atof(argv[2]) : 10.0;
    const char *src = getenv("THERMO_SOURCE_DIR");
    char root[2048];
    snprintf(root, sizeof root, "%s/tests/fixtures/sysfs/laptop", src && *src ? src : ".");
    printf("sampler overhead at %g Hz, %g s per backend (process CPU time / wall time)\n", hz, seconds);
    th_sense_config c = th_sense_config_default();
    c.profile = "h100-sxm";
    int rc = run("sim (simulated plant h100-sxm)", "sim", &c, seconds, hz, "/tmp/thermo_sampler_overhead_sim.csv");
    c = th_sense_config_default();
    c.root = root;
    rc |= run("host (fixture laptop sysfs tree)", "host", &c, seconds, hz, "/tmp/thermo_sampler_overhead_host.csv");
    return rc;
}
