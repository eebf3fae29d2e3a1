/* One optimiser step of Pix2Pix, as the reference trains: D on real and
 * fake, then G against the updated D, plus L1 and the perceptual loss. The
 * trainer and the GPU parity test run this one step, so that what the test
 * compares is what the trainer does.
 *
 * The step owns D's input and the gradients' buffers for up to `bm`
 * samples and the two Adam states; the models and the batch (A and real B,
 * backend memory) are the caller's. */
#ifndef P2P_STEP_H
#define P2P_STEP_H

#include <stdint.h>

#include "adam.h"
#include "backend.h"
#include "models.h"

/* The losses, in the order of a checkpoint's sums (P2P_CKPT_NSUMS). */
enum { P2P_LOSS_D, P2P_LOSS_G, P2P_LOSS_GAN, P2P_LOSS_L1, P2P_LOSS_PERC, P2P_NLOSS };

typedef struct {
	const p2p_backend *be;
	p2p_unet *G;
	p2p_patchgan *D;
	p2p_vgg *V;                 /* NULL: no perceptual loss */
	p2p_adam ga, da;            /* G's and D's; lr is set by every step */
	double lambda_l1, lambda_perc;  /* the gradients get them as floats */
	int bm;                     /* samples a step holds at most */
	size_t ss, pp, nfeat;       /* per sample: S*S, D's patches, VGG features */
	float *xd;                  /* D's input, (2 bm, 4, S, S): [A|real ; A|fake] */
	float *dd, *dxd, *dfake;    /* gradients: D's output, D's input, G's output */
	float *freal, *dfeat;       /* VGG features of the real batch, their gradient */
	/* Called with D's, then G's parameters between their backward and
	 * their Adam step, and n, this step's samples (MPI averages the
	 * gradients here); NULL: nothing. */
	void (*grads)(void *ctx, p2p_params *ps, int n);
	void *grads_ctx;
} p2p_step;

/* The buffers for bm samples of G's size; Adam states from lr, betas (as
 * p2p_adam_init). -1 + p2p_err when memory runs out (nothing to free). */
int p2p_step_init(p2p_step *st, const p2p_backend *be, p2p_unet *G, p2p_patchgan *D,
                  p2p_vgg *V, int bm, double lambda_l1, double lambda_perc,
                  float lr_g, float lr_d, float beta1, float beta2);
void p2p_step_free(p2p_step *st);

/* D then G on the n samples a (n, 1, S, S), b (n, 3, S, S) with G's dropout
 * from (seed_drop, sample .. sample + n - 1); the losses (P2P_NLOSS) into
 * loss. n = 0 (a rank with no share of a small batch, under MPI) still
 * calls grads and takes both Adam steps, from zero gradients, and gives
 * zero losses. -1 + p2p_err when a model fails. */
int p2p_step_run(p2p_step *st, const float *a, const float *b, int n, uint64_t seed_drop,
                 uint64_t sample, float lr_g, float lr_d, double *loss);

#endif
