/* common.c: the guards' shared vocabulary: mode and action names, the cost vector and
 * its pricing with the eco price per joule, and FNV-1a. */
#include <math.h>
#include <string.h>

#include "thermo/guard.h"

const char *th_guard_mode_name(th_guard_mode m) {
    switch (m) {
    case TH_GUARD_OFF: return "off";
    case TH_GUARD_WARN: return "warn";
    case TH_GUARD_STOP: return "stop";
    }
    return "?";
}

th_status th_guard_mode_parse(const char *text, th_guard_mode *out) {
    static const th_guard_mode modes[] = {TH_GUARD_OFF, TH_GUARD_WARN, TH_GUARD_STOP};
    for (size_t i = 0; text && i < sizeof modes / sizeof modes[0]; i++)
        if (strcmp(text, th_guard_mode_name(modes[i])) == 0) {
            *out = modes[i];
            return TH_OK;
        }
    return th_fail(TH_ERR_INVALID, "guard mode '%s' is not one of stop, warn, off", text ? text : "(null)");
}

const char *th_guard_action_name(th_guard_action a) {
    switch (a) {
    case TH_GUARD_CONTINUE: return "continue";
    case TH_GUARD_WARNED: return "warned";
    case TH_GUARD_SKIP: return "skip";
    case TH_GUARD_ROLLBACK: return "rollback";
    case TH_GUARD_HALT: return "stop";
    case TH_GUARD_REFUSE: return "refuse";
    }
    return "?";
}

void th_guard_cost_priced(double energy_j, double seconds, const th_eco_price *p, th_guard_cost *out) {
    if (!(energy_j >= 0) || !isfinite(energy_j)) energy_j = 0.0;
    if (!(seconds >= 0) || !isfinite(seconds)) seconds = 0.0;
    th_guard_cost c = {energy_j, 0, 0, seconds};
    if (p) {
        c.co2e_g = energy_j * p->g_co2e_per_j;
        c.water_ml = energy_j * p->ml_water_per_j;
    }
    *out = c;
}

void th_guard_cost_of_units(const th_eco_footprint *per_unit, double units, th_guard_cost *out) {
    out->energy_j = per_unit->energy_it_kwh * TH_J_PER_KWH * units;
    out->co2e_g = per_unit->co2e_g * units;
    out->water_ml = (per_unit->water_onsite_l + per_unit->water_offsite_l) * 1000.0 * units;
    out->seconds = 0;
}

uint64_t th_fnv1a64(const void *data, size_t len) {
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
