/* plant.c: the simulated thermal plant (DESIGN §4) and its JSON profiles. One lumped RC
 * node per device, driven by the work loop's measured duty; the linear part is integrated
 * exactly per sub-step, T(t+h) = T∞ + (T − T∞)·e^(−h/τ) with T∞ = T_amb + R·P, and the
 * temperature-dependent parts (leakage, hardware slowdown) are held over sub-steps of at
 * most τ/50. The sensor adds a first-order lag, seeded Gaussian noise and quantization. */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sense/sense_internal.h"

/* ---------------------------------------------------------------------------------
 * profiles */

typedef struct {
    const char *key;
    size_t off;
} num_field;

#define F(k) {#k, offsetof(th_thermal_profile, k)}
static const num_field num_fields[] = {
    F(r_k_per_w),       F(c_j_per_k),       F(p_idle_w),         F(p_max_w),          F(t_ambient_c),
    F(t_max_operating_c), F(t_slowdown_c),  F(t_shutdown_c),     F(leak_w_at_ref),    F(leak_ref_c),
    F(leak_doubling_c), F(sensor_quantum_c), F(sensor_noise_c),  F(sensor_lag_s),
};
#undef F
#define N_NUM (sizeof num_fields / sizeof num_fields[0])

th_status th_profile_validate(const th_thermal_profile *p, const char *where) {
    for (size_t i = 0; i < N_NUM; i++) {
        double v = *(const double *)((const char *)p + num_fields[i].off);
        if (!isfinite(v)) return th_fail(TH_ERR_FORMAT, "%s: %s is not a finite number", where, num_fields[i].key);
    }
    if (!(p->r_k_per_w > 0)) return th_fail(TH_ERR_FORMAT, "%s: r_k_per_w must be > 0, got %g", where, p->r_k_per_w);
    if (!(p->c_j_per_k > 0)) return th_fail(TH_ERR_FORMAT, "%s: c_j_per_k must be > 0, got %g", where, p->c_j_per_k);
    if (p->p_idle_w < 0) return th_fail(TH_ERR_FORMAT, "%s: p_idle_w must be >= 0, got %g", where, p->p_idle_w);
    if (p->p_max_w < p->p_idle_w)
        return th_fail(TH_ERR_FORMAT, "%s: p_max_w (%g) must be >= p_idle_w (%g)", where, p->p_max_w, p->p_idle_w);
    if (p->t_ambient_c < -60 || p->t_ambient_c > 80)
        return th_fail(TH_ERR_FORMAT, "%s: t_ambient_c %g is outside [-60, 80] °C", where, p->t_ambient_c);
    if (p->t_max_operating_c <= p->t_ambient_c)
        return th_fail(TH_ERR_FORMAT, "%s: t_max_operating_c (%g) must be above t_ambient_c (%g)", where,
                       p->t_max_operating_c, p->t_ambient_c);
    if (p->t_slowdown_c < p->t_max_operating_c)
        return th_fail(TH_ERR_FORMAT, "%s: t_slowdown_c (%g) must be >= t_max_operating_c (%g)", where,
                       p->t_slowdown_c, p->t_max_operating_c);
    if (p->t_shutdown_c < p->t_slowdown_c)
        return th_fail(TH_ERR_FORMAT, "%s: t_shutdown_c (%g) must be >= t_slowdown_c (%g)", where, p->t_shutdown_c,
                       p->t_slowdown_c);
    if (p->t_shutdown_c > 150)
        return th_fail(TH_ERR_FORMAT, "%s: t_shutdown_c %g is above 150 °C", where, p->t_shutdown_c);
    if (p->leak_w_at_ref < 0)
        return th_fail(TH_ERR_FORMAT, "%s: leak_w_at_ref must be >= 0, got %g", where, p->leak_w_at_ref);
    if (!(p->leak_doubling_c > 0))
        return th_fail(TH_ERR_FORMAT, "%s: leak_doubling_c must be > 0, got %g", where, p->leak_doubling_c);
    if (p->sensor_quantum_c < 0 || p->sensor_noise_c < 0 || p->sensor_lag_s < 0)
        return th_fail(TH_ERR_FORMAT, "%s: sensor_quantum_c, sensor_noise_c and sensor_lag_s must be >= 0", where);
    if (!p->name[0]) return th_fail(TH_ERR_FORMAT, "%s: name is empty", where);
    if (!p->source[0]) return th_fail(TH_ERR_FORMAT, "%s: source is empty: say where the figures come from", where);
    return TH_OK;
}

th_status th_profile_load(const char *path, th_thermal_profile *out) {
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) {
        FILE *f = fopen(path, "rb");
        if (!f) return th_fail(TH_ERR_IO, "%s: cannot open profile", path);
        fclose(f);
        return th_fail(TH_ERR_FORMAT, "%s:%d:%d: not valid JSON: %s", path, err.line, err.column, err.text);
    }
    th_status st = TH_OK;
    th_thermal_profile p;
    memset(&p, 0, sizeof p);
    if (!json_is_object(root)) {
        st = th_fail(TH_ERR_FORMAT, "%s: a profile is a JSON object", path);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        int known = strcmp(key, "name") == 0 || strcmp(key, "source") == 0;
        for (size_t i = 0; i < N_NUM && !known; i++) known = strcmp(key, num_fields[i].key) == 0;
        if (!known) {
            st = th_fail(TH_ERR_FORMAT, "%s: unknown key '%s'", path, key);
            goto done;
        }
    }
    const char *skeys[] = {"name", "source"};
    char *sdst[] = {p.name, p.source};
    size_t ssize[] = {sizeof p.name, sizeof p.source};
    for (int i = 0; i < 2; i++) {
        json_t *s = json_object_get(root, skeys[i]);
        if (!s) {
            st = th_fail(TH_ERR_FORMAT, "%s: missing key '%s'", path, skeys[i]);
            goto done;
        }
        if (!json_is_string(s)) {
            st = th_fail(TH_ERR_FORMAT, "%s: key '%s' must be a string", path, skeys[i]);
            goto done;
        }
        if (strlen(json_string_value(s)) >= ssize[i]) {
            st = th_fail(TH_ERR_FORMAT, "%s: key '%s' is longer than %zu bytes", path, skeys[i], ssize[i] - 1);
            goto done;
        }
        th_fmt(sdst[i], ssize[i], "%s", json_string_value(s));
    }
    for (size_t i = 0; i < N_NUM; i++) {
        json_t *n = json_object_get(root, num_fields[i].key);
        if (!n) {
            st = th_fail(TH_ERR_FORMAT, "%s: missing key '%s'", path, num_fields[i].key);
            goto done;
        }
        if (!json_is_number(n)) {
            st = th_fail(TH_ERR_FORMAT, "%s: key '%s' must be a number", path, num_fields[i].key);
            goto done;
        }
        *(double *)((char *)&p + num_fields[i].off) = json_number_value(n);
    }
    st = th_profile_validate(&p, path);
    if (st == TH_OK) *out = p;
done:
    json_decref(root);
    return st;
}

th_status th_profile_find(const char *name_or_path, th_thermal_profile *out) {
    if (!name_or_path || !*name_or_path) return th_fail(TH_ERR_INVALID, "profile: empty name");
    size_t n = strlen(name_or_path);
    if (strchr(name_or_path, '/') || (n > 5 && strcmp(name_or_path + n - 5, ".json") == 0))
        return th_profile_load(name_or_path, out);
    const char *dir = getenv("THERMO_DATA_DIR");
#ifdef THERMO_DATA_DIR
    if (!dir || !*dir) dir = THERMO_DATA_DIR;
#endif
    if (!dir || !*dir) dir = "data";
    char path[1024];
    th_fmt(path, sizeof path, "%s/profiles/%s.json", dir, name_or_path);
    FILE *f = fopen(path, "rb");
    if (!f)
        return th_fail(TH_ERR_INVALID,
                       "profile '%s': no such bundled profile (%s); bundled: laptop-cpu, desktop-cpu, server-cpu, "
                       "rtx-4090, a100-sxm4, h100-sxm, or pass a path",
                       name_or_path, path);
    fclose(f);
    return th_profile_load(path, out);
}

/* ---------------------------------------------------------------------------------
 * the plant */

struct th_plant {
    th_thermal_profile p;
    double t_c;         /* die temperature */
    double t_sensor_c;  /* lagged sensor state */
    double power_w;     /* power during the last sub-step */
    double energy_j;
    double time_s;
    int throttled, shut_down;
    th_rng rng;
    _Atomic double duty;
    _Atomic double factor;
    /* real-time mode, under mu: the work loop's transitions and the sensor's reads both
     * advance the plant to their instant, so each stretch of time heats at the duty that
     * really held over it */
    pthread_mutex_t mu;
    uint64_t last_ns;
    int have_last;
    double read_busy_s, read_time_s; /* duty-seconds and seconds since the last read */
    double read_energy_j;            /* energy at the last read */
};

static double leak_w(const th_thermal_profile *p, double t_c) {
    if (p->leak_w_at_ref <= 0) return 0.0;
    double x = (t_c - p->leak_ref_c) / p->leak_doubling_c;
    if (x > 30) x = 30; /* 2^30 × leak: runaway already; keep it finite */
    return p->leak_w_at_ref * exp2(x);
}

th_status th_plant_create(const th_thermal_profile *p, uint64_t seed, th_plant **out) {
    th_status st = th_profile_validate(p, p->name[0] ? p->name : "profile");
    if (st != TH_OK) return st;
    th_plant *pl = th_calloc(1, sizeof *pl);
    if (!pl) return th_fail(TH_ERR_NOMEM, "plant: out of memory");
    pl->p = *p;
    pl->t_c = pl->t_sensor_c = p->t_ambient_c;
    pl->power_w = p->p_idle_w + leak_w(p, p->t_ambient_c);
    th_rng_seed(&pl->rng, seed);
    atomic_store(&pl->duty, 0.0);
    atomic_store(&pl->factor, 1.0);
    pthread_mutex_init(&pl->mu, NULL);
    *out = pl;
    return TH_OK;
}

void th_plant_free(th_plant *pl) {
    if (!pl) return;
    pthread_mutex_destroy(&pl->mu);
    th_free(pl);
}

void th_plant_set_duty(th_plant *pl, double duty) {
    if (!(duty >= 0)) duty = 0; /* NaN included */
    if (duty > 1) duty = 1;
    atomic_store_explicit(&pl->duty, duty, memory_order_relaxed);
}

double th_plant_get_duty(const th_plant *pl) {
    return atomic_load_explicit(&((th_plant *)pl)->duty, memory_order_relaxed);
}

static void update_throttle(th_plant *pl) {
    const th_thermal_profile *p = &pl->p;
    if (pl->t_c >= p->t_shutdown_c) pl->shut_down = 1;
    if (!pl->throttled && pl->t_c >= p->t_slowdown_c) pl->throttled = 1;
    if (pl->throttled && pl->t_c < p->t_slowdown_c - 1.0) pl->throttled = 0; /* 1 °C hysteresis */
    atomic_store_explicit(&pl->factor, pl->shut_down ? 0.0 : pl->throttled ? 0.5 : 1.0, memory_order_relaxed);
}

th_status th_plant_step(th_plant *pl, double dt_s, double duty) {
    if (!(dt_s >= 0) || !isfinite(dt_s)) return th_fail(TH_ERR_INVALID, "plant: dt_s must be >= 0, got %g", dt_s);
    if (!(duty >= 0 && duty <= 1)) return th_fail(TH_ERR_INVALID, "plant: duty must be in [0, 1], got %g", duty);
    const th_thermal_profile *p = &pl->p;
    double tau = p->r_k_per_w * p->c_j_per_k;
    double h_max = tau / 50.0;
    double left = dt_s;
    while (left > 0) {
        double f = pl->shut_down ? 0.0 : pl->throttled ? 0.5 : 1.0;
        double pw = pl->shut_down ? 0.0 : p->p_idle_w + (p->p_max_w - p->p_idle_w) * duty * f + leak_w(p, pl->t_c);
        double t_inf = p->t_ambient_c + p->r_k_per_w * pw;
        /* With no leakage the trajectory is a pure exponential towards t_inf; if both ends
         * stay below the slowdown threshold (and no throttle is engaged) one step of any
         * length is exact. Otherwise hold leakage and throttle over short sub-steps. */
        double h = left;
        int exact = p->leak_w_at_ref <= 0 && !pl->throttled && !pl->shut_down && pl->t_c < p->t_slowdown_c &&
                    t_inf < p->t_slowdown_c;
        if (!exact) h = fmin(h, h_max);
        double a = exp(-h / tau);
        pl->t_c = t_inf + (pl->t_c - t_inf) * a;
        /* sensor lag: first-order filter towards the die temperature, stable for any h */
        if (p->sensor_lag_s > 0)
            pl->t_sensor_c = pl->t_c + (pl->t_sensor_c - pl->t_c) * exp(-h / p->sensor_lag_s);
        else
            pl->t_sensor_c = pl->t_c;
        pl->power_w = pw;
        pl->energy_j += pw * h;
        pl->time_s += h;
        left -= h;
        update_throttle(pl);
    }
    return TH_OK;
}

/* Advances to now_ns at the current duty, under mu. A time at or before the last one does
 * not step (the sampler and the work loop read the clock on two threads). */
static th_status advance_locked(th_plant *pl, uint64_t now_ns) {
    if (!pl->have_last) {
        pl->last_ns = now_ns;
        pl->have_last = 1;
        return TH_OK;
    }
    if (now_ns <= pl->last_ns) return TH_OK;
    double dt = (double)(now_ns - pl->last_ns) / 1e9, duty = th_plant_get_duty(pl);
    pl->last_ns = now_ns;
    pl->read_busy_s += duty * dt;
    pl->read_time_s += dt;
    return th_plant_step(pl, dt, duty);
}

th_status th_plant_advance_to(th_plant *pl, uint64_t now_ns) {
    pthread_mutex_lock(&pl->mu);
    th_status st = advance_locked(pl, now_ns);
    pthread_mutex_unlock(&pl->mu);
    return st;
}

th_status th_plant_set_duty_at(th_plant *pl, double duty, uint64_t now_ns) {
    pthread_mutex_lock(&pl->mu);
    th_status st = advance_locked(pl, now_ns);
    th_plant_set_duty(pl, duty);
    pthread_mutex_unlock(&pl->mu);
    return st;
}

th_status th_plant_read(th_plant *pl, uint64_t t_ns, th_sample *out) {
    const th_thermal_profile *p = &pl->p;
    th_fmt(out->source, sizeof out->source, "sim:%s", p->name);
    out->origin = TH_ORIGIN_MODELED;
    out->t_ns = t_ns;
    pthread_mutex_lock(&pl->mu);
    // the duty that held since the previous read, time-weighted; the duty now before any time
    // and the power over that time, as an energy counter gives it (a duty that switches
    // between work and waits makes the instantaneous power a two-valued signal)
    double util = pl->read_time_s > 0 ? pl->read_busy_s / pl->read_time_s : th_plant_get_duty(pl);
    double power_w = pl->read_time_s > 0 ? (pl->energy_j - pl->read_energy_j) / pl->read_time_s : pl->power_w;
    pl->read_busy_s = pl->read_time_s = 0;
    pl->read_energy_j = pl->energy_j;
    if (pl->shut_down) {
        double t_c = pl->t_c;
        pthread_mutex_unlock(&pl->mu);
        out->fault = TH_HEALTH_VANISHED;
        return th_fail(TH_ERR_IO, "sim:%s: the modeled device shut down at %.1f °C (t_shutdown_c %.1f)", p->name, t_c,
                       p->t_shutdown_c);
    }
    double t = pl->t_sensor_c;
    if (p->sensor_noise_c > 0) t += p->sensor_noise_c * th_rng_normal(&pl->rng);
    if (p->sensor_quantum_c > 0) t = p->sensor_quantum_c * floor(t / p->sensor_quantum_c + 0.5);
    out->temp_mc = (int32_t)lround(t * 1000.0);
    out->power_uw = (int64_t)llround(power_w * 1e6);
    out->energy_uj = (uint64_t)llround(pl->energy_j * 1e6);
    out->util = util > 1 ? 1 : util;
    out->throttle_reasons = pl->throttled ? TH_THROTTLE_HW_THERMAL : 0;
    out->valid = TH_SAMPLE_TEMP | TH_SAMPLE_POWER | TH_SAMPLE_ENERGY | TH_SAMPLE_UTIL | TH_SAMPLE_THROTTLE;
    out->fault = TH_HEALTH_OK;
    pthread_mutex_unlock(&pl->mu);
    return TH_OK;
}

double th_plant_temp_c(const th_plant *pl) { return pl->t_c; }
double th_plant_power_w(const th_plant *pl) { return pl->power_w; }
double th_plant_energy_j(const th_plant *pl) { return pl->energy_j; }
double th_plant_time_s(const th_plant *pl) { return pl->time_s; }
const th_thermal_profile *th_plant_profile(const th_plant *pl) { return &pl->p; }

double th_plant_throttle_factor(const th_plant *pl) {
    return atomic_load_explicit(&((th_plant *)pl)->factor, memory_order_relaxed);
}

double th_plant_steady_temp_c(const th_thermal_profile *p, double duty) {
    /* fixed point of T = T_amb + R·(P_dyn + leak(T)); the map is increasing, so iterate
     * from ambient upwards: it converges to the lowest fixed point, or runs away */
    double pd = p->p_idle_w + (p->p_max_w - p->p_idle_w) * duty;
    double t = p->t_ambient_c;
    for (int i = 0; i < 100000; i++) {
        double next = p->t_ambient_c + p->r_k_per_w * (pd + leak_w(p, t));
        if (next > 1000) return NAN;
        if (fabs(next - t) < 1e-12) return next;
        t = next;
    }
    return t;
}
