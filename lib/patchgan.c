/* The PatchGAN discriminator: five 4x4 convolutions, pad 1, strides
 * 2,2,2,1,1, channels in_ch -> ndf, 2ndf, 4ndf, 8ndf -> 1; InstanceNorm after
 * conv.1 to conv.3, LeakyReLU 0.2 after conv.0 to conv.3, nothing after
 * conv.4: an (S/8 - 2)^2 map of patch scores.
 *
 * Buffers for `batch` images, allocated once:
 *   x      copy of the input (conv.0's dw needs it)
 *   a[i]   conv.i's output, normalised in place for i = 1..3 (IN backward
 *          needs it); a[0] holds LReLU in place (no norm to differentiate)
 *   l[i]   LReLU(a[i]) for i = 1..3, the input of conv.(i+1); l[0] = a[0]
 *   a[4]   the scores
 * Backward ping-pongs between two scratch buffers of the largest layer.
 *
 * conv.3, 4x4 stride 1 and two thirds of D's arithmetic, runs as a
 * Winograd F(3x3, 4x4) convolution where the backend has its transforms
 * (the CPU) and the image is large enough for it to pay: forward, and the
 * input gradient with the weights turned and transposed; the weight
 * gradient stays direct. The weights change every step, so each forward
 * transforms them anew, on the backend (the input gradient's at the
 * backward that needs them). */
#include "models.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "layers.h"

#define NL 5
#define SLOPE 0.2f

struct p2p_patchgan {
	p2p_patchgan_cfg cfg;
	const p2p_backend *be;
	int batch;
	p2p_params ps;
	p2p_conv conv[NL];          /* geometry at n = batch */
	float *w[NL], *b[NL], *gw[NL], *gb[NL];
	float *x, *a[NL], *l[NL], *mean[NL], *rstd[NL];
	float *sa, *sb, *ws;
	size_t ws_n;
	float *u3, *ut3;            /* conv.3's Winograd weights (NULL: direct) */
	int ut_ok;                  /* ut3 is of the weights of the last forward */
	int n;                      /* images in the last forward, 0 before one */
	float *bufs[4 * NL + 10];
	int nbufs;
};

p2p_patchgan_cfg p2p_patchgan_default(int size)
{
	p2p_patchgan_cfg c = {.size = size, .in_ch = 4, .ndf = 64};
	return c;
}

static int check_cfg(const p2p_patchgan_cfg *c, const char *what)
{
	int s = c->size;
	if (s < 32 || s > 512 || (s & (s - 1)))
		return p2p_err("%s: size %d: a power of two from 32 to 512 is needed", what, s);
	if (c->in_ch < 1 || c->in_ch > 64)
		return p2p_err("%s: %d input channels (1 to 64)", what, c->in_ch);
	if (c->ndf < 1 || c->ndf > 1024)
		return p2p_err("%s: ndf %d (1 to 1024)", what, c->ndf);
	return 0;
}

static int chans(const p2p_patchgan_cfg *c, int i)   /* conv.i's output */
{
	return i == NL - 1 ? 1 : c->ndf << i;
}

static int chans_in(const p2p_patchgan_cfg *c, int i)
{
	return i ? chans(c, i - 1) : c->in_ch;
}

static const int stride[NL] = {2, 2, 2, 1, 1};

size_t p2p_patchgan_param_count(const p2p_patchgan_cfg *c)
{
	if (check_cfg(c, "patchgan") != 0)
		return 0;
	size_t n = 0;
	for (int i = 0; i < NL; i++)
		n += (size_t)chans(c, i) * chans_in(c, i) * 16 + chans(c, i);
	return n;
}

static float *buf(p2p_patchgan *d, size_t n)
{
	float *p = d->be->alloc(n);
	if (p)
		d->bufs[d->nbufs++] = p;
	return p;
}

static size_t out_count(const p2p_conv *g)
{
	return (size_t)g->n * g->cout * g->oh * g->ow;
}

p2p_patchgan *p2p_patchgan_new(const p2p_backend *be, const p2p_patchgan_cfg *cfg, int batch)
{
	if (check_cfg(cfg, "patchgan") != 0)
		return NULL;
	if (batch < 1) {
		p2p_err("patchgan: batch %d", batch);
		return NULL;
	}
	p2p_patchgan *d = calloc(1, sizeof *d);
	if (!d) {
		p2p_err("patchgan: out of memory");
		return NULL;
	}
	d->cfg = *cfg;
	d->be = be;
	d->batch = batch;

	p2p_param_spec spec[2 * NL];
	char names[2 * NL][16];
	for (int i = 0; i < NL; i++) {
		snprintf(names[2 * i], sizeof names[0], "conv.%d.weight", i);
		snprintf(names[2 * i + 1], sizeof names[0], "conv.%d.bias", i);
		spec[2 * i] = (p2p_param_spec){names[2 * i], 4,
		                               {chans(cfg, i), chans_in(cfg, i), 4, 4}, P2P_INIT_NORMAL};
		spec[2 * i + 1] = (p2p_param_spec){names[2 * i + 1], 1, {chans(cfg, i), 1, 1, 1},
		                                   P2P_INIT_ZERO};
	}
	if (p2p_params_create(&d->ps, be, spec, 2 * NL) != 0)
		goto fail;
	size_t big = 0;
	int side = cfg->size;
	if (!(d->x = buf(d, (size_t)batch * cfg->in_ch * side * side)))
		goto fail;
	for (int i = 0; i < NL; i++) {
		p2p_conv *g = &d->conv[i];
		if (p2p_conv2d_init(g, batch, chans_in(cfg, i), side, side, chans(cfg, i), 4,
		                    stride[i], 1) != 0)
			goto fail;
		side = g->oh;
		size_t ws = p2p_conv_ws(g), cnt = out_count(g);
		d->ws_n = ws > d->ws_n ? ws : d->ws_n;
		if (i == 3 && p2p_conv_wino_ok(be, g)) {
			size_t nu = 36 * (size_t)g->cin * g->cout, wn = p2p_conv_wino_ws(g);
			d->ws_n = wn > d->ws_n ? wn : d->ws_n;
			if (!(d->u3 = buf(d, nu)) || !(d->ut3 = buf(d, nu)))
				goto fail;
		}
		big = cnt > big ? cnt : big;
		d->w[i] = d->ps.data + d->ps.offset[2 * i];
		d->b[i] = d->ps.data + d->ps.offset[2 * i + 1];
		d->gw[i] = d->ps.grad + d->ps.offset[2 * i];
		d->gb[i] = d->ps.grad + d->ps.offset[2 * i + 1];
		if (!(d->a[i] = buf(d, cnt)))
			goto fail;
		if (i >= 1 && i <= 3 &&
		    (!(d->l[i] = buf(d, cnt)) || !(d->mean[i] = buf(d, (size_t)batch * g->cout)) ||
		     !(d->rstd[i] = buf(d, (size_t)batch * g->cout))))
			goto fail;
	}
	d->l[0] = d->a[0];
	if (!(d->sa = buf(d, big)) || !(d->sb = buf(d, big)) || !(d->ws = buf(d, d->ws_n)))
		goto fail;
	return d;
fail:
	p2p_patchgan_free(d);
	return NULL;
}

void p2p_patchgan_free(p2p_patchgan *d)
{
	if (!d)
		return;
	for (int i = 0; i < d->nbufs; i++)
		d->be->free(d->bufs[i]);
	p2p_params_free(&d->ps);
	free(d);
}

p2p_params *p2p_patchgan_params(p2p_patchgan *d) { return &d->ps; }
int p2p_patchgan_out_size(const p2p_patchgan *d) { return d->conv[NL - 1].oh; }

size_t p2p_patchgan_flops(const p2p_patchgan *d)
{
	size_t f = 0;
	for (int i = 0; i < NL; i++)
		f += p2p_conv_flops(&d->conv[i]);
	return f / d->batch;
}

static p2p_conv at(const p2p_conv *c, int n)
{
	p2p_conv t = *c;
	t.n = n;
	return t;
}

/* conv.3's Winograd weights from its parameters: u (forward) or the input
 * gradient's (transposed). */
static void wino_weights(p2p_patchgan *d, int transposed)
{
	const p2p_conv *g = &d->conv[3];
	d->be->wino_weights(d->w[3], g->cout, g->cin, 4, transposed ? P2P_WINO_GRAD : P2P_WINO_CONV,
	                    transposed ? d->ut3 : d->u3);
}

const float *p2p_patchgan_forward(p2p_patchgan *d, const float *x, int n)
{
	const p2p_backend *be = d->be;
	if (n < 1 || n > d->batch) {
		p2p_err("patchgan: %d images, the model holds 1 to %d", n, d->batch);
		return NULL;
	}
	d->n = 0;
	be->copy(d->x, x, (size_t)n * d->cfg.in_ch * d->cfg.size * d->cfg.size);
	const float *in = d->x;
	for (int i = 0; i < NL; i++) {
		p2p_conv g = at(&d->conv[i], n);
		int rc;
		if (i == 3 && d->u3) {
			wino_weights(d, 0);
			d->ut_ok = 0;
			rc = p2p_conv2d_forward_wino(be, &g, d->a[i], in, d->u3, d->b[i], d->ws, d->ws_n);
		} else {
			rc = p2p_conv2d_forward(be, &g, d->a[i], in, d->w[i], d->b[i], d->ws, d->ws_n);
		}
		if (rc != 0)
			return NULL;
		if (i == NL - 1)
			break;
		if (i > 0)
			p2p_instnorm_forward(be, d->a[i], d->mean[i], d->rstd[i], d->a[i],
			                     n, g.cout, (long)g.oh * g.ow);
		p2p_leaky_forward(be, d->l[i], d->a[i], out_count(&g), SLOPE);
		in = d->l[i];
	}
	d->n = n;
	return d->a[NL - 1];
}

int p2p_patchgan_backward(p2p_patchgan *d, const float *dy, float *dx, int param_grads)
{
	const p2p_backend *be = d->be;
	int n = d->n;
	if (n == 0)
		return p2p_err("patchgan: backward without a forward");
	/* g: d(output of conv.i), into t; the gradient of its input into o */
	const float *g = dy;
	for (int i = NL - 1; i >= 0; i--) {
		p2p_conv cv = at(&d->conv[i], n);
		float *dw = param_grads ? d->gw[i] : NULL, *db = param_grads ? d->gb[i] : NULL;
		if (i == 0)
			return p2p_conv2d_backward(be, &cv, dx, dw, db, g, d->x, d->w[0], d->ws, d->ws_n);
		/* d l[i-1] into sa */
		p2p_conv prev = at(&d->conv[i - 1], n);
		size_t cnt = out_count(&prev);
		if (i == 3 && d->u3) {
			/* the input gradient by Winograd (it overwrites sa), the weight's direct */
			p2p_conv t;
			if (!d->ut_ok)
				wino_weights(d, 1);
			d->ut_ok = 1;
			p2p_conv_wino_input_grad(&t, &cv);
			if (p2p_conv2d_forward_wino(be, &t, d->sa, g, d->ut3, NULL, d->ws, d->ws_n) != 0 ||
			    ((dw || db) && p2p_conv2d_backward(be, &cv, NULL, dw, db, g, d->l[i - 1],
			                                       d->w[i], d->ws, d->ws_n) != 0))
				return -1;
		} else {
			be->zero(d->sa, cnt);
			if (p2p_conv2d_backward(be, &cv, d->sa, dw, db, g, d->l[i - 1], d->w[i],
			                        d->ws, d->ws_n) != 0)
				return -1;
		}
		/* through LReLU (and IN) to conv.(i-1)'s output, into sb */
		be->zero(d->sb, cnt);
		p2p_leaky_backward(be, d->sb, d->sa, d->l[i - 1], cnt, SLOPE);
		g = d->sb;
		if (i - 1 > 0) {
			be->zero(d->sa, cnt);
			p2p_instnorm_backward(be, d->sa, d->sb, d->a[i - 1], d->rstd[i - 1],
			                      n, prev.cout, (long)prev.oh * prev.ow);
			g = d->sa;
		}
		/* the next conv backward writes sa: keep g out of its way */
		if (g == d->sa) {
			float *t = d->sa;
			d->sa = d->sb;
			d->sb = t;
		}
	}
	return 0;
}

/* ---- metadata: keys of their own, so G and D can share a file ---- */

int p2p_patchgan_meta_add(p2p_st_writer *w, const p2p_patchgan_cfg *cfg)
{
	char v[3][16];
	snprintf(v[0], sizeof v[0], "%d", cfg->size);
	snprintf(v[1], sizeof v[1], "%d", cfg->in_ch);
	snprintf(v[2], sizeof v[2], "%d", cfg->ndf);
	if (p2p_st_add_meta(w, "d_arch", "patchgan") != 0 ||
	    p2p_st_add_meta(w, "d_size", v[0]) != 0 ||
	    p2p_st_add_meta(w, "d_in_ch", v[1]) != 0 ||
	    p2p_st_add_meta(w, "ndf", v[2]) != 0 ||
	    p2p_st_add_meta(w, "d_norm", "instance") != 0)
		return -1;
	return 0;
}

int p2p_patchgan_meta_read(const p2p_st *st, const char *path, p2p_patchgan_cfg *cfg)
{
	const char *arch = p2p_st_meta(st, "d_arch");
	if (!arch)
		return p2p_err("%s: no \"d_arch\" in the metadata (not a p2pcat discriminator)", path);
	if (strcmp(arch, "patchgan") != 0)
		return p2p_err("%s: a \"%s\" model, not a PatchGAN discriminator", path, arch);
	const char *norm = p2p_st_meta(st, "d_norm");
	if (norm && strcmp(norm, "instance") != 0)
		return p2p_err("%s: norm \"%s\" (only \"instance\" is supported)", path, norm);
	p2p_patchgan_cfg c;
	if (p2p_st_meta_int(st, path, "d_size", &c.size) != 0 ||
	    p2p_st_meta_int(st, path, "d_in_ch", &c.in_ch) != 0 ||
	    p2p_st_meta_int(st, path, "ndf", &c.ndf) != 0)
		return -1;
	if (check_cfg(&c, path) != 0)
		return -1;
	*cfg = c;
	return 0;
}
