/* thermal.c: the "thermal" backend, Linux thermal zones
 * (<root>/sys/class/thermal/thermal_zoneN/{type,temp,trip_point_*_temp,trip_point_*_type}).
 * The sample's temperature is one zone: the configured type, else the CPU package zone
 * (x86_pkg_temp, cpu-thermal, ...), else the first readable one. Trip points give the
 * limits: passive = slowdown, critical = shutdown, hot = max operating. */
#include <stdio.h>
#include <string.h>

#include "sense/sense_internal.h"

#define MAX_ZONES 64
#define MAX_TRIPS 12

typedef struct {
    char dir[512];
    char type[64];
    int ntrips;
    long long trip_mc[MAX_TRIPS];
    char trip_type[MAX_TRIPS][16];
} zone;

typedef struct {
    zone z[MAX_ZONES];
    int n, primary;
    char source[96];
} thermal_ctx;

static const char *cpu_zone_types[] = {"x86_pkg_temp", "cpu-thermal", "cpu_thermal", "cpu0-thermal", "soc_thermal",
                                       "cpu", "acpitz"};

static int add_zone(const char *dir, const char *name, void *user) {
    thermal_ctx *c = user;
    char p[600];
    zone *z = &c->z[c->n];
    memset(z, 0, sizeof *z);
    th_fmt(z->dir, sizeof z->dir, "%s", dir);
    th_fmt(p, sizeof p, "%s/temp", z->dir);
    if (!th_sense_exists(p)) return 0;
    th_fmt(p, sizeof p, "%s/type", z->dir);
    if (th_sense_read_text(p, z->type, sizeof z->type, NULL) != TH_OK) th_fmt(z->type, sizeof z->type, "%s", name);
    for (int t = 0; t < MAX_TRIPS; t++) {
        long long v;
        th_fmt(p, sizeof p, "%s/trip_point_%d_temp", z->dir, t);
        if (th_sense_read_ll(p, &v, NULL) != TH_OK) break;
        th_fmt(p, sizeof p, "%s/trip_point_%d_type", z->dir, t);
        if (th_sense_read_text(p, z->trip_type[t], sizeof z->trip_type[t], NULL) != TH_OK)
            th_fmt(z->trip_type[t], sizeof z->trip_type[t], "unknown");
        z->trip_mc[t] = v;
        z->ntrips = t + 1;
    }
    c->n++;
    return 1;
}

static int scan(const char *root, thermal_ctx *c) {
    c->n = 0;
    return th_sense_scan_class(root, "thermal", "thermal_zone", MAX_ZONES, add_zone, c);
}

static int find_type(const thermal_ctx *c, const char *type) {
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->z[i].type, type) == 0) return i;
    return -1;
}

static int pick_primary(const thermal_ctx *c) {
    for (size_t k = 0; k < sizeof cpu_zone_types / sizeof cpu_zone_types[0]; k++) {
        int i = find_type(c, cpu_zone_types[k]);
        if (i >= 0) return i;
    }
    return c->n > 0 ? 0 : -1;
}

static int thermal_probe(const th_sense_config *cfg) {
    thermal_ctx *c = th_calloc(1, sizeof *c);
    if (!c) return 0;
    int n = scan(cfg->root, c), score = 0;
    if (n > 0) {
        int p = pick_primary(c);
        score = strcmp(c->z[p].type, "acpitz") == 0 ? 20 : 30;
    }
    th_free(c);
    return score;
}

static th_status thermal_open(const th_sense_config *cfg, void **out) {
    thermal_ctx *c = th_calloc(1, sizeof *c);
    if (!c) return th_fail(TH_ERR_NOMEM, "thermal: out of memory");
    if (scan(cfg->root, c) == 0) {
        th_free(c);
        return th_fail(TH_ERR_UNSUPPORTED, "thermal: no thermal zones under %s/sys/class/thermal",
                       cfg->root ? cfg->root : "");
    }
    c->primary = cfg->zone ? find_type(c, cfg->zone) : pick_primary(c);
    if (c->primary < 0) {
        th_free(c);
        return th_fail(TH_ERR_UNSUPPORTED, "thermal: no zone of type '%s'", cfg->zone);
    }
    th_fmt(c->source, sizeof c->source, "thermal:%s", c->z[c->primary].type);
    *out = c;
    return TH_OK;
}

static th_status thermal_read(void *ctx, th_sample *out) {
    thermal_ctx *c = ctx;
    char p[600];
    long long v;
    th_fmt(p, sizeof p, "%s/temp", c->z[c->primary].dir);
    th_fmt(out->source, sizeof out->source, "%s", c->source);
    out->origin = TH_ORIGIN_MEASURED;
    th_status st = th_sense_read_ll(p, &v, &out->fault);
    if (st != TH_OK) return st;
    out->temp_mc = (int32_t)(v < INT32_MIN ? INT32_MIN : v > INT32_MAX ? INT32_MAX : v);
    out->valid |= TH_SAMPLE_TEMP;
    return TH_OK;
}

static void thermal_close(void *ctx) { th_free(ctx); }

static th_status thermal_limits(void *ctx, th_sense_limits *out) {
    thermal_ctx *c = ctx;
    const zone *z = &c->z[c->primary];
    memset(out, 0, sizeof *out);
    for (int t = 0; t < z->ntrips; t++) {
        int32_t v = (int32_t)z->trip_mc[t];
        if (v <= 0) continue; /* x86_pkg_temp ships disabled trips at 0 */
        if (strcmp(z->trip_type[t], "passive") == 0 && (!out->slowdown_mc || v < out->slowdown_mc)) out->slowdown_mc = v;
        if (strcmp(z->trip_type[t], "critical") == 0) out->shutdown_mc = v;
        if (strcmp(z->trip_type[t], "hot") == 0) out->max_operating_mc = v;
    }
    return TH_OK;
}

static void thermal_list(void *ctx, double interval_s, th_reading_list *l) {
    (void)interval_s; /* instantaneous readings */
    thermal_ctx *c = ctx;
    char p[600], name[96], src[64];
    for (int i = 0; i < c->n; i++) {
        const zone *z = &c->z[i];
        const char *zn = strrchr(z->dir, '/') + 1;
        long long v = 0;
        th_fmt(p, sizeof p, "%s/temp", z->dir);
        th_status st = th_sense_read_ll(p, &v, NULL);
        th_fmt(name, sizeof name, "%s (%s)", z->type, zn);
        th_fmt(src, sizeof src, "thermal:%s", zn);
        th_reading_add(l, name, TH_KIND_TEMP, src, (double)v / 1000.0, 1, st, th_last_error());
        for (int t = 0; t < z->ntrips; t++) {
            if (z->trip_mc[t] <= 0) continue;
            th_fmt(name, sizeof name, "%s (%s) trip %d %s", z->type, zn, t, z->trip_type[t]);
            th_reading_add(l, name, TH_KIND_LIMIT, src, (double)z->trip_mc[t] / 1000.0, 1, TH_OK, NULL);
        }
    }
}

const th_sensor_ops th_sense_thermal_ops = {
    .name = "thermal",
    .api_version = TH_SENSE_API_VERSION,
    .provides = TH_SAMPLE_TEMP,
    .probe = thermal_probe,
    .open = thermal_open,
    .read = thermal_read,
    .close = thermal_close,
    .limits = thermal_limits,
    .list = thermal_list,
};
