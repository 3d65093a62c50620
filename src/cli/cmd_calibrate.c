/* cmd_calibrate.c: `thermo calibrate`: the step-response experiment (idle, full duty,
 * idle) that fits a thermal profile (R, C, tau, P_idle, P_max), live on this machine
 * (th_calibrate_live) or on the simulated plant (th_calibrate_simulated), and writes it as a
 * profile JSON usable as --profile FILE. */
#include <stdio.h>

#include "cli/cli.h"
#include "thermo/analyze.h"

/* The experiment on this machine (th_calibrate_live), its telemetry beside the profile. */
static int calibrate_real(const char *sensor, const char *profile, const th_calib_opts *o, const char *out,
                          th_calib_result *res) {
    char tel[4200];
    snprintf(tel, sizeof tel, "%s.telemetry.csv", out);
    th_run_figures fig;
    th_status st = th_calibrate_live(sensor, profile, o, tel, res, &fig);
    if (st != TH_OK) return cli_report(st, "calibrate");
    if (fig.origin == TH_ORIGIN_MODELED)
        fprintf(stderr, "NOTE: the sensor was the simulated plant (%s): this profile is fitted to MODELED data\n",
                fig.sensor);
    return EXIT_OK;
}

int cmd_calibrate(int argc, char **argv) {
    const char *profile = "laptop-cpu", *sensor = NULL, *out = NULL;
    int simulate = 0;
    th_calib_opts o = th_calib_defaults();
    const cli_opt opts[] = {
        CLI_O_STR("--profile", "P", &profile,
                  "the simulated plant's profile, and the limits of the fitted one (default laptop-cpu)"),
        CLI_O_STR("--sensor", "S", &sensor, "sensor backend for the real experiment (default auto)"),
        CLI_O_DBL("--idle-s", "N", &o.idle_s, 1, 1e6, "each idle phase (default 60)"),
        CLI_O_DBL("--load-s", "N", &o.load_s, 1, 1e6, "the full-duty phase (default 180)"),
        CLI_O_DBL("--hz", "N", &o.hz, 0.1, 1000, "sampling rate (default 10)"),
        CLI_O_FLAG("--simulate", &simulate, "run on the simulated plant in simulated time (seconds of wall time)"),
        CLI_O_U64("--seed", "S", &o.seed, 0, 0x7fffffffffffffffL, "sensor noise seed (simulated)"),
        CLI_O_STR("--out", "FILE", &out, "the fitted profile (its telemetry beside it: FILE.telemetry.csv)"),
        {0},
    };
    cli_cmd c = {.name = "calibrate", .synopsis = "[--profile P] [--sensor S] [--idle-s N --load-s N] [--simulate] --out FILE",
                 .about = "  step response: idle N s, full duty N s, idle N s; fits R, C, tau, P_idle, P_max and writes a\n"
                          "  profile JSON (th_thermal_profile keys) usable as --profile FILE by the plant and the governors\n",
                 .tables = {opts}};
    int rc = cli_parse(&c, argc, argv);
    if (rc != CLI_GO) return rc;
    if (!out) {
        fprintf(stderr, "thermo calibrate: --out FILE is required\n");
        return EXIT_USAGE;
    }
    th_calib_result res;
    th_status st;
    if (simulate) {
        th_thermal_profile p;
        if ((st = th_profile_find(profile, &p)) != TH_OK) return cli_report(st, "calibrate --profile");
        if ((st = th_calibrate_simulated(&p, &o, &res)) != TH_OK) return cli_report(st, "calibrate");
        fprintf(stderr, "NOTE: simulated experiment on the plant '%s' (MODELED data, simulated time)\n", p.name);
        fprintf(stderr, "true:   R %.4g K/W, C %.4g J/K, tau %.4g s, P_idle %.4g W, P_max %.4g W\n", p.r_k_per_w,
                p.c_j_per_k, p.r_k_per_w * p.c_j_per_k, p.p_idle_w, p.p_max_w);
    } else {
        int rc = calibrate_real(sensor, profile, &o, out, &res);
        if (rc != EXIT_OK) return rc;
    }
    fprintf(stderr, "fitted: R %.4g K/W, C %.4g J/K, tau %.4g s, P_idle %.4g W, P_max %.4g W, ambient %.2f C; "
                    "RMS fit error %.3f C over %zu samples\n",
            res.fit.r_k_per_w, res.fit.c_j_per_k, res.fit.tau_s, res.p_idle_w, res.p_max_w, res.fit.t_ambient_c,
            res.fit.rms_c, res.samples);
    if ((st = th_profile_write(out, &res.profile)) != TH_OK) return cli_report(st, "calibrate");
    fprintf(stderr, "profile written to %s (use --profile %s)\n", out, out);
    return EXIT_OK;
}
