/* What every program in cmd/ shares: its name in messages, exits, strict
 * number parsing for options, --shard, and the common flags. */
#ifndef P2P_CLI_H
#define P2P_CLI_H

#include <stdio.h>

#define P2P_VERSION "0.1.0"

extern const char *p2p_prog;

/* Call first in main: sets p2p_prog from argv[0]. */
void p2p_cli_init(const char *argv0);
/* "prog: message\n" on stderr. */
void p2p_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print as p2p_warn, then exit with code. */
_Noreturn void p2p_die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Usage error: "prog: message" then "Try 'prog --help'." and exit 2. */
_Noreturn void p2p_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Print the pending library error (p2p_errmsg) and exit 1. */
_Noreturn void p2p_die_lib(void);

/* Strict parsing for option values: the whole string must be a number in
 * [lo, hi]; otherwise a usage error naming the option. */
long p2p_opt_long(const char *opt, const char *s, long lo, long hi);
double p2p_opt_double(const char *opt, const char *s, double lo, double hi);

/* --shard I/N (0 <= I < N). p2p_shard_default fills from SLURM_ARRAY_TASK_ID
 * and SLURM_ARRAY_TASK_COUNT when both are set (0/1 otherwise). */
void p2p_opt_shard(const char *s, int *index, int *count);
void p2p_shard_default(int *index, int *count);

/* getopt_long's code for --version, the same in every program and above
 * any program's own codes. */
#define P2P_OPT_VERSION 0x1000
/* The cases every option loop ends with, for any c the program's own cases
 * do not take: -h/--help (usage() on stdout, exit 0), --version (exit 0), a
 * missing value or an unknown option (usage errors, exit 2). The loop's
 * optstring must begin with ':'. */
_Noreturn void p2p_opt_other(int c, char *const argv[], void (*usage)(void));

/* Progress display wanted? -1 = auto (stderr is a TTY), 0 = --quiet, 1 = --progress. */
int p2p_want_progress(int flag);

/* Flush and close stdout, dying with a message if that fails (disk full...). */
void p2p_close_stdout(void);

#endif
