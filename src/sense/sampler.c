/* sampler.c: the sampler thread. Reads the sensor at a fixed rate on absolute
 * CLOCK_MONOTONIC deadlines (clock_nanosleep TIMER_ABSTIME, so the period does not drift
 * by the read time), asks the sensor for its health and reason, calls the callback, and
 * publishes the latest sample. It records nothing itself: the callback decides and logs,
 * so a row carries the decision made on its own sample. The work loop only ever takes a
 * mutex held for one struct copy, or reads atomics; it never waits for a sensor read. A
 * missed deadline is counted and skipped rather than caught up in a burst. Stop latency is
 * at most one period. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "sense/sense_internal.h"

struct th_sense_sampler {
    th_sense_sampler_config cfg;
    uint64_t period_ns;
    pthread_t thread;
    atomic_int stop;
    pthread_mutex_t mu;
    th_sample latest;
    th_status latest_st;
    th_sense_health latest_h;
    int have_latest;
    atomic_uint_least64_t reads, overruns;
};

static struct timespec to_ts(uint64_t ns) {
    struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
    return ts;
}

static void *sampler_main(void *arg) {
    th_sense_sampler *sp = arg;
    uint64_t next = th_now_ns();
    while (!atomic_load(&sp->stop)) {
        th_sample s;
        char why[320];
        th_status st = th_sensor_read(sp->cfg.sensor, &s);
        th_sense_health h = th_sensor_health(sp->cfg.sensor, why, sizeof why);
        atomic_fetch_add(&sp->reads, 1);
        if (sp->cfg.on_sample) sp->cfg.on_sample(&s, st, h, why, sp->cfg.user);
        pthread_mutex_lock(&sp->mu);
        sp->latest = s;
        sp->latest_st = st;
        sp->latest_h = h;
        sp->have_latest = 1;
        pthread_mutex_unlock(&sp->mu);

        next += sp->period_ns;
        uint64_t now = th_now_ns();
        if (now >= next) { /* overran: skip the missed deadlines */
            atomic_fetch_add(&sp->overruns, 1);
            next = now + sp->period_ns - (now - next) % sp->period_ns;
        }
        struct timespec ts = to_ts(next);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !atomic_load(&sp->stop)) {
        }
    }
    return NULL;
}

th_status th_sense_sampler_start(const th_sense_sampler_config *cfg, th_sense_sampler **out) {
    if (!cfg || !cfg->sensor) return th_fail(TH_ERR_INVALID, "sampler: a sensor is required");
    double hz = cfg->hz > 0 ? cfg->hz : TH_SENSE_HZ;
    if (!isfinite(hz) || hz > 10000 || hz < 0.001)
        return th_fail(TH_ERR_INVALID, "sampler: rate %g Hz is outside 0.001..10000", cfg->hz);
    th_sense_sampler *sp = th_calloc(1, sizeof *sp);
    if (!sp) return th_fail(TH_ERR_NOMEM, "sampler: out of memory");
    sp->cfg = *cfg;
    sp->cfg.hz = hz;
    sp->period_ns = (uint64_t)llround(1e9 / hz);
    pthread_mutex_init(&sp->mu, NULL);
    int e = pthread_create(&sp->thread, NULL, sampler_main, sp);
    if (e != 0) {
        pthread_mutex_destroy(&sp->mu);
        th_free(sp);
        return th_fail(TH_ERR_IO, "sampler: cannot start thread (%s)", strerror(e));
    }
    *out = sp;
    return TH_OK;
}

void th_sense_sampler_stop(th_sense_sampler *sp) {
    if (!sp) return;
    atomic_store(&sp->stop, 1);
    pthread_join(sp->thread, NULL);
    pthread_mutex_destroy(&sp->mu);
    th_free(sp);
}

int th_sense_sampler_latest(th_sense_sampler *sp, th_sample *out, th_status *st, th_sense_health *h) {
    pthread_mutex_lock(&sp->mu);
    int have = sp->have_latest;
    if (have) {
        if (out) *out = sp->latest;
        if (st) *st = sp->latest_st;
        if (h) *h = sp->latest_h;
    }
    pthread_mutex_unlock(&sp->mu);
    return have;
}

uint64_t th_sense_sampler_reads(th_sense_sampler *sp) { return atomic_load(&sp->reads); }
uint64_t th_sense_sampler_overruns(th_sense_sampler *sp) { return atomic_load(&sp->overruns); }
