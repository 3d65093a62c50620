/* cmd_serve.c: `thermo serve`: the inference server (serve.h) on the command line. Runs
 * until SIGINT or SIGTERM, then finishes in-flight requests for a few seconds, cancels the
 * rest and prints the session's energy report as the other monitored commands do. SIGHUP
 * reloads the model (--model-from-state: also each promotion `thermo learn` makes). */
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

static void on_hangup(int sig) {
    (void)sig;
    if (active) th_server_request_reload(active);
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
    const char *compute = NULL;
    int dtype = TH_DTYPE_F32, kv_dtype = TH_KV_AUTO;
    const cli_opt opts[] = {
        CLI_O_STR("--model", "DIR|FILE", &o.model_path, "Hugging Face GPT-2 directory, llm.c .bin or thermo checkpoint"),
        CLI_O_STR("--model-from-state", "DIR", &o.state_dir,
                  "serve a `thermo learn --state DIR` state's current model, reloaded after each promotion "
                  "(DIR/learn/state.json checked every second; in-flight requests finish on the old weights)"),
        CLI_O_STR("--host", "ADDR", &o.host, "IPv4 address to bind (default 127.0.0.1: this machine only)"),
        CLI_O_LONG("--port", "N", &port, 0, 65535, "port (default 8080; 0: any free port)"),
        CLI_O_STR("--port-file", "FILE", &port_file, "write the bound port to FILE once listening"),
        CLI_O_LONG("--parallel", "N", &parallel, 1, 256, "sequences decoded together at most (default 4)"),
        CLI_O_LONG("--ctx", "N", &ctx, 2, 1 << 20, "positions per sequence (default: the model's context)"),
        CLI_O_LONG("--queue", "N", &queue, 1, 1 << 16, "requests waiting at most before 429 (default 4 x parallel)"),
        CLI_O_STR("--api-key", "KEY", &o.api_key,
                  "require 'Authorization: Bearer KEY' (/, /health and /metrics stay open)"),
        CLI_O_STR("--api-key-file", "FILE", &key_file, "the key from a file (its first line)"),
        CLI_O_LONG("--max-body", "BYTES", &max_body, 256, 1L << 30, "larger request bodies get 413 (default 1048576)"),
        CLI_O_LONG("--max-tokens", "N", &max_tokens, 1, 1 << 20, "the largest max_tokens accepted (default: the context)"),
        CLI_O_LONG("--timeout", "S", &timeout, 1, 3600, "idle connection timeout (default 30)"),
        CLI_O_LONG("--threads", "N", &threads, 1, 1024, "compute threads (default: all cores)"),
        CLI_O_STR("--compute", "NAME", &compute, "compute backend for the prefill: auto (default), avx512, blas, naive"),
        CLI_O_CHOICE("--dtype", &dtype, th_dtype_names, NULL, "weights for inference: f32 (default), bf16, f16 or q8"),
        CLI_O_FLAG("--embed-f32", &o.precision.embed_f32, "with --dtype: keep wte (embedding and lm_head) in f32"),
        CLI_O_CHOICE("--kv-dtype", &kv_dtype, th_kv_dtype_names, NULL,
                     "KV cache elements: auto (default: q8 with q8 weights, f16 with bf16/f16, f32 with f32), f32, f16 or q8 (int8 blocks)"),
        CLI_O_DBL("--grace", "S", &grace, 0, 3600, "on SIGINT/SIGTERM, let requests finish for S seconds (default 5)"),
        {0},
    };
    cli_cmd c = {.name = "serve", .synopsis = "--model DIR | --model-from-state DIR [options]", .tables = {opts, rf.run_opts, rf.eco_opts},
                 .epilog = "Endpoints: POST /v1/completions, GET /v1/models, GET /health, POST /tokenize, POST /detokenize,\n"
                           "GET /metrics (Prometheus), GET / (dashboard). Every completion carries an `eco` object.\n"
                           "SIGHUP reloads the model; one of another shape, or that fails to load, is refused and the\n"
                           "served one stays (/health's model object says which version is served and why).\n"};
    int rc = cli_parse(&c, argc, argv);
    if (rc != CLI_GO) return rc;
    if (compute && th_compute_select(compute) != TH_OK) return cli_report(TH_ERR_INVALID, "serve --compute");
    o.precision.dtype = (th_dtype)dtype;
    o.precision.kv_dtype = (th_kv_dtype)kv_dtype;
    if (!o.model_path && !o.state_dir) {
        fprintf(stderr, "thermo serve: --model or --model-from-state is required\n");
        cli_help(&c, stderr);
        return EXIT_USAGE;
    }
    if (o.model_path && o.state_dir) {
        fprintf(stderr, "thermo serve: give --model or --model-from-state, not both\n");
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
    fprintf(stderr, "thermo serve: %s%s on http://%s:%d (%ld sequences at once%s); Ctrl-C stops\n",
            o.state_dir ? o.state_dir : o.model_path, o.state_dir ? " (following its promotions)" : "", o.host, bound,
            parallel, o.api_key ? ", API key required" : "");
    if (port_file) {
        char text[32];
        int len = snprintf(text, sizeof text, "%d\n", bound);
        if (th_atomic_write_file(port_file, text, (size_t)len) != TH_OK)
            fprintf(stderr, "thermo serve: warning: cannot write --port-file %s: %s\n", port_file, th_last_error());
    }
    active = s;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_hangup);
    signal(SIGPIPE, SIG_IGN);
    th_server_wait(s);
    fprintf(stderr, "thermo serve: stopping (in-flight requests get %.0f s)\n", grace);
    th_serve_summary sum;
    st = th_server_stop(s, grace, &sum);
    active = NULL;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    if (st != TH_OK) return cli_report(st, "serve: telemetry");
    fprintf(stderr, "served %ld requests (%ld completed, %ld refused, %ld cancelled): %ld prompt tokens, %ld generated\n",
            sum.requests, sum.completed, sum.refused, sum.cancelled, sum.prompt_tokens, sum.completion_tokens);
    if (sum.reloads || sum.reload_failures)
        fprintf(stderr, "model: version %ld at the end (%ld reloads, %ld refused)\n", sum.model_version, sum.reloads,
                sum.reload_failures);
    cli_run_units units = {(double)(sum.prompt_tokens + sum.completion_tokens), 0, "signal", 0, NULL};
    return cli_run_report(&rf, "serve", &sum.fig, &units);
}
