/* matmul_avx512.c: the "avx512" compute backend, hand-written AVX-512 matmuls (see
 * matmul_avx512.h). One packed GEMM C (+)= A·B in the BLIS style (A and B packed into panels,
 * an MR×32 register-blocked micro-kernel, blocking over the reduction in fixed KC steps)
 * serves the forward pass and both backward products through strided views; the decode GEMV
 * is a plain multi-row dot product. Threads split output tiles only, so the reduction order
 * of every element is fixed by MR/KC alone and results do not depend on the thread count.
 * Lab and figures: dev/matmul/.
 *
 * With gcc on x86-64 the kernels are always compiled for AVX-512F (a target pragma when the
 * build's -march lacks it), so one binary carries them; the CPU is asked at run time
 * (probe_avx512), and a CPU without AVX-512F never executes any of it. */
#include "model/matmul_avx512.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/compute.h"
#ifdef _OPENMP
#include <omp.h>
#define OMP_FOR _Pragma("omp parallel for schedule(static)")
#else
#define OMP_FOR /* serial build: no warning about an unknown pragma */
#endif

#if defined(__x86_64__) && (defined(__AVX512F__) || (defined(__GNUC__) && !defined(__clang__)))
#define TH_AVX512_BUILT 1
#endif

#ifdef TH_AVX512_BUILT
#ifndef __AVX512F__
#pragma GCC push_options
#pragma GCC target("avx512f")
#define TH_AVX512_TARGET_PUSHED 1
#endif
#include <immintrin.h>

/* ----------------------------------------------------------------------------------------
 * Plain loops: the fallback when packing buffers cannot be allocated. Each output element is
 * still reduced by one thread in index order. */

static void forward_plain(float *out, const float *inp, const float *w, const float *bias, int M,
                          int N, int K)
{
OMP_FOR
    for (int m = 0; m < M; m++) {
        for (int n = 0; n < N; n++) {
            float s = bias ? bias[n] : 0.0f;
            for (int k = 0; k < K; k++) s += inp[(size_t)m * K + k] * w[(size_t)n * K + k];
            out[(size_t)m * N + n] = s;
        }
    }
}

static void dinp_plain(float *dinp, const float *dout, const float *w, int M, int N, int K)
{
OMP_FOR
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float d = dout[(size_t)m * N + n];
            for (int k = 0; k < K; k++) dinp[(size_t)m * K + k] += d * w[(size_t)n * K + k];
        }
}

static void dw_plain(float *dw, const float *dout, const float *inp, int M, int N, int K)
{
OMP_FOR
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++) {
            float d = dout[(size_t)m * N + n];
            for (int k = 0; k < K; k++) dw[(size_t)n * K + k] += d * inp[(size_t)m * K + k];
        }
}

/* ----------------------------------------------------------------------------------------
 * Blocking. MR×NR is the register tile (MR·2 accumulators of 16 floats); KC is the step of
 * the reduction between two passes through C: it alone (with MR) fixes the summation order.
 * MC×KC of A and KC×NC of B are packed per tile and sit in the 2 MB L2. */

#ifndef TH_MM_AVX512_MR
#define TH_MM_AVX512_MR 12
#endif
#define MR TH_MM_AVX512_MR
#define NR 32
#define KC 256
#define MC_MAX 384
#define NC_MAX 1024

_Static_assert(MR >= 1 && MR <= 14, "MR accumulators must fit the 32 zmm registers");

/* A view of C (m, n) (+)= A (m, p) · B (p, n) over strided operands, so the three products
 * of a linear layer share one driver:
 *   A(i, q) = a[i*rsa + q*csa],  B(q, j) = b[q*rsb + j*csb],  C(i, j) = c[i*ldc + j].
 * init: C = bias + A·B (bias (n) may be NULL); otherwise C += A·B. */
typedef struct {
    const float *a;
    long rsa, csa;
    const float *b;
    long rsb, csb;
    float *c;
    long ldc;
    const float *bias;
    int init;
    int m, n, p;
} gemm_view;

static inline __mmask16 mask_first(int n)
{
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

/* In-register transpose of a 16×16 block: r[i] holds row i on entry, column i on exit. */
static inline void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]);
        __m512d c = _mm512_castps_pd(t[i + 2]), d = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
}

/* dst[q*lds + r] = src[r*ss + q] for r < rows (≤ 16; rows..width-1 are zero), q < len.
 * Stores width (≤ 16) floats per q. */
static void pack_transposed(float *dst, long lds, int width, const float *src, long ss, int rows,
                            int len)
{
    __mmask16 wmask = mask_first(width);
    for (int q0 = 0; q0 < len; q0 += 16) {
        __mmask16 lmask = mask_first(len - q0);
        __m512 r[16];
        for (int i = 0; i < 16; i++)
            r[i] = i < rows ? _mm512_maskz_loadu_ps(lmask, src + i * ss + q0) : _mm512_setzero_ps();
        transpose16(r);
        int qn = len - q0 < 16 ? len - q0 : 16;
        for (int q = 0; q < qn; q++) _mm512_mask_storeu_ps(dst + (long)(q0 + q) * lds, wmask, r[q]);
    }
}

/* Packs A rows [i0, i0+mc) × reduction [q0, q0+kc) as MR-row micro-panels:
 * ap[ir*kc + q*MR + i] = A(i0+ir+i, q0+q), zero past the last row. */
static void pack_a(const gemm_view *g, float *ap, int i0, int mc, int q0, int kc)
{
    for (int ir = 0; ir < mc; ir += MR) {
        int rows = g->m - (i0 + ir) < MR ? g->m - (i0 + ir) : MR;
        float *dst = ap + (long)ir * kc;
        const float *src = g->a + (long)(i0 + ir) * g->rsa + (long)q0 * g->csa;
        if (g->csa == 1) {
            pack_transposed(dst, MR, MR, src, g->rsa, rows, kc);
        } else if (g->rsa == 1) {
            __mmask16 lm = mask_first(rows), sm = mask_first(MR);
            for (int q = 0; q < kc; q++)
                _mm512_mask_storeu_ps(dst + (long)q * MR, sm,
                                      _mm512_maskz_loadu_ps(lm, src + (long)q * g->csa));
        } else {
            for (int q = 0; q < kc; q++)
                for (int i = 0; i < MR; i++)
                    dst[q * MR + i] = i < rows ? src[i * g->rsa + q * g->csa] : 0.0f;
        }
    }
}

/* Packs B reduction [q0, q0+kc) × columns [j0, j0+nc) as 32-column panels:
 * bp[jr*kc + q*NR + j] = B(q0+q, j0+jr+j), zero past the last column. */
static void pack_b(const gemm_view *g, float *bp, int j0, int nc, int q0, int kc)
{
    for (int jr = 0; jr < nc; jr += NR) {
        int cols = g->n - (j0 + jr);
        float *dst = bp + (long)jr * kc;
        const float *src = g->b + (long)q0 * g->rsb + (long)(j0 + jr) * g->csb;
        if (g->csb == 1) {
            __mmask16 m0 = mask_first(cols), m1 = mask_first(cols - 16);
            for (int q = 0; q < kc; q++) {
                const float *s = src + (long)q * g->rsb;
                _mm512_store_ps(dst + q * NR, _mm512_maskz_loadu_ps(m0, s));
                _mm512_store_ps(dst + q * NR + 16, _mm512_maskz_loadu_ps(m1, s + 16));
            }
        } else if (g->rsb == 1) {
            for (int h = 0; h < NR; h += 16) {
                int rows = cols - h < 0 ? 0 : cols - h > 16 ? 16 : cols - h;
                pack_transposed(dst + h, NR, 16, src + h * g->csb, g->csb, rows, kc);
            }
        } else {
            for (int q = 0; q < kc; q++)
                for (int j = 0; j < NR; j++)
                    dst[q * NR + j] = j < cols ? src[q * g->rsb + j * g->csb] : 0.0f;
        }
    }
}

/* The register tile: C (MR, 32) (+)= ap (kc, MR)ᵀ-packed · bp (kc, 32). Full tiles only. */
static inline __attribute__((always_inline)) void kernel(int kc, const float *ap,
                                                         const float *bp, float *c, long ldc,
                                                         int init, const float *bias)
{
    __m512 acc[MR][2];
    if (init) {
        __m512 b0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
        __m512 b1 = bias ? _mm512_loadu_ps(bias + 16) : _mm512_setzero_ps();
        for (int i = 0; i < MR; i++) {
            acc[i][0] = b0;
            acc[i][1] = b1;
        }
    } else {
        for (int i = 0; i < MR; i++) {
            acc[i][0] = _mm512_loadu_ps(c + i * ldc);
            acc[i][1] = _mm512_loadu_ps(c + i * ldc + 16);
        }
    }
    for (int q = 0; q < kc; q++) {
        __m512 b0 = _mm512_load_ps(bp);
        __m512 b1 = _mm512_load_ps(bp + 16);
        for (int i = 0; i < MR; i++) {
            __m512 a = _mm512_set1_ps(ap[i]);
            acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
        }
        ap += MR;
        bp += NR;
    }
    for (int i = 0; i < MR; i++) {
        _mm512_storeu_ps(c + i * ldc, acc[i][0]);
        _mm512_storeu_ps(c + i * ldc + 16, acc[i][1]);
    }
}

/* A tile of mr ≤ MR rows and nr ≤ 32 columns: edge tiles go through a padded copy, which
 * runs the same FMAs in the same order as a full tile would. */
static void tile(int kc, const float *ap, const float *bp, float *c, long ldc, int mr, int nr,
                 int init, const float *bias)
{
    if (mr == MR && nr == NR) {
        kernel(kc, ap, bp, c, ldc, init, bias);
        return;
    }
    float tmp[MR * NR] __attribute__((aligned(64)));
    float btmp[NR] __attribute__((aligned(64)));
    memset(tmp, 0, sizeof tmp);
    memset(btmp, 0, sizeof btmp);
    if (init && bias) memcpy(btmp, bias, (size_t)nr * sizeof(float));
    if (!init)
        for (int i = 0; i < mr; i++) memcpy(tmp + i * NR, c + i * ldc, (size_t)nr * sizeof(float));
    kernel(kc, ap, bp, tmp, NR, init, init && bias ? btmp : NULL);
    for (int i = 0; i < mr; i++) memcpy(c + i * ldc, tmp + i * NR, (size_t)nr * sizeof(float));
}

static int round_up(int x, int m) { return (x + m - 1) / m * m; }

/* C rows [i0, i0+mc) × columns [j0, j0+nc), the whole reduction in KC steps. */
static void gemm_block(const gemm_view *g, float *ap, float *bp, int i0, int mc, int j0, int nc)
{
    for (int q0 = 0; q0 < g->p; q0 += KC) {
        int kc = g->p - q0 < KC ? g->p - q0 : KC;
        int init = g->init && q0 == 0;
        pack_b(g, bp, j0, nc, q0, kc);
        pack_a(g, ap, i0, mc, q0, kc);
        for (int ir = 0; ir < mc; ir += MR) {
            int mr = mc - ir < MR ? mc - ir : MR;
            for (int jr = 0; jr < nc; jr += NR) {
                int nr = nc - jr < NR ? nc - jr : NR;
                const float *bias = init && g->bias ? g->bias + j0 + jr : NULL;
                tile(kc, ap + (long)ir * kc, bp + (long)jr * kc,
                     g->c + (long)(i0 + ir) * g->ldc + j0 + jr, g->ldc, mr, nr, init, bias);
            }
        }
    }
}

/* Runs the view over tiles of C split between threads. The tile sizes follow the thread
 * count (for balance) but never change the order of any element's reduction. Returns 0, or
 * -1 if the packing buffers could not be allocated (nothing was written). */
static int gemm(const gemm_view *g)
{
    if (g->m <= 0 || g->n <= 0) return 0;
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_max_threads();
#endif
    int tm = (g->m + MC_MAX - 1) / MC_MAX;
    int mc = round_up((g->m + tm - 1) / tm, MR);
    tm = (g->m + mc - 1) / mc;
    int tn = (g->n + NC_MAX - 1) / NC_MAX;
    int max_tn = (g->n + NR - 1) / NR;
    while ((tm * tn) % nt != 0 && tn < max_tn) tn++;
    int nc = round_up((g->n + tn - 1) / tn, NR);
    tn = (g->n + nc - 1) / nc;

    size_t a_floats = (size_t)mc * KC, b_floats = (size_t)nc * KC;
    size_t per_thread = a_floats + b_floats;
    float *buf = aligned_alloc(64, per_thread * sizeof(float) * (size_t)nt);
    if (!buf) return -1;

    if (g->p <= 0) { /* empty reduction: C = bias or C unchanged */
        if (g->init)
            for (int i = 0; i < g->m; i++)
                for (int j = 0; j < g->n; j++) g->c[(long)i * g->ldc + j] = g->bias ? g->bias[j] : 0.0f;
        free(buf);
        return 0;
    }

    int ntiles = tm * tn;
OMP_FOR
    for (int t = 0; t < ntiles; t++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *ap = buf + (size_t)tid * per_thread;
        float *bp = ap + a_floats;
        int i0 = (t / tn) * mc, j0 = (t % tn) * nc;
        int mcc = g->m - i0 < mc ? g->m - i0 : mc;
        int ncc = g->n - j0 < nc ? g->n - j0 : nc;
        gemm_block(g, ap, bp, i0, mcc, j0, ncc);
    }
    free(buf);
    return 0;
}

/* One row of the GEMV: two accumulators over 32-float steps, a masked tail, then a fixed
 * reduction tree. Used for every row so that the row blocking cannot change a result. */
static inline float dot_row(const float *w, const float *x, int K)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int k = 0;
    for (; k + 32 <= K; k += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k), _mm512_loadu_ps(x + k), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + k + 16), _mm512_loadu_ps(x + k + 16), s1);
    }
    if (k < K) {
        __mmask16 m0 = mask_first(K - k), m1 = mask_first(K - k - 16);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, w + k), _mm512_maskz_loadu_ps(m0, x + k), s0);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, w + k + 16),
                             _mm512_maskz_loadu_ps(m1, x + k + 16), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/* Four rows at once share the loads of x; each row's arithmetic is exactly dot_row's. */
static inline void dot_rows4(float out[4], const float *w, long ldw, const float *x, int K)
{
    __m512 s[4][2];
    for (int r = 0; r < 4; r++) s[r][0] = s[r][1] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 32 <= K; k += 32) {
        __m512 x0 = _mm512_loadu_ps(x + k), x1 = _mm512_loadu_ps(x + k + 16);
        for (int r = 0; r < 4; r++) {
            s[r][0] = _mm512_fmadd_ps(_mm512_loadu_ps(w + r * ldw + k), x0, s[r][0]);
            s[r][1] = _mm512_fmadd_ps(_mm512_loadu_ps(w + r * ldw + k + 16), x1, s[r][1]);
        }
    }
    if (k < K) {
        __mmask16 m0 = mask_first(K - k), m1 = mask_first(K - k - 16);
        __m512 x0 = _mm512_maskz_loadu_ps(m0, x + k), x1 = _mm512_maskz_loadu_ps(m1, x + k + 16);
        for (int r = 0; r < 4; r++) {
            s[r][0] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m0, w + r * ldw + k), x0, s[r][0]);
            s[r][1] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m1, w + r * ldw + k + 16), x1, s[r][1]);
        }
    }
    for (int r = 0; r < 4; r++) out[r] = _mm512_reduce_add_ps(_mm512_add_ps(s[r][0], s[r][1]));
}

/* ----------------------------------------------------------------------------------------
 * The public entry points. */

void th_mm_avx512_forward(float *out, const float *inp, const float *w, const float *bias, int M,
                          int N, int K)
{
    /* inp (M, K), w (N, K) read as B (K, N) = wᵀ, out (M, N) */
    gemm_view g = {.a = inp, .rsa = K, .csa = 1, .b = w, .rsb = 1, .csb = K, .c = out,
                   .ldc = N, .bias = bias, .init = 1, .m = M, .n = N, .p = K};
    if (gemm(&g) != 0) forward_plain(out, inp, w, bias, M, N, K);
}

void th_mm_avx512_backward(float *dinp, float *dw, float *dbias, const float *dout,
                           const float *inp, const float *w, int M, int N, int K)
{
    if (dinp) { /* dinp (M, K) += dout (M, N) · w (N, K) */
        gemm_view g = {.a = dout, .rsa = N, .csa = 1, .b = w, .rsb = K, .csb = 1, .c = dinp,
                       .ldc = K, .init = 0, .m = M, .n = K, .p = N};
        if (gemm(&g) != 0) dinp_plain(dinp, dout, w, M, N, K);
    }
    if (dw) { /* dw (N, K) += dout (M, N)ᵀ · inp (M, K) */
        gemm_view g = {.a = dout, .rsa = 1, .csa = N, .b = inp, .rsb = K, .csb = 1, .c = dw,
                       .ldc = K, .init = 0, .m = N, .n = K, .p = M};
        if (gemm(&g) != 0) dw_plain(dw, dout, inp, M, N, K);
    }
    if (dbias) { /* column sums in chunks of 128 columns, rows in order */
        int nb = (N + 127) / 128;
OMP_FOR
        for (int b = 0; b < nb; b++) {
            __m512 s[8];
            __mmask16 mk[8];
            for (int v = 0; v < 8; v++) {
                s[v] = _mm512_setzero_ps();
                mk[v] = mask_first(N - b * 128 - v * 16);
            }
            for (int m = 0; m < M; m++) {
                const float *row = dout + (size_t)m * N + b * 128;
                for (int v = 0; v < 8; v++)
                    s[v] = _mm512_add_ps(s[v], _mm512_maskz_loadu_ps(mk[v], row + v * 16));
            }
            for (int v = 0; v < 8; v++) {
                float *d = dbias + b * 128 + v * 16;
                _mm512_mask_storeu_ps(d, mk[v], _mm512_add_ps(_mm512_maskz_loadu_ps(mk[v], d), s[v]));
            }
        }
    }
}

void th_mm_avx512_gemv(float *out, const float *x, const float *w, const float *bias, int N,
                       int K)
{
    int nb = (N + 3) / 4;
OMP_FOR
    for (int b = 0; b < nb; b++) {
        int n0 = b * 4;
        float r[4];
        if (n0 + 4 <= N) {
            dot_rows4(r, w + (size_t)n0 * K, K, x, K);
        } else {
            for (int n = n0; n < N; n++) r[n - n0] = dot_row(w + (size_t)n * K, x, K);
        }
        for (int n = n0; n < N && n < n0 + 4; n++) out[n] = r[n - n0] + (bias ? bias[n] : 0.0f);
    }
}

#ifdef TH_AVX512_TARGET_PUSHED
#pragma GCC pop_options
#endif
#endif /* TH_AVX512_BUILT */

/* ----------------------------------------------------------------------------------------
 * The backend: compiled with the build's own flags, so the probe runs on any x86-64. */

int th_mm_avx512_available(void)
{
#ifdef TH_AVX512_BUILT
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 1 : 0;
#else
    return 0;
#endif
}

static int probe_avx512(void) { return th_mm_avx512_available() ? 300 : 0; }

const th_compute_ops th_compute_avx512_ops = {
    .name = "avx512",
    .api_version = TH_COMPUTE_API_VERSION,
    .probe = probe_avx512,
#ifdef TH_AVX512_BUILT
    .needs = "a CPU with AVX-512F",
    .mm_forward = th_mm_avx512_forward,
    .mm_backward = th_mm_avx512_backward,
    .gemv = th_mm_avx512_gemv,
#else
    .needs = "an x86-64 build with gcc or -mavx512f",
#endif
};
