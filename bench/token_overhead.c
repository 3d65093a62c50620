/* token_overhead.c: what the ledger and the telemetry cost per generated token, as a
 * fraction of one decode step of the default model (the "small" preset that `thermo train`
 * trains by default). Issue 12's target: below 1 %.
 *
 * Two measurements in the same run:
 *   decode  the mean time of one KV-cache decode step (th_gpt2_infer, one token) over N steps;
 *   unit    the mean time of what the pipeline adds around each token: th_run_unit_begin,
 *           th_run_unit_end with its cost (pace bookkeeping at duty 1, so no wait; the
 *           ledger's energy_at; pricing) and th_run_log_token (one telemetry row), with no
 *           model work in between, over M units, on the simulated plant with a telemetry log.
 * Prints both and their ratio, plus an end-to-end check: th_generate with and without the
 * monitored run (greedy, same tokens), whose difference includes everything else too.
 *
 * usage: token_overhead [N decode steps, default 200] [M units, default 20000] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thermo/pipeline.h"

static double now_s(void) { return th_now_ns() / 1e9; }

int main(int argc, char **argv) {
    int n_decode = argc > 1 ? atoi(argv[1]) : 200, n_units = argc > 2 ? atoi(argv[2]) : 20000;
    th_gpt2_config cfg;
    th_gpt2 *m = NULL;
    th_gpt2_kv *kv = NULL;
    if (th_gpt2_config_preset("small", &cfg) != TH_OK || th_gpt2_create(&cfg, &m) != TH_OK) return 1;
    th_gpt2_init_random(m, 1);
    if (n_decode + 2 > cfg.max_seq_len) n_decode = cfg.max_seq_len - 2;
    float *logits = malloc(sizeof(float) * (size_t)cfg.vocab_size);
    if (!logits || th_gpt2_kv_create(m, cfg.max_seq_len, &kv) != TH_OK) return 1;

    // decode steps of the default model, after a one-token prefill and one warm-up step
    int tok = 50256;
    th_gpt2_infer(m, kv, &tok, 1, logits, 0);
    th_gpt2_infer(m, kv, &tok, 1, logits, 0);
    double t0 = now_s();
    for (int i = 0; i < n_decode; i++) th_gpt2_infer(m, kv, &tok, 1, logits, 0);
    double decode_s = (now_s() - t0) / n_decode;

    // the pipeline's per-token work, on its own
    th_run_opts ro = th_run_opts_default();
    ro.sensor = "sim";
    ro.fixed_duty = 1.0;
    ro.telemetry_path = "/tmp/token_overhead.csv";
    th_eco_tables *tables = NULL;
    th_eco_factors factors;
    if (th_eco_tables_load(&tables, NULL) == TH_OK && th_eco_factors_resolve(tables, NULL, NULL, &factors) == TH_OK)
        ro.factors = &factors;
    th_eco_tables_free(tables);
    th_run *run = NULL;
    if (th_run_start(&ro, &run) != TH_OK) {
        fprintf(stderr, "token_overhead: %s\n", th_last_error());
        return 1;
    }
    th_unit_cost c;
    t0 = now_s();
    for (int i = 0; i < n_units; i++) {
        th_run_unit_begin(run);
        th_run_unit_end(run, &c);
        th_run_log_token(run, i + 1, 1, 0.0, &c);
    }
    double unit_s = (now_s() - t0) / n_units;
    th_run_stop(run, NULL);

    // end to end: th_generate with and without the monitored run
    th_tokenizer *tk = NULL;
    double e2e_run = 0, e2e_bare = 0;
    if (th_tokenizer_load_default(&tk) == TH_OK) {
        int prompt[1] = {50256};
        th_generate_opts go = th_generate_defaults();
        go.max_tokens = n_decode;
        go.sampling.temperature = 0;
        go.loop_guard.mode = TH_GUARD_OFF;
        th_generate_result res;
        t0 = now_s();
        th_generate(m, tk, prompt, 1, &go, &res);
        e2e_bare = (now_s() - t0) / (res.generated > 0 ? res.generated : 1);
        if (th_run_start(&ro, &run) == TH_OK) {
            go.run = run;
            t0 = now_s();
            th_generate(m, tk, prompt, 1, &go, &res);
            e2e_run = (now_s() - t0) / (res.generated > 0 ? res.generated : 1);
            th_run_stop(run, NULL);
        }
        th_tokenizer_free(tk);
    }
    printf("{\"model\":\"small\",\"params\":%zu,\"compute\":\"%s\",\"threads\":%d,\"decode_step_us\":%.2f,"
           "\"ledger_telemetry_per_token_us\":%.3f,\"overhead_pct_of_decode\":%.4f,"
           "\"generate_bare_us_per_token\":%.2f,\"generate_monitored_us_per_token\":%.2f}\n",
           th_gpt2_num_params(&cfg), th_compute_current(), th_threads_get(), decode_s * 1e6, unit_s * 1e6,
           100.0 * unit_s / decode_s, e2e_bare * 1e6, e2e_run * 1e6);
    remove("/tmp/token_overhead.csv");
    free(logits);
    th_gpt2_kv_free(kv);
    th_gpt2_free(m);
    return 0;
}
