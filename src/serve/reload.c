/* reload.c: the models a server decodes with, reference-counted, and their hot reload. A
 * watcher thread polls a learn state's current pointer (DIR/learn/state.json, replaced
 * only once DIR/model is a complete export) and takes reload requests (SIGHUP); a reload
 * loads the new weights beside the served ones, outside every lock the engine takes,
 * checks them (the same shape and vocabulary, every weight finite), packs them at
 * the server's precision and makes them current. A sequence keeps the model it started on
 * until it ends; the last one to end frees it. */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "serve/serve_internal.h"
#include "thermo/io.h"

#define WATCH_TICK_MS 50 /* how often the watcher looks at a reload request */
#define LOAD_TRIES 3     /* loads retried when a promotion lands during one */

typedef struct {
    int exists;
    dev_t dev;
    ino_t ino;
    off_t size;
    long mtime_s, mtime_ns;
} file_key;

struct th_serve_models {
    char path[4352];            /* what the first model was loaded from */
    char state_dir[4096];       /* "" when the model is not a learn state's */
    char state_json[4352];
    th_infer_precision precision;
    int rows, watch_ms;
    th_gpt2_config cfg;         /* the first model's: every reload must match it */
    pthread_mutex_t reload_mu;  /* one reload at a time */
    pthread_mutex_t mu;         /* guards what follows */
    pthread_cond_t cv;
    th_serve_model *cur;
    long reloads, failures;
    char error[512];
    file_key seen;              /* state.json as the last reload found it */
    int quit, watching;
    pthread_t watcher;
    volatile sig_atomic_t requested;
};

static file_key key_of(const char *path) {
    file_key k;
    struct stat sb;
    memset(&k, 0, sizeof k);
    if (path[0] && stat(path, &sb) == 0) {
        k.exists = 1;
        k.dev = sb.st_dev;
        k.ino = sb.st_ino;
        k.size = sb.st_size;
        k.mtime_s = (long)sb.st_mtim.tv_sec;
        k.mtime_ns = sb.st_mtim.tv_nsec;
    }
    return k;
}

static int key_eq(const file_key *a, const file_key *b) {
    return a->exists == b->exists && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime_s == b->mtime_s && a->mtime_ns == b->mtime_ns;
}

static void model_free(th_serve_model *md) {
    if (!md) return;
    th_gpt2_batch_free(md->batch);
    th_gpt2_free(md->m);
    th_free(md);
}

static th_status same_shape(const th_gpt2_config *want, const th_gpt2_config *got, const char *path) {
    if (want->num_layers == got->num_layers && want->num_heads == got->num_heads && want->channels == got->channels &&
        want->vocab_size == got->vocab_size && want->max_seq_len == got->max_seq_len && want->ln_eps == got->ln_eps)
        return TH_OK;
    return th_fail(TH_ERR_FORMAT,
                   "%s: a model of another shape (%d layers, %d heads, %d channels, vocabulary %d, context %d) than "
                   "the one served (%d, %d, %d, %d, %d): restart the server to change models",
                   path, got->num_layers, got->num_heads, got->channels, got->vocab_size, got->max_seq_len,
                   want->num_layers, want->num_heads, want->channels, want->vocab_size, want->max_seq_len);
}

/* Every weight finite: weights that are NaN or infinite are refused before any request
 * sees them (checked before packing, on the f32 copy). */
static th_status finite_weights(th_gpt2 *m, const char *path) {
    const float *p = th_gpt2_params(m);
    size_t n = th_gpt2_num_params(th_gpt2_get_config(m));
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i]))
            return th_fail(TH_ERR_FORMAT, "%s: weight %zu of %zu is not finite (%g)", path, i, n, (double)p[i]);
    return TH_OK;
}

/* A model from path, checked against cfg (NULL: the first), packed, with its decode
 * scratch and one reference (the caller's). */
static th_status model_load(const th_serve_models *ms, const char *path, const th_gpt2_config *cfg, long version,
                            th_serve_model **out) {
    *out = NULL;
    th_serve_model *md = th_calloc(1, sizeof *md);
    if (!md) return th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
    th_status st = th_model_load_any(path, &md->m, NULL);
    if (st == TH_OK && cfg) st = same_shape(cfg, th_gpt2_get_config(md->m), path);
    if (st == TH_OK) st = finite_weights(md->m, path);
    if (st == TH_OK) st = th_gpt2_set_precision(md->m, &ms->precision);
    if (st == TH_OK) th_gpt2_set_kv_dtype(md->m, ms->precision.kv_dtype);
    // a KV dtype the model cannot take (q8 with a head size not a multiple of 32) is refused
    // at load, not on every request
    th_gpt2_kv *probe = NULL;
    if (st == TH_OK) st = th_gpt2_kv_create(md->m, 1, &probe);
    th_gpt2_kv_free(probe);
    if (st == TH_OK) st = th_gpt2_batch_create(md->m, ms->rows, &md->batch);
    if (st != TH_OK) {
        model_free(md);
        return st;
    }
    md->version = version;
    md->refs = 1;
    *out = md;
    return TH_OK;
}

/* Where the next model comes from and its version. */
static th_status source(th_serve_models *ms, long *version, char *path, size_t cap) {
    if (!ms->state_dir[0]) {
        pthread_mutex_lock(&ms->mu);
        *version = ms->cur ? ms->cur->version + 1 : 0;
        pthread_mutex_unlock(&ms->mu);
        snprintf(path, cap, "%s", ms->path);
        return TH_OK;
    }
    return th_learn_current(ms->state_dir, version, path, cap);
}

th_status th_serve_models_open(const th_serve_opts *o, th_serve_models **out) {
    *out = NULL;
    const char *from = o->state_dir ? o->state_dir : o->model_path;
    if (!from) return th_fail(TH_ERR_INVALID, "serve: a model is required");
    if (strlen(from) >= 4000) return th_fail(TH_ERR_INVALID, "serve: %.64s...: path too long", from);
    th_serve_models *ms = th_calloc(1, sizeof *ms);
    if (!ms) return th_fail(TH_ERR_NOMEM, "serve: out of memory");
    pthread_mutex_init(&ms->reload_mu, NULL);
    pthread_mutex_init(&ms->mu, NULL);
    pthread_cond_init(&ms->cv, NULL);
    ms->precision = o->precision;
    ms->rows = o->parallel;
    ms->watch_ms = o->watch_ms;
    long version = 0;
    th_status st = TH_OK;
    if (o->state_dir) {
        snprintf(ms->state_dir, sizeof ms->state_dir, "%s", o->state_dir);
        snprintf(ms->state_json, sizeof ms->state_json, "%s/learn/state.json", o->state_dir);
        ms->seen = key_of(ms->state_json);
    } else {
        snprintf(ms->path, sizeof ms->path, "%s", o->model_path);
    }
    char first[sizeof ms->path];
    st = source(ms, &version, first, sizeof first);
    if (st == TH_OK) {
        snprintf(ms->path, sizeof ms->path, "%s", first);
        st = model_load(ms, first, NULL, version, &ms->cur);
    }
    if (st != TH_OK) {
        th_serve_models_close(ms);
        return st;
    }
    ms->cfg = *th_gpt2_get_config(ms->cur->m);
    *out = ms;
    return TH_OK;
}

const char *th_serve_models_path(const th_serve_models *ms) { return ms->path; }

th_serve_model *th_serve_models_acquire(th_serve_models *ms) {
    pthread_mutex_lock(&ms->mu);
    th_serve_model *md = ms->cur;
    md->refs++;
    pthread_mutex_unlock(&ms->mu);
    return md;
}

void th_serve_model_release(th_serve_models *ms, th_serve_model *md) {
    if (!md) return;
    pthread_mutex_lock(&ms->mu);
    int last = --md->refs == 0;
    pthread_mutex_unlock(&ms->mu);
    if (last) model_free(md);
}

th_status th_serve_models_reload(th_serve_models *ms, long *version) {
    pthread_mutex_lock(&ms->reload_mu);
    char path[4352];
    th_serve_model *md = NULL;
    file_key key;
    th_status st;
    long v = 0;
    for (int tries = 1;; tries++) {
        key = key_of(ms->state_json);
        st = source(ms, &v, path, sizeof path);
        if (st == TH_OK) st = model_load(ms, path, &ms->cfg, v, &md);
        file_key after = key_of(ms->state_json);
        if (st != TH_OK || key_eq(&key, &after) || tries == LOAD_TRIES) break;
        // a promotion landed while this one loaded: its files may be a mix; load the newer one
        model_free(md);
        md = NULL;
    }
    th_serve_model *old = NULL;
    pthread_mutex_lock(&ms->mu);
    ms->seen = key;
    if (st == TH_OK) {
        old = ms->cur;
        ms->cur = md;
        ms->reloads++;
        ms->error[0] = 0;
    } else {
        ms->failures++;
        snprintf(ms->error, sizeof ms->error, "%s", th_last_error());
    }
    long served = ms->cur->version;
    pthread_mutex_unlock(&ms->mu);
    th_serve_model_release(ms, old);
    if (version) *version = served;
    pthread_mutex_unlock(&ms->reload_mu);
    return st;
}

void th_serve_models_request(th_serve_models *ms) { ms->requested = 1; }

void th_serve_models_status(th_serve_models *ms, th_serve_models_info *out) {
    pthread_mutex_lock(&ms->mu);
    out->version = ms->cur->version;
    out->dtype = th_gpt2_precision(ms->cur->m, NULL);
    out->reloads = ms->reloads;
    out->failures = ms->failures;
    snprintf(out->error, sizeof out->error, "%s", ms->error);
    pthread_mutex_unlock(&ms->mu);
}

static void reload_logged(th_serve_models *ms, const char *why) {
    long v = 0;
    if (th_serve_models_reload(ms, &v) == TH_OK)
        th_log(TH_LOG_INFO, "serve: %s: now serving version %ld (in-flight requests finish on the previous one)", why, v);
    else
        th_log(TH_LOG_WARN, "serve: %s: reload refused, still serving version %ld: %s", why, v, th_last_error());
}

static void *watch_main(void *arg) {
    th_serve_models *ms = arg;
    uint64_t last_poll = th_now_ns();
    pthread_mutex_lock(&ms->mu);
    while (!ms->quit) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += WATCH_TICK_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&ms->cv, &ms->mu, &ts);
        if (ms->quit) break;
        file_key seen = ms->seen;
        pthread_mutex_unlock(&ms->mu);
        if (ms->requested) {
            ms->requested = 0;
            reload_logged(ms, "reload requested");
        } else if (ms->state_dir[0] && ms->watch_ms >= 0 && (th_now_ns() - last_poll) / 1000000 >= (uint64_t)ms->watch_ms) {
            last_poll = th_now_ns();
            file_key now = key_of(ms->state_json);
            if (!key_eq(&now, &seen)) reload_logged(ms, ms->state_json);
        }
        pthread_mutex_lock(&ms->mu);
    }
    pthread_mutex_unlock(&ms->mu);
    return NULL;
}

th_status th_serve_models_watch(th_serve_models *ms) {
    if (pthread_create(&ms->watcher, NULL, watch_main, ms) != 0)
        return th_fail(TH_ERR_NOMEM, "serve: cannot start the model watcher thread");
    ms->watching = 1;
    return TH_OK;
}

void th_serve_models_close(th_serve_models *ms) {
    if (!ms) return;
    if (ms->watching) {
        pthread_mutex_lock(&ms->mu);
        ms->quit = 1;
        pthread_cond_signal(&ms->cv);
        pthread_mutex_unlock(&ms->mu);
        pthread_join(ms->watcher, NULL);
    }
    th_serve_model_release(ms, ms->cur);
    pthread_cond_destroy(&ms->cv);
    pthread_mutex_destroy(&ms->mu);
    pthread_mutex_destroy(&ms->reload_mu);
    th_free(ms);
}
