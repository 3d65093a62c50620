/* core.h: status codes with error messages, monotonic clock, RNG, aligned allocation
 * and the logging callback. Every other module builds on these; the library never
 * prints or exits, it returns a th_status and leaves a message in th_last_error(). */
#ifndef THERMO_CORE_H
#define THERMO_CORE_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------
 * status codes */

typedef enum {
    TH_OK = 0,
    TH_ERR_INVALID = 1,     /* an argument or configuration value is impossible */
    TH_ERR_NOMEM = 2,       /* an allocation failed */
    TH_ERR_IO = 3,          /* a file could not be opened, read or written */
    TH_ERR_FORMAT = 4,      /* a file's content is malformed, truncated or lies */
    TH_ERR_UNSUPPORTED = 5, /* valid but not handled by this build or backend */
    TH_ERR_STATE = 6,       /* a call made in the wrong order */
    TH_ERR_INTERRUPTED = 7, /* stopped on request */
} th_status;

/* A short fixed name for a status ("invalid", "no memory", ...). */
const char *th_status_name(th_status s);

/* Records a formatted message for the calling thread and returns `s`, so a failing
 * function can `return th_fail(TH_ERR_FORMAT, "%s: header is %zu bytes past the end", path, n);`.
 * The message should name the file or field and the problem. */
th_status th_fail(th_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The calling thread's last message set by th_fail ("" if none). Valid until the next th_fail. */
const char *th_last_error(void);

/* ---------------------------------------------------------------------------------
 * clock */

/* Nanoseconds on CLOCK_MONOTONIC: the one clock every sample and step record uses. */
uint64_t th_now_ns(void);

/* Peak resident set size of this process so far, in bytes (getrusage), 0 if unknown. */
size_t th_peak_rss_bytes(void);

/* ---------------------------------------------------------------------------------
 * random numbers: xoshiro256** seeded through splitmix64. The whole state is the four
 * words below, so it can be saved in a checkpoint and restored exactly. */

typedef struct {
    uint64_t s[4];
} th_rng;

void th_rng_seed(th_rng *rng, uint64_t seed);
uint64_t th_rng_u64(th_rng *rng);
/* Uniform in [0, 1) with 24 random bits, the resolution of a float. */
float th_rng_float(th_rng *rng);
/* Standard normal (Box-Muller, double precision internally). */
double th_rng_normal(th_rng *rng);

/* ---------------------------------------------------------------------------------
 * allocation. Functions return NULL on failure and never abort; callers turn NULL into
 * TH_ERR_NOMEM. Blocks are 64-byte aligned (one cache line, one AVX-512 register). */

void *th_alloc(size_t bytes);
void *th_calloc(size_t count, size_t size);
void th_free(void *p);

/* Fault injection for tests (SQLite style): the Nth allocation from now fails (N >= 1),
 * and every later one succeeds again. N = 0 disarms. */
void th_alloc_fail_nth(long n);

/* ---------------------------------------------------------------------------------
 * logging: the library reports progress and warnings through one handler that the
 * program installs; with none installed, messages are dropped. */

typedef enum { TH_LOG_DEBUG = 0, TH_LOG_INFO = 1, TH_LOG_WARN = 2, TH_LOG_ERROR = 3 } th_log_level;
typedef void (*th_log_fn)(th_log_level level, const char *msg, void *user);

void th_log_set_handler(th_log_fn fn, void *user);
void th_log(th_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
