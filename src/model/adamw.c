/* adamw.c: the optimizer (PyTorch's AdamW with bias correction and decoupled weight decay
 * on 2-D weights only), global-norm gradient clipping, and the warmup + cosine schedule. */
#include <math.h>
#include <string.h>

#include "model/gpt2_internal.h"

th_adamw_config th_adamw_defaults(void) {
    th_adamw_config c = {3e-4f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f};
    return c;
}

static th_status ensure_moments(th_gpt2 *m) {
    if (m->adam_m) return TH_OK;
    m->adam_m = th_calloc(m->num_params, sizeof(float));
    m->adam_v = th_calloc(m->num_params, sizeof(float));
    if (!m->adam_m || !m->adam_v) {
        th_free(m->adam_m);
        th_free(m->adam_v);
        m->adam_m = m->adam_v = NULL;
        return th_fail(TH_ERR_NOMEM, "optimizer: out of memory for AdamW moments (%.1f MB)",
                       m->num_params * 8.0 / 1e6);
    }
    return TH_OK;
}

th_status th_gpt2_adamw_step(th_gpt2 *m, const th_adamw_config *cfg, float lr, double grad_norm) {
    if (!m->grads) return th_fail(TH_ERR_STATE, "optimizer: no gradients (run a backward first)");
    th_status st = ensure_moments(m);
    if (st != TH_OK) return st;
    gpt2_grads_materialize(m);
    float clip = 1.0f;
    if (cfg->grad_clip > 0.0f && grad_norm > cfg->grad_clip)
        clip = (float)(cfg->grad_clip / (grad_norm + 1e-6));
    long t = ++m->adam_steps;
    float b1 = cfg->beta1, b2 = cfg->beta2;
    float bc1 = 1.0f - powf(b1, (float)t);
    float bc2_sqrt = sqrtf(1.0f - powf(b2, (float)t));
    float step_size = lr / bc1;
    // one parallel loop over blocks of every tensor, taken dynamically (each element's update
    // is its own, so who computes it changes nothing; a thread another load preempts is
    // helped by the others instead of being waited for)
    enum { BLOCK = 1 << 16 };
    long first[TH_P_NUM + 1];
    float decay[TH_P_NUM];
    size_t offset[TH_P_NUM], count[TH_P_NUM];
    first[0] = 0;
    for (int i = 0; i < TH_P_NUM; i++) {
        th_tensor_info info;
        th_gpt2_tensor_info(&m->cfg, i, &info);
        decay[i] = info.decay ? 1.0f - lr * cfg->weight_decay : 1.0f;
        offset[i] = info.offset;
        count[i] = info.count;
        first[i + 1] = first[i] + (long)((info.count + BLOCK - 1) / BLOCK);
    }
    float eps = cfg->eps;
#pragma omp parallel for schedule(dynamic)
    for (long b = 0; b < first[TH_P_NUM]; b++) {
        int i = 0;
        while (b >= first[i + 1]) i++;
        size_t j0 = (size_t)(b - first[i]) * BLOCK, j1 = j0 + BLOCK < count[i] ? j0 + BLOCK : count[i];
        float *p = m->params + offset[i], *g = m->grads + offset[i];
        float *mm = m->adam_m + offset[i], *vv = m->adam_v + offset[i];
        float dec = decay[i];
        for (size_t j = j0; j < j1; j++) {
            float grad = g[j] * clip;
            float mj = b1 * mm[j] + (1.0f - b1) * grad;
            float vj = b2 * vv[j] + (1.0f - b2) * grad * grad;
            mm[j] = mj;
            vv[j] = vj;
            float denom = sqrtf(vj) / bc2_sqrt + eps;
            p[j] = p[j] * dec - step_size * mj / denom;
        }
    }
    return TH_OK;
}

float *th_gpt2_adam_m(th_gpt2 *m) { return m->adam_m; }
float *th_gpt2_adam_v(th_gpt2 *m) { return m->adam_v; }
long th_gpt2_adam_steps(const th_gpt2 *m) { return m->adam_steps; }

th_status th_gpt2_adam_restore(th_gpt2 *m, long steps) {
    if (steps < 0) return th_fail(TH_ERR_INVALID, "optimizer: step count %ld is negative", steps);
    th_status st = ensure_moments(m);
    if (st != TH_OK) return st;
    m->adam_steps = steps;
    return TH_OK;
}

float th_lr_at(const th_lr_schedule *s, int step) {
    if (s->warmup_steps > 0 && step < s->warmup_steps)
        return s->lr_max * (float)(step + 1) / (float)s->warmup_steps;
    if (step >= s->total_steps) return s->lr_min;
    int span = s->total_steps - s->warmup_steps;
    if (span <= 0) return s->lr_max;
    double ratio = (double)(step - s->warmup_steps) / span;
    double coeff = 0.5 * (1.0 + cos(M_PI * ratio));
    return s->lr_min + (float)coeff * (s->lr_max - s->lr_min);
}
