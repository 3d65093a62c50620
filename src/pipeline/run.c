/* run.c: a monitored run. Opens the sensor (real hardware where found, else the simulated
 * plant, labelled modeled), samples it on its own thread into the telemetry log, keeps the
 * energy ledger (counter difference, else integrated power; modeled for the plant), and
 * measures the work loop's duty, which is what drives the simulated plant: the plant
 * heats only while the work loop actually works. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "thermo/pipeline.h"

struct th_run {
    th_sensor *sensor;
    th_plant *plant; /* NULL unless the sensor is the simulated plant */
    th_telemetry *log;
    th_sense_sampler *sampler;
    uint64_t t0_ns;

    /* duty measurement: busy time in the current one-second window (work loop thread) */
    uint64_t unit_t0, window_t0, window_busy_ns;
    double duty;

    /* ledger, written by the sampler thread, read under the mutex */
    pthread_mutex_t mu;
    int have_first;
    uint64_t first_energy_uj, last_energy_uj, first_t_ns, last_t_ns;
    int energy_counter; /* samples carry an energy counter */
    th_power_integrator power;
    double temp_c, temp_max_c;
    uint64_t samples, failed;
    char source[96];
    th_origin origin;
};

th_run_opts th_run_opts_default(void) {
    th_run_opts o;
    memset(&o, 0, sizeof o);
    o.sense = th_sense_config_default();
    o.hz = 10.0;
    return o;
}

static void on_sample(const th_sample *s, th_status st, th_sense_health h, void *user) {
    (void)h;
    th_run *r = user;
    pthread_mutex_lock(&r->mu);
    if (st != TH_OK) {
        r->failed++;
        pthread_mutex_unlock(&r->mu);
        return;
    }
    r->samples++;
    snprintf(r->source, sizeof r->source, "%s", s->source);
    r->origin = s->origin;
    if (s->valid & TH_SAMPLE_TEMP) {
        r->temp_c = s->temp_mc / 1000.0;
        if (!(r->temp_c <= r->temp_max_c)) r->temp_max_c = r->temp_c;
    }
    if (s->valid & TH_SAMPLE_ENERGY) {
        if (!r->have_first) {
            r->first_energy_uj = s->energy_uj;
            r->first_t_ns = s->t_ns;
            r->have_first = 1;
        }
        r->energy_counter = 1;
        r->last_energy_uj = s->energy_uj;
        r->last_t_ns = s->t_ns;
    } else if ((s->valid & TH_SAMPLE_POWER) && s->power_uw >= 0) {
        th_power_integrator_add(&r->power, s->t_ns, (uint64_t)s->power_uw);
    }
    pthread_mutex_unlock(&r->mu);
}

th_status th_run_start(const th_run_opts *o, th_run **out) {
    *out = NULL;
    th_run *r = th_calloc(1, sizeof *r);
    if (!r) return th_fail(TH_ERR_NOMEM, "run: out of memory");
    pthread_mutex_init(&r->mu, NULL);
    r->temp_c = r->temp_max_c = NAN;
    r->t0_ns = r->window_t0 = th_now_ns();
    th_status st = th_sensor_open(o->sensor && strcmp(o->sensor, "auto") != 0 ? o->sensor : NULL, &o->sense,
                                  &r->sensor);
    if (st != TH_OK) goto fail;
    r->plant = th_sensor_plant(r->sensor);
    r->origin = th_sensor_origin(r->sensor);
    th_eco_basis basis = r->origin == TH_ORIGIN_MODELED ? TH_ECO_BASIS_MODELED : TH_ECO_BASIS_MEASURED_POWER;
    th_power_integrator_init(&r->power, th_sensor_backend(r->sensor), basis);
    if (o->telemetry_path) {
        st = th_telemetry_open(o->telemetry_path, th_telemetry_format_for(o->telemetry_path), r->t0_ns, &r->log);
        if (st != TH_OK) goto fail;
    }
    th_sense_sampler_config sc = {o->hz > 0 ? o->hz : 10.0, r->sensor, r->log, on_sample, r};
    st = th_sense_sampler_start(&sc, &r->sampler);
    if (st != TH_OK) goto fail;
    *out = r;
    return TH_OK;
fail:
    th_telemetry_close(r->log);
    th_sensor_close(r->sensor);
    pthread_mutex_destroy(&r->mu);
    th_free(r);
    return st;
}

/* Publishes the duty of the window that just closed to the plant and the telemetry. */
static void close_window(th_run *r, uint64_t now) {
    double wall = (double)(now - r->window_t0);
    r->duty = wall > 0 ? r->window_busy_ns / wall : 0.0;
    if (r->duty > 1.0) r->duty = 1.0;
    if (r->plant) th_plant_set_duty(r->plant, r->duty);
    th_sense_sampler_set_pace(r->sampler, r->duty, th_threads_get());
    r->window_t0 = now;
    r->window_busy_ns = 0;
}

void th_run_unit_begin(th_run *r) {
    if (!r) return;
    uint64_t now = th_now_ns();
    if (r->unit_t0 == 0 && r->plant && r->duty == 0.0) th_plant_set_duty(r->plant, 1.0); // work starts now
    r->unit_t0 = now;
}

void th_run_unit_end(th_run *r) {
    if (!r || !r->unit_t0) return;
    uint64_t now = th_now_ns();
    r->window_busy_ns += now - r->unit_t0;
    r->unit_t0 = 0;
    if (now - r->window_t0 >= 1000000000ull) close_window(r, now);
}

void th_run_log_step(th_run *r, const th_step_record *rec) {
    if (!r || !r->log) return;
    th_telemetry_step ts = {rec->t_ns, rec->step, rec->loss, rec->grad_norm, rec->lr, rec->tokens, rec->step_ms,
                            r->duty, th_threads_get()};
    th_telemetry_add_step(r->log, &ts);
}

void th_run_figures_now(th_run *r, th_run_figures *f) {
    memset(f, 0, sizeof *f);
    pthread_mutex_lock(&r->mu);
    f->seconds = (th_now_ns() - r->t0_ns) / 1e9;
    f->temp_c = r->temp_c;
    f->temp_max_c = r->temp_max_c;
    f->samples = r->samples;
    f->failed_reads = r->failed;
    f->origin = r->origin;
    snprintf(f->sensor, sizeof f->sensor, "%s", r->source[0] ? r->source : th_sensor_backend(r->sensor));
    if (r->energy_counter && r->last_t_ns > r->first_t_ns) {
        f->have_energy = 1;
        f->energy.energy_j = (r->last_energy_uj - r->first_energy_uj) / 1e6;
        f->energy.duration_s = (r->last_t_ns - r->first_t_ns) / 1e9;
        f->energy.basis = r->origin == TH_ORIGIN_MODELED ? TH_ECO_BASIS_MODELED : TH_ECO_BASIS_MEASURED_COUNTER;
        snprintf(f->energy.source, sizeof f->energy.source, "%s", f->sensor);
    } else if (th_power_integrator_figure(&r->power, &f->energy) == TH_OK) {
        f->have_energy = 1;
    }
    pthread_mutex_unlock(&r->mu);
}

th_sensor *th_run_sensor(th_run *r) { return r->sensor; }

th_status th_run_stop(th_run *r, th_run_figures *out) {
    if (!r) return TH_OK;
    if (r->window_busy_ns > 0) close_window(r, th_now_ns()); // the duty of the last partial window
    th_status st = th_sense_sampler_stop(r->sampler);
    // one last reading closes the ledger at the end of the work, however short the run
    th_sample last;
    th_status rs = th_sensor_read(r->sensor, &last);
    on_sample(&last, rs, TH_HEALTH_OK, r);
    if (rs == TH_OK && r->log) th_telemetry_add_sample(r->log, &last, r->duty, th_threads_get());
    if (r->plant) th_plant_set_duty(r->plant, 0.0);
    if (out) th_run_figures_now(r, out);
    th_status st2 = th_telemetry_close(r->log);
    if (st == TH_OK) st = st2;
    th_sensor_close(r->sensor);
    pthread_mutex_destroy(&r->mu);
    th_free(r);
    return st;
}
