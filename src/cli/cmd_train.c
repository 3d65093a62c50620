/* cmd_train.c: `thermo train`: fine-tunes a model (Hugging Face directory, llm.c file or
 * our checkpoint) or trains a preset from scratch on text or token shards, with a progress
 * line, validation, resumable checkpoints and the trained model written back in Hugging
 * Face layout. With no --model and no --data it runs the embedded default: the "small"
 * preset on public-domain text installed by scripts/setup. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "thermo/io.h"
#include "thermo/pipeline.h"
#include "thermo/text.h"

static volatile sig_atomic_t stop_requested;
static th_run *active_run; /* set before the handler is installed */
static void on_sigint(int sig) {
    (void)sig;
    stop_requested = 1;
    th_run_interrupt(active_run); // cuts a pacing wait short
}
static int should_stop(void *user) {
    (void)user;
    return stop_requested;
}

static void train_usage(FILE *f) {
    fprintf(f,
            "usage: thermo train [options]\n"
            "  --model DIR|FILE|PRESET  a Hugging Face GPT-2 directory, an llm.c .bin, a thermo checkpoint, or a\n"
            "                           preset to train from scratch (gpt2, distilgpt2, gpt2-medium, small, tiny);\n"
            "                           default: small\n"
            "  --data PATH              text file, directory of .txt files, or a token shard (.bin from an earlier\n"
            "                           run); may repeat. Default: the embedded corpus (%s)\n"
            "  --val-data SHARD         validation shard when --data is a shard\n"
            "  --out DIR                output directory (default runs/default): model/, checkpoint.bin, data/\n"
            "  --steps N                optimizer steps (default 300)\n"
            "  --batch B --seq T        micro-batch shape (default 8 x 64)\n"
            "  --grad-accum K           micro-batches per step (default 1)\n"
            "  --lr X                   peak learning rate (default 1e-3 from scratch, 1e-4 fine-tuning)\n"
            "  --warmup N               warmup steps (default 10%% of steps, at most 100)\n"
            "  --weight-decay X --grad-clip X   AdamW settings (default 0.1, 1.0)\n"
            "  --val-every N            validate every N steps and at the end (default 50; 0 = never)\n"
            "  --val-batches N          batches per validation (default 8; 0 = the whole split)\n"
            "  --save-every N           checkpoint every N steps (default 0: at the end and on Ctrl-C)\n"
            "  --resume                 continue from OUT/checkpoint.bin exactly where it stopped\n"
            "  --seed S                 seed for initialization and data order (default 1337)\n"
            "  --threads N              compute threads (default: all cores)\n"
            "waste guards:\n"
            "  --no-preflight           skip the checks before the run (memory, loss at init, checkpoint round trip)\n"
            "  --spike-guard MODE       stop (default: skip loss/grad-norm spikes over 6 sigma, roll back after 3),\n"
            "                           warn or off; NaN/Inf never reach the weights whatever the mode\n"
            "  --early-stop N           stop after N validations without improvement (0: off, default)\n"
            "  --early-stop-delta X     minimum improvement (default 0.001)\n"
            "  --max-forecast-j J --max-forecast-co2-g G   refuse to go on once the projected run exceeds it\n"
            "Ctrl-C stops after the current micro-batch and saves a checkpoint; --resume continues it.\n%s",
            "the King James Bible and Debian's fortunes, installed by scripts/setup", cli_run_flags_help());
}

static void on_run_started(th_run *run, void *user) {
    cli_train_progress *p = user;
    p->run = active_run = run;
    p->t0 = th_now_ns();
}

static void print_step(const th_step_record *r, void *user) {
    cli_train_progress *p = user;
    int val = r->val_loss == r->val_loss; // not NaN
    if (!(r->step % p->every == 0 || r->step == r->total_steps || val || r->step == p->start_step + 1)) return;
    double elapsed = (r->t_ns - p->t0) / 1e9;
    long done = r->step - p->start_step;
    double eta = done > 0 ? elapsed / done * (r->total_steps - r->step) : 0;
    fprintf(stderr, "step %5ld/%ld | loss %.4f", r->step, r->total_steps, r->loss);
    if (val) fprintf(stderr, " | val %.4f", r->val_loss);
    fprintf(stderr, " | grad norm %.3f | lr %.2e | %.0f tok/s", r->grad_norm, r->lr, r->tokens / (r->step_ms / 1e3));
    th_run_figures fig;
    th_run_figures_now(p->run, &fig);
    const char *tag = fig.origin == TH_ORIGIN_MEASURED ? "" : " (sim)";
    if (fig.temp_c == fig.temp_c) fprintf(stderr, " | %.1f/%.0f C%s", fig.temp_c, fig.limit_c, tag);
    double wall = fig.busy_s + fig.idle_s;
    if (wall > 0) fprintf(stderr, " | duty %.2f", fig.busy_s / wall);
    if (fig.have_energy)
        fprintf(stderr, " | %.0f J %.2f g CO2e%s", fig.energy.energy_j, fig.co2e_g, tag);
    fprintf(stderr, " | ETA %dm%02ds%s\n", (int)eta / 60, (int)eta % 60, r->saved ? " | saved" : "");
}

/* Parses `thermo train`'s options (also those `thermo session` passes on) into a job.
 * Returns 1 when it printed help, -1 after printing an error, 0 when the job is ready to
 * run. Strings point into argv. */
int cli_train_parse(int argc, char **argv, const char *cmd, cli_train_args *t) {
    cli_run_flags *rf = &t->flags;
    cli_run_flags_init(rf);
    t->job = th_train_job_defaults();
    th_train_job *j = &t->job;
    th_run_meta *s = &j->settings;
    long threads = 0, v_long = 0;
    double v_dbl = 0;
    const char *spike_mode = "stop";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            train_usage(stdout);
            return 1;
        }
        int r = cli_run_flag(rf, cmd, argc, argv, &i);
        if (r < 0) return -1;
        if (r > 0) continue;
        if (!strcmp(a, "--resume")) { j->resume = 1; continue; }
        if (!strcmp(a, "--no-preflight")) { j->preflight = 0; continue; }
        if (i + 1 >= argc || strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "thermo %s: unknown option or missing value: %s\n", cmd, a);
            train_usage(stderr);
            return -1;
        }
        const char *v = argv[++i];
        /* integer settings recorded in the checkpoint: flag, range, where, has bit */
        static const struct { const char *flag; long lo, hi; uint32_t bit; } meta_ints[] = {
            {"--steps", 1, 100000000, TH_META_STEPS}, {"--batch", 1, 65536, TH_META_BATCH},
            {"--seq", 1, 1 << 20, TH_META_SEQ},       {"--grad-accum", 1, 65536, TH_META_GRAD_ACCUM},
            {"--warmup", 0, 100000000, TH_META_WARMUP}, {"--seed", 0, 0x7fffffffffffffffL, TH_META_SEED}};
        static const struct { const char *flag; double hi; uint32_t bit; } meta_reals[] = {
            {"--lr", 10, TH_META_LR}, {"--weight-decay", 10, TH_META_WEIGHT_DECAY}, {"--grad-clip", 1e9, TH_META_GRAD_CLIP}};
        int ok = 1, done = 0;
        for (size_t k = 0; k < sizeof meta_ints / sizeof meta_ints[0] && !done; k++)
            if (!strcmp(a, meta_ints[k].flag)) {
                done = 1;
                if (!(ok = cli_parse_int(cmd, a, v, meta_ints[k].lo, meta_ints[k].hi, &v_long))) break;
                s->has |= meta_ints[k].bit;
                switch (meta_ints[k].bit) {
                case TH_META_STEPS: s->steps = v_long; break;
                case TH_META_BATCH: s->batch = (int)v_long; break;
                case TH_META_SEQ: s->seq = (int)v_long; break;
                case TH_META_GRAD_ACCUM: s->grad_accum = (int)v_long; break;
                case TH_META_WARMUP: s->warmup = (int)v_long; break;
                default: s->seed = (uint64_t)v_long; break;
                }
            }
        for (size_t k = 0; k < sizeof meta_reals / sizeof meta_reals[0] && !done; k++)
            if (!strcmp(a, meta_reals[k].flag)) {
                done = 1;
                if (!(ok = cli_parse_float(cmd, a, v, 0, meta_reals[k].hi, &v_dbl))) break;
                s->has |= meta_reals[k].bit;
                *(meta_reals[k].bit == TH_META_LR ? &s->lr : meta_reals[k].bit == TH_META_WEIGHT_DECAY ? &s->weight_decay
                                                                                                : &s->grad_clip) = v_dbl;
            }
        if (done) {
            if (!ok) return -1;
            continue;
        }
        if (!strcmp(a, "--model")) j->model = v;
        else if (!strcmp(a, "--data")) {
            if (t->n_data == TH_TRAIN_JOB_MAX_DATA) {
                fprintf(stderr, "thermo %s: at most %d --data paths\n", cmd, TH_TRAIN_JOB_MAX_DATA);
                return -1;
            }
            t->data[t->n_data++] = v;
        } else if (!strcmp(a, "--val-data")) j->val_shard = v;
        else if (!strcmp(a, "--out")) j->out_dir = v;
        else if (!strcmp(a, "--val-every") && (ok = cli_parse_int(cmd, a, v, 0, 100000000, &v_long))) j->val_every = (int)v_long;
        else if (!strcmp(a, "--val-batches") && (ok = cli_parse_int(cmd, a, v, 0, 100000000, &v_long))) j->val_batches = (int)v_long;
        else if (!strcmp(a, "--save-every") && (ok = cli_parse_int(cmd, a, v, 0, 100000000, &v_long))) j->save_every = (int)v_long;
        else if (!strcmp(a, "--threads")) ok = cli_parse_int(cmd, a, v, 1, 1024, &threads);
        else if (!strcmp(a, "--spike-guard")) spike_mode = v;
        else if (!strcmp(a, "--early-stop") && (ok = cli_parse_int(cmd, a, v, 0, 1000000, &v_long))) j->early_stop_patience = (int)v_long;
        else if (!strcmp(a, "--early-stop-delta")) ok = cli_parse_float(cmd, a, v, 0, 100, &j->early_stop_delta);
        else if (!strcmp(a, "--max-forecast-j")) ok = cli_parse_float(cmd, a, v, 1e-9, 1e15, &j->forecast_limit.energy_j);
        else if (!strcmp(a, "--max-forecast-co2-g")) ok = cli_parse_float(cmd, a, v, 1e-9, 1e15, &j->forecast_limit.co2e_g);
        else if (ok) {
            fprintf(stderr, "thermo %s: unknown option %s\n", cmd, a);
            train_usage(stderr);
            return -1;
        }
        if (!ok) return -1;
    }
    if (th_guard_mode_parse(spike_mode, &j->spike_mode) != TH_OK) {
        fprintf(stderr, "thermo %s: --spike-guard must be stop, warn or off, got '%s'\n", cmd, spike_mode);
        return -1;
    }
    th_threads_set(threads > 0 ? (int)threads : th_threads_get());
    if (cli_eco_resolve(rf, cmd) != EXIT_OK) return -1;
    j->data = t->n_data ? t->data : NULL;
    j->n_data = (size_t)t->n_data;
    j->budget = rf->budget;
    j->run = rf->run;
    j->run.factors = &rf->factors;
    t->progress.every = (s->has & TH_META_STEPS ? s->steps : 300) / 20;
    if (t->progress.every < 1) t->progress.every = 1;
    t->progress.flags = rf;
    j->on_step = print_step;
    j->should_stop = should_stop;
    j->on_run_started = on_run_started;
    j->user = &t->progress;
    return 0;
}

void cli_train_signals(int on) {
    signal(SIGINT, on ? on_sigint : SIG_DFL);
    signal(SIGTERM, on ? on_sigint : SIG_DFL);
}

int cli_train_finish(const cli_run_flags *rf, const char *cmd, th_status st, const th_train_job_result *res) {
    const th_train_result *tr = &res->train;
    double steps = (double)(tr->steps_done - res->start_step);
    if (st == TH_ERR_INTERRUPTED) {
        // the energy of the steps that ran was spent all the same: report it, then stop
        int rc = cli_report(st, cmd);
        cli_run_units part = {(double)tr->tokens, steps, "interrupted", 0, NULL};
        if (res->have_figures) cli_run_report(rf, "train (interrupted)", &res->figures, &part);
        return rc;
    }
    if (st != TH_OK) return cli_report(st, cmd);
    if (tr->health.steps_skipped || tr->health.rollbacks)
        fprintf(stderr, "guards: %ld steps skipped (%ld NaN/Inf, %ld spikes), %ld rollbacks, %.1f J wasted on them\n",
                tr->health.steps_skipped, tr->health.nonfinite, tr->health.spikes, tr->health.rollbacks,
                tr->health.energy_wasted_j);
    if (tr->stopped_by[0])
        fprintf(stderr, "stopped early by the %s guard: %s; %.1f J of planned work not spent\n", tr->stopped_by,
                tr->stop_reason, tr->energy_saved_j);
    if (tr->forecast[0]) fprintf(stderr, "%s\n", tr->forecast);
    fprintf(stderr, "done: %ld steps in %.1f s (%.0f tok/s); train loss %.4f", tr->steps_done, tr->seconds,
            tr->tokens / (tr->seconds > 0 ? tr->seconds : 1), tr->last_loss);
    if (tr->first_val_loss == tr->first_val_loss)
        fprintf(stderr, "; validation loss %.4f -> %.4f", tr->first_val_loss, tr->last_val_loss);
    if (res->llmc_path[0]) fprintf(stderr, "\nsaved %s (llm.c layout, as the input)", res->llmc_path);
    fprintf(stderr, "\nsaved %s (Hugging Face layout) and %s\n", res->model_dir, res->checkpoint_path);
    cli_run_units units = {(double)tr->tokens, steps, tr->stopped_by[0] ? tr->stopped_by : "completed", 0, NULL};
    return cli_run_report(rf, "train", &res->figures, &units);
}

int cmd_train(int argc, char **argv) {
    cli_train_args *t = th_calloc(1, sizeof *t);
    if (!t) return cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "train");
    int rc = cli_train_parse(argc, argv, "train", t);
    if (rc != 0) {
        th_free(t);
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    }
    th_train_job_result *res = th_calloc(1, sizeof *res);
    if (!res) {
        th_free(t);
        return cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "train");
    }
    cli_train_signals(1);
    th_status st = th_train_job_run(&t->job, res);
    cli_train_signals(0);
    active_run = NULL;
    rc = cli_train_finish(&t->flags, "train", st, res);
    th_free(res);
    th_free(t);
    return rc;
}
