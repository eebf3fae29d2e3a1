/* Conv2d and ConvTranspose2d on the CPU backend against a naive direct
 * float64 reference written here, on odd sizes, batches > 1, and every layer
 * shape of the U-Net (64 and 256), the PatchGAN and VGG16 features[:16];
 * backward also against central finite differences on small shapes. The
 * backend's row-range im2col/col2im against the whole-image ops, and layers
 * big enough to be split into chunks of rows (conv.c) against the reference,
 * the unsplit layer and finite differences. Winograd F(4x4, 3x3), F(3x3,
 * 4x4) and F(5x5, 2x2): their transforms against their definition, the
 * convolution and the input gradient from turned weights against the
 * reference and finite differences, the transposed convolution as four
 * phases against the reference, on any number of threads.
 *
 * Error measure: max |got - ref| / max |ref| over the checked entries (all
 * of them, or a seeded sample of big tensors), which must stay under 1e-5.
 *
 * VALGRIND=1 (scripts/run-tests sets it) keeps to the small shapes. */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "cpu_pool.h"
#include "err.h"
#include "layers.h"
#include "tensor.h"

static const p2p_backend *be;
static int slow_ok;             /* big shapes allowed (not under valgrind) */

static uint64_t rs = 88172645463325252ULL;
static uint64_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }
static float urand(void) { return (float)((rnd() >> 11) * 0x1p-53 * 2 - 1); }
static void fill(float *x, size_t n) { for (size_t i = 0; i < n; i++) x[i] = urand(); }

/* The direct reference, written for the "small" side S (n, cs, sh, sw) that a
 * strided correlation produces from the "big" side B (n, cb, bh, bw) with the
 * weight W (cs, cb, k, k):  S[n,a,sy,sx] = sum W[a,b,ky,kx] B[n,b,sy*s-p+ky,sx*s-p+kx].
 * Conv2d is S = y, B = x; ConvTranspose2d is its adjoint, B = y, S = x; in
 * both the weight is indexed (small channel, big channel, ky, kx). */
typedef struct { int n, cs, sh, sw, cb, bh, bw, k, s, p; } rel;

static rel rel_of(const p2p_conv *g)
{
	rel r = {g->n, g->cout, g->oh, g->ow, g->cin, g->h, g->w, g->k, g->stride, g->pad};
	if (g->transposed)
		r = (rel){g->n, g->cin, g->h, g->w, g->cout, g->oh, g->ow, g->k, g->stride, g->pad};
	return r;
}

/* S entry i (flat NCHW index) from W and B. */
static double ref_small(const rel *r, const float *w, const float *bg, size_t i)
{
	int sx = i % r->sw, sy = i / r->sw % r->sh, a = i / ((size_t)r->sw * r->sh) % r->cs;
	int n = i / ((size_t)r->sw * r->sh * r->cs);
	double s = 0;
	for (int b = 0; b < r->cb; b++)
		for (int ky = 0; ky < r->k; ky++) {
			int by = sy * r->s - r->p + ky;
			if (by < 0 || by >= r->bh)
				continue;
			for (int kx = 0; kx < r->k; kx++) {
				int bx = sx * r->s - r->p + kx;
				if (bx < 0 || bx >= r->bw)
					continue;
				s += (double)w[(((size_t)a * r->cb + b) * r->k + ky) * r->k + kx] *
				     bg[(((size_t)n * r->cb + b) * r->bh + by) * r->bw + bx];
			}
		}
	return s;
}

/* B entry i from W and S: the adjoint, gathered. */
static double ref_big(const rel *r, const float *w, const float *sm, size_t i)
{
	int bx = i % r->bw, by = i / r->bw % r->bh, b = i / ((size_t)r->bw * r->bh) % r->cb;
	int n = i / ((size_t)r->bw * r->bh * r->cb);
	double s = 0;
	for (int ky = 0; ky < r->k; ky++) {
		int t = by + r->p - ky;
		if (t < 0 || t % r->s || t / r->s >= r->sh)
			continue;
		for (int kx = 0; kx < r->k; kx++) {
			int u = bx + r->p - kx;
			if (u < 0 || u % r->s || u / r->s >= r->sw)
				continue;
			for (int a = 0; a < r->cs; a++)
				s += (double)w[(((size_t)a * r->cb + b) * r->k + ky) * r->k + kx] *
				     sm[(((size_t)n * r->cs + a) * r->sh + t / r->s) * r->sw + u / r->s];
		}
	}
	return s;
}

/* W entry i: sum over images and small positions of S * B. */
static double ref_w(const rel *r, const float *sm, const float *bg, size_t i)
{
	int kx = i % r->k, ky = i / r->k % r->k, b = i / ((size_t)r->k * r->k) % r->cb;
	int a = i / ((size_t)r->k * r->k * r->cb);
	double s = 0;
	for (int n = 0; n < r->n; n++)
		for (int sy = 0; sy < r->sh; sy++) {
			int by = sy * r->s - r->p + ky;
			if (by < 0 || by >= r->bh)
				continue;
			for (int sx = 0; sx < r->sw; sx++) {
				int bx = sx * r->s - r->p + kx;
				if (bx < 0 || bx >= r->bw)
					continue;
				s += (double)sm[(((size_t)n * r->cs + a) * r->sh + sy) * r->sw + sx] *
				     bg[(((size_t)n * r->cb + b) * r->bh + by) * r->bw + bx];
			}
		}
	return s;
}

/* Entries to check: all when few, else the first, the last and a seeded sample. */
static size_t pick(size_t total, size_t cap, size_t j)
{
	if (total <= cap || j == 0)
		return j;
	if (j == 1)
		return total - 1;
	return rnd() % total;
}

typedef double (*ref_fn)(const rel *, const float *, const float *, size_t);

/* max |got - base - ref| / max |ref| over the checked entries of a tensor */
static double rel_err(const float *got, float base, size_t total, size_t cap,
                      ref_fn f, const rel *r, const float *u, const float *v,
                      const float *bias, int plane)
{
	size_t m = total < cap ? total : cap;
	double emax = 0, rmax = 1e-30;
	for (size_t j = 0; j < m; j++) {
		size_t i = pick(total, cap, j);
		double ref = f(r, u, v, i);
		if (bias)
			ref += bias[i / plane % (total / plane / r->n)];
		double e = fabs((double)got[i] - base - ref);
		emax = e > emax ? e : emax;
		rmax = fabs(ref) > rmax ? fabs(ref) : rmax;
	}
	return emax / rmax;
}

/* One layer: forward, then backward into gradients that start at base
 * (accumulation), each against the reference. ws_min: smallest workspace. */
static void check_layer(const p2p_conv *g, size_t cap, int ws_min, float base, const char *what)
{
	rel r = rel_of(g);
	size_t nx = (size_t)g->n * g->cin * g->h * g->w, ny = (size_t)g->n * g->cout * g->oh * g->ow;
	size_t nw = (size_t)g->cout * g->cin * g->k * g->k;
	size_t wsn = ws_min ? p2p_conv_ws_min(g) : p2p_conv_ws(g);
	float *x = malloc(nx * 4), *y = malloc(ny * 4), *dy = malloc(ny * 4), *dx = malloc(nx * 4);
	float *w = malloc(nw * 4), *dw = malloc(nw * 4), *b = malloc(g->cout * 4), *db = malloc(g->cout * 4);
	float *ws = malloc(wsn * 4);
	fill(x, nx), fill(w, nw), fill(b, g->cout), fill(dy, ny);
	for (size_t i = 0; i < nx; i++) dx[i] = base;
	for (size_t i = 0; i < nw; i++) dw[i] = base;
	for (int i = 0; i < g->cout; i++) db[i] = base;
	int rc1, rc2;
	double ey, ex, ew, eb = 0;
	if (!g->transposed) {
		rc1 = p2p_conv2d_forward(be, g, y, x, w, b, ws, wsn);
		rc2 = p2p_conv2d_backward(be, g, dx, dw, db, dy, x, w, ws, wsn);
		ey = rel_err(y, 0, ny, cap, ref_small, &r, w, x, b, g->oh * g->ow);
		ex = rel_err(dx, base, nx, cap, ref_big, &r, w, dy, NULL, 1);
		ew = rel_err(dw, base, nw, cap, ref_w, &r, dy, x, NULL, 1);
	} else {
		rc1 = p2p_convt2d_forward(be, g, y, x, w, b, ws, wsn);
		rc2 = p2p_convt2d_backward(be, g, dx, dw, db, dy, x, w, ws, wsn);
		ey = rel_err(y, 0, ny, cap, ref_big, &r, w, x, b, g->oh * g->ow);
		ex = rel_err(dx, base, nx, cap, ref_small, &r, w, dy, NULL, 1);
		ew = rel_err(dw, base, nw, cap, ref_w, &r, x, dy, NULL, 1);
	}
	double bmax = 1e-30;
	for (int c = 0; c < g->cout; c++) {
		double s = 0;
		long p = (long)g->oh * g->ow;
		for (int n = 0; n < g->n; n++)
			for (long q = 0; q < p; q++)
				s += dy[((size_t)n * g->cout + c) * p + q];
		eb = fmax(eb, fabs(db[c] - base - s));
		bmax = fmax(bmax, fabs(s));
	}
	eb /= bmax;
	CHECK(rc1 == 0 && rc2 == 0);
	CHECKF(ey < 1e-5 && ex < 1e-5 && ew < 1e-5 && eb < 1e-5,
	       "%s: y %.2e dx %.2e dw %.2e db %.2e", what, ey, ex, ew, eb);
	printf("# %-34s y %.1e dx %.1e dw %.1e db %.1e\n", what, ey, ex, ew, eb);
	free(x), free(y), free(dy), free(dx), free(w), free(dw), free(b), free(db), free(ws);
}

static void layer(int transposed, int n, int cin, int h, int w, int cout, int k,
                  int s, int p, size_t cap, int ws_min, float base)
{
	p2p_conv g;
	int rc = transposed ? p2p_convt2d_init(&g, n, cin, h, w, cout, k, s, p)
	                    : p2p_conv2d_init(&g, n, cin, h, w, cout, k, s, p);
	CHECK(rc == 0);
	if (rc)
		return;
	char what[96];
	snprintf(what, sizeof what, "%s n%d %d->%d %dx%d k%d s%d p%d%s",
	         transposed ? "convT" : "conv", n, cin, cout, h, w, k, s, p, ws_min ? " ws1" : "");
	check_layer(&g, cap, ws_min, base, what);
}

/* Odd sizes, batches > 1, both workspace sizes, accumulation onto 0.5. */
static void test_odd_sizes(void)
{
	for (int m = 0; m < 2; m++) {
		layer(0, 3, 5, 7, 9, 6, 3, 1, 1, 1u << 30, m, 0.5f);
		layer(0, 2, 3, 9, 11, 7, 4, 2, 1, 1u << 30, m, 0.5f);
		layer(0, 2, 3, 6, 5, 4, 4, 1, 1, 1u << 30, m, 0.5f);
		layer(0, 1, 3, 6, 5, 4, 4, 1, 1, 1u << 30, m, 0.5f);
		layer(0, 5, 2, 11, 8, 3, 5, 3, 2, 1u << 30, m, 0.5f);
		layer(0, 4, 3, 2, 2, 5, 4, 2, 1, 1u << 30, m, 0.5f);
		layer(1, 3, 5, 3, 4, 6, 4, 2, 1, 1u << 30, m, 0.5f);
		layer(1, 1, 5, 3, 4, 6, 4, 2, 1, 1u << 30, m, 0.5f);
		layer(1, 4, 3, 1, 1, 5, 4, 2, 1, 1u << 30, m, 0.5f);
		layer(1, 2, 4, 5, 3, 3, 3, 1, 0, 1u << 30, m, 0.5f);
		layer(1, 3, 2, 4, 5, 3, 5, 3, 2, 1u << 30, m, 0.5f);
	}
	/* big enough for several chunks of several images each */
	layer(0, 7, 8, 9, 9, 6, 4, 2, 1, 1u << 30, 0, 0.5f);
	layer(1, 9, 8, 5, 5, 6, 4, 2, 1, 1u << 30, 0, 0.5f);
}

/* Every conv of the U-Net at size s (ngf 64, 1 -> 3 channels). */
static void unet_shapes(int s, int n, size_t cap)
{
	int depth = 0;
	while ((1 << depth) < s)
		depth++;
	int ch[16];
	for (int i = 0; i < depth; i++)
		ch[i] = 64 * (i < 3 ? 1 << i : 8);
	for (int i = 0; i < depth; i++) {
		int cin = i ? ch[i - 1] : 1, hw = s >> i;
		layer(0, n, cin, hw, hw, ch[i], 4, 2, 1, cap, 0, 0);
	}
	for (int i = depth - 1; i >= 0; i--) {
		int cin = i == depth - 1 ? ch[i] : 2 * ch[i], cout = i ? ch[i - 1] : 3;
		int hw = s >> (i + 1);
		layer(1, n, cin, hw, hw, cout, 4, 2, 1, cap, 0, 0);
	}
}

static void patchgan_shapes(int s, int n, size_t cap)
{
	int cin[5] = {4, 64, 128, 256, 512}, cout[5] = {64, 128, 256, 512, 1};
	int st[5] = {2, 2, 2, 1, 1}, hw = s;
	for (int i = 0; i < 5; i++) {
		layer(0, n, cin[i], hw, hw, cout[i], 4, st[i], 1, cap, 0, 0);
		hw = (hw + 2 - 4) / st[i] + 1;
	}
}

static void vgg_shapes(int s, int n, size_t cap)
{
	int cin[7] = {3, 64, 64, 128, 128, 256, 256}, cout[7] = {64, 64, 128, 128, 256, 256, 256};
	int hw[7] = {s, s, s / 2, s / 2, s / 4, s / 4, s / 4};
	for (int i = 0; i < 7; i++)
		layer(0, n, cin[i], hw[i], hw[i], cout[i], 3, 1, 1, cap, 0, 0);
}

static void test_unet64(void) { unet_shapes(64, 2, 3000); }
static void test_unet256(void) { unet_shapes(256, 1, 400); }
static void test_patchgan64(void) { patchgan_shapes(64, 2, 3000); }
static void test_patchgan256(void) { patchgan_shapes(256, 1, 400); }
static void test_vgg64(void) { vgg_shapes(64, 2, 3000); }
static void test_vgg256(void) { vgg_shapes(256, 1, 200); }
/* a 256 batch through the whole-batch GEMM path of the inner layers */
static void test_unet256_inner_batch(void)
{
	layer(0, 3, 512, 8, 8, 512, 4, 2, 1, 400, 0, 0);
	layer(0, 3, 512, 2, 2, 512, 4, 2, 1, 400, 0, 0);
	layer(1, 3, 512, 1, 1, 512, 4, 2, 1, 400, 0, 0);
	layer(1, 3, 1024, 4, 4, 512, 4, 2, 1, 400, 0, 0);
}

/* ---- finite differences ---- */

/* L = sum(y * r) in double over the float forward. */
static double loss(const p2p_conv *g, const float *x, const float *w, const float *b,
                   const float *r, float *y, float *ws, size_t wsn)
{
	if (g->transposed)
		p2p_convt2d_forward(be, g, y, x, w, b, ws, wsn);
	else
		p2p_conv2d_forward(be, g, y, x, w, b, ws, wsn);
	double s = 0;
	for (size_t i = 0; i < (size_t)g->n * g->cout * g->oh * g->ow; i++)
		s += (double)y[i] * r[i];
	return s;
}

/* Central differences of L with respect to every entry of v (n floats). */
static double fd_err(const p2p_conv *g, float *x, float *w, float *b, const float *r,
                     float *y, float *ws, size_t wsn, float *v, size_t n, const float *grad,
                     size_t cap)
{
	const float h = 1e-2f;     /* the layer is linear: no truncation error */
	double emax = 0;
	for (size_t j = 0; j < n && j < cap; j++) {
		size_t i = pick(n, cap, j);
		float v0 = v[i], vp = v0 + h, vm = v0 - h;
		v[i] = vp;
		double lp = loss(g, x, w, b, r, y, ws, wsn);
		v[i] = vm;
		double lm = loss(g, x, w, b, r, y, ws, wsn);
		v[i] = v0;
		double fd = (lp - lm) / ((double)vp - vm);
		emax = fmax(emax, fabs(fd - grad[i]) / fmax(1, fabs(grad[i])));
	}
	return emax;
}

/* cap: entries of each tensor checked (a seeded sample of bigger ones) */
static void fd_layer_cap(int transposed, int n, int cin, int h, int w_, int cout, int k, int s,
                         int p, size_t cap)
{
	p2p_conv g;
	if (transposed)
		p2p_convt2d_init(&g, n, cin, h, w_, cout, k, s, p);
	else
		p2p_conv2d_init(&g, n, cin, h, w_, cout, k, s, p);
	size_t nx = (size_t)n * cin * h * w_, ny = (size_t)n * cout * g.oh * g.ow;
	size_t nw = (size_t)cout * cin * k * k, wsn = p2p_conv_ws(&g);
	float *x = malloc(nx * 4), *y = malloc(ny * 4), *r = malloc(ny * 4), *dx = calloc(nx, 4);
	float *w = malloc(nw * 4), *dw = calloc(nw, 4), *b = malloc(cout * 4), *db = calloc(cout, 4);
	float *ws = malloc(wsn * 4);
	fill(x, nx), fill(w, nw), fill(b, cout), fill(r, ny);
	if (transposed)
		p2p_convt2d_backward(be, &g, dx, dw, db, r, x, w, ws, wsn);
	else
		p2p_conv2d_backward(be, &g, dx, dw, db, r, x, w, ws, wsn);
	double ex = fd_err(&g, x, w, b, r, y, ws, wsn, x, nx, dx, cap);
	double ew = fd_err(&g, x, w, b, r, y, ws, wsn, w, nw, dw, cap);
	double eb = fd_err(&g, x, w, b, r, y, ws, wsn, b, cout, db, cap);
	/* rounding in L (about 1e-7 * sqrt(ny) * |y|) over 2h: about 1e-4 here */
	CHECKF(ex < 1e-3 && ew < 1e-3 && eb < 1e-3, "%s n%d %d->%d %dx%d: dx %.1e dw %.1e db %.1e",
	       transposed ? "convT" : "conv", n, cin, cout, h, w_, ex, ew, eb);
	printf("# fd %s n%d %d->%d %dx%d k%d s%d: dx %.1e dw %.1e db %.1e\n",
	       transposed ? "convT" : "conv", n, cin, cout, h, w_, k, s, ex, ew, eb);
	free(x), free(y), free(r), free(dx), free(w), free(dw), free(b), free(db), free(ws);
}

static void fd_layer(int transposed, int n, int cin, int h, int w_, int cout, int k, int s, int p)
{
	fd_layer_cap(transposed, n, cin, h, w_, cout, k, s, p, (size_t)-1);
}

static void test_finite_differences(void)
{
	fd_layer(0, 2, 3, 7, 6, 4, 4, 2, 1);
	fd_layer(0, 2, 2, 5, 6, 3, 4, 1, 1);
	fd_layer(0, 2, 3, 5, 4, 2, 3, 1, 1);
	fd_layer(1, 2, 3, 3, 4, 2, 4, 2, 1);
	fd_layer(1, 3, 2, 2, 2, 3, 4, 2, 1);
}

/* ---- row ranges: im2col_rows, col2im_rows, and layers split by rows ---- */

static double dot(const float *a, const float *b, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
}

/* One geometry (one image): every row range's columns are the whole image's,
 * bit for bit; col2im_rows over a partition of the rows adds up to col2im
 * (within rounding: the order of the sums differs) and is im2col_rows's
 * adjoint. */
static void rows_ops(int c, int h, int w, int k, int s, int p)
{
	int oh = (h + 2 * p - k) / s + 1, ow = (w + 2 * p - k) / s + 1;
	long kk = (long)c * k * k, P = (long)oh * ow;
	size_t nx = (size_t)c * h * w;
	float *x = malloc(nx * 4), *full = malloc(kk * P * 4), *col = malloc(kk * P * 4);
	float *c1 = malloc(kk * P * 4), *a = malloc(nx * 4), *b = malloc(nx * 4), *t = malloc(nx * 4);
	fill(x, nx);
	be->im2col(x, 1, c, h, w, k, s, p, oh, ow, full);
	int bad = 0;
	for (int r0 = 0; r0 < oh; r0++)
		for (int r1 = r0 + 1; r1 <= oh; r1++) {
			long cols = (long)(r1 - r0) * ow;
			be->im2col_rows(x, c, h, w, k, s, p, oh, ow, r0, r1, col);
			for (long r = 0; r < kk; r++)
				bad += memcmp(col + r * cols, full + r * P + (long)r0 * ow, cols * 4) != 0;
		}
	CHECKF(bad == 0, "im2col_rows c%d %dx%d k%d s%d p%d: %d rows differ", c, h, w, k, s, p, bad);
	/* col2im of the whole columns against col2im_rows chunk by chunk (1, 2,
	 * 3... rows), both onto 0.25 */
	fill(c1, kk * P);
	for (size_t i = 0; i < nx; i++)
		a[i] = b[i] = 0.25f;
	be->col2im(c1, 1, c, h, w, k, s, p, oh, ow, a);
	double adj = 0, amax = 1e-30;
	for (int r0 = 0, len = 1; r0 < oh; r0 += len, len++) {
		int r1 = r0 + len < oh ? r0 + len : oh;
		long cols = (long)(r1 - r0) * ow;
		for (long r = 0; r < kk; r++)
			memcpy(col + r * cols, c1 + r * P + (long)r0 * ow, cols * 4);
		be->col2im_rows(col, c, h, w, k, s, p, oh, ow, r0, r1, b);
		/* <im2col_rows(x), col> = <x, col2im_rows(col)> */
		memset(t, 0, nx * 4);
		be->col2im_rows(col, c, h, w, k, s, p, oh, ow, r0, r1, t);
		double lhs = dot(full, c1, 0), l = 0;
		for (long r = 0; r < kk; r++)
			l += dot(full + r * P + (long)r0 * ow, col + r * cols, cols);
		lhs += l;
		double rhs = dot(x, t, nx);
		adj = fmax(adj, fabs(lhs - rhs));
		amax = fmax(amax, fabs(lhs));
	}
	double e = 0, m = 1e-30;
	for (size_t i = 0; i < nx; i++) {
		e = fmax(e, fabs(a[i] - b[i]));
		m = fmax(m, fabs(a[i]));
	}
	CHECKF(e / m < 1e-6 && adj / amax < 1e-6, "col2im_rows c%d %dx%d k%d s%d p%d: %.2e, adjoint %.2e",
	       c, h, w, k, s, p, e / m, adj / amax);
	free(x), free(full), free(col), free(c1), free(a), free(b), free(t);
}

static void test_rows_ops(void)
{
	CHECK(be->im2col_rows != NULL && be->col2im_rows != NULL);
	if (!be->im2col_rows || !be->col2im_rows)
		return;
	rows_ops(2, 7, 9, 3, 1, 1);
	rows_ops(3, 9, 8, 4, 2, 1);
	rows_ops(2, 11, 6, 5, 3, 2);
	rows_ops(1, 6, 5, 4, 1, 1);
	rows_ops(2, 4, 4, 4, 2, 1);
	rows_ops(3, 5, 7, 3, 1, 0);
	rows_ops(1, 2, 2, 4, 2, 1);
}

/* The backend without the row ops: conv.c runs whole images. */
static p2p_backend whole;

/* A layer that conv.c splits into chunks of rows (its columns are larger
 * than the chunk) against the float64 reference, against the same layer
 * on whole images, and its backward against finite differences. */
static void chunked(int transposed, int n, int cin, int h, int w, int cout, int k, int s, int p,
                    size_t cap)
{
	layer(transposed, n, cin, h, w, cout, k, s, p, slow_ok ? cap : cap / 10, 0, 0.5f);
	p2p_conv g;
	if (transposed)
		p2p_convt2d_init(&g, n, cin, h, w, cout, k, s, p);
	else
		p2p_conv2d_init(&g, n, cin, h, w, cout, k, s, p);
	size_t nx = (size_t)g.n * g.cin * g.h * g.w, ny = (size_t)g.n * g.cout * g.oh * g.ow;
	size_t nw = (size_t)g.cout * g.cin * g.k * g.k, wsn = p2p_conv_ws(&g);
	float *x = malloc(nx * 4), *dy = malloc(ny * 4), *w_ = malloc(nw * 4), *ws = malloc(wsn * 4);
	float *y[2], *dx[2], *dw[2];
	fill(x, nx), fill(dy, ny), fill(w_, nw);
	for (int v = 0; v < 2; v++) {
		const p2p_backend *b = v ? &whole : be;
		y[v] = malloc(ny * 4), dx[v] = calloc(nx, 4), dw[v] = calloc(nw, 4);
		if (transposed) {
			p2p_convt2d_forward(b, &g, y[v], x, w_, NULL, ws, wsn);
			p2p_convt2d_backward(b, &g, dx[v], dw[v], NULL, dy, x, w_, ws, wsn);
		} else {
			p2p_conv2d_forward(b, &g, y[v], x, w_, NULL, ws, wsn);
			p2p_conv2d_backward(b, &g, dx[v], dw[v], NULL, dy, x, w_, ws, wsn);
		}
	}
	double e[3] = {0}, m[3] = {1e-30, 1e-30, 1e-30};
	float *got[3] = {y[0], dx[0], dw[0]}, *ref[3] = {y[1], dx[1], dw[1]};
	size_t cnt[3] = {ny, nx, nw};
	for (int t = 0; t < 3; t++)
		for (size_t i = 0; i < cnt[t]; i++) {
			e[t] = fmax(e[t], fabs(got[t][i] - ref[t][i]));
			m[t] = fmax(m[t], fabs(ref[t][i]));
		}
	CHECKF(e[0] / m[0] < 1e-6 && e[1] / m[1] < 1e-6 && e[2] / m[2] < 1e-6,
	       "chunked %s %d->%d %dx%d against whole images: y %.1e dx %.1e dw %.1e",
	       transposed ? "convT" : "conv", cin, cout, h, w, e[0] / m[0], e[1] / m[1], e[2] / m[2]);
	for (int v = 0; v < 2; v++)
		free(y[v]), free(dx[v]), free(dw[v]);
	free(x), free(dy), free(w_), free(ws);
	if (slow_ok)    /* valgrind: the memory is checked above, FD would take minutes */
		fd_layer_cap(transposed, n, cin, h, w, cout, k, s, p, 400);
}

static void test_chunked_layers(void)
{
	whole = *be;
	whole.im2col_rows = NULL;
	whole.col2im_rows = NULL;
	/* few output channels: the columns are large, the arithmetic small */
	chunked(0, 1, 16, 40, 37, 1, 3, 1, 1, 3000);    /* 22-row chunks of a 40-row grid */
	chunked(0, 2, 16, 64, 64, 2, 4, 2, 1, 3000);    /* k4 s2: 16 of 32 rows, 2 images */
	chunked(0, 1, 12, 80, 80, 2, 5, 3, 2, 3000);    /* k5 s3: 16 of 27 rows */
	chunked(1, 1, 2, 32, 32, 16, 4, 2, 1, 3000);    /* convT: chunks overlap in y */
	chunked(1, 2, 2, 36, 30, 20, 3, 1, 1, 3000);
}

/* The chunked layers give the same bits on 1, 2 and 3 threads: chunks that
 * add into shared memory are grouped the same way whatever the threads. */
static void same_bits(int transposed, int n, int cin, int h, int w, int cout, int k, int s, int p)
{
	p2p_conv g;
	if (transposed)
		p2p_convt2d_init(&g, n, cin, h, w, cout, k, s, p);
	else
		p2p_conv2d_init(&g, n, cin, h, w, cout, k, s, p);
	size_t nx = (size_t)g.n * g.cin * g.h * g.w, ny = (size_t)g.n * g.cout * g.oh * g.ow;
	size_t nw = (size_t)g.cout * g.cin * g.k * g.k, wsn = p2p_conv_ws(&g);
	size_t nall = ny + nx + nw;
	float *x = malloc(nx * 4), *dy = malloc(ny * 4), *w_ = malloc(nw * 4), *ws = malloc(wsn * 4);
	float *out[3];
	fill(x, nx), fill(dy, ny), fill(w_, nw);
	for (int t = 0; t < 3; t++) {
		be->set_threads(t + 1);
		float *o = out[t] = calloc(nall, 4), *y = o, *dx = o + ny, *dw = o + ny + nx;
		if (transposed) {
			p2p_convt2d_forward(be, &g, y, x, w_, NULL, ws, wsn);
			p2p_convt2d_backward(be, &g, dx, dw, NULL, dy, x, w_, ws, wsn);
		} else {
			p2p_conv2d_forward(be, &g, y, x, w_, NULL, ws, wsn);
			p2p_conv2d_backward(be, &g, dx, dw, NULL, dy, x, w_, ws, wsn);
		}
	}
	CHECKF(!memcmp(out[0], out[1], nall * 4) && !memcmp(out[0], out[2], nall * 4),
	       "%s %d->%d %dx%d: 1, 2 and 3 threads differ", transposed ? "convT" : "conv",
	       cin, cout, h, w);
	for (int t = 0; t < 3; t++)
		free(out[t]);
	free(x), free(dy), free(w_), free(ws);
}

static void test_chunked_threads(void)
{
	CHECK(be->set_threads != NULL);
	if (!be->set_threads)
		return;
	int before = p2p_pool_threads();
	same_bits(0, 1, 16, 40, 37, 1, 3, 1, 1);
	same_bits(0, 2, 16, 64, 64, 2, 4, 2, 1);
	same_bits(1, 1, 2, 32, 32, 16, 4, 2, 1);
	same_bits(1, 2, 2, 36, 30, 20, 3, 1, 1);
	if (slow_ok)
		same_bits(0, 2, 64, 128, 128, 64, 3, 1, 1);    /* VGG's 64->64, 8 groups */
	be->set_threads(before);
}

/* ---- Winograd F(4x4, 3x3) ---- */

static const double BT[6][6] = {
	{4, 0, -5, 0, 1, 0}, {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
	{0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}
};
static const double AT4[4][6] = {    /* 4x4 tiles of a 3x3 kernel */
	{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}
};
static const double AT3[3][6] = {    /* 3x3 tiles of a 4x4 kernel */
	{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 1}
};
static const double AT5[5][6] = {    /* 5x5 tiles of a 2x2 kernel */
	{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 0},
	{0, 1, 1, 16, 16, 1}
};

static double at_of(int m, int i, int a)
{
	return m == 5 ? AT5[i][a] : m == 4 ? AT4[i][a] : AT3[i][a];
}

/* wino_in and wino_out against B^T d B and A^T m A written out, on every
 * tile of a range of tile rows (edges where the sizes are not multiples of
 * the tile's): kernel k (tiles of m = 7 - k), pad p; the output is oh x ow.
 * v's rows are ld = T + 3 long: the 3 columns past T must stay as they were.
 * up: wino_out_up, y (c/4, 2 (oh - 1), 2 (ow - 1)) from the four phases. */
static void wino_ops_mode(int c, int h, int w, int k, int p, int t0, int t1, int up, int s2)
{
	int sh = h, sw = w, sc = c;        /* s2: x's own size, read as (4 c, h/2 + 1, w/2 + 1) */
	if (s2)
		c *= 4, h = h / 2 + 1, w = w / 2 + 1;
	int m = 7 - k, oh = h + 2 * p - k + 1, ow = w + 2 * p - k + 1, tw = (ow + m - 1) / m;
	long T = (long)(t1 - t0) * tw, ld = T + 3;
	int yc = up ? c / 4 : c, yh = up ? 2 * (oh - 1) : oh, yw = up ? 2 * (ow - 1) : ow;
	size_t ny = (size_t)yc * yh * yw;
	size_t nx = (size_t)sc * sh * sw;
	float *x = malloc(nx * 4), *v = malloc(36 * c * ld * 4);
	float *y = malloc(ny * 4), *b = malloc(c * 4);
	fill(x, nx), fill(b, c);
	for (long i = 0; i < 36 * c * ld; i++)
		v[i] = 7e9f;
	for (size_t i = 0; i < ny; i++)
		y[i] = 1e9f;            /* rows outside [t0, t1) must stay */
	be->wino_in(x, sc, sh, sw, k, p, t0, t1, v, ld, s2);
	double ein = 0, min_ = 1e-30, mout = 1e-30;     /* errors over the largest value */
	int kept = 1;
	for (int ci = 0; ci < c; ci++) {
		for (long t = 0; t < T; t++) {
			int ty = t0 + (int)(t / tw), tx = (int)(t % tw);
			double d[6][6], e[6][6];
			for (int r = 0; r < 6; r++)
				for (int q = 0; q < 6; q++) {
					int iy = m * ty - p + r, ix = m * tx - p + q, pl = ci;
					if (s2)   /* x' (4 c, h, w) from x (c, sh, sw) */
						pl = ci / 4, iy = 2 * iy + (ci >> 1 & 1) - 1,
						ix = 2 * ix + (ci & 1) - 1;
					d[r][q] = iy >= 0 && iy < sh && ix >= 0 && ix < sw
					          ? x[((size_t)pl * sh + iy) * sw + ix] : 0;
				}
			for (int i = 0; i < 6; i++)
				for (int q = 0; q < 6; q++) {
					e[i][q] = 0;
					for (int r = 0; r < 6; r++)
						e[i][q] += BT[i][r] * d[r][q];
				}
			for (int i = 0; i < 6; i++)
				for (int j = 0; j < 6; j++) {
					double ref = 0;
					for (int q = 0; q < 6; q++)
						ref += e[i][q] * BT[j][q];
					float got = v[((size_t)(i * 6 + j) * c + ci) * ld + t];
					ein = fmax(ein, fabs(got - ref));
					min_ = fmax(min_, fabs(ref));
				}
		}
		for (int xi = 0; xi < 36; xi++)
			for (long t = T; t < ld; t++)
				kept &= v[((size_t)xi * c + ci) * ld + t] == 7e9f;
	}
	for (long i = 0; i < 36 * c * ld; i++)
		if (v[i] == 7e9f)
			v[i] = 0;           /* wino_out must not read them: 0 or not, no change */
	/* wino_out of v read as m (36, c, ld) */
	if (up)
		be->wino_out_up(v, ld, yc, oh, ow, t0, t1, b, y);
	else
		be->wino_out(v, ld, c, oh, ow, k, t0, t1, b, y);
	double eout = 0;
	for (int ci = 0; ci < c; ci++)
		for (int oy = 0; oy < oh; oy++)
			for (int ox = 0; ox < ow; ox++) {
				int ty = oy / m, tx = ox / m, i = oy % m, j = ox % m;
				long t = (long)(ty - t0) * tw + tx;
				/* where output (oy, ox) of channel ci lands in y */
				int co = up ? ci % yc : ci, py = up ? ci / yc / 2 : 0, px = up ? ci / yc % 2 : 0;
				int ry = up ? 2 * oy - py : oy, rx = up ? 2 * ox - px : ox;
				if (ry < 0 || ry >= yh || rx < 0 || rx >= yw)
					continue;
				float got = y[((size_t)co * yh + ry) * yw + rx];
				if (ty < t0 || ty >= t1) {
					kept &= got == 1e9f;
					continue;
				}
				double ref = b[co];
				for (int a = 0; a < 6; a++)
					for (int q = 0; q < 6; q++)
						ref += at_of(m, i, a) * at_of(m, j, q) *
						       v[((size_t)(a * 6 + q) * c + ci) * ld + t];
				eout = fmax(eout, fabs(got - ref));
				mout = fmax(mout, fabs(ref));
			}
	ein /= min_, eout /= mout;
	CHECKF(ein < 1e-6 && eout < 1e-6 && kept, "wino ops%s c%d %dx%d k%d p%d tiles %d..%d: in "
	       "%.1e out %.1e%s", up ? " up" : s2 ? " s2" : "", c, h, w, k, p, t0, t1, ein, eout,
	       kept ? "" : ", values outside written");
	free(x), free(v), free(y), free(b);
}

static void wino_ops(int c, int h, int w, int k, int p, int t0, int t1)
{
	wino_ops_mode(c, h, w, k, p, t0, t1, 0, 0);
}

typedef int (*wino_fwd)(const p2p_backend *, const p2p_conv *, float *, const float *,
                        const float *, const float *, float *, size_t);

/* fwd gives y's bits again on 1, 2 and 3 threads, and with a workspace of
 * a quarter of wsn (one chunk's); y2 is scratch of y's size ny. */
static int wino_same_bits(wino_fwd fwd, const p2p_conv *g, const float *y, float *y2, size_t ny,
                          const float *x, const float *u, const float *b, float *ws, size_t wsn)
{
	int before = p2p_pool_threads(), same = 1;
	for (int th = 1; th <= 3; th++) {
		be->set_threads(th);
		fwd(be, g, y2, x, u, b, ws, th == 3 ? wsn / 4 : wsn);
		same &= !memcmp(y, y2, ny * 4);
	}
	be->set_threads(before);
	return same;
}

/* ConvTranspose2d (up) or Conv2d (down) 4x4 stride 2 pad 1 by Winograd
 * against the reference; threads and a one-chunk workspace give the same
 * bits. */
static void wino_s2_layer(int up, int n, int cin, int h, int w, int cout, size_t cap)
{
	p2p_conv g;
	(up ? p2p_convt2d_init : p2p_conv2d_init)(&g, n, cin, h, w, cout, 4, 2, 1);
	int tiles = up ? (h + 5) / 5 * ((w + 5) / 5) : (h / 2 + 4) / 5 * ((w / 2 + 4) / 5);
	CHECK(p2p_conv_wino_ok(be, &g) == (tiles >= 16 && cout >= 16 && cin >= 16));
	rel r = rel_of(&g);
	size_t nx = (size_t)n * cin * h * w, ny = (size_t)n * cout * g.oh * g.ow;
	size_t nw = (size_t)cout * cin * 16, wsn = p2p_conv_wino_ws(&g);
	float *x = malloc(nx * 4), *y = malloc(ny * 4), *y2 = malloc(ny * 4), *w_ = malloc(nw * 4);
	float *b = malloc(cout * 4), *u = malloc(36 * 4 * nw / 16 * 4), *ws = malloc(wsn * 4);
	fill(x, nx), fill(w_, nw), fill(b, cout);
	be->wino_weights(w_, cout, cin, 4, up ? P2P_WINO_UP : P2P_WINO_DOWN, u);
	wino_fwd fwd = up ? p2p_convt2d_forward_wino : p2p_conv2d_forward_wino;
	CHECK(fwd(be, &g, y, x, u, b, ws, wsn) == 0);
	double ey = up ? rel_err(y, 0, ny, cap, ref_big, &r, w_, x, b, g.oh * g.ow)
	               : rel_err(y, 0, ny, cap, ref_small, &r, w_, x, b, g.oh * g.ow);
	const char *what = up ? "up" : "down";
	CHECKF(ey < 2e-5, "wino %s n%d %d->%d %dx%d: y %.2e", what, n, cin, cout, h, w, ey);
	printf("# wino %s n%d %d->%d %dx%d       y %.1e\n", what, n, cin, cout, h, w, ey);
	CHECKF(wino_same_bits(fwd, &g, y, y2, ny, x, u, b, ws, wsn),
	       "wino %s n%d %d->%d %dx%d: threads or workspace change the bits", what, n, cin, cout,
	       h, w);
	free(x), free(y), free(y2), free(w_), free(b), free(u), free(ws);
}

static void wino_up_layer(int n, int cin, int h, int w, int cout, size_t cap)
{
	wino_s2_layer(1, n, cin, h, w, cout, cap);
}

static void wino_down_layer(int n, int cin, int h, int w, int cout, size_t cap)
{
	wino_s2_layer(0, n, cin, h, w, cout, cap);
}

/* The layer and the input gradient through turned weights against the
 * reference; threads; finite differences of the input gradient. */
static void wino_layer(int n, int cin, int h, int w, int cout, int k, int p, size_t cap)
{
	p2p_conv g, t;
	p2p_conv2d_init(&g, n, cin, h, w, cout, k, 1, p);
	p2p_conv_wino_input_grad(&t, &g);
	int tiles = (g.oh + 6 - k) / (7 - k) * ((g.ow + 6 - k) / (7 - k));
	CHECK(p2p_conv_wino_ok(be, &g) == (tiles >= 16));
	rel r = rel_of(&g);
	size_t nx = (size_t)n * cin * h * w, ny = (size_t)n * cout * g.oh * g.ow;
	size_t nw = (size_t)cout * cin * k * k;
	size_t wsn = p2p_conv_wino_ws(&g);
	float *x = malloc(nx * 4), *y = malloc(ny * 4), *dy = malloc(ny * 4), *dx = malloc(nx * 4);
	float *w_ = malloc(nw * 4), *b = malloc(cout * 4), *u = malloc(36 * nw * 4);
	float *ut = malloc(36 * nw * 4), *ws = malloc(wsn * 4), *y2 = malloc(ny * 4);
	fill(x, nx), fill(w_, nw), fill(b, cout), fill(dy, ny);
	be->wino_weights(w_, cout, cin, k, P2P_WINO_CONV, u);
	be->wino_weights(w_, cout, cin, k, P2P_WINO_GRAD, ut);
	CHECK(p2p_conv2d_forward_wino(be, &g, y, x, u, b, ws, wsn) == 0);
	CHECK(p2p_conv2d_forward_wino(be, &t, dx, dy, ut, NULL, ws, wsn) == 0);
	double ey = rel_err(y, 0, ny, cap, ref_small, &r, w_, x, b, g.oh * g.ow);
	double ex = rel_err(dx, 0, nx, cap, ref_big, &r, w_, dy, NULL, 1);
	CHECKF(ey < 2e-5 && ex < 2e-5, "wino n%d %d->%d %dx%d k%d p%d: y %.2e dx %.2e", n, cin, cout,
	       h, w, k, p, ey, ex);
	printf("# wino n%d %d->%d %dx%d k%d p%d           y %.1e dx %.1e\n", n, cin, cout, h, w, k, p,
	       ey, ex);
	CHECKF(wino_same_bits(p2p_conv2d_forward_wino, &g, y, y2, ny, x, u, b, ws, wsn),
	       "wino n%d %d->%d %dx%d: threads or workspace change the bits", n, cin, cout, h, w);
	/* finite differences of L = sum(y * dy) against dx: L is linear in x, so
	 * a large step loses nothing and keeps the rounding of y out */
	double efd = 0;
	size_t m = slow_ok ? 60 : 4;
	for (size_t j = 0; j < m && j < nx; j++) {
		size_t i = pick(nx, m, j);
		float x0 = x[i], hstep = 4;
		double l[2];
		for (int sgn = 0; sgn < 2; sgn++) {
			x[i] = x0 + (sgn ? -hstep : hstep);
			p2p_conv2d_forward_wino(be, &g, y2, x, u, b, ws, wsn);
			l[sgn] = 0;
			for (size_t k = 0; k < ny; k++)
				l[sgn] += (double)y2[k] * dy[k];
		}
		x[i] = x0;
		double fd = (l[0] - l[1]) / (2.0 * hstep);
		efd = fmax(efd, fabs(fd - dx[i]) / fmax(1, fabs(dx[i])));
	}
	CHECKF(efd < 1e-3, "wino n%d %d->%d %dx%d: finite differences %.1e", n, cin, cout, h, w, efd);
	free(x), free(y), free(dy), free(dx), free(w_), free(b), free(u), free(ut), free(ws), free(y2);
}

static void test_winograd(void)
{
	CHECK(be->wino_in != NULL && be->wino_out != NULL);
	if (!be->wino_in || !be->wino_out)
		return;
	wino_ops(3, 8, 8, 3, 1, 0, 2);
	wino_ops(2, 13, 10, 3, 1, 1, 4);
	wino_ops(2, 5, 3, 3, 1, 0, 2);
	wino_ops(1, 9, 19, 3, 2, 2, 3);
	wino_ops(2, 8, 8, 4, 1, 0, 3);          /* 7x7 output: a partial tile */
	wino_ops(2, 11, 13, 4, 2, 1, 4);
	wino_ops(1, 7, 5, 4, 0, 0, 2);
	wino_ops(2, 10, 9, 4, 3, 2, 5);
	wino_ops(2, 8, 8, 2, 1, 0, 2);          /* 9x9 output: a partial tile */
	wino_ops(1, 14, 9, 2, 1, 1, 3);
	wino_ops_mode(8, 8, 8, 2, 1, 0, 2, 1, 0);
	wino_ops_mode(4, 9, 14, 2, 1, 1, 2, 1, 0);
	wino_ops_mode(4, 4, 5, 2, 1, 0, 1, 1, 0);
	wino_ops_mode(2, 16, 16, 2, 0, 0, 2, 0, 1);     /* 8x8 output: a partial tile */
	wino_ops_mode(1, 22, 12, 2, 0, 1, 3, 0, 1);
	wino_ops_mode(3, 4, 2, 2, 0, 0, 1, 0, 1);
	wino_layer(1, 3, 8, 8, 4, 3, 1, 3000);
	wino_layer(2, 5, 13, 10, 7, 3, 1, 3000);
	wino_layer(1, 4, 6, 17, 3, 3, 1, 3000);
	wino_layer(3, 2, 1, 2, 5, 3, 1, 3000);
	wino_layer(1, 3, 9, 7, 2, 3, 0, 3000);
	wino_layer(1, 16, 48, 44, 8, 3, 1, 3000);     /* several chunks of tile rows */
	wino_layer(2, 6, 8, 8, 5, 4, 1, 3000);        /* D's last two: 4x4, pad 1 */
	wino_layer(1, 5, 11, 9, 3, 4, 1, 3000);
	wino_layer(1, 3, 7, 10, 4, 4, 2, 3000);
	wino_layer(1, 4, 9, 6, 2, 4, 0, 3000);
	wino_layer(2, 12, 40, 40, 8, 4, 1, 3000);
	wino_up_layer(1, 3, 4, 4, 2, 3000);
	wino_up_layer(3, 5, 8, 6, 3, 3000);           /* several images a chunk */
	wino_up_layer(2, 4, 24, 19, 3, 3000);
	wino_up_layer(1, 3, 61, 40, 2, 3000);         /* several chunks of tile rows */
	wino_down_layer(1, 3, 8, 8, 2, 3000);
	wino_down_layer(3, 5, 16, 12, 3, 3000);       /* several images a chunk */
	wino_down_layer(1, 2, 122, 80, 3, 3000);      /* several chunks of tile rows */
	if (slow_ok) {
		wino_up_layer(3, 256, 16, 16, 128, 400);  /* the U-Net's at 256 */
		wino_up_layer(2, 128, 64, 64, 32, 400);
		wino_down_layer(2, 64, 128, 128, 128, 400);   /* the U-Net's at 256 */
		wino_down_layer(4, 256, 32, 32, 512, 400);
		wino_layer(2, 64, 64, 64, 64, 3, 1, 400);
		wino_layer(1, 128, 32, 32, 256, 3, 1, 400);
		wino_layer(2, 256, 32, 32, 512, 4, 1, 400);   /* D's conv.3 at 256 */
	}
	/* refusals: a geometry it does not do, a workspace below one chunk */
	p2p_conv g;
	p2p_conv2d_init(&g, 1, 2, 9, 8, 2, 4, 2, 1);     /* odd: no space-to-depth */
	float tiny[4];
	CHECK(!p2p_conv_wino_ok(be, &g) &&
	      p2p_conv2d_forward_wino(be, &g, tiny, tiny, tiny, NULL, tiny, 4) == -1);
	p2p_conv2d_init(&g, 1, 2, 8, 8, 2, 5, 1, 2);
	CHECK(!p2p_conv_wino_ok(be, &g) &&
	      p2p_conv2d_forward_wino(be, &g, tiny, tiny, tiny, NULL, tiny, 4) == -1);
	p2p_convt2d_init(&g, 1, 2, 8, 8, 2, 4, 2, 2);
	CHECK(!p2p_conv_wino_ok(be, &g) &&
	      p2p_convt2d_forward_wino(be, &g, tiny, tiny, tiny, NULL, tiny, 4) == -1);
	p2p_conv2d_init(&g, 1, 2, 8, 8, 2, 3, 1, 1);
	CHECK(p2p_convt2d_forward_wino(be, &g, tiny, tiny, tiny, NULL, tiny, 4) == -1);
	CHECKF(p2p_conv2d_forward_wino(be, &g, tiny, tiny, tiny, NULL, tiny, 4) == -1 &&
	       strstr(p2p_errmsg(), "workspace"), "%s", p2p_errmsg());
}

static void test_bad_geometry(void)
{
	p2p_conv g;
	CHECK(p2p_conv2d_init(&g, 1, 3, 2, 2, 4, 4, 1, 0) == -1);
	CHECK(p2p_conv2d_init(&g, 0, 3, 8, 8, 4, 4, 2, 1) == -1);
	CHECK(p2p_convt2d_init(&g, 1, 3, 1, 1, 4, 2, 2, 1) == -1);
	CHECK(p2p_conv2d_init(&g, 2, 3, 8, 8, 4, 4, 2, 1) == 0);
	float tiny[4];
	CHECK(p2p_conv2d_forward(be, &g, tiny, tiny, tiny, NULL, tiny, 4) == -1);
	CHECK(strstr(p2p_errmsg(), "workspace") != NULL);
}

int main(void)
{
	be = p2p_backend_get("cpu");
	slow_ok = getenv("VALGRIND") == NULL || !*getenv("VALGRIND");
	RUN(test_bad_geometry);
	RUN(test_odd_sizes);
	RUN(test_finite_differences);
	RUN(test_rows_ops);
	RUN(test_chunked_layers);
	RUN(test_chunked_threads);
	RUN(test_winograd);
	if (slow_ok) {
		RUN(test_unet64);
		RUN(test_patchgan64);
		RUN(test_vgg64);
		RUN(test_unet256);
		RUN(test_unet256_inner_batch);
		RUN(test_patchgan256);
		RUN(test_vgg256);
	} else {
		SKIP(test_unet64, "VALGRIND set: small shapes only");
		SKIP(test_patchgan64, "VALGRIND set");
		SKIP(test_vgg64, "VALGRIND set");
		SKIP(test_unet256, "VALGRIND set");
		SKIP(test_unet256_inner_batch, "VALGRIND set");
		SKIP(test_patchgan256, "VALGRIND set");
		SKIP(test_vgg256, "VALGRIND set");
	}
	return CHECK_DONE();
}
