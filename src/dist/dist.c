/* dist.c: data-parallel training's context (dist.h): the fixed-point gradient accumulator
 * whose sum does not depend on who computed what, the thermal plan of micro-batches per
 * rank, the start-up fingerprint checks and the per-step account of waits. The transport is
 * comm_mpi.c or comm_none.c; TH_DP_LOCAL never touches it. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "dist/dist_internal.h"
#include "thermo/dist.h"

struct th_dp {
    th_dp_config cfg;
    int rank, size, mpi;
    int failed_together;        /* a collective returned a failure on every rank */
    int G;                      /* micro-batches per step, all ranks together */
    size_t n;                   /* parameters */
    int64_t *acc;               /* n gradients in fixed point, then the count of bad micro-batches */
    double *loss;               /* G + 2 x size, reduced together (one collective: each costs a
                                   scheduling round trip on a shared machine): the step's
                                   micro-batch losses by index, then figs */
    double *figs;               /* loss + G: seconds per micro-batch, reduction wait, per rank */
    int counts[TH_DP_MAX_RANKS];
    int first_mine, n_mine;
    double est_s[TH_DP_MAX_RANKS]; /* smoothed seconds per micro-batch, per rank */
    long step;                  /* the step being computed (0-based) */
    uint64_t work_t0_ns;        /* this rank's micro-batches began (after the step's start agreement) */
    double begin_wait_s;        /* this step's wait at that agreement */
    th_dp_summary sum;
};

th_dp_config th_dp_config_default(void) {
    th_dp_config c;
    memset(&c, 0, sizeof c);
    c.kind = TH_DP_LOCAL;
    c.balance = TH_DP_THERMAL;
    return c;
}

int th_dp_mpi_built(void) { return th_dpc_built(); }

th_status th_dp_init(int *argc, char ***argv, const th_dp_config *c, th_dp **out) {
    *out = NULL;
    th_dp *d = th_calloc(1, sizeof *d);
    if (!d) return th_fail(TH_ERR_NOMEM, "dp: out of memory");
    d->cfg = *c;
    d->size = 1;
    if (c->kind == TH_DP_MPI) {
        th_status st = th_dpc_init(argc, argv, &d->rank, &d->size);
        if (st != TH_OK) {
            th_free(d);
            return st;
        }
        d->mpi = 1;
        if (d->size > TH_DP_MAX_RANKS) {
            d->failed_together = 1;
            *out = d;
            return th_fail(TH_ERR_INVALID, "dp: %d ranks, at most %d", d->size, TH_DP_MAX_RANKS);
        }
    }
    *out = d;
    return TH_OK;
}

int th_dp_rank(const th_dp *d) { return d->rank; }
int th_dp_size(const th_dp *d) { return d->size; }

typedef struct {
    int32_t status;
    char msg[244];
} agree_slot;

th_status th_dp_agree(th_dp *d, th_status mine) {
    if (!d->mpi) return mine;
    agree_slot me = {(int32_t)mine, ""}, *all = th_calloc((size_t)d->size, sizeof *all);
    if (mine != TH_OK) snprintf(me.msg, sizeof me.msg, "%s", th_last_error());
    if (!all) return th_fail(TH_ERR_NOMEM, "dp: out of memory");
    th_status st = th_dpc_allgather(&me, sizeof me, all);
    for (int r = 0; st == TH_OK && r < d->size; r++)
        if (all[r].status != TH_OK) {
            d->failed_together = 1;
            st = th_fail((th_status)all[r].status, "rank %d: %s", r, all[r].msg);
        }
    th_free(all);
    return st;
}

th_status th_dp_same(th_dp *d, uint64_t value, const char *what) {
    if (!d->mpi) return TH_OK;
    uint64_t *all = th_calloc((size_t)d->size, sizeof *all);
    if (!all) return th_fail(TH_ERR_NOMEM, "dp: out of memory");
    th_status st = th_dpc_allgather(&value, sizeof value, all);
    for (int r = 1; st == TH_OK && r < d->size; r++)
        if (all[r] != all[0]) {
            d->failed_together = 1;
            st = th_fail(TH_ERR_INVALID,
                         "dp: rank %d runs another %s than rank 0 (fingerprint %016llx, rank 0 %016llx): every rank "
                         "must start the same thermo on the same model and settings",
                         r, what, (unsigned long long)all[r], (unsigned long long)all[0]);
        }
    th_free(all);
    return st;
}

th_status th_dp_barrier(th_dp *d) { return d->mpi ? th_dpc_barrier() : TH_OK; }

uint64_t th_dp_hash(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

uint64_t th_dp_binary_hash(void) {
    FILE *f = fopen("/proc/self/exe", "rb");
    if (!f) return 0;
    unsigned char buf[1 << 16];
    uint64_t h = TH_DP_FNV_BASIS;
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) h = th_dp_hash(h, buf, got);
    fclose(f);
    return h;
}

void th_dp_plan(int G, int N, const double *t_s, int *counts) {
    int ok = G >= N && N > 0;
    for (int r = 0; ok && r < N; r++) ok = t_s[r] > 0 && isfinite(t_s[r]);
    for (int r = 0; r < N; r++) counts[r] = ok ? 1 : G / N + (r < G % N);
    if (!ok) return;
    for (int k = N; k < G; k++) { // the next micro-batch goes where it ends soonest
        int best = 0;
        for (int r = 1; r < N; r++)
            if ((counts[r] + 1) * t_s[r] < (counts[best] + 1) * t_s[best]) best = r;
        counts[best]++;
    }
}

double th_dp_plan_time_s(int N, const double *t_s, const int *counts) {
    double t = 0.0;
    for (int r = 0; r < N; r++)
        if (counts[r] * t_s[r] > t) t = counts[r] * t_s[r];
    return t;
}

int th_dp_fixed_add(int64_t *acc, const float *g, size_t n, int G) {
    const double scale = ldexp(1.0, TH_DP_FIXED_SHIFT);
    const double lim = ldexp(1.0, 62 - TH_DP_FIXED_SHIFT) / (G > 0 ? G : 1); // G of them stay below 2^62
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double x = g[i];
        if (!(fabs(x) < lim)) bad = 1; // NaN, Inf or out of range
        else acc[i] += llrint(x * scale);
    }
    return bad;
}

void th_dp_fixed_get(const int64_t *acc, float *g, size_t n) {
    const double inv = ldexp(1.0, -TH_DP_FIXED_SHIFT);
    for (size_t i = 0; i < n; i++) g[i] = (float)((double)acc[i] * inv);
}

th_status th_dp_train_begin(th_dp *d, th_gpt2 *m, int micro_total, uint64_t settings_hash) {
    const th_gpt2_config *cfg = th_gpt2_get_config(m);
    size_t n = th_gpt2_num_params(cfg);
    uint64_t model = th_dp_hash(TH_DP_FNV_BASIS, cfg, sizeof *cfg);
    model = th_dp_hash(model, th_gpt2_params(m), n * sizeof(float));
    th_status st;
    if ((st = th_dp_same(d, th_dp_binary_hash(), "binary")) != TH_OK || (st = th_dp_same(d, model, "model")) != TH_OK ||
        (st = th_dp_same(d, settings_hash, "training settings")) != TH_OK)
        return st;
    // the rest is decided from values every rank now shares: all fail or none
    if (micro_total < d->size || micro_total % d->size != 0) {
        d->failed_together = 1;
        return th_fail(TH_ERR_INVALID,
                       "dp: %d micro-batches per step do not divide among %d ranks (--grad-accum is per rank; on "
                       "resume the checkpoint's total must be a multiple of the rank count)",
                       micro_total, d->size);
    }
    if (d->cfg.n_forced) {
        int total = 0, ok = d->cfg.n_forced == d->size;
        for (int r = 0; ok && r < d->size; r++) ok = d->cfg.forced[r] >= 1, total += d->cfg.forced[r];
        if (!ok || total != micro_total) {
            d->failed_together = 1;
            return th_fail(TH_ERR_INVALID, "dp: a forced assignment needs one count >= 1 per rank (%d ranks) summing to %d",
                           d->size, micro_total);
        }
    }
    th_free(d->acc);
    th_free(d->loss);
    d->G = micro_total;
    d->n = n;
    d->acc = th_alloc((n + 1) * sizeof *d->acc);
    d->loss = th_alloc(((size_t)micro_total + 2 * (size_t)d->size) * sizeof *d->loss);
    d->figs = d->loss ? d->loss + micro_total : NULL;
    st = d->acc && d->loss ? TH_OK : th_fail(TH_ERR_NOMEM, "dp: no memory for the %zu-parameter accumulator", n);
    if ((st = th_dp_agree(d, st)) != TH_OK) return st;
    d->sum.wait_idle = d->mpi && d->cfg.wait == TH_DP_WAIT_IDLE;
    return TH_OK;
}

/* Plans would chase the noise of a shared machine step by step: a new plan replaces the
 * last one only when it models the step at least this much faster (on the same estimates). */
#define REPLAN_GAIN 0.95

th_status th_dp_step_begin(th_dp *d, long step, int stop_mine, int *stop_all) {
    double stop = stop_mine ? 1.0 : 0.0;
    uint64_t t0 = th_now_ns();
    th_status st = d->sum.wait_idle ? th_dpc_arrive_idle() : TH_OK; // a rank still pacing its last step
    if (st == TH_OK && d->mpi) st = th_dpc_sum_f64(&stop, 1);
    if (st != TH_OK) return st;
    d->work_t0_ns = th_now_ns();
    d->begin_wait_s = (d->work_t0_ns - t0) / 1e9;
    *stop_all = stop > 0;
    if (*stop_all) d->failed_together = 1; // every rank stops here: an agreed interruption
    d->step = step;
    int plan[TH_DP_MAX_RANKS];
    if (d->cfg.n_forced) memcpy(plan, d->cfg.forced, sizeof(int) * (size_t)d->size);
    else if (d->cfg.balance == TH_DP_THERMAL) th_dp_plan(d->G, d->size, d->est_s, plan);
    else th_dp_plan(d->G, d->size, (const double[]){0}, plan);
    // every rank holds the same estimates (exchanged exactly), so every rank decides alike
    int keep = d->sum.steps > 0 && !d->cfg.n_forced && d->cfg.balance == TH_DP_THERMAL &&
               !(th_dp_plan_time_s(d->size, d->est_s, plan) < REPLAN_GAIN * th_dp_plan_time_s(d->size, d->est_s, d->counts));
    if (!keep) {
        if (d->sum.steps > 0 && memcmp(plan, d->counts, sizeof(int) * (size_t)d->size) != 0) d->sum.replans++;
        memcpy(d->counts, plan, sizeof(int) * (size_t)d->size);
    }
    d->first_mine = 0;
    for (int r = 0; r < d->rank; r++) d->first_mine += d->counts[r];
    d->n_mine = d->counts[d->rank];
    memset(d->acc, 0, (d->n + 1) * sizeof *d->acc);
    memset(d->loss, 0, (size_t)d->G * sizeof *d->loss);
    return TH_OK;
}

int th_dp_mine(const th_dp *d, int micro) { return micro >= d->first_mine && micro < d->first_mine + d->n_mine; }
int th_dp_last_mine(const th_dp *d) { return d->first_mine + d->n_mine - 1; }

th_status th_dp_micro_add(th_dp *d, th_gpt2 *m, int micro, float loss) {
    d->acc[d->n] += th_dp_fixed_add(d->acc, th_gpt2_grads(m), d->n, d->G);
    d->loss[micro] = loss;
    if (d->cfg.kill_step == d->step + 1 && d->cfg.kill_rank == d->rank) raise(SIGKILL);
    return TH_OK;
}

int th_dp_wait_idle(const th_dp *d) { return d->sum.wait_idle; }

th_status th_dp_step_end(th_dp *d, th_gpt2 *m, double *loss_sum) {
    uint64_t t_enter = th_now_ns();
    // this rank's pace: its micro-batches (and their pacing waits) only, not the update
    double per_micro_s = (t_enter - d->work_t0_ns) / 1e9 / (d->n_mine > 0 ? d->n_mine : 1);
    th_status st = d->sum.wait_idle ? th_dpc_arrive_idle() : TH_OK; // off the CPU until all are here
    if (st == TH_OK && d->mpi) st = th_dpc_sum_i64(d->acc, d->n + 1);
    double wait_s = d->begin_wait_s + (th_now_ns() - t_enter) / 1e9;
    if (st != TH_OK) return st;
    memset(d->figs, 0, (size_t)d->size * 2 * sizeof *d->figs);
    d->figs[d->rank] = per_micro_s;
    d->figs[d->size + d->rank] = wait_s;
    if (d->mpi && (st = th_dpc_sum_f64(d->loss, (size_t)d->G + 2 * (size_t)d->size)) != TH_OK) return st;

    float *g = th_gpt2_grads(m);
    th_dp_fixed_get(d->acc, g, d->n);
    if (d->acc[d->n] > 0) g[0] = NAN; // a micro-batch went non-finite: the health guard sees it
    double s = 0.0;
    for (int i = 0; i < d->G; i++) s += d->loss[i];
    *loss_sum = s;

    // the account: static time (G/N each) against the plan, both at this step's pace
    int even[TH_DP_MAX_RANKS];
    th_dp_plan(d->G, d->size, (const double[]){0}, even);
    double t_static = th_dp_plan_time_s(d->size, d->figs, even), t_plan = th_dp_plan_time_s(d->size, d->figs, d->counts);
    for (int r = 0; r < d->size; r++) {
        double t = d->figs[r];
        d->est_s[r] = d->est_s[r] > 0 ? 0.5 * d->est_s[r] + 0.5 * t : t;
        d->sum.wait_s[r] += d->figs[d->size + r];
        d->sum.last_assign[r] = d->counts[r];
    }
    d->sum.steps++;
    d->sum.saved_s += t_static - t_plan;
    if (d->rank == 0 && d->cfg.steps_csv) {
        FILE *f = fopen(d->cfg.steps_csv, "a");
        if (f) {
            if (ftell(f) == 0) fprintf(f, "step,rank,micro_batches,s_per_micro,wait_s,modeled_saved_s\n");
            for (int r = 0; r < d->size; r++)
                fprintf(f, "%ld,%d,%d,%.6f,%.6f,%.6f\n", d->step + 1, r, d->counts[r], d->figs[r],
                        d->figs[d->size + r], t_static - t_plan);
            fclose(f);
        }
    }
    return TH_OK;
}

int th_dp_writer_after_barrier(th_dp *d) {
    if (d->mpi) th_dpc_barrier();
    return d->rank == 0;
}

void th_dp_get_summary(const th_dp *d, th_dp_summary *out) { *out = d->sum; }

th_status th_dp_gather_figures(th_dp *d, const th_dp_rank_figures *mine, th_dp_rank_figures *all) {
    if (!d->mpi) {
        if (all) all[0] = *mine;
        return TH_OK;
    }
    th_dp_rank_figures *buf = th_calloc((size_t)d->size, sizeof *buf);
    if (!buf) return th_fail(TH_ERR_NOMEM, "dp: out of memory");
    th_status st = th_dpc_allgather(mine, sizeof *mine, buf);
    if (st == TH_OK && all) memcpy(all, buf, (size_t)d->size * sizeof *buf);
    th_free(buf);
    return st;
}

void th_dp_finish(th_dp *d, th_status st) {
    if (!d) return;
    if (d->mpi) th_dpc_finalize(st != TH_OK && !d->failed_together && d->size > 1 ? 1 : 0);
    th_free(d->acc);
    th_free(d->loss);
    th_free(d);
}
