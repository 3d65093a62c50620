/* serve_internal.h (internal to the serve module): the small HTTP interface the server is
 * written against (http.c implements it on libmicrohttpd, so the library choice stays in
 * one file), the models and their hot reload, the latency histograms, the dashboard page,
 * and the server's state that its HTTP side (server.c) and its engine (engine.c) share. */
#ifndef THERMO_SERVE_INTERNAL_H
#define THERMO_SERVE_INTERNAL_H

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "thermo/serve.h"

/* ---------------------------------------------------------------------------------
 * HTTP (http.c) */

typedef struct th_http th_http;

typedef struct {
    const char *method, *path;
    const char *body;      /* the whole body (NUL after it), or "" */
    size_t body_len;
    int body_too_large;    /* the body passed the limit: it was not kept */
    void *conn;            /* for th_http_header */
} th_http_req;

/* A request header's value, or NULL. */
const char *th_http_header(const th_http_req *r, const char *name);

#define TH_HTTP_MAX_HEADERS 12

/* A streamed body: next fills buf with up to max bytes and returns how many (> 0), 0 at the
 * end, -1 to abort the connection; it may block. done is called once, with completed 0
 * when the client went away or the stream was aborted. */
typedef struct {
    ssize_t (*next)(void *user, char *buf, size_t max);
    void (*done)(void *user, int completed);
    void *user;
} th_http_stream;

typedef struct {
    int status;
    const char *content_type;
    char *body;            /* th_alloc'd, taken by the HTTP layer */
    size_t len;
    char headers[TH_HTTP_MAX_HEADERS][2][96];
    int n_headers;
    th_http_stream stream; /* next != NULL: the body is streamed (chunked) instead */
} th_http_resp;

void th_http_resp_header(th_http_resp *r, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Called on a connection's own thread once the whole request is in; fills resp. */
typedef void (*th_http_handler)(void *user, const th_http_req *req, th_http_resp *resp);

/* Binds host:port (port 0: any) and serves each connection on its own thread. TH_ERR_IO
 * naming the address when it cannot bind, TH_ERR_INVALID for a host that is no IPv4
 * address. */
th_status th_http_start(const char *host, int port, size_t max_body, int timeout_s, int max_connections,
                        th_http_handler handler, void *user, th_http **out);
int th_http_port(const th_http *h);
/* Stops listening and waits for the connection threads to end. */
void th_http_stop(th_http *h);

/* ---------------------------------------------------------------------------------
 * the models served (reload.c): the current one and, after a reload, the older ones that
 * sequences still decode with, each freed when its last reference goes */

typedef struct {
    th_gpt2 *m;             /* packed at the server's precision */
    th_gpt2_batch *batch;   /* its decode scratch (the engine's; one step at a time) */
    long version;           /* the learn state's version, or the count of reloads */
    int refs;               /* under the models' lock */
} th_serve_model;

typedef struct th_serve_models th_serve_models;

typedef struct {
    long version;           /* of the current model */
    th_dtype dtype;         /* its inference precision */
    long reloads, failures; /* reloads done, refused */
    char error[512];        /* why the last reload was refused ("" after a good one) */
} th_serve_models_info;

/* Loads the first model: o->state_dir's current one (th_learn_current) or o->model_path,
 * packed at o->precision, with decode scratch for o->parallel rows. The loader's status on
 * failure (nothing is left). */
th_status th_serve_models_open(const th_serve_opts *o, th_serve_models **out);
/* What the first model was loaded from (its tokenizer is there too). */
const char *th_serve_models_path(const th_serve_models *ms);
/* Starts the watcher thread: reload requests, and with a state, state.json polled every
 * o->watch_ms (< 0: never). TH_ERR_NOMEM when the thread cannot start. */
th_status th_serve_models_watch(th_serve_models *ms);
/* The current model, with a reference for the caller (th_serve_model_release). */
th_serve_model *th_serve_models_acquire(th_serve_models *ms);
/* Drops a reference (NULL: nothing); the last one frees the model. Callable under the
 * server's lock (the models' lock is always taken after it). */
void th_serve_model_release(th_serve_models *ms, th_serve_model *md);
/* th_server_reload: loads the source again, checks and packs it, makes it current. On
 * failure the current model stays and the status says why (also kept for the info). */
th_status th_serve_models_reload(th_serve_models *ms, long *version);
/* Async-signal-safe: the watcher reloads at its next tick (50 ms). */
void th_serve_models_request(th_serve_models *ms);
void th_serve_models_status(th_serve_models *ms, th_serve_models_info *out);
/* Stops the watcher and drops the current model's reference (NULL: nothing). Every
 * sequence's reference must be gone first. */
void th_serve_models_close(th_serve_models *ms);

/* ---------------------------------------------------------------------------------
 * latency histograms (Prometheus buckets, seconds) */

#define TH_HIST_BUCKETS 14

typedef struct {
    unsigned long long counts[TH_HIST_BUCKETS + 1]; /* last: +Inf */
    double sum;
    unsigned long long n;
} th_hist;

extern const double th_hist_bounds[TH_HIST_BUCKETS];
void th_hist_add(th_hist *h, double seconds);

/* The dashboard page (dashboard.c): self-contained HTML, no external assets. */
extern const char th_serve_dashboard_html[];

/* ---------------------------------------------------------------------------------
 * the server's state, shared by its two sides: server.c (the HTTP handlers, admission,
 * start and stop) and engine.c (the engine thread that prefills and decodes) */

typedef enum { TH_SERVE_QUEUED, TH_SERVE_RUNNING, TH_SERVE_DONE } th_serve_job_state;
typedef enum { TH_SERVE_OK, TH_SERVE_WARM, TH_SERVE_HOT } th_serve_thermal;

#define TH_SERVE_RECENT 20

typedef struct th_serve_job {
    struct th_serve_job *next;
    th_server *srv;
    /* the request (fixed once queued) */
    int *prompt;
    size_t n_prompt;
    long max_tokens;
    th_sampler_config samp;
    uint64_t seed;
    char stop[TH_SERVE_MAX_STOP][TH_SERVE_MAX_STOP_BYTES + 1];
    int n_stop, stream, logprobs;
    char id[40];
    long created;
    /* engine-owned */
    th_serve_model *model; /* from admission on; the reference is released with the job */
    th_gpt2_kv *kv;
    th_sampler *sampler;
    th_loop_guard *lg;
    int pending; /* the token the next decode step feeds */
    /* shared, under srv->mu */
    th_serve_job_state state;
    int cancelled, refs;
    int *toks;
    float *lps;
    size_t n_toks, cap_toks;
    char *text;
    size_t text_len, text_cap;
    const char *finish;
    double prefill_j, decode_j, co2e_g, water_ml;
    uint64_t t_arrive, t_first, t_last, t_done;
    size_t sent_bytes;
    int sent_final, sent_done;
    char *out;
    size_t out_len, out_off;
    pthread_cond_t cv;
} th_serve_job;

typedef struct {
    char id[40];
    long tokens;
    const char *finish;
    double e2e_s, energy_j, co2e_g, water_ml;
} th_serve_recent;

struct th_server {
    th_serve_opts o;
    char model_name[128];
    th_serve_models *models;
    th_tokenizer *tok;
    th_gpt2_config cfg;
    int ctx, eot;
    th_run *run;
    th_http *http;
    float *logits;
    pthread_t engine;
    int engine_started;
    pthread_mutex_t mu;
    pthread_cond_t engine_cv;
    th_serve_job *queue, *running; /* singly linked, queue in arrival order */
    int n_queued, n_running;
    int quit, draining;
    volatile sig_atomic_t stop_requested;
    long next_id;
    /* thermal */
    th_serve_thermal thermal;
    int fail_safe;
    uint64_t fail_safe_seen;
    th_run_figures fig;
    double duty, last_busy, last_idle;
    double idle_j; /* energy of the time with nothing to decode */
    int was_idle;
    int batch_max; /* the most rows a decode step ran */
    unsigned long long steps, step_ns; /* decode steps and the time in their forward passes */
    unsigned long long overhead_ns;    /* time serving outside the model: parsing, admission, JSON, SSE,
                                          token bookkeeping, /metrics */
    /* metrics */
    unsigned long long by_code[8];
    unsigned long long by_finish[4];
    unsigned long long refused_thermal, refused_overloaded;
    unsigned long long prompt_tokens, gen_tokens;
    th_hist ttft, itl, e2e;
    th_serve_recent recent[TH_SERVE_RECENT];
    int n_recent, recent_head;
    th_serve_summary sum;
};

extern const char *const th_serve_finish_names[4]; /* "stop", "length", "loop", "cancelled" */

/* Drops a reference to j (under s->mu); the last one frees it and its KV cache. */
void th_serve_job_release(th_serve_job *j);
/* Marks j done with `finish` (one of th_serve_finish_names), books it in the metrics and the
 * recent list, and wakes whoever waits on it (under s->mu). */
void th_serve_job_finish(th_server *s, th_serve_job *j, const char *finish);
/* How many sequences may run at once in thermal state t. */
int th_serve_slots_for(const th_server *s, th_serve_thermal t);
/* The Retry-After seconds to tell a refused client: longer when hot. */
int th_serve_retry_after_s(const th_server *s, int hot);
/* Reads the run's figures and sets s->thermal from the temperature and the fail-safe (under s->mu). */
void th_serve_update_thermal(th_server *s);
/* The engine thread (pthread start routine; arg is the th_server). Returns NULL. */
void *th_serve_engine_main(void *arg);

#endif
