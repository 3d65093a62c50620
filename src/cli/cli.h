/* cli.h (internal to the CLI): the subcommand table and the helpers every subcommand
 * shares: option parsing with clear errors, and turning a library status into a message
 * and an exit code. The CLI is the only code that prints to the terminal or exits. */
#ifndef THERMO_CLI_H
#define THERMO_CLI_H

#include "thermo/core.h"

/* Exit codes, documented in `thermo --help` and the README. */
enum {
    EXIT_OK = 0,
    EXIT_FAILURE_RUN = 1, /* the run failed (I/O, out of memory, ...) */
    EXIT_USAGE = 2,       /* bad command line */
    EXIT_BAD_INPUT = 3,   /* a file or config was rejected */
    EXIT_INTERRUPTED = 130,
};

typedef int (*cli_command_fn)(int argc, char **argv);

int cmd_train(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_estimate(int argc, char **argv);
int cmd_sensors(int argc, char **argv);
int cmd_monitor(int argc, char **argv);

/* Prints "thermo: <context>: <library message>" to stderr; returns the exit code for st. */
int cli_report(th_status st, const char *context);

/* Parses a whole decimal integer / float in [lo, hi]; on failure prints
 * "thermo <cmd>: --<flag> ..." and returns 0. */
int cli_parse_int(const char *cmd, const char *flag, const char *text, long lo, long hi, long *out);
int cli_parse_float(const char *cmd, const char *flag, const char *text, double lo, double hi, double *out);

/* Installs a log handler that prints library messages to stderr at `min_level` and above. */
void cli_install_logger(th_log_level min_level);

#endif
