/* host.c: the "host" backend, this machine's CPU as one sensor: temperature from hwmon
 * (or thermal zones when hwmon has no CPU chip), energy and power from RAPL when readable,
 * utilization from /proc/stat. Only the temperature part is required; a part that fails
 * at read time fails the read (status, message and fault of the first failure) while the
 * parts that worked keep their fields valid. */
#include <stdio.h>
#include <string.h>

#include "sense/sense_internal.h"

typedef struct {
    const th_sensor_ops *ops;
    void *ctx;
} part;

typedef struct {
    part temp, energy, util;
    char source[96];
} host_ctx;

static const th_sensor_ops *temp_backend(const th_sense_config *cfg) {
    int h = th_sense_hwmon_ops.probe(cfg), t = th_sense_thermal_ops.probe(cfg);
    if (h == 0 && t == 0) return NULL;
    return h >= t ? &th_sense_hwmon_ops : &th_sense_thermal_ops;
}

static int host_probe(const th_sense_config *cfg) { return temp_backend(cfg) ? 60 : 0; }

static void host_close(void *ctx) {
    host_ctx *c = ctx;
    part *parts[] = {&c->temp, &c->energy, &c->util};
    for (int i = 0; i < 3; i++)
        if (parts[i]->ctx) parts[i]->ops->close(parts[i]->ctx);
    th_free(c);
}

static th_status host_open(const th_sense_config *cfg, void **out) {
    const th_sensor_ops *t = temp_backend(cfg);
    if (!t)
        return th_fail(TH_ERR_UNSUPPORTED, "host: no CPU temperature sensor (hwmon or thermal zone) under %s",
                       cfg->root ? cfg->root : "/");
    host_ctx *c = th_calloc(1, sizeof *c);
    if (!c) return th_fail(TH_ERR_NOMEM, "host: out of memory");
    c->temp.ops = t;
    th_status st = t->open(cfg, &c->temp.ctx);
    if (st != TH_OK) {
        th_free(c);
        return st;
    }
    /* RAPL and /proc/stat are optional: a locked energy_uj leaves energy out, and says why */
    if (th_sense_rapl_ops.probe(cfg) > 0) {
        c->energy.ops = &th_sense_rapl_ops;
        if (th_sense_rapl_ops.open(cfg, &c->energy.ctx) != TH_OK) c->energy.ctx = NULL;
    } else {
        char base[512];
        if (th_sense_path(base, sizeof base, cfg->root, "sys/class/powercap") == TH_OK && th_sense_exists(base)) {
            void *probe_ctx = NULL;
            if (th_sense_rapl_ops.open(cfg, &probe_ctx) == TH_OK)
                th_sense_rapl_ops.close(probe_ctx);
            else
                th_log(TH_LOG_WARN, "host: no energy counter: %s", th_last_error());
        }
    }
    if (th_sense_procstat_ops.probe(cfg) > 0) {
        c->util.ops = &th_sense_procstat_ops;
        if (th_sense_procstat_ops.open(cfg, &c->util.ctx) != TH_OK) c->util.ctx = NULL;
    }
    *out = c;
    return TH_OK;
}

static th_status host_read(void *ctx, th_sample *out) {
    host_ctx *c = ctx;
    th_status first = TH_OK;
    th_sense_health fault = TH_HEALTH_OK;
    char msg[512] = "";
    char src[3][96] = {"", "", ""};
    part *parts[] = {&c->temp, &c->energy, &c->util};
    for (int i = 0; i < 3; i++) {
        if (!parts[i]->ctx) continue;
        th_sample s;
        memset(&s, 0, sizeof s);
        th_status st = parts[i]->ops->read(parts[i]->ctx, &s);
        th_fmt(src[i], sizeof src[i], "%s", s.source);
        if (st != TH_OK && first == TH_OK) {
            first = st;
            fault = s.fault;
            th_fmt(msg, sizeof msg, "%s", th_last_error());
        }
        if (s.valid & TH_SAMPLE_TEMP) out->temp_mc = s.temp_mc;
        if (s.valid & TH_SAMPLE_POWER) out->power_uw = s.power_uw;
        if (s.valid & TH_SAMPLE_ENERGY) out->energy_uj = s.energy_uj;
        if (s.valid & TH_SAMPLE_UTIL) out->util = s.util;
        out->valid |= s.valid;
    }
    /* "hwmon:coretemp/Package id 0+rapl:package-0+procstat:cpu", cut to fit */
    size_t w = 0;
    for (int i = 0; i < 3; i++) {
        if (!src[i][0] || w + 1 >= sizeof out->source) continue;
        if (w) out->source[w++] = '+';
        size_t k = strlen(src[i]);
        if (k > sizeof out->source - 1 - w) k = sizeof out->source - 1 - w;
        memcpy(out->source + w, src[i], k);
        w += k;
    }
    out->source[w] = '\0';
    out->origin = TH_ORIGIN_MEASURED;
    out->fault = fault;
    return first == TH_OK ? TH_OK : th_fail(first, "%s", msg);
}

static th_status host_limits(void *ctx, th_sense_limits *out) {
    host_ctx *c = ctx;
    memset(out, 0, sizeof *out);
    return c->temp.ops->limits ? c->temp.ops->limits(c->temp.ctx, out) : TH_OK;
}

const th_sensor_ops th_sense_host_ops = {
    .name = "host",
    .api_version = TH_SENSE_API_VERSION,
    .provides = TH_SAMPLE_TEMP | TH_SAMPLE_POWER | TH_SAMPLE_ENERGY | TH_SAMPLE_UTIL,
    .probe = host_probe,
    .open = host_open,
    .read = host_read,
    .close = host_close,
    .limits = host_limits,
};
