/* cmd_estimate.c: `thermo estimate`, the planning estimate E = P x N x hours x PUE and its
 * footprint (CO2e, water, pollutants, equivalences) from the factor tables. It is labelled
 * "estimate" everywhere: a plan, never a measurement (DESIGN.md section 6). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "thermo/eco.h"

int cmd_estimate(int argc, char **argv);

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

typedef struct {
    const char *flag;
    th_eco_factor_id id;
    double lo, hi;
    const char *text;
} override;

int cmd_estimate(int argc, char **argv) {
    const char *cmd = "estimate";
    double power_w = 0, devices = 0, hours = 0, pue = 0;
    int have_power = 0, have_devices = 0, have_hours = 0, have_pue = 0, json = 0, methane = 0;
    const char *region = NULL, *preset = NULL, *cooling = NULL;
    const char *factor_files[16];
    size_t n_files = 0;
    override ov[4];
    size_t n_ov = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            estimate_usage(stdout);
            return EXIT_OK;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--methane") == 0) {
            methane = 1;
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
        } else if (strcmp(a, "--pue") == 0) {
            if (!cli_parse_float(cmd, a, argv[++i], 1, 5, &pue)) return EXIT_USAGE;
            have_pue = 1;
        } else if (strcmp(a, "--region") == 0) {
            region = argv[++i];
        } else if (strcmp(a, "--preset") == 0) {
            preset = argv[++i];
        } else if (strcmp(a, "--cooling") == 0) {
            cooling = argv[++i];
        } else if (strcmp(a, "--factors") == 0) {
            if (n_files == sizeof factor_files / sizeof factor_files[0]) {
                fprintf(stderr, "thermo estimate: too many --factors files (at most 16)\n");
                return EXIT_USAGE;
            }
            factor_files[n_files++] = argv[++i];
        } else if (strcmp(a, "--grid-g-per-kwh") == 0 || strcmp(a, "--wue") == 0 || strcmp(a, "--ewif") == 0 ||
                   strcmp(a, "--generator-share") == 0) {
            override o = {a, TH_ECO_F_GRID_CO2E, 0, 2000, argv[++i]};
            if (strcmp(a, "--wue") == 0) o.id = TH_ECO_F_WUE_SITE, o.hi = 20;
            if (strcmp(a, "--ewif") == 0) o.id = TH_ECO_F_EWIF, o.hi = 20;
            if (strcmp(a, "--generator-share") == 0) o.id = TH_ECO_F_GEN_SHARE, o.hi = 1;
            for (size_t k = 0; k < n_ov; k++)
                if (ov[k].id == o.id) {
                    fprintf(stderr, "thermo estimate: %s given twice\n", a);
                    return EXIT_USAGE;
                }
            ov[n_ov++] = o;
        } else {
            fprintf(stderr, "thermo estimate: unknown option: %s\n", a);
            estimate_usage(stderr);
            return EXIT_USAGE;
        }
    }
    const char *missing = !have_power ? "--power-w" : !have_devices ? "--devices" : !have_hours ? "--hours"
                          : !have_pue ? "--pue" : NULL;
    if (missing) {
        fprintf(stderr, "thermo estimate: %s is required\n", missing);
        estimate_usage(stderr);
        return EXIT_USAGE;
    }
    for (size_t k = 0; k < n_ov; k++)
        if (ov[k].id == TH_ECO_F_GRID_CO2E && region) {
            fprintf(stderr, "thermo estimate: --region and --grid-g-per-kwh exclude each other\n");
            return EXIT_USAGE;
        }

    th_eco_tables *tables = NULL;
    th_status st = th_eco_tables_load(&tables, NULL);
    if (st != TH_OK) return cli_report(st, "estimate: factor tables");
    int rc = EXIT_OK;
    for (size_t k = 0; k < n_files && st == TH_OK; k++) st = th_eco_tables_replace(tables, factor_files[k]);
    if (st != TH_OK) {
        rc = cli_report(st, "estimate: --factors");
        goto out;
    }

    th_eco_factors f;
    st = th_eco_factors_resolve(tables, region, preset, &f);
    if (st != TH_OK) {
        fprintf(stderr, "thermo estimate: %s: %s\n", strstr(th_last_error(), "unknown region") ? "--region" : "--preset",
                th_last_error());
        rc = EXIT_USAGE;
        goto out;
    }
    if (cooling && (st = th_eco_factors_set_cooling(tables, &f, cooling)) != TH_OK) {
        fprintf(stderr, "thermo estimate: --cooling: %s\n", th_last_error());
        rc = EXIT_USAGE;
        goto out;
    }
    if ((st = th_eco_factor_set(&f, TH_ECO_F_PUE, pue, "--pue")) != TH_OK) {
        rc = cli_report(st, "estimate");
        goto out;
    }
    for (size_t k = 0; k < n_ov; k++) {
        double v;
        if (!cli_parse_float(cmd, ov[k].flag, ov[k].text, ov[k].lo, ov[k].hi, &v)) {
            rc = EXIT_USAGE;
            goto out;
        }
        if ((st = th_eco_factor_set(&f, ov[k].id, v, ov[k].flag)) != TH_OK) {
            rc = cli_report(st, "estimate");
            goto out;
        }
    }
    f.methane_enabled = methane;

    th_energy_figure it;
    th_eco_footprint fp;
    if ((st = th_energy_estimate(power_w, devices, hours, &it)) != TH_OK ||
        (st = th_eco_footprint_compute(&it, &f, &fp)) != TH_OK) {
        rc = cli_report(st, "estimate");
        goto out;
    }

    if (json) {
        void *o = NULL;
        if ((st = th_eco_report_json(&fp, "estimate", &o)) != TH_OK) {
            rc = cli_report(st, "estimate");
            goto out;
        }
        char *text = json_dumps((json_t *)o, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        json_decref((json_t *)o);
        if (!text) {
            rc = cli_report(th_fail(TH_ERR_NOMEM, "JSON encoding failed"), "estimate");
            goto out;
        }
        printf("%s\n", text);
        free(text);
    } else {
        size_t need = 0;
        th_eco_report_text(&fp, NULL, 0, &need);
        char *text = malloc(need + 1);
        if (!text || th_eco_report_text(&fp, text, need + 1, NULL) != TH_OK) {
            free(text);
            rc = cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "estimate");
            goto out;
        }
        printf("planning estimate (not a measurement): E = %g W x %g devices x %g h x PUE %g\n", power_w, devices, hours,
               pue);
        fputs(text, stdout);
        free(text);
    }
out:
    th_eco_tables_free(tables);
    return rc;
}
