/* test_model_lowp_quality.c: the low-precision quality gate (th_precision_quality) and the
 * precision table of `thermo bench model --dtype`. A model against its own f32 copy scores
 * ratio 1, KL 0, agreement 1; packed copies score KL > 0 with ratios near 1 and the order
 * f16 <= bf16 in KL; shapes must match; an unknown --dtype is a usage error. */
#include "test_util.h"
#include "thermo/pipeline.h"

static th_gpt2 *copy_of(th_gpt2 *m) {
    th_gpt2 *c = NULL;
    const th_gpt2_config *cfg = th_gpt2_get_config(m);
    if (th_gpt2_create(cfg, &c) != TH_OK) exit(1);
    memcpy(th_gpt2_params(c), th_gpt2_params(m), th_gpt2_num_params(cfg) * sizeof(float));
    return c;
}

static void test_gate(void) {
    th_gpt2_config tiny;
    th_gpt2_config_preset("tiny", &tiny); // 64 channels: whole q8 blocks
    th_gpt2 *ref = NULL;
    if (th_gpt2_create(&tiny, &ref) != TH_OK) exit(1);
    th_gpt2_init_random(ref, 5);
    const th_gpt2_config *cfg = th_gpt2_get_config(ref);
    float *p = th_gpt2_params(ref);
    for (int i = 0; i < cfg->vocab_size * cfg->channels; i++) p[i] *= 8.0f; // a peaked distribution
    int toks[150];
    for (int i = 0; i < 150; i++) toks[i] = (i * 37 + 11) % cfg->vocab_size;
    th_precision_quality_result q;
    th_gpt2 *same = copy_of(ref);
    CHECK(th_precision_quality(ref, same, toks, 150, 40, &q) == TH_OK, "self\n");
    CHECK(q.tokens == 149 && q.ppl_ratio == 1.0 && q.mean_kl == 0.0 && q.top1_agreement == 1.0,
          "self: %ld tokens, ratio %g, KL %g, top-1 %g\n", q.tokens, q.ppl_ratio, q.mean_kl, q.top1_agreement);
    th_gpt2_free(same);
    double kl[4] = {0};
    for (int d = TH_DTYPE_BF16; d <= TH_DTYPE_Q8; d++) {
        th_gpt2 *m = copy_of(ref);
        th_infer_precision pr = {(th_dtype)d, 0, TH_KV_AUTO};
        CHECK(th_gpt2_set_precision(m, &pr) == TH_OK, "pack\n");
        CHECK(th_precision_quality(ref, m, toks, 150, 0, &q) == TH_OK, "quality %s\n", th_dtype_name(pr.dtype));
        printf("%s: ppl ratio %.6f, KL %.3g, top-1 %.3f\n", th_dtype_name(pr.dtype), q.ppl_ratio, q.mean_kl,
               q.top1_agreement);
        CHECK(q.mean_kl > 0 && q.mean_kl < 1e-2 && fabs(q.ppl_ratio - 1) < 0.01 && q.top1_agreement >= 0.95,
              "%s: ratio %g, KL %g, top-1 %g\n", th_dtype_name(pr.dtype), q.ppl_ratio, q.mean_kl, q.top1_agreement);
        kl[d] = q.mean_kl;
        th_gpt2_free(m);
    }
    CHECK(kl[TH_DTYPE_F16] < kl[TH_DTYPE_BF16], "f16 (11-bit mantissa) should be closer than bf16 (8-bit)\n");
    th_gpt2_config other = *cfg;
    other.num_layers = 1;
    th_gpt2 *o = NULL;
    th_gpt2_create(&other, &o);
    th_gpt2_init_random(o, 1);
    CHECK_FAIL(th_precision_quality(ref, o, toks, 150, 0, &q), TH_ERR_INVALID, "shapes", "shape mismatch");
    CHECK_FAIL(th_precision_quality(ref, ref, toks, 1, 0, &q), TH_ERR_INVALID, "at least 2", "one token");
    th_gpt2_free(o);
    th_gpt2_free(ref);
}

static void test_cli(void) {
    const char *bin = getenv("THERMO_BIN");
    if (!bin) {
        printf("THERMO_BIN not set: CLI check skipped\n");
        return;
    }
    // (the table itself is not run here: bench model measures the machine's ceilings over a
    // buffer of 4x the LLC first, which takes a minute on a loaded host)
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s bench model --preset tiny --dtype int4 2>/dev/null", bin);
    CHECK(WEXITSTATUS(system(cmd)) == 2, "an unknown dtype is a usage error\n");
}

int main(void) {
    test_gate();
    test_cli();
    return test_summary();
}
