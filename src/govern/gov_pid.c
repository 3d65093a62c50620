/* gov_pid.c: "pid", the Linux power_allocator (ARM IPA) rules on one power actor
 * (drivers/thermal/gov_power_allocator.c, Documentation/driver-api/thermal/power_allocator.rst):
 *   err = T_control − T   (T_control = the limit)
 *   budget = sustainable_power + k_p·err + k_i·Σerr + k_d·Δerr/period, clamped to [0, P_max]
 *   k_p = k_po when err < 0 (overshooting), k_pu otherwise
 *   k_po = SP/ΔT, k_pu = 2·SP/ΔT, k_i = k_pu/10, k_d = 0, ΔT = T_control − T_switch_on
 *   Σerr grows only while err < integral_cutoff (0: only above the set point) and only if
 *   |k_i·Σerr_next| < P_max (anti-windup)
 *   below T_switch_on: PID reset, maximum power.
 * The kernel works per polling tick (its integral is a sum, not a time integral); so does
 * this, at the configured period. power2state: the budget becomes a duty through the
 * plant's P_idle/P_max, corrected by the measured power's excess over that line (leakage). */
#include <math.h>

#include "govern/govern_internal.h"

typedef struct {
    double sp, k_po, k_pu, k_i, k_d, p_idle, p_max;
    double err_integral, prev_err;
    int have_prev;
    double extra_w; /* measured power − (P_idle + (P_max − P_idle)·util), smoothed */
    int have_extra;
    double budget_w, err;
    int active;
} pid_state;

static th_status pid_init(void *state, const th_gov_config *cfg) {
    pid_state *p = state;
    if (!(cfg->p_max_w > 0))
        return th_fail(TH_ERR_INVALID, "governor pid: needs the plant's p_max_w and p_idle_w (a profile)");
    p->p_idle = cfg->p_idle_w;
    p->p_max = cfg->p_max_w;
    if (cfg->sustainable_power_w > 0)
        p->sp = cfg->sustainable_power_w;
    else if (cfg->r_k_per_w > 0)
        p->sp = (cfg->limit_c - cfg->t_ambient_c) / cfg->r_k_per_w;
    else
        p->sp = p->p_idle + 0.5 * (p->p_max - p->p_idle);
    double dt = cfg->limit_c - cfg->switch_on_c;
    p->k_po = p->sp / dt;
    p->k_pu = 2.0 * p->sp / dt;
    p->k_i = p->k_pu / 10.0;
    p->k_d = 0.0;
    return TH_OK;
}

static void pid_decide(void *state, const th_gov_config *cfg, const th_sample *s, double dt_s, th_gov_output *out) {
    pid_state *p = state;
    double t = th_gov_temp_c(s);
    if ((s->valid & TH_SAMPLE_POWER) && (s->valid & TH_SAMPLE_UTIL)) {
        double modeled = p->p_idle + (p->p_max - p->p_idle) * s->util;
        double extra = s->power_uw / 1e6 - modeled;
        p->extra_w = p->have_extra ? p->extra_w + 0.1 * (extra - p->extra_w) : extra;
        p->have_extra = 1;
    }
    if (t < cfg->switch_on_c) {
        p->err_integral = 0;
        p->have_prev = 0;
        p->active = 0;
        p->budget_w = p->p_max;
        out->duty = 1.0;
        return;
    }
    p->active = 1;
    double err = cfg->limit_c - t;
    double kp = err < 0 ? p->k_po : p->k_pu;
    double pterm = kp * err;
    if (err < 0.0 /* integral_cutoff */) {
        double next = p->err_integral + err;
        if (fabs(p->k_i * next) < p->p_max) p->err_integral = next;
    }
    double iterm = p->k_i * p->err_integral;
    double dterm = p->have_prev ? p->k_d * (err - p->prev_err) / cfg->period_s : 0.0;
    p->prev_err = err;
    p->have_prev = 1;
    p->err = err;
    double budget = th_gov_clamp(p->sp + pterm + iterm + dterm, 0.0, p->p_max);
    p->budget_w = budget;
    double span = p->p_max - p->p_idle;
    out->duty = span > 0 ? (budget - p->p_idle - (p->have_extra ? p->extra_w : 0.0)) / span : 1.0;
}

static void pid_describe(const void *state, const th_gov_config *cfg, char *buf, size_t len) {
    const pid_state *p = state;
    if (!p->active)
        snprintf(buf, len, "pid: below switch-on %.1f °C, maximum power", cfg->switch_on_c);
    else
        snprintf(buf, len, "pid: budget %.1f W (sustainable %.1f W, err %.2f °C, integral %.2f)", p->budget_w, p->sp,
                 p->err, p->err_integral);
}

double th_gov_pid_integral(const void *state) { return ((const pid_state *)state)->err_integral; }

const th_governor_ops th_gov_pid_ops = {
    .name = "pid",
    .api_version = TH_GOV_API_VERSION,
    .source = "Linux drivers/thermal/gov_power_allocator.c (ARM IPA): asymmetric k_po/k_pu, integral only "
              "while err < integral_cutoff (0) with anti-windup, sustainable-power feed-forward",
    .state_size = sizeof(pid_state),
    .fail_safe = 1,
    .init = pid_init,
    .decide = pid_decide,
    .describe = pid_describe,
};
