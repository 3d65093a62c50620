/* test_analyze_figures.c: the coupling analysis on synthetic telemetry with known answers.
 * A planted lag (the work loop slows, and power falls, 2 s after each grad-norm rise) must
 * come back as t_lag = −2 s with a strong negative r; a planted plant (τ 8 s, R 0.5 K/W,
 * integrated exactly) must come back from the least-squares fit within 5 %; alignment must
 * survive an absolute clock offset, missing samples, a gap and a shifted step clock; with
 * no coupling planted the analysis must not find one; bad logs (empty, header only,
 * truncated, mis-ordered, missing columns, too few rows) give a clear error or the figures
 * that can be computed with NaN and a reason for the others; calibrate recovers R and τ of
 * simulated profiles within 5 %; the fit names the noises on temperature and on each
 * power reading that it models. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"
#include "thermo/analyze.h"

#define TAU 8.0
#define R_TRUE 0.5
#define AMB 25.0
#define P_IDLE 20.0
#define P_MAX 120.0
#define SECONDS 300

static double g_sec[SECONDS + 8], g_other[SECONDS + 8];

/* Piecewise-linear per-second series. */
static double interp(const double *v, double t) {
    if (t < 0) t = 0;
    int k = (int)floor(t);
    double f = t - k;
    return v[k] * (1 - f) + v[k + 1] * f;
}

typedef struct {
    double t_offset;    /* added to every time */
    double step_shift;  /* added to step rows only */
    int coupled;        /* duty follows grad norm 2 s later; else an independent series */
    double drop_frac;   /* fraction of sample rows deleted */
    double gap_from, gap_to; /* no sample rows in this window */
    int reverse;        /* write rows in reverse order */
    int truncate_last;  /* cut the last line in half */
} synth;

#define HEADER                                                                                                    \
    "t_s,kind,origin,source,temp_c,power_w,energy_j,util,health,duty_set,duty_measured,threads,step,loss,grad_norm," \
    "lr,tokens,step_ms,unit_j\n"
#define OLD_HEADER "t_s,kind,source,temp_c,power_w,energy_j,util,duty,threads,step,loss,grad_norm,lr,tokens,step_ms\n"

/* Writes a telemetry CSV: samples at 10 Hz, a step every 0.5 s. */
static void write_synth(const char *path, const synth *s) {
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "cannot write %s\n", path); exit(2); }
    fprintf(f, HEADER);
    srand(7);
    size_t cap = 20 * SECONDS + 10, n = 0;
    char **lines = calloc(cap, sizeof *lines);
    double T = AMB, dt = 0.1;
    long step = 0;
    for (int i = 0; i <= 10 * SECONDS; i++) {
        double t = i * dt;
        const double *drive = s->coupled ? g_sec : g_other;
        double u = 0.7 - 0.5 * (interp(drive, t - 2.0 < 0 ? 0 : t - 2.0) - 0.5);
        double P = P_IDLE + (P_MAX - P_IDLE) * u;
        if (i > 0) { /* exact first-order step with P held over dt */
            double a = exp(-dt / TAU);
            T = AMB + R_TRUE * P + (T - AMB - R_TRUE * P) * a;
        }
        int keep = !((double)rand() / RAND_MAX < s->drop_frac) && !(t >= s->gap_from && t < s->gap_to);
        char buf[256];
        if (keep) {
            snprintf(buf, sizeof buf, "%.3f,sample,measured,test:synthetic,%.3f,%.4f,,%.4f,ok,%.4f,,2,,,,,,,", t + s->t_offset,
                     T, P, u, u);
            lines[n++] = strdup(buf);
        }
        if (i % 5 == 4) { /* a step ends every 0.5 s; tokens say the achieved rate is u * 1000 tok/s */
            long tokens = lround(500.0 * u); /* full rate 1000 tok/s: busy ms = tokens */
            double busy_ms = (double)tokens;
            snprintf(buf, sizeof buf, "%.3f,step,measured,,,,,,,,%.4f,2,%ld,%.4f,%.6f,0.001,%ld,%.3f,",
                     t + s->t_offset + s->step_shift, u, ++step, 3.0, 1.0 + interp(g_sec, t), tokens, busy_ms);
            lines[n++] = strdup(buf);
        }
    }
    for (size_t k = 0; k < n; k++) {
        const char *l = lines[s->reverse ? n - 1 - k : k];
        if (s->truncate_last && k == n - 1) fprintf(f, "%.*s", (int)(strlen(l) / 2), l);
        else fprintf(f, "%s\n", l);
        free((char *)l);
    }
    free(lines);
    fclose(f);
}

static th_analysis *analyze(const char *path, const th_analyze_opts *o) {
    th_analysis *a = NULL;
    th_status st = th_analyze_path(path, o, &a);
    CHECK(st == TH_OK, "%s: %s", path, th_last_error());
    return a;
}

static double fig(const th_analysis *a, th_an_figure_id id) { return a ? a->fig[id].value : NAN; }

/* A uniform 0..1 draw and a normal one from a private xorshift (rand() is the synth's). */
static unsigned long long g_x = 99;
static double u01(void) { g_x ^= g_x << 13, g_x ^= g_x >> 7, g_x ^= g_x << 17; return (double)(g_x >> 11) / 9007199254740992.0; }
static double n01(void) { return sqrt(-2 * log(u01() + 1e-12)) * cos(6.283185307179586 * u01()); }

/* The fit on a plant integrated exactly at 10 Hz (power held over each 0.1 s, a new level
 * every 0.5-3 s), 300 s from ambient, temperature noise 0.1 C, each power reading's noise
 * sd_p: R and tau within 5 %, the fitted noises within 25 % of the planted ones. */
static void fit_noise_case(double sd_p) {
    enum { N = 3001 };
    static double t[N], T[N], P[N];
    double temp = AMB, p = 60, next = 0;
    for (int i = 0; i < N; i++) {
        t[i] = 0.1 * i;
        if (t[i] >= next) p = P_IDLE + (P_MAX - P_IDLE) * u01(), next = t[i] + 0.5 + 2.5 * u01();
        if (i) temp = AMB + R_TRUE * p + (temp - AMB - R_TRUE * p) * exp(-0.1 / TAU);
        T[i] = temp + 0.1 * n01(), P[i] = p + sd_p * n01();
    }
    th_fo_fit f;
    CHECK(th_fit_first_order(t, T, P, N, NAN, 0, &f) == TH_OK, "noise case %g W: %s", sd_p, th_last_error());
    CHECK(fabs(f.tau_s / TAU - 1) < 0.05 && fabs(f.r_k_per_w / R_TRUE - 1) < 0.05, "noise case %g W: tau %g R %g", sd_p,
          f.tau_s, f.r_k_per_w);
    CHECK(fabs(f.temp_noise_c / 0.1 - 1) < 0.25, "noise case %g W: temperature noise %g C, planted 0.1", sd_p, f.temp_noise_c);
    if (sd_p > 0) CHECK(fabs(f.power_noise_w / sd_p - 1) < 0.25, "power noise %g W, planted %g", f.power_noise_w, sd_p);
    else CHECK(f.power_noise_w < 0.5, "no power noise planted: fitted %g W", f.power_noise_w);
}

int main(void) {
    const char *dir = test_tmp_dir("analyze_figures");
    char path[4200];
    srand(12345);
    for (int k = 0; k < SECONDS + 8; k++) g_sec[k] = (double)rand() / RAND_MAX;
    for (int k = 0; k < SECONDS + 8; k++) g_other[k] = (double)rand() / RAND_MAX;
    th_analyze_opts o = th_analyze_defaults();
    o.ambient_c = AMB;
    o.p_ref_w = P_MAX;
    o.p_idle_w = P_IDLE;

    /* --- planted lag and planted tau */
    synth base = {0, 0, 1, 0, -1, -1, 0, 0};
    snprintf(path, sizeof path, "%s/planted.csv", dir);
    write_synth(path, &base);
    th_analysis *a = analyze(path, &o);
    CHECK(fig(a, TH_AN_T_LAG) == -2.0, "t_lag %g, expected -2 (grad norm leads)", fig(a, TH_AN_T_LAG));
    CHECK(fig(a, TH_AN_R_PEAK) < -0.5, "r_peak %g, expected strong negative", fig(a, TH_AN_R_PEAK));
    CHECK(a && strstr(a->causal, "precede"), "causal reading: %s", a ? a->causal : "");
    CHECK(fabs(fig(a, TH_AN_TAU_FIT) / TAU - 1) < 0.05, "tau fit %g vs %g", fig(a, TH_AN_TAU_FIT), TAU);
    CHECK(fabs(fig(a, TH_AN_R_FIT) / R_TRUE - 1) < 0.05, "R fit %g vs %g", fig(a, TH_AN_R_FIT), R_TRUE);
    CHECK(a && a->dropped == 0 && a->n_samples == a->n_grid && a->n_grid == SECONDS + 1, "grid %zu, dropped %zu",
          a ? a->n_grid : 0, a ? a->dropped : 0);
    double eu = fig(a, TH_AN_ETA_UTIL);
    CHECK(fabs(eu - 0.7) < 0.03, "eta_util %g: the planted mean duty is 0.7", eu);
    double ep = fig(a, TH_AN_ETA_P); /* mean(P - P_idle)/mean(P) with P = 20 + 100 u */
    CHECK(fabs(ep - 70.0 / 90.0) < 0.03, "eta_p %g vs %g", ep, 70.0 / 90.0);
    /* not 0: dT/dt is a 5 s least-squares slope while P changes every second */
    CHECK(fabs(fig(a, TH_AN_BALANCE_REL)) < 0.12, "energy balance residual %g of mean P on an exact plant",
          fig(a, TH_AN_BALANCE_REL));
    double s_opt = fig(a, TH_AN_SIGMA_OPT); /* grad = 1 + U(0,1): std/mean ≈ 0.289/1.5 */
    CHECK(fabs(s_opt - 0.289 / 1.5) < 0.04, "sigma_opt %g", s_opt);
    CHECK(isfinite(fig(a, TH_AN_RLE)) && fig(a, TH_AN_RLE) > 0 && fig(a, TH_AN_RLE) < 1, "RLE %g", fig(a, TH_AN_RLE));
    CHECK(a && a->meta.modeled == 0, "a non-sim source is measured");
    th_analysis_free(a);

    /* --- alignment: absolute clock offset, missing samples and a gap */
    synth al = base;
    al.t_offset = 1000.37;
    al.drop_frac = 0.3;
    al.gap_from = 100, al.gap_to = 110;
    snprintf(path, sizeof path, "%s/offset_missing.csv", dir);
    write_synth(path, &al);
    a = analyze(path, &o);
    CHECK(fig(a, TH_AN_T_LAG) == -2.0, "offset+missing: t_lag %g", fig(a, TH_AN_T_LAG));
    CHECK(fig(a, TH_AN_R_PEAK) < -0.5, "offset+missing: r_peak %g", fig(a, TH_AN_R_PEAK));
    CHECK(fabs(fig(a, TH_AN_TAU_FIT) / TAU - 1) < 0.05, "offset+missing: tau %g", fig(a, TH_AN_TAU_FIT));
    /* a 10 s gap with ±2 s tolerance leaves 10 - 2*2 - 1 = 5..7 grid points without a reading */
    CHECK(a && a->dropped >= 5 && a->dropped <= 7, "dropped %zu for a 10 s gap", a ? a->dropped : 0);
    CHECK(a && a->n_samples + a->dropped == a->n_grid, "n_samples + dropped = grid");
    CHECK(a && a->n_warnings > 0, "the gap is reported");
    th_analysis_free(a);

    /* a step log on a clock 1000 s ahead: flagged, and --step-offset -1000 aligns it */
    synth sh = base;
    sh.step_shift = 1000;
    snprintf(path, sizeof path, "%s/shifted_steps.csv", dir);
    write_synth(path, &sh);
    a = analyze(path, &o);
    CHECK(isnan(fig(a, TH_AN_R_PEAK)), "a 1000 s step-clock shift leaves no pairs: r %g", fig(a, TH_AN_R_PEAK));
    int flagged = 0;
    for (int i = 0; a && i < a->n_warnings; i++) flagged |= strstr(a->warnings[i], "do not overlap") != NULL;
    CHECK(flagged, "the clock mismatch is reported");
    th_analysis_free(a);
    th_analyze_opts o2 = o;
    o2.step_offset_s = -1000;
    a = analyze(path, &o2);
    CHECK(fig(a, TH_AN_T_LAG) == -2.0 && fig(a, TH_AN_R_PEAK) < -0.5, "step offset: t_lag %g r %g",
          fig(a, TH_AN_T_LAG), fig(a, TH_AN_R_PEAK));
    th_analysis_free(a);

    /* --- no planted coupling: the analysis must not invent one */
    synth nc = base;
    nc.coupled = 0;
    snprintf(path, sizeof path, "%s/uncoupled.csv", dir);
    write_synth(path, &nc);
    a = analyze(path, &o);
    CHECK(fabs(fig(a, TH_AN_R_PEAK)) < 0.3, "uncoupled: r_peak %g should be weak", fig(a, TH_AN_R_PEAK));
    CHECK(a && strstr(a->fig[TH_AN_R_PEAK].interp, "weak"), "uncoupled reads weak: %s", a ? a->fig[TH_AN_R_PEAK].interp : "");
    // the bound is family-wise over the lags tried: for -3..+3 (7 lags) the normal quantile of
    // 1 - (1 - 0.95^(1/7))/2 = 2.6828 (Sidak), not the single test's 1.96
    CHECK(a && a->n_eff > 4 && fabs(a->r_bound * sqrt(a->n_eff - 3) - 2.6828) < 1e-3,
          "significance bound %g over %g pairs: z %g, want 2.6828", a ? a->r_bound : NAN, a ? a->n_eff : NAN,
          a ? a->r_bound * sqrt(a->n_eff - 3) : NAN);
    CHECK(fabs(fig(a, TH_AN_TAU_FIT) / TAU - 1) < 0.05, "uncoupled: tau %g", fig(a, TH_AN_TAU_FIT));
    th_analysis_free(a);

    /* --- bad input */
    th_analysis *b = NULL;
    snprintf(path, sizeof path, "%s/empty.csv", dir);
    fclose(fopen(path, "w"));
    CHECK(th_analyze_path(path, &o, &b) == TH_ERR_FORMAT && strstr(th_last_error(), "empty"), "empty: %s", th_last_error());
    snprintf(path, sizeof path, "%s/header_only.csv", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, HEADER);
    fclose(f);
    CHECK(th_analyze_path(path, &o, &b) == TH_ERR_FORMAT && strstr(th_last_error(), "no readable row"),
          "header only: %s", th_last_error());
    snprintf(path, sizeof path, "%s/not_telemetry.csv", dir);
    f = fopen(path, "w");
    fprintf(f, "a,b,c\n1,2,3\n");
    fclose(f);
    CHECK(th_analyze_path(path, &o, &b) == TH_ERR_FORMAT && strstr(th_last_error(), "t_s"), "no t_s: %s", th_last_error());
    CHECK(th_analyze_path("/nonexistent/x.csv", &o, &b) == TH_ERR_IO, "missing file");

    synth tr = base;
    tr.truncate_last = 1;
    snprintf(path, sizeof path, "%s/truncated.csv", dir);
    write_synth(path, &tr);
    a = analyze(path, &o);
    CHECK(a && a->bad_rows == 1, "truncated: %zu bad rows", a ? a->bad_rows : 0);
    CHECK(fig(a, TH_AN_T_LAG) == -2.0, "truncated: figures still computed (t_lag %g)", fig(a, TH_AN_T_LAG));
    th_analysis_free(a);

    synth rev = base;
    rev.reverse = 1;
    snprintf(path, sizeof path, "%s/reversed.csv", dir);
    write_synth(path, &rev);
    a = analyze(path, &o);
    CHECK(a && a->reordered > 0, "mis-ordered rows are counted");
    CHECK(fig(a, TH_AN_T_LAG) == -2.0 && fabs(fig(a, TH_AN_TAU_FIT) / TAU - 1) < 0.05, "mis-ordered: same figures");
    th_analysis_free(a);

    /* missing columns: temperature only, no power, no steps */
    snprintf(path, sizeof path, "%s/temp_only.csv", dir);
    f = fopen(path, "w");
    fprintf(f, "t_s,kind,temp_c\n");
    for (int i = 0; i < 60; i++) fprintf(f, "%d,sample,%.2f\n", i, 30 + 10 * (1 - exp(-i / 8.0)));
    fclose(f);
    a = analyze(path, &o);
    CHECK(a && a->n_grid == 60 && a->n_samples == 60, "temp only: grid %zu", a ? a->n_grid : 0);
    CHECK(isnan(fig(a, TH_AN_TAU_FIT)) && a && strstr(a->fig[TH_AN_TAU_FIT].how, "power"), "tau needs power: %s",
          a ? a->fig[TH_AN_TAU_FIT].how : "");
    CHECK(isnan(fig(a, TH_AN_R_PEAK)) && a && strstr(a->fig[TH_AN_R_PEAK].how, "grad"), "r_peak reason: %s",
          a ? a->fig[TH_AN_R_PEAK].how : "");
    CHECK(isnan(fig(a, TH_AN_ETA_P)) && isnan(fig(a, TH_AN_SIGMA_OPT)), "power and grad figures NaN");
    char *json = NULL;
    CHECK(a && th_analysis_json(a, &json) == TH_OK && strstr(json, "\"reason\"") && strstr(json, "\"tau_s\": null"),
          "JSON has null with a reason");
    free(json);
    th_analysis_free(a);

    /* too few rows for any figure (in the previous format: one duty column, no origin) */
    snprintf(path, sizeof path, "%s/three_rows.csv", dir);
    f = fopen(path, "w");
    fprintf(f, OLD_HEADER "0,sample,x,30,10,,,,,,,,,,\n1,sample,x,31,10,,,,,,,,,,\n1.5,step,,,,,,,,1,3,1.0,0.001,512,100\n");
    fclose(f);
    a = analyze(path, &o);
    /* no origin column and a source ("x") that names no hardware backend: not measured */
    CHECK(a && a->sample_rows == 2 && a->step_rows == 1 && a->meta.modeled == 1, "old format read: %zu samples",
          a ? a->sample_rows : 0);
    for (int i = 0; a && i < TH_AN_COUNT; i++)
        if (i != TH_AN_ETA_P && i != TH_AN_A_LOAD && i != TH_AN_ETA_UTIL)
            CHECK(isnan(a->fig[i].value) && a->fig[i].how[0], "%s with 3 rows: %g (%s)", a->fig[i].key,
                  a->fig[i].value, a->fig[i].how);
    th_analysis_free(a);

    /* modeled or measured comes from the origin column; a log in the previous format has
     * none, and there a "sim:" source meant the simulated plant */
    snprintf(path, sizeof path, "%s/old_sim.csv", dir);
    f = fopen(path, "w");
    fprintf(f, OLD_HEADER "0,sample,sim:laptop-cpu,30,10,,,0.5,,,,,,,\n1,sample,sim:laptop-cpu,31,10,,,0.5,,,,,,,\n");
    fclose(f);
    a = analyze(path, &o);
    CHECK(a && a->meta.modeled == 1, "an old sim log is modeled");
    th_analysis_free(a);
    snprintf(path, sizeof path, "%s/origin.csv", dir);
    f = fopen(path, "w");
    fprintf(f, HEADER "0,sample,measured,sim:named-so,30,10,,,ok,,,,,,,,,,\n1,sample,measured,sim:named-so,31,10,,,ok,,,,,,,,,,\n"
                      "2,sample,modeled,plant,31,10,,,ok,,,,,,,,,,\n");
    fclose(f);
    a = analyze(path, &o);
    CHECK(a && a->meta.modeled == 1, "one modeled row makes the session modeled");
    th_analysis_free(a);
    f = fopen(path, "w");
    fprintf(f, HEADER "0,sample,measured,sim:named-so,30,10,,,ok,,,,,,,,,,\n1,sample,measured,sim:named-so,31,10,,,ok,,,,,,,,,,\n");
    fclose(f);
    a = analyze(path, &o);
    CHECK(a && a->meta.modeled == 0, "the origin column decides, not the source's name");
    th_analysis_free(a);

    /* the writer: data sheet and plots */
    snprintf(path, sizeof path, "%s/planted.csv", dir);
    a = analyze(path, &o);
    CHECK(a && th_analysis_write(a, dir) == TH_OK, "write: %s", th_last_error());
    const char *files[] = {"datasheet.md", "datasheet.json", "thermal.svg", "rle_grad.svg", "xcorr.svg"};
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        f = fopen(path, "r");
        char buf[200] = "";
        size_t got = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f) fclose(f);
        CHECK(got > 50, "%s written", files[i]);
        if (strstr(files[i], ".svg")) CHECK(strstr(buf, "<svg") != NULL, "%s is SVG", files[i]);
    }
    th_analysis_free(a);

    /* --- calibrate on simulated profiles */
    const char *profiles[] = {"laptop-cpu", "h100-sxm", "desktop-cpu"};
    for (int i = 0; i < 3; i++) {
        th_thermal_profile p;
        CHECK(th_profile_find(profiles[i], &p) == TH_OK, "profile %s: %s", profiles[i], th_last_error());
        th_calib_opts co = th_calib_defaults();
        double tau = p.r_k_per_w * p.c_j_per_k;
        co.idle_s = 3 * tau, co.load_s = 8 * tau;
        th_calib_result r;
        th_status st = th_calibrate_simulated(&p, &co, &r);
        CHECK(st == TH_OK, "calibrate %s: %s", profiles[i], th_last_error());
        if (st != TH_OK) continue;
        CHECK(fabs(r.fit.r_k_per_w / p.r_k_per_w - 1) < 0.05, "%s: R %g vs %g", profiles[i], r.fit.r_k_per_w, p.r_k_per_w);
        CHECK(fabs(r.fit.tau_s / tau - 1) < 0.05, "%s: tau %g vs %g", profiles[i], r.fit.tau_s, tau);
        CHECK(fabs(r.p_idle_w / p.p_idle_w - 1) < 0.25, "%s: P_idle %g vs %g", profiles[i], r.p_idle_w, p.p_idle_w);
        snprintf(path, sizeof path, "%s/cal-%s.json", dir, profiles[i]);
        CHECK(th_profile_write(path, &r.profile) == TH_OK, "write profile");
        th_thermal_profile back;
        CHECK(th_profile_load(path, &back) == TH_OK, "fitted profile loads: %s", th_last_error());
        CHECK(fabs(back.r_k_per_w - r.fit.r_k_per_w) < 1e-6 && strstr(back.source, "RMS fit error"),
              "profile round trip carries the fit error");
    }
    fit_noise_case(0);
    fit_noise_case(5);
    return test_summary();
}
