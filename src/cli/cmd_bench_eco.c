/* cmd_bench_eco.c: `thermo bench eco`: rates models benchmarked together by quality per
 * joule, per gram CO2e and per litre of water. The method (checks, steady prefill and decode
 * windows, per-1k-query footprint, rating) and its documents are pipeline's th_bench_eco;
 * this file parses the command line, calls it, and prints or writes what it returns. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

/* Prints or writes the result as asked; returns an exit code. */
static int eco_output(const th_bench_eco_result *r, int json, const char *json_path, const char *html) {
    char *text = NULL;
    th_status st = TH_OK;
    if (json && json_path) st = th_bench_eco_write_json(r, json_path);
    else if (json && (st = th_bench_eco_json(r, &text)) == TH_OK) printf("%s\n", text);
    else if (!json && (st = th_bench_eco_table(r, &text)) == TH_OK) fputs(text, stdout);
    th_free(text);
    if (st != TH_OK) return cli_report(st, json ? "bench eco --json" : "bench eco");
    if (html && (st = th_bench_eco_write_html(r, html)) != TH_OK) return cli_report(st, "bench eco --html");
    return EXIT_OK;
}

int cmd_bench_eco(int argc, char **argv) {
    const char *models[TH_BENCH_ECO_MAX_MODELS], *data = NULL, *html = NULL, *json_arg = NULL;
    int n_models = 0, threads = 0;
    th_bench_eco_opts o = th_bench_eco_defaults();
    int dtype = TH_DTYPE_F32;
    cli_run_flags rf;
    cli_run_flags_init(&rf);
    rf.run = o.run; // 50 Hz and no governor unless asked for (see th_bench_eco_defaults)
    const cli_opt opts[] = {
        CLI_O_LIST("--models", "M", models, TH_BENCH_ECO_MAX_MODELS, &n_models,
                   "model paths (HF dir, .safetensors, llm.c .bin, checkpoint)"),
        CLI_O_STR("--data", "FILE", &data, "held-out text: scored for perplexity; its first lines are the prompts"),
        CLI_O_INT("--ctx", "N", &o.ctx, 2, 1 << 20, "perplexity window (default: each model's context)"),
        CLI_O_INT("--prompts", "N", &o.prompts, 1, TH_BENCH_ECO_MAX_PROMPTS,
                  "prompts (default 4), each run greedy and seeded: 2N queries"),
        CLI_O_INT("--decode", "N", &o.decode, 1, 1 << 16, "tokens decoded per query (default 32)"),
        CLI_O_DBL("--min-seconds", "S", &o.min_s, 0.01, 3600, "length of each steady measurement window (default 1)"),
        CLI_O_U64("--seed", "N", &o.seed, 0, 0x7fffffffffffffffL, "sampling seed (default 1337)"),
        CLI_O_INT("--threads", "N", &threads, 1, 1024, "compute threads (default: all cores)"),
        CLI_O_INT("--repeats", "N", &o.repeats, 1, TH_BENCH_ECO_MAX_REPEATS,
                  "measure each window N times; figures are the median and min-max (default 5)"),
        CLI_O_STR("--names", "A,B,...", &o.names, "short names for the models, in order (default: directory names)"),
        CLI_O_CHOICE("--dtype", &dtype, th_dtype_names, NULL,
                     "inference precision the models run at: f32 (default), bf16, f16, q8"),
        CLI_O_DBL("--quality-band", "X", &o.quality_band, 0, 99,
                  "rate against each other only models within +X of the best bits/byte (default 0.10)"),
        CLI_O_DBL("--flag-energy-ratio", "K", &o.flag_energy_ratio, 1.0001, 1e5,
                  "flag a front model costing >= K x its cheaper neighbour's energy ... (default 3)"),
        CLI_O_DBL("--flag-min-gain", "G", &o.flag_min_gain, 1e-9, 0.999,
                  "... for a relative bits/byte gain under G (default 0.01)"),
        CLI_O_OPTSTR("--json", "[FILE]", &json_arg, "one JSON object on stdout (or written to FILE) instead of a table"),
        CLI_O_STR("--html", "FILE", &html, "a self-contained report: table and quality-vs-energy scatter"),
        {0},
    };
    cli_cmd c = {.name = "bench eco",
                 .synopsis = "--models M1 [M2 ...] --data FILE [options]",
                 .about = "Rates models by quality (perplexity, bits per byte on FILE) per joule, gram CO2e and\n"
                          "litre of water, inside a monitored run per model (energy: the run's ledger).\n",
                 .tables = {opts, rf.run_opts, rf.eco_opts},
                 .epilog = "Rating: models within --quality-band of the best bits/byte are rated against each other\n"
                           "(the others: not comparable: quality); 1-5 stars by median Wh per 1,000 queries (five\n"
                           "equal bands of their range, as AI Energy Score), one band where energy ranges overlap;\n"
                           "the table is sorted by bits/byte saved over the uniform baseline per Wh/1k queries; the\n"
                           "Pareto front of bits/byte vs energy, its neighbours flagged by the --flag-* rule.\n"
                           "The governor defaults to none here (--governor to pace): pacing would be charged to the "
                           "model.\n"};
    int rc = cli_parse(&c, argc, argv);
    if (rc != CLI_GO) return rc;
    o.precision = th_dtype_names[dtype];
    if (n_models == 0 || !data) {
        fprintf(stderr, "thermo bench eco: --models and --data are required (thermo bench eco --help)\n");
        return EXIT_USAGE;
    }
    if (threads > 0) th_threads_set(threads);
    if ((rc = cli_eco_resolve(&rf, "bench eco")) != EXIT_OK) return rc;
    o.run = rf.run;
    o.factors = &rf.factors;
    int json = json_arg != NULL;
    const char *json_path = json && json_arg[0] ? json_arg : NULL;
    char *text = NULL;
    size_t len = 0;
    th_status st = th_read_file(data, &text, &len);
    if (st != TH_OK) return cli_report(st, "bench eco --data");
    th_bench_eco_result *res = NULL;
    st = th_bench_eco(models, n_models, text, len, &o, &res);
    th_free(text);
    if (st != TH_OK) return cli_report(st, "bench eco");
    rc = eco_output(res, json, json_path, html);
    th_bench_eco_free(res);
    return rc;
}
