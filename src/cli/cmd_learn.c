/* cmd_learn.c: `thermo learn`: stateful continual fine-tuning of a trained state directory
 * (th_learn_run): an update on new data with replay, gated by measured forgetting and
 * promoted atomically; --rollback, --discard; --watch DIR scores incoming text for drift and
 * runs an update only when the energy budget and the thermal margin allow. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "thermo/pipeline.h"

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

static void learn_usage(FILE *f) {
    fprintf(f,
            "usage: thermo learn --state DIR --data NEW [options]      one update, gated by forgetting\n"
            "       thermo learn --state DIR --continue                finish a pending update\n"
            "       thermo learn --state DIR --rollback | --discard    previous model back / drop a pending update\n"
            "       thermo learn --state DIR --watch INCOMING [--data NEW]   drift check, then an update if allowed\n"
            "  --state DIR              a `thermo train --out DIR` directory, or one earlier updates changed\n"
            "  --data PATH              new text (file or directory of .txt; repeatable), or a token shard with --val-data\n"
            "  --replay-from OLD        old data for the replay reservoir and the held-out old slice\n"
            "                           (default DIR/data/train.bin and val.bin)\n"
            "  --replay X               share of each batch's rows from the reservoir, [0, 1) (default 0.05)\n"
            "  --replay-windows N       reservoir size in windows (default 256)\n"
            "  --steps N | --tokens N   the update's length (default 100 steps)\n"
            "  --stop-after N           stop after N of its steps; --continue resumes it bit-identically\n"
            "  --lr X --batch B --seq T --grad-accum K --warmup N --seed S --weight-decay X --grad-clip X\n"
            "                           (default: the state's recorded settings; warmup 1%% of the steps, then cosine)\n"
            "  --max-forgetting X       tolerated relative rise of old-data perplexity (default 0.02)\n"
            "  --gain-ratio K           beyond it, promote only if the new-data loss fell >= K x the old-data loss\n"
            "                           rise, in nats per token (default 10; 0: never beyond the tolerance)\n"
            "  --ewc LAMBDA             EWC penalty (diagonal Fisher over --ewc-windows old windows, default 256)\n"
            "  --l2-init LAMBDA         L2 penalty towards the current weights\n"
            "  --eval-batches N         batches per perplexity slice (default 8; 0: all)\n"
            "  --save-every N           pending checkpoint every N steps (default: at the end and on Ctrl-C)\n"
            "  --threads N              compute threads\n"
            "  --spike-guard MODE       th_train's loss-spike guard: stop (default), warn or off\n"
            "drift watch (--watch INCOMING):\n"
            "  --ph-threshold X --ph-delta X   Page-Hinkley (River's defaults 50, 0.005; min 30 values)\n"
            "  --ks-window N --ks-reference N --ks-p X   KS test against the frozen old slice (256, 512, 0.05)\n"
            "  --update-budget-j J      run the update only if its expected energy fits (default: no budget)\n"
            "  --min-margin-c C         ... and the thermal margin is at least C (default 5)\n"
            "  without --data the update learns from the watched files from the one where drift fired on\n"
            "exit codes: 0 ok (an update refused by the gate is ok: the report says why), 3 bad input,\n"
            "            2 bad command line, 130 interrupted (the update stays pending)\n%s",
            cli_run_flags_help());
}

typedef struct {
    cli_run_flags flags;
    th_learn_opts o;
    const char *data[TH_TRAIN_JOB_MAX_DATA];
    int n_data;
    int rollback, discard;
    const char *watch;
    th_drift_config drift;
    th_update_gate_config gate;
} learn_args;

static int parse(int argc, char **argv, learn_args *a) {
    const char *cmd = "learn";
    cli_run_flags *rf = &a->flags;
    cli_run_flags_init(rf);
    a->o = th_learn_defaults();
    a->drift = th_drift_defaults();
    a->gate.min_margin_c = 5.0;
    th_learn_opts *o = &a->o;
    th_run_meta *s = &o->settings;
    long threads = 0, v = 0;
    double x = 0;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            learn_usage(stdout);
            return 1;
        }
        int r = cli_run_flag(rf, cmd, argc, argv, &i);
        if (r < 0) return -1;
        if (r > 0) continue;
        if (!strcmp(f, "--continue")) { o->resume = 1; continue; }
        if (!strcmp(f, "--rollback")) { a->rollback = 1; continue; }
        if (!strcmp(f, "--discard")) { a->discard = 1; continue; }
        if (i + 1 >= argc || strncmp(f, "--", 2) != 0) {
            fprintf(stderr, "thermo learn: unknown option or missing value: %s\n", f);
            learn_usage(stderr);
            return -1;
        }
        const char *val = argv[++i];
        int ok = 1;
        if (!strcmp(f, "--state")) o->state_dir = val;
        else if (!strcmp(f, "--data")) {
            if (a->n_data == TH_TRAIN_JOB_MAX_DATA) {
                fprintf(stderr, "thermo learn: at most %d --data paths\n", TH_TRAIN_JOB_MAX_DATA);
                return -1;
            }
            a->data[a->n_data++] = val;
        } else if (!strcmp(f, "--val-data")) o->val_shard = val;
        else if (!strcmp(f, "--replay-from")) o->replay_from = val;
        else if (!strcmp(f, "--watch")) a->watch = val;
        else if (!strcmp(f, "--replay")) ok = cli_parse_float(cmd, f, val, 0, 0.999999, &o->replay);
        else if (!strcmp(f, "--replay-windows") && (ok = cli_parse_int(cmd, f, val, 1, 1 << 20, &v))) o->replay_windows = (int)v;
        else if (!strcmp(f, "--steps")) ok = cli_parse_int(cmd, f, val, 1, 100000000, &o->steps);
        else if (!strcmp(f, "--tokens")) ok = cli_parse_int(cmd, f, val, 1, 0x7fffffffffffL, &o->tokens);
        else if (!strcmp(f, "--stop-after")) ok = cli_parse_int(cmd, f, val, 1, 100000000, &o->stop_after);
        else if (!strcmp(f, "--max-forgetting")) ok = cli_parse_float(cmd, f, val, 0, 1e6, &o->max_forgetting);
        else if (!strcmp(f, "--gain-ratio")) ok = cli_parse_float(cmd, f, val, 0, 1e9, &o->gain_ratio);
        else if (!strcmp(f, "--ewc")) ok = cli_parse_float(cmd, f, val, 0, 1e12, &o->ewc_lambda);
        else if (!strcmp(f, "--ewc-windows") && (ok = cli_parse_int(cmd, f, val, 1, 1 << 20, &v))) o->ewc_windows = (int)v;
        else if (!strcmp(f, "--l2-init")) ok = cli_parse_float(cmd, f, val, 0, 1e12, &o->l2_init_lambda);
        else if (!strcmp(f, "--eval-batches") && (ok = cli_parse_int(cmd, f, val, 0, 1 << 20, &v))) o->eval_batches = (int)v;
        else if (!strcmp(f, "--save-every") && (ok = cli_parse_int(cmd, f, val, 0, 100000000, &v))) o->save_every = (int)v;
        else if (!strcmp(f, "--threads")) ok = cli_parse_int(cmd, f, val, 1, 1024, &threads);
        else if (!strcmp(f, "--spike-guard")) {
            if (th_guard_mode_parse(val, &o->spike_mode) != TH_OK) {
                fprintf(stderr, "thermo learn: --spike-guard must be stop, warn or off, got '%s'\n", val);
                return -1;
            }
        }
        else if (!strcmp(f, "--ph-threshold")) ok = cli_parse_float(cmd, f, val, 0, 1e9, &a->drift.ph.threshold);
        else if (!strcmp(f, "--ph-delta")) ok = cli_parse_float(cmd, f, val, 0, 1e9, &a->drift.ph.delta);
        else if (!strcmp(f, "--ks-window") && (ok = cli_parse_int(cmd, f, val, 8, 1 << 24, &v))) a->drift.window = (size_t)v;
        else if (!strcmp(f, "--ks-reference") && (ok = cli_parse_int(cmd, f, val, 8, 1 << 24, &v))) a->drift.reference = (size_t)v;
        else if (!strcmp(f, "--ks-p")) ok = cli_parse_float(cmd, f, val, 1e-12, 0.5, &a->drift.p_value);
        else if (!strcmp(f, "--update-budget-j")) ok = cli_parse_float(cmd, f, val, 0, 1e15, &a->gate.energy_budget_j);
        else if (!strcmp(f, "--min-margin-c")) ok = cli_parse_float(cmd, f, val, -1e3, 1e3, &a->gate.min_margin_c);
        else if (!strcmp(f, "--lr") && (ok = cli_parse_float(cmd, f, val, 0, 1e3, &x))) { s->lr = x; s->has |= TH_META_LR; }
        else if (!strcmp(f, "--weight-decay") && (ok = cli_parse_float(cmd, f, val, 0, 10, &x))) { s->weight_decay = x; s->has |= TH_META_WEIGHT_DECAY; }
        else if (!strcmp(f, "--grad-clip") && (ok = cli_parse_float(cmd, f, val, 0, 1e9, &x))) { s->grad_clip = x; s->has |= TH_META_GRAD_CLIP; }
        else if (!strcmp(f, "--batch") && (ok = cli_parse_int(cmd, f, val, 1, 65536, &v))) { s->batch = (int)v; s->has |= TH_META_BATCH; }
        else if (!strcmp(f, "--seq") && (ok = cli_parse_int(cmd, f, val, 1, 1 << 20, &v))) { s->seq = (int)v; s->has |= TH_META_SEQ; }
        else if (!strcmp(f, "--grad-accum") && (ok = cli_parse_int(cmd, f, val, 1, 65536, &v))) { s->grad_accum = (int)v; s->has |= TH_META_GRAD_ACCUM; }
        else if (!strcmp(f, "--warmup") && (ok = cli_parse_int(cmd, f, val, 0, 100000000, &v))) { s->warmup = (int)v; s->has |= TH_META_WARMUP; }
        else if (!strcmp(f, "--seed") && (ok = cli_parse_int(cmd, f, val, 0, 0x7fffffffffffffffL, &v))) { s->seed = (uint64_t)v; s->has |= TH_META_SEED; }
        else if (ok) {
            fprintf(stderr, "thermo learn: unknown option %s\n", f);
            learn_usage(stderr);
            return -1;
        }
        if (!ok) return -1;
    }
    if (threads > 0) th_threads_set((int)threads);
    if (cli_eco_resolve(rf, cmd) != EXIT_OK) return -1;
    o->data = a->n_data ? a->data : NULL;
    o->n_data = (size_t)a->n_data;
    o->budget = rf->budget;
    o->run = rf->run;
    o->run.factors = &rf->factors;
    o->should_stop = should_stop;
    o->on_run_started = on_run_started;
    return 0;
}

/* Conflicts the library cannot see (the modes of this command): exit 3 as bad input. */
static int conflicts(const learn_args *a) {
    int modes = a->rollback + a->discard + (a->o.resume ? 1 : 0) + (a->watch ? 1 : 0);
    const char *why = NULL;
    if (!a->o.state_dir) why = "--state DIR is required";
    else if (modes > 1) why = "--rollback, --discard, --continue and --watch are different modes: give one";
    else if ((a->rollback || a->discard) && (a->n_data || a->o.steps || a->o.tokens || a->o.replay_from))
        why = "--rollback and --discard take no update options";
    if (!why) return 0;
    fprintf(stderr, "thermo learn: %s\n", why);
    return 1;
}

static void print_step(const th_step_record *r, void *user) {
    (void)user;
    if (r->step % 10 == 0 || r->step == r->total_steps)
        fprintf(stderr, "update step %5ld/%ld | loss %.4f | grad norm %.3f | lr %.2e\n", r->step, r->total_steps, r->loss,
                r->grad_norm, r->lr);
}

static int finish(const learn_args *a, th_status st, const th_learn_result *r) {
    if (st != TH_OK) {
        int rc = cli_report(st, "learn");
        if (st == TH_ERR_INTERRUPTED && r->have_figures) {
            cli_run_units part = {(double)r->train.tokens, (double)r->steps_done, "interrupted", 0, NULL};
            cli_run_report(&a->flags, "learn (interrupted)", &r->figures, &part);
        }
        return rc;
    }
    if (r->pending) {
        fprintf(stderr, "update pending at step %ld of %ld (--continue resumes it); the current model is unchanged\n",
                r->steps_done, r->steps_total);
    } else {
        fprintf(stderr,
                "forgetting: held-out old perplexity %.3f -> %.3f (%+.2f %%), new %.3f -> %.3f (gain %+.2f %%)\n"
                "update: %ld steps, %ld tokens (%ld replay rows), %.1f J, %.4f g CO2e, %.3f mL water, %.1f s\n",
                r->ppl_old_before, r->ppl_old_after, 100 * r->forgetting, r->ppl_new_before, r->ppl_new_after,
                100 * r->new_gain, r->steps_total, r->tokens, r->replay_rows, r->energy_j, r->co2e_g, r->water_ml,
                r->seconds);
        if (isfinite(r->j_per_ppl))
            fprintf(stderr, "cost per unit of new-data perplexity recovered: %.2f J, %.5f g CO2e\n", r->j_per_ppl,
                    r->co2e_g_per_ppl);
        else
            fprintf(stderr, "cost per unit of new-data perplexity recovered: none recovered\n");
        fprintf(stderr, "gate: %s\ncurrent model: version %ld\n", r->verdict, r->version);
    }
    if (!r->have_figures) return EXIT_OK;
    cli_run_units units = {(double)r->train.tokens, (double)(r->train.steps_done), r->pending ? "pending" : "completed",
                           0, NULL};
    return cli_run_report(&a->flags, "learn", &r->figures, &units);
}

static int run_watch(learn_args *a) {
    th_learn_watch_opts w = th_learn_watch_defaults();
    w.state_dir = a->o.state_dir;
    w.watch_dir = a->watch;
    w.drift = a->drift;
    w.seq = (a->o.settings.has & TH_META_SEQ) ? a->o.settings.seq : 0;
    w.run = a->o.run;
    th_learn_watch_result wr;
    th_status st = th_learn_watch(&w, &wr);
    if (st != TH_OK) return cli_report(st, "learn --watch");
    fprintf(stderr,
            "watch: %zu files, %ld tokens; NLL %.3f (reference %.3f); Page-Hinkley alarms %ld, KS window alarms %ld\n",
            wr.n_files, wr.tokens, wr.stream_nll, wr.ref_nll, wr.ph_alarms, wr.ks_alarms);
    int rc = EXIT_OK;
    if (!wr.drift) {
        fprintf(stderr, "drift: none (no Page-Hinkley alarm confirmed by KS); no update scheduled\n");
        goto done;
    }
    fprintf(stderr, "drift: at token %ld (file %s), KS D %.3f p %.2g\n", wr.drift_index, wr.files[wr.drift_file], wr.ks_d,
            wr.ks_p);
    int B = (a->o.settings.has & TH_META_BATCH) ? a->o.settings.batch : 8;
    int T = (a->o.settings.has & TH_META_SEQ) ? a->o.settings.seq : 64;
    long per_step = (long)B * T;
    long steps = a->o.steps > 0 ? a->o.steps : a->o.tokens > 0 ? (a->o.tokens + per_step - 1) / per_step : 100;
    // training a token costs about 3 forwards (backward ~2x forward: 6N against 2N FLOPs)
    double expected_j = isfinite(wr.j_per_token) ? 3.0 * wr.j_per_token * (double)steps * (double)per_step : NAN;
    char why[256];
    double temp = wr.have_figures ? wr.figures.temp_c : NAN, limit = wr.have_figures ? wr.figures.limit_c : NAN;
    if (!isfinite(expected_j) && a->gate.energy_budget_j > 0) {
        fprintf(stderr, "update skipped: no energy figure to check against the budget\n");
        goto done;
    }
    if (th_update_gate(&a->gate, expected_j, temp, limit, why, sizeof why) != TH_GUARD_CONTINUE) {
        fprintf(stderr, "update %s\n", why);
        goto done;
    }
    fprintf(stderr, "update %s\n", why);
    if (a->o.n_data == 0) {
        a->o.data = (const char *const *)(wr.files + wr.drift_file);
        a->o.n_data = wr.n_files - wr.drift_file;
        if (a->o.n_data > TH_TRAIN_JOB_MAX_DATA) a->o.n_data = TH_TRAIN_JOB_MAX_DATA;
    }
    th_learn_result *r = th_calloc(1, sizeof *r);
    if (!r) {
        rc = cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "learn");
        goto done;
    }
    signal(SIGINT, on_sigint);
    st = th_learn_run(&a->o, r);
    signal(SIGINT, SIG_DFL);
    rc = finish(a, st, r);
    th_free(r);
done:
    th_learn_watch_result_free(&wr);
    return rc;
}

int cmd_learn(int argc, char **argv) {
    learn_args *a = th_calloc(1, sizeof *a);
    if (!a) return cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "learn");
    int rc = parse(argc, argv, a);
    if (rc != 0) {
        th_free(a);
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    }
    a->o.on_step = print_step;
    if (conflicts(a)) {
        th_free(a);
        return EXIT_BAD_INPUT;
    }
    if (a->rollback || a->discard) {
        long version = 0;
        th_status st = a->rollback ? th_learn_rollback(a->o.state_dir, &version) : th_learn_discard(a->o.state_dir);
        if (st == TH_OK && a->rollback) fprintf(stderr, "rolled back: version %ld is current\n", version);
        if (st == TH_OK && a->discard) fprintf(stderr, "pending update discarded; the current model is unchanged\n");
        rc = cli_report(st, "learn");
        th_free(a);
        return rc;
    }
    if (a->watch) {
        rc = run_watch(a);
        th_free(a);
        return rc;
    }
    th_learn_result *r = th_calloc(1, sizeof *r);
    if (!r) {
        th_free(a);
        return cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "learn");
    }
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    th_status st = th_learn_run(&a->o, r);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    active_run = NULL;
    rc = finish(a, st, r);
    th_free(r);
    th_free(a);
    return rc;
}
