/* compute.c: the compute backend registry, the selection (one process-wide backend, "auto"
 * by default: the highest probe score on this machine), the matmul dispatch the model calls,
 * and thread control. Backends plug in as static const th_compute_ops tables (compute.h),
 * listed in the registry below; nothing here knows what any backend is. */
#include "model/compute.h"

#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thermo/model.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* The registry, in order of preference on equal scores. With "auto" this picks avx512 where
 * the CPU has it: as fast as OpenBLAS within a few percent on every GPT-2 shape, faster for
 * decode, and bit-identical for any thread count, so a thread cap never changes what is
 * learned (dev/matmul/README.md); else avx2 (score 250, listed last but above blas's 200) on
 * AVX2 + FMA CPUs, for the same invariance; else OpenBLAS where built; else naive. */
static const th_compute_ops *const registry[] = {
    &th_compute_avx512_ops,
    &th_compute_blas_ops,
    &th_compute_naive_ops,
    &th_compute_avx2_ops,
};
#define N_BACKENDS (sizeof registry / sizeof registry[0])

/* The selected backend; NULL until the first selection or first use ("auto"). Atomic because
 * the model may run on any thread; a race on first use resolves to the same table twice. */
static _Atomic(const th_compute_ops *) current;
static int num_threads = 0; /* 0: not set, use the OpenMP default */

static int score_of(const th_compute_ops *ops) {
    return ops->api_version == TH_COMPUTE_API_VERSION && ops->probe ? ops->probe() : 0;
}

size_t th_compute_count(void) { return N_BACKENDS; }
const char *th_compute_name(size_t i) { return i < N_BACKENDS ? registry[i]->name : NULL; }
int th_compute_probe(size_t i) { return i < N_BACKENDS ? score_of(registry[i]) : 0; }

/* "avx512 0, blas 200, naive 100" into buf */
static void list_known(char *buf, size_t cap) {
    size_t w = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < N_BACKENDS && w < cap; i++) {
        int n = snprintf(buf + w, cap - w, "%s%s %d", i ? ", " : "", registry[i]->name, score_of(registry[i]));
        if (n < 0) break;
        w += (size_t)n;
    }
}

th_status th_compute_select_ops(const th_compute_ops *ops) {
    if (ops->api_version != TH_COMPUTE_API_VERSION)
        return th_fail(TH_ERR_UNSUPPORTED, "compute: backend '%s' has API version %d, expected %d", ops->name,
                       ops->api_version, TH_COMPUTE_API_VERSION);
    if (score_of(ops) <= 0) {
        char known[256];
        list_known(known, sizeof known);
        return th_fail(TH_ERR_UNSUPPORTED, "compute: backend '%s' cannot run here: it needs %s (scores here: %s)",
                       ops->name, ops->needs ? ops->needs : "what this machine lacks", known);
    }
    atomic_store(&current, ops);
    return TH_OK;
}

static const th_compute_ops *best_backend(void) {
    const th_compute_ops *best = &th_compute_naive_ops;
    int best_score = 0;
    for (size_t i = 0; i < N_BACKENDS; i++) {
        int s = score_of(registry[i]);
        if (s > best_score) {
            best_score = s;
            best = registry[i];
        }
    }
    return best;
}

th_status th_compute_select(const char *name) {
    if (!name || strcmp(name, "auto") == 0) {
        atomic_store(&current, best_backend());
        return TH_OK;
    }
    for (size_t i = 0; i < N_BACKENDS; i++)
        if (strcmp(registry[i]->name, name) == 0) return th_compute_select_ops(registry[i]);
    char known[256];
    list_known(known, sizeof known);
    return th_fail(TH_ERR_INVALID, "compute: unknown backend '%s' (known, with scores here: %s)", name, known);
}

const th_compute_ops *th_compute_ops_current(void) {
    const th_compute_ops *ops = atomic_load(&current);
    if (!ops) {
        ops = best_backend();
        atomic_store(&current, ops);
    }
    return ops;
}

const char *th_compute_current(void) { return th_compute_ops_current()->name; }

/* ---------------------------------------------------------------------------------
 * dispatch: the backend's kernel, or the naive one where it has none */

void th_mm_forward(float *out, const float *inp, const float *w, const float *bias, int M, int N, int K) {
    const th_compute_ops *ops = th_compute_ops_current();
    if (M == 1 && ops->gemv) ops->gemv(out, inp, w, bias, N, K);
    else if (ops->mm_forward) ops->mm_forward(out, inp, w, bias, M, N, K);
    else th_mm_forward_naive(out, inp, w, bias, M, N, K);
}

void th_mm_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                    int M, int N, int K) {
    const th_compute_ops *ops = th_compute_ops_current();
    if (ops->mm_backward) ops->mm_backward(dinp, dw, dbias, dout, inp, w, M, N, K);
    else th_mm_backward_naive(dinp, dw, dbias, dout, inp, w, M, N, K);
}

void th_mm_forward_bf16(float *out, const float *inp, const float *w, const float *bias, int M, int N, int K) {
    const th_compute_ops *ops = th_compute_ops_current();
    if (ops->mm_forward_bf16) ops->mm_forward_bf16(out, inp, w, bias, M, N, K);
    else th_mm_forward_naive_bf16(out, inp, w, bias, M, N, K);
}

void th_mm_backward_bf16(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                         const float *w, int M, int N, int K) {
    const th_compute_ops *ops = th_compute_ops_current();
    if (ops->mm_backward_bf16) ops->mm_backward_bf16(dinp, dw, dbias, dout, inp, w, M, N, K);
    else th_mm_backward_naive_bf16(dinp, dw, dbias, dout, inp, w, M, N, K);
}

/* The backward with the outputs in set overwritten: the backend's set kernel where it has
 * one, else the outputs zeroed and the accumulating backward `plain`. */
static void backward_set(th_mm_backward_set_fn kernel,
                         void (*plain)(float *, float *, float *, const float *, const float *, const float *, int,
                                       int, int),
                         float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                         int M, int N, int K, int set) {
    if (kernel) {
        kernel(dinp, dw, dbias, dout, inp, w, M, N, K, set);
        return;
    }
    if ((set & TH_MM_SET_DINP) && dinp) memset(dinp, 0, sizeof(float) * (size_t)M * K);
    if ((set & TH_MM_SET_DW) && dw) memset(dw, 0, sizeof(float) * (size_t)N * K);
    if ((set & TH_MM_SET_DW) && dbias) memset(dbias, 0, sizeof(float) * (size_t)N);
    plain(dinp, dw, dbias, dout, inp, w, M, N, K);
}

void th_mm_backward_set(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                        int M, int N, int K, int set) {
    backward_set(th_compute_ops_current()->mm_backward_set, th_mm_backward, dinp, dw, dbias, dout, inp, w, M, N, K,
                 set);
}

void th_mm_backward_set_bf16(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                             const float *w, int M, int N, int K, int set) {
    backward_set(th_compute_ops_current()->mm_backward_set_bf16, th_mm_backward_bf16, dinp, dw, dbias, dout, inp, w,
                 M, N, K, set);
}

/* ---------------------------------------------------------------------------------
 * threads */

/* Pins OpenMP thread i to the i-th CPU this process may use, unless the user chose a
 * binding with OMP_PROC_BIND. Measured on a 2-vCPU VM: unpinned, a woken worker often lands
 * on the CPU the main thread spins on, and a short parallel section takes 5-8 ms instead of
 * ~5 us (dev/matmul/README.md). */
static void pin_threads(void) {
#ifdef _OPENMP
    if (getenv("OMP_PROC_BIND")) return;
    // The CPUs the process may use, read once: after the first pinning the main thread's own
    // mask is a single CPU, and threads that OpenMP creates later inherit it until pinned.
    static int cpus[CPU_SETSIZE], n = -1;
    if (n < 0) {
        cpu_set_t allowed;
        n = 0;
        if (sched_getaffinity(0, sizeof allowed, &allowed) == 0)
            for (int c = 0; c < CPU_SETSIZE; c++)
                if (CPU_ISSET(c, &allowed)) cpus[n++] = c;
    }
    if (n < 2) return;
#pragma omp parallel
    {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpus[omp_get_thread_num() % n], &one);
        sched_setaffinity(0, sizeof one, &one); // 0: the calling thread
    }
#endif
}

void th_threads_set(int n) {
    if (n < 1) n = 1;
    num_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
    pin_threads();
#endif
    for (size_t i = 0; i < N_BACKENDS; i++)
        if (registry[i]->set_threads) registry[i]->set_threads(n);
}

int th_threads_get(void) {
    if (num_threads > 0) return num_threads;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
