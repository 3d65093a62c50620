/* test_eco_energy.c: energy figures against closed forms: constant and linearly ramping
 * power (the trapezoid rule is exact for both), RAPL counter wraps at max_energy_range_uj,
 * NVML-style counters that must not go down, the CPU power model's curve, sums that keep
 * the weakest basis, and the P x N x hours estimate. */
#include "test_util.h"
#include "thermo/eco.h"

#define NS 1000000000ull

static void test_power_constant(void) {
    th_power_integrator p;
    CHECK(th_power_integrator_init(&p, "hwmon:power1", TH_ECO_BASIS_MEASURED_POWER) == TH_OK, "%s", th_last_error());
    /* 100 W for 10 s, sampled at uneven times: exactly 1000 J. */
    const uint64_t t[] = {0, 1 * NS, 1500000000ull, 4 * NS, 9 * NS, 10 * NS};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) CHECK(th_power_integrator_add(&p, 5 * NS + t[i], 100000000ull) == TH_OK, "add");
    th_energy_figure f;
    CHECK(th_power_integrator_figure(&p, &f) == TH_OK, "%s", th_last_error());
    CHECK(fabs(f.energy_j - 1000.0) < 1e-9, "constant 100 W x 10 s = %.12g J", f.energy_j);
    CHECK(fabs(f.duration_s - 10.0) < 1e-12, "duration %g", f.duration_s);
    CHECK(f.basis == TH_ECO_BASIS_MEASURED_POWER && strcmp(f.source, "hwmon:power1") == 0, "basis/source kept");
    CHECK(strcmp(th_eco_basis_name(f.basis), "measured-power") == 0, "basis name %s", th_eco_basis_name(f.basis));

    /* Time going backwards is rejected and changes nothing. */
    double before = p.energy_j;
    CHECK(th_power_integrator_add(&p, 1 * NS, 100000000ull) == TH_ERR_INVALID, "backwards time accepted");
    CHECK(p.energy_j == before && p.samples == 6, "state changed by a rejected sample");
}

static void test_power_ramp_and_model(void) {
    /* Linear ramp 0 -> 200 W over 10 s: 1000 J, exact under the trapezoid rule. */
    th_power_integrator p;
    CHECK(th_power_integrator_init(&p, "sim-plant:h100", TH_ECO_BASIS_MODELED) == TH_OK, "init");
    for (int i = 0; i <= 10; i++) th_power_integrator_add(&p, (uint64_t)i * NS, (uint64_t)i * 20000000ull);
    th_energy_figure f;
    CHECK(th_power_integrator_figure(&p, &f) == TH_OK, "figure");
    CHECK(fabs(f.energy_j - 1000.0) < 1e-9, "ramp energy %.12g", f.energy_j);
    CHECK(f.basis == TH_ECO_BASIS_MODELED, "modeled basis kept");

    th_power_integrator one;
    th_power_integrator_init(&one, "x", TH_ECO_BASIS_MEASURED_POWER);
    th_power_integrator_add(&one, 0, 1);
    CHECK(th_power_integrator_figure(&one, &f) == TH_ERR_STATE, "one sample gives a figure");
    CHECK(th_power_integrator_init(&one, "x", TH_ECO_BASIS_MEASURED_COUNTER) == TH_ERR_INVALID, "counter basis for an integrator");
    CHECK(th_power_integrator_init(&one, "", TH_ECO_BASIS_MODELED) == TH_ERR_INVALID, "empty source accepted");

    /* CPU model: TDP x (0.1 + 0.9 u^3). */
    uint64_t uw;
    CHECK(th_cpu_model_power_uw(65.0, 0.0, &uw) == TH_OK && uw == 6500000ull, "idle = 0.1 TDP, got %llu", (unsigned long long)uw);
    CHECK(th_cpu_model_power_uw(65.0, 1.0, &uw) == TH_OK && uw == 65000000ull, "full = TDP, got %llu", (unsigned long long)uw);
    CHECK(th_cpu_model_power_uw(100.0, 0.5, &uw) == TH_OK && uw == 21250000ull, "u=0.5: 21.25 W, got %llu", (unsigned long long)uw);
    CHECK(th_cpu_model_power_uw(100.0, 1.2, &uw) == TH_ERR_INVALID, "u > 1 accepted");
    CHECK(th_cpu_model_power_uw(0.0, 0.5, &uw) == TH_ERR_INVALID, "TDP 0 accepted");
    CHECK(th_cpu_model_power_uw(100.0, NAN, &uw) == TH_ERR_INVALID, "NaN utilization accepted");
}

static void test_rapl_wrap(void) {
    th_energy_counter c;
    const uint64_t max = 262143328850ull; /* a real intel-rapl max_energy_range_uj */
    CHECK(th_energy_counter_init(&c, "rapl:package-0", 1e-6, max) == TH_OK, "%s", th_last_error());
    CHECK(th_energy_counter_add(&c, 0, max - 1000000ull) == TH_OK, "first");
    CHECK(th_energy_counter_add(&c, 1 * NS, max - 500000ull) == TH_OK, "second"); /* +0.5 J */
    CHECK(th_energy_counter_add(&c, 2 * NS, 250000ull) == TH_OK, "wrap");        /* +0.5 J to the top, +0.25 J */
    CHECK(th_energy_counter_add(&c, 3 * NS, 1250000ull) == TH_OK, "after wrap"); /* +1 J */
    th_energy_figure f;
    CHECK(th_energy_counter_figure(&c, &f) == TH_OK, "%s", th_last_error());
    CHECK(fabs(f.energy_j - 2.25) < 1e-12, "wrapped energy %.15g J, want 2.25", f.energy_j);
    CHECK(c.wraps == 1, "wraps %llu", (unsigned long long)c.wraps);
    CHECK(f.basis == TH_ECO_BASIS_MEASURED_COUNTER && fabs(f.duration_s - 3.0) < 1e-12, "basis/duration");

    /* A reading above the range is nonsense; time going backwards too. Neither changes state. */
    CHECK(th_energy_counter_add(&c, 4 * NS, max + 1) == TH_ERR_INVALID, "reading above range accepted");
    CHECK(th_energy_counter_add(&c, 2 * NS, 2000000ull) == TH_ERR_INVALID, "backwards time accepted");
    th_energy_counter_figure(&c, &f);
    CHECK(fabs(f.energy_j - 2.25) < 1e-12 && c.samples == 4, "state changed by rejected readings");

    /* Small range, several wraps in a row: 0..999 units, steps of 600 units. */
    th_energy_counter s;
    th_energy_counter_init(&s, "rapl:dram", 1e-6, 999);
    uint64_t v = 0;
    for (int i = 0; i <= 10; i++) {
        th_energy_counter_add(&s, (uint64_t)i * NS, v);
        v = (v + 600) % 999; /* counter counts 0..998 then wraps to 0: modulo max_range */
    }
    th_energy_counter_figure(&s, &f);
    CHECK(fabs(f.energy_j - 10 * 600e-6) < 1e-12, "repeated wraps: %.12g J, want %.12g", f.energy_j, 10 * 600e-6);
}

static void test_nvml_counter(void) {
    th_energy_counter c;
    CHECK(th_energy_counter_init(&c, "nvml:0", 1e-3, 0) == TH_OK, "init");
    th_energy_counter_add(&c, 0, 5000000ull);
    th_energy_counter_add(&c, 10 * NS, 5000000ull + 3000000ull); /* 3000 J in 10 s */
    th_energy_figure f;
    CHECK(th_energy_counter_figure(&c, &f) == TH_OK && fabs(f.energy_j - 3000.0) < 1e-9, "nvml energy %g", f.energy_j);
    CHECK(th_energy_counter_add(&c, 11 * NS, 10ull) == TH_ERR_INVALID, "reset without wrap range accepted");
    CHECK(strstr(th_last_error(), "nvml:0") != NULL, "message names the counter: %s", th_last_error());
    th_energy_counter one;
    th_energy_counter_init(&one, "x", 1e-6, 0);
    CHECK(th_energy_counter_figure(&one, &f) == TH_ERR_STATE, "no readings gives a figure");
    CHECK(th_energy_counter_init(&one, "x", 0.0, 0) == TH_ERR_INVALID, "zero J/unit accepted");
}

static void test_sum_and_estimate(void) {
    th_energy_figure parts[3] = {
        {100.0, 10.0, TH_ECO_BASIS_MEASURED_COUNTER, "rapl:package-0"},
        {250.0, 12.0, TH_ECO_BASIS_MEASURED_POWER, "nvml:0"},
        {50.0, 8.0, TH_ECO_BASIS_MODELED, "ram-model"},
    };
    th_energy_figure s;
    CHECK(th_energy_sum(parts, 3, &s) == TH_OK, "%s", th_last_error());
    CHECK(fabs(s.energy_j - 400.0) < 1e-12 && s.duration_s == 12.0, "sum %g J over %g s", s.energy_j, s.duration_s);
    CHECK(s.basis == TH_ECO_BASIS_MODELED, "weakest basis wins, got %s", th_eco_basis_name(s.basis));
    CHECK(strcmp(s.source, "rapl:package-0+nvml:0+ram-model") == 0, "joined source %s", s.source);
    CHECK(th_energy_sum(parts, 2, &s) == TH_OK && s.basis == TH_ECO_BASIS_MEASURED_POWER, "counter+power -> power");
    parts[1].energy_j = -1;
    CHECK(th_energy_sum(parts, 3, &s) == TH_ERR_INVALID, "negative energy accepted");
    CHECK(th_energy_sum(parts, 0, &s) == TH_ERR_INVALID, "empty sum accepted");

    th_energy_figure e;
    CHECK(th_energy_estimate(700.0, 8, 10.0, &e) == TH_OK, "estimate");
    CHECK(fabs(e.energy_j - 700.0 * 8 * 10 * 3600) < 1e-6, "700 W x 8 x 10 h = %g J", e.energy_j);
    CHECK(e.basis == TH_ECO_BASIS_ESTIMATE && strcmp(th_eco_basis_name(e.basis), "estimate") == 0, "estimate basis");
    CHECK(th_energy_estimate(-5, 8, 10, &e) == TH_ERR_INVALID, "negative power accepted");
    CHECK(th_energy_estimate(700, 0, 10, &e) == TH_ERR_INVALID, "zero devices accepted");
    CHECK(th_energy_estimate(700, 8, 0, &e) == TH_ERR_INVALID, "zero hours accepted");
}

int main(void) {
    test_power_constant();
    test_power_ramp_and_model();
    test_rapl_wrap();
    test_nvml_counter();
    test_sum_and_estimate();
    return test_summary();
}
