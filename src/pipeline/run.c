/* run.c: a monitored, governed run. One direction through it, on every sample the sampler
 * thread reads:
 *
 *   sensor -> sample -> control_step: the governor decides, the pace publishes the duty
 *                    -> record:       one telemetry row with that very decision
 *                    -> account:      the eco ledger (energy) and the thermal figures
 *
 * and on the work loop's side: unit_begin (apply the thread cap; the simulated plant heats
 * at full duty) -> the unit's work -> unit_end (the plant's duty drops to 0; wait as the
 * pace says; charge the unit its energy from the ledger, priced once per run) -> log the
 * unit's record.
 * Real hardware is read where found, else the simulated plant, labelled modeled. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "thermo/pipeline.h"

struct th_run {
    th_sensor *sensor;
    th_plant *plant;     /* NULL unless the sensor is the simulated plant */
    th_sensor *util;     /* /proc/stat, when the plant follows this machine's utilization */
    th_telemetry *log;
    th_sense_sampler *sampler;
    th_pace *pace;
    th_governor *gov;    /* NULL with a fixed duty */
    th_eco_ledger *ledger;
    th_eco_price price;  /* 0 without factors */
    uint64_t t0_ns;
    double limit_c;
    double plant_start_c; /* the simulated plant's temperature at the start (the pacing bound's) */
    char governor[32];
    th_origin origin;

    /* work loop's side */
    double charged_j;    /* energy charged to units so far */
    _Atomic double grad_norm; /* the latest step's gradient norm, for the governor's feed-forward (0: none) */

    /* sampler thread's side, read under the mutex */
    pthread_mutex_t mu;
    uint64_t prev_sample_ns;
    double temp_c, temp_max_c, above_limit_s, first_temp_c, first_temp_t_s;
    uint64_t samples, failed, fail_safe;
    char source[96], gov_status[160], feed_forward[120];
};

th_run_opts th_run_opts_default(void) {
    th_run_opts o;
    memset(&o, 0, sizeof o);
    o.sense = th_sense_config_default();
    o.hz = TH_SENSE_HZ;
    o.temp_limit_c = NAN;
    o.gov_margin_c = NAN;
    o.fixed_duty = NAN;
    return o;
}

/* The governor's decision on this sample, published to the pace. Returns the duty set. */
static double control_step(th_run *r, const th_sample *s, th_status st, th_sense_health h, const char *why) {
    if (!r->gov) return th_pace_duty(r->pace);
    th_gov_input in = {st == TH_OK ? s : NULL, st, h, why, atomic_load(&r->grad_norm), th_pace_last_unit_s(r->pace)};
    th_gov_output out;
    double dt = r->prev_sample_ns && s->t_ns > r->prev_sample_ns ? (s->t_ns - r->prev_sample_ns) / 1e9 : 0.0;
    th_governor_decide(r->gov, &in, dt, &out); // bad readings get the fail-safe duty
    th_pace_set(r->pace, out.duty, out.threads);
    if (out.entered_fail_safe) th_log(TH_LOG_WARN, "governor %s: %s", r->governor, th_governor_status(r->gov));
    if (out.left_fail_safe) th_log(TH_LOG_INFO, "governor %s: sensor healthy again, leaving fail-safe", r->governor);
    pthread_mutex_lock(&r->mu);
    r->fail_safe += out.fail_safe != 0;
    snprintf(r->gov_status, sizeof r->gov_status, "%s", th_governor_status(r->gov));
    pthread_mutex_unlock(&r->mu);
    return out.duty;
}

/* The sample's row in the telemetry log, with the decision made on it. */
static void record(th_run *r, const th_sample *s, th_sense_health h, double duty_set) {
    if (!r->log || !s->valid) return; // a read with nothing valid leaves no row
    th_telemetry_pace pace = {duty_set, th_pace_measured_duty(r->pace), th_threads_get()};
    th_telemetry_add_sample(r->log, s, h, &pace);
}

/* The ledger and the thermal figures. */
static void account(th_run *r, const th_sample *s, th_status st) {
    if (st != TH_OK) {
        pthread_mutex_lock(&r->mu);
        r->failed++;
        pthread_mutex_unlock(&r->mu);
        return;
    }
    th_eco_ledger_add(r->ledger, s);
    pthread_mutex_lock(&r->mu);
    double dt = r->prev_sample_ns && s->t_ns > r->prev_sample_ns ? (s->t_ns - r->prev_sample_ns) / 1e9 : 0.0;
    r->prev_sample_ns = s->t_ns;
    r->samples++;
    snprintf(r->source, sizeof r->source, "%s", s->source);
    if (s->valid & TH_SAMPLE_TEMP) {
        r->temp_c = s->temp_mc / 1000.0;
        if (isnan(r->first_temp_c)) {
            r->first_temp_c = r->temp_c;
            r->first_temp_t_s = s->t_ns > r->t0_ns ? (s->t_ns - r->t0_ns) / 1e9 : 0.0;
        }
        if (!(r->temp_c <= r->temp_max_c)) r->temp_max_c = r->temp_c;
        if (r->temp_c > r->limit_c) r->above_limit_s += dt;
    }
    pthread_mutex_unlock(&r->mu);
}

/* A plant that follows this machine's measured CPU utilization (thermo monitor): its duty
 * is the utilization /proc/stat reports, read on the sampler thread before each sample. */
static void follow_utilization(th_run *r) {
    th_sample u;
    if (r->util && th_sensor_read(r->util, &u) == TH_OK && (u.valid & TH_SAMPLE_UTIL)) th_plant_set_duty(r->plant, u.util);
}

static void on_sample(const th_sample *s, th_status st, th_sense_health h, const char *why, void *user) {
    th_run *r = user;
    if (r->util) follow_utilization(r);
    double duty_set = control_step(r, s, st, h, why);
    record(r, s, h, duty_set);
    account(r, s, st);
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
    th_eco_ledger_free(r->ledger);
    th_sensor_close(r->util);
    th_sensor_close(r->sensor);
    pthread_mutex_destroy(&r->mu);
    th_free(r);
}

/* The gradient-norm feed-forward from a coupling analysis: a missing or unreadable file turns
 * it off and says so in the note (never on blind); a file that is malformed or records another
 * machine's profile is refused, naming the field. */
static th_status set_coupling(const char *path, const th_run *r, th_gov_config *gc) {
    if (!path) return TH_OK;
    th_gov_coupling k;
    const char *profile = r->plant ? th_plant_profile(r->plant)->name : NULL;
    th_status st = th_gov_coupling_load(path, profile, &k);
    if (st == TH_ERR_IO) {
        th_gov_config_set_coupling(gc, NULL);
        snprintf(gc->ff_note, sizeof gc->ff_note, "feed-forward off: coupling file %s cannot be read", path);
        return TH_OK;
    }
    if (st != TH_OK) return st;
    th_gov_config_set_coupling(gc, &k);
    return TH_OK;
}

th_status th_run_start(const th_run_opts *o, th_run **out) {
    *out = NULL;
    if (!isnan(o->fixed_duty) && !(o->fixed_duty > 0.0 && o->fixed_duty <= 1.0))
        return th_fail(TH_ERR_INVALID, "--duty %g must be in (0, 1]", o->fixed_duty);
    th_run *r = th_calloc(1, sizeof *r);
    if (!r) return th_fail(TH_ERR_NOMEM, "run: out of memory");
    pthread_mutex_init(&r->mu, NULL);
    r->temp_c = r->temp_max_c = r->first_temp_c = NAN;
    r->t0_ns = th_now_ns();
    th_status st = th_sensor_open(o->sensor && strcmp(o->sensor, "auto") != 0 ? o->sensor : NULL, &o->sense,
                                  &r->sensor);
    if (st != TH_OK) goto fail;
    r->plant = th_sensor_plant(r->sensor);
    r->plant_start_c = r->plant ? th_plant_temp_c(r->plant) : NAN;
    r->origin = th_sensor_origin(r->sensor);
    r->limit_c = isnan(o->temp_limit_c) ? default_limit_c(r->sensor) : o->temp_limit_c;
    th_eco_ledger_config lc = {NULL, r->origin, o->cpu_tdp_w}; // figures named after the samples' source
    if ((st = th_eco_ledger_create(&lc, &r->ledger)) != TH_OK) goto fail;
    if (o->factors && (st = th_eco_price_of(o->factors, &r->price)) != TH_OK) goto fail;
    if (o->drive_plant_from_util && r->plant && th_sensor_open("procstat", &o->sense, &r->util) != TH_OK)
        r->util = NULL; // no /proc/stat: the plant stays idle, and says so through its readings
    th_pace_config pc = th_pace_config_default();
    if ((st = th_pace_create(&pc, &r->pace)) != TH_OK) goto fail;
    if (!isnan(o->fixed_duty)) {
        th_pace_set(r->pace, o->fixed_duty, 0);
        snprintf(r->governor, sizeof r->governor, "fixed");
    } else {
        const char *name = o->governor ? o->governor : "predictive";
        th_gov_config gc = th_gov_config_default(r->limit_c);
        gc.max_threads = o->max_threads;
        if (!isnan(o->gov_margin_c)) gc.margin_c = o->gov_margin_c;
        if (r->plant) th_gov_config_set_plant(&gc, th_plant_profile(r->plant));
        if ((st = set_coupling(o->coupling_path, r, &gc)) != TH_OK) goto fail;
        if (strcmp(name, "predictive") == 0) snprintf(r->feed_forward, sizeof r->feed_forward, "%s", gc.ff_note);
        if ((st = th_governor_create(name, &gc, &r->gov)) != TH_OK) goto fail;
        snprintf(r->governor, sizeof r->governor, "%s", name);
    }
    if (o->telemetry_path &&
        (st = th_telemetry_open(o->telemetry_path, th_telemetry_format_for(o->telemetry_path), r->t0_ns, &r->log)) !=
            TH_OK)
        goto fail;
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
    // the governor's thread cap (0: none). With a backend whose sums depend on the thread
    // count (blas), a cap changes the numerics: governors publish none by default.
    int cap = th_pace_threads(r->pace);
    if (cap > 0 && cap != th_threads_get()) th_threads_set(cap);
    th_pace_begin_unit(r->pace);
    // the simulated plant heats while the unit works and cools while the pace waits
    if (r->plant && !r->util) th_plant_set_duty_at(r->plant, 1.0, th_sensor_now(r->sensor));
}

th_status th_run_unit_end(th_run *r, th_unit_cost *cost) {
    if (cost) memset(cost, 0, sizeof *cost);
    if (!r) return TH_OK;
    th_pace_stats before, after;
    th_pace_get_stats(r->pace, &before);
    th_pace_end_unit(r->pace);
    if (r->plant && !r->util) th_plant_set_duty_at(r->plant, 0.0, th_sensor_now(r->sensor));
    th_status st = th_pace_wait(r->pace);
    th_pace_get_stats(r->pace, &after);
    // units tile the run: each is charged the ledger's energy since the previous one ended
    double e = th_eco_ledger_energy_at(r->ledger, th_now_ns());
    double charge = e > r->charged_j ? e - r->charged_j : 0.0;
    r->charged_j += charge;
    if (cost) {
        cost->busy_s = (after.busy_ns - before.busy_ns) / 1e9;
        cost->idle_s = (after.idle_ns - before.idle_ns) / 1e9;
        cost->energy_j = charge;
        cost->co2e_g = charge * r->price.g_co2e_per_j;
        cost->water_ml = charge * r->price.ml_water_per_j;
    }
    return st;
}

void th_unit_cost_add(th_unit_cost *sum, const th_unit_cost *c) {
    sum->busy_s += c->busy_s;
    sum->idle_s += c->idle_s;
    sum->energy_j += c->energy_j;
    sum->co2e_g += c->co2e_g;
    sum->water_ml += c->water_ml;
}

void th_run_interrupt(th_run *r) {
    if (r) th_pace_interrupt(r->pace);
}

static void log_unit(th_run *r, th_telemetry_unit *u) {
    u->pace = (th_telemetry_pace){th_pace_duty(r->pace), th_pace_measured_duty(r->pace), th_threads_get()};
    u->origin = r->origin;
    th_telemetry_add_unit(r->log, u);
}

void th_run_log_step(th_run *r, const th_step_record *rec, const th_unit_cost *cost) {
    if (r && isfinite(rec->grad_norm) && rec->grad_norm > 0) atomic_store(&r->grad_norm, rec->grad_norm);
    if (!r || !r->log) return;
    th_telemetry_unit u = {TH_UNIT_STEP, rec->t_ns, rec->step, rec->loss, rec->grad_norm, rec->lr, rec->tokens,
                           rec->step_ms, cost ? cost->energy_j : NAN, {0, 0, 0}, r->origin};
    log_unit(r, &u);
}

void th_run_log_token(th_run *r, long index, long tokens, double ms, const th_unit_cost *cost) {
    if (!r || !r->log) return;
    th_telemetry_unit u = {TH_UNIT_TOKEN, th_now_ns(), index, NAN, NAN, NAN, tokens, ms,
                           cost ? cost->energy_j : NAN, {0, 0, 0}, r->origin};
    log_unit(r, &u);
}

void th_run_figures_now(th_run *r, th_run_figures *f) {
    memset(f, 0, sizeof *f);
    th_pace_stats ps;
    th_pace_get_stats(r->pace, &ps);
    f->busy_s = ps.busy_ns / 1e9;
    f->idle_s = ps.idle_ns / 1e9;
    f->limit_c = r->limit_c;
    f->origin = r->origin;
    snprintf(f->origin_name, sizeof f->origin_name, "%s", th_origin_name(r->origin));
    snprintf(f->governor, sizeof f->governor, "%s", r->governor);
    pthread_mutex_lock(&r->mu);
    f->seconds = (th_now_ns() - r->t0_ns) / 1e9;
    f->temp_c = r->temp_c;
    f->temp_max_c = r->temp_max_c;
    f->above_limit_s = r->above_limit_s;
    f->samples = r->samples;
    f->failed_reads = r->failed;
    f->fail_safe_decisions = r->fail_safe;
    snprintf(f->governor_status, sizeof f->governor_status, "%s", r->gov_status);
    snprintf(f->feed_forward, sizeof f->feed_forward, "%s", r->feed_forward);
    snprintf(f->sensor, sizeof f->sensor, "%s", r->source[0] ? r->source : th_sensor_backend(r->sensor));
    double first_temp_c = r->first_temp_c, first_temp_t_s = r->first_temp_t_s;
    pthread_mutex_unlock(&r->mu);
    f->have_energy = th_eco_ledger_figure(r->ledger, &f->energy) == TH_OK;
    f->necessary_idle_s = NAN;
    if (r->plant) {
        const th_thermal_profile *p = th_plant_profile(r->plant);
        double other_s = fmax(0.0, f->seconds - f->busy_s - f->idle_s);
        if (th_gov_necessary_idle(p, r->limit_c, r->plant_start_c, f->busy_s, other_s, &f->necessary_idle_s) != TH_OK)
            f->necessary_idle_s = NAN;
        f->ambient_c = p->t_ambient_c;
        snprintf(f->ambient_how, sizeof f->ambient_how, "simulated plant profile");
        snprintf(f->profile, sizeof f->profile, "%s", p->name);
    } else {
        f->ambient_c = first_temp_c;
        snprintf(f->ambient_how, sizeof f->ambient_how, "first sensor sample (t %.2f s)", first_temp_t_s);
    }
    if (f->have_energy) {
        f->co2e_g = f->energy.energy_j * r->price.g_co2e_per_j;
        f->water_ml = f->energy.energy_j * r->price.ml_water_per_j;
    }
}

th_sensor *th_run_sensor(th_run *r) { return r->sensor; }

th_status th_run_stop(th_run *r, th_run_figures *out) {
    if (!r) return TH_OK;
    th_sense_sampler_stop(r->sampler);
    r->sampler = NULL;
    // one last reading closes the ledger at the end of the work, however short the run; it
    // is recorded and accounted, not decided on: the work is over
    th_sample last;
    th_status rs = th_sensor_read(r->sensor, &last);
    th_sense_health h = th_sensor_health(r->sensor, NULL, 0);
    record(r, &last, h, th_pace_duty(r->pace));
    account(r, &last, rs);
    if (r->plant) th_plant_set_duty_at(r->plant, 0.0, th_sensor_now(r->sensor));
    if (out) th_run_figures_now(r, out);
    th_status st = th_telemetry_close(r->log);
    r->log = NULL;
    run_free(r);
    return st;
}
