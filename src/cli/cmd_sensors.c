/* cmd_sensors.c: `thermo sensors`: every temperature, power, energy and utilization
 * reading this machine offers (thermal zones, hwmon, RAPL, NVML, /proc/stat), with its
 * source and unit, as a table or a JSON array. With no hardware sensor it says so plainly
 * and shows the simulated plant's readings, marked modeled (invariant 4). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "thermo/sense.h"

static const char *kind_name(th_reading_kind k) {
    switch (k) {
    case TH_KIND_TEMP: return "temperature";
    case TH_KIND_POWER: return "power";
    case TH_KIND_ENERGY: return "energy";
    case TH_KIND_UTIL: return "utilization";
    case TH_KIND_LIMIT: return "limit";
    }
    return "?";
}

static void print_table(const th_reading *r, size_t n) {
    printf("%-44s %-12s %-40s %14s  %s\n", "NAME", "KIND", "SOURCE", "VALUE", "ORIGIN");
    for (size_t i = 0; i < n; i++) {
        const char *origin = r[i].measured ? "measured" : "modeled";
        if (r[i].status != TH_OK) {
            printf("%-44s %-12s %-40s %14s  %s: %s\n", r[i].name, kind_name(r[i].kind), r[i].source, "-", origin,
                   r[i].message);
            continue;
        }
        char v[64];
        if (r[i].kind == TH_KIND_UTIL)
            snprintf(v, sizeof v, "%.3f", r[i].value);
        else if (r[i].kind == TH_KIND_ENERGY)
            snprintf(v, sizeof v, "%.3f J", r[i].value);
        else
            snprintf(v, sizeof v, "%.3f %s", r[i].value, r[i].unit);
        printf("%-44s %-12s %-40s %14s  %s\n", r[i].name, kind_name(r[i].kind), r[i].source, v, origin);
    }
}

static int append_json(json_t *arr, const th_reading *r, size_t n) {
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:s, s:b}", "name", r[i].name, "kind", kind_name(r[i].kind),
                              "source", r[i].source, "value",
                              r[i].status == TH_OK && isfinite(r[i].value) ? json_real(r[i].value) : json_null(),
                              "unit", r[i].unit, "measured", r[i].measured);
        if (!o) return 0;
        if (r[i].status != TH_OK) json_object_set_new(o, "error", json_string(r[i].message));
        json_array_append_new(arr, o);
    }
    return 1;
}

int cmd_sensors(int argc, char **argv) {
    th_sense_config cfg = th_sense_config_default();
    int json = 0;
    const char *profile = "laptop-cpu";
    const cli_opt opts[] = {
        CLI_O_STR("--sysfs-root", "DIR", &cfg.root, "read DIR/sys and DIR/proc instead of / (fixture trees, containers)"),
        CLI_O_STR("--profile", "P", &profile, "simulated plant shown when no hardware sensor is found (default laptop-cpu)"),
        CLI_O_FLAG("--json", &json, "print a JSON array of {name, kind, source, value, unit, measured}"),
        {0},
    };
    cli_cmd c = {.name = "sensors", .synopsis = "[--sysfs-root DIR] [--profile NAME|FILE] [--json]", .tables = {opts}};
    int rc = cli_parse(&c, argc, argv);
    if (rc != CLI_GO) return rc;
    cfg.profile = profile;
    th_reading *real = NULL, *sim = NULL;
    size_t n_real = 0, n_sim = 0;
    /* 0.2 s between counter reads, so RAPL power and CPU utilization are current */
    th_status st = th_sense_list(&cfg, 0.2, &real, &n_real);
    if (st != TH_OK) return cli_report(st, "sensors");
    size_t ok = 0;
    for (size_t i = 0; i < n_real; i++) ok += real[i].status == TH_OK && real[i].kind != TH_KIND_LIMIT;
    if (ok == 0) {
        st = th_sense_list_sim(&cfg, &sim, &n_sim);
        if (st != TH_OK) {
            th_free(real);
            return cli_report(st, "sensors: simulated profile");
        }
    }
    rc = EXIT_OK;
    if (json) {
        json_t *arr = json_array();
        if (arr && (!append_json(arr, real, n_real) || !append_json(arr, sim, n_sim))) json_decref(arr), arr = NULL;
        rc = cli_print_json(arr, JSON_INDENT(2), "sensors");
        if (ok == 0)
            fprintf(stderr, "thermo sensors: no hardware sensors found under %s, using simulated profile %s\n", cfg.root,
                    profile);
    } else {
        if (n_real) print_table(real, n_real);
        if (ok == 0) {
            printf("%sno hardware sensors found under %s, using simulated profile %s "
                   "(modeled readings, not measured):\n",
                   n_real ? "\n" : "", cfg.root, profile);
            print_table(sim, n_sim);
        }
    }
    th_free(real);
    th_free(sim);
    return rc;
}
