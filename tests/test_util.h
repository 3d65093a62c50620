/* test_util.h: the one harness every test program shares. CTest is the runner; each test
 * program counts its checks, prints every failure with file, line and the library's last
 * error, ends with the line "N passed, M failed" and exits non-zero if anything failed.
 * Also: scratch directories, whole-file helpers and a tiny random model. Test code only. */
#ifndef THERMO_TEST_UTIL_H
#define THERMO_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "thermo/core.h"
#include "thermo/model.h"

static int test_passed, test_failed;

#define CHECK(cond, ...)                                                            \
    do {                                                                            \
        if (cond) {                                                                 \
            test_passed++;                                                          \
        } else {                                                                    \
            test_failed++;                                                          \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);         \
            fprintf(stderr, __VA_ARGS__);                                           \
            fprintf(stderr, "  [last error: %s]\n", th_last_error());               \
        }                                                                           \
    } while (0)

/* A failure with the expected status whose message mentions `needle`. */
#define CHECK_FAIL(expr, status, needle, what)                                      \
    do {                                                                            \
        th_status s_ = (expr);                                                      \
        CHECK(s_ == (status) && strstr(th_last_error(), (needle)) != NULL,          \
              "%s: got %s, want %s with \"%s\"", (what), th_status_name(s_),         \
              th_status_name(status), (needle));                                    \
    } while (0)

/* Ends the program with the summary line. */
static inline int test_summary(void) {
    printf("%d passed, %d failed\n", test_passed, test_failed);
    return test_failed ? 1 : 0;
}

/* The repository root: $THERMO_SOURCE_DIR (set by CTest) or the working directory. */
static inline const char *test_source_dir(void) {
    const char *d = getenv("THERMO_SOURCE_DIR");
    return d && *d ? d : ".";
}

/* A scratch directory for this test program (created; removed by nobody: CTest runs in a
 * build tree). */
static inline const char *test_tmp_dir(const char *name) {
    static char path[4096];
    const char *b = getenv("THERMO_BUILD_DIR");
    snprintf(path, sizeof path, "%s/test-tmp/%s", b && *b ? b : "/tmp/thermo-tests", name);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot create %s\n", path);
        exit(2);
    }
    return path;
}

static char scratch_dir[256];

/* A fresh directory under $TMPDIR (or /tmp), removed by scratch_cleanup. */
static inline const char *scratch_make(const char *tag) {
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch_dir, sizeof scratch_dir, "%s/thermo_%s_XXXXXX", tmp ? tmp : "/tmp", tag);
    if (!mkdtemp(scratch_dir)) {
        fprintf(stderr, "FAIL cannot create a scratch directory\n");
        exit(1);
    }
    return scratch_dir;
}

static inline void scratch_cleanup(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch_dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", scratch_dir);
}

/* scratch_dir/name in one of 8 rotating buffers: copy it (SPATH) to keep it longer. */
static inline const char *spath(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", scratch_dir, name);
    return p;
}
#define SPATH(var, name)                                                            \
    char var[512];                                                                  \
    snprintf(var, sizeof var, "%s", spath(name))

/* dir/name in one of 8 rotating buffers (exits if it does not fit). */
static inline char *test_path_in(const char *dir, const char *name) {
    static char buf[8][4096];
    static int k;
    char *p = buf[k++ % 8];
    if (snprintf(p, sizeof buf[0], "%s/%s", dir, name) >= (int)sizeof buf[0]) {
        fprintf(stderr, "FAIL: path too long: %s/%s\n", dir, name);
        exit(1);
    }
    return p;
}

/* ---------------------------------------------------------------------------------
 * whole files */

/* The file's bytes in a malloc'd buffer with a NUL after them (NULL if unreadable);
 * *len (may be NULL) gets the size. void * so that text and byte users both take it. */
static inline void *test_read_file(const char *path, size_t *len) {
    if (len) *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (!buf) return NULL;
    buf[n] = '\0';
    if (len) *len = (size_t)n;
    return buf;
}

/* Writes n bytes to path (not atomically: tests set up fixtures with it). 1 on success. */
static inline int test_write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static inline int test_write_text(const char *path, const char *text) {
    return test_write_file(path, text, strlen(text));
}

static inline int test_file_exists(const char *path) { return access(path, F_OK) == 0; }

static inline int test_same_file(const char *a, const char *b) {
    size_t na, nb;
    char *pa = test_read_file(a, &na), *pb = test_read_file(b, &nb);
    int same = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return same;
}

/* ---------------------------------------------------------------------------------
 * numbers and models */

/* Max |a - b| over n floats, and the largest |b| (for relative errors). */
static inline double max_abs_diff(const float *a, const float *b, size_t n, double *max_ref) {
    double d = 0.0, r = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= d)) d = e; /* NaN propagates as failure */
        if (fabs((double)b[i]) > r) r = fabs((double)b[i]);
    }
    if (max_ref) *max_ref = r;
    return d;
}

/* A small random model (L=2, H=2, C=16, V=50 (padded by llm.c), T=8). */
static inline th_gpt2 *tiny_model(uint64_t seed) {
    th_gpt2_config cfg = {8, 50, 2, 2, 16, 1e-5f};
    th_gpt2 *m = NULL;
    if (th_gpt2_create(&cfg, &m) != TH_OK) {
        fprintf(stderr, "FAIL cannot create a model: %s\n", th_last_error());
        exit(1);
    }
    /* every parameter distinct and non-trivial, so a misplaced one shows */
    th_rng rng;
    th_rng_seed(&rng, seed);
    float *p = th_gpt2_params(m);
    size_t n = th_gpt2_num_params(&cfg);
    for (size_t i = 0; i < n; i++) p[i] = (float)th_rng_normal(&rng);
    return m;
}

static inline int same_params(th_gpt2 *a, th_gpt2 *b) {
    const th_gpt2_config *ca = th_gpt2_get_config(a), *cb = th_gpt2_get_config(b);
    if (memcmp(ca, cb, sizeof *ca) != 0) return 0;
    return memcmp(th_gpt2_params(a), th_gpt2_params(b), th_gpt2_num_params(ca) * 4) == 0;
}

/* Greedy decoding of `m` from `prompt` (n_prompt tokens) for `steps` tokens: tokens (steps)
 * and every step's logits (steps, V), the first from the prompt's prefill. 1 on success. */
static inline int test_greedy(th_gpt2 *m, const int *prompt, int n_prompt, int steps, int *tokens, float *logits) {
    int V = th_gpt2_get_config(m)->vocab_size;
    th_gpt2_kv *kv = NULL;
    int ok = th_gpt2_kv_create(m, n_prompt + steps, &kv) == TH_OK &&
             th_gpt2_infer(m, kv, prompt, n_prompt, logits, 0) == TH_OK;
    for (int s = 0; ok && s < steps; s++) {
        const float *l = logits + (size_t)s * V;
        int best = 0;
        for (int i = 1; i < V; i++) best = l[i] > l[best] ? i : best;
        tokens[s] = best;
        if (s + 1 < steps) ok = th_gpt2_infer(m, kv, &best, 1, logits + (size_t)(s + 1) * V, 0) == TH_OK;
    }
    th_gpt2_kv_free(kv);
    return ok;
}

#endif
