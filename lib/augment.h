/* Train-time augmentation of one (A, B) sample: a horizontal flip of both
 * (synchronised) and torchvision's ColorJitter on B alone.
 *
 * ColorJitter follows torchvision's tensor semantics: brightness, contrast
 * and saturation factors uniform in [max(0, 1 - x), 1 + x], hue in [-h, h];
 * the four adjustments in a random order (a permutation of the four); each
 * a blend clamped to [0, 1]: brightness with black, contrast with the mean
 * of the greyscale image, saturation with the greyscale image (greyscale =
 * .2989 R + .587 G + .114 B); hue a shift of H in HSV, modulo 1.
 *
 * All randomness comes from the caller's stream, one per sample (e.g.
 * p2p_rng_seed2(seed, epoch * n + position)), so the result depends on
 * neither the batch split nor the thread count. */
#ifndef P2P_AUGMENT_H
#define P2P_AUGMENT_H

#include "rng.h"

typedef struct {
	double flip_p;                  /* .5 */
	double brightness, contrast, saturation, hue;   /* .05 .05 .05 .01; 0 = off */
} p2p_augment;

enum { P2P_JIT_BRIGHTNESS, P2P_JIT_CONTRAST, P2P_JIT_SATURATION, P2P_JIT_HUE };

/* What one sample draws. */
typedef struct {
	int flip;
	int order[4];       /* P2P_JIT_* in the order applied */
	int on[4];          /* by P2P_JIT_*: that part's setting is not 0 */
	float factor[4];    /* by P2P_JIT_*: 1 (0 for hue) when off */
} p2p_augment_draw;

p2p_augment p2p_augment_default(void);   /* the seed's settings */

/* Draw in a fixed sequence, whatever is turned off: the flip, the order
 * (Fisher-Yates), then brightness, contrast, saturation, hue. */
void p2p_augment_sample(const p2p_augment *cfg, p2p_rng *r, p2p_augment_draw *d);

/* Mirror x (c, h, w) left to right, in place. */
void p2p_hflip(float *x, int c, int h, int w);

/* ColorJitter with the drawn factors on rgb (3, h, w) in [0, 1], in place;
 * parts that are off are skipped, as torchvision skips a None setting. */
void p2p_color_jitter(float *rgb, int h, int w, const p2p_augment_draw *d);

/* The two together on a sample in [-1, 1]: a (1, s, s), b (3, s, s). */
void p2p_augment_apply(const p2p_augment_draw *d, float *a, float *b, int s);

#endif
