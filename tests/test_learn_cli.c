/* test_learn_cli.c: `thermo learn` end to end on a tiny state (the "small" preset, 2 x 16
 * batches): an update split into two calls is bit-identical to one call; a destructive
 * update is refused and the old weights stay current; rollback toggles; bad input exits 3
 * with the current model untouched; SIGKILL at a random moment of an update, and at every
 * stage of a promotion, never leaves a corrupted current model, and what follows ends with
 * the same weights as an uninterrupted update. */
#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>
#include <time.h>

#include "test_util.h"
#include "thermo/io.h"
#include "thermo/pipeline.h"

static const char *thermo_bin(void) {
    const char *b = getenv("THERMO_BIN");
    return b && *b ? b : "./build/thermo";
}

static char dir[4096], old_txt[4300], new_txt[4300], empty_txt[4300], base[4300];

/* Runs thermo with the given arguments (NULL-terminated), stderr to `log` (may be NULL). */
static pid_t spawn(char *const *args, const char *log) {
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(log ? log : "/dev/null", "w", stderr)) _exit(126);
        execv(thermo_bin(), args);
        _exit(127);
    }
    return pid;
}

static int wait_rc(pid_t pid) {
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int run(char *const *args) { return wait_rc(spawn(args, NULL)); }

static int sh(const char *fmt, const char *a, const char *b) {
    char cmd[9000];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    return system(cmd);
}

/* A fresh copy of the base state. */
static const char *fresh(const char *name) {
    static char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char cmd[14000];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", path, base, path);
    CHECK(system(cmd) == 0, "copy state");
    return path;
}

/* The update every comparison uses: 6 steps, a quarter of the rows replayed. */
#define UPDATE(state, ...)                                                                                         \
    (char *[]) {                                                                                                   \
        (char *)thermo_bin(), "learn", "--state", (char *)(state), "--steps", "6", "--batch", "2", "--seq", "16",    \
            "--eval-batches", "2", "--replay", "0.25", "--lr", "3e-3", "--governor", "none", "--threads", "2",       \
            "--save-every", "1", __VA_ARGS__, NULL                                                                  \
    }

static th_gpt2 *load(const char *state, const char *file) {
    char path[4500];
    snprintf(path, sizeof path, "%s/%s", state, file);
    th_gpt2 *m = NULL;
    return th_checkpoint_load(path, &m, NULL) == TH_OK ? m : NULL;
}

/* 1 when the two models' weights (and moments, when both have them) are bit-identical. */
static int same(th_gpt2 *a, th_gpt2 *b) {
    if (!a || !b) return 0;
    size_t n = th_gpt2_num_params(th_gpt2_get_config(a));
    if (n != th_gpt2_num_params(th_gpt2_get_config(b))) return 0;
    if (memcmp(th_gpt2_params(a), th_gpt2_params(b), n * 4)) return 0;
    if (th_gpt2_adam_m(a) && th_gpt2_adam_m(b))
        return !memcmp(th_gpt2_adam_m(a), th_gpt2_adam_m(b), n * 4) && !memcmp(th_gpt2_adam_v(a), th_gpt2_adam_v(b), n * 4);
    return 1;
}

static void write_text(const char *path, const char *const *lines, int n_lines, int repeat) {
    FILE *f = fopen(path, "w");
    for (int r = 0; r < repeat; r++)
        for (int i = 0; i < n_lines; i++) fprintf(f, "%s %d\n", lines[i], (r * 7 + i) % 23);
    fclose(f);
}

static th_gpt2 *orig, *updated; /* the base state's model; after one uninterrupted update */

static void test_round_trip(void) {
    char a[4400], b[4400];
    snprintf(a, sizeof a, "%s", fresh("whole"));
    CHECK(run(UPDATE(a, "--data", new_txt, "--max-forgetting", "1000")) == 0, "one-call update failed");
    updated = load(a, "checkpoint.bin");
    CHECK(updated && !same(orig, updated), "the update was not promoted");
    // the promoted update's data is folded into the reservoir: the next update replays it
    char rp[4500], lp[4500], tp[4500];
    snprintf(rp, sizeof rp, "%s/learn/replay.bin", a);
    snprintf(lp, sizeof lp, "%s/learn/learned/v1.bin", a);
    snprintf(tp, sizeof tp, "%s/data/train.bin", a);
    th_replay *res = NULL;
    th_data_loader *lo = NULL, *ln = NULL;
    CHECK(th_replay_load(rp, &res) == TH_OK && th_data_loader_open(tp, 1, 16, TH_DATA_SEQUENTIAL, 0, &lo) == TH_OK &&
              th_data_loader_open(lp, 1, 16, TH_DATA_SEQUENTIAL, 0, &ln) == TH_OK,
          "reservoir, old data and learned/v1.bin after a promotion");
    if (res && lo && ln)
        CHECK(th_replay_seen(res) == th_data_loader_windows(lo) + th_data_loader_windows(ln),
              "the reservoir saw %llu windows, the old data has %llu and the learned data %llu",
              (unsigned long long)th_replay_seen(res), (unsigned long long)th_data_loader_windows(lo),
              (unsigned long long)th_data_loader_windows(ln));
    th_replay_free(res);
    th_data_loader_close(lo);
    th_data_loader_close(ln);
    snprintf(b, sizeof b, "%s", fresh("split"));
    CHECK(run(UPDATE(b, "--data", new_txt, "--max-forgetting", "1000", "--stop-after", "3")) == 0, "first half failed");
    th_gpt2 *mid = load(b, "checkpoint.bin");
    CHECK(same(orig, mid), "the current model changed while the update was pending");
    th_gpt2_free(mid);
    char *cont[] = {(char *)thermo_bin(), "learn", "--state", b, "--continue", "--governor", "none", "--threads", "2", NULL};
    CHECK(run(cont) == 0, "--continue failed");
    th_gpt2 *split = load(b, "checkpoint.bin");
    CHECK(same(updated, split), "an update split into two calls differs from one call");
    th_gpt2 *prev = load(b, "learn/previous.bin");
    CHECK(same(orig, prev), "the previous model was not kept");
    th_gpt2_free(prev);
    printf("state round trip: 3 + 3 steps bit-identical to 6 steps (weights and AdamW moments)\n");

    // rollback toggles between the two
    char *rb[] = {(char *)thermo_bin(), "learn", "--state", b, "--rollback", NULL};
    CHECK(run(rb) == 0, "rollback failed");
    th_gpt2 *back = load(b, "checkpoint.bin");
    CHECK(same(orig, back), "rollback did not restore the previous model");
    th_gpt2_free(back);
    char mdir[4500];
    snprintf(mdir, sizeof mdir, "%s/model", b);
    th_gpt2 *hf = NULL;
    CHECK(th_hf_load(mdir, &hf, NULL) == TH_OK && hf &&
              !memcmp(th_gpt2_params(hf), th_gpt2_params(orig), th_gpt2_num_params(th_gpt2_get_config(orig)) * 4),
          "the exported model/ does not follow the rollback");
    th_gpt2_free(hf);
    CHECK(run(rb) == 0, "second rollback failed");
    back = load(b, "checkpoint.bin");
    CHECK(same(split, back), "a second rollback did not undo the first");
    th_gpt2_free(back);
    th_gpt2_free(split);
}

static void test_refused(void) {
    const char *s = fresh("destructive");
    char log[4500];
    snprintf(log, sizeof log, "%s.log", s);
    CHECK(wait_rc(spawn(UPDATE(s, "--data", new_txt, "--lr", "30", "--grad-clip", "0", "--spike-guard", "off"), log)) == 0,
          "destructive update: the run itself failed");
    th_gpt2 *cur = load(s, "checkpoint.bin");
    CHECK(same(orig, cur), "a destructive update replaced the current model");
    th_gpt2_free(cur);
    char *text = NULL;
    size_t len = 0;
    CHECK(th_read_file(log, &text, &len) == TH_OK && strstr(text, "gate: refused"), "no refusal reported:\n%s",
          text ? text : "");
    if (text && strstr(text, "forgetting:")) printf("destructive update: %.*s", (int)(strchr(strstr(text, "forgetting:"), '\n') - strstr(text, "forgetting:") + 1), strstr(text, "forgetting:"));
    th_free(text);
    char rej[4500];
    snprintf(rej, sizeof rej, "%s/learn/rejected.bin", s);
    CHECK(access(rej, F_OK) == 0, "the refused candidate is not kept for inspection");
}

static void test_bad_input(void) {
    const char *s = fresh("bad");
    char missing[4400];
    snprintf(missing, sizeof missing, "%s/no-such-state", dir);
    CHECK(run(UPDATE(s, "--data", empty_txt)) == 3, "empty new data: want exit 3");
    CHECK(run(UPDATE(s, "--data", new_txt, "--tokens", "100")) == 3, "--steps with --tokens: want exit 3");
    CHECK(run(UPDATE(s, "--data", new_txt, "--replay-from", empty_txt)) == 3, "replay data with no text: want exit 3");
    CHECK(run(UPDATE(missing, "--data", new_txt)) == 3, "missing state: want exit 3");
    char *rb[] = {(char *)thermo_bin(), "learn", "--state", (char *)s, "--rollback", NULL};
    CHECK(run(rb) == 3, "rollback without a previous model: want exit 3");
    char *both[] = {(char *)thermo_bin(), "learn", "--state", (char *)s, "--rollback", "--continue", NULL};
    CHECK(run(both) == 3, "conflicting modes: want exit 3");
    // a pending update whose checkpoint is of another shape
    CHECK(run(UPDATE(s, "--data", new_txt, "--stop-after", "2")) == 0, "pending update");
    CHECK(run(UPDATE(s, "--data", new_txt)) == 3, "a new update while one is pending: want exit 3");
    th_gpt2_config cfg;
    th_gpt2_config_preset("tiny", &cfg);
    th_gpt2 *tiny = NULL;
    th_gpt2_create(&cfg, &tiny);
    th_gpt2_init_random(tiny, 1);
    char pend[4500];
    snprintf(pend, sizeof pend, "%s/learn/pending/checkpoint.bin", s);
    CHECK(th_checkpoint_save(pend, tiny, NULL) == TH_OK, "plant a pending checkpoint of another shape");
    th_gpt2_free(tiny);
    char log[4500];
    snprintf(log, sizeof log, "%s.log", s);
    char *cont[] = {(char *)thermo_bin(), "learn", "--state", (char *)s, "--continue", "--threads", "2", NULL};
    CHECK(wait_rc(spawn(cont, log)) == 3, "pending update of another shape: want exit 3");
    char *text = NULL;
    size_t len = 0;
    th_read_file(log, &text, &len);
    CHECK(text && strstr(text, "another shape"), "message does not say 'another shape': %s", text ? text : "");
    th_free(text);
    char *withdata[] = {(char *)thermo_bin(), "learn", "--state", (char *)s, "--continue", "--data", new_txt, NULL};
    CHECK(run(withdata) == 3, "--continue with --data: want exit 3");
    th_gpt2 *cur = load(s, "checkpoint.bin");
    CHECK(same(orig, cur), "bad input changed the current model");
    th_gpt2_free(cur);
}

/* 1 when the file contains the string (waits up to wait_s seconds for it, polling: a loaded
 * machine may take minutes to score a file, a quiet one a second). */
static int file_has(const char *path, const char *what, int wait_s) {
    for (int i = 0; i <= wait_s * 10; i++) {
        char *text = NULL;
        size_t len = 0;
        int has = th_read_file(path, &text, &len) == TH_OK && strstr(text, what);
        th_free(text);
        if (has) return 1;
        if (i < wait_s * 10) usleep(100000);
    }
    return 0;
}

/* --watch as a watcher: it picks up a file added while it runs, stops cleanly on SIGTERM,
 * a restart skips what it scored, and an update drift schedules is skipped with the reason
 * when it does not fit the energy budget (the current model untouched). */
static void test_watch(void) {
    const char *s = fresh("watch");
    char in[4500], f0[4600], tmp[4600], f1[4600], wj[4600], log[4600];
    snprintf(in, sizeof in, "%s-in", s);
    snprintf(f0, sizeof f0, "%s/00-old.txt", in);
    snprintf(tmp, sizeof tmp, "%s/.01-noise.txt", in);
    snprintf(f1, sizeof f1, "%s/01-noise.txt", in);
    snprintf(wj, sizeof wj, "%s/learn/watch.json", s);
    snprintf(log, sizeof log, "%s.log", s);
    sh("rm -rf '%s' && mkdir -p '%s'", in, in);
    sh("head -c 1200 '%s' > '%s'", old_txt, f0);
#define WATCH(...)                                                                                                  \
    (char *[]) {                                                                                                    \
        (char *)thermo_bin(), "learn", "--state", (char *)s, "--watch", in, "--ks-reference", "256", "--ks-window",  \
            "64", "--drift-block", "16", "--steps", "2", "--batch", "2", "--seq", "16", "--eval-batches", "1",       \
            "--governor", "none", "--threads", "2", __VA_ARGS__, NULL                                                \
    }
    pid_t pid = spawn(WATCH("--watch-seconds", "120", "--poll-ms", "100", "--detect-only"), log);
    CHECK(file_has(wj, "00-old.txt", 600), "the watcher did not score the first file");
    FILE *f = fopen(tmp, "w");
    for (int i = 0; i < 1500; i++) fputc("zqxj#@%&{}[]<>~^0123456789"[(i * 7919) % 26], f);
    fclose(f);
    CHECK(rename(tmp, f1) == 0, "rename the new file into place");
    CHECK(file_has(wj, "01-noise.txt", 600), "the watcher did not pick up a file added while it ran");
    kill(pid, SIGTERM);
    CHECK(wait_rc(pid) == 0, "SIGTERM: the watcher did not stop cleanly");
    CHECK(file_has(log, "2 new files", 0), "the watcher's report does not count 2 files");
    CHECK(file_has(log, "drift: ", 0) && file_has(log, "0 run (0 promoted)", 0), "detect-only ran an update");
    CHECK(wait_rc(spawn(WATCH("--detect-only"), log)) == 0 && file_has(log, "0 new files", 0),
          "a restarted watcher scored its files again");
    // drift in those files, rescored from a clean watch state, schedules an update the budget refuses
    unlink(wj);
    CHECK(wait_rc(spawn(WATCH("--update-budget-j", "0.001"), log)) == 0, "watch with a budget failed");
    CHECK(file_has(log, "events, first", 0), "no drift on the noise file");
    CHECK(file_has(log, "1 skipped", 0) && file_has(log, "exceeds the energy budget", 0),
          "the skipped update and its reason are not reported");
    CHECK(file_has(wj, "\"owed\": [\n  \"", 0), "the skipped update is not kept owed in watch.json");
    th_gpt2 *cur = load(s, "checkpoint.bin");
    CHECK(same(orig, cur), "a skipped update changed the current model");
    th_gpt2_free(cur);
#undef WATCH
}

/* SIGKILL at a random moment of an update (data, evaluation, training, promotion). */
static void test_kill_random(void) {
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    int kills = 0;
    for (int attempt = 0; attempt < 4; attempt++) {
        const char *s = fresh("killed");
        pid_t pid = spawn(UPDATE(s, "--data", new_txt, "--max-forgetting", "1000"), NULL);
        usleep((useconds_t)(rand() % 2500000));
        kill(pid, SIGKILL);
        int rc = wait_rc(pid);
        kills += rc == 128 + SIGKILL;
        th_gpt2 *cur = load(s, "checkpoint.bin");
        CHECK(cur && (same(cur, orig) || same(cur, updated)),
              "after SIGKILL (attempt %d) the current model is neither the old nor the new one", attempt);
        th_gpt2_free(cur);
        // finish: continue a pending update, else (killed before it was recorded) start again
        char *cont[] = {(char *)thermo_bin(), "learn", "--state", (char *)s, "--continue", "--governor", "none",
                        "--threads", "2", NULL};
        char pj[4500];
        snprintf(pj, sizeof pj, "%s/learn/pending/update.json", s);
        th_gpt2 *now = load(s, "checkpoint.bin");
        int done_already = same(now, updated);
        th_gpt2_free(now);
        if (!done_already) {
            int rc2 = access(pj, F_OK) == 0 ? run(cont) : run(UPDATE(s, "--data", new_txt, "--max-forgetting", "1000"));
            CHECK(rc2 == 0, "finishing after the kill failed (rc %d)", rc2);
        } else {
            char *rec[] = {(char *)thermo_bin(), "learn", "--state", (char *)s, "--discard", NULL};
            CHECK(run(rec) == 0, "recovery failed");
        }
        cur = load(s, "checkpoint.bin");
        CHECK(same(cur, updated), "after a kill and a resume the weights differ from an uninterrupted update");
        th_gpt2_free(cur);
    }
    printf("SIGKILL at random moments: %d of 4 landed mid-run; every time the current model was whole and the "
           "resumed update bit-identical\n", kills);
}

static int kill_stage;
static void on_stage(int stage, void *user) {
    (void)user;
    if (stage == kill_stage) raise(SIGKILL);
}

/* The child of test_kill_stages, in a fresh process (re-executed: OpenMP's state does not
 * survive a fork): one update that SIGKILLs itself after promotion stage `kill_stage`. */
static int stage_child(const char *state, const char *data_path) {
    const char *data[] = {data_path};
    th_learn_opts o = th_learn_defaults();
    o.state_dir = state;
    o.data = data;
    o.n_data = 1;
    o.steps = 6;
    o.settings.batch = 2;
    o.settings.seq = 16;
    o.settings.lr = 3e-3;
    o.settings.has |= TH_META_BATCH | TH_META_SEQ | TH_META_LR;
    o.eval_batches = 2;
    o.replay = 0.25;
    o.max_forgetting = 1000;
    o.save_every = 1;
    o.run.governor = "none";
    o.on_promote_stage = on_stage;
    th_threads_set(2);
    th_learn_result r;
    return th_learn_run(&o, &r) == TH_OK ? 0 : 1;
}

/* SIGKILL after each stage of the promotion. */
static void test_kill_stages(void) {
    for (kill_stage = 1; kill_stage <= 4; kill_stage++) {
        const char *s = fresh("stage");
        char stage_arg[8];
        snprintf(stage_arg, sizeof stage_arg, "%d", kill_stage);
        pid_t pid = fork();
        if (pid == 0) {
            if (!freopen("/dev/null", "w", stderr)) _exit(126);
            char *args[] = {"test_learn_cli", "--stage-child", stage_arg, (char *)s, new_txt, NULL};
            execv("/proc/self/exe", args);
            _exit(127);
        }
        int rc = wait_rc(pid);
        CHECK(rc == 128 + SIGKILL, "stage %d: the child was not killed (rc %d)", kill_stage, rc);
        th_gpt2 *cur = load(s, "checkpoint.bin");
        CHECK(cur && (same(cur, orig) || same(cur, updated)), "killed after promotion stage %d: current model corrupt",
              kill_stage);
        th_gpt2_free(cur);
        CHECK(th_learn_recover(s) == TH_OK, "recover after stage %d", kill_stage);
        cur = load(s, "checkpoint.bin");
        th_gpt2 *prev = load(s, "learn/previous.bin");
        CHECK(same(cur, updated) && same(prev, orig), "stage %d: recovery did not finish the promotion", kill_stage);
        long version = -1;
        CHECK(th_learn_current(s, &version, NULL, 0) == TH_OK && version == 1, "stage %d: version %ld", kill_stage,
              version);
        th_gpt2_free(cur);
        th_gpt2_free(prev);
    }
    printf("SIGKILL after each of the 4 promotion stages: the current model was whole every time, and recovery "
           "finished the promotion\n");
}

int main(int argc, char **argv) {
    if (argc == 5 && !strcmp(argv[1], "--stage-child")) {
        kill_stage = atoi(argv[2]);
        return stage_child(argv[3], argv[4]);
    }
    snprintf(dir, sizeof dir, "%s", test_tmp_dir("learn_cli"));
    snprintf(old_txt, sizeof old_txt, "%s/old.txt", dir);
    snprintf(new_txt, sizeof new_txt, "%s/new.txt", dir);
    snprintf(empty_txt, sizeof empty_txt, "%s/empty.txt", dir);
    snprintf(base, sizeof base, "%s/base", dir);
    static const char *const old_lines[] = {"In the beginning God created the heaven and the earth.",
                                            "And the earth was without form, and void; and darkness was upon the deep.",
                                            "And God said, Let there be light: and there was light."};
    static const char *const new_lines[] = {"SELECT name, price FROM products WHERE price > 10 ORDER BY price;",
                                            "UPDATE orders SET status = 'shipped' WHERE id = 42;",
                                            "CREATE INDEX idx_orders_status ON orders (status);"};
    write_text(old_txt, old_lines, 3, 60);
    write_text(new_txt, new_lines, 3, 60);
    fclose(fopen(empty_txt, "w"));
    sh("rm -rf '%s'%s", base, "");
    char *train[] = {(char *)thermo_bin(), "train", "--model", "small", "--data", old_txt, "--steps", "4", "--batch", "2",
                     "--seq", "16", "--val-every", "4", "--val-batches", "1", "--governor", "none", "--threads", "2",
                     "--out", base, NULL};
    CHECK(run(train) == 0, "training the base state failed");
    orig = load(base, "checkpoint.bin");
    CHECK(orig != NULL, "base state");
    if (!orig) return test_summary();
    test_round_trip();
    if (!updated) return test_summary();
    test_refused();
    test_bad_input();
    test_watch();
    test_kill_stages();
    test_kill_random();
    th_gpt2_free(orig);
    th_gpt2_free(updated);
    return test_summary();
}
