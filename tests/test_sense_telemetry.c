/* test_sense_telemetry.c: the telemetry log round trip (CSV and JSONL: every column back
 * as written, empty cells absent), thread-safe appends from several threads, malformed
 * files rejected naming file and line, trace replay by sample time (provenance kept,
 * the end of the trace reads as vanished), and the sampler thread: rate on absolute
 * deadlines, latest sample, pace recorded in the log, stop. */
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
    snprintf(s.source, sizeof s.source, "hwmon:coretemp/Package id 0, \"quoted\"");
    CHECK(th_telemetry_add_sample(t, &s, 0.75, 2) == TH_OK, "sample");
    th_sample s2 = s;
    s2.t_ns = t0 + 223456000ull;
    s2.valid = TH_SAMPLE_TEMP; /* only a temperature */
    snprintf(s2.source, sizeof s2.source, "sim:h100-sxm");
    CHECK(th_telemetry_add_sample(t, &s2, NAN, -1) == TH_OK, "partial sample");
    th_telemetry_step r = {t0 + 300000000ull, 17, 3.25, 1.5e-3, 6e-4, 4096, 812.5, 0.5, 2};
    CHECK(th_telemetry_add_step(t, &r) == TH_OK, "step");
    th_telemetry_step r2 = {t0 + 400000000ull, 18, 3.125, NAN, NAN, -1, -1, NAN, -1};
    CHECK(th_telemetry_add_step(t, &r2) == TH_OK, "partial step");
    CHECK(th_telemetry_close(t) == TH_OK, "close");

    th_telemetry_row *rows;
    size_t n;
    CHECK(th_telemetry_read(path, &rows, &n) == TH_OK && n == 4, "%s: %zu rows", th_last_error(), n);
    if (n != 4) return;
    const th_telemetry_row *a = &rows[0], *b = &rows[1], *c = &rows[2], *d = &rows[3];
    CHECK(!a->is_step && fabs(a->t_s - 0.123456) < 1e-9 && strcmp(a->source, s.source) == 0, "sample row: %s",
          a->source);
    CHECK(llround(a->temp_c * 1000) == 71234 && llround(a->power_w * 1e6) == 312500123 &&
              llround(a->energy_j * 1e6) == 9876543210ll && a->util == 0.625,
          "sample values exact");
    CHECK(a->duty == 0.75 && a->threads == 2 && (a->has & (TH_COL_DUTY | TH_COL_THREADS)) == (TH_COL_DUTY | TH_COL_THREADS),
          "pace recorded");
    CHECK(!(a->has & (TH_COL_STEP | TH_COL_LOSS)), "no step columns in a sample row");
    CHECK(b->has == TH_COL_TEMP && strcmp(b->source, "sim:h100-sxm") == 0, "partial sample: has 0x%x", b->has);
    CHECK(c->is_step && c->step == 17 && c->loss == 3.25 && c->grad_norm == 1.5e-3 && c->lr == 6e-4 &&
              c->tokens == 4096 && c->step_ms == 812.5 && c->duty == 0.5 && c->threads == 2,
          "step row");
    CHECK(!(c->has & TH_COL_TEMP) && c->source[0] == '\0', "no sample columns in a step row");
    CHECK(d->has == (TH_COL_STEP | TH_COL_LOSS), "partial step: has 0x%x", d->has);
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
    CHECK(fgets(line, sizeof line, f) &&
              strcmp(line, "t_s,kind,source,temp_c,power_w,energy_j,util,duty,threads,step,loss,grad_norm,lr,tokens,"
                           "step_ms\n") == 0,
          "header: %s", line);
    CHECK(fgets(line, sizeof line, f) && fgets(line, sizeof line, f) &&
              strcmp(line, "0.223456,sample,sim:h100-sxm,71.234,,,,,,,,,,,\n") == 0,
          "empty cells: %s", line);
    fclose(f);
    th_telemetry *t;
    CHECK(th_telemetry_open("/nonexistent-dir/x.csv", TH_TELEMETRY_CSV, 0, &t) == TH_ERR_IO &&
              strstr(th_last_error(), "/nonexistent-dir/x.csv"),
          "%s", th_last_error());
    if (access("/dev/full", W_OK) == 0) {
        CHECK(th_telemetry_open("/dev/full", TH_TELEMETRY_CSV, 0, &t) == TH_OK, "open /dev/full");
        th_telemetry_step r = {1, 1, 1, 1, 1, 1, 1, 1, 1};
        th_status st = TH_OK;
        for (int i = 0; i < 1000 && st == TH_OK; i++) st = th_telemetry_add_step(t, &r);
        if (st == TH_OK) st = th_telemetry_flush(t);
        CHECK(st == TH_ERR_IO && strstr(th_last_error(), "/dev/full"), "a full disk is reported: %s", th_last_error());
        CHECK(th_telemetry_close(t) == TH_ERR_IO, "and again at close");
    }
}

static void test_malformed(void) {
    printf("-- malformed telemetry files\n");
    const char *cases[][2] = {
        {"t_s,kind,source\n", "header"},
        {"t_s,kind,source,temp_c,power_w,energy_j,util,duty,threads,step,loss,grad_norm,lr,tokens,step_ms\n"
         "0.1,sample,x,abc,,,,,,,,,,,\n",
         "temp_c"},
        {"t_s,kind,source,temp_c,power_w,energy_j,util,duty,threads,step,loss,grad_norm,lr,tokens,step_ms\n"
         "0.1,sample,x,1,2\n",
         "columns"},
        {"t_s,kind,source,temp_c,power_w,energy_j,util,duty,threads,step,loss,grad_norm,lr,tokens,step_ms\n"
         "0.1,blah,x,,,,,,,,,,,,\n",
         "kind"},
        {"t_s,kind,source,temp_c,power_w,energy_j,util,duty,threads,step,loss,grad_norm,lr,tokens,step_ms\n"
         "0.1,step,,,,,,,,1.5,,,,,\n",
         "step"},
        {"{\"t_s\":0.1,\"kind\":\"sample\",\"temp_c\":\"hot\"}\n", "temp_c"},
        {"{\"t_s\":0.1,\"kind\":\"sample\",\"fan\":1}\n", "fan"},
        {"{\"t_s\":0.1,\"kind\":\"sample\"}\n{\"t_s\":0.2,\n", ":2"},
        {"{\"kind\":\"sample\"}\n", "t_s"},
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
        th_telemetry_step r = {(uint64_t)i * 1000, a->id * 100000 + i, 1.0, 2.0, 3.0, 4, 5.0, NAN, -1};
        th_telemetry_add_step(a->t, &r);
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
               "t_s,kind,source,temp_c,power_w,energy_j,util,duty,threads,step,loss,grad_norm,lr,tokens,step_ms\n"
               "10.0,sample,hwmon:coretemp/Package id 0,50.000,15.5,0.0,0.25,,,,,,,,\n"
               "10.5,step,,,,,,,,1,3.5,,,,\n"
               "11.0,sample,hwmon:coretemp/Package id 0,52.500,20.0,17.75,0.5,,,,,,,,\n"
               "12.0,sample,hwmon:coretemp/Package id 0,55.000,,,,,,,,,,,\n");
    th_sense_config c = th_sense_config_default();
    c.trace_path = p;
    c.clock_ns = fake_clock;
    fake_ns = 1000000000ull;
    th_sensor *s;
    CHECK(th_sensor_open(NULL, &c, &s) == TH_OK && strcmp(th_sensor_backend(s), "trace") == 0, "auto picks the trace");
    th_sample x;
    CHECK(th_sensor_read(s, &x) == TH_OK && x.temp_mc == 50000 && x.power_uw == 15500000 && x.util == 0.25,
          "first sample at once");
    CHECK(x.origin == TH_ORIGIN_MEASURED && strstr(x.source, "(replay)") && strstr(x.source, "coretemp"), "%s",
          x.source);
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

    /* a sim trace replays as modeled, at 10x speed */
    write_text(p,
               "{\"t_s\":0,\"kind\":\"sample\",\"source\":\"sim:h100-sxm\",\"temp_c\":40}\n"
               "{\"t_s\":10,\"kind\":\"sample\",\"source\":\"sim:h100-sxm\",\"temp_c\":60}\n");
    c.trace_speed = 10.0;
    CHECK(th_sensor_open("trace", &c, &s) == TH_OK, "%s", th_last_error());
    fake_ns += 1000000000ull;
    CHECK(th_sensor_read(s, &x) == TH_OK && x.temp_mc == 60000 && x.origin == TH_ORIGIN_MODELED &&
              strncmp(x.source, "sim:", 4) == 0 && th_sensor_origin(s) == TH_ORIGIN_MODELED,
          "1 s at 10x = 10 recorded s; modeled stays modeled: %s", x.source);
    th_sensor_close(s);

    write_text(p, "{\"t_s\":5,\"kind\":\"sample\",\"temp_c\":40}\n{\"t_s\":4,\"kind\":\"sample\",\"temp_c\":40}\n");
    CHECK(th_sensor_open("trace", &c, &s) == TH_ERR_FORMAT && strstr(th_last_error(), "backwards"), "%s",
          th_last_error());
    write_text(p, "{\"t_s\":5,\"kind\":\"step\",\"step\":1}\n");
    CHECK(th_sensor_open("trace", &c, &s) == TH_ERR_FORMAT && strstr(th_last_error(), "no sample"), "%s",
          th_last_error());
}

static int callbacks;
static void on_sample(const th_sample *s, th_status st, th_sense_health h, void *user) {
    (void)s;
    (void)h;
    (void)user;
    if (st == TH_OK) callbacks++;
}

static void test_sampler(void) {
    printf("-- sampler thread at 50 Hz on the simulated plant\n");
    th_sense_config c = th_sense_config_default();
    c.profile = "laptop-cpu";
    th_sensor *s;
    CHECK(th_sensor_open("sim", &c, &s) == TH_OK, "%s", th_last_error());
    th_plant_set_duty(th_sensor_plant(s), 1.0);
    const char *p = tmp_path("sampler.jsonl");
    th_telemetry *t;
    CHECK(th_telemetry_open(p, th_telemetry_format_for(p), th_now_ns(), &t) == TH_OK, "open log");
    th_sense_sampler_config sc = {50.0, s, t, on_sample, NULL};
    th_sense_sampler *sp;
    th_sample x;
    CHECK(th_sense_sampler_start(&sc, &sp) == TH_OK, "%s", th_last_error());
    th_sense_sampler_set_pace(sp, 0.8, 2);
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
    th_status st;
    th_sense_health h;
    CHECK(th_sense_sampler_latest(sp, &x, &st, &h) && st == TH_OK && h == TH_HEALTH_OK && x.origin == TH_ORIGIN_MODELED,
          "latest sample");
    uint64_t reads = th_sense_sampler_reads(sp);
    CHECK(th_sense_sampler_stop(sp) == TH_OK, "stop");
    CHECK(reads >= 45 && reads <= 53, "~50 reads in 1 s: %llu", (unsigned long long)reads);
    CHECK(callbacks >= 45, "callbacks %d", callbacks);
    th_telemetry_step r = {th_now_ns(), 1, 2.0, 0.5, 1e-4, 128, 100.0, 0.8, 2};
    CHECK(th_telemetry_add_step(t, &r) == TH_OK && th_telemetry_close(t) == TH_OK, "step appended after");
    th_telemetry_row *rows;
    size_t n;
    CHECK(th_telemetry_read(p, &rows, &n) == TH_OK && n >= 46, "log rows %zu", n);
    int ok = 1;
    for (size_t i = 0; i + 1 < n; i++)
        ok &= !rows[i].is_step && strcmp(rows[i].source, "sim:laptop-cpu") == 0 && rows[i].threads == 2 &&
              (i == 0 || rows[i].t_s > rows[i - 1].t_s);
    CHECK(ok, "sample rows: modeled source, pace, increasing time");
    CHECK(n > 0 && rows[n - 1].is_step, "the step row");
    CHECK(rows[n - 2].temp_c > rows[0].temp_c - 1.0, "the plant heats at duty 1: %g -> %g", rows[0].temp_c,
          rows[n - 2].temp_c);
    th_free(rows);
    sc.hz = -5;
    sc.sensor = NULL;
    CHECK(th_sense_sampler_start(&sc, &sp) == TH_ERR_INVALID, "no sensor");
    th_sensor_close(s);
}

int main(void) {
    test_round_trip();
    test_malformed();
    test_threads();
    test_trace();
    test_sampler();
    return test_summary();
}
