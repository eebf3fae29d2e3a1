/* The U-Net generator: k = log2(S) levels, each a strided 4x4 convolution on
 * the way down and a transposed one on the way up, with skip concatenations.
 *
 * Level i (0 outermost .. k-1 innermost) has c_i = ngf * min(2^i, 8)
 * channels at side S_i = S / 2^(i+1). With d_i the output of down level i:
 *   d_0 = down.0(x)
 *   d_i = IN(down.i(LReLU(d_{i-1})))     (no IN at i = k-1, a 1x1 map)
 *   u_{k-1} = d_{k-1}
 *   u_{i-1} = [d_{i-1} | Drop(IN(upconv_i(ReLU(u_i))))]   i = k-1 .. 1
 *   y = tanh(upconv_0(ReLU(u_0)))
 * upconv_i is parameter up.(k-1-i): up.0 is the innermost. Dropout is on the
 * three innermost up blocks (up.0, up.1, up.2).
 *
 * Buffers, all for `batch` images and allocated once:
 *   x      copy of the input (down.0's dw needs it)
 *   d[i]   d_i after its IN (IN backward needs it); d[0] holds LReLU(d_0) in
 *          place after forward (d_0 itself has no norm to differentiate), and
 *          d[k-1] holds ReLU(d_{k-1}) = the innermost up block's input
 *   l[i]   LReLU(d_i), the input of down level i+1, for 1 <= i <= k-2
 *   r[i]   ReLU(u_i), the input of upconv_i, for i <= k-2 (d_i is copied
 *          into its first half on the way down, the up block's output into
 *          its second half on the way up, then ReLU in place)
 *   z[i]   IN(upconv_i(...)) for i >= 1, which IN backward needs
 *   y      the output
 * Backward keeps one gradient per down level (skip and down path both add
 * into it) and three scratch buffers for the rest.
 *
 * The convolutions run forward by Winograd where the backend has it and it
 * pays (p2p_conv_wino_ok: at 256, the down ones from 128x128 to 32x32 and
 * the up ones from 16x16 to 64x64, over 80 % of G's multiplications);
 * wd2[i] and wu2[i] hold their transformed weights, 9 times the size of the
 * weights, made anew at every forward unless the caller has said the
 * weights stay fixed. Backward is direct. */
#include "models.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "layers.h"

#define MAXK 9          /* 512 = 2^9 */
#define SLOPE 0.2f
#define NDROP 3         /* up blocks with dropout, innermost first */
#define MAXBUF 128

struct p2p_unet {
	p2p_unet_cfg cfg;
	const p2p_backend *be;
	int batch, k;
	int ch[MAXK];               /* c_i */
	long hw[MAXK];              /* S_i * S_i */
	p2p_params ps;
	p2p_conv down[MAXK], up[MAXK];  /* geometry at n = batch; up by level */
	float *wd[MAXK], *bd[MAXK], *wu[MAXK], *bu[MAXK];
	float *gwd[MAXK], *gbd[MAXK], *gwu[MAXK], *gbu[MAXK];

	float *x, *d[MAXK], *l[MAXK], *r[MAXK], *z[MAXK], *y;
	float *dmean[MAXK], *drstd[MAXK], *umean[MAXK], *urstd[MAXK];
	float *gd[MAXK], *sa, *sb, *sc;  /* gradients: per down level, scratch */
	float *ws;
	size_t ws_n;
	float *wd2[MAXK], *wu2[MAXK];   /* level i's Winograd weights, NULL: direct */
	int fixed, made;            /* the weights stay fixed; wu2 made from them */

	int n;                      /* images in the last forward, 0 before one */
	int drop;
	uint64_t seed, *counters;   /* sample s's dropout counter */

	float *bufs[MAXBUF];
	int nbufs;
};

p2p_unet_cfg p2p_unet_default(int size)
{
	p2p_unet_cfg c = {.size = size, .in_ch = 1, .out_ch = 3, .ngf = 64, .dropout = 0.5f};
	return c;
}

static int log2_size(int s)
{
	int k = 0;
	while ((1 << k) < s)
		k++;
	return (1 << k) == s ? k : -1;
}

static int check_cfg(const p2p_unet_cfg *c, const char *what)
{
	int k = log2_size(c->size);
	if (k < 5 || k > MAXK)
		return p2p_err("%s: size %d: a power of two from 32 to 512 is needed", what, c->size);
	if (c->in_ch < 1 || c->in_ch > 64 || c->out_ch < 1 || c->out_ch > 64)
		return p2p_err("%s: %d input and %d output channels (1 to 64)", what,
		               c->in_ch, c->out_ch);
	if (c->ngf < 1 || c->ngf > 1024)
		return p2p_err("%s: ngf %d (1 to 1024)", what, c->ngf);
	if (!(c->dropout >= 0 && c->dropout < 1))
		return p2p_err("%s: dropout %g (0 <= p < 1)", what, c->dropout);
	return 0;
}

static int chans(const p2p_unet_cfg *c, int i)
{
	return c->ngf * (i < 3 ? 1 << i : 8);
}

/* upconv_i's input and output channels */
static int up_in(const p2p_unet_cfg *c, int k, int i)
{
	return i == k - 1 ? chans(c, i) : 2 * chans(c, i);
}

static int up_out(const p2p_unet_cfg *c, int i)
{
	return i > 0 ? chans(c, i - 1) : c->out_ch;
}

size_t p2p_unet_param_count(const p2p_unet_cfg *c)
{
	if (check_cfg(c, "unet") != 0)
		return 0;
	int k = log2_size(c->size);
	size_t n = 0;
	for (int i = 0; i < k; i++) {
		int cin = i ? chans(c, i - 1) : c->in_ch;
		n += (size_t)chans(c, i) * cin * 16 + chans(c, i);
		n += (size_t)up_in(c, k, i) * up_out(c, i) * 16 + up_out(c, i);
	}
	return n;
}

static float *buf(p2p_unet *g, size_t n)
{
	if (g->nbufs == MAXBUF) {
		p2p_err("unet: too many buffers");
		return NULL;
	}
	float *p = g->be->alloc(n);
	if (p)
		g->bufs[g->nbufs++] = p;
	return p;
}

static int make_params(p2p_unet *g)
{
	const p2p_unet_cfg *c = &g->cfg;
	int k = g->k;
	p2p_param_spec spec[4 * MAXK];
	char names[4 * MAXK][24];
	int m = 0;
	for (int pass = 0; pass < 2; pass++)
		for (int j = 0; j < k; j++) {
			/* down.j is level j; up.j is level k-1-j */
			int i = pass ? k - 1 - j : j;
			int co = pass ? up_out(c, i) : chans(c, i);
			int ci = pass ? up_in(c, k, i) : i ? chans(c, i - 1) : c->in_ch;
			const char *kind = pass ? "up" : "down";
			snprintf(names[m], sizeof names[m], "%s.%d.weight", kind, j);
			spec[m] = (p2p_param_spec){names[m], 4, {pass ? ci : co, pass ? co : ci, 4, 4},
			                           P2P_INIT_NORMAL};
			m++;
			snprintf(names[m], sizeof names[m], "%s.%d.bias", kind, j);
			spec[m] = (p2p_param_spec){names[m], 1, {co, 1, 1, 1}, P2P_INIT_ZERO};
			m++;
		}
	if (p2p_params_create(&g->ps, g->be, spec, m) != 0)
		return -1;
	for (int j = 0; j < k; j++) {
		int i = k - 1 - j;
		int a = 2 * j, b = 2 * (k + j);
		g->wd[j] = g->ps.data + g->ps.offset[a];
		g->bd[j] = g->ps.data + g->ps.offset[a + 1];
		g->gwd[j] = g->ps.grad + g->ps.offset[a];
		g->gbd[j] = g->ps.grad + g->ps.offset[a + 1];
		g->wu[i] = g->ps.data + g->ps.offset[b];
		g->bu[i] = g->ps.data + g->ps.offset[b + 1];
		g->gwu[i] = g->ps.grad + g->ps.offset[b];
		g->gbu[i] = g->ps.grad + g->ps.offset[b + 1];
	}
	return 0;
}

static int make_buffers(p2p_unet *g)
{
	const p2p_unet_cfg *c = &g->cfg;
	int k = g->k, nb = g->batch, S = c->size;
	size_t big_r = 0, big_z = (size_t)nb * c->out_ch * S * S;
	for (int i = 0; i < k; i++) {
		int side = S >> (i + 1);
		g->ch[i] = chans(c, i);
		g->hw[i] = (long)side * side;
		int cin = i ? g->ch[i - 1] : c->in_ch;
		if (p2p_conv2d_init(&g->down[i], nb, cin, 2 * side, 2 * side, g->ch[i], 4, 2, 1) != 0 ||
		    p2p_convt2d_init(&g->up[i], nb, up_in(c, k, i), side, side, up_out(c, i), 4, 2, 1) != 0)
			return -1;
		size_t ws = p2p_conv_ws(&g->down[i]), wu = p2p_conv_ws(&g->up[i]);
		g->ws_n = ws > g->ws_n ? ws : g->ws_n;
		g->ws_n = wu > g->ws_n ? wu : g->ws_n;
		for (int up = 0; up < 2; up++) {
			const p2p_conv *cv = up ? &g->up[i] : &g->down[i];
			if (!p2p_conv_wino_ok(g->be, cv))
				continue;
			size_t ww = p2p_conv_wino_ws(cv);
			g->ws_n = ww > g->ws_n ? ww : g->ws_n;
			float *u = buf(g, 36 * 4 * (size_t)cv->cout * cv->cin);
			if (!u)
				return -1;
			*(up ? &g->wu2[i] : &g->wd2[i]) = u;
		}
		size_t nr = (size_t)nb * up_in(c, k, i) * g->hw[i];
		big_r = nr > big_r ? nr : big_r;
		if (i > 0) {
			size_t nz = (size_t)nb * g->ch[i - 1] * g->hw[i - 1];
			big_z = nz > big_z ? nz : big_z;
		}
	}
	if (!(g->x = buf(g, (size_t)nb * c->in_ch * S * S)) ||
	    !(g->y = buf(g, (size_t)nb * c->out_ch * S * S)) ||
	    !(g->ws = buf(g, g->ws_n)) ||
	    !(g->sa = buf(g, big_r)) || !(g->sb = buf(g, big_z)) || !(g->sc = buf(g, big_z)))
		return -1;
	for (int i = 0; i < k; i++) {
		size_t act = (size_t)nb * g->ch[i] * g->hw[i], planes = (size_t)nb * g->ch[i];
		if (!(g->d[i] = buf(g, act)) || !(g->gd[i] = buf(g, act)))
			return -1;
		if (i >= 1 && i <= k - 2 &&
		    (!(g->l[i] = buf(g, act)) || !(g->dmean[i] = buf(g, planes)) ||
		     !(g->drstd[i] = buf(g, planes))))
			return -1;
		if (i <= k - 2 && !(g->r[i] = buf(g, 2 * act)))
			return -1;
		if (i >= 1) {
			size_t zn = (size_t)nb * g->ch[i - 1] * g->hw[i - 1];
			size_t zp = (size_t)nb * g->ch[i - 1];
			if (!(g->z[i] = buf(g, zn)) || !(g->umean[i] = buf(g, zp)) ||
			    !(g->urstd[i] = buf(g, zp)))
				return -1;
		}
	}
	g->r[k - 1] = g->d[k - 1];
	g->l[0] = g->d[0];
	return 0;
}

p2p_unet *p2p_unet_new(const p2p_backend *be, const p2p_unet_cfg *cfg, int batch)
{
	if (check_cfg(cfg, "unet") != 0)
		return NULL;
	if (batch < 1) {
		p2p_err("unet: batch %d", batch);
		return NULL;
	}
	p2p_unet *g = calloc(1, sizeof *g);
	if (!g) {
		p2p_err("unet: out of memory");
		return NULL;
	}
	g->cfg = *cfg;
	g->be = be;
	g->batch = batch;
	g->k = log2_size(cfg->size);
	g->counters = calloc(batch, sizeof *g->counters);
	if (!g->counters) {
		p2p_err("unet: out of memory");
		free(g);
		return NULL;
	}
	if (make_params(g) != 0 || make_buffers(g) != 0) {
		p2p_unet_free(g);
		return NULL;
	}
	return g;
}

void p2p_unet_free(p2p_unet *g)
{
	if (!g)
		return;
	for (int i = 0; i < g->nbufs; i++)
		g->be->free(g->bufs[i]);
	p2p_params_free(&g->ps);
	free(g->counters);
	free(g);
}

p2p_params *p2p_unet_params(p2p_unet *g) { return &g->ps; }

void p2p_unet_weights_fixed(p2p_unet *g, int fixed)
{
	g->fixed = fixed;
	g->made = 0;
}
const p2p_unet_cfg *p2p_unet_config(const p2p_unet *g) { return &g->cfg; }

size_t p2p_unet_flops(const p2p_unet *g)
{
	size_t f = 0;
	for (int i = 0; i < g->k; i++)
		f += p2p_conv_flops(&g->down[i]) + p2p_conv_flops(&g->up[i]);
	return f / g->batch;
}

/* A layer's geometry for the n images of this call. */
static p2p_conv at(const p2p_conv *c, int n)
{
	p2p_conv t = *c;
	t.n = n;
	return t;
}

/* Dropout block j (0 innermost) gets a seed of its own, and sample s of a
 * call the counter range counters[s] * size: a sample's mask depends on its
 * counter alone, not on the batch it came in. */
static uint64_t drop_seed(uint64_t seed, int j)
{
	return p2p_mix64(seed ^ (0xd1b54a32d192ed03ULL * (uint64_t)(j + 1)));
}

static int drop_level(const p2p_unet *g, int i)
{
	return g->drop && i >= g->k - NDROP;
}

static const float *forward(p2p_unet *g, const float *x, int n, int dropout, uint64_t seed)
{
	const p2p_backend *be = g->be;
	const p2p_unet_cfg *c = &g->cfg;
	int k = g->k;
	g->drop = dropout && c->dropout > 0;
	g->seed = seed;
	be->copy(g->x, x, (size_t)n * c->in_ch * c->size * c->size);
	if (!g->fixed || !g->made)
		for (int i = 0; i < k; i++) {
			if (g->wd2[i])
				be->wino_weights(g->wd[i], g->down[i].cout, g->down[i].cin, 4,
				                 P2P_WINO_DOWN, g->wd2[i]);
			if (g->wu2[i])
				be->wino_weights(g->wu[i], g->up[i].cout, g->up[i].cin, 4, P2P_WINO_UP,
				                 g->wu2[i]);
		}
	g->made = 1;

	/* down */
	const float *in = g->x;
	for (int i = 0; i < k; i++) {
		p2p_conv cv = at(&g->down[i], n);
		size_t cnt = (size_t)n * g->ch[i] * g->hw[i];
		long plane = g->ch[i] * g->hw[i];
		if ((g->wd2[i] ? p2p_conv2d_forward_wino(be, &cv, g->d[i], in, g->wd2[i], g->bd[i],
		                                         g->ws, g->ws_n)
		               : p2p_conv2d_forward(be, &cv, g->d[i], in, g->wd[i], g->bd[i], g->ws,
		                                    g->ws_n)) != 0)
			return NULL;
		if (i == k - 1) {
			p2p_relu_forward(be, g->d[i], g->d[i], cnt);
			break;
		}
		if (i > 0)
			p2p_instnorm_forward(be, g->d[i], g->dmean[i], g->drstd[i], g->d[i],
			                     n, g->ch[i], g->hw[i]);
		be->copy2d(g->r[i], 2 * plane, g->d[i], plane, n, plane, 0);
		p2p_leaky_forward(be, g->l[i], g->d[i], cnt, SLOPE);
		in = g->l[i];
	}

	/* up */
	for (int i = k - 1; i >= 1; i--) {
		p2p_conv cv = at(&g->up[i], n);
		int co = g->ch[i - 1];
		long plane = co * g->hw[i - 1];
		if ((g->wu2[i] ? p2p_convt2d_forward_wino(be, &cv, g->z[i], g->r[i], g->wu2[i], g->bu[i],
		                                          g->ws, g->ws_n)
		               : p2p_convt2d_forward(be, &cv, g->z[i], g->r[i], g->wu[i], g->bu[i],
		                                     g->ws, g->ws_n)) != 0)
			return NULL;
		p2p_instnorm_forward(be, g->z[i], g->umean[i], g->urstd[i], g->z[i],
		                     n, co, g->hw[i - 1]);
		float *h = g->r[i - 1] + plane;
		be->copy2d(h, 2 * plane, g->z[i], plane, n, plane, 0);
		if (drop_level(g, i)) {
			uint64_t ds = drop_seed(seed, k - 1 - i);
			for (int s = 0; s < n; s++)
				p2p_dropout_forward(be, h + 2 * plane * s, h + 2 * plane * s, plane,
				                    c->dropout, ds, g->counters[s] * (uint64_t)plane);
		}
		p2p_relu_forward(be, g->r[i - 1], g->r[i - 1], (size_t)n * 2 * plane);
	}
	p2p_conv cv = at(&g->up[0], n);
	if ((g->wu2[0] ? p2p_convt2d_forward_wino(be, &cv, g->y, g->r[0], g->wu2[0], g->bu[0], g->ws,
	                                          g->ws_n)
	               : p2p_convt2d_forward(be, &cv, g->y, g->r[0], g->wu[0], g->bu[0], g->ws,
	                                     g->ws_n)) != 0)
		return NULL;
	p2p_tanh_forward(be, g->y, g->y, (size_t)n * c->out_ch * c->size * c->size);
	g->n = n;
	return g->y;
}

static int check_n(p2p_unet *g, int n)
{
	g->n = 0;
	if (n < 1 || n > g->batch)
		return p2p_err("unet: %d images, the model holds 1 to %d", n, g->batch);
	return 0;
}

const float *p2p_unet_forward(p2p_unet *g, const float *x, int n, int dropout,
                              uint64_t seed, uint64_t counter)
{
	if (check_n(g, n) != 0)
		return NULL;
	for (int s = 0; s < n; s++)
		g->counters[s] = counter + (uint64_t)s;
	return forward(g, x, n, dropout, seed);
}

const float *p2p_unet_forward_each(p2p_unet *g, const float *x, int n, uint64_t seed,
                                   const uint64_t *counters)
{
	if (check_n(g, n) != 0)
		return NULL;
	memcpy(g->counters, counters, n * sizeof *counters);
	return forward(g, x, n, 1, seed);
}

int p2p_unet_backward(p2p_unet *g, const float *dy, float *dx)
{
	const p2p_backend *be = g->be;
	const p2p_unet_cfg *c = &g->cfg;
	int k = g->k, n = g->n;
	if (n == 0)
		return p2p_err("unet: backward without a forward");
	for (int i = 0; i < k; i++)
		be->zero(g->gd[i], (size_t)n * g->ch[i] * g->hw[i]);

	/* tanh, then the outermost up conv: sa = d r_0 */
	size_t ny = (size_t)n * c->out_ch * c->size * c->size;
	be->zero(g->sc, ny);
	p2p_tanh_backward(be, g->sc, dy, g->y, ny);
	p2p_conv cv = at(&g->up[0], n);
	be->zero(g->sa, (size_t)n * up_in(c, k, 0) * g->hw[0]);
	if (p2p_convt2d_backward(be, &cv, g->sa, g->gwu[0], g->gbu[0], g->sc, g->r[0],
	                         g->wu[0], g->ws, g->ws_n) != 0)
		return -1;

	/* up blocks, outermost first: sa holds d r_i, r_i = ReLU([d_i | h_{i+1}]) */
	for (int i = 0; i <= k - 2; i++) {
		long plane = g->ch[i] * g->hw[i];
		size_t cnt = (size_t)n * plane;
		const float *rr = g->r[i];
		for (int s = 0; s < n; s++)
			p2p_relu_backward(be, g->gd[i] + plane * s, g->sa + 2 * plane * s,
			                  rr + 2 * plane * s, plane);
		be->zero(g->sb, cnt);       /* d z_{i+1} */
		if (drop_level(g, i + 1)) {
			uint64_t ds = drop_seed(g->seed, k - 2 - i);
			be->zero(g->sc, cnt);
			for (int s = 0; s < n; s++) {
				p2p_relu_backward(be, g->sc + plane * s, g->sa + 2 * plane * s + plane,
				                  rr + 2 * plane * s + plane, plane);
				p2p_dropout_backward(be, g->sb + plane * s, g->sc + plane * s, plane,
				                     c->dropout, ds, g->counters[s] * (uint64_t)plane);
			}
		} else {
			for (int s = 0; s < n; s++)
				p2p_relu_backward(be, g->sb + plane * s, g->sa + 2 * plane * s + plane,
				                  rr + 2 * plane * s + plane, plane);
		}
		be->zero(g->sc, cnt);
		p2p_instnorm_backward(be, g->sc, g->sb, g->z[i + 1], g->urstd[i + 1],
		                      n, g->ch[i], g->hw[i]);
		cv = at(&g->up[i + 1], n);
		be->zero(g->sa, (size_t)n * up_in(c, k, i + 1) * g->hw[i + 1]);
		if (p2p_convt2d_backward(be, &cv, g->sa, g->gwu[i + 1], g->gbu[i + 1], g->sc,
		                         g->r[i + 1], g->wu[i + 1], g->ws, g->ws_n) != 0)
			return -1;
	}
	/* the innermost up block's ReLU: r_{k-1} = ReLU(d_{k-1}) */
	p2p_relu_backward(be, g->gd[k - 1], g->sa, g->r[k - 1],
	                  (size_t)n * g->ch[k - 1] * g->hw[k - 1]);

	/* down, innermost first: gd[i] is complete once level i+1 is done */
	for (int i = k - 1; i >= 1; i--) {
		const float *t = g->gd[i];
		if (i <= k - 2) {
			be->zero(g->sa, (size_t)n * g->ch[i] * g->hw[i]);
			p2p_instnorm_backward(be, g->sa, g->gd[i], g->d[i], g->drstd[i],
			                      n, g->ch[i], g->hw[i]);
			t = g->sa;
		}
		size_t nin = (size_t)n * g->ch[i - 1] * g->hw[i - 1];
		cv = at(&g->down[i], n);
		be->zero(g->sb, nin);
		if (p2p_conv2d_backward(be, &cv, g->sb, g->gwd[i], g->gbd[i], t, g->l[i - 1],
		                        g->wd[i], g->ws, g->ws_n) != 0)
			return -1;
		p2p_leaky_backward(be, g->gd[i - 1], g->sb, g->l[i - 1], nin, SLOPE);
	}
	cv = at(&g->down[0], n);
	return p2p_conv2d_backward(be, &cv, dx, g->gwd[0], g->gbd[0], g->gd[0], g->x,
	                           g->wd[0], g->ws, g->ws_n);
}

/* ---- metadata ---- */

int p2p_unet_meta_add(p2p_st_writer *w, const p2p_unet_cfg *cfg)
{
	char v[5][32];
	snprintf(v[0], sizeof v[0], "%d", cfg->size);
	snprintf(v[1], sizeof v[1], "%d", cfg->in_ch);
	snprintf(v[2], sizeof v[2], "%d", cfg->out_ch);
	snprintf(v[3], sizeof v[3], "%d", cfg->ngf);
	snprintf(v[4], sizeof v[4], "%.9g", cfg->dropout);
	if (p2p_st_add_meta(w, "arch", "unet") != 0 ||
	    p2p_st_add_meta(w, "size", v[0]) != 0 ||
	    p2p_st_add_meta(w, "in_ch", v[1]) != 0 ||
	    p2p_st_add_meta(w, "out_ch", v[2]) != 0 ||
	    p2p_st_add_meta(w, "ngf", v[3]) != 0 ||
	    p2p_st_add_meta(w, "dropout", v[4]) != 0 ||
	    p2p_st_add_meta(w, "norm", "instance") != 0)
		return -1;
	return 0;
}

int p2p_unet_meta_read(const p2p_st *st, const char *path, p2p_unet_cfg *cfg)
{
	const char *arch = p2p_st_meta(st, "arch");
	if (!arch)
		return p2p_err("%s: no \"arch\" in the metadata (not a p2pcat generator)", path);
	if (strcmp(arch, "unet") != 0)
		return p2p_err("%s: a \"%s\" model, not a U-Net generator", path, arch);
	const char *norm = p2p_st_meta(st, "norm");
	if (norm && strcmp(norm, "instance") != 0)
		return p2p_err("%s: norm \"%s\" (only \"instance\" is supported)", path, norm);
	p2p_unet_cfg c;
	if (p2p_st_meta_int(st, path, "size", &c.size) != 0 ||
	    p2p_st_meta_int(st, path, "in_ch", &c.in_ch) != 0 ||
	    p2p_st_meta_int(st, path, "out_ch", &c.out_ch) != 0 ||
	    p2p_st_meta_int(st, path, "ngf", &c.ngf) != 0)
		return -1;
	const char *s = p2p_st_meta(st, "dropout");
	if (!s)
		return p2p_err("%s: no \"dropout\" in the metadata", path);
	char *end;
	c.dropout = strtof(s, &end);
	if (end == s || *end)
		return p2p_err("%s: metadata \"dropout\": bad value \"%s\"", path, s);
	if (check_cfg(&c, path) != 0)
		return -1;
	*cfg = c;
	return 0;
}
