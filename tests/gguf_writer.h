/* gguf_writer.h: a small GGUF v3 writer of the tests' own (the library only reads GGUF),
 * independent of src/io/gguf.c: it lays files out as ggml's docs/gguf.md and llama.cpp's
 * convert_hf_to_gguf.py do (metadata, tensor infos, aligned data; GPT-2 tensors named and
 * shaped as the converter writes them, 1-D tensors and position_embd in F32, the 2-D weights
 * in F32, F16 or Q8_0 quantized as ggml's quantize_row_q8_0_ref), with knobs that break a
 * file in one chosen way. Used by tests/test_io_gguf.c and scripts/fuzz's seeds. Test code. */
#ifndef THERMO_TEST_GGUF_WRITER_H
#define THERMO_TEST_GGUF_WRITER_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thermo/io.h"
#include "thermo/model.h"

typedef struct {
    unsigned char *p;
    size_t n, cap;
} gw_buf;

static void gw_put(gw_buf *b, const void *p, size_t n) {
    if (n == 0) return; // memcpy's source may not be NULL, even for 0 bytes
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void gw_u32(gw_buf *b, uint32_t v) {
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    gw_put(b, x, 4);
}
static void gw_u64(gw_buf *b, uint64_t v) {
    gw_u32(b, (uint32_t)v);
    gw_u32(b, (uint32_t)(v >> 32));
}
static void gw_strn(gw_buf *b, const char *s, size_t n) {
    gw_u64(b, n);
    gw_put(b, s, n);
}
static void gw_str(gw_buf *b, const char *s) { gw_strn(b, s, strlen(s)); }

typedef struct {
    uint32_t version, alignment;
    gw_buf kv, info, data;
    uint64_t n_kv, n_tensors;
} gw_file;

static void gw_init(gw_file *f, uint32_t alignment) {
    memset(f, 0, sizeof *f);
    f->version = 3;
    f->alignment = alignment;
}

/* A key and its type; the caller writes the value into f->kv next. */
static gw_buf *gw_key(gw_file *f, const char *key, uint32_t type) {
    gw_str(&f->kv, key);
    gw_u32(&f->kv, type);
    f->n_kv++;
    return &f->kv;
}
static void gw_kv_u32(gw_file *f, const char *key, uint32_t v) { gw_u32(gw_key(f, key, TH_GGUF_U32), v); }
static void gw_kv_f32(gw_file *f, const char *key, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    gw_u32(gw_key(f, key, TH_GGUF_F32), u);
}
static void gw_kv_str(gw_file *f, const char *key, const char *v) { gw_str(gw_key(f, key, TH_GGUF_STRING), v); }
static void gw_kv_strs(gw_file *f, const char *key, const char *const *v, int n) {
    gw_buf *b = gw_key(f, key, TH_GGUF_ARRAY);
    gw_u32(b, TH_GGUF_STRING);
    gw_u64(b, (uint64_t)n);
    for (int i = 0; i < n; i++) gw_str(b, v[i]);
}

static void gw_pad(gw_buf *b, uint32_t alignment) {
    static const unsigned char zero = 0;
    while (b->n % alignment) gw_put(b, &zero, 1);
}

/* A tensor: ne[0] is the row length. Its data go at the next aligned offset. */
static void gw_tensor(gw_file *f, const char *name, uint32_t type, int nd, const uint64_t *ne, const void *data,
                      size_t bytes) {
    gw_pad(&f->data, f->alignment);
    gw_str(&f->info, name);
    gw_u32(&f->info, (uint32_t)nd);
    for (int d = 0; d < nd; d++) gw_u64(&f->info, ne[d]);
    gw_u32(&f->info, type);
    gw_u64(&f->info, f->data.n);
    gw_put(&f->data, data, bytes);
    f->n_tensors++;
}

/* The whole file (malloc'ed, *len bytes); f is freed. */
static unsigned char *gw_finish(gw_file *f, size_t *len) {
    gw_buf out = {0};
    gw_put(&out, "GGUF", 4);
    gw_u32(&out, f->version);
    gw_u64(&out, f->n_tensors);
    gw_u64(&out, f->n_kv);
    gw_put(&out, f->kv.p, f->kv.n);
    gw_put(&out, f->info.p, f->info.n);
    gw_pad(&out, f->alignment);
    gw_put(&out, f->data.p, f->data.n);
    free(f->kv.p);
    free(f->info.p);
    free(f->data.p);
    *len = out.n;
    return out.p;
}

/* ggml's quantize_row_q8_0_ref: per 32 weights d = amax / 127 (stored as fp16) and
 * q = round(x / d), written as 34-byte blocks. */
static void gw_quantize_q8_0(unsigned char *out, const float *x, size_t n) {
    for (size_t b = 0; b < n / 32; b++) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[b * 32 + i]));
        float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = th_f32_to_f16_clamped(d);
        out[b * 34] = (unsigned char)h;
        out[b * 34 + 1] = (unsigned char)(h >> 8);
        for (int i = 0; i < 32; i++) out[b * 34 + 2 + i] = (unsigned char)(int8_t)roundf(x[b * 32 + i] * id);
    }
}

/* How a GPT-2 file is written, and what to break. */
typedef struct {
    uint32_t wtype;           /* the 2-D weights: TH_GGML_F32, TH_GGML_F16 or TH_GGML_Q8_0 */
    int output;               /* 0: no output.weight (tied), 1: a copy of token_embd, 2: a changed copy */
    const char *omit_key;     /* a key left out */
    const char *arch;         /* general.architecture (default "gpt2") */
    const char *bad_shape;    /* a tensor written with its dims swapped (1-D: half as long) */
    const char *type_of;      /* a tensor written as type_as (sizes to match) */
    uint32_t type_as;
    int all_types;            /* a key of every value type, arrays of arrays included */
    const char *const *tokens;
    int n_tokens;
    const char *const *merges;
    int n_merges;
} gw_gpt2_opts;

static void gw_gpt2_tensor(gw_file *f, const gw_gpt2_opts *o, const char *name, const float *x, int nd, uint64_t ne0,
                           uint64_t ne1, int weight, float bump) {
    uint64_t ne[2] = {ne0, ne1}, n = ne0 * (nd > 1 ? ne1 : 1);
    uint32_t type = weight ? o->wtype : TH_GGML_F32;
    if (o->bad_shape && strcmp(o->bad_shape, name) == 0) {
        if (nd > 1) {
            ne[0] = ne1;
            ne[1] = ne0;
        } else {
            ne[0] = ne0 / 2;
            n = ne[0];
        }
    }
    if (o->type_of && strcmp(o->type_of, name) == 0) type = o->type_as;
    size_t bytes = type == TH_GGML_F32 ? n * 4 : type == TH_GGML_F16 || type == TH_GGML_BF16 ? n * 2
                   : type == TH_GGML_Q8_0 ? n / 32 * 34 : n / 32 * 18; /* Q4_0 */
    unsigned char *buf = calloc(1, bytes + 1);
    if (!buf) abort();
    if (type == TH_GGML_F32) {
        memcpy(buf, x, n * 4);
        if (bump != 0) ((float *)buf)[n - 1] += bump;
    } else if (type == TH_GGML_F16) {
        for (uint64_t i = 0; i < n; i++) {
            uint16_t h = th_f32_to_f16_clamped(x[i] + (i == n - 1 ? bump : 0));
            buf[2 * i] = (unsigned char)h;
            buf[2 * i + 1] = (unsigned char)(h >> 8);
        }
    } else if (type == TH_GGML_Q8_0) {
        gw_quantize_q8_0(buf, x, n);
        if (bump != 0) buf[bytes - 1] ^= 1;
    }
    gw_tensor(f, name, type, nd, ne, buf, bytes);
    free(buf);
}

/* Writes m as llama.cpp's converter would (tensor order included), to a malloc'ed buffer. */
static unsigned char *gw_gpt2(th_gpt2 *m, const gw_gpt2_opts *o, size_t *len) {
    const th_gpt2_config *c = th_gpt2_get_config(m);
    gw_file f;
    gw_init(&f, 32);
    const char *omit = o->omit_key ? o->omit_key : "";
#define GW_U32(k, v) if (strcmp(omit, k) != 0) gw_kv_u32(&f, k, (uint32_t)(v))
    if (strcmp(omit, "general.architecture") != 0) gw_kv_str(&f, "general.architecture", o->arch ? o->arch : "gpt2");
    gw_kv_str(&f, "general.name", "tiny test gpt2");
    GW_U32("gpt2.block_count", c->num_layers);
    GW_U32("gpt2.context_length", c->max_seq_len);
    GW_U32("gpt2.embedding_length", c->channels);
    GW_U32("gpt2.feed_forward_length", 4 * c->channels);
    GW_U32("gpt2.attention.head_count", c->num_heads);
#undef GW_U32
    if (strcmp(omit, "gpt2.attention.layer_norm_epsilon") != 0)
        gw_kv_f32(&f, "gpt2.attention.layer_norm_epsilon", c->ln_eps);
    gw_kv_u32(&f, "general.file_type", o->wtype == TH_GGML_F32 ? 0 : o->wtype == TH_GGML_F16 ? 1 : 7);
    if (o->all_types) {
        gw_buf *b = gw_key(&f, "test.u8", TH_GGUF_U8);
        gw_put(b, "\x07", 1);
        gw_put(gw_key(&f, "test.i8", TH_GGUF_I8), "\xff", 1);
        gw_put(gw_key(&f, "test.u16", TH_GGUF_U16), "\x01\x02", 2);
        gw_put(gw_key(&f, "test.i16", TH_GGUF_I16), "\xfe\xff", 2);
        gw_u32(gw_key(&f, "test.i32", TH_GGUF_I32), 0xfffffffdu);
        gw_put(gw_key(&f, "test.bool", TH_GGUF_BOOL), "\x01", 1);
        gw_u64(gw_key(&f, "test.u64", TH_GGUF_U64), 1ull << 40);
        gw_u64(gw_key(&f, "test.i64", TH_GGUF_I64), (uint64_t)-5);
        double d = 0.25;
        uint64_t du;
        memcpy(&du, &d, 8);
        gw_u64(gw_key(&f, "test.f64", TH_GGUF_F64), du);
        b = gw_key(&f, "test.nested", TH_GGUF_ARRAY); /* [[1, 2], []] of i32 */
        gw_u32(b, TH_GGUF_ARRAY);
        gw_u64(b, 2);
        gw_u32(b, TH_GGUF_I32);
        gw_u64(b, 2);
        gw_u32(b, 1);
        gw_u32(b, 2);
        gw_u32(b, TH_GGUF_I32);
        gw_u64(b, 0);
        b = gw_key(&f, "test.floats", TH_GGUF_ARRAY);
        gw_u32(b, TH_GGUF_F32);
        gw_u64(b, 1);
        gw_u32(b, 0x3f800000u);
    }
    if (o->tokens) {
        gw_kv_str(&f, "tokenizer.ggml.model", "gpt2");
        gw_kv_str(&f, "tokenizer.ggml.pre", "gpt-2");
        gw_kv_strs(&f, "tokenizer.ggml.tokens", o->tokens, o->n_tokens);
        gw_kv_strs(&f, "tokenizer.ggml.merges", o->merges, o->n_merges);
        gw_kv_u32(&f, "tokenizer.ggml.bos_token_id", (uint32_t)o->n_tokens - 1);
    }

    const float *p = th_gpt2_params(m);
    th_tensor_info ti[TH_P_NUM];
    for (int k = 0; k < TH_P_NUM; k++) th_gpt2_tensor_info(c, k, &ti[k]);
    uint64_t C = (uint64_t)c->channels, V = (uint64_t)c->vocab_size, T = (uint64_t)c->max_seq_len;
    int L = c->num_layers;
    gw_gpt2_tensor(&f, o, "token_embd.weight", p + ti[TH_P_WTE].offset, 2, C, V, 1, 0);
    gw_gpt2_tensor(&f, o, "position_embd.weight", p + ti[TH_P_WPE].offset, 2, C, T, 0, 0);
    static const struct {
        const char *name;
        int which, rows_per_c, k_per_c; /* (rows, K) per layer in units of C; rows 0: 1-D of K */
    } layer[] = {
        {"attn_norm.weight", TH_P_LN1W, 0, 1},   {"attn_norm.bias", TH_P_LN1B, 0, 1},
        {"attn_qkv.weight", TH_P_QKVW, 3, 1},    {"attn_qkv.bias", TH_P_QKVB, 0, 3},
        {"attn_output.weight", TH_P_ATTPROJW, 1, 1}, {"attn_output.bias", TH_P_ATTPROJB, 0, 1},
        {"ffn_norm.weight", TH_P_LN2W, 0, 1},    {"ffn_norm.bias", TH_P_LN2B, 0, 1},
        {"ffn_up.weight", TH_P_FCW, 4, 1},       {"ffn_up.bias", TH_P_FCB, 0, 4},
        {"ffn_down.weight", TH_P_FCPROJW, 1, 4}, {"ffn_down.bias", TH_P_FCPROJB, 0, 1},
    };
    for (int l = 0; l < L; l++)
        for (size_t k = 0; k < sizeof layer / sizeof layer[0]; k++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s", l, layer[k].name);
            const th_tensor_info *t = &ti[layer[k].which];
            const float *x = p + t->offset + (size_t)l * (t->count / (size_t)L);
            if (layer[k].rows_per_c)
                gw_gpt2_tensor(&f, o, name, x, 2, C * (uint64_t)layer[k].k_per_c, C * (uint64_t)layer[k].rows_per_c, 1, 0);
            else
                gw_gpt2_tensor(&f, o, name, x, 1, C * (uint64_t)layer[k].k_per_c, 1, 0, 0);
        }
    gw_gpt2_tensor(&f, o, "output_norm.weight", p + ti[TH_P_LNFW].offset, 1, C, 1, 0, 0);
    gw_gpt2_tensor(&f, o, "output_norm.bias", p + ti[TH_P_LNFB].offset, 1, C, 1, 0, 0);
    if (o->output)
        gw_gpt2_tensor(&f, o, "output.weight", p + ti[TH_P_WTE].offset, 2, C, V, 1, o->output == 2 ? 0.5f : 0);
    return gw_finish(&f, len);
}

/* A byte-level GPT-2 vocabulary of 256 + 4 merged tokens + <|endoftext|> (261), in the
 * byte alphabet (bytes_to_unicode), and its 4 merges. Strings are static. */
static void gw_tiny_vocab(const char *const **tokens, int *n_tokens, const char *const **merges, int *n_merges) {
    static char store[256][4];
    static const char *tok[261];
    static const char *const mg[] = {"h e", "l l", "he ll", "\xc4\xa0 t"};
    int extra = 256;
    for (int ch = 0; ch < 256; ch++) {
        int printable = (ch >= '!' && ch <= '~') || (ch >= 0xA1 && ch <= 0xAC) || ch >= 0xAE;
        int cp = printable ? ch : extra++;
        if (cp < 0x80) snprintf(store[ch], sizeof store[ch], "%c", cp);
        else snprintf(store[ch], sizeof store[ch], "%c%c", 0xC0 | (cp >> 6), 0x80 | (cp & 0x3F));
        tok[ch] = store[ch];
    }
    tok[256] = "he";
    tok[257] = "ll";
    tok[258] = "hell";
    tok[259] = "\xc4\xa0t";
    tok[260] = "<|endoftext|>";
    *tokens = tok;
    *n_tokens = 261;
    *merges = mg;
    *n_merges = 4;
}

#endif
