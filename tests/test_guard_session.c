/* test_guard_session.c: the agent-session guard: each OpenHands pattern fires on the
 * right call and not one earlier, the energy of the loop is summed, the state file
 * survives a round trip, rejects corrupt or foreign files, stays consistent under
 * concurrent writers, and `thermo guard record` exits 4 when a pattern fires. */
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"
#include "thermo/guard.h"

static th_session_event ev(uint64_t p, uint64_t o, uint64_t e, double j) {
    th_session_event x = {p, o, e, j};
    return x;
}

/* Records the events; returns the 1-based call at which the first pattern fired (0: none). */
static long run(th_session_guard *g, const th_session_event *e, int n, th_session_verdict *first) {
    long at = 0;
    for (int i = 0; i < n; i++) {
        th_session_verdict v;
        if (th_session_guard_record(g, &e[i], &v) != TH_GUARD_CONTINUE && !at) {
            at = i + 1;
            if (first) *first = v;
        }
    }
    return at;
}

static void test_patterns(void) {
    th_session_guard g;
    th_session_verdict v;
    // two different calls, then the same prompt and output 4 times: fires on call 6
    th_session_event same[] = {ev(1, 2, 0, 5), ev(3, 4, 0, 5), ev(9, 9, 0, 10), ev(9, 9, 0, 10), ev(9, 9, 0, 10),
                               ev(9, 9, 0, 10), ev(9, 9, 0, 10)};
    CHECK(th_session_guard_init(&g, "s1", NULL) == TH_OK, "%s", th_last_error());
    long at = run(&g, same, 7, &v);
    CHECK(at == 6, "same output fired at call %ld, expected 6", at);
    CHECK(v.pattern == TH_SESSION_SAME_OUTPUT && v.repeats == 4 && v.loop_start == 3 && v.action == TH_GUARD_HALT,
          "pattern %d repeats %d start %ld", v.pattern, v.repeats, v.loop_start);
    CHECK(fabs(v.loop_energy_j - 40) < 1e-9 && fabs(v.session_energy_j - 50) < 1e-9, "loop %g J session %g J",
          v.loop_energy_j, v.session_energy_j);
    CHECK(strstr(v.reason, "same prompt and output 4 times since call 3 (40 J burned)") != NULL, "%s", v.reason);
    CHECK(g.last.repeats == 5 && g.fired == 2, "still stuck on call 7 (%d repeats, %ld fired)", g.last.repeats, g.fired);

    // the same error 3 times, with different prompts: fires on the third
    th_session_event errs[] = {ev(1, 2, 77, 1), ev(3, 4, 0, 1), ev(5, 6, 77, 1), ev(7, 8, 77, 1), ev(9, 10, 77, 1)};
    th_session_guard_init(&g, "s2", NULL);
    at = run(&g, errs, 5, &v);
    CHECK(at == 5 && v.pattern == TH_SESSION_SAME_ERROR && v.repeats == 3 && v.loop_start == 3,
          "same error fired at %ld (pattern %d, start %ld)", at, v.pattern, v.loop_start);

    // A/B ping-pong: item i equals item i+2 over 6 calls
    th_session_event ab[] = {ev(50, 51, 0, 1), ev(1, 2, 0, 1), ev(3, 4, 0, 1), ev(1, 2, 0, 1),
                             ev(3, 4, 0, 1),  ev(1, 2, 0, 1), ev(3, 4, 0, 1)};
    th_session_guard_init(&g, "s3", NULL);
    at = run(&g, ab, 7, &v);
    CHECK(at == 7 && v.pattern == TH_SESSION_CYCLE && v.period == 2 && v.repeats == 6 && v.loop_start == 2,
          "A/B fired at %ld (pattern %d period %d start %ld)", at, v.pattern, v.period, v.loop_start);
    CHECK(strstr(v.reason, "alternating A/B") != NULL, "%s", v.reason);

    // a cycle of 3 calls: fires once two full copies are seen (6 calls)
    th_session_event abc[] = {ev(1, 1, 0, 1), ev(2, 2, 0, 1), ev(3, 3, 0, 1), ev(1, 1, 0, 1), ev(2, 2, 0, 1),
                              ev(3, 3, 0, 1)};
    th_session_guard_init(&g, "s4", NULL);
    at = run(&g, abc, 6, &v);
    CHECK(at == 6 && v.pattern == TH_SESSION_CYCLE && v.period == 3, "A/B/C fired at %ld period %d", at, v.period);

    // an agent making progress: same prompt, different outputs; similar but not equal calls
    th_session_guard_init(&g, "s5", NULL);
    th_session_event ok[20];
    for (int i = 0; i < 20; i++) ok[i] = ev(i % 2 ? 7 : 100 + (uint64_t)i, 1000 + (uint64_t)i, 0, 1);
    CHECK(run(&g, ok, 20, &v) == 0, "progress must not fire: %s", v.reason);
    CHECK(g.calls == 20 && g.n == 20 && fabs(g.energy_j - 20) < 1e-9, "calls %ld energy %g", g.calls, g.energy_j);

    // warn mode reports, off mode ignores
    th_session_guard_config c = th_session_guard_defaults();
    c.mode = TH_GUARD_WARN;
    th_session_guard_init(&g, "s6", &c);
    at = run(&g, same, 7, &v);
    CHECK(at == 6 && v.action == TH_GUARD_WARNED, "warn mode at %ld action %d", at, v.action);
    c.mode = TH_GUARD_OFF;
    th_session_guard_init(&g, "s7", &c);
    CHECK(run(&g, same, 7, NULL) == 0, "off mode");

    // bad ids and configs
    CHECK(th_session_guard_init(&g, "has space", NULL) == TH_ERR_INVALID, "id with a space");
    CHECK(th_session_guard_init(&g, "", NULL) == TH_ERR_INVALID, "empty id");
    c = th_session_guard_defaults();
    c.max_period = 40;
    CHECK(th_session_guard_init(&g, "ok", &c) == TH_ERR_INVALID, "max_period too large");

    // a long session keeps only the last events but counts everything
    th_session_guard_init(&g, "long", NULL);
    for (int i = 0; i < 100; i++) {
        th_session_event e = ev(1 + (uint64_t)i, 1, 0, 0.5);
        th_session_guard_record(&g, &e, NULL);
    }
    CHECK(g.calls == 100 && g.n == TH_SESSION_KEEP && g.ev[0].prompt_hash == 69 && fabs(g.energy_j - 50) < 1e-9,
          "calls %ld n %d first %llu", g.calls, g.n, (unsigned long long)g.ev[0].prompt_hash);
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return 0;
    fputs(text, f);
    fclose(f);
    return 1;
}

static void test_state_file(void) {
    const char *dir = test_tmp_dir("guard_session");
    char path[4200], cmd[9000];
    snprintf(path, sizeof path, "%s/s.json", dir);
    unlink(path);
    th_session_guard g, back;
    th_session_guard_init(&g, "agent-7", NULL);
    th_session_event e[] = {ev(0x1234, 0xabcdef0123456789ULL, 0, 1.5), ev(5, 6, 0xffffffffffffffffULL, 2.25)};
    run(&g, e, 2, NULL);
    CHECK(th_session_guard_save(&g, path) == TH_OK, "%s", th_last_error());
    CHECK(th_session_guard_load(&back, path) == TH_OK, "%s", th_last_error());
    CHECK(strcmp(back.session, "agent-7") == 0 && back.calls == 2 && back.n == 2 &&
              back.ev[0].output_hash == 0xabcdef0123456789ULL && back.ev[1].error_hash == 0xffffffffffffffffULL &&
              back.ev[1].energy_j == 2.25 && back.energy_j == 3.75 && back.cfg.same_output == 4,
          "round trip");
    snprintf(cmd, sizeof cmd, "%s.tmp", path);
    CHECK(access(cmd, F_OK) != 0, "no temporary file left behind");

    // the file survives, a continuation from it fires exactly as in memory
    th_session_verdict v;
    th_session_event same = ev(9, 9, 0, 1);
    int fired_at = 0;
    for (int i = 1; i <= 4; i++) {
        CHECK(th_session_guard_record_file(path, "agent-7", NULL, &same, &v, NULL) == TH_OK, "%s", th_last_error());
        if (v.action == TH_GUARD_HALT && !fired_at) fired_at = i;
    }
    CHECK(fired_at == 4 && v.calls == 6 && v.loop_start == 3, "fired at %d, call %ld", fired_at, v.calls);

    // a foreign session and corrupt files are refused, the file is untouched
    CHECK(th_session_guard_record_file(path, "other", NULL, &same, &v, NULL) == TH_ERR_INVALID &&
              strstr(th_last_error(), "agent-7"),
          "%s", th_last_error());
    CHECK(th_session_guard_load(&back, path) == TH_OK && back.calls == 6, "unchanged after a refusal");
    const char *bad[] = {
        "{",
        "[]",
        "{\"format\": \"thermo-session-guard\", \"version\": 2}",
        "{\"format\":\"thermo-session-guard\",\"version\":1,\"session\":\"x\",\"calls\":1,\"energy_j\":1,\"fired\":0,"
        "\"config\":{\"mode\":\"stop\",\"same_output\":4,\"same_error\":3,\"cycle_events\":6,\"max_period\":8},"
        "\"events\":[{\"prompt\":\"zz\",\"output\":\"0000000000000001\",\"error\":null,\"energy_j\":1}]}",
        "{\"format\":\"thermo-session-guard\",\"version\":1,\"session\":\"x\",\"calls\":1,\"energy_j\":-1,\"fired\":0,"
        "\"config\":{\"mode\":\"stop\",\"same_output\":4,\"same_error\":3,\"cycle_events\":6,\"max_period\":8},"
        "\"events\":[]}",
        "{\"format\":\"thermo-session-guard\",\"version\":1,\"session\":\"x\",\"calls\":0,\"energy_j\":0,\"fired\":0,"
        "\"config\":{\"mode\":\"stop\",\"same_output\":4,\"same_error\":3,\"cycle_events\":6,\"max_period\":8},"
        "\"events\":[{\"prompt\":\"0000000000000001\",\"output\":\"0000000000000001\",\"error\":null,\"energy_j\":1}]}",
    };
    char bpath[4200];
    snprintf(bpath, sizeof bpath, "%s/bad.json", dir);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_file(bpath, bad[i]);
        th_status st = th_session_guard_load(&back, bpath);
        CHECK(st == TH_ERR_FORMAT && strstr(th_last_error(), "bad.json"), "bad file %zu: %d %s", i, st, th_last_error());
    }

    // concurrent writers: 4 processes x 25 calls each, none lost
    char cpath[4200];
    snprintf(cpath, sizeof cpath, "%s/conc.json", dir);
    unlink(cpath);
    for (int p = 0; p < 4; p++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (int i = 0; i < 25; i++) {
                th_session_event x = ev(1000 + (uint64_t)(p * 100 + i), 1, 0, 1);
                if (th_session_guard_record_file(cpath, "conc", NULL, &x, NULL, NULL) != TH_OK) _exit(1);
            }
            _exit(0);
        }
    }
    int all_ok = 1, status;
    while (wait(&status) > 0) all_ok &= WIFEXITED(status) && WEXITSTATUS(status) == 0;
    CHECK(all_ok, "a writer failed");
    CHECK(th_session_guard_load(&back, cpath) == TH_OK && back.calls == 100 && fabs(back.energy_j - 100) < 1e-9,
          "concurrent: %ld calls, %g J", back.calls, back.energy_j);
}

static void test_cli(void) {
    const char *bin = getenv("THERMO_BIN");
    if (!bin || !*bin) {
        printf("skip: THERMO_BIN not set; CLI not checked\n");
        return;
    }
    const char *dir = test_tmp_dir("guard_session_cli");
    char state[4200], cmd[9000], out[4200];
    snprintf(state, sizeof state, "%s/cli.json", dir);
    snprintf(out, sizeof out, "%s/out.txt", dir);
    unlink(state);
    int codes[5];
    for (int i = 0; i < 5; i++) {
        snprintf(cmd, sizeof cmd,
                 "'%s' guard record --session run-1 --state '%s' --prompt 'fix the bug' --output 'I fixed it' "
                 "--energy-j 12.5 > '%s' 2>&1",
                 bin, state, out);
        int rc = system(cmd);
        codes[i] = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    }
    CHECK(codes[0] == 0 && codes[1] == 0 && codes[2] == 0 && codes[3] == 4 && codes[4] == 4, "exit codes %d %d %d %d %d",
          codes[0], codes[1], codes[2], codes[3], codes[4]);
    char text[2048] = "";
    FILE *f = fopen(out, "r");
    if (f) {
        size_t n = fread(text, 1, sizeof text - 1, f);
        text[n] = 0;
        fclose(f);
    }
    CHECK(strstr(text, "same prompt and output 5 times since call 1 (62.5 J burned)") != NULL, "%s", text);
    // hashes given directly, the same error 3 times
    unlink(state);
    for (int i = 0; i < 3; i++) {
        snprintf(cmd, sizeof cmd,
                 "'%s' guard record --session e --state '%s' --prompt-hash %x --output-hash 0xBEEF --error 'E: no such "
                 "file' > '%s' 2>&1",
                 bin, state, 100 + i, out);
        int rc = system(cmd);
        codes[i] = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    }
    CHECK(codes[0] == 0 && codes[1] == 0 && codes[2] == 4, "same error exit codes %d %d %d", codes[0], codes[1], codes[2]);
    snprintf(cmd, sizeof cmd, "'%s' guard show --state '%s' --json > '%s' 2>&1", bin, state, out);
    int rc = system(cmd);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "show --json");
    snprintf(cmd, sizeof cmd, "'%s' guard show --state '%s' > '%s' 2>&1", bin, state, out);
    rc = system(cmd);
    f = fopen(out, "r");
    text[0] = 0;
    if (f) {
        size_t n = fread(text, 1, sizeof text - 1, f);
        text[n] = 0;
        fclose(f);
    }
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 0 && strstr(text, "calls     3 (1 fired a pattern)"), "show: %s", text);
    // usage errors and foreign sessions
    snprintf(cmd, sizeof cmd, "'%s' guard record --session e --state '%s' --prompt-hash xyz --output x >/dev/null 2>&1",
             bin, state);
    rc = system(cmd);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 2, "bad hash is a usage error");
    snprintf(cmd, sizeof cmd, "'%s' guard record --session other --state '%s' --prompt a --output b >/dev/null 2>&1",
             bin, state);
    rc = system(cmd);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 3, "foreign session is bad input");
}

int main(void) {
    test_patterns();
    test_state_file();
    test_cli();
    return test_summary();
}
