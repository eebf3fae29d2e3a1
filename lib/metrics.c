#include "metrics.h"
#include "err.h"

#include <math.h>
#include <stdlib.h>

#define R P2P_SSIM_RADIUS
#define TAPS (2 * R + 1)

double p2p_metric_l1(const unsigned char *a, const unsigned char *b, long n)
{
	/* integer sums are exact; v / 127.5 - 1 makes a difference d into d / 127.5 */
	unsigned long long s = 0;
	for (long i = 0; i < n; i++)
		s += (unsigned)abs(a[i] - b[i]);
	return n > 0 ? (double)s / 127.5 / (double)n : 0.0;
}

double p2p_metric_mse(const unsigned char *a, const unsigned char *b, long n)
{
	unsigned long long s = 0;
	for (long i = 0; i < n; i++) {
		int d = a[i] - b[i];
		s += (unsigned)(d * d);
	}
	return n > 0 ? (double)s / (double)n : 0.0;
}

double p2p_metric_psnr(double mse)
{
	if (mse <= 0)
		return P2P_PSNR_MAX;
	double p = 10.0 * log10(255.0 * 255.0 / mse);
	return p < P2P_PSNR_MAX ? p : P2P_PSNR_MAX;
}

/* The normalised 1-D Gaussian, sigma 1.5, radius 5 (scipy's gaussian_filter
 * with truncate 3.5). */
static void gauss_taps(double g[TAPS])
{
	double sum = 0;
	for (int k = 0; k < TAPS; k++) {
		double x = k - R;
		g[k] = exp(-0.5 * x * x / (1.5 * 1.5));
		sum += g[k];
	}
	for (int k = 0; k < TAPS; k++)
		g[k] /= sum;
}

/* Mean SSIM of one channel. Only the pixels at least R from every edge are
 * averaged, so every window lies inside the image and the border mode of the
 * filter never matters: the horizontal pass runs on all rows but only the
 * columns that survive the crop. h5 is 5 buffers of h * (w - 2R) doubles. */
static double ssim_channel(const unsigned char *a, const unsigned char *b,
                           int w, int h, int c, const double g[TAPS], double *h5)
{
	const int ow = w - 2 * R, oh = h - 2 * R;
	const long plane = (long)h * ow;
	double *hx = h5, *hy = h5 + plane, *hxx = h5 + 2 * plane,
	       *hyy = h5 + 3 * plane, *hxy = h5 + 4 * plane;

	for (int y = 0; y < h; y++) {
		const unsigned char *ra = a + (long)y * w * c, *rb = b + (long)y * w * c;
		for (int x = 0; x < ow; x++) {
			double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
			for (int k = 0; k < TAPS; k++) {
				double vx = ra[(long)(x + k) * c], vy = rb[(long)(x + k) * c];
				sx += g[k] * vx;
				sy += g[k] * vy;
				sxx += g[k] * vx * vx;
				syy += g[k] * vy * vy;
				sxy += g[k] * vx * vy;
			}
			long i = (long)y * ow + x;
			hx[i] = sx; hy[i] = sy; hxx[i] = sxx; hyy[i] = syy; hxy[i] = sxy;
		}
	}

	const double c1 = (0.01 * 255) * (0.01 * 255), c2 = (0.03 * 255) * (0.03 * 255);
	double total = 0;
	for (int y = 0; y < oh; y++) {
		double row = 0;
		for (int x = 0; x < ow; x++) {
			double ux = 0, uy = 0, uxx = 0, uyy = 0, uxy = 0;
			for (int k = 0; k < TAPS; k++) {
				long i = (long)(y + k) * ow + x;
				ux += g[k] * hx[i];
				uy += g[k] * hy[i];
				uxx += g[k] * hxx[i];
				uyy += g[k] * hyy[i];
				uxy += g[k] * hxy[i];
			}
			/* population (co)variances: use_sample_covariance=False */
			double vx = uxx - ux * ux, vy = uyy - uy * uy, vxy = uxy - ux * uy;
			row += ((2 * ux * uy + c1) * (2 * vxy + c2)) /
			       ((ux * ux + uy * uy + c1) * (vx + vy + c2));
		}
		total += row;
	}
	return total / ((double)ow * oh);
}

int p2p_metric_ssim(const unsigned char *a, const unsigned char *b,
                    int w, int h, int c, double *ssim)
{
	if (w < P2P_SSIM_MIN_SIDE || h < P2P_SSIM_MIN_SIDE)
		return p2p_err("%dx%d is too small for SSIM (at least %dx%d)",
		               w, h, P2P_SSIM_MIN_SIDE, P2P_SSIM_MIN_SIDE);
	if (c < 1)
		return p2p_err("SSIM needs at least one channel");
	double *h5 = malloc(sizeof *h5 * 5 * (size_t)h * (size_t)(w - 2 * R));
	if (!h5)
		return p2p_err("%dx%d: out of memory for SSIM", w, h);
	double g[TAPS];
	gauss_taps(g);
	double sum = 0;
	for (int ch = 0; ch < c; ch++)
		sum += ssim_channel(a + ch, b + ch, w, h, c, g, h5);
	free(h5);
	*ssim = sum / c;
	return 0;
}

int p2p_scores_compute(const unsigned char *a, const unsigned char *b,
                       int w, int h, int c, p2p_scores *s)
{
	long n = (long)w * h * c;
	s->l1 = p2p_metric_l1(a, b, n);
	s->mse = p2p_metric_mse(a, b, n);
	s->psnr = p2p_metric_psnr(s->mse);
	return p2p_metric_ssim(a, b, w, h, c, &s->ssim);
}
