/* sysfs.c: the file helpers every sysfs/procfs backend uses, and the class-directory scan
 * they start with (hwmon, thermal, powercap). A sensor file can vanish
 * (hot-unplug, module unload), refuse us (RAPL energy_uj is root-only since Linux 5.10),
 * hiccup (hwmon returns EIO/ENODATA) or hold garbage; each case gets its own status,
 * health diagnosis and a message naming the file, so nothing turns into a silent zero. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sense/sense_internal.h"

/* ---------------------------------------------------------------------------------
 * fault injection (tests) */

static char inject_suffix[256];
static int inject_err;

void th_sense_inject_errno(const char *suffix, int err) {
    if (!suffix || !err) {
        inject_suffix[0] = '\0';
        inject_err = 0;
        return;
    }
    snprintf(inject_suffix, sizeof inject_suffix, "%s", suffix);
    inject_err = err;
}

static int injected(const char *path) {
    if (!inject_err) return 0;
    size_t n = strlen(path), k = strlen(inject_suffix);
    return n >= k && strcmp(path + n - k, inject_suffix) == 0;
}

/* ---------------------------------------------------------------------------------
 * files */

th_status th_sense_path(char *buf, size_t n, const char *root, const char *rel) {
    if (!root || !*root) root = "/";
    size_t rl = strlen(root);
    const char *sep = (rl > 0 && root[rl - 1] == '/') ? "" : "/";
    while (*rel == '/') rel++;
    int w = snprintf(buf, n, "%s%s%s", root, sep, rel);
    if (w < 0 || (size_t)w >= n) return th_fail(TH_ERR_INVALID, "sensor path too long: %s%s%s", root, sep, rel);
    return TH_OK;
}

int th_sense_exists(const char *path) { return access(path, F_OK) == 0; }

static th_status read_errno(const char *path, int err, th_sense_health *fault) {
    th_sense_health f;
    th_status st;
    if (err == ENOENT || err == ENODEV || err == ENXIO || err == ENOTDIR) {
        f = TH_HEALTH_VANISHED;
        st = th_fail(TH_ERR_IO, "%s: sensor vanished (%s)", path, strerror(err));
    } else if (err == EACCES || err == EPERM) {
        f = TH_HEALTH_VANISHED;
        st = th_fail(TH_ERR_IO,
                     "%s: needs read permission (%s); run as root, or grant read access with "
                     "`sudo chmod o+r %s`",
                     path, strerror(err), path);
    } else {
        f = TH_HEALTH_STALE;
        st = th_fail(TH_ERR_IO, "%s: read failed (%s)", path, strerror(err));
    }
    if (fault) *fault = f;
    return st;
}

th_status th_sense_read_text(const char *path, char *buf, size_t n, th_sense_health *fault) {
    if (fault) *fault = TH_HEALTH_OK;
    if (injected(path)) return read_errno(path, inject_err, fault);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return read_errno(path, errno, fault);
    ssize_t got;
    do {
        got = read(fd, buf, n - 1);
    } while (got < 0 && errno == EINTR);
    int err = errno;
    close(fd);
    if (got < 0) return read_errno(path, err, fault);
    buf[got] = '\0';
    char *nl = strchr(buf, '\n');
    if (nl) *nl = '\0';
    size_t len = strlen(buf);
    while (len > 0 && isspace((unsigned char)buf[len - 1])) buf[--len] = '\0';
    if (len == 0) {
        if (fault) *fault = TH_HEALTH_NONSENSE;
        return th_fail(TH_ERR_FORMAT, "%s: empty", path);
    }
    return TH_OK;
}

th_status th_sense_read_ll(const char *path, long long *v, th_sense_health *fault) {
    char buf[128];
    th_status st = th_sense_read_text(path, buf, sizeof buf, fault);
    if (st != TH_OK) return st;
    char *end;
    errno = 0;
    long long x = strtoll(buf, &end, 10);
    if (errno || end == buf || *end != '\0') {
        if (fault) *fault = TH_HEALTH_NONSENSE;
        return th_fail(TH_ERR_FORMAT, "%s: expected an integer, read '%.40s'", path, buf);
    }
    *v = x;
    return TH_OK;
}

/* Natural order: compare digit runs by value, so hwmon2 < hwmon10, intel-rapl:0:1 < intel-rapl:0:10. */
static int natural_cmp(const void *a, const void *b) {
    const char *x = a, *y = b;
    while (*x && *y) {
        if (isdigit((unsigned char)*x) && isdigit((unsigned char)*y)) {
            unsigned long long u = strtoull(x, (char **)&x, 10), v = strtoull(y, (char **)&y, 10);
            if (u != v) return u < v ? -1 : 1;
        } else {
            if (*x != *y) return (unsigned char)*x - (unsigned char)*y;
            x++;
            y++;
        }
    }
    return (unsigned char)*x - (unsigned char)*y;
}

size_t th_sense_list_dir(const char *dir, const char *prefix, th_sense_name *names, size_t max) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    size_t n = 0, k = strlen(prefix);
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        if (e->d_name[0] == '.' || strncmp(e->d_name, prefix, k) != 0) continue;
        snprintf(names[n++], sizeof names[0], "%s", e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof names[0], natural_cmp);
    return n;
}

int th_sense_scan_class(const char *root, const char *cls, const char *prefix, size_t max, th_sense_class_fn cb,
                        void *user) {
    char base[512], rel[128], dir[800];
    th_sense_name names[TH_SENSE_CLASS_MAX];
    th_fmt(rel, sizeof rel, "sys/class/%s", cls);
    if (th_sense_path(base, sizeof base, root, rel) != TH_OK) return 0;
    size_t n = th_sense_list_dir(base, prefix, names, max < TH_SENSE_CLASS_MAX ? max : TH_SENSE_CLASS_MAX);
    int kept = 0;
    for (size_t i = 0; i < n; i++) {
        th_fmt(dir, sizeof dir, "%s/%s", base, names[i]);
        kept += cb(dir, names[i], user);
    }
    return kept;
}

/* ---------------------------------------------------------------------------------
 * reading lists */

const char *th_reading_unit(th_reading_kind kind) {
    switch (kind) {
    case TH_KIND_TEMP:
    case TH_KIND_LIMIT: return "°C";
    case TH_KIND_POWER: return "W";
    case TH_KIND_ENERGY: return "J";
    case TH_KIND_UTIL: return "fraction";
    }
    return "";
}

void th_reading_add(th_reading_list *l, const char *name, th_reading_kind kind, const char *source, double value,
                    int measured, th_status st, const char *message) {
    if (l->err != TH_OK) return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        th_reading *v = th_calloc(cap, sizeof *v);
        if (!v) {
            l->err = TH_ERR_NOMEM;
            return;
        }
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        th_free(l->v);
        l->v = v;
        l->cap = cap;
    }
    th_reading *r = &l->v[l->n++];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->kind = kind;
    snprintf(r->source, sizeof r->source, "%s", source);
    r->value = st == TH_OK ? value : NAN;
    r->unit = th_reading_unit(kind);
    r->measured = measured;
    r->status = st;
    snprintf(r->message, sizeof r->message, "%s", st == TH_OK ? "" : (message ? message : th_status_name(st)));
}
