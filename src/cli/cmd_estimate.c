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


static void estimate_usage(FILE *f) {
    fprintf(f,
            "usage: thermo estimate --power-w W --devices N --hours H --pue X [options]\n"
            "  E_IT = W x N x H; E_facility = E_IT x PUE; CO2e = E_facility x grid intensity\n"
            "  --power-w W             mean power per device, watts (0 < W <= 100000)\n"
            "  --devices N             number of devices (1 .. 1e7)\n"
            "  --hours H               wall-clock hours (0 < H <= 1e6)\n"
            "  --pue X                 power usage effectiveness (1 .. 5)\n"
            "  --region CODE           grid region from the factor table (default WORLD); or\n"
            "  --grid-g-per-kwh G      grid intensity, g CO2e/kWh (0 .. 2000)\n"
            "  --preset NAME           own-machine (default: on-site water 0) or datacenter\n"
            "  --cooling TYPE          on-site WUE from the cooling table (none, closed-loop-dry, ...)\n"
            "  --wue L                 on-site water, L per kWh of IT energy (0 .. 20)\n"
            "  --ewif L                off-site water, L per kWh at power plants (0 .. 20)\n"
            "  --generator-share F     share of energy from diesel backup generators (0 .. 1)\n"
            "  --methane               add upstream methane for the gas share of the grid\n"
            "  --factors FILE          replace a factor table with FILE (same columns); repeatable\n"
            "  --json                  one JSON object instead of text\n");
}

int cmd_estimate(int argc, char **argv) {
    const char *cmd = "estimate";
    double power_w = 0, devices = 0, hours = 0;
    int have_power = 0, have_devices = 0, have_hours = 0, json = 0;
    cli_run_flags ef;
    cli_run_flags_init(&ef);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            estimate_usage(stdout);
            return EXIT_OK;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if ((r = cli_run_flag(&ef, cmd, argc, argv, &i)) != 0) {
            if (r < 0) return EXIT_USAGE;
        } else if (i + 1 >= argc) {
            fprintf(stderr, "thermo estimate: unknown option or missing value: %s\n", a);
            estimate_usage(stderr);
            return EXIT_USAGE;
        } else if (strcmp(a, "--power-w") == 0) {
            if (!cli_parse_float(cmd, a, argv[++i], 1e-9, 100000, &power_w)) return EXIT_USAGE;
            have_power = 1;
        } else if (strcmp(a, "--devices") == 0) {
            long n;
            if (!cli_parse_int(cmd, a, argv[++i], 1, 10000000, &n)) return EXIT_USAGE;
            devices = (double)n;
            have_devices = 1;
        } else if (strcmp(a, "--hours") == 0) {
            if (!cli_parse_float(cmd, a, argv[++i], 1e-9, 1e6, &hours)) return EXIT_USAGE;
            have_hours = 1;
        } else {
            fprintf(stderr, "thermo estimate: unknown option: %s\n", a);
            estimate_usage(stderr);
            return EXIT_USAGE;
        }
    }
    const char *missing = !have_power ? "--power-w" : !have_devices ? "--devices" : !have_hours ? "--hours"
                          : isnan(ef.pue) ? "--pue" : NULL;
    if (missing) {
        fprintf(stderr, "thermo estimate: %s is required\n", missing);
        estimate_usage(stderr);
        return EXIT_USAGE;
    }
    int rc = cli_eco_resolve(&ef, cmd);
    if (rc != EXIT_OK) return rc;
    th_status st;
    double pue = ef.pue;
    th_eco_factors f = ef.factors;

    th_energy_figure it;
    th_eco_footprint fp;
    if ((st = th_energy_estimate(power_w, devices, hours, &it)) != TH_OK ||
        (st = th_eco_footprint_compute(&it, &f, &fp)) != TH_OK)
        return cli_report(st, "estimate");

    if (json) {
        void *o = NULL;
        if ((st = th_eco_report_json(&fp, "estimate", &o)) != TH_OK) return cli_report(st, "estimate");
        char *text = json_dumps((json_t *)o, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        json_decref((json_t *)o);
        if (!text) return cli_report(th_fail(TH_ERR_NOMEM, "JSON encoding failed"), "estimate");
        printf("%s\n", text);
        free(text);
        return EXIT_OK;
    }
    printf("planning estimate (not a measurement): E = %g W x %g devices x %g h x PUE %g\n", power_w, devices, hours,
           pue);
    return cli_print_footprint_text(&fp, stdout);
}
