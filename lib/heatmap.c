#include "heatmap.h"
#include "err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The Gaussian is separable: exp(-(dx^2 + dy^2)/2s^2) = gx(dx) * gy(dy), so a
 * point costs 2 * (2 reach + 1) exps and one multiply per pixel of its square.
 * The max over points commutes with rounding (both are monotonic), so each
 * point's rounded values are max'ed straight into the output. */

/* First and last index in [0, len) within reach of coordinate p, or lo > hi
 * when none is. Done in double so huge coordinates cannot overflow an int. */
static void span(double p, double reach, int len, int *lo, int *hi)
{
	double a = ceil(p - reach), b = floor(p + reach);
	if (b < 0 || a > len - 1) {
		*lo = 1, *hi = 0;
		return;
	}
	*lo = a < 0 ? 0 : (int)a;
	*hi = b > len - 1 ? len - 1 : (int)b;
}

int p2p_heatmap_render(unsigned char *out, int h, int w, const float *xy, int n,
                       double sigma)
{
	if (h < 1 || w < 1 || n < 0 || !(sigma > 0) || !isfinite(sigma))
		return p2p_err("heatmap: bad arguments (%d x %d, %d points, sigma %g)",
		               h, w, n, sigma);
	memset(out, 0, (size_t)h * w);
	double reach = P2P_HEATMAP_REACH * sigma;
	double k = -1.0 / (2.0 * sigma * sigma);
	/* One row and one column of factors, as long as the widest square. */
	long m = w > h ? w : h;
	if (2 * ceil(reach) + 2 < m)
		m = 2 * (long)ceil(reach) + 2;
	double *gx = malloc(sizeof *gx * m), *gy = malloc(sizeof *gy * m);
	if (!gx || !gy) {
		free(gx), free(gy);
		return p2p_err("heatmap: out of memory");
	}
	for (int i = 0; i < n; i++) {
		double px = xy[2 * i], py = xy[2 * i + 1];
		if (!isfinite(px) || !isfinite(py)) {
			free(gx), free(gy);
			return p2p_err("heatmap: point %d is not a finite number", i);
		}
		int c0, c1, r0, r1;
		span(px, reach, w, &c0, &c1);
		span(py, reach, h, &r0, &r1);
		if (c0 > c1 || r0 > r1)
			continue;
		for (int c = c0; c <= c1; c++) {
			double d = c - px;
			gx[c - c0] = 255.0 * exp(k * d * d);
		}
		for (int r = r0; r <= r1; r++) {
			double d = r - py;
			gy[r - r0] = exp(k * d * d);
		}
		for (int r = r0; r <= r1; r++) {
			unsigned char *row = out + (size_t)r * w;
			double fy = gy[r - r0];
			for (int c = c0; c <= c1; c++) {
				unsigned char v = (unsigned char)(gx[c - c0] * fy + 0.5);
				if (v > row[c])
					row[c] = v;
			}
		}
	}
	free(gx), free(gy);
	return 0;
}
