/* lm2heat: one Gaussian landmark heatmap (.npy, uint8) per sample of a JSON
 * Lines stream; the records go on to stdout with "heatmap" added. */
#include "cli.h"
#include "err.h"
#include "heatmap.h"
#include "jsonl.h"
#include "npy.h"
#include "atomic.h"
#include "bytes.h"
#include "image.h"
#include "progress.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <vips/vips.h>

#define BATCH 256           /* records read, then rendered in parallel */
#define MAX_SIDE 65536      /* --size and image sides above this are refused */
#define MAX_PIXELS (1L << 27)   /* images above this are refused (catflw-crop's limit) */

typedef struct {
	const char *outdir;
	int to_stdout;          /* -o -: .npy files to stdout, no records */
	const char *input;
	double sigma;
	int *sel, nsel;         /* --points indices; nsel 0 = all */
	int size_w, size_h;     /* --size; 0 = read the image header */
	int shard_i, shard_n;
	int strict;
	int progress;           /* -1 auto, 0 quiet, 1 on */
} options;

/* One record on its way through a batch. */
typedef struct {
	cJSON *obj;             /* NULL when the line itself was bad */
	long line;
	char *msg;              /* why it is skipped (malloc'd), or NULL */
	unsigned char *map;     /* -o -: the heatmap, h x w, for stdout */
	int h, w;
	p2p_pending file;       /* its .npy, written, waiting for the batch's commit */
	int pending;
	char *text;             /* the record with "heatmap", printed (malloc'd) */
} slot;

static void usage(void)
{
	printf("Usage: %s -o DIR [--sigma S] [--points all|I,J,...] [--size S|WxH]\n"
	       "               [--shard I/N] [--strict] [--progress|--quiet] [FILE.jsonl | -]\n"
	       "Write a Gaussian heatmap DIR/ID.npy (uint8, H x W) for each sample record\n"
	       "and copy the records to stdout with \"heatmap\" added.\n"
	       "  -o, --output DIR    folder for the .npy files (created if missing);\n"
	       "                      '-' writes the .npy files to stdout instead of records\n"
	       "  -s, --sigma S       Gaussian sigma in pixels (default 2.0)\n"
	       "  -p, --points LIST   landmark indices to draw, or 'all' (default)\n"
	       "      --size S|WxH    heatmap size; default: the size of each record's image\n"
	       "      --shard I/N     only records I, I+N, I+2N, ... (0-based)\n"
	       "      --strict        stop at the first bad record (exit 1)\n"
	       "      --progress, --quiet   force the progress bar on or off\n"
	       "  -h, --help, --version\n", p2p_prog);
}

/* "all" or comma-separated non-negative indices. */
static void parse_points(const char *s, options *o)
{
	if (strcmp(s, "all") == 0) {
		o->nsel = 0;
		return;
	}
	int n = 1;
	for (const char *t = s; *t; t++)
		n += *t == ',';
	free(o->sel);
	o->sel = malloc(sizeof *o->sel * n);
	if (!o->sel)
		p2p_die(1, "out of memory");
	o->nsel = 0;
	char *copy = strdup(s), *save = NULL;
	if (!copy)
		p2p_die(1, "out of memory");
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		o->sel[o->nsel++] = (int)p2p_opt_long("--points", tok, 0, 99999);
	free(copy);
	if (o->nsel != n)
		p2p_usage_error("--points: expected 'all' or indices like 0,1,2, got '%s'", s);
}

/* "S" (square) or "WxH". */
static void parse_size(const char *s, options *o)
{
	const char *x = strchr(s, 'x');
	if (!x) {
		o->size_w = o->size_h = (int)p2p_opt_long("--size", s, 1, MAX_SIDE);
		return;
	}
	char w[32];
	size_t len = (size_t)(x - s);
	if (len == 0 || len >= sizeof w)
		p2p_usage_error("--size: expected S or WxH, got '%s'", s);
	memcpy(w, s, len);
	w[len] = 0;
	o->size_w = (int)p2p_opt_long("--size", w, 1, MAX_SIDE);
	o->size_h = (int)p2p_opt_long("--size", x + 1, 1, MAX_SIDE);
}

static void parse_args(int argc, char **argv, options *o)
{
	enum { O_SIZE = 256, O_SHARD, O_STRICT, O_PROGRESS, O_QUIET };
	static const struct option longs[] = {
		{ "output", required_argument, 0, 'o' },
		{ "sigma", required_argument, 0, 's' },
		{ "points", required_argument, 0, 'p' },
		{ "size", required_argument, 0, O_SIZE },
		{ "shard", required_argument, 0, O_SHARD },
		{ "strict", no_argument, 0, O_STRICT },
		{ "progress", no_argument, 0, O_PROGRESS },
		{ "quiet", no_argument, 0, O_QUIET },
		{ "help", no_argument, 0, 'h' },
		{ "version", no_argument, 0, P2P_OPT_VERSION },
		{ 0, 0, 0, 0 }
	};
	memset(o, 0, sizeof *o);
	o->sigma = 2.0;
	o->progress = -1;
	p2p_shard_default(&o->shard_i, &o->shard_n);
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:s:p:h", longs, NULL)) != -1) {
		switch (c) {
		case 'o': o->outdir = optarg; break;
		case 's': o->sigma = p2p_opt_double("--sigma", optarg, 1e-3, 1e4); break;
		case 'p': parse_points(optarg, o); break;
		case O_SIZE: parse_size(optarg, o); break;
		case O_SHARD: p2p_opt_shard(optarg, &o->shard_i, &o->shard_n); break;
		case O_STRICT: o->strict = 1; break;
		case O_PROGRESS: o->progress = 1; break;
		case O_QUIET: o->progress = 0; break;
		default: p2p_opt_other(c, argv, usage);
		}
	}
	if (!o->outdir || !*o->outdir)
		p2p_usage_error("-o DIR is required");
	if (argc - optind > 1)
		p2p_usage_error("one input at most (FILE.jsonl or -), got %d", argc - optind);
	o->input = optind < argc ? argv[optind] : "-";
	o->to_stdout = strcmp(o->outdir, "-") == 0;
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

/* The size in a PNG's IHDR or a JPEG's SOF, read here: libvips' generic
 * open tries its loaders one after the other and cost more than drawing
 * the heatmap. 0 when found; -1 for any other file, or a header not as
 * expected, which libvips then reads (and names what is wrong). */
static int header_size(const char *path, int *w, int *h)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return -1;
	unsigned char b[24];
	unsigned long bw = 0, bh = 0;
	ssize_t got = pread(fd, b, 24, 0);
	if (got == 24 && p2p_is_png(b, got) && memcmp(b + 8, "\0\0\0\x0dIHDR", 8) == 0) {
		bw = p2p_be32(b + 16);
		bh = p2p_be32(b + 20);
	} else if (got >= 2 && b[0] == 0xFF && b[1] == 0xD8) {
		/* Marker segments up to the frame header: FF (and any fill FFs),
		 * the marker, a big-endian length that counts itself, its data.
		 * Only the frames libjpeg decodes: baseline, extended and
		 * progressive, Huffman or arithmetic (SOF0-2, SOF9-10). */
		off_t at = 2;
		for (int seg = 0; seg < 512; seg++) {
			if (pread(fd, b, 9, at) != 9 || b[0] != 0xFF)
				break;
			unsigned m = b[1];
			if (m == 0xFF) {
				at++;
				continue;
			}
			if (m == 0xC0 || m == 0xC1 || m == 0xC2 || m == 0xC9 || m == 0xCA) {
				bh = p2p_be16(b + 5);       /* after the precision byte */
				bw = p2p_be16(b + 7);
				break;
			}
			int has_length = m == 0xC4 || m == 0xCC || (m >= 0xDB && m <= 0xDF) || m >= 0xE0;
			if (!has_length || p2p_be16(b + 2) < 2)
				break;                  /* any other frame, or the data: libvips' call */
			at += 2 + p2p_be16(b + 2);
		}
	}
	close(fd);
	if (bw < 1 || bh < 1 || bw > INT_MAX || bh > INT_MAX)
		return -1;
	*w = (int)bw;
	*h = (int)bh;
	return 0;
}

/* libvips is started (by the main thread, between batches) only once an
 * image needs it: starting it loads its modules, which costs more than the
 * rest of a small run. */
static int vips_started;
#define NEED_VIPS (-2)

/* The image's size from its header only (no pixels are read); NEED_VIPS
 * when libvips must read it and is not started. */
static int image_size(const char *path, int *w, int *h)
{
	if (access(path, R_OK) != 0)
		return p2p_err_errno("%s", path);
	if (header_size(path, w, h)) {
		if (!vips_started)
			return NEED_VIPS;
		if (p2p_png_check_file(path))
			return -1;
		VipsImage *im = vips_image_new_from_file(path, NULL);
		if (!im)
			return p2p_err("%s: not an image libvips can read", path);
		*w = vips_image_get_width(im);
		*h = vips_image_get_height(im);
		g_object_unref(im);
	}
	if (*w < 1 || *h < 1 || *w > MAX_SIDE || *h > MAX_SIDE)
		return p2p_err("%s: image size %d x %d is out of range", path, *w, *h);
	/* the header alone can claim gigapixels: the heatmap would be as large */
	if ((long)*w * *h > MAX_PIXELS)
		return p2p_err("%s: %dx%d is too large an image", path, *w, *h);
	return 0;
}

/* "DIR/ID.npy", without doubling a trailing '/'. */
static char *heatmap_path(const char *dir, const char *id)
{
	size_t n = strlen(dir);
	int slash = n > 0 && dir[n - 1] == '/';
	size_t len = n + strlen(id) + 6;
	char *p = malloc(len);
	if (p)
		snprintf(p, len, "%s%s%s.npy", dir, slash ? "" : "/", id);
	return p;
}

/* The heatmap as .npy to a temp file, committed with its batch. */
static int write_npy(slot *sl, const char *path, int h, int w, const unsigned char *map)
{
	void *buf;
	size_t n;
	if (p2p_npy_encode(P2P_U8, 2, (long[]){ h, w }, map, &buf, &n))
		return -1;
	int rc = p2p_pending_write(&sl->file, path, buf, n);
	free(buf);
	sl->pending = rc == 0;
	return rc;
}

/* Render and write one record's heatmap and add "heatmap" to it (with -o -,
 * keep the heatmap in the slot); -1 with a message (without the FILE:LINE
 * prefix) when the record is bad, NEED_VIPS (nothing done) to try again
 * once libvips is started. */
static int do_record(const options *o, slot *sl)
{
	cJSON *obj = sl->obj;
	const char *id = NULL;
	if (!o->to_stdout && (!(id = p2p_json_string(obj, "id")) || check_id(id)))
		return -1;
	float *xy;
	int n;
	if (p2p_json_points(cJSON_GetObjectItemCaseSensitive(obj, "points"), "points", &xy, &n))
		return -1;
	if (o->nsel) {
		/* Keep the selected points, in the order given. */
		for (int i = 0; i < o->nsel; i++)
			if (o->sel[i] >= n) {
				free(xy);
				return p2p_err("\"points\" has %d points; --points asks for index %d",
				               n, o->sel[i]);
			}
		float *pick = malloc(sizeof *pick * 2 * (unsigned)o->nsel);
		if (!pick) {
			free(xy);
			return p2p_err("out of memory");
		}
		for (int i = 0; i < o->nsel; i++) {
			pick[2 * i] = xy[2 * o->sel[i]];
			pick[2 * i + 1] = xy[2 * o->sel[i] + 1];
		}
		free(xy);
		xy = pick;
		n = o->nsel;
	}
	int w = o->size_w, h = o->size_h;
	if (!w) {
		const char *image = p2p_json_string(obj, "image");
		int rc = image ? image_size(image, &w, &h) : -1;
		if (rc) {
			free(xy);
			return rc;
		}
	}
	unsigned char *map = malloc((size_t)w * h);
	char *path = o->to_stdout ? NULL : heatmap_path(o->outdir, id);
	int rc = -1;
	if (!map || (!path && !o->to_stdout)) {
		p2p_err("out of memory");
	} else if (o->to_stdout) {
		if (!p2p_heatmap_render(map, h, w, xy, n, o->sigma)) {
			sl->map = map, sl->h = h, sl->w = w;
			map = NULL;
			rc = 0;
		}
	} else if (!p2p_heatmap_render(map, h, w, xy, n, o->sigma) && !write_npy(sl, path, h, w, map)) {
		cJSON *v = cJSON_CreateString(path);
		if (!v)
			p2p_err("out of memory");
		else if (cJSON_HasObjectItem(obj, "heatmap"))
			rc = cJSON_ReplaceItemInObjectCaseSensitive(obj, "heatmap", v) ? 0 : -1;
		else
			rc = cJSON_AddItemToObject(obj, "heatmap", v) ? 0 : -1;
	}
	free(map);
	free(path);
	free(xy);
	return rc;
}

/* The ids seen so far and their lines: a duplicate would overwrite a heatmap. */
typedef struct {
	char **id;
	long *line;
	size_t cap, n;
} idset;

static size_t hash(const char *s)
{
	size_t h = 1469598103934665603u;
	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211u;
	return h;
}

/* 0 when new (and added), else the line it was first seen on. */
static long idset_add(idset *t, const char *id, long line)
{
	if (2 * (t->n + 1) > t->cap) {
		idset g = { 0 };
		g.cap = t->cap ? 2 * t->cap : 1024;
		g.id = calloc(g.cap, sizeof *g.id);
		g.line = calloc(g.cap, sizeof *g.line);
		if (!g.id || !g.line)
			p2p_die(1, "out of memory");
		for (size_t i = 0; i < t->cap; i++)
			if (t->id[i]) {
				size_t j = hash(t->id[i]) & (g.cap - 1);
				while (g.id[j])
					j = (j + 1) & (g.cap - 1);
				g.id[j] = t->id[i];
				g.line[j] = t->line[i];
			}
		g.n = t->n;
		free(t->id);
		free(t->line);
		*t = g;
	}
	size_t j = hash(id) & (t->cap - 1);
	for (; t->id[j]; j = (j + 1) & (t->cap - 1))
		if (strcmp(t->id[j], id) == 0)
			return t->line[j];
	if (!(t->id[j] = strdup(id)))
		p2p_die(1, "out of memory");
	t->line[j] = line;
	t->n++;
	return 0;
}

static void idset_free(idset *t)
{
	for (size_t i = 0; i < t->cap; i++)
		free(t->id[i]);
	free(t->id);
	free(t->line);
}

/* A copy of the pending message with the FILE:LINE prefix. */
static char *located(const char *file, long line, const char *msg)
{
	size_t n = strlen(file) + strlen(msg) + 32;
	char *s = malloc(n);
	if (s)
		snprintf(s, n, "%s:%ld: %s", file, line, msg);
	return s;
}

/* The batch's heatmaps made durable together, then given their names (one
 * disk flush a batch rather than one a file: see p2p_pending_commit); a
 * file that fails makes its record bad. */
static void commit_batch(slot *b, int m, const char *name)
{
	if (m == 0)
		return;
	p2p_pending *p = malloc(sizeof *p * (size_t)m);
	int *which = malloc(sizeof *which * (size_t)m), k = 0;
	if (!p || !which)
		p2p_die(1, "out of memory");
	for (int i = 0; i < m; i++) {
		if (!b[i].pending)
			continue;
		if (b[i].msg) {
			p2p_pending_abort(&b[i].file, 1);
		} else {
			p[k] = b[i].file;
			which[k++] = i;
		}
		b[i].pending = 0;
	}
	if (p2p_pending_commit(p, k))
		for (int j = 0; j < k; j++)
			if (p[j].why) {
				slot *sl = &b[which[j]];
				sl->msg = located(name, sl->line, p[j].why);
				free(p[j].why);
			}
	free(p);
	free(which);
}

int main(int argc, char **argv)
{
	p2p_cli_init(argv[0]);
	options o;
	parse_args(argc, argv, &o);
	if (!o.to_stdout && p2p_mkdirs(o.outdir))
		p2p_die_lib();
	/* the temp files of a run that was killed; not those of shards at work */
	if (!o.to_stdout)
		p2p_afile_sweep_orphans(o.outdir);
	p2p_jsonl r;
	if (p2p_jsonl_open(&r, o.input))
		p2p_die_lib();

	slot *b = calloc(BATCH, sizeof *b);
	if (!b)
		p2p_die(1, "out of memory");
	p2p_progress bar;
	p2p_progress_start(&bar, "lm2heat", 0, p2p_want_progress(o.progress));
	idset seen = { 0 };
	long index = 0, written = 0, skipped = 0;
	int eof = 0;
	while (!eof) {
		/* Read a batch of this shard's records, one thread. */
		int m = 0;
		while (m < BATCH) {
			cJSON *obj;
			int rc = p2p_jsonl_next(&r, &obj);
			if (rc == 0) {
				eof = 1;
				break;
			}
			if (rc < 0 && ferror(r.fp))
				p2p_die_lib();
			if (index++ % o.shard_n != o.shard_i) {
				cJSON_Delete(obj);
				continue;
			}
			b[m].obj = obj;
			b[m].line = r.line;
			b[m].msg = rc < 0 ? strdup(p2p_errmsg()) : NULL;
			const cJSON *id = obj ? cJSON_GetObjectItemCaseSensitive(obj, "id") : NULL;
			long first;
			if (!o.to_stdout && cJSON_IsString(id) && id->valuestring
			    && (first = idset_add(&seen, id->valuestring, r.line))) {
				char why[320];
				snprintf(why, sizeof why, "duplicate id '%.200s' (first on line %ld)",
				         id->valuestring, first);
				b[m].msg = located(r.name, r.line, why);
				cJSON_Delete(obj);
				b[m].obj = NULL;
			}
			m++;
		}
		/* Render, write and print them in parallel (messages are per
		 * thread); a second round for those that needed libvips. */
		for (int round = 0, again = 1; again && round < 2; round++) {
			if (round == 1) {
				if (p2p_image_init(argv[0]))
					p2p_die_lib();
				vips_started = 1;
			}
			again = 0;
			#pragma omp parallel for schedule(dynamic, 4) reduction(|:again)
			for (int i = 0; i < m; i++) {
				if (!b[i].obj || b[i].msg || b[i].text || b[i].map)
					continue;
				int rc = do_record(&o, &b[i]);
				if (rc == NEED_VIPS)
					again = 1;
				else if (rc)
					b[i].msg = located(r.name, b[i].line, p2p_errmsg());
				else if (!o.to_stdout && !(b[i].text = cJSON_PrintUnformatted(b[i].obj)))
					b[i].msg = located(r.name, b[i].line, "out of memory");
			}
		}
		if (vips_started)
			vips_error_clear();
		commit_batch(b, m, r.name);
		/* Report and emit in input order. */
		for (int i = 0; i < m; i++) {
			if (b[i].msg) {
				if (o.strict)
					p2p_die(1, "%s", b[i].msg);
				p2p_warn("%s", b[i].msg);
				skipped++;
			} else if (o.to_stdout ? p2p_npy_write("-", P2P_U8, 2,
			                                         (long[]){ b[i].h, b[i].w }, b[i].map)
			                       : (fputs(b[i].text, stdout) == EOF || putchar('\n') == EOF)
			                         && p2p_err_errno("write failed")) {
				p2p_die_lib();
			} else {
				written++;
			}
			cJSON_Delete(b[i].obj);
			free(b[i].msg);
			free(b[i].map);
			free(b[i].text);
			memset(&b[i], 0, sizeof b[i]);
		}
		p2p_progress_update(&bar, written + skipped, NULL);
	}
	p2p_progress_end(&bar);
	p2p_jsonl_close(&r);
	idset_free(&seen);
	free(b);
	free(o.sel);
	p2p_close_stdout();
	p2p_warn("%ld written, %ld skipped", written, skipped);
	return 0;
}
