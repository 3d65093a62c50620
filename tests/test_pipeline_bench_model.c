/* test_pipeline_bench_model.c: `thermo bench model`'s rounds on the tiny shape: every figure
 * is the best of the rounds and every share is computed from the best figure and the best
 * ceiling of the same run; the ceilings' gigabyte read buffer is not counted as the model's
 * memory; bad options are refused. Timings are only compared with each other, never with
 * a fixed number (no timing assertions). */
#include "test_util.h"
#include "thermo/pipeline.h"

static int near(double a, double b) { return fabs(a - b) <= 1e-9 * fabs(b) + 1e-12; }

int main(void) {
    th_gpt2_config cfg;
    CHECK(th_gpt2_config_preset("tiny", &cfg) == TH_OK, "tiny preset");
    th_bench_model_opts o = th_bench_model_defaults();
    CHECK(o.rounds == 3, "three rounds by default, got %d", o.rounds);
    o.threads = 2, o.train_steps = 1, o.prompt_tokens = 16, o.decode_tokens = 8, o.rounds = 2;
    o.dtypes[0] = TH_DTYPE_F32, o.dtypes[1] = TH_DTYPE_Q8, o.n_dtypes = 2, o.quality_tokens = 32;
    th_bench_model_result r;
    CHECK(th_bench_model(&cfg, &o, &r) == TH_OK, "bench runs");
    CHECK(r.rounds == 2, "rounds recorded: %d", r.rounds);
    CHECK(r.ceilings.read_gb_s >= r.ceilings_worst.read_gb_s && r.ceilings_worst.read_gb_s > 0,
          "best read %.2f >= worst %.2f > 0", r.ceilings.read_gb_s, r.ceilings_worst.read_gb_s);
    CHECK(r.ceilings.fma_gflop_s >= r.ceilings_worst.fma_gflop_s && r.ceilings_worst.fma_gflop_s > 0,
          "best FMA %.2f >= worst %.2f > 0", r.ceilings.fma_gflop_s, r.ceilings_worst.fma_gflop_s);
    // shares: the best figure over the best ceiling
    CHECK(near(r.decode_read_share, r.decode_tok_s * r.decode_bytes_per_token / (r.ceilings.read_gb_s * 1e9)),
          "decode share %.4f from the best figures", r.decode_read_share);
    CHECK(near(r.train_fma_share, r.train_gflops / r.ceilings.fma_gflop_s), "train share %.4f", r.train_fma_share);
    CHECK(r.train_step_ms_min <= r.train_step_ms, "min %.2f <= median %.2f", r.train_step_ms_min, r.train_step_ms);
    CHECK(r.n_rows == 2, "two precision rows");
    for (int i = 0; i < r.n_rows; i++) {
        const th_bench_dtype_row *w = &r.rows[i];
        CHECK(near(w->decode_read_share, w->decode_tok_s * w->decode_bytes_per_token / (r.ceilings.read_gb_s * 1e9)),
              "%s decode share", th_dtype_name(w->dtype));
        CHECK(w->prefill512_tokens > 0 && w->prefill512_fma_share > 0, "%s prefill-512 share", th_dtype_name(w->dtype));
        // the bytes-bound ratio: more context reads more KV, so at most 1 (1 when the model's
        // context makes both probes the same length)
        CHECK(w->ctx_bytes_ratio > 0.3 && w->ctx_bytes_ratio <= 1.0, "%s bytes-bound 512/64 ratio %g",
              th_dtype_name(w->dtype), w->ctx_bytes_ratio);
    }
    CHECK(r.rows[1].ppl_ratio > 0.9 && r.rows[1].ppl_ratio < 1.1 && r.rows[1].top1_agreement > 0.5,
          "the quality gate ran once and was kept: ppl ratio %.5f", r.rows[1].ppl_ratio);
    // the tiny model and its optimizer state are a few MB; the ceilings' buffer is >= 512 MiB
    CHECK(r.peak_rss_mb < 400 && r.decode_rss_mb < 400, "peak RSS %.0f MB, inference %.0f MB: the read buffer "
          "(%zu MiB) is not counted", r.peak_rss_mb, r.decode_rss_mb, r.ceilings.buffer_bytes >> 20);

    // the KV cache each row ran with: auto is f32 for f32, and for q8 weights q8, except where
    // the head size is not whole q8_0 blocks (the tiny preset's 16): f16
    CHECK(r.rows[0].kv_dtype == TH_KV_F32 && r.rows[1].kv_dtype == TH_KV_F16, "auto KV: %s, %s",
          th_kv_dtype_name(r.rows[0].kv_dtype), th_kv_dtype_name(r.rows[1].kv_dtype));
    // head size 32: the q8 row's auto KV is q8, and its bytes per token count 34 bytes per 32
    // keys or values: f16 KV reads 2 - 34/32 bytes more per element at each position so far
    th_gpt2_config c32 = cfg;
    c32.num_heads = 2;
    o.dtypes[0] = TH_DTYPE_Q8, o.n_dtypes = 1, o.rounds = 1, o.quality_tokens = 0;
    th_bench_model_result r8, r16;
    CHECK(th_bench_model(&c32, &o, &r8) == TH_OK, "bench, q8 weights, auto KV");
    o.kv_dtype = TH_KV_F16;
    CHECK(th_bench_model(&c32, &o, &r16) == TH_OK, "bench, q8 weights, f16 KV");
    double per_elem = 2.0 * c32.num_layers * c32.channels * (o.prompt_tokens + o.decode_tokens / 2.0);
    CHECK(r8.rows[0].kv_dtype == TH_KV_Q8 && r16.rows[0].kv_dtype == TH_KV_F16, "KV %s and %s",
          th_kv_dtype_name(r8.rows[0].kv_dtype), th_kv_dtype_name(r16.rows[0].kv_dtype));
    CHECK(near(r16.rows[0].decode_bytes_per_token - r8.rows[0].decode_bytes_per_token, (2.0 - 34.0 / 32) * per_elem),
          "bytes a token: f16 KV %.0f, q8 KV %.0f, want a difference of %.0f", r16.rows[0].decode_bytes_per_token,
          r8.rows[0].decode_bytes_per_token, (2.0 - 34.0 / 32) * per_elem);
    o.kv_dtype = TH_KV_AUTO;

    o.rounds = 0;
    CHECK_FAIL(th_bench_model(&cfg, &o, &r), TH_ERR_INVALID, "--rounds 0", "zero rounds refused");
    return test_summary();
}
