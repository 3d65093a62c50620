/* host.c: what the program reads from the host as a whole: a file read in one go (data
 * for the benchmarks, small configuration files), a regular file opened for the loaders
 * that read it themselves, and the CPU's name for reports. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

th_status th_open_regular(const char *path, int *fd, uint64_t *size) {
    *fd = -1;
    *size = 0;
    int f = open(path, O_RDONLY | O_CLOEXEC);
    if (f < 0) return th_fail(TH_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(f, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(f);
        return th_fail(TH_ERR_IO, "%s: not a regular file", path);
    }
    *fd = f;
    *size = (uint64_t)st.st_size;
    return TH_OK;
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

th_status th_mkdir_p(const char *dir) {
    char tmp[4096];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof tmp) return th_fail(TH_ERR_INVALID, "directory '%s': bad length", dir);
    memcpy(tmp, dir, len + 1);
    for (char *p = tmp + 1;; p++) {
        if (*p != '/' && *p != '\0') continue;
        char c = *p;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && access(tmp, F_OK) != 0)
            return th_fail(TH_ERR_IO, "cannot create the directory %s: %s", tmp, strerror(errno));
        if (c == '\0') break;
        *p = c;
    }
    return TH_OK;
}
