/* The three networks of Pix2Pix over the layer API: the U-Net generator, the
 * PatchGAN discriminator and the frozen VGG16 features[:16] of the perceptual
 * loss. Each model owns its parameters (one p2p_params), its activations for a
 * batch of up to `batch` images, and its workspace; forward keeps what
 * backward needs, so backward must follow the forward it differentiates.
 *
 * Parameter names are the state_dict names of bench/torch_ref.py:
 *   G: down.I.weight/bias (I = 0 outermost .. k-1 innermost; Conv2d k4 s2 p1)
 *      up.I.weight/bias   (I = 0 innermost .. k-1 outermost; ConvTranspose2d k4 s2 p1)
 *   D: conv.I.weight/bias (I = 0..4; Conv2d k4 p1, strides 2,2,2,1,1)
 *   VGG16: features.N.weight/bias (torchvision's names, N in 0,2,5,7,10,12,14)
 * Weights normal(0, 0.02), biases 0 (p2p_params_init). */
#ifndef P2P_MODELS_H
#define P2P_MODELS_H

#include <stdint.h>

#include "backend.h"
#include "safetensors.h"
#include "tensor.h"

/* ---- U-Net generator ----
 * size S = 2^k (32..512), k downsamplings; down channels ngf * (1,2,4,8,8,...);
 * LeakyReLU 0.2 before every down conv but the first; InstanceNorm after every
 * down conv but the first and the innermost. Up: ReLU, ConvTranspose,
 * InstanceNorm (not the outermost), Dropout in the three innermost up blocks,
 * then concatenation with the matching down output; Tanh out. */
typedef struct {
	int size;           /* S */
	int in_ch, out_ch;  /* 1, 3 */
	int ngf;            /* 64 */
	float dropout;      /* 0.5 */
} p2p_unet_cfg;

typedef struct p2p_unet p2p_unet;

/* Default cfg for size S (1 -> 3, ngf 64, dropout 0.5). */
p2p_unet_cfg p2p_unet_default(int size);
/* NULL + p2p_err on a bad cfg (size not a power of two in range...) or no memory.
 * Parameters are allocated but not initialised (p2p_params_init or a load). */
p2p_unet *p2p_unet_new(const p2p_backend *be, const p2p_unet_cfg *cfg, int batch);
void p2p_unet_free(p2p_unet *g);
p2p_params *p2p_unet_params(p2p_unet *g);
/* fixed 1: the parameters will not change until the next call (generation
 * from loaded weights), so forwards make the Winograd weights of the up
 * convolutions once instead of every time; 0 (the default) undoes it. */
void p2p_unet_weights_fixed(p2p_unet *g, int fixed);
const p2p_unet_cfg *p2p_unet_config(const p2p_unet *g);
/* Parameters of cfg (0 on a bad cfg), without building the model. */
size_t p2p_unet_param_count(const p2p_unet_cfg *cfg);
/* Floating-point operations (2 * MACs) of the convolutions of one image's forward. */
size_t p2p_unet_flops(const p2p_unet *g);
/* y (n, out_ch, S, S) = G(x (n, in_ch, S, S)), n <= batch; x is copied, the
 * result is model-owned backend memory, valid until the next forward; NULL +
 * p2p_err on a bad n. Dropout is on when `dropout` is nonzero (and
 * cfg.dropout > 0): sample i's masks are a function of (seed, counter + i)
 * alone, so the same sample with the same counter gets the same masks in any
 * batch; advance counter by n (at least) between steps. */
const float *p2p_unet_forward(p2p_unet *g, const float *x, int n, int dropout,
                              uint64_t seed, uint64_t counter);
/* The same with dropout on and sample i's counter counters[i] (n of them):
 * samples whose counters are not consecutive (p2p-gen draws each file's
 * masks from its name) still run as one batch. */
const float *p2p_unet_forward_each(p2p_unet *g, const float *x, int n, uint64_t seed,
                                   const uint64_t *counters);
/* From dy (n, out_ch, S, S): parameter gradients += (into the params' grad),
 * and dx (n, in_ch, S, S) += when dx is not NULL. */
int p2p_unet_backward(p2p_unet *g, const float *dy, float *dx);

/* Architecture <-> safetensors metadata ("arch": "unet", "size", "in_ch",
 * "out_ch", "ngf", "dropout", "norm": "instance"). meta_read: -1 + p2p_err
 * naming the file when a key is missing or invalid, or "arch" is not "unet". */
int p2p_unet_meta_add(p2p_st_writer *w, const p2p_unet_cfg *cfg);
int p2p_unet_meta_read(const p2p_st *st, const char *path, p2p_unet_cfg *cfg);

/* ---- PatchGAN discriminator ----
 * in_ch (4: heatmap | RGB) -> ndf, 2ndf, 4ndf, 8ndf (k4 p1, strides 2,2,2,1;
 * InstanceNorm but the first; LeakyReLU 0.2) -> 1 (k4 s1 p1), no sigmoid:
 * 30x30 patches at 256, in general (S/8 - 2). */
typedef struct {
	int size, in_ch, ndf;
} p2p_patchgan_cfg;

typedef struct p2p_patchgan p2p_patchgan;

p2p_patchgan_cfg p2p_patchgan_default(int size);
p2p_patchgan *p2p_patchgan_new(const p2p_backend *be, const p2p_patchgan_cfg *cfg, int batch);
void p2p_patchgan_free(p2p_patchgan *d);
p2p_params *p2p_patchgan_params(p2p_patchgan *d);
int p2p_patchgan_out_size(const p2p_patchgan *d);     /* P: output is (n, 1, P, P) */
size_t p2p_patchgan_param_count(const p2p_patchgan_cfg *cfg);   /* 0 on a bad cfg */
size_t p2p_patchgan_flops(const p2p_patchgan *d);     /* per image, forward */
/* y (n, 1, P, P) = D(x (n, in_ch, S, S)), n <= batch; x is copied; y is
 * model-owned, valid until the next forward. */
const float *p2p_patchgan_forward(p2p_patchgan *d, const float *x, int n);
/* From dy (n, 1, P, P): parameter gradients += only when param_grads is
 * nonzero (the G step needs dx alone), dx += when dx is not NULL. */
int p2p_patchgan_backward(p2p_patchgan *d, const float *dy, float *dx, int param_grads);
/* Metadata keys of their own ("d_arch": "patchgan", "d_size", "d_in_ch",
 * "ndf", "d_norm": "instance"), so G and D can share one checkpoint. */
int p2p_patchgan_meta_add(p2p_st_writer *w, const p2p_patchgan_cfg *cfg);
int p2p_patchgan_meta_read(const p2p_st *st, const char *path, p2p_patchgan_cfg *cfg);

/* ---- VGG16 features[:16] (to relu3_3), frozen ----
 * Input (n, 3, S, S) in [-1, 1]; the model maps it to [0, 1] and applies
 * ImageNet's mean/std itself. Output (n, 256, S/4, S/4). */
typedef struct p2p_vgg p2p_vgg;

/* Weights from a safetensors file with torchvision's names (other tensors in
 * the file are ignored); S a multiple of 4; NULL + p2p_err. */
p2p_vgg *p2p_vgg_load(const p2p_backend *be, const char *path, int size, int batch);
/* Random weights (normal(0, 0.02), seeded) for tests and benchmarks. */
p2p_vgg *p2p_vgg_random(const p2p_backend *be, int size, int batch, uint64_t seed);
void p2p_vgg_free(p2p_vgg *v);
/* The frozen weights (their grad, m, v are unused). Whoever may change them
 * gets them here: the next forward makes its Winograd layers' weights anew. */
p2p_params *p2p_vgg_params(p2p_vgg *v);
size_t p2p_vgg_flops(const p2p_vgg *v);               /* per image, forward */
/* feat (n, 256, S/4, S/4); model-owned, valid until the next forward. */
const float *p2p_vgg_forward(p2p_vgg *v, const float *x, int n);
/* dx (n, 3, S, S) += from dfeat (n, 256, S/4, S/4); no parameter gradients. */
int p2p_vgg_backward(p2p_vgg *v, const float *dfeat, float *dx);

#endif
