/* procstat.c: the "procstat" backend, whole-machine CPU utilization from the "cpu" line
 * of <root>/proc/stat: util = 1 − Δ(idle + iowait) / Δ(all jiffies) between two reads.
 * Too little time between reads (no jiffy elapsed) gives no util rather than a zero. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sense/sense_internal.h"

typedef struct {
    char path[512];
    uint64_t total, idle;
} procstat_ctx;

th_status th_procstat_parse(const char *text, const char *path, uint64_t *total, uint64_t *idle) {
    if (strncmp(text, "cpu ", 4) != 0)
        return th_fail(TH_ERR_FORMAT, "%s: first line does not start with 'cpu ': '%.40s'", path, text);
    const char *p = text + 4;
    uint64_t f[10] = {0};
    int n = 0;
    for (; n < 10; n++) {
        while (*p == ' ') p++;
        if (*p == '\0' || *p == '\n') break;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (errno || end == p || (*end != ' ' && *end != '\0' && *end != '\n') || *p == '-')
            return th_fail(TH_ERR_FORMAT, "%s: field %d of the cpu line is not a counter: '%.20s'", path, n + 1, p);
        f[n] = v;
        p = end;
    }
    if (n < 4) return th_fail(TH_ERR_FORMAT, "%s: cpu line has %d fields, expected at least 4", path, n);
    /* user nice system idle iowait irq softirq steal; guest and guest_nice are already in user/nice */
    uint64_t t = 0;
    for (int i = 0; i < n && i < 8; i++) t += f[i];
    *total = t;
    *idle = f[3] + f[4];
    return TH_OK;
}

static th_status read_counters(const char *path, uint64_t *total, uint64_t *idle, th_sense_health *fault) {
    char buf[512];
    th_status st = th_sense_read_text(path, buf, sizeof buf, fault);
    if (st != TH_OK) return st;
    st = th_procstat_parse(buf, path, total, idle);
    if (st != TH_OK && fault) *fault = TH_HEALTH_NONSENSE;
    return st;
}

static int procstat_probe(const th_sense_config *cfg) {
    char p[512];
    uint64_t t, i;
    if (th_sense_path(p, sizeof p, cfg->root, "proc/stat") != TH_OK) return 0;
    return read_counters(p, &t, &i, NULL) == TH_OK ? 5 : 0;
}

static th_status procstat_open(const th_sense_config *cfg, void **out) {
    procstat_ctx *c = th_calloc(1, sizeof *c);
    if (!c) return th_fail(TH_ERR_NOMEM, "procstat: out of memory");
    th_status st = th_sense_path(c->path, sizeof c->path, cfg->root, "proc/stat");
    if (st == TH_OK) st = read_counters(c->path, &c->total, &c->idle, NULL);
    if (st != TH_OK) {
        th_free(c);
        return st == TH_ERR_IO ? th_fail(TH_ERR_UNSUPPORTED, "%s", th_last_error()) : st;
    }
    *out = c;
    return TH_OK;
}

static th_status procstat_read(void *ctx, th_sample *out) {
    procstat_ctx *c = ctx;
    uint64_t total, idle;
    th_fmt(out->source, sizeof out->source, "procstat:cpu");
    out->origin = TH_ORIGIN_MEASURED;
    th_status st = read_counters(c->path, &total, &idle, &out->fault);
    if (st != TH_OK) return st;
    if (total < c->total || idle < c->idle) {
        out->fault = TH_HEALTH_NONSENSE;
        th_status e = th_fail(TH_ERR_FORMAT, "%s: cpu counters went backwards (total %" PRIu64 " -> %" PRIu64 ")",
                              c->path, c->total, total);
        c->total = total;
        c->idle = idle;
        return e;
    }
    uint64_t dt = total - c->total, di = idle - c->idle;
    if (dt > 0) {
        if (di > dt) {
            out->fault = TH_HEALTH_NONSENSE;
            c->total = total;
            c->idle = idle;
            return th_fail(TH_ERR_FORMAT, "%s: idle grew more than the total", c->path);
        }
        out->util = 1.0 - (double)di / (double)dt;
        out->valid |= TH_SAMPLE_UTIL;
        c->total = total;
        c->idle = idle;
    }
    return TH_OK;
}

static void procstat_close(void *ctx) { th_free(ctx); }

static void procstat_list(void *ctx, double interval_s, th_reading_list *l) {
    procstat_ctx *c = ctx;
    uint64_t t0 = c->total, i0 = c->idle, t1, i1;
    const char *name = "cpu (since boot)";
    if (interval_s > 0) {
        struct timespec ts = {(time_t)interval_s, (long)((interval_s - (double)(time_t)interval_s) * 1e9)};
        nanosleep(&ts, NULL);
        name = "cpu";
    } else {
        t0 = i0 = 0;
    }
    th_status st = read_counters(c->path, &t1, &i1, NULL);
    double u = 0;
    if (st == TH_OK && t1 > t0 && i1 >= i0 && t1 - t0 >= i1 - i0)
        u = 1.0 - (double)(i1 - i0) / (double)(t1 - t0);
    else if (st == TH_OK)
        st = th_fail(TH_ERR_IO, "%s: no CPU time elapsed between reads", c->path);
    th_reading_add(l, name, TH_KIND_UTIL, "procstat:/proc/stat", u, 1, st, th_last_error());
}

const th_sensor_ops th_sense_procstat_ops = {
    .name = "procstat",
    .api_version = TH_SENSE_API_VERSION,
    .provides = TH_SAMPLE_UTIL,
    .probe = procstat_probe,
    .open = procstat_open,
    .read = procstat_read,
    .close = procstat_close,
    .list = procstat_list,
};
