/* cmd_estimate.c: `thermo estimate`, the planning estimate E = P x N x hours x PUE and its
 * footprint (CO2e, water, pollutants, equivalences) from the factor tables. It is labelled
 * "estimate" everywhere: a plan, never a measurement (DESIGN.md section 6). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "thermo/eco.h"

/* One storage term of the plan: bytes on a medium, replicated, for some hours. */
typedef struct {
    const char *label, *medium;
    double gb, replicas, hours, pue;
    th_eco_storage_charge charge;
    th_eco_hardware hw;
} storage_term;

/* Prices a term with the medium's rows; returns an exit code. */
static int storage_price(storage_term *s, const th_eco_embodied_table *t, const th_eco_factors *f, const char *flag) {
    char spec[32];
    snprintf(spec, sizeof spec, "store:%s", s->medium);
    s->pue = f->f[TH_ECO_F_PUE].value;
    th_status st = th_eco_hardware_parse(t, spec, NULL, 0, &s->hw);
    if (st == TH_OK)
        st = th_eco_storage_charge_compute(&s->hw, s->gb * 1e9, s->replicas, s->hours * 3600.0, f->f[TH_ECO_F_PUE].value,
                                           f->f[TH_ECO_F_GRID_CO2E].value, &s->charge);
    if (st != TH_OK) {
        fprintf(stderr, "thermo estimate: %s: %s\n", flag, th_last_error());
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

static void storage_print(const storage_term *s) {
    const th_eco_storage_charge *c = &s->charge;
    printf("%s (estimate): %g GB on %s x %g replicas x %g h x PUE %g\n", s->label, s->gb, s->medium, s->replicas, s->hours,
           s->pue);
    printf("  %-26s %.4g kWh (low %.4g, high %.4g)  [%s, %s]\n", "energy (facility)", c->energy_kwh.mid, c->energy_kwh.lo,
           c->energy_kwh.hi, s->hw.medium_energy.source, s->hw.medium_energy.year);
    printf("  %-26s %.4g g CO2e (low %.4g, high %.4g)\n", "operational", c->co2e_g.mid, c->co2e_g.lo, c->co2e_g.hi);
    printf("  %-26s %.4g g CO2e (low %.4g, high %.4g)  [%s, %s; life %.3g y]\n", "embodied", c->embodied_g.mid,
           c->embodied_g.lo, c->embodied_g.hi, s->hw.medium_embodied.source, s->hw.medium_embodied.year,
           s->hw.medium_embodied.life_y);
    printf("  %-26s %.4g g CO2e (low %.4g, high %.4g)\n", "total", c->total_g.mid, c->total_g.lo, c->total_g.hi);
}

static json_t *range_json(th_eco_range g) { return json_pack("{s:f, s:f, s:f}", "low", g.lo, "central", g.mid, "high", g.hi); }

static json_t *storage_json(const storage_term *s) {
    const th_eco_storage_charge *c = &s->charge;
    return json_pack("{s:s, s:f, s:f, s:f, s:o, s:o, s:o, s:o, s:s, s:s}", "medium", s->medium, "gb", s->gb, "replicas",
                     s->replicas, "hours", s->hours, "energy_facility_kwh", range_json(c->energy_kwh), "co2e_g",
                     range_json(c->co2e_g), "embodied_g", range_json(c->embodied_g), "total_g", range_json(c->total_g),
                     "energy_source", s->hw.medium_energy.source, "embodied_source", s->hw.medium_embodied.source);
}


int cmd_estimate(int argc, char **argv) {
    const char *cmd = "estimate";
    double power_w = NAN, hours = NAN;
    long devices = 0;
    int json = 0;
    storage_term store = {.label = "storage", .medium = "ssd", .replicas = 1, .hours = NAN};
    storage_term index = {.label = "retrieval index", .medium = "dram", .replicas = 1, .hours = NAN};
    const char *store_media = NULL, *index_media = NULL;
    cli_run_flags ef;
    cli_run_flags_init(&ef);
    const cli_opt opts[] = {
        CLI_O_DBL("--power-w", "W", &power_w, 1e-9, 100000, "mean power per device, watts (0 < W <= 100000)"),
        CLI_O_LONG("--devices", "N", &devices, 1, 10000000, "number of devices (1 .. 1e7)"),
        CLI_O_DBL("--hours", "H", &hours, 1e-9, 1e6, "wall-clock hours (0 < H <= 1e6)"),
        CLI_O_FLAG("--json", &json, "one JSON object instead of text"),
        CLI_O_HEAD("storage and memory systems (bytes x replicas x kWh/TB-year x hours x PUE, + embodied)"),
        CLI_O_DBL("--storage-gb", "GB", &store.gb, 1e-9, 1e12, "datasets, checkpoints, caches kept (GB)"),
        CLI_O_DBL("--storage-replicas", "N", &store.replicas, 1, 100, "copies kept (default 1)"),
        CLI_O_DBL("--storage-hours", "H", &store.hours, 1e-9, 1e7, "hours kept (default --hours)"),
        CLI_O_STR("--storage-medium", "ssd|hdd", &store_media, "where they are kept (default ssd)"),
        CLI_O_DBL("--index-gb", "GB", &index.gb, 1e-9, 1e12, "retrieval (vector) index size (GB)"),
        CLI_O_DBL("--index-replicas", "N", &index.replicas, 1, 100, "index copies (default 1)"),
        CLI_O_DBL("--index-hours", "H", &index.hours, 1e-9, 1e7, "hours the index is served (default --hours)"),
        CLI_O_STR("--index-medium", "dram|ssd|hdd", &index_media, "where the index is held (default dram)"),
        {0},
    };
    cli_cmd c = {.name = cmd, .synopsis = "--power-w W --devices N --hours H --pue X [options]",
                 .about = "  E_IT = W x N x H; E_facility = E_IT x PUE; CO2e = E_facility x grid intensity\n",
                 .tables = {opts, ef.eco_opts}};
    int rc = cli_parse(&c, argc, argv);
    if (rc != CLI_GO) return rc;
    const char *missing = isnan(power_w) ? "--power-w" : !devices ? "--devices" : isnan(hours) ? "--hours"
                          : isnan(ef.pue) ? "--pue" : NULL;
    if (missing) {
        fprintf(stderr, "thermo estimate: %s is required (thermo estimate --help)\n", missing);
        return EXIT_USAGE;
    }
    rc = cli_eco_resolve(&ef, cmd);
    if (rc != EXIT_OK) return rc;
    th_status st;
    double pue = ef.pue;
    th_eco_factors f = ef.factors;

    th_energy_figure it;
    th_eco_footprint fp;
    if ((st = th_energy_estimate(power_w, (double)devices, hours, &it)) != TH_OK ||
        (st = th_eco_footprint_compute(&it, &f, &fp)) != TH_OK)
        return cli_report(st, "estimate");

    if (store_media) store.medium = store_media;
    if (index_media) index.medium = index_media;
    if (isnan(store.hours)) store.hours = hours;
    if (isnan(index.hours)) index.hours = hours;
    storage_term *terms[2] = {store.gb > 0 ? &store : NULL, index.gb > 0 ? &index : NULL};
    if (terms[0] || terms[1]) {
        th_eco_embodied_table *t = NULL;
        if ((st = th_eco_embodied_load(NULL, &t)) != TH_OK) return cli_report(st, "estimate: embodied table");
        for (int k = 0; k < 2 && rc == EXIT_OK; k++)
            if (terms[k]) rc = storage_price(terms[k], t, &f, k ? "--index-medium" : "--storage-medium");
        th_eco_embodied_free(t);
        if (rc != EXIT_OK) return rc;
    }
    th_eco_range total = th_eco_range_point(fp.co2e_g);
    for (int k = 0; k < 2; k++)
        if (terms[k]) total = th_eco_range_add(total, terms[k]->charge.total_g);

    if (json) {
        void *o = NULL;
        if ((st = th_eco_report_json(&fp, "estimate", &o)) != TH_OK) return cli_report(st, "estimate");
        int bad = 0;
        if (terms[0]) bad |= json_object_set_new(o, "storage", storage_json(terms[0]));
        if (terms[1]) bad |= json_object_set_new(o, "retrieval_index", storage_json(terms[1]));
        if (terms[0] || terms[1]) bad |= json_object_set_new(o, "co2e_total_g", range_json(total));
        if (bad) {
            json_decref(o);
            return cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "estimate");
        }
        return cli_print_json(o, JSON_INDENT(2) | JSON_REAL_PRECISION(10), "estimate");
    }
    printf("planning estimate (not a measurement): E = %g W x %g devices x %g h x PUE %g\n", power_w, (double)devices, hours,
           pue);
    rc = cli_print_footprint_text(&fp, stdout);
    for (int k = 0; k < 2; k++)
        if (terms[k]) storage_print(terms[k]);
    if (terms[0] || terms[1])
        printf("total: %.4g g CO2e (low %.4g, high %.4g): compute %.4g + storage and index terms\n", total.mid, total.lo,
               total.hi, fp.co2e_g);
    return rc;
}
