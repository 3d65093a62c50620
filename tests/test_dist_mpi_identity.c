/* test_dist_mpi_identity.c: 2 MPI ranks with --grad-accum 2 save the same model bytes as one
 * process with --grad-accum 4 (issue 20), whatever the assignment of micro-batches: thermal
 * balancing (waits paced idle), static (busy waits), and an uneven one forced by the test
 * option --dp-assign. */
#include "dist_util.h"

int main(void) {
    dp_setup("dp_identity");
    if (!th_dp_mpi_built()) { // a build without MPI: --dp mpi says so and fails
        CHECK(dp_train(0, "nompi", "--dp mpi") != 0, "--dp mpi without MPI must fail");
        CHECK(dp_log_has("nompi", "built without MPI"), "the message says why");
        CHECK(dp_train(0, "one", "--dp local --grad-accum 4") == 0, "--dp local runs");
        scratch_cleanup();
        return test_summary();
    }
    CHECK(dp_train(0, "one", "--dp local --grad-accum 4") == 0, "one process");
    CHECK(dp_train(2, "thermal", "--dp mpi --grad-accum 2") == 0, "2 ranks, thermal balancing");
    CHECK(dp_same_model("one", "thermal"), "2 ranks (thermal) == 1 process, byte for byte");
    CHECK(dp_train(2, "uneven", "--dp mpi --grad-accum 2 --dp-assign 3,1") == 0, "2 ranks, forced 3 + 1");
    CHECK(dp_same_model("one", "uneven"), "2 ranks (3 + 1) == 1 process, byte for byte");
    CHECK(dp_log_has("uneven", "forced balancing"), "the forced plan was used");
    CHECK(dp_train(2, "static", "--dp mpi --grad-accum 2 --dp-balance static --dp-wait busy") == 0, "2 ranks, static, busy waits");
    CHECK(dp_same_model("one", "static"), "2 ranks (static) == 1 process, byte for byte");
    CHECK(dp_log_has("thermal", "reduction waits paced idle"), "waits are paced idle by default");
    CHECK(dp_log_has("static", "reduction waits spent busy"), "--dp-wait busy keeps them in the unit");
    // the per-step account: one row per rank and step
    char *csv = test_read_file(test_path_in(spath("uneven"), "dp_steps.csv"), NULL);
    CHECK(csv && strstr(csv, "step,rank,micro_batches") && strstr(csv, "\n4,0,3,") && strstr(csv, "\n4,1,1,"),
          "dp_steps.csv has the assignment per step: %s", csv ? csv : "(none)");
    free(csv);
    scratch_cleanup();
    return test_summary();
}
