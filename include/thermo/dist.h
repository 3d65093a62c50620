/* dist.h: data-parallel training across processes (MPI, issue 20) with a reduction that
 * cannot change what is learned: an exact, order-independent sum of micro-batch gradients,
 * so which rank computes which micro-batch (thermal load balancing) never matters.
 *
 * The reduction. A step's global batch is a fixed list of G micro-batches (indices
 * 0..G-1, drawn from the shared data order by every rank alike). Each micro-batch assigned
 * to this rank is computed into zeroed gradients with loss scale 1/G, then added to an int64
 * accumulator in fixed point: q = llrint(g · 2^TH_DP_FIXED_SHIFT), exact in double (a power
 * of two scale) and rounded to nearest. Integer addition is exact and associative, so the
 * per-rank sums and MPI_Allreduce(MPI_INT64_T, MPI_SUM) give the same integers whatever the
 * assignment, the rank count or the MPI library's algorithm; the gradient is then
 * (float)(q · 2^-SHIFT) once per step, identical on every rank. A micro-batch gradient that
 * is not finite or out of range (|g| >= 2^(62 - SHIFT) / G) is counted, and the step's
 * gradient becomes NaN, so the health guard catches it as in one process. Losses are
 * exchanged per micro-batch index (one owner per slot: a sum of one value and zeros is
 * exact) and summed in index order. The same accumulation runs in one process (TH_DP_LOCAL),
 * so N ranks with K micro-batches each give the same bits as one process with N·K.
 *
 * Ownership: th_dp_init creates the context (and MPI_Init for TH_DP_MPI); th_dp_finish
 * ends it. Every function marked "collective" must be called by all ranks in the same
 * order; one that returns a failure returns the same failure on every rank (an agreed
 * failure), so every rank can exit cleanly. */
#ifndef THERMO_DIST_H
#define THERMO_DIST_H

#include <stdint.h>

#include "thermo/core.h"
#include "thermo/model.h"

#define TH_DP_FIXED_SHIFT 40 /* fixed-point scale 2^40: resolution 9.1e-13, range ±2^22 per step */
#define TH_DP_MAX_RANKS 256

typedef enum { TH_DP_LOCAL = 0, TH_DP_MPI = 1 } th_dp_kind;
typedef enum { TH_DP_STATIC = 0, TH_DP_THERMAL = 1 } th_dp_balance;
/* What a rank that finished its micro-batches does until the reduction completes. IDLE: its
 * last unit of work ends before the reduction, so the wait is idle time for the plant and
 * the ledger (and the pacing wait follows its compute only), and it polls the reduction
 * with short sleeps instead of spinning. BUSY: the wait stays inside the last unit and
 * spins in MPI, as a plain blocking allreduce does (the energy-bloat baseline). Neither
 * touches the numbers reduced. */
typedef enum { TH_DP_WAIT_IDLE = 0, TH_DP_WAIT_BUSY = 1 } th_dp_wait;

typedef struct {
    th_dp_kind kind;
    th_dp_balance balance;       /* THERMAL (default): micro-batches by each rank's measured pace */
    int forced[TH_DP_MAX_RANKS]; /* test option: fixed micro-batch counts per rank (n_forced > 0) */
    int n_forced;
    const char *steps_csv;       /* rank 0 appends one row per step (assignment, waits); NULL: none */
    int kill_rank;               /* test option: this rank raises SIGKILL ... */
    long kill_step;              /* ... after its first micro-batch of this step (0: never) */
    th_dp_wait wait;             /* IDLE (default): the reduction wait is paced idle */
} th_dp_config;

th_dp_config th_dp_config_default(void);

typedef struct th_dp th_dp;

/* 1 when this build has MPI. */
int th_dp_mpi_built(void);

/* Creates the context. TH_DP_MPI calls MPI_Init(argc, argv) (may be NULL); fails with
 * TH_ERR_UNSUPPORTED on a build without MPI, or when MPI cannot start. TH_DP_LOCAL is one
 * process with the same exact accumulation. *out is NULL on failure. */
th_status th_dp_init(int *argc, char ***argv, const th_dp_config *c, th_dp **out);

int th_dp_rank(const th_dp *d);
int th_dp_size(const th_dp *d);

/* Collective: TH_OK when every rank passes TH_OK; else every rank returns TH_ERR_INVALID
 * (or the lowest failing rank's status) with that rank's message th_last_error() had. */
th_status th_dp_agree(th_dp *d, th_status mine);

/* Collective: fails everywhere (TH_ERR_INVALID) unless every rank passed the same value;
 * the message names `what` and the first rank that differs from rank 0. */
th_status th_dp_same(th_dp *d, uint64_t value, const char *what);

/* Collective. */
th_status th_dp_barrier(th_dp *d);

/* FNV-1a 64 of bytes, chained from h (start with TH_DP_FNV_BASIS). */
#define TH_DP_FNV_BASIS 0xcbf29ce484222325ull
uint64_t th_dp_hash(uint64_t h, const void *p, size_t n);
/* FNV-1a of this executable's bytes (/proc/self/exe); 0 if it cannot be read. */
uint64_t th_dp_binary_hash(void);

/* The thermal plan, a pure function: counts[r] micro-batches for rank r, summing to G,
 * each >= 1 (G >= N), minimising the slowest rank's modeled time counts[r] · t_s[r] (t_s:
 * each rank's seconds per micro-batch, pacing waits included; <= 0 or NaN anywhere: the
 * static G/N split). Greedy, ties to the lower rank: the same inputs give the same plan.
 * The plan only says how many; rank r computes the next counts[r] indices in rank order,
 * so the set of micro-batches is always 0..G-1. */
void th_dp_plan(int G, int N, const double *t_s, int *counts);
/* The modeled step time of a plan: max over r of counts[r] · t_s[r]. */
double th_dp_plan_time_s(int N, const double *t_s, const int *counts);

/* The exact accumulator, pure. acc[i] += llrint(g[i] · 2^SHIFT) for n values; returns 1
 * (and leaves acc[i] as it was) where a value is not finite or |g| >= 2^(62 - SHIFT) / G,
 * so G additions cannot overflow; else 0. The sum of any subsets' integers, in any order,
 * equals the whole set's. */
int th_dp_fixed_add(int64_t *acc, const float *g, size_t n, int G);
/* g[i] = (float)(acc[i] · 2^-SHIFT): the one rounding of the step. */
void th_dp_fixed_get(const int64_t *acc, float *g, size_t n);

/* ---- the training loop's hook (train.c): collective, in this order per step ---- */

/* Once before the first step: checks that every rank runs the same binary and model with
 * the same G (= micro_total, the global micro-batches per step) and that the world size
 * divides G. Allocates the accumulator (8 bytes per parameter). */
th_status th_dp_train_begin(th_dp *d, th_gpt2 *m, int micro_total, uint64_t settings_hash);
/* Plans step `step` (0-based) and agrees on stopping: *stop_all is 1 when any rank's
 * stop_mine was. */
th_status th_dp_step_begin(th_dp *d, long step, int stop_mine, int *stop_all);
/* This rank computes micro-batch `micro` of the planned step. */
int th_dp_mine(const th_dp *d, int micro);
/* The last micro-batch index this rank computes (every rank has at least one). */
int th_dp_last_mine(const th_dp *d);
/* Adds m's gradients (one micro-batch's, from zeroed gradients) and its loss. Not collective. */
th_status th_dp_micro_add(th_dp *d, th_gpt2 *m, int micro, float loss);
/* 1 when the reduction wait is paced idle (TH_DP_WAIT_IDLE): the caller ends its last
 * micro-batch's unit before th_dp_step_end and begins one after it. */
int th_dp_wait_idle(const th_dp *d);
/* Reduces: m's gradients become the step's exact global sum, *loss_sum the sum of the
 * micro-batch losses in index order. */
th_status th_dp_step_end(th_dp *d, th_gpt2 *m, double *loss_sum);
/* Rank 0 writes checkpoints: a barrier, then 1 on rank 0 and 0 elsewhere. */
int th_dp_writer_after_barrier(th_dp *d);

/* What balancing did over the steps so far (the same on every rank). */
typedef struct {
    long steps;
    double wait_s[TH_DP_MAX_RANKS];  /* per rank: time spent in the gradient reduction */
    double saved_s;                  /* modeled: sum over steps of (static step time − planned) */
    int last_assign[TH_DP_MAX_RANKS];
    int wait_idle;                   /* the waits were paced idle (TH_DP_WAIT_IDLE) */
    long replans;                    /* steps whose plan differed from the step before */
} th_dp_summary;
void th_dp_get_summary(const th_dp *d, th_dp_summary *out);

/* One rank's run figures, gathered for the report. */
typedef struct {
    double energy_j, co2e_g, water_ml, above_limit_s, seconds, temp_max_c, busy_s, idle_s;
    char profile[64];
    double busy_over_idle_w; /* the simulated plant's busy - idle power (0: not modeled) */
} th_dp_rank_figures;
/* Collective: all[r] = rank r's figures on rank 0 (all has th_dp_size entries; ignored
 * elsewhere, may be NULL). */
th_status th_dp_gather_figures(th_dp *d, const th_dp_rank_figures *mine, th_dp_rank_figures *all);

/* Ends the context: MPI_Finalize after `st` is an agreed outcome (TH_OK or a failure every
 * rank returned), MPI_Abort when only this rank failed (the others would wait forever).
 * NULL is a no-op. */
void th_dp_finish(th_dp *d, th_status st);

#endif
