/* test_model_train_fused.c: the training step's fused and vectorized non-matmul parts (issue
 * 17). Deferred gradient zeroing (the backward writes instead of adding) gives the same bits
 * as zeroing first, on every backend and in bf16, for one backward and for two accumulated;
 * the grad norm's 8-chunk vector path gives the same bits as the serial chunked sum; the
 * cross-entropy backward's vector exp the same bits as its scalar form, its forward's
 * logsumexp within 1e-6 of double's, for any thread count; GELU's sigmoid form
 * within 1e-5 of the tanh form in double (relative; backward: of max(|gelu'|, 0.1)), its
 * vector blocks the same bits as its scalar tail, the same bits for 1, 2 and 3 threads; AdamW
 * = its formula with each tensor's decay, for any thread count; the attention backward (its
 * q·k dots in eight lanes) within 1e-5 of double's, for any thread count. */
#include <stdint.h>

#include "model/compute.h"
#include "model/kernels.h"
#include "test_util.h"
#include "thermo/model.h"

static int same_floats(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

/* ---------------------------------------------------------------------------------
 * deferred zeroing */

/* Runs `steps` accumulated forward/backward pairs after a zero_grad and returns a copy of the
 * gradients. eager: the zeroing is made real (th_gpt2_grads) before the first backward, so
 * the backward accumulates into zeros, the reference. garbage: the gradient memory is filled
 * with NaN first (what a deferred zeroing must never let through). */
static float *grads_after(th_gpt2 *m, const int *tok, int B, int T, int steps, int eager, int garbage) {
    size_t n = th_gpt2_num_params(th_gpt2_get_config(m));
    if (th_gpt2_zero_grad(m) != TH_OK) return NULL;
    if (garbage) {
        float *g = th_gpt2_grads(m);
        for (size_t i = 0; i < n; i++) g[i] = NAN;
    }
    if (th_gpt2_zero_grad(m) != TH_OK) return NULL;
    if (eager) th_gpt2_grads(m);
    for (int s = 0; s < steps; s++) {
        float loss;
        if (th_gpt2_forward(m, tok + s, tok + s + 1, B, T, &loss) != TH_OK) return NULL;
        if (th_gpt2_backward(m, 1.0f) != TH_OK) return NULL;
    }
    float *out = malloc(n * sizeof(float));
    memcpy(out, th_gpt2_grads(m), n * sizeof(float));
    return out;
}

static void test_deferred_zeroing(void) {
    th_gpt2_config cfg;
    th_gpt2 *m = NULL;
    CHECK(th_gpt2_config_preset("tiny", &cfg) == TH_OK && th_gpt2_create(&cfg, &m) == TH_OK, "tiny model");
    if (!m) return;
    th_gpt2_init_random(m, 3);
    size_t n = th_gpt2_num_params(&cfg);
    enum { B = 3, T = 17 };
    int tok[B * T + 2];
    th_rng rng;
    th_rng_seed(&rng, 5);
    for (int i = 0; i < B * T + 2; i++) tok[i] = (int)(th_rng_u64(&rng) % (uint64_t)cfg.vocab_size);

    const char *backends[] = {"avx2", "naive", "blas", "avx512"};
    for (size_t b = 0; b < sizeof backends / sizeof backends[0]; b++) {
        if (th_compute_select(backends[b]) != TH_OK) continue;
        for (int bf = 0; bf < 2; bf++) {
            th_gpt2_set_train_precision(m, bf ? TH_PRECISION_BF16 : TH_PRECISION_F32);
            for (int steps = 1; steps <= 2; steps++) {
                float *ref = grads_after(m, tok, B, T, steps, 1, 0);
                float *got = grads_after(m, tok, B, T, steps, 0, 1);
                CHECK(ref && got && same_floats(ref, got, n),
                      "%s %s, %d backward(s): deferred zeroing gives other gradients than zeroing first",
                      backends[b], bf ? "bf16" : "f32", steps);
                free(ref);
                free(got);
            }
        }
    }
    th_gpt2_set_train_precision(m, TH_PRECISION_F32);
    th_compute_select("auto");

    // a pending zeroing reads as zeros everywhere: the norm, the accessor, an optimizer step
    CHECK(th_gpt2_zero_grad(m) == TH_OK && th_gpt2_grad_norm(m) == 0.0, "norm of pending zeros");
    const float *g = th_gpt2_grads(m);
    int zeros = 1;
    for (size_t i = 0; i < n; i++) zeros &= g[i] == 0.0f;
    CHECK(zeros, "th_gpt2_grads after zero_grad is not all zeros");
    th_gpt2_free(m);
}

/* ---------------------------------------------------------------------------------
 * grad norm */

static void test_grad_norm(void) {
    th_gpt2_config cfg;
    th_gpt2 *m = NULL;
    CHECK(th_gpt2_config_preset("small", &cfg) == TH_OK && th_gpt2_create(&cfg, &m) == TH_OK, "small model");
    if (!m || th_gpt2_zero_grad(m) != TH_OK) return;
    size_t n = th_gpt2_num_params(&cfg);
    float *g = th_gpt2_grads(m);
    th_rng rng;
    th_rng_seed(&rng, 9);
    for (size_t i = 0; i < n; i++) g[i] = (float)th_rng_normal(&rng) * (i % 7 == 0 ? 1e-3f : 1.0f);
    // the reference: chunks of 65,536 floats, each a serial double sum, added in order
    double total = 0.0;
    for (size_t c0 = 0; c0 < n; c0 += 1 << 16) {
        double acc = 0.0;
        for (size_t i = c0; i < c0 + (1 << 16) && i < n; i++) acc += (double)g[i] * g[i];
        total += acc;
    }
    double want = sqrt(total);
    CHECK(n > 9 * (1 << 16) && n % (1 << 16) != 0, "the model covers full groups and a partial chunk");
    for (int t = 1; t <= 3; t++) {
        th_threads_set(t);
        double got = th_gpt2_grad_norm(m);
        CHECK(got == want, "%d threads: grad norm %.17g, serial chunks %.17g", t, got, want);
    }
    th_threads_set(2);
    th_gpt2_free(m);
}

/* ---------------------------------------------------------------------------------
 * the cross-entropy backward */

/* exp_vec of kernels.c, copied: the scalar form the vector code must match bit for bit. */
static float exp_ref(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693145751953125f - n * 1.42860682030941723e-6f;
    float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666679f + r * (0.00833333377f + r * 0.00138888892f)))));
    int32_t bits = ((int32_t)(n == n ? n : 0.0f) + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* The forward: lse within 1e-6 relative of the double logsumexp (the sum of exps goes in
 * eight lanes with AVX2), losses = lse - the target's logit, ignored rows 0 and not counted,
 * a NaN logit makes its row NaN, the same bits for 1, 2 and 3 threads. */
static void test_crossentropy_forward(void) {
    enum { N = 5, V = 50257 };
    float *logits = malloc(sizeof(float) * N * V);
    float lse[3][N], losses[3][N];
    int targets[N] = {5, TH_IGNORE_INDEX, V - 1, 0, 77};
    th_rng rng;
    th_rng_seed(&rng, 13);
    for (int i = 0; i < N * V; i++) logits[i] = 3.0f * (float)th_rng_normal(&rng) + (i / V == 3 ? 40.0f : 0.0f);
    logits[(size_t)4 * V + 1234] = NAN;
    int counted[3];
    for (int t = 0; t < 3; t++) {
        th_threads_set(t + 1);
        counted[t] = th_crossentropy_forward(losses[t], lse[t], logits, targets, N, V);
    }
    th_threads_set(2);
    CHECK(counted[0] == N - 1 && counted[1] == counted[0] && counted[2] == counted[0], "cross-entropy: %d counted",
          counted[0]);
    for (int t = 1; t < 3; t++)
        CHECK(memcmp(lse[t], lse[0], sizeof lse[0]) == 0 && memcmp(losses[t], losses[0], sizeof losses[0]) == 0,
              "cross-entropy forward: %d and 1 threads give other bits", t + 1);
    double worst = 0.0;
    for (int i = 0; i < N - 1; i++) {
        const float *row = logits + (size_t)i * V;
        double mx = -INFINITY, sum = 0.0;
        for (int v = 0; v < V; v++) mx = row[v] > mx ? row[v] : mx;
        for (int v = 0; v < V; v++) sum += exp((double)row[v] - mx);
        double ref = mx + log(sum), e = fabs(lse[0][i] - ref) / fabs(ref);
        worst = e > worst ? e : worst;
        float want = targets[i] == TH_IGNORE_INDEX ? 0.0f : lse[0][i] - row[targets[i]];
        CHECK(memcmp(&losses[0][i], &want, 4) == 0, "cross-entropy row %d: loss is not lse - logit", i);
    }
    CHECK(worst < 1e-6, "cross-entropy forward: lse %.3g relative from the double logsumexp", worst);
    CHECK(isnan(lse[0][4]) && isnan(losses[0][4]), "cross-entropy: a NaN logit must make its row NaN");
    free(logits);
}

static void test_crossentropy_backward(void) {
    enum { N = 3, V = 1003 };
    float *logits = malloc(sizeof(float) * N * V), *want = malloc(sizeof(float) * N * V);
    float lse[N];
    int targets[N] = {5, TH_IGNORE_INDEX, V - 1};
    th_rng rng;
    th_rng_seed(&rng, 11);
    for (int i = 0; i < N * V; i++) logits[i] = 4.0f * (float)th_rng_normal(&rng);
    logits[7] = NAN;
    logits[8] = -INFINITY;
    for (int i = 0; i < N; i++) lse[i] = 3.0f + (float)i;
    float scale = 1.0f / 3.0f;
    for (int i = 0; i < N; i++)
        for (int v = 0; v < V; v++) {
            float *w = want + (size_t)i * V + v;
            *w = targets[i] == TH_IGNORE_INDEX ? 0.0f : exp_ref(logits[(size_t)i * V + v] - lse[i]) * scale;
            if (v == targets[i]) *w -= scale;
        }
    th_crossentropy_backward_inplace(logits, lse, targets, N, V, scale);
    int ok = 1;
    for (int i = 0; i < N * V; i++) ok &= memcmp(&logits[i], &want[i], 4) == 0 || (isnan(logits[i]) && isnan(want[i]));
    CHECK(ok, "cross-entropy backward differs from its scalar exp form");
    free(logits);
    free(want);
}

/* ---------------------------------------------------------------------------------
 * GELU */

/* The tanh form 0.5·x·(1 + tanh(y)) in double, written as x·σ(2y) (the same function): in
 * double too 1 + tanh(y) cancels to 0 below y ≈ -19, where GELU is still ~1e-17·x. */
static double gelu_y(double x) { return 0.7978845608028654 * (x + 0.044715 * x * x * x); }
static double gelu_tanh(double x) { return x / (1.0 + exp(-2.0 * gelu_y(x))); }
static double gelu_tanh_grad(double x) {
    double sg = 1.0 / (1.0 + exp(-2.0 * gelu_y(x)));
    return sg + 2.0 * x * sg * (1.0 - sg) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
}

static void test_gelu(void) {
    enum { N = 40003, THREADS = 3 }; // not a multiple of 8: the scalar tail runs too
    float *x = malloc(sizeof(float) * N), *y[THREADS], *d[THREADS];
    for (int i = 0; i < N; i++) x[i] = -12.0f + 24.0f * (float)i / (float)(N - 1);
    for (int t = 0; t < THREADS; t++) {
        y[t] = malloc(sizeof(float) * N), d[t] = malloc(sizeof(float) * N);
        th_threads_set(t + 1);
        th_gelu_forward(y[t], x, N);
        for (int i = 0; i < N; i++) d[t][i] = 1.0f;
        th_gelu_backward_inplace(d[t], x, N);
    }
    th_threads_set(2);
    for (int t = 1; t < THREADS; t++)
        CHECK(same_floats(y[t], y[0], N) && same_floats(d[t], d[0], N), "GELU: %d and 1 threads give other bits",
              t + 1);
    // the same inputs, fewer than 8 at a time: all in the scalar tail, which must give the
    // vector blocks' bits
    int tail_ok = 1;
    for (int i0 = 0; i0 + 7 <= N; i0 += 997) {
        float ys[7], ds[7] = {1, 1, 1, 1, 1, 1, 1};
        th_gelu_forward(ys, x + i0, 7);
        th_gelu_backward_inplace(ds, x + i0, 7);
        tail_ok &= same_floats(ys, y[0] + i0, 7) && same_floats(ds, d[0] + i0, 7);
    }
    CHECK(tail_ok, "GELU: the scalar tail and the vector blocks give other bits");
    double worst = 0.0, worst_grad = 0.0;
    for (int i = 0; i < N; i++) {
        double ref = gelu_tanh(x[i]), e = fabs(y[0][i] - ref) / (fabs(ref) + 1e-30);
        // below ~1e-30 the tanh form underflows in float anyway; compare where it is normal
        if (fabs(ref) > 1e-30 && e > worst) worst = e;
        double rg = gelu_tanh_grad(x[i]), eg = fabs(d[0][i] - rg) / (fabs(rg) > 0.1 ? fabs(rg) : 0.1);
        if (eg > worst_grad) worst_grad = eg;
    }
    CHECK(worst < 1e-5, "GELU: worst relative error %.3g against the tanh form in double", worst);
    CHECK(worst_grad < 1e-5, "GELU backward: worst error %.3g against the tanh form in double", worst_grad);
    printf("GELU: worst relative error %.2e (forward), %.2e (backward) against the tanh form in double\n", worst,
           worst_grad);
    float special[4] = {NAN, INFINITY, 0.0f, -0.0f}, out[4];
    th_gelu_forward(out, special, 4);
    CHECK(isnan(out[0]) && out[1] == INFINITY && out[2] == 0.0f, "GELU of NaN, inf, 0: %g %g %g", out[0], out[1],
          out[2]);
    free(x);
    for (int t = 0; t < THREADS; t++) free(y[t]), free(d[t]);
}

/* ---------------------------------------------------------------------------------
 * AdamW */

/* A second AdamW step (clipped: the norm passed is 5 against a clip of 1) against the update
 * written out here for every parameter, with its own tensor's weight decay (blocks of the
 * optimizer's loop cross tensor boundaries); the same bits for 1 and 3 threads. */
static void test_adamw(void) {
    th_gpt2_config cfg;
    th_gpt2 *m[2] = {NULL, NULL};
    CHECK(th_gpt2_config_preset("tiny", &cfg) == TH_OK, "tiny config");
    size_t n = th_gpt2_num_params(&cfg);
    th_adamw_config opt = th_adamw_defaults();
    float *p0 = malloc(n * sizeof(float)), *m0 = malloc(n * sizeof(float)), *v0 = malloc(n * sizeof(float));
    float *g1 = malloc(n * sizeof(float));
    for (int k = 0; k < 2; k++) {
        th_threads_set(k ? 3 : 1);
        CHECK(th_gpt2_create(&cfg, &m[k]) == TH_OK, "tiny model");
        th_gpt2_init_random(m[k], 3);
        th_rng rng;
        th_rng_seed(&rng, 29);
        for (int s = 0; s < 2; s++) {
            th_gpt2_zero_grad(m[k]);
            float *g = th_gpt2_grads(m[k]);
            for (size_t i = 0; i < n; i++) g[i] = (float)th_rng_normal(&rng);
            if (s == 1 && k == 0) {
                memcpy(p0, th_gpt2_params(m[k]), n * sizeof(float));
                memcpy(m0, th_gpt2_adam_m(m[k]), n * sizeof(float));
                memcpy(v0, th_gpt2_adam_v(m[k]), n * sizeof(float));
                memcpy(g1, g, n * sizeof(float));
            }
            th_gpt2_adamw_step(m[k], &opt, opt.lr, 5.0);
        }
    }
    th_threads_set(2);
    CHECK(same_floats(th_gpt2_params(m[0]), th_gpt2_params(m[1]), n) &&
              same_floats(th_gpt2_adam_v(m[0]), th_gpt2_adam_v(m[1]), n),
          "AdamW: 1 and 3 threads give other bits");
    float clip = (float)(opt.grad_clip / (5.0 + 1e-6)), b1 = opt.beta1, b2 = opt.beta2;
    float bc1 = 1.0f - powf(b1, 2.0f), bc2_sqrt = sqrtf(1.0f - powf(b2, 2.0f)), step_size = opt.lr / bc1;
    const float *p = th_gpt2_params(m[0]);
    int ok = 1;
    for (int t = 0; t < TH_P_NUM; t++) {
        th_tensor_info info;
        th_gpt2_tensor_info(&cfg, t, &info);
        float decay = info.decay ? 1.0f - opt.lr * opt.weight_decay : 1.0f;
        for (size_t j = info.offset; j < info.offset + info.count; j++) {
            float grad = g1[j] * clip;
            float mj = b1 * m0[j] + (1.0f - b1) * grad;
            float vj = b2 * v0[j] + (1.0f - b2) * grad * grad;
            float want = p0[j] * decay - step_size * mj / (sqrtf(vj) / bc2_sqrt + opt.eps);
            ok &= memcmp(&want, &p[j], 4) == 0;
        }
    }
    CHECK(ok, "AdamW: an update differs from its formula with its tensor's decay");
    for (int k = 0; k < 2; k++) th_gpt2_free(m[k]);
    free(p0), free(m0), free(v0), free(g1);
}

/* ---------------------------------------------------------------------------------
 * attention backward */

/* dqkv of the causal attention against the same backward in double (the forward's att
 * given), at B = 2, T = 37, C = 72, NH = 3 (head size 24: blocks of 8, no tail) and the same
 * with NH = 4 (head size 18: a tail); within 1e-5 of the largest gradient; 1, 2 and 3 threads
 * give the same bits. */
static void test_attention_backward(void) {
    enum { B = 2, T = 37, C = 72 };
    for (int NH = 3; NH <= 4; NH++) {
        int hs = C / NH;
        size_t nqkv = (size_t)B * T * 3 * C, natt = (size_t)B * NH * T * T, nout = (size_t)B * T * C;
        float *qkv = malloc(nqkv * sizeof(float)), *att = malloc(natt * sizeof(float));
        float *dout = malloc(nout * sizeof(float)), *scratch = malloc((size_t)B * NH * T * sizeof(float));
        float *dqkv[3], *y = malloc(nout * sizeof(float));
        double *ref = calloc(nqkv, sizeof(double)), *datt = malloc(T * sizeof(double));
        th_rng rng;
        th_rng_seed(&rng, 31);
        for (size_t i = 0; i < nqkv; i++) qkv[i] = (float)th_rng_normal(&rng);
        for (size_t i = 0; i < nout; i++) dout[i] = (float)th_rng_normal(&rng);
        th_attention_forward(y, att, qkv, B, T, C, NH);
        for (int t = 0; t < 3; t++) {
            dqkv[t] = calloc(nqkv, sizeof(float));
            th_threads_set(t + 1);
            th_attention_backward(dqkv[t], scratch, dout, qkv, att, B, T, C, NH);
        }
        th_threads_set(2);
        for (int t = 1; t < 3; t++)
            CHECK(same_floats(dqkv[t], dqkv[0], nqkv), "attention backward NH=%d: %d and 1 threads give other bits",
                  NH, t + 1);
        double scale = 1.0 / sqrt((double)hs), big = 0.0, worst = 0.0;
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int t = 0; t < T; t++) {
                    const float *a = att + (((size_t)b * NH + h) * T + t) * T, *d = dout + ((size_t)b * T + t) * C + h * hs;
                    const float *q = qkv + ((size_t)b * T + t) * 3 * C + h * hs;
                    double *dq = ref + ((size_t)b * T + t) * 3 * C + h * hs, s = 0.0;
                    for (int t2 = 0; t2 <= t; t2++) {
                        const float *v = qkv + ((size_t)b * T + t2) * 3 * C + 2 * C + h * hs;
                        double *dv = ref + ((size_t)b * T + t2) * 3 * C + 2 * C + h * hs;
                        datt[t2] = 0.0;
                        for (int i = 0; i < hs; i++) datt[t2] += (double)d[i] * v[i], dv[i] += (double)a[t2] * d[i];
                        s += a[t2] * datt[t2];
                    }
                    for (int t2 = 0; t2 <= t; t2++) {
                        double dpre = a[t2] * (datt[t2] - s) * scale;
                        const float *k = qkv + ((size_t)b * T + t2) * 3 * C + C + h * hs;
                        double *dk = ref + ((size_t)b * T + t2) * 3 * C + C + h * hs;
                        for (int i = 0; i < hs; i++) dq[i] += dpre * k[i], dk[i] += dpre * q[i];
                    }
                }
        for (size_t i = 0; i < nqkv; i++) big = fabs(ref[i]) > big ? fabs(ref[i]) : big;
        for (size_t i = 0; i < nqkv; i++) worst = fabs(dqkv[0][i] - ref[i]) > worst ? fabs(dqkv[0][i] - ref[i]) : worst;
        CHECK(worst <= 1e-5 * big, "attention backward NH=%d: %.3g from the double backward (largest %.3g)", NH, worst,
              big);
        for (int t = 0; t < 3; t++) free(dqkv[t]);
        free(qkv), free(att), free(dout), free(scratch), free(y), free(ref), free(datt);
    }
}

int main(void) {
    th_threads_set(2);
    test_deferred_zeroing();
    test_grad_norm();
    test_crossentropy_backward();
    test_crossentropy_forward();
    test_gelu();
    test_adamw();
    test_attention_backward();
    return test_summary();
}
