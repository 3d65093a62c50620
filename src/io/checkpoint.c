/* checkpoint.c: the project's own resumable training checkpoint. One little-endian file:
 *
 *   0  "THRMCKPT"           magic
 *   8  u32 version (1)      12 u32 flags (bit 0: AdamW moments follow the parameters)
 *  16  u32 dtype (0 = f32)  20 u32 header bytes (144)
 *  24  i32 max_seq_len, vocab_size, num_layers, num_heads, channels; f32 ln_eps
 *  48  u64 num_params       56 i64 train step       64 i64 AdamW steps
 *  72  u64 rng[4]          104 u64 data cursor[4]  136 u32 run metadata length, u32 0
 * 144  run metadata bytes, zero-padded to a multiple of 8
 *      f32 params[num_params]; if flagged, f32 m[num_params], f32 v[num_params]
 *      u64 XXH64 of every byte above
 *
 * Loads read into a fresh model and hand it over only after the checksum matches. */
#include "io/io_internal.h"

#include <limits.h>
#include <string.h>

#define CK_MAGIC "THRMCKPT"
#define CK_VERSION 1u
#define CK_FLAG_MOMENTS 1u
#define CK_KNOWN_FLAGS CK_FLAG_MOMENTS
#define CK_HEADER 144u
#define CK_CHUNK (1u << 20) /* bytes per read */

static uint64_t pad8(uint64_t n) { return (n + 7) / 8 * 8; }

th_status th_checkpoint_save(const char *path, th_gpt2 *m, const th_train_state *st) {
    const th_gpt2_config *cfg = th_gpt2_get_config(m);
    static const th_train_state empty;
    if (!st) st = &empty;
    size_t toklen = strnlen(st->run_meta, TH_RUN_META_MAX);
    if (toklen == TH_RUN_META_MAX)
        return th_fail(TH_ERR_INVALID, "%s: run metadata is not terminated within %d bytes",
                       path, TH_RUN_META_MAX);
    if (st->step < 0) return th_fail(TH_ERR_INVALID, "%s: step %ld is negative", path, st->step);
    const float *mm = th_gpt2_adam_m(m), *vv = th_gpt2_adam_v(m);
    int moments = mm && vv;
    size_t n = th_gpt2_num_params(cfg);

    unsigned char h[CK_HEADER + TH_RUN_META_MAX + 8];
    memset(h, 0, sizeof h);
    memcpy(h, CK_MAGIC, 8);
    th_put32(h + 8, CK_VERSION);
    th_put32(h + 12, moments ? CK_FLAG_MOMENTS : 0);
    th_put32(h + 16, 0);
    th_put32(h + 20, CK_HEADER);
    th_put32(h + 24, (uint32_t)cfg->max_seq_len);
    th_put32(h + 28, (uint32_t)cfg->vocab_size);
    th_put32(h + 32, (uint32_t)cfg->num_layers);
    th_put32(h + 36, (uint32_t)cfg->num_heads);
    th_put32(h + 40, (uint32_t)cfg->channels);
    memcpy(h + 44, &cfg->ln_eps, 4);
    th_put64(h + 48, n);
    th_put64(h + 56, (uint64_t)st->step);
    th_put64(h + 64, (uint64_t)th_gpt2_adam_steps(m));
    for (int i = 0; i < 4; i++) th_put64(h + 72 + 8 * i, st->rng.s[i]);
    for (int i = 0; i < 4; i++) th_put64(h + 104 + 8 * i, st->data_cursor[i]);
    th_put32(h + 136, (uint32_t)toklen);
    memcpy(h + CK_HEADER, st->run_meta, toklen);

    th_afile a;
    th_status s = th_afile_open(&a, path);
    if (s != TH_OK) return s;
    a.hashing = 1;
    th_xxh64_init(&a.hash);
    th_afile_write(&a, h, CK_HEADER + pad8(toklen));
    th_afile_write_f32(&a, th_gpt2_params(m), n);
    if (moments) {
        th_afile_write_f32(&a, mm, n);
        th_afile_write_f32(&a, vv, n);
    }
    unsigned char sum[8];
    th_put64(sum, th_xxh64_digest(&a.hash));
    a.hashing = 0;
    th_afile_write(&a, sum, 8);
    return th_afile_commit(&a);
}

/* Reads n bytes at the current position into dst, feeding the hash. */
static th_status read_hashed(FILE *f, const char *path, void *dst, size_t n, th_xxh64_state *hs) {
    unsigned char *p = dst;
    while (n) {
        size_t k = n < CK_CHUNK ? n : CK_CHUNK;
        if (fread(p, 1, k, f) != k)
            return th_fail(TH_ERR_FORMAT, "%s: file ends early (truncated?)", path);
        th_xxh64_update(hs, p, k);
        p += k;
        n -= k;
    }
    return TH_OK;
}

th_status th_checkpoint_load(const char *path, th_gpt2 **model_out, th_train_state *st_out) {
    FILE *f;
    uint64_t size;
    th_status s = th_rfile_open(path, &f, &size);
    if (s != TH_OK) return s;
    th_gpt2 *m = NULL;
    unsigned char h[CK_HEADER + TH_RUN_META_MAX + 8];
    th_xxh64_state hs;
    th_xxh64_init(&hs);

    if (size < 8) {
        s = th_fail(TH_ERR_FORMAT, "%s: not a thermo checkpoint (%llu bytes)", path,
                    (unsigned long long)size);
        goto done;
    }
    if ((s = th_rfile_read(f, path, 0, h, 8)) != TH_OK) goto done;
    if (memcmp(h, CK_MAGIC, 8) != 0) {
        s = th_fail(TH_ERR_FORMAT, "%s: not a thermo checkpoint (wrong magic)", path);
        goto done;
    }
    if (size < CK_HEADER + 8) {
        s = th_fail(TH_ERR_FORMAT, "%s: %llu bytes is shorter than the %u-byte header (truncated?)",
                    path, (unsigned long long)size, CK_HEADER);
        goto done;
    }
    if ((s = th_rfile_read(f, path, 0, h, CK_HEADER)) != TH_OK) goto done;
    uint32_t version = th_le32(h + 8), flags = th_le32(h + 12), dtype = th_le32(h + 16),
             hbytes = th_le32(h + 20);
    if (version != CK_VERSION) {
        s = th_fail(TH_ERR_UNSUPPORTED, "%s: checkpoint version %u; this build reads version %u",
                    path, version, CK_VERSION);
        goto done;
    }
    if (flags & ~CK_KNOWN_FLAGS) {
        s = th_fail(TH_ERR_UNSUPPORTED, "%s: unknown flags 0x%x", path, flags & ~CK_KNOWN_FLAGS);
        goto done;
    }
    if (dtype != 0 || hbytes != CK_HEADER) {
        s = th_fail(TH_ERR_FORMAT, "%s: dtype %u / header size %u; expected 0 (f32) / %u", path,
                    dtype, hbytes, CK_HEADER);
        goto done;
    }
    th_gpt2_config cfg = {(int)th_le32(h + 24), (int)th_le32(h + 28), (int)th_le32(h + 32),
                          (int)th_le32(h + 36), (int)th_le32(h + 40), 0};
    memcpy(&cfg.ln_eps, h + 44, 4);
    if ((s = th_io_check_config(path, &cfg)) != TH_OK) goto done;
    uint64_t n = th_le64(h + 48);
    int64_t train_step = (int64_t)th_le64(h + 56), adam_steps = (int64_t)th_le64(h + 64);
    uint32_t toklen = th_le32(h + 136);
    if (n != th_gpt2_num_params(&cfg)) {
        s = th_fail(TH_ERR_FORMAT, "%s: num_params %llu does not match the config's %zu", path,
                    (unsigned long long)n, th_gpt2_num_params(&cfg));
        goto done;
    }
    if (train_step < 0 || adam_steps < 0 || train_step > (int64_t)LONG_MAX / 2 ||
        adam_steps > (int64_t)LONG_MAX / 2 || toklen >= TH_RUN_META_MAX || th_le32(h + 140)) {
        s = th_fail(TH_ERR_FORMAT, "%s: impossible step counts or run metadata length", path);
        goto done;
    }
    int moments = (flags & CK_FLAG_MOMENTS) != 0;
    uint64_t want = CK_HEADER + pad8(toklen) + n * 4 * (moments ? 3 : 1) + 8; /* n < 2^46 */
    if (size != want) {
        s = th_fail(TH_ERR_FORMAT, "%s: file is %llu bytes but its header implies %llu%s", path,
                    (unsigned long long)size, (unsigned long long)want,
                    size < want ? " (truncated?)" : "");
        goto done;
    }
    th_xxh64_update(&hs, h, CK_HEADER);
    if ((s = read_hashed(f, path, h + CK_HEADER, (size_t)pad8(toklen), &hs)) != TH_OK) goto done;
    h[CK_HEADER + toklen] = 0;
    if (strlen((char *)h + CK_HEADER) != toklen) {
        s = th_fail(TH_ERR_FORMAT, "%s: run metadata holds a NUL byte", path);
        goto done;
    }

    if ((s = th_gpt2_create(&cfg, &m)) != TH_OK) goto done;
    if ((s = read_hashed(f, path, th_gpt2_params(m), (size_t)n * 4, &hs)) != TH_OK) goto done;
    if (moments) {
        if ((s = th_gpt2_adam_restore(m, (long)adam_steps)) != TH_OK) goto done;
        if ((s = read_hashed(f, path, th_gpt2_adam_m(m), (size_t)n * 4, &hs)) != TH_OK ||
            (s = read_hashed(f, path, th_gpt2_adam_v(m), (size_t)n * 4, &hs)) != TH_OK)
            goto done;
    } else if (adam_steps != 0) {
        s = th_fail(TH_ERR_FORMAT, "%s: %lld AdamW steps but no moments", path, (long long)adam_steps);
        goto done;
    }
    unsigned char sum[8];
    if ((s = th_rfile_read(f, path, size - 8, sum, 8)) != TH_OK) goto done;
    if (th_le64(sum) != th_xxh64_digest(&hs)) {
        s = th_fail(TH_ERR_FORMAT, "%s: checksum mismatch (stored %016llx, computed %016llx): the "
                    "file is corrupt", path, (unsigned long long)th_le64(sum),
                    (unsigned long long)th_xxh64_digest(&hs));
        goto done;
    }

    if (st_out) {
        th_train_state st;
        memset(&st, 0, sizeof st);
        st.step = (long)train_step;
        for (int i = 0; i < 4; i++) st.rng.s[i] = th_le64(h + 72 + 8 * i);
        for (int i = 0; i < 4; i++) st.data_cursor[i] = th_le64(h + 104 + 8 * i);
        memcpy(st.run_meta, h + CK_HEADER, toklen + 1);
        *st_out = st;
    }
    *model_out = m;
    m = NULL;
done:
    th_gpt2_free(m);
    fclose(f);
    return s;
}
