/* learn_watch.c: the drift watch of continual learning. Incoming text is scored token by
 * token under the current model (per-token NLL, each window a unit of the monitored run,
 * so the pass has an energy per token) and fed to th_drift, whose frozen reference is the
 * NLL of the state's held-out old slice. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "thermo/pipeline.h"

th_learn_watch_opts th_learn_watch_defaults(void) {
    th_learn_watch_opts o;
    memset(&o, 0, sizeof o);
    o.drift = th_drift_defaults();
    o.run = th_run_opts_default();
    return o;
}

void th_learn_watch_result_free(th_learn_watch_result *r) {
    if (!r || !r->files) return;
    for (size_t i = 0; i < r->n_files; i++) th_free(r->files[i]);
    th_free(r->files);
    r->files = NULL;
    r->n_files = 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static th_status list_files(const char *dir, th_learn_watch_result *r) {
    DIR *d = opendir(dir);
    if (!d) return th_fail(TH_ERR_INVALID, "watch: cannot open the directory %s", dir);
    th_status st = TH_OK;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && st == TH_OK) {
        if (e->d_name[0] == '.') continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *path = th_alloc(len);
        if (!path) {
            st = th_fail(TH_ERR_NOMEM, "watch: out of memory");
            break;
        }
        snprintf(path, len, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            th_free(path);
            continue;
        }
        if (r->n_files == cap) {
            size_t nc = cap ? 2 * cap : 16;
            char **nf = th_realloc(r->files, nc * sizeof *nf);
            if (!nf) {
                th_free(path);
                st = th_fail(TH_ERR_NOMEM, "watch: out of memory");
                break;
            }
            r->files = nf;
            cap = nc;
        }
        r->files[r->n_files++] = path;
    }
    closedir(d);
    if (st == TH_OK && r->n_files) qsort(r->files, r->n_files, sizeof *r->files, cmp_str);
    return st;
}

typedef struct {
    th_gpt2 *m;
    th_drift *d;
    th_run *run;
    th_learn_watch_result *r;
    double sum;
} watch_ctx;

/* NLL of ids[1..n) given what precedes each within windows of at most T + 1 tokens, fed to
 * the detector (file index `file`). */
static th_status score(watch_ctx *c, const int *ids, size_t n, int T, size_t file) {
    for (size_t k = 0; k + 1 < n; k += (size_t)T) {
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
            c->sum += nll[i];
            c->r->ph_alarms += v.ph_alarm;
            c->r->ks_alarms += v.ks_alarm;
            if (!c->r->drift) { // the last test until drift, then the one that confirmed it
                c->r->ks_d = v.ks_d;
                c->r->ks_p = v.ks_p;
            }
            if (v.drift && !c->r->drift) {
                c->r->drift = 1;
                c->r->drift_index = v.index;
                c->r->drift_file = file;
            }
        }
    }
    return TH_OK;
}

th_status th_learn_watch(const th_learn_watch_opts *o, th_learn_watch_result *out) {
    memset(out, 0, sizeof *out);
    out->drift_index = -1;
    out->ref_nll = out->stream_nll = out->ks_d = out->ks_p = out->j_per_token = NAN;
    if (!o->state_dir || !o->watch_dir) return th_fail(TH_ERR_INVALID, "watch: --state DIR and --watch DIR are required");
    char ckpt[4200], model_dir[4200], val[4200];
    snprintf(ckpt, sizeof ckpt, "%.4000s/checkpoint.bin", o->state_dir);
    snprintf(model_dir, sizeof model_dir, "%.4000s/model", o->state_dir);
    snprintf(val, sizeof val, "%.4000s/data/val.bin", o->state_dir);
    th_gpt2 *m = NULL;
    th_tokenizer *tok = NULL;
    th_drift *d = NULL;
    th_data_loader *ref = NULL;
    th_run *run = NULL;
    double *refv = NULL;
    int *ids = NULL, *row = NULL;
    th_train_state ts;
    th_run_meta meta;
    th_status st = th_learn_recover(o->state_dir);
    if (st != TH_OK) goto done;
    if ((st = th_checkpoint_load(ckpt, &m, &ts)) != TH_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", th_last_error());
        st = th_fail(TH_ERR_INVALID, "watch: %s is not a state: %s", o->state_dir, msg);
        goto done;
    }
    if (th_run_meta_parse(ts.run_meta, ckpt, &meta) != TH_OK) meta = th_run_meta_empty();
    const th_gpt2_config *cfg = th_gpt2_get_config(m);
    int T = o->seq > 0 ? o->seq : (meta.has & TH_META_SEQ) ? meta.seq : 64;
    if (T > cfg->max_seq_len) T = cfg->max_seq_len;
    if ((st = list_files(o->watch_dir, out)) != TH_OK) goto done;
    out->drift_file = out->n_files;
    if ((st = th_tokenizer_load_for_model(model_dir, &tok)) != TH_OK) goto done;
    if ((st = th_drift_create(&o->drift, &d)) != TH_OK) goto done;
    if ((st = th_data_loader_open(val, 1, T, TH_DATA_SEQUENTIAL, 0, &ref)) != TH_OK) {
        st = th_fail(TH_ERR_INVALID, "watch: the held-out old slice %s is not usable", val);
        goto done;
    }
    size_t need = o->drift.reference;
    refv = th_alloc(sizeof(double) * (need + (size_t)T));
    row = th_alloc(sizeof(int) * 2 * (size_t)T);
    if (!refv || !row) {
        st = th_fail(TH_ERR_NOMEM, "watch: out of memory");
        goto done;
    }
    if ((st = th_run_start(&o->run, &run)) != TH_OK) goto done;
    size_t have = 0;
    double ref_sum = 0;
    for (uint64_t w = 0; w < th_data_loader_windows(ref) && have < need; w++) {
        float loss = 0;
        th_data_loader_next(ref, row, row + T);
        if ((st = th_gpt2_forward(m, row, row + T, 1, T, &loss)) != TH_OK) goto done;
        const float *nll = th_gpt2_losses(m);
        for (int i = 0; i < T && have < need; i++) {
            refv[have++] = nll[i];
            ref_sum += nll[i];
        }
    }
    if (have < need) {
        st = th_fail(TH_ERR_INVALID, "watch: the held-out old slice %s gives %zu tokens, the reference needs %zu", val,
                     have, need);
        goto done;
    }
    out->ref_nll = ref_sum / (double)have;
    if ((st = th_drift_set_reference(d, refv, have)) != TH_OK) goto done;
    th_run_figures f0;
    th_run_figures_now(run, &f0);
    watch_ctx c = {m, d, run, out, 0.0};
    for (size_t i = 0; i < out->n_files && st == TH_OK; i++) {
        char *text = NULL;
        size_t len = 0, n = 0;
        if ((st = th_read_file(out->files[i], &text, &len)) != TH_OK) break;
        st = th_tokenizer_encode(tok, text, len, 0, &ids, &n);
        th_free(text);
        if (st != TH_OK) break;
        st = score(&c, ids, n, T, i);
        th_free(ids);
        ids = NULL;
    }
    if (st != TH_OK) goto done;
    if (out->tokens > 0) out->stream_nll = c.sum / (double)out->tokens;
    st = th_run_stop(run, &out->figures);
    run = NULL;
    out->have_figures = st == TH_OK;
    if (out->have_figures && out->figures.have_energy && out->tokens > 0)
        out->j_per_token = (out->figures.energy.energy_j - (f0.have_energy ? f0.energy.energy_j : 0)) / out->tokens;
done:
    th_run_stop(run, NULL);
    th_free(ids);
    th_free(row);
    th_free(refv);
    th_data_loader_close(ref);
    th_drift_free(d);
    th_tokenizer_free(tok);
    th_gpt2_free(m);
    if (st != TH_OK) th_learn_watch_result_free(out);
    return st;
}
