/* test_pipeline_resume.c: invariant 3 ("nothing lost") end to end through the CLI. A
 * training run is killed with SIGKILL at a random moment, resumed with --resume, and must
 * end with weights and AdamW moments bit-identical to an uninterrupted run's. Also checks
 * that a kill never leaves an unloadable checkpoint. */
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"
#include "thermo/io.h"

static const char *thermo_bin(void) {
    const char *b = getenv("THERMO_BIN");
    return b && *b ? b : "./build/thermo";
}

/* Starts `thermo train` with the shared arguments and the given output directory. */
static pid_t start_train(const char *data, const char *out, int resume) {
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stderr);
        char *argv[] = {(char *)thermo_bin(), "train", "--model", "small", "--data", (char *)data, "--steps", "14",
                        "--batch", "2", "--seq", "32", "--val-every", "5", "--val-batches", "2", "--save-every",
                        "1", "--threads", "2", "--out", (char *)out, resume ? "--resume" : NULL, NULL};
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t pid) {
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int load(const char *out, th_gpt2 **m, th_train_state *st) {
    char path[4400];
    snprintf(path, sizeof path, "%.4300s/checkpoint.bin", out);
    return th_checkpoint_load(path, m, st) == TH_OK;
}

int main(void) {
    const char *dir = test_tmp_dir("pipeline_resume");
    char data[4300], out_a[4300], out_b[4300], cmd[9000];
    snprintf(data, sizeof data, "%s/corpus.txt", dir);
    snprintf(out_a, sizeof out_a, "%s/uninterrupted", dir);
    snprintf(out_b, sizeof out_b, "%s/killed", dir);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", out_a, out_b);
    CHECK(system(cmd) == 0, "clean");
    FILE *f = fopen(data, "w");
    for (int i = 0; i < 400; i++)
        fprintf(f, "Line %d: the quick brown fox jumps over the lazy dog, %d times; it's 'fine'.\n", i, i * 7 % 13);
    fclose(f);

    CHECK(wait_exit(start_train(data, out_a, 0)) == 0, "uninterrupted run failed");
    th_gpt2 *ma = NULL;
    th_train_state sa;
    CHECK(load(out_a, &ma, &sa) && sa.step == 14, "uninterrupted checkpoint at step %ld", sa.step);

    // kill at a random moment after the first checkpoint exists, until a kill lands mid-run
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    int killed_mid_run = 0;
    long killed_at = -1;
    for (int attempt = 0; attempt < 8 && !killed_mid_run; attempt++) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", out_b);
        CHECK(system(cmd) == 0, "clean");
        pid_t pid = start_train(data, out_b, 0);
        char ck[4400];
        snprintf(ck, sizeof ck, "%s/checkpoint.bin", out_b);
        struct stat sb;
        for (int i = 0; i < 3000 && stat(ck, &sb) != 0; i++) usleep(2000);
        usleep((useconds_t)(rand() % 400000));
        kill(pid, SIGKILL);
        int rc = wait_exit(pid);
        th_gpt2 *mb = NULL;
        th_train_state sb_state;
        int ok = load(out_b, &mb, &sb_state);
        CHECK(ok, "after SIGKILL the checkpoint does not load: %s", th_last_error());
        if (ok && rc == 128 + SIGKILL && sb_state.step < 14) {
            killed_mid_run = 1;
            killed_at = sb_state.step;
        }
        th_gpt2_free(mb);
    }
    CHECK(killed_mid_run, "no kill landed before the end of the run in 8 attempts");
    printf("killed with SIGKILL; the last checkpoint was at step %ld of 14\n", killed_at);

    CHECK(wait_exit(start_train(data, out_b, 1)) == 0, "resumed run failed");
    th_gpt2 *mb = NULL;
    th_train_state sb;
    CHECK(load(out_b, &mb, &sb) && sb.step == 14, "resumed checkpoint at step %ld", sb.step);
    if (ma && mb) {
        size_t n = th_gpt2_num_params(th_gpt2_get_config(ma));
        CHECK(memcmp(th_gpt2_params(ma), th_gpt2_params(mb), n * 4) == 0, "weights differ after resume");
        CHECK(th_gpt2_adam_m(ma) && th_gpt2_adam_m(mb) &&
                  memcmp(th_gpt2_adam_m(ma), th_gpt2_adam_m(mb), n * 4) == 0 &&
                  memcmp(th_gpt2_adam_v(ma), th_gpt2_adam_v(mb), n * 4) == 0,
              "AdamW moments differ after resume");
        CHECK(memcmp(sa.data_cursor, sb.data_cursor, sizeof sa.data_cursor) == 0, "data cursor differs");
        printf("resumed run: weights, moments and data cursor bit-identical to the uninterrupted run\n");
    }
    th_gpt2_free(ma);
    th_gpt2_free(mb);
    return test_summary();
}
