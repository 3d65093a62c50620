/* test_model_kv.c: the f16 KV cache. Every half through the KV path's conversions (F16C and
 * portable, against lowp.c's scalars), f16 attention bit-identical to f32 attention on the
 * widened values (head size 64's register kernel and the tile path), the eight-lane softmax
 * exponentials bit-identical to the scalar ones, and whole models: f16 KV against f32 KV
 * (greedy agreement and a logit bound), 1 vs 2 threads bit-identical, batched decode and
 * prefill against single decode steps, the default element type per precision, and the
 * --kv-dtype flag's error. */
#include <stdint.h>
#include <sys/wait.h>

#include "model/gpt2_internal.h"
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

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Every half widened and narrowed back, and floats narrowed as lowp_f32_to_f16 does (ties to
 * even, subnormals, overflow, NaN), by the F16C loops and the portable ones. */
static void test_round_trips(void) {
    static uint16_t h[65536], back[65536];
    static float f[65536];
    for (uint32_t i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    enum { NF = 4099 };
    static float xs[NF];
    static uint16_t got[NF];
    uint64_t s = 5;
    for (int i = 0; i < NF; i++) xs[i] = frand(&s) * (i % 3 == 0 ? 70000.0f : i % 3 == 1 ? 1.0f : 1e-5f);
    const float special[] = {1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, 2.5f / 16777216.0f, 3.5f / 16777216.0f,
                             65504.0f, 65520.0f, -0.0f, INFINITY, -INFINITY, 1e-30f, 6.1e-5f};
    memcpy(xs, special, sizeof special);
    for (int portable = 0; portable < 2; portable++) {
        th_f16_force_portable(portable);
        const char *k = th_f16_kernel();
        th_f16_widen(f, h, 65536);
        th_f16_narrow(back, f, 65536);
        int bad_w = 0, bad_rt = 0;
        for (uint32_t i = 0; i < 65536; i++) {
            float want = lowp_f16_to_f32((uint16_t)i);
            if (isnan(want) ? !isnan(f[i]) : bits(f[i]) != bits(want)) bad_w++;
            if (isnan(want) ? !isnan(lowp_f16_to_f32(back[i])) : back[i] != i) bad_rt++;
        }
        CHECK(bad_w == 0, "%s: %d halves widen differently from lowp_f16_to_f32\n", k, bad_w);
        CHECK(bad_rt == 0, "%s: %d halves do not round-trip through the KV path\n", k, bad_rt);
        th_f16_narrow(got, xs, NF);
        int bad_n = 0;
        for (int i = 0; i < NF; i++) bad_n += got[i] != lowp_f32_to_f16(xs[i]);
        CHECK(bad_n == 0, "%s: %d floats narrow differently from lowp_f32_to_f16\n", k, bad_n);
        float nan = NAN;
        th_f16_narrow(got, &nan, 1);
        CHECK(isnan(lowp_f16_to_f32(got[0])), "%s: NaN stays NaN\n", k);
    }
    th_f16_force_portable(0);
    printf("KV conversions: %s\n", th_kv_kernel(TH_KV_F16));
}

/* f16 attention equals f32 attention on the widened keys and values, bit for bit. */
static void test_attention_f16(void) {
    enum { MAXN = 300, MAXHS = 100 };
    static float q[MAXHS], k[MAXN * MAXHS], v[MAXN * MAXHS], att[MAXN], o32[MAXHS], o16[MAXHS];
    static uint16_t k16[MAXN * MAXHS], v16[MAXN * MAXHS];
    const int hss[] = {64, 16, 48, 100}, ns[] = {1, 7, 8, 9, 64, 257, 300};
    uint64_t s = 9;
    int bad = 0, cases = 0;
    for (int portable = 0; portable < 2; portable++) {
        th_f16_force_portable(portable);
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 7; b++) {
                int hs = hss[a], n = ns[b];
                for (int i = 0; i < hs; i++) q[i] = frand(&s) * 4;
                for (int i = 0; i < n * hs; i++) k[i] = frand(&s) * 3, v[i] = frand(&s);
                th_f16_narrow(k16, k, n * hs);
                th_f16_narrow(v16, v, n * hs);
                th_f16_widen(k, k16, n * hs);
                th_f16_widen(v, v16, n * hs);
                th_attention_row(o32, att, q, k, v, n, (size_t)hs, hs, 0.125f);
                th_attention_row_f16(o16, att, q, k16, v16, n, hs, 0.125f);
                bad += memcmp(o32, o16, sizeof(float) * hs) != 0;
                cases++;
            }
    }
    th_f16_force_portable(0);
    CHECK(bad == 0, "%d of %d f16 attention rows differ from f32 on the widened values\n", bad, cases);
}

/* The softmax's eight-lane exponentials against the scalar tail: keys 0 and 8 equal, n = 9,
 * so key 0 goes through the vector lanes and key 8 through the scalar loop. */
static void test_exp_lanes(void) {
    enum { HS = 64, N = 9 };
    float q[HS], k[N * HS], v[N * HS], att[N], out[HS];
    uint64_t s = 21;
    int bad = 0;
    for (int rep = 0; rep < 400; rep++) {
        for (int i = 0; i < HS; i++) q[i] = frand(&s) * (1 + rep % 7);
        for (int i = 0; i < N * HS; i++) k[i] = frand(&s), v[i] = frand(&s);
        memcpy(k + 8 * HS, k, sizeof(float) * HS);
        th_attention_row(out, att, q, k, v, N, HS, HS, 0.5f);
        bad += bits(att[0]) != bits(att[8]);
    }
    CHECK(bad == 0, "%d of 400 vector-lane exponentials differ from the scalar ones\n", bad);
}

enum { PROMPT = 4, STEPS = 24 };

static th_gpt2 *make(const th_gpt2_config *cfg, const float *params, th_dtype d, th_kv_dtype kv) {
    th_gpt2 *m = NULL;
    if (th_gpt2_create(cfg, &m) != TH_OK) exit(1);
    memcpy(th_gpt2_params(m), params, th_gpt2_num_params(cfg) * sizeof(float));
    th_infer_precision p = {d, 0, kv};
    if (th_gpt2_set_precision(m, &p) != TH_OK) exit(1);
    th_gpt2_set_kv_dtype(m, p.kv_dtype);
    return m;
}

/* Greedy decoding from a fixed prompt; tokens (STEPS) and every step's logits (STEPS, V). */
static int greedy(th_gpt2 *m, int *tokens, float *logits) {
    static const int prompt[PROMPT] = {5, 17, 3, 200};
    return test_greedy(m, prompt, PROMPT, STEPS, tokens, logits);
}

/* One model shape (hs = C / NH) at weights d: f16 KV against f32 KV and the invariances. */
static void test_model(const th_gpt2_config *cfg, const float *params, th_dtype d) {
    int V = cfg->vocab_size;
    const char *dn = th_dtype_name(d);
    int hs = cfg->channels / cfg->num_heads;
    th_gpt2 *m32 = make(cfg, params, d, TH_KV_F32), *m16 = make(cfg, params, d, TH_KV_F16);
    CHECK(th_gpt2_kv_dtype(m32) == TH_KV_F32 && th_gpt2_kv_dtype(m16) == TH_KV_F16, "%s: kv dtype set\n", dn);
    int t32[STEPS], t16[STEPS];
    float *l32 = th_alloc(sizeof(float) * STEPS * V), *l16 = th_alloc(sizeof(float) * STEPS * V);
    CHECK(greedy(m32, t32, l32) && greedy(m16, t16, l16), "%s: greedy\n", dn);
    int agree = 0;
    while (agree < STEPS && t16[agree] == t32[agree]) agree++;
    double worst = 0, lo = 1e30, hi = -1e30;
    for (int s = 0; s < (agree < STEPS ? agree + 1 : STEPS); s++)
        for (int i = 0; i < V; i++) {
            worst = fmax(worst, fabs(l16[s * V + i] - l32[s * V + i]));
            lo = fmin(lo, l32[s * V + i]);
            hi = fmax(hi, l32[s * V + i]);
        }
    printf("%s weights, hs %d: f16 KV greedy agrees with f32 KV for %d of %d tokens, max |dlogit| %.5f of spread %.2f\n",
           dn, hs, agree, STEPS, worst, hi - lo);
    // f16 keeps 11 significant bits: keys and values off by <= 2^-12 relative, the logits by
    // far less (measured 5e-6 of the spread); q8's int8 activations turn such a change into a
    // whole quantization step now and then (measured 1.3e-3)
    double tol = d == TH_DTYPE_Q8 ? 0.005 : 0.0005;
    CHECK(agree >= 22, "%s: f16 KV greedy agrees for %d tokens, want >= 22\n", dn, agree);
    CHECK(worst <= tol * (hi - lo), "%s: f16 KV logits off by %.5f, spread %.2f (bound %.2f %%)\n", dn, worst,
          hi - lo, 100 * tol);

    // 1 vs 2 threads: bit-identical logits for the prefill and every decode step
#ifdef _OPENMP
    int keep_threads = omp_get_max_threads();
    float *l1 = th_alloc(sizeof(float) * STEPS * V);
    int tt[STEPS];
    omp_set_num_threads(1);
    greedy(m16, tt, l1);
    omp_set_num_threads(2);
    greedy(m16, tt, l16);
    // a decode step runs its one-row kernels on one thread (infer.c's solo_begin) and gives
    // the caller's thread count back
    CHECK(omp_get_max_threads() == 2, "%s: after decoding at 2 threads, omp_get_max_threads() is %d\n", dn,
          omp_get_max_threads());
    omp_set_num_threads(3);
    greedy(m16, tt, l1);
    CHECK(omp_get_max_threads() == 3, "%s: after decoding at 3 threads, omp_get_max_threads() is %d\n", dn,
          omp_get_max_threads());
    CHECK(memcmp(l1, l16, sizeof(float) * STEPS * V) == 0, "%s: f16 KV logits differ between 3 and 2 threads\n", dn);
    omp_set_num_threads(1);
    greedy(m16, tt, l1);
    omp_set_num_threads(keep_threads);
    CHECK(memcmp(l1, l16, sizeof(float) * STEPS * V) == 0, "%s: f16 KV logits differ between 1 and 2 threads\n", dn);
    th_free(l1);
#endif

    // the naive backend: a prefill's rows and the batched rows sum as a decode step does
    const char *keep = th_compute_current();
    th_compute_select("naive");
    int seq[PROMPT + 8] = {5, 17, 3, 200, 1, 2, 3, 4, 9, 8, 7, 6};
    th_gpt2_kv *kv = NULL, *kv2 = NULL;
    float *all = th_alloc(sizeof(float) * (PROMPT + 8) * V), *one = th_alloc(sizeof(float) * V);
    th_gpt2_kv_create(m16, PROMPT + 8, &kv);
    th_gpt2_kv_create(m16, PROMPT + 8, &kv2);
    CHECK(th_gpt2_kv_cache_dtype(kv) == TH_KV_F16, "%s: the cache is f16\n", dn);
    CHECK(th_gpt2_infer(m16, kv, seq, PROMPT + 8, all, 1) == TH_OK, "%s: prefill\n", dn);
    // f32 weights: the same sums, so the same bits; packed weights: a prefill multiplies
    // dequantized panels in f32 while a step reads the packed rows (q8: int8 activations), so
    // within test_model_lowp's bound for them
    int same = 1;
    double pd = 0;
    for (int i = 0; i < PROMPT + 8; i++) {
        th_gpt2_infer(m16, kv2, seq + i, 1, one, 0);
        same &= memcmp(one, all + (size_t)i * V, sizeof(float) * V) == 0;
        for (int j = 0; j < V; j++) pd = fmax(pd, fabs(one[j] - all[(size_t)i * V + j]));
    }
    if (d == TH_DTYPE_F32)
        CHECK(same, "%s: f16 KV prefill differs from step-by-step decode (naive backend)\n", dn);
    else
        CHECK(pd <= 0.03 * (hi - lo), "%s: f16 KV prefill and decode differ by %.4f\n", dn, pd);

    // batched decode: two sequences with prompts of different lengths, three steps
    th_gpt2_batch *b = NULL;
    th_gpt2_kv *kvs[2] = {NULL, NULL}, *solo[2] = {NULL, NULL};
    float *bl = th_alloc(sizeof(float) * 2 * V);
    th_gpt2_batch_create(m16, 2, &b);
    int plen[2] = {3, 5}, bsame = 1;
    for (int r = 0; r < 2; r++) {
        th_gpt2_kv_create(m16, 16, &kvs[r]);
        th_gpt2_kv_create(m16, 16, &solo[r]);
        th_gpt2_infer(m16, kvs[r], seq + r, plen[r], one, 0);
        th_gpt2_infer(m16, solo[r], seq + r, plen[r], one, 0);
    }
    for (int step = 0; step < 3; step++) {
        int tk[2] = {seq[step + 6], seq[step + 2]};
        CHECK(th_gpt2_infer_batch(m16, b, kvs, tk, 2, bl) == TH_OK, "%s: batch step\n", dn);
        for (int r = 0; r < 2; r++) {
            th_gpt2_infer(m16, solo[r], &tk[r], 1, one, 0);
            bsame &= memcmp(bl + (size_t)r * V, one, sizeof(float) * V) == 0;
        }
    }
    CHECK(bsame, "%s: f16 KV batched rows differ from th_gpt2_infer\n", dn);
    for (int r = 0; r < 2; r++) {
        th_gpt2_kv_free(kvs[r]);
        th_gpt2_kv_free(solo[r]);
    }
    th_gpt2_batch_free(b);
    th_compute_select(keep);
    th_free(bl);
    th_free(one);
    th_free(all);
    th_gpt2_kv_free(kv2);
    th_gpt2_kv_free(kv);
    th_free(l16);
    th_free(l32);
    th_gpt2_free(m16);
    th_gpt2_free(m32);
}

static void test_models(void) {
    // head size 64 (the register kernel) and the tiny preset's 16 (the tile path)
    th_gpt2_config shapes[2];
    th_gpt2_config_preset("tiny", &shapes[0]);
    shapes[0].channels = 128;
    shapes[0].num_heads = 2;
    th_gpt2_config_preset("tiny", &shapes[1]);
    for (int c = 0; c < 2; c++) {
        const th_gpt2_config *cfg = &shapes[c];
        th_gpt2 *ref = NULL;
        CHECK(th_gpt2_create(cfg, &ref) == TH_OK, "create\n");
        th_gpt2_init_random(ref, 11);
        // wte scaled up so the next-token distribution is peaked, as a trained model's
        float *pr = th_gpt2_params(ref);
        for (int i = 0; i < cfg->vocab_size * cfg->channels; i++) pr[i] *= 8.0f;
        test_model(cfg, pr, TH_DTYPE_F32);
        test_model(cfg, pr, TH_DTYPE_Q8);
        if (c == 0) {
            th_f16_force_portable(1);
            test_model(cfg, pr, TH_DTYPE_F16); // the portable conversions and the tile path at hs 64
            th_f16_force_portable(0);
        }

        // defaults: f32 for the f32 model, f16 once packed; a cache keeps its type
        th_gpt2 *m = NULL;
        th_gpt2_create(cfg, &m);
        memcpy(th_gpt2_params(m), pr, th_gpt2_num_params(cfg) * sizeof(float));
        th_gpt2_kv *before = NULL, *after = NULL;
        CHECK(th_gpt2_kv_dtype(m) == TH_KV_F32, "an f32 model's default KV is f32\n");
        th_gpt2_kv_create(m, 8, &before);
        th_infer_precision p = {TH_DTYPE_BF16, 0, TH_KV_AUTO};
        th_gpt2_set_precision(m, &p);
        th_gpt2_set_kv_dtype(m, p.kv_dtype);
        CHECK(th_gpt2_kv_dtype(m) == TH_KV_F16, "a packed model's default KV is f16\n");
        th_gpt2_kv_create(m, 8, &after);
        CHECK(th_gpt2_kv_cache_dtype(before) == TH_KV_F32 && th_gpt2_kv_cache_dtype(after) == TH_KV_F16,
              "caches keep the type they were made with\n");
        th_gpt2_set_kv_dtype(m, TH_KV_F32);
        CHECK(th_gpt2_kv_dtype(m) == TH_KV_F32, "explicit f32 on a packed model\n");
        th_gpt2_set_kv_dtype(m, (th_kv_dtype)7);
        CHECK(th_gpt2_kv_dtype(m) == TH_KV_F16, "an unknown value means auto\n");
        th_gpt2_kv_free(after);
        th_gpt2_kv_free(before);
        th_gpt2_free(m);
        th_gpt2_free(ref);
    }
    th_kv_dtype k;
    CHECK_FAIL(th_kv_dtype_parse("f8", &k), TH_ERR_INVALID, "'f8'", "unknown KV dtype");
    CHECK(th_kv_dtype_parse("f16", &k) == TH_OK && k == TH_KV_F16 && strcmp(th_kv_dtype_name(TH_KV_F32), "f32") == 0,
          "parse and name\n");
}

/* A bad --kv-dtype is a usage error that names the flag and the values it takes. */
static void test_cli(void) {
    const char *bin = getenv("THERMO_BIN") ? getenv("THERMO_BIN") : "build/thermo";
    const char *cmds[] = {"generate --kv-dtype f8 --model /nonexistent", "serve --kv-dtype f8 --model /nonexistent",
                          "bench model --kv-dtype f8"};
    char path[512];
    snprintf(path, sizeof path, "%s/err.txt", scratch_make("model_kv"));
    for (int i = 0; i < 3; i++) {
        char cmd[1200], *err;
        snprintf(cmd, sizeof cmd, "%s %s 2> %s", bin, cmds[i], path);
        int rc = system(cmd);
        err = test_read_file(path, NULL);
        CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 2 && err && strstr(err, "--kv-dtype") && strstr(err, "f16") &&
                  strstr(err, "'f8'"),
              "thermo %s: exit %d, stderr: %s\n", cmds[i], WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, err ? err : "");
        free(err);
    }
}

int main(void) {
    test_round_trips();
    test_attention_f16();
    test_exp_lanes();
    test_models();
    test_cli();
    return test_summary();
}
