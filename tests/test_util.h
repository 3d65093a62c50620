/* test_util.h: the few helpers every test program shares. CTest is the runner; each test
 * program counts its checks, prints every failure with file and line, ends with the line
 * "N passed, M failed" and exits non-zero if anything failed. */
#ifndef THERMO_TEST_UTIL_H
#define THERMO_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_passed, test_failed;

#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (cond) {                                                       \
            test_passed++;                                                \
        } else {                                                          \
            test_failed++;                                                \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                 \
            fprintf(stderr, "\n");                                        \
        }                                                                 \
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

#endif
