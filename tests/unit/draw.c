/* lib/draw: exact coverage of simple shapes, clipping at the canvas edges,
 * strokes, transforms and noise. */
#include "check.h"
#include "draw.h"

#include <stdlib.h>

/* Sum of coverage over the canvas: the drawn area in pixels. */
static void sum_span(void *ctx, int y, int x0, int n, const float *cov)
{
	double *s = ctx;
	for (int i = 0; i < n; i++)
		s[0] += cov[i];
}

static double area_of(p2p_canvas *c, const p2p_path *p)
{
	double s = 0;
	p2p_raster(c, p->xy, p->n, sum_span, &s);
	return s;
}

static void test_square_exact(void)
{
	p2p_canvas c;
	CHECK(p2p_canvas_init(&c, 16, 16) == 0);
	p2p_path p = {0};
	p2p_path_add(&p, 2, 3);
	p2p_path_add(&p, 6, 3);
	p2p_path_add(&p, 6, 8);
	p2p_path_add(&p, 2, 8);
	float white[3] = { 1, 1, 1 };
	p2p_fill(&c, &p, white, 1);
	for (int y = 0; y < 16; y++)
		for (int x = 0; x < 16; x++) {
			float want = x >= 2 && x < 6 && y >= 3 && y < 8 ? 1 : 0;
			CHECK_NEAR(c.rgb[3 * (y * 16 + x)], want, 1e-5);
		}
	/* half a pixel of cover on each side, and either winding */
	p2p_path_clear(&p);
	p2p_path_add(&p, 2.5f, 3);
	p2p_path_add(&p, 2.5f, 4);
	p2p_path_add(&p, 5.5f, 4);
	p2p_path_add(&p, 5.5f, 3);
	CHECK_NEAR(area_of(&c, &p), 3.0, 1e-5);
	p2p_path_free(&p);
	p2p_canvas_free(&c);
}

static void test_triangle_partial(void)
{
	p2p_canvas c;
	CHECK(p2p_canvas_init(&c, 4, 4) == 0);
	p2p_path p = {0};
	/* the diagonal halves one pixel exactly */
	p2p_path_add(&p, 1, 1);
	p2p_path_add(&p, 2, 1);
	p2p_path_add(&p, 2, 2);
	float col[3] = { 1, 0.5f, 0 };
	p2p_fill(&c, &p, col, 1);
	CHECK_NEAR(c.rgb[3 * (1 * 4 + 1)], 0.5, 1e-5);
	CHECK_NEAR(c.rgb[3 * (1 * 4 + 1) + 1], 0.25, 1e-5);
	CHECK_NEAR(c.rgb[3 * (1 * 4 + 2)], 0, 1e-6);
	p2p_path_free(&p);
	p2p_canvas_free(&c);
}

static void test_ellipse_area(void)
{
	p2p_canvas c;
	CHECK(p2p_canvas_init(&c, 100, 80) == 0);
	p2p_path p = {0};
	p2p_path_ellipse(&p, 50.3f, 40.7f, 30, 18, 0.4f, 0);
	CHECK_NEAR(area_of(&c, &p), M_PI * 30 * 18, 2e-3);
	/* a disc centred on a corner: a quarter of it is inside */
	p2p_path_clear(&p);
	p2p_path_ellipse(&p, 0, 0, 20, 20, 0, 0);
	CHECK_NEAR(area_of(&c, &p), M_PI * 400 / 4, 3e-3);
	p2p_path_clear(&p);
	p2p_path_ellipse(&p, 100, 80, 20, 20, 0, 0);
	CHECK_NEAR(area_of(&c, &p), M_PI * 400 / 4, 3e-3);
	/* wholly outside, and covering the whole canvas */
	p2p_path_clear(&p);
	p2p_path_ellipse(&p, -50, 40, 20, 20, 0, 0);
	CHECK_NEAR(area_of(&c, &p), 0, 1e-9);
	p2p_path_clear(&p);
	p2p_path_ellipse(&p, 50, 40, 500, 500, 0, 0);
	CHECK_NEAR(area_of(&c, &p), 8000, 1e-4);
	p2p_path_free(&p);
	p2p_canvas_free(&c);
}

static void test_stroke_and_mask(void)
{
	p2p_canvas c;
	CHECK(p2p_canvas_init(&c, 64, 64) == 0);
	p2p_path line = {0}, out = {0};
	p2p_path_add(&line, 10, 20);
	p2p_path_add(&line, 30, 20);
	p2p_path_add(&line, 50, 20);
	p2p_path_stroke(&out, &line, 4, 4, 0);
	CHECK_NEAR(area_of(&c, &out), 160, 1e-3);
	p2p_path_stroke(&out, &line, 4, 4, 1);       /* plus two half discs */
	CHECK_NEAR(area_of(&c, &out), 160 + M_PI * 4, 0.03);
	p2p_path_stroke(&out, &line, 4, 0, 0);       /* tapered: a triangle */
	CHECK_NEAR(area_of(&c, &out), 80, 1e-3);

	/* a clip mask limits a later fill */
	float *mask = calloc(64 * 64, sizeof(float));
	p2p_path sq = {0};
	p2p_path_add(&sq, 0, 0);
	p2p_path_add(&sq, 32, 0);
	p2p_path_add(&sq, 32, 64);
	p2p_path_add(&sq, 0, 64);
	p2p_fill_mask(&c, &sq, mask);
	CHECK_NEAR(mask[5 * 64 + 31], 1, 1e-6);
	CHECK_NEAR(mask[5 * 64 + 32], 0, 1e-6);
	c.clip = mask;
	float white[3] = { 1, 1, 1 };
	p2p_path_clear(&sq);
	p2p_path_ellipse(&sq, 32, 32, 30, 30, 0, 0);
	p2p_fill(&c, &sq, white, 1);
	CHECK_NEAR(c.rgb[3 * (32 * 64 + 20)], 1, 1e-6);
	CHECK_NEAR(c.rgb[3 * (32 * 64 + 40)], 0, 1e-6);
	free(mask);
	p2p_path_free(&sq);
	p2p_path_free(&line);
	p2p_path_free(&out);
	p2p_canvas_free(&c);
}

static void test_affine(void)
{
	p2p_affine m = p2p_affine_similarity(2, M_PI / 2, 10, 5);
	double x, y;
	p2p_affine_apply(&m, 1, 0, &x, &y);
	CHECK_NEAR(x, 10, 1e-12);
	CHECK_NEAR(y, 7, 1e-12);
	p2p_affine inv = p2p_affine_invert(m);
	p2p_affine_apply(&inv, x, y, &x, &y);
	CHECK_NEAR(x, 1, 1e-12);
	CHECK_NEAR(y, 0, 1e-12);
}

static void test_noise(void)
{
	p2p_rng r;
	p2p_rng_seed(&r, 7);
	p2p_noise nz;
	p2p_noise_init(&nz, &r);
	float lo = 1, hi = 0;
	for (int i = 0; i < 2000; i++) {
		float v = p2p_noise_fbm(&nz, i * 0.37f, i * 0.11f, 3, 0.5f);
		lo = v < lo ? v : lo;
		hi = v > hi ? v : hi;
	}
	CHECK(lo >= 0 && hi <= 1 && hi - lo > 0.3f);
	/* continuous: a small step changes little */
	float a = p2p_noise2(&nz, 3.5f, 7.25f), b = p2p_noise2(&nz, 3.501f, 7.25f);
	CHECK(fabsf(a - b) < 0.01f);
	/* the same seed gives the same field */
	p2p_noise nz2;
	p2p_rng_seed(&r, 7);
	p2p_noise_init(&nz2, &r);
	CHECK(p2p_noise2(&nz2, 3.5f, 7.25f) == a);
}

int main(void)
{
	RUN(test_square_exact);
	RUN(test_triangle_partial);
	RUN(test_ellipse_area);
	RUN(test_stroke_and_mask);
	RUN(test_affine);
	RUN(test_noise);
	return CHECK_DONE();
}
