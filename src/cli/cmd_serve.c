/* cmd_serve.c: `thermo serve`: the inference server (serve.h) on the command line. Runs
 * until SIGINT or SIGTERM, then finishes in-flight requests for a few seconds, cancels the
 * rest and prints the session's energy report as the other monitored commands do. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "thermo/serve.h"

static th_server *active;
static void on_signal(int sig) {
    (void)sig;
    if (active) th_server_request_stop(active);
}

static void serve_usage(FILE *f) {
    fprintf(f,
            "usage: thermo serve --model DIR [options]\n"
            "  --model DIR|FILE     Hugging Face GPT-2 directory, llm.c .bin or thermo checkpoint\n"
            "  --host ADDR          IPv4 address to bind (default 127.0.0.1: this machine only)\n"
            "  --port N             port (default 8080; 0: any free port)\n"
            "  --port-file FILE     write the bound port to FILE once listening\n"
            "  --parallel N         sequences decoded together at most (default 4)\n"
            "  --ctx N              positions per sequence (default: the model's context)\n"
            "  --queue N            requests waiting at most before 429 (default 4 x parallel)\n"
            "  --api-key KEY | --api-key-file FILE   require 'Authorization: Bearer KEY'\n"
            "                       (/, /health and /metrics stay open)\n"
            "  --max-body BYTES     larger request bodies get 413 (default 1048576)\n"
            "  --max-tokens N       the largest max_tokens accepted (default: the context)\n"
            "  --timeout S          idle connection timeout (default 30)\n"
            "  --threads N          compute threads (default: all cores)\n"
            "  --compute NAME       matmul backend for the prefill: auto (default), avx512, blas, naive\n"
            "  --grace S            on SIGINT/SIGTERM, let requests finish for S seconds (default 5)\n"
            "Endpoints: POST /v1/completions, GET /v1/models, GET /health, POST /tokenize, POST /detokenize,\n"
            "GET /metrics (Prometheus), GET / (dashboard). Every completion carries an `eco` object.\n%s",
            cli_run_flags_help());
}

static int read_key_file(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "thermo serve: cannot read --api-key-file %s\n", path);
        return 0;
    }
    size_t got = fread(buf, 1, n - 1, f);
    fclose(f);
    buf[got] = 0;
    while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r' || buf[got - 1] == ' ')) buf[--got] = 0;
    if (!got) fprintf(stderr, "thermo serve: --api-key-file %s is empty\n", path);
    return got > 0;
}

int cmd_serve(int argc, char **argv) {
    th_serve_opts o = th_serve_defaults();
    const char *port_file = NULL, *key_file = NULL;
    long port = o.port, parallel = o.parallel, ctx = 0, queue = 0, max_body = (long)o.max_body_bytes, max_tokens = 0;
    long timeout = o.timeout_s, threads = 0;
    double grace = 5;
    static char key[512];
    cli_run_flags rf;
    cli_run_flags_init(&rf);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            serve_usage(stdout);
            return EXIT_OK;
        }
        int r = cli_run_flag(&rf, "serve", argc, argv, &i);
        if (r < 0) return EXIT_USAGE;
        if (r > 0) continue;
        if (i + 1 >= argc || strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "thermo serve: unknown option or missing value: %s\n", a);
            serve_usage(stderr);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        int ok = 1;
        if (!strcmp(a, "--model")) o.model_path = v;
        else if (!strcmp(a, "--host")) o.host = v;
        else if (!strcmp(a, "--port-file")) port_file = v;
        else if (!strcmp(a, "--api-key")) o.api_key = v;
        else if (!strcmp(a, "--api-key-file")) key_file = v;
        else if (!strcmp(a, "--compute")) ok = th_compute_select(v) == TH_OK || !cli_report(TH_ERR_INVALID, "serve --compute");
        else if (!strcmp(a, "--port")) ok = cli_parse_int("serve", a, v, 0, 65535, &port);
        else if (!strcmp(a, "--parallel")) ok = cli_parse_int("serve", a, v, 1, 256, &parallel);
        else if (!strcmp(a, "--ctx")) ok = cli_parse_int("serve", a, v, 2, 1 << 20, &ctx);
        else if (!strcmp(a, "--queue")) ok = cli_parse_int("serve", a, v, 1, 1 << 16, &queue);
        else if (!strcmp(a, "--max-body")) ok = cli_parse_int("serve", a, v, 256, 1L << 30, &max_body);
        else if (!strcmp(a, "--max-tokens")) ok = cli_parse_int("serve", a, v, 1, 1 << 20, &max_tokens);
        else if (!strcmp(a, "--timeout")) ok = cli_parse_int("serve", a, v, 1, 3600, &timeout);
        else if (!strcmp(a, "--threads")) ok = cli_parse_int("serve", a, v, 1, 1024, &threads);
        else if (!strcmp(a, "--grace")) ok = cli_parse_float("serve", a, v, 0, 3600, &grace);
        else {
            fprintf(stderr, "thermo serve: unknown option %s\n", a);
            serve_usage(stderr);
            return EXIT_USAGE;
        }
        if (!ok) return EXIT_USAGE;
    }
    if (!o.model_path) {
        fprintf(stderr, "thermo serve: --model is required\n");
        serve_usage(stderr);
        return EXIT_USAGE;
    }
    if (o.api_key && key_file) {
        fprintf(stderr, "thermo serve: give --api-key or --api-key-file, not both\n");
        return EXIT_USAGE;
    }
    if (key_file) {
        if (!read_key_file(key_file, key, sizeof key)) return EXIT_USAGE;
        o.api_key = key;
    }
    int erc = cli_eco_resolve(&rf, "serve");
    if (erc != EXIT_OK) return erc;
    o.port = (int)port;
    o.parallel = (int)parallel;
    o.ctx = (int)ctx;
    o.queue_max = (int)queue;
    o.max_body_bytes = (size_t)max_body;
    o.max_tokens_limit = max_tokens;
    o.timeout_s = (int)timeout;
    o.threads = (int)threads;
    o.run = rf.run;
    o.run.factors = &rf.factors;

    th_server *s = NULL;
    th_status st = th_server_start(&o, &s);
    if (st != TH_OK) return cli_report(st, "serve");
    int bound = th_server_port(s);
    fprintf(stderr, "thermo serve: %s on http://%s:%d (%ld sequences at once%s); Ctrl-C stops\n", o.model_path, o.host,
            bound, parallel, o.api_key ? ", API key required" : "");
    if (port_file) {
        char tmp[4200];
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%d\n", bound) < 0 || fclose(f) != 0 || rename(tmp, port_file) != 0)
            fprintf(stderr, "thermo serve: warning: cannot write --port-file %s\n", port_file);
    }
    active = s;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    th_server_wait(s);
    fprintf(stderr, "thermo serve: stopping (in-flight requests get %.0f s)\n", grace);
    th_serve_summary sum;
    st = th_server_stop(s, grace, &sum);
    active = NULL;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (st != TH_OK) return cli_report(st, "serve: telemetry");
    fprintf(stderr, "served %ld requests (%ld completed, %ld refused, %ld cancelled): %ld prompt tokens, %ld generated\n",
            sum.requests, sum.completed, sum.refused, sum.cancelled, sum.prompt_tokens, sum.completion_tokens);
    cli_run_units units = {(double)(sum.prompt_tokens + sum.completion_tokens), 0, "signal", 0, NULL};
    return cli_run_report(&rf, "serve", &sum.fig, &units);
}
