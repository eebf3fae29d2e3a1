/* Conv2d and ConvTranspose2d as im2col/col2im plus one GEMM per chunk of
 * images. With one image per chunk the GEMM writes NCHW directly; with
 * several (small spatial sizes, where a one-image GEMM would be too thin to
 * run fast) the batch's columns sit side by side and a swap01 turns the
 * (C, N, P) product into (N, C, P). */
#include <stddef.h>

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

size_t p2p_conv_ws(const p2p_conv *g) { return ws_need(g, chunk_pref(g, CHUNK_COLS)); }
size_t p2p_conv_ws_min(const p2p_conv *g) { return ws_need(g, 1); }

size_t p2p_conv_flops(const p2p_conv *g)
{
	return 2 * (size_t)g->n * g->cin * g->cout * g->k * g->k * gemm_cols(g);
}

int p2p_conv2d_forward(const p2p_backend *be, const p2p_conv *g, float *y,
                       const float *x, const float *w, const float *b,
                       float *ws, size_t ws_n)
{
	int nb = chunk_for(be, g, &ws, &ws_n);
	if (!nb)
		return -1;
	long p = gemm_cols(g), kk = col_rows(g);
	long xs = (long)g->cin * g->h * g->w, ys = (long)g->cout * p;
	for (int i0 = 0; i0 < g->n; i0 += nb) {
		int m = g->n - i0 < nb ? g->n - i0 : nb;
		long cols = m * p;
		float *col = ws, *tmp = ws + kk * cols;
		be->im2col(x + i0 * xs, m, g->cin, g->h, g->w, g->k, g->stride, g->pad,
		           g->oh, g->ow, col);
		/* y (cout, m*p) = w (cout, kk) * col (kk, m*p) */
		float *out = m == 1 ? y + i0 * ys : tmp;
		be->gemm(0, 0, g->cout, cols, kk, 1, w, kk, col, cols, 0, out, cols);
		if (m > 1)
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
	for (int i0 = 0; i0 < g->n; i0 += nb) {
		int m = g->n - i0 < nb ? g->n - i0 : nb;
		long cols = m * p;
		float *col = ws, *tmp = ws + kk * cols;
		/* dy as (cout, m*p) */
		const float *g2 = dy + i0 * ys;
		if (m > 1) {
			be->swap01(g2, tmp, m, g->cout, p, 0);
			g2 = tmp;
		}
		if (dw) {
			/* dw (cout, kk) += dy (cout, m*p) * col^T (m*p, kk) */
			be->im2col(x + i0 * xs, m, g->cin, g->h, g->w, g->k, g->stride,
			           g->pad, g->oh, g->ow, col);
			be->gemm(0, 1, g->cout, kk, cols, 1, g2, cols, col, cols, 1, dw, kk);
		}
		if (dx) {
			/* dcol (kk, m*p) = w^T (kk, cout) * dy (cout, m*p), then scatter */
			be->gemm(1, 0, kk, cols, g->cout, 1, w, kk, g2, cols, 0, col, cols);
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
	for (int i0 = 0; i0 < g->n; i0 += nb) {
		int m = g->n - i0 < nb ? g->n - i0 : nb;
		long cols = m * p;
		float *col = ws, *tmp = ws + kk * cols;
		const float *xt = x + i0 * xs;        /* x as (cin, m*p) */
		if (m > 1) {
			be->swap01(xt, tmp, m, g->cin, p, 0);
			xt = tmp;
		}
		/* col (cout*k*k, m*p) = w^T (cout*k*k, cin) * x (cin, m*p) */
		be->gemm(1, 0, kk, cols, g->cin, 1, w, kk, xt, cols, 0, col, cols);
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
	for (int i0 = 0; i0 < g->n; i0 += nb) {
		int m = g->n - i0 < nb ? g->n - i0 : nb;
		long cols = m * p;
		float *col = ws, *tmp = ws + kk * cols;
		/* dcol (cout*k*k, m*p): dy gathered the way forward scattered */
		be->im2col(dy + i0 * ys, m, g->cout, g->oh, g->ow, g->k, g->stride,
		           g->pad, g->h, g->w, col);
		if (dw) {
			/* dw (cin, cout*k*k) += x (cin, m*p) * dcol^T (m*p, cout*k*k) */
			const float *xt = x + i0 * xs;
			if (m > 1) {
				be->swap01(xt, tmp, m, g->cin, p, 0);
				xt = tmp;
			}
			be->gemm(0, 1, g->cin, kk, cols, 1, xt, cols, col, cols, 1, dw, kk);
		}
		if (dx) {
			/* dx (cin, m*p) += w (cin, cout*k*k) * dcol (cout*k*k, m*p) */
			if (m == 1) {
				be->gemm(0, 0, g->cin, cols, kk, 1, w, kk, col, cols, 1,
				         dx + i0 * xs, cols);
			} else {
				be->gemm(0, 0, g->cin, cols, kk, 1, w, kk, col, cols, 0, tmp, cols);
				be->swap01(tmp, dx + i0 * xs, g->cin, m, p, 1);
			}
		}
	}
	return 0;
}
