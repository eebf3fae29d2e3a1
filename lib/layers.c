/* The thin layers: normalisation, activations, dropout, pooling, concat and
 * losses, each a call or two into the backend. (Convolutions: conv.c.) */
#include "layers.h"

void p2p_instnorm_forward(const p2p_backend *be, float *y, float *mean, float *rstd,
                          const float *x, int n, int c, long hw)
{
	be->instnorm_fwd(x, y, mean, rstd, n * c, hw, P2P_IN_EPS);
}

void p2p_instnorm_backward(const p2p_backend *be, float *dx, const float *dy,
                           const float *y, const float *rstd, int n, int c, long hw)
{
	be->instnorm_bwd(dy, y, rstd, dx, n * c, hw);
}

void p2p_leaky_forward(const p2p_backend *be, float *y, const float *x, size_t count, float slope)
{
	be->leaky_fwd(x, y, count, slope);
}

void p2p_leaky_backward(const p2p_backend *be, float *dx, const float *dy, const float *y,
                        size_t count, float slope)
{
	be->leaky_bwd(y, dy, dx, count, slope);
}

void p2p_relu_forward(const p2p_backend *be, float *y, const float *x, size_t count)
{
	be->leaky_fwd(x, y, count, 0);
}

void p2p_relu_backward(const p2p_backend *be, float *dx, const float *dy, const float *y,
                       size_t count)
{
	be->leaky_bwd(y, dy, dx, count, 0);
}

void p2p_tanh_forward(const p2p_backend *be, float *y, const float *x, size_t count)
{
	be->tanh_fwd(x, y, count);
}

void p2p_tanh_backward(const p2p_backend *be, float *dx, const float *dy, const float *y,
                       size_t count)
{
	be->tanh_bwd(y, dy, dx, count);
}

void p2p_dropout_forward(const p2p_backend *be, float *y, const float *x, size_t count,
                         float p, uint64_t seed, uint64_t counter)
{
	be->dropout_fwd(x, y, count, p, seed, counter);
}

void p2p_dropout_backward(const p2p_backend *be, float *dx, const float *dy, size_t count,
                          float p, uint64_t seed, uint64_t counter)
{
	be->dropout_bwd(dy, dx, count, p, seed, counter);
}

void p2p_maxpool2_forward(const p2p_backend *be, float *y, const float *x,
                          int n, int c, int h, int w)
{
	be->maxpool2_fwd(x, y, n * c, h, w);
}

void p2p_maxpool2_backward(const p2p_backend *be, float *dx, const float *dy,
                           const float *x, int n, int c, int h, int w)
{
	be->maxpool2_bwd(x, dy, dx, n * c, h, w);
}

void p2p_concat_forward(const p2p_backend *be, float *y, const float *a, const float *b,
                        int n, int ca, int cb, long hw)
{
	long row = (long)(ca + cb) * hw;
	be->copy2d(y, row, a, ca * hw, n, ca * hw, 0);
	be->copy2d(y + ca * hw, row, b, cb * hw, n, cb * hw, 0);
}

void p2p_concat_backward(const p2p_backend *be, float *da, float *db, const float *dy,
                         int n, int ca, int cb, long hw)
{
	long row = (long)(ca + cb) * hw;
	if (da)
		be->copy2d(da, ca * hw, dy, row, n, ca * hw, 1);
	if (db)
		be->copy2d(db, cb * hw, dy + ca * hw, row, n, cb * hw, 1);
}

double p2p_mse_const_loss(const p2p_backend *be, const float *a, size_t count,
                          float target, float *da, float gscale)
{
	return be->mse_const(a, count, target, da, gscale);
}

double p2p_mse_loss(const p2p_backend *be, const float *a, const float *b, size_t count,
                    float *da, float gscale)
{
	return be->mse(a, b, count, da, gscale);
}

double p2p_l1_loss(const p2p_backend *be, const float *a, const float *b, size_t count,
                   float *da, float gscale)
{
	return be->l1(a, b, count, da, gscale);
}
