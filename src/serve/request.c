/* request.c: the POST /v1/completions body, parsed and checked field by field (jansson),
 * so that every bad input is refused with a message and the name of the field at fault,
 * before the model sees anything. Also the UTF-8 check streamed text needs. */
#include <math.h>
#include <string.h>

#include <jansson.h>

#include "thermo/serve.h"

size_t th_utf8_valid_prefix(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n) return i;
        unsigned cp = len == 1 ? c : len == 2 ? c & 0x1F : len == 3 ? c & 0x0F : c & 0x07;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        // overlong forms, surrogates and code points past U+10FFFF are not UTF-8
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return i;
        i += len;
    }
    return i;
}

void th_serve_request_free(th_serve_request *r) {
    if (!r) return;
    th_free(r->prompt_text);
    th_free(r->prompt_ids);
    memset(r, 0, sizeof *r);
}

static th_status bad(char *param, size_t param_len, const char *field, th_status st, const char *msg) {
    snprintf(param, param_len, "%s", field);
    return th_fail(st, "%s%s%s", field, *field ? ": " : "", msg);
}

/* A value that is absent or JSON null counts as not given. */
static json_t *field(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return v && !json_is_null(v) ? v : NULL;
}

static th_status parse_ids(json_t *a, const th_serve_limits *lim, th_serve_request *out, char *param, size_t pl) {
    size_t n = json_array_size(a);
    if (n == 0) return bad(param, pl, "prompt", TH_ERR_INVALID, "an empty list of token ids");
    if (n > lim->max_prompt_ids)
        return bad(param, pl, "prompt", TH_ERR_INVALID, "more token ids than the context holds");
    out->prompt_ids = th_alloc(n * sizeof(int));
    if (!out->prompt_ids) return bad(param, pl, "prompt", TH_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(a, i);
        if (!json_is_integer(x)) return bad(param, pl, "prompt", TH_ERR_INVALID, "token ids must be integers");
        json_int_t id = json_integer_value(x);
        if (id < 0 || id >= lim->vocab_size) {
            snprintf(param, pl, "prompt");
            return th_fail(TH_ERR_INVALID, "prompt: token id %lld at index %zu is outside [0, %d)", (long long)id, i,
                           lim->vocab_size);
        }
        out->prompt_ids[i] = (int)id;
    }
    out->n_prompt_ids = n;
    return TH_OK;
}

static th_status parse_prompt(json_t *p, const th_serve_limits *lim, th_serve_request *out, char *param, size_t pl) {
    if (json_is_array(p) && json_array_size(p) == 1 && !json_is_integer(json_array_get(p, 0)))
        p = json_array_get(p, 0); // ["text"] or [[ids]]: one prompt
    if (json_is_string(p)) {
        size_t n = json_string_length(p);
        out->prompt_text = th_alloc(n + 1);
        if (!out->prompt_text) return bad(param, pl, "prompt", TH_ERR_NOMEM, "out of memory");
        memcpy(out->prompt_text, json_string_value(p), n);
        out->prompt_text[n] = 0;
        out->prompt_len = n;
        return TH_OK;
    }
    if (json_is_array(p)) {
        if (json_array_size(p) > 0 && !json_is_integer(json_array_get(p, 0)))
            return bad(param, pl, "prompt", TH_ERR_INVALID, "one prompt per request (n = 1): a string or token ids");
        return parse_ids(p, lim, out, param, pl);
    }
    return bad(param, pl, "prompt", TH_ERR_INVALID, "must be a string or an array of token ids");
}

static th_status parse_number(json_t *o, const char *k, double lo, double hi, double *dst, char *param, size_t pl) {
    json_t *v = field(o, k);
    if (!v) return TH_OK;
    if (!json_is_number(v)) return bad(param, pl, k, TH_ERR_INVALID, "must be a number");
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) {
        snprintf(param, pl, "%s", k);
        return th_fail(TH_ERR_INVALID, "%s: %g is outside [%g, %g]", k, x, lo, hi);
    }
    *dst = x;
    return TH_OK;
}

static th_status parse_int(json_t *o, const char *k, long long lo, long long hi, long long *dst, char *param,
                           size_t pl) {
    json_t *v = field(o, k);
    if (!v) return TH_OK;
    if (!json_is_integer(v)) return bad(param, pl, k, TH_ERR_INVALID, "must be an integer");
    long long x = json_integer_value(v);
    if (x < lo || x > hi) {
        snprintf(param, pl, "%s", k);
        return th_fail(TH_ERR_INVALID, "%s: %lld is outside [%lld, %lld]", k, x, lo, hi);
    }
    *dst = x;
    return TH_OK;
}

static th_status parse_stop(json_t *v, th_serve_request *out, char *param, size_t pl) {
    json_t *one[1] = {v};
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (!json_is_array(v) && !json_is_string(v))
        return bad(param, pl, "stop", TH_ERR_INVALID, "must be a string or an array of strings");
    if (n > TH_SERVE_MAX_STOP) return bad(param, pl, "stop", TH_ERR_INVALID, "at most 4 stop sequences");
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_array(v) ? json_array_get(v, i) : one[0];
        if (!json_is_string(s)) return bad(param, pl, "stop", TH_ERR_INVALID, "stop sequences must be strings");
        size_t len = json_string_length(s);
        if (len == 0 || len > TH_SERVE_MAX_STOP_BYTES)
            return bad(param, pl, "stop", TH_ERR_INVALID, "each stop sequence must be 1 to 64 bytes");
        memcpy(out->stop[out->n_stop], json_string_value(s), len);
        out->stop[out->n_stop++][len] = 0;
    }
    return TH_OK;
}

th_status th_serve_parse_completion(const char *body, size_t len, const th_serve_limits *lim,
                                    th_serve_request *out, char *param, size_t param_len) {
    memset(out, 0, sizeof *out);
    out->max_tokens = 16;
    out->temperature = 1.0;
    out->top_p = 1.0;
    if (param_len) param[0] = 0;
    json_error_t err;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    if (!root) {
        snprintf(param, param_len, "%s", "");
        return th_fail(TH_ERR_FORMAT, "body: not valid JSON (%s at byte %d)", err.text, err.position);
    }
    th_status st = TH_OK;
    long long x;
    if (!json_is_object(root)) {
        st = bad(param, param_len, "", TH_ERR_FORMAT, "the body must be a JSON object");
        goto done;
    }
    json_t *v;
    if ((v = field(root, "model"))) {
        if (!json_is_string(v) || json_string_length(v) >= sizeof out->model) {
            st = bad(param, param_len, "model", TH_ERR_INVALID, "must be a string of under 128 bytes");
            goto done;
        }
        snprintf(out->model, sizeof out->model, "%s", json_string_value(v));
    }
    if (!(v = field(root, "prompt"))) {
        st = bad(param, param_len, "prompt", TH_ERR_INVALID, "is required");
        goto done;
    }
    if ((st = parse_prompt(v, lim, out, param, param_len)) != TH_OK) goto done;
    x = out->max_tokens;
    if ((st = parse_int(root, "max_tokens", 1, lim->max_tokens, &x, param, param_len)) != TH_OK) goto done;
    out->max_tokens = (long)x;
    if ((st = parse_number(root, "temperature", 0, 2, &out->temperature, param, param_len)) != TH_OK) goto done;
    if ((st = parse_number(root, "top_p", 1e-6, 1, &out->top_p, param, param_len)) != TH_OK) goto done;
    x = 0;
    if ((st = parse_int(root, "top_k", 0, 1 << 24, &x, param, param_len)) != TH_OK) goto done;
    out->top_k = (long)x;
    x = -1;
    if ((st = parse_int(root, "seed", 0, (long long)0x7fffffffffffffffLL, &x, param, param_len)) != TH_OK) goto done;
    out->has_seed = x >= 0;
    out->seed = out->has_seed ? (uint64_t)x : 0;
    x = 1;
    if ((st = parse_int(root, "n", 1, 1, &x, param, param_len)) != TH_OK) goto done;
    x = 0;
    if ((st = parse_int(root, "logprobs", 0, 5, &x, param, param_len)) != TH_OK) goto done;
    out->logprobs = (int)x;
    if ((v = field(root, "stream"))) {
        if (!json_is_boolean(v)) {
            st = bad(param, param_len, "stream", TH_ERR_INVALID, "must be true or false");
            goto done;
        }
        out->stream = json_is_true(v);
    }
    if ((v = field(root, "stop")) && (st = parse_stop(v, out, param, param_len)) != TH_OK) goto done;
done:
    json_decref(root);
    if (st != TH_OK) {
        char keep[64];
        snprintf(keep, sizeof keep, "%s", param_len ? param : "");
        th_serve_request_free(out);
        if (param_len) snprintf(param, param_len, "%s", keep);
    }
    return st;
}
