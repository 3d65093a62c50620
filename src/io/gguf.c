/* gguf.c: GGUF files (ggml / llama.cpp's model format, version 3) read: a reader that
 * validates the header, every metadata value and tensor info against the file's length
 * before anything is used; GPT-2 models as llama.cpp's converter writes them, F32, F16, BF16
 * and Q8_0 tensors widened to our f32 parameter block (no transposes: GGUF's ne[0] is the
 * row, and the converter already stores the Conv1D weights (out, in)); and the GPT-2
 * tokenizer the file carries, handed to the text module as vocab.json + merges.txt. */
#include "io/io_internal.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "thermo/text.h"

#define GGUF_VERSION 3u
#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_DEPTH 8      /* arrays of arrays nested deeper are refused */
#define GGUF_MAX_NAME 256     /* tensor name bytes */
#define GGUF_MAX_KEY 65535    /* key bytes */

typedef struct {
    th_gguf_kv pub;
    uint64_t *offs; /* string arrays: each element's offset in the file (its length prefix) */
} gguf_kv;

struct th_gguf {
    char label[512];
    const unsigned char *base;
    size_t len;
    int mapped;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_off, data_len; /* the data section */
    int n_kv, n_tensors;
    gguf_kv *kv;
    th_gguf_tensor *tensors;
};

/* ---------------------------------------------------------------------------------
 * ggml types: name, weights per block, bytes per block (0: not known to this reader) */

static const struct {
    const char *name;
    uint32_t block, bytes;
} ggml_types[] = {
    [0] = {"F32", 1, 4},       [1] = {"F16", 1, 2},      [2] = {"Q4_0", 32, 18},   [3] = {"Q4_1", 32, 20},
    [6] = {"Q5_0", 32, 22},    [7] = {"Q5_1", 32, 24},   [8] = {"Q8_0", 32, 34},   [9] = {"Q8_1", 32, 40},
    [10] = {"Q2_K", 256, 84},  [11] = {"Q3_K", 256, 110}, [12] = {"Q4_K", 256, 144}, [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210}, [15] = {"Q8_K", 256, 292}, [16] = {"IQ2_XXS", 0, 0}, [17] = {"IQ2_XS", 0, 0},
    [18] = {"IQ3_XXS", 0, 0},  [19] = {"IQ1_S", 0, 0},    [20] = {"IQ4_NL", 32, 18}, [21] = {"IQ3_S", 0, 0},
    [22] = {"IQ2_S", 0, 0},    [23] = {"IQ4_XS", 0, 0},   [24] = {"I8", 1, 1},      [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},      [27] = {"I64", 1, 8},      [28] = {"F64", 1, 8},     [29] = {"IQ1_M", 0, 0},
    [30] = {"BF16", 1, 2},
};
#define GGML_NUM_TYPES (sizeof ggml_types / sizeof ggml_types[0])

const char *th_ggml_type_name(uint32_t type) {
    return type < GGML_NUM_TYPES && ggml_types[type].name ? ggml_types[type].name : "?";
}

static const char *vtype_name(uint32_t t) {
    static const char *const n[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array",
                                    "u64", "i64", "f64"};
    return t < sizeof n / sizeof n[0] ? n[t] : "?";
}

static uint64_t vtype_size(uint32_t t) { /* fixed-size scalars; 0 for string and array */
    static const uint8_t sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < sizeof sz ? sz[t] : 0;
}

/* ---------------------------------------------------------------------------------
 * the cursor: every read checks the bytes left */

typedef struct {
    const th_gguf *g;
    uint64_t pos;
} cursor;

static int has(const cursor *c, uint64_t n) { return n <= c->g->len - c->pos; }

static int rd_u32(cursor *c, uint32_t *v) {
    if (!has(c, 4)) return 0;
    *v = th_le32(c->g->base + c->pos);
    c->pos += 4;
    return 1;
}

static int rd_u64(cursor *c, uint64_t *v) {
    if (!has(c, 8)) return 0;
    *v = th_le64(c->g->base + c->pos);
    c->pos += 8;
    return 1;
}

/* A string: its bytes stay in the file. */
static int rd_str(cursor *c, const char **s, uint64_t *n) {
    if (!rd_u64(c, n) || !has(c, *n)) return 0;
    *s = (const char *)c->g->base + c->pos;
    c->pos += *n;
    return 1;
}

static char *dup_name(const char *s, uint64_t n) {
    char *d = th_alloc((size_t)n + 1);
    if (d) {
        memcpy(d, s, (size_t)n);
        d[n] = 0;
    }
    return d;
}

/* Skips one value of type t (arrays recursively); fills kv's fields at depth 0. */
static th_status read_value(cursor *c, uint32_t t, int depth, gguf_kv *kv, const char *key) {
    const th_gguf *g = c->g;
    if (t > TH_GGUF_F64) return th_fail(TH_ERR_FORMAT, "%s: key %s: unknown value type %u", g->label, key, t);
    if (t == TH_GGUF_STRING) {
        const char *s;
        uint64_t n;
        if (!rd_str(c, &s, &n)) return th_fail(TH_ERR_FORMAT, "%s: key %s: string past the end of the file", g->label, key);
        if (kv) {
            kv->pub.str = s;
            kv->pub.str_len = n;
        }
        return TH_OK;
    }
    if (t == TH_GGUF_ARRAY) {
        uint32_t et;
        uint64_t n;
        if (!rd_u32(c, &et) || !rd_u64(c, &n))
            return th_fail(TH_ERR_FORMAT, "%s: key %s: array header past the end of the file", g->label, key);
        if (et > TH_GGUF_F64) return th_fail(TH_ERR_FORMAT, "%s: key %s: unknown array element type %u", g->label, key, et);
        if (depth + 1 >= GGUF_MAX_DEPTH)
            return th_fail(TH_ERR_FORMAT, "%s: key %s: arrays nested more than %d deep", g->label, key, GGUF_MAX_DEPTH);
        if (kv) {
            kv->pub.elem_type = (th_gguf_vtype)et;
            kv->pub.count = n;
        }
        uint64_t es = vtype_size(et), bytes;
        if (es) {
            if (!th_mul_u64(n, es, &bytes) || !has(c, bytes))
                return th_fail(TH_ERR_FORMAT, "%s: key %s: array of %llu %s past the end of the file", g->label, key,
                               (unsigned long long)n, vtype_name(et));
            c->pos += bytes;
            return TH_OK;
        }
        /* strings are at least 8 bytes and arrays 12: bound the count before allocating */
        if (n > (g->len - c->pos) / 8)
            return th_fail(TH_ERR_FORMAT, "%s: key %s: array of %llu %s past the end of the file", g->label, key,
                           (unsigned long long)n, vtype_name(et));
        if (kv && et == TH_GGUF_STRING) {
            kv->offs = th_alloc(sizeof *kv->offs * (size_t)(n ? n : 1));
            if (!kv->offs) return th_fail(TH_ERR_NOMEM, "%s: key %s: out of memory", g->label, key);
        }
        for (uint64_t i = 0; i < n; i++) {
            if (kv && kv->offs) kv->offs[i] = c->pos;
            th_status s = read_value(c, et, depth + 1, NULL, key);
            if (s != TH_OK) return s;
        }
        return TH_OK;
    }
    uint64_t es = vtype_size(t);
    if (!has(c, es)) return th_fail(TH_ERR_FORMAT, "%s: key %s: value past the end of the file", g->label, key);
    const unsigned char *p = g->base + c->pos;
    c->pos += es;
    if (!kv) return TH_OK;
    uint64_t u = es == 1 ? p[0] : es == 2 ? (uint64_t)(p[0] | p[1] << 8) : es == 4 ? th_le32(p) : th_le64(p);
    kv->pub.u = u;
    switch (t) {
    case TH_GGUF_I8: kv->pub.i = (int8_t)u; break;
    case TH_GGUF_I16: kv->pub.i = (int16_t)u; break;
    case TH_GGUF_I32: kv->pub.i = (int32_t)u; break;
    case TH_GGUF_I64: memcpy(&kv->pub.i, &u, 8); break;
    case TH_GGUF_F32: {
        uint32_t b = (uint32_t)u;
        float f;
        memcpy(&f, &b, 4);
        kv->pub.f = f;
        break;
    }
    case TH_GGUF_F64: memcpy(&kv->pub.f, &u, 8); break;
    case TH_GGUF_BOOL:
        if (u > 1) return th_fail(TH_ERR_FORMAT, "%s: key %s: bool value %llu is not 0 or 1", g->label, key, (unsigned long long)u);
        break;
    default: break;
    }
    return TH_OK;
}

/* ---------------------------------------------------------------------------------
 * open */

typedef struct {
    uint64_t begin, end;
    int idx;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static th_status parse(th_gguf *g) {
    cursor c = {g, 0};
    span *spans = NULL;
    th_status s = TH_OK;
    uint32_t magic = 0;
    uint64_t n_tensors, n_kv;
    if (!rd_u32(&c, &magic) || memcmp(g->base, "GGUF", 4) != 0)
        return th_fail(TH_ERR_FORMAT, "%s: not a GGUF file (no \"GGUF\" magic)", g->label);
    if (!rd_u32(&c, &g->version)) return th_fail(TH_ERR_FORMAT, "%s: truncated in the header", g->label);
    if (g->version != GGUF_VERSION) {
        if (g->version == 0x03000000u)
            return th_fail(TH_ERR_UNSUPPORTED, "%s: a big-endian GGUF file; this reader reads little-endian ones", g->label);
        return th_fail(TH_ERR_UNSUPPORTED, "%s: GGUF version %u; this reader reads version %u (re-convert the model "
                       "with a current llama.cpp)", g->label, g->version, GGUF_VERSION);
    }
    if (!rd_u64(&c, &n_tensors) || !rd_u64(&c, &n_kv)) return th_fail(TH_ERR_FORMAT, "%s: truncated in the header", g->label);
    /* a key takes at least 13 bytes, a tensor info 24 */
    if (n_kv > (g->len - c.pos) / 13 || n_tensors > (g->len - c.pos) / 24)
        return th_fail(TH_ERR_FORMAT, "%s: the header announces %llu keys and %llu tensors, more than the file's %zu "
                       "bytes hold (truncated?)", g->label, (unsigned long long)n_kv, (unsigned long long)n_tensors, g->len);
    g->kv = th_calloc((size_t)n_kv + 1, sizeof *g->kv);
    g->tensors = th_calloc((size_t)n_tensors + 1, sizeof *g->tensors);
    spans = th_calloc((size_t)n_tensors + 1, sizeof *spans);
    if (!g->kv || !g->tensors || !spans) {
        s = th_fail(TH_ERR_NOMEM, "%s: out of memory for %llu keys and %llu tensors", g->label,
                    (unsigned long long)n_kv, (unsigned long long)n_tensors);
        goto done;
    }

    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t k = 0; k < n_kv; k++) {
        gguf_kv *kv = &g->kv[k];
        const char *key;
        uint64_t kn;
        uint32_t t;
        if (!rd_str(&c, &key, &kn) || !rd_u32(&c, &t)) {
            s = th_fail(TH_ERR_FORMAT, "%s: truncated in metadata key %llu of %llu", g->label, (unsigned long long)k,
                        (unsigned long long)n_kv);
            goto done;
        }
        if (kn == 0 || kn > GGUF_MAX_KEY || memchr(key, 0, (size_t)kn)) {
            s = th_fail(TH_ERR_FORMAT, "%s: metadata key %llu has a bad name (empty, too long or with a NUL byte)",
                        g->label, (unsigned long long)k);
            goto done;
        }
        if (!(kv->pub.key = dup_name(key, kn))) {
            s = th_fail(TH_ERR_NOMEM, "%s: out of memory", g->label);
            goto done;
        }
        g->n_kv = (int)k + 1;
        for (uint64_t j = 0; j < k; j++)
            if (strcmp(g->kv[j].pub.key, kv->pub.key) == 0) {
                s = th_fail(TH_ERR_FORMAT, "%s: key %s appears twice", g->label, kv->pub.key);
                goto done;
            }
        kv->pub.type = (th_gguf_vtype)t;
        kv->pub.count = 1;
        if ((s = read_value(&c, t, 0, kv, kv->pub.key)) != TH_OK) goto done;
        if (strcmp(kv->pub.key, "general.alignment") == 0) {
            if (t != TH_GGUF_U32 || kv->pub.u == 0 || (kv->pub.u & (kv->pub.u - 1)) != 0) {
                s = th_fail(TH_ERR_FORMAT, "%s: key general.alignment must be a u32 power of two", g->label);
                goto done;
            }
            g->alignment = kv->pub.u;
        }
    }

    for (uint64_t k = 0; k < n_tensors; k++) {
        th_gguf_tensor *t = &g->tensors[k];
        const char *name;
        uint64_t nn;
        uint32_t nd;
        if (!rd_str(&c, &name, &nn) || !rd_u32(&c, &nd)) {
            s = th_fail(TH_ERR_FORMAT, "%s: truncated in tensor info %llu of %llu", g->label, (unsigned long long)k,
                        (unsigned long long)n_tensors);
            goto done;
        }
        if (nn == 0 || nn >= GGUF_MAX_NAME || memchr(name, 0, (size_t)nn)) {
            s = th_fail(TH_ERR_FORMAT, "%s: tensor info %llu has a bad name (empty, %d bytes or more, or with a NUL "
                        "byte)", g->label, (unsigned long long)k, GGUF_MAX_NAME);
            goto done;
        }
        if (!(t->name = dup_name(name, nn))) {
            s = th_fail(TH_ERR_NOMEM, "%s: out of memory", g->label);
            goto done;
        }
        g->n_tensors = (int)k + 1;
        if (nd < 1 || nd > 4) {
            s = th_fail(TH_ERR_FORMAT, "%s: tensor %s has %u dimensions (1 to 4 allowed)", g->label, t->name, nd);
            goto done;
        }
        t->ndim = (int)nd;
        t->count = 1;
        for (int d = 0; d < 4; d++) {
            t->ne[d] = 1;
            if (d < t->ndim && !rd_u64(&c, &t->ne[d])) {
                s = th_fail(TH_ERR_FORMAT, "%s: truncated in tensor info %s", g->label, t->name);
                goto done;
            }
            if (t->ne[d] > INT64_MAX || !th_mul_u64(t->count, t->ne[d], &t->count) || t->count > INT64_MAX) {
                s = th_fail(TH_ERR_FORMAT, "%s: tensor %s: element count overflows", g->label, t->name);
                goto done;
            }
        }
        if (!rd_u32(&c, &t->type) || !rd_u64(&c, &t->offset)) {
            s = th_fail(TH_ERR_FORMAT, "%s: truncated in tensor info %s", g->label, t->name);
            goto done;
        }
        for (uint64_t j = 0; j < k; j++)
            if (strcmp(g->tensors[j].name, t->name) == 0) {
                s = th_fail(TH_ERR_FORMAT, "%s: tensor %s appears twice", g->label, t->name);
                goto done;
            }
        if (t->type >= GGML_NUM_TYPES || !ggml_types[t->type].bytes) {
            s = th_fail(TH_ERR_UNSUPPORTED, "%s: tensor %s has ggml type %u (%s), whose size this reader does not know",
                        g->label, t->name, t->type, th_ggml_type_name(t->type));
            goto done;
        }
        uint32_t blk = ggml_types[t->type].block;
        if (t->ne[0] % blk != 0) {
            s = th_fail(TH_ERR_FORMAT, "%s: tensor %s: rows of %llu are not whole %s blocks of %u", g->label, t->name,
                        (unsigned long long)t->ne[0], th_ggml_type_name(t->type), blk);
            goto done;
        }
        if (!th_mul_u64(t->count / blk, ggml_types[t->type].bytes, &t->bytes)) {
            s = th_fail(TH_ERR_FORMAT, "%s: tensor %s: byte size overflows", g->label, t->name);
            goto done;
        }
        if (t->offset % g->alignment != 0) {
            s = th_fail(TH_ERR_FORMAT, "%s: tensor %s: offset %llu is not a multiple of the alignment %llu", g->label,
                        t->name, (unsigned long long)t->offset, (unsigned long long)g->alignment);
            goto done;
        }
    }
    /* the data section starts at the next multiple of the alignment */
    uint64_t pad = (g->alignment - c.pos % g->alignment) % g->alignment;
    g->data_off = c.pos + pad;
    if (n_tensors && g->data_off > g->len) {
        s = th_fail(TH_ERR_FORMAT, "%s: truncated before the data section (at byte %llu of %zu)", g->label,
                    (unsigned long long)g->data_off, g->len);
        goto done;
    }
    g->data_len = g->data_off <= g->len ? g->len - g->data_off : 0;
    for (int k = 0; k < g->n_tensors; k++) {
        const th_gguf_tensor *t = &g->tensors[k];
        uint64_t end;
        if (!th_add_u64(t->offset, t->bytes, &end) || end > g->data_len) {
            s = th_fail(TH_ERR_FORMAT, "%s: tensor %s: data [%llu, %llu) lies beyond the end of the file (data section "
                        "of %llu bytes; truncated?)", g->label, t->name, (unsigned long long)t->offset,
                        (unsigned long long)t->offset + t->bytes, (unsigned long long)g->data_len);
            goto done;
        }
        spans[k] = (span){t->offset, end, k};
    }
    qsort(spans, (size_t)g->n_tensors, sizeof *spans, span_cmp);
    for (int k = 1; k < g->n_tensors; k++)
        if (spans[k].begin < spans[k - 1].end && spans[k].begin < spans[k].end) {
            s = th_fail(TH_ERR_FORMAT, "%s: tensors %s and %s overlap", g->label, g->tensors[spans[k - 1].idx].name,
                        g->tensors[spans[k].idx].name);
            goto done;
        }
done:
    th_free(spans);
    return s;
}

void th_gguf_close(th_gguf *g) {
    if (!g) return;
    for (int i = 0; i < g->n_kv; i++) {
        th_free((char *)g->kv[i].pub.key);
        th_free(g->kv[i].offs);
    }
    for (int i = 0; i < g->n_tensors; i++) th_free((char *)g->tensors[i].name);
    th_free(g->kv);
    th_free(g->tensors);
    if (g->mapped) munmap((void *)g->base, g->len);
    th_free(g);
}

static th_status open_common(th_gguf *g, th_gguf **out) {
    th_status s = g->len < 8 ? th_fail(TH_ERR_FORMAT, "%s: %zu bytes: too short for a GGUF header", g->label, g->len)
                             : parse(g);
    if (s != TH_OK) {
        th_gguf_close(g);
        return s;
    }
    *out = g;
    return TH_OK;
}

th_status th_gguf_open_memory(const void *data, size_t len, const char *label, th_gguf **out) {
    th_gguf *g = th_calloc(1, sizeof *g);
    if (!g) return th_fail(TH_ERR_NOMEM, "%s: out of memory", label);
    snprintf(g->label, sizeof g->label, "%s", label);
    g->base = data;
    g->len = len;
    return open_common(g, out);
}

th_status th_gguf_open(const char *path, th_gguf **out) {
    int fd;
    uint64_t bytes;
    th_status s = th_open_regular(path, &fd, &bytes);
    if (s != TH_OK) return s;
    th_gguf *g = th_calloc(1, sizeof *g);
    if (!g) {
        close(fd);
        return th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(g->label, sizeof g->label, "%s", path);
    g->len = (size_t)bytes;
    g->base = (const unsigned char *)"";
    if (g->len >= 8) {
        void *p = mmap(NULL, g->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            s = th_fail(TH_ERR_IO, "%s: cannot map %zu bytes: %s", path, g->len, strerror(errno));
            close(fd);
            th_free(g);
            return s;
        }
        g->base = p;
        g->mapped = 1;
    }
    close(fd);
    return open_common(g, out);
}

/* ---------------------------------------------------------------------------------
 * accessors */

uint32_t th_gguf_version(const th_gguf *g) { return g->version; }
int th_gguf_kv_count(const th_gguf *g) { return g->n_kv; }
const th_gguf_kv *th_gguf_kv_at(const th_gguf *g, int i) { return i >= 0 && i < g->n_kv ? &g->kv[i].pub : NULL; }

const th_gguf_kv *th_gguf_find_kv(const th_gguf *g, const char *key) {
    for (int i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].pub.key, key) == 0) return &g->kv[i].pub;
    return NULL;
}

th_status th_gguf_array_string(const th_gguf *g, const th_gguf_kv *kv, uint64_t i, const char **s, uint64_t *len) {
    const gguf_kv *k = (const gguf_kv *)kv; /* pub is the first member */
    if (kv->type != TH_GGUF_ARRAY || kv->elem_type != TH_GGUF_STRING || !k->offs || i >= kv->count)
        return th_fail(TH_ERR_INVALID, "%s: key %s has no string element %llu", g->label, kv->key, (unsigned long long)i);
    cursor c = {g, k->offs[i]};
    rd_str(&c, s, len); /* validated at open */
    return TH_OK;
}

int th_gguf_tensor_count(const th_gguf *g) { return g->n_tensors; }
const th_gguf_tensor *th_gguf_tensor_at(const th_gguf *g, int i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const th_gguf_tensor *th_gguf_find_tensor(const th_gguf *g, const char *name) {
    for (int i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

static int type_readable(uint32_t t) {
    return t == TH_GGML_F32 || t == TH_GGML_F16 || t == TH_GGML_BF16 || t == TH_GGML_Q8_0;
}

th_status th_gguf_read_f32(const th_gguf *g, const th_gguf_tensor *t, float *dst, size_t count) {
    if (!type_readable(t->type))
        return th_fail(TH_ERR_UNSUPPORTED, "%s: tensor %s has type %s; F32, F16, BF16 or Q8_0 expected", g->label,
                       t->name, th_ggml_type_name(t->type));
    if (count != t->count)
        return th_fail(TH_ERR_INVALID, "%s: tensor %s has %llu elements, not %zu", g->label, t->name,
                       (unsigned long long)t->count, count);
    const unsigned char *p = g->base + g->data_off + t->offset;
    switch (t->type) {
    case TH_GGML_F32: memcpy(dst, p, count * 4); break;
    case TH_GGML_F16:
        for (size_t i = 0; i < count; i++) dst[i] = th_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    case TH_GGML_BF16:
        for (size_t i = 0; i < count; i++) dst[i] = th_bf16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
        break;
    default: /* Q8_0: blocks of an fp16 scale d and 32 int8 q; the weight is d · q */
        for (size_t b = 0; b < count / 32; b++) {
            const unsigned char *blk = p + b * 34;
            float d = th_f16_to_f32((uint16_t)(blk[0] | blk[1] << 8));
            for (int i = 0; i < 32; i++) dst[b * 32 + (size_t)i] = d * (float)(int8_t)blk[2 + i];
        }
        break;
    }
    return TH_OK;
}

/* ---------------------------------------------------------------------------------
 * GPT-2 */

static th_status get_int(const th_gguf *g, const char *key, int *out) {
    const th_gguf_kv *kv = th_gguf_find_kv(g, key);
    if (!kv) return th_fail(TH_ERR_FORMAT, "%s: missing key %s", g->label, key);
    int64_t v;
    switch (kv->type) {
    case TH_GGUF_U8: case TH_GGUF_U16: case TH_GGUF_U32: case TH_GGUF_U64:
        v = kv->u > INT_MAX ? -1 : (int64_t)kv->u;
        break;
    case TH_GGUF_I8: case TH_GGUF_I16: case TH_GGUF_I32: case TH_GGUF_I64: v = kv->i; break;
    default: return th_fail(TH_ERR_FORMAT, "%s: key %s is a %s, not an integer", g->label, key, vtype_name(kv->type));
    }
    if (v < 1 || v > INT_MAX)
        return th_fail(TH_ERR_FORMAT, "%s: key %s = %lld is not a positive int", g->label, key, (long long)v);
    *out = (int)v;
    return TH_OK;
}

/* A string key that must equal `want` (TH_ERR_UNSUPPORTED naming what it is). */
static th_status want_str(const th_gguf *g, const char *key, const char *want, const char *what) {
    const th_gguf_kv *kv = th_gguf_find_kv(g, key);
    if (!kv) return th_fail(TH_ERR_FORMAT, "%s: missing key %s", g->label, key);
    if (kv->type != TH_GGUF_STRING)
        return th_fail(TH_ERR_FORMAT, "%s: key %s is a %s, not a string", g->label, key, vtype_name(kv->type));
    if (kv->str_len != strlen(want) || memcmp(kv->str, want, kv->str_len) != 0)
        return th_fail(TH_ERR_UNSUPPORTED, "%s: key %s is \"%.*s\"; this engine reads %s \"%s\"", g->label, key,
                       (int)(kv->str_len > 64 ? 64 : kv->str_len), kv->str, what, want);
    return TH_OK;
}

/* Our tensor `which` under its GGUF name: "%d" is the layer. */
static const struct {
    const char *name;
    int which;
} gguf_names[TH_P_NUM] = {
    {"token_embd.weight", TH_P_WTE},           {"position_embd.weight", TH_P_WPE},
    {"blk.%d.attn_norm.weight", TH_P_LN1W},    {"blk.%d.attn_norm.bias", TH_P_LN1B},
    {"blk.%d.attn_qkv.weight", TH_P_QKVW},     {"blk.%d.attn_qkv.bias", TH_P_QKVB},
    {"blk.%d.attn_output.weight", TH_P_ATTPROJW}, {"blk.%d.attn_output.bias", TH_P_ATTPROJB},
    {"blk.%d.ffn_norm.weight", TH_P_LN2W},     {"blk.%d.ffn_norm.bias", TH_P_LN2B},
    {"blk.%d.ffn_up.weight", TH_P_FCW},        {"blk.%d.ffn_up.bias", TH_P_FCB},
    {"blk.%d.ffn_down.weight", TH_P_FCPROJW},  {"blk.%d.ffn_down.bias", TH_P_FCPROJB},
    {"output_norm.weight", TH_P_LNFW},         {"output_norm.bias", TH_P_LNFB},
};

static int layered(int which) {
    return which != TH_P_WTE && which != TH_P_WPE && which != TH_P_LNFW && which != TH_P_LNFB;
}

static void fmt_ne(char *buf, size_t cap, int nd, const uint64_t *ne) {
    size_t w = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < nd && w < cap; d++) w += (size_t)snprintf(buf + w, cap - w, "%s%llu", d ? ", " : "", (unsigned long long)ne[d]);
    if (w < cap) snprintf(buf + w, cap - w, "]");
}

/* Checks that t is `name` with ne (nd dims) and a readable type. */
static th_status check_tensor(const th_gguf *g, const th_gguf_tensor *t, const char *name, int nd, const uint64_t *ne) {
    if (!t) return th_fail(TH_ERR_FORMAT, "%s: missing tensor %s", g->label, name);
    int same = t->ndim == nd;
    for (int d = 0; d < nd && same; d++) same = t->ne[d] == ne[d];
    if (!same) {
        char want[96], got[96];
        fmt_ne(want, sizeof want, nd, ne);
        fmt_ne(got, sizeof got, t->ndim, t->ne);
        return th_fail(TH_ERR_FORMAT, "%s: tensor %s has ne %s; the model's sizes give %s", g->label, name, got, want);
    }
    if (!type_readable(t->type))
        return th_fail(TH_ERR_UNSUPPORTED, "%s: tensor %s has type %s; F32, F16, BF16 or Q8_0 expected", g->label, name,
                       th_ggml_type_name(t->type));
    return TH_OK;
}

static th_status read_config(const th_gguf *g, th_gpt2_config *cfg) {
    th_status s;
    if ((s = want_str(g, "general.architecture", "gpt2", "architecture")) != TH_OK) return s;
    if ((s = get_int(g, "gpt2.block_count", &cfg->num_layers)) != TH_OK) return s;
    if ((s = get_int(g, "gpt2.context_length", &cfg->max_seq_len)) != TH_OK) return s;
    if ((s = get_int(g, "gpt2.embedding_length", &cfg->channels)) != TH_OK) return s;
    if ((s = get_int(g, "gpt2.attention.head_count", &cfg->num_heads)) != TH_OK) return s;
    const th_gguf_kv *eps = th_gguf_find_kv(g, "gpt2.attention.layer_norm_epsilon");
    if (!eps) return th_fail(TH_ERR_FORMAT, "%s: missing key gpt2.attention.layer_norm_epsilon", g->label);
    if ((eps->type != TH_GGUF_F32 && eps->type != TH_GGUF_F64) || !(eps->f > 0) || eps->f > 1)
        return th_fail(TH_ERR_FORMAT, "%s: key gpt2.attention.layer_norm_epsilon must be a float in (0, 1]", g->label);
    cfg->ln_eps = (float)eps->f;
    if (th_gguf_find_kv(g, "gpt2.feed_forward_length")) {
        int ff;
        if ((s = get_int(g, "gpt2.feed_forward_length", &ff)) != TH_OK) return s;
        if ((long long)ff != 4LL * cfg->channels)
            return th_fail(TH_ERR_UNSUPPORTED, "%s: key gpt2.feed_forward_length = %d; GPT-2's is 4 x %d", g->label, ff,
                           cfg->channels);
    }
    const th_gguf_tensor *wte = th_gguf_find_tensor(g, "token_embd.weight");
    if (!wte) return th_fail(TH_ERR_FORMAT, "%s: missing tensor token_embd.weight", g->label);
    if (wte->ndim != 2 || wte->ne[1] > INT_MAX || wte->ne[1] < 1)
        return th_fail(TH_ERR_FORMAT, "%s: tensor token_embd.weight is not a [C, V] matrix", g->label);
    cfg->vocab_size = (int)wte->ne[1];
    return th_io_check_config(g->label, cfg);
}

th_status th_gguf_load_model(const th_gguf *g, th_gpt2 **out, th_model_info *info) {
    th_gpt2_config cfg;
    th_status s = read_config(g, &cfg);
    if (s != TH_OK) return s;
    int L = cfg.num_layers, n_slots = 4 + 12 * L;
    const th_gguf_tensor **found = th_calloc((size_t)n_slots, sizeof *found);
    size_t *offsets = th_calloc((size_t)n_slots, sizeof *offsets);
    float *row = th_alloc(sizeof(float) * (size_t)cfg.channels);
    th_gpt2 *m = NULL;
    if (!found || !offsets || !row) {
        s = th_fail(TH_ERR_NOMEM, "%s: out of memory for the tensor table", g->label);
        goto done;
    }
    /* every tensor of the model, by name, with its shape */
    int n = 0, wte_slot = -1;
    uint64_t weight_types = 0; /* bit per ggml type of the weights packed for inference */
    for (int k = 0; k < TH_P_NUM; k++) {
        th_tensor_info ti;
        th_gpt2_tensor_info(&cfg, gguf_names[k].which, &ti);
        int lay = layered(gguf_names[k].which);
        for (int l = 0; l < (lay ? L : 1); l++) {
            char name[96];
            snprintf(name, sizeof name, gguf_names[k].name, l);
            int nd = lay ? ti.ndim - 1 : ti.ndim;
            const int *shape = lay ? ti.shape + 1 : ti.shape;
            uint64_t ne[2] = {(uint64_t)shape[nd - 1], nd > 1 ? (uint64_t)shape[0] : 1};
            const th_gguf_tensor *t = th_gguf_find_tensor(g, name);
            if ((s = check_tensor(g, t, name, nd, ne)) != TH_OK) goto done;
            if (gguf_names[k].which == TH_P_WTE) wte_slot = n;
            if (nd == 2 && gguf_names[k].which != TH_P_WPE) weight_types |= 1ull << (t->type & 63);
            found[n] = t;
            offsets[n++] = ti.offset + (lay ? (size_t)l * (ti.count / (size_t)L) : 0);
        }
    }
    const th_gguf_tensor *output = th_gguf_find_tensor(g, "output.weight");
    if (output && (s = check_tensor(g, output, "output.weight", 2, found[wte_slot]->ne)) != TH_OK) goto done;
    int known = n + (output != NULL);
    if (known != g->n_tensors)
        for (int i = 0; i < g->n_tensors; i++) {
            const char *nm = g->tensors[i].name;
            int hit = output && strcmp(nm, "output.weight") == 0;
            for (int k = 0; k < n && !hit; k++) hit = found[k] == &g->tensors[i];
            if (!hit) {
                s = th_fail(TH_ERR_FORMAT, "%s: unknown tensor %s (gpt2.block_count is %d)", g->label, nm, L);
                goto done;
            }
        }
    const th_gguf_kv *tokens = th_gguf_find_kv(g, "tokenizer.ggml.tokens");
    if (tokens && tokens->type == TH_GGUF_ARRAY && tokens->count != (uint64_t)cfg.vocab_size) {
        s = th_fail(TH_ERR_FORMAT, "%s: key tokenizer.ggml.tokens has %llu tokens but token_embd.weight %d rows",
                    g->label, (unsigned long long)tokens->count, cfg.vocab_size);
        goto done;
    }

    if ((s = th_gpt2_create(&cfg, &m)) != TH_OK) goto done;
    float *params = th_gpt2_params(m);
    for (int k = 0; k < n && s == TH_OK; k++) s = th_gguf_read_f32(g, found[k], params + offsets[k], found[k]->count);
    if (s != TH_OK) goto done;
    if (output && output != found[wte_slot]) {
        /* a copy of token_embd (older converters): it must be the same values, else untied */
        const float *wte = params + offsets[wte_slot];
        th_gguf_tensor one = *output;
        size_t C = (size_t)cfg.channels;
        uint64_t row_bytes = output->bytes / (uint64_t)cfg.vocab_size;
        one.ndim = 1;
        one.ne[1] = 1;
        one.count = C;
        one.bytes = row_bytes;
        for (int r = 0; r < cfg.vocab_size; r++) {
            one.offset = output->offset + (uint64_t)r * row_bytes;
            th_gguf_read_f32(g, &one, row, C);
            if (memcmp(row, wte + (size_t)r * C, C * sizeof(float)) != 0) {
                size_t j = 0;
                while (j < C && memcmp(&row[j], &wte[(size_t)r * C + j], sizeof(float)) == 0) j++;
                s = th_fail(TH_ERR_UNSUPPORTED, "%s: output.weight differs from token_embd.weight (first at row %d, "
                            "column %zu): the model is untied, which this engine does not support", g->label, r, j);
                goto done;
            }
        }
    }

    if (info) {
        memset(info, 0, sizeof *info);
        info->format = TH_FORMAT_GGUF;
        info->names = TH_NAMES_GGUF;
        info->num_tensors = g->n_tensors;
        info->ignored_tensors = output ? 1 : 0;
        info->num_params = th_gpt2_num_params(&cfg);
        info->config = cfg;
        info->padded_vocab_size = cfg.vocab_size;
        info->gguf_version = g->version;
        snprintf(info->arch, sizeof info->arch, "gpt2");
        int single = (weight_types & (weight_types - 1)) == 0;
        uint32_t wt = single ? (uint32_t)__builtin_ctzll(weight_types) : 0;
        snprintf(info->dtype, sizeof info->dtype, "%s", single ? th_ggml_type_name(wt) : "mixed");
        info->weights_dtype = !single ? TH_DTYPE_F32 : wt == TH_GGML_Q8_0 ? TH_DTYPE_Q8
                              : wt == TH_GGML_F16 ? TH_DTYPE_F16 : wt == TH_GGML_BF16 ? TH_DTYPE_BF16 : TH_DTYPE_F32;
        static const uint32_t listed[] = {TH_GGML_F32, TH_GGML_F16, TH_GGML_BF16, TH_GGML_Q8_0};
        size_t w = 0;
        for (size_t k = 0; k < sizeof listed / sizeof listed[0]; k++) {
            int cnt = 0;
            for (int i = 0; i < g->n_tensors; i++) cnt += g->tensors[i].type == listed[k];
            if (cnt && w < sizeof info->tensor_types)
                w += (size_t)snprintf(info->tensor_types + w, sizeof info->tensor_types - w, "%s%s x%d", w ? ", " : "",
                                      th_ggml_type_name(listed[k]), cnt);
        }
        const th_gguf_kv *merges = th_gguf_find_kv(g, "tokenizer.ggml.merges");
        if (tokens && tokens->type == TH_GGUF_ARRAY) info->tokenizer_tokens = (int)tokens->count;
        if (merges && merges->type == TH_GGUF_ARRAY && merges->count <= INT_MAX) info->tokenizer_merges = (int)merges->count;
    }
    *out = m;
    m = NULL;
done:
    th_gpt2_free(m);
    th_free(found);
    th_free(offsets);
    th_free(row);
    return s;
}

th_status th_gguf_load(const char *path, th_gpt2 **out, th_model_info *info) {
    th_gguf *g = NULL;
    th_status s = th_gguf_open(path, &g);
    if (s != TH_OK) return s;
    s = th_gguf_load_model(g, out, info);
    th_gguf_close(g);
    return s;
}

/* ---------------------------------------------------------------------------------
 * the tokenizer: tokens as a vocab.json object, merges as merges.txt lines */

static const th_gguf_kv *string_array(const th_gguf *g, const char *key, th_status *s) {
    const th_gguf_kv *kv = th_gguf_find_kv(g, key);
    if (!kv) *s = th_fail(TH_ERR_FORMAT, "%s: missing key %s", g->label, key);
    else if (kv->type != TH_GGUF_ARRAY || kv->elem_type != TH_GGUF_STRING)
        *s = th_fail(TH_ERR_FORMAT, "%s: key %s is not an array of strings", g->label, key);
    else if (kv->count > (1u << 24))
        *s = th_fail(TH_ERR_FORMAT, "%s: key %s has %llu entries (at most 2^24)", g->label, key, (unsigned long long)kv->count);
    return *s == TH_OK ? kv : NULL;
}

th_status th_gguf_load_tokenizer(const th_gguf *g, th_tokenizer **out) {
    th_status s = want_str(g, "tokenizer.ggml.model", "gpt2", "tokenizer");
    if (s != TH_OK) return s;
    const th_gguf_kv *tokens = string_array(g, "tokenizer.ggml.tokens", &s);
    const th_gguf_kv *merges = tokens ? string_array(g, "tokenizer.ggml.merges", &s) : NULL;
    if (!merges) return s;
    json_t *vocab = json_object();
    char *vocab_text = NULL, *merges_text = NULL;
    size_t merges_cap = 16, w = 0;
    for (uint64_t i = 0; i < merges->count; i++) {
        const char *p;
        uint64_t n;
        th_gguf_array_string(g, merges, i, &p, &n);
        merges_cap += (size_t)n + 1;
    }
    merges_text = th_alloc(merges_cap);
    if (!vocab || !merges_text) {
        s = th_fail(TH_ERR_NOMEM, "%s: out of memory for the tokenizer", g->label);
        goto done;
    }
    for (uint64_t i = 0; i < tokens->count; i++) {
        const char *p;
        uint64_t n;
        th_gguf_array_string(g, tokens, i, &p, &n);
        json_t *id = json_integer((json_int_t)i);
        if (!id || json_object_setn_new(vocab, p, (size_t)n, id) != 0) {
            s = th_fail(TH_ERR_FORMAT, "%s: key tokenizer.ggml.tokens: token %llu is not valid UTF-8", g->label,
                        (unsigned long long)i);
            goto done;
        }
    }
    w = (size_t)snprintf(merges_text, merges_cap, "#version: 0.2\n");
    for (uint64_t i = 0; i < merges->count; i++) {
        const char *p;
        uint64_t n;
        th_gguf_array_string(g, merges, i, &p, &n);
        if (memchr(p, '\n', (size_t)n) || memchr(p, '\r', (size_t)n)) {
            s = th_fail(TH_ERR_FORMAT, "%s: key tokenizer.ggml.merges: merge %llu holds a line break", g->label,
                        (unsigned long long)i);
            goto done;
        }
        memcpy(merges_text + w, p, (size_t)n);
        w += (size_t)n;
        merges_text[w++] = '\n';
    }
    vocab_text = json_dumps(vocab, JSON_COMPACT);
    if (!vocab_text) {
        s = th_fail(TH_ERR_NOMEM, "%s: out of memory for the tokenizer", g->label);
        goto done;
    }
    char vl[600], ml[600];
    snprintf(vl, sizeof vl, "%s (tokenizer.ggml.tokens)", g->label);
    snprintf(ml, sizeof ml, "%s (tokenizer.ggml.merges)", g->label);
    s = th_tokenizer_load_memory(vocab_text, strlen(vocab_text), vl, merges_text, w, ml, out);
done:
    json_decref(vocab);
    free(vocab_text); /* jansson's allocator */
    th_free(merges_text);
    return s;
}

th_status th_model_load_tokenizer(const char *model_path, th_tokenizer **out) {
    int fd;
    uint64_t bytes;
    unsigned char head[4] = {0};
    if (model_path && th_open_regular(model_path, &fd, &bytes) == TH_OK) {
        ssize_t got = read(fd, head, sizeof head);
        close(fd);
        if (got == 4 && memcmp(head, "GGUF", 4) == 0) {
            th_gguf *g = NULL;
            th_status s = th_gguf_open(model_path, &g);
            if (s != TH_OK) return s;
            s = th_gguf_load_tokenizer(g, out);
            th_gguf_close(g);
            return s;
        }
    }
    return th_tokenizer_load_for_model(model_path, out);
}
