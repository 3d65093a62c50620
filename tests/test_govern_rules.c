/* test_govern_rules.c: each governor's decision rules on hand-made sample sequences (pure
 * decisions, no sleeping), the fail-safe for every fault kind (invariant 2) with health
 * from the caller and from real sensors (a trace on an injected clock), purity (same state
 * and input, same output) and the plug-in API version check. */
#include <stdatomic.h>
#include <string.h>

#include "govern/govern_internal.h"
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

static double pid_integral(const th_governor *g) { return th_gov_pid_integral(th_governor_state(g)); }

static void test_pid(void) {
    th_governor *g;
    th_gov_config c = cfg80(); /* SP 100 W, ΔT 10: k_po 10, k_pu 20, k_i 2 W/°C */
    CHECK(th_governor_create("pid", &c, &g) == TH_OK, "create");
    th_gov_output o;
    th_sample s = mk(1, 60);
    CHECK(decide(g, &s, &o) == 1.0, "below switch-on: maximum power");
    s = mk(1.1, 75); /* err +5: budget 100 + 20·5 = 200 W → (200 − 20)/200 */
    CHECK(fabs(decide(g, &s, &o) - 0.9) < 1e-9, "undershoot uses k_pu: %g", o.duty);
    CHECK(pid_integral(g) == 0.0, "no integral below the set point: %g", pid_integral(g));
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
    double integral = pid_integral(g);
    CHECK(integral > -110.0 - 1e-9 && integral < -90.0, "anti-windup holds |k_i·Σ| < P_max: Σ = %g", integral);
    CHECK(fabs(o.duty - 0.05) < 1e-12, "budget clamped to 0: min duty, got %g", o.duty);
    s = mk(60, 65);
    decide(g, &s, &o);
    CHECK(o.duty == 1.0 && integral < -90.0 && pid_integral(g) == 0.0, "below switch-on resets the integral: %g",
          pid_integral(g));
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

/* A sensor on an injected clock, for health values the sensor itself works out. */
static _Atomic uint64_t fake_ns = 1000000000ull;
static uint64_t fake_clock(void *user) {
    (void)user;
    return atomic_load(&fake_ns);
}

/* A trace of `n` samples one second apart, all at 41.000 °C (a sensor that sticks). */
static th_sensor *stuck_trace(int n) {
    char path[4200];
    snprintf(path, sizeof path, "%s/stuck.csv", test_tmp_dir("govern_rules"));
    FILE *f = fopen(path, "w");
    if (!f) return NULL;
    fprintf(f, "t_s,kind,origin,source,temp_c,power_w,energy_j,util,health,duty_set,duty_measured,threads,step,loss,"
               "grad_norm,lr,tokens,step_ms,unit_j\n");
    for (int i = 0; i < n; i++) fprintf(f, "%d,sample,measured,test,41.000,,,,ok,,,,,,,,,,\n", i);
    fclose(f);
    th_sense_config c = th_sense_config_default();
    c.trace_path = path;
    c.clock_ns = fake_clock;
    th_sensor *s = NULL;
    return th_sensor_open("trace", &c, &s) == TH_OK ? s : NULL;
}

/* Every governor but none: each fault gives the safe duty and says why; the governor
 * trusts the health it is handed (its own second tracker is gone). */
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
            const char *what, *expect, *why;
        } faults[] = {{"no sample", "stale", "no sample"},
                      {"read failed, vanished", "vanished", "read failed"},
                      {"no temperature bit", "nonsense", "no temperature"},
                      {"200 °C", "nonsense", "outside"},
                      {"-60 °C", "nonsense", "outside"},
                      {"util 3", "nonsense", "utilization"},
                      {"sensor says stuck", "stuck", "stuck at 40 °C for 130 s"},
                      {"sensor says stale", "stale", "last good reading 5.0 s ago"},
                      {"trace sensor not read for 3 s", "stale", "last good reading 3.0 s ago"},
                      {"trace sensor at 41 °C for 125 s", "stuck", "stuck at 41.000 °C"}};
        for (size_t f = 0; f < sizeof faults / sizeof faults[0]; f++) {
            th_sample s = mk(t, 40);
            th_gov_input in = {.sample = &s, .read_status = TH_OK, .health = TH_HEALTH_OK};
            char why[320] = "";
            th_sensor *sensor = NULL;
            switch (f) {
            case 0: in.sample = NULL; break;
            case 1: in.read_status = TH_ERR_IO; s.fault = TH_HEALTH_VANISHED; s.valid = 0; break;
            case 2: s.valid = TH_SAMPLE_POWER; s.power_uw = 1000000; break;
            case 3: s.temp_mc = 200000; break;
            case 4: s.temp_mc = -60000; break;
            case 5: s.valid |= TH_SAMPLE_UTIL; s.util = 3; break;
            case 6: in.health = TH_HEALTH_STUCK; in.health_why = "temperature stuck at 40 °C for 130 s"; break;
            case 7: in.health = TH_HEALTH_STALE; in.health_why = "last good reading 5.0 s ago (limit 2.0 s)"; break;
            case 8: /* a good read, then 3 s without one: the sensor says stale */
                atomic_store(&fake_ns, 1000000000ull);
                sensor = stuck_trace(200);
                CHECK(sensor && th_sensor_read(sensor, &s) == TH_OK, "trace read");
                atomic_fetch_add(&fake_ns, 3000000000ull);
                break;
            case 9: /* a fresh reading every second, the same milli-degree: the sensor says stuck */
                atomic_store(&fake_ns, 1000000000ull);
                sensor = stuck_trace(200);
                for (int i = 0; sensor && i < 126; i++, atomic_fetch_add(&fake_ns, 1000000000ull))
                    CHECK(th_sensor_read(sensor, &s) == TH_OK, "trace read %d", i);
                atomic_fetch_sub(&fake_ns, 1000000000ull);
                break;
            }
            if (sensor) {
                in.health = th_sensor_health(sensor, why, sizeof why);
                in.health_why = why;
                th_sensor_close(sensor);
                CHECK(in.health != TH_HEALTH_OK, "%s: the sensor reports %s: %s", faults[f].what,
                      th_sense_health_name(in.health), why);
            }
            th_governor_decide(g, &in, 0.1, &o);
            CHECK(o.fail_safe && o.duty == 0.4 && o.entered_fail_safe && !o.left_fail_safe,
                  "%s / %s: fail-safe duty 0.4 entered, got %g (fail_safe %d entered %d)", names[n], faults[f].what,
                  o.duty, o.fail_safe, o.entered_fail_safe);
            const char *st = th_governor_status(g);
            CHECK(strncmp(st, "fail-safe: ", 11) == 0 && strstr(st, faults[f].expect) && strstr(st, faults[f].why),
                  "%s / %s: status '%s' (want %s: ...%s...)", names[n], faults[f].what, st, faults[f].expect,
                  faults[f].why);
            th_governor_decide(g, &in, 0.1, &o);
            CHECK(o.fail_safe && !o.entered_fail_safe, "%s / %s: the same fault again is not news", names[n],
                  faults[f].what);
            /* recovery: three good samples in a row (the 3rd leaves fail-safe) */
            for (int i = 0; i < 3; i++) {
                t += 0.1;
                th_sample ok = mk(t, 40 + 0.01 * i);
                decide(g, &ok, &o);
                if (i < 2) CHECK(o.fail_safe && !o.left_fail_safe, "%s stays in fail-safe until recovered (%d)", names[n], i);
            }
            CHECK(!o.fail_safe && o.left_fail_safe, "%s / %s: recovered: %s", names[n], faults[f].what,
                  th_governor_status(g));
            t += 0.1;
        }
        /* a sample the sensor calls healthy is trusted, even handed over again and again:
         * freshness is the sensor's to judge */
        th_sample same = mk(t, 40);
        for (int i = 0; i < 40; i++) decide(g, &same, &o);
        CHECK(!o.fail_safe, "%s: the same healthy sample 40 times is trusted", names[n]);
        th_governor_free(g);
    }
}

/* Same state, same input: same output. A hidden static or a clock read would break it. */
typedef struct {
    th_gov_output out[400];
    char status[400][320];
} gov_run;

static void drive(th_governor *g, gov_run *r) {
    for (int i = 0; i < 400; i++) {
        double t = 1 + 0.1 * i, temp = 40 + 50 * sin(i / 60.0) + (i % 7) * 0.3;
        th_sample s = mk(t, temp);
        s.valid |= TH_SAMPLE_POWER | TH_SAMPLE_UTIL;
        s.util = 0.5 + 0.4 * cos(i / 30.0);
        s.power_uw = (int64_t)((20 + 200 * s.util + i % 5) * 1e6);
        th_gov_input in = {.sample = &s, .read_status = TH_OK, .health = TH_HEALTH_OK};
        if (i == 150) in.sample = NULL;
        if (i >= 200 && i < 205) {
            in.health = TH_HEALTH_STALE;
            in.health_why = "last good reading 2.5 s ago (limit 2.0 s)";
        }
        th_governor_decide(g, &in, 0.1, &r->out[i]);
        snprintf(r->status[i], sizeof r->status[i], "%s", th_governor_status(g));
    }
}

static int same_output(const th_gov_output *a, const th_gov_output *b) {
    return memcmp(&a->duty, &b->duty, sizeof a->duty) == 0 && memcmp(&a->predicted_c, &b->predicted_c, sizeof(double)) == 0 &&
           a->threads == b->threads && a->fail_safe == b->fail_safe && a->entered_fail_safe == b->entered_fail_safe &&
           a->left_fail_safe == b->left_fail_safe;
}

static void test_purity(void) {
    static gov_run first, again, other;
    for (size_t k = 0; k < th_governor_count(); k++) {
        const char *name = th_governor_name(k);
        th_gov_config c = cfg80();
        th_governor *g, *h;
        CHECK(th_governor_create(name, &c, &g) == TH_OK && th_governor_create(name, &c, &h) == TH_OK, "create %s", name);
        drive(g, &first);
        drive(h, &other); /* a second governor after the first has run: no shared state */
        th_governor_reset(g);
        drive(g, &again); /* the reset state is the created state */
        int diff_other = -1, diff_again = -1;
        for (int i = 399; i >= 0; i--) {
            if (!same_output(&first.out[i], &other.out[i]) || strcmp(first.status[i], other.status[i]) != 0) diff_other = i;
            if (!same_output(&first.out[i], &again.out[i]) || strcmp(first.status[i], again.status[i]) != 0) diff_again = i;
        }
        CHECK(diff_other < 0, "%s: a fresh governor decides alike (first difference at %d: %s / %s)", name, diff_other,
              diff_other >= 0 ? first.status[diff_other] : "", diff_other >= 0 ? other.status[diff_other] : "");
        CHECK(diff_again < 0, "%s: after reset it decides alike (first difference at %d)", name, diff_again);
        int varied = 0;
        for (int i = 1; i < 400; i++) varied |= first.out[i].duty != first.out[0].duty;
        CHECK(varied || strcmp(name, "none") == 0, "%s: the sequence exercises the rules", name);
        th_governor_free(g);
        th_governor_free(h);
    }
}

/* A plug-in built against another API version is refused, naming both versions. */
static void test_api_version(void) {
    th_gov_config c = cfg80();
    th_governor_ops ops = th_gov_step_wise_ops;
    th_governor *g = NULL;
    CHECK(th_governor_create_ops(&ops, &c, &g) == TH_OK, "the registry's version is accepted");
    th_governor_free(g);
    g = NULL;
    ops.api_version = TH_GOV_API_VERSION + 1;
    char want[64];
    snprintf(want, sizeof want, "API version %d, this build speaks %d", TH_GOV_API_VERSION + 1, TH_GOV_API_VERSION);
    CHECK_FAIL(th_governor_create_ops(&ops, &c, &g), TH_ERR_UNSUPPORTED, want, "a newer plug-in");
    CHECK(g == NULL, "nothing created");
}

int main(void) {
    test_registry();
    test_none();
    test_bang_bang();
    test_step_wise();
    test_pid();
    test_fail_safe();
    test_purity();
    test_api_version();
    return test_summary();
}
