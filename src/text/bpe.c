/* bpe.c: the BPE merge table and the merge loop. GPT-2's encoder repeats "find the
 * lowest-ranked adjacent pair, merge every occurrence of it left to right" until no pair
 * is a merge; done literally that is O(n^2) per word (th_bpe_merge_naive, kept as the
 * oracle). th_bpe_merge gives the same result in O(n log n): the word is a linked list,
 * and a min-heap holds (rank, position) for every adjacent pair that is a merge, stale
 * entries being dropped when popped. */
#include "text_internal.h"

#include <string.h>

/* ---------------------------------------------------------------------------------
 * the table */

static uint64_t pair_key(int32_t a, int32_t b) {
    return (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
}

static size_t pair_hash(uint64_t key) {
    key *= 0x9E3779B97F4A7C15ull;
    return (size_t)(key ^ (key >> 29));
}

th_status th_bpe_merges_init(th_bpe_merges *m, int32_t capacity) {
    memset(m, 0, sizeof *m);
    if (capacity < 0) return th_fail(TH_ERR_INVALID, "bpe: negative merge capacity");
    size_t slots = 16;
    while (slots < 2 * (size_t)capacity) slots *= 2;
    size_t per_rank = capacity ? (size_t)capacity : 1;
    m->keys = th_calloc(slots, sizeof *m->keys);
    m->ranks = th_alloc(slots * sizeof *m->ranks);
    m->first = th_alloc(per_rank * sizeof *m->first);
    m->second = th_alloc(per_rank * sizeof *m->second);
    m->merged = th_alloc(per_rank * sizeof *m->merged);
    if (!m->keys || !m->ranks || !m->first || !m->second || !m->merged) {
        th_bpe_merges_free(m);
        return th_fail(TH_ERR_NOMEM, "bpe: no memory for a table of %d merges", (int)capacity);
    }
    m->mask = slots - 1;
    m->capacity = capacity;
    return TH_OK;
}

void th_bpe_merges_free(th_bpe_merges *m) {
    th_free(m->keys);
    th_free(m->ranks);
    th_free(m->first);
    th_free(m->second);
    th_free(m->merged);
    memset(m, 0, sizeof *m);
}

th_status th_bpe_merges_add(th_bpe_merges *m, int32_t a, int32_t b, int32_t merged) {
    if (m->count >= m->capacity)
        return th_fail(TH_ERR_INVALID, "bpe: more than %d merges", (int)m->capacity);
    int32_t rank = m->count++;
    m->first[rank] = a;
    m->second[rank] = b;
    m->merged[rank] = merged;
    uint64_t key = pair_key(a, b);
    for (size_t i = pair_hash(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == 0 || m->keys[i] == key) {
            m->keys[i] = key;
            m->ranks[i] = rank; /* a repeated pair takes the later rank */
            return TH_OK;
        }
    }
}

int32_t th_bpe_rank(const th_bpe_merges *m, int32_t a, int32_t b) {
    uint64_t key = pair_key(a, b);
    for (size_t i = pair_hash(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == key) return m->ranks[i];
        if (m->keys[i] == 0) return -1;
    }
}

/* ---------------------------------------------------------------------------------
 * the reference loop */

void th_bpe_merge_naive(const th_bpe_merges *m, int *syms, size_t *n) {
    size_t len = *n;
    while (len > 1) {
        int32_t best = -1;
        for (size_t i = 0; i + 1 < len; i++) {
            int32_t r = th_bpe_rank(m, syms[i], syms[i + 1]);
            if (r >= 0 && (best < 0 || r < best)) best = r;
        }
        if (best < 0) break;
        int a = m->first[best], b = m->second[best];
        size_t w = 0;
        for (size_t i = 0; i < len;) {
            if (i + 1 < len && syms[i] == a && syms[i + 1] == b) {
                syms[w++] = m->merged[best];
                i += 2;
            } else {
                syms[w++] = syms[i++];
            }
        }
        len = w;
    }
    *n = len;
}

/* ---------------------------------------------------------------------------------
 * the heap loop */

/* A heap entry: rank in the high half, position of the pair's left symbol in the low
 * half, so the smallest key is the lowest rank and, among equals, the leftmost pair. */
static void heap_push(uint64_t *h, size_t *count, uint64_t key) {
    size_t i = (*count)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent] <= key) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = key;
}

static uint64_t heap_pop(uint64_t *h, size_t *count) {
    uint64_t top = h[0], last = h[--*count];
    size_t n = *count, i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && h[c + 1] < h[c]) c++;
        if (h[c] >= last) break;
        h[i] = h[c];
        i = c;
    }
    if (n > 0) h[i] = last;
    return top;
}

/* Pushes the pair that starts at symbol p, if it is a merge. */
static void push_pair(const th_bpe_merges *m, const int *syms, const uint32_t *next, size_t n,
                      uint64_t *heap, size_t *count, uint32_t p) {
    uint32_t q = next[p];
    if (q >= n) return;
    int32_t r = th_bpe_rank(m, syms[p], syms[q]);
    if (r >= 0) heap_push(heap, count, ((uint64_t)r << 32) | p);
}

/* Words up to this many symbols run on stack scratch; nearly all words are far shorter. */
#define BPE_STACK_SYMS 64

th_status th_bpe_merge(const th_bpe_merges *m, int *syms, size_t *n) {
    size_t len = *n;
    if (len < 2) return TH_OK;
    if (len > UINT32_MAX - 1) return th_fail(TH_ERR_INVALID, "bpe: a word of %zu bytes", len);

    /* scratch: prev and next links (n each), the heap (each merge pushes at most two
     * entries, so 3n bounds it) and the positions of one rank's pass (n) */
    uint32_t stack_links[2 * BPE_STACK_SYMS], stack_pass[BPE_STACK_SYMS];
    uint64_t stack_heap[3 * BPE_STACK_SYMS];
    uint32_t *prev = stack_links, *next = stack_links + BPE_STACK_SYMS, *pass = stack_pass;
    uint64_t *heap = stack_heap;
    void *links_mem = NULL, *heap_mem = NULL;
    if (len > BPE_STACK_SYMS) {
        links_mem = th_alloc(3 * len * sizeof(uint32_t));
        heap_mem = th_alloc(3 * len * sizeof(uint64_t));
        if (!links_mem || !heap_mem) {
            th_free(links_mem);
            th_free(heap_mem);
            return th_fail(TH_ERR_NOMEM, "bpe: no scratch memory for a word of %zu bytes", len);
        }
        prev = links_mem;
        next = prev + len;
        pass = next + len;
        heap = heap_mem;
    }

    const uint32_t none = (uint32_t)len; /* "no symbol": past the end */
    size_t count = 0;
    for (uint32_t i = 0; i < len; i++) {
        prev[i] = i == 0 ? none : i - 1;
        next[i] = i + 1;
    }
    for (uint32_t i = 0; i + 1 < len; i++) push_pair(m, syms, next, len, heap, &count, i);

    while (count > 0) {
        /* Take every entry of the lowest rank first: pairs that this pass creates must
         * wait for the next round even if their rank is lower, as in the reference. */
        uint32_t rank = (uint32_t)(heap[0] >> 32);
        size_t npass = 0;
        /* A table built from real vocabulary strings has at most one entry per position
         * and rank; the bound only keeps a malformed table within the buffer. */
        while (count > 0 && (uint32_t)(heap[0] >> 32) == rank && npass < len)
            pass[npass++] = (uint32_t)heap_pop(heap, &count);
        int a = m->first[rank], b = m->second[rank];
        for (size_t k = 0; k < npass; k++) {
            uint32_t p = pass[k], q = next[p];
            /* stale: p was merged into its left neighbour (its id is -1), or p or its
             * neighbour changed since the entry was pushed */
            if (syms[p] != a || q == none || syms[q] != b) continue;
            syms[p] = m->merged[rank];
            syms[q] = -1;
            next[p] = next[q];
            if (next[q] != none) prev[next[q]] = p;
            if (prev[p] != none) push_pair(m, syms, next, len, heap, &count, prev[p]);
            push_pair(m, syms, next, len, heap, &count, p);
        }
    }

    size_t w = 0;
    for (uint32_t i = 0; i != none; i = next[i]) syms[w++] = syms[i];
    *n = w;
    th_free(links_mem);
    th_free(heap_mem);
    return TH_OK;
}
