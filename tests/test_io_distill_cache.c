/* test_io_distill_cache.c: the teacher cache format. Round trip (ids exact, log-probs within
 * fp16's rounding), lookup by a window's tokens, the fp16 conversion against the decoder,
 * and every damage a loader must catch: truncation, trailing bytes, a flipped payload byte,
 * a flipped header byte, a wrong magic and version; a failed save leaves the old file. */
#include <stdint.h>

#include "io/io_internal.h"
#include "test_util.h"
#include "thermo/io.h"

enum { K = 4, SEQ = 5, VOCAB = 300, WINDOWS = 3 };

static void window(int w, int *inputs, int *ids, float *logp) {
    for (int t = 0; t < SEQ; t++) inputs[t] = (w * 31 + t * 7) % VOCAB;
    for (int i = 0; i < SEQ * K; i++) {
        ids[i] = (w * 97 + i * 13) % VOCAB;
        logp[i] = -0.01f - 0.37f * (float)(i % K) - 0.001f * (float)w;
    }
}

static th_tcache *make(int n) {
    th_tcache_header h = {0, K, SEQ, VOCAB, WINDOWS, 0, 0x1234, 0x5678, 12.5, 3.0, 0.25, 0.5};
    th_tcache *c = NULL;
    CHECK(th_tcache_create(&h, &c) == TH_OK, "create: %s", th_last_error());
    int in[SEQ], ids[SEQ * K];
    float lp[SEQ * K];
    for (int w = 0; w < n; w++) {
        window(w, in, ids, lp);
        CHECK(th_tcache_append(c, in, ids, lp) == TH_OK, "append %d: %s", w, th_last_error());
    }
    return c;
}

static void test_f16(void) {
    const float xs[] = {0.0f, -0.0f, 1.0f, -1.5f, -0.3333f, -12.34f, -65504.0f, -1e-6f, -3e-5f, 6.1e-5f};
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        float back = th_f16_to_f32(th_f32_to_f16_clamped(xs[i]));
        double tol = fabs(xs[i]) * (1.0 / 2048) + 6e-8; // half an fp16 ulp, and the subnormal step
        CHECK(fabs(back - xs[i]) <= tol, "fp16 of %g came back %g", xs[i], back);
    }
    CHECK(th_f16_to_f32(th_f32_to_f16_clamped(-1e30f)) == -65504.0f, "large magnitudes clamp to -65504");
    CHECK(th_f16_to_f32(th_f32_to_f16_clamped(-INFINITY)) == -65504.0f, "-inf (probability 0) clamps");
}

static void test_round_trip(const char *dir) {
    const char *path = test_path_in(dir, "cache.bin");
    th_tcache *c = make(WINDOWS);
    CHECK(th_tcache_header_of(c)->flags & TH_TCACHE_COMPLETE, "complete after the last window");
    CHECK(th_tcache_append(c, (int[SEQ]){0}, (int[SEQ * K]){0}, (float[SEQ * K]){0}) == TH_ERR_STATE,
          "a complete cache takes no more windows");
    CHECK(th_tcache_save(c, path) == TH_OK, "save: %s", th_last_error());
    size_t len = 0;
    free(test_read_file(path, &len));
    CHECK(len == TH_TCACHE_HEADER_BYTES + WINDOWS * (8 + 4 * SEQ * K), "size %zu: 4 bytes per (token, k) + hash", len);
    th_tcache *r = NULL;
    CHECK(th_tcache_load(path, &r) == TH_OK, "load: %s", th_last_error());
    if (r) {
        const th_tcache_header *h = th_tcache_header_of(r);
        CHECK(h->k == K && h->seq == SEQ && h->vocab_size == VOCAB && h->windows_done == WINDOWS &&
                  h->teacher_fp == 0x1234 && h->data_fp == 0x5678 && h->energy_j == 12.5 && h->co2e_g == 0.25,
              "header round trip");
        for (int w = WINDOWS - 1; w >= 0; w--) { // any order
            int in[SEQ], ids[SEQ * K], got_ids[SEQ * K];
            float lp[SEQ * K], got_lp[SEQ * K];
            window(w, in, ids, lp);
            CHECK(th_tcache_lookup(r, in, got_ids, got_lp) == TH_OK, "lookup %d: %s", w, th_last_error());
            CHECK(memcmp(ids, got_ids, sizeof ids) == 0, "window %d: ids differ", w);
            double d = max_abs_diff(got_lp, lp, SEQ * K, NULL);
            CHECK(d <= 1e-3, "window %d: log-probs off by %g", w, d);
        }
        int other[SEQ] = {1, 2, 3, 4, 5}, ids[SEQ * K];
        float lp[SEQ * K];
        CHECK_FAIL(th_tcache_lookup(r, other, ids, lp), TH_ERR_FORMAT, "no window holds", "unknown window");
    }
    th_tcache_free(r);
    th_tcache_free(c);
}

static void expect_broken(const char *path, const unsigned char *bytes, size_t n, const char *needle, const char *what) {
    CHECK(test_write_file(path, bytes, n), "write %s", path);
    th_tcache *r = NULL;
    th_status st = th_tcache_load(path, &r);
    CHECK(st != TH_OK && strstr(th_last_error(), needle) && strstr(th_last_error(), path),
          "%s: got %s '%s', want a message with the path and '%s'", what, th_status_name(st), th_last_error(), needle);
    CHECK(r == NULL, "%s: nothing handed out", what);
}

static void test_damage(const char *dir) {
    const char *good = test_path_in(dir, "good.bin");
    char bad[4096];
    snprintf(bad, sizeof bad, "%s", test_path_in(dir, "bad.bin"));
    th_tcache *c = make(WINDOWS);
    CHECK(th_tcache_save(c, good) == TH_OK, "save");
    size_t len = 0;
    unsigned char *b = test_read_file(good, &len);
    expect_broken(bad, b, len - 7, "truncated", "truncated");
    expect_broken(bad, b, 64, "shorter than its header", "header only");
    unsigned char *more = malloc(len + 3);
    memcpy(more, b, len);
    memset(more + len, 0, 3);
    expect_broken(bad, more, len + 3, "trailing bytes", "trailing bytes");
    free(more);
    b[len - 2] ^= 0x40;
    expect_broken(bad, b, len, "payload's checksum", "flipped payload byte");
    b[len - 2] ^= 0x40;
    b[57] ^= 1; // inside energy_j
    expect_broken(bad, b, len, "header's checksum", "flipped header byte");
    b[57] ^= 1;
    b[0] = 'X';
    expect_broken(bad, b, len, "no THDC magic", "magic");
    b[0] = 'T';
    b[4] = 9;
    expect_broken(bad, b, len, "version 9", "version");
    free(b);

    // a partial cache (resumable) loads, incomplete
    th_tcache *p = make(2);
    CHECK(th_tcache_save(p, bad) == TH_OK, "save partial");
    th_tcache *r = NULL;
    CHECK(th_tcache_load(bad, &r) == TH_OK, "partial load: %s", th_last_error());
    if (r) {
        CHECK(th_tcache_header_of(r)->windows_done == 2 && !(th_tcache_header_of(r)->flags & TH_TCACHE_COMPLETE),
              "a partial cache says so");
        int in[SEQ], ids[SEQ * K];
        float lp[SEQ * K];
        window(2, in, ids, lp);
        CHECK(th_tcache_append(r, in, ids, lp) == TH_OK, "resume: append the last window");
        CHECK(th_tcache_header_of(r)->flags & TH_TCACHE_COMPLETE, "complete after resuming");
    }
    // a save into a missing directory fails and names it
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/no/such/dir/c.bin", dir);
    CHECK_FAIL(th_tcache_save(c, missing), TH_ERR_IO, "no/such/dir", "save into a missing directory");
    th_tcache_free(r);
    th_tcache_free(p);
    th_tcache_free(c);
    th_tcache_header h = {0, 0, SEQ, VOCAB, WINDOWS, 0, 0, 0, 0, 0, 0, 0};
    th_tcache *z = NULL;
    CHECK_FAIL(th_tcache_create(&h, &z), TH_ERR_INVALID, "k 0", "k 0");
    h.k = K;
    h.vocab_size = 70000;
    CHECK_FAIL(th_tcache_create(&h, &z), TH_ERR_INVALID, "at most 65536", "a vocabulary past 16 bits");
}

int main(void) {
    const char *dir = test_tmp_dir("io_distill_cache");
    test_f16();
    test_round_trip(dir);
    test_damage(dir);
    return test_summary();
}
