/* test_model.c: the engine's own checks, no reference program needed: finite-difference
 * gradients, KV-cache decoding against the full forward, thread-count invariance, config
 * validation, the LR schedule and the sampler (compute backends: test_model_compute.c). */
#include <stdint.h>

#include "test_util.h"
#include "thermo/model.h"

static th_gpt2 *make_model(th_gpt2_config cfg, uint64_t seed, float scale) {
    th_gpt2 *m = NULL;
    if (th_gpt2_create(&cfg, &m) != TH_OK) {
        fprintf(stderr, "create: %s\n", th_last_error());
        exit(1);
    }
    th_gpt2_init_random(m, seed);
    // larger weights than GPT-2's 0.02 so every path carries a visible signal; gains and
    // biases perturbed so their gradients are non-trivial
    th_rng rng;
    th_rng_seed(&rng, seed + 1);
    float *p = th_gpt2_params(m);
    size_t n = th_gpt2_num_params(&cfg);
    for (size_t i = 0; i < n; i++) p[i] = p[i] * scale + 0.05f * (float)th_rng_normal(&rng);
    return m;
}

/* ---------------------------------------------------------------------------------
 * finite differences */

static void test_gradcheck(void) {
    // Central differences on the float forward with h = 3e-3. Error budget per coordinate:
    // rounding of the loss (a few ulp of ~3.6, ≈ 1e-6) / 2h ≈ 2e-4 at worst, plus truncation
    // h²·f'''/6, below 1e-4 at these weight scales (measured worst: 6e-5). So |fd - g| <=
    // 2e-4 + 1e-2·|g| per coordinate, and the sampled vectors agree to relative L2 < 2e-3.
    // A wrong backward gives O(1) relative errors and fails both.
    th_gpt2_config cfg = {8, 37, 2, 2, 16, 1e-5f};
    th_gpt2 *m = make_model(cfg, 7, 2.0f);
    int B = 2, T = 8, inputs[16], targets[16];
    th_rng rng;
    th_rng_seed(&rng, 99);
    for (int i = 0; i < B * T; i++) {
        inputs[i] = (int)(th_rng_u64(&rng) % 37);
        targets[i] = i == 3 ? TH_IGNORE_INDEX : (int)(th_rng_u64(&rng) % 37);
    }
    float loss;
    th_gpt2_forward(m, inputs, targets, B, T, &loss);
    th_gpt2_zero_grad(m);
    CHECK(th_gpt2_backward(m, 1.0f) == TH_OK, "backward: %s", th_last_error());
    size_t n = th_gpt2_num_params(&cfg);
    float *grads = malloc(n * sizeof(float));
    memcpy(grads, th_gpt2_grads(m), n * sizeof(float));
    float *p = th_gpt2_params(m);
    const float h = 3e-3f;
    int checked = 0, bad = 0;
    double err2 = 0, ref2 = 0, worst = 0;
    for (int t = 0; t < TH_P_NUM; t++) {
        th_tensor_info info;
        th_gpt2_tensor_info(&cfg, t, &info);
        for (int k = 0; k < 20; k++) {
            size_t i = info.offset + th_rng_u64(&rng) % info.count;
            float orig = p[i], lp, lm;
            p[i] = orig + h;
            th_gpt2_forward(m, inputs, targets, B, T, &lp);
            p[i] = orig - h;
            th_gpt2_forward(m, inputs, targets, B, T, &lm);
            p[i] = orig;
            double fd = ((double)lp - lm) / (2.0 * h), g = grads[i], e = fabs(fd - g);
            err2 += e * e;
            ref2 += g * g;
            if (e > worst) worst = e;
            if (e > 2e-4 + 1e-2 * fabs(g)) {
                bad++;
                fprintf(stderr, "  gradcheck %s[%zu]: fd %.6e analytic %.6e\n", info.name, i - info.offset, fd, g);
            }
            checked++;
        }
    }
    double rel = sqrt(err2 / ref2);
    printf("gradcheck: %d coordinates, worst abs err %.2e, relative L2 err %.2e, %d outside bound\n", checked,
           worst, rel, bad);
    CHECK(bad == 0, "%d of %d coordinates outside the finite-difference bound", bad, checked);
    CHECK(rel < 2e-3, "relative L2 error %.3e", rel);
    free(grads);
    th_gpt2_free(m);
}

/* ---------------------------------------------------------------------------------
 * KV cache */

static void test_kv_cache(void) {
    th_gpt2_config cfg = {32, 97, 3, 4, 32, 1e-5f};
    th_gpt2 *m = make_model(cfg, 11, 5.0f);
    int T = 29, V = cfg.vocab_size, tokens[32];
    th_rng rng;
    th_rng_seed(&rng, 5);
    for (int i = 0; i < T; i++) tokens[i] = (int)(th_rng_u64(&rng) % V);
    CHECK(th_gpt2_forward(m, tokens, NULL, 1, T, NULL) == TH_OK, "forward");
    float *full = malloc(sizeof(float) * T * V), *inc = malloc(sizeof(float) * T * V);
    memcpy(full, th_gpt2_logits(m), sizeof(float) * T * V);
    double mref;
    max_abs_diff(full, full, (size_t)T * V, &mref);

    th_gpt2_kv *kv;
    CHECK(th_gpt2_kv_create(m, cfg.max_seq_len, &kv) == TH_OK, "kv create");
    // one token at a time
    for (int t = 0; t < T; t++) CHECK(th_gpt2_infer(m, kv, tokens + t, 1, inc + (size_t)t * V, 0) == TH_OK, "decode");
    double d1 = max_abs_diff(inc, full, (size_t)T * V, NULL);
    // prefill of 11 tokens, then decode
    th_gpt2_kv_reset(kv);
    CHECK(th_gpt2_infer(m, kv, tokens, 11, inc, 1) == TH_OK, "prefill");
    for (int t = 11; t < T; t++) th_gpt2_infer(m, kv, tokens + t, 1, inc + (size_t)t * V, 0);
    double d2 = max_abs_diff(inc, full, (size_t)T * V, NULL);
    // prefill returning only the last row
    th_gpt2_kv_reset(kv);
    th_gpt2_infer(m, kv, tokens, T, inc, 0);
    double d3 = max_abs_diff(inc, full + (size_t)(T - 1) * V, V, NULL);
    printf("kv cache: max |logit| %.3f; max abs err one-by-one %.2e, prefill+decode %.2e, last-only %.2e\n", mref,
           d1, d2, d3);
    double tol = 1e-5 * (1.0 + mref);
    CHECK(d1 <= tol, "incremental decode differs from the full forward by %.3e", d1);
    CHECK(d2 <= tol, "prefill+decode differs from the full forward by %.3e", d2);
    CHECK(d3 <= tol, "last-row prefill differs by %.3e", d3);
    CHECK(th_gpt2_kv_len(kv) == T, "kv length %d", th_gpt2_kv_len(kv));
    // overflow and bad tokens are rejected without touching the cache
    int over[8] = {0};
    CHECK(th_gpt2_infer(m, kv, over, 8, inc, 0) == TH_ERR_INVALID, "overflow accepted");
    CHECK(strstr(th_last_error(), "overflow") != NULL, "message: %s", th_last_error());
    int badtok = V;
    CHECK(th_gpt2_infer(m, kv, &badtok, 1, inc, 0) == TH_ERR_INVALID, "bad token accepted");
    CHECK(th_gpt2_kv_len(kv) == T, "cache changed by a rejected call");
    th_gpt2_kv_free(kv);
    free(full);
    free(inc);
    th_gpt2_free(m);
}

/* ---------------------------------------------------------------------------------
 * configs and bad input */

static void expect_invalid(th_gpt2_config cfg, const char *needle) {
    th_gpt2 *m = (th_gpt2 *)1;
    th_status st = th_gpt2_create(&cfg, &m);
    CHECK(st == TH_ERR_INVALID && m == NULL, "config accepted (expected error with '%s')", needle);
    CHECK(strstr(th_last_error(), needle) != NULL, "message '%s' lacks '%s'", th_last_error(), needle);
}

static void test_configs(void) {
    expect_invalid((th_gpt2_config){64, 512, 2, 3, 64, 1e-5f}, "not divisible by num_heads");
    expect_invalid((th_gpt2_config){64, 0, 2, 4, 64, 1e-5f}, "vocab_size is 0");
    expect_invalid((th_gpt2_config){64, 512, -1, 4, 64, 1e-5f}, "num_layers is -1");
    expect_invalid((th_gpt2_config){0, 512, 2, 4, 64, 1e-5f}, "max_seq_len is 0");
    expect_invalid((th_gpt2_config){64, 512, 2, 0, 64, 1e-5f}, "num_heads is 0");
    expect_invalid((th_gpt2_config){64, 512, 2, 4, 64, 0.0f}, "ln_eps");
    expect_invalid((th_gpt2_config){64, 512, 2, 4, 1 << 20, 1e-5f}, "channels");
    th_gpt2_config cfg;
    for (int i = 0; th_gpt2_preset_names[i]; i++) {
        CHECK(th_gpt2_config_preset(th_gpt2_preset_names[i], &cfg) == TH_OK, "preset %s", th_gpt2_preset_names[i]);
        CHECK(th_gpt2_config_validate(&cfg) == TH_OK, "preset %s invalid", th_gpt2_preset_names[i]);
    }
    th_gpt2_config_preset("gpt2", &cfg);
    CHECK(th_gpt2_num_params(&cfg) == 124439808, "gpt2 has %zu parameters, HF says 124439808",
          th_gpt2_num_params(&cfg));
    CHECK(th_gpt2_config_preset("gpt5", &cfg) == TH_ERR_INVALID, "unknown preset accepted");

    th_gpt2_config_preset("tiny", &cfg);
    th_gpt2 *m = make_model(cfg, 1, 1.0f);
    int tok[128] = {0};
    float loss;
    CHECK(th_gpt2_forward(m, tok, tok, 1, 65, &loss) == TH_ERR_INVALID, "T above context accepted");
    CHECK(strstr(th_last_error(), "exceeds the context") != NULL, "msg: %s", th_last_error());
    tok[5] = 512;
    CHECK(th_gpt2_forward(m, tok, NULL, 1, 8, NULL) == TH_ERR_INVALID, "token >= V accepted");
    tok[5] = -3;
    CHECK(th_gpt2_forward(m, tok, NULL, 1, 8, NULL) == TH_ERR_INVALID, "negative token accepted");
    tok[5] = 0;
    CHECK(th_gpt2_backward(m, 1.0f) == TH_ERR_STATE, "backward without a forward with targets");
    // every target ignored: loss NaN, gradient zero, no crash
    int ign[8];
    for (int i = 0; i < 8; i++) ign[i] = TH_IGNORE_INDEX;
    CHECK(th_gpt2_forward(m, tok, ign, 1, 8, &loss) == TH_OK && isnan(loss), "all-ignored loss %f", loss);
    th_gpt2_zero_grad(m);
    CHECK(th_gpt2_backward(m, 1.0f) == TH_OK && th_gpt2_grad_norm(m) == 0.0, "all-ignored gradient not zero");
    // allocation failures surface as TH_ERR_NOMEM, for each allocation in turn
    int failures = 0;
    for (long nth = 1; nth < 10; nth++) {
        th_gpt2 *mm = NULL;
        th_alloc_fail_nth(nth);
        th_status st = th_gpt2_create(&cfg, &mm);
        if (st == TH_OK) st = th_gpt2_forward(mm, tok, tok, 1, 8, &loss);
        if (st == TH_OK) st = th_gpt2_zero_grad(mm);
        th_alloc_fail_nth(0);
        if (st != TH_OK) {
            failures++;
            CHECK(st == TH_ERR_NOMEM, "allocation %ld failed with %s", nth, th_status_name(st));
        }
        th_gpt2_free(mm);
    }
    CHECK(failures >= 4, "only %d injected allocation failures were reported", failures);
    th_gpt2_free(m);
}

/* ---------------------------------------------------------------------------------
 * schedule and sampler */

static void test_schedule(void) {
    th_lr_schedule s = {1e-3f, 1e-4f, 10, 110};
    CHECK(fabsf(th_lr_at(&s, 0) - 1e-4f) < 1e-9f, "warmup start %g", th_lr_at(&s, 0));
    CHECK(fabsf(th_lr_at(&s, 9) - 1e-3f) < 1e-9f, "warmup end %g", th_lr_at(&s, 9));
    CHECK(fabsf(th_lr_at(&s, 10) - 1e-3f) < 1e-9f, "cosine start %g", th_lr_at(&s, 10));
    CHECK(fabsf(th_lr_at(&s, 60) - 5.5e-4f) < 1e-8f, "cosine middle %g", th_lr_at(&s, 60));
    CHECK(fabsf(th_lr_at(&s, 110) - 1e-4f) < 1e-9f, "cosine end %g", th_lr_at(&s, 110));
    CHECK(fabsf(th_lr_at(&s, 500) - 1e-4f) < 1e-9f, "after end %g", th_lr_at(&s, 500));
}

static void test_sampler(void) {
    float logits[4] = {1.0f, 3.0f, 0.5f, 2.0f};
    th_sampler *s;
    th_sampler_config greedy = {0.0f, 0, 1.0f};
    CHECK(th_sampler_create(4, &greedy, 1, &s) == TH_OK, "create");
    CHECK(th_sampler_next(s, logits) == 1, "greedy");
    th_sampler_free(s);
    th_sampler_config top1 = {1.0f, 1, 1.0f};
    th_sampler_create(4, &top1, 1, &s);
    int ok = 1;
    for (int i = 0; i < 100; i++) ok &= th_sampler_next(s, logits) == 1;
    CHECK(ok, "top-k 1 is not greedy");
    th_sampler_free(s);
    // frequencies at temperature 1 follow the softmax (20000 draws: 4 sigma < 0.015)
    th_sampler_config plain = {1.0f, 0, 1.0f};
    th_sampler_create(4, &plain, 42, &s);
    int counts[4] = {0};
    for (int i = 0; i < 20000; i++) counts[th_sampler_next(s, logits)]++;
    double z = 0;
    for (int i = 0; i < 4; i++) z += exp(logits[i]);
    for (int i = 0; i < 4; i++)
        CHECK(fabs(counts[i] / 20000.0 - exp(logits[i]) / z) < 0.015, "token %d frequency %.4f vs %.4f", i,
              counts[i] / 20000.0, exp(logits[i]) / z);
    th_sampler_free(s);
    // probabilities are 0.085, 0.631, 0.052, 0.232: top-p 0.6 keeps {1}, top-p 0.8 keeps {1, 3}
    th_sampler_config nucleus = {1.0f, 0, 0.6f};
    th_sampler_create(4, &nucleus, 7, &s);
    ok = 1;
    for (int i = 0; i < 200; i++) ok &= th_sampler_next(s, logits) == 1;
    CHECK(ok, "top-p 0.6 left the nucleus {1}");
    th_sampler_free(s);
    th_sampler_config nucleus2 = {1.0f, 0, 0.8f};
    th_sampler_create(4, &nucleus2, 7, &s);
    int seen[4] = {0};
    for (int i = 0; i < 2000; i++) seen[th_sampler_next(s, logits)]++;
    CHECK(seen[0] == 0 && seen[2] == 0 && seen[1] > 0 && seen[3] > 0, "top-p 0.8 nucleus {1,3}: %d %d %d %d", seen[0],
          seen[1], seen[2], seen[3]);
    th_sampler_free(s);
    // a seed fixes the sequence
    int a[50], b[50];
    for (int r = 0; r < 2; r++) {
        th_sampler_create(4, &plain, 1234, &s);
        for (int i = 0; i < 50; i++) (r ? b : a)[i] = th_sampler_next(s, logits);
        th_sampler_free(s);
    }
    CHECK(memcmp(a, b, sizeof a) == 0, "same seed, different samples");
    th_sampler_config bad = {-1.0f, 0, 1.0f};
    CHECK(th_sampler_create(4, &bad, 1, &s) == TH_ERR_INVALID, "negative temperature accepted");
    bad = (th_sampler_config){1.0f, 0, 0.0f};
    CHECK(th_sampler_create(4, &bad, 1, &s) == TH_ERR_INVALID, "top-p 0 accepted");
}

/* ---------------------------------------------------------------------------------
 * thread-count invariance: with the avx512 backend (the default where the CPU has AVX-512)
 * and with naive, every sum runs in an order fixed by the sizes, so 1 and 2 threads give
 * bit-identical training. A thread cap from the governor can then never change what is
 * learned. OpenBLAS makes no such promise, so it is not checked. */
static void check_thread_invariance(const char *backend) {
    if (th_compute_select(backend) != TH_OK) {
        printf("thread invariance (%s): cannot run here, not checked (%s)\n", backend, th_last_error());
        return;
    }
    th_gpt2_config cfg = {64, 301, 2, 4, 64, 1e-5f};
    int B = 3, T = 40, tok[3 * 41];
    th_rng rng;
    th_rng_seed(&rng, 77);
    for (int i = 0; i < 3 * 41; i++) tok[i] = (int)(th_rng_u64(&rng) % 301);
    float *w[2];
    size_t n = th_gpt2_num_params(&cfg);
    th_adamw_config opt = th_adamw_defaults();
    int saved = th_threads_get();
    for (int run = 0; run < 2; run++) {
        th_threads_set(run + 1);
        th_gpt2 *m = make_model(cfg, 5, 1.0f);
        for (int s = 0; s < 3; s++) {
            float loss;
            th_gpt2_forward(m, tok, tok + 1, B, T, &loss);
            th_gpt2_zero_grad(m);
            th_gpt2_backward(m, 1.0f);
            th_gpt2_adamw_step(m, &opt, opt.lr, th_gpt2_grad_norm(m));
        }
        w[run] = malloc(n * sizeof(float));
        memcpy(w[run], th_gpt2_params(m), n * sizeof(float));
        th_gpt2_free(m);
    }
    th_threads_set(saved);
    CHECK(memcmp(w[0], w[1], n * sizeof(float)) == 0, "1 and 2 threads give different weights (%s backend)",
          backend);
    printf("thread invariance (%s): 1 and 2 threads give bit-identical weights after 3 steps\n", backend);
    free(w[0]);
    free(w[1]);
    th_compute_select("auto");
}

static void test_thread_invariance(void) {
    check_thread_invariance("avx512");
    check_thread_invariance("naive");
}

int main(void) {
    test_thread_invariance();
    test_configs();
    test_schedule();
    test_sampler();
    test_kv_cache();
    test_gradcheck();
    return test_summary();
}
