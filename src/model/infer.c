/* infer.c: KV-cache inference for one sequence. A call runs n new tokens through the model
 * (a prefill when n > 1, a decode step when n = 1), attending over the cached keys and
 * values of earlier positions, and appends its own. Same math as the training forward,
 * with buffers sized for n rows instead of (B, T). The cache is head-major, in f32, f16
 * (th_kv_dtype: half the bytes a decode step reads from it at long contexts) or q8_0 blocks
 * (34 bytes per 32 values: 53 % of f16's). Prefill, decode and the batched decode all
 * attend through gpt2_kv_attend, so the three read a cache the same way. */
#include <math.h>
#include <string.h>

#include "model/gpt2_internal.h"
#include "model/kernels.h"
#include "model/compute.h"
#include "model/lowp.h"

#ifdef _OPENMP
#include <omp.h>
#endif

struct th_gpt2_kv {
    th_gpt2_config cfg;
    int capacity, len;
    size_t bytes;        // of k and v together
    th_kv_dtype dtype;   // TH_KV_F32, TH_KV_F16 or TH_KV_Q8
    void *k, *v;         // (L, NH, capacity, hs) each, floats, halves or hs / 32 q8_0 blocks
    // scratch for up to `rows` new tokens
    int rows;
    float *block;
    // x, ln, atty (rows, C); qkv (rows, 3C) and fch (rows, 4C) share one block, as do ln and
    // proj: each pair's lifetimes in a layer do not overlap
    float *x, *ln, *qkv, *atty, *proj, *fch;
    float *scores;                           // (threads, capacity)
    int score_threads;
    // packed weights (lowp.c): dequantized panels for a prefill, the q8 activation row
    float *lp_scratch;
    size_t lp_floats;
    lowp_q8_block *xq;
};

const char *const th_kv_dtype_names[] = {"auto", "f32", "f16", "q8", NULL};

const char *th_kv_dtype_name(th_kv_dtype d) {
    return d >= TH_KV_AUTO && d <= TH_KV_Q8 ? th_kv_dtype_names[d] : "?";
}

th_status th_kv_dtype_parse(const char *s, th_kv_dtype *out) {
    for (int i = 0; th_kv_dtype_names[i]; i++)
        if (s && strcmp(s, th_kv_dtype_names[i]) == 0) {
            *out = (th_kv_dtype)i;
            return TH_OK;
        }
    return th_fail(TH_ERR_INVALID, "KV dtype '%s' is not one of auto, f32, f16, q8", s ? s : "(null)");
}

void th_gpt2_set_kv_dtype(th_gpt2 *m, th_kv_dtype d) {
    m->kv_dtype = d == TH_KV_F32 || d == TH_KV_F16 || d == TH_KV_Q8 ? d : TH_KV_AUTO;
}

/* TH_KV_AUTO: f32 for f32 weights (the oracle), f16 for bf16 and f16, q8 for q8 weights
 * where the head size is whole q8_0 blocks, else f16 (see th_kv_dtype for the figures). */
th_kv_dtype th_gpt2_kv_dtype(const th_gpt2 *m) {
    if (m->kv_dtype != TH_KV_AUTO) return m->kv_dtype;
    th_dtype w = th_gpt2_precision(m, NULL);
    int hs = m->cfg.channels / m->cfg.num_heads;
    if (w == TH_DTYPE_F32) return TH_KV_F32;
    return w == TH_DTYPE_Q8 && hs % LOWP_QK == 0 && hs <= TH_KV_TILE_FLOATS ? TH_KV_Q8 : TH_KV_F16;
}

th_kv_dtype th_gpt2_kv_cache_dtype(const th_gpt2_kv *kv) { return kv->dtype; }

size_t th_gpt2_kv_bytes(const th_gpt2_kv *kv) { return kv->bytes; }

double th_kv_dtype_bytes(th_kv_dtype d) {
    return d == TH_KV_Q8 ? (double)sizeof(lowp_q8_block) / LOWP_QK : d == TH_KV_F16 ? 2.0 : 4.0;
}

const char *th_kv_kernel(th_kv_dtype d) {
    return d == TH_KV_Q8 ? th_q8_kv_kernel() : d == TH_KV_F16 ? th_f16_kernel() : "f32";
}

th_status th_gpt2_kv_create(const th_gpt2 *m, int capacity, th_gpt2_kv **out) {
    *out = NULL;
    const th_gpt2_config *cfg = &m->cfg;
    if (capacity <= 0 || capacity > cfg->max_seq_len)
        return th_fail(TH_ERR_INVALID, "kv cache: capacity %d must be in [1, %d] (the model's context)",
                       capacity, cfg->max_seq_len);
    th_kv_dtype dt = th_gpt2_kv_dtype(m);
    int hs = cfg->channels / cfg->num_heads;
    if ((dt == TH_KV_F16 || dt == TH_KV_Q8) && hs > TH_KV_TILE_FLOATS)
        return th_fail(TH_ERR_INVALID, "kv cache: an %s cache needs a head size <= %d, the model's is %d",
                       th_kv_dtype_name(dt), TH_KV_TILE_FLOATS, hs);
    if (dt == TH_KV_Q8 && hs % LOWP_QK != 0)
        return th_fail(TH_ERR_INVALID,
                       "kv cache: a q8 cache needs a head size that is a multiple of %d (whole q8_0 blocks), the "
                       "model's is %d (channels %d / num_heads %d); use --kv-dtype f16 or f32",
                       LOWP_QK, hs, cfg->channels, cfg->num_heads);
    th_gpt2_kv *kv = th_calloc(1, sizeof *kv);
    if (!kv) return th_fail(TH_ERR_NOMEM, "kv cache: out of memory");
    kv->cfg = *cfg;
    kv->capacity = capacity;
    kv->dtype = dt;
    size_t n = (size_t)cfg->num_layers * capacity * cfg->channels;
    size_t bytes = dt == TH_KV_Q8 ? n / LOWP_QK * sizeof(lowp_q8_block) : n * (dt == TH_KV_F16 ? 2 : 4);
    kv->k = th_alloc(bytes);
    kv->v = th_alloc(bytes);
    if (!kv->k || !kv->v) {
        th_gpt2_kv_free(kv);
        return th_fail(TH_ERR_NOMEM, "kv cache: out of memory for %d positions (%.1f MB)", capacity,
                       2.0 * bytes / 1e6);
    }
    kv->bytes = 2 * bytes;
    *out = kv;
    return TH_OK;
}

void th_gpt2_kv_free(th_gpt2_kv *kv) {
    if (!kv) return;
    th_free(kv->block);
    th_free(kv->lp_scratch);
    th_free(kv->xq);
    th_free(kv->scores);
    th_free(kv->v);
    th_free(kv->k);
    th_free(kv);
}

/* Element offset of position pos of head h of layer l (a q8 cache's block is offset / 32). */
static size_t kv_offset(const th_gpt2_kv *kv, int l, int h, int pos) {
    int hs = kv->cfg.channels / kv->cfg.num_heads;
    return (((size_t)l * kv->cfg.num_heads + h) * kv->capacity + pos) * hs;
}

void gpt2_kv_store(th_gpt2_kv *kv, int l, int pos, const float *k, const float *v) {
    int NH = kv->cfg.num_heads, hs = kv->cfg.channels / NH;
    for (int h = 0; h < NH; h++) {
        size_t o = kv_offset(kv, l, h, pos);
        if (kv->dtype == TH_KV_F16) {
            th_f16_narrow((uint16_t *)kv->k + o, k + h * hs, hs);
            th_f16_narrow((uint16_t *)kv->v + o, v + h * hs, hs);
        } else if (kv->dtype == TH_KV_Q8) {
            th_q8_kv_quantize((lowp_q8_block *)kv->k + o / LOWP_QK, k + h * hs, hs);
            th_q8_kv_quantize((lowp_q8_block *)kv->v + o / LOWP_QK, v + h * hs, hs);
        } else {
            memcpy((float *)kv->k + o, k + h * hs, sizeof(float) * hs);
            memcpy((float *)kv->v + o, v + h * hs, sizeof(float) * hs);
        }
    }
}

void gpt2_kv_attend(const th_gpt2_kv *kv, int l, int h, float *out, float *att, const float *q, int n_keys,
                    float scale) {
    int hs = kv->cfg.channels / kv->cfg.num_heads;
    size_t o = kv_offset(kv, l, h, 0);
    if (kv->dtype == TH_KV_Q8)
        th_attention_row_q8(out, att, q, (const lowp_q8_block *)kv->k + o / LOWP_QK,
                            (const lowp_q8_block *)kv->v + o / LOWP_QK, n_keys, hs, scale);
    else if (kv->dtype == TH_KV_F16)
        th_attention_row_f16(out, att, q, (const uint16_t *)kv->k + o, (const uint16_t *)kv->v + o, n_keys, hs,
                             scale);
    else
        th_attention_row(out, att, q, (const float *)kv->k + o, (const float *)kv->v + o, n_keys, (size_t)hs, hs,
                         scale);
}

void gpt2_kv_head(const th_gpt2_kv *kv, int l, int h, const void **k, const void **v) {
    size_t o = kv_offset(kv, l, h, 0);
    size_t bytes = kv->dtype == TH_KV_Q8 ? o / LOWP_QK * sizeof(lowp_q8_block) : o * (kv->dtype == TH_KV_F16 ? 2 : 4);
    *k = (const char *)kv->k + bytes;
    *v = (const char *)kv->v + bytes;
}

void th_gpt2_kv_reset(th_gpt2_kv *kv) { kv->len = 0; }
int th_gpt2_kv_len(const th_gpt2_kv *kv) { return kv->len; }

static th_status ensure_scratch(th_gpt2_kv *kv, int n) {
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    if (threads > kv->score_threads) {
        float *s = th_alloc((size_t)threads * kv->capacity * sizeof(float));
        if (!s) return th_fail(TH_ERR_NOMEM, "kv cache: out of memory for attention scores");
        th_free(kv->scores);
        kv->scores = s;
        kv->score_threads = threads;
    }
    if (n <= kv->rows) return TH_OK;
    size_t C = kv->cfg.channels;
    size_t per_row = C + C + C + 4 * C;
    float *b = th_alloc((size_t)n * per_row * sizeof(float));
    if (!b) return th_fail(TH_ERR_NOMEM, "kv cache: out of memory for %d rows of scratch", n);
    th_free(kv->block);
    kv->block = b;
    kv->rows = n;
    kv->x = b;
    kv->ln = kv->x + n * C;
    kv->atty = kv->ln + n * C;
    kv->qkv = kv->atty + n * C;
    kv->fch = kv->qkv;
    kv->proj = kv->ln;
    return TH_OK;
}

/* Scratch for the packed weights' kernels (none for f32). */
static th_status ensure_lowp_scratch(th_gpt2_kv *kv, int n) {
    int C = kv->cfg.channels;
    if (!kv->xq) {
        kv->xq = th_alloc((size_t)(4 * C / LOWP_QK + 1) * sizeof(lowp_q8_block));
        if (!kv->xq) return th_fail(TH_ERR_NOMEM, "kv cache: out of memory for the q8 activation row");
    }
    size_t need = lowp_mm_scratch_floats(n, 4 * C);
    if (need <= kv->lp_floats) return TH_OK;
    float *s = th_alloc(need * sizeof(float));
    if (!s) return th_fail(TH_ERR_NOMEM, "kv cache: out of memory for %d rows of dequantized panels", n);
    th_free(kv->lp_scratch);
    kv->lp_scratch = s;
    kv->lp_floats = need;
    return TH_OK;
}

/* out (n, N) = inp · Wᵀ + bias for matmul weight `which` (LOWP_*) of layer l: the packed
 * copy when the model has one, else the f32 tensor f32w. */
static void linear(th_gpt2 *m, th_gpt2_kv *kv, int which, int l, float *out, const float *inp, const float *f32w,
                   const float *bias, int n, int N, int K) {
    if (m->lowp && m->lowp->w[which].data)
        lowp_mm(out, inp, &m->lowp->w[which], l * N, bias, n, N, kv->lp_scratch, kv->xq);
    else
        th_mm_forward(out, inp, f32w, bias, n, N, K);
}

/* Attention of n new rows (positions pos0..pos0+n-1) over the cache of layer l, which
 * already holds their keys and values. q rows are strided by 3C inside qkv. Rows and heads
 * are split over the threads; each (row, head) is one thread's, summed in a fixed order. */
static void attention_cached(th_gpt2_kv *kv, int l, float *out, const float *qkv, int n, int pos0) {
    int C = kv->cfg.channels, NH = kv->cfg.num_heads, hs = C / NH, cap = kv->capacity;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(2) schedule(static)
    for (int i = 0; i < n; i++) {
        for (int h = 0; h < NH; h++) {
            int thread = 0;
#ifdef _OPENMP
            thread = omp_get_thread_num();
#endif
            gpt2_kv_attend(kv, l, h, out + (size_t)i * C + h * hs, kv->scores + (size_t)thread * cap,
                           qkv + (size_t)i * 3 * C + h * hs, pos0 + i + 1, scale);
        }
    }
}

/* A decode step's embedding, LayerNorms and residual adds (one row: a few microseconds of
 * work) run on the calling thread alone. In a parallel region each would end at a barrier
 * that waits for every thread of the team, and on a host whose cores are shared, a thread
 * preempted there costs the step a whole time slice: a step had ten such regions a layer,
 * then six (122 in all, then 73), now five with the GELU (4C values, vectorized: about as
 * long as a region's fork and join) here too: 61, f32 and q8 alike (counted by an LD_PRELOAD
 * wrapper of GOMP_parallel over decode_ctx steps: 73 before). Same bits: these kernels
 * split rows and elements over the threads, never a sum. solo_begin returns the thread
 * count to give back to solo_end (0: nothing changed). */
static int solo_begin(int n) {
#ifdef _OPENMP
    int threads = omp_get_max_threads();
    if (n == 1 && threads > 1) {
        omp_set_num_threads(1);
        return threads;
    }
#endif
    (void)n;
    return 0;
}

static void solo_end(int threads) {
#ifdef _OPENMP
    if (threads > 0) omp_set_num_threads(threads);
#endif
    (void)threads;
}

static void layernorm_rows(float *out, const float *inp, const float *w, const float *b, int n, int C, float eps) {
    int solo = solo_begin(n);
    th_layernorm_forward(out, NULL, NULL, inp, w, b, n, C, eps);
    solo_end(solo);
}

static void residual_rows(float *x, const float *add, int n, int C) {
    int solo = solo_begin(n);
    th_residual_forward(x, x, add, n * C);
    solo_end(solo);
}

static void gelu_rows(float *h, int n, int C4) {
    int solo = solo_begin(n);
    th_gelu_forward(h, h, n * C4);
    solo_end(solo);
}

th_status th_gpt2_infer(th_gpt2 *m, th_gpt2_kv *kv, const int *tokens, int n, float *logits,
                        int all_logits) {
    const th_gpt2_config *cfg = &m->cfg;
    if (memcmp(&kv->cfg, cfg, sizeof *cfg) != 0)
        return th_fail(TH_ERR_INVALID, "infer: the KV cache was made for another model shape");
    if (n <= 0) return th_fail(TH_ERR_INVALID, "infer: %d tokens, need at least 1", n);
    if (n > kv->capacity - kv->len)
        return th_fail(TH_ERR_INVALID, "infer: %d more tokens overflow the KV cache (%d of %d used)", n,
                       kv->len, kv->capacity);
    int V = cfg->vocab_size, C = cfg->channels, L = cfg->num_layers;
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= V)
            return th_fail(TH_ERR_INVALID, "infer: token %d at position %d is outside [0, %d)", tokens[i],
                           i, V);
    th_status st = ensure_scratch(kv, n);
    if (st != TH_OK) return st;

    if (m->lowp && (st = ensure_lowp_scratch(kv, n)) != TH_OK) return st;

    gpt2_tensors *p = &m->p;
    int pos0 = kv->len;
    if (m->lowp && m->lowp->w[LOWP_WTE].data) {
        for (int i = 0; i < n; i++) {
            float *o = kv->x + (size_t)i * C;
            const float *pe = p->t[TH_P_WPE] + (size_t)(pos0 + i) * C;
            lowp_dequant_row(o, &m->lowp->w[LOWP_WTE], tokens[i]);
            for (int c = 0; c < C; c++) o[c] += pe[c];
        }
    } else {
        int solo = solo_begin(n);
        th_encoder_forward(kv->x, tokens, p->t[TH_P_WTE], p->t[TH_P_WPE], 1, n, C, pos0);
        solo_end(solo);
    }
    for (int l = 0; l < L; l++) {
        size_t lc = (size_t)l * C;
        layernorm_rows(kv->ln, kv->x, p->t[TH_P_LN1W] + lc, p->t[TH_P_LN1B] + lc, n, C, cfg->ln_eps);
        linear(m, kv, LOWP_QKV, l, kv->qkv, kv->ln, p->t[TH_P_QKVW] + 3 * lc * C, p->t[TH_P_QKVB] + 3 * lc, n,
               3 * C, C);
        for (int i = 0; i < n; i++)
            gpt2_kv_store(kv, l, pos0 + i, kv->qkv + (size_t)i * 3 * C + C, kv->qkv + (size_t)i * 3 * C + 2 * C);
        attention_cached(kv, l, kv->atty, kv->qkv, n, pos0);
        linear(m, kv, LOWP_ATTPROJ, l, kv->proj, kv->atty, p->t[TH_P_ATTPROJW] + lc * C, p->t[TH_P_ATTPROJB] + lc,
               n, C, C);
        residual_rows(kv->x, kv->proj, n, C);
        layernorm_rows(kv->ln, kv->x, p->t[TH_P_LN2W] + lc, p->t[TH_P_LN2B] + lc, n, C, cfg->ln_eps);
        linear(m, kv, LOWP_FC, l, kv->fch, kv->ln, p->t[TH_P_FCW] + 4 * lc * C, p->t[TH_P_FCB] + 4 * lc, n, 4 * C,
               C);
        gelu_rows(kv->fch, n, 4 * C);
        linear(m, kv, LOWP_FCPROJ, l, kv->proj, kv->fch, p->t[TH_P_FCPROJW] + 4 * lc * C, p->t[TH_P_FCPROJB] + lc,
               n, C, 4 * C);
        residual_rows(kv->x, kv->proj, n, C);
    }
    // only the rows whose logits are wanted go through the final norm and the projection
    int first = all_logits ? 0 : n - 1, rows = n - first;
    layernorm_rows(kv->ln, kv->x + (size_t)first * C, p->t[TH_P_LNFW], p->t[TH_P_LNFB], rows, C, cfg->ln_eps);
    linear(m, kv, LOWP_WTE, 0, logits, kv->ln, p->t[TH_P_WTE], NULL, rows, V, C);
    kv->len += n;
    return TH_OK;
}

const th_gpt2_config *th_gpt2_kv_shape(const th_gpt2_kv *kv, int *capacity) {
    *capacity = kv->capacity;
    return &kv->cfg;
}

void th_gpt2_kv_advance(th_gpt2_kv *kv) { kv->len++; }
