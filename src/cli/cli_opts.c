/* cli_opts.c: the table-driven option parser every subcommand shares (cli_opts.h): one loop
 * over argv, one number parser with one set of messages, and the help printed from the same
 * tables the parser reads. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_opts.h"

enum { PARSE_USAGE = 2 }; /* EXIT_USAGE (cli.h), kept here so the parser stands alone */

static int is_option(const char *a) { return a[0] == '-' && a[1] == '-'; }

static const cli_opt *find(const cli_cmd *c, const char *name) {
    for (int t = 0; t < CLI_MAX_TABLES && c->tables[t]; t++)
        for (const cli_opt *o = c->tables[t]; o->name; o++)
            if (o->kind != CLI_HEADING && !strcmp(o->name, name)) return o;
    return NULL;
}

/* "a, b or c" into buf. */
static const char *choices(const cli_opt *o, const char *sep, const char *last, char *buf, size_t cap) {
    size_t n = 0;
    buf[0] = '\0';
    for (int k = 0; o->names[k] && n < cap; k++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", k == 0 ? "" : o->names[k + 1] ? sep : last, o->names[k]);
    return buf;
}

/* Stores text in o's destination; 0 after printing why it cannot. */
static int store_number(const cli_cmd *c, const cli_opt *o, const char *text) {
    char *end;
    errno = 0;
    if (o->kind == CLI_DOUBLE) {
        double v = strtod(text, &end);
        if (errno || end == text || *end || !isfinite(v)) {
            fprintf(stderr, "thermo %s: %s expects a number, got '%s'\n", c->name, o->name, text);
            return 0;
        }
        if (v < o->lo || v > o->hi) {
            fprintf(stderr, "thermo %s: %s %g is out of range [%g, %g]\n", c->name, o->name, v, o->lo, o->hi);
            return 0;
        }
        *(double *)o->dst = v;
        return 1;
    }
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end) {
        fprintf(stderr, "thermo %s: %s expects an integer, got '%s'\n", c->name, o->name, text);
        return 0;
    }
    if (v < o->ilo || v > o->ihi) {
        fprintf(stderr, "thermo %s: %s %ld is out of range [%ld, %ld]\n", c->name, o->name, v, o->ilo, o->ihi);
        return 0;
    }
    if (o->kind == CLI_INT) *(int *)o->dst = (int)v;
    else if (o->kind == CLI_LONG) *(long *)o->dst = v;
    else *(uint64_t *)o->dst = (uint64_t)v;
    return 1;
}

static int store_choice(const cli_cmd *c, const cli_opt *o, const char *text) {
    for (int k = 0; o->names[k]; k++)
        if (!strcmp(o->names[k], text)) {
            *(int *)o->dst = o->values ? o->values[k] : k;
            return 1;
        }
    char buf[256];
    fprintf(stderr, "thermo %s: %s must be %s, got '%s'\n", c->name, o->name, choices(o, ", ", " or ", buf, sizeof buf),
            text);
    return 0;
}

static int append(const cli_cmd *c, const cli_opt *o, const char *text) {
    if (*o->count == o->max) {
        fprintf(stderr, "thermo %s: at most %d %s values\n", c->name, o->max, o->name);
        return 0;
    }
    ((const char **)o->dst)[(*o->count)++] = text;
    return 1;
}

/* Reads option o at argv[*i] and its values, advancing *i past them; 0 after an error. */
static int take(const cli_cmd *c, const cli_opt *o, int argc, char **argv, int *i) {
    if (o->has) *o->has |= o->bit;
    switch (o->kind) {
    case CLI_FLAG: *(int *)o->dst = 1; return 1;
    case CLI_OPTIONAL:
        *(const char **)o->dst = *i + 1 < argc && !is_option(argv[*i + 1]) ? argv[++*i] : "";
        return 1;
    case CLI_LIST:
        while (*i + 1 < argc && !is_option(argv[*i + 1]))
            if (!append(c, o, argv[++*i])) return 0;
        return 1;
    default: break;
    }
    if (*i + 1 >= argc) {
        fprintf(stderr, "thermo %s: %s needs a value\n", c->name, o->name);
        return 0;
    }
    const char *v = argv[++*i];
    switch (o->kind) {
    case CLI_STRING: *(const char **)o->dst = v; return 1;
    case CLI_REPEAT: return append(c, o, v);
    case CLI_CHOICE: return store_choice(c, o, v);
    default: return store_number(c, o, v);
    }
}

int cli_parse(const cli_cmd *c, int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cli_help(c, stdout);
            return 0;
        }
        if (c->rest && !strcmp(a, "--")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "thermo %s: '--' must be followed by a command\n", c->name);
                return PARSE_USAGE;
            }
            *c->rest = argv + i + 1;
            return CLI_GO;
        }
        if (!is_option(a)) {
            if (c->pos && *c->n_pos < c->max_pos) {
                c->pos[(*c->n_pos)++] = a;
                continue;
            }
            if (c->pos && c->max_pos == 1)
                fprintf(stderr, "thermo %s: one %s only (got '%s' and '%s')\n", c->name, c->pos_name, c->pos[0], a);
            else
                fprintf(stderr, "thermo %s: unexpected argument '%s' (thermo %s --help)\n", c->name, a, c->name);
            return PARSE_USAGE;
        }
        const cli_opt *o = find(c, a);
        if (!o) {
            fprintf(stderr, "thermo %s: unknown option %s (thermo %s --help lists them)\n", c->name, a, c->name);
            return PARSE_USAGE;
        }
        if (!take(c, o, argc, argv, &i)) return PARSE_USAGE;
    }
    return CLI_GO;
}

/* Prints text with every line but the first indented by `indent` columns. */
static void print_wrapped(FILE *f, const char *text, int indent) {
    for (const char *p = text;;) {
        const char *nl = strchr(p, '\n');
        if (!nl) {
            fprintf(f, "%s\n", p);
            return;
        }
        fprintf(f, "%.*s\n%*s", (int)(nl - p), p, indent, "");
        p = nl + 1;
    }
}

/* "--name ARG" into buf. */
static const char *label(const cli_opt *o, char *buf, size_t cap) {
    char alt[256];
    const char *arg = o->arg;
    if (!arg && o->kind == CLI_CHOICE) arg = choices(o, "|", "|", alt, sizeof alt);
    if (!arg && o->kind != CLI_FLAG) arg = "X";
    snprintf(buf, cap, "%s%s%s%s", o->name, arg ? " " : "", arg ? arg : "", o->kind == CLI_LIST ? " ..." : "");
    return buf;
}

void cli_help(const cli_cmd *c, FILE *f) {
    enum { MAX_COL = 24 };
    char buf[320];
    int col = 0;
    for (int t = 0; t < CLI_MAX_TABLES && c->tables[t]; t++)
        for (const cli_opt *o = c->tables[t]; o->name; o++) {
            int w = o->kind == CLI_HEADING ? 0 : (int)strlen(label(o, buf, sizeof buf));
            if (w > col && w <= MAX_COL) col = w;
        }
    fprintf(f, "usage: thermo %s %s\n", c->name, c->synopsis);
    if (c->about) fputs(c->about, f);
    for (int t = 0; t < CLI_MAX_TABLES && c->tables[t]; t++)
        for (const cli_opt *o = c->tables[t]; o->name; o++) {
            if (o->kind == CLI_HEADING) {
                fprintf(f, "%s:\n", o->name);
                continue;
            }
            label(o, buf, sizeof buf);
            if ((int)strlen(buf) > col) fprintf(f, "  %s\n  %*s  ", buf, col, ""); /* too long: help below */
            else fprintf(f, "  %-*s  ", col, buf);
            print_wrapped(f, o->help ? o->help : "", col + 4);
        }
    if (c->epilog) fputs(c->epilog, f);
}
