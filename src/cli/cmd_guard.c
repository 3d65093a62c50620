/* cmd_guard.c: `thermo guard`: the waste guards from the command line. `record` adds one
 * call of an agent session to a shared state file and exits 4 when a stuck pattern fires
 * (the same prompt and output 4 times, the same error 3 times, an A/B cycle); `show`
 * prints a session; `memory` is the preflight memory check for a training shape. */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "thermo/guard.h"

/* Exit code of `thermo guard record` when a pattern fired in stop mode. */
#define EXIT_GUARD_FIRED 4

static void guard_usage(FILE *f) {
    fprintf(f,
            "usage: thermo guard record --session ID --state FILE (--prompt-hash H | --prompt TEXT)\n"
            "                           (--output-hash H | --output TEXT) [--error TEXT] [--energy-j J]\n"
            "                           [--mode stop|warn|off] [--json]\n"
            "       thermo guard show --state FILE [--json]\n"
            "       thermo guard memory [--config gpt2|distilgpt2|small|tiny|...] [--batch B] [--seq T]\n"
            "                           [--margin-mb M] [--root DIR]\n"
            "\n"
            "record  adds one call of an agent session (e.g. one `thermo generate`) to FILE, a small JSON\n"
            "        state shared by separate processes (locked with FILE.lock, written atomically), and\n"
            "        checks the patterns of OpenHands' stuck detector: the same prompt and output 4 times\n"
            "        in a row, the same error 3 times, a cycle of period 2..8 over 6 calls (A/B ping-pong).\n"
            "        Hashes are 1..16 hex digits; --prompt/--output/--error TEXT are hashed with 64-bit\n"
            "        FNV-1a. The session's energy (--energy-j per call) is summed.\n"
            "show    prints the session in FILE.\n"
            "memory  estimates the bytes training takes at (B, T) (parameters, gradients, AdamW moments,\n"
            "        activations) and compares them with MemAvailable in ROOT/proc/meminfo minus a margin\n"
            "        (default 1024 MB).\n"
            "\n"
            "exit codes: 0 ok (or a pattern in warn mode), 4 a pattern fired (record, stop mode) or the\n"
            "            training does not fit (memory), 2 bad command line, 3 bad or foreign state file,\n"
            "            1 I/O error\n");
}

static int parse_hash(const char *flag, const char *text, uint64_t *out) {
    const char *s = text;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s += 2;
    size_t n = strlen(s);
    uint64_t h = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) n = 0;
        h = h << 4 | (uint64_t)(d < 0 ? 0 : d);
    }
    if (n == 0 || n > 16 || h == 0) {
        fprintf(stderr, "thermo guard: %s expects 1..16 hex digits (not all zero), got '%s'\n", flag, text);
        return 0;
    }
    *out = h;
    return 1;
}

static uint64_t hash_text(const char *s) {
    uint64_t h = th_fnv1a64(s, strlen(s));
    return h ? h : 1; // 0 means "none" in the state
}

static void print_verdict_json(const th_session_verdict *v, const th_session_guard *g) {
    json_t *o = json_object();
    json_object_set_new(o, "session", json_string(g->session));
    json_object_set_new(o, "action", json_string(th_guard_action_name(v->action)));
    json_object_set_new(o, "pattern", json_string(th_session_pattern_name(v->pattern)));
    json_object_set_new(o, "period", json_integer(v->period));
    json_object_set_new(o, "repeats", json_integer(v->repeats));
    json_object_set_new(o, "loop_start", json_integer(v->loop_start));
    json_object_set_new(o, "calls", json_integer(v->calls));
    json_object_set_new(o, "loop_energy_j", json_real(v->loop_energy_j));
    json_object_set_new(o, "session_energy_j", json_real(v->session_energy_j));
    json_object_set_new(o, "reason", json_string(v->reason));
    char *s = json_dumps(o, JSON_PRESERVE_ORDER);
    if (s) printf("%s\n", s);
    free(s);
    json_decref(o);
}

static int guard_record(int argc, char **argv) {
    const char *session = NULL, *state = NULL, *error = NULL;
    uint64_t ph = 0, oh = 0;
    double energy = 0;
    int json = 0;
    th_session_guard_config cfg = th_session_guard_defaults();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            guard_usage(stdout);
            return EXIT_OK;
        }
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "thermo guard record: unknown option or missing value: %s\n", a);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        int ok = 1;
        if (!strcmp(a, "--session")) session = v;
        else if (!strcmp(a, "--state")) state = v;
        else if (!strcmp(a, "--prompt-hash")) ok = parse_hash(a, v, &ph);
        else if (!strcmp(a, "--output-hash")) ok = parse_hash(a, v, &oh);
        else if (!strcmp(a, "--prompt")) ph = hash_text(v);
        else if (!strcmp(a, "--output")) oh = hash_text(v);
        else if (!strcmp(a, "--error")) error = v;
        else if (!strcmp(a, "--energy-j")) ok = cli_parse_float("guard record", a, v, 0, 1e15, &energy);
        else if (!strcmp(a, "--mode")) {
            if (th_guard_mode_parse(v, &cfg.mode) != TH_OK) {
                fprintf(stderr, "thermo guard record: --mode expects stop, warn or off, got '%s'\n", v);
                ok = 0;
            }
        } else {
            fprintf(stderr, "thermo guard record: unknown option %s\n", a);
            guard_usage(stderr);
            return EXIT_USAGE;
        }
        if (!ok) return EXIT_USAGE;
    }
    if (!session || !state || !ph || !oh) {
        fprintf(stderr, "thermo guard record: --session, --state, a prompt and an output are required\n");
        guard_usage(stderr);
        return EXIT_USAGE;
    }
    th_session_event e = {ph, oh, error && *error ? hash_text(error) : 0, energy};
    th_session_verdict v;
    th_session_guard g;
    th_status st = th_session_guard_record_file(state, session, &cfg, &e, &v, &g);
    if (st != TH_OK) return cli_report(st, "guard record");
    if (json) print_verdict_json(&v, &g);
    else printf("%s%s\n", v.action == TH_GUARD_WARNED ? "warning: " : v.action == TH_GUARD_HALT ? "stuck: " : "",
                v.reason);
    return v.action == TH_GUARD_HALT ? EXIT_GUARD_FIRED : EXIT_OK;
}

static int guard_show(int argc, char **argv) {
    const char *state = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            guard_usage(stdout);
            return EXIT_OK;
        } else if (!strcmp(argv[i], "--json")) json = 1;
        else if (!strcmp(argv[i], "--state") && i + 1 < argc) state = argv[++i];
        else {
            fprintf(stderr, "thermo guard show: unknown option or missing value: %s\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (!state) {
        fprintf(stderr, "thermo guard show: --state FILE is required\n");
        return EXIT_USAGE;
    }
    th_session_guard g;
    th_status st = th_session_guard_load(&g, state);
    if (st != TH_OK) return cli_report(st, "guard show");
    if (json) {
        // the validated file, re-read as is
        json_error_t err;
        json_t *root = json_load_file(state, 0, &err);
        char *s = root ? json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER) : NULL;
        if (s) printf("%s\n", s);
        free(s);
        json_decref(root);
        return s ? EXIT_OK : EXIT_FAILURE_RUN;
    }
    printf("session   %s\n", g.session);
    printf("calls     %ld (%ld fired a pattern)\n", g.calls, g.fired);
    printf("energy    %.6g J\n", g.energy_j);
    printf("mode      %s (same output %d, same error %d, cycles of period <= %d over %d calls)\n",
           th_guard_mode_name(g.cfg.mode), g.cfg.same_output, g.cfg.same_error, g.cfg.max_period, g.cfg.cycle_events);
    printf("last      %s\n", g.last.reason);
    printf("recent calls (oldest first):\n  %-6s %-16s %-16s %-16s %s\n", "call", "prompt", "output", "error", "energy J");
    for (int i = 0; i < g.n; i++) {
        char err[17] = "-";
        if (g.ev[i].error_hash) snprintf(err, sizeof err, "%016" PRIx64, g.ev[i].error_hash);
        printf("  %-6ld %016" PRIx64 " %016" PRIx64 " %-16s %.6g\n", g.calls - g.n + 1 + i, g.ev[i].prompt_hash,
               g.ev[i].output_hash, err, g.ev[i].energy_j);
    }
    return EXIT_OK;
}

static int guard_memory(int argc, char **argv) {
    const char *preset = "gpt2", *root = NULL;
    long B = 4, T = 64;
    double margin_mb = 1024;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            guard_usage(stdout);
            return EXIT_OK;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "thermo guard memory: unknown option or missing value: %s\n", a);
            return EXIT_USAGE;
        }
        const char *v = argv[++i];
        int ok = 1;
        if (!strcmp(a, "--config")) preset = v;
        else if (!strcmp(a, "--root")) root = v;
        else if (!strcmp(a, "--batch")) ok = cli_parse_int("guard memory", a, v, 1, 1 << 20, &B);
        else if (!strcmp(a, "--seq")) ok = cli_parse_int("guard memory", a, v, 1, 1 << 20, &T);
        else if (!strcmp(a, "--margin-mb")) ok = cli_parse_float("guard memory", a, v, 0, 1e9, &margin_mb);
        else {
            fprintf(stderr, "thermo guard memory: unknown option %s\n", a);
            return EXIT_USAGE;
        }
        if (!ok) return EXIT_USAGE;
    }
    th_gpt2_config cfg;
    th_status st = th_gpt2_config_preset(preset, &cfg);
    if (st != TH_OK) return cli_report(st, "guard memory --config");
    th_preflight_memory m;
    st = th_preflight_memory_check(&cfg, (int)B, (int)T, root, (size_t)(margin_mb * 1e6), &m);
    if (st != TH_OK && st != TH_ERR_NOMEM) return cli_report(st, "guard memory");
    printf("training %s at B=%ld T=%ld: %.1f MB (params %.1f, grads %.1f, AdamW %.1f, activations %.1f)\n", preset, B,
           T, m.total_bytes / 1e6, m.params_bytes / 1e6, m.grads_bytes / 1e6, m.adam_bytes / 1e6,
           m.activations_bytes / 1e6);
    printf("available: %.1f MB (MemAvailable) minus a %.1f MB margin: %s\n", m.available_bytes / 1e6,
           m.margin_bytes / 1e6, st == TH_OK ? "fits" : "does NOT fit");
    return st == TH_OK ? EXIT_OK : EXIT_GUARD_FIRED;
}

int cmd_guard(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        guard_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (!strcmp(argv[1], "record")) return guard_record(argc - 1, argv + 1);
    if (!strcmp(argv[1], "show")) return guard_show(argc - 1, argv + 1);
    if (!strcmp(argv[1], "memory")) return guard_memory(argc - 1, argv + 1);
    fprintf(stderr, "thermo guard: unknown subcommand '%s' (record, show, memory)\n", argv[1]);
    guard_usage(stderr);
    return EXIT_USAGE;
}
