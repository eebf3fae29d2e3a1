/* lib/atomic: grouped commits (p2p_pending_*): files appear whole or not at
 * all, failures are per file, no temp file outlives a commit or an abort,
 * and a writer killed before its commit leaves no file under a final name. */
#include "check.h"
#include "tmpdir.h"
#include "atomic.h"
#include "err.h"

#include <dirent.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>


/* Entries of d whose name begins (hidden) or does not begin with '.'. */
static int count(const char *d, int hidden)
{
	DIR *h = opendir(d);
	int n = 0;
	if (!h)
		return -1;
	for (struct dirent *e; (e = readdir(h));)
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n += (e->d_name[0] == '.') == hidden;
	closedir(h);
	return n;
}

/* 1 when path holds exactly the n bytes of want. */
static int holds(const char *path, const void *want, size_t n)
{
	void *buf;
	size_t got;
	if (p2p_read_file(path, 1 << 20, &buf, &got))
		return 0;
	int same = got == n && memcmp(buf, want, n) == 0;
	free(buf);
	return same;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

/* A new empty test folder in dir; the previous one removed. */
static void fresh(void)
{
	if (dir[0])
		nftw(dir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
	if (tmpdir_make("atomic"))
		abort();
}

static void group_appears_at_commit(void)
{
	fresh();
	p2p_pending p[3];
	const char *text[3] = { "one", "two", "three" };
	char name[3][16];
	for (int i = 0; i < 3; i++) {
		snprintf(name[i], sizeof name[i], "f%d.txt", i);
		CHECK(p2p_pending_write(&p[i], tmp(name[i]), text[i], strlen(text[i])) == 0);
	}
	/* written, not yet there: only the three hidden temp files */
	CHECK(count(dir, 0) == 0 && count(dir, 1) == 3);
	CHECK(p2p_pending_commit(p, 3) == 0);
	CHECK(count(dir, 0) == 3 && count(dir, 1) == 0);
	for (int i = 0; i < 3; i++) {
		CHECK(p[i].why == NULL && p[i].tmp == NULL && p[i].path == NULL && p[i].fd == -1);
		CHECK(holds(tmp(name[i]), text[i], strlen(text[i])));
	}
	CHECK(p2p_pending_commit(p, 0) == 0);
	/* an empty file is a file */
	CHECK(p2p_pending_write(&p[0], tmp("empty"), "", 0) == 0);
	CHECK(p2p_pending_commit(p, 1) == 0);
	struct stat st;
	CHECK(stat(tmp("empty"), &st) == 0 && st.st_size == 0 && (st.st_mode & 0777) == 0644);
}

static void replace_and_abort(void)
{
	fresh();
	CHECK(p2p_write_file(tmp("a"), "old", 3) == 0);
	p2p_pending p;
	CHECK(p2p_pending_write(&p, tmp("a"), "new!", 4) == 0);
	CHECK(holds(tmp("a"), "old", 3));       /* the old one stays until the commit */
	CHECK(p2p_pending_commit(&p, 1) == 0);
	CHECK(holds(tmp("a"), "new!", 4));
	CHECK(p2p_pending_write(&p, tmp("a"), "newer", 5) == 0);
	CHECK(p2p_pending_write(&(p2p_pending){ 0 }, tmp("no-such-folder/b"), "x", 1) == -1);
	CHECK(strcmp(p2p_errmsg(), "") != 0);
	CHECK(strstr(p2p_errmsg(), "no-such-folder/b: cannot create: No such file or directory") != NULL);
	p2p_pending_abort(&p, 1);
	CHECK(p.tmp == NULL && p.path == NULL && p.fd == -1);
	CHECK(holds(tmp("a"), "new!", 4));
	CHECK(count(dir, 0) == 1 && count(dir, 1) == 0);
}

/* One file that cannot take its name fails alone. */
static void failures_are_per_file(void)
{
	fresh();
	CHECK(mkdir(tmp("taken"), 0755) == 0);
	CHECK(p2p_write_file(tmp("taken/x"), "x", 1) == 0);
	p2p_pending p[3];
	CHECK(p2p_pending_write(&p[0], tmp("ok1"), "1", 1) == 0);
	CHECK(p2p_pending_write(&p[1], tmp("taken"), "2", 1) == 0);
	CHECK(p2p_pending_write(&p[2], tmp("ok2"), "3", 1) == 0);
	CHECK(p2p_pending_commit(p, 3) == 1);
	CHECK(p[0].why == NULL && p[2].why == NULL);
	CHECKF(p[1].why && strstr(p[1].why, "/taken: cannot write: Is a directory"), "%s", p[1].why);
	free(p[1].why);
	CHECK(holds(tmp("ok1"), "1", 1) && holds(tmp("ok2"), "3", 1) && holds(tmp("taken/x"), "x", 1));
	CHECK(count(dir, 1) == 0);
}

/* Files on two file systems (the test folder and /dev/shm) in one group. */
static void two_file_systems(void)
{
	fresh();
	struct statfs a, b;
	if (statfs("/dev/shm", &b) != 0 || statfs(dir, &a) != 0 || access("/dev/shm", W_OK) != 0) {
		CHECK(1);
		return;
	}
	char shm[64];
	snprintf(shm, sizeof shm, "/dev/shm/p2p-atomic-%d", (int)getpid());
	p2p_pending p[4];
	CHECK(p2p_pending_write(&p[0], tmp("here1"), "h1", 2) == 0);
	CHECK(p2p_pending_write(&p[1], shm, "s", 1) == 0);
	CHECK(p2p_pending_write(&p[2], tmp("here2"), "h2", 2) == 0);
	CHECK(p2p_pending_commit(p, 3) == 0);
	CHECK(holds(tmp("here1"), "h1", 2) && holds(tmp("here2"), "h2", 2) && holds(shm, "s", 1));
	unlink(shm);
}

/* Threads write their files at once; one commit for all of them. */
enum { NTHREADS = 4, PER_THREAD = 50, NFILES = NTHREADS * PER_THREAD };
static p2p_pending group[NFILES];

static void *writer(void *arg)
{
	long t = (long)arg, bad = 0;
	for (long i = t; i < NFILES; i += NTHREADS) {
		char name[300], text[32];
		snprintf(name, sizeof name, "%s/t%03ld", dir, i);
		snprintf(text, sizeof text, "file %ld", i);
		bad += p2p_pending_write(&group[i], name, text, strlen(text)) != 0;
	}
	return (void *)bad;
}

static void threads_write_one_group(void)
{
	fresh();
	pthread_t th[NTHREADS];
	for (long t = 0; t < NTHREADS; t++)
		CHECK(pthread_create(&th[t], NULL, writer, (void *)t) == 0);
	long bad = 0;
	for (int t = 0; t < NTHREADS; t++) {
		void *r;
		pthread_join(th[t], &r);
		bad += (long)r;
	}
	CHECK(bad == 0);
	CHECK(count(dir, 0) == 0 && count(dir, 1) == NFILES);
	CHECK(p2p_pending_commit(group, NFILES) == 0);
	CHECK(count(dir, 0) == NFILES && count(dir, 1) == 0);
	for (int i = 0; i < NFILES; i++) {
		char name[16], text[32];
		snprintf(name, sizeof name, "t%03d", i);
		snprintf(text, sizeof text, "file %d", i);
		CHECK(holds(tmp(name), text, strlen(text)));
	}
}

/* A writer killed between its writes and its commit: no file under a final
 * name, only temp files, which p2p_afile_sweep clears; the group it had
 * committed before is whole. */
static void killed_before_commit(void)
{
	fresh();
	static char big[300000];
	for (size_t i = 0; i < sizeof big; i++)
		big[i] = (char)(i * 7);
	pid_t pid = fork();
	if (pid == 0) {
		p2p_pending p[4];
		int rc = p2p_pending_write(&p[0], tmp("done1"), big, sizeof big)
			 || p2p_pending_write(&p[1], tmp("done2"), big, sizeof big);
		if (rc || p2p_pending_commit(p, 2))
			_exit(3);
		if (p2p_pending_write(&p[2], tmp("never1"), big, sizeof big)
		    || p2p_pending_write(&p[3], tmp("never2"), big, 1000))
			_exit(4);
		raise(SIGKILL);
		_exit(5);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "status %d", status);
	CHECK(holds(tmp("done1"), big, sizeof big) && holds(tmp("done2"), big, sizeof big));
	CHECK(access(tmp("never1"), F_OK) != 0 && access(tmp("never2"), F_OK) != 0);
	CHECK(count(dir, 0) == 2 && count(dir, 1) == 2);
	CHECK(p2p_afile_sweep(dir) == 2);
	CHECK(count(dir, 1) == 0);
}

int main(void)
{
	RUN(group_appears_at_commit);
	RUN(replace_and_abort);
	RUN(failures_are_per_file);
	RUN(two_file_systems);
	RUN(threads_write_one_group);
	RUN(killed_before_commit);
	nftw(dir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
	return CHECK_DONE();
}
