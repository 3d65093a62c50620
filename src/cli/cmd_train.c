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
#include "thermo/dist.h"
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
int cli_stop_requested(void *user) {
    (void)user;
    return stop_requested;
}

void cli_watch_run(th_run *run, void *user) {
    (void)user;
    active_run = run;
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

static const char *const precision_names[] = {"f32", "bf16", NULL};
static const int precision_values[] = {TH_PRECISION_F32, TH_PRECISION_BF16};

void cli_train_init(cli_train_args *t) {
    memset(t, 0, sizeof *t);
    cli_run_flags_init(&t->flags);
    t->job = th_train_job_defaults();
    t->spike_mode = TH_GUARD_STOP;
    th_train_job *j = &t->job;
    th_run_meta *s = &j->settings;
    uint32_t *has = &s->has; /* the settings given, recorded in the checkpoint */
    const cli_opt opts[] = {
        CLI_O_STR("--model", "DIR|FILE|PRESET", &j->model,
                  "a Hugging Face GPT-2 directory, an llm.c .bin, a thermo checkpoint, or a\n"
                  "preset to train from scratch (gpt2, distilgpt2, gpt2-medium, small, tiny);\n"
                  "default: small"),
        CLI_O_REPEAT("--data", "PATH", t->data, TH_TRAIN_JOB_MAX_DATA, &t->n_data,
                     "text file, directory of .txt files, or a token shard (.bin from an earlier\n"
                     "run); may repeat. Default: the embedded corpus (the King James Bible and\n"
                     "Debian's fortunes, installed by scripts/setup)"),
        CLI_O_STR("--val-data", "SHARD", &j->val_shard, "validation shard when --data is a shard"),
        CLI_O_STR("--out", "DIR", &j->out_dir, "output directory (default runs/default): model/, checkpoint.bin, data/"),
        CLI_O_LONG("--steps", "N", &s->steps, 1, 100000000, "optimizer steps (default 300)", .has = has,
                   .bit = TH_META_STEPS),
        CLI_O_INT("--batch", "B", &s->batch, 1, 65536, "micro-batch size (default 8)", .has = has, .bit = TH_META_BATCH),
        CLI_O_INT("--seq", "T", &s->seq, 1, 1 << 20, "micro-batch sequence length (default 64)", .has = has,
                  .bit = TH_META_SEQ),
        CLI_O_INT("--grad-accum", "K", &s->grad_accum, 1, 65536, "micro-batches per step (default 1)", .has = has,
                  .bit = TH_META_GRAD_ACCUM),
        CLI_O_DBL("--lr", "X", &s->lr, 0, 10, "peak learning rate (default 1e-3 from scratch, 1e-4 fine-tuning)",
                  .has = has, .bit = TH_META_LR),
        CLI_O_INT("--warmup", "N", &s->warmup, 0, 100000000, "warmup steps (default 10% of steps, at most 100)",
                  .has = has, .bit = TH_META_WARMUP),
        CLI_O_DBL("--weight-decay", "X", &s->weight_decay, 0, 10, "AdamW weight decay (default 0.1)", .has = has,
                  .bit = TH_META_WEIGHT_DECAY),
        CLI_O_DBL("--grad-clip", "X", &s->grad_clip, 0, 1e9, "gradient norm clip (default 1.0)", .has = has,
                  .bit = TH_META_GRAD_CLIP),
        CLI_O_INT("--val-every", "N", &j->val_every, 0, 100000000,
                  "validate every N steps and at the end (default 50; 0 = never)"),
        CLI_O_INT("--val-batches", "N", &j->val_batches, 0, 100000000,
                  "batches per validation (default 8; 0 = the whole split)"),
        CLI_O_INT("--save-every", "N", &j->save_every, 0, 100000000,
                  "checkpoint every N steps (default 0: at the end and on Ctrl-C)"),
        CLI_O_FLAG("--resume", &j->resume, "continue from OUT/checkpoint.bin exactly where it stopped"),
        CLI_O_U64("--seed", "S", &s->seed, 0, 0x7fffffffffffffffL,
                  "seed for initialization and data order (default 1337)", .has = has, .bit = TH_META_SEED),
        CLI_O_INT("--threads", "N", &t->threads, 1, 1024, "compute threads (default: all cores)"),
        CLI_O_CHOICE("--precision", &s->precision, precision_names, precision_values,
                     "matmul operands: f32 (default) or bf16 (fp32 sums, master weights and\n"
                     "AdamW); recorded in the checkpoint, so a resume keeps it", .has = has, .bit = TH_META_PRECISION),
        CLI_O_HEAD("waste guards"),
        CLI_O_FLAG("--no-preflight", &t->no_preflight,
                   "skip the checks before the run (memory, loss at init, checkpoint round trip)"),
        CLI_O_CHOICE("--spike-guard", &t->spike_mode, cli_guard_modes, cli_guard_mode_values,
                     "stop (default: skip loss/grad-norm spikes over 6 sigma, roll back after 3),\n"
                     "warn or off; NaN/Inf never reach the weights whatever the mode"),
        CLI_O_INT("--early-stop", "N", &j->early_stop_patience, 0, 1000000,
                  "stop after N validations without improvement (0: off, default)"),
        CLI_O_DBL("--early-stop-delta", "X", &j->early_stop_delta, 0, 100, "minimum improvement (default 0.001)"),
        CLI_O_DBL("--max-forecast-j", "J", &j->forecast_limit.energy_j, 1e-9, 1e15,
                  "refuse to go on once the projected run exceeds J joules"),
        CLI_O_DBL("--max-forecast-co2-g", "G", &j->forecast_limit.co2e_g, 1e-9, 1e15,
                  "refuse to go on once the projected run exceeds G grams CO2e"),
    };
    _Static_assert(sizeof opts < sizeof t->opts, "opts keeps a terminator");
    memcpy(t->opts, opts, sizeof opts);
}

int cli_train_ready(cli_train_args *t, const char *cmd) {
    cli_run_flags *rf = &t->flags;
    th_train_job *j = &t->job;
    th_threads_set(t->threads > 0 ? t->threads : th_threads_get());
    int rc = cli_eco_resolve(rf, cmd);
    if (rc != EXIT_OK) return rc;
    if (t->no_preflight) j->preflight = 0;
    j->spike_mode = (th_guard_mode)t->spike_mode;
    j->data = t->n_data ? t->data : NULL;
    j->n_data = (size_t)t->n_data;
    j->budget = rf->budget;
    j->run = rf->run;
    j->run.factors = &rf->factors;
    t->progress.every = (j->settings.has & TH_META_STEPS ? j->settings.steps : 300) / 20;
    if (t->progress.every < 1) t->progress.every = 1;
    t->progress.flags = rf;
    j->on_step = print_step;
    j->should_stop = cli_stop_requested;
    j->on_run_started = on_run_started;
    j->user = &t->progress;
    return EXIT_OK;
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
        if (res->have_figures) cli_run_report_kept(rf, "train (interrupted)", &res->figures, &part, res->checkpoint_path);
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
    return cli_run_report_kept(rf, "train", &res->figures, &units, res->checkpoint_path);
}

/* ---- data parallel (issue 20): --dp, the per-rank report ---- */

static const char *const dp_kinds[] = {"off", "local", "mpi", NULL};
static const int dp_kind_values[] = {-1, TH_DP_LOCAL, TH_DP_MPI};
static const char *const dp_balances[] = {"thermal", "static", NULL};
static const int dp_balance_values[] = {TH_DP_THERMAL, TH_DP_STATIC};
static const char *const dp_waits[] = {"idle", "busy", NULL};
static const int dp_wait_values[] = {TH_DP_WAIT_IDLE, TH_DP_WAIT_BUSY};

typedef struct {
    int kind, balance, wait;
    const char *assign, *kill, *steps_csv;
    char csv_path[4300], telemetry[4300];
} dp_args;

static void log_rank(th_log_level level, const char *msg, void *user) {
    if (level >= TH_LOG_WARN) fprintf(stderr, "thermo: rank %d: %s\n", (int)(long)user, msg);
}

/* Reads --dp-assign "3,1" (a test option: fixed micro-batches per rank). */
static int dp_parse_assign(const char *s, th_dp_config *c) {
    c->n_forced = 0;
    for (const char *p = s; *p && c->n_forced < TH_DP_MAX_RANKS;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 65536) return 0;
        c->forced[c->n_forced++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') return 0;
    }
    return c->n_forced > 0;
}

/* Sets up data parallelism after parsing: the context, the global accumulation (--grad-accum
 * is per rank), rank-0-only output. Returns an exit code; *dp is NULL for --dp off. */
static int dp_ready(dp_args *a, cli_train_args *t, th_dp **dp) {
    *dp = NULL;
    if (a->kind < 0) return EXIT_OK;
    th_train_job *j = &t->job;
    th_dp_config c = th_dp_config_default();
    c.kind = (th_dp_kind)a->kind;
    c.balance = (th_dp_balance)a->balance;
    c.wait = (th_dp_wait)a->wait;
    if (a->assign && !dp_parse_assign(a->assign, &c))
        return (void)cli_report(th_fail(TH_ERR_INVALID, "--dp-assign %s: counts >= 1 separated by commas", a->assign),
                          "train"), EXIT_USAGE;
    if (a->kill && sscanf(a->kill, "%d:%ld", &c.kill_rank, &c.kill_step) != 2)
        return (void)cli_report(th_fail(TH_ERR_INVALID, "--dp-kill %s: RANK:STEP", a->kill), "train"), EXIT_USAGE;
    const th_budget_config *b = &j->budget;
    if (b->energy_j > 0 || b->energy_wh > 0 || b->co2e_g > 0 || b->water_ml > 0 || b->seconds > 0 ||
        j->forecast_limit.energy_j > 0 || j->forecast_limit.co2e_g > 0)
        return (void)cli_report(th_fail(TH_ERR_INVALID, "--dp: budgets and forecast limits are per process and would part "
                                                  "the ranks; run without them"),
                          "train"), EXIT_USAGE;
    const char *dir = j->out_dir ? j->out_dir : "runs/default";
    snprintf(a->csv_path, sizeof a->csv_path, "%s/dp_steps.csv", dir);
    c.steps_csv = a->csv_path;
    th_status st = th_dp_init(NULL, NULL, &c, dp);
    if (st != TH_OK) {
        if (!*dp || th_dp_rank(*dp) == 0) cli_report(st, "train");
        return EXIT_FAILURE_RUN;
    }
    int rank = th_dp_rank(*dp), size = th_dp_size(*dp);
    if (rank == 0) remove(a->csv_path); // this call's steps only
    th_run_meta *s = &j->settings;
    if (s->has & TH_META_GRAD_ACCUM) s->grad_accum *= size;
    else if (!j->resume) s->grad_accum = size, s->has |= TH_META_GRAD_ACCUM;
    if (rank != 0) { // rank 0 speaks for the job; the others only warn
        th_log_set_handler(log_rank, (void *)(long)rank);
        j->on_step = NULL;
        if (j->run.telemetry_path) { // each rank keeps its own log
            snprintf(a->telemetry, sizeof a->telemetry, "%s.rank%d", j->run.telemetry_path, rank);
            j->run.telemetry_path = a->telemetry;
        }
    }
    th_log(TH_LOG_INFO, "data parallel: %s, %d rank%s, %s balancing, %s waits", dp_kinds[a->kind + 1], size,
           size == 1 ? "" : "s", c.n_forced ? "forced" : c.balance == TH_DP_THERMAL ? "thermal" : "static",
           dp_waits[a->wait]);
    j->dp = *dp;
    return EXIT_OK;
}

/* What a second of waiting costs above idle on this rank's simulated plant, in W: its
 * profile's busy minus idle power (0 for real sensors: their energy is measured, not modeled). */
static double dp_busy_over_idle_w(const cli_train_args *t, const th_run_figures *f) {
    th_thermal_profile p;
    if (!f->profile[0] || th_profile_find(t->job.run.sense.profile ? t->job.run.sense.profile : f->profile, &p) != TH_OK)
        return 0.0;
    return p.p_max_w - p.p_idle_w;
}

/* Rank 0 prints each rank's figures and their total; every rank takes part. With idle
 * waits, it also says what busy-waiting them would have cost (wait x the profile's busy -
 * idle power, modeled). */
static void dp_report(th_dp *dp, const cli_train_args *t, const th_train_job_result *res) {
    th_dp_rank_figures me, *all = NULL;
    memset(&me, 0, sizeof me);
    const th_run_figures *f = &res->figures;
    if (res->have_figures) {
        me.energy_j = f->energy.energy_j;
        me.co2e_g = f->co2e_g;
        me.water_ml = f->water_ml;
        me.above_limit_s = f->above_limit_s;
        me.seconds = f->seconds;
        me.temp_max_c = f->temp_max_c;
        me.busy_s = f->busy_s;
        me.idle_s = f->idle_s;
        snprintf(me.profile, sizeof me.profile, "%s", f->profile);
        me.busy_over_idle_w = dp_busy_over_idle_w(t, f);
    }
    int n = th_dp_size(dp);
    if (th_dp_rank(dp) == 0) all = th_calloc((size_t)n, sizeof *all);
    if (th_dp_gather_figures(dp, &me, all) != TH_OK || !all) goto done;
    th_dp_summary sm;
    th_dp_get_summary(dp, &sm);
    fprintf(stderr, "data parallel, %d ranks (energy modeled where the sensor is simulated):\n", n);
    fprintf(stderr, "  rank  profile            energy J   CO2e g  above limit s  max C   wait s  micro-batches (last step)\n");
    th_dp_rank_figures tot;
    memset(&tot, 0, sizeof tot);
    for (int r = 0; r < n; r++) {
        fprintf(stderr, "  %4d  %-16s %10.1f %8.3f %14.1f %6.1f %8.2f  %d\n", r, all[r].profile[0] ? all[r].profile : "-",
                all[r].energy_j, all[r].co2e_g, all[r].above_limit_s, all[r].temp_max_c, sm.wait_s[r],
                sm.last_assign[r]);
        tot.energy_j += all[r].energy_j;
        tot.co2e_g += all[r].co2e_g;
        tot.above_limit_s += all[r].above_limit_s;
    }
    fprintf(stderr, "  total                   %10.1f %8.3f %14.1f; balancing saved %.2f s of step time (modeled)\n",
            tot.energy_j, tot.co2e_g, tot.above_limit_s, sm.saved_s);
    double bloat_j = 0.0;
    for (int r = 0; r < n; r++) bloat_j += sm.wait_s[r] * all[r].busy_over_idle_w;
    if (sm.wait_idle)
        fprintf(stderr, "  reduction waits paced idle (--dp-wait idle): busy-waiting them would have cost %.1f J more "
                        "(wait x busy - idle power, modeled)\n", bloat_j);
    else
        fprintf(stderr, "  reduction waits spent busy (--dp-wait busy): about %.1f J above idle (wait x busy - idle "
                        "power, modeled)\n", bloat_j);
done:
    th_free(all);
}

int cmd_train(int argc, char **argv) {
    cli_train_args *t = th_calloc(1, sizeof *t);
    th_train_job_result *res = th_calloc(1, sizeof *res);
    dp_args *dpa = th_calloc(1, sizeof *dpa);
    th_dp *dp = NULL;
    th_status st = TH_OK;
    int rc = EXIT_OK;
    if (!t || !res || !dpa) {
        rc = cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "train");
        goto done;
    }
    cli_train_init(t);
    dpa->kind = -1;
    dpa->balance = TH_DP_THERMAL;
    dpa->wait = TH_DP_WAIT_IDLE;
    const cli_opt dp_opts[] = {
        CLI_O_HEAD("data parallel (mpirun -np N thermo train --dp mpi ...)"),
        CLI_O_CHOICE("--dp", &dpa->kind, dp_kinds, dp_kind_values,
                     "off (default); mpi: one rank per process under mpirun, --batch and --grad-accum\n"
                     "per rank, the gradient an exact sum (the same bits as one process with\n"
                     "--dp local --grad-accum N x K); local: one process, that same sum"),
        CLI_O_CHOICE("--dp-balance", &dpa->balance, dp_balances, dp_balance_values,
                     "thermal (default): each step's micro-batches go to the ranks by their measured\n"
                     "pace (a hot, throttled rank gets fewer); static: the same number each"),
        CLI_O_CHOICE("--dp-wait", &dpa->wait, dp_waits, dp_wait_values,
                     "idle (default): a rank done with its micro-batches sleeps until the others\n"
                     "reach the reduction, counted idle by its plant and ledger; busy: it spins inside\n"
                     "its last unit of work (the energy-bloat baseline)"),
        CLI_O_STR("--dp-assign", "N,N,...", &dpa->assign, "test option: fixed micro-batches per rank"),
        CLI_O_STR("--dp-kill", "RANK:STEP", &dpa->kill, "test option: that rank dies (SIGKILL) in that step"),
        {0},
    };
    cli_cmd c = {.name = "train", .synopsis = "[options]",
                 .tables = {t->opts, t->flags.run_opts, t->flags.eco_opts, dp_opts},
                 .epilog = "Ctrl-C stops after the current micro-batch and saves a checkpoint; --resume continues it.\n"};
    if ((rc = cli_parse(&c, argc, argv)) != CLI_GO) goto done;
    if (cli_train_ready(t, "train") != EXIT_OK) { /* a factor the tables reject: exit 2, as ever */
        rc = EXIT_USAGE;
        goto done;
    }
    if ((rc = dp_ready(dpa, t, &dp)) != EXIT_OK) goto done;
    cli_train_signals(1);
    st = th_train_job_run(&t->job, res);
    cli_train_signals(0);
    active_run = NULL;
    if (dp && (st == TH_OK || st == TH_ERR_INTERRUPTED)) dp_report(dp, t, res);
    if (!dp || th_dp_rank(dp) == 0) rc = cli_train_finish(&t->flags, "train", st, res);
    else rc = st == TH_OK ? EXIT_OK : st == TH_ERR_INTERRUPTED ? EXIT_INTERRUPTED : EXIT_FAILURE_RUN; // rank 0 said why
done:
    th_dp_finish(dp, st);
    th_free(dpa);
    th_free(res);
    th_free(t);
    return rc;
}
