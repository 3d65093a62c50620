/* cmd_generate.c: `thermo generate`: continues a prompt with KV-cache decoding. Only the
 * generated text goes to stdout, token by token as it is decoded, so scripts can use it;
 * everything else goes to stderr. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "thermo/io.h"
#include "thermo/model.h"
#include "thermo/text.h"

static th_run *active_run;
static void on_sigint(int sig) {
    (void)sig;
    th_run_interrupt(active_run);
}

/* stdout carries only the continuation, token by token as it is decided */
static int print_token(int token, const char *bytes, size_t len, void *user) {
    (void)token;
    (void)user;
    if (bytes) fwrite(bytes, 1, len, stdout);
    fflush(stdout);
    return 0;
}

static void print_warning(const char *msg, void *user) {
    (void)user;
    fprintf(stderr, "\nthermo generate: warning: %s\n", msg);
}

static void generate_usage(FILE *f) {
    fprintf(f,
            "usage: thermo generate [options]\n"
            "  --model DIR|FILE     Hugging Face GPT-2 directory, llm.c .bin or thermo checkpoint\n"
            "                       (default: runs/default/model, what `thermo train` writes)\n"
            "  --prompt TEXT        text to continue (default: start of a document)\n"
            "  --max-tokens N       tokens to generate at most (default 64)\n"
            "  --temperature X      0 = greedy; default 0.8\n"
            "  --top-k K            keep the K most likely tokens (default 40; 0 = off)\n"
            "  --top-p P            nucleus sampling threshold (default 0.95; 1 = off)\n"
            "  --seed S             sampling seed (default 1337)\n"
            "  --threads N          compute threads (default: all cores)\n"
            "  --compute NAME       matmul backend: auto (default), avx512, blas, naive\n"
            "  --loop-guard MODE     stop (default), warn or off: detect a token stream stuck in a loop\n"
            "Stops at <|endoftext|>, at --max-tokens, when the context is full, when the loop guard\n"
            "catches a loop, or before a token a budget cannot pay for.\n%s", cli_run_flags_help());
}

int cmd_generate(int argc, char **argv) {
    const char *model_path = "runs/default/model", *prompt = NULL;
    long max_tokens = 64, top_k = 40, seed = 1337, threads = 0;
    double temperature = 0.8, top_p = 0.95;
    const char *loop_mode = "stop";
    cli_run_flags rf;
    cli_run_flags_init(&rf);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            generate_usage(stdout);
            return EXIT_OK;
        }
        int r = cli_run_flag(&rf, "generate", argc, argv, &i);
        if (r < 0) return EXIT_USAGE;
        if (r > 0) continue;
        if (i + 1 >= argc || strncmp(a, "--", 2) != 0) {
            fprintf(stderr, "thermo generate: unknown option or missing value: %s\n", a);
            generate_usage(stderr);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        int ok = 1;
        if (!strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--prompt")) prompt = v;
        else if (!strcmp(a, "--loop-guard")) loop_mode = v;
        else if (!strcmp(a, "--compute")) ok = th_compute_select(v) == TH_OK || !cli_report(TH_ERR_INVALID, "generate --compute");
        else if (!strcmp(a, "--max-tokens")) ok = cli_parse_int("generate", a, v, 1, 1 << 20, &max_tokens);
        else if (!strcmp(a, "--top-k")) ok = cli_parse_int("generate", a, v, 0, 1 << 24, &top_k);
        else if (!strcmp(a, "--seed")) ok = cli_parse_int("generate", a, v, 0, 0x7fffffffffffffffL, &seed);
        else if (!strcmp(a, "--threads")) ok = cli_parse_int("generate", a, v, 1, 1024, &threads);
        else if (!strcmp(a, "--temperature")) ok = cli_parse_float("generate", a, v, 0, 100, &temperature);
        else if (!strcmp(a, "--top-p")) ok = cli_parse_float("generate", a, v, 1e-6, 1, &top_p);
        else {
            fprintf(stderr, "thermo generate: unknown option %s\n", a);
            generate_usage(stderr);
            return EXIT_USAGE;
        }
        if (!ok) return EXIT_USAGE;
    }
    th_threads_set(threads > 0 ? (int)threads : th_threads_get());
    int erc = cli_eco_resolve(&rf, "generate");
    if (erc != EXIT_OK) return erc;
    th_generate_opts go = th_generate_defaults();
    go.max_tokens = max_tokens;
    go.sampling = (th_sampler_config){(float)temperature, (int)top_k, (float)top_p};
    go.seed = (uint64_t)seed;
    go.budget = rf.budget;
    go.on_token = print_token;
    go.on_warning = print_warning;
    if (th_guard_mode_parse(loop_mode, &go.loop_guard.mode) != TH_OK) {
        fprintf(stderr, "thermo generate: --loop-guard must be stop, warn or off, got '%s'\n", loop_mode);
        return EXIT_USAGE;
    }

    th_gpt2 *m = NULL;
    th_tokenizer *tok = NULL;
    th_run *run = NULL;
    int *ids = NULL, rc = EXIT_OK;
    size_t n_ids = 0;
    th_model_info info;
    th_status st = th_model_load_any(model_path, &m, &info);
    if (st != TH_OK) return cli_report(st, "generate --model");
    if ((st = th_tokenizer_load_for_model(model_path, &tok)) != TH_OK) {
        rc = cli_report(st, "generate: tokenizer");
        goto done;
    }
    if ((st = th_generate_prompt(tok, th_gpt2_get_config(m), prompt, &ids, &n_ids)) != TH_OK) {
        rc = cli_report(st, "generate --prompt");
        goto done;
    }
    rf.run.factors = &rf.factors;
    if ((st = th_run_start(&rf.run, &run)) != TH_OK) {
        rc = cli_report(st, "generate: sensor");
        goto done;
    }
    go.run = active_run = run;
    signal(SIGINT, on_sigint);
    th_generate_result res;
    st = th_generate(m, tok, ids, n_ids, &go, &res);
    signal(SIGINT, SIG_DFL);
    active_run = NULL;
    printf("\n");
    fflush(stdout);
    if (st != TH_OK) {
        rc = cli_report(st, "generate");
        goto done;
    }
    fprintf(stderr, "generated %ld tokens (stop: %s); prompt %ld tokens at %.0f tok/s, decode %.1f tok/s\n",
            res.generated, th_gen_stop_name(res.stop), res.prompt_tokens, res.prefill_tok_s, res.decode_tok_s);
    if (res.stop_detail[0]) fprintf(stderr, "stopped: %s\n", res.stop_detail);
    th_run_figures fig;
    th_status st_run = th_run_stop(run, &fig);
    run = NULL;
    if (st_run != TH_OK) {
        rc = cli_report(st_run, "generate: telemetry");
        goto done;
    }
    int looped = res.loop.kind != TH_LOOP_NONE;
    cli_run_units units = {(double)(res.generated + res.prompt_tokens), 0, th_gen_stop_name(res.stop),
                           looped ? (double)res.loop.tokens_burned : 0, looped ? res.loop.reason : NULL};
    rc = cli_run_report(&rf, "generate", &fig, &units);
done:
    th_run_stop(run, NULL);
    th_free(ids);
    th_tokenizer_free(tok);
    th_gpt2_free(m);
    return rc;
}
