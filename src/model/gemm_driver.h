/* gemm_driver.h (internal to the model module, included once by each packed-GEMM backend:
 * matmul_avx2.c, matmul_avx512.c): the one BLIS-style training GEMM driver the backends
 * share, and the th_compute_ops entries built on it. The driver knows no instruction set:
 * it owns the strided view of the three products of a linear layer, the plan (which operand
 * is shared, windows of the reduction, chunks), the team's packing of the shared operand,
 * the dynamic chunks, the B prefetch into L2, edge tiles, the plain fallbacks, the bias sums
 * and the forward/backward wrappers. The including file supplies, before the #include and
 * inside its target pragma (so the driver is compiled for its ISA):
 *
 *   MR, NR, KC (even), MC_MAX, NC_MAX, CHUNKS, MIN_PANELS, PF_ROWS, SHARED_MAX  the blocking
 *   A_ESZ(bf), B_ESZ(bf)   bytes per packed element of A and B in layout bf (0: fp32)
 *   KP(kc, bf)             packed reduction length of a KC step (kc, or kc rounded up to pairs)
 *   BF16_LAYOUT()          the layout th_mm_*_bf16 use (a non-zero int, may be a run-time choice)
 *   pack_a(g, ap, i0, mc, q0, kc), pack_b(g, bp, j0, nc, q0, kc)   the packers (below)
 *
 * and after it (the driver declares them): pack_a, pack_b, the packers of A and B panels for
 * a KC step in the view's layout, and kernel_of(g), the micro-kernel for that layout.
 *
 * Contract every ISA keeps: the micro-kernel adds its kc products to each accumulator in the
 * order the layout defines (index order, or pairs in the order of vdpbf16ps) from the C value
 * it loaded (or the bias, or +0), and KC is even, so no pair straddles two KC steps. Then the
 * result of each element of C depends on the layout alone, never on the blocking, the chunks
 * or the thread count (DESIGN.md invariant 1). Every function here is static: each backend
 * gets its own copy, compiled for its instruction set. */
#ifndef THERMO_MODEL_GEMM_DRIVER_H
#define THERMO_MODEL_GEMM_DRIVER_H

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

_Static_assert(KC % 2 == 0, "a KC step must hold whole pairs of the reduction");

/* A view of C (m, n) (+)= A (m, p) · B (p, n) over strided operands:
 *   A(i, q) = a[i*rsa + q*csa],  B(q, j) = b[q*rsb + j*csb],  C(i, j) = c[i*ldc + j].
 * init: C = bias + A·B (bias (n) may be NULL); otherwise C += A·B. bf16: 0 for fp32, else
 * the including file's bf16 layout (operands rounded to bf16 as they are packed). */
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

/* C (MR, NR) (+)= the packed A micro-panel · the packed B micro-panel over a KC step of kc:
 * init: from bias (NR floats, or NULL: +0), else from C. Full tiles only. */
typedef void (*gemm_kernel_fn)(int kc, const void *ap, const void *bp, float *c, long ldc, int init,
                               const float *bias);

/* Packs A rows [i0, i0+mc) × reduction [q0, q0+kc) as MR-row micro-panels of KP(kc) packed
 * elements each, zero past the last row (and past kc); B reduction [q0, q0+kc) × columns
 * [j0, j0+nc) as NR-column panels, zero past the last column. A panel's stores stay inside
 * it, so threads that pack neighbouring panels never write each other's bytes. */
static void pack_a(const gemm_view *g, void *ap, int i0, int mc, int q0, int kc);
static void pack_b(const gemm_view *g, void *bp, int j0, int nc, int q0, int kc);
static gemm_kernel_fn kernel_of(const gemm_view *g);

/* x as the operand a bf16 layout multiplies (th_bf16_round), or x itself in fp32. */
static inline float opnd(float x, int bf16) { return bf16 ? th_bf16_round(x) : x; }

static int round_up(int x, int m) { return (x + m - 1) / m * m; }
static int min_i(int a, int b) { return a < b ? a : b; }

/* A tile of mr ≤ MR rows and nr ≤ NR columns: edge tiles go through a padded copy, which
 * runs the same arithmetic in the same order as a full tile would. */
static void tile(const gemm_view *g, int kc, const void *ap, const void *bp, float *c, long ldc, int mr, int nr,
                 int init, const float *bias)
{
    gemm_kernel_fn k = kernel_of(g);
    if (mr == MR && nr == NR) {
        k(kc, ap, bp, c, ldc, init, bias);
        return;
    }
    float tmp[MR * NR] __attribute__((aligned(64)));
    float btmp[NR] __attribute__((aligned(64)));
    memset(tmp, 0, sizeof tmp);
    memset(btmp, 0, sizeof btmp);
    if (init && bias) memcpy(btmp, bias, (size_t)nr * sizeof(float));
    if (!init)
        for (int i = 0; i < mr; i++) memcpy(tmp + i * NR, c + i * ldc, (size_t)nr * sizeof(float));
    k(kc, ap, bp, tmp, NR, init, init && bias ? btmp : NULL);
    for (int i = 0; i < mr; i++) memcpy(c + i * ldc, tmp + i * NR, (size_t)nr * sizeof(float));
}

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
static void sweep(const gemm_view *g, const char *ap, const void *bp, int i0, int mc, int j, int nr, int q0,
                  int kc, const b_next *nx, int l0, int l1)
{
    int init = g->init && q0 == 0;
    const float *bias = init && g->bias ? g->bias + j : NULL;
    size_t panel = (size_t)MR * KP(kc, g->bf16) * A_ESZ(g->bf16);
    int tiles = (mc + MR - 1) / MR, lines = nx ? l1 - l0 : 0;
    for (int ir = 0, t = 0; ir < mc; ir += MR, t++) {
        if (ir + MR < mc) /* the next tile's rows of C: a miss each otherwise, also when only written */
            for (int i = 0; i < MR && ir + MR + i < mc; i++) {
                const float *cn = g->c + (long)(i0 + ir + MR + i) * g->ldc + j;
                for (int x = 0; x < NR; x += 16) __builtin_prefetch(cn + x, 1, 3);
                __builtin_prefetch(cn + NR - 1, 1, 3);
            }
        if (lines > 0) prefetch_b(g, nx, l0 + t * lines / tiles, l0 + (t + 1) * lines / tiles);
        tile(g, kc, ap + (size_t)t * panel, bp, g->c + (long)(i0 + ir) * g->ldc + j, g->ldc, min_i(MR, mc - ir), nr,
             init, bias);
    }
}

/* How a call is split. share_a: A is the shared operand (packed once by all threads) and
 * the chunks are of C's columns, each thread packing the B block of its chunk; otherwise B
 * is shared and the chunks are of C's rows. Chunks never change any element's sums. */
typedef struct {
    int share_a;
    int panels;        /* micro-panels of the shared operand (MR rows of A or NR columns of B) */
    size_t step_bytes; /* bytes of the shared buffer per KC step */
    int win;           /* reduction per window (a multiple of KC): what the shared buffer holds */
    int chunk, nchunks;
    size_t shared_bytes, own_bytes; /* own: per thread, a multiple of 64 */
} gemm_plan;

static void plan(const gemm_view *g, gemm_plan *pl)
{
    pl->share_a = g->m <= g->n;
    int unit = pl->share_a ? MR : NR;
    size_t sesz = pl->share_a ? A_ESZ(g->bf16) : B_ESZ(g->bf16), oesz = pl->share_a ? B_ESZ(g->bf16) : A_ESZ(g->bf16);
    pl->panels = ((pl->share_a ? g->m : g->n) + unit - 1) / unit;
    size_t step_elems = (size_t)pl->panels * unit * KC;
    pl->step_bytes = (step_elems * sesz + 63) / 64 * 64;
    size_t steps = SHARED_MAX / step_elems, all = (size_t)(g->p + KC - 1) / KC;
    if (steps < 1) steps = 1;
    if (steps > all) steps = all;
    pl->win = (int)steps * KC;
    pl->shared_bytes = pl->step_bytes * steps;
    int other = pl->share_a ? g->n : g->m, cap = pl->share_a ? NC_MAX : MC_MAX, ounit = pl->share_a ? NR : MR;
    int nch = (other + cap - 1) / cap, most = (other + ounit - 1) / ounit;
    if (nch < CHUNKS) nch = CHUNKS;
    /* columns of C: every KC step's A block is read from L3 by the first panel of a chunk and
     * from L2 by the others, so a chunk keeps at least MIN_PANELS of them */
    if (pl->share_a && nch > (most + MIN_PANELS - 1) / MIN_PANELS) nch = (most + MIN_PANELS - 1) / MIN_PANELS;
    if (nch < 1) nch = 1;
    pl->chunk = round_up((other + nch - 1) / nch, ounit);
    pl->nchunks = (other + pl->chunk - 1) / pl->chunk;
    size_t own = (size_t)pl->chunk * KC * oesz;
    pl->own_bytes = (own + 63) / 64 * 64;
}

#define PACK_GROUP 8 /* micro-panels of the shared operand per packing task */

/* The shared operand's KC steps [w0, w0 + win) into shared, split between the team. */
static void pack_shared(const gemm_view *g, const gemm_plan *pl, char *shared, int w0, int steps)
{
    int groups = (pl->panels + PACK_GROUP - 1) / PACK_GROUP;
OMP_FOR_DYNAMIC
    for (int it = 0; it < steps * groups; it++) {
        int st = it / groups, gi = it % groups, q0 = w0 + st * KC, kc = min_i(KC, g->p - q0);
        size_t kp = (size_t)KP(kc, g->bf16);
        char *step = shared + (size_t)st * pl->step_bytes;
        if (pl->share_a) {
            int i0 = gi * PACK_GROUP * MR;
            pack_a(g, step + (size_t)i0 * kp * A_ESZ(g->bf16), i0, min_i(PACK_GROUP * MR, g->m - i0), q0, kc);
        } else {
            int j0 = gi * PACK_GROUP * NR;
            pack_b(g, step + (size_t)j0 * kp * B_ESZ(g->bf16), j0, min_i(PACK_GROUP * NR, g->n - j0), q0, kc);
        }
    }
}

/* One chunk over the window's KC steps. share_a: C columns [j0, j0+chunk), their B block
 * packed into own (in L2 beside the A block), the shared A in blocks of MC_MAX rows.
 * Otherwise C rows [i0, i0+chunk): their A block packed into own, then every shared B panel
 * swept past it. */
static void run_chunk(const gemm_view *g, const gemm_plan *pl, const char *shared, char *own, int c, int w0,
                      int steps)
{
    size_t aesz = A_ESZ(g->bf16), besz = B_ESZ(g->bf16);
    for (int st = 0; st < steps; st++) {
        int q0 = w0 + st * KC, kc = min_i(KC, g->p - q0);
        size_t kp = (size_t)KP(kc, g->bf16);
        const char *step = shared + (size_t)st * pl->step_bytes;
        if (pl->share_a) {
            int j0 = c * pl->chunk, ncc = min_i(pl->chunk, g->n - j0), panels = (ncc + NR - 1) / NR;
            /* the chunk's B block, a row (or column) of the source at a time, so that each page
             * of a weight is walked once per step; the next step's block prefetched meanwhile */
            pack_b(g, own, j0, ncc, q0, kc);
            b_next nx = {j0, st + 1 < steps ? ncc : 0, q0 + KC, min_i(KC, g->p - q0 - KC)};
            int lines = b_lines(g, &nx);
            for (int ic = 0; ic < g->m; ic += MC_MAX)
                for (int jr = 0, pi = 0; jr < ncc; jr += NR, pi++)
                    sweep(g, step + (size_t)ic * kp * aesz, own + (size_t)jr * kp * besz, ic, min_i(MC_MAX, g->m - ic),
                          j0 + jr, min_i(NR, ncc - jr), q0, kc, ic == 0 ? &nx : NULL, pi * lines / panels,
                          (pi + 1) * lines / panels);
        } else {
            int i0 = c * pl->chunk, mcc = min_i(pl->chunk, g->m - i0);
            pack_a(g, own, i0, mcc, q0, kc);
            for (int jr = 0; jr < g->n; jr += NR)
                sweep(g, own, step + (size_t)jr * kp * besz, i0, mcc, jr, min_i(NR, g->n - jr), q0, kc, NULL, 0, 0);
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

/* ----------------------------------------------------------------------------------------
 * The three products of a linear layer as views, and the th_compute_ops entries. */

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
    forward(out, inp, w, bias, M, N, K, BF16_LAYOUT());
}
static void backward_f32(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                         const float *w, int M, int N, int K)
{
    backward(dinp, dw, dbias, dout, inp, w, M, N, K, 0, 0);
}
static void backward_bf16(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                          const float *w, int M, int N, int K)
{
    backward(dinp, dw, dbias, dout, inp, w, M, N, K, BF16_LAYOUT(), 0);
}
static void backward_set_f32(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                             const float *w, int M, int N, int K, int set)
{
    backward(dinp, dw, dbias, dout, inp, w, M, N, K, 0, set);
}
static void backward_set_bf16(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                              const float *w, int M, int N, int K, int set)
{
    backward(dinp, dw, dbias, dout, inp, w, M, N, K, BF16_LAYOUT(), set);
}

#endif
