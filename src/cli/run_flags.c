/* run_flags.c: the options every monitored command shares (train, generate, estimate):
 * which sensor and profile, the telemetry log, and the eco factors (region, preset, PUE,
 * overrides, factor files), parsed one way and resolved against the factor tables in one
 * place; and the eco report that ends a run (text on stderr, JSON file, emissions.csv). */
#include <jansson.h>
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
                                             "--wue", "--ewif", "--generator-share", "--factors", "--report-json",
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
    else if (!strcmp(a, "--report-json")) f->report_json = v;
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
    th_eco_tables_free(tables);
    return rc;
}

double cli_live_co2e_g(const cli_run_flags *f, double energy_j) {
    const th_eco_factor *F = f->factors.f;
    return energy_j / 3.6e6 * F[TH_ECO_F_PUE].value * F[TH_ECO_F_GRID_CO2E].value;
}

int cli_print_footprint_text(const th_eco_footprint *fp, FILE *out) {
    size_t need = 0;
    th_eco_report_text(fp, NULL, 0, &need);
    char *text = malloc(need + 1);
    if (!text || th_eco_report_text(fp, text, need + 1, NULL) != TH_OK) {
        free(text);
        return cli_report(th_fail(TH_ERR_NOMEM, "out of memory for the report"), "report");
    }
    fputs(text, out);
    free(text);
    return EXIT_OK;
}

int cli_run_report(const cli_run_flags *f, const char *cmd, const th_run_figures *fig, const cli_run_units *units) {
    if (!fig->have_energy) {
        fprintf(stderr, "thermo %s: no energy figure: the sensor %s gave neither an energy counter nor power (%llu "
                        "samples, %llu failed reads)\n", cmd, fig->sensor, (unsigned long long)fig->samples,
                (unsigned long long)fig->failed_reads);
        return EXIT_OK;
    }
    th_eco_footprint fp;
    th_status st = th_eco_footprint_compute(&fig->energy, &f->factors, &fp);
    if (st != TH_OK) return cli_report(st, cmd);
    fprintf(stderr, "\n== eco report: %s ==\n", cmd);
    if (fig->origin == TH_ORIGIN_MODELED)
        fprintf(stderr, "NOTE: no hardware sensor was read; energy and temperature are MODELED by the simulated plant "
                        "(%s), not measured.\n", fig->sensor);
    else if (fig->energy.basis == TH_ECO_BASIS_MODELED)
        fprintf(stderr, "NOTE: energy is MODELED (%s); readings measured by %s\n", fig->energy.source, fig->sensor);
    else
        fprintf(stderr, "energy measured by %s (%s)\n", fig->energy.source, th_eco_basis_name(fig->energy.basis));
    if (!isnan(fig->temp_max_c))
        fprintf(stderr, "temperature: last %.1f C, peak %.1f C (%s); limit %.1f C, %.1f s above it\n", fig->temp_c,
                fig->temp_max_c, fig->origin == TH_ORIGIN_MODELED ? "modeled" : "measured", fig->limit_c,
                fig->above_limit_s);
    double paced = fig->busy_s + fig->idle_s;
    fprintf(stderr, "pacing (%s): %.1f s of idle injected over %.1f s of work, throughput cost %.1f%%%s%s\n",
            fig->governor, fig->idle_s, fig->busy_s, paced > 0 ? 100.0 * fig->idle_s / paced : 0.0,
            fig->fail_safe_decisions ? "; fail-safe decisions: " : "", fig->fail_safe_decisions ? "yes" : "");
    if (fig->governor_status[0]) fprintf(stderr, "governor: %s\n", fig->governor_status);
    int rc = cli_print_footprint_text(&fp, stderr);
    if (rc != EXIT_OK) return rc;
    json_t *per = json_object();
    for (int u = 0; u < 2; u++) {
        double n = u == 0 ? units->tokens : units->steps;
        const char *name = u == 0 ? "token" : "step";
        if (!(n > 0)) continue;
        th_eco_footprint one;
        if (th_eco_footprint_per_unit(&fp, n, &one) != TH_OK) continue;
        fprintf(stderr, "per %-5s %.4g J IT, %.4g mg CO2e, %.4g mL water (%g %ss)\n", name, one.energy_it_kwh * 3.6e6,
                one.co2e_g * 1e3, (one.water_onsite_l + (isnan(one.water_offsite_l) ? 0 : one.water_offsite_l)) * 1e3,
                n, name);
        json_t *o = json_pack("{s:f, s:f, s:f, s:f}", "energy_it_j", one.energy_it_kwh * 3.6e6, "co2e_g", one.co2e_g,
                              "water_onsite_l", one.water_onsite_l, "count", n);
        if (isfinite(one.water_offsite_l)) json_object_set_new(o, "water_offsite_l", json_real(one.water_offsite_l));
        json_object_set_new(per, name, o);
    }
    th_eco_footprint waste;
    int have_waste = 0;
    if (units->wasted_tokens > 0 && units->tokens > 0) {
        th_eco_footprint one;
        if (th_eco_footprint_per_unit(&fp, units->tokens, &one) == TH_OK &&
            th_eco_footprint_per_unit(&one, 1.0 / units->wasted_tokens, &waste) == TH_OK) {
            have_waste = 1;
            fprintf(stderr, "wasted by %s: %.0f tokens, %.4g J, %.4g g CO2e, %.4g mL water\n",
                    units->waste_what ? units->waste_what : "a guard", units->wasted_tokens,
                    waste.energy_it_kwh * 3.6e6, waste.co2e_g,
                    (waste.water_onsite_l + (isnan(waste.water_offsite_l) ? 0 : waste.water_offsite_l)) * 1e3);
        }
    }
    if (f->report_json) {
        void *j = NULL;
        if ((st = th_eco_report_json(&fp, NULL, &j)) != TH_OK) {
            json_decref(per);
            return cli_report(st, cmd);
        }
        json_object_set_new((json_t *)j, "per_unit", per);
        json_object_set_new((json_t *)j, "command", json_string(cmd));
        if (units->stop_reason) json_object_set_new((json_t *)j, "stop_reason", json_string(units->stop_reason));
        if (have_waste)
            json_object_set_new((json_t *)j, "wasted",
                                json_pack("{s:s, s:f, s:f, s:f, s:f}", "by", units->waste_what ? units->waste_what : "",
                                          "tokens", units->wasted_tokens, "energy_it_j", waste.energy_it_kwh * 3.6e6,
                                          "co2e_g", waste.co2e_g, "water_onsite_l", waste.water_onsite_l));
        json_object_set_new((json_t *)j, "measured", json_boolean(fig->origin == TH_ORIGIN_MEASURED &&
                                                                  fig->energy.basis != TH_ECO_BASIS_MODELED));
        if (isfinite(fig->temp_max_c)) json_object_set_new((json_t *)j, "temp_peak_c", json_real(fig->temp_max_c));
        if (isfinite(fig->temp_c)) json_object_set_new((json_t *)j, "temp_last_c", json_real(fig->temp_c));
        json_object_set_new((json_t *)j, "thermal",
                            json_pack("{s:s, s:f, s:f, s:f, s:f, s:I}", "governor", fig->governor, "limit_c",
                                      fig->limit_c, "above_limit_s", fig->above_limit_s, "busy_s", fig->busy_s,
                                      "idle_s", fig->idle_s, "fail_safe_decisions",
                                      (json_int_t)fig->fail_safe_decisions));
        per = NULL;
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", f->report_json);
        int bad = json_dump_file((json_t *)j, tmp, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0 ||
                  rename(tmp, f->report_json) != 0;
        json_decref((json_t *)j);
        if (bad) {
            remove(tmp);
            return cli_report(th_fail(TH_ERR_IO, "cannot write %s", f->report_json), cmd);
        }
        fprintf(stderr, "report written to %s\n", f->report_json);
    }
    json_decref(per);
    if (f->emissions_csv) {
        th_eco_emissions_row row;
        th_eco_emissions_row_init(&row);
        row.project_name = "thermo-adaptive-pipeline";
        row.experiment_id = cmd;
        row.tracking_mode = "process";
        row.cpu_energy_kwh = fp.energy_it_kwh;
        row.cpu_power_w = fig->energy.duration_s > 0 ? fig->energy.energy_j / fig->energy.duration_s : NAN;
        if ((st = th_eco_emissions_csv_append(f->emissions_csv, &fp, &row)) != TH_OK) return cli_report(st, cmd);
        fprintf(stderr, "emissions row appended to %s\n", f->emissions_csv);
    }
    return EXIT_OK;
}
