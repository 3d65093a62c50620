/* cli_opts.h (internal to the CLI): the one option parser. A subcommand describes its options
 * in a table (name, kind, range, destination, help) and cli_parse reads argv by it; the help
 * text is printed from the same table, so the two cannot disagree. */
#ifndef THERMO_CLI_OPTS_H
#define THERMO_CLI_OPTS_H

#include <stdint.h>
#include <stdio.h>

typedef enum {
    CLI_HEADING,  /* not an option: a heading line in the help ("waste guards") */
    CLI_FLAG,     /* int *: set to 1; takes no value */
    CLI_INT,      /* int *: a whole decimal number in [ilo, ihi] */
    CLI_LONG,     /* long *: the same */
    CLI_U64,      /* uint64_t *: the same (seeds) */
    CLI_DOUBLE,   /* double *: a finite number in [lo, hi] */
    CLI_STRING,   /* const char **: the value, pointing into argv */
    CLI_OPTIONAL, /* const char **: the next argument unless it is an option, else "" */
    CLI_REPEAT,   /* const char *[max]: one value per occurrence, *count of them */
    CLI_LIST,     /* const char *[max]: every argument up to the next option, *count of them */
    CLI_CHOICE,   /* int *: the index of the value in names (values[index] if values) */
} cli_kind;

typedef struct {
    const char *name;  /* "--steps"; the heading for CLI_HEADING; NULL ends a table */
    cli_kind kind;
    void *dst;         /* the type the kind says; use the CLI_O_* macros, which check it */
    const char *arg;   /* the value in the help ("N"); CLI_CHOICE defaults to a|b|c */
    const char *help;  /* lines separated by '\n' */
    long ilo, ihi;     /* CLI_INT, CLI_LONG, CLI_U64 */
    double lo, hi;     /* CLI_DOUBLE */
    const char *const *names; /* CLI_CHOICE: NULL-terminated */
    const int *values;        /* CLI_CHOICE: parallel to names (NULL: the index) */
    int max, *count;          /* CLI_REPEAT, CLI_LIST */
    uint32_t *has, bit;       /* when given: *has |= bit (has may be NULL) */
} cli_opt;

#define CLI_TYPED(T, p) (1 ? (p) : (T *)0) /* a warning unless p is a T * */
/* One table entry per kind. The last arguments are the help text and, optionally, more
 * designated fields (".has = &mask, .bit = B"). */
#define CLI_O_HEAD(n) {.name = (n), .kind = CLI_HEADING}
#define CLI_O_FLAG(n, d, ...) {.name = (n), .kind = CLI_FLAG, .dst = CLI_TYPED(int, d), .help = __VA_ARGS__}
#define CLI_O_INT(n, a, d, l, u, ...) \
    {.name = (n), .kind = CLI_INT, .dst = CLI_TYPED(int, d), .arg = (a), .ilo = (l), .ihi = (u), .help = __VA_ARGS__}
#define CLI_O_LONG(n, a, d, l, u, ...) \
    {.name = (n), .kind = CLI_LONG, .dst = CLI_TYPED(long, d), .arg = (a), .ilo = (l), .ihi = (u), .help = __VA_ARGS__}
#define CLI_O_U64(n, a, d, l, u, ...)                                                                     \
    {.name = (n), .kind = CLI_U64, .dst = CLI_TYPED(uint64_t, d), .arg = (a), .ilo = (l), .ihi = (u),       \
     .help = __VA_ARGS__}
#define CLI_O_DBL(n, a, d, l, u, ...) \
    {.name = (n), .kind = CLI_DOUBLE, .dst = CLI_TYPED(double, d), .arg = (a), .lo = (l), .hi = (u), .help = __VA_ARGS__}
#define CLI_O_STR(n, a, d, ...) \
    {.name = (n), .kind = CLI_STRING, .dst = CLI_TYPED(const char *, d), .arg = (a), .help = __VA_ARGS__}
#define CLI_O_OPTSTR(n, a, d, ...) \
    {.name = (n), .kind = CLI_OPTIONAL, .dst = CLI_TYPED(const char *, d), .arg = (a), .help = __VA_ARGS__}
#define CLI_O_REPEAT(n, a, d, cap, cnt, ...)                                                                 \
    {.name = (n), .kind = CLI_REPEAT, .dst = CLI_TYPED(const char *, d), .arg = (a), .max = (cap),           \
     .count = CLI_TYPED(int, cnt), .help = __VA_ARGS__}
#define CLI_O_LIST(n, a, d, cap, cnt, ...)                                                                   \
    {.name = (n), .kind = CLI_LIST, .dst = CLI_TYPED(const char *, d), .arg = (a), .max = (cap),             \
     .count = CLI_TYPED(int, cnt), .help = __VA_ARGS__}
#define CLI_O_CHOICE(n, d, nm, vals, ...) \
    {.name = (n), .kind = CLI_CHOICE, .dst = CLI_TYPED(int, d), .names = (nm), .values = (vals), .help = __VA_ARGS__}

#define CLI_MAX_TABLES 4

/* A subcommand's command line: its option tables (searched in order, so an earlier table
 * takes a name from a later one), positional arguments and help text. */
typedef struct {
    const char *name;     /* "train", "bench model": errors read "thermo <name>: ..." */
    const char *synopsis; /* after "usage: thermo <name> " ("[options]", "PATH [options]") */
    const char *about;    /* text between the usage line and the options (NULL: none) */
    const cli_opt *tables[CLI_MAX_TABLES]; /* unused entries NULL */
    const char *epilog;   /* text after the options (NULL: none) */
    const char **pos;     /* positional arguments (NULL: none accepted) */
    int max_pos, *n_pos;
    const char *pos_name; /* "PATH": the error for one too many names it */
    char ***rest;         /* non-NULL: "--" ends the options and *rest is what follows it */
} cli_cmd;

/* cli_parse's "go on": the command line was read and the command should run. */
#define CLI_GO (-1)

/* Reads argv[1..argc-1] by c's tables into their destinations (strings point into argv).
 * --help or -h prints the help on stdout and returns 0 (EXIT_OK); a bad command line
 * (an unknown option, a missing value, a value that is not a number, out of range or not
 * a choice, too many values, an unexpected argument) prints one line naming the option and
 * the value on stderr and returns 2 (EXIT_USAGE); otherwise returns CLI_GO. An argument is
 * an option when it starts with "--". */
int cli_parse(const cli_cmd *c, int argc, char **argv);

/* Prints c's help: the usage line, about, each table's options with their help, epilog. */
void cli_help(const cli_cmd *c, FILE *f);

#endif
