/* atomic_file.c: the one writer every saved file goes through (see core.h): bytes go to
 * "<path>.tmp", and only a complete, fsynced temporary is renamed over the path, so a crash
 * or a full disk never leaves a half-written file where a good one was. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "thermo/core.h"

struct th_atomic_file {
    FILE *f;
    char *path;     /* the file being replaced */
    char *tmp_path; /* path + ".tmp" */
    char *dir_path; /* the directory holding path, fsynced after the rename */
    th_status status;
};

static void atomic_release(th_atomic_file *a) {
    th_free(a->path);
    th_free(a->tmp_path);
    th_free(a->dir_path);
    th_free(a);
}

/* The directory part of path ("." for a bare name, "/" for a file in the root), th_alloc'd.
 * Worked out at open so that publishing allocates nothing. */
static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    size_t len = slash ? (size_t)(slash - path) : 0;
    char *dir = th_alloc(len + 2);
    if (!dir) return NULL;
    if (!slash) {
        memcpy(dir, ".", 2);
    } else if (len == 0) {
        memcpy(dir, "/", 2);
    } else {
        memcpy(dir, path, len);
        dir[len] = '\0';
    }
    return dir;
}

th_status th_atomic_open(const char *path, th_atomic_file **out) {
    *out = NULL;
    size_t len = strlen(path);
    th_status st = TH_OK;
    th_atomic_file *a = th_calloc(1, sizeof *a);
    if (!a) return th_fail(TH_ERR_NOMEM, "%s: out of memory for the writer", path);
    a->path = th_alloc(len + 1);
    a->tmp_path = th_alloc(len + 5);
    a->dir_path = dir_of(path);
    if (!a->path || !a->tmp_path || !a->dir_path) {
        st = th_fail(TH_ERR_NOMEM, "%s: out of memory for the file name", path);
        goto done;
    }
    memcpy(a->path, path, len + 1);
    memcpy(a->tmp_path, path, len);
    memcpy(a->tmp_path + len, ".tmp", 5);
    a->f = fopen(a->tmp_path, "w+b"); /* update mode: writers may seek back and read */
    if (!a->f) st = th_fail(TH_ERR_IO, "%s: cannot create: %s", a->tmp_path, strerror(errno));
done:
    if (st != TH_OK) {
        atomic_release(a);
        return st;
    }
    *out = a;
    return TH_OK;
}

FILE *th_atomic_stream(th_atomic_file *f) { return f->f; }

void th_atomic_write(th_atomic_file *f, const void *p, size_t n) {
    if (f->status != TH_OK || n == 0) return;
    if (fwrite(p, 1, n, f->f) != n)
        f->status = th_fail(TH_ERR_IO, "%s: write failed: %s", f->tmp_path, strerror(errno));
}

void th_atomic_fail(th_atomic_file *f, th_status st) {
    if (f->status == TH_OK) f->status = st != TH_OK ? st : TH_ERR_IO;
}

th_status th_atomic_status(const th_atomic_file *f) { return f->status; }

void th_atomic_abort(th_atomic_file *f) {
    if (!f) return;
    if (f->f) fclose(f->f);
    unlink(f->tmp_path);
    atomic_release(f);
}

th_status th_atomic_finish(th_atomic_file *f) {
    th_status st = f->status; /* a failed write's message stands */
    if (st == TH_OK && ferror(f->f))
        st = th_fail(TH_ERR_IO, "%s: write failed on the stream", f->tmp_path);
    if (st == TH_OK && (fflush(f->f) != 0 || fsync(fileno(f->f)) != 0))
        st = th_fail(TH_ERR_IO, "%s: flush failed: %s", f->tmp_path, strerror(errno));
    if (fclose(f->f) != 0 && st == TH_OK)
        st = th_fail(TH_ERR_IO, "%s: close failed: %s", f->tmp_path, strerror(errno));
    f->f = NULL;
    if (st != TH_OK) th_atomic_abort(f);
    return st;
}

/* Makes the rename durable. Best effort: some filesystems refuse fsync on a directory,
 * and by now the new file is in place either way. */
static void fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return;
    fsync(fd);
    close(fd);
}

th_status th_atomic_publish(th_atomic_file *f) {
    th_status st = TH_OK;
    if (rename(f->tmp_path, f->path) != 0) {
        st = th_fail(TH_ERR_IO, "%s: cannot rename %s over it: %s", f->path, f->tmp_path, strerror(errno));
        unlink(f->tmp_path);
    } else {
        fsync_dir(f->dir_path);
    }
    atomic_release(f);
    return st;
}

th_status th_atomic_commit(th_atomic_file *f) {
    th_status st = th_atomic_finish(f);
    return st != TH_OK ? st : th_atomic_publish(f);
}

int th_atomic_json_sink(const char *buf, size_t n, void *user) {
    th_atomic_write(user, buf, n);
    return 0;
}

th_status th_atomic_write_file(const char *path, const void *data, size_t n) {
    th_atomic_file *f;
    th_status st = th_atomic_open(path, &f);
    if (st != TH_OK) return st;
    th_atomic_write(f, data, n);
    return th_atomic_commit(f);
}
