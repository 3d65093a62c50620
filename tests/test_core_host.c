/* test_core_host.c: th_read_file (empty, small, a file past the first 64 KB buffer, a
 * missing path and a directory), th_open_regular (a file, its size, a missing path, a
 * directory) and th_cpu_name (never empty, truncated to its buffer). */
#include <sys/stat.h>
#include "thermo/core.h"

#include "test_util.h"

int main(void) {
    const char *tmp = test_tmp_dir("core_host");
    char path[4200];
    size_t big_n = 200000; /* three doublings of the 64 KB start */
    char *big = malloc(big_n);
    CHECK(big != NULL, "malloc");
    if (!big) return test_summary();
    for (size_t i = 0; i < big_n; i++) big[i] = (char)(i * 131 % 251); /* NUL bytes included */
    snprintf(path, sizeof path, "%s/big.bin", tmp);
    CHECK(test_write_file(path, big, big_n), "write %s", path);
    char *data = NULL;
    size_t n = 0;
    CHECK(th_read_file(path, &data, &n) == TH_OK && n == big_n && !memcmp(data, big, n) && data[n] == '\0',
          "200,000 bytes read back exactly, NUL after: %zu", n);
    th_free(data);
    snprintf(path, sizeof path, "%s/empty", tmp);
    CHECK(test_write_file(path, "", 0), "write %s", path);
    CHECK(th_read_file(path, &data, &n) == TH_OK && n == 0 && data && data[0] == '\0', "empty file");
    th_free(data);
    snprintf(path, sizeof path, "%s/missing", tmp);
    data = (char *)1;
    n = 7;
    CHECK(th_read_file(path, &data, &n) == TH_ERR_IO && data == NULL && n == 0 && strstr(th_last_error(), path),
          "missing file: %s", th_last_error());
    CHECK(th_read_file(tmp, &data, &n) == TH_ERR_IO && data == NULL, "a directory: %s", th_last_error());

    snprintf(path, sizeof path, "%s/big.bin", tmp);
    int fd = -2;
    uint64_t size = 0;
    CHECK(th_open_regular(path, &fd, &size) == TH_OK && fd >= 0 && size == big_n, "open regular: %llu bytes",
          (unsigned long long)size);
    if (fd >= 0) close(fd);
    snprintf(path, sizeof path, "%s/missing", tmp);
    CHECK(th_open_regular(path, &fd, &size) == TH_ERR_IO && fd == -1 && strstr(th_last_error(), "cannot open"),
          "missing: %s", th_last_error());
    CHECK(th_open_regular(tmp, &fd, &size) == TH_ERR_IO && fd == -1 && strstr(th_last_error(), "not a regular file"),
          "directory: %s", th_last_error());
    free(big);

    char cpu[256], small[5];
    th_cpu_name(cpu, sizeof cpu);
    th_cpu_name(small, sizeof small);
    printf("cpu: %s\n", cpu);
    CHECK(cpu[0] != '\0' && strlen(small) <= 4 && !strncmp(cpu, small, strlen(small)), "cpu name %s / %s", cpu,
          small);

    // th_mkdir_p: parents created, an existing directory is fine, a file in the way is named
    char nested[4300], blocked[4300];
    snprintf(nested, sizeof nested, "%s/a/b/c", tmp);
    CHECK(th_mkdir_p(nested) == TH_OK && th_mkdir_p(nested) == TH_OK, "mkdir -p: %s", th_last_error());
    struct stat sb;
    CHECK(stat(nested, &sb) == 0 && S_ISDIR(sb.st_mode), "%s was not created", nested);
    snprintf(blocked, sizeof blocked, "%s/a/file", tmp);
    test_write_text(blocked, "x");
    snprintf(nested, sizeof nested, "%s/a/file/d", tmp);
    CHECK_FAIL(th_mkdir_p(nested), TH_ERR_IO, "a/file", "a file in the way");
    CHECK_FAIL(th_mkdir_p(""), TH_ERR_INVALID, "bad length", "an empty path");
    return test_summary();
}
