/* Adam against steps worked out by hand from PyTorch's formula, and the
 * fused step over a parameter set against a per-element float64 loop. */
#include <stdlib.h>

#include "adam.h"
#include "check.h"

static const p2p_backend *be;

/* One parameter, three steps. Step 1 by hand, p = 1, g = 0.5, lr 0.1,
 * betas (0.9, 0.999): m = 0.05, v = 0.00025, m^ = 0.05/0.1 = 0.5,
 * v^ = 0.00025/0.001 = 0.25, p = 1 - 0.1 * 0.5 / (0.5 + 1e-8) = 0.9000000020.
 * Step 2, g = -0.25: m = 0.045 - 0.025 = 0.02, v = 0.00024975 + 0.0000625
 * = 0.00031225, m^ = 0.02/0.19, v^ = 0.00031225/0.001999,
 * p = 0.9 - 0.1 * 0.1052632 / 0.3952248 = 0.8733662987. */
static void run1(float p0, const float *g, int steps, float lr, float b1, float b2,
                 float wd, const double *want)
{
	p2p_param_spec spec = {"p", 1, {1}, P2P_INIT_ZERO};
	p2p_params ps;
	CHECK(p2p_params_create(&ps, be, &spec, 1) == 0);
	p2p_adam a;
	p2p_adam_init(&a, lr, b1, b2);
	a.weight_decay = wd;
	CHECK(a.eps == 1e-8f && a.step == 0);
	ps.data[0] = p0;
	for (int t = 0; t < steps; t++) {
		ps.grad[0] = g[t];
		p2p_adam_step(&a, &ps);
		CHECKF(fabs(ps.data[0] - want[t]) <= 2e-7 * fabs(want[t]),
		       "step %d: %.10f, want %.10f", t + 1, ps.data[0], want[t]);
	}
	CHECK(a.step == steps);
	p2p_params_free(&ps);
}

static void test_hand_steps(void)
{
	float g1[3] = {0.5f, -0.25f, 0.125f};
	double w1[3] = {0.9000000020, 0.8733662987, 0.8393233849};
	run1(1, g1, 3, 0.1f, 0.9f, 0.999f, 0, w1);
	/* the project's betas (0.5, 0.999) and G's lr 2e-4 */
	float g2[3] = {1e-3f, 2e-3f, -4e-3f};
	double w2[3] = {-2.0001999980, -2.0004107835, -2.0002920376};
	run1(-2, g2, 3, 2e-4f, 0.5f, 0.999f, 0, w2);
	/* L2 weight decay, added to the gradient as torch.optim.Adam does */
	double w3[2] = {0.9000000017, 0.8544413675};
	run1(1, g1, 2, 0.1f, 0.9f, 0.999f, 0.1f, w3);
}

/* Many tensors, many steps, a learning rate changed between steps. */
static void test_flat_buffer(void)
{
	p2p_param_spec spec[3] = {
		{"a.weight", 4, {3, 2, 3, 3}, P2P_INIT_NORMAL},
		{"a.bias", 1, {3}, P2P_INIT_ZERO},
		{"b.weight", 2, {5, 7}, P2P_INIT_NORMAL},
	};
	p2p_params ps;
	CHECK(p2p_params_create(&ps, be, spec, 3) == 0);
	p2p_rng r;
	p2p_rng_seed(&r, 3);
	p2p_params_init(&ps, &r, 0.02f);
	size_t n = ps.total;
	double *p = malloc(n * 8), *m = calloc(n, 8), *v = calloc(n, 8);
	for (size_t i = 0; i < n; i++)
		p[i] = ps.data[i];
	p2p_adam a;
	p2p_adam_init(&a, 2e-4f, 0.5f, 0.999f);
	for (int t = 1; t <= 5; t++) {
		a.lr = 2e-4f / t;
		p2p_params_zero_grad(&ps);
		for (int k = 0; k < ps.count; k++)
			for (size_t j = 0; j < ps.numel[k]; j++)
				ps.grad[ps.offset[k] + j] = (float)p2p_rng_normal(&r);
		p2p_adam_step(&a, &ps);
		for (size_t i = 0; i < n; i++) {
			double g = ps.grad[i];
			m[i] = 0.5 * m[i] + 0.5 * g;
			v[i] = 0.999 * v[i] + 0.001 * g * g;
			double mh = m[i] / (1 - pow(0.5, t)), vh = v[i] / (1 - pow(0.999, t));
			p[i] -= (double)a.lr * mh / (sqrt(vh) + 1e-8);
		}
	}
	double e = 0;
	for (size_t i = 0; i < n; i++)
		e = fmax(e, fabs(ps.data[i] - p[i]));
	CHECKF(e < 1e-7, "max |p - ref| %.2e", e);
	/* the alignment gaps between tensors stay zero */
	int gaps = 0;
	for (int k = 0; k < ps.count; k++) {
		size_t end = ps.offset[k] + ps.numel[k], next = k + 1 < ps.count ? ps.offset[k + 1] : n;
		for (size_t i = end; i < next; i++)
			gaps += ps.data[i] != 0 || ps.m[i] != 0 || ps.v[i] != 0;
	}
	CHECK(gaps == 0);
	free(p), free(m), free(v);
	p2p_params_free(&ps);
}

int main(void)
{
	be = p2p_backend_get("cpu");
	RUN(test_hand_steps);
	RUN(test_flat_buffer);
	return CHECK_DONE();
}
