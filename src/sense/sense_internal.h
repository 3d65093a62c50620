/* sense_internal.h: what the sensor backends share and nobody else sees: the backend ops
 * struct and its registry, sysfs/procfs file helpers that classify failures (vanished,
 * permission, garbage), a growable list of readings, and a fault-injection hook that
 * lets tests make one file fail with a chosen errno (permission tests run as root). */
#ifndef THERMO_SENSE_INTERNAL_H
#define THERMO_SENSE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "thermo/sense.h"

#define TH_SENSE_API_VERSION 1

/* A growable array of readings for th_sense_list; th_reading_add records NOMEM in err. */
typedef struct {
    th_reading *v;
    size_t n, cap;
    th_status err;
} th_reading_list;

void th_reading_add(th_reading_list *l, const char *name, th_reading_kind kind, const char *source,
                    double value, int measured, th_status st, const char *message);
const char *th_reading_unit(th_reading_kind kind);

/* A sensor backend (Linux thermal style). probe returns a score, 0 = unsupported; open
 * allocates the context; read fills a sample (t_ns and source included) or fails with a
 * status, th_fail message and out->fault; close frees. Optional ops may be NULL. */
typedef struct th_sensor_ops {
    const char *name;
    int api_version;
    uint32_t provides; /* TH_SAMPLE_* bits it can fill; auto-selection needs TH_SAMPLE_TEMP */
    th_origin origin;  /* what its readings are: measured (0), modeled (sim), replayed (trace) */
    int (*probe)(const th_sense_config *cfg);
    th_status (*open)(const th_sense_config *cfg, void **ctx);
    th_status (*read)(void *ctx, th_sample *out);
    void (*close)(void *ctx);
    /* optional */
    th_status (*limits)(void *ctx, th_sense_limits *out);
    void (*list)(void *ctx, double interval_s, th_reading_list *out);
    th_plant *(*plant)(void *ctx);
} th_sensor_ops;

extern const th_sensor_ops th_sense_host_ops, th_sense_nvml_ops, th_sense_hwmon_ops, th_sense_thermal_ops,
    th_sense_rapl_ops, th_sense_procstat_ops, th_sense_trace_ops, th_sense_sim_ops;

/* The config's time source, copied into a backend's context at open (the config need not
 * outlive the open). Now is clock_ns(user), or th_now_ns() when clock_ns is NULL. */
typedef struct {
    uint64_t (*clock_ns)(void *user);
    void *user;
} th_sense_clock;

th_sense_clock th_sense_clock_of(const th_sense_config *cfg);
uint64_t th_sense_clock_now(th_sense_clock k);
/* The config's clock, now. */
uint64_t th_sense_now(const th_sense_config *cfg);

/* ---------------------------------------------------------------------------------
 * files */

/* root + "/" + rel into buf; TH_ERR_INVALID if it does not fit. */
th_status th_sense_path(char *buf, size_t n, const char *root, const char *rel);

/* Reads a small text file (first line, trailing whitespace cut). Failures: ENOENT/ENODEV/
 * ENXIO → TH_ERR_IO, fault VANISHED; EACCES/EPERM → TH_ERR_IO "needs read permission" with
 * the chmod fix, fault VANISHED; anything else (EIO, EAGAIN, ENODATA) → TH_ERR_IO, fault
 * STALE; empty file → TH_ERR_FORMAT, fault NONSENSE. fault may be NULL. */
th_status th_sense_read_text(const char *path, char *buf, size_t n, th_sense_health *fault);
/* As above, then a whole decimal integer; garbage → TH_ERR_FORMAT, fault NONSENSE. */
th_status th_sense_read_ll(const char *path, long long *v, th_sense_health *fault);
int th_sense_exists(const char *path);

/* Entries of `dir` whose names start with `prefix`, in natural order (hwmon2 before
 * hwmon10), at most max; returns the count (0 if the directory is absent). Names are
 * copied into names[i] (NAME_MAX + 1 bytes each). */
typedef char th_sense_name[256];
size_t th_sense_list_dir(const char *dir, const char *prefix, th_sense_name *names, size_t max);

/* One entry of a sysfs class directory: dir is its full path, name the entry's name.
 * Returns 1 if it kept the entry, 0 if it skipped it. */
typedef int (*th_sense_class_fn)(const char *dir, const char *name, void *user);

/* The device scan every sysfs backend starts with: cb for each entry of
 * <root>/sys/class/<cls> whose name starts with prefix, in natural order, at most max
 * entries (and at most TH_SENSE_CLASS_MAX). Returns how many cb kept; an absent directory
 * is none. */
#define TH_SENSE_CLASS_MAX 64
int th_sense_scan_class(const char *root, const char *cls, const char *prefix, size_t max, th_sense_class_fn cb,
                        void *user);

/* Test hook: reads of paths ending in `suffix` fail with errno `err` (0 or NULL clears). */
void th_sense_inject_errno(const char *suffix, int err);

/* ---------------------------------------------------------------------------------
 * pieces the composite "host" backend reuses */

/* Parses one "cpu " line of /proc/stat text into total and idle jiffies. */
th_status th_procstat_parse(const char *text, const char *path, uint64_t *total, uint64_t *idle);

/* RAPL counter step with wrap (th_counter_delta): new < old is a wrap at max_range only if
 * the implied average power over dt_s stays below max_power_w; otherwise the counter went
 * backwards (TH_ERR_FORMAT), as is a reading above max_range. Returns the delta in µJ
 * through *delta. */
th_status th_rapl_delta(uint64_t old_uj, uint64_t new_uj, uint64_t max_range_uj, double dt_s, double max_power_w,
                        const char *path, uint64_t *delta);

#endif
