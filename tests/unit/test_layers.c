/* The CPU backend's ops and the thin layers against naive float64
 * references written here; every backward also against central finite
 * differences of L = sum(y * r). Errors are max |got - ref| / max |ref|.
 * VALGRIND=1 keeps to small shapes. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "err.h"
#include "layers.h"
#include "tensor.h"

#ifndef DROPOUT_BITS
#define DROPOUT_BITS 0xf825aa2ed4290ad7ULL
#endif

static const p2p_backend *be;
static int big;                 /* model-sized shapes allowed */

static uint64_t rs = 0x2545f4914f6cdd1dULL;
static uint64_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }
static float urand(void) { return (float)((rnd() >> 11) * 0x1p-53 * 2 - 1); }
static float *rvec(size_t n)
{
	float *x = malloc((n ? n : 1) * sizeof *x);
	for (size_t i = 0; i < n; i++)
		x[i] = urand();
	return x;
}
/* away from 0, for ops with a kink there */
static float *rvec_nz(size_t n)
{
	float *x = rvec(n);
	for (size_t i = 0; i < n; i++)
		if (fabsf(x[i]) < 0.05f)
			x[i] = x[i] < 0 ? -0.5f : 0.5f;
	return x;
}
static float *cvec(size_t n, float v)
{
	float *x = malloc((n ? n : 1) * sizeof *x);
	for (size_t i = 0; i < n; i++)
		x[i] = v;
	return x;
}

/* max |got - base - ref| / max |ref| */
static double err(const float *got, float base, const double *ref, size_t n)
{
	double e = 0, m = 1e-30;
	for (size_t i = 0; i < n; i++) {
		e = fmax(e, fabs(got[i] - base - ref[i]));
		m = fmax(m, fabs(ref[i]));
	}
	return e / m;
}

/* ---- finite differences: a layer as a function y = f(x) of one input ---- */

typedef void (*fwd_fn)(const float *x, float *y, void *ctx);

static double fd_check(fwd_fn f, void *ctx, float *x, size_t nx, size_t ny,
                       const float *r, const float *grad, float h)
{
	float *y = malloc(ny * sizeof *y);
	double e = 0, gm = 1e-30;
	for (size_t i = 0; i < nx; i++) {
		float x0 = x[i], xp = x0 + h, xm = x0 - h;
		double lp = 0, lm = 0;
		x[i] = xp;
		f(x, y, ctx);
		for (size_t j = 0; j < ny; j++) lp += (double)y[j] * r[j];
		x[i] = xm;
		f(x, y, ctx);
		for (size_t j = 0; j < ny; j++) lm += (double)y[j] * r[j];
		x[i] = x0;
		double fd = (lp - lm) / ((double)xp - xm);
		e = fmax(e, fabs(fd - grad[i]));
		gm = fmax(gm, fabs(grad[i]));
	}
	free(y);
	return e / fmax(gm, 1);
}

/* ---- gemm ---- */

static void gemm_case(int ta, int tb, int m, int n, int k, float alpha, float beta, int pad)
{
	int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
	int ra = ta ? k : m, rb = tb ? n : k;
	float *a = rvec((size_t)ra * lda), *b = rvec((size_t)rb * ldb), *c = rvec((size_t)m * ldc);
	double *ref = calloc((size_t)m * ldc, sizeof *ref);
	for (int i = 0; i < m; i++)
		for (int j = 0; j < ldc; j++) {
			if (j >= n) {
				ref[(size_t)i * ldc + j] = c[(size_t)i * ldc + j];  /* untouched */
				continue;
			}
			double s = 0;
			for (int l = 0; l < k; l++)
				s += (double)(ta ? a[(size_t)l * lda + i] : a[(size_t)i * lda + l]) *
				     (tb ? b[(size_t)j * ldb + l] : b[(size_t)l * ldb + j]);
			ref[(size_t)i * ldc + j] = alpha * s + (beta ? beta * c[(size_t)i * ldc + j] : 0);
		}
	be->gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
	double e = err(c, 0, ref, (size_t)m * ldc);
	CHECKF(e < 1e-5, "gemm ta %d tb %d %dx%dx%d: %.2e", ta, tb, m, n, k, e);
	free(a), free(b), free(c), free(ref);
}

static void test_gemm(void)
{
	for (int ta = 0; ta < 2; ta++)
		for (int tb = 0; tb < 2; tb++) {
			gemm_case(ta, tb, 1, 1, 1, 1, 0, 0);
			gemm_case(ta, tb, 7, 13, 5, 1, 0, 0);
			gemm_case(ta, tb, 17, 3, 29, 0.5f, 1, 3);
			gemm_case(ta, tb, 33, 65, 127, -2, 0.25f, 1);
		}
	/* batched, A shared across the batch (stride 0) */
	int m = 5, n = 7, k = 3, nb = 4;
	float *a = rvec(m * k), *b = rvec(nb * k * n), *c = rvec(nb * m * n);
	double *ref = malloc(sizeof *ref * nb * m * n);
	for (int q = 0; q < nb; q++)
		for (int i = 0; i < m; i++)
			for (int j = 0; j < n; j++) {
				double s = 0;
				for (int l = 0; l < k; l++)
					s += (double)a[i * k + l] * b[q * k * n + l * n + j];
				ref[q * m * n + i * n + j] = s;
			}
	be->gemm_batched(0, 0, m, n, k, 1, a, k, 0, b, n, k * n, 0, c, n, m * n, nb);
	CHECK(err(c, 0, ref, nb * m * n) < 1e-5);
	free(a), free(b), free(c), free(ref);
}

/* ---- memory ops ---- */

static void test_memory_ops(void)
{
	size_t n = 1000;
	float *x = be->alloc(n), *y = be->alloc(n), *h = rvec(n), *g = malloc(n * 4);
	CHECK(x && y);
	be->upload(x, h, n);
	be->copy(y, x, n);
	be->download(g, y, n);
	CHECK(memcmp(g, h, n * 4) == 0);
	be->fill(y, n, 2.5f);
	CHECK(y[0] == 2.5f && y[n - 1] == 2.5f);
	be->zero(y, n);
	CHECK(y[0] == 0 && y[n - 1] == 0);
	be->axpy(y, x, n, 3);      /* y = 3x */
	be->scale(y, n, 0.5f);     /* y = 1.5x */
	double e = 0;
	for (size_t i = 0; i < n; i++)
		e = fmax(e, fabs(y[i] - 1.5 * x[i]));
	CHECK(e < 1e-6);
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += x[i];
	CHECK_NEAR(be->sum(x, n), s, 1e-6);
	CHECK(be->sum(x, 0) == 0);
	be->free(x), be->free(y), free(h), free(g);
	be->free(NULL);
	CHECK(be->alloc((size_t)1 << 50) == NULL);
	CHECK(strstr(p2p_errmsg(), "out of memory") != NULL);
}

static void test_copy2d_swap01(void)
{
	int a = 3, b = 4;
	long p = 5;
	float *x = rvec(a * b * p), *y = rvec(a * b * p), *z = cvec(a * b * p, 1);
	be->swap01(x, y, a, b, p, 0);
	int bad = 0;
	for (int i = 0; i < a; i++)
		for (int j = 0; j < b; j++)
			for (long q = 0; q < p; q++)
				bad += y[(j * a + i) * p + q] != x[(i * b + j) * p + q];
	CHECK(bad == 0);
	be->swap01(y, z, b, a, p, 1);       /* z = 1 + x */
	for (int i = 0; i < a * b * p; i++)
		bad += z[i] != 1 + x[i];
	CHECK(bad == 0);
	/* copy2d: rows of 3 out of rows of 7, into rows of 5 at offset 1 */
	float src[4 * 7], dst[4 * 5];
	for (int i = 0; i < 28; i++) src[i] = i;
	for (int i = 0; i < 20; i++) dst[i] = -1;
	be->copy2d(dst + 1, 5, src + 2, 7, 4, 3, 0);
	for (int r = 0; r < 4; r++)
		for (int c = 0; c < 5; c++)
			bad += dst[r * 5 + c] != (c >= 1 && c <= 3 ? src[r * 7 + 2 + c - 1] : -1);
	be->copy2d(dst + 1, 5, src + 2, 7, 4, 3, 1);
	for (int r = 0; r < 4; r++)
		bad += dst[r * 5 + 2] != 2 * src[r * 7 + 3];
	CHECK(bad == 0);
	free(x), free(y), free(z);
}

/* <im2col(x), c> = <x, col2im(c)>: col2im is the adjoint, and it accumulates */
static void test_im2col_adjoint(void)
{
	int n = 2, c = 3, h = 7, w = 6, k = 4, s = 2, p = 1;
	int oh = (h + 2 * p - k) / s + 1, ow = (w + 2 * p - k) / s + 1;
	size_t nx = (size_t)n * c * h * w, nc = (size_t)c * k * k * n * oh * ow;
	float *x = rvec(nx), *col = malloc(nc * 4), *cc = rvec(nc), *xa = cvec(nx, 1);
	be->im2col(x, n, c, h, w, k, s, p, oh, ow, col);
	be->col2im(cc, n, c, h, w, k, s, p, oh, ow, xa);
	double l = 0, r = 0;
	for (size_t i = 0; i < nc; i++) l += (double)col[i] * cc[i];
	for (size_t i = 0; i < nx; i++) r += (double)x[i] * (xa[i] - 1);
	CHECK_NEAR(l, r, 1e-5);
	free(x), free(col), free(cc), free(xa);
}

static void test_bias_affine(void)
{
	int n = 3, c = 5;
	long p = 7;
	size_t ny = n * c * p;
	float *y = rvec(ny), *y0 = malloc(ny * 4), *b = rvec(c), *db = cvec(c, 0.5f);
	float *sc = rvec(c), *sh = rvec(c), *z = malloc(ny * 4), *dx = cvec(ny, 0.25f);
	memcpy(y0, y, ny * 4);
	be->bias_add(y, b, n, c, p);
	double *ref = malloc(ny * sizeof *ref), *rb = calloc(c, sizeof *rb);
	for (size_t i = 0; i < ny; i++)
		ref[i] = (double)y0[i] + b[i / p % c];
	CHECK(err(y, 0, ref, ny) < 1e-6);
	be->bias_grad(db, y0, n, c, p);
	for (size_t i = 0; i < ny; i++)
		rb[i / p % c] += y0[i];
	CHECK(err(db, 0.5f, rb, c) < 1e-6);
	be->chan_affine(y0, z, n, c, p, sc, sh);
	for (size_t i = 0; i < ny; i++)
		ref[i] = (double)y0[i] * sc[i / p % c] + sh[i / p % c];
	CHECK(err(z, 0, ref, ny) < 1e-6);
	be->chan_affine(y0, z, n, c, p, sc, NULL);
	for (size_t i = 0; i < ny; i++)
		ref[i] = (double)y0[i] * sc[i / p % c];
	CHECK(err(z, 0, ref, ny) < 1e-6);
	be->chan_affine_bwd(y0, dx, n, c, p, sc);      /* same formula, accumulated */
	CHECK(err(dx, 0.25f, ref, ny) < 1e-6);
	free(y), free(y0), free(b), free(db), free(sc), free(sh), free(z), free(dx), free(ref), free(rb);
}

/* ---- InstanceNorm ---- */

typedef struct { int n, c; long hw; float *mean, *rstd; } in_ctx;

static void in_fwd(const float *x, float *y, void *v)
{
	in_ctx *c = v;
	p2p_instnorm_forward(be, y, c->mean, c->rstd, x, c->n, c->c, c->hw);
}

static void instnorm_case(int n, int c, long hw, int inplace, int fd)
{
	size_t nx = (size_t)n * c * hw;
	float *x = rvec(nx), *y = malloc(nx * 4), *dy = rvec(nx), *dx = cvec(nx, 0.5f);
	float *mean = malloc(n * c * 4), *rstd = malloc(n * c * 4);
	double *ry = malloc(nx * 8), *rdx = malloc(nx * 8), *rm = malloc(n * c * 8), *rr = malloc(n * c * 8);
	for (int i = 0; i < 3 && i < (int)nx; i++)
		x[i] += 3;        /* a non-zero mean */
	for (int pl = 0; pl < n * c; pl++) {
		const float *xp = x + pl * hw;
		double m = 0, v = 0, g = 0, gy = 0;
		for (long q = 0; q < hw; q++) m += xp[q];
		m /= hw;
		for (long q = 0; q < hw; q++) v += (xp[q] - m) * (xp[q] - m);
		v /= hw;
		double r = 1 / sqrt(v + 1e-5);
		for (long q = 0; q < hw; q++) ry[pl * hw + q] = (xp[q] - m) * r;
		for (long q = 0; q < hw; q++) {
			g += dy[pl * hw + q];
			gy += dy[pl * hw + q] * ry[pl * hw + q];
		}
		g /= hw, gy /= hw;
		for (long q = 0; q < hw; q++)
			rdx[pl * hw + q] = r * (dy[pl * hw + q] - g - ry[pl * hw + q] * gy);
		rm[pl] = m, rr[pl] = r;
	}
	float *xin = x;
	if (inplace) {
		xin = malloc(nx * 4);
		memcpy(xin, x, nx * 4);
		y = (free(y), xin);
	}
	p2p_instnorm_forward(be, y, mean, rstd, xin, n, c, hw);
	p2p_instnorm_backward(be, dx, dy, y, rstd, n, c, hw);
	double ey = err(y, 0, ry, nx), ex = err(dx, 0.5f, rdx, nx);
	double em = err(mean, 0, rm, n * c), er = err(rstd, 0, rr, n * c);
	CHECKF(ey < 1e-5 && ex < 1e-5 && em < 1e-5 && er < 1e-5,
	       "instnorm %d %d %ld: y %.2e dx %.2e mean %.2e rstd %.2e", n, c, hw, ey, ex, em, er);
	if (fd) {
		float *g = calloc(nx, 4);
		p2p_instnorm_backward(be, g, dy, y, rstd, n, c, hw);
		in_ctx ctx = {n, c, hw, mean, rstd};
		double e = fd_check(in_fwd, &ctx, x, nx, nx, dy, g, 1e-2f);
		CHECKF(e < 2e-3, "instnorm fd %.2e", e);
		printf("# instnorm fd (%d, %d, %ld): %.1e\n", n, c, hw, e);
		free(g);
	}
	printf("# instnorm (%d, %d, %ld)%s: y %.1e dx %.1e\n", n, c, hw, inplace ? " in place" : "", ey, ex);
	free(x), free(y), free(dy), free(dx), free(mean), free(rstd);
	free(ry), free(rdx), free(rm), free(rr);
}

static void test_instnorm(void)
{
	instnorm_case(2, 3, 17, 0, 1);
	instnorm_case(3, 2, 4, 0, 1);
	instnorm_case(2, 3, 1, 0, 0);      /* one element: y = 0, dx = 0 */
	instnorm_case(2, 5, 33, 1, 0);
	if (big) {
		instnorm_case(2, 128, 64 * 64, 0, 0);
		instnorm_case(1, 64, 128 * 128, 0, 0);
		instnorm_case(4, 512, 4, 0, 0);
	}
}

/* ---- activations ---- */

typedef struct { int kind; float slope; } act_ctx;

static void act_fwd(const float *x, float *y, void *v)
{
	act_ctx *c = v;
	if (c->kind == 0)
		p2p_leaky_forward(be, y, x, 37, c->slope);
	else if (c->kind == 1)
		p2p_relu_forward(be, y, x, 37);
	else
		p2p_tanh_forward(be, y, x, 37);
}

static void test_activations(void)
{
	size_t n = 37;
	const char *name[3] = {"leaky", "relu", "tanh"};
	for (int kind = 0; kind < 3; kind++) {
		act_ctx ctx = {kind, 0.2f};
		float *x = rvec_nz(n), *y = malloc(n * 4), *dy = rvec(n), *dx = cvec(n, 0.5f);
		double ry[37], rdx[37];
		for (size_t i = 0; i < n; i++) {
			double s = kind == 0 ? 0.2 : 0;
			ry[i] = kind == 2 ? tanh(x[i]) : x[i] > 0 ? x[i] : s * x[i];
			rdx[i] = kind == 2 ? dy[i] * (1 - ry[i] * ry[i]) : x[i] > 0 ? dy[i] : s * dy[i];
		}
		act_fwd(x, y, &ctx);
		if (kind == 0)
			p2p_leaky_backward(be, dx, dy, y, n, 0.2f);
		else if (kind == 1)
			p2p_relu_backward(be, dx, dy, y, n);
		else
			p2p_tanh_backward(be, dx, dy, y, n);
		double ey = err(y, 0, ry, n), ex = err(dx, 0.5f, rdx, n);
		float *g = calloc(n, 4);
		for (size_t i = 0; i < n; i++) g[i] = dx[i] - 0.5f;
		double ef = fd_check(act_fwd, &ctx, x, n, n, dy, g, 1e-3f);
		CHECKF(ey < 1e-6 && ex < 1e-6 && ef < 1e-3, "%s: y %.2e dx %.2e fd %.2e",
		       name[kind], ey, ex, ef);
		/* in place */
		float *z = malloc(n * 4);
		memcpy(z, x, n * 4);
		act_fwd(z, z, &ctx);
		CHECK(memcmp(z, y, n * 4) == 0);
		free(x), free(y), free(dy), free(dx), free(g), free(z);
	}
}

/* tanh across its range, every 2^-12 from -12 to 12 and small values down
 * to 1e-30, against the double one: within 3e-7 absolutely and 3 ulp near
 * 0; infinities give +-1 and NaN stays NaN */
static void test_tanh_range(void)
{
	size_t n = 2 * 12 * 4096 + 1 + 60;
	float *x = malloc(n * 4), *y = malloc(n * 4);
	size_t m = 0;
	for (long i = -12 * 4096; i <= 12 * 4096; i++)
		x[m++] = (float)i / 4096;
	for (int i = 0; i < 30; i++)
		x[m++] = (float)pow(10, -i - 1), x[m++] = -(float)pow(10, -i * 0.7 - 1.5);
	p2p_tanh_forward(be, y, x, m);
	double eabs = 0, erel = 0;
	for (size_t i = 0; i < m; i++) {
		double ref = tanh((double)x[i]), e = fabs(y[i] - ref);
		eabs = fmax(eabs, e);
		if (fabs(x[i]) < 0.5 && x[i] != 0)
			erel = fmax(erel, e / fabs(ref));
	}
	float sp[3] = {INFINITY, -INFINITY, NAN}, sy[3];
	p2p_tanh_forward(be, sy, sp, 3);
	CHECKF(eabs < 3e-7 && erel < 3.6e-7 && sy[0] == 1 && sy[1] == -1 && isnan(sy[2]),
	       "tanh: abs %.2e, rel near 0 %.2e, tanh(+-inf, nan) = %g %g %g", eabs, erel, sy[0],
	       sy[1], sy[2]);
	printf("# tanh: abs %.2e, rel near 0 %.2e\n", eabs, erel);
	free(x), free(y);
}

/* ---- dropout ---- */

static void test_dropout(void)
{
	size_t n = big ? 1 << 20 : 1 << 12;
	float *x = rvec(n), *y = malloc(n * 4), *y2 = malloc(n * 4), *dx = cvec(n, 0.5f);
	uint64_t seed = 42, ctr = 1000;
	p2p_dropout_forward(be, y, x, n, 0.5f, seed, ctr);
	size_t kept = 0;
	int bad = 0;
	for (size_t i = 0; i < n; i++) {
		int k = p2p_dropout_keep(seed, ctr + i, 0.5f);
		kept += k;
		bad += y[i] != (k ? x[i] * 2 : 0);
	}
	CHECK(bad == 0);
	/* a fair coin: within 5 sigma */
	CHECKF(fabs((double)kept / n - 0.5) < 5 * 0.5 / sqrt((double)n), "kept %zu of %zu", kept, n);
	/* counter based: a slice with the counter moved along gives the same mask */
	p2p_dropout_forward(be, y2, x + 100, n - 100, 0.5f, seed, ctr + 100);
	CHECK(memcmp(y2, y + 100, (n - 100) * 4) == 0);
	/* another seed or counter, another mask */
	p2p_dropout_forward(be, y2, x, n, 0.5f, seed + 1, ctr);
	CHECK(memcmp(y2, y, n * 4) != 0);
	/* backward: dx += dy * mask * 2, here dy = x so dx - 0.5 = y */
	p2p_dropout_backward(be, dx, x, n, 0.5f, seed, ctr);
	for (size_t i = 0; i < n; i++)
		bad += dx[i] != 0.5f + y[i];
	CHECK(bad == 0);
	/* p = 0 keeps everything */
	p2p_dropout_forward(be, y2, x, n, 0, seed, ctr);
	CHECK(memcmp(y2, x, n * 4) == 0);
	/* the mask is pinned: a CUDA backend must draw exactly these bits */
	uint64_t bits = 0;
	for (int i = 0; i < 64; i++)
		bits |= (uint64_t)p2p_dropout_keep(42, i, 0.5f) << i;
	printf("# dropout mask (seed 42, 0..63): %016llx\n", (unsigned long long)bits);
	CHECKF(bits == DROPOUT_BITS, "%016llx", (unsigned long long)bits);
	free(x), free(y), free(y2), free(dx);
}

/* ---- pooling, concat ---- */

typedef struct { int n, c, h, w; } pool_ctx;

static void pool_fwd(const float *x, float *y, void *v)
{
	pool_ctx *c = v;
	p2p_maxpool2_forward(be, y, x, c->n, c->c, c->h, c->w);
}

static void pool_case(int n, int c, int h, int w, int ties)
{
	int oh = h / 2, ow = w / 2;
	size_t nx = (size_t)n * c * h * w, ny = (size_t)n * c * oh * ow;
	float *x = rvec(nx), *y = malloc(ny * 4), *dy = rvec(ny), *dx = cvec(nx, 0.5f);
	if (ties)
		for (size_t i = 0; i < nx; i++)
			x[i] = (float)(rnd() % 3);
	double *ry = malloc(ny * 8), *rdx = calloc(nx, 8);
	for (int pl = 0; pl < n * c; pl++)
		for (int oy = 0; oy < oh; oy++)
			for (int ox = 0; ox < ow; ox++) {
				size_t best = 0;
				double m = -INFINITY;
				for (int dy_ = 0; dy_ < 2; dy_++)
					for (int dx_ = 0; dx_ < 2; dx_++) {
						size_t i = ((size_t)pl * h + 2 * oy + dy_) * w + 2 * ox + dx_;
						if (x[i] > m) m = x[i], best = i;
					}
				size_t o = ((size_t)pl * oh + oy) * ow + ox;
				ry[o] = m;
				rdx[best] += dy[o];
			}
	p2p_maxpool2_forward(be, y, x, n, c, h, w);
	p2p_maxpool2_backward(be, dx, dy, x, n, c, h, w);
	double ey = err(y, 0, ry, ny), ex = err(dx, 0.5f, rdx, nx);
	CHECKF(ey == 0 && ex < 1e-7, "maxpool %d %d %d %d: %.2e %.2e", n, c, h, w, ey, ex);
	if (!ties) {
		float *g = calloc(nx, 4);
		p2p_maxpool2_backward(be, g, dy, x, n, c, h, w);
		pool_ctx ctx = {n, c, h, w};
		double e = fd_check(pool_fwd, &ctx, x, nx, ny, dy, g, 1e-4f);
		CHECKF(e < 1e-3, "maxpool fd %.2e", e);
		free(g);
	}
	free(x), free(y), free(dy), free(dx), free(ry), free(rdx);
}

static void test_maxpool(void)
{
	pool_case(2, 3, 6, 8, 0);
	pool_case(2, 3, 7, 5, 0);       /* odd: the last row and column are dropped */
	pool_case(1, 4, 8, 8, 1);       /* ties: the first maximum takes the gradient */
	if (big)
		pool_case(1, 64, 256, 256, 1);   /* ties: no finite differences */
}

static void test_concat(void)
{
	int n = 3, ca = 2, cb = 5;
	long hw = 7;
	size_t na = n * ca * hw, nb = n * cb * hw, ny = na + nb;
	float *a = rvec(na), *b = rvec(nb), *y = malloc(ny * 4);
	float *da = cvec(na, 0.5f), *db = cvec(nb, 0.5f);
	p2p_concat_forward(be, y, a, b, n, ca, cb, hw);
	int bad = 0;
	for (int i = 0; i < n; i++)
		for (int c = 0; c < ca + cb; c++)
			for (long q = 0; q < hw; q++) {
				float want = c < ca ? a[(i * ca + c) * hw + q] : b[(i * cb + c - ca) * hw + q];
				bad += y[(i * (ca + cb) + c) * hw + q] != want;
			}
	CHECK(bad == 0);
	p2p_concat_backward(be, da, db, y, n, ca, cb, hw);   /* dy = y */
	for (size_t i = 0; i < na; i++) bad += da[i] != 0.5f + a[i];
	for (size_t i = 0; i < nb; i++) bad += db[i] != 0.5f + b[i];
	CHECK(bad == 0);
	p2p_concat_backward(be, NULL, db, y, n, ca, cb, hw);
	CHECK(db[0] == 0.5f + 2 * b[0]);
	free(a), free(b), free(y), free(da), free(db);
}

/* ---- losses ---- */

static void test_losses(void)
{
	size_t n = big ? 300001 : 3001;
	float *a = rvec(n), *b = rvec(n), *da = malloc(n * 4);
	a[5] = b[5];    /* an exact tie: L1's gradient there is 0 */
	for (int kind = 0; kind < 3; kind++) {
		double s = 0, *rg = malloc(n * 8);
		float t = 1, gs = 3;
		for (size_t i = 0; i < n; i++) {
			double d = kind == 0 ? (double)a[i] - t : (double)a[i] - b[i];
			s += kind == 2 ? fabs(d) : d * d;
			rg[i] = kind == 2 ? gs * (d > 0 ? 1 : d < 0 ? -1 : 0) / n : gs * 2 * d / n;
		}
		s /= n;
		for (size_t i = 0; i < n; i++) da[i] = 0;
		double v = kind == 0 ? p2p_mse_const_loss(be, a, n, t, da, gs) :
		           kind == 1 ? p2p_mse_loss(be, a, b, n, da, gs) :
		                       p2p_l1_loss(be, a, b, n, da, gs);
		double v2 = kind == 0 ? p2p_mse_const_loss(be, a, n, t, NULL, 0) :
		            kind == 1 ? p2p_mse_loss(be, a, b, n, NULL, 0) :
		                        p2p_l1_loss(be, a, b, n, NULL, 0);
		CHECKF(fabs(v - s) < 1e-6 * s && v == v2, "loss %d: %.9g vs %.9g", kind, v, s);
		CHECKF(err(da, 0, rg, n) < 1e-5, "loss %d grad %.2e", kind, err(da, 0, rg, n));
		if (kind == 2)
			CHECK(da[5] == 0);
		/* finite differences on a few entries */
		double ef = 0, gmax = 1e-30, ge = err(da, 0, rg, n);
		for (int j = 0; j < 20; j++) {
			size_t i = j == 0 ? 0 : rnd() % n;
			/* h = 1e-2: the losses are quadratic or piecewise linear, so
			 * central differences are exact but for rounding and kinks */
			float a0 = a[i], h = 1e-2f;
			if (i == 5 || (kind == 2 && fabsf(a0 - b[i]) < 2 * h))
				continue;
			a[i] = a0 + h;
			double lp = kind == 0 ? p2p_mse_const_loss(be, a, n, t, NULL, 0) :
			            kind == 1 ? p2p_mse_loss(be, a, b, n, NULL, 0) :
			                        p2p_l1_loss(be, a, b, n, NULL, 0);
			a[i] = a0 - h;
			double lm = kind == 0 ? p2p_mse_const_loss(be, a, n, t, NULL, 0) :
			            kind == 1 ? p2p_mse_loss(be, a, b, n, NULL, 0) :
			                        p2p_l1_loss(be, a, b, n, NULL, 0);
			double fd = gs * (lp - lm) / (((double)(a0 + h)) - (a0 - h));
			a[i] = a0;
			ef = fmax(ef, fabs(fd - da[i]));
			gmax = fmax(gmax, fabs(rg[i]));
		}
		ef /= gmax;
		CHECKF(ef < 1e-2, "loss %d fd %.2e", kind, ef);
		/* the gradient accumulates */
		float *d2 = malloc(n * 4);
		memcpy(d2, da, n * 4);
		if (kind == 0)
			p2p_mse_const_loss(be, a, n, t, da, gs);
		else if (kind == 1)
			p2p_mse_loss(be, a, b, n, da, gs);
		else
			p2p_l1_loss(be, a, b, n, da, gs);
		int bad = 0;
		for (size_t i = 0; i < n; i++)
			bad += da[i] != 2 * d2[i];
		CHECK(bad == 0);
		free(d2);
		printf("# loss %d: value %.2e grad %.2e fd %.2e\n", kind, fabs(v - s) / s, ge, ef);
		free(rg);
	}
	CHECK(p2p_mse_loss(be, a, b, 0, NULL, 1) == 0);
	free(a), free(b), free(da);
}

/* The thread count does not change the bits of a reduction or a plane op. */
static void test_reduction_deterministic(void)
{
	size_t n = 1 << 18;
	float *a = rvec(n), *b = rvec(n);
	be->set_threads(2);
	double v2 = be->l1(a, b, n, NULL, 0), s2 = be->sum(a, n);
	be->set_threads(1);
	double v1 = be->l1(a, b, n, NULL, 0), s1 = be->sum(a, n);
	be->set_threads(5);
	double v5 = be->l1(a, b, n, NULL, 0), s5 = be->sum(a, n);
	float *y1 = malloc(n * 4), *y5 = malloc(n * 4);
	be->instnorm_fwd(a, y5, b, b + 64, 64, n / 64, 1e-5f);
	be->set_threads(1);
	be->instnorm_fwd(a, y1, b, b + 64, 64, n / 64, 1e-5f);
	be->set_threads(2);
	CHECK(v1 == v2 && s1 == s2 && v5 == v2 && s5 == s2);
	CHECK(memcmp(y1, y5, n * 4) == 0);
	free(y1), free(y5);
	free(a), free(b);
}

/* The backend's thread pool: two threads calling at once, and a forked child. */
typedef struct { const float *a; size_t n; double s; } sum_job;

static void *sum_thread(void *v)
{
	sum_job *j = v;
	for (int r = 0; r < 20; r++)
		j->s = be->sum(j->a, j->n);
	return NULL;
}

static void test_pool_callers(void)
{
	size_t n = 1 << 18;
	float *a = rvec(n);
	double want = be->sum(a, n);
	sum_job j[2] = {{a, n, 0}, {a, n, 0}};
	pthread_t t[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&t[i], NULL, sum_thread, &j[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	CHECK(j[0].s == want && j[1].s == want);
	if (!big) {         /* valgrind counts the child's unfreed memory as errors */
		free(a);
		return;
	}
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		alarm(10);      /* a child stuck on the parent's workers dies */
		_exit(be->sum(a, n) == want ? 0 : 1);
	}
	int st = -1;
	waitpid(pid, &st, 0);
	CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
	free(a);
}

int main(void)
{
	be = p2p_backend_get("cpu");
	big = getenv("VALGRIND") == NULL || !*getenv("VALGRIND");
	RUN(test_gemm);
	RUN(test_memory_ops);
	RUN(test_copy2d_swap01);
	RUN(test_im2col_adjoint);
	RUN(test_bias_affine);
	RUN(test_instnorm);
	RUN(test_activations);
	RUN(test_tanh_range);
	RUN(test_dropout);
	RUN(test_maxpool);
	RUN(test_concat);
	RUN(test_losses);
	RUN(test_reduction_deterministic);
	RUN(test_pool_callers);
	return CHECK_DONE();
}
