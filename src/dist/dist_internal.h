/* dist_internal.h: the transport under dist.c, one of comm_mpi.c (built when CMake finds
 * MPI) or comm_none.c (every call fails: this build has no MPI). All calls are collective
 * over MPI_COMM_WORLD; sums are on exact types (int64) or on slots with one owner each. */
#ifndef THERMO_DIST_INTERNAL_H
#define THERMO_DIST_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "thermo/core.h"

int th_dpc_built(void);
th_status th_dpc_init(int *argc, char ***argv, int *rank, int *size);
th_status th_dpc_sum_i64(int64_t *buf, size_t n);  /* in place, MPI_SUM on MPI_INT64_T */
th_status th_dpc_sum_f64(double *buf, size_t n);   /* in place; callers give each slot one owner */
th_status th_dpc_allgather(const void *mine, size_t bytes, void *all); /* all: size x bytes */
th_status th_dpc_barrier(void);
th_status th_dpc_arrive_idle(void); /* a barrier that sleeps while it waits */
void th_dpc_finalize(int abort_code); /* 0: MPI_Finalize; else MPI_Abort with it */

#endif
