/* cmd_analyze.c: the coupling-analysis commands: `thermo session` (a monitored
 * fine-tuning run through `thermo train`, with session.json and the data sheet),
 * `thermo analyze` (the data sheet of a session or telemetry log), `thermo calibrate`
 * (a step-response profile fit) and `thermo repro` (agreement across sessions). */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
               "  --ambient C          ambient temperature (default: session.json, else the first sample)\n"
               "  --p-ref W            P_ref of A_load (default: the profile's p_max_w, else the highest power)\n"
               "  --p-idle W           P_idle of eta_p (default: the profile's p_idle_w, else the 5th percentile)\n"
               "  --step-offset S      add S seconds to step rows' times (a step log on a shifted clock)\n"
               "  --window S           eta_stability window (default 10)\n");
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
        else if (!strcmp(a, "--step-offset")) ok = cli_parse_float("analyze", a, v, -1e9, 1e9, &o.step_offset_s);
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

static atomic_int session_done;
static atomic_int session_fired;
static double session_limit_s;

static void *session_timer(void *arg) {
    (void)arg;
    uint64_t end = th_now_ns() + (uint64_t)(session_limit_s * 1e9);
    while (!atomic_load(&session_done) && th_now_ns() < end) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    if (!atomic_load(&session_done)) {
        atomic_store(&session_fired, 1);
        kill(getpid(), SIGINT); /* thermo train stops after the micro-batch and saves */
    }
    return NULL;
}

static void ignore_early_sigint(int sig) { (void)sig; }

static void session_usage(FILE *f) {
    fprintf(f, "usage: thermo session [--model M] [--steps N] [--duration S] [--hz N] [--ambient C] --out DIR\n"
               "                      [any other `thermo train` option]\n"
               "  --model M        model or preset (default: small); data: --data, default the embedded corpus\n"
               "  --steps N        optimizer steps (default 200)\n"
               "  --duration S     wall-clock bound in seconds (default 90): at S seconds the run is stopped as\n"
               "                   Ctrl-C would stop it (after the current micro-batch, checkpoint saved), so the\n"
               "                   session ends at min(N steps, S seconds)\n"
               "  --hz N           sampling rate of the thermal monitor (default 1)\n"
               "  --ambient C      ambient temperature (default: the sensor's first sample)\n"
               "  --out DIR        session directory: telemetry.csv, session.json, report.json, run/, data sheet\n");
}

int cmd_session(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *profile = NULL, *sensor = NULL;
    long steps = 200;
    double duration = 90, hz = 1, ambient = NAN;
    char **pass = calloc((size_t)argc + 1, sizeof *pass);
    int n_pass = 0;
    if (!pass) return cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "session");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            session_usage(stdout);
            free(pass);
            return EXIT_OK;
        }
        int ours = !strcmp(a, "--model") || !strcmp(a, "--steps") || !strcmp(a, "--duration") || !strcmp(a, "--hz") ||
                   !strcmp(a, "--ambient") || !strcmp(a, "--out") || !strcmp(a, "--telemetry") ||
                   !strcmp(a, "--report-json");
        if (!ours) {
            if (!strcmp(a, "--profile") && i + 1 < argc) profile = argv[i + 1];
            if (!strcmp(a, "--sensor") && i + 1 < argc) sensor = argv[i + 1];
            pass[n_pass++] = argv[i];
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "thermo session: %s needs a value\n", a);
            free(pass);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        int ok = 1;
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--steps")) ok = cli_parse_int("session", a, v, 1, 100000000, &steps);
        else if (!strcmp(a, "--duration")) ok = cli_parse_float("session", a, v, 1, 1e7, &duration);
        else if (!strcmp(a, "--hz")) ok = cli_parse_float("session", a, v, 0.1, 1000, &hz);
        else if (!strcmp(a, "--ambient")) ok = cli_parse_float("session", a, v, -60, 80, &ambient);
        else {
            fprintf(stderr, "thermo session: %s is set by the session itself (DIR/telemetry.csv, DIR/report.json)\n", a);
            ok = 0;
        }
        if (!ok) {
            free(pass);
            return EXIT_USAGE;
        }
    }
    if (!out) {
        fprintf(stderr, "thermo session: --out DIR is required\n");
        session_usage(stderr);
        free(pass);
        return EXIT_USAGE;
    }
    if (!cli_mkdir_p(out)) {
        fprintf(stderr, "thermo session: cannot create %s\n", out);
        free(pass);
        return EXIT_FAILURE_RUN;
    }
    char tel[4200], rep[4200], run_dir[4200], steps_s[32], hz_s[32], meta_path[4200];
    snprintf(tel, sizeof tel, "%s/telemetry.csv", out);
    snprintf(rep, sizeof rep, "%s/report.json", out);
    snprintf(run_dir, sizeof run_dir, "%s/run", out);
    snprintf(meta_path, sizeof meta_path, "%s/session.json", out);
    snprintf(steps_s, sizeof steps_s, "%ld", steps);
    snprintf(hz_s, sizeof hz_s, "%g", hz);
    char **targv = calloc((size_t)n_pass + 16, sizeof *targv);
    if (!targv) {
        free(pass);
        return cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "session");
    }
    int tc = 0;
    targv[tc++] = "train";
    targv[tc++] = "--steps", targv[tc++] = steps_s;
    targv[tc++] = "--hz", targv[tc++] = hz_s;
    targv[tc++] = "--telemetry", targv[tc++] = tel;
    targv[tc++] = "--report-json", targv[tc++] = rep;
    targv[tc++] = "--out", targv[tc++] = run_dir;
    if (model) targv[tc++] = "--model", targv[tc++] = (char *)model;
    for (int k = 0; k < n_pass; k++) targv[tc++] = pass[k];
    targv[tc] = NULL;

    th_session_meta meta;
    th_session_meta_init(&meta);
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(meta.date, sizeof meta.date, "%Y-%m-%dT%H:%M:%SZ", &tmv);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &tmv);
    snprintf(meta.id, sizeof meta.id, "%s-%d", stamp, (int)getpid());
    snprintf(meta.model, sizeof meta.model, "%s", model ? model : "small");
    meta.steps = steps;
    meta.hz = hz;
    fprintf(stderr, "session %s: %ld steps, at most %.0f s, sampling at %g Hz, into %s\n", meta.id, steps, duration, hz,
            out);

    signal(SIGINT, ignore_early_sigint); /* until thermo train installs its own handler */
    atomic_store(&session_done, 0);
    atomic_store(&session_fired, 0);
    session_limit_s = duration;
    pthread_t timer;
    int have_timer = pthread_create(&timer, NULL, session_timer, NULL) == 0;
    uint64_t t_start = th_now_ns();
    int rc = cmd_train(tc, targv);
    atomic_store(&session_done, 1);
    if (have_timer) pthread_join(timer, NULL);
    signal(SIGINT, SIG_DFL);
    meta.duration_s = (th_now_ns() - t_start) / 1e9;
    free(targv);
    free(pass);
    if (rc == EXIT_INTERRUPTED && atomic_load(&session_fired)) {
        fprintf(stderr, "session: stopped at the --duration bound (%.0f s)\n", duration);
        snprintf(meta.stopped_by, sizeof meta.stopped_by, "duration");
        rc = EXIT_OK;
    } else if (rc == EXIT_OK) {
        snprintf(meta.stopped_by, sizeof meta.stopped_by, "steps");
    } else {
        snprintf(meta.stopped_by, sizeof meta.stopped_by, "error");
    }

    /* ambient and the sensor from the log; the plant profile where the sensor is simulated */
    th_telemetry_row *rows = NULL;
    size_t n = 0;
    if (th_telemetry_read(tel, &rows, &n) == TH_OK) {
        for (size_t i = 0; i < n; i++) {
            if (rows[i].is_step) continue;
            if (!meta.sensor[0]) snprintf(meta.sensor, sizeof meta.sensor, "%s", rows[i].source);
            if (isnan(meta.ambient_c) && (rows[i].has & TH_COL_TEMP)) {
                meta.ambient_c = rows[i].temp_c;
                snprintf(meta.ambient_how, sizeof meta.ambient_how, "first sensor sample (t %.2f s)", rows[i].t_s);
            }
        }
        th_free(rows);
    }
    if (isfinite(ambient)) {
        meta.ambient_c = ambient;
        snprintf(meta.ambient_how, sizeof meta.ambient_how, "--ambient");
    }
    meta.modeled = strncmp(meta.sensor, "sim:", 4) == 0 ? 1 : meta.sensor[0] ? 0 : -1;
    snprintf(meta.profile, sizeof meta.profile, "%s", meta.modeled == 1 ? (profile ? profile : "laptop-cpu") : "");
    if (meta.modeled == 1) {
        th_thermal_profile p;
        if (th_profile_find(meta.profile, &p) == TH_OK) {
            meta.p_idle_w = p.p_idle_w, meta.p_max_w = p.p_max_w;
            meta.r_k_per_w = p.r_k_per_w, meta.c_j_per_k = p.c_j_per_k;
        }
    }
    (void)sensor;
    th_status st = th_session_meta_write(meta_path, &meta);
    if (st != TH_OK) return cli_report(st, "session");
    fprintf(stderr, "session: %s, %s (%s data)\n", meta_path, tel, meta.modeled == 1 ? "MODELED" : "measured");
    if (rc != EXIT_OK) return rc;
    th_analysis *an = NULL;
    th_analyze_opts o = th_analyze_defaults();
    if ((st = th_analyze_path(out, &o, &an)) == TH_OK) st = th_analysis_write(an, out);
    if (st != TH_OK) {
        th_analysis_free(an);
        return cli_report(st, "session: analysis");
    }
    print_summary(an, stderr);
    fprintf(stderr, "data sheet: %s/datasheet.md (re-run with `thermo analyze %s`)\n", out, out);
    th_analysis_free(an);
    return EXIT_OK;
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
