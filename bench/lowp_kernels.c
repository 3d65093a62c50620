/* lowp_kernels.c: how close each decode matvec kernel (f32, bf16, f16, q8) streams its weights
 * to the machine's read bandwidth. Fills an arena far larger than the last-level cache with
 * GPT-2 124M's matmul weights in one format (12 x {qkv 2304x768, attn proj 768x768, fc
 * 3072x768, fc proj 768x3072} + lm_head 50257x768, repeated until the arena is full, so
 * nothing stays cached between passes), then times whole passes of the kernel (lowp_mm with
 * M = 1, the decode call: q8 quantizes its activation inside) interleaved with a plain read
 * pass over the same arena (A B A B ...), best of N each, at 1 and 2 threads, and prints the
 * kernel's bytes per second as a share of the read bandwidth measured in the same run.
 *
 * usage: lowp_kernels [GIB of arena, default 1.25] [ROUNDS, default 7] [dtype ...] [t1|t2]
 *        [avx2] [avx512]
 * (t1 or t2: that thread count only; both by default. avx2, avx512: those kernels, called
 * directly, each round passing every one of them in turn before the read pass, A B read A B
 * read ...; by default the one lowp_mm picks for the format)
 * e.g.:  ./build/lowp_kernels 1.25 9 bf16 f16 q8
 * A small arena (below 4 MiB, e.g. 0.0004 GiB: matrices cut to 256 rows, held in the 512 KiB
 * L2) measures the kernel's compute ceiling instead: a kernel whose cached speed is not well
 * above the read bandwidth cannot stream at it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "model/compute.h"
#include "model/lowp.h"

typedef struct {
    int rows, K;
} shape;

/* One GPT-2 124M token's matmuls in decode order (per layer, then the tied lm_head). */
static const shape layer_shapes[4] = {{2304, 768}, {768, 768}, {3072, 768}, {768, 3072}};
static const shape head_shape = {50257, 768};

#define MAX_MATS 4096
#define HOT_BYTES (4u << 20) /* an arena below this is cache-held: its matrices get HOT_ROWS rows */
#define HOT_ROWS 256
#define TILE_FLOATS (3u << 20) /* random weights packed once per K and copied around */

static double clock_s(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}
static double now_s(void) { return clock_s(CLOCK_MONOTONIC); }
static double cpu_s(void) { return clock_s(CLOCK_THREAD_CPUTIME_ID); }

static uint64_t rng = 88172645463325252ull;
static float frand(void) { /* xorshift64, uniform in [-1, 1) */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

/* The same plain read as th_ceilings_measure's: integer sums the compiler vectorizes. */
static uint64_t read_pass(const uint64_t *buf, size_t n) {
    uint64_t total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (size_t i = 0; i < n; i += 8)
        total += buf[i] + buf[i + 1] + buf[i + 2] + buf[i + 3] + buf[i + 4] + buf[i + 5] + buf[i + 6] + buf[i + 7];
    return total;
}

typedef struct {
    th_dtype dt;
    lowp_weight w[MAX_MATS];
    int nmat;
    size_t bytes; /* weight bytes one pass reads */
} arena_fill;

/* Lays matrices of format dt into arena (cap bytes) in decode order until none of the shapes
 * fits; their contents are rows of two packed random tiles (K = 768 and K = 3072). */
static int fill(arena_fill *a, th_dtype dt, uint8_t *arena, size_t cap) {
    lowp_weight tile[2];
    float *src = malloc(sizeof(float) * TILE_FLOATS);
    if (!src) return -1;
    for (size_t i = 0; i < TILE_FLOATS; i++) src[i] = frand() * 0.05f;
    const int tk[2] = {768, 3072};
    int ok = 1;
    for (int t = 0; t < 2; t++) {
        int rows = (int)(TILE_FLOATS / (unsigned)tk[t]);
        if (dt == TH_DTYPE_F32) {
            tile[t].K = tk[t];
            tile[t].rows = rows;
            tile[t].row_bytes = (size_t)tk[t] * 4;
            tile[t].data = (uint8_t *)src; /* f32 rows straight from src */
        } else if (lowp_pack(&tile[t], dt, src, rows, tk[t]) != TH_OK) {
            ok = 0;
        }
    }
    a->dt = dt;
    a->nmat = 0;
    a->bytes = 0;
    size_t off = 0;
    for (int m = 0, miss = 0; ok && miss < 49; m++) {
        shape s = m % 49 == 48 ? head_shape : layer_shapes[(m % 49) % 4];
        if (cap < HOT_BYTES && s.rows > HOT_ROWS) s.rows = HOT_ROWS;
        size_t rb = dt == TH_DTYPE_F32 ? (size_t)s.K * 4 : lowp_row_bytes(dt, s.K);
        size_t need = rb * (size_t)s.rows;
        off = (off + 63) & ~(size_t)63;
        if (a->nmat == MAX_MATS) break;
        if (off + need > cap) { /* a small (cache-held) arena: try the smaller shapes */
            miss++;
            continue;
        }
        miss = 0;
        lowp_weight *w = &a->w[a->nmat++];
        w->dtype = dt;
        w->rows = s.rows;
        w->K = s.K;
        w->row_bytes = rb;
        w->data = arena + off;
        const lowp_weight *tl = &tile[s.K == 768 ? 0 : 1];
        for (int r = 0; r < s.rows; r++) memcpy(w->data + (size_t)r * rb, tl->data + (size_t)(r % tl->rows) * rb, rb);
        off += need;
        a->bytes += need;
    }
    if (dt != TH_DTYPE_F32)
        for (int t = 0; t < 2; t++) lowp_weight_free(&tile[t]);
    free(src);
    return ok ? 0 : -1;
}

static float sink;

/* One pass of every matrix: kernel k (quantizer and gemv) or, k NULL, lowp_mm's choice. */
static void kernel_pass(const arena_fill *a, const lowp_kernel *k, float *out, const float *x, lowp_q8_block *xq) {
    for (int m = 0; m < a->nmat; m++) {
        const lowp_weight *w = &a->w[m];
        if (a->dt == TH_DTYPE_F32) {
            th_mm_forward(out, x, (const float *)w->data, NULL, 1, w->rows, w->K);
        } else if (k) {
            if (a->dt == TH_DTYPE_Q8) k->quantize(xq, x, w->K);
            k->gemv(out, w, 0, x, xq, NULL, w->rows);
        } else {
            lowp_mm(out, x, w, 0, NULL, 1, w->rows, NULL, xq);
        }
        sink += out[m % w->rows];
    }
}

int main(int argc, char **argv) {
    double gib = argc > 1 ? atof(argv[1]) : 1.25;
    int rounds = argc > 2 ? atoi(argv[2]) : 7;
    th_dtype dts[8];
    int nd = 0;
    int tmin = 1, tmax = 2;
    const lowp_kernel *ks[2] = {NULL, NULL};
    int nk = 0;
    for (int i = 3; i < argc && nd < 8; i++) {
        if (strcmp(argv[i], "t1") == 0 || strcmp(argv[i], "t2") == 0)
            tmin = tmax = argv[i][1] - '0';
        else if (lowp_kernel_by_name(argv[i], TH_DTYPE_Q8) && nk < 2)
            ks[nk++] = lowp_kernel_by_name(argv[i], TH_DTYPE_Q8);
        else if (th_dtype_parse(argv[i], &dts[nd]) == TH_OK)
            nd++;
    }
    if (nk == 0) nk = 1; /* ks[0] NULL: lowp_mm's choice */
    if (nd == 0) {
        const th_dtype all[4] = {TH_DTYPE_F32, TH_DTYPE_BF16, TH_DTYPE_F16, TH_DTYPE_Q8};
        memcpy(dts, all, sizeof all);
        nd = 4;
    }
    if (gib < 0.0002 || rounds < 1) {
        fprintf(stderr, "usage: lowp_kernels [GIB >= 0.0002] [ROUNDS >= 1] [f32|bf16|f16|q8 ...] [t1|t2]\n");
        return 2;
    }
    size_t cap = (size_t)(gib * (double)(1u << 30)) & ~(size_t)63;
    uint8_t *arena = aligned_alloc(64, cap);
    static arena_fill a;
    float *out = malloc(sizeof(float) * 50257), *x = malloc(sizeof(float) * 3072);
    lowp_q8_block *xq = malloc(sizeof(lowp_q8_block) * (3072 / LOWP_QK));
    if (!arena || !out || !x || !xq) {
        fprintf(stderr, "lowp_kernels: out of memory for a %.2f GiB arena\n", gib);
        return 1;
    }
    memset(arena, 1, cap);
    for (int k = 0; k < 3072; k++) x[k] = frand();
    printf("lowp_kernels: %.4g GiB arena, best of %d interleaved rounds (kernel pass, read pass) per row;\n"
           "the VM is noisy (2x run to run): only best-of-N interleaved figures compare\n",
           gib, rounds);
    printf("%-5s %-7s %7s %9s %11s %10s %8s %9s %9s\n", "dtype", "kernel", "threads", "GB/pass", "read GB/s",
           "kern GB/s", "share", "Gweight/s", "cpu share");
    for (int d = 0; d < nd; d++) {
        if (fill(&a, dts[d], arena, cap) != 0) {
            fprintf(stderr, "lowp_kernels: packing %s failed\n", th_dtype_name(dts[d]));
            return 1;
        }
        if (a.nmat == 0) {
            printf("%-5s  no matrix of this format fits a %.4g GiB arena\n", th_dtype_name(dts[d]), gib);
            continue;
        }
        double weights = 0;
        for (int m = 0; m < a.nmat; m++) weights += (double)a.w[m].rows * a.w[m].K;
        for (int threads = tmin; threads <= tmax; threads++) {
#ifdef _OPENMP
            omp_set_num_threads(threads);
#endif
            double best_k[2] = {1e30, 1e30}, best_r = 1e30, cbest_k[2] = {1e30, 1e30}, cbest_r = 1e30;
            for (int k = 0; k < nk; k++) kernel_pass(&a, ks[k], out, x, xq); /* warm-up: page tables, threads */
            for (int r = 0; r < rounds; r++) {
                for (int k = 0; k < nk; k++) {
                    double c0 = cpu_s(), t0 = now_s();
                    kernel_pass(&a, ks[k], out, x, xq);
                    double c1 = cpu_s(), t1 = now_s();
                    if (t1 - t0 < best_k[k]) best_k[k] = t1 - t0;
                    if (c1 - c0 < cbest_k[k]) cbest_k[k] = c1 - c0;
                }
                double c1 = cpu_s(), t1 = now_s();
                sink += (float)read_pass((const uint64_t *)arena, a.bytes / 8 & ~(size_t)7);
                double c2 = cpu_s(), t2 = now_s();
                if (t2 - t1 < best_r) best_r = t2 - t1;
                if (c2 - c1 < cbest_r) cbest_r = c2 - c1;
            }
            double rbw = (double)(a.bytes / 64 * 64) / best_r / 1e9;
            for (int k = 0; k < nk; k++) {
                double kbw = (double)a.bytes / best_k[k] / 1e9;
                /* 1 thread: the main thread's CPU time too, which other tenants' time slices do not inflate */
                char cpu[32] = "-";
                if (threads == 1)
                    snprintf(cpu, sizeof cpu, "%.1f%%", 100.0 * cbest_r / cbest_k[k] * (double)(a.bytes / 64 * 64) / a.bytes);
                const char *kn = dts[d] == TH_DTYPE_F32 ? "f32" : ks[k] ? ks[k]->name : lowp_kernel_name(dts[d]);
                printf("%-5s %-7s %7d %9.3f %11.2f %10.2f %7.1f%% %9.2f %9s\n", th_dtype_name(dts[d]), kn, threads,
                       a.bytes / 1e9, rbw, kbw, 100.0 * kbw / rbw, weights / best_k[k] / 1e9, cpu);
            }
            fflush(stdout);
        }
    }
    if (sink == 12345.0f) printf("\n");
    free(xq);
    free(x);
    free(out);
    free(arena);
    return 0;
}
