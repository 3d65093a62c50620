/* matmul_blas.c: the "blas" compute backend, OpenBLAS sgemm/sgemv. Only in builds with
 * OpenBLAS (THERMO_BLAS=ON); elsewhere it is listed with a probe of 0 and no kernels. Fast,
 * but its sums may round differently for another thread count. */
#include "model/compute.h"

#include <stddef.h>
#include <string.h>

#ifdef THERMO_HAVE_BLAS
#include <cblas.h>

void openblas_set_num_threads(int n);

/* dbias (N) += Σ_m dout (M, N), in blocks of 64 columns so threads write disjoint ranges */
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

static void mm_forward_blas(float *out, const float *inp, const float *w, const float *bias, int M, int N,
                            int K) {
    if (bias) {
#pragma omp parallel for schedule(static)
        for (int m = 0; m < M; m++) memcpy(out + (size_t)m * N, bias, sizeof(float) * (size_t)N);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, inp, K, w, K, bias ? 1.0f : 0.0f, out,
                N);
}

static void mm_backward_blas(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                             const float *w, int M, int N, int K) {
    if (dinp) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, K, N, 1.0f, dout, N, w, K, 1.0f, dinp, K);
    if (dw) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, M, 1.0f, dout, N, inp, K, 1.0f, dw, K);
    if (dbias) bias_colsum(dbias, dout, M, N);
}

static void gemv_blas(float *out, const float *x, const float *w, const float *bias, int N, int K) {
    if (bias) memcpy(out, bias, sizeof(float) * (size_t)N);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, w, K, x, 1, bias ? 1.0f : 0.0f, out, 1);
}

static int probe_blas(void) { return 200; }

const th_compute_ops th_compute_blas_ops = {
    .name = "blas",
    .api_version = TH_COMPUTE_API_VERSION,
    .probe = probe_blas,
    .mm_forward = mm_forward_blas,
    .mm_backward = mm_backward_blas,
    .gemv = gemv_blas,
    .set_threads = openblas_set_num_threads,
};

#else

static int probe_blas(void) { return 0; }

const th_compute_ops th_compute_blas_ops = {
    .name = "blas",
    .api_version = TH_COMPUTE_API_VERSION,
    .probe = probe_blas,
    .needs = "a build with OpenBLAS (THERMO_BLAS=ON)",
};

#endif
