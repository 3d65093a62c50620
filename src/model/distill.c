/* distill.c: knowledge distillation in the engine: KL with temperature (dense and against a
 * cached top-k teacher) and the cosine of hidden states as forward/backward pairs, the
 * combined DistilGPT-2 loss of one micro-batch, and the student built from teacher blocks. */
#include <math.h>
#include <string.h>

#include "model/gpt2_internal.h"
#include "model/kernels.h"

#define COS_EPS 1e-12 /* torch's CosineEmbeddingLoss EPSILON */

static int counted(const int *targets, int i) { return !targets || targets[i] != TH_IGNORE_INDEX; }

/* log-sum-exp of row (n) divided by temp, in double, in a fixed order. */
static double lse_over_temp(const float *row, int n, float temp) {
    float maxv = -INFINITY;
    for (int v = 0; v < n; v++) maxv = row[v] > maxv ? row[v] : maxv;
    double sum = 0.0;
    for (int v = 0; v < n; v++) sum += exp(((double)row[v] - maxv) / temp);
    return maxv / (double)temp + log(sum);
}

/* ---------------------------------------------------------------------------------
 * KL(softmax(zt/T) ‖ softmax(zs/T)) · T², dense teacher */

double th_kl_temp_forward(float *losses, const float *zs, const float *zt, const int *targets, int N, int V,
                          float temp) {
    // zs, zt are (N, V); losses is (N)
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        if (!counted(targets, i)) {
            losses[i] = 0.0f;
            continue;
        }
        const float *s = zs + (size_t)i * V, *t = zt + (size_t)i * V;
        double ls = lse_over_temp(s, V, temp), lt = lse_over_temp(t, V, temp), kl = 0.0;
        for (int v = 0; v < V; v++) {
            double logpt = t[v] / (double)temp - lt;
            kl += exp(logpt) * (logpt - (s[v] / (double)temp - ls));
        }
        losses[i] = (float)(kl * temp * temp);
    }
    double sum = 0.0;
    for (int i = 0; i < N; i++) sum += losses[i];
    return sum;
}

void th_kl_temp_backward(float *dzs, const float *zs, const float *zt, const int *targets, int N, int V,
                         float temp, float scale) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        if (!counted(targets, i)) continue;
        const float *s = zs + (size_t)i * V, *t = zt + (size_t)i * V;
        float *d = dzs + (size_t)i * V;
        double ls = lse_over_temp(s, V, temp), lt = lse_over_temp(t, V, temp);
        for (int v = 0; v < V; v++) {
            double ps = exp(s[v] / (double)temp - ls), pt = exp(t[v] / (double)temp - lt);
            d[v] += (float)(scale * temp * (ps - pt));
        }
    }
}

/* ---------------------------------------------------------------------------------
 * the same against a cached top-k teacher */

/* The teacher's distribution at temp from a top-k row: the k stored log-probabilities (at
 * T = 1) and the rest of the mass, 1 − Σ exp(logp), spread evenly over the other V − k ids
 * (exact for k = V, where there is no rest). Fills q (k) and returns the tail's probability
 * per id at temp (0 when there is no rest) and, in *log_tail, its log (or -inf). */
static double topk_teacher(const float *lp, int k, int V, float temp, double *q, double *log_tail) {
    double mass = 0.0;
    for (int j = 0; j < k; j++) mass += exp((double)lp[j]);
    double rest = 1.0 - mass, lt1 = rest > 1e-12 && V > k ? log(rest / (V - k)) : -INFINITY;
    double mx = lt1 / temp;
    for (int j = 0; j < k; j++) mx = lp[j] / (double)temp > mx ? lp[j] / (double)temp : mx;
    double z = isfinite(lt1) ? (V - k) * exp(lt1 / temp - mx) : 0.0;
    for (int j = 0; j < k; j++) z += exp(lp[j] / (double)temp - mx);
    double lz = mx + log(z);
    for (int j = 0; j < k; j++) q[j] = exp(lp[j] / (double)temp - lz);
    *log_tail = isfinite(lt1) ? lt1 / temp - lz : -INFINITY;
    return isfinite(lt1) ? exp(*log_tail) : 0.0;
}

#define TOPK_MAX 4096

double th_kl_topk_forward(float *losses, const float *zs, const int *ids, const float *logp, int k,
                          const int *targets, int N, int V, float temp) {
    // zs is (N, V); ids and logp are (N, k)
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        if (!counted(targets, i) || k > TOPK_MAX) {
            losses[i] = k > TOPK_MAX ? NAN : 0.0f;
            continue;
        }
        const float *s = zs + (size_t)i * V, *lp = logp + (size_t)i * k;
        const int *id = ids + (size_t)i * k;
        double q[TOPK_MAX], log_tail;
        double ls = lse_over_temp(s, V, temp), qt = topk_teacher(lp, k, V, temp, q, &log_tail), kl = 0.0;
        double sum_log_ps = 0.0, top_log_ps = 0.0;
        if (qt > 0.0)
            for (int v = 0; v < V; v++) sum_log_ps += s[v] / (double)temp - ls;
        for (int j = 0; j < k; j++) {
            double log_ps = s[id[j]] / (double)temp - ls;
            top_log_ps += log_ps;
            if (q[j] > 0.0) kl += q[j] * (log(q[j]) - log_ps);
        }
        // the tail: V − k ids of probability qt each
        if (qt > 0.0) kl += qt * ((double)(V - k) * log_tail - (sum_log_ps - top_log_ps));
        losses[i] = (float)(kl * temp * temp);
    }
    double sum = 0.0;
    for (int i = 0; i < N; i++) sum += losses[i];
    return sum;
}

void th_kl_topk_backward(float *dzs, const float *zs, const int *ids, const float *logp, int k,
                         const int *targets, int N, int V, float temp, float scale) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        if (!counted(targets, i) || k > TOPK_MAX) continue;
        const float *s = zs + (size_t)i * V, *lp = logp + (size_t)i * k;
        const int *id = ids + (size_t)i * k;
        float *d = dzs + (size_t)i * V;
        double q[TOPK_MAX], log_tail;
        double ls = lse_over_temp(s, V, temp), qt = topk_teacher(lp, k, V, temp, q, &log_tail);
        for (int v = 0; v < V; v++) d[v] += (float)(scale * temp * (exp(s[v] / (double)temp - ls) - qt));
        for (int j = 0; j < k; j++) d[id[j]] -= (float)(scale * temp * (q[j] - qt));
    }
}

/* ---------------------------------------------------------------------------------
 * 1 − cos of hidden states */

double th_cosine_forward(float *losses, const float *hs, const float *ht, const int *targets, int N, int C) {
    // hs, ht are (N, C); losses is (N)
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        if (!counted(targets, i)) {
            losses[i] = 0.0f;
            continue;
        }
        const float *a = hs + (size_t)i * C, *b = ht + (size_t)i * C;
        double dot = 0.0, na = COS_EPS, nb = COS_EPS;
        for (int c = 0; c < C; c++) {
            dot += (double)a[c] * b[c];
            na += (double)a[c] * a[c];
            nb += (double)b[c] * b[c];
        }
        losses[i] = (float)(1.0 - dot / sqrt(na * nb));
    }
    double sum = 0.0;
    for (int i = 0; i < N; i++) sum += losses[i];
    return sum;
}

void th_cosine_backward(float *dhs, const float *hs, const float *ht, const int *targets, int N, int C,
                        float scale) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        if (!counted(targets, i)) continue;
        const float *a = hs + (size_t)i * C, *b = ht + (size_t)i * C;
        float *d = dhs + (size_t)i * C;
        double dot = 0.0, na = COS_EPS, nb = COS_EPS;
        for (int c = 0; c < C; c++) {
            dot += (double)a[c] * b[c];
            na += (double)a[c] * a[c];
            nb += (double)b[c] * b[c];
        }
        double D = sqrt(na * nb), cosv = dot / D;
        // d(1 − cos)/da = −(b/D − cos·a/|a|²)
        for (int c = 0; c < C; c++) d[c] += (float)(-scale * (b[c] / D - cosv * a[c] / na));
    }
}

/* ---------------------------------------------------------------------------------
 * the combined loss of one micro-batch */

th_distill_loss_config th_distill_loss_defaults(void) { return (th_distill_loss_config){2.0f, 0.5f, 0.5f, 0.0f}; }

const float *th_gpt2_last_hidden(const th_gpt2 *m) { return m->a.lnf; }

th_status th_gpt2_backward_from(th_gpt2 *m, const float *dlogits, const float *dhidden) {
    if (!m->forward_fresh) return th_fail(TH_ERR_STATE, "backward: needs a forward first (once per forward)");
    if (!m->grads) {
        th_status st = th_gpt2_zero_grad(m);
        if (st != TH_OK) return st;
    }
    m->forward_fresh = 0;
    m->backward_ready = 0;
    gpt2_backward_from_dlogits(m, dlogits, dhidden);
    return TH_OK;
}

size_t th_distill_scratch_floats(const th_gpt2_config *s, int B, int T) {
    size_t BT = (size_t)B * T;
    return BT * (size_t)s->vocab_size + BT * (size_t)s->channels + BT;
}

static th_status check_config(const th_distill_loss_config *c, const th_distill_teacher *t) {
    if (!(c->temperature > 0.0f) || !isfinite(c->temperature))
        return th_fail(TH_ERR_INVALID, "distillation: temperature %g must be positive", (double)c->temperature);
    float al[3] = {c->alpha_kl, c->alpha_ce, c->alpha_cos};
    const char *names[3] = {"alpha-kl", "alpha-ce", "alpha-cos"};
    for (int i = 0; i < 3; i++)
        if (!(al[i] >= 0.0f) || !isfinite(al[i]))
            return th_fail(TH_ERR_INVALID, "distillation: %s %g must be finite and >= 0", names[i], (double)al[i]);
    if (al[0] + al[1] + al[2] <= 0.0f) return th_fail(TH_ERR_INVALID, "distillation: every alpha is 0");
    if (c->alpha_kl > 0 && !t->logits && !(t->topk_ids && t->topk_logp && t->k > 0))
        return th_fail(TH_ERR_INVALID, "distillation: alpha-kl > 0 needs the teacher's logits or a top-k cache");
    if (c->alpha_cos > 0 && !t->hidden)
        return th_fail(TH_ERR_INVALID, "distillation: alpha-cos > 0 needs the teacher's hidden states "
                                       "(a cache keeps none: use the in-loop teacher)");
    return TH_OK;
}

th_status th_distill_loss_step(th_gpt2 *m, const int *inputs, const int *targets, int B, int T,
                               const th_distill_teacher *t, const th_distill_loss_config *c, float loss_scale,
                               float *scratch, th_distill_loss_parts *out) {
    out->total = out->kl = out->ce = out->cos = NAN;
    if (!targets) return th_fail(TH_ERR_INVALID, "distillation: the batch has no targets");
    th_status st = check_config(c, t);
    if (st != TH_OK) return st;
    float ce = 0;
    if ((st = th_gpt2_forward(m, inputs, targets, B, T, &ce)) != TH_OK) return st;
    if (!m->grads && (st = th_gpt2_zero_grad(m)) != TH_OK) return st;
    int N = B * T, V = m->cfg.vocab_size, C = m->cfg.channels, n = m->n_counted;
    float *dlogits = scratch, *dhidden = scratch + (size_t)N * V, *losses = dhidden + (size_t)N * C;
    float *logits = m->a.logits;
    out->ce = ce;
    double total = c->alpha_ce > 0 ? (double)c->alpha_ce * ce : 0.0;
    m->backward_ready = 0;
    m->forward_fresh = 0;
    if (n == 0) return TH_OK; // every target ignored: no loss, no gradient
    memset(dlogits, 0, sizeof(float) * (size_t)N * V);
    float tmp = c->temperature;
    if (c->alpha_kl > 0) {
        float sc = loss_scale * c->alpha_kl / (float)n;
        if (t->logits) {
            out->kl = (float)(th_kl_temp_forward(losses, logits, t->logits, targets, N, V, tmp) / n);
            th_kl_temp_backward(dlogits, logits, t->logits, targets, N, V, tmp, sc);
        } else {
            out->kl = (float)(th_kl_topk_forward(losses, logits, t->topk_ids, t->topk_logp, t->k, targets, N, V, tmp) / n);
            th_kl_topk_backward(dlogits, logits, t->topk_ids, t->topk_logp, t->k, targets, N, V, tmp, sc);
        }
        total += (double)c->alpha_kl * out->kl;
    }
    const float *dh = NULL;
    if (c->alpha_cos > 0) {
        memset(dhidden, 0, sizeof(float) * (size_t)N * C);
        out->cos = (float)(th_cosine_forward(losses, m->a.lnf, t->hidden, targets, N, C) / n);
        th_cosine_backward(dhidden, m->a.lnf, t->hidden, targets, N, C, loss_scale * c->alpha_cos / (float)n);
        total += (double)c->alpha_cos * out->cos;
        dh = dhidden;
    }
    if (c->alpha_ce > 0) {
        // the logits become the cross-entropy's gradient in place, then take the others'
        th_crossentropy_backward_inplace(logits, m->a.lse, targets, N, V, loss_scale * c->alpha_ce / (float)n);
        size_t NV = (size_t)N * V;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < NV; i++) logits[i] += dlogits[i];
        dlogits = logits;
    }
    gpt2_backward_from_dlogits(m, dlogits, dh);
    out->total = (float)total;
    return TH_OK;
}

/* ---------------------------------------------------------------------------------
 * the student from teacher blocks */

int th_distill_default_layers(int teacher_layers, int *out, int cap) {
    static const int distilgpt2[] = {0, 2, 4, 7, 9, 11};
    int n = 0;
    if (teacher_layers == 12) {
        for (int i = 0; i < 6 && n < cap; i++) out[n++] = distilgpt2[i];
        return n;
    }
    for (int l = 0; l < teacher_layers && n < cap; l += 2) out[n++] = l;
    return n;
}

th_status th_gpt2_from_teacher_blocks(const th_gpt2 *teacher, const int *layers, int n, th_gpt2 **out) {
    *out = NULL;
    const th_gpt2_config *tc = &teacher->cfg;
    if (n < 1 || n > tc->num_layers)
        return th_fail(TH_ERR_INVALID, "student layers: %d blocks asked for, the teacher has %d", n, tc->num_layers);
    for (int i = 0; i < n; i++) {
        if (layers[i] < 0 || layers[i] >= tc->num_layers)
            return th_fail(TH_ERR_INVALID, "student layers: index %d is out of range (the teacher has blocks 0..%d)",
                           layers[i], tc->num_layers - 1);
        for (int j = 0; j < i; j++)
            if (layers[j] == layers[i])
                return th_fail(TH_ERR_INVALID, "student layers: index %d is given twice", layers[i]);
    }
    th_gpt2_config sc = *tc;
    sc.num_layers = n;
    th_gpt2 *s = NULL;
    th_status st = th_gpt2_create(&sc, &s);
    if (st != TH_OK) return st;
    for (int p = 0; p < TH_P_NUM; p++) {
        th_tensor_info ti;
        th_gpt2_tensor_info(tc, p, &ti);
        int per_layer = p != TH_P_WTE && p != TH_P_WPE && p != TH_P_LNFW && p != TH_P_LNFB;
        if (!per_layer) {
            memcpy(s->p.t[p], teacher->p.t[p], ti.count * sizeof(float));
            continue;
        }
        size_t slice = ti.count / (size_t)tc->num_layers;
        for (int i = 0; i < n; i++)
            memcpy(s->p.t[p] + (size_t)i * slice, teacher->p.t[p] + (size_t)layers[i] * slice, slice * sizeof(float));
    }
    *out = s;
    return TH_OK;
}
