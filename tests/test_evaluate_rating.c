/* test_evaluate_rating.c: the energy stars (AI Energy Score's five equal bands of the
 * range) and the Pareto front of quality against energy, on examples computed by hand. */
#include "thermo/evaluate.h"

#include "test_util.h"

int main(void) {
    // range [1, 5], width 4, bands of 0.8: 1 -> band 0 (5 stars); 2 -> 1.25 -> band 1 (4);
    // 3 -> 2.5 -> band 2 (3); 4.9 -> 4.875 -> band 4 (1); 5 -> the max, band 5 clamped (1).
    // The ineligible 100 takes no part in the range and gets 0.
    double e[6] = {1, 2, 3, 4.9, 5, 100};
    int ok[6] = {1, 1, 1, 1, 1, 0}, s[6];
    int want[6] = {5, 4, 3, 1, 1, 0};
    CHECK(th_eval_energy_stars(e, ok, 6, s) == TH_OK, "stars");
    for (int i = 0; i < 6; i++) CHECK(s[i] == want[i], "energy %g: %d stars, want %d", e[i], s[i], want[i]);
    // a band edge: 1.8 is exactly 1 band above 1 -> 4 stars; 1.79 still 5
    double edge[3] = {1, 1.79, 5}, edge2[3] = {1, 1.8, 5};
    CHECK(th_eval_energy_stars(edge, NULL, 3, s) == TH_OK && s[1] == 5, "1.79: %d stars", s[1]);
    CHECK(th_eval_energy_stars(edge2, NULL, 3, s) == TH_OK && s[1] == 4, "1.8: %d stars", s[1]);
    // a range under 10 % of the minimum is within the benchmark's spread: one band for all;
    // at 20 % the ends are 5 and 1 stars again
    double close[2] = {1.0, 1.05}, apart[2] = {1.0, 1.2};
    CHECK(th_eval_energy_stars(close, NULL, 2, s) == TH_OK && s[0] == 5 && s[1] == 5, "5%% apart: %d %d", s[0], s[1]);
    CHECK(th_eval_energy_stars(apart, NULL, 2, s) == TH_OK && s[0] == 5 && s[1] == 1, "20%% apart: %d %d", s[0], s[1]);
    // all equal, and a lone model: 5 stars
    double same[2] = {3, 3};
    CHECK(th_eval_energy_stars(same, NULL, 2, s) == TH_OK && s[0] == 5 && s[1] == 5, "equal energies");
    CHECK(th_eval_energy_stars(same, NULL, 1, s) == TH_OK && s[0] == 5, "one model");
    // NaN energy is not rated
    double nan_e[2] = {NAN, 2};
    CHECK(th_eval_energy_stars(nan_e, NULL, 2, s) == TH_OK && s[0] == 0 && s[1] == 5, "NaN energy");
    CHECK(th_eval_energy_stars(e, ok, -1, s) == TH_ERR_INVALID, "n < 0");

    // Pareto, lower is better on both: (ppl 10, 1 Wh) cheapest; (8, 2) best quality;
    // (12, 1.5) dominated by (10, 1); (8, 3) dominated by (8, 2); (7, 9) ineligible.
    double q[5] = {10, 8, 12, 8, 7}, en[5] = {1, 2, 1.5, 3, 9};
    int el[5] = {1, 1, 1, 1, 0}, front[5], wf[5] = {1, 1, 0, 0, 0};
    CHECK(th_eval_pareto(q, en, el, 5, front) == TH_OK, "pareto");
    for (int i = 0; i < 5; i++) CHECK(front[i] == wf[i], "model %d: front %d, want %d", i, front[i], wf[i]);
    // with the ineligible one made eligible it is on the front (best quality) and dominates nothing else
    el[4] = 1;
    CHECK(th_eval_pareto(q, en, el, 5, front) == TH_OK && front[4] == 1 && front[0] == 1 && front[1] == 1,
          "eligible (7, 9) joins the front");
    // duplicates of a front point are both on it
    double dq[3] = {5, 5, 6}, de[3] = {2, 2, 2};
    CHECK(th_eval_pareto(dq, de, NULL, 3, front) == TH_OK && front[0] == 1 && front[1] == 1 && front[2] == 0,
          "duplicates: %d %d %d", front[0], front[1], front[2]);
    return test_summary();
}
