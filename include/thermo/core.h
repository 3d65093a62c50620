/* core.h: status codes with error messages, monotonic clock, RNG, aligned allocation,
 * the logging callback, atomic files, small text helpers (CSV split, name lists, quiet
 * formatting, a measuring text buffer) and the wrap arithmetic of cumulative counters.
 * Every other module builds on these; the library never prints or exits, it returns a
 * th_status and leaves a message in th_last_error(). */
#ifndef THERMO_CORE_H
#define THERMO_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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
/* Resizes a block from th_alloc/th_calloc/th_realloc (p NULL: a plain th_alloc), keeping the
 * first min(old, new) bytes and the 64-byte alignment. On failure returns NULL and p stays
 * valid and owned by the caller. Counts as one allocation for th_alloc_fail_nth. */
void *th_realloc(void *p, size_t bytes);
void th_free(void *p);

/* Fault injection for tests (SQLite style): the Nth allocation from now fails (N >= 1),
 * and every later one succeeds again. N = 0 disarms. Returns how many allocations the
 * previous arming made fail (0 or 1), so a fault loop knows when a run no longer hit it. */
long th_alloc_fail_nth(long n);

/* ---------------------------------------------------------------------------------
 * logging: the library reports progress and warnings through one handler that the
 * program installs; with none installed, messages are dropped. */

typedef enum { TH_LOG_DEBUG = 0, TH_LOG_INFO = 1, TH_LOG_WARN = 2, TH_LOG_ERROR = 3 } th_log_level;
typedef void (*th_log_fn)(th_log_level level, const char *msg, void *user);

void th_log_set_handler(th_log_fn fn, void *user);
void th_log(th_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------------------------
 * atomic files: every file the program writes goes through this. Bytes go to "<path>.tmp";
 * commit = fflush + fsync(file) + close + rename(tmp, path) + fsync(directory). A kill at
 * any instant leaves the old file or the new one, never a mix; on any failure the old file
 * is untouched and the temporary removed. Errors are sticky: after a failed write, later
 * writes are ignored and commit fails with the first error, so callers check once. */

typedef struct th_atomic_file th_atomic_file;

/* Creates "<path>.tmp"; TH_ERR_IO naming it if it cannot, TH_ERR_NOMEM. *out is NULL on failure. */
th_status th_atomic_open(const char *path, th_atomic_file **out);
/* The temporary's stream, for fprintf or json_dumpf; a stream error fails the commit. It is
 * open for update, so a writer may fseeko back (to fill in a header) and read what it wrote. */
FILE *th_atomic_stream(th_atomic_file *f);
/* Appends n bytes; a short write records TH_ERR_IO (sticky). */
void th_atomic_write(th_atomic_file *f, const void *p, size_t n);
/* Marks the file failed with the caller's own error (its th_fail message stands); the first
 * failure wins. */
void th_atomic_fail(th_atomic_file *f, th_status st);
/* TH_OK while nothing has failed; the sticky error otherwise. Lets long writers stop early. */
th_status th_atomic_status(const th_atomic_file *f);
/* Publishes the file (see above) and frees f, on success and on failure alike. */
th_status th_atomic_commit(th_atomic_file *f);
/* Removes the temporary and frees f; NULL is fine. */
void th_atomic_abort(th_atomic_file *f);
/* Commit in two halves, for saves of several files that should land together: finish
 * flushes, fsyncs and closes the temporary (on failure it aborts: f is freed); publish
 * renames it over the path, fsyncs the directory and frees f. After a successful finish,
 * call publish or abort. */
th_status th_atomic_finish(th_atomic_file *f);
th_status th_atomic_publish(th_atomic_file *f);
/* th_atomic_write with the shape of jansson's json_dump_callback_t (user: the file), so a
 * JSON document streams straight into the file: json_dump_callback(doc, th_atomic_json_sink,
 * f, flags). Returns 0 always (errors stay in f), so a -1 from jansson means it ran out of
 * memory. */
int th_atomic_json_sink(const char *buf, size_t n, void *user);
/* One shot: path gets exactly data[0..n) or keeps its old content. */
th_status th_atomic_write_file(const char *path, const void *data, size_t n);

/* ---------------------------------------------------------------------------------
 * text helpers */

/* Splits one CSV line in place (RFC 4180: fields may be quoted, "" inside quotes is a
 * quote; a trailing \r\n is stripped); cells[i] point into line. Returns the number of
 * cells, or -1 if there are more than max_cells, a quote is unterminated, a quote stands
 * inside an unquoted field or text follows a closing quote. On -1 the cells before the
 * faulty one are set and, if there is room, the next slot is NULL, so a caller can count
 * them to name the column. */
int th_csv_split(char *line, char **cells, int max_cells);

/* Writes "a<sep>b<sep>c" into buf (capacity cap > 0) from a registry: name_at(i, user) for
 * i = 0, 1, ... until it returns NULL. If the list does not fit it ends in "...". */
void th_names_join(char *buf, size_t cap, const char *(*name_at)(size_t i, void *user), void *user,
                   const char *sep);

/* snprintf that truncates quietly, for labels, paths and messages whose length is bounded
 * by what was read, where a cut is harmless (keeps -Wformat-truncation quiet). n == 0
 * writes nothing; an encoding error leaves "". th_vfmt is the va_list form. */
void th_fmt(char *dst, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void th_vfmt(char *dst, size_t n, const char *fmt, va_list ap) __attribute__((format(printf, 3, 0)));

/* Text built by appending, formatted twice: once with buf NULL / cap 0 to measure (len
 * counts every byte asked for), then into a buffer of len + 1 bytes. Appends past cap are
 * counted but not written, so len > cap - 1 after the fact means the text was cut. The
 * caller owns buf; th_textbuf_printf keeps it NUL-terminated while there is room. */
typedef struct {
    char *buf;
    size_t cap, len;
} th_textbuf;

void th_textbuf_printf(th_textbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------------------------
 * cumulative counters (RAPL energy_uj, NVML total energy): the arithmetic only; each
 * caller words its own failures */

typedef enum {
    TH_COUNTER_STEP = 0,        /* cur >= prev: delta = cur - prev */
    TH_COUNTER_WRAP = 1,        /* cur < prev with a wrap range: delta = (max_range - prev) + cur */
    TH_COUNTER_RESET = 2,       /* cur < prev and max_range is 0: a reset or a counter gone backwards */
    TH_COUNTER_ABOVE_RANGE = 3, /* max_range > 0 and prev or cur above it: not this counter */
} th_counter_step;

/* The step of a counter that wraps to 0 after max_range (0 = never wraps) from reading prev
 * to reading cur. *delta is set for STEP and WRAP and is 0 otherwise. One wrap at most is
 * seen: a counter read less often than once per wrap period undercounts. */
th_counter_step th_counter_delta(uint64_t prev, uint64_t cur, uint64_t max_range, uint64_t *delta);

/* ---------------------------------------------------------------------------------
 * the host: whole files and the CPU's name */

/* Opens path read-only (O_CLOEXEC) and checks that it is a regular file: *fd and *size
 * are set on success and the caller closes *fd. Fails with TH_ERR_IO naming the path
 * ("cannot open: <errno>" or "not a regular file"); *fd is -1 then. */
th_status th_open_regular(const char *path, int *fd, uint64_t *size);

/* Creates dir and its missing parents (mode 0755); TH_OK if it exists already. Fails with
 * TH_ERR_IO naming the first directory that cannot be created (TH_ERR_INVALID for an empty
 * or over-long path). */
th_status th_mkdir_p(const char *dir);

/* Reads the whole file at path into a th_alloc'd buffer (*data, with a NUL after the last
 * byte; *len bytes before it). Fails with TH_ERR_IO naming the path, or TH_ERR_NOMEM;
 * *data is NULL and *len 0 then. */
th_status th_read_file(const char *path, char **data, size_t *len);

/* The CPU's model name ("model name" of /proc/cpuinfo, else "unknown"), NUL-terminated
 * and truncated to cap bytes. */
void th_cpu_name(char *buf, size_t cap);

/* The machine's ceilings, measured now: the denominators every speed figure is stated
 * against, so figures compare across hosts (the host under a VM changes between sessions).
 *   read_gb_s:  DRAM read bandwidth, `threads` threads streaming over a buffer of at least
 *               four times the last-level cache and 512 MiB (best of three passes);
 *   fma_gflop_s: fp32 FMA peak, every thread running independent chains of the widest FMA
 *               the CPU runs (isa: "avx512f", "avx2+fma" or "scalar"), 2 flops per lane.
 * Takes about a second. Fails with TH_ERR_NOMEM if the buffer cannot be had (then out is
 * zeroed), TH_ERR_INVALID for threads < 1. */
typedef struct {
    double read_gb_s, fma_gflop_s;
    int threads;
    size_t buffer_bytes; /* the read buffer's size */
    char isa[16];
} th_ceilings;
th_status th_ceilings_measure(int threads, th_ceilings *out);


/* ---------------------------------------------------------------------------------
 * little-endian fields of the binary formats (shards, replay reservoirs) */

static inline void th_le_put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void th_le_put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t th_le_get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t th_le_get_u64(const uint8_t *p) {
    return (uint64_t)th_le_get_u32(p) | (uint64_t)th_le_get_u32(p + 4) << 32;
}

#endif
