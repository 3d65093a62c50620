/* dataset.c: token shards (format in text.h), building a train and a validation shard
 * from text files, and the batch loader with its resumable cursor.
 *
 * Files are written through core's th_atomic_file (temporary, fsync, rename, directory
 * fsync): a crash leaves the old file or the new one, never a mix. Shards are read with
 * mmap after the header has been checked against the file's length, and every token is
 * checked once at open. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pread, ftruncate, fseeko */
#endif
#include "thermo/text.h"

#include "text_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------
 * little-endian fields and the checksum */


#define FNV_OFFSET 0xcbf29ce484222325ull
static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static uint32_t token_bytes_for(uint64_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

static void put_token(uint8_t *p, uint32_t tb, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    if (tb == 4) {
        p[2] = (uint8_t)(v >> 16);
        p[3] = (uint8_t)(v >> 24);
    }
}

static uint32_t get_token(const uint8_t *p, uint32_t tb) {
    return tb == 2 ? (uint32_t)p[0] | (uint32_t)p[1] << 8 : th_le_get_u32(p);
}

/* ---------------------------------------------------------------------------------
 * header */

typedef struct {
    uint32_t version, token_bytes, flags;
    uint64_t vocab_size, token_count, checksum;
} shard_header;

static void header_encode(const shard_header *h, uint8_t out[TH_SHARD_HEADER_BYTES]) {
    memset(out, 0, TH_SHARD_HEADER_BYTES);
    memcpy(out, TH_SHARD_MAGIC, 4);
    th_le_put_u32(out + 4, h->version);
    th_le_put_u32(out + 8, h->token_bytes);
    th_le_put_u32(out + 12, h->flags);
    th_le_put_u64(out + 16, h->vocab_size);
    th_le_put_u64(out + 24, h->token_count);
    th_le_put_u64(out + 32, h->checksum);
}

/* Decodes and checks a header against the file size. `in` holds min(64, file_size) bytes. */
static th_status header_decode(const uint8_t *in, uint64_t file_size, const char *path,
                               shard_header *h) {
    if (file_size < 4 || memcmp(in, TH_SHARD_MAGIC, 4) != 0) {
        uint32_t magic = file_size >= 4 ? th_le_get_u32(in) : 0;
        return th_fail(TH_ERR_FORMAT, "%s: not a token shard (magic 0x%08x, expected \"%s\"); "
                       "build one from text with th_dataset_build", path, magic, TH_SHARD_MAGIC);
    }
    if (file_size < TH_SHARD_HEADER_BYTES)
        return th_fail(TH_ERR_FORMAT, "%s: truncated: %llu bytes, shorter than the %d-byte header",
                       path, (unsigned long long)file_size, TH_SHARD_HEADER_BYTES);
    h->version = th_le_get_u32(in + 4);
    h->token_bytes = th_le_get_u32(in + 8);
    h->flags = th_le_get_u32(in + 12);
    h->vocab_size = th_le_get_u64(in + 16);
    h->token_count = th_le_get_u64(in + 24);
    h->checksum = th_le_get_u64(in + 32);
    if (h->version != TH_SHARD_VERSION)
        return th_fail(TH_ERR_FORMAT, "%s: token shard version %u; this build reads version %u, "
                       "rebuild the shard from its text", path, h->version, TH_SHARD_VERSION);
    if (h->vocab_size == 0 || h->vocab_size > INT_MAX)
        return th_fail(TH_ERR_FORMAT, "%s: vocab_size %llu is outside [1, %d]", path,
                       (unsigned long long)h->vocab_size, INT_MAX);
    if (h->token_bytes != token_bytes_for(h->vocab_size))
        return th_fail(TH_ERR_FORMAT, "%s: %u bytes per token for a vocabulary of %llu (expected %u)",
                       path, h->token_bytes, (unsigned long long)h->vocab_size,
                       token_bytes_for(h->vocab_size));
    if (h->flags != 0)
        return th_fail(TH_ERR_FORMAT, "%s: unknown flags 0x%x", path, h->flags);
    for (int i = 40; i < TH_SHARD_HEADER_BYTES; i++)
        if (in[i] != 0) return th_fail(TH_ERR_FORMAT, "%s: header byte %d is not zero", path, i);
    uint64_t payload = file_size - TH_SHARD_HEADER_BYTES;
    if (h->token_count > payload / h->token_bytes)
        return th_fail(TH_ERR_FORMAT, "%s: truncated: the header promises %llu tokens (%llu bytes) "
                       "but only %llu bytes follow it", path, (unsigned long long)h->token_count,
                       (unsigned long long)h->token_count * h->token_bytes,
                       (unsigned long long)payload);
    if (h->token_count * h->token_bytes != payload)
        return th_fail(TH_ERR_FORMAT, "%s: %llu bytes after the %llu tokens the header promises",
                       path, (unsigned long long)(payload - h->token_count * h->token_bytes),
                       (unsigned long long)h->token_count);
    return TH_OK;
}

/* Opens path and checks its header; on success *fd_out is open and *h filled. */
static th_status shard_open(const char *path, int *fd_out, shard_header *h, uint64_t *size) {
    int fd;
    uint64_t file_bytes;
    th_status s = th_open_regular(path, &fd, &file_bytes);
    if (s) return s;
    uint8_t head[TH_SHARD_HEADER_BYTES] = {0};
    size_t want = file_bytes < sizeof head ? (size_t)file_bytes : sizeof head;
    ssize_t got = pread(fd, head, want, 0);
    if (got < 0 || (size_t)got != want) {
        close(fd);
        return th_fail(TH_ERR_IO, "%s: cannot read the header", path);
    }
    s = header_decode(head, file_bytes, path, h);
    if (s) {
        close(fd);
        return s;
    }
    *fd_out = fd;
    *size = file_bytes;
    return TH_OK;
}

th_status th_shard_read_info(const char *path, th_shard_info *info) {
    int fd;
    shard_header h;
    uint64_t size;
    th_status s = shard_open(path, &fd, &h, &size);
    if (s) return s;
    close(fd);
    info->version = h.version;
    info->token_bytes = h.token_bytes;
    info->vocab_size = h.vocab_size;
    info->token_count = h.token_count;
    return TH_OK;
}

/* ---------------------------------------------------------------------------------
 * positioned writes into core's atomic file (temporary, fsync, rename): a shard's header
 * is filled in last, and the validation shard is copied from the tail of the train
 * shard's temporary before that is cut off. Errors stay in the file (sticky); `path` is
 * the target, for messages. */

static th_status shard_pwrite(th_atomic_file *f, const char *path, const void *buf, size_t n, uint64_t off) {
    if (th_atomic_status(f) == TH_OK && fseeko(th_atomic_stream(f), (off_t)off, SEEK_SET) != 0)
        th_atomic_fail(f, th_fail(TH_ERR_IO, "%s: cannot seek the temporary: %s", path, strerror(errno)));
    th_atomic_write(f, buf, n);
    return th_atomic_status(f);
}

/* ---------------------------------------------------------------------------------
 * writing a shard from memory */

th_status th_shard_write(const char *path, const int *tokens, size_t n, uint64_t vocab_size) {
    if (vocab_size == 0 || vocab_size > INT_MAX)
        return th_fail(TH_ERR_INVALID, "%s: vocab_size %llu is outside [1, %d]", path,
                       (unsigned long long)vocab_size, INT_MAX);
    shard_header h = {TH_SHARD_VERSION, token_bytes_for(vocab_size), 0, vocab_size, n, FNV_OFFSET};
    for (size_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || (uint64_t)tokens[i] >= vocab_size)
            return th_fail(TH_ERR_INVALID, "%s: token %zu is %d, outside [0, %llu)", path, i,
                           tokens[i], (unsigned long long)vocab_size);
        uint8_t b[4];
        put_token(b, h.token_bytes, (uint32_t)tokens[i]);
        h.checksum = fnv1a(h.checksum, b, h.token_bytes);
    }
    enum { CHUNK = 1 << 16 };
    uint8_t *buf = th_alloc(CHUNK * 4);
    if (!buf) return th_fail(TH_ERR_NOMEM, "%s: no memory", path);
    th_atomic_file *f;
    th_status s = th_atomic_open(path, &f);
    if (s) {
        th_free(buf);
        return s;
    }
    header_encode(&h, buf);
    s = shard_pwrite(f, path, buf, TH_SHARD_HEADER_BYTES, 0);
    uint64_t off = TH_SHARD_HEADER_BYTES;
    for (size_t i = 0; i < n && !s; i += CHUNK) {
        size_t m = n - i < CHUNK ? n - i : CHUNK;
        for (size_t k = 0; k < m; k++) put_token(buf + k * h.token_bytes, h.token_bytes,
                                                 (uint32_t)tokens[i + k]);
        s = shard_pwrite(f, path, buf, m * h.token_bytes, off);
        off += m * h.token_bytes;
    }
    th_free(buf);
    return th_atomic_commit(f); /* a failed write fails the commit, which removes the temporary */
}

/* ---------------------------------------------------------------------------------
 * building from text */

th_dataset_opts th_dataset_opts_default(void) {
    th_dataset_opts o = {0};
    o.val_fraction = 0.1;
    o.encode_flags = 0;
    o.eot_before_each_file = 1;
    o.chunk_bytes = 0;
    return o;
}

/* The list of text files the inputs name. */
typedef struct {
    char **paths;
    size_t n, cap;
} path_list;

static void path_list_free(path_list *l) {
    for (size_t i = 0; i < l->n; i++) th_free(l->paths[i]);
    th_free(l->paths);
}

static th_status path_list_add(path_list *l, const char *dir, const char *name) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        char **p = th_alloc(cap * sizeof *p);
        if (!p) return th_fail(TH_ERR_NOMEM, "dataset: no memory");
        if (l->n) memcpy(p, l->paths, l->n * sizeof *p);
        th_free(l->paths);
        l->paths = p;
        l->cap = cap;
    }
    size_t n = (dir ? strlen(dir) + 1 : 0) + strlen(name) + 1;
    char *s = th_alloc(n);
    if (!s) return th_fail(TH_ERR_NOMEM, "dataset: no memory");
    if (dir) snprintf(s, n, "%s/%s", dir, name);
    else memcpy(s, name, n);
    l->paths[l->n++] = s;
    return TH_OK;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static th_status collect_dir(path_list *l, const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return th_fail(TH_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    size_t first = l->n;
    th_status s = TH_OK;
    struct dirent *e;
    while (!s && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n <= 4 || strcmp(e->d_name + n - 4, ".txt") != 0) continue;
        if ((s = path_list_add(l, dir, e->d_name))) break;
        struct stat st;
        if (stat(l->paths[l->n - 1], &st) != 0 || !S_ISREG(st.st_mode)) th_free(l->paths[--l->n]);
    }
    closedir(d);
    if (s) return s;
    if (l->n == first) return th_fail(TH_ERR_FORMAT, "%s: no .txt files in the directory", dir);
    qsort(l->paths + first, l->n - first, sizeof *l->paths, cmp_str);
    return TH_OK;
}

/* Tokens on their way to the train shard's temporary file. */
typedef struct {
    th_atomic_file *f;
    const char *path;
    uint32_t tb;
    uint8_t *buf;
    size_t fill, cap; /* bytes */
    uint64_t count;   /* tokens written so far */
} token_sink;

static th_status sink_flush(token_sink *k) {
    th_status s = shard_pwrite(k->f, k->path, k->buf, k->fill, TH_SHARD_HEADER_BYTES + k->count * k->tb - k->fill);
    k->fill = 0;
    return s;
}

static th_status sink_put(token_sink *k, const int *ids, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (k->fill + 4 > k->cap) {
            th_status s = sink_flush(k);
            if (s) return s;
        }
        put_token(k->buf + k->fill, k->tb, (uint32_t)ids[i]);
        k->fill += k->tb;
        k->count++;
    }
    return TH_OK;
}

static int graph(uint8_t c) { return c > 0x20 && c < 0x7F; }

/* The last place in s[0..n) where the text can be cut without changing its tokens, or 0.
 * A cut at i after a line break s[i-1] works when printable ASCII stands before the
 * break and the whitespace run it starts has one or two characters before printable
 * ASCII: the pattern ends a token right after the break either way (a one-character run
 * followed by text is a token of its own, and so is the first character of a
 * two-character run), and no token before it looks past it. Printable ASCII is never
 * whitespace nor part of a multibyte character, and "<|endoftext|>" holds no break; but
 * a two-character run before a special "<|endoftext|>" ends its segment and stays one
 * token, so that run is not cut when '<' follows it. */
static size_t safe_cut(const uint8_t *s, size_t n) {
    for (size_t i = n - 1; i >= 2; i--) {
        if ((s[i - 1] != '\n' && s[i - 1] != '\r') || !graph(s[i - 2])) continue;
        if (graph(s[i])) return i;
        if ((s[i] == '\n' || s[i] == '\r') && i + 1 < n && graph(s[i + 1]) && s[i + 1] != '<')
            return i;
    }
    return 0;
}

static th_status encode_into(const th_tokenizer *tok, const uint8_t *s, size_t n, unsigned flags,
                             token_sink *k, uint64_t *text_tokens) {
    int *ids;
    size_t m;
    th_status st = th_tokenizer_encode(tok, (const char *)s, n, flags, &ids, &m);
    if (st) return st;
    st = sink_put(k, ids, m);
    *text_tokens += m;
    th_free(ids);
    return st;
}

/* Tokenizes one file into the sink, a chunk at a time. */
static th_status encode_file(const th_tokenizer *tok, const char *path, const th_dataset_opts *o,
                             token_sink *k, uint64_t *bytes, uint64_t *text_tokens) {
    if (o->eot_before_each_file) {
        int eot = th_tokenizer_eot(tok);
        th_status st = sink_put(k, &eot, 1);
        if (st) return st;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return th_fail(TH_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = o->chunk_bytes ? o->chunk_bytes : (size_t)1 << 20, fill = 0;
    uint8_t *buf = th_alloc(cap);
    th_status st = buf ? TH_OK : th_fail(TH_ERR_NOMEM, "%s: no memory for a %zu-byte chunk", path, cap);
    int eof = 0;
    while (!st && !eof) {
        while (fill < cap) {
            ssize_t r = read(fd, buf + fill, cap - fill);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) {
                st = th_fail(TH_ERR_IO, "%s: read failed: %s", path, strerror(errno));
                break;
            }
            if (r == 0) {
                eof = 1;
                break;
            }
            fill += (size_t)r;
            *bytes += (uint64_t)r;
        }
        if (st) break;
        size_t cut = eof ? fill : safe_cut(buf, fill);
        if (cut == 0) {
            /* no safe cut in a full buffer: read more before encoding */
            uint8_t *bigger = th_alloc(2 * cap);
            if (!bigger) {
                st = th_fail(TH_ERR_NOMEM, "%s: no memory for a %zu-byte chunk", path, 2 * cap);
                break;
            }
            memcpy(bigger, buf, fill);
            th_free(buf);
            buf = bigger;
            cap *= 2;
            continue;
        }
        st = encode_into(tok, buf, cut, o->encode_flags, k, text_tokens);
        memmove(buf, buf + cut, fill - cut);
        fill -= cut;
    }
    th_free(buf);
    close(fd);
    return st;
}

/* Copies tokens [from, from + n) of the temporary train file (at src_path) into the shard
 * being written in dst, computing its checksum and writing its header; dst may be src
 * itself, which is then cut after the copied tokens. Does not commit. */
static th_status write_split(th_atomic_file *src, const char *src_path, uint32_t tb, uint64_t vocab,
                             uint64_t from, uint64_t n, th_atomic_file *dst, const char *dst_path,
                             uint8_t *buf, size_t cap) {
    shard_header h = {TH_SHARD_VERSION, tb, 0, vocab, n, FNV_OFFSET};
    th_status s = TH_OK;
    uint64_t done = 0;
    size_t per = cap / tb;
    while (!s && done < n) {
        size_t m = n - done < per ? (size_t)(n - done) : per;
        off_t off = (off_t)(TH_SHARD_HEADER_BYTES + (from + done) * tb);
        FILE *in = th_atomic_stream(src);
        if (fseeko(in, off, SEEK_SET) != 0 || fread(buf, 1, m * tb, in) != m * tb) {
            s = th_fail(TH_ERR_IO, "%s: cannot read back tokens from the temporary: %s", src_path,
                        ferror(in) ? strerror(errno) : "short read");
            break;
        }
        h.checksum = fnv1a(h.checksum, buf, m * tb);
        if (dst != src) s = shard_pwrite(dst, dst_path, buf, m * tb, TH_SHARD_HEADER_BYTES + done * tb);
        done += m;
    }
    FILE *out = th_atomic_stream(dst);
    if (!s && dst == src &&
        (fflush(out) != 0 || ftruncate(fileno(out), (off_t)(TH_SHARD_HEADER_BYTES + n * tb)) != 0))
        s = th_fail(TH_ERR_IO, "%s: cannot cut the temporary: %s", dst_path, strerror(errno));
    if (!s) {
        uint8_t head[TH_SHARD_HEADER_BYTES];
        header_encode(&h, head);
        s = shard_pwrite(dst, dst_path, head, sizeof head, 0);
    }
    return s;
}

th_status th_dataset_build(const th_tokenizer *tok, const char *const *inputs, size_t n_inputs,
                           const th_dataset_opts *opts, const char *train_path,
                           const char *val_path, th_dataset_stats *stats) {
    th_dataset_opts o = opts ? *opts : th_dataset_opts_default();
    if (!(o.val_fraction >= 0.0 && o.val_fraction < 1.0))
        return th_fail(TH_ERR_INVALID, "dataset: val_fraction %g is outside [0, 1)", o.val_fraction);
    if (o.val_fraction > 0 && !val_path)
        return th_fail(TH_ERR_INVALID, "dataset: val_fraction %g needs a validation shard path",
                       o.val_fraction);
    if (n_inputs == 0) return th_fail(TH_ERR_INVALID, "dataset: no inputs");
    if (o.eot_before_each_file && th_tokenizer_eot(tok) < 0)
        return th_fail(TH_ERR_INVALID, "dataset: eot_before_each_file, but the vocabulary has no "
                       "\"<|endoftext|>\"");
    if (o.chunk_bytes != 0 && o.chunk_bytes < 16)
        return th_fail(TH_ERR_INVALID, "dataset: chunk_bytes %zu is below 16", o.chunk_bytes);

    path_list files = {0};
    th_status s = TH_OK;
    for (size_t i = 0; i < n_inputs && !s; i++) {
        struct stat st;
        if (stat(inputs[i], &st) != 0)
            s = th_fail(TH_ERR_IO, "%s: cannot open: %s", inputs[i], strerror(errno));
        else if (S_ISDIR(st.st_mode)) s = collect_dir(&files, inputs[i]);
        else s = path_list_add(&files, NULL, inputs[i]);
    }
    if (s) {
        path_list_free(&files);
        return s;
    }

    uint64_t vocab = (uint64_t)th_tokenizer_vocab_size(tok);
    enum { BUF = 1 << 16 };
    th_atomic_file *train = NULL, *val = NULL;
    token_sink k = {NULL, train_path, token_bytes_for(vocab), th_alloc(BUF), 0, BUF, 0};
    uint64_t bytes = 0, text_tokens = 0;
    if (!k.buf) s = th_fail(TH_ERR_NOMEM, "dataset: no memory");
    if (!s) s = th_atomic_open(train_path, &train);
    k.f = train;
    for (size_t i = 0; i < files.n && !s; i++)
        s = encode_file(tok, files.paths[i], &o, &k, &bytes, &text_tokens);
    if (!s) s = sink_flush(&k);
    if (!s && text_tokens == 0)
        s = th_fail(TH_ERR_FORMAT, "%s: the input%s hold%s no text", inputs[0],
                    files.n > 1 ? "s" : "", files.n > 1 ? "" : "s");

    uint64_t n = k.count, n_val = (uint64_t)floor((double)n * o.val_fraction), n_train = n - n_val;
    if (!s && o.val_fraction > 0 && n_val == 0)
        s = th_fail(TH_ERR_INVALID, "dataset: a validation share of %g of %llu tokens is empty; "
                    "add text or raise val_fraction", o.val_fraction, (unsigned long long)n);
    if (!s && n_val > 0) {
        s = th_atomic_open(val_path, &val);
        if (!s) s = write_split(train, train_path, k.tb, vocab, n_train, n_val, val, val_path, k.buf, BUF);
        if (!s) s = th_atomic_commit(val);
        else th_atomic_abort(val);
    }
    if (!s) s = write_split(train, train_path, k.tb, vocab, 0, n_train, train, train_path, k.buf, BUF);
    if (!s) s = th_atomic_commit(train);
    else th_atomic_abort(train);
    if (!s && stats) {
        stats->files = files.n;
        stats->bytes = bytes;
        stats->train_tokens = n_train;
        stats->val_tokens = n_val;
    }
    th_free(k.buf);
    path_list_free(&files);
    return s;
}

/* ---------------------------------------------------------------------------------
 * the loader */

struct th_data_loader {
    char *path;
    void *map;
    size_t map_len;
    const uint8_t *tokens;
    uint32_t tb;
    uint64_t n_tokens, vocab_size;
    int B, T;
    th_data_order order;
    uint64_t per_epoch;   /* windows used per epoch */
    th_data_cursor cur;
    uint32_t *perm;       /* shuffled order of the windows of perm_epoch */
    uint64_t perm_epoch;
    int perm_valid;
};

static uint64_t rng_below(th_rng *r, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* accept [0, limit): no modulo bias */
    for (;;) {
        uint64_t x = th_rng_u64(r);
        if (x < limit) return x % n;
    }
}

/* The window order of an epoch: a Fisher-Yates shuffle seeded from (seed, epoch). */
static void make_perm(th_data_loader *dl, uint64_t epoch) {
    uint64_t w = dl->cur.n_windows;
    th_rng r;
    th_rng_seed(&r, dl->cur.seed ^ (0x9E3779B97F4A7C15ull * (epoch + 1)));
    for (uint64_t i = 0; i < w; i++) dl->perm[i] = (uint32_t)i;
    for (uint64_t i = w - 1; i > 0; i--) {
        uint64_t j = rng_below(&r, i + 1);
        uint32_t t = dl->perm[i];
        dl->perm[i] = dl->perm[j];
        dl->perm[j] = t;
    }
    dl->perm_epoch = epoch;
    dl->perm_valid = 1;
}

void th_data_loader_close(th_data_loader *dl) {
    if (!dl) return;
    if (dl->map) munmap(dl->map, dl->map_len);
    th_free(dl->perm);
    th_free(dl->path);
    th_free(dl);
}

th_status th_data_loader_open(const char *path, int B, int T, th_data_order order, uint64_t seed,
                              th_data_loader **out) {
    if (B < 1 || T < 1)
        return th_fail(TH_ERR_INVALID, "%s: batch size %d and sequence length %d must be >= 1", path,
                       B, T);
    if (order != TH_DATA_SHUFFLED && order != TH_DATA_SEQUENTIAL)
        return th_fail(TH_ERR_INVALID, "%s: unknown order %d", path, (int)order);
    int fd;
    shard_header h;
    uint64_t size;
    th_status s = shard_open(path, &fd, &h, &size);
    if (s) return s;
    th_data_loader *dl = th_calloc(1, sizeof *dl);
    if (!dl) {
        close(fd);
        return th_fail(TH_ERR_NOMEM, "%s: no memory", path);
    }
    dl->path = th_alloc(strlen(path) + 1);
    if (!dl->path) {
        s = th_fail(TH_ERR_NOMEM, "%s: no memory", path);
        goto err;
    }
    strcpy(dl->path, path);
    dl->map_len = (size_t)size;
    dl->map = mmap(NULL, dl->map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (dl->map == MAP_FAILED) {
        dl->map = NULL;
        s = th_fail(TH_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
        goto err;
    }
    dl->tokens = (const uint8_t *)dl->map + TH_SHARD_HEADER_BYTES;
    dl->tb = h.token_bytes;
    dl->n_tokens = h.token_count;
    dl->vocab_size = h.vocab_size;
    dl->B = B;
    dl->T = T;
    dl->order = order;

    uint64_t sum = fnv1a(FNV_OFFSET, dl->tokens, h.token_count * h.token_bytes);
    if (sum != h.checksum) {
        s = th_fail(TH_ERR_FORMAT, "%s: checksum mismatch (0x%016llx in the header, 0x%016llx of the "
                    "tokens): the file is corrupt", path, (unsigned long long)h.checksum,
                    (unsigned long long)sum);
        goto err;
    }
    for (uint64_t i = 0; i < h.token_count; i++) {
        uint32_t t = get_token(dl->tokens + i * h.token_bytes, h.token_bytes);
        if (t >= h.vocab_size) {
            s = th_fail(TH_ERR_FORMAT, "%s: token %llu is %u, not below the vocab_size %llu", path,
                        (unsigned long long)i, t, (unsigned long long)h.vocab_size);
            goto err;
        }
    }
    if (h.token_count == 0) {
        s = th_fail(TH_ERR_FORMAT, "%s: the shard holds no tokens", path);
        goto err;
    }
    if (h.token_count < (uint64_t)T + 1) {
        s = th_fail(TH_ERR_FORMAT, "%s: %llu tokens, fewer than one window of T + 1 = %d", path,
                    (unsigned long long)h.token_count, T + 1);
        goto err;
    }
    uint64_t w = (h.token_count - 1) / (uint64_t)T;
    if (w > UINT32_MAX) {
        s = th_fail(TH_ERR_UNSUPPORTED, "%s: %llu windows, more than 2^32", path,
                    (unsigned long long)w);
        goto err;
    }
    if (order == TH_DATA_SEQUENTIAL && w < (uint64_t)B) {
        s = th_fail(TH_ERR_FORMAT, "%s: %llu windows of T + 1 = %d tokens, fewer than one batch of %d",
                    path, (unsigned long long)w, T + 1, B);
        goto err;
    }
    dl->per_epoch = order == TH_DATA_SEQUENTIAL ? w / (uint64_t)B * (uint64_t)B : w;
    if (order == TH_DATA_SHUFFLED) {
        dl->perm = th_alloc(w * sizeof *dl->perm);
        if (!dl->perm) {
            s = th_fail(TH_ERR_NOMEM, "%s: no memory for the order of %llu windows", path,
                        (unsigned long long)w);
            goto err;
        }
    }
    close(fd);
    dl->cur = (th_data_cursor){0, 0, seed, w};
    *out = dl;
    return TH_OK;
err:
    close(fd);
    th_data_loader_close(dl);
    return s;
}

void th_data_loader_next(th_data_loader *dl, int *inputs, int *targets) {
    int T = dl->T;
    for (int b = 0; b < dl->B; b++) {
        uint64_t w = dl->cur.index;
        if (dl->order == TH_DATA_SHUFFLED) {
            if (!dl->perm_valid || dl->perm_epoch != dl->cur.epoch) make_perm(dl, dl->cur.epoch);
            w = dl->perm[dl->cur.index];
        }
        const uint8_t *p = dl->tokens + w * (uint64_t)T * dl->tb;
        int *in = inputs + (size_t)b * T, *tg = targets + (size_t)b * T;
        int prev = (int)get_token(p, dl->tb);
        for (int t = 0; t < T; t++) {
            int next = (int)get_token(p + (size_t)(t + 1) * dl->tb, dl->tb);
            in[t] = prev;
            tg[t] = next;
            prev = next;
        }
        if (++dl->cur.index == dl->per_epoch) {
            dl->cur.index = 0;
            dl->cur.epoch++;
        }
    }
}

void th_data_loader_get_cursor(const th_data_loader *dl, th_data_cursor *cursor) {
    *cursor = dl->cur;
}

th_status th_data_loader_set_cursor(th_data_loader *dl, const th_data_cursor *c) {
    if (c->n_windows != dl->cur.n_windows)
        return th_fail(TH_ERR_INVALID, "%s: the cursor is for %llu windows, this data has %llu "
                       "(another dataset or sequence length)", dl->path,
                       (unsigned long long)c->n_windows, (unsigned long long)dl->cur.n_windows);
    if (c->index >= dl->per_epoch)
        return th_fail(TH_ERR_INVALID, "%s: cursor index %llu is past the %llu windows of an epoch",
                       dl->path, (unsigned long long)c->index, (unsigned long long)dl->per_epoch);
    dl->cur = *c;
    dl->perm_valid = 0;
    return TH_OK;
}

void th_data_loader_reset(th_data_loader *dl) {
    dl->cur.epoch = 0;
    dl->cur.index = 0;
}

uint64_t th_data_loader_tokens(const th_data_loader *dl) { return dl->n_tokens; }
uint64_t th_data_loader_windows(const th_data_loader *dl) { return dl->cur.n_windows; }
uint64_t th_data_loader_vocab_size(const th_data_loader *dl) { return dl->vocab_size; }

uint64_t th_data_loader_batches_per_epoch(const th_data_loader *dl) {
    uint64_t B = (uint64_t)dl->B;
    return dl->order == TH_DATA_SEQUENTIAL ? dl->per_epoch / B : (dl->per_epoch + B - 1) / B;
}
