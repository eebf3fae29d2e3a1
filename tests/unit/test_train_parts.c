/* p2p-train's parts: the learning-rate schedule against PyTorch's values,
 * flip and ColorJitter (torchvision's semantics, determinism, ranges), data
 * set loading and its errors, checkpoints. */
#include "check.h"
#include "tmpdir.h"
#include "atomic.h"
#include "augment.h"
#include "backend.h"
#include "checkpoint.h"
#include "dataset.h"
#include "err.h"
#include "image.h"
#include "npy.h"
#include "rng.h"
#include "schedule.h"

#include <vips/vips.h>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>


/* ---- schedule ---- */

static void schedule_matches_pytorch(void)
{
	/* CosineAnnealingWarmRestarts(T_0=50, T_mult=2), lr 2e-4, stepped per
	 * epoch: lr after e steps, from PyTorch's formula by hand */
	const double b = 2e-4;
	CHECK_NEAR(p2p_cosine_warm_restarts(b, 0, 50, 2, 0), 2e-4, 1e-15);
	CHECK_NEAR(p2p_cosine_warm_restarts(b, 0, 50, 2, 1) / b, (1 + cos(M_PI / 50)) / 2, 1e-15);
	CHECK_NEAR(p2p_cosine_warm_restarts(b, 0, 50, 2, 25), 1e-4, 1e-15);
	CHECK_NEAR(p2p_cosine_warm_restarts(b, 0, 50, 2, 49) / b, (1 + cos(M_PI * 49 / 50)) / 2, 1e-15);
	CHECK_NEAR(p2p_cosine_warm_restarts(b, 0, 50, 2, 49) / b, 0.000986635785864, 1e-12);
	CHECK_NEAR(p2p_cosine_warm_restarts(b, 0, 50, 2, 50), 2e-4, 1e-15);   /* restart */
	CHECK_NEAR(p2p_cosine_warm_restarts(b, 0, 50, 2, 75) / b, (1 + cos(M_PI * 25 / 100)) / 2, 1e-15);
	CHECK_NEAR(p2p_cosine_warm_restarts(b, 0, 50, 2, 75) / b, 0.853553390593274, 1e-12);
	CHECK_NEAR(p2p_cosine_warm_restarts(b, 0, 50, 2, 100), 1e-4, 1e-15);
	CHECK_NEAR(p2p_cosine_warm_restarts(b, 0, 50, 2, 149) / b, (1 + cos(M_PI * 99 / 100)) / 2, 1e-15);
	CHECK_NEAR(p2p_cosine_warm_restarts(b, 0, 50, 2, 150), 2e-4, 1e-15);  /* T_i 200 now */
	CHECK_NEAR(p2p_cosine_warm_restarts(b, 0, 50, 2, 250), 1e-4, 1e-15);
	CHECK_NEAR(p2p_cosine_warm_restarts(b, 0, 50, 2, 350), 2e-4, 1e-15);
	/* T_mult 1: plain restarts every T_0 */
	CHECK_NEAR(p2p_cosine_warm_restarts(1, 0, 10, 1, 5), 0.5, 1e-15);
	CHECK_NEAR(p2p_cosine_warm_restarts(1, 0, 10, 1, 10), 1, 1e-15);
	CHECK_NEAR(p2p_cosine_warm_restarts(1, 0, 10, 1, 37) , (1 + cos(M_PI * 7 / 10)) / 2, 1e-15);
	/* T_mult 3, eta_min: cycles 2, 6, 18 */
	CHECK_NEAR(p2p_cosine_warm_restarts(1, 0.1, 2, 3, 1), 0.1 + 0.9 * 0.5, 1e-15);
	CHECK_NEAR(p2p_cosine_warm_restarts(1, 0.1, 2, 3, 2), 1, 1e-15);
	CHECK_NEAR(p2p_cosine_warm_restarts(1, 0.1, 2, 3, 5), 0.1 + 0.9 * 0.5, 1e-15);
	CHECK_NEAR(p2p_cosine_warm_restarts(1, 0.1, 2, 3, 8), 1, 1e-15);
	/* the exact bits PyTorch's Python float expression gives */
	volatile double pi = M_PI;
	CHECK(p2p_cosine_warm_restarts(b, 0, 50, 2, 7) == 0 + (b - 0) * (1 + cos(pi * 7 / 50)) / 2);
}

/* ---- flip and ColorJitter ---- */

static void fill_image(float *x, int c, int h, int w, uint64_t seed)
{
	p2p_rng r;
	p2p_rng_seed(&r, seed);
	for (long i = 0; i < (long)c * h * w; i++)
		x[i] = (float)p2p_rng_uniform(&r);
}

static void flip_is_a_mirror(void)
{
	float x[2 * 3 * 4], y[2 * 3 * 4];
	for (int i = 0; i < 24; i++)
		x[i] = y[i] = (float)i;
	p2p_hflip(y, 2, 3, 4);
	for (int c = 0; c < 2; c++)
		for (int r = 0; r < 3; r++)
			for (int k = 0; k < 4; k++)
				CHECK(y[(c * 3 + r) * 4 + k] == x[(c * 3 + r) * 4 + 3 - k]);
	p2p_hflip(y, 2, 3, 4);
	CHECK(memcmp(x, y, sizeof x) == 0);
	float o[5] = { 1, 2, 3, 4, 5 };   /* odd width: the middle stays */
	p2p_hflip(o, 1, 1, 5);
	CHECK(o[0] == 5 && o[1] == 4 && o[2] == 3 && o[3] == 2 && o[4] == 1);
}

static void flip_moves_a_and_b_together(void)
{
	enum { S = 8 };
	float a[S * S], b[3 * S * S], a0[S * S], b0[3 * S * S];
	fill_image(a0, 1, S, S, 1);
	fill_image(b0, 3, S, S, 2);
	for (int i = 0; i < 3 * S * S; i++)
		b0[i] = b0[i] * 2 - 1;
	p2p_augment cfg = { .flip_p = 1 };   /* flip always, no jitter */
	p2p_augment_draw d;
	p2p_rng r;
	p2p_rng_seed(&r, 3);
	p2p_augment_sample(&cfg, &r, &d);
	CHECK(d.flip == 1);
	memcpy(a, a0, sizeof a);
	memcpy(b, b0, sizeof b);
	p2p_augment_apply(&d, a, b, S);
	for (int c = 0; c < 3; c++)
		for (int y = 0; y < S; y++)
			for (int x = 0; x < S; x++) {
				CHECK(b[(c * S + y) * S + x] == b0[(c * S + y) * S + S - 1 - x]);
				if (c == 0)
					CHECK(a[y * S + x] == a0[y * S + S - 1 - x]);
			}
	cfg.flip_p = 0;
	p2p_augment_sample(&cfg, &r, &d);
	memcpy(a, a0, sizeof a);
	memcpy(b, b0, sizeof b);
	p2p_augment_apply(&d, a, b, S);
	CHECK(d.flip == 0 && memcmp(a, a0, sizeof a) == 0 && memcmp(b, b0, sizeof b) == 0);
}

static void jitter_identity(void)
{
	enum { H = 5, W = 7, P = H * W };
	float x[3 * P], y[3 * P];
	fill_image(x, 3, H, W, 4);
	p2p_augment_draw d = { .order = { 3, 1, 0, 2 }, .on = { 1, 1, 1, 1 },
	                       .factor = { 1, 1, 1, 0 } };
	/* brightness, contrast and saturation at 1 are exact no-ops */
	d.on[P2P_JIT_HUE] = 0;
	memcpy(y, x, sizeof x);
	p2p_color_jitter(y, H, W, &d);
	CHECK(memcmp(x, y, sizeof x) == 0);
	/* a hue shift of 0 is a round trip through HSV: equal to float rounding */
	d.on[P2P_JIT_HUE] = 1;
	p2p_color_jitter(y, H, W, &d);
	double worst = 0;
	for (int i = 0; i < 3 * P; i++)
		worst = fmax(worst, fabs(x[i] - y[i]));
	CHECKF(worst < 1e-6, "worst %g", worst);
}

/* Each adjustment alone against hand-computed torchvision values. */
static void jitter_semantics(void)
{
	p2p_augment_draw d = { .order = { 0, 1, 2, 3 } };
	/* two pixels: (0.2, 0.4, 0.6) and (0.9, 0.1, 0.5) */
	float img[6] = { 0.2f, 0.9f, 0.4f, 0.1f, 0.6f, 0.5f }, x[6];

	/* brightness 1.2: 1.2 x, clamped */
	memcpy(x, img, sizeof x);
	d.on[P2P_JIT_BRIGHTNESS] = 1;
	d.factor[P2P_JIT_BRIGHTNESS] = 1.2f;
	p2p_color_jitter(x, 1, 2, &d);
	CHECK_NEAR(x[0], 0.24, 1e-6);
	CHECK_NEAR(x[1], 1.0, 0);      /* 1.08 clamps */
	CHECK_NEAR(x[4], 0.72, 1e-6);
	d.on[P2P_JIT_BRIGHTNESS] = 0;

	/* contrast 0.5: blend with the mean grey of the image */
	double g0 = 0.2989 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6;
	double g1 = 0.2989 * 0.9 + 0.587 * 0.1 + 0.114 * 0.5;
	double m = (g0 + g1) / 2;
	memcpy(x, img, sizeof x);
	d.on[P2P_JIT_CONTRAST] = 1;
	d.factor[P2P_JIT_CONTRAST] = 0.5f;
	p2p_color_jitter(x, 1, 2, &d);
	for (int i = 0; i < 6; i++)
		CHECK_NEAR(x[i], 0.5 * img[i] + 0.5 * m, 1e-6);
	d.on[P2P_JIT_CONTRAST] = 0;

	/* saturation 0: the greyscale image; 2: away from grey, clamped */
	memcpy(x, img, sizeof x);
	d.on[P2P_JIT_SATURATION] = 1;
	d.factor[P2P_JIT_SATURATION] = 0;
	p2p_color_jitter(x, 1, 2, &d);
	for (int c = 0; c < 3; c++) {
		CHECK_NEAR(x[2 * c], g0, 1e-6);
		CHECK_NEAR(x[2 * c + 1], g1, 1e-6);
	}
	memcpy(x, img, sizeof x);
	d.factor[P2P_JIT_SATURATION] = 2;
	p2p_color_jitter(x, 1, 2, &d);
	CHECK_NEAR(x[0], fmax(0, 2 * 0.2 - g0), 1e-6);
	CHECK_NEAR(x[1], fmin(1, 2 * 0.9 - g1), 1e-6);
	CHECK_NEAR(x[3], fmax(0, 2 * 0.1 - g1), 1e-6);
	d.on[P2P_JIT_SATURATION] = 0;

	/* hue: red + 1/2 turn is cyan; (0.2, 0.4, 0.6) is h 7/12, + 1/12 is
	 * h 2/3, pure blue hue: (v (1 - s), v (1 - s), v) = (0.2, 0.2, 0.6) */
	float red[3] = { 1, 0, 0 };
	d.on[P2P_JIT_HUE] = 1;
	d.factor[P2P_JIT_HUE] = 0.5f;
	p2p_color_jitter(red, 1, 1, &d);
	CHECK_NEAR(red[0], 0, 1e-6);
	CHECK_NEAR(red[1], 1, 1e-6);
	CHECK_NEAR(red[2], 1, 1e-6);
	float px[3] = { 0.2f, 0.4f, 0.6f };
	d.factor[P2P_JIT_HUE] = 1.0f / 12;
	p2p_color_jitter(px, 1, 1, &d);
	CHECK_NEAR(px[0], 0.2, 1e-5);
	CHECK_NEAR(px[1], 0.2, 1e-5);
	CHECK_NEAR(px[2], 0.6, 1e-5);
	/* a negative shift wraps: red - 1/6 is magenta (1, 0, 1) */
	float r2[3] = { 1, 0, 0 };
	d.factor[P2P_JIT_HUE] = -1.0f / 6;
	p2p_color_jitter(r2, 1, 1, &d);
	CHECK_NEAR(r2[0], 1, 1e-5);
	CHECK_NEAR(r2[1], 0, 1e-5);
	CHECK_NEAR(r2[2], 1, 1e-5);
	/* grey has no hue: unchanged */
	float gr[3] = { 0.3f, 0.3f, 0.3f };
	d.factor[P2P_JIT_HUE] = 0.3f;
	p2p_color_jitter(gr, 1, 1, &d);
	CHECK(gr[0] == 0.3f && gr[1] == 0.3f && gr[2] == 0.3f);

	/* order matters: brightness 2 then contrast 0 differs from the reverse */
	float p1[3] = { 0.4f, 0.4f, 0.4f }, p2[3] = { 0.4f, 0.4f, 0.4f };
	p2p_augment_draw e = { .order = { 0, 1, 2, 3 }, .on = { 1, 1, 0, 0 },
	                       .factor = { 2, 0, 1, 0 } };
	p2p_color_jitter(p1, 1, 1, &e);
	e.order[0] = 1;
	e.order[1] = 0;
	p2p_color_jitter(p2, 1, 1, &e);
	/* (the grey weights add up to .9999) */
	CHECK_NEAR(p1[0], 0.8, 1e-3);       /* 0.8, then its own mean */
	CHECK_NEAR(p2[0], 0.8, 1e-3);       /* 0.4 (its mean), then 0.8 */
	float q1[6] = { 0.1f, 0.6f, 0.1f, 0.6f, 0.1f, 0.6f }, q2[6];
	memcpy(q2, q1, sizeof q1);
	e.order[0] = 0;
	e.order[1] = 1;
	p2p_color_jitter(q1, 1, 2, &e);     /* (0.2, 1.0): mean 0.6 */
	e.order[0] = 1;
	e.order[1] = 0;
	p2p_color_jitter(q2, 1, 2, &e);     /* mean 0.35, doubled: 0.7 */
	CHECK_NEAR(q1[0], 0.6, 1e-3);
	CHECK_NEAR(q2[0], 0.7, 1e-3);
}

static void jitter_draws_are_deterministic_and_in_range(void)
{
	p2p_augment cfg = p2p_augment_default();
	int flips = 0, first[4] = { 0 };
	for (int s = 0; s < 4000; s++) {
		p2p_rng r1, r2;
		p2p_rng_seed2(&r1, 42, s);
		p2p_rng_seed2(&r2, 42, s);
		p2p_augment_draw d1, d2;
		p2p_augment_sample(&cfg, &r1, &d1);
		p2p_augment_sample(&cfg, &r2, &d2);
		CHECK(memcmp(&d1, &d2, sizeof d1) == 0);
		flips += d1.flip;
		first[d1.order[0]]++;
		int seen = 0;
		for (int i = 0; i < 4; i++)
			seen |= 1 << d1.order[i];
		CHECK(seen == 15);
		for (int k = 0; k < 3; k++)
			CHECK(d1.on[k] && d1.factor[k] >= 0.95f && d1.factor[k] <= 1.05f);
		CHECK(d1.on[3] && d1.factor[3] >= -0.01f && d1.factor[3] <= 0.01f);
	}
	CHECKF(abs(flips - 2000) < 150, "%d flips in 4000", flips);
	for (int i = 0; i < 4; i++)
		CHECKF(abs(first[i] - 1000) < 120, "%d first %d times", i, first[i]);

	/* the same stream gives the same pixels; another stream others; the
	 * result stays in range */
	enum { S = 16 };
	float a1[S * S], b1[3 * S * S], a2[S * S], b2[3 * S * S], a3[S * S], b3[3 * S * S];
	fill_image(a1, 1, S, S, 5);
	fill_image(b1, 3, S, S, 6);
	for (int i = 0; i < 3 * S * S; i++)
		b1[i] = b1[i] * 2 - 1;
	memcpy(a2, a1, sizeof a1);
	memcpy(b2, b1, sizeof b1);
	memcpy(a3, a1, sizeof a1);
	memcpy(b3, b1, sizeof b1);
	p2p_rng r;
	p2p_augment_draw d;
	p2p_rng_seed2(&r, 7, 100);
	p2p_augment_sample(&cfg, &r, &d);
	p2p_augment_apply(&d, a1, b1, S);
	p2p_rng_seed2(&r, 7, 100);
	p2p_augment_sample(&cfg, &r, &d);
	p2p_augment_apply(&d, a2, b2, S);
	CHECK(memcmp(a1, a2, sizeof a1) == 0 && memcmp(b1, b2, sizeof b1) == 0);
	p2p_rng_seed2(&r, 7, 101);
	p2p_augment_sample(&cfg, &r, &d);
	p2p_augment_apply(&d, a3, b3, S);
	CHECK(memcmp(b1, b3, sizeof b1) != 0);
	for (int i = 0; i < 3 * S * S; i++)
		CHECK(b1[i] >= -1 && b1[i] <= 1 && b3[i] >= -1 && b3[i] <= 1);
	/* a jitter this light moves no value far */
	double worst = 0;
	p2p_rng_seed2(&r, 7, 101);
	p2p_augment_sample(&cfg, &r, &d);
	d.flip = 0;
	memcpy(b3, b2, sizeof b2);
	p2p_augment_apply(&d, a3, b3, S);
	for (int i = 0; i < 3 * S * S; i++)
		worst = fmax(worst, fabs(b3[i] - b2[i]));
	CHECKF(worst > 0 && worst < 0.3, "worst %g", worst);
}

/* ---- data sets ---- */

static void write_npy(const char *path, int h, int w, unsigned char v)
{
	unsigned char *px = malloc((size_t)h * w);
	for (int i = 0; i < h * w; i++)
		px[i] = (unsigned char)(v + i);
	long shape[2] = { h, w };
	CHECK(p2p_npy_write(path, P2P_U8, 2, shape, px) == 0);
	free(px);
}

static void write_png(const char *path, int h, int w, unsigned char v)
{
	p2p_image img;
	CHECK(p2p_image_alloc(&img, w, h, 3) == 0);
	for (int i = 0; i < w * h * 3; i++)
		img.px[i] = (unsigned char)(v + 3 * i);
	CHECK(p2p_image_save(path, &img, 95) == 0);
	p2p_image_free(&img);
}

static void make_split(const char *split, int n, int s)
{
	char p[600];
	snprintf(p, sizeof p, "%s/%s/A", dir, split);
	mkdir(tmp(split), 0777);
	mkdir(p, 0777);
	snprintf(p, sizeof p, "%s/%s/B", dir, split);
	mkdir(p, 0777);
	for (int i = n - 1; i >= 0; i--) {     /* written out of order */
		snprintf(p, sizeof p, "%s/%s/A/cat%02d.npy", dir, split, i);
		write_npy(p, s, s, (unsigned char)(10 * i));
		snprintf(p, sizeof p, "%s/%s/B/cat%02d.png", dir, split, i);
		write_png(p, s, s, (unsigned char)(20 * i));
	}
}

static void dataset_loads_pairs_in_order(void)
{
	make_split("train", 3, 8);
	p2p_dataset ds;
	int rc = p2p_dataset_load(&ds, dir, "train", 0);
	CHECKF(rc == 0, "%s", p2p_errmsg());
	if (rc)
		return;
	CHECK(ds.n == 3 && ds.size == 8);
	CHECK(strcmp(ds.id[0], "cat00") == 0 && strcmp(ds.id[2], "cat02") == 0);
	float a[64], b[3 * 64];
	p2p_dataset_get(&ds, 1, a, b);
	/* A: (10 + k) / 255 * 2 - 1; B planar, pixel k channel c from the
	 * interleaved 20 + 3 (3k + c) */
	CHECK_NEAR(a[0], 10 / 255.0 * 2 - 1, 1e-6);
	CHECK_NEAR(a[5], 15 / 255.0 * 2 - 1, 1e-6);
	CHECK_NEAR(b[0], 20 / 127.5 - 1, 1e-6);
	CHECK_NEAR(b[1], 29 / 127.5 - 1, 1e-6);
	CHECK_NEAR(b[64], 23 / 127.5 - 1, 1e-6);
	CHECK_NEAR(b[128 + 2], 44 / 127.5 - 1, 1e-6);
	CHECK(ds.b[64 * 3 + 64 + 2] == 41);
	for (int i = 0; i < 64; i++)
		CHECK(a[i] >= -1 && a[i] <= 1);
	p2p_dataset_free(&ds);
	p2p_dataset_free(&ds);    /* twice is fine */
	/* a size given: all must have it */
	CHECK(p2p_dataset_load(&ds, dir, "train", 16) == -1);
	CHECKF(strstr(p2p_errmsg(), "/train/A/cat00.npy: heatmap is 8x8, expected 16x16"),
	       "%s", p2p_errmsg());
}

static void expect_error(const char *split, const char *want)
{
	p2p_dataset ds;
	CHECK(p2p_dataset_load(&ds, dir, split, 0) == -1);
	char full[700];
	snprintf(full, sizeof full, want, dir, dir, dir);
	CHECKF(strcmp(p2p_errmsg(), full) == 0, "got '%s', want '%s'", p2p_errmsg(), full);
	CHECK(ds.n == 0 && ds.a == NULL && ds.id == NULL);
}

static void dataset_errors_name_the_file(void)
{
	char p[600];
	expect_error("nosuch", "%s/nosuch/A: No such file or directory");

	make_split("onlyA", 2, 8);
	snprintf(p, sizeof p, "%s/onlyA/B/cat01.png", dir);
	unlink(p);
	expect_error("onlyA", "%s/onlyA/A/cat01.npy: no matching photo %s/onlyA/B/cat01.jpg");

	make_split("onlyB", 2, 8);
	snprintf(p, sizeof p, "%s/onlyB/A/cat00.npy", dir);
	unlink(p);
	expect_error("onlyB", "%s/onlyB/B/cat00.png: no matching heatmap %s/onlyB/A/cat00.npy");

	make_split("twice", 2, 8);
	snprintf(p, sizeof p, "%s/twice/B/cat01.jpg", dir);
	write_png(p, 8, 8, 0);
	expect_error("twice", "%s/twice/B/cat01.png: a second photo for id 'cat01' (cat01.jpg)");

	make_split("size", 3, 8);
	snprintf(p, sizeof p, "%s/size/B/cat02.png", dir);
	write_png(p, 8, 16, 0);
	expect_error("size", "%s/size/B/cat02.png: image is 16x8, expected 8x8");
	snprintf(p, sizeof p, "%s/size/A/cat01.npy", dir);
	write_npy(p, 4, 4, 0);
	expect_error("size", "%s/size/A/cat01.npy: heatmap is 4x4, expected 8x8");
	snprintf(p, sizeof p, "%s/size/A/cat00.npy", dir);
	write_npy(p, 8, 6, 0);
	expect_error("size", "%s/size/A/cat00.npy: expected a square 2-D heatmap, got 6x8");

	make_split("empty", 0, 8);
	expect_error("empty", "%s/empty: no samples (no .npy in %s/empty/A)");

	/* an unreadable photo: the loader's message, naming the file */
	make_split("bad", 2, 8);
	snprintf(p, sizeof p, "%s/bad/B/cat01.png", dir);
	CHECK(p2p_write_file(p, "not a png", 9) == 0);
	p2p_dataset ds;
	CHECK(p2p_dataset_load(&ds, dir, "bad", 0) == -1);
	CHECKF(strncmp(p2p_errmsg(), p, strlen(p)) == 0, "%s", p2p_errmsg());
}


/* ---- checkpoints ---- */

static const p2p_backend *be;

/* A small parameter set standing in for a model: the checkpoint code sees
 * only names, shapes and flat buffers. */
static int make_set(p2p_params *ps, const char *w, int rows, uint64_t seed)
{
	p2p_param_spec spec[2] = { { w, 4, { rows, 2, 3, 3 }, P2P_INIT_NORMAL },
	                           { "bias", 1, { rows, 1, 1, 1 }, P2P_INIT_ZERO } };
	if (p2p_params_create(ps, be, spec, 2))
		return -1;
	p2p_rng r;
	p2p_rng_seed(&r, seed);
	p2p_params_init(ps, &r, 0.5f);
	for (int t = 0; t < ps->count; t++)     /* alignment gaps stay 0 */
		for (size_t i = ps->offset[t]; i < ps->offset[t] + ps->numel[t]; i++) {
			ps->m[i] = (float)i * 0.25f;
			ps->v[i] = (float)i + 0.5f;
		}
	return 0;
}

static p2p_ckpt sample_ckpt(void)
{
	p2p_ckpt c = { .g = p2p_unet_default(32), .epoch = 3, .batch = 2, .step = 17,
	               .n_train = 8, .best_val_l1 = 0.1 + 0.2, .best_epoch = 2,
	               .sums = { 1.0 / 3, 2e-300, 123456.789, 0.1, 0 },
	               .seed = 18446744073709551557ULL, .config = "{\"batch\":3}" };
	c.g.ngf = 4;
	c.d = (p2p_patchgan_cfg){ .size = 32, .in_ch = 4, .ndf = 4 };
	return c;
}

static void checkpoint_round_trip(void)
{
	p2p_params g, d, g2, d2;
	CHECK(make_set(&g, "down.0.weight", 3, 1) == 0 && make_set(&d, "conv.0.weight", 2, 2) == 0);
	CHECK(make_set(&g2, "down.0.weight", 3, 9) == 0 && make_set(&d2, "conv.0.weight", 2, 9) == 0);
	p2p_adam ga = { .step = 17 }, da = { .step = 16 }, ga2 = { 0 }, da2 = { 0 };
	p2p_ckpt c = sample_ckpt();
	const char *path = tmp("last.safetensors"), *again = tmp("again.safetensors");
	CHECKF(p2p_ckpt_save(path, &c, &g, &ga, &d, &da) == 0, "%s", p2p_errmsg());
	p2p_ckpt r;
	p2p_st *st = p2p_ckpt_open(path, &r);
	CHECKF(st != NULL, "%s", p2p_errmsg());
	if (!st)
		return;
	CHECK(r.epoch == 3 && r.batch == 2 && r.step == 17 && r.n_train == 8 && r.best_epoch == 2);
	CHECK(r.best_val_l1 == c.best_val_l1 && r.seed == c.seed);
	CHECK(memcmp(r.sums, c.sums, sizeof r.sums) == 0);      /* to the bit */
	CHECK(r.g.size == 32 && r.g.ngf == 4 && r.g.in_ch == 1 && r.g.out_ch == 3);
	CHECK(r.d.size == 32 && r.d.in_ch == 4 && r.d.ndf == 4);
	CHECK(strcmp(r.config, "{\"batch\":3}") == 0);
	CHECKF(p2p_ckpt_restore(st, path, &g2, &ga2, &d2, &da2) == 0, "%s", p2p_errmsg());
	CHECK(ga2.step == 17 && da2.step == 16);
	CHECK(memcmp(g.data, g2.data, g.total * sizeof(float)) == 0);
	CHECK(memcmp(g.m, g2.m, g.total * sizeof(float)) == 0);
	CHECK(memcmp(g.v, g2.v, g.total * sizeof(float)) == 0);
	CHECK(memcmp(d.data, d2.data, d.total * sizeof(float)) == 0);
	CHECK(memcmp(d.v, d2.v, d.total * sizeof(float)) == 0);
	/* the restored state saves to the same bytes */
	CHECK(p2p_ckpt_save(again, &r, &g2, &ga2, &d2, &da2) == 0);
	void *b1, *b2;
	size_t n1, n2;
	CHECK(p2p_read_file(path, 1 << 24, &b1, &n1) == 0 && p2p_read_file(again, 1 << 24, &b2, &n2) == 0);
	CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0);
	free(b2);
	/* an infinite best L1 (no validation yet) reads back */
	c.best_val_l1 = INFINITY;
	CHECK(p2p_ckpt_save(again, &c, &g, &ga, &d, &da) == 0);
	p2p_ckpt r2;
	p2p_st *st2 = p2p_ckpt_open(again, &r2);
	CHECK(st2 && isinf(r2.best_val_l1));
	p2p_st_free(st2);
	p2p_ckpt_clear(&r2);

	/* restoring into another shape names the tensor */
	p2p_params g3;
	CHECK(make_set(&g3, "down.0.weight", 5, 1) == 0);
	CHECK(p2p_ckpt_restore(st, path, &g3, &ga2, &d2, &da2) == -1);
	CHECKF(strstr(p2p_errmsg(), "G.down.0.weight") != NULL, "%s", p2p_errmsg());
	p2p_params_free(&g3);
	p2p_st_free(st);
	p2p_ckpt_clear(&r);

	/* truncated: an error naming the file, at any length */
	for (size_t cut = 0; cut < n1; cut += n1 / 7 + 1) {
		CHECK(p2p_write_file(again, b1, cut) == 0);
		CHECK(p2p_ckpt_open(again, &r) == NULL);
		CHECKF(strncmp(p2p_errmsg(), again, strlen(again)) == 0, "%s", p2p_errmsg());
	}
	free(b1);

	/* G_best: plain names, the architecture; not a training checkpoint */
	const char *gb = tmp("G_best.safetensors");
	CHECK(p2p_ckpt_save_g(gb, &c.g, &g, 2, 0.25) == 0);
	p2p_st *s = p2p_st_read(gb);
	CHECK(s != NULL);
	if (s) {
		const float *w;
		int shape[4] = { 3, 2, 3, 3 };
		CHECK(p2p_st_get_shaped(s, "down.0.weight", 4, shape, &w) == 0);
		CHECK(w && memcmp(w, g.data, 54 * sizeof(float)) == 0);
		p2p_unet_cfg u;
		CHECK(p2p_unet_meta_read(s, gb, &u) == 0 && u.ngf == 4 && u.size == 32);
		CHECK(strcmp(p2p_st_meta(s, "epoch"), "2") == 0);
		CHECK(strcmp(p2p_st_meta(s, "val_l1"), "0.25") == 0);
		p2p_st_free(s);
	}
	CHECK(p2p_ckpt_open(gb, &r) == NULL);
	CHECKF(strstr(p2p_errmsg(), "not a p2p-train checkpoint") != NULL, "%s", p2p_errmsg());
	CHECK(p2p_ckpt_save_d(tmp("D_best.safetensors"), &c.d, &d, 2, 0.25) == 0);
	p2p_params_free(&g);
	p2p_params_free(&d);
	p2p_params_free(&g2);
	p2p_params_free(&d2);
}

int main(void)
{
	if (tmpdir_make("train-parts"))
		return 1;
	if (p2p_image_init("test_train_parts"))
		return 1;
	RUN(schedule_matches_pytorch);
	RUN(flip_is_a_mirror);
	RUN(flip_moves_a_and_b_together);
	RUN(jitter_identity);
	RUN(jitter_semantics);
	RUN(jitter_draws_are_deterministic_and_in_range);
	RUN(dataset_loads_pairs_in_order);
	RUN(dataset_errors_name_the_file);
	be = p2p_backend_get("cpu");
	if (be) {
		be->set_threads(1);
		RUN(checkpoint_round_trip);
	}
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		return 1;
	vips_shutdown();
	return CHECK_DONE();
}
