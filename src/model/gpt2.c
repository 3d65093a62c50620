/* gpt2.c: the GPT-2 model for training. Config validation and presets, the parameter
 * table (one allocation), GPT-2 initialization, and the forward and backward passes over
 * a (B, T) batch, computed exactly as Hugging Face's GPT2LMHeadModel does. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "model/gpt2_internal.h"
#include "model/kernels.h"
#include "model/compute.h"
#include "model/lowp.h"

/* ---------------------------------------------------------------------------------
 * config */

/* Upper bounds that keep every size computation inside size_t and int with room to spare;
 * they are far above any GPT-2 shape. */
#define MAX_SEQ_LEN (1 << 20)
#define MAX_VOCAB (1 << 24)
#define MAX_LAYERS 1024
#define MAX_CHANNELS (1 << 16)

th_status th_gpt2_config_validate(const th_gpt2_config *cfg) {
    if (!cfg) return th_fail(TH_ERR_INVALID, "model config: missing");
    struct {
        const char *name;
        int value, max;
    } fields[] = {
        {"max_seq_len", cfg->max_seq_len, MAX_SEQ_LEN},
        {"vocab_size", cfg->vocab_size, MAX_VOCAB},
        {"num_layers", cfg->num_layers, MAX_LAYERS},
        {"num_heads", cfg->num_heads, MAX_CHANNELS},
        {"channels", cfg->channels, MAX_CHANNELS},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (fields[i].value <= 0)
            return th_fail(TH_ERR_INVALID, "model config: %s is %d, must be at least 1", fields[i].name,
                           fields[i].value);
        if (fields[i].value > fields[i].max)
            return th_fail(TH_ERR_INVALID, "model config: %s is %d, above the limit of %d",
                           fields[i].name, fields[i].value, fields[i].max);
    }
    if (cfg->channels % cfg->num_heads != 0)
        return th_fail(TH_ERR_INVALID, "model config: channels %d is not divisible by num_heads %d",
                       cfg->channels, cfg->num_heads);
    if (!(cfg->ln_eps > 0.0f) || !isfinite(cfg->ln_eps) || cfg->ln_eps > 1.0f)
        return th_fail(TH_ERR_INVALID, "model config: ln_eps %g must be in (0, 1]", (double)cfg->ln_eps);
    return TH_OK;
}

const char *const th_gpt2_preset_names[] = {"gpt2", "distilgpt2", "gpt2-medium", "small", "tiny", NULL};

th_status th_gpt2_config_preset(const char *name, th_gpt2_config *cfg) {
    static const struct {
        const char *name;
        th_gpt2_config cfg;
    } presets[] = {
        {"gpt2", {1024, 50257, 12, 12, 768, 1e-5f}},
        {"distilgpt2", {1024, 50257, 6, 12, 768, 1e-5f}},
        {"gpt2-medium", {1024, 50257, 24, 16, 1024, 1e-5f}},
        {"small", {256, 50257, 4, 4, 128, 1e-5f}},
        {"tiny", {64, 512, 2, 4, 64, 1e-5f}},
    };
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++) {
        if (strcmp(presets[i].name, name) == 0) {
            *cfg = presets[i].cfg;
            return TH_OK;
        }
    }
    return th_fail(TH_ERR_INVALID, "unknown model preset '%s' (known: gpt2, distilgpt2, gpt2-medium, small, tiny)",
                   name);
}

/* ---------------------------------------------------------------------------------
 * parameter table */

void th_gpt2_tensor_info(const th_gpt2_config *cfg, int which, th_tensor_info *out) {
    int V = cfg->vocab_size, maxT = cfg->max_seq_len, L = cfg->num_layers, C = cfg->channels;
    static const char *names[TH_P_NUM] = {"wte", "wpe", "ln1w", "ln1b", "qkvw", "qkvb",
                                          "attprojw", "attprojb", "ln2w", "ln2b", "fcw", "fcb",
                                          "fcprojw", "fcprojb", "lnfw", "lnfb"};
    const int shapes[TH_P_NUM][3] = {
        {V, C, 0}, {maxT, C, 0}, {L, C, 0}, {L, C, 0}, {L, 3 * C, C}, {L, 3 * C, 0},
        {L, C, C}, {L, C, 0},    {L, C, 0}, {L, C, 0}, {L, 4 * C, C}, {L, 4 * C, 0},
        {L, C, 4 * C}, {L, C, 0}, {C, 0, 0}, {C, 0, 0},
    };
    size_t offset = 0;
    for (int i = 0; i <= which; i++) {
        size_t count = 1;
        int ndim = 0;
        for (int d = 0; d < 3 && shapes[i][d] > 0; d++) {
            count *= (size_t)shapes[i][d];
            ndim++;
        }
        if (i == which) {
            out->name = names[i];
            out->ndim = ndim;
            for (int d = 0; d < 3; d++) out->shape[d] = shapes[i][d];
            out->offset = offset;
            out->count = count;
            out->decay = (i == TH_P_WTE || i == TH_P_WPE || i == TH_P_QKVW || i == TH_P_ATTPROJW ||
                          i == TH_P_FCW || i == TH_P_FCPROJW);
        }
        offset += count;
    }
}

size_t th_gpt2_num_params(const th_gpt2_config *cfg) {
    th_tensor_info last;
    th_gpt2_tensor_info(cfg, TH_P_NUM - 1, &last);
    return last.offset + last.count;
}

void gpt2_point_tensors(const th_gpt2_config *cfg, float *block, gpt2_tensors *out) {
    for (int i = 0; i < TH_P_NUM; i++) {
        th_tensor_info info;
        th_gpt2_tensor_info(cfg, i, &info);
        out->t[i] = block + info.offset;
    }
}

/* ---------------------------------------------------------------------------------
 * create, free, init */

th_status th_gpt2_create(const th_gpt2_config *cfg, th_gpt2 **out) {
    *out = NULL;
    th_status st = th_gpt2_config_validate(cfg);
    if (st != TH_OK) return st;
    th_gpt2 *m = th_calloc(1, sizeof *m);
    if (!m) return th_fail(TH_ERR_NOMEM, "model: out of memory for the model struct");
    m->cfg = *cfg;
    m->num_params = th_gpt2_num_params(cfg);
    m->params = th_alloc(m->num_params * sizeof(float));
    if (!m->params) {
        size_t n = m->num_params;
        th_free(m);
        return th_fail(TH_ERR_NOMEM, "model: out of memory for %zu parameters (%.1f MB)", n, n * 4.0 / 1e6);
    }
    gpt2_point_tensors(cfg, m->params, &m->p);
    *out = m;
    return TH_OK;
}

void th_gpt2_free(th_gpt2 *m) {
    if (!m) return;
    th_free(m->inputs); // targets live in the same block
    th_free(m->act_block);
    th_free(m->adam_v);
    th_free(m->adam_m);
    th_free(m->grads);
    gpt2_lowp_free(m->lowp);
    th_free(m->params);
    th_free(m);
}

const th_gpt2_config *th_gpt2_get_config(const th_gpt2 *m) { return &m->cfg; }
float *th_gpt2_params(th_gpt2 *m) { return m->params; }
float *th_gpt2_grads(th_gpt2 *m) {
    gpt2_grads_materialize(m); // the caller may read or add to them
    return m->grads;
}

void th_gpt2_init_random(th_gpt2 *m, uint64_t seed) {
    // Each chunk of 64K values draws from its own stream seeded by (seed, tensor, chunk), so
    // the chunks fill in parallel and the result does not depend on the thread count.
    enum { CHUNK = 1 << 16 };
    float resid_std = 0.02f / sqrtf(2.0f * (float)m->cfg.num_layers);
    for (int i = 0; i < TH_P_NUM; i++) {
        th_tensor_info info;
        th_gpt2_tensor_info(&m->cfg, i, &info);
        float *t = m->p.t[i];
        if (i == TH_P_LN1W || i == TH_P_LN2W || i == TH_P_LNFW) {
            for (size_t j = 0; j < info.count; j++) t[j] = 1.0f;
        } else if (info.decay) {
            float std = (i == TH_P_ATTPROJW || i == TH_P_FCPROJW) ? resid_std : 0.02f;
            long nchunks = (long)((info.count + CHUNK - 1) / CHUNK);
#pragma omp parallel for schedule(static)
            for (long c = 0; c < nchunks; c++) {
                th_rng rng;
                th_rng_seed(&rng, seed ^ ((uint64_t)i << 48) ^ ((uint64_t)c * 0x9e3779b97f4a7c15ull));
                size_t j1 = (size_t)(c + 1) * CHUNK < info.count ? (size_t)(c + 1) * CHUNK : info.count;
                for (size_t j = (size_t)c * CHUNK; j < j1; j++) t[j] = (float)(std * th_rng_normal(&rng));
            }
        } else {
            memset(t, 0, info.count * sizeof(float));
        }
    }
}

/* ---------------------------------------------------------------------------------
 * precision: every training matmul goes through these two */

const char *th_precision_name(th_precision p) {
    return p == TH_PRECISION_F32 ? "f32" : p == TH_PRECISION_BF16 ? "bf16" : "?";
}

void th_gpt2_set_train_precision(th_gpt2 *m, th_precision p) {
    m->precision = p == TH_PRECISION_BF16 ? TH_PRECISION_BF16 : TH_PRECISION_F32;
}

th_precision th_gpt2_get_train_precision(const th_gpt2 *m) { return m->precision; }

static void mm_forward(const th_gpt2 *m, float *out, const float *inp, const float *w, const float *bias, int M,
                       int N, int K) {
    if (m->precision == TH_PRECISION_BF16) th_mm_forward_bf16(out, inp, w, bias, M, N, K);
    else th_mm_forward(out, inp, w, bias, M, N, K);
}

/* set (TH_MM_SET_*): outputs overwritten instead of accumulated into (th_mm_backward_set). */
static void mm_backward(const th_gpt2 *m, float *dinp, float *dw, float *dbias, const float *dout,
                        const float *inp, const float *w, int M, int N, int K, int set) {
    if (m->precision == TH_PRECISION_BF16) th_mm_backward_set_bf16(dinp, dw, dbias, dout, inp, w, M, N, K, set);
    else th_mm_backward_set(dinp, dw, dbias, dout, inp, w, M, N, K, set);
}

/* ---------------------------------------------------------------------------------
 * activations */

static th_status ensure_activations(th_gpt2 *m, int B, int T) {
    // every buffer scales with B·T or B·T·T, so the old block fits if both are no larger
    if (m->act_block && (size_t)B * T <= (size_t)m->act_B * m->act_T &&
        (size_t)B * T * T <= (size_t)m->act_B * m->act_T * m->act_T)
        return TH_OK;
    size_t L = m->cfg.num_layers, C = m->cfg.channels, NH = m->cfg.num_heads, V = m->cfg.vocab_size;
    size_t BT = (size_t)B * T;
    size_t sizes[] = {
        BT * C,             // encoded
        L * BT * C,         // ln1
        L * BT, L * BT,     // ln1 mean, rstd
        L * BT * 3 * C,     // qkv
        L * BT * C,         // atty
        L * B * NH * T * T, // att
        L * BT * C,         // residual2
        L * BT * C,         // ln2
        L * BT, L * BT,     // ln2 mean, rstd
        L * BT * 4 * C,     // fch
        L * BT * 4 * C,     // fch_gelu
        L * BT * C,         // residual3
        BT * C, BT, BT,     // lnf, mean, rstd
        BT * V,             // logits
        BT, BT,             // lse, losses
        BT * C,             // proj
        // backward scratch
        BT * C, BT * C, BT * 3 * C, BT * 4 * C, (size_t)B * NH * T,
    };
    enum { NUM_SIZES = sizeof sizes / sizeof sizes[0] };
    size_t total = 0;
    for (int i = 0; i < NUM_SIZES; i++) total += (sizes[i] + 15) & ~(size_t)15; // 64-byte aligned
    float *block = th_alloc(total * sizeof(float));
    int *ids = th_alloc(2 * BT * sizeof(int));
    if (!block || !ids) {
        th_free(block);
        th_free(ids);
        return th_fail(TH_ERR_NOMEM, "model: out of memory for activations at B=%d T=%d (%.1f MB)", B, T,
                       total * 4.0 / 1e6);
    }
    float **ptrs[NUM_SIZES] = {
        &m->a.encoded, &m->a.ln1,   &m->a.ln1_mean, &m->a.ln1_rstd, &m->a.qkv,       &m->a.atty,
        &m->a.att,     &m->a.residual2, &m->a.ln2,  &m->a.ln2_mean, &m->a.ln2_rstd,  &m->a.fch,
        &m->a.fch_gelu, &m->a.residual3, &m->a.lnf, &m->a.lnf_mean, &m->a.lnf_rstd,  &m->a.logits,
        &m->a.lse,     &m->a.losses, &m->a.proj,    &m->s.dresidual, &m->s.dbtc,     &m->s.dqkv,
        &m->s.dfch,    &m->s.datt,
    };
    float *p = block;
    for (int i = 0; i < NUM_SIZES; i++) {
        *ptrs[i] = p;
        p += (sizes[i] + 15) & ~(size_t)15;
    }
    th_free(m->act_block);
    th_free(m->inputs);
    m->act_block = block;
    m->inputs = ids;
    m->targets = ids + BT;
    m->act_B = B;
    m->act_T = T;
    return TH_OK;
}

/* ---------------------------------------------------------------------------------
 * forward */

th_status th_gpt2_forward(th_gpt2 *m, const int *inputs, const int *targets, int B, int T,
                          float *loss) {
    const th_gpt2_config *cfg = &m->cfg;
    if (m->lowp)
        return th_fail(TH_ERR_STATE, "forward: the model is packed for %s inference; its f32 weights are gone",
                       th_dtype_name(m->lowp->dtype));
    if (B <= 0 || T <= 0)
        return th_fail(TH_ERR_INVALID, "forward: batch %d x %d must be positive", B, T);
    if (T > cfg->max_seq_len)
        return th_fail(TH_ERR_INVALID, "forward: sequence length %d exceeds the context of %d", T,
                       cfg->max_seq_len);
    if ((size_t)B * T > (size_t)1 << 30)
        return th_fail(TH_ERR_INVALID, "forward: batch %d x %d is too large", B, T);
    int V = cfg->vocab_size;
    for (int i = 0; i < B * T; i++) {
        if (inputs[i] < 0 || inputs[i] >= V)
            return th_fail(TH_ERR_INVALID, "forward: input token %d at position %d is outside [0, %d)",
                           inputs[i], i, V);
        if (targets && targets[i] != TH_IGNORE_INDEX && (targets[i] < 0 || targets[i] >= V))
            return th_fail(TH_ERR_INVALID, "forward: target token %d at position %d is outside [0, %d)",
                           targets[i], i, V);
    }
    th_status st = ensure_activations(m, B, T);
    if (st != TH_OK) return st;

    int L = cfg->num_layers, C = cfg->channels, NH = cfg->num_heads, BT = B * T;
    m->B = B;
    m->T = T;
    memcpy(m->inputs, inputs, sizeof(int) * BT);
    gpt2_tensors *p = &m->p;
    gpt2_acts *a = &m->a;

    th_encoder_forward(a->encoded, inputs, p->t[TH_P_WTE], p->t[TH_P_WPE], B, T, C, 0);
    for (int l = 0; l < L; l++) {
        const float *residual = l == 0 ? a->encoded : a->residual3 + (size_t)(l - 1) * BT * C;
        size_t lc = (size_t)l * C, ltc = (size_t)l * BT * C;
        float *ln1 = a->ln1 + ltc, *ln1_mean = a->ln1_mean + (size_t)l * BT, *ln1_rstd = a->ln1_rstd + (size_t)l * BT;
        float *qkv = a->qkv + 3 * ltc, *atty = a->atty + ltc;
        float *att = a->att + (size_t)l * B * NH * T * T;
        float *residual2 = a->residual2 + ltc, *ln2 = a->ln2 + ltc;
        float *ln2_mean = a->ln2_mean + (size_t)l * BT, *ln2_rstd = a->ln2_rstd + (size_t)l * BT;
        float *fch = a->fch + 4 * ltc, *fch_gelu = a->fch_gelu + 4 * ltc;
        float *residual3 = a->residual3 + ltc;

        th_layernorm_forward(ln1, ln1_mean, ln1_rstd, residual, p->t[TH_P_LN1W] + lc, p->t[TH_P_LN1B] + lc,
                             BT, C, cfg->ln_eps);
        mm_forward(m, qkv, ln1, p->t[TH_P_QKVW] + 3 * lc * C, p->t[TH_P_QKVB] + 3 * lc, BT, 3 * C, C);
        th_attention_forward(atty, att, qkv, B, T, C, NH);
        mm_forward(m, a->proj, atty, p->t[TH_P_ATTPROJW] + lc * C, p->t[TH_P_ATTPROJB] + lc, BT, C, C);
        th_residual_forward(residual2, residual, a->proj, BT * C);
        th_layernorm_forward(ln2, ln2_mean, ln2_rstd, residual2, p->t[TH_P_LN2W] + lc, p->t[TH_P_LN2B] + lc,
                             BT, C, cfg->ln_eps);
        mm_forward(m, fch, ln2, p->t[TH_P_FCW] + 4 * lc * C, p->t[TH_P_FCB] + 4 * lc, BT, 4 * C, C);
        th_gelu_forward(fch_gelu, fch, BT * 4 * C);
        mm_forward(m, a->proj, fch_gelu, p->t[TH_P_FCPROJW] + 4 * lc * C, p->t[TH_P_FCPROJB] + lc, BT, C,
                      4 * C);
        th_residual_forward(residual3, residual2, a->proj, BT * C);
    }
    const float *last = a->residual3 + (size_t)(L - 1) * BT * C;
    th_layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, last, p->t[TH_P_LNFW], p->t[TH_P_LNFB], BT, C,
                         cfg->ln_eps);
    mm_forward(m, a->logits, a->lnf, p->t[TH_P_WTE], NULL, BT, V, C);

    m->have_targets = targets != NULL;
    m->backward_ready = 0;
    m->forward_fresh = 1;
    if (!targets) return TH_OK;
    memcpy(m->targets, targets, sizeof(int) * BT);
    m->n_counted = th_crossentropy_forward(a->losses, a->lse, a->logits, targets, BT, V);
    double sum = 0.0;
    for (int i = 0; i < BT; i++) sum += a->losses[i];
    float mean = m->n_counted > 0 ? (float)(sum / m->n_counted) : NAN;
    if (loss) *loss = mean;
    m->backward_ready = 1;
    return TH_OK;
}

const float *th_gpt2_logits(const th_gpt2 *m) { return m->a.logits; }
const float *th_gpt2_losses(const th_gpt2 *m) { return m->a.losses; }

/* ---------------------------------------------------------------------------------
 * backward */

/* Zeroing is deferred: the next backward writes every gradient instead of adding to it (the
 * same bits as adding to zeros), which saves a pass over the whole block and the GEMMs' reads
 * of dW. Whatever else reads the gradients first makes it real (gpt2_grads_materialize). */
th_status th_gpt2_zero_grad(th_gpt2 *m) {
    if (!m->grads) {
        m->grads = th_alloc(m->num_params * sizeof(float));
        if (!m->grads)
            return th_fail(TH_ERR_NOMEM, "model: out of memory for gradients (%.1f MB)", m->num_params * 4.0 / 1e6);
        gpt2_point_tensors(&m->cfg, m->grads, &m->g);
    }
    m->grads_zero_pending = 1;
    return TH_OK;
}

void gpt2_grads_materialize(th_gpt2 *m) {
    if (!m->grads || !m->grads_zero_pending) return;
    long n = (long)m->num_params, nb = (n + (1 << 16) - 1) >> 16;
#pragma omp parallel for schedule(static)
    for (long b = 0; b < nb; b++) {
        long i0 = b << 16, i1 = i0 + (1 << 16) < n ? i0 + (1 << 16) : n;
        memset(m->grads + i0, 0, (size_t)(i1 - i0) * sizeof(float));
    }
    m->grads_zero_pending = 0;
}

th_status th_gpt2_backward(th_gpt2 *m, float loss_scale) {
    if (!m->backward_ready)
        return th_fail(TH_ERR_STATE, "backward: needs a forward with targets first (once per forward)");
    if (!m->grads) {
        th_status st = th_gpt2_zero_grad(m);
        if (st != TH_OK) return st;
    }
    m->backward_ready = 0;
    m->forward_fresh = 0;
    if (m->n_counted == 0) return TH_OK; // every target ignored: the loss has no gradient
    float dscale = loss_scale / (float)m->n_counted;
    th_crossentropy_backward_inplace(m->a.logits, m->a.lse, m->targets, m->B * m->T, m->cfg.vocab_size, dscale);
    gpt2_backward_from_dlogits(m, m->a.logits, NULL);
    return TH_OK;
}

/* Gradients that the backward's first contribution writes rather than adds (set_dw): the
 * weight matrices and biases of every linear layer, and wte (the lm_head's dW comes first).
 * The others are zeroed before the backward when a zeroing is pending. */
static int written_by_first_gemm(int i) {
    return i == TH_P_WTE || i == TH_P_QKVW || i == TH_P_QKVB || i == TH_P_ATTPROJW || i == TH_P_ATTPROJB ||
           i == TH_P_FCW || i == TH_P_FCB || i == TH_P_FCPROJW || i == TH_P_FCPROJB;
}

void gpt2_backward_from_dlogits(th_gpt2 *m, const float *dlogits, const float *dhidden) {
    const th_gpt2_config *cfg = &m->cfg;
    int B = m->B, T = m->T, BT = B * T;
    int L = cfg->num_layers, C = cfg->channels, NH = cfg->num_heads, V = cfg->vocab_size;
    gpt2_tensors *p = &m->p, *g = &m->g;
    gpt2_acts *a = &m->a;
    gpt2_grad_scratch *s = &m->s;
    size_t btc = (size_t)BT * C;
    const int SD = TH_MM_SET_DINP;
    // a pending zeroing: the linear layers' dW and dbias are written by their one GEMM each
    int sw = 0;
    if (m->grads_zero_pending) {
        for (int i = 0; i < TH_P_NUM; i++) {
            if (written_by_first_gemm(i)) continue;
            th_tensor_info info;
            th_gpt2_tensor_info(cfg, i, &info);
            memset(g->t[i], 0, info.count * sizeof(float));
        }
        m->grads_zero_pending = 0;
        sw = TH_MM_SET_DW;
    }

    // the input gradients of every matmul are scratch, written by their GEMM (set_dinp)
    if (dhidden) {
        memcpy(s->dbtc, dhidden, btc * sizeof(float));
        mm_backward(m, s->dbtc, g->t[TH_P_WTE], NULL, dlogits, a->lnf, p->t[TH_P_WTE], BT, V, C, sw);
    } else {
        mm_backward(m, s->dbtc, g->t[TH_P_WTE], NULL, dlogits, a->lnf, p->t[TH_P_WTE], BT, V, C, sw | SD);
    }
    memset(s->dresidual, 0, btc * sizeof(float));
    const float *last = a->residual3 + (size_t)(L - 1) * btc;
    th_layernorm_backward(s->dresidual, g->t[TH_P_LNFW], g->t[TH_P_LNFB], s->dbtc, last, p->t[TH_P_LNFW],
                          a->lnf_mean, a->lnf_rstd, BT, C);

    for (int l = L - 1; l >= 0; l--) {
        const float *residual = l == 0 ? a->encoded : a->residual3 + (size_t)(l - 1) * btc;
        size_t lc = (size_t)l * C, ltc = (size_t)l * btc;
        const float *ln1 = a->ln1 + ltc, *qkv = a->qkv + 3 * ltc, *atty = a->atty + ltc;
        const float *att = a->att + (size_t)l * B * NH * T * T;
        const float *residual2 = a->residual2 + ltc, *ln2 = a->ln2 + ltc;
        const float *fch = a->fch + 4 * ltc, *fch_gelu = a->fch_gelu + 4 * ltc;
        const float *ln1_mean = a->ln1_mean + (size_t)l * BT, *ln1_rstd = a->ln1_rstd + (size_t)l * BT;
        const float *ln2_mean = a->ln2_mean + (size_t)l * BT, *ln2_rstd = a->ln2_rstd + (size_t)l * BT;

        // dresidual holds d(residual3): it flows unchanged into residual2 and into c_proj
        mm_backward(m, s->dfch, g->t[TH_P_FCPROJW] + 4 * lc * C, g->t[TH_P_FCPROJB] + lc, s->dresidual,
                    fch_gelu, p->t[TH_P_FCPROJW] + 4 * lc * C, BT, C, 4 * C, sw | SD);
        th_gelu_backward_inplace(s->dfch, fch, BT * 4 * C);
        mm_backward(m, s->dbtc, g->t[TH_P_FCW] + 4 * lc * C, g->t[TH_P_FCB] + 4 * lc, s->dfch, ln2,
                    p->t[TH_P_FCW] + 4 * lc * C, BT, 4 * C, C, sw | SD);
        th_layernorm_backward(s->dresidual, g->t[TH_P_LN2W] + lc, g->t[TH_P_LN2B] + lc, s->dbtc, residual2,
                              p->t[TH_P_LN2W] + lc, ln2_mean, ln2_rstd, BT, C);
        // dresidual now holds d(residual2)
        mm_backward(m, s->dbtc, g->t[TH_P_ATTPROJW] + lc * C, g->t[TH_P_ATTPROJB] + lc, s->dresidual, atty,
                    p->t[TH_P_ATTPROJW] + lc * C, BT, C, C, sw | SD);
        memset(s->dqkv, 0, 3 * btc * sizeof(float));
        th_attention_backward(s->dqkv, s->datt, s->dbtc, qkv, att, B, T, C, NH);
        mm_backward(m, s->dbtc, g->t[TH_P_QKVW] + 3 * lc * C, g->t[TH_P_QKVB] + 3 * lc, s->dqkv, ln1,
                    p->t[TH_P_QKVW] + 3 * lc * C, BT, 3 * C, C, sw | SD);
        th_layernorm_backward(s->dresidual, g->t[TH_P_LN1W] + lc, g->t[TH_P_LN1B] + lc, s->dbtc, residual,
                              p->t[TH_P_LN1W] + lc, ln1_mean, ln1_rstd, BT, C);
        // dresidual now holds d(residual entering layer l)
    }
    th_encoder_backward(g->t[TH_P_WTE], g->t[TH_P_WPE], s->dresidual, m->inputs, B, T, C);
}

/* Σ g² over [i0, i0 + n) in double, one serial sum in index order (the reference order). */
static double sumsq_serial(const float *g, size_t n) {
    double acc = 0.0;
    for (size_t i = 0; i < n; i++) acc += (double)g[i] * g[i];
    return acc;
}

/* The serial sums of 8 whole chunks at once, each chunk's own sum in its own index order (the
 * same bits as sumsq_serial on each): lane k of the two 4-double accumulators is chunk k, fed
 * by a 4×4 transpose of 4 floats from each chunk. 8 independent chains hide the add latency
 * that makes the serial loop latency-bound. Multiply then add (no FMA), as the serial loop. */
#if defined(__AVX2__)
static void sumsq_8chunks(const float *g, size_t chunk, double out[8]) {
    __m256d acc[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
    for (size_t i = 0; i < chunk; i += 4) {
        for (int h = 0; h < 2; h++) {
            __m256d r[4];
            for (int k = 0; k < 4; k++) {
                __m256d x = _mm256_cvtps_pd(_mm_loadu_ps(g + (size_t)(4 * h + k) * chunk + i));
                r[k] = _mm256_mul_pd(x, x); // r[k] = chunk 4h+k, elements i..i+3
            }
            __m256d t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
            __m256d t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
            // column e of the 4×4 (element i+e of each chunk), lanes in chunk order
            __m256d e0 = _mm256_permute2f128_pd(t0, t2, 0x20), e1 = _mm256_permute2f128_pd(t1, t3, 0x20);
            __m256d e2 = _mm256_permute2f128_pd(t0, t2, 0x31), e3 = _mm256_permute2f128_pd(t1, t3, 0x31);
            acc[h] = _mm256_add_pd(acc[h], e0);
            acc[h] = _mm256_add_pd(acc[h], e1);
            acc[h] = _mm256_add_pd(acc[h], e2);
            acc[h] = _mm256_add_pd(acc[h], e3);
        }
    }
    _mm256_storeu_pd(out, acc[0]);
    _mm256_storeu_pd(out + 4, acc[1]);
}
#endif

double th_gpt2_grad_norm(const th_gpt2 *m) {
    if (!m->grads || m->grads_zero_pending) return 0.0;
    // fixed-size chunks, each summed serially, the chunk sums added in order: the same result
    // for any thread count (and for the 8-chunk vector path, which keeps each chunk's order)
    enum { CHUNK = 1 << 16, GROUP = 8 };
    size_t n = m->num_params, nchunks = (n + CHUNK - 1) / CHUNK, nfull = n / CHUNK;
    const float *g = m->grads;
    double total = 0.0;
    for (size_t c0 = 0; c0 < nchunks; c0 += 256) {
        double part[256];
        size_t c1 = c0 + 256 < nchunks ? c0 + 256 : nchunks;
        long ngroups = (long)((c1 - c0 + GROUP - 1) / GROUP);
#pragma omp parallel for schedule(static)
        for (long gi = 0; gi < ngroups; gi++) {
            size_t c = c0 + (size_t)gi * GROUP;
#if defined(__AVX2__)
            if (c + GROUP <= nfull) {
                sumsq_8chunks(g + c * CHUNK, CHUNK, part + (c - c0));
                continue;
            }
#endif
            for (size_t cc = c; cc < c + GROUP && cc < c1; cc++) {
                size_t i0 = cc * CHUNK, i1 = i0 + CHUNK < n ? i0 + CHUNK : n;
                part[cc - c0] = sumsq_serial(g + i0, i1 - i0);
            }
        }
        for (size_t c = c0; c < c1; c++) total += part[c - c0];
    }
    return sqrt(total);
}
