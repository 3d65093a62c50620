/* test_eco_ledger.c: the run's energy ledger (th_eco_ledger) fed with synthetic samples:
 * the order of preference counter > polled power > CPU model, counter differences with
 * readings that go down or back in time dropped, the per-unit charges of energy_at (a
 * unit's share between readings; monotone; adding up to the final figure), bad fields
 * ignored, and a writer thread racing the queries. */
#include <pthread.h>

#include "test_util.h"
#include "thermo/eco.h"

#define MS 1000000ULL /* nanoseconds */

static th_eco_ledger *ledger(const char *source, th_origin origin, double tdp_w) {
    th_eco_ledger_config c = {source, origin, tdp_w};
    th_eco_ledger *l = NULL;
    CHECK(th_eco_ledger_create(&c, &l) == TH_OK && l, "create: %s", th_last_error());
    return l;
}

/* A sample at t_ms with the fields whose bits are in `valid`. */
static th_sample sample(uint64_t t_ms, uint32_t valid, uint64_t energy_uj, int64_t power_uw, double util) {
    th_sample s;
    memset(&s, 0, sizeof s);
    s.t_ns = t_ms * MS;
    s.valid = valid;
    s.energy_uj = energy_uj;
    s.power_uw = power_uw;
    s.util = util;
    s.origin = TH_ORIGIN_MEASURED;
    snprintf(s.source, sizeof s.source, "test:sensor");
    return s;
}

static void add(th_eco_ledger *l, th_sample s) { th_eco_ledger_add(l, &s); }

static int close_to(double a, double b, double rel) { return fabs(a - b) <= rel * fabs(b) + 1e-15; }

/* Each path gives a different answer, so the figure shows which one won:
 * counter 30 J over 1 s, power 10 W x 1 s = 10 J, model TDP 20 W x (0.1 + 0.9 u^3) at u = 1: 20 J. */
static void test_precedence(void) {
    const uint32_t all = TH_SAMPLE_ENERGY | TH_SAMPLE_POWER | TH_SAMPLE_UTIL;
    th_energy_figure f;
    th_eco_ledger *l = ledger("rapl:package-0", TH_ORIGIN_MEASURED, 20.0);
    CHECK(th_eco_ledger_figure(l, &f) == TH_ERR_STATE, "a figure before any reading");
    add(l, sample(1000, all, 5000000, 10000000, 1.0));
    CHECK(th_eco_ledger_figure(l, &f) == TH_ERR_STATE, "a figure from one reading");
    add(l, sample(2000, all, 35000000, 10000000, 1.0));
    CHECK(th_eco_ledger_figure(l, &f) == TH_OK && f.basis == TH_ECO_BASIS_MEASURED_COUNTER &&
              close_to(f.energy_j, 30.0, 1e-12) && close_to(f.duration_s, 1.0, 1e-12) &&
              !strcmp(f.source, "rapl:package-0"),
          "counter first: %s %g J over %g s from %s", th_eco_basis_name(f.basis), f.energy_j, f.duration_s, f.source);
    th_eco_ledger_free(l);

    l = ledger("nvml:0", TH_ORIGIN_MEASURED, 20.0);
    add(l, sample(1000, TH_SAMPLE_POWER | TH_SAMPLE_UTIL, 0, 10000000, 1.0));
    add(l, sample(2000, TH_SAMPLE_POWER | TH_SAMPLE_UTIL, 0, 10000000, 1.0));
    CHECK(th_eco_ledger_figure(l, &f) == TH_OK && f.basis == TH_ECO_BASIS_MEASURED_POWER &&
              close_to(f.energy_j, 10.0, 1e-12),
          "power second: %s %g J", th_eco_basis_name(f.basis), f.energy_j);
    th_eco_ledger_free(l);

    // utilization only: the model, held back to the first reading (which had no utilization yet)
    l = ledger("procstat", TH_ORIGIN_MEASURED, 20.0);
    add(l, sample(0, 0, 0, 0, 0));
    add(l, sample(1000, TH_SAMPLE_UTIL, 0, 0, 1.0));
    CHECK(th_eco_ledger_figure(l, &f) == TH_OK && f.basis == TH_ECO_BASIS_MODELED && close_to(f.energy_j, 20.0, 1e-12) &&
              strstr(f.source, "cpu model: TDP 20 W") && strstr(f.source, "procstat"),
          "model last: %s %g J from %s", th_eco_basis_name(f.basis), f.energy_j, f.source);
    th_eco_ledger_free(l);

    l = ledger("procstat", TH_ORIGIN_MEASURED, 0.0);
    add(l, sample(0, TH_SAMPLE_UTIL, 0, 0, 0.5));
    add(l, sample(1000, TH_SAMPLE_UTIL, 0, 0, 0.5));
    CHECK(th_eco_ledger_figure(l, &f) == TH_ERR_STATE && th_eco_ledger_energy_at(l, 5000 * MS) == 0.0,
          "without a TDP, utilization gives no figure");
    th_eco_ledger_free(l);

    // a simulated plant's counter is modeled, whatever path it takes; so is a modeled sample
    l = ledger("sim:laptop-cpu", TH_ORIGIN_MODELED, 0.0);
    add(l, sample(0, TH_SAMPLE_ENERGY, 0, 0, 0));
    add(l, sample(1000, TH_SAMPLE_ENERGY, 7000000, 0, 0));
    CHECK(th_eco_ledger_figure(l, &f) == TH_OK && f.basis == TH_ECO_BASIS_MODELED && close_to(f.energy_j, 7.0, 1e-12),
          "plant counter: %s %g J", th_eco_basis_name(f.basis), f.energy_j);
    th_eco_ledger_free(l);
    l = ledger(NULL, TH_ORIGIN_MEASURED, 0.0);
    th_sample s = sample(0, TH_SAMPLE_POWER, 0, 1000000, 0);
    s.origin = TH_ORIGIN_MODELED;
    snprintf(s.source, sizeof s.source, "sim:h100-sxm");
    th_eco_ledger_add(l, &s);
    s.t_ns = 1000 * MS;
    th_eco_ledger_add(l, &s);
    CHECK(th_eco_ledger_figure(l, &f) == TH_OK && f.basis == TH_ECO_BASIS_MODELED && !strcmp(f.source, "sim:h100-sxm"),
          "a modeled sample makes the figure modeled, named after the samples: %s from %s", th_eco_basis_name(f.basis),
          f.source);
    th_eco_ledger_free(l);

    th_eco_ledger_config bad = {"x", TH_ORIGIN_MEASURED, 5000.0};
    CHECK(th_eco_ledger_create(&bad, &l) == TH_ERR_INVALID && l == NULL, "TDP 5000 W accepted");
    CHECK(th_eco_ledger_create(NULL, &l) == TH_ERR_INVALID, "NULL config accepted");
}

/* sense hands over unwrapped microjoules: large values difference exactly; a reading that goes
 * down (a counter reset) or back in time is dropped and the next good one continues. */
static void test_counter_deltas(void) {
    th_eco_ledger *l = ledger("rapl:package-0", TH_ORIGIN_MEASURED, 0.0);
    const uint64_t base = (1ULL << 40) + 123; // far above a 32-bit RAPL range: no wrap logic applies
    add(l, sample(100, TH_SAMPLE_ENERGY, base, 0, 0));
    add(l, sample(200, TH_SAMPLE_ENERGY, base + 1000000, 0, 0));
    add(l, sample(300, TH_SAMPLE_ENERGY, base + 500000, 0, 0));   // went down: dropped
    add(l, sample(150, TH_SAMPLE_ENERGY, base + 9000000, 0, 0));  // back in time: dropped
    add(l, sample(400, TH_SAMPLE_ENERGY, base + 2250000, 0, 0));
    th_energy_figure f;
    CHECK(th_eco_ledger_figure(l, &f) == TH_OK && close_to(f.energy_j, 2.25, 1e-12) && close_to(f.duration_s, 0.3, 1e-12),
          "2.25 J over 0.3 s, got %g J over %g s", f.energy_j, f.duration_s);
    th_eco_ledger_free(l);
}

/* Samples every 100 ms, units of 1 ms to 7 ms between them. `power_w(k)` is the power over
 * the k-th sampling period. Returns the sum of the unit charges; *min_delta the smallest. */
static double run_units(th_eco_ledger *l, double (*power_w)(int), int periods, th_energy_figure *final,
                        double *min_delta) {
    uint64_t e_uj = 0, t_ms = 0, t_unit_ns = 0;
    add(l, sample(t_ms, TH_SAMPLE_ENERGY, e_uj, 0, 0));
    double prev = th_eco_ledger_energy_at(l, 0), sum = 0.0;
    *min_delta = INFINITY;
    int width = 1;
    for (int k = 0; k < periods; k++) {
        uint64_t t_next_ns = (t_ms + 100) * MS;
        // units that end before the next reading: charged by extrapolation
        while (t_unit_ns + (uint64_t)width * MS < t_next_ns) {
            t_unit_ns += (uint64_t)width * MS;
            double e = th_eco_ledger_energy_at(l, t_unit_ns);
            if (e - prev < *min_delta) *min_delta = e - prev;
            sum += e - prev;
            prev = e;
            width = width % 7 + 1;
        }
        t_ms += 100;
        e_uj += (uint64_t)llround(power_w(k) * 0.1 * 1e6);
        add(l, sample(t_ms, TH_SAMPLE_ENERGY, e_uj, 0, 0));
    }
    // the last unit ends at the last reading
    double e = th_eco_ledger_energy_at(l, t_ms * MS);
    if (e - prev < *min_delta) *min_delta = e - prev;
    sum += e - prev;
    CHECK(th_eco_ledger_figure(l, final) == TH_OK, "no final figure: %s", th_last_error());
    return sum;
}

static double rising_w(int k) { return 5.0 + 0.01 * k + 0.001 * k * k; }
static double constant_w(int k) { return 12.5 + 0 * k; }
static double sawtooth_w(int k) { return 20.0 - 15.0 * (k % 5) / 4.0; }

static void test_energy_at(void) {
    th_energy_figure f;
    double min_delta;
    th_eco_ledger *l = ledger("rapl", TH_ORIGIN_MEASURED, 0.0);
    double sum = run_units(l, rising_w, 400, &f, &min_delta);
    CHECK(close_to(sum, f.energy_j, 1e-9), "rising power: units add up to %.12g J, the figure is %.12g J", sum,
          f.energy_j);
    CHECK(min_delta >= 0, "a unit was charged %g J", min_delta);
    th_eco_ledger_free(l);

    l = ledger("rapl", TH_ORIGIN_MEASURED, 0.0);
    sum = run_units(l, constant_w, 300, &f, &min_delta);
    CHECK(close_to(sum, f.energy_j, 1e-9) && close_to(f.energy_j, 12.5 * 30, 1e-9),
          "constant power: units %.12g J, figure %.12g J", sum, f.energy_j);
    th_eco_ledger_free(l);

    // falling power: the extrapolation runs ahead; charges stay >= 0 and the floor holds
    // them until the energy catches up. Ending on a rising period, they add up again.
    l = ledger("rapl", TH_ORIGIN_MEASURED, 0.0);
    sum = run_units(l, sawtooth_w, 401, &f, &min_delta); // period 400 is the start of a tooth: 20 W after 5 W
    CHECK(min_delta >= 0, "falling power: a unit was charged %g J", min_delta);
    CHECK(close_to(sum, f.energy_j, 1e-9), "sawtooth: units %.12g J, figure %.12g J", sum, f.energy_j);
    th_eco_ledger_free(l);
    l = ledger("rapl", TH_ORIGIN_MEASURED, 0.0);
    sum = run_units(l, sawtooth_w, 400, &f, &min_delta); // ends after a 5 W period, extrapolated at 8.75 W
    CHECK(sum >= f.energy_j && sum <= f.energy_j + (8.75 - 5.0) * 0.1 + 1e-9,
          "overshoot bounded by one period's fall: units %.12g J, figure %.12g J", sum, f.energy_j);
    th_eco_ledger_free(l);

    // a unit shorter than the sampling period is charged its share: 10 W x 10 ms = 0.1 J
    l = ledger("rapl", TH_ORIGIN_MEASURED, 0.0);
    add(l, sample(0, TH_SAMPLE_ENERGY, 0, 0, 0));
    add(l, sample(100, TH_SAMPLE_ENERGY, 1000000, 0, 0));
    double a = th_eco_ledger_energy_at(l, 100 * MS), b = th_eco_ledger_energy_at(l, 110 * MS);
    CHECK(close_to(a, 1.0, 1e-12) && close_to(b - a, 0.1, 1e-9), "share of a period: %g J then %g J", a, b - a);
    CHECK(th_eco_ledger_energy_at(l, 50 * MS) == b, "an earlier time returned less than before");
    th_eco_ledger_free(l);

    // polled power extrapolates with the last power; one counter reading with its sample's power
    l = ledger("nvml:0", TH_ORIGIN_MEASURED, 0.0);
    add(l, sample(0, TH_SAMPLE_POWER, 0, 40000000, 0));
    CHECK(close_to(th_eco_ledger_energy_at(l, 50 * MS), 2.0, 1e-12), "one power reading: 40 W x 50 ms");
    add(l, sample(100, TH_SAMPLE_POWER, 0, 20000000, 0)); // trapezoid: 3 J by 100 ms
    CHECK(close_to(th_eco_ledger_energy_at(l, 200 * MS), 3.0 + 2.0, 1e-12), "power: 3 J + 20 W x 100 ms");
    th_eco_ledger_free(l);
    CHECK(th_eco_ledger_energy_at(NULL, 1) == 0.0, "NULL ledger");
}

/* Fields without their bit, negative power, utilization outside [0, 1] or NaN: ignored. */
static void test_bad_samples(void) {
    th_eco_ledger *l = ledger("host", TH_ORIGIN_MEASURED, 10.0);
    add(l, sample(0, TH_SAMPLE_POWER, 0, 5000000, 0));
    add(l, sample(1000, TH_SAMPLE_POWER, 0, 5000000, 0));
    th_eco_ledger_add(l, NULL);
    th_eco_ledger_add(NULL, NULL);
    add(l, sample(1500, 0, 999999999, 99000000, 1.0));              // no valid bits: nothing
    add(l, sample(1600, TH_SAMPLE_POWER, 0, -3, 0));                 // negative power
    add(l, sample(1700, TH_SAMPLE_UTIL, 0, 0, 1.5));                 // utilization out of range
    add(l, sample(1800, TH_SAMPLE_UTIL, 0, 0, NAN));
    add(l, sample(500, TH_SAMPLE_POWER, 0, 90000000, 0));            // back in time
    th_energy_figure f;
    CHECK(th_eco_ledger_figure(l, &f) == TH_OK && f.basis == TH_ECO_BASIS_MEASURED_POWER &&
              close_to(f.energy_j, 5.0, 1e-12) && close_to(f.duration_s, 1.0, 1e-12),
          "bad samples changed the figure: %s %g J over %g s", th_eco_basis_name(f.basis), f.energy_j, f.duration_s);
    CHECK(close_to(th_eco_ledger_energy_at(l, 2000 * MS), 10.0, 1e-12), "extrapolation at the good power, got %g J",
          th_eco_ledger_energy_at(l, 2000 * MS));
    CHECK(th_eco_ledger_figure(NULL, &f) == TH_ERR_INVALID && th_eco_ledger_figure(l, NULL) == TH_ERR_INVALID, "NULLs");
    th_eco_ledger_free(l);
    th_eco_ledger_free(NULL);
}

/* The sampler thread adds while the work loop asks: every answer is a whole state (never
 * below an earlier one) and the end figure is every reading's. */
typedef struct {
    th_eco_ledger *l;
    int n;
} writer_arg;

static void *writer(void *p) {
    writer_arg *w = p;
    for (int i = 0; i <= w->n; i++) add(w->l, sample((uint64_t)i, TH_SAMPLE_ENERGY, (uint64_t)i * 2000, 0, 0)); // 2 W
    return NULL;
}

static void test_threads(void) {
    writer_arg w = {ledger("rapl", TH_ORIGIN_MEASURED, 0.0), 20000};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, writer, &w) == 0, "thread");
    double prev = 0.0;
    int backwards = 0, queries = 0;
    for (uint64_t t = 0; t <= (uint64_t)w.n * MS; t += MS / 3, queries++) {
        double e = th_eco_ledger_energy_at(w.l, t);
        backwards += e < prev;
        prev = e;
    }
    pthread_join(th, NULL);
    th_energy_figure f;
    CHECK(backwards == 0, "%d of %d answers went down", backwards, queries);
    CHECK(th_eco_ledger_figure(w.l, &f) == TH_OK && close_to(f.energy_j, 40.0, 1e-12), "2 W x 20 s = 40 J, got %g J",
          f.energy_j);
    CHECK(close_to(th_eco_ledger_energy_at(w.l, (uint64_t)w.n * MS), 40.0, 1e-9), "final charge %g J",
          th_eco_ledger_energy_at(w.l, (uint64_t)w.n * MS));
    th_eco_ledger_free(w.l);
}

int main(void) {
    test_precedence();
    test_counter_deltas();
    test_energy_at();
    test_bad_samples();
    test_threads();
    return test_summary();
}
