/* test_pipeline_session.c: a coupling session in-process: a training job bounded by a
 * wall-clock deadline stops as an interruption would (no signal is sent), session.json is
 * filled from the run's own figures (sensor, origin, the plant's ambient), and the data sheet
 * is written. A job that fails still leaves session.json saying "error". Simulated plant. */
#include <sys/stat.h>

#include "test_util.h"
#include "thermo/pipeline.h"

int main(void) {
    const char *dir = test_tmp_dir("pipeline_session");
    char data[4200], out[4200], path[4300];
    snprintf(data, sizeof data, "%s/corpus.txt", dir);
    snprintf(out, sizeof out, "%s/s1", dir);
    FILE *f = fopen(data, "w");
    for (int i = 0; i < 400; i++) fprintf(f, "Verse %d: and the evening and the morning were the day.\n", i);
    fclose(f);
    mkdir(out, 0755);

    const char *inputs[1] = {data};
    th_train_job j = th_train_job_defaults();
    j.model = "small"; // the GPT-2 vocabulary: the corpus is tokenized with it
    j.data = inputs;
    j.n_data = 1;
    j.settings.has = TH_META_STEPS | TH_META_BATCH | TH_META_SEQ;
    j.settings.steps = 1000000; // far more than 2 s allow: the deadline ends it
    j.settings.batch = 2;
    j.settings.seq = 16;
    j.val_every = 0;
    j.preflight = 0;
    j.run.sensor = "sim";
    th_session_opts so = th_session_defaults();
    so.out_dir = out;
    so.duration_s = 2;
    so.hz = 5;
    th_session_result *res = th_calloc(1, sizeof *res);
    uint64_t t0 = th_now_ns();
    th_status st = th_session_run(&j, &so, res);
    double wall = (th_now_ns() - t0) / 1e9;
    CHECK(st == TH_OK, "session: %s", th_last_error());
    CHECK(res->job.deadline_hit && !strcmp(res->meta.stopped_by, "duration"), "stopped by '%s'", res->meta.stopped_by);
    CHECK(wall < 30, "the deadline of 2 s took %.1f s to stop the job", wall);
    CHECK(res->job.train.steps_done > 0 && res->job.train.steps_done < 1000000, "%ld steps", res->job.train.steps_done);
    CHECK(res->meta.modeled == 1 && !strcmp(res->meta.sensor, "sim:laptop-cpu"), "meta: modeled %d, sensor '%s'",
          res->meta.modeled, res->meta.sensor);
    CHECK(res->meta.ambient_c == 25.0 && strstr(res->meta.ambient_how, "plant"), "ambient %g (%s)", res->meta.ambient_c,
          res->meta.ambient_how);
    CHECK(res->meta.p_max_w > 0 && res->meta.r_k_per_w > 0, "the plant profile's powers and R");
    CHECK(res->analysis != NULL, "no analysis");
    snprintf(path, sizeof path, "%s/session.json", out);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && sb.st_size > 0, "session.json");
    snprintf(path, sizeof path, "%s/datasheet.md", out);
    CHECK(stat(path, &sb) == 0 && sb.st_size > 0, "datasheet.md");
    snprintf(path, sizeof path, "%s/run/checkpoint.bin", out);
    CHECK(stat(path, &sb) == 0, "the interrupted job saved its checkpoint");
    th_analysis_free(res->analysis);

    // a job that cannot start: session.json says so, the job's status comes back
    memset(res, 0, sizeof *res);
    j.model = "no-such-model-or-preset";
    CHECK(th_session_run(&j, &so, res) != TH_OK, "a missing model must fail");
    snprintf(path, sizeof path, "%s/session.json", out);
    size_t len = 0;
    char *buf = test_read_file(path, &len);
    CHECK(buf && strstr(buf, "\"error\""), "session.json after a failure: %s", buf ? buf : "(unreadable)");
    free(buf);
    th_free(res);
    return test_summary();
}
