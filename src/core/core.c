/* core.c: status messages, the monotonic clock, the xoshiro256** RNG, aligned
 * allocation with fault injection, the logging hook and the wrap arithmetic of
 * cumulative counters (see core.h). */
#define _DEFAULT_SOURCE /* M_PI, clock_gettime, posix_memalign */
#include "thermo/core.h"

#include <malloc.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* ---------------------------------------------------------------------------------
 * status */

static _Thread_local char last_error[1024];

const char *th_status_name(th_status s) {
    switch (s) {
    case TH_OK: return "ok";
    case TH_ERR_INVALID: return "invalid";
    case TH_ERR_NOMEM: return "out of memory";
    case TH_ERR_IO: return "i/o error";
    case TH_ERR_FORMAT: return "bad format";
    case TH_ERR_UNSUPPORTED: return "unsupported";
    case TH_ERR_STATE: return "wrong state";
    case TH_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown status";
}

th_status th_fail(th_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

const char *th_last_error(void) { return last_error; }

/* ---------------------------------------------------------------------------------
 * clock */

uint64_t th_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

size_t th_peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (size_t)ru.ru_maxrss * 1024; /* Linux reports kilobytes */
}

/* ---------------------------------------------------------------------------------
 * RNG: xoshiro256** (Blackman & Vigna), state filled by splitmix64 so that any seed,
 * zero included, gives a good state. */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void th_rng_seed(th_rng *rng, uint64_t seed) {
    for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t th_rng_u64(th_rng *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float th_rng_float(th_rng *rng) { return (float)(th_rng_u64(rng) >> 40) / 16777216.0f; }

double th_rng_normal(th_rng *rng) {
    /* u1 in (0, 1] so the log is finite */
    double u1 = ((double)(th_rng_u64(rng) >> 11) + 1.0) / 9007199254740992.0;
    double u2 = (double)(th_rng_u64(rng) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* ---------------------------------------------------------------------------------
 * allocation */

static atomic_long alloc_countdown, alloc_faults;

static int alloc_should_fail(void) {
    if (atomic_load_explicit(&alloc_countdown, memory_order_relaxed) <= 0) return 0;
    if (atomic_fetch_sub(&alloc_countdown, 1) != 1) return 0;
    atomic_fetch_add(&alloc_faults, 1);
    return 1;
}

long th_alloc_fail_nth(long n) {
    atomic_store(&alloc_countdown, n > 0 ? n : 0);
    return atomic_exchange(&alloc_faults, 0);
}

void *th_alloc(size_t bytes) {
    if (alloc_should_fail()) return NULL;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

void *th_calloc(size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) return NULL;
    void *p = th_alloc(count * size);
    if (p) memset(p, 0, count * size);
    return p;
}

void *th_realloc(void *p, size_t bytes) {
    if (!p) return th_alloc(bytes);
    void *q = th_alloc(bytes);
    if (!q) return NULL;
    size_t old = malloc_usable_size(p);
    memcpy(q, p, old < bytes ? old : bytes);
    free(p);
    return q;
}

void th_free(void *p) { free(p); }

/* ---------------------------------------------------------------------------------
 * logging */

static th_log_fn log_fn;
static void *log_user;

void th_log_set_handler(th_log_fn fn, void *user) {
    log_fn = fn;
    log_user = user;
}

void th_log(th_log_level level, const char *fmt, ...) {
    if (!log_fn) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_fn(level, msg, log_user);
}

/* ---------------------------------------------------------------------------------
 * cumulative counters */

th_counter_step th_counter_delta(uint64_t prev, uint64_t cur, uint64_t max_range, uint64_t *delta) {
    *delta = 0;
    if (max_range && (prev > max_range || cur > max_range)) return TH_COUNTER_ABOVE_RANGE;
    if (cur >= prev) {
        *delta = cur - prev;
        return TH_COUNTER_STEP;
    }
    if (!max_range) return TH_COUNTER_RESET;
    *delta = (max_range - prev) + cur;
    return TH_COUNTER_WRAP;
}
