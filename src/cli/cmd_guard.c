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

static const char record_about[] =
    "Adds one call of an agent session (e.g. one `thermo generate`) to FILE, a small JSON state\n"
    "shared by separate processes (locked with FILE.lock, written atomically), and checks the\n"
    "patterns of OpenHands' stuck detector: the same prompt and output 4 times in a row, the same\n"
    "error 3 times, a cycle of period 2..8 over 6 calls (A/B ping-pong). Hashes are 1..16 hex\n"
    "digits; --prompt/--output/--error TEXT are hashed with 64-bit FNV-1a. The session's energy\n"
    "(--energy-j per call) is summed.\n";
static const char memory_about[] =
    "Estimates the bytes training takes at (B, T) (parameters, gradients, AdamW moments,\n"
    "activations) and compares them with MemAvailable in ROOT/proc/meminfo minus a margin.\n";
static const char exit_codes[] =
    "exit codes: 0 ok (or a pattern in warn mode), 4 a pattern fired (record, stop mode) or the\n"
    "            training does not fit (memory), 2 bad command line, 3 bad or foreign state file,\n"
    "            1 I/O error\n";

static void guard_usage(FILE *f) {
    fprintf(f, "usage: thermo guard record --session ID --state FILE (--prompt-hash H | --prompt TEXT)\n"
               "                           (--output-hash H | --output TEXT) [options]\n"
               "       thermo guard show --state FILE [--json]\n"
               "       thermo guard memory [--config PRESET] [--batch B] [--seq T] [--margin-mb M] [--root DIR]\n"
               "record  adds one call of an agent session to a shared state file; exit 4 when stuck\n"
               "show    prints the session in FILE\n"
               "memory  the preflight memory check for a training shape\n"
               "(thermo guard SUBCOMMAND --help gives each one's options)\n%s",
            exit_codes);
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
    cli_print_json(o, JSON_PRESERVE_ORDER, "guard record");
}

static int guard_record(int argc, char **argv) {
    const char *session = NULL, *state = NULL, *error = NULL, *prompt = NULL, *output = NULL;
    const char *prompt_hash = NULL, *output_hash = NULL;
    uint64_t ph = 0, oh = 0;
    double energy = 0;
    int json = 0, mode = TH_GUARD_STOP;
    th_session_guard_config cfg = th_session_guard_defaults();
    const cli_opt opts[] = {
        CLI_O_STR("--session", "ID", &session, "the agent session"),
        CLI_O_STR("--state", "FILE", &state, "the shared state file"),
        CLI_O_STR("--prompt-hash", "H", &prompt_hash, "the call's prompt, hashed (1..16 hex digits)"),
        CLI_O_STR("--prompt", "TEXT", &prompt, "the call's prompt (hashed here)"),
        CLI_O_STR("--output-hash", "H", &output_hash, "the call's output, hashed"),
        CLI_O_STR("--output", "TEXT", &output, "the call's output (hashed here)"),
        CLI_O_STR("--error", "TEXT", &error, "the call's error, if it failed"),
        CLI_O_DBL("--energy-j", "J", &energy, 0, 1e15, "the call's energy"),
        CLI_O_CHOICE("--mode", &mode, cli_guard_modes, cli_guard_mode_values,
                     "stop (default: exit 4 when a pattern fires), warn or off"),
        CLI_O_FLAG("--json", &json, "print the verdict as one JSON object"),
        {0},
    };
    cli_cmd c = {.name = "guard record", .synopsis = "--session ID --state FILE (--prompt-hash H | --prompt TEXT)\n"
                             "                           (--output-hash H | --output TEXT) [options]",
                 .about = record_about, .tables = {opts}, .epilog = exit_codes};
    int rc = cli_parse(&c, argc, argv);
    if (rc != CLI_GO) return rc;
    cfg.mode = (th_guard_mode)mode;
    if (prompt_hash ? !parse_hash("--prompt-hash", prompt_hash, &ph) : 0) return EXIT_USAGE;
    if (output_hash ? !parse_hash("--output-hash", output_hash, &oh) : 0) return EXIT_USAGE;
    if (!prompt_hash && prompt) ph = hash_text(prompt);
    if (!output_hash && output) oh = hash_text(output);
    if (!session || !state || !ph || !oh) {
        fprintf(stderr, "thermo guard record: --session, --state, a prompt and an output are required "
                        "(thermo guard record --help)\n");
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
    const cli_opt opts[] = {
        CLI_O_STR("--state", "FILE", &state, "the shared state file"),
        CLI_O_FLAG("--json", &json, "print the file as JSON"),
        {0},
    };
    cli_cmd c = {.name = "guard show", .synopsis = "--state FILE [--json]",
                 .about = "Prints an agent session's state file.\n", .tables = {opts}, .epilog = exit_codes};
    int rc = cli_parse(&c, argc, argv);
    if (rc != CLI_GO) return rc;
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
        return cli_print_json(json_load_file(state, 0, &err), JSON_INDENT(2) | JSON_PRESERVE_ORDER, "guard show");
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
    const cli_opt opts[] = {
        CLI_O_STR("--config", "PRESET", &preset, "model shape: gpt2 (default), distilgpt2, gpt2-medium, small, tiny"),
        CLI_O_LONG("--batch", "B", &B, 1, 1 << 20, "micro-batch size (default 4)"),
        CLI_O_LONG("--seq", "T", &T, 1, 1 << 20, "sequence length (default 64)"),
        CLI_O_DBL("--margin-mb", "M", &margin_mb, 0, 1e9, "memory kept free (default 1024 MB)"),
        CLI_O_STR("--root", "DIR", &root, "read DIR/proc/meminfo instead of /proc/meminfo"),
        {0},
    };
    cli_cmd c = {.name = "guard memory", .synopsis = "[options]", .about = memory_about, .tables = {opts},
                 .epilog = exit_codes};
    int rc = cli_parse(&c, argc, argv);
    if (rc != CLI_GO) return rc;
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
