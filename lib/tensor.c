/* Tensors, parameter sets and backend lookup. */
#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

/* The Makefile defines P2P_CUDA when it builds the CUDA objects. */
#ifdef P2P_CUDA
#define HAVE_CUDA_BACKEND 1
#else
#define HAVE_CUDA_BACKEND 0
#endif

const p2p_backend *p2p_backend_get(const char *name)
{
	const p2p_backend *be = NULL;
	if (strcmp(name, "cpu") == 0)
		be = p2p_backend_cpu();
#if HAVE_CUDA_BACKEND
	else if (strcmp(name, "cuda") == 0)
		be = p2p_backend_cuda();
#else
	else if (strcmp(name, "cuda") == 0) {
		p2p_err("cuda: this build has no CUDA backend (nvcc was not found or CUDA=0)");
		return NULL;
	}
#endif
	else {
		p2p_err("%s: unknown device (cpu or cuda)", name);
		return NULL;
	}
	if (be->init && be->init() != 0)
		return NULL;
	return be;
}

/* ---- tensors ---- */

#define NUMEL_MAX ((size_t)1 << 40)

size_t p2p_shape_numel(int ndim, const int *shape)
{
	size_t n = 1;
	if (ndim < 0 || ndim > P2P_MAXDIM)
		return 0;
	for (int i = 0; i < ndim; i++) {
		if (shape[i] < 0)
			return 0;
		n *= (size_t)shape[i];
		if (n > NUMEL_MAX)
			return 0;
	}
	return n;
}

char *p2p_shape_str(char *buf, size_t n, int ndim, const int *shape)
{
	size_t k = 0;
	k += snprintf(buf + k, n - k, "(");
	for (int i = 0; i < ndim && k < n; i++)
		k += snprintf(buf + k, n - k, i ? ", %d" : "%d", shape[i]);
	if (k < n)
		snprintf(buf + k, n - k, ")");
	return buf;
}

static int set_shape(p2p_tensor *t, int ndim, const int *shape)
{
	if (ndim < 1 || ndim > P2P_MAXDIM)
		return p2p_err("tensor: %d dimensions (1 to %d)", ndim, P2P_MAXDIM);
	size_t n = p2p_shape_numel(ndim, shape);
	if (n == 0) {
		char b[80];
		return p2p_err("tensor: bad shape %s", p2p_shape_str(b, sizeof b, ndim, shape));
	}
	t->ndim = ndim;
	for (int i = 0; i < P2P_MAXDIM; i++)
		t->shape[i] = i < ndim ? shape[i] : 1;
	t->numel = n;
	return 0;
}

int p2p_tensor_alloc(p2p_tensor *t, const p2p_backend *be, int ndim, const int *shape)
{
	memset(t, 0, sizeof *t);
	if (set_shape(t, ndim, shape) != 0)
		return -1;
	t->be = be;
	t->data = be->alloc(t->numel);
	if (!t->data)
		return -1;
	t->owned = 1;
	return 0;
}

int p2p_tensor_alloc4(p2p_tensor *t, const p2p_backend *be, int n, int c, int h, int w)
{
	int s[4] = {n, c, h, w};
	return p2p_tensor_alloc(t, be, 4, s);
}

p2p_tensor p2p_tensor_view(const p2p_backend *be, float *data, int ndim, const int *shape)
{
	p2p_tensor t;
	memset(&t, 0, sizeof t);
	if (set_shape(&t, ndim, shape) != 0)
		return t;
	t.be = be;
	t.data = data;
	return t;
}

void p2p_tensor_free(p2p_tensor *t)
{
	if (t->owned && t->be && t->data)
		t->be->free(t->data);
	memset(t, 0, sizeof *t);
}

void p2p_tensor_zero(p2p_tensor *t)
{
	if (t->data)
		t->be->zero(t->data, t->numel);
}

int p2p_tensor_check4(const p2p_tensor *t, const char *what, int n, int c, int h, int w)
{
	int want[4] = {n, c, h, w};
	if (t->ndim == 4 && memcmp(t->shape, want, sizeof want) == 0)
		return 0;
	char a[80], b[80];
	return p2p_err("%s: shape %s, expected %s", what,
	               p2p_shape_str(a, sizeof a, t->ndim, t->shape),
	               p2p_shape_str(b, sizeof b, 4, want));
}

int p2p_tensor_same_shape(const p2p_tensor *a, const p2p_tensor *b)
{
	return a->ndim == b->ndim &&
	       memcmp(a->shape, b->shape, a->ndim * sizeof a->shape[0]) == 0;
}

/* ---- parameter sets ---- */

int p2p_params_create(p2p_params *ps, const p2p_backend *be,
                      const p2p_param_spec *spec, int count)
{
	memset(ps, 0, sizeof *ps);
	ps->be = be;
	if (count < 1)
		return p2p_err("parameters: empty table");
	ps->name = calloc(count, sizeof *ps->name);
	ps->shape = calloc(count, sizeof *ps->shape);
	ps->ndim = calloc(count, sizeof *ps->ndim);
	ps->init = calloc(count, sizeof *ps->init);
	ps->offset = calloc(count, sizeof *ps->offset);
	ps->numel = calloc(count, sizeof *ps->numel);
	if (!ps->name || !ps->shape || !ps->ndim || !ps->init || !ps->offset || !ps->numel) {
		p2p_params_free(ps);
		return p2p_err("parameters: out of memory");
	}
	ps->count = count;
	size_t off = 0;
	for (int i = 0; i < count; i++) {
		const p2p_param_spec *s = &spec[i];
		char b[80];
		if (!s->name || !*s->name) {
			p2p_params_free(ps);
			return p2p_err("parameters: entry %d has no name", i);
		}
		for (int j = 0; j < i; j++)
			if (strcmp(ps->name[j], s->name) == 0) {
				p2p_params_free(ps);
				return p2p_err("parameters: %s: duplicate name", s->name);
			}
		size_t n = s->ndim >= 1 ? p2p_shape_numel(s->ndim, s->shape) : 0;
		if (n == 0) {
			p2p_params_free(ps);
			return p2p_err("parameters: %s: bad shape %s", s->name,
			               s->ndim >= 1 && s->ndim <= P2P_MAXDIM ?
			               p2p_shape_str(b, sizeof b, s->ndim, s->shape) : "(rank)");
		}
		ps->name[i] = strdup(s->name);
		if (!ps->name[i]) {
			p2p_params_free(ps);
			return p2p_err("parameters: out of memory");
		}
		ps->ndim[i] = s->ndim;
		for (int d = 0; d < P2P_MAXDIM; d++)
			ps->shape[i][d] = d < s->ndim ? s->shape[d] : 1;
		ps->init[i] = s->init;
		ps->offset[i] = off;
		ps->numel[i] = n;
		off += (n + 15) & ~(size_t)15;   /* 64-byte aligned tensors */
	}
	ps->total = off;
	float **bufs[4] = {&ps->data, &ps->grad, &ps->m, &ps->v};
	for (int k = 0; k < 4; k++) {
		*bufs[k] = be->alloc(ps->total);
		if (!*bufs[k]) {
			p2p_params_free(ps);
			return -1;
		}
		be->zero(*bufs[k], ps->total);
	}
	return 0;
}

void p2p_params_free(p2p_params *ps)
{
	if (ps->name)
		for (int i = 0; i < ps->count; i++)
			free(ps->name[i]);
	free(ps->name);
	free(ps->shape);
	free(ps->ndim);
	free(ps->init);
	free(ps->offset);
	free(ps->numel);
	if (ps->be) {
		ps->be->free(ps->data);
		ps->be->free(ps->grad);
		ps->be->free(ps->m);
		ps->be->free(ps->v);
	}
	memset(ps, 0, sizeof *ps);
}

int p2p_params_find(const p2p_params *ps, const char *name)
{
	for (int i = 0; i < ps->count; i++)
		if (strcmp(ps->name[i], name) == 0)
			return i;
	return -1;
}

float *p2p_params_data(const p2p_params *ps, const char *name)
{
	int i = p2p_params_find(ps, name);
	return i < 0 ? NULL : ps->data + ps->offset[i];
}

float *p2p_params_grad(const p2p_params *ps, const char *name)
{
	int i = p2p_params_find(ps, name);
	return i < 0 ? NULL : ps->grad + ps->offset[i];
}

int p2p_params_init(p2p_params *ps, p2p_rng *r, float std)
{
	float *h = calloc(ps->total ? ps->total : 1, sizeof *h);
	if (!h)
		return p2p_err("parameters: out of memory");
	for (int i = 0; i < ps->count; i++) {
		float *d = h + ps->offset[i];
		for (size_t j = 0; j < ps->numel[i]; j++)
			d[j] = ps->init[i] == P2P_INIT_NORMAL ? (float)(std * p2p_rng_normal(r)) :
			       ps->init[i] == P2P_INIT_ONE ? 1.0f : 0.0f;
	}
	ps->be->upload(ps->data, h, ps->total);
	free(h);
	return 0;
}

void p2p_params_zero_grad(p2p_params *ps)
{
	ps->be->zero(ps->grad, ps->total);
}

size_t p2p_params_count(const p2p_params *ps)
{
	size_t n = 0;
	for (int i = 0; i < ps->count; i++)
		n += ps->numel[i];
	return n;
}
