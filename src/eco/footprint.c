/* footprint.c: the ledger's arithmetic. From IT energy and a resolved factor set:
 *   facility = IT x PUE; grid = facility x (1 - s); generator = facility x s
 *   CO2e = facility x grid intensity [+ grid x gas share x upstream methane, if enabled]
 *   water = IT x WUE_site (on-site) + facility x EWIF (off-site, at power plants)
 *   NOx/SO2/PM2.5 = grid x regional rate + generator x genset limit
 *   equivalences = CO2e / EPA factors
 * per-unit divisions, and the same rules as prices per joule. Pure functions: no I/O. */
#include <math.h>
#include <string.h>

#include "thermo/eco.h"

th_status th_eco_footprint_compute(const th_energy_figure *it, const th_eco_factors *f, th_eco_footprint *out) {
    if (!it || !f || !out) return th_fail(TH_ERR_INVALID, "footprint: NULL argument");
    if (!(it->energy_j >= 0.0) || !isfinite(it->energy_j))
        return th_fail(TH_ERR_INVALID, "footprint: IT energy %g J from %s is not a finite non-negative number", it->energy_j,
                       it->source);
    const th_eco_factor *F = f->f;
    if (!F[TH_ECO_F_GRID_CO2E].available) return th_fail(TH_ERR_INVALID, "footprint: no grid intensity for region %s", f->region);
    if (!F[TH_ECO_F_PUE].available) return th_fail(TH_ERR_INVALID, "footprint: no PUE");
    if (!F[TH_ECO_F_WUE_SITE].available) return th_fail(TH_ERR_INVALID, "footprint: no on-site WUE");

    memset(out, 0, sizeof *out);
    out->it = *it;
    out->factors = *f;
    double share = F[TH_ECO_F_GEN_SHARE].available ? F[TH_ECO_F_GEN_SHARE].value : 0.0;
    out->energy_it_kwh = it->energy_j / TH_J_PER_KWH;
    out->energy_facility_kwh = out->energy_it_kwh * F[TH_ECO_F_PUE].value;
    out->energy_generator_kwh = out->energy_facility_kwh * share;
    out->energy_grid_kwh = out->energy_facility_kwh - out->energy_generator_kwh;

    out->co2e_g = out->energy_facility_kwh * F[TH_ECO_F_GRID_CO2E].value;
    if (f->methane_enabled) {
        if (!F[TH_ECO_F_METHANE].available || !F[TH_ECO_F_GAS_SHARE].available)
            return th_fail(TH_ERR_INVALID, "footprint: upstream methane is on but region %s has no gas share (no generation mix)",
                           f->region);
        out->co2e_methane_g = out->energy_grid_kwh * F[TH_ECO_F_GAS_SHARE].value * F[TH_ECO_F_METHANE].value;
        out->co2e_g += out->co2e_methane_g;
    }

    out->water_onsite_l = out->energy_it_kwh * F[TH_ECO_F_WUE_SITE].value;
    out->water_offsite_l = F[TH_ECO_F_EWIF].available ? out->energy_facility_kwh * F[TH_ECO_F_EWIF].value : NAN;

    out->gen_nox_g = out->energy_generator_kwh * F[TH_ECO_F_GEN_NOX].value;
    out->gen_pm25_g = out->energy_generator_kwh * F[TH_ECO_F_GEN_PM25].value;
    /* A grid part with no sourced rate makes the total unknown, unless no energy came from the grid. */
    const th_eco_factor_id grid_ids[3] = {TH_ECO_F_GRID_NOX, TH_ECO_F_GRID_SO2, TH_ECO_F_GRID_PM25};
    const double gen_part[3] = {out->gen_nox_g, 0.0, out->gen_pm25_g};
    double *totals[3] = {&out->nox_g, &out->so2_g, &out->pm25_g};
    for (int i = 0; i < 3; i++) {
        const th_eco_factor *g = &F[grid_ids[i]];
        if (g->available)
            *totals[i] = out->energy_grid_kwh * g->value + gen_part[i];
        else
            *totals[i] = out->energy_grid_kwh > 0.0 ? NAN : gen_part[i];
    }

    double co2e_t = out->co2e_g * 1e-6;
    out->cars_year = co2e_t / F[TH_ECO_F_CAR_YEAR].value;
    out->forest_acres = co2e_t / F[TH_ECO_F_FOREST_ACRE_YEAR].value;
    out->homes_energy_year = co2e_t / F[TH_ECO_F_HOME_ENERGY_YEAR].value;
    out->homes_electricity_year = co2e_t / F[TH_ECO_F_HOME_ELEC_YEAR].value;
    return TH_OK;
}

th_status th_eco_price_of(const th_eco_factors *f, th_eco_price *out) {
    if (!f || !out) return th_fail(TH_ERR_INVALID, "price: NULL argument");
    const th_eco_factor *F = f->f;
    if (!F[TH_ECO_F_GRID_CO2E].available) return th_fail(TH_ERR_INVALID, "price: no grid intensity for region %s", f->region);
    if (!F[TH_ECO_F_PUE].available) return th_fail(TH_ERR_INVALID, "price: no PUE");
    if (!F[TH_ECO_F_WUE_SITE].available) return th_fail(TH_ERR_INVALID, "price: no on-site WUE");
    double pue = F[TH_ECO_F_PUE].value;
    double g_per_kwh_it = pue * F[TH_ECO_F_GRID_CO2E].value;
    if (f->methane_enabled) {
        if (!F[TH_ECO_F_METHANE].available || !F[TH_ECO_F_GAS_SHARE].available)
            return th_fail(TH_ERR_INVALID, "price: upstream methane is on but region %s has no gas share (no generation mix)",
                           f->region);
        double grid_part = 1.0 - (F[TH_ECO_F_GEN_SHARE].available ? F[TH_ECO_F_GEN_SHARE].value : 0.0);
        g_per_kwh_it += pue * grid_part * F[TH_ECO_F_GAS_SHARE].value * F[TH_ECO_F_METHANE].value;
    }
    double l_per_kwh_it = F[TH_ECO_F_WUE_SITE].value;
    out->water_known = F[TH_ECO_F_EWIF].available;
    if (out->water_known) l_per_kwh_it += pue * F[TH_ECO_F_EWIF].value;
    out->g_co2e_per_j = g_per_kwh_it / TH_J_PER_KWH;
    out->ml_water_per_j = l_per_kwh_it * 1000.0 / TH_J_PER_KWH;
    return TH_OK;
}

th_status th_eco_footprint_per_unit(const th_eco_footprint *fp, double units, th_eco_footprint *out) {
    if (!fp || !out) return th_fail(TH_ERR_INVALID, "per-unit footprint: NULL argument");
    if (!(units > 0.0) || !isfinite(units)) return th_fail(TH_ERR_INVALID, "per-unit footprint: unit count %g must be > 0", units);
    th_eco_footprint r = *fp;
    double k = 1.0 / units;
    r.it.energy_j *= k;
    r.it.duration_s *= k;
    double *x[] = {&r.energy_it_kwh,  &r.energy_facility_kwh, &r.energy_grid_kwh, &r.energy_generator_kwh,
                   &r.co2e_g,         &r.co2e_methane_g,      &r.water_onsite_l,  &r.water_offsite_l,
                   &r.nox_g,          &r.so2_g,               &r.pm25_g,          &r.gen_nox_g,
                   &r.gen_pm25_g,     &r.cars_year,           &r.forest_acres,    &r.homes_energy_year,
                   &r.homes_electricity_year};
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) *x[i] *= k;
    *out = r;
    return TH_OK;
}
