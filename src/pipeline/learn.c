/* learn.c: stateful continual fine-tuning (layout and gate in pipeline.h). An update
 * continues from the state's current checkpoint (weights, AdamW moments, RNG) on new data,
 * re-warms and re-decays the learning rate over its own length, replaces a share of each
 * micro-batch's rows with windows from the on-disk replay reservoir, optionally adds EWC or
 * L2-to-init penalties, and runs through th_train inside a monitored run. Before and after,
 * perplexity on held-out old and new slices; the gate promotes the candidate by a journaled
 * rename that a kill cannot leave half done, keeping the previous model for a rollback. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "thermo/pipeline.h"

#define PATH_CAP 4352
#define EWC_MAGIC "THEWCFIS"
#define EWC_HEADER 32

typedef struct {
    char dir[4096];
    char current[PATH_CAP], model[PATH_CAP], old_train[PATH_CAP], old_val[PATH_CAP];
    char learn[PATH_CAP], state_json[PATH_CAP], previous[PATH_CAP], prev_tmp[PATH_CAP], rb_tmp[PATH_CAP];
    char replay[PATH_CAP], ewc[PATH_CAP], ledger[PATH_CAP], journal[PATH_CAP], rejected[PATH_CAP];
    char pending[PATH_CAP], pending_ckpt[PATH_CAP], pending_json[PATH_CAP], pending_data[PATH_CAP];
    char new_train[PATH_CAP], new_val[PATH_CAP], old_dir[PATH_CAP], learned[PATH_CAP];
} learn_paths;

static th_status paths_init(learn_paths *p, const char *dir) {
    if (!dir || !*dir || strlen(dir) >= 4000) return th_fail(TH_ERR_INVALID, "learn: --state DIR is required");
    memset(p, 0, sizeof *p);
    snprintf(p->dir, sizeof p->dir, "%s", dir);
    const char *d = p->dir;
    snprintf(p->current, PATH_CAP, "%s/checkpoint.bin", d);
    snprintf(p->model, PATH_CAP, "%s/model", d);
    snprintf(p->old_train, PATH_CAP, "%s/data/train.bin", d);
    snprintf(p->old_val, PATH_CAP, "%s/data/val.bin", d);
    snprintf(p->learn, PATH_CAP, "%s/learn", d);
    snprintf(p->state_json, PATH_CAP, "%s/learn/state.json", d);
    snprintf(p->previous, PATH_CAP, "%s/learn/previous.bin", d);
    snprintf(p->prev_tmp, PATH_CAP, "%s/learn/previous.link", d);
    snprintf(p->rb_tmp, PATH_CAP, "%s/learn/rollback.link", d);
    snprintf(p->replay, PATH_CAP, "%s/learn/replay.bin", d);
    snprintf(p->ewc, PATH_CAP, "%s/learn/ewc.bin", d);
    snprintf(p->ledger, PATH_CAP, "%s/learn/ledger.jsonl", d);
    snprintf(p->journal, PATH_CAP, "%s/learn/journal.json", d);
    snprintf(p->rejected, PATH_CAP, "%s/learn/rejected.bin", d);
    snprintf(p->pending, PATH_CAP, "%s/learn/pending", d);
    snprintf(p->pending_ckpt, PATH_CAP, "%s/learn/pending/checkpoint.bin", d);
    snprintf(p->pending_json, PATH_CAP, "%s/learn/pending/update.json", d);
    snprintf(p->pending_data, PATH_CAP, "%s/learn/pending/data", d);
    snprintf(p->new_train, PATH_CAP, "%s/learn/pending/data/train.bin", d);
    snprintf(p->new_val, PATH_CAP, "%s/learn/pending/data/val.bin", d);
    snprintf(p->old_dir, PATH_CAP, "%s/learn/old", d);
    snprintf(p->learned, PATH_CAP, "%s/learn/learned", d);
    return TH_OK;
}

/* ---------------------------------------------------------------------------------
 * small file helpers */

static int exists(const char *path) { return access(path, F_OK) == 0; }

/* th_fail with `what` in front of the message already recorded (copied first: th_fail
 * writes the buffer th_last_error reads). */
static th_status refail(th_status st, const char *what) {
    char msg[768];
    snprintf(msg, sizeof msg, "%s", th_last_error());
    return th_fail(st, "%s: %s", what, msg);
}

static th_status make_dir(const char *path) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST) return th_fail(TH_ERR_IO, "cannot create %s", path);
    return TH_OK;
}

static th_status fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return th_fail(TH_ERR_IO, "cannot open directory %s", dir);
    int rc = fsync(fd);
    close(fd);
    return rc == 0 ? TH_OK : th_fail(TH_ERR_IO, "cannot sync directory %s", dir);
}

static th_status rename_synced(const char *from, const char *to, const char *dir) {
    if (rename(from, to) != 0) return th_fail(TH_ERR_IO, "cannot rename %s to %s: %s", from, to, strerror(errno));
    return fsync_dir(dir);
}

/* Removes a directory tree of plain files (the pending update). */
static void remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *e;
    char child[PATH_CAP + 256];
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(child, sizeof child, "%.4300s/%.250s", path, e->d_name);
        remove_tree(child);
    }
    closedir(d);
    rmdir(path);
}

static th_status write_json(const char *path, json_t *o) {
    if (!o) return th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
    th_atomic_file *f = NULL;
    th_status st = th_atomic_open(path, &f);
    if (st == TH_OK) {
        if (json_dump_callback(o, th_atomic_json_sink, f, JSON_INDENT(1) | JSON_PRESERVE_ORDER |
                                                             JSON_REAL_PRECISION(17)) != 0)
            th_atomic_fail(f, th_fail(TH_ERR_NOMEM, "%s: out of memory", path));
        th_atomic_write(f, "\n", 1);
        st = th_atomic_commit(f);
    }
    json_decref(o);
    return st;
}

/* *out NULL when the file does not exist; TH_ERR_FORMAT when it is not a JSON object. */
static th_status read_json(const char *path, json_t **out) {
    *out = NULL;
    if (!exists(path)) return TH_OK;
    json_error_t err;
    json_t *o = json_load_file(path, 0, &err);
    if (!o || !json_is_object(o)) {
        json_decref(o);
        return th_fail(TH_ERR_FORMAT, "%s: not a JSON object (line %d: %s)", path, err.line, err.text);
    }
    *out = o;
    return TH_OK;
}

static json_t *jreal(double v) { return isfinite(v) ? json_real(v) : json_null(); }
static double jget(const json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}
static long jint(const json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (long)json_integer_value(v) : 0;
}

static void state_versions(const learn_paths *p, long *version, long *previous) {
    json_t *s = NULL;
    *version = 0;
    *previous = -1;
    if (read_json(p->state_json, &s) == TH_OK && s) {
        *version = jint(s, "version");
        json_t *pv = json_object_get(s, "previous_version");
        *previous = json_is_integer(pv) ? (long)json_integer_value(pv) : -1;
    }
    json_decref(s);
}

static th_status write_state(const learn_paths *p, long version, long previous) {
    json_t *o = json_object();
    if (o) {
        json_object_set_new(o, "version", json_integer(version));
        json_object_set_new(o, "previous_version", previous >= 0 ? json_integer(previous) : json_null());
        json_object_set_new(o, "model_dir", json_string(p->model));
    }
    return write_json(p->state_json, o);
}

static th_status same_shape(const th_gpt2 *a, const th_gpt2 *b, const char *what) {
    const th_gpt2_config *x = th_gpt2_get_config(a), *y = th_gpt2_get_config(b);
    if (memcmp(x, y, sizeof *x) != 0)
        return th_fail(TH_ERR_FORMAT,
                       "%s is a model of another shape (%d layers, %d heads, %d channels, vocabulary %d, context %d) "
                       "than the state's current model (%d, %d, %d, %d, %d)",
                       what, y->num_layers, y->num_heads, y->channels, y->vocab_size, y->max_seq_len, x->num_layers,
                       x->num_heads, x->channels, x->vocab_size, x->max_seq_len);
    return TH_OK;
}

/* DIR/model from DIR/checkpoint.bin (the tokenizer files there stay as they are). */
static th_status export_current(const learn_paths *p) {
    th_gpt2 *m = NULL;
    th_status st = th_checkpoint_load(p->current, &m, NULL);
    if (st == TH_OK) st = th_hf_save(m, p->model);
    th_gpt2_free(m);
    return st;
}

/* ---------------------------------------------------------------------------------
 * promotion and rollback: a journal names the operation; every step can be redone */

static th_status write_journal(const learn_paths *p, const char *op, long version, long previous, const char *learned) {
    struct stat sb;
    json_t *o = json_object();
    if (o) {
        json_object_set_new(o, "op", json_string(op));
        if (learned) json_object_set_new(o, "learned", json_string(learned));
        json_object_set_new(o, "version", json_integer(version));
        json_object_set_new(o, "previous_version", json_integer(previous));
        json_object_set_new(o, "inode_before", json_integer(stat(p->current, &sb) == 0 ? (json_int_t)sb.st_ino : 0));
    }
    return write_json(p->journal, o);
}

static void stage(void (*hook)(int, void *), void *user, int n) {
    if (hook) hook(n, user);
}

/* DIR/learn/learned/vN.bin: the train shard version N learned (a hard link, or a copy when
 * the shard is on another file system), kept so that the replay reservoir holds it too.
 * Redoable: a source already gone with its copy in place is done. */
static void learned_path(const learn_paths *p, long version, char *out) {
    snprintf(out, PATH_CAP, "%.4300s/v%ld.bin", p->learned, version);
}

static th_status keep_learned(const learn_paths *p, const char *src, long version) {
    char dst[PATH_CAP], tmp[PATH_CAP + 8];
    learned_path(p, version, dst);
    if (!exists(src)) return TH_OK;
    th_status st = make_dir(p->learned);
    if (st != TH_OK) return st;
    snprintf(tmp, sizeof tmp, "%s.link", dst);
    unlink(tmp);
    if (link(src, tmp) != 0) {
        char *data = NULL;
        size_t len = 0;
        th_atomic_file *f = NULL;
        if ((st = th_read_file(src, &data, &len)) == TH_OK && (st = th_atomic_open(tmp, &f)) == TH_OK) {
            th_atomic_write(f, data, len);
            st = th_atomic_commit(f);
        }
        th_free(data);
        if (st != TH_OK) return st;
    }
    return rename_synced(tmp, dst, p->learned);
}

/* Carries out the journal's operation from wherever it stopped. */
static th_status finish_journal(const learn_paths *p, void (*hook)(int, void *), void *user) {
    json_t *j = NULL;
    th_status st = read_json(p->journal, &j);
    if (st != TH_OK || !j) return st;
    char op[16];
    snprintf(op, sizeof op, "%s", json_string_value(json_object_get(j, "op")) ? json_string_value(json_object_get(j, "op")) : "");
    long version = jint(j, "version"), previous = jint(j, "previous_version");
    ino_t before = (ino_t)jint(j, "inode_before");
    struct stat sb;
    int swapped = stat(p->current, &sb) != 0 || sb.st_ino != before;
    if (!strcmp(op, "promote")) {
        if (!swapped && exists(p->pending_ckpt)) {
            // keep the model being replaced: a hard link, renamed into place (current stays put)
            unlink(p->prev_tmp);
            if (link(p->current, p->prev_tmp) != 0) st = th_fail(TH_ERR_IO, "cannot link %s: %s", p->prev_tmp, strerror(errno));
            if (st == TH_OK) st = rename_synced(p->prev_tmp, p->previous, p->learn);
            stage(hook, user, 2);
            if (st == TH_OK) st = rename_synced(p->pending_ckpt, p->current, p->dir);
            stage(hook, user, 3);
        }
        const char *learned = json_string_value(json_object_get(j, "learned"));
        if (st == TH_OK && learned) st = keep_learned(p, learned, version);
    } else if (!strcmp(op, "rollback")) {
        if (!swapped) {
            unlink(p->rb_tmp);
            if (link(p->current, p->rb_tmp) != 0) st = th_fail(TH_ERR_IO, "cannot link %s: %s", p->rb_tmp, strerror(errno));
            if (st == TH_OK) st = rename_synced(p->previous, p->current, p->dir);
        }
        if (st == TH_OK && exists(p->rb_tmp)) st = rename_synced(p->rb_tmp, p->previous, p->learn);
    } else {
        st = th_fail(TH_ERR_FORMAT, "%s: unknown operation", p->journal);
    }
    json_decref(j);
    if (st == TH_OK) st = export_current(p);
    stage(hook, user, 4);
    if (st == TH_OK) st = write_state(p, version, previous);
    if (st == TH_OK && !strcmp(op, "promote")) remove_tree(p->pending);
    if (st == TH_OK && unlink(p->journal) != 0) st = th_fail(TH_ERR_IO, "cannot remove %s", p->journal);
    if (st == TH_OK) st = fsync_dir(p->learn);
    return st;
}

th_status th_learn_recover(const char *state_dir) {
    learn_paths *p = th_alloc(sizeof *p);
    if (!p) return th_fail(TH_ERR_NOMEM, "learn: out of memory");
    th_status st = paths_init(p, state_dir);
    if (st == TH_OK && exists(p->journal)) {
        th_log(TH_LOG_WARN, "%s: finishing an interrupted promotion or rollback", p->journal);
        st = finish_journal(p, NULL, NULL);
    }
    th_free(p);
    return st;
}

th_status th_learn_rollback(const char *state_dir, long *version) {
    learn_paths *p = th_alloc(sizeof *p);
    if (!p) return th_fail(TH_ERR_NOMEM, "learn: out of memory");
    th_gpt2 *cur = NULL, *prev = NULL;
    th_status st = paths_init(p, state_dir);
    if (st == TH_OK && exists(p->journal)) st = finish_journal(p, NULL, NULL);
    if (st != TH_OK) goto done;
    if (!exists(p->previous)) {
        st = th_fail(TH_ERR_INVALID, "%s: no previous model to roll back to", p->dir);
        goto done;
    }
    if ((st = th_checkpoint_load(p->current, &cur, NULL)) != TH_OK ||
        (st = th_checkpoint_load(p->previous, &prev, NULL)) != TH_OK || (st = same_shape(cur, prev, p->previous)) != TH_OK)
        goto done;
    long v, pv;
    state_versions(p, &v, &pv);
    if ((st = write_journal(p, "rollback", pv >= 0 ? pv : 0, v, NULL)) != TH_OK) goto done;
    st = finish_journal(p, NULL, NULL);
    if (st == TH_OK && version) *version = pv >= 0 ? pv : 0;
done:
    th_gpt2_free(cur);
    th_gpt2_free(prev);
    th_free(p);
    return st;
}

th_status th_learn_discard(const char *state_dir) {
    learn_paths *p = th_alloc(sizeof *p);
    if (!p) return th_fail(TH_ERR_NOMEM, "learn: out of memory");
    th_status st = paths_init(p, state_dir);
    if (st == TH_OK && exists(p->journal)) st = finish_journal(p, NULL, NULL);
    if (st == TH_OK) remove_tree(p->pending);
    th_free(p);
    return st;
}

th_status th_learn_current(const char *state_dir, long *version, char *model_dir, size_t cap) {
    learn_paths *p = th_alloc(sizeof *p);
    if (!p) return th_fail(TH_ERR_NOMEM, "learn: out of memory");
    th_status st = paths_init(p, state_dir);
    if (st == TH_OK && !exists(p->current)) st = th_fail(TH_ERR_INVALID, "%s: no checkpoint.bin: not a state", p->dir);
    if (st == TH_OK) {
        long pv;
        state_versions(p, version, &pv);
        if (model_dir && cap) snprintf(model_dir, cap, "%s", p->model);
    }
    th_free(p);
    return st;
}

/* ---------------------------------------------------------------------------------
 * the EWC sidecar: magic, u64 params, u64 key (XXH64 of θ*), u32 windows, u32 0, then the
 * Fisher (f32 x params) and an XXH64 of everything before. θ* is the current model itself. */

static th_status ewc_save(const char *path, const float *fisher, size_t n, uint64_t key, int windows) {
    unsigned char h[EWC_HEADER];
    memset(h, 0, sizeof h);
    memcpy(h, EWC_MAGIC, 8);
    memcpy(h + 8, &(uint64_t){n}, 8);
    memcpy(h + 16, &key, 8);
    memcpy(h + 24, &(uint32_t){(uint32_t)windows}, 4);
    size_t bytes = EWC_HEADER + n * sizeof(float);
    unsigned char *buf = th_alloc(bytes);
    if (!buf) return th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
    memcpy(buf, h, EWC_HEADER);
    memcpy(buf + EWC_HEADER, fisher, n * sizeof(float));
    uint64_t sum = th_xxh64(buf, bytes);
    th_atomic_file *f = NULL;
    th_status st = th_atomic_open(path, &f);
    if (st == TH_OK) {
        th_atomic_write(f, buf, bytes);
        th_atomic_write(f, &sum, 8);
        st = th_atomic_commit(f);
    }
    th_free(buf);
    return st;
}

/* 1 when path holds the Fisher of the model with this key and size (loaded into fisher). */
static int ewc_load(const char *path, float *fisher, size_t n, uint64_t key) {
    char *data = NULL;
    size_t len = 0;
    int ok = 0;
    if (!exists(path) || th_read_file(path, &data, &len) != TH_OK) return 0;
    uint64_t fn, fk, sum;
    if (len == EWC_HEADER + n * sizeof(float) + 8 && memcmp(data, EWC_MAGIC, 8) == 0) {
        memcpy(&fn, data + 8, 8);
        memcpy(&fk, data + 16, 8);
        memcpy(&sum, data + len - 8, 8);
        if (fn == n && fk == key && th_xxh64(data, len - 8) == sum) {
            memcpy(fisher, data + EWC_HEADER, n * sizeof(float));
            ok = 1;
        }
    }
    th_free(data);
    return ok;
}

/* ---------------------------------------------------------------------------------
 * the update */

th_learn_opts th_learn_defaults(void) {
    th_learn_opts o;
    memset(&o, 0, sizeof o);
    o.replay = 0.05;
    o.replay_windows = 256;
    o.settings = th_run_meta_empty();
    o.max_forgetting = 0.02;
    o.gain_ratio = 10.0;
    o.ewc_windows = 256;
    o.eval_batches = 8;
    o.spike_mode = TH_GUARD_STOP;
    o.run = th_run_opts_default();
    return o;
}

typedef struct {
    const th_learn_opts *o;
    th_replay *replay;
    double share;
    uint64_t seed;
    long replay_rows;
    const float *anchor, *fisher; /* θ* (the current model) and F; fisher NULL without EWC */
    double ewc, l2;
    long step, stop_after;
    int stopped_after;
} learn_ctx;

/* Rows [B − k, B) of micro-batch `micro` come from the reservoir, k = ⌊(s+1)·B·r⌋ − ⌊s·B·r⌋:
 * the share is exact over the update and depends on nothing but s. */
static void mix_batch(int *inputs, int *targets, int B, int T, long micro, void *user) {
    learn_ctx *c = user;
    if (!c->replay || c->share <= 0) return;
    long k = (long)floor((double)(micro + 1) * B * c->share) - (long)floor((double)micro * B * c->share);
    for (long r = B - k; r < B; r++) {
        th_replay_draw(c->replay, c->seed, (uint64_t)micro * (uint64_t)B + (uint64_t)r, inputs + (size_t)r * T,
                       targets + (size_t)r * T);
        c->replay_rows++;
    }
}

static th_status penalty(th_gpt2 *m, void *user) {
    learn_ctx *c = user;
    size_t n = th_gpt2_num_params(th_gpt2_get_config(m));
    if (c->l2 > 0) th_penalty_quadratic(th_gpt2_params(m), c->anchor, NULL, n, c->l2, th_gpt2_grads(m));
    if (c->ewc > 0) th_penalty_quadratic(th_gpt2_params(m), c->anchor, c->fisher, n, c->ewc, th_gpt2_grads(m));
    return TH_OK;
}

static void on_step(const th_step_record *rec, void *user) {
    learn_ctx *c = user;
    c->step = rec->step;
    if (c->o->on_step) c->o->on_step(rec, c->o->user);
}

static int should_stop(void *user) {
    learn_ctx *c = user;
    if (c->stop_after > 0 && c->step >= c->stop_after) {
        c->stopped_after = 1;
        return 1;
    }
    return c->o->should_stop && c->o->should_stop(c->o->user);
}

static th_status check_options(const th_learn_opts *o) {
    if (!(o->replay >= 0 && o->replay < 1))
        return th_fail(TH_ERR_INVALID, "learn: --replay %g must be in [0, 1)", o->replay);
    if (o->steps > 0 && o->tokens > 0) return th_fail(TH_ERR_INVALID, "learn: --steps and --tokens conflict: give one");
    if (o->steps < 0 || o->tokens < 0 || o->stop_after < 0 || o->replay_windows < 1 || o->ewc_windows < 1 ||
        o->eval_batches < 0 || o->save_every < 0)
        return th_fail(TH_ERR_INVALID, "learn: a negative length, or an empty reservoir or Fisher sample");
    if (!(o->max_forgetting >= 0) || !(o->gain_ratio >= 0) || !(o->ewc_lambda >= 0) || !(o->l2_init_lambda >= 0))
        return th_fail(TH_ERR_INVALID, "learn: --max-forgetting, --gain-ratio, --ewc and --l2-init must be >= 0");
    if (o->resume && (o->n_data || o->replay_from || o->steps || o->tokens || o->settings.has))
        return th_fail(TH_ERR_INVALID, "learn: --continue takes the pending update's recorded data and settings; "
                                       "--data, --replay-from, --steps, --tokens and training settings conflict with it");
    if (!o->resume && o->n_data == 0)
        return th_fail(TH_ERR_INVALID, "learn: --data NEW is required (or --continue a pending update)");
    if (o->n_data > TH_TRAIN_JOB_MAX_DATA) return th_fail(TH_ERR_INVALID, "learn: at most %d --data paths", TH_TRAIN_JOB_MAX_DATA);
    return TH_OK;
}

static int is_shard(const char *path) {
    th_shard_info info;
    return th_shard_read_info(path, &info) == TH_OK;
}

/* Text -> shards with a held-out tenth; shards as given. */
static th_status build_data(const th_tokenizer *tok, const char *const *in, size_t n, const char *val_shard,
                            const char *train_out, const char *val_out, const char *what, char *train_path,
                            char *val_path) {
    if (n == 1 && is_shard(in[0])) {
        if (!val_shard) return th_fail(TH_ERR_INVALID, "learn: %s %s is a token shard: give its held-out shard too", what, in[0]);
        snprintf(train_path, PATH_CAP, "%s", in[0]);
        snprintf(val_path, PATH_CAP, "%s", val_shard);
        return TH_OK;
    }
    if (!tok) return th_fail(TH_ERR_INVALID, "learn: no tokenizer for the text of %s", what);
    th_dataset_opts d = th_dataset_opts_default();
    th_dataset_stats ds;
    th_status st = th_dataset_build(tok, in, n, &d, train_out, val_out, &ds);
    if (st != TH_OK) {
        char w[128];
        snprintf(w, sizeof w, "%s does not make a dataset", what);
        return refail(st == TH_ERR_INVALID ? TH_ERR_FORMAT : st, w);
    }
    th_log(TH_LOG_INFO, "%s: %zu files, %.1f kB -> %llu train + %llu held-out tokens", what, ds.files, ds.bytes / 1e3,
           (unsigned long long)ds.train_tokens, (unsigned long long)ds.val_tokens);
    snprintf(train_path, PATH_CAP, "%s", train_out);
    snprintf(val_path, PATH_CAP, "%s", val_out);
    return TH_OK;
}

static th_status open_checked(const char *path, int B, int T, th_data_order order, uint64_t seed, int vocab,
                              const char *what, th_data_loader **out) {
    th_status st = th_data_loader_open(path, B, T, order, seed, out);
    if (st != TH_OK) {
        char w[PATH_CAP + 128];
        snprintf(w, sizeof w, "%s (%.4300s) is not usable for %d x %d batches", what, path, B, T);
        return refail(st == TH_ERR_IO ? TH_ERR_INVALID : TH_ERR_FORMAT, w);
    }
    if (th_data_loader_vocab_size(*out) > (uint64_t)vocab)
        return th_fail(TH_ERR_FORMAT, "%s (%s) holds token ids up to %llu, the model's vocabulary is %d", what, path,
                       (unsigned long long)th_data_loader_vocab_size(*out) - 1, vocab);
    return TH_OK;
}

static th_status perplexity(th_gpt2 *m, th_data_loader *dl, int B, int T, int batches, double *ppl) {
    float loss = 0;
    th_status st = th_evaluate(m, dl, B, T, batches, &loss);
    if (st == TH_OK) *ppl = isfinite(loss) ? exp((double)loss) : INFINITY;
    return st;
}

static uint64_t file_key(const char *path, int window_tokens) {
    char *data = NULL;
    size_t len = 0;
    uint64_t k = 0;
    if (th_read_file(path, &data, &len) == TH_OK) k = th_xxh64(data, len);
    th_free(data);
    return k ^ ((uint64_t)window_tokens << 48);
}

/* The reservoir for windows of T + 1: the old train shard, then the shards versions 1 ..
 * `version` learned (DIR/learn/learned/vN.bin, those present), offered in that order by
 * Algorithm R with the update's seed. Loaded when its key (the sources' contents, the
 * window, in order) matches, else rebuilt and saved: after a promotion the next update
 * replays what the last one learned, and after a rollback it no longer does. */
static th_status open_reservoir(const learn_paths *p, const char *old_train, long version, int T, int capacity,
                                uint64_t seed, int vocab, th_replay **out) {
    uint64_t key = file_key(old_train, T + 1);
    char lp[PATH_CAP];
    for (long v = 1; v <= version; v++) {
        learned_path(p, v, lp);
        uint64_t pair[2] = {key, exists(lp) ? file_key(lp, T + 1) : 0};
        if (pair[1]) key = th_xxh64(pair, sizeof pair);
    }
    th_replay *r = NULL;
    if (exists(p->replay) && th_replay_load(p->replay, &r) == TH_OK && th_replay_source_key(r) == key &&
        th_replay_window_tokens(r) == T + 1 && th_replay_capacity(r) == (size_t)capacity) {
        *out = r;
        return TH_OK;
    }
    th_replay_free(r);
    r = NULL;
    int learned = 0;
    th_status st = th_replay_create(T + 1, (size_t)capacity, (uint64_t)vocab, seed, key, &r);
    if (st == TH_OK) st = th_replay_offer_shard(r, old_train);
    for (long v = 1; st == TH_OK && v <= version; v++) {
        learned_path(p, v, lp);
        if (!exists(lp)) continue;
        st = th_replay_offer_shard(r, lp);
        learned++;
    }
    if (st != TH_OK) st = refail(st == TH_ERR_NOMEM ? st : TH_ERR_FORMAT, "replay data");
    if (st == TH_OK && th_replay_count(r) == 0) st = th_fail(TH_ERR_FORMAT, "replay data %s holds no window", old_train);
    if (st == TH_OK) st = th_replay_save(r, p->replay);
    if (st == TH_OK) {
        th_log(TH_LOG_INFO, "replay reservoir: %zu of %llu windows of %d tokens (old data and %d learned shards) -> %s",
               th_replay_count(r), (unsigned long long)th_replay_seen(r), T + 1, learned, p->replay);
        *out = r;
    } else {
        th_replay_free(r);
    }
    return st;
}

typedef struct {
    const th_replay *r;
    int B;
} fisher_src;

static void fisher_batch(int i, int *inputs, int *targets, void *user) {
    fisher_src *f = user;
    int T = th_replay_window_tokens(f->r) - 1;
    size_t n = th_replay_count(f->r);
    for (int b = 0; b < f->B; b++) {
        const int *w = th_replay_window(f->r, ((size_t)i * f->B + b) % n);
        memcpy(inputs + (size_t)b * T, w, sizeof(int) * T);
        memcpy(targets + (size_t)b * T, w + 1, sizeof(int) * T);
    }
}

/* What the pending update records so that a later call continues it. */
typedef struct {
    th_run_meta s;
    double replay, max_forgetting, gain_ratio, ewc, l2;
    int replay_windows, ewc_windows, eval_batches;
    char old_train[PATH_CAP], old_val[PATH_CAP], new_train[PATH_CAP], new_val[PATH_CAP];
    double ppl_old_before, ppl_new_before;
    double energy_j, co2e_g, water_ml, seconds;
    long tokens, replay_rows;
} update_rec;

static th_status save_update(const char *path, const update_rec *u) {
    char meta[TH_RUN_META_MAX];
    th_status st = th_run_meta_to_json(&u->s, meta, sizeof meta);
    if (st != TH_OK) return st;
    json_t *o = json_object();
    if (!o) return th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
    json_object_set_new(o, "settings", json_string(meta));
    struct { const char *k; double v; } reals[] = {
        {"replay", u->replay}, {"max_forgetting", u->max_forgetting}, {"gain_ratio", u->gain_ratio},
        {"ewc", u->ewc}, {"l2_init", u->l2}, {"ppl_old_before", u->ppl_old_before},
        {"ppl_new_before", u->ppl_new_before}, {"energy_j", u->energy_j}, {"co2e_g", u->co2e_g},
        {"water_ml", u->water_ml}, {"seconds", u->seconds}};
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++) json_object_set_new(o, reals[i].k, jreal(reals[i].v));
    struct { const char *k; long v; } ints[] = {{"replay_windows", u->replay_windows}, {"ewc_windows", u->ewc_windows},
                                               {"eval_batches", u->eval_batches}, {"tokens", u->tokens},
                                               {"replay_rows", u->replay_rows}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) json_object_set_new(o, ints[i].k, json_integer(ints[i].v));
    struct { const char *k; const char *v; } strs[] = {{"old_train", u->old_train}, {"old_val", u->old_val},
                                                      {"new_train", u->new_train}, {"new_val", u->new_val}};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) json_object_set_new(o, strs[i].k, json_string(strs[i].v));
    return write_json(path, o);
}

static th_status load_update(const char *path, update_rec *u) {
    json_t *o = NULL;
    th_status st = read_json(path, &o);
    if (st != TH_OK) return st;
    if (!o) return th_fail(TH_ERR_INVALID, "learn: no pending update to continue (%s)", path);
    memset(u, 0, sizeof *u);
    const char *meta = json_string_value(json_object_get(o, "settings"));
    st = meta ? th_run_meta_parse(meta, path, &u->s) : th_fail(TH_ERR_FORMAT, "%s: no settings", path);
    u->replay = jget(o, "replay");
    u->max_forgetting = jget(o, "max_forgetting");
    u->gain_ratio = jget(o, "gain_ratio");
    u->ewc = jget(o, "ewc");
    u->l2 = jget(o, "l2_init");
    u->ppl_old_before = jget(o, "ppl_old_before");
    u->ppl_new_before = jget(o, "ppl_new_before");
    u->energy_j = jget(o, "energy_j");
    u->co2e_g = jget(o, "co2e_g");
    u->water_ml = jget(o, "water_ml");
    u->seconds = jget(o, "seconds");
    u->replay_windows = (int)jint(o, "replay_windows");
    u->ewc_windows = (int)jint(o, "ewc_windows");
    u->eval_batches = (int)jint(o, "eval_batches");
    u->tokens = jint(o, "tokens");
    u->replay_rows = jint(o, "replay_rows");
    const char *keys[] = {"old_train", "old_val", "new_train", "new_val"};
    char *dst[] = {u->old_train, u->old_val, u->new_train, u->new_val};
    for (int i = 0; i < 4; i++) {
        const char *v = json_string_value(json_object_get(o, keys[i]));
        snprintf(dst[i], PATH_CAP, "%s", v ? v : "");
    }
    if (st == TH_OK && (!isfinite(u->ppl_old_before) || !isfinite(u->ppl_new_before) || !u->new_train[0] ||
                        u->replay_windows < 1 || !isfinite(u->energy_j)))
        st = th_fail(TH_ERR_FORMAT, "%s: incomplete pending update (--discard it)", path);
    json_decref(o);
    return st;
}

/* The gate (pipeline.h); returns 1 to promote, with the reason in words. */
static int gate(const th_learn_result *r, double max_forgetting, double gain_ratio, char *why, size_t cap) {
    if (!isfinite(r->ppl_old_after) || !isfinite(r->ppl_new_after)) {
        snprintf(why, cap, "refused: the candidate's perplexity is not finite (old %g, new %g)", r->ppl_old_after,
                 r->ppl_new_after);
        return 0;
    }
    if (r->new_gain <= 0) {
        snprintf(why, cap, "refused: new-data perplexity did not improve (%.3f -> %.3f)", r->ppl_new_before,
                 r->ppl_new_after);
        return 0;
    }
    if (r->forgetting <= max_forgetting) {
        snprintf(why, cap, "promoted: old-data perplexity %+.2f %% (tolerance %+.2f %%), new-data perplexity %.3f -> %.3f",
                 100 * r->forgetting, 100 * max_forgetting, r->ppl_new_before, r->ppl_new_after);
        return 1;
    }
    // the gain rule in nats per token: perplexity ratios are lopsided (an unseen domain
    // starts in the thousands), log-perplexity differences are losses and compare fairly
    double lost = log(r->ppl_old_after / r->ppl_old_before), won = log(r->ppl_new_before / r->ppl_new_after);
    if (gain_ratio > 0 && won >= gain_ratio * lost) {
        snprintf(why, cap,
                 "promoted by the gain rule: old-data perplexity %+.2f %% is past the %+.2f %% tolerance, but the "
                 "new-data loss fell %.3f nats/token, at least %g x the old-data rise of %.3f",
                 100 * r->forgetting, 100 * max_forgetting, won, gain_ratio, lost);
        return 1;
    }
    snprintf(why, cap,
             "refused: old-data perplexity rose %+.2f %% (%.3f -> %.3f), past the %+.2f %% tolerance, and the new-data "
             "loss fell %.3f nats/token, under %g x the old-data rise of %.3f; the previous weights stay current",
             100 * r->forgetting, r->ppl_old_before, r->ppl_old_after, 100 * max_forgetting, won, gain_ratio, lost);
    return 0;
}

static th_status append_ledger(const learn_paths *p, const th_learn_result *r, const update_rec *u) {
    json_t *o = json_object();
    if (!o) return th_fail(TH_ERR_NOMEM, "ledger: out of memory");
    json_object_set_new(o, "version", json_integer(r->version));
    json_object_set_new(o, "promoted", json_boolean(r->promoted));
    json_object_set_new(o, "verdict", json_string(r->verdict));
    struct { const char *k; double v; } reals[] = {
        {"ppl_old_before", r->ppl_old_before}, {"ppl_old_after", r->ppl_old_after},
        {"ppl_new_before", r->ppl_new_before}, {"ppl_new_after", r->ppl_new_after},
        {"forgetting", r->forgetting}, {"new_gain", r->new_gain}, {"replay", u->replay}, {"ewc", u->ewc},
        {"l2_init", u->l2}, {"lr", u->s.lr}, {"energy_j", r->energy_j}, {"co2e_g", r->co2e_g},
        {"water_ml", r->water_ml}, {"seconds", r->seconds}, {"j_per_ppl_recovered", r->j_per_ppl},
        {"co2e_g_per_ppl_recovered", r->co2e_g_per_ppl}};
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++) json_object_set_new(o, reals[i].k, jreal(reals[i].v));
    json_object_set_new(o, "steps", json_integer(r->steps_total));
    json_object_set_new(o, "tokens", json_integer(r->tokens));
    json_object_set_new(o, "replay_rows", json_integer(r->replay_rows));
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (!line) return th_fail(TH_ERR_NOMEM, "ledger: out of memory");
    char *old = NULL;
    size_t len = 0;
    if (exists(p->ledger) && th_read_file(p->ledger, &old, &len) != TH_OK) len = 0;
    th_atomic_file *f = NULL;
    th_status st = th_atomic_open(p->ledger, &f);
    if (st == TH_OK) {
        th_atomic_write(f, old ? old : "", len);
        th_atomic_write(f, line, strlen(line));
        th_atomic_write(f, "\n", 1);
        st = th_atomic_commit(f);
    }
    free(line);
    th_free(old);
    return st;
}

/* Settings: given > the pending update's (resume) > the state's recorded ones > defaults. */
static th_run_meta decide(const th_learn_opts *o, const th_run_meta *state, const th_gpt2_config *cfg) {
    th_run_meta s = o->settings;
    uint32_t rec = state->has & ~s.has;
    if (rec & TH_META_BATCH) s.batch = state->batch;
    if (rec & TH_META_SEQ) s.seq = state->seq;
    if (rec & TH_META_GRAD_ACCUM) s.grad_accum = state->grad_accum;
    if (rec & TH_META_SEED) s.seed = state->seed;
    if (rec & TH_META_LR) s.lr = state->lr;
    if (rec & TH_META_WEIGHT_DECAY) s.weight_decay = state->weight_decay;
    if (rec & TH_META_GRAD_CLIP) s.grad_clip = state->grad_clip;
    s.has |= rec & ~(TH_META_STEPS | TH_META_WARMUP);
    if (!(s.has & TH_META_BATCH)) s.batch = 8;
    if (!(s.has & TH_META_SEQ)) s.seq = cfg->max_seq_len < 64 ? cfg->max_seq_len : 64;
    if (!(s.has & TH_META_GRAD_ACCUM)) s.grad_accum = 1;
    if (!(s.has & TH_META_SEED)) s.seed = 1337;
    if (!(s.has & TH_META_LR)) s.lr = 1e-4;
    if (!(s.has & TH_META_WEIGHT_DECAY)) s.weight_decay = 0.1;
    if (!(s.has & TH_META_GRAD_CLIP)) s.grad_clip = 1.0;
    long per_step = (long)s.batch * s.seq * s.grad_accum;
    s.steps = o->steps > 0 ? o->steps : o->tokens > 0 ? (o->tokens + per_step - 1) / per_step : 100;
    if (!(s.has & TH_META_WARMUP)) s.warmup = s.steps / 100 > 1 ? (int)(s.steps / 100) : 1;
    s.has |= TH_META_STEPS | TH_META_BATCH | TH_META_SEQ | TH_META_GRAD_ACCUM | TH_META_WARMUP | TH_META_SEED |
             TH_META_LR | TH_META_WEIGHT_DECAY | TH_META_GRAD_CLIP;
    s.last_val_loss = NAN;
    return s;
}

/* Opens the new data (building it for a new update) and records the update's settings. */
static th_status prepare_new(const th_learn_opts *o, const learn_paths *p, const th_tokenizer *tok, update_rec *u) {
    th_status st;
    remove_tree(p->pending);
    if ((st = make_dir(p->pending)) != TH_OK || (st = make_dir(p->pending_data)) != TH_OK) return st;
    if ((st = build_data(tok, o->data, o->n_data, o->val_shard, p->new_train, p->new_val, "the new data", u->new_train,
                         u->new_val)) != TH_OK)
        return st;
    if (o->replay_from) {
        const char *in[1] = {o->replay_from};
        char tr[PATH_CAP], va[PATH_CAP];
        snprintf(tr, sizeof tr, "%.4300s/train.bin", p->old_dir);
        snprintf(va, sizeof va, "%.4300s/val.bin", p->old_dir);
        if ((st = make_dir(p->old_dir)) != TH_OK) return st;
        if (is_shard(o->replay_from)) {
            snprintf(u->old_train, PATH_CAP, "%s", o->replay_from);
            snprintf(u->old_val, PATH_CAP, "%s", p->old_val);
        } else if ((st = build_data(tok, in, 1, NULL, tr, va, "the replay data", u->old_train, u->old_val)) != TH_OK) {
            return st;
        }
    } else {
        snprintf(u->old_train, PATH_CAP, "%s", p->old_train);
        snprintf(u->old_val, PATH_CAP, "%s", p->old_val);
    }
    if (!exists(u->old_val))
        return th_fail(TH_ERR_INVALID, "learn: no held-out old data (%s) to measure forgetting on: pass --replay-from OLD",
                       u->old_val);
    if (!exists(u->old_train) && (o->replay > 0 || o->ewc_lambda > 0))
        return th_fail(TH_ERR_INVALID, "learn: no old data (%s) for the replay reservoir: pass --replay-from OLD",
                       u->old_train);
    u->replay = o->replay;
    u->replay_windows = o->replay_windows;
    u->max_forgetting = o->max_forgetting;
    u->gain_ratio = o->gain_ratio;
    u->ewc = o->ewc_lambda;
    u->l2 = o->l2_init_lambda;
    u->ewc_windows = o->ewc_windows;
    u->eval_batches = o->eval_batches;
    return TH_OK;
}

typedef struct {
    th_gpt2 *cur, *m;               /* the current model; the candidate being trained */
    th_tokenizer *tok;
    th_data_loader *train, *new_val, *old_val;
    th_replay *replay;
    float *fisher;
    th_run *run;
    update_rec u;
    th_train_state st;
    learn_paths p;
} learn_work;

static void work_free(learn_work *w) {
    th_run_stop(w->run, NULL);
    th_data_loader_close(w->train);
    th_data_loader_close(w->new_val);
    th_data_loader_close(w->old_val);
    th_replay_free(w->replay);
    th_free(w->fisher);
    th_tokenizer_free(w->tok);
    th_gpt2_free(w->m);
    th_gpt2_free(w->cur);
    th_free(w);
}

static th_status load_current(learn_work *w, th_run_meta *recorded) {
    th_train_state cst;
    th_status st;
    if (!exists(w->p.current))
        return th_fail(TH_ERR_INVALID, "learn: %s holds no checkpoint.bin: not a state (make one with thermo train --out)",
                       w->p.dir);
    if ((st = th_checkpoint_load(w->p.current, &w->cur, &cst)) != TH_OK) return st;
    *recorded = th_run_meta_empty();
    if (th_run_meta_parse(cst.run_meta, w->p.current, recorded) != TH_OK) *recorded = th_run_meta_empty();
    w->st = cst;
    return TH_OK;
}

/* The candidate starts as a copy of the current model (weights and moments). */
static th_status clone_current(learn_work *w) {
    th_status st = th_gpt2_create(th_gpt2_get_config(w->cur), &w->m);
    if (st != TH_OK) return st;
    size_t n = th_gpt2_num_params(th_gpt2_get_config(w->cur));
    memcpy(th_gpt2_params(w->m), th_gpt2_params(w->cur), n * sizeof(float));
    if (th_gpt2_adam_m(w->cur)) {
        if ((st = th_gpt2_adam_restore(w->m, th_gpt2_adam_steps(w->cur))) != TH_OK) return st;
        memcpy(th_gpt2_adam_m(w->m), th_gpt2_adam_m(w->cur), n * sizeof(float));
        memcpy(th_gpt2_adam_v(w->m), th_gpt2_adam_v(w->cur), n * sizeof(float));
    }
    return TH_OK;
}

th_status th_learn_run(const th_learn_opts *o, th_learn_result *out) {
    memset(out, 0, sizeof *out);
    out->ppl_old_before = out->ppl_old_after = out->ppl_new_before = out->ppl_new_after = NAN;
    out->j_per_ppl = out->co2e_g_per_ppl = NAN;
    th_status st = check_options(o);
    if (st != TH_OK) return st;
    learn_work *w = th_calloc(1, sizeof *w);
    if (!w) return th_fail(TH_ERR_NOMEM, "learn: out of memory");
    learn_paths *p = &w->p;
    update_rec *u = &w->u;
    th_run_meta recorded;
    learn_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    int stopped = 0;
    uint64_t t0 = th_now_ns();
    if ((st = paths_init(p, o->state_dir)) != TH_OK) goto done;
    if ((st = load_current(w, &recorded)) != TH_OK) goto done;
    if ((st = make_dir(p->learn)) != TH_OK) goto done;
    if (exists(p->journal) && (st = finish_journal(p, NULL, NULL)) != TH_OK) goto done;
    long version, prev_version;
    state_versions(p, &version, &prev_version);
    out->version = version;
    const th_gpt2_config *cfg = th_gpt2_get_config(w->cur);
    int pending = exists(p->pending_json);
    if (!o->resume && pending) {
        st = th_fail(TH_ERR_INVALID, "learn: an update is pending in %s: --continue it or --discard it", p->pending);
        goto done;
    }
    int fresh = !o->resume;
    if (o->resume) {
        if ((st = load_update(p->pending_json, u)) != TH_OK) goto done;
        if (exists(p->pending_ckpt)) {
            th_train_state pst;
            if ((st = th_checkpoint_load(p->pending_ckpt, &w->m, &pst)) != TH_OK) goto done;
            if ((st = same_shape(w->cur, w->m, p->pending_ckpt)) != TH_OK) goto done;
            w->st = pst;
        } else {
            fresh = 1; // killed before the first save: start the recorded update from the current model
        }
    } else {
        th_tokenizer *tok = NULL;
        if (!(o->n_data == 1 && is_shard(o->data[0])) || (o->replay_from && !is_shard(o->replay_from))) {
            if ((st = th_model_load_tokenizer(p->model, &tok)) != TH_OK) goto done;
        }
        w->tok = tok;
        if ((st = prepare_new(o, p, w->tok, u)) != TH_OK) goto done;
        u->s = decide(o, &recorded, cfg);
    }
    const th_run_meta *s = &u->s;
    if (s->seq > cfg->max_seq_len) {
        st = th_fail(TH_ERR_INVALID, "learn: --seq %d exceeds the model's context of %d", s->seq, cfg->max_seq_len);
        goto done;
    }
    if (fresh) {
        if ((st = clone_current(w)) != TH_OK) goto done;
        w->st.step = 0;
        memset(w->st.data_cursor, 0, sizeof w->st.data_cursor);
    }
    if ((st = open_checked(u->new_train, s->batch, s->seq, TH_DATA_SHUFFLED, s->seed, cfg->vocab_size, "the new data",
                           &w->train)) != TH_OK ||
        (st = open_checked(u->new_val, s->batch, s->seq, TH_DATA_SEQUENTIAL, 0, cfg->vocab_size,
                           "the held-out new data", &w->new_val)) != TH_OK ||
        (st = open_checked(u->old_val, s->batch, s->seq, TH_DATA_SEQUENTIAL, 0, cfg->vocab_size,
                           "the held-out old data", &w->old_val)) != TH_OK)
        goto done;
    if (!fresh) {
        th_data_cursor c = {w->st.data_cursor[0], w->st.data_cursor[1], w->st.data_cursor[2], w->st.data_cursor[3]};
        if ((st = th_data_loader_set_cursor(w->train, &c)) != TH_OK) {
            st = refail(TH_ERR_FORMAT, "the pending checkpoint's data cursor does not fit the pending data");
            goto done;
        }
    }
    if ((u->replay > 0 || u->ewc > 0) &&
        (st = open_reservoir(p, u->old_train, version, s->seq, u->replay_windows, s->seed, cfg->vocab_size,
                             &w->replay)) != TH_OK)
        goto done;

    if ((st = th_run_start(&o->run, &w->run)) != TH_OK) goto done;
    if (o->on_run_started) o->on_run_started(w->run, o->user);
    t0 = th_now_ns();
    if (!o->resume) {
        if ((st = perplexity(w->cur, w->old_val, s->batch, s->seq, u->eval_batches, &u->ppl_old_before)) != TH_OK ||
            (st = perplexity(w->cur, w->new_val, s->batch, s->seq, u->eval_batches, &u->ppl_new_before)) != TH_OK)
            goto stop_run;
        th_log(TH_LOG_INFO, "before: perplexity %.3f on the held-out old data, %.3f on the held-out new data",
               u->ppl_old_before, u->ppl_new_before);
        if ((st = save_update(p->pending_json, u)) != TH_OK) goto stop_run;
    }
    size_t n = th_gpt2_num_params(cfg);
    ctx.o = o;
    ctx.replay = u->replay > 0 ? w->replay : NULL;
    ctx.share = u->replay;
    ctx.seed = s->seed ^ 0x5245504c4159ull; // "REPLAY": draws independent of the loader's shuffle
    ctx.anchor = th_gpt2_params(w->cur);
    ctx.l2 = u->l2;
    ctx.ewc = u->ewc;
    ctx.step = w->st.step;
    ctx.stop_after = o->stop_after;
    if (u->ewc > 0) {
        uint64_t key = th_xxh64(th_gpt2_params(w->cur), n * sizeof(float));
        if (!(w->fisher = th_alloc(n * sizeof(float)))) {
            st = th_fail(TH_ERR_NOMEM, "learn: out of memory for the Fisher");
            goto stop_run;
        }
        if (!ewc_load(p->ewc, w->fisher, n, key)) {
            int windows = u->ewc_windows < (int)th_replay_count(w->replay) ? u->ewc_windows : (int)th_replay_count(w->replay);
            int batches = (windows + s->batch - 1) / s->batch;
            fisher_src fs = {w->replay, s->batch};
            if ((st = th_fisher_diag(w->cur, s->batch, s->seq, batches, fisher_batch, &fs, w->fisher)) != TH_OK ||
                (st = ewc_save(p->ewc, w->fisher, n, key, batches * s->batch)) != TH_OK)
                goto stop_run;
            th_log(TH_LOG_INFO, "EWC: diagonal Fisher over %d old windows -> %s", batches * s->batch, p->ewc);
        }
        ctx.fisher = w->fisher;
    }
    th_train_opts t = th_train_opts_from_meta(s);
    t.val_every = 0;
    t.save_every = o->save_every;
    t.checkpoint_path = p->pending_ckpt;
    t.health.mode = o->spike_mode;
    t.budget = o->budget;
    t.factors = o->run.factors;
    t.run = w->run;
    t.on_step = on_step;
    t.should_stop = should_stop;
    t.mix_batch = mix_batch;
    t.penalty = (u->l2 > 0 || u->ewc > 0) ? penalty : NULL;
    t.user = &ctx;
    long start_step = w->st.step;
    th_log(TH_LOG_INFO, "update: steps %ld..%ld of %ld, %d x %d, lr %.1e re-warmed over %d steps, replay %.0f %%%s%s",
           start_step + 1, o->stop_after > 0 && o->stop_after < s->steps ? o->stop_after : s->steps, s->steps, s->batch,
           s->seq, s->lr, s->warmup, 100 * u->replay, u->ewc > 0 ? ", EWC" : "", u->l2 > 0 ? ", L2-to-init" : "");
    st = th_train(w->m, w->train, NULL, &t, &w->st, &out->train);
    u->tokens += out->train.tokens;
    u->replay_rows += ctx.replay_rows;
    out->steps_done = w->st.step;
    out->steps_total = s->steps;
    stopped = st == TH_ERR_INTERRUPTED;
    if (st == TH_OK) {
        out->pending = 0;
        if ((st = perplexity(w->m, w->old_val, s->batch, s->seq, u->eval_batches, &out->ppl_old_after)) == TH_OK)
            st = perplexity(w->m, w->new_val, s->batch, s->seq, u->eval_batches, &out->ppl_new_after);
    }
stop_run:
    if (o->on_run_started) o->on_run_started(NULL, o->user);
    {
        th_status s2 = th_run_stop(w->run, &out->figures);
        w->run = NULL;
        out->have_figures = s2 == TH_OK;
        if (out->have_figures) {
            u->energy_j += out->figures.have_energy ? out->figures.energy.energy_j : 0;
            u->co2e_g += out->figures.co2e_g;
            u->water_ml += out->figures.water_ml;
        }
        u->seconds += (th_now_ns() - t0) / 1e9;
        if (st == TH_OK && s2 != TH_OK) st = s2;
    }
    out->ppl_old_before = u->ppl_old_before;
    out->ppl_new_before = u->ppl_new_before;
    out->tokens = u->tokens;
    out->replay_rows = u->replay_rows;
    out->energy_j = u->energy_j;
    out->co2e_g = u->co2e_g;
    out->water_ml = u->water_ml;
    out->seconds = u->seconds;
    if (stopped) {
        out->pending = 1;
        th_status s2 = save_update(p->pending_json, u);
        st = s2 != TH_OK ? s2 : ctx.stopped_after ? TH_OK : th_fail(TH_ERR_INTERRUPTED, "learn: stopped at step %ld of "
                                                                    "%ld; --continue resumes the update", w->st.step, s->steps);
        goto done;
    }
    if (st != TH_OK) goto done;

    out->forgetting = out->ppl_old_after / out->ppl_old_before - 1.0;
    out->new_gain = out->ppl_new_before / out->ppl_new_after - 1.0;
    double recovered = out->ppl_new_before - out->ppl_new_after;
    if (recovered > 0 && isfinite(recovered)) {
        out->j_per_ppl = out->energy_j / recovered;
        out->co2e_g_per_ppl = out->co2e_g / recovered;
    }
    out->promoted = gate(out, u->max_forgetting, u->gain_ratio, out->verdict, sizeof out->verdict);
    if (out->promoted) {
        out->version = version + 1;
        if ((st = write_journal(p, "promote", version + 1, version, u->new_train)) != TH_OK) goto done;
        stage(o->on_promote_stage, o->user, 1);
        if ((st = finish_journal(p, o->on_promote_stage, o->user)) != TH_OK) goto done;
        // fold what was learned into the reservoir now (the next update would, if killed here)
        if ((u->replay > 0 || u->ewc > 0) && exists(u->old_train)) {
            th_replay_free(w->replay);
            w->replay = NULL;
            if ((st = open_reservoir(p, u->old_train, version + 1, s->seq, u->replay_windows, s->seed,
                                     cfg->vocab_size, &w->replay)) != TH_OK)
                goto done;
        }
    } else {
        if (rename(p->pending_ckpt, p->rejected) != 0) {
            st = th_fail(TH_ERR_IO, "cannot keep the refused candidate as %s", p->rejected);
            goto done;
        }
        remove_tree(p->pending);
    }
    th_log(TH_LOG_INFO, "%s", out->verdict);
    st = append_ledger(p, out, u);
done:
    work_free(w);
    return st;
}
