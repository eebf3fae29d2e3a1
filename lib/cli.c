#include "cli.h"
#include "err.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *p2p_prog = "p2pcat";

void p2p_cli_init(const char *argv0)
{
	if (argv0 && *argv0) {
		const char *s = strrchr(argv0, '/');
		p2p_prog = s ? s + 1 : argv0;
	}
}

static void vwarn(const char *fmt, va_list ap)
{
	fflush(stdout);
	fprintf(stderr, "%s: ", p2p_prog);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void p2p_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwarn(fmt, ap);
	va_end(ap);
}

void p2p_die(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwarn(fmt, ap);
	va_end(ap);
	exit(code);
}

void p2p_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vwarn(fmt, ap);
	va_end(ap);
	fprintf(stderr, "Try '%s --help' for more information.\n", p2p_prog);
	exit(2);
}

void p2p_die_lib(void)
{
	p2p_die(1, "%s", p2p_errmsg());
}

long p2p_opt_long(const char *opt, const char *s, long lo, long hi)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (!*s || *end || errno)
		p2p_usage_error("%s: not an integer: '%s'", opt, s);
	if (v < lo || v > hi)
		p2p_usage_error("%s: %ld is out of range [%ld, %ld]", opt, v, lo, hi);
	return v;
}

double p2p_opt_double(const char *opt, const char *s, double lo, double hi)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (!*s || *end || errno || !isfinite(v))
		p2p_usage_error("%s: not a number: '%s'", opt, s);
	if (v < lo || v > hi)
		p2p_usage_error("%s: %g is out of range [%g, %g]", opt, v, lo, hi);
	return v;
}

static int parse_shard(const char *s, int *index, int *count)
{
	char *end;
	errno = 0;
	long i = strtol(s, &end, 10);
	if (end == s || *end != '/' || errno)
		return -1;
	const char *t = end + 1;
	long n = strtol(t, &end, 10);
	if (end == t || *end || errno || n < 1 || n > 1000000 || i < 0 || i >= n)
		return -1;
	*index = (int)i;
	*count = (int)n;
	return 0;
}

void p2p_opt_shard(const char *s, int *index, int *count)
{
	if (parse_shard(s, index, count))
		p2p_usage_error("--shard: expected I/N with 0 <= I < N, got '%s'", s);
}

void p2p_shard_default(int *index, int *count)
{
	const char *id = getenv("SLURM_ARRAY_TASK_ID");
	const char *n = getenv("SLURM_ARRAY_TASK_COUNT");
	*index = 0;
	*count = 1;
	if (id && n && *id && *n) {
		char buf[64];
		snprintf(buf, sizeof buf, "%s/%s", id, n);
		if (parse_shard(buf, index, count))
			p2p_usage_error("SLURM_ARRAY_TASK_ID/COUNT: not a valid shard: '%s'", buf);
	}
}

void p2p_opt_other(int c, char *const argv[], void (*usage)(void))
{
	/* a short option in a bundle (-qx) is named alone; a long one as given */
	const char *arg = argv[optind - 1];
	char opt[3] = {'-', (char)optopt, 0};
	if (optopt > 0 && optopt < 128 && !(arg[0] == '-' && arg[1] == '-'))
		arg = opt;
	switch (c) {
	case 'h':
		usage();
		p2p_close_stdout();
		exit(0);
	case P2P_OPT_VERSION:
		printf("%s p2pcat %s\n", p2p_prog, P2P_VERSION);
		p2p_close_stdout();
		exit(0);
	case ':':
		p2p_usage_error("option '%s' needs a value", arg);
	default:
		p2p_usage_error("unknown option '%s'", arg);
	}
}

int p2p_want_progress(int flag)
{
	return flag >= 0 ? flag : isatty(STDERR_FILENO);
}

void p2p_close_stdout(void)
{
	if (fflush(stdout) != 0 || ferror(stdout) || fclose(stdout) != 0)
		p2p_die(1, "stdout: write failed: %s", strerror(errno));
}
