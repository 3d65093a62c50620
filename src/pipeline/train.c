/* train.c: the training loop. Micro-batches from the data loader, forward and backward
 * with gradient accumulation, global-norm clipping, AdamW on a warmup + cosine schedule,
 * periodic validation and atomic checkpoints that a resumed run continues exactly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thermo/pipeline.h"

th_train_opts th_train_defaults(long steps) {
    th_train_opts o;
    memset(&o, 0, sizeof o);
    o.steps = steps;
    o.batch = 4;
    o.seq = 64;
    o.grad_accum = 1;
    o.opt = th_adamw_defaults();
    o.lr_min = o.opt.lr / 10.0f;
    long w = steps / 10;
    o.warmup_steps = (int)(w > 100 ? 100 : w);
    o.val_every = 50;
    o.val_batches = 8;
    return o;
}

th_status th_evaluate(th_gpt2 *m, th_data_loader *val, int B, int T, int batches, float *loss) {
    th_status st = TH_OK;
    th_data_loader_reset(val);
    uint64_t n = th_data_loader_batches_per_epoch(val);
    if (batches > 0 && (uint64_t)batches < n) n = (uint64_t)batches;
    if (n == 0) return th_fail(TH_ERR_INVALID, "validation: the split holds no complete batch of %d x %d", B, T);
    int *in = malloc(sizeof(int) * (size_t)B * T * 2);
    if (!in) return th_fail(TH_ERR_NOMEM, "validation: out of memory");
    double sum = 0.0;
    for (uint64_t i = 0; i < n && st == TH_OK; i++) {
        float l = 0;
        th_data_loader_next(val, in, in + (size_t)B * T);
        st = th_gpt2_forward(m, in, in + (size_t)B * T, B, T, &l);
        sum += l;
    }
    free(in);
    if (st == TH_OK) *loss = (float)(sum / (double)n);
    return st;
}

static th_status save_checkpoint(th_gpt2 *m, th_data_loader *train, const th_train_opts *o, th_train_state *st) {
    th_data_cursor cur;
    th_data_loader_get_cursor(train, &cur);
    st->data_cursor[0] = cur.epoch;
    st->data_cursor[1] = cur.index;
    st->data_cursor[2] = cur.seed;
    st->data_cursor[3] = cur.n_windows;
    if (o->run_meta) snprintf(st->run_meta, sizeof st->run_meta, "%s", o->run_meta);
    return th_checkpoint_save(o->checkpoint_path, m, st);
}

th_status th_train(th_gpt2 *m, th_data_loader *train, th_data_loader *val, const th_train_opts *o,
                   th_train_state *st, th_train_result *out) {
    memset(out, 0, sizeof *out);
    out->last_val_loss = out->first_val_loss = NAN;
    if (o->steps <= 0 || o->batch <= 0 || o->seq <= 0 || o->grad_accum <= 0)
        return th_fail(TH_ERR_INVALID, "train: steps %ld, batch %d, seq %d and grad_accum %d must be positive",
                       o->steps, o->batch, o->seq, o->grad_accum);
    if (st->step > o->steps)
        return th_fail(TH_ERR_INVALID, "train: the checkpoint is at step %ld, past the %ld steps asked for", st->step,
                       o->steps);
    int B = o->batch, T = o->seq;
    size_t BT = (size_t)B * T;
    int *batch = malloc(sizeof(int) * BT * 2);
    if (!batch) return th_fail(TH_ERR_NOMEM, "train: out of memory");
    th_lr_schedule sched = {o->opt.lr, o->lr_min, o->warmup_steps, (int)o->steps};
    uint64_t t_start = th_now_ns();
    th_status status = TH_OK;
    out->steps_done = st->step;

    th_data_cursor step_start;
    while (st->step < o->steps) {
        uint64_t t0 = th_now_ns();
        th_data_loader_get_cursor(train, &step_start);
        th_run_unit_begin(o->run);
        status = th_gpt2_zero_grad(m);
        double loss_sum = 0.0;
        for (int micro = 0; micro < o->grad_accum && status == TH_OK; micro++) {
            if (o->should_stop && o->should_stop(o->user)) {
                status = TH_ERR_INTERRUPTED;
                break;
            }
            // A unit of work is a micro-batch; the last one runs on through the update,
            // validation and checkpoint, so all the step's compute counts as busy time.
            float loss = 0;
            if (micro > 0) th_run_unit_begin(o->run);
            th_data_loader_next(train, batch, batch + BT);
            status = th_gpt2_forward(m, batch, batch + BT, B, T, &loss);
            if (status == TH_OK) status = th_gpt2_backward(m, 1.0f / (float)o->grad_accum);
            if (micro + 1 < o->grad_accum) {
                th_status paced = th_run_unit_end(o->run); // idle injection: waits only
                if (status == TH_OK) status = paced;
            }
            loss_sum += loss;
        }
        if (status != TH_OK) break;
        th_step_record rec;
        memset(&rec, 0, sizeof rec);
        rec.grad_norm = th_gpt2_grad_norm(m);
        rec.lr = th_lr_at(&sched, (int)st->step);
        status = th_gpt2_adamw_step(m, &o->opt, rec.lr, rec.grad_norm);
        if (status != TH_OK) break;
        st->step++;
        rec.step = st->step;
        rec.total_steps = o->steps;
        rec.loss = (float)(loss_sum / o->grad_accum);
        rec.tokens = (long)(BT * o->grad_accum);
        rec.val_loss = NAN;
        int last = st->step == o->steps;
        if (val && o->val_every > 0 && (st->step % o->val_every == 0 || last)) {
            status = th_evaluate(m, val, B, T, o->val_batches, &rec.val_loss);
            if (status != TH_OK) break;
            if (isnan(out->first_val_loss)) out->first_val_loss = rec.val_loss;
            out->last_val_loss = rec.val_loss;
        }
        if (o->checkpoint_path && (last || (o->save_every > 0 && st->step % o->save_every == 0))) {
            status = save_checkpoint(m, train, o, st);
            if (status != TH_OK) break;
            rec.saved = 1;
        }
        rec.t_ns = th_now_ns();
        rec.step_ms = (rec.t_ns - t0) / 1e6;
        out->tokens += rec.tokens;
        out->last_loss = rec.loss;
        out->steps_done = st->step;
        th_run_log_step(o->run, &rec);
        if (o->on_step) o->on_step(&rec, o->user);
        // the step is complete: an interruption from here on resumes after it
        th_data_loader_get_cursor(train, &step_start);
        status = th_run_unit_end(o->run);
        if (status != TH_OK) break;
    }
    if (status == TH_ERR_INTERRUPTED && o->checkpoint_path) {
        // a step cut short is dropped whole: the loader goes back to where the step began
        th_status s2 = th_data_loader_set_cursor(train, &step_start);
        if (s2 == TH_OK) s2 = save_checkpoint(m, train, o, st);
        if (s2 != TH_OK) status = s2;
        else th_fail(TH_ERR_INTERRUPTED, "train: stopped at step %ld; checkpoint saved to %s", st->step,
                     o->checkpoint_path);
    } else if (status == TH_ERR_INTERRUPTED) {
        th_fail(TH_ERR_INTERRUPTED, "train: stopped at step %ld", st->step);
    }
    out->seconds = (th_now_ns() - t_start) / 1e9;
    free(batch);
    return status;
}
