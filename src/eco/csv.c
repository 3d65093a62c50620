/* csv.c: a small, strict CSV reader for the factor tables. Hand-written because the
 * format is tiny and every error must name the row and column; anything it does not
 * understand is an error, never a guess. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eco/eco_internal.h"

#define CSV_MAX_BYTES (4u << 20)

void th_csv_free(th_csv *c) {
    if (!c) return;
    if (c->header) {
        for (size_t i = 0; i < c->ncols; i++) free(c->header[i]);
        free(c->header);
    }
    if (c->cells) {
        for (size_t i = 0; i < c->nrows * c->ncols; i++) free(c->cells[i]);
        free(c->cells);
    }
    free(c->line);
    memset(c, 0, sizeof *c);
}

int th_csv_col(const th_csv *c, const char *name) {
    for (size_t i = 0; i < c->ncols; i++)
        if (strcmp(c->header[i], name) == 0) return (int)i;
    return -1;
}

/* Growable list of field strings for the row being parsed. */
typedef struct {
    char **v;
    size_t n, cap;
} fields;

static int fields_push(fields *f, const char *s, size_t len) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        char **v = realloc(f->v, cap * sizeof *v);
        if (!v) return 0;
        f->v = v;
        f->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return 0;
    memcpy(copy, s, len);
    copy[len] = '\0';
    f->v[f->n++] = copy;
    return 1;
}

static void fields_clear(fields *f) {
    for (size_t i = 0; i < f->n; i++) free(f->v[i]);
    f->n = 0;
}

/* Splits one line (without its newline) into fields. Returns TH_OK or a format error
 * naming the line and the column where parsing stopped. */
static th_status split_line(const char *path, size_t lineno, const char *s, size_t len, fields *out, char *scratch) {
    size_t i = 0;
    for (;;) {
        size_t col = out->n + 1;
        size_t n = 0;
        if (i < len && s[i] == '"') {
            i++;
            for (;;) {
                if (i >= len)
                    return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %zu: unterminated quoted field", path, lineno, col);
                if (s[i] == '"') {
                    if (i + 1 < len && s[i + 1] == '"') {
                        scratch[n++] = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                scratch[n++] = s[i++];
            }
            if (i < len && s[i] != ',')
                return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %zu: text after the closing quote", path, lineno, col);
        } else {
            while (i < len && s[i] != ',') {
                if (s[i] == '"')
                    return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %zu: quote inside an unquoted field", path,
                                   lineno, col);
                scratch[n++] = s[i++];
            }
        }
        if (!fields_push(out, scratch, n)) return th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
        if (i >= len) return TH_OK;
        i++; /* the comma */
    }
}

th_status th_csv_read(const char *path, th_csv *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->path, sizeof out->path, "%s", path);
    FILE *f = fopen(path, "rb");
    if (!f) return th_fail(TH_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = malloc(CSV_MAX_BYTES + 1);
    char *scratch = malloc(CSV_MAX_BYTES + 1);
    fields row = {0};
    th_status st = TH_OK;
    if (!buf || !scratch) {
        st = th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    size_t size = fread(buf, 1, CSV_MAX_BYTES + 1, f);
    if (ferror(f)) {
        st = th_fail(TH_ERR_IO, "%s: read error", path);
        goto done;
    }
    if (size > CSV_MAX_BYTES) {
        st = th_fail(TH_ERR_FORMAT, "%s: larger than %u bytes; not a factor table", path, CSV_MAX_BYTES);
        goto done;
    }
    if (memchr(buf, '\0', size)) {
        st = th_fail(TH_ERR_FORMAT, "%s: contains a NUL byte; not a text table", path);
        goto done;
    }
    size_t cap_rows = 0;
    size_t pos = 0, lineno = 0;
    while (pos < size) {
        size_t start = pos;
        while (pos < size && buf[pos] != '\n') pos++;
        size_t len = pos - start;
        if (pos < size) pos++; /* newline */
        lineno++;
        if (len && buf[start + len - 1] == '\r') len--;
        if (len == 0 || buf[start] == '#') continue;
        fields_clear(&row);
        st = split_line(path, lineno, buf + start, len, &row, scratch);
        if (st != TH_OK) goto done;
        if (!out->header) {
            for (size_t i = 0; i < row.n; i++) {
                if (row.v[i][0] == '\0') {
                    st = th_fail(TH_ERR_FORMAT, "%s: row %zu, column %zu: empty column name in the header", path, lineno, i + 1);
                    goto done;
                }
                for (size_t j = 0; j < i; j++)
                    if (strcmp(row.v[i], row.v[j]) == 0) {
                        st = th_fail(TH_ERR_FORMAT, "%s: row %zu: column '%s' appears twice in the header", path, lineno,
                                     row.v[i]);
                        goto done;
                    }
            }
            out->header = row.v;
            out->ncols = row.n;
            row.v = NULL;
            row.n = row.cap = 0;
            continue;
        }
        if (row.n != out->ncols) {
            st = th_fail(TH_ERR_FORMAT, "%s: row %zu: %zu fields, the header has %zu", path, lineno, row.n, out->ncols);
            goto done;
        }
        if (out->nrows == cap_rows) {
            size_t nc = cap_rows ? cap_rows * 2 : 32;
            char **cells = realloc(out->cells, nc * out->ncols * sizeof *cells);
            if (!cells) {
                st = th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
                goto done;
            }
            out->cells = cells;
            size_t *lines = realloc(out->line, nc * sizeof *lines);
            if (!lines) {
                st = th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
                goto done;
            }
            out->line = lines;
            cap_rows = nc;
        }
        memcpy(out->cells + out->nrows * out->ncols, row.v, out->ncols * sizeof *row.v);
        out->line[out->nrows] = lineno;
        out->nrows++;
        row.n = 0; /* ownership moved to out->cells */
    }
    if (!out->header) st = th_fail(TH_ERR_FORMAT, "%s: empty file (no header)", path);
done:
    fields_clear(&row);
    free(row.v);
    free(buf);
    free(scratch);
    fclose(f);
    if (st != TH_OK) {
        char keep[512];
        memcpy(keep, out->path, sizeof keep);
        th_csv_free(out);
        memcpy(out->path, keep, sizeof keep);
    }
    return st;
}
