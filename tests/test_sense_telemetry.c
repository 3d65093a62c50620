/* test_sense_telemetry.c: the telemetry log round trip (CSV and JSONL: every column back
 * as written, kinds sample/step/token, origin and health, empty cells absent), thread-safe
 * appends from several threads, malformed files rejected naming file and line, the
 * tolerant mode (bad lines skipped, counted, reported with their line numbers), logs in
 * the previous format (one duty column, no origin) read in both modes, and trace replay
 * by sample time (origin replayed, the end of the trace reads as vanished). */
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"
#include "thermo/sense.h"

static uint64_t fake_ns;
static uint64_t fake_clock(void *user) {
    (void)user;
    return fake_ns;
}

static const char *tmp_path(const char *name) {
    static char p[8][4200];
    static int k;
    k = (k + 1) % 8;
    snprintf(p[k], sizeof p[k], "%s/%s", test_tmp_dir("sense_telemetry"), name);
    return p[k];
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static const char *const HEADER =
    "t_s,kind,origin,source,temp_c,power_w,energy_j,util,health,duty_set,duty_measured,threads,step,loss,grad_norm,"
    "lr,tokens,step_ms,unit_j";
static const char *const OLD_HEADER =
    "t_s,kind,source,temp_c,power_w,energy_j,util,duty,threads,step,loss,grad_norm,lr,tokens,step_ms";

static void round_trip(th_telemetry_format fmt, const char *path) {
    th_telemetry *t;
    const uint64_t t0 = 5000000000ull;
    CHECK(th_telemetry_open(path, fmt, t0, &t) == TH_OK, "%s", th_last_error());
    th_sample s;
    memset(&s, 0, sizeof s);
    s.t_ns = t0 + 123456000ull;
    s.temp_mc = 71234;
    s.power_uw = 312500123;
    s.energy_uj = 9876543210ull;
    s.util = 0.625;
    s.valid = TH_SAMPLE_TEMP | TH_SAMPLE_POWER | TH_SAMPLE_ENERGY | TH_SAMPLE_UTIL;
    s.origin = TH_ORIGIN_MEASURED;
    snprintf(s.source, sizeof s.source, "hwmon:coretemp/Package id 0, \"quoted\"");
    th_telemetry_pace pace = {0.75, 0.625, 2};
    CHECK(th_telemetry_add_sample(t, &s, TH_HEALTH_STALE, &pace) == TH_OK, "sample");
    th_sample s2 = s;
    s2.t_ns = t0 + 223456000ull;
    s2.valid = TH_SAMPLE_TEMP; /* only a temperature */
    s2.origin = TH_ORIGIN_MODELED;
    snprintf(s2.source, sizeof s2.source, "sim:h100-sxm");
    CHECK(th_telemetry_add_sample(t, &s2, TH_HEALTH_OK, NULL) == TH_OK, "partial sample");
    th_telemetry_unit u = {TH_UNIT_STEP, t0 + 300000000ull, 17, 3.25, 1.5e-3, 6e-4, 4096, 812.5, 12.5,
                           {0.5, 0.4375, 2}, TH_ORIGIN_MODELED};
    CHECK(th_telemetry_add_unit(t, &u) == TH_OK, "step");
    th_telemetry_unit u2 = {TH_UNIT_STEP, t0 + 400000000ull, 18, 3.125, NAN, NAN, -1, -1, NAN, {NAN, NAN, -1},
                            TH_ORIGIN_MEASURED};
    CHECK(th_telemetry_add_unit(t, &u2) == TH_OK, "partial step");
    th_telemetry_unit tok = {TH_UNIT_TOKEN, t0 + 500000000ull, 0, NAN, NAN, NAN, 12, 40.0, 0.003125,
                             {0.8, 0.75, -1}, TH_ORIGIN_REPLAYED};
    CHECK(th_telemetry_add_unit(t, &tok) == TH_OK, "token");
    CHECK(th_telemetry_close(t) == TH_OK, "close");

    th_telemetry_row *rows;
    size_t n;
    CHECK(th_telemetry_read(path, &rows, &n) == TH_OK && n == 5, "%s: %zu rows", th_last_error(), n);
    if (n != 5) return;
    const th_telemetry_row *a = &rows[0], *b = &rows[1], *c = &rows[2], *d = &rows[3], *e = &rows[4];
    CHECK(a->kind == TH_ROW_SAMPLE && !a->is_step && fabs(a->t_s - 0.123456) < 1e-9 && strcmp(a->source, s.source) == 0,
          "sample row: %s", a->source);
    CHECK(llround(a->temp_c * 1000) == 71234 && llround(a->power_w * 1e6) == 312500123 &&
              llround(a->energy_j * 1e6) == 9876543210ll && a->util == 0.625,
          "sample values exact");
    CHECK(a->duty_set == 0.75 && a->duty_measured == 0.625 && a->threads == 2 &&
              (a->has & (TH_COL_DUTY_SET | TH_COL_DUTY_MEASURED | TH_COL_THREADS)) ==
                  (TH_COL_DUTY_SET | TH_COL_DUTY_MEASURED | TH_COL_THREADS),
          "pace recorded: set %g measured %g", a->duty_set, a->duty_measured);
    CHECK((a->has & TH_COL_HEALTH) && a->health == TH_HEALTH_STALE, "health recorded: %d", a->health);
    CHECK((a->has & TH_COL_ORIGIN) && a->origin == TH_ORIGIN_MEASURED, "origin measured");
    CHECK(!(a->has & (TH_COL_STEP | TH_COL_LOSS | TH_COL_UNIT_J)), "no unit columns in a sample row");
    CHECK(b->has == (TH_COL_TEMP | TH_COL_ORIGIN | TH_COL_HEALTH) && b->origin == TH_ORIGIN_MODELED &&
              b->health == TH_HEALTH_OK && strcmp(b->source, "sim:h100-sxm") == 0,
          "partial sample: has 0x%x", b->has);
    CHECK(c->kind == TH_ROW_STEP && c->is_step && c->step == 17 && c->loss == 3.25 && c->grad_norm == 1.5e-3 &&
              c->lr == 6e-4 && c->tokens == 4096 && c->step_ms == 812.5 && c->unit_j == 12.5 && c->duty_set == 0.5 &&
              c->duty_measured == 0.4375 && c->threads == 2 && c->origin == TH_ORIGIN_MODELED,
          "step row");
    CHECK(!(c->has & (TH_COL_TEMP | TH_COL_HEALTH)) && c->source[0] == '\0', "no sample columns in a step row");
    CHECK(d->has == (TH_COL_STEP | TH_COL_LOSS | TH_COL_ORIGIN), "partial step: has 0x%x", d->has);
    CHECK(e->kind == TH_ROW_TOKEN && e->is_step && e->step == 0 && e->tokens == 12 && e->unit_j == 0.003125 &&
              !(e->has & (TH_COL_LOSS | TH_COL_THREADS)) && e->origin == TH_ORIGIN_REPLAYED,
          "token row (the prefill): has 0x%x", e->has);
    th_free(rows);
}

static void test_round_trip(void) {
    printf("-- CSV and JSONL round trip\n");
    const char *csv = tmp_path("log.csv"), *jsonl = tmp_path("log.jsonl");
    CHECK(th_telemetry_format_for(csv) == TH_TELEMETRY_CSV && th_telemetry_format_for(jsonl) == TH_TELEMETRY_JSONL,
          "format from extension");
    round_trip(TH_TELEMETRY_CSV, csv);
    round_trip(TH_TELEMETRY_JSONL, jsonl);
    FILE *f = fopen(csv, "r");
    char line[512];
    char want[512];
    snprintf(want, sizeof want, "%s\n", HEADER);
    CHECK(fgets(line, sizeof line, f) && strcmp(line, want) == 0, "header: %s", line);
    CHECK(fgets(line, sizeof line, f) && fgets(line, sizeof line, f) &&
              strcmp(line, "0.223456,sample,modeled,sim:h100-sxm,71.234,,,,ok,,,,,,,,,,\n") == 0,
          "empty cells: %s", line);
    CHECK(fgets(line, sizeof line, f) && fgets(line, sizeof line, f) && fgets(line, sizeof line, f) &&
              strcmp(line, "0.500000,token,replayed,,,,,,,0.800000,0.750000,,0,,,,12,40.000,0.003125\n") == 0,
          "token row: %s", line);
    fclose(f);
    th_telemetry *t;
    CHECK(th_telemetry_open("/nonexistent-dir/x.csv", TH_TELEMETRY_CSV, 0, &t) == TH_ERR_IO &&
              strstr(th_last_error(), "/nonexistent-dir/x.csv"),
          "%s", th_last_error());
    if (access("/dev/full", W_OK) == 0) {
        CHECK(th_telemetry_open("/dev/full", TH_TELEMETRY_CSV, 0, &t) == TH_OK, "open /dev/full");
        th_telemetry_unit r = {TH_UNIT_STEP, 1, 1, 1, 1, 1, 1, 1, 1, {1, 1, 1}, TH_ORIGIN_MEASURED};
        th_status st = TH_OK;
        for (int i = 0; i < 1000 && st == TH_OK; i++) st = th_telemetry_add_unit(t, &r);
        if (st == TH_OK) st = th_telemetry_flush(t);
        CHECK(st == TH_ERR_IO && strstr(th_last_error(), "/dev/full"), "a full disk is reported: %s", th_last_error());
        CHECK(th_telemetry_close(t) == TH_ERR_IO, "and again at close");
    }
}

static void test_malformed(void) {
    printf("-- malformed telemetry files\n");
    char h[8][600];
    const char *rows_bad[] = {
        "0.1,sample,measured,x,abc,,,,ok,,,,,,,,,,", /* temp_c */
        "0.1,sample,measured,x,1,2",                 /* columns */
        "0.1,blah,measured,x,,,,,ok,,,,,,,,,,",      /* kind */
        "0.1,step,measured,,,,,,,,,,1.5,,,,,,",      /* step */
        "0.1,sample,guessed,x,,,,,ok,,,,,,,,,,",     /* origin */
        "0.1,sample,measured,x,,,,,warm,,,,,,,,,,",  /* health */
    };
    for (int i = 0; i < 6; i++) snprintf(h[i], sizeof h[i], "%s\n%s\n", HEADER, rows_bad[i]);
    const char *cases[][2] = {
        {"t_s,kind,source\n", "header"},
        {h[0], "temp_c"},
        {h[1], "columns"},
        {h[2], "kind"},
        {h[3], "step"},
        {h[4], "origin"},
        {h[5], "health"},
        {"{\"t_s\":0.1,\"kind\":\"sample\",\"temp_c\":\"hot\"}\n", "temp_c"},
        {"{\"t_s\":0.1,\"kind\":\"sample\",\"fan\":1}\n", "fan"},
        {"{\"t_s\":0.1,\"kind\":\"sample\"}\n{\"t_s\":0.2,\n", ":2"},
        {"{\"kind\":\"sample\"}\n", "t_s"},
        {"{\"t_s\":0.1,\"kind\":\"sample\",\"origin\":1}\n", "origin"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = tmp_path("bad.csv");
        write_text(p, cases[i][0]);
        th_telemetry_row *rows = (th_telemetry_row *)&rows;
        size_t n = 12345;
        th_status st = th_telemetry_read(p, &rows, &n);
        CHECK(st == TH_ERR_FORMAT && strstr(th_last_error(), p) && strstr(th_last_error(), cases[i][1]), "case %zu: %s",
              i, th_last_error());
        CHECK(n == 12345 && rows == (th_telemetry_row *)&rows, "case %zu: outputs untouched", i);
    }
}

typedef struct {
    th_telemetry *t;
    int id;
} writer_arg;

static void *writer(void *p) {
    writer_arg *a = p;
    for (int i = 0; i < 2000; i++) {
        th_telemetry_unit r = {TH_UNIT_STEP, (uint64_t)i * 1000, a->id * 100000 + i, 1.0, 2.0, 3.0, 4, 5.0, NAN,
                               {NAN, NAN, -1}, TH_ORIGIN_MEASURED};
        th_telemetry_add_unit(a->t, &r);
    }
    return NULL;
}

static void test_threads(void) {
    printf("-- appends from several threads\n");
    const char *p = tmp_path("threads.csv");
    th_telemetry *t;
    CHECK(th_telemetry_open(p, TH_TELEMETRY_CSV, 0, &t) == TH_OK, "open");
    pthread_t th[4];
    writer_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (writer_arg){t, i};
        pthread_create(&th[i], NULL, writer, &args[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    CHECK(th_telemetry_close(t) == TH_OK, "close");
    th_telemetry_row *rows;
    size_t n;
    CHECK(th_telemetry_read(p, &rows, &n) == TH_OK && n == 8000, "8000 whole rows: %zu (%s)", n, th_last_error());
    int seen[4] = {0};
    for (size_t i = 0; i < n; i++) seen[rows[i].step / 100000]++;
    CHECK(seen[0] == 2000 && seen[1] == 2000 && seen[2] == 2000 && seen[3] == 2000, "every row intact");
    th_free(rows);
}

static void test_trace(void) {
    printf("-- trace replay by sample time\n");
    const char *p = tmp_path("trace.csv");
    write_text(p,
               "t_s,kind,origin,source,temp_c,power_w,energy_j,util,health,duty_set,duty_measured,threads,step,loss,"
               "grad_norm,lr,tokens,step_ms,unit_j\n"
               "10.0,sample,measured,hwmon:coretemp/Package id 0,50.000,15.5,0.0,0.25,ok,,,,,,,,,,\n"
               "10.5,step,measured,,,,,,,,,,1,3.5,,,,,\n"
               "11.0,sample,measured,hwmon:coretemp/Package id 0,52.500,20.0,17.75,0.5,ok,,,,,,,,,,\n"
               "12.0,sample,measured,hwmon:coretemp/Package id 0,55.000,,,,stale,,,,,,,,,,\n");
    th_sense_config c = th_sense_config_default();
    c.trace_path = p;
    c.clock_ns = fake_clock;
    fake_ns = 1000000000ull;
    th_sensor *s;
    CHECK(th_sensor_open(NULL, &c, &s) == TH_OK && strcmp(th_sensor_backend(s), "trace") == 0, "auto picks the trace");
    th_sample x;
    CHECK(th_sensor_read(s, &x) == TH_OK && x.temp_mc == 50000 && x.power_uw == 15500000 && x.util == 0.25,
          "first sample at once");
    CHECK(x.origin == TH_ORIGIN_REPLAYED && th_sensor_origin(s) == TH_ORIGIN_REPLAYED && strstr(x.source, "(replay)") &&
              strstr(x.source, "coretemp"),
          "a replayed measurement is not measured now: %s %s", th_origin_name(x.origin), x.source);
    fake_ns += 900000000ull;
    CHECK(th_sensor_read(s, &x) == TH_OK && x.temp_mc == 50000, "still the first at +0.9 s");
    fake_ns += 100000000ull;
    CHECK(th_sensor_read(s, &x) == TH_OK && x.temp_mc == 52500 && x.energy_uj == 17750000ull, "second at +1.0 s");
    CHECK(x.t_ns == 2000000000ull, "sample time mapped onto the clock: %llu", (unsigned long long)x.t_ns);
    fake_ns += 1000000000ull;
    CHECK(th_sensor_read(s, &x) == TH_OK && x.temp_mc == 55000 && x.valid == TH_SAMPLE_TEMP, "third: temp only");
    fake_ns += 1000000000ull;
    CHECK(th_sensor_read(s, &x) == TH_ERR_IO && x.fault == TH_HEALTH_VANISHED && strstr(th_last_error(), "ended"),
          "end of trace: %s", th_last_error());
    th_sensor_close(s);

    /* a modeled trace replays as replayed too (the source keeps what it was), at 10x speed */
    write_text(p,
               "{\"t_s\":0,\"kind\":\"sample\",\"origin\":\"modeled\",\"source\":\"sim:h100-sxm\",\"temp_c\":40}\n"
               "{\"t_s\":10,\"kind\":\"sample\",\"origin\":\"modeled\",\"source\":\"sim:h100-sxm\",\"temp_c\":60}\n");
    c.trace_speed = 10.0;
    CHECK(th_sensor_open("trace", &c, &s) == TH_OK, "%s", th_last_error());
    fake_ns += 1000000000ull;
    CHECK(th_sensor_read(s, &x) == TH_OK && x.temp_mc == 60000 && x.origin == TH_ORIGIN_REPLAYED &&
              strncmp(x.source, "sim:h100-sxm", 12) == 0,
          "1 s at 10x = 10 recorded s: %s", x.source);
    th_sensor_close(s);

    /* a log in the previous format replays too */
    write_text(p, "t_s,kind,source,temp_c,power_w,energy_j,util,duty,threads,step,loss,grad_norm,lr,tokens,step_ms\n"
                  "0.0,sample,sim:laptop-cpu,45.500,,,,0.5,,,,,,,\n");
    c.trace_speed = 1.0;
    CHECK(th_sensor_open("trace", &c, &s) == TH_OK && th_sensor_read(s, &x) == TH_OK && x.temp_mc == 45500,
          "old-format trace: %s", th_last_error());
    th_sensor_close(s);

    write_text(p, "{\"t_s\":5,\"kind\":\"sample\",\"temp_c\":40}\n{\"t_s\":4,\"kind\":\"sample\",\"temp_c\":40}\n");
    CHECK(th_sensor_open("trace", &c, &s) == TH_ERR_FORMAT && strstr(th_last_error(), "backwards"), "%s",
          th_last_error());
    write_text(p, "{\"t_s\":5,\"kind\":\"step\",\"step\":1}\n");
    CHECK(th_sensor_open("trace", &c, &s) == TH_ERR_FORMAT && strstr(th_last_error(), "no sample"), "%s",
          th_last_error());
}

/* Tolerant mode: every bad line skipped, counted and reported with its number. */
static long bad_lines[16];
static int n_bad_cb;
static void on_bad(long line, const char *why, void *user) {
    (void)user;
    if (n_bad_cb < 16) bad_lines[n_bad_cb] = line;
    n_bad_cb++;
    CHECK(why && strstr(why, ":"), "a reason for line %ld: %s", line, why);
}

static void test_tolerant(void) {
    printf("-- tolerant mode\n");
    const char *p = tmp_path("damaged.csv");
    char text[2048];
    snprintf(text, sizeof text,
             "%s\n"
             "0.0,sample,measured,hw,50.0,,,,ok,0.9,,,,,,,,,\n"      /* 2 */
             "0.1,sample,measured,hw,abc,,,,ok,,,,,,,,,,\n"          /* 3: not a number */
             "\n"                                                    /* 4: empty, not counted */
             "0.2,sample,measured,hw,51.0,,,,ok,,,,,,,,,,\n"         /* 5 */
             "0.3,sample,measured,hw,51\n"                           /* 6: truncated */
             "0.4,blah,measured,hw,,,,,ok,,,,,,,,,,\n"               /* 7: kind */
             "0.5,step,measured,,,,,,,,,,3,2.5,,,,,\n"               /* 8 */
             "0.6,sample,measured,\"hw,52.0,,,,ok,,,,,,,,,,\n",      /* 9: open quote */
             HEADER);
    write_text(p, text);
    th_telemetry_row *rows = NULL;
    size_t n = 0;
    CHECK(th_telemetry_read(p, &rows, &n) == TH_ERR_FORMAT && strstr(th_last_error(), ":3:"),
          "strict mode stops at line 3: %s", th_last_error());
    th_telemetry_read_options o = {.tolerant = 1, .on_bad_line = on_bad};
    th_telemetry_read_report rep = {0};
    n_bad_cb = 0;
    CHECK(th_telemetry_read_opts(p, &o, &rows, &n, &rep) == TH_OK && n == 3, "3 rows read: %zu (%s)", n, th_last_error());
    CHECK(rep.rows == 3 && rep.bad_lines == 4 && rep.first_bad_line == 3 && !rep.old_format, "4 bad lines, first 3: %zu %ld",
          rep.bad_lines, rep.first_bad_line);
    CHECK(strstr(rep.first_bad, p) && strstr(rep.first_bad, ":3:") && strstr(rep.first_bad, "temp_c"), "first: %s",
          rep.first_bad);
    CHECK(n_bad_cb == 4 && bad_lines[0] == 3 && bad_lines[1] == 6 && bad_lines[2] == 7 && bad_lines[3] == 9,
          "callback with line numbers: %d calls (%ld %ld %ld %ld)", n_bad_cb, bad_lines[0], bad_lines[1], bad_lines[2],
          bad_lines[3]);
    if (n == 3)
        CHECK(rows[0].temp_c == 50.0 && rows[0].duty_set == 0.9 && rows[1].temp_c == 51.0 && rows[2].kind == TH_ROW_STEP &&
                  rows[2].step == 3,
              "the good rows, in order");
    th_free(rows);

    /* a reduced header: the columns it names; a missing kind is inferred */
    write_text(p, "t_s,temp_c,step,extra\n1.0,40,,x\n2.0,,7,y\n");
    CHECK(th_telemetry_read(p, &rows, &n) == TH_ERR_FORMAT && strstr(th_last_error(), "header"), "strict refuses it");
    CHECK(th_telemetry_read_opts(p, &o, &rows, &n, NULL) == TH_OK && n == 2 && rows[0].kind == TH_ROW_SAMPLE &&
              rows[0].temp_c == 40 && rows[1].kind == TH_ROW_STEP && rows[1].step == 7,
          "reduced header read: %s", th_last_error());
    th_free(rows);
    /* JSONL: an extra key is not damage in tolerant mode; a broken line is */
    write_text(p, "{\"t_s\":1,\"kind\":\"sample\",\"temp_c\":40,\"fan\":3}\n{\"t_s\":2,\n{\"t_s\":3,\"kind\":\"sample\"}\n");
    n_bad_cb = 0;
    CHECK(th_telemetry_read_opts(p, &o, &rows, &n, &rep) == TH_OK && n == 2 && rep.bad_lines == 1 &&
              rep.first_bad_line == 2 && bad_lines[0] == 2,
          "JSONL tolerant: %zu rows, %zu bad", n, rep.bad_lines);
    th_free(rows);
    /* what tolerant mode still refuses */
    write_text(p, "");
    CHECK_FAIL(th_telemetry_read_opts(p, &o, &rows, &n, NULL), TH_ERR_FORMAT, "empty", "an empty log");
    write_text(p, "a,b\n1,2\n");
    CHECK_FAIL(th_telemetry_read_opts(p, &o, &rows, &n, NULL), TH_ERR_FORMAT, "t_s", "no t_s column");
    snprintf(text, sizeof text, "%s\nbroken\n", HEADER);
    write_text(p, text);
    CHECK_FAIL(th_telemetry_read_opts(p, &o, &rows, &n, NULL), TH_ERR_FORMAT, "no readable row", "nothing readable");
}

/* Logs in the previous format (one duty column, no origin) read in strict and tolerant
 * mode: duty becomes duty_set on samples and duty_measured on steps; "sim:" sources are
 * modeled. */
static void test_old_format(void) {
    printf("-- logs in the previous format\n");
    const char *csv = tmp_path("old.csv"), *jsonl = tmp_path("old.jsonl");
    char text[1024];
    snprintf(text, sizeof text,
             "%s\n"
             "0.1,sample,sim:laptop-cpu,60.000,12.0,1.5,0.5,0.75,2,,,,,,\n"
             "0.2,sample,hwmon:coretemp/Package id 0,61.000,,,,0.5,,,,,,,\n"
             "0.3,step,,,,,,0.625,2,4,3.5,0.25,0.001,512,120.0\n",
             OLD_HEADER);
    write_text(csv, text);
    write_text(jsonl, "{\"t_s\":0.1,\"kind\":\"sample\",\"source\":\"sim:laptop-cpu\",\"temp_c\":60,\"duty\":0.75}\n"
                      "{\"t_s\":0.2,\"kind\":\"sample\",\"source\":\"hwmon:x\",\"temp_c\":61,\"duty\":0.5}\n"
                      "{\"t_s\":0.3,\"kind\":\"step\",\"step\":4,\"duty\":0.625}\n");
    const char *paths[] = {csv, jsonl};
    for (int k = 0; k < 2; k++) {
        for (int tolerant = 0; tolerant <= 1; tolerant++) {
            th_telemetry_read_options o = {.tolerant = tolerant};
            th_telemetry_read_report rep = {0};
            th_telemetry_row *rows = NULL;
            size_t n = 0;
            CHECK(th_telemetry_read_opts(paths[k], &o, &rows, &n, &rep) == TH_OK && n == 3, "%s (%s): %s",
                  paths[k], tolerant ? "tolerant" : "strict", th_last_error());
            if (n != 3) continue;
            CHECK(rep.old_format && rep.bad_lines == 0, "reported as the previous format");
            CHECK(rows[0].origin == TH_ORIGIN_MODELED && (rows[0].has & TH_COL_ORIGIN) && rows[1].origin == TH_ORIGIN_MEASURED,
                  "origin from the source name: %s / %s", th_origin_name(rows[0].origin), th_origin_name(rows[1].origin));
            CHECK(rows[0].duty_set == 0.75 && (rows[0].has & TH_COL_DUTY_SET) && !(rows[0].has & TH_COL_DUTY_MEASURED) &&
                      rows[1].duty_set == 0.5,
                  "a sample's duty was the published one: %g", rows[0].duty_set);
            CHECK(rows[2].kind == TH_ROW_STEP && rows[2].step == 4 && rows[2].duty_measured == 0.625 &&
                      (rows[2].has & TH_COL_DUTY_MEASURED) && !(rows[2].has & (TH_COL_DUTY_SET | TH_COL_ORIGIN)),
                  "a step's duty was the measured one: %g (has 0x%x)", rows[2].duty_measured, rows[2].has);
            CHECK(!(rows[0].has & TH_COL_HEALTH), "no health in the previous format");
            if (k == 0) CHECK(rows[0].temp_c == 60.0 && rows[0].threads == 2 && rows[2].tokens == 512, "the other columns");
            th_free(rows);
        }
    }
    /* a new-format log is not reported as old */
    const char *p = tmp_path("new.csv");
    th_telemetry *t;
    CHECK(th_telemetry_open(p, TH_TELEMETRY_CSV, 0, &t) == TH_OK, "open");
    th_sample s;
    memset(&s, 0, sizeof s);
    s.valid = TH_SAMPLE_TEMP;
    s.temp_mc = 50000;
    s.origin = TH_ORIGIN_MEASURED;
    snprintf(s.source, sizeof s.source, "sim:looks-modeled");
    th_telemetry_add_sample(t, &s, TH_HEALTH_OK, NULL);
    th_telemetry_close(t);
    th_telemetry_read_report rep = {0};
    th_telemetry_row *rows = NULL;
    size_t n = 0;
    CHECK(th_telemetry_read_opts(p, NULL, &rows, &n, &rep) == TH_OK && n == 1 && !rep.old_format &&
              rows[0].origin == TH_ORIGIN_MEASURED,
          "the origin column is the data; the source name is only a name");
    th_free(rows);
}

int main(void) {
    test_round_trip();
    test_malformed();
    test_threads();
    test_trace();
    test_tolerant();
    test_old_format();
    return test_summary();
}
