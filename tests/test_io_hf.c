/* test_io_hf.c: Hugging Face GPT-2 directories without the Python reference: save → load
 * identity, the config.json we write, and every way a directory can be wrong (missing,
 * extra and misshapen tensors against config.json, broken or unsupported configs, mixed
 * names, unconvertible dtypes), allocation and write fault injection, and
 * th_model_load_any on each format. */
#include "io/io_internal.h"
#include "thermo/io.h"

#include "test_util.h"

#include <jansson.h>

/* Copies dir/model.safetensors to dst_dir with one tensor dropped, renamed or added. */
static int rewrite_tensors(const char *src_dir, const char *dst_dir, const char *drop,
                           const char *rename_from, const char *rename_to, const char *extra) {
    char in[600], out[600];
    snprintf(in, sizeof in, "%s/model.safetensors", src_dir);
    snprintf(out, sizeof out, "%s/model.safetensors", dst_dir);
    mkdir(dst_dir, 0777);
    th_safetensors *st = NULL;
    if (th_safetensors_open(in, &st) != TH_OK) return 0;
    int n = th_safetensors_count(st), k = 0;
    th_st_source *src = calloc((size_t)n + 1, sizeof *src);
    float **bufs = calloc((size_t)n + 1, sizeof *bufs);
    static const float four[4] = {1, 2, 3, 4};
    for (int i = 0; i < n; i++) {
        const th_st_tensor *t = th_safetensors_tensor(st, i);
        if (drop && strcmp(t->name, drop) == 0) continue;
        bufs[k] = malloc(t->count * 4 + 4);
        th_safetensors_read_f32(st, t, bufs[k], t->count, 0);
        src[k].name = rename_from && strcmp(t->name, rename_from) == 0 ? rename_to : t->name;
        src[k].ndim = t->ndim;
        memcpy(src[k].shape, t->shape, sizeof t->shape);
        src[k].data = bufs[k];
        k++;
    }
    if (extra) src[k++] = (th_st_source){extra, 1, {4}, four, 0};
    int ok = th_safetensors_write(out, src, k, NULL) == TH_OK;
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(src);
    th_safetensors_close(st);
    return ok;
}

/* Writes dst_dir/config.json: src_dir's with `key` set to integer `value` (or, with
 * svalue, a string; or removed if both are unset) or replaced by raw text. */
static int rewrite_config(const char *src_dir, const char *dst_dir, const char *key, long long value,
                          const char *svalue, const char *raw) {
    char in[600], out[600];
    snprintf(in, sizeof in, "%s/config.json", src_dir);
    snprintf(out, sizeof out, "%s/config.json", dst_dir);
    mkdir(dst_dir, 0777);
    if (raw) return test_write_file(out, raw, strlen(raw));
    json_t *root = json_load_file(in, 0, NULL);
    if (!root) return 0;
    if (svalue) json_object_set_new(root, key, json_string(svalue));
    else if (value) json_object_set_new(root, key, json_integer(value));
    else json_object_del(root, key);
    int ok = json_dump_file(root, out, 0) == 0;
    json_decref(root);
    return ok;
}

static void copy_file(const char *from_dir, const char *to_dir, const char *name) {
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/%s", from_dir, name);
    snprintf(b, sizeof b, "%s/%s", to_dir, name);
    mkdir(to_dir, 0777);
    size_t n;
    unsigned char *p = test_read_file(a, &n);
    if (!p || !test_write_file(b, p, n)) printf("FAIL copying %s\n", a);
    free(p);
}

static th_gpt2 *model;
static char good[512];

static void test_round_trip(void) {
    printf("-- save then load gives the same model; config.json says what HF needs\n");
    CHECK(th_hf_save(model, good) == TH_OK, "save");
    th_gpt2 *back = NULL;
    th_model_info info;
    CHECK(th_hf_load(good, &back, &info) == TH_OK, "load");
    CHECK(back && same_params(model, back), "identical parameters and config");
    CHECK(info.format == TH_FORMAT_HF_DIR && info.names == TH_NAMES_GPT2 &&
              strcmp(info.dtype, "F32") == 0 && info.num_tensors == 4 + 12 * 2 &&
              info.num_params == th_gpt2_num_params(th_gpt2_get_config(model)),
          "info");
    th_gpt2_free(back);

    char cpath[600];
    snprintf(cpath, sizeof cpath, "%s/config.json", good);
    json_t *c = json_load_file(cpath, 0, NULL);
    CHECK(c != NULL, "config.json parses");
    if (c) {
        json_t *arch = json_object_get(c, "architectures");
        CHECK(json_is_array(arch) &&
                  strcmp(json_string_value(json_array_get(arch, 0)), "GPT2LMHeadModel") == 0,
              "architectures");
        CHECK(strcmp(json_string_value(json_object_get(c, "model_type")), "gpt2") == 0 &&
                  strcmp(json_string_value(json_object_get(c, "activation_function")), "gelu_new") == 0,
              "model_type, activation_function");
        CHECK(json_integer_value(json_object_get(c, "n_layer")) == 2 &&
                  json_integer_value(json_object_get(c, "n_head")) == 2 &&
                  json_integer_value(json_object_get(c, "n_embd")) == 16 &&
                  json_integer_value(json_object_get(c, "n_positions")) == 8 &&
                  json_integer_value(json_object_get(c, "vocab_size")) == 50,
              "sizes");
        CHECK(json_real_value(json_object_get(c, "layer_norm_epsilon")) == 1e-5, "eps written as 1e-05");
        json_decref(c);
    }
    /* HF shapes: Conv1D weights (in, out) */
    char spath_[600];
    snprintf(spath_, sizeof spath_, "%s/model.safetensors", good);
    th_safetensors *st = NULL;
    CHECK(th_safetensors_open(spath_, &st) == TH_OK, "open saved safetensors");
    if (st) {
        const th_st_tensor *a = th_safetensors_find(st, "h.1.attn.c_attn.weight"),
                           *f = th_safetensors_find(st, "h.0.mlp.c_proj.weight");
        CHECK(a && a->shape[0] == 16 && a->shape[1] == 48, "c_attn.weight is (C, 3C)");
        CHECK(f && f->shape[0] == 64 && f->shape[1] == 16, "mlp.c_proj.weight is (4C, C)");
        CHECK(!th_safetensors_find(st, "lm_head.weight"), "no lm_head (tied)");
        th_safetensors_close(st);
    }
}

/* Loads dir expecting failure with status and needle; *out must stay untouched. */
static void expect_bad(const char *dir, th_status status, const char *needle, const char *what) {
    th_gpt2 *m = (th_gpt2 *)&m;
    CHECK_FAIL(th_hf_load(dir, &m, NULL), status, needle, what);
    CHECK(m == (th_gpt2 *)&m, "%s: *out untouched", what);
}

static void test_bad_dirs(void) {
    printf("-- wrong directories fail with the tensor or field named\n");
    struct {
        const char *key;
        long long value;
        const char *needle;
        th_status status;
    } cfgs[] = {
        {"n_layer", 3, "missing tensor h.2.", TH_ERR_FORMAT},
        {"n_layer", 1, "unknown tensor h.1.", TH_ERR_FORMAT},
        {"n_positions", 16, "tensor wpe.weight has shape [8, 16] but", TH_ERR_FORMAT},
        {"vocab_size", 51, "tensor wte.weight has shape [50, 16]", TH_ERR_FORMAT},
        {"n_embd", 32, "has shape", TH_ERR_FORMAT},
        {"n_head", 3, "not divisible", TH_ERR_FORMAT},
        {"n_head", -1, "n_head", TH_ERR_FORMAT},
        {"n_layer", 0, "missing \"n_layer\"", TH_ERR_FORMAT},
        {"n_inner", 99, "n_inner", TH_ERR_UNSUPPORTED},
    };
    char dir[600];
    snprintf(dir, sizeof dir, "%s/bad", scratch_dir);
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) {
        copy_file(good, dir, "model.safetensors");
        CHECK(rewrite_config(good, dir, cfgs[i].key, cfgs[i].value, NULL, NULL), "rewrite config");
        char what[100];
        snprintf(what, sizeof what, "config %s = %lld", cfgs[i].key, cfgs[i].value);
        expect_bad(dir, cfgs[i].status, cfgs[i].needle, what);
    }
    CHECK(rewrite_config(good, dir, "activation_function", 0, "relu", NULL), "rewrite");
    expect_bad(dir, TH_ERR_UNSUPPORTED, "activation_function", "relu");
    CHECK(rewrite_config(good, dir, "model_type", 0, "llama", NULL), "rewrite");
    expect_bad(dir, TH_ERR_UNSUPPORTED, "model_type", "llama");
    CHECK(rewrite_config(good, dir, NULL, 0, NULL, "{\"n_layer\": 2,"), "rewrite");
    expect_bad(dir, TH_ERR_FORMAT, "config.json: not valid JSON", "broken config.json");
    CHECK(rewrite_config(good, dir, NULL, 0, NULL, "[2]"), "rewrite");
    expect_bad(dir, TH_ERR_FORMAT, "not a JSON object", "config.json array");
    CHECK(rewrite_config(good, dir, NULL, 0, NULL,
                         "{\"n_layer\":2,\"n_head\":2,\"n_embd\":16,\"n_ctx\":8,\"vocab_size\":50}"),
          "rewrite");
    {
        th_gpt2 *m = NULL;
        CHECK(th_hf_load(dir, &m, NULL) == TH_OK && m && same_params(m, model),
              "a minimal config (n_ctx, no eps) loads");
        th_gpt2_free(m);
    }
    CHECK(rewrite_config(good, dir, "layer_norm_epsilon", 0, "small", NULL), "rewrite");
    expect_bad(dir, TH_ERR_FORMAT, "layer_norm_epsilon", "string epsilon");

    copy_file(good, dir, "config.json");
    CHECK(rewrite_tensors(good, dir, "ln_f.bias", NULL, NULL, NULL), "drop");
    expect_bad(dir, TH_ERR_FORMAT, "missing tensor ln_f.bias", "dropped ln_f.bias");
    CHECK(rewrite_tensors(good, dir, NULL, NULL, NULL, "h.0.attn.rotary"), "extra");
    expect_bad(dir, TH_ERR_FORMAT, "unknown tensor h.0.attn.rotary", "extra tensor");
    CHECK(rewrite_tensors(good, dir, NULL, NULL, NULL, "h.0.attn.masked_bias"), "mask buffer");
    {
        th_gpt2 *m = NULL;
        th_model_info info;
        CHECK(th_hf_load(dir, &m, &info) == TH_OK && same_params(m, model) && info.ignored_tensors == 1,
              "a masked_bias buffer is ignored");
        th_gpt2_free(m);
    }
    CHECK(rewrite_tensors(good, dir, NULL, NULL, NULL, "h.5.attn.bias"), "mask of a missing layer");
    expect_bad(dir, TH_ERR_FORMAT, "unknown tensor h.5.attn.bias", "mask buffer past n_layer");
    CHECK(rewrite_tensors(good, dir, NULL, "ln_f.bias", "transformer.ln_f.bias", NULL), "mix");
    expect_bad(dir, TH_ERR_FORMAT, "unknown tensor transformer.ln_f.bias", "mixed name variants");
    CHECK(rewrite_tensors(good, dir, "wte.weight", NULL, NULL, NULL), "no wte");
    expect_bad(dir, TH_ERR_FORMAT, "not a GPT-2 model", "no wte");
    /* an I32 tensor in a parameter's place */
    {
        char st[700];
        snprintf(st, sizeof st, "%s/model.safetensors", dir);
        CHECK(rewrite_tensors(good, dir, NULL, NULL, NULL, NULL), "copy");
        size_t n;
        unsigned char *p = test_read_file(st, &n);
        /* the header is JSON: the first "F32" belongs to some tensor; make it I32 */
        char *hit = p ? strstr((char *)p + 8, "\"F32\"") : NULL;
        if (hit) hit[1] = 'I';
        CHECK(hit && test_write_file(st, p, n), "patch a dtype");
        free(p);
        expect_bad(dir, TH_ERR_UNSUPPORTED, "dtype I32", "I32 parameter");
    }
    rewrite_config(good, dir, NULL, 0, NULL, "{}");
    char miss[700];
    snprintf(miss, sizeof miss, "%s/nothing-here", scratch_dir);
    expect_bad(miss, TH_ERR_IO, "config.json: cannot open", "missing directory");
}

static void test_faults(void) {
    printf("-- allocation failures while loading; failed saves keep the old directory\n");
    int n, clean = 1;
    for (n = 1; n < 200; n++) {
        th_gpt2 *m = (th_gpt2 *)&m;
        th_alloc_fail_nth(n);
        th_status s = th_hf_load(good, &m, NULL);
        th_alloc_fail_nth(0);
        if (s == TH_OK) {
            clean &= same_params(m, model);
            th_gpt2_free(m);
            break;
        }
        clean &= s == TH_ERR_NOMEM && m == (th_gpt2 *)&m;
    }
    CHECK(clean && n > 1 && n < 200, "load fails with TH_ERR_NOMEM and no change until allocation %d", n);

    th_gpt2 *other = tiny_model(99);
    char st[600];
    snprintf(st, sizeof st, "%s/model.safetensors", good);
    char cfgp[600];
    snprintf(cfgp, sizeof cfgp, "%s/config.json", good);
    SPATH(keep, "keep.safetensors");
    SPATH(keepc, "keep.json");
    copy_file(good, scratch_dir, "model.safetensors");
    copy_file(good, scratch_dir, "config.json");
    rename(spath("model.safetensors"), keep);
    rename(spath("config.json"), keepc);
    /* a different config too, so a half-done save would show in config.json */
    th_gpt2_free(other);
    th_gpt2_config oc = *th_gpt2_get_config(model);
    oc.max_seq_len = 12;
    CHECK(th_gpt2_create(&oc, &other) == TH_OK, "create other");
    th_gpt2_init_random(other, 3);
    clean = 1;
    long long k;
    for (k = 1; k < 1000000; k += k < 64 ? 1 : 97) {
        th_io_fail_write_after(k);
        th_status s = th_hf_save(other, good);
        th_io_fail_write_after(0);
        if (s == TH_OK) break;
        th_gpt2 *m = NULL;
        clean &= s == TH_ERR_IO && test_same_file(st, keep) && test_same_file(cfgp, keepc) &&
                 th_hf_load(good, &m, NULL) == TH_OK && same_params(m, model);
        th_gpt2_free(m);
    }
    CHECK(clean && k > 64, "a save failing at byte k < %lld leaves the old model loadable", k);
    th_gpt2 *m = NULL;
    CHECK(th_hf_load(good, &m, NULL) == TH_OK && same_params(m, other), "the full save replaced it");
    th_gpt2_free(m);
    th_gpt2_free(other);
    CHECK(th_hf_save(model, good) == TH_OK, "restore");
}

static void test_load_any(void) {
    printf("-- th_model_load_any recognizes each format\n");
    struct {
        const char *path;
        th_model_format format;
    } cases[4];
    SPATH(ll, "m.bin");
    SPATH(ck, "m.ckpt");
    char stf[600];
    snprintf(stf, sizeof stf, "%s/model.safetensors", good);
    CHECK(th_llmc_save(model, ll, 0) == TH_OK, "save llm.c");
    th_train_state ts = {.step = 5};
    snprintf(ts.run_meta, sizeof ts.run_meta, "gpt2");
    CHECK(th_checkpoint_save(ck, model, &ts) == TH_OK, "save checkpoint");
    th_model_info info;
    cases[0].path = good, cases[0].format = TH_FORMAT_HF_DIR;
    cases[1].path = stf, cases[1].format = TH_FORMAT_SAFETENSORS;
    cases[2].path = ll, cases[2].format = TH_FORMAT_LLMC;
    cases[3].path = ck, cases[3].format = TH_FORMAT_CHECKPOINT;
    for (int i = 0; i < 4; i++) {
        th_gpt2 *m = NULL;
        memset(&info, 0, sizeof info);
        th_status s = th_model_load_any(cases[i].path, &m, &info);
        CHECK(s == TH_OK && info.format == cases[i].format && same_params(m, model) &&
                  info.num_params == th_gpt2_num_params(th_gpt2_get_config(model)),
              "load_any %s as %s", cases[i].path, th_model_format_name(cases[i].format));
        if (i == 3) CHECK(info.train_step == 5 && strcmp(info.run_meta, "gpt2") == 0, "checkpoint info");
        if (i == 2) CHECK(info.padded_vocab_size == 128, "llm.c info");
        th_gpt2_free(m);
    }
    SPATH(junk, "junk.bin");
    CHECK(test_write_file(junk, "hello, world, not a model", 25), "write junk");
    th_gpt2 *m = (th_gpt2 *)&m;
    CHECK_FAIL(th_model_load_any(junk, &m, NULL), TH_ERR_FORMAT, "not a recognized model", "junk");
    CHECK_FAIL(th_model_load_any(spath("absent"), &m, NULL), TH_ERR_IO, "absent", "absent path");
    SPATH(lone_dir, "lone");
    mkdir(lone_dir, 0777);
    copy_file(good, lone_dir, "model.safetensors");
    char lone[700];
    snprintf(lone, sizeof lone, "%s/model.safetensors", lone_dir);
    CHECK_FAIL(th_model_load_any(lone, &m, NULL), TH_ERR_IO, "needs a config.json", "no config");
    CHECK(m == (th_gpt2 *)&m, "failed load_any leaves *out alone");
}

int main(void) {
    scratch_make("hf");
    snprintf(good, sizeof good, "%s/good", scratch_dir);
    model = tiny_model(7);
    test_round_trip();
    test_bad_dirs();
    test_faults();
    test_load_any();
    th_gpt2_free(model);
    scratch_cleanup();
    return test_summary();
}
