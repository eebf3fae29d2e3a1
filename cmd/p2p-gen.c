/* p2p-gen: landmark heatmaps (.npy) to cat photos (PNG) with a trained U-Net
 * generator; files to a folder in batches, or one heatmap as a filter. */
#include "cli.h"
#include "err.h"
#include "image.h"
#include "models.h"
#include "npy.h"
#include "ops_cuda.h"
#include "atomic.h"
#include "benchstat.h"
#include "cpu_pool.h"
#include "progress.h"

#include <getopt.h>
#include <glib.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GRID_PAIRS 4        /* heatmap | photo pairs per contact-sheet row */

typedef struct {
	const char *model, *outdir, *grid, *device;
	int stochastic, seed_set;
	uint64_t seed;
	int batch, threads;
	int shard_i, shard_n, shard_set;
	int strict, progress, bench;
	int tf32;               /* TF32 matrix products on the GPU */
	char **inputs;          /* sorted file names, or NULL: the filter */
	int ninputs;
} options;

/* One input on its way through a batch. */
typedef struct {
	const char *path;
	char *out;              /* DIR/STEM.png (files only) */
	uint64_t counter;       /* its dropout masks' counter (--stochastic) */
	char *msg;              /* why it is skipped, or NULL */
	float *heat;            /* S*S values in [0, 1] */
} item;

static void usage(void)
{
	printf("Usage: %s -m G.safetensors [-o DIR] [--stochastic] [--seed N] [--grid FILE.png]\n"
	       "               [--batch N] [--device cpu|cuda] [--no-tf32] [--threads N] [--shard I/N]\n"
	       "               [--strict] [--progress|--quiet] [HEATMAP.npy ... | -]\n"
	       "Turn landmark heatmaps into images with a trained generator: DIR/STEM.png\n"
	       "for each HEATMAP.npy, or with '-' (or no file) one .npy on stdin to a PNG on stdout.\n"
	       "  -m, --model FILE    the generator (G_best.safetensors or a training checkpoint)\n"
	       "  -o, --out DIR       folder for the images (created if missing); needed for files\n"
	       "      --stochastic    keep dropout on: another --seed, another image\n"
	       "      --seed N        dropout seed for --stochastic (default 0)\n"
	       "      --grid FILE     also write a contact sheet: heatmap | image pairs\n"
	       "  -b, --batch N       images per forward pass (default 8)\n"
	       "      --device D      cpu (default) or cuda\n"
	       "      --no-tf32       strict FP32 matrix products on the GPU (TF32 is the default)\n"
	       "  -t, --threads N     worker threads (default: all cores)\n"
	       "      --shard I/N     only inputs I, I+N, ... of the sorted list (0-based)\n"
	       "      --strict        stop at the first bad heatmap (exit 1)\n"
	       "      --progress, --quiet   force the progress bar on or off\n"
	       "      --bench         at the end, the forward passes' speed as JSON on stderr\n"
	       "  -h, --help, --version\n", p2p_prog);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int has_ext(const char *s, const char *ext)
{
	size_t n = strlen(s), e = strlen(ext);
	return n > e && strcasecmp(s + n - e, ext) == 0;
}

static int has_image_ext(const char *s)
{
	return has_ext(s, ".png") || has_ext(s, ".jpg") || has_ext(s, ".jpeg");
}

static void parse_args(int argc, char **argv, options *o)
{
	enum { O_STOCH = 256, O_SEED, O_GRID, O_DEVICE, O_SHARD, O_STRICT, O_PROGRESS,
	       O_QUIET, O_NOTF32, O_BENCH };
	static const struct option longs[] = {
		{ "model", required_argument, 0, 'm' },
		{ "out", required_argument, 0, 'o' },
		{ "stochastic", no_argument, 0, O_STOCH },
		{ "seed", required_argument, 0, O_SEED },
		{ "grid", required_argument, 0, O_GRID },
		{ "batch", required_argument, 0, 'b' },
		{ "device", required_argument, 0, O_DEVICE },
		{ "no-tf32", no_argument, 0, O_NOTF32 },
		{ "threads", required_argument, 0, 't' },
		{ "shard", required_argument, 0, O_SHARD },
		{ "strict", no_argument, 0, O_STRICT },
		{ "progress", no_argument, 0, O_PROGRESS },
		{ "quiet", no_argument, 0, O_QUIET },
		{ "help", no_argument, 0, 'h' },
		{ "version", no_argument, 0, P2P_OPT_VERSION },
		{ "bench", no_argument, 0, O_BENCH },
		{ 0, 0, 0, 0 }
	};
	memset(o, 0, sizeof *o);
	o->batch = 8;
	o->device = "cpu";
	o->progress = -1;
	o->tf32 = 1;
	p2p_shard_default(&o->shard_i, &o->shard_n);
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":m:o:b:t:h", longs, NULL)) != -1) {
		switch (c) {
		case 'm': o->model = optarg; break;
		case 'o': o->outdir = optarg; break;
		case O_STOCH: o->stochastic = 1; break;
		case O_SEED:
			o->seed = (uint64_t)p2p_opt_long("--seed", optarg, 0, 0x7fffffffffffffffL);
			o->seed_set = 1;
			break;
		case O_GRID: o->grid = optarg; break;
		case 'b': o->batch = (int)p2p_opt_long("--batch", optarg, 1, 1024); break;
		case O_DEVICE:
			if (strcmp(optarg, "cpu") != 0 && strcmp(optarg, "cuda") != 0)
				p2p_usage_error("--device: cpu or cuda, not '%s'", optarg);
			o->device = optarg;
			break;
		case O_NOTF32: o->tf32 = 0; break;
		case 't': o->threads = (int)p2p_opt_long("--threads", optarg, 1, 1024); break;
		case O_SHARD:
			p2p_opt_shard(optarg, &o->shard_i, &o->shard_n);
			o->shard_set = 1;
			break;
		case O_STRICT: o->strict = 1; break;
		case O_PROGRESS: o->progress = 1; break;
		case O_QUIET: o->progress = 0; break;
		case O_BENCH: o->bench = 1; break;
		default: p2p_opt_other(c, argv, usage);
		}
	}
	if (!o->model || !*o->model)
		p2p_usage_error("-m G.safetensors is required");
	if (o->seed_set && !o->stochastic)
		p2p_usage_error("--seed only matters with --stochastic (dropout is off without it)");
	if (o->grid && !has_image_ext(o->grid))
		p2p_usage_error("--grid: a .png or .jpg file name, not '%s'", o->grid);
	int nfiles = argc - optind;
	int filter = nfiles == 0 || (nfiles == 1 && strcmp(argv[optind], "-") == 0);
	if (filter) {
		if (o->outdir)
			p2p_usage_error("'-' writes the image to stdout: -o DIR is for files");
		if (o->shard_set)
			p2p_usage_error("--shard splits a list of files; '-' is one input");
		o->shard_i = 0, o->shard_n = 1;
		return;
	}
	for (int i = optind; i < argc; i++)
		if (strcmp(argv[i], "-") == 0)
			p2p_usage_error("'-' must be the only input");
	if (!o->outdir || !*o->outdir)
		p2p_usage_error("-o DIR is required for files (or read one heatmap from '-')");
	o->ninputs = nfiles;
	o->inputs = malloc(nfiles * sizeof *o->inputs);
	if (!o->inputs)
		p2p_die(1, "out of memory");
	memcpy(o->inputs, argv + optind, nfiles * sizeof *o->inputs);
	qsort(o->inputs, nfiles, sizeof *o->inputs, cmp_str);
}

/* ---- reading and writing on the CPU backend's pool, whose workers sleep
 * between jobs: OpenMP's spin for milliseconds after a loop, on the cores
 * the next batch's GEMMs want ---- */

typedef struct {
	item *it;
	const int *ok;          /* save: batch row q is it[ok[q]] */
	int S, oc;
	size_t plane;
	const float *hy;
} io_job;

static int read_heat(const char *path, int S, float **out);
static int save_image(const char *path, const float *y, int c, int S);

static void read_range(void *ctx, long j0, long j1)
{
	io_job *b = ctx;
	for (long j = j0; j < j1; j++)
		if (!b->it[j].msg && read_heat(b->it[j].path, b->S, &b->it[j].heat) != 0)
			b->it[j].msg = strdup(p2p_errmsg());
}

static void save_range(void *ctx, long q0, long q1)
{
	io_job *b = ctx;
	for (long q = q0; q < q1; q++) {
		item *t = &b->it[b->ok[q]];
		if (save_image(t->out, b->hy + q * b->oc * b->plane, b->oc, b->S) != 0)
			t->msg = strdup(p2p_errmsg());
	}
}

/* ---- the generator ---- */

/* G from a file's metadata and weights: plain names (G_best) or "G."
 * prefixed ones (a training checkpoint). */
static p2p_unet *load_generator(const p2p_backend *be, const char *path, int batch)
{
	p2p_st *st = p2p_st_read(path);
	if (!st)
		return NULL;
	p2p_unet_cfg cfg;
	p2p_unet *g = NULL;
	float *host = NULL;
	if (p2p_unet_meta_read(st, path, &cfg) != 0)
		goto out;
	if (cfg.in_ch != 1 || (cfg.out_ch != 3 && cfg.out_ch != 1)) {
		p2p_err("%s: a generator from %d to %d channels; p2p-gen needs 1 to 3 (or 1)",
		        path, cfg.in_ch, cfg.out_ch);
		goto out;
	}
	if (!(g = p2p_unet_new(be, &cfg, batch)))
		goto out;
	p2p_params *ps = p2p_unet_params(g);
	const char *prefix = !p2p_st_get(st, ps->name[0], NULL, NULL, NULL) &&
	                     p2p_st_get(st, "G.down.0.weight", NULL, NULL, NULL) ? "G." : "";
	if (!(host = malloc(ps->total * sizeof *host))) {
		p2p_err("%s: out of memory", path);
		goto fail;
	}
	if (p2p_st_load_params(st, ps, prefix, host) != 0)
		goto fail;
	for (size_t i = 0; i < ps->total; i++)
		if (!isfinite(host[i])) {
			p2p_err("%s: the weights hold a NaN or infinity", path);
			goto fail;
		}
	be->upload(ps->data, host, ps->total);
	p2p_unet_weights_fixed(g, 1);
	goto out;
fail:
	p2p_unet_free(g);
	g = NULL;
out:
	free(host);
	p2p_st_free(st);
	return g;
}

/* ---- inputs and outputs ---- */

static const char *base_name(const char *path)
{
	const char *s = strrchr(path, '/');
	return s ? s + 1 : path;
}

/* DIR/STEM.png for DIR/.../STEM.npy */
static char *out_path(const char *dir, const char *path)
{
	const char *b = base_name(path);
	size_t n = strlen(b);
	if (n > 4 && strcmp(b + n - 4, ".npy") == 0)
		n -= 4;
	size_t dn = strlen(dir), len = dn + n + 6;
	char *p = malloc(len);
	if (!p)
		p2p_die(1, "out of memory");
	snprintf(p, len, "%s%s%.*s.png", dir, dn && dir[dn - 1] == '/' ? "" : "/", (int)n, b);
	return p;
}

/* A file's dropout counter: from its name, so a file gets the same image
 * whatever else is on the command line and whichever shard runs it. */
static uint64_t name_counter(const char *path)
{
	uint64_t h = 1469598103934665603ULL;
	for (const unsigned char *s = (const unsigned char *)base_name(path); *s; s++)
		h = (h ^ *s) * 1099511628211ULL;
	return p2p_mix64(h);
}

/* Two inputs with one stem (a/x.npy, b/x.npy) would write one file: the
 * first in sorted order wins, this shard's others are marked as skipped. */
typedef struct {
	char *out;
	int i;
} named;

static int cmp_named(const void *a, const void *b)
{
	const named *x = a, *y = b;
	int c = strcmp(x->out, y->out);
	return c ? c : (x->i > y->i) - (x->i < y->i);
}

static void mark_same_names(const options *o, item *items)
{
	named *nm = malloc(o->ninputs * sizeof *nm);
	if (!nm)
		p2p_die(1, "out of memory");
	for (int i = 0; i < o->ninputs; i++)
		nm[i] = (named){out_path(o->outdir, o->inputs[i]), i};
	qsort(nm, o->ninputs, sizeof *nm, cmp_named);
	for (int k = 1, first = 0; k < o->ninputs; k++) {
		if (strcmp(nm[k].out, nm[first].out) != 0) {
			first = k;
			continue;
		}
		if (nm[k].i % o->shard_n != o->shard_i)
			continue;
		item *t = &items[nm[k].i / o->shard_n];   /* this shard's items, in order */
		const char *was = o->inputs[nm[first].i];
		size_t n = strlen(t->path) + strlen(was) + 40;
		if (!(t->msg = malloc(n)))
			p2p_die(1, "out of memory");
		snprintf(t->msg, n, "%s: same output name as %s", t->path, was);
	}
	for (int i = 0; i < o->ninputs; i++)
		free(nm[i].out);
	free(nm);
}

/* Read one heatmap and check it against the model's side S. */
static int read_heat(const char *path, int S, float **out)
{
	int h, w;
	float *f;
	const char *name = strcmp(path, "-") ? path : "stdin";
	if (p2p_heatmap_read(path, &h, &w, &f) != 0)
		return -1;
	if (h != S || w != S) {
		free(f);
		return p2p_err("%s: %dx%d heatmap, the model is %dx%d", name, w, h, S, S);
	}
	for (size_t i = 0; i < (size_t)S * S; i++)
		if (f[i] < 0 || f[i] > 1) {
			p2p_err("%s: value %g at row %zu, column %zu is outside [0, 1]", name, f[i],
			        i / S, i % S);
			free(f);
			return -1;
		}
	*out = f;
	return 0;
}

/* [-1, 1] -> 0..255 as the trainer's images: round((y + 1) * 127.5), clamped. */
static unsigned char to_byte(float y)
{
	float v = nearbyintf((y + 1) * 127.5f);
	return v < 0 ? 0 : v > 255 ? 255 : (unsigned char)v;
}

/* y (c, S, S) planar -> interleaved RGB (grey to RGB when c is 1) at px,
 * rows stride bytes apart. */
static void put_image(unsigned char *px, long stride, const float *y, int c, int S)
{
	for (int r = 0; r < S; r++)
		for (int x = 0; x < S; x++)
			for (int k = 0; k < 3; k++)
				px[r * stride + 3 * x + k] = to_byte(y[((long)(c == 1 ? 0 : k) * S + r) * S + x]);
}

static void put_heat(unsigned char *px, long stride, const float *h, int S)
{
	for (int r = 0; r < S; r++)
		for (int x = 0; x < S; x++) {
			unsigned char v = (unsigned char)nearbyintf(h[(long)r * S + x] * 255);
			px[r * stride + 3 * x] = px[r * stride + 3 * x + 1] = px[r * stride + 3 * x + 2] = v;
		}
}

/* Encode and write one image (the file atomically, or stdout). */
static int save_image(const char *path, const float *y, int c, int S)
{
	p2p_image img;
	if (p2p_image_alloc(&img, S, S, 3) != 0)
		return -1;
	put_image(img.px, 3L * S, y, c, S);
	int rc;
	if (path) {
		rc = p2p_image_save(path, &img, 95);
	} else {
		void *buf;
		size_t n;
		rc = p2p_image_encode(&img, ".png", 95, &buf, &n);
		if (rc == 0) {
			if (fwrite(buf, 1, n, stdout) != n)
				rc = p2p_err("stdout: write failed");
			g_free(buf);
		}
	}
	p2p_image_free(&img);
	return rc;
}

/* ---- the contact sheet ---- */

typedef struct {
	p2p_image img;
	int S, cols, used;
} sheet;

static void sheet_init(sheet *g, int S, int count)
{
	g->S = S;
	g->used = 0;
	g->cols = count < GRID_PAIRS ? count : GRID_PAIRS;
	int rows = (count + g->cols - 1) / g->cols;
	if (p2p_image_alloc(&g->img, 2 * S * g->cols, S * rows, 3) != 0)
		p2p_die_lib();
}

static void sheet_add(sheet *g, const float *heat, const float *y, int c)
{
	int S = g->S, row = g->used / g->cols, col = g->used % g->cols;
	long stride = 3L * g->img.w;
	unsigned char *px = g->img.px + (long)row * S * stride + 3L * 2 * S * col;
	put_heat(px, stride, heat, S);
	put_image(px + 3L * S, stride, y, c, S);
	g->used++;
}

/* Drop the rows no image reached (skipped inputs), then write. */
static int sheet_save(sheet *g, const char *path)
{
	int rows = (g->used + g->cols - 1) / g->cols;
	if (rows == 0)
		return p2p_err("%s: no image to put on the sheet", path);
	g->img.h = rows * g->S;
	return p2p_image_save(path, &g->img, 95);
}

/* ---- the run ---- */

int main(int argc, char **argv)
{
	p2p_cli_init(argv[0]);
	options o;
	parse_args(argc, argv, &o);
	int filter = o.inputs == NULL;
	if (p2p_image_init(argv[0]) != 0)
		p2p_die_lib();
	p2p_cuda_set_tf32(o.tf32);
	const p2p_backend *be = p2p_backend_get(o.device);
	if (!be)
		p2p_die_lib();
	if (o.threads && be->set_threads)
		be->set_threads(o.threads);

	/* this shard's inputs, in sorted order */
	int count = 0;
	item *items = calloc(filter ? 1 : o.ninputs, sizeof *items);
	if (!items)
		p2p_die(1, "out of memory");
	if (filter)
		items[count++].path = "-";
	for (int i = 0; i < o.ninputs; i++)
		if (i % o.shard_n == o.shard_i)
			items[count++].path = o.inputs[i];
	int batch = count < o.batch ? (count ? count : 1) : o.batch;

	p2p_unet *g = load_generator(be, o.model, batch);
	if (!g)
		p2p_die_lib();
	const p2p_unet_cfg *cfg = p2p_unet_config(g);
	int S = cfg->size, oc = cfg->out_ch;
	size_t plane = (size_t)S * S;
	if (!filter && p2p_mkdirs(o.outdir) != 0)
		p2p_die_lib();
	for (int i = 0; i < count; i++) {
		items[i].counter = name_counter(items[i].path);
		if (!filter)
			items[i].out = out_path(o.outdir, items[i].path);
	}
	if (!filter)
		mark_same_names(&o, items);

	float *hx = malloc(batch * plane * sizeof *hx);
	float *hy = malloc(batch * oc * plane * sizeof *hy);
	float *dxb = be->alloc(batch * plane);
	uint64_t *counters = malloc(batch * sizeof *counters);
	int *ok = malloc(batch * sizeof *ok);
	if (!hx || !hy || !dxb || !counters || !ok)
		p2p_die(1, "out of memory");
	sheet sh = {0};
	if (o.grid)
		sheet_init(&sh, S, count ? count : 1);

	p2p_bench bench = {0};
	p2p_progress bar;
	p2p_progress_start(&bar, "p2p-gen", count, p2p_want_progress(filter ? 0 : o.progress));
	long written = 0, skipped = 0;
	for (int b0 = 0; b0 < count; b0 += batch) {
		int m = count - b0 < batch ? count - b0 : batch;
		item *it = items + b0;
		io_job rj = { it, NULL, S, oc, plane, NULL };
		p2p_pool_run(m, p2p_pool_threads(), read_range, &rj);
		int n = 0;
		for (int j = 0; j < m; j++) {
			if (it[j].msg) {
				if (o.strict || filter)
					p2p_die(1, "%s", it[j].msg);
				p2p_warn("%s", it[j].msg);
				skipped++;
				continue;
			}
			for (size_t q = 0; q < plane; q++)
				hx[n * plane + q] = it[j].heat[q] * 2 - 1;
			counters[n] = it[j].counter;
			ok[n++] = j;
		}
		if (n > 0) {
			if (o.bench)
				p2p_bench_begin(&bench);
			be->upload(dxb, hx, n * plane);
			const float *y = o.stochastic
			                 ? p2p_unet_forward_each(g, dxb, n, o.seed, counters)
			                 : p2p_unet_forward(g, dxb, n, 0, 0, 0);
			if (!y || (be->status && be->status() != 0))
				p2p_die_lib();
			be->download(hy, y, n * oc * plane);
			if (o.bench)
				p2p_bench_end(&bench, n);
			if (filter) {
				if (save_image(NULL, hy, oc, S) != 0)
					p2p_die_lib();
			} else {
				io_job sj = { it, ok, S, oc, plane, hy };
				p2p_pool_run(n, p2p_pool_threads(), save_range, &sj);
			}
			for (int q = 0; q < n; q++) {
				item *t = &it[ok[q]];
				if (t->msg) {
					if (o.strict)
						p2p_die(1, "%s", t->msg);
					p2p_warn("%s", t->msg);
					skipped++;
					continue;
				}
				if (o.grid)
					sheet_add(&sh, t->heat, hy + q * oc * plane, oc);
				written++;
			}
		}
		for (int j = 0; j < m; j++) {
			free(it[j].heat);
			it[j].heat = NULL;
		}
		p2p_progress_update(&bar, b0 + m, NULL);
	}
	p2p_progress_end(&bar);
	if (o.grid && sheet_save(&sh, o.grid) != 0)
		p2p_die_lib();
	if (filter)
		p2p_close_stdout();
	p2p_warn("%ld written, %ld skipped", written, skipped);
	if (o.bench) {
		int threads = o.threads ? o.threads : strcmp(be->name, "cpu") == 0 ? p2p_pool_threads() : 0;
		char *js = p2p_bench_json(&bench, "p2p-gen", (double)p2p_unet_flops(g), threads);
		if (!js)
			p2p_die(1, "out of memory");
		fprintf(stderr, "%s\n", js);
		free(js);
		p2p_bench_free(&bench);
	}

	p2p_image_free(&sh.img);
	for (int i = 0; i < count; i++) {
		free(items[i].out);
		free(items[i].msg);
	}
	free(items);
	free(hx), free(hy), free(counters), free(ok);
	be->free(dxb);
	p2p_unet_free(g);
	free(o.inputs);
	return 0;
}
