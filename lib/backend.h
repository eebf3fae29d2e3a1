/* The backend interface: one table of function pointers that the layer and
 * model code calls for everything that touches tensor memory. The CPU backend
 * (ops_cpu.c: OpenBLAS + C loops) and the CUDA backend (ops_cuda.cu: cuBLAS +
 * kernels) fill the same table, so the model is written once.
 *
 * Conventions for every op:
 * - Every float pointer is backend memory (host memory for the CPU backend,
 *   device memory for CUDA), float32, contiguous, NCHW. Only upload/download
 *   take a host pointer, and they say which one.
 * - Counts are elements, not bytes.
 * - "+=" ops (backward, col2im, bias_grad, losses' gradients) ACCUMULATE into
 *   their output; gradients are zeroed once a step by the caller.
 * - "planes" is n*c for per-(n, c) ops; "p" is h*w, a plane's size.
 * - Ops do not fail once their memory exists; a backend that can fail late
 *   (CUDA) reports it through status().
 */
#ifndef P2P_BACKEND_H
#define P2P_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define P2P_HD __host__ __device__
#else
#define P2P_HD
#endif

typedef struct p2p_backend p2p_backend;

enum { P2P_WINO_CONV, P2P_WINO_GRAD, P2P_WINO_UP, P2P_WINO_DOWN };   /* wino_weights' modes */

struct p2p_backend {
	const char *name;                   /* "cpu", "cuda" */

	/* ---- set-up (both may be NULL) ---- */
	int (*init)(void);                  /* once, before anything else; -1 + p2p_err */
	void (*set_threads)(int n);         /* CPU worker threads (OpenMP and BLAS) */
	/* 0, or -1 with p2p_err if an earlier op failed (asynchronous backends). */
	int (*status)(void);
	void (*sync)(void);                 /* wait for queued work (timing) */

	/* ---- memory ---- */
	float *(*alloc)(size_t n);          /* n floats, uninitialised; NULL + p2p_err */
	void (*free)(float *p);             /* NULL is fine */
	void (*zero)(float *x, size_t n);                    /* x = 0 */
	void (*fill)(float *x, size_t n, float v);           /* x = v */
	void (*copy)(float *dst, const float *src, size_t n);   /* backend to backend */
	void (*upload)(float *dst, const float *host_src, size_t n);
	void (*download)(float *host_dst, const float *src, size_t n);
	/* Strided block copy: rows blocks of cols floats; dst row r at dst + r*dld,
	 * src row r at src + r*sld. dst = src (beta 0: dst is not read) or
	 * dst += src (beta 1). Channel concat/split of NCHW tensors. */
	void (*copy2d)(float *dst, long dld, const float *src, long sld,
	               int rows, long cols, float beta);
	/* x (a, b, p) -> y (b, a, p): y[j][i][:] = x[i][j][:] (+ beta * y, beta 0 or 1).
	 * Turns (N, C, P) into (C, N, P) and back for whole-batch GEMMs. */
	void (*swap01)(const float *x, float *y, int a, int b, long p, float beta);

	/* ---- matrix products (row-major) ----
	 * C (m, n) = alpha * op(A) (m, k) * op(B) (k, n) + beta * C; op(X) = X or X^T
	 * (ta/tb nonzero). lda/ldb/ldc are row strides of A, B, C as stored.
	 * beta 0: C is not read. */
	void (*gemm)(int ta, int tb, int m, int n, int k, float alpha,
	             const float *a, int lda, const float *b, int ldb,
	             float beta, float *c, int ldc);
	/* batch independent products; matrix i at a + i*sa, b + i*sb, c + i*sc
	 * (a stride of 0 shares one matrix across the batch). */
	void (*gemm_batched)(int ta, int tb, int m, int n, int k, float alpha,
	                     const float *a, int lda, long sa,
	                     const float *b, int ldb, long sb,
	                     float beta, float *c, int ldc, long sc, int batch);

	/* ---- convolution helpers (square kernel k, one stride and pad) ----
	 * x is (n, c, h, w); col is (c*k*k, n*oh*ow): row (ci, ky, kx), column
	 * (img, oy, ox); out-of-image taps are 0. col2im: x += the adjoint. */
	void (*im2col)(const float *x, int n, int c, int h, int w, int k,
	               int stride, int pad, int oh, int ow, float *col);
	void (*col2im)(const float *col, int n, int c, int h, int w, int k,
	               int stride, int pad, int oh, int ow, float *x);
	/* y (n, c, p) += b (c);  db (c) += sum over n, p of dy (n, c, p) */
	void (*bias_add)(float *y, const float *b, int n, int c, long p);
	void (*bias_grad)(float *db, const float *dy, int n, int c, long p);
	/* y (n, c, p) = x * scale[c] + shift[c] (shift may be NULL);
	 * backward: dx += dy * scale[c]. scale, shift are backend memory. */
	void (*chan_affine)(const float *x, float *y, int n, int c, long p,
	                    const float *scale, const float *shift);
	void (*chan_affine_bwd)(const float *dy, float *dx, int n, int c, long p,
	                        const float *scale);

	/* ---- InstanceNorm, no affine: per plane, biased variance ----
	 * y = (x - mean) * rstd, rstd = 1/sqrt(var + eps); mean, rstd (planes)
	 * are kept for backward. y may be x. Backward uses y and rstd only:
	 * dx += rstd * (dy - mean(dy) - y * mean(dy * y)). */
	void (*instnorm_fwd)(const float *x, float *y, float *mean, float *rstd,
	                     int planes, long p, float eps);
	void (*instnorm_bwd)(const float *dy, const float *y, const float *rstd,
	                     float *dx, int planes, long p);

	/* ---- elementwise (y may be x in forward) ----
	 * LeakyReLU (ReLU is slope 0): y = x > 0 ? x : slope * x;
	 * backward from the output: dx += dy * (y > 0 ? 1 : slope).
	 * Tanh: dx += dy * (1 - y^2). */
	void (*leaky_fwd)(const float *x, float *y, size_t n, float slope);
	void (*leaky_bwd)(const float *y, const float *dy, float *dx, size_t n, float slope);
	void (*tanh_fwd)(const float *x, float *y, size_t n);
	void (*tanh_bwd)(const float *y, const float *dy, float *dx, size_t n);
	/* Dropout: element i is kept iff p2p_dropout_keep(seed, counter + i, p);
	 * kept elements are scaled by 1/(1-p). Backward regenerates the mask. */
	void (*dropout_fwd)(const float *x, float *y, size_t n, float p,
	                    uint64_t seed, uint64_t counter);
	void (*dropout_bwd)(const float *dy, float *dx, size_t n, float p,
	                    uint64_t seed, uint64_t counter);
	/* MaxPool 2x2 stride 2: x (planes, h, w) -> y (planes, h/2, w/2), floor;
	 * backward routes dy to the first maximum of each window (as PyTorch). */
	void (*maxpool2_fwd)(const float *x, float *y, int planes, int h, int w);
	void (*maxpool2_bwd)(const float *x, const float *dy, float *dx,
	                     int planes, int h, int w);
	void (*scale)(float *x, size_t n, float a);                  /* x *= a */
	void (*axpy)(float *y, const float *x, size_t n, float a);   /* y += a * x */

	/* ---- reductions and losses: the value comes back to the host ----
	 * Each loss is a mean over n elements; when da is not NULL it also does
	 * da += gscale * d(loss)/da. sign(0) = 0 for L1, as PyTorch. */
	double (*sum)(const float *x, size_t n);
	double (*mse_const)(const float *a, size_t n, float target, float *da, float gscale);
	double (*mse)(const float *a, const float *b, size_t n, float *da, float gscale);
	double (*l1)(const float *a, const float *b, size_t n, float *da, float gscale);

	/* ---- Adam (PyTorch's formula), over one flat buffer; step >= 1 ----
	 * g' = g + wd * p; m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2;
	 * p -= lr / (1 - b1^step) * m / (sqrt(v) / sqrt(1 - b2^step) + eps). */
	void (*adam)(float *p, const float *g, float *m, float *v, size_t n,
	             float lr, float beta1, float beta2, float eps, float wd, long step);

	/* ---- convolution chunks (0 and NULL: conv.c's defaults) ----
	 * conv_chunk_cols: the columns a chunk's GEMM should get at least, when
	 * the batch allows (0: conv.c's CHUNK_COLS); a GPU wants wide products.
	 * conv_ws: workspace of the backend's own, which conv.c then uses instead
	 * of the caller's: `want` floats are asked for (the preferred chunk),
	 * `need` (one image) at least; it returns backend memory and sets *got,
	 * need <= *got <= want, or NULL (conv.c then uses the caller's). Valid
	 * until the next call; *got must depend on need and want alone, so that
	 * the chunks, hence the results, do not depend on what ran before. */
	int conv_chunk_cols;
	float *(*conv_ws)(size_t need, size_t want, size_t *got);

	/* ---- optional: NULL where a backend does not provide them ---- */

	/* im2col and col2im over output rows [oy0, oy1) of ONE image (0 <= oy0 <
	 * oy1 <= oh): col is (c*k*k, (oy1-oy0)*ow), the columns of those rows.
	 * With them the convolutions work in chunks of rows whose columns stay
	 * in a core's cache instead of streaming a whole image's through memory. */
	void (*im2col_rows)(const float *x, int c, int h, int w, int k, int stride, int pad,
	                    int oh, int ow, int oy0, int oy1, float *col);
	void (*col2im_rows)(const float *col, int c, int h, int w, int k, int stride, int pad,
	                    int oh, int ow, int oy0, int oy1, float *x);
	/* fn(ctx, i, slot) for every i in [0, n), on up to `slots` of the
	 * backend's threads at once, each taking the next i as it comes free;
	 * slot (0 <= slot < slots) is the running thread's own, for its private
	 * buffers. Inside fn the backend's ops run on the calling thread alone.
	 * Returns when all are done. The convolutions hand their chunks of rows
	 * out this way. */
	void (*parallel)(long n, int slots, void (*fn)(void *ctx, long i, int slot), void *ctx);
	/* Winograd F(4x4, 3x3), F(3x3, 4x4) and F(5x5, 2x2) for stride-1
	 * convolutions with a k x k kernel, k 2, 3 or 4, pad < k (conv.c):
	 * tiles of m x m outputs, m = 7 - k, over the output (oh, ow) = (h + 2
	 * pad - k + 1, ...), in ceil(oh/m) rows of tw = ceil(ow/m); rows of
	 * tiles [t0, t1) of one image, T = (t1 - t0) * tw tiles.
	 * wino_in: x (c, h, w) -> v (36, c, ld), columns [0, T): each 6x6 input
	 * patch (zero outside the image) as B^T d B. s2 (k 2, pad 0): x (c, h,
	 * w), h and w even, is read as its space-to-depth x' (4 c, h/2 + 1,
	 * w/2 + 1), x'[4 ci + 2 py + px][j][i] = x[ci][2j + py - 1][2i + px - 1]
	 * (zero outside), whose 2x2 convolution is x's 4x4 stride-2 pad-1 one;
	 * v then holds 4 c channels. wino_out: m (36, c, ld), columns [0, T) ->
	 * those rows of y (c, oh, ow), each tile A^T m A, plus b[c] (b may be
	 * NULL). ld >= T lets a chunk hold several images.
	 * wino_out_up: the transposed 4x4 stride-2 pad-1 convolution as four
	 * 2x2 ones (k 2, pad 1, so oh = h + 1): m (36, 4c, ld), channel
	 * (py * 2 + px) * c + co, gives y (c, 2h, 2w), y[co][2s - py][2t - px]
	 * from output (s, t) of phase (py, px). */
	void (*wino_in)(const float *x, int c, int h, int w, int k, int pad, int t0, int t1,
	                float *v, long ld, int s2);
	void (*wino_out)(const float *m, long ld, int c, int oh, int ow, int k, int t0, int t1,
	                 const float *b, float *y);
	void (*wino_out_up)(const float *m, long ld, int c, int oh, int ow, int t0, int t1,
	                    const float *b, float *y);
	/* The transformed weights, each kernel as G g G^T:
	 * P2P_WINO_CONV: u (36, cout, cin) from w (cout, cin, k, k);
	 * P2P_WINO_GRAD: u (36, cin, cout), the weights of the input gradient
	 *   (w[co][ci] turned 180 degrees);
	 * P2P_WINO_UP: u (36, 4 cout, cin) from a transposed convolution's w
	 *   (cin, cout, 4, 4) (k 4): phase (py, px) of output channel co is the
	 *   2x2 kernel of taps 3 - py - 2 a, 3 - px - 2 b;
	 * P2P_WINO_DOWN: u (36, cout, 4 cin) from a stride-2 convolution's w
	 *   (cout, cin, 4, 4) (k 4): column 4 ci + 2 py + px is the 2x2 kernel
	 *   of taps 2 a + py, 2 b + px, for wino_in's s2. */
	void (*wino_weights)(const float *w, int cout, int cin, int k, int mode, float *u);
};

/* The backends built into this binary. p2p_backend_get("cpu" | "cuda") runs
 * init and returns NULL with p2p_err for an unknown or unavailable one. */
const p2p_backend *p2p_backend_cpu(void);
#ifdef P2P_CUDA
const p2p_backend *p2p_backend_cuda(void);
#endif
const p2p_backend *p2p_backend_get(const char *name);

/* The dropout mask: a counter-based hash, so the CPU and the GPU draw the
 * same mask from (seed, element index) in any order. splitmix64's finaliser
 * over seed and index; the top 24 bits give u in [0, 1); keep iff u >= p. */
static inline P2P_HD uint64_t p2p_mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline P2P_HD int p2p_dropout_keep(uint64_t seed, uint64_t i, float p)
{
	uint64_t h = p2p_mix64(p2p_mix64(seed + 0x9e3779b97f4a7c15ULL) + i);
	return (float)(h >> 40) * (1.0f / 16777216.0f) >= p;
}

#endif
