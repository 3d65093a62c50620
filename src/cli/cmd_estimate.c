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


int cmd_estimate(int argc, char **argv) {
    const char *cmd = "estimate";
    double power_w = NAN, hours = NAN;
    long devices = 0;
    int json = 0;
    cli_run_flags ef;
    cli_run_flags_init(&ef);
    const cli_opt opts[] = {
        CLI_O_DBL("--power-w", "W", &power_w, 1e-9, 100000, "mean power per device, watts (0 < W <= 100000)"),
        CLI_O_LONG("--devices", "N", &devices, 1, 10000000, "number of devices (1 .. 1e7)"),
        CLI_O_DBL("--hours", "H", &hours, 1e-9, 1e6, "wall-clock hours (0 < H <= 1e6)"),
        CLI_O_FLAG("--json", &json, "one JSON object instead of text"),
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

    if (json) {
        void *o = NULL;
        if ((st = th_eco_report_json(&fp, "estimate", &o)) != TH_OK) return cli_report(st, "estimate");
        return cli_print_json(o, JSON_INDENT(2) | JSON_REAL_PRECISION(10), "estimate");
    }
    printf("planning estimate (not a measurement): E = %g W x %g devices x %g h x PUE %g\n", power_w, (double)devices, hours,
           pue);
    return cli_print_footprint_text(&fp, stdout);
}
