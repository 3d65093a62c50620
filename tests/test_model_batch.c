/* test_model_batch.c: batched decoding (th_gpt2_infer_batch). Batch invariance: a row's
 * logits are bit-identical alone, in any batch, at any position in it and at any thread
 * count; with the naive backend they equal th_gpt2_infer's decode step bit for bit; bad
 * calls fail before any cache changes. */
#include "test_util.h"

#define ROWS 5
#define STEPS 5

static const int prompts[ROWS][3] = {{1, 2, 3}, {7}, {4, 4}, {9, 8, 7}, {11}};
static const int plen[ROWS] = {3, 1, 2, 3, 1};

/* Prefills row r's cache with its prompt through th_gpt2_infer. */
static th_gpt2_kv *prefilled(th_gpt2 *m, int r) {
    th_gpt2_kv *kv = NULL;
    float logits[64];
    if (th_gpt2_kv_create(m, 8, &kv) != TH_OK || th_gpt2_infer(m, kv, prompts[r], plen[r], logits, 0) != TH_OK) {
        fprintf(stderr, "FAIL prefill: %s\n", th_last_error());
        exit(1);
    }
    return kv;
}

/* Decodes rows[0..n) together for STEPS steps (row r feeds token 3 + r + step); writes each
 * row's logits per step to out[r][step]. */
static int decode(th_gpt2 *m, const int *rows, int n, float out[ROWS][STEPS][64]) {
    th_gpt2_batch *b = NULL;
    th_gpt2_kv *kvs[ROWS];
    float logits[ROWS * 64];
    int toks[ROWS], ok = th_gpt2_batch_create(m, ROWS, &b) == TH_OK;
    for (int i = 0; i < n; i++) kvs[i] = prefilled(m, rows[i]);
    for (int s = 0; ok && s < STEPS; s++) {
        for (int i = 0; i < n; i++) toks[i] = 3 + rows[i] + s;
        ok = th_gpt2_infer_batch(m, b, kvs, toks, n, logits) == TH_OK;
        for (int i = 0; ok && i < n; i++) memcpy(out[rows[i]][s], logits + i * 50, 50 * sizeof(float));
    }
    for (int i = 0; i < n; i++) th_gpt2_kv_free(kvs[i]);
    th_gpt2_batch_free(b);
    return ok;
}

static float alone[ROWS][STEPS][64], together[ROWS][STEPS][64], ref[ROWS][STEPS][64];

static int same_rows(float a[ROWS][STEPS][64], float b[ROWS][STEPS][64], int r) {
    return memcmp(a[r], b[r], sizeof a[r]) == 0;
}

static void invariance(th_gpt2 *m, const char *backend) {
    for (int r = 0; r < ROWS; r++) {
        int one[1] = {r};
        CHECK(decode(m, one, 1, alone), "%s: row %d alone", backend, r);
    }
    int all[ROWS] = {4, 2, 0, 3, 1}; /* shuffled: a row's place in the batch must not matter */
    CHECK(decode(m, all, ROWS, together), "%s: all rows", backend);
    for (int r = 0; r < ROWS; r++)
        CHECK(same_rows(alone, together, r), "%s: row %d differs alone and in a batch of %d", backend, r, ROWS);
    int pair[2] = {3, 1};
    th_threads_set(1);
    CHECK(decode(m, pair, 2, together), "%s: pair, 1 thread", backend);
    th_threads_set(2);
    CHECK(same_rows(alone, together, 3) && same_rows(alone, together, 1),
          "%s: rows differ in a pair on 1 thread", backend);
}

int main(void) {
    th_gpt2 *m = tiny_model(21);
    th_threads_set(2);

    CHECK(th_compute_select("naive") == TH_OK, "select naive");
    invariance(m, "naive");
    /* the naive backend's th_gpt2_infer decode step is the same sums */
    for (int r = 0; r < ROWS; r++) {
        th_gpt2_kv *kv = prefilled(m, r);
        for (int s = 0; s < STEPS; s++) {
            int t = 3 + r + s;
            CHECK(th_gpt2_infer(m, kv, &t, 1, ref[r][s], 0) == TH_OK, "infer");
        }
        th_gpt2_kv_free(kv);
        CHECK(same_rows(alone, ref, r), "row %d: batched decode differs from th_gpt2_infer (naive)", r);
    }
    CHECK(th_compute_select(NULL) == TH_OK, "select auto");
    invariance(m, th_compute_current());

    /* bad calls change nothing */
    th_gpt2_batch *b = NULL;
    CHECK_FAIL(th_gpt2_batch_create(m, 0, &b), TH_ERR_INVALID, "max_rows", "0 rows");
    CHECK(th_gpt2_batch_create(m, 2, &b) == TH_OK, "create");
    th_gpt2_kv *kvs[3] = {prefilled(m, 0), prefilled(m, 1), NULL};
    kvs[2] = kvs[0];
    float logits[3 * 64];
    int toks[3] = {1, 2, 3};
    CHECK_FAIL(th_gpt2_infer_batch(m, b, kvs, toks, 3, logits), TH_ERR_INVALID, "[1, 2]", "too many rows");
    toks[1] = 50;
    CHECK_FAIL(th_gpt2_infer_batch(m, b, kvs, toks, 2, logits), TH_ERR_INVALID, "row 1: token 50", "token range");
    CHECK(th_gpt2_kv_len(kvs[0]) == 3 && th_gpt2_kv_len(kvs[1]) == 1, "a failed step appended nothing");
    th_gpt2_kv *dup[2] = {kvs[0], kvs[0]};
    toks[1] = 2;
    CHECK_FAIL(th_gpt2_infer_batch(m, b, dup, toks, 2, logits), TH_ERR_INVALID, "share", "shared cache");
    for (int s = 0; s < 5; s++) CHECK(th_gpt2_infer_batch(m, b, kvs, toks, 1, logits) == TH_OK, "fill");
    CHECK_FAIL(th_gpt2_infer_batch(m, b, kvs, toks, 1, logits), TH_ERR_INVALID, "full", "full cache");
    th_gpt2_kv_free(kvs[0]);
    th_gpt2_kv_free(kvs[1]);
    th_gpt2_batch_free(b);
    th_gpt2_free(m);
    return test_summary();
}
