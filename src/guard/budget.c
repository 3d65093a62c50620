/* budget.c: budgets checked before each unit of work against the unit's projected cost,
 * and the cost forecast of a planned run from its measured steps. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thermo/guard.h"

const char *th_budget_kind_name(th_budget_kind k) {
    static const char *names[] = {"energy", "co2e", "water", "time"};
    return (unsigned)k < TH_BUDGET_NUM ? names[k] : "?";
}

const char *th_budget_kind_unit(th_budget_kind k) {
    static const char *units[] = {"J", "g", "mL", "s"};
    return (unsigned)k < TH_BUDGET_NUM ? units[k] : "?";
}

static void cost_to_array(const th_guard_cost *c, double a[TH_BUDGET_NUM]) {
    a[TH_BUDGET_ENERGY] = c->energy_j;
    a[TH_BUDGET_CO2E] = c->co2e_g;
    a[TH_BUDGET_WATER] = c->water_ml;
    a[TH_BUDGET_TIME] = c->seconds;
}

static void array_to_cost(const double a[TH_BUDGET_NUM], th_guard_cost *c) {
    c->energy_j = a[TH_BUDGET_ENERGY];
    c->co2e_g = a[TH_BUDGET_CO2E];
    c->water_ml = a[TH_BUDGET_WATER];
    c->seconds = a[TH_BUDGET_TIME];
}

static int limit_ok(double x) { return isnan(x) || (x >= 0 && isfinite(x)); }
static double limit_of(double x) { return isnan(x) ? 0 : x; }

th_status th_budget_init(th_budget *b, const th_budget_config *cfg) {
    if (!limit_ok(cfg->energy_j) || !limit_ok(cfg->energy_wh) || !limit_ok(cfg->co2e_g) ||
        !limit_ok(cfg->water_ml) || !limit_ok(cfg->seconds))
        return th_fail(TH_ERR_INVALID, "budget: limits must be >= 0 and finite (0 or NaN = none)");
    if (!(cfg->margin_sigma >= 0 && cfg->margin_sigma <= 100))
        return th_fail(TH_ERR_INVALID, "budget: margin_sigma %g is outside [0, 100]", cfg->margin_sigma);
    memset(b, 0, sizeof *b);
    double ej = limit_of(cfg->energy_j), ewh = limit_of(cfg->energy_wh) * 3600.0;
    b->limit[TH_BUDGET_ENERGY] = ej > 0 && ewh > 0 ? fmin(ej, ewh) : ej > 0 ? ej : ewh;
    b->limit[TH_BUDGET_CO2E] = limit_of(cfg->co2e_g);
    b->limit[TH_BUDGET_WATER] = limit_of(cfg->water_ml);
    b->limit[TH_BUDGET_TIME] = limit_of(cfg->seconds);
    b->margin_sigma = cfg->margin_sigma;
    return TH_OK;
}

void th_budget_projection(const th_budget *b, th_guard_cost *out) {
    double p[TH_BUDGET_NUM] = {0};
    if (b->units > 0)
        for (int k = 0; k < TH_BUDGET_NUM; k++) {
            double mean = b->used[k] / b->units;
            double var = b->sum_sq[k] / b->units - mean * mean;
            p[k] = mean + b->margin_sigma * sqrt(var > 0 ? var : 0);
        }
    array_to_cost(p, out);
}

int th_budget_allow(th_budget *b, const th_guard_cost *projected) {
    if (b->stopped) return 0;
    th_guard_cost proj;
    if (projected) proj = *projected;
    else th_budget_projection(b, &proj);
    double p[TH_BUDGET_NUM];
    cost_to_array(&proj, p);
    for (int k = 0; k < TH_BUDGET_NUM; k++) {
        if (b->limit[k] <= 0) continue;
        double need = isfinite(p[k]) && p[k] > 0 ? p[k] : 0;
        // a limit already used up refuses even a unit whose cost is not known yet
        if (b->used[k] + need > b->limit[k] || b->used[k] >= b->limit[k]) {
            b->stopped = 1;
            b->stopped_by = (th_budget_kind)k;
            b->stopped_projection = need;
            return 0;
        }
    }
    return 1;
}

void th_budget_charge(th_budget *b, const th_guard_cost *actual) {
    double a[TH_BUDGET_NUM];
    cost_to_array(actual, a);
    for (int k = 0; k < TH_BUDGET_NUM; k++) {
        double x = isfinite(a[k]) && a[k] > 0 ? a[k] : 0;
        b->used[k] += x;
        b->sum_sq[k] += x * x;
    }
    b->units++;
}

void th_budget_describe(const th_budget *b, char *buf, size_t cap) {
    if (b->stopped) {
        th_budget_kind k = b->stopped_by;
        double lim = b->limit[k], used = b->used[k];
        snprintf(buf, cap,
                 "budget: %s limit %.6g %s reached after %ld units: used %.6g %s (%.1f%%), %.6g %s left, next unit "
                 "projected %.6g %s",
                 th_budget_kind_name(k), lim, th_budget_kind_unit(k), b->units, used, th_budget_kind_unit(k),
                 100.0 * used / lim, lim - used, th_budget_kind_unit(k), b->stopped_projection, th_budget_kind_unit(k));
        return;
    }
    size_t off = (size_t)snprintf(buf, cap, "budget: within limits after %ld units", b->units);
    int any = 0;
    for (int k = 0; k < TH_BUDGET_NUM && off < cap; k++) {
        if (b->limit[k] <= 0) continue;
        off += (size_t)snprintf(buf + off, cap - off, "%s%s %.6g of %.6g %s", any ? ", " : " (",
                                th_budget_kind_name((th_budget_kind)k), b->used[k], b->limit[k],
                                th_budget_kind_unit((th_budget_kind)k));
        any = 1;
    }
    if (any && off < cap) snprintf(buf + off, cap - off, ")");
}

/* ---------------------------------------------------------------------------------
 * forecast */

struct th_forecast {
    th_forecast_config cfg;
    long steps;
    double done[TH_BUDGET_NUM];
    double *ring[TH_BUDGET_NUM]; /* the last `window` per-step costs */
    double *scratch;
    int ring_len, ring_head;
    int refused;
    th_forecast_verdict last;
};

th_forecast_config th_forecast_defaults(long planned_steps) {
    th_forecast_config c;
    memset(&c, 0, sizeof c);
    c.planned_steps = planned_steps;
    c.min_steps = 50;
    c.window = 256;
    return c;
}

th_status th_forecast_create(const th_forecast_config *cfg, th_forecast **out) {
    if (cfg->planned_steps <= 0) return th_fail(TH_ERR_INVALID, "forecast: planned_steps %ld must be positive", cfg->planned_steps);
    if (cfg->min_steps < 1) return th_fail(TH_ERR_INVALID, "forecast: min_steps %ld must be at least 1", cfg->min_steps);
    if (cfg->window < 8 || cfg->window > 65536)
        return th_fail(TH_ERR_INVALID, "forecast: window %d is outside [8, 65536]", cfg->window);
    double lim[TH_BUDGET_NUM];
    cost_to_array(&cfg->limit, lim);
    for (int k = 0; k < TH_BUDGET_NUM; k++)
        if (!limit_ok(lim[k])) return th_fail(TH_ERR_INVALID, "forecast: the %s limit must be >= 0 and finite",
                                              th_budget_kind_name((th_budget_kind)k));
    th_forecast *f = th_calloc(1, sizeof *f);
    if (!f) return th_fail(TH_ERR_NOMEM, "forecast: out of memory");
    f->cfg = *cfg;
    int ok = 1;
    for (int k = 0; k < TH_BUDGET_NUM; k++) ok &= (f->ring[k] = th_calloc((size_t)cfg->window, sizeof(double))) != NULL;
    ok &= (f->scratch = th_calloc((size_t)cfg->window, sizeof(double))) != NULL;
    if (!ok) {
        th_forecast_free(f);
        return th_fail(TH_ERR_NOMEM, "forecast: out of memory");
    }
    *out = f;
    return TH_OK;
}

void th_forecast_free(th_forecast *f) {
    if (!f) return;
    for (int k = 0; k < TH_BUDGET_NUM; k++) th_free(f->ring[k]);
    th_free(f->scratch);
    th_free(f);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Quantile q of sorted x[0..n) by linear interpolation. */
static double quantile(const double *x, int n, double q) {
    double pos = q * (n - 1);
    int i = (int)pos;
    if (i >= n - 1) return x[n - 1];
    return x[i] + (pos - i) * (x[i + 1] - x[i]);
}

static void fmt_energy(char *buf, size_t cap, double j) {
    if (j >= TH_J_PER_KWH) snprintf(buf, cap, "%.3g kWh", j / TH_J_PER_KWH);
    else if (j >= 1e3) snprintf(buf, cap, "%.3g kJ", j / 1e3);
    else snprintf(buf, cap, "%.3g J", j);
}

th_guard_action th_forecast_step(th_forecast *f, const th_guard_cost *step_cost, th_forecast_verdict *v) {
    double a[TH_BUDGET_NUM];
    cost_to_array(step_cost, a);
    int W = f->cfg.window;
    int slot = f->ring_len < W ? f->ring_len : f->ring_head;
    for (int k = 0; k < TH_BUDGET_NUM; k++) {
        double x = isfinite(a[k]) && a[k] > 0 ? a[k] : 0;
        f->done[k] += x;
        f->ring[k][slot] = x;
    }
    if (f->ring_len < W) f->ring_len++;
    else f->ring_head = (f->ring_head + 1) % W;
    f->steps++;

    th_forecast_verdict r;
    memset(&r, 0, sizeof r);
    r.steps_done = f->steps;
    array_to_cost(f->done, &r.done);
    long remaining = f->cfg.planned_steps > f->steps ? f->cfg.planned_steps - f->steps : 0;
    double per[TH_BUDGET_NUM], tot[TH_BUDGET_NUM], lo[TH_BUDGET_NUM], hi[TH_BUDGET_NUM];
    int n = f->ring_len;
    for (int k = 0; k < TH_BUDGET_NUM; k++) {
        memcpy(f->scratch, f->ring[k], sizeof(double) * (size_t)n);
        qsort(f->scratch, (size_t)n, sizeof(double), cmp_double);
        int trim = n / 10; // 10% off each end
        double s = 0;
        for (int i = trim; i < n - trim; i++) s += f->scratch[i];
        per[k] = s / (n - 2 * trim);
        tot[k] = f->done[k] + remaining * per[k];
        lo[k] = f->done[k] + remaining * quantile(f->scratch, n, 0.1);
        hi[k] = f->done[k] + remaining * quantile(f->scratch, n, 0.9);
    }
    array_to_cost(per, &r.per_step);
    array_to_cost(tot, &r.total);
    array_to_cost(lo, &r.low);
    array_to_cost(hi, &r.high);
    r.ready = f->steps >= f->cfg.min_steps;
    char e[32], el[32], eh[32];
    fmt_energy(e, sizeof e, tot[0]);
    fmt_energy(el, sizeof el, lo[0]);
    fmt_energy(eh, sizeof eh, hi[0]);
    int off = snprintf(r.reason, sizeof r.reason,
                       "forecast after %ld of %ld steps: %s (%s-%s), %.3g g CO2e, %.3g mL water, %.0f s", f->steps,
                       f->cfg.planned_steps, e, el, eh, tot[1], tot[2], tot[3]);
    double lim[TH_BUDGET_NUM];
    cost_to_array(&f->cfg.limit, lim);
    if (f->refused) {
        r.exceeded = f->last.exceeded;
    } else if (r.ready) {
        for (int k = 0; k < TH_BUDGET_NUM; k++)
            if (lim[k] > 0 && tot[k] > lim[k]) {
                f->refused = 1;
                r.exceeded = (th_budget_kind)k;
                break;
            }
    }
    if (f->refused && off > 0 && (size_t)off < sizeof r.reason) {
        int k = (unsigned)r.exceeded < TH_BUDGET_NUM ? (int)r.exceeded : 0;
        snprintf(r.reason + off, sizeof r.reason - (size_t)off, ": refuse, the projected %s %.6g %s exceeds the limit %.6g %s",
                 th_budget_kind_name((th_budget_kind)k), tot[k], th_budget_kind_unit((th_budget_kind)k), lim[k],
                 th_budget_kind_unit((th_budget_kind)k));
    }
    r.action = f->refused ? TH_GUARD_REFUSE : TH_GUARD_CONTINUE;
    f->last = r;
    if (v) *v = r;
    return r.action;
}
