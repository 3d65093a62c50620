/* pace.c: the pace actuator, shared by the control thread (publishes duty and thread cap)
 * and the work loop (brackets units of work and sleeps between them). The idle time after
 * a unit follows the kernel's idle-injection rule (Documentation/driver-api/thermal/
 * cpu-idle-cooling.rst): P_target = (t_run·P_run + t_idle·P_idle)/(t_run + t_idle), so a
 * target duty d = t_run/(t_run + t_idle) needs t_idle = t_run·(1/d − 1). Waits sleep on a
 * pipe with ppoll, so th_pace_interrupt (a signal handler may call it) ends them at once.
 * Pacing only inserts waits; it never touches the work's data (invariant 1). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "govern/govern_internal.h"

#define PACE_MIN_DUTY 0.001

struct th_pace {
    th_pace_config cfg;
    _Atomic double duty;
    _Atomic int threads;
    _Atomic int interrupted;
    _Atomic double measured;
    int pipefd[2];
    /* work-loop side only */
    uint64_t unit_start_ns, unit_end_ns, cycle_start_ns;
    int in_unit, have_cycle, have_run;
    double busy_acc, wall_acc; /* exponentially windowed busy and wall seconds */
    /* statistics: written by the work loop, read by anyone (relaxed); last_run_ns is the last
     * unit's busy time (th_pace_last_unit_s, for the control thread) */
    _Atomic uint64_t units, busy_ns, idle_ns, waits, interrupts, last_run_ns;
};

static uint64_t pace_now(const th_pace *p) { return p->cfg.now_ns ? p->cfg.now_ns(p->cfg.clock_user) : th_now_ns(); }

double th_pace_idle_s(double t_run_s, double duty) {
    if (!(t_run_s > 0)) return 0.0;
    if (!(duty < 1.0)) return 0.0; /* NaN: no pacing */
    if (duty < PACE_MIN_DUTY) duty = PACE_MIN_DUTY;
    return t_run_s * (1.0 / duty - 1.0);
}

th_pace_config th_pace_config_default(void) {
    th_pace_config c;
    memset(&c, 0, sizeof c);
    c.window_s = TH_PACE_WINDOW_S;
    c.max_slice_s = TH_PACE_MAX_SLICE_S;
    return c;
}

th_status th_pace_create(const th_pace_config *cfg, th_pace **out) {
    th_pace *p = th_calloc(1, sizeof *p);
    if (!p) return th_fail(TH_ERR_NOMEM, "pace: out of memory");
    p->cfg = cfg ? *cfg : th_pace_config_default();
    if (!(p->cfg.window_s > 0)) p->cfg.window_s = TH_PACE_WINDOW_S;
    if (!(p->cfg.max_slice_s > 0)) p->cfg.max_slice_s = TH_PACE_MAX_SLICE_S;
    if (pipe2(p->pipefd, O_NONBLOCK | O_CLOEXEC) != 0) {
        int e = errno;
        th_free(p);
        return th_fail(TH_ERR_IO, "pace: cannot create the wake-up pipe: %s", strerror(e));
    }
    atomic_init(&p->duty, 1.0);
    atomic_init(&p->threads, 0);
    atomic_init(&p->interrupted, 0);
    atomic_init(&p->measured, 1.0);
    *out = p;
    return TH_OK;
}

void th_pace_free(th_pace *p) {
    if (!p) return;
    close(p->pipefd[0]);
    close(p->pipefd[1]);
    th_free(p);
}

void th_pace_set(th_pace *p, double duty, int threads) {
    if (duty == duty) { /* NaN: keep the previous duty */
        if (duty < PACE_MIN_DUTY) duty = PACE_MIN_DUTY;
        if (duty > 1) duty = 1;
        atomic_store_explicit(&p->duty, duty, memory_order_relaxed);
    }
    atomic_store_explicit(&p->threads, threads < 0 ? 0 : threads, memory_order_relaxed);
}

double th_pace_duty(const th_pace *p) { return atomic_load_explicit(&((th_pace *)p)->duty, memory_order_relaxed); }
int th_pace_threads(const th_pace *p) { return atomic_load_explicit(&((th_pace *)p)->threads, memory_order_relaxed); }

void th_pace_interrupt(th_pace *p) {
    atomic_store(&p->interrupted, 1);
    char b = 1;
    ssize_t r = write(p->pipefd[1], &b, 1); /* full pipe: a wake-up is already pending */
    (void)r;
}

void th_pace_clear_interrupt(th_pace *p) {
    char buf[64];
    while (read(p->pipefd[0], buf, sizeof buf) > 0) {
    }
    atomic_store(&p->interrupted, 0);
}

int th_pace_interrupted(const th_pace *p) { return atomic_load(&((th_pace *)p)->interrupted); }

/* Folds one cycle (busy seconds within wall seconds) into the windowed measurement. */
static void account_cycle(th_pace *p, double busy_s, double wall_s) {
    if (!(wall_s > 0)) return;
    double w = exp(-wall_s / p->cfg.window_s);
    p->busy_acc = p->busy_acc * w + busy_s;
    p->wall_acc = p->wall_acc * w + wall_s;
    double d = p->wall_acc > 0 ? p->busy_acc / p->wall_acc : 1.0;
    if (d > 1) d = 1;
    atomic_store_explicit(&p->measured, d, memory_order_relaxed);
}

void th_pace_begin_unit(th_pace *p) {
    uint64_t now = pace_now(p);
    /* the cycle that ends here: the previous unit plus whatever followed it */
    if (p->have_cycle && p->have_run && now > p->cycle_start_ns)
        account_cycle(p, (double)p->last_run_ns / 1e9, (double)(now - p->cycle_start_ns) / 1e9);
    p->cycle_start_ns = now;
    p->unit_start_ns = now;
    p->have_cycle = 1;
    p->have_run = 0;
    p->in_unit = 1;
}

void th_pace_end_unit(th_pace *p) {
    if (!p->in_unit) return;
    uint64_t now = pace_now(p);
    p->last_run_ns = now - p->unit_start_ns;
    p->unit_end_ns = now;
    p->have_run = 1;
    p->in_unit = 0;
    atomic_fetch_add_explicit(&p->units, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->busy_ns, p->last_run_ns, memory_order_relaxed);
}

th_status th_pace_wait(th_pace *p) {
    if (atomic_load(&p->interrupted)) {
        atomic_fetch_add_explicit(&p->interrupts, 1, memory_order_relaxed);
        return th_fail(TH_ERR_INTERRUPTED, "pace: interrupted");
    }
    if (!p->have_run) return TH_OK; /* no unit measured: nothing to pace */
    double run_s = (double)p->last_run_ns / 1e9;
    uint64_t start = pace_now(p);
    int slept = 0;
    th_status st = TH_OK;
    for (;;) {
        /* the deadline follows the duty published now, so a controller that raises the
         * duty mid-wait shortens the wait */
        double idle = th_pace_idle_s(run_s, th_pace_duty(p));
        uint64_t deadline = p->unit_end_ns + (uint64_t)(idle * 1e9);
        uint64_t now = pace_now(p);
        if (now >= deadline) break;
        double left = (double)(deadline - now) / 1e9;
        if (left > p->cfg.max_slice_s) left = p->cfg.max_slice_s;
        struct timespec ts = {(time_t)left, (long)((left - floor(left)) * 1e9)};
        struct pollfd pfd = {.fd = p->pipefd[0], .events = POLLIN};
        slept = 1;
        int r = ppoll(&pfd, 1, &ts, NULL);
        if (atomic_load(&p->interrupted) || (r > 0 && (pfd.revents & POLLIN))) {
            if (atomic_load(&p->interrupted)) {
                atomic_fetch_add_explicit(&p->interrupts, 1, memory_order_relaxed);
                st = th_fail(TH_ERR_INTERRUPTED, "pace: interrupted");
                break;
            }
            char buf[64]; /* a stale wake-up byte from a cleared interrupt */
            while (read(p->pipefd[0], buf, sizeof buf) > 0) {
            }
        }
    }
    uint64_t end = pace_now(p);
    if (slept) {
        atomic_fetch_add_explicit(&p->waits, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&p->idle_ns, end - start, memory_order_relaxed);
    }
    return st;
}

double th_pace_wait_left_s(const th_pace *p) {
    if (!p->have_run) return 0.0;
    double idle = th_pace_idle_s((double)p->last_run_ns / 1e9, th_pace_duty(p));
    uint64_t deadline = p->unit_end_ns + (uint64_t)(idle * 1e9), now = pace_now(p);
    return now >= deadline ? 0.0 : (double)(deadline - now) / 1e9;
}

double th_pace_last_unit_s(const th_pace *p) {
    return (double)atomic_load_explicit(&((th_pace *)p)->last_run_ns, memory_order_relaxed) / 1e9;
}

double th_pace_measured_duty(const th_pace *p) {
    return atomic_load_explicit(&((th_pace *)p)->measured, memory_order_relaxed);
}

void th_pace_get_stats(const th_pace *p, th_pace_stats *out) {
    th_pace *q = (th_pace *)p;
    out->units = atomic_load_explicit(&q->units, memory_order_relaxed);
    out->busy_ns = atomic_load_explicit(&q->busy_ns, memory_order_relaxed);
    out->idle_ns = atomic_load_explicit(&q->idle_ns, memory_order_relaxed);
    out->waits = atomic_load_explicit(&q->waits, memory_order_relaxed);
    out->interrupts = atomic_load_explicit(&q->interrupts, memory_order_relaxed);
}
