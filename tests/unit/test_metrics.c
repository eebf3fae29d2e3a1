/* lib/metrics: L1, PSNR and SSIM on known values. The SSIM references come
 * from scikit-image (tests/fixtures/p2p-metrics/expected.py unit), on images
 * made by the same generator as below. */
#include "check.h"
#include "err.h"
#include "metrics.h"

#include <stdlib.h>

static unsigned lcg_state;
static int lcg_next(void)
{
	lcg_state = (lcg_state * 1103515245u + 12345u) & 0x7fffffffu;
	return (lcg_state >> 16) & 255;
}

static unsigned char *noise(int w, int h, int c, unsigned seed)
{
	unsigned char *a = malloc((size_t)w * h * c);
	lcg_state = seed;
	for (int i = 0; i < w * h * c; i++)
		a[i] = (unsigned char)lcg_next();
	return a;
}

static unsigned char *ramp(int w, int h, int c, unsigned seed)
{
	unsigned char *a = malloc((size_t)w * h * c);
	lcg_state = seed;
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
			for (int ch = 0; ch < c; ch++)
				a[((long)y * w + x) * c + ch] =
					(unsigned char)((x * 9 + y * 4 + ch * 50 + (lcg_next() & 31)) & 255);
	return a;
}

/* a copy of a plus a noise in [-amp, amp], clamped */
static unsigned char *jitter(const unsigned char *a, long n, unsigned seed, int amp)
{
	unsigned char *b = malloc(n);
	lcg_state = seed;
	for (long i = 0; i < n; i++) {
		int v = a[i] + lcg_next() % (2 * amp + 1) - amp;
		b[i] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
	}
	return b;
}

static void test_identical(void)
{
	unsigned char *a = ramp(32, 20, 3, 7);
	p2p_scores s;
	CHECK(p2p_scores_compute(a, a, 32, 20, 3, &s) == 0);
	CHECK(s.l1 == 0);
	CHECK(s.mse == 0);
	CHECK(s.psnr == P2P_PSNR_MAX);
	CHECK_NEAR(s.ssim, 1.0, 1e-12);
	free(a);
}

static void test_offset_10(void)
{
	/* 10 grey levels everywhere: MSE 100, PSNR 10 log10(650.25) = 28.1308 dB */
	int w = 16, h = 16;
	unsigned char *a = ramp(w, h, 3, 1), *b = malloc(w * h * 3);
	for (int i = 0; i < w * h * 3; i++) {
		a[i] = (unsigned char)(a[i] % 200);
		b[i] = (unsigned char)(a[i] + 10);
	}
	p2p_scores s;
	CHECK(p2p_scores_compute(a, b, w, h, 3, &s) == 0);
	CHECK_NEAR(s.mse, 100, 1e-12);
	CHECK_NEAR(s.psnr, 28.130803608679, 1e-9);
	CHECK(fabs(s.psnr - 28.13) < 0.005);
	CHECK_NEAR(s.l1, 10 / 127.5, 1e-12);
	free(a);
	free(b);
}

static void test_psnr_cap(void)
{
	CHECK(p2p_metric_psnr(0) == P2P_PSNR_MAX);
	CHECK(p2p_metric_psnr(1e-20) == P2P_PSNR_MAX);
	CHECK_NEAR(p2p_metric_psnr(255.0 * 255.0), 0, 1e-12);
	CHECK_NEAR(p2p_metric_psnr(1), 48.130803608679, 1e-9);
}

static void test_l1_extremes(void)
{
	/* black against white is the whole [-1, 1] range: L1 2 */
	unsigned char a[4] = {0, 0, 0, 0}, b[4] = {255, 255, 255, 255};
	CHECK_NEAR(p2p_metric_l1(a, b, 4), 2.0, 1e-12);
	CHECK_NEAR(p2p_metric_l1(b, a, 4), 2.0, 1e-12);
	CHECK_NEAR(p2p_metric_mse(a, b, 4), 65025, 1e-12);
}

static void test_ssim_constant(void)
{
	/* flat images: no variance, so SSIM is the luminance term alone,
	 * (2*100*110 + C1) / (100^2 + 110^2 + C1) with C1 = (0.01*255)^2 */
	int w = 13, h = 12;
	unsigned char *a = malloc(w * h), *b = malloc(w * h);
	for (int i = 0; i < w * h; i++) {
		a[i] = 100;
		b[i] = 110;
	}
	double ssim, c1 = 2.55 * 2.55;
	CHECK(p2p_metric_ssim(a, b, w, h, 1, &ssim) == 0);
	CHECK_NEAR(ssim, (22000 + c1) / (22100 + c1), 1e-12);
	free(a);
	free(b);
}

static void test_ssim_skimage(void)
{
	/* numbers from scikit-image 0.19.3 */
	unsigned char *a = noise(23, 17, 3, 1), *b = noise(23, 17, 3, 2);
	p2p_scores s;
	CHECK(p2p_scores_compute(a, b, 23, 17, 3, &s) == 0);
	CHECK_NEAR(s.l1, 0.660087257409, 1e-10);
	CHECK_NEAR(s.psnr, 7.9520656599, 1e-9);
	CHECK_NEAR(s.ssim, 0.0300699716813, 1e-10);
	free(a);
	free(b);

	a = ramp(23, 17, 3, 3);
	b = jitter(a, 23 * 17 * 3, 4, 10);
	CHECK(p2p_scores_compute(a, b, 23, 17, 3, &s) == 0);
	CHECK_NEAR(s.l1, 0.0420507162797, 1e-10);
	CHECK_NEAR(s.psnr, 32.3354041319, 1e-9);
	CHECK_NEAR(s.ssim, 0.96454389137, 1e-10);
	free(a);
	free(b);

	/* the smallest image the window allows but one, grey, negatively correlated */
	a = noise(12, 11, 1, 5);
	b = malloc(12 * 11);
	for (int i = 0; i < 12 * 11; i++)
		b[i] = (unsigned char)(255 - a[i]);
	CHECK(p2p_scores_compute(a, b, 12, 11, 1, &s) == 0);
	CHECK_NEAR(s.l1, 0.958526440879, 1e-10);
	CHECK_NEAR(s.psnr, 5.10824884922, 1e-9);
	CHECK_NEAR(s.ssim, -0.973314345146, 1e-10);
	free(a);
	free(b);
}

static void test_ssim_symmetric(void)
{
	unsigned char *a = ramp(30, 19, 3, 9), *b = jitter(a, 30 * 19 * 3, 10, 40);
	double ab, ba;
	CHECK(p2p_metric_ssim(a, b, 30, 19, 3, &ab) == 0);
	CHECK(p2p_metric_ssim(b, a, 30, 19, 3, &ba) == 0);
	CHECK_NEAR(ab, ba, 1e-12);
	CHECK(ab < 1 && ab > 0);
	free(a);
	free(b);
}

static void test_ssim_too_small(void)
{
	unsigned char a[10 * 40] = {0};
	double ssim = 42;
	CHECK(p2p_metric_ssim(a, a, 10, 40, 1, &ssim) == -1);
	CHECK(p2p_metric_ssim(a, a, 40, 10, 1, &ssim) == -1);
	CHECK(ssim == 42);
	CHECK(strstr(p2p_errmsg(), "too small for SSIM") != NULL);
	CHECK(p2p_metric_ssim(a, a, 11, 11, 1, &ssim) == 0);
	CHECK_NEAR(ssim, 1, 1e-12);
}

int main(void)
{
	RUN(test_identical);
	RUN(test_offset_10);
	RUN(test_psnr_cap);
	RUN(test_l1_extremes);
	RUN(test_ssim_constant);
	RUN(test_ssim_skimage);
	RUN(test_ssim_symmetric);
	RUN(test_ssim_too_small);
	return CHECK_DONE();
}
