/* cli.h (internal to the CLI): the subcommand table and the helpers every subcommand
 * shares: option parsing with clear errors, and turning a library status into a message
 * and an exit code. The CLI is the only code that prints to the terminal or exits. */
#ifndef THERMO_CLI_H
#define THERMO_CLI_H

#include <stdio.h>

#include "thermo/core.h"
#include "thermo/eco.h"
#include "thermo/pipeline.h"

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
int cmd_bench_governor(int argc, char **argv);
int cmd_bench_eco(int argc, char **argv);
int cmd_estimate(int argc, char **argv);
int cmd_sensors(int argc, char **argv);
int cmd_monitor(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_guard(int argc, char **argv);
int cmd_session(int argc, char **argv);
int cmd_analyze(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_repro(int argc, char **argv);
int cmd_learn(int argc, char **argv);

/* Prints "thermo: <context>: <library message>" to stderr; returns the exit code for st. */
int cli_report(th_status st, const char *context);

/* Parses a whole decimal integer / float in [lo, hi]; on failure prints
 * "thermo <cmd>: --<flag> ..." and returns 0. */
int cli_parse_int(const char *cmd, const char *flag, const char *text, long lo, long hi, long *out);
int cli_parse_float(const char *cmd, const char *flag, const char *text, double lo, double hi, double *out);

/* Creates dir and its missing parents (mode 0755); 1 on success or if it exists, else 0. */
int cli_mkdir_p(const char *dir);

/* Installs a log handler that prints library messages to stderr at `min_level` and above. */
void cli_install_logger(th_log_level min_level);

/* ---------------------------------------------------------------------------------
 * options shared by monitored commands (run_flags.c) */

typedef struct {
    const char *flag;
    th_eco_factor_id id;
    double hi;
    double value;
} cli_factor_override;

typedef struct {
    th_run_opts run;
    const char *region, *preset, *cooling, *report_json, *emissions_csv;
    const char *factor_files[16];
    int n_factor_files;
    double pue; /* NaN: the preset's */
    cli_factor_override overrides[4];
    int n_overrides;
    int methane;
    th_report_style report; /* --report summary (default) | full: the end-of-run text */
    th_eco_factors factors; /* filled by cli_eco_resolve */
    th_eco_price price;     /* per joule of IT energy, from factors (cli_eco_resolve) */
    int have_price;         /* 0 when the factors cannot price energy */
    th_budget_config budget; /* --budget-j, --budget-wh, --budget-co2-g, --budget-water-ml, --budget-s */
} cli_run_flags;

typedef struct {
    double tokens, steps;    /* per-unit figures for those > 0 */
    const char *stop_reason; /* why the run ended (NULL: not reported) */
    double wasted_tokens;    /* tokens a guard judged wasted (a loop), priced in the report */
    const char *waste_what;  /* what wasted them ("loop: period 7 ...") */
} cli_run_units;

void cli_run_flags_init(cli_run_flags *f);
const char *cli_run_flags_help(void);
/* If argv[*i] is one of the shared options, consumes it (and its value, advancing *i) and
 * returns 1; returns 0 if it is not ours, -1 after printing an error. */
int cli_run_flag(cli_run_flags *f, const char *cmd, int argc, char **argv, int *i);
/* Loads the factor tables and resolves f->factors; returns an exit code (0 on success). */
int cli_eco_resolve(cli_run_flags *f, const char *cmd);
/* Running CO2e of energy_j for progress lines: energy x the resolved price (0 without one). */
double cli_live_co2e_g(const cli_run_flags *f, double energy_j);
/* The footprint as the full text; returns an exit code. */
int cli_print_footprint_text(const th_eco_footprint *fp, FILE *out);
/* The end-of-run report (th_run_report): text on stderr in the --report style, --report-json,
 * --emissions-csv. Returns an exit code. */
int cli_run_report(const cli_run_flags *f, const char *cmd, const th_run_figures *fig, const cli_run_units *units);

/* ---------------------------------------------------------------------------------
 * thermo train's options, shared with thermo session (cmd_train.c) */

typedef struct {
    long every;              /* progress line every N steps */
    uint64_t t0;
    long start_step;
    th_run *run;
    const cli_run_flags *flags;
} cli_train_progress;

typedef struct {
    cli_run_flags flags;
    th_train_job job;
    const char *data[TH_TRAIN_JOB_MAX_DATA];
    int n_data;
    cli_train_progress progress;
} cli_train_args;

/* 0: parsed (job ready); 1: help printed; -1: error printed. */
int cli_train_parse(int argc, char **argv, const char *cmd, cli_train_args *t);
/* Installs (on = 1) or removes the Ctrl-C / SIGTERM handler that stops a job after its
 * current micro-batch. */
void cli_train_signals(int on);
/* Prints the end of a training job and its report; returns the exit code. */
int cli_train_finish(const cli_run_flags *rf, const char *cmd, th_status st, const th_train_job_result *res);

#endif
