/* session.c: the session guard for agent loops (a sequence of `thermo generate` calls
 * sharing an id), after OpenHands' StuckDetector, and its state file: a small JSON
 * document written through th_atomic_file and shared between processes under an flock. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "thermo/guard.h"

th_session_guard_config th_session_guard_defaults(void) {
    th_session_guard_config c = {TH_GUARD_STOP, 4, 3, 6, 8};
    return c;
}

const char *th_session_pattern_name(th_session_pattern p) {
    switch (p) {
    case TH_SESSION_NONE: return "none";
    case TH_SESSION_SAME_OUTPUT: return "same prompt and output";
    case TH_SESSION_SAME_ERROR: return "same error";
    case TH_SESSION_CYCLE: return "cycle";
    }
    return "?";
}

static th_status check_config(const th_session_guard_config *c) {
    if (c->mode != TH_GUARD_OFF && c->mode != TH_GUARD_WARN && c->mode != TH_GUARD_STOP)
        return th_fail(TH_ERR_INVALID, "session guard: mode %d is not stop, warn or off", (int)c->mode);
    if (c->same_output < 2 || c->same_output > TH_SESSION_KEEP)
        return th_fail(TH_ERR_INVALID, "session guard: same_output %d is outside [2, %d]", c->same_output,
                       TH_SESSION_KEEP);
    if (c->same_error < 2 || c->same_error > TH_SESSION_KEEP)
        return th_fail(TH_ERR_INVALID, "session guard: same_error %d is outside [2, %d]", c->same_error,
                       TH_SESSION_KEEP);
    if (c->cycle_events < 4 || c->cycle_events > TH_SESSION_KEEP)
        return th_fail(TH_ERR_INVALID, "session guard: cycle_events %d is outside [4, %d]", c->cycle_events,
                       TH_SESSION_KEEP);
    if (c->max_period < 1 || c->max_period > TH_SESSION_KEEP / 2)
        return th_fail(TH_ERR_INVALID, "session guard: max_period %d is outside [1, %d] (1 = no cycles)",
                       c->max_period, TH_SESSION_KEEP / 2);
    return TH_OK;
}

static int valid_id(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= TH_SESSION_ID_MAX) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e || s[i] == '"' || s[i] == '\\') return 0;
    return 1;
}

th_status th_session_guard_init(th_session_guard *g, const char *session, const th_session_guard_config *cfg) {
    th_session_guard_config c = cfg ? *cfg : th_session_guard_defaults();
    th_status st = check_config(&c);
    if (st != TH_OK) return st;
    if (!valid_id(session))
        return th_fail(TH_ERR_INVALID,
                       "session guard: session id '%s' must be 1..%d printable characters without spaces or quotes",
                       session ? session : "(null)", TH_SESSION_ID_MAX - 1);
    memset(g, 0, sizeof *g);
    g->cfg = c;
    snprintf(g->session, sizeof g->session, "%s", session);
    g->last.loop_start = -1;
    return TH_OK;
}

static int same_event(const th_session_event *a, const th_session_event *b) {
    return a->prompt_hash == b->prompt_hash && a->output_hash == b->output_hash && a->error_hash == b->error_hash;
}

/* Energy of the last k events held. */
static double tail_energy(const th_session_guard *g, int k) {
    double e = 0;
    for (int i = g->n - k; i < g->n; i++) e += g->ev[i].energy_j;
    return e;
}

th_guard_action th_session_guard_record(th_session_guard *g, const th_session_event *e, th_session_verdict *v) {
    const th_session_guard_config *c = &g->cfg;
    if (g->n == TH_SESSION_KEEP) {
        memmove(g->ev, g->ev + 1, sizeof g->ev[0] * (TH_SESSION_KEEP - 1));
        g->n--;
    }
    g->ev[g->n++] = *e;
    g->calls++;
    g->energy_j += e->energy_j;

    th_session_verdict r;
    memset(&r, 0, sizeof r);
    r.calls = g->calls;
    r.session_energy_j = g->energy_j;
    r.loop_start = -1;
    const th_session_event *ev = g->ev;
    int n = g->n;
    if (c->mode != TH_GUARD_OFF) {
        // 1. same prompt and output, period 1: the run of identical events ending now
        int same = 1;
        while (same < n && same_event(&ev[n - 1 - same], &ev[n - 1])) same++;
        // 2. the same error, whatever the prompt
        int errs = 0;
        if (ev[n - 1].error_hash)
            while (errs < n && ev[n - 1 - errs].error_hash == ev[n - 1].error_hash) errs++;
        if (same >= c->same_output && !ev[n - 1].error_hash) {
            r.pattern = TH_SESSION_SAME_OUTPUT;
            r.period = 1;
            r.repeats = same;
        } else if (errs >= c->same_error) {
            r.pattern = TH_SESSION_SAME_ERROR;
            r.period = 1;
            r.repeats = errs;
        } else {
            // 3. cycles of period 2..max_period: ev[i] == ev[i + p] over the last
            //    max(cycle_events, 2p) events, and the cycle is not a shorter one
            for (int p = 2; p <= c->max_period && !r.pattern; p++) {
                int need = c->cycle_events > 2 * p ? c->cycle_events : 2 * p;
                if (n < need) break;
                int run = 0; // events ending now that equal the one p earlier, plus the first p
                while (n - 1 - run - p >= 0 && same_event(&ev[n - 1 - run], &ev[n - 1 - run - p])) run++;
                int len = run + p;
                if (len < need) continue;
                int shorter = 0; // a period that divides p and fits would have fired earlier
                for (int q = 1; q < p && !shorter; q++)
                    if (p % q == 0) {
                        int ok = 1;
                        for (int i = n - p; i < n && ok; i++) ok = same_event(&ev[i], &ev[i - q]);
                        shorter = ok;
                    }
                if (shorter) continue;
                r.pattern = TH_SESSION_CYCLE;
                r.period = p;
                r.repeats = len;
            }
        }
    }
    th_guard_action act = TH_GUARD_CONTINUE;
    if (r.pattern) {
        r.loop_start = g->calls - r.repeats + 1;
        r.loop_energy_j = tail_energy(g, r.repeats);
        act = c->mode == TH_GUARD_STOP ? TH_GUARD_HALT : TH_GUARD_WARNED;
        g->fired++;
        if (r.pattern == TH_SESSION_CYCLE)
            snprintf(r.reason, sizeof r.reason, "session %s: %s of %d calls over %d calls since call %ld (%.6g J burned)",
                     g->session, r.period == 2 ? "alternating A/B cycle" : "cycle", r.period, r.repeats, r.loop_start,
                     r.loop_energy_j);
        else
            snprintf(r.reason, sizeof r.reason, "session %s: %s %d times since call %ld (%.6g J burned)", g->session,
                     th_session_pattern_name(r.pattern), r.repeats, r.loop_start, r.loop_energy_j);
    } else {
        snprintf(r.reason, sizeof r.reason, "session %s: ok after %ld calls (%.6g J)", g->session, g->calls,
                 g->energy_j);
    }
    r.action = act;
    g->last = r;
    if (v) *v = r;
    return act;
}

/* ---------------------------------------------------------------------------------
 * the state file */

static json_t *hex_or_null(uint64_t h) {
    if (!h) return json_null();
    char buf[17];
    snprintf(buf, sizeof buf, "%016" PRIx64, h);
    return json_string(buf);
}

/* Sets o[k] = v, stealing v in every case; 0 if o or v is NULL or memory ran out. */
static int put(json_t *o, const char *k, json_t *v) {
    if (!o) {
        json_decref(v);
        return 0;
    }
    return v && json_object_set_new(o, k, v) == 0;
}

/* The state as a JSON document, or NULL if memory ran out (never a document missing keys). */
static json_t *to_json(const th_session_guard *g) {
    json_t *root = json_object(), *cfg = json_object(), *evs = json_array(), *last = json_object();
    int ok = put(root, "format", json_string("thermo-session-guard"));
    ok &= put(root, "version", json_integer(1));
    ok &= put(root, "session", json_string(g->session));
    ok &= put(root, "calls", json_integer(g->calls));
    ok &= put(root, "energy_j", json_real(g->energy_j));
    ok &= put(root, "fired", json_integer(g->fired));
    ok &= put(cfg, "mode", json_string(th_guard_mode_name(g->cfg.mode)));
    ok &= put(cfg, "same_output", json_integer(g->cfg.same_output));
    ok &= put(cfg, "same_error", json_integer(g->cfg.same_error));
    ok &= put(cfg, "cycle_events", json_integer(g->cfg.cycle_events));
    ok &= put(cfg, "max_period", json_integer(g->cfg.max_period));
    for (int i = 0; i < g->n && ok; i++) {
        json_t *e = json_object();
        ok &= put(e, "prompt", hex_or_null(g->ev[i].prompt_hash));
        ok &= put(e, "output", hex_or_null(g->ev[i].output_hash));
        ok &= put(e, "error", hex_or_null(g->ev[i].error_hash));
        ok &= put(e, "energy_j", json_real(g->ev[i].energy_j));
        ok &= e && json_array_append_new(evs, e) == 0;
    }
    ok &= put(last, "action", json_string(th_guard_action_name(g->last.action)));
    ok &= put(last, "pattern", json_string(th_session_pattern_name(g->last.pattern)));
    ok &= put(last, "period", json_integer(g->last.period));
    ok &= put(last, "repeats", json_integer(g->last.repeats));
    ok &= put(last, "loop_start", json_integer(g->last.loop_start));
    ok &= put(last, "loop_energy_j", json_real(g->last.loop_energy_j));
    ok &= put(last, "reason", json_string(g->last.reason));
    /* the children go in last so that a failure above can still free each of them once */
    ok &= put(root, "config", json_incref(cfg));
    ok &= put(root, "events", json_incref(evs));
    ok &= put(root, "last", json_incref(last));
    json_decref(cfg);
    json_decref(evs);
    json_decref(last);
    if (!ok) {
        json_decref(root);
        return NULL;
    }
    return root;
}

th_status th_session_guard_save(const th_session_guard *g, const char *path) {
    json_t *root = to_json(g);
    if (!root) return th_fail(TH_ERR_NOMEM, "%s: out of memory for the session state", path);
    th_atomic_file *f;
    th_status st = th_atomic_open(path, &f);
    if (st == TH_OK) {
        if (json_dump_callback(root, th_atomic_json_sink, f, JSON_INDENT(1) | JSON_PRESERVE_ORDER) != 0)
            th_atomic_fail(f, th_fail(TH_ERR_NOMEM, "%s: out of memory writing the session state", path));
        th_atomic_write(f, "\n", 1);
        st = th_atomic_commit(f);
    }
    json_decref(root);
    return st;
}

static int get_hex(json_t *v, uint64_t *out) {
    if (json_is_null(v)) {
        *out = 0;
        return 1;
    }
    const char *s = json_string_value(v);
    if (!s || strlen(s) != 16) return 0;
    uint64_t h = 0;
    for (int i = 0; i < 16; i++) {
        char ch = s[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
        if (d < 0) return 0;
        h = h << 4 | (uint64_t)d;
    }
    *out = h;
    return h != 0;
}

static int get_int(json_t *o, const char *k, long lo, long hi, long *out) {
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v)) return 0;
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) return 0;
    *out = (long)x;
    return 1;
}

static int get_num(json_t *o, const char *k, double *out) {
    json_t *v = json_object_get(o, k);
    if (!json_is_number(v)) return 0;
    double x = json_number_value(v);
    if (!isfinite(x) || x < 0) return 0;
    *out = x;
    return 1;
}

th_status th_session_guard_load(th_session_guard *out, const char *path) {
    json_error_t err;
    FILE *f = fopen(path, "rb");
    if (!f) return th_fail(TH_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &err);
    fclose(f);
    if (!root)
        return th_fail(json_error_code(&err) == json_error_out_of_memory ? TH_ERR_NOMEM : TH_ERR_FORMAT,
                       "%s: line %d: %s", path, err.line, err.text);
    th_session_guard g;
    const char *bad = NULL;
    long x;
    json_t *cfg = json_object_get(root, "config"), *evs = json_object_get(root, "events");
    const char *fmt = json_string_value(json_object_get(root, "format"));
    const char *sess = json_string_value(json_object_get(root, "session"));
    th_session_guard_config c;
    long so = 0, se = 0, ce = 0, mp = 0;
    if (!json_is_object(root)) bad = "the top level (not an object)";
    else if (!fmt || strcmp(fmt, "thermo-session-guard") != 0) bad = "format";
    else if (!get_int(root, "version", 1, 1, &x)) bad = "version (this build reads 1)";
    else if (!json_is_object(cfg)) bad = "config";
    else if (th_guard_mode_parse(json_string_value(json_object_get(cfg, "mode")), &c.mode) != TH_OK) bad = "config.mode";
    else if (!get_int(cfg, "same_output", 0, 1000, &so)) bad = "config.same_output";
    else if (!get_int(cfg, "same_error", 0, 1000, &se)) bad = "config.same_error";
    else if (!get_int(cfg, "cycle_events", 0, 1000, &ce)) bad = "config.cycle_events";
    else if (!get_int(cfg, "max_period", 0, 1000, &mp)) bad = "config.max_period";
    if (!bad) {
        c.same_output = (int)so, c.same_error = (int)se, c.cycle_events = (int)ce, c.max_period = (int)mp;
        if (th_session_guard_init(&g, sess, &c) != TH_OK) bad = "session or config values";
        else if (!get_int(root, "calls", 0, 1L << 53, &g.calls)) bad = "calls";
        else if (!get_num(root, "energy_j", &g.energy_j)) bad = "energy_j";
        else if (!get_int(root, "fired", 0, g.calls, &g.fired)) bad = "fired";
        else if (!json_is_array(evs) || json_array_size(evs) > TH_SESSION_KEEP || (long)json_array_size(evs) > g.calls)
            bad = "events (an array of at most 32, no more than calls)";
    }
    if (!bad) {
        g.n = (int)json_array_size(evs);
        for (int i = 0; i < g.n && !bad; i++) {
            json_t *e = json_array_get(evs, (size_t)i);
            th_session_event *d = &g.ev[i];
            if (!json_is_object(e) || !get_hex(json_object_get(e, "prompt"), &d->prompt_hash) ||
                !get_hex(json_object_get(e, "output"), &d->output_hash) ||
                (!get_hex(json_object_get(e, "error"), &d->error_hash) && !json_is_null(json_object_get(e, "error"))) ||
                !get_num(e, "energy_j", &d->energy_j))
                bad = "events[] (prompt and output: 16 lowercase hex digits, error: the same or null, energy_j >= 0)";
        }
    }
    if (!bad) {
        // the verdict of the last call is informative only: keep its text when present
        json_t *last = json_object_get(root, "last");
        const char *reason = json_is_object(last) ? json_string_value(json_object_get(last, "reason")) : NULL;
        if (reason) snprintf(g.last.reason, sizeof g.last.reason, "%s", reason);
        const char *pat = json_is_object(last) ? json_string_value(json_object_get(last, "pattern")) : NULL;
        for (int p = TH_SESSION_NONE; pat && p <= TH_SESSION_CYCLE; p++)
            if (strcmp(pat, th_session_pattern_name((th_session_pattern)p)) == 0) g.last.pattern = (th_session_pattern)p;
        g.last.calls = g.calls;
        g.last.session_energy_j = g.energy_j;
    }
    json_decref(root);
    if (bad) return th_fail(TH_ERR_FORMAT, "%s: bad or missing %s", path, bad);
    *out = g;
    return TH_OK;
}

th_status th_session_guard_record_file(const char *path, const char *session, const th_session_guard_config *cfg,
                                       const th_session_event *e, th_session_verdict *v, th_session_guard *gout) {
    char lock[4096];
    if (snprintf(lock, sizeof lock, "%s.lock", path) >= (int)sizeof lock)
        return th_fail(TH_ERR_INVALID, "%s: path too long", path);
    int lfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lfd < 0) return th_fail(TH_ERR_IO, "%s: cannot open the lock file: %s", lock, strerror(errno));
    while (flock(lfd, LOCK_EX) != 0)
        if (errno != EINTR) {
            close(lfd);
            return th_fail(TH_ERR_IO, "%s: cannot lock: %s", lock, strerror(errno));
        }
    th_session_guard g;
    th_status st;
    if (access(path, F_OK) == 0) {
        st = th_session_guard_load(&g, path);
        if (st == TH_OK && strcmp(g.session, session) != 0)
            st = th_fail(TH_ERR_INVALID, "%s holds session '%s', not '%s'", path, g.session, session);
    } else {
        st = th_session_guard_init(&g, session, cfg);
    }
    if (st == TH_OK) {
        th_session_guard_record(&g, e, v);
        st = th_session_guard_save(&g, path);
    }
    if (st == TH_OK && gout) *gout = g;
    flock(lfd, LOCK_UN);
    close(lfd);
    return st;
}
