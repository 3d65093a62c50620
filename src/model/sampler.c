/* sampler.c: picks the next token from logits: greedy, or temperature with optional top-k
 * and top-p (nucleus) filtering, driven by a seeded th_rng so a seed fixes the text. */
#include <math.h>
#include <stdlib.h>

#include "thermo/model.h"

typedef struct {
    float prob;
    int id;
} candidate;

struct th_sampler {
    int vocab_size;
    th_sampler_config cfg;
    th_rng rng;
    candidate *cand; // (vocab_size)
};

th_status th_sampler_create(int vocab_size, const th_sampler_config *cfg, uint64_t seed,
                            th_sampler **out) {
    *out = NULL;
    if (vocab_size <= 0) return th_fail(TH_ERR_INVALID, "sampler: vocab size %d must be positive", vocab_size);
    if (!(cfg->temperature >= 0.0f) || !isfinite(cfg->temperature))
        return th_fail(TH_ERR_INVALID, "sampler: temperature %g must be a finite number >= 0",
                       (double)cfg->temperature);
    if (cfg->top_k < 0) return th_fail(TH_ERR_INVALID, "sampler: top-k %d must be >= 0", cfg->top_k);
    if (!(cfg->top_p > 0.0f && cfg->top_p <= 1.0f))
        return th_fail(TH_ERR_INVALID, "sampler: top-p %g must be in (0, 1]", (double)cfg->top_p);
    th_sampler *s = th_calloc(1, sizeof *s);
    candidate *c = th_alloc((size_t)vocab_size * sizeof(candidate));
    if (!s || !c) {
        th_free(s);
        th_free(c);
        return th_fail(TH_ERR_NOMEM, "sampler: out of memory");
    }
    s->vocab_size = vocab_size;
    s->cfg = *cfg;
    s->cand = c;
    th_rng_seed(&s->rng, seed);
    *out = s;
    return TH_OK;
}

void th_sampler_free(th_sampler *s) {
    if (!s) return;
    th_free(s->cand);
    th_free(s);
}

static int by_prob_desc(const void *a, const void *b) {
    const candidate *x = a, *y = b;
    if (x->prob != y->prob) return x->prob < y->prob ? 1 : -1;
    return x->id - y->id;
}

/* Restores the heap order below node j of a heap of k candidates whose root is the least
 * probable (by_prob_desc order). */
static void sift_down(candidate *c, int k, int j) {
    for (;;) {
        int w = j, l = 2 * j + 1, r = l + 1;
        if (l < k && by_prob_desc(&c[l], &c[w]) > 0) w = l;
        if (r < k && by_prob_desc(&c[r], &c[w]) > 0) w = r;
        if (w == j) return;
        candidate t = c[j];
        c[j] = c[w];
        c[w] = t;
        j = w;
    }
}

/* Keeps the k most probable candidates at the front (a min-heap of size k, then sorted). */
static int keep_top_k(candidate *c, int n, int k) {
    if (k >= n) {
        qsort(c, (size_t)n, sizeof *c, by_prob_desc);
        return n;
    }
    for (int i = k / 2 - 1; i >= 0; i--) sift_down(c, k, i);
    for (int i = k; i < n; i++) {
        if (by_prob_desc(&c[i], &c[0]) >= 0) continue;
        c[0] = c[i];
        sift_down(c, k, 0);
    }
    qsort(c, (size_t)k, sizeof *c, by_prob_desc);
    return k;
}

int th_sampler_next(th_sampler *s, const float *logits) {
    int V = s->vocab_size;
    if (s->cfg.temperature == 0.0f) {
        int best = 0;
        for (int i = 1; i < V; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    float maxv = -INFINITY;
    for (int i = 0; i < V; i++) maxv = logits[i] > maxv ? logits[i] : maxv;
    double sum = 0.0;
    float inv_t = 1.0f / s->cfg.temperature;
    for (int i = 0; i < V; i++) {
        float e = expf((logits[i] - maxv) * inv_t);
        s->cand[i].prob = e;
        s->cand[i].id = i;
        sum += e;
    }
    for (int i = 0; i < V; i++) s->cand[i].prob = (float)(s->cand[i].prob / sum);

    int n = V;
    candidate *c = s->cand;
    if (s->cfg.top_k > 0 || s->cfg.top_p < 1.0f) {
        if (s->cfg.top_k == 0) {
            // a token below (1 - p) / (V - 1) can never be inside the nucleus: drop it before sorting
            float cutoff = (1.0f - s->cfg.top_p) / (float)(V > 1 ? V - 1 : 1);
            int kept = 0;
            for (int i = 0; i < V; i++)
                if (c[i].prob >= cutoff) c[kept++] = c[i];
            n = kept;
        }
        n = keep_top_k(c, n, s->cfg.top_k > 0 && s->cfg.top_k < n ? s->cfg.top_k : n);
        if (s->cfg.top_p < 1.0f) {
            double cum = 0.0, total = 0.0;
            for (int i = 0; i < n; i++) total += c[i].prob;
            int keep = n;
            for (int i = 0; i < n; i++) {
                cum += c[i].prob;
                if (cum >= s->cfg.top_p * total) {
                    keep = i + 1;
                    break;
                }
            }
            n = keep;
        }
    }
    double total = 0.0;
    for (int i = 0; i < n; i++) total += c[i].prob;
    double r = th_rng_float(&s->rng) * total, cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += c[i].prob;
        if (r < cum) return c[i].id;
    }
    return c[n - 1].id;
}
