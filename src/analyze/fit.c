/* fit.c: the first-order thermal fit of analyze.h, T = T_amb + R*lowpass_tau(P) + d0*e^(-t/tau),
 * by maximum likelihood with white noise on the temperature and on the recorded power: the
 * plant low-passes the power's noise into a slow wander of the residuals, which a plain
 * least-squares fit reads as signal. */
#include <math.h>

#include "analyze/analyze_internal.h"

/* The regressors of the model at every point for one τ (and sensor lag): y = lowpass_τ(P),
 * e = exp(−(t − t0)/τ), both passed through the sensor's first-order lag when lag > 0
 * (the constant is unchanged by it). */
static void fo_regressors(const double *t, const double *P, size_t n, double tau, double lag, double *y, double *e) {
    double yy = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            double a = exp(-(t[i] - t[i - 1]) / tau);
            yy = yy * a + P[i] * (1 - a);
        }
        y[i] = yy;
        e[i] = exp(-(t[i] - t[0]) / tau);
    }
    if (lag > 0)
        for (size_t i = 1; i < n; i++) {
            double b = exp(-(t[i] - t[i - 1]) / lag);
            y[i] = y[i - 1] * b + y[i] * (1 - b);
            e[i] = e[i - 1] * b + e[i] * (1 - b);
        }
}

/* Residual sum of squares of the linear least-squares fit for one τ and lag; the
 * coefficients (T_amb, R, d0) in beta. INFINITY when the normal equations are singular.
 * y and e are scratch arrays of n. */
static double fo_sse(const double *t, const double *T, const double *P, size_t n, double tau, double amb,
                     double lag, double *y, double *e, double beta[3]) {
    fo_regressors(t, P, n, tau, lag, y, e);
    int fixed = isfinite(amb), k = fixed ? 2 : 3;
    double M[3][4] = {{0}};
    for (size_t i = 0; i < n; i++) {
        double x[3], target = T[i];
        if (fixed) x[0] = y[i], x[1] = e[i], target -= amb;
        else x[0] = 1, x[1] = y[i], x[2] = e[i];
        for (int r = 0; r < k; r++) {
            M[r][k] += x[r] * target;
            for (int c = 0; c < k; c++) M[r][c] += x[r] * x[c];
        }
    }
    double diag[3];
    for (int r = 0; r < k; r++) diag[r] = M[r][r];
    for (int c = 0; c < k; c++) { /* Gaussian elimination with partial pivoting */
        int best = c;
        for (int r = c + 1; r < k; r++)
            if (fabs(M[r][c]) > fabs(M[best][c])) best = r;
        if (best != c)
            for (int j = 0; j <= k; j++) {
                double tmp = M[c][j];
                M[c][j] = M[best][j], M[best][j] = tmp;
            }
        if (fabs(M[c][c]) < 1e-10 * (fabs(diag[c]) + 1e-300)) return INFINITY;
        for (int r = c + 1; r < k; r++) {
            double f = M[r][c] / M[c][c];
            for (int j = c; j <= k; j++) M[r][j] -= f * M[c][j];
        }
    }
    double s[3];
    for (int r = k - 1; r >= 0; r--) {
        double v = M[r][k];
        for (int j = r + 1; j < k; j++) v -= M[r][j] * s[j];
        s[r] = v / M[r][r];
    }
    if (fixed) beta[0] = amb, beta[1] = s[0], beta[2] = s[1];
    else beta[0] = s[0], beta[1] = s[1], beta[2] = s[2];
    double sse = 0;
    for (size_t i = 0; i < n; i++) {
        double r = T[i] - (beta[0] + beta[1] * y[i] + beta[2] * e[i]);
        sse += r * r;
    }
    return sse;
}

/* The τ search for one lag: a log grid, then golden section around its best point.
 * Returns the SSE (INFINITY: none; *edge set when the best τ is the grid's top). */
static double fo_search(const double *t, const double *T, const double *P, size_t n, double amb, double lag,
                        double *y, double *e, double *tau_out, int *edge) {
    double h = (t[n - 1] - t[0]) / (n - 1), span = t[n - 1] - t[0], beta[3];
    double lo = log(fmax(0.05, h / 5)), hi = log(5 * span);
    enum { G = 60 };
    double best = INFINITY;
    int bi = -1;
    for (int g = 0; g <= G; g++) {
        double s = fo_sse(t, T, P, n, exp(lo + (hi - lo) * g / G), amb, lag, y, e, beta);
        if (s < best) best = s, bi = g;
    }
    *edge = bi == G;
    if (bi < 0) return INFINITY;
    double a = lo + (hi - lo) * (bi > 0 ? bi - 1 : 0) / G, b = lo + (hi - lo) * (bi < G ? bi + 1 : G) / G;
    const double gr = 0.6180339887498949;
    double c = b - gr * (b - a), d = a + gr * (b - a);
    double fc = fo_sse(t, T, P, n, exp(c), amb, lag, y, e, beta), fd = fo_sse(t, T, P, n, exp(d), amb, lag, y, e, beta);
    for (int it = 0; it < 50; it++) {
        if (fc < fd) b = d, d = c, fd = fc, c = b - gr * (b - a), fc = fo_sse(t, T, P, n, exp(c), amb, lag, y, e, beta);
        else a = c, c = d, fc = fd, d = a + gr * (b - a), fd = fo_sse(t, T, P, n, exp(d), amb, lag, y, e, beta);
    }
    *tau_out = exp(0.5 * (a + b));
    return fo_sse(t, T, P, n, *tau_out, amb, lag, y, e, beta);
}

/* ---------------------------------------------------------------------------------
 * maximum likelihood with recorded-power noise
 *
 * A reading P_m = P + n (n white, variance s_n^2) held over its interval enters the model as
 * R*lowpass(P_m), so T_m − model = v − R*lowpass(n): white sensor noise v (variance s_v^2)
 * plus w_k = a_k w_(k−1) + (1 − a_k) eta_k, a_k = e^(−dt_k/tau), var eta = (R s_n)^2, w_0 = 0
 * (y starts at 0). With lam = (R s_n)^2 / s_v^2 a scalar Kalman filter turns the residuals
 * into innovations nu_k with variances s_v^2*S_k; the filter does not depend on the data, so
 * the innovations are linear in (T_amb, R, d0), solved by weighted least squares, and s_v^2
 * is concentrated out: −2 log L = sum log S_k + n log(SSE_w / n) + const. lam = 0 is the
 * plain output-error fit above. */

typedef struct {
    const double *t, *T, *P;
    size_t n;
    double amb, lag;
    double *col; /* 4 x n: the innovations of 1, y, e and T */
    double *S;   /* n: the innovation variances over s_v^2 */
    double *y, *e;
} fo_ml;

/* Solves the k x k system in M (augmented with k more columns) by Gauss-Jordan; 0 if
 * singular. The right half holds M^-1 * (the right half) after. */
static int solve_gj(double M[3][7], int k, int cols) {
    for (int c = 0; c < k; c++) {
        int best = c;
        for (int r = c + 1; r < k; r++)
            if (fabs(M[r][c]) > fabs(M[best][c])) best = r;
        for (int j = 0; j < k + cols; j++) {
            double tmp = M[c][j];
            M[c][j] = M[best][j], M[best][j] = tmp;
        }
        if (!(fabs(M[c][c]) > 1e-300)) return 0;
        double piv = M[c][c];
        for (int j = 0; j < k + cols; j++) M[c][j] /= piv;
        for (int r = 0; r < k; r++) {
            if (r == c) continue;
            double f = M[r][c];
            for (int j = 0; j < k + cols; j++) M[r][j] -= f * M[c][j];
        }
    }
    return 1;
}

/* −2 log L (up to a constant) at (tau, lam), the coefficients (T_amb, R, d0) in beta; when
 * cov is given, their covariance (s_v^2 estimated with n − k − 2 degrees of freedom) and
 * the estimated s_v^2 in *s2. INFINITY when singular. */
static double fo_nll(fo_ml *m, double tau, double lam, double beta[3], double cov[3][3], double *s2) {
    size_t n = m->n;
    fo_regressors(m->t, m->P, n, tau, m->lag, m->y, m->e);
    double *c0 = m->col, *c1 = c0 + n, *c2 = c1 + n, *c3 = c2 + n;
    double w[4] = {0}, pv = 0, logdet = 0;
    for (size_t i = 0; i < n; i++) {
        double a = i ? exp(-(m->t[i] - m->t[i - 1]) / tau) : 0, q = i ? (1 - a) * (1 - a) * lam : 0;
        double pp = a * a * pv + q, s = pp + 1, K = pp / s, x[4] = {1, m->y[i], m->e[i], m->T[i]};
        double *dst[4] = {c0 + i, c1 + i, c2 + i, c3 + i};
        for (int j = 0; j < 4; j++) {
            double nu = x[j] - a * w[j];
            w[j] = a * w[j] + K * nu;
            *dst[j] = nu;
        }
        pv = (1 - K) * pp, m->S[i] = s, logdet += log(s);
    }
    int fixed = isfinite(m->amb), k = fixed ? 2 : 3;
    double M[3][7] = {{0}};
    for (size_t i = 0; i < n; i++) {
        double x[3], target = c3[i];
        if (fixed) x[0] = c1[i], x[1] = c2[i], target -= m->amb * c0[i];
        else x[0] = c0[i], x[1] = c1[i], x[2] = c2[i];
        for (int r = 0; r < k; r++) {
            M[r][k] += x[r] * target / m->S[i];
            for (int c = 0; c < k; c++) M[r][c] += x[r] * x[c] / m->S[i];
        }
    }
    for (int r = 0; r < k; r++) M[r][k + 1 + r] = 1;
    if (!solve_gj(M, k, k + 1)) return INFINITY;
    if (fixed) beta[0] = m->amb, beta[1] = M[0][k], beta[2] = M[1][k];
    else beta[0] = M[0][k], beta[1] = M[1][k], beta[2] = M[2][k];
    double sse = 0;
    for (size_t i = 0; i < n; i++) {
        double r = c3[i] - beta[0] * c0[i] - beta[1] * c1[i] - beta[2] * c2[i];
        sse += r * r / m->S[i];
    }
    if (!(sse > 0)) return INFINITY;
    if (cov) {
        double v = sse / fmax(1.0, (double)n - k - 2);
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 3; c++) cov[r][c] = 0;
        for (int r = 0; r < k; r++)
            for (int c = 0; c < k; c++) cov[fixed ? r + 1 : r][fixed ? c + 1 : c] = v * M[r][k + 1 + c];
        *s2 = sse / n;
    }
    return logdet + (double)n * log(sse / n);
}

/* Golden section for the minimum of fo_nll over log tau in [lo, hi] at lam (which == 0)
 * or over log lam in [lo, hi] at tau (which == 1); the argument in *arg, the value returned. */
static double fo_golden(fo_ml *m, int which, double fixed, double lo, double hi, int iters, double *arg) {
    const double gr = 0.6180339887498949;
    double beta[3], a = lo, b = hi, c = b - gr * (b - a), d = a + gr * (b - a);
#define FO_F(u) (which ? fo_nll(m, fixed, exp(u), beta, NULL, NULL) : fo_nll(m, exp(u), fixed, beta, NULL, NULL))
    double fc = FO_F(c), fd = FO_F(d);
    for (int it = 0; it < iters; it++) {
        if (fc < fd) b = d, d = c, fd = fc, c = b - gr * (b - a), fc = FO_F(c);
        else a = c, c = d, fc = fd, d = a + gr * (b - a), fd = FO_F(d);
    }
    *arg = exp(0.5 * (a + b));
    double f = FO_F(log(*arg));
#undef FO_F
    return f;
}

/* The likelihood's optimum, started from the output-error tau0: for lam 0 and 10^-3 ... 10^3
 * (decade steps) the best tau within a factor 2 of tau0, then two rounds of refining lam
 * (within a factor 10 each way, against lam = 0 too) and tau. Returns −2 log L; *tau, *lam. */
static double fo_ml_search(fo_ml *m, double tau0, double *tau, double *lam) {
    double best = INFINITY, t_arg, beta[3];
    *tau = tau0, *lam = 0;
    for (int j = -1; j <= 6; j++) {
        double l = j < 0 ? 0 : pow(10, -3 + j);
        double f = fo_golden(m, 0, l, log(tau0) - 0.7, log(tau0) + 0.7, 24, &t_arg);
        if (f < best) best = f, *tau = t_arg, *lam = l;
    }
    for (int round = 0; round < 2; round++) {
        if (*lam > 0) {
            double l_arg, f = fo_golden(m, 1, *tau, log(*lam) - 2.3, log(*lam) + 2.3, 30, &l_arg);
            if (f < best) best = f, *lam = l_arg;
        }
        double f = fo_golden(m, 0, *lam, log(*tau) - 0.1, log(*tau) + 0.1, 30, &t_arg);
        if (f < best) best = f, *tau = t_arg;
    }
    return fo_nll(m, *tau, *lam, beta, NULL, NULL);
}

/* The uncertainties of th_fo_fit (see analyze.h): the covariance of (T_amb, R, d0) at the
 * optimum, and the likelihood's profile over tau (lam held), scanned in 0.5 % steps of log
 * tau each way until −2 log L rises by 1 (at most a factor e each way); a profile sharper
 * than one step: its curvature. */
static void fo_ml_uncertainty(fo_ml *m, double tau, double lam, double nll, th_fo_fit *out) {
    double beta[3], cov[3][3], s2 = NAN, b[3];
    int fixed = isfinite(m->amb);
    out->tau_sd_s = out->r_sd_k_per_w = out->c_sd_j_per_k = NAN;
    out->t_ambient_sd_c = fixed ? 0 : NAN;
    if (!isfinite(fo_nll(m, tau, lam, beta, cov, &s2))) return;
    double lo_tau = tau, hi_tau = tau, amb_lo = beta[0], amb_hi = beta[0], r_lo = beta[1], r_hi = beta[1];
    double c_lo = tau / beta[1], c_hi = c_lo;
    for (int dir = -1; dir <= 1; dir += 2)
        for (int s = 1; s <= 200; s++) {
            double tt = tau * exp(dir * 0.005 * s);
            if (fo_nll(m, tt, lam, b, NULL, NULL) > nll + 1) break;
            lo_tau = fmin(lo_tau, tt), hi_tau = fmax(hi_tau, tt);
            amb_lo = fmin(amb_lo, b[0]), amb_hi = fmax(amb_hi, b[0]), r_lo = fmin(r_lo, b[1]), r_hi = fmax(r_hi, b[1]);
            c_lo = fmin(c_lo, tt / b[1]), c_hi = fmax(c_hi, tt / b[1]);
        }
    double s_dn = fo_nll(m, tau * exp(-0.005), lam, b, NULL, NULL), s_up = fo_nll(m, tau * exp(0.005), lam, b, NULL, NULL);
    double curv = (s_dn + s_up - 2 * nll) / (0.005 * 0.005), u_sd = curv > 0 ? sqrt(2 / curv) : 0;
    out->tau_sd_s = fmax(0.5 * (hi_tau - lo_tau), isfinite(u_sd) ? tau * u_sd : 0);
    out->r_sd_k_per_w = sqrt(cov[1][1] + 0.25 * (r_hi - r_lo) * (r_hi - r_lo));
    /* C = tau/R: tau and R move together along the profile, so C is far tighter than
     * their relative errors in quadrature */
    out->c_sd_j_per_k = sqrt(cov[1][1] * pow(tau / (beta[1] * beta[1]), 2) + 0.25 * (c_hi - c_lo) * (c_hi - c_lo));
    if (!fixed) out->t_ambient_sd_c = sqrt(cov[0][0] + 0.25 * (amb_hi - amb_lo) * (amb_hi - amb_lo));
    out->temp_noise_c = sqrt(s2);
    out->power_noise_w = beta[1] > 0 ? sqrt(lam * s2) / beta[1] : NAN;
}

th_status th_fit_first_order(const double *t_in, const double *T_in, const double *P_in, size_t n_in,
                             double ambient_c, double max_lag_s, th_fo_fit *out) {
    size_t cap = n_in ? n_in : 1;
    double *t = th_alloc(11 * cap * sizeof *t);
    if (!t) return th_fail(TH_ERR_NOMEM, "fit: out of memory");
    double *T = t + cap, *P = T + cap, *y = P + cap, *e = y + cap;
    size_t n = 0;
    for (size_t i = 0; i < n_in; i++)
        if (isfinite(t_in[i]) && isfinite(T_in[i]) && isfinite(P_in[i]) && (n == 0 || t_in[i] > t[n - 1]))
            t[n] = t_in[i], T[n] = T_in[i], P[n] = P_in[i], n++;
    th_status st = TH_OK;
    double pmin = INFINITY, pmax = -INFINITY;
    for (size_t i = 0; i < n; i++) pmin = fmin(pmin, P[i]), pmax = fmax(pmax, P[i]);
    if (n < 8) {
        st = th_fail(TH_ERR_INVALID, "fit: %zu points with time, temperature and power (need 8)", n);
        goto done;
    }
    if (!(pmax - pmin > 1e-6 * (fabs(pmax) + 1))) {
        st = th_fail(TH_ERR_INVALID, "fit: power is constant (%.3g W): R cannot be separated from ambient", pmax);
        goto done;
    }
    /* the output-error fit picks the sensor lag and starts the likelihood's search */
    double best = INFINITY, best_tau = NAN, best_lag = 0, h = (t[n - 1] - t[0]) / (n - 1);
    int best_edge = 0;
    /* sensor lag candidates: 0, then steps of max(0.1 s, the sample period) up to max_lag_s */
    double dl = fmax(0.1, h);
    for (double lag = 0; lag <= max_lag_s + 1e-9; lag += dl) {
        double tau = NAN;
        int edge = 0;
        double s = fo_search(t, T, P, n, ambient_c, lag, y, e, &tau, &edge);
        if (s < best) best = s, best_tau = tau, best_lag = lag, best_edge = edge;
        if (!(max_lag_s > 0)) break;
    }
    if (!isfinite(best)) {
        st = th_fail(TH_ERR_INVALID, "fit: no finite least-squares solution");
        goto done;
    }
    if (best_edge) {
        st = th_fail(TH_ERR_INVALID, "fit: tau runs past 5x the record (%.0f s): no transient to fit", t[n - 1] - t[0]);
        goto done;
    }
    fo_ml m = {t, T, P, n, ambient_c, best_lag, e + cap, e + 5 * cap, y, e};
    double tau = NAN, lam = 0, beta[3];
    double nll = fo_ml_search(&m, best_tau, &tau, &lam);
    if (!isfinite(nll) || !isfinite(fo_nll(&m, tau, lam, beta, NULL, NULL)) || !(beta[1] > 0)) {
        st = th_fail(TH_ERR_INVALID, "fit: the fitted R is %.3g K/W (not positive): temperature does not "
                                     "follow power", isfinite(nll) ? beta[1] : NAN);
        goto done;
    }
    out->tau_s = tau;
    out->r_k_per_w = beta[1];
    out->c_j_per_k = tau / beta[1];
    out->t_ambient_c = beta[0];
    out->sensor_lag_s = best_lag;
    out->temp_noise_c = out->power_noise_w = NAN;
    fo_ml_uncertainty(&m, tau, lam, nll, out);
    /* the RMS of T − model itself, not of the innovations */
    fo_regressors(t, P, n, tau, best_lag, y, e);
    double sse = 0;
    for (size_t i = 0; i < n; i++) {
        double r = T[i] - (beta[0] + beta[1] * y[i] + beta[2] * e[i]);
        sse += r * r;
    }
    out->rms_c = sqrt(sse / n);
    out->n = n;
    out->ambient_fitted = !isfinite(ambient_c);
done:
    th_free(t);
    return st;
}
