/* test_pipeline_calibrate.c: th_calibrate_live, the live step-response experiment, in
 * process on the simulated plant in real time. The plant is a fixture profile with a short
 * time constant (R 2 K/W, C 0.5 J/K: tau 1 s), no leakage and an exact sensor, so 1.5 s idle,
 * 3 s of burn and 1.5 s idle settle it; the fit must give back R within 15 %, P_max and
 * P_idle within 10 % (the burn runs at duty 1: the plant's power is P_max), and the run's
 * figures must say the data was modeled. Then the argument checks: no telemetry path, a
 * zero rate. */
#include "thermo/pipeline.h"

#include "test_util.h"

int main(void) {
    const char *tmp = test_tmp_dir("pipeline_calibrate");
    char prof_path[4200], tel[4200];
    snprintf(prof_path, sizeof prof_path, "%s/fast.json", tmp);
    snprintf(tel, sizeof tel, "%s/calibrate.telemetry.csv", tmp);
    th_thermal_profile p;
    th_status st = th_profile_find("laptop-cpu", &p);
    CHECK(st == TH_OK, "laptop-cpu: %s", th_last_error());
    if (st != TH_OK) return test_summary();
    snprintf(p.name, sizeof p.name, "fast");
    p.r_k_per_w = 2.0, p.c_j_per_k = 0.5, p.p_idle_w = 3.0, p.p_max_w = 20.0;
    p.leak_w_at_ref = 0, p.sensor_quantum_c = 0, p.sensor_noise_c = 0, p.sensor_lag_s = 0;
    CHECK(th_profile_write(prof_path, &p) == TH_OK, "write %s: %s", prof_path, th_last_error());

    th_calib_opts o = th_calib_defaults();
    o.idle_s = 1.5, o.load_s = 3.0, o.hz = 20;
    th_calib_result res;
    th_run_figures fig;
    st = th_calibrate_live("sim", prof_path, &o, tel, &res, &fig);
    CHECK(st == TH_OK, "th_calibrate_live: %s", th_last_error());
    if (st == TH_OK) {
        printf("fitted R %.4g K/W, C %.4g J/K, tau %.4g s, P_idle %.4g W, P_max %.4g W from %zu samples\n",
               res.fit.r_k_per_w, res.fit.c_j_per_k, res.fit.tau_s, res.p_idle_w, res.p_max_w, res.samples);
        CHECK(fabs(res.fit.r_k_per_w - 2.0) <= 0.3, "R %g vs 2", res.fit.r_k_per_w);
        CHECK(fabs(res.p_max_w - 20.0) <= 2.0 && fabs(res.p_idle_w - 3.0) <= 0.3, "P_max %g vs 20, P_idle %g vs 3",
              res.p_max_w, res.p_idle_w);
        CHECK(res.samples >= 60, "%zu samples over 6 s at 20 Hz", res.samples);
        CHECK(!strcmp(res.profile.name, "calibrated") && res.profile.t_slowdown_c == p.t_slowdown_c,
              "the fitted profile takes its limits from the base profile");
        CHECK(fig.origin == TH_ORIGIN_MODELED && fig.busy_s > 2.5, "modeled data, %.2f s busy", fig.busy_s);
    }
    CHECK(th_calibrate_live("sim", prof_path, &o, NULL, &res, NULL) == TH_ERR_INVALID, "no telemetry path");
    o.hz = 0;
    CHECK(th_calibrate_live("sim", prof_path, &o, tel, &res, NULL) == TH_ERR_INVALID, "zero rate");
    return test_summary();
}
