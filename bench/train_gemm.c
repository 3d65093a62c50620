/* train_gemm.c: the training step's matmuls one at a time (GPT-2 124M shapes at B·T rows:
 * forward, dinp and dW of qkv, attn proj, fc, fc proj and the lm_head), each against the FMA
 * peak measured in the same run, so a GEMM change shows as a share, not as a time that the
 * noisy host may have moved. Rounds interleave the peak and every product; best of rounds.
 * clock "cpu" times the process's CPU time divided by the thread count instead of the wall
 * clock, against one thread's FMA peak times the thread count: time the other loads take
 * from this process is then not counted, which makes A/B comparisons of the work far steadier
 * on a shared host. With more than one thread run it under OMP_WAIT_POLICY=passive, or
 * OpenMP's spinning counts as work (and imbalance between threads is not seen).
 *
 * usage: train_gemm [threads, default 2] [rounds, default 3] [backend, default auto]
 *                   [rows B·T, default 256] [only: a shape name or "all", default all]
 *                   [clock: wall|cpu, default wall] [precision: f32|bf16, default f32]
 * bf16 times th_mm_*_bf16 (on avx512 with AVX512_BF16: vdpbf16ps), against the same fp32 peak. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define HAVE_FMA_LOOP 1
#endif

#include "model/compute.h"
#include "thermo/core.h"
#include "thermo/model.h"

typedef struct {
    const char *name;
    int n, k, per_step; /* out features, in features, uses a step (12 layers, or 1) */
} shape;

static int use_cpu_clock;

static double now_s(void) {
    if (!use_cpu_clock) return th_now_ns() / 1e9;
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The FMA peak of one thread in GFLOP/s on now_s's clock: 12 independent chains of 8 lanes
 * (what th_ceilings_measure runs), best of 3; 0 in a build without AVX2 and FMA. */
static double fma_peak_1thread(void) {
#ifndef HAVE_FMA_LOOP
    return 0;
#else
    enum { ITERS = 20000000 };
    double best = 0;
    for (int pass = 0; pass < 3; pass++) {
        __m256 c[12];
        for (int i = 0; i < 12; i++) c[i] = _mm256_set1_ps((float)i);
        __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-7f);
        double t0 = now_s();
        for (int it = 0; it < ITERS; it++)
            for (int i = 0; i < 12; i++) {
                c[i] = _mm256_fmadd_ps(c[i], a, b);
                __asm__ volatile("" : "+x"(c[i]));
            }
        double g = 2.0 * 8 * 12 * (double)ITERS / (now_s() - t0) / 1e9;
        float sink[8];
        _mm256_storeu_ps(sink, c[0]);
        if (sink[0] == 12345.0f) printf(" ");
        if (g > best) best = g;
    }
    return best;
#endif
}

static void fill(float *x, size_t n, uint64_t seed) {
    th_rng rng;
    th_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)(th_rng_u64(&rng) >> 40) / (float)(1 << 24) - 0.5f;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2, rounds = argc > 2 ? atoi(argv[2]) : 3;
    const char *backend = argc > 3 ? argv[3] : "auto";
    int M = argc > 4 ? atoi(argv[4]) : 256;
    const char *only = argc > 5 && strcmp(argv[5], "all") != 0 ? argv[5] : NULL;
    use_cpu_clock = argc > 6 && strcmp(argv[6], "cpu") == 0;
    int bf16 = argc > 7 && strcmp(argv[7], "bf16") == 0;
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
        double pk = use_cpu_clock ? fma_peak_1thread() * threads : 0;
        if (pk == 0 && th_ceilings_measure(threads, &c) == TH_OK) pk = c.fma_gflop_s;
        if (pk > peak) peak = pk;
        for (int s = 0; s < NS; s++) {
            if (only && strcmp(only, shapes[s].name) != 0) continue;
            int N = shapes[s].n, K = shapes[s].k;
            for (int o = 0; o < OPS; o++) {
                double t0 = now_s();
                if (o == 0) (bf16 ? th_mm_forward_bf16 : th_mm_forward)(out, inp, w, bias, M, N, K);
                else if (o == 1)
                    (bf16 ? th_mm_backward_set_bf16 : th_mm_backward_set)(dinp, NULL, NULL, out, inp, w, M, N, K,
                                                                           TH_MM_SET_DINP);
                else (bf16 ? th_mm_backward_set_bf16 : th_mm_backward_set)(NULL, dw, NULL, out, inp, w, M, N, K, TH_MM_SET_DW);
                double t = (now_s() - t0) / (use_cpu_clock ? threads : 1);
                if (t < best[s][o]) best[s][o] = t;
            }
        }
    }
    printf("%s %s, %d threads, M %d, best of %d, %s clock; fp32 FMA peak %.1f GFLOP/s (best of the same rounds)\n",
           th_compute_current(), bf16 ? "bf16" : "f32", threads, M, rounds, use_cpu_clock ? "cpu" : "wall", peak);
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
