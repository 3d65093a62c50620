/* cmd_bench_governor.c: `thermo bench governor`: every governor on the simulated plant in
 * simulated time, across scenarios and profiles (see th_bench_governor), as a table or a
 * JSON array. Reached as `thermo bench governor` (cmd_bench.c). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "thermo/govern.h"


static const char *const shipped_profiles[] = {"laptop-cpu", "desktop-cpu", "server-cpu",
                                                "rtx-4090",   "a100-sxm4",   "h100-sxm"};

int cmd_bench_governor(int argc, char **argv) {
    const char *profile_arg = NULL, *scenario_arg = NULL, *governor_arg = NULL, *traces = NULL;
    int json = 0;
    th_bench_gov_opts o = th_bench_gov_defaults();
    static const char *const objective_names[] = {"throughput", "energy", NULL};
    static const int objective_values[] = {TH_GOV_OBJ_THROUGHPUT, TH_GOV_OBJ_ENERGY};
    int objective = TH_GOV_OBJ_THROUGHPUT;
    const cli_opt opts[] = {
        CLI_O_STR("--profile", "NAME|FILE", &profile_arg, "one profile (default: the six shipped ones)"),
        CLI_O_STR("--scenario", "NAME", &scenario_arg,
                  "steady, ambient_step, cooling_degraded, bursty, long_training,\n"
                  "grad_spikes_planted (default: all)"),
        CLI_O_STR("--governor", "NAME", &governor_arg, "none, bang_bang, step_wise, pid, predictive (default: all)"),
        CLI_O_DBL("--limit", "C", &o.limit_c, -40, 150, "temperature limit (default: the profile's t_max_operating_c - 2)"),
        CLI_O_CHOICE("--objective", &objective, objective_names, objective_values,
                     "throughput (default): predictive maximizes work; energy: the duty with\nthe lowest modeled J/work under the limit"),
        CLI_O_DBL("--margin", "C", &o.margin_c, 0, 19.99,
                  "predictive: aim C under the limit (default 1.2); 0: derived from the sensor\n"
                  "(3 σ of its Kalman estimate: >= 0.99 of optimal when steady, seconds above on a change)"),
        CLI_O_DBL("--guard", "C", &o.guard_c, 0, 19.99,
                  "predictive: held this far under the limit on top of its derived margin, against\n"
                  "a change no sensor has shown yet (default 0; the causal bound's margin gives 0 s above)"),
        CLI_O_U64("--seed", "N", &o.seed, 0, 1L << 30, "sensor noise and burst pattern seed (default 1)"),
        CLI_O_STR("--traces", "DIR", &traces,
                  "write DIR/<scenario>__<profile>__<governor>.csv (1 row per\n"
                  "simulated second: t_s,temp_c,sensor_c,duty,power_w,work)"),
        CLI_O_FLAG("--json", &json, "print a JSON array of result objects"),
        {0},
    };
    cli_cmd c = {.name = "bench governor", .synopsis = "[options]",
                 .about = "Runs every governor on the SIMULATED thermal plant in simulated time (hours of\n"
                          "scenario in seconds) and reports, per scenario and governor: seconds above the\n"
                          "limit, maximum overshoot, work versus the oracle constant duty, energy per unit\n"
                          "of work and the measured cost of one decision.\n",
                 .tables = {opts}};
    int rc = cli_parse(&c, argc, argv);
    if (rc != CLI_GO) return rc;
    o.objective = objective;
    rc = EXIT_OK;
    if (scenario_arg && th_scenario_parse(scenario_arg) < 0) {
        fprintf(stderr, "thermo bench governor: unknown scenario '%s'\n", scenario_arg);
        return EXIT_USAGE;
    }
    size_t k = 0;
    while (governor_arg && k < th_governor_count() && strcmp(th_governor_name(k), governor_arg) != 0) k++;
    if (governor_arg && k == th_governor_count()) {
        fprintf(stderr, "thermo bench governor: unknown governor '%s'\n", governor_arg);
        return EXIT_USAGE;
    }
    if (traces && !cli_mkdir_p(traces)) {
        fprintf(stderr, "thermo bench governor: cannot create %s: %s\n", traces, strerror(errno));
        return EXIT_FAILURE_RUN;
    }

    size_t n_prof = profile_arg ? 1 : sizeof shipped_profiles / sizeof shipped_profiles[0];
    json_t *arr = json_array();
    if (!json) {
        printf("thermo bench governor: SIMULATED plant (th_plant, modeled, not measured), simulated time,\n"
               "sensor at 10 Hz (lagged, noisy, quantized); limit = t_max_operating_c - 2 unless --limit.\n"
               "above_s = simulated seconds the DIE (the plant's true temperature, not the sensor) was above\n"
               "the limit; over_C = the die's largest excess over it (0 when never above); max_C = the die's\n"
               "peak. sens_s = seconds the sensor's reading was above it (what a user would see).\n"
               "work_frac = work / work of the oracle constant duty that holds the limit at steady state;\n"
               "vs_opt = work / the optimal control bound (full duty to the limit, then hold it, plant known);\n"
               "vs_cau = work / the causal bound: the same, held as far under the limit as the die rises before\n"
               "the lagged, quantized sensor can show a mid-run change (= vs_opt without a change);\n"
               "race_J, pace_J = J/work of the same work done race-to-idle / pace-to-cool, plant known.\n"
               "grad_spikes_planted: a PLANTED coupling (power follows each gradient-norm spike %.0f s later,\n"
               "as if the duty were %.1fx); predictive+ff is given that coupling, predictive is not. The\n"
               "other scenarios' plant has no coupling.\n\n",
               TH_PLANTED_LAG_S, 1.0 + TH_PLANTED_GAIN);
        printf("%-30s %-11s %8s %8s %8s %9s %8s %7s %9s %8s %8s %7s %8s %7s %6s %6s\n", "scenario", "governor", "above_s", "over_C",
               "max_C", "work_frac", "vs_opt", "vs_cau", "J/work", "race_J", "pace_J", "thr_s", "dec_us", "sens_s", "margin", "alarms");
    }
    for (size_t pi = 0; pi < n_prof && rc == EXIT_OK; pi++) {
        th_thermal_profile prof;
        th_status st = th_profile_find(profile_arg ? profile_arg : shipped_profiles[pi], &prof);
        if (st != TH_OK) {
            rc = cli_report(st, "bench governor");
            break;
        }
        for (int k = 0; k < TH_SCEN_COUNT && rc == EXIT_OK; k++) {
            if (scenario_arg && th_scenario_parse(scenario_arg) != k) continue;
            /* the planted scenario gets one more row: predictive with the planted coupling */
            size_t n_rows = th_governor_count() + (k == TH_SCEN_GRAD_SPIKES_PLANTED);
            for (size_t gi = 0; gi < n_rows; gi++) {
                int ff = gi == th_governor_count();
                const char *gname = ff ? "predictive" : th_governor_name(gi);
                if (governor_arg && strcmp(governor_arg, gname) != 0) continue;
                o.feed_forward = ff;
                char path[4096];
                if (traces) {
                    snprintf(path, sizeof path, "%s/%s__%s__%s%s.csv", traces, th_scenario_name(k), prof.name, gname,
                             ff ? "+ff" : "");
                    o.trace_path = path;
                }
                th_bench_gov_result r;
                st = th_bench_governor(&prof, (th_scenario_kind)k, gname, &o, &r);
                if (st != TH_OK) {
                    rc = cli_report(st, "bench governor");
                    break;
                }
                json_t *j = json_pack(
                    "{s:s, s:s, s:s, s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I}",
                    "scenario", r.scenario, "governor", r.governor, "profile", prof.name, "plant",
                    k == TH_SCEN_GRAD_SPIKES_PLANTED ? "simulated, planted coupling" : "simulated",
                    "limit_c", r.limit_c, "duration_s", r.duration_s, "above_limit_s", r.above_limit_s,
                    "max_overshoot_c", r.max_overshoot_c, "max_temp_c", r.max_temp_c, "work", r.work, "oracle_work",
                    r.oracle_work, "oracle_duty", r.oracle_duty, "work_fraction", r.work_fraction, "energy_j",
                    r.energy_j, "energy_per_work_j", isfinite(r.energy_per_work_j) ? r.energy_per_work_j : -1.0,
                    "throttled_s", r.throttled_s, "fail_safe_s", r.fail_safe_s, "mean_duty", r.mean_duty,
                    "decision_us", r.decision_us, "decisions", (json_int_t)r.decisions);
                json_object_set_new(j, "work_vs_optimal", json_real(r.work_vs_optimal));
                json_object_set_new(j, "optimal_work", json_real(r.optimal_work));
                json_object_set_new(j, "causal_margin_c", json_real(r.causal_margin_c));
                json_object_set_new(j, "work_vs_causal", json_real(r.work_vs_causal));
                json_object_set_new(j, "margin_c", isfinite(r.margin_c) ? json_real(r.margin_c) : json_null());
                json_object_set_new(j, "alarms", json_integer(r.alarms));
                json_object_set_new(j, "sensor_above_limit_s", json_real(r.sensor_above_s));
                json_object_set_new(j, "race_to_idle_j_per_work", json_real(r.race_energy_per_work_j));
                json_object_set_new(j, "pace_to_cool_j_per_work", json_real(r.pace_energy_per_work_j));
                json_array_append_new(arr, j);
                if (!json)
                    printf("%-30s %-11s %8.1f %8.2f %8.2f %9.3f %8.3f %7.3f %9.1f %8.1f %8.1f %7.1f %8.3f %7.1f %6.2f %6ld\n", r.scenario,
                           r.governor, r.above_limit_s, r.max_overshoot_c, r.max_temp_c, r.work_fraction,
                           r.work_vs_optimal, r.work_vs_causal, r.energy_per_work_j, r.race_energy_per_work_j, r.pace_energy_per_work_j,
                           r.throttled_s, r.decision_us, r.sensor_above_s, r.margin_c, r.alarms);
            }
        }
    }
    if (json && rc == EXIT_OK) return cli_print_json(arr, JSON_REAL_PRECISION(6) | JSON_INDENT(1), "bench governor");
    json_decref(arr);
    return rc;
}
