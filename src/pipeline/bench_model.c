/* bench_model.c: `thermo bench model`. Times a training step (forward + backward + AdamW),
 * a prefill and KV-cache decoding on a model of a given shape with random weights, and
 * records the memory high-water mark. Every speed is also stated as a share of the
 * machine's read bandwidth or FMA peak measured in the same run, and optionally against the
 * naive matmul loops timed in the same run, so figures compare across hosts. */
#include <malloc.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thermo/pipeline.h"

th_bench_model_opts th_bench_model_defaults(void) {
    th_bench_model_opts o = {.batch = 4, .seq = 64, .train_steps = 5, .prompt_tokens = 128, .decode_tokens = 64,
                             .baseline_steps = 2, .seed = 1337, .dtypes = {TH_DTYPE_F32}, .quality_tokens = 256,
                             .kv_dtype = TH_KV_AUTO, .rounds = 3};
    return o;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Runs `steps` training steps on fixed random batches; fills the per-step times in ms. */
static th_status time_train(th_gpt2 *m, const int *tok, int B, int T, int steps, double *ms, float *first_loss) {
    th_adamw_config opt = th_adamw_defaults();
    for (int s = 0; s < steps; s++) {
        uint64_t t0 = th_now_ns();
        float loss;
        th_status st = th_gpt2_forward(m, tok, tok + 1, B, T, &loss);
        if (st == TH_OK) st = th_gpt2_zero_grad(m);
        if (st == TH_OK) st = th_gpt2_backward(m, 1.0f);
        if (st == TH_OK) st = th_gpt2_adamw_step(m, &opt, opt.lr, th_gpt2_grad_norm(m));
        if (st != TH_OK) return st;
        ms[s] = (th_now_ns() - t0) / 1e6;
        if (s == 0 && first_loss) *first_loss = loss;
    }
    return TH_OK;
}

/* Resets the kernel's peak-RSS mark (Linux >= 4.0: "5" to /proc/self/clear_refs) after giving
 * the heap's free pages back (glibc's malloc_trim), so a row's peak is its own; 1 on success. */
static int hwm_reset(void) {
    malloc_trim(0); // freed heap pages of earlier rows and rounds back to the system first
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return 0;
    int ok = fputs("5", f) >= 0;
    ok = fclose(f) == 0 && ok;
    return ok;
}

/* VmHWM from /proc/self/status in bytes, or the process peak where it cannot be read. */
static double hwm_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) kb = atof(line + 6);
    if (f) fclose(f);
    return kb >= 0 ? kb * 1024.0 : (double)th_peak_rss_bytes();
}

/* Greedy decoding of n tokens after the logits in `logits`; returns tokens per second or < 0. */
static double decode_timed(th_gpt2 *m, th_gpt2_kv *kv, float *logits, int n, int V) {
    uint64_t t0 = th_now_ns();
    for (int i = 0; i < n; i++) {
        int next = 0;
        for (int v = 1; v < V; v++)
            if (logits[v] > logits[next]) next = v;
        if (th_gpt2_infer(m, kv, &next, 1, logits, 0) != TH_OK) return -1;
    }
    return n / ((th_now_ns() - t0) / 1e9);
}

/* Model FLOPs of a prefill of P tokens: 2·N per token + causal q·k and p·v. */
static double prefill_flops(const th_gpt2_config *cfg, size_t params, double P) {
    return 2.0 * (double)params * P + 2.0 * cfg->num_layers * P * P * cfg->channels;
}

/* The row's f32 model: o->model_path's weights, or random ones of shape cfg. */
static th_status model_for_row(const th_gpt2_config *cfg, const th_bench_model_opts *o, th_gpt2 **m) {
    if (o->model_path) {
        th_status st = th_model_load_any(o->model_path, m, NULL);
        if (st == TH_OK && memcmp(th_gpt2_get_config(*m), cfg, sizeof *cfg) != 0) {
            th_gpt2_free(*m);
            *m = NULL;
            return th_fail(TH_ERR_INVALID, "bench: %s does not have the benchmark's shape", o->model_path);
        }
        return st;
    }
    th_status st = th_gpt2_create(cfg, m);
    if (st == TH_OK) th_gpt2_init_random(*m, o->seed);
    return st;
}

/* One row of the precision table on a fresh model with the benchmark's random weights. */
static th_status dtype_row(const th_gpt2_config *cfg, const th_bench_model_opts *o, const int *tok, int n_tok,
                           th_dtype dtype, th_bench_dtype_row *row) {
    memset(row, 0, sizeof *row);
    row->dtype = dtype;
    th_gpt2 *m = NULL;
    th_gpt2_kv *kv = NULL;
    float *logits = NULL;
    int V = cfg->vocab_size, P = o->prompt_tokens, D = o->decode_tokens;
    int long_ctx = cfg->max_seq_len - 32 < 512 ? cfg->max_seq_len - 32 : 512;
    int short_ctx = long_ctx < 64 ? long_ctx : 64;
    int cap = P + D > long_ctx + 32 ? P + D : long_ctx + 32;
    th_gpt2 *ref = NULL;
    th_status st = model_for_row(cfg, o, &m);
    if (st != TH_OK) return st;
    row->ppl_ratio = row->top1_agreement = 1.0;
    if (o->quality_tokens > 1 && dtype != TH_DTYPE_F32) {
        // the f32 original beside the packed copy, for the quality gate, then freed
        if ((st = th_gpt2_create(cfg, &ref)) != TH_OK) goto done;
        memcpy(th_gpt2_params(ref), th_gpt2_params(m), th_gpt2_num_params(cfg) * sizeof(float));
    }
    th_infer_precision prec = {dtype, o->embed_f32, o->kv_dtype};
    if ((st = th_gpt2_set_precision(m, &prec)) != TH_OK) goto done;
    th_gpt2_set_kv_dtype(m, prec.kv_dtype);
    if (ref) {
        th_precision_quality_result q;
        int nq = o->quality_tokens < n_tok ? o->quality_tokens : n_tok;
        if ((st = th_precision_quality(ref, m, tok, nq, 0, &q)) != TH_OK) goto done;
        row->ppl_ratio = q.ppl_ratio;
        row->mean_kl = q.mean_kl;
        row->top1_agreement = q.top1_agreement;
        th_gpt2_free(ref);
        ref = NULL;
    }
    row->rss_reset = hwm_reset();
    logits = th_alloc(sizeof(float) * (size_t)V);
    if (!logits) {
        st = th_fail(TH_ERR_NOMEM, "bench: out of memory");
        goto done;
    }
    if ((st = th_gpt2_kv_create(m, cap, &kv)) != TH_OK) goto done;
    if ((st = th_gpt2_infer(m, kv, tok, 8, logits, 0)) != TH_OK) goto done; // warm-up
    th_gpt2_kv_reset(kv);
    uint64_t t0 = th_now_ns();
    if ((st = th_gpt2_infer(m, kv, tok, P, logits, 0)) != TH_OK) goto done;
    row->prefill_tok_s = P / ((th_now_ns() - t0) / 1e9);
    row->decode_tok_s = decode_timed(m, kv, logits, D, V);
    // bytes a token reads: the weights, and K and V of every layer at each position so far
    row->kv_dtype = th_gpt2_kv_cache_dtype(kv);
    double kv_elem = th_kv_dtype_bytes(row->kv_dtype);
    double w_bytes = th_gpt2_decode_weight_bytes(m), kv_pos = kv_elem * 2.0 * cfg->num_layers * cfg->channels;
    row->decode_bytes_per_token = w_bytes + kv_pos * (P + D / 2.0);
    // the context probe: 32 tokens after short_ctx, then after long_ctx, of the same prompt tokens
    th_gpt2_kv_reset(kv);
    if ((st = th_gpt2_infer(m, kv, tok, short_ctx, logits, 0)) != TH_OK) goto done;
    row->decode_ctx64_tok_s = decode_timed(m, kv, logits, 32, V);
    th_gpt2_kv_reset(kv);
    int n_long = long_ctx < n_tok ? long_ctx : n_tok;
    t0 = th_now_ns();
    if ((st = th_gpt2_infer(m, kv, tok, n_long, logits, 0)) != TH_OK) goto done;
    row->prefill512_tok_s = n_long / ((th_now_ns() - t0) / 1e9);
    row->prefill512_tokens = n_long;
    row->decode_ctx512_tok_s = decode_timed(m, kv, logits, 32, V);
    row->ctx_bytes_ratio = (w_bytes + kv_pos * (short_ctx + 16.0)) / (w_bytes + kv_pos * (n_long + 16.0));
    if (row->decode_tok_s < 0 || row->decode_ctx64_tok_s < 0 || row->decode_ctx512_tok_s < 0) {
        st = th_fail(TH_ERR_STATE, "bench: %s decode failed: %s", th_dtype_name(dtype), th_last_error());
        goto done;
    }
    row->rss_mb = hwm_bytes() / 1e6;
done:
    th_free(logits);
    th_gpt2_kv_free(kv);
    th_gpt2_free(ref);
    th_gpt2_free(m);
    return st;
}

/* One warm-up step and `steps` timed ones (ms holds steps + 1): the median and the fastest. */
static th_status train_row(th_gpt2 *m, const int *tok, int B, int T, int steps, double *ms, float *first_loss,
                           double *median_ms, double *min_ms) {
    th_status st = time_train(m, tok, B, T, steps + 1, ms, first_loss);
    if (st != TH_OK) return st;
    qsort(ms + 1, (size_t)steps, sizeof(double), cmp_double);
    *median_ms = ms[1 + steps / 2];
    *min_ms = ms[1];
    return TH_OK;
}

/* One round: the ceilings, then inference, training and the precision table, each figure
 * raw (times and rates); derive() turns the best of all rounds into GFLOP/s and shares. */
static th_status bench_round(const th_gpt2_config *cfg, const th_bench_model_opts *o, const int *tok, int n_tok,
                             th_bench_model_result *out) {
    th_status st = th_ceilings_measure(out->threads, &out->ceilings);
    if (st != TH_OK) return st;
    hwm_reset(); // the ceilings' read buffer (>= 4x the LLC) is not the model's memory
    th_gpt2 *m = NULL;
    th_gpt2_kv *kv = NULL;
    float *logits = NULL;
    double *ms = NULL;
    st = th_gpt2_create(cfg, &m);
    if (st != TH_OK) return st;
    th_gpt2_init_random(m, o->seed);

    int B = o->batch, T = o->seq, V = cfg->vocab_size;
    int n_ms = o->train_steps + 1 > o->baseline_steps + 1 ? o->train_steps + 1 : o->baseline_steps + 1;
    ms = th_alloc(sizeof(double) * (size_t)n_ms);
    logits = th_alloc(sizeof(float) * (size_t)V);
    if (!ms || !logits) {
        st = th_fail(TH_ERR_NOMEM, "bench: out of memory");
        goto done;
    }

    // inference: prefill the prompt, then greedy decoding
    st = th_gpt2_kv_create(m, o->prompt_tokens + o->decode_tokens, &kv);
    if (st != TH_OK) goto done;
    st = th_gpt2_infer(m, kv, tok, 8, logits, 0); // warm-up: threads, page faults
    if (st != TH_OK) goto done;
    th_gpt2_kv_reset(kv);
    uint64_t t0 = th_now_ns();
    st = th_gpt2_infer(m, kv, tok, o->prompt_tokens, logits, 0);
    if (st != TH_OK) goto done;
    out->prefill_tok_s = o->prompt_tokens / ((th_now_ns() - t0) / 1e9);
    out->decode_tok_s = decode_timed(m, kv, logits, o->decode_tokens, V);
    if (out->decode_tok_s < 0) {
        st = th_fail(TH_ERR_STATE, "bench: decode failed: %s", th_last_error());
        goto done;
    }
    out->decode_rss_mb = hwm_bytes() / 1e6;

    // training: one warm-up step, then the timed ones; the main row, then the optional bf16
    // and other-backend rows, each on the same model and batches
    double min_ms;
    st = train_row(m, tok, B, T, o->train_steps, ms, &out->first_loss, &out->train_step_ms, &out->train_step_ms_min);
    if (st != TH_OK) goto done;
    if (o->train_bf16) {
        th_gpt2_set_train_precision(m, TH_PRECISION_BF16);
        st = train_row(m, tok, B, T, o->train_steps, ms, NULL, &out->train_step_ms_bf16, &out->train_step_ms_min_bf16);
        th_gpt2_set_train_precision(m, TH_PRECISION_F32);
        if (st != TH_OK) goto done;
    }
    if (o->train_vs) {
        const char *keep = th_compute_current();
        st = th_compute_select(o->train_vs);
        if (st == TH_OK) {
            out->vs_matmul = th_compute_current();
            st = train_row(m, tok, B, T, o->train_steps, ms, NULL, &out->train_step_ms_vs, &min_ms);
        }
        th_compute_select(keep);
        if (st != TH_OK) goto done;
    }
    out->peak_rss_mb = hwm_bytes() / 1e6;

    if (o->baseline_naive) {
        const char *keep = th_compute_current();
        st = th_compute_select("naive");
        if (st == TH_OK) st = time_train(m, tok, B, T, o->baseline_steps, ms, NULL);
        th_compute_select(keep);
        if (st != TH_OK) goto done;
        qsort(ms, (size_t)o->baseline_steps, sizeof(double), cmp_double);
        out->train_step_ms_naive = ms[o->baseline_steps / 2];
    }
    // the precision table, after everything else so each row's RSS is its own
    th_gpt2_kv_free(kv);
    kv = NULL;
    th_gpt2_free(m);
    m = NULL;
    for (int i = 0; i < o->n_dtypes && i < 4; i++) {
        st = dtype_row(cfg, o, tok, n_tok, o->dtypes[i], &out->rows[i]);
        if (st != TH_OK) goto done;
        out->n_rows = i + 1;
    }
done:
    th_free(logits);
    th_free(ms);
    th_gpt2_kv_free(kv);
    th_gpt2_free(m);
    return st;
}

static double max_d(double a, double b) { return a > b ? a : b; }
static double min_d(double a, double b) { return a < b ? a : b; }

/* Folds round r into best: the highest rate and the lowest time of each figure (a noisy
 * neighbour only ever slows a figure down), the highest memory; the slowest ceilings go to
 * ceilings_worst so the spread between rounds can be shown. */
static void keep_best(th_bench_model_result *best, const th_bench_model_result *r) {
    best->ceilings.read_gb_s = max_d(best->ceilings.read_gb_s, r->ceilings.read_gb_s);
    best->ceilings.fma_gflop_s = max_d(best->ceilings.fma_gflop_s, r->ceilings.fma_gflop_s);
    best->ceilings_worst.read_gb_s = min_d(best->ceilings_worst.read_gb_s, r->ceilings.read_gb_s);
    best->ceilings_worst.fma_gflop_s = min_d(best->ceilings_worst.fma_gflop_s, r->ceilings.fma_gflop_s);
    best->prefill_tok_s = max_d(best->prefill_tok_s, r->prefill_tok_s);
    best->decode_tok_s = max_d(best->decode_tok_s, r->decode_tok_s);
    best->decode_rss_mb = max_d(best->decode_rss_mb, r->decode_rss_mb);
    best->peak_rss_mb = max_d(best->peak_rss_mb, r->peak_rss_mb);
    best->train_step_ms = min_d(best->train_step_ms, r->train_step_ms);
    best->train_step_ms_min = min_d(best->train_step_ms_min, r->train_step_ms_min);
    best->train_step_ms_bf16 = min_d(best->train_step_ms_bf16, r->train_step_ms_bf16);
    best->train_step_ms_min_bf16 = min_d(best->train_step_ms_min_bf16, r->train_step_ms_min_bf16);
    best->train_step_ms_vs = min_d(best->train_step_ms_vs, r->train_step_ms_vs);
    best->train_step_ms_naive = min_d(best->train_step_ms_naive, r->train_step_ms_naive);
    for (int i = 0; i < best->n_rows; i++) {
        th_bench_dtype_row *b = &best->rows[i];
        const th_bench_dtype_row *w = &r->rows[i];
        b->prefill_tok_s = max_d(b->prefill_tok_s, w->prefill_tok_s);
        b->prefill512_tok_s = max_d(b->prefill512_tok_s, w->prefill512_tok_s);
        b->decode_tok_s = max_d(b->decode_tok_s, w->decode_tok_s);
        b->decode_ctx64_tok_s = max_d(b->decode_ctx64_tok_s, w->decode_ctx64_tok_s);
        b->decode_ctx512_tok_s = max_d(b->decode_ctx512_tok_s, w->decode_ctx512_tok_s);
        b->ctx_bytes_ratio = w->ctx_bytes_ratio;
        b->rss_mb = max_d(b->rss_mb, w->rss_mb);
        b->rss_reset = b->rss_reset && w->rss_reset;
    }
}

/* GFLOP/s, shares of the (best) ceilings and modeled joules from the kept raw figures. */
static void derive(const th_gpt2_config *cfg, const th_bench_model_opts *o, th_bench_model_result *out) {
    double C = cfg->channels, L = cfg->num_layers, B = o->batch, T = o->seq, P = o->prompt_tokens;
    double read_b_s = out->ceilings.read_gb_s * 1e9, fma_flop_s = out->ceilings.fma_gflop_s * 1e9;
    // every weight is read once per token except the position table (one row), plus the
    // keys and values of the context at mid-decode
    double ctx = o->prompt_tokens + o->decode_tokens / 2.0;
    double weights = (double)out->params - (double)cfg->max_seq_len * C + C;
    out->decode_bytes_per_token = 4.0 * weights + 4.0 * 2.0 * L * ctx * C;
    out->decode_read_share = out->decode_tok_s * out->decode_bytes_per_token / read_b_s;
    out->prefill_fma_share = out->prefill_tok_s / P * prefill_flops(cfg, out->params, P) / fma_flop_s;
    double flops = 6.0 * (double)out->params * B * T + 6.0 * L * B * T * T * C; // 6ND + attention
    th_thermal_profile prof;
    out->modeled_power_w = th_profile_find("laptop-cpu", &prof) == TH_OK ? prof.p_max_w : NAN;
    out->train_gflops = flops / (out->train_step_ms / 1e3) / 1e9;
    out->train_fma_share = out->train_gflops * 1e9 / fma_flop_s;
    out->train_j_step = out->modeled_power_w * out->train_step_ms / 1e3;
    if (o->train_bf16) {
        out->train_gflops_bf16 = flops / (out->train_step_ms_bf16 / 1e3) / 1e9;
        out->train_fma_share_bf16 = out->train_gflops_bf16 * 1e9 / fma_flop_s;
        out->train_j_step_bf16 = out->modeled_power_w * out->train_step_ms_bf16 / 1e3;
    }
    if (out->vs_matmul) {
        out->train_gflops_vs = flops / (out->train_step_ms_vs / 1e3) / 1e9;
        out->train_fma_share_vs = out->train_gflops_vs * 1e9 / fma_flop_s;
        out->train_j_step_vs = out->modeled_power_w * out->train_step_ms_vs / 1e3;
    }
    for (int i = 0; i < out->n_rows; i++) {
        th_bench_dtype_row *w = &out->rows[i];
        w->decode_read_share = w->decode_tok_s * w->decode_bytes_per_token / read_b_s;
        w->prefill_fma_share = w->prefill_tok_s / P * prefill_flops(cfg, out->params, P) / fma_flop_s;
        w->prefill512_fma_share =
            w->prefill512_tok_s / w->prefill512_tokens * prefill_flops(cfg, out->params, w->prefill512_tokens) / fma_flop_s;
    }
}

th_status th_bench_model(const th_gpt2_config *cfg, const th_bench_model_opts *o, th_bench_model_result *out) {
    memset(out, 0, sizeof *out);
    if (o->batch <= 0 || o->seq <= 0 || o->seq > cfg->max_seq_len)
        return th_fail(TH_ERR_INVALID, "bench: training shape %d x %d must be positive with T <= %d", o->batch,
                       o->seq, cfg->max_seq_len);
    if (o->prompt_tokens <= 0 || o->decode_tokens <= 0 || o->prompt_tokens + o->decode_tokens > cfg->max_seq_len)
        return th_fail(TH_ERR_INVALID, "bench: prompt %d + decode %d tokens must fit the context of %d",
                       o->prompt_tokens, o->decode_tokens, cfg->max_seq_len);
    if (o->train_steps <= 0) return th_fail(TH_ERR_INVALID, "bench: --steps must be at least 1");
    if (o->rounds < 1) return th_fail(TH_ERR_INVALID, "bench: --rounds %d must be at least 1", o->rounds);
    th_threads_set(o->threads > 0 ? o->threads : th_threads_get());
    out->threads = th_threads_get();
    out->matmul = th_compute_current();
    out->lowp_kernel = th_lowp_kernel();
    out->params = th_gpt2_num_params(cfg);
    out->rounds = o->rounds;

    int B = o->batch, T = o->seq;
    int n_tok = B * T + 1 > o->prompt_tokens ? B * T + 1 : o->prompt_tokens;
    if (o->n_dtypes > 0 && n_tok < cfg->max_seq_len) n_tok = cfg->max_seq_len; // the context probe's prompt
    int *tok = th_alloc(sizeof(int) * (size_t)n_tok);
    th_bench_model_result *round = th_alloc(sizeof *round);
    th_status st = TH_OK;
    if (!tok || !round) {
        st = th_fail(TH_ERR_NOMEM, "bench: out of memory");
        goto done;
    }
    th_rng rng;
    th_rng_seed(&rng, o->seed + 1);
    for (int i = 0; i < n_tok; i++) tok[i] = (int)(th_rng_u64(&rng) % (uint64_t)cfg->vocab_size);

    // the whole sequence again each round, ceilings included, so that a slow spell of the
    // machine hits a figure and its ceiling in the same round; the quality gate is exact
    // arithmetic, so it runs in the first round only
    th_bench_model_opts later = *o;
    later.quality_tokens = 0;
    for (int r = 0; r < o->rounds; r++) {
        memset(round, 0, sizeof *round);
        round->threads = out->threads;
        st = bench_round(cfg, r == 0 ? o : &later, tok, n_tok, round);
        if (st != TH_OK) goto done;
        if (r == 0) {
            th_bench_model_result keep = *out;
            *out = *round;
            out->threads = keep.threads, out->matmul = keep.matmul, out->lowp_kernel = keep.lowp_kernel;
            out->params = keep.params, out->rounds = keep.rounds;
            out->ceilings_worst = round->ceilings;
        } else {
            keep_best(out, round);
        }
    }
    derive(cfg, o, out);
done:
    th_free(round);
    th_free(tok);
    return st;
}
