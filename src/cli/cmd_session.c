/* cmd_session.c: `thermo session`: a monitored fine-tuning run for the coupling analysis,
 * bounded in steps and wall-clock time (th_session_run), with telemetry, session.json, the
 * run report and the data sheet in one directory. Takes every `thermo train` option. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "thermo/analyze.h"

int cmd_session(int argc, char **argv) {
    th_session_opts so = th_session_defaults();
    cli_train_args *t = th_calloc(1, sizeof *t);
    th_session_result *res = th_calloc(1, sizeof *res);
    int rc = EXIT_USAGE;
    if (!t || !res) {
        rc = cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "session");
        goto done;
    }
    cli_train_init(t);
    const cli_opt opts[] = {
        CLI_O_STR("--out", "DIR", &so.out_dir, "session directory: telemetry.csv, session.json, report.json, run/, data sheet"),
        CLI_O_DBL("--duration", "S", &so.duration_s, 1, 1e7,
                  "wall-clock bound in seconds (default 90): at S seconds the run is stopped as\n"
                  "Ctrl-C would stop it (after the current micro-batch, checkpoint saved), so the\n"
                  "session ends at min(N steps, S seconds)"),
        CLI_O_DBL("--hz", "N", &so.hz, 0.1, 1000, "sampling rate of the thermal monitor (default 1)"),
        CLI_O_DBL("--ambient", "C", &so.ambient_c, -60, 80,
                  "ambient temperature (default: the plant's, else the sensor's first sample)"),
        CLI_O_HEAD("the training job (`thermo train`'s options; --steps defaults to 200 and --batch to 1 here)"),
        {0},
    };
    cli_cmd c = {.name = "session", .synopsis = "--out DIR [--steps N] [--duration S] [--hz N] [--ambient C] [options]",
                 .tables = {opts, t->opts, t->flags.run_opts, t->flags.eco_opts}};
    if ((rc = cli_parse(&c, argc, argv)) != CLI_GO) goto done;
    rc = EXIT_USAGE;
    const char *own = t->flags.run.telemetry_path ? "--telemetry" : t->flags.report_json ? "--report-json" : NULL;
    if (own) {
        fprintf(stderr, "thermo session: %s is set by the session itself (DIR/telemetry.csv, DIR/report.json)\n", own);
        goto done;
    }
    if (!so.out_dir) {
        fprintf(stderr, "thermo session: --out DIR is required (thermo session --help)\n");
        goto done;
    }
    th_run_meta *s = &t->job.settings;
    if (!(s->has & TH_META_STEPS)) s->steps = 200, s->has |= TH_META_STEPS;
    // the manual's session is 200 steps in at most 90 s: one 64-token sequence a step is what
    // lets a CPU log enough steps for the lag analysis (at batch 8 two cores reach ~5)
    if (!(s->has & TH_META_BATCH)) s->batch = 1, s->has |= TH_META_BATCH;
    if (cli_train_ready(t, "session") != EXIT_OK) goto done;
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
    rc = cli_run_report_kept(&t->flags, "session", &res->job.figures, &units, so.out_dir);
    cli_print_analysis(res->analysis, stderr);
    fprintf(stderr, "data sheet: %s/datasheet.md (re-run with `thermo analyze %s`)\n", so.out_dir, so.out_dir);
done:
    if (res) th_analysis_free(res->analysis);
    th_free(res);
    th_free(t);
    return rc;
}

