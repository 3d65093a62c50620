/* test_io_reference.c: loads the files tests/reference/make_hf_model.py writes (a tiny
 * GPT-2 in Hugging Face layout, both name variants, F32/F16/BF16, mask buffers, tied and
 * untied lm_head; llm.c .bin files in float32 and bfloat16) and checks every parameter
 * against the block Python computed independently: bit-exact. Also every float16 bit
 * pattern against numpy's conversion, and that saving reproduces Python's file tensor
 * for tensor. Needs /usr/bin/python3 with numpy; fails (not skips) without it. */
#include "io/io_internal.h"
#include "thermo/io.h"

#include "test_util.h"

#include <math.h>

static char refdir[512];

static int run_generator(void) {
    const char *src = getenv("THERMO_SOURCE_DIR");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/tests/reference/make_hf_model.py' '%s'",
             src ? src : ".", refdir);
    printf("-- %s\n", cmd);
    fflush(stdout);
    return system(cmd) == 0;
}

/* Compares a model's parameters with an expected.bin of float32, bit for bit. */
static void check_expected(th_gpt2 *m, const char *expected_path, const char *what) {
    size_t len;
    unsigned char *want = test_read_file(expected_path, &len);
    size_t n = th_gpt2_num_params(th_gpt2_get_config(m));
    CHECK(want && len == n * 4, "%s: %s holds %zu floats", what, expected_path, n);
    if (!want || len != n * 4) {
        free(want);
        return;
    }
    const float *p = th_gpt2_params(m);
    size_t diffs = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&p[i], want + 4 * i, 4) != 0 && diffs++ == 0) first = i;
    CHECK(diffs == 0, "%s: %zu of %zu parameters differ (first at %zu)", what, diffs, n, first);
    free(want);
}

static void test_variant(const char *name, th_names_variant names, const char *dtype, int ignored) {
    char dir[600], exp[700];
    snprintf(dir, sizeof dir, "%s/%s", refdir, name);
    snprintf(exp, sizeof exp, "%s/expected.bin", dir);
    printf("-- %s: load and compare every parameter\n", name);
    th_gpt2 *m = NULL;
    th_model_info info;
    th_status s = th_hf_load(dir, &m, &info);
    CHECK(s == TH_OK, "%s: load", name);
    if (s != TH_OK) return;
    const th_gpt2_config *c = th_gpt2_get_config(m);
    CHECK(c->num_layers == 2 && c->num_heads == 4 && c->channels == 64 && c->vocab_size == 500 &&
              c->max_seq_len == 32, "%s: config sizes", name);
    CHECK(info.format == TH_FORMAT_HF_DIR && info.names == names && strcmp(info.dtype, dtype) == 0 &&
              info.ignored_tensors == ignored && info.num_tensors == 4 + 12 * 2 + ignored,
          "%s: info (names %d, dtype %s, %d ignored, %d tensors)", name, info.names, info.dtype,
          info.ignored_tensors, info.num_tensors);
    check_expected(m, exp, name);
    th_gpt2_free(m);
}

static void test_f16_all(void) {
    printf("-- every float16 bit pattern against numpy\n");
    char path[600], exp[600];
    snprintf(path, sizeof path, "%s/f16_all.safetensors", refdir);
    snprintf(exp, sizeof exp, "%s/f16_all_expected.bin", refdir);
    th_safetensors *st = NULL;
    CHECK(th_safetensors_open(path, &st) == TH_OK, "open f16_all");
    size_t len;
    unsigned char *want = test_read_file(exp, &len);
    if (st && want && len == 65536 * 4) {
        float *got = malloc(65536 * 4);
        CHECK(th_safetensors_read_f32(st, th_safetensors_find(st, "all"), got, 65536, 0) == TH_OK,
              "read all");
        int bad = 0;
        for (int i = 0; i < 65536; i++) {
            float w;
            memcpy(&w, want + 4 * i, 4);
            int same = isnan(w) ? isnan(got[i]) : memcmp(&w, &got[i], 4) == 0;
            if (!same && bad++ < 5) printf("  f16 0x%04x: got %a, numpy %a\n", i, got[i], w);
        }
        CHECK(bad == 0, "%d of 65536 float16 values convert differently from numpy", bad);
        free(got);
    }
    free(want);
    th_safetensors_close(st);
}

static void test_untied(void) {
    printf("-- an lm_head.weight unlike wte is refused\n");
    char dir[600];
    snprintf(dir, sizeof dir, "%s/untied", refdir);
    th_gpt2 *m = (th_gpt2 *)&m;
    CHECK_FAIL(th_hf_load(dir, &m, NULL), TH_ERR_UNSUPPORTED, "untied", "untied model");
    CHECK(strstr(th_last_error(), "row 7, column 3") != NULL, "message gives the first difference");
    CHECK(m == (th_gpt2 *)&m, "failed load leaves *out alone");
}

static void test_save_matches_python(void) {
    printf("-- saving reproduces Python's tensors byte for byte, in HF shapes\n");
    char dir[600];
    snprintf(dir, sizeof dir, "%s/plain_f32", refdir);
    th_gpt2 *m = NULL;
    if (th_hf_load(dir, &m, NULL) != TH_OK) {
        CHECK(0, "load plain_f32");
        return;
    }
    const char *out = spath("saved");
    CHECK(th_hf_save(m, out) == TH_OK, "save");
    char a[700], b[700];
    snprintf(a, sizeof a, "%s/model.safetensors", dir);
    snprintf(b, sizeof b, "%s/saved/model.safetensors", scratch_dir);
    th_safetensors *sa = NULL, *sb = NULL;
    CHECK(th_safetensors_open(a, &sa) == TH_OK && th_safetensors_open(b, &sb) == TH_OK, "open both");
    if (sa && sb) {
        CHECK(th_safetensors_count(sa) == th_safetensors_count(sb), "same tensor count");
        int same = 1;
        for (int i = 0; i < th_safetensors_count(sa); i++) {
            const th_st_tensor *x = th_safetensors_tensor(sa, i), *y = th_safetensors_find(sb, x->name);
            if (!y || y->ndim != x->ndim || memcmp(x->shape, y->shape, sizeof x->shape) != 0 ||
                y->dtype != TH_ST_F32) {
                printf("  %s: missing or shaped differently\n", x->name);
                same = 0;
                continue;
            }
            float *fx = malloc(x->count * 4 + 4), *fy = malloc(y->count * 4 + 4);
            th_safetensors_read_f32(sa, x, fx, x->count, 0);
            th_safetensors_read_f32(sb, y, fy, y->count, 0);
            if (memcmp(fx, fy, x->count * 4) != 0) {
                printf("  %s: values differ\n", x->name);
                same = 0;
            }
            free(fx);
            free(fy);
        }
        CHECK(same, "every saved tensor equals Python's");
        CHECK(th_safetensors_metadata(sb, "format") && strcmp(th_safetensors_metadata(sb, "format"), "pt") == 0,
              "saved metadata format = pt");
    }
    th_safetensors_close(sa);
    th_safetensors_close(sb);
    th_gpt2_free(m);
}

static void test_llmc_reference(const char *file, const char *expected, const char *dtype) {
    printf("-- llm.c %s as llm.c's write_model writes it\n", file);
    char path[600], exp[600];
    snprintf(path, sizeof path, "%s/%s", refdir, file);
    snprintf(exp, sizeof exp, "%s/%s", refdir, expected);
    th_gpt2 *m = NULL;
    th_model_info info;
    CHECK(th_llmc_load(path, &m, &info) == TH_OK, "load %s", file);
    if (!m) return;
    CHECK(info.format == TH_FORMAT_LLMC && info.padded_vocab_size == 512 &&
              strcmp(info.dtype, dtype) == 0, "%s: info (Vp %d, %s)", file, info.padded_vocab_size,
          info.dtype);
    check_expected(m, exp, file);
    /* our writer must produce Python's file exactly */
    const char *again = spath("again.bin");
    CHECK(th_llmc_save(m, again, strcmp(dtype, "BF16") == 0) == TH_OK, "save %s", file);
    CHECK(test_same_file(path, again), "%s: our save is byte-identical to llm.c's", file);
    th_gpt2_free(m);
}

int main(void) {
    scratch_make("ref");
    snprintf(refdir, sizeof refdir, "%s/ref", scratch_dir);
    if (!run_generator()) {
        CHECK(0, "the reference generator must run (/usr/bin/python3 with numpy)");
        scratch_cleanup();
        return test_summary();
    }
    test_variant("plain_f32", TH_NAMES_GPT2, "F32", 0);
    test_variant("prefixed_f32", TH_NAMES_TRANSFORMER, "F32", 5);
    test_variant("plain_f16", TH_NAMES_GPT2, "F16", 4);
    test_variant("prefixed_bf16", TH_NAMES_TRANSFORMER, "BF16", 1);
    test_f16_all();
    test_untied();
    test_save_matches_python();
    test_llmc_reference("llmc_f32.bin", "llmc_f32_expected.bin", "F32");
    test_llmc_reference("llmc_bf16.bin", "llmc_bf16_expected.bin", "BF16");
    scratch_cleanup();
    return test_summary();
}
