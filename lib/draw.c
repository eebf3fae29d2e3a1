#include "draw.h"
#include "err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int p2p_canvas_init(p2p_canvas *c, int w, int h)
{
	memset(c, 0, sizeof *c);
	if (w < 1 || h < 1)
		return p2p_err("canvas: bad size %dx%d", w, h);
	c->rgb = calloc((size_t)w * h * 3, sizeof(float));
	if (!c->rgb)
		return p2p_err("canvas: out of memory");
	c->w = w;
	c->h = h;
	return 0;
}

void p2p_canvas_free(p2p_canvas *c)
{
	free(c->rgb);
	free(c->acc);
	memset(c, 0, sizeof *c);
}

void p2p_canvas_to_image(const p2p_canvas *c, p2p_image *img)
{
	size_t n = (size_t)c->w * c->h * 3;
	for (size_t i = 0; i < n; i++) {
		float v = c->rgb[i] * 255.0f + 0.5f;
		v = v < 0 ? 0 : v > 255 ? 255 : v;
		img->px[i] = (unsigned char)v;
	}
}

/* ---- paths ---- */

void p2p_path_clear(p2p_path *p)
{
	p->n = 0;
}

void p2p_path_free(p2p_path *p)
{
	free(p->xy);
	memset(p, 0, sizeof *p);
}

void p2p_path_add(p2p_path *p, float x, float y)
{
	if (p->n == p->cap) {
		int cap = p->cap ? 2 * p->cap : 64;
		float *xy = realloc(p->xy, (size_t)cap * 2 * sizeof(float));
		if (!xy)
			abort();        /* a few KB: running out here is not recoverable */
		p->xy = xy;
		p->cap = cap;
	}
	p->xy[2 * p->n] = x;
	p->xy[2 * p->n + 1] = y;
	p->n++;
}

void p2p_path_ellipse(p2p_path *p, float cx, float cy, float rx, float ry,
                      float angle, int segments)
{
	if (segments <= 0) {
		/* chords no more than 0.1 px inside the true edge */
		float r = fmaxf(fabsf(rx), fabsf(ry));
		segments = r > 0.2f ? (int)ceilf((float)M_PI / acosf(1 - 0.1f / r)) : 8;
		segments = segments < 12 ? 12 : segments > 360 ? 360 : segments;
	}
	/* enlarge a little so the polygon has the ellipse's area */
	float step = 2 * (float)M_PI / segments, k = sqrtf(step / sinf(step));
	rx *= k;
	ry *= k;
	float ca = cosf(angle), sa = sinf(angle);
	for (int i = 0; i < segments; i++) {
		float t = 2 * (float)M_PI * i / segments;
		float ex = rx * cosf(t), ey = ry * sinf(t);
		p2p_path_add(p, cx + ca * ex - sa * ey, cy + sa * ex + ca * ey);
	}
}

void p2p_path_quad(p2p_path *p, float x0, float y0, float cx, float cy,
                   float ex, float ey, int n)
{
	if (p->n) {
		x0 = p->xy[2 * p->n - 2];
		y0 = p->xy[2 * p->n - 1];
	} else {
		p2p_path_add(p, x0, y0);
	}
	for (int i = 1; i <= n; i++) {
		float t = (float)i / n, u = 1 - t;
		p2p_path_add(p, u * u * x0 + 2 * u * t * cx + t * t * ex,
		             u * u * y0 + 2 * u * t * cy + t * t * ey);
	}
}

/* Half a circle of radius r around (x, y) from direction (nx, ny) turning
 * through pi, for the round ends of strokes. */
static void add_cap(p2p_path *out, float x, float y, float nx, float ny, float r)
{
	const int k = 8;
	for (int i = 1; i < k; i++) {
		float t = (float)M_PI * i / k, ct = cosf(t), st = sinf(t);
		/* rotate n by -t: from the left side, round the end, to the right */
		float dx = nx * ct + ny * st, dy = -nx * st + ny * ct;
		p2p_path_add(out, x + r * dx, y + r * dy);
	}
}

void p2p_path_stroke(p2p_path *out, const p2p_path *line, float w0, float w1, int round)
{
	int n = line->n;
	p2p_path_clear(out);
	if (n < 2)
		return;
	const float *q = line->xy;
	float total = 0;
	for (int i = 1; i < n; i++)
		total += hypotf(q[2 * i] - q[2 * i - 2], q[2 * i + 1] - q[2 * i - 1]);
	if (total <= 0)
		return;
	/* per vertex: unit normal (mitred between segments) and half width */
	float *nrm = malloc((size_t)n * 3 * sizeof(float));
	if (!nrm)
		abort();
	float run = 0;
	for (int i = 0; i < n; i++) {
		int a = i > 0 ? i - 1 : 0, b = i < n - 1 ? i + 1 : n - 1;
		float nx = 0, ny = 0;
		for (int s = a; s < b; s++) {       /* the one or two segments at i */
			float dx = q[2 * s + 2] - q[2 * s], dy = q[2 * s + 3] - q[2 * s + 1];
			float len = hypotf(dx, dy);
			if (len > 0) {
				nx += -dy / len;
				ny += dx / len;
			}
		}
		float len = hypotf(nx, ny);
		float scale = 1;
		if (len > 1e-6f) {
			nx /= len;
			ny /= len;
			if (b - a == 2) {       /* mitre: 1 / cos(half the turn), limited */
				float dx = q[2 * b] - q[2 * i], dy = q[2 * b + 1] - q[2 * i + 1];
				float l = hypotf(dx, dy);
				float c = l > 0 ? (nx * -dy + ny * dx) / l : 1;
				scale = c > 0.5f ? 1 / c : 2;
			}
		} else {
			nx = 0;
			ny = 1;
		}
		if (i > 0)
			run += hypotf(q[2 * i] - q[2 * i - 2], q[2 * i + 1] - q[2 * i - 1]);
		float w = w0 + (w1 - w0) * (run / total);
		nrm[3 * i] = nx * scale;
		nrm[3 * i + 1] = ny * scale;
		nrm[3 * i + 2] = 0.5f * w;
	}
	for (int i = 0; i < n; i++)
		p2p_path_add(out, q[2 * i] + nrm[3 * i] * nrm[3 * i + 2],
		             q[2 * i + 1] + nrm[3 * i + 1] * nrm[3 * i + 2]);
	if (round)
		add_cap(out, q[2 * n - 2], q[2 * n - 1], nrm[3 * n - 3], nrm[3 * n - 2],
		        nrm[3 * n - 1]);
	for (int i = n - 1; i >= 0; i--)
		p2p_path_add(out, q[2 * i] - nrm[3 * i] * nrm[3 * i + 2],
		             q[2 * i + 1] - nrm[3 * i + 1] * nrm[3 * i + 2]);
	if (round)
		add_cap(out, q[0], q[1], -nrm[0], -nrm[1], nrm[2]);
	free(nrm);
}

/* ---- affine transforms ---- */

p2p_affine p2p_affine_similarity(double s, double angle, double tx, double ty)
{
	double c = s * cos(angle), n = s * sin(angle);
	return (p2p_affine){ c, -n, tx, n, c, ty };
}

p2p_affine p2p_affine_invert(p2p_affine m)
{
	double det = m.a * m.e - m.b * m.d;
	if (det == 0)
		return (p2p_affine){ 0, 0, 0, 0, 0, 0 };
	double a = m.e / det, b = -m.b / det, d = -m.d / det, e = m.a / det;
	return (p2p_affine){ a, b, -(a * m.c + b * m.f), d, e, -(d * m.c + e * m.f) };
}

void p2p_affine_apply(const p2p_affine *m, double x, double y, double *ox, double *oy)
{
	*ox = m->a * x + m->b * y + m->c;
	*oy = m->d * x + m->e * y + m->f;
}

void p2p_path_affine(p2p_path *p, const p2p_affine *m)
{
	for (int i = 0; i < p->n; i++) {
		double x, y;
		p2p_affine_apply(m, p->xy[2 * i], p->xy[2 * i + 1], &x, &y);
		p->xy[2 * i] = (float)x;
		p->xy[2 * i + 1] = (float)y;
	}
}

/* ---- coverage by signed-area accumulation ----
 * Each edge adds, in every row it crosses, the change along the row of the
 * area it leaves to its right; a running sum along the row then gives each
 * pixel's exact coverage. Edges are clipped to the box first, x clamped to
 * its sides (coverage left of the box piles up in column 0). */

/* G(s) = integral from -inf to s of clamp(v, 0, 1) dv */
static inline float ramp_integral(float s)
{
	return s <= 0 ? 0 : s < 1 ? 0.5f * s * s : s - 0.5f;
}

static void add_line(float *acc, int stride, int rows, float x0, float y0,
                     float x1, float y1)
{
	if (y0 == y1)
		return;
	float dir = 1;
	if (y0 > y1) {
		float t = x0; x0 = x1; x1 = t;
		t = y0; y0 = y1; y1 = t;
		dir = -1;
	}
	float ys = y0 > 0 ? y0 : 0, ye = y1 < rows ? y1 : rows;
	if (ys >= ye)
		return;
	float dxdy = (x1 - x0) / (y1 - y0);
	for (int row = (int)ys; row < ye; row++) {
		float ya = ys > row ? ys : row, yb = ye < row + 1 ? ye : row + 1;
		float d = dir * (yb - ya);
		float xa = x0 + (ya - y0) * dxdy, xb = x0 + (yb - y0) * dxdy;
		float xl = xa < xb ? xa : xb, xr = xa < xb ? xb : xa;
		float *r = acc + (size_t)row * stride;
		int il = (int)xl, ir = (int)xr;
		float span = xr - xl, prev = 0;
		for (int i = il; i <= ir; i++) {
			float f;        /* mean over the piece of pixel i's area right of the edge */
			if (span < 1e-5f) {
				f = i + 1 - 0.5f * (xl + xr);
				f = f < 0 ? 0 : f > 1 ? 1 : f;
			} else {
				f = (ramp_integral(i + 1 - xl) - ramp_integral(i + 1 - xr)) / span;
			}
			r[i] += d * (f - prev);
			prev = f;
		}
		r[ir + 1] += d * (1 - prev);
	}
}

/* Split an edge where it crosses x = 0 and x = bw, clamp, accumulate. */
static void add_edge(float *acc, int stride, int rows, int bw, float x0, float y0,
                     float x1, float y1)
{
	float ts[4] = { 0, 0, 0, 1 };
	int k = 1;
	if (x0 != x1) {
		float t0 = (0 - x0) / (x1 - x0), t1 = (bw - x0) / (x1 - x0);
		if (t0 > t1) { float t = t0; t0 = t1; t1 = t; }
		if (t0 > 0 && t0 < 1) ts[k++] = t0;
		if (t1 > 0 && t1 < 1) ts[k++] = t1;
	}
	ts[k++] = 1;
	for (int j = 0; j + 1 < k; j++) {
		float ax = x0 + (x1 - x0) * ts[j], ay = y0 + (y1 - y0) * ts[j];
		float bx = x0 + (x1 - x0) * ts[j + 1], by = y0 + (y1 - y0) * ts[j + 1];
		ax = ax < 0 ? 0 : ax > bw ? bw : ax;
		bx = bx < 0 ? 0 : bx > bw ? bw : bx;
		add_line(acc, stride, rows, ax, ay, bx, by);
	}
}

void p2p_raster(p2p_canvas *c, const float *xy, int n, p2p_span_fn fn, void *ctx)
{
	if (n < 3)
		return;
	float minx = xy[0], maxx = xy[0], miny = xy[1], maxy = xy[1];
	for (int i = 0; i < n; i++) {
		float x = xy[2 * i], y = xy[2 * i + 1];
		if (!(x == x && y == y))
			return;         /* NaN: draw nothing rather than garbage */
		minx = x < minx ? x : minx;
		maxx = x > maxx ? x : maxx;
		miny = y < miny ? y : miny;
		maxy = y > maxy ? y : maxy;
	}
	if (maxx <= 0 || maxy <= 0 || minx >= c->w || miny >= c->h)
		return;
	int bx0 = minx > 0 ? (int)minx : 0, by0 = miny > 0 ? (int)miny : 0;
	int bx1 = maxx < c->w ? (int)ceilf(maxx) : c->w;
	int by1 = maxy < c->h ? (int)ceilf(maxy) : c->h;
	int bw = bx1 - bx0, bh = by1 - by0, stride = bw + 2;
	if (bw <= 0 || bh <= 0)
		return;
	size_t need = (size_t)stride * bh;
	if (need > c->acc_cap) {
		free(c->acc);
		c->acc = calloc(need, sizeof(float));
		if (!c->acc)
			abort();
		c->acc_cap = need;
	}
	for (int i = 0; i < n; i++) {
		int j = i + 1 < n ? i + 1 : 0;
		add_edge(c->acc, stride, bh, bw, xy[2 * i] - bx0, xy[2 * i + 1] - by0,
		         xy[2 * j] - bx0, xy[2 * j + 1] - by0);
	}
	for (int row = 0; row < bh; row++) {
		float *r = c->acc + (size_t)row * stride, s = 0;
		for (int i = 0; i < bw; i++) {
			s += r[i];
			float v = fabsf(s);
			r[i] = v > 1 ? 1 : v < 1e-4f ? 0 : v;
		}
		fn(ctx, by0 + row, bx0, bw, r);
		memset(r, 0, (size_t)stride * sizeof(float));  /* leave the scratch zeroed */
	}
}

/* ---- fills ---- */

struct fill_ctx {
	p2p_canvas *c;
	const float *rgb;
	float alpha;
	p2p_paint_fn paint;
	void *pctx;
	float *mask;
};

static void span_solid(void *vctx, int y, int x0, int n, const float *cov)
{
	struct fill_ctx *f = vctx;
	size_t base = (size_t)y * f->c->w + x0;
	float *px = f->c->rgb + 3 * base;
	const float *clip = f->c->clip ? f->c->clip + base : NULL;
	float r = f->rgb[0], g = f->rgb[1], b = f->rgb[2];
	for (int i = 0; i < n; i++, px += 3) {
		float a = cov[i] * f->alpha;
		if (clip)
			a *= clip[i];
		if (a <= 0)
			continue;
		px[0] += (r - px[0]) * a;
		px[1] += (g - px[1]) * a;
		px[2] += (b - px[2]) * a;
	}
}

static void span_paint(void *vctx, int y, int x0, int n, const float *cov)
{
	struct fill_ctx *f = vctx;
	size_t base = (size_t)y * f->c->w + x0;
	float *px = f->c->rgb + 3 * base;
	const float *clip = f->c->clip ? f->c->clip + base : NULL;
	for (int i = 0; i < n; i++, px += 3) {
		float a = cov[i] * f->alpha, col[3];
		if (clip)
			a *= clip[i];
		if (a <= 0)
			continue;
		f->paint(f->pctx, x0 + i, y, col);
		px[0] += (col[0] - px[0]) * a;
		px[1] += (col[1] - px[1]) * a;
		px[2] += (col[2] - px[2]) * a;
	}
}

static void span_mask(void *vctx, int y, int x0, int n, const float *cov)
{
	struct fill_ctx *f = vctx;
	float *m = f->mask + (size_t)y * f->c->w + x0;
	for (int i = 0; i < n; i++)
		m[i] += cov[i] * (1 - m[i]);
}

void p2p_fill(p2p_canvas *c, const p2p_path *p, const float rgb[3], float alpha)
{
	struct fill_ctx f = { .c = c, .rgb = rgb, .alpha = alpha };
	p2p_raster(c, p->xy, p->n, span_solid, &f);
}

void p2p_fill_paint(p2p_canvas *c, const p2p_path *p, p2p_paint_fn paint, void *ctx,
                    float alpha)
{
	struct fill_ctx f = { .c = c, .alpha = alpha, .paint = paint, .pctx = ctx };
	p2p_raster(c, p->xy, p->n, span_paint, &f);
}

void p2p_fill_mask(p2p_canvas *c, const p2p_path *p, float *mask)
{
	struct fill_ctx f = { .c = c, .mask = mask };
	p2p_raster(c, p->xy, p->n, span_mask, &f);
}

/* ---- value noise ---- */

void p2p_noise_init(p2p_noise *nz, p2p_rng *rng)
{
	int idx[256];
	for (int i = 0; i < 256; i++) {
		idx[i] = i;
		nz->val[i] = (float)p2p_rng_uniform(rng);
	}
	p2p_rng_shuffle(rng, idx, 256);
	for (int i = 0; i < 512; i++)
		nz->perm[i] = (uint8_t)idx[i & 255];
}

float p2p_noise_fbm(const p2p_noise *nz, float x, float y, int octaves, float gain)
{
	float sum = 0, amp = 1, norm = 0;
	for (int o = 0; o < octaves; o++) {
		/* shift each octave so lattice points do not line up */
		sum += amp * p2p_noise2(nz, x + 17.3f * o, y + 31.7f * o);
		norm += amp;
		amp *= gain;
		x *= 2;
		y *= 2;
	}
	return norm > 0 ? sum / norm : 0;
}
