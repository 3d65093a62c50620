/* pipeline.h: the wiring of the engine into runs: the model benchmark (train step,
 * prefill and decode speed, memory) and, as they land, the training and generation loops
 * that the thermal governor paces and the eco ledger measures. */
#ifndef THERMO_PIPELINE_H
#define THERMO_PIPELINE_H

#include "thermo/core.h"
#include "thermo/model.h"

/* ---------------------------------------------------------------------------------
 * model benchmark */

typedef struct {
    int batch, seq;      /* training shape (B, T); defaults 4, 64 */
    int train_steps;     /* timed steps; the median is reported (default 5, after 1 warm-up) */
    int prompt_tokens;   /* prefill length before decoding (default 128) */
    int decode_tokens;   /* decoded tokens timed (default 64) */
    int threads;         /* 0: keep the current setting */
    int baseline_naive;  /* also time training steps with the naive matmul loops */
    int baseline_steps;  /* timed naive steps (default 2) */
    uint64_t seed;
} th_bench_model_opts;

typedef struct {
    size_t params;
    int threads;
    const char *matmul; /* backend name used for the main figures */
    double train_step_ms;       /* median over the timed steps: forward + backward + AdamW */
    double train_step_ms_min;
    double train_gflops;        /* model FLOPs per step (6·N·tokens + attention) / time */
    double train_step_ms_naive; /* 0 unless baseline_naive */
    double prefill_tok_s;
    double decode_tok_s;
    double decode_rss_mb;       /* peak RSS after inference, before training allocates */
    double peak_rss_mb;         /* peak RSS of the whole benchmark (training included) */
    float first_loss;           /* loss of the first training step, ≈ ln(V) at init */
} th_bench_model_result;

th_bench_model_opts th_bench_model_defaults(void);

/* Builds a model of shape `cfg` with random weights and measures it. Inference runs first,
 * so decode_rss_mb is the footprint of inference alone. */
th_status th_bench_model(const th_gpt2_config *cfg, const th_bench_model_opts *opts,
                         th_bench_model_result *out);

#endif
