/* test_pipeline_generate.c: th_generate in-process on a tiny random GPT-2: pacing never
 * changes the tokens (invariant 5), every stop reason fires where it should, the budget is
 * charged from the units' costs, the prompt is validated, and the monitored run charges
 * each token energy that adds up to the run's total. Simulated plant, modeled energy. */
#include "test_util.h"
#include "thermo/pipeline.h"

#define MAX_TOK 256

typedef struct {
    int tokens[MAX_TOK];
    int n;
    int stop_after; /* 0: never */
} collect;

static int on_token(int token, const char *bytes, size_t len, void *user) {
    (void)bytes;
    (void)len;
    collect *c = user;
    if (c->n < MAX_TOK) c->tokens[c->n++] = token;
    return c->stop_after && c->n >= c->stop_after;
}

static th_gpt2 *gen_test_model(void) {
    th_gpt2_config cfg = {.max_seq_len = 64, .vocab_size = 50257, .num_layers = 2, .num_heads = 2, .channels = 32, .ln_eps = 1e-5f};
    th_gpt2 *m = NULL;
    if (th_gpt2_create(&cfg, &m) != TH_OK) return NULL;
    th_gpt2_init_random(m, 7);
    return m;
}

static th_status run_one(th_gpt2 *m, th_tokenizer *tok, const int *ids, size_t n, th_generate_opts *o, collect *c,
                         th_generate_result *res) {
    memset(c, 0, sizeof *c);
    o->on_token = on_token;
    o->user = c;
    return th_generate(m, tok, ids, n, o, res);
}

int main(void) {
    th_gpt2 *m = gen_test_model();
    th_tokenizer *tok = NULL;
    CHECK(m != NULL, "model");
    CHECK(th_tokenizer_load_default(&tok) == TH_OK, "tokenizer: %s", th_last_error());
    if (!m || !tok) return test_summary();
    const th_gpt2_config *cfg = th_gpt2_get_config(m);

    int *ids = NULL;
    size_t n = 0;
    CHECK(th_generate_prompt(tok, cfg, "And God said", &ids, &n) == TH_OK && n == 3, "prompt: %s", th_last_error());

    // unpaced, then paced at duty 0.3 under a monitored run: the same tokens
    collect a, b;
    th_generate_result ra, rb;
    th_generate_opts o = th_generate_defaults();
    o.max_tokens = 20;
    o.loop_guard.mode = TH_GUARD_OFF;
    CHECK(run_one(m, tok, ids, n, &o, &a, &ra) == TH_OK, "unpaced: %s", th_last_error());
    CHECK(ra.generated == a.n && ra.prompt_tokens == 3, "generated %ld, handed out %d", ra.generated, a.n);
    CHECK(ra.prefill_cost.energy_j == 0 && ra.decode_cost.energy_j == 0, "no run: nothing charged");

    th_run_opts ro = th_run_opts_default();
    ro.sensor = "sim";
    ro.fixed_duty = 0.3;
    ro.hz = 200; // samples every 5 ms: the charges between samples are extrapolated over short gaps
    char tel[4200];
    snprintf(tel, sizeof tel, "%s/tokens.csv", test_tmp_dir("pipeline_generate"));
    ro.telemetry_path = tel;
    th_run *run = NULL;
    CHECK(th_run_start(&ro, &run) == TH_OK, "run: %s", th_last_error());
    o.run = run;
    CHECK(run_one(m, tok, ids, n, &o, &b, &rb) == TH_OK, "paced: %s", th_last_error());
    th_run_figures fig;
    th_run_stop(run, &fig);
    o.run = NULL;
    CHECK(a.n == b.n && memcmp(a.tokens, b.tokens, sizeof(int) * (size_t)a.n) == 0,
          "pacing changed the tokens (%d vs %d)", a.n, b.n);
    CHECK(rb.stop == ra.stop, "stop %s vs %s", th_gen_stop_name(rb.stop), th_gen_stop_name(ra.stop));
    CHECK(rb.decode_cost.idle_s > rb.decode_cost.busy_s, "duty 0.3 idles more than it works (%g idle, %g busy)",
          rb.decode_cost.idle_s, rb.decode_cost.busy_s);
    double charged = rb.prefill_cost.energy_j + rb.decode_cost.energy_j;
    // the units tile the run from its first reading to the last unit's end, charged by
    // extrapolating the latest reading's power between samples (eco.h: a fall in power after
    // the last reading makes the charges run ahead of the final figure by up to one sampling
    // period's worth, and the energy after the last unit is nobody's): on a run this short
    // (a few tenths of a second) they add up to the run's energy within a factor of 1.5 — a
    // rate taken from two readings microseconds apart once made it 5x
    CHECK(charged > 0 && fig.have_energy && charged <= 1.5 * fig.energy.energy_j &&
              charged >= fig.energy.energy_j / 1.5,
          "charged %g J of a run's %g J", charged, fig.energy.energy_j);

    // one telemetry record per generated token: the unit that produced it (the prefill,
    // index 0 with the prompt's length, produced the first; decoding token i produced token
    // i + 1), each with the energy charged to it; they add up to what was charged
    th_telemetry_row *rows = NULL;
    size_t nrows = 0;
    CHECK(th_telemetry_read(tel, &rows, &nrows) == TH_OK, "telemetry: %s", th_last_error());
    long token_rows = 0, prefill_rows = 0;
    double logged_j = 0;
    for (size_t i = 0; i < nrows; i++) {
        if (rows[i].kind != TH_ROW_TOKEN) continue;
        if (rows[i].step == 0) prefill_rows += rows[i].tokens == 3;
        else token_rows++;
        if (rows[i].has & TH_COL_UNIT_J) logged_j += rows[i].unit_j;
        CHECK(rows[i].has & TH_COL_DUTY_SET, "token row %zu without the pace in force", i);
    }
    th_free(rows);
    CHECK(prefill_rows == 1 && token_rows == rb.generated - 1, "%ld prefill rows, %ld token rows for %ld tokens",
          prefill_rows, token_rows, rb.generated);
    CHECK(fabs(logged_j - charged) <= 1e-6 * charged + 1e-9, "logged %g J, charged %g J", logged_j, charged);

    // the governor's thread cap is applied between units; on a backend whose sums do not
    // depend on the thread count (naive here; avx512 too) the tokens stay the same
    char prev_backend[32];
    snprintf(prev_backend, sizeof prev_backend, "%s", th_compute_current());
    int prev_threads = th_threads_get();
    CHECK(th_compute_select("naive") == TH_OK, "naive backend: %s", th_last_error());
    th_threads_set(2);
    CHECK(run_one(m, tok, ids, n, &o, &a, &ra) == TH_OK, "naive, 2 threads: %s", th_last_error());
    th_run_opts capped = th_run_opts_default();
    capped.sensor = "sim";
    capped.governor = "none";
    capped.max_threads = 1;
    CHECK(th_run_start(&capped, &run) == TH_OK, "capped run: %s", th_last_error());
    o.run = run;
    CHECK(run_one(m, tok, ids, n, &o, &b, &rb) == TH_OK, "capped: %s", th_last_error());
    CHECK(th_threads_get() == 1, "the cap of 1 thread was not applied (%d)", th_threads_get());
    th_run_stop(run, NULL);
    o.run = NULL;
    CHECK(a.n == b.n && memcmp(a.tokens, b.tokens, sizeof(int) * (size_t)a.n) == 0, "the thread cap changed the tokens");
    th_threads_set(prev_threads);
    th_compute_select(prev_backend);
    o.max_tokens = 20;
    CHECK(run_one(m, tok, ids, n, &o, &a, &ra) == TH_OK, "back on %s: %s", prev_backend, th_last_error());

    // the caller stops it
    o.max_tokens = 20;
    memset(&b, 0, sizeof b);
    b.stop_after = 5;
    o.on_token = on_token;
    o.user = &b;
    CHECK(th_generate(m, tok, ids, n, &o, &rb) == TH_OK && rb.stop == TH_GEN_STOP_CALLER && rb.generated == 5,
          "caller stop: %s after %ld", th_gen_stop_name(rb.stop), rb.generated);
    CHECK(memcmp(a.tokens, b.tokens, sizeof(int) * 5) == 0, "the first five tokens differ");

    // the context fills: a 64-token context and a 60-token prompt: 4 more positions are decoded,
    // and the last position's logits give a fifth token
    int long_prompt[60];
    for (int i = 0; i < 60; i++) long_prompt[i] = ids[i % n];
    o.max_tokens = 100;
    CHECK(run_one(m, tok, long_prompt, 60, &o, &b, &rb) == TH_OK && rb.stop == TH_GEN_STOP_CONTEXT_FULL &&
              rb.generated == 5,
          "context: %s after %ld", th_gen_stop_name(rb.stop), rb.generated);

    // a budget of 1 s stops a run that is paced to take longer
    ro.fixed_duty = 0.05;
    CHECK(th_run_start(&ro, &run) == TH_OK, "run: %s", th_last_error());
    o.run = run;
    o.max_tokens = 1000;
    o.budget.seconds = 0.05;
    CHECK(run_one(m, tok, long_prompt, 10, &o, &b, &rb) == TH_OK && rb.stop == TH_GEN_STOP_BUDGET,
          "budget: %s after %ld", th_gen_stop_name(rb.stop), rb.generated);
    CHECK(strstr(rb.stop_detail, "budget") != NULL, "budget detail '%s'", rb.stop_detail);
    th_run_stop(run, NULL);
    o.run = NULL;
    memset(&o.budget, 0, sizeof o.budget);

    // a loop: a model that always says the same token is caught by the guard
    o.loop_guard = th_loop_guard_defaults();
    o.sampling.temperature = 0;
    o.max_tokens = 200;
    th_gpt2 *flat = gen_test_model();
    float *p = th_gpt2_params(flat);
    memset(p, 0, sizeof(float) * th_gpt2_num_params(cfg)); // every logit equal: greedy picks id 0 forever
    CHECK(run_one(flat, tok, ids, n, &o, &b, &rb) == TH_OK && rb.stop == TH_GEN_STOP_LOOP &&
              rb.loop.kind != TH_LOOP_NONE && rb.generated < 200,
          "loop: %s after %ld", th_gen_stop_name(rb.stop), rb.generated);
    th_gpt2_free(flat);

    // bad prompts
    int *bad = NULL;
    size_t nb = 0;
    char longtext[400];
    memset(longtext, 'a', sizeof longtext);
    for (size_t i = 1; i < sizeof longtext - 1; i += 2) longtext[i] = ' ';
    longtext[sizeof longtext - 1] = 0;
    CHECK(th_generate_prompt(tok, cfg, longtext, &bad, &nb) == TH_ERR_INVALID && !bad, "a prompt past the context");
    CHECK(th_generate_prompt(tok, cfg, "", &bad, &nb) == TH_OK && nb == 1 && bad[0] == th_tokenizer_eot(tok),
          "empty prompt starts after <|endoftext|>");
    th_free(bad);
    CHECK(th_generate(m, tok, ids, 0, &o, &rb) == TH_ERR_INVALID, "an empty id list is refused");

    th_free(ids);
    th_tokenizer_free(tok);
    th_gpt2_free(m);
    return test_summary();
}
