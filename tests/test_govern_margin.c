/* test_govern_margin.c: the predictive governor's derived margin (from its Kalman filter's
 * steady-state die estimate), its innovation change detector, and the necessary-pacing bound
 * a run's report sets the governor's pacing against (th_gov_necessary_idle). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "test_util.h"
#include "govern/govern_internal.h"

static int load(const char *name, th_thermal_profile *p) {
    if (th_profile_find(name, p) == TH_OK) return 1;
    CHECK(0, "profile %s: %s", name, th_last_error());
    return 0;
}

/* The margin after one decision of a predictive governor configured for profile p. */
static double margin_for(const th_thermal_profile *p, double margin_c, double *sd) {
    th_gov_config cfg = th_gov_config_default(th_gov_default_limit_c(p));
    th_gov_config_set_plant(&cfg, p);
    cfg.margin_c = margin_c;
    th_governor *g = NULL;
    if (th_governor_create("predictive", &cfg, &g) != TH_OK) {
        CHECK(0, "create: %s", th_last_error());
        return NAN;
    }
    th_sample s = {0};
    s.t_ns = 1000000000ull;
    s.temp_mc = (int64_t)llround(p->t_ambient_c * 1000);
    s.valid = TH_SAMPLE_TEMP;
    th_gov_input in = {.sample = &s, .read_status = TH_OK, .health = TH_HEALTH_OK};
    th_gov_output o;
    th_governor_decide(g, &in, 0.0, &o);
    th_gov_model m;
    CHECK(th_governor_model(g, &m) == TH_OK, "model");
    th_governor_free(g);
    *sd = m.die_sd_c;
    return m.margin_c;
}

/* A finer sensor gives a smaller margin; the margin is a few σ of the filter's estimate; a
 * configured margin is used as it is. */
static void test_margin_rule(void) {
    th_thermal_profile coarse, fine;
    if (!load("a100-sxm4", &coarse)) return;
    fine = coarse;
    fine.sensor_quantum_c = 0.125;
    fine.sensor_noise_c = 0.1;
    double sd_c, sd_f;
    double m_c = margin_for(&coarse, 0, &sd_c), m_f = margin_for(&fine, 0, &sd_f);
    CHECK(m_f < m_c && sd_f < sd_c, "finer sensor: margin %.3f < %.3f, sd %.3f < %.3f", m_f, m_c, sd_f, sd_c);
    CHECK(m_c >= 3 * sd_c && m_c < 3 * sd_c + 0.5 * coarse.sensor_quantum_c, "margin %.3f = 3 sd %.3f + bias", m_c,
          sd_c);
    CHECK(m_c > 0.1 && m_c < 1.0, "1 °C steps, 0.3 °C noise: margin %.3f in (0.1, 1) °C", m_c);
    /* a slower sensor knows less of the die now: a larger σ */
    th_thermal_profile slow = coarse;
    slow.sensor_lag_s = 2.0;
    double sd_s;
    margin_for(&slow, 0, &sd_s);
    CHECK(sd_s > sd_c, "2 s lag: sd %.3f > %.3f (0.5 s)", sd_s, sd_c);
    double sd_x;
    CHECK(fabs(margin_for(&coarse, 0.8, &sd_x) - 0.8) < 1e-12, "a configured margin is kept");
}

/* A first-order plant seen through a lagged, noisy, quantized sensor, read at 10 Hz by a
 * predictive governor that knows it (open loop: the duty, and so the power, stay fixed). R
 * is multiplied by r_step at t_step_s (0: never). Returns the samples from the step to the
 * first alarm (-1: none), *alarms the total. */
static long run_detector(double r_step, double t_step_s, double duration_s, long *alarms) {
    th_thermal_profile p;
    if (!load("laptop-cpu", &p)) return -1;
    p.leak_w_at_ref = 0;
    double power_w = p.p_idle_w + (p.p_max_w - p.p_idle_w) * 0.6, r = p.r_k_per_w, c = p.c_j_per_k;
    th_gov_config cfg = th_gov_config_default(th_gov_default_limit_c(&p));
    th_gov_config_set_plant(&cfg, &p);
    cfg.margin_c = 0; /* the detector runs with the derived margin (a fixed one keeps its filter open) */
    th_governor *g = NULL;
    if (th_governor_create("predictive", &cfg, &g) != TH_OK) {
        CHECK(0, "create: %s", th_last_error());
        return -1;
    }
    th_rng rng;
    th_rng_seed(&rng, 7);
    double t_die = p.t_ambient_c + r * power_w, t_sens = t_die, dt = 0.1;
    long first = -1, k_step = (long)llround(t_step_s / dt), n = (long)llround(duration_s / dt);
    th_gov_model m = {0};
    for (long k = 0; k < n; k++) {
        if (r_step > 0 && k == k_step) r *= r_step;
        for (int i = 0; i < 10; i++) { /* the plant in 10 ms steps */
            double h = dt / 10;
            t_die += h * (power_w - (t_die - p.t_ambient_c) / r) / c;
            t_sens += (t_die - t_sens) * (1 - exp(-h / p.sensor_lag_s));
        }
        double y = t_sens + p.sensor_noise_c * th_rng_normal(&rng);
        y = p.sensor_quantum_c * floor(y / p.sensor_quantum_c + 0.5);
        th_sample s = {0};
        s.t_ns = (uint64_t)llround((k + 1) * dt * 1e9);
        s.temp_mc = (int64_t)llround(y * 1000);
        s.power_uw = (int64_t)llround(power_w * 1e6);
        s.util = 0.6;
        s.valid = TH_SAMPLE_TEMP | TH_SAMPLE_POWER | TH_SAMPLE_UTIL;
        th_gov_input in = {.sample = &s, .read_status = TH_OK, .health = TH_HEALTH_OK};
        th_gov_output o;
        th_governor_decide(g, &in, k ? dt : 0.0, &o);
        th_governor_model(g, &m);
        if (r_step > 0 && k >= k_step && first < 0 && m.alarms > 0) first = k - k_step;
    }
    th_governor_free(g);
    *alarms = m.alarms;
    return first;
}

static void test_detector(void) {
    long alarms = 0;
    /* a fan 30 % slower at 300 s: the die heats ~0.4 °C/s; through 1 °C steps and 0.5 °C noise
     * the alarm comes within 5 s (45 samples measured), by then the die is ~2 °C up */
    long after = run_detector(1.3, 300, 400, &alarms);
    CHECK(after >= 0 && after <= 50, "R +30 %%: alarm %ld samples after the step (<= 50)", after);
    /* an hour at a steady state with 0.5 °C noise and 1 °C steps: no alarm */
    run_detector(0, 0, 3600, &alarms);
    CHECK(alarms == 0, "an hour steady: %ld false alarms", alarms);
}

/* The necessary pacing: 0 when the limit is never reached; on a first-order plant without
 * leakage started at the limit, the hold duty u* = (limit − T_amb − R·P_idle)/(R·(P_max −
 * P_idle)) all run, so busy seconds of work need busy·(1/u* − 1) of idle. */
static void test_necessary(void) {
    th_thermal_profile p;
    if (!load("laptop-cpu", &p)) return;
    double idle = -1;
    /* full duty settles near 94 °C: under a 99 °C limit nothing is needed */
    CHECK(th_gov_necessary_idle(&p, 99.0, p.t_ambient_c, 100.0, 5.0, &idle) == TH_OK && idle == 0,
          "never at the limit: %.6f s", idle);
    /* a 10 s run from cold under the default limit: nothing either */
    CHECK(th_gov_necessary_idle(&p, th_gov_default_limit_c(&p), p.t_ambient_c, 10.0, 0.5, &idle) == TH_OK && idle == 0,
          "10 s from cold: %.6f s", idle);
    /* as much time outside units as in them: the loop's unpaced duty is 0.5, which settles far
     * under the limit, so the same work needs no pacing (at full duty it would) */
    CHECK(th_gov_necessary_idle(&p, th_gov_default_limit_c(&p), p.t_ambient_c, 300.0, 300.0, &idle) == TH_OK &&
              idle == 0,
          "half the run outside units: %.3f s", idle);
    CHECK(th_gov_necessary_idle(&p, th_gov_default_limit_c(&p), p.t_ambient_c, 300.0, 0.0, &idle) == TH_OK && idle > 1,
          "all of it in units, full duty reaches the limit: %.3f s", idle);
    p.leak_w_at_ref = 0;
    double limit = 80.0, busy = 100.0;
    double u = (limit - p.t_ambient_c - p.r_k_per_w * p.p_idle_w) / (p.r_k_per_w * (p.p_max_w - p.p_idle_w));
    double want = busy * (1 / u - 1);
    CHECK(th_gov_necessary_idle(&p, limit, limit, busy, 0.0, &idle) == TH_OK && fabs(idle / want - 1) < 0.005,
          "held at the limit: %.3f s, analytic %.3f s (u* %.4f)", idle, want, u);
    /* time outside units counts as idle the plant already had */
    double idle2 = -1;
    CHECK(th_gov_necessary_idle(&p, limit, limit, busy, 5.0, &idle2) == TH_OK && fabs(idle2 - (want - 5.0)) < 0.1,
          "5 s outside units: %.3f s, analytic %.3f s", idle2, want - 5.0);
    CHECK(th_gov_necessary_idle(&p, limit, limit, -1, 0, &idle) == TH_ERR_INVALID && isnan(idle), "negative busy");
}

int main(void) {
    test_margin_rule();
    test_detector();
    test_necessary();
    return test_summary();
}
