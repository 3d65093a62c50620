/* run.c: a monitored, governed run. Opens the sensor (real hardware where found, else the
 * simulated plant, labelled modeled), samples it on its own thread into the telemetry log,
 * lets the governor decide a duty from every sample and publishes it to the pace, which
 * inserts idle time between the work loop's units. Keeps the energy ledger (counter
 * difference, else integrated power; modeled for the plant). The plant is driven by the
 * duty the pace measures: it heats only while the work loop actually works. */
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
    th_pace *pace;
    th_governor *gov; /* NULL with a fixed duty */
    uint64_t t0_ns;
    double limit_c;
    char governor[32];

    /* written by the sampler thread, read under the mutex */
    pthread_mutex_t mu;
    int have_first;
    uint64_t first_energy_uj, last_energy_uj, first_t_ns, last_t_ns, prev_sample_ns, first_read_ns;
    int energy_counter; /* samples carry an energy counter */
    th_power_integrator power, model; /* measured (or plant) power; the CPU power model */
    double cpu_tdp_w;
    double temp_c, temp_max_c, above_limit_s;
    uint64_t samples, failed, fail_safe;
    char source[96], gov_status[160];
    th_origin origin;
};

th_run_opts th_run_opts_default(void) {
    th_run_opts o;
    memset(&o, 0, sizeof o);
    o.sense = th_sense_config_default();
    o.hz = 10.0;
    o.temp_limit_c = NAN;
    o.fixed_duty = NAN;
    return o;
}

static void on_sample(const th_sample *s, th_status st, th_sense_health h, const char *why, void *user) {
    th_run *r = user;
    th_telemetry_pace pace = {th_pace_duty(r->pace), th_pace_measured_duty(r->pace), th_threads_get()};
    // the governor decides on every reading, good or bad: a bad one gets the fail-safe duty
    if (r->gov) {
        th_gov_input in = {st == TH_OK ? s : NULL, st, h, why};
        th_gov_output out;
        double dt = r->prev_sample_ns && s->t_ns > r->prev_sample_ns ? (s->t_ns - r->prev_sample_ns) / 1e9 : 0.0;
        th_governor_decide(r->gov, &in, dt, &out);
        th_pace_set(r->pace, out.duty, out.threads);
        pace.duty_set = out.duty; // the row records the decision made on its own sample
        if (out.entered_fail_safe) th_log(TH_LOG_WARN, "governor %s: %s", r->governor, th_governor_status(r->gov));
        if (out.left_fail_safe) th_log(TH_LOG_INFO, "governor %s: sensor healthy again, leaving fail-safe", r->governor);
        pthread_mutex_lock(&r->mu);
        r->fail_safe += out.fail_safe != 0;
        snprintf(r->gov_status, sizeof r->gov_status, "%s", th_governor_status(r->gov));
        pthread_mutex_unlock(&r->mu);
    }
    if (r->log && s->valid) th_telemetry_add_sample(r->log, s, h, &pace); // a read with nothing valid leaves no row
    pthread_mutex_lock(&r->mu);
    if (st != TH_OK) {
        r->failed++;
        pthread_mutex_unlock(&r->mu);
        return;
    }
    double dt = r->prev_sample_ns && s->t_ns > r->prev_sample_ns ? (s->t_ns - r->prev_sample_ns) / 1e9 : 0.0;
    r->prev_sample_ns = s->t_ns;
    if (!r->first_read_ns) r->first_read_ns = s->t_ns;
    r->samples++;
    snprintf(r->source, sizeof r->source, "%s", s->source);
    r->origin = s->origin;
    if (s->valid & TH_SAMPLE_TEMP) {
        r->temp_c = s->temp_mc / 1000.0;
        if (!(r->temp_c <= r->temp_max_c)) r->temp_max_c = r->temp_c;
        if (r->temp_c > r->limit_c) r->above_limit_s += dt;
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
    } else if ((s->valid & TH_SAMPLE_UTIL) && r->cpu_tdp_w > 0) {
        uint64_t p_uw;
        if (th_cpu_model_power_uw(r->cpu_tdp_w, s->util, &p_uw) == TH_OK) {
            // utilization needs two reads; hold the first value back to the run's first reading
            if (r->model.samples == 0 && r->first_read_ns && r->first_read_ns < s->t_ns)
                th_power_integrator_add(&r->model, r->first_read_ns, p_uw);
            th_power_integrator_add(&r->model, s->t_ns, p_uw);
        }
    }
    pthread_mutex_unlock(&r->mu);
}

/* The limit when none is given: the device's max operating temperature − 2 °C, else its
 * slowdown − 5 °C, else its shutdown − 10 °C, else 80 °C. */
static double default_limit_c(th_sensor *s) {
    th_plant *pl = th_sensor_plant(s);
    if (pl) return th_gov_default_limit_c(th_plant_profile(pl));
    th_sense_limits lim;
    if (th_sensor_limits(s, &lim) == TH_OK) {
        if (lim.max_operating_mc > 0) return lim.max_operating_mc / 1000.0 - 2.0;
        if (lim.slowdown_mc > 0) return lim.slowdown_mc / 1000.0 - 5.0;
        if (lim.shutdown_mc > 0) return lim.shutdown_mc / 1000.0 - 10.0;
    }
    return 80.0;
}

static void run_free(th_run *r) {
    th_governor_free(r->gov);
    th_pace_free(r->pace);
    th_telemetry_close(r->log);
    th_sensor_close(r->sensor);
    pthread_mutex_destroy(&r->mu);
    th_free(r);
}

th_status th_run_start(const th_run_opts *o, th_run **out) {
    *out = NULL;
    if (!isnan(o->fixed_duty) && !(o->fixed_duty > 0.0 && o->fixed_duty <= 1.0))
        return th_fail(TH_ERR_INVALID, "--duty %g must be in (0, 1]", o->fixed_duty);
    th_run *r = th_calloc(1, sizeof *r);
    if (!r) return th_fail(TH_ERR_NOMEM, "run: out of memory");
    pthread_mutex_init(&r->mu, NULL);
    r->temp_c = r->temp_max_c = NAN;
    r->t0_ns = th_now_ns();
    th_status st = th_sensor_open(o->sensor && strcmp(o->sensor, "auto") != 0 ? o->sensor : NULL, &o->sense,
                                  &r->sensor);
    if (st != TH_OK) goto fail;
    r->plant = th_sensor_plant(r->sensor);
    r->origin = th_sensor_origin(r->sensor);
    r->limit_c = isnan(o->temp_limit_c) ? default_limit_c(r->sensor) : o->temp_limit_c;
    th_eco_basis basis = r->origin != TH_ORIGIN_MEASURED ? TH_ECO_BASIS_MODELED : TH_ECO_BASIS_MEASURED_POWER;
    th_power_integrator_init(&r->power, th_sensor_backend(r->sensor), basis);
    r->cpu_tdp_w = o->cpu_tdp_w;
    char model_src[128];
    snprintf(model_src, sizeof model_src, "cpu model: TDP %g W x (0.1 + 0.9 u^3), u from %s", o->cpu_tdp_w,
             th_sensor_backend(r->sensor));
    th_power_integrator_init(&r->model, model_src, TH_ECO_BASIS_MODELED);

    th_pace_config pc = th_pace_config_default();
    if ((st = th_pace_create(&pc, &r->pace)) != TH_OK) goto fail;
    if (!isnan(o->fixed_duty)) {
        th_pace_set(r->pace, o->fixed_duty, 0);
        snprintf(r->governor, sizeof r->governor, "fixed");
    } else {
        const char *name = o->governor ? o->governor : "predictive";
        th_gov_config gc = th_gov_config_default(r->limit_c);
        if (r->plant) th_gov_config_set_plant(&gc, th_plant_profile(r->plant));
        if ((st = th_governor_create(name, &gc, &r->gov)) != TH_OK) goto fail;
        snprintf(r->governor, sizeof r->governor, "%s", name);
    }
    if (o->telemetry_path) {
        st = th_telemetry_open(o->telemetry_path, th_telemetry_format_for(o->telemetry_path), r->t0_ns, &r->log);
        if (st != TH_OK) goto fail;
    }
    // a first reading before the work starts: it opens the ledger and primes counters that need
    // two reads (utilization from /proc/stat), so even a run shorter than one sampling period
    // has an energy figure from its last reading
    th_sample first;
    th_status fs = th_sensor_read(r->sensor, &first);
    on_sample(&first, fs, TH_HEALTH_OK, "", r);
    th_sense_sampler_config sc = {o->hz > 0 ? o->hz : TH_SENSE_HZ, r->sensor, on_sample, r};
    if ((st = th_sense_sampler_start(&sc, &r->sampler)) != TH_OK) goto fail;
    *out = r;
    return TH_OK;
fail:
    run_free(r);
    return st;
}

void th_run_unit_begin(th_run *r) {
    if (!r) return;
    th_pace_begin_unit(r->pace);
    // the pace has just measured the cycle that ended here: the plant heats at that duty
    if (r->plant) th_plant_set_duty(r->plant, th_pace_measured_duty(r->pace));
}

th_status th_run_unit_end(th_run *r) {
    if (!r) return TH_OK;
    th_pace_end_unit(r->pace);
    return th_pace_wait(r->pace);
}

void th_run_interrupt(th_run *r) {
    if (r) th_pace_interrupt(r->pace);
}

void th_run_log_step(th_run *r, const th_step_record *rec) {
    if (!r || !r->log) return;
    th_telemetry_unit u = {TH_UNIT_STEP, rec->t_ns, rec->step, rec->loss, rec->grad_norm, rec->lr, rec->tokens,
                           rec->step_ms, NAN,
                           {th_pace_duty(r->pace), th_pace_measured_duty(r->pace), th_threads_get()},
                           th_sensor_origin(r->sensor)};
    th_telemetry_add_unit(r->log, &u);
}

void th_run_figures_now(th_run *r, th_run_figures *f) {
    memset(f, 0, sizeof *f);
    th_pace_stats ps;
    th_pace_get_stats(r->pace, &ps);
    f->busy_s = ps.busy_ns / 1e9;
    f->idle_s = ps.idle_ns / 1e9;
    f->limit_c = r->limit_c;
    snprintf(f->governor, sizeof f->governor, "%s", r->governor);
    pthread_mutex_lock(&r->mu);
    f->seconds = (th_now_ns() - r->t0_ns) / 1e9;
    f->temp_c = r->temp_c;
    f->temp_max_c = r->temp_max_c;
    f->above_limit_s = r->above_limit_s;
    f->samples = r->samples;
    f->failed_reads = r->failed;
    f->fail_safe_decisions = r->fail_safe;
    f->origin = r->origin;
    snprintf(f->governor_status, sizeof f->governor_status, "%s", r->gov_status);
    snprintf(f->sensor, sizeof f->sensor, "%s", r->source[0] ? r->source : th_sensor_backend(r->sensor));
    if (r->energy_counter && r->last_t_ns > r->first_t_ns) {
        f->have_energy = 1;
        f->energy.energy_j = (r->last_energy_uj - r->first_energy_uj) / 1e6;
        f->energy.duration_s = (r->last_t_ns - r->first_t_ns) / 1e9;
        f->energy.basis = r->origin != TH_ORIGIN_MEASURED ? TH_ECO_BASIS_MODELED : TH_ECO_BASIS_MEASURED_COUNTER;
        snprintf(f->energy.source, sizeof f->energy.source, "%s", f->sensor);
    } else if (th_power_integrator_figure(&r->power, &f->energy) == TH_OK ||
               th_power_integrator_figure(&r->model, &f->energy) == TH_OK) {
        f->have_energy = 1; // measured power first, the CPU power model last
    }
    pthread_mutex_unlock(&r->mu);
}

th_sensor *th_run_sensor(th_run *r) { return r->sensor; }

th_status th_run_stop(th_run *r, th_run_figures *out) {
    if (!r) return TH_OK;
    th_sense_sampler_stop(r->sampler);
    r->sampler = NULL;
    // one last reading closes the ledger at the end of the work, however short the run
    th_sample last;
    th_status rs = th_sensor_read(r->sensor, &last);
    th_governor *gov = r->gov;
    r->gov = NULL; // the last reading is for the ledger only
    on_sample(&last, rs, TH_HEALTH_OK, "", r);
    r->gov = gov;
    if (r->plant) th_plant_set_duty(r->plant, 0.0);
    if (out) th_run_figures_now(r, out);
    th_status st = th_telemetry_close(r->log);
    r->log = NULL;
    run_free(r);
    return st;
}
