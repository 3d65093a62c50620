/* serve.h: `thermo serve`, a thermally aware inference server with an OpenAI-style
 * completions API. One engine thread decodes every running request together
 * (th_gpt2_infer_batch, one monitored unit of work per step, so the governor paces the
 * decode loop), admits requests by the thermal state (fewer sequences when warm, a bounded
 * queue, 503 with Retry-After when hot), and charges each request its share of the
 * energy. HTTP is libmicrohttpd behind src/serve/http.c. Training and serving stay apart:
 * the server can follow a `thermo learn` state and load each promoted model without
 * dropping a request (th_server_reload). */
#ifndef THERMO_SERVE_H
#define THERMO_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "thermo/core.h"
#include "thermo/pipeline.h"

/* ---------------------------------------------------------------------------------
 * the completion request (request.c): parsed and checked without the model, so the fuzz
 * target can drive it alone */

#define TH_SERVE_MAX_STOP 4
#define TH_SERVE_MAX_STOP_BYTES 64

typedef struct {
    int vocab_size;     /* token ids must be in [0, vocab_size) */
    long max_tokens;    /* the largest max_tokens accepted */
    size_t max_prompt_ids; /* the longest prompt given as ids */
} th_serve_limits;

typedef struct {
    char model[128];          /* "" when not given */
    char *prompt_text;        /* th_alloc'd, NUL-terminated (prompt_len bytes), or NULL */
    size_t prompt_len;
    int *prompt_ids;          /* th_alloc'd, or NULL */
    size_t n_prompt_ids;
    long max_tokens;          /* default 16, as OpenAI's */
    double temperature;       /* default 1 */
    double top_p;             /* default 1 */
    long top_k;               /* extension; default 0 (off) */
    uint64_t seed;            /* default 0 when has_seed is 0 */
    int has_seed;
    char stop[TH_SERVE_MAX_STOP][TH_SERVE_MAX_STOP_BYTES + 1];
    int n_stop;
    int stream;
    int logprobs;             /* 0: none; n > 0: the chosen token's logprob (top alternatives not given) */
} th_serve_request;

/* Parses a POST /v1/completions body (JSON). Unknown fields are ignored (OpenAI clients send
 * many). On failure returns TH_ERR_FORMAT (not JSON, not an object, invalid UTF-8) or
 * TH_ERR_INVALID (a field of the wrong type or out of range), with a message naming the
 * field, and writes the field's name ("" for the body as a whole) to param; *out is then
 * empty. On success *out is the caller's (th_serve_request_free). */
th_status th_serve_parse_completion(const char *body, size_t len, const th_serve_limits *lim,
                                    th_serve_request *out, char *param, size_t param_len);
void th_serve_request_free(th_serve_request *r);

/* The length of the longest prefix of s[0..n) that is complete, valid UTF-8. */
size_t th_utf8_valid_prefix(const char *s, size_t n);

/* ---------------------------------------------------------------------------------
 * the server */

typedef struct {
    const char *model_path;   /* HF directory, llm.c .bin or checkpoint (this or state_dir) */
    const char *state_dir;    /* a `thermo learn` state: serve its current model (DIR/model) and
                                 reload it after each promotion or rollback */
    int watch_ms;             /* with state_dir: DIR/learn/state.json polled this often
                                 (default 1000; < 0: only th_server_reload reloads) */
    const char *host;         /* address to bind (default "127.0.0.1": loopback only) */
    int port;                 /* 0: any free port (th_server_port says which); default 8080 */
    int parallel;             /* sequences decoded at once at most (default 4) */
    int ctx;                  /* positions per sequence (0: the model's context) */
    int queue_max;            /* requests waiting at most (default 4 x parallel) */
    const char *api_key;      /* NULL: none; else Bearer, compared in constant time
                                 (/health, /metrics and / stay open) */
    size_t max_body_bytes;    /* default 1 MiB: larger bodies get 413 */
    long max_tokens_limit;    /* default: ctx */
    int timeout_s;            /* idle connection timeout, seconds (default 30) */
    int max_connections;      /* default 64 */
    double warm_margin_c;     /* warm below the limit by this much: fewer sequences (default 3) */
    th_run_opts run;          /* the monitored run around the decode loop (sensor, governor,
                                 limit, factors) */
    int threads;              /* compute threads (0: keep) */
    th_infer_precision precision; /* weights packed at load, and at each reload (model.h; zero: f32) */
    /* Test hook: the engine thread calls it before each decode step, outside the server's
     * lock, with the number of sequences the step advances (NULL: none). */
    void (*on_step)(int rows, void *user);
    void *user;
} th_serve_opts;

th_serve_opts th_serve_defaults(void);

typedef struct th_server th_server;

typedef struct {
    long requests, completed, refused, cancelled;
    long prompt_tokens, completion_tokens;
    th_run_figures fig;       /* the run's final figures: the session's energy */
    long model_version;       /* the version served at the end */
    long reloads, reload_failures;
} th_serve_summary;

/* Loads the model and tokenizer, starts the monitored run, the engine thread and the HTTP
 * daemon. Fails with the loader's, the run's status, or TH_ERR_IO when the address cannot
 * be bound (the message names it); nothing is left running then. */
th_status th_server_start(const th_serve_opts *o, th_server **out);

/* The port bound (the chosen one when opts.port was 0). */
int th_server_port(const th_server *s);

/* Async-signal-safe: asks th_server_wait to return. */
void th_server_request_stop(th_server *s);

/* Loads the model again from its source (opts.state_dir: the state's current model, as
 * th_learn_current names it, with its version; else opts.model_path, the version counting
 * reloads from 0) and makes it the model that requests admitted from now on decode with.
 * Sequences already decoding finish on the model they started with, which is freed when
 * the last of them ends; no request is refused meanwhile. The new model must have the
 * shape, vocabulary and context of the one served (the tokenizer and the limits stay), is
 * packed at opts.precision and its weights must be finite. On failure (the loader's status,
 * TH_ERR_FORMAT for another shape or a NaN or infinite weight, TH_ERR_NOMEM) the served model
 * stays, and /health's reload_error says why. *version (may be NULL) gets the version
 * served after the call. Thread-safe; reloads run one at a time, each while the two models
 * fit in memory together. With state_dir, the server's watcher calls it when
 * DIR/learn/state.json changes (learn replaces it once DIR/model is complete). */
th_status th_server_reload(th_server *s, long *version);

/* Async-signal-safe (SIGHUP): the watcher thread reloads within 50 ms, and logs how it
 * went (th_log). */
void th_server_request_reload(th_server *s);

/* Blocks until th_server_request_stop. */
void th_server_wait(th_server *s);

/* Stops accepting, finishes in-flight requests for up to grace_s seconds then cancels the
 * rest (streams end with their last chunk), stops the HTTP daemon, the engine and the run,
 * fills *out (may be NULL) and frees the server. */
th_status th_server_stop(th_server *s, double grace_s, th_serve_summary *out);

#endif
