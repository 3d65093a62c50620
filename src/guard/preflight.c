/* preflight.c: checks worth their seconds before a long run (waste.md §5): the token
 * data, the loss at init, the memory training will take against what the machine has,
 * and a checkpoint save -> load -> compare round trip. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "thermo/guard.h"

th_status th_preflight_tokens(const char *label, const int *tokens, size_t n, int vocab, int T,
                              th_preflight_data_report *r) {
    th_preflight_data_report rep;
    memset(&rep, 0, sizeof rep);
    rep.tokens = n;
    rep.first_bad_index = (size_t)-1;
    if (!label) label = "dataset";
    if (vocab <= 0 || T <= 0) {
        if (r) *r = rep;
        return th_fail(TH_ERR_INVALID, "%s: vocab %d and sequence length %d must be positive", label, vocab, T);
    }
    for (size_t i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= vocab) {
            if (!rep.out_of_range) {
                rep.first_bad_index = i;
                rep.first_bad_value = tokens[i];
            }
            rep.out_of_range++;
        }
    rep.windows = n > (size_t)T ? (n - 1) / (size_t)T : 0;
    if (r) *r = rep;
    if (n == 0) return th_fail(TH_ERR_INVALID, "%s: no tokens", label);
    if (n < (size_t)T + 1)
        return th_fail(TH_ERR_INVALID, "%s: %zu tokens, shorter than one training window of %d tokens plus its target",
                       label, n, T);
    if (rep.out_of_range)
        return th_fail(TH_ERR_INVALID, "%s: %zu token ids outside [0, %d), the first %d at index %zu", label,
                       rep.out_of_range, vocab, rep.first_bad_value, rep.first_bad_index);
    return TH_OK;
}

th_status th_preflight_check_init_loss(double loss, int vocab, double tol) {
    if (vocab < 2) return th_fail(TH_ERR_INVALID, "loss at init: vocab %d must be at least 2", vocab);
    if (!(tol > 0)) tol = 0.3;
    double expect = log((double)vocab);
    if (!(fabs(loss - expect) <= tol))
        return th_fail(TH_ERR_INVALID,
                       "loss at init %.4f is not within %.2f of ln(%d) = %.4f: the initialization, the data or the "
                       "loss is broken",
                       loss, tol, vocab, expect);
    return TH_OK;
}

th_status th_preflight_init_loss(th_gpt2 *m, const int *tokens, size_t n, int B, int T, double tol,
                                 double *loss_out) {
    const th_gpt2_config *cfg = th_gpt2_get_config(m);
    if (B <= 0 || T <= 0 || T > cfg->max_seq_len)
        return th_fail(TH_ERR_INVALID, "loss at init: batch %d x %d does not fit the model (context %d)", B, T,
                       cfg->max_seq_len);
    size_t BT = (size_t)B * T;
    if (n < BT + 1) return th_fail(TH_ERR_INVALID, "loss at init: %zu tokens, need %zu for one batch", n, BT + 1);
    float loss = NAN;
    th_status st = th_gpt2_forward(m, tokens, tokens + 1, B, T, &loss);
    if (st != TH_OK) return st;
    if (loss_out) *loss_out = loss;
    return th_preflight_check_init_loss(loss, cfg->vocab_size, tol);
}

/* The activation block of src/model/gpt2.c ensure_activations, buffer for buffer; keep
 * the two lists in step (test_guard_preflight measures the real allocation). */
static size_t activation_floats(const th_gpt2_config *cfg, size_t B, size_t T) {
    size_t L = cfg->num_layers, C = cfg->channels, NH = cfg->num_heads, V = cfg->vocab_size;
    size_t BT = B * T;
    size_t sizes[] = {
        BT * C,
        L * BT * C, L * BT, L * BT,
        L * BT * 3 * C, L * BT * C, L * B * NH * T * T,
        L * BT * C, L * BT * C, L * BT, L * BT,
        L * BT * 4 * C, L * BT * 4 * C, L * BT * C,
        BT * C, BT, BT,
        BT * V, BT, BT, BT * C,
        BT * C, BT * C, BT * 3 * C, BT * 4 * C, B * NH * T,
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) total += (sizes[i] + 15) & ~(size_t)15;
    return total;
}

th_status th_preflight_train_memory(const th_gpt2_config *cfg, int B, int T, th_preflight_memory *out) {
    th_status st = th_gpt2_config_validate(cfg);
    if (st != TH_OK) return st;
    if (B <= 0 || T <= 0 || T > cfg->max_seq_len)
        return th_fail(TH_ERR_INVALID, "memory estimate: batch %d x %d does not fit the model (context %d)", B, T,
                       cfg->max_seq_len);
    memset(out, 0, sizeof *out);
    size_t P = th_gpt2_num_params(cfg);
    out->params_bytes = P * sizeof(float);
    out->grads_bytes = P * sizeof(float);
    out->adam_bytes = 2 * P * sizeof(float);
    out->activations_bytes = activation_floats(cfg, (size_t)B, (size_t)T) * sizeof(float) +
                             2 * (size_t)B * T * sizeof(int); // the copies of inputs and targets
    out->total_bytes = out->params_bytes + out->grads_bytes + out->adam_bytes + out->activations_bytes;
    return TH_OK;
}

th_status th_preflight_mem_available(const char *root, size_t *bytes) {
    char path[4096];
    snprintf(path, sizeof path, "%s/proc/meminfo", root && *root ? root : "");
    FILE *f = fopen(path, "r");
    if (!f) return th_fail(TH_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char line[256];
    int found = 0;
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) {
            found = 1;
            break;
        }
    fclose(f);
    if (!found) return th_fail(TH_ERR_FORMAT, "%s: no 'MemAvailable: N kB' line (kernel older than 3.14?)", path);
    *bytes = (size_t)kb * 1024;
    return TH_OK;
}

th_status th_preflight_memory_check(const th_gpt2_config *cfg, int B, int T, const char *root,
                                    size_t margin_bytes, th_preflight_memory *out) {
    th_preflight_memory m;
    th_status st = th_preflight_train_memory(cfg, B, T, &m);
    if (st != TH_OK) return st;
    st = th_preflight_mem_available(root, &m.available_bytes);
    if (st != TH_OK) return st;
    m.margin_bytes = margin_bytes == SIZE_MAX ? (size_t)1 << 30 : margin_bytes;
    if (out) *out = m;
    size_t usable = m.available_bytes > m.margin_bytes ? m.available_bytes - m.margin_bytes : 0;
    if (m.total_bytes > usable)
        return th_fail(TH_ERR_NOMEM,
                       "training at B=%d T=%d needs %.1f MB (params %.1f, grads %.1f, AdamW %.1f, activations %.1f) but "
                       "only %.1f MB are available (MemAvailable %.1f MB minus a %.1f MB margin)",
                       B, T, m.total_bytes / 1e6, m.params_bytes / 1e6, m.grads_bytes / 1e6, m.adam_bytes / 1e6,
                       m.activations_bytes / 1e6, usable / 1e6, m.available_bytes / 1e6, m.margin_bytes / 1e6);
    return TH_OK;
}

/* First index where two float arrays differ bitwise, or -1. */
static long first_diff(const float *a, const float *b, size_t n) {
    if (memcmp(a, b, n * sizeof(float)) == 0) return -1;
    for (size_t i = 0; i < n; i++)
        if (memcmp(a + i, b + i, sizeof(float)) != 0) return (long)i;
    return -1;
}

static th_status compare_block(const th_gpt2_config *cfg, const float *a, const float *b, const char *what) {
    for (int t = 0; t < TH_P_NUM; t++) {
        th_tensor_info ti;
        th_gpt2_tensor_info(cfg, t, &ti);
        long d = first_diff(a + ti.offset, b + ti.offset, ti.count);
        if (d >= 0)
            return th_fail(TH_ERR_FORMAT, "%s of tensor %s differ at index %ld: %.9g vs %.9g", what, ti.name, d,
                           a[ti.offset + d], b[ti.offset + d]);
    }
    return TH_OK;
}

th_status th_preflight_compare_models(th_gpt2 *a, th_gpt2 *b) {
    const th_gpt2_config *ca = th_gpt2_get_config(a), *cb = th_gpt2_get_config(b);
    if (ca->max_seq_len != cb->max_seq_len || ca->vocab_size != cb->vocab_size || ca->num_layers != cb->num_layers ||
        ca->num_heads != cb->num_heads || ca->channels != cb->channels || memcmp(&ca->ln_eps, &cb->ln_eps, sizeof(float)))
        return th_fail(TH_ERR_FORMAT, "the configs differ");
    th_status st = compare_block(ca, th_gpt2_params(a), th_gpt2_params(b), "parameters");
    if (st != TH_OK) return st;
    float *ma = th_gpt2_adam_m(a), *mb = th_gpt2_adam_m(b);
    if (!ma != !mb) return th_fail(TH_ERR_FORMAT, "one model has AdamW moments and the other has none");
    if (ma) {
        if ((st = compare_block(ca, ma, mb, "AdamW first moments")) != TH_OK) return st;
        if ((st = compare_block(ca, th_gpt2_adam_v(a), th_gpt2_adam_v(b), "AdamW second moments")) != TH_OK) return st;
    }
    if (th_gpt2_adam_steps(a) != th_gpt2_adam_steps(b))
        return th_fail(TH_ERR_FORMAT, "AdamW step counts differ: %ld vs %ld", th_gpt2_adam_steps(a),
                       th_gpt2_adam_steps(b));
    return TH_OK;
}

th_status th_preflight_checkpoint_roundtrip(th_gpt2 *m, const th_train_state *st_in, const char *tmp_path) {
    th_train_state *back = th_calloc(1, sizeof *back);
    if (!back) return th_fail(TH_ERR_NOMEM, "checkpoint round trip: out of memory");
    th_gpt2 *loaded = NULL;
    th_status st = th_checkpoint_save(tmp_path, m, st_in);
    if (st == TH_OK) st = th_checkpoint_load(tmp_path, &loaded, back);
    unlink(tmp_path);
    if (st == TH_OK) st = th_preflight_compare_models(m, loaded);
    if (st == TH_OK && st_in) {
        if (back->step != st_in->step) st = th_fail(TH_ERR_FORMAT, "step %ld came back as %ld", st_in->step, back->step);
        else if (memcmp(&back->rng, &st_in->rng, sizeof back->rng)) st = th_fail(TH_ERR_FORMAT, "the RNG state differs");
        else if (memcmp(back->data_cursor, st_in->data_cursor, sizeof back->data_cursor))
            st = th_fail(TH_ERR_FORMAT, "the data cursor differs");
        else if (strcmp(back->run_meta, st_in->run_meta) != 0) st = th_fail(TH_ERR_FORMAT, "the run metadata differs");
    }
    if (st != TH_OK && th_last_error()[0]) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", th_last_error());
        st = th_fail(st, "checkpoint round trip via %s: %s", tmp_path, msg);
    }
    th_gpt2_free(loaded);
    th_free(back);
    return st;
}
