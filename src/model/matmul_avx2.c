/* matmul_avx2.c: the "avx2" compute backend, a hand-written packed fp32 GEMM for CPUs with
 * AVX2 + FMA and no AVX-512 (AMD Zen, older Intel), in fp32 and in bf16 mixed precision.
 * One BLIS-style driver C (+)= A·B (A and B packed into panels, a 6×16 register-blocked
 * micro-kernel, the reduction in KC steps) serves the forward pass and both backward
 * products through strided views; the decode GEMV is a plain multi-row dot product. Every
 * element of C is one chain of FMAs over the reduction in index order (stored and reloaded
 * between KC steps, which rounds nothing), whoever computes it and however C is blocked, so
 * results are bit-identical for any thread count (DESIGN.md invariant 1).
 *
 * bf16: every operand is rounded to bf16 (round to nearest even) as it is packed, products
 * are summed in fp32. The B panels are stored as 16-bit values, half the bytes of fp32, and
 * widened in registers (one unpack against zero per 8 values): this CPU has no bf16 dot
 * product instruction. The A panels hold the rounded values as fp32 (they are broadcast).
 *
 * With gcc on x86-64 the kernels are compiled for AVX2 + FMA whatever the build's -march (a
 * target pragma), and the CPU is asked at run time (probe_avx2). */
#include <stdint.h>
#include <string.h>

#include "model/compute.h"
#ifdef _OPENMP
#include <omp.h>
#define OMP_FOR _Pragma("omp parallel for schedule(static)")
#define OMP_PARALLEL _Pragma("omp parallel")
#define OMP_FOR_DYNAMIC _Pragma("omp for schedule(dynamic)")
#else
#define OMP_FOR /* serial build: no warning about an unknown pragma */
#define OMP_PARALLEL
#define OMP_FOR_DYNAMIC
#endif

#if defined(__x86_64__) && ((defined(__AVX2__) && defined(__FMA__)) || (defined(__GNUC__) && !defined(__clang__)))
#define TH_AVX2_BUILT 1
#endif

#ifdef TH_AVX2_BUILT
#if !defined(__AVX2__) || !defined(__FMA__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define TH_AVX2_TARGET_PUSHED 1
#endif
#include <immintrin.h>

/* ----------------------------------------------------------------------------------------
 * Blocking for this kind of host (Zen 3: 32 KiB L1d, 512 KiB L2 per core, a shared L3). MR×NR
 * is the register tile (12 accumulators of 8 floats); KC is the step of the reduction between
 * two passes through C. An A block (MC×KC, up to 264 KiB) stays in L2 while the B micro-panels
 * (KC×16, 16 KiB; 8 KiB in bf16) pass through L1. The operand whose other side is the smaller
 * one (A when m <= n: the forward's and dinp's B·T rows) is packed once per call, by all
 * threads, into a buffer of at most SHARED_MAX floats (a longer reduction goes in windows);
 * the threads then take chunks of the other side (CHUNKS or more, fewer where chunks of C's
 * columns would be narrower than MIN_PANELS panels; dynamically: a thread that another load
 * preempts is helped by the others) and pack the other operand's block of their chunk themselves, a KC step at a
 * time, prefetching the next step's block into L2 while the kernel runs. */

#define MR 6
#define NR 16
#define KC 256
#define MC_MAX 264
#define NC_MAX 512
#define CHUNKS 16
#define MIN_PANELS 8
#define PF_ROWS 16 /* how far ahead the packing loops prefetch the rows they read */
#define SHARED_MAX ((size_t)1 << 20)

/* A view of C (m, n) (+)= A (m, p) · B (p, n) over strided operands:
 *   A(i, q) = a[i*rsa + q*csa],  B(q, j) = b[q*rsb + j*csb],  C(i, j) = c[i*ldc + j].
 * init: C = bias + A·B (bias (n) may be NULL); otherwise C += A·B. bf16: operands rounded. */
typedef struct {
    const float *a;
    long rsa, csa;
    const float *b;
    long rsb, csb;
    float *c;
    long ldc;
    const float *bias;
    int init, bf16;
    int m, n, p;
} gemm_view;

/* bf16 bits of 8 floats, round to nearest even; a NaN stays a (quiet) NaN. */
static inline __m256i bf16_bits8(__m256 v)
{
    __m256i x = _mm256_castps_si256(v);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(x, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)), 16);
    __m256i q = _mm256_srli_epi32(_mm256_or_si256(x, _mm256_set1_epi32(0x400000)), 16);
    __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    return _mm256_blendv_epi8(r, q, nan);
}

static inline float opnd(float x, int bf16) { return bf16 ? th_bf16_round(x) : x; }

/* Writes 8 floats as packed-B values for columns [8h, 8h+8) of row q of a panel. fp32:
 * bp[q*NR + 8h + j]. bf16: 16-bit values in the order the micro-kernel widens them, columns
 * 0-3, 8-11, 4-7, 12-15 (an unpack against zero per 128-bit lane yields 0-7 and 8-15). */
static inline void put_b8(void *bp, int bf16, int q, int h, __m256 v)
{
    if (!bf16) {
        _mm256_store_ps((float *)bp + q * NR + 8 * h, v);
        return;
    }
    uint16_t *d = (uint16_t *)bp + q * NR;
    __m256i p = _mm256_packus_epi32(bf16_bits8(v), _mm256_setzero_si256());
    _mm_storel_epi64((__m128i *)(d + 4 * h), _mm256_castsi256_si128(p));
    _mm_storel_epi64((__m128i *)(d + 8 + 4 * h), _mm256_extracti128_si256(p, 1));
}

/* In-register transpose of 8×8: r[i] holds row i on entry, column i on exit. */
static inline void transpose8(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* 8 floats rounded to bf16 (as the floats they denote) when bf16 is set. */
static inline __m256 opnd8(__m256 v, int bf16)
{
    return bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(bf16_bits8(v), 16)) : v;
}

/* Stores the first six floats of v at d: four, then two (stores never leave a micro-panel,
 * so threads that pack neighbouring panels never write each other's floats). */
static inline void store6(float *d, __m256 v)
{
    _mm_storeu_ps(d, _mm256_castps256_ps128(v));
    _mm_storel_pi((__m64 *)(d + 4), _mm256_extractf128_ps(v, 1));
}

/* Packs A rows [i0, i0+mc) × reduction [q0, q0+kc) as MR-row micro-panels:
 * ap[ir*kc + q*MR + i] = A(i0+ir+i, q0+q), zero past the last row. Full micro-panels of a
 * row-major A (the forward's input, dinp's dout) go through 8×8 register transposes, each
 * column stored as 8 floats whose last two the next column overwrites (AMD's masked stores
 * are slow); dw's column-major A (doutᵀ) is read row by row of dout, contiguous mc floats for
 * each q, six at a time into the mc/6 panels. */
static void pack_a(const gemm_view *g, float *ap, int i0, int mc, int q0, int kc)
{
    int bf = g->bf16;
    int full = (g->m - i0 < mc ? g->m - i0 : mc) / MR * MR; /* rows in full micro-panels */
    if (g->rsa == 1 && g->csa != 1) {
        for (int q = 0; q < kc; q++) {
            const float *src = g->a + (long)i0 + (long)(q0 + q) * g->csa;
            if (q + PF_ROWS < kc) /* the row PF_ROWS ahead, one line in 16 floats */
                for (int i = 0; i < full; i += 16) _mm_prefetch((const char *)(src + PF_ROWS * g->csa + i), _MM_HINT_T0);
            int ir = 0;
            for (; ir < full && i0 + ir + 8 <= g->m; ir += MR) { /* 8 floats within the row */
                __m256 v = opnd8(_mm256_loadu_ps(src + ir), bf);
                if (q + 1 < kc) _mm256_storeu_ps(ap + (long)ir * kc + q * MR, v);
                else store6(ap + (long)ir * kc + q * MR, v);
            }
            for (; ir < full; ir += MR)
                for (int i = 0; i < MR; i++) ap[(long)ir * kc + q * MR + i] = opnd(src[ir + i], bf);
        }
    }
    for (int ir = 0; ir < mc; ir += MR) {
        int rows = g->m - (i0 + ir) < MR ? g->m - (i0 + ir) : MR;
        float *dst = ap + (long)ir * kc;
        const float *src = g->a + (long)(i0 + ir) * g->rsa + (long)q0 * g->csa;
        int q = 0;
        if (rows == MR && g->rsa == 1 && g->csa != 1) continue; /* packed above */
        if (rows == MR && g->csa == 1) {
            for (; q + 8 <= kc; q += 8) {
                __m256 r[8];
                for (int i = 0; i < MR; i++) r[i] = opnd8(_mm256_loadu_ps(src + (long)i * g->rsa + q), bf);
                r[6] = r[7] = _mm256_setzero_ps();
                transpose8(r);
                for (int k = 0; k < 7; k++) _mm256_storeu_ps(dst + (q + k) * MR, r[k]);
                if (q + 8 < kc) _mm256_storeu_ps(dst + (q + 7) * MR, r[7]);
                else store6(dst + (q + 7) * MR, r[7]);
            }
        }
        for (; q < kc; q++) /* edges and tails */
            for (int i = 0; i < MR; i++)
                dst[q * MR + i] = i < rows ? opnd(src[(long)i * g->rsa + (long)q * g->csa], bf) : 0.0f;
    }
}

/* Packs B reduction [q0, q0+kc) × columns [j0, j0+nc) as 16-column panels of kc rows
 * (fp32: bp[jr*kc + q*NR + j], bf16: the put_b8 order in 16-bit values), zero past the last
 * column. The forward's B is a weight read transposed (rsb == 1): 8×8 register transposes.
 * Contiguous rows (csb == 1: dinp's w, dw's input) are read a row at a time across all the
 * full panels, PF_ROWS rows prefetched ahead. */
static void pack_b(const gemm_view *g, void *bp, int j0, int nc, int q0, int kc)
{
    int bf = g->bf16;
    size_t esz = bf ? sizeof(uint16_t) : sizeof(float);
    int full = (g->n - j0 < nc ? g->n - j0 : nc) / NR * NR; /* columns in full panels */
    if (g->csb == 1) /* contiguous rows: row by row across the panels, so each row is one stream */
        for (int q = 0; q < kc; q++) {
            const float *s = g->b + (long)(q0 + q) * g->rsb + j0;
            if (q + PF_ROWS < kc)
                for (int jr = 0; jr < full; jr += NR) _mm_prefetch((const char *)(s + PF_ROWS * g->rsb + jr), _MM_HINT_T0);
            for (int jr = 0; jr < full; jr += NR) {
                char *dst = (char *)bp + (size_t)jr * kc * esz;
                put_b8(dst, bf, q, 0, _mm256_loadu_ps(s + jr));
                put_b8(dst, bf, q, 1, _mm256_loadu_ps(s + jr + 8));
            }
        }
    for (int jr = 0; jr < nc; jr += NR) {
        int cols = g->n - (j0 + jr) < NR ? g->n - (j0 + jr) : NR;
        char *dst = (char *)bp + (size_t)jr * kc * esz;
        const float *src = g->b + (long)q0 * g->rsb + (long)(j0 + jr) * g->csb;
        if (g->csb == 1 && cols == NR) continue; /* packed above */
        int q = 0;
        if (g->rsb == 1 && cols == NR) {
            for (; q + 8 <= kc; q += 8)
                for (int h = 0; h < 2; h++) {
                    __m256 r[8];
                    for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(src + (long)(8 * h + j) * g->csb + q);
                    transpose8(r);
                    for (int k = 0; k < 8; k++) put_b8(dst, bf, q + k, h, r[k]);
                }
        }
        for (; q < kc; q++) { /* edges and other strides: one row of the panel at a time */
            float row[NR] __attribute__((aligned(32)));
            for (int j = 0; j < NR; j++) row[j] = j < cols ? src[(long)q * g->rsb + (long)j * g->csb] : 0.0f;
            put_b8(dst, bf, q, 0, _mm256_load_ps(row));
            put_b8(dst, bf, q, 1, _mm256_load_ps(row + 8));
        }
    }
}

/* The register tile: C (MR, 16) (+)= ap (kc, MR)-packed · bp (kc, 16). Full tiles only;
 * every accumulator adds its kc products in order, one FMA each. The twelve accumulators are
 * named variables: gcc spills an array of them to the stack on every iteration. */
#define ROW_FMA(i, c0, c1)                                                                         \
    do {                                                                                           \
        __m256 a_ = _mm256_broadcast_ss(ap + (i));                                                 \
        c0 = _mm256_fmadd_ps(a_, b0, c0);                                                          \
        c1 = _mm256_fmadd_ps(a_, b1, c1);                                                          \
    } while (0)
#define TILE_FMA()                                                                                 \
    do {                                                                                           \
        ROW_FMA(0, c00, c01);                                                                      \
        ROW_FMA(1, c10, c11);                                                                      \
        ROW_FMA(2, c20, c21);                                                                      \
        ROW_FMA(3, c30, c31);                                                                      \
        ROW_FMA(4, c40, c41);                                                                      \
        ROW_FMA(5, c50, c51);                                                                      \
    } while (0)

static inline __attribute__((always_inline)) void kernel(int kc, const float *ap, const void *bpv, int bf16,
                                                         float *c, long ldc, int init, const float *bias)
{
    _Static_assert(MR == 6, "the micro-kernel names six rows of accumulators");
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    if (init) {
        __m256 b0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
        __m256 b1 = bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
        c00 = c10 = c20 = c30 = c40 = c50 = b0;
        c01 = c11 = c21 = c31 = c41 = c51 = b1;
    } else {
        c00 = _mm256_loadu_ps(c), c01 = _mm256_loadu_ps(c + 8);
        c10 = _mm256_loadu_ps(c + ldc), c11 = _mm256_loadu_ps(c + ldc + 8);
        c20 = _mm256_loadu_ps(c + 2 * ldc), c21 = _mm256_loadu_ps(c + 2 * ldc + 8);
        c30 = _mm256_loadu_ps(c + 3 * ldc), c31 = _mm256_loadu_ps(c + 3 * ldc + 8);
        c40 = _mm256_loadu_ps(c + 4 * ldc), c41 = _mm256_loadu_ps(c + 4 * ldc + 8);
        c50 = _mm256_loadu_ps(c + 5 * ldc), c51 = _mm256_loadu_ps(c + 5 * ldc + 8);
    }
    if (bf16) {
        const __m256i *bp = bpv, zero = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int q = 0; q < kc; q++) {
            __m256i v = _mm256_load_si256(bp + q);
            __m256 b0 = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, v));
            __m256 b1 = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, v));
            TILE_FMA();
            ap += MR;
        }
    } else {
        const float *bp = bpv;
#pragma GCC unroll 4
        for (int q = 0; q < kc; q++) {
            __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
            TILE_FMA();
            ap += MR;
            bp += NR;
        }
    }
    _mm256_storeu_ps(c, c00), _mm256_storeu_ps(c + 8, c01);
    _mm256_storeu_ps(c + ldc, c10), _mm256_storeu_ps(c + ldc + 8, c11);
    _mm256_storeu_ps(c + 2 * ldc, c20), _mm256_storeu_ps(c + 2 * ldc + 8, c21);
    _mm256_storeu_ps(c + 3 * ldc, c30), _mm256_storeu_ps(c + 3 * ldc + 8, c31);
    _mm256_storeu_ps(c + 4 * ldc, c40), _mm256_storeu_ps(c + 4 * ldc + 8, c41);
    _mm256_storeu_ps(c + 5 * ldc, c50), _mm256_storeu_ps(c + 5 * ldc + 8, c51);
}
#undef TILE_FMA
#undef ROW_FMA

/* Two instances, so that the precision test is outside the reduction loop. */
static void kernel_f32(int kc, const float *ap, const void *bp, float *c, long ldc, int init, const float *bias)
{
    kernel(kc, ap, bp, 0, c, ldc, init, bias);
}
static void kernel_bf16(int kc, const float *ap, const void *bp, float *c, long ldc, int init, const float *bias)
{
    kernel(kc, ap, bp, 1, c, ldc, init, bias);
}

/* A tile of mr ≤ MR rows and nr ≤ 16 columns: edge tiles go through a padded copy, which
 * runs the same FMAs in the same order as a full tile would. */
static void tile(const gemm_view *g, int kc, const float *ap, const void *bp, float *c, long ldc, int mr, int nr,
                 int init, const float *bias)
{
    void (*k)(int, const float *, const void *, float *, long, int, const float *) =
        g->bf16 ? kernel_bf16 : kernel_f32;
    if (mr == MR && nr == NR) {
        k(kc, ap, bp, c, ldc, init, bias);
        return;
    }
    float tmp[MR * NR] __attribute__((aligned(32)));
    float btmp[NR] __attribute__((aligned(32)));
    memset(tmp, 0, sizeof tmp);
    memset(btmp, 0, sizeof btmp);
    if (init && bias) memcpy(btmp, bias, (size_t)nr * sizeof(float));
    if (!init)
        for (int i = 0; i < mr; i++) memcpy(tmp + i * NR, c + i * ldc, (size_t)nr * sizeof(float));
    k(kc, ap, bp, tmp, NR, init, init && bias ? btmp : NULL);
    for (int i = 0; i < mr; i++) memcpy(c + i * ldc, tmp + i * NR, (size_t)nr * sizeof(float));
}

static int round_up(int x, int m) { return (x + m - 1) / m * m; }
static int min_i(int a, int b) { return a < b ? a : b; }

/* The source of a B block (columns [j, j+nc), reduction [q0, q0+kc)) that pack_b reads
 * next, as cache lines: nc/16 per row of the block when B's rows are contiguous (dinp's w),
 * kc/16 per column when its columns are (the forward's wᵀ). */
typedef struct {
    int j, nc, q0, kc; /* nc == 0: nothing to prefetch */
} b_next;

static inline int b_lines(const gemm_view *g, const b_next *nx)
{
    if (nx->nc <= 0) return 0;
    return g->csb == 1 ? nx->kc * ((nx->nc + 15) / 16) : g->rsb == 1 ? (nx->kc + 15) / 16 * nx->nc : 0;
}

/* Prefetches lines [l0, l1) of the block nx into L2, while the kernel runs: the weights come
 * from memory, and pack_b would otherwise wait for them line after line. */
static inline void prefetch_b(const gemm_view *g, const b_next *nx, int l0, int l1)
{
    if (g->csb == 1) {
        int per = (nx->nc + 15) / 16;
        for (int l = l0; l < l1; l++)
            _mm_prefetch((const char *)(g->b + (long)(nx->q0 + l / per) * g->rsb + nx->j + l % per * 16), _MM_HINT_T1);
        return;
    }
    int per = (nx->kc + 15) / 16;
    for (int l = l0; l < l1; l++)
        _mm_prefetch((const char *)(g->b + (long)(nx->j + l / per) * g->csb + nx->q0 + l % per * 16), _MM_HINT_T1);
}

/* One B micro-panel (columns [j, j+nr)) against the packed A block of rows [i0, i0+mc), for
 * the KC step at q0: the panel stays in L1 while the A block (in L2) streams past it. nx
 * (may be NULL): the block packed next, whose lines [l0, l1) are prefetched a part per tile. */
static void sweep(const gemm_view *g, const float *ap, const void *bp, int i0, int mc, int j, int nr, int q0,
                  int kc, const b_next *nx, int l0, int l1)
{
    int init = g->init && q0 == 0;
    const float *bias = init && g->bias ? g->bias + j : NULL;
    int tiles = (mc + MR - 1) / MR, lines = nx ? l1 - l0 : 0;
    for (int ir = 0, t = 0; ir < mc; ir += MR, t++) {
        if (ir + MR < mc) /* the next tile's rows of C: a miss each otherwise, also when only written */
            for (int i = 0; i < MR && ir + MR + i < mc; i++) {
                const float *cn = g->c + (long)(i0 + ir + MR + i) * g->ldc + j;
                __builtin_prefetch(cn, 1, 3);
                __builtin_prefetch(cn + 15, 1, 3);
            }
        if (lines > 0) prefetch_b(g, nx, l0 + t * lines / tiles, l0 + (t + 1) * lines / tiles);
        tile(g, kc, ap + (long)ir * kc, bp, g->c + (long)(i0 + ir) * g->ldc + j, g->ldc, min_i(MR, mc - ir), nr,
             init, bias);
    }
}

/* How a call is split. share_a: A is the shared operand (packed once by all threads) and
 * the chunks are of C's columns, each thread packing the B block of its chunk; otherwise B
 * is shared and the chunks are of C's rows. Chunks never change any element's sums. */
typedef struct {
    int share_a;
    int panels;        /* micro-panels of the shared operand (MR rows of A or NR columns of B) */
    size_t step_elems; /* elements of the shared buffer per KC step */
    int win;           /* reduction per window (a multiple of KC): what the shared buffer holds */
    int chunk, nchunks;
    size_t shared_bytes, own_bytes; /* own: per thread, a multiple of 64 */
} gemm_plan;

static void plan(const gemm_view *g, gemm_plan *pl)
{
    size_t esz = g->bf16 ? sizeof(uint16_t) : sizeof(float);
    pl->share_a = g->m <= g->n;
    int unit = pl->share_a ? MR : NR;
    pl->panels = ((pl->share_a ? g->m : g->n) + unit - 1) / unit;
    pl->step_elems = (size_t)pl->panels * unit * KC;
    size_t steps = SHARED_MAX / pl->step_elems, all = (size_t)(g->p + KC - 1) / KC;
    if (steps < 1) steps = 1;
    if (steps > all) steps = all;
    pl->win = (int)steps * KC;
    pl->shared_bytes = pl->step_elems * steps * (pl->share_a ? sizeof(float) : esz);
    int other = pl->share_a ? g->n : g->m, cap = pl->share_a ? NC_MAX : MC_MAX, ounit = pl->share_a ? NR : MR;
    int nch = (other + cap - 1) / cap, most = (other + ounit - 1) / ounit;
    if (nch < CHUNKS) nch = CHUNKS;
    /* columns of C: every KC step's A block is read from L3 by the first panel of a chunk and
     * from L2 by the others, so a chunk keeps at least MIN_PANELS of them */
    if (pl->share_a && nch > (most + MIN_PANELS - 1) / MIN_PANELS) nch = (most + MIN_PANELS - 1) / MIN_PANELS;
    if (nch < 1) nch = 1;
    pl->chunk = round_up((other + nch - 1) / nch, ounit);
    pl->nchunks = (other + pl->chunk - 1) / pl->chunk;
    size_t own = (size_t)pl->chunk * KC * (pl->share_a ? esz : sizeof(float));
    pl->own_bytes = (own + 63) / 64 * 64;
}

#define PACK_GROUP 8 /* micro-panels of the shared operand per packing task */

/* The shared operand's KC steps [w0, w0 + win) into shared, split between the team. */
static void pack_shared(const gemm_view *g, const gemm_plan *pl, char *shared, int w0, int steps)
{
    size_t esz = g->bf16 ? sizeof(uint16_t) : sizeof(float);
    int groups = (pl->panels + PACK_GROUP - 1) / PACK_GROUP;
OMP_FOR_DYNAMIC
    for (int it = 0; it < steps * groups; it++) {
        int st = it / groups, gi = it % groups, q0 = w0 + st * KC, kc = min_i(KC, g->p - q0);
        if (pl->share_a) {
            int i0 = gi * PACK_GROUP * MR;
            float *dst = (float *)shared + (size_t)st * pl->step_elems + (size_t)i0 * kc;
            pack_a(g, dst, i0, min_i(PACK_GROUP * MR, g->m - i0), q0, kc);
        } else {
            int j0 = gi * PACK_GROUP * NR;
            char *dst = shared + ((size_t)st * pl->step_elems + (size_t)j0 * kc) * esz;
            pack_b(g, dst, j0, min_i(PACK_GROUP * NR, g->n - j0), q0, kc);
        }
    }
}

/* One chunk over the window's KC steps. share_a: C columns [j0, j0+chunk), their B block
 * packed into own (in L2 beside the A block), the shared A in blocks of MC_MAX rows. Otherwise C rows [i0, i0+chunk): their A block packed into own, then every
 * shared B panel swept past it. */
static void run_chunk(const gemm_view *g, const gemm_plan *pl, const char *shared, char *own, int c, int w0,
                      int steps)
{
    size_t esz = g->bf16 ? sizeof(uint16_t) : sizeof(float);
    for (int st = 0; st < steps; st++) {
        int q0 = w0 + st * KC, kc = min_i(KC, g->p - q0);
        if (pl->share_a) {
            int j0 = c * pl->chunk, ncc = min_i(pl->chunk, g->n - j0), panels = (ncc + NR - 1) / NR;
            const float *as = (const float *)shared + (size_t)st * pl->step_elems;
            /* the chunk's B block, a row (or column) of the source at a time, so that each page
             * of a weight is walked once per step; the next step's block prefetched meanwhile */
            pack_b(g, own, j0, ncc, q0, kc);
            b_next nx = {j0, st + 1 < steps ? ncc : 0, q0 + KC, min_i(KC, g->p - q0 - KC)};
            int lines = b_lines(g, &nx);
            for (int ic = 0; ic < g->m; ic += MC_MAX)
                for (int jr = 0, pi = 0; jr < ncc; jr += NR, pi++)
                    sweep(g, as + (size_t)ic * kc, own + (size_t)jr * kc * esz, ic, min_i(MC_MAX, g->m - ic), j0 + jr,
                          min_i(NR, ncc - jr), q0, kc, ic == 0 ? &nx : NULL, pi * lines / panels,
                          (pi + 1) * lines / panels);
        } else {
            int i0 = c * pl->chunk, mcc = min_i(pl->chunk, g->m - i0);
            const char *bs = shared + (size_t)st * pl->step_elems * esz;
            pack_a(g, (float *)own, i0, mcc, q0, kc);
            for (int jr = 0; jr < g->n; jr += NR)
                sweep(g, (const float *)own, bs + (size_t)jr * kc * esz, i0, mcc, jr, min_i(NR, g->n - jr), q0, kc,
                      NULL, 0, 0);
        }
    }
}

/* Runs the view: per window of the reduction, the shared operand is packed by the team,
 * then the chunks are taken dynamically; each ends at a barrier (the next window's packing
 * overwrites the buffer). Returns 0, or -1 if the packing buffers could not be allocated
 * (nothing was written). */
static int gemm(const gemm_view *g)
{
    if (g->m <= 0 || g->n <= 0) return 0;
    if (g->p <= 0) { /* empty reduction: C = bias or C unchanged */
        if (g->init)
            for (int i = 0; i < g->m; i++)
                for (int j = 0; j < g->n; j++) g->c[(long)i * g->ldc + j] = g->bias ? g->bias[j] : 0.0f;
        return 0;
    }
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_max_threads();
#endif
    gemm_plan pl;
    plan(g, &pl);
    char *buf = th_alloc(pl.shared_bytes + pl.own_bytes * (size_t)nt);
    if (!buf) return -1;
OMP_PARALLEL
    {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        char *own = buf + pl.shared_bytes + pl.own_bytes * (size_t)tid;
        for (int w0 = 0; w0 < g->p; w0 += pl.win) {
            int steps = (min_i(pl.win, g->p - w0) + KC - 1) / KC;
            pack_shared(g, &pl, buf, w0, steps);
OMP_FOR_DYNAMIC
            for (int c = 0; c < pl.nchunks; c++) run_chunk(g, &pl, buf, own, c, w0, steps);
        }
    }
    th_free(buf);
    return 0;
}

/* ----------------------------------------------------------------------------------------
 * Plain loops: the fallback when packing buffers cannot be allocated. Each output element is
 * still reduced by one thread in index order (rounded differently from the GEMM). */

static void forward_plain(float *out, const float *inp, const float *w, const float *bias, int M, int N, int K,
                          int bf)
{
OMP_FOR
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float s = bias ? bias[n] : 0.0f;
            for (int k = 0; k < K; k++) s += opnd(inp[(size_t)m * K + k], bf) * opnd(w[(size_t)n * K + k], bf);
            out[(size_t)m * N + n] = s;
        }
}

static void dinp_plain(float *dinp, const float *dout, const float *w, int M, int N, int K, int bf)
{
OMP_FOR
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float d = opnd(dout[(size_t)m * N + n], bf);
            for (int k = 0; k < K; k++) dinp[(size_t)m * K + k] += d * opnd(w[(size_t)n * K + k], bf);
        }
}

static void dw_plain(float *dw, const float *dout, const float *inp, int M, int N, int K, int bf)
{
OMP_FOR
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++) {
            float d = opnd(dout[(size_t)m * N + n], bf);
            for (int k = 0; k < K; k++) dw[(size_t)n * K + k] += d * opnd(inp[(size_t)m * K + k], bf);
        }
}

/* dbias (N) += Σ_m dout (M, N) in fp32, rows in order, in blocks of 64 columns per thread;
 * set: dbias = the sum (which, started at +0, is what 0 + the sum would be). */
static void bias_colsum(float *dbias, const float *dout, int M, int N, int set)
{
    int nb = (N + 63) / 64;
OMP_FOR
    for (int b = 0; b < nb; b++) {
        int n0 = b * 64, n1 = n0 + 64 < N ? n0 + 64 : N;
        float s[64] = {0};
        for (int m = 0; m < M; m++) {
            const float *row = dout + (size_t)m * N;
            for (int n = n0; n < n1; n++) s[n - n0] += row[n];
        }
        for (int n = n0; n < n1; n++) dbias[n] = set ? s[n - n0] : dbias[n] + s[n - n0];
    }
}

static void forward(float *out, const float *inp, const float *w, const float *bias, int M, int N, int K, int bf)
{
    /* inp (M, K), w (N, K) read as B (K, N) = wᵀ, out (M, N) */
    gemm_view g = {.a = inp, .rsa = K, .csa = 1, .b = w, .rsb = 1, .csb = K, .c = out,
                   .ldc = N, .bias = bias, .init = 1, .bf16 = bf, .m = M, .n = N, .p = K};
    if (gemm(&g) != 0) forward_plain(out, inp, w, bias, M, N, K, bf);
}

/* The backward products; set (TH_MM_SET_*) makes the first KC step of an output write it
 * instead of adding to it: an accumulator that starts at +0 gives the same bits as one that
 * starts from a zeroed C. */
static void backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                     int M, int N, int K, int bf, int set)
{
    int set_dinp = (set & TH_MM_SET_DINP) != 0, set_dw = (set & TH_MM_SET_DW) != 0;
    if (dinp) { /* dinp (M, K) (+)= dout (M, N) · w (N, K) */
        gemm_view g = {.a = dout, .rsa = N, .csa = 1, .b = w, .rsb = K, .csb = 1, .c = dinp,
                       .ldc = K, .init = set_dinp, .bf16 = bf, .m = M, .n = K, .p = N};
        if (gemm(&g) != 0) {
            if (set_dinp) memset(dinp, 0, sizeof(float) * (size_t)M * K);
            dinp_plain(dinp, dout, w, M, N, K, bf);
        }
    }
    if (dw) { /* dw (N, K) (+)= dout (M, N)ᵀ · inp (M, K) */
        gemm_view g = {.a = dout, .rsa = 1, .csa = N, .b = inp, .rsb = K, .csb = 1, .c = dw,
                       .ldc = K, .init = set_dw, .bf16 = bf, .m = N, .n = K, .p = M};
        if (gemm(&g) != 0) {
            if (set_dw) memset(dw, 0, sizeof(float) * (size_t)N * K);
            dw_plain(dw, dout, inp, M, N, K, bf);
        }
    }
    if (dbias) bias_colsum(dbias, dout, M, N, set_dw);
}

static void forward_f32(float *out, const float *inp, const float *w, const float *bias, int M, int N, int K)
{
    forward(out, inp, w, bias, M, N, K, 0);
}
static void forward_bf16(float *out, const float *inp, const float *w, const float *bias, int M, int N, int K)
{
    forward(out, inp, w, bias, M, N, K, 1);
}
static void backward_f32(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                         const float *w, int M, int N, int K)
{
    backward(dinp, dw, dbias, dout, inp, w, M, N, K, 0, 0);
}
static void backward_bf16(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                          const float *w, int M, int N, int K)
{
    backward(dinp, dw, dbias, dout, inp, w, M, N, K, 1, 0);
}
static void backward_set_f32(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                             const float *w, int M, int N, int K, int set)
{
    backward(dinp, dw, dbias, dout, inp, w, M, N, K, 0, set);
}
static void backward_set_bf16(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                              const float *w, int M, int N, int K, int set)
{
    backward(dinp, dw, dbias, dout, inp, w, M, N, K, 1, set);
}

/* Horizontal sum of 8 lanes in a fixed tree. */
static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* M = 1 (decode): out (N) = w (N, K) · x (K) + bias. Four rows share the loads of x; each
 * row is two accumulators over 16-float steps, a scalar tail in order, then a fixed tree. */
static void gemv(float *out, const float *x, const float *w, const float *bias, int N, int K)
{
    int nb = (N + 3) / 4, k16 = K / 16 * 16;
OMP_FOR
    for (int b = 0; b < nb; b++) {
        int n0 = b * 4, rows = N - n0 < 4 ? N - n0 : 4;
        __m256 s[4][2];
        for (int r = 0; r < 4; r++) s[r][0] = s[r][1] = _mm256_setzero_ps();
        for (int k = 0; k < k16; k += 16) {
            __m256 x0 = _mm256_loadu_ps(x + k), x1 = _mm256_loadu_ps(x + k + 8);
            for (int r = 0; r < rows; r++) {
                const float *wr = w + (size_t)(n0 + r) * K + k;
                s[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(wr), x0, s[r][0]);
                s[r][1] = _mm256_fmadd_ps(_mm256_loadu_ps(wr + 8), x1, s[r][1]);
            }
        }
        for (int r = 0; r < rows; r++) {
            float t = hsum8(_mm256_add_ps(s[r][0], s[r][1]));
            const float *wr = w + (size_t)(n0 + r) * K;
            for (int k = k16; k < K; k++) t += wr[k] * x[k];
            out[n0 + r] = t + (bias ? bias[n0 + r] : 0.0f);
        }
    }
}

#ifdef TH_AVX2_TARGET_PUSHED
#pragma GCC pop_options
#endif
#endif /* TH_AVX2_BUILT */

/* ----------------------------------------------------------------------------------------
 * The backend: compiled with the build's own flags, so the probe runs on any x86-64. Its
 * score (250) puts it above blas (200): as fast or faster on the training shapes measured on
 * an AVX2 EPYC (bench model), and, unlike OpenBLAS, thread-count invariant. */

static int probe_avx2(void)
{
#ifdef TH_AVX2_BUILT
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 250 : 0;
#else
    return 0;
#endif
}

const th_compute_ops th_compute_avx2_ops = {
    .name = "avx2",
    .api_version = TH_COMPUTE_API_VERSION,
    .probe = probe_avx2,
#ifdef TH_AVX2_BUILT
    .needs = "a CPU with AVX2 and FMA",
    .mm_forward = forward_f32,
    .mm_backward = backward_f32,
    .gemv = gemv,
    .mm_forward_bf16 = forward_bf16,
    .mm_backward_bf16 = backward_bf16,
    .mm_backward_set = backward_set_f32,
    .mm_backward_set_bf16 = backward_set_bf16,
#else
    .needs = "an x86-64 build with gcc or -mavx2 -mfma",
#endif
};
