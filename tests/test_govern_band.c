/* test_govern_band.c: the predictive governor's safe band (full duty from cold while a
 * worst-case bound shows the limit cannot be reached), which must stay safe on a plant that
 * heats faster than its prior; the optimal control bound of the benchmark; and the
 * refusals of impossible plants and limits. All in simulated time, no clocks asserted. */
#include <string.h>

#include "test_util.h"
#include "govern/govern_internal.h"

/* Closed loop: the governor configured from `prior`, driving a plant built from `truth`.
 * Returns the seconds the true temperature spent above the limit; *full_s gets the time
 * at full duty before the first cut, *max_c the hottest true temperature. */
static double closed_loop(const th_thermal_profile *prior, const th_thermal_profile *truth, double seconds,
                          double *full_s, double *max_c) {
    double limit = th_gov_default_limit_c(prior);
    th_gov_config cfg = th_gov_config_default(limit);
    th_gov_config_set_plant(&cfg, prior);
    th_plant *pl = NULL;
    th_governor *g = NULL;
    double above = 0, dt = 0.1;
    *full_s = -1;
    *max_c = 0;
    if (th_plant_create(truth, 3, &pl) != TH_OK || th_governor_create("predictive", &cfg, &g) != TH_OK) {
        CHECK(0, "setup: %s", th_last_error());
        goto done;
    }
    for (long k = 0; k < (long)(seconds / dt); k++) {
        th_sample s;
        th_plant_read(pl, (uint64_t)((k * dt + 1) * 1e9), &s);
        th_gov_input in = {.sample = &s, .read_status = TH_OK, .health = TH_HEALTH_OK};
        th_gov_output o;
        th_governor_decide(g, &in, k ? dt : 0, &o);
        if (o.duty < 1.0 && *full_s < 0) *full_s = k * dt;
        th_plant_set_duty(pl, o.duty);
        th_plant_step(pl, dt, o.duty);
        double t = th_plant_temp_c(pl);
        if (t > limit) above += dt;
        if (t > *max_c) *max_c = t;
    }
done:
    th_governor_free(g);
    th_plant_free(pl);
    return above;
}

static void test_band(const char *name) {
    th_thermal_profile prof;
    if (th_profile_find(name, &prof) != TH_OK) {
        CHECK(0, "%s: %s", name, th_last_error());
        return;
    }
    double full_s, max_c;
    /* the plant is the prior: full duty from the first decision, unconverged as it is */
    double above = closed_loop(&prof, &prof, 300, &full_s, &max_c);
    CHECK(above == 0, "%s: %.1f s above the limit", name, above);
    CHECK(full_s >= 5.0, "%s: full duty from cold for %.1f s (the band), not the old ramp from 0.5", name, full_s);
    /* a plant that heats 1.5x faster than the prior says (C 0.65x) and runs hotter (R 1.1x):
     * the band and the worst-case duty still keep it under the limit */
    th_thermal_profile fast = prof;
    fast.c_j_per_k *= 0.65;
    fast.r_k_per_w *= 1.1;
    above = closed_loop(&prof, &fast, 300, &full_s, &max_c);
    CHECK(above == 0, "%s, plant 1.5x faster than the prior: %.1f s above the limit (max %.2f °C)", name, above, max_c);
}

/* A decision on a cold plant is full duty; one just under the limit is not. */
static void test_band_decisions(void) {
    th_thermal_profile prof;
    if (th_profile_find("h100-sxm", &prof) != TH_OK) {
        CHECK(0, "h100-sxm: %s", th_last_error());
        return;
    }
    th_gov_config cfg = th_gov_config_default(85);
    th_gov_config_set_plant(&cfg, &prof);
    th_governor *g;
    if (th_governor_create("predictive", &cfg, &g) != TH_OK) {
        CHECK(0, "create: %s", th_last_error());
        return;
    }
    th_sample s;
    memset(&s, 0, sizeof s);
    s.valid = TH_SAMPLE_TEMP | TH_SAMPLE_POWER | TH_SAMPLE_UTIL;
    s.temp_mc = 31000;
    s.power_uw = 700000000;
    s.util = 1;
    s.t_ns = 1000000000;
    th_gov_input in = {.sample = &s, .read_status = TH_OK, .health = TH_HEALTH_OK};
    th_gov_output o;
    th_governor_decide(g, &in, 0, &o);
    CHECK(o.duty == 1.0, "31 °C under an 85 °C limit: full duty at once (%.3f)", o.duty);
    CHECK(strstr(th_governor_status(g), "safe band") != NULL, "status says why: %s", th_governor_status(g));
    th_governor_reset(g);
    s.temp_mc = 84000;
    th_governor_decide(g, &in, 0, &o);
    CHECK(o.duty < 1.0, "84 °C: outside the band, the worst-case duty (%.3f)", o.duty);
    th_governor_free(g);
}

/* The optimal control bound: no governor beats it while staying under the limit, and on a
 * plant that never reaches the limit it is full duty for the whole run. */
static void test_optimal(void) {
    th_thermal_profile prof;
    if (th_profile_find("h100-sxm", &prof) != TH_OK) {
        CHECK(0, "h100-sxm: %s", th_last_error());
        return;
    }
    th_bench_gov_opts o = th_bench_gov_defaults();
    for (int k = 0; k < TH_SCEN_COUNT; k++) {
        for (size_t gi = 0; gi < th_governor_count(); gi++) {
            th_bench_gov_result r;
            if (th_bench_governor(&prof, k, th_governor_name(gi), &o, &r) != TH_OK) {
                CHECK(0, "bench: %s", th_last_error());
                return;
            }
            /* with a planted coupling the greedy bound is not a bound (pre-cooling before a
             * spike can beat it), so it is not held to it */
            if (r.above_limit_s == 0 && k != TH_SCEN_GRAD_SPIKES_PLANTED)
                CHECK(r.work_vs_optimal <= 1.0005, "%s %s: under the limit yet %.4f of the optimal bound", r.scenario,
                      r.governor, r.work_vs_optimal);
            CHECK(r.race_energy_per_work_j > 0 && r.pace_energy_per_work_j > 0 && r.pace_duty > 0,
                  "%s %s: race-to-idle and pace-to-cool figures", r.scenario, r.governor);
            /* the causal bound: below the optimal by a margin only where the plant changes mid-run */
            int change = k == TH_SCEN_AMBIENT_STEP || k == TH_SCEN_COOLING_DEGRADED;
            CHECK(change ? r.causal_margin_c > 0.2 && r.causal_margin_c < 2.0 && r.causal_work < r.optimal_work
                         : r.causal_margin_c == 0 && fabs(r.causal_work - r.optimal_work) < 1e-9,
                  "%s %s: causal margin %.3f °C, causal work %.2f vs optimal %.2f", r.scenario, r.governor,
                  r.causal_margin_c, r.causal_work, r.optimal_work);
            if (change && strcmp(r.governor, "predictive") == 0) {
                /* with the derived margin, held 1.5x the causal bound's margin under the limit (guard_c), the governor that
                 * learns of the change through the sensor stays at 0 s above, near that bound */
                th_bench_gov_opts og = o;
                og.guard_c = 1.5 * r.causal_margin_c;
                og.margin_c = 0; /* on top of the derived margin */
                th_bench_gov_result rg;
                CHECK(th_bench_governor(&prof, k, "predictive", &og, &rg) == TH_OK, "bench: %s", th_last_error());
                CHECK(rg.above_limit_s == 0 && rg.work_vs_causal >= 0.98,
                      "%s predictive, guard %.2f °C: %.1f s above, %.3f of the causal bound", rg.scenario, og.guard_c,
                      rg.above_limit_s, rg.work_vs_causal);
            }
        }
    }
    o.limit_c = 91.0; /* above full-duty steady state (~88 °C): the bound is all the time at duty 1 */
    o.duration_s = 120;
    th_bench_gov_result r;
    CHECK(th_bench_governor(&prof, TH_SCEN_STEADY, "none", &o, &r) == TH_OK, "bench");
    CHECK(fabs(r.optimal_work - 120.0) < 1e-6, "never at the limit: the optimal is full duty, %.6f", r.optimal_work);
    CHECK(fabs(r.work_vs_optimal - 1.0) < 1e-6, "none matches it: %.6f", r.work_vs_optimal);
}

/* Impossible plants and limits are refused with the field named. */
static void test_bad_input(void) {
    th_thermal_profile prof;
    if (th_profile_find("h100-sxm", &prof) != TH_OK) {
        CHECK(0, "h100-sxm: %s", th_last_error());
        return;
    }
    th_bench_gov_opts o = th_bench_gov_defaults();
    th_bench_gov_result r;
    struct {
        const char *field;
        th_thermal_profile p;
    } bad[4];
    for (int i = 0; i < 4; i++) bad[i].p = prof;
    bad[0].field = "r_k_per_w", bad[0].p.r_k_per_w = -0.1;
    bad[1].field = "c_j_per_k", bad[1].p.c_j_per_k = -5;
    bad[2].field = "p_max_w", bad[2].p.p_max_w = prof.p_idle_w - 1;
    bad[3].field = "t_shutdown_c", bad[3].p.t_shutdown_c = prof.t_slowdown_c - 1;
    for (int i = 0; i < 4; i++) {
        th_status st = th_bench_governor(&bad[i].p, TH_SCEN_STEADY, "predictive", &o, &r);
        CHECK(st != TH_OK && strstr(th_last_error(), bad[i].field), "bad %s refused naming it: %s", bad[i].field,
              th_last_error());
    }
    o.limit_c = prof.t_shutdown_c + 1;
    CHECK(th_bench_governor(&prof, TH_SCEN_STEADY, "predictive", &o, &r) != TH_OK &&
              strstr(th_last_error(), "t_shutdown_c"),
          "a limit above shutdown is refused: %s", th_last_error());
    th_gov_config c = th_gov_config_default(95);
    th_gov_config_set_plant(&c, &prof);
    th_governor *g = NULL;
    CHECK(th_governor_create("predictive", &c, &g) != TH_OK && strstr(th_last_error(), "limit_c"),
          "governor: limit 95 above shutdown 92 refused: %s", th_last_error());
    th_governor_free(g);
    c = th_gov_config_default(80);
    c.r_k_per_w = -1;
    g = NULL;
    CHECK(th_governor_create("predictive", &c, &g) != TH_OK && strstr(th_last_error(), "r_k_per_w"),
          "governor: negative R refused: %s", th_last_error());
    th_governor_free(g);
}

/* --objective energy: on a plant whose leakage dominates (no idle power, steep leakage) the
 * lowest J per unit of work is below full speed, and predictive finds it; on a shipped
 * profile idle power dominates and the answer is the throughput one. */
static void test_energy_objective(void) {
    th_thermal_profile prof;
    if (th_profile_find("h100-sxm", &prof) != TH_OK) {
        CHECK(0, "h100-sxm: %s", th_last_error());
        return;
    }
    th_bench_gov_opts o = th_bench_gov_defaults();
    th_bench_gov_result thr, en;
    CHECK(th_bench_governor(&prof, TH_SCEN_STEADY, "predictive", &o, &thr) == TH_OK, "bench");
    o.objective = TH_GOV_OBJ_ENERGY;
    CHECK(th_bench_governor(&prof, TH_SCEN_STEADY, "predictive", &o, &en) == TH_OK, "bench");
    CHECK(fabs(en.work - thr.work) < 1e-9, "h100-sxm: idle power dominates, energy = throughput (%.3f vs %.3f)", en.work,
          thr.work);
    th_thermal_profile leaky = prof;
    snprintf(leaky.name, sizeof leaky.name, "leaky");
    leaky.p_idle_w = 0;
    leaky.leak_w_at_ref = 60;
    leaky.leak_doubling_c = 10;
    leaky.leak_ref_c = 80;
    o.limit_c = 85;
    CHECK(th_bench_governor(&leaky, TH_SCEN_STEADY, "predictive", &o, &en) == TH_OK, "bench leaky: %s", th_last_error());
    o.objective = TH_GOV_OBJ_THROUGHPUT;
    CHECK(th_bench_governor(&leaky, TH_SCEN_STEADY, "predictive", &o, &thr) == TH_OK, "bench leaky");
    CHECK(en.mean_duty < thr.mean_duty - 0.05 && en.energy_per_work_j < thr.energy_per_work_j,
          "leaky plant: energy objective runs cooler (duty %.3f vs %.3f) for fewer J/work (%.1f vs %.1f)", en.mean_duty,
          thr.mean_duty, en.energy_per_work_j, thr.energy_per_work_j);
}

/* Coupling files: a usable one turns the feed-forward on, a weak or non-leading one leaves it
 * off saying why, a missing one is an I/O error (off, never on blind), a malformed one or one
 * from another machine is refused naming the field. */
static void test_coupling(void) {
    th_gov_config c = th_gov_config_default(80);
    CHECK(c.ff_lag_s == 0 && strstr(c.ff_note, "no coupling"), "default: off, says why: %s", c.ff_note);
    th_gov_coupling k = {.r_peak = -0.7, .t_lag_s = -2};
    CHECK(th_gov_config_set_coupling(&c, &k) == 1 && c.ff_lag_s == 2.0, "r -0.7 at -2 s: on (%s)", c.ff_note);
    k.r_peak = 0.3;
    CHECK(th_gov_config_set_coupling(&c, &k) == 0 && strstr(c.ff_note, "r_peak"), "weak: off (%s)", c.ff_note);
    k.r_peak = 0.9, k.t_lag_s = 1;
    CHECK(th_gov_config_set_coupling(&c, &k) == 0 && strstr(c.ff_note, "t_lag_s"), "lagging: off (%s)", c.ff_note);
    th_gov_coupling got;
    CHECK(th_gov_coupling_load("tests/fixtures/govern/no-such-coupling.json", NULL, &got) == TH_ERR_IO,
          "missing file: I/O error (%s)", th_last_error());
    CHECK(th_gov_coupling_load("tests/fixtures/govern/coupling-ok.json", "h100-sxm", &got) == TH_OK &&
              got.t_lag_s < 0 && th_gov_config_set_coupling(&c, &got) == 1,
          "a measured coupling loads and turns it on: %s", th_last_error());
    CHECK(th_gov_coupling_load("tests/fixtures/govern/coupling-ok.json", "laptop-cpu", &got) == TH_ERR_INVALID &&
              strstr(th_last_error(), "profile"),
          "another machine's coupling refused: %s", th_last_error());
    CHECK(th_gov_coupling_load("tests/fixtures/govern/coupling-bad.json", NULL, &got) == TH_ERR_FORMAT &&
              strstr(th_last_error(), "r_peak"),
          "r_peak 1.7 refused naming it: %s", th_last_error());
}

/* The planted scenario: without the coupling predictive is surprised by the planted heat on
 * the unseen profile; given it, the feed-forward cuts ahead and stays under the limit. */
static void test_planted(void) {
    th_thermal_profile prof;
    if (th_profile_find("tests/fixtures/govern/unseen.json", &prof) != TH_OK) {
        CHECK(0, "unseen: %s", th_last_error());
        return;
    }
    th_bench_gov_opts o = th_bench_gov_defaults();
    th_bench_gov_result off, on;
    CHECK(th_bench_governor(&prof, TH_SCEN_GRAD_SPIKES_PLANTED, "predictive", &o, &off) == TH_OK, "bench");
    o.feed_forward = 1;
    CHECK(th_bench_governor(&prof, TH_SCEN_GRAD_SPIKES_PLANTED, "predictive", &o, &on) == TH_OK, "bench ff");
    printf("planted coupling, unseen: predictive %.1f s above (%.2f °C), +ff %.1f s (%.2f °C); work %.3f vs %.3f\n",
           off.above_limit_s, off.max_overshoot_c, on.above_limit_s, on.max_overshoot_c, off.work_vs_optimal,
           on.work_vs_optimal);
    CHECK(strcmp(on.governor, "predictive+ff") == 0 && strstr(on.scenario, "planted"), "labelled: %s %s", on.scenario,
          on.governor);
    CHECK(on.above_limit_s < off.above_limit_s && on.max_overshoot_c < off.max_overshoot_c,
          "feed-forward lowers the time above (%.1f vs %.1f s) and the overshoot", on.above_limit_s, off.above_limit_s);
    /* no coupling elsewhere: the flag changes nothing on the default plant */
    th_bench_gov_result a, b;
    o.duration_s = 200;
    CHECK(th_bench_governor(&prof, TH_SCEN_STEADY, "predictive", &o, &a) == TH_OK, "bench");
    o.feed_forward = 0;
    CHECK(th_bench_governor(&prof, TH_SCEN_STEADY, "predictive", &o, &b) == TH_OK && a.work == b.work &&
              strcmp(a.governor, "predictive") == 0,
          "steady: no coupling, feed-forward stays off (%.6f vs %.6f)", a.work, b.work);
}

int main(void) {
    test_coupling();
    test_planted();
    test_energy_objective();
    test_band("h100-sxm");
    test_band("laptop-cpu");
    test_band("tests/fixtures/govern/unseen.json");
    test_band_decisions();
    test_optimal();
    test_bad_input();
    return test_summary();
}
