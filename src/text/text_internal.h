/* text_internal.h: the pieces of the text module that its files and its tests share but
 * that are not public: Unicode classes and UTF-8 decoding (unicode.c, unicode_tables.c),
 * GPT-2's pre-tokenizer (pretokenize.c) and the BPE merge table and merge loop with its
 * naive twin (bpe.c). */
#ifndef THERMO_TEXT_INTERNAL_H
#define THERMO_TEXT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "thermo/core.h"

/* ---------------------------------------------------------------------------------
 * Unicode */

typedef struct {
    uint32_t lo, hi; /* inclusive */
} th_uni_range;

/* Generated tables (unicode_tables.c): sorted, disjoint ranges of \p{L} and \p{N}. */
extern const th_uni_range th_uni_letter[];
extern const size_t th_uni_letter_count;
extern const th_uni_range th_uni_number[];
extern const size_t th_uni_number_count;
extern const char th_uni_tables_version[];

/* Stands in for the code point of a byte that does not start a well-formed UTF-8
 * sequence. It is above U+10FFFF, so it is no letter, number or space. */
#define TH_UTF8_INVALID 0xFFFFFFFFu

/* Decodes the character at s[0..len) (len >= 1), strictly (no overlongs, surrogates or
 * code points above U+10FFFF). Returns its length in bytes (1..4) and writes its code
 * point; a byte that does not start a well-formed sequence is returned alone (length 1)
 * with the code point TH_UTF8_INVALID. */
size_t th_utf8_next(const uint8_t *s, size_t len, uint32_t *cp);

typedef enum {
    TH_CC_OTHER = 0, /* anything else, invalid bytes included */
    TH_CC_LETTER,    /* \p{L} */
    TH_CC_NUMBER,    /* \p{N} */
    TH_CC_SPACE,     /* \s as JavaScript's regexes define it */
} th_char_class;

th_char_class th_char_class_of(uint32_t cp);

/* ---------------------------------------------------------------------------------
 * pre-tokenizer */

/* The end (exclusive) of the pre-token that starts at s[pos], pos < len: the match of
 * GPT-2's pattern 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * at pos. Always > pos, so repeated calls cover the text. */
size_t th_pretok_next(const uint8_t *s, size_t len, size_t pos);

/* ---------------------------------------------------------------------------------
 * BPE merges */

/* The merge table: rank r merges the adjacent pair (first[r], second[r]) into merged[r];
 * a hash map finds the rank of a pair. When a pair is listed twice the later rank wins,
 * as in the reference encoders (a dict built from the list). */
typedef struct {
    uint64_t *keys;   /* (a << 32 | b) + 1, 0 = empty slot */
    int32_t *ranks;   /* rank per slot */
    size_t mask;      /* slots - 1 */
    int32_t *first, *second, *merged; /* per rank */
    int32_t count;    /* ranks in use */
    int32_t capacity; /* ranks allocated */
} th_bpe_merges;

/* Allocates a table for up to `capacity` merges. Fails with TH_ERR_NOMEM. */
th_status th_bpe_merges_init(th_bpe_merges *m, int32_t capacity);
void th_bpe_merges_free(th_bpe_merges *m);

/* Appends the next rank. Fails with TH_ERR_INVALID when the table is full. */
th_status th_bpe_merges_add(th_bpe_merges *m, int32_t a, int32_t b, int32_t merged);

/* The rank of the pair (a, b), -1 if it is no merge. */
int32_t th_bpe_rank(const th_bpe_merges *m, int32_t a, int32_t b);

/* Applies the merges to the word syms[0..*n) in place, exactly as GPT-2's encoder does
 * (repeatedly take the lowest-ranked adjacent pair and merge all its occurrences left to
 * right), in O(n log n) with a heap. Words longer than an internal stack buffer need
 * scratch memory: fails with TH_ERR_NOMEM if it cannot be had, leaving syms untouched. */
th_status th_bpe_merge(const th_bpe_merges *m, int *syms, size_t *n);

/* The same by the reference algorithm, O(n^2): the oracle for th_bpe_merge in tests. */
void th_bpe_merge_naive(const th_bpe_merges *m, int *syms, size_t *n);

/* ---------------------------------------------------------------------------------
 * a loaded tokenizer's internals, for tests */

struct th_tokenizer;
const th_bpe_merges *th_tokenizer_merges(const struct th_tokenizer *tok);
/* The token of a single byte. */
int th_tokenizer_byte_token(const struct th_tokenizer *tok, uint8_t byte);

#endif
