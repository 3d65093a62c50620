/* train.c: the training loop. Micro-batches from the data loader, forward and backward
 * with gradient accumulation, global-norm clipping, AdamW on a warmup + cosine schedule,
 * periodic validation and atomic checkpoints that a resumed run continues exactly. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thermo/dist.h"
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
    o.health = th_train_health_defaults();
    o.early_stop = th_early_stop_defaults();
    o.early_stop.patience = 0;
    o.preflight = 1;
    o.meta = th_run_meta_empty();
    return o;
}

th_train_opts th_train_opts_from_meta(const th_run_meta *s) {
    th_train_opts o = th_train_defaults(s->steps);
    o.batch = s->batch;
    o.seq = s->seq;
    o.grad_accum = s->grad_accum;
    o.opt.lr = (float)s->lr;
    o.opt.weight_decay = (float)s->weight_decay;
    o.opt.grad_clip = (float)s->grad_clip;
    o.lr_min = o.opt.lr / 10.0f;
    o.warmup_steps = s->warmup;
    o.precision = s->precision;
    o.meta = *s;
    return o;
}

th_status th_evaluate(th_gpt2 *m, th_data_loader *val, int B, int T, int batches, float *loss) {
    th_status st = TH_OK;
    th_data_loader_reset(val);
    uint64_t n = th_data_loader_batches_per_epoch(val);
    if (batches > 0 && (uint64_t)batches < n) n = (uint64_t)batches;
    if (n == 0) return th_fail(TH_ERR_INVALID, "validation: the split holds no complete batch of %d x %d", B, T);
    int *in = th_alloc(sizeof(int) * (size_t)B * T * 2);
    if (!in) return th_fail(TH_ERR_NOMEM, "validation: out of memory");
    double sum = 0.0;
    for (uint64_t i = 0; i < n && st == TH_OK; i++) {
        float l = 0;
        th_data_loader_next(val, in, in + (size_t)B * T);
        st = th_gpt2_forward(m, in, in + (size_t)B * T, B, T, &l);
        sum += l;
    }
    th_free(in);
    if (st == TH_OK) *loss = (float)(sum / (double)n);
    return st;
}

static th_status save_checkpoint(th_gpt2 *m, th_data_loader *train, const th_train_opts *o, th_train_state *st,
                                 float last_val_loss) {
    th_data_cursor cur;
    th_data_loader_get_cursor(train, &cur);
    st->data_cursor[0] = cur.epoch;
    st->data_cursor[1] = cur.index;
    st->data_cursor[2] = cur.seed;
    st->data_cursor[3] = cur.n_windows;
    th_run_meta meta = o->meta;
    if (isfinite(last_val_loss)) meta.last_val_loss = last_val_loss;
    if (o->dp && !th_dp_writer_after_barrier(o->dp)) return th_dp_agree(o->dp, TH_OK); // rank 0 writes
    th_status s = th_run_meta_to_json(&meta, st->run_meta, sizeof st->run_meta);
    if (s == TH_OK) s = th_checkpoint_save(o->checkpoint_path, m, st);
    return o->dp ? th_dp_agree(o->dp, s) : s; // no rank goes on (or reads it back) before it is whole
}

/* Data parallel: what every rank must agree on before the first step. */
static uint64_t dp_settings_hash(const th_train_opts *o) {
    const double v[] = {(double)o->steps, o->batch, o->seq, o->grad_accum, o->opt.lr, o->opt.beta1, o->opt.beta2,
                        o->opt.eps, o->opt.weight_decay, o->opt.grad_clip, o->lr_min, o->warmup_steps,
                        (double)o->meta.seed, o->preflight, o->health.mode};
    return th_dp_hash(TH_DP_FNV_BASIS, v, sizeof v);
}

/* Data parallel: a pacing wait cut short by a stop request does not end the step on this
 * rank alone; the stop is agreed at the next step's start. */
static th_status dp_paced(const th_train_opts *o, th_status paced) {
    return o->dp && paced == TH_ERR_INTERRUPTED ? TH_OK : paced;
}

/* Preflight: what would make a long run fail or waste, checked before it starts. */
static th_status preflight(th_gpt2 *m, th_data_loader *train, const th_train_opts *o, const th_train_state *st,
                           const int *batch) {
    const th_gpt2_config *cfg = th_gpt2_get_config(m);
    th_preflight_memory mem;
    th_status s = th_preflight_memory_check(cfg, o->batch, o->seq, NULL, SIZE_MAX, &mem);
    if (s != TH_OK) return s;
    th_log(TH_LOG_INFO, "preflight: training needs %.0f MB, %.0f MB available", mem.total_bytes / 1e6,
           mem.available_bytes / 1e6);
    if (th_data_loader_vocab_size(train) > (uint64_t)cfg->vocab_size)
        return th_fail(TH_ERR_INVALID, "preflight: the data holds token ids up to %llu, the model's vocabulary is %d",
                       (unsigned long long)th_data_loader_vocab_size(train) - 1, cfg->vocab_size);
    if (o->from_scratch && st->step == 0) {
        float loss = 0;
        size_t BT = (size_t)o->batch * o->seq;
        s = th_gpt2_forward(m, batch, batch + BT, o->batch, o->seq, &loss);
        if (s == TH_OK) s = th_preflight_check_init_loss(loss, cfg->vocab_size, 0.0);
        if (s != TH_OK) return s;
        th_log(TH_LOG_INFO, "preflight: loss at init %.3f, ln(vocab) %.3f", loss, log((double)cfg->vocab_size));
    }
    if (o->checkpoint_path && (!o->dp || th_dp_rank(o->dp) == 0)) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.preflight", o->checkpoint_path);
        s = th_preflight_checkpoint_roundtrip(m, st, tmp);
        if (s != TH_OK) return s;
        th_log(TH_LOG_INFO, "preflight: checkpoint save -> load -> compare is bit-identical");
    }
    return TH_OK;
}

/* After a ROLLBACK verdict: the last checkpoint's weights and moments replace the current
 * ones (the data position moves on, so the offending batches are skipped). */
static th_status rollback(th_gpt2 *m, const th_train_opts *o, th_train_state *st, long *restored) {
    th_gpt2 *old = NULL;
    th_train_state ost;
    th_status s = o->checkpoint_path ? th_checkpoint_load(o->checkpoint_path, &old, &ost)
                                     : th_fail(TH_ERR_STATE, "no checkpoint path");
    if (s != TH_OK) return s;
    size_t n = th_gpt2_num_params(th_gpt2_get_config(m));
    if (n != th_gpt2_num_params(th_gpt2_get_config(old))) {
        th_gpt2_free(old);
        return th_fail(TH_ERR_FORMAT, "%s: another model shape", o->checkpoint_path);
    }
    memcpy(th_gpt2_params(m), th_gpt2_params(old), n * sizeof(float));
    if (th_gpt2_adam_m(old) && (s = th_gpt2_adam_restore(m, th_gpt2_adam_steps(old))) == TH_OK) {
        memcpy(th_gpt2_adam_m(m), th_gpt2_adam_m(old), n * sizeof(float));
        memcpy(th_gpt2_adam_v(m), th_gpt2_adam_v(old), n * sizeof(float));
    }
    *restored = ost.step;
    st->step = ost.step;
    th_gpt2_free(old);
    return s;
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
    th_gpt2_set_train_precision(m, (th_precision)o->precision);
    int B = o->batch, T = o->seq;
    size_t BT = (size_t)B * T;
    int *batch = th_alloc(sizeof(int) * BT * 2);
    th_train_health *health = NULL;
    th_forecast *forecast = NULL;
    th_early_stop es;
    th_budget budget;
    th_status status = TH_OK;
    if (!batch) return th_fail(TH_ERR_NOMEM, "train: out of memory");
    th_forecast_config fc = th_forecast_defaults(o->steps - st->step > 0 ? o->steps - st->step : 1);
    fc.limit = o->forecast_limit;
    if ((status = th_train_health_create(&o->health, &health)) != TH_OK ||
        (status = th_forecast_create(&fc, &forecast)) != TH_OK || (status = th_budget_init(&budget, &o->budget)) != TH_OK)
        goto done;
    th_early_stop_config esc = o->early_stop;
    if (esc.planned_steps == 0) esc.planned_steps = o->steps;
    if (esc.patience > 0 && (status = th_early_stop_init(&es, &esc)) != TH_OK) goto done;
    if (o->dp && (status = th_dp_train_begin(o->dp, m, o->grad_accum, dp_settings_hash(o))) != TH_OK) goto done;
    if (o->preflight) {
        th_data_cursor c0;
        th_data_loader_get_cursor(train, &c0);
        th_data_loader_next(train, batch, batch + BT); // the first batch, put back afterwards
        status = preflight(m, train, o, st, batch);
        th_status s2 = th_data_loader_set_cursor(train, &c0);
        if (status == TH_OK) status = s2;
        if (o->dp) status = th_dp_agree(o->dp, status);
        if (status != TH_OK) goto done;
    }
    th_lr_schedule sched = {o->opt.lr, o->lr_min, o->warmup_steps, (int)o->steps};
    float lr_scale = 1.0f; // lowered after a rollback
    uint64_t t_start = th_now_ns();
    double spent_j = 0.0; // IT energy the run charged to this call's units
    th_eco_price price; // CO2e and water per joule, worked out once (NULL price: energy and time only)
    const th_eco_price *priced = o->factors && th_eco_price_of(o->factors, &price) == TH_OK ? &price : NULL;
    out->steps_done = st->step;
    long steps_run = 0;

    th_data_cursor step_start;
    while (st->step < o->steps) {
        if (!th_budget_allow(&budget, NULL)) {
            snprintf(out->stopped_by, sizeof out->stopped_by, "budget");
            th_budget_describe(&budget, out->stop_reason, sizeof out->stop_reason);
            break;
        }
        if (o->dp) { // plan the step's micro-batches per rank; agree on stopping
            int stop_all = 0;
            status = th_dp_step_begin(o->dp, st->step, o->should_stop && o->should_stop(o->user), &stop_all);
            if (status == TH_OK && stop_all) status = TH_ERR_INTERRUPTED;
            if (status != TH_OK) break;
        }
        int last_micro = o->dp ? th_dp_last_mine(o->dp) : o->grad_accum - 1; // its unit runs to the step's end
        int dp_idle = o->dp && th_dp_wait_idle(o->dp); // ... except that the reduction's wait is idle
        uint64_t t0 = th_now_ns();
        th_unit_cost step_cost = {0}, c;
        th_data_loader_get_cursor(train, &step_start);
        double loss_sum = 0.0;
        for (int micro = 0; micro < o->grad_accum && status == TH_OK; micro++) {
            if (!o->dp && o->should_stop && o->should_stop(o->user)) {
                status = TH_ERR_INTERRUPTED;
                break;
            }
            // A unit of work is a micro-batch; the last one runs on through the update,
            // validation and checkpoint, so all the step's compute counts as busy time.
            // The teacher hook's units come before the micro-batch's, outside it.
            float loss = 0;
            th_data_loader_next(train, batch, batch + BT);
            if (o->dp && !th_dp_mine(o->dp, micro)) continue; // another rank's
            if (o->teacher && (status = o->teacher(batch, batch + BT, B, T, o->hook_user)) != TH_OK) break;
            if (o->mix_batch) o->mix_batch(batch, batch + BT, B, T, st->step * o->grad_accum + micro, o->user);
            th_run_unit_begin(o->run);
            if ((micro == 0 || o->dp) && (status = th_gpt2_zero_grad(m)) != TH_OK) break;
            if (o->micro_loss) {
                status = o->micro_loss(m, batch, batch + BT, B, T, 1.0f / (float)o->grad_accum, &loss, o->hook_user);
            } else {
                status = th_gpt2_forward(m, batch, batch + BT, B, T, &loss);
                if (status == TH_OK) status = th_gpt2_backward(m, 1.0f / (float)o->grad_accum);
            }
            if (status == TH_OK && o->dp) status = th_dp_micro_add(o->dp, m, micro, loss);
            if (micro != last_micro || dp_idle) {
                th_status paced = th_run_unit_end(o->run, &c); // idle injection: waits only
                th_unit_cost_add(&step_cost, &c);
                if (status == TH_OK) status = dp_paced(o, paced);
            }
            loss_sum += loss;
        }
        if (status == TH_OK && o->dp) status = th_dp_step_end(o->dp, m, &loss_sum); // the exact sum
        if (dp_idle) th_run_unit_begin(o->run); // the update and what follows: the step's last unit
        if (status == TH_OK && o->penalty) status = o->penalty(m, o->user);
        if (status != TH_OK) break;
        th_step_record rec;
        memset(&rec, 0, sizeof rec);
        rec.loss = (float)(loss_sum / o->grad_accum);
        if (o->inject) o->inject(m, st->step + 1, &rec.loss, o->user);
        rec.grad_norm = th_gpt2_grad_norm(m);
        rec.lr = th_lr_at(&sched, (int)st->step) * lr_scale;
        // the health guard sees the loss and the gradient norm before any update: a NaN or
        // a spike never reaches the weights
        double mean_step_j = steps_run > 0 ? (spent_j + step_cost.energy_j) / steps_run : 0.0;
        th_health_verdict hv;
        th_guard_action act = th_train_health_check(health, st->step + 1, rec.loss, rec.grad_norm, mean_step_j, &hv);
        if (act == TH_GUARD_CONTINUE || act == TH_GUARD_WARNED) {
            if (act == TH_GUARD_WARNED) th_log(TH_LOG_WARN, "%s", hv.reason);
            status = th_gpt2_adamw_step(m, &o->opt, rec.lr, rec.grad_norm);
            if (status != TH_OK) break;
        } else if (act == TH_GUARD_SKIP) {
            th_log(TH_LOG_WARN, "%s", hv.reason);
        } else if (act == TH_GUARD_ROLLBACK) {
            long restored = 0;
            long from = st->step;
            th_status rs = rollback(m, o, st, &restored);
            if (rs == TH_OK) {
                lr_scale *= (float)hv.lr_factor;
                double discarded = mean_step_j * (double)(from - restored);
                th_train_health_rolled_back(health, restored, discarded);
                th_log(TH_LOG_WARN, "%s; rolled back to step %ld (%.1f J of steps discarded), lr x %.2f", hv.reason,
                       restored, discarded, lr_scale);
                status = th_run_unit_end(o->run, &c);
                spent_j += step_cost.energy_j + c.energy_j;
                if (status != TH_OK) break;
                continue; // the data cursor moves on: the offending batches are skipped
            }
            th_log(TH_LOG_WARN, "%s; no checkpoint to roll back to (%s): update skipped", hv.reason, th_last_error());
        } else { // HALT: the run keeps diverging; stop and keep the last good checkpoint
            snprintf(out->stopped_by, sizeof out->stopped_by, "zombie");
            snprintf(out->stop_reason, sizeof out->stop_reason, "%s", hv.reason);
            break;
        }
        st->step++;
        steps_run++;
        rec.step = st->step;
        rec.total_steps = o->steps;
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
            status = save_checkpoint(m, train, o, st, out->last_val_loss);
            if (status != TH_OK) break;
            rec.saved = 1;
        }
        rec.t_ns = th_now_ns();
        rec.step_ms = (rec.t_ns - t0) / 1e6;
        out->tokens += rec.tokens;
        out->last_loss = rec.loss;
        out->steps_done = st->step;
        // the step is complete: an interruption from here on resumes after it
        th_data_loader_get_cursor(train, &step_start);
        th_status paced = th_run_unit_end(o->run, &c);
        rec.t_ns = th_now_ns(); // the step's unit closes after its pacing wait
        th_unit_cost_add(&step_cost, &c);
        spent_j += step_cost.energy_j;
        th_run_log_step(o->run, &rec, &step_cost);
        if (o->on_step) o->on_step(&rec, o->user);
        // the step's cost, for the budget and the forecast
        th_guard_cost cost;
        th_guard_cost_priced(step_cost.energy_j, rec.step_ms / 1e3, priced, &cost);
        th_budget_charge(&budget, &cost);
        th_forecast_verdict fv;
        if (th_forecast_step(forecast, &cost, &fv) == TH_GUARD_REFUSE) {
            snprintf(out->stopped_by, sizeof out->stopped_by, "forecast");
            snprintf(out->stop_reason, sizeof out->stop_reason, "%s", fv.reason);
        }
        if (fv.ready) snprintf(out->forecast, sizeof out->forecast, "%s", fv.reason);
        if (esc.patience > 0 && !isnan(rec.val_loss)) {
            th_early_stop_verdict ev;
            th_guard_action ea = th_early_stop_update(&es, st->step, rec.val_loss, rec.loss, mean_step_j, &ev);
            if (ev.leak || ea == TH_GUARD_WARNED) th_log(TH_LOG_WARN, "%s", ev.reason);
            if (ea == TH_GUARD_HALT) {
                snprintf(out->stopped_by, sizeof out->stopped_by, "early stop");
                snprintf(out->stop_reason, sizeof out->stop_reason, "%s", ev.reason);
            }
        }
        status = dp_paced(o, paced);
        if (status != TH_OK || out->stopped_by[0]) break;
    }
    if (out->stopped_by[0] && status == TH_OK) {
        // a guard ended the run early: keep what was learned, say what was not spent
        double per_step = steps_run > 0 ? spent_j / steps_run : 0.0;
        out->energy_saved_j = per_step * (double)(o->steps - st->step);
        if (o->checkpoint_path) status = save_checkpoint(m, train, o, st, out->last_val_loss);
    }
    if (status == TH_ERR_INTERRUPTED && o->checkpoint_path) {
        // a step cut short is dropped whole: the loader goes back to where the step began
        th_status s2 = th_data_loader_set_cursor(train, &step_start);
        if (s2 == TH_OK) s2 = save_checkpoint(m, train, o, st, out->last_val_loss);
        if (s2 != TH_OK) status = s2;
        else th_fail(TH_ERR_INTERRUPTED, "train: stopped at step %ld; checkpoint saved to %s", st->step,
                     o->checkpoint_path);
    } else if (status == TH_ERR_INTERRUPTED) {
        th_fail(TH_ERR_INTERRUPTED, "train: stopped at step %ld", st->step);
    }
    out->seconds = (th_now_ns() - t_start) / 1e9;
    out->energy_j = spent_j;
    th_train_health_summary(health, &out->health);
done:
    th_forecast_free(forecast);
    th_train_health_free(health);
    th_free(batch);
    return status;
}
