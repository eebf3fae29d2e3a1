/* p2p-metrics: score generated images against the truth, L1 / PSNR / SSIM as
 * DESIGN.md defines them, over two folders whose files are matched by stem.
 * JSON on stdout: one summary object, after one line per image with
 * --per-image. Bad pairs are reported, skipped and counted. */
#include "cli.h"
#include "err.h"
#include "image.h"
#include "metrics.h"
#include "progress.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage_text[] =
	"Usage: p2p-metrics [--per-image] [--strict] [--progress | --quiet] PRED_DIR TRUTH_DIR\n"
	"Score the images in PRED_DIR against those of the same file stem in\n"
	"TRUTH_DIR: L1 (on [-1, 1]), PSNR (dB, capped at 100) and SSIM, each per\n"
	"image then averaged, as one JSON object on stdout.\n"
	"  --per-image   first one JSON line per image: {\"id\", \"l1\", \"psnr\", \"ssim\"}\n"
	"  --strict      a bad or unpartnered file is fatal (exit 1) instead of skipped\n"
	"  --progress    show a progress bar on stderr (default: when it is a terminal)\n"
	"  --quiet       no progress bar\n"
	"  -h, --help    this help\n"
	"  --version     print the version\n";

static void usage(void)
{
	fputs(usage_text, stdout);
}

struct opts {
	int per_image;
	int strict;
	int progress;           /* -1 auto, 0 off, 1 on */
	const char *pred, *truth;
};

/* One file of a folder, by stem. */
struct entry {
	char *stem;
	char *path;
};

/* One stem: its two files (either may be missing) and, once scored, its
 * scores or the message saying why it was skipped. */
struct pair {
	const char *stem;
	const char *pred, *truth;
	char *msg;              /* NULL when scored */
	p2p_scores s;
};

static void parse(int argc, char **argv, struct opts *o)
{
	enum { OPT_PROGRESS = 256, OPT_QUIET, OPT_PER_IMAGE, OPT_STRICT };
	static const struct option longs[] = {
		{"per-image", no_argument, NULL, OPT_PER_IMAGE},
		{"strict", no_argument, NULL, OPT_STRICT},
		{"progress", no_argument, NULL, OPT_PROGRESS},
		{"quiet", no_argument, NULL, OPT_QUIET},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, P2P_OPT_VERSION},
		{NULL, 0, NULL, 0},
	};
	*o = (struct opts){.progress = -1};
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longs, NULL)) != -1) {
		switch (c) {
		case OPT_PER_IMAGE: o->per_image = 1; break;
		case OPT_STRICT: o->strict = 1; break;
		case OPT_PROGRESS: o->progress = 1; break;
		case OPT_QUIET: o->progress = 0; break;
		default: p2p_opt_other(c, argv, usage);
		}
	}
	if (argc - optind != 2)
		p2p_usage_error("expected two folders, PRED_DIR and TRUTH_DIR (got %d argument%s)",
		                argc - optind, argc - optind == 1 ? "" : "s");
	o->pred = argv[optind];
	o->truth = argv[optind + 1];
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		p2p_die(1, "out of memory");
	return p;
}

static char *xstrdup(const char *s)
{
	return strcpy(xmalloc(strlen(s) + 1), s);
}

static char *join(const char *dir, const char *name)
{
	size_t n = strlen(dir);
	int slash = n > 0 && dir[n - 1] == '/';
	char *p = xmalloc(n + strlen(name) + 2);
	sprintf(p, "%s%s%s", dir, slash ? "" : "/", name);
	return p;
}

static int by_stem(const void *a, const void *b)
{
	const struct entry *x = a, *y = b;
	int r = strcmp(x->stem, y->stem);
	return r ? r : strcmp(x->path, y->path);
}

/* The files of dir (hidden ones and folders left out), sorted by stem. A
 * folder that cannot be read, or holds no file, is fatal. */
static struct entry *list_dir(const char *dir, size_t *count)
{
	DIR *d = opendir(dir);
	if (!d)
		p2p_die(1, "%s: %s", dir, strerror(errno));
	struct entry *e = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((errno = 0, de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char *path = join(dir, de->d_name);
		struct stat st;
		if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
			free(path);
			continue;
		}
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			e = realloc(e, cap * sizeof *e);
			if (!e)
				p2p_die(1, "out of memory");
		}
		char *stem = xstrdup(de->d_name);
		char *dot = strrchr(stem, '.');
		if (dot && dot != stem)
			*dot = '\0';
		e[n++] = (struct entry){stem, path};
	}
	if (errno)
		p2p_die(1, "%s: %s", dir, strerror(errno));
	closedir(d);
	if (n == 0)
		p2p_die(1, "%s: no files to score", dir);
	qsort(e, n, sizeof *e, by_stem);
	*count = n;
	return e;
}

static char *msgf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *msgf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	if (vasprintf(&s, fmt, ap) < 0)
		p2p_die(1, "out of memory");
	va_end(ap);
	return s;
}

/* A second file with the stem of the one before it makes the pair ambiguous. */
static char *duplicate(const struct entry *e, size_t i, size_t n)
{
	if (i + 1 < n && strcmp(e[i].stem, e[i + 1].stem) == 0)
		return msgf("%s: %s has the same stem", e[i + 1].path, e[i].path);
	return NULL;
}

/* Merge the two sorted listings into pairs by stem. */
static struct pair *match(const struct opts *o, struct entry *p, size_t np,
                          struct entry *t, size_t nt, size_t *count)
{
	struct pair *pr = xmalloc((np + nt) * sizeof *pr);
	size_t i = 0, j = 0, n = 0;
	while (i < np || j < nt) {
		int c = i == np ? 1 : j == nt ? -1 : strcmp(p[i].stem, t[j].stem);
		struct pair *x = &pr[n++];
		*x = (struct pair){.stem = c <= 0 ? p[i].stem : t[j].stem};
		if (c <= 0)
			x->pred = p[i].path;
		if (c >= 0)
			x->truth = t[j].path;
		if (c < 0)
			x->msg = msgf("%s: no partner in %s", p[i].path, o->truth);
		else if (c > 0)
			x->msg = msgf("%s: no partner in %s", t[j].path, o->pred);
		else if (!(x->msg = duplicate(p, i, np)))
			x->msg = duplicate(t, j, nt);
		/* skip every file of this stem on both sides */
		const char *stem = x->stem;
		while (i < np && strcmp(p[i].stem, stem) == 0)
			i++;
		while (j < nt && strcmp(t[j].stem, stem) == 0)
			j++;
	}
	*count = n;
	return pr;
}

/* Load both images and score them; on failure x->msg says why. */
static void score(struct pair *x)
{
	p2p_image a = {0}, b = {0};
	if (p2p_image_load(x->pred, 3, &a) || p2p_image_load(x->truth, 3, &b))
		x->msg = msgf("%s", p2p_errmsg());
	else if (a.w != b.w || a.h != b.h)
		x->msg = msgf("%s: %dx%d, but %s is %dx%d", x->pred, a.w, a.h, x->truth, b.w, b.h);
	else if (p2p_scores_compute(a.px, b.px, a.w, a.h, 3, &x->s))
		x->msg = msgf("%s: %s", x->pred, p2p_errmsg());
	p2p_image_free(&a);
	p2p_image_free(&b);
}

/* Numbers printed to fixed places, so that the output is the same bytes on
 * every run and thread count (the sums are made in stem order). */
static void add_scores(cJSON *obj, double l1, double psnr, double ssim)
{
	char buf[64];
	snprintf(buf, sizeof buf, "%.6f", l1);
	cJSON_AddRawToObject(obj, "l1", buf);
	snprintf(buf, sizeof buf, "%.4f", psnr);
	cJSON_AddRawToObject(obj, "psnr", buf);
	snprintf(buf, sizeof buf, "%.6f", ssim);
	cJSON_AddRawToObject(obj, "ssim", buf);
}

static void print_line(cJSON *obj)
{
	char *s = cJSON_PrintUnformatted(obj);
	if (!s)
		p2p_die(1, "out of memory");
	puts(s);
	free(s);
	cJSON_Delete(obj);
}

int main(int argc, char **argv)
{
	p2p_cli_init(argv[0]);
	struct opts o;
	parse(argc, argv, &o);
	if (p2p_image_init(argv[0]))
		p2p_die_lib();

	size_t np, nt, n;
	struct entry *pe = list_dir(o.pred, &np), *te = list_dir(o.truth, &nt);
	struct pair *pr = match(&o, pe, np, te, nt, &n);

	/* --strict stops at the first bad stem: no need to score past it */
	size_t lim = n;
	for (size_t i = 0; o.strict && i < n; i++)
		if (pr[i].msg) {
			lim = i;
			break;
		}
	long todo = 0, done = 0;
	for (size_t i = 0; i < lim; i++)
		todo += !pr[i].msg;
	p2p_progress bar;
	p2p_progress_start(&bar, "scoring", todo, p2p_want_progress(o.progress));
	#pragma omp parallel for schedule(dynamic)
	for (size_t i = 0; i < lim; i++) {
		if (pr[i].msg)
			continue;
		score(&pr[i]);
		long d;
		#pragma omp atomic capture
		d = ++done;
		#pragma omp critical(progress)
		p2p_progress_update(&bar, d, NULL);
	}
	p2p_progress_end(&bar);

	/* messages in stem order, whatever order the threads finished in */
	long scored = 0, skipped = 0;
	for (size_t i = 0; i < n; i++) {
		if (!pr[i].msg)
			continue;
		if (o.strict)
			p2p_die(1, "%s", pr[i].msg);
		p2p_warn("%s", pr[i].msg);
		skipped++;
	}
	scored = (long)n - skipped;
	if (scored == 0)
		p2p_die(1, "no image pair could be scored (%ld skipped)", skipped);

	double l1 = 0, psnr = 0, ssim = 0;
	for (size_t i = 0; i < n; i++) {
		struct pair *x = &pr[i];
		if (x->msg)
			continue;
		l1 += x->s.l1;
		psnr += x->s.psnr;
		ssim += x->s.ssim;
		if (o.per_image) {
			cJSON *obj = cJSON_CreateObject();
			cJSON_AddStringToObject(obj, "id", x->stem);
			add_scores(obj, x->s.l1, x->s.psnr, x->s.ssim);
			print_line(obj);
		}
	}
	cJSON *sum = cJSON_CreateObject();
	cJSON_AddNumberToObject(sum, "count", (double)scored);
	add_scores(sum, l1 / scored, psnr / scored, ssim / scored);
	cJSON_AddNumberToObject(sum, "skipped", (double)skipped);
	print_line(sum);
	p2p_close_stdout();
	fprintf(stderr, "%s: %ld scored, %ld skipped\n", p2p_prog, scored, skipped);

	for (size_t i = 0; i < n; i++)
		free(pr[i].msg);
	free(pr);
	for (size_t i = 0; i < np; i++)
		free(pe[i].stem), free(pe[i].path);
	for (size_t i = 0; i < nt; i++)
		free(te[i].stem), free(te[i].path);
	free(pe);
	free(te);
	return 0;
}
