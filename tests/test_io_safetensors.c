/* test_io_safetensors.c: the safetensors reader and writer on their own: XXH64 and
 * bfloat16 rounding against published values, a write/read round trip with transposes,
 * every kind of malformed header, truncation at every length, byte flips, allocation
 * and write fault injection, and a failed save leaving the old file intact. */
#include "io/io_internal.h"
#include "thermo/io.h"

#include "test_util.h"

#include <math.h>

/* A file from a header string and `data_len` bytes of data (0x11 each). */
static size_t make_file(unsigned char *buf, size_t cap, const char *header, size_t data_len) {
    size_t h = strlen(header);
    if (8 + h + data_len > cap) {
        printf("FAIL test buffer too small\n");
        exit(1);
    }
    th_put64(buf, h);
    memcpy(buf + 8, header, h);
    memset(buf + 8 + h, 0x11, data_len);
    return 8 + h + data_len;
}

static th_status open_mem(const unsigned char *p, size_t n) {
    th_safetensors *st = NULL;
    th_status s = th_safetensors_open_memory(p, n, "mem.safetensors", &st);
    th_safetensors_close(st);
    return s;
}

static void test_xxh64(void) {
    printf("-- XXH64 against the reference vectors\n");
    CHECK(th_xxh64("", 0) == 0xEF46DB3751D8E999ull, "xxh64 empty");
    CHECK(th_xxh64("a", 1) == 0xD24EC4F1A98C6E5Bull, "xxh64 a");
    CHECK(th_xxh64("abc", 3) == 0x44BC2CF5AD770999ull, "xxh64 abc");
    const char *t = "Nobody inspects the spammish repetition";
    CHECK(th_xxh64(t, strlen(t)) == 0xFBCEA83C8A378BF1ull, "xxh64 long");
    /* streaming in odd pieces gives the one-shot digest */
    unsigned char buf[1000];
    for (int i = 0; i < 1000; i++) buf[i] = (unsigned char)(i * 7 + 3);
    th_xxh64_state s;
    th_xxh64_init(&s);
    for (size_t at = 0, k = 1; at < 1000; at += k, k = k * 3 % 37 + 1)
        th_xxh64_update(&s, buf + at, at + k > 1000 ? 1000 - at : k);
    CHECK(th_xxh64_digest(&s) == th_xxh64(buf, 1000), "xxh64 streaming");
}

static void test_bf16(void) {
    printf("-- bfloat16 rounding (nearest even) and widening\n");
    CHECK(th_f32_to_bf16(1.0f) == 0x3F80, "1.0");
    CHECK(th_f32_to_bf16(1.0f + 0x1p-8f) == 0x3F80, "tie rounds to even (down)");
    CHECK(th_f32_to_bf16(1.0f + 3 * 0x1p-8f) == 0x3F82, "tie rounds to even (up)");
    CHECK(th_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f) == 0x3F81, "above the tie rounds up");
    CHECK(th_f32_to_bf16(-2.0f) == 0xC000, "-2");
    CHECK(th_f32_to_bf16(INFINITY) == 0x7F80, "inf");
    CHECK(th_f32_to_bf16(3.4028235e38f) == 0x7F80, "FLT_MAX rounds to inf");
    CHECK(isnan(th_bf16_to_f32(th_f32_to_bf16(NAN))), "NaN stays NaN");
    CHECK(th_bf16_to_f32(0x3F81) == 1.0078125f, "widen 0x3F81");
    /* hand-checked float16 values */
    CHECK(th_f16_to_f32(0x3C00) == 1.0f && th_f16_to_f32(0xC000) == -2.0f, "f16 1, -2");
    CHECK(th_f16_to_f32(0x0001) == 0x1p-24f && th_f16_to_f32(0x03FF) == 1023 * 0x1p-24f,
          "f16 subnormals");
    CHECK(th_f16_to_f32(0x7BFF) == 65504.0f && isinf(th_f16_to_f32(0xFC00)), "f16 max, -inf");
    CHECK(isnan(th_f16_to_f32(0x7E00)) && signbit(th_f16_to_f32(0x8000)), "f16 NaN, -0");
}

/* tensors: a (3, 5) matrix written from its (5, 3) transpose, a vector, a scalar, an
 * empty tensor */
static float mat[15], vec[4] = {1.5f, -2.0f, 0.25f, 1e-30f}, scalar = 42.0f;

static th_status write_sample(const char *path) {
    th_st_source src[4] = {
        {"w", 2, {3, 5}, mat, 1},
        {"v", 1, {4}, vec, 0},
        {"s", 0, {0}, &scalar, 0},
        {"empty", 2, {0, 7}, vec, 0},
    };
    const char *md[] = {"format", "pt", "note", "made by test_io_safetensors", NULL};
    return th_safetensors_write(path, src, 4, md);
}

static void test_round_trip(void) {
    printf("-- write then read: shapes, transposes, scalar, empty tensor, metadata\n");
    for (int i = 0; i < 15; i++) mat[i] = (float)i + 0.5f; /* source (5, 3) */
    SPATH(path, "sample.safetensors");
    CHECK(write_sample(path) == TH_OK, "write sample");
    CHECK(!test_file_exists(spath("sample.safetensors.tmp")), "no temp file left");
    th_safetensors *st = NULL;
    CHECK(th_safetensors_open(path, &st) == TH_OK, "open sample");
    if (!st) return;
    CHECK(th_safetensors_count(st) == 4, "4 tensors");
    CHECK(th_safetensors_metadata(st, "format") && strcmp(th_safetensors_metadata(st, "format"), "pt") == 0,
          "metadata format");
    CHECK(th_safetensors_metadata(st, "missing") == NULL, "absent metadata key");
    const th_st_tensor *w = th_safetensors_find(st, "w"), *s = th_safetensors_find(st, "s"),
                       *e = th_safetensors_find(st, "empty");
    CHECK(w && w->ndim == 2 && w->shape[0] == 3 && w->shape[1] == 5 && w->dtype == TH_ST_F32,
          "w is F32 (3, 5)");
    CHECK(s && s->ndim == 0 && s->count == 1, "s is a scalar");
    CHECK(e && e->count == 0 && e->begin == e->end, "empty tensor");
    CHECK(th_safetensors_find(st, "nope") == NULL, "find missing");
    if (w) {
        float got[15], back[15];
        CHECK(th_safetensors_read_f32(st, w, got, 15, 0) == TH_OK, "read w");
        /* file (3, 5) row r col c = source (5, 3) [c][r] */
        int ok = 1;
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 5; c++) ok &= got[r * 5 + c] == mat[c * 3 + r];
        CHECK(ok, "w holds the transpose of its source");
        CHECK(th_safetensors_read_f32(st, w, back, 15, 1) == TH_OK && memcmp(back, mat, sizeof mat) == 0,
              "reading w transposed gives the source back");
        CHECK_FAIL(th_safetensors_read_f32(st, w, got, 14, 0), TH_ERR_INVALID, "expects 14",
                   "wrong count");
    }
    float sv = 0;
    CHECK(s && th_safetensors_read_f32(st, s, &sv, 1, 0) == TH_OK && sv == 42.0f, "scalar value");
    CHECK_FAIL(th_safetensors_read_f32(st, s, &sv, 1, 1), TH_ERR_INVALID, "cannot be transposed",
               "transpose of a scalar");
    th_safetensors_close(st);

    printf("-- writer rejects bad requests\n");
    th_st_source dup[2] = {{"a", 1, {4}, vec, 0}, {"a", 1, {4}, vec, 0}};
    CHECK_FAIL(th_safetensors_write(spath("dup.safetensors"), dup, 2, NULL), TH_ERR_INVALID,
               "repeated", "duplicate names");
    th_st_source md[1] = {{"__metadata__", 1, {4}, vec, 0}};
    CHECK_FAIL(th_safetensors_write(spath("dup.safetensors"), md, 1, NULL), TH_ERR_INVALID,
               "reserved", "reserved name");
    th_st_source tr[1] = {{"t", 1, {4}, vec, 1}};
    CHECK_FAIL(th_safetensors_write(spath("dup.safetensors"), tr, 1, NULL), TH_ERR_INVALID, "rank",
               "1-D transpose");
    CHECK(!test_file_exists(spath("dup.safetensors")) && !test_file_exists(spath("dup.safetensors.tmp")),
          "rejected writes leave no file");
    CHECK_FAIL(th_safetensors_write("/nonexistent-dir/x.safetensors", dup, 1, NULL), TH_ERR_IO,
               "cannot create", "unwritable directory");
}

static void test_bad_headers(void) {
    printf("-- malformed files are rejected with the problem named\n");
    static unsigned char buf[4096];
    size_t n;
    struct {
        const char *header;
        size_t data;
        const char *needle;
    } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]", 8, "not valid JSON"},
        {"[1,2,3]", 0, "not a JSON object"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 16, "not valid JSON"},
        {"{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype"},
        {"{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "out of order"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "extends past the end"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[9223372036854775800,"
         "9223372036854775807]}}", 8, "extends past the end"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlaps"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}", 20, "unused bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12, "after the last tensor"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "need 12 bytes"},
        {"{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16, "need 8 bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
         "overflows"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}", 8,
         "need"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "non-negative"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,16]}}", 16, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,-8]}}", 8, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":\"2\",\"data_offsets\":[0,8]}}", 8, "shape"},
        {"{\"a\":[1]}", 0, "not an object"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "__metadata__"},
        {"{\"__metadata__\":[]}", 0, "__metadata__"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        n = make_file(buf, sizeof buf, cases[i].header, cases[i].data);
        char what[64];
        snprintf(what, sizeof what, "bad header case %zu", i);
        CHECK_FAIL(open_mem(buf, n), TH_ERR_FORMAT, cases[i].needle, what);
        CHECK(strstr(th_last_error(), "mem.safetensors") != NULL, "%s: message names the file", what);
    }
    /* lengths that lie */
    n = make_file(buf, sizeof buf, "{}", 0);
    CHECK(open_mem(buf, n) == TH_OK, "empty header {} is a valid file with no tensors");
    th_put64(buf, 1000);
    CHECK_FAIL(open_mem(buf, n), TH_ERR_FORMAT, "header length 1000 extends past the end",
               "header length past the end");
    th_put64(buf, UINT64_MAX);
    CHECK_FAIL(open_mem(buf, n), TH_ERR_FORMAT, "extends past the end", "header length 2^64-1");
    CHECK_FAIL(open_mem(buf, 5), TH_ERR_FORMAT, "too short", "5-byte file");
    CHECK_FAIL(open_mem(buf, 0), TH_ERR_FORMAT, "too short", "empty file");
    CHECK(test_write_file(spath("empty.safetensors"), "", 0), "write empty file");
    th_safetensors *st = NULL;
    CHECK_FAIL(th_safetensors_open(spath("empty.safetensors"), &st), TH_ERR_FORMAT, "too short",
               "empty file on disk");
    CHECK(st == NULL, "failed open leaves *out alone");
    CHECK_FAIL(th_safetensors_open(spath("missing.safetensors"), &st), TH_ERR_IO, "cannot open",
               "missing file");

    printf("-- dtypes that do not convert to float\n");
    n = make_file(buf, sizeof buf, "{\"i\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16);
    CHECK(th_safetensors_open_memory(buf, n, "mem.safetensors", &st) == TH_OK, "I64 file opens");
    if (st) {
        float f[2];
        CHECK_FAIL(th_safetensors_read_f32(st, th_safetensors_find(st, "i"), f, 2, 0),
                   TH_ERR_UNSUPPORTED, "I64", "read I64 as float");
        th_safetensors_close(st);
    }
}

static void test_truncation_and_flips(void) {
    printf("-- truncation at every length and byte flips of a valid file\n");
    size_t len;
    unsigned char *good = test_read_file(spath("sample.safetensors"), &len);
    CHECK(good != NULL, "read sample back");
    if (!good) return;
    int truncated_ok = 1;
    for (size_t k = 0; k < len; k++) {
        th_status s = open_mem(good, k);
        if (s != TH_ERR_FORMAT) {
            truncated_ok = 0;
            printf("  truncated to %zu bytes: %s\n", k, th_status_name(s));
        }
    }
    CHECK(truncated_ok, "every truncation of the %zu-byte file is TH_ERR_FORMAT", len);
    /* a few on disk too, through the mmap path */
    for (size_t k = 0; k < len; k += len / 7 + 1) {
        CHECK(test_write_file(spath("trunc.safetensors"), good, k), "write truncated");
        th_safetensors *st = NULL;
        th_status s = th_safetensors_open(spath("trunc.safetensors"), &st);
        CHECK(s == TH_ERR_FORMAT && st == NULL, "truncated to %zu on disk: %s", k, th_status_name(s));
    }
    /* flips: anything may happen except a crash; what opens must read without error */
    unsigned char *copy = malloc(len);
    int opened = 0, rejected = 0, read_ok = 1;
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(copy, good, len);
            copy[i] ^= (unsigned char)(1u << bit);
            th_safetensors *st = NULL;
            if (th_safetensors_open_memory(copy, len, "flip", &st) != TH_OK) {
                rejected++;
                continue;
            }
            opened++;
            for (int t = 0; t < th_safetensors_count(st); t++) {
                const th_st_tensor *tt = th_safetensors_tensor(st, t);
                float tmp[64];
                if (tt->count <= 64 && (tt->dtype == TH_ST_F32 || tt->dtype == TH_ST_F16 ||
                                        tt->dtype == TH_ST_BF16))
                    read_ok &= th_safetensors_read_f32(st, tt, tmp, (size_t)tt->count, 0) == TH_OK;
            }
            th_safetensors_close(st);
        }
    }
    CHECK(read_ok, "every flipped file that opened reads cleanly");
    CHECK(rejected > 0 && opened > 0, "flips: %d rejected, %d opened (data bytes)", rejected, opened);
    free(copy);
    free(good);
}

static void test_faults(void) {
    printf("-- allocation failures on open and write; write failures keep the old file\n");
    SPATH(path, "sample.safetensors");
    int n, clean = 1;
    for (n = 1; n < 100; n++) {
        th_safetensors *st = NULL;
        th_alloc_fail_nth(n);
        th_status s = th_safetensors_open(path, &st);
        th_alloc_fail_nth(0);
        if (s == TH_OK) {
            th_safetensors_close(st);
            break;
        }
        clean &= s == TH_ERR_NOMEM && st == NULL;
    }
    CHECK(clean && n > 1 && n < 100, "open fails cleanly with TH_ERR_NOMEM until allocation %d", n);

    SPATH(copy, "keep.safetensors");
    size_t len;
    unsigned char *old = test_read_file(path, &len);
    CHECK(old && test_write_file(copy, old, len), "copy the good file");
    for (int i = 0; i < 15; i++) mat[i] = -(float)i; /* a save would now change the file */
    clean = 1;
    for (n = 1; n < 100; n++) {
        th_alloc_fail_nth(n);
        th_status s = write_sample(path);
        th_alloc_fail_nth(0);
        if (s == TH_OK) break;
        clean &= s == TH_ERR_NOMEM && test_same_file(path, copy) && !test_file_exists(spath("sample.safetensors.tmp"));
    }
    CHECK(clean && n > 1 && n < 100, "write fails cleanly with TH_ERR_NOMEM until allocation %d", n);
    CHECK(!test_same_file(path, copy), "the successful write replaced the file");
    CHECK(test_write_file(path, old, len), "restore the good file");
    clean = 1;
    long long k;
    for (k = 1; k < 100000; k += k < 16 ? 1 : 37) {
        th_io_fail_write_after(k);
        th_status s = write_sample(path);
        th_io_fail_write_after(0);
        if (s == TH_OK) break;
        clean &= s == TH_ERR_IO && test_same_file(path, copy) && !test_file_exists(spath("sample.safetensors.tmp")) &&
                 strstr(th_last_error(), "injected") != NULL;
    }
    CHECK(clean && k > 100, "a write failing at byte k < %lld leaves the old file intact", k);
    free(old);
}

int main(void) {
    scratch_make("st");
    test_xxh64();
    test_bf16();
    test_round_trip();
    test_bad_headers();
    test_truncation_and_flips();
    test_faults();
    scratch_cleanup();
    return test_summary();
}
