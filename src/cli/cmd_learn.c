/* cmd_learn.c: `thermo learn`: stateful continual fine-tuning of a trained state directory
 * (th_learn_run): an update on new data with replay, gated by measured forgetting and
 * promoted atomically; --rollback, --discard; --watch DIR watches a directory for incoming
 * text, scores it for drift and runs an update only when the energy budget and the thermal
 * margin allow. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "thermo/pipeline.h"


typedef struct {
    cli_run_flags flags;
    th_learn_opts o;
    const char *data[TH_TRAIN_JOB_MAX_DATA];
    int n_data;
    int rollback, discard;
    const char *watch;
    double watch_s;
    int poll_ms, detect_only;
    th_drift_config drift;
    th_update_gate_config gate;
} learn_args;

static const char *const drift_tests[] = {"block-t", "ks", "windows", NULL}; /* indexed by th_drift_test */
static const int drift_test_values[] = {TH_DRIFT_TEST_BLOCK_T, TH_DRIFT_TEST_KS, TH_DRIFT_TEST_WINDOWS};

/* 0: parsed; otherwise the exit code (0 after --help is returned as 1 by the caller). */
static int parse(int argc, char **argv, learn_args *a) {
    const char *cmd = "learn";
    cli_run_flags *rf = &a->flags;
    cli_run_flags_init(rf);
    a->o = th_learn_defaults();
    a->drift = th_drift_defaults();
    a->gate.min_margin_c = 5.0;
    th_learn_opts *o = &a->o;
    th_run_meta *s = &o->settings;
    uint32_t *has = &s->has;
    int threads = 0, spike = TH_GUARD_STOP, test = TH_DRIFT_TEST_WINDOWS;
    long ks_window = (long)a->drift.window, ks_reference = (long)a->drift.reference, block = (long)a->drift.block;
    a->poll_ms = 1000;
    const cli_opt opts[] = {
        CLI_O_STR("--state", "DIR", &o->state_dir, "a `thermo train --out DIR` directory, or one earlier updates changed"),
        CLI_O_REPEAT("--data", "PATH", a->data, TH_TRAIN_JOB_MAX_DATA, &a->n_data,
                     "new text (file or directory of .txt; repeatable), or a token shard with --val-data"),
        CLI_O_STR("--val-data", "SHARD", &o->val_shard, "the held-out new slice when --data is a shard"),
        CLI_O_STR("--replay-from", "OLD", &o->replay_from,
                  "old data for the replay reservoir and the held-out old slice\n(default DIR/data/train.bin and val.bin)"),
        CLI_O_DBL("--replay", "X", &o->replay, 0, 0.999999, "share of each batch's rows from the reservoir, [0, 1) (default 0.05)"),
        CLI_O_INT("--replay-windows", "N", &o->replay_windows, 1, 1 << 20, "reservoir size in windows (default 256)"),
        CLI_O_LONG("--steps", "N", &o->steps, 1, 100000000, "the update's length in steps (default 100)"),
        CLI_O_LONG("--tokens", "N", &o->tokens, 1, 0x7fffffffffffL, "... or in tokens"),
        CLI_O_LONG("--stop-after", "N", &o->stop_after, 1, 100000000,
                   "stop after N of its steps; --continue resumes it bit-identically"),
        CLI_O_FLAG("--continue", &o->resume, "finish a pending update"),
        CLI_O_FLAG("--rollback", &a->rollback, "the previous model is current again (a second rollback redoes)"),
        CLI_O_FLAG("--discard", &a->discard, "drop a pending update"),
        CLI_O_STR("--watch", "INCOMING", &a->watch,
                  "watch a directory: score new files for drift, update if energy and heat allow"),
        CLI_O_HEAD("the update's settings (default: the state's recorded ones; warmup 1 % of the steps)"),
        CLI_O_DBL("--lr", "X", &s->lr, 0, 1e3, "peak learning rate", .has = has, .bit = TH_META_LR),
        CLI_O_INT("--batch", "B", &s->batch, 1, 65536, "micro-batch size", .has = has, .bit = TH_META_BATCH),
        CLI_O_INT("--seq", "T", &s->seq, 1, 1 << 20, "sequence length", .has = has, .bit = TH_META_SEQ),
        CLI_O_INT("--grad-accum", "K", &s->grad_accum, 1, 65536, "micro-batches per step", .has = has,
                  .bit = TH_META_GRAD_ACCUM),
        CLI_O_INT("--warmup", "N", &s->warmup, 0, 100000000, "warmup steps", .has = has, .bit = TH_META_WARMUP),
        CLI_O_U64("--seed", "S", &s->seed, 0, 0x7fffffffffffffffL, "seed", .has = has, .bit = TH_META_SEED),
        CLI_O_DBL("--weight-decay", "X", &s->weight_decay, 0, 10, "AdamW weight decay", .has = has,
                  .bit = TH_META_WEIGHT_DECAY),
        CLI_O_DBL("--grad-clip", "X", &s->grad_clip, 0, 1e9, "gradient clipping norm", .has = has,
                  .bit = TH_META_GRAD_CLIP),
        CLI_O_HEAD("the gate and the regularisers"),
        CLI_O_DBL("--max-forgetting", "X", &o->max_forgetting, 0, 1e6,
                  "tolerated relative rise of old-data perplexity (default 0.02)"),
        CLI_O_DBL("--gain-ratio", "K", &o->gain_ratio, 0, 1e9,
                  "beyond it, promote only if the new-data loss fell >= K x the old-data loss\n"
                  "rise, in nats per token (default 10; 0: never beyond the tolerance)"),
        CLI_O_DBL("--ewc", "LAMBDA", &o->ewc_lambda, 0, 1e12,
                  "EWC penalty (diagonal Fisher over --ewc-windows old windows)"),
        CLI_O_INT("--ewc-windows", "N", &o->ewc_windows, 1, 1 << 20, "windows the Fisher is estimated on (default 256)"),
        CLI_O_DBL("--l2-init", "LAMBDA", &o->l2_init_lambda, 0, 1e12, "L2 penalty towards the current weights"),
        CLI_O_INT("--eval-batches", "N", &o->eval_batches, 0, 1 << 20, "batches per perplexity slice (default 8; 0: all)"),
        CLI_O_INT("--save-every", "N", &o->save_every, 0, 100000000,
                  "pending checkpoint every N steps (default: at the end and on Ctrl-C)"),
        CLI_O_INT("--threads", "N", &threads, 1, 1024, "compute threads"),
        CLI_O_CHOICE("--spike-guard", &spike, cli_guard_modes, cli_guard_mode_values,
                     "th_train's loss-spike guard: stop (default), warn or off"),
        CLI_O_HEAD("drift watch (--watch INCOMING)"),
        CLI_O_DBL("--watch-seconds", "S", &a->watch_s, 0, 1e9,
                  "keep polling INCOMING for new files for S seconds (or until Ctrl-C or\nSIGTERM); default 0: one pass"),
        CLI_O_INT("--poll-ms", "MS", &a->poll_ms, 10, 3600000, "between polls (default 1000)"),
        CLI_O_FLAG("--detect-only", &a->detect_only, "report drift, never update"),
        CLI_O_DBL("--ph-threshold", "X", &a->drift.ph.threshold, 0, 1e9, "Page-Hinkley threshold (River's default 50)"),
        CLI_O_DBL("--ph-delta", "X", &a->drift.ph.delta, 0, 1e9,
                  "Page-Hinkley delta (0.005; at least half --drift-min-rise,\nin reference standard deviations)"),
        CLI_O_CHOICE("--drift-test", &test, drift_tests, drift_test_values,
                     "two-sample test: windows (the recent window's mean against the reference's\n"
                     "window means, drawn across the old held-out slice; default), block-t (Welch's\n"
                     "t on block means) or ks (iid KS: false-alarms on autocorrelated NLL)"),
        CLI_O_LONG("--drift-block", "N", &block, 1, 1 << 20, "values per block of the block test (32)"),
        CLI_O_LONG("--ks-window", "N", &ks_window, 8, 1 << 24, "recent values the test compares (256)"),
        CLI_O_LONG("--ks-reference", "N", &ks_reference, 8, 1 << 24, "the frozen reference (4096: 16 windows)"),
        CLI_O_DBL("--ks-p", "X", &a->drift.p_value, 1e-12, 0.5, "the test's significance (0.05)"),
        CLI_O_DBL("--drift-min-rise", "NATS", &a->drift.min_rise_nats, 0, 1e3,
                  "a rise of the mean NLL up to NATS per token is not drift (0.25)"),
        CLI_O_DBL("--update-budget-j", "J", &a->gate.energy_budget_j, 0, 1e15,
                  "the watch's updates run only while their expected energy fits\nwhat is left of J (all updates, across restarts; default: no budget)"),
        CLI_O_DBL("--min-margin-c", "C", &a->gate.min_margin_c, -1e3, 1e3,
                  "... and the thermal margin is at least C (default 5)"),
        {0},
    };
    cli_cmd c = {.name = "learn", .synopsis = "--state DIR --data NEW [options]  |  --continue | --rollback | --discard | --watch DIR",
                 .tables = {opts, rf->run_opts, rf->eco_opts},
                 .epilog = "--watch learns from the watched files from the one where drift fired on.\n"
                           "exit codes: 0 ok (an update refused by the gate is ok: the report says why), 3 bad input,\n"
                           "            2 bad command line, 130 interrupted (the update stays pending)\n"};
    int rc = cli_parse(&c, argc, argv);
    if (rc != CLI_GO) return rc == 0 ? 1 : -1;
    a->drift.window = (size_t)ks_window;
    a->drift.reference = (size_t)ks_reference;
    a->drift.block = (size_t)block;
    a->drift.test = (th_drift_test)test;
    o->spike_mode = (th_guard_mode)spike;
    if (threads > 0) th_threads_set(threads);
    if (cli_eco_resolve(rf, cmd) != EXIT_OK) return -1;
    o->data = a->n_data ? a->data : NULL;
    o->n_data = (size_t)a->n_data;
    o->budget = rf->budget;
    o->run = rf->run;
    o->run.factors = &rf->factors;
    o->should_stop = cli_stop_requested;
    o->on_run_started = cli_watch_run;
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
    else if (a->watch && a->n_data) why = "--watch learns from the watched files: --data conflicts with it";
    else if (!a->watch && (a->watch_s > 0 || a->detect_only)) why = "--watch-seconds and --detect-only need --watch DIR";
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
    return cli_run_report_kept(&a->flags, "learn", &r->figures, &units, a->o.state_dir);
}

static int run_watch(learn_args *a) {
    th_learn_watch_opts w = th_learn_watch_defaults();
    w.state_dir = a->o.state_dir;
    w.watch_dir = a->watch;
    w.drift = a->drift;
    w.seq = (a->o.settings.has & TH_META_SEQ) ? a->o.settings.seq : 0;
    w.run = a->o.run;
    w.watch_s = a->watch_s;
    w.poll_ms = a->poll_ms;
    w.should_stop = cli_stop_requested;
    w.update = a->detect_only ? NULL : &a->o;
    w.gate = a->gate;
    th_learn_watch_result wr;
    cli_train_signals(1);
    th_status st = th_learn_watch(&w, &wr);
    cli_train_signals(0);
    if (st != TH_OK && st != TH_ERR_INTERRUPTED) return cli_report(st, "learn --watch");
    fprintf(stderr,
            "watch: %ld polls, %zu new files, %ld tokens; NLL %.3f (reference %.3f); %s test; Page-Hinkley alarms %ld, "
            "test window alarms %ld\n",
            wr.polls, wr.n_files, wr.tokens, wr.stream_nll, wr.ref_nll, drift_tests[a->drift.test], wr.ph_alarms,
            wr.test_alarms);
    if (wr.drift)
        fprintf(stderr, "drift: %ld events, first at token %ld (file %s), statistic %.3f p %.2g\n", wr.drifts,
                wr.drift_index, wr.files[wr.drift_file], wr.stat, wr.p);
    else
        fprintf(stderr, "drift: none (no Page-Hinkley alarm confirmed by the two-sample test)\n");
    fprintf(stderr, "updates: %ld run (%ld promoted), %ld skipped%s%s%s, %ld failed; %.1f J spent by the watch's updates; "
                    "current model: version %ld\n",
            wr.updates_run, wr.updates_promoted, wr.updates_skipped, wr.last_skip[0] ? " (" : "", wr.last_skip,
            wr.last_skip[0] ? ")" : "",
            wr.updates_failed, wr.update_energy_j, wr.version);
    int rc = st == TH_OK ? EXIT_OK : cli_report(st, "learn --watch");
    if (wr.have_figures) {
        cli_run_units units = {(double)wr.tokens, (double)wr.n_files, "scored", 0, NULL};
        int r2 = cli_run_report(&a->flags, "learn --watch (scoring)", &wr.figures, &units);
        if (rc == EXIT_OK) rc = r2;
    }
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
    cli_train_signals(1);
    th_status st = th_learn_run(&a->o, r);
    cli_train_signals(0);
    rc = finish(a, st, r);
    th_free(r);
    th_free(a);
    return rc;
}
