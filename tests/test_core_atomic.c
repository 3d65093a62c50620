/* test_core_atomic.c: th_atomic_file, the one writer every saved file goes through. The
 * test program defines fsync, fdatasync and rename itself (calling the C library's through
 * dlsym(RTLD_NEXT)), so the library's calls land here: it records their order and can make
 * each fail. Checks: the temporary is fsynced before it is renamed over the path and the
 * directory is fsynced after; a failed write, fsync, rename or a caller's own failure
 * leaves the old file byte for byte and no temporary; a real short write (RLIMIT_FSIZE)
 * is sticky; every allocation failure in open is TH_ERR_NOMEM. */
#include "thermo/core.h"

#include "test_util.h"

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------
 * the interposed calls */

#define MAX_EVENTS 32
static char events[MAX_EVENTS][600];
static int n_events, recording, fail_fsync, fail_rename;

static void record(const char *what, const char *a, const char *b) {
    if (!recording || n_events == MAX_EVENTS) return;
    snprintf(events[n_events++], sizeof events[0], "%s %s%s%s", what, a, b ? " " : "", b ? b : "");
}

static void record_fd(const char *what, int fd) {
    char link[64], target[512];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    target[n > 0 ? n : 0] = '\0';
    record(what, target, NULL);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "fsync");
    record_fd("fsync", fd);
    if (fail_fsync) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "fdatasync");
    record_fd("fdatasync", fd);
    return real(fd);
}

int rename(const char *from, const char *to) {
    static int (*real)(const char *, const char *);
    if (!real) *(void **)&real = dlsym(RTLD_NEXT, "rename");
    record("rename", from, to);
    if (fail_rename) {
        errno = EXDEV;
        return -1;
    }
    return real(from, to);
}

/* Index of the first event equal to `want`, -1 if none. */
static int event_at(const char *want) {
    for (int i = 0; i < n_events; i++)
        if (strcmp(events[i], want) == 0) return i;
    return -1;
}

static int renamed(void) {
    for (int i = 0; i < n_events; i++)
        if (strncmp(events[i], "rename ", 7) == 0) return 1;
    return 0;
}

static void start_recording(void) {
    n_events = 0;
    recording = 1;
}

/* ---------------------------------------------------------------------------------
 * the checks */

static char dir[4096], path[4200], tmp_path[4300];
static const char old_text[] = "old content, must survive any failure\n";

static void reset_old(void) {
    CHECK(test_write_text(path, old_text), "cannot write %s", path);
    unlink(tmp_path);
}

static void expect_old_intact(const char *what) {
    size_t n;
    char *got = test_read_file(path, &n);
    CHECK(got && n == strlen(old_text) && memcmp(got, old_text, n) == 0, "%s: old file changed", what);
    free(got);
    CHECK(access(tmp_path, F_OK) != 0, "%s: temporary %s left behind", what, tmp_path);
}

static void test_order(void) {
    unlink(path);
    start_recording();
    th_atomic_file *f;
    CHECK(th_atomic_open(path, &f) == TH_OK, "open: %s", th_last_error());
    th_atomic_write(f, "hello ", 6);
    fprintf(th_atomic_stream(f), "world %d\n", 42);
    CHECK(th_atomic_status(f) == TH_OK, "status before commit");
    CHECK(th_atomic_commit(f) == TH_OK, "commit: %s", th_last_error());
    recording = 0;
    size_t n;
    char *got = test_read_file(path, &n);
    CHECK(got && strcmp(got, "hello world 42\n") == 0, "content: %s", got ? got : "(none)");
    free(got);
    CHECK(access(tmp_path, F_OK) != 0, "temporary left after commit");

    char want[3][9000];
    snprintf(want[0], sizeof want[0], "fsync %s", tmp_path);
    snprintf(want[1], sizeof want[1], "rename %s %s", tmp_path, path);
    snprintf(want[2], sizeof want[2], "fsync %s", dir);
    int file_sync = event_at(want[0]), ren = event_at(want[1]), dir_sync = event_at(want[2]);
    for (int i = 0; i < n_events; i++) printf("  event %d: %s\n", i, events[i]);
    CHECK(file_sync >= 0, "the temporary was never fsynced");
    CHECK(ren >= 0, "never renamed");
    CHECK(file_sync < ren, "fsync of the file (%d) must come before the rename (%d)", file_sync, ren);
    CHECK(dir_sync > ren, "the directory must be fsynced after the rename (%d vs %d)", dir_sync, ren);
}

static void test_failures(void) {
    th_atomic_file *f;

    reset_old();
    CHECK(th_atomic_open(path, &f) == TH_OK, "open: %s", th_last_error());
    th_atomic_write(f, "partial", 7);
    th_atomic_fail(f, th_fail(TH_ERR_FORMAT, "caller gave up"));
    th_atomic_write(f, "more", 4);
    CHECK(th_atomic_status(f) == TH_ERR_FORMAT, "status after fail");
    CHECK(th_atomic_commit(f) == TH_ERR_FORMAT && strstr(th_last_error(), "caller gave up"),
          "commit after fail: %s", th_last_error());
    expect_old_intact("caller's failure");

    reset_old();
    fail_fsync = 1;
    start_recording();
    CHECK(th_atomic_open(path, &f) == TH_OK, "open: %s", th_last_error());
    th_atomic_write(f, "new", 3);
    CHECK(th_atomic_commit(f) == TH_ERR_IO && strstr(th_last_error(), tmp_path), "fsync failure: %s",
          th_last_error());
    recording = fail_fsync = 0;
    CHECK(!renamed() && n_events == 1, "a file whose fsync failed was renamed (%d events)", n_events);
    expect_old_intact("fsync failure");

    reset_old();
    fail_rename = 1;
    CHECK(th_atomic_open(path, &f) == TH_OK, "open: %s", th_last_error());
    th_atomic_write(f, "new", 3);
    CHECK(th_atomic_commit(f) == TH_ERR_IO && strstr(th_last_error(), "rename"), "rename failure: %s",
          th_last_error());
    fail_rename = 0;
    expect_old_intact("rename failure");

    /* a real short write: the file-size limit makes write(2) fail with EFBIG */
    reset_old();
    struct rlimit old_lim, lim;
    getrlimit(RLIMIT_FSIZE, &old_lim);
    lim = old_lim;
    lim.rlim_cur = 4096;
    signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0, "setrlimit");
    static char big[1 << 16];
    memset(big, 'x', sizeof big);
    CHECK(th_atomic_open(path, &f) == TH_OK, "open: %s", th_last_error());
    th_atomic_write(f, big, sizeof big);
    CHECK(th_atomic_status(f) == TH_ERR_IO, "a short write must be sticky");
    th_atomic_write(f, "tail", 4);
    CHECK(th_atomic_commit(f) == TH_ERR_IO && strstr(th_last_error(), "write failed"), "short write: %s",
          th_last_error());
    expect_old_intact("short write");

    /* the same through the stream: the error shows at commit */
    reset_old();
    CHECK(th_atomic_open(path, &f) == TH_OK, "open: %s", th_last_error());
    for (int i = 0; i < 4; i++) fwrite(big, 1, sizeof big, th_atomic_stream(f));
    CHECK(th_atomic_commit(f) == TH_ERR_IO, "stream short write: %s", th_last_error());
    setrlimit(RLIMIT_FSIZE, &old_lim);
    expect_old_intact("stream short write");

    reset_old();
    CHECK(th_atomic_open(path, &f) == TH_OK, "open: %s", th_last_error());
    th_atomic_write(f, "new", 3);
    CHECK(th_atomic_finish(f) == TH_OK, "finish: %s", th_last_error());
    th_atomic_abort(f);
    expect_old_intact("finish then abort");
    th_atomic_abort(NULL);

    char missing[4400];
    snprintf(missing, sizeof missing, "%s/no/such/dir/file", dir);
    f = (th_atomic_file *)1;
    CHECK(th_atomic_open(missing, &f) == TH_ERR_IO && f == NULL && strstr(th_last_error(), missing),
          "open in a missing directory: %s", th_last_error());
}

static void test_one_shot_and_nomem(void) {
    reset_old();
    CHECK(th_atomic_write_file(path, "abc", 3) == TH_OK, "write_file: %s", th_last_error());
    size_t n;
    char *got = test_read_file(path, &n);
    CHECK(got && n == 3 && memcmp(got, "abc", 3) == 0, "write_file content");
    free(got);

    int hit = 0, done = 0;
    for (long k = 1; k < 50 && !done; k++) {
        reset_old();
        th_alloc_fail_nth(k);
        th_status st = th_atomic_write_file(path, "new", 3);
        th_alloc_fail_nth(0);
        if (st == TH_OK) {
            done = 1;
        } else {
            hit++;
            CHECK(st == TH_ERR_NOMEM, "allocation %ld: %s", k, th_status_name(st));
            expect_old_intact("allocation failure");
        }
    }
    CHECK(done && hit >= 3, "allocation faults: %d hit, finished %d", hit, done);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s", test_tmp_dir("core_atomic"));
    char real[4096];
    if (realpath(dir, real)) snprintf(dir, sizeof dir, "%s", real); /* /proc/self/fd names are resolved */
    snprintf(path, sizeof path, "%s/file.txt", dir);
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp", path);
    test_order();
    test_failures();
    test_one_shot_and_nomem();
    return test_summary();
}
