/* cmd_info.c: `thermo info MODEL`: loads a model file or directory the way generate and
 * train do (th_model_load_any) and prints what it holds: format, storage dtype, tensor
 * names, config, parameter count, skipped tensors, a checkpoint's training state and run
 * metadata, a GGUF file's version, architecture and tensor types, and whether a directory
 * or GGUF file carries its own tokenizer. --json prints the same as
 * one JSON object on stdout. A file the library rejects exits 3 with its message. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "thermo/io.h"
#include "thermo/model.h"
#include "thermo/text.h"

static const char *names_variant(th_names_variant v) {
    switch (v) {
    case TH_NAMES_GPT2: return "gpt2";
    case TH_NAMES_TRANSFORMER: return "transformer";
    case TH_NAMES_GGUF: return "gguf";
    case TH_NAMES_NONE: break;
    }
    return "none";
}

static const char *names_example(th_names_variant v) {
    switch (v) {
    case TH_NAMES_GPT2: return " (\"h.0.attn.c_attn.weight\")";
    case TH_NAMES_TRANSFORMER: return " (\"transformer.h.0.attn.c_attn.weight\")";
    case TH_NAMES_GGUF: return " (\"blk.0.attn_qkv.weight\")";
    case TH_NAMES_NONE: break;
    }
    return " (the format has no tensor names)";
}

/* What a directory holds for a tokenizer: which files, and whether they load. */
typedef struct {
    int is_dir;
    const char *files; /* NULL: none */
    int vocab_size;    /* 0 if it did not load */
    char error[512];
} tokenizer_info;

static int has_file(const char *dir, const char *name) {
    char p[4600];
    struct stat sb;
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static void probe_tokenizer(const char *path, tokenizer_info *ti) {
    memset(ti, 0, sizeof *ti);
    struct stat sb;
    ti->is_dir = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
    if (!ti->is_dir) return;
    if (has_file(path, "vocab.json") && has_file(path, "merges.txt")) ti->files = "vocab.json + merges.txt";
    else if (has_file(path, "tokenizer.json")) ti->files = "tokenizer.json";
    else if (has_file(path, "encoder.json") && has_file(path, "vocab.bpe")) ti->files = "encoder.json + vocab.bpe";
    if (!ti->files) return;
    th_tokenizer *tok = NULL;
    if (th_tokenizer_load_dir(path, &tok) == TH_OK) {
        ti->vocab_size = th_tokenizer_vocab_size(tok);
        th_tokenizer_free(tok);
    } else {
        snprintf(ti->error, sizeof ti->error, "%s", th_last_error());
    }
}

/* The bytes the model occupies on disk: the file, or a directory's model.safetensors. */
static long long disk_bytes(const char *path, int is_dir) {
    char p[4600];
    struct stat sb;
    snprintf(p, sizeof p, is_dir ? "%s/model.safetensors" : "%s", path);
    return stat(p, &sb) == 0 ? (long long)sb.st_size : -1;
}

static void print_text(const char *path, const th_model_info *in, const tokenizer_info *ti, long long bytes) {
    const th_gpt2_config *c = &in->config;
    printf("path:         %s\n", path);
    printf("format:       %s\n", th_model_format_name(in->format));
    if (in->format == TH_FORMAT_GGUF)
        printf("gguf:         version %u, architecture %s, tensor types %s; runs at --dtype %s by default\n",
               in->gguf_version, in->arch, in->tensor_types, th_dtype_name(in->weights_dtype));
    printf("dtype:        %s\n", in->dtype);
    printf("names:        %s%s\n", names_variant(in->names), names_example(in->names));
    printf("config:       %d layers, %d heads, %d channels, context %d, vocab %d, layer norm eps %g\n",
           c->num_layers, c->num_heads, c->channels, c->max_seq_len, c->vocab_size, (double)c->ln_eps);
    if (in->format == TH_FORMAT_LLMC && in->padded_vocab_size != c->vocab_size)
        printf("padded vocab: %d rows of wte in the file (padding dropped)\n", in->padded_vocab_size);
    printf("parameters:   %zu (%.1f MB as float32)\n", in->num_params, in->num_params * 4.0 / 1e6);
    if (bytes >= 0) printf("on disk:      %.1f MB\n", bytes / 1e6);
    printf("tensors:      %d in the file", in->num_tensors);
    if (in->ignored_tensors)
        printf(", %d ignored (%s)", in->ignored_tensors,
               in->format == TH_FORMAT_GGUF ? "output.weight, a copy of token_embd.weight"
                                            : "causal-mask buffers, tied lm_head.weight");
    printf("\n");
    if (in->format == TH_FORMAT_CHECKPOINT) {
        printf("step:         %ld\n", in->train_step);
        printf("adamw steps:  %ld, moments %s\n", in->adam_steps, in->has_moments ? "present" : "absent");
        printf("run metadata: %s\n", in->run_meta[0] ? in->run_meta : "(none)");
    }
    if (in->format == TH_FORMAT_GGUF && in->tokenizer_tokens)
        printf("tokenizer:    in the file (%d tokens, %d merges)\n", in->tokenizer_tokens, in->tokenizer_merges);
    else if (!ti->is_dir)
        printf("tokenizer:    none in a file; GPT-2's default is used\n");
    else if (!ti->files)
        printf("tokenizer:    none in the directory; GPT-2's default is used\n");
    else if (ti->vocab_size)
        printf("tokenizer:    %s (%d tokens)\n", ti->files, ti->vocab_size);
    else
        printf("tokenizer:    %s, but it does not load (%s); GPT-2's default is used\n", ti->files, ti->error);
}

static int print_json(const char *path, const th_model_info *in, const tokenizer_info *ti, long long bytes) {
    const th_gpt2_config *c = &in->config;
    json_t *o = json_object();
    json_object_set_new(o, "path", json_string(path));
    json_object_set_new(o, "format", json_string(th_model_format_name(in->format)));
    json_object_set_new(o, "dtype", json_string(in->dtype));
    json_object_set_new(o, "names", json_string(names_variant(in->names)));
    json_object_set_new(o, "config", json_pack("{s:i, s:i, s:i, s:i, s:i, s:f}", "num_layers", c->num_layers,
                                               "num_heads", c->num_heads, "channels", c->channels, "max_seq_len",
                                               c->max_seq_len, "vocab_size", c->vocab_size, "ln_eps",
                                               (double)c->ln_eps));
    json_object_set_new(o, "padded_vocab_size", json_integer(in->padded_vocab_size));
    json_object_set_new(o, "num_params", json_integer((json_int_t)in->num_params));
    json_object_set_new(o, "params_mb", json_real(in->num_params * 4.0 / 1e6));
    json_object_set_new(o, "disk_bytes", bytes >= 0 ? json_integer(bytes) : json_null());
    json_object_set_new(o, "num_tensors", json_integer(in->num_tensors));
    json_object_set_new(o, "ignored_tensors", json_integer(in->ignored_tensors));
    if (in->format == TH_FORMAT_GGUF)
        json_object_set_new(o, "gguf", json_pack("{s:i, s:s, s:s, s:s}", "version", (int)in->gguf_version, "architecture",
                                                 in->arch, "tensor_types", in->tensor_types, "default_dtype",
                                                 th_dtype_name(in->weights_dtype)));
    if (in->format == TH_FORMAT_CHECKPOINT) {
        json_t *meta = json_loads(in->run_meta, 0, NULL); /* a string if it is not JSON */
        json_object_set_new(o, "checkpoint",
                            json_pack("{s:I, s:I, s:b, s:o}", "step", (json_int_t)in->train_step, "adam_steps",
                                      (json_int_t)in->adam_steps, "has_moments", in->has_moments, "run_meta",
                                      meta ? meta : json_string(in->run_meta)));
    }
    json_t *tj = json_object();
    int in_file = in->format == TH_FORMAT_GGUF && in->tokenizer_tokens;
    json_object_set_new(tj, "present", json_boolean(ti->files != NULL || in_file));
    json_object_set_new(tj, "files", ti->files ? json_string(ti->files) : in_file ? json_string("gguf") : json_null());
    json_object_set_new(tj, "vocab_size", ti->vocab_size ? json_integer(ti->vocab_size)
                                          : in_file ? json_integer(in->tokenizer_tokens) : json_null());
    if (ti->error[0]) json_object_set_new(tj, "error", json_string(ti->error));
    json_object_set_new(o, "tokenizer", tj);
    return cli_print_json(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(7), "info");
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    int as_json = 0, n_pos = 0;
    const cli_opt opts[] = {CLI_O_FLAG("--json", &as_json, "print one JSON object instead of text"), {0}};
    cli_cmd c = {.name = "info", .synopsis = "[--json] MODEL",
                 .about = "  MODEL    a Hugging Face GPT-2 directory, a .safetensors file with config.json beside it,\n"
                          "           an llm.c .bin, a GGUF file or a thermo checkpoint\n",
                 .tables = {opts}, .epilog = "Exits 3 if the file is not a model this build can load.\n",
                 .pos = &path, .max_pos = 1, .n_pos = &n_pos, .pos_name = "MODEL"};
    int rc = cli_parse(&c, argc, argv);
    if (rc != CLI_GO) return rc;
    if (!path) {
        fprintf(stderr, "thermo info: which model? (a directory or a file)\n");
        return EXIT_USAGE;
    }
    th_gpt2 *m = NULL;
    th_model_info info;
    th_status st = th_model_load_any(path, &m, &info);
    if (st != TH_OK) return cli_report_model(st, "info");
    th_gpt2_free(m);
    tokenizer_info ti;
    probe_tokenizer(path, &ti);
    long long bytes = disk_bytes(path, ti.is_dir);
    if (as_json) return print_json(path, &info, &ti, bytes);
    print_text(path, &info, &ti, bytes);
    return EXIT_OK;
}
