/* Conv2d and ConvTranspose2d as im2col/col2im plus one GEMM per chunk of
 * images. With one image per chunk the GEMM writes NCHW directly; with
 * several (small spatial sizes, where a one-image GEMM would be too thin to
 * run fast) the batch's columns sit side by side and a swap01 turns the
 * (C, N, P) product into (N, C, P).
 *
 * A large image is split further, into runs of whole rows of the column
 * grid, when the backend has im2col_rows/col2im_rows: a whole image's
 * columns (150 MB for VGG's 64->64 layer at 256x256) would be written to
 * memory by im2col and read back by the GEMM, where a chunk's stay in the
 * core's cache; the GEMM reads and writes its rows of the image in place
 * (row stride P). */
#include <stddef.h>
#include <string.h>

#include "err.h"
#include "layers.h"

/* A chunk's GEMM gets at least this many columns when the batch allows
 * (bench/conv measures the choice; -DCHUNK_COLS=N to try another), unless
 * the backend asks for another number (conv_chunk_cols). */
#ifndef CHUNK_COLS
#define CHUNK_COLS 1024
#endif

static int geom(p2p_conv *g, int n, int cin, int h, int w, int cout, int k,
                int stride, int pad, int transposed)
{
	g->n = n, g->cin = cin, g->h = h, g->w = w;
	g->cout = cout, g->k = k, g->stride = stride, g->pad = pad;
	g->transposed = transposed;
	if (n < 1 || cin < 1 || h < 1 || w < 1 || cout < 1 || k < 1 || stride < 1 || pad < 0)
		return p2p_err("conv: bad geometry n %d cin %d h %d w %d cout %d k %d stride %d pad %d",
		               n, cin, h, w, cout, k, stride, pad);
	if (transposed) {
		g->oh = (h - 1) * stride - 2 * pad + k;
		g->ow = (w - 1) * stride - 2 * pad + k;
	} else {
		g->oh = h + 2 * pad >= k ? (h + 2 * pad - k) / stride + 1 : 0;
		g->ow = w + 2 * pad >= k ? (w + 2 * pad - k) / stride + 1 : 0;
	}
	if (g->oh < 1 || g->ow < 1)
		return p2p_err("conv: %dx%d input gives an empty output (k %d stride %d pad %d)",
		               h, w, k, stride, pad);
	return 0;
}

int p2p_conv2d_init(p2p_conv *g, int n, int cin, int h, int w,
                    int cout, int k, int stride, int pad)
{
	return geom(g, n, cin, h, w, cout, k, stride, pad, 0);
}

int p2p_convt2d_init(p2p_conv *g, int n, int cin, int h, int w,
                     int cout, int k, int stride, int pad)
{
	return geom(g, n, cin, h, w, cout, k, stride, pad, 1);
}

/* Columns per image of the GEMM, rows of the im2col matrix, and the
 * channels of the tensor that is transposed when a chunk holds several images. */
static long gemm_cols(const p2p_conv *g)
{
	return g->transposed ? (long)g->h * g->w : (long)g->oh * g->ow;
}

static long col_rows(const p2p_conv *g)
{
	return (long)(g->transposed ? g->cout : g->cin) * g->k * g->k;
}

/* The grid of the GEMM's columns: the output for Conv2d, the input for
 * ConvTranspose2d. */
static int grid_h(const p2p_conv *g) { return g->transposed ? g->h : g->oh; }
static int grid_w(const p2p_conv *g) { return g->transposed ? g->w : g->ow; }

static long swap_chans(const p2p_conv *g)
{
	return g->transposed ? g->cin : g->cout;
}

static size_t ws_need(const p2p_conv *g, int nb)
{
	size_t cols = (size_t)nb * gemm_cols(g);
	return cols * col_rows(g) + (nb > 1 ? cols * swap_chans(g) : 0);
}

static int chunk_pref(const p2p_conv *g, long chunk_cols)
{
	long p = gemm_cols(g);
	long nb = (chunk_cols + p - 1) / p;
	return nb < g->n ? (int)nb : g->n;
}

/* The largest chunk up to the preferred one that fits ws_n; 0 if none. */
static int chunk_fit(const p2p_conv *g, size_t ws_n, long chunk_cols)
{
	int nb = chunk_pref(g, chunk_cols);
	while (nb > 0 && ws_need(g, nb) > ws_n)
		nb--;
	if (nb == 0)
		p2p_err("conv: workspace of %zu floats, %zu needed", ws_n, ws_need(g, 1));
	return nb;
}

/* The chunk for g on be, and its workspace: the backend's own where it has
 * one (*ws, *ws_n replaced), else the caller's. */
static int chunk_for(const p2p_backend *be, const p2p_conv *g, float **ws, size_t *ws_n)
{
	long cols = be->conv_chunk_cols > 0 ? be->conv_chunk_cols : CHUNK_COLS;
	if (be->conv_ws) {
		size_t got = 0;
		float *w = be->conv_ws(ws_need(g, 1), ws_need(g, chunk_pref(g, cols)), &got);
		if (w) {
			*ws = w;
			*ws_n = got;
		}
	}
	return chunk_fit(g, *ws_n, cols);
}

/* Grid rows per chunk within one image: about CHUNK_BYTES of columns
 * (half a core's L2 here), and at least MIN_COLS columns and DEPTH_COLS
 * times the weight's other dimension (cout for Conv2d, cin for ConvTranspose2d).
 * Each chunk's GEMM packs the whole weight again, a cost of 1/cols of the
 * arithmetic, while keeping the columns in cache saves about 1/that
 * dimension of it: D's 256->512 layer (K 4096) lost 10 % with 256-column
 * chunks. bench/conv measures the choice; -DCHUNK_BYTES=N, -DMIN_COLS=N,
 * -DDEPTH_COLS=N to try others. */
#ifndef CHUNK_BYTES
#define CHUNK_BYTES (512 * 1024)
#endif
#ifndef MIN_COLS
#define MIN_COLS 256
#endif
#ifndef DEPTH_COLS
#define DEPTH_COLS 2
#endif

static int rows_per_chunk(const p2p_backend *be, const p2p_conv *g)
{
	int gh = grid_h(g);
	if (!be->im2col_rows || !be->col2im_rows)
		return gh;
	long cols = CHUNK_BYTES / (long)(sizeof(float) * col_rows(g));
	long depth = DEPTH_COLS * (long)(g->transposed ? g->cin : g->cout);
	cols = cols < MIN_COLS ? MIN_COLS : cols;
	cols = cols < depth ? depth : cols;
	long r = cols / grid_w(g);
	return r < 1 ? 1 : r > gh ? gh : (int)r;
}

/* im2col of grid rows [r0, r1) of one image src (c, ih, iw) into col; the
 * whole-image op when the chunk is the whole image. */
static void gather(const p2p_backend *be, const p2p_conv *g, const float *src, int c,
                   int ih, int iw, int r0, int r1, float *col)
{
	if (r0 == 0 && r1 == grid_h(g))
		be->im2col(src, 1, c, ih, iw, g->k, g->stride, g->pad, grid_h(g), grid_w(g), col);
	else
		be->im2col_rows(src, c, ih, iw, g->k, g->stride, g->pad, grid_h(g), grid_w(g),
		                r0, r1, col);
}

/* dst (c, ih, iw) += the adjoint of gather */
static void scatter(const p2p_backend *be, const p2p_conv *g, const float *col, int c,
                    int ih, int iw, int r0, int r1, float *dst)
{
	if (r0 == 0 && r1 == grid_h(g))
		be->col2im(col, 1, c, ih, iw, g->k, g->stride, g->pad, grid_h(g), grid_w(g), dst);
	else
		be->col2im_rows(col, c, ih, iw, g->k, g->stride, g->pad, grid_h(g), grid_w(g),
		                r0, r1, dst);
}

size_t p2p_conv_ws(const p2p_conv *g) { return ws_need(g, chunk_pref(g, CHUNK_COLS)); }
size_t p2p_conv_ws_min(const p2p_conv *g) { return ws_need(g, 1); }

size_t p2p_conv_flops(const p2p_conv *g)
{
	return 2 * (size_t)g->n * g->cin * g->cout * g->k * g->k * gemm_cols(g);
}

/* ---- one image per GEMM: the batch's images in chunks of grid rows ----
 *
 * The chunks of all images form one sequence of items. Where the backend
 * has `parallel`, threads take items as they come free, each with its own
 * columns (a slot of the workspace) and a single-threaded GEMM: one
 * hand-over per layer instead of a synchronisation inside every GEMM,
 * which on a busy machine waits for a descheduled thread each time.
 *
 * Results must not depend on which thread does what, nor on how many:
 * - forward Conv2d writes each chunk's own outputs: any order;
 * - where chunks add into shared memory (col2im's overlapping rows, the
 *   weight gradient) the sequence is cut into a fixed number of groups of
 *   consecutive chunks, each done in order by one thread. Groups that
 *   scatter run in two phases, even then odd, so that no two at work at
 *   once touch the same rows (every group spans enough rows for that);
 *   the weight gradient of group 0 adds into dw, those of the others into
 *   partial sums of their own, added to dw in group order at the end. */

#ifndef MAX_GROUPS
#define MAX_GROUPS 8
#endif
#define MAX_SLOTS 16

typedef struct {
	const p2p_backend *be;
	const p2p_conv *g;
	float *y, *dx, *dw;
	const float *x, *w, *dy;
	float *ws, *part;
	size_t chunk_n, part_n;     /* floats of a slot's columns, of a partial dw */
	int rows, per_image;        /* grid rows per chunk, chunks per image */
	long items;                 /* chunks in all */
	int groups, phase;          /* phase -1: all groups at once */
	int slots;
} chunk_job;

/* Chunk i: image *img, grid rows [*r0, *r1). */
static void chunk_at(const chunk_job *j, long i, int *img, int *r0, int *r1)
{
	int gh = grid_h(j->g);
	*img = (int)(i / j->per_image);
	*r0 = (int)(i % j->per_image) * j->rows;
	*r1 = *r0 + j->rows < gh ? *r0 + j->rows : gh;
}

static void job_init(chunk_job *j, const p2p_backend *be, const p2p_conv *g, float *ws,
                     size_t ws_n, int partials, int scatters)
{
	memset(j, 0, sizeof *j);
	j->be = be, j->g = g, j->ws = ws;
	int gh = grid_h(g);
	j->rows = rows_per_chunk(be, g);
	j->per_image = (gh + j->rows - 1) / j->rows;
	j->items = (long)g->n * j->per_image;
	j->chunk_n = (size_t)col_rows(g) * j->rows * grid_w(g);
	j->part_n = partials ? (size_t)col_rows(g) * (g->transposed ? g->cin : g->cout) : 0;
	/* groups: at most MAX_GROUPS, each of at least `need` grid rows when
	 * they scatter (then g and g+2 never meet), and their partial sums
	 * beside one slot's columns in the workspace */
	int need = scatters ? (g->k + g->stride - 1) / g->stride - 1 : 1;
	long per = need < 1 ? 1 : (need + j->rows - 1) / j->rows;   /* chunks per group */
	long gr = j->items / per;
	gr = gr < MAX_GROUPS ? gr : MAX_GROUPS;
	while (gr > 1 && (gr - 1) * j->part_n + j->chunk_n > ws_n)
		gr--;
	j->groups = gr < 1 ? 1 : (int)gr;
	size_t left = ws_n - (j->groups - 1) * j->part_n;
	j->part = ws + left;                    /* the partials sit at the end */
	long sl = left / j->chunk_n;
	j->slots = sl < 1 ? 1 : sl > MAX_SLOTS ? MAX_SLOTS : (int)sl;
}

static void run_items(chunk_job *j, long n, void (*fn)(void *, long, int))
{
	if (j->be->parallel && n > 1)
		j->be->parallel(n, j->slots, fn, j);
	else
		for (long i = 0; i < n; i++)
			fn(j, i, 0);
}

/* Every group through fn (in two phases when they scatter), then the
 * partial weight gradients into dw in group order. */
static void run_groups(chunk_job *j, void (*fn)(void *, long, int), int scatters)
{
	if (!scatters || j->groups == 1) {
		j->phase = -1;
		run_items(j, j->groups, fn);
	} else {
		for (j->phase = 0; j->phase < 2; j->phase++)
			run_items(j, (j->groups + 1 - j->phase) / 2, fn);
	}
	if (j->dw)
		for (int gi = 1; gi < j->groups; gi++)
			j->be->axpy(j->dw, j->part + (gi - 1) * j->part_n, j->part_n, 1);
}

/* Group item i of the current phase: its chunks [*c0, *c1) and the dw it
 * adds into (with beta for its first chunk). */
static int group_at(const chunk_job *j, long i, long *c0, long *c1, float **dw)
{
	int gi = j->phase < 0 ? (int)i : 2 * (int)i + j->phase;
	*c0 = j->items * gi / j->groups;
	*c1 = j->items * (gi + 1) / j->groups;
	if (dw)
		*dw = gi == 0 ? j->dw : j->part + (gi - 1) * j->part_n;
	return gi;
}

static void conv_fwd_item(void *ctx, long i, int slot)
{
	const chunk_job *j = ctx;
	const p2p_conv *g = j->g;
	int img, r0, r1;
	chunk_at(j, i, &img, &r0, &r1);
	long p = gemm_cols(g), kk = col_rows(g), cols = (long)(r1 - r0) * grid_w(g);
	float *col = j->ws + slot * j->chunk_n;
	gather(j->be, g, j->x + (size_t)img * g->cin * g->h * g->w, g->cin, g->h, g->w, r0, r1, col);
	/* y[:, chunk] (cout, cols) = w (cout, kk) * col (kk, cols), row stride p */
	j->be->gemm(0, 0, g->cout, cols, kk, 1, j->w, kk, col, cols, 0,
	            j->y + (size_t)img * g->cout * p + (long)r0 * grid_w(g), p);
}

static void conv_bwd_group(void *ctx, long i, int slot)
{
	const chunk_job *j = ctx;
	const p2p_conv *g = j->g;
	long c0, c1, p = gemm_cols(g), kk = col_rows(g);
	float *dw, *col = j->ws + slot * j->chunk_n;
	int gi = group_at(j, i, &c0, &c1, j->dw ? &dw : NULL);
	for (long c = c0; c < c1; c++) {
		int img, r0, r1;
		chunk_at(j, c, &img, &r0, &r1);
		long cols = (long)(r1 - r0) * grid_w(g);
		const float *d = j->dy + (size_t)img * g->cout * p + (long)r0 * grid_w(g);
		size_t xs = (size_t)img * g->cin * g->h * g->w;
		if (j->dw) {
			/* dw (cout, kk) += dy (cout, cols) * col^T (cols, kk) */
			gather(j->be, g, j->x + xs, g->cin, g->h, g->w, r0, r1, col);
			j->be->gemm(0, 1, g->cout, kk, cols, 1, d, p, col, cols,
			            gi > 0 && c == c0 ? 0 : 1, dw, kk);
		}
		if (j->dx) {
			/* dcol (kk, cols) = w^T (kk, cout) * dy (cout, cols), then scatter */
			j->be->gemm(1, 0, kk, cols, g->cout, 1, j->w, kk, d, p, 0, col, cols);
			scatter(j->be, g, col, g->cin, g->h, g->w, r0, r1, j->dx + xs);
		}
	}
}

static void convt_fwd_group(void *ctx, long i, int slot)
{
	const chunk_job *j = ctx;
	const p2p_conv *g = j->g;
	long c0, c1, p = gemm_cols(g), kk = col_rows(g);
	float *col = j->ws + slot * j->chunk_n;
	group_at(j, i, &c0, &c1, NULL);
	for (long c = c0; c < c1; c++) {
		int img, r0, r1;
		chunk_at(j, c, &img, &r0, &r1);
		long cols = (long)(r1 - r0) * grid_w(g);
		/* col (cout*k*k, cols) = w^T (cout*k*k, cin) * x[:, chunk] (cin, cols) */
		j->be->gemm(1, 0, kk, cols, g->cin, 1, j->w, kk,
		            j->x + (size_t)img * g->cin * p + (long)r0 * grid_w(g), p, 0, col, cols);
		scatter(j->be, g, col, g->cout, g->oh, g->ow, r0, r1,
		        j->y + (size_t)img * g->cout * g->oh * g->ow);
	}
}

static void convt_bwd_group(void *ctx, long i, int slot)
{
	const chunk_job *j = ctx;
	const p2p_conv *g = j->g;
	long c0, c1, p = gemm_cols(g), kk = col_rows(g);
	float *dw, *col = j->ws + slot * j->chunk_n;
	int gi = group_at(j, i, &c0, &c1, j->dw ? &dw : NULL);
	for (long c = c0; c < c1; c++) {
		int img, r0, r1;
		chunk_at(j, c, &img, &r0, &r1);
		long cols = (long)(r1 - r0) * grid_w(g), off = (long)r0 * grid_w(g);
		size_t xs = (size_t)img * g->cin * p;
		/* dcol (cout*k*k, cols): dy gathered the way forward scattered */
		gather(j->be, g, j->dy + (size_t)img * g->cout * g->oh * g->ow, g->cout, g->oh, g->ow,
		       r0, r1, col);
		if (j->dw)   /* dw (cin, cout*k*k) += x (cin, cols) * dcol^T (cols, cout*k*k) */
			j->be->gemm(0, 1, g->cin, kk, cols, 1, j->x + xs + off, p, col, cols,
			            gi > 0 && c == c0 ? 0 : 1, dw, kk);
		if (j->dx)   /* dx (cin, cols) += w (cin, cout*k*k) * dcol (cout*k*k, cols) */
			j->be->gemm(0, 0, g->cin, cols, kk, 1, j->w, kk, col, cols, 1,
			            j->dx + xs + off, p);
	}
}

/* ---- the layers: chunks of images ---- */

int p2p_conv2d_forward(const p2p_backend *be, const p2p_conv *g, float *y,
                       const float *x, const float *w, const float *b,
                       float *ws, size_t ws_n)
{
	int nb = chunk_for(be, g, &ws, &ws_n);
	if (!nb)
		return -1;
	long p = gemm_cols(g), kk = col_rows(g);
	long xs = (long)g->cin * g->h * g->w, ys = (long)g->cout * p;
	if (nb == 1) {
		chunk_job j;
		job_init(&j, be, g, ws, ws_n, 0, 0);
		j.y = y, j.x = x, j.w = w;
		run_items(&j, j.items, conv_fwd_item);
	}
	for (int i0 = 0; i0 < g->n && nb > 1; i0 += nb) {
		int m = g->n - i0 < nb ? g->n - i0 : nb;
		long cols = m * p;
		float *col = ws, *tmp = ws + kk * cols;
		be->im2col(x + i0 * xs, m, g->cin, g->h, g->w, g->k, g->stride, g->pad,
		           g->oh, g->ow, col);
		/* tmp (cout, m*p) = w (cout, kk) * col (kk, m*p), then to (m, cout, p) */
		be->gemm(0, 0, g->cout, cols, kk, 1, w, kk, col, cols, 0, tmp, cols);
		be->swap01(tmp, y + i0 * ys, g->cout, m, p, 0);
	}
	if (b)
		be->bias_add(y, b, g->n, g->cout, p);
	return 0;
}

int p2p_conv2d_backward(const p2p_backend *be, const p2p_conv *g,
                        float *dx, float *dw, float *db, const float *dy,
                        const float *x, const float *w, float *ws, size_t ws_n)
{
	int nb = chunk_for(be, g, &ws, &ws_n);
	if (!nb)
		return -1;
	long p = gemm_cols(g), kk = col_rows(g);
	long xs = (long)g->cin * g->h * g->w, ys = (long)g->cout * p;
	if (db)
		be->bias_grad(db, dy, g->n, g->cout, p);
	if (!dx && !dw)
		return 0;
	if (nb == 1) {
		chunk_job j;
		job_init(&j, be, g, ws, ws_n, dw != NULL, dx != NULL);
		j.dx = dx, j.dw = dw, j.dy = dy, j.x = x, j.w = w;
		run_groups(&j, conv_bwd_group, dx != NULL);
	}
	for (int i0 = 0; i0 < g->n && nb > 1; i0 += nb) {
		int m = g->n - i0 < nb ? g->n - i0 : nb;
		long cols = m * p;
		float *col = ws, *tmp = ws + kk * cols;
		/* dy as (cout, m*p) */
		be->swap01(dy + i0 * ys, tmp, m, g->cout, p, 0);
		if (dw) {
			/* dw (cout, kk) += dy (cout, m*p) * col^T (m*p, kk) */
			be->im2col(x + i0 * xs, m, g->cin, g->h, g->w, g->k, g->stride,
			           g->pad, g->oh, g->ow, col);
			be->gemm(0, 1, g->cout, kk, cols, 1, tmp, cols, col, cols, 1, dw, kk);
		}
		if (dx) {
			/* dcol (kk, m*p) = w^T (kk, cout) * dy (cout, m*p), then scatter */
			be->gemm(1, 0, kk, cols, g->cout, 1, w, kk, tmp, cols, 0, col, cols);
			be->col2im(col, m, g->cin, g->h, g->w, g->k, g->stride, g->pad,
			           g->oh, g->ow, dx + i0 * xs);
		}
	}
	return 0;
}

int p2p_convt2d_forward(const p2p_backend *be, const p2p_conv *g, float *y,
                        const float *x, const float *w, const float *b,
                        float *ws, size_t ws_n)
{
	int nb = chunk_for(be, g, &ws, &ws_n);
	if (!nb)
		return -1;
	long p = gemm_cols(g), kk = col_rows(g);
	long xs = (long)g->cin * p, ys = (long)g->cout * g->oh * g->ow;
	be->zero(y, (size_t)g->n * ys);
	if (nb == 1) {
		chunk_job j;
		job_init(&j, be, g, ws, ws_n, 0, 1);
		j.y = y, j.x = x, j.w = w;
		run_groups(&j, convt_fwd_group, 1);
	}
	for (int i0 = 0; i0 < g->n && nb > 1; i0 += nb) {
		int m = g->n - i0 < nb ? g->n - i0 : nb;
		long cols = m * p;
		float *col = ws, *tmp = ws + kk * cols;
		/* x as (cin, m*p) */
		be->swap01(x + i0 * xs, tmp, m, g->cin, p, 0);
		/* col (cout*k*k, m*p) = w^T (cout*k*k, cin) * x (cin, m*p) */
		be->gemm(1, 0, kk, cols, g->cin, 1, w, kk, tmp, cols, 0, col, cols);
		be->col2im(col, m, g->cout, g->oh, g->ow, g->k, g->stride, g->pad,
		           g->h, g->w, y + i0 * ys);
	}
	if (b)
		be->bias_add(y, b, g->n, g->cout, (long)g->oh * g->ow);
	return 0;
}

int p2p_convt2d_backward(const p2p_backend *be, const p2p_conv *g,
                         float *dx, float *dw, float *db, const float *dy,
                         const float *x, const float *w, float *ws, size_t ws_n)
{
	int nb = chunk_for(be, g, &ws, &ws_n);
	if (!nb)
		return -1;
	long p = gemm_cols(g), kk = col_rows(g);
	long xs = (long)g->cin * p, ys = (long)g->cout * g->oh * g->ow;
	if (db)
		be->bias_grad(db, dy, g->n, g->cout, (long)g->oh * g->ow);
	if (!dx && !dw)
		return 0;
	if (nb == 1) {
		chunk_job j;
		job_init(&j, be, g, ws, ws_n, dw != NULL, 0);
		j.dx = dx, j.dw = dw, j.dy = dy, j.x = x, j.w = w;
		run_groups(&j, convt_bwd_group, 0);
	}
	for (int i0 = 0; i0 < g->n && nb > 1; i0 += nb) {
		int m = g->n - i0 < nb ? g->n - i0 : nb;
		long cols = m * p;
		float *col = ws, *tmp = ws + kk * cols;
		/* dcol (cout*k*k, m*p): dy gathered the way forward scattered */
		be->im2col(dy + i0 * ys, m, g->cout, g->oh, g->ow, g->k, g->stride,
		           g->pad, g->h, g->w, col);
		if (dw) {
			/* dw (cin, cout*k*k) += x (cin, m*p) * dcol^T (m*p, cout*k*k) */
			be->swap01(x + i0 * xs, tmp, m, g->cin, p, 0);
			be->gemm(0, 1, g->cin, kk, cols, 1, tmp, cols, col, cols, 1, dw, kk);
		}
		if (dx) {
			/* dx (cin, m*p) += w (cin, cout*k*k) * dcol (cout*k*k, m*p) */
			be->gemm(0, 0, g->cin, cols, kk, 1, w, kk, col, cols, 0, tmp, cols);
			be->swap01(tmp, dx + i0 * xs, g->cin, m, p, 1);
		}
	}
	return 0;
}

/* ---- Winograd F(4x4, 3x3), F(3x3, 4x4), F(5x5, 2x2): stride 1 ----
 * Each m x m tile of outputs is A^T [ (G g G^T) .* (B^T d B) ] A over a 6x6
 * patch d of the padded input (m = 7 - k for a k x k kernel g): the 36
 * products, summed over input channels, are 36 independent GEMMs, (cout,
 * cin) x (cin, tiles), with 36 / (m^2 k^2) of the direct convolution's
 * multiplications: 1/4 for k 3 and 4, 0.36 for k 2.
 *
 * A transposed 4x4 stride-2 pad-1 convolution is four 2x2 ones, one per
 * output phase (py, px), all over the same input padded by 1: phase (py,
 * px) of output channel co is output channel (py * 2 + px) * cout + co of a
 * 2x2 convolution with 4 cout outputs, so the four phases share one input
 * transform and one set of GEMMs, four times as tall, and wino_out_up
 * interleaves them into y. A 4x4 stride-2 pad-1 convolution is a 2x2 one
 * over the space-to-depth of its input (4 cin channels, each a phase of the
 * input's rows and columns), which wino_in reads straight from x.
 *
 * Images are cut into chunks of tile rows, or, where an image has fewer
 * than WINO_TILES tiles, chunks of whole images side by side in the
 * GEMMs' columns; they are handed out like the chunks above, and each
 * thread's slot holds a chunk's transformed input and products. */

#ifndef WINO_TILES
#define WINO_TILES 128          /* tiles per chunk, at least */
#endif
#define WINO_SLOTS 4

/* The stride-1 convolution that runs: g, a transposed g's four phases, or
 * a stride-2 g over its input's space-to-depth. */
static p2p_conv wino_geom(const p2p_conv *g)
{
	p2p_conv e = *g;
	if (g->transposed)
		p2p_conv2d_init(&e, g->n, g->cin, g->h, g->w, 4 * g->cout, 2, 1, 1);
	else if (g->stride == 2)
		p2p_conv2d_init(&e, g->n, 4 * g->cin, g->h / 2 + 1, g->w / 2 + 1, g->cout, 2, 1, 0);
	return e;
}

static int wino_m(const p2p_conv *e) { return 7 - e->k; }
static int wino_tw(const p2p_conv *e) { return (e->ow + wino_m(e) - 1) / wino_m(e); }
static int wino_th(const p2p_conv *e) { return (e->oh + wino_m(e) - 1) / wino_m(e); }

static int wino_can(const p2p_backend *be, const p2p_conv *g)
{
	if (!be->wino_in || !be->wino_weights || !be->gemm_batched)
		return 0;
	if (g->transposed)
		return be->wino_out_up && g->k == 4 && g->stride == 2 && g->pad == 1;
	if (g->stride == 2)
		return be->wino_out && g->k == 4 && g->pad == 1 && g->h % 2 == 0 && g->w % 2 == 0;
	return be->wino_out && (g->k == 3 || g->k == 4) && g->stride == 1 && g->pad < g->k;
}

/* Below 16 tiles an image, the 36 weight matrices are read for too little
 * work: D's 4x4 layer at 8x8 ran at 0.6 times the direct convolution. The
 * stride-2 forms want 16 channels each side (with 3, the transforms cost
 * more than the products save). The choice does not depend on the batch,
 * so that neither does a model's output: U-Net's 1024->256 transposed
 * layer at 16x16 (16 tiles) runs at 0.8 times the direct one for one image
 * alone, 1.15 times for two and 1.46 times for eight. */
int p2p_conv_wino_ok(const p2p_backend *be, const p2p_conv *g)
{
	p2p_conv e = wino_geom(g);
	long per = (long)wino_th(&e) * wino_tw(&e);
	if (g->stride == 2 && (g->cout < 16 || g->cin < 16))
		return 0;
	return wino_can(be, g) && per >= 16;
}

int p2p_conv_wino_input_grad(p2p_conv *t, const p2p_conv *g);

/* Tiles a chunk should hold: WINO_TILES, or up to twice that where the
 * weight matrices are taller (cout rows), since each chunk packs them anew. */
static int wino_target(const p2p_conv *e)
{
	int t = e->cout;
	return t < WINO_TILES ? WINO_TILES : t > 2 * WINO_TILES ? 2 * WINO_TILES : t;
}

/* Images per chunk: 1 where an image has a target's worth of tiles, else
 * the batch in as few equal chunks as hold about a target each. */
static int wino_imgs(const p2p_conv *e)
{
	long per = (long)wino_th(e) * wino_tw(e), want = wino_target(e);
	if (per >= want)
		return 1;
	long chunks = (e->n * per + want - 1) / want;
	return (int)((e->n + chunks - 1) / chunks);
}

/* Tile rows per chunk of one image: the rows in as few equal chunks as hold
 * about a target each. */
static int wino_rows(const p2p_conv *e)
{
	int tw = wino_tw(e), th = wino_th(e), want = wino_target(e);
	int rows = (want + tw - 1) / tw, chunks = (th + rows - 1) / rows;
	return (th + chunks - 1) / chunks;
}

static size_t wino_slot(const p2p_conv *e)
{
	return 36 * (size_t)(e->cin + e->cout) * wino_imgs(e) * wino_rows(e) * wino_tw(e);
}

size_t p2p_conv_wino_ws(const p2p_conv *g)
{
	p2p_conv t, e = wino_geom(g);
	size_t a = wino_slot(&e);
	size_t b = g->stride == 1 && p2p_conv_wino_input_grad(&t, g) == 0 ? wino_slot(&t) : 0;
	return WINO_SLOTS * (a > b ? a : b);
}

typedef struct {
	const p2p_backend *be;
	const p2p_conv *g;
	p2p_conv e;
	float *y, *ws;
	const float *x, *u, *b;
	size_t slot_n;
	int rows, imgs, per_image;
} wino_job;

static void wino_item(void *ctx, long i, int slot)
{
	const wino_job *j = ctx;
	const p2p_conv *e = &j->e, *g = j->g;
	int th = wino_th(e), tw = wino_tw(e), img, ni, t0, t1;
	if (j->imgs > 1) {
		img = (int)i * j->imgs, t0 = 0, t1 = th;
		ni = e->n - img < j->imgs ? e->n - img : j->imgs;
	} else {
		img = (int)(i / j->per_image), ni = 1;
		t0 = (int)(i % j->per_image) * j->rows, t1 = t0 + j->rows < th ? t0 + j->rows : th;
	}
	long tn = (long)(t1 - t0) * tw, T = ni * tn;
	size_t xs = (size_t)g->cin * g->h * g->w, ys = (size_t)g->cout * g->oh * g->ow;
	float *v = j->ws + slot * j->slot_n, *m = v + 36L * e->cin * T;
	int s2 = !g->transposed && g->stride == 2;
	for (int s = 0; s < ni; s++)
		j->be->wino_in(j->x + (img + s) * xs, g->cin, g->h, g->w, e->k, e->pad, t0, t1,
		               v + s * tn, T, s2);
	/* m[xi] (cout, T) = u[xi] (cout, cin) * v[xi] (cin, T), for the 36 xi */
	j->be->gemm_batched(0, 0, e->cout, T, e->cin, 1, j->u, e->cin, (long)e->cout * e->cin,
	                    v, T, (long)e->cin * T, 0, m, T, (long)e->cout * T, 36);
	for (int s = 0; s < ni; s++)
		if (g->transposed)
			j->be->wino_out_up(m + s * tn, T, g->cout, e->oh, e->ow, t0, t1, j->b,
			                   j->y + (img + s) * ys);
		else
			j->be->wino_out(m + s * tn, T, e->cout, e->oh, e->ow, e->k, t0, t1, j->b,
			                j->y + (img + s) * ys);
}

static int wino_forward(const p2p_backend *be, const p2p_conv *g, float *y, const float *x,
                        const float *u, const float *b, float *ws, size_t ws_n)
{
	wino_job j = {be, g, wino_geom(g), y, ws, x, u, b, 0, 0, 0, 0};
	j.slot_n = wino_slot(&j.e), j.rows = wino_rows(&j.e), j.imgs = wino_imgs(&j.e);
	if (ws_n < j.slot_n)
		return p2p_err("conv: workspace of %zu floats, %zu needed", ws_n, j.slot_n);
	j.per_image = (wino_th(&j.e) + j.rows - 1) / j.rows;
	long items = j.imgs > 1 ? (g->n + j.imgs - 1) / j.imgs : (long)g->n * j.per_image;
	int slots = (int)(ws_n / j.slot_n);
	if (be->parallel && items > 1)
		be->parallel(items, slots < MAX_SLOTS ? slots : MAX_SLOTS, wino_item, &j);
	else
		for (long i = 0; i < items; i++)
			wino_item(&j, i, 0);
	return 0;
}

int p2p_conv2d_forward_wino(const p2p_backend *be, const p2p_conv *g, float *y,
                            const float *x, const float *u, const float *b,
                            float *ws, size_t ws_n)
{
	if (g->transposed || !wino_can(be, g))
		return p2p_err("conv: Winograd needs a stride-1 convolution with a 3x3 or 4x4 kernel, "
		               "or a 4x4 stride-2 pad-1 one of an even size, and a backend with its "
		               "transforms");
	return wino_forward(be, g, y, x, u, b, ws, ws_n);
}

int p2p_convt2d_forward_wino(const p2p_backend *be, const p2p_conv *g, float *y,
                             const float *x, const float *u, const float *b,
                             float *ws, size_t ws_n)
{
	if (!g->transposed || !wino_can(be, g))
		return p2p_err("conv: Winograd needs a transposed 4x4 convolution of stride 2 and "
		               "pad 1 and a backend with its transforms");
	return wino_forward(be, g, y, x, u, b, ws, ws_n);
}

int p2p_conv_wino_input_grad(p2p_conv *t, const p2p_conv *g)
{
	return p2p_conv2d_init(t, g->n, g->cout, g->oh, g->ow, g->cin, g->k, 1, g->k - 1 - g->pad);
}
