/* loop.c: the generation loop guard. Two detectors over the token stream, fed one token
 * at a time: an exact-cycle detector (for every period p it keeps the length of the
 * current run of positions where tok[i] == tok[i-p]; O(max_period) per token) and a
 * near-duplicate detector (counts of the n-grams in a sliding window, in an open-addressing
 * table with backward-shift deletion; O(1) amortized per token). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thermo/guard.h"

struct th_loop_guard {
    th_loop_guard_config cfg;
    long t;            /* tokens fed */
    int *hist;         /* ring of the last max_period + 1 tokens */
    int hist_cap;
    int *run;          /* run[p]: consecutive positions ending now with tok[i] == tok[i - p] */
    /* n-grams */
    int ng_tok[16];    /* ring of the last n tokens */
    uint64_t *win;     /* ring of the hashes of the n-grams in the window, oldest at win_head */
    int win_cap, win_len, win_head;
    uint64_t *keys;    /* hash table: key 0 = empty */
    int *counts;
    size_t mask;
    int distinct;
    /* detection */
    int in_loop;       /* the stream is in a detected loop */
    int halted;        /* stop mode fired */
    th_loop_verdict v; /* latest verdict, reason rendered on demand */
};

th_loop_guard_config th_loop_guard_defaults(void) {
    th_loop_guard_config c;
    c.mode = TH_GUARD_STOP;
    c.max_period = 64;
    c.min_repeats = 3;
    c.min_loop_tokens = 48;
    c.ngram_n = 4;
    c.ngram_window = 256;
    c.ngram_max_count = 8;
    c.ngram_max_fraction = 0.6;
    return c;
}

static th_status validate(const th_loop_guard_config *c) {
    if (c->mode != TH_GUARD_OFF && c->mode != TH_GUARD_WARN && c->mode != TH_GUARD_STOP)
        return th_fail(TH_ERR_INVALID, "loop guard: mode %d is not stop, warn or off", (int)c->mode);
    if (c->max_period < 1 || c->max_period > 1024)
        return th_fail(TH_ERR_INVALID, "loop guard: max_period %d is outside [1, 1024]", c->max_period);
    if (c->min_repeats < 2 || c->min_repeats > 1000000)
        return th_fail(TH_ERR_INVALID, "loop guard: min_repeats %d must be at least 2", c->min_repeats);
    if (c->min_loop_tokens < 0 || c->min_loop_tokens > 1000000)
        return th_fail(TH_ERR_INVALID, "loop guard: min_loop_tokens %d is outside [0, 1000000]", c->min_loop_tokens);
    if (c->ngram_n < 0 || c->ngram_n > 16)
        return th_fail(TH_ERR_INVALID, "loop guard: ngram_n %d is outside [0, 16]", c->ngram_n);
    if (c->ngram_n > 0) {
        if (c->ngram_window <= c->ngram_n || c->ngram_window > 65536)
            return th_fail(TH_ERR_INVALID, "loop guard: ngram_window %d must be in (ngram_n %d, 65536]",
                           c->ngram_window, c->ngram_n);
        if (c->ngram_max_count < 0 || c->ngram_max_count == 1)
            return th_fail(TH_ERR_INVALID, "loop guard: ngram_max_count %d must be 0 (off) or at least 2",
                           c->ngram_max_count);
        if (!(c->ngram_max_fraction >= 0 && c->ngram_max_fraction <= 1))
            return th_fail(TH_ERR_INVALID, "loop guard: ngram_max_fraction %g is outside [0, 1]",
                           c->ngram_max_fraction);
    }
    return TH_OK;
}

th_status th_loop_guard_create(const th_loop_guard_config *cfg, th_loop_guard **out) {
    th_loop_guard_config c = cfg ? *cfg : th_loop_guard_defaults();
    th_status st = validate(&c);
    if (st != TH_OK) return st;
    th_loop_guard *g = th_calloc(1, sizeof *g);
    if (!g) return th_fail(TH_ERR_NOMEM, "loop guard: out of memory");
    g->cfg = c;
    g->hist_cap = c.max_period + 1;
    g->hist = th_calloc((size_t)g->hist_cap, sizeof(int));
    g->run = th_calloc((size_t)c.max_period + 1, sizeof(int));
    if (c.ngram_n > 0) {
        g->win_cap = c.ngram_window - c.ngram_n + 1;
        size_t cap = 16;
        while (cap < (size_t)g->win_cap * 2) cap <<= 1; // load factor <= 1/2
        g->mask = cap - 1;
        g->win = th_calloc((size_t)g->win_cap, sizeof(uint64_t));
        g->keys = th_calloc(cap, sizeof(uint64_t));
        g->counts = th_calloc(cap, sizeof(int));
    }
    if (!g->hist || !g->run || (c.ngram_n > 0 && (!g->win || !g->keys || !g->counts))) {
        th_loop_guard_free(g);
        return th_fail(TH_ERR_NOMEM, "loop guard: out of memory");
    }
    th_loop_guard_reset(g);
    *out = g;
    return TH_OK;
}

void th_loop_guard_free(th_loop_guard *g) {
    if (!g) return;
    th_free(g->counts);
    th_free(g->keys);
    th_free(g->win);
    th_free(g->run);
    th_free(g->hist);
    th_free(g);
}

void th_loop_guard_reset(th_loop_guard *g) {
    g->t = 0;
    memset(g->run, 0, sizeof(int) * ((size_t)g->cfg.max_period + 1));
    if (g->keys) {
        memset(g->keys, 0, sizeof(uint64_t) * (g->mask + 1));
        memset(g->counts, 0, sizeof(int) * (g->mask + 1));
    }
    g->win_len = g->win_head = 0;
    g->distinct = 0;
    g->in_loop = g->halted = 0;
    memset(&g->v, 0, sizeof g->v);
    g->v.start = g->v.detected_at = -1;
}

long th_loop_guard_tokens(const th_loop_guard *g) { return g->t; }

/* ---------------------------------------------------------------------------------
 * n-gram counts */

static uint64_t mix64(uint64_t x) { // splitmix64 finalizer
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static size_t slot_of(const th_loop_guard *g, uint64_t key) {
    size_t i = (size_t)mix64(key) & g->mask;
    while (g->keys[i] && g->keys[i] != key) i = (i + 1) & g->mask;
    return i;
}

/* Returns the count after the increment. */
static int ngram_add(th_loop_guard *g, uint64_t key) {
    size_t i = slot_of(g, key);
    if (!g->keys[i]) {
        g->keys[i] = key;
        g->distinct++;
    }
    return ++g->counts[i];
}

static void ngram_remove(th_loop_guard *g, uint64_t key) {
    size_t i = slot_of(g, key);
    if (!g->keys[i] || --g->counts[i] > 0) return;
    g->distinct--;
    // backward-shift deletion (Knuth vol. 3, algorithm R): no tombstones to accumulate
    size_t j = i;
    for (;;) {
        g->keys[i] = 0;
        g->counts[i] = 0;
        for (;;) {
            j = (j + 1) & g->mask;
            if (!g->keys[j]) return;
            size_t home = (size_t)mix64(g->keys[j]) & g->mask;
            // keep keys[j] where it is if its home lies cyclically in (i, j]
            if (i <= j ? (i < home && home <= j) : (i < home || home <= j)) continue;
            break;
        }
        g->keys[i] = g->keys[j];
        g->counts[i] = g->counts[j];
        i = j;
    }
}

/* ---------------------------------------------------------------------------------
 * feeding */

static void render(const th_loop_guard *g, th_loop_verdict *v) {
    *v = g->v;
    switch (v->kind) {
    case TH_LOOP_NONE: snprintf(v->reason, sizeof v->reason, "no loop in %ld tokens", g->t); break;
    case TH_LOOP_PERIOD:
        snprintf(v->reason, sizeof v->reason, "loop: period %d repeated %d times since token %ld (%ld tokens burned)",
                 v->period, v->repeats, v->start, v->tokens_burned);
        break;
    case TH_LOOP_NGRAM:
        snprintf(v->reason, sizeof v->reason,
                 "loop: a %d-gram repeated %d times in the last %d tokens since token %ld (%ld tokens burned)",
                 v->period, v->repeats, g->cfg.ngram_window, v->start, v->tokens_burned);
        break;
    case TH_LOOP_NGRAM_FRACTION:
        snprintf(v->reason, sizeof v->reason,
                 "loop: %.0f%% of the %d-grams in the last %d tokens repeat since token %ld (%ld tokens burned)",
                 v->fraction * 100.0, v->period, g->cfg.ngram_window, v->start, v->tokens_burned);
        break;
    }
}

static th_guard_action fire(th_loop_guard *g, th_loop_kind kind, int period, int repeats, double fraction,
                            long start) {
    long now = g->t - 1;
    g->v.kind = kind;
    g->v.period = period;
    g->v.repeats = repeats;
    g->v.fraction = fraction;
    g->v.start = start;
    g->v.detected_at = now;
    g->v.tokens_burned = now - start + 1;
    g->in_loop = 1;
    if (g->cfg.mode == TH_GUARD_STOP) {
        g->halted = 1;
        return TH_GUARD_HALT;
    }
    return TH_GUARD_WARNED;
}

th_guard_action th_loop_guard_feed(th_loop_guard *g, int token, th_loop_verdict *v) {
    const th_loop_guard_config *c = &g->cfg;
    th_guard_action act = TH_GUARD_CONTINUE;
    long t = g->t++;
    if (c->mode == TH_GUARD_OFF) goto out;

    // exact cycles: run[p] grows while tok[t] == tok[t - p]
    g->hist[t % g->hist_cap] = token;
    int fired_p = 0, fired_len = 0;
    long maxp = t < c->max_period ? t : c->max_period;
    for (int p = 1; p <= maxp; p++) {
        int same = g->hist[(t - p) % g->hist_cap] == token;
        g->run[p] = same ? g->run[p] + 1 : 0;
        int len = g->run[p] + p; // tokens in the periodic region ending at t
        if (!fired_p && g->run[p] > 0 && len >= c->min_repeats * p && len >= c->min_loop_tokens) {
            fired_p = p;
            fired_len = len;
        }
    }

    // n-grams in the window
    int ng_count = 0;
    uint64_t ng_key = 0;
    double frac = 0.0;
    if (c->ngram_n > 0) {
        int n = c->ngram_n;
        g->ng_tok[t % n] = token;
        if (t + 1 >= n) {
            uint64_t h = 0xcbf29ce484222325ULL;
            for (long i = t - n + 1; i <= t; i++) {
                h ^= (uint32_t)g->ng_tok[i % n];
                h *= 0x100000001b3ULL;
            }
            ng_key = h ? h : 1;
            if (g->win_len == g->win_cap) { // slide: the oldest n-gram leaves
                ngram_remove(g, g->win[g->win_head]);
                g->win[g->win_head] = ng_key;
                g->win_head = (g->win_head + 1) % g->win_cap;
            } else {
                g->win[(g->win_head + g->win_len) % g->win_cap] = ng_key;
                g->win_len++;
            }
            ng_count = ngram_add(g, ng_key);
            if (g->win_len == g->win_cap) frac = 1.0 - (double)g->distinct / g->win_len;
        }
    }

    if (g->halted) {
        g->v.tokens_burned = t - g->v.start + 1;
        act = TH_GUARD_HALT;
        goto out;
    }
    if (g->in_loop) {
        // warn mode: follow the loop until the stream leaves it
        int holds = g->v.kind == TH_LOOP_PERIOD ? g->run[g->v.period] > 0 : ng_count >= 2;
        if (holds) {
            g->v.tokens_burned = t - g->v.start + 1;
            if (g->v.kind == TH_LOOP_PERIOD) g->v.repeats = (g->run[g->v.period] + g->v.period) / g->v.period;
            goto out;
        }
        g->in_loop = 0;
    }
    if (fired_p) {
        act = fire(g, TH_LOOP_PERIOD, fired_p, fired_len / fired_p, 0.0, t - fired_len + 1);
    } else if (c->ngram_n > 0 && c->ngram_max_count > 0 && ng_count >= c->ngram_max_count) {
        // the loop starts at the oldest occurrence of this n-gram still in the window
        long start = t;
        for (int i = 0; i < g->win_len; i++)
            if (g->win[(g->win_head + i) % g->win_cap] == ng_key) {
                start = t - (g->win_len - 1 - i) - (c->ngram_n - 1);
                break;
            }
        // no less evidence than an exact cycle needs: the repeats must span min_loop_tokens
        if (t - start + 1 >= c->min_loop_tokens) act = fire(g, TH_LOOP_NGRAM, c->ngram_n, ng_count, frac, start);
    }
    if (act == TH_GUARD_CONTINUE && !fired_p && c->ngram_n > 0 && c->ngram_max_fraction > 0 &&
        g->win_len == g->win_cap && frac >= c->ngram_max_fraction)
        act = fire(g, TH_LOOP_NGRAM_FRACTION, c->ngram_n, ng_count, frac, t - c->ngram_window + 1);
out:
    if (v) {
        render(g, v);
        v->action = act;
    }
    return act;
}

void th_loop_guard_verdict(const th_loop_guard *g, th_loop_verdict *v) {
    render(g, v);
    v->action = g->halted ? TH_GUARD_HALT : TH_GUARD_CONTINUE;
}
