/* catflw-crop: square crops of cat faces from CatFLW (or CAT) labels, resized
 * and saved as JPEG, one JSON line per sample with the points in crop space. */
#include "atomic.h"
#include "cli.h"
#include "crop.h"
#include "err.h"
#include "image.h"
#include "labels.h"
#include "progress.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>

static const char usage_text[] =
	"Usage: catflw-crop -o DIR [-s SIZE] [--expand F] [--min-coverage F] [--max-grow F]\n"
	"                   [--pad black|edge] [--quality Q] [--shard I/N] [-j THREADS]\n"
	"                   [--strict] [--quiet|--progress] CATFLW_ROOT | LABEL.json | IMAGE.cat | - ...\n"
	"Crop each cat face to a square around its landmarks, resize it to SIZE x SIZE\n"
	"and save it as DIR/ID.jpg; write one JSON line per sample on stdout.\n"
	"  -o, --output DIR      folder for the crops (created)\n"
	"  -s, --size N          side of the crops in pixels (256)\n"
	"      --expand F        margin on each side, as a fraction of the face box (0.1)\n"
	"      --min-coverage F  fraction of landmarks the square must hold (0.9)\n"
	"      --max-grow F      the square grows at most F times for that (2)\n"
	"      --pad MODE        outside the photo: black or edge (black)\n"
	"      --quality Q       JPEG quality (95)\n"
	"      --shard I/N       only samples whose sorted index % N is I\n"
	"  -j, --threads N       worker threads (all cores)\n"
	"      --strict          stop at the first bad sample (exit 1)\n"
	"      --quiet, --progress  progress bar off / on (on when stderr is a terminal)\n"
	"  -h, --help            this help;  --version  the version\n"
	"Operand - reads label paths from standard input, one per line.\n";

static void usage(void)
{
	fputs(usage_text, stdout);
}

typedef struct {
	const char *out;
	int size;
	p2p_crop_opts crop;
	int pad;
	int quality;
	int shard_i, shard_n;
	int strict;
	int progress;       /* -1 auto, 0 off, 1 on */
	int threads;        /* 0: OpenMP's default (all cores) */
	char **inputs;
	int ninputs;
} options;

enum { OPT_EXPAND = 256, OPT_MIN_COVERAGE, OPT_MAX_GROW, OPT_PAD, OPT_QUALITY, OPT_SHARD,
       OPT_STRICT, OPT_QUIET, OPT_PROGRESS };

static void parse_options(int argc, char **argv, options *o)
{
	static const struct option longs[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "size", required_argument, NULL, 's' },
		{ "expand", required_argument, NULL, OPT_EXPAND },
		{ "min-coverage", required_argument, NULL, OPT_MIN_COVERAGE },
		{ "max-grow", required_argument, NULL, OPT_MAX_GROW },
		{ "pad", required_argument, NULL, OPT_PAD },
		{ "quality", required_argument, NULL, OPT_QUALITY },
		{ "shard", required_argument, NULL, OPT_SHARD },
		{ "threads", required_argument, NULL, 'j' },
		{ "strict", no_argument, NULL, OPT_STRICT },
		{ "quiet", no_argument, NULL, OPT_QUIET },
		{ "progress", no_argument, NULL, OPT_PROGRESS },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, P2P_OPT_VERSION },
		{ NULL, 0, NULL, 0 },
	};
	p2p_crop_opts defaults = P2P_CROP_DEFAULTS;
	*o = (options){ .size = 256, .crop = defaults, .pad = P2P_PAD_BLACK, .quality = 95, .progress = -1 };
	p2p_shard_default(&o->shard_i, &o->shard_n);
	int quiet = 0, progress = 0, c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:s:j:h", longs, NULL)) != -1) {
		switch (c) {
		case 'o': o->out = optarg; break;
		case 's': o->size = (int)p2p_opt_long("--size", optarg, 8, P2P_CROP_MAX_SIZE); break;
		case OPT_EXPAND: o->crop.expand = p2p_opt_double("--expand", optarg, 0, 2); break;
		case OPT_MIN_COVERAGE: o->crop.min_coverage = p2p_opt_double("--min-coverage", optarg, 0, 1); break;
		case OPT_MAX_GROW: o->crop.max_grow = p2p_opt_double("--max-grow", optarg, 1, 10); break;
		case OPT_PAD:
			if (strcmp(optarg, "black") == 0)
				o->pad = P2P_PAD_BLACK;
			else if (strcmp(optarg, "edge") == 0)
				o->pad = P2P_PAD_EDGE;
			else
				p2p_usage_error("--pad: expected black or edge, got '%s'", optarg);
			break;
		case OPT_QUALITY: o->quality = (int)p2p_opt_long("--quality", optarg, 1, 100); break;
		case OPT_SHARD: p2p_opt_shard(optarg, &o->shard_i, &o->shard_n); break;
		case 'j': o->threads = (int)p2p_opt_long("--threads", optarg, 0, 1024); break;
		case OPT_STRICT: o->strict = 1; break;
		case OPT_QUIET: quiet = 1; break;
		case OPT_PROGRESS: progress = 1; break;
		default: p2p_opt_other(c, argv, usage);
		}
	}
	if (quiet && progress)
		p2p_usage_error("--quiet and --progress contradict each other");
	o->progress = quiet ? 0 : progress ? 1 : -1;
	if (!o->out)
		p2p_usage_error("-o DIR is required: where should the crops go?");
	if (optind == argc)
		p2p_usage_error("no input: give a CatFLW folder, label files or .cat files");
	o->inputs = argv + optind;
	o->ninputs = argc - optind;
}

/* ---- the samples to crop ---- */

typedef struct {
	char *id;       /* the label file's stem: the sort key, and the output name */
	char *label;    /* NULL for an input that yielded no sample */
	char *image;    /* set for .cat files; otherwise looked up when cropped */
	char *error;    /* "PATH: what is wrong", for inputs that failed already */
	long order;     /* arrival, to break ties between equal ids */
} job;

typedef struct {
	job *v;
	long n, cap;
} joblist;

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

static char *xprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	char *s = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return s;
}

static job *add_job(joblist *l)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 256;
		l->v = realloc(l->v, sizeof *l->v * (size_t)l->cap);
		if (!l->v)
			p2p_die(1, "out of memory");
	}
	job *j = &l->v[l->n];
	memset(j, 0, sizeof *j);
	j->order = l->n++;
	return j;
}

static void add_error(joblist *l, const char *path, char *msg)
{
	job *j = add_job(l);
	j->id = xstrdup(path);
	j->error = msg;
}

static int has_suffix(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a > b && strcmp(s + a - b, suffix) == 0;
}

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* One label file, a .cat file, or anything else (an error). */
static void add_file(joblist *l, const char *path)
{
	const char *base = base_name(path);
	if (has_suffix(base, ".json")) {
		job *j = add_job(l);
		j->label = xstrdup(path);
		j->id = xstrdup(base);
		j->id[strlen(base) - 5] = 0;
	} else if (has_suffix(base, ".cat")) {
		job *j = add_job(l);
		j->label = xstrdup(path);
		j->image = xstrdup(path);
		j->image[strlen(path) - 4] = 0;
		/* NAME.jpg.cat: the id is NAME */
		j->id = xstrdup(base);
		j->id[strlen(base) - 4] = 0;
		char *dot = strrchr(j->id, '.');
		if (dot && dot != j->id)
			*dot = 0;
	} else {
		add_error(l, path, xprintf("%s: not a label file (.json or .cat) nor a CatFLW folder", path));
	}
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A CatFLW root: every ROOT/labels/NAME.json. */
static void add_root(joblist *l, const char *root)
{
	size_t rl = strlen(root);
	while (rl > 1 && root[rl - 1] == '/')
		rl--;
	char *dir = xprintf("%.*s/labels", (int)rl, root);
	DIR *d = opendir(dir);
	if (!d) {
		int e = errno;
		add_error(l, root, e == ENOENT ? xprintf("%s: not a CatFLW folder (no labels/ in it)", root)
					       : xprintf("%s: cannot open: %s", dir, strerror(e)));
		free(dir);
		return;
	}
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		/* dot files include our own temp files */
		if (e->d_name[0] == '.' || !has_suffix(e->d_name, ".json"))
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 256;
			names = realloc(names, sizeof *names * cap);
			if (!names)
				p2p_die(1, "out of memory");
		}
		names[n++] = xstrdup(e->d_name);
	}
	closedir(d);
	if (n == 0)
		add_error(l, root, xprintf("%s: no .json label files", dir));
	else    /* names is NULL when there are none */
		qsort(names, n, sizeof *names, cmp_name);
	for (size_t i = 0; i < n; i++) {
		char *p = xprintf("%s/%s", dir, names[i]);
		add_file(l, p);
		free(p);
		free(names[i]);
	}
	free(names);
	free(dir);
}

static void add_input(joblist *l, const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		add_error(l, path, xprintf("%s: cannot open: %s", path, strerror(errno)));
	else if (S_ISDIR(st.st_mode))
		add_root(l, path);
	else
		add_file(l, path);
}

/* Operand "-": one path a line on stdin. */
static void add_stdin(joblist *l)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	while ((n = getline(&line, &cap, stdin)) > 0) {
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = 0;
		if (n > 0)
			add_input(l, line);
	}
	free(line);
}

static int cmp_job(const void *a, const void *b)
{
	const job *x = a, *y = b;
	int c = strcmp(x->id, y->id);
	return c ? c : (x->order > y->order) - (x->order < y->order);
}

/* Every sample of every input, sorted by id, duplicates turned into errors,
 * then this shard's share. Errors keep their place in the order, so each is
 * reported by exactly one shard. */
static joblist collect(const options *o)
{
	joblist all = { 0 };
	for (int i = 0; i < o->ninputs; i++) {
		if (strcmp(o->inputs[i], "-") == 0)
			add_stdin(&all);
		else
			add_input(&all, o->inputs[i]);
	}
	qsort(all.v, (size_t)all.n, sizeof *all.v, cmp_job);
	long first = -1;
	for (long i = 0; i < all.n; i++) {
		job *j = &all.v[i];
		if (!j->label)
			continue;
		if (first >= 0 && strcmp(all.v[first].id, j->id) == 0)
			j->error = xprintf("%s: duplicate id '%s' (also from %s)", j->label, j->id, all.v[first].label);
		else
			first = i;
	}
	joblist mine = { 0 };
	for (long i = 0; i < all.n; i++) {
		if (i % o->shard_n == o->shard_i) {
			job *j = add_job(&mine);
			long order = j->order;
			*j = all.v[i];
			j->order = order;
		} else {
			free(all.v[i].id);
			free(all.v[i].label);
			free(all.v[i].image);
			free(all.v[i].error);
		}
	}
	free(all.v);
	return mine;
}

static void free_jobs(joblist *l)
{
	for (long i = 0; i < l->n; i++) {
		free(l->v[i].id);
		free(l->v[i].label);
		free(l->v[i].image);
		free(l->v[i].error);
	}
	free(l->v);
}

/* ---- cropping one sample ---- */

/* The photo for label file DIR/STEM.json: PARENT/images/STEM.EXT (the CatFLW
 * layout), else DIR/STEM.EXT, for the extensions of the formats that
 * p2p_crop_open reads. NULL (message set) when there is none. */
static char *find_image(const char *label, const char *id)
{
	static const char *const exts[] = { "png", "jpg", "jpeg", "webp", "tif", "tiff",
					    "PNG", "JPG", "JPEG", "WEBP", "TIF", "TIFF" };
	const char *base = base_name(label);
	size_t dl = (size_t)(base - label);   /* the folder, with its '/' */
	while (dl > 1 && label[dl - 1] == '/' && label[dl - 2] == '/')
		dl--;
	char *parent;
	if (dl == 0) {
		parent = xstrdup("../");
	} else {
		/* the folder's own folder: strip "NAME/" off "…/NAME/" */
		size_t pl = dl - 1;
		while (pl > 0 && label[pl - 1] != '/')
			pl--;
		int dotdot = dl - pl == 3 && strncmp(label + pl, "../", 3) == 0;
		if (dl == 1)
			parent = xstrdup("/");   /* a label in / has no folder above */
		else if (dotdot || (dl - pl == 2 && label[pl] == '.'))
			parent = xprintf("%.*s../", (int)dl, label);
		else
			parent = xprintf("%.*s", (int)pl, label);
	}
	char *found = NULL;
	for (int where = 0; where < 2 && !found; where++) {
		for (size_t e = 0; e < sizeof exts / sizeof *exts && !found; e++) {
			char *p = where == 0 ? xprintf("%simages/%s.%s", parent, id, exts[e])
					     : xprintf("%.*s%s.%s", (int)dl, label, id, exts[e]);
			if (access(p, F_OK) == 0)
				found = p;
			else
				free(p);
		}
	}
	if (!found)
		p2p_err("%s: no image %s.{png,jpg,jpeg,webp,tif,tiff} in %simages/ or beside it", label, id, parent);
	free(parent);
	return found;
}

/* v rounded to a thousandth of a pixel, so that the JSON stays short */
static double milli(double v)
{
	double r = round(v * 1000) / 1000;
	return r == 0 ? 0 : r;   /* no "-0" */
}

static cJSON *number_array(const double *v, int n)
{
	cJSON *a = cJSON_CreateArray();
	for (int i = 0; a && i < n; i++)
		cJSON_AddItemToArray(a, cJSON_CreateNumber(milli(v[i])));
	return a;
}

static char *out_path(const char *dir, const char *id)
{
	size_t n = strlen(dir);
	return xprintf("%s%s%s.jpg", dir, n && dir[n - 1] == '/' ? "" : "/", id);
}

/* Crop one sample: write its JPEG to a temp file (*pf, for a later group
 * commit) and return its JSON line (malloc'd), or NULL with the message set
 * and nothing left behind. */
static char *crop_one(const options *o, const job *j, p2p_pending *pf)
{
	if (j->error) {
		p2p_err("%s", j->error);
		return NULL;
	}
	p2p_labels l;
	if (p2p_labels_read(j->label, &l))
		return NULL;
	char *image = j->image ? xstrdup(j->image) : find_image(j->label, j->id);
	if (!image)
		return NULL;
	char *line = NULL, *out = NULL;
	void *jpg = NULL;
	size_t njpg;
	int w, h;
	p2p_crop_rect r;
	p2p_crop_src *src = p2p_crop_open(image, &w, &h);
	if (!src || p2p_labels_check_bounds(&l, j->label, w, h) ||
	    p2p_crop_square(l.xy, l.n, l.has_box ? l.box : NULL, &o->crop, j->label, &r) ||
	    p2p_crop_render(src, &r, o->size, o->pad, o->quality, &jpg, &njpg))
		goto done;
	out = out_path(o->out, j->id);
	if (p2p_pending_write(pf, out, jpg, njpg))
		goto done;

	double pts[2 * P2P_LABELS_MAX_POINTS], box[4];
	if (l.has_box)
		memcpy(box, l.box, sizeof box);
	else
		p2p_labels_extent(&l, box);
	p2p_crop_map(&r, o->size, l.xy, l.n, pts);
	p2p_crop_map(&r, o->size, box, 2, box);
	cJSON *obj = cJSON_CreateObject(), *arr = cJSON_CreateArray();
	if (!obj || !arr)
		p2p_die(1, "out of memory");
	for (int i = 0; i < l.n; i++)
		cJSON_AddItemToArray(arr, number_array(pts + 2 * i, 2));
	double rect[3] = { (double)r.x0, (double)r.y0, (double)r.side };
	cJSON_AddStringToObject(obj, "id", j->id);
	cJSON_AddStringToObject(obj, "image", out);
	cJSON_AddItemToObject(obj, "points", arr);
	cJSON_AddItemToObject(obj, "box", number_array(box, 4));
	cJSON_AddStringToObject(obj, "src", image);
	cJSON_AddItemToObject(obj, "crop", number_array(rect, 3));
	line = cJSON_PrintUnformatted(obj);
	cJSON_Delete(obj);
	if (!line)
		p2p_die(1, "out of memory");
done:
	free(jpg);
	free(out);
	free(image);
	p2p_crop_close(src);
	return line;
}

/* Files are made durable a group at a time (see p2p_pending_commit): one
 * flush of the disk per GROUP crops instead of one each, which cost more
 * than the rest of the writing. A sample is reported only once its file is
 * under its final name. */
#define GROUP 64

/* The results of the samples, printed strictly in job order as soon as each
 * one's predecessors are out: a slow sample never holds a thread idle. */
typedef struct {
	char **line, **why;     /* per job: its JSON line or its message */
	char *ready;            /* per job: finished, its file (if any) committed */
	long next;              /* the first job not yet printed */
	long ran;               /* jobs past crop_one */
	p2p_pending *pend;      /* crops written, waiting for a commit */
	long *pend_job;         /* the job of each */
	long npend, cap;
	long cropped, skipped;
	int stop;               /* 1: --strict met a bad sample; 2: stdout failed */
	int write_errno;
	p2p_progress bar;
} results;

/* Print every finished job from r->next on; call inside critical(emit). */
static void emit_ready(results *r, long n, int strict)
{
	for (; r->next < n && r->ready[r->next]; r->next++) {
		long i = r->next;
		if (r->stop) {
			/* after a fatal sample: nothing more is reported */
		} else if (r->line[i]) {
			/* No exit from here: other threads may be halfway through a
			 * commit, to be finished or undone. */
			if (fputs(r->line[i], stdout) == EOF || putchar('\n') == EOF) {
				r->write_errno = errno;
				r->stop = 2;
			}
			r->cropped++;
		} else {
			if (r->bar.enabled)
				fputs("\r\033[K", stderr);
			p2p_warn("%s", r->why[i]);
			r->skipped++;
			if (strict)
				r->stop = 1;
		}
		free(r->line[i]);
		free(r->why[i]);
		r->line[i] = r->why[i] = NULL;
		p2p_progress_update(&r->bar, i + 1, NULL);
	}
}

/* Job i's file joins the group waiting for a commit; inside critical(emit). */
static void add_pending(results *r, const p2p_pending *pf, long i)
{
	if (r->npend == r->cap) {
		r->cap = r->cap ? 2 * r->cap : GROUP;
		r->pend = realloc(r->pend, sizeof *r->pend * (size_t)r->cap);
		r->pend_job = realloc(r->pend_job, sizeof *r->pend_job * (size_t)r->cap);
		if (!r->pend || !r->pend_job)
			p2p_die(1, "out of memory");
	}
	r->pend[r->npend] = *pf;
	r->pend_job[r->npend++] = i;
}

/* A group taken out of results, to commit outside the critical section
 * while the other threads go on cropping. */
typedef struct {
	p2p_pending *p;
	long *job, n;
} group;

/* Commit g (or, after a fatal error, give it up), then report its jobs. */
static void commit_group(results *r, group *g, long n, int strict)
{
	int halted;
#pragma omp atomic read
	halted = r->stop;
	if (halted)
		p2p_pending_abort(g->p, g->n);
	else
		p2p_pending_commit(g->p, g->n);
#pragma omp critical(emit)
	{
		for (long k = 0; k < g->n; k++) {
			long i = g->job[k];
			if (!halted && g->p[k].why) {
				free(r->line[i]);
				r->line[i] = NULL;
				r->why[i] = g->p[k].why;
			}
			r->ready[i] = 1;
		}
		emit_ready(r, n, strict);
	}
	free(g->p);
	free(g->job);
}

int main(int argc, char **argv)
{
	p2p_cli_init(argv[0]);
	options o;
	parse_options(argc, argv, &o);
	/* Each sample needs a few MB of buffers, freed at its end; left to
	 * itself malloc would map and unmap them afresh for every sample, and
	 * the page faults cost a third of the time. */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 256 << 20);
	if (p2p_image_init(argv[0]))
		p2p_die_lib();
	/* Samples run in parallel, one per thread; a libvips pipeline of its
	 * own per sample would only compete with them. */
	vips_concurrency_set(1);
	if (o.threads > 0)
		omp_set_num_threads(o.threads);
	if (p2p_mkdirs(o.out))
		p2p_die_lib();
	/* the temp files of a run that was killed; not those of shards at work */
	p2p_afile_sweep_orphans(o.out);
	/* A reader that goes away (| head) must not kill us halfway through
	 * the temp files of other samples: a failed write stops us instead. */
	signal(SIGPIPE, SIG_IGN);

	joblist jobs = collect(&o);
	size_t n = (size_t)jobs.n;
	results r = { .line = calloc(n + 1, sizeof(char *)), .why = calloc(n + 1, sizeof(char *)),
		      .ready = calloc(n + 1, 1) };
	if (!r.line || !r.why || !r.ready)
		p2p_die(1, "out of memory");
	p2p_progress_start(&r.bar, "crop", jobs.n, p2p_want_progress(o.progress));

#pragma omp parallel for schedule(dynamic, 1)
	for (long i = 0; i < jobs.n; i++) {
		int halted;
#pragma omp atomic read
		halted = r.stop;
		char *line = NULL, *why = NULL;
		p2p_pending pf;
		if (!halted && !(line = crop_one(&o, &jobs.v[i], &pf)))
			why = xstrdup(p2p_errmsg());
		group g = { 0 };
#pragma omp critical(emit)
		{
			r.line[i] = line;
			r.why[i] = why;
			if (line)
				add_pending(&r, &pf, i);
			else
				r.ready[i] = 1;
			/* A full group, or the last one: this thread commits it. */
			r.ran++;
			if (r.npend >= GROUP || (r.ran == jobs.n && r.npend > 0)) {
				g = (group){ r.pend, r.pend_job, r.npend };
				r.pend = NULL;
				r.pend_job = NULL;
				r.npend = r.cap = 0;
			}
			emit_ready(&r, jobs.n, o.strict);
		}
		if (g.n)
			commit_group(&r, &g, jobs.n, o.strict);
	}
	p2p_progress_end(&r.bar);
	free_jobs(&jobs);
	free(r.pend);       /* empty: the last job's thread took the last group */
	free(r.pend_job);
	free(r.line);
	free(r.why);
	free(r.ready);
	if (r.stop == 2)
		p2p_die(1, "stdout: write failed: %s", strerror(r.write_errno));
	if (r.stop) {
		p2p_close_stdout();
		return 1;
	}
	p2p_warn("%ld cropped, %ld skipped", r.cropped, r.skipped);
	p2p_close_stdout();
	vips_shutdown();
	return 0;
}
