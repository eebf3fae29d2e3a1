#include "atomic.h"
#include "err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

int p2p_afile_open(p2p_afile *f, const char *path)
{
	memset(f, 0, sizeof *f);
	const char *slash = strrchr(path, '/');
	size_t dirlen = slash ? (size_t)(slash - path + 1) : 0;
	const char *base = path + dirlen;
	size_t n = strlen(path) + 16;
	f->tmp = malloc(n);
	f->path = strdup(path);
	if (!f->tmp || !f->path) {
		free(f->tmp);
		free(f->path);
		return p2p_err("%s: out of memory", path);
	}
	snprintf(f->tmp, n, "%.*s.%s.tmp.XXXXXX", (int)dirlen, path, base);
	int fd = mkstemp(f->tmp);
	if (fd < 0) {
		p2p_err_errno("%s: cannot create", path);
		free(f->tmp);
		free(f->path);
		f->tmp = f->path = NULL;
		return -1;
	}
	fchmod(fd, 0644);
	flock(fd, LOCK_EX | LOCK_NB);   /* ours while we live: see p2p_afile_sweep_orphans */
	f->fp = fdopen(fd, "wb");
	if (!f->fp) {
		p2p_err_errno("%s: cannot open", path);
		close(fd);
		p2p_afile_abort(f);
		return -1;
	}
	return 0;
}

void p2p_afile_abort(p2p_afile *f)
{
	if (f->fp)
		fclose(f->fp);
	if (f->tmp)
		unlink(f->tmp);
	free(f->tmp);
	free(f->path);
	memset(f, 0, sizeof *f);
}

int p2p_afile_commit(p2p_afile *f)
{
	int bad = fflush(f->fp) != 0 || ferror(f->fp) || fsync(fileno(f->fp)) != 0;
	if (bad) {
		p2p_err_errno("%s: write failed", f->path);
		p2p_afile_abort(f);
		return -1;
	}
	int rc = fclose(f->fp);
	f->fp = NULL;
	if (rc != 0 || rename(f->tmp, f->path) != 0) {
		p2p_err_errno("%s: cannot write", f->path);
		p2p_afile_abort(f);
		return -1;
	}
	free(f->tmp);
	free(f->path);
	memset(f, 0, sizeof *f);
	return 0;
}

int p2p_write_file(const char *path, const void *buf, size_t n)
{
	p2p_afile f;
	if (p2p_afile_open(&f, path))
		return -1;
	if (n && fwrite(buf, 1, n, f.fp) != n) {
		p2p_err_errno("%s: write failed", path);
		p2p_afile_abort(&f);
		return -1;
	}
	return p2p_afile_commit(&f);
}

/* ---- grouped commits ---- */

/* File systems on which syncfs writes back every dirty file and flushes the
 * disk's cache, as an fsync of each file would: the local disk ones (and
 * tmpfs, which has nothing to write). FUSE may answer syncfs without doing
 * anything and network file systems commit file by file: there each file
 * gets its own fsync. */
static int syncfs_is_whole(long type)
{
	switch ((unsigned long)type & 0xffffffffUL) {
	case 0xEF53:            /* ext2, ext3, ext4 */
	case 0x58465342:        /* XFS */
	case 0x9123683E:        /* Btrfs */
	case 0xF2F52010:        /* F2FS */
	case 0x01021994:        /* tmpfs */
		return 1;
	}
	return 0;
}

void p2p_pending_abort(p2p_pending *p, long count)
{
	for (long i = 0; i < count; i++) {
		if (p[i].fd >= 0)
			close(p[i].fd);
		if (p[i].tmp)
			unlink(p[i].tmp);
		free(p[i].tmp);
		free(p[i].path);
		p[i].tmp = p[i].path = NULL;
		p[i].fd = -1;
	}
}

int p2p_pending_write(p2p_pending *p, const char *path, const void *buf, size_t n)
{
	memset(p, 0, sizeof *p);
	p->fd = -1;
	const char *slash = strrchr(path, '/');
	size_t dirlen = slash ? (size_t)(slash - path + 1) : 0;
	size_t len = strlen(path) + 16;
	p->tmp = malloc(len);
	p->path = strdup(path);
	if (!p->tmp || !p->path) {
		p2p_pending_abort(p, 1);
		return p2p_err("%s: out of memory", path);
	}
	snprintf(p->tmp, len, "%.*s.%s.tmp.XXXXXX", (int)dirlen, path, path + dirlen);
	p->fd = mkstemp(p->tmp);
	if (p->fd < 0) {
		p2p_err_errno("%s: cannot create", path);
		free(p->tmp);   /* nothing was created under this name */
		p->tmp = NULL;
		p2p_pending_abort(p, 1);
		return -1;
	}
	fchmod(p->fd, 0644);
	flock(p->fd, LOCK_EX | LOCK_NB);
	for (size_t off = 0; off < n;) {
		ssize_t put = write(p->fd, (const char *)buf + off, n - off);
		if (put < 0 && errno == EINTR)
			continue;
		if (put <= 0) {
			if (put == 0)
				errno = EIO;
			p2p_err_errno("%s: write failed", path);
			p2p_pending_abort(p, 1);
			return -1;
		}
		off += (size_t)put;
	}
	return 0;
}

/* The pending message, as a malloc'd copy for p->why. */
static char *why_now(void)
{
	char *s = strdup(p2p_errmsg());
	return s ? s : strdup("out of memory");
}

long p2p_pending_commit(p2p_pending *p, long count)
{
	/* The file systems flushed whole so far, and how that went. A group
	 * rarely spans more than one or two; past the table's end each file
	 * is synced on its own. */
	struct { dev_t dev; int rc; } fs[8];
	int nfs = 0;
	long failed = 0;
	for (long i = 0; i < count; i++) {
		p[i].why = NULL;
		struct stat st;
		struct statfs sf;
		int synced = 0;
		if (fstat(p[i].fd, &st) == 0 && fstatfs(p[i].fd, &sf) == 0 && syncfs_is_whole(sf.f_type)) {
			int k = 0;
			while (k < nfs && fs[k].dev != st.st_dev)
				k++;
			if (k == nfs && nfs < (int)(sizeof fs / sizeof *fs)) {
				fs[k].dev = st.st_dev;
				fs[k].rc = syncfs(p[i].fd);
				nfs++;
			}
			synced = k < nfs && fs[k].rc == 0;
		}
		/* Elsewhere, or where the whole flush failed, the file's own
		 * fsync: it reports that file's write-back errors, and only its. */
		int bad = !synced && fsync(p[i].fd) != 0;
		int e = errno;
		if (close(p[i].fd) != 0 && !bad)
			bad = 1, e = errno;
		p[i].fd = -1;
		if (bad) {
			errno = e;
			p2p_err_errno("%s: write failed", p[i].path);
			p[i].why = why_now();
		}
	}
	/* Every file is on disk (or failed): only now may any take its name. */
	for (long i = 0; i < count; i++) {
		if (!p[i].why && rename(p[i].tmp, p[i].path) != 0) {
			p2p_err_errno("%s: cannot write", p[i].path);
			p[i].why = why_now();
		}
		if (p[i].why) {
			unlink(p[i].tmp);
			failed++;
		}
		free(p[i].tmp);
		free(p[i].path);
		p[i].tmp = p[i].path = NULL;
	}
	return failed;
}

int p2p_read_file(const char *path, size_t max, void **buf, size_t *n)
{
	int is_stdin = strcmp(path, "-") == 0;
	const char *name = is_stdin ? "stdin" : path;
	FILE *fp = is_stdin ? stdin : fopen(path, "rb");
	*buf = NULL;
	*n = 0;
	if (!fp)
		return p2p_err_errno("%s: cannot open", name);
	size_t cap = 0, len = 0;
	char *b = NULL;
	for (;;) {
		if (len == cap) {
			if (cap >= max + 1) {
				free(b);
				if (!is_stdin)
					fclose(fp);
				return p2p_err("%s: larger than %zu bytes", name, max);
			}
			size_t ncap = cap ? cap * 2 : 65536;
			if (ncap > max + 1)
				ncap = max + 1;
			char *nb = realloc(b, ncap);
			if (!nb) {
				free(b);
				if (!is_stdin)
					fclose(fp);
				return p2p_err("%s: out of memory", name);
			}
			b = nb;
			cap = ncap;
		}
		size_t got = fread(b + len, 1, cap - len, fp);
		len += got;
		if (got == 0)
			break;
	}
	int err = ferror(fp);
	if (!is_stdin)
		fclose(fp);
	if (err) {
		free(b);
		return p2p_err("%s: read error", name);
	}
	if (len > max) {
		free(b);
		return p2p_err("%s: larger than %zu bytes", name, max);
	}
	*buf = b ? b : malloc(1);
	*n = len;
	return 0;
}

int p2p_mkdirs(const char *dir)
{
	char *p = strdup(dir);
	if (!p)
		return p2p_err("%s: out of memory", dir);
	for (char *s = p + 1;; s++) {
		if (*s == '/' || *s == 0) {
			char c = *s;
			*s = 0;
			if (mkdir(p, 0777) != 0 && errno != EEXIST) {
				p2p_err_errno("%s: cannot create folder", p);
				free(p);
				return -1;
			}
			*s = c;
			if (!c)
				break;
		}
	}
	struct stat st;
	int ok = stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
	free(p);
	return ok ? 0 : p2p_err("%s: not a folder", dir);
}

/* The name p2p_afile_open gives a temp file: "." NAME ".tmp." and six characters. */
static int is_temp_name(const char *n)
{
	size_t len = strlen(n);
	return n[0] == '.' && len > 12 && memcmp(n + len - 11, ".tmp.", 5) == 0;
}

/* Temp files at least SWEEP_AGE seconds old are a shard's to sweep: that
 * covers the moment between a writer creating one and locking it. */
#define SWEEP_AGE 10

/* path's writer is gone: its lock is free (a live writer holds it until it
 * commits or dies) and the file is at least SWEEP_AGE seconds old. */
static int orphan(const char *path, time_t now)
{
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return 0;
	struct stat st;
	int gone = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && now - st.st_mtime >= SWEEP_AGE &&
	           flock(fd, LOCK_EX | LOCK_NB) == 0;
	close(fd);
	return gone;
}

/* Remove dir's temp files: all of them, or with orphans_only those whose
 * writer is gone. */
static int sweep(const char *dir, int orphans_only)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int gone = 0;
	time_t now = time(NULL);
	for (struct dirent *e; (e = readdir(d));) {
		char path[4096];
		if (is_temp_name(e->d_name) &&
		    snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path &&
		    (!orphans_only || orphan(path, now)) && unlink(path) == 0)
			gone++;
	}
	closedir(d);
	return gone;
}

int p2p_afile_sweep(const char *dir)
{
	return sweep(dir, 0);
}

int p2p_afile_sweep_orphans(const char *dir)
{
	return sweep(dir, 1);
}
