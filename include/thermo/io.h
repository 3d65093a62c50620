/* io.h: model files in and out. safetensors (read F32/F16/BF16, write F32), Hugging Face
 * GPT-2 directories (config.json + model.safetensors), llm.c checkpoints (.bin, version 3
 * float32 and 5 bfloat16), GGUF files (read: llama.cpp's GPT-2 in F32, F16, BF16, Q8_0, with
 * its tokenizer), the project's own resumable training checkpoint, and a loader that
 * recognizes any of these for the CLI.
 *
 * Every loader validates each size in a file against the file's length before touching
 * memory, fails with a th_fail message naming the file and the problem, and leaves its
 * out-parameters untouched on failure. Every writer goes through a temporary file that
 * is fsynced and renamed over the target, so a failed or interrupted save leaves the
 * previous file intact. */
#ifndef THERMO_IO_H
#define THERMO_IO_H

#include <stddef.h>
#include <stdint.h>

#include "thermo/core.h"
#include "thermo/model.h"

/* ---------------------------------------------------------------------------------
 * safetensors: an 8-byte little-endian header length N, N bytes of JSON mapping each
 * tensor name to {dtype, shape, data_offsets: [begin, end)} relative to the data section
 * that follows, and an optional "__metadata__" object of string values. */

#define TH_ST_MAX_DIMS 8

typedef enum {
    TH_ST_BOOL, TH_ST_U8, TH_ST_I8, TH_ST_F8_E4M3, TH_ST_F8_E5M2, TH_ST_I16, TH_ST_U16,
    TH_ST_F16, TH_ST_BF16, TH_ST_I32, TH_ST_U32, TH_ST_F32, TH_ST_F64, TH_ST_I64, TH_ST_U64,
    TH_ST_NUM_DTYPES
} th_st_dtype;

/* The format's spelling ("F32", "BF16", ...) and the size of one element in bytes. */
const char *th_st_dtype_name(th_st_dtype d);
size_t th_st_dtype_size(th_st_dtype d);

typedef struct {
    const char *name; /* owned by the th_safetensors it came from */
    th_st_dtype dtype;
    int ndim;         /* 0 (a scalar) .. TH_ST_MAX_DIMS */
    uint64_t shape[TH_ST_MAX_DIMS];
    uint64_t count;   /* elements: the product of shape (1 for a scalar) */
    uint64_t begin, end; /* byte span within the data section, validated */
} th_st_tensor;

typedef struct th_safetensors th_safetensors;

/* Opens and validates a safetensors file: the header length against the file size, the
 * JSON, every dtype, shape and span (within the data section, no overlaps, shape × dtype
 * size = span, no overflow). The file is mapped read-only until th_safetensors_close.
 * Fails with TH_ERR_IO (cannot open or map), TH_ERR_FORMAT (naming the file, the tensor
 * and the problem) or TH_ERR_NOMEM; *out is set only on success. */
th_status th_safetensors_open(const char *path, th_safetensors **out);

/* The same over bytes in memory (for fuzzing and tests). The bytes are borrowed and must
 * outlive the handle; `label` stands in for the file name in messages. */
th_status th_safetensors_open_memory(const void *data, size_t len, const char *label,
                                     th_safetensors **out);

void th_safetensors_close(th_safetensors *st);

/* Tensors in order of their data offsets. The pointers live as long as the handle. */
int th_safetensors_count(const th_safetensors *st);
const th_st_tensor *th_safetensors_tensor(const th_safetensors *st, int i);
/* NULL if there is no tensor with that name. */
const th_st_tensor *th_safetensors_find(const th_safetensors *st, const char *name);
/* The value of a "__metadata__" key, NULL if absent. */
const char *th_safetensors_metadata(const th_safetensors *st, const char *key);

/* Converts tensor `t` (F32, F16 or BF16; other dtypes give TH_ERR_UNSUPPORTED) to
 * `count` floats in dst, which must equal t->count (else TH_ERR_INVALID). With
 * `transpose`, t must be 2-D (r, c) and dst receives its (c, r) transpose. F16 and BF16
 * convert exactly (every value, subnormals, infinities and NaNs included). */
th_status th_safetensors_read_f32(const th_safetensors *st, const th_st_tensor *t, float *dst,
                                  size_t count, int transpose);

/* One tensor to write, as float32. With `transpose`, ndim must be 2 and `data` holds the
 * (shape[1], shape[0]) transpose of what the file gets (our (out, in) weights saved in
 * HF's (in, out) layout without a full copy). */
typedef struct {
    const char *name;
    int ndim;
    uint64_t shape[TH_ST_MAX_DIMS];
    const float *data;
    int transpose;
} th_st_source;

/* Writes a float32 safetensors file atomically (path.tmp, fsync, rename). Tensors are
 * written in the order given; names must be unique and not "__metadata__". `metadata`
 * is NULL or a NULL-terminated list of key, value string pairs. On failure the file at
 * `path`, if any, is unchanged and the temporary file removed. */
th_status th_safetensors_write(const char *path, const th_st_source *tensors, int n,
                               const char *const *metadata);

/* ---------------------------------------------------------------------------------
 * what a loaded file held, for `thermo info` */

/* The run's metadata: a JSON object (tokenizer, schedule, batch shape, seed...) that a
 * resumed run reads back so it continues with the same settings. */
#define TH_RUN_META_MAX 4096

typedef enum {
    TH_FORMAT_UNKNOWN = 0,
    TH_FORMAT_HF_DIR,      /* a directory with config.json and model.safetensors */
    TH_FORMAT_SAFETENSORS, /* a .safetensors file with a config.json beside it */
    TH_FORMAT_LLMC,        /* llm.c's gpt2_*.bin */
    TH_FORMAT_CHECKPOINT,  /* ours (th_checkpoint_save) */
    TH_FORMAT_GGUF,        /* a GGUF file (llama.cpp's convert_hf_to_gguf.py) */
} th_model_format;

typedef enum {
    TH_NAMES_NONE = 0,        /* a format without tensor names (llm.c, ours) */
    TH_NAMES_GPT2,            /* "wte.weight", "h.0.attn.c_attn.weight" (gpt2 on the Hub) */
    TH_NAMES_TRANSFORMER,     /* "transformer.wte.weight" (distilgpt2, GPT2LMHeadModel) */
    TH_NAMES_GGUF,            /* "token_embd.weight", "blk.0.attn_qkv.weight" (llama.cpp) */
} th_names_variant;

typedef struct {
    th_model_format format;
    char dtype[8];          /* "F32", "F16", "BF16", "Q8_0" or "mixed": how the parameters were
                               stored (GGUF: token_embd and the matmul weights; the
                               converter keeps position_embd and 1-D tensors F32) */
    th_names_variant names;
    int num_tensors;        /* tensors in the file (safetensors: buffers included) */
    int ignored_tensors;    /* causal-mask buffers and a tied lm_head.weight, skipped */
    size_t num_params;      /* floats in the loaded model */
    th_gpt2_config config;
    int padded_vocab_size;  /* llm.c: rows of wte in the file; else vocab_size */
    /* checkpoints only */
    long train_step;
    long adam_steps;
    int has_moments;
    char run_meta[TH_RUN_META_MAX];
    /* GGUF only (zero otherwise) */
    uint32_t gguf_version;
    char arch[16];          /* general.architecture: "gpt2" */
    char tensor_types[64];  /* every tensor's ggml type, counted: "F32 x26, Q8_0 x13" */
    th_dtype weights_dtype; /* the precision the matmul weights are stored at (Q8_0: q8, F16: f16,
                               BF16: bf16, else f32): inference's default for this file, at
                               which packing keeps the file's values exactly */
    int tokenizer_tokens;   /* tokenizer.ggml.tokens and .merges: 0 when absent */
    int tokenizer_merges;
} th_model_info;

const char *th_model_format_name(th_model_format f);

/* ---------------------------------------------------------------------------------
 * Hugging Face GPT-2 */

/* Reads a GPT-2 config.json into cfg: n_layer, n_head, n_embd, n_positions (or n_ctx),
 * vocab_size, layer_norm_epsilon (default 1e-5). Rejects a model_type other than "gpt2",
 * an activation_function other than gelu_new / gelu_pytorch_tanh, and n_inner other than
 * null or 4·n_embd (TH_ERR_UNSUPPORTED); missing or non-integer sizes are TH_ERR_FORMAT. */
th_status th_hf_read_config(const char *config_path, th_gpt2_config *cfg);

/* Loads a model from a config.json and a model.safetensors. Tensor names may be plain or
 * "transformer."-prefixed (not mixed); Conv1D weights are transposed to (out, in); F16 and
 * BF16 are widened. Causal-mask buffers (h.N.attn.bias, h.N.attn.masked_bias) are
 * ignored. An lm_head.weight must equal wte bit for bit: this engine ties them, so an
 * untied model fails with TH_ERR_UNSUPPORTED rather than load with a different head.
 * Missing, unknown or misshapen tensors fail with TH_ERR_FORMAT naming the tensor.
 * On success *out owns a new model and *info (if not NULL) says what the files held. */
th_status th_hf_load_files(const char *config_path, const char *safetensors_path,
                           th_gpt2 **out, th_model_info *info);

/* th_hf_load_files(dir/config.json, dir/model.safetensors, ...). */
th_status th_hf_load(const char *dir, th_gpt2 **out, th_model_info *info);

/* Saves dir/model.safetensors (float32, plain gpt2 names, HF's (in, out) Conv1D shapes,
 * metadata format "pt", no lm_head: transformers re-ties it) and dir/config.json
 * (GPT2LMHeadModel, gelu_new, the sizes), creating dir if needed. Both files are written
 * to temporaries and synced before either is renamed into place, so a failed save leaves
 * the previous pair intact; only a crash between the two renames could pair new weights
 * with the old config. */
th_status th_hf_save(th_gpt2 *m, const char *dir);

/* ---------------------------------------------------------------------------------
 * llm.c checkpoints: 256 int32 of header ([0] 20240326, [1] version 3 = float32 or
 * 5 = bfloat16, [2] max_seq_len, [3] vocab_size, [4] num_layers, [5] num_heads,
 * [6] channels, [7] padded_vocab_size), then the 16 tensors in our order, wte padded
 * to padded_vocab_size rows. */

/* Loads an llm.c .bin; the padding rows of wte are dropped. The file length must be
 * exactly header + parameters. ln_eps is 1e-5 (llm.c does not store it). */
th_status th_llmc_load(const char *path, th_gpt2 **out, th_model_info *info);

/* Saves an llm.c .bin, version 3 (float32) or, with bf16, version 5 (bfloat16, rounded
 * to nearest even), wte padded with zero rows to a multiple of 128. Atomic. */
th_status th_llmc_save(th_gpt2 *m, const char *path, int bf16);

/* ---------------------------------------------------------------------------------
 * the project's own checkpoint: everything a resumed run needs to continue the exact
 * sequence. Little-endian: magic "THRMCKPT", version, flags, config, step counters, RNG,
 * data cursor, run metadata (JSON), parameters, AdamW moments (if flagged), then an
 * XXH64 of every byte before it. */

typedef struct {
    long step;                  /* training-loop steps completed */
    th_rng rng;                 /* the run's RNG (dropout, sampling, shuffling) */
    uint64_t data_cursor[4];    /* opaque position exported by the dataset loader */
    char run_meta[TH_RUN_META_MAX]; /* JSON object: tokenizer and training settings */
} th_train_state;

/* The run metadata inside a checkpoint, typed. `has` says which settings were recorded
 * (a resume takes those not given again); last_val_loss is NaN until a validation ran. */
enum {
    TH_META_STEPS = 1u << 0, TH_META_BATCH = 1u << 1, TH_META_SEQ = 1u << 2, TH_META_GRAD_ACCUM = 1u << 3,
    TH_META_WARMUP = 1u << 4, TH_META_SEED = 1u << 5, TH_META_LR = 1u << 6, TH_META_WEIGHT_DECAY = 1u << 7,
    TH_META_GRAD_CLIP = 1u << 8, TH_META_PRECISION = 1u << 9,
};
typedef struct {
    uint32_t has;             /* TH_META_* bits */
    long steps;               /* the schedule's length */
    int batch, seq, grad_accum, warmup;
    uint64_t seed;
    double lr, weight_decay, grad_clip;
    int precision;            /* of the training matmuls: th_precision (0 f32, 1 bf16) */
    double last_val_loss;     /* NaN: none recorded */
    char tokenizer[16];       /* "gpt2" */
} th_run_meta;

/* No settings, no validation loss, tokenizer "gpt2". */
th_run_meta th_run_meta_empty(void);
/* The JSON object stored in th_train_state.run_meta (keys steps, batch, seq, grad_accum,
 * warmup, seed, lr, weight_decay, grad_clip, precision ("f32" or "bf16"), last_val_loss,
 * tokenizer; absent when not set).
 * TH_ERR_INVALID if it does not fit in cap. */
th_status th_run_meta_to_json(const th_run_meta *m, char *buf, size_t cap);
/* Parses it back; a field of the wrong type or out of range fails with TH_ERR_FORMAT naming
 * `where` and the field, and *out is left empty. Unknown keys are ignored. */
th_status th_run_meta_parse(const char *json, const char *where, th_run_meta *out);

/* Writes the model (parameters; AdamW moments and step count if allocated) and `st`
 * to path atomically: path.tmp, fflush, fsync, rename, fsync of the directory. On
 * failure the previous file at path is unchanged. st may be NULL (step 0, zero RNG and
 * cursor, empty reference); st->run_meta must be NUL-terminated within
 * TH_RUN_META_MAX (else TH_ERR_INVALID, nothing written). */
th_status th_checkpoint_save(const char *path, th_gpt2 *m, const th_train_state *st);

/* Loads a checkpoint into a new model (with moments restored if saved) and *st_out.
 * The checksum is verified before anything is returned; a truncated, corrupt,
 * wrong-magic or wrong-version file fails (TH_ERR_FORMAT, or TH_ERR_UNSUPPORTED for a
 * version or flag this build does not know) and leaves *model_out and *st_out
 * untouched. st_out may be NULL. */
th_status th_checkpoint_load(const char *path, th_gpt2 **model_out, th_train_state *st_out);

/* XXH64 (seed 0) of a buffer: the checkpoint's checksum, exposed for tests and tools. */
uint64_t th_xxh64(const void *data, size_t len);

/* ---------------------------------------------------------------------------------
 * teacher cache (distillation): a teacher's top-k log-probabilities for every position of
 * every window of a token shard (windows of seq + 1 tokens at w·seq, as the data loader
 * cuts them), made once and read by many students. Little-endian:
 *
 *   offset  size  field
 *        0     4  magic "THDC"
 *        4     4  version (TH_TCACHE_VERSION)
 *        8     4  flags: bit 0 complete (every window written); others 0
 *       12     4  k       16  4  seq       20  4  vocab_size (<= 65536: ids are 16-bit)
 *       24     8  n_windows of the shard   32  8  windows_done (those in the payload)
 *       40     8  teacher fingerprint (th_tcache_fingerprint_model)
 *       48     8  data fingerprint (XXH64 of the shard file)
 *       56     8  energy_j  64  8  seconds  72  8  co2e_g  80  8  water_ml (doubles: what
 *                 making the cache cost so far; NaN when unpriced)
 *       88     8  XXH64 of the payload     96  8  XXH64 of bytes 0..96
 *      104    24  zero
 *      128        windows_done windows, each: XXH64 of its seq input tokens (int32 LE), then
 *                 seq·k 16-bit ids, then seq·k fp16 log-probabilities (temperature 1), rows
 *                 of k in descending order; 4·k bytes per token (256 B at k = 64) */

#define TH_TCACHE_MAGIC "THDC"
#define TH_TCACHE_VERSION 1u
#define TH_TCACHE_HEADER_BYTES 128
#define TH_TCACHE_COMPLETE 1u

typedef struct {
    uint32_t flags, k, seq, vocab_size;
    uint64_t n_windows, windows_done;
    uint64_t teacher_fp, data_fp;
    double energy_j, seconds, co2e_g, water_ml;
} th_tcache_header;

typedef struct th_tcache th_tcache;

/* An empty cache in memory for h (windows_done 0, flags 0). TH_ERR_INVALID for k outside
 * [1, vocab_size], seq < 1, vocab_size above 65536 or n_windows 0; TH_ERR_NOMEM. */
th_status th_tcache_create(const th_tcache_header *h, th_tcache **out);

/* Reads and checks a whole cache file: magic, version, flags, header checksum, the file's
 * length against windows_done (a truncated file says how many bytes it lacks), the
 * payload checksum, every id below vocab_size. TH_ERR_IO / TH_ERR_FORMAT /
 * TH_ERR_UNSUPPORTED naming the file and the problem; *out untouched on failure. */
th_status th_tcache_load(const char *path, th_tcache **out);

/* Appends the next window: its inputs (seq tokens), the top-k ids (seq·k, in [0, vocab))
 * and log-probabilities (seq·k, stored as fp16, clamped to ±65504). Sets the complete flag
 * with the last window. TH_ERR_STATE when complete, TH_ERR_INVALID for a bad id. */
th_status th_tcache_append(th_tcache *c, const int *inputs, const int *ids, const float *logp);

/* Writes the cache atomically (th_atomic_*: the old file or the new one). TH_ERR_IO names
 * the path. */
th_status th_tcache_save(const th_tcache *c, const char *path);

/* The header (its figures may be updated before a save). */
th_tcache_header *th_tcache_header_of(th_tcache *c);

/* The teacher's rows for a window given its inputs (seq tokens): ids and log-probs (seq·k
 * each, decoded). Windows are found by the hash of their inputs, so any order of batches
 * finds them, and windows with the same tokens share the same rows. TH_ERR_FORMAT when no
 * window of the cache has these tokens. */
th_status th_tcache_lookup(th_tcache *c, const int *inputs, int *ids, float *logp);

void th_tcache_free(th_tcache *c);

/* XXH64 of a model's config and parameters: the teacher fingerprint. */
uint64_t th_tcache_fingerprint_model(th_gpt2 *m);

/* fp16 of f, round to nearest even, finite values beyond ±65504 clamped to it. */
uint16_t th_f32_to_f16_clamped(float f);

/* ---------------------------------------------------------------------------------
 * GGUF, version 3 (ggml's docs/gguf.md), little-endian: "GGUF", version (u32), tensor
 * count and metadata count (u64), the metadata (key string, value type u32, value; a string
 * is a u64 length and its bytes; an array an element type u32, a u64 count and the
 * elements, arrays of arrays included), the tensor infos (name, n_dims u32, ne[0..n_dims)
 * u64 with ne[0] the innermost (row) length, ggml type u32, offset u64 within the data
 * section), padding to general.alignment (u32, a power of two, default 32), the data.
 *
 * GPT-2 as llama.cpp's convert_hf_to_gguf.py writes it: general.architecture "gpt2";
 * gpt2.context_length, .embedding_length, .block_count, .feed_forward_length (4·C),
 * .attention.head_count, .attention.layer_norm_epsilon; tensors token_embd.weight ne [C, V],
 * position_embd.weight [C, T], blk.N.attn_norm / ffn_norm .weight/.bias [C],
 * blk.N.attn_qkv.weight [C, 3C] (+ .bias [3C]), blk.N.attn_output.weight [C, C],
 * blk.N.ffn_up.weight [C, 4C], blk.N.ffn_down.weight [4C, C] (+ biases), output_norm
 * .weight/.bias [C], and output.weight [C, V] which older converters write as a copy of
 * token_embd (newer ones leave it out: tied). The converter transposes HF's Conv1D (in, out)
 * weights, so ne [in, out] is our (out, in) row-major layout and nothing is transposed here.
 * The tokenizer: tokenizer.ggml.model "gpt2", .tokens (strings in GPT-2's byte alphabet,
 * by id) and .merges ("left right", best first). */

typedef enum {
    TH_GGUF_U8 = 0, TH_GGUF_I8 = 1, TH_GGUF_U16 = 2, TH_GGUF_I16 = 3, TH_GGUF_U32 = 4,
    TH_GGUF_I32 = 5, TH_GGUF_F32 = 6, TH_GGUF_BOOL = 7, TH_GGUF_STRING = 8, TH_GGUF_ARRAY = 9,
    TH_GGUF_U64 = 10, TH_GGUF_I64 = 11, TH_GGUF_F64 = 12,
} th_gguf_vtype;

/* The ggml tensor types this reader converts to float; any other is refused by name. */
enum { TH_GGML_F32 = 0, TH_GGML_F16 = 1, TH_GGML_Q8_0 = 8, TH_GGML_BF16 = 30 };

typedef struct {
    const char *key;         /* NUL-terminated, owned by the th_gguf */
    th_gguf_vtype type;
    th_gguf_vtype elem_type; /* arrays: the elements' type */
    uint64_t count;          /* arrays: elements (1 for a scalar) */
    uint64_t u;              /* unsigned integers and bools */
    int64_t i;               /* signed integers */
    double f;                /* F32 and F64 */
    const char *str;         /* a string: its bytes in the file, str_len of them, no NUL */
    uint64_t str_len;
} th_gguf_kv;

typedef struct {
    const char *name; /* NUL-terminated, owned by the th_gguf */
    uint32_t type;    /* ggml type (TH_GGML_*, or another ggml knows) */
    int ndim;         /* 1..4 */
    uint64_t ne[4];   /* ne[0] is the row length; 1 past ndim */
    uint64_t count;   /* elements */
    uint64_t offset, bytes; /* span within the data section, validated */
} th_gguf_tensor;

typedef struct th_gguf th_gguf;

/* Opens and validates a GGUF file: magic, version 3, every key (unique, types known, values
 * and arrays within the file), general.alignment, every tensor info (unique name, 1..4 dims,
 * a type whose block size is known, whole blocks per row, no overflow, an aligned span
 * inside the data section, no overlaps). Mapped read-only until th_gguf_close. Fails with
 * TH_ERR_IO, TH_ERR_FORMAT (naming the file, the key or tensor and the problem, a
 * truncated file included), TH_ERR_UNSUPPORTED (another version, an unknown tensor type)
 * or TH_ERR_NOMEM; *out is set only on success. */
th_status th_gguf_open(const char *path, th_gguf **out);
/* The same over borrowed bytes that outlive the handle; `label` names them in messages. */
th_status th_gguf_open_memory(const void *data, size_t len, const char *label, th_gguf **out);
void th_gguf_close(th_gguf *g);

uint32_t th_gguf_version(const th_gguf *g);
int th_gguf_kv_count(const th_gguf *g);
const th_gguf_kv *th_gguf_kv_at(const th_gguf *g, int i);
/* NULL if no key has this name. */
const th_gguf_kv *th_gguf_find_kv(const th_gguf *g, const char *key);
/* Element i of a string array (its bytes in the file, no NUL); TH_ERR_INVALID if kv is not
 * a string array or i is past its end. */
th_status th_gguf_array_string(const th_gguf *g, const th_gguf_kv *kv, uint64_t i, const char **s,
                               uint64_t *len);

int th_gguf_tensor_count(const th_gguf *g);
const th_gguf_tensor *th_gguf_tensor_at(const th_gguf *g, int i);
const th_gguf_tensor *th_gguf_find_tensor(const th_gguf *g, const char *name);
/* ggml's name of a tensor type ("Q8_0"), "?" if unknown. */
const char *th_ggml_type_name(uint32_t type);

/* Converts tensor t (F32, F16, BF16 or Q8_0: d · q per block of 32; others TH_ERR_UNSUPPORTED
 * naming the tensor) to its `count` floats in the file's order (TH_ERR_INVALID unless count
 * equals t->count). Exact: every value of the file is representable in float. */
th_status th_gguf_read_f32(const th_gguf *g, const th_gguf_tensor *t, float *dst, size_t count);

/* A GPT-2 model from an opened GGUF (see above). Fails, naming the key or tensor, with
 * TH_ERR_FORMAT (a missing or mistyped key, a missing, unknown or misshapen tensor, a
 * tokenizer whose size is not the embedding's rows) or TH_ERR_UNSUPPORTED (another
 * architecture, feed_forward_length other than 4·C, a tensor type other than F32, F16, BF16,
 * Q8_0, an output.weight that differs from token_embd: untied). Q8_0 tensors are
 * dequantized; th_gpt2_set_precision at q8 packs them back into the same blocks (exactly:
 * each block of a ggml quantizer has a largest |q| of 127, which re-quantizes to the same
 * scale and values). On success *out owns a new f32 model; *info (may be NULL) describes
 * the file. */
th_status th_gguf_load_model(const th_gguf *g, th_gpt2 **out, th_model_info *info);
/* th_gguf_open + th_gguf_load_model + th_gguf_close. */
th_status th_gguf_load(const char *path, th_gpt2 **out, th_model_info *info);

typedef struct th_tokenizer th_tokenizer;
/* The GPT-2 tokenizer stored in the file (tokenizer.ggml.tokens and .merges). Fails naming
 * the key: TH_ERR_FORMAT if one is missing, not an array of strings, or a token or merge
 * the text module refuses; TH_ERR_UNSUPPORTED for a tokenizer.ggml.model other than "gpt2". */
th_status th_gguf_load_tokenizer(const th_gguf *g, th_tokenizer **out);

/* The tokenizer that goes with a model path: a GGUF file's own, else
 * th_tokenizer_load_for_model (a directory's files, else GPT-2's default). */
th_status th_model_load_tokenizer(const char *model_path, th_tokenizer **out);

/* ---------------------------------------------------------------------------------
 * any of the above */

/* Recognizes and loads `path`: a directory (Hugging Face), a file starting with our
 * checkpoint magic, llm.c's magic or "GGUF", or a safetensors file with a
 * config.json in the same directory. *info (may be NULL) describes what it held.
 * Unrecognized content fails with TH_ERR_FORMAT. */
th_status th_model_load_any(const char *path, th_gpt2 **out, th_model_info *info);

#endif
