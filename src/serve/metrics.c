/* metrics.c: latency histograms with Prometheus' cumulative buckets (seconds), shared by
 * time to first token, inter-token latency and end-to-end latency. */
#include "serve/serve_internal.h"

const double th_hist_bounds[TH_HIST_BUCKETS] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                0.25,  0.5,    1,     2.5,  5,     10,  30};

void th_hist_add(th_hist *h, double seconds) {
    int b = 0;
    while (b < TH_HIST_BUCKETS && seconds > th_hist_bounds[b]) b++;
    h->counts[b]++;
    h->sum += seconds;
    h->n++;
}
