/* text_util.c: the CSV line splitter every table reader shares, the "a, b, c" list
 * builder that error messages use to name what a registry knows, the quiet snprintf and
 * the measuring text buffer the report writers append to (see core.h). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "thermo/core.h"

int th_csv_split(char *line, char **cells, int max_cells) {
    size_t len = strlen(line);
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
    char *r = line; /* reading */
    int n = 0;
    for (;;) {
        if (n == max_cells) return -1;
        char *start = r, *w = r; /* unquoting writes behind the reader, never ahead */
        cells[n] = NULL; /* stays NULL if this cell is faulty */
        if (*r == '"') {
            r++;
            for (;;) {
                if (*r == '\0') return -1; /* unterminated */
                if (*r == '"') {
                    if (r[1] != '"') break;
                    r++;
                }
                *w++ = *r++;
            }
            r++; /* the closing quote */
            if (*r != ',' && *r != '\0') return -1; /* text after the closing quote */
        } else {
            while (*r != ',' && *r != '\0') {
                if (*r == '"') return -1; /* a quote inside an unquoted field */
                *w++ = *r++;
            }
        }
        char end = *r; /* the terminator may land on this comma: read it first */
        *w = '\0';
        cells[n++] = start;
        if (end == '\0') return n;
        r++;
    }
}

void th_names_join(char *buf, size_t cap, const char *(*name_at)(size_t i, void *user), void *user,
                   const char *sep) {
    if (cap == 0) return;
    static const char more[] = "...";
    size_t used = 0, seplen = strlen(sep);
    buf[0] = '\0';
    const char *name;
    for (size_t i = 0; (name = name_at(i, user)) != NULL; i++) {
        size_t add = (i ? seplen : 0) + strlen(name);
        if (used + add + 1 > cap) {
            size_t at = cap > sizeof more ? cap - sizeof more : 0; /* room for "...\0" */
            if (at > used) at = used;
            snprintf(buf + at, cap - at, "%s", more);
            return;
        }
        if (i) memcpy(buf + used, sep, seplen);
        memcpy(buf + used + (i ? seplen : 0), name, strlen(name) + 1);
        used += add;
    }
}

void th_vfmt(char *dst, size_t n, const char *fmt, va_list ap) {
    if (!n) return;
    if (vsnprintf(dst, n, fmt, ap) < 0) dst[0] = '\0';
}

void th_fmt(char *dst, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    th_vfmt(dst, n, fmt, ap);
    va_end(ap);
}

void th_textbuf_printf(th_textbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->len < b->cap ? b->cap - b->len : 0;
    int n = vsnprintf(room ? b->buf + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0) b->len += (size_t)n;
}
