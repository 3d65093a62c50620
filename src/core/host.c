/* host.c: what the program reads from the host as a whole: a file read in one go (data
 * for the benchmarks, small configuration files) and the CPU's name for reports. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "thermo/core.h"

th_status th_read_file(const char *path, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    th_status st = TH_OK;
    size_t cap = 1 << 16, n = 0;
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return th_fail(TH_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (!(buf = th_alloc(cap + 1))) {
        st = th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (;;) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *bigger = th_realloc(buf, 2 * cap + 1);
        if (!bigger) {
            st = th_fail(TH_ERR_NOMEM, "%s: out of memory past %zu bytes", path, n);
            goto done;
        }
        buf = bigger;
        cap *= 2;
    }
    if (ferror(f)) {
        st = th_fail(TH_ERR_IO, "%s: read failed after %zu bytes", path, n);
        goto done;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    buf = NULL;
done:
    th_free(buf);
    fclose(f);
    return st;
}

void th_cpu_name(char *buf, size_t cap) {
    if (cap == 0) return;
    snprintf(buf, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        char *c = strchr(line, ':');
        if (!c) continue;
        c++;
        while (*c == ' ' || *c == '\t') c++;
        c[strcspn(c, "\n")] = '\0';
        if (*c) snprintf(buf, cap, "%s", c);
        break;
    }
    fclose(f);
}
