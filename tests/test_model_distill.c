/* test_model_distill.c: the distillation kernels and loss. Finite differences for the KL
 * (dense and top-k) and cosine backward passes; the top-k KL with k = V against the dense
 * one; then tests/reference/distill_reference.py (PyTorch): the student built from teacher
 * blocks equals extract.py's (bit for bit), its logits equal the PyTorch student's, and the
 * loss terms and every student gradient of th_distill_loss_step match, for a dense teacher
 * (with the cosine term) and a top-k one. Bad layer lists are refused. */
#include <stdint.h>

#include "test_util.h"
#include "thermo/model.h"

static void fill(float *x, size_t n, th_rng *rng, double std) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(std * th_rng_normal(rng));
}

/* ---------------------------------------------------------------------------------
 * finite differences */

enum { N = 5, V = 23, CH = 12, K = 6 };

typedef double (*loss_fn)(float *zs, void *ctx);

typedef struct {
    const float *zt, *hs_t;
    const int *ids, *targets;
    const float *logp;
    float temp;
    float *losses;
} fd_ctx;

static double kl_dense(float *zs, void *u) {
    fd_ctx *c = u;
    return th_kl_temp_forward(c->losses, zs, c->zt, c->targets, N, V, c->temp);
}
static double kl_topk(float *zs, void *u) {
    fd_ctx *c = u;
    return th_kl_topk_forward(c->losses, zs, c->ids, c->logp, K, c->targets, N, V, c->temp);
}
static double cosine(float *hs, void *u) {
    fd_ctx *c = u;
    return th_cosine_forward(c->losses, hs, c->hs_t, c->targets, N, CH);
}

/* max |analytic − central difference| over x (n), relative to the largest gradient. */
static double fd_check(loss_fn f, void *ctx, float *x, size_t n, const float *grad) {
    double worst = 0, gmax = 1e-12;
    for (size_t i = 0; i < n; i++) {
        float keep = x[i], h = 1e-2f;
        x[i] = keep + h;
        double up = f(x, ctx);
        x[i] = keep - h;
        double down = f(x, ctx);
        x[i] = keep;
        double num = (up - down) / (2.0 * h), e = fabs(num - grad[i]);
        if (e > worst) worst = e;
        if (fabs(grad[i]) > gmax) gmax = fabs(grad[i]);
    }
    return worst / gmax;
}

static void test_finite_differences(void) {
    th_rng rng;
    th_rng_seed(&rng, 7);
    float zs[N * V], zt[N * V], logp[N * K], losses[N], g[N * V], hs[N * CH], ht[N * CH], gh[N * CH];
    int ids[N * K], targets[N] = {1, TH_IGNORE_INDEX, 3, 4, 5};
    fill(zs, N * V, &rng, 2.0);
    fill(zt, N * V, &rng, 2.0);
    fill(hs, N * CH, &rng, 1.0);
    fill(ht, N * CH, &rng, 1.0);
    for (int i = 0; i < N; i++)
        for (int j = 0; j < K; j++) {
            ids[i * K + j] = (i * 7 + j * 3) % V; // distinct within a row
            logp[i * K + j] = (float)(-1.5 - 0.7 * j + 0.1 * th_rng_normal(&rng)); // mass < 1: a tail
        }
    fd_ctx c = {zt, ht, ids, targets, logp, 2.0f, losses};
    memset(g, 0, sizeof g);
    th_kl_temp_backward(g, zs, zt, targets, N, V, 2.0f, 1.0f);
    double e = fd_check(kl_dense, &c, zs, N * V, g);
    printf("KL(T=2) dense: finite differences rel err %.2e\n", e);
    CHECK(e < 2e-3, "dense KL backward: rel err %.2e", e);
    for (int v = 0; v < V; v++) CHECK(g[V + v] == 0.0f, "an ignored row got gradient %g", g[V + v]);

    memset(g, 0, sizeof g);
    th_kl_topk_backward(g, zs, ids, logp, K, targets, N, V, 2.0f, 1.0f);
    e = fd_check(kl_topk, &c, zs, N * V, g);
    printf("KL(T=2) top-%d: finite differences rel err %.2e\n", K, e);
    CHECK(e < 2e-3, "top-k KL backward: rel err %.2e", e);

    memset(gh, 0, sizeof gh);
    th_cosine_backward(gh, hs, ht, targets, N, CH, 1.0f);
    e = fd_check(cosine, &c, hs, N * CH, gh);
    printf("1 - cos: finite differences rel err %.2e\n", e);
    CHECK(e < 2e-3, "cosine backward: rel err %.2e", e);
    // identical vectors: cos 1, no loss
    th_cosine_forward(losses, ht, ht, NULL, N, CH);
    CHECK(fabsf(losses[0]) < 1e-6f, "1 - cos(x, x) = %g", losses[0]);

    // top-k with k = V is the dense KL: log-probabilities at T = 1 of the teacher's logits
    static int all_ids[N * V];
    static float all_logp[N * V];
    for (int i = 0; i < N; i++) {
        double mx = -1e30, s = 0;
        for (int v = 0; v < V; v++) mx = zt[i * V + v] > mx ? zt[i * V + v] : mx;
        for (int v = 0; v < V; v++) s += exp(zt[i * V + v] - mx);
        for (int v = 0; v < V; v++) {
            all_ids[i * V + v] = V - 1 - v;
            all_logp[i * V + v] = (float)(zt[i * V + V - 1 - v] - mx - log(s));
        }
    }
    double dense = th_kl_temp_forward(losses, zs, zt, targets, N, V, 3.0f);
    double full = th_kl_topk_forward(losses, zs, all_ids, all_logp, V, targets, N, V, 3.0f);
    printf("KL(T=3): dense %.7f, top-k with k = V %.7f\n", dense, full);
    CHECK(fabs(dense - full) < 1e-5 * fabs(dense), "top-V KL %.7f != dense %.7f", full, dense);
}

/* ---------------------------------------------------------------------------------
 * against PyTorch */

typedef struct {
    int hdr[10], n_layers, layers[8];
    float cfg[4]; // T, alpha_kl, alpha_ce, alpha_cos
    int *inputs, *targets, *topk_ids;
    float *teacher, *student, *logits0, dense_parts[4], *dense_grads, *topk_logp, topk_parts[4], *topk_grads;
} reference;

static int rd(FILE *f, void *dst, size_t bytes) { return fread(dst, 1, bytes, f) == bytes; }

static int load_reference(const char *path, reference *r, th_gpt2_config *tc, th_gpt2_config *sc) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int ok = rd(f, r->hdr, sizeof r->hdr) && r->hdr[0] == 0x54534944 && r->hdr[1] == 1 && rd(f, &r->n_layers, 4) &&
             r->n_layers > 0 && r->n_layers <= 8 && rd(f, r->layers, 4 * (size_t)r->n_layers) && rd(f, r->cfg, 16);
    if (!ok) {
        fclose(f);
        return 0;
    }
    *tc = (th_gpt2_config){r->hdr[2], r->hdr[3], r->hdr[4], r->hdr[5], r->hdr[6], 1e-5f};
    *sc = *tc;
    sc->num_layers = r->n_layers;
    size_t BT = (size_t)r->hdr[7] * r->hdr[8], Pt = th_gpt2_num_params(tc), Ps = th_gpt2_num_params(sc);
    size_t Vv = tc->vocab_size, k = r->hdr[9];
    r->inputs = malloc(BT * 4);
    r->targets = malloc(BT * 4);
    r->teacher = malloc(Pt * 4);
    r->student = malloc(Ps * 4);
    r->logits0 = malloc(BT * Vv * 4);
    r->dense_grads = malloc(Ps * 4);
    r->topk_ids = malloc(BT * k * 4);
    r->topk_logp = malloc(BT * k * 4);
    r->topk_grads = malloc(Ps * 4);
    ok = rd(f, r->inputs, BT * 4) && rd(f, r->targets, BT * 4) && rd(f, r->teacher, Pt * 4) &&
         rd(f, r->student, Ps * 4) && rd(f, r->logits0, BT * Vv * 4) && rd(f, r->dense_parts, 16) &&
         rd(f, r->dense_grads, Ps * 4) && rd(f, r->topk_ids, BT * k * 4) && rd(f, r->topk_logp, BT * k * 4) &&
         rd(f, r->topk_parts, 16) && rd(f, r->topk_grads, Ps * 4);
    fclose(f);
    return ok;
}

static void compare_grads(const char *what, const th_gpt2_config *cfg, const float *c, const float *ref) {
    for (int i = 0; i < TH_P_NUM; i++) {
        th_tensor_info info;
        th_gpt2_tensor_info(cfg, i, &info);
        double mref, d = max_abs_diff(c + info.offset, ref + info.offset, info.count, &mref);
        printf("  %-6s %-9s max abs err %.3e (max |ref| %.3e)\n", what, info.name, d, mref);
        // the engine's gradient tolerance (test_model_reference.c): 1e-6 + 1e-4 · max |ref|
        CHECK(d <= 1e-6 + 1e-4 * mref, "%s %s: max abs err %.3e, max |ref| %.3e", what, info.name, d, mref);
    }
}

static void check_parts(const char *what, const th_distill_loss_parts *p, const float *ref) {
    const float got[4] = {p->total, p->kl, p->ce, p->cos};
    const char *names[4] = {"total", "kl", "ce", "cos"};
    for (int i = 0; i < 4; i++) {
        printf("  %s %-5s %.7f vs torch %.7f\n", what, names[i], got[i], ref[i]);
        if (isnan(ref[i])) CHECK(isnan(got[i]), "%s %s: %g, torch skipped it", what, names[i], got[i]);
        else CHECK(fabsf(got[i] - ref[i]) <= 1e-5f * fabsf(ref[i]) + 1e-6f, "%s %s %.7f vs %.7f", what, names[i],
                   got[i], ref[i]);
    }
}

static void test_reference(void) {
    char path[4200], cmd[8600];
    snprintf(path, sizeof path, "%s/distill_reference.bin", test_tmp_dir("model_distill"));
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/reference/distill_reference.py' '%s'", test_source_dir(),
             path);
    fflush(stdout);
    reference r;
    th_gpt2_config tc, sc;
    if (system(cmd) != 0 || !load_reference(path, &r, &tc, &sc)) {
        CHECK(0, "the PyTorch reference did not run or cannot be read (%s); scripts/setup installs python3-torch", cmd);
        return;
    }
    int B = r.hdr[7], T = r.hdr[8], k = r.hdr[9], BT = B * T;
    th_gpt2 *teacher = NULL, *student = NULL;
    CHECK(th_gpt2_create(&tc, &teacher) == TH_OK, "teacher");
    memcpy(th_gpt2_params(teacher), r.teacher, th_gpt2_num_params(&tc) * 4);
    CHECK(th_gpt2_from_teacher_blocks(teacher, r.layers, r.n_layers, &student) == TH_OK, "student: %s",
          th_last_error());
    CHECK(th_gpt2_get_config(student)->num_layers == r.n_layers, "student layers");
    CHECK(memcmp(th_gpt2_params(student), r.student, th_gpt2_num_params(&sc) * 4) == 0,
          "the student's parameters differ from extract.py's");

    // the initialised student's logits against the PyTorch student's
    CHECK(th_gpt2_forward(student, r.inputs, NULL, B, T, NULL) == TH_OK, "student forward: %s", th_last_error());
    double mref, d = max_abs_diff(th_gpt2_logits(student), r.logits0, (size_t)BT * tc.vocab_size, &mref);
    printf("initialised student: logits max abs err %.3e (max |ref| %.3e)\n", d, mref);
    CHECK(d <= 1e-5 + 1e-4 * mref, "student logits: max abs err %.3e", d);

    // the teacher's logits and hidden states, kept: the student's forward reuses nothing of it
    CHECK(th_gpt2_forward(teacher, r.inputs, NULL, B, T, NULL) == TH_OK, "teacher forward");
    th_distill_teacher dt = {th_gpt2_logits(teacher), th_gpt2_last_hidden(teacher), NULL, NULL, 0};
    th_distill_loss_config c = {r.cfg[0], r.cfg[1], r.cfg[2], r.cfg[3]};
    float *scratch = malloc(th_distill_scratch_floats(&sc, B, T) * sizeof(float));
    th_distill_loss_parts parts;
    CHECK(th_gpt2_zero_grad(student) == TH_OK, "zero_grad");
    CHECK(th_distill_loss_step(student, r.inputs, r.targets, B, T, &dt, &c, 1.0f, scratch, &parts) == TH_OK,
          "dense loss: %s", th_last_error());
    printf("dense teacher, T %.1f, alphas %.2f %.2f %.2f:\n", c.temperature, c.alpha_kl, c.alpha_ce, c.alpha_cos);
    check_parts("dense", &parts, r.dense_parts);
    compare_grads("dense", &sc, th_gpt2_grads(student), r.dense_grads);

    // a top-k teacher (the cache's form), no cosine
    th_distill_teacher kt = {NULL, NULL, r.topk_ids, r.topk_logp, k};
    c.alpha_cos = 0;
    CHECK(th_gpt2_zero_grad(student) == TH_OK, "zero_grad");
    CHECK(th_distill_loss_step(student, r.inputs, r.targets, B, T, &kt, &c, 1.0f, scratch, &parts) == TH_OK,
          "top-k loss: %s", th_last_error());
    printf("top-%d teacher:\n", k);
    check_parts("top-k", &parts, r.topk_parts);
    compare_grads("top-k", &sc, th_gpt2_grads(student), r.topk_grads);

    // loss_scale 0.5 halves every gradient (accumulation)
    float *g1 = malloc(th_gpt2_num_params(&sc) * 4);
    memcpy(g1, th_gpt2_grads(student), th_gpt2_num_params(&sc) * 4);
    th_gpt2_zero_grad(student);
    th_distill_loss_step(student, r.inputs, r.targets, B, T, &kt, &c, 0.5f, scratch, &parts);
    for (size_t i = 0; i < th_gpt2_num_params(&sc); i++) g1[i] *= 0.5f;
    d = max_abs_diff(th_gpt2_grads(student), g1, th_gpt2_num_params(&sc), &mref);
    CHECK(d <= 1e-6 * mref, "loss_scale 0.5: gradients differ from half by %.3e", d);

    // bad input: the cosine without hidden states, a bad temperature, bad layer lists
    c.alpha_cos = 0.3f;
    CHECK_FAIL(th_distill_loss_step(student, r.inputs, r.targets, B, T, &kt, &c, 1.0f, scratch, &parts),
               TH_ERR_INVALID, "hidden states", "cosine with a cache");
    c.alpha_cos = 0;
    c.temperature = 0;
    CHECK_FAIL(th_distill_loss_step(student, r.inputs, r.targets, B, T, &kt, &c, 1.0f, scratch, &parts),
               TH_ERR_INVALID, "temperature", "temperature 0");
    th_gpt2 *bad = NULL;
    int out_of_range[] = {0, 3}, twice[] = {1, 1};
    CHECK_FAIL(th_gpt2_from_teacher_blocks(teacher, out_of_range, 2, &bad), TH_ERR_INVALID, "index 3 is out of range",
               "layer out of range");
    CHECK_FAIL(th_gpt2_from_teacher_blocks(teacher, twice, 2, &bad), TH_ERR_INVALID, "given twice", "layer twice");
    CHECK(bad == NULL, "a refused student is not handed out");
    CHECK_FAIL(th_gpt2_backward_from(student, scratch, NULL), TH_ERR_STATE, "forward first", "backward twice");

    free(g1);
    free(scratch);
    th_gpt2_free(student);
    th_gpt2_free(teacher);
    void *bufs[] = {r.inputs, r.targets, r.teacher, r.student, r.logits0, r.dense_grads, r.topk_ids, r.topk_logp,
                    r.topk_grads};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

static void test_default_layers(void) {
    int l[16];
    int n = th_distill_default_layers(12, l, 16);
    CHECK(n == 6 && l[0] == 0 && l[1] == 2 && l[2] == 4 && l[3] == 7 && l[4] == 9 && l[5] == 11,
          "12 layers: DistilGPT-2's blocks (got %d)", n);
    n = th_distill_default_layers(4, l, 16);
    CHECK(n == 2 && l[0] == 0 && l[1] == 2, "4 layers: every other block (got %d)", n);
    n = th_distill_default_layers(1, l, 16);
    CHECK(n == 1 && l[0] == 0, "1 layer: block 0");
}

int main(void) {
    test_finite_differences();
    test_default_layers();
    test_reference();
    return test_summary();
}
