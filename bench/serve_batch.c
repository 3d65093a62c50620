/* serve_batch.c: how much batched decoding buys: decode tokens/s of th_gpt2_infer_batch at
 * 1, 4, 8 and 16 sequences on a model preset with random weights (default "gpt2", 124M),
 * each sequence prefilled with 32 tokens, against th_gpt2_infer's single-sequence decode
 * with the current backend. Usage: serve_batch [PRESET] [STEPS]. */
#include <stdio.h>
#include <stdlib.h>

#include "thermo/model.h"

int main(int argc, char **argv) {
    const char *preset = argc > 1 ? argv[1] : "gpt2";
    int steps = argc > 2 ? atoi(argv[2]) : 8;
    th_gpt2_config cfg;
    th_gpt2 *m = NULL;
    if (th_gpt2_config_preset(preset, &cfg) != TH_OK || th_gpt2_create(&cfg, &m) != TH_OK) {
        fprintf(stderr, "serve_batch: %s\n", th_last_error());
        return 1;
    }
    th_gpt2_init_random(m, 1);
    int V = cfg.vocab_size, prompt[32];
    for (int i = 0; i < 32; i++) prompt[i] = (i * 7919) % V;
    float *logits = malloc(sizeof(float) * (size_t)V * 16);
    printf("%s, %d threads, backend %s, %d steps per row count\n", preset, th_threads_get(), th_compute_current(), steps);
    th_gpt2_kv *one = NULL;
    th_gpt2_kv_create(m, 32 + steps + 1, &one);
    th_gpt2_infer(m, one, prompt, 32, logits, 0);
    uint64_t t0 = th_now_ns();
    for (int s = 0; s < steps; s++) th_gpt2_infer(m, one, prompt + s, 1, logits, 0);
    double single = steps / ((th_now_ns() - t0) / 1e9);
    printf("th_gpt2_infer (1 sequence):   %8.1f tok/s\n", single);
    th_gpt2_kv_free(one);
    const int counts[] = {1, 4, 8, 16};
    for (int c = 0; c < 4; c++) {
        int n = counts[c];
        th_gpt2_batch *b = NULL;
        th_gpt2_kv *kvs[16];
        int toks[16];
        th_gpt2_batch_create(m, n, &b);
        for (int i = 0; i < n; i++) {
            th_gpt2_kv_create(m, 32 + steps + 1, &kvs[i]);
            th_gpt2_infer(m, kvs[i], prompt, 32, logits, 0);
            toks[i] = (i * 13) % V;
        }
        t0 = th_now_ns();
        for (int s = 0; s < steps; s++) th_gpt2_infer_batch(m, b, kvs, toks, n, logits);
        double sec = (th_now_ns() - t0) / 1e9;
        printf("th_gpt2_infer_batch, %2d rows: %8.1f tok/s aggregate (%.1f ms per step)\n", n, n * steps / sec,
               1e3 * sec / steps);
        for (int i = 0; i < n; i++) th_gpt2_kv_free(kvs[i]);
        th_gpt2_batch_free(b);
    }
    free(logits);
    th_gpt2_free(m);
    return 0;
}
