/* ledger.c: the run's energy ledger, pushed to by the sampler's readings. It keeps the
 * three figures of energy.c side by side (counter, polled power, CPU power model) and
 * answers with the best one that has two readings, so the order of preference lives here
 * and not in every caller; between readings it extrapolates with the latest power, so the
 * work loop can charge each unit of work its share. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "thermo/eco.h"

/* sense's energy_uj is microjoules, already unwrapped by the sensor: no wrap range here. */
#define LEDGER_J_PER_UJ 1e-6

struct th_eco_ledger {
    pthread_mutex_t mu;
    char name[96];          /* the config's source; "" = the samples' own */
    char last_source[96];   /* source of the latest sample */
    th_origin origin;       /* modeled once the config or any sample is not measured */
    double cpu_tdp_w;
    th_energy_counter counter;
    double counter_power_w; /* difference of the last two counter readings over their interval */
    th_power_integrator power, model;
    uint64_t first_read_ns; /* the first reading of any kind: where the model's first value is held back to */
    int have_read;
    double charged_j;       /* the highest value energy_at returned */
};

th_status th_eco_ledger_create(const th_eco_ledger_config *c, th_eco_ledger **out) {
    if (!out) return th_fail(TH_ERR_INVALID, "eco ledger: NULL output");
    *out = NULL;
    if (!c) return th_fail(TH_ERR_INVALID, "eco ledger: NULL config");
    if (!(c->cpu_tdp_w >= 0.0 && c->cpu_tdp_w <= 2000.0))
        return th_fail(TH_ERR_INVALID, "eco ledger: CPU TDP %g W is outside [0, 2000]", c->cpu_tdp_w);
    th_eco_ledger *l = th_calloc(1, sizeof *l);
    if (!l) return th_fail(TH_ERR_NOMEM, "eco ledger: out of memory");
    th_status st = TH_OK;
    snprintf(l->name, sizeof l->name, "%s", c->source ? c->source : "");
    const char *what = l->name[0] ? l->name : "ledger";
    l->origin = c->origin;
    l->cpu_tdp_w = c->cpu_tdp_w;
    if ((st = th_energy_counter_init(&l->counter, what, LEDGER_J_PER_UJ, 0)) != TH_OK) goto done;
    if ((st = th_power_integrator_init(&l->power, what, TH_ECO_BASIS_MEASURED_POWER)) != TH_OK) goto done;
    if ((st = th_power_integrator_init(&l->model, what, TH_ECO_BASIS_MODELED)) != TH_OK) goto done;
    if (pthread_mutex_init(&l->mu, NULL) != 0) {
        st = th_fail(TH_ERR_NOMEM, "eco ledger: cannot create its mutex");
        goto done;
    }
done:
    if (st != TH_OK) {
        th_free(l);
        return st;
    }
    *out = l;
    return TH_OK;
}

void th_eco_ledger_free(th_eco_ledger *l) {
    if (!l) return;
    pthread_mutex_destroy(&l->mu);
    th_free(l);
}

/* Counter readings closer than this give no rate of their own (5 ms). */
#define LEDGER_MIN_RATE_NS 5000000ull

void th_eco_ledger_add(th_eco_ledger *l, const th_sample *s) {
    if (!l || !s) return;
    pthread_mutex_lock(&l->mu);
    if (!l->have_read) {
        l->have_read = 1;
        l->first_read_ns = s->t_ns;
    }
    if (s->origin != TH_ORIGIN_MEASURED) l->origin = s->origin;
    if (s->source[0]) snprintf(l->last_source, sizeof l->last_source, "%.95s", s->source);
    if (s->valid & TH_SAMPLE_ENERGY) {
        double units0 = l->counter.total_units;
        uint64_t t0 = l->counter.t_last_ns;
        // a reading that goes down (a reset: sense has unwrapped it already) or back in time is dropped
        // the rate from two readings closer than LEDGER_MIN_RATE_NS apart is mostly clock
        // jitter (the run's first reading and the sampler's first are microseconds apart)
        if (th_energy_counter_add(&l->counter, s->t_ns, s->energy_uj) == TH_OK && l->counter.samples >= 2 &&
            s->t_ns > t0 + LEDGER_MIN_RATE_NS)
            l->counter_power_w = (l->counter.total_units - units0) * LEDGER_J_PER_UJ / ((double)(s->t_ns - t0) * 1e-9);
    }
    if ((s->valid & TH_SAMPLE_POWER) && s->power_uw >= 0)
        (void)th_power_integrator_add(&l->power, s->t_ns, (uint64_t)s->power_uw);
    uint64_t p_uw;
    if ((s->valid & TH_SAMPLE_UTIL) && l->cpu_tdp_w > 0 && th_cpu_model_power_uw(l->cpu_tdp_w, s->util, &p_uw) == TH_OK) {
        // utilization needs two reads: its first value stands for the time since the first reading
        if (l->model.samples == 0 && l->first_read_ns < s->t_ns)
            (void)th_power_integrator_add(&l->model, l->first_read_ns, p_uw);
        (void)th_power_integrator_add(&l->model, s->t_ns, p_uw);
    }
    pthread_mutex_unlock(&l->mu);
}

typedef enum { PATH_NONE, PATH_COUNTER, PATH_POWER, PATH_MODEL } ledger_path;

/* The path that answers: the first in order of preference with at least `min` readings. */
static ledger_path pick(const th_eco_ledger *l, size_t min) {
    if (l->counter.samples >= min) return PATH_COUNTER;
    if (l->power.samples >= min) return PATH_POWER;
    if (l->model.samples >= min) return PATH_MODEL;
    return PATH_NONE;
}

/* The figure's energy, last reading time and latest power of path `p` (mutex held). */
static void path_state(const th_eco_ledger *l, ledger_path p, double *energy_j, uint64_t *t_last_ns, double *power_w) {
    *energy_j = 0.0;
    *t_last_ns = 0;
    *power_w = 0.0;
    if (p == PATH_COUNTER) {
        *energy_j = l->counter.total_units * LEDGER_J_PER_UJ;
        *t_last_ns = l->counter.t_last_ns;
        if (l->power.samples) // the sensor's own power reading is the best current rate
            *power_w = l->power.last_power_uw * 1e-6;
        else if (l->counter.samples >= 2)
            *power_w = l->counter_power_w;
        else if (l->power.samples)
            *power_w = l->power.last_power_uw * 1e-6;
        else if (l->model.samples)
            *power_w = l->model.last_power_uw * 1e-6;
    } else if (p == PATH_POWER || p == PATH_MODEL) {
        const th_power_integrator *pi = p == PATH_POWER ? &l->power : &l->model;
        *energy_j = pi->energy_j;
        *t_last_ns = pi->t_last_ns;
        *power_w = pi->last_power_uw * 1e-6;
    }
}

double th_eco_ledger_energy_at(th_eco_ledger *l, uint64_t t_ns) {
    if (!l) return 0.0;
    pthread_mutex_lock(&l->mu);
    ledger_path p = pick(l, 2);
    if (p == PATH_NONE) p = pick(l, 1);
    double e, w;
    uint64_t t_last;
    path_state(l, p, &e, &t_last, &w);
    if (p != PATH_NONE && t_ns > t_last) e += w * ((double)(t_ns - t_last) * 1e-9);
    if (!(e >= l->charged_j)) e = l->charged_j; // also catches a NaN
    l->charged_j = e;
    pthread_mutex_unlock(&l->mu);
    return e;
}

th_status th_eco_ledger_figure(th_eco_ledger *l, th_energy_figure *out) {
    if (!l || !out) return th_fail(TH_ERR_INVALID, "eco ledger: NULL argument");
    th_status st = TH_OK;
    pthread_mutex_lock(&l->mu);
    ledger_path p = pick(l, 2);
    const char *name = l->name[0] ? l->name : l->last_source[0] ? l->last_source : "unnamed sensor";
    int modeled = l->origin != TH_ORIGIN_MEASURED;
    if (p == PATH_COUNTER) {
        st = th_energy_counter_figure(&l->counter, out);
        if (modeled) out->basis = TH_ECO_BASIS_MODELED;
    } else if (p == PATH_POWER) {
        st = th_power_integrator_figure(&l->power, out);
        if (modeled) out->basis = TH_ECO_BASIS_MODELED;
    } else if (p == PATH_MODEL) {
        st = th_power_integrator_figure(&l->model, out);
    } else {
        st = th_fail(TH_ERR_STATE, "eco ledger %s: no energy counter, power or modeled power with two readings yet", name);
    }
    if (st == TH_OK && p == PATH_MODEL)
        snprintf(out->source, sizeof out->source, "cpu model: TDP %g W x (0.1 + 0.9 u^3), u from %.60s", l->cpu_tdp_w,
                 name);
    else if (st == TH_OK)
        snprintf(out->source, sizeof out->source, "%s", name);
    pthread_mutex_unlock(&l->mu);
    return st;
}
