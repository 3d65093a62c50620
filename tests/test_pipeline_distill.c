/* test_pipeline_distill.c: distillation end to end on a tiny teacher with GPT-2's vocabulary
 * (simulated plant). In-loop: one teacher unit per micro-batch, booked per step in
 * distill_steps.csv (the lines add up to the teacher's total), the student's own energy
 * apart, an unknown pre-training line reported as unknown (JSON null, no emissions row).
 * Cache: made, interrupted and resumed to the same payload as a one-shot cache; a student
 * reading it runs no teacher pass and is charged its share, with a break-even. Bad input
 * (another teacher, another dataset, a truncated cache, a layer out of range, another
 * vocabulary, --seq past the context) fails naming the problem and writes nothing; the CLI
 * exits 3. */
#include <sys/stat.h>

#include "test_util.h"
#include "thermo/pipeline.h"

static const char *dir;

static void write_teacher(const char *path, uint64_t seed) {
    th_gpt2_config cfg = {32, 50257, 3, 2, 16, 1e-5f};
    th_gpt2 *m = NULL;
    CHECK(th_gpt2_create(&cfg, &m) == TH_OK, "teacher");
    th_gpt2_init_random(m, seed);
    CHECK(th_hf_save(m, path) == TH_OK, "save teacher: %s", th_last_error());
    th_gpt2_free(m);
}

static void write_text(const char *path, const char *word) {
    FILE *f = fopen(path, "w");
    for (int i = 0; i < 120; i++) fprintf(f, "Verse %d: and the %s and the morning were the day.\n", i, word);
    fclose(f);
}

static th_distill_job job(const char *teacher, const char *const *data, const char *out) {
    th_distill_job d = th_distill_job_defaults();
    d.job.model = teacher;
    d.job.data = data;
    d.job.n_data = 1;
    d.job.out_dir = out;
    d.job.settings.has = TH_META_STEPS | TH_META_BATCH | TH_META_SEQ | TH_META_GRAD_ACCUM;
    d.job.settings.steps = 3;
    d.job.settings.batch = 2;
    d.job.settings.seq = 16;
    d.job.settings.grad_accum = 2;
    d.job.val_every = 0;
    d.job.preflight = 0;
    d.job.run.sensor = "sim";
    d.job.run.governor = "none";
    return d;
}

/* Sum of the teacher_j column and the number of rows of distill_steps.csv. */
static double steps_csv_sum(const char *path, int *rows) {
    char *text = test_read_file(path, NULL);
    double sum = 0;
    *rows = 0;
    if (!text) return NAN;
    for (char *line = strchr(text, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
        long step;
        double j;
        if (sscanf(line + 1, "%ld,%lf", &step, &j) == 2) {
            sum += j;
            (*rows)++;
        }
    }
    free(text);
    return sum;
}

static int stop_after;
static int stop_soon(void *user) {
    (void)user;
    return --stop_after < 0;
}

static void test_inloop(const char *teacher, const char *const *data) {
    char out[4200];
    snprintf(out, sizeof out, "%s/inloop", dir);
    th_distill_job d = job(teacher, data, out);
    d.n_layers = 2;
    d.layers[0] = 0;
    d.layers[1] = 2;
    th_distill_result *r = th_calloc(1, sizeof *r);
    th_status st = th_distill_run(&d, r);
    CHECK(st == TH_OK, "in-loop distillation: %s", th_last_error());
    CHECK(r->student_cfg.num_layers == 2 && r->n_layers == 2, "student of 2 blocks");
    CHECK(r->teacher_passes == 6, "one teacher pass per micro-batch: %ld for 3 steps x 2", r->teacher_passes);
    CHECK(r->teacher_tokens == 6 * 32, "teacher tokens %g", r->teacher_tokens);
    CHECK(r->teacher.energy_j > 0 && r->student_j > 0, "teacher %g J, student %g J", r->teacher.energy_j, r->student_j);
    int rows = 0;
    double sum = steps_csv_sum(r->steps_csv, &rows);
    CHECK(rows == 3, "a teacher line per step: %d rows in %s", rows, r->steps_csv);
    CHECK(fabs(sum - r->teacher.energy_j) <= 1e-4 * r->teacher.energy_j + 1e-6, "the lines add up to %g, total %g", sum,
          r->teacher.energy_j);
    CHECK(isnan(r->pretraining_j), "no pre-training figure given: unknown");
    CHECK(isfinite(r->break_even_students) && r->break_even_students > 0, "break-even %g", r->break_even_students);
    char *text = NULL;
    CHECK(th_distill_report_text(r, &text) == TH_OK, "report text");
    CHECK(text && strstr(text, "teacher-inloop") && strstr(text, "teacher-pretraining  unknown (") &&
              strstr(text, "break-even"),
          "report text:\n%s", text ? text : "");
    th_free(text);
    char json[4300], csv[4300];
    snprintf(json, sizeof json, "%s/distill_report.json", out);
    snprintf(csv, sizeof csv, "%s/emissions.csv", out);
    CHECK(th_distill_write_json(r, json) == TH_OK, "json: %s", th_last_error());
    char *js = test_read_file(json, NULL);
    CHECK(js && strstr(js, "\"energy_j\": null") && strstr(js, "\"known\": false"), "unknown is null, not 0");
    free(js);
    th_eco_factors f;
    th_eco_tables *tables = NULL;
    CHECK(th_eco_tables_load(&tables, NULL) == TH_OK && th_eco_factors_resolve(tables, "DE", NULL, &f) == TH_OK,
          "factors: %s", th_last_error());
    th_eco_tables_free(tables);
    CHECK(th_distill_append_emissions(r, &f, csv) == TH_OK, "emissions: %s", th_last_error());
    char *cs = test_read_file(csv, NULL);
    CHECK(cs && strstr(cs, "distill:student") && strstr(cs, "distill:teacher-inloop") &&
              !strstr(cs, "distill:teacher-pretraining"),
          "emissions rows: student and teacher, none for the unknown pre-training");
    free(cs);
    // a known pre-training figure is a line of its own
    r->pretraining_j = 0.001 * 3.6e6;
    CHECK(th_distill_report_text(r, &text) == TH_OK && strstr(text, "3600.0 J"), "a given pre-training share");
    th_free(text);
    th_free(r);
}

static void test_cache(const char *teacher, const char *teacher2, const char *const *data, const char *const *data2) {
    char one[4200], two[4200], out[4200];
    snprintf(one, sizeof one, "%s/one.cache", dir);
    snprintf(two, sizeof two, "%s/two.cache", dir);
    th_distill_cache_opts o = th_distill_cache_defaults();
    o.teacher = teacher;
    o.data = data;
    o.n_data = 1;
    o.top_k = 8;
    o.seq = 16;
    o.batch = 4;
    o.run.sensor = "sim";
    o.run.governor = "none";
    th_distill_cache_result cr;
    o.out_path = one;
    CHECK(th_distill_cache_run(&o, &cr) == TH_OK, "cache: %s", th_last_error());
    CHECK(cr.header.flags & TH_TCACHE_COMPLETE && cr.header.energy_j > 0, "complete, its energy recorded (%g J)",
          cr.header.energy_j);
    // interrupted after two batches, then resumed: the same windows as the one-shot cache
    o.out_path = two;
    o.should_stop = stop_soon;
    o.save_every = 1;
    stop_after = 2;
    CHECK(th_distill_cache_run(&o, &cr) == TH_ERR_INTERRUPTED, "interrupted: %s", th_last_error());
    CHECK(cr.header.windows_done == 8 && !(cr.header.flags & TH_TCACHE_COMPLETE), "partial: %llu windows",
          (unsigned long long)cr.header.windows_done);
    double e1 = cr.header.energy_j;
    o.should_stop = NULL;
    o.resume = 1;
    CHECK(th_distill_cache_run(&o, &cr) == TH_OK, "resume: %s", th_last_error());
    CHECK(cr.header.energy_j > e1, "the resumed energy adds to the first part's");
    size_t n1 = 0, n2 = 0;
    unsigned char *b1 = test_read_file(one, &n1), *b2 = test_read_file(two, &n2);
    CHECK(b1 && b2 && n1 == n2 && memcmp(b1 + TH_TCACHE_HEADER_BYTES, b2 + TH_TCACHE_HEADER_BYTES,
                                         n1 - TH_TCACHE_HEADER_BYTES) == 0,
          "resumed payload equals the one-shot payload");
    // resuming with another teacher leaves the cache as it was
    o.teacher = teacher2;
    CHECK_FAIL(th_distill_cache_run(&o, &cr), TH_ERR_INVALID, "another teacher", "resume with another teacher");
    size_t n3 = 0;
    unsigned char *b3 = test_read_file(two, &n3);
    CHECK(b3 && n3 == n2 && memcmp(b2, b3, n2) == 0, "the refused resume left the cache as it was");
    free(b1);
    free(b2);
    free(b3);

    // a student from the cache
    snprintf(out, sizeof out, "%s/cached", dir);
    th_distill_job d = job(teacher, data, out);
    d.mode = TH_TEACHER_CACHE;
    d.cache_path = one;
    d.cache_students = 4;
    th_distill_result *r = th_calloc(1, sizeof *r);
    CHECK(th_distill_run(&d, r) == TH_OK, "cache distillation: %s", th_last_error());
    CHECK(r->teacher_passes == 0 && r->teacher_tokens == 6 * 32, "no teacher pass, %g tokens read", r->teacher_tokens);
    CHECK(fabs(r->cache_share_j - r->cache_j / 4) < 1e-9 && r->cache_j > 0, "share %g of %g J", r->cache_share_j,
          r->cache_j);
    CHECK(!isnan(r->break_even_students), "a break-even figure");

    // bad input: nothing written under the output directory
    struct {
        const char *teacher, *cache, *layers, *config, *needle;
        const char *const *data;
        int seq;
    } bad[] = {
        {teacher2, one, NULL, NULL, "another teacher", data, 16},
        {teacher, one, NULL, NULL, "another dataset", data2, 16},
        {teacher, one, NULL, NULL, "for --seq 16, not 8", data, 8},
        {teacher, NULL, "0,3", NULL, "index 3 is out of range", data, 16},
        {teacher, NULL, NULL, "tiny", "vocabulary", data, 16},
        {teacher, NULL, NULL, NULL, "exceeds the teacher's context", data, 64},
        {teacher, "TRUNC", NULL, NULL, "truncated", data, 16},
    };
    char trunc[4200];
    snprintf(trunc, sizeof trunc, "%s/trunc.cache", dir);
    size_t n = 0;
    unsigned char *b = test_read_file(one, &n);
    test_write_file(trunc, b, n - 100);
    free(b);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(out, sizeof out, "%s/bad%zu", dir, i);
        th_distill_job e = job(bad[i].teacher, bad[i].data, out);
        e.job.settings.seq = bad[i].seq;
        if (bad[i].cache) {
            e.mode = TH_TEACHER_CACHE;
            e.cache_path = strcmp(bad[i].cache, "TRUNC") ? bad[i].cache : trunc;
        }
        if (bad[i].layers) e.n_layers = 2, e.layers[0] = 0, e.layers[1] = 3;
        e.student_config = bad[i].config;
        memset(r, 0, sizeof *r);
        th_status st = th_distill_run(&e, r);
        CHECK((st == TH_ERR_INVALID || st == TH_ERR_FORMAT) && strstr(th_last_error(), bad[i].needle),
              "bad input %zu: got %s '%s', want '%s'", i, th_status_name(st), th_last_error(), bad[i].needle);
        char data_dir[4300];
        snprintf(data_dir, sizeof data_dir, "%s/data", out);
        CHECK(!test_file_exists(data_dir), "bad input %zu: %s was written", i, data_dir);
    }
    th_free(r);
}

static void test_cli(const char *teacher, const char *data) {
    const char *bin = getenv("THERMO_BIN");
    if (!bin) {
        CHECK(0, "THERMO_BIN is not set (run through ctest)");
        return;
    }
    char cmd[20000], err[4200];
    snprintf(err, sizeof err, "%s/cli.err", dir);
    snprintf(cmd, sizeof cmd, "'%s' distill --teacher '%s' --data '%s' --out '%s/cli' --student-layers 0,7 --sensor sim "
                              "--steps 1 --batch 2 --seq 16 2> '%s'", bin, teacher, data, dir, err);
    int rc = system(cmd);
    char *msg = test_read_file(err, NULL);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 3, "bad layer: exit %d, want 3", WEXITSTATUS(rc));
    CHECK(msg && strstr(msg, "index 7 is out of range") && strstr(msg, teacher), "message: %s", msg ? msg : "");
    free(msg);
}

int main(void) {
    dir = test_tmp_dir("pipeline_distill");
    char teacher[4200], teacher2[4200], text[4200], text2[4200];
    snprintf(teacher, sizeof teacher, "%s/teacher", dir);
    snprintf(teacher2, sizeof teacher2, "%s/teacher2", dir);
    snprintf(text, sizeof text, "%s/corpus.txt", dir);
    snprintf(text2, sizeof text2, "%s/other.txt", dir);
    char rm[4400];
    snprintf(rm, sizeof rm, "rm -rf '%s'/inloop '%s'/cached '%s'/bad* '%s'/cli '%s'/*.cache", dir, dir, dir, dir, dir);
    if (system(rm) != 0) return 1;
    write_teacher(teacher, 1);
    write_teacher(teacher2, 2);
    write_text(text, "evening");
    write_text(text2, "night");
    const char *data[1] = {text}, *data2[1] = {text2};
    th_threads_set(1);
    test_inloop(teacher, data);
    test_cache(teacher, teacher2, data, data2);
    test_cli(teacher, text);
    return test_summary();
}
