/* test_pipeline_guards.c: the waste guards inside the real training loop (th_train), with
 * planted faults: a NaN at step k never reaches the weights; loss spikes are skipped and
 * repeated spikes roll back to the last checkpoint, deterministically; a budget ends the
 * run without overshooting; a plateau stops it early; a forecast over its limit refuses. */
#include "test_util.h"
#include "thermo/pipeline.h"

typedef struct {
    long nan_step;        /* plant a NaN gradient at this step (0: none) */
    long spikes[4];       /* multiply the loss by 100 at these steps */
} plan;

static void inject(th_gpt2 *m, long step, float *loss, void *user) {
    const plan *p = user;
    if (step == p->nan_step) th_gpt2_grads(m)[123] = NAN;
    for (int i = 0; i < 4; i++)
        if (p->spikes[i] == step) *loss *= 100.0f;
}

static char shard[4200], ckpt[4200];

/* The guards' test model (1 layer, 16 channels, vocabulary 64) and its shuffled loader. */
static th_gpt2 *guard_model(th_data_loader **dl) {
    th_gpt2_config cfg = {32, 64, 1, 2, 16, 1e-5f};
    th_gpt2 *m;
    th_gpt2_create(&cfg, &m);
    th_gpt2_init_random(m, 3);
    th_data_loader_open(shard, 4, 16, TH_DATA_SHUFFLED, 9, dl);
    return m;
}

static th_status run(long steps, plan *p, th_train_opts *o, th_train_result *res, float **weights) {
    th_data_loader *dl;
    th_gpt2 *m = guard_model(&dl);
    if (!o->steps) *o = th_train_defaults(steps);
    o->steps = steps;
    o->batch = 4;
    o->seq = 16;
    o->val_every = 0;
    o->inject = inject;
    o->user = p;
    o->checkpoint_path = ckpt;
    o->save_every = 10;
    o->preflight = 0;
    remove(ckpt);
    th_train_state st;
    memset(&st, 0, sizeof st);
    th_status s = th_train(m, dl, NULL, o, &st, res);
    size_t n = th_gpt2_num_params(th_gpt2_get_config(m));
    *weights = malloc(n * sizeof(float));
    memcpy(*weights, th_gpt2_params(m), n * sizeof(float));
    th_data_loader_close(dl);
    th_gpt2_free(m);
    return s;
}

static size_t nparams(void) {
    th_gpt2_config cfg = {32, 64, 1, 2, 16, 1e-5f};
    return th_gpt2_num_params(&cfg);
}

int main(void) {
    const char *dir = test_tmp_dir("pipeline_guards");
    snprintf(shard, sizeof shard, "%.4000s/train.bin", dir);
    snprintf(ckpt, sizeof ckpt, "%.4000s/ckpt.bin", dir);
    // a learnable stream: a noisy repeating pattern over 64 ids
    int tokens[20000];
    th_rng rng;
    th_rng_seed(&rng, 1);
    for (int i = 0; i < 20000; i++) tokens[i] = (th_rng_u64(&rng) % 8 == 0) ? (int)(th_rng_u64(&rng) % 64) : (i * 7) % 64;
    CHECK(th_shard_write(shard, tokens, 20000, 64) == TH_OK, "shard: %s", th_last_error());
    size_t n = nparams();

    // NaN planted at step 5: skipped, never in the weights
    th_train_opts o;
    memset(&o, 0, sizeof o);
    th_train_result res;
    plan p1 = {5, {0}};
    float *w = NULL;
    CHECK(run(20, &p1, &o, &res, &w) == TH_OK, "train: %s", th_last_error());
    int finite = 1;
    for (size_t i = 0; i < n; i++) finite &= isfinite(w[i]);
    printf("NaN at step 5: %ld skipped (%ld non-finite), weights finite: %d\n", res.health.steps_skipped,
           res.health.nonfinite, finite);
    CHECK(finite, "a NaN reached the weights");
    CHECK(res.health.nonfinite == 1 && res.health.steps_skipped == 1, "non-finite %ld skipped %ld", res.health.nonfinite,
          res.health.steps_skipped);
    CHECK(res.health.n_events >= 1 && res.health.events[0].step == 5, "the event is not at step 5");
    free(w);

    // spikes at 80, 85, 90 (armed after 64 steps): skips, then a rollback to the checkpoint
    // of step 80; two runs end with identical weights
    float *wa = NULL, *wb = NULL;
    for (int r = 0; r < 2; r++) {
        plan p2 = {0, {80, 85, 90, 0}};
        memset(&o, 0, sizeof o);
        CHECK(run(120, &p2, &o, &res, r ? &wb : &wa) == TH_OK, "train: %s", th_last_error());
        if (r == 0)
            printf("spikes at 80, 85, 90: %ld skipped, %ld spikes, %ld rollbacks, %ld steps done\n",
                   res.health.steps_skipped, res.health.spikes, res.health.rollbacks, res.steps_done);
        // the rollback restores the checkpoint of step 80 and replays steps 81..90 on new batches;
        // the plan is keyed by step number, so 85 and 90 spike again: 5 spikes, still 1 rollback
        CHECK(res.health.spikes == 5 && res.health.rollbacks == 1, "spikes %ld rollbacks %ld", res.health.spikes,
              res.health.rollbacks);
        CHECK(res.steps_done == 120, "steps done %ld", res.steps_done);
    }
    CHECK(wa && wb && memcmp(wa, wb, n * 4) == 0, "a rollback run is not deterministic");
    free(wa);
    free(wb);

    // budget: 0.2 s of compute; the run stops before a step it cannot pay for
    memset(&o, 0, sizeof o);
    o = th_train_defaults(100000);
    o.budget.seconds = 0.2;
    plan none = {0, {0}};
    CHECK(run(100000, &none, &o, &res, &w) == TH_OK, "train: %s", th_last_error());
    printf("budget 0.2 s: stopped by '%s' after %ld steps: %s\n", res.stopped_by, res.steps_done, res.stop_reason);
    CHECK(!strcmp(res.stopped_by, "budget") && res.steps_done < 100000, "budget did not stop the run");
    CHECK(strstr(res.stop_reason, "time") != NULL, "reason: %s", res.stop_reason);
    free(w);

    // forecast: a limit on projected seconds far below what 100000 steps take: refused after 50 steps
    o = th_train_defaults(100000);
    o.forecast_limit.seconds = 1.0;
    CHECK(run(100000, &none, &o, &res, &w) == TH_OK, "train: %s", th_last_error());
    printf("forecast limit 1 s: stopped by '%s' at step %ld\n", res.stopped_by, res.steps_done);
    CHECK(!strcmp(res.stopped_by, "forecast") && res.steps_done == 50, "forecast stop at %ld", res.steps_done);
    free(w);

    // plateau: lr 0 keeps the validation loss constant: stop after `patience` validations
    th_data_loader *val;
    th_data_loader_open(shard, 4, 16, TH_DATA_SEQUENTIAL, 0, &val);
    th_data_loader *dl;
    th_gpt2 *m = guard_model(&dl);
    o = th_train_defaults(1000);
    o.batch = 4, o.seq = 16, o.preflight = 0, o.val_every = 5, o.val_batches = 2;
    o.opt.lr = 0.0f, o.lr_min = 0.0f;
    o.early_stop.patience = 3;
    th_train_state st;
    memset(&st, 0, sizeof st);
    CHECK(th_train(m, dl, val, &o, &st, &res) == TH_OK, "train: %s", th_last_error());
    printf("plateau: stopped by '%s' at step %ld: %s\n", res.stopped_by, res.steps_done, res.stop_reason);
    CHECK(!strcmp(res.stopped_by, "early stop") && res.steps_done == 20, "early stop at %ld", res.steps_done);
    th_data_loader_close(dl);
    th_data_loader_close(val);
    th_gpt2_free(m);
    return test_summary();
}
