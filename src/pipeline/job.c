/* job.c: a whole training job, th_train_job_run: the model (a preset from scratch, a model
 * file or directory, or the job's own checkpoint on resume), the settings (given, else
 * recorded in the checkpoint, else the defaults, decided here once), the tokenizer and the
 * data (text built into token shards, or shards as given; the embedded corpus by default),
 * the monitored run, th_train, and the trained model saved in Hugging Face layout (and in
 * llm.c layout when it came in that way). `thermo train` and `thermo session` call it. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "thermo/dist.h"
#include "thermo/pipeline.h"

#ifndef THERMO_DATA_DIR
#define THERMO_DATA_DIR "data"
#endif

/* The embedded default corpus: public-domain text from Debian packages that scripts/setup
 * installs: the King James Bible (bible-kjv, dumped to .deps/corpus/kjv.txt) and the
 * fortunes of fortunes-min. Missing paths are skipped; none at all is an error. */
static const char *const default_corpus[] = {
    THERMO_DATA_DIR "/../.deps/corpus/kjv.txt",
    "/usr/share/games/fortunes/fortunes",
    "/usr/share/games/fortunes/literature",
    "/usr/share/games/fortunes/riddles",
};

const char *th_train_job_default_corpus(void) { return default_corpus[0]; }

th_train_job th_train_job_defaults(void) {
    th_train_job j;
    memset(&j, 0, sizeof j);
    j.out_dir = "runs/default";
    j.settings = th_run_meta_empty();
    j.val_every = 50;
    j.val_batches = 8;
    j.spike_mode = TH_GUARD_STOP;
    j.early_stop_delta = 0.001;
    j.preflight = 1;
    j.run = th_run_opts_default();
    return j;
}

/* Settings given > recorded in the checkpoint > defaults (300 steps of 8 x 64, lr 1e-3 from
 * scratch and 1e-4 fine-tuning, AdamW decay 0.1, clip 1, warmup 10 % of steps up to 100). */
static th_run_meta decide_settings(const th_run_meta *given, const th_run_meta *recorded, int from_scratch) {
    th_run_meta s = *given;
    uint32_t rec = recorded ? recorded->has & ~s.has : 0;
    if (rec & TH_META_STEPS) s.steps = recorded->steps;
    if (rec & TH_META_BATCH) s.batch = recorded->batch;
    if (rec & TH_META_SEQ) s.seq = recorded->seq;
    if (rec & TH_META_GRAD_ACCUM) s.grad_accum = recorded->grad_accum;
    if (rec & TH_META_WARMUP) s.warmup = recorded->warmup;
    if (rec & TH_META_SEED) s.seed = recorded->seed;
    if (rec & TH_META_LR) s.lr = recorded->lr;
    if (rec & TH_META_WEIGHT_DECAY) s.weight_decay = recorded->weight_decay;
    if (rec & TH_META_GRAD_CLIP) s.grad_clip = recorded->grad_clip;
    if (rec & TH_META_PRECISION) s.precision = recorded->precision;
    s.has |= rec;
    if (recorded) s.last_val_loss = recorded->last_val_loss;
    if (!(s.has & TH_META_STEPS)) s.steps = 300;
    if (!(s.has & TH_META_BATCH)) s.batch = 8;
    if (!(s.has & TH_META_SEQ)) s.seq = 64;
    if (!(s.has & TH_META_GRAD_ACCUM)) s.grad_accum = 1;
    if (!(s.has & TH_META_SEED)) s.seed = 1337;
    if (!(s.has & TH_META_LR)) s.lr = from_scratch ? 1e-3 : 1e-4;
    if (!(s.has & TH_META_WEIGHT_DECAY)) s.weight_decay = 0.1;
    if (!(s.has & TH_META_GRAD_CLIP)) s.grad_clip = 1.0;
    if (!(s.has & TH_META_WARMUP)) s.warmup = (int)(s.steps / 10 > 100 ? 100 : s.steps / 10);
    if (!(s.has & TH_META_PRECISION)) s.precision = 0; // f32
    s.has = TH_META_STEPS | TH_META_BATCH | TH_META_SEQ | TH_META_GRAD_ACCUM | TH_META_WARMUP | TH_META_SEED |
            TH_META_LR | TH_META_WEIGHT_DECAY | TH_META_GRAD_CLIP | TH_META_PRECISION;
    return s;
}

static int is_shard(const char *path) {
    th_shard_info info;
    return th_shard_read_info(path, &info) == TH_OK;
}

/* The model: resumed from the job's checkpoint, a preset from scratch, or a file. */
static th_status open_model(const th_train_job *j, const char *ckpt_path, th_gpt2 **m, th_train_state *state,
                            th_run_meta *recorded, int *have_recorded, th_train_job_result *out) {
    const char *model = j->model ? j->model : "small";
    th_gpt2_config cfg;
    th_status st;
    if (j->resume) {
        if ((st = th_checkpoint_load(ckpt_path, m, state)) != TH_OK) return st;
        if ((st = th_run_meta_parse(state->run_meta, ckpt_path, recorded)) != TH_OK) return st;
        *have_recorded = 1;
        th_log(TH_LOG_INFO, "resuming %s at step %ld", ckpt_path, state->step);
    } else if (j->start_model) {
        *m = j->start_model;
    } else if (access(model, F_OK) != 0 && th_gpt2_config_preset(model, &cfg) == TH_OK) {
        if ((st = th_gpt2_create(&cfg, m)) != TH_OK) return st;
        th_gpt2_init_random(*m, j->settings.has & TH_META_SEED ? j->settings.seed : 1337);
        out->from_scratch = 1;
        th_log(TH_LOG_INFO, "model: preset %s from scratch (%zu parameters)", model, th_gpt2_num_params(&cfg));
    } else {
        th_model_info info;
        if ((st = th_model_load_any(model, m, &info)) != TH_OK) return st;
        out->input_format = info.format;
        th_log(TH_LOG_INFO, "model: %s (%s, %s, %zu parameters)", model, th_model_format_name(info.format), info.dtype,
               info.num_params);
    }
    return TH_OK;
}

/* Token shards for training and validation: the given shard, or text built into
 * OUT/data/{train,val}.bin (kept on resume). */
static th_status open_data(const th_train_job *j, const th_tokenizer *tok, const th_run_meta *s, const char *data_dir,
                           th_data_loader **train, th_data_loader **val) {
    char train_path[4300], val_path[4300];
    th_status st;
    if (j->n_data == 1 && is_shard(j->data[0])) {
        snprintf(train_path, sizeof train_path, "%s", j->data[0]);
        snprintf(val_path, sizeof val_path, "%s", j->val_shard ? j->val_shard : "");
    } else {
        const char *inputs[TH_TRAIN_JOB_MAX_DATA];
        size_t n = 0;
        if (j->n_data == 0) {
            for (size_t i = 0; i < sizeof default_corpus / sizeof default_corpus[0]; i++)
                if (access(default_corpus[i], R_OK) == 0) inputs[n++] = default_corpus[i];
            if (n == 0)
                return th_fail(TH_ERR_IO, "the embedded corpus (%s) is not installed: run scripts/setup, or pass --data",
                               default_corpus[0]);
        } else {
            if (j->n_data > TH_TRAIN_JOB_MAX_DATA)
                return th_fail(TH_ERR_INVALID, "at most %d data paths", TH_TRAIN_JOB_MAX_DATA);
            for (size_t i = 0; i < j->n_data; i++) inputs[n++] = j->data[i];
        }
        snprintf(train_path, sizeof train_path, "%s/train.bin", data_dir);
        snprintf(val_path, sizeof val_path, "%s/val.bin", data_dir);
        st = TH_OK;
        int builder = !j->dp || th_dp_rank(j->dp) == 0; // with ranks, rank 0 builds; the others wait
        if (builder && !(j->resume && is_shard(train_path))) {
            th_dataset_opts dopts = th_dataset_opts_default();
            th_dataset_stats ds;
            st = th_dataset_build(tok, inputs, n, &dopts, train_path, val_path, &ds);
            if (st == TH_OK)
                th_log(TH_LOG_INFO, "data: %zu files, %.1f kB of text -> %llu train + %llu validation tokens",
                       ds.files, ds.bytes / 1e3, (unsigned long long)ds.train_tokens,
                       (unsigned long long)ds.val_tokens);
        }
        if (j->dp) st = th_dp_agree(j->dp, st);
        if (st != TH_OK) return st;
    }
    if ((st = th_data_loader_open(train_path, s->batch, s->seq, TH_DATA_SHUFFLED, s->seed, train)) != TH_OK) return st;
    if (val_path[0] && j->val_every > 0 &&
        (st = th_data_loader_open(val_path, s->batch, s->seq, TH_DATA_SEQUENTIAL, 0, val)) != TH_OK)
        return st;
    return TH_OK;
}

typedef struct {
    const th_train_job *job;
    uint64_t deadline_ns;
    int deadline_hit;
    th_run *run;
} job_ctx;

/* Polled between micro-batches: the caller's request, or the deadline (which also cuts
 * the pacing wait in progress short, as Ctrl-C does). */
static int job_should_stop(void *user) {
    job_ctx *c = user;
    if (c->deadline_ns && !c->deadline_hit && th_now_ns() >= c->deadline_ns) {
        c->deadline_hit = 1;
        th_run_interrupt(c->run);
    }
    return c->deadline_hit || (c->job->should_stop && c->job->should_stop(c->job->user));
}

static void job_on_step(const th_step_record *rec, void *user) {
    job_ctx *c = user;
    if (c->job->on_step) c->job->on_step(rec, c->job->user);
}

th_status th_train_job_run(const th_train_job *j, th_train_job_result *out) {
    memset(out, 0, sizeof *out);
    out->train.last_val_loss = out->train.first_val_loss = NAN;
    const char *dir = j->out_dir ? j->out_dir : "runs/default";
    snprintf(out->checkpoint_path, sizeof out->checkpoint_path, "%s/checkpoint.bin", dir);
    snprintf(out->model_dir, sizeof out->model_dir, "%s/model", dir);
    char data_dir[4200];
    snprintf(data_dir, sizeof data_dir, "%s/data", dir);
    th_gpt2 *m = NULL;
    th_tokenizer *tok = NULL;
    th_data_loader *train = NULL, *val = NULL;
    th_run *run = NULL;
    th_train_state state;
    memset(&state, 0, sizeof state);
    th_run_meta recorded;
    int have_recorded = 0;
    th_status st = th_mkdir_p(data_dir);
    if (st != TH_OK) goto done;
    st = open_model(j, out->checkpoint_path, &m, &state, &recorded, &have_recorded, out);
    if (j->dp) st = th_dp_agree(j->dp, st); // a rank that cannot open the model stops them all
    if (st != TH_OK) goto done;
    out->settings = decide_settings(&j->settings, have_recorded ? &recorded : NULL, out->from_scratch);
    const th_run_meta *s = &out->settings;
    const th_gpt2_config *cfg = th_gpt2_get_config(m);
    if (s->seq > cfg->max_seq_len) {
        st = th_fail(TH_ERR_INVALID, "--seq %d exceeds the model's context of %d", s->seq, cfg->max_seq_len);
        goto done;
    }
    if ((st = th_model_load_tokenizer(j->model, &tok)) != TH_OK && !j->dp) goto done;
    if (j->dp) { // every failure before the first step is agreed, so no rank waits for another
        if ((st = th_dp_agree(j->dp, st)) != TH_OK) goto done;
        if ((st = th_dp_agree(j->dp, open_data(j, tok, s, data_dir, &train, &val))) != TH_OK) goto done;
    } else if ((st = open_data(j, tok, s, data_dir, &train, &val)) != TH_OK) goto done;
    if (th_data_loader_vocab_size(train) > (uint64_t)cfg->vocab_size)
        st = th_fail(TH_ERR_FORMAT, "the training data holds token ids up to %llu but the model's vocabulary has %d",
                     (unsigned long long)th_data_loader_vocab_size(train) - 1, cfg->vocab_size);
    if (j->dp) st = th_dp_agree(j->dp, st);
    if (st != TH_OK) goto done;
    if (j->resume) {
        th_data_cursor cur = {state.data_cursor[0], state.data_cursor[1], state.data_cursor[2], state.data_cursor[3]};
        if ((st = th_data_loader_set_cursor(train, &cur)) != TH_OK) goto done;
    }

    th_train_opts o = th_train_opts_from_meta(s);
    o.val_every = j->val_every;
    o.val_batches = j->val_batches;
    o.save_every = j->save_every;
    o.checkpoint_path = out->checkpoint_path;
    o.health.mode = j->spike_mode;
    o.early_stop.patience = j->early_stop_patience;
    o.early_stop.min_delta = j->early_stop_delta;
    o.budget = j->budget;
    o.forecast_limit = j->forecast_limit;
    o.factors = j->run.factors;
    o.preflight = j->preflight;
    o.from_scratch = out->from_scratch;
    job_ctx ctx = {j, j->deadline_s > 0 ? th_now_ns() + (uint64_t)(j->deadline_s * 1e9) : 0, 0, NULL};
    o.teacher = j->teacher;
    o.micro_loss = j->micro_loss;
    o.hook_user = j->hook_user;
    o.should_stop = job_should_stop;
    o.on_step = job_on_step;
    o.user = &ctx;
    o.dp = j->dp;
    st = th_run_start(&j->run, &run);
    if (j->dp) st = th_dp_agree(j->dp, st);
    if (st != TH_OK) goto done;
    if (j->on_run_started) j->on_run_started(run, j->user);
    o.run = ctx.run = run;
    out->start_step = state.step;
    th_log(TH_LOG_INFO, "training %ld steps of %d x %d tokens (x%d accumulation), lr %.1e, %d threads, compute %s, %s",
           s->steps, s->batch, s->seq, s->grad_accum, s->lr, th_threads_get(), th_compute_current(),
           th_precision_name((th_precision)s->precision));
    st = th_train(m, train, val, &o, &state, &out->train);
    if (j->on_run_started) j->on_run_started(NULL, j->user);
    th_status st_run = th_run_stop(run, &out->figures);
    run = NULL;
    out->have_figures = st_run == TH_OK;
    out->deadline_hit = ctx.deadline_hit;
    if (st == TH_OK) st = st_run;
    if (st != TH_OK) goto done;
    if (j->dp && !th_dp_writer_after_barrier(j->dp)) goto done; // rank 0 saves the model
    if ((st = th_hf_save(m, out->model_dir)) != TH_OK || (st = th_tokenizer_save_dir(tok, out->model_dir)) != TH_OK)
        goto done;
    if (out->input_format == TH_FORMAT_LLMC) { // also in the layout it came in
        snprintf(out->llmc_path, sizeof out->llmc_path, "%s/model.bin", dir);
        st = th_llmc_save(m, out->llmc_path, 0);
    }
done:
    th_run_stop(run, NULL);
    th_data_loader_close(val);
    th_data_loader_close(train);
    th_tokenizer_free(tok);
    if (m != j->start_model) th_gpt2_free(m);
    return st;
}
