/* comm_mpi.c: the MPI transport (Open MPI from Debian). Only collectives on
 * MPI_COMM_WORLD, errors returned (MPI_ERRORS_RETURN) rather than aborting, so the caller
 * can say what failed; a dead peer makes mpirun end the job. */
#include <limits.h>
#include <mpi.h>
#include <time.h>

#include "dist/dist_internal.h"

static int started_here; /* MPI_Init was ours, so MPI_Finalize is too */

static th_status mpi_fail(int rc, const char *what) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) len = 0;
    msg[len] = 0;
    return th_fail(TH_ERR_IO, "MPI %s failed: %s", what, len ? msg : "unknown error");
}

int th_dpc_built(void) { return 1; }

th_status th_dpc_init(int *argc, char ***argv, int *rank, int *size) {
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited) {
        int rc = MPI_Init(argc, argv);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Init");
        started_here = 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, rank);
    MPI_Comm_size(MPI_COMM_WORLD, size);
    return TH_OK;
}

/* MPI counts are int: large buffers go in chunks (the sum is elementwise, so chunking
 * changes nothing). */
#define CHUNK ((size_t)1 << 28)

th_status th_dpc_sum_i64(int64_t *buf, size_t n) {
    for (size_t at = 0; at < n; at += CHUNK) {
        int cnt = (int)(n - at < CHUNK ? n - at : CHUNK);
        int rc = MPI_Allreduce(MPI_IN_PLACE, buf + at, cnt, MPI_INT64_T, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "MPI_Allreduce (int64 gradients)");
    }
    return TH_OK;
}

th_status th_dpc_sum_f64(double *buf, size_t n) {
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? TH_OK : mpi_fail(rc, "MPI_Allreduce (figures)");
}

th_status th_dpc_allgather(const void *mine, size_t bytes, void *all) {
    if (bytes > INT_MAX) return th_fail(TH_ERR_INVALID, "allgather of %zu bytes", bytes);
    int rc = MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? TH_OK : mpi_fail(rc, "MPI_Allgather");
}

/* A non-blocking barrier tested every POLL_NS with a sleep in between: the rank is off the
 * CPU while it waits (a blocking collective spins), at the cost of up to POLL_NS late. */
#define POLL_NS 200000L

th_status th_dpc_arrive_idle(void) {
    MPI_Request req;
    int rc = MPI_Ibarrier(MPI_COMM_WORLD, &req), done = 0;
    while (rc == MPI_SUCCESS && (rc = MPI_Test(&req, &done, MPI_STATUS_IGNORE)) == MPI_SUCCESS && !done) {
        struct timespec ts = {0, POLL_NS};
        nanosleep(&ts, NULL);
    }
    return rc == MPI_SUCCESS ? TH_OK : mpi_fail(rc, "MPI_Ibarrier (waiting idle for the other ranks)");
}

th_status th_dpc_barrier(void) {
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? TH_OK : mpi_fail(rc, "MPI_Barrier");
}

void th_dpc_finalize(int abort_code) {
    if (abort_code) MPI_Abort(MPI_COMM_WORLD, abort_code);
    if (started_here) MPI_Finalize();
    started_here = 0;
}
