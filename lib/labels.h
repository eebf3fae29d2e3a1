/* Face labels: the landmarks and face box of one image, read from a CatFLW
 * label file (JSON: "labels", 48 [x, y] pairs, and "bounding_boxes",
 * [x1, y1, x2, y2]) or from the classic CAT dataset's NAME.jpg.cat (the count
 * 9, then 9 x y pairs, no box). The readers take untrusted files: sizes are
 * bounded, every value must be a finite number, and anything unexpected is an
 * error naming the file, never a guess. */
#ifndef P2P_LABELS_H
#define P2P_LABELS_H

#include <stddef.h>

#define P2P_CATFLW_POINTS 48
#define P2P_CAT_POINTS 9
#define P2P_LABELS_MAX_POINTS P2P_CATFLW_POINTS
/* Largest label file read: CatFLW files are about 2 KiB. */
#define P2P_LABELS_MAX_BYTES (1 << 20)

typedef struct {
	int n;                                  /* points: 48 (CatFLW) or 9 (CAT) */
	double xy[2 * P2P_LABELS_MAX_POINTS];   /* x0 y0 x1 y1 ..., pixels */
	int has_box;                            /* 0 for .cat files */
	double box[4];                          /* x1 y1 x2 y2, x1 < x2, y1 < y2 */
} p2p_labels;

/* Parse in-memory text; name is used in messages ("NAME: what is wrong",
 * "NAME:LINE: not valid JSON"). 0 or -1. */
int p2p_labels_parse_catflw(const char *buf, size_t n, const char *name, p2p_labels *l);
int p2p_labels_parse_cat(const char *buf, size_t n, const char *name, p2p_labels *l);
/* Read a file: ".cat" names are CAT files, anything else CatFLW JSON. */
int p2p_labels_read(const char *path, p2p_labels *l);

/* The extent of the points: x1 y1 x2 y2. */
void p2p_labels_extent(const p2p_labels *l, double ext[4]);
/* Reject points or a box lying far outside a w x h image: more than half the
 * image's width (height) beyond its left or right (top or bottom) edge.
 * Faces partly outside the frame are fine; coordinates that cannot belong to
 * this image are not. path names the label file in the message. */
int p2p_labels_check_bounds(const p2p_labels *l, const char *path, int w, int h);

#endif
