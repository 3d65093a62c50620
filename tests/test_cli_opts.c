/* test_cli_opts.c: the CLI's table-driven option parser (src/cli/cli_opts.c, compiled in
 * here): every kind stores what it should, every bad command line exits 2 with a message
 * naming the option and the value, and the help lists every option of every table. Then
 * the binary: the same messages and exit codes end to end, and `--help` for every command. */
#include <stdarg.h>
#include <sys/wait.h>

#include "cli/cli_opts.c"
#include "test_util.h"

static char err_text[4096], out_text[16384];

/* Reads what fd `fd` got since it was redirected into `tmp`, and puts fd back. */
static void restore(int fd, int saved, FILE *tmp, char *buf, size_t cap) {
    fflush(fd == 1 ? stdout : stderr);
    dup2(saved, fd);
    close(saved);
    rewind(tmp);
    size_t n = fread(buf, 1, cap - 1, tmp);
    buf[n] = '\0';
    fclose(tmp);
}

/* cli_parse on the NULL-terminated arguments after the command name, with stdout and stderr
 * captured into out_text and err_text. */
static int parse(const cli_cmd *c, ...) {
    char *argv[32] = {"cmd"};
    int argc = 1;
    va_list ap;
    va_start(ap, c);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 31;) argv[argc++] = a;
    va_end(ap);
    FILE *te = tmpfile(), *to = tmpfile();
    fflush(stdout);
    fflush(stderr);
    int se = dup(2), so = dup(1);
    dup2(fileno(te), 2);
    dup2(fileno(to), 1);
    int rc = cli_parse(c, argc, argv);
    restore(2, se, te, err_text, sizeof err_text);
    restore(1, so, to, out_text, sizeof out_text);
    return rc;
}

static const char *const colors[] = {"red", "green", NULL};
static const int color_values[] = {7, 9};

typedef struct {
    int flag, n, color, n_files, n_models, n_pos;
    long big;
    uint64_t seed;
    double x;
    const char *name, *json, *files[2], *models[3], *pos[1];
    char **rest;
    uint32_t has;
} dest;

static void init(dest *d, cli_opt *t) {
    memset(d, 0, sizeof *d);
    d->color = -1;
    const cli_opt opts[] = {
        CLI_O_FLAG("--flag", &d->flag, "a flag"),
        CLI_O_INT("--n", "N", &d->n, 1, 10, "an int in [1, 10]", .has = &d->has, .bit = 4),
        CLI_O_LONG("--big", "N", &d->big, -5, 5, "a long"),
        CLI_O_U64("--seed", "S", &d->seed, 0, 0x7fffffffffffffffL, "a seed"),
        CLI_O_HEAD("second part"),
        CLI_O_DBL("--x", "X", &d->x, 0.5, 2, "a number in [0.5, 2]\nover two lines"),
        CLI_O_STR("--name", "NAME", &d->name, "a string"),
        CLI_O_OPTSTR("--json", "[FILE]", &d->json, "an optional value"),
        CLI_O_REPEAT("--file", "F", d->files, 2, &d->n_files, "repeatable, twice at most"),
        CLI_O_LIST("--models", "M", d->models, 3, &d->n_models, "a list"),
        CLI_O_CHOICE("--color", &d->color, colors, color_values, "red or green"),
        {0},
    };
    memcpy(t, opts, sizeof opts);
}

static void test_kinds(void) {
    dest d;
    cli_opt t[16];
    init(&d, t);
    cli_cmd c = {.name = "demo", .synopsis = "[options]", .tables = {t}};
    int rc = parse(&c, "--flag", "--n", "10", "--big", "-5", "--seed", "9223372036854775807", "--x", "0.5", "--name",
                   "a b", "--file", "f1", "--file", "f2", "--models", "m1", "m2", "--color", "green", "--json", NULL);
    CHECK(rc == CLI_GO && !err_text[0], "a good command line: rc %d, stderr %s", rc, err_text);
    CHECK(d.flag == 1 && d.n == 10 && d.big == -5 && d.seed == 0x7fffffffffffffffULL && d.x == 0.5,
          "numbers at their bounds: %d %ld %llu %g", d.n, d.big, (unsigned long long)d.seed, d.x);
    CHECK(d.name && !strcmp(d.name, "a b") && d.n_files == 2 && !strcmp(d.files[1], "f2"), "strings and repeats");
    CHECK(d.n_models == 2 && !strcmp(d.models[1], "m2"), "a list stops at the next option: %d", d.n_models);
    CHECK(d.color == 9, "a choice stores its value: %d", d.color);
    CHECK(d.json && !d.json[0], "an optional value left out is \"\"");
    CHECK(d.has == 4, "has |= bit when given: %u", d.has);

    init(&d, t);
    CHECK(parse(&c, "--json", "out.json", NULL) == CLI_GO && d.json && !strcmp(d.json, "out.json") && d.has == 0,
          "an optional value given; has untouched when the option is not");
}

static void test_errors(void) {
    dest d;
    cli_opt t[16];
    init(&d, t);
    cli_cmd c = {.name = "demo", .synopsis = "[options]", .tables = {t}};
    struct {
        const char *a, *b, *want;
    } cases[] = {
        {"--n", "11", "thermo demo: --n 11 is out of range [1, 10]"},
        {"--n", "0", "thermo demo: --n 0 is out of range [1, 10]"},
        {"--n", "3x", "thermo demo: --n expects an integer, got '3x'"},
        {"--big", "", "thermo demo: --big expects an integer, got ''"},
        {"--seed", "-1", "thermo demo: --seed -1 is out of range [0, 9223372036854775807]"},
        {"--seed", "9223372036854775808", "thermo demo: --seed expects an integer, got '9223372036854775808'"},
        {"--x", "2.5", "thermo demo: --x 2.5 is out of range [0.5, 2]"},
        {"--x", "nan", "thermo demo: --x expects a number, got 'nan'"},
        {"--color", "blue", "thermo demo: --color must be red or green, got 'blue'"},
        {"--bogus", NULL, "thermo demo: unknown option --bogus"},
        {"--name", NULL, "thermo demo: --name needs a value"},
        {"stray", NULL, "thermo demo: unexpected argument 'stray'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = parse(&c, cases[i].a, cases[i].b, NULL);
        CHECK(rc == PARSE_USAGE && strstr(err_text, cases[i].want), "%s %s: rc %d, stderr '%s' lacks '%s'", cases[i].a,
              cases[i].b ? cases[i].b : "", rc, err_text, cases[i].want);
    }
    int rc = parse(&c, "--file", "a", "--file", "b", "--file", "c", NULL);
    CHECK(rc == PARSE_USAGE && strstr(err_text, "at most 2 --file values"), "repeat overflow: %d %s", rc, err_text);
    rc = parse(&c, "--models", "a", "b", "c", "d", NULL);
    CHECK(rc == PARSE_USAGE && strstr(err_text, "at most 3 --models values"), "list overflow: %d %s", rc, err_text);
}

static void test_positional_rest_tables(void) {
    dest d;
    cli_opt t[16];
    init(&d, t);
    int first = 0;
    const cli_opt before[] = {CLI_O_FLAG("--n", &first, "takes --n from the table after it"), {0}};
    cli_cmd c = {.name = "demo", .synopsis = "PATH", .tables = {before, t}, .pos = d.pos, .max_pos = 1,
                 .n_pos = &d.n_pos, .pos_name = "PATH", .rest = &d.rest};
    int rc = parse(&c, "p1", "--n", "--", "cmd", "arg", NULL);
    CHECK(rc == CLI_GO && d.n_pos == 1 && !strcmp(d.pos[0], "p1"), "a positional argument: %d %s", rc, err_text);
    CHECK(first == 1 && d.n == 0, "the earlier table wins a name");
    CHECK(d.rest && !strcmp(d.rest[0], "cmd") && !strcmp(d.rest[1], "arg"), "what follows -- is the rest");
    d.n_pos = 0;
    rc = parse(&c, "p1", "p2", NULL);
    CHECK(rc == PARSE_USAGE && strstr(err_text, "one PATH only (got 'p1' and 'p2')"), "two paths: %s", err_text);
    rc = parse(&c, "--", NULL);
    CHECK(rc == PARSE_USAGE && strstr(err_text, "'--' must be followed by a command"), "-- alone: %s", err_text);
}

static void test_help(void) {
    dest d;
    cli_opt t[16];
    init(&d, t);
    cli_cmd c = {.name = "demo", .synopsis = "[options]", .about = "ABOUT\n", .tables = {t}, .epilog = "EPILOG\n"};
    int rc = parse(&c, "--n", "3", "--help", "--n", "99", NULL);
    CHECK(rc == 0 && !err_text[0], "--help returns 0 (exit ok) before reading the rest: %d %s", rc, err_text);
    CHECK(!strncmp(out_text, "usage: thermo demo [options]\nABOUT\n", 35) && strstr(out_text, "EPILOG\n"),
          "usage, about, epilog:\n%s", out_text);
    for (const cli_opt *o = t; o->name; o++) {
        char line[128];
        if (o->kind == CLI_HEADING) snprintf(line, sizeof line, "\n%s:\n", o->name);
        else snprintf(line, sizeof line, "  %s%s%s", o->name, o->arg ? " " : "", o->arg ? o->arg : "");
        CHECK(strstr(out_text, line) != NULL, "help lists '%s':\n%s", line, out_text);
        CHECK(o->kind == CLI_HEADING || strstr(out_text, o->help) || strchr(o->help, '\n'), "help text of %s", o->name);
    }
    CHECK(strstr(out_text, "--color red|green") && strstr(out_text, "--models M ..."), "choice and list labels");
    const char *first = strstr(out_text, "a number in"), *second = strstr(out_text, "over two lines");
    const char *line1 = first, *line2 = second;
    while (line1 && line1 > out_text && line1[-1] != '\n') line1--;
    while (line2 && line2 > out_text && line2[-1] != '\n') line2--;
    CHECK(first && second && first - line1 == second - line2 && strspn(line2, " ") == (size_t)(second - line2),
          "a continuation line starts under the first:\n%s", out_text);
    CHECK(parse(&c, "-h", NULL) == 0 && strstr(out_text, "usage: thermo demo"), "-h is --help");
}

/* Runs the binary with args; stderr into err_text; returns the exit status. */
static int run_bin(const char *args) {
    const char *bin = getenv("THERMO_BIN");
    if (!bin) bin = "build/thermo";
    char path[4200], cmd[8400];
    snprintf(path, sizeof path, "%s/stderr.txt", test_tmp_dir("cli_opts"));
    snprintf(cmd, sizeof cmd, "'%s' %s >/dev/null 2>'%s'", bin, args, path);
    int st = system(cmd);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(err_text, 1, sizeof err_text - 1, f) : 0;
    err_text[n] = '\0';
    if (f) fclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_binary(void) {
    static const char *const commands[] = {"train", "generate", "session", "analyze", "calibrate", "repro",
                                           "bench", "bench model", "bench governor", "bench eco", "estimate",
                                           "sensors", "monitor", "info", "guard", "guard record", "guard show",
                                           "guard memory"};
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        char args[64];
        snprintf(args, sizeof args, "%s --help", commands[i]);
        CHECK(run_bin(args) == 0 && !err_text[0], "thermo %s exits 0: %s", args, err_text);
    }
    struct {
        const char *args, *want;
    } cases[] = {
        {"train --steps 0", "thermo train: --steps 0 is out of range [1, 100000000]"},
        {"train --spike-guard maybe", "thermo train: --spike-guard must be stop, warn or off, got 'maybe'"},
        {"session --out x --hz 0", "thermo session: --hz 0 is out of range [0.1, 1000]"},
        {"session --out x --telemetry t.csv", "--telemetry is set by the session itself"},
        {"generate --top-p 0", "thermo generate: --top-p 0 is out of range [1e-06, 1]"},
        {"generate --nope", "thermo generate: unknown option --nope"},
        {"bench model --baseline blas", "thermo bench model: --baseline must be naive, got 'blas'"},
        {"bench governor --seed 2000000000", "--seed 2000000000 is out of range [0, 1073741824]"},
        {"estimate --power-w 1 --devices 1 --hours 1 --pue 1 --governor pid", "unknown option --governor"},
        {"analyze a b", "thermo analyze: one PATH only (got 'a' and 'b')"},
        {"monitor --out x --", "thermo monitor: '--' must be followed by a command"},
        {"guard memory --batch 0", "thermo guard memory: --batch 0 is out of range [1, 1048576]"},
        {"guard record --mode loud", "thermo guard record: --mode must be stop, warn or off, got 'loud'"},
        {"calibrate --idle-s", "thermo calibrate: --idle-s needs a value"},
        {"repro --json onlyone", "thermo repro: needs at least two session directories"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = run_bin(cases[i].args);
        CHECK(rc == 2 && strstr(err_text, cases[i].want), "thermo %s: exit %d (want 2), stderr '%s' lacks '%s'",
              cases[i].args, rc, err_text, cases[i].want);
    }
}

int main(void) {
    test_kinds();
    test_errors();
    test_positional_rest_tables();
    test_help();
    test_binary();
    return test_summary();
}
