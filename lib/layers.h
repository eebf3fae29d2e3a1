/* Layers as forward/backward pairs over caller-owned buffers.
 *
 * Every function takes the backend first and its dimensions as arguments,
 * opens with a shape comment, and touches memory only through the backend.
 * Backward ACCUMULATES into gradient buffers (dx, dw, db): zero them once a
 * step. A NULL gradient pointer skips that gradient (a frozen VGG16 needs dx
 * but not dw; the first layer needs no dx). Buffers of forward and backward
 * must not alias unless a comment says so. */
#ifndef P2P_LAYERS_H
#define P2P_LAYERS_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

/* ---- convolutions ---- */

/* Geometry of one convolution over a batch. Conv2d: x (n, cin, h, w),
 * weight (cout, cin, k, k), bias (cout), y (n, cout, oh, ow) with
 * oh = (h + 2 pad - k) / stride + 1. ConvTranspose2d: x (n, cin, h, w),
 * weight (cin, cout, k, k) (PyTorch's layouts), bias (cout),
 * y (n, cout, oh, ow) with oh = (h - 1) stride - 2 pad + k. */
typedef struct {
	int n, cin, h, w;
	int cout, k, stride, pad;
	int oh, ow;
	int transposed;
} p2p_conv;

/* Fill g; -1 + p2p_err if a size is not positive or the output is empty. */
int p2p_conv2d_init(p2p_conv *g, int n, int cin, int h, int w,
                    int cout, int k, int stride, int pad);
int p2p_convt2d_init(p2p_conv *g, int n, int cin, int h, int w,
                     int cout, int k, int stride, int pad);
/* Workspace (floats) that forward and backward want for g: im2col columns
 * and a transposed copy for a chunk of images processed by one GEMM (the
 * whole batch when the spatial size is small). One buffer of the maximum
 * over a model's layers serves all of them; a smaller one (at least
 * p2p_conv_ws_min) works in more, smaller GEMMs. */
size_t p2p_conv_ws(const p2p_conv *g);
size_t p2p_conv_ws_min(const p2p_conv *g);   /* one image at a time */
size_t p2p_conv_flops(const p2p_conv *g);    /* 2 * MACs of the forward GEMMs */

/* Conv2d. y (n, cout, oh, ow) = conv(x (n, cin, h, w), w (cout, cin, k, k)) + b (cout).
 * b may be NULL. -1 + p2p_err if ws_n < p2p_conv_ws_min(g). */
int p2p_conv2d_forward(const p2p_backend *be, const p2p_conv *g, float *y,
                       const float *x, const float *w, const float *b,
                       float *ws, size_t ws_n);
/* dx (n, cin, h, w) += ..., dw (cout, cin, k, k) += ..., db (cout) += ...
 * from dy (n, cout, oh, ow), the input x and the weight w. */
int p2p_conv2d_backward(const p2p_backend *be, const p2p_conv *g,
                        float *dx, float *dw, float *db, const float *dy,
                        const float *x, const float *w, float *ws, size_t ws_n);

/* ConvTranspose2d. y (n, cout, oh, ow) = convT(x (n, cin, h, w), w (cin, cout, k, k)) + b. */
int p2p_convt2d_forward(const p2p_backend *be, const p2p_conv *g, float *y,
                        const float *x, const float *w, const float *b,
                        float *ws, size_t ws_n);
/* dx (n, cin, h, w) += ..., dw (cin, cout, k, k) += ..., db (cout) += ... */
int p2p_convt2d_backward(const p2p_backend *be, const p2p_conv *g,
                         float *dx, float *dw, float *db, const float *dy,
                         const float *x, const float *w, float *ws, size_t ws_n);

/* Winograd F(4x4, 3x3) and F(3x3, 4x4) for stride-1 Conv2d with a 3x3 or
 * 4x4 kernel (pad < k), and F(5x5, 2x2) for Conv2d and ConvTranspose2d 4x4
 * stride 2 pad 1 (as a 2x2 convolution over the input's space-to-depth, and
 * as four 2x2 phases), where the backend has the transforms (wino_in,
 * wino_out, wino_out_up: the CPU's): a quarter of the direct convolution's
 * multiplications (0.36 for the stride-2 ones), the weights transformed
 * beforehand. Agrees with the direct forward to about 1e-5 of the output's
 * scale. ok: 1 when g and be allow it and it pays (16 tiles an image or
 * more, and 16 channels each side for stride 2; never a function of the
 * batch; the forward takes any geometry be allows). ws: the workspace it
 * wants (less works, on fewer threads, down to one chunk's). */
int p2p_conv_wino_ok(const p2p_backend *be, const p2p_conv *g);
size_t p2p_conv_wino_ws(const p2p_conv *g);
/* y (n, cout, oh, ow) = conv(x, w) + b (b may be NULL) with u made from w
 * by be->wino_weights (P2P_WINO_CONV; P2P_WINO_DOWN for stride 2;
 * P2P_WINO_GRAD: the input gradient's, for the geometry of
 * p2p_conv_wino_input_grad). -1 + p2p_err if be cannot or ws_n is too
 * small. */
int p2p_conv2d_forward_wino(const p2p_backend *be, const p2p_conv *g, float *y,
                            const float *x, const float *u, const float *b,
                            float *ws, size_t ws_n);
/* y (n, cout, oh, ow) = convT(x, w) + b with u made from w by
 * be->wino_weights(w, cout, cin, 4, P2P_WINO_UP, u): 36 * 4 cout * cin floats. */
int p2p_convt2d_forward_wino(const p2p_backend *be, const p2p_conv *g, float *y,
                             const float *x, const float *u, const float *b,
                             float *ws, size_t ws_n);
/* t: the convolution whose forward, with g's transposed u, takes dy (n,
 * cout, oh, ow) to dx (n, cin, h, w): cin and cout swapped, pad k - 1 - pad.
 * The same ws serves both. */
int p2p_conv_wino_input_grad(p2p_conv *t, const p2p_conv *g);

/* ---- normalisation ---- */

#define P2P_IN_EPS 1e-5f

/* InstanceNorm2d without affine. y (n, c, hw) from x (n, c, hw); mean, rstd
 * (n*c) are kept for backward. y may be x. */
void p2p_instnorm_forward(const p2p_backend *be, float *y, float *mean, float *rstd,
                          const float *x, int n, int c, long hw);
/* dx (n, c, hw) += ... from dy, the forward output y and rstd. */
void p2p_instnorm_backward(const p2p_backend *be, float *dx, const float *dy,
                           const float *y, const float *rstd, int n, int c, long hw);

/* ---- activations (count elements; y may be x; backward needs y) ---- */

void p2p_leaky_forward(const p2p_backend *be, float *y, const float *x, size_t count, float slope);
void p2p_leaky_backward(const p2p_backend *be, float *dx, const float *dy, const float *y,
                        size_t count, float slope);
void p2p_relu_forward(const p2p_backend *be, float *y, const float *x, size_t count);
void p2p_relu_backward(const p2p_backend *be, float *dx, const float *dy, const float *y,
                       size_t count);
void p2p_tanh_forward(const p2p_backend *be, float *y, const float *x, size_t count);
void p2p_tanh_backward(const p2p_backend *be, float *dx, const float *dy, const float *y,
                       size_t count);
/* Dropout with probability p; the mask is a function of (seed, counter + i),
 * so backward with the same arguments reproduces it. Give each dropout layer
 * and step its own counter range (e.g. counter = step * total + offset). */
void p2p_dropout_forward(const p2p_backend *be, float *y, const float *x, size_t count,
                         float p, uint64_t seed, uint64_t counter);
void p2p_dropout_backward(const p2p_backend *be, float *dx, const float *dy, size_t count,
                          float p, uint64_t seed, uint64_t counter);

/* ---- pooling, concatenation ---- */

/* MaxPool2d(2): y (n, c, h/2, w/2) from x (n, c, h, w). */
void p2p_maxpool2_forward(const p2p_backend *be, float *y, const float *x,
                          int n, int c, int h, int w);
/* dx (n, c, h, w) += ... from dy (n, c, h/2, w/2) and the input x. */
void p2p_maxpool2_backward(const p2p_backend *be, float *dx, const float *dy,
                           const float *x, int n, int c, int h, int w);
/* y (n, ca + cb, hw) = [a (n, ca, hw) | b (n, cb, hw)] along channels. */
void p2p_concat_forward(const p2p_backend *be, float *y, const float *a, const float *b,
                        int n, int ca, int cb, long hw);
/* da (n, ca, hw) += dy[:, :ca], db (n, cb, hw) += dy[:, ca:]; either may be NULL. */
void p2p_concat_backward(const p2p_backend *be, float *da, float *db, const float *dy,
                         int n, int ca, int cb, long hw);

/* ---- losses: mean over count elements, value returned; when da is not
 * NULL, da += gscale * d(loss)/da (gscale carries the loss weight) ---- */

/* LSGAN: mean((a - target)^2), target 1 for real, 0 for fake. */
double p2p_mse_const_loss(const p2p_backend *be, const float *a, size_t count,
                          float target, float *da, float gscale);
/* mean((a - b)^2): the perceptual loss on features. */
double p2p_mse_loss(const p2p_backend *be, const float *a, const float *b, size_t count,
                    float *da, float gscale);
/* mean|a - b|. */
double p2p_l1_loss(const p2p_backend *be, const float *a, const float *b, size_t count,
                   float *da, float gscale);

#endif
