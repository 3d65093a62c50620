/* dist_util.h: what the data-parallel tests share: a tiny model's token shard, thermo
 * started by mpirun on this machine only (shared memory, bounded by `timeout`), and byte
 * comparison of saved models. Test code only. */
#ifndef THERMO_TEST_DIST_UTIL_H
#define THERMO_TEST_DIST_UTIL_H

#include <stdlib.h>
#include <sys/wait.h>

#include "test_util.h"
#include "thermo/dist.h"
#include "thermo/text.h"

#ifndef THERMO_MPIEXEC
#define THERMO_MPIEXEC "mpirun"
#endif

/* The training run every comparison uses: the tiny preset from scratch, 1 thread (the
 * sums of a backend can depend on the thread count), full duty (no pacing waits). */
#define DP_COMMON "--model tiny --steps 4 --batch 2 --seq 8 --threads 1 --val-every 0 --no-preflight --duty 1"

static char dp_shard[600];

static inline const char *thermo_bin(void) {
    const char *b = getenv("THERMO_BIN");
    return b && *b ? b : "./build/thermo";
}

/* A scratch directory and a token shard the tiny model's 512-token vocabulary can read. */
static inline void dp_setup(const char *tag) {
    scratch_make(tag);
    // mpirun refuses root without these (CI may run as root or not: harmless otherwise)
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1); // no ptrace in containers
    // keep Open MPI's plugins loaded to the end, so LeakSanitizer can name (and the
    // suppressions match) what they keep until exit
    setenv("OMPI_MCA_mca_base_component_disable_dlclose", "1", 1);
    snprintf(dp_shard, sizeof dp_shard, "%s", spath("train.bin"));
    enum { N = 20000 };
    static int tok[N];
    uint64_t x = 12345;
    for (int i = 0; i < N; i++) { // a learnable sequence with some noise
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (int)((i * 7 + (int)((x >> 33) % 3)) % 512);
    }
    if (th_shard_write(dp_shard, tok, N, 512) != TH_OK) {
        fprintf(stderr, "FAIL cannot write the shard: %s\n", th_last_error());
        exit(1);
    }
}

/* Runs a shell command line; returns its exit status (128 + signal when killed). */
static inline int dp_sh(const char *cmd) {
    int rc = system(cmd);
    if (rc == -1) return -1;
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + WTERMSIG(rc);
}

/* thermo train on `np` ranks (np 0: one process, no mpirun), out in scratch/out, stderr to
 * scratch/out.log; extra: more flags. */
static inline int dp_train(int np, const char *out, const char *extra) {
    char cmd[8000];
    char mpi[1200] = "timeout 60 ";
    if (np > 0)
        snprintf(mpi, sizeof mpi, "timeout 60 %s --oversubscribe --bind-to none --mca btl self,vader -np %d ",
                 THERMO_MPIEXEC, np);
    snprintf(cmd, sizeof cmd, "%s'%s' train " DP_COMMON " --data '%s' --out '%s' %s > '%s.log' 2>&1", mpi, thermo_bin(),
             dp_shard, spath(out), extra, spath(out));
    return dp_sh(cmd);
}

/* The saved model of run `out` (HF safetensors) byte for byte equal to run `ref`'s. */
static inline int dp_same_model(const char *ref, const char *out) {
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/model/model.safetensors", spath(ref));
    snprintf(b, sizeof b, "%s/model/model.safetensors", spath(out));
    size_t na = 0, nb = 0;
    void *pa = test_read_file(a, &na), *pb = test_read_file(b, &nb);
    int same = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return same;
}

/* The log of run `out` mentions `needle`. */
static inline int dp_log_has(const char *out, const char *needle) {
    char p[600];
    snprintf(p, sizeof p, "%s.log", spath(out));
    char *s = test_read_file(p, NULL);
    int has = s && strstr(s, needle);
    if (!has) fprintf(stderr, "--- %s ---\n%s\n", p, s ? s : "(none)");
    free(s);
    return has;
}

#endif
