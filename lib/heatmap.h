/* Gaussian landmark heatmaps, the network's input (see DESIGN.md, "Heatmap").
 *
 * Pixel-centre convention: the pixel in row r, column c has its centre at
 * (x, y) = (c, r), the integer grid of NumPy's meshgrid and OpenCV. A landmark
 * at (10, 20) therefore lights row 20, column 10 with 255. */
#ifndef P2P_HEATMAP_H
#define P2P_HEATMAP_H

/* Beyond this many sigmas 255 * exp(-d^2 / 2 sigma^2) < 0.5 and rounds to 0
 * (the bound is sqrt(2 ln 510) = 3.53), so rendering stops there: the result
 * is the exact formula, rounded, at every pixel. */
#define P2P_HEATMAP_REACH 4.0

/* out is (h, w) uint8, row-major:
 *   out[r][c] = round(255 * max_k exp(-((c - x_k)^2 + (r - y_k)^2) / (2 sigma^2)))
 * over the n points xy = x0, y0, x1, y1, ... (pixels; any finite values,
 * points outside the image light only the pixels within reach).
 * sigma > 0. Returns 0, or -1 with a message for bad arguments. */
int p2p_heatmap_render(unsigned char *out, int h, int w, const float *xy, int n,
                       double sigma);

#endif
