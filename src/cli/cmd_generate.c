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

int cmd_generate(int argc, char **argv) {
    const char *model_path = "runs/default/model", *prompt = NULL, *compute = NULL;
    long max_tokens = 64;
    int top_k = 40, threads = 0, loop_mode = TH_GUARD_STOP, dtype = -1, embed_f32 = 0, kv_dtype = TH_KV_AUTO;
    uint64_t seed = 1337;
    double temperature = 0.8, top_p = 0.95;
    cli_run_flags rf;
    cli_run_flags_init(&rf);
    const cli_opt opts[] = {
        CLI_O_STR("--model", "DIR|FILE", &model_path,
                  "Hugging Face GPT-2 directory, llm.c .bin, GGUF file or thermo checkpoint\n"
                  "(default: runs/default/model, what `thermo train` writes)"),
        CLI_O_STR("--prompt", "TEXT", &prompt, "text to continue (default: start of a document)"),
        CLI_O_LONG("--max-tokens", "N", &max_tokens, 1, 1 << 20, "tokens to generate at most (default 64)"),
        CLI_O_DBL("--temperature", "X", &temperature, 0, 100, "0 = greedy; default 0.8"),
        CLI_O_INT("--top-k", "K", &top_k, 0, 1 << 24, "keep the K most likely tokens (default 40; 0 = off)"),
        CLI_O_DBL("--top-p", "P", &top_p, 1e-6, 1, "nucleus sampling threshold (default 0.95; 1 = off)"),
        CLI_O_U64("--seed", "S", &seed, 0, 0x7fffffffffffffffL, "sampling seed (default 1337)"),
        CLI_O_INT("--threads", "N", &threads, 1, 1024, "compute threads (default: all cores)"),
        CLI_O_STR("--compute", "NAME", &compute, "compute backend: auto (default), avx512, blas, naive"),
        CLI_O_CHOICE("--loop-guard", &loop_mode, cli_guard_modes, cli_guard_mode_values,
                     "stop (default), warn or off: detect a token stream stuck in a loop"),
        CLI_O_CHOICE("--dtype", &dtype, th_dtype_names, NULL,
                     "weights for inference: f32 (default; a GGUF file's own: q8 for Q8_0),\n"
                     "bf16, f16 or q8 (int8 blocks)"),
        CLI_O_FLAG("--embed-f32", &embed_f32, "with --dtype: keep wte (embedding and lm_head) in f32"),
        CLI_O_CHOICE("--kv-dtype", &kv_dtype, th_kv_dtype_names, NULL,
                     "KV cache elements: auto (default: q8 with q8 weights, f16 with bf16/f16, f32 with f32), f32, f16 or q8 (int8 blocks)"),
        {0},
    };
    cli_cmd c = {.name = "generate", .synopsis = "[options]", .tables = {opts, rf.run_opts, rf.eco_opts},
                 .epilog = "Stops at <|endoftext|>, at --max-tokens, when the context is full, when the loop guard\n"
                           "catches a loop, or before a token a budget cannot pay for.\n"};
    int rc = cli_parse(&c, argc, argv);
    if (rc != CLI_GO) return rc;
    rc = EXIT_OK;
    th_threads_set(threads > 0 ? threads : th_threads_get());
    if (compute && th_compute_select(compute) != TH_OK) return cli_report(TH_ERR_INVALID, "generate --compute");
    int erc = cli_eco_resolve(&rf, "generate");
    if (erc != EXIT_OK) return erc;
    th_generate_opts go = th_generate_defaults();
    go.max_tokens = max_tokens;
    go.sampling = (th_sampler_config){(float)temperature, top_k, (float)top_p};
    go.seed = seed;
    go.budget = rf.budget;
    go.on_token = print_token;
    go.on_warning = print_warning;
    go.loop_guard.mode = (th_guard_mode)loop_mode;

    th_gpt2 *m = NULL;
    th_tokenizer *tok = NULL;
    th_run *run = NULL;
    int *ids = NULL;
    size_t n_ids = 0;
    th_model_info info;
    th_status st = th_model_load_any(model_path, &m, &info);
    if (st != TH_OK) return cli_report_model(st, "generate --model");
    if (dtype < 0) dtype = info.format == TH_FORMAT_GGUF ? (int)info.weights_dtype : TH_DTYPE_F32;
    th_infer_precision prec = {(th_dtype)dtype, embed_f32, (th_kv_dtype)kv_dtype};
    if ((st = th_gpt2_set_precision(m, &prec)) != TH_OK) {
        rc = cli_report(st, "generate --dtype");
        goto done;
    }
    th_gpt2_set_kv_dtype(m, prec.kv_dtype);
    if ((st = th_model_load_tokenizer(model_path, &tok)) != TH_OK) {
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
