/* pretokenize.c: GPT-2's pre-tokenizer, the regex
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * written out by hand over UTF-8 bytes, with the strict UTF-8 decoder and the character
 * classes it needs.
 *
 * Classes follow the reference encoder we test against (npm gpt-3-encoder, a JavaScript
 * regex with the u flag): \p{L} and \p{N} come from the generated tables (Unicode version
 * in unicode_tables.c; JavaScript engines may know newer characters), and \s is
 * JavaScript's set, which counts U+FEFF as a space and U+0085 as not (Python's regex
 * module, used by OpenAI's original encoder, has it the other way round for these two).
 *
 * Invalid UTF-8: no reference can see it (JavaScript and Python strings hold code points,
 * Rust's hold valid UTF-8). Each byte that does not start a well-formed sequence is taken
 * as one character of class "other" (what U+FFFD, a symbol, would be), so it joins runs of
 * punctuation; its byte is kept, so byte-level BPE encodes it and decode gives it back. */
#include "text_internal.h"

/* ---------------------------------------------------------------------------------
 * UTF-8 */

size_t th_utf8_next(const uint8_t *s, size_t len, uint32_t *cp) {
    uint8_t b0 = s[0];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    size_t need;
    uint32_t c;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 2;
        c = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 3;
        c = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;      /* no overlongs */
        else if (b0 == 0xED) hi = 0x9F; /* no surrogates */
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 4;
        c = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;      /* no overlongs */
        else if (b0 == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        *cp = TH_UTF8_INVALID;
        return 1;
    }
    if (len < need || s[1] < lo || s[1] > hi) {
        *cp = TH_UTF8_INVALID;
        return 1;
    }
    c = (c << 6) | (s[1] & 0x3F);
    for (size_t i = 2; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = TH_UTF8_INVALID;
            return 1;
        }
        c = (c << 6) | (s[i] & 0x3F);
    }
    *cp = c;
    return need;
}

/* ---------------------------------------------------------------------------------
 * classes */

static int in_ranges(const th_uni_range *r, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < r[mid].lo) hi = mid;
        else if (cp > r[mid].hi) lo = mid + 1;
        else return 1;
    }
    return 0;
}

/* JavaScript's \s: WhiteSpace and LineTerminator of ECMA-262, i.e. Unicode's Zs plus
 * TAB, VT, FF, LF, CR, U+2028, U+2029 and U+FEFF. */
static int is_js_space(uint32_t cp) {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0xA0) return 0;
    return cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000 || cp == 0xFEFF;
}

/* ASCII classes, so that English text never reaches the range tables. */
static const uint8_t ascii_class[128] = {
    ['\t'] = TH_CC_SPACE, ['\n'] = TH_CC_SPACE, ['\v'] = TH_CC_SPACE, ['\f'] = TH_CC_SPACE,
    ['\r'] = TH_CC_SPACE, [' '] = TH_CC_SPACE,
    ['0'] = TH_CC_NUMBER, ['1'] = TH_CC_NUMBER, ['2'] = TH_CC_NUMBER, ['3'] = TH_CC_NUMBER,
    ['4'] = TH_CC_NUMBER, ['5'] = TH_CC_NUMBER, ['6'] = TH_CC_NUMBER, ['7'] = TH_CC_NUMBER,
    ['8'] = TH_CC_NUMBER, ['9'] = TH_CC_NUMBER,
#define L2(c) [c] = TH_CC_LETTER, [c + 1] = TH_CC_LETTER
#define L8(c) L2(c), L2(c + 2), L2(c + 4), L2(c + 6)
    L8('A'), L8('I'), L8('Q'), L2('Y'), L8('a'), L8('i'), L8('q'), L2('y'),
#undef L8
#undef L2
};

th_char_class th_char_class_of(uint32_t cp) {
    if (cp < 0x80) return (th_char_class)ascii_class[cp];
    if (cp == TH_UTF8_INVALID) return TH_CC_OTHER;
    if (is_js_space(cp)) return TH_CC_SPACE;
    if (in_ranges(th_uni_letter, th_uni_letter_count, cp)) return TH_CC_LETTER;
    if (in_ranges(th_uni_number, th_uni_number_count, cp)) return TH_CC_NUMBER;
    return TH_CC_OTHER;
}

/* ---------------------------------------------------------------------------------
 * the pattern */

/* Class of the character at pos (pos < len) and its length through *clen. */
static th_char_class class_at(const uint8_t *s, size_t len, size_t pos, size_t *clen) {
    if (s[pos] < 0x80) {
        *clen = 1;
        return (th_char_class)ascii_class[s[pos]];
    }
    uint32_t cp;
    *clen = th_utf8_next(s + pos, len - pos, &cp);
    return th_char_class_of(cp);
}

/* End of the run of characters of class `cls` that starts at pos. */
static size_t run_end(const uint8_t *s, size_t len, size_t pos, th_char_class cls) {
    while (pos < len) {
        size_t clen;
        if (class_at(s, len, pos, &clen) != cls) break;
        pos += clen;
    }
    return pos;
}

size_t th_pretok_next(const uint8_t *s, size_t len, size_t pos) {
    /* 's|'t|'re|'ve|'m|'ll|'d, case-sensitive as in the pattern */
    if (s[pos] == '\'' && pos + 1 < len) {
        uint8_t c1 = s[pos + 1];
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return pos + 2;
        if (pos + 2 < len) {
            uint8_t c2 = s[pos + 2];
            if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
                return pos + 3;
        }
    }

    /*  ?\p{L}+ |  ?\p{N}+ |  ?[^\s\p{L}\p{N}]+ : an optional ASCII space, then a run of
     * one class. A space followed by a space (or by nothing) matches none of these. */
    size_t start = pos;
    if (s[pos] == ' ' && pos + 1 < len) start = pos + 1;
    size_t clen;
    th_char_class cls = class_at(s, len, start, &clen);
    if (cls != TH_CC_SPACE) return run_end(s, len, start + clen, cls);

    /* \s+(?!\S) | \s+ : a whitespace run. When a non-space follows it, the first form
     * gives the last whitespace character back (so " word" keeps its space), unless that
     * would leave the run empty, and then the second form takes the single character. */
    size_t end = pos, last = pos;
    while (end < len) {
        if (class_at(s, len, end, &clen) != TH_CC_SPACE) break;
        last = end;
        end += clen;
    }
    if (end == len || last == pos) return end;
    return last;
}
