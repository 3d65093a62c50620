/* load.c: session metadata (session.json), read and written (atomically). The telemetry
 * itself is read by sense's reader (th_telemetry_read_opts). */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analyze/analyze_internal.h"

void th_an_fmt(char *dst, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    th_vfmt(dst, n, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------------------------
 * session.json */

void th_session_meta_init(th_session_meta *m) {
    memset(m, 0, sizeof *m);
    m->ambient_c = m->p_idle_w = m->p_max_w = m->r_k_per_w = m->c_j_per_k = NAN;
    m->duration_s = m->hz = NAN;
    m->steps = -1;
    m->modeled = -1;
}

static void get_str(json_t *o, const char *key, char *dst, size_t n) {
    json_t *v = json_object_get(o, key);
    if (json_is_string(v)) th_an_fmt(dst, n, "%s", json_string_value(v));
}

static void get_num(json_t *o, const char *key, double *dst) {
    json_t *v = json_object_get(o, key);
    if (json_is_number(v)) *dst = json_number_value(v);
}

th_status th_session_meta_read(const char *path, th_session_meta *out) {
    json_error_t err;
    json_t *o = json_load_file(path, 0, &err);
    if (!o) {
        FILE *f = fopen(path, "r");
        if (!f) return th_fail(TH_ERR_IO, "%s: cannot open session metadata (%s)", path, strerror(errno));
        fclose(f);
        return th_fail(TH_ERR_FORMAT, "%s:%d: not valid JSON: %s", path, err.line, err.text);
    }
    if (!json_is_object(o)) {
        json_decref(o);
        return th_fail(TH_ERR_FORMAT, "%s: session metadata must be a JSON object", path);
    }
    th_session_meta m;
    th_session_meta_init(&m);
    get_str(o, "id", m.id, sizeof m.id);
    get_str(o, "date", m.date, sizeof m.date);
    get_str(o, "model", m.model, sizeof m.model);
    get_str(o, "profile", m.profile, sizeof m.profile);
    get_str(o, "sensor", m.sensor, sizeof m.sensor);
    get_str(o, "ambient_how", m.ambient_how, sizeof m.ambient_how);
    get_str(o, "stopped_by", m.stopped_by, sizeof m.stopped_by);
    get_num(o, "ambient_c", &m.ambient_c);
    get_num(o, "p_idle_w", &m.p_idle_w);
    get_num(o, "p_max_w", &m.p_max_w);
    get_num(o, "r_k_per_w", &m.r_k_per_w);
    get_num(o, "c_j_per_k", &m.c_j_per_k);
    get_num(o, "duration_s", &m.duration_s);
    get_num(o, "hz", &m.hz);
    json_t *v = json_object_get(o, "steps");
    if (json_is_integer(v)) m.steps = (long)json_integer_value(v);
    v = json_object_get(o, "data");
    if (json_is_string(v)) m.modeled = strcmp(json_string_value(v), "modeled") == 0 ? 1 : 0;
    json_decref(o);
    *out = m;
    return TH_OK;
}

static void set_num(json_t *o, const char *key, double v) {
    json_object_set_new(o, key, isfinite(v) ? json_real(v) : json_null());
}

th_status th_session_meta_write(const char *path, const th_session_meta *m) {
    json_t *o = json_object();
    if (!o) return th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
    json_object_set_new(o, "id", json_string(m->id));
    json_object_set_new(o, "date", json_string(m->date));
    json_object_set_new(o, "model", json_string(m->model));
    set_num(o, "ambient_c", m->ambient_c);
    json_object_set_new(o, "ambient_how", json_string(m->ambient_how));
    json_object_set_new(o, "profile", json_string(m->profile));
    json_object_set_new(o, "sensor", json_string(m->sensor));
    json_object_set_new(o, "data", json_string(m->modeled == 1 ? "modeled" : m->modeled == 0 ? "measured" : "unknown"));
    set_num(o, "p_idle_w", m->p_idle_w);
    set_num(o, "p_max_w", m->p_max_w);
    set_num(o, "r_k_per_w", m->r_k_per_w);
    set_num(o, "c_j_per_k", m->c_j_per_k);
    set_num(o, "duration_s", m->duration_s);
    set_num(o, "hz", m->hz);
    json_object_set_new(o, "steps", json_integer(m->steps));
    json_object_set_new(o, "stopped_by", json_string(m->stopped_by));
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (!text) return th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
    th_status st = th_atomic_write_file(path, text, strlen(text));
    free(text); /* jansson's allocation */
    return st;
}
