/* rating.c: the eco rating of models benchmarked together: AI Energy Score's five equal
 * bands of the energy range, the Pareto front of quality against energy, and the rules
 * that weigh quality (quality band, one band inside the noise, marginal verdict). Pure. */
#include <math.h>

#include "thermo/evaluate.h"

static int usable(const int *eligible, int i, double x) {
    return (!eligible || eligible[i]) && isfinite(x) && x >= 0;
}

th_status th_eval_energy_stars(const double *energy, const int *eligible, int n, int *stars) {
    if (n < 0 || (n > 0 && (!energy || !stars))) return th_fail(TH_ERR_INVALID, "energy stars: bad arguments");
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++)
        if (usable(eligible, i, energy[i])) {
            if (energy[i] < lo) lo = energy[i];
            if (energy[i] > hi) hi = energy[i];
        }
    for (int i = 0; i < n; i++) {
        if (!usable(eligible, i, energy[i])) {
            stars[i] = 0;
            continue;
        }
        // a range within the benchmark's own run-to-run spread says nothing: same band for all
        if (!(hi > lo) || hi - lo < TH_EVAL_STARS_MIN_SPREAD * lo) {
            stars[i] = 5;
            continue;
        }
        int band = (int)floor(5.0 * (energy[i] - lo) / (hi - lo)); // 0..5; 5 only at the max
        int s = 5 - band;
        stars[i] = s < 1 ? 1 : s > 5 ? 5 : s;
    }
    return TH_OK;
}

th_status th_eval_pareto(const double *quality, const double *energy, const int *eligible, int n, int *on_front) {
    if (n < 0 || (n > 0 && (!quality || !energy || !on_front)))
        return th_fail(TH_ERR_INVALID, "pareto: bad arguments");
    for (int i = 0; i < n; i++) {
        on_front[i] = usable(eligible, i, energy[i]) && isfinite(quality[i]);
        for (int j = 0; j < n && on_front[i]; j++) {
            if (j == i || !usable(eligible, j, energy[j]) || !isfinite(quality[j])) continue;
            int no_worse = quality[j] <= quality[i] && energy[j] <= energy[i];
            int better = quality[j] < quality[i] || energy[j] < energy[i];
            if (no_worse && better) on_front[i] = 0;
        }
    }
    return TH_OK;
}

double th_eval_uniform_bpb(long predicted, size_t bytes, int vocab) {
    if (predicted <= 0 || bytes == 0 || vocab < 2) return NAN;
    return (double)predicted * log2((double)vocab) / (double)bytes;
}

th_status th_eval_quality_comparable(const double *bpb, const int *eligible, int n, double band, int *comparable) {
    if (n < 0 || (n > 0 && (!bpb || !comparable)) || !(band >= 0) || !isfinite(band))
        return th_fail(TH_ERR_INVALID, "quality band: bad arguments");
    double best = INFINITY;
    for (int i = 0; i < n; i++)
        if ((!eligible || eligible[i]) && isfinite(bpb[i]) && bpb[i] < best) best = bpb[i];
    for (int i = 0; i < n; i++)
        comparable[i] = (!eligible || eligible[i]) && isfinite(bpb[i]) && bpb[i] <= best * (1.0 + band);
    return TH_OK;
}

/* the range of model i: [lo, hi], or the median alone where a bound is missing */
static double range_lo(const double *energy, const double *lo, int i) {
    return lo && isfinite(lo[i]) && lo[i] <= energy[i] ? lo[i] : energy[i];
}
static double range_hi(const double *energy, const double *hi, int i) {
    return hi && isfinite(hi[i]) && hi[i] >= energy[i] ? hi[i] : energy[i];
}

th_status th_eval_energy_stars_spread(const double *energy, const double *lo, const double *hi, const int *eligible,
                                      int n, int *stars, int *tie) {
    th_status st = th_eval_energy_stars(energy, eligible, n, stars);
    if (st != TH_OK) return st;
    int group[n > 0 ? n : 1];
    for (int i = 0; i < n; i++) {
        group[i] = i;
        if (tie) tie[i] = -1;
    }
    // union of overlapping ranges: repeat until no two overlapping models sit in different groups
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                if (i == j || !stars[i] || !stars[j] || group[i] == group[j]) continue;
                if (range_lo(energy, lo, i) <= range_hi(energy, hi, j) &&
                    range_lo(energy, lo, j) <= range_hi(energy, hi, i)) {
                    int to = group[i] < group[j] ? group[i] : group[j];
                    int from = group[i] < group[j] ? group[j] : group[i];
                    for (int k = 0; k < n; k++)
                        if (group[k] == from) group[k] = to;
                    changed = 1;
                }
            }
    }
    int best[n > 0 ? n : 1]; // per group (indexed by its root): the most stars of a member
    for (int i = 0; i < n; i++) best[i] = 0;
    for (int i = 0; i < n; i++)
        if (stars[i] > best[group[i]]) best[group[i]] = stars[i];
    for (int i = 0; i < n; i++) {
        if (!stars[i]) continue;
        stars[i] = best[group[i]];
        for (int j = 0; tie && j < n; j++)
            if (j != i && group[j] == group[i] && (tie[i] < 0 || energy[j] < energy[tie[i]])) tie[i] = j;
    }
    return TH_OK;
}

th_status th_eval_front_marginal(const double *bpb, const double *energy, const int *on_front, int n, double k,
                                 double g, int *prev, double *marginal, double *ratio, double *gain, int *flagged) {
    if (n < 0 || (n > 0 && (!bpb || !energy || !on_front || !prev || !marginal || !ratio || !gain || !flagged)) ||
        !(k > 1) || !isfinite(k) || !(g > 0) || !isfinite(g))
        return th_fail(TH_ERR_INVALID, "front marginal: bad arguments");
    for (int i = 0; i < n; i++) {
        prev[i] = -1;
        marginal[i] = ratio[i] = gain[i] = NAN;
        flagged[i] = 0;
        if (!on_front[i]) continue;
        for (int j = 0; j < n; j++) { // the nearest front model below i: cheaper, or as cheap and worse
            if (j == i || !on_front[j]) continue;
            int below = energy[j] < energy[i] || (energy[j] == energy[i] && bpb[j] > bpb[i]);
            int nearer = prev[i] < 0 || energy[j] > energy[prev[i]] ||
                         (energy[j] == energy[prev[i]] && bpb[j] < bpb[prev[i]]);
            if (below && nearer) prev[i] = j;
        }
        int p = prev[i];
        if (p < 0) continue;
        double d_bpb = bpb[p] - bpb[i], d_e = energy[i] - energy[p];
        marginal[i] = d_bpb > 0 ? d_e / d_bpb : INFINITY;
        ratio[i] = energy[p] > 0 ? energy[i] / energy[p] : INFINITY;
        gain[i] = bpb[p] > 0 ? d_bpb / bpb[p] : NAN;
        flagged[i] = ratio[i] >= k && !(gain[i] >= g);
    }
    return TH_OK;
}
