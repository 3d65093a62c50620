/* test_io_checkpoint.c: the project's checkpoint and llm.c .bin files: save → load
 * identity (parameters, AdamW moments and steps, train step, RNG, data cursor,
 * run metadata), every single-byte corruption and every truncation rejected with
 * the model and state untouched, wrong magic / version / flags with a valid checksum,
 * allocation faults, and interrupted saves that must leave the previous file loadable. */
#include "io/io_internal.h"
#include "thermo/io.h"

#include "test_util.h"

static th_gpt2 *model;
static th_train_state state;

static int same_state(const th_train_state *a, const th_train_state *b) {
    return a->step == b->step && memcmp(&a->rng, &b->rng, sizeof a->rng) == 0 &&
           memcmp(a->data_cursor, b->data_cursor, sizeof a->data_cursor) == 0 &&
           strcmp(a->run_meta, b->run_meta) == 0;
}

static int same_moments(th_gpt2 *a, th_gpt2 *b) {
    size_t n = th_gpt2_num_params(th_gpt2_get_config(a)) * 4;
    return th_gpt2_adam_steps(a) == th_gpt2_adam_steps(b) && th_gpt2_adam_m(a) && th_gpt2_adam_m(b) &&
           memcmp(th_gpt2_adam_m(a), th_gpt2_adam_m(b), n) == 0 &&
           memcmp(th_gpt2_adam_v(a), th_gpt2_adam_v(b), n) == 0;
}

/* Loads expecting failure; the out-parameters must keep their sentinel contents. */
static int load_fails_untouched(const char *path, th_status *status) {
    th_gpt2 *m = (th_gpt2 *)&m;
    th_train_state st;
    memset(&st, 0xA5, sizeof st);
    th_train_state sentinel = st;
    *status = th_checkpoint_load(path, &m, &st);
    if (*status == TH_OK) th_gpt2_free(m);
    return *status != TH_OK && m == (th_gpt2 *)&m && memcmp(&st, &sentinel, sizeof st) == 0;
}

static void test_round_trip(void) {
    printf("-- checkpoint save → load restores everything\n");
    SPATH(path, "a.ckpt");
    CHECK(th_checkpoint_save(path, model, &state) == TH_OK, "save");
    CHECK(!test_file_exists(spath("a.ckpt.tmp")), "no temp file left");
    th_gpt2 *m = NULL;
    th_train_state st;
    memset(&st, 0, sizeof st);
    CHECK(th_checkpoint_load(path, &m, &st) == TH_OK, "load");
    if (!m) return;
    CHECK(same_params(m, model), "parameters and config");
    CHECK(same_moments(m, model), "AdamW moments and step count (%ld)", th_gpt2_adam_steps(m));
    CHECK(same_state(&st, &state), "step, rng, data cursor, run metadata");
    /* the restored RNG continues the same sequence */
    th_rng a = st.rng, b = state.rng;
    CHECK(th_rng_u64(&a) == th_rng_u64(&b), "rng continues identically");
    th_gpt2_free(m);

    printf("-- a model without optimizer state saves and loads without moments\n");
    th_gpt2 *fresh = tiny_model(11);
    SPATH(p2, "b.ckpt");
    CHECK(th_checkpoint_save(p2, fresh, NULL) == TH_OK, "save fresh (NULL state)");
    CHECK(th_checkpoint_load(p2, &m, NULL) == TH_OK && same_params(m, fresh) &&
              th_gpt2_adam_m(m) == NULL && th_gpt2_adam_steps(m) == 0,
          "load fresh: no moments");
    th_gpt2_free(m);
    th_gpt2_free(fresh);

    th_train_state bad = state;
    memset(bad.run_meta, 'x', sizeof bad.run_meta);
    CHECK_FAIL(th_checkpoint_save(spath("c.ckpt"), model, &bad), TH_ERR_INVALID, "run metadata",
               "unterminated run metadata");
    CHECK(!test_file_exists(spath("c.ckpt")), "nothing written");
}

static void test_corruption(void) {
    printf("-- flipped bytes and truncations are rejected, nothing changed\n");
    SPATH(path, "a.ckpt");
    SPATH(bad, "bad.ckpt");
    size_t len;
    unsigned char *good = test_read_file(path, &len);
    CHECK(good != NULL, "read checkpoint");
    if (!good) return;
    unsigned char *copy = malloc(len + 16);
    int all_rejected = 1, untouched = 1, flips = 0;
    th_status s;
    /* every byte of the header and the checksum, a spread of the parameters and moments */
    for (size_t i = 0; i < len; i += i < 400 || i >= len - 16 ? 1 : 61) {
        memcpy(copy, good, len);
        copy[i] ^= (unsigned char)(i % 8 == 0 ? 0x80 : 1u << (i % 7));
        test_write_file(bad, copy, len);
        untouched &= load_fails_untouched(bad, &s);
        all_rejected &= s != TH_OK;
        flips++;
    }
    CHECK(all_rejected && untouched, "%d single-byte corruptions: all rejected, outputs untouched",
          flips);
    memcpy(copy, good, len);
    copy[len / 2] ^= 0x40;
    test_write_file(bad, copy, len);
    load_fails_untouched(bad, &s);
    CHECK(s == TH_ERR_FORMAT && strstr(th_last_error(), "checksum mismatch") &&
              strstr(th_last_error(), "bad.ckpt"), "a flipped parameter byte is a checksum mismatch");

    all_rejected = untouched = 1;
    for (size_t k = 0; k < len; k += k < 300 ? 1 : 401) {
        test_write_file(bad, good, k);
        untouched &= load_fails_untouched(bad, &s);
        all_rejected &= s == TH_ERR_FORMAT;
    }
    CHECK(all_rejected && untouched, "truncations of the %zu-byte file: TH_ERR_FORMAT, untouched", len);
    test_write_file(bad, good, len - 1);
    load_fails_untouched(bad, &s);
    CHECK(strstr(th_last_error(), "truncated") != NULL, "the message says truncated");
    memcpy(copy, good, len);
    memset(copy + len, 0, 16);
    test_write_file(bad, copy, len + 16);
    CHECK(load_fails_untouched(bad, &s) && s == TH_ERR_FORMAT, "appended bytes are rejected");

    /* fields that lie while the checksum is right: recompute it after each edit */
    struct {
        size_t off;
        uint32_t value;
        th_status status;
        const char *needle;
    } lies[] = {
        {8, 2, TH_ERR_UNSUPPORTED, "version 2"},
        {12, 6, TH_ERR_UNSUPPORTED, "unknown flags 0x6"},
        {16, 1, TH_ERR_FORMAT, "dtype 1"},
        {28, 51, TH_ERR_FORMAT, "num_params"},
        {32, 0, TH_ERR_FORMAT, "num_layers is 0"},
        {36, 3, TH_ERR_FORMAT, "not divisible"},
        {40, 65536 * 4, TH_ERR_FORMAT, "above the limit"},
        {136, 5000, TH_ERR_FORMAT, "run metadata"},
    };
    for (size_t i = 0; i < sizeof lies / sizeof lies[0]; i++) {
        memcpy(copy, good, len);
        th_put32(copy + lies[i].off, lies[i].value);
        th_put64(copy + len - 8, th_xxh64(copy, len - 8));
        test_write_file(bad, copy, len);
        int ok = load_fails_untouched(bad, &s);
        char what[80];
        snprintf(what, sizeof what, "field at %zu = %u", lies[i].off, lies[i].value);
        CHECK(ok && s == lies[i].status && strstr(th_last_error(), lies[i].needle),
              "%s: got %s, want %s \"%s\"", what, th_status_name(s), th_status_name(lies[i].status),
              lies[i].needle);
    }
    memcpy(copy, good, len);
    memcpy(copy, "THRMCKPX", 8);
    test_write_file(bad, copy, len);
    CHECK(load_fails_untouched(bad, &s) && s == TH_ERR_FORMAT && strstr(th_last_error(), "wrong magic"),
          "wrong magic");
    test_write_file(bad, "", 0);
    CHECK(load_fails_untouched(bad, &s) && s == TH_ERR_FORMAT, "empty file");
    CHECK(load_fails_untouched(spath("absent.ckpt"), &s) && s == TH_ERR_IO, "absent file");
    free(copy);
    free(good);
}

static void test_faults(void) {
    printf("-- allocation faults while loading; interrupted saves keep the previous checkpoint\n");
    SPATH(path, "a.ckpt");
    int n, clean = 1;
    for (n = 1; n < 100; n++) {
        th_gpt2 *m = (th_gpt2 *)&m;
        th_train_state st;
        memset(&st, 0xA5, sizeof st);
        th_alloc_fail_nth(n);
        th_status s = th_checkpoint_load(path, &m, &st);
        th_alloc_fail_nth(0);
        if (s == TH_OK) {
            clean &= same_params(m, model) && same_moments(m, model) && same_state(&st, &state);
            th_gpt2_free(m);
            break;
        }
        clean &= s == TH_ERR_NOMEM && m == (th_gpt2 *)&m && st.step == (long)0xA5A5A5A5A5A5A5A5ull;
    }
    CHECK(clean && n > 2 && n < 100, "load fails with TH_ERR_NOMEM and no change until allocation %d", n);

    SPATH(keep, "keep.ckpt");
    size_t len;
    unsigned char *old = test_read_file(path, &len);
    CHECK(old && test_write_file(keep, old, len), "keep a copy");
    th_gpt2 *other = tiny_model(5);
    th_train_state ost = state;
    ost.step = 1234;
    clean = 1;
    long long k;
    for (k = 1; k < 10000000; k += k < 400 ? 1 : 211) {
        th_io_fail_write_after(k);
        th_status s = th_checkpoint_save(path, other, &ost);
        th_io_fail_write_after(0);
        if (s == TH_OK) break;
        clean &= s == TH_ERR_IO && test_same_file(path, keep) && !test_file_exists(spath("a.ckpt.tmp"));
    }
    CHECK(clean && (size_t)k > len / 3, "a save failing at byte k < %lld leaves the old file", k);
    th_gpt2 *m = NULL;
    th_train_state st;
    CHECK(th_checkpoint_load(path, &m, &st) == TH_OK && same_params(m, other) && st.step == 1234,
          "the complete save replaced it");
    th_gpt2_free(m);
    CHECK_FAIL(th_checkpoint_save("/nonexistent-dir/x.ckpt", other, &ost), TH_ERR_IO, "cannot create",
               "unwritable directory");
    th_gpt2_free(other);
    CHECK(test_write_file(path, old, len), "restore");
    free(old);
}

static void test_llmc(void) {
    printf("-- llm.c .bin: float32 and bfloat16 round trips, header, padding\n");
    SPATH(f32, "m.bin");
    SPATH(b16, "m_bf16.bin");
    CHECK(th_llmc_save(model, f32, 0) == TH_OK && th_llmc_save(model, b16, 1) == TH_OK, "save both");
    size_t len;
    unsigned char *p = test_read_file(f32, &len);
    const th_gpt2_config *c = th_gpt2_get_config(model);
    size_t n = th_gpt2_num_params(c), pad = (128 - 50) * 16;
    CHECK(p && len == 1024 + (n + pad) * 4, "file size %zu = header + (params + padding) × 4", len);
    if (p && len >= 1024 + (50 * 16 + pad) * 4) {
        int32_t want[8] = {20240326, 3, 8, 50, 2, 2, 16, 128};
        int hdr = 1;
        for (int i = 0; i < 8; i++) hdr &= (int32_t)th_le32(p + 4 * i) == want[i];
        for (int i = 8; i < 256; i++) hdr &= th_le32(p + 4 * i) == 0;
        CHECK(hdr, "header fields");
        int zeros = 1;
        for (size_t i = 0; i < pad * 4; i++) zeros &= p[1024 + 50 * 16 * 4 + i] == 0;
        CHECK(zeros, "wte padding rows are zero");
    }
    th_gpt2 *m = NULL;
    CHECK(th_llmc_load(f32, &m, NULL) == TH_OK && same_params(m, model), "float32 round trip is exact");
    th_gpt2_free(m);
    m = NULL;
    th_model_info info;
    CHECK(th_llmc_load(b16, &m, &info) == TH_OK && strcmp(info.dtype, "BF16") == 0, "load bf16");
    if (m) {
        const float *a = th_gpt2_params(model), *b = th_gpt2_params(m);
        int ok = 1;
        for (size_t i = 0; i < n; i++) ok &= b[i] == th_bf16_to_f32(th_f32_to_bf16(a[i]));
        CHECK(ok, "bfloat16 round trip equals rounding each parameter");
        th_gpt2_free(m);
    }

    printf("-- llm.c files that lie\n");
    SPATH(bad, "bad.bin");
    unsigned char *copy = malloc(len);
    struct {
        int field;
        int32_t value;
        th_status status;
        const char *needle;
    } lies[] = {
        {0, 20240327, TH_ERR_FORMAT, "bad magic"},
        {1, 4, TH_ERR_UNSUPPORTED, "version 4"},
        {2, 9, TH_ERR_FORMAT, "implies"},
        {4, 200, TH_ERR_FORMAT, "implies"},
        {6, 1 << 16, TH_ERR_FORMAT, "implies"},
        {6, -16, TH_ERR_FORMAT, "channels is -16"},
        {5, 3, TH_ERR_FORMAT, "not divisible"},
        {7, 49, TH_ERR_FORMAT, "padded_vocab_size 49"},
        {7, 2000000000, TH_ERR_FORMAT, "padded_vocab_size"},
    };
    for (size_t i = 0; p && i < sizeof lies / sizeof lies[0]; i++) {
        memcpy(copy, p, len);
        th_put32(copy + 4 * lies[i].field, (uint32_t)lies[i].value);
        test_write_file(bad, copy, len);
        th_gpt2 *mm = (th_gpt2 *)&mm;
        char what[64];
        snprintf(what, sizeof what, "llm.c header[%d] = %d", lies[i].field, lies[i].value);
        CHECK_FAIL(th_llmc_load(bad, &mm, NULL), lies[i].status, lies[i].needle, what);
        CHECK(mm == (th_gpt2 *)&mm, "%s: *out untouched", what);
    }
    int trunc_ok = 1;
    for (size_t k = 0; p && k < len; k += k < 1100 ? 7 : 333) {
        test_write_file(bad, p, k);
        th_gpt2 *mm = (th_gpt2 *)&mm;
        trunc_ok &= th_llmc_load(bad, &mm, NULL) == TH_ERR_FORMAT && mm == (th_gpt2 *)&mm;
    }
    CHECK(trunc_ok, "every truncation is TH_ERR_FORMAT");
    int nomem_ok = 1, k;
    for (k = 1; k < 100; k++) {
        th_gpt2 *mm = (th_gpt2 *)&mm;
        th_alloc_fail_nth(k);
        th_status s = th_llmc_load(b16, &mm, NULL);
        th_alloc_fail_nth(0);
        if (s == TH_OK) {
            th_gpt2_free(mm);
            break;
        }
        nomem_ok &= s == TH_ERR_NOMEM && mm == (th_gpt2 *)&mm;
    }
    CHECK(nomem_ok && k > 1 && k < 100, "llm.c load: TH_ERR_NOMEM until allocation %d", k);
    free(copy);
    free(p);
}

int main(void) {
    scratch_make("ckpt");
    model = tiny_model(3);
    /* optimizer state as after some training */
    th_gpt2_adam_restore(model, 17);
    size_t n = th_gpt2_num_params(th_gpt2_get_config(model));
    th_rng r;
    th_rng_seed(&r, 77);
    for (size_t i = 0; i < n; i++) {
        th_gpt2_adam_m(model)[i] = (float)th_rng_normal(&r) * 1e-3f;
        th_gpt2_adam_v(model)[i] = th_rng_float(&r) * 1e-6f;
    }
    state.step = 17;
    th_rng_seed(&state.rng, 2024);
    th_rng_u64(&state.rng);
    for (int i = 0; i < 4; i++) state.data_cursor[i] = 0x0123456789abcdefull * (uint64_t)(i + 1);
    snprintf(state.run_meta, sizeof state.run_meta, "data/gpt2-tokenizer (vocab 50257)");

    test_round_trip();
    test_corruption();
    test_faults();
    test_llmc();
    th_gpt2_free(model);
    scratch_cleanup();
    return test_summary();
}
