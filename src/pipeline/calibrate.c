/* calibrate.c: the live step-response experiment of `thermo calibrate` (pipeline.h): idle,
 * a CPU burn loop at full duty, idle, inside a monitored run whose telemetry is then fitted
 * by analyze's th_calibrate_fit. The simulated twin, th_calibrate_simulated, is analyze's:
 * it needs no run. */
#include <time.h>

#include "thermo/pipeline.h"

/* the burn loop's unit of work: short against any sampling period */
#define CALIB_BURN_UNIT_MS 20.0

/* Burns CPU for about `ms` milliseconds: the calibration load. */
static double burn(double ms) {
    uint64_t end = th_now_ns() + (uint64_t)(ms * 1e6);
    volatile double x = 1.0;
    while (th_now_ns() < end)
        for (int i = 0; i < 20000; i++) x = x * 1.0000001 + 1e-9;
    return x;
}

/* Sleeps `s` seconds in 20 ms naps (the sampler thread keeps reading meanwhile). */
static void idle_for(double s) {
    uint64_t end = th_now_ns() + (uint64_t)(s * 1e9);
    while (th_now_ns() < end) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* The logged samples with temperature and power, as the fit's three columns. */
static th_status calib_fit_log(const char *telemetry_path, const char *profile, double load_start_s,
                               double load_end_s, th_calib_result *out) {
    th_telemetry_row *rows = NULL;
    size_t n = 0;
    double *buf = NULL;
    th_status st = th_telemetry_read(telemetry_path, &rows, &n);
    if (st != TH_OK) goto done;
    if (!(buf = th_alloc(3 * (n ? n : 1) * sizeof *buf))) {
        st = th_fail(TH_ERR_NOMEM, "calibrate: out of memory for %zu samples", n);
        goto done;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (!rows[i].is_step && (rows[i].has & TH_COL_TEMP) && (rows[i].has & TH_COL_POWER))
            buf[m] = rows[i].t_s, buf[n + m] = rows[i].temp_c, buf[2 * n + m] = rows[i].power_w, m++;
    th_thermal_profile base, *bp = NULL;
    if (profile && th_profile_find(profile, &base) == TH_OK) bp = &base;
    st = th_calibrate_fit(buf, buf + n, buf + 2 * n, m, load_start_s, load_end_s, bp, "calibrated", out);
done:
    th_free(buf);
    th_free(rows);
    return st;
}

th_status th_calibrate_live(const char *sensor, const char *profile, const th_calib_opts *o,
                            const char *telemetry_path, th_calib_result *out, th_run_figures *fig) {
    if (!telemetry_path || !telemetry_path[0])
        return th_fail(TH_ERR_INVALID, "calibrate: a telemetry path is required (the fit reads the samples back)");
    if (!(o->hz > 0) || !(o->idle_s > 0) || !(o->load_s > 0))
        return th_fail(TH_ERR_INVALID, "calibrate: idle, load and rate must be > 0");
    th_run_opts ro = th_run_opts_default();
    ro.sensor = sensor;
    ro.sense.profile = profile;
    ro.hz = o->hz;
    ro.telemetry_path = telemetry_path;
    ro.fixed_duty = 1.0;
    th_run *run = NULL;
    th_run_figures last;
    uint64_t t0 = th_now_ns();
    th_status st = th_run_start(&ro, &run);
    if (st != TH_OK) return st;
    th_log(TH_LOG_INFO, "calibrate: idle %.0f s, full duty %.0f s, idle %.0f s on %s", o->idle_s, o->load_s,
           o->idle_s, th_sensor_backend(th_run_sensor(run)));
    idle_for(o->idle_s);
    double load_start_s = (double)(th_now_ns() - t0) / 1e9;
    uint64_t end = th_now_ns() + (uint64_t)(o->load_s * 1e9);
    while (th_now_ns() < end) {
        th_run_unit_begin(run);
        burn(CALIB_BURN_UNIT_MS);
        if (th_run_unit_end(run, NULL) != TH_OK) break;
    }
    double load_end_s = (double)(th_now_ns() - t0) / 1e9;
    idle_for(o->idle_s);
    if ((st = th_run_stop(run, &last)) != TH_OK) return st;
    if (fig) *fig = last;
    return calib_fit_log(telemetry_path, profile, load_start_s, load_end_s, out);
}
