/* Replays fuzz inputs through a harness built without libFuzzer, as TAP: one
 * test per file, each run in a child process so that a crash, a sanitizer
 * report or a broken promise fails that input alone.
 * Usage: fuzz_replay_NAME [FILE|DIR ...]; with no arguments it replays
 * tests/fuzz/NAME/ (the seed corpus) and tests/fuzz/regress/NAME/ (inputs
 * that once failed), relative to the working folder (the source tree). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fuzz.h"

#ifndef FUZZ_TARGET
#error "build with -DFUZZ_TARGET=\"name\""
#endif

static int total, bad;

static int run_one(const char *path)
{
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return -1;
	size_t cap = 4096, n = 0;
	unsigned char *buf = malloc(cap);
	for (size_t k; buf && (k = fread(buf + n, 1, cap - n, fp)) > 0;) {
		n += k;
		if (n == cap) {
			unsigned char *nb = realloc(buf, cap *= 2);
			if (!nb)
				free(buf);
			buf = nb;
		}
	}
	int err = ferror(fp) || !buf;
	fclose(fp);
	if (err) {
		free(buf);
		return -1;
	}
	/* an exact-size copy, so reading one byte past the input is caught */
	unsigned char *exact = malloc(n ? n : 1);
	if (!exact) {
		free(buf);
		return -1;
	}
	memcpy(exact, buf, n);
	free(buf);
	LLVMFuzzerTestOneInput(exact, n);
	free(exact);
	return 0;
}

static void replay(const char *path)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0)   /* exit, so that a harness's atexit (vips_shutdown) runs */
		exit(run_one(path) ? 3 : 0);
	int st = 0;
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		st = -1;
	total++;
	if (st == 0) {
		printf("ok %d - fuzz %s: %s\n", total, FUZZ_TARGET, path);
	} else {
		bad++;
		if (st != -1 && WIFSIGNALED(st))
			printf("not ok %d - fuzz %s: %s: killed by signal %d\n", total, FUZZ_TARGET,
			       path, WTERMSIG(st));
		else
			printf("not ok %d - fuzz %s: %s: exit status %d\n", total, FUZZ_TARGET, path,
			       st == -1 ? -1 : WEXITSTATUS(st));
	}
}

static int is_dir(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int visible(const struct dirent *d)
{
	return d->d_name[0] != '.';
}

static void replay_dir(const char *dir, int must_exist)
{
	struct dirent **list;
	int n = scandir(dir, &list, visible, alphasort);
	if (n < 0) {
		if (must_exist || errno != ENOENT) {
			total++, bad++;
			printf("not ok %d - fuzz %s: %s: %s\n", total, FUZZ_TARGET, dir, strerror(errno));
		}
		return;
	}
	for (int i = 0; i < n; i++) {
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", dir, list[i]->d_name);
		if (!is_dir(path))
			replay(path);
		free(list[i]);
	}
	free(list);
}

int main(int argc, char **argv)
{
	if (argc == 1) {
		replay_dir("tests/fuzz/" FUZZ_TARGET, 1);
		replay_dir("tests/fuzz/regress/" FUZZ_TARGET, 0);
	}
	for (int i = 1; i < argc; i++) {
		if (is_dir(argv[i]))
			replay_dir(argv[i], 1);
		else
			replay(argv[i]);
	}
	printf("1..%d\n", total);
	return bad ? 1 : 0;
}
