/* run_flags.c: the options every monitored command shares (train, session, generate,
 * bench eco; estimate takes the eco ones): the governor, budgets, sensor and telemetry, the
 * report, and the eco factors (region, preset, PUE, overrides, factor files), as two option
 * tables resolved against the factor tables in one place; and the printing of the report
 * that ends a run (built by the library's th_run_report). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"

const char *const cli_guard_modes[] = {"stop", "warn", "off", NULL};
const int cli_guard_mode_values[] = {TH_GUARD_STOP, TH_GUARD_WARN, TH_GUARD_OFF};

static const char *const report_names[] = {"summary", "full", NULL};
static const int report_values[] = {TH_REPORT_SUMMARY, TH_REPORT_FULL};

/* Which factor each override sets, and the flag that names it in the report's sources. */
static const struct {
    const char *flag;
    th_eco_factor_id id;
} override_ids[CLI_OV_COUNT] = {{"--grid-g-per-kwh", TH_ECO_F_GRID_CO2E},
                                {"--wue", TH_ECO_F_WUE_SITE},
                                {"--ewif", TH_ECO_F_EWIF},
                                {"--generator-share", TH_ECO_F_GEN_SHARE}};

void cli_run_flags_init(cli_run_flags *f) {
    memset(f, 0, sizeof *f);
    f->run = th_run_opts_default();
    f->pue = NAN;
    for (int k = 0; k < CLI_OV_COUNT; k++) f->overrides[k] = NAN;
    f->report = TH_REPORT_SUMMARY;
    th_run_opts *r = &f->run;
    th_budget_config *b = &f->budget;
    const cli_opt run[] = {
        CLI_O_HEAD("thermal control"),
        CLI_O_STR("--governor", "NAME", &r->governor, "predictive (default), pid, step_wise, bang_bang, none"),
        CLI_O_DBL("--temp-limit", "C", &r->temp_limit_c, -50, 200,
                  "temperature to stay under (default: the device's max operating\n"
                  "temperature - 2 C, from the plant profile or the sensor)"),
        CLI_O_DBL("--duty", "X", &r->fixed_duty, 0.001, 1, "pace at a fixed duty in (0, 1] instead of a governor"),
        CLI_O_DBL("--gov-margin", "C", &r->gov_margin_c, 0, 20,
                  "predictive: aim C under the limit (default 1.2); 0: derived from the sensor\n"
                  "(tighter when steady; seconds above the limit on an unannounced change)"),
        CLI_O_STR("--coupling", "FILE", &r->coupling_path,
                  "a coupling analysis (thermo analyze's datasheet.json) measured on this\n"
                  "machine: the predictive governor lowers the duty ahead of the heat a\n"
                  "gradient-norm spike predicts, if |r_peak| >= 0.5 and t_lag < 0"),
        CLI_O_HEAD("budgets (the run stops before a unit of work whose projected cost would exceed one)"),
        CLI_O_DBL("--budget-j", "J", &b->energy_j, 1e-9, 1e15, "energy, joules"),
        CLI_O_DBL("--budget-wh", "WH", &b->energy_wh, 1e-9, 1e15, "energy, watt-hours"),
        CLI_O_DBL("--budget-co2-g", "G", &b->co2e_g, 1e-9, 1e15, "grams CO2e"),
        CLI_O_DBL("--budget-water-ml", "ML", &b->water_ml, 1e-9, 1e15, "millilitres of water"),
        CLI_O_DBL("--budget-s", "S", &b->seconds, 1e-9, 1e15, "wall-clock seconds"),
        CLI_O_HEAD("sensors and telemetry"),
        CLI_O_STR("--sensor", "NAME", &r->sensor, "auto (default), host, nvml, hwmon, thermal, rapl, sim, trace"),
        CLI_O_STR("--profile", "NAME|FILE", &r->sense.profile,
                  "simulated plant profile when no sensor is found (default laptop-cpu)"),
        CLI_O_STR("--sysfs-root", "DIR", &r->sense.root, "read /sys and /proc under DIR (fixture trees)"),
        CLI_O_DBL("--hz", "N", &r->hz, 0.1, 1000, "sampling rate (default 10)"),
        CLI_O_STR("--telemetry", "FILE", &r->telemetry_path, "log samples and steps (CSV, or JSONL for .jsonl)"),
        CLI_O_DBL("--tdp-w", "W", &r->cpu_tdp_w, 1, 2000,
                  "CPU TDP: model power from utilization when no energy or power\n"
                  "sensor exists (CodeCarbon's curve TDP x (0.1 + 0.9 u^3))"),
        CLI_O_HEAD("run report"),
        CLI_O_CHOICE("--report", &f->report, report_names, report_values,
                     "the report after the run: five lines (default), or every figure with\n"
                     "every factor's source and the EPA equivalences"),
        CLI_O_STR("--report-json", "FILE", &f->report_json, "write the run report as JSON"),
        CLI_O_STR("--emissions-csv", "FILE", &f->emissions_csv, "append a CodeCarbon-compatible row"),
        CLI_O_STR("--hardware", "SPEC", &f->hardware,
                  "devices whose embodied carbon the run is charged, by held time:\n"
                  "cpu:NAME,gpu:h100*8,dram-gb:24,ssd-tb:1,hdd-tb:X,server:NAME, host,\n"
                  "share:F, replicas:N, store:ssd|hdd, CLASS-life-y:Y (default: host CPU\n"
                  "and memory; rows in data/factors/embodied.csv)"),
    };
    const cli_opt eco[] = {
        CLI_O_HEAD("eco factors (data/factors/*.csv, each with source and year)"),
        CLI_O_STR("--region", "CODE", &f->region, "grid region from the factor table (default WORLD); or"),
        CLI_O_DBL("--grid-g-per-kwh", "G", &f->overrides[CLI_OV_GRID], 0, 2000, "grid intensity, g CO2e/kWh"),
        CLI_O_STR("--preset", "NAME", &f->preset, "own-machine (default: PUE 1, no on-site water) or datacenter"),
        CLI_O_DBL("--pue", "X", &f->pue, 1, 5, "power usage effectiveness"),
        CLI_O_STR("--cooling", "TYPE", &f->cooling, "on-site WUE from the cooling table (none, closed-loop-dry, ...)"),
        CLI_O_DBL("--wue", "L", &f->overrides[CLI_OV_WUE], 0, 20, "on-site water, L per kWh of IT energy"),
        CLI_O_DBL("--ewif", "L", &f->overrides[CLI_OV_EWIF], 0, 20, "off-site water, L per kWh at power plants"),
        CLI_O_DBL("--generator-share", "F", &f->overrides[CLI_OV_GEN_SHARE], 0, 1,
                  "share of energy from diesel backup generators"),
        CLI_O_FLAG("--methane", &f->methane, "add upstream methane for the gas share of the grid"),
        CLI_O_REPEAT("--factors", "FILE", f->factor_files, 16, &f->n_factor_files,
                     "replace a factor table with FILE (same columns); repeatable"),
    };
    _Static_assert(sizeof run < sizeof f->run_opts, "run_opts keeps a terminator");
    _Static_assert(sizeof eco < sizeof f->eco_opts, "eco_opts keeps a terminator");
    memcpy(f->run_opts, run, sizeof run);
    memcpy(f->eco_opts, eco, sizeof eco);
}

/* The embodied table and the devices: --hardware, or the host's CPU and memory. */
static int resolve_hardware(cli_run_flags *f, const char *cmd) {
    th_eco_embodied_table *t = NULL;
    th_status st = th_eco_embodied_load(NULL, &t);
    if (st != TH_OK) {
        char ctx[64];
        snprintf(ctx, sizeof ctx, "%s: embodied table", cmd);
        return cli_report(st, ctx);
    }
    char cpu[256] = "";
    th_cpu_name(cpu, sizeof cpu);
    st = th_eco_hardware_parse(t, f->hardware, cpu, th_eco_host_dram_gb(), &f->hw);
    th_eco_embodied_free(t);
    if (st != TH_OK) {
        fprintf(stderr, "thermo %s: %s\n", cmd, th_last_error());
        return EXIT_USAGE;
    }
    return EXIT_OK;
}

int cli_eco_resolve(cli_run_flags *f, const char *cmd) {
    char ctx[64];
    snprintf(ctx, sizeof ctx, "%s: factor tables", cmd);
    if (f->region && !isnan(f->overrides[CLI_OV_GRID])) {
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
    for (int k = 0; k < CLI_OV_COUNT && rc == EXIT_OK; k++)
        if (!isnan(f->overrides[k]) &&
            (st = th_eco_factor_set(&f->factors, override_ids[k].id, f->overrides[k], override_ids[k].flag)) != TH_OK)
            rc = cli_report(st, cmd);
    f->factors.methane_enabled = f->methane;
    th_eco_tables_free(tables);
    if (rc == EXIT_OK) rc = resolve_hardware(f, cmd);
    return rc;
}

int cli_print_footprint_text(const th_eco_footprint *fp, FILE *out) {
    size_t need = 0;
    th_eco_report_text(fp, TH_ECO_TEXT_FULL, NULL, 0, &need);
    char *text = th_alloc(need + 1);
    if (!text || th_eco_report_text(fp, TH_ECO_TEXT_FULL, text, need + 1, NULL) != TH_OK) {
        th_free(text);
        return cli_report(th_fail(TH_ERR_NOMEM, "out of memory for the report"), "report");
    }
    fputs(text, out);
    th_free(text);
    return EXIT_OK;
}

int cli_run_report(const cli_run_flags *f, const char *cmd, const th_run_figures *fig, const cli_run_units *units) {
    return cli_run_report_kept(f, cmd, fig, units, NULL);
}

int cli_run_report_kept(const cli_run_flags *f, const char *cmd, const th_run_figures *fig, const cli_run_units *units,
                        const char *kept_path) {
    th_run_units u = {cmd, units->tokens, units->steps, units->stop_reason, units->wasted_tokens, units->waste_what};
    th_run_report *r = NULL;
    char *text = NULL;
    th_status st = th_run_report_build(fig, &f->factors, &u, &r);
    if (st == TH_OK && fig->have_energy) {
        th_eco_kept kept;
        memset(&kept, 0, sizeof kept);
        if (kept_path) {
            char dir[4200];
            snprintf(dir, sizeof dir, "%s", kept_path);
            struct stat sb;
            char *slash = strrchr(dir, '/');
            if (stat(dir, &sb) == 0 && S_ISREG(sb.st_mode)) slash ? (void)(*slash = '\0') : (void)snprintf(dir, sizeof dir, ".");
            st = th_eco_kept_scan(&kept, dir);
        }
        if (st == TH_OK) st = th_run_report_add_embodied(r, &f->hw, &kept);
    }
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
