/* test_govern_realtime.c: the predictive governor in a run shaped like a real one, in
 * simulated time, through the plant's real-time path (src/pipeline/run.c's): the work loop
 * does units of work and idles as the pace says, the plant is on (duty 1) for each unit and
 * off for its wait (th_plant_set_duty_at), and the sensor is read at 20 Hz with the duty and
 * power averaged since the previous read. The die then ripples about the mean a duty sets;
 * the governor is told each unit's length and must hold the limit closely anyway, on a fast
 * plant (tau 1 s, the pipeline test's) and on one heating faster than its prior. Units long
 * beside tau (0.6 s) overshoot the limit when the governor is not told their length, and do
 * not when it is. Also: a short run from cold pays nothing. No clocks are asserted. */
#include <string.h>

#include "test_util.h"
#include "govern/govern_internal.h"

#define SIM_DT 0.001

typedef struct {
    double above_s, peak_c, last10_mean_c, idle_s, busy_s, first_cut_s;
} rt_result;

static uint64_t ns_at(double t) { return (uint64_t)((t + 1) * 1e9 + 0.5); }

/* Drives `truth` for `seconds` with the governor configured from `prior`; unit_s of work per
 * unit; tell: pass the last unit's length to the governor (as run.c does), else 0. */
static rt_result rt_run(const th_thermal_profile *prior, const th_thermal_profile *truth, double limit, double seconds,
                        double unit_s, int tell) {
    rt_result res = {0, -1e9, 0, 0, 0, -1};
    th_gov_config cfg = th_gov_config_default(limit);
    th_gov_config_set_plant(&cfg, prior);
    cfg.period_s = 0.05;
    th_plant *pl = NULL;
    th_governor *g = NULL;
    if (th_plant_create(truth, 5, &pl) != TH_OK || th_governor_create("predictive", &cfg, &g) != TH_OK) {
        CHECK(0, "setup: %s", th_last_error());
        goto done;
    }
    th_plant_advance_to(pl, ns_at(0));
    double duty = 1.0, unit_left = 0, idle_left = 0, idle_done = 0, next_sample = 0, sum10 = 0, last_unit = 0;
    long n10 = 0, steps = (long)(seconds / SIM_DT + 0.5);
    for (long k = 0; k < steps; k++) {
        double t = k * SIM_DT;
        if (t >= next_sample - 1e-9) {
            th_sample s;
            th_plant_advance_to(pl, ns_at(t));
            th_plant_read(pl, ns_at(t), &s);
            th_gov_input in = {.sample = &s, .read_status = TH_OK, .health = TH_HEALTH_OK,
                               .unit_s = tell ? last_unit : 0};
            th_gov_output o;
            th_governor_decide(g, &in, t > 0 ? cfg.period_s : 0, &o);
            duty = o.duty;
            if (duty < 1 && res.first_cut_s < 0) res.first_cut_s = t;
            next_sample += cfg.period_s;
        }
        if (unit_left <= 0 && idle_left <= 0) { /* a unit begins: the plant is on */
            th_plant_set_duty_at(pl, 1.0, ns_at(t));
            unit_left = unit_s;
        }
        if (unit_left > 0) {
            unit_left -= SIM_DT;
            res.busy_s += SIM_DT;
            if (unit_left <= 1e-9) { /* it ends: off for the pace's wait */
                th_plant_set_duty_at(pl, 0.0, ns_at(t + SIM_DT));
                idle_done = 0;
                idle_left = th_pace_idle_s(unit_s, duty);
                last_unit = unit_s;
            }
        } else {
            /* the wait follows the duty published now, as th_pace_wait does */
            idle_done += SIM_DT;
            res.idle_s += SIM_DT;
            idle_left = th_pace_idle_s(unit_s, duty) - idle_done;
        }
        th_plant_advance_to(pl, ns_at(t + SIM_DT));
        double temp = th_plant_temp_c(pl);
        if (temp > limit) res.above_s += SIM_DT;
        if (temp > res.peak_c) res.peak_c = temp;
        if (t >= seconds - 10) {
            sum10 += temp;
            n10++;
        }
    }
    res.last10_mean_c = n10 ? sum10 / n10 : 0;
done:
    th_governor_free(g);
    th_plant_free(pl);
    return res;
}

static int load(const char *name, th_thermal_profile *p) {
    if (th_profile_find(name, p) == TH_OK) return 1;
    CHECK(0, "%s: %s", name, th_last_error());
    return 0;
}

int main(void) {
    th_thermal_profile fast, laptop;
    if (!load("tests/fixtures/pipeline/fast-plant.json", &fast) || !load("laptop-cpu", &laptop)) return test_summary();
    /* the fast plant (full duty settles at 75 °C) under its 68 °C default limit, 60 s */
    rt_result r = rt_run(&fast, &fast, 68, 60, 0.15, 1);
    printf("fast plant: peak %.2f °C, last 10 s mean %.2f °C, %.2f s above, pacing %.1f %%\n", r.peak_c,
           r.last10_mean_c, r.above_s, 100 * r.idle_s / (r.idle_s + r.busy_s));
    CHECK(r.above_s == 0, "fast plant: %.2f s above the 68 °C limit (peak %.2f)", r.above_s, r.peak_c);
    CHECK(r.last10_mean_c > 68 - 2.0, "fast plant: held at %.2f °C, far under the 68 °C limit", r.last10_mean_c);
    /* a plant heating 1.5x faster than its prior (C 0.65x, R 1.1x), same loop */
    th_thermal_profile hot = fast;
    hot.c_j_per_k *= 0.65;
    hot.r_k_per_w *= 1.1;
    r = rt_run(&fast, &hot, 68, 60, 0.15, 1);
    printf("fast plant, truth 1.5x faster than the prior: peak %.2f °C, %.2f s above\n", r.peak_c, r.above_s);
    CHECK(r.above_s == 0, "faster than the prior: %.2f s above the limit (peak %.2f)", r.above_s, r.peak_c);
    /* units of 0.6 s on the fast plant: the sawtooth's top stands ~2 °C over its mean, more than
     * the margin; told each unit's length, the governor aims the mean under by that much */
    rt_result told = rt_run(&fast, &fast, 68, 60, 0.6, 1), blind = rt_run(&fast, &fast, 68, 60, 0.6, 0);
    printf("fast plant, 0.6 s units: told their length: peak %.2f °C, %.2f s above, last 10 s mean %.2f °C; not told: "
           "peak %.2f °C, %.2f s above\n", told.peak_c, told.above_s, told.last10_mean_c, blind.peak_c, blind.above_s);
    CHECK(told.above_s == 0, "0.6 s units: %.2f s above the limit (peak %.2f)", told.above_s, told.peak_c);
    CHECK(told.peak_c > 68 - 1.5, "0.6 s units: the top of the ripple held at %.2f °C, far under the limit", told.peak_c);
    CHECK(blind.above_s > 0, "0.6 s units without their length stayed under (peak %.2f): the case shows nothing",
          blind.peak_c);
    /* a 10 s run from ambient on the laptop: never near the limit, no pacing at all */
    r = rt_run(&laptop, &laptop, th_gov_default_limit_c(&laptop), 10, 0.05, 1);
    printf("laptop, 10 s from cold: idle %.3f s of %.1f s, peak %.2f °C\n", r.idle_s, r.idle_s + r.busy_s, r.peak_c);
    CHECK(r.idle_s == 0 && r.first_cut_s < 0, "10 s from cold paid %.3f s of pacing (first cut at %.2f s)", r.idle_s,
          r.first_cut_s);
    return test_summary();
}
