/* cmd_bench_eco.c: `thermo bench eco`: rates models benchmarked together by quality per
 * joule, per gram CO2e and per litre of water.
 *
 * For each model, inside its own monitored run (the shared sensor/governor/eco flags):
 *   checks     tokenizer round trip on the data's first KB, KV cache against the full
 *              forward, the text's loss against a recorded validation loss (if any);
 *              a model that fails one is reported "not rated: <reason>", never rated down;
 *   prefill    the perplexity pass over the data (evaluate.h's recipe): one warm-up pass,
 *              then passes until --min-seconds have gone by; J per predicted token;
 *   decode     queries: --prompts prompts (the data's first non-empty lines, at most 32
 *              tokens each) x {greedy, seeded sampling}, each decoding exactly --decode
 *              tokens through the KV cache; the first query is a warm-up, then rounds of
 *              the others until --min-seconds have gone by. A query's energy (its prompt's
 *              prefill included) gives Wh, CO2e, water and pollutants per 1,000 queries;
 *              J per decoded token is that energy over the query's decoded tokens.
 * Energy is the difference of th_run_figures_now over each steady window (the sampler runs
 * at 50 Hz here unless --hz says otherwise). Rating: th_eval_energy_stars over Wh per
 * 1,000 queries of the rated models (AI Energy Score's five equal bands of the range) and
 * th_eval_pareto of perplexity against Wh per 1,000 queries. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "thermo/evaluate.h"

#define ECO_MAX_MODELS 32
#define ECO_MAX_PROMPTS 16
#define ECO_PROMPT_TOKENS 32

typedef struct {
    const char *path;
    char not_rated[256];  /* "" when rated */
    char checks[512];     /* what the checks found */
    th_ppl_result ppl;
    double kv_diff;
    double j_tok_prefill, j_tok_decode, j_query, tokens_per_s;
    long queries, decode_tokens, prefill_tokens;
    th_eco_footprint per_kq; /* footprint of 1,000 queries */
    int have_energy;
    double temp_mean_c, temp_peak_c, above_limit_s, duty_mean;
    th_run_figures fig;
    int stars, pareto;
} eco_model;

static void eco_usage(FILE *f) {
    fprintf(f,
            "usage: thermo bench eco --models M1 [M2 ...] --data FILE [options]\n"
            "Rates models by quality (perplexity, bits per byte on FILE) per joule, gram CO2e and\n"
            "litre of water, inside a monitored run per model (energy: the run's ledger).\n"
            "  --models M ...     model paths (HF dir, .safetensors, llm.c .bin, checkpoint)\n"
            "  --data FILE        held-out text: scored for perplexity; its first lines are the prompts\n"
            "  --ctx N            perplexity window (default: each model's context)\n"
            "  --prompts N        prompts (default 4), each run greedy and seeded: 2N queries\n"
            "  --decode N         tokens decoded per query (default 32)\n"
            "  --min-seconds S    length of each steady measurement window (default 1)\n"
            "  --seed N           sampling seed (default 1337); --threads N\n"
            "  --json             one JSON object on stdout instead of a table\n"
            "  --html FILE        a self-contained report: table and quality-vs-energy scatter\n"
            "Rating: 1-5 stars by Wh per 1,000 queries among the rated models (five equal bands of\n"
            "their min-max range, as AI Energy Score), and the Pareto front of perplexity vs energy.\n"
            "The governor defaults to none here (--governor to pace): pacing would be charged to the model.\n"
            "%s",
            cli_run_flags_help());
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *b = realloc(buf, 2 * cap + 1);
            if (!b) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = b;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    *len = n;
    return buf;
}

/* The first `want` non-empty lines of the text, tokenized and cut to `cap` tokens. */
static int eco_prompts(const th_tokenizer *tok, const char *text, size_t len, int want, int cap, int **ids,
                       int *n_ids) {
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
            if (th_tokenizer_encode(tok, text + s, end - s, 0, &p, &k) != TH_OK) return n;
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

/* ---------------------------------------------------------------------------------
 * one model */

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

/* One query: the prompt through the KV cache, then exactly `decode` tokens. */
static th_status eco_query(th_gpt2 *m, th_gpt2_kv *kv, th_sampler *s, const int *prompt, int n, int decode,
                           float *logits, eco_meter *mt) {
    th_gpt2_kv_reset(kv);
    th_run_unit_begin(mt->run);
    th_status st = th_gpt2_infer(m, kv, prompt, n, logits, 0);
    th_run_unit_end(mt->run, NULL);
    for (int t = 0; t < decode && st == TH_OK; t++) {
        int next = th_sampler_next(s, logits);
        th_run_unit_begin(mt->run);
        st = th_gpt2_infer(m, kv, &next, 1, logits, 0);
        if (th_run_unit_end(mt->run, NULL) == TH_ERR_INTERRUPTED) st = th_fail(TH_ERR_INTERRUPTED, "interrupted");
    }
    meter_sample(mt);
    return st;
}

typedef struct {
    int ctx, prompts, decode;
    double min_s;
    uint64_t seed;
    const char *text;
    size_t len;
} eco_opts;

static double energy_now(th_run *r) {
    th_run_figures f;
    th_run_figures_now(r, &f);
    return f.have_energy ? f.energy.energy_j : NAN;
}

/* Checks, then measures. Returns TH_OK with em->not_rated set for a model that fails a
 * check; an error status only when the benchmark itself could not run. */
static th_status eco_measure(eco_model *em, const eco_opts *o, cli_run_flags *rf) {
    th_gpt2 *m = NULL;
    th_model_info info;
    th_tokenizer *tok = NULL;
    th_run *run = NULL;
    th_gpt2_kv *kv = NULL;
    th_sampler *samp[2] = {NULL, NULL};
    float *logits = NULL;
    int *ids = NULL, *prompt_ids[ECO_MAX_PROMPTS] = {0}, prompt_n[ECO_MAX_PROMPTS] = {0}, n_prompts = 0;
    size_t n_ids = 0;
    th_status st = th_model_load_any(em->path, &m, &info);
    if (st != TH_OK) return st;
    const th_gpt2_config *cfg = th_gpt2_get_config(m);
    struct stat sb;
    if (!(stat(em->path, &sb) == 0 && S_ISDIR(sb.st_mode) && th_tokenizer_load_dir(em->path, &tok) == TH_OK) &&
        (st = th_tokenizer_load_default(&tok)) != TH_OK)
        goto done;
    int ctx = o->ctx > 0 ? o->ctx : cfg->max_seq_len;
    if (ctx > cfg->max_seq_len) ctx = cfg->max_seq_len;

    // --- checks
    size_t kb = o->len < 1024 ? o->len : 1024;
    int rt_ok = 0;
    size_t rt_at = 0;
    if ((st = th_eval_tokenizer_roundtrip(tok, o->text, kb, &rt_ok, &rt_at)) != TH_OK) goto done;
    if (!rt_ok) {
        snprintf(em->not_rated, sizeof em->not_rated, "tokenizer round trip of the data's first %zu bytes differs "
                 "at byte %zu", kb, rt_at);
        goto done;
    }
    if ((st = th_tokenizer_encode(tok, o->text, o->len, 0, &ids, &n_ids)) != TH_OK) goto done;
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] >= cfg->vocab_size) {
            snprintf(em->not_rated, sizeof em->not_rated, "the data has token %d, outside the model's vocabulary "
                     "of %d", ids[i], cfg->vocab_size);
            goto done;
        }
    if (n_ids < 2) {
        st = th_fail(TH_ERR_INVALID, "the data is %zu tokens; perplexity needs at least 2", n_ids);
        goto done;
    }
    int kv_n = n_ids < 16 ? (int)n_ids : 16;
    if (kv_n > cfg->max_seq_len) kv_n = cfg->max_seq_len;
    double kv_ref = 0;
    if ((st = th_eval_kv_check(m, ids, kv_n, &em->kv_diff, &kv_ref)) != TH_OK) goto done;
    double kv_tol = 1e-4 * (kv_ref > 1 ? kv_ref : 1);
    if (!(em->kv_diff <= kv_tol)) {
        snprintf(em->not_rated, sizeof em->not_rated, "KV-cache logits differ from the full forward by %.3g "
                 "(limit %.3g) over %d tokens", em->kv_diff, kv_tol, kv_n);
        goto done;
    }
    int w = snprintf(em->checks, sizeof em->checks, "tokenizer round trip ok (%zu bytes); KV cache within %.2g "
                     "of the full forward (%d tokens)", kb, em->kv_diff, kv_n);

    // --- measurement
    n_prompts = eco_prompts(tok, o->text, o->len, o->prompts, ECO_PROMPT_TOKENS, prompt_ids, prompt_n);
    for (int p = 0; p < n_prompts; p++) {
        int room = cfg->max_seq_len - o->decode;
        if (room < 1) {
            st = th_fail(TH_ERR_INVALID, "--decode %d leaves no room for a prompt in a context of %d", o->decode,
                         cfg->max_seq_len);
            goto done;
        }
        if (prompt_n[p] > room) prompt_n[p] = room;
    }
    if (n_prompts == 0) {
        st = th_fail(TH_ERR_INVALID, "the data has no non-empty line to use as a prompt");
        goto done;
    }
    th_sampler_config greedy = {0.0f, 0, 1.0f}, sampled = {0.8f, 40, 0.95f};
    logits = th_alloc(sizeof(float) * (size_t)cfg->vocab_size);
    if (!logits) {
        st = th_fail(TH_ERR_NOMEM, "out of memory");
        goto done;
    }
    if ((st = th_gpt2_kv_create(m, cfg->max_seq_len, &kv)) != TH_OK ||
        (st = th_sampler_create(cfg->vocab_size, &greedy, o->seed, &samp[0])) != TH_OK ||
        (st = th_sampler_create(cfg->vocab_size, &sampled, o->seed, &samp[1])) != TH_OK ||
        (st = th_run_start(&rf->run, &run)) != TH_OK)
        goto done;
    eco_meter mt = {run, 0, 0};

    // prefill: one warm-up pass, then passes over a steady window
    if ((st = th_eval_perplexity_ids(m, ids, n_ids, ctx, o->len, run, &em->ppl)) != TH_OK) goto done;
    meter_sample(&mt);
    double e0 = energy_now(run);
    uint64_t t0 = th_now_ns();
    long passes = 0;
    do {
        th_ppl_result again;
        if ((st = th_eval_perplexity_ids(m, ids, n_ids, ctx, o->len, run, &again)) != TH_OK) goto done;
        meter_sample(&mt);
        passes++;
    } while ((th_now_ns() - t0) / 1e9 < o->min_s);
    double e1 = energy_now(run);
    em->prefill_tokens = passes * em->ppl.predicted;
    em->j_tok_prefill = (e1 - e0) / (double)em->prefill_tokens;

    // decode: query 0 (prompt 0, greedy) is the warm-up; then rounds over the others
    if ((st = eco_query(m, kv, samp[0], prompt_ids[0], prompt_n[0], o->decode, logits, &mt)) != TH_OK) goto done;
    int n_queries = 2 * n_prompts;
    e0 = energy_now(run);
    t0 = th_now_ns();
    long q = 0;
    do {
        for (int k = n_queries > 1 ? 1 : 0; k < n_queries; k++, q++)
            if ((st = eco_query(m, kv, samp[k % 2], prompt_ids[k / 2], prompt_n[k / 2], o->decode, logits, &mt)) !=
                TH_OK)
                goto done;
    } while ((th_now_ns() - t0) / 1e9 < o->min_s);
    double secs = (th_now_ns() - t0) / 1e9;
    e1 = energy_now(run);
    em->queries = q;
    em->decode_tokens = q * o->decode;
    em->j_query = (e1 - e0) / (double)q;
    em->j_tok_decode = (e1 - e0) / (double)em->decode_tokens;
    em->tokens_per_s = em->decode_tokens / secs;

    st = th_run_stop(run, &em->fig);
    run = NULL;
    if (st != TH_OK) goto done;
    em->temp_mean_c = mt.temp_n ? mt.temp_sum / mt.temp_n : NAN;
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
        kq.duration_s = secs / (double)q * 1000.0;
        if ((st = th_eco_footprint_compute(&kq, &rf->factors, &em->per_kq)) != TH_OK) goto done;
    }
    if (!isfinite(em->ppl.perplexity) && !em->not_rated[0])
        snprintf(em->not_rated, sizeof em->not_rated, "perplexity is not finite (mean NLL %g)", em->ppl.mean_nll);
    // the text's loss against the validation loss the training run recorded, if it did
    double val = th_eval_recorded_val_loss(info.format == TH_FORMAT_CHECKPOINT ? info.run_meta : NULL);
    if (isnan(val)) {
        snprintf(em->checks + w, sizeof em->checks - (size_t)w, "; no recorded validation loss (loss check skipped)");
    } else if (em->ppl.mean_nll > 1.5 * val + 1.0) {
        if (!em->not_rated[0])
            snprintf(em->not_rated, sizeof em->not_rated, "loss on the data %.3f is far above the recorded "
                     "validation loss %.3f (limit 1.5 x + 1)", em->ppl.mean_nll, val);
    } else {
        snprintf(em->checks + w, sizeof em->checks - (size_t)w, "; loss %.3f vs recorded validation loss %.3f",
                 em->ppl.mean_nll, val);
    }
done:
    th_run_stop(run, NULL);
    for (int p = 0; p < n_prompts; p++) th_free(prompt_ids[p]);
    th_sampler_free(samp[0]);
    th_sampler_free(samp[1]);
    th_gpt2_kv_free(kv);
    th_free(logits);
    th_free(ids);
    th_tokenizer_free(tok);
    th_gpt2_free(m);
    return st;
}

/* ---------------------------------------------------------------------------------
 * output */

static json_t *num_or_null(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static const char *energy_basis_word(const eco_model *em) {
    return em->fig.energy.basis == TH_ECO_BASIS_MODELED || em->fig.energy.basis == TH_ECO_BASIS_ESTIMATE
               ? "modeled" : "measured";
}

static double water_ml(const th_eco_footprint *fp) {
    return (fp->water_onsite_l + fp->water_offsite_l) * 1e3;
}

static json_t *model_json(const eco_model *em) {
    const th_eco_footprint *fp = &em->per_kq;
    int e = em->have_energy;
    json_t *j = json_object();
    json_object_set_new(j, "model", json_string(em->path));
    json_object_set_new(j, "perplexity", num_or_null(em->ppl.perplexity));
    json_object_set_new(j, "bits_per_byte", num_or_null(em->ppl.bits_per_byte));
    json_object_set_new(j, "tokens_scored", json_integer(em->ppl.predicted));
    json_object_set_new(j, "j_per_token_prefill", num_or_null(e ? em->j_tok_prefill : NAN));
    json_object_set_new(j, "j_per_token_decode", num_or_null(e ? em->j_tok_decode : NAN));
    json_object_set_new(j, "wh_per_1k_queries", num_or_null(e ? fp->energy_it_kwh * 1e3 : NAN));
    json_object_set_new(j, "co2e_g_per_1k_queries", num_or_null(e ? fp->co2e_g : NAN));
    json_object_set_new(j, "water_ml_per_1k_queries", num_or_null(e ? water_ml(fp) : NAN));
    json_object_set_new(j, "nox_mg_per_1k_queries", num_or_null(e ? fp->nox_g * 1e3 : NAN));
    json_object_set_new(j, "so2_mg_per_1k_queries", num_or_null(e ? fp->so2_g * 1e3 : NAN));
    json_object_set_new(j, "pm25_mg_per_1k_queries", num_or_null(e ? fp->pm25_g * 1e3 : NAN));
    json_object_set_new(j, "tokens_per_s", num_or_null(em->tokens_per_s));
    json_object_set_new(j, "temp_mean_c", num_or_null(em->temp_mean_c));
    json_object_set_new(j, "temp_peak_c", num_or_null(em->temp_peak_c));
    json_object_set_new(j, "above_limit_s", num_or_null(em->above_limit_s));
    json_object_set_new(j, "duty_mean", num_or_null(em->duty_mean));
    json_object_set_new(j, "queries_measured", json_integer(em->queries));
    json_object_set_new(j, "rating", em->stars > 0 ? json_integer(em->stars) : json_null());
    json_object_set_new(j, "pareto", json_boolean(em->pareto));
    json_object_set_new(j, "not_rated", em->not_rated[0] ? json_string(em->not_rated) : json_null());
    json_object_set_new(j, "checks", json_string(em->checks));
    const char *eb = energy_basis_word(em), *tb = em->fig.origin == TH_ORIGIN_MODELED ? "modeled" : "measured";
    json_t *b = json_object();
    static const char *const quality[] = {"perplexity", "bits_per_byte", "tokens_per_s", NULL};
    static const char *const energy[] = {"j_per_token_prefill", "j_per_token_decode", "wh_per_1k_queries",
                                         "co2e_g_per_1k_queries", "water_ml_per_1k_queries",
                                         "nox_mg_per_1k_queries", "so2_mg_per_1k_queries",
                                         "pm25_mg_per_1k_queries", "rating", NULL};
    static const char *const thermal[] = {"temp_mean_c", "temp_peak_c", "above_limit_s", NULL};
    for (int k = 0; quality[k]; k++) json_object_set_new(b, quality[k], json_string("measured"));
    for (int k = 0; energy[k]; k++) json_object_set_new(b, energy[k], json_string(eb));
    for (int k = 0; thermal[k]; k++) json_object_set_new(b, thermal[k], json_string(tb));
    json_object_set_new(b, "duty_mean", json_string("measured"));
    json_object_set_new(j, "basis", b);
    return j;
}

static void cpu_name(char *out, size_t cap) {
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        char *c = strchr(line, ':');
        if (!c) continue;
        c++;
        while (*c == ' ') c++;
        c[strcspn(c, "\n")] = '\0';
        snprintf(out, cap, "%s", c);
        break;
    }
    if (f) fclose(f);
}

static void html_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

static int write_html(const char *path, const eco_model *ms, int n, int modeled, const char *region) {
    FILE *f = fopen(path, "w");
    if (!f) return cli_report(th_fail(TH_ERR_IO, "%s: cannot write", path), "bench eco --html");
    fprintf(f, "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>thermo bench eco</title>\n"
               "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
               "td,th{border:1px solid #999;padding:4px 8px;text-align:right}td.l,th.l{text-align:left}"
               ".note{background:#fff3cd;padding:8px;border:1px solid #e0c36c}</style></head><body>\n"
               "<h1>thermo bench eco</h1>\n");
    if (modeled)
        fprintf(f, "<p class=\"note\">Energy and temperature figures are <b>modeled</b> on a simulated plant, "
                   "not measured by a hardware sensor.</p>\n");
    fprintf(f, "<p>Region ");
    html_escape(f, region);
    fprintf(f, ". Stars: five equal bands of the Wh per 1,000 queries range among the rated models (AI Energy "
               "Score's rule); &#9733; on the Pareto front of perplexity against energy.</p>\n<table><tr>"
               "<th class=\"l\">model</th><th>perplexity</th><th>bits/byte</th><th>J/token prefill</th>"
               "<th>J/token decode</th><th>Wh/1k queries</th><th>g CO2e/1k</th><th>mL water/1k</th>"
               "<th>tokens/s</th><th>peak &deg;C</th><th class=\"l\">rating</th></tr>\n");
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    for (int i = 0; i < n; i++) {
        const eco_model *em = &ms[i];
        fprintf(f, "<tr><td class=\"l\">");
        html_escape(f, em->path);
        fprintf(f, "</td><td>%.4g</td><td>%.4g</td>", em->ppl.perplexity, em->ppl.bits_per_byte);
        if (em->have_energy)
            fprintf(f, "<td>%.4g</td><td>%.4g</td><td>%.4g</td><td>%.4g</td><td>%.4g</td>", em->j_tok_prefill,
                    em->j_tok_decode, em->per_kq.energy_it_kwh * 1e3, em->per_kq.co2e_g, water_ml(&em->per_kq));
        else
            fprintf(f, "<td></td><td></td><td></td><td></td><td></td>");
        fprintf(f, "<td>%.1f</td><td>%.1f</td><td class=\"l\">", em->tokens_per_s, em->temp_peak_c);
        if (em->not_rated[0]) {
            fprintf(f, "not rated: ");
            html_escape(f, em->not_rated);
        } else {
            for (int s = 0; s < em->stars; s++) fputs("&#9734;", f);
            if (em->pareto) fputs(" &#9733; Pareto", f);
        }
        fprintf(f, "</td></tr>\n");
        if (em->have_energy && isfinite(em->ppl.perplexity)) {
            double x = em->per_kq.energy_it_kwh * 1e3, y = em->ppl.perplexity;
            if (x < xmin) xmin = x;
            if (x > xmax) xmax = x;
            if (y < ymin) ymin = y;
            if (y > ymax) ymax = y;
        }
    }
    fprintf(f, "</table>\n");
    if (xmin <= xmax) {
        const double W = 640, H = 400, L = 70, R = 20, T = 20, B = 50;
        double dx = xmax > xmin ? xmax - xmin : (xmin > 0 ? xmin : 1), dy = ymax > ymin ? ymax - ymin : (ymin > 0 ? ymin : 1);
        double x0 = xmin - 0.1 * dx, x1 = xmax + 0.1 * dx, y0 = ymin - 0.1 * dy, y1 = ymax + 0.1 * dy;
#define PX(x) (L + ((x) - x0) / (x1 - x0) * (W - L - R))
#define PY(y) (H - B - ((y) - y0) / (y1 - y0) * (H - T - B))
        fprintf(f, "<h2>Quality against energy per query</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
                   "width=\"%.0f\" height=\"%.0f\" font-size=\"12\">\n<rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" "
                   "height=\"%.0f\" fill=\"none\" stroke=\"#444\"/>\n",
                W, H, L, T, W - L - R, H - T - B);
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">Wh per 1,000 queries (%s) &#8594; lower is "
                   "better</text>\n", (L + W - R) / 2, H - 12, modeled ? "modeled" : "measured");
        fprintf(f, "<text x=\"14\" y=\"%.0f\" transform=\"rotate(-90 14 %.0f)\" text-anchor=\"middle\">perplexity "
                   "(lower is better)</text>\n", (T + H - B) / 2, (T + H - B) / 2);
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"start\">%.4g</text><text x=\"%.0f\" y=\"%.0f\" "
                   "text-anchor=\"end\">%.4g</text>\n", L, H - B + 15, x0, W - R, H - B + 15, x1);
        fprintf(f, "<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">%.4g</text><text x=\"%.0f\" y=\"%.0f\" "
                   "text-anchor=\"end\">%.4g</text>\n", L - 4, H - B, y0, L - 4, T + 10, y1);
        // the front as a staircase through its points in order of energy
        int order[ECO_MAX_MODELS], nf = 0;
        for (int i = 0; i < n; i++)
            if (ms[i].pareto) order[nf++] = i;
        for (int a = 1; a < nf; a++)
            for (int b = a; b > 0 && ms[order[b]].per_kq.energy_it_kwh < ms[order[b - 1]].per_kq.energy_it_kwh; b--) {
                int t = order[b];
                order[b] = order[b - 1];
                order[b - 1] = t;
            }
        if (nf > 1) {
            fprintf(f, "<polyline fill=\"none\" stroke=\"#d62728\" stroke-width=\"2\" points=\"");
            for (int a = 0; a < nf; a++)
                fprintf(f, "%.1f,%.1f ", PX(ms[order[a]].per_kq.energy_it_kwh * 1e3), PY(ms[order[a]].ppl.perplexity));
            fprintf(f, "\"/>\n");
        }
        for (int i = 0; i < n; i++) {
            const eco_model *em = &ms[i];
            if (!em->have_energy || !isfinite(em->ppl.perplexity)) continue;
            double cx = PX(em->per_kq.energy_it_kwh * 1e3), cy = PY(em->ppl.perplexity);
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"%s\"/><text x=\"%.1f\" y=\"%.1f\">", cx, cy,
                    em->pareto ? "#d62728" : em->not_rated[0] ? "#bbbbbb" : "#1f77b4", cx + 8, cy - 8);
            html_escape(f, em->path);
            fprintf(f, "</text>\n");
        }
#undef PX
#undef PY
        fprintf(f, "</svg>\n<p>Red: the Pareto front; grey: not rated.</p>\n");
    }
    fprintf(f, "</body></html>\n");
    if (fclose(f) != 0) return cli_report(th_fail(TH_ERR_IO, "%s: write failed", path), "bench eco --html");
    return EXIT_OK;
}

/* ---------------------------------------------------------------------------------
 * the command */

int cmd_bench_eco(int argc, char **argv) {
    const char *models[ECO_MAX_MODELS], *data = NULL, *html = NULL;
    int n_models = 0, json = 0;
    long ctx = 0, prompts = 4, decode = 32, seed = 1337, threads = 0;
    double min_s = 1.0;
    cli_run_flags rf;
    cli_run_flags_init(&rf);
    rf.run.hz = 50; // short windows: finer energy steps
    // A benchmark measures the model, not the pacing: no governor unless asked for (the
    // predictive one starts cautious, and its idle time at P_idle would be charged to the model).
    rf.run.governor = "none";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            eco_usage(stdout);
            return EXIT_OK;
        }
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (!strcmp(a, "--models")) {
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0) {
                if (n_models == ECO_MAX_MODELS) {
                    fprintf(stderr, "thermo bench eco: at most %d models\n", ECO_MAX_MODELS);
                    return EXIT_USAGE;
                }
                models[n_models++] = argv[++i];
            }
            continue;
        }
        int r = cli_run_flag(&rf, "bench eco", argc, argv, &i);
        if (r < 0) return EXIT_USAGE;
        if (r > 0) continue;
        if (i + 1 >= argc) {
            fprintf(stderr, "thermo bench eco: unknown option or missing value: %s\n", a);
            eco_usage(stderr);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        int ok = 1;
        if (!strcmp(a, "--data")) data = v;
        else if (!strcmp(a, "--html")) html = v;
        else if (!strcmp(a, "--ctx")) ok = cli_parse_int("bench eco", a, v, 2, 1 << 20, &ctx);
        else if (!strcmp(a, "--prompts")) ok = cli_parse_int("bench eco", a, v, 1, ECO_MAX_PROMPTS, &prompts);
        else if (!strcmp(a, "--decode")) ok = cli_parse_int("bench eco", a, v, 1, 1 << 16, &decode);
        else if (!strcmp(a, "--seed")) ok = cli_parse_int("bench eco", a, v, 0, 0x7fffffffffffffffL, &seed);
        else if (!strcmp(a, "--threads")) ok = cli_parse_int("bench eco", a, v, 1, 1024, &threads);
        else if (!strcmp(a, "--min-seconds")) ok = cli_parse_float("bench eco", a, v, 0.01, 3600, &min_s);
        else {
            fprintf(stderr, "thermo bench eco: unknown option %s\n", a);
            eco_usage(stderr);
            return EXIT_USAGE;
        }
        if (!ok) return EXIT_USAGE;
    }
    if (n_models == 0 || !data) {
        fprintf(stderr, "thermo bench eco: --models and --data are required\n");
        eco_usage(stderr);
        return EXIT_USAGE;
    }
    if (threads > 0) th_threads_set((int)threads);
    int rc = cli_eco_resolve(&rf, "bench eco");
    if (rc != EXIT_OK) return rc;
    eco_opts o = {(int)ctx, (int)prompts, (int)decode, min_s, (uint64_t)seed, NULL, 0};
    char *text = read_file(data, &o.len);
    if (!text) return cli_report(th_fail(TH_ERR_IO, "%s: cannot read", data), "bench eco --data");
    o.text = text;
    eco_model *ms = calloc((size_t)n_models, sizeof *ms);
    if (!ms) {
        free(text);
        return cli_report(th_fail(TH_ERR_NOMEM, "out of memory"), "bench eco");
    }
    for (int i = 0; i < n_models && rc == EXIT_OK; i++) {
        ms[i].path = models[i];
        if (!json) fprintf(stderr, "thermo bench eco: %s ...\n", models[i]);
        th_status st = eco_measure(&ms[i], &o, &rf);
        if (st != TH_OK) {
            char ctxmsg[4200];
            snprintf(ctxmsg, sizeof ctxmsg, "bench eco: %s", models[i]);
            rc = cli_report(st, ctxmsg);
        }
    }
    if (rc == EXIT_OK) {
        double energy[ECO_MAX_MODELS], quality[ECO_MAX_MODELS];
        int eligible[ECO_MAX_MODELS], stars[ECO_MAX_MODELS], front[ECO_MAX_MODELS], modeled = 0;
        for (int i = 0; i < n_models; i++) {
            eligible[i] = !ms[i].not_rated[0];
            energy[i] = ms[i].have_energy ? ms[i].per_kq.energy_it_kwh * 1e3 : NAN;
            quality[i] = ms[i].ppl.perplexity;
            if (ms[i].fig.origin == TH_ORIGIN_MODELED || ms[i].fig.energy.basis == TH_ECO_BASIS_MODELED) modeled = 1;
        }
        th_eval_energy_stars(energy, eligible, n_models, stars);
        th_eval_pareto(quality, energy, eligible, n_models, front);
        for (int i = 0; i < n_models; i++) ms[i].stars = stars[i], ms[i].pareto = front[i];

        char cpu[256];
        cpu_name(cpu, sizeof cpu);
        if (json) {
            json_t *root = json_object(), *arr = json_array();
            for (int i = 0; i < n_models; i++) json_array_append_new(arr, model_json(&ms[i]));
            json_object_set_new(root, "models", arr);
            json_object_set_new(root, "rating_rule", json_string("stars 5 - floor(5 (e - min) / (max - min)) "
                                                                  "over Wh per 1k queries of the rated models, "
                                                                  "clamped to 1..5; Pareto: perplexity vs Wh"));
            json_t *mach = json_pack("{s:i, s:s, s:s, s:s, s:s}", "threads", th_threads_get(), "cpu", cpu, "build",
                                     th_compute_current(), "sensor", ms[0].fig.sensor,
                                     "sensor_basis", modeled ? "modeled (simulated plant)" : "measured");
            json_object_set_new(mach, "governor", json_string(ms[0].fig.governor));
            json_object_set_new(root, "machine", mach);
            json_t *factors = NULL;
            for (int i = 0; i < n_models && !factors; i++) {
                void *fj = NULL;
                if (ms[i].have_energy && th_eco_report_json(&ms[i].per_kq, NULL, &fj) == TH_OK) {
                    json_t *full = fj;
                    factors = json_object();
                    json_object_set(factors, "region", json_object_get(full, "region"));
                    json_object_set(factors, "preset", json_object_get(full, "preset"));
                    json_object_update(factors, json_object_get(full, "factors"));
                    json_decref(full);
                }
            }
            json_object_set_new(root, "factors", factors ? factors : json_null());
            char *out = json_dumps(root, JSON_REAL_PRECISION(6));
            printf("%s\n", out);
            free(out);
            json_decref(root);
        } else {
            if (modeled)
                printf("NOTE: energy and temperature are MODELED on a simulated plant (%s), not measured.\n",
                       ms[0].fig.sensor);
            printf("%-28s %10s %8s %10s %10s %10s %10s %10s %8s %6s  %s\n", "model", "perplexity", "bits/B",
                   "J/tok pre", "J/tok dec", "Wh/1kq", "gCO2e/1kq", "mL H2O/1kq", "tok/s", "peakC", "rating");
            for (int i = 0; i < n_models; i++) {
                const eco_model *em = &ms[i];
                if (em->queries == 0) { // stopped by a check before any measurement
                    printf("%-28s %10s %8s %10s %10s %10s %10s %10s %8s %6s  not rated: %s\n", em->path, "-", "-",
                           "-", "-", "-", "-", "-", "-", "-", em->not_rated);
                    continue;
                }
                printf("%-28s %10.4g %8.4g %10.4g %10.4g %10.4g %10.4g %10.4g %8.1f %6.1f  ", em->path,
                       em->ppl.perplexity, em->ppl.bits_per_byte, em->j_tok_prefill, em->j_tok_decode,
                       em->per_kq.energy_it_kwh * 1e3, em->per_kq.co2e_g, water_ml(&em->per_kq), em->tokens_per_s,
                       em->temp_peak_c);
                if (em->not_rated[0]) printf("not rated: %s\n", em->not_rated);
                else printf("%d star%s%s\n", em->stars, em->stars == 1 ? "" : "s", em->pareto ? ", Pareto" : "");
            }
            printf("stars: five equal bands of the Wh/1k-queries range among rated models (AI Energy Score's "
                   "rule); machine: %s, %d threads, %s\n", cpu, th_threads_get(),
                   th_compute_current());
            for (int i = 0; i < n_models; i++) printf("checks %s: %s\n", ms[i].path, ms[i].checks);
        }
        if (html) rc = write_html(html, ms, n_models, modeled, rf.factors.region);
    }
    free(ms);
    free(text);
    return rc;
}
