/* Adam over a parameter set (PyTorch's torch.optim.Adam formula with bias
 * correction): one fused backend call over the flat buffers. Each parameter
 * group (G, D) has its own p2p_params and its own p2p_adam, so learning rates
 * differ per group; the trainer sets lr before each step (a schedule). */
#ifndef P2P_ADAM_H
#define P2P_ADAM_H

#include "tensor.h"

typedef struct {
	float lr;           /* per step; a scheduler may change it */
	float beta1, beta2;
	float eps;          /* 1e-8 */
	float weight_decay; /* L2 added to the gradient, as torch.optim.Adam; 0 */
	long step;          /* steps taken; saved in checkpoints */
} p2p_adam;

/* lr, betas; eps 1e-8, no weight decay, step 0. */
void p2p_adam_init(p2p_adam *a, float lr, float beta1, float beta2);
/* One step: step += 1, then update ps->data from ps->grad with ps->m, ps->v. */
void p2p_adam_step(p2p_adam *a, p2p_params *ps);

#endif
