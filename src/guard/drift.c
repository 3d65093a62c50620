/* drift.c: the drift detectors that decide when a continual-learning update is needed
 * (Page-Hinkley, a two-sample test against a frozen reference: the recent window's mean
 * against the reference's window means, Welch's t on block means, or the iid KS test, their
 * combination) and the energy and thermal gate that decides whether
 * it may run now. Pure code over scalars. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thermo/guard.h"

th_page_hinkley_config th_page_hinkley_defaults(void) {
    th_page_hinkley_config c = {30, 0.005, 50.0, 1.0 - 1e-4};
    return c;
}

th_status th_page_hinkley_init(th_page_hinkley *p, const th_page_hinkley_config *cfg) {
    if (cfg->min_instances < 1 || !(cfg->delta >= 0) || !isfinite(cfg->delta) || !(cfg->threshold >= 0) ||
        !isfinite(cfg->threshold) || !(cfg->alpha > 0 && cfg->alpha <= 1))
        return th_fail(TH_ERR_INVALID, "Page-Hinkley: min_instances %ld, delta %g, threshold %g, alpha %g",
                       cfg->min_instances, cfg->delta, cfg->threshold, cfg->alpha);
    memset(p, 0, sizeof *p);
    p->cfg = *cfg;
    return TH_OK;
}

int th_page_hinkley_update(th_page_hinkley *p, double x) {
    if (!isfinite(x)) return 0;
    p->n++;
    p->mean += (x - p->mean) / (double)p->n;
    p->sum = p->cfg.alpha * p->sum + (x - p->mean - p->cfg.delta);
    if (p->sum < p->min_sum) p->min_sum = p->sum;
    if (p->n >= p->cfg.min_instances && p->sum - p->min_sum > p->cfg.threshold) {
        th_page_hinkley_config c = p->cfg;
        th_page_hinkley_init(p, &c);
        return 1;
    }
    return 0;
}

double th_ks_statistic_sorted(const double *a, size_t na, const double *b, size_t nb) {
    size_t i = 0, j = 0;
    double d = 0.0;
    while (i < na && j < nb) {
        double v = a[i] <= b[j] ? a[i] : b[j];
        while (i < na && a[i] <= v) i++;
        while (j < nb && b[j] <= v) j++;
        double diff = fabs((double)i / (double)na - (double)j / (double)nb);
        if (diff > d) d = diff;
    }
    return d;
}

double th_ks_pvalue(double d, size_t na, size_t nb) {
    if (na == 0 || nb == 0) return 1.0;
    double ne = (double)na * (double)nb / (double)(na + nb);
    double sq = sqrt(ne);
    double lambda = (sq + 0.12 + 0.11 / sq) * d;
    if (lambda < 1e-3) return 1.0;
    double sum = 0.0, sign = 1.0;
    for (int j = 1; j <= 100; j++) {
        double term = sign * exp(-2.0 * j * j * lambda * lambda);
        sum += term;
        if (fabs(term) < 1e-12 * fabs(sum)) break;
        sign = -sign;
    }
    double p = 2.0 * sum;
    return p < 0 ? 0 : p > 1 ? 1 : p;
}

/* The continued fraction of the incomplete beta function (Numerical Recipes' betacf, by
 * the modified Lentz method). */
static double beta_cf(double a, double b, double x) {
    const double tiny = 1e-300;
    double qab = a + b, qap = a + 1, qam = a - 1, c = 1, d = 1 - qab * x / qap;
    if (fabs(d) < tiny) d = tiny;
    d = 1 / d;
    double h = d;
    for (int m = 1; m <= 300; m++) {
        int m2 = 2 * m;
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1 + aa * d;
        if (fabs(d) < tiny) d = tiny;
        c = 1 + aa / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1 / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1 + aa * d;
        if (fabs(d) < tiny) d = tiny;
        c = 1 + aa / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-14) break;
    }
    return h;
}

/* The regularized incomplete beta function I_x(a, b). */
static double beta_inc(double a, double b, double x) {
    if (x <= 0) return 0;
    if (x >= 1) return 1;
    double lbt = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log(1 - x);
    if (x < (a + 1) / (a + b + 2)) return exp(lbt) * beta_cf(a, b, x) / a;
    return 1 - exp(lbt) * beta_cf(b, a, 1 - x) / b;
}

double th_student_t_pvalue(double t, double df) {
    if (isnan(t) || !(df > 0)) return NAN;
    if (isinf(t)) return 0.0;
    double p = beta_inc(df / 2, 0.5, df / (df + t * t));
    return p < 0 ? 0 : p > 1 ? 1 : p;
}

/* Mean and sample variance of the means of the ⌊n / block⌋ last blocks of x. */
static void block_moments(const double *x, size_t n, size_t block, size_t *k, double *mean, double *var) {
    size_t nb = n / block, off = n - nb * block;
    double sum = 0, sq = 0;
    for (size_t i = 0; i < nb; i++) {
        double m = 0;
        for (size_t j = 0; j < block; j++) m += x[off + i * block + j];
        m /= (double)block;
        sum += m;
        sq += m * m;
    }
    *k = nb;
    *mean = nb ? sum / (double)nb : NAN;
    double v = nb > 1 ? (sq - sum * sum / (double)nb) / (double)(nb - 1) : NAN;
    *var = v > 0 ? v : 0;
}

th_status th_block_t_test(const double *a, size_t na, const double *b, size_t nb, size_t block, double *t, double *df,
                          double *p) {
    if (block == 0 || na / (block ? block : 1) < 2 || nb / (block ? block : 1) < 2)
        return th_fail(TH_ERR_INVALID, "block t test: %zu and %zu values make fewer than 2 blocks of %zu", na, nb, block);
    size_t ka, kb;
    double ma, va, mb, vb;
    block_moments(a, na, block, &ka, &ma, &va);
    block_moments(b, nb, block, &kb, &mb, &vb);
    double sa = va / (double)ka, sb = vb / (double)kb, se2 = sa + sb;
    if (!(se2 > 0)) {
        *t = mb == ma ? 0.0 : (mb > ma ? INFINITY : -INFINITY);
        *df = (double)(ka + kb - 2);
        *p = mb == ma ? 1.0 : 0.0;
        return TH_OK;
    }
    *t = (mb - ma) / sqrt(se2);
    *df = se2 * se2 / (sa * sa / (double)(ka - 1) + sb * sb / (double)(kb - 1));
    *p = th_student_t_pvalue(*t, *df);
    return TH_OK;
}

th_status th_prediction_t_test(const double *means, size_t k, double m, double shift, double *t, double *df,
                               double *p) {
    if (k < 2 || !isfinite(m) || !isfinite(shift))
        return th_fail(TH_ERR_INVALID, "prediction t test: %zu means (2 needed), new mean %g, shift %g", k, m, shift);
    double sum = 0, sq = 0;
    for (size_t i = 0; i < k; i++) sum += means[i];
    double c = sum / (double)k;
    for (size_t i = 0; i < k; i++) sq += (means[i] - c) * (means[i] - c);
    double se = sqrt(sq / (double)(k - 1) * (1.0 + 1.0 / (double)k)), dev = m - c - shift;
    *df = (double)(k - 1);
    if (!(se > 0)) {
        *t = dev == 0 ? 0.0 : dev > 0 ? INFINITY : -INFINITY;
        *p = dev > 0 ? 0.0 : 1.0;
        return TH_OK;
    }
    *t = dev / se;
    double two = th_student_t_pvalue(*t, *df);
    *p = *t > 0 ? two / 2 : 1 - two / 2;
    return TH_OK;
}

struct th_drift {
    th_drift_config cfg;
    th_page_hinkley ph;
    double *ref;    /* cfg.reference values, sorted for KS, in stream order for the others; NULL until set */
    double *ref_means; /* the windows test: the means of the reference's n_windows windows */
    size_t n_windows;
    double *ring;   /* the last cfg.window values */
    double *sorted; /* scratch for a test: the recent values in stream order (sorted for KS) */
    double ref_mean, ref_sd; /* Page-Hinkley sees (x - ref_mean) / ref_sd once the reference is set */
    size_t filled, head, since_test;
    long suspect_age;        /* values since the Page-Hinkley alarm under test; -1: none */
    long index;
    double stat, p;
};

th_drift_config th_drift_defaults(void) {
    th_drift_config c;
    c.ph = th_page_hinkley_defaults();
    c.reference = 4096;
    c.window = 256;
    c.block = 32;
    c.p_value = 0.05;
    c.min_rise_nats = 0.25;
    c.features = 1;
    c.test = TH_DRIFT_TEST_WINDOWS;
    return c;
}

void th_drift_free(th_drift *d) {
    if (!d) return;
    th_free(d->ref);
    th_free(d->ref_means);
    th_free(d->ring);
    th_free(d->sorted);
    th_free(d);
}

th_status th_drift_create(const th_drift_config *cfg, th_drift **out) {
    int block_t = cfg->test == TH_DRIFT_TEST_BLOCK_T, windows = cfg->test == TH_DRIFT_TEST_WINDOWS;
    if (cfg->reference == 0 || cfg->window == 0 || cfg->reference > (1u << 24) || cfg->window > (1u << 24) ||
        !(cfg->p_value > 0 && cfg->p_value < 1) || cfg->features < 1 || !(cfg->min_rise_nats >= 0) ||
        !isfinite(cfg->min_rise_nats) ||
        (cfg->test != TH_DRIFT_TEST_BLOCK_T && cfg->test != TH_DRIFT_TEST_KS && !windows) ||
        (block_t && (cfg->block == 0 || cfg->window / cfg->block < 2 || cfg->reference / cfg->block < 2)) ||
        (windows && cfg->reference / cfg->window < 3))
        return th_fail(TH_ERR_INVALID,
                       "drift detector: reference %zu, window %zu, block %zu, p %g, min rise %g nats, features %d, test %d",
                       cfg->reference, cfg->window, cfg->block, cfg->p_value, cfg->min_rise_nats, cfg->features,
                       (int)cfg->test);
    th_drift *d = th_calloc(1, sizeof *d);
    if (!d) return th_fail(TH_ERR_NOMEM, "drift detector: out of memory");
    th_status st = th_page_hinkley_init(&d->ph, &cfg->ph);
    if (st != TH_OK) {
        th_free(d);
        return st;
    }
    d->cfg = *cfg;
    d->ring = th_alloc(sizeof(double) * cfg->window);
    d->sorted = th_alloc(sizeof(double) * cfg->window);
    if (!d->ring || !d->sorted) {
        th_drift_free(d);
        return th_fail(TH_ERR_NOMEM, "drift detector: out of memory");
    }
    d->stat = d->p = NAN;
    d->suspect_age = -1;
    *out = d;
    return TH_OK;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

th_status th_drift_set_reference(th_drift *d, const double *x, size_t n) {
    size_t nr = d->cfg.reference, w = d->cfg.window, k = d->cfg.test == TH_DRIFT_TEST_WINDOWS ? nr / w : 0;
    if (n < nr) return th_fail(TH_ERR_INVALID, "drift detector: %zu reference values, %zu needed", n, nr);
    double *ref = th_alloc(sizeof(double) * nr), *means = k ? th_alloc(sizeof(double) * k) : NULL;
    if (!ref || (k && !means)) {
        th_free(ref);
        th_free(means);
        return th_fail(TH_ERR_NOMEM, "drift detector: out of memory");
    }
    memcpy(ref, x, sizeof(double) * nr);
    for (size_t i = 0; i < k; i++) {
        double m = 0;
        for (size_t j = 0; j < w; j++) m += ref[i * w + j];
        means[i] = m / (double)w;
    }
    if (d->cfg.test == TH_DRIFT_TEST_KS) qsort(ref, nr, sizeof(double), cmp_double);
    double sum = 0, sq = 0;
    for (size_t i = 0; i < nr; i++) sum += ref[i];
    double mean = sum / (double)nr;
    for (size_t i = 0; i < nr; i++) sq += (ref[i] - mean) * (ref[i] - mean);
    double sd = sqrt(sq / (double)(nr > 1 ? nr - 1 : 1));
    th_free(d->ref);
    th_free(d->ref_means);
    d->ref = ref;
    d->ref_means = means;
    d->n_windows = k;
    d->ref_mean = mean;
    d->ref_sd = sd > 1e-12 ? sd : 1.0;
    // the detector starts on the standardized scale, looking for half the smallest rise worth an update
    th_page_hinkley_config ph = d->cfg.ph;
    double k_half = d->cfg.min_rise_nats / (2.0 * d->ref_sd);
    if (k_half > ph.delta) ph.delta = k_half;
    th_page_hinkley_init(&d->ph, &ph);
    return TH_OK;
}

/* Tests a suspicion may take: Bonferroni divides the level by their number. */
#define DRIFT_RETRIES 8

/* The two-sample test of the last `filled` values against the reference; 1 if it rejects at
 * the level divided by the features and by `tests` (the tests this decision may take). A
 * recent window too short for two blocks (block test) or not yet full (windows test: its
 * mean would be noisier than the reference's window means) does not reject. */
static int test_rejects(th_drift *d, int tests) {
    size_t n = d->filled;
    double df, rise = d->cfg.min_rise_nats;
    for (size_t i = 0; i < n; i++) d->sorted[i] = d->ring[(d->head + d->cfg.window - n + i) % d->cfg.window];
    if (d->cfg.test == TH_DRIFT_TEST_KS) {
        qsort(d->sorted, n, sizeof(double), cmp_double);
        d->stat = th_ks_statistic_sorted(d->ref, d->cfg.reference, d->sorted, n);
        d->p = th_ks_pvalue(d->stat, d->cfg.reference, n);
    } else if (d->cfg.test == TH_DRIFT_TEST_WINDOWS) {
        if (n < d->cfg.window) return 0;
        double m = 0;
        for (size_t i = 0; i < n; i++) m += d->sorted[i];
        th_prediction_t_test(d->ref_means, d->n_windows, m / (double)n, rise, &d->stat, &df, &d->p);
    } else {
        if (n / d->cfg.block < 2) return 0;
        for (size_t i = 0; i < n; i++) d->sorted[i] -= rise; // the null: a rise of at most min_rise
        th_block_t_test(d->ref, d->cfg.reference, d->sorted, n, d->cfg.block, &d->stat, &df, &d->p);
        d->p = d->stat > 0 ? d->p / 2 : 1 - d->p / 2; // one-sided: a rise, as Page-Hinkley's mode "up"
    }
    return d->p < d->cfg.p_value / d->cfg.features / tests;
}

th_drift_verdict th_drift_update(th_drift *d, double x) {
    th_drift_verdict v;
    memset(&v, 0, sizeof v);
    v.index = d->index;
    if (!isfinite(x)) {
        v.stat = d->stat;
        v.p = d->p;
        return v;
    }
    d->index++;
    d->ring[d->head] = x;
    d->head = (d->head + 1) % d->cfg.window;
    if (d->filled < d->cfg.window) d->filled++;
    d->since_test++;
    v.ph_alarm = th_page_hinkley_update(&d->ph, d->ref ? (x - d->ref_mean) / d->ref_sd : x);
    if (d->ref && d->filled == d->cfg.window && d->since_test >= d->cfg.window) {
        d->since_test = 0;
        v.test_alarm = test_rejects(d, 1);
    }
    // an alarm opens a suspicion: the test is retried on the value of the alarm and on 7
    // more evenly spaced up to one full window after it (the recent window may still hold
    // old values at the alarm; the last try sees only values from after it)
    if (d->ref && v.ph_alarm) d->suspect_age = 0;
    if (d->ref && d->suspect_age >= 0) {
        long step = ((long)d->cfg.window + DRIFT_RETRIES - 2) / (DRIFT_RETRIES - 1);
        if (d->suspect_age % step == 0 && d->filled >= (size_t)d->cfg.ph.min_instances) {
            v.drift = test_rejects(d, DRIFT_RETRIES);
            if (v.drift) d->suspect_age = -1;
        }
        if (d->suspect_age >= 0 && ++d->suspect_age > step * (DRIFT_RETRIES - 1)) d->suspect_age = -1;
    }
    v.stat = d->stat;
    v.p = d->p;
    return v;
}

th_guard_action th_update_gate(const th_update_gate_config *cfg, double expected_j, double temp_c, double limit_c,
                               char *reason, size_t cap) {
    if (cfg->energy_budget_j > 0 && !(expected_j <= cfg->energy_budget_j)) {
        snprintf(reason, cap, "skipped: the update's expected %.1f J exceeds the energy budget of %.1f J", expected_j,
                 cfg->energy_budget_j);
        return TH_GUARD_REFUSE;
    }
    if (isfinite(temp_c) && isfinite(limit_c) && limit_c - temp_c < cfg->min_margin_c) {
        snprintf(reason, cap, "skipped: thermal margin %.1f C (%.1f C against a limit of %.1f C) is under %.1f C",
                 limit_c - temp_c, temp_c, limit_c, cfg->min_margin_c);
        return TH_GUARD_REFUSE;
    }
    if (!isfinite(temp_c) || !isfinite(limit_c))
        snprintf(reason, cap, "allowed: expected %.1f J%s; no thermal figure to check", expected_j,
                 cfg->energy_budget_j > 0 ? " fits the budget" : "");
    else
        snprintf(reason, cap, "allowed: expected %.1f J%s, thermal margin %.1f C", expected_j,
                 cfg->energy_budget_j > 0 ? " fits the budget" : " (no budget)", limit_c - temp_c);
    return TH_GUARD_CONTINUE;
}
