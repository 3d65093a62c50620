/* llmc.c: karpathy/llm.c GPT-2 checkpoints (gpt2_124M.bin, gpt2_124M_bf16.bin). llm.c
 * keeps the same 16 tensors in the same order and (out, in) layout as we do; the only
 * differences are a 256-int header, wte padded to a multiple of 128 rows, and bfloat16
 * for version 5. */
#include "io/io_internal.h"

#include <string.h>

#define LLMC_MAGIC 20240326
#define LLMC_HEADER_BYTES 1024
#define LLMC_CHUNK 65536 /* floats per read or write */

th_status th_llmc_load(const char *path, th_gpt2 **out, th_model_info *info) {
    FILE *f;
    uint64_t size;
    th_status s = th_rfile_open(path, &f, &size);
    if (s != TH_OK) return s;
    th_gpt2 *m = NULL;
    void *buf = NULL;
    unsigned char hb[LLMC_HEADER_BYTES];
    if (size < LLMC_HEADER_BYTES) {
        s = th_fail(TH_ERR_FORMAT, "%s: %llu bytes is shorter than llm.c's 1024-byte header", path,
                    (unsigned long long)size);
        goto done;
    }
    if ((s = th_rfile_read(f, path, 0, hb, sizeof hb)) != TH_OK) goto done;
    int32_t h[8];
    for (int i = 0; i < 8; i++) h[i] = (int32_t)th_le32(hb + 4 * i);
    if (h[0] != LLMC_MAGIC) {
        s = th_fail(TH_ERR_FORMAT, "%s: bad magic %d, not an llm.c checkpoint (expected %d)", path,
                    h[0], LLMC_MAGIC);
        goto done;
    }
    if (h[1] != 3 && h[1] != 5) {
        s = th_fail(TH_ERR_UNSUPPORTED,
                    "%s: llm.c version %d; this reader knows 3 (float32) and 5 (bfloat16) "
                    "(re-export with llm.c's train_gpt2.py)", path, h[1]);
        goto done;
    }
    int bf16 = h[1] == 5;
    th_gpt2_config cfg = {h[2], h[3], h[4], h[5], h[6], 1e-5f};
    int Vp = h[7];
    if ((s = th_io_check_config(path, &cfg)) != TH_OK) goto done;
    if (Vp < cfg.vocab_size || Vp > cfg.vocab_size + (1 << 20)) {
        s = th_fail(TH_ERR_FORMAT, "%s: padded_vocab_size %d is not in [vocab_size %d, +2^20]",
                    path, Vp, cfg.vocab_size);
        goto done;
    }
    /* params in the file: ours plus (Vp - V) padding rows of wte */
    uint64_t nparams = th_gpt2_num_params(&cfg), pad = (uint64_t)(Vp - cfg.vocab_size) * cfg.channels;
    uint64_t es = bf16 ? 2 : 4, want = LLMC_HEADER_BYTES + (nparams + pad) * es; /* < 2^50 */
    if (size != want) {
        s = th_fail(TH_ERR_FORMAT,
                    "%s: file is %llu bytes but its header (L=%d, C=%d, V=%d, Vp=%d, T=%d, %s) "
                    "implies %llu%s", path, (unsigned long long)size, cfg.num_layers, cfg.channels,
                    cfg.vocab_size, Vp, cfg.max_seq_len, bf16 ? "bf16" : "fp32",
                    (unsigned long long)want, size < want ? " (truncated?)" : "");
        goto done;
    }
    if ((s = th_gpt2_create(&cfg, &m)) != TH_OK) goto done;
    buf = th_alloc(LLMC_CHUNK * es);
    if (!buf) {
        s = th_fail(TH_ERR_NOMEM, "%s: out of memory for a read buffer", path);
        goto done;
    }
    float *p = th_gpt2_params(m);
    th_tensor_info wte;
    th_gpt2_tensor_info(&cfg, TH_P_WTE, &wte);
    /* file floats [0, wte.count) -> ours; skip pad; the rest -> ours after wte */
    uint64_t off = LLMC_HEADER_BYTES;
    for (int part = 0; part < 2; part++) {
        size_t n = part == 0 ? wte.count : (size_t)nparams - wte.count;
        float *dst = part == 0 ? p : p + wte.count;
        for (size_t done_n = 0; done_n < n;) {
            size_t k = n - done_n < LLMC_CHUNK ? n - done_n : LLMC_CHUNK;
            if ((s = th_rfile_read(f, path, off, bf16 ? buf : (void *)(dst + done_n), k * es)) != TH_OK)
                goto done;
            if (bf16)
                for (size_t i = 0; i < k; i++) {
                    uint16_t b;
                    memcpy(&b, (unsigned char *)buf + 2 * i, 2);
                    dst[done_n + i] = th_bf16_to_f32(b);
                }
            off += k * es;
            done_n += k;
        }
        if (part == 0) off += pad * es;
    }
    if (info) {
        memset(info, 0, sizeof *info);
        info->format = TH_FORMAT_LLMC;
        snprintf(info->dtype, sizeof info->dtype, "%s", bf16 ? "BF16" : "F32");
        info->names = TH_NAMES_NONE;
        info->num_tensors = TH_P_NUM;
        info->num_params = (size_t)nparams;
        info->config = cfg;
        info->padded_vocab_size = Vp;
    }
    *out = m;
    m = NULL;
done:
    th_free(buf);
    th_gpt2_free(m);
    fclose(f);
    return s;
}

static void write_floats(th_afile *a, const float *p, size_t n, int bf16, uint16_t *buf) {
    if (!bf16) {
        th_afile_write_f32(a, p, n);
        return;
    }
    for (size_t at = 0; at < n && a->status == TH_OK; at += LLMC_CHUNK) {
        size_t k = n - at < LLMC_CHUNK ? n - at : LLMC_CHUNK;
        for (size_t i = 0; i < k; i++) buf[i] = th_f32_to_bf16(p[at + i]);
        th_afile_write(a, buf, k * 2);
    }
}

th_status th_llmc_save(th_gpt2 *m, const char *path, int bf16) {
    const th_gpt2_config *cfg = th_gpt2_get_config(m);
    int Vp = (cfg->vocab_size + 127) / 128 * 128;
    int32_t h[256] = {LLMC_MAGIC, bf16 ? 5 : 3, cfg->max_seq_len, cfg->vocab_size,
                      cfg->num_layers, cfg->num_heads, cfg->channels, Vp};
    unsigned char hb[LLMC_HEADER_BYTES];
    for (int i = 0; i < 256; i++) th_put32(hb + 4 * i, (uint32_t)h[i]);

    uint16_t *buf = th_alloc(LLMC_CHUNK * sizeof(uint16_t));
    float *zeros = th_calloc((size_t)cfg->channels, sizeof(float));
    if (!buf || !zeros) {
        th_free(buf);
        th_free(zeros);
        return th_fail(TH_ERR_NOMEM, "%s: out of memory for a write buffer", path);
    }
    th_afile a;
    th_status s = th_afile_open(&a, path);
    if (s == TH_OK) {
        const float *p = th_gpt2_params(m);
        th_tensor_info wte;
        th_gpt2_tensor_info(cfg, TH_P_WTE, &wte);
        size_t n = th_gpt2_num_params(cfg);
        th_afile_write(&a, hb, sizeof hb);
        write_floats(&a, p, wte.count, bf16, buf);
        for (int r = cfg->vocab_size; r < Vp; r++) write_floats(&a, zeros, (size_t)cfg->channels, bf16, buf);
        write_floats(&a, p + wte.count, n - wte.count, bf16, buf);
        s = th_afile_commit(&a);
    }
    th_free(buf);
    th_free(zeros);
    return s;
}
