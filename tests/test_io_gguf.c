/* test_io_gguf.c: GGUF files written by the tests' own writer (gguf_writer.h) load and decode
 * like the same weights saved as safetensors: F32 and F16 bit for bit (F16 against weights
 * rounded to f16 the same way), Q8_0 packed at q8 exactly like the f32 safetensors model at
 * --dtype q8 (the file's blocks are re-quantized to themselves); the tokenizer stored in the
 * file encodes and decodes; every value type and nested arrays parse; bad files (magic,
 * version, truncation at every length, a tensor beyond the end, shapes, missing keys, types,
 * an untied output) are refused with the key or tensor named; `thermo info` and
 * `thermo generate` take a .gguf. */
#include "gguf_writer.h"
#include "test_util.h"

#include "io/io_internal.h"
#include "thermo/io.h"
#include "thermo/text.h"

static const char *dir;

static th_gpt2 *make_model(void) {
    th_gpt2_config cfg = {16, 261, 2, 2, 32, 1e-5f};
    th_gpt2 *m = NULL;
    if (th_gpt2_create(&cfg, &m) != TH_OK) exit(1);
    th_gpt2_init_random(m, 7);
    /* every parameter distinct (biases and norms too), so a misplaced tensor shows */
    th_rng rng;
    th_rng_seed(&rng, 11);
    float *p = th_gpt2_params(m);
    for (size_t i = 0; i < th_gpt2_num_params(&cfg); i++) p[i] += 0.02f * (float)th_rng_normal(&rng);
    return m;
}

static gw_gpt2_opts opts_for(uint32_t wtype) {
    gw_gpt2_opts o = {.wtype = wtype};
    gw_tiny_vocab(&o.tokens, &o.n_tokens, &o.merges, &o.n_merges);
    return o;
}

static void save(const char *path, th_gpt2 *m, const gw_gpt2_opts *o) {
    size_t n;
    unsigned char *b = gw_gpt2(m, o, &n);
    if (!test_write_file(path, b, n)) exit(1);
    free(b);
}

/* Greedy decode: a 4-token prefill, then 6 steps; the logits of all 7 and the tokens. */
#define STEPS 7
static void decode(th_gpt2 *m, float *logits, int *tokens) {
    int V = th_gpt2_get_config(m)->vocab_size;
    th_gpt2_kv *kv = NULL;
    if (th_gpt2_kv_create(m, 16, &kv) != TH_OK) exit(1);
    static const int prompt[4] = {104, 258, 17, 259};
    th_status s = th_gpt2_infer(m, kv, prompt, 4, logits, 0);
    for (int t = 0; t < STEPS; t++) {
        const float *l = logits + (size_t)t * V;
        int best = 0;
        for (int v = 1; v < V; v++)
            if (l[v] > l[best]) best = v;
        tokens[t] = best;
        if (t + 1 < STEPS && s == TH_OK) s = th_gpt2_infer(m, kv, &best, 1, logits + (size_t)(t + 1) * V, 0);
    }
    CHECK(s == TH_OK, "decode");
    th_gpt2_kv_free(kv);
}

/* The 2-D weights rounded to f16, as an F16 file stores them (position_embd stays F32). */
static void round_weights_f16(th_gpt2 *m) {
    static const int w[] = {TH_P_WTE, TH_P_QKVW, TH_P_ATTPROJW, TH_P_FCW, TH_P_FCPROJW};
    float *p = th_gpt2_params(m);
    for (size_t k = 0; k < sizeof w / sizeof w[0]; k++) {
        th_tensor_info ti;
        th_gpt2_tensor_info(th_gpt2_get_config(m), w[k], &ti);
        for (size_t i = 0; i < ti.count; i++) p[ti.offset + i] = th_f16_to_f32(th_f32_to_f16_clamped(p[ti.offset + i]));
    }
}

static void test_formats(void) {
    static const uint32_t types[] = {TH_GGML_F32, TH_GGML_F16, TH_GGML_Q8_0};
    static const char *const names[] = {"F32", "F16", "Q8_0"};
    static const th_dtype want_dtype[] = {TH_DTYPE_F32, TH_DTYPE_F16, TH_DTYPE_Q8};
    for (int k = 0; k < 3; k++) {
        th_gpt2 *orig = make_model(), *ref = make_model();
        if (types[k] == TH_GGML_F16) round_weights_f16(ref);
        gw_gpt2_opts o = opts_for(types[k]);
        o.output = k == 1;    /* F16: an older converter's duplicated output.weight */
        o.all_types = k == 0; /* F32: a key of every value type */
        char gpath[4200], hdir[4200];
        snprintf(gpath, sizeof gpath, "%s/tiny-%s.gguf", dir, names[k]);
        snprintf(hdir, sizeof hdir, "%s/tiny-%s-hf", dir, names[k]);
        save(gpath, orig, &o);
        CHECK(th_hf_save(ref, hdir) == TH_OK, "%s: hf save", names[k]);

        th_gpt2 *g = NULL, *h = NULL;
        th_model_info info;
        CHECK(th_model_load_any(gpath, &g, &info) == TH_OK, "%s: load the gguf", names[k]);
        CHECK(th_model_load_any(hdir, &h, NULL) == TH_OK, "%s: load the safetensors", names[k]);
        if (!g || !h) continue;
        CHECK(info.format == TH_FORMAT_GGUF && info.names == TH_NAMES_GGUF && info.gguf_version == 3,
              "%s: info format %d names %d version %u", names[k], info.format, info.names, info.gguf_version);
        CHECK(strcmp(info.dtype, names[k]) == 0 && info.weights_dtype == want_dtype[k], "%s: info dtype %s, %s",
              names[k], info.dtype, th_dtype_name(info.weights_dtype));
        CHECK(info.tokenizer_tokens == 261 && info.tokenizer_merges == 4 && strcmp(info.arch, "gpt2") == 0,
              "%s: tokenizer %d/%d arch %s", names[k], info.tokenizer_tokens, info.tokenizer_merges, info.arch);
        CHECK(info.ignored_tensors == (k == 1) && info.num_tensors == 4 + 12 * 2 + (k == 1),
              "%s: %d tensors, %d ignored", names[k], info.num_tensors, info.ignored_tensors);
        CHECK(memcmp(&info.config, th_gpt2_get_config(orig), sizeof info.config) == 0, "%s: config", names[k]);
        CHECK(strstr(info.tensor_types, "F32 x") != NULL, "%s: tensor types %s", names[k], info.tensor_types);

        int V = 261;
        float *lg = malloc(sizeof(float) * V * STEPS), *lh = malloc(sizeof(float) * V * STEPS);
        int tg[STEPS], th[STEPS];
        if (types[k] == TH_GGML_Q8_0) {
            /* the f32 view of the file is the dequantized weights, close to the originals */
            float *lo = malloc(sizeof(float) * V * STEPS);
            int to[STEPS];
            decode(g, lg, tg);
            decode(orig, lo, to);
            double ref_max, d = max_abs_diff(lg, lo, (size_t)V * STEPS, &ref_max);
            CHECK(d < 0.05 * ref_max, "Q8_0 dequantized vs f32: max |diff| %g of %g", d, ref_max);
            free(lo);
            th_infer_precision q8 = {TH_DTYPE_Q8, 0, TH_KV_AUTO};
            CHECK(th_gpt2_set_precision(g, &q8) == TH_OK && th_gpt2_set_precision(h, &q8) == TH_OK, "q8 packing");
        } else {
            CHECK(same_params(g, h), "%s: the gguf's parameters equal the safetensors' bit for bit", names[k]);
        }
        decode(g, lg, tg);
        decode(h, lh, th);
        CHECK(memcmp(lg, lh, sizeof(float) * V * STEPS) == 0, "%s: logits of %d decode steps identical", names[k],
              STEPS);
        CHECK(memcmp(tg, th, sizeof tg) == 0, "%s: greedy tokens identical", names[k]);
        free(lg);
        free(lh);
        th_gpt2_free(g);
        th_gpt2_free(h);
        th_gpt2_free(orig);
        th_gpt2_free(ref);
    }
}

static void test_metadata_and_tokenizer(void) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tiny-F32.gguf", dir);
    th_gguf *g = NULL;
    CHECK(th_gguf_open(path, &g) == TH_OK, "open");
    if (!g) return;
    CHECK(th_gguf_version(g) == 3, "version");
    const th_gguf_kv *kv;
    CHECK((kv = th_gguf_find_kv(g, "test.i8")) && kv->type == TH_GGUF_I8 && kv->i == -1, "i8");
    CHECK((kv = th_gguf_find_kv(g, "test.u16")) && kv->u == 0x0201, "u16");
    CHECK((kv = th_gguf_find_kv(g, "test.i16")) && kv->i == -2, "i16");
    CHECK((kv = th_gguf_find_kv(g, "test.i32")) && kv->i == -3, "i32");
    CHECK((kv = th_gguf_find_kv(g, "test.u64")) && kv->u == 1ull << 40, "u64");
    CHECK((kv = th_gguf_find_kv(g, "test.i64")) && kv->i == -5, "i64");
    CHECK((kv = th_gguf_find_kv(g, "test.f64")) && kv->f == 0.25, "f64");
    CHECK((kv = th_gguf_find_kv(g, "test.bool")) && kv->u == 1, "bool");
    CHECK((kv = th_gguf_find_kv(g, "test.nested")) && kv->elem_type == TH_GGUF_ARRAY && kv->count == 2, "nested");
    CHECK((kv = th_gguf_find_kv(g, "gpt2.attention.layer_norm_epsilon")) && kv->f == (double)1e-5f, "eps");
    const char *s;
    uint64_t n;
    kv = th_gguf_find_kv(g, "tokenizer.ggml.tokens");
    CHECK(kv && th_gguf_array_string(g, kv, 258, &s, &n) == TH_OK && n == 4 && memcmp(s, "hell", 4) == 0, "token 258");
    CHECK(kv && th_gguf_array_string(g, kv, 261, &s, &n) == TH_ERR_INVALID, "token 261 is past the end");
    const th_gguf_tensor *t = th_gguf_find_tensor(g, "blk.1.ffn_down.weight");
    CHECK(t && t->ndim == 2 && t->ne[0] == 128 && t->ne[1] == 32 && t->type == TH_GGML_F32, "ffn_down ne [4C, C]");
    th_gguf_close(g);

    th_tokenizer *tok = NULL;
    CHECK(th_model_load_tokenizer(path, &tok) == TH_OK, "the file's tokenizer");
    if (tok) {
        CHECK(th_tokenizer_vocab_size(tok) == 261 && th_tokenizer_eot(tok) == 260, "vocab %d eot %d",
              th_tokenizer_vocab_size(tok), th_tokenizer_eot(tok));
        int *ids = NULL;
        size_t nid = 0;
        CHECK(th_tokenizer_encode(tok, "hello t", 7, 0, &ids, &nid) == TH_OK && nid == 3 && ids[0] == 258 &&
                  ids[1] == 'o' && ids[2] == 259, "encode \"hello t\": %zu ids", nid);
        char *text = NULL;
        size_t tl;
        CHECK(ids && th_tokenizer_decode(tok, ids, nid, &text, &tl) == TH_OK && strcmp(text, "hello t") == 0,
              "decode");
        th_free(ids);
        th_free(text);
        th_tokenizer_free(tok);
    }
}

/* ---------------------------------------------------------------------------------
 * bad files */

static th_status load_mem(const unsigned char *b, size_t n) {
    th_gguf *g = NULL;
    th_status s = th_gguf_open_memory(b, n, "bad.gguf", &g);
    if (s != TH_OK) return s;
    th_gpt2 *m = NULL;
    s = th_gguf_load_model(g, &m, NULL);
    th_gpt2_free(m);
    th_gguf_close(g);
    return s;
}

static th_status load_opts(const gw_gpt2_opts *o) {
    th_gpt2 *m = make_model();
    size_t n;
    unsigned char *b = gw_gpt2(m, o, &n);
    th_status s = load_mem(b, n);
    free(b);
    th_gpt2_free(m);
    return s;
}

static void test_bad_files(void) {
    th_gpt2 *m = make_model();
    gw_gpt2_opts o = opts_for(TH_GGML_Q8_0);
    size_t n;
    unsigned char *good = gw_gpt2(m, &o, &n);
    CHECK(load_mem(good, n) == TH_OK, "the unbroken file loads");
    unsigned char *b = malloc(n);

    memcpy(b, good, n);
    b[0] = 'g';
    CHECK_FAIL(load_mem(b, n), TH_ERR_FORMAT, "magic", "bad magic");
    memcpy(b, good, n);
    b[4] = 2;
    CHECK_FAIL(load_mem(b, n), TH_ERR_UNSUPPORTED, "version 2", "version 2");
    memcpy(b, good, n);
    b[4] = 0, b[7] = 3;
    CHECK_FAIL(load_mem(b, n), TH_ERR_UNSUPPORTED, "big-endian", "a big-endian file");
    memcpy(b, good, n);
    b[16] = 0xff, b[17] = 0xff; /* 65535+ keys in a small file */
    CHECK_FAIL(load_mem(b, n), TH_ERR_FORMAT, "truncated", "a key count beyond the file");

    /* every prefix of the file is refused, without a crash; one ending in the data names the
     * tensor that lies beyond the end */
    int all_refused = 1;
    for (size_t len = 0; len < n; len += len < 16384 ? 1 : 97) {
        memcpy(b, good, len);
        th_status s = load_mem(b, len);
        if (s != TH_ERR_FORMAT) {
            all_refused = 0;
            fprintf(stderr, "prefix of %zu bytes: %s\n", len, th_status_name(s));
        }
    }
    CHECK(all_refused, "every truncation refused with TH_ERR_FORMAT");
    CHECK_FAIL(load_mem(good, n - 1), TH_ERR_FORMAT, "output_norm.bias: data", "a tensor beyond the end of the file");

    gw_gpt2_opts x = o;
    x.bad_shape = "blk.1.attn_qkv.weight";
    CHECK_FAIL(load_opts(&x), TH_ERR_FORMAT, "tensor blk.1.attn_qkv.weight has ne [96, 32]", "qkv transposed");
    x = o;
    x.bad_shape = "blk.0.ffn_up.bias";
    CHECK_FAIL(load_opts(&x), TH_ERR_FORMAT, "blk.0.ffn_up.bias", "a short bias");
    static const char *const keys[] = {"general.architecture", "gpt2.block_count", "gpt2.context_length",
                                       "gpt2.embedding_length", "gpt2.attention.head_count",
                                       "gpt2.attention.layer_norm_epsilon"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        x = o;
        x.omit_key = keys[k];
        char want[128];
        snprintf(want, sizeof want, "missing key %s", keys[k]);
        CHECK_FAIL(load_opts(&x), TH_ERR_FORMAT, want, keys[k]);
    }
    x = o;
    x.arch = "llama";
    CHECK_FAIL(load_opts(&x), TH_ERR_UNSUPPORTED, "general.architecture is \"llama\"", "another architecture");
    x = o;
    x.type_of = "blk.0.ffn_down.weight";
    x.type_as = 2; /* Q4_0 */
    CHECK_FAIL(load_opts(&x), TH_ERR_UNSUPPORTED, "blk.0.ffn_down.weight has type Q4_0", "a Q4_0 tensor");
    x = o;
    x.type_of = "blk.0.ffn_down.bias";
    x.type_as = 99;
    CHECK_FAIL(load_opts(&x), TH_ERR_UNSUPPORTED, "blk.0.ffn_down.bias has ggml type 99", "an unknown type");
    for (int w = 0; w < 2; w++) {
        x = opts_for(w ? TH_GGML_Q8_0 : TH_GGML_F32);
        x.output = 1;
        CHECK(load_opts(&x) == TH_OK, "a duplicated output.weight is accepted (%s)", w ? "Q8_0" : "F32");
        x.output = 2;
        CHECK_FAIL(load_opts(&x), TH_ERR_UNSUPPORTED, "output.weight differs from token_embd.weight", "untied");
    }
    x = o;
    x.n_tokens = 260;
    CHECK_FAIL(load_opts(&x), TH_ERR_FORMAT, "tokenizer.ggml.tokens has 260 tokens", "tokens vs rows");

    /* small hand-made files for the metadata rules */
    struct {
        const char *what, *needle;
        th_status want;
    } cases[] = {
        {"alignment 3", "general.alignment", TH_ERR_FORMAT},
        {"a key twice", "key a.b appears twice", TH_ERR_FORMAT},
        {"value type 13", "key a.b: unknown value type 13", TH_ERR_FORMAT},
        {"an array of 2^62", "key a.b: array of", TH_ERR_FORMAT},
        {"a bool of 2", "key a.b: bool value 2", TH_ERR_FORMAT},
        {"a tensor of 5 dims", "tensor t has 5 dimensions", TH_ERR_FORMAT},
        {"overlapping tensors", "tensors t and u overlap", TH_ERR_FORMAT},
        {"no architecture", "missing key general.architecture", TH_ERR_FORMAT},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        gw_file f;
        gw_init(&f, 32);
        uint64_t ne[5] = {4, 1, 1, 1, 1};
        float data[8] = {0};
        switch (k) {
        case 0: gw_kv_u32(&f, "general.alignment", 3); break;
        case 1: gw_kv_u32(&f, "a.b", 1), gw_kv_u32(&f, "a.b", 2); break;
        case 2: gw_u32(gw_key(&f, "a.b", 13), 0); break;
        case 3: {
            gw_buf *kb = gw_key(&f, "a.b", TH_GGUF_ARRAY);
            gw_u32(kb, TH_GGUF_U32);
            gw_u64(kb, 1ull << 62);
            break;
        }
        case 4: gw_put(gw_key(&f, "a.b", TH_GGUF_BOOL), "\x02", 1); break;
        case 5: gw_tensor(&f, "t", TH_GGML_F32, 5, ne, data, 16); break;
        case 6: /* u's info points at t's data */
            gw_tensor(&f, "t", TH_GGML_F32, 1, ne, data, 16);
            gw_str(&f.info, "u");
            gw_u32(&f.info, 1);
            gw_u64(&f.info, 4);
            gw_u32(&f.info, TH_GGML_F32);
            gw_u64(&f.info, 0);
            f.n_tensors++;
            break;
        default: gw_kv_u32(&f, "a.b", 1); break;
        }
        size_t len;
        unsigned char *fb = gw_finish(&f, &len);
        CHECK_FAIL(load_mem(fb, len), cases[k].want, cases[k].needle, cases[k].what);
        free(fb);
    }

    /* the tokenizer's own keys */
    x = o;
    x.tokens = NULL;
    th_gpt2 *tm = make_model();
    unsigned char *nb = gw_gpt2(tm, &x, &n);
    th_gguf *g = NULL;
    th_tokenizer *tok = NULL;
    CHECK(th_gguf_open_memory(nb, n, "notok.gguf", &g) == TH_OK, "open a file without a tokenizer");
    if (g) CHECK_FAIL(th_gguf_load_tokenizer(g, &tok), TH_ERR_FORMAT, "missing key tokenizer.ggml.model", "no tokenizer");
    th_gguf_close(g);
    free(nb);
    th_gpt2_free(tm);

    free(b);
    free(good);
    th_gpt2_free(m);
}

/* ---------------------------------------------------------------------------------
 * the CLI */

static int run(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void) {
    const char *thermo = getenv("THERMO_BIN");
    if (!thermo) {
        printf("skip: THERMO_BIN not set (run under ctest)\n");
        return;
    }
    static char out[65536];
    char cmd[9000];
    snprintf(cmd, sizeof cmd, "'%s' info '%s/tiny-Q8_0.gguf' 2>&1", thermo, dir);
    int rc = run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "format:       gguf") && strstr(out, "version 3, architecture gpt2") &&
              strstr(out, "Q8_0 x") && strstr(out, "--dtype q8 by default") &&
              strstr(out, "in the file (261 tokens, 4 merges)") && strstr(out, "2 layers, 2 heads, 32 channels"),
          "thermo info: exit %d:\n%s", rc, out);
    snprintf(cmd, sizeof cmd, "'%s' info --json '%s/tiny-F16.gguf' 2>&1", thermo, dir);
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "\"tensor_types\"") && strstr(out, "\"default_dtype\": \"f16\""),
          "thermo info --json: exit %d:\n%s", rc, out);
    // a file of another GGUF version is a model this build cannot load: exit 3, version named
    char src[4096], bad[4096];
    snprintf(src, sizeof src, "%s/tiny-Q8_0.gguf", dir);
    snprintf(bad, sizeof bad, "%s/version2.gguf", dir);
    size_t n = 0;
    unsigned char *bytes = test_read_file(src, &n);
    CHECK(bytes && n > 8, "read %s", src);
    if (bytes) {
        bytes[4] = 2; // the little-endian u32 after "GGUF"
        CHECK(test_write_file(bad, bytes, n), "write %s", bad);
        free(bytes);
    }
    snprintf(cmd, sizeof cmd, "'%s' info '%s' 2>&1", thermo, bad);
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 3 && strstr(out, "GGUF version 2"), "thermo info on a version-2 file: exit %d:\n%s", rc, out);
    // ... and so are the commands that load one to run it
    const char *loaders[] = {"generate --prompt hi --max-tokens 1", "bench model --dtype f32 --rounds 1 --steps 1"};
    for (int i = 0; i < 2; i++) {
        snprintf(cmd, sizeof cmd, "'%s' %s --model '%s' 2>&1", thermo, loaders[i], bad);
        rc = run(cmd, out, sizeof out);
        CHECK(rc == 3 && strstr(out, "GGUF version 2") && strstr(out, "--model"),
              "thermo %s on a version-2 file: exit %d (want 3):\n%s", loaders[i], rc, out);
    }
    snprintf(cmd, sizeof cmd,
             "'%s' generate --model '%s/tiny-Q8_0.gguf' --prompt 'hello t' --temperature 0 --max-tokens 4 "
             "--threads 2 2>/dev/null", thermo, dir);
    rc = run(cmd, out, sizeof out);
    CHECK(rc == 0 && strlen(out) > 1, "thermo generate --model FILE.gguf: exit %d, printed \"%s\"", rc, out);
}

int main(void) {
    dir = test_tmp_dir("io_gguf");
    test_formats();
    test_metadata_and_tokenizer();
    test_bad_files();
    test_cli();
    return test_summary();
}
