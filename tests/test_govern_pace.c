/* test_govern_pace.c: the pace actuator: the idle-injection arithmetic, real waits (a unit
 * of 10 ms at duty 0.5 waits ~10 ms), waits that follow a duty raised mid-wait, prompt
 * interruption (from a thread and from a signal handler), and the measured duty. */
#include <pthread.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"
#include "thermo/govern.h"

static double ms_since(uint64_t t0) { return (double)(th_now_ns() - t0) / 1e6; }

static void busy_ms(double ms) {
    uint64_t t0 = th_now_ns();
    volatile double x = 0;
    while (ms_since(t0) < ms) x += 1;
}

static void sleep_ms(double ms) {
    struct timespec ts = {(time_t)(ms / 1000), (long)((ms - 1000 * (long)(ms / 1000)) * 1e6)};
    nanosleep(&ts, NULL);
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

static void test_wait_10ms(void) {
    th_pace *p;
    CHECK(th_pace_create(NULL, &p) == TH_OK, "create");
    th_pace_set(p, 0.5, 2);
    CHECK(th_pace_duty(p) == 0.5 && th_pace_threads(p) == 2, "published");
    double worst = 0, sum = 0;
    for (int i = 0; i < 5; i++) {
        th_pace_begin_unit(p);
        busy_ms(10);
        th_pace_end_unit(p);
        uint64_t t0 = th_now_ns();
        CHECK(th_pace_wait(p) == TH_OK, "wait");
        double w = ms_since(t0);
        sum += w;
        if (fabs(w - 10) > worst) worst = fabs(w - 10);
    }
    CHECK(fabs(sum / 5 - 10.0) < 3.0, "a 10 ms unit at duty 0.5 waits ~10 ms: mean %.2f ms", sum / 5);
    CHECK(worst < 8.0, "each wait within 8 ms of 10 ms: worst error %.2f ms", worst);
    double m = th_pace_measured_duty(p);
    CHECK(m > 0.35 && m < 0.65, "measured duty ~0.5: %g", m);
    th_pace_stats st;
    th_pace_get_stats(p, &st);
    CHECK(st.units == 5 && st.waits == 5, "stats: %llu units, %llu waits", (unsigned long long)st.units,
          (unsigned long long)st.waits);
    CHECK(st.idle_ns > 40000000ull && st.idle_ns < 70000000ull, "idle injected ~50 ms: %.1f ms", st.idle_ns / 1e6);
    th_pace_set(p, 1.0, 0);
    th_pace_begin_unit(p);
    busy_ms(5);
    th_pace_end_unit(p);
    uint64_t t0 = th_now_ns();
    th_pace_wait(p);
    CHECK(ms_since(t0) < 1.0, "duty 1 never waits: %.3f ms", ms_since(t0));
    th_pace_free(p);
}

typedef struct {
    th_pace *p;
    double after_ms;
    int mode; /* 0: raise duty, 1: interrupt, 2: signal */
} poke;

static void *poker(void *arg) {
    poke *k = arg;
    sleep_ms(k->after_ms);
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

static void test_interrupts(void) {
    th_pace *p;
    CHECK(th_pace_create(NULL, &p) == TH_OK, "create");
    g_sig_pace = p;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr1;
    sigaction(SIGUSR1, &sa, NULL);
    for (int mode = 0; mode < 3; mode++) {
        th_pace_set(p, 0.01, 0); /* a 20 ms unit then waits 1.98 s */
        th_pace_begin_unit(p);
        busy_ms(20);
        th_pace_end_unit(p);
        poke k = {p, 50, mode};
        pthread_t th;
        pthread_create(&th, NULL, poker, &k);
        uint64_t t0 = th_now_ns();
        th_status st = th_pace_wait(p);
        double w = ms_since(t0);
        pthread_join(th, NULL);
        const char *what[] = {"duty raised mid-wait", "th_pace_interrupt", "signal handler"};
        CHECK(st == (mode == 0 ? TH_OK : TH_ERR_INTERRUPTED), "%s: status %d", what[mode], st);
        CHECK(w > 40 && w < 200, "%s: the wait ended promptly after 50 ms: %.1f ms", what[mode], w);
        if (mode > 0) {
            t0 = th_now_ns();
            CHECK(th_pace_wait(p) == TH_ERR_INTERRUPTED && ms_since(t0) < 5, "stays interrupted");
            CHECK(th_pace_interrupted(p), "flag set");
            th_pace_clear_interrupt(p);
            CHECK(!th_pace_interrupted(p), "cleared");
            th_pace_set(p, 0.5, 0);
            th_pace_begin_unit(p);
            busy_ms(4);
            th_pace_end_unit(p);
            t0 = th_now_ns();
            CHECK(th_pace_wait(p) == TH_OK, "waits again after clear");
            double w2 = ms_since(t0);
            CHECK(w2 > 2.5 && w2 < 12, "and waits the right time: %.2f ms", w2);
        }
    }
    th_pace_stats s;
    th_pace_get_stats(p, &s);
    CHECK(s.interrupts >= 2, "interrupts counted: %llu", (unsigned long long)s.interrupts);
    th_pace_free(p);
}

/* The measured duty follows the published one; it is what a caller feeds a simulated plant
 * (the pace itself touches nothing but the work loop). */
static void test_measured_duty(void) {
    th_pace *p;
    CHECK(th_pace_create(NULL, &p) == TH_OK, "create");
    CHECK(th_pace_measured_duty(p) == 1.0, "1 before any unit");
    th_pace_set(p, 0.25, 0);
    for (int i = 0; i < 8; i++) {
        th_pace_begin_unit(p);
        busy_ms(3);
        th_pace_end_unit(p);
        th_pace_wait(p);
    }
    th_pace_begin_unit(p); /* closes the last cycle */
    th_pace_end_unit(p);
    double d = th_pace_measured_duty(p);
    CHECK(d > 0.15 && d < 0.35, "measured duty ~0.25: %g", d);
    th_pace_free(p);
}

int main(void) {
    test_arithmetic();
    test_wait_10ms();
    test_interrupts();
    test_measured_duty();
    return test_summary();
}
