/* distill_cache.c: `thermo distill-cache`: the teacher run once over every window of the
 * train split, its top-k log-probabilities written to a teacher cache (io.h) with the energy
 * that took in its header, resumable and published atomically; and the data preparation
 * that the cache and its students share (distill_internal.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline/distill_internal.h"

th_status distill_mkdir_p(const char *dir) {
    char tmp[4096];
    size_t len = strlen(dir);
    if (len == 0 || len >= sizeof tmp) return th_fail(TH_ERR_INVALID, "directory '%s': bad length", dir);
    memcpy(tmp, dir, len + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && access(tmp, F_OK) != 0) return th_fail(TH_ERR_IO, "cannot create %s", tmp);
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && access(tmp, F_OK) != 0) return th_fail(TH_ERR_IO, "cannot create %s", tmp);
    return TH_OK;
}

th_status distill_data_fingerprint(const char *shard, uint64_t *fp) {
    char *bytes = NULL;
    size_t len = 0;
    th_status st = th_read_file(shard, &bytes, &len);
    if (st != TH_OK) return st;
    *fp = th_xxh64(bytes, len);
    th_free(bytes);
    return TH_OK;
}

th_status distill_shards_build(const th_tokenizer *tok, const char *const *data, size_t n_data, const char *beside,
                               char *tmp_dir, size_t cap, char *train_path, char *val_path, size_t path_cap) {
    tmp_dir[0] = 0;
    th_shard_info info;
    if (n_data == 1 && th_shard_read_info(data[0], &info) == TH_OK) {
        snprintf(train_path, path_cap, "%s", data[0]);
        val_path[0] = 0;
        return TH_OK;
    }
    const char *def = th_train_job_default_corpus();
    if (n_data == 0) {
        if (access(def, R_OK) != 0)
            return th_fail(TH_ERR_IO, "the embedded corpus (%s) is not installed: run scripts/setup, or pass --data", def);
        data = &def;
        n_data = 1;
    }
    if (snprintf(tmp_dir, cap, "%s.tmp-XXXXXX", beside) >= (int)cap) return th_fail(TH_ERR_INVALID, "path too long");
    if (!mkdtemp(tmp_dir)) {
        th_status st = th_fail(TH_ERR_IO, "cannot create a temporary directory %s beside the output", tmp_dir);
        tmp_dir[0] = 0;
        return st;
    }
    snprintf(train_path, path_cap, "%s/train.bin", tmp_dir);
    snprintf(val_path, path_cap, "%s/val.bin", tmp_dir);
    th_dataset_opts dopts = th_dataset_opts_default();
    th_dataset_stats ds;
    th_status st = th_dataset_build(tok, data, n_data, &dopts, train_path, val_path, &ds);
    if (st != TH_OK) {
        distill_shards_discard(tmp_dir, train_path, val_path);
        tmp_dir[0] = 0;
        return st;
    }
    th_log(TH_LOG_INFO, "data: %zu files, %.1f kB of text -> %llu train + %llu validation tokens", ds.files,
           ds.bytes / 1e3, (unsigned long long)ds.train_tokens, (unsigned long long)ds.val_tokens);
    return TH_OK;
}

void distill_shards_discard(const char *tmp_dir, const char *train_path, const char *val_path) {
    if (!tmp_dir[0]) return;
    unlink(train_path);
    unlink(val_path);
    rmdir(tmp_dir);
}

/* ---------------------------------------------------------------------------------
 * the cache */

th_distill_cache_opts th_distill_cache_defaults(void) {
    th_distill_cache_opts o;
    memset(&o, 0, sizeof o);
    o.top_k = 64;
    o.seq = 64;
    o.batch = 8;
    o.save_every = 64;
    o.run = th_run_opts_default();
    return o;
}

/* The k largest of row (V) in descending order: ids and their log-softmax values. */
static void top_k_logp(const float *row, int V, int k, int *ids, float *logp) {
    float maxv = -INFINITY;
    for (int v = 0; v < V; v++) maxv = row[v] > maxv ? row[v] : maxv;
    double sum = 0.0;
    for (int v = 0; v < V; v++) sum += exp((double)row[v] - maxv);
    double lse = maxv + log(sum);
    int n = 0;
    for (int v = 0; v < V; v++) {
        float x = row[v];
        if (n == k && x <= row[ids[k - 1]]) continue;
        int j = n < k ? n++ : k - 1; // insertion into the sorted list, the smallest falls off
        while (j > 0 && row[ids[j - 1]] < x) {
            ids[j] = ids[j - 1];
            j--;
        }
        ids[j] = v;
    }
    for (int j = 0; j < k; j++) logp[j] = (float)(row[ids[j]] - lse);
}

th_status th_distill_cache_run(const th_distill_cache_opts *o, th_distill_cache_result *out) {
    memset(out, 0, sizeof *out);
    th_gpt2 *m = NULL;
    th_tokenizer *tok = NULL;
    th_tcache *cache = NULL;
    th_run *run = NULL;
    char *shard = NULL;
    int *inputs = NULL, *ids = NULL;
    float *logp = NULL;
    char tmp_dir[4200] = "", train_path[4300] = "", val_path[4300] = "";
    size_t shard_len = 0;
    th_status st;
    if (!o->teacher || !o->out_path) return th_fail(TH_ERR_INVALID, "distill-cache: --teacher and --out are required");
    if (o->top_k < 1 || o->seq < 1 || o->batch < 1)
        return th_fail(TH_ERR_INVALID, "distill-cache: --top-k %d, --seq %d and --batch %d must be positive", o->top_k,
                       o->seq, o->batch);
    if ((st = th_model_load_any(o->teacher, &m, NULL)) != TH_OK) goto done;
    const th_gpt2_config *cfg = th_gpt2_get_config(m);
    if (o->seq > cfg->max_seq_len) {
        st = th_fail(TH_ERR_INVALID, "%s: --seq %d exceeds the teacher's context of %d", o->teacher, o->seq,
                     cfg->max_seq_len);
        goto done;
    }
    if (cfg->vocab_size > 65536 || o->top_k > cfg->vocab_size) {
        st = th_fail(TH_ERR_INVALID, "%s: a cache needs a vocabulary of at most 65536 ids and --top-k %d within it (%d)",
                     o->teacher, o->top_k, cfg->vocab_size);
        goto done;
    }
    if ((st = th_model_load_tokenizer(o->teacher, &tok)) != TH_OK) goto done;
    if ((st = distill_shards_build(tok, o->data, o->n_data, o->out_path, tmp_dir, sizeof tmp_dir, train_path, val_path,
                                   sizeof train_path)) != TH_OK)
        goto done;
    if ((st = th_read_file(train_path, &shard, &shard_len)) != TH_OK) goto done;
    th_shard_info info;
    if ((st = th_shard_read_info(train_path, &info)) != TH_OK) goto done;
    uint64_t N = info.token_count, W = N > 0 ? (N - 1) / (uint64_t)o->seq : 0;
    if (W == 0 || info.vocab_size > (uint64_t)cfg->vocab_size) {
        st = th_fail(TH_ERR_INVALID, "%s: %llu tokens (ids below %llu) give no window of %d for a vocabulary of %d",
                     train_path, (unsigned long long)N, (unsigned long long)info.vocab_size, o->seq + 1, cfg->vocab_size);
        goto done;
    }
    th_tcache_header want = {0, (uint32_t)o->top_k, (uint32_t)o->seq, (uint32_t)cfg->vocab_size, W, 0,
                             th_tcache_fingerprint_model(m), th_xxh64(shard, shard_len), 0, 0, 0, 0};
    if (o->resume && access(o->out_path, F_OK) == 0) {
        if ((st = th_tcache_load(o->out_path, &cache)) != TH_OK) goto done;
        const th_tcache_header *h = th_tcache_header_of(cache);
        const char *why = h->teacher_fp != want.teacher_fp ? "another teacher"
                          : h->data_fp != want.data_fp     ? "another dataset"
                          : h->k != want.k                 ? "another --top-k"
                          : h->seq != want.seq             ? "another --seq"
                                                           : NULL;
        if (why) {
            st = th_fail(TH_ERR_INVALID, "%s: the cache was made from %s; it is left as it was", o->out_path, why);
            goto done;
        }
        th_log(TH_LOG_INFO, "resuming %s at window %llu of %llu", o->out_path, (unsigned long long)h->windows_done,
               (unsigned long long)W);
    } else if ((st = th_tcache_create(&want, &cache)) != TH_OK) {
        goto done;
    }
    th_tcache_header *h = th_tcache_header_of(cache);
    int B = o->batch, T = o->seq, K = o->top_k, V = cfg->vocab_size;
    inputs = th_alloc(sizeof(int) * (size_t)B * T);
    ids = th_alloc(sizeof(int) * (size_t)T * K);
    logp = th_alloc(sizeof(float) * (size_t)T * K);
    if (!inputs || !ids || !logp) {
        st = th_fail(TH_ERR_NOMEM, "distill-cache: out of memory");
        goto done;
    }
    if ((st = th_run_start(&o->run, &run)) != TH_OK) goto done;
    if (o->on_run_started) o->on_run_started(run, o->user);
    const unsigned char *tokens = (const unsigned char *)shard + TH_SHARD_HEADER_BYTES;
    uint64_t t0 = th_now_ns();
    th_unit_cost spent = {0};
    long batches = 0;
    while (h->windows_done < W && st == TH_OK) {
        if (o->should_stop && o->should_stop(o->user)) {
            st = th_fail(TH_ERR_INTERRUPTED, "distill-cache: stopped at window %llu", (unsigned long long)h->windows_done);
            break;
        }
        int b = (int)(W - h->windows_done < (uint64_t)B ? W - h->windows_done : (uint64_t)B);
        for (int r = 0; r < b; r++)
            for (int t = 0; t < T; t++) {
                uint64_t pos = (h->windows_done + (uint64_t)r) * (uint64_t)T + (uint64_t)t;
                const unsigned char *p = tokens + pos * info.token_bytes;
                inputs[r * T + t] = info.token_bytes == 2 ? (int)(p[0] | p[1] << 8)
                                                          : (int)((uint32_t)p[0] | (uint32_t)p[1] << 8 |
                                                                  (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
            }
        th_run_unit_begin(run);
        st = th_gpt2_forward(m, inputs, NULL, b, T, NULL);
        const float *logits = th_gpt2_logits(m);
        for (int r = 0; r < b && st == TH_OK; r++) {
            for (int t = 0; t < T; t++)
                top_k_logp(logits + ((size_t)r * T + t) * V, V, K, ids + (size_t)t * K, logp + (size_t)t * K);
            st = th_tcache_append(cache, inputs + (size_t)r * T, ids, logp);
        }
        th_unit_cost c;
        th_status paced = th_run_unit_end(run, &c);
        th_unit_cost_add(&spent, &c);
        out->tokens += (double)b * T;
        if (st == TH_OK) st = paced;
        if (st == TH_OK && o->save_every > 0 && ++batches % o->save_every == 0 && h->windows_done < W) {
            th_tcache_header keep = *h; // the figures so far, published with the windows so far
            h->energy_j += spent.energy_j;
            h->seconds += (th_now_ns() - t0) / 1e9;
            h->co2e_g += spent.co2e_g;
            h->water_ml += spent.water_ml;
            st = th_tcache_save(cache, o->out_path);
            *h = keep;
        }
    }
    th_status st_run = th_run_stop(run, &out->figures);
    run = NULL;
    out->have_figures = st_run == TH_OK;
    if (st == TH_OK || st == TH_ERR_INTERRUPTED) {
        h->energy_j += spent.energy_j;
        h->seconds += (th_now_ns() - t0) / 1e9;
        h->co2e_g += spent.co2e_g;
        h->water_ml += spent.water_ml;
        th_status saved = th_tcache_save(cache, o->out_path);
        if (saved != TH_OK) st = saved;
        else if (st == TH_ERR_INTERRUPTED)
            th_fail(TH_ERR_INTERRUPTED, "distill-cache: stopped at window %llu of %llu; %s keeps them (--resume)",
                    (unsigned long long)h->windows_done, (unsigned long long)W, o->out_path);
        out->header = *h;
    }
    if (o->on_run_started) o->on_run_started(NULL, o->user);
done:
    th_run_stop(run, NULL);
    distill_shards_discard(tmp_dir, train_path, val_path);
    th_free(logp);
    th_free(ids);
    th_free(inputs);
    th_free(shard);
    th_tcache_free(cache);
    th_tokenizer_free(tok);
    th_gpt2_free(m);
    return st;
}
