/* test_govern_rules.c: each governor's decision rules on hand-made sample sequences (pure
 * decisions, no sleeping), and the fail-safe for every fault kind (invariant 2). */
#include <string.h>

#include "test_util.h"
#include "thermo/govern.h"

static th_sample mk(double t_s, double temp_c) {
    th_sample s;
    memset(&s, 0, sizeof s);
    s.t_ns = (uint64_t)(t_s * 1e9);
    s.temp_mc = (int32_t)lround(temp_c * 1000);
    s.valid = TH_SAMPLE_TEMP;
    snprintf(s.source, sizeof s.source, "test");
    return s;
}

static double decide(th_governor *g, const th_sample *s, th_gov_output *o) {
    th_gov_input in = {.sample = s, .read_status = TH_OK, .health = TH_HEALTH_OK};
    th_governor_decide(g, &in, 0.1, o);
    return o->duty;
}

static th_gov_config cfg80(void) {
    th_gov_config c = th_gov_config_default(80.0);
    c.p_idle_w = 20;
    c.p_max_w = 220;
    c.sustainable_power_w = 100;
    c.switch_on_c = 70;
    return c;
}

static void test_registry(void) {
    CHECK(th_governor_count() == 5, "%zu governors", th_governor_count());
    const char *want[] = {"none", "bang_bang", "step_wise", "pid", "predictive"};
    for (size_t i = 0; i < 5; i++) {
        CHECK(th_governor_name(i) && strcmp(th_governor_name(i), want[i]) == 0, "entry %zu", i);
        CHECK(th_governor_source(i) && strlen(th_governor_source(i)) > 20, "%s has a source", want[i]);
    }
    th_governor *g = NULL;
    th_gov_config c = cfg80();
    CHECK(th_governor_create("nope", &c, &g) == TH_ERR_INVALID, "unknown name rejected");
    CHECK(strstr(th_last_error(), "predictive") != NULL, "message lists the known: %s", th_last_error());
    c.safe_duty = 1.5;
    CHECK(th_governor_create("pid", &c, &g) == TH_ERR_INVALID, "safe duty > 1 rejected");
    c = cfg80();
    c.limit_c = NAN;
    CHECK(th_governor_create("step_wise", &c, &g) == TH_ERR_INVALID, "NaN limit rejected");
    c = th_gov_config_default(80);
    CHECK(th_governor_create("pid", &c, &g) == TH_ERR_INVALID, "pid without plant powers rejected");
}

static void test_none(void) {
    th_governor *g;
    th_gov_config c = cfg80();
    CHECK(th_governor_create("none", &c, &g) == TH_OK, "create");
    th_gov_output o;
    th_sample s = mk(1, 120);
    CHECK(decide(g, &s, &o) == 1.0, "none is full speed at 120 °C");
    th_gov_input in = {.sample = NULL};
    th_governor_decide(g, &in, 0.1, &o);
    CHECK(o.duty == 1.0 && !o.fail_safe, "none ignores a missing sample (it is the unprotected baseline)");
    th_governor_free(g);
}

static void test_bang_bang(void) {
    th_governor *g;
    th_gov_config c = cfg80();
    CHECK(th_governor_create("bang_bang", &c, &g) == TH_OK, "create");
    th_gov_output o;
    double seq[][2] = {{79.0, 1.0}, {80.0, 0.05}, {79.0, 0.05}, {78.1, 0.05}, {77.9, 1.0}, {79.9, 1.0}, {80.5, 0.05}};
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        th_sample s = mk(1 + 0.1 * i, seq[i][0]);
        CHECK(fabs(decide(g, &s, &o) - seq[i][1]) < 1e-12, "bang_bang at %.1f °C (step %zu): duty %g, want %g",
              seq[i][0], i, o.duty, seq[i][1]);
    }
    th_governor_free(g);
}

static void test_step_wise(void) {
    th_governor *g;
    th_gov_config c = cfg80();
    CHECK(th_governor_create("step_wise", &c, &g) == TH_OK, "create");
    th_gov_output o;
    /* temperature, expected cooling state (duty = 1 − 0.095·state) */
    struct { double t; int state; } seq[] = {
        {81.0, 1}, /* first evaluation above the trip: one step */
        {82.0, 2}, /* throttling and rising: +1 */
        {83.0, 3}, {83.0, 3}, /* stable: hold */
        {82.0, 2}, /* throttling and dropping: −1 */
        {81.0, 1}, {80.0, 1}, /* never below 1 while throttling (threshold now 78 with hysteresis) */
        {79.0, 1}, /* still >= 78: throttling, dropping, floor 1 */
        {77.0, 0}, /* below trip − hyst and dropping: −1, deactivated */
        {76.0, 0}, {79.0, 0}, /* below the trip (80) again: rising alone does nothing */
    };
    for (size_t i = 0; i < sizeof seq / sizeof seq[0]; i++) {
        th_sample s = mk(1 + 0.1 * i, seq[i].t);
        double want = 1.0 - 0.095 * seq[i].state;
        CHECK(fabs(decide(g, &s, &o) - want) < 1e-9, "step_wise step %zu at %.1f °C: duty %g, want %g (%s)", i,
              seq[i].t, o.duty, want, th_governor_status(g));
    }
    /* ten rising steps saturate at the last state = min duty */
    for (int i = 0; i < 15; i++) {
        th_sample s = mk(10 + 0.1 * i, 81 + i);
        decide(g, &s, &o);
    }
    CHECK(fabs(o.duty - 0.05) < 1e-9, "saturates at min duty: %g", o.duty);
    th_governor_free(g);
}

static double status_number(const th_governor *g, const char *key) {
    const char *p = strstr(th_governor_status(g), key);
    return p ? atof(p + strlen(key)) : NAN;
}

static void test_pid(void) {
    th_governor *g;
    th_gov_config c = cfg80(); /* SP 100 W, ΔT 10: k_po 10, k_pu 20, k_i 2 W/°C */
    CHECK(th_governor_create("pid", &c, &g) == TH_OK, "create");
    th_gov_output o;
    th_sample s = mk(1, 60);
    CHECK(decide(g, &s, &o) == 1.0, "below switch-on: maximum power");
    s = mk(1.1, 75); /* err +5: budget 100 + 20·5 = 200 W → (200 − 20)/200 */
    CHECK(fabs(decide(g, &s, &o) - 0.9) < 1e-9, "undershoot uses k_pu: %g", o.duty);
    CHECK(fabs(status_number(g, "integral ")) < 1e-9, "no integral below the set point");
    s = mk(1.2, 82); /* err −2: p = −20, Σ = −2, i = −4: budget 76 → 0.28 */
    CHECK(fabs(decide(g, &s, &o) - 0.28) < 1e-9, "overshoot uses k_po and integrates: %g", o.duty);
    s = mk(1.3, 82); /* Σ = −4: budget 72 → 0.26 */
    CHECK(fabs(decide(g, &s, &o) - 0.26) < 1e-9, "integral accumulates above the set point: %g", o.duty);
    s = mk(1.4, 78); /* err +2: integral frozen at −4: 100 + 40 − 8 = 132 → 0.56 */
    CHECK(fabs(decide(g, &s, &o) - 0.56) < 1e-9, "integral frozen below the set point: %g", o.duty);
    for (int i = 0; i < 500; i++) {
        s = mk(2 + 0.1 * i, 100);
        decide(g, &s, &o);
    }
    double integral = status_number(g, "integral ");
    CHECK(integral > -110.0 - 1e-9 && integral < -90.0, "anti-windup holds |k_i·Σ| < P_max: Σ = %g", integral);
    CHECK(fabs(o.duty - 0.05) < 1e-12, "budget clamped to 0: min duty, got %g", o.duty);
    s = mk(60, 65);
    decide(g, &s, &o);
    CHECK(o.duty == 1.0 && fabs(status_number(g, "integral ")) != fabs(integral), "below switch-on resets");
    s = mk(60.1, 79);
    CHECK(fabs(decide(g, &s, &o) - (100 + 20 - 20) / 200.0) < 1e-9, "after the reset the integral is gone: %g", o.duty);
    /* the measured power's excess over the P_idle..P_max line (leakage) is taken off */
    th_governor_reset(g);
    for (int i = 0; i < 200; i++) {
        s = mk(100 + 0.1 * i, 79);
        s.valid |= TH_SAMPLE_POWER | TH_SAMPLE_UTIL;
        s.util = 0.5;
        s.power_uw = (int64_t)((20 + 200 * 0.5 + 10) * 1e6); /* 10 W above the line */
        decide(g, &s, &o);
    }
    CHECK(fabs(o.duty - (120 - 20 - 10) / 200.0) < 1e-3, "leakage correction: %g", o.duty);
    th_governor_free(g);
}

/* Every governor but none: each fault gives the safe duty and says why. */
static void test_fail_safe(void) {
    const char *names[] = {"bang_bang", "step_wise", "pid", "predictive"};
    for (size_t n = 0; n < 4; n++) {
        th_gov_config c = cfg80();
        c.safe_duty = 0.4;
        th_governor *g;
        CHECK(th_governor_create(names[n], &c, &g) == TH_OK, "create %s", names[n]);
        th_gov_output o;
        double t = 1;
        /* a cool, healthy start: every governor runs fast */
        for (int i = 0; i < 30; i++, t += 0.1) {
            th_sample s = mk(t, 40);
            decide(g, &s, &o);
        }
        CHECK(!o.fail_safe, "%s healthy", names[n]);
        struct {
            const char *what, *expect;
        } faults[] = {{"no sample", "stale"},          {"read failed, vanished", "vanished"},
                      {"no temperature bit", "nonsense"}, {"200 °C", "nonsense"},
                      {"-60 °C", "nonsense"},          {"util 3", "nonsense"},
                      {"sensor says stuck", "stuck"},   {"sample 5 s old", "stale"},
                      {"timestamp frozen 3 s", "stale"}, {"same reading 130 s", "stuck"}};
        for (size_t f = 0; f < sizeof faults / sizeof faults[0]; f++) {
            th_sample s = mk(t, 40);
            th_gov_input in = {.sample = &s, .read_status = TH_OK, .health = TH_HEALTH_OK};
            switch (f) {
            case 0: in.sample = NULL; break;
            case 1: in.read_status = TH_ERR_IO; s.fault = TH_HEALTH_VANISHED; s.valid = 0; break;
            case 2: s.valid = TH_SAMPLE_POWER; s.power_uw = 1000000; break;
            case 3: s.temp_mc = 200000; break;
            case 4: s.temp_mc = -60000; break;
            case 5: s.valid |= TH_SAMPLE_UTIL; s.util = 3; break;
            case 6: in.health = TH_HEALTH_STUCK; in.health_why = "temperature stuck at 40 °C for 130 s"; break;
            case 7: in.now_ns = s.t_ns + 5000000000ull; break;
            case 8: break;
            case 9: break;
            }
            if (f == 8) { /* the same sample handed over again and again */
                for (int i = 0; i < 31; i++) th_governor_decide(g, &in, 0.1, &o);
            } else if (f == 9) { /* a fresh timestamp, the same milli-degree, for 130 s */
                for (int i = 0; i < 1300; i++) {
                    th_sample r = mk(t + 0.1 * i, 41.0);
                    in.sample = &r;
                    th_governor_decide(g, &in, 0.1, &o);
                }
                t += 130;
            } else {
                th_governor_decide(g, &in, 0.1, &o);
            }
            CHECK(o.fail_safe && o.duty == 0.4, "%s / %s: fail-safe duty 0.4, got %g (fail_safe %d)", names[n],
                  faults[f].what, o.duty, o.fail_safe);
            const char *st = th_governor_status(g);
            CHECK(strncmp(st, "fail-safe: ", 11) == 0 && strstr(st, faults[f].expect), "%s / %s: status '%s'",
                  names[n], faults[f].what, st);
            /* recovery: three good samples in a row (the 3rd leaves fail-safe) */
            for (int i = 0; i < 3; i++) {
                t += 0.1;
                th_sample ok = mk(t, 40 + 0.01 * i);
                decide(g, &ok, &o);
                if (i < 2) CHECK(o.fail_safe, "%s stays in fail-safe until recovered (%d)", names[n], i);
            }
            CHECK(!o.fail_safe, "%s / %s: recovered: %s", names[n], faults[f].what, th_governor_status(g));
            t += 0.1;
        }
        th_governor_free(g);
    }
}

int main(void) {
    test_registry();
    test_none();
    test_bang_bang();
    test_step_wise();
    test_pid();
    test_fail_safe();
    return test_summary();
}
