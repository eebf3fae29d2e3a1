/* Adam over a parameter set: one fused backend call per step. */
#include "adam.h"

void p2p_adam_init(p2p_adam *a, float lr, float beta1, float beta2)
{
	a->lr = lr;
	a->beta1 = beta1;
	a->beta2 = beta2;
	a->eps = 1e-8f;
	a->weight_decay = 0;
	a->step = 0;
}

void p2p_adam_step(p2p_adam *a, p2p_params *ps)
{
	a->step++;
	/* the alignment gaps have zero gradient and stay zero */
	ps->be->adam(ps->data, ps->grad, ps->m, ps->v, ps->total, a->lr, a->beta1,
	             a->beta2, a->eps, a->weight_decay, a->step);
}
