/* tokenizer_save.c: writes a loaded tokenizer back out as Hugging Face's vocab.json +
 * merges.txt, the pair GPT2Tokenizer and th_tokenizer_load_dir read. Tokens are spelled
 * in GPT-2's byte alphabet (bytes_to_unicode), merges as "left right" lines in rank order,
 * so a reload gives the same bytes for every id and the same encoding of every text. */
#include "thermo/text.h"

#include "text_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------
 * the byte alphabet (GPT-2's bytes_to_unicode), as UTF-8: printable Latin-1 bytes stand
 * for themselves, the other 68 take the code points 256, 257, ... in byte order. */

typedef struct {
    char utf8[256][2];
    unsigned char len[256];
} byte_spelling;

static void spelling_init(byte_spelling *sp) {
    uint32_t extra = 256;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t cp = printable ? (uint32_t)b : extra++;
        if (cp < 0x80) {
            sp->utf8[b][0] = (char)cp;
            sp->len[b] = 1;
        } else {
            sp->utf8[b][0] = (char)(0xC0 | (cp >> 6));
            sp->utf8[b][1] = (char)(0x80 | (cp & 0x3F));
            sp->len[b] = 2;
        }
    }
}

/* The spelling of token `id` into a new NUL-terminated string, NULL if the id is unused
 * (*unused = 1) or memory ran out (*unused = 0). */
static char *spell_token(const th_tokenizer *tok, const byte_spelling *sp, int id, int *unused) {
    size_t n;
    const char *bytes = th_tokenizer_token_bytes(tok, id, &n);
    *unused = bytes == NULL;
    if (!bytes) return NULL;
    char *s = th_alloc(2 * n + 1);
    if (!s) return NULL;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)bytes[i];
        memcpy(s + w, sp->utf8[b], sp->len[b]);
        w += sp->len[b];
    }
    s[w] = 0;
    return s;
}

/* ---------------------------------------------------------------------------------
 * a small atomic writer: dir/name.tmp, fsync, rename over dir/name (the text module's
 * own, so that it does not depend on the io module) */

typedef struct {
    FILE *f;
    char path[4096], tmp[4200];
    th_status status;
} save_file;

static th_status sf_open(save_file *sf, const char *dir, const char *name) {
    memset(sf, 0, sizeof *sf);
    int n = snprintf(sf->path, sizeof sf->path, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof sf->path)
        return th_fail(TH_ERR_INVALID, "%s: the path is too long", dir);
    snprintf(sf->tmp, sizeof sf->tmp, "%s.tmp.%ld", sf->path, (long)getpid());
    sf->f = fopen(sf->tmp, "wb");
    if (!sf->f) return th_fail(TH_ERR_IO, "%s: cannot create: %s", sf->tmp, strerror(errno));
    return TH_OK;
}

static void sf_write(save_file *sf, const void *p, size_t n) {
    if (sf->status == TH_OK && fwrite(p, 1, n, sf->f) != n)
        sf->status = th_fail(TH_ERR_IO, "%s: write failed: %s", sf->tmp, strerror(errno));
}

static void sf_abort(save_file *sf) {
    if (sf->f) fclose(sf->f);
    sf->f = NULL;
    unlink(sf->tmp);
}

/* Flushes, fsyncs and closes the temporary file; on failure removes it. */
static th_status sf_finish(save_file *sf) {
    th_status st = sf->status;
    if (!st && (fflush(sf->f) != 0 || fsync(fileno(sf->f)) != 0))
        st = th_fail(TH_ERR_IO, "%s: cannot flush: %s", sf->tmp, strerror(errno));
    int closed = fclose(sf->f);
    sf->f = NULL;
    if (!st && closed != 0) st = th_fail(TH_ERR_IO, "%s: close failed: %s", sf->tmp, strerror(errno));
    if (st) unlink(sf->tmp);
    return st;
}

/* Renames a finished temporary file over its target; on failure removes it. */
static th_status sf_publish(save_file *sf) {
    if (rename(sf->tmp, sf->path) == 0) return TH_OK;
    th_status st = th_fail(TH_ERR_IO, "%s: cannot rename %s over it: %s", sf->path, sf->tmp, strerror(errno));
    unlink(sf->tmp);
    return st;
}

static void fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* ---------------------------------------------------------------------------------
 * the two files */

/* vocab.json: {"token": id, ...} in id order. Two ids whose bytes are the same (possible
 * only through tokenizer.json's added_tokens) cannot both be keys: TH_ERR_UNSUPPORTED. */
static th_status vocab_json(const th_tokenizer *tok, const byte_spelling *sp, char **text) {
    json_t *obj = json_object();
    if (!obj) return th_fail(TH_ERR_NOMEM, "tokenizer: no memory for vocab.json");
    th_status st = TH_OK;
    int V = th_tokenizer_vocab_size(tok);
    for (int id = 0; id < V && !st; id++) {
        int unused;
        char *s = spell_token(tok, sp, id, &unused);
        if (!s) {
            if (!unused) st = th_fail(TH_ERR_NOMEM, "tokenizer: no memory for vocab.json");
            continue;
        }
        json_t *prev = json_object_get(obj, s);
        if (prev)
            st = th_fail(TH_ERR_UNSUPPORTED, "tokenizer: ids %lld and %d are both \"%s\"; vocab.json "
                         "cannot hold two ids for one token", (long long)json_integer_value(prev), id, s);
        else if (json_object_set_new(obj, s, json_integer(id)) != 0)
            st = th_fail(TH_ERR_NOMEM, "tokenizer: no memory for vocab.json");
        th_free(s);
    }
    if (!st) {
        *text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!*text) st = th_fail(TH_ERR_NOMEM, "tokenizer: no memory for vocab.json");
    }
    json_decref(obj);
    return st;
}

static th_status write_merges(const th_tokenizer *tok, const byte_spelling *sp, save_file *sf) {
    static const char header[] = "#version: 0.2\n";
    sf_write(sf, header, sizeof header - 1);
    const th_bpe_merges *m = th_tokenizer_merges(tok);
    for (int32_t r = 0; r < m->count && sf->status == TH_OK; r++) {
        int unused;
        char *a = spell_token(tok, sp, m->first[r], &unused);
        char *b = a ? spell_token(tok, sp, m->second[r], &unused) : NULL;
        if (!a || !b) {
            th_free(a);
            return th_fail(TH_ERR_NOMEM, "tokenizer: no memory for merges.txt");
        }
        sf_write(sf, a, strlen(a));
        sf_write(sf, " ", 1);
        sf_write(sf, b, strlen(b));
        sf_write(sf, "\n", 1);
        th_free(a);
        th_free(b);
    }
    return sf->status;
}

th_status th_tokenizer_save_dir(const th_tokenizer *tok, const char *dir) {
    if (!tok || !dir || !dir[0]) return th_fail(TH_ERR_INVALID, "tokenizer save: no tokenizer or directory");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return th_fail(TH_ERR_IO, "%s: cannot create the directory: %s", dir, strerror(errno));
    byte_spelling sp;
    spelling_init(&sp);

    char *vocab = NULL;
    th_status st = vocab_json(tok, &sp, &vocab);
    if (st) return st;
    save_file vf, mf;
    if ((st = sf_open(&vf, dir, "vocab.json"))) {
        free(vocab);
        return st;
    }
    sf_write(&vf, vocab, strlen(vocab));
    sf_write(&vf, "\n", 1);
    free(vocab);
    if ((st = sf_open(&mf, dir, "merges.txt"))) {
        sf_abort(&vf);
        return st;
    }
    if ((st = write_merges(tok, &sp, &mf))) {
        sf_abort(&mf);
        sf_abort(&vf);
        return st;
    }
    /* Both files are complete and synced before either replaces its target, so a failed
     * save leaves the previous pair; only a crash between the renames could mix them. */
    if ((st = sf_finish(&mf))) {
        sf_abort(&vf);
        return st;
    }
    if ((st = sf_finish(&vf))) {
        unlink(mf.tmp);
        return st;
    }
    if ((st = sf_publish(&mf))) {
        unlink(vf.tmp);
        return st;
    }
    st = sf_publish(&vf);
    fsync_dir(dir);
    return st;
}
