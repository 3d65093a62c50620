/* rapl.c: the "rapl" backend, Intel/AMD RAPL energy counters through powercap
 * (<root>/sys/class/powercap/intel-rapl:N/{name,energy_uj,max_energy_range_uj}).
 * The sample's energy is the sum of the package-N and dram zones (core/uncore are parts
 * of a package, psys covers the platform, so neither is added), accumulated across
 * counter wraps at max_energy_range_uj; power is the energy step over the time between
 * reads. energy_uj is root-only since Linux 5.10: that failure says how to fix it. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sense/sense_internal.h"

#define MAX_ZONES 32

typedef struct {
    char dir[512];
    char id[40];   /* "intel-rapl:0:1" */
    char name[40]; /* "package-0", "core", "dram", "psys" */
    uint64_t max_range_uj;
    int counted;   /* part of the sample's sum */
    uint64_t last_uj;
    uint64_t acc_uj;
} zone;

typedef struct {
    zone z[MAX_ZONES];
    int n;
    double max_power_w;
    uint64_t last_t_ns;
    uint64_t last_total_uj;
    th_sense_clock clock;
    char source[96];
} rapl_ctx;

th_status th_rapl_delta(uint64_t old_uj, uint64_t new_uj, uint64_t max_range_uj, double dt_s, double max_power_w,
                        const char *path, uint64_t *delta) {
    switch (th_counter_delta(old_uj, new_uj, max_range_uj, delta)) {
    case TH_COUNTER_STEP:
    case TH_COUNTER_WRAP: break;
    case TH_COUNTER_RESET:
        return th_fail(TH_ERR_FORMAT, "%s: energy counter went backwards (%llu -> %llu µJ) with no wrap range",
                       path, (unsigned long long)old_uj, (unsigned long long)new_uj);
    case TH_COUNTER_ABOVE_RANGE:
        return th_fail(TH_ERR_FORMAT, "%s: energy counter reading %llu µJ (previous %llu) is above its wrap range %llu",
                       path, (unsigned long long)new_uj, (unsigned long long)old_uj, (unsigned long long)max_range_uj);
    }
    /* A wrap that implies an impossible power is a counter that jumped or went backwards. */
    double limit_uj = max_power_w * (dt_s > 0 ? dt_s : 0) * 1e6 + 1e6; /* +1 J slack for clock granularity */
    if ((double)*delta > limit_uj)
        return th_fail(TH_ERR_FORMAT,
                       "%s: energy counter jumped by %.3f J in %.3f s (%llu -> %llu µJ, wrap range %llu): "
                       "above %.0f W, not a wrap",
                       path, (double)*delta / 1e6, dt_s, (unsigned long long)old_uj, (unsigned long long)new_uj,
                       (unsigned long long)max_range_uj, max_power_w);
    return TH_OK;
}

typedef struct {
    rapl_ctx *c;
    th_status *perm_err;
} scan_state;

static int add_zone(const char *dir, const char *name, void *user) {
    scan_state *s = user;
    rapl_ctx *c = s->c;
    char p[600];
    zone *z = &c->z[c->n];
    memset(z, 0, sizeof *z);
    th_fmt(z->dir, sizeof z->dir, "%s", dir);
    th_fmt(z->id, sizeof z->id, "%s", name);
    th_fmt(p, sizeof p, "%s/name", z->dir);
    if (th_sense_read_text(p, z->name, sizeof z->name, NULL) != TH_OK) return 0;
    long long v;
    th_fmt(p, sizeof p, "%s/max_energy_range_uj", z->dir);
    z->max_range_uj = th_sense_read_ll(p, &v, NULL) == TH_OK && v > 0 ? (uint64_t)v : 0;
    z->counted = strncmp(z->name, "package", 7) == 0 || strcmp(z->name, "dram") == 0;
    th_fmt(p, sizeof p, "%s/energy_uj", z->dir);
    th_status st = th_sense_read_ll(p, &v, NULL);
    if (st != TH_OK) {
        if (z->counted && *s->perm_err == TH_OK) *s->perm_err = st;
        return 0;
    }
    z->last_uj = (uint64_t)v;
    c->n++;
    return 1;
}

/* Scans the zones; fills c. Returns the count; *perm_err receives the first unreadable
 * counted counter's status (its message is in th_last_error). */
static int scan(const th_sense_config *cfg, rapl_ctx *c, th_status *perm_err) {
    scan_state s = {c, perm_err};
    *perm_err = TH_OK;
    c->n = 0;
    return th_sense_scan_class(cfg->root, "powercap", "intel-rapl:", MAX_ZONES, add_zone, &s);
}

static int rapl_probe(const th_sense_config *cfg) {
    rapl_ctx *c = th_calloc(1, sizeof *c);
    if (!c) return 0;
    th_status perm;
    int counted = 0;
    if (scan(cfg, c, &perm) > 0 && perm == TH_OK)
        for (int i = 0; i < c->n; i++) counted += c->z[i].counted;
    th_free(c);
    return counted ? 40 : 0;
}

static th_status rapl_open(const th_sense_config *cfg, void **out) {
    rapl_ctx *c = th_calloc(1, sizeof *c);
    if (!c) return th_fail(TH_ERR_NOMEM, "rapl: out of memory");
    th_status perm;
    int n = scan(cfg, c, &perm);
    if (perm != TH_OK) { /* th_last_error names the file and the fix */
        th_free(c);
        return perm;
    }
    int counted = 0;
    for (int i = 0; i < n; i++) counted += c->z[i].counted;
    if (counted == 0) {
        th_free(c);
        return th_fail(TH_ERR_UNSUPPORTED, "rapl: no package or dram energy counters under %s/sys/class/powercap",
                       cfg->root ? cfg->root : "");
    }
    c->max_power_w = cfg->max_power_w > 0 ? cfg->max_power_w : 5000.0;
    c->clock = th_sense_clock_of(cfg);
    c->last_t_ns = th_sense_clock_now(c->clock);
    int w = snprintf(c->source, sizeof c->source, "rapl:");
    for (int i = 0; i < c->n && w < (int)sizeof c->source; i++)
        if (c->z[i].counted)
            w += snprintf(c->source + w, sizeof c->source - (size_t)w, "%s%s", w > 5 ? "+" : "", c->z[i].name);
    *out = c;
    return TH_OK;
}

static th_status rapl_read(void *ctx, th_sample *out) {
    rapl_ctx *c = ctx;
    uint64_t t = th_sense_clock_now(c->clock);
    double dt_s = (double)(t - c->last_t_ns) / 1e9;
    char p[600];
    th_fmt(out->source, sizeof out->source, "%s", c->source);
    out->origin = TH_ORIGIN_MEASURED;
    /* Read every counter first and commit only if all steps are sane, so one bad counter
     * does not half-update the totals. */
    uint64_t fresh[MAX_ZONES];
    for (int i = 0; i < c->n; i++) {
        zone *z = &c->z[i];
        long long v;
        th_fmt(p, sizeof p, "%s/energy_uj", z->dir);
        th_status st = th_sense_read_ll(p, &v, &out->fault);
        if (st != TH_OK) return st;
        if (v < 0) {
            out->fault = TH_HEALTH_NONSENSE;
            return th_fail(TH_ERR_FORMAT, "%s: negative energy %lld", p, v);
        }
        uint64_t d;
        st = th_rapl_delta(z->last_uj, (uint64_t)v, z->max_range_uj, dt_s, c->max_power_w, p, &d);
        if (st != TH_OK) {
            out->fault = TH_HEALTH_NONSENSE;
            /* resynchronise this counter so one glitch is not reported forever; its energy
             * over this interval is unknown and not added */
            z->last_uj = (uint64_t)v;
            return st;
        }
        fresh[i] = (uint64_t)v;
    }
    uint64_t total = 0;
    for (int i = 0; i < c->n; i++) {
        zone *z = &c->z[i];
        uint64_t d; /* checked above */
        th_counter_delta(z->last_uj, fresh[i], z->max_range_uj, &d);
        z->acc_uj += d;
        z->last_uj = fresh[i];
        if (z->counted) total += z->acc_uj;
    }
    out->energy_uj = total;
    out->valid |= TH_SAMPLE_ENERGY;
    if (t > c->last_t_ns) {
        out->power_uw = (int64_t)((double)(total - c->last_total_uj) / dt_s);
        out->valid |= TH_SAMPLE_POWER;
    }
    c->last_total_uj = total;
    c->last_t_ns = t;
    return TH_OK;
}

static void rapl_close(void *ctx) { th_free(ctx); }

static void rapl_list(void *ctx, double interval_s, th_reading_list *l) {
    rapl_ctx *c = ctx;
    char p[600], name[96], src[64];
    uint64_t first[MAX_ZONES];
    uint64_t t0 = th_now_ns();
    for (int i = 0; i < c->n; i++) {
        long long v = 0;
        th_fmt(p, sizeof p, "%s/energy_uj", c->z[i].dir);
        th_status st = th_sense_read_ll(p, &v, NULL);
        first[i] = st == TH_OK ? (uint64_t)v : UINT64_MAX;
        th_fmt(name, sizeof name, "%s (%s)", c->z[i].name, c->z[i].id);
        th_fmt(src, sizeof src, "rapl:%s/energy_uj", c->z[i].id);
        th_reading_add(l, name, TH_KIND_ENERGY, src, (double)v / 1e6, 1, st, th_last_error());
    }
    if (interval_s <= 0) return;
    struct timespec ts = {(time_t)interval_s, (long)((interval_s - (double)(time_t)interval_s) * 1e9)};
    nanosleep(&ts, NULL);
    double dt = (double)(th_now_ns() - t0) / 1e9;
    for (int i = 0; i < c->n; i++) {
        long long v = 0;
        uint64_t d = 0;
        th_fmt(p, sizeof p, "%s/energy_uj", c->z[i].dir);
        th_status st = first[i] == UINT64_MAX ? TH_ERR_IO : th_sense_read_ll(p, &v, NULL);
        if (st == TH_OK) st = th_rapl_delta(first[i], (uint64_t)v, c->z[i].max_range_uj, dt, c->max_power_w, p, &d);
        th_fmt(name, sizeof name, "%s (%s)", c->z[i].name, c->z[i].id);
        th_fmt(src, sizeof src, "rapl:%s/energy_uj", c->z[i].id);
        th_reading_add(l, name, TH_KIND_POWER, src, (double)d / 1e6 / dt, 1, st, th_last_error());
    }
}

const th_sensor_ops th_sense_rapl_ops = {
    .name = "rapl",
    .api_version = TH_SENSE_API_VERSION,
    .provides = TH_SAMPLE_POWER | TH_SAMPLE_ENERGY,
    .probe = rapl_probe,
    .open = rapl_open,
    .read = rapl_read,
    .close = rapl_close,
    .list = rapl_list,
};
