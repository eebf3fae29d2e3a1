#include "augment.h"

#include <math.h>
#include <stddef.h>

p2p_augment p2p_augment_default(void)
{
	return (p2p_augment){ .flip_p = 0.5, .brightness = 0.05, .contrast = 0.05,
	                      .saturation = 0.05, .hue = 0.01 };
}

/* A factor uniform in [max(0, 1 - x), 1 + x], kept as a float: torchvision
 * draws it into a float32 tensor. */
static float factor(p2p_rng *r, double x)
{
	double lo = 1.0 - x > 0.0 ? 1.0 - x : 0.0;
	return (float)p2p_rng_range(r, lo, 1.0 + x);
}

void p2p_augment_sample(const p2p_augment *cfg, p2p_rng *r, p2p_augment_draw *d)
{
	d->flip = p2p_rng_uniform(r) < cfg->flip_p;
	for (int i = 0; i < 4; i++)
		d->order[i] = i;
	p2p_rng_shuffle(r, d->order, 4);
	d->on[P2P_JIT_BRIGHTNESS] = cfg->brightness > 0;
	d->on[P2P_JIT_CONTRAST] = cfg->contrast > 0;
	d->on[P2P_JIT_SATURATION] = cfg->saturation > 0;
	d->on[P2P_JIT_HUE] = cfg->hue > 0;
	/* draw all four even when off, so a setting never shifts the others */
	float fb = factor(r, cfg->brightness);
	float fc = factor(r, cfg->contrast);
	float fs = factor(r, cfg->saturation);
	float fh = (float)p2p_rng_range(r, -cfg->hue, cfg->hue);
	d->factor[P2P_JIT_BRIGHTNESS] = d->on[P2P_JIT_BRIGHTNESS] ? fb : 1.0f;
	d->factor[P2P_JIT_CONTRAST] = d->on[P2P_JIT_CONTRAST] ? fc : 1.0f;
	d->factor[P2P_JIT_SATURATION] = d->on[P2P_JIT_SATURATION] ? fs : 1.0f;
	d->factor[P2P_JIT_HUE] = d->on[P2P_JIT_HUE] ? fh : 0.0f;
}

void p2p_hflip(float *x, int c, int h, int w)
{
	for (long row = 0; row < (long)c * h; row++) {
		float *p = x + row * w;
		for (int i = 0, j = w - 1; i < j; i++, j--) {
			float t = p[i];
			p[i] = p[j];
			p[j] = t;
		}
	}
}

static inline float clamp01(float v)
{
	return v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
}

static inline float grey(float r, float g, float b)
{
	return 0.2989f * r + 0.587f * g + 0.114f * b;
}

/* torchvision's _blend: ratio * x + (1 - ratio) * y, clamped; 1 - ratio is
 * formed in double, as Python does, then used in float. */
static void blend_const(float *x, size_t n, float ratio, float y)
{
	float q = (float)(1.0 - (double)ratio);
	for (size_t i = 0; i < n; i++)
		x[i] = clamp01(ratio * x[i] + q * y);
}

static void saturation(float *rgb, size_t p, float ratio)
{
	float q = (float)(1.0 - (double)ratio);
	float *r = rgb, *g = rgb + p, *b = rgb + 2 * p;
	for (size_t i = 0; i < p; i++) {
		float l = grey(r[i], g[i], b[i]);
		r[i] = clamp01(ratio * r[i] + q * l);
		g[i] = clamp01(ratio * g[i] + q * l);
		b[i] = clamp01(ratio * b[i] + q * l);
	}
}

static void contrast(float *rgb, size_t p, float ratio)
{
	const float *r = rgb, *g = rgb + p, *b = rgb + 2 * p;
	double s = 0;
	for (size_t i = 0; i < p; i++)
		s += grey(r[i], g[i], b[i]);
	blend_const(rgb, 3 * p, ratio, (float)(s / (double)p));
}

/* torchvision's _rgb2hsv, a shift of h modulo 1, and _hsv2rgb, per pixel. */
static void hue(float *rgb, size_t p, float shift)
{
	float *rp = rgb, *gp = rgb + p, *bp = rgb + 2 * p;
	for (size_t i = 0; i < p; i++) {
		float r = rp[i], g = gp[i], b = bp[i];
		float maxc = fmaxf(r, fmaxf(g, b)), minc = fminf(r, fminf(g, b));
		int eq = maxc == minc;
		float cr = maxc - minc;
		float s = cr / (eq ? 1.0f : maxc);
		float div = eq ? 1.0f : cr;
		float rc = (maxc - r) / div, gc = (maxc - g) / div, bc = (maxc - b) / div;
		float h;
		if (maxc == r)
			h = bc - gc;
		else if (maxc == g)
			h = 2.0f + rc - bc;
		else
			h = 4.0f + gc - rc;
		h = fmodf(h / 6.0f + 1.0f, 1.0f);
		/* (h + shift) % 1.0 with the sign of the divisor, as torch.remainder */
		h = fmodf(h + shift, 1.0f);
		if (h < 0.0f)
			h += 1.0f;
		float v = maxc;
		float fi = floorf(h * 6.0f);
		float f = h * 6.0f - fi;
		int k = ((int)fi % 6 + 6) % 6;
		float pp = clamp01(v * (1.0f - s));
		float q = clamp01(v * (1.0f - s * f));
		float t = clamp01(v * (1.0f - s * (1.0f - f)));
		switch (k) {
		case 0: r = v; g = t; b = pp; break;
		case 1: r = q; g = v; b = pp; break;
		case 2: r = pp; g = v; b = t; break;
		case 3: r = pp; g = q; b = v; break;
		case 4: r = t; g = pp; b = v; break;
		default: r = v; g = pp; b = q; break;
		}
		rp[i] = r;
		gp[i] = g;
		bp[i] = b;
	}
}

void p2p_color_jitter(float *rgb, int h, int w, const p2p_augment_draw *d)
{
	size_t p = (size_t)h * w;
	for (int i = 0; i < 4; i++) {
		int k = d->order[i];
		if (!d->on[k])
			continue;
		float f = d->factor[k];
		switch (k) {
		case P2P_JIT_BRIGHTNESS: blend_const(rgb, 3 * p, f, 0.0f); break;
		case P2P_JIT_CONTRAST: contrast(rgb, p, f); break;
		case P2P_JIT_SATURATION: saturation(rgb, p, f); break;
		default: hue(rgb, p, f); break;
		}
	}
}

void p2p_augment_apply(const p2p_augment_draw *d, float *a, float *b, int s)
{
	if (d->flip) {
		p2p_hflip(a, 1, s, s);
		p2p_hflip(b, 3, s, s);
	}
	if (!d->on[0] && !d->on[1] && !d->on[2] && !d->on[3])
		return;
	size_t n = 3 * (size_t)s * s;
	for (size_t i = 0; i < n; i++)
		b[i] = (b[i] + 1.0f) * 0.5f;
	p2p_color_jitter(b, s, s, d);
	for (size_t i = 0; i < n; i++)
		b[i] = b[i] * 2.0f - 1.0f;
}
