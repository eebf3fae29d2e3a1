#include "atomic.h"
#include "err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

int p2p_afile_sweep(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int gone = 0;
	for (struct dirent *e; (e = readdir(d));) {
		if (!is_temp_name(e->d_name))
			continue;
		char path[4096];
		if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path &&
		    unlink(path) == 0)
			gone++;
	}
	closedir(d);
	return gone;
}
