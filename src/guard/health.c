/* health.c: training-run health (NaN/Inf, loss and grad-norm spikes, rollbacks, zombie
 * runs) checked before each update, and early stopping on a validation plateau with a
 * flag for validation losses too good to be true. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thermo/guard.h"

th_train_health_config th_train_health_defaults(void) {
    th_train_health_config c;
    c.mode = TH_GUARD_STOP;
    c.z_threshold = 6.0;
    c.window = 128;
    c.min_history = 64;
    c.min_rel_sd = 1e-3;
    c.rollback_skips = 3;
    c.rollback_window = 100;
    c.max_rollbacks = 3;
    c.lr_factor = 0.5;
    c.check_grad = 1;
    return c;
}

const char *th_train_event_name(th_train_event_kind k) {
    switch (k) {
    case TH_TRAIN_OK: return "ok";
    case TH_TRAIN_NONFINITE_LOSS: return "nan/inf loss";
    case TH_TRAIN_NONFINITE_GRAD: return "nan/inf grad norm";
    case TH_TRAIN_LOSS_SPIKE: return "loss spike";
    case TH_TRAIN_GRAD_SPIKE: return "grad-norm spike";
    case TH_TRAIN_ROLLBACK: return "rollback";
    case TH_TRAIN_ZOMBIE: return "zombie";
    }
    return "?";
}

#define RECENT_MAX 64

struct th_train_health {
    th_train_health_config cfg;
    /* accepted values, oldest at head */
    double *loss, *grad;
    long *step;
    int len, head;
    long recent[RECENT_MAX]; /* steps of the skips since the last rollback, oldest first */
    int n_recent;
    th_health_summary sum;
};

th_status th_train_health_create(const th_train_health_config *cfg, th_train_health **out) {
    th_train_health_config c = cfg ? *cfg : th_train_health_defaults();
    if (c.mode != TH_GUARD_OFF && c.mode != TH_GUARD_WARN && c.mode != TH_GUARD_STOP)
        return th_fail(TH_ERR_INVALID, "train health: mode %d is not stop, warn or off", (int)c.mode);
    if (!(c.z_threshold > 0) || !isfinite(c.z_threshold))
        return th_fail(TH_ERR_INVALID, "train health: z_threshold %g must be positive", c.z_threshold);
    if (c.window < 2 || c.window > 4096)
        return th_fail(TH_ERR_INVALID, "train health: window %d is outside [2, 4096]", c.window);
    if (c.min_history < 2 || c.min_history > c.window)
        return th_fail(TH_ERR_INVALID, "train health: min_history %d is outside [2, window %d]", c.min_history,
                       c.window);
    if (!(c.min_rel_sd >= 0 && c.min_rel_sd < 1))
        return th_fail(TH_ERR_INVALID, "train health: min_rel_sd %g is outside [0, 1)", c.min_rel_sd);
    if (c.rollback_skips < 0 || c.rollback_skips > RECENT_MAX)
        return th_fail(TH_ERR_INVALID, "train health: rollback_skips %d is outside [0, %d]", c.rollback_skips,
                       RECENT_MAX);
    if (c.rollback_skips > 0 && c.rollback_window < 1)
        return th_fail(TH_ERR_INVALID, "train health: rollback_window %d must be positive", c.rollback_window);
    if (c.max_rollbacks < 0) return th_fail(TH_ERR_INVALID, "train health: max_rollbacks %d is negative", c.max_rollbacks);
    if (!(c.lr_factor > 0 && c.lr_factor <= 1))
        return th_fail(TH_ERR_INVALID, "train health: lr_factor %g is outside (0, 1]", c.lr_factor);
    th_train_health *h = th_calloc(1, sizeof *h);
    if (!h) return th_fail(TH_ERR_NOMEM, "train health: out of memory");
    h->cfg = c;
    h->loss = th_calloc((size_t)c.window, sizeof(double));
    h->grad = th_calloc((size_t)c.window, sizeof(double));
    h->step = th_calloc((size_t)c.window, sizeof(long));
    if (!h->loss || !h->grad || !h->step) {
        th_train_health_free(h);
        return th_fail(TH_ERR_NOMEM, "train health: out of memory");
    }
    *out = h;
    return TH_OK;
}

void th_train_health_free(th_train_health *h) {
    if (!h) return;
    th_free(h->loss);
    th_free(h->grad);
    th_free(h->step);
    th_free(h);
}

static void push(th_train_health *h, long step, double loss, double grad) {
    int W = h->cfg.window, i;
    if (h->len < W) {
        i = (h->head + h->len) % W;
        h->len++;
    } else {
        i = h->head;
        h->head = (h->head + 1) % W;
    }
    h->loss[i] = loss;
    h->grad[i] = grad;
    h->step[i] = step;
}

/* z of x against the window of `vals`, sd floored at min_rel_sd x |mean|. Two passes in
 * double over at most 4096 values: exact enough, and no drift from running sums. */
static double zscore(const th_train_health *h, const double *vals, double x, double *mean_out) {
    double mean = 0, var = 0;
    for (int i = 0; i < h->len; i++) mean += vals[i];
    mean /= h->len;
    for (int i = 0; i < h->len; i++) var += (vals[i] - mean) * (vals[i] - mean);
    double sd = sqrt(var / (h->len - 1));
    double floor_sd = h->cfg.min_rel_sd * fabs(mean);
    if (sd < floor_sd) sd = floor_sd;
    if (sd < 1e-12) sd = 1e-12;
    if (mean_out) *mean_out = mean;
    return (x - mean) / sd;
}

static void add_event(th_train_health *h, long step, th_train_event_kind kind, double value, double z, double e) {
    th_health_summary *s = &h->sum;
    if (s->n_events == TH_HEALTH_EVENTS_KEEP) {
        memmove(s->events, s->events + 1, sizeof s->events[0] * (TH_HEALTH_EVENTS_KEEP - 1));
        s->n_events--;
    }
    th_health_event *ev = &s->events[s->n_events++];
    ev->step = step;
    ev->kind = kind;
    ev->value = value;
    ev->z = z;
    ev->energy_j = e;
}

th_guard_action th_train_health_check(th_train_health *h, long step, double loss, double grad_norm, double energy_j,
                                      th_health_verdict *v) {
    const th_train_health_config *c = &h->cfg;
    th_health_summary *s = &h->sum;
    double e = isfinite(energy_j) && energy_j > 0 ? energy_j : 0;
    th_health_verdict r;
    memset(&r, 0, sizeof r);
    r.event.step = step;
    r.event.z = NAN;
    s->steps_seen++;

    th_train_event_kind kind = TH_TRAIN_OK;
    double value = NAN, z = NAN, mean = NAN;
    if (!isfinite(loss)) {
        kind = TH_TRAIN_NONFINITE_LOSS;
        value = loss;
    } else if (!isfinite(grad_norm)) { // NaN gradients would reach the weights whatever check_grad says
        kind = TH_TRAIN_NONFINITE_GRAD;
        value = grad_norm;
    } else if (c->mode != TH_GUARD_OFF && h->len >= c->min_history) {
        double ml, mg = NAN;
        double zl = zscore(h, h->loss, loss, &ml);
        double zg = c->check_grad ? zscore(h, h->grad, grad_norm, &mg) : -INFINITY;
        if (zl > c->z_threshold && zl >= zg) kind = TH_TRAIN_LOSS_SPIKE, value = loss, z = zl, mean = ml;
        else if (zg > c->z_threshold) kind = TH_TRAIN_GRAD_SPIKE, value = grad_norm, z = zg, mean = mg;
    }

    if (kind == TH_TRAIN_OK) {
        push(h, step, loss, grad_norm);
        r.action = TH_GUARD_CONTINUE;
        snprintf(r.reason, sizeof r.reason, "step %ld: ok", step);
        if (v) *v = r;
        return r.action;
    }
    int spike = kind == TH_TRAIN_LOSS_SPIKE || kind == TH_TRAIN_GRAD_SPIKE;
    if (spike) s->spikes++;
    else s->nonfinite++;
    r.event.kind = kind;
    r.event.value = value;
    r.event.z = z;
    if (spike && c->mode == TH_GUARD_WARN) {
        // reported, applied, and kept out of the window like a skipped value
        add_event(h, step, kind, value, z, 0);
        r.action = TH_GUARD_WARNED;
        snprintf(r.reason, sizeof r.reason, "step %ld: %s %.6g (z %.1f against a mean of %.6g over %d steps): warning only",
                 step, th_train_event_name(kind), value, z, mean, h->len);
        if (v) *v = r;
        return r.action;
    }

    // a skipped step: its energy is wasted
    s->steps_skipped++;
    s->energy_wasted_j += e;
    r.event.energy_j = e;
    add_event(h, step, kind, value, z, e);
    if (h->n_recent == RECENT_MAX) {
        memmove(h->recent, h->recent + 1, sizeof h->recent[0] * (RECENT_MAX - 1));
        h->n_recent--;
    }
    h->recent[h->n_recent++] = step;
    int in_window = 0;
    long first = step;
    for (int i = h->n_recent - 1; i >= 0 && h->recent[i] > step - c->rollback_window; i--) {
        in_window++;
        first = h->recent[i];
    }
    if (spike)
        snprintf(r.reason, sizeof r.reason, "step %ld: %s %.6g (z %.1f against a mean of %.6g over %d steps): update skipped",
                 step, th_train_event_name(kind), value, z, mean, h->len);
    else
        snprintf(r.reason, sizeof r.reason, "step %ld: %s (%g): update skipped", step, th_train_event_name(kind), value);
    r.action = TH_GUARD_SKIP;

    if (c->rollback_skips > 0 && in_window >= c->rollback_skips) {
        size_t off = strlen(r.reason);
        if (c->max_rollbacks > 0 && s->rollbacks >= c->max_rollbacks) {
            r.action = TH_GUARD_HALT;
            r.event.kind = TH_TRAIN_ZOMBIE;
            add_event(h, step, TH_TRAIN_ZOMBIE, value, z, 0);
            snprintf(r.reason + off, sizeof r.reason - off,
                     "; %d skips in %d steps after %ld rollbacks: the run is not recovering, stop", in_window,
                     c->rollback_window, s->rollbacks);
        } else {
            r.action = TH_GUARD_ROLLBACK;
            r.event.kind = TH_TRAIN_ROLLBACK;
            r.rollback_to_hint = first - 1;
            r.lr_factor = c->lr_factor;
            s->rollbacks++;
            add_event(h, step, TH_TRAIN_ROLLBACK, value, z, 0);
            snprintf(r.reason + off, sizeof r.reason - off,
                     "; %d skips in %d steps since step %ld: roll back to a checkpoint at or before step %ld", in_window,
                     c->rollback_window, first, r.rollback_to_hint);
        }
    }
    if (v) *v = r;
    return r.action;
}

void th_train_health_rolled_back(th_train_health *h, long restored_step, double discarded_j) {
    double e = isfinite(discarded_j) && discarded_j > 0 ? discarded_j : 0;
    h->sum.energy_wasted_j += e;
    for (int i = h->sum.n_events - 1; i >= 0; i--)
        if (h->sum.events[i].kind == TH_TRAIN_ROLLBACK) {
            h->sum.events[i].energy_j += e;
            break;
        }
    h->n_recent = 0;
    // keep only the statistics of steps the restored weights have seen, oldest first
    int W = h->cfg.window, n = 0;
    double *loss = th_alloc(sizeof(double) * (size_t)W * 2);
    long *step = th_alloc(sizeof(long) * (size_t)W);
    if (loss && step)
        for (int i = 0; i < h->len; i++) {
            int src = (h->head + i) % W;
            if (h->step[src] > restored_step) continue;
            loss[n] = h->loss[src];
            loss[W + n] = h->grad[src];
            step[n] = h->step[src];
            n++;
        }
    // (out of memory: start the statistics afresh; the guard re-arms after min_history)
    for (int i = 0; i < n; i++) {
        h->loss[i] = loss[i];
        h->grad[i] = loss[W + i];
        h->step[i] = step[i];
    }
    h->len = n;
    h->head = 0;
    th_free(loss);
    th_free(step);
}

void th_train_health_summary(const th_train_health *h, th_health_summary *out) { *out = h->sum; }

/* ---------------------------------------------------------------------------------
 * early stopping */

th_early_stop_config th_early_stop_defaults(void) {
    th_early_stop_config c;
    c.mode = TH_GUARD_STOP;
    c.patience = 3;
    c.min_delta = 1e-3;
    c.leak_floor = 0;
    c.leak_train_ratio = 0.5;
    c.planned_steps = 0;
    return c;
}

th_status th_early_stop_init(th_early_stop *es, const th_early_stop_config *cfg) {
    th_early_stop_config c = cfg ? *cfg : th_early_stop_defaults();
    if (c.mode != TH_GUARD_OFF && c.mode != TH_GUARD_WARN && c.mode != TH_GUARD_STOP)
        return th_fail(TH_ERR_INVALID, "early stop: mode %d is not stop, warn or off", (int)c.mode);
    if (c.patience < 0) return th_fail(TH_ERR_INVALID, "early stop: patience %d is negative", c.patience);
    if (!(c.min_delta >= 0) || !isfinite(c.min_delta))
        return th_fail(TH_ERR_INVALID, "early stop: min_delta %g must be >= 0", c.min_delta);
    if (!(c.leak_floor >= 0) || !isfinite(c.leak_floor))
        return th_fail(TH_ERR_INVALID, "early stop: leak_floor %g must be >= 0 (0 = off)", c.leak_floor);
    if (!(c.leak_train_ratio >= 0 && c.leak_train_ratio < 1))
        return th_fail(TH_ERR_INVALID, "early stop: leak_train_ratio %g is outside [0, 1)", c.leak_train_ratio);
    if (c.planned_steps < 0) return th_fail(TH_ERR_INVALID, "early stop: planned_steps %ld is negative", c.planned_steps);
    memset(es, 0, sizeof *es);
    es->cfg = c;
    es->best_val = INFINITY;
    es->best_step = -1;
    return TH_OK;
}

th_guard_action th_early_stop_update(th_early_stop *es, long step, double val_loss, double train_loss,
                                     double mean_step_energy_j, th_early_stop_verdict *v) {
    const th_early_stop_config *c = &es->cfg;
    th_early_stop_verdict r;
    memset(&r, 0, sizeof r);
    es->evals++;
    th_guard_action act = TH_GUARD_CONTINUE;
    const char *why = NULL;
    char leak_text[112] = "";
    if (c->mode != TH_GUARD_OFF) {
        if (!isfinite(val_loss)) {
            why = "the validation loss is not finite";
        } else {
            if (val_loss < es->best_val - c->min_delta) {
                es->best_val = val_loss;
                es->best_step = step;
                es->bad_evals = 0;
                r.improved = 1;
            } else {
                es->bad_evals++;
                if (es->bad_evals >= c->patience) why = "plateau"; // Lightning: wait_count >= patience
            }
            double floor = c->leak_floor;
            if (c->leak_train_ratio > 0 && isfinite(train_loss) && train_loss > 0 &&
                c->leak_train_ratio * train_loss > floor)
                floor = c->leak_train_ratio * train_loss;
            if (floor > 0 && val_loss < floor) {
                r.leak = 1;
                es->leaks++;
                snprintf(leak_text, sizeof leak_text, "possible validation leak: val loss %.4g is below the floor %.4g",
                         val_loss, floor);
            }
        }
    }
    r.bad_evals = es->bad_evals;
    r.best_step = es->best_step;
    r.best_val = es->best_val;
    if (why) {
        act = c->mode == TH_GUARD_STOP ? TH_GUARD_HALT : TH_GUARD_WARNED;
        if (act == TH_GUARD_HALT) es->stopped = 1;
        r.steps_left = c->planned_steps > step ? c->planned_steps - step : 0;
        double e = isfinite(mean_step_energy_j) && mean_step_energy_j > 0 ? mean_step_energy_j : 0;
        r.energy_saved_j = r.steps_left * e;
        if (why[0] == 'p')
            snprintf(r.reason, sizeof r.reason,
                     "step %ld: plateau: val loss %.4g, no improvement of %g over the best %.4g (step %ld) in %d "
                     "validations; %s %ld of %ld steps saves %.4g J%s%s",
                     step, val_loss, c->min_delta, es->best_val, es->best_step, es->bad_evals,
                     act == TH_GUARD_HALT ? "stopping skips" : "stopping would skip", r.steps_left, c->planned_steps,
                     r.energy_saved_j, r.leak ? "; " : "", leak_text);
        else
            snprintf(r.reason, sizeof r.reason, "step %ld: %s (%g); %ld steps left would burn %.4g J", step, why,
                     val_loss, r.steps_left, r.energy_saved_j);
    } else if (r.leak) {
        act = TH_GUARD_WARNED;
        snprintf(r.reason, sizeof r.reason, "step %ld: %s", step, leak_text);
    } else {
        snprintf(r.reason, sizeof r.reason, "step %ld: val loss %.4g (best %.4g at step %ld)", step, val_loss,
                 es->best_val, es->best_step);
    }
    r.action = act;
    if (v) *v = r;
    return act;
}
