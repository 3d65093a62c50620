/* replay.c: the replay reservoir of continual learning (format in text.h): old token
 * windows sampled by Algorithm R, saved atomically with the sampler's state so that it
 * resumes exactly, and drawn statelessly by (seed, draw number) so a batch mixer resumes. */
#include "thermo/text.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

struct th_replay {
    int window_tokens;
    size_t capacity, count;
    uint64_t seen, vocab_size, source_key;
    th_rng rng;
    int *tokens; /* capacity x window_tokens */
};


#define FNV_OFFSET 0xcbf29ce484222325ull
static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t splitmix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Uniform in [0, n) without modulo bias. */
static uint64_t rng_below(th_rng *r, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = th_rng_u64(r);
    while (x >= limit);
    return x % n;
}

th_status th_replay_create(int window_tokens, size_t capacity, uint64_t vocab_size, uint64_t seed,
                           uint64_t source_key, th_replay **out) {
    if (window_tokens < 2 || capacity == 0 || vocab_size == 0 || vocab_size > INT_MAX)
        return th_fail(TH_ERR_INVALID, "replay reservoir: window of %d tokens, capacity %zu, vocabulary %llu",
                       window_tokens, capacity, (unsigned long long)vocab_size);
    if (capacity > SIZE_MAX / sizeof(int) / (size_t)window_tokens)
        return th_fail(TH_ERR_INVALID, "replay reservoir: capacity %zu is too large", capacity);
    th_replay *r = th_calloc(1, sizeof *r);
    if (!r) return th_fail(TH_ERR_NOMEM, "replay reservoir: out of memory");
    r->tokens = th_alloc(capacity * (size_t)window_tokens * sizeof(int));
    if (!r->tokens) {
        th_free(r);
        return th_fail(TH_ERR_NOMEM, "replay reservoir: out of memory for %zu windows", capacity);
    }
    r->window_tokens = window_tokens;
    r->capacity = capacity;
    r->vocab_size = vocab_size;
    r->source_key = source_key;
    th_rng_seed(&r->rng, seed);
    *out = r;
    return TH_OK;
}

void th_replay_free(th_replay *r) {
    if (!r) return;
    th_free(r->tokens);
    th_free(r);
}

void th_replay_offer(th_replay *r, const int *window) {
    r->seen++;
    size_t slot;
    if (r->count < r->capacity) {
        slot = r->count++;
    } else {
        uint64_t j = rng_below(&r->rng, r->seen);
        if (j >= r->capacity) return;
        slot = (size_t)j;
    }
    memcpy(r->tokens + slot * (size_t)r->window_tokens, window, sizeof(int) * (size_t)r->window_tokens);
}

th_status th_replay_offer_shard(th_replay *r, const char *shard_path) {
    int T = r->window_tokens - 1;
    th_data_loader *dl = NULL;
    th_status st = th_data_loader_open(shard_path, 1, T, TH_DATA_SEQUENTIAL, 0, &dl);
    if (st != TH_OK) return st;
    int *row = th_alloc(sizeof(int) * (size_t)(2 * T + 1));
    if (!row) {
        st = th_fail(TH_ERR_NOMEM, "%s: out of memory", shard_path);
        goto done;
    }
    if (th_data_loader_vocab_size(dl) > r->vocab_size) {
        st = th_fail(TH_ERR_FORMAT, "%s: token ids up to %llu, the reservoir's vocabulary is %llu", shard_path,
                     (unsigned long long)th_data_loader_vocab_size(dl) - 1, (unsigned long long)r->vocab_size);
        goto done;
    }
    uint64_t W = th_data_loader_windows(dl);
    for (uint64_t w = 0; w < W; w++) {
        th_data_loader_next(dl, row, row + T + 1); // inputs row[0..T), targets row[T+1..2T+1)
        row[T] = row[2 * T];                      // the window's last token is the last target
        th_replay_offer(r, row);
    }
done:
    th_free(row);
    th_data_loader_close(dl);
    return st;
}

static uint32_t token_bytes(const th_replay *r) { return r->vocab_size <= 65536 ? 2 : 4; }

static void header_encode(const th_replay *r, uint8_t *h) {
    memset(h, 0, TH_REPLAY_HEADER_BYTES);
    memcpy(h, TH_REPLAY_MAGIC, 4);
    th_le_put_u32(h + 4, TH_REPLAY_VERSION);
    th_le_put_u32(h + 8, token_bytes(r));
    th_le_put_u32(h + 12, (uint32_t)r->window_tokens);
    th_le_put_u64(h + 16, r->capacity);
    th_le_put_u64(h + 24, r->count);
    th_le_put_u64(h + 32, r->seen);
    th_le_put_u64(h + 40, r->vocab_size);
    th_le_put_u64(h + 48, r->source_key);
    for (int i = 0; i < 4; i++) th_le_put_u64(h + 56 + 8 * i, r->rng.s[i]);
}

th_status th_replay_save(const th_replay *r, const char *path) {
    uint32_t tb = token_bytes(r);
    size_t n = r->count * (size_t)r->window_tokens;
    uint8_t h[TH_REPLAY_HEADER_BYTES];
    uint8_t *buf = th_alloc(n * tb + 1);
    if (!buf) return th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) {
        uint32_t v = (uint32_t)r->tokens[i];
        for (uint32_t b = 0; b < tb; b++) buf[i * tb + b] = (uint8_t)(v >> (8 * b));
    }
    header_encode(r, h);
    th_le_put_u64(h + 88, fnv1a(fnv1a(FNV_OFFSET, h, 88), buf, n * tb));
    th_atomic_file *f = NULL;
    th_status st = th_atomic_open(path, &f);
    if (st == TH_OK) {
        th_atomic_write(f, h, sizeof h);
        th_atomic_write(f, buf, n * tb);
        st = th_atomic_commit(f);
        if (st != TH_OK) st = th_fail(st, "%s: cannot write the replay reservoir: %s", path, th_last_error());
    }
    th_free(buf);
    return st;
}

th_status th_replay_load(const char *path, th_replay **out) {
    FILE *f = fopen(path, "rb");
    if (!f) return th_fail(TH_ERR_IO, "%s: cannot open the replay reservoir", path);
    uint8_t h[TH_REPLAY_HEADER_BYTES];
    uint8_t *buf = NULL;
    th_replay *r = NULL;
    th_status st = TH_OK;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || fread(h, 1, sizeof h, f) != sizeof h) {
        st = th_fail(TH_ERR_FORMAT, "%s: shorter than the %d-byte replay header", path, TH_REPLAY_HEADER_BYTES);
        goto done;
    }
    if (memcmp(h, TH_REPLAY_MAGIC, 4) != 0) {
        st = th_fail(TH_ERR_FORMAT, "%s: not a replay reservoir (wrong magic)", path);
        goto done;
    }
    if (th_le_get_u32(h + 4) != TH_REPLAY_VERSION) {
        st = th_fail(TH_ERR_FORMAT, "%s: replay reservoir version %u, this build reads %u", path, th_le_get_u32(h + 4),
                     TH_REPLAY_VERSION);
        goto done;
    }
    uint32_t tb = th_le_get_u32(h + 8), wt = th_le_get_u32(h + 12);
    uint64_t cap = th_le_get_u64(h + 16), count = th_le_get_u64(h + 24), vocab = th_le_get_u64(h + 40);
    if ((tb != 2 && tb != 4) || wt < 2 || wt > (1u << 24) || count > cap || cap > (1ull << 32) || vocab == 0 ||
        vocab > INT_MAX || tb != (vocab <= 65536 ? 2u : 4u)) {
        st = th_fail(TH_ERR_FORMAT, "%s: impossible replay header (token bytes %u, window %u, %llu of %llu windows, "
                                    "vocabulary %llu)",
                     path, tb, wt, (unsigned long long)count, (unsigned long long)cap, (unsigned long long)vocab);
        goto done;
    }
    uint64_t bytes = count * wt * tb;
    if ((uint64_t)sb.st_size != TH_REPLAY_HEADER_BYTES + bytes) {
        st = th_fail(TH_ERR_FORMAT, "%s: %lld bytes, the header says %llu (truncated?)", path, (long long)sb.st_size,
                     (unsigned long long)(TH_REPLAY_HEADER_BYTES + bytes));
        goto done;
    }
    if ((st = th_replay_create((int)wt, (size_t)cap, vocab, 0, th_le_get_u64(h + 48), &r)) != TH_OK) goto done;
    buf = th_alloc(bytes + 1);
    if (!buf) {
        st = th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (fread(buf, 1, bytes, f) != bytes) {
        st = th_fail(TH_ERR_FORMAT, "%s: file ends early", path);
        goto done;
    }
    if (fnv1a(fnv1a(FNV_OFFSET, h, 88), buf, bytes) != th_le_get_u64(h + 88)) {
        st = th_fail(TH_ERR_FORMAT, "%s: checksum mismatch (corrupt replay reservoir)", path);
        goto done;
    }
    for (uint64_t i = 0; i < count * wt; i++) {
        uint32_t v = 0;
        for (uint32_t b = 0; b < tb; b++) v |= (uint32_t)buf[i * tb + b] << (8 * b);
        if (v >= vocab) {
            st = th_fail(TH_ERR_FORMAT, "%s: token %u at index %llu is outside the vocabulary of %llu", path, v,
                         (unsigned long long)i, (unsigned long long)vocab);
            goto done;
        }
        r->tokens[i] = (int)v;
    }
    r->count = (size_t)count;
    r->seen = th_le_get_u64(h + 32);
    for (int i = 0; i < 4; i++) r->rng.s[i] = th_le_get_u64(h + 56 + 8 * i);
    *out = r;
    r = NULL;
done:
    th_replay_free(r);
    th_free(buf);
    fclose(f);
    return st;
}

size_t th_replay_count(const th_replay *r) { return r->count; }
size_t th_replay_capacity(const th_replay *r) { return r->capacity; }
uint64_t th_replay_seen(const th_replay *r) { return r->seen; }
int th_replay_window_tokens(const th_replay *r) { return r->window_tokens; }
uint64_t th_replay_vocab_size(const th_replay *r) { return r->vocab_size; }
uint64_t th_replay_source_key(const th_replay *r) { return r->source_key; }

const int *th_replay_window(const th_replay *r, size_t i) {
    return i < r->count ? r->tokens + i * (size_t)r->window_tokens : NULL;
}

th_status th_replay_draw(const th_replay *r, uint64_t seed, uint64_t draw, int *inputs, int *targets) {
    if (r->count == 0) return th_fail(TH_ERR_STATE, "replay reservoir: empty");
    const int *w = r->tokens + (size_t)(splitmix(seed ^ splitmix(draw)) % r->count) * (size_t)r->window_tokens;
    int T = r->window_tokens - 1;
    memcpy(inputs, w, sizeof(int) * (size_t)T);
    memcpy(targets, w + 1, sizeof(int) * (size_t)T);
    return TH_OK;
}
