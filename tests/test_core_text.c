/* test_core_text.c: th_csv_split (RFC 4180 quoting, in place, the malformed cases and
 * the NULL slot that names the faulty column), th_names_join (separators, truncation
 * with "...", tiny buffers), th_fmt (quiet truncation, n = 0) and th_textbuf (measure,
 * then format into exactly that many bytes). */
#include "thermo/core.h"

#include "test_util.h"

static int split(const char *text, char **cells, int max, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", text);
    return th_csv_split(buf, cells, max);
}

static void test_csv(void) {
    char buf[256], *c[8];
    CHECK(split("a,b,c\r\n", c, 8, buf, sizeof buf) == 3 && !strcmp(c[0], "a") && !strcmp(c[1], "b") &&
              !strcmp(c[2], "c"),
          "plain line with CRLF");
    CHECK(split("", c, 8, buf, sizeof buf) == 1 && c[0][0] == '\0', "empty line is one empty cell");
    CHECK(split(",,", c, 8, buf, sizeof buf) == 3 && !c[0][0] && !c[1][0] && !c[2][0], "empty cells");
    CHECK(split("\"My grid, Inc.\",x", c, 8, buf, sizeof buf) == 2 && !strcmp(c[0], "My grid, Inc.") &&
              !strcmp(c[1], "x"),
          "comma inside quotes: %s", c[0]);
    CHECK(split("\"say \"\"hi\"\"\",\"\"", c, 8, buf, sizeof buf) == 2 && !strcmp(c[0], "say \"hi\"") &&
              !strcmp(c[1], ""),
          "doubled quotes: [%s]", c[0]);
    CHECK(split("a,b,c", c, 3, buf, sizeof buf) == 3, "exactly max_cells");
    CHECK(split("a,b,c,d", c, 3, buf, sizeof buf) == -1, "more than max_cells");
    CHECK(split("a,\"open", c, 8, buf, sizeof buf) == -1 && !strcmp(c[0], "a") && c[1] == NULL,
          "unterminated quote names column 2");
    CHECK(split("a,b\"c", c, 8, buf, sizeof buf) == -1 && c[1] == NULL, "quote inside an unquoted field");
    CHECK(split("\"a\"b,c", c, 8, buf, sizeof buf) == -1 && c[0] == NULL, "text after a closing quote");
}

static const char *const names[] = {"none", "bang_bang", "step_wise", "pid", "predictive"};

static const char *name_at(size_t i, void *user) {
    size_t n = *(size_t *)user;
    return i < n ? names[i] : NULL;
}

static void test_names(void) {
    char buf[64];
    size_t n = 5;
    th_names_join(buf, sizeof buf, name_at, &n, ", ");
    CHECK(!strcmp(buf, "none, bang_bang, step_wise, pid, predictive"), "all: %s", buf);
    n = 0;
    th_names_join(buf, sizeof buf, name_at, &n, ", ");
    CHECK(buf[0] == '\0', "empty registry: %s", buf);
    n = 1;
    th_names_join(buf, sizeof buf, name_at, &n, " ");
    CHECK(!strcmp(buf, "none"), "one: %s", buf);
    n = 5;
    char small[20];
    th_names_join(small, sizeof small, name_at, &n, ", ");
    CHECK(strlen(small) < sizeof small && strstr(small, "...") && !strncmp(small, "none, bang_bang", 15),
          "truncated: %s", small);
    char tiny[3];
    th_names_join(tiny, sizeof tiny, name_at, &n, ", ");
    CHECK(strlen(tiny) < sizeof tiny, "tiny buffer stays terminated: %s", tiny);
    char exact[10]; /* "none, bang_bang" does not fit: the cut falls after the last whole name */
    th_names_join(exact, sizeof exact, name_at, &n, ", ");
    CHECK(!strcmp(exact, "none..."), "cut at a name: %s", exact);
}

static void test_fmt(void) {
    char buf[8] = "xxxxxxx";
    th_fmt(buf, sizeof buf, "%s-%d", "abc", 42);
    CHECK(!strcmp(buf, "abc-42"), "fits: %s", buf);
    th_fmt(buf, sizeof buf, "%s", "a longer label");
    CHECK(!strcmp(buf, "a longe"), "cut quietly to 7 bytes and a NUL: %s", buf);
    char one = 'z';
    th_fmt(&one, 0, "%s", "nothing");
    CHECK(one == 'z', "n = 0 writes nothing");
}

static void fill(th_textbuf *b) {
    th_textbuf_printf(b, "energy %.1f J", 12.5);
    th_textbuf_printf(b, "%s", "");
    th_textbuf_printf(b, ", peak %d C\n", 71);
}

static void test_textbuf(void) {
    const char *want = "energy 12.5 J, peak 71 C\n";
    th_textbuf m = {NULL, 0, 0};
    fill(&m);
    CHECK(m.len == strlen(want), "measured %zu bytes, want %zu", m.len, strlen(want));
    char *buf = malloc(m.len + 1);
    th_textbuf b = {buf, m.len + 1, 0};
    fill(&b);
    CHECK(b.len == m.len && !strcmp(buf, want), "formatted into the measured size: [%s]", buf);
    free(buf);
    char small[10];
    th_textbuf s = {small, sizeof small, 0};
    fill(&s);
    CHECK(s.len == m.len && !strcmp(small, "energy 12"), "past cap: counted, cut, terminated: [%s] %zu", small, s.len);
}

int main(void) {
    test_csv();
    test_names();
    test_fmt();
    test_textbuf();
    return test_summary();
}
