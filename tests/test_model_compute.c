/* test_model_compute.c: the compute backend registry (ggml's test-backend-ops idea): every
 * backend that can run here against the naive oracle on forward, decode (gemv) and backward
 * shapes with edge sizes; selection by name, "auto", unknown and unsupported names, the API
 * version check, NULL kernel entries falling back to naive, run-time CPU detection. */
#include <stdint.h>

#include "model/compute.h"
#include "test_util.h"
#include "thermo/model.h"

#ifdef THERMO_HAVE_BLAS
int openblas_get_num_threads(void);
#endif

static float *normals(th_rng *rng, size_t n) {
    float *p = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = (float)th_rng_normal(rng);
    return p;
}

/* ---------------------------------------------------------------------------------
 * every backend against naive */

/* The selected backend against the naive kernels on one shape: forward (M = 1 goes to gemv),
 * the full backward, and the backward with each gradient skipped (NULL) in turn. */
static void check_shape(const char *name, th_rng *rng, int M, int N, int K) {
    size_t nin = (size_t)M * K, nw = (size_t)N * K, nout = (size_t)M * N;
    float *inp = normals(rng, nin), *w = normals(rng, nw), *bias = normals(rng, N), *dout = normals(rng, nout);
    float *o1 = malloc(nout * 4), *o2 = malloc(nout * 4), *o3 = malloc(nout * 4);
    float *di1 = calloc(nin, 4), *di2 = calloc(nin, 4), *dw1 = calloc(nw, 4), *dw2 = calloc(nw, 4);
    float *db1 = calloc(N, 4), *db2 = calloc(N, 4);
    th_mm_forward_naive(o1, inp, w, bias, M, N, K);
    th_mm_forward(o2, inp, w, bias, M, N, K);
    th_mm_forward_naive(o3, inp, w, NULL, M, N, K);
    th_mm_backward_naive(di1, dw1, db1, dout, inp, w, M, N, K);
    th_mm_backward(di2, dw2, db2, dout, inp, w, M, N, K);
    // sums of K or M products of unit normals: error ~ sqrt(K)·ulp; bound 1e-4 relative
    double r1, r2, r3;
    double e1 = max_abs_diff(o2, o1, nout, &r1), e2 = max_abs_diff(di2, di1, nin, &r2);
    double e3 = max_abs_diff(dw2, dw1, nw, &r3), e4 = max_abs_diff(db2, db1, N, NULL);
    CHECK(e1 <= 1e-4 * r1 && e2 <= 1e-4 * r2 && e3 <= 1e-4 * r3 && e4 <= 1e-4 * r3,
          "%s M=%d N=%d K=%d: errors forward %.2e dinp %.2e dw %.2e dbias %.2e", name, M, N, K, e1, e2, e3, e4);
    th_mm_forward(o2, inp, w, NULL, M, N, K);
    CHECK(max_abs_diff(o2, o3, nout, &r1) <= 1e-4 * r1, "%s M=%d N=%d K=%d: forward without bias", name, M, N, K);

    // each gradient skipped in turn: the others are still the same as the full backward's
    // (a second accumulation doubles them), the skipped one is untouched
    for (int skip = 0; skip < 3; skip++) {
        float *di = calloc(nin, 4), *dw = calloc(nw, 4), *db = calloc(N, 4);
        th_mm_backward(skip == 0 ? NULL : di, skip == 1 ? NULL : dw, skip == 2 ? NULL : db, dout, inp, w, M, N, K);
        double f0 = max_abs_diff(di, di1, nin, NULL), f1 = max_abs_diff(dw, dw1, nw, NULL);
        double f2 = max_abs_diff(db, db1, N, NULL);
        int ok = 1;
        for (size_t i = 0; skip == 0 && i < nin; i++) ok &= di[i] == 0.0f;
        for (size_t i = 0; skip == 1 && i < nw; i++) ok &= dw[i] == 0.0f;
        for (int i = 0; skip == 2 && i < N; i++) ok &= db[i] == 0.0f;
        CHECK(ok, "%s M=%d N=%d K=%d: a NULL-skipped gradient (%d) was written", name, M, N, K, skip);
        CHECK((skip == 0 || f0 <= 1e-4 * r2) && (skip == 1 || f1 <= 1e-4 * r3) && (skip == 2 || f2 <= 1e-4 * r3),
              "%s M=%d N=%d K=%d, gradient %d skipped: errors %.2e %.2e %.2e", name, M, N, K, skip, f0, f1, f2);
        free(di);
        free(dw);
        free(db);
    }
    float *bufs[] = {inp, w, bias, dout, o1, o2, o3, di1, di2, dw1, dw2, db1, db2};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

static void test_backends_match_naive(void) {
    // M = 1: decode (gemv), N not a multiple of 4 or 16; the others: M not a multiple of the
    // register tile, N not a multiple of 32, K not a multiple of 16, and one above KC = 256
    int shapes[][3] = {{1, 37, 19}, {1, 130, 300}, {5, 64, 48}, {17, 129, 33}, {64, 96, 80}, {13, 70, 520}};
    size_t ns = sizeof shapes / sizeof shapes[0];
    int checked = 0;
    for (size_t b = 0; b < th_compute_count(); b++) {
        const char *name = th_compute_name(b);
        if (th_compute_probe(b) <= 0) {
            printf("%s: cannot run here, skipped\n", name);
            continue;
        }
        CHECK(th_compute_select(name) == TH_OK, "select %s: %s", name, th_last_error());
        CHECK(strcmp(th_compute_current(), name) == 0, "selected %s, current says %s", name, th_compute_current());
        th_rng rng;
        th_rng_seed(&rng, 3);
        for (size_t s = 0; s < ns; s++) check_shape(name, &rng, shapes[s][0], shapes[s][1], shapes[s][2]);
        printf("%s (score %d) matches the naive oracle on %zu shapes\n", name, th_compute_probe(b), ns);
        checked++;
    }
    CHECK(checked >= 1, "no backend can run here, not even naive");
    th_compute_select("auto");
}

/* ---------------------------------------------------------------------------------
 * the registry and the selection */

/* The score of the backend called name, -1 if none is. */
static int score_of(const char *name) {
    for (size_t i = 0; i < th_compute_count(); i++)
        if (strcmp(th_compute_name(i), name) == 0) return th_compute_probe(i);
    return -1;
}

static void test_registry(void) {
    size_t n = th_compute_count();
    CHECK(n >= 3 && score_of("naive") > 0 && score_of("blas") >= 0 && score_of("avx512") >= 0,
          "the registry lacks a backend (%zu listed)", n);
    CHECK(th_compute_name(n) == NULL && th_compute_probe(n) == 0, "past the end must be NULL and 0");

    // auto: the highest score, on the first use too
    int best = 0;
    const char *best_name = NULL;
    for (size_t i = 0; i < n; i++)
        if (th_compute_probe(i) > best) {
            best = th_compute_probe(i);
            best_name = th_compute_name(i);
        }
    CHECK(best_name && strcmp(th_compute_current(), best_name) == 0, "auto on first use picked %s, best is %s",
          th_compute_current(), best_name ? best_name : "none");
    CHECK(th_compute_select("naive") == TH_OK && strcmp(th_compute_current(), "naive") == 0, "select naive");
    CHECK(th_compute_select(NULL) == TH_OK && strcmp(th_compute_current(), best_name) == 0, "select NULL");
    CHECK(th_compute_select("naive") == TH_OK && th_compute_select("auto") == TH_OK &&
              strcmp(th_compute_current(), best_name) == 0,
          "select auto");
    printf("auto selects %s (score %d)\n", best_name, best);

    // unknown: TH_ERR_INVALID naming every backend with its score; the selection stays
    CHECK(th_compute_select("naive") == TH_OK, "select naive");
    CHECK(th_compute_select("cuda-someday") == TH_ERR_INVALID, "an unknown backend was accepted");
    const char *msg = th_last_error();
    for (size_t i = 0; i < n; i++) {
        char entry[64];
        snprintf(entry, sizeof entry, "%s %d", th_compute_name(i), th_compute_probe(i));
        CHECK(strstr(msg, entry), "the message lacks '%s': %s", entry, msg);
    }
    CHECK(strstr(msg, "cuda-someday"), "the message does not name the unknown backend: %s", msg);
    CHECK(strcmp(th_compute_current(), "naive") == 0, "a failed select changed the backend to %s",
          th_compute_current());

    // a registered backend that cannot run here: TH_ERR_UNSUPPORTED saying what it needs
    for (size_t i = 0; i < n; i++) {
        if (th_compute_probe(i) > 0) continue;
        CHECK(th_compute_select(th_compute_name(i)) == TH_ERR_UNSUPPORTED, "%s has score 0 but was selected",
              th_compute_name(i));
        char naive[32];
        snprintf(naive, sizeof naive, "naive %d", score_of("naive"));
        CHECK(strstr(th_last_error(), "needs") && strstr(th_last_error(), naive), "unhelpful message: %s",
              th_last_error());
        CHECK(strcmp(th_compute_current(), "naive") == 0, "a refused select changed the backend");
        printf("%s refused here: %s\n", th_compute_name(i), th_last_error());
    }
    th_compute_select("auto");
}

/* The CPU is asked at run time: avx512 scores > 0 exactly where the CPU has AVX-512F (the
 * build compiles the kernels on every x86-64 gcc build, whatever -march says). */
static void test_cpu_detection(void) {
    int avx512 = score_of("avx512");
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
    __builtin_cpu_init();
    int cpu = __builtin_cpu_supports("avx512f") ? 1 : 0;
    CHECK((avx512 > 0) == cpu, "avx512 score %d but the CPU %s AVX-512F", avx512, cpu ? "has" : "lacks");
    printf("this CPU %s AVX-512F: avx512 scores %d\n", cpu ? "has" : "lacks", avx512);
#endif
#ifdef THERMO_HAVE_BLAS
    CHECK(score_of("blas") > 0, "blas is built in but scores 0");
#else
    CHECK(score_of("blas") == 0, "blas scores %d in a build without OpenBLAS", score_of("blas"));
#endif
}

/* ---------------------------------------------------------------------------------
 * backends given by their table: version check, probe 0, NULL entries */

static int probe_one(void) { return 1; }
static int probe_zero(void) { return 0; }

static int forward_calls;
static void counting_forward(float *out, const float *inp, const float *w, const float *bias, int M, int N,
                             int K) {
    forward_calls++;
    th_mm_forward_naive(out, inp, w, bias, M, N, K);
}

static void test_select_ops(void) {
    CHECK(th_compute_select("naive") == TH_OK, "select naive");
    th_compute_ops future = {.name = "future", .api_version = TH_COMPUTE_API_VERSION + 1, .probe = probe_one};
    CHECK(th_compute_select_ops(&future) == TH_ERR_UNSUPPORTED, "a backend of another API version was accepted");
    CHECK(strstr(th_last_error(), "API version"), "message: %s", th_last_error());
    th_compute_ops absent = {.name = "absent", .api_version = TH_COMPUTE_API_VERSION, .probe = probe_zero,
                             .needs = "a machine that does not exist"};
    CHECK(th_compute_select_ops(&absent) == TH_ERR_UNSUPPORTED, "a backend with probe 0 was accepted");
    CHECK(strstr(th_last_error(), "a machine that does not exist"), "message: %s", th_last_error());
    CHECK(strcmp(th_compute_current(), "naive") == 0, "a refused backend was selected: %s", th_compute_current());

    // NULL entries fall back to naive (bit for bit); gemv NULL falls back to the backend's forward
    th_compute_ops bare = {.name = "bare", .api_version = TH_COMPUTE_API_VERSION, .probe = probe_one};
    th_compute_ops fwd_only = {.name = "fwd-only", .api_version = TH_COMPUTE_API_VERSION, .probe = probe_one,
                               .mm_forward = counting_forward};
    th_rng rng;
    th_rng_seed(&rng, 9);
    int M = 7, N = 33, K = 21;
    float *inp = normals(&rng, (size_t)M * K), *w = normals(&rng, (size_t)N * K), *dout = normals(&rng, (size_t)M * N);
    float *o1 = malloc((size_t)M * N * 4), *o2 = malloc((size_t)M * N * 4);
    float *d1 = calloc((size_t)N * K, 4), *d2 = calloc((size_t)N * K, 4);
    CHECK(th_compute_select_ops(&bare) == TH_OK && strcmp(th_compute_current(), "bare") == 0, "select bare");
    th_mm_forward(o2, inp, w, NULL, M, N, K);
    th_mm_backward(NULL, d2, NULL, dout, inp, w, M, N, K);
    th_mm_forward_naive(o1, inp, w, NULL, M, N, K);
    th_mm_backward_naive(NULL, d1, NULL, dout, inp, w, M, N, K);
    CHECK(memcmp(o1, o2, (size_t)M * N * 4) == 0 && memcmp(d1, d2, (size_t)N * K * 4) == 0,
          "a backend without kernels does not compute exactly what naive does");
    CHECK(th_compute_select_ops(&fwd_only) == TH_OK, "select fwd-only");
    th_mm_forward(o2, inp, w, NULL, 1, N, K);
    th_mm_forward(o2, inp, w, NULL, M, N, K);
    CHECK(forward_calls == 2, "decode without a gemv entry did not use the backend's forward (%d calls)",
          forward_calls);
    float *bufs[] = {inp, w, dout, o1, o2, d1, d2};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    th_compute_select("auto");
}

/* th_threads_set reaches every backend with its own pool (OpenBLAS's). */
static void test_threads(void) {
    int saved = th_threads_get();
    th_threads_set(1);
    CHECK(th_threads_get() == 1, "threads %d", th_threads_get());
#ifdef THERMO_HAVE_BLAS
    CHECK(openblas_get_num_threads() == 1, "OpenBLAS did not follow: %d threads", openblas_get_num_threads());
#endif
    th_threads_set(saved);
}

int main(void) {
    test_registry(); /* first: "auto" on first use */
    test_cpu_detection();
    test_backends_match_naive();
    test_select_ops();
    test_threads();
    return test_summary();
}
