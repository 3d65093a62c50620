/* test_model_reference.c: the C engine against PyTorch. Runs tests/reference/gpt2_reference.py
 * (Debian's python3-torch) to produce a tiny random GPT-2, a batch, its logits, loss, every
 * parameter gradient and the parameters after 3 AdamW steps, then checks the engine gives the
 * same numbers within stated tolerances, on every matmul backend. Also checks determinism:
 * the same inputs give bit-identical losses and weights. */
#include <stdint.h>

#include "test_util.h"
#include "thermo/model.h"

typedef struct {
    int hdr[9];
    int steps;
    float hyper[6]; // lr, beta1, beta2, eps, wd, clip
    int *inputs, *targets;
    float *params, *logits, loss, *grads, *step_losses, *step_norms, *params3;
} reference;

static int read_exact(FILE *f, void *dst, size_t bytes) { return fread(dst, 1, bytes, f) == bytes; }

static int load_reference(const char *path, reference *r, th_gpt2_config *cfg) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int ok = read_exact(f, r->hdr, sizeof r->hdr) && r->hdr[0] == 0x54524546 && r->hdr[1] == 1;
    ok = ok && read_exact(f, &r->steps, 4) && read_exact(f, r->hyper, sizeof r->hyper);
    if (!ok) { fclose(f); return 0; }
    *cfg = (th_gpt2_config){r->hdr[2], r->hdr[3], r->hdr[4], r->hdr[5], r->hdr[6], 1e-5f};
    size_t BT = (size_t)r->hdr[7] * r->hdr[8], P = th_gpt2_num_params(cfg), V = cfg->vocab_size;
    r->inputs = malloc(BT * 4);
    r->targets = malloc(BT * 4);
    r->params = malloc(P * 4);
    r->logits = malloc(BT * V * 4);
    r->grads = malloc(P * 4);
    r->step_losses = malloc(r->steps * 4);
    r->step_norms = malloc(r->steps * 4);
    r->params3 = malloc(P * 4);
    ok = read_exact(f, r->inputs, BT * 4) && read_exact(f, r->targets, BT * 4) &&
         read_exact(f, r->params, P * 4) && read_exact(f, r->logits, BT * V * 4) &&
         read_exact(f, &r->loss, 4) && read_exact(f, r->grads, P * 4) &&
         read_exact(f, r->step_losses, r->steps * 4) && read_exact(f, r->step_norms, r->steps * 4) &&
         read_exact(f, r->params3, P * 4);
    fclose(f);
    return ok;
}

/* Compares each parameter tensor; passes if max|c - ref| <= atol + rtol·max|ref| and at most
 * `outlier_frac` of the elements differ by more than `tight`. */
static void compare_tensors(const char *what, const th_gpt2_config *cfg, const float *c, const float *ref,
                            double atol, double rtol, double tight, double outlier_frac) {
    for (int i = 0; i < TH_P_NUM; i++) {
        th_tensor_info info;
        th_gpt2_tensor_info(cfg, i, &info);
        double mref, d = max_abs_diff(c + info.offset, ref + info.offset, info.count, &mref);
        size_t outliers = 0;
        for (size_t j = 0; j < info.count; j++) {
            // The key bias has an exactly zero true gradient (adding q·b_k to every score of a
            // query leaves its softmax unchanged), so its computed gradient is rounding noise,
            // which Adam normalizes into O(lr) moves in both engines. Only the bound above applies.
            int key_bias = i == TH_P_QKVB && (int)(j % (3 * cfg->channels)) / cfg->channels == 1;
            outliers += !key_bias && fabs((double)c[info.offset + j] - ref[info.offset + j]) > tight;
        }
        printf("  %-6s %-9s max abs err %.3e (max |ref| %.3e, rel %.2e), %zu of %zu above %.0e\n", what,
               info.name, d, mref, mref > 0 ? d / mref : 0.0, outliers, info.count, tight);
        CHECK(d <= atol + rtol * mref, "%s %s: max abs err %.3e > %.1e + %.1e * %.3e", what, info.name, d,
              atol, rtol, mref);
        CHECK(outliers <= 2 + outlier_frac * info.count, "%s %s: %zu elements differ by more than %.0e", what,
              info.name, outliers, tight);
    }
}

/* Runs every check with the compute backend already selected. */
static void run_backend(const reference *r, const th_gpt2_config *cfg) {
    printf("backend %s\n", th_compute_current());
    int B = r->hdr[7], T = r->hdr[8];
    size_t P = th_gpt2_num_params(cfg), BTV = (size_t)B * T * cfg->vocab_size;
    th_gpt2 *m;
    CHECK(th_gpt2_create(cfg, &m) == TH_OK, "create: %s", th_last_error());
    memcpy(th_gpt2_params(m), r->params, P * 4);

    // forward: logits and loss
    float loss = 0;
    CHECK(th_gpt2_forward(m, r->inputs, r->targets, B, T, &loss) == TH_OK, "forward: %s", th_last_error());
    double mref, d = max_abs_diff(th_gpt2_logits(m), r->logits, BTV, &mref);
    printf("  logits max abs err %.3e (max |ref| %.3e)\n", d, mref);
    CHECK(d <= 1e-5 + 1e-4 * mref, "logits max abs err %.3e", d);
    printf("  loss %.7f vs torch %.7f\n", loss, r->loss);
    CHECK(fabsf(loss - r->loss) <= 1e-5f * fabsf(r->loss), "loss %.7f vs %.7f", loss, r->loss);

    // backward: every gradient. Gradients reach 1e-1; float32 reordering gives ~1e-6 relative.
    CHECK(th_gpt2_zero_grad(m) == TH_OK, "zero_grad");
    CHECK(th_gpt2_backward(m, 1.0f) == TH_OK, "backward: %s", th_last_error());
    compare_tensors("grad", cfg, th_gpt2_grads(m), r->grads, 1e-6, 1e-4, 1e-6, 0.0);

    // 3 AdamW steps on the same batch with clipping, compared with torch.optim.AdamW
    th_adamw_config opt = {r->hyper[0], r->hyper[1], r->hyper[2], r->hyper[3], r->hyper[4], r->hyper[5]};
    memcpy(th_gpt2_params(m), r->params, P * 4);
    for (int s = 0; s < r->steps; s++) {
        CHECK(th_gpt2_forward(m, r->inputs, r->targets, B, T, &loss) == TH_OK, "forward");
        CHECK(th_gpt2_zero_grad(m) == TH_OK, "zero_grad");
        CHECK(th_gpt2_backward(m, 1.0f) == TH_OK, "backward");
        double norm = th_gpt2_grad_norm(m);
        printf("  step %d: loss %.6f (torch %.6f), grad norm %.5f (torch %.5f)\n", s + 1, loss,
               r->step_losses[s], norm, r->step_norms[s]);
        CHECK(fabsf(loss - r->step_losses[s]) <= 1e-4f, "step %d loss", s + 1);
        CHECK(fabs(norm - r->step_norms[s]) <= 1e-4 * r->step_norms[s], "step %d grad norm", s + 1);
        CHECK(th_gpt2_adamw_step(m, &opt, opt.lr, norm) == TH_OK, "adamw: %s", th_last_error());
    }
    // Adam divides by sqrt(v): where a gradient is near rounding noise, m/sqrt(v) can differ by
    // O(1) and that weight moves by a different fraction of lr. So the worst element may be off
    // by 5% of one step (5e-5 at lr 1e-3), but at most 2 + 0.1% of the elements by more than 1e-6.
    compare_tensors("step3", cfg, th_gpt2_params(m), r->params3, 0.05 * opt.lr, 0.0, 1e-6, 1e-3);
    th_gpt2_free(m);
}

/* Same inputs twice → bit-identical losses, gradients and weights. */
static void check_determinism(const reference *r, const th_gpt2_config *cfg) {
    int B = r->hdr[7], T = r->hdr[8];
    size_t P = th_gpt2_num_params(cfg);
    float *w[2];
    float losses[2][3];
    th_adamw_config opt = th_adamw_defaults();
    for (int run = 0; run < 2; run++) {
        th_gpt2 *m;
        th_gpt2_create(cfg, &m);
        memcpy(th_gpt2_params(m), r->params, P * 4);
        for (int s = 0; s < 3; s++) {
            th_gpt2_forward(m, r->inputs, r->targets, B, T, &losses[run][s]);
            th_gpt2_zero_grad(m);
            th_gpt2_backward(m, 1.0f);
            th_gpt2_adamw_step(m, &opt, opt.lr, th_gpt2_grad_norm(m));
        }
        w[run] = malloc(P * 4);
        memcpy(w[run], th_gpt2_params(m), P * 4);
        th_gpt2_free(m);
    }
    CHECK(memcmp(losses[0], losses[1], sizeof losses[0]) == 0, "losses differ between identical runs");
    CHECK(memcmp(w[0], w[1], P * 4) == 0, "weights differ between identical runs");
    printf("determinism: two identical 3-step runs give bit-identical losses and weights\n");
    free(w[0]);
    free(w[1]);
}

int main(void) {
    char path[4200], cmd[8600];
    snprintf(path, sizeof path, "%s/gpt2_reference.bin", test_tmp_dir("model_reference"));
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/reference/gpt2_reference.py' '%s'", test_source_dir(),
             path);
    fflush(stdout);
    if (system(cmd) != 0) {
        fprintf(stderr, "FAIL: the PyTorch reference did not run (%s). Run scripts/setup to install "
                        "python3-torch.\n", cmd);
        return 1;
    }
    reference r;
    th_gpt2_config cfg;
    if (!load_reference(path, &r, &cfg)) {
        fprintf(stderr, "FAIL: cannot read %s\n", path);
        return 1;
    }
    for (size_t b = 0; b < th_compute_count(); b++) {
        if (th_compute_select(th_compute_name(b)) == TH_OK) run_backend(&r, &cfg);
        else printf("backend %s: not available here (%s)\n", th_compute_name(b), th_last_error());
    }
    th_compute_select("auto");
    check_determinism(&r, &cfg);
    void *bufs[] = {r.inputs, r.targets, r.params, r.logits, r.grads, r.step_losses, r.step_norms, r.params3};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    return test_summary();
}
