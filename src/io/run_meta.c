/* run_meta.c: the typed run metadata a checkpoint carries (the settings a resume reuses and
 * the last validation loss the eco-benchmark compares against), and its JSON form inside
 * the checkpoint. One schema, owned here: training writes it, resume and evaluation read it. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "thermo/io.h"

th_run_meta th_run_meta_empty(void) {
    th_run_meta m;
    memset(&m, 0, sizeof m);
    m.last_val_loss = NAN;
    snprintf(m.tokenizer, sizeof m.tokenizer, "gpt2");
    return m;
}

th_status th_run_meta_to_json(const th_run_meta *m, char *buf, size_t cap) {
    json_t *o = json_object();
    if (!o) return th_fail(TH_ERR_NOMEM, "run metadata: out of memory");
    json_object_set_new(o, "tokenizer", json_string(m->tokenizer));
    struct { const char *key; uint32_t bit; json_int_t v; } ints[] = {
        {"steps", TH_META_STEPS, m->steps},   {"batch", TH_META_BATCH, m->batch},
        {"seq", TH_META_SEQ, m->seq},         {"grad_accum", TH_META_GRAD_ACCUM, m->grad_accum},
        {"warmup", TH_META_WARMUP, m->warmup}, {"seed", TH_META_SEED, (json_int_t)m->seed}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if (m->has & ints[i].bit) json_object_set_new(o, ints[i].key, json_integer(ints[i].v));
    struct { const char *key; uint32_t bit; double v; } reals[] = {
        {"lr", TH_META_LR, m->lr}, {"weight_decay", TH_META_WEIGHT_DECAY, m->weight_decay},
        {"grad_clip", TH_META_GRAD_CLIP, m->grad_clip}};
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++)
        if (m->has & reals[i].bit) json_object_set_new(o, reals[i].key, json_real(reals[i].v));
    if (m->has & TH_META_PRECISION) json_object_set_new(o, "precision", json_string(m->precision ? "bf16" : "f32"));
    if (isfinite(m->last_val_loss)) json_object_set_new(o, "last_val_loss", json_real(m->last_val_loss));
    char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(17));
    json_decref(o);
    if (!text) return th_fail(TH_ERR_NOMEM, "run metadata: out of memory");
    size_t len = strlen(text);
    th_status st = TH_OK;
    if (len + 1 > cap) st = th_fail(TH_ERR_INVALID, "run metadata: %zu bytes do not fit in %zu", len, cap);
    else memcpy(buf, text, len + 1);
    free(text);
    return st;
}

th_status th_run_meta_parse(const char *json, const char *where, th_run_meta *out) {
    *out = th_run_meta_empty();
    json_error_t jerr;
    json_t *o = json_loads(json, 0, &jerr);
    th_status st = TH_OK;
    if (!json_is_object(o)) {
        st = th_fail(TH_ERR_FORMAT, "%s: the run metadata is not a JSON object (%s)", where,
                     json ? jerr.text : "absent");
        goto done;
    }
    json_t *tk = json_object_get(o, "tokenizer");
    if (json_is_string(tk)) snprintf(out->tokenizer, sizeof out->tokenizer, "%s", json_string_value(tk));
    struct { const char *key; uint32_t bit; long lo, hi; } ints[] = {
        {"steps", TH_META_STEPS, 1, 100000000},  {"batch", TH_META_BATCH, 1, 65536},
        {"seq", TH_META_SEQ, 1, 1 << 20},         {"grad_accum", TH_META_GRAD_ACCUM, 1, 65536},
        {"warmup", TH_META_WARMUP, 0, 100000000}, {"seed", TH_META_SEED, 0, 0x7fffffffffffffffL}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] && st == TH_OK; i++) {
        json_t *v = json_object_get(o, ints[i].key);
        if (!v) continue;
        json_int_t x = json_is_integer(v) ? json_integer_value(v) : -1;
        if (!json_is_integer(v) || x < ints[i].lo || x > ints[i].hi) {
            st = th_fail(TH_ERR_FORMAT, "%s: run metadata field %s must be an integer in %ld..%ld", where, ints[i].key,
                         ints[i].lo, ints[i].hi);
            break;
        }
        out->has |= ints[i].bit;
        switch (ints[i].bit) {
        case TH_META_STEPS: out->steps = (long)x; break;
        case TH_META_BATCH: out->batch = (int)x; break;
        case TH_META_SEQ: out->seq = (int)x; break;
        case TH_META_GRAD_ACCUM: out->grad_accum = (int)x; break;
        case TH_META_WARMUP: out->warmup = (int)x; break;
        default: out->seed = (uint64_t)x; break;
        }
    }
    struct { const char *key; uint32_t bit; double *dst; double hi; } reals[] = {
        {"lr", TH_META_LR, &out->lr, 10}, {"weight_decay", TH_META_WEIGHT_DECAY, &out->weight_decay, 10},
        {"grad_clip", TH_META_GRAD_CLIP, &out->grad_clip, 1e9}, {"last_val_loss", 0, &out->last_val_loss, 1e9}};
    for (size_t i = 0; i < sizeof reals / sizeof reals[0] && st == TH_OK; i++) {
        json_t *v = json_object_get(o, reals[i].key);
        if (!v) continue;
        double x = json_is_number(v) ? json_number_value(v) : -1;
        if (!json_is_number(v) || !(x >= 0 && x <= reals[i].hi)) {
            st = th_fail(TH_ERR_FORMAT, "%s: run metadata field %s must be a number in 0..%g", where, reals[i].key,
                         reals[i].hi);
            break;
        }
        *reals[i].dst = x;
        out->has |= reals[i].bit;
    }
    json_t *pr = json_object_get(o, "precision");
    if (st == TH_OK && pr) {
        const char *v = json_is_string(pr) ? json_string_value(pr) : "";
        if (strcmp(v, "f32") != 0 && strcmp(v, "bf16") != 0) {
            st = th_fail(TH_ERR_FORMAT, "%s: run metadata field precision must be \"f32\" or \"bf16\"", where);
        } else {
            out->precision = strcmp(v, "bf16") == 0;
            out->has |= TH_META_PRECISION;
        }
    }
done:
    json_decref(o);
    if (st != TH_OK) *out = th_run_meta_empty();
    return st;
}
