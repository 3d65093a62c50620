/* cmd_bench.c: `thermo bench model`: the engine's speed and memory on a model shape with
 * random weights, as a table or one JSON object (see th_bench_model). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "thermo/pipeline.h"

static const char *const baselines[] = {"naive", NULL};
static const char *const precisions[] = {"f32", "bf16", "both", NULL};

static int bench_model(int argc, char **argv) {
    const char *preset = "gpt2", *matmul = NULL;
    int json = 0, baseline = -1, n_dt = 0;
    const char *dt_names[4] = {0};
    int precision = 0, kv_dtype = TH_KV_AUTO;
    th_bench_model_opts o = th_bench_model_defaults();
    const cli_opt opts[] = {
        CLI_O_STR("--preset", "NAME", &preset, "model shape: gpt2 (default), distilgpt2, gpt2-medium, small, tiny"),
        CLI_O_FLAG("--json", &json, "print one JSON object instead of a table"),
        CLI_O_INT("--threads", "N", &o.threads, 1, 1024, "threads for kernels and BLAS (default: all cores)"),
        CLI_O_INT("--batch", "B", &o.batch, 1, 4096, "training batch (default 4)"),
        CLI_O_INT("--seq", "T", &o.seq, 1, 1 << 20, "training sequence length (default 64)"),
        CLI_O_INT("--steps", "N", &o.train_steps, 1, 1000, "timed training steps, median reported (default 5)"),
        CLI_O_INT("--rounds", "N", &o.rounds, 1, 100,
                  "run everything, ceilings included, N times and keep each figure's best\n"
                  "(default 3: a busy or noisy machine only ever slows a figure down)"),
        CLI_O_INT("--prompt", "N", &o.prompt_tokens, 1, 1 << 20, "prefill length (default 128)"),
        CLI_O_INT("--decode", "N", &o.decode_tokens, 1, 1 << 20, "decoded tokens (default 64)"),
        CLI_O_STR("--matmul", "NAME", &matmul,
                  "compute backend: auto (default: the fastest this CPU runs), avx512,\nblas, naive, avx2"),
        CLI_O_CHOICE("--baseline", &baseline, baselines, NULL,
                     "also time training with the naive matmul loops (slow: ~10 s a step\n"
                     "for gpt2) and report the speed-up measured in the same run"),
        CLI_O_LIST("--dtype", "DTYPE", dt_names, 4, &n_dt,
                   "also a table of inference at these precisions (f32 bf16 f16 q8), each on a\n"
                   "fresh model: decode, prefill, decode at context 64 and 512, peak RSS"),
        CLI_O_FLAG("--embed-f32", &o.embed_f32, "keep wte (embedding and lm_head) in f32 in the --dtype rows"),
        CLI_O_CHOICE("--kv-dtype", &kv_dtype, th_kv_dtype_names, NULL,
                     "KV cache of the --dtype rows: auto (default: q8 in the q8 row, f16 in bf16/f16, f32 in f32), f32, f16, q8"),
        CLI_O_INT("--quality-tokens", "N", &o.quality_tokens, 0, 1 << 20,
                  "--dtype rows: perplexity ratio, KL and top-1 vs f32 on N tokens (default 256)"),
        CLI_O_STR("--model", "DIR|FILE", &o.model_path, "--dtype rows on this model's weights (its shape)"),
        CLI_O_CHOICE("--precision", &precision, precisions, NULL,
                     "training precision: f32 (default); bf16 or both: also a bf16 row,\n"
                     "timed after the f32 one in the same run"),
        CLI_O_STR("--train-vs", "NAME", &o.train_vs, "also time f32 training on this backend (e.g. blas), same run"),
        {0},
    };
    cli_cmd c = {.name = "bench model", .synopsis = "[options]", .tables = {opts}};
    int rc = cli_parse(&c, argc, argv);
    if (rc != CLI_GO) return rc;
    o.baseline_naive = baseline == 0;
    for (int i = 0; i < n_dt; i++)
        if (th_dtype_parse(dt_names[i], &o.dtypes[i]) != TH_OK) {
            fprintf(stderr, "thermo bench model: --dtype: %s\n", th_last_error());
            return EXIT_USAGE;
        }
    o.n_dtypes = n_dt;
    o.kv_dtype = (th_kv_dtype)kv_dtype;
    o.train_bf16 = precision > 0;
    th_status st = matmul ? th_compute_select(matmul) : TH_OK;
    if (st == TH_ERR_INVALID) {
        fprintf(stderr, "thermo bench model: --matmul: %s\n", th_last_error());
        return EXIT_USAGE;
    }
    if (st != TH_OK) return cli_report(st, "bench model");
    th_gpt2_config cfg;
    st = th_gpt2_config_preset(preset, &cfg);
    if (st != TH_OK) return cli_report(st, "bench model");
    if (o.model_path) {
        th_gpt2 *shape = NULL;
        if ((st = th_model_load_any(o.model_path, &shape, NULL)) != TH_OK) return cli_report_model(st, "bench model --model");
        cfg = *th_gpt2_get_config(shape);
        th_gpt2_free(shape);
    }
    if (!json)
        fprintf(stderr, "thermo bench model: %s, random weights, training %d x %d, prompt %d, decode %d ...\n", preset,
                o.batch, o.seq, o.prompt_tokens, o.decode_tokens);
    th_bench_model_result r;
    st = th_bench_model(&cfg, &o, &r);
    if (st != TH_OK) return cli_report(st, "bench model");

    json_t *j = json_pack("{s:s, s:I, s:i, s:s, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:i, s:i}",
                          "preset", preset, "params", (json_int_t)r.params, "threads", r.threads, "matmul",
                          r.matmul, "batch", o.batch, "seq", o.seq, "train_step_ms", r.train_step_ms,
                          "train_step_ms_min", r.train_step_ms_min, "train_gflops", r.train_gflops,
                          "prefill_tok_s", r.prefill_tok_s, "decode_tok_s", r.decode_tok_s, "decode_rss_mb",
                          r.decode_rss_mb, "peak_rss_mb", r.peak_rss_mb, "first_loss", (double)r.first_loss,
                          "prompt_tokens", o.prompt_tokens, "decode_tokens", o.decode_tokens);
    json_object_set_new(j, "ceilings",
                        json_pack("{s:f, s:f, s:s, s:i, s:I, s:s}", "read_gb_s", r.ceilings.read_gb_s, "fma_gflop_s",
                                  r.ceilings.fma_gflop_s, "isa", r.ceilings.isa, "threads", r.ceilings.threads,
                                  "buffer_bytes", (json_int_t)r.ceilings.buffer_bytes, "basis",
                                  "measured in this run, best of the rounds"));
    json_object_set_new(j, "rounds", json_integer(r.rounds));
    json_object_set_new(j, "ceilings_worst_round", json_pack("{s:f, s:f}", "read_gb_s", r.ceilings_worst.read_gb_s,
                                                             "fma_gflop_s", r.ceilings_worst.fma_gflop_s));
    json_object_set_new(j, "decode_bytes_per_token", json_real(r.decode_bytes_per_token));
    json_object_set_new(j, "decode_read_share", json_real(r.decode_read_share));
    json_object_set_new(j, "prefill_fma_share", json_real(r.prefill_fma_share));
    json_object_set_new(j, "train_fma_share", json_real(r.train_fma_share));
    json_object_set_new(j, "modeled_power_w", json_real(r.modeled_power_w));
    json_object_set_new(j, "train_j_step_modeled", json_real(r.train_j_step));
    json_object_set_new(j, "train_j_token_modeled", json_real(r.train_j_step / (o.batch * o.seq)));
    if (o.train_bf16)
        json_object_set_new(j, "bf16",
                            json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f}", "train_step_ms", r.train_step_ms_bf16,
                                      "train_step_ms_min", r.train_step_ms_min_bf16, "train_gflops",
                                      r.train_gflops_bf16, "train_fma_share", r.train_fma_share_bf16,
                                      "train_j_step_modeled", r.train_j_step_bf16, "train_j_token_modeled",
                                      r.train_j_step_bf16 / (o.batch * o.seq), "speedup_vs_f32",
                                      r.train_step_ms / r.train_step_ms_bf16));
    if (r.vs_matmul)
        json_object_set_new(j, "vs", json_pack("{s:s, s:f, s:f, s:f, s:f}", "matmul", r.vs_matmul, "train_step_ms",
                                               r.train_step_ms_vs, "train_gflops", r.train_gflops_vs,
                                               "train_fma_share", r.train_fma_share_vs, "train_j_step_modeled",
                                               r.train_j_step_vs));
    if (o.baseline_naive) {
        json_object_set_new(j, "train_step_ms_naive", json_real(r.train_step_ms_naive));
        json_object_set_new(j, "speedup_vs_naive", json_real(r.train_step_ms_naive / r.train_step_ms));
    }
    json_t *rows = json_array();
    for (int i = 0; i < r.n_rows; i++) {
        const th_bench_dtype_row *w = &r.rows[i];
        json_array_append_new(
            rows, json_pack("{s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:b}", "dtype",
                            th_dtype_name(w->dtype), "decode_tok_s", w->decode_tok_s, "decode_read_share",
                            w->decode_read_share, "decode_bytes_per_token", w->decode_bytes_per_token,
                            "decode_ctx64_tok_s", w->decode_ctx64_tok_s, "decode_ctx512_tok_s", w->decode_ctx512_tok_s,
                            "prefill_tok_s", w->prefill_tok_s, "prefill_fma_share", w->prefill_fma_share,
                            "prefill512_tok_s", w->prefill512_tok_s, "prefill512_fma_share", w->prefill512_fma_share,
                            "rss_mb", w->rss_mb, "rss_from_packing", w->rss_reset));
        json_t *row = json_array_get(rows, (size_t)i);
        json_object_set_new(row, "ctx_bytes_ratio", json_real(w->ctx_bytes_ratio));
        json_object_set_new(row, "kv_dtype", json_string(th_kv_dtype_name(w->kv_dtype)));
        json_object_set_new(row, "kv_kernel", json_string(th_kv_kernel(w->kv_dtype)));
        json_object_set_new(row, "ppl_ratio", json_real(w->ppl_ratio));
        json_object_set_new(row, "mean_kl", json_real(w->mean_kl));
        json_object_set_new(row, "top1_agreement", json_real(w->top1_agreement));
    }
    json_object_set_new(j, "precisions", rows);
    json_object_set_new(j, "lowp_kernel", json_string(r.lowp_kernel));
    json_object_set_new(j, "embed_f32", json_boolean(o.embed_f32));
    json_object_set_new(j, "kv_dtype", json_string(th_kv_dtype_name(o.kv_dtype)));
    if (json) return cli_print_json(j, JSON_REAL_PRECISION(6), "bench model");
    json_decref(j);
    printf("model            %s (%zu parameters, random weights)\n", preset, r.params);
    printf("threads          %d, matmul %s\n", r.threads, r.matmul);
    printf("ceilings         read %.1f GB/s (%zu MiB buffer), fp32 FMA peak %.1f GFLOP/s (%s), measured now\n",
           r.ceilings.read_gb_s, r.ceilings.buffer_bytes >> 20, r.ceilings.fma_gflop_s, r.ceilings.isa);
    printf("rounds           %d, every figure the best of them; the slowest round's ceilings: read %.1f GB/s,\n"
           "                 FMA %.1f GFLOP/s (%.0f %% / %.0f %% of the best: how noisy the machine was)\n",
           r.rounds, r.ceilings_worst.read_gb_s, r.ceilings_worst.fma_gflop_s,
           100 * r.ceilings_worst.read_gb_s / r.ceilings.read_gb_s,
           100 * r.ceilings_worst.fma_gflop_s / r.ceilings.fma_gflop_s);
    printf("train step       %.1f ms median (min %.1f) at B=%d T=%d, %.1f GFLOP/s = %.0f %% of FMA peak\n",
           r.train_step_ms, r.train_step_ms_min, o.batch, o.seq, r.train_gflops, 100 * r.train_fma_share);
    printf("                 modeled %.1f J a step, %.3f J a token (laptop-cpu plant at duty 1, %.0f W)\n",
           r.train_j_step, r.train_j_step / (o.batch * o.seq), r.modeled_power_w);
    if (o.train_bf16)
        printf("train step bf16  %.1f ms median (min %.1f), %.1f GFLOP/s = %.0f %% of FMA peak, %.2fx f32;\n"
               "                 modeled %.1f J a step, %.3f J a token\n",
               r.train_step_ms_bf16, r.train_step_ms_min_bf16, r.train_gflops_bf16, 100 * r.train_fma_share_bf16,
               r.train_step_ms / r.train_step_ms_bf16, r.train_j_step_bf16, r.train_j_step_bf16 / (o.batch * o.seq));
    if (r.vs_matmul)
        printf("train step %-6s%.1f ms median, %.1f GFLOP/s = %.0f %% of FMA peak, modeled %.1f J a step (f32)\n",
               r.vs_matmul, r.train_step_ms_vs, r.train_gflops_vs, 100 * r.train_fma_share_vs, r.train_j_step_vs);
    if (o.baseline_naive)
        printf("naive baseline   %.1f ms per step: %.1fx faster\n", r.train_step_ms_naive,
               r.train_step_ms_naive / r.train_step_ms);
    printf("prefill          %.1f tokens/s (%d-token prompt) = %.0f %% of FMA peak\n", r.prefill_tok_s,
           o.prompt_tokens, 100 * r.prefill_fma_share);
    printf("decode           %.1f tokens/s (f32, KV cache) = %.0f %% of read bandwidth (%.0f MB a token)\n",
           r.decode_tok_s, 100 * r.decode_read_share, r.decode_bytes_per_token / 1e6);
    printf("peak RSS         %.0f MB (inference alone %.0f MB)\n", r.peak_rss_mb, r.decode_rss_mb);
    if (r.n_rows > 0) {
        printf("\nprecision (kernels %s, wte %s, KV %s; decode %d tokens after %d; shares of the ceilings above)\n",
               r.lowp_kernel, o.embed_f32 ? "f32" : "packed too",
               o.kv_dtype == TH_KV_AUTO ? "auto (q8 in the q8 row, f16 in bf16/f16, f32 in f32)" : th_kv_dtype_name(o.kv_dtype), o.decode_tokens,
               o.prompt_tokens);
        printf("dtype  decode tok/s  read share  MB/token  ctx64 tok/s  ctx512 tok/s  512/64  (bytes)  prefill FMA  "
               "prefill512 FMA  RSS MB  ppl ratio  KL nats  top-1\n");
        for (int i = 0; i < r.n_rows; i++) {
            const th_bench_dtype_row *w = &r.rows[i];
            printf("%-5s  %12.1f  %9.0f %%  %8.0f  %11.1f  %12.1f  %6.2f  %7.2f  %9.0f %%  %12.0f %%  %6.0f  %9.5f  "
                   "%7.5f  %5.3f%s\n",
                   th_dtype_name(w->dtype), w->decode_tok_s, 100 * w->decode_read_share,
                   w->decode_bytes_per_token / 1e6, w->decode_ctx64_tok_s, w->decode_ctx512_tok_s,
                   w->decode_ctx512_tok_s / w->decode_ctx64_tok_s, w->ctx_bytes_ratio, 100 * w->prefill_fma_share,
                   100 * w->prefill512_fma_share, w->rss_mb, w->ppl_ratio, w->mean_kl, w->top1_agreement,
                   w->rss_reset ? "" : " (RSS: process peak)");
        }
    }
    return EXIT_OK;
}

int cmd_bench(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: thermo bench model [options]      engine speed and memory (thermo bench model --help)\n"
                "       thermo bench governor [options]   governors on the simulated plant (--help)\n"
                "       thermo bench eco [options]        rate models by quality per J, g CO2e, L water (--help)\n");
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (strcmp(argv[1], "model") == 0) return bench_model(argc - 1, argv + 1);
    if (strcmp(argv[1], "governor") == 0) return cmd_bench_governor(argc - 1, argv + 1);
    if (strcmp(argv[1], "eco") == 0) return cmd_bench_eco(argc - 1, argv + 1);
    fprintf(stderr, "thermo bench: unknown benchmark '%s' (known: model, governor, eco)\n", argv[1]);
    return EXIT_USAGE;
}
