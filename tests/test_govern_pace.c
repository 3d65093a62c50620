/* test_govern_pace.c: the pace actuator, checked on what is deterministic: the
 * idle-injection arithmetic, the wait's deadline and the measured-duty bookkeeping on a
 * recorded clock (no timing), interruption by status (before and during a wait, from a
 * thread and from a signal handler). Real sleeps are checked only as loose lower bounds
 * (a wait never ends early), which a loaded machine cannot break. */
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"
#include "thermo/govern.h"

/* The recorded clock: tests set it; the pace reads it. */
static uint64_t fake_ns;
static uint64_t fake_now(void *user) {
    (void)user;
    return fake_ns;
}

static th_pace *fake_pace(void) {
    th_pace_config c = th_pace_config_default();
    c.now_ns = fake_now;
    th_pace *p = NULL;
    CHECK(th_pace_create(&c, &p) == TH_OK, "create");
    return p;
}

/* One unit on the recorded clock: begins at t0, runs run_ms. */
static void unit_at(th_pace *p, double t0_ms, double run_ms) {
    fake_ns = (uint64_t)(t0_ms * 1e6);
    th_pace_begin_unit(p);
    fake_ns = (uint64_t)((t0_ms + run_ms) * 1e6);
    th_pace_end_unit(p);
}

static void test_arithmetic(void) {
    CHECK(fabs(th_pace_idle_s(0.010, 0.5) - 0.010) < 1e-15, "10 ms at 0.5: %g", th_pace_idle_s(0.010, 0.5));
    CHECK(fabs(th_pace_idle_s(0.020, 0.25) - 0.060) < 1e-15, "20 ms at 0.25: %g", th_pace_idle_s(0.020, 0.25));
    CHECK(th_pace_idle_s(0.5, 1.0) == 0.0, "full duty: no idle");
    CHECK(th_pace_idle_s(0.5, NAN) == 0.0, "NaN duty: no idle");
    CHECK(th_pace_idle_s(0.0, 0.5) == 0.0, "no run: no idle");
    CHECK(fabs(th_pace_idle_s(1.0, 0.0) - 999.0) < 1e-9, "duty 0 clamps to 0.001: %g", th_pace_idle_s(1.0, 0.0));
    /* the kernel's form: P_target = (t_run·P_run + t_idle·P_idle)/(t_run + t_idle) */
    double prun = 300, pidle = 50, ptarget = 175, trun = 0.04;
    double d = (ptarget - pidle) / (prun - pidle); /* duty that averages to P_target */
    double tidle = th_pace_idle_s(trun, d);
    CHECK(fabs((trun * prun + tidle * pidle) / (trun + tidle) - ptarget) < 1e-9, "average power hits the target");
}

/* The wait's deadline on the recorded clock: a 10 ms unit at duty 0.5 owes 10 ms of idle,
 * less what has passed; a duty raised mid-wait shortens it; duty 1 owes nothing. */
static void test_deadline(void) {
    th_pace *p = fake_pace();
    if (!p) return;
    th_pace_set(p, 0.5, 2);
    CHECK(th_pace_duty(p) == 0.5 && th_pace_threads(p) == 2, "published");
    CHECK(th_pace_wait_left_s(p) == 0.0, "no unit yet: nothing owed");
    unit_at(p, 100, 10);
    CHECK(fabs(th_pace_wait_left_s(p) - 0.010) < 1e-9, "10 ms unit at 0.5: 10 ms owed, %g", th_pace_wait_left_s(p));
    fake_ns += 4000000; /* 4 ms later */
    CHECK(fabs(th_pace_wait_left_s(p) - 0.006) < 1e-9, "4 ms later: 6 ms left, %g", th_pace_wait_left_s(p));
    th_pace_set(p, 0.8, 2); /* 10 ms at 0.8 owes 2.5 ms, already served */
    CHECK(th_pace_wait_left_s(p) == 0.0, "duty raised to 0.8: nothing left, %g", th_pace_wait_left_s(p));
    th_pace_set(p, 0.25, 2);
    CHECK(fabs(th_pace_wait_left_s(p) - 0.026) < 1e-9, "duty 0.25: 30 ms owed, 26 ms left, %g",
          th_pace_wait_left_s(p));
    fake_ns += 26000000; /* past the deadline: the wait returns without sleeping */
    CHECK(th_pace_wait(p) == TH_OK, "wait past the deadline");
    th_pace_stats st;
    th_pace_get_stats(p, &st);
    CHECK(st.units == 1 && st.waits == 0 && st.idle_ns == 0 && st.busy_ns == 10000000ull,
          "stats: %llu units, %llu waits, %llu ns idle, %llu ns busy", (unsigned long long)st.units,
          (unsigned long long)st.waits, (unsigned long long)st.idle_ns, (unsigned long long)st.busy_ns);
    th_pace_set(p, 1.0, 0);
    unit_at(p, 200, 5);
    CHECK(th_pace_wait_left_s(p) == 0.0, "duty 1 never owes a wait");
    th_pace_free(p);
}

/* The measured duty is busy / wall over whole cycles, windowed: cycles of 10 ms busy in
 * 40 ms measure 0.25 exactly; a change of rhythm moves it towards the new ratio. */
static void test_measured_duty(void) {
    th_pace *p = fake_pace();
    if (!p) return;
    CHECK(th_pace_measured_duty(p) == 1.0, "1 before any unit");
    for (int i = 0; i < 20; i++) unit_at(p, 40.0 * i, 10);
    fake_ns = (uint64_t)(40.0 * 20 * 1e6);
    th_pace_begin_unit(p); /* closes the last cycle */
    double d = th_pace_measured_duty(p);
    CHECK(fabs(d - 0.25) < 1e-9, "10 ms in 40 ms cycles: 0.25, %.12f", d);
    th_pace_end_unit(p);
    /* from here, 10 ms busy in 20 ms cycles for 2 s (one window): most of the way to 0.5 */
    double t = 40.0 * 20 + 0.0;
    for (int i = 0; i < 100; i++) unit_at(p, t + 20.0 * i, 10);
    fake_ns = (uint64_t)((t + 2000) * 1e6);
    th_pace_begin_unit(p);
    d = th_pace_measured_duty(p);
    CHECK(d > 0.40 && d < 0.5, "one window into 0.5 cycles: %.4f, between 0.40 and 0.5", d);
    th_pace_free(p);
}

/* Real sleeps, as lower bounds only: a wait never ends before its idle time. */
static void test_real_wait_lower_bound(void) {
    th_pace *p = NULL;
    CHECK(th_pace_create(NULL, &p) == TH_OK, "create");
    if (!p) return;
    th_pace_set(p, 0.5, 0);
    th_pace_begin_unit(p);
    struct timespec ts = {0, 5000000};
    nanosleep(&ts, NULL); /* a unit of at least 5 ms */
    th_pace_end_unit(p);
    uint64_t t0 = th_now_ns();
    CHECK(th_pace_wait(p) == TH_OK, "wait");
    th_pace_stats st;
    th_pace_get_stats(p, &st);
    double run_ms = st.busy_ns / 1e6, waited_ms = (th_now_ns() - t0) / 1e6;
    CHECK(waited_ms >= 0.95 * run_ms - 0.1, "the wait (%.2f ms) is not shorter than the unit's idle (%.2f ms)", waited_ms,
          run_ms);
    th_pace_free(p);
}

typedef struct {
    th_pace *p;
    int mode; /* 0: raise duty, 1: interrupt, 2: signal */
} poke;

static void *poker(void *arg) {
    poke *k = arg;
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
    if (k->mode == 0) th_pace_set(k->p, 1.0, 0);
    if (k->mode == 1) th_pace_interrupt(k->p);
    if (k->mode == 2) kill(getpid(), SIGUSR1);
    return NULL;
}

static th_pace *g_sig_pace;
static void on_sigusr1(int sig) {
    (void)sig;
    th_pace_interrupt(g_sig_pace);
}

/* Each wait below would last 10 s if the poke were lost (a 10 ms unit at duty 0.001):
 * the checks are on the status only; a lost poke shows as a hung test, not a timing. */
static void test_interrupts(void) {
    th_pace *p = NULL;
    CHECK(th_pace_create(NULL, &p) == TH_OK, "create");
    if (!p) return;
    g_sig_pace = p;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sigaction(SIGUSR1, &sa, NULL);
    th_pace_interrupt(p);
    CHECK(th_pace_wait(p) == TH_ERR_INTERRUPTED, "interrupted before the wait: returns interrupted");
    th_pace_clear_interrupt(p);
    const char *what[] = {"duty raised mid-wait", "th_pace_interrupt", "signal handler"};
    for (int mode = 0; mode < 3; mode++) {
        th_pace_set(p, 0.001, 0);
        th_pace_begin_unit(p);
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
        th_pace_end_unit(p);
        poke k = {p, mode};
        pthread_t th;
        pthread_create(&th, NULL, poker, &k);
        th_status st = th_pace_wait(p);
        pthread_join(th, NULL);
        CHECK(st == (mode == 0 ? TH_OK : TH_ERR_INTERRUPTED), "%s: status %d", what[mode], st);
        if (mode > 0) {
            CHECK(th_pace_wait(p) == TH_ERR_INTERRUPTED, "%s: stays interrupted", what[mode]);
            CHECK(th_pace_interrupted(p), "flag set");
            th_pace_clear_interrupt(p);
            CHECK(!th_pace_interrupted(p), "cleared");
            th_pace_set(p, 1.0, 0);
            CHECK(th_pace_wait(p) == TH_OK, "waits again after clear");
        }
    }
    th_pace_stats s;
    th_pace_get_stats(p, &s);
    CHECK(s.interrupts >= 3, "interrupts counted: %llu", (unsigned long long)s.interrupts);
    th_pace_free(p);
}

int main(void) {
    test_arithmetic();
    test_deadline();
    test_measured_duty();
    test_real_wait_lower_bound();
    test_interrupts();
    return test_summary();
}
