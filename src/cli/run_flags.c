/* run_flags.c: the options every monitored command shares (train, generate, estimate):
 * which sensor and profile, the telemetry log, and the eco factors (region, preset, PUE,
 * overrides, factor files), parsed one way and resolved against the factor tables in one
 * place; and the printing of the report that ends a run (built by the library's th_run_report). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

void cli_run_flags_init(cli_run_flags *f) {
    memset(f, 0, sizeof *f);
    f->run = th_run_opts_default();
    f->pue = NAN;
}

const char *cli_run_flags_help(void) {
    return "thermal control:\n"
           "  --governor NAME         predictive (default), pid, step_wise, bang_bang, none\n"
           "  --temp-limit C          temperature to stay under (default: the device's max operating\n"
           "                          temperature - 2 C, from the plant profile or the sensor)\n"
           "  --duty X                pace at a fixed duty in (0, 1] instead of a governor\n"
           "budgets (the run stops before a unit of work whose projected cost would exceed one):\n"
           "  --budget-j J --budget-wh WH --budget-co2-g G --budget-water-ml ML --budget-s S\n"
           "sensors and telemetry:\n"
           "  --sensor NAME           auto (default), host, nvml, hwmon, thermal, rapl, sim, trace\n"
           "  --profile NAME|FILE     simulated plant profile when no sensor is found (default laptop-cpu)\n"
           "  --sysfs-root DIR        read /sys and /proc under DIR (fixture trees)\n"
           "  --hz N                  sampling rate (default 10)\n"
           "  --telemetry FILE        log samples and steps (CSV, or JSONL for .jsonl)\n"
           "  --tdp-w W               CPU TDP: model power from utilization when no energy or power\n"
           "                          sensor exists (CodeCarbon's curve TDP x (0.1 + 0.9 u^3))\n"
           "eco report (factors: data/factors/*.csv, each with source and year):\n"
           "  --region CODE           grid region (default WORLD); or --grid-g-per-kwh G\n"
           "  --preset NAME           own-machine (default: PUE 1, no on-site water) or datacenter\n"
           "  --pue X --wue L --ewif L --generator-share F --cooling TYPE --methane\n"
           "  --factors FILE          replace a factor table with FILE (same columns); repeatable\n"
           "  --report summary|full   the report after the run: five lines (default), or every figure with\n"
           "                          every factor's source and the EPA equivalences\n"
           "  --report-json FILE      write the run report as JSON\n"
           "  --emissions-csv FILE    append a CodeCarbon-compatible row\n";
}

int cli_run_flag(cli_run_flags *f, const char *cmd, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    if (strcmp(a, "--methane") == 0) {
        f->methane = 1;
        return 1;
    }
    static const char *const with_value[] = {"--budget-j", "--budget-wh", "--budget-co2-g", "--budget-water-ml",
                                             "--budget-s", "--governor", "--temp-limit", "--duty", "--sensor", "--tdp-w", "--profile", "--sysfs-root", "--hz", "--telemetry",
                                             "--region", "--preset", "--cooling", "--pue", "--grid-g-per-kwh",
                                             "--wue", "--ewif", "--generator-share", "--factors", "--report", "--report-json",
                                             "--emissions-csv", NULL};
    int k = 0;
    while (with_value[k] && strcmp(a, with_value[k]) != 0) k++;
    if (!with_value[k]) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "thermo %s: %s needs a value\n", cmd, a);
        return -1;
    }
    const char *v = argv[++*i];
    if (!strncmp(a, "--budget-", 9)) {
        double *dst = !strcmp(a, "--budget-j") ? &f->budget.energy_j
                      : !strcmp(a, "--budget-wh") ? &f->budget.energy_wh
                      : !strcmp(a, "--budget-co2-g") ? &f->budget.co2e_g
                      : !strcmp(a, "--budget-water-ml") ? &f->budget.water_ml : &f->budget.seconds;
        return cli_parse_float(cmd, a, v, 1e-9, 1e15, dst) ? 1 : -1;
    } else if (!strcmp(a, "--governor")) f->run.governor = v;
    else if (!strcmp(a, "--temp-limit")) return cli_parse_float(cmd, a, v, -50, 200, &f->run.temp_limit_c) ? 1 : -1;
    else if (!strcmp(a, "--duty")) return cli_parse_float(cmd, a, v, 0.001, 1, &f->run.fixed_duty) ? 1 : -1;
    else if (!strcmp(a, "--sensor")) f->run.sensor = v;
    else if (!strcmp(a, "--tdp-w")) return cli_parse_float(cmd, a, v, 1, 2000, &f->run.cpu_tdp_w) ? 1 : -1;
    else if (!strcmp(a, "--profile")) f->run.sense.profile = v;
    else if (!strcmp(a, "--sysfs-root")) f->run.sense.root = v;
    else if (!strcmp(a, "--telemetry")) f->run.telemetry_path = v;
    else if (!strcmp(a, "--hz")) return cli_parse_float(cmd, a, v, 0.1, 1000, &f->run.hz) ? 1 : -1;
    else if (!strcmp(a, "--region")) f->region = v;
    else if (!strcmp(a, "--preset")) f->preset = v;
    else if (!strcmp(a, "--cooling")) f->cooling = v;
    else if (!strcmp(a, "--report")) {
        if (strcmp(v, "summary") != 0 && strcmp(v, "full") != 0) {
            fprintf(stderr, "thermo %s: --report %s: expected summary or full\n", cmd, v);
            return -1;
        }
        f->report = !strcmp(v, "full") ? TH_REPORT_FULL : TH_REPORT_SUMMARY;
    } else if (!strcmp(a, "--report-json")) f->report_json = v;
    else if (!strcmp(a, "--emissions-csv")) f->emissions_csv = v;
    else if (!strcmp(a, "--pue")) return cli_parse_float(cmd, a, v, 1, 5, &f->pue) ? 1 : -1;
    else if (!strcmp(a, "--factors")) {
        if (f->n_factor_files == sizeof f->factor_files / sizeof f->factor_files[0]) {
            fprintf(stderr, "thermo %s: too many --factors files (at most 16)\n", cmd);
            return -1;
        }
        f->factor_files[f->n_factor_files++] = v;
    } else {
        cli_factor_override o = {a, TH_ECO_F_GRID_CO2E, 2000, 0};
        if (!strcmp(a, "--wue")) o.id = TH_ECO_F_WUE_SITE, o.hi = 20;
        if (!strcmp(a, "--ewif")) o.id = TH_ECO_F_EWIF, o.hi = 20;
        if (!strcmp(a, "--generator-share")) o.id = TH_ECO_F_GEN_SHARE, o.hi = 1;
        for (int j = 0; j < f->n_overrides; j++)
            if (f->overrides[j].id == o.id) {
                fprintf(stderr, "thermo %s: %s given twice\n", cmd, a);
                return -1;
            }
        if (!cli_parse_float(cmd, a, v, 0, o.hi, &o.value)) return -1;
        f->overrides[f->n_overrides++] = o;
    }
    return 1;
}

int cli_eco_resolve(cli_run_flags *f, const char *cmd) {
    char ctx[64];
    snprintf(ctx, sizeof ctx, "%s: factor tables", cmd);
    for (int k = 0; k < f->n_overrides; k++)
        if (f->overrides[k].id == TH_ECO_F_GRID_CO2E && f->region) {
            fprintf(stderr, "thermo %s: --region and --grid-g-per-kwh exclude each other\n", cmd);
            return EXIT_USAGE;
        }
    th_eco_tables *tables = NULL;
    th_status st = th_eco_tables_load(&tables, NULL);
    if (st != TH_OK) return cli_report(st, ctx);
    for (int k = 0; k < f->n_factor_files && st == TH_OK; k++) st = th_eco_tables_replace(tables, f->factor_files[k]);
    int rc = EXIT_OK;
    if (st != TH_OK) {
        rc = cli_report(st, ctx);
    } else if ((st = th_eco_factors_resolve(tables, f->region, f->preset, &f->factors)) != TH_OK) {
        fprintf(stderr, "thermo %s: %s: %s\n", cmd, strstr(th_last_error(), "unknown region") ? "--region" : "--preset",
                th_last_error());
        rc = EXIT_USAGE;
    } else if (f->cooling && (st = th_eco_factors_set_cooling(tables, &f->factors, f->cooling)) != TH_OK) {
        fprintf(stderr, "thermo %s: --cooling: %s\n", cmd, th_last_error());
        rc = EXIT_USAGE;
    } else if (!isnan(f->pue) && (st = th_eco_factor_set(&f->factors, TH_ECO_F_PUE, f->pue, "--pue")) != TH_OK) {
        rc = cli_report(st, cmd);
    }
    for (int k = 0; k < f->n_overrides && rc == EXIT_OK; k++)
        if ((st = th_eco_factor_set(&f->factors, f->overrides[k].id, f->overrides[k].value, f->overrides[k].flag)) !=
            TH_OK)
            rc = cli_report(st, cmd);
    f->factors.methane_enabled = f->methane;
    f->have_price = rc == EXIT_OK && th_eco_price_of(&f->factors, &f->price) == TH_OK;
    th_eco_tables_free(tables);
    return rc;
}

double cli_live_co2e_g(const cli_run_flags *f, double energy_j) {
    return f->have_price ? energy_j * f->price.g_co2e_per_j : 0.0;
}

int cli_print_footprint_text(const th_eco_footprint *fp, FILE *out) {
    size_t need = 0;
    th_eco_report_text(fp, TH_ECO_TEXT_FULL, NULL, 0, &need);
    char *text = malloc(need + 1);
    if (!text || th_eco_report_text(fp, TH_ECO_TEXT_FULL, text, need + 1, NULL) != TH_OK) {
        free(text);
        return cli_report(th_fail(TH_ERR_NOMEM, "out of memory for the report"), "report");
    }
    fputs(text, out);
    free(text);
    return EXIT_OK;
}

int cli_run_report(const cli_run_flags *f, const char *cmd, const th_run_figures *fig, const cli_run_units *units) {
    th_run_units u = {cmd, units->tokens, units->steps, units->stop_reason, units->wasted_tokens, units->waste_what};
    th_run_report *r = NULL;
    char *text = NULL;
    th_status st = th_run_report_build(fig, &f->factors, &u, &r);
    if (st == TH_OK && (st = th_run_report_text(r, f->report, &text)) == TH_OK) fputs(text, stderr);
    int energy = st == TH_OK && th_run_report_has_energy(r);
    if (energy && f->report_json && (st = th_run_report_write_json(r, f->report_json)) == TH_OK)
        fprintf(stderr, "report written to %s\n", f->report_json);
    if (energy && st == TH_OK && f->emissions_csv && (st = th_run_report_append_emissions(r, f->emissions_csv)) == TH_OK)
        fprintf(stderr, "emissions row appended to %s\n", f->emissions_csv);
    th_free(text);
    th_run_report_free(r);
    return st == TH_OK ? EXIT_OK : cli_report(st, cmd);
}
