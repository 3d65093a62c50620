/* eco_internal.h (internal to src/eco): the strict CSV reader the factor tables use.
 * Files are small (a few kB), so a table is read whole into memory and split in place. */
#ifndef THERMO_ECO_INTERNAL_H
#define THERMO_ECO_INTERNAL_H

#include <stddef.h>

#include "thermo/core.h"

typedef struct {
    char path[512];
    size_t ncols;
    char **header;   /* ncols names */
    size_t nrows;
    char **cells;    /* nrows * ncols field texts, row-major */
    size_t *line;    /* file line number of each row (1-based), for messages */
    char *text;      /* the file, split in place: header and cells point into it */
} th_csv;

/* Reads `path`: comma-separated, the first non-comment line is the header, fields may be
 * "quoted" ("" for a quote inside), lines starting with '#' and empty lines are skipped,
 * CRLF accepted. Every row must have as many fields as the header; header names must be
 * unique and non-empty. Errors name the file, line and column (TH_ERR_IO, TH_ERR_FORMAT,
 * TH_ERR_NOMEM). On failure *out is zeroed but for its path. Free with th_csv_free. */
th_status th_csv_read(const char *path, th_csv *out);
void th_csv_free(th_csv *c);

/* Index of column `name`, or -1. */
int th_csv_col(const th_csv *c, const char *name);

static inline const char *th_csv_cell(const th_csv *c, size_t row, size_t col) { return c->cells[row * c->ncols + col]; }

#endif
