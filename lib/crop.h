/* The adaptive square crop around a cat face, and its rendering: crop, pad
 * where the square leaves the image, resize, encode as JPEG (libvips). */
#ifndef P2P_CROP_H
#define P2P_CROP_H

#include <stddef.h>

typedef struct {
	double expand;          /* margin added on each side, as a fraction of the side */
	double min_coverage;    /* fraction of the points the square must hold */
	double max_grow;        /* the square grows for coverage to at most this times its side */
} p2p_crop_opts;

#define P2P_CROP_DEFAULTS { 0.1, 0.9, 2.0 }

/* A square in source pixels: columns x0 .. x0+side-1, rows y0 .. y0+side-1. */
typedef struct {
	long x0, y0, side;
} p2p_crop_rect;

/* Largest square accepted, in source pixels, and largest output side. */
#define P2P_CROP_MAX_SIDE 65536L
#define P2P_CROP_MAX_SIZE 2048

/* The square for one face. Start from the face box (box = x1 y1 x2 y2; NULL:
 * the points' extent), square about its centre with the larger side, add
 * expand * side on each side; then, keeping the centre, grow it just enough
 * that min_coverage of the n points lie inside (borders included), but to at
 * most max_grow times that side. Rounded outwards to whole pixels.
 * -1 when the square would exceed P2P_CROP_MAX_SIDE (message names path). */
int p2p_crop_square(const double *xy, int n, const double *box, const p2p_crop_opts *o,
		    const char *path, p2p_crop_rect *r);
/* Fraction of the n points inside r (borders included); 1 when n is 0. */
double p2p_crop_coverage(const double *xy, int n, const p2p_crop_rect *r);
/* Points into the coordinates of the crop resized to size, pixel centres on
 * integers: (p - x0 + 0.5) * size / side - 0.5. */
void p2p_crop_map(const p2p_crop_rect *r, int size, const double *xy, int n, double *out);

enum { P2P_PAD_BLACK, P2P_PAD_EDGE };

/* An image opened for cropping: only its header is read until rendered. */
typedef struct p2p_crop_src p2p_crop_src;

/* Open path (any format libvips reads and trusts); *w, *h its size. NULL on error. */
p2p_crop_src *p2p_crop_open(const char *path, int *w, int *h);
/* Crop r (padding outside the image as pad says), resize to size x size with
 * a Lanczos-3 kernel (stretched when shrinking, so it does not alias; pixel
 * centres aligned: output pixel j is centred on input (j + 0.5) * side / size),
 * encode as JPEG of the given quality into a malloc'd buffer. A corrupt or
 * truncated file fails here. */
int p2p_crop_render(p2p_crop_src *src, const p2p_crop_rect *r, int size, int pad, int quality,
		    void **buf, size_t *n);
void p2p_crop_close(p2p_crop_src *src);

/* The resampling of p2p_crop_render: rows, an in x in RGB image (row
 * pointers) spanning span input pixels (in, or a little more after a whole
 * shrink), to an out x out RGB image in dst. -1 when out of memory. */
int p2p_crop_resample(unsigned char *const *rows, int in, double span, int out, unsigned char *dst);

#endif
