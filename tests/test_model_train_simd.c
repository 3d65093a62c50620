/* test_model_train_simd.c: the packed-GEMM backends' training matmuls (avx2, avx512: one
 * driver, gemm_driver.h), fp32 and bf16 (issue 17), each backend that can run here in turn,
 * avx512's bf16 in both of its layouts (vdpbf16ps pairs where the CPU has AVX512_BF16, and
 * widened to fp32). Against the naive oracles (th_mm_*_naive and th_mm_*_naive_bf16, or the
 * pair oracle th_mm_*_pairs_bf16 for vdpbf16ps) on edge shapes (odd reductions split pairs); bit-
 * identical results for 1, 2 and 3 threads, the lm_head's 768 x 50,257 in both directions
 * included (DESIGN.md invariant 1); bf16 rounding (ties to even, NaN, overflow) the same in the
 * packing's vector code as in th_bf16_round; fp32 results the same bits as one fmaf chain per
 * element in index order (the whole contract of the blocking: windows of the reduction, the
 * shared operand on either side, edge tiles), written and accumulated, for 1, 2 and 3
 * threads; vdpbf16ps's measured arithmetic (odd product first, DAZ/FTZ, unrounded products)
 * on crafted cases; set and accumulate with NULL outputs in bf16. A backend the CPU cannot run
 * is skipped with the reason printed. */
#include <stdint.h>

#include "model/compute.h"
#include "model/matmul_avx512.h"
#include "test_util.h"
#include "thermo/model.h"

static const char *backend; /* the backend under test */
static int pairs;            /* its bf16 sums in vdpbf16ps pairs (oracle th_mm_*_pairs_bf16) */

static float *normals(th_rng *rng, size_t n) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = (float)th_rng_normal(rng);
    return p;
}

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void test_bf16_round(void) {
    CHECK(th_bf16_round(1.0f) == 1.0f && th_bf16_round(-2.5f) == -2.5f, "exact values change");
    // ties go to the even neighbour; above a tie rounds up
    CHECK(bits(th_bf16_round(from_bits(0x3f808000u))) == 0x3f800000u, "tie with even lsb");
    CHECK(bits(th_bf16_round(from_bits(0x3f818000u))) == 0x3f820000u, "tie with odd lsb");
    CHECK(bits(th_bf16_round(from_bits(0x3f808001u))) == 0x3f810000u, "above a tie");
    CHECK(bits(th_bf16_round(from_bits(0x3f807fffu))) == 0x3f800000u, "below a tie");
    float nan = from_bits(0x7f800001u); // a signalling NaN whose payload is all in the low bits
    CHECK(isnan(th_bf16_round(nan)) && isnan(th_bf16_round(NAN)), "NaN must stay NaN");
    CHECK(isinf(th_bf16_round(INFINITY)) && isinf(th_bf16_round(3.4028235e38f)), "overflow must give inf");
    CHECK(th_bf16_round(1e-30f) != 0.0f && fabsf(th_bf16_round(1e-30f) - 1e-30f) <= 1e-30f / 128,
          "a tiny normal keeps ~8 bits (no underflow: f32's exponent range)");
}

/* fwd, dinp, dw, dbias of the selected backend at the given precision, gradients from zero */
typedef struct {
    float *out, *di, *dw, *db;
} results;

static void run(results *r, int bf16, const float *inp, const float *w, const float *bias, const float *dout, int M,
                int N, int K) {
    size_t nin = (size_t)M * K, nw = (size_t)N * K;
    memset(r->di, 0, nin * 4);
    memset(r->dw, 0, nw * 4);
    memset(r->db, 0, (size_t)N * 4);
    if (bf16) {
        th_mm_forward_bf16(r->out, inp, w, bias, M, N, K);
        th_mm_backward_bf16(r->di, r->dw, r->db, dout, inp, w, M, N, K);
    } else {
        th_mm_forward(r->out, inp, w, bias, M, N, K);
        th_mm_backward(r->di, r->dw, r->db, dout, inp, w, M, N, K);
    }
}

/* The oracle of the backend under test at that precision, gradients from zero. */
static void run_oracle(results *r, int bf16, const float *inp, const float *w, const float *bias, const float *dout,
                       int M, int N, int K) {
    if (bf16 && pairs) {
        memset(r->di, 0, (size_t)M * K * 4);
        memset(r->dw, 0, (size_t)N * K * 4);
        memset(r->db, 0, (size_t)N * 4);
        th_mm_forward_pairs_bf16(r->out, inp, w, bias, M, N, K);
        th_mm_backward_pairs_bf16(r->di, r->dw, r->db, dout, inp, w, M, N, K);
        return;
    }
    th_compute_select("naive");
    run(r, bf16, inp, w, bias, dout, M, N, K);
    th_compute_select(backend);
}

static void alloc_results(results *r, int M, int N, int K) {
    r->out = malloc((size_t)M * N * 4);
    r->di = malloc((size_t)M * K * 4);
    r->dw = malloc((size_t)N * K * 4);
    r->db = malloc((size_t)N * 4);
}
static void free_results(results *r) {
    free(r->out);
    free(r->di);
    free(r->dw);
    free(r->db);
}
static int same(const results *a, const results *b, int M, int N, int K) {
    return memcmp(a->out, b->out, (size_t)M * N * 4) == 0 && memcmp(a->di, b->di, (size_t)M * K * 4) == 0 &&
           memcmp(a->dw, b->dw, (size_t)N * K * 4) == 0 && memcmp(a->db, b->db, (size_t)N * 4) == 0;
}

/* One shape: the backend against the oracle of its precision (and bf16 against fp32, which it must
 * differ from by bf16 rounding, not more), then the same bits for 1, 2 and 3 threads. */
static void check_shape(th_rng *rng, int M, int N, int K) {
    size_t nin = (size_t)M * K, nw = (size_t)N * K, nout = (size_t)M * N;
    float *inp = normals(rng, nin), *w = normals(rng, nw), *bias = normals(rng, N), *dout = normals(rng, nout);
    results ref[2], got[2], other;
    alloc_results(&other, M, N, K);
    for (int bf = 0; bf < 2; bf++) {
        alloc_results(&ref[bf], M, N, K);
        alloc_results(&got[bf], M, N, K);
        run_oracle(&ref[bf], bf, inp, w, bias, dout, M, N, K);
        th_threads_set(2);
        run(&got[bf], bf, inp, w, bias, dout, M, N, K);
        // same rounded operands, another summation order: ~sqrt(K)·ulp of f32, bound 1e-4
        double r1, r2, r3;
        double e1 = max_abs_diff(got[bf].out, ref[bf].out, nout, &r1);
        double e2 = max_abs_diff(got[bf].di, ref[bf].di, nin, &r2);
        double e3 = max_abs_diff(got[bf].dw, ref[bf].dw, nw, &r3);
        double e4 = max_abs_diff(got[bf].db, ref[bf].db, N, NULL);
        CHECK(e1 <= 1e-4 * r1 && e2 <= 1e-4 * r2 && e3 <= 1e-4 * r3 && e4 <= 1e-4 * r3,
              "%s M=%d N=%d K=%d vs its oracle: forward %.2e dinp %.2e dw %.2e dbias %.2e", bf ? "bf16" : "f32", M,
              N, K, e1, e2, e3, e4);
        // bf16: a product of two bf16 values is exact in fp32, so the FMAs round as the
        // oracle's multiply-then-add, in the oracle's order (or the pair oracle's steps):
        // the very same bits
        CHECK(!bf || same(&got[bf], &ref[bf], M, N, K), "%s bf16%s M=%d N=%d K=%d: not bit-identical to the oracle",
              backend, pairs ? " pairs" : "", M, N, K);
        for (int t = 1; t <= 3; t++) {
            th_threads_set(t);
            run(&other, bf, inp, w, bias, dout, M, N, K);
            CHECK(same(&other, &got[bf], M, N, K), "%s M=%d N=%d K=%d: %d threads give other bits than 2",
                  bf ? "bf16" : "f32", M, N, K, t);
        }
    }
    // bf16 operands (8 significant bits, relative rounding 2^-9 each) against fp32: sums of
    // unit normals, error ~ 4e-3·sqrt(K) against a result ~ sqrt(K): 1e-2 of the largest
    double r1, r3;
    double e1 = max_abs_diff(got[1].out, ref[0].out, nout, &r1), e3 = max_abs_diff(got[1].dw, ref[0].dw, nw, &r3);
    CHECK(e1 <= 1e-2 * r1 && e3 <= 1e-2 * r3 && e1 > 1e-6 * r1, "bf16 vs f32 M=%d N=%d K=%d: forward %.2e dw %.2e",
          M, N, K, e1 / r1, e3 / r3);
    CHECK(max_abs_diff(got[1].db, ref[0].db, N, NULL) <= 1e-4 * r3,
          "bf16 dbias must be the fp32 sum of dout");
    for (int bf = 0; bf < 2; bf++) {
        free_results(&ref[bf]);
        free_results(&got[bf]);
    }
    free_results(&other);
    free(inp);
    free(w);
    free(bias);
    free(dout);
}

/* One product per output (K = 1, no bias): the GEMM's result is exactly the rounded operands'
 * product, so its vector bf16 rounding must equal th_bf16_round on ties, NaN and overflow. */
static void test_packing_rounding(void) {
    enum { M = 7, N = 19 };
    float inp[M], w[N], out[M * N], ref[M * N];
    const uint32_t special[] = {0x3f808000u, 0x3f818000u, 0x3f808001u, 0x7f800001u, 0x7f7fffffu, 0xbf818000u};
    for (int i = 0; i < M; i++) inp[i] = i < 6 ? from_bits(special[i]) : 1.5f;
    for (int n = 0; n < N; n++) w[n] = n < 12 ? from_bits(special[n % 6]) : 1.0f + (float)n / 64.0f;
    th_mm_forward_naive_bf16(ref, inp, w, NULL, M, N, 1); // K = 1: the same bits in pairs (0 + 0·0 + x·y)
    th_mm_forward_bf16(out, inp, w, NULL, M, N, 1);
    int ok = 1;
    for (int i = 0; i < M * N; i++) ok &= bits(out[i]) == bits(ref[i]) || (isnan(out[i]) && isnan(ref[i]));
    CHECK(ok, "the packing's bf16 rounding differs from th_bf16_round");
}

/* The tied lm_head, V = 50,257 outputs of C = 768: forward (50,257 columns), dinp (a reduction
 * over 50,257) and dw (50,257 rows), bit-identical for 1 and 3 threads, spot-checked in double. */
static void test_lm_head(void) {
    enum { M = 6, N = 50257, K = 768 };
    th_rng rng;
    th_rng_seed(&rng, 17);
    float *inp = normals(&rng, (size_t)M * K), *w = normals(&rng, (size_t)N * K), *dout = normals(&rng, (size_t)M * N);
    for (int bf = 0; bf < 2; bf++) {
        results a, b;
        alloc_results(&a, M, N, K);
        alloc_results(&b, M, N, K);
        th_threads_set(1);
        run(&a, bf, inp, w, NULL, dout, M, N, K);
        th_threads_set(3);
        run(&b, bf, inp, w, NULL, dout, M, N, K);
        CHECK(same(&a, &b, M, N, K), "lm_head %s: 1 and 3 threads differ", bf ? "bf16" : "f32");
        // a few elements against double sums of the (rounded) operands
        double worst = 0;
        for (int s = 0; s < 40; s++) {
            int m = s % M, n = (int)(th_rng_u64(&rng) % N), k = (int)(th_rng_u64(&rng) % K);
            double f = 0, di = 0, dw = 0, sf = 0, sdi = 0, sdw = 0;
            for (int q = 0; q < K; q++) {
                double x = bf ? th_bf16_round(inp[(size_t)m * K + q]) : inp[(size_t)m * K + q];
                double y = bf ? th_bf16_round(w[(size_t)n * K + q]) : w[(size_t)n * K + q];
                f += x * y;
                sf += fabs(x * y);
            }
            for (int q = 0; q < N; q++) {
                double x = bf ? th_bf16_round(dout[(size_t)m * N + q]) : dout[(size_t)m * N + q];
                double y = bf ? th_bf16_round(w[(size_t)q * K + k]) : w[(size_t)q * K + k];
                di += x * y;
                sdi += fabs(x * y);
            }
            for (int q = 0; q < M; q++) {
                double x = bf ? th_bf16_round(dout[(size_t)q * N + n]) : dout[(size_t)q * N + n];
                double y = bf ? th_bf16_round(inp[(size_t)q * K + k]) : inp[(size_t)q * K + k];
                dw += x * y;
                sdw += fabs(x * y);
            }
            // fp32 sums: error below K·eps·Σ|terms| (the deterministic bound), far below in practice
            double e[3] = {fabs(a.out[(size_t)m * N + n] - f) / sf, fabs(a.di[(size_t)m * K + k] - di) / sdi,
                           fabs(a.dw[(size_t)n * K + k] - dw) / sdw};
            for (int i = 0; i < 3; i++) worst = e[i] > worst ? e[i] : worst;
        }
        printf("lm_head %s: 1 and 3 threads bit-identical; worst spot error %.2e of sum|terms|\n",
               bf ? "bf16" : "f32", worst);
        CHECK(worst <= 1e-5, "lm_head %s: spot error %.2e", bf ? "bf16" : "f32", worst);
        free_results(&a);
        free_results(&b);
    }
    free(inp);
    free(w);
    free(dout);
}

/* The fp32 GEMM's exact contract: every element of C is one chain of FMAs in index
 * order, from the bias (forward), from +0 (th_mm_backward_set) or from C's value (accumulate),
 * however the driver blocks and splits it. Shapes: a dinp reduction over 180,000 (several
 * windows of the shared A), dw with the shared side A and C taller than one A block (300
 * rows), dw and forward with B shared, edge tiles everywhere. */
static void test_fma_chain(void) {
    int shapes[][3] = {{6, 180000, 16}, {40, 300, 700}, {270, 200, 40}, {13, 70, 520}};
    th_rng rng;
    th_rng_seed(&rng, 23);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        size_t nin = (size_t)M * K, nw = (size_t)N * K, nout = (size_t)M * N;
        float *inp = normals(&rng, nin), *w = normals(&rng, nw), *bias = normals(&rng, N), *dout = normals(&rng, nout);
        float *di0 = normals(&rng, nin), *dw0 = normals(&rng, nw);
        float *want[5], *got = malloc(sizeof(float) * (nw > nout ? (nw > nin ? nw : nin) : (nout > nin ? nout : nin)));
        size_t len[5] = {nout, nin, nw, nin, nw};
        for (int o = 0; o < 5; o++) want[o] = malloc(sizeof(float) * len[o]);
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                float c = bias[n];
                for (int k = 0; k < K; k++) c = fmaf(inp[(size_t)m * K + k], w[(size_t)n * K + k], c);
                want[0][(size_t)m * N + n] = c;
            }
        for (int acc = 0; acc < 2; acc++) {
            for (int m = 0; m < M; m++)
                for (int k = 0; k < K; k++) {
                    float c = acc ? di0[(size_t)m * K + k] : 0.0f;
                    for (int n = 0; n < N; n++) c = fmaf(dout[(size_t)m * N + n], w[(size_t)n * K + k], c);
                    want[1 + 2 * acc][(size_t)m * K + k] = c;
                }
            for (int n = 0; n < N; n++)
                for (int k = 0; k < K; k++) {
                    float c = acc ? dw0[(size_t)n * K + k] : 0.0f;
                    for (int m = 0; m < M; m++) c = fmaf(dout[(size_t)m * N + n], inp[(size_t)m * K + k], c);
                    want[2 + 2 * acc][(size_t)n * K + k] = c;
                }
        }
        const char *what[5] = {"forward", "dinp set", "dw set", "dinp +=", "dw +=", };
        for (int t = 1; t <= 3; t++) {
            th_threads_set(t);
            for (int o = 0; o < 5; o++) {
                if (o == 0) th_mm_forward(got, inp, w, bias, M, N, K);
                if (o == 1) th_mm_backward_set(got, NULL, NULL, dout, inp, w, M, N, K, TH_MM_SET_DINP);
                if (o == 2) th_mm_backward_set(NULL, got, NULL, dout, inp, w, M, N, K, TH_MM_SET_DW);
                if (o == 3) memcpy(got, di0, sizeof(float) * nin), th_mm_backward(got, NULL, NULL, dout, inp, w, M, N, K);
                if (o == 4) memcpy(got, dw0, sizeof(float) * nw), th_mm_backward(NULL, got, NULL, dout, inp, w, M, N, K);
                CHECK(memcmp(got, want[o], sizeof(float) * len[o]) == 0,
                      "f32 %s M=%d N=%d K=%d, %d threads: not one fmaf chain per element in index order", what[o], M,
                      N, K, t);
            }
        }
        for (int o = 0; o < 5; o++) free(want[o]);
        free(got), free(inp), free(w), free(bias), free(dout), free(di0), free(dw0);
    }
    th_threads_set(2);
}

/* bf16 set and accumulate with NULL outputs, against the oracle from the same start: dinp
 * alone written (dw, dbias NULL), then dw and dbias alone accumulated onto random values. */
static void test_bf16_set_acc(void) {
    enum { M = 19, N = 45, K = 37 };
    th_rng rng;
    th_rng_seed(&rng, 31);
    float *inp = normals(&rng, M * K), *w = normals(&rng, N * K), *dout = normals(&rng, M * N);
    float *dw0 = normals(&rng, N * K), *db0 = normals(&rng, N);
    float di[M * K], dw[N * K], db[N], di_ref[M * K], dw_ref[N * K], db_ref[N];
    for (int i = 0; i < M * K; i++) di[i] = NAN; // set must not read it
    th_mm_backward_set_bf16(di, NULL, NULL, dout, inp, w, M, N, K, TH_MM_SET_DINP | TH_MM_SET_DW);
    memcpy(dw, dw0, sizeof dw), memcpy(db, db0, sizeof db);
    th_mm_backward_bf16(NULL, dw, db, dout, inp, w, M, N, K);
    memset(di_ref, 0, sizeof di_ref);
    memcpy(dw_ref, dw0, sizeof dw), memcpy(db_ref, db0, sizeof db);
    if (pairs) {
        th_mm_backward_pairs_bf16(di_ref, NULL, NULL, dout, inp, w, M, N, K);
        th_mm_backward_pairs_bf16(NULL, dw_ref, NULL, dout, inp, w, M, N, K);
    } else {
        th_mm_backward_naive_bf16(di_ref, NULL, NULL, dout, inp, w, M, N, K);
        th_mm_backward_naive_bf16(NULL, dw_ref, NULL, dout, inp, w, M, N, K);
    }
    for (int n = 0; n < N; n++) { // the fp32 column sum, then added (the backends' bias_colsum)
        float s = 0;
        for (int m = 0; m < M; m++) s += dout[m * N + n];
        db_ref[n] += s;
    }
    CHECK(memcmp(di, di_ref, sizeof di) == 0, "%s bf16 set dinp alone: not the oracle's bits", backend);
    CHECK(memcmp(dw, dw_ref, sizeof dw) == 0 && memcmp(db, db_ref, sizeof db) == 0,
          "%s bf16 dw, dbias accumulated: not the oracle's bits", backend);
    free(inp), free(w), free(dout), free(dw0), free(db0);
}

/* vdpbf16ps's arithmetic as measured (th_mm_bf16_pair_step): one forward of K = 2 per case,
 * out = bias + pair, on the kernel and on the oracle step, with the value the rule predicts. */
static void test_pair_semantics(void) {
    struct {
        float acc, x0, y0, x1, y1, want;
        const char *what;
    } c[] = {
        {1.0f, -1.0f, 1.0f, 0x1p-12f, 0x1p-12f, 0.0f, "odd product first: 1 + 2^-24 ties to 1, then - 1 = 0"},
        {0.0f, 0x1p100f, 0x1p100f, -0x1p100f, 0x1p100f, -INFINITY, "products unrounded: -2^200 overflows, +2^200 does not"},
        {0x1p-140f, 1.0f, 0.0f, 0.0f, 0.0f, 0.0f, "a subnormal acc counts as zero"},
        {0x1.8p-126f, -0x1p-63f, 0x1p-63f, 0.0f, 0.0f, 0.0f, "a subnormal result is flushed"},
        {0.0f, 0x1p-130f, 1.0f, 0.0f, 0.0f, 0.0f, "a subnormal bf16 input counts as zero"},
        {0.5f, 3.0f, 1.25f, -2.0f, 0.75f, 2.75f, "exact values stay exact"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        float inp[2] = {c[i].x0, c[i].x1}, w[2] = {c[i].y0, c[i].y1}, out;
        th_mm_forward_bf16(&out, inp, w, &c[i].acc, 1, 1, 2);
        float step = th_mm_bf16_pair_step(c[i].acc, c[i].x0, c[i].y0, c[i].x1, c[i].y1);
        CHECK(bits(step) == bits(c[i].want), "pair step, %s: %a, the rule says %a", c[i].what, step, c[i].want);
        CHECK(bits(out) == bits(step), "vdpbf16ps, %s: %a, the oracle step %a", c[i].what, out, step);
    }
}

/* The plain fallback loops, taken when the packing buffer cannot be allocated (the first
 * allocation of each call made to fail): the naive oracle's bits, fp32 within rounding, and
 * in bf16 the index-order bits whatever the layout (they do not use vdpbf16ps). */
static void test_plain_fallback(void) {
    enum { M = 9, N = 21, K = 35 };
    th_rng rng;
    th_rng_seed(&rng, 41);
    float *inp = normals(&rng, M * K), *w = normals(&rng, N * K), *bias = normals(&rng, N), *dout = normals(&rng, M * N);
    for (int bf = 0; bf < 2; bf++) {
        results got, ref;
        alloc_results(&got, M, N, K);
        alloc_results(&ref, M, N, K);
        th_compute_select("naive");
        run(&ref, bf, inp, w, bias, dout, M, N, K);
        th_compute_select(backend);
        memset(got.di, 0, sizeof(float) * M * K), memset(got.dw, 0, sizeof(float) * N * K);
        th_alloc_fail_nth(1);
        if (bf) th_mm_forward_bf16(got.out, inp, w, bias, M, N, K);
        else th_mm_forward(got.out, inp, w, bias, M, N, K);
        long hit = th_alloc_fail_nth(1);
        if (bf) th_mm_backward_set_bf16(got.di, NULL, NULL, dout, inp, w, M, N, K, TH_MM_SET_DINP);
        else th_mm_backward_set(got.di, NULL, NULL, dout, inp, w, M, N, K, TH_MM_SET_DINP);
        hit += th_alloc_fail_nth(1);
        if (bf) th_mm_backward_bf16(NULL, got.dw, NULL, dout, inp, w, M, N, K);
        else th_mm_backward(NULL, got.dw, NULL, dout, inp, w, M, N, K);
        hit += th_alloc_fail_nth(0);
        CHECK(hit == 3, "%s: the packing allocation was not hit (%ld of 3)", backend, hit);
        double r1, r2, r3;
        double e1 = max_abs_diff(got.out, ref.out, M * N, &r1), e2 = max_abs_diff(got.di, ref.di, M * K, &r2);
        double e3 = max_abs_diff(got.dw, ref.dw, N * K, &r3);
        CHECK(bf ? e1 == 0 && e2 == 0 && e3 == 0 : e1 <= 1e-5 * r1 && e2 <= 1e-5 * r2 && e3 <= 1e-5 * r3,
              "%s %s plain fallback vs the naive oracle: %.2e %.2e %.2e", backend, bf ? "bf16" : "f32", e1, e2, e3);
        free_results(&got);
        free_results(&ref);
    }
    free(inp), free(w), free(bias), free(dout);
}

static void test_backend(void) {
    // M not a multiple of MR, N not of NR, K odd and above KC = 256, N above NC
    int shapes[][3] = {{1, 37, 19}, {5, 64, 48}, {17, 129, 33}, {13, 70, 520}, {70, 1100, 96}, {270, 200, 41}};
    th_rng rng;
    th_rng_seed(&rng, 5);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        check_shape(&rng, shapes[s][0], shapes[s][1], shapes[s][2]);
    printf("%s f32 and bf16%s match their oracles and give the same bits for 1, 2, 3 threads on %zu shapes\n",
           backend, pairs ? " (vdpbf16ps pairs)" : "", sizeof shapes / sizeof shapes[0]);
    test_packing_rounding();
    test_bf16_set_acc();
    test_plain_fallback();
    if (pairs) test_pair_semantics();
    test_lm_head();
    if (!pairs) test_fma_chain(); // fp32 only: once per backend
}

int main(void) {
    test_bf16_round();
    const char *backends[] = {"avx2", "avx512"};
    for (size_t b = 0; b < 2; b++) {
        backend = backends[b];
        if (th_compute_select(backend) != TH_OK) {
            printf("%s cannot run here (%s): its kernel checks skipped\n", backend, th_last_error());
            continue;
        }
        int is512 = strcmp(backend, "avx512") == 0;
        for (pairs = 0; pairs < 1 + is512; pairs++) {
            if (is512 && th_mm_avx512_bf16_dot(pairs) != pairs) {
                printf("avx512 bf16 with vdpbf16ps cannot run here (no AVX512_BF16 or no OS zmm state): skipped\n");
                continue;
            }
            test_backend();
        }
        if (is512) th_mm_avx512_bf16_dot(1);
    }
    th_threads_set(2);
    th_compute_select("auto");
    return test_summary();
}
