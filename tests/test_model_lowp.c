/* test_model_lowp.c: low-precision inference. The f16/bf16 conversions (every half and bf16
 * value round-trips; rounding ties go to even), q8_0 blocks as ggml makes them, each AVX2
 * kernel against its naive twin and across thread counts, and whole models packed as bf16,
 * f16 and q8: the f32 copies given back, training refused, batched decode bit-identical to
 * th_gpt2_infer, prefill equal to step-by-step decode, and logits and greedy tokens against
 * the f32 oracle within the stated agreement. */
#include <stdint.h>

#include "model/kernels.h"
#include "model/lowp.h"
#include "test_util.h"
#include "thermo/model.h"

#ifdef _OPENMP
#include <omp.h>
#endif

static float frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*s >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

static void test_conversions(void) {
    int bad16 = 0, badbf = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lowp_f16_to_f32((uint16_t)h);
        if (!isnan(f) && lowp_f32_to_f16(f) != h) bad16++;
        float g = lowp_bf16_to_f32((uint16_t)h);
        if (!isnan(g) && lowp_f32_to_bf16(g) != h) badbf++;
    }
    CHECK(bad16 == 0, "%d half values do not round-trip\n", bad16);
    CHECK(badbf == 0, "%d bf16 values do not round-trip\n", badbf);
    CHECK(lowp_f32_to_f16(1.0f) == 0x3c00 && lowp_f32_to_f16(-2.0f) == 0xc000, "f16 of 1 and -2\n");
    CHECK(lowp_f32_to_f16(65504.0f) == 0x7bff && lowp_f32_to_f16(65520.0f) == 0x7c00, "f16 max and overflow\n");
    CHECK(lowp_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00, "f16 tie to even (down)\n");
    CHECK(lowp_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02, "f16 tie to even (up)\n");
    CHECK(lowp_f32_to_f16(2.5f / 16777216.0f) == 0x0002 && lowp_f32_to_f16(3.5f / 16777216.0f) == 0x0004,
          "f16 subnormal ties to even\n");
    CHECK(lowp_f32_to_bf16(1.0f + 1.0f / 256) == 0x3f80 && lowp_f32_to_bf16(1.0f + 3.0f / 256) == 0x3f82,
          "bf16 ties to even\n");
    CHECK(isnan(lowp_f16_to_f32(lowp_f32_to_f16(NAN))) && isnan(lowp_bf16_to_f32(lowp_f32_to_bf16(NAN))),
          "NaN stays NaN\n");
    // ggml's q8_0: d = amax / 127 (as a half), q = round(x / d)
    float x[LOWP_QK];
    for (int i = 0; i < LOWP_QK; i++) x[i] = (float)(i - 16) * 0.5f;
    x[3] = -127.0f;
    lowp_q8_block b;
    lowp_quantize_q8(&b, x, LOWP_QK);
    CHECK(b.d == 0x3c00 && b.qs[3] == -127 && b.qs[0] == -8 && b.qs[17] == 1 && b.qs[18] == 1,
          "q8 block: d %04x q %d %d %d %d\n", b.d, b.qs[3], b.qs[0], b.qs[17], b.qs[18]);
}

/* |a - b| within tol · Σ|w·x| for every row: the two kernels sum the same products in
 * different orders. */
static void test_kernels(void) {
    const th_dtype dts[] = {TH_DTYPE_BF16, TH_DTYPE_F16, TH_DTYPE_Q8};
    const int Ks[] = {96, 100, 3072};
    uint64_t s = 7;
    for (int di = 0; di < 3; di++) {
        for (int ki = 0; ki < 3; ki++) {
            int K = Ks[ki], N = 13;
            if (dts[di] == TH_DTYPE_Q8 && K % LOWP_QK) {
                lowp_weight w;
                float dummy[100] = {0};
                CHECK_FAIL(lowp_pack(&w, TH_DTYPE_Q8, dummy, 1, K), TH_ERR_INVALID, "whole blocks", "q8 K 100");
                continue;
            }
            float *wf = th_alloc(sizeof(float) * N * K), *x = th_alloc(sizeof(float) * K), *deq = th_alloc(sizeof(float) * K);
            float bias[13], a[13], b[13], c[13];
            lowp_q8_block *xq = th_alloc(sizeof(lowp_q8_block) * (K / LOWP_QK + 1));
            for (int i = 0; i < N * K; i++) wf[i] = frand(&s) * 0.1f;
            for (int i = 0; i < K; i++) x[i] = frand(&s);
            for (int i = 0; i < N; i++) bias[i] = frand(&s);
            lowp_weight w;
            CHECK(lowp_pack(&w, dts[di], wf, N, K) == TH_OK, "pack\n");
            if (dts[di] == TH_DTYPE_Q8) lowp_quantize_q8(xq, x, K);
            lowp_gemv_naive(a, &w, 0, x, xq, bias, N);
            int worst = 0;
            double max_err = 0;
            for (int n = 0; n < N; n++) {
                lowp_dequant_row(deq, &w, n);
                double ref = bias[n], mag = fabs(bias[n]);
                for (int k = 0; k < K; k++) {
                    ref += (double)deq[k] * x[k];
                    mag += fabs((double)deq[k] * x[k]);
                }
                // the naive twin against a double sum of the dequantized weights (q8: the
                // activation quantization's error too, about 1/254 of each |x|)
                double tol = (dts[di] == TH_DTYPE_Q8 ? 1e-2 : 1e-5) * mag + 1e-6;
                if (fabs(a[n] - ref) > tol) worst++;
                max_err = fmax(max_err, fabs(a[n] - ref) / mag);
            }
            CHECK(worst == 0, "%s K %d: %d rows off the double reference (max rel %.2g)\n", th_dtype_name(dts[di]), K,
                  worst, max_err);
            if (lowp_avx2_usable()) {
                lowp_gemv_avx2(b, &w, 0, x, xq, bias, N);
                int off = 0;
                for (int n = 0; n < N; n++) {
                    double mag = fabs(bias[n]);
                    lowp_dequant_row(deq, &w, n);
                    for (int k = 0; k < K; k++) mag += fabs((double)deq[k] * x[k]);
                    if (fabs(a[n] - b[n]) > 1e-5 * mag + 1e-6) off++;
                }
                CHECK(off == 0, "%s K %d: avx2 differs from naive in %d rows\n", th_dtype_name(dts[di]), K, off);
#ifdef _OPENMP
                omp_set_num_threads(1);
                lowp_gemv_avx2(c, &w, 0, x, xq, bias, N);
                omp_set_num_threads(2);
                CHECK(memcmp(b, c, sizeof b) == 0, "%s K %d: 1 and 2 threads differ\n", th_dtype_name(dts[di]), K);
#endif
                // a row offset reads the right rows
                lowp_gemv_avx2(c, &w, 5, x, xq, bias + 5, 8);
                CHECK(memcmp(c, b + 5, 8 * sizeof(float)) == 0, "%s: row0 offset\n", th_dtype_name(dts[di]));
            }
            lowp_weight_free(&w);
            th_free(xq);
            th_free(deq);
            th_free(x);
            th_free(wf);
        }
    }
}

/* th_attention_row against a double-precision softmax. */
static void test_attention(void) {
    enum { NK = 37, HS = 20, STRIDE = 24 };
    float q[HS], k[NK * STRIDE], v[NK * STRIDE], att[NK], out[HS];
    uint64_t s = 3;
    for (int i = 0; i < HS; i++) q[i] = frand(&s) * 3;
    for (int i = 0; i < NK * STRIDE; i++) k[i] = frand(&s), v[i] = frand(&s);
    th_attention_row(out, att, q, k, v, NK, STRIDE, HS, 0.5f);
    double sc[NK], mx = -1e30, sum = 0, worst = 0;
    for (int t = 0; t < NK; t++) {
        double d = 0;
        for (int i = 0; i < HS; i++) d += (double)q[i] * k[t * STRIDE + i];
        sc[t] = 0.5 * d;
        mx = fmax(mx, sc[t]);
    }
    for (int t = 0; t < NK; t++) sum += sc[t] = exp(sc[t] - mx);
    for (int i = 0; i < HS; i++) {
        double o = 0;
        for (int t = 0; t < NK; t++) o += sc[t] / sum * v[t * STRIDE + i];
        worst = fmax(worst, fabs(o - out[i]));
    }
    CHECK(worst < 1e-5, "attention row off a double reference by %.2g\n", worst);
}

enum { PROMPT = 4, STEPS = 24 };

/* Greedy decoding from a fixed prompt; tokens (STEPS) and every step's logits (STEPS, V). */
static int greedy(th_gpt2 *m, int *tokens, float *logits) {
    static const int prompt[PROMPT] = {5, 17, 3, 200};
    return test_greedy(m, prompt, PROMPT, STEPS, tokens, logits);
}

static void test_models(void) {
    th_gpt2_config cfg;
    th_gpt2_config_preset("tiny", &cfg);
    int V = cfg.vocab_size;
    th_gpt2 *ref = NULL;
    CHECK(th_gpt2_create(&cfg, &ref) == TH_OK, "create\n");
    th_gpt2_init_random(ref, 11);
    // wte scaled up so the random model's next-token distribution is peaked, as a trained one's
    float *pr = th_gpt2_params(ref);
    for (int i = 0; i < V * cfg.channels; i++) pr[i] *= 8.0f;
    int ref_tok[STEPS];
    float *ref_logits = th_alloc(sizeof(float) * STEPS * V), *lg = th_alloc(sizeof(float) * STEPS * V);
    CHECK(greedy(ref, ref_tok, ref_logits), "f32 greedy\n");
    const struct {
        th_dtype d;
        int embed_f32;
        double logit_tol; /* max |Δlogit| over the steps, as a share of the f32 logits' spread */
        int min_agree;    /* greedy tokens equal to f32's, of STEPS */
    } cases[] = {{TH_DTYPE_BF16, 0, 0.005, 22}, {TH_DTYPE_F16, 0, 0.001, 22}, {TH_DTYPE_Q8, 0, 0.01, 22},
                 {TH_DTYPE_Q8, 1, 0.01, 22}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        th_gpt2 *m = NULL;
        th_gpt2_create(&cfg, &m);
        memcpy(th_gpt2_params(m), pr, th_gpt2_num_params(&cfg) * sizeof(float));
        th_infer_precision p = {cases[c].d, cases[c].embed_f32, TH_KV_AUTO};
        CHECK(th_gpt2_set_precision(m, &p) == TH_OK, "pack %s\n", th_dtype_name(p.dtype));
        int e = -1;
        CHECK(th_gpt2_precision(m, &e) == p.dtype && e == p.embed_f32, "precision readback\n");
        size_t fc = 0;
        th_tensor_info ti;
        th_gpt2_tensor_info(&cfg, TH_P_FCW, &ti);
        fc = ti.offset + ti.count / 2;
        CHECK(th_gpt2_params(m)[fc] == 0.0f, "%s: the f32 copy of c_fc was not given back\n", th_dtype_name(p.dtype));
        float loss;
        int ids[4] = {1, 2, 3, 4};
        CHECK_FAIL(th_gpt2_forward(m, ids, ids, 1, 3, &loss), TH_ERR_STATE, "packed", "forward on a packed model");
        th_infer_precision other = {p.dtype == TH_DTYPE_Q8 ? TH_DTYPE_F16 : TH_DTYPE_Q8, 0, TH_KV_AUTO};
        CHECK_FAIL(th_gpt2_set_precision(m, &other), TH_ERR_STATE, "already packed", "repack");
        CHECK(th_gpt2_set_precision(m, &p) == TH_OK, "same precision again is a no-op\n");

        int tok[STEPS];
        CHECK(greedy(m, tok, lg), "%s greedy\n", th_dtype_name(p.dtype));
        int agree = 0;
        while (agree < STEPS && tok[agree] == ref_tok[agree]) agree++;
        // the first divergence ends a fair comparison of logits: compare up to there
        double worst = 0, lo = 1e30, hi = -1e30;
        for (int s = 0; s < (agree < STEPS ? agree + 1 : STEPS); s++)
            for (int i = 0; i < V; i++) {
                worst = fmax(worst, fabs(lg[s * V + i] - ref_logits[s * V + i]));
                lo = fmin(lo, ref_logits[s * V + i]);
                hi = fmax(hi, ref_logits[s * V + i]);
            }
        printf("%s%s: greedy agrees for %d of %d tokens, max |dlogit| %.4f of spread %.2f\n", th_dtype_name(p.dtype),
               p.embed_f32 ? " (wte f32)" : "", agree, STEPS, worst, hi - lo);
        CHECK(agree >= cases[c].min_agree, "%s: greedy agrees for %d tokens, want >= %d\n", th_dtype_name(p.dtype), agree,
              cases[c].min_agree);
        CHECK(worst <= cases[c].logit_tol * (hi - lo), "%s: logits off by %.4f, spread %.2f\n", th_dtype_name(p.dtype),
              worst, hi - lo);

        // a prefill of the prompt and the greedy tokens (dequantized panels, f32 activations)
        // against the same positions decoded one by one
        int seq[PROMPT + 8] = {5, 17, 3, 200};
        for (int i = 0; i < 8; i++) seq[PROMPT + i] = tok[i];
        th_gpt2_kv *kv = NULL, *kv2 = NULL;
        float *all = th_alloc(sizeof(float) * (PROMPT + 8) * V), *one = th_alloc(sizeof(float) * V);
        th_gpt2_kv_create(m, PROMPT + 8, &kv);
        th_gpt2_kv_create(m, PROMPT + 8, &kv2);
        CHECK(th_gpt2_infer(m, kv, seq, PROMPT + 8, all, 1) == TH_OK, "prefill\n");
        double pd = 0;
        for (int i = 0; i < PROMPT + 8; i++) {
            th_gpt2_infer(m, kv2, seq + i, 1, one, 0);
            for (int j = 0; j < V; j++) pd = fmax(pd, fabs(one[j] - all[(size_t)i * V + j]));
        }
        CHECK(pd <= 0.03 * (hi - lo), "%s: prefill and decode differ by %.4f\n", th_dtype_name(p.dtype), pd);

        // batched decode: bit-identical to th_gpt2_infer's decode step (with the naive
        // backend for the f32 tensors, as model.h says)
        const char *keep = th_compute_current();
        th_compute_select("naive");
        th_gpt2_batch *b = NULL;
        th_gpt2_kv *kvs[2] = {NULL, NULL};
        float bl[2 * 512];
        th_gpt2_batch_create(m, 2, &b);
        th_gpt2_kv_create(m, 8, &kvs[0]);
        th_gpt2_kv_create(m, 8, &kvs[1]);
        th_gpt2_kv_reset(kv2);
        int t0[2] = {5, 9};
        th_gpt2_infer(m, kv2, &t0[1], 1, one, 0);
        CHECK(th_gpt2_infer_batch(m, b, kvs, t0, 2, bl) == TH_OK, "batch step\n");
        CHECK(memcmp(bl + V, one, sizeof(float) * V) == 0, "%s: batched row differs from th_gpt2_infer\n",
              th_dtype_name(p.dtype));
        th_gpt2_kv_free(kvs[0]);
        th_gpt2_kv_free(kvs[1]);
        th_gpt2_batch_free(b);
        th_compute_select(keep);
        th_free(one);
        th_free(all);
        th_gpt2_kv_free(kv2);
        th_gpt2_kv_free(kv);
        th_gpt2_free(m);
    }
    // q8 needs whole blocks of 32 channels
    th_gpt2_config odd = cfg;
    odd.channels = 48;
    odd.num_heads = 4;
    th_gpt2 *m = NULL;
    CHECK(th_gpt2_create(&odd, &m) == TH_OK, "create odd\n");
    th_gpt2_init_random(m, 1);
    th_infer_precision q8 = {TH_DTYPE_Q8, 0, TH_KV_AUTO};
    CHECK_FAIL(th_gpt2_set_precision(m, &q8), TH_ERR_INVALID, "divisible by 32", "q8 with 48 channels");
    CHECK(th_gpt2_precision(m, NULL) == TH_DTYPE_F32, "a failed pack leaves f32\n");
    th_gpt2_free(m);
    th_dtype d;
    CHECK_FAIL(th_dtype_parse("int4", &d), TH_ERR_INVALID, "int4", "unknown dtype");
    CHECK(th_dtype_parse("bf16", &d) == TH_OK && d == TH_DTYPE_BF16 && strcmp(th_dtype_name(TH_DTYPE_Q8), "q8") == 0,
          "parse and name\n");
    th_free(lg);
    th_free(ref_logits);
    th_gpt2_free(ref);
}

int main(void) {
    printf("low-precision kernels: %s\n", th_lowp_kernel());
    test_conversions();
    test_kernels();
    test_attention();
    test_models();
    lowp_force_naive(1);
    test_models(); /* the same agreement with the naive twins */
    lowp_force_naive(0);
    return test_summary();
}
