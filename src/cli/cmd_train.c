/* cmd_train.c: `thermo train`: fine-tunes a model (Hugging Face directory, llm.c file or
 * our checkpoint) or trains a preset from scratch on text or token shards, with a progress
 * line, validation, resumable checkpoints and the trained model written back in Hugging
 * Face layout. With no --model and no --data it runs the embedded default: the "small"
 * preset on public-domain text installed by scripts/setup. */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* The embedded default corpus: public-domain text from Debian packages that scripts/setup
 * installs: the King James Bible (package bible-kjv, dumped to .deps/corpus/kjv.txt by
 * scripts/setup) and the fortunes of fortunes-min. Paths that are missing are skipped;
 * none at all is an error. */
#ifndef THERMO_DATA_DIR
#define THERMO_DATA_DIR "data"
#endif
static const char *const default_corpus[] = {
    THERMO_DATA_DIR "/../.deps/corpus/kjv.txt",
    "/usr/share/games/fortunes/fortunes",
    "/usr/share/games/fortunes/literature",
    "/usr/share/games/fortunes/riddles",
};

typedef struct {
    long every;
    uint64_t t0;
    long start_step;
    th_run *run;
    const cli_run_flags *flags;
} progress;

static void print_step(const th_step_record *r, void *user) {
    progress *p = user;
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
    const char *tag = fig.origin == TH_ORIGIN_MODELED ? " (sim)" : "";
    if (fig.temp_c == fig.temp_c) fprintf(stderr, " | %.1f/%.0f C%s", fig.temp_c, fig.limit_c, tag);
    double wall = fig.busy_s + fig.idle_s;
    if (wall > 0) fprintf(stderr, " | duty %.2f", fig.busy_s / wall);
    if (fig.have_energy)
        fprintf(stderr, " | %.0f J %.2f g CO2e%s", fig.energy.energy_j, cli_live_co2e_g(p->flags, fig.energy.energy_j),
                tag);
    fprintf(stderr, " | ETA %dm%02ds%s\n", (int)eta / 60, (int)eta % 60, r->saved ? " | saved" : "");
}

static int is_shard(const char *path) {
    th_shard_info info;
    return th_shard_read_info(path, &info) == TH_OK;
}


int cmd_train(int argc, char **argv) {
    const char *model_arg = NULL, *out_dir = "runs/default", *val_shard = NULL;
    const char *data[64];
    int n_data = 0, resume = 0;
    // -1: not given. Defaults are filled in after the model is known; a resumed run takes them
    // from the checkpoint's metadata so it continues with the same settings.
    long steps = -1, batch = -1, seq = -1, accum = -1, warmup = -1, val_every = 50, val_batches = 8, save_every = 0,
         threads = 0, seed = -1;
    double lr = -1, wd = -1, clip = -1, es_delta = 0.001, max_fc_j = 0, max_fc_co2 = 0;
    long es_patience = 0;
    int no_preflight = 0;
    const char *spike_mode = "stop";
    cli_run_flags rf;
    cli_run_flags_init(&rf);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            train_usage(stdout);
            return EXIT_OK;
        }
        int r = cli_run_flag(&rf, "train", argc, argv, &i);
        if (r < 0) return EXIT_USAGE;
        if (r > 0) continue;
        if (!strcmp(a, "--resume")) {
            resume = 1;
            continue;
        }
        if (!strcmp(a, "--no-preflight")) {
            no_preflight = 1;
            continue;
        }
        if (i + 1 >= argc || strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "thermo train: unknown option or missing value: %s\n", a);
            train_usage(stderr);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        int ok = 1;
        if (!strcmp(a, "--model")) model_arg = v;
        else if (!strcmp(a, "--data")) {
            if (n_data == 64) { fprintf(stderr, "thermo train: at most 64 --data paths\n"); return EXIT_USAGE; }
            data[n_data++] = v;
        } else if (!strcmp(a, "--val-data")) val_shard = v;
        else if (!strcmp(a, "--out")) out_dir = v;
        else if (!strcmp(a, "--steps")) ok = cli_parse_int("train", a, v, 1, 100000000, &steps);
        else if (!strcmp(a, "--batch")) ok = cli_parse_int("train", a, v, 1, 65536, &batch);
        else if (!strcmp(a, "--seq")) ok = cli_parse_int("train", a, v, 1, 1 << 20, &seq);
        else if (!strcmp(a, "--grad-accum")) ok = cli_parse_int("train", a, v, 1, 65536, &accum);
        else if (!strcmp(a, "--warmup")) ok = cli_parse_int("train", a, v, 0, 100000000, &warmup);
        else if (!strcmp(a, "--val-every")) ok = cli_parse_int("train", a, v, 0, 100000000, &val_every);
        else if (!strcmp(a, "--val-batches")) ok = cli_parse_int("train", a, v, 0, 100000000, &val_batches);
        else if (!strcmp(a, "--save-every")) ok = cli_parse_int("train", a, v, 0, 100000000, &save_every);
        else if (!strcmp(a, "--threads")) ok = cli_parse_int("train", a, v, 1, 1024, &threads);
        else if (!strcmp(a, "--seed")) ok = cli_parse_int("train", a, v, 0, 0x7fffffffffffffffL, &seed);
        else if (!strcmp(a, "--lr")) ok = cli_parse_float("train", a, v, 0, 10, &lr);
        else if (!strcmp(a, "--spike-guard")) spike_mode = v;
        else if (!strcmp(a, "--early-stop")) ok = cli_parse_int("train", a, v, 0, 1000000, &es_patience);
        else if (!strcmp(a, "--early-stop-delta")) ok = cli_parse_float("train", a, v, 0, 100, &es_delta);
        else if (!strcmp(a, "--max-forecast-j")) ok = cli_parse_float("train", a, v, 1e-9, 1e15, &max_fc_j);
        else if (!strcmp(a, "--max-forecast-co2-g")) ok = cli_parse_float("train", a, v, 1e-9, 1e15, &max_fc_co2);
        else if (!strcmp(a, "--weight-decay")) ok = cli_parse_float("train", a, v, 0, 10, &wd);
        else if (!strcmp(a, "--grad-clip")) ok = cli_parse_float("train", a, v, 0, 1e9, &clip);
        else {
            fprintf(stderr, "thermo train: unknown option %s\n", a);
            train_usage(stderr);
            return EXIT_USAGE;
        }
        if (!ok) return EXIT_USAGE;
    }
    th_threads_set(threads > 0 ? (int)threads : th_threads_get());
    int erc = cli_eco_resolve(&rf, "train");
    if (erc != EXIT_OK) return erc;

    char ckpt_path[4200], data_dir[4200], train_path[4300], val_path[4300], model_dir[4200];
    snprintf(ckpt_path, sizeof ckpt_path, "%s/checkpoint.bin", out_dir);
    snprintf(data_dir, sizeof data_dir, "%s/data", out_dir);
    snprintf(model_dir, sizeof model_dir, "%s/model", out_dir);
    if (!cli_mkdir_p(data_dir)) {
        fprintf(stderr, "thermo train: cannot create the output directory %s\n", data_dir);
        return EXIT_FAILURE_RUN;
    }

    // --- model
    th_gpt2 *m = NULL;
    th_train_state state;
    memset(&state, 0, sizeof state);
    th_status st;
    int from_scratch = 0;
    const char *preset = model_arg ? model_arg : "small";
    th_gpt2_config cfg;
    th_model_format in_format = TH_FORMAT_UNKNOWN;
    if (resume) {
        st = th_checkpoint_load(ckpt_path, &m, &state);
        if (st != TH_OK) return cli_report(st, "train --resume");
        fprintf(stderr, "resuming %s at step %ld\n", ckpt_path, state.step);
    } else if (access(preset, F_OK) != 0 && th_gpt2_config_preset(preset, &cfg) == TH_OK) {
        st = th_gpt2_create(&cfg, &m);
        if (st != TH_OK) return cli_report(st, "train");
        th_gpt2_init_random(m, (uint64_t)seed);
        from_scratch = 1;
        fprintf(stderr, "model: preset %s from scratch (%zu parameters)\n", preset, th_gpt2_num_params(&cfg));
    } else {
        th_model_info info;
        st = th_model_load_any(preset, &m, &info);
        if (st != TH_OK) return cli_report(st, "train --model");
        in_format = info.format;
        fprintf(stderr, "model: %s (%s, %s, %zu parameters)\n", preset, th_model_format_name(info.format), info.dtype,
                info.num_params);
    }
    // settings: the command line, else the checkpoint's metadata on --resume, else defaults
    if (resume) {
        json_error_t jerr;
        json_t *meta = json_loads(state.run_meta, 0, &jerr);
        if (!json_is_object(meta)) {
            fprintf(stderr, "thermo train: %s holds no run settings to resume with (%s)\n", ckpt_path, jerr.text);
            json_decref(meta);
            th_gpt2_free(m);
            return EXIT_BAD_INPUT;
        }
        struct { const char *key; long *dst; } li[] = {{"steps", &steps}, {"batch", &batch}, {"seq", &seq},
            {"grad_accum", &accum}, {"warmup", &warmup}, {"seed", &seed}};
        for (size_t k = 0; k < sizeof li / sizeof li[0]; k++)
            if (*li[k].dst < 0 && json_is_integer(json_object_get(meta, li[k].key)))
                *li[k].dst = (long)json_integer_value(json_object_get(meta, li[k].key));
        struct { const char *key; double *dst; } dl[] = {{"lr", &lr}, {"weight_decay", &wd}, {"grad_clip", &clip}};
        for (size_t k = 0; k < sizeof dl / sizeof dl[0]; k++)
            if (*dl[k].dst < 0 && json_is_number(json_object_get(meta, dl[k].key)))
                *dl[k].dst = json_number_value(json_object_get(meta, dl[k].key));
        json_decref(meta);
    }
    if (steps < 0) steps = 300;
    if (batch < 0) batch = 8;
    if (seq < 0) seq = 64;
    if (accum < 0) accum = 1;
    if (seed < 0) seed = 1337;
    if (lr < 0) lr = from_scratch ? 1e-3 : 1e-4;
    if (wd < 0) wd = 0.1;
    if (clip < 0) clip = 1.0;
    if (warmup < 0) warmup = steps / 10 > 100 ? 100 : steps / 10;

    cfg = *th_gpt2_get_config(m);
    if (seq > cfg.max_seq_len) {
        fprintf(stderr, "thermo train: --seq %ld exceeds the model's context of %d\n", seq, cfg.max_seq_len);
        th_gpt2_free(m);
        return EXIT_USAGE;
    }

    // --- tokenizer and data
    th_tokenizer *tok = NULL;
    struct stat sb;
    if (model_arg && stat(model_arg, &sb) == 0 && S_ISDIR(sb.st_mode) && th_tokenizer_load_dir(model_arg, &tok) == TH_OK)
        fprintf(stderr, "tokenizer: %s\n", model_arg);
    else if ((st = th_tokenizer_load_default(&tok)) != TH_OK) {
        th_gpt2_free(m);
        return cli_report(st, "train: tokenizer");
    }
    int rc = EXIT_OK;
    th_data_loader *train_dl = NULL, *val_dl = NULL;
    if (n_data == 1 && is_shard(data[0])) {
        snprintf(train_path, sizeof train_path, "%s", data[0]);
        snprintf(val_path, sizeof val_path, "%s", val_shard ? val_shard : "");
    } else {
        const char *inputs[64];
        int n_inputs = 0;
        if (n_data == 0) {
            for (size_t i = 0; i < sizeof default_corpus / sizeof default_corpus[0]; i++)
                if (access(default_corpus[i], R_OK) == 0) inputs[n_inputs++] = default_corpus[i];
            if (n_inputs == 0) {
                fprintf(stderr, "thermo train: the embedded corpus (%s) is not installed: run scripts/setup, or "
                                "pass --data\n", default_corpus[0]);
                rc = EXIT_BAD_INPUT;
                goto done;
            }
        } else {
            for (int i = 0; i < n_data; i++) inputs[n_inputs++] = data[i];
        }
        snprintf(train_path, sizeof train_path, "%s/train.bin", data_dir);
        snprintf(val_path, sizeof val_path, "%s/val.bin", data_dir);
        if (!(resume && is_shard(train_path))) {
            th_dataset_opts dopts = th_dataset_opts_default();
            th_dataset_stats ds;
            st = th_dataset_build(tok, inputs, (size_t)n_inputs, &dopts, train_path, val_path, &ds);
            if (st != TH_OK) {
                rc = cli_report(st, "train --data");
                goto done;
            }
            fprintf(stderr, "data: %zu files, %.1f kB of text -> %llu train + %llu validation tokens\n", ds.files,
                    ds.bytes / 1e3, (unsigned long long)ds.train_tokens, (unsigned long long)ds.val_tokens);
        }
    }
    st = th_data_loader_open(train_path, (int)batch, (int)seq, TH_DATA_SHUFFLED, (uint64_t)seed, &train_dl);
    if (st != TH_OK) {
        rc = cli_report(st, "train: training data");
        goto done;
    }
    if (th_data_loader_vocab_size(train_dl) > (uint64_t)cfg.vocab_size) {
        fprintf(stderr, "thermo train: %s holds token ids up to %llu but the model's vocabulary has %d\n", train_path,
                (unsigned long long)th_data_loader_vocab_size(train_dl) - 1, cfg.vocab_size);
        rc = EXIT_BAD_INPUT;
        goto done;
    }
    if (val_path[0] && val_every > 0) {
        st = th_data_loader_open(val_path, (int)batch, (int)seq, TH_DATA_SEQUENTIAL, 0, &val_dl);
        if (st != TH_OK) {
            rc = cli_report(st, "train: validation data");
            goto done;
        }
    }
    if (resume) {
        th_data_cursor cur = {state.data_cursor[0], state.data_cursor[1], state.data_cursor[2], state.data_cursor[3]};
        st = th_data_loader_set_cursor(train_dl, &cur);
        if (st != TH_OK) {
            rc = cli_report(st, "train --resume: data position");
            goto done;
        }
    }

    // --- train
    th_train_opts o = th_train_defaults(steps);
    o.batch = (int)batch;
    o.seq = (int)seq;
    o.grad_accum = (int)accum;
    o.opt.lr = (float)lr;
    o.opt.weight_decay = (float)wd;
    o.opt.grad_clip = (float)clip;
    o.lr_min = o.opt.lr / 10.0f;
    o.warmup_steps = (int)warmup;
    o.val_every = (int)val_every;
    o.val_batches = (int)val_batches;
    o.save_every = (int)save_every;
    o.checkpoint_path = ckpt_path;
    if (th_guard_mode_parse(spike_mode, &o.health.mode) != TH_OK) {
        fprintf(stderr, "thermo train: --spike-guard must be stop, warn or off, got '%s'\n", spike_mode);
        rc = EXIT_USAGE;
        goto done;
    }
    o.early_stop.patience = (int)es_patience;
    o.early_stop.min_delta = es_delta;
    o.budget = rf.budget;
    o.forecast_limit.energy_j = max_fc_j;
    o.forecast_limit.co2e_g = max_fc_co2;
    o.factors = &rf.factors;
    o.preflight = !no_preflight;
    o.from_scratch = from_scratch;
    json_t *meta = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f}", "tokenizer", "gpt2", "steps",
                             (json_int_t)steps, "batch", (json_int_t)batch, "seq", (json_int_t)seq, "grad_accum",
                             (json_int_t)accum, "warmup", (json_int_t)warmup, "seed", (json_int_t)seed, "lr", lr,
                             "weight_decay", wd, "grad_clip", clip);
    char *meta_text = json_dumps(meta, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(meta);
    o.run_meta = meta_text;
    th_run *run = NULL;
    st = th_run_start(&rf.run, &run);
    if (st != TH_OK) {
        free(meta_text);
        rc = cli_report(st, "train: sensor");
        goto done;
    }
    o.run = run;
    active_run = run;
    progress prog = {steps / 20 > 0 ? steps / 20 : 1, th_now_ns(), state.step, run, &rf};
    o.on_step = print_step;
    o.should_stop = should_stop;
    o.user = &prog;
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);
    fprintf(stderr, "training %ld steps of %ld x %ld tokens (x%ld accumulation), lr %.1e, %d threads, matmul %s\n",
            steps, batch, seq, accum, o.opt.lr, th_threads_get(), th_compute_current());
    th_train_result res;
    st = th_train(m, train_dl, val_dl, &o, &state, &res);
    free(meta_text);
    th_run_figures fig;
    active_run = NULL;
    th_status st_run = th_run_stop(run, &fig);
    if (st == TH_ERR_INTERRUPTED) {
        // the energy of the steps that ran was spent all the same: report it, then stop
        rc = cli_report(st, "train");
        cli_run_units part = {(double)res.tokens, (double)(res.steps_done - prog.start_step), "interrupted", 0, NULL};
        if (st_run == TH_OK) cli_run_report(&rf, "train (interrupted)", &fig, &part);
        goto done;
    }
    if (st != TH_OK) {
        rc = cli_report(st, "train");
        goto done;
    }
    if (st_run != TH_OK) {
        rc = cli_report(st_run, "train: telemetry");
        goto done;
    }
    st = th_hf_save(m, model_dir);
    if (st == TH_OK) st = th_tokenizer_save_dir(tok, model_dir);
    if (st != TH_OK) {
        rc = cli_report(st, "train: saving the model");
        goto done;
    }
    if (res.health.steps_skipped || res.health.rollbacks)
        fprintf(stderr, "guards: %ld steps skipped (%ld NaN/Inf, %ld spikes), %ld rollbacks, %.1f J wasted on them\n",
                res.health.steps_skipped, res.health.nonfinite, res.health.spikes, res.health.rollbacks,
                res.health.energy_wasted_j);
    if (res.stopped_by[0])
        fprintf(stderr, "stopped early by the %s guard: %s; %.1f J of planned work not spent\n", res.stopped_by,
                res.stop_reason, res.energy_saved_j);
    if (res.forecast[0]) fprintf(stderr, "%s\n", res.forecast);
    fprintf(stderr, "done: %ld steps in %.1f s (%.0f tok/s); train loss %.4f", res.steps_done, res.seconds,
            res.tokens / (res.seconds > 0 ? res.seconds : 1), res.last_loss);
    if (res.first_val_loss == res.first_val_loss)
        fprintf(stderr, "; validation loss %.4f -> %.4f", res.first_val_loss, res.last_val_loss);
    if (in_format == TH_FORMAT_LLMC) { // also in the layout it came in
        char llmc_path[4300];
        snprintf(llmc_path, sizeof llmc_path, "%s/model.bin", out_dir);
        if ((st = th_llmc_save(m, llmc_path, 0)) != TH_OK) {
            rc = cli_report(st, "train: saving the llm.c model");
            goto done;
        }
        fprintf(stderr, "\nsaved %s (llm.c layout, as the input)", llmc_path);
    }
    fprintf(stderr, "\nsaved %s (Hugging Face layout) and %s\n", model_dir, ckpt_path);
    cli_run_units units = {(double)res.tokens, (double)(res.steps_done - prog.start_step),
                           res.stopped_by[0] ? res.stopped_by : "completed", 0, NULL};
    rc = cli_run_report(&rf, "train", &fig, &units);
done:
    th_data_loader_close(val_dl);
    th_data_loader_close(train_dl);
    th_tokenizer_free(tok);
    th_gpt2_free(m);
    return rc;
}
