/* server.c: the inference server's HTTP side. Connection threads (http.c) parse and admit
 * requests, which the engine thread (engine.c) then prefills and decodes. Admission
 * follows the thermal state: ok (all --parallel sequences), warm (within warm_margin_c of
 * the limit: half), hot (at the limit or in fail-safe: one, and no queue: 503 with
 * Retry-After); otherwise a bounded queue, and 429 with Retry-After when it is full.
 * Also the responses (JSON, SSE streams), /metrics, /health, start and stop. */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "serve/serve_internal.h"
#include "thermo/serve.h"

static const char *const thermal_names[] = {"ok", "warm", "hot"};
static const int codes[8] = {200, 400, 401, 404, 413, 429, 503, 500};

th_serve_opts th_serve_defaults(void) {
    th_serve_opts o;
    memset(&o, 0, sizeof o);
    o.host = "127.0.0.1";
    o.port = 8080;
    o.parallel = 4;
    o.max_body_bytes = 1 << 20;
    o.timeout_s = 30;
    o.max_connections = 64;
    o.warm_margin_c = 3.0;
    o.watch_ms = 1000;
    o.run = th_run_opts_default();
    return o;
}

/* ---------------------------------------------------------------------------------
 * responses */

static void set_json(th_http_resp *r, int status, json_t *j) {
    r->status = status;
    r->content_type = "application/json";
    char *d = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (d) {
        r->len = strlen(d);
        r->body = th_alloc(r->len + 1);
        if (r->body) memcpy(r->body, d, r->len + 1);
        else r->len = 0;
        free(d);
    }
}

static void count_code(th_server *s, int status) {
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < 8; i++)
        if (codes[i] == status) s->by_code[i]++;
    pthread_mutex_unlock(&s->mu);
}

static void error_resp(th_server *s, th_http_resp *r, int status, const char *type, const char *param,
                       const char *msg) {
    json_t *e = json_pack("{s:{s:s,s:s,s:s?,s:i}}", "error", "message", msg, "type", type, "param",
                          param && *param ? param : NULL, "code", status);
    set_json(r, status, e);
    count_code(s, status);
}

/* Text that is valid UTF-8: invalid bytes become U+FFFD. th_alloc'd. */
static char *clean_utf8(const char *t, size_t n, size_t *out_len) {
    char *o = th_alloc(n * 3 + 1);
    size_t w = 0, i = 0;
    if (!o) return NULL;
    while (i < n) {
        size_t ok = th_utf8_valid_prefix(t + i, n - i);
        memcpy(o + w, t + i, ok);
        w += ok;
        i += ok;
        if (i < n) {
            memcpy(o + w, "\xEF\xBF\xBD", 3);
            w += 3;
            i++;
        }
    }
    o[w] = 0;
    *out_len = w;
    return o;
}

static json_t *eco_json(const th_server *s, const th_serve_job *j) {
    const char *basis = th_eco_basis_name(s->fig.energy.basis);
    char b[200];
    snprintf(b, sizeof b, "%s (%s)", s->fig.have_energy ? basis : "none yet",
             s->fig.energy.source[0] ? s->fig.energy.source : s->fig.sensor);
    return json_pack("{s:f,s:f,s:f,s:f,s:f,s:s}", "energy_j", j->prefill_j + j->decode_j, "co2e_g", j->co2e_g,
                     "water_ml", j->water_ml, "prefill_j", j->prefill_j, "decode_j", j->decode_j, "basis", b);
}

static json_t *usage_json(const th_serve_job *j) {
    return json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)j->n_prompt, "completion_tokens",
                     (json_int_t)j->n_toks, "total_tokens", (json_int_t)(j->n_prompt + j->n_toks));
}

static json_t *logprobs_json(const th_server *s, const th_serve_job *j, size_t from, size_t to) {
    json_t *toks = json_array(), *lps = json_array();
    for (size_t i = from; i < to; i++) {
        size_t len = 0;
        const char *b = th_tokenizer_token_bytes(s->tok, j->toks[i], &len);
        size_t cl = 0;
        char *c = clean_utf8(b ? b : "", b ? len : 0, &cl);
        json_array_append_new(toks, json_stringn(c ? c : "", cl));
        th_free(c);
        json_array_append_new(lps, json_real(j->lps[i]));
    }
    return json_pack("{s:o,s:o}", "tokens", toks, "token_logprobs", lps);
}

/* One completion object (whole, or a stream chunk with text and finish). */
static json_t *completion_json(th_server *s, const th_serve_job *j, const char *text, size_t len, const char *finish,
                               int final, size_t lp_from, size_t lp_to) {
    size_t cl = 0;
    char *c = clean_utf8(text, len, &cl);
    json_t *choice = json_pack("{s:s%,s:i,s:o,s:o}", "text", c ? c : "", c ? cl : (size_t)0, "index", 0, "logprobs",
                               j->logprobs ? logprobs_json(s, j, lp_from, lp_to) : json_null(), "finish_reason",
                               finish ? json_string(finish) : json_null());
    th_free(c);
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:[o]}", "id", j->id, "object", "text_completion", "created",
                          (json_int_t)j->created, "model", s->model_name, "choices", choice);
    if (final) {
        json_object_set_new(o, "usage", usage_json(j));
        json_object_set_new(o, "eco", eco_json(s, j));
    }
    return o;
}

static void eco_headers(const th_server *s, const th_serve_job *j, th_http_resp *r) {
    th_http_resp_header(r, "X-Eco-Energy-J", "%.6g", j->prefill_j + j->decode_j);
    th_http_resp_header(r, "X-Eco-Prefill-J", "%.6g", j->prefill_j);
    th_http_resp_header(r, "X-Eco-Decode-J", "%.6g", j->decode_j);
    th_http_resp_header(r, "X-Eco-CO2e-G", "%.6g", j->co2e_g);
    th_http_resp_header(r, "X-Eco-Water-ML", "%.6g", j->water_ml);
    th_http_resp_header(r, "X-Eco-Basis", "%s", s->fig.have_energy ? th_eco_basis_name(s->fig.energy.basis) : "none");
}

/* the stream: one chunk per new text, a final chunk with usage and eco, then [DONE] */
static int stream_fill_body(th_server *s, th_serve_job *j);
static int stream_fill(th_server *s, th_serve_job *j) { /* under mu; 1 when j->out has bytes */
    uint64_t t0 = th_now_ns();
    int r = stream_fill_body(s, j);
    s->overhead_ns += th_now_ns() - t0;
    return r;
}

static int stream_fill_body(th_server *s, th_serve_job *j) {
    char *chunk = NULL;
    json_t *o = NULL;
    size_t avail = j->text_len;
    if (j->state != TH_SERVE_DONE) avail = j->sent_bytes + th_utf8_valid_prefix(j->text + j->sent_bytes, j->text_len - j->sent_bytes);
    if (j->state != TH_SERVE_DONE && avail > j->sent_bytes) {
        o = completion_json(s, j, j->text + j->sent_bytes, avail - j->sent_bytes, NULL, 0, 0, 0);
        j->sent_bytes = avail;
    } else if (j->state == TH_SERVE_DONE && !j->sent_final) {
        o = completion_json(s, j, j->text + j->sent_bytes, j->text_len - j->sent_bytes, j->finish, 1, 0, j->n_toks);
        j->sent_bytes = j->text_len;
        j->sent_final = 1;
    } else if (j->state == TH_SERVE_DONE && !j->sent_done) {
        j->sent_done = 1;
        chunk = th_alloc(16);
        if (chunk) snprintf(chunk, 16, "data: [DONE]\n\n");
    } else {
        return 0;
    }
    if (o) {
        char *d = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        size_t n = d ? strlen(d) : 0;
        chunk = d ? th_alloc(n + 9) : NULL;
        if (chunk) snprintf(chunk, n + 9, "data: %s\n\n", d);
        free(d);
    }
    if (!chunk) return 0;
    th_free(j->out);
    j->out = chunk;
    j->out_len = strlen(chunk);
    j->out_off = 0;
    return 1;
}

static ssize_t stream_next(void *user, char *buf, size_t max) {
    th_serve_job *j = user;
    th_server *s = j->srv;
    pthread_mutex_lock(&s->mu);
    while (!(j->out && j->out_off < j->out_len) && !stream_fill(s, j)) {
        if (j->sent_done) {
            pthread_mutex_unlock(&s->mu);
            return 0;
        }
        pthread_cond_wait(&j->cv, &s->mu);
    }
    size_t n = j->out_len - j->out_off;
    if (n > max) n = max;
    memcpy(buf, j->out + j->out_off, n);
    j->out_off += n;
    pthread_mutex_unlock(&s->mu);
    return (ssize_t)n;
}

static void stream_done(void *user, int completed) {
    th_serve_job *j = user;
    th_server *s = j->srv;
    pthread_mutex_lock(&s->mu);
    if (!completed && j->state != TH_SERVE_DONE) j->cancelled = 1; // the client went away
    pthread_cond_signal(&s->engine_cv);
    th_serve_job_release(j);
    pthread_mutex_unlock(&s->mu);
}

/* ---------------------------------------------------------------------------------
 * routes */

static int key_ok(const th_server *s, const th_http_req *req) {
    if (!s->o.api_key) return 1;
    const char *h = th_http_header(req, "Authorization");
    const char *want = s->o.api_key;
    if (!h || strncmp(h, "Bearer ", 7) != 0) return 0;
    h += 7;
    size_t a = strlen(h), b = strlen(want), n = a > b ? a : b;
    unsigned diff = (unsigned)(a ^ b);
    for (size_t i = 0; i < n; i++) diff |= (unsigned char)(i < a ? h[i] : 0) ^ (unsigned char)(i < b ? want[i] : 0);
    return diff == 0;
}

static void add_overhead(th_server *s, uint64_t ns) {
    pthread_mutex_lock(&s->mu);
    s->overhead_ns += ns;
    pthread_mutex_unlock(&s->mu);
}

/* The completion route, timed as server overhead except the wait for a non-streamed job. */
static uint64_t handle_completion_body(th_server *s, const th_http_req *req, th_http_resp *r);
static void handle_completion(th_server *s, const th_http_req *req, th_http_resp *r) {
    uint64_t t0 = th_now_ns();
    uint64_t waited = handle_completion_body(s, req, r);
    add_overhead(s, th_now_ns() - t0 - waited);
}

/* Returns the nanoseconds spent waiting for the engine. */
static uint64_t handle_completion_body(th_server *s, const th_http_req *req, th_http_resp *r) {
    th_serve_limits lim = {s->cfg.vocab_size, s->o.max_tokens_limit, (size_t)s->ctx - 1};
    th_serve_request q;
    char param[64];
    th_status st = th_serve_parse_completion(req->body, req->body_len, &lim, &q, param, sizeof param);
    if (st != TH_OK) {
        error_resp(s, r, 400, "invalid_request_error", param, th_last_error());
        return 0;
    }
    int *ids = q.prompt_ids;
    size_t n = q.n_prompt_ids;
    q.prompt_ids = NULL;
    if (!ids) {
        st = th_generate_prompt(s->tok, &s->cfg, q.prompt_text, &ids, &n);
        if (st == TH_OK && n >= (size_t)s->ctx) {
            th_free(ids);
            ids = NULL;
            st = th_fail(TH_ERR_INVALID, "prompt: %zu tokens do not fit the context of %d (at most %d)", n, s->ctx,
                         s->ctx - 1);
        }
        if (st != TH_OK) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s%s", strncmp(th_last_error(), "prompt", 6) ? "prompt: " : "", th_last_error());
            th_serve_request_free(&q);
            error_resp(s, r, 400, "invalid_request_error", "prompt", msg);
            return 0;
        }
    }
    th_serve_job *j = th_calloc(1, sizeof *j);
    if (!j) {
        th_free(ids);
        th_serve_request_free(&q);
        error_resp(s, r, 500, "server_error", NULL, "out of memory");
        return 0;
    }
    j->srv = s;
    j->prompt = ids;
    j->n_prompt = n;
    j->max_tokens = q.max_tokens;
    j->samp = (th_sampler_config){(float)q.temperature, (int)q.top_k, (float)q.top_p};
    j->n_stop = q.n_stop;
    memcpy(j->stop, q.stop, sizeof j->stop);
    j->stream = q.stream;
    j->logprobs = q.logprobs;
    j->created = (long)time(NULL);
    j->t_arrive = th_now_ns();
    j->refs = 2; // the connection and the engine
    pthread_cond_init(&j->cv, NULL);
    int has_seed = q.has_seed;
    uint64_t seed = q.seed;
    th_serve_request_free(&q);

    pthread_mutex_lock(&s->mu);
    j->seed = has_seed ? seed : 1337 + (uint64_t)s->next_id;
    snprintf(j->id, sizeof j->id, "cmpl-%ld", ++s->next_id);
    s->sum.requests++;
    int slots = th_serve_slots_for(s, s->thermal), hot = s->thermal == TH_SERVE_HOT;
    const char *refuse = NULL;
    if (s->draining) refuse = "draining";
    else if (s->n_running + s->n_queued >= slots && (hot || s->n_queued >= s->o.queue_max)) refuse = hot ? "hot" : "full";
    if (refuse) {
        int retry = th_serve_retry_after_s(s, hot || s->draining);
        if (hot) s->refused_thermal++;
        else s->refused_overloaded++;
        s->sum.refused++;
        j->refs = 1;
        th_serve_job_release(j);
        pthread_mutex_unlock(&s->mu);
        th_http_resp_header(r, "Retry-After", "%d", retry);
        if (!strcmp(refuse, "full"))
            error_resp(s, r, 429, "overloaded", NULL, "the queue is full: retry after the Retry-After seconds");
        else
            error_resp(s, r, 503, refuse[0] == 'h' ? "thermal_unavailable" : "unavailable_error", NULL,
                       refuse[0] == 'h' ? "the device is at its temperature limit: retry after the Retry-After seconds"
                                        : "the server is shutting down");
        return 0;
    }
    th_serve_job **tail = &s->queue;
    while (*tail) tail = &(*tail)->next;
    *tail = j;
    s->n_queued++;
    s->prompt_tokens += n;
    s->sum.prompt_tokens += (long)n;
    pthread_cond_signal(&s->engine_cv);
    if (j->stream) {
        pthread_mutex_unlock(&s->mu);
        r->status = 200;
        r->content_type = "text/event-stream";
        th_http_resp_header(r, "Cache-Control", "no-cache");
        th_http_resp_header(r, "X-Request-Id", "%s", j->id);
        r->stream = (th_http_stream){stream_next, stream_done, j};
        count_code(s, 200);
        return 0;
    }
    uint64_t t_wait = th_now_ns();
    while (j->state != TH_SERVE_DONE) pthread_cond_wait(&j->cv, &s->mu);
    t_wait = th_now_ns() - t_wait;
    json_t *o = completion_json(s, j, j->text, j->text_len, j->finish, 1, 0, j->n_toks);
    eco_headers(s, j, r);
    th_http_resp_header(r, "X-Request-Id", "%s", j->id);
    th_serve_job_release(j);
    pthread_mutex_unlock(&s->mu);
    set_json(r, 200, o);
    count_code(s, 200);
    return t_wait;
}

static void handle_tokenize(th_server *s, const th_http_req *req, th_http_resp *r, int detok) {
    json_error_t err;
    json_t *b = json_loadb(req->body, req->body_len, 0, &err);
    const char *field = detok ? "tokens" : "content";
    json_t *v = b && json_is_object(b) ? json_object_get(b, field) : NULL;
    char msg[300];
    if (!b || !json_is_object(b)) {
        snprintf(msg, sizeof msg, "body: not a JSON object (%s)", b ? "another type" : err.text);
        error_resp(s, r, 400, "invalid_request_error", NULL, msg);
    } else if (!detok) {
        int *ids = NULL;
        size_t n = 0;
        if (!json_is_string(v)) {
            error_resp(s, r, 400, "invalid_request_error", field, "content: must be a string");
        } else if (th_tokenizer_encode(s->tok, json_string_value(v), json_string_length(v), 0, &ids, &n) != TH_OK) {
            error_resp(s, r, 500, "server_error", field, th_last_error());
        } else {
            json_t *a = json_array();
            for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer(ids[i]));
            th_free(ids);
            set_json(r, 200, json_pack("{s:o}", "tokens", a));
            count_code(s, 200);
        }
    } else {
        size_t n = json_array_size(v);
        int *ids = th_alloc((n ? n : 1) * sizeof(int));
        int ok = json_is_array(v) && ids;
        for (size_t i = 0; ok && i < n; i++) {
            json_t *x = json_array_get(v, i);
            ok = json_is_integer(x) && json_integer_value(x) >= 0 && json_integer_value(x) < s->cfg.vocab_size;
            if (ok) ids[i] = (int)json_integer_value(x);
        }
        char *text = NULL;
        size_t len = 0;
        if (!ok) {
            snprintf(msg, sizeof msg, "tokens: must be an array of token ids in [0, %d)", s->cfg.vocab_size);
            error_resp(s, r, 400, "invalid_request_error", field, msg);
        } else if (th_tokenizer_decode(s->tok, ids, n, &text, &len) != TH_OK) {
            snprintf(msg, sizeof msg, "tokens: %s", th_last_error());
            error_resp(s, r, 400, "invalid_request_error", field, msg);
        } else {
            size_t cl = 0;
            char *c = clean_utf8(text, len, &cl);
            set_json(r, 200, json_pack("{s:s%}", "content", c ? c : "", c ? cl : (size_t)0));
            count_code(s, 200);
            th_free(c);
        }
        th_free(text);
        th_free(ids);
    }
    json_decref(b);
}

/* Prometheus text: a growing buffer */
typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static void __attribute__((format(printf, 2, 3))) put(sbuf *b, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (w < 0) return;
        if (b->p && b->n + (size_t)w < b->cap) {
            b->n += (size_t)w;
            return;
        }
        size_t cap = (b->cap + (size_t)w + 1) * 2;
        char *q = th_alloc(cap);
        if (!q) return;
        if (b->n) memcpy(q, b->p, b->n);
        th_free(b->p);
        b->p = q;
        b->cap = cap;
    }
}

static void put_hist(sbuf *b, const char *name, const char *help, const th_hist *h) {
    put(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    unsigned long long c = 0;
    for (int i = 0; i < TH_HIST_BUCKETS; i++) {
        c += h->counts[i];
        put(b, "%s_bucket{le=\"%g\"} %llu\n", name, th_hist_bounds[i], c);
    }
    put(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.9g\n%s_count %llu\n", name, h->n, name, h->sum, name, h->n);
}

static void handle_metrics(th_server *s, th_http_resp *r) {
    uint64_t t0 = th_now_ns();
    sbuf b = {0};
    pthread_mutex_lock(&s->mu);
    th_run_figures_now(s->run, &s->fig);
    const th_run_figures *f = &s->fig;
    put(&b, "# HELP thermo_requests_total Completion and other API responses by HTTP status.\n"
            "# TYPE thermo_requests_total counter\n");
    for (int i = 0; i < 8; i++) put(&b, "thermo_requests_total{code=\"%d\"} %llu\n", codes[i], s->by_code[i]);
    put(&b, "# HELP thermo_request_finish_total Completions by finish reason.\n"
            "# TYPE thermo_request_finish_total counter\n");
    for (int i = 0; i < 4; i++) put(&b, "thermo_request_finish_total{reason=\"%s\"} %llu\n", th_serve_finish_names[i], s->by_finish[i]);
    put(&b, "# HELP thermo_refused_total Completions refused by admission.\n# TYPE thermo_refused_total counter\n"
            "thermo_refused_total{reason=\"thermal\"} %llu\nthermo_refused_total{reason=\"overloaded\"} %llu\n",
        s->refused_thermal, s->refused_overloaded);
    put(&b, "# HELP thermo_prompt_tokens_total Prompt tokens admitted.\n# TYPE thermo_prompt_tokens_total counter\n"
            "thermo_prompt_tokens_total %llu\n", s->prompt_tokens);
    put(&b, "# HELP thermo_generation_tokens_total Tokens generated.\n# TYPE thermo_generation_tokens_total counter\n"
            "thermo_generation_tokens_total %llu\n", s->gen_tokens);
    put_hist(&b, "thermo_time_to_first_token_seconds", "Arrival to first generated token.", &s->ttft);
    put_hist(&b, "thermo_inter_token_latency_seconds", "Time between generated tokens of a request.", &s->itl);
    put_hist(&b, "thermo_e2e_request_latency_seconds", "Arrival to the last token.", &s->e2e);
    put(&b, "# HELP thermo_requests_waiting Requests in the queue.\n# TYPE thermo_requests_waiting gauge\n"
            "thermo_requests_waiting %d\n# HELP thermo_requests_running Sequences being decoded.\n"
            "# TYPE thermo_requests_running gauge\nthermo_requests_running %d\n"
            "# HELP thermo_sequences_allowed Sequences the thermal state allows at once.\n"
            "# TYPE thermo_sequences_allowed gauge\nthermo_sequences_allowed %d\n"
            "# HELP thermo_decode_batch_rows_max The most sequences one decode step has run.\n"
            "# TYPE thermo_decode_batch_rows_max gauge\nthermo_decode_batch_rows_max %d\n",
        s->n_queued, s->n_running, th_serve_slots_for(s, s->thermal), s->batch_max);
    put(&b, "# HELP thermo_thermal_state Admission state (1 for the current one).\n# TYPE thermo_thermal_state gauge\n");
    for (int i = 0; i < 3; i++) put(&b, "thermo_thermal_state{state=\"%s\"} %d\n", thermal_names[i], (int)s->thermal == i);
    put(&b, "# HELP thermo_temperature_celsius Last temperature read.\n# TYPE thermo_temperature_celsius gauge\n"
            "thermo_temperature_celsius{origin=\"%s\",sensor=\"%s\"} %.3f\n"
            "# HELP thermo_temperature_limit_celsius The limit in force.\n# TYPE thermo_temperature_limit_celsius gauge\n"
            "thermo_temperature_limit_celsius %.3f\n"
            "# HELP thermo_governor_duty_ratio Busy fraction of the decode loop over the last window.\n"
            "# TYPE thermo_governor_duty_ratio gauge\nthermo_governor_duty_ratio %.4f\n",
        f->origin_name, f->sensor, isfinite(f->temp_c) ? f->temp_c : 0.0, isfinite(f->limit_c) ? f->limit_c : 0.0,
        s->duty);
    double e = f->have_energy ? f->energy.energy_j : 0.0;
    put(&b, "# HELP thermo_energy_joules_total IT energy of the session (%s).\n# TYPE thermo_energy_joules_total counter\n"
            "thermo_energy_joules_total %.6f\n# HELP thermo_co2e_grams_total CO2e of that energy.\n"
            "# TYPE thermo_co2e_grams_total counter\nthermo_co2e_grams_total %.6f\n"
            "# HELP thermo_water_litres_total Water of that energy.\n# TYPE thermo_water_litres_total counter\n"
            "thermo_water_litres_total %.9f\n# HELP thermo_joules_per_token Session energy per generated token.\n"
            "# TYPE thermo_joules_per_token gauge\nthermo_joules_per_token %.6f\n"
            "# HELP thermo_idle_energy_joules_total Part of it spent with nothing to decode.\n"
            "# TYPE thermo_idle_energy_joules_total counter\nthermo_idle_energy_joules_total %.6f\n"
            "# HELP thermo_above_limit_seconds_total Time the samples spent above the limit.\n"
            "# TYPE thermo_above_limit_seconds_total counter\nthermo_above_limit_seconds_total %.3f\n",
        f->have_energy ? th_eco_basis_name(f->energy.basis) : "no energy figure yet", e, f->co2e_g,
        f->water_ml / 1000.0, s->gen_tokens ? e / s->gen_tokens : 0.0, s->idle_j, f->above_limit_s);
    th_serve_models_info mi;
    th_serve_models_status(s->models, &mi);
    put(&b, "# HELP thermo_model_version The version of the model new requests get.\n"
            "# TYPE thermo_model_version gauge\nthermo_model_version %ld\n"
            "# HELP thermo_model_reloads_total Model reloads, done and refused (the old model kept).\n"
            "# TYPE thermo_model_reloads_total counter\nthermo_model_reloads_total{result=\"ok\"} %ld\n"
            "thermo_model_reloads_total{result=\"refused\"} %ld\n",
        mi.version, mi.reloads, mi.failures);
    put(&b, "# HELP thermo_decode_steps_total Batched decode steps run.\n# TYPE thermo_decode_steps_total counter\n"
            "thermo_decode_steps_total %llu\n# HELP thermo_decode_step_seconds_total Time inside their forward passes.\n"
            "# TYPE thermo_decode_step_seconds_total counter\nthermo_decode_step_seconds_total %.9f\n"
            "# HELP thermo_serve_overhead_seconds_total Serving outside the model: parsing, admission, JSON, SSE, "
            "token bookkeeping, /metrics (not socket writes).\n"
            "# TYPE thermo_serve_overhead_seconds_total counter\nthermo_serve_overhead_seconds_total %.9f\n",
        s->steps, s->step_ns / 1e9, (s->overhead_ns + (th_now_ns() - t0)) / 1e9);
    s->overhead_ns += th_now_ns() - t0;
    pthread_mutex_unlock(&s->mu);
    r->status = 200;
    r->content_type = "text/plain; version=0.0.4";
    r->body = b.p;
    r->len = b.n;
    count_code(s, 200);
}

static void handle_health(th_server *s, th_http_resp *r) {
    th_serve_models_info mi;
    th_serve_models_status(s->models, &mi);
    pthread_mutex_lock(&s->mu);
    int fs = s->fail_safe;
    json_t *o = json_pack("{s:s,s:s,s:i,s:i,s:i,s:f,s:f,s:{s:I,s:s,s:I,s:I,s:s?}}", "status", fs ? "fail-safe" : "ok",
                          "thermal", thermal_names[s->thermal], "running", s->n_running, "waiting", s->n_queued,
                          "slots", th_serve_slots_for(s, s->thermal), "temp_c", isfinite(s->fig.temp_c) ? s->fig.temp_c : 0.0,
                          "limit_c", isfinite(s->fig.limit_c) ? s->fig.limit_c : 0.0, "model", "version",
                          (json_int_t)mi.version, "dtype", th_dtype_name(mi.dtype), "reloads", (json_int_t)mi.reloads,
                          "reload_failures", (json_int_t)mi.failures, "reload_error", mi.error[0] ? mi.error : NULL);
    pthread_mutex_unlock(&s->mu);
    if (fs) {
        json_decref(o);
        error_resp(s, r, 503, "unavailable_error", NULL, "the governor is in fail-safe (sensor not trusted)");
        return;
    }
    set_json(r, 200, o);
    count_code(s, 200);
}

static void handle_recent(th_server *s, th_http_resp *r) {
    json_t *a = json_array();
    pthread_mutex_lock(&s->mu);
    for (int k = 0; k < s->n_recent; k++) {
        const th_serve_recent *q = &s->recent[(s->recent_head - 1 - k + TH_SERVE_RECENT) % TH_SERVE_RECENT];
        json_array_append_new(a, json_pack("{s:s,s:I,s:s,s:f,s:{s:f,s:f,s:f}}", "id", q->id, "completion_tokens",
                                           (json_int_t)q->tokens, "finish_reason", q->finish, "e2e_s", q->e2e_s, "eco",
                                           "energy_j", q->energy_j, "co2e_g", q->co2e_g, "water_ml", q->water_ml));
    }
    pthread_mutex_unlock(&s->mu);
    set_json(r, 200, json_pack("{s:o}", "data", a));
    count_code(s, 200);
}

static void handle(void *user, const th_http_req *req, th_http_resp *r) {
    th_server *s = user;
    int get = !strcmp(req->method, "GET"), post = !strcmp(req->method, "POST");
    const char *p = req->path;
    if (get && !strcmp(p, "/health")) return handle_health(s, r);
    if (get && !strcmp(p, "/metrics")) return handle_metrics(s, r);
    if (get && !strcmp(p, "/")) {
        r->status = 200;
        r->content_type = "text/html; charset=utf-8";
        r->len = strlen(th_serve_dashboard_html);
        r->body = th_alloc(r->len);
        if (r->body) memcpy(r->body, th_serve_dashboard_html, r->len);
        else r->len = 0;
        count_code(s, 200);
        return;
    }
    if (!key_ok(s, req)) {
        th_http_resp_header(r, "WWW-Authenticate", "Bearer");
        return error_resp(s, r, 401, "authentication_error", NULL, "invalid API key");
    }
    if (req->body_too_large) {
        char msg[128];
        snprintf(msg, sizeof msg, "body: larger than the limit of %zu bytes", s->o.max_body_bytes);
        return error_resp(s, r, 413, "invalid_request_error", NULL, msg);
    }
    if (post && !strcmp(p, "/v1/completions")) return handle_completion(s, req, r);
    if (post && !strcmp(p, "/tokenize")) return handle_tokenize(s, req, r, 0);
    if (post && !strcmp(p, "/detokenize")) return handle_tokenize(s, req, r, 1);
    if (get && !strcmp(p, "/v1/recent")) return handle_recent(s, r);
    if (get && !strcmp(p, "/v1/models")) {
        json_t *o = json_pack("{s:s,s:[{s:s,s:s,s:I,s:s,s:i}]}", "object", "list", "data", "id", s->model_name,
                              "object", "model", "created", (json_int_t)time(NULL), "owned_by", "thermo",
                              "context_length", s->ctx);
        set_json(r, 200, o);
        count_code(s, 200);
        return;
    }
    char msg[300];
    snprintf(msg, sizeof msg, "no route %.16s %.200s", req->method, p);
    error_resp(s, r, 404, "not_found_error", NULL, msg);
}

/* ---------------------------------------------------------------------------------
 * lifecycle */

static void server_free(th_server *s) {
    th_free(s->logits);
    th_tokenizer_free(s->tok);
    th_serve_models_close(s->models);
    pthread_cond_destroy(&s->engine_cv);
    pthread_mutex_destroy(&s->mu);
    th_free(s);
}

th_status th_server_start(const th_serve_opts *o, th_server **out) {
    *out = NULL;
    if (!o->model_path == !o->state_dir)
        return th_fail(TH_ERR_INVALID, "serve: a model path or a learn state is required (one of them)");
    if (o->parallel < 1 || o->parallel > 256)
        return th_fail(TH_ERR_INVALID, "serve: parallel %d must be in [1, 256]", o->parallel);
    th_server *s = th_calloc(1, sizeof *s);
    if (!s) return th_fail(TH_ERR_NOMEM, "serve: out of memory");
    s->o = *o;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->engine_cv, NULL);
    th_status st = th_serve_models_open(o, &s->models);
    if (st == TH_OK) st = th_model_load_tokenizer(th_serve_models_path(s->models), &s->tok);
    if (st != TH_OK) goto fail;
    th_serve_model *first = th_serve_models_acquire(s->models);
    s->cfg = *th_gpt2_get_config(first->m);
    th_serve_model_release(s->models, first);
    s->ctx = o->ctx > 0 && o->ctx < s->cfg.max_seq_len ? o->ctx : s->cfg.max_seq_len;
    if (s->ctx < 2) {
        st = th_fail(TH_ERR_INVALID, "serve: a context of %d leaves no room to generate", s->ctx);
        goto fail;
    }
    if (s->o.max_tokens_limit <= 0 || s->o.max_tokens_limit > s->ctx) s->o.max_tokens_limit = s->ctx;
    if (s->o.queue_max <= 0) s->o.queue_max = 4 * s->o.parallel;
    if (!s->o.host) s->o.host = "127.0.0.1";
    if (s->o.threads > 0) th_threads_set(s->o.threads);
    s->eot = th_tokenizer_eot(s->tok);
    const char *named = o->state_dir ? o->state_dir : o->model_path, *base = strrchr(named, '/');
    snprintf(s->model_name, sizeof s->model_name, "%s", base && base[1] ? base + 1 : named);
    s->logits = th_alloc(sizeof(float) * (size_t)s->cfg.vocab_size * (size_t)o->parallel);
    if (!s->logits) {
        st = th_fail(TH_ERR_NOMEM, "serve: out of memory for logits");
        goto fail;
    }
    if ((st = th_serve_models_watch(s->models)) != TH_OK) goto fail;
    if ((st = th_run_start(&s->o.run, &s->run)) != TH_OK) goto fail;
    th_serve_update_thermal(s);
    s->was_idle = 1;
    if (pthread_create(&s->engine, NULL, th_serve_engine_main, s) != 0) {
        st = th_fail(TH_ERR_NOMEM, "serve: cannot start the engine thread");
        goto fail;
    }
    s->engine_started = 1;
    if ((st = th_http_start(s->o.host, o->port, o->max_body_bytes, o->timeout_s, o->max_connections, handle, s,
                            &s->http)) != TH_OK)
        goto fail;
    *out = s;
    return TH_OK;
fail:
    if (s->engine_started) {
        pthread_mutex_lock(&s->mu);
        s->quit = 1;
        pthread_cond_signal(&s->engine_cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->engine, NULL);
    }
    th_run_stop(s->run, NULL);
    server_free(s);
    return st;
}

int th_server_port(const th_server *s) { return th_http_port(s->http); }

void th_server_request_stop(th_server *s) { s->stop_requested = 1; }

th_status th_server_reload(th_server *s, long *version) { return th_serve_models_reload(s->models, version); }

void th_server_request_reload(th_server *s) { th_serve_models_request(s->models); }

void th_server_wait(th_server *s) {
    while (!s->stop_requested) {
        struct timespec ts = {0, 50000000L};
        nanosleep(&ts, NULL);
    }
}

th_status th_server_stop(th_server *s, double grace_s, th_serve_summary *out) {
    pthread_mutex_lock(&s->mu);
    s->draining = 1;
    uint64_t t0 = th_now_ns();
    while ((s->n_running || s->n_queued) && (th_now_ns() - t0) / 1e9 < grace_s) {
        pthread_mutex_unlock(&s->mu);
        struct timespec ts = {0, 20000000L};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&s->mu);
    }
    // cancel what is left: queued ones end here, running ones at the engine's next step
    while (s->queue) {
        th_serve_job *j = s->queue;
        s->queue = j->next;
        s->n_queued--;
        th_serve_job_finish(s, j, "cancelled");
        th_serve_job_release(j);
    }
    for (th_serve_job *j = s->running; j; j = j->next) j->cancelled = 1;
    s->quit = 1;
    pthread_cond_signal(&s->engine_cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->engine, NULL);
    th_http_stop(s->http);
    th_serve_summary sum = s->sum;
    th_serve_models_info mi;
    th_serve_models_status(s->models, &mi);
    sum.model_version = mi.version;
    sum.reloads = mi.reloads;
    sum.reload_failures = mi.failures;
    th_status st = th_run_stop(s->run, &sum.fig);
    if (out) *out = sum;
    server_free(s);
    return st;
}
