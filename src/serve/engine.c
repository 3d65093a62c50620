/* engine.c: the inference server's engine thread. It owns the model: per step it prefills
 * newly admitted sequences and decodes every running one together (th_gpt2_infer_batch),
 * each step one unit of the monitored run, so the governor paces decoding and the ledger
 * charges it. A step's energy is split evenly over the sequences it advanced (each advanced
 * one token). Each sequence decodes with the model current when it was admitted (reload.c):
 * after a reload a step runs one batch per model, so the old model's sequences finish on it.
 * Also the jobs' life (append, finish, release) and the thermal state admission follows. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "serve/serve_internal.h"
#include "thermo/serve.h"

const char *const th_serve_finish_names[4] = {"stop", "length", "loop", "cancelled"};

void th_serve_job_release(th_serve_job *j) { /* under srv->mu */
    if (--j->refs > 0) return;
    th_gpt2_kv_free(j->kv);
    th_serve_model_release(j->srv->models, j->model);
    th_sampler_free(j->sampler);
    th_loop_guard_free(j->lg);
    th_free(j->prompt);
    th_free(j->toks);
    th_free(j->lps);
    th_free(j->text);
    th_free(j->out);
    pthread_cond_destroy(&j->cv);
    th_free(j);
}

static void count_finish(th_server *s, const char *f) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(th_serve_finish_names[i], f)) s->by_finish[i]++;
}

/* Marks j done (under mu): metrics, recent list, wakes its connection. */
void th_serve_job_finish(th_server *s, th_serve_job *j, const char *finish) {
    j->finish = finish;
    j->state = TH_SERVE_DONE;
    j->t_done = th_now_ns();
    count_finish(s, finish);
    th_hist_add(&s->e2e, (j->t_done - j->t_arrive) / 1e9);
    s->sum.completed++;
    if (!strcmp(finish, "cancelled")) s->sum.cancelled++;
    s->sum.completion_tokens += (long)j->n_toks;
    th_serve_recent *r = &s->recent[s->recent_head];
    s->recent_head = (s->recent_head + 1) % TH_SERVE_RECENT;
    if (s->n_recent < TH_SERVE_RECENT) s->n_recent++;
    snprintf(r->id, sizeof r->id, "%s", j->id);
    r->tokens = (long)j->n_toks;
    r->finish = finish;
    r->e2e_s = (j->t_done - j->t_arrive) / 1e9;
    r->energy_j = j->prefill_j + j->decode_j;
    r->co2e_g = j->co2e_g;
    r->water_ml = j->water_ml;
    pthread_cond_broadcast(&j->cv);
}

/* Appends a decided token (under mu); returns 1 when a stop sequence now ends the text
 * (the text is cut before it). */
static int job_append_body(th_server *s, th_serve_job *j, int tok, float lp);
static int job_append(th_server *s, th_serve_job *j, int tok, float lp) {
    uint64_t t0 = th_now_ns();
    int r = job_append_body(s, j, tok, lp);
    s->overhead_ns += th_now_ns() - t0;
    return r;
}

static int job_append_body(th_server *s, th_serve_job *j, int tok, float lp) {
    if (j->n_toks == j->cap_toks) {
        size_t cap = j->cap_toks ? 2 * j->cap_toks : 32;
        int *t = th_alloc(cap * sizeof(int));
        float *l = th_alloc(cap * sizeof(float));
        if (!t || !l) {
            th_free(t);
            th_free(l);
            return 1;
        }
        if (j->n_toks) {
            memcpy(t, j->toks, j->n_toks * sizeof(int));
            memcpy(l, j->lps, j->n_toks * sizeof(float));
        }
        th_free(j->toks);
        th_free(j->lps);
        j->toks = t;
        j->lps = l;
        j->cap_toks = cap;
    }
    j->toks[j->n_toks] = tok;
    j->lps[j->n_toks++] = lp;
    size_t len = 0;
    const char *b = th_tokenizer_token_bytes(s->tok, tok, &len);
    if (!b) len = 0;
    if (j->text_len + len + 1 > j->text_cap) {
        size_t cap = (j->text_len + len + 1) * 2;
        char *t = th_alloc(cap);
        if (!t) return 1;
        if (j->text_len) memcpy(t, j->text, j->text_len);
        th_free(j->text);
        j->text = t;
        j->text_cap = cap;
    }
    if (len) memcpy(j->text + j->text_len, b, len);
    size_t before = j->text_len;
    j->text_len += len;
    j->text[j->text_len] = 0;
    uint64_t now = th_now_ns();
    if (j->n_toks == 1) {
        j->t_first = now;
        th_hist_add(&s->ttft, (now - j->t_arrive) / 1e9);
    } else {
        th_hist_add(&s->itl, (now - j->t_last) / 1e9);
    }
    j->t_last = now;
    s->gen_tokens++;
    for (int k = 0; k < j->n_stop; k++) {
        size_t sl = strlen(j->stop[k]);
        size_t from = before >= sl ? before - sl + 1 : 0;
        for (size_t p = from; p + sl <= j->text_len; p++)
            if (!memcmp(j->text + p, j->stop[k], sl)) {
                j->text_len = p;
                j->text[p] = 0;
                if (j->sent_bytes > p) j->sent_bytes = p;
                return 1;
            }
    }
    return 0;
}

static float token_logprob(const float *logits, int V, int tok) {
    double mx = logits[0];
    for (int i = 1; i < V; i++)
        if (logits[i] > mx) mx = logits[i];
    double sum = 0;
    for (int i = 0; i < V; i++) sum += exp((double)logits[i] - mx);
    return (float)((double)logits[tok] - mx - log(sum));
}

/* The generation loop's rules for one decided token, in th_generate's order: end of
 * text, the loop guard, hand out, context full, max tokens. Returns 1 when j is done. */
static int decide(th_server *s, th_serve_job *j, const float *logits) {
    int next = th_sampler_next(j->sampler, logits);
    float lp = j->logprobs ? token_logprob(logits, s->cfg.vocab_size, next) : 0.0f;
    pthread_mutex_lock(&s->mu);
    int done = 1;
    th_loop_verdict v;
    if (j->cancelled) th_serve_job_finish(s, j, "cancelled");
    else if (next == s->eot) th_serve_job_finish(s, j, "stop");
    else if (th_loop_guard_feed(j->lg, next, &v) == TH_GUARD_HALT) th_serve_job_finish(s, j, "loop");
    else if (job_append(s, j, next, lp)) th_serve_job_finish(s, j, "stop");
    else if (th_gpt2_kv_len(j->kv) >= s->ctx || (long)j->n_toks >= j->max_tokens) th_serve_job_finish(s, j, "length");
    else {
        j->pending = next;
        done = 0;
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&s->mu);
    return done;
}

/* ---------------------------------------------------------------------------------
 * thermal state and the engine */

int th_serve_slots_for(const th_server *s, th_serve_thermal t) {
    if (t == TH_SERVE_HOT) return 1;
    if (t == TH_SERVE_WARM) return s->o.parallel / 2 > 1 ? s->o.parallel / 2 : 1;
    return s->o.parallel;
}

/* Seconds until a retry may be admitted: hot, the time to cool back to the warm line at an
 * assumed 0.5 °C/s (the plant is not modeled here); overloaded, the queue ahead of it at
 * the recent mean request time. */
int th_serve_retry_after_s(const th_server *s, int hot) {
    double t;
    if (hot) {
        double over = s->fig.temp_c - (s->fig.limit_c - s->o.warm_margin_c);
        t = isfinite(over) ? over / 0.5 : 5;
    } else {
        double mean = s->e2e.n ? s->e2e.sum / s->e2e.n : 1.0;
        t = mean * (s->n_queued + 1) / (s->o.parallel > 0 ? s->o.parallel : 1);
    }
    int r = (int)ceil(t);
    return r < 1 ? 1 : r > 120 ? 120 : r;
}

void th_serve_update_thermal(th_server *s) { /* under mu */
    th_run_figures_now(s->run, &s->fig);
    double busy = s->fig.busy_s - s->last_busy, idle = s->fig.idle_s - s->last_idle;
    if (busy + idle > 0.5) {
        s->duty = busy / (busy + idle);
        s->last_busy = s->fig.busy_s;
        s->last_idle = s->fig.idle_s;
    }
    s->fail_safe = s->fig.fail_safe_decisions > s->fail_safe_seen;
    s->fail_safe_seen = s->fig.fail_safe_decisions;
    double t = s->fig.temp_c, lim = s->fig.limit_c;
    if (s->fail_safe || (isfinite(t) && isfinite(lim) && t >= lim)) s->thermal = TH_SERVE_HOT;
    else if (isfinite(t) && isfinite(lim) && t >= lim - s->o.warm_margin_c) s->thermal = TH_SERVE_WARM;
    else s->thermal = TH_SERVE_OK;
}

static th_status prepare(th_server *s, th_serve_job *j) {
    th_status st = th_gpt2_kv_create(j->model->m, s->ctx, &j->kv);
    if (st == TH_OK) st = th_sampler_create(s->cfg.vocab_size, &j->samp, j->seed, &j->sampler);
    th_loop_guard_config lg = th_loop_guard_defaults();
    if (st == TH_OK) st = th_loop_guard_create(&lg, &j->lg);
    return st;
}

/* One batched decode step of n sequences that all decode with md: one unit of the run,
 * its energy split evenly over them, then each one's next token decided. */
static void decode_step(th_server *s, th_serve_model *md, th_serve_job **rows, int n, th_gpt2_kv **kvs, int *toks) {
    int V = s->cfg.vocab_size;
    for (int i = 0; i < n; i++) {
        kvs[i] = rows[i]->kv;
        toks[i] = rows[i]->pending;
    }
    th_unit_cost c = {0};
    th_run_unit_begin(s->run);
    uint64_t t_step = th_now_ns();
    th_status st = th_gpt2_infer_batch(md->m, md->batch, kvs, toks, n, s->logits);
    t_step = th_now_ns() - t_step;
    th_run_unit_end(s->run, &c);
    pthread_mutex_lock(&s->mu);
    if (n > s->batch_max) s->batch_max = n;
    s->steps++;
    s->step_ns += t_step;
    for (int i = 0; i < n; i++) {
        rows[i]->decode_j += c.energy_j / n;
        rows[i]->co2e_g += c.co2e_g / n;
        rows[i]->water_ml += c.water_ml / n;
        if (st != TH_OK) th_serve_job_finish(s, rows[i], "cancelled");
    }
    pthread_mutex_unlock(&s->mu);
    if (st == TH_OK)
        for (int i = 0; i < n; i++) decide(s, rows[i], s->logits + (size_t)i * V);
}

void *th_serve_engine_main(void *arg) {
    th_server *s = arg;
    th_serve_job **rows = th_alloc(sizeof(th_serve_job *) * (size_t)s->o.parallel);
    th_gpt2_kv **kvs = th_alloc(sizeof(th_gpt2_kv *) * (size_t)s->o.parallel);
    int *toks = th_alloc(sizeof(int) * (size_t)s->o.parallel);
    if (!rows || !kvs || !toks) goto done;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        th_serve_update_thermal(s);
        int slots = th_serve_slots_for(s, s->thermal);
        // admit in arrival order
        while (s->queue && s->n_running < slots) {
            th_serve_job *j = s->queue;
            s->queue = j->next;
            s->n_queued--;
            j->next = s->running;
            s->running = j;
            s->n_running++;
            j->state = TH_SERVE_RUNNING;
            j->pending = -1;
            j->model = th_serve_models_acquire(s->models);
        }
        if (!s->running) {
            if (s->quit) break;
            s->was_idle = 1;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 250000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&s->engine_cv, &s->mu, &ts);
            continue;
        }
        // drop cancelled ones, list the rest
        int n = 0;
        th_serve_job **pp = &s->running;
        while (*pp) {
            th_serve_job *j = *pp;
            if (j->cancelled && j->state != TH_SERVE_DONE) th_serve_job_finish(s, j, "cancelled");
            if (j->state == TH_SERVE_DONE) {
                *pp = j->next;
                s->n_running--;
                th_serve_job_release(j);
                continue;
            }
            if (n < s->o.parallel) rows[n++] = j;
            pp = &j->next;
        }
        pthread_mutex_unlock(&s->mu);
        if (s->was_idle) {
            // an empty unit closes the idle time, so its energy is booked as idle, not to a request
            th_unit_cost c = {0};
            th_run_unit_begin(s->run);
            th_run_unit_end(s->run, &c);
            pthread_mutex_lock(&s->mu);
            s->idle_j += c.energy_j;
            pthread_mutex_unlock(&s->mu);
            s->was_idle = 0;
        }
        // prefills: one unit each
        for (int i = 0; i < n; i++) {
            th_serve_job *j = rows[i];
            if (j->pending >= 0 || j->kv) continue;
            th_unit_cost c = {0};
            th_status st = prepare(s, j);
            th_run_unit_begin(s->run);
            if (st == TH_OK) st = th_gpt2_infer(j->model->m, j->kv, j->prompt, (int)j->n_prompt, s->logits, 0);
            th_run_unit_end(s->run, &c);
            pthread_mutex_lock(&s->mu);
            j->prefill_j += c.energy_j;
            j->co2e_g += c.co2e_g;
            j->water_ml += c.water_ml;
            if (st != TH_OK) th_serve_job_finish(s, j, "cancelled");
            pthread_mutex_unlock(&s->mu);
            if (st == TH_OK) decide(s, j, s->logits);
        }
        // one decode step for every sequence with a pending token, a batch per model
        int m = 0;
        for (int i = 0; i < n; i++) {
            th_serve_job *j = rows[i];
            if (j->state == TH_SERVE_DONE || j->pending < 0) continue;
            rows[m++] = j;
        }
        if (m > 0 && s->o.on_step) s->o.on_step(m, s->o.user);
        for (int from = 0; from < m;) {
            th_serve_model *md = rows[from]->model;
            int to = from;
            for (int i = from; i < m; i++)
                if (rows[i]->model == md) {
                    th_serve_job *t = rows[to];
                    rows[to++] = rows[i];
                    rows[i] = t;
                }
            decode_step(s, md, rows + from, to - from, kvs, toks);
            from = to;
        }
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
done:
    th_free(rows);
    th_free(kvs);
    th_free(toks);
    return NULL;
}
