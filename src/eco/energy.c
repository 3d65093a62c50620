/* energy.c: energy figures with their basis: counter differences (RAPL, NVML) with wrap
 * handling, trapezoid integration of polled or modeled power, the CPU power model used
 * where no counter exists, sums of device figures and the planning estimate. The order of
 * preference (counter, then polled power, then a model) is the caller's; each figure says
 * which one it is. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "thermo/eco.h"

const char *th_eco_basis_name(th_eco_basis b) {
    switch (b) {
    case TH_ECO_BASIS_MEASURED_COUNTER: return "measured-counter";
    case TH_ECO_BASIS_MEASURED_POWER: return "measured-power";
    case TH_ECO_BASIS_MODELED: return "modeled";
    case TH_ECO_BASIS_ESTIMATE: return "estimate";
    }
    return "unknown";
}

static th_status copy_source(char *dst, size_t cap, const char *src, const char *what) {
    if (!src || !*src) return th_fail(TH_ERR_INVALID, "%s: source name is empty", what);
    snprintf(dst, cap, "%s", src);
    return TH_OK;
}

/* ---------------------------------------------------------------------------------
 * cumulative counters */

th_status th_energy_counter_init(th_energy_counter *c, const char *source, double joules_per_unit, uint64_t max_range) {
    if (!c) return th_fail(TH_ERR_INVALID, "energy counter: NULL counter");
    if (!(joules_per_unit > 0.0) || !isfinite(joules_per_unit))
        return th_fail(TH_ERR_INVALID, "energy counter %s: joules per unit must be > 0, got %g", source ? source : "?",
                       joules_per_unit);
    memset(c, 0, sizeof *c);
    th_status st = copy_source(c->source, sizeof c->source, source, "energy counter");
    if (st != TH_OK) return st;
    c->joules_per_unit = joules_per_unit;
    c->max_range = max_range;
    return TH_OK;
}

th_status th_energy_counter_add(th_energy_counter *c, uint64_t t_ns, uint64_t value) {
    if (!c) return th_fail(TH_ERR_INVALID, "energy counter: NULL counter");
    if (c->have_last && t_ns < c->t_last_ns)
        return th_fail(TH_ERR_INVALID, "energy counter %s: sample time went backwards (%llu ns after %llu ns)",
                       c->source, (unsigned long long)t_ns, (unsigned long long)c->t_last_ns);
    uint64_t delta;
    /* the first reading is a step of 0 from itself: only its range is checked */
    th_counter_step step = th_counter_delta(c->have_last ? c->last_value : value, value, c->max_range, &delta);
    if (step == TH_COUNTER_ABOVE_RANGE)
        return th_fail(TH_ERR_INVALID, "energy counter %s: reading %llu is above the wrap range %llu", c->source,
                       (unsigned long long)value, (unsigned long long)c->max_range);
    if (step == TH_COUNTER_RESET)
        return th_fail(TH_ERR_INVALID,
                       "energy counter %s: reading went down (%llu after %llu) and the counter has no wrap range: "
                       "a reset; start a new window",
                       c->source, (unsigned long long)value, (unsigned long long)c->last_value);
    if (!c->have_last) {
        c->have_last = 1;
        c->t_first_ns = t_ns;
    }
    c->total_units += (double)delta;
    c->wraps += step == TH_COUNTER_WRAP;
    c->last_value = value;
    c->t_last_ns = t_ns;
    c->samples++;
    return TH_OK;
}

th_status th_energy_counter_figure(const th_energy_counter *c, th_energy_figure *out) {
    if (!c || !out) return th_fail(TH_ERR_INVALID, "energy counter: NULL argument");
    if (c->samples < 2) return th_fail(TH_ERR_STATE, "energy counter %s: needs two readings, has %zu", c->source, c->samples);
    memset(out, 0, sizeof *out);
    out->energy_j = c->total_units * c->joules_per_unit;
    out->duration_s = (double)(c->t_last_ns - c->t_first_ns) * 1e-9;
    out->basis = TH_ECO_BASIS_MEASURED_COUNTER;
    snprintf(out->source, sizeof out->source, "%s", c->source);
    return TH_OK;
}

/* ---------------------------------------------------------------------------------
 * power integration (trapezoid rule) */

th_status th_power_integrator_init(th_power_integrator *p, const char *source, th_eco_basis basis) {
    if (!p) return th_fail(TH_ERR_INVALID, "power integrator: NULL integrator");
    if (basis != TH_ECO_BASIS_MEASURED_POWER && basis != TH_ECO_BASIS_MODELED)
        return th_fail(TH_ERR_INVALID, "power integrator %s: basis must be measured-power or modeled, got %s",
                       source ? source : "?", th_eco_basis_name(basis));
    memset(p, 0, sizeof *p);
    p->basis = basis;
    return copy_source(p->source, sizeof p->source, source, "power integrator");
}

th_status th_power_integrator_add(th_power_integrator *p, uint64_t t_ns, uint64_t power_uw) {
    if (!p) return th_fail(TH_ERR_INVALID, "power integrator: NULL integrator");
    if (!p->have_last) {
        p->have_last = 1;
        p->t_first_ns = p->t_last_ns = t_ns;
        p->last_power_uw = power_uw;
        p->samples = 1;
        return TH_OK;
    }
    if (t_ns < p->t_last_ns)
        return th_fail(TH_ERR_INVALID, "power integrator %s: sample time went backwards (%llu ns after %llu ns)",
                       p->source, (unsigned long long)t_ns, (unsigned long long)p->t_last_ns);
    double dt_s = (double)(t_ns - p->t_last_ns) * 1e-9;
    double mean_w = ((double)p->last_power_uw + (double)power_uw) * 0.5e-6;
    p->energy_j += mean_w * dt_s;
    p->t_last_ns = t_ns;
    p->last_power_uw = power_uw;
    p->samples++;
    return TH_OK;
}

th_status th_power_integrator_figure(const th_power_integrator *p, th_energy_figure *out) {
    if (!p || !out) return th_fail(TH_ERR_INVALID, "power integrator: NULL argument");
    if (p->samples < 2)
        return th_fail(TH_ERR_STATE, "power integrator %s: needs two samples, has %zu", p->source, p->samples);
    memset(out, 0, sizeof *out);
    out->energy_j = p->energy_j;
    out->duration_s = (double)(p->t_last_ns - p->t_first_ns) * 1e-9;
    out->basis = p->basis;
    snprintf(out->source, sizeof out->source, "%s", p->source);
    return TH_OK;
}

/* ---------------------------------------------------------------------------------
 * power model, sums, estimate */

th_status th_cpu_model_power_uw(double tdp_w, double util, uint64_t *power_uw) {
    if (!power_uw) return th_fail(TH_ERR_INVALID, "cpu power model: NULL output");
    if (!(tdp_w > 0.0 && tdp_w <= 2000.0)) return th_fail(TH_ERR_INVALID, "cpu power model: TDP %g W is outside (0, 2000]", tdp_w);
    if (!(util >= 0.0 && util <= 1.0)) return th_fail(TH_ERR_INVALID, "cpu power model: utilization %g is outside [0, 1]", util);
    double w = tdp_w * (0.1 + 0.9 * util * util * util);
    *power_uw = (uint64_t)llround(w * 1e6);
    return TH_OK;
}

/* Lower rank = weaker evidence. */
static int basis_rank(th_eco_basis b) {
    switch (b) {
    case TH_ECO_BASIS_ESTIMATE: return 0;
    case TH_ECO_BASIS_MODELED: return 1;
    case TH_ECO_BASIS_MEASURED_POWER: return 2;
    case TH_ECO_BASIS_MEASURED_COUNTER: return 3;
    }
    return 0;
}

th_status th_energy_sum(const th_energy_figure *parts, size_t n, th_energy_figure *out) {
    if (!parts || !out || n == 0) return th_fail(TH_ERR_INVALID, "energy sum: no figures");
    th_energy_figure r;
    memset(&r, 0, sizeof r);
    r.basis = parts[0].basis;
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        const th_energy_figure *p = &parts[i];
        if (!(p->energy_j >= 0.0) || !isfinite(p->energy_j))
            return th_fail(TH_ERR_INVALID, "energy sum: figure %zu (%s) has energy %g J", i, p->source, p->energy_j);
        r.energy_j += p->energy_j;
        if (p->duration_s > r.duration_s) r.duration_s = p->duration_s;
        if (basis_rank(p->basis) < basis_rank(r.basis)) r.basis = p->basis;
        size_t room = sizeof r.source - used;
        int w = snprintf(r.source + used, room, "%s%s", i ? "+" : "", p->source);
        if (w < 0 || (size_t)w >= room) {
            memcpy(r.source + sizeof r.source - 4, "...", 4);
            used = sizeof r.source - 1;
        } else {
            used += (size_t)w;
        }
    }
    *out = r;
    return TH_OK;
}

th_status th_energy_estimate(double power_w, double devices, double hours, th_energy_figure *out) {
    if (!out) return th_fail(TH_ERR_INVALID, "estimate: NULL output");
    if (!(power_w > 0.0 && power_w <= 100000.0)) return th_fail(TH_ERR_INVALID, "estimate: power %g W is outside (0, 100000]", power_w);
    if (!(devices >= 1.0 && devices <= 1e7)) return th_fail(TH_ERR_INVALID, "estimate: device count %g is outside [1, 1e7]", devices);
    if (!(hours > 0.0 && hours <= 1e6)) return th_fail(TH_ERR_INVALID, "estimate: %g hours is outside (0, 1e6]", hours);
    memset(out, 0, sizeof *out);
    out->energy_j = power_w * devices * hours * 3600.0;
    out->duration_s = hours * 3600.0;
    out->basis = TH_ECO_BASIS_ESTIMATE;
    snprintf(out->source, sizeof out->source, "estimate: %g W x %g devices x %g h", power_w, devices, hours);
    return TH_OK;
}
