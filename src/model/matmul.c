/* matmul.c: the linear-layer matmuls, the choice of backend, and thread control. The naive
 * loops are the oracle and the fallback. "auto" picks the hand-written AVX-512 kernels when the
 * CPU has them: as fast as OpenBLAS within a few percent on every GPT-2 shape, faster for
 * decode, and bit-identical for any thread count, so a thread cap never changes what is
 * learned (dev/matmul/README.md has the measurements). Else OpenBLAS, else naive. */
#include "model/matmul.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "model/matmul_avx512.h"

#include "thermo/model.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef THERMO_HAVE_BLAS
#include <cblas.h>
#endif

static th_matmul_backend backend = TH_MATMUL_AUTO;
static int num_threads = 0; /* 0: not set, use the OpenMP default */

/* ---------------------------------------------------------------------------------
 * naive: one output element per loop iteration, summed in order over K */

void th_mm_forward_naive(float *out, const float *inp, const float *w, const float *bias, int M,
                         int N, int K) {
    // out (M,N) = inp (M,K) · w (N,K)ᵀ + bias (N)
#pragma omp parallel for collapse(2) schedule(static)
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)m * K;
            const float *wr = w + (size_t)n * K;
            float acc = bias ? bias[n] : 0.0f;
            for (int k = 0; k < K; k++) acc += x[k] * wr[k];
            out[(size_t)m * N + n] = acc;
        }
    }
}

void th_mm_backward_naive(float *dinp, float *dw, float *dbias, const float *dout,
                          const float *inp, const float *w, int M, int N, int K) {
    // dinp (M,K) += dout (M,N) · w (N,K)
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *d = dout + (size_t)m * N;
        float *dx = dinp + (size_t)m * K;
        for (int n = 0; n < N; n++) {
            const float *wr = w + (size_t)n * K;
            float dn = d[n];
            for (int k = 0; k < K; k++) dx[k] += dn * wr[k];
        }
    }
    // dw (N,K) += dout (M,N)ᵀ · inp (M,K); dbias (N) += Σ_m dout
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        float *dwr = dw + (size_t)n * K;
        float db = 0.0f;
        for (int m = 0; m < M; m++) {
            float dn = dout[(size_t)m * N + n];
            const float *x = inp + (size_t)m * K;
            for (int k = 0; k < K; k++) dwr[k] += dn * x[k];
            db += dn;
        }
        if (dbias) dbias[n] += db;
    }
}

/* ---------------------------------------------------------------------------------
 * BLAS */

#ifdef THERMO_HAVE_BLAS
static void bias_colsum(float *dbias, const float *dout, int M, int N) {
#pragma omp parallel for schedule(static)
    for (int n0 = 0; n0 < N; n0 += 64) {
        int n1 = n0 + 64 < N ? n0 + 64 : N;
        for (int m = 0; m < M; m++) {
            const float *d = dout + (size_t)m * N;
            for (int n = n0; n < n1; n++) dbias[n] += d[n];
        }
    }
}

static void mm_forward_blas(float *out, const float *inp, const float *w, const float *bias, int M,
                            int N, int K) {
    if (M == 1) {
        if (bias) memcpy(out, bias, sizeof(float) * (size_t)N);
        cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, w, K, inp, 1, bias ? 1.0f : 0.0f, out, 1);
        return;
    }
    if (bias) {
#pragma omp parallel for schedule(static)
        for (int m = 0; m < M; m++) memcpy(out + (size_t)m * N, bias, sizeof(float) * (size_t)N);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, inp, K, w, K,
                bias ? 1.0f : 0.0f, out, N);
}

static void mm_backward_blas(float *dinp, float *dw, float *dbias, const float *dout,
                             const float *inp, const float *w, int M, int N, int K) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dout, N, w, K, 1.0f, dinp, K);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, dout, N, inp, K, 1.0f, dw, K);
    if (dbias) bias_colsum(dbias, dout, M, N);
}
#endif

/* ---------------------------------------------------------------------------------
 * dispatch */

static th_matmul_backend resolved(void) {
    if (backend != TH_MATMUL_AUTO) return backend;
    if (th_mm_avx512_available()) return TH_MATMUL_AVX512;
#ifdef THERMO_HAVE_BLAS
    return TH_MATMUL_BLAS;
#else
    return TH_MATMUL_NAIVE;
#endif
}

void th_mm_forward(float *out, const float *inp, const float *w, const float *bias, int M, int N,
                   int K) {
    switch (resolved()) {
    case TH_MATMUL_AVX512:
        if (M == 1) th_mm_avx512_gemv(out, inp, w, bias, N, K);
        else th_mm_avx512_forward(out, inp, w, bias, M, N, K);
        return;
#ifdef THERMO_HAVE_BLAS
    case TH_MATMUL_BLAS: mm_forward_blas(out, inp, w, bias, M, N, K); return;
#endif
    default: th_mm_forward_naive(out, inp, w, bias, M, N, K); return;
    }
}

void th_mm_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                    const float *w, int M, int N, int K) {
    switch (resolved()) {
    case TH_MATMUL_AVX512: th_mm_avx512_backward(dinp, dw, dbias, dout, inp, w, M, N, K); return;
#ifdef THERMO_HAVE_BLAS
    case TH_MATMUL_BLAS: mm_backward_blas(dinp, dw, dbias, dout, inp, w, M, N, K); return;
#endif
    default: th_mm_backward_naive(dinp, dw, dbias, dout, inp, w, M, N, K); return;
    }
}

th_status th_matmul_set_backend(th_matmul_backend b) {
    switch (b) {
    case TH_MATMUL_AUTO:
    case TH_MATMUL_NAIVE: break;
    case TH_MATMUL_BLAS:
#ifndef THERMO_HAVE_BLAS
        return th_fail(TH_ERR_UNSUPPORTED, "matmul backend blas: this build has no OpenBLAS (THERMO_BLAS=OFF)");
#endif
        break;
    case TH_MATMUL_AVX512:
        if (!th_mm_avx512_available())
            return th_fail(TH_ERR_UNSUPPORTED, "matmul backend avx512: this build or this CPU has no AVX-512");
        break;
    default:
        return th_fail(TH_ERR_UNSUPPORTED, "matmul backend %d is unknown", (int)b);
    }
    backend = b;
    return TH_OK;
}

th_matmul_backend th_matmul_get_backend(void) { return resolved(); }

const char *th_matmul_backend_name(th_matmul_backend b) {
    switch (b) {
    case TH_MATMUL_AUTO: return "auto";
    case TH_MATMUL_NAIVE: return "naive";
    case TH_MATMUL_BLAS: return "blas";
    case TH_MATMUL_AVX512: return "avx512";
    }
    return "unknown";
}

/* ---------------------------------------------------------------------------------
 * threads */

#ifdef THERMO_HAVE_BLAS
void openblas_set_num_threads(int n);
#endif

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
#ifdef THERMO_HAVE_BLAS
    openblas_set_num_threads(n);
#endif
}

int th_threads_get(void) {
    if (num_threads > 0) return num_threads;
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
