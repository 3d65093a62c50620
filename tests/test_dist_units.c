/* test_dist_units.c: the two pure parts data-parallel training rests on, without MPI (issue
 * 20): the thermal plan (micro-batches by rank speed, summing to the step's set, optimal,
 * deterministic) and the int64 fixed-point accumulator (any order and any split among
 * ranks gives the same bits, where a float sum would not). */
#include <stdint.h>

#include "test_util.h"
#include "thermo/dist.h"

static uint64_t rng = 88172645463325252ull;
static uint64_t next_u64(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}
static double uniform(void) { return (double)(next_u64() >> 11) / 9007199254740992.0; }

/* The best makespan over every split of G among N ranks (each >= 1), by enumeration. */
static double best_time(int G, int N, const double *t, int *c, int r) {
    if (r == N - 1) {
        c[r] = G;
        return G >= 1 ? th_dp_plan_time_s(N, t, c) : INFINITY;
    }
    double best = INFINITY;
    for (int k = 1; k <= G - (N - 1 - r); k++) {
        c[r] = k;
        double v = best_time(G - k, N, t, c, r + 1);
        if (v < best) best = v;
    }
    return best;
}

static void test_plan(void) {
    int c[TH_DP_MAX_RANKS];
    th_dp_plan(8, 2, (const double[]){0.1, 0.1}, c);
    CHECK(c[0] == 4 && c[1] == 4, "equal speeds split evenly: %d,%d", c[0], c[1]);
    th_dp_plan(9, 2, (const double[]){0.1, 0.1}, c);
    CHECK(c[0] == 5 && c[1] == 4, "a tie goes to the lower rank: %d,%d", c[0], c[1]);
    th_dp_plan(12, 2, (const double[]){1.0, 2.0}, c);
    CHECK(c[0] == 8 && c[1] == 4, "a rank twice as slow gets half as many: %d,%d", c[0], c[1]);
    th_dp_plan(16, 2, (const double[]){0.045, 0.063}, c); // a throttled rank at duty ~0.7
    CHECK(c[0] == 9 && c[1] == 7, "the throttled rank gets fewer: %d,%d", c[0], c[1]);
    th_dp_plan(6, 3, (const double[]){1.0, 1000.0, 1.0}, c);
    CHECK(c[0] == 3 && c[1] == 1 && c[2] == 2, "even a very slow rank keeps one: %d,%d,%d", c[0], c[1], c[2]);
    th_dp_plan(8, 2, (const double[]){0.1, NAN}, c);
    CHECK(c[0] == 4 && c[1] == 4, "no estimate (NaN): the static split");
    th_dp_plan(9, 3, (const double[]){0.1, 0.0, 0.1}, c);
    CHECK(c[0] == 3 && c[1] == 3 && c[2] == 3, "no estimate (0): the static split");
    CHECK(th_dp_plan_time_s(2, (const double[]){0.5, 2.0}, (const int[]){3, 1}) == 2.0, "plan time is the slowest rank's");

    // random speeds: counts sum to G, each >= 1, faster ranks never get fewer, the plan is
    // optimal, and the same inputs give the same plan (inputs untouched)
    int ok_sum = 1, ok_mono = 1, ok_best = 1, ok_same = 1;
    for (int trial = 0; trial < 400; trial++) {
        int N = 2 + (int)(next_u64() % 2), G = N + (int)(next_u64() % 9);
        double t[3], t_copy[3];
        for (int r = 0; r < N; r++) t[r] = t_copy[r] = 0.01 + uniform();
        int a[3], b[3];
        th_dp_plan(G, N, t, a);
        th_dp_plan(G, N, t, b);
        int total = 0;
        for (int r = 0; r < N; r++) {
            total += a[r];
            ok_sum &= a[r] >= 1;
            ok_same &= a[r] == b[r] && t[r] == t_copy[r];
            for (int s = 0; s < N; s++) ok_mono &= !(t[r] < t[s] && a[r] < a[s]);
        }
        ok_sum &= total == G;
        int tmp[3];
        double best = best_time(G, N, t, tmp, 0);
        ok_best &= th_dp_plan_time_s(N, t, a) <= best * (1 + 1e-12);
    }
    CHECK(ok_sum, "every plan covers the step's G micro-batches, at least one per rank");
    CHECK(ok_mono, "a faster rank never gets fewer micro-batches than a slower one");
    CHECK(ok_best, "the greedy plan's step time is the best of all splits");
    CHECK(ok_same, "the same speeds give the same plan");
}

enum { N_PAR = 4096, G = 8 };
static float grads[G][N_PAR];

/* Micro-batch gradients over a wide range of magnitudes (2^-30 .. 2^4), both signs. */
static void make_grads(void) {
    for (int k = 0; k < G; k++)
        for (int i = 0; i < N_PAR; i++) {
            double mag = ldexp(1.0 + uniform(), -30 + (int)(next_u64() % 35));
            grads[k][i] = (float)((next_u64() & 1) ? mag : -mag);
        }
}

static void shuffle(int *p, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(next_u64() % (uint64_t)(i + 1)), x = p[i];
        p[i] = p[j], p[j] = x;
    }
}

static void test_accumulator(void) {
    make_grads();
    static int64_t ref[N_PAR], acc[N_PAR], part[3][N_PAR];
    static float g_ref[N_PAR], g[N_PAR];
    memset(ref, 0, sizeof ref);
    int bad = 0;
    for (int k = 0; k < G; k++) bad |= th_dp_fixed_add(ref, grads[k], N_PAR, G);
    CHECK(!bad, "in-range gradients are accepted");
    th_dp_fixed_get(ref, g_ref, N_PAR);

    // any order of the micro-batches: the same integers, the same floats
    int same_int = 1, same_float = 1, float_sum_differs = 0;
    for (int trial = 0; trial < 30; trial++) {
        int order[G];
        for (int k = 0; k < G; k++) order[k] = k;
        shuffle(order, G);
        memset(acc, 0, sizeof acc);
        for (int k = 0; k < G; k++) th_dp_fixed_add(acc, grads[order[k]], N_PAR, G);
        th_dp_fixed_get(acc, g, N_PAR);
        same_int &= memcmp(acc, ref, sizeof acc) == 0;
        same_float &= memcmp(g, g_ref, sizeof g) == 0;
        // the same order summed in float, against index order: float addition is not associative
        for (int i = 0; i < N_PAR && !float_sum_differs; i++) {
            float a = 0, b = 0;
            for (int k = 0; k < G; k++) a += grads[k][i], b += grads[order[k]][i];
            float_sum_differs = memcmp(&a, &b, sizeof a) != 0;
        }
    }
    CHECK(same_int && same_float, "permuted micro-batch order: identical integers and gradient bits");
    CHECK(float_sum_differs, "the same permutations summed in float differ (the inputs are order-sensitive)");

    // any split among 2 or 3 ranks (as the plan makes them), each rank in its own order,
    // the ranks' sums added in any order (what MPI_Allreduce may do)
    int same_split = 1;
    for (int trial = 0; trial < 30; trial++) {
        int N = 2 + trial % 2, counts[3];
        double t[3];
        for (int r = 0; r < N; r++) t[r] = 0.01 + uniform();
        th_dp_plan(G, N, t, counts);
        memset(part, 0, sizeof part);
        for (int r = 0, first = 0; r < N; first += counts[r], r++) {
            int order[G];
            for (int k = 0; k < counts[r]; k++) order[k] = first + k;
            shuffle(order, counts[r]);
            for (int k = 0; k < counts[r]; k++) th_dp_fixed_add(part[r], grads[order[k]], N_PAR, G);
        }
        int ranks[3] = {0, 1, 2};
        shuffle(ranks, N);
        memset(acc, 0, sizeof acc);
        for (int r = 0; r < N; r++)
            for (int i = 0; i < N_PAR; i++) acc[i] += part[ranks[r]][i];
        same_split &= memcmp(acc, ref, sizeof acc) == 0;
    }
    CHECK(same_split, "any assignment to 2 or 3 ranks, reduced in any order: identical integers");

    // the scale is exact for a power of two; what cannot be summed safely is refused
    int64_t one = 0;
    CHECK(th_dp_fixed_add(&one, (const float[]){0.5f}, 1, G) == 0 && one == (int64_t)1 << (TH_DP_FIXED_SHIFT - 1),
          "0.5 is 2^(SHIFT-1) exactly");
    int64_t two[2] = {7, 7};
    float huge = (float)ldexp(1.0, 62 - TH_DP_FIXED_SHIFT) / G;
    CHECK(th_dp_fixed_add(two, (const float[]){NAN, huge}, 2, G) == 1 && two[0] == 7 && two[1] == 7,
          "NaN and |g| >= 2^(62-SHIFT)/G are refused and leave the sum as it was");
}

/* The same through the context (one process, TH_DP_LOCAL): micro-batches added in any order
 * give the same gradient bits and the same loss sum. */
static void test_context(void) {
    th_gpt2_config cfg;
    th_gpt2_config_preset("tiny", &cfg);
    th_gpt2 *m = NULL;
    CHECK(th_gpt2_create(&cfg, &m) == TH_OK, "tiny model");
    if (!m) return;
    th_gpt2_init_random(m, 3);
    CHECK(th_gpt2_zero_grad(m) == TH_OK, "gradients allocated");
    size_t n = th_gpt2_num_params(&cfg);
    float *ref = malloc(n * sizeof(float));
    th_dp_config c = th_dp_config_default();
    th_dp *d = NULL;
    CHECK(th_dp_init(NULL, NULL, &c, &d) == TH_OK && th_dp_size(d) == 1, "a local context");
    CHECK(d && th_dp_train_begin(d, m, G, 42) == TH_OK, "train begin");
    int all_mine = 1, same = 1;
    double loss_ref = 0;
    for (int trial = 0; d && ref && trial < 4; trial++) {
        int order[G], stop = 0;
        for (int k = 0; k < G; k++) order[k] = k;
        if (trial) shuffle(order, G);
        CHECK(th_dp_step_begin(d, trial, 0, &stop) == TH_OK && !stop, "step begin");
        for (int k = 0; k < G; k++) all_mine &= th_dp_mine(d, k);
        for (int k = 0; k < G; k++) {
            float *g = th_gpt2_grads(m);
            for (size_t i = 0; i < n; i++) g[i] = grads[order[k]][i % N_PAR] * (1.0f + (float)(i / N_PAR));
            th_dp_micro_add(d, m, order[k], 0.1f * (float)order[k] + 1.0f / 3.0f);
        }
        double loss = 0;
        CHECK(th_dp_step_end(d, m, &loss) == TH_OK, "step end");
        if (!trial) memcpy(ref, th_gpt2_grads(m), n * sizeof(float)), loss_ref = loss;
        else same &= memcmp(ref, th_gpt2_grads(m), n * sizeof(float)) == 0 && loss == loss_ref;
    }
    CHECK(all_mine, "one process computes every micro-batch of the step");
    CHECK(same, "micro-batches added in another order: the same gradient bits and loss sum");
    th_dp_summary sm;
    if (d) th_dp_get_summary(d, &sm);
    CHECK(d && sm.steps == 4 && !sm.wait_idle, "the summary counts the steps (no idle waits without MPI)");
    th_dp_finish(d, TH_OK);
    free(ref);
    th_gpt2_free(m);
}

int main(void) {
    test_plan();
    test_accumulator();
    test_context();
    return test_summary();
}
