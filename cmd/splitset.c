/* splitset: a seeded train/val/test split of a sample stream, laid out as the
 * seed's data set: ROOT/{train,val,test}/{A,B}/ID.* and ROOT/{split}.jsonl. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE     /* renameat2 */
#endif
#include "atomic.h"
#include "cli.h"
#include "err.h"
#include "jsonl.h"
#include "npy.h"
#include "progress.h"
#include "rng.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { LINK, COPY, SYMLINK };
static const char *const split_name[3] = { "train", "val", "test" };

typedef struct {
	const char *root;
	const char *input;
	unsigned long long seed;
	long ratio[3];
	int mode;               /* LINK (default), COPY, SYMLINK */
	int strict;
	int progress;           /* -1 auto, 0 quiet, 1 on */
} options;

typedef struct {
	cJSON *obj;
	const char *id, *image, *heatmap;   /* inside obj */
	long line;
	int bad;                /* skipped (duplicate id, missing file...) */
} record;

static void usage(void)
{
	printf("Usage: %s -o ROOT [--seed N] [--ratios 80,10,10] [--link|--copy|--symlink]\n"
	       "                [--strict] [--progress|--quiet] [FILE.jsonl | -]\n"
	       "Split sample records (with \"image\" and \"heatmap\") into train, val and test\n"
	       "by a seeded shuffle, and lay them out as ROOT/{train,val,test}/{A,B}/ID.*\n"
	       "with ROOT/{train,val,test}.jsonl.\n"
	       "  -o, --output ROOT   data set folder (its three splits are replaced)\n"
	       "      --seed N        shuffle seed (default 42)\n"
	       "      --ratios A,B,C  train,val,test proportions (default 80,10,10)\n"
	       "      --link          hard links, copies across file systems (default)\n"
	       "      --copy          copies\n"
	       "      --symlink       symbolic links to the absolute source paths\n"
	       "      --strict        stop at the first bad record (exit 1)\n"
	       "      --progress, --quiet   force the progress bar on or off\n"
	       "  -h, --help, --version\n", p2p_prog);
}

static void parse_ratios(const char *s, options *o)
{
	char *copy = strdup(s), *save = NULL;
	if (!copy)
		p2p_die(1, "out of memory");
	int n = 0;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (n == 3)
			p2p_usage_error("--ratios: expected three numbers A,B,C, got '%s'", s);
		o->ratio[n++] = p2p_opt_long("--ratios", t, 0, 1000000);
	}
	free(copy);
	if (n != 3)
		p2p_usage_error("--ratios: expected three numbers A,B,C, got '%s'", s);
	if (o->ratio[0] + o->ratio[1] + o->ratio[2] == 0)
		p2p_usage_error("--ratios: all three are 0");
}

static void parse_args(int argc, char **argv, options *o)
{
	enum { O_SEED = 256, O_RATIOS, O_LINK, O_COPY, O_SYMLINK, O_STRICT, O_PROGRESS,
	       O_QUIET };
	static const struct option longs[] = {
		{ "output", required_argument, 0, 'o' },
		{ "seed", required_argument, 0, O_SEED },
		{ "ratios", required_argument, 0, O_RATIOS },
		{ "link", no_argument, 0, O_LINK },
		{ "copy", no_argument, 0, O_COPY },
		{ "symlink", no_argument, 0, O_SYMLINK },
		{ "strict", no_argument, 0, O_STRICT },
		{ "progress", no_argument, 0, O_PROGRESS },
		{ "quiet", no_argument, 0, O_QUIET },
		{ "help", no_argument, 0, 'h' },
		{ "version", no_argument, 0, P2P_OPT_VERSION },
		{ 0, 0, 0, 0 }
	};
	memset(o, 0, sizeof *o);
	o->seed = 42;
	o->ratio[0] = 80, o->ratio[1] = 10, o->ratio[2] = 10;
	o->progress = -1;
	int c, modes = 0;
	const char *mode_flag[3] = { "--link", "--copy", "--symlink" };
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:h", longs, NULL)) != -1) {
		switch (c) {
		case 'o': o->root = optarg; break;
		case O_SEED: o->seed = (unsigned long long)p2p_opt_long("--seed", optarg, 0, LONG_MAX); break;
		case O_RATIOS: parse_ratios(optarg, o); break;
		case O_LINK: case O_COPY: case O_SYMLINK: {
			int m = c == O_LINK ? LINK : c == O_COPY ? COPY : SYMLINK;
			if (modes & ~(1 << m))
				p2p_usage_error("%s and %s: choose one", mode_flag[o->mode], mode_flag[m]);
			modes |= 1 << m;
			o->mode = m;
			break;
		}
		case O_STRICT: o->strict = 1; break;
		case O_PROGRESS: o->progress = 1; break;
		case O_QUIET: o->progress = 0; break;
		default: p2p_opt_other(c, argv, usage);
		}
	}
	if (!o->root || !*o->root)
		p2p_usage_error("-o ROOT is required");
	if (argc - optind > 1)
		p2p_usage_error("one input at most (FILE.jsonl or -), got %d", argc - optind);
	o->input = optind < argc ? argv[optind] : "-";
}

/* An id becomes a file name: no '/', no leading '.', no control characters. */
static int check_id(const char *id)
{
	if (id[0] == '.')
		return p2p_err("\"id\" '%s' begins with '.'", id);
	if (strlen(id) > 200)
		return p2p_err("\"id\" is longer than 200 bytes");
	for (const unsigned char *s = (const unsigned char *)id; *s; s++)
		if (*s == '/' || *s < 0x20 || *s == 0x7f)
			return p2p_err("\"id\" '%s' cannot be a file name", id);
	return 0;
}

/* Skip (or, with --strict, stop at) a bad record. */
static long skipped;
static void bad(const options *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bad(const options *o, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (o->strict)
		p2p_die(1, "%s", msg);
	p2p_warn("%s", msg);
	skipped++;
}

/* Read every record, keeping those with an id, an image and a heatmap. */
static record *read_records(const options *o, const char **name, long *count)
{
	p2p_jsonl r;
	if (p2p_jsonl_open(&r, o->input))
		p2p_die_lib();
	record *rec = NULL;
	long n = 0, cap = 0;
	for (;;) {
		cJSON *obj;
		int rc = p2p_jsonl_next(&r, &obj);
		if (rc == 0)
			break;
		if (rc < 0) {
			if (ferror(r.fp))
				p2p_die_lib();
			bad(o, "%s", p2p_errmsg());
			continue;
		}
		record x = { .obj = obj, .line = r.line };
		if (!(x.id = p2p_json_string(obj, "id")) || check_id(x.id)
		    || !(x.image = p2p_json_string(obj, "image"))
		    || !(x.heatmap = p2p_json_string(obj, "heatmap"))) {
			bad(o, "%s:%ld: %s", r.name, r.line, p2p_errmsg());
			cJSON_Delete(obj);
			continue;
		}
		if (n == cap) {
			cap = cap ? 2 * cap : 1024;
			record *nr = realloc(rec, sizeof *rec * cap);
			if (!nr)
				p2p_die(1, "out of memory");
			rec = nr;
		}
		rec[n++] = x;
	}
	*name = strdup(r.name);
	p2p_jsonl_close(&r);
	*count = n;
	return rec;
}

static int by_line(const void *a, const void *b)
{
	const record *x = a, *y = b;
	return (x->line > y->line) - (x->line < y->line);
}

static int by_id(const void *a, const void *b)
{
	const record *x = a, *y = b;
	int c = strcmp(x->id, y->id);
	return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* Records sharing an id are all skipped: which one was meant cannot be told,
 * and keeping the first would make the split depend on input order. */
static void drop_duplicates(const options *o, const char *name, record *rec, long n)
{
	for (long i = 0, j; i < n; i = j) {
		for (j = i + 1; j < n && strcmp(rec[i].id, rec[j].id) == 0; j++) {
			bad(o, "%s:%ld: duplicate id '%s' (also on line %ld); both skipped",
			    name, rec[j].line, rec[j].id, rec[i].line);
			rec[j].bad = 1;
		}
		if (j > i + 1) {
			rec[i].bad = 1;
			skipped++;   /* the first one, named in the messages above */
		}
	}
}

/* The index of a's first NaN or infinity, or -1 (a |u1 array has none). */
static long first_nonfinite(const p2p_npy *a)
{
	for (size_t i = 0; a->dtype == P2P_F32 && i < a->count; i++)
		if (!isfinite(((const float *)a->data)[i]))
			return (long)i;
	return -1;
}

/* Why record r's files are unusable (malloc'd), or NULL: both files must
 * be there, and the heatmap a readable 2-D .npy of finite values (p2p-train
 * would refuse the whole data set for one NaN). */
static char *file_problem(const record *r)
{
	struct stat st;
	p2p_npy a;
	if (stat(r->image, &st) != 0) {
		p2p_err_errno("%s", r->image);
	} else if (!S_ISREG(st.st_mode)) {
		p2p_err("%s: not a regular file", r->image);
	} else if (p2p_npy_read(r->heatmap, &a) == 0) {
		int ndim = a.ndim;
		long nf = first_nonfinite(&a);
		p2p_npy_free(&a);
		if (ndim != 2)
			p2p_err("%s: a heatmap has 2 dimensions, this one %d", r->heatmap, ndim);
		else if (nf >= 0)
			p2p_err("%s: value %ld is not finite", r->heatmap, nf);
		else
			return NULL;
	}
	char *m = strdup(p2p_errmsg());
	if (!m)
		p2p_die(1, "out of memory");
	return m;
}

/* Every record's files checked, on all cores (reading each heatmap whole is
 * most of this program's work), then reported in input order. */
static void check_files(const options *o, const char *name, record *rec, long n)
{
	char **why = calloc((size_t)n + 1, sizeof *why);
	if (!why)
		p2p_die(1, "out of memory");
#pragma omp parallel for schedule(dynamic, 16)
	for (long i = 0; i < n; i++)
		if (!rec[i].bad)
			why[i] = file_problem(&rec[i]);
	for (long i = 0; i < n; i++)
		if (why[i]) {
			bad(o, "%s:%ld: %s", name, rec[i].line, why[i]);
			rec[i].bad = 1;
			free(why[i]);
		}
	free(why);
}

static char *join(const char *a, const char *b, const char *c, const char *d)
{
	size_t n = strlen(a) + strlen(b) + strlen(c) + strlen(d) + 4;
	char *s = malloc(n);
	if (!s)
		p2p_die(1, "out of memory");
	size_t la = strlen(a);
	snprintf(s, n, "%s%s%s%s%s", a, la && a[la - 1] == '/' ? "" : "/", b, c, d);
	return s;
}

/* The image's extension (".jpg"), or "" when it has none. */
static const char *extension(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	const char *dot = strrchr(base, '.');
	return dot && dot != base ? dot : "";
}

static int copy_file(const char *src, const char *dst)
{
	int in = open(src, O_RDONLY);
	if (in < 0)
		return p2p_err_errno("%s: cannot open", src);
	int out = open(dst, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (out < 0) {
		close(in);
		return p2p_err_errno("%s: cannot create", dst);
	}
	char buf[65536];
	ssize_t got;
	int rc = 0;
	while ((got = read(in, buf, sizeof buf)) > 0)
		for (ssize_t off = 0; off < got;) {
			ssize_t put = write(out, buf + off, got - off);
			if (put < 0) {
				rc = p2p_err_errno("%s: write failed", dst);
				goto done;
			}
			off += put;
		}
	if (got < 0)
		rc = p2p_err_errno("%s: read error", src);
	if (rc == 0 && fsync(out) != 0)
		rc = p2p_err_errno("%s: write failed", dst);
done:
	if (close(out) != 0 && rc == 0)
		rc = p2p_err_errno("%s: write failed", dst);
	close(in);
	return rc;
}

/* Put src at dst as asked; a hard link falls back to a copy where the file
 * system refuses (another device, no hard links there). */
static int place(int mode, const char *src, const char *dst)
{
	if (mode == LINK) {
		if (link(src, dst) == 0)
			return 0;
		if (errno != EXDEV && errno != EPERM && errno != EMLINK && errno != ENOTSUP
		    && errno != EOPNOTSUPP)
			return p2p_err_errno("%s: cannot link to %s", dst, src);
		return copy_file(src, dst);
	}
	if (mode == COPY)
		return copy_file(src, dst);
	char *abs = realpath(src, NULL);
	if (!abs)
		return p2p_err_errno("%s", src);
	int rc = symlink(abs, dst) == 0 ? 0 : p2p_err_errno("%s: cannot create", dst);
	free(abs);
	return rc;
}

/* Make a folder's entries durable (the files in it are already). */
static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return p2p_err_errno("%s: cannot open", dir);
	int rc = fsync(fd) == 0 ? 0 : p2p_err_errno("%s: cannot flush to disk", dir);
	close(fd);
	return rc;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

/* rm -rf of our own staging folder. */
static void remove_tree(const char *dir)
{
	if (nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
		p2p_warn("%s: cannot remove: %s", dir, strerror(errno));
}

static char *staging;       /* removed on a fatal error */
static void cleanup(void)
{
	if (staging)
		remove_tree(staging);
}

/* Swap the new split folder into place; the old one (if any) ends up in the
 * staging folder, which is removed afterwards. */
static int swap_in(const char *fresh, const char *dst, const char *old)
{
	if (renameat2(AT_FDCWD, fresh, AT_FDCWD, dst, RENAME_EXCHANGE) == 0)
		return 0;
	if (errno == ENOENT && rename(fresh, dst) == 0)
		return 0;
	/* No exchange on this file system: move the old one aside first. */
	if (rename(dst, old) != 0 && errno != ENOENT)
		return p2p_err_errno("%s: cannot replace", dst);
	if (rename(fresh, dst) != 0)
		return p2p_err_errno("%s: cannot create", dst);
	return 0;
}

/* Record x as it will read from ROOT: its new paths, its split, printed as
 * one JSON line (malloc'd). Changed in place: its files are linked already,
 * and x->image and x->heatmap are gone with the old values. */
static char *manifest_line(record *x, const char *prefix, const char *split)
{
	const char *ext = extension(x->image);
	char *heat = join(prefix, "A/", x->id, ".npy"), *img = join(prefix, "B/", x->id, ext);
	const char *keys[3] = { "split", "image", "heatmap" };
	const char *vals[3] = { split, img, heat };
	for (int k = 0; k < 3; k++) {
		cJSON *v = cJSON_CreateString(vals[k]);
		if (!v || !(cJSON_HasObjectItem(x->obj, keys[k])
		            ? cJSON_ReplaceItemInObjectCaseSensitive(x->obj, keys[k], v)
		            : cJSON_AddItemToObject(x->obj, keys[k], v)))
			p2p_die(1, "out of memory");
	}
	char *line = cJSON_PrintUnformatted(x->obj);
	if (!line)
		p2p_die(1, "out of memory");
	free(heat);
	free(img);
	x->image = x->heatmap = NULL;
	return line;
}

/* Lay out one split under the staging folder and write its manifest there. */
static void write_split(const options *o, int s, record *rec, const int *idx, long n,
                        p2p_progress *bar, long *done)
{
	char *sub = join(staging, split_name[s], "", "");
	char *manifest = join(staging, split_name[s], ".jsonl", "");
	char *dirs[2] = { join(sub, "A", "", ""), join(sub, "B", "", "") };
	for (int k = 0; k < 2; k++)
		if (p2p_mkdirs(dirs[k]))
			p2p_die_lib();
	p2p_afile f;
	if (p2p_afile_open(&f, manifest))
		p2p_die_lib();
	char *prefix = join(o->root, split_name[s], "/", "");
	for (long i = 0; i < n; i++) {
		record *x = &rec[idx[i]];
		const char *ext = extension(x->image);
		char *a = join(dirs[0], x->id, ".npy", ""), *b = join(dirs[1], x->id, ext, "");
		if (place(o->mode, x->heatmap, a) || place(o->mode, x->image, b))
			p2p_die_lib();
		free(a);
		free(b);
		p2p_progress_update(bar, ++*done, split_name[s]);
	}
	/* Printing the records costs more than the links: on all cores, then
	 * written in order. */
	char **lines = malloc(sizeof *lines * ((size_t)n + 1));
	if (!lines)
		p2p_die(1, "out of memory");
#pragma omp parallel for schedule(dynamic, 16)
	for (long i = 0; i < n; i++)
		lines[i] = manifest_line(&rec[idx[i]], prefix, split_name[s]);
	for (long i = 0; i < n; i++) {
		if (fputs(lines[i], f.fp) == EOF || fputc('\n', f.fp) == EOF)
			p2p_die(1, "%s: write failed: %s", manifest, strerror(errno));
		free(lines[i]);
	}
	free(lines);
	if (p2p_afile_commit(&f) || sync_dir(dirs[0]) || sync_dir(dirs[1]) || sync_dir(sub))
		p2p_die_lib();
	free(prefix);
	free(dirs[0]);
	free(dirs[1]);
	free(sub);
	free(manifest);
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

/* rec is NULL when nothing was read, which qsort must not be given. */
static void sort_records(record *rec, long n, int (*cmp)(const void *, const void *))
{
	if (n > 1)
		qsort(rec, n, sizeof *rec, cmp);
}

int main(int argc, char **argv)
{
	p2p_cli_init(argv[0]);
	options o;
	parse_args(argc, argv, &o);
	/* Each heatmap is read whole into buffers freed at once: left to
	 * itself malloc would give their pages back to the system and take
	 * them anew, file after file, and the page faults cost a fifth of the
	 * time. */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);

	const char *name;
	long n;
	record *rec = read_records(&o, &name, &n);
	sort_records(rec, n, by_id);
	drop_duplicates(&o, name, rec, n);
	sort_records(rec, n, by_line);     /* messages in input order */
	check_files(&o, name, rec, n);
	/* Sorting by id before the shuffle makes the split independent of the
	 * input order. */
	sort_records(rec, n, by_id);
	int *idx = malloc(sizeof *idx * (n + 1));
	if (!idx)
		p2p_die(1, "out of memory");
	int good = 0;
	for (long i = 0; i < n; i++)
		if (!rec[i].bad)
			idx[good++] = (int)i;
	if (good == 0)
		p2p_die(1, "%s: no samples to split (%ld skipped); %s left as it was",
		        name, skipped, o.root);

	p2p_rng rng;
	p2p_rng_seed(&rng, o.seed);
	p2p_rng_shuffle(&rng, idx, good);
	long total = o.ratio[0] + o.ratio[1] + o.ratio[2];
	long count[3];
	count[0] = (long)((long long)good * o.ratio[0] / total);
	count[1] = (long)((long long)good * o.ratio[1] / total);
	count[2] = good - count[0] - count[1];

	/* Build the three splits in a hidden folder inside ROOT, make it
	 * durable (copies are fsync'ed, links need only their folders), then
	 * swap each split in: a failure leaves ROOT as it was. */
	if (p2p_mkdirs(o.root))
		p2p_die_lib();
	staging = join(o.root, ".splitset.XXXXXX", "", "");
	if (!mkdtemp(staging))
		p2p_die(1, "%s: cannot create a folder: %s", o.root, strerror(errno));
	atexit(cleanup);
	p2p_progress bar;
	p2p_progress_start(&bar, "splitset", good, p2p_want_progress(o.progress));
	long done = 0;
	for (int s = 0, start = 0; s < 3; start += count[s++]) {
		/* Each split lists its records by id. */
		qsort(idx + start, count[s], sizeof *idx, cmp_int);
		write_split(&o, s, rec, idx + start, count[s], &bar, &done);
	}
	p2p_progress_end(&bar);
	if (sync_dir(staging))
		p2p_die_lib();
	for (int s = 0; s < 3; s++) {
		char *fresh = join(staging, split_name[s], "", "");
		char *dst = join(o.root, split_name[s], "", "");
		char *old = join(staging, "old-", split_name[s], "");
		char *mf = join(staging, split_name[s], ".jsonl", "");
		char *mdst = join(o.root, split_name[s], ".jsonl", "");
		if (swap_in(fresh, dst, old))
			p2p_die_lib();
		if (rename(mf, mdst) != 0)
			p2p_die(1, "%s: cannot write: %s", mdst, strerror(errno));
		free(fresh), free(dst), free(old), free(mf), free(mdst);
	}
	if (sync_dir(o.root))
		p2p_die_lib();

	for (long i = 0; i < n; i++)
		cJSON_Delete(rec[i].obj);
	free(rec);
	free(idx);
	p2p_close_stdout();
	p2p_warn("%d written, %ld skipped: %ld train, %ld val, %ld test", good, skipped,
	         count[0], count[1], count[2]);
	free((char *)name);
	return 0;   /* atexit removes the staging folder, now holding the old splits */
}
