/* lowp_eval.c: the quality gate of low-precision inference (issue 16). A packed model
 * against its f32 original on the same tokens: perplexity ratio, mean KL divergence of the
 * next-token distributions and top-1 agreement, each position scored once in windows of
 * the model's context (every window starts a fresh KV cache). */
#include <math.h>
#include <string.h>

#include "thermo/pipeline.h"

/* log-softmax of one row of V logits into out, in double. */
static void log_softmax(double *out, const float *z, int V) {
    double mx = z[0], s = 0;
    for (int i = 1; i < V; i++) mx = z[i] > mx ? z[i] : mx;
    for (int i = 0; i < V; i++) s += exp((double)z[i] - mx);
    double lse = mx + log(s);
    for (int i = 0; i < V; i++) out[i] = (double)z[i] - lse;
}

static int argmax(const float *z, int V) {
    int b = 0;
    for (int i = 1; i < V; i++) b = z[i] > z[b] ? i : b;
    return b;
}

th_status th_precision_quality(th_gpt2 *ref, th_gpt2 *m, const int *tokens, int n, int window,
                               th_precision_quality_result *out) {
    memset(out, 0, sizeof *out);
    const th_gpt2_config *cfg = th_gpt2_get_config(ref);
    if (memcmp(cfg, th_gpt2_get_config(m), sizeof *cfg) != 0)
        return th_fail(TH_ERR_INVALID, "quality: the two models have different shapes");
    if (n < 2) return th_fail(TH_ERR_INVALID, "quality: %d tokens, need at least 2", n);
    if (window < 2 || window > cfg->max_seq_len) window = cfg->max_seq_len;
    int V = cfg->vocab_size;
    th_gpt2_kv *ka = NULL, *kb = NULL;
    float *la = th_alloc(sizeof(float) * (size_t)window * V), *lb = th_alloc(sizeof(float) * (size_t)window * V);
    double *pa = th_alloc(sizeof(double) * V), *pb = th_alloc(sizeof(double) * V);
    th_status st = TH_OK;
    if (!la || !lb || !pa || !pb) {
        st = th_fail(TH_ERR_NOMEM, "quality: out of memory for %d x %d logits", window, V);
        goto done;
    }
    if ((st = th_gpt2_kv_create(ref, window, &ka)) != TH_OK || (st = th_gpt2_kv_create(m, window, &kb)) != TH_OK)
        goto done;
    double nll_a = 0, nll_b = 0, kl = 0;
    long scored = 0, agree = 0;
    for (int s = 0; s + 1 < n; s += window) {
        int w = n - 1 - s < window ? n - 1 - s : window; /* positions s .. s+w-1 predict s+1 .. s+w */
        th_gpt2_kv_reset(ka);
        th_gpt2_kv_reset(kb);
        if ((st = th_gpt2_infer(ref, ka, tokens + s, w, la, 1)) != TH_OK) goto done;
        if ((st = th_gpt2_infer(m, kb, tokens + s, w, lb, 1)) != TH_OK) goto done;
        for (int i = 0; i < w; i++) {
            const float *za = la + (size_t)i * V, *zb = lb + (size_t)i * V;
            log_softmax(pa, za, V);
            log_softmax(pb, zb, V);
            int next = tokens[s + i + 1];
            nll_a -= pa[next];
            nll_b -= pb[next];
            double k = 0;
            for (int v = 0; v < V; v++) k += exp(pa[v]) * (pa[v] - pb[v]);
            kl += k;
            agree += argmax(za, V) == argmax(zb, V);
            scored++;
        }
    }
    out->tokens = scored;
    out->ppl_f32 = exp(nll_a / scored);
    out->ppl = exp(nll_b / scored);
    out->ppl_ratio = out->ppl / out->ppl_f32;
    out->mean_kl = kl / scored;
    out->top1_agreement = (double)agree / scored;
done:
    th_free(pb);
    th_free(pa);
    th_free(lb);
    th_free(la);
    th_gpt2_kv_free(kb);
    th_gpt2_kv_free(ka);
    return st;
}
