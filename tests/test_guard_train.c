/* test_guard_train.c: training health (a NaN at step k, a planted loss spike, a grad-norm
 * spike, repeated spikes -> rollback, a zombie run -> stop), early stopping (a plateau, a
 * leak, a NaN validation), budgets that end a run mid-way without overshoot, and a cost
 * forecast that refuses. Each guard must fire at the planted step, not before or after. */
#include "test_util.h"
#include "thermo/guard.h"

/* A healthy run: loss falling slowly with deterministic noise, grad norm around 1. */
/* (a steep trend inside the 128-step window inflates its sd, in OLMo-core too: the late,
 * slow part of a run is where z-scores see spikes best) */
static double good_loss(long s) { return 3.5 - 0.0005 * s + 0.05 * sin(s * 1.7) + 0.03 * cos(s * 0.37); }
static double good_grad(long s) { return 1.0 + 0.1 * sin(s * 2.3) + 0.05 * cos(s * 0.9); }

static void test_nan_and_spikes(void) {
    th_train_health *h;
    CHECK(th_train_health_create(NULL, &h) == TH_OK, "%s", th_last_error());
    th_health_verdict v;
    long fired[8];
    int nf = 0;
    for (long s = 1; s <= 400; s++) {
        double loss = good_loss(s), grad = good_grad(s);
        if (s == 10) loss = 80;        // a huge spike before the guard is armed (64 values): allowed
        if (s == 150) loss = NAN;      // planted NaN
        if (s == 151) grad = INFINITY; // planted Inf grad norm
        if (s == 260) loss += 1.0;     // planted loss spike (sd of the noise ~0.04)
        if (s == 360) grad *= 16;      // grad-norm spike (BLOOM: 0.95 -> 16)
        if (s == 300) loss += 0.08;    // a 2-sigma wobble: no event
        th_guard_action a = th_train_health_check(h, s, loss, grad, 2.0, &v);
        if (a != TH_GUARD_CONTINUE && nf < 8) fired[nf++] = s;
        if (s == 150) CHECK(a == TH_GUARD_SKIP && v.event.kind == TH_TRAIN_NONFINITE_LOSS, "NaN: %s", v.reason);
        if (s == 151) CHECK(a == TH_GUARD_SKIP && v.event.kind == TH_TRAIN_NONFINITE_GRAD, "Inf: %s", v.reason);
        if (s == 260) // 150, 151, 260: never 3 skips within 100 steps, so no rollback
            CHECK(a == TH_GUARD_SKIP && v.event.kind == TH_TRAIN_LOSS_SPIKE && v.event.z > 6 && v.event.energy_j == 2.0,
                  "loss spike: %s", v.reason);
        if (s == 360) CHECK(a == TH_GUARD_SKIP && v.event.kind == TH_TRAIN_GRAD_SPIKE, "grad spike: %s", v.reason);
    }
    CHECK(nf == 4 && fired[0] == 150 && fired[1] == 151 && fired[2] == 260 && fired[3] == 360,
          "fired %d times, first at %ld", nf, nf ? fired[0] : -1L);
    th_health_summary sum;
    th_train_health_summary(h, &sum);
    CHECK(sum.steps_seen == 400 && sum.steps_skipped == 4 && sum.nonfinite == 2 && sum.spikes == 2 &&
              sum.rollbacks == 0 && fabs(sum.energy_wasted_j - 8.0) < 1e-12 && sum.n_events == 4,
          "summary: seen %ld skipped %ld wasted %g", sum.steps_seen, sum.steps_skipped, sum.energy_wasted_j);
    CHECK(sum.events[2].step == 260 && sum.events[2].kind == TH_TRAIN_LOSS_SPIKE, "event log");
    th_train_health_free(h);

    // a NaN never enters the statistics: after it, a spike is still measured against finite values
    CHECK(th_train_health_create(NULL, &h) == TH_OK, "%s", th_last_error());
    for (long s = 1; s <= 100; s++) th_train_health_check(h, s, s == 70 ? NAN : good_loss(s), good_grad(s), 1, NULL);
    CHECK(th_train_health_check(h, 101, good_loss(101), good_grad(101), 1, &v) == TH_GUARD_CONTINUE && isfinite(v.event.z) == 0,
          "a normal step after a NaN: %s", v.reason);
    CHECK(th_train_health_check(h, 102, good_loss(102) + 1.0, good_grad(102), 1, &v) == TH_GUARD_SKIP && isfinite(v.event.z),
          "spike after a NaN has a finite z: %s", v.reason);
    th_train_health_free(h);

    // warn mode: spikes are reported and applied; NaN is still skipped
    th_train_health_config c = th_train_health_defaults();
    c.mode = TH_GUARD_WARN;
    CHECK(th_train_health_create(&c, &h) == TH_OK, "%s", th_last_error());
    for (long s = 1; s <= 100; s++) th_train_health_check(h, s, good_loss(s), good_grad(s), 1, NULL);
    CHECK(th_train_health_check(h, 101, 50, 1, 1, &v) == TH_GUARD_WARNED, "warn: %s", v.reason);
    CHECK(th_train_health_check(h, 102, NAN, 1, 1, &v) == TH_GUARD_SKIP, "warn mode still skips NaN");
    th_train_health_free(h);

    c = th_train_health_defaults();
    c.min_history = 500;
    CHECK(th_train_health_create(&c, &h) == TH_ERR_INVALID && strstr(th_last_error(), "min_history"), "%s",
          th_last_error());
}

static void test_rollback_and_zombie(void) {
    th_train_health *h;
    CHECK(th_train_health_create(NULL, &h) == TH_OK, "%s", th_last_error());
    th_health_verdict v;
    th_guard_action act[600];
    long s;
    // spikes 110 steps apart: skips only
    for (s = 1; s <= 400; s++) {
        double loss = good_loss(s) + (s == 100 || s == 210 || s == 320 ? 1.0 : 0.0);
        act[s] = th_train_health_check(h, s, loss, good_grad(s), 1.0, &v);
    }
    CHECK(act[100] == TH_GUARD_SKIP && act[210] == TH_GUARD_SKIP && act[320] == TH_GUARD_SKIP, "spread-out spikes skip");
    // three within 100 steps: 420, 450, 480 -> the third rolls back
    for (s = 401; s <= 480; s++) {
        double loss = good_loss(s) + (s == 420 || s == 450 || s == 480 ? 1.0 : 0.0);
        act[s] = th_train_health_check(h, s, loss, good_grad(s), 1.0, &v);
        if (s < 480 && s != 420 && s != 450) CHECK(act[s] == TH_GUARD_CONTINUE, "step %ld: %s", s, v.reason);
    }
    CHECK(act[420] == TH_GUARD_SKIP && act[450] == TH_GUARD_SKIP, "first two skip");
    CHECK(act[480] == TH_GUARD_ROLLBACK && v.rollback_to_hint == 419 && v.lr_factor == 0.5 &&
              v.event.kind == TH_TRAIN_ROLLBACK,
          "third rolls back: %s", v.reason);
    // the caller restores step 400, discarding 80 steps x 1 J
    th_train_health_rolled_back(h, 400, 80.0);
    th_health_summary sum;
    th_train_health_summary(h, &sum);
    CHECK(sum.rollbacks == 1 && fabs(sum.energy_wasted_j - (6 + 80)) < 1e-9, "rollbacks %ld wasted %g", sum.rollbacks,
          sum.energy_wasted_j);
    CHECK(sum.events[sum.n_events - 1].kind == TH_TRAIN_ROLLBACK && sum.events[sum.n_events - 1].energy_j == 80,
          "rollback event carries the discarded energy");
    // replaying from 401 with the bad batches skipped: healthy again
    for (s = 401; s <= 480; s++)
        CHECK(th_train_health_check(h, s, good_loss(s), good_grad(s), 1.0, &v) == TH_GUARD_CONTINUE, "replay %ld: %s", s,
              v.reason);
    // a run that keeps spiking: rollbacks 2 and 3, then the 4th trigger stops it (max_rollbacks 3)
    int rollbacks = 1, halted_at = 0;
    for (s = 481; s <= 600 && !halted_at; s++) {
        double loss = good_loss(s) + (s % 5 == 0 ? 1.0 : 0.0);
        th_guard_action a = th_train_health_check(h, s, loss, good_grad(s), 1.0, &v);
        if (a == TH_GUARD_ROLLBACK) {
            rollbacks++;
            th_train_health_rolled_back(h, s - 10, 10.0);
        }
        if (a == TH_GUARD_HALT) halted_at = (int)s;
    }
    CHECK(rollbacks == 3 && halted_at == 525 && v.event.kind == TH_TRAIN_ZOMBIE, "rollbacks %d, halted at %d: %s", rollbacks,
          halted_at, v.reason);
    th_train_health_free(h);
}

static void test_early_stop(void) {
    th_early_stop es;
    th_early_stop_config c = th_early_stop_defaults();
    c.planned_steps = 1000;
    CHECK(th_early_stop_init(&es, &c) == TH_OK, "%s", th_last_error());
    double vals[] = {3.0, 2.5, 2.2, 2.1995, 2.2, 2.3, 2.0};
    th_early_stop_verdict v;
    int stopped = 0;
    for (int i = 0; i < 7 && !stopped; i++) {
        th_guard_action a = th_early_stop_update(&es, 50L * (i + 1), vals[i], vals[i] + 0.1, 2.0, &v);
        if (a == TH_GUARD_HALT) stopped = i + 1;
        if (i == 2) CHECK(v.improved && v.best_step == 150, "eval 3 is the best");
        if (i == 3) CHECK(!v.improved && v.bad_evals == 1, "an improvement under min_delta does not count");
    }
    CHECK(stopped == 6, "plateau stopped at eval %d, expected 6 (patience 3 after the best at eval 3)", stopped);
    CHECK(v.steps_left == 700 && fabs(v.energy_saved_j - 1400) < 1e-9 && v.best_step == 150,
          "steps left %ld saved %g J", v.steps_left, v.energy_saved_j);
    CHECK(strstr(v.reason, "plateau") && strstr(v.reason, "700 of 1000 steps"), "%s", v.reason);

    // a validation loss far below the training loss: possible leak
    th_early_stop_init(&es, NULL);
    CHECK(th_early_stop_update(&es, 50, 3.0, 3.1, 1, &v) == TH_GUARD_CONTINUE && !v.leak, "normal");
    CHECK(th_early_stop_update(&es, 100, 1.2, 3.0, 1, &v) == TH_GUARD_WARNED && v.leak, "leak vs training loss");
    CHECK(strstr(v.reason, "possible validation leak") != NULL, "%s", v.reason);
    c = th_early_stop_defaults();
    c.leak_floor = 1.5;
    c.leak_train_ratio = 0;
    th_early_stop_init(&es, &c);
    CHECK(th_early_stop_update(&es, 50, 1.6, NAN, 1, &v) == TH_GUARD_CONTINUE, "above the floor");
    CHECK(th_early_stop_update(&es, 100, 1.4, NAN, 1, &v) == TH_GUARD_WARNED && v.leak, "below the absolute floor");
    // NaN validation stops (Lightning check_finite)
    th_early_stop_init(&es, NULL);
    CHECK(th_early_stop_update(&es, 50, NAN, 3, 1, &v) == TH_GUARD_HALT, "NaN validation loss stops");
    c = th_early_stop_defaults();
    c.leak_train_ratio = 1.5;
    CHECK(th_early_stop_init(&es, &c) == TH_ERR_INVALID, "ratio >= 1 rejected");
}

static void test_budget(void) {
    th_budget b;
    th_budget_config c = {0};
    c.energy_j = 1000;
    CHECK(th_budget_init(&b, &c) == TH_OK, "%s", th_last_error());
    int units = 0;
    while (th_budget_allow(&b, NULL)) {
        th_guard_cost u = {48.0, 0, 0, 0.5};
        th_budget_charge(&b, &u);
        units++;
        if (units > 100) break;
    }
    CHECK(units == 20 && b.used[TH_BUDGET_ENERGY] == 960 && b.used[TH_BUDGET_ENERGY] <= 1000,
          "ran %d units, used %g J", units, b.used[TH_BUDGET_ENERGY]);
    CHECK(b.stopped && b.stopped_by == TH_BUDGET_ENERGY, "stopped by energy");
    CHECK(!th_budget_allow(&b, NULL), "stays stopped");
    char text[512];
    th_budget_describe(&b, text, sizeof text);
    CHECK(strstr(text, "energy limit 1000 J reached after 20 units: used 960 J (96.0%), 40 J left, next unit projected 48 J"),
          "%s", text);

    // Wh limit, time limit and varying units with a margin: never over any limit
    memset(&c, 0, sizeof c);
    c.energy_wh = 0.1; // 360 J
    c.seconds = 30;
    c.margin_sigma = 3;
    th_budget_init(&b, &c);
    double used_j = 0, used_s = 0;
    for (int i = 0; th_budget_allow(&b, NULL) && i < 1000; i++) {
        th_guard_cost u = {10.0 + 3.0 * sin(i * 1.3), 0, 0, 0.2 + 0.05 * cos(i)};
        th_budget_charge(&b, &u);
        used_j += u.energy_j;
        used_s += u.seconds;
    }
    CHECK(b.stopped && used_j <= 360 && used_s <= 30 && used_j > 300, "used %g J %g s, stopped by %s", used_j, used_s,
          th_budget_kind_name(b.stopped_by));

    // a CO2e budget priced through the eco ledger
    th_eco_tables *t = NULL;
    th_eco_factors f;
    if (th_eco_tables_load(&t, NULL) == TH_OK && th_eco_factors_resolve(t, "WORLD", NULL, &f) == TH_OK) {
        th_guard_cost u;
        th_eco_price price;
        CHECK(th_eco_price_of(&f, &price) == TH_OK, "%s", th_last_error());
        th_guard_cost_priced(TH_J_PER_KWH, 60, &price, &u);
        double g_per_kwh = f.f[TH_ECO_F_GRID_CO2E].value;
        CHECK(fabs(u.co2e_g - g_per_kwh) < 1e-6 * g_per_kwh && u.water_ml > 0 && u.seconds == 60,
              "1 kWh: %g g (grid %g), %g mL", u.co2e_g, g_per_kwh, u.water_ml);
        memset(&c, 0, sizeof c);
        c.co2e_g = g_per_kwh; // one kWh worth
        th_budget_init(&b, &c);
        th_guard_cost step;
        th_guard_cost_priced(1e5, 1, &price, &step); // 1/36 kWh per step
        int n = 0;
        while (th_budget_allow(&b, &step) && n < 100) {
            th_budget_charge(&b, &step);
            n++;
        }
        CHECK(n == 36 && b.stopped_by == TH_BUDGET_CO2E && b.used[TH_BUDGET_CO2E] <= g_per_kwh * (1 + 1e-12),
              "CO2e budget: %d steps, stopped by %s", n, th_budget_kind_name(b.stopped_by));
        th_eco_tables_free(t);
    } else {
        CHECK(0, "factor tables: %s", th_last_error());
    }
    c.energy_j = -1;
    CHECK(th_budget_init(&b, &c) == TH_ERR_INVALID, "negative limit rejected");
}

static void test_forecast(void) {
    th_forecast_config c = th_forecast_defaults(1000);
    c.limit.co2e_g = 0.8;
    th_forecast *f;
    CHECK(th_forecast_create(&c, &f) == TH_OK, "%s", th_last_error());
    th_forecast_verdict v;
    long refused_at = 0;
    for (long s = 1; s <= 200 && !refused_at; s++) {
        // 2 J and 1 mg CO2e a step (+-10%), the first step 50x (warm-up allocations)
        double k = s == 1 ? 50 : 1 + 0.1 * sin(s * 0.7);
        th_guard_cost u = {2.0 * k, 0.001 * k, 0.01 * k, 0.1 * k};
        if (th_forecast_step(f, &u, &v) == TH_GUARD_REFUSE) refused_at = s;
        if (s == 49) CHECK(!v.ready && v.action == TH_GUARD_CONTINUE, "not before min_steps");
    }
    CHECK(refused_at == 50 && v.exceeded == TH_BUDGET_CO2E, "refused at step %ld", refused_at);
    // projection ~1 g CO2e and ~2 kJ for 1000 steps, robust to the warm-up step
    CHECK(fabs(v.total.co2e_g - 1.0) < 0.06 && fabs(v.total.energy_j - 2000) < 120 && v.low.energy_j <= v.total.energy_j &&
              v.high.energy_j >= v.total.energy_j,
          "total %g g, %g J (%g..%g)", v.total.co2e_g, v.total.energy_j, v.low.energy_j, v.high.energy_j);
    CHECK(strstr(v.reason, "refuse") && strstr(v.reason, "co2e"), "%s", v.reason);
    th_forecast_free(f);

    // within the limit: never refuses
    c.limit.co2e_g = 1.5;
    th_forecast_create(&c, &f);
    int refused = 0;
    for (long s = 1; s <= 1000; s++) {
        th_guard_cost u = {2.0, 0.001, 0.01, 0.1};
        refused |= th_forecast_step(f, &u, &v) == TH_GUARD_REFUSE;
    }
    CHECK(!refused && fabs(v.total.co2e_g - 1.0) < 1e-9 && fabs(v.done.energy_j - 2000) < 1e-6, "no refusal, %g g",
          v.total.co2e_g);
    th_forecast_free(f);
    c.planned_steps = 0;
    CHECK(th_forecast_create(&c, &f) == TH_ERR_INVALID, "planned_steps 0 rejected");
}

int main(void) {
    test_nan_and_spikes();
    test_rollback_and_zombie();
    test_early_stop();
    test_budget();
    test_forecast();
    return test_summary();
}
