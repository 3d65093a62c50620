/* evaluate.h: model quality and the eco rating. Perplexity and bits per byte of a held-out
 * text by one fixed recipe, the checks that tell a faulty inference path from a poor model
 * (KV cache against the full forward, tokenizer round trip, loss against a recorded
 * validation loss), and the pure functions that rate models benchmarked together: energy
 * bands (AI Energy Score's stars) and the Pareto front of quality against energy.
 * evaluate sits beside model and text: it knows no pacing and no run; the eco-benchmark
 * that measures energy around these metrics is pipeline's (th_bench_eco). */
#ifndef THERMO_EVALUATE_H
#define THERMO_EVALUATE_H

#include <stddef.h>

#include "thermo/core.h"
#include "thermo/model.h"
#include "thermo/text.h"

/* ---------------------------------------------------------------------------------
 * perplexity
 *
 * The recipe (tests/reference/perplexity_reference.py computes the same in PyTorch):
 *   1. the whole text is tokenized once, flags 0 (no EOT added, "<|endoftext|>" is text);
 *   2. the ids are cut into consecutive, non-overlapping windows of ctx tokens; a shorter
 *      last window is kept if it has at least 2 tokens;
 *   3. in each window every token but the first is predicted from the tokens before it in
 *      that window (inputs window[0..n-2], targets window[1..n-1]);
 *   4. perplexity = exp(total NLL / predicted tokens), in nats;
 *      bits_per_byte = total NLL / ln 2 / bytes of text. */

typedef struct {
    double nll_sum;       /* nats, summed in double over every predicted token */
    long predicted;       /* tokens predicted */
    long tokens;          /* tokens in the text */
    long windows;
    size_t bytes;         /* bytes of text (bits_per_byte's denominator) */
    double mean_nll;      /* nll_sum / predicted */
    double perplexity;
    double bits_per_byte;
} th_ppl_result;

/* Marks around each window's forward, so that a caller can meter and pace the scoring
 * (pipeline makes each window a unit of work of its monitored run) without evaluate knowing
 * about runs. begin is called before the forward, end after it; a status other than TH_OK
 * from end stops the scoring and is returned. Either member may be NULL. */
typedef struct {
    void (*begin)(void *user);
    th_status (*end)(void *user);
    void *user;
} th_eval_units;

/* Scores ids[0..n) by the recipe above with windows of ctx tokens (0: the model's context;
 * at most the model's context). n_bytes is the length of the text the ids came from.
 * `units` may be NULL (no marks). Fails with TH_ERR_INVALID on a bad ctx, an id outside the
 * vocabulary, or fewer than 2 ids; with units->end's status if it stops the scoring; the
 * forward's status otherwise. */
th_status th_eval_perplexity_ids(th_gpt2 *m, const int *ids, size_t n, int ctx, size_t n_bytes,
                                 const th_eval_units *units, th_ppl_result *out);

/* Tokenizes text[0..len) (step 1) and scores it as th_eval_perplexity_ids. */
th_status th_eval_perplexity(th_gpt2 *m, const th_tokenizer *tok, const char *text, size_t len, int ctx,
                             const th_eval_units *units, th_ppl_result *out);

/* ---------------------------------------------------------------------------------
 * faulty-inference checks: a model that fails one is not rated ("not rated: <reason>") */

/* KV-cache equivalence: the logits of ids[0..n) computed one token at a time through the
 * KV cache against one full forward (B = 1, T = n). *max_abs_diff gets the largest
 * difference, *max_abs_logit the largest |logit| of the full forward. Fails with
 * TH_ERR_INVALID if n is not in [1, max_seq_len]. The model's last forward is replaced. On
 * a model packed for low-precision inference (no training forward) the full pass is the
 * KV-cache prefill of all n tokens, checked against the one-token decode steps. */
th_status th_eval_kv_check(th_gpt2 *m, const int *ids, int n, double *max_abs_diff, double *max_abs_logit);

/* The KV-cache check passes when max_abs_diff <= TH_EVAL_KV_TOL_REL x max(1, max_abs_logit):
 * float32 accumulated in a different order over a short prefix stays orders of magnitude
 * below it, a broken cache or a NaN does not. th_eval_kv_tolerance gives the limit. */
#define TH_EVAL_KV_TOL_REL 1e-4
double th_eval_kv_tolerance(double max_abs_logit);
/* The same for a model packed at `dtype` (th_gpt2_precision): bf16 and f16 weights widen
 * exactly to f32 in both paths, so their limit is the f32 one; q8 decode rounds each
 * activation block to int8 (a step of 1/127 of the block's largest value) while the prefill
 * multiplies f32 activations, so its limit is TH_EVAL_KV_TOL_REL_Q8 x max(1, max_abs_logit). */
#define TH_EVAL_KV_TOL_REL_Q8 1e-2
double th_eval_kv_tolerance_for(double max_abs_logit, th_dtype dtype);

/* Tokenizer round trip: decode(encode(text[0..len))) == text. *ok gets 1 or 0; when 0,
 * *first_diff the first byte offset that differs (len if only the length does). */
th_status th_eval_tokenizer_roundtrip(const th_tokenizer *tok, const char *text, size_t len, int *ok,
                                      size_t *first_diff);

/* The loss check: a model whose mean loss on the data is above
 * TH_EVAL_LOSS_RATIO x recorded + TH_EVAL_LOSS_MARGIN_NATS is broken, not poor (held-out
 * text of another domain raises the loss by a fraction, a wrong weight layout or tokenizer
 * sends it towards ln V). Returns 1 when loss_nats passes, 0 when it fails (a NaN loss
 * fails), and 1 when recorded_nats is NaN (nothing to check against). */
#define TH_EVAL_LOSS_RATIO 1.5
#define TH_EVAL_LOSS_MARGIN_NATS 1.0
int th_eval_loss_plausible(double loss_nats, double recorded_nats);

/* ---------------------------------------------------------------------------------
 * rating (pure functions) */

/* AI Energy Score's bands, applied to the models benchmarked together: the range
 * [min, max] of energy per query among the eligible models is cut into five equal bands;
 * the lowest band gets 5 stars, the highest 1 star:
 *     stars = 5 - floor(5 (e - min) / (max - min)), clamped to [1, 5]
 * so the most frugal model always has 5 stars and the most costly 1 (when they differ).
 * All equal (or one model), or a range narrower than TH_EVAL_STARS_MIN_SPREAD of the minimum
 * (the run-to-run spread measured for this benchmark: two identical models differ by up to
 * ~9 %): 5 stars each. stars[i] = 0 for a model not eligible (failed a
 * check, or a non-finite or negative energy). Fails with TH_ERR_INVALID on n < 0 or NULL
 * arrays with n > 0. */
#define TH_EVAL_STARS_MIN_SPREAD 0.10
th_status th_eval_energy_stars(const double *energy, const int *eligible, int n, int *stars);

/* The Pareto front of (quality, energy), both lower is better (perplexity, Wh per query):
 * on_front[i] = 1 when no other eligible model is at least as good on both and strictly
 * better on one; 0 for the others and for models not eligible (or with a non-finite
 * figure). Duplicates of a front point are all on the front. */
th_status th_eval_pareto(const double *quality, const double *energy, const int *eligible, int n, int *on_front);

/* ---------------------------------------------------------------------------------
 * rating that weighs quality (pure functions)
 *
 * The rule the eco-benchmark states in its documents:
 *   1. quality is bits per byte of the held-out text (tokenizer-independent); the baseline
 *      is the uniform distribution over the model's vocabulary, whose bits per byte are
 *      predicted tokens x log2 V / bytes (th_eval_uniform_bpb); bits saved = baseline - bpb;
 *   2. only models within a band of the best are rated against each other: comparable when
 *      bpb <= best x (1 + band) (default TH_EVAL_QUALITY_BAND, 10 %); the others are "not
 *      comparable: quality" and get no stars (never rated up for being cheap);
 *   3. stars: th_eval_energy_stars over the comparable models' median energy; then models
 *      whose min-max energy ranges overlap (chained: A overlaps B, B overlaps C) share the
 *      best band among them (th_eval_energy_stars_spread): no split inside the noise;
 *   4. quality per cost = bits saved per byte / Wh per 1,000 queries;
 *   5. between neighbours on the Pareto front (sorted by energy), the marginal energy per
 *      bit per byte gained, and the seed's verdict (§5.8): the costlier neighbour is flagged
 *      when it takes >= k x the energy for a relative bpb gain < g (defaults
 *      TH_EVAL_FLAG_ENERGY_RATIO 3 and TH_EVAL_FLAG_MIN_GAIN 1 %). */

#define TH_EVAL_QUALITY_BAND 0.10
#define TH_EVAL_FLAG_ENERGY_RATIO 3.0
#define TH_EVAL_FLAG_MIN_GAIN 0.01

/* The uniform baseline's bits per byte: predicted x log2(vocab) / bytes; NaN when bytes or
 * predicted is 0 or vocab < 2. */
double th_eval_uniform_bpb(long predicted, size_t bytes, int vocab);

/* comparable[i] = 1 when model i is eligible (NULL: all), its bpb finite and at most
 * best x (1 + band), best the lowest such bpb; 0 otherwise. Fails with TH_ERR_INVALID on
 * n < 0, NULL arrays with n > 0, or a band that is negative or not finite. */
th_status th_eval_quality_comparable(const double *bpb, const int *eligible, int n, double band, int *comparable);

/* Stars as th_eval_energy_stars over energy[] (the medians), then one band for models whose
 * [lo, hi] ranges overlap, chained: every model of such a group gets the most stars any of
 * its members has. tie[i] (may be NULL) = the index of the group's lowest-energy other member
 * when model i shares a group, else -1. lo/hi NaN: the median alone. Fails as
 * th_eval_energy_stars. */
th_status th_eval_energy_stars_spread(const double *energy, const double *lo, const double *hi, const int *eligible,
                                      int n, int *stars, int *tie);

/* The marginal figures between neighbours on the Pareto front (on_front from
 * th_eval_pareto on the same bpb and energy). For each front model i but the cheapest,
 * prev[i] = the front model just below it in energy (lower energy, or equal energy and worse
 * bpb); for the others prev[i] = -1. For i with prev[i] = p:
 *     marginal[i] = (energy[i] - energy[p]) / (bpb[p] - bpb[i])   (energy per bpb gained;
 *                   +inf when it gains nothing)
 *     ratio[i]    = energy[i] / energy[p]  (+inf when energy[p] is 0)
 *     gain[i]     = (bpb[p] - bpb[i]) / bpb[p]
 *     flagged[i]  = ratio[i] >= k and gain[i] < g
 * and NaN / 0 elsewhere. Fails with TH_ERR_INVALID on n < 0, NULL arrays with n > 0, k <= 1
 * or g <= 0 (or either not finite). */
th_status th_eval_front_marginal(const double *bpb, const double *energy, const int *on_front, int n, double k,
                                 double g, int *prev, double *marginal, double *ratio, double *gain, int *flagged);

#endif
