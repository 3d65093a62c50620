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

int cmd_monitor(int argc, char **argv) {
    th_sense_config cfg = th_sense_config_default();
    const char *out = NULL, *backend = NULL, *profile = NULL;
    double hz = 10.0;
    char **command = NULL;
    const cli_opt opts[] = {
        CLI_O_STR("--out", "FILE", &out, "telemetry log; .jsonl gives JSON lines, anything else CSV"),
        CLI_O_DBL("--hz", "N", &hz, 0.01, 1000, "samples per second (default 10)"),
        CLI_O_STR("--sysfs-root", "DIR", &cfg.root, "read DIR/sys and DIR/proc instead of /"),
        CLI_O_STR("--profile", "P", &profile, "use the simulated plant with this profile (bundled name or JSON file)"),
        CLI_O_STR("--backend", "NAME", &backend,
                  "host, nvml, hwmon, thermal, rapl, procstat, trace, sim (default: best found)"),
        {0},
    };
    cli_cmd c = {.name = "monitor",
                 .synopsis = "--out FILE [--hz N] [--sysfs-root DIR] [--profile NAME|FILE]\n"
                             "                      [--backend NAME] [-- COMMAND [ARGS...]]",
                 .tables = {opts},
                 .epilog = "  -- COMMAND              run COMMAND and log until it exits; otherwise log until Ctrl-C\n",
                 .rest = &command};
    int rc = cli_parse(&c, argc, argv);
    if (rc != CLI_GO) return rc;
    rc = EXIT_OK;
    if (profile) {
        cfg.profile = profile;
        backend = "sim";
    }
    if (!out) {
        fprintf(stderr, "thermo monitor: --out FILE is required (thermo monitor --help)\n");
        return EXIT_USAGE;
    }
    cli_install_logger(TH_LOG_WARN);
    // a monitored run that paces nothing: governor none, the log at --hz, and a simulated
    // plant (when there is no sensor) heating at this machine's measured CPU utilization
    th_run_opts ro = th_run_opts_default();
    ro.sensor = backend;
    ro.sense = cfg;
    ro.hz = hz;
    ro.telemetry_path = out;
    ro.governor = "none";
    ro.drive_plant_from_util = 1;
    th_run *run = NULL;
    th_status st = th_run_start(&ro, &run);
    if (st != TH_OK) return cli_report(st, "monitor");
    th_plant *plant = th_sensor_plant(th_run_sensor(run));
    if (plant)
        fprintf(stderr, "thermo monitor: %s; using the simulated plant '%s' (modeled readings, not measured), driven by "
                        "this machine's measured CPU utilization (/proc/stat)\n",
                backend ? "simulated plant requested" : "no hardware sensors found", th_plant_profile(plant)->name);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    fprintf(stderr, "thermo monitor: logging %s at %g Hz to %s%s\n", th_sensor_backend(th_run_sensor(run)), hz, out,
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
    char why[320] = "";
    th_sense_health h = th_sensor_health(th_run_sensor(run), why, sizeof why);
    th_run_figures fig;
    th_status ls = th_run_stop(run, &fig);
    if (ls != TH_OK && rc == EXIT_OK) rc = cli_report(ls, "monitor: log");
    fprintf(stderr, "thermo monitor: %llu samples from %s (%s) written to %s; sensor health %s%s%s\n",
            (unsigned long long)fig.samples, fig.sensor, fig.origin_name, out, th_sense_health_name(h),
            why[0] ? ": " : "", why);
    return rc;
}
