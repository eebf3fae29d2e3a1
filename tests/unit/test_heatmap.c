/* lib/heatmap.c against the formula evaluated in double at every pixel. */
#include "check.h"
#include "err.h"
#include "heatmap.h"

#include <stdint.h>
#include <stdlib.h>

/* 255 * max_k exp(-d^2 / 2 sigma^2) at row r, column c, no cut-off. */
static double exact(int r, int c, const float *xy, int n, double sigma)
{
	double best = 0;
	for (int i = 0; i < n; i++) {
		double dx = c - (double)xy[2 * i], dy = r - (double)xy[2 * i + 1];
		double v = exp(-(dx * dx + dy * dy) / (2 * sigma * sigma));
		if (v > best)
			best = v;
	}
	return 255 * best;
}

/* Largest |out - exact| over the image; *wrong counts pixels whose value is
 * not round(exact) (only ties within float error may differ). */
static double worst(const unsigned char *out, int h, int w, const float *xy,
                    int n, double sigma, int *wrong)
{
	double big = 0;
	*wrong = 0;
	for (int r = 0; r < h; r++)
		for (int c = 0; c < w; c++) {
			double e = exact(r, c, xy, n, sigma);
			double d = fabs(out[(size_t)r * w + c] - e);
			if (d > big)
				big = d;
			if (out[(size_t)r * w + c] != (int)floor(e + 0.5)
			    && fabs(e - floor(e) - 0.5) > 1e-6)
				++*wrong;
		}
	return big;
}

/* A small fixed generator, so the test needs nothing else from lib/. */
static uint64_t lcg = 12345;
static double unif(double lo, double hi)
{
	lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
	return lo + (hi - lo) * (double)(lcg >> 11) / 9007199254740992.0;
}

static void test_peak_at_pixel_centre(void)
{
	unsigned char m[9 * 11];
	float xy[] = { 4, 6 };              /* x = column 4, y = row 6 */
	CHECK(p2p_heatmap_render(m, 9, 11, xy, 1, 2.0) == 0);
	CHECK(m[6 * 11 + 4] == 255);
	CHECK(m[6 * 11 + 5] == (int)floor(255 * exp(-1 / 8.0) + 0.5));   /* 225 */
	CHECK(m[5 * 11 + 4] == 225);
	CHECK(m[7 * 11 + 5] == (int)floor(255 * exp(-2 / 8.0) + 0.5));   /* 199 */
	CHECK(m[0] == 0);
	int wrong;
	CHECK(worst(m, 9, 11, xy, 1, 2.0, &wrong) <= 0.5 + 1e-9);
	CHECK(wrong == 0);
}

static void test_no_points_is_black(void)
{
	unsigned char m[16];
	memset(m, 7, sizeof m);
	CHECK(p2p_heatmap_render(m, 4, 4, NULL, 0, 2.0) == 0);
	for (int i = 0; i < 16; i++)
		CHECK(m[i] == 0);
}

static void test_max_over_points(void)
{
	/* Two points two pixels apart: between them each one's value is the
	 * same, and the max (not the sum) is written. */
	unsigned char m[5 * 5];
	float xy[] = { 1, 2, 3, 2 };
	CHECK(p2p_heatmap_render(m, 5, 5, xy, 2, 1.0) == 0);
	CHECK(m[2 * 5 + 1] == 255 && m[2 * 5 + 3] == 255);
	CHECK(m[2 * 5 + 2] == (int)floor(255 * exp(-0.5) + 0.5));     /* 155 */
	int wrong;
	CHECK(worst(m, 5, 5, xy, 2, 1.0, &wrong) <= 0.5 + 1e-9);
	CHECK(wrong == 0);
}

/* Random sizes, sigmas and points (off-grid, near and outside the borders):
 * within 1 grey level of the exact formula everywhere, and in fact the
 * rounded formula at every pixel but float ties. */
static void test_random_against_exact(void)
{
	for (int trial = 0; trial < 60; trial++) {
		int h = 1 + (int)unif(0, 70), w = 1 + (int)unif(0, 70);
		int n = (int)unif(1, 49);
		double sigma = unif(0.3, 9);
		float *xy = malloc(sizeof *xy * 2 * n);
		for (int i = 0; i < n; i++) {
			xy[2 * i] = (float)unif(-5 * sigma, w + 5 * sigma);
			xy[2 * i + 1] = (float)unif(-5 * sigma, h + 5 * sigma);
		}
		unsigned char *m = malloc((size_t)h * w);
		CHECK(p2p_heatmap_render(m, h, w, xy, n, sigma) == 0);
		int wrong;
		double d = worst(m, h, w, xy, n, sigma, &wrong);
		CHECKF(d <= 1.0, "trial %d: %dx%d sigma %g: off by %g", trial, h, w, sigma, d);
		CHECKF(wrong == 0, "trial %d: %d pixels not the rounded formula", trial, wrong);
		free(m);
		free(xy);
	}
}

static void test_crop_size_default_sigma(void)
{
	/* The pipeline's case: 256 x 256, sigma 2, 48 points. */
	enum { S = 256, N = 48 };
	float xy[2 * N];
	for (int i = 0; i < 2 * N; i++)
		xy[i] = (float)unif(0, S - 1);
	xy[0] = 100, xy[1] = 37;
	static unsigned char m[S * S];
	CHECK(p2p_heatmap_render(m, S, S, xy, N, 2.0) == 0);
	CHECK(m[37 * S + 100] == 255);
	int wrong;
	CHECK(worst(m, S, S, xy, N, 2.0, &wrong) <= 1.0);
	CHECK(wrong == 0);
}

static void test_far_away_points(void)
{
	/* Huge coordinates must not overflow the index arithmetic. */
	unsigned char m[8 * 8];
	float xy[] = { 1e30f, -1e30f, -3e9f, 4, 8.5f, 3 };
	CHECK(p2p_heatmap_render(m, 8, 8, xy, 3, 2.0) == 0);
	int wrong;
	CHECK(worst(m, 8, 8, xy, 3, 2.0, &wrong) <= 1.0);
	CHECK(wrong == 0);
	CHECK(m[3 * 8 + 7] == (int)floor(255 * exp(-2.25 / 8) + 0.5));   /* d = 1.5 */
}

static void test_large_sigma(void)
{
	unsigned char m[20 * 30];
	float xy[] = { 29, 0 };
	CHECK(p2p_heatmap_render(m, 20, 30, xy, 1, 1000.0) == 0);
	int wrong;
	CHECK(worst(m, 20, 30, xy, 1, 1000.0, &wrong) <= 1.0);
	CHECK(wrong == 0);
	CHECK(m[19 * 30] == 255);   /* d^2 = 29^2 + 19^2: still 254.9 */
}

static void test_bad_arguments(void)
{
	unsigned char m[4];
	float xy[] = { 1, NAN };
	CHECK(p2p_heatmap_render(m, 2, 2, xy, 1, 2.0) == -1);
	CHECK(strstr(p2p_errmsg(), "point 0") != NULL);
	float ok[] = { 1, 1 };
	CHECK(p2p_heatmap_render(m, 2, 2, ok, 1, 0.0) == -1);
	CHECK(p2p_heatmap_render(m, 2, 2, ok, 1, NAN) == -1);
	CHECK(p2p_heatmap_render(m, 0, 2, ok, 1, 2.0) == -1);
	CHECK(strstr(p2p_errmsg(), "heatmap: bad arguments") != NULL);
}

int main(void)
{
	RUN(test_peak_at_pixel_centre);
	RUN(test_no_points_is_black);
	RUN(test_max_over_points);
	RUN(test_random_against_exact);
	RUN(test_crop_size_default_sigma);
	RUN(test_far_away_points);
	RUN(test_large_sigma);
	RUN(test_bad_arguments);
	return CHECK_DONE();
}
