/* sim.c: the "sim" backend, the simulated plant as a real-time sensor. Each read advances
 * the plant by the time elapsed since the previous read at the duty the work loop last
 * published (th_plant_set_duty), then reads the modeled sensor. Every sample is labelled
 * modeled, source "sim:<profile>" (invariant 4). Scores 1: the fallback of last resort. */
#include <stdio.h>
#include <string.h>

#include "sense/sense_internal.h"

#define TH_SIM_DEFAULT_PROFILE "laptop-cpu"

typedef struct {
    th_plant *plant;
    th_sense_clock clock;
} sim_ctx;

static int sim_probe(const th_sense_config *cfg) {
    (void)cfg;
    return 1; /* always possible, never preferred */
}

static th_status sim_open(const th_sense_config *cfg, void **out) {
    th_thermal_profile prof;
    th_status st = th_profile_find(cfg->profile ? cfg->profile : TH_SIM_DEFAULT_PROFILE, &prof);
    if (st != TH_OK) return st;
    sim_ctx *c = th_calloc(1, sizeof *c);
    if (!c) return th_fail(TH_ERR_NOMEM, "sim: out of memory");
    st = th_plant_create(&prof, cfg->seed, &c->plant);
    if (st != TH_OK) {
        th_free(c);
        return st;
    }
    c->clock = th_sense_clock_of(cfg);
    th_plant_advance_to(c->plant, th_sense_clock_now(c->clock));
    *out = c;
    return TH_OK;
}

static th_status sim_read(void *ctx, th_sample *out) {
    sim_ctx *c = ctx;
    uint64_t t = th_sense_clock_now(c->clock);
    th_status st = th_plant_advance_to(c->plant, t);
    if (st != TH_OK) return st;
    return th_plant_read(c->plant, t, out);
}

static void sim_close(void *ctx) {
    sim_ctx *c = ctx;
    th_plant_free(c->plant);
    th_free(c);
}

static th_status sim_limits(void *ctx, th_sense_limits *out) {
    const th_thermal_profile *p = th_plant_profile(((sim_ctx *)ctx)->plant);
    out->max_operating_mc = (int32_t)(p->t_max_operating_c * 1000.0);
    out->slowdown_mc = (int32_t)(p->t_slowdown_c * 1000.0);
    out->shutdown_mc = (int32_t)(p->t_shutdown_c * 1000.0);
    return TH_OK;
}

static void sim_list(void *ctx, double interval_s, th_reading_list *l) {
    (void)interval_s;
    sim_ctx *c = ctx;
    const th_thermal_profile *p = th_plant_profile(c->plant);
    th_sample s;
    memset(&s, 0, sizeof s);
    th_status st = sim_read(ctx, &s);
    const char *err = st == TH_OK ? NULL : th_last_error();
    char src[64], name[96];
    th_fmt(src, sizeof src, "sim:%s", p->name);
    th_fmt(name, sizeof name, "%s temperature", p->name);
    th_reading_add(l, name, TH_KIND_TEMP, src, s.temp_mc / 1000.0, 0, st, err);
    th_fmt(name, sizeof name, "%s power", p->name);
    th_reading_add(l, name, TH_KIND_POWER, src, (double)s.power_uw / 1e6, 0, st, err);
    th_fmt(name, sizeof name, "%s energy", p->name);
    th_reading_add(l, name, TH_KIND_ENERGY, src, (double)s.energy_uj / 1e6, 0, st, err);
    th_fmt(name, sizeof name, "%s duty", p->name);
    th_reading_add(l, name, TH_KIND_UTIL, src, s.util, 0, st, err);
    const char *lim[] = {"max operating", "slowdown", "shutdown"};
    double v[] = {p->t_max_operating_c, p->t_slowdown_c, p->t_shutdown_c};
    for (int i = 0; i < 3; i++) {
        th_fmt(name, sizeof name, "%s %s", p->name, lim[i]);
        th_reading_add(l, name, TH_KIND_LIMIT, src, v[i], 0, TH_OK, NULL);
    }
}

static th_plant *sim_plant(void *ctx) { return ((sim_ctx *)ctx)->plant; }

const th_sensor_ops th_sense_sim_ops = {
    .name = "sim",
    .api_version = TH_SENSE_API_VERSION,
    .provides = TH_SAMPLE_TEMP | TH_SAMPLE_POWER | TH_SAMPLE_ENERGY | TH_SAMPLE_UTIL | TH_SAMPLE_THROTTLE,
    .origin = TH_ORIGIN_MODELED,
    .probe = sim_probe,
    .open = sim_open,
    .read = sim_read,
    .close = sim_close,
    .limits = sim_limits,
    .list = sim_list,
    .plant = sim_plant,
};
