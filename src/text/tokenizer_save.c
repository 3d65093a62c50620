/* tokenizer_save.c: writes a loaded tokenizer back out as Hugging Face's vocab.json +
 * merges.txt, the pair GPT2Tokenizer and th_tokenizer_load_dir read. Tokens are spelled
 * in GPT-2's byte alphabet (bytes_to_unicode), merges as "left right" lines in rank order,
 * so a reload gives the same bytes for every id and the same encoding of every text. */
#include "thermo/text.h"

#include "text_internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
 * dir/name through core's atomic file */

static th_status open_in(const char *dir, const char *name, th_atomic_file **out) {
    char path[4096];
    *out = NULL;
    int n = snprintf(path, sizeof path, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof path) return th_fail(TH_ERR_INVALID, "%s: the path is too long", dir);
    return th_atomic_open(path, out);
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

static th_status write_merges(const th_tokenizer *tok, const byte_spelling *sp, th_atomic_file *f) {
    static const char header[] = "#version: 0.2\n";
    th_atomic_write(f, header, sizeof header - 1);
    const th_bpe_merges *m = th_tokenizer_merges(tok);
    for (int32_t r = 0; r < m->count && th_atomic_status(f) == TH_OK; r++) {
        int unused;
        char *a = spell_token(tok, sp, m->first[r], &unused);
        char *b = a ? spell_token(tok, sp, m->second[r], &unused) : NULL;
        if (!a || !b) {
            th_free(a);
            return th_fail(TH_ERR_NOMEM, "tokenizer: no memory for merges.txt");
        }
        th_atomic_write(f, a, strlen(a));
        th_atomic_write(f, " ", 1);
        th_atomic_write(f, b, strlen(b));
        th_atomic_write(f, "\n", 1);
        th_free(a);
        th_free(b);
    }
    return th_atomic_status(f);
}

th_status th_tokenizer_save_dir(const th_tokenizer *tok, const char *dir) {
    if (!tok || !dir || !dir[0]) return th_fail(TH_ERR_INVALID, "tokenizer save: no tokenizer or directory");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return th_fail(TH_ERR_IO, "%s: cannot create the directory: %s", dir, strerror(errno));
    byte_spelling sp;
    spelling_init(&sp);

    char *vocab = NULL;
    th_atomic_file *vf = NULL, *mf = NULL;
    th_status st = vocab_json(tok, &sp, &vocab);
    if (st) goto done;
    if ((st = open_in(dir, "vocab.json", &vf))) goto done;
    th_atomic_write(vf, vocab, strlen(vocab));
    th_atomic_write(vf, "\n", 1);
    if ((st = open_in(dir, "merges.txt", &mf))) goto done;
    if ((st = write_merges(tok, &sp, mf))) goto done;
    /* Both files are complete and synced before either replaces its target, so a failed
     * save leaves the previous pair; only a crash between the renames could mix them. */
    st = th_atomic_finish(mf);
    if (st) mf = NULL; /* finish aborted it */
    if (!st) {
        st = th_atomic_finish(vf);
        if (st) vf = NULL;
    }
    if (!st) {
        st = th_atomic_publish(mf);
        mf = NULL;
    }
    if (!st) {
        st = th_atomic_publish(vf);
        vf = NULL;
    }
done:
    th_atomic_abort(mf);
    th_atomic_abort(vf);
    free(vocab); /* jansson's */
    return st;
}
