/* test_dist_mpi_resume.c: a rank killed mid-step (test option --dp-kill) stops the whole
 * job with the last checkpoint intact; resuming it with 2 ranks or with 1 process ends with
 * the same model bytes as an uninterrupted run (issue 20). */
#include "dist_util.h"
#include "thermo/io.h"

int main(void) {
    dp_setup("dp_resume");
    if (!th_dp_mpi_built()) {
        printf("MPI not built: the resume across rank counts needs mpirun\n");
        CHECK(dp_train(0, "nompi", "--dp mpi") != 0, "--dp mpi without MPI must fail");
        scratch_cleanup();
        return test_summary();
    }
    CHECK(dp_train(2, "whole", "--dp mpi --grad-accum 2 --save-every 1") == 0, "uninterrupted, 2 ranks");
    CHECK(dp_train(2, "killed", "--dp mpi --grad-accum 2 --save-every 1 --dp-kill 1:3") != 0,
          "a killed rank ends the job non-zero");
    th_gpt2 *m = NULL;
    th_train_state st;
    CHECK(th_checkpoint_load(test_path_in(spath("killed"), "checkpoint.bin"), &m, &st) == TH_OK && st.step == 2,
          "the checkpoint before the killed step is whole (step %ld)", m ? st.step : -1L);
    th_gpt2_free(m);
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", spath("killed"), spath("killed1"));
    CHECK(dp_sh(cmd) == 0, "copy the killed run");
    snprintf(cmd, sizeof cmd, "cp '%s.log' '%s.log'", spath("killed"), spath("killed1"));
    CHECK(dp_sh(cmd) == 0, "copy its log");
    CHECK(dp_train(2, "killed", "--dp mpi --save-every 1 --resume") == 0, "resume with 2 ranks");
    CHECK(dp_same_model("whole", "killed"), "resumed on 2 ranks == uninterrupted, byte for byte");
    CHECK(dp_train(0, "killed1", "--dp local --save-every 1 --resume") == 0, "resume in 1 process");
    CHECK(dp_same_model("whole", "killed1"), "resumed in 1 process == uninterrupted, byte for byte");
    scratch_cleanup();
    return test_summary();
}
