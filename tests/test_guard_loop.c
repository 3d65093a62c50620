/* test_guard_loop.c: the generation loop guard on planted loops (exact cycles, a
 * near-duplicate loop with a counter), against a naive O(history^2) oracle on random
 * streams, on natural repetitive text that must not fire (tokenized with GPT-2's BPE when
 * the vocabulary is installed), and on a random GPT-2 under greedy decoding. */
#include <stdint.h>

#include "test_util.h"
#include "thermo/guard.h"
#include "thermo/model.h"
#include "thermo/text.h"

/* Feeds n tokens; returns the index at which the guard first fired (-1 if never). */
static long feed_all(th_loop_guard *g, const int *tok, long n, th_loop_verdict *first) {
    long at = -1;
    for (long i = 0; i < n; i++) {
        th_loop_verdict v;
        th_guard_action a = th_loop_guard_feed(g, tok[i], &v);
        if (a != TH_GUARD_CONTINUE && at < 0) {
            at = i;
            if (first) *first = v;
        }
    }
    return at;
}

/* ---------------------------------------------------------------------------------
 * the oracle: recomputes everything from the whole history at each token */

typedef struct {
    long at, start;
    th_loop_kind kind;
    int period;
} oracle_hit;

static oracle_hit oracle(const th_loop_guard_config *c, const int *tok, long n) {
    oracle_hit h = {-1, -1, TH_LOOP_NONE, 0};
    for (long t = 0; t < n; t++) {
        for (int p = 1; p <= c->max_period && p <= t; p++) {
            long run = 0;
            while (t - run - p >= 0 && tok[t - run] == tok[t - run - p]) run++;
            long len = run + p;
            if (run > 0 && len >= (long)c->min_repeats * p && len >= c->min_loop_tokens) {
                h.at = t, h.start = t - len + 1, h.kind = TH_LOOP_PERIOD, h.period = p;
                return h;
            }
        }
        int N = c->ngram_n;
        if (N == 0 || t + 1 < N) continue;
        long first = t - c->ngram_window + 1; // start of the oldest n-gram in the window
        if (first < 0) first = 0;
        long m = t - N + 1 - first + 1;       // n-grams in the window
        int count = 0;
        long oldest = -1;
        for (long s = first; s <= t - N + 1; s++)
            if (memcmp(tok + s, tok + t - N + 1, sizeof(int) * N) == 0) {
                if (oldest < 0) oldest = s;
                count++;
            }
        if (c->ngram_max_count > 0 && count >= c->ngram_max_count && t - oldest + 1 >= c->min_loop_tokens) {
            h.at = t, h.start = oldest, h.kind = TH_LOOP_NGRAM, h.period = N;
            return h;
        }
        if (c->ngram_max_fraction > 0 && m == c->ngram_window - N + 1) {
            long distinct = 0;
            for (long s = first; s <= t - N + 1; s++) {
                int seen = 0;
                for (long q = first; q < s && !seen; q++) seen = memcmp(tok + q, tok + s, sizeof(int) * N) == 0;
                distinct += !seen;
            }
            if (1.0 - (double)distinct / m >= c->ngram_max_fraction) {
                h.at = t, h.start = t - c->ngram_window + 1, h.kind = TH_LOOP_NGRAM_FRACTION, h.period = N;
                return h;
            }
        }
    }
    return h;
}

static uint64_t lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

/* ---------------------------------------------------------------------------------
 * planted faults */

static void test_planted_cycle(void) {
    th_loop_guard *g;
    CHECK(th_loop_guard_create(NULL, &g) == TH_OK, "%s", th_last_error());
    int tok[400];
    for (int i = 0; i < 113; i++) tok[i] = 1000 + i; // distinct "natural" tokens
    for (int i = 113; i < 400; i++) tok[i] = 10 + (i - 113) % 7;
    th_loop_verdict v;
    long at = feed_all(g, tok, 400, &v);
    // the region starts at 113; 48 tokens (the default minimum, > 3 copies of 7) end at 160
    CHECK(at == 160, "fired at %ld, expected 160", at);
    CHECK(v.action == TH_GUARD_HALT && v.kind == TH_LOOP_PERIOD && v.period == 7, "kind %d period %d", v.kind,
          v.period);
    CHECK(v.start == 113 && v.repeats == 6 && v.tokens_burned == 48, "start %ld repeats %d burned %ld", v.start,
          v.repeats, v.tokens_burned);
    CHECK(strstr(v.reason, "loop: period 7 repeated 6 times since token 113") != NULL, "%s", v.reason);
    th_loop_verdict after;
    th_loop_guard_verdict(g, &after);
    CHECK(after.action == TH_GUARD_HALT && after.tokens_burned == 400 - 113, "sticky stop, burned %ld",
          after.tokens_burned);
    // a fresh stream after reset does not remember the loop
    th_loop_guard_reset(g);
    CHECK(feed_all(g, tok, 113, NULL) == -1 && th_loop_guard_tokens(g) == 113, "reset");
    th_loop_guard_free(g);
}

static void test_period_one_and_warn(void) {
    th_loop_guard_config c = th_loop_guard_defaults();
    c.mode = TH_GUARD_WARN;
    th_loop_guard *g;
    CHECK(th_loop_guard_create(&c, &g) == TH_OK, "%s", th_last_error());
    int tok[300];
    for (int i = 0; i < 300; i++) tok[i] = 5000 + i;
    for (int i = 20; i < 100; i++) tok[i] = 7; // 80 copies of one token
    for (int i = 150; i < 220; i++) tok[i] = 30 + (i - 150) % 2; // then an A/B loop of 70 tokens
    int warned = 0;
    long first = -1, second = -1, burned_first = 0;
    for (int i = 0; i < 300; i++) {
        th_loop_verdict v;
        th_guard_action a = th_loop_guard_feed(g, tok[i], &v);
        CHECK(a != TH_GUARD_HALT, "warn mode never stops");
        if (a == TH_GUARD_WARNED) {
            warned++;
            if (first < 0) first = i;
            else if (second < 0) second = i;
        }
        if (i == 99) burned_first = v.tokens_burned;
    }
    CHECK(warned == 2, "one warning per loop, got %d", warned);
    CHECK(first == 20 + 47, "period-1 loop fired at %ld, expected %d", first, 67);
    CHECK(burned_first == 80, "the first loop burned %ld tokens, expected 80", burned_first);
    CHECK(second == 150 + 47, "A/B loop fired at %ld, expected %d", second, 197);
    th_loop_verdict v;
    th_loop_guard_verdict(g, &v);
    CHECK(v.kind == TH_LOOP_PERIOD && v.period == 2 && v.start == 150 && v.tokens_burned == 70,
          "period %d start %ld burned %ld", v.period, v.start, v.tokens_burned);
    th_loop_guard_free(g);
}

static void test_near_duplicate(void) {
    // "step k : do the same thing again ." : period 8 but the counter changes every time
    th_loop_guard *g;
    CHECK(th_loop_guard_create(NULL, &g) == TH_OK, "%s", th_last_error());
    int tok[300];
    for (int i = 0; i < 50; i++) tok[i] = 2000 + i;
    for (int i = 50; i < 300; i++) {
        int k = (i - 50) / 8, j = (i - 50) % 8;
        tok[i] = j == 6 ? 100 + k : 20 + j;
    }
    th_loop_verdict v;
    long at = feed_all(g, tok, 300, &v);
    // the 4-gram at 50..53 recurs every 8 tokens: its 8th copy ends at 53 + 7 * 8 = 109
    CHECK(at == 109, "fired at %ld, expected 109", at);
    CHECK(v.kind == TH_LOOP_NGRAM && v.period == 4 && v.repeats == 8 && v.start == 50, "kind %d n %d count %d start %ld",
          v.kind, v.period, v.repeats, v.start);
    th_loop_guard_free(g);

    // with the count test off, the fraction test catches it once the window is full
    th_loop_guard_config c = th_loop_guard_defaults();
    c.ngram_max_count = 0;
    c.ngram_max_fraction = 0.4; // half of each cycle's 4-grams hold the counter
    CHECK(th_loop_guard_create(&c, &g) == TH_OK, "%s", th_last_error());
    at = feed_all(g, tok, 300, &v);
    oracle_hit o = oracle(&c, tok, 300);
    CHECK(at == o.at && at >= 255 && v.kind == TH_LOOP_NGRAM_FRACTION && v.fraction >= 0.4,
          "fraction fired at %ld (oracle %ld), kind %d, fraction %.3f", at, o.at, v.kind, v.fraction);
    th_loop_guard_free(g);
}

static void test_against_oracle(void) {
    uint64_t s = 42;
    int mismatches = 0, fired = 0;
    for (int trial = 0; trial < 300; trial++) {
        th_loop_guard_config c = th_loop_guard_defaults();
        c.max_period = 1 + (int)(lcg(&s) % 12);
        c.min_repeats = 2 + (int)(lcg(&s) % 3);
        c.min_loop_tokens = (int)(lcg(&s) % 20);
        c.ngram_n = (int)(lcg(&s) % 5);
        c.ngram_window = c.ngram_n + 2 + (int)(lcg(&s) % 40);
        c.ngram_max_count = lcg(&s) % 3 ? 2 + (int)(lcg(&s) % 8) : 0;
        c.ngram_max_fraction = lcg(&s) % 2 ? 0.3 + 0.1 * (double)(lcg(&s) % 6) : 0;
        int vocab = 2 + (int)(lcg(&s) % 30);
        int tok[160];
        for (int i = 0; i < 160; i++) tok[i] = (int)(lcg(&s) % (uint64_t)vocab);
        th_loop_guard *g;
        if (th_loop_guard_create(&c, &g) != TH_OK) {
            CHECK(0, "config rejected: %s", th_last_error());
            continue;
        }
        th_loop_verdict v;
        memset(&v, 0, sizeof v);
        long at = feed_all(g, tok, 160, &v);
        oracle_hit o = oracle(&c, tok, 160);
        fired += at >= 0;
        if (at != o.at || (at >= 0 && (v.kind != o.kind || v.start != o.start || v.period != o.period))) {
            if (mismatches++ < 5)
                fprintf(stderr, "trial %d: guard at %ld kind %d start %ld p %d; oracle at %ld kind %d start %ld p %d\n",
                        trial, at, v.kind, v.start, v.period, o.at, o.kind, o.start, o.period);
        }
        th_loop_guard_free(g);
    }
    CHECK(mismatches == 0, "%d of 300 random streams disagree with the oracle", mismatches);
    CHECK(fired > 50 && fired < 300, "the random configs should both fire and not fire (%d fired)", fired);
}

/* ---------------------------------------------------------------------------------
 * natural repetitive text must not fire */

static void test_natural_text(void) {
    // counting up as GPT-2's BPE sees it (no tokenizer needed): " 1", ",", " 2", ",", ...
    // with a line break every 10 numbers
    th_loop_guard *g;
    CHECK(th_loop_guard_create(NULL, &g) == TH_OK, "%s", th_last_error());
    int tok[4000];
    long n = 0;
    for (int k = 1; n < 3990; k++) {
        tok[n++] = 1000 + k;
        tok[n++] = k % 10 ? 11 : 198;
    }
    th_loop_verdict v;
    long at = feed_all(g, tok, n, &v);
    CHECK(at == -1, "digits counting up fired at %ld: %s", at, v.reason);
    th_loop_guard_free(g);

    th_tokenizer *tk = NULL;
    if (th_tokenizer_load_default(&tk) != TH_OK) {
        printf("skip: GPT-2 vocabulary not installed (scripts/setup); BPE texts not checked\n");
        return;
    }
    char text[16384];
    size_t off = 0;
    for (int k = 1; k <= 600 && off < sizeof text - 16; k++) off += (size_t)snprintf(text + off, sizeof text - off, "%d, ", k);
    const char *texts[] = {
        text,
        "1. Preheat the oven to 180 degrees.\n2. Mix the flour with the sugar.\n3. Add two eggs and the milk.\n"
        "4. Pour the batter into the tin.\n5. Bake for forty minutes.\n6. Let it cool on a rack.\n"
        "7. Dust with sugar and serve.\n8. Keep the rest in a tin for up to three days.\n",
        "| year | country | grid g/kWh |\n|---|---|---|\n| 2019 | France | 56 |\n| 2019 | Germany | 344 |\n"
        "| 2020 | France | 51 |\n| 2020 | Germany | 311 |\n| 2021 | France | 58 |\n| 2021 | Germany | 349 |\n"
        "| 2022 | France | 85 |\n| 2022 | Germany | 385 |\n| 2023 | France | 56 |\n| 2023 | Germany | 381 |\n",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int *ids = NULL;
        size_t n_ids = 0;
        CHECK(th_tokenizer_encode(tk, texts[i], strlen(texts[i]), 0, &ids, &n_ids) == TH_OK, "%s", th_last_error());
        CHECK(th_loop_guard_create(NULL, &g) == TH_OK, "%s", th_last_error());
        at = feed_all(g, ids, (long)n_ids, &v);
        CHECK(at == -1, "natural text %zu (%zu tokens) fired at %ld: %s", i, n_ids, at, v.reason);
        th_loop_guard_free(g);
        // the same text looping does fire
        int *twice = malloc(sizeof(int) * n_ids * 4);
        for (int r = 0; r < 4; r++) memcpy(twice + r * n_ids, ids, sizeof(int) * n_ids);
        if (n_ids <= 64) {
            CHECK(th_loop_guard_create(NULL, &g) == TH_OK, "%s", th_last_error());
            at = feed_all(g, twice, (long)n_ids * 4, &v);
            CHECK(at >= 0 && v.start == 0, "text %zu repeated 4 times: fired at %ld start %ld", i, at, v.start);
            th_loop_guard_free(g);
        }
        free(twice);
        th_free(ids);
    }
    th_tokenizer_free(tk);
}

/* ---------------------------------------------------------------------------------
 * random GPT-2 weights under greedy decoding fall into loops */

static void test_random_model_greedy(void) {
    th_gpt2_config cfg = {256, 512, 2, 4, 64, 1e-5f};
    int looped = 0;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        th_gpt2 *m = NULL;
        th_gpt2_kv *kv = NULL;
        th_sampler *sm = NULL;
        th_sampler_config sc = {0.0f, 0, 1.0f};
        CHECK(th_gpt2_create(&cfg, &m) == TH_OK, "%s", th_last_error());
        th_gpt2_init_random(m, seed);
        CHECK(th_gpt2_kv_create(m, 256, &kv) == TH_OK && th_sampler_create(512, &sc, 1, &sm) == TH_OK, "%s",
              th_last_error());
        th_loop_guard *g;
        th_loop_guard_create(NULL, &g);
        float logits[512];
        int tok = (int)seed * 7, stream[200];
        th_status st = th_gpt2_infer(m, kv, &tok, 1, logits, 0);
        long at = -1;
        th_loop_verdict v;
        for (int i = 0; i < 200 && st == TH_OK; i++) {
            tok = th_sampler_next(sm, logits);
            stream[i] = tok;
            if (th_loop_guard_feed(g, tok, &v) == TH_GUARD_HALT) {
                at = i;
                break;
            }
            st = th_gpt2_infer(m, kv, &tok, 1, logits, 0);
        }
        CHECK(st == TH_OK, "%s", th_last_error());
        if (at >= 0) {
            looped++;
            // the reported cycle really is in the stream
            int ok = v.kind != TH_LOOP_PERIOD || v.start >= 0;
            for (long i = v.start + v.period; v.kind == TH_LOOP_PERIOD && i <= at; i++) ok &= stream[i] == stream[i - v.period];
            CHECK(ok, "seed %d: reported %s, but the stream does not repeat", (int)seed, v.reason);
            printf("seed %d: %s (detected at token %ld of 200)\n", (int)seed, v.reason, at);
        } else {
            printf("seed %d: no loop in 200 greedy tokens\n", (int)seed);
        }
        th_loop_guard_free(g);
        th_sampler_free(sm);
        th_gpt2_kv_free(kv);
        th_gpt2_free(m);
    }
    CHECK(looped >= 1, "greedy decoding of a random model should loop for some seed (%d of 4)", looped);
}

static void test_config_and_pricing(void) {
    th_loop_guard *g = NULL;
    th_loop_guard_config c = th_loop_guard_defaults();
    c.max_period = 0;
    CHECK(th_loop_guard_create(&c, &g) == TH_ERR_INVALID && strstr(th_last_error(), "max_period"), "%s", th_last_error());
    c = th_loop_guard_defaults();
    c.ngram_window = 3;
    CHECK(th_loop_guard_create(&c, &g) == TH_ERR_INVALID && strstr(th_last_error(), "ngram_window"), "%s",
          th_last_error());
    c = th_loop_guard_defaults();
    c.mode = TH_GUARD_OFF;
    CHECK(th_loop_guard_create(&c, &g) == TH_OK, "%s", th_last_error());
    int same[100] = {0};
    CHECK(feed_all(g, same, 100, NULL) == -1, "mode off never fires");
    th_loop_guard_free(g);
    th_guard_mode m;
    CHECK(th_guard_mode_parse("warn", &m) == TH_OK && m == TH_GUARD_WARN, "parse warn");
    CHECK(th_guard_mode_parse("loud", &m) == TH_ERR_INVALID, "parse rejects");

    // pricing the burned tokens with a per-token footprint
    th_eco_footprint per;
    memset(&per, 0, sizeof per);
    per.energy_it_kwh = 2.0 / 3.6e6; // 2 J per token
    per.co2e_g = 0.001;
    per.water_onsite_l = 1e-6;
    per.water_offsite_l = 3e-6;
    th_guard_cost cost;
    th_guard_cost_of_units(&per, 48, &cost);
    CHECK(fabs(cost.energy_j - 96) < 1e-9 && fabs(cost.co2e_g - 0.048) < 1e-12 && fabs(cost.water_ml - 0.192) < 1e-9,
          "%g J %g g %g mL", cost.energy_j, cost.co2e_g, cost.water_ml);
    CHECK(th_fnv1a64("", 0) == 0xcbf29ce484222325ULL && th_fnv1a64("a", 1) == 0xaf63dc4c8601ec8cULL, "FNV-1a vectors");
}

int main(void) {
    test_planted_cycle();
    test_period_one_and_warn();
    test_near_duplicate();
    test_against_oracle();
    test_natural_text();
    test_random_model_greedy();
    test_config_and_pricing();
    return test_summary();
}
