/* The training step (step.h). */
#include "step.h"

#include <string.h>

#include "err.h"
#include "layers.h"

int p2p_step_init(p2p_step *st, const p2p_backend *be, p2p_unet *G, p2p_patchgan *D,
                  p2p_vgg *V, int bm, double lambda_l1, double lambda_perc,
                  float lr_g, float lr_d, float beta1, float beta2)
{
	memset(st, 0, sizeof *st);
	st->be = be, st->G = G, st->D = D, st->V = V, st->bm = bm;
	st->lambda_l1 = lambda_l1, st->lambda_perc = lambda_perc;
	int S = p2p_unet_config(G)->size, P = p2p_patchgan_out_size(D);
	st->ss = (size_t)S * S;
	st->pp = (size_t)P * P;
	st->nfeat = 256 * (st->ss / 16);
	size_t n = bm, ss = st->ss;
	if (!(st->xd = be->alloc(2 * n * 4 * ss)) || !(st->dd = be->alloc(2 * n * st->pp)) ||
	    !(st->dxd = be->alloc(n * 4 * ss)) || !(st->dfake = be->alloc(n * 3 * ss)) ||
	    (V && (!(st->freal = be->alloc(n * st->nfeat)) ||
	           !(st->dfeat = be->alloc(n * st->nfeat))))) {
		p2p_step_free(st);
		return -1;
	}
	p2p_adam_init(&st->ga, lr_g, beta1, beta2);
	p2p_adam_init(&st->da, lr_d, beta1, beta2);
	return 0;
}

void p2p_step_free(p2p_step *st)
{
	float *bufs[] = {st->xd, st->dd, st->dxd, st->dfake, st->freal, st->dfeat};
	for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++)
		st->be->free(bufs[i]);      /* NULL is fine */
	st->xd = st->dd = st->dxd = st->dfake = st->freal = st->dfeat = NULL;
}

/* grads, then Adam at lr */
static void update(p2p_step *st, p2p_adam *a, p2p_params *ps, int n, float lr)
{
	if (st->grads)
		st->grads(st->grads_ctx, ps, n);
	a->lr = lr;
	p2p_adam_step(a, ps);
}

int p2p_step_run(p2p_step *st, const float *a, const float *b, int n, uint64_t seed_drop,
                 uint64_t sample, float lr_g, float lr_d, double *loss)
{
	const p2p_backend *be = st->be;
	p2p_params *gp = p2p_unet_params(st->G), *dp = p2p_patchgan_params(st->D);
	memset(loss, 0, P2P_NLOSS * sizeof *loss);
	if (n == 0) {
		p2p_params_zero_grad(dp);
		update(st, &st->da, dp, 0, lr_d);
		p2p_params_zero_grad(gp);
		update(st, &st->ga, gp, 0, lr_g);
		return 0;
	}
	if (n < 0 || n > st->bm)
		return p2p_err("step: %d samples, the step holds 1 to %d", n, st->bm);
	size_t ss = st->ss, pp = st->pp;

	/* G forward once: D sees it detached, G's step differentiates it */
	const float *fake = p2p_unet_forward(st->G, a, n, 1, seed_drop, sample);
	if (!fake)
		return -1;
	float *xfake = st->xd + (size_t)n * 4 * ss;
	p2p_concat_forward(be, st->xd, a, b, n, 1, 3, ss);
	p2p_concat_forward(be, xfake, a, fake, n, 1, 3, ss);

	/* D: real and fake as one batch of 2n (InstanceNorm is per sample);
	 * loss_D = (MSE(D(real), 1) + MSE(D(fake), 0)) / 2 */
	p2p_params_zero_grad(dp);
	const float *dout = p2p_patchgan_forward(st->D, st->xd, 2 * n);
	if (!dout)
		return -1;
	be->zero(st->dd, 2 * n * pp);
	double lreal = p2p_mse_const_loss(be, dout, n * pp, 1.0f, st->dd, 0.5f);
	double lfake = p2p_mse_const_loss(be, dout + n * pp, n * pp, 0.0f, st->dd + n * pp, 0.5f);
	if (p2p_patchgan_backward(st->D, st->dd, NULL, 1))
		return -1;
	update(st, &st->da, dp, n, lr_d);

	/* G: fool the updated D, plus L1 and perceptual terms */
	if (!(dout = p2p_patchgan_forward(st->D, xfake, n)))
		return -1;
	be->zero(st->dd, n * pp);
	double lgan = p2p_mse_const_loss(be, dout, n * pp, 1.0f, st->dd, 1.0f);
	be->zero(st->dxd, n * 4 * ss);
	if (p2p_patchgan_backward(st->D, st->dd, st->dxd, 0))
		return -1;
	be->zero(st->dfake, n * 3 * ss);
	p2p_concat_backward(be, NULL, st->dfake, st->dxd, n, 1, 3, ss);
	double l1 = p2p_l1_loss(be, fake, b, n * 3 * ss, st->dfake, (float)st->lambda_l1);
	double perc = 0;
	if (st->V) {
		const float *freal = p2p_vgg_forward(st->V, b, n);
		if (!freal)
			return -1;
		be->copy(st->freal, freal, n * st->nfeat);
		const float *ffake = p2p_vgg_forward(st->V, fake, n);
		if (!ffake)
			return -1;
		be->zero(st->dfeat, n * st->nfeat);
		perc = p2p_mse_loss(be, ffake, st->freal, n * st->nfeat, st->dfeat,
		                    (float)st->lambda_perc);
		if (p2p_vgg_backward(st->V, st->dfeat, st->dfake))
			return -1;
	}
	p2p_params_zero_grad(gp);
	if (p2p_unet_backward(st->G, st->dfake, NULL))
		return -1;
	update(st, &st->ga, gp, n, lr_g);

	loss[P2P_LOSS_D] = 0.5 * (lreal + lfake);
	loss[P2P_LOSS_GAN] = lgan;
	loss[P2P_LOSS_L1] = l1;
	loss[P2P_LOSS_PERC] = perc;
	loss[P2P_LOSS_G] = lgan + st->lambda_l1 * l1 + st->lambda_perc * perc;
	return 0;
}
