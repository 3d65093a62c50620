/* learn_watch.c: the drift watch of continual learning (contract in pipeline.h). Incoming
 * text is scored token by token under the current model (per-token NLL, each window a unit
 * of the monitored run, so scoring has an energy per token) and fed to th_drift, whose
 * frozen reference is the NLL of the state's held-out old slice. As a watcher it polls the
 * directory, keeps what it scored in DIR/learn/watch.json, and runs the update drift
 * schedules only when the energy budget and the thermal margin allow. */
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "thermo/pipeline.h"

#define WPATH 4200

th_learn_watch_opts th_learn_watch_defaults(void) {
    th_learn_watch_opts o;
    memset(&o, 0, sizeof o);
    o.drift = th_drift_defaults();
    o.run = th_run_opts_default();
    o.poll_ms = 1000;
    o.gate.min_margin_c = 5.0;
    return o;
}

void th_learn_watch_result_free(th_learn_watch_result *r) {
    if (!r || !r->files) return;
    for (size_t i = 0; i < r->n_files; i++) th_free(r->files[i]);
    th_free(r->files);
    r->files = NULL;
    r->n_files = 0;
}

/* ---------------------------------------------------------------------------------
 * watch.json: {"done": {"name": "size:mtime_ns", ...}, "owed": ["name", ...], "update_energy_j"} */

typedef struct {
    char path[WPATH];
    json_t *done;   /* object: file name -> its key */
    json_t *owed;   /* array of file names the scheduled update learns from */
    double update_energy_j;
} watch_state;

static th_status state_load(watch_state *w, const char *state_dir) {
    snprintf(w->path, sizeof w->path, "%.4000s/learn/watch.json", state_dir);
    w->done = w->owed = NULL;
    w->update_energy_j = 0;
    json_t *o = NULL;
    if (access(w->path, F_OK) == 0) {
        json_error_t err;
        o = json_load_file(w->path, 0, &err);
        if (!o || !json_is_object(o) || !json_is_object(json_object_get(o, "done")) ||
            !json_is_array(json_object_get(o, "owed"))) {
            json_decref(o);
            return th_fail(TH_ERR_FORMAT, "%s: not a watch state (line %d: %s); remove it to start afresh", w->path,
                           err.line, err.text);
        }
        w->done = json_incref(json_object_get(o, "done"));
        w->owed = json_incref(json_object_get(o, "owed"));
        json_t *e = json_object_get(o, "update_energy_j");
        w->update_energy_j = json_is_number(e) ? json_number_value(e) : 0;
        json_decref(o);
    } else {
        w->done = json_object();
        w->owed = json_array();
    }
    if (!w->done || !w->owed) return th_fail(TH_ERR_NOMEM, "watch: out of memory");
    return TH_OK;
}

static th_status state_save(const watch_state *w) {
    json_t *o = json_pack("{sOsOsf}", "done", w->done, "owed", w->owed, "update_energy_j", w->update_energy_j);
    if (!o) return th_fail(TH_ERR_NOMEM, "%s: out of memory", w->path);
    th_atomic_file *f = NULL;
    th_status st = th_atomic_open(w->path, &f);
    if (st == TH_OK) {
        if (json_dump_callback(o, th_atomic_json_sink, f, JSON_INDENT(1) | JSON_SORT_KEYS) != 0)
            th_atomic_fail(f, th_fail(TH_ERR_NOMEM, "%s: out of memory", w->path));
        th_atomic_write(f, "\n", 1);
        st = th_atomic_commit(f);
    }
    json_decref(o);
    return st;
}

static void state_free(watch_state *w) {
    json_decref(w->done);
    json_decref(w->owed);
}

/* ---------------------------------------------------------------------------------
 * the directory */

typedef struct {
    char name[256];
    char key[64];
} entry;

static int cmp_entry(const void *a, const void *b) { return strcmp(((const entry *)a)->name, ((const entry *)b)->name); }

/* The regular, not yet scored files of dir, sorted by name (*out th_alloc'd). */
static th_status new_files(const char *dir, const watch_state *w, entry **out, size_t *n) {
    *out = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return th_fail(TH_ERR_INVALID, "watch: cannot open the directory %s", dir);
    th_status st = TH_OK;
    size_t cap = 0;
    struct dirent *e;
    char path[WPATH + 256];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof((entry *)0)->name) continue;
        snprintf(path, sizeof path, "%.4000s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        char key[64];
        snprintf(key, sizeof key, "%lld:%lld", (long long)sb.st_size,
                 (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec);
        const char *seen = json_string_value(json_object_get(w->done, e->d_name));
        if (seen && !strcmp(seen, key)) continue;
        if (*n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            entry *ne = th_realloc(*out, nc * sizeof *ne);
            if (!ne) {
                st = th_fail(TH_ERR_NOMEM, "watch: out of memory");
                break;
            }
            *out = ne;
            cap = nc;
        }
        snprintf((*out)[*n].name, sizeof(*out)[*n].name, "%s", e->d_name);
        snprintf((*out)[*n].key, sizeof(*out)[*n].key, "%s", key);
        (*n)++;
    }
    closedir(d);
    if (st == TH_OK && *n) qsort(*out, *n, sizeof **out, cmp_entry);
    return st;
}

/* ---------------------------------------------------------------------------------
 * scoring */

typedef struct {
    const th_learn_watch_opts *o;
    th_gpt2 *m;
    th_tokenizer *tok;
    th_drift *d;
    th_run *run;
    th_learn_watch_result *r;
    watch_state w;
    int T;
    double sum, ref_sum, seg_j0, score_j;
    long seg_tokens, score_tokens;
    int fired;      /* a drift fired in the file being scored */
    int stopped;    /* should_stop said so while scoring: the file stays unscored */
    char ckpt[WPATH], val[WPATH];
} watch_ctx;

static int stop_now(const watch_ctx *c) { return c->o->should_stop && c->o->should_stop(c->o->user); }

th_status th_learn_drift_reference(th_gpt2 *m, th_data_loader *dl, int T, uint64_t w_begin, uint64_t w_end,
                                   const th_drift_config *cfg, double *out) {
    size_t runs = cfg->reference / cfg->window, left = cfg->reference;
    if (runs == 0) runs = 1;
    if (T < 1) return th_fail(TH_ERR_INVALID, "drift reference: T %d", T);
    size_t last = cfg->reference - (runs - 1) * cfg->window; // the last run takes the remainder too
    uint64_t per_run = (last + (size_t)T - 1) / (size_t)T;   // windows of T the longest run spans
    if (w_end > th_data_loader_windows(dl)) w_end = th_data_loader_windows(dl);
    uint64_t span = w_end > w_begin ? w_end - w_begin : 0;
    if (span < runs * per_run)
        return th_fail(TH_ERR_INVALID, "drift reference: %llu windows of %d tokens, %zu runs of %zu tokens need %llu",
                       (unsigned long long)span, T, runs, cfg->window, (unsigned long long)(runs * per_run));
    int *row = th_alloc(sizeof(int) * 2 * (size_t)T);
    if (!row) return th_fail(TH_ERR_NOMEM, "drift reference: out of memory");
    th_status st = TH_OK;
    size_t have = 0;
    th_data_loader_reset(dl);
    for (size_t r = 0, w = 0; r < runs && st == TH_OK; r++) {
        // run r starts at window w_begin + ⌊r (span − per_run) / (runs − 1)⌋: the first at the
        // range's start, the last ending at its end
        uint64_t start = w_begin + (runs > 1 ? r * (span - per_run) / (runs - 1) : 0);
        size_t take = r + 1 == runs ? left : cfg->window;
        for (; w < start; w++) th_data_loader_next(dl, row, row + T);
        while (take > 0 && st == TH_OK) {
            float loss = 0;
            th_data_loader_next(dl, row, row + T);
            w++;
            if ((st = th_gpt2_forward(m, row, row + T, 1, T, &loss)) != TH_OK) break;
            const float *nll = th_gpt2_losses(m);
            for (int i = 0; i < T && take > 0; i++, take--, left--) out[have++] = nll[i];
        }
    }
    th_data_loader_reset(dl);
    th_free(row);
    return st;
}

/* Loads the current model and freezes the reference, drawn across the held-out old slice. */
static th_status load_model(watch_ctx *c) {
    th_train_state ts;
    th_run_meta meta;
    th_gpt2_free(c->m);
    c->m = NULL;
    th_drift_free(c->d);
    c->d = NULL;
    th_status st = th_checkpoint_load(c->ckpt, &c->m, &ts);
    if (st != TH_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", th_last_error());
        return th_fail(TH_ERR_INVALID, "watch: %s is not a state: %s", c->o->state_dir, msg);
    }
    if (th_run_meta_parse(ts.run_meta, c->ckpt, &meta) != TH_OK) meta = th_run_meta_empty();
    const th_gpt2_config *cfg = th_gpt2_get_config(c->m);
    c->T = c->o->seq > 0 ? c->o->seq : (meta.has & TH_META_SEQ) ? meta.seq : 64;
    if (c->T > cfg->max_seq_len) c->T = cfg->max_seq_len;
    if ((st = th_drift_create(&c->o->drift, &c->d)) != TH_OK) return st;
    th_data_loader *ref = NULL;
    if (th_data_loader_open(c->val, 1, c->T, TH_DATA_SEQUENTIAL, 0, &ref) != TH_OK)
        return th_fail(TH_ERR_INVALID, "watch: the held-out old slice %s is not usable", c->val);
    size_t need = c->o->drift.reference;
    double *refv = th_alloc(sizeof(double) * need);
    if (!refv) st = th_fail(TH_ERR_NOMEM, "watch: out of memory");
    if (st == TH_OK && (st = th_learn_drift_reference(c->m, ref, c->T, 0, UINT64_MAX, &c->o->drift, refv)) ==
                           TH_ERR_INVALID) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", th_last_error());
        st = th_fail(TH_ERR_INVALID, "watch: the held-out old slice %s (%llu tokens) is too short for the reference: %s",
                     c->val, (unsigned long long)th_data_loader_tokens(ref), msg);
    }
    if (st == TH_OK) st = th_drift_set_reference(c->d, refv, need);
    if (st == TH_OK) {
        double sum = 0;
        for (size_t i = 0; i < need; i++) sum += refv[i];
        c->r->ref_nll = sum / (double)need;
    }
    th_free(refv);
    th_data_loader_close(ref);
    return st;
}

/* NLL of ids[1..n) given what precedes each within windows of at most T + 1 tokens, fed to
 * the detector (file index `file` of this call). */
static th_status score(watch_ctx *c, const int *ids, size_t n, size_t file) {
    int T = c->T;
    for (size_t k = 0; k + 1 < n; k += (size_t)T) {
        if (stop_now(c)) {
            c->stopped = 1;
            return TH_OK;
        }
        int len = (int)(n - 1 - k < (size_t)T ? n - 1 - k : (size_t)T);
        float loss = 0;
        th_run_unit_begin(c->run);
        th_status st = th_gpt2_forward(c->m, ids + k, ids + k + 1, 1, len, &loss);
        th_status paced = th_run_unit_end(c->run, NULL);
        if (st != TH_OK) return st;
        if (paced != TH_OK) return paced;
        const float *nll = th_gpt2_losses(c->m);
        for (int i = 0; i < len; i++) {
            th_drift_verdict v = th_drift_update(c->d, nll[i]);
            c->r->tokens++;
            c->seg_tokens++;
            c->sum += nll[i];
            c->r->ph_alarms += v.ph_alarm;
            c->r->test_alarms += v.test_alarm;
            if (!c->r->drift) { // the last test until drift, then the one that confirmed it
                c->r->stat = v.stat;
                c->r->p = v.p;
            }
            if (v.drift) {
                c->r->drifts++;
                c->fired = 1;
                if (!c->r->drift) {
                    c->r->drift = 1;
                    c->r->drift_index = c->r->tokens - 1;
                    c->r->drift_file = file;
                }
            }
        }
    }
    return TH_OK;
}

static th_status run_start(watch_ctx *c) {
    th_status st = th_run_start(&c->o->run, &c->run);
    c->seg_j0 = 0;
    c->seg_tokens = 0;
    return st;
}

/* Closes the scoring run (its energy goes into the joules-per-token figure). */
static th_status run_stop(watch_ctx *c) {
    if (!c->run) return TH_OK;
    th_status st = th_run_stop(c->run, &c->r->figures);
    c->run = NULL;
    c->r->have_figures = st == TH_OK;
    if (st == TH_OK && c->r->figures.have_energy && c->seg_tokens > 0) {
        c->score_j += c->r->figures.energy.energy_j - c->seg_j0;
        c->score_tokens += c->seg_tokens;
    }
    c->seg_tokens = 0;
    return st;
}

/* Joules per scored token so far (this segment included). */
static double j_per_token(watch_ctx *c) {
    double j = c->score_j;
    long n = c->score_tokens;
    if (c->run && c->seg_tokens > 0) {
        th_run_figures f;
        th_run_figures_now(c->run, &f);
        if (f.have_energy) {
            j += f.energy.energy_j - c->seg_j0;
            n += c->seg_tokens;
        }
    }
    return n > 0 && j > 0 ? j / (double)n : NAN;
}

static th_status score_file(watch_ctx *c, const entry *e) {
    char path[WPATH + 256];
    snprintf(path, sizeof path, "%.4000s/%s", c->o->watch_dir, e->name);
    th_learn_watch_result *r = c->r;
    char **nf = th_realloc(r->files, (r->n_files + 1) * sizeof *nf);
    if (!nf) return th_fail(TH_ERR_NOMEM, "watch: out of memory");
    r->files = nf;
    size_t len = strlen(path) + 1;
    if (!(r->files[r->n_files] = th_alloc(len))) return th_fail(TH_ERR_NOMEM, "watch: out of memory");
    memcpy(r->files[r->n_files], path, len);
    size_t idx = r->n_files++;
    char *text = NULL;
    int *ids = NULL;
    size_t n = 0;
    c->fired = 0;
    th_status st = th_read_file(path, &text, &len);
    if (st == TH_OK) st = th_tokenizer_encode(c->tok, text, len, 0, &ids, &n);
    th_free(text);
    if (st == TH_OK) st = score(c, ids, n, idx);
    th_free(ids);
    if (st == TH_ERR_NOMEM || c->stopped) return st;
    if (st != TH_OK) th_log(TH_LOG_WARN, "watch: %s skipped: %s", path, th_last_error());
    json_object_set_new(c->w.done, e->name, json_string(e->key));
    if (c->fired && json_array_size(c->w.owed) == 0)
        th_log(TH_LOG_INFO, "watch: drift in %s (token %ld of the stream, test p %.2g): update scheduled", e->name,
               r->drift_index, r->p);
    if (st == TH_OK && (c->fired || json_array_size(c->w.owed) > 0) &&
        json_array_size(c->w.owed) < TH_TRAIN_JOB_MAX_DATA)
        json_array_append_new(c->w.owed, json_string(e->name));
    return state_save(&c->w);
}

/* Runs the owed update if the gate allows; a refusal is counted once per scheduled update. */
static th_status maybe_update(watch_ctx *c, int *skip_counted) {
    const th_learn_watch_opts *o = c->o;
    th_learn_watch_result *r = c->r;
    size_t n = json_array_size(c->w.owed);
    if (!o->update || n == 0) return TH_OK;
    const th_learn_opts *u = o->update;
    const th_run_meta *s = &u->settings;
    long per_step = (long)((s->has & TH_META_BATCH) ? s->batch : 8) * ((s->has & TH_META_SEQ) ? s->seq : c->T) *
                    ((s->has & TH_META_GRAD_ACCUM) ? s->grad_accum : 1);
    long steps = u->steps > 0 ? u->steps : u->tokens > 0 ? (u->tokens + per_step - 1) / per_step : 100;
    double expected_j = 3.0 * j_per_token(c) * (double)steps * (double)per_step;
    th_update_gate_config g = o->gate;
    char why[256];
    th_guard_action act;
    if (g.energy_budget_j > 0 && !isfinite(expected_j)) {
        snprintf(why, sizeof why, "skipped: no energy figure to check against the budget");
        act = TH_GUARD_REFUSE;
    } else {
        if (g.energy_budget_j > 0) {
            g.energy_budget_j -= c->w.update_energy_j;
            if (g.energy_budget_j <= 0) g.energy_budget_j = 1e-9; // spent: any expected energy exceeds it
        }
        th_run_figures f;
        double temp = NAN, limit = NAN;
        if (c->run) {
            th_run_figures_now(c->run, &f);
            temp = f.temp_c;
            limit = f.limit_c;
        }
        act = th_update_gate(&g, expected_j, temp, limit, why, sizeof why);
    }
    if (act != TH_GUARD_CONTINUE) {
        if (!*skip_counted) r->updates_skipped++;
        if (!*skip_counted || strcmp(why, r->last_skip) != 0)
            th_log(TH_LOG_WARN, "watch: update (%zu files, %ld steps) %s", n, steps, why);
        *skip_counted = 1;
        snprintf(r->last_skip, sizeof r->last_skip, "%s", why);
        return TH_OK;
    }
    th_log(TH_LOG_INFO, "watch: update (%zu files, %ld steps) %s", n, steps, why);
    char **paths = th_calloc(n, sizeof *paths);
    if (!paths) return th_fail(TH_ERR_NOMEM, "watch: out of memory");
    th_status st = TH_OK;
    for (size_t i = 0; i < n && st == TH_OK; i++) {
        const char *name = json_string_value(json_array_get(c->w.owed, i));
        size_t len = strlen(o->watch_dir) + strlen(name ? name : "") + 2;
        if (!(paths[i] = th_alloc(len))) st = th_fail(TH_ERR_NOMEM, "watch: out of memory");
        else snprintf(paths[i], len, "%s/%s", o->watch_dir, name ? name : "");
    }
    th_learn_result *lr = st == TH_OK ? th_calloc(1, sizeof *lr) : NULL;
    if (st == TH_OK && !lr) st = th_fail(TH_ERR_NOMEM, "watch: out of memory");
    if (st == TH_OK) st = run_stop(c);
    if (st == TH_OK) {
        th_learn_opts lo = *u;
        lo.state_dir = o->state_dir;
        lo.data = (const char *const *)paths;
        lo.n_data = n;
        lo.resume = 0;
        st = th_learn_run(&lo, lr);
        c->w.update_energy_j += lr->energy_j;
        *skip_counted = 0;
        if (st == TH_OK) {
            r->updates_run++;
            r->updates_promoted += lr->promoted;
            th_log(TH_LOG_INFO, "watch: update %s; %.1f J (%s), version %ld", lr->verdict, lr->energy_j,
                   lr->have_figures ? lr->figures.origin_name : "no energy figure", lr->version);
        } else if (st != TH_ERR_INTERRUPTED && st != TH_ERR_NOMEM && st != TH_ERR_IO) {
            r->updates_failed++;
            th_log(TH_LOG_WARN, "watch: update failed, its files are dropped: %s", th_last_error());
            st = TH_OK;
        }
        if (st == TH_OK) {
            json_array_clear(c->w.owed);
            st = state_save(&c->w);
        }
        if (st == TH_OK && lr->promoted) st = load_model(c);
        if (st == TH_OK) st = run_start(c);
    }
    r->update_energy_j = c->w.update_energy_j;
    for (size_t i = 0; i < n; i++) th_free(paths[i]);
    th_free(paths);
    th_free(lr);
    return st;
}

/* An update pending from a killed watcher is finished before anything else. */
static th_status finish_pending(watch_ctx *c) {
    char pending[WPATH];
    snprintf(pending, sizeof pending, "%.4000s/learn/pending/update.json", c->o->state_dir);
    if (!c->o->update || access(pending, F_OK) != 0) return TH_OK;
    th_log(TH_LOG_INFO, "watch: continuing the pending update");
    th_learn_opts lo = th_learn_defaults();
    lo.state_dir = c->o->state_dir;
    lo.resume = 1;
    lo.run = c->o->update->run;
    lo.should_stop = c->o->update->should_stop;
    lo.on_run_started = c->o->update->on_run_started;
    lo.on_step = c->o->update->on_step;
    lo.user = c->o->update->user;
    th_learn_result *lr = th_calloc(1, sizeof *lr);
    if (!lr) return th_fail(TH_ERR_NOMEM, "watch: out of memory");
    th_status st = th_learn_run(&lo, lr);
    if (st == TH_OK) {
        c->r->updates_run++;
        c->r->updates_promoted += lr->promoted;
        c->w.update_energy_j += lr->energy_j;
        json_array_clear(c->w.owed);
        st = state_save(&c->w);
        th_log(TH_LOG_INFO, "watch: pending update %s", lr->verdict);
    }
    th_free(lr);
    return st;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

th_status th_learn_watch(const th_learn_watch_opts *o, th_learn_watch_result *out) {
    memset(out, 0, sizeof *out);
    out->drift_index = -1;
    out->ref_nll = out->stream_nll = out->stat = out->p = out->j_per_token = NAN;
    if (!o->state_dir || !o->watch_dir) return th_fail(TH_ERR_INVALID, "watch: --state DIR and --watch DIR are required");
    if (!(o->watch_s >= 0) || o->poll_ms < 0) return th_fail(TH_ERR_INVALID, "watch: negative --watch-seconds or poll");
    watch_ctx *c = th_calloc(1, sizeof *c);
    if (!c) return th_fail(TH_ERR_NOMEM, "watch: out of memory");
    c->o = o;
    c->r = out;
    snprintf(c->ckpt, sizeof c->ckpt, "%.4000s/checkpoint.bin", o->state_dir);
    snprintf(c->val, sizeof c->val, "%.4000s/data/val.bin", o->state_dir);
    char model_dir[WPATH], learn_dir[WPATH];
    snprintf(model_dir, sizeof model_dir, "%.4000s/model", o->state_dir);
    snprintf(learn_dir, sizeof learn_dir, "%.4000s/learn", o->state_dir);
    entry *files = NULL;
    size_t n_files = 0;
    int skip_counted = 0;
    th_status st = th_learn_recover(o->state_dir);
    if (st != TH_OK) goto done;
    struct stat sb;
    if (stat(o->watch_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        st = th_fail(TH_ERR_INVALID, "watch: %s is not a directory", o->watch_dir);
        goto done;
    }
    if ((st = load_model(c)) != TH_OK) goto done;
    if (mkdir(learn_dir, 0755) != 0 && access(learn_dir, F_OK) != 0) {
        st = th_fail(TH_ERR_IO, "watch: cannot create %s", learn_dir);
        goto done;
    }
    if ((st = state_load(&c->w, o->state_dir)) != TH_OK) goto done;
    if ((st = th_model_load_tokenizer(model_dir, &c->tok)) != TH_OK) goto done;
    if ((st = finish_pending(c)) != TH_OK) goto done;
    if (out->updates_promoted && (st = load_model(c)) != TH_OK) goto done;
    if ((st = run_start(c)) != TH_OK) goto done;
    uint64_t t0 = th_now_ns();
    for (;;) {
        out->polls++;
        th_free(files);
        if ((st = new_files(o->watch_dir, &c->w, &files, &n_files)) != TH_OK) goto done;
        for (size_t i = 0; i < n_files && st == TH_OK && !c->stopped; i++) st = score_file(c, &files[i]);
        if (st == TH_OK && !c->stopped) st = maybe_update(c, &skip_counted);
        if (st != TH_OK) goto done;
        if (o->watch_s <= 0 || stop_now(c) || c->stopped) break;
        int slept = 0;
        while (slept < o->poll_ms && !stop_now(c) && (th_now_ns() - t0) / 1e9 < o->watch_s) {
            sleep_ms(o->poll_ms - slept < 50 ? o->poll_ms - slept : 50);
            slept += 50;
        }
        if (stop_now(c) || (th_now_ns() - t0) / 1e9 >= o->watch_s) break;
    }
    if (out->tokens > 0) out->stream_nll = c->sum / (double)out->tokens;
    out->j_per_token = j_per_token(c);
    st = run_stop(c);
done:
    if (!out->drift) out->drift_file = out->n_files;
    out->update_energy_j = c->w.update_energy_j;
    if (th_learn_current(o->state_dir, &out->version, NULL, 0) != TH_OK) out->version = 0;
    if (c->run) th_run_stop(c->run, NULL);
    th_free(files);
    state_free(&c->w);
    th_drift_free(c->d);
    th_tokenizer_free(c->tok);
    th_gpt2_free(c->m);
    th_free(c);
    if (st != TH_OK && st != TH_ERR_INTERRUPTED) th_learn_watch_result_free(out);
    return st;
}
