/* ceilings.c: the machine's read bandwidth and fp32 FMA peak, measured in the same run as a
 * benchmark so that its speeds are stated as shares of them (th_ceilings_measure). The FMA
 * loops are chosen by cpuid at run time, never by the compiler's flags. */
#include <string.h>
#include <unistd.h>

#include <immintrin.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "thermo/core.h"

#define FMA_ITERS 4000000L /* per thread: ~0.1 s at a few GHz */

/* Streams over buf once; integer sums keep the compiler free to vectorize (no rounding). */
static uint64_t read_pass(const uint64_t *buf, size_t n, int threads) {
    uint64_t total = 0;
#pragma omp parallel for num_threads(threads) schedule(static) reduction(+ : total)
    for (size_t i = 0; i < n; i += 8) {
        total += buf[i] + buf[i + 1] + buf[i + 2] + buf[i + 3] + buf[i + 4] + buf[i + 5] + buf[i + 6] +
                 buf[i + 7];
    }
    return total;
}

/* Twelve independent chains (Zen and Intel cores have two FMA pipes of latency 4-5). */
__attribute__((target("avx2,fma"))) static float fma_avx2(long iters) {
    __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    __m256 c[12];
    for (int i = 0; i < 12; i++) c[i] = _mm256_set1_ps((float)i);
    for (long k = 0; k < iters; k++)
        for (int i = 0; i < 12; i++) c[i] = _mm256_fmadd_ps(c[i], a, b);
    __m256 s = c[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, c[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0];
}

__attribute__((target("avx512f"))) static float fma_avx512(long iters) {
    __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    __m512 c[16];
    for (int i = 0; i < 16; i++) c[i] = _mm512_set1_ps((float)i);
    for (long k = 0; k < iters; k++)
        for (int i = 0; i < 16; i++) c[i] = _mm512_fmadd_ps(c[i], a, b);
    __m512 s = c[0];
    for (int i = 1; i < 16; i++) s = _mm512_add_ps(s, c[i]);
    return _mm512_reduce_add_ps(s);
}

static float fma_scalar(long iters) {
    float c[8];
    for (int i = 0; i < 8; i++) c[i] = (float)i;
    for (long k = 0; k < iters; k++)
        for (int i = 0; i < 8; i++) c[i] = c[i] * 0.999999f + 1e-7f;
    return c[0] + c[1] + c[2] + c[3] + c[4] + c[5] + c[6] + c[7];
}

static volatile float sink;

th_status th_ceilings_measure(int threads, th_ceilings *out) {
    memset(out, 0, sizeof *out);
    if (threads < 1) return th_fail(TH_ERR_INVALID, "ceilings: threads %d must be at least 1", threads);
    out->threads = threads;

    long llc = sysconf(_SC_LEVEL3_CACHE_SIZE);
    size_t bytes = (size_t)512 << 20;
    if (llc > 0 && (size_t)llc * 4 > bytes) bytes = (size_t)llc * 4;
    size_t n = bytes / sizeof(uint64_t) / 8 * 8;
    uint64_t *buf = th_alloc(n * sizeof(uint64_t));
    if (!buf) return th_fail(TH_ERR_NOMEM, "ceilings: out of memory for a %zu MiB read buffer", bytes >> 20);
    out->buffer_bytes = n * sizeof(uint64_t);
#pragma omp parallel for num_threads(threads) schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = i; // first touch by the threads that read it
    double best_s = 0;
    for (int pass = 0; pass < 4; pass++) { // the first pass warms the page tables
        uint64_t t0 = th_now_ns();
        sink = (float)read_pass(buf, n, threads);
        double s = (th_now_ns() - t0) / 1e9;
        if (pass > 0 && (best_s == 0 || s < best_s)) best_s = s;
    }
    th_free(buf);
    out->read_gb_s = out->buffer_bytes / best_s / 1e9;

    int lanes, chains;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        strcpy(out->isa, "avx512f");
        lanes = 16, chains = 16;
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        strcpy(out->isa, "avx2+fma");
        lanes = 8, chains = 12;
    } else {
        strcpy(out->isa, "scalar");
        lanes = 1, chains = 8;
    }
    best_s = 0;
    for (int pass = 0; pass < 3; pass++) {
        uint64_t t0 = th_now_ns();
#pragma omp parallel num_threads(threads)
        {
            float r = lanes == 16 ? fma_avx512(FMA_ITERS) : lanes == 8 ? fma_avx2(FMA_ITERS) : fma_scalar(FMA_ITERS);
            sink = r;
        }
        double s = (th_now_ns() - t0) / 1e9;
        if (best_s == 0 || s < best_s) best_s = s;
    }
    out->fma_gflop_s = 2.0 * lanes * chains * (double)FMA_ITERS * threads / best_s / 1e9;
    return TH_OK;
}
