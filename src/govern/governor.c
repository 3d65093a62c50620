/* governor.c: the governor registry, configuration defaults, and the wrapper every
 * decision goes through: it checks the input (the fail-safe of invariant 2: the sensor's
 * health, the read, the sample's plausibility), calls the governor's pure decide(), clamps
 * the duty and publishes the thread cap. It logs nothing: fail-safe transitions are output
 * fields. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "govern/govern_internal.h"

/* The registry, in the order the benchmark lists them. */
static const th_governor_ops *const registry[] = {
    &th_gov_none_ops, &th_gov_bang_bang_ops, &th_gov_step_wise_ops, &th_gov_pid_ops, &th_gov_predictive_ops,
};
#define N_GOVERNORS (sizeof registry / sizeof registry[0])

size_t th_governor_count(void) { return N_GOVERNORS; }
const char *th_governor_name(size_t i) { return i < N_GOVERNORS ? registry[i]->name : NULL; }
const char *th_governor_source(size_t i) { return i < N_GOVERNORS ? registry[i]->source : NULL; }

/* ---------------------------------------------------------------------------------
 * configuration */

th_gov_config th_gov_config_default(double limit_c) {
    th_gov_config c;
    memset(&c, 0, sizeof c);
    c.limit_c = limit_c;
    c.period_s = 0.1;
    c.safe_duty = 0.5;
    c.min_duty = 0.05;
    c.recover_samples = 3;
    c.hysteresis_c = 2.0;
    c.switch_on_c = limit_c - 10.0;
    c.margin_c = 1.2; /* fixed: a derived one (0) is tighter but goes over on an unannounced change */
    c.horizon_s = 10.0;
    c.forgetting = 0.995;
    c.reaction_s = 2.5;
    c.c_min_factor = 0.6;
    c.r_max_factor = 1.5;
    c.p_margin = 1.15;
    c.ambient_margin_c = 10.0;
    c.safe_band = 1;
    c.ff_lead_s = 1.0;
    snprintf(c.ff_note, sizeof c.ff_note, "feed-forward off: no coupling analysis given");
    return c;
}

th_status th_gov_coupling_load(const char *path, const char *profile_name, th_gov_coupling *out) {
    memset(out, 0, sizeof *out);
    json_error_t err;
    th_status st = TH_OK;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) {
        FILE *f = fopen(path, "r");
        if (!f) return th_fail(TH_ERR_IO, "coupling %s: cannot open it", path);
        fclose(f);
        return th_fail(TH_ERR_FORMAT, "coupling %s: not JSON (line %d: %s)", path, err.line, err.text);
    }
    const char *keys[2] = {"r_peak", "t_lag_s"};
    double *vals[2] = {&out->r_peak, &out->t_lag_s};
    for (int i = 0; i < 2; i++) {
        json_t *v = json_object_get(root, keys[i]);
        if (!json_is_number(v) || !isfinite(json_number_value(v))) {
            st = th_fail(TH_ERR_FORMAT, "coupling %s: %s is missing or not a finite number", path, keys[i]);
            goto done;
        }
        *vals[i] = json_number_value(v);
    }
    if (fabs(out->r_peak) > 1) {
        st = th_fail(TH_ERR_FORMAT, "coupling %s: r_peak %g is not a correlation (|r| <= 1)", path, out->r_peak);
        goto done;
    }
    const char *prof = json_string_value(json_object_get(root, "profile"));
    snprintf(out->profile, sizeof out->profile, "%s", prof ? prof : "");
    snprintf(out->path, sizeof out->path, "%s", path);
    if (profile_name && out->profile[0] && strcmp(out->profile, profile_name) != 0)
        st = th_fail(TH_ERR_INVALID, "coupling %s: profile '%s' does not match this machine's '%s'", path,
                     out->profile, profile_name);
done:
    json_decref(root);
    return st;
}

int th_gov_config_set_coupling(th_gov_config *c, const th_gov_coupling *k) {
    c->ff_lag_s = 0;
    if (!k) {
        snprintf(c->ff_note, sizeof c->ff_note, "feed-forward off: no coupling analysis given");
    } else if (!(fabs(k->r_peak) >= 0.5)) {
        snprintf(c->ff_note, sizeof c->ff_note, "feed-forward off: |r_peak| %.2f < 0.5, no usable coupling", k->r_peak);
    } else if (!(k->t_lag_s < 0)) {
        snprintf(c->ff_note, sizeof c->ff_note, "feed-forward off: t_lag_s %+.1f s >= 0, the gradient norm does not lead",
                 k->t_lag_s);
    } else {
        c->ff_lag_s = -k->t_lag_s;
        snprintf(c->ff_note, sizeof c->ff_note, "feed-forward on: heat follows the gradient norm by %.1f s (r_peak %.2f)",
                 c->ff_lag_s, k->r_peak);
    }
    return c->ff_lag_s > 0;
}

void th_gov_config_set_plant(th_gov_config *c, const th_thermal_profile *p) {
    c->p_idle_w = p->p_idle_w;
    c->p_max_w = p->p_max_w;
    c->r_k_per_w = p->r_k_per_w;
    c->tau_s = p->r_k_per_w * p->c_j_per_k;
    c->t_ambient_c = p->t_ambient_c;
    c->sensor_lag_s = p->sensor_lag_s;
    c->sensor_quantum_c = p->sensor_quantum_c;
    c->sensor_noise_c = p->sensor_noise_c;
    c->t_shutdown_c = p->t_shutdown_c;
}

double th_gov_default_limit_c(const th_thermal_profile *p) { return p->t_max_operating_c - 2.0; }

/* Fills zero fields with defaults and rejects what cannot work. */
static th_status complete_config(const th_gov_config *in, th_gov_config *c) {
    if (!in) return th_fail(TH_ERR_INVALID, "governor: no configuration");
    *c = *in;
    if (!isfinite(c->limit_c) || c->limit_c < TH_SENSE_TEMP_MIN_MC / 1000.0 || c->limit_c > TH_SENSE_TEMP_MAX_MC / 1000.0)
        return th_fail(TH_ERR_INVALID, "governor: limit_c must be a temperature in %g..%g °C, got %g",
                       TH_SENSE_TEMP_MIN_MC / 1000.0, TH_SENSE_TEMP_MAX_MC / 1000.0, c->limit_c);
    th_gov_config d = th_gov_config_default(c->limit_c);
    if (!(c->period_s > 0)) c->period_s = d.period_s;
    if (c->safe_duty == 0) c->safe_duty = d.safe_duty;
    if (c->min_duty == 0) c->min_duty = d.min_duty;
    if (c->recover_samples <= 0) c->recover_samples = d.recover_samples;
    if (!(c->hysteresis_c > 0)) c->hysteresis_c = d.hysteresis_c;
    if (c->switch_on_c == 0 || !isfinite(c->switch_on_c)) c->switch_on_c = d.switch_on_c;
    if (!(c->margin_c > 0)) c->margin_c = 0.0;
    if (!(c->horizon_s > 0)) c->horizon_s = d.horizon_s;
    if (!(c->guard_c >= 0 && c->guard_c < 20))
        return th_fail(TH_ERR_INVALID, "governor: guard_c must be in [0, 20) °C, got %g", c->guard_c);
    if (!(c->forgetting > 0)) c->forgetting = d.forgetting;
    if (!(c->block_s > 0)) /* a tenth of the plant's τ when known, at least two periods, at most 1 s */
        c->block_s = c->tau_s > 0 ? fmin(1.0, fmax(2.0 * c->period_s, 0.1 * c->tau_s)) : 1.0;
    if (!(c->reaction_s > 0)) c->reaction_s = d.reaction_s;
    if (!(c->c_min_factor > 0)) c->c_min_factor = d.c_min_factor;
    if (!(c->r_max_factor > 0)) c->r_max_factor = d.r_max_factor;
    if (!(c->p_margin > 0)) c->p_margin = d.p_margin;
    if (!(c->ambient_margin_c > 0)) c->ambient_margin_c = d.ambient_margin_c;
    if (!(c->ff_lead_s > 0)) c->ff_lead_s = d.ff_lead_s;
    if (!(c->ff_lag_s >= 0) || c->ff_lag_s > 60)
        return th_fail(TH_ERR_INVALID, "governor: ff_lag_s must be in [0, 60] s, got %g", c->ff_lag_s);
    if (c->r_k_per_w < 0 || c->tau_s < 0)
        return th_fail(TH_ERR_INVALID, "governor: %s must be >= 0 (0: unknown), got %g",
                       c->r_k_per_w < 0 ? "r_k_per_w" : "tau_s", c->r_k_per_w < 0 ? c->r_k_per_w : c->tau_s);
    if (c->t_shutdown_c != 0 && !(c->limit_c < c->t_shutdown_c))
        return th_fail(TH_ERR_INVALID, "governor: limit_c (%g) must be below t_shutdown_c (%g)", c->limit_c,
                       c->t_shutdown_c);
    if (c->c_min_factor > 1 || c->r_max_factor < 1 || c->p_margin < 1)
        return th_fail(TH_ERR_INVALID, "governor: the safe band needs c_min_factor <= 1 (%g), r_max_factor >= 1 (%g), "
                       "p_margin >= 1 (%g)", c->c_min_factor, c->r_max_factor, c->p_margin);
    if (c->objective != TH_GOV_OBJ_THROUGHPUT && c->objective != TH_GOV_OBJ_ENERGY)
        return th_fail(TH_ERR_INVALID, "governor: objective must be throughput (0) or energy (1), got %d", c->objective);
    if (!(c->min_duty > 0 && c->min_duty <= 1))
        return th_fail(TH_ERR_INVALID, "governor: min_duty must be in (0, 1], got %g", c->min_duty);
    if (!(c->safe_duty >= c->min_duty && c->safe_duty <= 1))
        return th_fail(TH_ERR_INVALID, "governor: safe_duty must be in [min_duty %g, 1], got %g", c->min_duty,
                       c->safe_duty);
    if (c->forgetting > 1 || c->forgetting < 0.5)
        return th_fail(TH_ERR_INVALID, "governor: forgetting must be in [0.5, 1], got %g", c->forgetting);
    if (c->switch_on_c >= c->limit_c)
        return th_fail(TH_ERR_INVALID, "governor: switch_on_c (%g) must be below limit_c (%g)", c->switch_on_c,
                       c->limit_c);
    if (c->p_max_w < c->p_idle_w || c->p_idle_w < 0)
        return th_fail(TH_ERR_INVALID, "governor: p_max_w (%g) must be >= p_idle_w (%g) >= 0", c->p_max_w,
                       c->p_idle_w);
    if (c->max_threads < 0) return th_fail(TH_ERR_INVALID, "governor: max_threads must be >= 0");
    return TH_OK;
}

/* ---------------------------------------------------------------------------------
 * the handle and the fail-safe */

struct th_governor {
    const th_governor_ops *ops;
    th_gov_config cfg;
    void *state;
    int fail_safe;            /* currently in fail-safe */
    th_sense_health fail_why; /* the health that put it there */
    int good_run;             /* good samples in a row while in fail-safe */
    char reason[256];
    char status[320];
};

static int find_ops(const char *name) {
    for (size_t i = 0; i < N_GOVERNORS; i++)
        if (strcmp(registry[i]->name, name) == 0) return (int)i;
    return -1;
}

static const char *name_at(size_t i, void *user) {
    (void)user;
    return th_governor_name(i);
}

th_status th_governor_create(const char *name, const th_gov_config *cfg, th_governor **out) {
    int i = name ? find_ops(name) : -1;
    if (i < 0) {
        char known[160];
        th_names_join(known, sizeof known, name_at, NULL, ", ");
        return th_fail(TH_ERR_INVALID, "governor '%s': unknown (known: %s)", name ? name : "(null)", known);
    }
    return th_governor_create_ops(registry[i], cfg, out);
}

th_status th_governor_create_ops(const th_governor_ops *ops, const th_gov_config *cfg, th_governor **out) {
    if (ops->api_version != TH_GOV_API_VERSION)
        return th_fail(TH_ERR_UNSUPPORTED, "governor '%s': API version %d, this build speaks %d", ops->name,
                       ops->api_version, TH_GOV_API_VERSION);
    th_governor *g = th_calloc(1, sizeof *g);
    if (!g) return th_fail(TH_ERR_NOMEM, "governor: out of memory");
    th_status st = complete_config(cfg, &g->cfg);
    if (st != TH_OK) goto done;
    g->ops = ops;
    if (ops->state_size) {
        g->state = th_calloc(1, ops->state_size);
        if (!g->state) {
            st = th_fail(TH_ERR_NOMEM, "governor: out of memory");
            goto done;
        }
    }
    if (ops->init && (st = ops->init(g->state, &g->cfg)) != TH_OK) goto done;
    snprintf(g->status, sizeof g->status, "%s: no decision yet", ops->name);
    *out = g;
    g = NULL;
done:
    if (g) {
        th_free(g->state);
        th_free(g);
    }
    return st;
}

void th_governor_free(th_governor *g) {
    if (!g) return;
    th_free(g->state);
    th_free(g);
}

void th_governor_reset(th_governor *g) {
    if (g->ops->reset) {
        g->ops->reset(g->state, &g->cfg);
    } else {
        if (g->ops->state_size) memset(g->state, 0, g->ops->state_size);
        if (g->ops->init) g->ops->init(g->state, &g->cfg);
    }
    g->fail_safe = 0;
    g->fail_why = TH_HEALTH_OK;
    g->reason[0] = '\0';
    g->good_run = 0;
    snprintf(g->status, sizeof g->status, "%s: no decision yet", g->ops->name);
}

const char *th_governor_get_name(const th_governor *g) { return g->ops->name; }
const th_gov_config *th_governor_config(const th_governor *g) { return &g->cfg; }
const char *th_governor_status(const th_governor *g) { return g->status; }
const void *th_governor_state(const th_governor *g) { return g->state; }

th_status th_governor_model(const th_governor *g, th_gov_model *out) {
    if (!g->ops->model) return th_fail(TH_ERR_UNSUPPORTED, "governor '%s' identifies no model", g->ops->name);
    return g->ops->model(g->state, out);
}

/* The health of this input, with a reason in why: the sensor's verdict first, then what
 * the sample itself shows (no reading, a failed read, no temperature, implausible values). */
static th_sense_health check_input(const th_gov_input *in, char *why, size_t n) {
    const th_sample *s = in ? in->sample : NULL;
    why[0] = '\0';
    if (!s) {
        snprintf(why, n, "no sample");
        return TH_HEALTH_STALE;
    }
    if (in->health != TH_HEALTH_OK) {
        snprintf(why, n, "%s", in->health_why && *in->health_why ? in->health_why : "reported by the sensor");
        return in->health;
    }
    if (in->read_status != TH_OK) {
        snprintf(why, n, "the read failed (%s)", th_status_name(in->read_status));
        return s->fault != TH_HEALTH_OK ? s->fault : TH_HEALTH_STALE;
    }
    if (s->fault != TH_HEALTH_OK) {
        snprintf(why, n, "the sensor flagged the sample");
        return s->fault;
    }
    if (!(s->valid & TH_SAMPLE_TEMP)) {
        snprintf(why, n, "the sample holds no temperature");
        return TH_HEALTH_NONSENSE;
    }
    if (s->temp_mc < TH_SENSE_TEMP_MIN_MC || s->temp_mc > TH_SENSE_TEMP_MAX_MC) {
        snprintf(why, n, "temperature %.3f °C is outside %g..%g °C", s->temp_mc / 1000.0,
                 TH_SENSE_TEMP_MIN_MC / 1000.0, TH_SENSE_TEMP_MAX_MC / 1000.0);
        return TH_HEALTH_NONSENSE;
    }
    if ((s->valid & TH_SAMPLE_POWER) && s->power_uw < 0) {
        snprintf(why, n, "negative power %.3f W", s->power_uw / 1e6);
        return TH_HEALTH_NONSENSE;
    }
    if ((s->valid & TH_SAMPLE_UTIL) && !(s->util >= 0 && s->util <= 1)) {
        snprintf(why, n, "utilization %g is outside 0..1", s->util);
        return TH_HEALTH_NONSENSE;
    }
    return TH_HEALTH_OK;
}

void th_governor_decide(th_governor *g, const th_gov_input *in, double dt_s, th_gov_output *out) {
    const th_gov_config *c = &g->cfg;
    out->threads = c->max_threads;
    out->predicted_c = NAN;
    out->fail_safe = out->entered_fail_safe = out->left_fail_safe = 0;
    char why[200];
    th_sense_health h = check_input(in, why, sizeof why);
    if (h != TH_HEALTH_OK) g->good_run = 0;
    if (g->ops->fail_safe && (h != TH_HEALTH_OK || (g->fail_safe && ++g->good_run < c->recover_samples))) {
        if (h != TH_HEALTH_OK) {
            /* a new kind of fault is news; the same fault with fresher numbers is not */
            out->entered_fail_safe = !g->fail_safe || h != g->fail_why;
            g->fail_why = h;
            snprintf(g->reason, sizeof g->reason, "%s: %s", th_sense_health_name(h), why);
        }
        g->fail_safe = 1;
        out->duty = c->safe_duty;
        out->fail_safe = 1;
        snprintf(g->status, sizeof g->status, "fail-safe: %s (duty %.2f)", g->reason, c->safe_duty);
        return;
    }
    if (g->fail_safe) {
        out->left_fail_safe = 1;
        g->fail_safe = 0;
        g->fail_why = TH_HEALTH_OK;
        g->good_run = 0;
    }
    if (h != TH_HEALTH_OK) { /* "none": full speed regardless, as the baseline must */
        out->duty = 1.0;
        snprintf(g->status, sizeof g->status, "%s: full speed (sensor %s ignored)", g->ops->name,
                 th_sense_health_name(h));
        return;
    }
    out->duty = 1.0;
    if (g->ops->feed && in->grad_norm > 0 && isfinite(in->grad_norm))
        g->ops->feed(g->state, c, (double)in->sample->t_ns / 1e9, in->grad_norm);
    if (g->ops->unit && in->unit_s > 0 && isfinite(in->unit_s)) g->ops->unit(g->state, in->unit_s);
    g->ops->decide(g->state, c, in->sample, dt_s, out);
    if (!(out->duty >= c->min_duty)) out->duty = c->min_duty; /* NaN included */
    if (out->duty > 1) out->duty = 1;
    if (g->ops->describe)
        g->ops->describe(g->state, c, g->status, sizeof g->status);
    else
        snprintf(g->status, sizeof g->status, "%s: duty %.3f", g->ops->name, out->duty);
}
