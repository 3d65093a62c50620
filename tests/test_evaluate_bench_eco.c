/* test_evaluate_bench_eco.c: the eco-benchmark's library entry point, th_bench_eco, in
 * process on the simulated plant (no CLI), one compute thread.
 *
 * First call: models of one family with GPT-2's vocabulary: "lean" (L=1, C=32) trained here
 * for 20 AdamW steps on the data (issue 22's trained model), "raw" (lean's shape,
 * random weights: the untrained one), "big" (L=4, C=256, random) and "nan" (lean with one NaN
 * in the final LayerNorm):
 *   - big costs more per scored token, per decoded token and per query than lean (the plant's
 *     power follows the work loop's duty, so energy follows the time a token takes; the
 *     shapes are ~10x apart in work per token, far beyond a busy machine's noise);
 *   - lean saves bits over the uniform baseline, is rated (5 stars, the only comparable one)
 *     and on the Pareto front; raw and big predict no better than chance: "not comparable:
 *     quality", no stars, never rated above lean, off the front;
 *   - every energy figure is the median of the 3 windows asked for, inside its min-max range;
 *     the footprint of 1,000 queries is priced from the median energy per query;
 *   - nan is not rated by the KV-cache check, has no stars and no measurement.
 * Second call: three checkpoints of lean's weights written through io's th_checkpoint_save,
 * their run_meta recording the validation loss under the agreed key "last_val_loss":
 *   - 0.5, far below the data's loss: not rated, naming the 1.5 x + 1 rule;
 *   - 10.8, close to it: rated, the comparison in its checks;
 *   - only the old key "val_loss": rated, loss check skipped (that key is not read).
 * Then the documents: the table, the JSON text and the file th_bench_eco_write_json writes
 * agree; the HTML is written; a path in a missing directory fails with TH_ERR_IO and leaves
 * nothing behind. Errors: a missing model names its path, 0 models, NULL factors, one-token
 * data. */
#include "thermo/io.h"
#include "thermo/pipeline.h"

#include "test_util.h"

#include <jansson.h>
#include <unistd.h>

static const char *data_text =
    "A soft answer turneth away wrath: but grievous words stir up anger.\n"
    "The tongue of the wise useth knowledge aright: but the mouth of fools poureth out foolishness.\n"
    "Better is little with the fear of the LORD than great treasure and trouble therewith.\n"
    "In the beginning God created the heaven and the earth. And the earth was without form, and void; "
    "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.\n";

static th_gpt2 *make_model(int L, int C, int H, int nan) {
    th_gpt2_config cfg = {64, 50257, L, H, C, 1e-5f};
    th_gpt2 *m = NULL;
    if (th_gpt2_create(&cfg, &m) != TH_OK) return NULL;
    th_gpt2_init_random(m, 11);
    if (nan) {
        th_tensor_info ti;
        th_gpt2_tensor_info(&cfg, TH_P_LNFW, &ti);
        th_gpt2_params(m)[ti.offset + 3] = NAN;
    }
    return m;
}

static int save_hf(const char *path, int L, int C, int H, int nan) {
    th_gpt2 *m = make_model(L, C, H, nan);
    th_status st = m ? th_hf_save(m, path) : TH_ERR_NOMEM;
    th_gpt2_free(m);
    return st == TH_OK;
}

/* lean's shape trained on the data's tokens (windows of 32, 20 steps of AdamW at 2e-2):
 * its loss on the same text falls far below ln V, as a trained model's does */
static int save_trained(const char *path) {
    th_gpt2 *m = make_model(1, 32, 2, 0);
    th_tokenizer *tok = NULL;
    int *ids = NULL;
    size_t n = 0;
    int ok = m && th_tokenizer_load_default(&tok) == TH_OK &&
             th_tokenizer_encode(tok, data_text, strlen(data_text), 0, &ids, &n) == TH_OK && n > 66;
    th_adamw_config ac = th_adamw_defaults();
    enum { B = 2, T = 32 };
    int in[B * T], tg[B * T];
    for (int step = 0; ok && step < 20; step++) {
        for (int b = 0; b < B; b++) {
            size_t at = (size_t)(step * B + b) * 7 % (n - T - 1);
            for (int t = 0; t < T; t++) in[b * T + t] = ids[at + t], tg[b * T + t] = ids[at + t + 1];
        }
        float loss = 0;
        ok = th_gpt2_forward(m, in, tg, B, T, &loss) == TH_OK && th_gpt2_zero_grad(m) == TH_OK &&
             th_gpt2_backward(m, 1.0f) == TH_OK && th_gpt2_adamw_step(m, &ac, 2e-2f, th_gpt2_grad_norm(m)) == TH_OK;
    }
    ok = ok && th_hf_save(m, path) == TH_OK;
    th_free(ids);
    th_tokenizer_free(tok);
    th_gpt2_free(m);
    return ok;
}

static int save_checkpoint(const char *path, const char *run_meta) {
    th_gpt2 *m = make_model(1, 32, 2, 0);
    th_train_state ts;
    memset(&ts, 0, sizeof ts);
    snprintf(ts.run_meta, sizeof ts.run_meta, "%s", run_meta);
    th_status st = m ? th_checkpoint_save(path, m, &ts) : TH_ERR_NOMEM;
    th_gpt2_free(m);
    return st == TH_OK;
}

static const th_bench_eco_model *find(const th_bench_eco_result *r, const char *path) {
    for (int i = 0; i < r->n_models; i++)
        if (!strcmp(r->models[i].path, path)) return &r->models[i];
    return NULL;
}

static void check_rated(const th_bench_eco_model *em, const char *name) {
    CHECK(!em->not_rated[0], "%s rated: %s", name, em->not_rated);
    CHECK(em->have_energy && em->queries > 0 && em->prefill_tokens > 0, "%s measured", name);
    CHECK(isfinite(em->ppl.perplexity) && em->ppl.perplexity > 1 && isfinite(em->j_tok_prefill) &&
              em->j_tok_prefill > 0 && isfinite(em->j_tok_decode) && em->j_tok_decode > 0 && em->tokens_per_s > 0,
          "%s: finite figures", name);
    CHECK(em->per_kq.energy_it_kwh > 0 && em->per_kq.co2e_g > 0 &&
              fabs(em->per_kq.energy_it_kwh * 3.6e6 - 1000 * em->j_query) <= 1e-6 * 1000 * em->j_query,
          "%s: 1,000 queries priced (%g kWh vs %g J/query)", name, em->per_kq.energy_it_kwh, em->j_query);
    const th_bench_eco_spread *sp[3] = {&em->s_j_query, &em->s_j_tok_decode, &em->s_j_tok_prefill};
    const double med[3] = {em->j_query, em->j_tok_decode, em->j_tok_prefill};
    for (int k = 0; k < 3; k++)
        CHECK(sp[k]->n == 3 && sp[k]->min <= sp[k]->median && sp[k]->median <= sp[k]->max && sp[k]->median == med[k],
              "%s: figure %d is the median of 3 windows (%g in [%g, %g], n %d)", name, k, sp[k]->median, sp[k]->min,
              sp[k]->max, sp[k]->n);
}

int main(void) {
    char tmp[4096], lean[4200], raw[4200], big[4200], nan[4200], low[4200], close[4200], oldkey[4200], p[4400];
    snprintf(tmp, sizeof tmp, "%s", test_tmp_dir("evaluate_bench_eco"));
    snprintf(lean, sizeof lean, "%s/lean", tmp);
    snprintf(raw, sizeof raw, "%s/raw", tmp);
    snprintf(big, sizeof big, "%s/big", tmp);
    snprintf(nan, sizeof nan, "%s/nan", tmp);
    snprintf(low, sizeof low, "%s/low.ckpt", tmp);
    snprintf(close, sizeof close, "%s/close.ckpt", tmp);
    snprintf(oldkey, sizeof oldkey, "%s/oldkey.ckpt", tmp);
    th_threads_set(1); // see below
    uint64_t t0 = th_now_ns();
    int trained = save_trained(lean);
    printf("lean trained in %.2f s\n", (th_now_ns() - t0) / 1e9);
    CHECK(trained && save_hf(raw, 1, 32, 2, 0) && save_hf(big, 4, 256, 4, 0) && save_hf(nan, 1, 32, 2, 1), "save HF: %s",
          th_last_error());
    CHECK(save_checkpoint(low, "{\"seed\": 1, \"last_val_loss\": 0.5}") &&
              save_checkpoint(close, "{\"last_val_loss\": 10.8}") && save_checkpoint(oldkey, "{\"val_loss\": 0.5}"),
          "save checkpoints: %s", th_last_error());

    th_eco_tables *tables = NULL;
    th_eco_factors factors;
    th_status st = th_eco_tables_load(&tables, NULL);
    if (st == TH_OK) st = th_eco_factors_resolve(tables, NULL, NULL, &factors);
    CHECK(st == TH_OK, "factors: %s", th_last_error());
    th_eco_tables_free(tables);
    if (st != TH_OK) return test_summary();

    // one thread: on a machine shared with other jobs, a second OpenMP thread preempted at a
    // barrier stalls the whole token, and a token's time (the plant's energy) turns to noise
    th_threads_set(1);
    th_bench_eco_opts o = th_bench_eco_defaults();
    CHECK(o.run.hz == 50 && !strcmp(o.run.governor, "none") && o.prompts == 4 && o.decode == 32, "defaults");
    o.run.sensor = "sim";
    o.factors = &factors;
    o.min_s = 0.25; // x 3 windows: two sizes of one family stay apart on a busy machine
    o.repeats = 3;
    o.decode = 16;
    o.prompts = 2;
    const char *models[] = {lean, raw, big, nan};
    size_t len = strlen(data_text);
    th_bench_eco_result *r = NULL;
    st = th_bench_eco(models, 4, data_text, len, &o, &r);
    CHECK(st == TH_OK && r && r->n_models == 4, "th_bench_eco: %s", th_last_error());
    if (st != TH_OK) return test_summary();
    for (int i = 0; i < r->n_models; i++)
        printf("%s: %.4g J/tok prefill, %.4g J/tok decode, %.4g J/query, %ld queries, %d stars\n", r->models[i].path,
               r->models[i].j_tok_prefill, r->models[i].j_tok_decode, r->models[i].j_query, r->models[i].queries,
               r->models[i].stars);
    const th_bench_eco_model *L = find(r, lean), *U = find(r, raw), *B = find(r, big), *N = find(r, nan);
    check_rated(L, "lean");
    check_rated(B, "big");
    check_rated(U, "raw");
    CHECK(B->j_tok_prefill > L->j_tok_prefill, "big costs more per scored token");
    CHECK(B->j_tok_decode > L->j_tok_decode, "big costs more per decoded token");
    CHECK(B->j_query > L->j_query, "big costs more per query");
    printf("bits/byte: lean %.3f, raw %.3f, big %.3f; uniform %.3f\n", L->ppl.bits_per_byte, U->ppl.bits_per_byte,
           B->ppl.bits_per_byte, L->bpb_uniform);
    CHECK(L->bpb_saved > 0.5 && L->comparable && L->stars == 5 && L->pareto && isfinite(L->quality_per_wh) &&
              L->quality_per_wh > 0,
          "trained lean: saves %g bits/byte, comparable %d, %d stars, front %d", L->bpb_saved, L->comparable,
          L->stars, L->pareto);
    CHECK(!U->comparable && U->stars == 0 && !U->pareto && strstr(U->not_comparable, "outside the band"),
          "untrained raw: not comparable (%s), %d stars, front %d", U->not_comparable, U->stars, U->pareto);
    CHECK(U->stars <= L->stars && B->stars <= L->stars, "the untrained are never rated above the trained");
    CHECK(!B->comparable && B->stars == 0 && !B->pareto, "untrained big: not comparable, no stars");
    CHECK(!strcmp(L->name, "lean") && !strcmp(B->name, "big") && !strcmp(r->precision, "f32") && r->repeats == 3,
          "short names, precision, repeats");
    CHECK(r->modeled && L->fig.origin == TH_ORIGIN_MODELED, "the simulated plant's figures are marked modeled");
    CHECK(strstr(N->not_rated, "KV-cache") != NULL, "nan: not rated by the KV check: %s", N->not_rated);
    CHECK(N->stars == 0 && !N->pareto && N->queries == 0 && !N->have_energy, "nan: no rating, no measurement");

    // the loss check, on checkpoints of lean's weights (short windows: only the checks matter)
    th_bench_eco_opts quick = o;
    quick.min_s = 0.05;
    const char *ckpts[] = {low, close, oldkey};
    th_bench_eco_result *c = NULL;
    st = th_bench_eco(ckpts, 3, data_text, len, &quick, &c);
    CHECK(st == TH_OK && c, "th_bench_eco on checkpoints: %s", th_last_error());
    if (c) {
        const th_bench_eco_model *lo = find(c, low), *cl = find(c, close), *ok = find(c, oldkey);
        CHECK(lo->recorded_val_loss == 0.5 && strstr(lo->not_rated, "recorded validation loss 0.500") &&
                  strstr(lo->not_rated, "1.5 x + 1") && lo->stars == 0,
              "last_val_loss 0.5: not rated by the loss rule: %s", lo->not_rated);
        CHECK(!cl->not_rated[0] && cl->recorded_val_loss == 10.8 &&
                  strstr(cl->checks, "vs recorded validation loss 10.800"),
              "last_val_loss 10.8: rated and compared: %s / %s", cl->not_rated, cl->checks);
        CHECK(!ok->not_rated[0] && isnan(ok->recorded_val_loss) && strstr(ok->checks, "no recorded validation loss"),
              "val_loss is not the agreed key: %s / %s", ok->not_rated, ok->checks);
        th_bench_eco_free(c);
    }

    // documents
    char *table = NULL, *json = NULL;
    CHECK(th_bench_eco_table(r, &table) == TH_OK && strstr(table, "MODELED") && strstr(table, "not rated: KV-cache") &&
              strstr(table, "5 stars, Pareto") && strstr(table, "not comparable: quality") &&
              strstr(table, "lean ") < strstr(table, "raw "),
          "table: %s", table ? table : th_last_error());
    CHECK(th_bench_eco_json(r, &json) == TH_OK, "json: %s", th_last_error());
    json_error_t jerr;
    json_t *root = json ? json_loads(json, 0, &jerr) : NULL;
    CHECK(root && json_array_size(json_object_get(root, "models")) == 4, "JSON parses, 4 models");
    if (root) {
        json_t *m0 = json_array_get(json_object_get(root, "models"), 0);
        CHECK(json_integer_value(json_object_get(m0, "rating")) == 5 &&
                  !strcmp(json_string_value(json_object_get(json_object_get(m0, "basis"), "wh_per_1k_queries")),
                          "modeled"),
              "JSON: lean's rating and basis");
        json_t *m1 = json_array_get(json_object_get(root, "models"), 1);
        CHECK(json_is_null(json_object_get(m1, "rating")) && json_is_false(json_object_get(m1, "comparable")) &&
                  strstr(json_string_value(json_object_get(m1, "not_comparable")), "quality") &&
                  json_integer_value(json_object_get(m0, "rank")) == 1,
              "JSON: raw not comparable, lean ranked first");
        json_decref(root);
    }
    snprintf(p, sizeof p, "%s/out.json", tmp);
    unlink(p);
    CHECK(th_bench_eco_write_json(r, p) == TH_OK, "write JSON: %s", th_last_error());
    char *back = NULL;
    size_t back_len = 0;
    CHECK(th_read_file(p, &back, &back_len) == TH_OK && json && back_len == strlen(json) + 1 &&
              !memcmp(back, json, back_len - 1) && back[back_len - 1] == '\n',
          "the JSON file is the JSON text and a newline");
    th_free(back);
    snprintf(p, sizeof p, "%s/report.html", tmp);
    CHECK(th_bench_eco_write_html(r, p) == TH_OK && th_read_file(p, &back, &back_len) == TH_OK &&
              strstr(back, "<svg") && strstr(back, "not rated") && !strstr(back, "src="),
          "HTML report: %s", th_last_error());
    th_free(back);
    snprintf(p, sizeof p, "%s/missing-dir/report.html", tmp);
    CHECK(th_bench_eco_write_html(r, p) == TH_ERR_IO && access(p, F_OK) != 0, "a path in a missing directory: IO");
    th_free(table);
    th_free(json);
    th_bench_eco_free(r);

    // errors: the benchmark itself cannot run
    snprintf(p, sizeof p, "%s/no-such-model", tmp);
    const char *missing[] = {lean, p};
    o.min_s = 0.05;
    r = NULL;
    st = th_bench_eco(missing, 2, data_text, len, &o, &r);
    CHECK(st != TH_OK && r == NULL && strstr(th_last_error(), "no-such-model"), "missing model: %s", th_last_error());
    CHECK(th_bench_eco(models, 0, data_text, len, &o, &r) == TH_ERR_INVALID, "0 models");
    th_bench_eco_opts bad = o;
    bad.factors = NULL;
    CHECK(th_bench_eco(models, 1, data_text, len, &bad, &r) == TH_ERR_INVALID, "no factors");
    CHECK(th_bench_eco(models, 1, "A", 1, &o, &r) == TH_ERR_INVALID && strstr(th_last_error(), "at least 2"),
          "one-token data: %s", th_last_error());
    return test_summary();
}
