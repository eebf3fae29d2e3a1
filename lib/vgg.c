/* VGG16 features[:16], frozen: the perceptual loss's feature extractor.
 * torchvision's layer indices: 3x3 pad-1 convolutions at 0, 2 | pool 4 |
 * 5, 7 | pool 9 | 10, 12, 14, each followed by ReLU; the output is relu3_3,
 * (n, 256, S/4, S/4). The input, in [-1, 1], is mapped to [0, 1] and
 * normalised with ImageNet's mean and std by one per-channel affine map.
 *
 * Buffers for `batch` images, allocated once: the normalised input, each
 * conv's output with ReLU in place (ReLU backward needs it; the next conv
 * reads it) and the two pool outputs. The weights are frozen, so backward
 * computes input gradients only and needs no conv inputs beyond these.
 *
 * Where the backend has Winograd's transforms (the CPU), layers 2 to 14 run
 * as Winograd F(4x4, 3x3) convolutions, forward and (with the weights
 * turned 180 degrees and transposed) backward, wherever that pays (images
 * of 16x16 and more): a quarter of the multiplications. Their transformed
 * weights are made from the parameters (by the backend, no transfer) at the
 * first forward, and again at the first forward after p2p_vgg_params,
 * through which the parameters may be changed. */
#include "models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "layers.h"

#define NC 7

static const int layer_idx[NC] = {0, 2, 5, 7, 10, 12, 14};
static const int layer_out[NC] = {64, 64, 128, 128, 256, 256, 256};
static const int pool_after[NC] = {0, 1, 0, 1, 0, 0, 0};   /* a 2x2 max-pool follows */

static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f};
static const float imagenet_std[3] = {0.229f, 0.224f, 0.225f};

struct p2p_vgg {
	const p2p_backend *be;
	int size, batch;
	p2p_params ps;
	p2p_conv conv[NC];
	float *w[NC], *b[NC];
	float *affine;              /* scale (3) then shift (3) */
	float *xn, *a[NC], *pool[NC];
	float *sa, *sb, *ws;
	size_t ws_n;
	int n;
	int wino, stale;            /* some layers by Winograd (u[i] set); u to be made */
	float *u[NC], *ut[NC];      /* their transformed weights: forward, input gradient */
	float *bufs[4 * NC + 8];
	int nbufs;
};

static float *buf(p2p_vgg *v, size_t n)
{
	float *p = v->be->alloc(n);
	if (p)
		v->bufs[v->nbufs++] = p;
	return p;
}

static size_t out_count(const p2p_conv *g)
{
	return (size_t)g->n * g->cout * g->oh * g->ow;
}

static p2p_vgg *vgg_new(const p2p_backend *be, int size, int batch)
{
	if (size < 4 || size > 4096 || size % 4) {
		p2p_err("vgg16: size %d: a multiple of 4 is needed", size);
		return NULL;
	}
	if (batch < 1) {
		p2p_err("vgg16: batch %d", batch);
		return NULL;
	}
	p2p_vgg *v = calloc(1, sizeof *v);
	if (!v) {
		p2p_err("vgg16: out of memory");
		return NULL;
	}
	v->be = be;
	v->size = size;
	v->batch = batch;
	p2p_param_spec spec[2 * NC];
	char names[2 * NC][24];
	int cin = 3;
	for (int i = 0; i < NC; i++) {
		snprintf(names[2 * i], sizeof names[0], "features.%d.weight", layer_idx[i]);
		snprintf(names[2 * i + 1], sizeof names[0], "features.%d.bias", layer_idx[i]);
		spec[2 * i] = (p2p_param_spec){names[2 * i], 4, {layer_out[i], cin, 3, 3},
		                               P2P_INIT_NORMAL};
		spec[2 * i + 1] = (p2p_param_spec){names[2 * i + 1], 1, {layer_out[i], 1, 1, 1},
		                                   P2P_INIT_ZERO};
		cin = layer_out[i];
	}
	if (p2p_params_create(&v->ps, be, spec, 2 * NC) != 0)
		goto fail;
	int side = size;
	size_t big = (size_t)batch * 3 * size * size;
	cin = 3;
	if (!(v->xn = buf(v, big)) || !(v->affine = buf(v, 6)))
		goto fail;
	for (int i = 0; i < NC; i++) {
		p2p_conv *g = &v->conv[i];
		if (p2p_conv2d_init(g, batch, cin, side, side, layer_out[i], 3, 1, 1) != 0)
			goto fail;
		int fast = i > 0 && p2p_conv_wino_ok(be, g);   /* not the 3-channel input */
		v->wino |= fast;
		size_t ws = fast ? p2p_conv_wino_ws(g) : p2p_conv_ws(g), cnt = out_count(g);
		size_t nu = 36 * (size_t)g->cin * g->cout;
		if (fast && (!(v->u[i] = buf(v, nu)) || !(v->ut[i] = buf(v, nu))))
			goto fail;
		v->ws_n = ws > v->ws_n ? ws : v->ws_n;
		big = cnt > big ? cnt : big;
		v->w[i] = v->ps.data + v->ps.offset[2 * i];
		v->b[i] = v->ps.data + v->ps.offset[2 * i + 1];
		if (!(v->a[i] = buf(v, cnt)))
			goto fail;
		if (pool_after[i]) {
			side /= 2;
			if (!(v->pool[i] = buf(v, cnt / 4)))
				goto fail;
		}
		cin = layer_out[i];
	}
	if (!(v->sa = buf(v, big)) || !(v->sb = buf(v, big)) || !(v->ws = buf(v, v->ws_n)))
		goto fail;
	/* ((x + 1) / 2 - mean) / std = x * (0.5 / std) + (0.5 - mean) / std */
	float aff[6];
	for (int c = 0; c < 3; c++) {
		aff[c] = 0.5f / imagenet_std[c];
		aff[3 + c] = (0.5f - imagenet_mean[c]) / imagenet_std[c];
	}
	be->upload(v->affine, aff, 6);
	v->stale = 1;
	return v;
fail:
	p2p_vgg_free(v);
	return NULL;
}

p2p_vgg *p2p_vgg_load(const p2p_backend *be, const char *path, int size, int batch)
{
	p2p_st *st = p2p_st_read(path);
	if (!st)
		return NULL;
	p2p_vgg *v = vgg_new(be, size, batch);
	float *host = v ? malloc(v->ps.total * sizeof *host) : NULL;
	if (v && !host)
		p2p_err("vgg16: out of memory");
	if (!host || p2p_st_load_params(st, &v->ps, "", host) != 0) {
		free(host);
		p2p_st_free(st);
		p2p_vgg_free(v);
		return NULL;
	}
	be->upload(v->ps.data, host, v->ps.total);
	free(host);
	p2p_st_free(st);
	return v;
}

p2p_vgg *p2p_vgg_random(const p2p_backend *be, int size, int batch, uint64_t seed)
{
	p2p_vgg *v = vgg_new(be, size, batch);
	if (!v)
		return NULL;
	p2p_rng r;
	p2p_rng_seed(&r, seed);
	if (p2p_params_init(&v->ps, &r, 0.02f) != 0) {
		p2p_vgg_free(v);
		return NULL;
	}
	return v;
}

void p2p_vgg_free(p2p_vgg *v)
{
	if (!v)
		return;
	for (int i = 0; i < v->nbufs; i++)
		v->be->free(v->bufs[i]);
	p2p_params_free(&v->ps);
	free(v);
}

/* The caller may change the weights: transform them again at the next forward. */
p2p_params *p2p_vgg_params(p2p_vgg *v)
{
	v->stale = 1;
	return &v->ps;
}

size_t p2p_vgg_flops(const p2p_vgg *v)
{
	size_t f = 0;
	for (int i = 0; i < NC; i++)
		f += p2p_conv_flops(&v->conv[i]);
	return f / v->batch;
}

static p2p_conv at(const p2p_conv *c, int n)
{
	p2p_conv t = *c;
	t.n = n;
	return t;
}

/* The Winograd weights of the layers that have them, from the parameters. */
static void wino_refresh(p2p_vgg *v)
{
	for (int i = 1; i < NC; i++) {
		const p2p_conv *g = &v->conv[i];
		if (!v->u[i])
			continue;
		v->be->wino_weights(v->w[i], g->cout, g->cin, 3, P2P_WINO_CONV, v->u[i]);
		v->be->wino_weights(v->w[i], g->cout, g->cin, 3, P2P_WINO_GRAD, v->ut[i]);
	}
	v->stale = 0;
}

const float *p2p_vgg_forward(p2p_vgg *v, const float *x, int n)
{
	const p2p_backend *be = v->be;
	if (n < 1 || n > v->batch) {
		p2p_err("vgg16: %d images, the model holds 1 to %d", n, v->batch);
		return NULL;
	}
	v->n = 0;
	if (v->wino && v->stale)
		wino_refresh(v);
	be->chan_affine(x, v->xn, n, 3, (long)v->size * v->size, v->affine, v->affine + 3);
	const float *in = v->xn;
	for (int i = 0; i < NC; i++) {
		p2p_conv g = at(&v->conv[i], n);
		int rc = v->u[i]
		         ? p2p_conv2d_forward_wino(be, &g, v->a[i], in, v->u[i], v->b[i], v->ws, v->ws_n)
		         : p2p_conv2d_forward(be, &g, v->a[i], in, v->w[i], v->b[i], v->ws, v->ws_n);
		if (rc != 0)
			return NULL;
		p2p_relu_forward(be, v->a[i], v->a[i], out_count(&g));
		in = v->a[i];
		if (pool_after[i]) {
			p2p_maxpool2_forward(be, v->pool[i], v->a[i], n, g.cout, g.oh, g.ow);
			in = v->pool[i];
		}
	}
	v->n = n;
	return v->a[NC - 1];
}

int p2p_vgg_backward(p2p_vgg *v, const float *dfeat, float *dx)
{
	const p2p_backend *be = v->be;
	int n = v->n;
	if (n == 0)
		return p2p_err("vgg16: backward without a forward");
	/* g: the gradient of a[i] (after ReLU); each step leaves it in sb */
	const float *g = dfeat;
	for (int i = NC - 1; i >= 0; i--) {
		p2p_conv cv = at(&v->conv[i], n);
		size_t cnt = out_count(&cv), nin = (size_t)n * cv.cin * cv.h * cv.w;
		be->zero(v->sa, cnt);
		p2p_relu_backward(be, v->sa, g, v->a[i], cnt);
		if (v->u[i]) {
			/* dx = dy correlated with the turned, transposed weights */
			p2p_conv t;
			p2p_conv_wino_input_grad(&t, &cv);
			if (p2p_conv2d_forward_wino(be, &t, v->sb, v->sa, v->ut[i], NULL, v->ws,
			                            v->ws_n) != 0)
				return -1;
		} else {
			be->zero(v->sb, nin);
			if (p2p_conv2d_backward(be, &cv, v->sb, NULL, NULL, v->sa, NULL, v->w[i],
			                        v->ws, v->ws_n) != 0)
				return -1;
		}
		g = v->sb;
		if (i > 0 && pool_after[i - 1]) {
			/* through the pool to a[i-1], the pool's input */
			p2p_conv pv = at(&v->conv[i - 1], n);
			be->zero(v->sa, out_count(&pv));
			p2p_maxpool2_backward(be, v->sa, v->sb, v->a[i - 1], n, pv.cout, pv.oh, pv.ow);
			float *t = v->sa;
			v->sa = v->sb;
			v->sb = t;
			g = v->sb;
		}
	}
	/* sb: the gradient of the normalised input */
	if (dx)
		be->chan_affine_bwd(v->sb, dx, n, 3, (long)v->size * v->size, v->affine);
	return 0;
}
