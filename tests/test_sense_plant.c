/* test_sense_plant.c: the simulated plant against closed-form solutions: the step response
 * T(t) = T_amb + R·P·(1 − e^(−t/τ)) within 0.1 °C (leakage, noise and lag off), halving
 * the duty lowers the steady temperature as T_amb + R·P(u) predicts, large steps stay
 * exact and stable, the hardware slowdown halves throughput and the shutdown stops the
 * sensor; every bundled profile loads, malformed profiles are rejected naming file and
 * key; the real-time "sim" sensor advances by elapsed time at the published duty. */
#include <math.h>

#include "test_util.h"
#include "thermo/sense.h"

static uint64_t fake_ns;
static uint64_t fake_clock(void *user) {
    (void)user;
    return fake_ns;
}

static th_thermal_profile linear_profile(void) {
    th_thermal_profile p;
    memset(&p, 0, sizeof p);
    snprintf(p.name, sizeof p.name, "test-linear");
    snprintf(p.source, sizeof p.source, "test profile: leakage, noise and lag off");
    p.r_k_per_w = 0.2;
    p.c_j_per_k = 50.0; /* tau = 10 s */
    p.p_idle_w = 20.0;
    p.p_max_w = 300.0;
    p.t_ambient_c = 25.0;
    p.t_max_operating_c = 90.0;
    p.t_slowdown_c = 120.0; /* out of reach: 25 + 0.2·300 = 85 */
    p.t_shutdown_c = 130.0;
    p.leak_w_at_ref = 0.0;
    p.leak_ref_c = 80.0;
    p.leak_doubling_c = 19.0;
    return p;
}

static void test_step_response(void) {
    printf("-- step response matches the closed form within 0.1 °C\n");
    th_thermal_profile p = linear_profile();
    const double tau = p.r_k_per_w * p.c_j_per_k;
    const double dts[] = {0.01, 0.1, 1.0, 7.3};
    for (int k = 0; k < 4; k++) {
        th_plant *pl;
        CHECK(th_plant_create(&p, 1, &pl) == TH_OK, "%s", th_last_error());
        /* start at ambient with P_idle not yet applied: the closed form below is for the
         * full step from ambient, P = p_max (duty 1) */
        double worst = 0;
        for (int i = 1; i * dts[k] <= 60.0; i++) {
            CHECK(th_plant_step(pl, dts[k], 1.0) == TH_OK, "step");
            double t = i * dts[k];
            double want = p.t_ambient_c + p.r_k_per_w * p.p_max_w * (1 - exp(-t / tau));
            double got = th_plant_temp_c(pl);
            if (fabs(got - want) > worst) worst = fabs(got - want);
            th_sample s;
            th_plant_read(pl, 0, &s);
            if (fabs(s.temp_mc / 1000.0 - want) > 0.1) worst = 1e9;
        }
        CHECK(worst < 0.1, "dt %g s: max error %g °C", dts[k], worst);
        CHECK(worst < 1e-9, "exponential integration is exact, dt %g: %g", dts[k], worst);
        th_plant_free(pl);
    }
    /* one huge step: stable, lands on the steady state */
    th_plant *pl;
    th_plant_create(&p, 1, &pl);
    CHECK(th_plant_step(pl, 3600.0, 1.0) == TH_OK && fabs(th_plant_temp_c(pl) - 85.0) < 1e-9, "1 h in one step: %g",
          th_plant_temp_c(pl));
    CHECK(fabs(th_plant_energy_j(pl) - 300.0 * 3600.0) < 1e-6, "energy = P·t");
    CHECK(th_plant_step(pl, -1, 0.5) == TH_ERR_INVALID && th_plant_step(pl, 1, 1.5) == TH_ERR_INVALID, "bad args");
    th_plant_free(pl);
}

static void test_duty(void) {
    printf("-- halving the duty lowers the steady temperature as the model predicts\n");
    th_thermal_profile p = linear_profile();
    double steady[2];
    double duty[2] = {1.0, 0.5};
    for (int k = 0; k < 2; k++) {
        th_plant *pl;
        th_plant_create(&p, 1, &pl);
        for (int i = 0; i < 2000; i++) th_plant_step(pl, 0.1, duty[k]); /* 200 s = 20 τ */
        steady[k] = th_plant_temp_c(pl);
        double want = p.t_ambient_c + p.r_k_per_w * (p.p_idle_w + (p.p_max_w - p.p_idle_w) * duty[k]);
        CHECK(fabs(steady[k] - want) < 1e-6, "duty %g: %g vs %g", duty[k], steady[k], want);
        CHECK(fabs(th_plant_steady_temp_c(&p, duty[k]) - want) < 1e-9, "steady-state helper");
        th_plant_free(pl);
    }
    /* R·(P_max − P_idle)/2 = 0.2·140 = 28 °C cooler */
    CHECK(fabs((steady[0] - steady[1]) - 28.0) < 1e-6, "halving saves %g °C", steady[0] - steady[1]);

    /* with leakage the fixed point is higher and the helper agrees with the simulation */
    p.leak_w_at_ref = 15.0;
    th_plant *pl;
    th_plant_create(&p, 1, &pl);
    for (int i = 0; i < 3000; i++) th_plant_step(pl, 0.1, 1.0);
    double want = th_plant_steady_temp_c(&p, 1.0);
    CHECK(want > 85.0 + 0.2 * 15.0 && fabs(th_plant_temp_c(pl) - want) < 0.01, "leakage steady %g vs %g",
          th_plant_temp_c(pl), want);
    th_plant_free(pl);
}

static void test_throttle_shutdown(void) {
    printf("-- hardware slowdown halves throughput; shutdown stops the sensor\n");
    th_thermal_profile p = linear_profile();
    p.t_max_operating_c = 60.0;
    p.t_slowdown_c = 70.0;
    p.t_shutdown_c = 130.0;
    th_plant *pl;
    th_plant_create(&p, 1, &pl);
    CHECK(th_plant_throttle_factor(pl) == 1.0, "no throttle when cool");
    int throttled = 0;
    double tmax = 0;
    for (int i = 0; i < 3000; i++) {
        th_plant_step(pl, 0.1, 1.0);
        throttled |= th_plant_throttle_factor(pl) == 0.5;
        if (th_plant_temp_c(pl) > tmax) tmax = th_plant_temp_c(pl);
    }
    /* throttled power 20 + 280·0.5 = 160 W → 57 °C < 69 °C: it cycles around the threshold */
    CHECK(throttled, "throttle engaged above 70 °C");
    CHECK(tmax < 70.5, "slowdown holds the die near the threshold: max %g", tmax);
    th_sample s;
    th_plant_read(pl, 1, &s);
    CHECK((s.valid & TH_SAMPLE_THROTTLE), "throttle bit reported");
    th_plant_free(pl);

    p = linear_profile();
    p.t_max_operating_c = 60.0;
    p.t_slowdown_c = 70.0;
    p.t_shutdown_c = 72.0;
    p.p_max_w = 600.0; /* throttled: 20 + 290 = 310 W → 87 °C: beyond shutdown */
    th_plant_create(&p, 1, &pl);
    for (int i = 0; i < 3000; i++) th_plant_step(pl, 0.1, 1.0);
    CHECK(th_plant_throttle_factor(pl) == 0.0, "shut down: no throughput");
    CHECK(th_plant_read(pl, 1, &s) == TH_ERR_IO && s.fault == TH_HEALTH_VANISHED && strstr(th_last_error(), "shut down"),
          "%s", th_last_error());
    CHECK(th_plant_temp_c(pl) < 72.0, "cools after shutdown: %g", th_plant_temp_c(pl));
    th_plant_free(pl);
}

static void test_sensor_realism(void) {
    printf("-- sensor quantization, seeded noise, lag\n");
    th_thermal_profile p = linear_profile();
    p.sensor_quantum_c = 1.0;
    p.sensor_noise_c = 0.5;
    p.sensor_lag_s = 2.0;
    th_plant *a, *b;
    th_plant_create(&p, 42, &a);
    th_plant_create(&p, 42, &b);
    int same = 1, integral = 1;
    double sum_err = 0;
    for (int i = 0; i < 1200; i++) {
        th_plant_step(a, 0.1, 1.0);
        th_plant_step(b, 0.1, 1.0);
        th_sample x, y;
        th_plant_read(a, 0, &x);
        th_plant_read(b, 0, &y);
        same &= x.temp_mc == y.temp_mc;
        integral &= x.temp_mc % 1000 == 0;
        if (i == 20) CHECK(x.temp_mc / 1000.0 < th_plant_temp_c(a) - 1.0, "lag: sensor behind the die at 2 s");
        if (i >= 900) sum_err += x.temp_mc / 1000.0 - th_plant_temp_c(a); /* 9 τ: lag settled */
    }
    CHECK(same, "same seed, same noise");
    CHECK(integral, "1 °C quantization");
    CHECK(fabs(sum_err / 300) < 0.2, "noise is unbiased at steady state: mean error %g", sum_err / 300);
    th_plant_free(a);
    th_plant_free(b);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static void test_profiles(void) {
    printf("-- bundled profiles and malformed ones\n");
    const char *names[] = {"laptop-cpu", "desktop-cpu", "server-cpu", "rtx-4090", "a100-sxm4", "h100-sxm"};
    for (int i = 0; i < 6; i++) {
        th_thermal_profile p;
        CHECK(th_profile_find(names[i], &p) == TH_OK, "%s: %s", names[i], th_last_error());
        CHECK(strcmp(p.name, names[i]) == 0 && strlen(p.source) > 40, "%s names its source", names[i]);
        double full = th_plant_steady_temp_c(&p, 1.0);
        CHECK(isfinite(full) && full > p.t_ambient_c + 20 && full < p.t_shutdown_c, "%s: full-load steady %g °C",
              names[i], full);
    }
    th_thermal_profile h;
    CHECK(th_profile_find("h100-sxm", &h) == TH_OK && h.t_slowdown_c == 89 && h.t_shutdown_c == 92 &&
              h.t_max_operating_c == 87 && h.p_max_w == 700,
          "H100 SXM figures");
    CHECK(th_profile_find("no-such-gpu", &h) == TH_ERR_INVALID && strstr(th_last_error(), "h100-sxm"), "%s",
          th_last_error());

    const char *dir = test_tmp_dir("sense_plant");
    char path[4200], src[4200], text[4096];
    snprintf(src, sizeof src, "%s/data/profiles/h100-sxm.json", test_source_dir());
    FILE *f = fopen(src, "r");
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    struct {
        const char *from, *to, *key;
        th_status st;
    } cases[] = {
        {"\"r_k_per_w\": 0.08", "\"r_k_per_w\": -0.08", "r_k_per_w", TH_ERR_FORMAT},
        {"\"c_j_per_k\": 250.0", "\"c_j_per_k\": 0", "c_j_per_k", TH_ERR_FORMAT},
        {"\"t_slowdown_c\": 89.0", "\"t_slowdown_c\": 80.0", "t_slowdown_c", TH_ERR_FORMAT},
        {"\"t_shutdown_c\": 92.0", "\"t_shutdown_c\": 88.0", "t_shutdown_c", TH_ERR_FORMAT},
        {"\"p_max_w\": 700.0", "\"p_max_w\": \"700\"", "p_max_w", TH_ERR_FORMAT},
        {"\"p_max_w\": 700.0,", "", "p_max_w", TH_ERR_FORMAT},
        {"\"name\": \"h100-sxm\",", "\"name\": \"h100-sxm\", \"fan_rpm\": 3,", "fan_rpm", TH_ERR_FORMAT},
        {"\"sensor_lag_s\": 1.0", "\"sensor_lag_s\": -1", "sensor_lag_s", TH_ERR_FORMAT},
        {"\"leak_doubling_c\": 19.0", "\"leak_doubling_c\": 0", "leak_doubling_c", TH_ERR_FORMAT},
        {"\"name\": \"h100-sxm\",", "\"name\": 5,", "name", TH_ERR_FORMAT},
        {"{", "[", "", TH_ERR_FORMAT},
        {"}", "", "", TH_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *at = strstr(text, cases[i].from);
        CHECK(at != NULL, "case %zu pattern present", i);
        if (!at) continue;
        char bad[4600];
        snprintf(bad, sizeof bad, "%.*s%s%s", (int)(at - text), text, cases[i].to, at + strlen(cases[i].from));
        snprintf(path, sizeof path, "%s/bad%zu.json", dir, i);
        write_text(path, bad);
        th_thermal_profile p;
        memset(&p, 0x5A, sizeof p);
        th_thermal_profile before = p;
        th_status st = th_profile_load(path, &p);
        CHECK(st == cases[i].st && strstr(th_last_error(), path) && strstr(th_last_error(), cases[i].key),
              "case %zu: %s", i, th_last_error());
        CHECK(memcmp(&p, &before, sizeof p) == 0, "case %zu: profile untouched", i);
    }
    snprintf(path, sizeof path, "%s/missing.json", dir);
    CHECK(th_profile_load(path, &h) == TH_ERR_IO && strstr(th_last_error(), "missing.json"), "missing file");
    snprintf(path, sizeof path, "%s/ok.json", dir);
    write_text(path, text);
    CHECK(th_profile_find(path, &h) == TH_OK, "a user's own profile by path: %s", th_last_error());
}

static void test_sim_sensor(void) {
    printf("-- the sim sensor in real time at the published duty\n");
    const char *dir = test_tmp_dir("sense_plant");
    char path[4200];
    snprintf(path, sizeof path, "%s/linear.json", dir);
    th_thermal_profile p = linear_profile();
    FILE *f = fopen(path, "w");
    fprintf(f,
            "{\"name\":\"test-linear\",\"r_k_per_w\":0.2,\"c_j_per_k\":50,\"p_idle_w\":20,\"p_max_w\":300,"
            "\"t_ambient_c\":25,\"t_max_operating_c\":90,\"t_slowdown_c\":120,\"t_shutdown_c\":130,"
            "\"leak_w_at_ref\":0,\"leak_ref_c\":80,\"leak_doubling_c\":19,\"sensor_quantum_c\":0,"
            "\"sensor_noise_c\":0,\"sensor_lag_s\":0,\"source\":\"test\"}\n");
    fclose(f);
    th_sense_config c = th_sense_config_default();
    c.profile = path;
    c.clock_ns = fake_clock;
    fake_ns = 1000000000ull;
    th_sensor *s;
    CHECK(th_sensor_open("sim", &c, &s) == TH_OK, "%s", th_last_error());
    th_plant *pl = th_sensor_plant(s);
    CHECK(pl != NULL && th_sensor_origin(s) == TH_ORIGIN_MODELED, "sim exposes its plant");
    th_plant_set_duty(pl, 1.0);
    fake_ns += 10000000000ull; /* 10 s = τ */
    th_sample x;
    CHECK(th_sensor_read(s, &x) == TH_OK && x.origin == TH_ORIGIN_MODELED && strcmp(x.source, "sim:test-linear") == 0,
          "labelled modeled: %s", x.source);
    double want = p.t_ambient_c + 60.0 * (1 - exp(-1.0));
    CHECK(fabs(x.temp_mc / 1000.0 - want) < 0.01, "advanced by wall time: %g vs %g", x.temp_mc / 1000.0, want);
    CHECK(fabs(x.util - 1.0) < 1e-12 && (x.valid & TH_SAMPLE_POWER) && x.power_uw == 300000000, "duty and power");
    th_plant_set_duty(pl, 0.0);
    fake_ns += 100000000000ull; /* 100 s idle */
    CHECK(th_sensor_read(s, &x) == TH_OK && fabs(x.temp_mc / 1000.0 - 29.0) < 0.01, "idle steady 29 °C: %g",
          x.temp_mc / 1000.0);
    th_sense_limits lim;
    CHECK(th_sensor_limits(s, &lim) == TH_OK && lim.slowdown_mc == 120000 && lim.max_operating_mc == 90000, "limits");
    th_sensor_close(s);
    c.profile = "h100-sxm";
    CHECK(th_sensor_open("sim", &c, &s) == TH_OK, "bundled profile by name");
    th_sensor_close(s);
    snprintf(path, sizeof path, "%s/bad0.json", dir);
    c.profile = path;
    CHECK(th_sensor_open("sim", &c, &s) == TH_ERR_FORMAT && strstr(th_last_error(), "r_k_per_w"), "bad profile: %s",
          th_last_error());
}

/* The real-time path run.c drives: the work loop marks each unit's start and end on the
 * plant's clock, so the plant heats only while the unit works, and a read reports the duty
 * and power averaged since the previous read. */
static void test_on_off_units(void) {
    printf("-- the plant on for units, off for waits, timed on its clock\n");
    th_thermal_profile p = linear_profile(); /* R 0.2, C 50: tau 10 s; P 20..300 W; 25 °C */
    th_plant *pl;
    CHECK(th_plant_create(&p, 1, &pl) == TH_OK, "create");
    uint64_t t0 = 5000000000ull, s = 1000000000ull;
    th_plant_advance_to(pl, t0);
    th_plant_set_duty_at(pl, 1.0, t0);         /* a 3 s unit */
    th_plant_advance_to(pl, t0 + s);           /* a read in the middle of it */
    th_plant_set_duty_at(pl, 0.0, t0 + 3 * s); /* its wait: 7 s */
    th_plant_set_duty_at(pl, 0.0, t0 + 2 * s); /* a time already passed does not step */
    th_plant_advance_to(pl, t0 + 10 * s);
    double tau = 10.0, hot = 25 + 0.2 * 300, cold = 25 + 0.2 * 20;
    double t3 = hot + (25 - hot) * exp(-3 / tau), want = cold + (t3 - cold) * exp(-7 / tau);
    CHECK(fabs(th_plant_temp_c(pl) - want) < 1e-9, "piecewise exact: %.9f vs %.9f", th_plant_temp_c(pl), want);
    th_sample x;
    CHECK(th_plant_read(pl, t0 + 10 * s, &x) == TH_OK, "read");
    CHECK(fabs(x.util - 0.3) < 1e-9, "util is the duty since the previous read: %g, want 0.3", x.util);
    double want_w = 20 + 0.3 * 280; /* 3 s at 300 W and 7 s at 20 W over 10 s */
    CHECK(fabs(x.power_uw / 1e6 - want_w) < 1e-3, "power averaged like an energy counter: %g W, want %g",
          x.power_uw / 1e6, want_w);
    th_plant_advance_to(pl, t0 + 11 * s);
    CHECK(th_plant_read(pl, t0 + 11 * s, &x) == TH_OK && x.util == 0.0 && fabs(x.power_uw / 1e6 - 20) < 1e-3,
          "the next read covers only the time since: util %g, %g W", x.util, x.power_uw / 1e6);
    th_plant_free(pl);
}

int main(void) {
    test_step_response();
    test_duty();
    test_throttle_shutdown();
    test_sensor_realism();
    test_profiles();
    test_sim_sensor();
    test_on_off_units();
    return test_summary();
}
