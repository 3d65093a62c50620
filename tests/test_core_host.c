/* test_core_host.c: th_read_file (empty, small, a file past the first 64 KB buffer, a
 * missing path and a directory) and th_cpu_name (never empty, truncated to its buffer). */
#include "thermo/core.h"

#include "test_util.h"

static int write_bytes(const char *path, const char *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

int main(void) {
    const char *tmp = test_tmp_dir("core_host");
    char path[4200];
    size_t big_n = 200000; /* three doublings of the 64 KB start */
    char *big = malloc(big_n);
    CHECK(big != NULL, "malloc");
    if (!big) return test_summary();
    for (size_t i = 0; i < big_n; i++) big[i] = (char)(i * 131 % 251); /* NUL bytes included */
    snprintf(path, sizeof path, "%s/big.bin", tmp);
    CHECK(write_bytes(path, big, big_n), "write %s", path);
    char *data = NULL;
    size_t n = 0;
    CHECK(th_read_file(path, &data, &n) == TH_OK && n == big_n && !memcmp(data, big, n) && data[n] == '\0',
          "200,000 bytes read back exactly, NUL after: %zu", n);
    th_free(data);
    snprintf(path, sizeof path, "%s/empty", tmp);
    CHECK(write_bytes(path, "", 0), "write %s", path);
    CHECK(th_read_file(path, &data, &n) == TH_OK && n == 0 && data && data[0] == '\0', "empty file");
    th_free(data);
    snprintf(path, sizeof path, "%s/missing", tmp);
    data = (char *)1;
    n = 7;
    CHECK(th_read_file(path, &data, &n) == TH_ERR_IO && data == NULL && n == 0 && strstr(th_last_error(), path),
          "missing file: %s", th_last_error());
    CHECK(th_read_file(tmp, &data, &n) == TH_ERR_IO && data == NULL, "a directory: %s", th_last_error());
    free(big);

    char cpu[256], small[5];
    th_cpu_name(cpu, sizeof cpu);
    th_cpu_name(small, sizeof small);
    printf("cpu: %s\n", cpu);
    CHECK(cpu[0] != '\0' && strlen(small) <= 4 && !strncmp(cpu, small, strlen(small)), "cpu name %s / %s", cpu,
          small);
    return test_summary();
}
