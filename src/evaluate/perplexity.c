/* perplexity.c: perplexity and bits per byte of a text by the fixed recipe of evaluate.h,
 * and the checks that tell a faulty inference path from a poor model. */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "thermo/evaluate.h"

/* ---------------------------------------------------------------------------------
 * perplexity */

#define PACKED_CHUNK 128 /* positions per prefill call on a packed model: bounds the logits buffer */

/* Summed NLL of targets[0..T-1] after inputs[0..T-1] on a model packed for low-precision
 * inference (its training forward is gone): prefills in chunks through one KV cache. */
static th_status packed_window_nll(th_gpt2 *m, const int *inputs, const int *targets, int T, double *nll) {
    int V = th_gpt2_get_config(m)->vocab_size;
    th_gpt2_kv *kv = NULL;
    float *logits = th_alloc(sizeof(float) * (size_t)PACKED_CHUNK * (size_t)V);
    th_status st = logits ? th_gpt2_kv_create(m, T, &kv) : th_fail(TH_ERR_NOMEM, "perplexity: out of memory");
    double sum = 0;
    for (int at = 0; st == TH_OK && at < T; at += PACKED_CHUNK) {
        int c = T - at < PACKED_CHUNK ? T - at : PACKED_CHUNK;
        if ((st = th_gpt2_infer(m, kv, inputs + at, c, logits, 1)) != TH_OK) break;
        for (int t = 0; t < c; t++) {
            const float *z = logits + (size_t)t * V;
            double mx = z[0], e = 0;
            for (int v = 1; v < V; v++) mx = z[v] > mx ? z[v] : mx;
            for (int v = 0; v < V; v++) e += exp((double)z[v] - mx);
            sum += mx + log(e) - (double)z[targets[at + t]];
        }
    }
    *nll = sum;
    th_gpt2_kv_free(kv);
    th_free(logits);
    return st;
}

th_status th_eval_perplexity_ids(th_gpt2 *m, const int *ids, size_t n, int ctx, size_t n_bytes,
                                 const th_eval_units *units, th_ppl_result *out) {
    const th_gpt2_config *cfg = th_gpt2_get_config(m);
    if (ctx == 0) ctx = cfg->max_seq_len;
    if (ctx < 2 || ctx > cfg->max_seq_len)
        return th_fail(TH_ERR_INVALID, "context %d must be in [2, %d] (the model's context)", ctx, cfg->max_seq_len);
    if (n < 2) return th_fail(TH_ERR_INVALID, "the text is %zu tokens; perplexity needs at least 2", n);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= cfg->vocab_size)
            return th_fail(TH_ERR_INVALID, "token %zu is id %d, outside the model's vocabulary of %d", i, ids[i],
                           cfg->vocab_size);
    th_ppl_result r;
    memset(&r, 0, sizeof r);
    r.tokens = (long)n;
    r.bytes = n_bytes;
    for (size_t start = 0; start < n; start += (size_t)ctx) {
        size_t len = n - start < (size_t)ctx ? n - start : (size_t)ctx;
        if (len < 2) break; // a last window of one token predicts nothing
        int T = (int)len - 1;
        float loss;
        double packed_nll = 0;
        int packed = th_gpt2_precision(m, NULL) != TH_DTYPE_F32;
        if (units && units->begin) units->begin(units->user);
        // inputs window[0..len-2], targets window[1..len-1]: the same array shifted by one
        th_status st = packed ? packed_window_nll(m, ids + start, ids + start + 1, T, &packed_nll)
                              : th_gpt2_forward(m, ids + start, ids + start + 1, 1, T, &loss);
        th_status marked = units && units->end ? units->end(units->user) : TH_OK;
        if (st != TH_OK) return st;
        if (marked != TH_OK) return marked;
        if (packed) {
            r.nll_sum += packed_nll;
        } else {
            const float *losses = th_gpt2_losses(m); // (1, T)
            for (int t = 0; t < T; t++) r.nll_sum += losses[t];
        }
        r.predicted += T;
        r.windows++;
    }
    r.mean_nll = r.nll_sum / (double)r.predicted;
    r.perplexity = exp(r.mean_nll);
    r.bits_per_byte = n_bytes > 0 ? r.nll_sum / log(2.0) / (double)n_bytes : NAN;
    *out = r;
    return TH_OK;
}

th_status th_eval_perplexity(th_gpt2 *m, const th_tokenizer *tok, const char *text, size_t len, int ctx,
                             const th_eval_units *units, th_ppl_result *out) {
    int *ids = NULL;
    size_t n = 0;
    th_status st = th_tokenizer_encode(tok, text, len, 0, &ids, &n);
    if (st != TH_OK) return st;
    st = th_eval_perplexity_ids(m, ids, n, ctx, len, units, out);
    th_free(ids);
    return st;
}

/* ---------------------------------------------------------------------------------
 * faulty-inference checks */

th_status th_eval_kv_check(th_gpt2 *m, const int *ids, int n, double *max_abs_diff, double *max_abs_logit) {
    const th_gpt2_config *cfg = th_gpt2_get_config(m);
    if (n < 1 || n > cfg->max_seq_len)
        return th_fail(TH_ERR_INVALID, "KV check: %d tokens, must be in [1, %d]", n, cfg->max_seq_len);
    size_t V = (size_t)cfg->vocab_size;
    float *step = th_alloc(sizeof(float) * V);
    float *full = th_alloc(sizeof(float) * V * (size_t)n); // (1, n, V)
    th_gpt2_kv *kv = NULL;
    th_status st = step && full ? th_gpt2_kv_create(m, n, &kv) : th_fail(TH_ERR_NOMEM, "KV check: out of memory");
    if (st != TH_OK) goto done;
    if (th_gpt2_precision(m, NULL) != TH_DTYPE_F32) {
        // packed for low-precision inference (no training forward): the prefill's logits of
        // every position against the decode steps', two different kernel paths
        st = th_gpt2_infer(m, kv, ids, n, full, 1);
        th_gpt2_kv_reset(kv);
        if (st != TH_OK) goto done;
    } else {
        st = th_gpt2_forward(m, ids, NULL, 1, n, NULL);
        if (st != TH_OK) goto done;
        // a copy: the incremental path may share buffers with the training forward
        memcpy(full, th_gpt2_logits(m), sizeof(float) * V * (size_t)n);
    }
    double diff = 0, ref = 0;
    for (int t = 0; t < n && st == TH_OK; t++) {
        st = th_gpt2_infer(m, kv, ids + t, 1, step, 0);
        for (size_t v = 0; v < V && st == TH_OK; v++) {
            double e = fabs((double)step[v] - (double)full[(size_t)t * V + v]);
            if (!(e <= diff)) diff = e; // NaN sticks
            if (fabs((double)full[(size_t)t * V + v]) > ref) ref = fabs((double)full[(size_t)t * V + v]);
        }
    }
    if (st == TH_OK) {
        *max_abs_diff = diff;
        *max_abs_logit = ref;
    }
done:
    th_gpt2_kv_free(kv);
    th_free(full);
    th_free(step);
    return st;
}

th_status th_eval_tokenizer_roundtrip(const th_tokenizer *tok, const char *text, size_t len, int *ok,
                                      size_t *first_diff) {
    int *ids = NULL;
    size_t n = 0, back_len = 0;
    char *back = NULL;
    th_status st = th_tokenizer_encode(tok, text, len, 0, &ids, &n);
    if (st == TH_OK) st = th_tokenizer_decode(tok, ids, n, &back, &back_len);
    if (st == TH_OK) {
        size_t k = 0;
        while (k < len && k < back_len && text[k] == back[k]) k++;
        *ok = k == len && back_len == len;
        *first_diff = k;
    }
    th_free(back);
    th_free(ids);
    return st;
}

double th_eval_kv_tolerance(double max_abs_logit) {
    return TH_EVAL_KV_TOL_REL * (max_abs_logit > 1 ? max_abs_logit : 1);
}

double th_eval_kv_tolerance_for(double max_abs_logit, th_dtype dtype) {
    double rel = dtype == TH_DTYPE_Q8 ? TH_EVAL_KV_TOL_REL_Q8 : TH_EVAL_KV_TOL_REL;
    return rel * (max_abs_logit > 1 ? max_abs_logit : 1);
}

int th_eval_loss_plausible(double loss_nats, double recorded_nats) {
    if (isnan(recorded_nats)) return 1;
    return loss_nats <= TH_EVAL_LOSS_RATIO * recorded_nats + TH_EVAL_LOSS_MARGIN_NATS;
}
