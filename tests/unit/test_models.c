/* The whole models: U-Net, PatchGAN and VGG16[:16]. Backward against central
 * finite differences of L = sum(w * y) along random directions over every
 * parameter and the input at once; shapes and parameter counts at every
 * size; dropout masks; metadata round trips; bad configurations; the
 * Winograd layers of D and VGG16 against the same models on direct
 * convolutions.
 * VALGRIND=1 keeps to the tiny configurations. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "err.h"
#include "layers.h"
#include "models.h"
#include "rng.h"

static const p2p_backend *be;
static int big;                 /* larger shapes allowed (not under valgrind) */
static p2p_rng rng;

static float *rvec(size_t n, float scale)
{
	float *x = malloc((n ? n : 1) * sizeof *x);
	for (size_t i = 0; i < n; i++)
		x[i] = (float)(scale * p2p_rng_range(&rng, -1, 1));
	return x;
}

static double dot(const float *a, const float *b, size_t n)
{
	double s = 0;
	for (size_t i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
}

/* ---- a backend with frozen kinks ----
 * ReLU, LeakyReLU and max-pooling make L piecewise smooth; a finite
 * difference whose step crosses a kink is off by O(eps), and the whole model
 * has thousands of units near one. The checks run the models on a copy of
 * the CPU backend whose leaky_fwd and maxpool2_fwd record their branch (sign,
 * argmax) on the unperturbed forward and replay it on the perturbed ones:
 * the function is then smooth around the point, has the same gradient there,
 * and central differences converge as eps^2. */
static p2p_backend frozen;
static const p2p_backend *cpu;
static int freeze;              /* 0 off, 1 record, 2 replay */
static unsigned char *branch;
static size_t branch_n, branch_cap;

static unsigned char *branches(size_t n)
{
	if (branch_n + n > branch_cap) {
		branch_cap = 2 * (branch_n + n);
		branch = realloc(branch, branch_cap);
	}
	unsigned char *b = branch + branch_n;
	branch_n += n;
	return b;
}

static void frozen_leaky(const float *x, float *y, size_t n, float slope)
{
	if (!freeze) {
		cpu->leaky_fwd(x, y, n, slope);
		return;
	}
	unsigned char *b = branches(n);
	for (size_t i = 0; i < n; i++) {
		if (freeze == 1)
			b[i] = x[i] > 0;
		y[i] = b[i] ? x[i] : slope * x[i];
	}
}

static void frozen_maxpool(const float *x, float *y, int planes, int h, int w)
{
	if (!freeze) {
		cpu->maxpool2_fwd(x, y, planes, h, w);
		return;
	}
	int oh = h / 2, ow = w / 2;
	unsigned char *b = branches((size_t)planes * oh * ow);
	for (long i = 0; i < (long)planes * oh; i++)
		for (int ox = 0; ox < ow; ox++) {
			const float *r0 = x + (i / oh * h + 2 * (i % oh)) * (long)w + 2 * ox;
			const float *t[4] = {r0, r0 + 1, r0 + w, r0 + w + 1};
			unsigned char *bi = b + i * ow + ox;
			if (freeze == 1) {
				int best = 0;
				for (int j = 1; j < 4; j++)
					if (*t[j] > *t[best])
						best = j;
				*bi = (unsigned char)best;
			}
			y[i * ow + ox] = *t[*bi];
		}
}

/* A model seen as L(theta, x) = sum(w * f(theta, x)) for the checks. */
typedef struct {
	const float *(*fwd)(void *m, const float *x);
	int (*bwd)(void *m, const float *dy, float *dx);
	void *m;
	p2p_params *ps;             /* NULL: no parameters to differentiate */
	size_t nx, ny;
} model_fn;

static double loss(const model_fn *f, const float *x, const float *w)
{
	branch_n = 0;
	const float *y = f->fwd(f->m, x);
	return y ? dot(y, w, f->ny) : NAN;
}

/* Directional derivative along a random direction: over every parameter
 * and the input (which = -1), the input alone (-2) or parameter tensor
 * `which` alone. The gradient from backward against the central difference
 * (L(+eps) - L(-eps)) / 2 eps for a few eps; returns the smallest error
 * |analytic - numeric| / (|analytic| + |numeric| + floor) (a wrong gradient
 * is off at every step; float32 rounding and curvature each spoil one end). */
static double check_direction(const model_fn *f, const float *x, int which, double *floor)
{
	static const float steps[] = {1e-3f, 3e-4f};
	p2p_params *ps = f->ps;
	size_t np = ps ? ps->total : 0;
	float *w = rvec(f->ny, 1), *vx = calloc(f->nx, sizeof *vx), *v = calloc(np + 1, sizeof *v);
	float *dx = calloc(f->nx, sizeof *dx), *xp = malloc(f->nx * sizeof *xp);
	float *theta = malloc((np + 1) * sizeof *theta);
	for (int i = 0; ps && i < ps->count; i++)
		if (which == -1 || which == i)
			for (size_t j = 0; j < ps->numel[i]; j++)
				v[ps->offset[i] + j] = (float)p2p_rng_normal(&rng);
	if (which < 0)
		for (size_t i = 0; i < f->nx; i++)
			vx[i] = (float)p2p_rng_normal(&rng);
	if (ps) {
		memcpy(theta, ps->data, np * sizeof *theta);
		p2p_params_zero_grad(ps);
	}
	double best = 1;
	freeze = 1;
	branch_n = 0;
	const float *y0 = f->fwd(f->m, x);
	freeze = 2;
	if (!y0 || f->bwd(f->m, w, dx) != 0) {
		printf("# %s\n", p2p_errmsg());
		goto out;
	}
	double an = dot(dx, vx, f->nx) + (ps ? dot(ps->grad, v, np) : 0), num = 0;
	if (which == -1)
		*floor = 1e-2 * fabs(an);
	for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
		float eps = steps[k];
		double l[2];
		for (int s = 0; s < 2; s++) {
			float e = s ? -eps : eps;
			for (size_t i = 0; i < np; i++)
				ps->data[i] = theta[i] + e * v[i];
			for (size_t i = 0; i < f->nx; i++)
				xp[i] = x[i] + e * vx[i];
			l[s] = loss(f, xp, w);
		}
		double d = (l[0] - l[1]) / (2.0 * eps);
		double e = fabs(an - d) / (fabs(an) + fabs(d) + *floor);
		if (e < best)
			best = e, num = d;
	}
	if (best > 1e-2 || getenv("SHOW"))
		printf("# %s: analytic %.9g numeric %.9g\n",
		       which == -1 ? "all" : which == -2 ? "input" : ps->name[which], an, num);
out:
	freeze = 0;
	if (ps)
		memcpy(ps->data, theta, np * sizeof *theta);
	free(w), free(vx), free(v), free(dx), free(xp), free(theta);
	return best;
}

/* All together, the input alone, then every parameter tensor alone; errors
 * are relative to the size of the whole directional derivative, so
 * gradients that are zero in exact arithmetic (a bias before a norm) are
 * compared with the float32 noise around them. */
static void check_model(const model_fn *f, const float *x, const char *what)
{
	int count = f->ps && big ? f->ps->count : 0;   /* valgrind: the first two */
	double floor = 0;
	for (int i = -2; i < count; i++) {
		double e = check_direction(f, x, i == -2 ? -1 : i == -1 ? -2 : i, &floor);
		CHECKF(e < 1e-2, "%s: %s: relative error %.3g", what,
		       i == -2 ? "all" : i == -1 ? "input" : f->ps->name[i], e);
	}
}

static int same(const float *a, const float *b, size_t n)
{
	return memcmp(a, b, n * sizeof *a) == 0;
}

static double maxdiff(const float *a, const float *b, size_t n)
{
	double m = 0;
	for (size_t i = 0; i < n; i++)
		m = fmax(m, fabs(a[i] - b[i]));
	return m;
}

/* ---- U-Net ---- */

typedef struct {
	p2p_unet *g;
	int n, drop;
	uint64_t seed, counter;
} unet_ctx;

static const float *unet_fwd(void *m, const float *x)
{
	unet_ctx *c = m;
	return p2p_unet_forward(c->g, x, c->n, c->drop, c->seed, c->counter);
}

static int unet_bwd(void *m, const float *dy, float *dx)
{
	unet_ctx *c = m;
	return p2p_unet_backward(c->g, dy, dx);
}

static p2p_unet *unet(const p2p_backend *b, int size, int ngf, int batch, uint64_t seed,
                      float std)
{
	p2p_unet_cfg cfg = p2p_unet_default(size);
	cfg.ngf = ngf;
	p2p_unet *g = p2p_unet_new(b, &cfg, batch);
	if (!g) {
		printf("# %s\n", p2p_errmsg());
		return NULL;
	}
	p2p_rng r;
	p2p_rng_seed(&r, seed);
	p2p_params_init(p2p_unet_params(g), &r, std);
	return g;
}

static void test_unet_gradients(void)
{
	p2p_unet *g = unet(&frozen, 32, 4, 2, 1, 0.2f);
	CHECK(g != NULL);
	if (!g)
		return;
	size_t nx = 2 * 32 * 32;
	float *x = rvec(nx, 1);
	for (int drop = 0; drop < 2; drop++) {
		unet_ctx c = {g, 2, drop, 7, 100};
		model_fn f = {unet_fwd, unet_bwd, &c, p2p_unet_params(g), nx, 2 * 3 * 32 * 32};
		check_model(&f, x, drop ? "dropout on" : "dropout off");
	}
	free(x);
	p2p_unet_free(g);
}

/* Parameter names and shapes at every size, as bench/torch_ref.py lists
 * them (up.0 is the innermost block here), counts at the reference widths,
 * and a forward where it is cheap. */
static void test_unet_shapes(void)
{
	p2p_unet_cfg ref = p2p_unet_default(256);
	CHECK(p2p_unet_param_count(&ref) == 54407555);
	for (int size = 32; size <= 512; size *= 2) {
		int k = 0;
		while ((1 << k) < size)
			k++;
		p2p_unet *g = unet(be, size, 2, 1, 3, 0.02f);
		CHECK(g != NULL);
		if (!g)
			continue;
		p2p_params *ps = p2p_unet_params(g);
		p2p_unet_cfg cfg = *p2p_unet_config(g);
		CHECK(cfg.size == size && cfg.ngf == 2 && cfg.in_ch == 1 && cfg.out_ch == 3);
		CHECK(ps->count == 4 * k);
		CHECK(p2p_params_count(ps) == p2p_unet_param_count(&cfg));
		int cin = 1;
		for (int i = 0; i < k; i++) {
			int c = 2 * (i < 3 ? 1 << i : 8);
			char name[32];
			snprintf(name, sizeof name, "down.%d.weight", i);
			int j = p2p_params_find(ps, name);
			CHECKF(j >= 0 && ps->shape[j][0] == c && ps->shape[j][1] == cin &&
			       ps->shape[j][2] == 4 && ps->shape[j][3] == 4, "%s at %d", name, size);
			/* up.(k-1-i) maps level i back: in c (innermost) or 2c, out c_{i-1} or 3 */
			snprintf(name, sizeof name, "up.%d.weight", k - 1 - i);
			j = p2p_params_find(ps, name);
			int uin = i == k - 1 ? c : 2 * c, uout = i ? cin : 3;
			CHECKF(j >= 0 && ps->shape[j][0] == uin && ps->shape[j][1] == uout,
			       "%s at %d", name, size);
			snprintf(name, sizeof name, "up.%d.bias", k - 1 - i);
			j = p2p_params_find(ps, name);
			CHECKF(j >= 0 && ps->ndim[j] == 1 && ps->shape[j][0] == uout, "%s", name);
			cin = c;
		}
		if (size <= (big ? 512 : 64)) {
			size_t n = (size_t)size * size;
			float *x = rvec(n, 1);
			const float *y = p2p_unet_forward(g, x, 1, 0, 0, 0);
			CHECK(y != NULL);
			int in_range = y != NULL, varied = 0;
			for (size_t i = 0; y && i < 3 * n; i++) {
				in_range &= y[i] > -1 && y[i] < 1;
				varied |= y[i] != y[0];
			}
			CHECKF(in_range && varied, "output at %d in (-1, 1) and not constant", size);
			free(x);
		}
		CHECK(p2p_unet_flops(g) > 0);
		p2p_unet_free(g);
	}
}

static void test_unet_dropout(void)
{
	p2p_unet *g = unet(be, 32, 4, 2, 5, 0.02f);
	if (!g) {
		CHECK(0);
		return;
	}
	size_t nx = 32 * 32, ny = 3 * 32 * 32;
	float *x = rvec(2 * nx, 1), *y[6];
	for (int i = 0; i < 6; i++)
		y[i] = malloc(2 * ny * sizeof *y[i]);
	memcpy(y[0], p2p_unet_forward(g, x, 2, 0, 1, 10), 2 * ny * sizeof(float));
	memcpy(y[1], p2p_unet_forward(g, x, 2, 0, 2, 99), 2 * ny * sizeof(float));
	CHECKF(same(y[0], y[1], 2 * ny), "dropout off: seed and counter ignored");
	memcpy(y[2], p2p_unet_forward(g, x, 2, 1, 1, 10), 2 * ny * sizeof(float));
	memcpy(y[3], p2p_unet_forward(g, x, 2, 1, 1, 10), 2 * ny * sizeof(float));
	CHECKF(same(y[2], y[3], 2 * ny), "same seed and counter, same output");
	CHECKF(!same(y[2], y[0], ny) && !same(y[2] + ny, y[0] + ny, ny), "dropout changes both");
	memcpy(y[4], p2p_unet_forward(g, x, 2, 1, 1, 11), 2 * ny * sizeof(float));
	CHECKF(!same(y[4], y[2], ny), "another counter, another mask");
	memcpy(y[5], p2p_unet_forward(g, x, 2, 1, 2, 10), 2 * ny * sizeof(float));
	CHECKF(!same(y[5], y[2], ny), "another seed, another mask");
	/* sample i has counter + i: image 1 alone with counter 11 is what it was
	 * in the batch with counter 10 */
	const float *y1 = p2p_unet_forward(g, x + nx, 1, 1, 1, 11);
	CHECKF(y1 && maxdiff(y1, y[2] + ny, ny) < 1e-5, "batch of one");
	const uint64_t cs[2] = {10, 11};
	y1 = p2p_unet_forward_each(g, x, 2, 1, cs);
	CHECKF(y1 && same(y1, y[2], 2 * ny), "per-sample counters 10, 11 = counter 10");
	y1 = p2p_unet_forward_each(g, x + nx, 1, 1, cs + 1);
	CHECKF(y1 && maxdiff(y1, y[2] + ny, ny) < 1e-5, "per-sample counter 11, alone");
	y1 = p2p_unet_forward(g, x + nx, 1, 0, 0, 0);
	CHECKF(y1 && maxdiff(y1, y[0] + ny, ny) < 1e-5, "batch of one, no dropout");
	/* dropout 0 in the configuration: the flag does nothing */
	p2p_unet_cfg cfg = *p2p_unet_config(g);
	cfg.dropout = 0;
	p2p_unet *g0 = p2p_unet_new(be, &cfg, 2);
	CHECK(g0 != NULL);
	if (g0) {
		be->copy(p2p_unet_params(g0)->data, p2p_unet_params(g)->data, p2p_unet_params(g)->total);
		const float *a = p2p_unet_forward(g0, x, 2, 1, 1, 10);
		CHECKF(a && same(a, y[0], 2 * ny), "p = 0: dropout flag has no effect");
		p2p_unet_free(g0);
	}
	for (int i = 0; i < 6; i++)
		free(y[i]);
	free(x);
	p2p_unet_free(g);
}

static void test_unet_errors(void)
{
	int sizes[] = {16, 48, 1024, 0, -32};
	for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		p2p_unet_cfg c = p2p_unet_default(sizes[i]);
		CHECKF(p2p_unet_new(be, &c, 1) == NULL && strstr(p2p_errmsg(), "power of two"),
		       "size %d: %s", sizes[i], p2p_errmsg());
		CHECK(p2p_unet_param_count(&c) == 0);
	}
	p2p_unet_cfg c = p2p_unet_default(32);
	c.ngf = 0;
	CHECK(p2p_unet_new(be, &c, 1) == NULL && strstr(p2p_errmsg(), "ngf"));
	c = p2p_unet_default(32);
	c.dropout = 1;
	CHECK(p2p_unet_new(be, &c, 1) == NULL && strstr(p2p_errmsg(), "dropout"));
	c = p2p_unet_default(32);
	c.ngf = 2;
	CHECK(p2p_unet_new(be, &c, 0) == NULL);
	p2p_unet *g = p2p_unet_new(be, &c, 2);
	CHECK(g != NULL);
	if (!g)
		return;
	float *x = calloc(3 * 32 * 32, sizeof *x);
	CHECK(p2p_unet_backward(g, x, NULL) == -1 && strstr(p2p_errmsg(), "without a forward"));
	CHECK(p2p_unet_forward(g, x, 3, 0, 0, 0) == NULL && strstr(p2p_errmsg(), "3 images"));
	CHECK(p2p_unet_forward(g, x, 0, 0, 0, 0) == NULL);
	free(x);
	p2p_unet_free(g);
}

/* Write cfg's metadata (plus extra key/value pairs) to a file and read it back. */
static char tmpdir[64];

static char *meta_file(const char *name, const p2p_unet_cfg *cfg, const char *const *kv)
{
	static char path[128];
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	p2p_st_writer *w = p2p_st_writer_new();
	float one = 1;
	int64_t shape = 1;
	if (cfg)
		p2p_unet_meta_add(w, cfg);
	for (int i = 0; kv && kv[i]; i += 2)
		p2p_st_add_meta(w, kv[i], kv[i + 1]);
	p2p_st_add(w, "t", 1, &shape, &one);
	if (p2p_st_save(w, path) != 0)
		printf("# %s\n", p2p_errmsg());
	p2p_st_writer_free(w);
	return path;
}

static int read_meta(const char *path, p2p_unet_cfg *cfg)
{
	p2p_st *st = p2p_st_read(path);
	if (!st)
		return -1;
	int rc = p2p_unet_meta_read(st, path, cfg);
	p2p_st_free(st);
	return rc;
}

static void test_unet_meta(void)
{
	p2p_unet_cfg c = {.size = 128, .in_ch = 1, .out_ch = 3, .ngf = 48, .dropout = 0.3f}, r;
	memset(&r, 0, sizeof r);
	CHECK(read_meta(meta_file("g.st", &c, NULL), &r) == 0);
	CHECK(r.size == 128 && r.in_ch == 1 && r.out_ch == 3 && r.ngf == 48 && r.dropout == 0.3f);
	const char *patchgan[] = {"arch", "patchgan", NULL};
	const char *path = meta_file("d.st", &c, patchgan);
	CHECKF(read_meta(path, &r) == -1 && strstr(p2p_errmsg(), "not a U-Net") &&
	       strstr(p2p_errmsg(), path), "%s", p2p_errmsg());
	CHECKF(read_meta(meta_file("none.st", NULL, NULL), &r) == -1 &&
	       strstr(p2p_errmsg(), "no \"arch\""), "%s", p2p_errmsg());
	const char *badsize[] = {"size", "100", NULL};
	CHECKF(read_meta(meta_file("s.st", &c, badsize), &r) == -1 &&
	       strstr(p2p_errmsg(), "size 100"), "%s", p2p_errmsg());
	const char *junk[] = {"ngf", "6x4", NULL};
	CHECKF(read_meta(meta_file("j.st", &c, junk), &r) == -1 &&
	       strstr(p2p_errmsg(), "\"ngf\": bad value"), "%s", p2p_errmsg());
	const char *norm[] = {"norm", "batch", NULL};
	CHECKF(read_meta(meta_file("n.st", &c, norm), &r) == -1 &&
	       strstr(p2p_errmsg(), "norm"), "%s", p2p_errmsg());
}

/* ---- PatchGAN ---- */

typedef struct {
	p2p_patchgan *d;
	int n;
} patchgan_ctx;

static const float *patchgan_fwd(void *m, const float *x)
{
	patchgan_ctx *c = m;
	return p2p_patchgan_forward(c->d, x, c->n);
}

static int patchgan_bwd(void *m, const float *dy, float *dx)
{
	patchgan_ctx *c = m;
	return p2p_patchgan_backward(c->d, dy, dx, 1);
}

static p2p_patchgan *patchgan(const p2p_backend *b, int size, int ndf, int batch,
                              uint64_t seed, float std)
{
	p2p_patchgan_cfg cfg = p2p_patchgan_default(size);
	cfg.ndf = ndf;
	p2p_patchgan *d = p2p_patchgan_new(b, &cfg, batch);
	if (!d) {
		printf("# %s\n", p2p_errmsg());
		return NULL;
	}
	p2p_rng r;
	p2p_rng_seed(&r, seed);
	p2p_params_init(p2p_patchgan_params(d), &r, std);
	return d;
}

static void test_patchgan_gradients(void)
{
	p2p_patchgan *d = patchgan(&frozen, 32, 4, 2, 3, 0.2f);
	CHECK(d != NULL);
	if (!d)
		return;
	CHECK(p2p_patchgan_out_size(d) == 2);
	size_t nx = 2 * 4 * 32 * 32;
	float *x = rvec(nx, 1);
	patchgan_ctx c = {d, 2};
	model_fn f = {patchgan_fwd, patchgan_bwd, &c, p2p_patchgan_params(d), nx, 2 * 2 * 2};
	check_model(&f, x, "patchgan");

	/* the G step's call: dx alone, parameter gradients untouched */
	p2p_params *ps = p2p_patchgan_params(d);
	float *dy = rvec(8, 1), *dx1 = calloc(nx, sizeof *dx1), *dx2 = calloc(nx, sizeof *dx2);
	p2p_params_zero_grad(ps);
	p2p_patchgan_forward(d, x, 2);
	CHECK(p2p_patchgan_backward(d, dy, dx1, 1) == 0);
	double gsum = 0;
	for (size_t i = 0; i < ps->total; i++)
		gsum += fabs(ps->grad[i]);
	p2p_params_zero_grad(ps);
	CHECK(p2p_patchgan_backward(d, dy, dx2, 0) == 0);
	int zero = 1;
	for (size_t i = 0; i < ps->total; i++)
		zero &= ps->grad[i] == 0;
	CHECKF(gsum > 0 && zero, "param_grads 0 leaves the gradients alone");
	CHECKF(same(dx1, dx2, nx), "and gives the same dx");
	/* accumulation: a second backward adds the same again */
	CHECK(p2p_patchgan_backward(d, dy, dx2, 0) == 0);
	double e = 0;
	for (size_t i = 0; i < nx; i++)
		e = fmax(e, fabs(dx2[i] - 2 * dx1[i]));
	CHECKF(e < 1e-6, "dx accumulates: %g", e);
	CHECK(p2p_patchgan_backward(d, dy, NULL, 0) == 0);
	free(dy), free(dx1), free(dx2), free(x);
	p2p_patchgan_free(d);
}

static void test_patchgan_shapes(void)
{
	p2p_patchgan_cfg ref = p2p_patchgan_default(256);
	CHECK(p2p_patchgan_param_count(&ref) == 2765761);
	for (int size = 32; size <= 512; size *= 2) {
		p2p_patchgan *d = patchgan(be, size, 2, 1, 1, 0.02f);
		CHECK(d != NULL);
		if (!d)
			continue;
		int p = p2p_patchgan_out_size(d);
		CHECKF(p == size / 8 - 2, "size %d: %d patches", size, p);
		p2p_params *ps = p2p_patchgan_params(d);
		CHECK(ps->count == 10 && p2p_params_count(ps) == p2p_patchgan_param_count(&(p2p_patchgan_cfg){size, 4, 2}));
		int j = p2p_params_find(ps, "conv.3.weight");
		CHECK(j >= 0 && ps->shape[j][0] == 16 && ps->shape[j][1] == 8);
		j = p2p_params_find(ps, "conv.4.weight");
		CHECK(j >= 0 && ps->shape[j][0] == 1 && ps->shape[j][1] == 16);
		j = p2p_params_find(ps, "conv.0.weight");
		CHECK(j >= 0 && ps->shape[j][0] == 2 && ps->shape[j][1] == 4);
		if (size <= (big ? 256 : 64)) {
			float *x = rvec((size_t)4 * size * size, 1);
			const float *y = p2p_patchgan_forward(d, x, 1);
			int fin = y != NULL;
			for (int i = 0; y && i < p * p; i++)
				fin &= isfinite(y[i]);
			CHECK(fin);
			free(x);
		}
		CHECK(p2p_patchgan_flops(d) > 0);
		p2p_patchgan_free(d);
	}
	int bad[] = {16, 48, 1024};
	for (int i = 0; i < 3; i++) {
		p2p_patchgan_cfg c = p2p_patchgan_default(bad[i]);
		CHECKF(p2p_patchgan_new(be, &c, 1) == NULL && strstr(p2p_errmsg(), "power of two"),
		       "size %d", bad[i]);
	}
	p2p_patchgan_cfg c = p2p_patchgan_default(32);
	c.ndf = 0;
	CHECK(p2p_patchgan_new(be, &c, 1) == NULL && strstr(p2p_errmsg(), "ndf"));
	c.ndf = 2;
	p2p_patchgan *d = p2p_patchgan_new(be, &c, 1);
	float *x = calloc(4 * 32 * 32, sizeof *x);
	CHECK(p2p_patchgan_backward(d, x, NULL, 1) == -1);
	CHECK(p2p_patchgan_forward(d, x, 2) == NULL && strstr(p2p_errmsg(), "2 images"));
	free(x);
	p2p_patchgan_free(d);
}

static void test_patchgan_meta(void)
{
	p2p_patchgan_cfg c = {.size = 64, .in_ch = 4, .ndf = 12}, r = {0, 0, 0};
	p2p_unet_cfg gc = p2p_unet_default(64);
	char path[128];
	snprintf(path, sizeof path, "%s/gd.st", tmpdir);
	/* G and D in one file, as in a training checkpoint */
	p2p_st_writer *w = p2p_st_writer_new();
	float one = 1;
	int64_t shape = 1;
	CHECK(p2p_unet_meta_add(w, &gc) == 0 && p2p_patchgan_meta_add(w, &c) == 0);
	p2p_st_add(w, "t", 1, &shape, &one);
	CHECK(p2p_st_save(w, path) == 0);
	p2p_st_writer_free(w);
	p2p_st *st = p2p_st_read(path);
	p2p_unet_cfg gr;
	CHECK(st && p2p_patchgan_meta_read(st, path, &r) == 0 && p2p_unet_meta_read(st, path, &gr) == 0);
	CHECK(r.size == 64 && r.in_ch == 4 && r.ndf == 12);
	CHECK(gr.size == 64 && gr.ngf == 64);
	p2p_st_free(st);
	/* a G-only file is not a D */
	p2p_unet_cfg g32 = p2p_unet_default(32);
	const char *gpath = meta_file("g-only.st", &g32, NULL);
	st = p2p_st_read(gpath);
	CHECKF(st && p2p_patchgan_meta_read(st, gpath, &r) == -1 &&
	       strstr(p2p_errmsg(), "not a p2pcat discriminator"), "%s", p2p_errmsg());
	p2p_st_free(st);
}

/* ---- VGG16 ---- */

typedef struct {
	p2p_vgg *v;
	int n;
} vgg_ctx;

static const float *vgg_fwd(void *m, const float *x)
{
	vgg_ctx *c = m;
	return p2p_vgg_forward(c->v, x, c->n);
}

static int vgg_bwd(void *m, const float *dy, float *dx)
{
	vgg_ctx *c = m;
	return p2p_vgg_backward(c->v, dy, dx);
}

/* He-scaled weights (uniform, cheap under valgrind) and small biases, so
 * that activations keep their size through the seven layers, as trained
 * weights do. */
static void vgg_he(p2p_vgg *v)
{
	p2p_params *ps = p2p_vgg_params(v);
	uint32_t s = 12345;
	for (int i = 0; i < ps->count; i++) {
		float *d = ps->data + ps->offset[i];
		double a = ps->ndim[i] == 4 ? sqrt(6.0 / (ps->shape[i][1] * 9)) : 0.1;
		for (size_t j = 0; j < ps->numel[i]; j++) {
			s = s * 1664525u + 1013904223u;
			d[j] = (float)(a * ((s >> 8) * 0x1p-23 - 1));
		}
	}
}

static void test_vgg_gradients(void)
{
	/* its widths are fixed, so valgrind gets a smaller image */
	int s = big ? 16 : 8, n = big ? 2 : 1;
	p2p_vgg *v = p2p_vgg_random(&frozen, s, n, 9);
	CHECK(v != NULL);
	if (!v)
		return;
	vgg_he(v);
	size_t nx = (size_t)n * 3 * s * s;
	float *x = rvec(nx, 1);
	vgg_ctx c = {v, n};
	model_fn f = {vgg_fwd, vgg_bwd, &c, NULL, nx, (size_t)n * 256 * (s / 4) * (s / 4)};
	check_model(&f, x, "vgg16");
	free(x);
	p2p_vgg_free(v);
}

/* A weight file where every layer passes channel 0 through (centre tap 1,
 * everything else 0): relu3_3's channel 0 is then the 4x4 max of
 * ReLU(normalised red), which pins the input mapping, the layer order, the
 * names, padding and both pools. */
static const int vgg_idx[7] = {0, 2, 5, 7, 10, 12, 14}, vgg_out[7] = {64, 64, 128, 128, 256, 256, 256};

static char *vgg_file(const char *name, int skip, int bad_shape)
{
	static char path[128];
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	p2p_st_writer *w = p2p_st_writer_new();
	float *data[14] = {0};
	char names[14][32];
	int cin = 3;
	for (int i = 0; i < 7; i++) {
		int64_t ws[4] = {vgg_out[i], cin, 3, 3}, bs[1] = {vgg_out[i]};
		data[2 * i] = calloc((size_t)vgg_out[i] * cin * 9, sizeof(float));
		data[2 * i][4] = 1;     /* out 0, in 0, centre */
		data[2 * i + 1] = calloc(vgg_out[i], sizeof(float));
		snprintf(names[2 * i], sizeof names[0], "features.%d.weight", vgg_idx[i]);
		snprintf(names[2 * i + 1], sizeof names[0], "features.%d.bias", vgg_idx[i]);
		if (bad_shape && i == 3)
			ws[1] = 64;
		if (skip != 2 * i)
			p2p_st_add(w, names[2 * i], 4, ws, data[2 * i]);
		if (skip != 2 * i + 1)
			p2p_st_add(w, names[2 * i + 1], 1, bs, data[2 * i + 1]);
		cin = vgg_out[i];
	}
	if (p2p_st_save(w, path) != 0)
		printf("# %s\n", p2p_errmsg());
	p2p_st_writer_free(w);
	for (int i = 0; i < 14; i++)
		free(data[i]);
	return path;
}

static void test_vgg_known(void)
{
	int s = 16, q = s / 4;
	p2p_vgg *v = p2p_vgg_load(be, vgg_file("vgg.st", -1, 0), s, 2);
	CHECKF(v != NULL, "%s", p2p_errmsg());
	if (!v)
		return;
	float *x = rvec(2 * 3 * s * s, 1);
	const float *y = p2p_vgg_forward(v, x, 2);
	double e = 0, peak = 0;
	for (int n = 0; n < 2 && y; n++)
		for (int c = 0; c < 256; c++)
			for (int oy = 0; oy < q; oy++)
				for (int ox = 0; ox < q; ox++) {
					double want = 0;
					for (int j = 0; c == 0 && j < 16; j++) {
						float r = x[(size_t)n * 3 * s * s + (4 * oy + j / 4) * s + 4 * ox + j % 4];
						want = fmax(want, ((r + 1) / 2 - 0.485) / 0.229);
					}
					double got = y[(((size_t)n * 256 + c) * q + oy) * q + ox];
					e = fmax(e, fabs(got - want));
					peak = fmax(peak, want);
				}
	CHECKF(y && e < 1e-5 && peak > 1, "relu3_3 channel 0: error %g", e);
	CHECK(p2p_vgg_flops(v) > 0);
	free(x);
	p2p_vgg_free(v);

	const char *path = vgg_file("missing.st", 7, 0);
	CHECKF(!p2p_vgg_load(be, path, s, 1) && strstr(p2p_errmsg(), "features.7.bias") &&
	       strstr(p2p_errmsg(), path), "%s", p2p_errmsg());
	path = vgg_file("shape.st", -1, 1);
	CHECKF(!p2p_vgg_load(be, path, s, 1) && strstr(p2p_errmsg(), "features.7.weight"),
	       "%s", p2p_errmsg());
	snprintf(tmpdir + strlen(tmpdir), 8, "/none");
	CHECK(!p2p_vgg_load(be, tmpdir, s, 1));
	tmpdir[strlen(tmpdir) - 5] = 0;
	CHECK(!p2p_vgg_random(be, 18, 1, 1) && strstr(p2p_errmsg(), "multiple of 4"));
	v = p2p_vgg_random(be, 8, 1, 1);
	float z[3 * 64] = {0};
	CHECK(v && p2p_vgg_backward(v, z, z) == -1 && !p2p_vgg_forward(v, z, 2));
	p2p_vgg_free(v);
}

/* ---- the PyTorch comparison (tests/torch-parity.bats) ----
 * test_models --parity DIR writes, for G, D and VGG16, the weights
 * (DIR/M.safetensors, with metadata) and an input, the gradient fed back,
 * and this code's output and gradients (DIR/M.io.safetensors: x, grad_out,
 * y, grad.x, grad.NAME); bench/parity.py runs the same in PyTorch. */

static int add_host(p2p_st_writer *w, const char *name, int ndim, const int *shape,
                    const float *data)
{
	int64_t s[4];
	for (int i = 0; i < ndim; i++)
		s[i] = shape[i];
	return p2p_st_add(w, name, ndim, s, data);
}

/* io file: x, grad_out, y, grad.x and the parameter gradients (if any) */
static int save_io(const char *path, const int *xs, const float *x, const int *ys,
                   const float *dy, const float *y, const float *dx, const p2p_params *ps)
{
	p2p_st_writer *w = p2p_st_writer_new();
	int rc = !w || add_host(w, "x", 4, xs, x) || add_host(w, "grad_out", 4, ys, dy) ||
	         add_host(w, "y", 4, ys, y) || add_host(w, "grad.x", 4, xs, dx);
	char (*names)[64] = ps ? calloc(ps->count, sizeof *names) : NULL;
	for (int i = 0; ps && !rc && i < ps->count; i++) {
		snprintf(names[i], sizeof names[i], "grad.%s", ps->name[i]);
		rc = add_host(w, names[i], ps->ndim[i], ps->shape[i], ps->grad + ps->offset[i]);
	}
	rc = rc || p2p_st_save(w, path);
	p2p_st_writer_free(w);
	free(names);
	return rc ? -1 : 0;
}

static int parity(const char *dir)
{
	char path[512];
	int n = 2;
	be->set_threads(1);
	/* G: 64x64 (six levels), ngf 16 (so that up.4 runs by Winograd),
	 * weights N(0, 0.2): larger than the trainer's 0.02, so the output uses
	 * the whole range of tanh */
	p2p_unet *g = unet(be, 64, 16, n, 11, 0.2f);
	int xs[4] = {n, 1, 64, 64}, ys[4] = {n, 3, 64, 64};
	float *x = rvec((size_t)n * 64 * 64, 1), *dy = rvec((size_t)n * 3 * 64 * 64, 1);
	float *dx = calloc((size_t)n * 64 * 64, sizeof *dx);
	p2p_params *ps = p2p_unet_params(g);
	p2p_params_zero_grad(ps);
	const float *y = p2p_unet_forward(g, x, n, 0, 0, 0);
	if (!y || p2p_unet_backward(g, dy, dx))
		return -1;
	p2p_st_writer *w = p2p_st_writer_new();
	snprintf(path, sizeof path, "%s/G.safetensors", dir);
	if (p2p_unet_meta_add(w, p2p_unet_config(g)) || p2p_st_add_params(w, ps, "", ps->data) ||
	    p2p_st_save(w, path))
		return -1;
	p2p_st_writer_free(w);
	snprintf(path, sizeof path, "%s/G.io.safetensors", dir);
	if (save_io(path, xs, x, ys, dy, y, dx, ps))
		return -1;
	free(x), free(dy), free(dx);
	p2p_unet_free(g);

	/* D: 64x64, ndf 8 */
	p2p_patchgan *d = patchgan(be, 64, 8, n, 12, 0.02f);
	int P = p2p_patchgan_out_size(d);
	int dxs[4] = {n, 4, 64, 64}, dys[4] = {n, 1, P, P};
	x = rvec((size_t)n * 4 * 64 * 64, 1), dy = rvec((size_t)n * P * P, 1);
	dx = calloc((size_t)n * 4 * 64 * 64, sizeof *dx);
	ps = p2p_patchgan_params(d);
	p2p_params_zero_grad(ps);
	y = p2p_patchgan_forward(d, x, n);
	if (!y || p2p_patchgan_backward(d, dy, dx, 1))
		return -1;
	w = p2p_st_writer_new();
	snprintf(path, sizeof path, "%s/D.safetensors", dir);
	p2p_patchgan_cfg dc = {64, 4, 8};
	if (p2p_patchgan_meta_add(w, &dc) || p2p_st_add_params(w, ps, "", ps->data) ||
	    p2p_st_save(w, path))
		return -1;
	p2p_st_writer_free(w);
	snprintf(path, sizeof path, "%s/D.io.safetensors", dir);
	if (save_io(path, dxs, x, dys, dy, y, dx, ps))
		return -1;
	free(x), free(dy), free(dx);
	p2p_patchgan_free(d);

	/* VGG16[:16]: 32x32, He-scaled random weights; input gradient only */
	p2p_vgg *v = p2p_vgg_random(be, 32, n, 13);
	vgg_he(v);
	int vxs[4] = {n, 3, 32, 32}, vys[4] = {n, 256, 8, 8};
	x = rvec((size_t)n * 3 * 32 * 32, 1), dy = rvec((size_t)n * 256 * 64, 1);
	dx = calloc((size_t)n * 3 * 32 * 32, sizeof *dx);
	y = p2p_vgg_forward(v, x, n);
	if (!y || p2p_vgg_backward(v, dy, dx))
		return -1;
	ps = p2p_vgg_params(v);
	w = p2p_st_writer_new();
	snprintf(path, sizeof path, "%s/VGG.safetensors", dir);
	if (p2p_st_add_params(w, ps, "", ps->data) || p2p_st_save(w, path))
		return -1;
	p2p_st_writer_free(w);
	snprintf(path, sizeof path, "%s/VGG.io.safetensors", dir);
	if (save_io(path, vxs, x, vys, dy, y, dx, NULL))
		return -1;
	free(x), free(dy), free(dx);
	p2p_vgg_free(v);
	return 0;
}

/* ---- Winograd: the models against themselves on direct convolutions ---- */

static double relmax(const float *got, const float *ref, size_t n)
{
	double e = 0, m = 1e-30;
	for (size_t i = 0; i < n; i++) {
		e = fmax(e, fabs(got[i] - ref[i]));
		m = fmax(m, fabs(ref[i]));
	}
	return e / m;
}

/* Each model's inputs come from a seed of its own: the backward passes
 * through ReLUs and max pools, where a forward value within rounding of a
 * tie would send the two gradients different ways; these seeds have none. */
static void test_winograd_models(void)
{
	p2p_backend direct = *cpu;
	direct.wino_in = NULL;
	direct.wino_out = NULL;
	CHECK(cpu->wino_in != NULL);
	/* D at 128: conv.3 gives 15x15, 25 tiles of 3x3 */
	int s = 128, n = 2;
	p2p_rng_seed(&rng, 11);
	p2p_patchgan *d[2] = {patchgan(cpu, s, 8, n, 5, 0.2f), patchgan(&direct, s, 8, n, 5, 0.2f)};
	CHECK(d[0] && d[1]);
	if (!d[0] || !d[1])
		return;
	size_t nx = (size_t)n * 4 * s * s, P = p2p_patchgan_out_size(d[0]), ny = n * P * P;
	float *x = rvec(nx, 1), *dy = rvec(ny, 1), *dx[2], *y[2], *gw[2];
	for (int v = 0; v < 2; v++) {
		p2p_params *ps = p2p_patchgan_params(d[v]);
		dx[v] = calloc(nx, sizeof(float));
		y[v] = malloc(ny * sizeof(float));
		p2p_params_zero_grad(ps);
		memcpy(y[v], p2p_patchgan_forward(d[v], x, n), ny * sizeof(float));
		CHECK(p2p_patchgan_backward(d[v], dy, dx[v], 1) == 0);
		gw[v] = ps->grad;
	}
	double ey = relmax(y[0], y[1], ny), ex = relmax(dx[0], dx[1], nx);
	double ew = relmax(gw[0], gw[1], p2p_patchgan_params(d[0])->total);
	CHECKF(ey < 2e-5 && ex < 2e-5 && ew < 2e-5, "D by Winograd: y %.1e dx %.1e dw %.1e", ey, ex, ew);
	printf("# D %d by Winograd against direct: y %.1e dx %.1e dw %.1e\n", s, ey, ex, ew);
	for (int v = 0; v < 2; v++)
		free(dx[v]), free(y[v]), p2p_patchgan_free(d[v]);
	free(x), free(dy);
	/* G at 64, ngf 16, batch 2: down.1 (16 -> 32 channels, 32x32 -> 16x16)
	 * and up.4 (32 -> 16 channels, 16x16 -> 32x32) by Winograd F(5x5, 2x2),
	 * which rounds to about 1e-5 of a layer's largest value, more after the
	 * InstanceNorm that follows (1e-4: PyTorch parity's limit); backward is
	 * direct, from the forward's activations */
	s = 64;
	p2p_rng_seed(&rng, 12);
	p2p_unet *u[2] = {unet(cpu, s, 16, n, 6, 0.2f), unet(&direct, s, 16, n, 6, 0.2f)};
	CHECK(u[0] && u[1]);
	if (!u[0] || !u[1])
		return;
	p2p_conv up4, down1;
	p2p_convt2d_init(&up4, n, 32, 16, 16, 16, 4, 2, 1);
	p2p_conv2d_init(&down1, n, 16, 32, 32, 32, 4, 2, 1);
	CHECK(p2p_conv_wino_ok(cpu, &up4) && !p2p_conv_wino_ok(&direct, &up4));
	CHECK(p2p_conv_wino_ok(cpu, &down1) && !p2p_conv_wino_ok(&direct, &down1));
	nx = (size_t)n * s * s, ny = (size_t)n * 3 * s * s;
	x = rvec(nx, 1), dy = rvec(ny, 1);
	for (int v = 0; v < 2; v++) {
		p2p_params *ps = p2p_unet_params(u[v]);
		dx[v] = calloc(nx, sizeof(float));
		y[v] = malloc(ny * sizeof(float));
		p2p_params_zero_grad(ps);
		memcpy(y[v], p2p_unet_forward(u[v], x, n, 0, 0, 0), ny * sizeof(float));
		CHECK(p2p_unet_backward(u[v], dy, dx[v]) == 0);
		gw[v] = ps->grad;
	}
	ey = relmax(y[0], y[1], ny), ex = relmax(dx[0], dx[1], nx);
	ew = relmax(gw[0], gw[1], p2p_unet_params(u[0])->total);
	CHECKF(ey < 1e-4 && ex < 1e-4 && ew < 1e-4, "G by Winograd: y %.1e dx %.1e dw %.1e", ey, ex,
	       ew);
	printf("# G %d by Winograd against direct: y %.1e dx %.1e dw %.1e\n", s, ey, ex, ew);
	/* new weights: taken up at the next forward, or, once they are said
	 * fixed, at the first forward after that */
	p2p_params *p0 = p2p_unet_params(u[0]), *p1 = p2p_unet_params(u[1]);
	for (size_t i = 0; i < p0->total; i++)
		p0->data[i] = p1->data[i] = p0->data[i] * 0.5f;
	memcpy(y[1], p2p_unet_forward(u[1], x, n, 0, 0, 0), ny * sizeof(float));
	ey = relmax(p2p_unet_forward(u[0], x, n, 0, 0, 0), y[1], ny);
	p2p_unet_weights_fixed(u[0], 1);
	double ef = relmax(p2p_unet_forward(u[0], x, n, 0, 0, 0), y[1], ny);
	double e2 = relmax(p2p_unet_forward(u[0], x, n, 0, 0, 0), y[1], ny);
	CHECKF(ey < 1e-4 && ef < 1e-4 && e2 < 1e-4, "G by Winograd after new weights: y %.1e, "
	       "fixed %.1e, again %.1e", ey, ef, e2);
	for (int v = 0; v < 2; v++)
		free(dx[v]), free(y[v]), p2p_unet_free(u[v]);
	free(x), free(dy);
	if (!big)
		return;
	/* VGG16 at 32: layers 2 to 7 at 32x32 and 16x16 by Winograd */
	s = 32;
	p2p_vgg *g[2] = {p2p_vgg_random(cpu, s, n, 4), p2p_vgg_random(&direct, s, n, 4)};
	CHECK(g[0] && g[1]);
	if (!g[0] || !g[1])
		return;
	vgg_he(g[0]), vgg_he(g[1]);
	p2p_rng_seed(&rng, 13);
	nx = (size_t)n * 3 * s * s, ny = (size_t)n * 256 * (s / 4) * (s / 4);
	x = rvec(nx, 1), dy = rvec(ny, 1);
	for (int v = 0; v < 2; v++) {
		dx[v] = calloc(nx, sizeof(float));
		y[v] = malloc(ny * sizeof(float));
		memcpy(y[v], p2p_vgg_forward(g[v], x, n), ny * sizeof(float));
		CHECK(p2p_vgg_backward(g[v], dy, dx[v]) == 0);
	}
	ey = relmax(y[0], y[1], ny), ex = relmax(dx[0], dx[1], nx);
	CHECKF(ey < 2e-5 && ex < 2e-5, "VGG16 by Winograd: y %.1e dx %.1e", ey, ex);
	printf("# VGG16 %d by Winograd against direct: y %.1e dx %.1e\n", s, ey, ex);
	/* weights set by hand after the first forward are taken up */
	vgg_he(g[1]);
	p0 = p2p_vgg_params(g[0]), p1 = p2p_vgg_params(g[1]);
	for (size_t i = 0; i < p0->total; i++)
		p0->data[i] = p1->data[i] = p0->data[i] * 0.5f;
	ey = relmax(p2p_vgg_forward(g[0], x, n), memcpy(y[1], p2p_vgg_forward(g[1], x, n),
	                                                 ny * sizeof(float)), ny);
	CHECKF(ey < 2e-5, "VGG16 by Winograd after new weights: y %.1e", ey);
	for (int v = 0; v < 2; v++)
		free(dx[v]), free(y[v]), p2p_vgg_free(g[v]);
	free(x), free(dy);
}

int main(int argc, char **argv)
{
	cpu = be = p2p_backend_get("cpu");
	frozen = *cpu;
	frozen.leaky_fwd = frozen_leaky;
	frozen.maxpool2_fwd = frozen_maxpool;
	big = getenv("VALGRIND") == NULL || !*getenv("VALGRIND");
	if (!big)
		be->set_threads(1);     /* libgomp's pool threads look leaked to valgrind */
	p2p_rng_seed(&rng, 42);
	if (argc == 3 && strcmp(argv[1], "--parity") == 0) {
		if (parity(argv[2]) != 0) {
			fprintf(stderr, "test_models: %s\n", p2p_errmsg());
			return 1;
		}
		return 0;
	}
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_models.XXXXXX");
	if (!mkdtemp(tmpdir))
		return 1;
	RUN(test_unet_gradients);
	RUN(test_unet_shapes);
	RUN(test_unet_dropout);
	RUN(test_unet_errors);
	RUN(test_unet_meta);
	RUN(test_patchgan_gradients);
	RUN(test_patchgan_shapes);
	RUN(test_patchgan_meta);
	RUN(test_vgg_gradients);
	RUN(test_vgg_known);
	RUN(test_winograd_models);
	free(branch);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", tmpdir);
	return CHECK_DONE();
}
