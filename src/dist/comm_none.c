/* comm_none.c: the transport of a build without MPI: --dp mpi fails with a message that
 * says how to get it; --dp local (one process, the same exact accumulation) still works. */
#include "dist/dist_internal.h"

static th_status no_mpi(void) {
    return th_fail(TH_ERR_UNSUPPORTED,
                   "this thermo was built without MPI: install libopenmpi-dev openmpi-bin (scripts/setup) and "
                   "rebuild, or use --dp local");
}

int th_dpc_built(void) { return 0; }
th_status th_dpc_init(int *argc, char ***argv, int *rank, int *size) {
    (void)argc, (void)argv;
    *rank = 0;
    *size = 1;
    return no_mpi();
}
th_status th_dpc_sum_i64(int64_t *buf, size_t n) { return (void)buf, (void)n, no_mpi(); }
th_status th_dpc_sum_f64(double *buf, size_t n) { return (void)buf, (void)n, no_mpi(); }
th_status th_dpc_allgather(const void *mine, size_t bytes, void *all) { return (void)mine, (void)bytes, (void)all, no_mpi(); }
th_status th_dpc_barrier(void) { return no_mpi(); }
th_status th_dpc_arrive_idle(void) { return no_mpi(); }
void th_dpc_finalize(int abort_code) { (void)abort_code; }
