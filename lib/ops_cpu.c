/* The CPU backend: matrix products through OpenBLAS cblas_sgemm, everything
 * else as plain C loops that the compiler vectorises, split across cores by
 * a small thread pool (cpu_pool.c).
 *
 * Why not OpenMP: OpenBLAS here is the pthreads build with its own workers,
 * and libgomp's idle workers spin (pause, no yield) for milliseconds after
 * each parallel loop. On a 2-core machine the two pools then take turns
 * starving each other: a 0.2 ms im2col took 10 ms and a 2 ms GEMM 10 to 30 ms.
 * The pool's workers sleep on a condition variable instead, and sgemm is only
 * ever called from the calling thread.
 *
 * Every loop is split into fixed parts and every reduction adds fixed chunks
 * in a fixed order, so results do not depend on the thread count. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu_pool.h"
#include "err.h"

/* The compiler's -O2 cost model leaves short strided loops scalar; these
 * are the hot ones of im2col and col2im. */
#define SIMD _Pragma("omp simd")

/* Below this much work (floats touched) a loop runs on the calling thread:
 * waking a worker costs more than it saves. */
#define PAR_MIN 65536

static int parts_for(long work, long items)
{
	int t = work < PAR_MIN ? 1 : p2p_pool_threads();
	return items < t ? (int)items : t;
}

/* ---- set-up ---- */

static void cpu_set_threads(int n)
{
	if (n < 1)
		return;
	p2p_pool_set_threads(n);
	openblas_set_num_threads(n);
}

static int cpu_status(void) { return 0; }
static void cpu_sync(void) {}

/* ---- memory ---- */

static float *cpu_alloc(size_t n)
{
	void *p = NULL;
	size_t bytes = (n ? n : 1) * sizeof(float);
	if (n > ((size_t)1 << 40) || posix_memalign(&p, 64, bytes) != 0) {
		p2p_err("out of memory allocating %zu floats", n);
		return NULL;
	}
	return p;
}

static void cpu_free(float *p) { free(p); }

static void cpu_copy(float *dst, const float *src, size_t n)
{
	if (dst != src)
		memcpy(dst, src, n * sizeof *dst);
}

/* ---- elementwise ops: one range function, the op chosen outside the loop ---- */

enum { EW_FILL, EW_ZERO, EW_SCALE, EW_AXPY, EW_LEAKY, EW_LEAKY_BWD, EW_TANH,
       EW_TANH_BWD, EW_DROP, EW_DROP_BWD, EW_ADAM };

typedef struct {
	int op;
	const float *a, *b;
	float *y, *m, *v;
	float s, t, u, w, e, wd;
	uint64_t seed, ctr;
} ew_args;

static void ew_range(void *ctx, long i0, long i1)
{
	const ew_args *q = ctx;
	const float *a = q->a, *b = q->b;
	float *y = q->y, s = q->s;
	switch (q->op) {
	case EW_FILL:
		for (long i = i0; i < i1; i++) y[i] = s;
		break;
	case EW_ZERO:
		memset(y + i0, 0, (i1 - i0) * sizeof *y);
		break;
	case EW_SCALE:
		for (long i = i0; i < i1; i++) y[i] *= s;
		break;
	case EW_AXPY:
		for (long i = i0; i < i1; i++) y[i] += s * a[i];
		break;
	case EW_LEAKY:      /* a = x */
		for (long i = i0; i < i1; i++) y[i] = a[i] > 0 ? a[i] : s * a[i];
		break;
	case EW_LEAKY_BWD:  /* a = y, b = dy, y = dx */
		for (long i = i0; i < i1; i++) y[i] += a[i] > 0 ? b[i] : s * b[i];
		break;
	case EW_TANH:
		for (long i = i0; i < i1; i++) y[i] = tanhf(a[i]);
		break;
	case EW_TANH_BWD:   /* a = y, b = dy, y = dx */
		for (long i = i0; i < i1; i++) y[i] += b[i] * (1 - a[i] * a[i]);
		break;
	case EW_DROP:       /* s = p, t = 1/(1-p) */
		for (long i = i0; i < i1; i++)
			y[i] = p2p_dropout_keep(q->seed, q->ctr + i, s) ? a[i] * q->t : 0;
		break;
	case EW_DROP_BWD:   /* a = dy, y = dx */
		for (long i = i0; i < i1; i++)
			if (p2p_dropout_keep(q->seed, q->ctr + i, s))
				y[i] += a[i] * q->t;
		break;
	case EW_ADAM: {     /* y = p, a = g; s = step size, t = 1/sqrt(bc2), u, w = betas */
		float *m = q->m, *v = q->v, b1 = q->u, b2 = q->w, wd = q->wd;
		for (long i = i0; i < i1; i++) {
			float gi = a[i] + wd * y[i];
			float mi = b1 * m[i] + (1 - b1) * gi;
			float vi = b2 * v[i] + (1 - b2) * gi * gi;
			m[i] = mi;
			v[i] = vi;
			y[i] -= s * mi / (sqrtf(vi) * q->t + q->e);
		}
		break;
	}
	}
}

static void ew(ew_args *q, size_t n, int cost)
{
	p2p_pool_run((long)n, parts_for((long)n * cost, (long)n), ew_range, q);
}

static void cpu_zero(float *x, size_t n) { ew(&(ew_args){.op = EW_ZERO, .y = x}, n, 1); }
static void cpu_fill(float *x, size_t n, float v) { ew(&(ew_args){.op = EW_FILL, .y = x, .s = v}, n, 1); }
static void cpu_scale(float *x, size_t n, float a) { ew(&(ew_args){.op = EW_SCALE, .y = x, .s = a}, n, 1); }

static void cpu_axpy(float *y, const float *x, size_t n, float a)
{
	ew(&(ew_args){.op = EW_AXPY, .y = y, .a = x, .s = a}, n, 2);
}

static void cpu_leaky_fwd(const float *x, float *y, size_t n, float slope)
{
	ew(&(ew_args){.op = EW_LEAKY, .a = x, .y = y, .s = slope}, n, 2);
}

static void cpu_leaky_bwd(const float *y, const float *dy, float *dx, size_t n, float slope)
{
	ew(&(ew_args){.op = EW_LEAKY_BWD, .a = y, .b = dy, .y = dx, .s = slope}, n, 3);
}

static void cpu_tanh_fwd(const float *x, float *y, size_t n)
{
	ew(&(ew_args){.op = EW_TANH, .a = x, .y = y}, n, 16);
}

static void cpu_tanh_bwd(const float *y, const float *dy, float *dx, size_t n)
{
	ew(&(ew_args){.op = EW_TANH_BWD, .a = y, .b = dy, .y = dx}, n, 3);
}

static void cpu_dropout_fwd(const float *x, float *y, size_t n, float p,
                            uint64_t seed, uint64_t counter)
{
	ew(&(ew_args){.op = EW_DROP, .a = x, .y = y, .s = p, .t = p < 1 ? 1 / (1 - p) : 0,
	              .seed = seed, .ctr = counter}, n, 8);
}

static void cpu_dropout_bwd(const float *dy, float *dx, size_t n, float p,
                            uint64_t seed, uint64_t counter)
{
	ew(&(ew_args){.op = EW_DROP_BWD, .a = dy, .y = dx, .s = p, .t = p < 1 ? 1 / (1 - p) : 0,
	              .seed = seed, .ctr = counter}, n, 8);
}

static void cpu_adam(float *p, const float *g, float *m, float *v, size_t n,
                     float lr, float beta1, float beta2, float eps, float wd, long step)
{
	double bc1 = 1 - pow(beta1, (double)step), bc2 = 1 - pow(beta2, (double)step);
	ew(&(ew_args){.op = EW_ADAM, .y = p, .a = g, .m = m, .v = v, .s = (float)(lr / bc1),
	              .t = (float)(1 / sqrt(bc2)), .u = beta1, .w = beta2, .e = eps, .wd = wd}, n, 4);
}

/* ---- strided copies ---- */

typedef struct {
	float *dst;
	const float *src;
	long dld, sld, cols;
	int a, b;
	float beta;
} copy_args;

static void copy_rows(float *d, const float *s, long cols, float beta)
{
	if (beta == 0)
		memcpy(d, s, cols * sizeof *d);
	else
		for (long j = 0; j < cols; j++)
			d[j] += s[j];
}

static void copy2d_range(void *ctx, long r0, long r1)
{
	const copy_args *q = ctx;
	for (long r = r0; r < r1; r++)
		copy_rows(q->dst + r * q->dld, q->src + r * q->sld, q->cols, q->beta);
}

static void cpu_copy2d(float *dst, long dld, const float *src, long sld,
                       int rows, long cols, float beta)
{
	copy_args q = {dst, src, dld, sld, cols, 0, 0, beta};
	p2p_pool_run(rows, parts_for(rows * cols, rows), copy2d_range, &q);
}

/* block (i, j) of x (a, b, p) to block (j, i) of y (b, a, p); r = i * b + j */
static void swap01_range(void *ctx, long r0, long r1)
{
	const copy_args *q = ctx;
	for (long r = r0; r < r1; r++) {
		long i = r / q->b, j = r % q->b;
		copy_rows(q->dst + (j * q->a + i) * q->cols, q->src + r * q->cols, q->cols, q->beta);
	}
}

static void cpu_swap01(const float *x, float *y, int a, int b, long p, float beta)
{
	copy_args q = {y, x, 0, 0, p, a, b, beta};
	long rows = (long)a * b;
	p2p_pool_run(rows, parts_for(rows * p, rows), swap01_range, &q);
}

/* ---- matrix products ---- */

static void cpu_gemm(int ta, int tb, int m, int n, int k, float alpha,
                     const float *a, int lda, const float *b, int ldb,
                     float beta, float *c, int ldc)
{
	cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
	            tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda,
	            b, ldb, beta, c, ldc);
}

static void cpu_gemm_batched(int ta, int tb, int m, int n, int k, float alpha,
                             const float *a, int lda, long sa,
                             const float *b, int ldb, long sb,
                             float beta, float *c, int ldc, long sc, int batch)
{
	for (int i = 0; i < batch; i++)
		cpu_gemm(ta, tb, m, n, k, alpha, a + i * sa, lda, b + i * sb, ldb,
		         beta, c + i * sc, ldc);
}

/* ---- convolution helpers ---- */

typedef struct {
	const float *in;
	float *out;
	int n, c, h, w, k, stride, pad, oh, ow;
} col_args;

/* The output columns [x0, x1) whose input column is inside the image. */
static void inside(int ow, int w, int kx, int stride, int pad, int *x0, int *x1)
{
	int a = 0, b = ow;
	while (a < ow && a * stride - pad + kx < 0)
		a++;
	while (b > a && (b - 1) * stride - pad + kx >= w)
		b--;
	*x0 = a, *x1 = b;
}

/* One row of col: tap (ky, kx) of channel plane xp (h, w) over every output
 * position of one image. */
static void im2col_row(const float *xp, int h, int w, int ky, int kx,
                       int stride, int pad, int oh, int ow, float *dst)
{
	int x0, x1;
	inside(ow, w, kx, stride, pad, &x0, &x1);
	for (int oy = 0; oy < oh; oy++) {
		int iy = oy * stride - pad + ky;
		float *d = dst + (long)oy * ow;
		if (iy < 0 || iy >= h) {
			memset(d, 0, ow * sizeof *d);
			continue;
		}
		const float *s = xp + (long)iy * w - pad + kx;
		for (int ox = 0; ox < x0; ox++)
			d[ox] = 0;
		if (stride == 1)
			memcpy(d + x0, s + x0, (x1 - x0) * sizeof *d);
		else if (stride == 2)
			SIMD for (int ox = x0; ox < x1; ox++)
				d[ox] = s[2 * ox];
		else
			for (int ox = x0; ox < x1; ox++)
				d[ox] = s[(long)ox * stride];
		for (int ox = x1; ox < ow; ox++)
			d[ox] = 0;
	}
}

/* rows r of col (c*k*k of them), every image */
static void im2col_range(void *ctx, long r0, long r1)
{
	const col_args *q = ctx;
	long p = (long)q->oh * q->ow, ncols = q->n * p, kk = (long)q->k * q->k;
	for (long r = r0; r < r1; r++) {
		int ci = r / kk, ky = r / q->k % q->k, kx = r % q->k;
		for (int img = 0; img < q->n; img++)
			im2col_row(q->in + ((long)img * q->c + ci) * q->h * q->w, q->h, q->w, ky, kx,
			           q->stride, q->pad, q->oh, q->ow, q->out + r * ncols + img * p);
	}
}

static void cpu_im2col(const float *x, int n, int c, int h, int w, int k,
                       int stride, int pad, int oh, int ow, float *col)
{
	col_args q = {x, col, n, c, h, w, k, stride, pad, oh, ow};
	long rows = (long)c * k * k;
	p2p_pool_run(rows, parts_for(rows * n * oh * ow, rows), im2col_range, &q);
}

/* The adjoint of im2col_row: xp += the row scattered back. */
static void col2im_row(const float *src, int h, int w, int ky, int kx,
                       int stride, int pad, int oh, int ow, float *xp)
{
	int x0, x1;
	inside(ow, w, kx, stride, pad, &x0, &x1);
	for (int oy = 0; oy < oh; oy++) {
		int iy = oy * stride - pad + ky;
		if (iy < 0 || iy >= h)
			continue;
		const float *s = src + (long)oy * ow;
		float *d = xp + (long)iy * w - pad + kx;
		if (stride == 1)
			SIMD for (int ox = x0; ox < x1; ox++)
				d[ox] += s[ox];
		else if (stride == 2)
			SIMD for (int ox = x0; ox < x1; ox++)
				d[2 * ox] += s[ox];
		else
			for (int ox = x0; ox < x1; ox++)
				d[(long)ox * stride] += s[ox];
	}
}

/* planes (img, ci) of x: no two parts add into the same plane */
static void col2im_range(void *ctx, long p0, long p1)
{
	const col_args *q = ctx;
	long p = (long)q->oh * q->ow, ncols = q->n * p;
	for (long pl = p0; pl < p1; pl++) {
		int img = pl / q->c, ci = pl % q->c;
		float *xp = q->out + pl * q->h * q->w;
		for (int ky = 0; ky < q->k; ky++)
			for (int kx = 0; kx < q->k; kx++) {
				long r = ((long)ci * q->k + ky) * q->k + kx;
				col2im_row(q->in + r * ncols + img * p, q->h, q->w, ky, kx,
				           q->stride, q->pad, q->oh, q->ow, xp);
			}
	}
}

static void cpu_col2im(const float *col, int n, int c, int h, int w, int k,
                       int stride, int pad, int oh, int ow, float *x)
{
	col_args q = {col, x, n, c, h, w, k, stride, pad, oh, ow};
	long planes = (long)n * c;
	p2p_pool_run(planes, parts_for(planes * k * k * oh * ow, planes), col2im_range, &q);
}

/* ---- per-plane ops: bias, affine, InstanceNorm, pooling ---- */

/* Sum of a plane in double, in blocks of float partial sums: accurate
 * enough and still vectorised. */
static double plane_sum(const float *x, long p)
{
	double s = 0;
	for (long q0 = 0; q0 < p; q0 += 256) {
		long q1 = q0 + 256 < p ? q0 + 256 : p;
		float t = 0;
		for (long q = q0; q < q1; q++)
			t += x[q];
		s += t;
	}
	return s;
}

enum { PL_BIAS, PL_BIAS_GRAD, PL_AFFINE, PL_AFFINE_BWD, PL_IN, PL_IN_BWD, PL_POOL, PL_POOL_BWD };

typedef struct {
	int op, n, c, h, w;
	long p;
	const float *a, *b, *s, *t;
	float *y, *m, *r;
	float eps;
} pl_args;

static void in_fwd_plane(const float *xp, float *yp, long p, float eps, float *mean, float *rstd)
{
	float mu = (float)(plane_sum(xp, p) / p);
	double var = 0;
	for (long q0 = 0; q0 < p; q0 += 256) {
		long q1 = q0 + 256 < p ? q0 + 256 : p;
		float t = 0;
		for (long q = q0; q < q1; q++) {
			float d = xp[q] - mu;
			t += d * d;
		}
		var += t;
	}
	float rs = (float)(1 / sqrt(var / p + eps));
	for (long q = 0; q < p; q++)
		yp[q] = (xp[q] - mu) * rs;
	*mean = mu;
	*rstd = rs;
}

static void in_bwd_plane(const float *g, const float *yp, float rs, float *d, long p)
{
	double sg = 0, sgy = 0;
	for (long q0 = 0; q0 < p; q0 += 256) {
		long q1 = q0 + 256 < p ? q0 + 256 : p;
		float t = 0, u = 0;
		for (long q = q0; q < q1; q++) {
			t += g[q];
			u += g[q] * yp[q];
		}
		sg += t;
		sgy += u;
	}
	float mg = (float)(sg / p), mgy = (float)(sgy / p);
	for (long q = 0; q < p; q++)
		d[q] += rs * (g[q] - mg - yp[q] * mgy);
}

static void pool_fwd_plane(const float *x, float *y, int h, int w)
{
	int oh = h / 2, ow = w / 2;
	for (int oy = 0; oy < oh; oy++) {
		const float *r0 = x + (long)2 * oy * w, *r1 = r0 + w;
		float *d = y + (long)oy * ow;
		for (int ox = 0; ox < ow; ox++) {
			float m = r0[2 * ox];
			m = r0[2 * ox + 1] > m ? r0[2 * ox + 1] : m;
			m = r1[2 * ox] > m ? r1[2 * ox] : m;
			m = r1[2 * ox + 1] > m ? r1[2 * ox + 1] : m;
			d[ox] = m;
		}
	}
}

static void pool_bwd_plane(const float *x, const float *dy, float *dx, int h, int w)
{
	int oh = h / 2, ow = w / 2;
	for (int oy = 0; oy < oh; oy++) {
		long o0 = (long)2 * oy * w, o1 = o0 + w;
		const float *g = dy + (long)oy * ow;
		for (int ox = 0; ox < ow; ox++) {
			/* the first maximum in scan order, as PyTorch */
			long best = o0 + 2 * ox;
			if (x[o0 + 2 * ox + 1] > x[best]) best = o0 + 2 * ox + 1;
			if (x[o1 + 2 * ox] > x[best]) best = o1 + 2 * ox;
			if (x[o1 + 2 * ox + 1] > x[best]) best = o1 + 2 * ox + 1;
			dx[best] += g[ox];
		}
	}
}

static void pl_range(void *ctx, long i0, long i1)
{
	const pl_args *q = ctx;
	long p = q->p;
	for (long i = i0; i < i1; i++) {
		int j = i % q->c;      /* the channel of plane i (n, c) */
		long o = i * p;
		switch (q->op) {
		case PL_BIAS: {
			float bj = q->b[j];
			for (long k = 0; k < p; k++) q->y[o + k] += bj;
			break;
		}
		case PL_BIAS_GRAD: {    /* planes are channels here: sum over images */
			double s = 0;
			for (int img = 0; img < q->n; img++)
				s += plane_sum(q->a + ((long)img * q->c + i) * p, p);
			q->y[i] += (float)s;
			break;
		}
		case PL_AFFINE: {
			float a = q->s[j], b = q->t ? q->t[j] : 0;
			for (long k = 0; k < p; k++) q->y[o + k] = q->a[o + k] * a + b;
			break;
		}
		case PL_AFFINE_BWD: {
			float a = q->s[j];
			for (long k = 0; k < p; k++) q->y[o + k] += q->a[o + k] * a;
			break;
		}
		case PL_IN:
			in_fwd_plane(q->a + o, q->y + o, p, q->eps, q->m + i, q->r + i);
			break;
		case PL_IN_BWD:         /* a = dy, b = y, r = rstd, y = dx */
			in_bwd_plane(q->a + o, q->b + o, q->r[i], q->y + o, p);
			break;
		case PL_POOL:
			pool_fwd_plane(q->a + i * q->h * q->w, q->y + i * (q->h / 2) * (q->w / 2), q->h, q->w);
			break;
		case PL_POOL_BWD:       /* a = x, b = dy, y = dx */
			pool_bwd_plane(q->a + i * q->h * q->w, q->b + i * (q->h / 2) * (q->w / 2),
			               q->y + i * q->h * q->w, q->h, q->w);
			break;
		}
	}
}

static void planes(pl_args *q, long count, long work)
{
	p2p_pool_run(count, parts_for(work, count), pl_range, q);
}

static void cpu_bias_add(float *y, const float *b, int n, int c, long p)
{
	planes(&(pl_args){.op = PL_BIAS, .n = n, .c = c, .p = p, .b = b, .y = y}, (long)n * c, n * c * p);
}

static void cpu_bias_grad(float *db, const float *dy, int n, int c, long p)
{
	planes(&(pl_args){.op = PL_BIAS_GRAD, .n = n, .c = c, .p = p, .a = dy, .y = db}, c, n * c * p);
}

static void cpu_chan_affine(const float *x, float *y, int n, int c, long p,
                            const float *scale, const float *shift)
{
	planes(&(pl_args){.op = PL_AFFINE, .n = n, .c = c, .p = p, .a = x, .y = y, .s = scale,
	                  .t = shift}, (long)n * c, 2 * n * c * p);
}

static void cpu_chan_affine_bwd(const float *dy, float *dx, int n, int c, long p,
                                const float *scale)
{
	planes(&(pl_args){.op = PL_AFFINE_BWD, .n = n, .c = c, .p = p, .a = dy, .y = dx,
	                  .s = scale}, (long)n * c, 2 * n * c * p);
}

static void cpu_instnorm_fwd(const float *x, float *y, float *mean, float *rstd,
                             int np, long p, float eps)
{
	planes(&(pl_args){.op = PL_IN, .c = 1, .p = p, .a = x, .y = y, .m = mean, .r = rstd,
	                  .eps = eps}, np, 3 * np * p);
}

static void cpu_instnorm_bwd(const float *dy, const float *y, const float *rstd,
                             float *dx, int np, long p)
{
	planes(&(pl_args){.op = PL_IN_BWD, .c = 1, .p = p, .a = dy, .b = y, .r = (float *)rstd,
	                  .y = dx}, np, 4 * np * p);
}

static void cpu_maxpool2_fwd(const float *x, float *y, int np, int h, int w)
{
	planes(&(pl_args){.op = PL_POOL, .c = 1, .h = h, .w = w, .a = x, .y = y},
	       np, (long)np * h * w);
}

static void cpu_maxpool2_bwd(const float *x, const float *dy, float *dx, int np, int h, int w)
{
	planes(&(pl_args){.op = PL_POOL_BWD, .c = 1, .h = h, .w = w, .a = x, .b = dy, .y = dx},
	       np, 2L * np * h * w);
}

/* ---- reductions and losses ----
 * A fixed split into NCHUNK chunks, summed in order: the same bits whatever
 * the thread count. Within a chunk, float partial sums over blocks of 256. */

#define NCHUNK 64

enum { L_SUM, L_MSEC, L_MSE, L_L1 };

typedef struct {
	int kind;
	const float *a, *b;
	float t, gs;
	float *da;
	size_t n, chunk;
	double part[NCHUNK];
} red_args;

static void red_range(void *ctx, long c0, long c1)
{
	red_args *q = ctx;
	const float *a = q->a, *b = q->b;
	float *da = q->da, t = q->t, gs = q->gs;
	for (long c = c0; c < c1; c++) {
		size_t i0 = c * q->chunk, i1 = i0 + q->chunk < q->n ? i0 + q->chunk : q->n;
		double s = 0;
		for (size_t j0 = i0; j0 < i1; j0 += 256) {
			size_t j1 = j0 + 256 < i1 ? j0 + 256 : i1;
			float u = 0;
			switch (q->kind) {
			case L_SUM:
				for (size_t j = j0; j < j1; j++)
					u += a[j];
				break;
			case L_MSEC:
				for (size_t j = j0; j < j1; j++) {
					float d = a[j] - t;
					u += d * d;
				}
				if (da)
					for (size_t j = j0; j < j1; j++)
						da[j] += 2 * gs * (a[j] - t);
				break;
			case L_MSE:
				for (size_t j = j0; j < j1; j++) {
					float d = a[j] - b[j];
					u += d * d;
				}
				if (da)
					for (size_t j = j0; j < j1; j++)
						da[j] += 2 * gs * (a[j] - b[j]);
				break;
			case L_L1:
				for (size_t j = j0; j < j1; j++)
					u += fabsf(a[j] - b[j]);
				if (da)
					for (size_t j = j0; j < j1; j++) {
						float d = a[j] - b[j];
						da[j] += d > 0 ? gs : d < 0 ? -gs : 0;
					}
				break;
			}
			s += u;
		}
		q->part[c] = i0 < i1 ? s : 0;
	}
}

static double reduce(int kind, const float *a, const float *b, float t,
                     size_t n, float *da, float gscale)
{
	red_args q = {kind, a, b, t, n ? gscale / (float)n : 0, da, n, (n + NCHUNK - 1) / NCHUNK, {0}};
	p2p_pool_run(NCHUNK, parts_for((long)n, NCHUNK), red_range, &q);
	double s = 0;
	for (int c = 0; c < NCHUNK; c++)
		s += q.part[c];
	return kind == L_SUM ? s : n ? s / n : 0;
}

static double cpu_sum(const float *x, size_t n)
{
	return reduce(L_SUM, x, NULL, 0, n, NULL, 0);
}

static double cpu_mse_const(const float *a, size_t n, float target, float *da, float gscale)
{
	return reduce(L_MSEC, a, NULL, target, n, da, gscale);
}

static double cpu_mse(const float *a, const float *b, size_t n, float *da, float gscale)
{
	return reduce(L_MSE, a, b, 0, n, da, gscale);
}

static double cpu_l1(const float *a, const float *b, size_t n, float *da, float gscale)
{
	return reduce(L_L1, a, b, 0, n, da, gscale);
}

static const p2p_backend cpu_backend = {
	.name = "cpu",
	.init = NULL,
	.set_threads = cpu_set_threads,
	.status = cpu_status,
	.sync = cpu_sync,
	.alloc = cpu_alloc,
	.free = cpu_free,
	.zero = cpu_zero,
	.fill = cpu_fill,
	.copy = cpu_copy,
	.upload = cpu_copy,
	.download = cpu_copy,
	.copy2d = cpu_copy2d,
	.swap01 = cpu_swap01,
	.gemm = cpu_gemm,
	.gemm_batched = cpu_gemm_batched,
	.im2col = cpu_im2col,
	.col2im = cpu_col2im,
	.bias_add = cpu_bias_add,
	.bias_grad = cpu_bias_grad,
	.chan_affine = cpu_chan_affine,
	.chan_affine_bwd = cpu_chan_affine_bwd,
	.instnorm_fwd = cpu_instnorm_fwd,
	.instnorm_bwd = cpu_instnorm_bwd,
	.leaky_fwd = cpu_leaky_fwd,
	.leaky_bwd = cpu_leaky_bwd,
	.tanh_fwd = cpu_tanh_fwd,
	.tanh_bwd = cpu_tanh_bwd,
	.dropout_fwd = cpu_dropout_fwd,
	.dropout_bwd = cpu_dropout_bwd,
	.maxpool2_fwd = cpu_maxpool2_fwd,
	.maxpool2_bwd = cpu_maxpool2_bwd,
	.scale = cpu_scale,
	.axpy = cpu_axpy,
	.sum = cpu_sum,
	.mse_const = cpu_mse_const,
	.mse = cpu_mse,
	.l1 = cpu_l1,
	.adam = cpu_adam,
};

const p2p_backend *p2p_backend_cpu(void)
{
	return &cpu_backend;
}
