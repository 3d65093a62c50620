/* rating.c: the eco rating of models benchmarked together: AI Energy Score's five equal
 * bands of the energy range, and the Pareto front of quality against energy. Pure. */
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
