/* infer_batch.c: batched decoding for the server. One step runs one new token of each of n
 * sequences (each with its own KV cache and position) through the model in one pass over
 * the weights: every weight row is loaded once and applied to all n rows while it is in
 * cache. Batch invariance is by construction: each output element is bias + Σ_k x[k]·w[k]
 * summed in index order (the naive backend's order) by one thread, with the batch rows in
 * separate vector lanes, and the row-wise layers run row by row; so a row's bits do not
 * depend on which rows share its step, how many there are, or the thread count. */
#include <math.h>
#include <string.h>

#include "model/gpt2_internal.h"
#include "model/kernels.h"
#include "model/lowp.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#define LANES 8 /* batch rows per vector */
#define NT 4    /* weight rows per tile */

typedef float v8 __attribute__((vector_size(LANES * sizeof(float))));

struct th_gpt2_batch {
    th_gpt2_config cfg;
    int max_rows, blocks; /* blocks = ceil(max_rows / LANES) */
    float *block;
    float *x, *ln, *qkv, *atty, *proj, *fch; /* (max_rows, C|3C|4C) */
    v8 *xt;                                   /* (blocks, 4C) transposed inputs of one matmul */
    float *scores;                            /* (threads, max_seq_len) */
    int score_threads;
    lowp_q8_block *xq;                        /* one q8 activation row (packed models) */
};

static int threads_now(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

th_status th_gpt2_batch_create(const th_gpt2 *m, int max_rows, th_gpt2_batch **out) {
    *out = NULL;
    if (max_rows < 1 || max_rows > 4096)
        return th_fail(TH_ERR_INVALID, "batch: max_rows %d must be in [1, 4096]", max_rows);
    th_gpt2_batch *b = th_calloc(1, sizeof *b);
    if (!b) return th_fail(TH_ERR_NOMEM, "batch: out of memory");
    b->cfg = m->cfg;
    b->max_rows = max_rows;
    b->blocks = (max_rows + LANES - 1) / LANES;
    size_t C = (size_t)m->cfg.channels, R = (size_t)max_rows;
    b->block = th_alloc(R * (C + C + 3 * C + C + C + 4 * C) * sizeof(float));
    b->xt = th_alloc((size_t)b->blocks * 4 * C * sizeof(v8));
    b->xq = th_alloc((4 * C / LOWP_QK + 1) * sizeof(lowp_q8_block));
    if (!b->block || !b->xt || !b->xq) {
        th_gpt2_batch_free(b);
        return th_fail(TH_ERR_NOMEM, "batch: out of memory for %d rows of scratch", max_rows);
    }
    b->x = b->block;
    b->ln = b->x + R * C;
    b->qkv = b->ln + R * C;
    b->atty = b->qkv + R * 3 * C;
    b->proj = b->atty + R * C;
    b->fch = b->proj + R * C;
    *out = b;
    return TH_OK;
}

void th_gpt2_batch_free(th_gpt2_batch *b) {
    if (!b) return;
    th_free(b->scores);
    th_free(b->xq);
    th_free(b->xt);
    th_free(b->block);
    th_free(b);
}

/* out (M, N) = inp (M, K) · w (N, K)ᵀ + bias (N), each element summed as the naive kernel
 * does (bias or 0, then + x[k]·w[k] for k = 0..K-1), rows in vector lanes. */
static void mm_rows(th_gpt2_batch *b, float *out, const float *inp, const float *w, const float *bias, int M,
                    int N, int K) {
    int blocks = (M + LANES - 1) / LANES;
    v8 *xt = b->xt;
    for (int blk = 0; blk < blocks; blk++)
        for (int k = 0; k < K; k++) {
            v8 col = {0};
            for (int j = 0; j < LANES; j++) {
                int m = blk * LANES + j;
                col[j] = m < M ? inp[(size_t)m * K + k] : 0.0f;
            }
            xt[(size_t)blk * K + k] = col;
        }
    int tiles = (N + NT - 1) / NT;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < tiles; t++) {
        int n0 = t * NT, nt = N - n0 < NT ? N - n0 : NT;
        for (int blk = 0; blk < blocks; blk++) {
            const v8 *x = xt + (size_t)blk * K;
            v8 acc[NT];
            for (int j = 0; j < NT; j++) {
                float b0 = bias && j < nt ? bias[n0 + j] : 0.0f;
                acc[j] = (v8){b0, b0, b0, b0, b0, b0, b0, b0};
            }
            if (nt == NT) {
                const float *w0 = w + (size_t)n0 * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
                for (int k = 0; k < K; k++) {
                    v8 xk = x[k];
                    acc[0] = acc[0] + xk * w0[k];
                    acc[1] = acc[1] + xk * w1[k];
                    acc[2] = acc[2] + xk * w2[k];
                    acc[3] = acc[3] + xk * w3[k];
                }
            } else {
                for (int j = 0; j < nt; j++) {
                    const float *wr = w + (size_t)(n0 + j) * K;
                    for (int k = 0; k < K; k++) acc[j] = acc[j] + x[k] * wr[k];
                }
            }
            for (int i = 0; i < LANES; i++) {
                int m = blk * LANES + i;
                if (m >= M) break;
                for (int j = 0; j < nt; j++) out[(size_t)m * N + n0 + j] = acc[j][i];
            }
        }
    }
}

/* mm_rows for matmul weight `which` (LOWP_*) of layer l: with packed weights each row is a
 * gemv of its own (every row's sums fixed by K alone, so batch invariance holds), else
 * mm_rows on the f32 tensor f32w. */
static void linear_rows(th_gpt2 *m, th_gpt2_batch *b, int which, int l, float *out, const float *inp,
                        const float *f32w, const float *bias, int M, int N, int K) {
    if (!m->lowp || !m->lowp->w[which].data) {
        mm_rows(b, out, inp, f32w, bias, M, N, K);
        return;
    }
    for (int i = 0; i < M; i++)
        lowp_mm(out + (size_t)i * N, inp + (size_t)i * K, &m->lowp->w[which], l * N, bias, 1, N, NULL, b->xq);
}

th_status th_gpt2_infer_batch(th_gpt2 *m, th_gpt2_batch *b, th_gpt2_kv *const *kvs, const int *tokens, int n,
                              float *logits) {
    const th_gpt2_config *cfg = &m->cfg;
    if (memcmp(&b->cfg, cfg, sizeof *cfg) != 0)
        return th_fail(TH_ERR_INVALID, "infer batch: the batch scratch was made for another model shape");
    if (n < 1 || n > b->max_rows)
        return th_fail(TH_ERR_INVALID, "infer batch: %d rows, must be in [1, %d]", n, b->max_rows);
    int V = cfg->vocab_size, C = cfg->channels, NH = cfg->num_heads, L = cfg->num_layers, hs = C / NH;
    for (int i = 0; i < n; i++) {
        int cap;
        const th_gpt2_config *kc = th_gpt2_kv_shape(kvs[i], &cap);
        if (memcmp(kc, cfg, sizeof *cfg) != 0)
            return th_fail(TH_ERR_INVALID, "infer batch: row %d: the KV cache was made for another model shape", i);
        if (th_gpt2_kv_len(kvs[i]) >= cap)
            return th_fail(TH_ERR_INVALID, "infer batch: row %d: the KV cache is full (%d positions)", i, cap);
        if (tokens[i] < 0 || tokens[i] >= V)
            return th_fail(TH_ERR_INVALID, "infer batch: row %d: token %d is outside [0, %d)", i, tokens[i], V);
        for (int j = 0; j < i; j++)
            if (kvs[j] == kvs[i]) return th_fail(TH_ERR_INVALID, "infer batch: rows %d and %d share a KV cache", j, i);
    }
    int threads = threads_now();
    if (threads > b->score_threads) {
        float *s = th_alloc((size_t)threads * cfg->max_seq_len * sizeof(float));
        if (!s) return th_fail(TH_ERR_NOMEM, "infer batch: out of memory for attention scores");
        th_free(b->scores);
        b->scores = s;
        b->score_threads = threads;
    }

    gpt2_tensors *p = &m->p;
    size_t Cs = (size_t)C;
    for (int i = 0; i < n; i++) {
        if (m->lowp && m->lowp->w[LOWP_WTE].data) {
            const float *pe = p->t[TH_P_WPE] + (size_t)th_gpt2_kv_len(kvs[i]) * C;
            lowp_dequant_row(b->x + i * Cs, &m->lowp->w[LOWP_WTE], tokens[i]);
            for (int c = 0; c < C; c++) b->x[i * Cs + c] += pe[c];
        } else {
            th_encoder_forward(b->x + i * Cs, tokens + i, p->t[TH_P_WTE], p->t[TH_P_WPE], 1, 1, C,
                               th_gpt2_kv_len(kvs[i]));
        }
    }
    float scale = 1.0f / sqrtf((float)hs);
    for (int l = 0; l < L; l++) {
        size_t lc = (size_t)l * C;
        for (int i = 0; i < n; i++)
            th_layernorm_forward(b->ln + i * Cs, NULL, NULL, b->x + i * Cs, p->t[TH_P_LN1W] + lc,
                                 p->t[TH_P_LN1B] + lc, 1, C, cfg->ln_eps);
        linear_rows(m, b, LOWP_QKV, l, b->qkv, b->ln, p->t[TH_P_QKVW] + 3 * lc * C, p->t[TH_P_QKVB] + 3 * lc, n, 3 * C, C);
        for (int i = 0; i < n; i++)
            gpt2_kv_store(kvs[i], l, th_gpt2_kv_len(kvs[i]), b->qkv + i * 3 * Cs + C, b->qkv + i * 3 * Cs + 2 * C);
#pragma omp parallel for collapse(2) schedule(static)
        for (int i = 0; i < n; i++) {
            for (int h = 0; h < NH; h++) {
                int thread = 0;
#ifdef _OPENMP
                thread = omp_get_thread_num();
#endif
                gpt2_kv_attend(kvs[i], l, h, b->atty + i * Cs + h * hs, b->scores + (size_t)thread * cfg->max_seq_len,
                               b->qkv + i * 3 * Cs + h * hs, th_gpt2_kv_len(kvs[i]) + 1, scale);
            }
        }
        linear_rows(m, b, LOWP_ATTPROJ, l, b->proj, b->atty, p->t[TH_P_ATTPROJW] + lc * C, p->t[TH_P_ATTPROJB] + lc, n, C, C);
        for (int i = 0; i < n; i++) {
            th_residual_forward(b->x + i * Cs, b->x + i * Cs, b->proj + i * Cs, C);
            th_layernorm_forward(b->ln + i * Cs, NULL, NULL, b->x + i * Cs, p->t[TH_P_LN2W] + lc,
                                 p->t[TH_P_LN2B] + lc, 1, C, cfg->ln_eps);
        }
        linear_rows(m, b, LOWP_FC, l, b->fch, b->ln, p->t[TH_P_FCW] + 4 * lc * C, p->t[TH_P_FCB] + 4 * lc, n, 4 * C, C);
        for (int i = 0; i < n; i++) th_gelu_forward(b->fch + i * 4 * Cs, b->fch + i * 4 * Cs, 4 * C);
        linear_rows(m, b, LOWP_FCPROJ, l, b->proj, b->fch, p->t[TH_P_FCPROJW] + 4 * lc * C, p->t[TH_P_FCPROJB] + lc, n, C, 4 * C);
        for (int i = 0; i < n; i++) th_residual_forward(b->x + i * Cs, b->x + i * Cs, b->proj + i * Cs, C);
    }
    for (int i = 0; i < n; i++)
        th_layernorm_forward(b->ln + i * Cs, NULL, NULL, b->x + i * Cs, p->t[TH_P_LNFW], p->t[TH_P_LNFB], 1, C,
                             cfg->ln_eps);
    linear_rows(m, b, LOWP_WTE, 0, logits, b->ln, p->t[TH_P_WTE], NULL, n, V, C);
    for (int i = 0; i < n; i++) th_gpt2_kv_advance(kvs[i]);
    return TH_OK;
}
