/* Anti-aliased 2-D drawing on a float RGB canvas: filled polygons with exact
 * area coverage (ellipses, tapered strokes and curves are built as polygons),
 * affine transforms, and value noise for textures. Written for catflw-synth;
 * nothing here allocates per pixel or keeps global state, so one canvas per
 * thread draws in parallel. */
#ifndef P2P_DRAW_H
#define P2P_DRAW_H

#include <stddef.h>
#include <stdint.h>

#include "image.h"
#include "rng.h"

/* RGB in [0, 1], row-major, interleaved. clip, when set, is a w*h coverage
 * mask that scales every fill (draw inside a shape drawn before). */
typedef struct {
	int w, h;
	float *rgb;
	const float *clip;
	float *acc;         /* scratch: signed-area accumulation, one bounding box */
	size_t acc_cap;
} p2p_canvas;

int p2p_canvas_init(p2p_canvas *c, int w, int h);   /* black; 0 or -1 */
void p2p_canvas_free(p2p_canvas *c);
/* Round to 8 bits into img (allocated by the caller as w x h x 3). */
void p2p_canvas_to_image(const p2p_canvas *c, p2p_image *img);

/* A growable list of points: a closed polygon or an open polyline. */
typedef struct {
	float *xy;
	int n, cap;
} p2p_path;

void p2p_path_clear(p2p_path *p);
void p2p_path_free(p2p_path *p);
void p2p_path_add(p2p_path *p, float x, float y);
/* Points of a rotated ellipse (angle in radians), enough for a smooth edge at
 * radii measured in pixels (use the radii after any scaling). */
void p2p_path_ellipse(p2p_path *p, float cx, float cy, float rx, float ry,
                      float angle, int segments);
/* A quadratic Bezier from the path's last point (or p0 when empty) through
 * control c to end e, in n steps. */
void p2p_path_quad(p2p_path *p, float x0, float y0, float cx, float cy,
                   float ex, float ey, int n);
/* The outline of a polyline drawn with a width that runs linearly from w0 to
 * w1 along it (a tapered stroke), with round ends when round is set. */
void p2p_path_stroke(p2p_path *out, const p2p_path *line, float w0, float w1, int round);

/* x' = a x + b y + c, y' = d x + e y + f */
typedef struct { double a, b, c, d, e, f; } p2p_affine;

/* Scale s, rotate by angle (radians, y down: clockwise on screen), then
 * translate to (tx, ty). */
p2p_affine p2p_affine_similarity(double s, double angle, double tx, double ty);
p2p_affine p2p_affine_invert(p2p_affine m);
void p2p_affine_apply(const p2p_affine *m, double x, double y, double *ox, double *oy);
void p2p_path_affine(p2p_path *p, const p2p_affine *m);

/* Coverage of a polygon (any winding, self-overlap counts once; several
 * contours in one path are not supported: call once per contour) handed to
 * fn row by row: cov[i] is the coverage of pixel (x0 + i, y), i < n. */
typedef void (*p2p_span_fn)(void *ctx, int y, int x0, int n, const float *cov);
void p2p_raster(p2p_canvas *c, const float *xy, int n, p2p_span_fn fn, void *ctx);

/* Fill with one colour at opacity alpha (times the clip mask, if any). */
void p2p_fill(p2p_canvas *c, const p2p_path *p, const float rgb[3], float alpha);
/* Fill with a colour per pixel: paint writes the colour of pixel (x, y). */
typedef void (*p2p_paint_fn)(void *ctx, int x, int y, float rgb[3]);
void p2p_fill_paint(p2p_canvas *c, const p2p_path *p, p2p_paint_fn paint, void *ctx,
                    float alpha);
/* Add the polygon's coverage to a w*h mask (union: m + cov (1 - m)). */
void p2p_fill_mask(p2p_canvas *c, const p2p_path *p, float *mask);

/* Smooth value noise over a 256-periodic lattice, seeded from rng. */
typedef struct {
	uint8_t perm[512];
	float val[256];
} p2p_noise;

void p2p_noise_init(p2p_noise *nz, p2p_rng *rng);

/* [0, 1]; inline, as textures call it for every pixel */
static inline float p2p_noise2(const p2p_noise *nz, float x, float y)
{
	float fx = __builtin_floorf(x), fy = __builtin_floorf(y);
	int ix = (int)fx & 255, iy = (int)fy & 255, ix1 = (ix + 1) & 255, iy1 = (iy + 1) & 255;
	float tx = x - fx, ty = y - fy;
	tx = tx * tx * (3 - 2 * tx);
	ty = ty * ty * (3 - 2 * ty);
	const uint8_t *p = nz->perm;
	float a = nz->val[p[p[ix] + iy]], b = nz->val[p[p[ix1] + iy]];
	float c = nz->val[p[p[ix] + iy1]], d = nz->val[p[p[ix1] + iy1]];
	float top = a + (b - a) * tx, bot = c + (d - c) * tx;
	return top + (bot - top) * ty;
}

/* Sum of octaves (frequency x2, amplitude x gain each), normalised to [0, 1]. */
float p2p_noise_fbm(const p2p_noise *nz, float x, float y, int octaves, float gain);

#endif
