/* cmd_analyze.c: the coupling-analysis commands: `thermo session` (a monitored
 * fine-tuning run through `thermo train`, with session.json and the data sheet),
 * `thermo analyze` (the data sheet of a session or telemetry log), `thermo calibrate`
 * (a step-response profile fit) and `thermo repro` (agreement across sessions). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "thermo/analyze.h"


/* ---------------------------------------------------------------------------------
 * thermo analyze */

static void analyze_usage(FILE *f) {
    fprintf(f, "usage: thermo analyze PATH [--json] [--out DIR] [options]\n"
               "  PATH                 a session directory (telemetry.csv, session.json) or a telemetry CSV/JSONL\n"
               "  --json               print the data sheet as JSON on stdout\n"
               "  --out DIR            write datasheet.md, datasheet.json, thermal.svg, rle_grad.svg, xcorr.svg\n"
               "                       (default: the session directory, or the telemetry file's directory)\n"
               "  --ambient C          ambient temperature (default: session.json's recorded one, else fitted)\n"
               "  --p-ref W            P_ref of A_load (default: the profile's p_max_w, else the highest power)\n"
               "  --p-idle W           P_idle of eta_p (default: the profile's p_idle_w, else the 5th percentile)\n"
               "  --step-offset S      add S seconds to step rows' times (a step log on a shifted clock)\n"
               "  --window S           eta_stability window (default 10)\n"
               "  --steps FILE         training log (CSV/JSONL) whose lines are the steps; PATH may be nvidia-smi CSV\n"
               "  --time-col NAME      its time column (default: timestamp, _timestamp, time, wall_time, t_s)\n"
               "  --grad-col NAME      its gradient-norm column (default: grad_norm, train/grad_norm, gradient_norm)\n"
               "  --offset S           same as --step-offset: seconds added to the step times (clock alignment)\n");
}

static void print_summary(const th_analysis *a, FILE *f) {
    fprintf(f, "session %s: %s data (%s), %.1f s, n_samples %zu, dropped %zu\n", a->meta.id,
            a->meta.modeled == 1 ? "MODELED (simulated plant)" : a->meta.modeled == 0 ? "measured" : "unknown-origin",
            a->meta.sensor, a->duration_s, a->n_samples, a->dropped);
    for (int i = 0; i < TH_AN_COUNT; i++) {
        const th_an_figure *g = &a->fig[i];
        if (isfinite(g->value))
            fprintf(f, "  %-34s %10.4g %-4s %s\n", g->label, g->value, g->unit, g->interp);
        else
            fprintf(f, "  %-34s %10s      (%s)\n", g->label, "n/a", g->how);
    }
    fprintf(f, "  %s\n", a->causal);
    for (int i = 0; i < a->n_warnings; i++) fprintf(f, "thermo analyze: warning: %s\n", a->warnings[i]);
}

int cmd_analyze(int argc, char **argv) {
    const char *path = NULL, *out_dir = NULL;
    int json = 0;
    th_analyze_opts o = th_analyze_defaults();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            analyze_usage(stdout);
            return EXIT_OK;
        }
        if (!strcmp(a, "--json")) { json = 1; continue; }
        if (strncmp(a, "--", 2) != 0) {
            if (path) {
                fprintf(stderr, "thermo analyze: one PATH only (got '%s' and '%s')\n", path, a);
                return EXIT_USAGE;
            }
            path = a;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "thermo analyze: %s needs a value\n", a);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        int ok = 1;
        if (!strcmp(a, "--out")) out_dir = v;
        else if (!strcmp(a, "--ambient")) ok = cli_parse_float("analyze", a, v, -60, 150, &o.ambient_c);
        else if (!strcmp(a, "--p-ref")) ok = cli_parse_float("analyze", a, v, 1e-6, 1e6, &o.p_ref_w);
        else if (!strcmp(a, "--p-idle")) ok = cli_parse_float("analyze", a, v, 0, 1e6, &o.p_idle_w);
        else if (!strcmp(a, "--steps")) o.steps_path = v;
        else if (!strcmp(a, "--time-col")) o.time_col = v;
        else if (!strcmp(a, "--grad-col")) o.grad_col = v;
        else if (!strcmp(a, "--step-offset") || !strcmp(a, "--offset")) ok = cli_parse_float("analyze", a, v, -1e9, 1e9, &o.step_offset_s);
        else if (!strcmp(a, "--window")) ok = cli_parse_float("analyze", a, v, 2, 3600, &o.window_s);
        else {
            fprintf(stderr, "thermo analyze: unknown option %s\n", a);
            analyze_usage(stderr);
            return EXIT_USAGE;
        }
        if (!ok) return EXIT_USAGE;
    }
    if (!path) {
        analyze_usage(stderr);
        return EXIT_USAGE;
    }
    th_analysis *an = NULL;
    th_status st = th_analyze_path(path, &o, &an);
    if (st != TH_OK) return cli_report(st, "analyze");
    char dir[4096];
    struct stat sb;
    if (out_dir) snprintf(dir, sizeof dir, "%s", out_dir);
    else if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) snprintf(dir, sizeof dir, "%s", path);
    else {
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        else snprintf(dir, sizeof dir, ".");
    }
    int rc = EXIT_OK;
    if (!cli_mkdir_p(dir)) {
        fprintf(stderr, "thermo analyze: cannot create %s\n", dir);
        rc = EXIT_FAILURE_RUN;
    } else if ((st = th_analysis_write(an, dir)) != TH_OK) {
        rc = cli_report(st, "analyze");
    }
    if (rc == EXIT_OK) {
        print_summary(an, stderr);
        fprintf(stderr, "data sheet: %s/datasheet.md, %s/datasheet.json; plots: %s/{thermal,rle_grad,xcorr}.svg\n",
                dir, dir, dir);
        if (json) {
            char *text = NULL;
            if ((st = th_analysis_json(an, &text)) != TH_OK) rc = cli_report(st, "analyze");
            else printf("%s\n", text);
            free(text);
        }
    }
    th_analysis_free(an);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * thermo session */

static void session_usage(FILE *f) {
    fprintf(f, "usage: thermo session [--model M] [--steps N] [--duration S] [--hz N] [--ambient C] --out DIR\n"
               "                      [any other `thermo train` option]\n"
               "  --model M        model or preset (default: small); data: --data, default the embedded corpus\n"
               "  --steps N        optimizer steps (default 200)\n"
               "  --duration S     wall-clock bound in seconds (default 90): at S seconds the run is stopped as\n"
               "                   Ctrl-C would stop it (after the current micro-batch, checkpoint saved), so the\n"
               "                   session ends at min(N steps, S seconds)\n"
               "  --hz N           sampling rate of the thermal monitor (default 1)\n"
               "  --ambient C      ambient temperature (default: the plant's, else the sensor's first sample)\n"
               "  --out DIR        session directory: telemetry.csv, session.json, report.json, run/, data sheet\n");
}

int cmd_session(int argc, char **argv) {
    th_session_opts so = th_session_defaults();
    char **pass = th_calloc((size_t)argc + 4, sizeof *pass);
    cli_train_args *t = th_calloc(1, sizeof *t);
    th_session_result *res = th_calloc(1, sizeof *res);
    int n_pass = 0, rc = EXIT_USAGE, have_steps = 0;
    if (!pass || !t || !res) {
        rc = cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "session");
        goto done;
    }
    pass[n_pass++] = "session";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            session_usage(stdout);
            rc = EXIT_OK;
            goto done;
        }
        if (!strcmp(a, "--telemetry") || !strcmp(a, "--report-json")) {
            fprintf(stderr, "thermo session: %s is set by the session itself (DIR/telemetry.csv, DIR/report.json)\n", a);
            goto done;
        }
        int ours = !strcmp(a, "--duration") || !strcmp(a, "--hz") || !strcmp(a, "--ambient") || !strcmp(a, "--out");
        have_steps |= !strcmp(a, "--steps");
        if (!ours) {
            pass[n_pass++] = argv[i];
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "thermo session: %s needs a value\n", a);
            goto done;
        }
        const char *v = argv[++i];
        int ok = 1;
        if (!strcmp(a, "--out")) so.out_dir = v;
        else if (!strcmp(a, "--duration")) ok = cli_parse_float("session", a, v, 1, 1e7, &so.duration_s);
        else if (!strcmp(a, "--hz")) ok = cli_parse_float("session", a, v, 0.1, 1000, &so.hz);
        else ok = cli_parse_float("session", a, v, -60, 80, &so.ambient_c);
        if (!ok) goto done;
    }
    if (!so.out_dir) {
        fprintf(stderr, "thermo session: --out DIR is required\n");
        session_usage(stderr);
        goto done;
    }
    if (!have_steps) pass[n_pass++] = "--steps", pass[n_pass++] = "200";
    int pr = cli_train_parse(n_pass, pass, "session", t);
    if (pr != 0) {
        rc = pr > 0 ? EXIT_OK : EXIT_USAGE;
        goto done;
    }
    if (!cli_mkdir_p(so.out_dir)) {
        fprintf(stderr, "thermo session: cannot create %s\n", so.out_dir);
        rc = EXIT_FAILURE_RUN;
        goto done;
    }
    char rep[4200];
    snprintf(rep, sizeof rep, "%s/report.json", so.out_dir);
    t->flags.report_json = rep;
    fprintf(stderr, "session: %ld steps, at most %.0f s, sampling at %g Hz, into %s\n", t->job.settings.steps,
            so.duration_s, so.hz, so.out_dir);
    cli_train_signals(1);
    th_status st = th_session_run(&t->job, &so, res);
    cli_train_signals(0);
    if (res->job.deadline_hit) fprintf(stderr, "session: stopped at the --duration bound (%.0f s)\n", so.duration_s);
    fprintf(stderr, "session %s: %s, %s (%s data)\n", res->meta.id, res->meta_path, res->telemetry_path,
            res->meta.modeled == 1 ? "MODELED" : "measured");
    if (st != TH_OK) {
        rc = res->job.have_figures && res->job.train.steps_done > 0 ? cli_train_finish(&t->flags, "session", st, &res->job)
                                                                    : cli_report(st, "session");
        goto done;
    }
    cli_run_units units = {(double)res->job.train.tokens, (double)res->job.train.steps_done,
                           res->meta.stopped_by, 0, NULL};
    rc = cli_run_report(&t->flags, "session", &res->job.figures, &units);
    print_summary(res->analysis, stderr);
    fprintf(stderr, "data sheet: %s/datasheet.md (re-run with `thermo analyze %s`)\n", so.out_dir, so.out_dir);
done:
    if (res) th_analysis_free(res->analysis);
    th_free(res);
    th_free(t);
    th_free(pass);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * thermo calibrate */

static void calibrate_usage(FILE *f) {
    fprintf(f, "usage: thermo calibrate [--profile P] [--sensor S] [--idle-s N --load-s N] [--simulate] --out FILE\n"
               "  step response: idle N s, full duty N s, idle N s; fits R, C, tau, P_idle, P_max and writes a\n"
               "  profile JSON (th_thermal_profile keys) usable as --profile FILE by the plant and the governors\n"
               "  --profile P      the simulated plant's profile, and the limits of the fitted one (default laptop-cpu)\n"
               "  --sensor S       sensor backend for the real experiment (default auto)\n"
               "  --idle-s N       each idle phase (default 60)\n"
               "  --load-s N       the full-duty phase (default 180)\n"
               "  --hz N           sampling rate (default 10)\n"
               "  --simulate       run on the simulated plant in simulated time (seconds of wall time)\n"
               "  --seed S         sensor noise seed (simulated)\n");
}

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
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            calibrate_usage(stdout);
            return EXIT_OK;
        }
        if (!strcmp(a, "--simulate")) { simulate = 1; continue; }
        if (i + 1 >= argc || strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "thermo calibrate: unknown option or missing value: %s\n", a);
            calibrate_usage(stderr);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        int ok = 1;
        long seed;
        if (!strcmp(a, "--profile")) profile = v;
        else if (!strcmp(a, "--sensor")) sensor = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--idle-s")) ok = cli_parse_float("calibrate", a, v, 1, 1e6, &o.idle_s);
        else if (!strcmp(a, "--load-s")) ok = cli_parse_float("calibrate", a, v, 1, 1e6, &o.load_s);
        else if (!strcmp(a, "--hz")) ok = cli_parse_float("calibrate", a, v, 0.1, 1000, &o.hz);
        else if (!strcmp(a, "--seed")) { ok = cli_parse_int("calibrate", a, v, 0, 0x7fffffffffffffffL, &seed); o.seed = (uint64_t)seed; }
        else {
            fprintf(stderr, "thermo calibrate: unknown option %s\n", a);
            calibrate_usage(stderr);
            return EXIT_USAGE;
        }
        if (!ok) return EXIT_USAGE;
    }
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

/* ---------------------------------------------------------------------------------
 * thermo repro */

int cmd_repro(int argc, char **argv) {
    int json = 0, n = 0;
    const char **dirs = calloc((size_t)argc, sizeof *dirs);
    if (!dirs) return cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "repro");
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: thermo repro DIR... [--json]\n  analyzes sessions run under identical conditions and "
                   "says whether the coupling figures agree within +-20 %% (t_lag within +-1 s), with the spread\n");
            free(dirs);
            return EXIT_OK;
        }
        if (!strcmp(argv[i], "--json")) json = 1;
        else if (strncmp(argv[i], "--", 2) == 0) {
            fprintf(stderr, "thermo repro: unknown option %s\n", argv[i]);
            free(dirs);
            return EXIT_USAGE;
        } else dirs[n++] = argv[i];
    }
    if (n < 2) {
        fprintf(stderr, "thermo repro: needs at least two session directories\n");
        free(dirs);
        return EXIT_USAGE;
    }
    th_analysis **an = calloc((size_t)n, sizeof *an);
    int rc = EXIT_OK;
    th_analyze_opts o = th_analyze_defaults();
    for (int i = 0; i < n && rc == EXIT_OK; i++) {
        th_status st = th_analyze_path(dirs[i], &o, &an[i]);
        if (st != TH_OK) rc = cli_report(st, "repro");
    }
    th_repro_result r;
    if (rc == EXIT_OK) {
        th_status st = th_repro_compare((const th_analysis *const *)an, (size_t)n, &r);
        if (st != TH_OK) rc = cli_report(st, "repro");
    }
    if (rc == EXIT_OK) {
        int modeled = 0;
        for (int i = 0; i < n; i++) modeled |= an[i]->meta.modeled == 1;
        fprintf(stderr, "%d sessions%s\n%-30s %10s %10s %10s %8s %s\n", n, modeled ? " (MODELED data: simulated plant)" : "",
                "figure", "mean", "min", "max", "spread", "agree");
        if (json) printf("{\n  \"sessions\": %d,\n  \"figures\": {\n", n);
        for (int f = 0; f < TH_REPRO_FIGURES; f++) {
            const th_repro_figure *g = &r.fig[f];
            const th_an_figure *d = &an[0]->fig[g->id];
            const char *verdict = g->agree < 0 ? "n/a (< 2 values)" : g->agree ? "yes" : "NO";
            if (g->id == TH_AN_T_LAG)
                fprintf(stderr, "%-30s %10.4g %10.4g %10.4g %6.1f s %s\n", d->label, g->mean, g->min, g->max, g->spread, verdict);
            else
                fprintf(stderr, "%-30s %10.4g %10.4g %10.4g %7.1f%% %s\n", d->label, g->mean, g->min, g->max, 100 * g->spread, verdict);
            if (json)
                printf("    \"%s\": {\"mean\": %s%.8g, \"min\": %.8g, \"max\": %.8g, \"spread\": %.8g, \"n\": %d, \"agree\": %s}%s\n",
                       d->key, "", isfinite(g->mean) ? g->mean : 0, isfinite(g->min) ? g->min : 0,
                       isfinite(g->max) ? g->max : 0, isfinite(g->spread) ? g->spread : 0, g->n,
                       g->agree < 0 ? "null" : g->agree ? "true" : "false", f + 1 < TH_REPRO_FIGURES ? "," : "");
        }
        fprintf(stderr, "verdict: %s\n", r.all_agree ? "the coupling figures agree within +-20 %" : "the figures DISAGREE");
        if (json) printf("  },\n  \"all_agree\": %s\n}\n", r.all_agree ? "true" : "false");
    }
    for (int i = 0; i < n; i++) th_analysis_free(an[i]);
    free(an);
    free(dirs);
    return rc;
}
