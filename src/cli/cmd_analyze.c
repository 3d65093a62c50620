/* cmd_analyze.c: `thermo analyze` (the data sheet of a session or a telemetry log, built by
 * th_analyze_path and written by th_analysis_write) and `thermo repro` (do several sessions'
 * coupling figures agree, th_repro_compare); and the summary lines both print. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "thermo/analyze.h"

void cli_print_analysis(const th_analysis *a, FILE *f) {
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
    int json = 0, n_pos = 0;
    th_analyze_opts o = th_analyze_defaults();
    const cli_opt opts[] = {
        CLI_O_FLAG("--json", &json, "print the data sheet as JSON on stdout"),
        CLI_O_STR("--out", "DIR", &out_dir,
                  "write datasheet.md, datasheet.json, thermal.svg, rle_grad.svg, xcorr.svg\n"
                  "(default: the session directory, or the telemetry file's directory)"),
        CLI_O_DBL("--ambient", "C", &o.ambient_c, -60, 150,
                  "ambient temperature (default: session.json's recorded one, else fitted)"),
        CLI_O_STR("--steps", "FILE", &o.steps_path,
                  "a training log (CSV or JSONL) with a time and a gradient-norm column,\n"
                  "aligned to the sensor log by wall time"),
        CLI_O_STR("--time-col", "NAME", &o.time_col, "its time column (default: timestamp, _timestamp, time, ...)"),
        CLI_O_STR("--grad-col", "NAME", &o.grad_col, "its gradient-norm column (default: grad_norm, ...)"),
        CLI_O_DBL("--offset", "S", &o.step_offset_s, -1e9, 1e9, "the same as --step-offset"),
        CLI_O_DBL("--p-ref", "W", &o.p_ref_w, 1e-6, 1e6, "P_ref of A_load (default: the profile's p_max_w, else the highest power)"),
        CLI_O_DBL("--p-idle", "W", &o.p_idle_w, 0, 1e6,
                  "P_idle of eta_p (default: the profile's p_idle_w, else the 5th percentile)"),
        CLI_O_DBL("--step-offset", "S", &o.step_offset_s, -1e9, 1e9,
                  "add S seconds to step rows' times (a step log on a shifted clock)"),
        CLI_O_DBL("--window", "S", &o.window_s, 2, 3600, "eta_stability window (default 10)"),
        {0},
    };
    cli_cmd c = {.name = "analyze", .synopsis = "PATH [--json] [--out DIR] [options]",
                 .about = "  PATH  a session directory (telemetry.csv, session.json) or a telemetry CSV/JSONL\n",
                 .tables = {opts}, .pos = &path, .max_pos = 1, .n_pos = &n_pos, .pos_name = "PATH"};
    int rc = cli_parse(&c, argc, argv);
    if (rc != CLI_GO) return rc;
    if (!path) {
        fprintf(stderr, "thermo analyze: which session or telemetry file? (thermo analyze --help)\n");
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
    rc = EXIT_OK;
    if (!cli_mkdir_p(dir)) {
        fprintf(stderr, "thermo analyze: cannot create %s\n", dir);
        rc = EXIT_FAILURE_RUN;
    } else if ((st = th_analysis_write(an, dir)) != TH_OK) {
        rc = cli_report(st, "analyze");
    }
    if (rc == EXIT_OK) {
        cli_print_analysis(an, stderr);
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
 * thermo repro */

static double finite_or_0(double v) { return isfinite(v) ? v : 0; }

int cmd_repro(int argc, char **argv) {
    int json = 0, n = 0;
    const char **dirs = th_calloc((size_t)argc, sizeof *dirs);
    if (!dirs) return cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "repro");
    const cli_opt opts[] = {CLI_O_FLAG("--json", &json, "print the figures and the verdict as JSON on stdout"), {0}};
    cli_cmd c = {.name = "repro", .synopsis = "DIR... [--json]",
                 .about = "  analyzes sessions run under identical conditions and says whether the coupling figures\n"
                          "  agree within +-20 % (t_lag within +-1 s), with the spread\n",
                 .tables = {opts}, .pos = dirs, .max_pos = argc, .n_pos = &n, .pos_name = "DIR"};
    int rc = cli_parse(&c, argc, argv);
    if (rc != CLI_GO) {
        th_free(dirs);
        return rc;
    }
    if (n < 2) {
        fprintf(stderr, "thermo repro: needs at least two session directories\n");
        th_free(dirs);
        return EXIT_USAGE;
    }
    th_analysis **an = th_calloc((size_t)n, sizeof *an);
    rc = an ? EXIT_OK : cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "repro");
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
        json_t *figs = json_object();
        for (int f = 0; f < TH_REPRO_FIGURES; f++) {
            const th_repro_figure *g = &r.fig[f];
            const th_an_figure *d = &an[0]->fig[g->id];
            const char *verdict = g->agree < 0 ? "n/a (< 2 values)" : g->agree ? "yes" : "NO";
            if (g->id == TH_AN_T_LAG)
                fprintf(stderr, "%-30s %10.4g %10.4g %10.4g %6.1f s %s\n", d->label, g->mean, g->min, g->max, g->spread, verdict);
            else
                fprintf(stderr, "%-30s %10.4g %10.4g %10.4g %7.1f%% %s\n", d->label, g->mean, g->min, g->max, 100 * g->spread, verdict);
            json_object_set_new(figs, d->key,
                                json_pack("{s:f, s:f, s:f, s:f, s:i, s:o}", "mean", finite_or_0(g->mean), "min",
                                          finite_or_0(g->min), "max", finite_or_0(g->max), "spread",
                                          finite_or_0(g->spread), "n", g->n, "agree",
                                          g->agree < 0 ? json_null() : json_boolean(g->agree)));
        }
        char missing[256] = "";
        for (int f = 0; f < TH_REPRO_FIGURES; f++)
            if (r.fig[f].agree < 0)
                snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s", missing[0] ? ", " : "",
                         an[0]->fig[r.fig[f].id].label);
        if (!r.all_agree)
            fprintf(stderr, "verdict: the figures DISAGREE\n");
        else if (r.not_compared)
            fprintf(stderr, "verdict: the figures compared agree within +-20 %%; not compared (< 2 values): %s\n",
                    missing);
        else
            fprintf(stderr, "verdict: the coupling figures agree within +-20 %%\n");
        json_t *doc = json_pack("{s:i, s:o, s:b, s:i}", "sessions", n, "figures", figs, "all_agree", r.all_agree,
                                "not_compared", r.not_compared);
        if (json) rc = cli_print_json(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(8), "repro");
        else json_decref(doc);
    }
    for (int i = 0; an && i < n; i++) th_analysis_free(an[i]);
    th_free(an);
    th_free(dirs);
    return rc;
}
