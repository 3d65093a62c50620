/* test_dist_mpi_bad.c: what must stop a data-parallel job before it learns anything (issue
 * 20): ranks with another binary, model or settings (the start-up fingerprints), and a world
 * size that does not divide the step's micro-batches. Rank 0 says why, every rank exits
 * non-zero (no MPI_Abort: mpirun's own exit status), nothing is written. */
#include "dist_util.h"

/* mpirun with one rank running `a` flags and one running `b` flags, binary bin2 for rank 1. */
static int mpmd(const char *out, const char *bin2, const char *a, const char *b) {
    char cmd[9000];
    const char *mpi = "--oversubscribe --bind-to none --mca btl self,vader";
    snprintf(cmd, sizeof cmd,
             "timeout 60 %s %s -np 1 '%s' train " DP_COMMON " --data '%s' --out '%s' --dp mpi %s : -np 1 '%s' train " DP_COMMON
             " --data '%s' --out '%s' --dp mpi %s > '%s.log' 2>&1",
             THERMO_MPIEXEC, mpi, thermo_bin(), dp_shard, spath(out), a, bin2, dp_shard, spath(out), b, spath(out));
    return dp_sh(cmd);
}

static int exists(const char *out, const char *name) { return access(test_path_in(spath(out), name), F_OK) == 0; }

int main(void) {
    dp_setup("dp_bad");
    if (!th_dp_mpi_built()) {
        CHECK(dp_train(0, "nompi", "--dp mpi") != 0, "--dp mpi without MPI must fail");
        CHECK(dp_log_has("nompi", "built without MPI"), "the message says why");
        scratch_cleanup();
        return test_summary();
    }
    CHECK(mpmd("model", thermo_bin(), "--seed 1", "--seed 2") != 0, "another model on rank 1 fails");
    CHECK(dp_log_has("model", "rank 1 runs another model than rank 0"), "rank 0 names the model");
    CHECK(!dp_log_has("model", "MPI_ABORT"), "every rank exits by itself (an agreed failure)");
    CHECK(!exists("model", "checkpoint.bin") && !exists("model", "model"), "nothing written");

    CHECK(mpmd("settings", thermo_bin(), "--lr 1e-3", "--lr 2e-3") != 0, "other settings on rank 1 fail");
    CHECK(dp_log_has("settings", "another training settings"), "rank 0 names the settings");

    char bin2[600], cmd[2000];
    snprintf(bin2, sizeof bin2, "%s", spath("thermo2"));
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && printf x >> '%s'", thermo_bin(), bin2, bin2);
    CHECK(dp_sh(cmd) == 0, "a second binary");
    CHECK(mpmd("binary", bin2, "", "") != 0, "another binary on rank 1 fails");
    CHECK(dp_log_has("binary", "rank 1 runs another binary"), "rank 0 names the binary");

    // 4 micro-batches per step (2 ranks x 2), resumed on 3 ranks: 4 does not divide by 3
    CHECK(dp_train(2, "split", "--dp mpi --grad-accum 2 --steps 2") == 0, "a 2-rank run");
    char ck[600];
    snprintf(ck, sizeof ck, "%s", test_path_in(spath("split"), "checkpoint.bin"));
    size_t n0 = 0, n1 = 0;
    void *before = test_read_file(ck, &n0);
    CHECK(dp_train(3, "split", "--dp mpi --resume") != 0, "3 ranks on 4 micro-batches fail");
    CHECK(dp_log_has("split", "4 micro-batches per step do not divide among 3 ranks"), "rank 0 says why");
    void *after = test_read_file(ck, &n1);
    CHECK(before && after && n0 == n1 && memcmp(before, after, n0) == 0, "the checkpoint is untouched");
    free(before);
    free(after);
    scratch_cleanup();
    return test_summary();
}
