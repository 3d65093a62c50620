/* csv.c: a small, strict CSV reader for the factor tables: the file is read whole, each
 * line split in place by core's th_csv_split, and every error names the row and column;
 * anything it does not understand is an error, never a guess. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "eco/eco_internal.h"

#define CSV_MAX_BYTES (4u << 20)
#define CSV_MAX_COLS 64

void th_csv_free(th_csv *c) {
    if (!c) return;
    th_free(c->header);
    th_free(c->cells);
    th_free(c->line);
    th_free(c->text);
    memset(c, 0, sizeof *c);
}

int th_csv_col(const th_csv *c, const char *name) {
    for (size_t i = 0; i < c->ncols; i++)
        if (strcmp(c->header[i], name) == 0) return (int)i;
    return -1;
}

/* Reads the whole file into a th_alloc'd, NUL-terminated buffer. */
static th_status read_text(const char *path, char **out, size_t *size) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return th_fail(TH_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    th_status st = TH_OK;
    char *buf = th_alloc(CSV_MAX_BYTES + 1);
    if (!buf) {
        st = th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    *size = fread(buf, 1, CSV_MAX_BYTES + 1, f);
    if (ferror(f))
        st = th_fail(TH_ERR_IO, "%s: read error", path);
    else if (*size > CSV_MAX_BYTES)
        st = th_fail(TH_ERR_FORMAT, "%s: larger than %u bytes; not a factor table", path, CSV_MAX_BYTES);
    else if (memchr(buf, '\0', *size))
        st = th_fail(TH_ERR_FORMAT, "%s: contains a NUL byte; not a text table", path);
done:
    fclose(f);
    if (st != TH_OK) {
        th_free(buf);
        return st;
    }
    buf[*size] = '\0';
    *out = buf;
    return TH_OK;
}

/* Checks the header's names: non-empty and unique. */
static th_status check_header(const char *path, size_t lineno, char **v, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (v[i][0] == '\0')
            return th_fail(TH_ERR_FORMAT, "%s: row %zu, column %zu: empty column name in the header", path, lineno, i + 1);
        for (size_t j = 0; j < i; j++)
            if (strcmp(v[i], v[j]) == 0)
                return th_fail(TH_ERR_FORMAT, "%s: row %zu: column '%s' appears twice in the header", path, lineno, v[i]);
    }
    return TH_OK;
}

/* Appends one data row (its cells point into c->text). */
static th_status add_row(th_csv *c, size_t *cap_rows, char **cells, size_t lineno) {
    if (c->nrows == *cap_rows) {
        size_t nc = *cap_rows ? *cap_rows * 2 : 32;
        char **grown = th_realloc(c->cells, nc * c->ncols * sizeof *grown);
        if (!grown) return th_fail(TH_ERR_NOMEM, "%s: out of memory", c->path);
        c->cells = grown;
        size_t *lines = th_realloc(c->line, nc * sizeof *lines);
        if (!lines) return th_fail(TH_ERR_NOMEM, "%s: out of memory", c->path);
        c->line = lines;
        *cap_rows = nc;
    }
    memcpy(c->cells + c->nrows * c->ncols, cells, c->ncols * sizeof *cells);
    c->line[c->nrows++] = lineno;
    return TH_OK;
}

th_status th_csv_read(const char *path, th_csv *out) {
    memset(out, 0, sizeof *out);
    snprintf(out->path, sizeof out->path, "%s", path);
    size_t size = 0;
    th_status st = read_text(path, &out->text, &size);
    if (st != TH_OK) return st;
    char *cells[CSV_MAX_COLS];
    size_t cap_rows = 0, lineno = 0;
    for (char *line = out->text, *next; line < out->text + size; line = next) {
        char *nl = strchr(line, '\n');
        next = nl ? nl + 1 : out->text + size;
        if (nl) *nl = '\0';
        lineno++;
        if (line[0] == '\0' || (line[0] == '\r' && line[1] == '\0') || line[0] == '#') continue;
        int n = th_csv_split(line, cells, CSV_MAX_COLS);
        if (n < 0) {
            size_t col = 0;
            while (col < CSV_MAX_COLS && cells[col]) col++;
            st = col == CSV_MAX_COLS
                     ? th_fail(TH_ERR_FORMAT, "%s: row %zu: more than %d fields", path, lineno, CSV_MAX_COLS)
                     : th_fail(TH_ERR_FORMAT,
                               "%s: row %zu, column %zu: bad quoting (an unterminated quoted field, a quote "
                               "inside an unquoted field or text after the closing quote)",
                               path, lineno, col + 1);
            goto done;
        }
        if (!out->header) {
            if ((st = check_header(path, lineno, cells, (size_t)n)) != TH_OK) goto done;
            out->header = th_alloc((size_t)n * sizeof *out->header);
            if (!out->header) {
                st = th_fail(TH_ERR_NOMEM, "%s: out of memory", path);
                goto done;
            }
            memcpy(out->header, cells, (size_t)n * sizeof *cells);
            out->ncols = (size_t)n;
            continue;
        }
        if ((size_t)n != out->ncols) {
            st = th_fail(TH_ERR_FORMAT, "%s: row %zu: %d fields, the header has %zu", path, lineno, n, out->ncols);
            goto done;
        }
        if ((st = add_row(out, &cap_rows, cells, lineno)) != TH_OK) goto done;
    }
    if (!out->header) st = th_fail(TH_ERR_FORMAT, "%s: empty file (no header)", path);
done:
    if (st != TH_OK) {
        char keep[sizeof out->path];
        memcpy(keep, out->path, sizeof keep);
        th_csv_free(out);
        memcpy(out->path, keep, sizeof keep);
    }
    return st;
}
