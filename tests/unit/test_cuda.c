/* The CUDA backend against the CPU backend: every op of the table, forward
 * and backward, on the same inputs on awkward sizes; Conv2d and
 * ConvTranspose2d through the layer code; determinism of the GPU's
 * reductions. Error measure: the normwise relative error
 * ||gpu - cpu|| / ||cpu||, under 1e-4 with TF32 off and 1e-2 with it on;
 * dropout masks, Adam, im2col and the other exact ops must match bit for
 * bit. Each comparison prints its error as a TAP comment.
 *
 * Without a GPU (or in a build without the CUDA backend) every GPU test is
 * reported as skipped and the binary exits 0. */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "err.h"
#include "layers.h"
#include "ops_cuda.h"
#include "tensor.h"

#define TOL 1e-4                /* FP32 on both sides */
#define TOL_TF32 1e-2

static const p2p_backend *cpu, *gpu;

static uint64_t rs = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }
static float urand(void) { return (float)((rnd() >> 11) * 0x1p-53 * 2 - 1); }

static float *hvec(size_t n)
{
	float *x = malloc((n ? n : 1) * sizeof *x);
	for (size_t i = 0; i < n; i++)
		x[i] = urand();
	return x;
}

/* ---- one buffer on both backends ---- */

typedef struct {
	float *c, *g;               /* CPU and GPU memory */
	size_t n;
} pair;

static void pset(pair *p, const float *h)
{
	cpu->upload(p->c, h, p->n);
	gpu->upload(p->g, h, p->n);
}

/* h NULL: uniform in [-1, 1) */
static pair pnew(size_t n, const float *h)
{
	pair p = {cpu->alloc(n), gpu->alloc(n), n};
	float *r = h ? NULL : hvec(n);
	pset(&p, h ? h : r);
	free(r);
	return p;
}

static pair pconst(size_t n, float v)
{
	pair p = {cpu->alloc(n), gpu->alloc(n), n};
	cpu->fill(p.c, n, v);
	gpu->fill(p.g, n, v);
	return p;
}

static void pfree(pair *p)
{
	cpu->free(p->c);
	gpu->free(p->g);
	p->c = p->g = NULL;
}

static float *pdown(const pair *p)
{
	float *h = malloc((p->n ? p->n : 1) * sizeof *h);
	gpu->download(h, p->g, p->n);
	return h;
}

static double nerr(const float *got, const float *ref, size_t n)
{
	double e = 0, r = 0, g = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)got[i] - ref[i];
		e += d * d;
		r += (double)ref[i] * ref[i];
		g += (double)got[i] * got[i];
	}
	if (e == 0)
		return 0;
	return sqrt(e) / sqrt(r > 0 ? r : g > 0 ? g : 1);
}

/* GPU result against the CPU's: print the error, check it. */
static double pcmp(const char *what, const pair *p, double tol)
{
	float *h = pdown(p);
	double e = nerr(h, p->c, p->n);
	printf("#   %-36s error %.2e (limit %.0e)\n", what, e, tol);
	CHECKF(e < tol, "%s: normwise error %.3g", what, e);
	free(h);
	return e;
}

/* The same bits. */
static void psame(const char *what, const pair *p)
{
	float *h = pdown(p);
	size_t bad = 0, first = 0;
	for (size_t i = 0; i < p->n; i++)
		if (memcmp(&h[i], &p->c[i], sizeof *h) != 0 && bad++ == 0)
			first = i;
	printf("#   %-36s %s (%zu of %zu differ)\n", what, bad ? "DIFFER" : "identical",
	       bad, p->n);
	CHECKF(bad == 0, "%s: %zu of %zu differ, first at %zu: gpu %.9g cpu %.9g", what,
	       bad, p->n, first, h[first], p->c[first]);
	free(h);
}

static void status_ok(void)
{
	int st = gpu->status();
	CHECKF(st == 0, "status: %s", p2p_errmsg());
}

/* ---- memory and copies ---- */

static void test_memory(void)
{
	size_t n = 1000003;
	size_t live = p2p_cuda_mem_live();
	pair a = pnew(n, NULL), b = pnew(n, NULL);
	CHECK(p2p_cuda_mem_live() >= live + 2 * n * sizeof(float));
	CHECK(p2p_cuda_mem_peak() >= p2p_cuda_mem_live());
	psame("upload/download", &a);
	cpu->copy(b.c, a.c, n), gpu->copy(b.g, a.g, n);
	psame("copy", &b);
	cpu->fill(b.c, n, -2.5f), gpu->fill(b.g, n, -2.5f);
	psame("fill", &b);
	cpu->zero(b.c + 5, n - 9), gpu->zero(b.g + 5, n - 9);
	psame("zero (offset)", &b);
	cpu->scale(a.c, n, 0.37f), gpu->scale(a.g, n, 0.37f);
	psame("scale", &a);
	pair c = pnew(n, NULL);
	cpu->axpy(c.c, a.c, n, -1.7f), gpu->axpy(c.g, a.g, n, -1.7f);
	psame("axpy", &c);
	/* empty ops are no-ops, not errors */
	gpu->fill(b.g, 0, 1), gpu->copy(b.g, a.g, 0), gpu->zero(b.g, 0);
	gpu->scale(b.g, 0, 2), gpu->axpy(b.g, a.g, 0, 1);
	pfree(&a), pfree(&b), pfree(&c);
	CHECK(p2p_cuda_mem_live() == live);
	status_ok();
}

static void test_copy2d_swap01(void)
{
	/* 7 rows of 333 out of rows of 400 into rows of 500, both betas */
	pair s = pnew(7 * 400, NULL), d = pnew(7 * 500, NULL);
	cpu->copy2d(d.c + 3, 500, s.c + 1, 400, 7, 333, 0);
	gpu->copy2d(d.g + 3, 500, s.g + 1, 400, 7, 333, 0);
	psame("copy2d beta 0", &d);
	cpu->copy2d(d.c + 3, 500, s.c + 1, 400, 7, 333, 1);
	gpu->copy2d(d.g + 3, 500, s.g + 1, 400, 7, 333, 1);
	psame("copy2d beta 1", &d);
	/* one row: the strides do not matter */
	cpu->copy2d(d.c, 0, s.c, 0, 1, 1000, 0), gpu->copy2d(d.g, 0, s.g, 0, 1, 1000, 0);
	psame("copy2d one row", &d);
	pfree(&s), pfree(&d);

	int shapes[][3] = {{5, 7, 131}, {24, 512, 1}, {3, 2, 4096}, {1, 9, 17}};
	for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++) {
		int a = shapes[t][0], b = shapes[t][1], p = shapes[t][2];
		size_t n = (size_t)a * b * p;
		pair x = pnew(n, NULL), y = pnew(n, NULL);
		char what[64];
		cpu->swap01(x.c, y.c, a, b, p, 0), gpu->swap01(x.g, y.g, a, b, p, 0);
		snprintf(what, sizeof what, "swap01 (%d, %d, %d) beta 0", a, b, p);
		psame(what, &y);
		cpu->swap01(x.c, y.c, a, b, p, 1), gpu->swap01(x.g, y.g, a, b, p, 1);
		snprintf(what, sizeof what, "swap01 (%d, %d, %d) beta 1", a, b, p);
		psame(what, &y);
		pfree(&x), pfree(&y);
	}
	status_ok();
}

/* ---- matrix products ---- */

static void gemm_case(int ta, int tb, int m, int n, int k, float alpha, float beta,
                      double tol)
{
	/* stored shapes, with padded row strides */
	int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
	int lda = ac + 3, ldb = bc + 1, ldc = n + 2;
	pair a = pnew((size_t)ar * lda, NULL), b = pnew((size_t)br * ldb, NULL);
	pair c = pnew((size_t)m * ldc, NULL);
	cpu->gemm(ta, tb, m, n, k, alpha, a.c, lda, b.c, ldb, beta, c.c, ldc);
	gpu->gemm(ta, tb, m, n, k, alpha, a.g, lda, b.g, ldb, beta, c.g, ldc);
	char what[80];
	snprintf(what, sizeof what, "gemm %c%c %dx%dx%d beta %g", ta ? 'T' : 'N',
	         tb ? 'T' : 'N', m, n, k, beta);
	pcmp(what, &c, tol);
	pfree(&a), pfree(&b), pfree(&c);
}

static void gemm_all(double tol)
{
	for (int t = 0; t < 4; t++) {
		int ta = t & 1, tb = t >> 1;
		gemm_case(ta, tb, 67, 45, 129, 0.7f, 0, tol);
		gemm_case(ta, tb, 67, 45, 129, 1, 1.3f, tol);
		gemm_case(ta, tb, 1, 300, 17, 1, 0, tol);
		gemm_case(ta, tb, 513, 1, 64, 1, 1, tol);
		gemm_case(ta, tb, 256, 1000, 1024, 1, 0, tol);
	}
}

static void gemm_batched_case(int ta, int tb, int shared_a, double tol)
{
	int m = 33, n = 70, k = 41, batch = 5;
	int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
	long sa = shared_a ? 0 : (long)ar * ac + 7, sb = (long)br * bc + 3;
	long sc = (long)m * n + 5;
	pair a = pnew((size_t)(shared_a ? ar * ac : sa * batch), NULL);
	pair b = pnew((size_t)sb * batch, NULL), c = pnew((size_t)sc * batch, NULL);
	cpu->gemm_batched(ta, tb, m, n, k, 1, a.c, ac, sa, b.c, bc, sb, 0.5f, c.c, n, sc, batch);
	gpu->gemm_batched(ta, tb, m, n, k, 1, a.g, ac, sa, b.g, bc, sb, 0.5f, c.g, n, sc, batch);
	char what[80];
	snprintf(what, sizeof what, "gemm_batched %c%c x%d%s", ta ? 'T' : 'N', tb ? 'T' : 'N',
	         batch, shared_a ? " shared A" : "");
	pcmp(what, &c, tol);
	pfree(&a), pfree(&b), pfree(&c);
}

static void test_gemm(void)
{
	p2p_cuda_set_tf32(0);
	gemm_all(TOL);
	for (int t = 0; t < 4; t++)
		gemm_batched_case(t & 1, t >> 1, t == 2, TOL);
	status_ok();
}

static void test_gemm_tf32(void)
{
	p2p_cuda_set_tf32(1);
	CHECK(p2p_cuda_tf32() == 1);
	gemm_all(TOL_TF32);
	for (int t = 0; t < 4; t++)
		gemm_batched_case(t & 1, t >> 1, t == 1, TOL_TF32);
	p2p_cuda_set_tf32(0);
	status_ok();
}

/* ---- convolution helpers and layers ---- */

typedef struct { int n, c, h, w, k, s, p; } geo;

static const geo geos[] = {
	{2, 3, 13, 11, 4, 2, 1}, {3, 2, 9, 9, 3, 1, 1}, {2, 4, 7, 5, 1, 1, 0},
	{1, 5, 12, 12, 4, 1, 1}, {2, 3, 10, 15, 3, 2, 0}, {2, 2, 11, 8, 5, 3, 2},
	{4, 8, 2, 2, 4, 2, 1},   {1, 1, 64, 64, 4, 2, 1},
};

static void test_im2col_col2im(void)
{
	for (size_t t = 0; t < sizeof geos / sizeof *geos; t++) {
		geo g = geos[t];
		int oh = (g.h + 2 * g.p - g.k) / g.s + 1, ow = (g.w + 2 * g.p - g.k) / g.s + 1;
		size_t nx = (size_t)g.n * g.c * g.h * g.w, ncol = (size_t)g.c * g.k * g.k * g.n * oh * ow;
		pair x = pnew(nx, NULL), col = pnew(ncol, NULL);
		char what[96];
		cpu->im2col(x.c, g.n, g.c, g.h, g.w, g.k, g.s, g.p, oh, ow, col.c);
		gpu->im2col(x.g, g.n, g.c, g.h, g.w, g.k, g.s, g.p, oh, ow, col.g);
		snprintf(what, sizeof what, "im2col n%d c%d %dx%d k%d s%d p%d", g.n, g.c, g.h,
		         g.w, g.k, g.s, g.p);
		psame(what, &col);
		/* col2im accumulates into x */
		float *r = hvec(ncol);
		pset(&col, r);
		free(r);
		cpu->col2im(col.c, g.n, g.c, g.h, g.w, g.k, g.s, g.p, oh, ow, x.c);
		gpu->col2im(col.g, g.n, g.c, g.h, g.w, g.k, g.s, g.p, oh, ow, x.g);
		snprintf(what, sizeof what, "col2im n%d c%d %dx%d k%d s%d p%d", g.n, g.c, g.h,
		         g.w, g.k, g.s, g.p);
		psame(what, &x);
		pfree(&x), pfree(&col);
	}
	status_ok();
}

/* Conv2d or ConvTranspose2d forward and backward through conv.c on both
 * backends: y, dx, dw, db. */
static void conv_case(int transposed, int n, int cin, int h, int w, int cout, int k,
                      int s, int p, double tol, const char *tag)
{
	p2p_conv g;
	int rc = transposed ? p2p_convt2d_init(&g, n, cin, h, w, cout, k, s, p)
	                    : p2p_conv2d_init(&g, n, cin, h, w, cout, k, s, p);
	CHECKF(rc == 0, "%s", p2p_errmsg());
	if (rc)
		return;
	size_t nx = (size_t)n * cin * h * w, ny = (size_t)n * cout * g.oh * g.ow;
	size_t nw = (size_t)cin * cout * k * k, nws = p2p_conv_ws(&g);
	pair x = pnew(nx, NULL), wt = pnew(nw, NULL), b = pnew(cout, NULL);
	pair y = pnew(ny, NULL), dy = pnew(ny, NULL), ws = pconst(nws, 0);
	pair dx = pnew(nx, NULL), dw = pnew(nw, NULL), db = pnew(cout, NULL);
	if (transposed) {
		CHECK(p2p_convt2d_forward(cpu, &g, y.c, x.c, wt.c, b.c, ws.c, nws) == 0);
		CHECK(p2p_convt2d_forward(gpu, &g, y.g, x.g, wt.g, b.g, ws.g, nws) == 0);
		CHECK(p2p_convt2d_backward(cpu, &g, dx.c, dw.c, db.c, dy.c, x.c, wt.c, ws.c, nws) == 0);
		CHECK(p2p_convt2d_backward(gpu, &g, dx.g, dw.g, db.g, dy.g, x.g, wt.g, ws.g, nws) == 0);
	} else {
		CHECK(p2p_conv2d_forward(cpu, &g, y.c, x.c, wt.c, b.c, ws.c, nws) == 0);
		CHECK(p2p_conv2d_forward(gpu, &g, y.g, x.g, wt.g, b.g, ws.g, nws) == 0);
		CHECK(p2p_conv2d_backward(cpu, &g, dx.c, dw.c, db.c, dy.c, x.c, wt.c, ws.c, nws) == 0);
		CHECK(p2p_conv2d_backward(gpu, &g, dx.g, dw.g, db.g, dy.g, x.g, wt.g, ws.g, nws) == 0);
	}
	char what[96];
	const char *kind = transposed ? "convT" : "conv";
	snprintf(what, sizeof what, "%s %s y", kind, tag);
	pcmp(what, &y, tol);
	snprintf(what, sizeof what, "%s %s dx", kind, tag);
	pcmp(what, &dx, tol);
	snprintf(what, sizeof what, "%s %s dw", kind, tag);
	pcmp(what, &dw, tol);
	snprintf(what, sizeof what, "%s %s db", kind, tag);
	pcmp(what, &db, tol);
	pfree(&x), pfree(&wt), pfree(&b), pfree(&y), pfree(&dy), pfree(&ws);
	pfree(&dx), pfree(&dw), pfree(&db);
}

static void conv_all(double tol)
{
	conv_case(0, 3, 5, 17, 13, 7, 4, 2, 1, tol, "n3 5->7 17x13 k4s2p1");
	conv_case(0, 2, 64, 32, 32, 128, 4, 2, 1, tol, "n2 64->128 32x32 k4s2p1");
	conv_case(0, 2, 32, 9, 9, 1, 4, 1, 1, tol, "n2 32->1 9x9 k4s1p1");
	conv_case(0, 2, 3, 20, 20, 16, 3, 1, 1, tol, "n2 3->16 20x20 k3s1p1");
	conv_case(0, 24, 64, 2, 2, 64, 4, 2, 1, tol, "n24 64->64 2x2 k4s2p1");
	conv_case(1, 3, 6, 5, 7, 4, 4, 2, 1, tol, "n3 6->4 5x7 k4s2p1");
	conv_case(1, 24, 64, 1, 1, 64, 4, 2, 1, tol, "n24 64->64 1x1 k4s2p1");
	conv_case(1, 2, 128, 16, 16, 3, 4, 2, 1, tol, "n2 128->3 16x16 k4s2p1");
	/* the model's shapes where the GPU's chunks span many images: U-Net
	 * up.1 (all 8 in one), PatchGAN conv.4 at 48 (more than the backend's
	 * workspace grants: chunks of a few) */
	conv_case(1, 8, 256, 64, 64, 64, 4, 2, 1, tol, "n8 256->64 64x64 k4s2p1");
	conv_case(0, 48, 512, 31, 31, 1, 4, 1, 1, tol, "n48 512->1 31x31 k4s1p1");
}

static void test_conv(void)
{
	p2p_cuda_set_tf32(0);
	conv_all(TOL);
	status_ok();
}

static void test_conv_tf32(void)
{
	p2p_cuda_set_tf32(1);
	conv_all(TOL_TF32);
	p2p_cuda_set_tf32(0);
	status_ok();
}

/* ---- bias, channel affine ---- */

static void test_bias_affine(void)
{
	int shapes[][3] = {{3, 5, 10007}, {24, 512, 1}, {2, 3, 65536 + 17}, {1, 1, 1}};
	for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++) {
		int n = shapes[t][0], c = shapes[t][1];
		long p = shapes[t][2];
		size_t total = (size_t)n * c * p;
		pair y = pnew(total, NULL), b = pnew(c, NULL), db = pnew(c, NULL);
		pair sc = pnew(c, NULL), sh = pnew(c, NULL), z = pnew(total, NULL);
		char what[96];
		cpu->bias_add(y.c, b.c, n, c, p), gpu->bias_add(y.g, b.g, n, c, p);
		snprintf(what, sizeof what, "bias_add (%d, %d, %ld)", n, c, p);
		psame(what, &y);
		cpu->bias_grad(db.c, y.c, n, c, p), gpu->bias_grad(db.g, y.g, n, c, p);
		snprintf(what, sizeof what, "bias_grad (%d, %d, %ld)", n, c, p);
		pcmp(what, &db, TOL);
		cpu->chan_affine(y.c, z.c, n, c, p, sc.c, sh.c);
		gpu->chan_affine(y.g, z.g, n, c, p, sc.g, sh.g);
		snprintf(what, sizeof what, "chan_affine (%d, %d, %ld)", n, c, p);
		psame(what, &z);
		cpu->chan_affine(y.c, z.c, n, c, p, sc.c, NULL);
		gpu->chan_affine(y.g, z.g, n, c, p, sc.g, NULL);
		snprintf(what, sizeof what, "chan_affine no shift (%d, %d, %ld)", n, c, p);
		psame(what, &z);
		cpu->chan_affine_bwd(y.c, z.c, n, c, p, sc.c);
		gpu->chan_affine_bwd(y.g, z.g, n, c, p, sc.g);
		snprintf(what, sizeof what, "chan_affine_bwd (%d, %d, %ld)", n, c, p);
		psame(what, &z);
		pfree(&y), pfree(&b), pfree(&db), pfree(&sc), pfree(&sh), pfree(&z);
	}
	status_ok();
}

/* ---- InstanceNorm ---- */

static void test_instnorm(void)
{
	int shapes[][2] = {{37, 1}, {24 * 512, 4}, {50, 1000}, {3, 70001}, {48, 4096}};
	for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++) {
		int planes = shapes[t][0];
		long p = shapes[t][1];
		size_t n = (size_t)planes * p;
		float *h = hvec(n);
		for (size_t i = 0; i < n; i++)     /* an offset and a spread per plane */
			h[i] = h[i] * (1 + i / p % 5) + (float)(i / p % 7) - 3;
		pair x = pnew(n, h), y = pnew(n, NULL), mean = pnew(planes, NULL);
		pair rstd = pnew(planes, NULL), dy = pnew(n, NULL), dx = pnew(n, NULL);
		char what[96];
		cpu->instnorm_fwd(x.c, y.c, mean.c, rstd.c, planes, p, P2P_IN_EPS);
		gpu->instnorm_fwd(x.g, y.g, mean.g, rstd.g, planes, p, P2P_IN_EPS);
		snprintf(what, sizeof what, "instnorm_fwd y (%d, %ld)", planes, p);
		pcmp(what, &y, TOL);
		snprintf(what, sizeof what, "instnorm_fwd mean (%d, %ld)", planes, p);
		pcmp(what, &mean, TOL);
		snprintf(what, sizeof what, "instnorm_fwd rstd (%d, %ld)", planes, p);
		pcmp(what, &rstd, TOL);
		/* backward from the same y and rstd on both sides */
		cpu->download(h, y.c, n);
		pset(&y, h);
		float *r = malloc(planes * sizeof *r);
		cpu->download(r, rstd.c, planes);
		pset(&rstd, r);
		free(r);
		cpu->instnorm_bwd(dy.c, y.c, rstd.c, dx.c, planes, p);
		gpu->instnorm_bwd(dy.g, y.g, rstd.g, dx.g, planes, p);
		snprintf(what, sizeof what, "instnorm_bwd dx (%d, %ld)", planes, p);
		pcmp(what, &dx, TOL);
		/* in place */
		cpu->instnorm_fwd(x.c, x.c, mean.c, rstd.c, planes, p, P2P_IN_EPS);
		gpu->instnorm_fwd(x.g, x.g, mean.g, rstd.g, planes, p, P2P_IN_EPS);
		snprintf(what, sizeof what, "instnorm_fwd in place (%d, %ld)", planes, p);
		pcmp(what, &x, TOL);
		free(h);
		pfree(&x), pfree(&y), pfree(&mean), pfree(&rstd), pfree(&dy), pfree(&dx);
	}
	status_ok();
}

/* ---- elementwise ---- */

static void test_activations(void)
{
	size_t n = 300007;
	float *h = hvec(n);
	h[0] = 0, h[1] = -0.0f;
	pair x = pnew(n, h), y = pnew(n, NULL), dy = pnew(n, NULL), dx = pnew(n, NULL);
	float slopes[] = {0.2f, 0};
	for (int s = 0; s < 2; s++) {
		char what[64];
		cpu->leaky_fwd(x.c, y.c, n, slopes[s]), gpu->leaky_fwd(x.g, y.g, n, slopes[s]);
		snprintf(what, sizeof what, "leaky_fwd slope %g", slopes[s]);
		psame(what, &y);
		cpu->leaky_bwd(y.c, dy.c, dx.c, n, slopes[s]);
		gpu->leaky_bwd(y.g, dy.g, dx.g, n, slopes[s]);
		snprintf(what, sizeof what, "leaky_bwd slope %g", slopes[s]);
		psame(what, &dx);
	}
	pair z = pnew(n, h);        /* in place */
	cpu->leaky_fwd(z.c, z.c, n, 0.2f), gpu->leaky_fwd(z.g, z.g, n, 0.2f);
	psame("leaky_fwd in place", &z);
	for (size_t i = 0; i < n; i++)
		h[i] *= 4;
	pset(&x, h);
	cpu->tanh_fwd(x.c, y.c, n), gpu->tanh_fwd(x.g, y.g, n);
	pcmp("tanh_fwd", &y, TOL);
	cpu->download(h, y.c, n);
	pset(&y, h);
	cpu->tanh_bwd(y.c, dy.c, dx.c, n), gpu->tanh_bwd(y.g, dy.g, dx.g, n);
	psame("tanh_bwd (same y)", &dx);
	free(h);
	pfree(&x), pfree(&y), pfree(&dy), pfree(&dx), pfree(&z);
	status_ok();
}

static void test_dropout(void)
{
	size_t n = 100003;
	pair x = pnew(n, NULL), y = pnew(n, NULL), dy = pnew(n, NULL), dx = pnew(n, NULL);
	float ps[] = {0.5f, 0.3f, 0, 1};
	uint64_t seed = 0x1234abcd5678ULL, counter = ((uint64_t)1 << 40) + 5;
	for (int t = 0; t < 4; t++) {
		char what[64];
		cpu->dropout_fwd(x.c, y.c, n, ps[t], seed, counter);
		gpu->dropout_fwd(x.g, y.g, n, ps[t], seed, counter);
		snprintf(what, sizeof what, "dropout_fwd p %g", ps[t]);
		psame(what, &y);
		cpu->dropout_bwd(dy.c, dx.c, n, ps[t], seed + t, counter);
		gpu->dropout_bwd(dy.g, dx.g, n, ps[t], seed + t, counter);
		snprintf(what, sizeof what, "dropout_bwd p %g", ps[t]);
		psame(what, &dx);
	}
	pfree(&x), pfree(&y), pfree(&dy), pfree(&dx);
	status_ok();
}

static void test_maxpool(void)
{
	int shapes[][3] = {{6, 13, 10}, {24 * 64, 32, 32}, {2, 1, 5}, {3, 7, 7}};
	for (size_t t = 0; t < sizeof shapes / sizeof *shapes; t++) {
		int planes = shapes[t][0], h = shapes[t][1], w = shapes[t][2];
		size_t n = (size_t)planes * h * w, m = (size_t)planes * (h / 2) * (w / 2);
		float *hx = hvec(n);
		for (size_t i = 0; i < n; i++)     /* coarse values: ties in windows */
			hx[i] = roundf(hx[i] * 3);
		pair x = pnew(n, hx), y = pnew(m, NULL), dy = pnew(m, NULL), dx = pnew(n, NULL);
		char what[64];
		cpu->maxpool2_fwd(x.c, y.c, planes, h, w), gpu->maxpool2_fwd(x.g, y.g, planes, h, w);
		snprintf(what, sizeof what, "maxpool2_fwd (%d, %d, %d)", planes, h, w);
		psame(what, &y);
		cpu->maxpool2_bwd(x.c, dy.c, dx.c, planes, h, w);
		gpu->maxpool2_bwd(x.g, dy.g, dx.g, planes, h, w);
		snprintf(what, sizeof what, "maxpool2_bwd (%d, %d, %d)", planes, h, w);
		psame(what, &dx);
		free(hx);
		pfree(&x), pfree(&y), pfree(&dy), pfree(&dx);
	}
	status_ok();
}

/* ---- reductions and losses ---- */

static void loss_check(const char *what, double g, double c)
{
	double e = fabs(g - c) / (fabs(c) > 1e-30 ? fabs(c) : 1);
	printf("#   %-36s error %.2e (gpu %.9g cpu %.9g)\n", what, e, g, c);
	CHECKF(e < 1e-6, "%s: gpu %.12g cpu %.12g", what, g, c);
}

static void test_losses(void)
{
	size_t sizes[] = {1, 1000, 1000003};
	for (int t = 0; t < 3; t++) {
		size_t n = sizes[t];
		float *h = hvec(n);
		pair a = pnew(n, NULL), b = pnew(n, h), da = pnew(n, NULL);
		for (size_t i = 0; i < n; i += 3)  /* equal entries: L1's sign(0) = 0 */
			h[i] = 0;
		pair c = pnew(n, h);
		cpu->copy(c.c, b.c, n < 2 ? n : n / 2);
		gpu->copy(c.g, b.g, n < 2 ? n : n / 2);
		char what[64];
		snprintf(what, sizeof what, "sum n %zu", n);
		loss_check(what, gpu->sum(a.g, n), cpu->sum(a.c, n));
		snprintf(what, sizeof what, "mse_const n %zu", n);
		loss_check(what, gpu->mse_const(a.g, n, 0.9f, da.g, 0.5f),
		           cpu->mse_const(a.c, n, 0.9f, da.c, 0.5f));
		snprintf(what, sizeof what, "mse_const da n %zu", n);
		psame(what, &da);
		snprintf(what, sizeof what, "mse n %zu", n);
		loss_check(what, gpu->mse(a.g, b.g, n, da.g, 2), cpu->mse(a.c, b.c, n, da.c, 2));
		snprintf(what, sizeof what, "mse da n %zu", n);
		psame(what, &da);
		snprintf(what, sizeof what, "l1 n %zu", n);
		loss_check(what, gpu->l1(c.g, b.g, n, da.g, 150), cpu->l1(c.c, b.c, n, da.c, 150));
		snprintf(what, sizeof what, "l1 da n %zu", n);
		psame(what, &da);
		snprintf(what, sizeof what, "l1 no gradient n %zu", n);
		loss_check(what, gpu->l1(a.g, b.g, n, NULL, 1), cpu->l1(a.c, b.c, n, NULL, 1));
		free(h);
		pfree(&a), pfree(&b), pfree(&c), pfree(&da);
	}
	CHECK(gpu->sum(NULL, 0) == 0 && gpu->mse(NULL, NULL, 0, NULL, 1) == 0);
	status_ok();
}

/* Two runs of the reductions on the GPU give the same bits. */
static void test_deterministic(void)
{
	size_t n = 1 << 20;
	pair a = pnew(n, NULL), b = pnew(n, NULL);
	double s1 = gpu->sum(a.g, n), l1 = gpu->l1(a.g, b.g, n, NULL, 1);
	double s2 = gpu->sum(a.g, n), l2 = gpu->l1(a.g, b.g, n, NULL, 1);
	CHECK(s1 == s2 && l1 == l2);
	int planes = 96;
	long p = n / planes;
	pair y = pnew(n, NULL), m = pnew(planes, NULL), r = pnew(planes, NULL);
	pair db1 = pconst(planes, 0), db2 = pconst(planes, 0);
	gpu->instnorm_fwd(a.g, y.g, m.g, r.g, planes, p, P2P_IN_EPS);
	float *y1 = pdown(&y);
	gpu->instnorm_fwd(a.g, y.g, m.g, r.g, planes, p, P2P_IN_EPS);
	float *y2 = pdown(&y);
	CHECK(memcmp(y1, y2, n * sizeof *y1) == 0);
	gpu->bias_grad(db1.g, a.g, 4, planes / 4, p);
	gpu->bias_grad(db2.g, a.g, 4, planes / 4, p);
	float *d1 = pdown(&db1), *d2 = pdown(&db2);
	CHECK(memcmp(d1, d2, planes * sizeof *d1) == 0);
	free(y1), free(y2), free(d1), free(d2);
	pfree(&a), pfree(&b), pfree(&y), pfree(&m), pfree(&r), pfree(&db1), pfree(&db2);
	status_ok();
}

/* ---- Adam ---- */

static void test_adam(void)
{
	size_t n = 100003;
	float wds[] = {0, 0.01f};
	for (int t = 0; t < 2; t++) {
		pair p = pnew(n, NULL), g = pnew(n, NULL), m = pconst(n, 0), v = pconst(n, 0);
		for (long step = 1; step <= 5; step++) {
			float *h = hvec(n);
			pset(&g, h);
			free(h);
			cpu->adam(p.c, g.c, m.c, v.c, n, 2e-4f, 0.5f, 0.999f, 1e-8f, wds[t], step);
			gpu->adam(p.g, g.g, m.g, v.g, n, 2e-4f, 0.5f, 0.999f, 1e-8f, wds[t], step);
		}
		char what[64];
		snprintf(what, sizeof what, "adam 5 steps wd %g: p", wds[t]);
		psame(what, &p);
		snprintf(what, sizeof what, "adam 5 steps wd %g: m", wds[t]);
		psame(what, &m);
		snprintf(what, sizeof what, "adam 5 steps wd %g: v", wds[t]);
		psame(what, &v);
		pfree(&p), pfree(&g), pfree(&m), pfree(&v);
	}
	status_ok();
}

/* ---- errors ---- */

/* Where no device is, asking for the backend fails with one line. */
static void test_init_without_device(void)
{
	const p2p_backend *be = p2p_backend_get("cuda");
	CHECK(be == NULL);
	CHECKF(strncmp(p2p_errmsg(), "cuda: ", 6) == 0, "message: %s", p2p_errmsg());
	CHECK(strchr(p2p_errmsg(), '\n') == NULL);
	CHECK(p2p_cuda_host_alloc(64) == NULL);
}

/* A bad call is reported by status() with its name and place. Last: the
 * failure stays. */
static void test_error_reported(void)
{
	pair a = pnew(16, NULL);
	status_ok();
	/* lda smaller than a row: cuBLAS refuses */
	gpu->gemm(0, 0, 4, 4, 4, 1, a.g, 1, a.g, 4, 0, a.g, 4);
	CHECK(gpu->status() == -1);
	printf("#   message: %s\n", p2p_errmsg());
	CHECK(strncmp(p2p_errmsg(), "cuda: cublasSgemm", 17) == 0);
	CHECK(strstr(p2p_errmsg(), "failed at ") && strstr(p2p_errmsg(), "ops_cuda.cu:"));
	pfree(&a);
}

int main(void)
{
	cpu = p2p_backend_get("cpu");
	const char *why = "no CUDA device";
#ifdef P2P_CUDA
	if (!(gpu = p2p_backend_get("cuda")))
		printf("# %s\n", p2p_errmsg());
	/* valgrind cannot see into the GPU, and the driver is not its friend */
	else if (getenv("VALGRIND") && *getenv("VALGRIND"))
		gpu = NULL, why = "VALGRIND set";
#else
	why = "no CUDA backend in this build";
#endif
	if (gpu)
		printf("# device: %s\n", p2p_cuda_device_name());

#define GPU_TEST(fn) do { if (gpu) RUN(fn); else SKIP(fn, why); } while (0)
	GPU_TEST(test_memory);
	GPU_TEST(test_copy2d_swap01);
	GPU_TEST(test_gemm);
	GPU_TEST(test_gemm_tf32);
	GPU_TEST(test_im2col_col2im);
	GPU_TEST(test_conv);
	GPU_TEST(test_conv_tf32);
	GPU_TEST(test_bias_affine);
	GPU_TEST(test_instnorm);
	GPU_TEST(test_activations);
	GPU_TEST(test_dropout);
	GPU_TEST(test_maxpool);
	GPU_TEST(test_losses);
	GPU_TEST(test_deterministic);
	GPU_TEST(test_adam);
	if (gpu || !strcmp(why, "VALGRIND set"))
		SKIP(test_init_without_device, "a CUDA device is present");
	else
		RUN(test_init_without_device);
	GPU_TEST(test_error_reported);
	return CHECK_DONE();
}
