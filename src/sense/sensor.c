/* sensor.c: the backend registry, the sensor handle that wraps one backend, and sensor
 * health. The handle checks every reading for plausibility (a −274 °C zone, a counter
 * running backwards, util above 1 become NONSENSE, never a number the governor trusts)
 * and tracks freshness and change so the governor can tell ok / stale / stuck /
 * vanished / nonsense apart (invariant 2). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sense/sense_internal.h"

/* The registry, in order of preference on ties. */
static const th_sensor_ops *const registry[] = {
    &th_sense_host_ops, &th_sense_nvml_ops,     &th_sense_hwmon_ops, &th_sense_thermal_ops,
    &th_sense_rapl_ops, &th_sense_procstat_ops, &th_sense_trace_ops, &th_sense_sim_ops,
};
#define N_BACKENDS (sizeof registry / sizeof registry[0])

size_t th_sense_backend_count(void) { return N_BACKENDS; }
const char *th_sense_backend_name(size_t i) { return i < N_BACKENDS ? registry[i]->name : NULL; }
int th_sense_backend_probe(size_t i, const th_sense_config *cfg) {
    return i < N_BACKENDS ? registry[i]->probe(cfg) : 0;
}

const char *th_sense_health_name(th_sense_health h) {
    switch (h) {
    case TH_HEALTH_OK: return "ok";
    case TH_HEALTH_STALE: return "stale";
    case TH_HEALTH_STUCK: return "stuck";
    case TH_HEALTH_VANISHED: return "vanished";
    case TH_HEALTH_NONSENSE: return "nonsense";
    }
    return "unknown";
}

th_sense_config th_sense_config_default(void) {
    th_sense_config c;
    memset(&c, 0, sizeof c);
    c.root = "/";
    c.trace_speed = 1.0;
    c.stale_s = TH_SENSE_STALE_S;
    c.stuck_s = TH_SENSE_STUCK_S;
    c.max_power_w = TH_SENSE_MAX_POWER_W;
    return c;
}

th_sense_clock th_sense_clock_of(const th_sense_config *cfg) {
    return (th_sense_clock){cfg->clock_ns, cfg->clock_user};
}

uint64_t th_sense_clock_now(th_sense_clock k) { return k.clock_ns ? k.clock_ns(k.user) : th_now_ns(); }

uint64_t th_sense_now(const th_sense_config *cfg) { return th_sense_clock_now(th_sense_clock_of(cfg)); }

struct th_sensor {
    const th_sensor_ops *ops;
    void *ctx;
    th_sense_config cfg; /* only the numbers and the clock are used after open */
    uint64_t opened_ns;
    uint64_t last_good_ns;
    int have_good;
    int32_t last_temp_mc;
    uint64_t temp_since_ns;
    int have_temp;
    uint64_t last_energy_uj;
    int have_energy;
    th_sense_health fault;
    char fault_msg[256];
    th_origin origin;
};

static const th_sensor_ops *find_backend(const char *name) {
    for (size_t i = 0; i < N_BACKENDS; i++)
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    return NULL;
}

th_status th_sensor_open(const char *name, const th_sense_config *cfg_in, th_sensor **out) {
    th_sense_config cfg = cfg_in ? *cfg_in : th_sense_config_default();
    if (!cfg.root || !*cfg.root) cfg.root = "/";
    if (!(cfg.stale_s > 0)) cfg.stale_s = TH_SENSE_STALE_S;
    if (!(cfg.stuck_s > 0)) cfg.stuck_s = TH_SENSE_STUCK_S;
    if (!(cfg.max_power_w > 0)) cfg.max_power_w = TH_SENSE_MAX_POWER_W;
    const th_sensor_ops *ops = NULL;
    if (!name || strcmp(name, "auto") == 0) {
        int best = 0;
        for (size_t i = 0; i < N_BACKENDS; i++) {
            if (!(registry[i]->provides & TH_SAMPLE_TEMP)) continue; /* the governor needs a temperature */
            int s = registry[i]->probe(&cfg);
            if (s > best) {
                best = s;
                ops = registry[i];
            }
        }
        if (!ops) return th_fail(TH_ERR_UNSUPPORTED, "sensors: no backend can run here");
        th_log(TH_LOG_DEBUG, "sensors: auto-selected backend '%s' (score %d)", ops->name, best);
    } else if (!(ops = find_backend(name))) {
        char names[256];
        int w = 0;
        for (size_t i = 0; i < N_BACKENDS; i++)
            w += snprintf(names + w, sizeof names - (size_t)w, "%s%s", i ? ", " : "", registry[i]->name);
        return th_fail(TH_ERR_INVALID, "sensors: unknown backend '%s' (known: %s)", name, names);
    }
    if (ops->api_version != TH_SENSE_API_VERSION)
        return th_fail(TH_ERR_UNSUPPORTED, "sensors: backend '%s' has API version %d, expected %d", ops->name,
                       ops->api_version, TH_SENSE_API_VERSION);
    th_sensor *s = th_calloc(1, sizeof *s);
    if (!s) return th_fail(TH_ERR_NOMEM, "sensors: out of memory");
    th_status st = ops->open(&cfg, &s->ctx);
    if (st != TH_OK) {
        th_free(s);
        return st;
    }
    s->ops = ops;
    s->cfg = cfg;
    s->cfg.root = s->cfg.profile = s->cfg.trace_path = s->cfg.nvml_lib = s->cfg.zone = NULL; /* not owned */
    s->opened_ns = th_sense_now(&s->cfg);
    s->origin = ops->origin;
    *out = s;
    return TH_OK;
}

void th_sensor_close(th_sensor *s) {
    if (!s) return;
    s->ops->close(s->ctx);
    th_free(s);
}

const char *th_sensor_backend(const th_sensor *s) { return s->ops->name; }
th_origin th_sensor_origin(const th_sensor *s) { return s->origin; }
uint64_t th_sensor_now(const th_sensor *s) { return th_sense_now(&s->cfg); }
th_plant *th_sensor_plant(th_sensor *s) { return s->ops->plant ? s->ops->plant(s->ctx) : NULL; }

th_status th_sensor_limits(th_sensor *s, th_sense_limits *out) {
    memset(out, 0, sizeof *out);
    return s->ops->limits ? s->ops->limits(s->ctx, out) : TH_OK;
}

static th_status nonsense(th_sample *out, uint32_t bit, th_status st, const char *fmt, double v) {
    out->valid &= ~bit;
    out->fault = TH_HEALTH_NONSENSE;
    char msg[200];
    th_fmt(msg, sizeof msg, fmt, v);
    /* the first problem in a read wins */
    return st == TH_OK ? th_fail(TH_ERR_FORMAT, "%s: %s", out->source, msg) : st;
}

th_status th_sensor_read(th_sensor *s, th_sample *out) {
    memset(out, 0, sizeof *out);
    uint64_t now = th_sense_now(&s->cfg);
    th_status st = s->ops->read(s->ctx, out);
    if (!out->t_ns) out->t_ns = now;
    out->origin = s->origin;
    if (st != TH_OK && out->fault == TH_HEALTH_OK) out->fault = TH_HEALTH_STALE;
    th_status bad = TH_OK;
    if ((out->valid & TH_SAMPLE_TEMP) && (out->temp_mc < TH_SENSE_TEMP_MIN_MC || out->temp_mc > TH_SENSE_TEMP_MAX_MC))
        bad = nonsense(out, TH_SAMPLE_TEMP, bad, "temperature %.3f °C is outside the plausible -40..150 °C",
                       out->temp_mc / 1000.0);
    if ((out->valid & TH_SAMPLE_POWER) && (out->power_uw < 0 || (double)out->power_uw > s->cfg.max_power_w * 1e6))
        bad = nonsense(out, TH_SAMPLE_POWER, bad, "power %.3f W is outside the plausible range",
                       (double)out->power_uw / 1e6);
    if ((out->valid & TH_SAMPLE_UTIL) && !(out->util >= 0 && out->util <= 1))
        bad = nonsense(out, TH_SAMPLE_UTIL, bad, "utilization %g is outside 0..1", out->util);
    if ((out->valid & TH_SAMPLE_ENERGY) && s->have_energy && out->energy_uj < s->last_energy_uj)
        bad = nonsense(out, TH_SAMPLE_ENERGY, bad, "energy went backwards to %.6f J", (double)out->energy_uj / 1e6);
    if (st == TH_OK) st = bad;
    if (st != TH_OK) {
        s->fault = out->fault;
        th_fmt(s->fault_msg, sizeof s->fault_msg, "%s", th_last_error());
        return st;
    }
    if (out->valid == 0) return TH_OK; /* nothing new yet (e.g. no jiffy elapsed): not a good read */
    s->fault = TH_HEALTH_OK;
    s->fault_msg[0] = '\0';
    if (!s->have_good || out->t_ns > s->last_good_ns) s->last_good_ns = out->t_ns;
    s->have_good = 1;
    if (out->valid & TH_SAMPLE_TEMP) {
        if (!s->have_temp || out->temp_mc != s->last_temp_mc) {
            s->last_temp_mc = out->temp_mc;
            s->temp_since_ns = out->t_ns;
            s->have_temp = 1;
        }
    }
    if (out->valid & TH_SAMPLE_ENERGY) {
        s->last_energy_uj = out->energy_uj;
        s->have_energy = 1;
    }
    return TH_OK;
}

th_sense_health th_sensor_health(th_sensor *s, char *why, size_t why_len) {
    uint64_t now = th_sense_now(&s->cfg);
    char tmp[320];
    th_sense_health h = TH_HEALTH_OK;
    tmp[0] = '\0';
    uint64_t stale_ns = (uint64_t)(s->cfg.stale_s * 1e9), stuck_ns = (uint64_t)(s->cfg.stuck_s * 1e9);
    if (s->fault == TH_HEALTH_VANISHED || s->fault == TH_HEALTH_NONSENSE) {
        h = s->fault;
        th_fmt(tmp, sizeof tmp, "%s", s->fault_msg);
    } else if (!s->have_good) {
        if (now - s->opened_ns > stale_ns) {
            h = TH_HEALTH_STALE;
            th_fmt(tmp, sizeof tmp, "no good reading in %.1f s since the sensor was opened%s%s",
                   (double)(now - s->opened_ns) / 1e9, s->fault_msg[0] ? ": " : "", s->fault_msg);
        }
    } else if (now > s->last_good_ns && now - s->last_good_ns > stale_ns) {
        h = TH_HEALTH_STALE;
        th_fmt(tmp, sizeof tmp, "last good reading %.1f s ago (limit %.1f s)%s%s",
               (double)(now - s->last_good_ns) / 1e9, s->cfg.stale_s, s->fault_msg[0] ? ": " : "", s->fault_msg);
    } else if (s->have_temp && s->last_good_ns - s->temp_since_ns >= stuck_ns) {
        h = TH_HEALTH_STUCK;
        th_fmt(tmp, sizeof tmp, "temperature stuck at %.3f °C for %.1f s (limit %.1f s)", s->last_temp_mc / 1000.0,
               (double)(s->last_good_ns - s->temp_since_ns) / 1e9, s->cfg.stuck_s);
    }
    if (why && why_len) th_fmt(why, why_len, "%s", tmp);
    return h;
}

/* ---------------------------------------------------------------------------------
 * listing */

static th_status list_backend(const th_sensor_ops *ops, const th_sense_config *cfg, double interval_s,
                              th_reading_list *l) {
    void *ctx = NULL;
    th_status st = ops->open(cfg, &ctx);
    if (st == TH_ERR_UNSUPPORTED) return TH_OK;
    if (st != TH_OK) {
        char src[64];
        th_fmt(src, sizeof src, "%s", ops->name);
        th_reading_kind kind = ops == &th_sense_rapl_ops ? TH_KIND_ENERGY : TH_KIND_TEMP;
        th_reading_add(l, ops->name, kind, src, NAN, ops != &th_sense_sim_ops, st, th_last_error());
        return TH_OK;
    }
    if (ops->list) ops->list(ctx, interval_s, l);
    ops->close(ctx);
    return TH_OK;
}

static th_status finish_list(th_reading_list *l, th_reading **out, size_t *n) {
    if (l->err != TH_OK) {
        th_free(l->v);
        return th_fail(TH_ERR_NOMEM, "sensors: out of memory listing readings");
    }
    *out = l->v;
    *n = l->n;
    return TH_OK;
}

th_status th_sense_list(const th_sense_config *cfg_in, double interval_s, th_reading **out, size_t *n) {
    th_sense_config cfg = cfg_in ? *cfg_in : th_sense_config_default();
    if (!cfg.root || !*cfg.root) cfg.root = "/";
    if (!(cfg.max_power_w > 0)) cfg.max_power_w = TH_SENSE_MAX_POWER_W;
    th_reading_list l = {0};
    const th_sensor_ops *measured[] = {&th_sense_thermal_ops, &th_sense_hwmon_ops, &th_sense_rapl_ops,
                                       &th_sense_nvml_ops};
    for (size_t i = 0; i < sizeof measured / sizeof measured[0]; i++) list_backend(measured[i], &cfg, interval_s, &l);
    /* utilization alone is not a sensor worth reporting as "found": list it only beside others */
    if (l.n > 0) list_backend(&th_sense_procstat_ops, &cfg, interval_s, &l);
    return finish_list(&l, out, n);
}

th_status th_sense_list_sim(const th_sense_config *cfg_in, th_reading **out, size_t *n) {
    th_sense_config cfg = cfg_in ? *cfg_in : th_sense_config_default();
    th_reading_list l = {0};
    void *ctx = NULL;
    th_status st = th_sense_sim_ops.open(&cfg, &ctx);
    if (st != TH_OK) return st;
    th_sense_sim_ops.list(ctx, 0, &l);
    th_sense_sim_ops.close(ctx);
    return finish_list(&l, out, n);
}
