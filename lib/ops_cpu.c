/* The CPU backend: matrix products through OpenBLAS cblas_sgemm, everything
 * else as plain C loops that the compiler vectorises, split across cores by
 * a small thread pool (cpu_pool.c).
 *
 * Why not OpenMP: OpenBLAS here is the pthreads build with its own workers,
 * and libgomp's idle workers spin (pause, no yield) for milliseconds after
 * each parallel loop. On a 2-core machine the two pools then take turns
 * starving each other: a 0.2 ms im2col took 10 ms and a 2 ms GEMM 10 to 30 ms.
 * The pool's workers sleep on a condition variable instead.
 *
 * Why not OpenBLAS's threads either: they synchronise inside every GEMM and
 * then spin (yielding) for a while after it, on the cores the pool's next
 * loop wants; on a machine shared with other jobs each synchronisation can
 * wait for a descheduled thread. OpenBLAS runs single-threaded; a large GEMM
 * is cut into fixed pieces that the pool's threads take as they come free,
 * and the convolutions hand out whole chunks (parallel).
 *
 * Every loop is split into fixed parts and every reduction adds fixed chunks
 * in a fixed order, so results do not depend on the thread count. */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
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

/* Once: the pool takes OpenBLAS's thread count (its default), then OpenBLAS
 * is left with one. */
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void blas_single_now(void)
{
	p2p_pool_threads();
	openblas_set_num_threads(1);
}

static void blas_single(void)
{
	pthread_once(&blas_once, blas_single_now);
}

static int cpu_init(void)
{
	blas_single();
	return 0;
}

static void cpu_set_threads(int n)
{
	blas_single();
	if (n >= 1)
		p2p_pool_set_threads(n);
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

/* 1 where x > 0, else s, in bit operations: under -ftrapping-math (the
 * default) the compiler keeps any float comparison in a loop as a branch and
 * will not vectorise it. x * leaky_gain(x, s) is exactly x > 0 ? x : s * x. */
static inline float leaky_gain(float x, float s)
{
	int32_t xb, sb, kb, one = 0x3f800000;
	float k;
	memcpy(&xb, &x, sizeof xb);
	memcpy(&sb, &s, sizeof sb);
	int32_t m = -(int32_t)(xb > 0);     /* x > 0, NaN aside */
	kb = (one & m) | (sb & ~m);
	memcpy(&k, &kb, sizeof k);
	return k;
}

/* tanh in a form the loops can vectorise (glibc's tanhf is a call per
 * element, 2 % of G's forward): an odd Taylor polynomial below |x| 0.4,
 * above it 1 - 2 / (e^2|x| + 1) with e^y = 2^k p(y - k ln 2), p of degree 7;
 * |x| is capped at 10, where tanh is 1 in float. Within 3e-7 of tanh
 * (test_layers checks it across the range); NaN stays NaN. The selections
 * compare the bits of |x| as integers (the same order for non-negative
 * floats): gcc keeps a float comparison in a loop as a branch. */
static inline float tanh_vec(float x)
{
	float a = fabsf(x), ten = 10, cut = 0.4f, inf = INFINITY;
	int32_t ab, tb, cb, ib;
	memcpy(&ab, &a, 4), memcpy(&tb, &ten, 4), memcpy(&cb, &cut, 4), memcpy(&ib, &inf, 4);
	int32_t nan = -(int32_t)(ab > ib), cap = -(int32_t)((ab > tb) & (ab <= ib));
	int32_t low = -(int32_t)(ab < cb);
	int32_t cbits = (tb & cap) | (ab & ~cap & ~nan);    /* NaN: e^0, then NaN out */
	float c, a2 = a * a;
	memcpy(&c, &cbits, 4);
	float y = 2 * c;
	float k = y * 1.44269504f + 12582912.f - 12582912.f;   /* round(y / ln 2) */
	float r = y - k * 0.693145752f - k * 1.42860677e-06f;  /* ln 2 in two parts */
	float p = 1 + r * (1 + r * (1 / 2.f + r * (1 / 6.f + r * (1 / 24.f + r * (1 / 120.f +
	          r * (1 / 720.f + r * (1 / 5040.f)))))));
	uint32_t kb = (uint32_t)((int32_t)k + 127) << 23;  /* k in [0, 29] */
	float two_k;
	memcpy(&two_k, &kb, 4);
	float big = 1 - 2 / (p * two_k + 1);
	float small = a + a * a2 * (-1 / 3.f + a2 * (2 / 15.f + a2 * (-17 / 315.f + a2 * (62 / 2835.f +
	              a2 * (-1382 / 155925.f + a2 * (21844 / 6081075.f))))));
	int32_t sb, bb, tbits;
	memcpy(&sb, &small, 4), memcpy(&bb, &big, 4);
	tbits = (sb & low) | (bb & ~low);
	tbits = (ab & nan) | (tbits & ~nan);
	float t;
	memcpy(&t, &tbits, 4);
	return copysignf(t, x);
}

/* Every loop carries SIMD: at -O2 the compiler will not vectorise a loop
 * whose output may alias its input (y may be x), and these run over whole
 * activations. Element i reads only element i, so in place is safe. */
static void ew_range(void *ctx, long i0, long i1)
{
	const ew_args *q = ctx;
	const float *a = q->a, *b = q->b;
	float *y = q->y, s = q->s;
	switch (q->op) {
	case EW_FILL:
		SIMD for (long i = i0; i < i1; i++) y[i] = s;
		break;
	case EW_ZERO:
		memset(y + i0, 0, (i1 - i0) * sizeof *y);
		break;
	case EW_SCALE:
		SIMD for (long i = i0; i < i1; i++) y[i] *= s;
		break;
	case EW_AXPY:
		SIMD for (long i = i0; i < i1; i++) y[i] += s * a[i];
		break;
	case EW_LEAKY:      /* a = x */
		SIMD for (long i = i0; i < i1; i++) y[i] = a[i] * leaky_gain(a[i], s);
		break;
	case EW_LEAKY_BWD:  /* a = y, b = dy, y = dx */
		SIMD for (long i = i0; i < i1; i++) y[i] += b[i] * leaky_gain(a[i], s);
		break;
	case EW_TANH:
		SIMD for (long i = i0; i < i1; i++) y[i] = tanh_vec(a[i]);
		break;
	case EW_TANH_BWD:   /* a = y, b = dy, y = dx */
		SIMD for (long i = i0; i < i1; i++) y[i] += b[i] * (1 - a[i] * a[i]);
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
		float *m = q->m, *v = q->v, b1 = q->u, b2 = q->w, wd = q->wd, t = q->t, e = q->e;
		SIMD for (long i = i0; i < i1; i++) {
			float gi = a[i] + wd * y[i];
			float mi = b1 * m[i] + (1 - b1) * gi;
			float vi = b2 * v[i] + (1 - b2) * gi * gi;
			m[i] = mi;
			v[i] = vi;
			y[i] -= s * mi / (sqrtf(vi) * t + e);
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

static void sgemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                  const float *b, int ldb, float beta, float *c, int ldc)
{
	cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans,
	            tb ? CblasTrans : CblasNoTrans, m, n, k, alpha, a, lda,
	            b, ldb, beta, c, ldc);
}

/* A GEMM of at least SPLIT_FLOPS is cut into pieces of whole columns of C
 * (or rows, when it is narrow), at least PIECE_COLS (PIECE_ROWS) wide, at
 * most MAX_PIECES: a function of its shape alone, so that each element of
 * C comes from the same call on any number of threads. */
#define SPLIT_FLOPS 8e6
#define PIECE_COLS 256
#define PIECE_ROWS 64
#define MAX_PIECES 8

typedef struct {
	int ta, tb, m, n, k, lda, ldb, ldc;
	float alpha, beta;
	const float *a, *b;
	float *c;
	int cols, width;            /* pieces of columns (else rows), their width */
} gemm_args;

static void gemm_piece(void *ctx, long i, int slot)
{
	const gemm_args *q = ctx;
	int lo = (int)i * q->width, len = q->width;
	if (q->cols) {
		len = lo + len < q->n ? len : q->n - lo;
		sgemm(q->ta, q->tb, q->m, len, q->k, q->alpha, q->a, q->lda,
		      q->tb ? q->b + (size_t)lo * q->ldb : q->b + lo, q->ldb, q->beta, q->c + lo, q->ldc);
	} else {
		len = lo + len < q->m ? len : q->m - lo;
		sgemm(q->ta, q->tb, len, q->n, q->k, q->alpha, q->ta ? q->a + lo : q->a + (size_t)lo * q->lda,
		      q->lda, q->b, q->ldb, q->beta, q->c + (size_t)lo * q->ldc, q->ldc);
	}
}

static void cpu_parallel(long n, int slots, void (*fn)(void *ctx, long i, int slot), void *ctx);

/* Set while this thread runs an item of cpu_parallel: its GEMMs stay whole
 * (on 1 thread as on many, so the bits do not change). */
static _Thread_local int in_item;

static void cpu_gemm(int ta, int tb, int m, int n, int k, float alpha,
                     const float *a, int lda, const float *b, int ldb,
                     float beta, float *c, int ldc)
{
	blas_single();
	gemm_args q = {ta, tb, m, n, k, lda, ldb, ldc, alpha, beta, a, b, c, 0, 0};
	int pieces = 1;
	if (!in_item && 2.0 * m * n * k >= SPLIT_FLOPS) {
		int big = n >= 2 * PIECE_COLS, unit = big ? 16 : 4, len = big ? n : m;
		int p = len / (big ? PIECE_COLS : PIECE_ROWS);
		p = p < MAX_PIECES ? p : MAX_PIECES;
		if (p > 1) {
			q.cols = big;
			q.width = ((len + p - 1) / p + unit - 1) / unit * unit;
			pieces = (len + q.width - 1) / q.width;
		}
	}
	if (pieces <= 1)
		sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
	else
		cpu_parallel(pieces, MAX_PIECES, gemm_piece, &q);
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
	int oy0, oy1;           /* the output rows that col holds */
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

/* One row of col: tap (ky, kx) of channel plane xp (h, w) over output rows
 * [oy0, oy1) of one image. */
static void im2col_row(const float *xp, int h, int w, int ky, int kx, int stride, int pad,
                       int oy0, int oy1, int ow, float *dst)
{
	int x0, x1;
	inside(ow, w, kx, stride, pad, &x0, &x1);
	for (int oy = oy0; oy < oy1; oy++) {
		int iy = oy * stride - pad + ky;
		float *d = dst + (long)(oy - oy0) * ow;
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
	long p = (long)(q->oy1 - q->oy0) * q->ow, ncols = q->n * p, kk = (long)q->k * q->k;
	for (long r = r0; r < r1; r++) {
		int ci = r / kk, ky = r / q->k % q->k, kx = r % q->k;
		for (int img = 0; img < q->n; img++)
			im2col_row(q->in + ((long)img * q->c + ci) * q->h * q->w, q->h, q->w, ky, kx,
			           q->stride, q->pad, q->oy0, q->oy1, q->ow, q->out + r * ncols + img * p);
	}
}

static void im2col_run(col_args *q)
{
	long rows = (long)q->c * q->k * q->k;
	p2p_pool_run(rows, parts_for(rows * q->n * (q->oy1 - q->oy0) * q->ow, rows), im2col_range, q);
}

static void cpu_im2col(const float *x, int n, int c, int h, int w, int k,
                       int stride, int pad, int oh, int ow, float *col)
{
	im2col_run(&(col_args){x, col, n, c, h, w, k, stride, pad, oh, ow, 0, oh});
}

static void cpu_im2col_rows(const float *x, int c, int h, int w, int k, int stride, int pad,
                            int oh, int ow, int oy0, int oy1, float *col)
{
	im2col_run(&(col_args){x, col, 1, c, h, w, k, stride, pad, oh, ow, oy0, oy1});
}

/* The adjoint of im2col_row: xp += the row scattered back. */
static void col2im_row(const float *src, int h, int w, int ky, int kx, int stride, int pad,
                       int oy0, int oy1, int ow, float *xp)
{
	int x0, x1;
	inside(ow, w, kx, stride, pad, &x0, &x1);
	for (int oy = oy0; oy < oy1; oy++) {
		int iy = oy * stride - pad + ky;
		if (iy < 0 || iy >= h)
			continue;
		const float *s = src + (long)(oy - oy0) * ow;
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
	long p = (long)(q->oy1 - q->oy0) * q->ow, ncols = q->n * p;
	for (long pl = p0; pl < p1; pl++) {
		int img = pl / q->c, ci = pl % q->c;
		float *xp = q->out + pl * q->h * q->w;
		for (int ky = 0; ky < q->k; ky++)
			for (int kx = 0; kx < q->k; kx++) {
				long r = ((long)ci * q->k + ky) * q->k + kx;
				col2im_row(q->in + r * ncols + img * p, q->h, q->w, ky, kx, q->stride,
				           q->pad, q->oy0, q->oy1, q->ow, xp);
			}
	}
}

static void col2im_run(col_args *q)
{
	long planes = (long)q->n * q->c;
	p2p_pool_run(planes, parts_for(planes * q->k * q->k * (q->oy1 - q->oy0) * q->ow, planes),
	             col2im_range, q);
}

static void cpu_col2im(const float *col, int n, int c, int h, int w, int k,
                       int stride, int pad, int oh, int ow, float *x)
{
	col2im_run(&(col_args){col, x, n, c, h, w, k, stride, pad, oh, ow, 0, oh});
}

static void cpu_col2im_rows(const float *col, int c, int h, int w, int k, int stride, int pad,
                            int oh, int ow, int oy0, int oy1, float *x)
{
	col2im_run(&(col_args){col, x, 1, c, h, w, k, stride, pad, oh, ow, oy0, oy1});
}

/* ---- Winograd transforms: F(4x4, 3x3), F(3x3, 4x4), F(5x5, 2x2) ----
 * Lavin and Gray's points 0, +-1, +-2 and infinity: all three read 6x6
 * patches of the padded input through the same B^T; a tile holds m x m
 * outputs of a k x k kernel, m = 7 - k. The 36 products of the transformed
 * patch and weights are independent GEMMs over channels (conv.c). Both
 * transforms are separable and run along a whole row of tiles at once, TB
 * tiles at a time, so their loops vectorise. F(5x5, 2x2) serves the
 * transposed 4x4 stride-2 convolutions, as four 2x2 kernels (conv.c). */

#define TB 64

/* The transforms are arithmetic on cached data, where wider vectors pay:
 * compiled also for AVX2 and AVX-512, the loader picks what the CPU has. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define WIDE __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef WIDE
#define WIDE
#endif

/* d (6 inputs e0..e5, each a row of n values) -> the six B^T rows */
WIDE static void wino_bt(const float *e[6], float *o[6], int n)
{
	const float *e0 = e[0], *e1 = e[1], *e2 = e[2], *e3 = e[3], *e4 = e[4], *e5 = e[5];
	float *o0 = o[0], *o1 = o[1], *o2 = o[2], *o3 = o[3], *o4 = o[4], *o5 = o[5];
	SIMD for (int t = 0; t < n; t++) {
		float a = e4[t] - 4 * e2[t], b = e3[t] - 4 * e1[t];
		float c = e4[t] - e2[t], d = 2 * (e3[t] - e1[t]);
		o0[t] = 4 * e0[t] - 5 * e2[t] + e4[t];
		o1[t] = a + b;
		o2[t] = a - b;
		o3[t] = c + d;
		o4[t] = c - d;
		o5[t] = 4 * e1[t] - 5 * e3[t] + e5[t];
	}
}

typedef struct {
	const float *x;
	float *v;
	const float *b;
	int c, h, w, k, pad, oh, ow, t0, t1;
	long ld;
	int s2;
} wino_args;

/* The transforms sweep blocks of tiles: rows of few tiles (13 at 64x64
 * with m = 5) would leave their vector loops mostly in the scalar
 * remainder, so a block holds as many whole rows of tiles as fit in TB,
 * or a piece of TB tiles of one long row. Block: tile rows [ty, ty + r),
 * tiles [tb, tb + tn) of each, n = r tn, contiguous from tile `first`. */
typedef struct {
	int ty, r, tb, tn, n;
	long first;
} wino_blk;

static int blk_next(wino_blk *b, int tw, int t0, int t1)
{
	if (b->n == 0)                  /* the first */
		b->ty = t0, b->tb = 0;
	else if (b->tb + b->tn < tw)
		b->tb += b->tn;
	else
		b->ty += b->r, b->tb = 0;
	if (b->ty >= t1)
		return 0;
	int rows = tw <= TB ? TB / tw : 1;
	b->r = t1 - b->ty < rows ? t1 - b->ty : rows;
	b->tn = tw - b->tb < TB ? tw - b->tb : TB;
	b->n = b->r * b->tn;
	b->first = (long)(b->ty - t0) * tw + b->tb;
	return 1;
}

/* Tile rows [t0, t1) of channels [c0, c1) of x (c, h, w) into v (36, c, ld),
 * columns [0, T), T = (t1 - t0) * tw: element (xi, ci, tile) of the
 * transformed patches. Tiles of m = 7 - k outputs a side over the output
 * (oh, ow); tile (ty, tx) reads rows and columns m ty - pad .. + 5 of x.
 * s2: x is (c / 4, 2 (h - 1), 2 (w - 1)), read as its space-to-depth
 * (cpu_wino_in). */
static void wino_in_range(void *ctx, long c0, long c1)
{
	const wino_args *q = ctx;
	int h = q->h, w = q->w, m = 7 - q->k, tw = (q->ow + m - 1) / m;
	int sh = 2 * (h - 1), sw = 2 * (w - 1);     /* s2: x's own size */
	long cs = (long)q->c * q->ld;
	float ph[5][TB + 2], hz[6][6][TB];  /* a row's m phases; rows x B^T columns */
	float prow[5 * TB + 16];            /* a row's columns m tb - pad .., zero outside */
	for (long ci = c0; ci < c1; ci++) {
		const float *xp = q->s2 ? q->x + ci / 4 * sh * sw : q->x + ci * h * w;
		int py = (int)(ci >> 1 & 1), px = (int)(ci & 1);
		wino_blk bk = {0};
		while (blk_next(&bk, tw, q->t0, q->t1)) {
			int n = bk.tn, x0 = m * bk.tb - q->pad, len = m * (n + 2);
			for (int qr = 0; qr < bk.r; qr++)
				for (int r = 0; r < 6; r++) {
					int iy = m * (bk.ty + qr) - q->pad + r;
					int a = x0 < 0 ? -x0 : 0, b = x0 + len > w ? w - x0 : len;
					if (iy < 0 || iy >= h || b <= a) {
						memset(prow, 0, len * sizeof *prow);
					} else if (q->s2) {
						/* x[ci / 4][2 iy + py - 1][2 ix + px - 1], zero outside */
						int sy = 2 * iy + py - 1;
						const float *src = xp + (long)sy * sw + 2 * x0 + px - 1;
						int a2 = 2 * x0 + px - 1 < 0 ? 1 : 0;
						int b2 = (sw - (2 * x0 + px - 1) + 1) / 2;
						b2 = b2 < len ? b2 : len;
						if (sy < 0 || sy >= sh)
							a2 = b2 = 0;
						for (int t = 0; t < a2 && t < len; t++)
							prow[t] = 0;
						SIMD for (int t = a2; t < b2; t++)
							prow[t] = src[2 * t];
						for (int t = b2 > a2 ? b2 : a2; t < len; t++)
							prow[t] = 0;
					} else {
						/* columns x0 .. x0 + len - 1 of the row, zero outside it */
						memset(prow, 0, a * sizeof *prow);
						memcpy(prow + a, xp + (long)iy * w + x0 + a, (b - a) * sizeof *prow);
						memset(prow + b, 0, (len - b) * sizeof *prow);
					}
					/* tap j of tile t is prow[m t + j] = ph[j % m][t + j / m] */
					if (m == 5) {
						SIMD for (int t = 0; t <= n; t++) {
							ph[0][t] = prow[5 * t];
							ph[1][t] = prow[5 * t + 1];
							ph[2][t] = prow[5 * t + 2];
							ph[3][t] = prow[5 * t + 3];
							ph[4][t] = prow[5 * t + 4];
						}
					} else if (m == 4) {
						SIMD for (int t = 0; t <= n; t++) {
							ph[0][t] = prow[4 * t];
							ph[1][t] = prow[4 * t + 1];
							ph[2][t] = prow[4 * t + 2];
							ph[3][t] = prow[4 * t + 3];
						}
					} else {
						SIMD for (int t = 0; t <= n + 1; t++) {
							ph[0][t] = prow[3 * t];
							ph[1][t] = prow[3 * t + 1];
							ph[2][t] = prow[3 * t + 2];
						}
					}
					const float *ep[6];
					for (int j = 0; j < 6; j++)
						ep[j] = ph[j % m] + j / m;
					float *op[6];
					for (int x2 = 0; x2 < 6; x2++)
						op[x2] = hz[x2][r] + qr * n;
					wino_bt(ep, op, n);
				}
			/* columns: hz[xi2][r] over r -> v[(xi1 * 6 + xi2)], the whole block */
			long at = ci * q->ld + bk.first;
			for (int x2 = 0; x2 < 6; x2++) {
				const float *ep[6] = {hz[x2][0], hz[x2][1], hz[x2][2], hz[x2][3],
				                      hz[x2][4], hz[x2][5]};
				float *op[6];
				for (int x1 = 0; x1 < 6; x1++)
					op[x1] = q->v + (x1 * 6 + x2) * cs + at;
				wino_bt(ep, op, bk.n);
			}
		}
	}
}

/* s2: x (c, h, w), h and w even, is read as (4 c, h / 2 + 1, w / 2 + 1),
 * its space-to-depth (backend.h) */
static void cpu_wino_in(const float *x, int c, int h, int w, int k, int pad, int t0, int t1,
                        float *v, long ld, int s2)
{
	if (s2)
		c *= 4, h = h / 2 + 1, w = w / 2 + 1;
	int oh = h + 2 * pad - k + 1, ow = w + 2 * pad - k + 1;
	wino_args q = {x, v, NULL, c, h, w, k, pad, oh, ow, t0, t1, ld, s2};
	long work = (long)c * (t1 - t0) * (7 - k) * ow * 12;
	p2p_pool_run(c, parts_for(work, c), wino_in_range, &q);
}

/* m (6 rows of n values) -> the A^T rows: five for 2x2 kernels, four for
 * 3x3 ones, three for 4x4 ones (row i is p^i over the points 0, +-1, +-2,
 * and infinity adds to the last) */
WIDE static void wino_at5(const float *m[6], float *o[5], int n)
{
	const float *m0 = m[0], *m1 = m[1], *m2 = m[2], *m3 = m[3], *m4 = m[4], *m5 = m[5];
	float *o0 = o[0], *o1 = o[1], *o2 = o[2], *o3 = o[3], *o4 = o[4];
	SIMD for (int t = 0; t < n; t++) {
		float a = m1[t] + m2[t], b = m1[t] - m2[t], c = m3[t] + m4[t], d = m3[t] - m4[t];
		o0[t] = m0[t] + a + c;
		o1[t] = b + 2 * d;
		o2[t] = a + 4 * c;
		o3[t] = b + 8 * d;
		o4[t] = a + 16 * c + m5[t];
	}
}

WIDE static void wino_at4(const float *m[6], float *o[5], int n)
{
	const float *m0 = m[0], *m1 = m[1], *m2 = m[2], *m3 = m[3], *m4 = m[4], *m5 = m[5];
	float *o0 = o[0], *o1 = o[1], *o2 = o[2], *o3 = o[3];
	SIMD for (int t = 0; t < n; t++) {
		float a = m1[t] + m2[t], b = m1[t] - m2[t], c = m3[t] + m4[t], d = m3[t] - m4[t];
		o0[t] = m0[t] + a + c;
		o1[t] = b + 2 * d;
		o2[t] = a + 4 * c;
		o3[t] = b + 8 * d + m5[t];
	}
}

WIDE static void wino_at3(const float *m[6], float *o[5], int n)
{
	const float *m0 = m[0], *m1 = m[1], *m2 = m[2], *m3 = m[3], *m4 = m[4], *m5 = m[5];
	float *o0 = o[0], *o1 = o[1], *o2 = o[2];
	SIMD for (int t = 0; t < n; t++) {
		float a = m1[t] + m2[t], b = m1[t] - m2[t], c = m3[t] + m4[t], d = m3[t] - m4[t];
		o0[t] = m0[t] + a + c;
		o1[t] = b + 2 * d;
		o2[t] = a + 4 * c + m5[t];
	}
}

typedef void wino_at_fn(const float *[6], float *[5], int);

static wino_at_fn *wino_at(int m)
{
	return m == 5 ? wino_at5 : m == 4 ? wino_at4 : wino_at3;
}

/* A^T down the columns of n tiles of one channel: vt[i][x2] (m rows of the
 * six columns) from mp = that channel's first tile in m (36, ., ld),
 * element (xi) at mp + xi * xs */
static void wino_cols(const float *mp, long xs, int m, float vt[5][6][TB], int n)
{
	wino_at_fn *at = wino_at(m);
	for (int x2 = 0; x2 < 6; x2++) {
		const float *ip[6];
		for (int x1 = 0; x1 < 6; x1++)
			ip[x1] = mp + (x1 * 6 + x2) * xs;
		float *op[5] = {vt[0][x2], vt[1][x2], vt[2][x2], vt[3][x2], vt[4][x2]};
		at(ip, op, n);
	}
}

/* A^T along row i of those tiles: out[j][t], column j of tile t */
static void wino_row(float vt[5][6][TB], int i, int m, float out[5][TB], int n)
{
	const float *ip[6] = {vt[i][0], vt[i][1], vt[i][2], vt[i][3], vt[i][4], vt[i][5]};
	float *op[5] = {out[0], out[1], out[2], out[3], out[4]};
	wino_at(m)(ip, op, n);
}

/* m (36, c, ld) -> rows of tiles [t0, t1) of y (c, oh, ow), plus b[c] */
static void wino_out_range(void *ctx, long k0, long k1)
{
	const wino_args *q = ctx;
	int oh = q->oh, ow = q->ow, m = 7 - q->k, tw = (ow + m - 1) / m;
	long ks = (long)q->c * q->ld;
	float vt[5][6][TB], out[5][TB];   /* A^T down the columns; one output row's phases */
	for (long k = k0; k < k1; k++) {
		float *yp = q->v + k * oh * ow, bias = q->b ? q->b[k] : 0;
		wino_blk bk = {0};
		while (blk_next(&bk, tw, q->t0, q->t1)) {
			int n = bk.tn, tb = bk.tb;
			wino_cols(q->x + k * q->ld + bk.first, ks, m, vt, bk.n);
			for (int i = 0; i < m; i++) {
				wino_row(vt, i, m, out, bk.n);
				for (int qr = 0; qr < bk.r; qr++) {
					int oy = m * (bk.ty + qr) + i;
					if (oy >= oh)
						break;
					const float *o0 = out[0] + qr * n, *o1 = out[1] + qr * n;
					const float *o2 = out[2] + qr * n, *o3 = out[3] + qr * n;
					const float *o4 = out[4] + qr * n;
					float *row = yp + (long)oy * ow + m * tb;
					int full = m * (tb + n) <= ow ? n : n - 1;   /* tiles wholly inside */
					if (m == 5) {
						SIMD for (int t = 0; t < full; t++) {
							row[5 * t] = o0[t] + bias;
							row[5 * t + 1] = o1[t] + bias;
							row[5 * t + 2] = o2[t] + bias;
							row[5 * t + 3] = o3[t] + bias;
							row[5 * t + 4] = o4[t] + bias;
						}
					} else if (m == 4) {
						SIMD for (int t = 0; t < full; t++) {
							row[4 * t] = o0[t] + bias;
							row[4 * t + 1] = o1[t] + bias;
							row[4 * t + 2] = o2[t] + bias;
							row[4 * t + 3] = o3[t] + bias;
						}
					} else {
						SIMD for (int t = 0; t < full; t++) {
							row[3 * t] = o0[t] + bias;
							row[3 * t + 1] = o1[t] + bias;
							row[3 * t + 2] = o2[t] + bias;
						}
					}
					for (int j = 0; full < n && m * (tb + full) + j < ow; j++)
						row[m * full + j] = out[j][qr * n + full] + bias;
				}
			}
		}
	}
}

static void cpu_wino_out(const float *m, long ld, int c, int oh, int ow, int k, int t0, int t1,
                         const float *b, float *y)
{
	wino_args q = {m, y, b, c, 0, 0, k, 0, oh, ow, t0, t1, ld, 0};
	long work = (long)c * (t1 - t0) * (7 - k) * ow * 12;
	p2p_pool_run(c, parts_for(work, c), wino_out_range, &q);
}

/* The four phases of a transposed 4x4 stride-2 convolution: m (36, 4c, ld),
 * channel (py * 2 + px) * c + co, holds the 2x2 convolution's output o
 * (oh, ow) of phase (py, px); o[s][t] is y[co][2s - py][2t - px] of y (c,
 * 2 (oh - 1), 2 (ow - 1)). Channels [k0, k1) of y, all four phases each. */
static void wino_up_range(void *ctx, long k0, long k1)
{
	const wino_args *q = ctx;
	int oh = q->oh, ow = q->ow, tw = (ow + 4) / 5, yh = 2 * (oh - 1), yw = 2 * (ow - 1);
	long cs = (long)q->c * q->ld, ks = 4 * cs;
	float vt[4][5][6][TB], out[2][5][TB];
	float rb[10 * TB + 2];              /* a row of y from column 10 tb - 1 */
	for (long k = k0; k < k1; k++) {
		float *yp = q->v + k * yh * yw, bias = q->b ? q->b[k] : 0;
		wino_blk bk = {0};
		while (blk_next(&bk, tw, q->t0, q->t1)) {
			int n = bk.tn, tb = bk.tb;
			for (int p = 0; p < 4; p++)
				wino_cols(q->x + p * cs + k * q->ld + bk.first, ks, 5, vt[p], bk.n);
			int c0 = 10 * tb - 1, c1 = 10 * (tb + n) - 1;
			c0 = c0 < 0 ? 0 : c0, c1 = c1 > yw ? yw : c1;
			for (int i = 0; i < 5; i++)
				for (int py = 0; py < 2; py++) {
					wino_row(vt[2 * py], i, 5, out[0], bk.n);
					wino_row(vt[2 * py + 1], i, 5, out[1], bk.n);
					for (int qr = 0; qr < bk.r; qr++) {
						int yr = 2 * (5 * (bk.ty + qr) + i) - py;
						if (yr < 0 || yr >= yh)
							continue;
						for (int j = 0; j < 5; j++) {
							const float *a0 = out[0][j] + qr * n, *a1 = out[1][j] + qr * n;
							SIMD for (int t = 0; t < n; t++) {
								rb[10 * t + 2 * j + 1] = a0[t];
								rb[10 * t + 2 * j] = a1[t];
							}
						}
						float *row = yp + (long)yr * yw;
						const float *src = rb + 1 - 10 * tb;
						SIMD for (int x = c0; x < c1; x++)
							row[x] = src[x] + bias;
					}
				}
		}
	}
}

static void cpu_wino_out_up(const float *m, long ld, int c, int oh, int ow, int t0, int t1,
                            const float *b, float *y)
{
	wino_args q = {m, y, b, c, 0, 0, 2, 0, oh, ow, t0, t1, ld, 0};
	long work = 4L * c * (t1 - t0) * 5 * ow * 12;
	p2p_pool_run(c, parts_for(work, c), wino_up_range, &q);
}

/* The weights: G g G^T for every (row, column) pair of the output, rows
 * [a0, a1) here. G's row j is p_j^c / prod_{l != j} (p_j - p_l) over the
 * points 0, 1, -1, 2, -2, and e_{k-1} for infinity. */
typedef struct {
	const float *w;
	float *u;
	int cout, cin, k, mode;
} wt_args;

/* Kernel (a, b) of u's plane: a (ky, kx) -> f[ky * ks + kx] read backwards
 * or forwards; k the kernel side of the Winograd form */
typedef struct {
	const float *f;
	int k, ks, step, first;
} wt_kernel;

static wt_kernel wt_pick(const wt_args *q, long a, int b)
{
	int k = q->k, kk = k * k, cin = q->cin;
	switch (q->mode) {
	case P2P_WINO_GRAD:     /* (ci, co): w[co][ci] turned 180 degrees */
		return (wt_kernel){q->w + ((size_t)b * cin + a) * kk, k, k, -1, kk - 1};
	case P2P_WINO_DOWN: {   /* (co, 4 ci + phase): taps 2 t + p of w[co][ci] (4x4) */
		int ci = b / 4, py = b >> 1 & 1, px = b & 1;
		return (wt_kernel){q->w + ((size_t)a * cin + ci) * 16, 2, 4, 2, py * 4 + px};
	}
	case P2P_WINO_UP: {     /* (phase, co, ci): taps 3 - p - 2 t of w[ci][co] (4x4) */
		int ph = (int)(a / q->cout), co = (int)(a % q->cout), py = ph >> 1, px = ph & 1;
		return (wt_kernel){q->w + ((size_t)b * q->cout + co) * 16, 2, 4, -2,
		                   (3 - py) * 4 + 3 - px};
	}
	default:
		return (wt_kernel){q->w + ((size_t)a * cin + b) * kk, k, k, 1, 0};
	}
}

/* out[bi] = sum over y < k of c[y] in[y][bi], added in order of y, for
 * nb kernels side by side */
static void wt_combine(float *out, const float *c, const float *const *in, int k, int nb)
{
	SIMD for (int bi = 0; bi < nb; bi++)
		out[bi] = 0;
	for (int y = 0; y < k; y++) {
		float cy = c[y];
		const float *iy = in[y];
		SIMD for (int bi = 0; bi < nb; bi++)
			out[bi] += cy * iy[bi];
	}
}

static void wino_weights_range(void *ctx, long a0, long a1)
{
	static const float G[5][4] = {       /* the finite points' rows */
		{1 / 4.f, 0, 0, 0}, {-1 / 6.f, -1 / 6.f, -1 / 6.f, -1 / 6.f},
		{-1 / 6.f, 1 / 6.f, -1 / 6.f, 1 / 6.f}, {1 / 24.f, 1 / 12.f, 1 / 6.f, 1 / 3.f},
		{1 / 24.f, -1 / 12.f, 1 / 6.f, -1 / 3.f}
	};
	const wt_args *q = ctx;
	int up = q->mode == P2P_WINO_UP, tr = q->mode == P2P_WINO_GRAD;
	int rows = up ? 4 * q->cout : tr ? q->cin : q->cout;
	int cols = tr ? q->cout : q->mode == P2P_WINO_DOWN ? 4 * q->cin : q->cin;
	size_t plane = (size_t)rows * cols;
	int k = q->k;
	float gr[6][4] = {{0}};              /* G's rows for this k */
	for (int i = 0; i < 6; i++)
		for (int y = 0; y < k; y++)
			gr[i][y] = i < 5 ? G[i][y] : y == k - 1;
	/* WB kernels at a time, the transforms vectorised across them, into o;
	 * then each of the 36 planes' run of WB floats written at once: 36
	 * scattered stores per kernel thrash the write buffers (U-Net's
	 * 1024->256 layer makes 151 MB of them a step) */
	enum { WB = 64 };
	float g[4][4][WB], t[6][4][WB], o[36][WB];
	for (long a = a0; a < a1; a++)
		for (int b0 = 0; b0 < cols; b0 += WB) {
			int nb = cols - b0 < WB ? cols - b0 : WB;
			for (int bi = 0; bi < nb; bi++) {
				wt_kernel kn = wt_pick(q, a, b0 + bi);
				for (int y = 0; y < k; y++)
					for (int x = 0; x < k; x++)
						g[y][x][bi] = kn.f[kn.first + kn.step * (y * kn.ks + x)];
			}
			/* t = G g (down the columns of each kernel), o = t G^T */
			for (int i = 0; i < 6; i++)
				for (int x = 0; x < k; x++) {
					const float *col[4] = {g[0][x], g[1][x], g[2][x], g[3][x]};
					wt_combine(t[i][x], gr[i], col, k, nb);
				}
			for (int i = 0; i < 6; i++)
				for (int j = 0; j < 6; j++) {
					const float *row[4] = {t[i][0], t[i][1], t[i][2], t[i][3]};
					wt_combine(o[i * 6 + j], gr[j], row, k, nb);
				}
			for (int xi = 0; xi < 36; xi++)
				memcpy(q->u + xi * plane + (size_t)a * cols + b0, o[xi], nb * sizeof(float));
		}
}

static void cpu_wino_weights(const float *w, int cout, int cin, int k, int mode, float *u)
{
	wt_args q = {w, u, cout, cin, mode == P2P_WINO_UP || mode == P2P_WINO_DOWN ? 2 : k, mode};
	long rows = mode == P2P_WINO_UP ? 4L * cout : mode == P2P_WINO_GRAD ? cin : cout;
	p2p_pool_run(rows, parts_for((long)cout * cin * 100, rows), wino_weights_range, &q);
}

/* ---- items across the pool ---- */

typedef struct {
	void (*fn)(void *ctx, long i, int slot);
	void *ctx;
	long n;
	atomic_long next;
} par_args;

/* Parts are slots; each takes items until none is left, so a thread that
 * another job kept off its core does less, not the others wait. */
static void par_range(void *c, long s0, long s1)
{
	par_args *q = c;
	int outer = in_item;
	in_item = 1;
	for (long s = s0; s < s1; s++)
		for (long i; (i = atomic_fetch_add(&q->next, 1)) < q->n;)
			q->fn(q->ctx, i, (int)s);
	in_item = outer;
}

/* Inside an item (a chunk's GEMM, say) everything runs on that thread: the
 * pool is busy, and p2p_pool_run runs nested loops inline. */
static void cpu_parallel(long n, int slots, void (*fn)(void *ctx, long i, int slot), void *ctx)
{
	int t = p2p_pool_threads();
	t = t < slots ? t : slots;
	t = t < n ? t : (int)n;
	par_args q = {fn, ctx, n, 0};
	if (t <= 1)
		par_range(&q, 0, 1);
	else
		p2p_pool_run(t, t, par_range, &q);
}

/* ---- per-plane ops: bias, affine, InstanceNorm, pooling ---- */

enum { PL_BIAS, PL_BIAS_GRAD, PL_AFFINE, PL_AFFINE_BWD, PL_IN, PL_IN_BWD, PL_POOL, PL_POOL_BWD };

typedef struct {
	int op, n, c, h, w;
	long p;
	const float *a, *b, *s, *t;
	float *y, *m, *r;
	float eps;
} pl_args;

/* Sums over a plane are taken in double, in blocks of 256 float partial
 * sums, each in order. (Vectorised, one partial sum per lane, the sums
 * moved G's gradients on 2x2 planes by 2e-5 against PyTorch's, towards the
 * parity test's 1e-4 limit.) The additions of one plane form a chain, each
 * waiting for the last, so PG planes are summed side by side, PG chains in
 * flight: every plane's sum is still in its own order, the same bits as one
 * plane at a time. */
#define PG 8

enum { GS_SUM, GS_SQDEV, GS_SUM_DOT };

#define UNROLL _Pragma("GCC unroll 8")

/* Over planes a[j] (and b[j]), j < np, each in blocks of float partial sums
 * added to a double in order: GS_SUM s = sum a; GS_SQDEV s = sum (a -
 * mu[j])^2; GS_SUM_DOT s = sum a and d = sum a b. */
static inline __attribute__((always_inline))
void group_sums_n(int kind, int np, long p, const float *const *a, const float *const *b,
                  const float *mu, double *s, double *d)
{
	for (int j = 0; j < np; j++)
		s[j] = 0, d[j] = 0;
	for (long q0 = 0; q0 < p; q0 += 256) {
		long q1 = q0 + 256 < p ? q0 + 256 : p;
		float t[PG] = {0}, u[PG] = {0};
		if (kind == GS_SUM) {
			for (long q = q0; q < q1; q++)
				UNROLL for (int j = 0; j < np; j++)
					t[j] += a[j][q];
		} else if (kind == GS_SQDEV) {
			for (long q = q0; q < q1; q++)
				UNROLL for (int j = 0; j < np; j++) {
					float e = a[j][q] - mu[j];
					t[j] += e * e;
				}
		} else {
			for (long q = q0; q < q1; q++)
				UNROLL for (int j = 0; j < np; j++) {
					t[j] += a[j][q];
					u[j] += a[j][q] * b[j][q];
				}
		}
		for (int j = 0; j < np; j++)
			s[j] += t[j], d[j] += u[j];
	}
}

/* np = PG by a constant, so that the partial sums stay in registers */
static void group_sums(int kind, int np, long p, const float *const *a, const float *const *b,
                       const float *mu, double *s, double *d)
{
	if (np == PG)
		group_sums_n(kind, PG, p, a, b, mu, s, d);
	else
		group_sums_n(kind, np, p, a, b, mu, s, d);
}

/* InstanceNorm forward of planes i .. i + np - 1 */
static void in_fwd_group(const float *x, float *y, long i, int np, long p, float eps,
                         float *mean, float *rstd)
{
	const float *a[PG];
	float mu[PG];
	double s[PG], d[PG];
	for (int j = 0; j < np; j++)
		a[j] = x + (i + j) * p;
	group_sums(GS_SUM, np, p, a, NULL, NULL, s, d);
	for (int j = 0; j < np; j++)
		mu[j] = (float)(s[j] / p);
	group_sums(GS_SQDEV, np, p, a, NULL, mu, s, d);
	for (int j = 0; j < np; j++) {
		float rs = (float)(1 / sqrt(s[j] / p + eps)), m = mu[j];
		const float *xp = a[j];
		float *yp = y + (i + j) * p;
		SIMD for (long q = 0; q < p; q++)
			yp[q] = (xp[q] - m) * rs;
		mean[i + j] = m;
		rstd[i + j] = rs;
	}
}

/* InstanceNorm backward of planes i .. i + np - 1: dx += from dy, y, rstd */
static void in_bwd_group(const float *dy, const float *y, const float *rstd, float *dx, long i,
                         int np, long p)
{
	const float *g[PG], *yp[PG];
	double sg[PG], sgy[PG];
	for (int j = 0; j < np; j++)
		g[j] = dy + (i + j) * p, yp[j] = y + (i + j) * p;
	group_sums(GS_SUM_DOT, np, p, g, yp, NULL, sg, sgy);
	for (int j = 0; j < np; j++) {
		float mg = (float)(sg[j] / p), mgy = (float)(sgy[j] / p), rs = rstd[i + j];
		const float *gj = g[j], *yj = yp[j];
		float *d = dx + (i + j) * p;
		SIMD for (long q = 0; q < p; q++)
			d[q] += rs * (gj[q] - mg - yj[q] * mgy);
	}
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
		int np = i1 - i < PG ? (int)(i1 - i) : PG;  /* planes from i, side by side */
		switch (q->op) {
		case PL_BIAS: {
			float bj = q->b[j];
			SIMD for (long k = 0; k < p; k++) q->y[o + k] += bj;
			break;
		}
		case PL_BIAS_GRAD: {    /* planes are channels here: sum over images */
			double s[PG] = {0}, t[PG], u[PG];
			const float *a[PG];
			for (int img = 0; img < q->n; img++) {
				for (int k = 0; k < np; k++)
					a[k] = q->a + ((long)img * q->c + i + k) * p;
				group_sums(GS_SUM, np, p, a, NULL, NULL, t, u);
				for (int k = 0; k < np; k++)
					s[k] += t[k];
			}
			for (int k = 0; k < np; k++)
				q->y[i + k] += (float)s[k];
			i += np - 1;
			break;
		}
		case PL_AFFINE: {
			float a = q->s[j], b = q->t ? q->t[j] : 0;
			SIMD for (long k = 0; k < p; k++) q->y[o + k] = q->a[o + k] * a + b;
			break;
		}
		case PL_AFFINE_BWD: {
			float a = q->s[j];
			SIMD for (long k = 0; k < p; k++) q->y[o + k] += q->a[o + k] * a;
			break;
		}
		case PL_IN:
			in_fwd_group(q->a, q->y, i, np, p, q->eps, q->m, q->r);
			i += np - 1;
			break;
		case PL_IN_BWD:         /* a = dy, b = y, r = rstd, y = dx */
			in_bwd_group(q->a, q->b, q->r, q->y, i, np, p);
			i += np - 1;
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
	.init = cpu_init,
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
	.im2col_rows = cpu_im2col_rows,
	.col2im_rows = cpu_col2im_rows,
	.parallel = cpu_parallel,
	.wino_in = cpu_wino_in,
	.wino_out = cpu_wino_out,
	.wino_out_up = cpu_wino_out_up,
	.wino_weights = cpu_wino_weights,
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
