/* cmd_distill.c: `thermo distill` (a student from a teacher, its footprint including the
 * teacher's) and `thermo distill-cache` (the teacher's top-k log-probabilities, once, for
 * many students). Every training option of `thermo train` applies to distill; --teacher
 * stands where train has --model. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "thermo/pipeline.h"

static void distill_usage(FILE *f) {
    fprintf(f,
            "usage: thermo distill --teacher DIR --out DIR [--data PATH] [options] [training options]\n"
            "  --teacher DIR|FILE      the teacher model (its tokenizer is the student's)\n"
            "  --student-layers LIST   teacher blocks the student starts from, e.g. 0,2,4,7,9,11 (default: that\n"
            "                          for 12 layers, else every other block); embeddings and final norm copied\n"
            "  --student-config SPEC   instead: 'random' (the blocks' shape, random init), a preset or a model path\n"
            "  --temperature T         softmax temperature of the KL term (default 2)\n"
            "  --alpha-kl X --alpha-ce X --alpha-cos X   loss weights (default 0.5, 0.5, 0)\n"
            "  --teacher-mode MODE     inloop (default: the teacher's forward each micro-batch) or cache\n"
            "  --cache FILE            the teacher cache (thermo distill-cache) for --teacher-mode cache\n"
            "  --cache-students N      students sharing the cache: each is charged 1/N of it (default 1)\n"
            "  --teacher-pretraining-kwh X   the teacher's pre-training energy (default: unknown, reported so)\n"
            "  --pretraining-share F   the share of it charged to this student (default 1)\n"
            "  --bench-eco TEXT        afterwards, rate teacher and student by the eco-benchmark on held-out TEXT\n"
            "writes OUT/model (the student), OUT/distill_report.json, OUT/distill_steps.csv (the teacher's\n"
            "energy per step); --emissions-csv gets one row per footprint line. Training options: thermo train --help\n");
}

static void cache_usage(FILE *f) {
    fprintf(f, "usage: thermo distill-cache --teacher DIR --out FILE [--data PATH] [--top-k 64] [--seq 64] [--batch 8]\n"
               "                            [--resume] [--save-every N] [monitored-run options]\n"
               "writes the teacher's top-k log-probabilities for every window of the train split (fp16 values, 16-bit\n"
               "ids, checksummed, atomic), the energy it took in the header; Ctrl-C keeps the windows done (--resume).\n%s",
            cli_run_flags_help());
}

static volatile sig_atomic_t stop_requested;
static th_run *active_run;
static void on_sigint(int sig) {
    (void)sig;
    stop_requested = 1;
    th_run_interrupt(active_run);
}
static int should_stop(void *user) {
    (void)user;
    return stop_requested;
}
static void on_run_started(th_run *run, void *user) {
    (void)user;
    active_run = run;
}

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
    char **rest = th_calloc((size_t)argc + 1, sizeof *rest);
    int rc = EXIT_USAGE, n = 0;
    const char *bench_text = NULL;
    if (!d || !t || !res || !rest) {
        rc = cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "distill");
        goto done;
    }
    *d = th_distill_job_defaults();
    rest[n++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x = 0;
        int ok = 1, mine = 1;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            distill_usage(stdout);
            rc = EXIT_OK;
            goto done;
        }
        if (!strcmp(a, "--teacher") && v) rest[n++] = "--model", rest[n++] = argv[++i];
        else if (!strcmp(a, "--model")) {
            fprintf(stderr, "thermo distill: the teacher is --teacher (the student comes from its blocks)\n");
            goto done;
        } else if (!strcmp(a, "--student-layers") && v) ok = parse_layers(argv[++i], d);
        else if (!strcmp(a, "--student-config") && v) d->student_config = argv[++i];
        else if (!strcmp(a, "--temperature") && v && (ok = cli_parse_float("distill", a, argv[++i], 1e-3, 1e3, &x)))
            d->loss.temperature = (float)x;
        else if (!strcmp(a, "--alpha-kl") && v && (ok = cli_parse_float("distill", a, argv[++i], 0, 1e3, &x)))
            d->loss.alpha_kl = (float)x;
        else if (!strcmp(a, "--alpha-ce") && v && (ok = cli_parse_float("distill", a, argv[++i], 0, 1e3, &x)))
            d->loss.alpha_ce = (float)x;
        else if (!strcmp(a, "--alpha-cos") && v && (ok = cli_parse_float("distill", a, argv[++i], 0, 1e3, &x)))
            d->loss.alpha_cos = (float)x;
        else if (!strcmp(a, "--teacher-mode") && v) {
            const char *m = argv[++i];
            if (!strcmp(m, "inloop")) d->mode = TH_TEACHER_INLOOP;
            else if (!strcmp(m, "cache")) d->mode = TH_TEACHER_CACHE;
            else {
                fprintf(stderr, "thermo distill: --teacher-mode must be inloop or cache, got '%s'\n", m);
                ok = 0;
            }
        } else if (!strcmp(a, "--cache") && v) d->cache_path = argv[++i];
        else if (!strcmp(a, "--cache-students") && v)
            ok = cli_parse_float("distill", a, argv[++i], 1, 1e9, &d->cache_students);
        else if (!strcmp(a, "--teacher-pretraining-kwh") && v)
            ok = cli_parse_float("distill", a, argv[++i], 0, 1e12, &d->pretraining_kwh);
        else if (!strcmp(a, "--pretraining-share") && v)
            ok = cli_parse_float("distill", a, argv[++i], 0, 1, &d->pretraining_share);
        else if (!strcmp(a, "--bench-eco") && v) bench_text = argv[++i];
        else mine = 0;
        if (!ok) goto done;
        if (!mine) rest[n++] = argv[i];
    }
    if (d->mode == TH_TEACHER_CACHE && !d->cache_path) {
        fprintf(stderr, "thermo distill: --teacher-mode cache needs --cache FILE\n");
        goto done;
    }
    if (d->cache_path) d->mode = TH_TEACHER_CACHE;
    rc = cli_train_parse(n, rest, "distill", t);
    if (rc != 0) {
        rc = rc > 0 ? EXIT_OK : EXIT_USAGE;
        goto done;
    }
    if (!t->job.model) {
        fprintf(stderr, "thermo distill: --teacher DIR is required\n");
        rc = EXIT_USAGE;
        goto done;
    }
    d->job = t->job;
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    th_status st = th_distill_run(d, res);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    active_run = NULL;
    rc = distill_finish(&t->flags, st, res, bench_text, d->job.model);
done:
    th_free(rest);
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
    long v_long = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cache_usage(stdout);
            rc = EXIT_OK;
            goto done;
        }
        int r = cli_run_flag(rf, "distill-cache", argc, argv, &i);
        if (r < 0) goto done;
        if (r > 0) continue;
        if (!strcmp(a, "--resume")) {
            o.resume = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "thermo distill-cache: unknown option or missing value: %s\n", a);
            goto done;
        }
        const char *v = argv[++i];
        int ok = 1;
        if (!strcmp(a, "--teacher")) o.teacher = v;
        else if (!strcmp(a, "--out")) o.out_path = v;
        else if (!strcmp(a, "--data") && n_data < TH_TRAIN_JOB_MAX_DATA) data[n_data++] = v;
        else if (!strcmp(a, "--top-k") && (ok = cli_parse_int("distill-cache", a, v, 1, 65536, &v_long))) o.top_k = (int)v_long;
        else if (!strcmp(a, "--seq") && (ok = cli_parse_int("distill-cache", a, v, 1, 1 << 20, &v_long))) o.seq = (int)v_long;
        else if (!strcmp(a, "--batch") && (ok = cli_parse_int("distill-cache", a, v, 1, 65536, &v_long))) o.batch = (int)v_long;
        else if (!strcmp(a, "--save-every") && (ok = cli_parse_int("distill-cache", a, v, 0, 1 << 30, &v_long)))
            o.save_every = (int)v_long;
        else if (ok) {
            fprintf(stderr, "thermo distill-cache: unknown option %s\n", a);
            cache_usage(stderr);
            goto done;
        }
        if (!ok) goto done;
    }
    if (!o.teacher || !o.out_path) {
        fprintf(stderr, "thermo distill-cache: --teacher and --out are required\n");
        goto done;
    }
    if ((rc = cli_eco_resolve(rf, "distill-cache")) != EXIT_OK) goto done;
    o.data = n_data ? data : NULL;
    o.n_data = (size_t)n_data;
    o.run = rf->run;
    o.run.factors = &rf->factors;
    o.should_stop = should_stop;
    o.on_run_started = on_run_started;
    th_distill_cache_result res;
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    th_status st = th_distill_cache_run(&o, &res);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    active_run = NULL;
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
