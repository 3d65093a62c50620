/* cmd_monitor.c: `thermo monitor`: logs the best available sensor to a telemetry file
 * (CSV, or JSONL for .jsonl) at a fixed rate until Ctrl-C, or while a command given after
 * `--` runs. On a machine without sensors the simulated plant is the sensor, driven by the
 * machine's measured CPU utilization from /proc/stat, and every message says it is
 * modeled. Exit code: the command's, or 130 after Ctrl-C. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "thermo/sense.h"

static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) { stop_signal = sig; }

static void monitor_usage(FILE *f) {
    fprintf(f, "usage: thermo monitor --out FILE [--hz N] [--sysfs-root DIR] [--profile NAME|FILE]\n"
               "                      [--backend NAME] [-- COMMAND [ARGS...]]\n"
               "  --out FILE        telemetry log; .jsonl gives JSON lines, anything else CSV\n"
               "  --hz N            samples per second (default 10)\n"
               "  --sysfs-root DIR  read DIR/sys and DIR/proc instead of /\n"
               "  --profile P       use the simulated plant with this profile (bundled name or JSON file)\n"
               "  --backend NAME    host, nvml, hwmon, thermal, rapl, procstat, trace, sim (default: best found)\n"
               "  -- COMMAND        run COMMAND and log until it exits; otherwise log until Ctrl-C\n");
}

/* Every sample goes to the log; the simulated plant follows the machine's measured CPU
 * utilization. */
typedef struct {
    th_plant *plant;
    th_sensor *util;
    th_telemetry *log;
} sim_drive;

static void on_sample(const th_sample *s, th_status st, th_sense_health h, const char *why, void *user) {
    (void)st;
    (void)why;
    sim_drive *d = user;
    if (s->valid) th_telemetry_add_sample(d->log, s, h, NULL); /* a write error stays in the log handle */
    th_sample u;
    if (d->plant && d->util && th_sensor_read(d->util, &u) == TH_OK && (u.valid & TH_SAMPLE_UTIL))
        th_plant_set_duty(d->plant, u.util);
}

int cmd_monitor(int argc, char **argv) {
    th_sense_config cfg = th_sense_config_default();
    const char *out = NULL, *backend = NULL;
    double hz = 10.0;
    char **command = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            monitor_usage(stdout);
            return EXIT_OK;
        } else if (strcmp(a, "--") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "thermo monitor: '--' must be followed by a command\n");
                return EXIT_USAGE;
            }
            command = argv + i + 1;
            break;
        } else if (i + 1 >= argc) {
            fprintf(stderr, "thermo monitor: unknown option or missing value: %s\n", a);
            monitor_usage(stderr);
            return EXIT_USAGE;
        } else if (strcmp(a, "--out") == 0) {
            out = argv[++i];
        } else if (strcmp(a, "--hz") == 0) {
            if (!cli_parse_float("monitor", "--hz", argv[++i], 0.01, 1000, &hz)) return EXIT_USAGE;
        } else if (strcmp(a, "--sysfs-root") == 0) {
            cfg.root = argv[++i];
        } else if (strcmp(a, "--profile") == 0) {
            cfg.profile = argv[++i];
            backend = "sim";
        } else if (strcmp(a, "--backend") == 0) {
            backend = argv[++i];
        } else {
            fprintf(stderr, "thermo monitor: unknown option %s\n", a);
            monitor_usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (!out) {
        fprintf(stderr, "thermo monitor: --out FILE is required\n");
        monitor_usage(stderr);
        return EXIT_USAGE;
    }
    cli_install_logger(TH_LOG_WARN);

    th_sensor *sensor = NULL, *util = NULL;
    th_telemetry *log = NULL;
    th_sense_sampler *sampler = NULL;
    int rc = EXIT_OK;
    th_status st = th_sensor_open(backend, &cfg, &sensor);
    if (st != TH_OK) return cli_report(st, "monitor: sensor");
    sim_drive drive = {th_sensor_plant(sensor), NULL, NULL};
    if (drive.plant) {
        if (th_sensor_open("procstat", &cfg, &util) == TH_OK) drive.util = util;
        fprintf(stderr,
                "thermo monitor: %s; using the simulated plant '%s' (modeled readings, not measured), driven by %s\n",
                backend ? "simulated plant requested" : "no hardware sensors found",
                th_plant_profile(drive.plant)->name,
                util ? "this machine's measured CPU utilization (/proc/stat)" : "duty 0 (no /proc/stat)");
    }
    st = th_telemetry_open(out, th_telemetry_format_for(out), th_now_ns(), &log);
    if (st != TH_OK) {
        rc = cli_report(st, "monitor");
        goto done;
    }
    drive.log = log;
    th_sense_sampler_config sc = {hz, sensor, on_sample, &drive};
    st = th_sense_sampler_start(&sc, &sampler);
    if (st != TH_OK) {
        rc = cli_report(st, "monitor");
        goto done;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    fprintf(stderr, "thermo monitor: logging %s at %g Hz to %s%s\n", th_sensor_backend(sensor), hz, out,
            command ? "" : " (Ctrl-C to stop)");

    pid_t child = -1;
    if (command) {
        child = fork();
        if (child < 0) {
            fprintf(stderr, "thermo monitor: fork failed: %s\n", strerror(errno));
            rc = EXIT_FAILURE_RUN;
            goto done;
        }
        if (child == 0) {
            execvp(command[0], command);
            fprintf(stderr, "thermo monitor: cannot run %s: %s\n", command[0], strerror(errno));
            _exit(127);
        }
    }
    int forwarded = 0;
    for (;;) {
        if (child > 0) {
            int status;
            pid_t w = waitpid(child, &status, WNOHANG);
            if (w == child) {
                rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
                break;
            }
            if (stop_signal && !forwarded) { /* the terminal already signals the group; a kill to us alone is passed on */
                kill(child, stop_signal);
                forwarded = 1;
            }
        } else if (stop_signal) {
            rc = EXIT_INTERRUPTED;
            break;
        }
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }

done:;
    th_sample last;
    th_status last_st = TH_OK;
    th_sense_health h = TH_HEALTH_OK;
    int have = sampler && th_sense_sampler_latest(sampler, &last, &last_st, &h);
    uint64_t reads = sampler ? th_sense_sampler_reads(sampler) : 0;
    th_sense_sampler_stop(sampler);
    th_status ls = th_telemetry_close(log);
    if (ls != TH_OK && rc == EXIT_OK) rc = cli_report(ls, "monitor: log");
    if (have) {
        char why[320] = "";
        h = th_sensor_health(sensor, why, sizeof why);
        fprintf(stderr, "thermo monitor: %llu samples from %s (%s) written to %s; sensor health %s%s%s\n",
                (unsigned long long)reads, last.source, th_origin_name(last.origin), out,
                th_sense_health_name(h), why[0] ? ": " : "", why);
    }
    th_sensor_close(util);
    th_sensor_close(sensor);
    return rc;
}
