/* teacher_cache.c: the distillation teacher cache (io.h): a teacher's top-k log-probabilities
 * per token in fp16 with 16-bit ids, checked on load (magic, version, checksums, length),
 * written atomically, found by the hash of each window's tokens. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/io_internal.h"

typedef struct {
    uint64_t hash, window;
} index_entry;

struct th_tcache {
    th_tcache_header h;
    unsigned char *payload; /* windows_done windows of window_bytes */
    size_t window_bytes, cap_windows;
    index_entry *index;     /* sorted by hash, built on the first lookup */
};

uint16_t th_f32_to_f16_clamped(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, e32 = (x >> 23) & 0xff, man = x & 0x7fffff;
    if (e32 == 0xff) return (uint16_t)(man ? sign | 0x7e00 : sign | 0x7bff); // NaN stays NaN; ±inf clamps
    int32_t e = (int32_t)e32 - 112; // the fp16 exponent
    if (e >= 31) return (uint16_t)(sign | 0x7bff);
    if (e <= 0) { // fp16 subnormal or zero
        if (e < -10) return (uint16_t)sign;
        man |= 0x800000;
        int shift = 14 - e;
        uint32_t h = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (man >> 13), rem = man & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    if ((h & 0x7c00) == 0x7c00) h = 0x7bff; // rounded up past the largest finite
    return (uint16_t)(sign | h);
}

static size_t window_bytes_of(const th_tcache_header *h) { return 8 + (size_t)h->seq * h->k * 4; }

th_status th_tcache_create(const th_tcache_header *h, th_tcache **out) {
    *out = NULL;
    if (h->vocab_size < 1 || h->vocab_size > 65536 || h->k < 1 || h->k > h->vocab_size || h->seq < 1 ||
        h->n_windows == 0)
        return th_fail(TH_ERR_INVALID, "teacher cache: k %u, seq %u, vocabulary %u, %llu windows: k must be in "
                                       "[1, vocabulary], the vocabulary at most 65536, seq and windows positive",
                       h->k, h->seq, h->vocab_size, (unsigned long long)h->n_windows);
    th_tcache *c = th_calloc(1, sizeof *c);
    if (!c) return th_fail(TH_ERR_NOMEM, "teacher cache: out of memory");
    c->h = *h;
    c->h.windows_done = 0;
    c->h.flags = 0;
    c->window_bytes = window_bytes_of(h);
    *out = c;
    return TH_OK;
}

void th_tcache_free(th_tcache *c) {
    if (!c) return;
    th_free(c->index);
    th_free(c->payload);
    th_free(c);
}

th_tcache_header *th_tcache_header_of(th_tcache *c) { return &c->h; }

static uint64_t hash_inputs(const int *inputs, int n) {
    th_xxh64_state s;
    th_xxh64_init(&s);
    for (int i = 0; i < n; i++) {
        unsigned char b[4];
        th_put32(b, (uint32_t)inputs[i]);
        th_xxh64_update(&s, b, 4);
    }
    return th_xxh64_digest(&s);
}

th_status th_tcache_append(th_tcache *c, const int *inputs, const int *ids, const float *logp) {
    if (c->h.windows_done >= c->h.n_windows)
        return th_fail(TH_ERR_STATE, "teacher cache: all %llu windows are written", (unsigned long long)c->h.n_windows);
    size_t n = (size_t)c->h.seq * c->h.k;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= c->h.vocab_size)
            return th_fail(TH_ERR_INVALID, "teacher cache: id %d outside the vocabulary of %u", ids[i], c->h.vocab_size);
    if (c->h.windows_done == c->cap_windows) {
        size_t cap = c->cap_windows ? 2 * c->cap_windows : 64;
        if (cap > c->h.n_windows) cap = (size_t)c->h.n_windows;
        unsigned char *p = th_realloc(c->payload, cap * c->window_bytes);
        if (!p) return th_fail(TH_ERR_NOMEM, "teacher cache: out of memory for %zu windows", cap);
        c->payload = p;
        c->cap_windows = cap;
    }
    unsigned char *w = c->payload + (size_t)c->h.windows_done * c->window_bytes;
    th_put64(w, hash_inputs(inputs, (int)c->h.seq));
    for (size_t i = 0; i < n; i++) {
        uint16_t id = (uint16_t)ids[i], v = th_f32_to_f16_clamped(logp[i]);
        w[8 + 2 * i] = (unsigned char)id;
        w[8 + 2 * i + 1] = (unsigned char)(id >> 8);
        w[8 + 2 * n + 2 * i] = (unsigned char)v;
        w[8 + 2 * n + 2 * i + 1] = (unsigned char)(v >> 8);
    }
    c->h.windows_done++;
    if (c->h.windows_done == c->h.n_windows) c->h.flags |= TH_TCACHE_COMPLETE;
    th_free(c->index);
    c->index = NULL;
    return TH_OK;
}

static void put_f64(unsigned char *p, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    th_put64(p, u);
}
static double get_f64(const unsigned char *p) {
    uint64_t u = th_le64(p);
    double v;
    memcpy(&v, &u, 8);
    return v;
}

static void encode_header(const th_tcache *c, unsigned char *hb) {
    memset(hb, 0, TH_TCACHE_HEADER_BYTES);
    memcpy(hb, TH_TCACHE_MAGIC, 4);
    th_put32(hb + 4, TH_TCACHE_VERSION);
    th_put32(hb + 8, c->h.flags);
    th_put32(hb + 12, c->h.k);
    th_put32(hb + 16, c->h.seq);
    th_put32(hb + 20, c->h.vocab_size);
    th_put64(hb + 24, c->h.n_windows);
    th_put64(hb + 32, c->h.windows_done);
    th_put64(hb + 40, c->h.teacher_fp);
    th_put64(hb + 48, c->h.data_fp);
    put_f64(hb + 56, c->h.energy_j);
    put_f64(hb + 64, c->h.seconds);
    put_f64(hb + 72, c->h.co2e_g);
    put_f64(hb + 80, c->h.water_ml);
    th_put64(hb + 88, th_xxh64(c->payload, (size_t)c->h.windows_done * c->window_bytes));
    th_put64(hb + 96, th_xxh64(hb, 96));
}

th_status th_tcache_save(const th_tcache *c, const char *path) {
    unsigned char hb[TH_TCACHE_HEADER_BYTES];
    encode_header(c, hb);
    th_atomic_file *f = NULL;
    th_status st = th_atomic_open(path, &f);
    if (st != TH_OK) return st;
    th_atomic_write(f, hb, sizeof hb);
    if (c->h.windows_done) th_atomic_write(f, c->payload, (size_t)c->h.windows_done * c->window_bytes);
    return th_atomic_commit(f);
}

th_status th_tcache_load(const char *path, th_tcache **out) {
    char *data = NULL;
    size_t len = 0;
    th_tcache *c = NULL;
    th_status st = th_read_file(path, &data, &len);
    if (st != TH_OK) return st;
    const unsigned char *hb = (const unsigned char *)data;
    if (len < TH_TCACHE_HEADER_BYTES || memcmp(hb, TH_TCACHE_MAGIC, 4) != 0) {
        st = th_fail(TH_ERR_FORMAT, "%s: not a teacher cache (%s)", path,
                     len < TH_TCACHE_HEADER_BYTES ? "shorter than its header" : "no THDC magic");
        goto done;
    }
    if (th_le32(hb + 4) != TH_TCACHE_VERSION || (th_le32(hb + 8) & ~TH_TCACHE_COMPLETE)) {
        st = th_fail(TH_ERR_UNSUPPORTED, "%s: teacher cache version %u, flags 0x%x; this build reads version %u", path,
                     th_le32(hb + 4), th_le32(hb + 8), TH_TCACHE_VERSION);
        goto done;
    }
    if (th_le64(hb + 96) != th_xxh64(hb, 96)) {
        st = th_fail(TH_ERR_FORMAT, "%s: the header's checksum does not match (corrupt header)", path);
        goto done;
    }
    th_tcache_header h = {th_le32(hb + 8), th_le32(hb + 12), th_le32(hb + 16), th_le32(hb + 20), th_le64(hb + 24),
                          th_le64(hb + 32), th_le64(hb + 40), th_le64(hb + 48), get_f64(hb + 56), get_f64(hb + 64),
                          get_f64(hb + 72), get_f64(hb + 80)};
    if ((st = th_tcache_create(&h, &c)) != TH_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", th_last_error());
        st = th_fail(TH_ERR_FORMAT, "%s: %s", path, why);
        goto done;
    }
    uint64_t need;
    if (h.windows_done > h.n_windows || !th_mul_u64(h.windows_done, c->window_bytes, &need) ||
        !th_add_u64(need, TH_TCACHE_HEADER_BYTES, &need)) {
        st = th_fail(TH_ERR_FORMAT, "%s: %llu of %llu windows done: impossible", path,
                     (unsigned long long)h.windows_done, (unsigned long long)h.n_windows);
        goto done;
    }
    if (len != need) {
        st = th_fail(TH_ERR_FORMAT, "%s: %s: the file holds %zu bytes, its %llu windows need %llu", path,
                     len < need ? "truncated" : "trailing bytes", len, (unsigned long long)h.windows_done,
                     (unsigned long long)need);
        goto done;
    }
    size_t pbytes = len - TH_TCACHE_HEADER_BYTES;
    if (th_le64(hb + 88) != th_xxh64(hb + TH_TCACHE_HEADER_BYTES, pbytes)) {
        st = th_fail(TH_ERR_FORMAT, "%s: the payload's checksum does not match (corrupt data)", path);
        goto done;
    }
    if (pbytes && !(c->payload = th_alloc(pbytes))) {
        st = th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    memcpy(c->payload, hb + TH_TCACHE_HEADER_BYTES, pbytes);
    c->cap_windows = (size_t)h.windows_done;
    c->h.windows_done = h.windows_done;
    c->h.flags = h.flags;
    size_t n = (size_t)h.seq * h.k;
    for (uint64_t w = 0; w < h.windows_done; w++) {
        const unsigned char *ids = c->payload + w * c->window_bytes + 8;
        for (size_t i = 0; i < n; i++)
            if ((uint32_t)(ids[2 * i] | ids[2 * i + 1] << 8) >= h.vocab_size) {
                st = th_fail(TH_ERR_FORMAT, "%s: window %llu holds id %u, outside the vocabulary of %u", path,
                             (unsigned long long)w, (unsigned)(ids[2 * i] | ids[2 * i + 1] << 8), h.vocab_size);
                goto done;
            }
    }
    *out = c;
    c = NULL;
done:
    th_tcache_free(c);
    th_free(data);
    return st;
}

static int cmp_entry(const void *a, const void *b) {
    const index_entry *x = a, *y = b;
    return x->hash < y->hash ? -1 : x->hash > y->hash ? 1 : (x->window > y->window) - (x->window < y->window);
}

th_status th_tcache_lookup(th_tcache *c, const int *inputs, int *ids, float *logp) {
    size_t W = (size_t)c->h.windows_done;
    if (!c->index && W) {
        if (!(c->index = th_alloc(W * sizeof *c->index))) return th_fail(TH_ERR_NOMEM, "teacher cache: out of memory");
        for (size_t w = 0; w < W; w++) c->index[w] = (index_entry){th_le64(c->payload + w * c->window_bytes), w};
        qsort(c->index, W, sizeof *c->index, cmp_entry);
    }
    uint64_t hash = hash_inputs(inputs, (int)c->h.seq);
    size_t lo = 0, hi = W;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->index[mid].hash < hash) lo = mid + 1;
        else hi = mid;
    }
    if (lo == W || c->index[lo].hash != hash)
        return th_fail(TH_ERR_FORMAT, "teacher cache: no window holds these %u tokens (a cache of another dataset or "
                                      "--seq?)", c->h.seq);
    const unsigned char *w = c->payload + c->index[lo].window * c->window_bytes + 8;
    size_t n = (size_t)c->h.seq * c->h.k;
    for (size_t i = 0; i < n; i++) {
        ids[i] = w[2 * i] | w[2 * i + 1] << 8;
        logp[i] = th_f16_to_f32((uint16_t)(w[2 * n + 2 * i] | w[2 * n + 2 * i + 1] << 8));
    }
    return TH_OK;
}

uint64_t th_tcache_fingerprint_model(th_gpt2 *m) {
    const th_gpt2_config *cfg = th_gpt2_get_config(m);
    th_xxh64_state s;
    th_xxh64_init(&s);
    unsigned char b[24];
    th_put32(b, (uint32_t)cfg->max_seq_len);
    th_put32(b + 4, (uint32_t)cfg->vocab_size);
    th_put32(b + 8, (uint32_t)cfg->num_layers);
    th_put32(b + 12, (uint32_t)cfg->num_heads);
    th_put32(b + 16, (uint32_t)cfg->channels);
    uint32_t eps;
    memcpy(&eps, &cfg->ln_eps, 4);
    th_put32(b + 20, eps);
    th_xxh64_update(&s, b, sizeof b);
    th_xxh64_update(&s, th_gpt2_params(m), th_gpt2_num_params(cfg) * sizeof(float));
    return th_xxh64_digest(&s);
}
