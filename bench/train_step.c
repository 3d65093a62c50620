/* train_step.c: one GPT-2 training step taken apart, for profiling (perf record) and for
 * seeing where the step's time goes: forward, zero_grad, backward, grad norm, AdamW, each
 * timed on its own, best of N steps (noise on a shared machine only slows things down).
 * Random weights, random tokens, the bench's shape by default.
 *
 * usage: train_step [steps, default 5] [preset, default gpt2] [threads, default 2]
 *                   [backend, default auto] [B, default 4] [T, default 64] [f32|bf16, default f32] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "thermo/core.h"
#include "thermo/model.h"

static double now_ms(void) { return th_now_ns() / 1e6; }

int main(int argc, char **argv) {
    int steps = argc > 1 ? atoi(argv[1]) : 5;
    const char *preset = argc > 2 ? argv[2] : "gpt2";
    int threads = argc > 3 ? atoi(argv[3]) : 2;
    const char *backend = argc > 4 ? argv[4] : "auto";
    int B = argc > 5 ? atoi(argv[5]) : 4, T = argc > 6 ? atoi(argv[6]) : 64;
    int bf16 = argc > 7 && argv[7][0] == 'b';
    th_gpt2_config cfg;
    th_gpt2 *m = NULL;
    if (th_gpt2_config_preset(preset, &cfg) != TH_OK || th_gpt2_create(&cfg, &m) != TH_OK) return 1;
    if (th_compute_select(backend) != TH_OK) return 1;
    th_threads_set(threads);
    th_gpt2_init_random(m, 1);
    th_gpt2_set_train_precision(m, bf16 ? TH_PRECISION_BF16 : TH_PRECISION_F32);
    int *tok = malloc(sizeof(int) * (size_t)(B * T + 1));
    if (!tok) return 1;
    th_rng rng;
    th_rng_seed(&rng, 7);
    for (int i = 0; i <= B * T; i++) tok[i] = (int)(th_rng_u64(&rng) % (uint64_t)cfg.vocab_size);
    th_adamw_config opt = th_adamw_defaults();
    enum { PHASES = 5 };
    const char *names[PHASES] = {"forward", "zero_grad", "backward", "grad_norm", "adamw"};
    double best[PHASES + 1];
    for (int k = 0; k <= PHASES; k++) best[k] = 1e30;
    for (int s = 0; s < steps; s++) {
        double t[PHASES + 1];
        float loss = 0.0f;
        t[0] = now_ms();
        if (th_gpt2_forward(m, tok, tok + 1, B, T, &loss) != TH_OK) return 1;
        t[1] = now_ms();
        if (th_gpt2_zero_grad(m) != TH_OK) return 1;
        t[2] = now_ms();
        if (th_gpt2_backward(m, 1.0f) != TH_OK) return 1;
        t[3] = now_ms();
        double norm = th_gpt2_grad_norm(m);
        t[4] = now_ms();
        if (th_gpt2_adamw_step(m, &opt, opt.lr, norm) != TH_OK) return 1;
        t[5] = now_ms();
        for (int k = 0; k < PHASES; k++)
            if (t[k + 1] - t[k] < best[k]) best[k] = t[k + 1] - t[k];
        if (t[5] - t[0] < best[PHASES]) best[PHASES] = t[5] - t[0];
        printf("step %d: %.1f ms, loss %a, grad norm %a\n", s, t[5] - t[0], (double)loss, norm);
    }
    // FNV-1a over the parameters' bytes: two builds that learn the same bits print the same hash
    uint64_t h = 1469598103934665603ull;
    const unsigned char *pb = (const unsigned char *)th_gpt2_params(m);
    size_t n_bytes = th_gpt2_num_params(&cfg) * sizeof(float);
    for (size_t i = 0; i < n_bytes; i++) h = (h ^ pb[i]) * 1099511628211ull;
    printf("parameters after %d steps: hash %016llx\n", steps, (unsigned long long)h);
    printf("%s, %d threads, %s, B %d T %d, best of %d:\n", preset, threads, th_compute_current(), B, T, steps);
    for (int k = 0; k < PHASES; k++) printf("  %-10s %9.1f ms\n", names[k], best[k]);
    printf("  %-10s %9.1f ms\n", "step", best[PHASES]);
    free(tok);
    th_gpt2_free(m);
    return 0;
}
