/* cmd_bench_eco.c: `thermo bench eco`: rates models benchmarked together by quality per
 * joule, per gram CO2e and per litre of water. The method (checks, steady prefill and decode
 * windows, per-1k-query footprint, rating) and its documents are pipeline's th_bench_eco;
 * this file parses the command line, calls it, and prints or writes what it returns. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static void eco_usage(FILE *f) {
    fprintf(f,
            "usage: thermo bench eco --models M1 [M2 ...] --data FILE [options]\n"
            "Rates models by quality (perplexity, bits per byte on FILE) per joule, gram CO2e and\n"
            "litre of water, inside a monitored run per model (energy: the run's ledger).\n"
            "  --models M ...     model paths (HF dir, .safetensors, llm.c .bin, checkpoint)\n"
            "  --data FILE        held-out text: scored for perplexity; its first lines are the prompts\n"
            "  --ctx N            perplexity window (default: each model's context)\n"
            "  --prompts N        prompts (default 4), each run greedy and seeded: 2N queries\n"
            "  --decode N         tokens decoded per query (default 32)\n"
            "  --min-seconds S    length of each steady measurement window (default 1)\n"
            "  --seed N           sampling seed (default 1337); --threads N\n"
            "  --json [FILE]      one JSON object on stdout (or written to FILE) instead of a table\n"
            "  --html FILE        a self-contained report: table and quality-vs-energy scatter\n"
            "Rating: 1-5 stars by Wh per 1,000 queries among the rated models (five equal bands of\n"
            "their min-max range, as AI Energy Score), and the Pareto front of perplexity vs energy.\n"
            "The governor defaults to none here (--governor to pace): pacing would be charged to the model.\n"
            "%s",
            cli_run_flags_help());
}

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
    const char *models[TH_BENCH_ECO_MAX_MODELS], *data = NULL, *html = NULL, *json_path = NULL;
    int n_models = 0, json = 0;
    long ctx = 0, prompts, decode, seed, threads = 0;
    th_bench_eco_opts o = th_bench_eco_defaults();
    prompts = o.prompts, decode = o.decode, seed = (long)o.seed;
    cli_run_flags rf;
    cli_run_flags_init(&rf);
    rf.run = o.run; // 50 Hz and no governor unless asked for (see th_bench_eco_defaults)
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            eco_usage(stdout);
            return EXIT_OK;
        }
        if (!strcmp(a, "--json")) {
            json = 1;
            if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) json_path = argv[++i];
            continue;
        }
        if (!strcmp(a, "--models")) {
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
                if (n_models == TH_BENCH_ECO_MAX_MODELS) {
                    fprintf(stderr, "thermo bench eco: at most %d models\n", TH_BENCH_ECO_MAX_MODELS);
                    return EXIT_USAGE;
                }
                models[n_models++] = argv[++i];
            }
            continue;
        }
        int r = cli_run_flag(&rf, "bench eco", argc, argv, &i);
        if (r < 0) return EXIT_USAGE;
        if (r > 0) continue;
        if (i + 1 >= argc) {
            fprintf(stderr, "thermo bench eco: unknown option or missing value: %s\n", a);
            eco_usage(stderr);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        int ok = 1;
        if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--html")) html = v;
        else if (!strcmp(a, "--ctx")) ok = cli_parse_int("bench eco", a, v, 2, 1 << 20, &ctx);
        else if (!strcmp(a, "--prompts")) ok = cli_parse_int("bench eco", a, v, 1, TH_BENCH_ECO_MAX_PROMPTS, &prompts);
        else if (!strcmp(a, "--decode")) ok = cli_parse_int("bench eco", a, v, 1, 1 << 16, &decode);
        else if (!strcmp(a, "--seed")) ok = cli_parse_int("bench eco", a, v, 0, 0x7fffffffffffffffL, &seed);
        else if (!strcmp(a, "--threads")) ok = cli_parse_int("bench eco", a, v, 1, 1024, &threads);
        else if (!strcmp(a, "--min-seconds")) ok = cli_parse_float("bench eco", a, v, 0.01, 3600, &o.min_s);
        else {
            fprintf(stderr, "thermo bench eco: unknown option %s\n", a);
            eco_usage(stderr);
            return EXIT_USAGE;
        }
        if (!ok) return EXIT_USAGE;
    }
    if (n_models == 0 || !data) {
        fprintf(stderr, "thermo bench eco: --models and --data are required\n");
        eco_usage(stderr);
        return EXIT_USAGE;
    }
    if (threads > 0) th_threads_set((int)threads);
    int rc = cli_eco_resolve(&rf, "bench eco");
    if (rc != EXIT_OK) return rc;
    o.run = rf.run;
    o.factors = &rf.factors;
    o.ctx = (int)ctx, o.prompts = (int)prompts, o.decode = (int)decode, o.seed = (uint64_t)seed;
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
