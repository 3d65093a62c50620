/* distill.c: `thermo distill`: a student trained from a teacher by th_train_job_run with
 * DistilGPT-2's loss through th_train's hooks; the teacher's forward passes are units of
 * work of their own on the same run (paced by the same governor, booked per step), or its
 * outputs come from a teacher cache whose making is shared among its students; the
 * footprint that results (student, teacher, pre-training) in text, JSON and emissions.csv. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/distill_internal.h"

th_distill_job th_distill_job_defaults(void) {
    th_distill_job d;
    memset(&d, 0, sizeof d);
    d.job = th_train_job_defaults();
    d.loss = th_distill_loss_defaults();
    d.mode = TH_TEACHER_INLOOP;
    d.cache_students = 1;
    d.pretraining_kwh = NAN;
    d.pretraining_share = 1;
    return d;
}

typedef struct {
    long step;
    th_unit_cost teacher;
} step_line;

typedef struct {
    const th_distill_job *d;
    th_distill_result *out;
    th_gpt2 *teacher;
    th_tcache *cache;
    th_run *run;
    int need_teacher;        /* some alpha uses it */
    float *scratch;
    int *ids;
    float *logp;
    size_t scratch_bt;       /* B·T the buffers were sized for */
    th_unit_cost step_teacher;
    step_line *lines;
    size_t n_lines, cap_lines;
    double lookup_s;
} distill_ctx;

static th_status teacher_hook(const int *inputs, const int *targets, int B, int T, void *user) {
    distill_ctx *c = user;
    if (!c->need_teacher || c->d->mode != TH_TEACHER_INLOOP) return TH_OK;
    th_run_unit_begin(c->run);
    th_status st = th_gpt2_forward(c->teacher, inputs, NULL, B, T, NULL);
    th_unit_cost cost;
    th_status paced = th_run_unit_end(c->run, &cost);
    th_unit_cost_add(&c->step_teacher, &cost);
    th_unit_cost_add(&c->out->teacher, &cost);
    c->out->teacher_passes++;
    c->out->teacher_tokens += (double)B * T;
    return st != TH_OK ? st : paced;
}

static th_status micro_loss_hook(th_gpt2 *m, const int *inputs, const int *targets, int B, int T, float loss_scale,
                                 float *loss, void *user) {
    distill_ctx *c = user;
    size_t BT = (size_t)B * T;
    int k = c->cache ? (int)th_tcache_header_of(c->cache)->k : 0;
    if (c->scratch_bt < BT) {
        th_free(c->scratch);
        th_free(c->ids);
        th_free(c->logp);
        c->scratch = th_alloc(th_distill_scratch_floats(th_gpt2_get_config(m), B, T) * sizeof(float));
        c->ids = k ? th_alloc(BT * (size_t)k * sizeof(int)) : NULL;
        c->logp = k ? th_alloc(BT * (size_t)k * sizeof(float)) : NULL;
        c->scratch_bt = BT;
        if (!c->scratch || (k && (!c->ids || !c->logp))) {
            c->scratch_bt = 0;
            return th_fail(TH_ERR_NOMEM, "distillation: out of memory for the loss");
        }
    }
    th_distill_teacher t = {0};
    if (c->need_teacher && c->cache) {
        uint64_t t0 = th_now_ns();
        for (int b = 0; b < B; b++) {
            th_status st = th_tcache_lookup(c->cache, inputs + (size_t)b * T, c->ids + (size_t)b * T * k,
                                            c->logp + (size_t)b * T * k);
            if (st != TH_OK) {
                char why[512];
                snprintf(why, sizeof why, "%s", th_last_error());
                return th_fail(st, "%s: %s", c->d->cache_path, why);
            }
        }
        c->lookup_s += (th_now_ns() - t0) / 1e9;
        c->out->teacher_tokens += (double)BT;
        t = (th_distill_teacher){NULL, NULL, c->ids, c->logp, k};
    } else if (c->need_teacher) {
        t = (th_distill_teacher){th_gpt2_logits(c->teacher), th_gpt2_last_hidden(c->teacher), NULL, NULL, 0};
    }
    th_distill_loss_parts parts;
    th_status st = th_distill_loss_step(m, inputs, targets, B, T, &t, &c->d->loss, loss_scale, c->scratch, &parts);
    *loss = parts.total;
    return st;
}

static void on_step(const th_step_record *rec, void *user) {
    distill_ctx *c = user;
    if (c->n_lines == c->cap_lines) {
        size_t cap = c->cap_lines ? 2 * c->cap_lines : 256;
        step_line *p = th_realloc(c->lines, cap * sizeof *p);
        if (p) {
            c->lines = p;
            c->cap_lines = cap;
        }
    }
    if (c->n_lines < c->cap_lines) c->lines[c->n_lines++] = (step_line){rec->step, c->step_teacher};
    memset(&c->step_teacher, 0, sizeof c->step_teacher);
    if (c->d->job.on_step) c->d->job.on_step(rec, c->d->job.user);
}

static void on_run_started(th_run *run, void *user) {
    distill_ctx *c = user;
    c->run = run;
    if (c->d->job.on_run_started) c->d->job.on_run_started(run, c->d->job.user);
}

static int should_stop(void *user) {
    distill_ctx *c = user;
    return c->d->job.should_stop && c->d->job.should_stop(c->d->job.user);
}

/* The per-step ledger of the teacher, written atomically. */
static th_status write_steps_csv(const distill_ctx *c, const char *path) {
    th_atomic_file *f = NULL;
    th_status st = th_atomic_open(path, &f);
    if (st != TH_OK) return st;
    FILE *s = th_atomic_stream(f);
    fprintf(s, "step,teacher_j,teacher_co2e_g,teacher_water_ml,teacher_busy_s,teacher_idle_s\n");
    for (size_t i = 0; i < c->n_lines; i++) {
        const th_unit_cost *u = &c->lines[i].teacher;
        fprintf(s, "%ld,%.6g,%.6g,%.6g,%.6g,%.6g\n", c->lines[i].step, u->energy_j, u->co2e_g, u->water_ml, u->busy_s,
                u->idle_s);
    }
    return th_atomic_commit(f);
}

/* The student: from teacher blocks, or from student_config. */
static th_status make_student(const th_distill_job *d, th_gpt2 *teacher, th_distill_result *out, th_gpt2 **student) {
    const th_gpt2_config *tc = th_gpt2_get_config(teacher);
    const char *sc = d->student_config;
    th_status st;
    if (!sc || !strcmp(sc, "random")) {
        out->n_layers = d->n_layers;
        if (out->n_layers == 0) out->n_layers = th_distill_default_layers(tc->num_layers, out->layers,
                                                                          TH_DISTILL_MAX_STUDENT_LAYERS);
        else memcpy(out->layers, d->layers, sizeof(int) * (size_t)d->n_layers);
        if ((st = th_gpt2_from_teacher_blocks(teacher, out->layers, out->n_layers, student)) != TH_OK) {
            char why[512];
            snprintf(why, sizeof why, "%s", th_last_error());
            return th_fail(st, "%s: %s", d->job.model, why);
        }
        if (sc) {
            th_gpt2_init_random(*student, d->job.settings.has & TH_META_SEED ? d->job.settings.seed : 1337);
            out->n_layers = 0;
        }
        return TH_OK;
    }
    th_gpt2_config cfg;
    if (access(sc, F_OK) != 0 && th_gpt2_config_preset(sc, &cfg) == TH_OK) {
        if ((st = th_gpt2_create(&cfg, student)) != TH_OK) return st;
        th_gpt2_init_random(*student, d->job.settings.has & TH_META_SEED ? d->job.settings.seed : 1337);
    } else if ((st = th_model_load_any(sc, student, NULL)) != TH_OK) {
        return st;
    }
    const th_gpt2_config *s = th_gpt2_get_config(*student);
    const char *why = s->vocab_size != tc->vocab_size ? "vocabulary" : s->max_seq_len != tc->max_seq_len ? "context length"
                      : d->loss.alpha_cos > 0 && s->channels != tc->channels ? "width (the cosine term needs equal widths)"
                                                                           : NULL;
    if (why) {
        st = th_fail(TH_ERR_INVALID, "student %s: its %s (vocab %d, context %d, width %d) differs from the teacher %s's "
                                     "(vocab %d, context %d, width %d)", sc, why, s->vocab_size, s->max_seq_len,
                     s->channels, d->job.model, tc->vocab_size, tc->max_seq_len, tc->channels);
        th_gpt2_free(*student);
        *student = NULL;
    }
    return st;
}

/* The cache's header against this teacher, data and --seq. */
static th_status check_cache(const th_distill_job *d, th_tcache *cache, th_gpt2 *teacher, uint64_t data_fp, int seq) {
    const th_tcache_header *h = th_tcache_header_of(cache);
    const char *p = d->cache_path;
    if (h->teacher_fp != th_tcache_fingerprint_model(teacher))
        return th_fail(TH_ERR_INVALID, "%s: the cache was made from another teacher than %s (fingerprint differs)", p,
                       d->job.model);
    if (h->data_fp != data_fp)
        return th_fail(TH_ERR_INVALID, "%s: the cache was made from another dataset (fingerprint of the train split "
                                       "differs)", p);
    if ((int)h->seq != seq)
        return th_fail(TH_ERR_INVALID, "%s: the cache was made for --seq %u, not %d", p, h->seq, seq);
    if (!(h->flags & TH_TCACHE_COMPLETE))
        return th_fail(TH_ERR_INVALID, "%s: the cache is incomplete (%llu of %llu windows): finish it with thermo "
                                       "distill-cache --resume", p, (unsigned long long)h->windows_done,
                       (unsigned long long)h->n_windows);
    return TH_OK;
}

static void figures(const distill_ctx *c, th_distill_result *r) {
    const th_distill_job *d = c->d;
    const th_train_job_result *j = &r->train;
    th_eco_price price;
    if (d->job.run.factors && th_eco_price_of(d->job.run.factors, &price) == TH_OK) {
        r->co2e_g_per_j = price.g_co2e_per_j;
        r->water_ml_per_j = price.ml_water_per_j;
    }
    r->student_j = j->train.energy_j;
    r->pretraining_j = isnan(d->pretraining_kwh) ? NAN : d->pretraining_kwh * 3.6e6 * d->pretraining_share;
    r->cache_j = r->cache_tokens = r->cache_share_j = r->inloop_estimate_j = r->cache_estimate_j = NAN;
    r->read_j = 0;
    r->break_even_students = NAN;
    r->teacher_j_per_token = NAN;
    if (c->cache) {
        const th_tcache_header *h = th_tcache_header_of(c->cache);
        r->cache_j = h->energy_j;
        r->cache_tokens = (double)h->n_windows * h->seq;
        r->cache_share_j = r->cache_j / d->cache_students;
        r->teacher_j_per_token = r->cache_j / r->cache_tokens;
        r->inloop_estimate_j = r->teacher_j_per_token * r->teacher_tokens;
        double secs = j->train.seconds;
        r->read_j = secs > 0 ? r->student_j * c->lookup_s / secs : 0;
        double saved = r->inloop_estimate_j - r->read_j;
        r->break_even_students = saved > 0 ? r->cache_j / saved : INFINITY;
    } else if (r->teacher_tokens > 0) {
        r->teacher_j_per_token = r->teacher.energy_j / r->teacher_tokens;
        th_shard_info info;
        char path[4300];
        snprintf(path, sizeof path, "%s/data/train.bin", d->job.out_dir ? d->job.out_dir : "runs/default");
        int seq = j->settings.seq;
        if (th_shard_read_info(path, &info) == TH_OK && seq > 0) {
            r->cache_tokens = (double)((info.token_count - 1) / (uint64_t)seq) * seq;
            r->cache_estimate_j = r->teacher_j_per_token * r->cache_tokens;
            r->break_even_students = r->teacher.energy_j > 0 ? r->cache_estimate_j / r->teacher.energy_j : NAN;
        }
    }
}

th_status th_distill_run(const th_distill_job *d, th_distill_result *out) {
    memset(out, 0, sizeof *out);
    out->mode = d->mode;
    distill_ctx c;
    memset(&c, 0, sizeof c);
    c.d = d;
    c.out = out;
    c.need_teacher = d->loss.alpha_kl > 0 || d->loss.alpha_cos > 0;
    th_gpt2 *student = NULL;
    th_tokenizer *tok = NULL;
    char tmp_dir[4200] = "", train_path[4500] = "", val_path[4500] = "", data_dir[4200], final_train[4400],
         final_val[4400];
    const char *dir = d->job.out_dir ? d->job.out_dir : "runs/default";
    snprintf(data_dir, sizeof data_dir, "%s/data", dir);
    snprintf(final_train, sizeof final_train, "%s/train.bin", data_dir);
    snprintf(final_val, sizeof final_val, "%s/val.bin", data_dir);
    th_status st;
    if (!d->job.model) return th_fail(TH_ERR_INVALID, "distill: --teacher is required");
    if (!(d->cache_students >= 1) || !(d->pretraining_share >= 0 && d->pretraining_share <= 1))
        return th_fail(TH_ERR_INVALID, "distill: students per cache must be >= 1 and the pre-training share in [0, 1]");
    if (d->mode == TH_TEACHER_CACHE && !d->cache_path)
        return th_fail(TH_ERR_INVALID, "distill: --teacher-mode cache needs --cache FILE");
    if (d->mode == TH_TEACHER_CACHE && d->loss.alpha_cos > 0)
        return th_fail(TH_ERR_INVALID, "distill: a cache keeps no hidden states: --alpha-cos needs --teacher-mode inloop");
    const th_distill_loss_config *lc = &d->loss;
    if (!(lc->temperature > 0 && isfinite(lc->temperature)) || !(lc->alpha_kl >= 0 && isfinite(lc->alpha_kl)) ||
        !(lc->alpha_ce >= 0 && isfinite(lc->alpha_ce)) || !(lc->alpha_cos >= 0 && isfinite(lc->alpha_cos)) ||
        lc->alpha_kl + lc->alpha_ce + lc->alpha_cos <= 0)
        return th_fail(TH_ERR_INVALID, "distill: --temperature %g must be positive and the alphas (%g, %g, %g) >= 0, "
                                       "not all 0", lc->temperature, lc->alpha_kl, lc->alpha_ce, lc->alpha_cos);
    // 1. what can be checked without writing anything
    if ((st = th_model_load_any(d->job.model, &c.teacher, NULL)) != TH_OK) goto done;
    out->teacher_cfg = *th_gpt2_get_config(c.teacher);
    if ((st = make_student(d, c.teacher, out, &student)) != TH_OK) goto done;
    out->student_cfg = *th_gpt2_get_config(student);
    int seq = d->job.settings.has & TH_META_SEQ ? d->job.settings.seq : 64;
    if (seq > out->teacher_cfg.max_seq_len) {
        st = th_fail(TH_ERR_INVALID, "%s: --seq %d exceeds the teacher's context of %d", d->job.model, seq,
                     out->teacher_cfg.max_seq_len);
        goto done;
    }
    if (d->mode == TH_TEACHER_CACHE && (st = th_tcache_load(d->cache_path, &c.cache)) != TH_OK) goto done;
    // 2. the data, beside the output until every check passed
    int resume_data = d->job.resume && access(final_train, R_OK) == 0;
    if (resume_data) {
        snprintf(train_path, sizeof train_path, "%s", final_train);
        snprintf(val_path, sizeof val_path, "%s", access(final_val, R_OK) == 0 ? final_val : "");
    } else {
        if ((st = th_model_load_tokenizer(d->job.model, &tok)) != TH_OK) goto done;
        if ((st = distill_mkdir_p(dir)) != TH_OK) goto done;
        if ((st = distill_shards_build(tok, d->job.data, d->job.n_data, dir, tmp_dir, sizeof tmp_dir, train_path,
                                       val_path, sizeof train_path)) != TH_OK)
            goto done;
    }
    if (c.cache) {
        uint64_t fp = 0;
        if ((st = distill_data_fingerprint(train_path, &fp)) != TH_OK ||
            (st = check_cache(d, c.cache, c.teacher, fp, seq)) != TH_OK)
            goto done;
    }
    if (tmp_dir[0]) { // publish the shards as the job's data
        if ((st = distill_mkdir_p(data_dir)) != TH_OK) goto done;
        if (rename(train_path, final_train) != 0 || (val_path[0] && rename(val_path, final_val) != 0)) {
            st = th_fail(TH_ERR_IO, "cannot move the data shards into %s", data_dir);
            goto done;
        }
        rmdir(tmp_dir);
        tmp_dir[0] = 0;
        snprintf(train_path, sizeof train_path, "%s", final_train);
        snprintf(val_path, sizeof val_path, "%s", val_path[0] ? final_val : "");
    }
    // 3. the job
    th_train_job j = d->job;
    const char *shard = train_path;
    j.data = &shard;
    j.n_data = 1;
    j.val_shard = val_path[0] ? val_path : NULL;
    j.start_model = student;
    j.teacher = teacher_hook;
    j.micro_loss = micro_loss_hook;
    j.hook_user = &c;
    j.on_step = on_step;
    j.on_run_started = on_run_started;
    j.should_stop = d->job.should_stop ? should_stop : NULL;
    j.user = &c;
    th_log(TH_LOG_INFO, "distillation: teacher %s (%d layers), student %d layers, T %.1f, alpha kl %.2f ce %.2f cos "
                        "%.2f, teacher %s", d->job.model, out->teacher_cfg.num_layers, out->student_cfg.num_layers,
           d->loss.temperature, d->loss.alpha_kl, d->loss.alpha_ce, d->loss.alpha_cos,
           d->mode == TH_TEACHER_CACHE ? d->cache_path : "in the loop");
    st = th_train_job_run(&j, &out->train);
    figures(&c, out);
    snprintf(out->steps_csv, sizeof out->steps_csv, "%s/distill_steps.csv", dir);
    if (st == TH_OK || st == TH_ERR_INTERRUPTED) {
        th_status s2 = write_steps_csv(&c, out->steps_csv);
        if (st == TH_OK) st = s2;
    }
done:
    if (tmp_dir[0]) distill_shards_discard(tmp_dir, train_path, val_path);
    th_free(c.lines);
    th_free(c.scratch);
    th_free(c.ids);
    th_free(c.logp);
    th_tcache_free(c.cache);
    th_tokenizer_free(tok);
    th_gpt2_free(student);
    th_gpt2_free(c.teacher);
    return st;
}

/* ---------------------------------------------------------------------------------
 * the footprint */

typedef struct {
    const char *name;
    double energy_j; /* NaN: unknown */
    const char *basis;
} part;

static int parts_of(const th_distill_result *r, part *p) {
    int n = 0;
    p[n++] = (part){"student", r->student_j, "the run's ledger: the student's step units"};
    if (r->mode == TH_TEACHER_INLOOP)
        p[n++] = (part){"teacher-inloop", r->teacher.energy_j, "the run's ledger: the teacher's forward units"};
    else
        p[n++] = (part){"teacher-cache-share", r->cache_share_j, "the cache's recorded energy / students sharing it"};
    p[n++] = (part){"teacher-pretraining", r->pretraining_j,
                    isnan(r->pretraining_j) ? "unknown: not given (--teacher-pretraining-kwh)"
                                            : "given (--teacher-pretraining-kwh) x share"};
    return n;
}

static double total_known(const part *p, int n, int *unknown) {
    double t = 0;
    *unknown = 0;
    for (int i = 0; i < n; i++) {
        if (isnan(p[i].energy_j)) (*unknown)++;
        else t += p[i].energy_j;
    }
    return t;
}

th_status th_distill_report_text(const th_distill_result *r, char **text) {
    part p[3];
    int n = parts_of(r, p), unknown;
    double total = total_known(p, n, &unknown);
    size_t cap = 4096;
    char *b = th_alloc(cap);
    if (!b) return th_fail(TH_ERR_NOMEM, "distill report: out of memory");
    size_t len = 0;
#define OUT(...) len += (size_t)snprintf(b + len, len < cap ? cap - len : 0, __VA_ARGS__)
    OUT("== distillation footprint ==\n");
    for (int i = 0; i < n; i++) {
        if (isnan(p[i].energy_j)) {
            OUT("  %-20s unknown (%s)\n", p[i].name, p[i].basis);
            continue;
        }
        OUT("  %-20s %10.1f J  %9.4f g CO2e  %9.3f mL water  (%s)\n", p[i].name, p[i].energy_j,
            p[i].energy_j * r->co2e_g_per_j, p[i].energy_j * r->water_ml_per_j, p[i].basis);
    }
    OUT("  %-20s %10.1f J  %9.4f g CO2e  %9.3f mL water%s\n", "total", total, total * r->co2e_g_per_j,
        total * r->water_ml_per_j, unknown ? "  + the unknown line above (not counted as 0)" : "");
    if (r->mode == TH_TEACHER_INLOOP) {
        OUT("  teacher: %ld forward passes, %.0f tokens, %.3g J/token; per-step lines in %s\n", r->teacher_passes,
            r->teacher_tokens, r->teacher_j_per_token, r->steps_csv);
        if (isfinite(r->break_even_students))
            OUT("  break-even: a cache of the %.0f train tokens would cost ~%.1f J at that rate; it costs less than "
                "the in-loop teacher after %.2f students (%d runs like this one)\n",
                r->cache_tokens, r->cache_estimate_j, r->break_even_students, (int)ceil(r->break_even_students));
    } else {
        OUT("  cache: %.1f J to make over %.0f tokens (%.3g J/token), shared by %g students; this student read %.0f "
            "tokens from it (lookups ~%.2f J)\n", r->cache_j, r->cache_tokens, r->teacher_j_per_token,
            r->cache_j / r->cache_share_j, r->teacher_tokens, r->read_j);
        if (isfinite(r->break_even_students))
            OUT("  break-even: in the loop the teacher would have cost ~%.1f J for this run; the cache pays off after "
                "%.2f students (%d)\n", r->inloop_estimate_j, r->break_even_students, (int)ceil(r->break_even_students));
        else
            OUT("  break-even: never (reading the cache costs as much as the in-loop teacher would)\n");
    }
#undef OUT
    if (len >= cap) { // one retry at the exact size
        th_free(b);
        return th_fail(TH_ERR_NOMEM, "distill report: text too long");
    }
    *text = b;
    return TH_OK;
}

th_status th_distill_write_json(const th_distill_result *r, const char *path) {
    part p[3];
    int n = parts_of(r, p), unknown;
    double total = total_known(p, n, &unknown);
    json_t *doc = json_object(), *lines = json_array();
    if (!doc || !lines) {
        json_decref(doc);
        json_decref(lines);
        return th_fail(TH_ERR_NOMEM, "distill report: out of memory");
    }
    for (int i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(p[i].name));
        json_object_set_new(o, "basis", json_string(p[i].basis));
        if (isnan(p[i].energy_j)) {
            json_object_set_new(o, "energy_j", json_null());
            json_object_set_new(o, "known", json_false());
        } else {
            json_object_set_new(o, "energy_j", json_real(p[i].energy_j));
            json_object_set_new(o, "co2e_g", json_real(p[i].energy_j * r->co2e_g_per_j));
            json_object_set_new(o, "water_ml", json_real(p[i].energy_j * r->water_ml_per_j));
            json_object_set_new(o, "known", json_true());
        }
        json_array_append_new(lines, o);
    }
    json_object_set_new(doc, "lines", lines);
    json_object_set_new(doc, "total_known_j", json_real(total));
    json_object_set_new(doc, "unknown_lines", json_integer(unknown));
    json_object_set_new(doc, "teacher_mode", json_string(r->mode == TH_TEACHER_CACHE ? "cache" : "inloop"));
    json_object_set_new(doc, "teacher_passes", json_integer(r->teacher_passes));
    json_object_set_new(doc, "teacher_tokens", json_real(r->teacher_tokens));
    json_object_set_new(doc, "teacher_j_per_token", isfinite(r->teacher_j_per_token) ? json_real(r->teacher_j_per_token)
                                                                                      : json_null());
    json_object_set_new(doc, "break_even_students", isfinite(r->break_even_students) ? json_real(r->break_even_students)
                                                                                      : json_null());
    json_object_set_new(doc, "teacher_layers", json_integer(r->teacher_cfg.num_layers));
    json_object_set_new(doc, "student_layers", json_integer(r->student_cfg.num_layers));
    json_t *bl = json_array();
    for (int i = 0; i < r->n_layers; i++) json_array_append_new(bl, json_integer(r->layers[i]));
    json_object_set_new(doc, "student_blocks", bl);
    json_object_set_new(doc, "val_loss", isfinite(r->train.train.last_val_loss) ? json_real(r->train.train.last_val_loss)
                                                                                 : json_null());
    json_object_set_new(doc, "steps_csv", json_string(r->steps_csv));
    th_atomic_file *f = NULL;
    th_status st = th_atomic_open(path, &f);
    if (st == TH_OK) {
        if (json_dump_callback(doc, th_atomic_json_sink, f, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0)
            th_atomic_fail(f, th_fail(TH_ERR_NOMEM, "%s: out of memory", path));
        th_atomic_write(f, "\n", 1);
        st = th_atomic_commit(f);
    }
    json_decref(doc);
    return st;
}

th_status th_distill_append_emissions(const th_distill_result *r, const th_eco_factors *factors, const char *path) {
    if (!r->train.have_figures || !r->train.figures.have_energy)
        return th_fail(TH_ERR_STATE, "distill: the run has no energy figure to write to %s", path);
    part p[3];
    int n = parts_of(r, p);
    for (int i = 0; i < n; i++) {
        if (isnan(p[i].energy_j)) continue; // an unknown line has no row: never a row of 0
        th_energy_figure e = r->train.figures.energy;
        e.energy_j = p[i].energy_j;
        double teacher_s = r->teacher.busy_s + r->teacher.idle_s; // the in-loop teacher's units
        if (i == 0) e.duration_s = e.duration_s > teacher_s ? e.duration_s - teacher_s : e.duration_s;
        if (i == 1) e.duration_s = r->mode == TH_TEACHER_CACHE ? 0 : teacher_s;
        if (i == 2) {
            e.basis = TH_ECO_BASIS_ESTIMATE;
            e.duration_s = 0;
            snprintf(e.source, sizeof e.source, "given: --teacher-pretraining-kwh");
        }
        th_eco_footprint fp;
        th_status st = th_eco_footprint_compute(&e, factors, &fp);
        if (st != TH_OK) return st;
        char id[64];
        snprintf(id, sizeof id, "distill:%s", p[i].name);
        th_eco_emissions_row row;
        memset(&row, 0, sizeof row);
        row.project_name = "thermo";
        row.experiment_id = id;
        row.cpu_power_w = row.gpu_power_w = row.ram_power_w = NAN;
        row.cpu_energy_kwh = row.gpu_energy_kwh = row.ram_energy_kwh = NAN;
        row.cpu_utilization_percent = row.ram_utilization_percent = row.ram_used_gb = NAN;
        row.cpu_count = row.gpu_count = row.longitude = row.latitude = row.ram_total_size_gb = NAN;
        if ((st = th_eco_emissions_csv_append(path, &fp, &row)) != TH_OK) return st;
    }
    return TH_OK;
}
