/* decode_ctx.c: how decode speed falls with the context, measured the way `thermo bench model`
 * does (a prefill of CTX prompt tokens, then greedy decode steps, timed) but at two contexts
 * interleaved (A B A B ...) and best of N, so a noisy host's drift hits both alike. GPT-2
 * 124M with random weights in one format; prints tok/s at each context and their ratio, and
 * the bytes a step reads (weights + keys and values at the mid-decode context), whose ratio
 * is what the speed ratio would be if decode were bound by bytes alone. Also the ratio in
 * process CPU time (best of N too): on one thread (OMP_NUM_THREADS=1) it leaves out the time
 * other tenants held the core, which on a shared host is most of the wall-clock spread; on
 * two it counts the barrier spin as well.
 *
 * usage: decode_ctx [dtype f32|bf16|f16|q8, default f32] [ROUNDS, default 5] [STEPS, default 32]
 *                   [SHORT, default 64] [LONG, default 512] [kv auto|f32|f16|q8, default auto]
 * A context of 0 is skipped (SHORT 0: the long one alone). With DECODE_CTX_MARKS set, each timed decode's
 * window is printed to stderr as "ctx N: START,STOP" in CLOCK_MONOTONIC seconds, which is
 * `perf report --time START,STOP` after `perf record -k CLOCK_MONOTONIC`: the profile of the
 * decode steps alone, without the prefills between them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "thermo/model.h"

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

/* Greedy decoding of n steps after the logits in `logits`: wall seconds, process CPU
 * seconds in *cpu; < 0 on failure. */
static double decode_s(th_gpt2 *m, th_gpt2_kv *kv, float *logits, int n, int V, int ctx, double *cpu) {
    double c0 = cpu_s();
    uint64_t t0 = th_now_ns();
    for (int i = 0; i < n; i++) {
        int next = 0;
        for (int v = 1; v < V; v++)
            if (logits[v] > logits[next]) next = v;
        if (th_gpt2_infer(m, kv, &next, 1, logits, 0) != TH_OK) return -1;
    }
    uint64_t t1 = th_now_ns();
    *cpu = cpu_s() - c0;
    if (getenv("DECODE_CTX_MARKS")) fprintf(stderr, "ctx %d: %.6f,%.6f\n", ctx, t0 / 1e9, t1 / 1e9);
    return (t1 - t0) / 1e9;
}

int main(int argc, char **argv) {
    const char *dt_name = argc > 1 ? argv[1] : "f32";
    int rounds = argc > 2 ? atoi(argv[2]) : 5, steps = argc > 3 ? atoi(argv[3]) : 32;
    int ctx[2] = {argc > 4 ? atoi(argv[4]) : 64, argc > 5 ? atoi(argv[5]) : 512};
    th_infer_precision prec = {TH_DTYPE_F32, 0, TH_KV_AUTO};
    th_gpt2_config cfg;
    th_gpt2 *m = NULL;
    th_gpt2_kv *kv = NULL;
    if (th_dtype_parse(dt_name, &prec.dtype) != TH_OK ||
        (argc > 6 && th_kv_dtype_parse(argv[6], &prec.kv_dtype) != TH_OK)) {
        fprintf(stderr, "decode_ctx: %s\n", th_last_error());
        return 2;
    }
    if (th_gpt2_config_preset("gpt2", &cfg) != TH_OK || th_gpt2_create(&cfg, &m) != TH_OK) return 1;
    th_gpt2_init_random(m, 1);
    if (th_gpt2_set_precision(m, &prec) != TH_OK) {
        fprintf(stderr, "decode_ctx: %s\n", th_last_error());
        return 1;
    }
    int V = cfg.vocab_size, cap = (ctx[0] > ctx[1] ? ctx[0] : ctx[1]) + steps + 1;
    float *logits = malloc(sizeof(float) * (size_t)V);
    int *tok = malloc(sizeof(int) * (size_t)cap);
    if (!logits || !tok || cap > cfg.max_seq_len || th_gpt2_kv_create(m, cap, &kv) != TH_OK) return 1;
    for (int i = 0; i < cap; i++) tok[i] = (int)((i * 7919u + 13) % (unsigned)V);
    double best[2] = {1e30, 1e30}, best_cpu[2] = {1e30, 1e30};
    for (int r = 0; r < rounds; r++)
        for (int c = 0; c < 2; c++) {
            if (ctx[c] <= 0) continue;
            th_gpt2_kv_reset(kv);
            if (th_gpt2_infer(m, kv, tok, ctx[c], logits, 0) != TH_OK) return 1;
            double cpu, s = decode_s(m, kv, logits, steps, V, ctx[c], &cpu);
            if (s < 0) return 1;
            if (s < best[c]) best[c] = s;
            if (cpu < best_cpu[c]) best_cpu[c] = cpu;
        }
    double kv_elem = th_kv_dtype_bytes(th_gpt2_kv_cache_dtype(kv));
    double w = th_gpt2_decode_weight_bytes(m), per_pos = kv_elem * 2.0 * cfg.num_layers * cfg.channels;
    printf("%s kv %s, %d steps, best of %d:\n", dt_name, th_kv_dtype_name(th_gpt2_kv_cache_dtype(kv)), steps,
           rounds);
    double tps[2] = {0, 0}, bytes[2];
    for (int c = 0; c < 2; c++) {
        bytes[c] = w + per_pos * (ctx[c] + steps / 2.0);
        if (ctx[c] <= 0) continue;
        tps[c] = steps / best[c];
        printf("  ctx %4d: %7.2f tok/s, %6.1f MB a step, %5.2f GB/s, %6.2f CPU ms a step\n", ctx[c], tps[c],
               bytes[c] / 1e6, tps[c] * bytes[c] / 1e9, 1e3 * best_cpu[c] / steps);
    }
    if (ctx[0] > 0 && ctx[1] > 0)
        printf("  ratio long/short: speed %.3f, in CPU time %.3f, bytes-bound %.3f\n", tps[1] / tps[0],
               best_cpu[0] / best_cpu[1], bytes[0] / bytes[1]);
    th_gpt2_kv_free(kv);
    th_gpt2_free(m);
    free(logits);
    free(tok);
    return 0;
}
