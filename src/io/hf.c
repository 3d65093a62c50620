/* hf.c: Hugging Face GPT-2 directories (config.json + model.safetensors) in and out.
 * HF names each layer's tensors separately and stores Conv1D weights (in, out); our
 * parameter block stacks layers and stores (out, in), so both directions go through the
 * one name table below, transposing the four matmul weights. */
#include "io/io_internal.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---------------------------------------------------------------------------------
 * the name table */

static const struct {
    const char *name; /* printf pattern; "%d" is the layer */
    int which;        /* TH_P_* */
    int transpose;    /* HF stores the (in, out) transpose of our slice */
} hf_names[TH_P_NUM] = {
    {"wte.weight", TH_P_WTE, 0},
    {"wpe.weight", TH_P_WPE, 0},
    {"h.%d.ln_1.weight", TH_P_LN1W, 0},
    {"h.%d.ln_1.bias", TH_P_LN1B, 0},
    {"h.%d.attn.c_attn.weight", TH_P_QKVW, 1},
    {"h.%d.attn.c_attn.bias", TH_P_QKVB, 0},
    {"h.%d.attn.c_proj.weight", TH_P_ATTPROJW, 1},
    {"h.%d.attn.c_proj.bias", TH_P_ATTPROJB, 0},
    {"h.%d.ln_2.weight", TH_P_LN2W, 0},
    {"h.%d.ln_2.bias", TH_P_LN2B, 0},
    {"h.%d.mlp.c_fc.weight", TH_P_FCW, 1},
    {"h.%d.mlp.c_fc.bias", TH_P_FCB, 0},
    {"h.%d.mlp.c_proj.weight", TH_P_FCPROJW, 1},
    {"h.%d.mlp.c_proj.bias", TH_P_FCPROJB, 0},
    {"ln_f.weight", TH_P_LNFW, 0},
    {"ln_f.bias", TH_P_LNFB, 0},
};

#define NAME_MAX_LEN 96

/* One HF tensor: where it goes in our block and the shape HF gives it. */
typedef struct {
    char name[NAME_MAX_LEN]; /* without prefix */
    int which, transpose;
    size_t offset, count;    /* floats in our block */
    int ndim;
    uint64_t shape[2];
} hf_slot;

static int is_layered(int which) { return which != TH_P_WTE && which != TH_P_WPE &&
                                          which != TH_P_LNFW && which != TH_P_LNFB; }

/* Fills slots (capacity 4 + 12·L) in file order; returns how many. */
static int hf_slots(const th_gpt2_config *cfg, hf_slot *slots) {
    int n = 0;
    int L = cfg->num_layers;
    for (int pass = 0; pass < 3; pass++) { /* embeddings, layers, final norm: HF's order */
        for (int l = 0; l < (pass == 1 ? L : 1); l++) {
            for (int k = 0; k < TH_P_NUM; k++) {
                int which = hf_names[k].which;
                int layered = is_layered(which);
                if ((pass == 1) != layered) continue;
                if (pass == 0 && which != TH_P_WTE && which != TH_P_WPE) continue;
                if (pass == 2 && which != TH_P_LNFW && which != TH_P_LNFB) continue;
                th_tensor_info ti;
                th_gpt2_tensor_info(cfg, which, &ti);
                hf_slot *s = &slots[n++];
                snprintf(s->name, sizeof s->name, hf_names[k].name, l);
                s->which = which;
                s->transpose = hf_names[k].transpose;
                if (layered) {
                    s->count = ti.count / (size_t)L;
                    s->offset = ti.offset + (size_t)l * s->count;
                    s->ndim = ti.ndim - 1;
                    if (s->transpose) {
                        s->shape[0] = (uint64_t)ti.shape[2];
                        s->shape[1] = (uint64_t)ti.shape[1];
                    } else {
                        s->shape[0] = (uint64_t)ti.shape[1];
                        s->shape[1] = (uint64_t)ti.shape[2];
                    }
                } else {
                    s->count = ti.count;
                    s->offset = ti.offset;
                    s->ndim = ti.ndim;
                    s->shape[0] = (uint64_t)ti.shape[0];
                    s->shape[1] = (uint64_t)ti.shape[1];
                }
            }
        }
    }
    return n;
}

/* h.N.attn.bias and h.N.attn.masked_bias: the causal-mask buffers older transformers
 * saved. Only layers that exist count; a buffer for layer 7 of a 6-layer model means
 * the config and the weights disagree, and is reported as unknown. */
static int is_mask_buffer(const char *name, int L) {
    if (strncmp(name, "h.", 2) != 0) return 0;
    char *end;
    errno = 0;
    long l = strtol(name + 2, &end, 10);
    if (end == name + 2 || errno || l < 0 || l >= L) return 0;
    return strcmp(end, ".attn.bias") == 0 || strcmp(end, ".attn.masked_bias") == 0;
}

static void format_shape(char *buf, size_t cap, int ndim, const uint64_t *shape) {
    size_t at = 0;
    at += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && at < cap; i++)
        at += (size_t)snprintf(buf + at, cap - at, "%s%llu", i ? ", " : "",
                               (unsigned long long)shape[i]);
    if (at < cap) snprintf(buf + at, cap - at, "]");
}

/* ---------------------------------------------------------------------------------
 * config.json */

static th_status load_json_file(const char *path, json_t **out) {
    FILE *f;
    uint64_t size;
    th_status s = th_rfile_open(path, &f, &size);
    if (s != TH_OK) return s;
    if (size > 16u << 20) {
        fclose(f);
        return th_fail(TH_ERR_FORMAT, "%s: %llu bytes is too large for a config file", path,
                       (unsigned long long)size);
    }
    json_error_t err;
    json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &err);
    fclose(f);
    if (!root)
        return th_fail(TH_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", path, err.text,
                       err.line, err.column);
    if (!json_is_object(root)) {
        json_decref(root);
        return th_fail(TH_ERR_FORMAT, "%s: not a JSON object", path);
    }
    *out = root;
    return TH_OK;
}

static th_status get_int(const char *path, json_t *root, const char *key, int *out) {
    json_t *v = json_object_get(root, key);
    if (!v) return th_fail(TH_ERR_FORMAT, "%s: missing \"%s\"", path, key);
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > INT32_MAX)
        return th_fail(TH_ERR_FORMAT, "%s: \"%s\" is not a positive integer", path, key);
    *out = (int)json_integer_value(v);
    return TH_OK;
}

th_status th_hf_read_config(const char *path, th_gpt2_config *cfg) {
    json_t *root = NULL;
    th_status s = load_json_file(path, &root);
    if (s != TH_OK) return s;
    th_gpt2_config c = {0};
    json_t *v;
    if ((v = json_object_get(root, "model_type")) && !(json_is_string(v) &&
                                                       strcmp(json_string_value(v), "gpt2") == 0)) {
        s = th_fail(TH_ERR_UNSUPPORTED, "%s: model_type is not \"gpt2\"", path);
        goto done;
    }
    if ((v = json_object_get(root, "activation_function")) &&
        !(json_is_string(v) && (strcmp(json_string_value(v), "gelu_new") == 0 ||
                                strcmp(json_string_value(v), "gelu_pytorch_tanh") == 0))) {
        s = th_fail(TH_ERR_UNSUPPORTED,
                    "%s: activation_function must be gelu_new (GPT-2's tanh GELU) for this engine",
                    path);
        goto done;
    }
    if ((s = get_int(path, root, "n_layer", &c.num_layers)) != TH_OK ||
        (s = get_int(path, root, "n_head", &c.num_heads)) != TH_OK ||
        (s = get_int(path, root, "n_embd", &c.channels)) != TH_OK ||
        (s = get_int(path, root, "vocab_size", &c.vocab_size)) != TH_OK)
        goto done;
    s = get_int(path, root, json_object_get(root, "n_positions") ? "n_positions" : "n_ctx",
                &c.max_seq_len);
    if (s != TH_OK) goto done;
    if ((v = json_object_get(root, "n_inner")) && !json_is_null(v) &&
        !(json_is_integer(v) && json_integer_value(v) == 4 * (json_int_t)c.channels)) {
        s = th_fail(TH_ERR_UNSUPPORTED, "%s: n_inner must be null or 4 × n_embd = %lld", path,
                    4 * (long long)c.channels);
        goto done;
    }
    c.ln_eps = 1e-5f;
    if ((v = json_object_get(root, "layer_norm_epsilon"))) {
        if (!json_is_number(v)) {
            s = th_fail(TH_ERR_FORMAT, "%s: layer_norm_epsilon is not a number", path);
            goto done;
        }
        c.ln_eps = (float)json_number_value(v);
    }
    if ((s = th_io_check_config(path, &c)) != TH_OK) goto done;
    *cfg = c;
done:
    json_decref(root);
    return s;
}

/* ---------------------------------------------------------------------------------
 * load */

th_status th_hf_load_files(const char *config_path, const char *st_path, th_gpt2 **out,
                           th_model_info *info) {
    th_gpt2_config cfg;
    th_status s = th_hf_read_config(config_path, &cfg);
    if (s != TH_OK) return s;

    th_safetensors *st = NULL;
    hf_slot *slots = NULL;
    const th_st_tensor **found = NULL;
    th_gpt2 *m = NULL;
    if ((s = th_safetensors_open(st_path, &st)) != TH_OK) return s;

    const char *prefix;
    if (th_safetensors_find(st, "transformer.wte.weight")) prefix = "transformer.";
    else if (th_safetensors_find(st, "wte.weight")) prefix = "";
    else {
        s = th_fail(TH_ERR_FORMAT, "%s: no wte.weight or transformer.wte.weight: not a GPT-2 model",
                    st_path);
        goto done;
    }
    size_t plen = strlen(prefix);

    int nslots_max = 4 + 12 * cfg.num_layers;
    slots = th_calloc((size_t)nslots_max, sizeof *slots);
    found = th_calloc((size_t)nslots_max, sizeof *found);
    if (!slots || !found) {
        s = th_fail(TH_ERR_NOMEM, "%s: out of memory for the tensor table", st_path);
        goto done;
    }
    int nslots = hf_slots(&cfg, slots);

    /* Classify every tensor in the file before allocating the model. */
    const th_st_tensor *lm_head = NULL;
    int ignored = 0;
    for (int i = 0; i < th_safetensors_count(st); i++) {
        const th_st_tensor *t = th_safetensors_tensor(st, i);
        if (strcmp(t->name, "lm_head.weight") == 0 ||
            (plen && strcmp(t->name, "transformer.lm_head.weight") == 0)) {
            lm_head = t;
            ignored++;
            continue;
        }
        if (strncmp(t->name, prefix, plen) != 0) {
            s = th_fail(TH_ERR_FORMAT, "%s: unknown tensor %s (other tensors are named \"%s...\")",
                        st_path, t->name, prefix);
            goto done;
        }
        const char *bare = t->name + plen;
        if (is_mask_buffer(bare, cfg.num_layers)) {
            ignored++;
            continue;
        }
        int k = 0;
        while (k < nslots && strcmp(slots[k].name, bare) != 0) k++;
        if (k == nslots) {
            s = th_fail(TH_ERR_FORMAT, "%s: unknown tensor %s (%s says n_layer = %d)", st_path,
                        t->name, config_path, cfg.num_layers);
            goto done;
        }
        found[k] = t;
    }
    char want[96], got[96];
    const char *dtype = NULL;
    for (int k = 0; k < nslots; k++) {
        const th_st_tensor *t = found[k];
        if (!t) {
            s = th_fail(TH_ERR_FORMAT, "%s: missing tensor %s%s (%s says n_layer = %d)", st_path,
                        prefix, slots[k].name, config_path, cfg.num_layers);
            goto done;
        }
        if (t->ndim != slots[k].ndim || t->shape[0] != slots[k].shape[0] ||
            (t->ndim > 1 && t->shape[1] != slots[k].shape[1])) {
            format_shape(want, sizeof want, slots[k].ndim, slots[k].shape);
            format_shape(got, sizeof got, t->ndim, t->shape);
            s = th_fail(TH_ERR_FORMAT, "%s: tensor %s has shape %s but %s implies %s", st_path,
                        t->name, got, config_path, want);
            goto done;
        }
        if (t->dtype != TH_ST_F32 && t->dtype != TH_ST_F16 && t->dtype != TH_ST_BF16) {
            s = th_fail(TH_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s; F32, F16 or BF16 expected",
                        st_path, t->name, th_st_dtype_name(t->dtype));
            goto done;
        }
        const char *dn = th_st_dtype_name(t->dtype);
        dtype = !dtype || strcmp(dtype, dn) == 0 ? dn : "mixed";
    }
    const th_st_tensor *wte = found[0]; /* slot 0 is wte.weight */
    if (lm_head) {
        uint64_t at;
        if (lm_head->ndim != 2 || lm_head->shape[0] != wte->shape[0] ||
            lm_head->shape[1] != wte->shape[1]) {
            format_shape(got, sizeof got, lm_head->ndim, lm_head->shape);
            s = th_fail(TH_ERR_FORMAT, "%s: lm_head.weight has shape %s, unlike wte.weight", st_path,
                        got);
            goto done;
        }
        if (lm_head->dtype != TH_ST_F32 && lm_head->dtype != TH_ST_F16 && lm_head->dtype != TH_ST_BF16) {
            s = th_fail(TH_ERR_UNSUPPORTED, "%s: lm_head.weight has dtype %s", st_path,
                        th_st_dtype_name(lm_head->dtype));
            goto done;
        }
        if (!th_safetensors_same_values(st, lm_head, wte, &at)) {
            s = th_fail(TH_ERR_UNSUPPORTED,
                        "%s: lm_head.weight differs from wte.weight (first at row %llu, column "
                        "%llu): the model is untied, which this engine does not support",
                        st_path, (unsigned long long)(at / wte->shape[1]),
                        (unsigned long long)(at % wte->shape[1]));
            goto done;
        }
    }

    if ((s = th_gpt2_create(&cfg, &m)) != TH_OK) goto done;
    float *params = th_gpt2_params(m);
    for (int k = 0; k < nslots && s == TH_OK; k++)
        s = th_safetensors_read_f32(st, found[k], params + slots[k].offset, slots[k].count,
                                    slots[k].transpose);
    if (s != TH_OK) goto done;

    if (info) {
        memset(info, 0, sizeof *info);
        info->format = TH_FORMAT_SAFETENSORS;
        snprintf(info->dtype, sizeof info->dtype, "%s", dtype);
        info->names = plen ? TH_NAMES_TRANSFORMER : TH_NAMES_GPT2;
        info->num_tensors = th_safetensors_count(st);
        info->ignored_tensors = ignored;
        info->num_params = th_gpt2_num_params(&cfg);
        info->config = cfg;
        info->padded_vocab_size = cfg.vocab_size;
    }
    *out = m;
    m = NULL;
done:
    th_gpt2_free(m);
    th_free(found);
    th_free(slots);
    th_safetensors_close(st);
    return s;
}

th_status th_hf_load(const char *dir, th_gpt2 **out, th_model_info *info) {
    char cpath[4096], spath[4096];
    if (!th_path_join(cpath, sizeof cpath, dir, "config.json") ||
        !th_path_join(spath, sizeof spath, dir, "model.safetensors"))
        return th_fail(TH_ERR_INVALID, "%s: path too long", dir);
    th_model_info tmp;
    th_status s = th_hf_load_files(cpath, spath, out, info ? &tmp : NULL);
    if (s == TH_OK && info) {
        tmp.format = TH_FORMAT_HF_DIR;
        *info = tmp;
    }
    return s;
}

/* ---------------------------------------------------------------------------------
 * save */

/* The shortest decimal that reads back as the same float, as a double, so that 1e-5f
 * is written "1e-05" and not "9.9999997473787516e-06". */
static double short_float(float f) {
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    return strtod(buf, NULL);
}

/* Writes config.json into an opened afile (not finished). */
static th_status write_config(const th_gpt2_config *cfg, th_afile *a) {
    int tok = cfg->vocab_size > 50256 ? 50256 : cfg->vocab_size - 1;
    json_t *root = json_pack(
        "{s:s, s:[s], s:f, s:i, s:f, s:i, s:f, s:f, s:s, s:i, s:i, s:i, s:n, s:i, s:i, s:b, s:f,"
        " s:b, s:b, s:s, s:b, s:i}",
        "activation_function", "gelu_new", "architectures", "GPT2LMHeadModel", "attn_pdrop", 0.1,
        "bos_token_id", tok, "embd_pdrop", 0.1, "eos_token_id", tok, "initializer_range", 0.02,
        "layer_norm_epsilon", short_float(cfg->ln_eps), "model_type", "gpt2", "n_ctx",
        cfg->max_seq_len, "n_embd", cfg->channels, "n_head", cfg->num_heads, "n_inner",
        "n_layer", cfg->num_layers, "n_positions", cfg->max_seq_len, "reorder_and_upcast_attn", 0,
        "resid_pdrop", 0.1, "scale_attn_by_inverse_layer_idx", 0, "scale_attn_weights", 1,
        "torch_dtype", "float32", "use_cache", 1, "vocab_size", cfg->vocab_size);
    if (!root) return th_fail(TH_ERR_NOMEM, "%s: out of memory for the config", a->path);
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
    json_decref(root);
    if (!text) return th_fail(TH_ERR_NOMEM, "%s: out of memory for the config", a->path);
    th_afile_write(a, text, strlen(text));
    th_afile_write(a, "\n", 1);
    free(text);
    return a->status;
}

th_status th_hf_save(th_gpt2 *m, const char *dir) {
    const th_gpt2_config *cfg = th_gpt2_get_config(m);
    char cpath[4096], spath[4096];
    if (!th_path_join(cpath, sizeof cpath, dir, "config.json") ||
        !th_path_join(spath, sizeof spath, dir, "model.safetensors"))
        return th_fail(TH_ERR_INVALID, "%s: path too long", dir);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return th_fail(TH_ERR_IO, "%s: cannot create directory: %s", dir, strerror(errno));

    int nmax = 4 + 12 * cfg->num_layers;
    hf_slot *slots = th_calloc((size_t)nmax, sizeof *slots);
    th_st_source *src = th_calloc((size_t)nmax, sizeof *src);
    th_status s;
    if (!slots || !src) {
        s = th_fail(TH_ERR_NOMEM, "%s: out of memory for the tensor table", spath);
        goto done;
    }
    int n = hf_slots(cfg, slots);
    const float *params = th_gpt2_params(m);
    for (int k = 0; k < n; k++) {
        src[k].name = slots[k].name;
        src[k].ndim = slots[k].ndim;
        src[k].shape[0] = slots[k].shape[0];
        src[k].shape[1] = slots[k].shape[1];
        src[k].data = params + slots[k].offset;
        src[k].transpose = slots[k].transpose;
    }
    /* Both files are written and synced before either replaces its old version, so a
     * failure leaves the old pair; only a crash between the two renames mixes them. */
    static const char *const metadata[] = {"format", "pt", NULL};
    th_afile aw, ac;
    if ((s = th_afile_open(&aw, spath)) != TH_OK) goto done;
    if ((s = th_afile_open(&ac, cpath)) != TH_OK) {
        th_afile_abort(&aw);
        goto done;
    }
    if ((s = th_safetensors_write_to(&aw, src, n, metadata)) != TH_OK ||
        (s = write_config(cfg, &ac)) != TH_OK || (s = th_afile_finish(&aw)) != TH_OK ||
        (s = th_afile_finish(&ac)) != TH_OK) {
        th_afile_abort(&aw); /* harmless on one already released */
        th_afile_abort(&ac);
        goto done;
    }
    if ((s = th_afile_publish(&aw)) != TH_OK) {
        th_afile_abort(&ac);
        goto done;
    }
    s = th_afile_publish(&ac);
done:
    th_free(src);
    th_free(slots);
    return s;
}
