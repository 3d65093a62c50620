/* calibrate.c: the step-response experiment of `thermo calibrate` (idle, full duty, idle)
 * and the fit of a thermal profile from it: R, C, τ and ambient from the first-order fit
 * (th_fit_first_order), P_idle and P_max from the measured power of the phases. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/analyze_internal.h"

th_calib_opts th_calib_defaults(void) {
    th_calib_opts o = {60.0, 180.0, 10.0, 1};
    return o;
}

th_status th_calibrate_fit(const double *t, const double *T, const double *P, size_t n, double load_start_s,
                           double load_end_s, const th_thermal_profile *base, const char *name, th_calib_result *out) {
    if (!(load_end_s > load_start_s)) return th_fail(TH_ERR_INVALID, "calibrate: the load phase is empty");
    th_calib_result r;
    memset(&r, 0, sizeof r);
    th_status st = th_fit_first_order(t, T, P, n, NAN, 3.0, &r.fit);
    if (st != TH_OK) return st;
    double si = 0, sl = 0, qmin = INFINITY;
    size_t ni = 0, nl = 0;
    double mid = 0.5 * (load_start_s + load_end_s);
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(P[i])) continue;
        if (t[i] < load_start_s) si += P[i], ni++;
        else if (t[i] >= mid && t[i] < load_end_s) sl += P[i], nl++;
        if (i > 0 && isfinite(T[i]) && isfinite(T[i - 1]) && fabs(T[i] - T[i - 1]) > 1e-6)
            qmin = fmin(qmin, fabs(T[i] - T[i - 1]));
    }
    if (!ni || !nl) return th_fail(TH_ERR_INVALID, "calibrate: no power samples in the idle (%zu) or load (%zu) phase", ni, nl);
    r.p_idle_w = si / ni;
    r.p_max_w = sl / nl;
    r.samples = r.fit.n;
    th_thermal_profile p;
    if (base) {
        p = *base;
    } else {
        memset(&p, 0, sizeof p);
        p.t_max_operating_c = 95, p.t_slowdown_c = 100, p.t_shutdown_c = 105;
        p.leak_ref_c = 85, p.leak_doubling_c = 19;
    }
    th_an_fmt(p.name, sizeof p.name, "%s", name && *name ? name : "calibrated");
    p.r_k_per_w = r.fit.r_k_per_w;
    p.c_j_per_k = r.fit.c_j_per_k;
    p.p_idle_w = r.p_idle_w;
    p.p_max_w = r.p_max_w > r.p_idle_w ? r.p_max_w : r.p_idle_w;
    p.t_ambient_c = r.fit.t_ambient_c;
    p.leak_w_at_ref = 0; /* leakage at the operating point is inside the measured P_max */
    if (!(p.leak_doubling_c > 0)) p.leak_doubling_c = 19;
    /* readings that move in whole steps are quantized: keep the step (whole degrees, etc.) */
    p.sensor_quantum_c = isfinite(qmin) && qmin >= 0.1 ? qmin : 0;
    p.sensor_noise_c = r.fit.rms_c;
    p.sensor_lag_s = r.fit.sensor_lag_s;
    if (p.t_max_operating_c <= p.t_ambient_c) p.t_max_operating_c = p.t_ambient_c + 1;
    if (p.t_slowdown_c < p.t_max_operating_c) p.t_slowdown_c = p.t_max_operating_c;
    if (p.t_shutdown_c < p.t_slowdown_c) p.t_shutdown_c = p.t_slowdown_c;
    th_an_fmt(p.source, sizeof p.source,
              "Fitted by thermo calibrate from a step response (idle until %.0f s, full duty until %.0f s, then idle; "
              "%zu samples): R %.4g K/W, C %.4g J/K, tau %.4g s, ambient %.2f C, sensor lag %.2g s, RMS fit error %.3f C; P_idle and "
              "P_max are the measured mean powers of the idle phase and the load phase's second half (leakage at "
              "the operating point included, so leak_w_at_ref is 0). Limits from %s.",
              load_start_s, load_end_s, r.fit.n, r.fit.r_k_per_w, r.fit.c_j_per_k, r.fit.tau_s, r.fit.t_ambient_c,
              r.fit.sensor_lag_s, r.fit.rms_c, base ? base->name : "generic defaults (95/100/105 C)");
    if ((st = th_profile_validate(&p, "calibrated profile")) != TH_OK) return st;
    r.profile = p;
    *out = r;
    return TH_OK;
}

th_status th_calibrate_simulated(const th_thermal_profile *plant_p, const th_calib_opts *o_in, th_calib_result *out) {
    th_calib_opts o = o_in ? *o_in : th_calib_defaults();
    if (!(o.hz > 0) || !(o.idle_s > 0) || !(o.load_s > 0))
        return th_fail(TH_ERR_INVALID, "calibrate: idle, load and rate must be > 0");
    double total = 2 * o.idle_s + o.load_s, dt = 1.0 / o.hz;
    size_t n = (size_t)floor(total * o.hz) + 1;
    double *buf = th_alloc(3 * n * sizeof *buf);
    if (!buf) return th_fail(TH_ERR_NOMEM, "calibrate: out of memory");
    double *t = buf, *T = buf + n, *P = buf + 2 * n;
    th_plant *pl = NULL;
    th_status st = th_plant_create(plant_p, o.seed, &pl);
    size_t m = 0;
    for (size_t i = 0; i < n && st == TH_OK; i++) {
        double ti = i * dt;
        if (i > 0) {
            double tm = ti - dt / 2; /* the duty over the step just taken */
            double duty = tm >= o.idle_s && tm < o.idle_s + o.load_s ? 1.0 : 0.0;
            if ((st = th_plant_step(pl, dt, duty)) != TH_OK) break;
        }
        th_sample s;
        if (th_plant_read(pl, (uint64_t)llround(ti * 1e9), &s) != TH_OK) {
            st = th_fail(TH_ERR_STATE, "calibrate: the simulated plant shut down at %.1f s (%.1f C)", ti,
                         th_plant_temp_c(pl));
            break;
        }
        t[m] = ti;
        T[m] = (s.valid & TH_SAMPLE_TEMP) ? s.temp_mc / 1000.0 : NAN;
        P[m] = (s.valid & TH_SAMPLE_POWER) ? s.power_uw / 1e6 : NAN;
        m++;
    }
    th_plant_free(pl);
    if (st == TH_OK) {
        char name[80];
        th_an_fmt(name, sizeof name, "%s-calibrated", plant_p->name);
        st = th_calibrate_fit(t, T, P, m, o.idle_s, o.idle_s + o.load_s, plant_p, name, out);
    }
    th_free(buf);
    return st;
}

th_status th_profile_write(const char *path, const th_thermal_profile *p) {
    json_t *o = json_object();
    if (!o) return th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
    int ok = json_object_set_new(o, "name", json_string(p->name)) == 0;
    struct {
        const char *k;
        double v;
    } f[] = {{"r_k_per_w", p->r_k_per_w},         {"c_j_per_k", p->c_j_per_k},
             {"p_idle_w", p->p_idle_w},           {"p_max_w", p->p_max_w},
             {"t_ambient_c", p->t_ambient_c},     {"t_max_operating_c", p->t_max_operating_c},
             {"t_slowdown_c", p->t_slowdown_c},   {"t_shutdown_c", p->t_shutdown_c},
             {"leak_w_at_ref", p->leak_w_at_ref}, {"leak_ref_c", p->leak_ref_c},
             {"leak_doubling_c", p->leak_doubling_c}, {"sensor_quantum_c", p->sensor_quantum_c},
             {"sensor_noise_c", p->sensor_noise_c}, {"sensor_lag_s", p->sensor_lag_s}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) ok &= json_object_set_new(o, f[i].k, json_real(f[i].v)) == 0;
    ok &= json_object_set_new(o, "source", json_string(p->source)) == 0;
    th_status st = ok ? TH_OK : th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
    th_atomic_file *af = NULL;
    if (st == TH_OK) st = th_atomic_open(path, &af);
    if (st == TH_OK) {
        if (json_dump_callback(o, th_atomic_json_sink, af, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10)) != 0)
            th_atomic_fail(af, th_fail(TH_ERR_NOMEM, "%s: out of memory writing the profile", path));
        st = th_atomic_commit(af);
    }
    json_decref(o);
    return st;
}
