/* cmd_generate.c: `thermo generate`: continues a prompt with KV-cache decoding. Only the
 * generated text goes to stdout, token by token as it is decoded, so scripts can use it;
 * everything else goes to stderr. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "thermo/io.h"
#include "thermo/model.h"
#include "thermo/text.h"

static th_run *active_run;
static void on_sigint(int sig) {
    (void)sig;
    th_run_interrupt(active_run);
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

    th_gpt2 *m = NULL;
    th_model_info info;
    th_status st = th_model_load_any(model_path, &m, &info);
    if (st != TH_OK) return cli_report(st, "generate --model");
    const th_gpt2_config *cfg = th_gpt2_get_config(m);
    th_tokenizer *tok = NULL;
    struct stat sb;
    if (!(stat(model_path, &sb) == 0 && S_ISDIR(sb.st_mode) && th_tokenizer_load_dir(model_path, &tok) == TH_OK)) {
        st = th_tokenizer_load_default(&tok);
        if (st != TH_OK) {
            th_gpt2_free(m);
            return cli_report(st, "generate: tokenizer");
        }
    }
    int rc = EXIT_OK, *ids = NULL;
    size_t n_ids = 0;
    float *logits = NULL;
    th_gpt2_kv *kv = NULL;
    th_sampler *sampler = NULL;
    th_run *run = NULL;
    th_loop_guard *lg = NULL;
    th_loop_guard_config lgc = th_loop_guard_defaults();
    th_budget budget;
    if (th_guard_mode_parse(loop_mode, &lgc.mode) != TH_OK) {
        fprintf(stderr, "thermo generate: --loop-guard must be stop, warn or off, got '%s'\n", loop_mode);
        th_tokenizer_free(tok);
        th_gpt2_free(m);
        return EXIT_USAGE;
    }
    int eot = th_tokenizer_eot(tok);
    if (prompt && *prompt) {
        st = th_tokenizer_encode(tok, prompt, strlen(prompt), 0, &ids, &n_ids);
        if (st != TH_OK) {
            rc = cli_report(st, "generate --prompt");
            goto done;
        }
    } else {
        // no prompt: start as a new document does, after <|endoftext|>
        ids = th_alloc(sizeof(int));
        if (!ids || eot < 0) {
            fprintf(stderr, "thermo generate: an empty prompt needs a vocabulary with <|endoftext|>\n");
            rc = EXIT_USAGE;
            goto done;
        }
        ids[0] = eot;
        n_ids = 1;
    }
    if (n_ids >= (size_t)cfg->max_seq_len) {
        fprintf(stderr, "thermo generate: the prompt is %zu tokens, the model's context is %d\n", n_ids,
                cfg->max_seq_len);
        rc = EXIT_USAGE;
        goto done;
    }
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] >= cfg->vocab_size) {
            fprintf(stderr, "thermo generate: prompt token %d is outside the model's vocabulary of %d\n", ids[i],
                    cfg->vocab_size);
            rc = EXIT_BAD_INPUT;
            goto done;
        }
    th_sampler_config sc = {(float)temperature, (int)top_k, (float)top_p};
    logits = th_alloc(sizeof(float) * (size_t)cfg->vocab_size);
    if (!logits) {
        rc = cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "generate");
        goto done;
    }
    if ((st = th_sampler_create(cfg->vocab_size, &sc, (uint64_t)seed, &sampler)) != TH_OK ||
        (st = th_gpt2_kv_create(m, cfg->max_seq_len, &kv)) != TH_OK) {
        rc = cli_report(st, "generate");
        goto done;
    }
    if ((st = th_loop_guard_create(&lgc, &lg)) != TH_OK || (st = th_budget_init(&budget, &rf.budget)) != TH_OK) {
        rc = cli_report(st, "generate");
        goto done;
    }
    if ((st = th_run_start(&rf.run, &run)) != TH_OK) {
        rc = cli_report(st, "generate: sensor");
        goto done;
    }
    uint64_t t0 = th_now_ns();
    th_run_unit_begin(run);
    st = th_gpt2_infer(m, kv, ids, (int)n_ids, logits, 0);
    th_run_unit_end(run); // an interruption shows at the next token
    active_run = run;
    signal(SIGINT, on_sigint);
    uint64_t t1 = th_now_ns();
    long generated = 0;
    const char *reason = "max-tokens";
    th_loop_verdict lv;
    memset(&lv, 0, sizeof lv);
    while (st == TH_OK && generated < max_tokens) {
        int next = th_sampler_next(sampler, logits);
        if (next == eot) {
            reason = "end of text";
            break;
        }
        // the loop guard judges the output itself, before the token is shown
        th_guard_action la = th_loop_guard_feed(lg, next, &lv);
        if (la == TH_GUARD_WARNED) fprintf(stderr, "\nthermo generate: warning: %s\n", lv.reason);
        if (la == TH_GUARD_HALT) {
            reason = "loop";
            break;
        }
        size_t len;
        const char *bytes = th_tokenizer_token_bytes(tok, next, &len);
        if (bytes) fwrite(bytes, 1, len, stdout);
        fflush(stdout);
        generated++;
        if (th_gpt2_kv_len(kv) >= cfg->max_seq_len) {
            reason = "context full";
            break;
        }
        if (generated < max_tokens) {
            if (!th_budget_allow(&budget, NULL)) {
                reason = "budget";
                break;
            }
            th_run_figures f0, f1;
            th_run_figures_now(run, &f0);
            uint64_t u0 = th_now_ns();
            th_run_unit_begin(run);
            st = th_gpt2_infer(m, kv, &next, 1, logits, 0);
            th_status paced = th_run_unit_end(run);
            th_run_figures_now(run, &f1);
            th_guard_cost c;
            th_guard_cost_priced(f1.energy.energy_j - f0.energy.energy_j, (th_now_ns() - u0) / 1e9,
                                 rf.have_price ? &rf.price : NULL, &c);
            th_budget_charge(&budget, &c);
            if (paced == TH_ERR_INTERRUPTED) {
                reason = "interrupted";
                break;
            }
        }
    }
    uint64_t t2 = th_now_ns();
    printf("\n");
    if (st != TH_OK) {
        rc = cli_report(st, "generate");
        goto done;
    }
    fprintf(stderr, "generated %ld tokens (stop: %s); prompt %zu tokens at %.0f tok/s, decode %.1f tok/s\n", generated,
            reason, n_ids, n_ids / ((t1 - t0) / 1e9), generated > 1 ? (generated - 1) / ((t2 - t1) / 1e9) : 0.0);
    th_run_figures fig;
    signal(SIGINT, SIG_DFL);
    active_run = NULL;
    th_status st_run = th_run_stop(run, &fig);
    run = NULL;
    if (st_run != TH_OK) {
        rc = cli_report(st_run, "generate: telemetry");
        goto done;
    }
    if (!strcmp(reason, "budget")) {
        char why[256];
        th_budget_describe(&budget, why, sizeof why);
        fprintf(stderr, "stopped: %s\n", why);
    }
    if (!strcmp(reason, "loop")) fprintf(stderr, "stopped: %s\n", lv.reason);
    cli_run_units units = {(double)(generated + (long)n_ids), 0, reason,
                           lv.kind != TH_LOOP_NONE ? (double)lv.tokens_burned : 0, lv.kind != TH_LOOP_NONE ? lv.reason : NULL};
    rc = cli_run_report(&rf, "generate", &fig, &units);
done:
    th_run_stop(run, NULL);
    th_loop_guard_free(lg);
    th_sampler_free(sampler);
    th_gpt2_kv_free(kv);
    th_free(logits);
    th_free(ids);
    th_tokenizer_free(tok);
    th_gpt2_free(m);
    return rc;
}
