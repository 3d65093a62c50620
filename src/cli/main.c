/* main.c: `thermo`, the command-line front end. Dispatches to one function per
 * subcommand (one file each) and holds the helpers they share. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"

static const struct {
    const char *name;
    cli_command_fn fn;
    const char *summary;
} commands[] = {
    {"train", cmd_train, "train or fine-tune a GPT-2 model (default: the embedded demo)"},
    {"generate", cmd_generate, "continue a prompt; only the generated text goes to stdout"},
    {"serve", cmd_serve, "inference server: OpenAI-style completions, per-request energy, /metrics, dashboard"},
    {"sensors", cmd_sensors, "list temperature/power/energy sensors (the simulated plant when none)"},
    {"monitor", cmd_monitor, "log sensors to CSV/JSONL until Ctrl-C or until a command exits"},
    {"estimate", cmd_estimate, "planning estimate: energy, CO2e, water, pollutants of P x N x hours x PUE"},
    {"bench", cmd_bench, "benchmarks: `thermo bench model`"},
    {"info", cmd_info, "what a model file or directory holds"},
    {"guard", cmd_guard, "waste guards: agent-session loop detection (exit 4 when stuck), memory preflight"},
    {"session", cmd_session, "a monitored fine-tuning session for the coupling analysis (telemetry, session.json)"},
    {"analyze", cmd_analyze, "coupling analysis of a session or telemetry log: data sheet (Markdown, JSON), SVG plots"},
    {"calibrate", cmd_calibrate, "step-response experiment: fit a thermal profile (R, C, tau, P_idle, P_max)"},
    {"learn", cmd_learn, "continual fine-tuning of a trained state: replay, forgetting gate, rollback, drift watch"},
    {"repro", cmd_repro, "do several sessions' coupling figures agree within +-20 %?"},
    {"distill", cmd_distill, "distill a teacher into a smaller student; the footprint includes the teacher"},
    {"distill-cache", cmd_distill_cache, "the teacher's top-k log-probabilities once, for many students"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: thermo <command> [options]   (thermo <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nexit codes: 0 ok, 1 run failed, 2 bad command line, 3 bad input file or config,\n"
               "            4 a guard fired (thermo guard),\n"
               "            130 interrupted\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return EXIT_OK;
    }
    cli_install_logger(TH_LOG_INFO);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "thermo: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}

/* ---------------------------------------------------------------------------------
 * shared helpers */

int cli_report(th_status st, const char *context) {
    if (st == TH_OK) return EXIT_OK;
    fprintf(stderr, "thermo: %s: %s\n", context, th_last_error()[0] ? th_last_error() : th_status_name(st));
    switch (st) {
    case TH_ERR_INVALID:
    case TH_ERR_FORMAT: return EXIT_BAD_INPUT;
    case TH_ERR_INTERRUPTED: return EXIT_INTERRUPTED;
    default: return EXIT_FAILURE_RUN;
    }
}

int cli_report_model(th_status st, const char *context) {
    int rc = cli_report(st, context);
    return st == TH_ERR_UNSUPPORTED ? EXIT_BAD_INPUT : rc;
}

static void log_to_stderr(th_log_level level, const char *msg, void *user) {
    th_log_level min_level = (th_log_level)(long)user;
    if (level < min_level) return;
    static const char *tags[] = {"debug", "info", "warning", "error"};
    if (level == TH_LOG_INFO)
        fprintf(stderr, "%s\n", msg);
    else
        fprintf(stderr, "thermo: %s: %s\n", tags[level], msg);
}

void cli_install_logger(th_log_level min_level) { th_log_set_handler(log_to_stderr, (void *)(long)min_level); }

int cli_mkdir_p(const char *dir) { return th_mkdir_p(dir) == TH_OK; }

int cli_print_json(void *json, size_t flags, const char *cmd) {
    char *text = json ? json_dumps(json, flags) : NULL;
    json_decref(json);
    if (!text) return cli_report(th_fail(TH_ERR_NOMEM, "out of memory for the JSON document"), cmd);
    printf("%s\n", text);
    free(text);
    return EXIT_OK;
}
