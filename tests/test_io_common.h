/* test_io_common.h: the small harness the io tests share: CHECK counters, a scratch
 * directory, whole-file helpers and a tiny random model. Header-only, test code only. */
#ifndef THERMO_TEST_IO_COMMON_H
#define THERMO_TEST_IO_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io_internal.h"
#include "thermo/io.h"

static int n_pass, n_fail;

#define CHECK(cond, ...)                                                              \
    do {                                                                              \
        if (cond) {                                                                   \
            n_pass++;                                                                 \
        } else {                                                                      \
            n_fail++;                                                                 \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                               \
            printf(__VA_ARGS__);                                                      \
            printf("  [last error: %s]\n", th_last_error());                          \
        }                                                                             \
    } while (0)

/* A failure with the expected status whose message mentions `needle`. */
#define CHECK_FAIL(expr, status, needle, what)                                        \
    do {                                                                              \
        th_status s_ = (expr);                                                        \
        CHECK(s_ == (status) && strstr(th_last_error(), (needle)) != NULL,            \
              "%s: got %s, want %s with \"%s\"", (what), th_status_name(s_),           \
              th_status_name(status), (needle));                                      \
    } while (0)

static inline int test_summary(void) {
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}

static char scratch_dir[256];

/* A fresh directory under $TMPDIR (or /tmp), removed by scratch_cleanup. */
static inline const char *scratch_make(const char *tag) {
    const char *tmp = getenv("TMPDIR");
    snprintf(scratch_dir, sizeof scratch_dir, "%s/thermo_%s_XXXXXX", tmp ? tmp : "/tmp", tag);
    if (!mkdtemp(scratch_dir)) {
        printf("FAIL cannot create a scratch directory\n");
        exit(1);
    }
    return scratch_dir;
}

static inline void scratch_cleanup(void) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", scratch_dir);
    if (system(cmd) != 0) printf("warning: could not remove %s\n", scratch_dir);
}

/* scratch_dir/name in one of 8 rotating buffers: copy it (SPATH) to keep it longer. */
static inline const char *spath(const char *name) {
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", scratch_dir, name);
    return p;
}
#define SPATH(var, name)                                                              \
    char var[512];                                                                    \
    snprintf(var, sizeof var, "%s", spath(name))

/* Whole file into a malloc'd buffer (NULL if unreadable). */
static inline unsigned char *slurp(const char *path, size_t *len) {
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc(n > 0 ? (size_t)n : 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}

static inline int spit(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static inline int file_exists(const char *path) { return access(path, F_OK) == 0; }

static inline int same_file(const char *a, const char *b) {
    size_t na, nb;
    unsigned char *pa = slurp(a, &na), *pb = slurp(b, &nb);
    int same = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return same;
}

/* A small random model (L=2, H=2, C=16, V=50 (padded by llm.c), T=8). */
static inline th_gpt2 *tiny_model(uint64_t seed) {
    th_gpt2_config cfg = {8, 50, 2, 2, 16, 1e-5f};
    th_gpt2 *m = NULL;
    if (th_gpt2_create(&cfg, &m) != TH_OK) {
        printf("FAIL cannot create a model: %s\n", th_last_error());
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

#endif
