/* safetensors.c: reader and float32 writer for the safetensors format (Hugging Face's
 * tensor container: u64 header length, JSON header, raw little-endian data). The reader
 * maps the file and checks every offset before anything reads through it, as strictly
 * as the reference implementation: spans must tile the data section exactly. */
#include "io/io_internal.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The reference implementation refuses headers over 100 MB; so do we, which also bounds
 * what a lying header can make us parse. */
#define ST_MAX_HEADER (100u * 1000u * 1000u)

struct th_safetensors {
    char label[512];            /* the path, for messages */
    const unsigned char *base;  /* whole file */
    size_t len;
    int mapped;                 /* base is an mmap of len bytes */
    const unsigned char *data;  /* data section */
    uint64_t data_len;
    json_t *root;               /* owns the names and metadata strings */
    json_t *metadata;           /* borrowed from root, or NULL */
    th_st_tensor *tensors;
    int count;
};

static const struct {
    const char *name;
    size_t size;
} dtypes[TH_ST_NUM_DTYPES] = {
    [TH_ST_BOOL] = {"BOOL", 1},       [TH_ST_U8] = {"U8", 1},   [TH_ST_I8] = {"I8", 1},
    [TH_ST_F8_E4M3] = {"F8_E4M3", 1}, [TH_ST_F8_E5M2] = {"F8_E5M2", 1},
    [TH_ST_I16] = {"I16", 2},         [TH_ST_U16] = {"U16", 2}, [TH_ST_F16] = {"F16", 2},
    [TH_ST_BF16] = {"BF16", 2},       [TH_ST_I32] = {"I32", 4}, [TH_ST_U32] = {"U32", 4},
    [TH_ST_F32] = {"F32", 4},         [TH_ST_F64] = {"F64", 8}, [TH_ST_I64] = {"I64", 8},
    [TH_ST_U64] = {"U64", 8},
};

const char *th_st_dtype_name(th_st_dtype d) {
    return (unsigned)d < TH_ST_NUM_DTYPES ? dtypes[d].name : "?";
}
size_t th_st_dtype_size(th_st_dtype d) { return (unsigned)d < TH_ST_NUM_DTYPES ? dtypes[d].size : 0; }

/* ---------------------------------------------------------------------------------
 * parsing */

static int cmp_begin(const void *a, const void *b) {
    const th_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Reads a non-negative JSON integer. */
static int get_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return 0;
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

static th_status parse_tensor(th_safetensors *st, const char *name, json_t *v, th_st_tensor *t) {
    const char *L = st->label;
    if (!json_is_object(v))
        return th_fail(TH_ERR_FORMAT, "%s: tensor %s: header entry is not an object", L, name);
    json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
           *offs = json_object_get(v, "data_offsets");
    if (!json_is_string(dt))
        return th_fail(TH_ERR_FORMAT, "%s: tensor %s: missing or non-string dtype", L, name);
    int d = 0;
    while (d < TH_ST_NUM_DTYPES && strcmp(dtypes[d].name, json_string_value(dt)) != 0) d++;
    if (d == TH_ST_NUM_DTYPES)
        return th_fail(TH_ERR_FORMAT, "%s: tensor %s: unknown dtype \"%.32s\"", L, name,
                       json_string_value(dt));
    if (!json_is_array(shape) || json_array_size(shape) > TH_ST_MAX_DIMS)
        return th_fail(TH_ERR_FORMAT, "%s: tensor %s: shape is not an array of at most %d sizes",
                       L, name, TH_ST_MAX_DIMS);
    memset(t, 0, sizeof *t);
    t->name = name;
    t->dtype = (th_st_dtype)d;
    t->ndim = (int)json_array_size(shape);
    t->count = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (!get_u64(json_array_get(shape, (size_t)i), &t->shape[i]))
            return th_fail(TH_ERR_FORMAT, "%s: tensor %s: shape[%d] is not a non-negative integer",
                           L, name, i);
        if (!th_mul_u64(t->count, t->shape[i], &t->count))
            return th_fail(TH_ERR_FORMAT, "%s: tensor %s: shape overflows 64 bits", L, name);
    }
    if (!json_is_array(offs) || json_array_size(offs) != 2 ||
        !get_u64(json_array_get(offs, 0), &t->begin) || !get_u64(json_array_get(offs, 1), &t->end))
        return th_fail(TH_ERR_FORMAT, "%s: tensor %s: data_offsets is not [begin, end]", L, name);
    if (t->begin > t->end)
        return th_fail(TH_ERR_FORMAT, "%s: tensor %s: data_offsets [%llu, %llu) are out of order", L,
                       name, (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end > st->data_len)
        return th_fail(TH_ERR_FORMAT,
                       "%s: tensor %s data [%llu, %llu) extends past the end of the file "
                       "(data section is %llu bytes)",
                       L, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                       (unsigned long long)st->data_len);
    uint64_t bytes;
    if (!th_mul_u64(t->count, dtypes[d].size, &bytes) || bytes != t->end - t->begin)
        return th_fail(TH_ERR_FORMAT,
                       "%s: tensor %s: %llu elements of %s need %llu bytes but data_offsets "
                       "span %llu",
                       L, name, (unsigned long long)t->count, dtypes[d].name,
                       (unsigned long long)(t->count * dtypes[d].size),
                       (unsigned long long)(t->end - t->begin));
    return TH_OK;
}

static th_status parse(th_safetensors *st) {
    const char *L = st->label;
    if (st->len < 8)
        return th_fail(TH_ERR_FORMAT, "%s: %zu bytes is too short for a safetensors file", L,
                       st->len);
    uint64_t n = th_le64(st->base);
    if (n > st->len - 8)
        return th_fail(TH_ERR_FORMAT,
                       "%s: header length %llu extends past the end of the file (%zu bytes)", L,
                       (unsigned long long)n, st->len);
    if (n > ST_MAX_HEADER)
        return th_fail(TH_ERR_FORMAT, "%s: header length %llu is over the 100 MB limit", L,
                       (unsigned long long)n);
    st->data = st->base + 8 + n;
    st->data_len = st->len - 8 - n;

    json_error_t jerr;
    st->root = json_loadb((const char *)st->base + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!st->root)
        return th_fail(TH_ERR_FORMAT, "%s: header is not valid JSON: %s (line %d, column %d)", L,
                       jerr.text, jerr.line, jerr.column);
    if (!json_is_object(st->root))
        return th_fail(TH_ERR_FORMAT, "%s: header is not a JSON object", L);

    size_t entries = json_object_size(st->root);
    st->tensors = th_calloc(entries ? entries : 1, sizeof *st->tensors);
    if (!st->tensors) return th_fail(TH_ERR_NOMEM, "%s: out of memory for %zu tensors", L, entries);

    const char *key;
    json_t *v;
    json_object_foreach(st->root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            const char *mk;
            json_t *mv;
            if (!json_is_object(v))
                return th_fail(TH_ERR_FORMAT, "%s: __metadata__ is not an object", L);
            json_object_foreach(v, mk, mv) {
                if (!json_is_string(mv))
                    return th_fail(TH_ERR_FORMAT, "%s: __metadata__ value for \"%.64s\" is not a string",
                                   L, mk);
            }
            st->metadata = v;
            continue;
        }
        th_status s = parse_tensor(st, key, v, &st->tensors[st->count]);
        if (s != TH_OK) return s;
        st->count++;
    }

    /* The spans, sorted, must tile [0, data_len): no overlap, no gap, nothing after. */
    qsort(st->tensors, (size_t)st->count, sizeof *st->tensors, cmp_begin);
    uint64_t at = 0;
    for (int i = 0; i < st->count; i++) {
        const th_st_tensor *t = &st->tensors[i];
        if (t->begin < at)
            return th_fail(TH_ERR_FORMAT, "%s: tensor %s data [%llu, %llu) overlaps tensor %s", L,
                           t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                           st->tensors[i - 1].name);
        if (t->begin > at)
            return th_fail(TH_ERR_FORMAT, "%s: %llu unused bytes before tensor %s at data offset %llu",
                           L, (unsigned long long)(t->begin - at), t->name,
                           (unsigned long long)t->begin);
        at = t->end;
    }
    if (at != st->data_len)
        return th_fail(TH_ERR_FORMAT, "%s: %llu bytes after the last tensor's data", L,
                       (unsigned long long)(st->data_len - at));
    return TH_OK;
}

static th_status open_common(th_safetensors *st, th_safetensors **out) {
    th_status s = parse(st);
    if (s != TH_OK) {
        th_safetensors_close(st);
        return s;
    }
    *out = st;
    return TH_OK;
}

th_status th_safetensors_open_memory(const void *data, size_t len, const char *label,
                                     th_safetensors **out) {
    th_safetensors *st = th_calloc(1, sizeof *st);
    if (!st) return th_fail(TH_ERR_NOMEM, "%s: out of memory", label);
    snprintf(st->label, sizeof st->label, "%s", label);
    st->base = data;
    st->len = len;
    return open_common(st, out);
}

th_status th_safetensors_open(const char *path, th_safetensors **out) {
    int fd;
    uint64_t file_bytes;
    th_status opened = th_open_regular(path, &fd, &file_bytes);
    if (opened) return opened;
    th_safetensors *st = th_calloc(1, sizeof *st);
    if (!st) {
        close(fd);
        return th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(st->label, sizeof st->label, "%s", path);
    st->len = (size_t)file_bytes;
    if (st->len >= 8) {
        void *p = mmap(NULL, st->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            th_status s = th_fail(TH_ERR_IO, "%s: cannot map %zu bytes: %s", path, st->len,
                                  strerror(errno));
            close(fd);
            th_free(st);
            return s;
        }
        st->base = p;
        st->mapped = 1;
    } else {
        st->base = (const unsigned char *)""; /* parse() rejects it before reading */
    }
    close(fd);
    return open_common(st, out);
}

void th_safetensors_close(th_safetensors *st) {
    if (!st) return;
    if (st->mapped) munmap((void *)st->base, st->len);
    if (st->root) json_decref(st->root);
    th_free(st->tensors);
    th_free(st);
}

int th_safetensors_count(const th_safetensors *st) { return st->count; }

const th_st_tensor *th_safetensors_tensor(const th_safetensors *st, int i) {
    return i >= 0 && i < st->count ? &st->tensors[i] : NULL;
}

const th_st_tensor *th_safetensors_find(const th_safetensors *st, const char *name) {
    for (int i = 0; i < st->count; i++)
        if (strcmp(st->tensors[i].name, name) == 0) return &st->tensors[i];
    return NULL;
}

const char *th_safetensors_metadata(const th_safetensors *st, const char *key) {
    if (!st->metadata) return NULL;
    return json_string_value(json_object_get(st->metadata, key));
}

/* ---------------------------------------------------------------------------------
 * conversion */

static float load_elem(const unsigned char *p, th_st_dtype d) {
    uint16_t h;
    float f;
    switch (d) {
    case TH_ST_F16: memcpy(&h, p, 2); return th_f16_to_f32(h);
    case TH_ST_BF16: memcpy(&h, p, 2); return th_bf16_to_f32(h);
    default: memcpy(&f, p, 4); return f;
    }
}

th_status th_safetensors_read_f32(const th_safetensors *st, const th_st_tensor *t, float *dst,
                                  size_t count, int transpose) {
    if (t->dtype != TH_ST_F32 && t->dtype != TH_ST_F16 && t->dtype != TH_ST_BF16)
        return th_fail(TH_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s; only F32, F16 and BF16 "
                       "convert to float", st->label, t->name, th_st_dtype_name(t->dtype));
    if (count != t->count)
        return th_fail(TH_ERR_INVALID, "%s: tensor %s has %llu elements, caller expects %zu",
                       st->label, t->name, (unsigned long long)t->count, count);
    if (transpose && t->ndim != 2)
        return th_fail(TH_ERR_INVALID, "%s: tensor %s is %d-D and cannot be transposed", st->label,
                       t->name, t->ndim);
    const unsigned char *src = st->data + t->begin;
    size_t es = dtypes[t->dtype].size;
    if (!transpose) {
        if (t->dtype == TH_ST_F32) {
            if (count) memcpy(dst, src, count * 4);
        } else {
            for (size_t i = 0; i < count; i++) dst[i] = load_elem(src + i * es, t->dtype);
        }
        return TH_OK;
    }
    /* (r, c) -> (c, r) in 32×32 tiles, so both sides stay in cache */
    size_t r = (size_t)t->shape[0], c = (size_t)t->shape[1];
    for (size_t i0 = 0; i0 < r; i0 += 32)
        for (size_t j0 = 0; j0 < c; j0 += 32)
            for (size_t i = i0; i < r && i < i0 + 32; i++)
                for (size_t j = j0; j < c && j < j0 + 32; j++)
                    dst[j * r + i] = load_elem(src + (i * c + j) * es, t->dtype);
    return TH_OK;
}

int th_safetensors_same_values(const th_safetensors *st, const th_st_tensor *a,
                               const th_st_tensor *b, uint64_t *first_diff) {
    const unsigned char *pa = st->data + a->begin, *pb = st->data + b->begin;
    size_t ea = dtypes[a->dtype].size, eb = dtypes[b->dtype].size;
    for (uint64_t i = 0; i < a->count && i < b->count; i++) {
        float x = load_elem(pa + i * ea, a->dtype), y = load_elem(pb + i * eb, b->dtype);
        if (memcmp(&x, &y, sizeof x) != 0) {
            *first_diff = i;
            return 0;
        }
    }
    *first_diff = a->count < b->count ? a->count : b->count;
    return a->count == b->count;
}

/* ---------------------------------------------------------------------------------
 * writing */

static th_status build_header(const char *path, const th_st_source *ts, int n,
                              const char *const *metadata, char **out, size_t *out_len) {
    json_t *root = json_object();
    if (!root) return th_fail(TH_ERR_NOMEM, "%s: out of memory for the header", path);
    th_status s = TH_OK;
    if (metadata && metadata[0]) {
        json_t *md = json_object();
        if (!md || json_object_set_new(root, "__metadata__", md) != 0) {
            s = th_fail(TH_ERR_NOMEM, "%s: out of memory for the header", path);
            goto done;
        }
        for (int i = 0; metadata[i]; i += 2) {
            if (!metadata[i + 1]) {
                s = th_fail(TH_ERR_INVALID, "%s: metadata key %s has no value", path, metadata[i]);
                goto done;
            }
            if (json_object_set_new(md, metadata[i], json_string(metadata[i + 1])) != 0) {
                s = th_fail(TH_ERR_INVALID, "%s: metadata %s is not valid UTF-8", path, metadata[i]);
                goto done;
            }
        }
    }
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        const th_st_source *t = &ts[i];
        if (!t->name || strcmp(t->name, "__metadata__") == 0 || json_object_get(root, t->name)) {
            s = th_fail(TH_ERR_INVALID, "%s: tensor name %s is missing, reserved or repeated", path,
                        t->name ? t->name : "(null)");
            goto done;
        }
        if (t->ndim < 0 || t->ndim > TH_ST_MAX_DIMS || (t->transpose && t->ndim != 2)) {
            s = th_fail(TH_ERR_INVALID, "%s: tensor %s: bad rank %d%s", path, t->name, t->ndim,
                        t->transpose ? " for a transpose" : "");
            goto done;
        }
        /* set_new takes the reference even when it fails, and fails on a NULL value */
        json_t *entry = json_object(), *shape = NULL;
        if (json_object_set_new(root, t->name, entry) != 0 ||
            json_object_set_new(entry, "dtype", json_string("F32")) != 0 ||
            json_object_set_new(entry, "shape", shape = json_array()) != 0) {
            s = th_fail(TH_ERR_NOMEM, "%s: out of memory for the header (or name %s is not UTF-8)",
                        path, t->name);
            goto done;
        }
        uint64_t count = 1;
        for (int d = 0; d < t->ndim; d++) {
            if (!th_mul_u64(count, t->shape[d], &count) || t->shape[d] > (uint64_t)INT64_MAX) {
                s = th_fail(TH_ERR_INVALID, "%s: tensor %s: shape overflows", path, t->name);
                goto done;
            }
            if (json_array_append_new(shape, json_integer((json_int_t)t->shape[d])) != 0) {
                s = th_fail(TH_ERR_NOMEM, "%s: out of memory for the header", path);
                goto done;
            }
        }
        uint64_t bytes, end;
        if (!th_mul_u64(count, 4, &bytes) || !th_add_u64(at, bytes, &end) ||
            end > (uint64_t)INT64_MAX || bytes > SIZE_MAX) {
            s = th_fail(TH_ERR_INVALID, "%s: tensor %s: data offsets overflow", path, t->name);
            goto done;
        }
        if (json_object_set_new(entry, "data_offsets",
                                json_pack("[II]", (json_int_t)at, (json_int_t)end)) != 0) {
            s = th_fail(TH_ERR_NOMEM, "%s: out of memory for the header", path);
            goto done;
        }
        at = end;
    }
    char *text = json_dumps(root, JSON_COMPACT);
    if (!text) {
        s = th_fail(TH_ERR_NOMEM, "%s: out of memory for the header", path);
        goto done;
    }
    *out = text;
    *out_len = strlen(text);
done:
    json_decref(root);
    return s;
}

th_status th_safetensors_write_to(th_afile *a, const th_st_source *tensors, int n,
                                  const char *const *metadata) {
    const char *path = a->path;
    if (n < 0) return th_fail(TH_ERR_INVALID, "%s: %d tensors", path, n);
    char *header = NULL;
    size_t hlen = 0;
    th_status s = build_header(path, tensors, n, metadata, &header, &hlen);
    if (s != TH_OK) return s;

    /* The tile buffer for transposed tensors: 64 file rows at a time. */
    size_t tile_floats = 0;
    for (int i = 0; i < n; i++)
        if (tensors[i].transpose && 64 * tensors[i].shape[1] > tile_floats)
            tile_floats = (size_t)(64 * tensors[i].shape[1]);
    float *tile = tile_floats ? th_alloc(tile_floats * sizeof(float)) : NULL;
    if (tile_floats && !tile) {
        free(header);
        return th_fail(TH_ERR_NOMEM, "%s: out of memory for a transpose buffer", path);
    }

    size_t padded = (hlen + 7) / 8 * 8; /* data section 8-aligned, as the reference pads */
    unsigned char lenbuf[8];
    th_put64(lenbuf, padded);
    th_afile_write(a, lenbuf, 8);
    th_afile_write(a, header, hlen);
    th_afile_write(a, "       ", padded - hlen);
    free(header);

    for (int i = 0; i < n && a->status == TH_OK; i++) {
        const th_st_source *t = &tensors[i];
        size_t count = 1;
        for (int d = 0; d < t->ndim; d++) count *= (size_t)t->shape[d];
        if (!t->transpose) {
            th_afile_write_f32(a, t->data, count);
            continue;
        }
        /* file (R, C) from source (C, R): file row j is source column j */
        size_t R = (size_t)t->shape[0], C = (size_t)t->shape[1];
        for (size_t j0 = 0; j0 < R && a->status == TH_OK; j0 += 64) {
            size_t jn = R - j0 < 64 ? R - j0 : 64;
            for (size_t i2 = 0; i2 < C; i2++)
                for (size_t j = 0; j < jn; j++) tile[j * C + i2] = t->data[i2 * R + j0 + j];
            th_afile_write_f32(a, tile, jn * C);
        }
    }
    th_free(tile);
    return a->status;
}

th_status th_safetensors_write(const char *path, const th_st_source *tensors, int n,
                               const char *const *metadata) {
    th_afile a;
    th_status s = th_afile_open(&a, path);
    if (s != TH_OK) return s;
    s = th_safetensors_write_to(&a, tensors, n, metadata);
    if (s != TH_OK) {
        th_afile_abort(&a);
        return s;
    }
    return th_afile_commit(&a);
}
