/* train_gemm.c: the training step's matmuls one at a time (GPT-2 124M shapes at B·T rows:
 * forward, dinp and dW of qkv, attn proj, fc, fc proj and the lm_head), each against the FMA
 * peak measured in the same run, so a GEMM change shows as a share, not as a time that the
 * noisy host may have moved. Rounds interleave the peak and every product; best of rounds.
 *
 * usage: train_gemm [threads, default 2] [rounds, default 3] [backend, default auto]
 *                   [rows B·T, default 256] [only: a shape name, default all] */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/compute.h"
#include "thermo/core.h"
#include "thermo/model.h"

typedef struct {
    const char *name;
    int n, k, per_step; /* out features, in features, uses a step (12 layers, or 1) */
} shape;

static double now_s(void) { return th_now_ns() / 1e9; }

static void fill(float *x, size_t n, uint64_t seed) {
    th_rng rng;
    th_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)(th_rng_u64(&rng) >> 40) / (float)(1 << 24) - 0.5f;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2, rounds = argc > 2 ? atoi(argv[2]) : 3;
    const char *backend = argc > 3 ? argv[3] : "auto";
    int M = argc > 4 ? atoi(argv[4]) : 256;
    const char *only = argc > 5 ? argv[5] : NULL;
    const shape shapes[] = {
        {"qkv", 2304, 768, 12}, {"attproj", 768, 768, 12}, {"fc", 3072, 768, 12},
        {"fcproj", 768, 3072, 12}, {"lm_head", 50257, 768, 1},
    };
    enum { NS = sizeof shapes / sizeof shapes[0], OPS = 3 };
    const char *ops[OPS] = {"forward", "dinp", "dw"};
    if (th_compute_select(backend) != TH_OK) return 1;
    th_threads_set(threads);
    size_t max_nk = 0, max_mn = 0, max_mk = 0;
    for (int s = 0; s < NS; s++) {
        size_t nk = (size_t)shapes[s].n * shapes[s].k;
        if (nk > max_nk) max_nk = nk;
        if ((size_t)M * shapes[s].n > max_mn) max_mn = (size_t)M * shapes[s].n;
        if ((size_t)M * shapes[s].k > max_mk) max_mk = (size_t)M * shapes[s].k;
    }
    float *w = malloc(max_nk * sizeof(float)), *dw = malloc(max_nk * sizeof(float));
    float *inp = malloc(max_mk * sizeof(float)), *dinp = malloc(max_mk * sizeof(float));
    float *out = malloc(max_mn * sizeof(float)), *bias = malloc(50304 * sizeof(float));
    if (!w || !dw || !inp || !dinp || !out || !bias) return 1;
    fill(w, max_nk, 1);
    fill(inp, max_mk, 2);
    fill(out, max_mn, 3);
    fill(bias, 50304, 4);
    memset(dw, 0, max_nk * sizeof(float));
    memset(dinp, 0, max_mk * sizeof(float));

    double best[NS][OPS], peak = 0;
    for (int s = 0; s < NS; s++)
        for (int o = 0; o < OPS; o++) best[s][o] = 1e30;
    for (int r = 0; r < rounds; r++) {
        th_ceilings c;
        if (th_ceilings_measure(threads, &c) == TH_OK && c.fma_gflop_s > peak) peak = c.fma_gflop_s;
        for (int s = 0; s < NS; s++) {
            if (only && strcmp(only, shapes[s].name) != 0) continue;
            int N = shapes[s].n, K = shapes[s].k;
            for (int o = 0; o < OPS; o++) {
                double t0 = now_s();
                if (o == 0) th_mm_forward(out, inp, w, bias, M, N, K);
                else if (o == 1) th_mm_backward_set(dinp, NULL, NULL, out, inp, w, M, N, K, TH_MM_SET_DINP);
                else th_mm_backward_set(NULL, dw, NULL, out, inp, w, M, N, K, TH_MM_SET_DW);
                double t = now_s() - t0;
                if (t < best[s][o]) best[s][o] = t;
            }
        }
    }
    printf("%s, %d threads, M %d, best of %d; FMA peak %.1f GFLOP/s (best of the same rounds)\n",
           th_compute_current(), threads, M, rounds, peak);
    printf("%-8s %-8s %9s %9s %7s\n", "shape", "op", "ms", "GFLOP/s", "share");
    double step_s = 0, step_flop = 0;
    for (int s = 0; s < NS; s++) {
        if (only && strcmp(only, shapes[s].name) != 0) continue;
        double flop = 2.0 * M * shapes[s].n * shapes[s].k;
        for (int o = 0; o < OPS; o++) {
            double g = flop / best[s][o] / 1e9;
            printf("%-8s %-8s %9.2f %9.1f %6.1f%%\n", shapes[s].name, ops[o], best[s][o] * 1e3, g, 100 * g / peak);
            step_s += best[s][o] * shapes[s].per_step;
            step_flop += flop * shapes[s].per_step;
        }
    }
    printf("a step's matmuls: %.1f ms, %.1f GFLOP/s, %.1f%% of the peak\n", step_s * 1e3, step_flop / step_s / 1e9,
           100 * step_flop / step_s / 1e9 / peak);
    free(w), free(dw), free(inp), free(dinp), free(out), free(bias);
    return 0;
}
