/* bench_eco.c: the eco-benchmark's method (pipeline.h): for each model its faulty-inference
 * checks, then the steady prefill and decode windows inside a monitored run, the footprint
 * of 1,000 queries, and the rating of the models benchmarked together. The quality metrics
 * and the rating rules are evaluate's; this file is the experiment around them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "thermo/pipeline.h"

/* the checks look at the data's first KB (round trip) and first tokens (KV cache) */
#define ECO_ROUNDTRIP_BYTES 1024
#define ECO_KV_CHECK_TOKENS 16

th_bench_eco_opts th_bench_eco_defaults(void) {
    th_bench_eco_opts o;
    memset(&o, 0, sizeof o);
    o.run = th_run_opts_default();
    o.run.hz = 50;
    o.run.governor = "none";
    o.prompts = 4;
    o.decode = 32;
    o.min_s = 1.0;
    o.seed = 1337;
    o.repeats = 5;
    o.quality_band = TH_EVAL_QUALITY_BAND;
    o.flag_energy_ratio = TH_EVAL_FLAG_ENERGY_RATIO;
    o.flag_min_gain = TH_EVAL_FLAG_MIN_GAIN;
    o.precision = "f32";
    return o;
}

/* ---------------------------------------------------------------------------------
 * repeated windows: the median and range of x[0..n) */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static th_bench_eco_spread spread_of(const double *x, int n) {
    th_bench_eco_spread s = {NAN, NAN, NAN, 0};
    double v[TH_BENCH_ECO_MAX_REPEATS];
    int k = 0;
    for (int i = 0; i < n && k < TH_BENCH_ECO_MAX_REPEATS; i++)
        if (isfinite(x[i])) v[k++] = x[i];
    if (k == 0) return s;
    qsort(v, (size_t)k, sizeof v[0], cmp_double);
    s.median = k % 2 ? v[k / 2] : 0.5 * (v[k / 2 - 1] + v[k / 2]);
    s.min = v[0];
    s.max = v[k - 1];
    s.n = k;
    return s;
}

/* ---------------------------------------------------------------------------------
 * the work: units of the run, and the meter read between them */

static void unit_begin(void *run) { th_run_unit_begin(run); }

static th_status unit_end(void *run) {
    return th_run_unit_end(run, NULL) == TH_ERR_INTERRUPTED ? th_fail(TH_ERR_INTERRUPTED, "interrupted") : TH_OK;
}

typedef struct {
    th_run *run;
    double temp_sum;
    long temp_n;
} eco_meter;

static void meter_sample(eco_meter *mt) {
    th_run_figures f;
    th_run_figures_now(mt->run, &f);
    if (!isnan(f.temp_c)) mt->temp_sum += f.temp_c, mt->temp_n++;
}

static double energy_now(th_run *r) {
    th_run_figures f;
    th_run_figures_now(r, &f);
    return f.have_energy ? f.energy.energy_j : NAN;
}

/* The first `want` non-empty lines of the text, tokenized and cut to `cap` tokens; ids[i]
 * are th_alloc'd. Returns how many it found, or -1 (status in *st) if encoding failed. */
static int eco_prompts(const th_tokenizer *tok, const char *text, size_t len, int want, int cap, int **ids,
                       int *n_ids, th_status *st) {
    int n = 0;
    size_t at = 0;
    while (n < want && at < len) {
        size_t end = at;
        while (end < len && text[end] != '\n') end++;
        size_t s = at;
        while (s < end && (text[s] == ' ' || text[s] == '\t' || text[s] == '\r')) s++;
        if (end > s) {
            int *p = NULL;
            size_t k = 0;
            if ((*st = th_tokenizer_encode(tok, text + s, end - s, 0, &p, &k)) != TH_OK) return -1;
            if (k > 0) {
                ids[n] = p;
                n_ids[n] = k > (size_t)cap ? cap : (int)k;
                n++;
            } else {
                th_free(p);
            }
        }
        at = end + 1;
    }
    return n;
}

/* One query: the prompt through the KV cache, then exactly `decode` tokens, each a unit. */
static th_status eco_query(th_gpt2 *m, th_gpt2_kv *kv, th_sampler *s, const int *prompt, int n, int decode,
                           float *logits, eco_meter *mt) {
    th_gpt2_kv_reset(kv);
    th_run_unit_begin(mt->run);
    th_status st = th_gpt2_infer(m, kv, prompt, n, logits, 0);
    th_status paced = unit_end(mt->run);
    if (st == TH_OK) st = paced;
    for (int t = 0; t < decode && st == TH_OK; t++) {
        int next = th_sampler_next(s, logits);
        th_run_unit_begin(mt->run);
        st = th_gpt2_infer(m, kv, &next, 1, logits, 0);
        paced = unit_end(mt->run);
        if (st == TH_OK) st = paced;
    }
    meter_sample(mt);
    return st;
}

/* ---------------------------------------------------------------------------------
 * one model */

/* What a model brings to the measurement once its checks passed. */
typedef struct {
    th_gpt2 *m;
    const th_gpt2_config *cfg;
    int *ids;
    size_t n_ids;
    int ctx;
} eco_subject;

/* The checks that need no run: tokenizer round trip, vocabulary, KV cache. Sets
 * em->not_rated (TH_OK) when one fails; an error status when a check could not run. */
static th_status eco_check(th_bench_eco_model *em, const th_tokenizer *tok, const char *text, size_t len,
                           eco_subject *s, int *checks_len) {
    size_t kb = len < ECO_ROUNDTRIP_BYTES ? len : ECO_ROUNDTRIP_BYTES;
    int rt_ok = 0;
    size_t rt_at = 0;
    th_status st = th_eval_tokenizer_roundtrip(tok, text, kb, &rt_ok, &rt_at);
    if (st != TH_OK) return st;
    if (!rt_ok) {
        snprintf(em->not_rated, sizeof em->not_rated,
                 "tokenizer round trip of the data's first %zu bytes differs at byte %zu", kb, rt_at);
        return TH_OK;
    }
    if ((st = th_tokenizer_encode(tok, text, len, 0, &s->ids, &s->n_ids)) != TH_OK) return st;
    for (size_t i = 0; i < s->n_ids; i++)
        if (s->ids[i] >= s->cfg->vocab_size) {
            snprintf(em->not_rated, sizeof em->not_rated,
                     "the data has token %d, outside the model's vocabulary of %d", s->ids[i], s->cfg->vocab_size);
            return TH_OK;
        }
    if (s->n_ids < 2) return th_fail(TH_ERR_INVALID, "the data is %zu tokens; perplexity needs at least 2", s->n_ids);
    int kv_n = s->n_ids < ECO_KV_CHECK_TOKENS ? (int)s->n_ids : ECO_KV_CHECK_TOKENS;
    if (kv_n > s->cfg->max_seq_len) kv_n = s->cfg->max_seq_len;
    double kv_ref = 0;
    if ((st = th_eval_kv_check(s->m, s->ids, kv_n, &em->kv_diff, &kv_ref)) != TH_OK) return st;
    double kv_tol = th_eval_kv_tolerance_for(kv_ref, th_gpt2_precision(s->m, NULL));
    if (!(em->kv_diff <= kv_tol)) {
        snprintf(em->not_rated, sizeof em->not_rated,
                 "KV-cache logits differ from the full forward by %.3g (limit %.3g) over %d tokens", em->kv_diff,
                 kv_tol, kv_n);
        return TH_OK;
    }
    *checks_len = snprintf(em->checks, sizeof em->checks,
                           "tokenizer round trip ok (%zu bytes); KV cache within %.2g of the full forward (%d tokens)",
                           kb, em->kv_diff, kv_n);
    if (*checks_len >= (int)sizeof em->checks) *checks_len = (int)sizeof em->checks - 1;
    return TH_OK;
}

/* The prefill windows: one warm-up pass over the data, then `repeats` windows, each of
 * passes until min_s have gone by; j_tok_prefill is their median. */
static th_status eco_prefill(th_bench_eco_model *em, const eco_subject *s, size_t len, const th_bench_eco_opts *o,
                             eco_meter *mt) {
    th_eval_units units = {unit_begin, unit_end, mt->run};
    th_status st = th_eval_perplexity_ids(s->m, s->ids, s->n_ids, s->ctx, len, &units, &em->ppl);
    if (st != TH_OK) return st;
    meter_sample(mt);
    double j_tok[TH_BENCH_ECO_MAX_REPEATS];
    for (int rep = 0; rep < o->repeats; rep++) {
        double e0 = energy_now(mt->run);
        uint64_t t0 = th_now_ns();
        long passes = 0;
        do {
            th_ppl_result again;
            if ((st = th_eval_perplexity_ids(s->m, s->ids, s->n_ids, s->ctx, len, &units, &again)) != TH_OK)
                return st;
            meter_sample(mt);
            passes++;
        } while ((double)(th_now_ns() - t0) / 1e9 < o->min_s);
        em->prefill_tokens += passes * em->ppl.predicted;
        j_tok[rep] = (energy_now(mt->run) - e0) / (double)(passes * em->ppl.predicted);
    }
    em->s_j_tok_prefill = spread_of(j_tok, o->repeats);
    em->j_tok_prefill = em->s_j_tok_prefill.n ? em->s_j_tok_prefill.median : NAN;
    return TH_OK;
}

/* The decode windows: query 0 (prompt 0, greedy) is the warm-up; then `repeats` windows,
 * each of rounds over the others until min_s have gone by. The figures are the windows'
 * medians; *secs gets the median window's seconds per query x queries (for the footprint's
 * duration). */
static th_status eco_decode(th_bench_eco_model *em, const eco_subject *s, const th_bench_eco_opts *o,
                            const th_tokenizer *tok, const char *text, size_t len, eco_meter *mt, double *secs) {
    int *prompt_ids[TH_BENCH_ECO_MAX_PROMPTS] = {0}, prompt_n[TH_BENCH_ECO_MAX_PROMPTS] = {0};
    th_gpt2_kv *kv = NULL;
    th_sampler *samp[2] = {NULL, NULL};
    float *logits = NULL;
    th_status st = TH_OK;
    int n_prompts = eco_prompts(tok, text, len, o->prompts, TH_BENCH_ECO_PROMPT_TOKENS, prompt_ids, prompt_n, &st);
    if (n_prompts < 0) return st;
    int room = s->cfg->max_seq_len - o->decode;
    if (room < 1) {
        st = th_fail(TH_ERR_INVALID, "decoding %d tokens leaves no room for a prompt in a context of %d", o->decode,
                     s->cfg->max_seq_len);
        goto done;
    }
    if (n_prompts == 0) {
        st = th_fail(TH_ERR_INVALID, "the data has no non-empty line to use as a prompt");
        goto done;
    }
    for (int p = 0; p < n_prompts; p++)
        if (prompt_n[p] > room) prompt_n[p] = room;
    th_sampler_config greedy = {0.0f, 0, 1.0f}, sampled = {0.8f, 40, 0.95f};
    if (!(logits = th_alloc(sizeof(float) * (size_t)s->cfg->vocab_size))) {
        st = th_fail(TH_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = th_gpt2_kv_create(s->m, s->cfg->max_seq_len, &kv)) != TH_OK ||
        (st = th_sampler_create(s->cfg->vocab_size, &greedy, o->seed, &samp[0])) != TH_OK ||
        (st = th_sampler_create(s->cfg->vocab_size, &sampled, o->seed, &samp[1])) != TH_OK)
        goto done;
    if ((st = eco_query(s->m, kv, samp[0], prompt_ids[0], prompt_n[0], o->decode, logits, mt)) != TH_OK) goto done;
    int n_queries = 2 * n_prompts;
    double j_q[TH_BENCH_ECO_MAX_REPEATS], j_tok[TH_BENCH_ECO_MAX_REPEATS], tps[TH_BENCH_ECO_MAX_REPEATS];
    double s_per_q[TH_BENCH_ECO_MAX_REPEATS];
    for (int rep = 0; rep < o->repeats; rep++) {
        double e0 = energy_now(mt->run);
        uint64_t t0 = th_now_ns();
        long q = 0;
        do {
            for (int k = n_queries > 1 ? 1 : 0; k < n_queries; k++, q++)
                if ((st = eco_query(s->m, kv, samp[k % 2], prompt_ids[k / 2], prompt_n[k / 2], o->decode, logits,
                                    mt)) != TH_OK)
                    goto done;
        } while ((double)(th_now_ns() - t0) / 1e9 < o->min_s);
        double w = (double)(th_now_ns() - t0) / 1e9, e = energy_now(mt->run) - e0;
        em->queries += q;
        em->decode_tokens += q * o->decode;
        j_q[rep] = e / (double)q;
        j_tok[rep] = e / (double)(q * o->decode);
        tps[rep] = (double)(q * o->decode) / w;
        s_per_q[rep] = w / (double)q;
    }
    em->s_j_query = spread_of(j_q, o->repeats);
    em->s_j_tok_decode = spread_of(j_tok, o->repeats);
    em->s_tokens_per_s = spread_of(tps, o->repeats);
    th_bench_eco_spread sq = spread_of(s_per_q, o->repeats);
    em->j_query = em->s_j_query.n ? em->s_j_query.median : NAN;
    em->j_tok_decode = em->s_j_tok_decode.n ? em->s_j_tok_decode.median : NAN;
    em->tokens_per_s = em->s_tokens_per_s.n ? em->s_tokens_per_s.median : NAN;
    *secs = sq.median * (double)em->queries;
done:
    for (int p = 0; p < n_prompts; p++) th_free(prompt_ids[p]);
    th_sampler_free(samp[0]);
    th_sampler_free(samp[1]);
    th_gpt2_kv_free(kv);
    th_free(logits);
    return st;
}

/* The run's figures into the model's row, the footprint of 1,000 queries, and the checks
 * that need the measurement (finite perplexity, the recorded validation loss). */
static th_status eco_conclude(th_bench_eco_model *em, const th_bench_eco_opts *o, const eco_meter *mt, double secs,
                              int checks_len) {
    em->temp_mean_c = mt->temp_n ? mt->temp_sum / (double)mt->temp_n : NAN;
    em->temp_peak_c = em->fig.temp_max_c;
    em->above_limit_s = em->fig.above_limit_s;
    double paced = em->fig.busy_s + em->fig.idle_s;
    em->duty_mean = paced > 0 ? em->fig.busy_s / paced : NAN;
    em->have_energy = em->fig.have_energy && isfinite(em->j_query) && em->j_query >= 0;
    if (!em->have_energy) {
        snprintf(em->not_rated, sizeof em->not_rated, "no energy figure from the sensor %s", em->fig.sensor);
    } else {
        th_energy_figure kq = em->fig.energy;
        kq.energy_j = em->j_query * 1000.0;
        kq.duration_s = secs / (double)em->queries * 1000.0;
        th_status st = th_eco_footprint_compute(&kq, o->factors, &em->per_kq);
        if (st != TH_OK) return st;
        const th_bench_eco_spread *q = &em->s_j_query; // Wh = J x 1000 queries / 3600 J per Wh
        em->s_wh_per_kq = (th_bench_eco_spread){q->median / 3.6, q->min / 3.6, q->max / 3.6, q->n};
    }
    if (!isfinite(em->ppl.perplexity) && !em->not_rated[0])
        snprintf(em->not_rated, sizeof em->not_rated, "perplexity is not finite (mean NLL %g)", em->ppl.mean_nll);
    char *at = em->checks + checks_len;
    size_t room = sizeof em->checks - (size_t)checks_len;
    double val = em->recorded_val_loss;
    if (isnan(val)) {
        snprintf(at, room, "; no recorded validation loss (loss check skipped)");
    } else if (!th_eval_loss_plausible(em->ppl.mean_nll, val)) {
        if (!em->not_rated[0])
            snprintf(em->not_rated, sizeof em->not_rated,
                     "loss on the data %.3f is far above the recorded validation loss %.3f (limit %.3g x + %.3g)",
                     em->ppl.mean_nll, val, TH_EVAL_LOSS_RATIO, TH_EVAL_LOSS_MARGIN_NATS);
    } else {
        snprintf(at, room, "; loss %.3f vs recorded validation loss %.3f", em->ppl.mean_nll, val);
    }
    return TH_OK;
}

/* Checks, then measures. TH_OK with em->not_rated set for a model that fails a check; an
 * error status only when the benchmark itself could not run. */
static th_status eco_measure(th_bench_eco_model *em, const char *text, size_t len, const th_bench_eco_opts *o) {
    th_model_info *info = th_alloc(sizeof *info); // ~4 KB of run metadata: off the stack
    th_tokenizer *tok = NULL;
    th_run *run = NULL;
    eco_subject s = {NULL, NULL, NULL, 0, 0};
    int checks_len = 0;
    double secs = 0;
    th_status st = info ? th_model_load_any(em->path, &s.m, info) : th_fail(TH_ERR_NOMEM, "out of memory");
    if (st != TH_OK) goto done;
    th_dtype dtype = TH_DTYPE_F32;
    if (o->precision && (st = th_dtype_parse(o->precision, &dtype)) != TH_OK) goto done;
    if (dtype != TH_DTYPE_F32 && (st = th_gpt2_set_precision(s.m, &(th_infer_precision){dtype, 0, TH_KV_AUTO})) != TH_OK)
        goto done;
    s.cfg = th_gpt2_get_config(s.m);
    em->vocab_size = s.cfg->vocab_size;
    th_run_meta meta = th_run_meta_empty(); // a model file's metadata that does not parse records no loss
    if (info->format == TH_FORMAT_CHECKPOINT) th_run_meta_parse(info->run_meta, em->path, &meta);
    em->recorded_val_loss = meta.last_val_loss;
    struct stat sb;
    if (info->format == TH_FORMAT_GGUF) { // the tokenizer stored in the file
        if ((st = th_model_load_tokenizer(em->path, &tok)) != TH_OK) goto done;
    } else if (!(stat(em->path, &sb) == 0 && S_ISDIR(sb.st_mode) && th_tokenizer_load_dir(em->path, &tok) == TH_OK) &&
               (st = th_tokenizer_load_default(&tok)) != TH_OK) {
        goto done;
    }
    s.ctx = o->ctx > 0 && o->ctx < s.cfg->max_seq_len ? o->ctx : s.cfg->max_seq_len;
    if ((st = eco_check(em, tok, text, len, &s, &checks_len)) != TH_OK || em->not_rated[0]) goto done;
    if ((st = th_run_start(&o->run, &run)) != TH_OK) goto done;
    eco_meter mt = {run, 0, 0};
    if ((st = eco_prefill(em, &s, len, o, &mt)) != TH_OK ||
        (st = eco_decode(em, &s, o, tok, text, len, &mt, &secs)) != TH_OK)
        goto done;
    st = th_run_stop(run, &em->fig);
    run = NULL;
    if (st == TH_OK) st = eco_conclude(em, o, &mt, secs, checks_len);
done:
    th_run_stop(run, NULL);
    th_free(s.ids);
    th_tokenizer_free(tok);
    th_gpt2_free(s.m);
    th_free(info);
    return st;
}

/* ---------------------------------------------------------------------------------
 * the models together */

/* The last component of path (trailing slashes dropped) into out; with its parent
 * ("trained/model") when `parent` is set. */
static void path_name(const char *path, int parent, char *out, size_t n) {
    size_t end = strlen(path);
    while (end > 1 && path[end - 1] == '/') end--;
    size_t at = end;
    for (int k = 0; k <= parent; k++) {
        if (k) {
            if (at == 0) break;
            at--; // the slash before the component just taken
        }
        while (at > 0 && path[at - 1] != '/') at--;
    }
    snprintf(out, n, "%.*s", (int)(end - at), path + at);
}

/* Short names: opts' comma-separated list, else each path's last component, with its parent
 * when it is "model" (a training run's output) or another model's would be the same. */
static th_status eco_names(th_bench_eco_result *r, const char *names) {
    if (names) {
        const char *p = names;
        for (int i = 0; i < r->n_models; i++) {
            const char *comma = strchr(p, ',');
            size_t k = comma ? (size_t)(comma - p) : strlen(p);
            if (k == 0 || (!comma && i + 1 < r->n_models) || (comma && i + 1 == r->n_models))
                return th_fail(TH_ERR_INVALID, "bench eco: --names needs %d non-empty names separated by commas, "
                               "one per model (got \"%s\")", r->n_models, names);
            snprintf(r->models[i].name, sizeof r->models[i].name, "%.*s", (int)k, p);
            p = comma ? comma + 1 : p + k;
        }
        return TH_OK;
    }
    for (int i = 0; i < r->n_models; i++) path_name(r->models[i].path, 0, r->models[i].name, sizeof r->models[i].name);
    for (int i = 0; i < r->n_models; i++) {
        int clash = !strcmp(r->models[i].name, "model");
        for (int j = 0; j < r->n_models && !clash; j++) {
            char other[64];
            path_name(r->models[j].path, 0, other, sizeof other);
            clash = j != i && !strcmp(other, r->models[i].name);
        }
        if (clash) path_name(r->models[i].path, 1, r->models[i].name, sizeof r->models[i].name);
    }
    return TH_OK;
}

static th_status eco_check_rating_opts(const th_bench_eco_opts *o) {
    if (!(o->quality_band >= 0 && o->quality_band < 100) || !(o->flag_energy_ratio > 1 && o->flag_energy_ratio < 1e6) ||
        !(o->flag_min_gain > 0 && o->flag_min_gain < 1))
        return th_fail(TH_ERR_INVALID, "bench eco: quality band in [0, 100), flag energy ratio > 1 and flag minimum "
                       "gain in (0, 1) (got %g, %g, %g)", o->quality_band, o->flag_energy_ratio, o->flag_min_gain);
    return TH_OK;
}

th_status th_bench_eco_rate(th_bench_eco_result *r, const th_bench_eco_opts *o) {
    enum { N = TH_BENCH_ECO_MAX_MODELS };
    double energy[N], lo[N], hi[N], bpb[N], marginal[N], ratio[N], gain[N];
    int eligible[N], comparable[N], saves[N], stars[N], tie[N], front[N], prev[N], flagged[N];
    th_status st = eco_check_rating_opts(o);
    if (st == TH_OK && (r->n_models < 1 || r->n_models > N))
        st = th_fail(TH_ERR_INVALID, "bench eco: %d models to rate, must be 1 to %d", r->n_models, N);
    if (st == TH_OK) st = eco_names(r, o->names);
    if (st != TH_OK) return st;
    r->modeled = 0;
    for (int i = 0; i < r->n_models; i++) {
        th_bench_eco_model *em = &r->models[i];
        eligible[i] = !em->not_rated[0] && em->have_energy;
        energy[i] = em->have_energy ? em->per_kq.energy_it_kwh * 1e3 : NAN;
        lo[i] = em->s_wh_per_kq.n ? em->s_wh_per_kq.min : NAN;
        hi[i] = em->s_wh_per_kq.n ? em->s_wh_per_kq.max : NAN;
        bpb[i] = em->ppl.bits_per_byte;
        em->bpb_uniform = th_eval_uniform_bpb(em->ppl.predicted, em->ppl.bytes, em->vocab_size);
        em->bpb_saved = em->bpb_uniform - bpb[i];
        em->quality_per_wh = em->have_energy && energy[i] > 0 ? em->bpb_saved / energy[i] : NAN;
        saves[i] = eligible[i] && em->bpb_saved > 0; // the free uniform baseline dominates the others
        if (em->fig.origin == TH_ORIGIN_MODELED || em->fig.energy.basis == TH_ECO_BASIS_MODELED) r->modeled = 1;
    }
    if ((st = th_eval_quality_comparable(bpb, eligible, r->n_models, o->quality_band, comparable)) != TH_OK ||
        (st = th_eval_energy_stars_spread(energy, lo, hi, comparable, r->n_models, stars, tie)) != TH_OK ||
        (st = th_eval_pareto(bpb, energy, saves, r->n_models, front)) != TH_OK ||
        (st = th_eval_front_marginal(bpb, energy, front, r->n_models, o->flag_energy_ratio, o->flag_min_gain, prev,
                                     marginal, ratio, gain, flagged)) != TH_OK)
        return st;
    double best = INFINITY;
    for (int i = 0; i < r->n_models; i++)
        if (eligible[i] && isfinite(bpb[i]) && bpb[i] < best) best = bpb[i];
    for (int i = 0; i < r->n_models; i++) {
        th_bench_eco_model *em = &r->models[i];
        em->comparable = comparable[i];
        em->stars = stars[i];
        em->tie = tie[i];
        em->pareto = front[i];
        em->front_prev = prev[i];
        em->marginal_wh_per_bpb = marginal[i];
        em->energy_ratio = ratio[i];
        em->gain_rel = gain[i];
        em->flagged = flagged[i];
        em->not_comparable[0] = 0;
        if (eligible[i] && !comparable[i])
            snprintf(em->not_comparable, sizeof em->not_comparable,
                     "%.3f bits/byte against the best %.3f: outside the band of +%.0f %%", bpb[i], best,
                     100 * o->quality_band);
    }
    r->repeats = o->repeats;
    r->quality_band = o->quality_band;
    r->flag_energy_ratio = o->flag_energy_ratio;
    r->flag_min_gain = o->flag_min_gain;
    snprintf(r->precision, sizeof r->precision, "%s", o->precision ? o->precision : "f32");
    return TH_OK;
}

th_status th_bench_eco(const char *const *models, int n, const char *text, size_t len, const th_bench_eco_opts *o,
                       th_bench_eco_result **out) {
    *out = NULL;
    if (n < 1 || n > TH_BENCH_ECO_MAX_MODELS)
        return th_fail(TH_ERR_INVALID, "bench eco: %d models, must be 1 to %d", n, TH_BENCH_ECO_MAX_MODELS);
    if (!o->factors || o->prompts < 1 || o->prompts > TH_BENCH_ECO_MAX_PROMPTS || o->decode < 1 || !(o->min_s > 0) ||
        o->repeats < 1 || o->repeats > TH_BENCH_ECO_MAX_REPEATS)
        return th_fail(TH_ERR_INVALID, "bench eco: factors are required; prompts in [1, %d], decode >= 1, "
                       "min_s > 0 and repeats in [1, %d] (got %d, %d, %g, %d)", TH_BENCH_ECO_MAX_PROMPTS,
                       TH_BENCH_ECO_MAX_REPEATS, o->prompts, o->decode, o->min_s, o->repeats);
    th_status st = eco_check_rating_opts(o);
    if (st != TH_OK) return st;
    th_bench_eco_result *r = th_calloc(1, sizeof *r);
    if (!r || !(r->models = th_calloc((size_t)n, sizeof *r->models))) {
        st = th_fail(TH_ERR_NOMEM, "bench eco: out of memory");
        goto done;
    }
    r->n_models = n;
    for (int i = 0; i < n; i++) r->models[i].path = models[i];
    if ((st = eco_names(r, o->names)) != TH_OK) goto done; // a bad list fails before any measurement
    for (int i = 0; i < n && st == TH_OK; i++) {
        th_bench_eco_model *em = &r->models[i];
        em->path = models[i];
        th_log(TH_LOG_INFO, "thermo bench eco: %s ...", em->path);
        if ((st = eco_measure(em, text, len, o)) != TH_OK) {
            char why[512];
            snprintf(why, sizeof why, "%s", th_last_error());
            st = th_fail(st, "%s: %s", em->path, why);
        }
    }
    if (st == TH_OK) st = th_bench_eco_rate(r, o);
    if (st != TH_OK) goto done;
    th_cpu_name(r->cpu, sizeof r->cpu);
    r->threads = th_threads_get();
    r->matmul = th_compute_current();
    r->factors = *o->factors;
    *out = r;
    r = NULL;
done:
    th_bench_eco_free(r);
    return st;
}

void th_bench_eco_free(th_bench_eco_result *r) {
    if (!r) return;
    th_free(r->models);
    th_free(r);
}
