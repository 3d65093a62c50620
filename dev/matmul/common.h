/* common.h: shared helpers of the matmul kernel lab (timing, buffers, checking, threads).
 * Header-only on purpose: every lab program is one .c file plus this, built with plain gcc. */
#ifndef THERMO_DEV_MATMUL_COMMON_H
#define THERMO_DEV_MATMUL_COMMON_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cblas.h>
#include <omp.h>

void openblas_set_num_threads(int num_threads); /* OpenBLAS extension, not in every cblas.h */

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Both our OpenMP loops and OpenBLAS (OpenMP flavour) follow this. */
static inline void set_threads(int nt)
{
    omp_set_num_threads(nt);
    openblas_set_num_threads(nt);
}

static inline void *xmalloc(size_t bytes)
{
    void *p = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static unsigned long long lab_rng = 0x9E3779B97F4A7C15ull;
static inline float rand_uniform(void) /* in [-1, 1) */
{
    lab_rng ^= lab_rng << 13;
    lab_rng ^= lab_rng >> 7;
    lab_rng ^= lab_rng << 17;
    return (float)((lab_rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static inline float *rand_array(size_t n)
{
    float *p = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = rand_uniform();
    return p;
}

/* Best (minimum) of `reps` timed runs after one warm-up run; fn(ctx) does one call. The
 * minimum, not the median: this 2-core VM is shared with other jobs, and interference only
 * ever adds time. Also returns the median through *median if non-NULL. */
static inline double time_best(void (*fn)(void *), void *ctx, int reps, double *median)
{
    double t[64];
    if (reps > 64) reps = 64;
    if (reps < 1) reps = 1;
    fn(ctx);
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        fn(ctx);
        t[r] = now_s() - t0;
    }
    for (int i = 1; i < reps; i++) /* insertion sort */
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) {
            double x = t[j];
            t[j] = t[j - 1];
            t[j - 1] = x;
        }
    if (median) *median = t[reps / 2];
    return t[0];
}

/* The 1-minute load average, printed with every table: above ~0.5 before a run means another
 * job shares the two cores and the figures are suspect. */
static inline double load_avg(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

/* The tolerance of every check: a float sum of K products differs from the exact sum by
 * at most ~K·eps·Σ|aᵢbᵢ| in the worst case and ~√K·eps·Σ|aᵢbᵢ| typically; we accept
 * |got - exact| ≤ TOL_REL · Σ|aᵢbᵢ| + 1e-6, with the exact sum in double. */
#define TOL_REL 1e-5

static inline int check_value(const char *what, long idx, float got, double exact, double abs_sum,
                       double *worst)
{
    double err = fabs((double)got - exact), bound = TOL_REL * abs_sum + 1e-6;
    if (worst && err / bound > *worst) *worst = err / bound;
    if (!(err <= bound)) {
        fprintf(stderr, "MISMATCH %s at %ld: got %.8g exact %.8g (err %.3g > bound %.3g)\n",
                what, idx, got, exact, err, bound);
        return 1;
    }
    return 0;
}

static inline int same_bits(const float *a, const float *b, size_t n)
{
    return memcmp(a, b, n * sizeof(float)) == 0;
}

#endif
