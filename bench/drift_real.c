/* drift_real.c: the drift detector (th_drift) measured on real text, as `thermo learn
 * --watch` runs it: false alarms on held-out text of the training domain and detection and
 * delay of a shift to another domain, under a model the pipeline trained (issue 19).
 *
 * The state's held-out old slice (DIR/data/val.bin: the last 10 % of the corpus) is cut in
 * two halves of windows: the reference is drawn from the first half as the watch draws it
 * from the whole slice (th_learn_drift_reference), and the second half (other books of the
 * KJV when the state was trained on it) gives the same-domain streams: consecutive runs of
 * SAME tokens, each fed to a fresh detector. A shift stream is PRE tokens of one of those
 * streams followed by POST tokens of a shift file (scored in windows of T, as incoming
 * files are); its delay counts from the first shifted token. Every figure is printed for the
 * default rule and for the ones it replaced, from the same NLL values.
 *
 * usage: drift_real DIR SHIFT_FILE... [--same N (1024)] [--pre N (512)] [--post N (512)]
 * e.g.   ./build/thermo train --model small --steps 150 --data .deps/corpus/kjv.txt --out /tmp/drift/base
 *        ./build/drift_real /tmp/drift/base /usr/share/games/fortunes/{fortunes,literature,riddles}
 * Run by hand (minutes on a CPU: it scores ~100 k tokens), not in ctest. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thermo/pipeline.h"

#define MAX_SHIFT 8

typedef struct {
    const char *name;
    th_drift_config cfg;
    int contiguous; /* the reference is the slice's first `reference` tokens (the old draw) */
    double *ref;
} rule;

/* The NLL of ids[1..n) in windows of T, as learn_watch scores a file; *out th_alloc'd. */
static th_status score_ids(th_gpt2 *m, int T, const int *ids, size_t n, double **out, size_t *n_out) {
    *out = th_alloc(sizeof(double) * (n ? n : 1));
    *n_out = 0;
    if (!*out) return th_fail(TH_ERR_NOMEM, "out of memory");
    for (size_t k = 0; k + 1 < n; k += (size_t)T) {
        int len = (int)(n - 1 - k < (size_t)T ? n - 1 - k : (size_t)T);
        float loss = 0;
        th_status st = th_gpt2_forward(m, ids + k, ids + k + 1, 1, len, &loss);
        if (st != TH_OK) return st;
        const float *nll = th_gpt2_losses(m);
        for (int i = 0; i < len; i++) (*out)[(*n_out)++] = nll[i];
    }
    return TH_OK;
}

typedef struct {
    long drifts, streams_alarmed, ph, tests, test_rejects, detected, delay_max, pre_alarms;
    double delay_sum;
} tally;

/* Feeds x[0..n) to a fresh detector; *first the first drift at or after `from` (-1: none). */
static void feed(const rule *r, const double *x, size_t n, size_t from, tally *t, long *first) {
    th_drift *d = NULL;
    *first = -1;
    if (th_drift_create(&r->cfg, &d) != TH_OK || th_drift_set_reference(d, r->ref, r->cfg.reference) != TH_OK) {
        th_drift_free(d);
        return;
    }
    long before = 0;
    for (size_t i = 0; i < n; i++) {
        th_drift_verdict v = th_drift_update(d, x[i]);
        if (i < from) {
            t->drifts += v.drift;
            before += v.drift;
            t->ph += v.ph_alarm;
            t->test_rejects += v.test_alarm;
            t->tests += (i + 1) % r->cfg.window == 0;
        } else if (v.drift && *first < 0) {
            *first = (long)(i - from);
        }
    }
    t->streams_alarmed += before > 0;
    th_drift_free(d);
}

int main(int argc, char **argv) {
    const char *dir = NULL, *shift[MAX_SHIFT];
    int n_shift = 0;
    size_t same_len = 1024, pre = 512, post = 512;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--same") && i + 1 < argc) same_len = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--pre") && i + 1 < argc) pre = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--post") && i + 1 < argc) post = (size_t)atol(argv[++i]);
        else if (!dir) dir = argv[i];
        else if (n_shift < MAX_SHIFT) shift[n_shift++] = argv[i];
    }
    if (!dir || n_shift == 0 || same_len == 0 || post == 0 || pre > same_len) {
        fprintf(stderr, "usage: drift_real DIR SHIFT_FILE... [--same N] [--pre N] [--post N] (pre <= same)\n");
        return 2;
    }
    char path[4200];
    th_gpt2 *m = NULL;
    th_train_state ts;
    th_tokenizer *tok = NULL;
    th_data_loader *val = NULL;
    const int T = 64;
    snprintf(path, sizeof path, "%.4000s/checkpoint.bin", dir);
    if (th_checkpoint_load(path, &m, &ts) != TH_OK) goto fail;
    snprintf(path, sizeof path, "%.4000s/model", dir);
    if (th_tokenizer_load_for_model(path, &tok) != TH_OK) goto fail;
    snprintf(path, sizeof path, "%.4000s/data/val.bin", dir);
    if (th_data_loader_open(path, 1, T, TH_DATA_SEQUENTIAL, 0, &val) != TH_OK) goto fail;
    uint64_t W = th_data_loader_windows(val), half = W / 2;

    rule rules[] = {
        {"block-t, one contiguous reference of 1024, no min rise (before)", th_drift_defaults(), 1, NULL},
        {"block-t, reference 4096 drawn across the slice, min rise 0.25", th_drift_defaults(), 0, NULL},
        {"windows, reference 16 x 256 drawn across the slice, min rise 0", th_drift_defaults(), 0, NULL},
        {"windows, reference 16 x 256 drawn across the slice, min rise 0.25 (default)", th_drift_defaults(), 0, NULL},
    };
    const int n_rules = (int)(sizeof rules / sizeof rules[0]);
    rules[0].cfg.test = TH_DRIFT_TEST_BLOCK_T;
    rules[0].cfg.reference = 1024;
    rules[0].cfg.min_rise_nats = 0;
    rules[1].cfg.test = TH_DRIFT_TEST_BLOCK_T;
    rules[2].cfg.min_rise_nats = 0;
    for (int r = 0; r < n_rules; r++) {
        th_drift_config c = rules[r].cfg;
        if (rules[r].contiguous) c.window = c.reference; // one run at the slice's start
        if (!(rules[r].ref = th_alloc(sizeof(double) * c.reference))) goto fail;
        if (th_learn_drift_reference(m, val, T, 0, half, &c, rules[r].ref) != TH_OK) goto fail;
    }

    // the second half of the slice, scored window by window
    size_t n_same = (size_t)(W - half) * T, k = 0;
    double *same = th_alloc(sizeof(double) * n_same);
    int *row = th_alloc(sizeof(int) * 2 * T);
    if (!same || !row) goto fail;
    th_data_loader_reset(val);
    for (uint64_t w = 0; w < W; w++) {
        float loss = 0;
        th_data_loader_next(val, row, row + T);
        if (w < half) continue;
        if (th_gpt2_forward(m, row, row + T, 1, T, &loss) != TH_OK) goto fail;
        for (int i = 0; i < T; i++) same[k++] = th_gpt2_losses(m)[i];
    }
    double mean_ref[8] = {0}, same_mean = 0;
    for (int r = 0; r < n_rules; r++)
        for (size_t i = 0; i < rules[r].cfg.reference; i++) mean_ref[r] += rules[r].ref[i] / (double)rules[r].cfg.reference;
    for (size_t i = 0; i < n_same; i++) same_mean += same[i] / (double)n_same;
    size_t streams = n_same / same_len;
    printf("state %s: held-out slice of %llu windows of %d tokens. Reference from its first half: mean NLL %.3f "
           "drawn across it, %.3f for its first 1024 tokens; %zu same-domain streams of %zu tokens from its second "
           "half: mean NLL %.3f\n",
           dir, (unsigned long long)W, T, mean_ref[3], mean_ref[0], streams, same_len, same_mean);

    // the shift files, scored as incoming files
    double *sx[MAX_SHIFT];
    size_t sn[MAX_SHIFT];
    for (int f = 0; f < n_shift; f++) {
        char *text = NULL;
        int *ids = NULL;
        size_t len = 0, n = 0;
        if (th_read_file(shift[f], &text, &len) != TH_OK || th_tokenizer_encode(tok, text, len, 0, &ids, &n) != TH_OK)
            goto fail;
        th_free(text);
        th_status st = score_ids(m, T, ids, n, &sx[f], &sn[f]);
        th_free(ids);
        if (st != TH_OK) goto fail;
        double mean = 0;
        for (size_t i = 0; i < sn[f]; i++) mean += sx[f][i] / (double)sn[f];
        printf("shift %s: %zu tokens, mean NLL %.3f\n", shift[f], sn[f], mean);
    }
    double *buf = th_alloc(sizeof(double) * (same_len + pre + post));
    if (!buf) goto fail;
    for (int r = 0; r < n_rules; r++) {
        tally t;
        memset(&t, 0, sizeof t);
        long first;
        for (size_t s = 0; s < streams; s++) feed(&rules[r], same + s * same_len, same_len, same_len, &t, &first);
        printf("\n%s\n  same domain: %.3f false alarms per 1000 tokens (%ld in %zu tokens), %ld of %zu streams "
               "alarm (%.1f %%); Page-Hinkley alarms %.2f per 1000; window tests alone reject %ld of %ld (%.1f %%, "
               "nominal %.0f %%)\n",
               rules[r].name, 1000.0 * (double)t.drifts / (double)(streams * same_len), t.drifts, streams * same_len,
               t.streams_alarmed, streams, 100.0 * (double)t.streams_alarmed / (double)streams,
               1000.0 * (double)t.ph / (double)(streams * same_len), t.test_rejects, t.tests,
               t.tests ? 100.0 * (double)t.test_rejects / (double)t.tests : 0.0, 100 * rules[r].cfg.p_value);
        for (int f = 0; f < n_shift; f++) {
            tally u;
            memset(&u, 0, sizeof u);
            size_t ns = sn[f] / post, runs = 0;
            for (size_t s = 0; s < ns && s < streams; s++, runs++) {
                memcpy(buf, same + s * same_len + (same_len - pre), sizeof(double) * pre);
                memcpy(buf + pre, sx[f] + s * post, sizeof(double) * post);
                feed(&rules[r], buf, pre + post, pre, &u, &first);
                if (first >= 0) {
                    u.detected++;
                    u.delay_sum += (double)first;
                    if (first > u.delay_max) u.delay_max = first;
                }
            }
            printf("  shift to %s after %zu same-domain tokens: detected in %ld of %zu streams (%.1f %%) within %zu "
                   "tokens, delay mean %.0f max %ld tokens; %ld false alarms before the shift\n",
                   shift[f], pre, u.detected, runs, runs ? 100.0 * (double)u.detected / (double)runs : 0.0, post,
                   u.detected ? u.delay_sum / (double)u.detected : NAN, u.detected ? u.delay_max : -1L, u.drifts);
        }
    }
    return 0;
fail:
    fprintf(stderr, "drift_real: %s\n", th_last_error());
    return 3;
}
