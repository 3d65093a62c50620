/* cmd_distill.c: `thermo distill` (a student from a teacher, its footprint including the
 * teacher's) and `thermo distill-cache` (the teacher's top-k log-probabilities, once, for
 * many students). Every training option of `thermo train` applies to distill; --teacher
 * stands where train has --model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "thermo/pipeline.h"


static int parse_layers(const char *text, th_distill_job *d) {
    const char *p = text;
    d->n_layers = 0;
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 100000 || d->n_layers == TH_DISTILL_MAX_STUDENT_LAYERS || (*end && *end != ',')) {
            fprintf(stderr, "thermo distill: --student-layers '%s': a comma-separated list of block indices\n", text);
            return 0;
        }
        d->layers[d->n_layers++] = (int)v;
        p = *end ? end + 1 : end;
    }
    return d->n_layers > 0;
}

/* The footprint lines and the optional eco-benchmark, after the job. */
static int distill_finish(const cli_run_flags *rf, th_status st, th_distill_result *res, const char *bench_text,
                          const char *teacher) {
    cli_run_flags whole = *rf;
    whole.emissions_csv = NULL; // the rows go out per footprint line below
    int rc = cli_train_finish(&whole, "distill", st, &res->train);
    if (st != TH_OK && st != TH_ERR_INTERRUPTED) return rc;
    char *text = NULL;
    if (th_distill_report_text(res, &text) == TH_OK) fputs(text, stderr);
    th_free(text);
    char path[4400]; // OUT/distill_report.json, beside OUT/model
    snprintf(path, sizeof path, "%s", res->train.model_dir);
    char *slash = strrchr(path, '/');
    snprintf(slash ? slash + 1 : path, sizeof path - (size_t)(slash ? slash + 1 - path : 0), "distill_report.json");
    th_status s2 = th_distill_write_json(res, path);
    if (s2 != TH_OK) return cli_report(s2, "distill");
    fprintf(stderr, "distillation report written to %s\n", path);
    if (rf->emissions_csv) {
        if ((s2 = th_distill_append_emissions(res, &rf->factors, rf->emissions_csv)) != TH_OK)
            return cli_report(s2, "distill");
        fprintf(stderr, "emissions rows (student, teacher, pre-training when known) appended to %s\n", rf->emissions_csv);
    }
    if (rc != EXIT_OK || !bench_text || st != TH_OK) return rc;
    char *held = NULL;
    size_t len = 0;
    if ((s2 = th_read_file(bench_text, &held, &len)) != TH_OK) return cli_report(s2, "distill --bench-eco");
    th_bench_eco_opts bo = th_bench_eco_defaults();
    bo.factors = &rf->factors;
    const char *models[2] = {teacher, res->train.model_dir};
    th_bench_eco_result *br = NULL;
    s2 = th_bench_eco(models, 2, held, len, &bo, &br);
    th_free(held);
    if (s2 == TH_OK && th_bench_eco_table(br, &text) == TH_OK) {
        fprintf(stderr, "\n== quality per joule: teacher vs student ==\n%s", text);
        th_free(text);
    }
    th_bench_eco_free(br);
    return s2 == TH_OK ? EXIT_OK : cli_report(s2, "distill --bench-eco");
}

int cmd_distill(int argc, char **argv) {
    th_distill_job *d = th_calloc(1, sizeof *d);
    cli_train_args *t = th_calloc(1, sizeof *t);
    th_distill_result *res = th_calloc(1, sizeof *res);
    int rc = EXIT_USAGE;
    if (!d || !t || !res) {
        rc = cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "distill");
        goto done;
    }
    *d = th_distill_job_defaults();
    cli_train_init(t);
    const char *bench_text = NULL, *layers = NULL, *model = NULL;
    double temperature = d->loss.temperature, a_kl = d->loss.alpha_kl, a_ce = d->loss.alpha_ce,
           a_cos = d->loss.alpha_cos;
    int mode = TH_TEACHER_INLOOP;
    static const char *const mode_names[] = {"inloop", "cache", NULL};
    static const int mode_values[] = {TH_TEACHER_INLOOP, TH_TEACHER_CACHE};
    const cli_opt opts[] = {
        CLI_O_STR("--teacher", "DIR|FILE", &t->job.model, "the teacher model (its tokenizer is the student's)"),
        CLI_O_STR("--model", "-", &model, "not used: the teacher is --teacher"),
        CLI_O_STR("--student-layers", "LIST", &layers,
                  "teacher blocks the student starts from, e.g. 0,2,4,7,9,11 (default: that\n"
                  "for 12 layers, else every other block); embeddings and final norm copied"),
        CLI_O_STR("--student-config", "SPEC", &d->student_config,
                  "instead: 'random' (the blocks' shape, random init), a preset or a model path"),
        CLI_O_DBL("--temperature", "T", &temperature, 1e-3, 1e3, "softmax temperature of the KL term (default 2)"),
        CLI_O_DBL("--alpha-kl", "X", &a_kl, 0, 1e3, "weight of the KL term (default 0.5)"),
        CLI_O_DBL("--alpha-ce", "X", &a_ce, 0, 1e3, "weight of the cross-entropy on the data (default 0.5)"),
        CLI_O_DBL("--alpha-cos", "X", &a_cos, 0, 1e3, "weight of 1 - cosine of the last hidden states (default 0)"),
        CLI_O_CHOICE("--teacher-mode", &mode, mode_names, mode_values,
                     "inloop (default: the teacher's forward each micro-batch) or cache"),
        CLI_O_STR("--cache", "FILE", &d->cache_path, "the teacher cache (thermo distill-cache) for --teacher-mode cache"),
        CLI_O_DBL("--cache-students", "N", &d->cache_students, 1, 1e9,
                  "students sharing the cache: each is charged 1/N of it (default 1)"),
        CLI_O_DBL("--teacher-pretraining-kwh", "X", &d->pretraining_kwh, 0, 1e12,
                  "the teacher's pre-training energy (default: unknown, reported so)"),
        CLI_O_DBL("--pretraining-share", "F", &d->pretraining_share, 0, 1,
                  "the share of it charged to this student (default 1)"),
        CLI_O_STR("--bench-eco", "TEXT", &bench_text,
                  "afterwards, rate teacher and student by the eco-benchmark on held-out TEXT"),
        CLI_O_HEAD("the training job (`thermo train`'s options)"),
        {0},
    };
    cli_cmd c = {.name = "distill", .synopsis = "--teacher DIR --out DIR [--data PATH] [options]",
                 .tables = {opts, t->opts, t->flags.run_opts, t->flags.eco_opts},
                 .epilog = "writes OUT/model (the student), OUT/distill_report.json, OUT/distill_steps.csv (the teacher's\n"
                           "energy per step); --emissions-csv gets one row per footprint line.\n"};
    if ((rc = cli_parse(&c, argc, argv)) != CLI_GO) goto done;
    rc = EXIT_USAGE;
    if (model) {
        fprintf(stderr, "thermo distill: the teacher is --teacher (the student comes from its blocks)\n");
        goto done;
    }
    if (layers && !parse_layers(layers, d)) goto done;
    d->loss.temperature = (float)temperature, d->loss.alpha_kl = (float)a_kl;
    d->loss.alpha_ce = (float)a_ce, d->loss.alpha_cos = (float)a_cos;
    d->mode = (th_teacher_mode)mode;
    if (d->mode == TH_TEACHER_CACHE && !d->cache_path) {
        fprintf(stderr, "thermo distill: --teacher-mode cache needs --cache FILE\n");
        goto done;
    }
    if (d->cache_path) d->mode = TH_TEACHER_CACHE;
    if (!t->job.model) {
        fprintf(stderr, "thermo distill: --teacher DIR is required\n");
        goto done;
    }
    if ((rc = cli_train_ready(t, "distill")) != EXIT_OK) goto done;
    d->job = t->job;
    cli_train_signals(1);
    th_status st = th_distill_run(d, res);
    cli_train_signals(0);
    rc = distill_finish(&t->flags, st, res, bench_text, d->job.model);
done:
    th_free(res);
    th_free(t);
    th_free(d);
    return rc;
}

int cmd_distill_cache(int argc, char **argv) {
    cli_run_flags *rf = th_calloc(1, sizeof *rf);
    if (!rf) return cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "distill-cache");
    cli_run_flags_init(rf);
    th_distill_cache_opts o = th_distill_cache_defaults();
    const char *data[TH_TRAIN_JOB_MAX_DATA];
    int n_data = 0, rc = EXIT_USAGE;
    const cli_opt opts[] = {
        CLI_O_STR("--teacher", "DIR|FILE", &o.teacher, "the teacher model"),
        CLI_O_STR("--out", "FILE", &o.out_path, "the cache file"),
        CLI_O_REPEAT("--data", "PATH", data, TH_TRAIN_JOB_MAX_DATA, &n_data,
                     "text, a directory of .txt or a shard (default: the embedded corpus); may repeat"),
        CLI_O_INT("--top-k", "K", &o.top_k, 1, 65536, "log-probabilities kept per token (default 64)"),
        CLI_O_INT("--seq", "T", &o.seq, 1, 1 << 20, "window length (default 64)"),
        CLI_O_INT("--batch", "B", &o.batch, 1, 65536, "windows per teacher forward (default 8)"),
        CLI_O_INT("--save-every", "N", &o.save_every, 0, 1 << 30, "publish the partial cache every N batches (default 64)"),
        CLI_O_FLAG("--resume", &o.resume, "continue a partial cache (same teacher, data, k, seq)"),
        {0},
    };
    cli_cmd c = {.name = "distill-cache", .synopsis = "--teacher DIR --out FILE [--data PATH] [options]",
                 .tables = {opts, rf->run_opts, rf->eco_opts},
                 .epilog = "writes the teacher's top-k log-probabilities for every window of the train split (fp16 values,\n"
                           "16-bit ids, checksummed, atomic), the energy it took in the header; Ctrl-C keeps the windows\n"
                           "done (--resume).\n"};
    if ((rc = cli_parse(&c, argc, argv)) != CLI_GO) goto done;
    rc = EXIT_USAGE;
    if (!o.teacher || !o.out_path) {
        fprintf(stderr, "thermo distill-cache: --teacher and --out are required\n");
        goto done;
    }
    if ((rc = cli_eco_resolve(rf, "distill-cache")) != EXIT_OK) goto done;
    o.data = n_data ? data : NULL;
    o.n_data = (size_t)n_data;
    o.run = rf->run;
    o.run.factors = &rf->factors;
    o.should_stop = cli_stop_requested;
    o.on_run_started = cli_watch_run;
    th_distill_cache_result res;
    cli_train_signals(1);
    th_status st = th_distill_cache_run(&o, &res);
    cli_train_signals(0);
    if (st != TH_OK) rc = cli_report(st, "distill-cache");
    if (st == TH_OK || st == TH_ERR_INTERRUPTED) {
        const th_tcache_header *h = &res.header;
        fprintf(stderr, "cache %s: %llu of %llu windows x %u tokens, top-%u (%u B/token); %.0f tokens scored now; "
                        "making it took %.1f J, %.4f g CO2e, %.3f mL water over %.1f s in all\n",
                o.out_path, (unsigned long long)h->windows_done, (unsigned long long)h->n_windows, h->seq, h->k,
                4 * h->k, res.tokens, h->energy_j, h->co2e_g, h->water_ml, h->seconds);
        cli_run_units u = {res.tokens, 0, st == TH_OK ? "completed" : "interrupted", 0, NULL};
        if (res.have_figures) {
            int r2 = cli_run_report(rf, "distill-cache", &res.figures, &u);
            if (st == TH_OK) rc = r2;
        }
    }
done:
    th_free(rf);
    return rc;
}
