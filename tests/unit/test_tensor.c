/* Tensors, shapes and parameter sets: layout, lookup, initialisation. */
#include <stdlib.h>

#include "check.h"
#include "err.h"
#include "tensor.h"

static const p2p_backend *be;

static void test_tensor(void)
{
	p2p_tensor t;
	CHECK(p2p_tensor_alloc4(&t, be, 2, 3, 4, 5) == 0);
	CHECK(t.numel == 120 && t.ndim == 4 && t.owned);
	p2p_tensor_zero(&t);
	CHECK(be->sum(t.data, t.numel) == 0);
	CHECK(p2p_tensor_check4(&t, "x", 2, 3, 4, 5) == 0);
	CHECK(p2p_tensor_check4(&t, "x", 2, 3, 5, 4) == -1);
	CHECKF(strcmp(p2p_errmsg(), "x: shape (2, 3, 4, 5), expected (2, 3, 5, 4)") == 0, "%s", p2p_errmsg());
	int s2[2] = {6, 20};
	p2p_tensor v = p2p_tensor_view(be, t.data, 2, s2);
	CHECK(v.numel == 120 && !v.owned && v.shape[2] == 1);
	CHECK(!p2p_tensor_same_shape(&t, &v));
	p2p_tensor_free(&v);          /* a view does not free */
	p2p_tensor_free(&t);
	p2p_tensor_free(&t);          /* twice is fine */
	int bad[2] = {3, -1};
	CHECK(p2p_tensor_alloc(&t, be, 2, bad) == -1);
	CHECKF(strstr(p2p_errmsg(), "bad shape (3, -1)") != NULL, "%s", p2p_errmsg());
	CHECK(p2p_tensor_alloc(&t, be, 5, bad) == -1);
	int huge[4] = {1 << 20, 1 << 20, 1 << 20, 1};
	CHECK(p2p_shape_numel(4, huge) == 0);
}

static void test_params_layout(void)
{
	p2p_param_spec spec[4] = {
		{"c1.weight", 4, {64, 1, 4, 4}, P2P_INIT_NORMAL},
		{"c1.bias", 1, {64}, P2P_INIT_ZERO},
		{"c2.weight", 4, {3, 5, 3, 3}, P2P_INIT_NORMAL},
		{"c2.bias", 1, {3}, P2P_INIT_ZERO},
	};
	p2p_params ps;
	CHECK(p2p_params_create(&ps, be, spec, 4) == 0);
	CHECK(ps.count == 4 && p2p_params_count(&ps) == 1024 + 64 + 135 + 3);
	for (int i = 0; i < 4; i++)
		CHECK(ps.offset[i] % 16 == 0);
	CHECK(ps.offset[3] + ps.numel[3] <= ps.total);
	CHECK(p2p_params_find(&ps, "c2.weight") == 2 && p2p_params_find(&ps, "x") == -1);
	CHECK(p2p_params_data(&ps, "c2.bias") == ps.data + ps.offset[3]);
	CHECK(p2p_params_grad(&ps, "c1.bias") == ps.grad + ps.offset[1]);
	CHECK(p2p_params_data(&ps, "nope") == NULL);
	CHECK(ps.shape[2][1] == 5 && ps.ndim[1] == 1);
	p2p_rng r;
	p2p_rng_seed(&r, 1);
	CHECK(p2p_params_init(&ps, &r, 0.02f) == 0);
	/* weights normal(0, 0.02), biases 0 */
	double s = 0, s2 = 0;
	for (size_t i = 0; i < ps.numel[0]; i++)
		s += ps.data[i], s2 += (double)ps.data[i] * ps.data[i];
	double mean = s / ps.numel[0], sd = sqrt(s2 / ps.numel[0] - mean * mean);
	CHECKF(fabs(mean) < 0.003 && fabs(sd - 0.02) < 0.003, "mean %g sd %g", mean, sd);
	int nz = 0;
	for (size_t i = 0; i < 64; i++)
		nz += ps.data[ps.offset[1] + i] != 0;
	CHECK(nz == 0);
	/* same seed, same weights */
	p2p_params ps2;
	CHECK(p2p_params_create(&ps2, be, spec, 4) == 0);
	p2p_rng_seed(&r, 1);
	p2p_params_init(&ps2, &r, 0.02f);
	CHECK(memcmp(ps.data, ps2.data, ps.total * 4) == 0);
	ps.grad[5] = 1;
	p2p_params_zero_grad(&ps);
	CHECK(be->sum(ps.grad, ps.total) == 0);
	CHECK(be->sum(ps.m, ps.total) == 0 && be->sum(ps.v, ps.total) == 0);
	p2p_params_free(&ps2);
	p2p_params_free(&ps);
	p2p_params_free(&ps);
}

static void test_params_bad(void)
{
	p2p_params ps;
	p2p_param_spec dup[2] = {{"a", 1, {3}, 0}, {"a", 1, {4}, 0}};
	CHECK(p2p_params_create(&ps, be, dup, 2) == -1);
	CHECKF(strstr(p2p_errmsg(), "a: duplicate name") != NULL, "%s", p2p_errmsg());
	p2p_param_spec zero[1] = {{"w", 2, {3, 0}, 0}};
	CHECK(p2p_params_create(&ps, be, zero, 1) == -1);
	CHECKF(strstr(p2p_errmsg(), "w: bad shape (3, 0)") != NULL, "%s", p2p_errmsg());
	p2p_param_spec noname[1] = {{"", 1, {3}, 0}};
	CHECK(p2p_params_create(&ps, be, noname, 1) == -1);
	CHECK(p2p_params_create(&ps, be, noname, 0) == -1);
	p2p_params_free(&ps);
}

static void test_backend_lookup(void)
{
	CHECK(p2p_backend_get("cpu") == p2p_backend_cpu());
	CHECK(p2p_backend_get("tpu") == NULL);
	CHECKF(strcmp(p2p_errmsg(), "tpu: unknown device (cpu or cuda)") == 0, "%s", p2p_errmsg());
}

int main(void)
{
	be = p2p_backend_get("cpu");
	RUN(test_tensor);
	RUN(test_params_layout);
	RUN(test_params_bad);
	RUN(test_backend_lookup);
	return CHECK_DONE();
}
