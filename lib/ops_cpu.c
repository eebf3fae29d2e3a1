/* The CPU backend: matrix products through OpenBLAS cblas_sgemm, everything
 * else as plain C loops that the compiler vectorises, spread over cores with
 * OpenMP. OpenBLAS is the pthreads build here, so sgemm is only ever called
 * outside OpenMP parallel regions.
 *
 * Reductions add fixed chunks in a fixed order, so results do not depend on
 * the number of threads: same inputs, same bits. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "err.h"

/* Below this many elements a loop runs on one thread: waking the team costs
 * more than it saves. */
#define PAR_MIN 32768

/* ---- set-up ---- */

static void cpu_set_threads(int n)
{
	if (n < 1)
		return;
	omp_set_num_threads(n);
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

static void cpu_zero(float *x, size_t n) { memset(x, 0, n * sizeof *x); }

static void cpu_fill(float *x, size_t n, float v)
{
	#pragma omp parallel for if (n > PAR_MIN) schedule(static)
	for (size_t i = 0; i < n; i++)
		x[i] = v;
}

static void cpu_copy(float *dst, const float *src, size_t n)
{
	if (dst != src)
		memcpy(dst, src, n * sizeof *dst);
}

static void cpu_copy2d(float *dst, long dld, const float *src, long sld,
                       int rows, long cols, float beta)
{
	#pragma omp parallel for if ((long)rows * cols > PAR_MIN) schedule(static)
	for (int r = 0; r < rows; r++) {
		float *d = dst + r * dld;
		const float *s = src + r * sld;
		if (beta == 0)
			memcpy(d, s, cols * sizeof *d);
		else
			for (long j = 0; j < cols; j++)
				d[j] += s[j];
	}
}

static void cpu_swap01(const float *x, float *y, int a, int b, long p, float beta)
{
	#pragma omp parallel for collapse(2) if ((long)a * b * p > PAR_MIN) schedule(static)
	for (int j = 0; j < b; j++)
		for (int i = 0; i < a; i++) {
			const float *s = x + ((long)i * b + j) * p;
			float *d = y + ((long)j * a + i) * p;
			if (beta == 0)
				memcpy(d, s, p * sizeof *d);
			else
				for (long q = 0; q < p; q++)
					d[q] += s[q];
		}
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

/* One row of col: tap (ky, kx) of channel plane xp (h, w) over every output
 * position of one image. */
static void im2col_row(const float *xp, int h, int w, int ky, int kx,
                       int stride, int pad, int oh, int ow, float *dst)
{
	/* output columns whose input column is inside the image */
	int x0 = 0, x1 = ow;       /* [x0, x1) */
	while (x0 < ow && x0 * stride - pad + kx < 0)
		x0++;
	while (x1 > x0 && (x1 - 1) * stride - pad + kx >= w)
		x1--;
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
			for (int ox = x0; ox < x1; ox++)
				d[ox] = s[2 * ox];
		else
			for (int ox = x0; ox < x1; ox++)
				d[ox] = s[(long)ox * stride];
		for (int ox = x1; ox < ow; ox++)
			d[ox] = 0;
	}
}

static void cpu_im2col(const float *x, int n, int c, int h, int w, int k,
                       int stride, int pad, int oh, int ow, float *col)
{
	long p = (long)oh * ow, ncols = (long)n * p;
	int rows = c * k * k;
	#pragma omp parallel for collapse(2) if ((long)rows * ncols > PAR_MIN) schedule(static)
	for (int r = 0; r < rows; r++)
		for (int img = 0; img < n; img++) {
			int ci = r / (k * k), ky = r / k % k, kx = r % k;
			im2col_row(x + ((long)img * c + ci) * h * w, h, w, ky, kx,
			           stride, pad, oh, ow, col + r * ncols + img * p);
		}
}

/* The adjoint of im2col_row: xp += the row scattered back. */
static void col2im_row(const float *src, int h, int w, int ky, int kx,
                       int stride, int pad, int oh, int ow, float *xp)
{
	int x0 = 0, x1 = ow;
	while (x0 < ow && x0 * stride - pad + kx < 0)
		x0++;
	while (x1 > x0 && (x1 - 1) * stride - pad + kx >= w)
		x1--;
	for (int oy = 0; oy < oh; oy++) {
		int iy = oy * stride - pad + ky;
		if (iy < 0 || iy >= h)
			continue;
		const float *s = src + (long)oy * ow;
		float *d = xp + (long)iy * w - pad + kx;
		if (stride == 1)
			for (int ox = x0; ox < x1; ox++)
				d[ox] += s[ox];
		else if (stride == 2)
			for (int ox = x0; ox < x1; ox++)
				d[2 * ox] += s[ox];
		else
			for (int ox = x0; ox < x1; ox++)
				d[(long)ox * stride] += s[ox];
	}
}

static void cpu_col2im(const float *col, int n, int c, int h, int w, int k,
                       int stride, int pad, int oh, int ow, float *x)
{
	long p = (long)oh * ow, ncols = (long)n * p;
	/* one thread per image plane: no two threads add into the same x */
	#pragma omp parallel for collapse(2) if ((long)c * k * k * ncols > PAR_MIN) schedule(static)
	for (int img = 0; img < n; img++)
		for (int ci = 0; ci < c; ci++) {
			float *xp = x + ((long)img * c + ci) * h * w;
			for (int ky = 0; ky < k; ky++)
				for (int kx = 0; kx < k; kx++) {
					long r = ((long)ci * k + ky) * k + kx;
					col2im_row(col + r * ncols + img * p, h, w, ky, kx,
					           stride, pad, oh, ow, xp);
				}
		}
}

/* Sums of a plane in double, in blocks of float partial sums: accurate
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

static void cpu_bias_add(float *y, const float *b, int n, int c, long p)
{
	#pragma omp parallel for collapse(2) if ((long)n * c * p > PAR_MIN) schedule(static)
	for (int i = 0; i < n; i++)
		for (int j = 0; j < c; j++) {
			float *d = y + ((long)i * c + j) * p, bj = b[j];
			for (long q = 0; q < p; q++)
				d[q] += bj;
		}
}

static void cpu_bias_grad(float *db, const float *dy, int n, int c, long p)
{
	#pragma omp parallel for if ((long)n * c * p > PAR_MIN) schedule(static)
	for (int j = 0; j < c; j++) {
		double s = 0;
		for (int i = 0; i < n; i++)
			s += plane_sum(dy + ((long)i * c + j) * p, p);
		db[j] += (float)s;
	}
}

static void cpu_chan_affine(const float *x, float *y, int n, int c, long p,
                            const float *scale, const float *shift)
{
	#pragma omp parallel for collapse(2) if ((long)n * c * p > PAR_MIN) schedule(static)
	for (int i = 0; i < n; i++)
		for (int j = 0; j < c; j++) {
			long o = ((long)i * c + j) * p;
			float a = scale[j], b = shift ? shift[j] : 0;
			for (long q = 0; q < p; q++)
				y[o + q] = x[o + q] * a + b;
		}
}

static void cpu_chan_affine_bwd(const float *dy, float *dx, int n, int c, long p,
                                const float *scale)
{
	#pragma omp parallel for collapse(2) if ((long)n * c * p > PAR_MIN) schedule(static)
	for (int i = 0; i < n; i++)
		for (int j = 0; j < c; j++) {
			long o = ((long)i * c + j) * p;
			float a = scale[j];
			for (long q = 0; q < p; q++)
				dx[o + q] += dy[o + q] * a;
		}
}

/* ---- InstanceNorm ---- */

static void cpu_instnorm_fwd(const float *x, float *y, float *mean, float *rstd,
                             int planes, long p, float eps)
{
	#pragma omp parallel for if ((long)planes * p > PAR_MIN) schedule(static)
	for (int i = 0; i < planes; i++) {
		const float *xp = x + (long)i * p;
		float *yp = y + (long)i * p;
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
		mean[i] = mu;
		rstd[i] = rs;
	}
}

static void cpu_instnorm_bwd(const float *dy, const float *y, const float *rstd,
                             float *dx, int planes, long p)
{
	#pragma omp parallel for if ((long)planes * p > PAR_MIN) schedule(static)
	for (int i = 0; i < planes; i++) {
		const float *g = dy + (long)i * p, *yp = y + (long)i * p;
		float *d = dx + (long)i * p;
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
		float mg = (float)(sg / p), mgy = (float)(sgy / p), rs = rstd[i];
		for (long q = 0; q < p; q++)
			d[q] += rs * (g[q] - mg - yp[q] * mgy);
	}
}

/* ---- elementwise ---- */

static void cpu_leaky_fwd(const float *x, float *y, size_t n, float slope)
{
	#pragma omp parallel for if (n > PAR_MIN) schedule(static)
	for (size_t i = 0; i < n; i++)
		y[i] = x[i] > 0 ? x[i] : slope * x[i];
}

static void cpu_leaky_bwd(const float *y, const float *dy, float *dx, size_t n, float slope)
{
	#pragma omp parallel for if (n > PAR_MIN) schedule(static)
	for (size_t i = 0; i < n; i++)
		dx[i] += y[i] > 0 ? dy[i] : slope * dy[i];
}

static void cpu_tanh_fwd(const float *x, float *y, size_t n)
{
	#pragma omp parallel for if (n > PAR_MIN / 8) schedule(static)
	for (size_t i = 0; i < n; i++)
		y[i] = tanhf(x[i]);
}

static void cpu_tanh_bwd(const float *y, const float *dy, float *dx, size_t n)
{
	#pragma omp parallel for if (n > PAR_MIN) schedule(static)
	for (size_t i = 0; i < n; i++)
		dx[i] += dy[i] * (1 - y[i] * y[i]);
}

static void cpu_dropout_fwd(const float *x, float *y, size_t n, float p,
                            uint64_t seed, uint64_t counter)
{
	float s = p < 1 ? 1 / (1 - p) : 0;
	#pragma omp parallel for if (n > PAR_MIN / 8) schedule(static)
	for (size_t i = 0; i < n; i++)
		y[i] = p2p_dropout_keep(seed, counter + i, p) ? x[i] * s : 0;
}

static void cpu_dropout_bwd(const float *dy, float *dx, size_t n, float p,
                            uint64_t seed, uint64_t counter)
{
	float s = p < 1 ? 1 / (1 - p) : 0;
	#pragma omp parallel for if (n > PAR_MIN / 8) schedule(static)
	for (size_t i = 0; i < n; i++)
		if (p2p_dropout_keep(seed, counter + i, p))
			dx[i] += dy[i] * s;
}

static void cpu_maxpool2_fwd(const float *x, float *y, int planes, int h, int w)
{
	int oh = h / 2, ow = w / 2;
	#pragma omp parallel for if ((long)planes * h * w > PAR_MIN) schedule(static)
	for (int i = 0; i < planes; i++)
		for (int oy = 0; oy < oh; oy++) {
			const float *r0 = x + ((long)i * h + 2 * oy) * w, *r1 = r0 + w;
			float *d = y + ((long)i * oh + oy) * ow;
			for (int ox = 0; ox < ow; ox++) {
				float m = r0[2 * ox];
				m = r0[2 * ox + 1] > m ? r0[2 * ox + 1] : m;
				m = r1[2 * ox] > m ? r1[2 * ox] : m;
				m = r1[2 * ox + 1] > m ? r1[2 * ox + 1] : m;
				d[ox] = m;
			}
		}
}

static void cpu_maxpool2_bwd(const float *x, const float *dy, float *dx,
                             int planes, int h, int w)
{
	int oh = h / 2, ow = w / 2;
	#pragma omp parallel for if ((long)planes * h * w > PAR_MIN) schedule(static)
	for (int i = 0; i < planes; i++)
		for (int oy = 0; oy < oh; oy++) {
			long o0 = ((long)i * h + 2 * oy) * w, o1 = o0 + w;
			const float *g = dy + ((long)i * oh + oy) * ow;
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

static void cpu_scale(float *x, size_t n, float a)
{
	#pragma omp parallel for if (n > PAR_MIN) schedule(static)
	for (size_t i = 0; i < n; i++)
		x[i] *= a;
}

static void cpu_axpy(float *y, const float *x, size_t n, float a)
{
	#pragma omp parallel for if (n > PAR_MIN) schedule(static)
	for (size_t i = 0; i < n; i++)
		y[i] += a * x[i];
}

/* ---- reductions and losses ----
 * A fixed split into NCHUNK chunks, summed in order: the same bits whatever
 * the thread count. Within a chunk, float partial sums over blocks of 256. */

#define NCHUNK 64

enum { L_SUM, L_MSEC, L_MSE, L_L1 };

static double reduce(int kind, const float *a, const float *b, float t,
                     size_t n, float *da, float gscale)
{
	double part[NCHUNK];
	size_t chunk = (n + NCHUNK - 1) / NCHUNK;
	float gs = n ? gscale / (float)n : 0;
	#pragma omp parallel for if (n > PAR_MIN) schedule(static)
	for (int c = 0; c < NCHUNK; c++) {
		size_t i0 = c * chunk, i1 = i0 + chunk < n ? i0 + chunk : n;
		double s = 0;
		for (size_t j0 = i0; j0 < i1; j0 += 256) {
			size_t j1 = j0 + 256 < i1 ? j0 + 256 : i1;
			float u = 0;
			switch (kind) {
			case L_SUM:
				for (size_t j = j0; j < j1; j++)
					u += a[j];
				break;
			case L_MSEC:
				for (size_t j = j0; j < j1; j++) {
					float d = a[j] - t;
					u += d * d;
					if (da)
						da[j] += 2 * gs * d;
				}
				break;
			case L_MSE:
				for (size_t j = j0; j < j1; j++) {
					float d = a[j] - b[j];
					u += d * d;
					if (da)
						da[j] += 2 * gs * d;
				}
				break;
			case L_L1:
				for (size_t j = j0; j < j1; j++) {
					float d = a[j] - b[j];
					u += fabsf(d);
					if (da)
						da[j] += d > 0 ? gs : d < 0 ? -gs : 0;
				}
				break;
			}
			s += u;
		}
		part[c] = i0 < i1 ? s : 0;
	}
	double s = 0;
	for (int c = 0; c < NCHUNK; c++)
		s += part[c];
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

/* ---- Adam ---- */

static void cpu_adam(float *p, const float *g, float *m, float *v, size_t n,
                     float lr, float beta1, float beta2, float eps, float wd, long step)
{
	double bc1 = 1 - pow(beta1, (double)step), bc2 = 1 - pow(beta2, (double)step);
	float step_size = (float)(lr / bc1), rbc2 = (float)(1 / sqrt(bc2));
	#pragma omp parallel for if (n > PAR_MIN) schedule(static)
	for (size_t i = 0; i < n; i++) {
		float gi = g[i] + wd * p[i];
		float mi = beta1 * m[i] + (1 - beta1) * gi;
		float vi = beta2 * v[i] + (1 - beta2) * gi * gi;
		m[i] = mi;
		v[i] = vi;
		p[i] -= step_size * mi / (sqrtf(vi) * rbc2 + eps);
	}
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
