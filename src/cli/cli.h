/* cli.h (internal to the CLI): the subcommand table and the helpers every subcommand
 * shares: the option tables (cli_opts.h), and turning a library status into a message
 * and an exit code. The CLI is the only code that prints to the terminal or exits. */
#ifndef THERMO_CLI_H
#define THERMO_CLI_H

#include <stdio.h>

#include "cli/cli_opts.h"
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
int cmd_serve(int argc, char **argv);
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
int cmd_distill(int argc, char **argv);
int cmd_distill_cache(int argc, char **argv);
int cmd_learn(int argc, char **argv);

/* Prints "thermo: <context>: <library message>" to stderr; returns the exit code for st. */
int cli_report(th_status st, const char *context);

/* cli_report for a model file given by the user: one this build cannot read (an unsupported
 * version or tensor type, TH_ERR_UNSUPPORTED) is rejected input too, exit 3. */
int cli_report_model(th_status st, const char *context);

/* Prints a jansson value on stdout as one document (json_dumps flags) and releases it (NULL:
 * out of memory). Returns an exit code naming cmd on failure. */
int cli_print_json(void *json, size_t flags, const char *cmd);

/* Creates dir and its missing parents (mode 0755); 1 on success or if it exists, else 0. */
int cli_mkdir_p(const char *dir);

/* The summary of an analysis (its figures, the causal reading, warnings) in lines (cmd_analyze.c). */
void cli_print_analysis(const th_analysis *a, FILE *f);

/* Installs a log handler that prints library messages to stderr at `min_level` and above. */
void cli_install_logger(th_log_level min_level);

/* ---------------------------------------------------------------------------------
 * options shared by monitored commands (run_flags.c) */

/* The factor overrides, in the order cli_eco_resolve applies them. */
enum { CLI_OV_GRID, CLI_OV_WUE, CLI_OV_EWIF, CLI_OV_GEN_SHARE, CLI_OV_COUNT };

typedef struct {
    th_run_opts run;
    const char *region, *preset, *cooling, *report_json, *emissions_csv;
    const char *factor_files[16];
    int n_factor_files;
    double pue;                       /* NaN: the preset's */
    double overrides[CLI_OV_COUNT];   /* NaN: the table's */
    int methane;
    int report;                       /* th_report_style: --report summary (default) | full */
    th_eco_factors factors;           /* filled by cli_eco_resolve */
    th_budget_config budget;          /* --budget-j, --budget-wh, --budget-co2-g, --budget-water-ml, --budget-s */
    const char *hardware;             /* --hardware spec (NULL: what the host reports) */
    th_eco_hardware hw;               /* filled by cli_eco_resolve from --hardware or the host */
    cli_opt run_opts[28];             /* the options of a monitored run, pointing into this struct */
    cli_opt eco_opts[16];             /* the eco factor options (all that `thermo estimate` takes) */
} cli_run_flags;

typedef struct {
    double tokens, steps;    /* per-unit figures for those > 0 */
    const char *stop_reason; /* why the run ended (NULL: not reported) */
    double wasted_tokens;    /* tokens a guard judged wasted (a loop), priced in the report */
    const char *waste_what;  /* what wasted them ("loop: period 7 ...") */
} cli_run_units;

/* A guard mode option's names and values (CLI_O_CHOICE into an int holding a th_guard_mode). */
extern const char *const cli_guard_modes[];
extern const int cli_guard_mode_values[];

/* Defaults, and the option tables run_opts and eco_opts (which point into f: do not copy f
 * after this). */
void cli_run_flags_init(cli_run_flags *f);
/* Loads the factor tables and resolves f->factors; returns an exit code (0 on success). */
int cli_eco_resolve(cli_run_flags *f, const char *cmd);
/* The footprint as the full text; returns an exit code. */
int cli_print_footprint_text(const th_eco_footprint *fp, FILE *out);
/* The end-of-run report (th_run_report): text on stderr in the --report style, --report-json,
 * --emissions-csv. Returns an exit code. */
int cli_run_report(const cli_run_flags *f, const char *cmd, const th_run_figures *fig, const cli_run_units *units);
/* The same, with the files the run keeps charged as storage: kept_path is the run's output, a
 * directory or a file in it (then its directory is scanned); NULL: none kept. */
int cli_run_report_kept(const cli_run_flags *f, const char *cmd, const th_run_figures *fig, const cli_run_units *units,
                        const char *kept_path);

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
    int threads, spike_mode; /* --threads (0: all cores), --spike-guard */
    int no_preflight;
    cli_train_progress progress;
    cli_opt opts[40];        /* train's own options, pointing into this struct */
} cli_train_args;

/* Defaults and the option table t->opts (train's own; t->flags has the shared ones). */
void cli_train_init(cli_train_args *t);
/* After parsing: the thread count, the eco factors and the job's callbacks. Returns an exit
 * code (0: the job is ready to run). */
int cli_train_ready(cli_train_args *t, const char *cmd);
/* Installs (on = 1) or removes the Ctrl-C / SIGTERM handler that stops a job after its
 * current micro-batch. */
void cli_train_signals(int on);
/* For library callbacks under that handler: should_stop (1 after Ctrl-C / SIGTERM), and
 * on_run_started (remembers the run whose pacing wait the handler cuts short; NULL forgets). */
int cli_stop_requested(void *user);
void cli_watch_run(th_run *run, void *user);
/* Prints the end of a training job and its report; returns the exit code. */
int cli_train_finish(const cli_run_flags *rf, const char *cmd, th_status st, const th_train_job_result *res);

#endif
