/* Tensors and parameter sets over a backend.
 *
 * A p2p_tensor is a float32, NCHW, contiguous buffer in backend memory with
 * its shape (up to 4 dimensions); it owns its buffer unless it is a view.
 *
 * A p2p_params lays out many named parameter tensors in one flat allocation,
 * with gradients and Adam moments as parallel flat buffers of the same layout:
 * one loop for the optimiser, one transfer for a checkpoint. */
#ifndef P2P_TENSOR_H
#define P2P_TENSOR_H

#include <stddef.h>

#include "backend.h"
#include "rng.h"

#define P2P_MAXDIM 4

typedef struct {
	float *data;                /* backend memory */
	int ndim;
	int shape[P2P_MAXDIM];      /* unused dimensions are 1 */
	size_t numel;
	const p2p_backend *be;
	int owned;                  /* free() releases data */
} p2p_tensor;

/* Allocate (uninitialised); -1 + p2p_err on a bad shape or no memory. */
int p2p_tensor_alloc(p2p_tensor *t, const p2p_backend *be, int ndim, const int *shape);
int p2p_tensor_alloc4(p2p_tensor *t, const p2p_backend *be, int n, int c, int h, int w);
/* A non-owning view of numel floats at data with the given shape. */
p2p_tensor p2p_tensor_view(const p2p_backend *be, float *data, int ndim, const int *shape);
void p2p_tensor_free(p2p_tensor *t);         /* safe on a zeroed or freed tensor */
void p2p_tensor_zero(p2p_tensor *t);
/* Shape check: 0 if t is (n, c, h, w) (ndim 4), else -1 + p2p_err naming what. */
int p2p_tensor_check4(const p2p_tensor *t, const char *what, int n, int c, int h, int w);
int p2p_tensor_same_shape(const p2p_tensor *a, const p2p_tensor *b);
/* Product of a shape; 0 on a negative dimension or overflow past 2^40. */
size_t p2p_shape_numel(int ndim, const int *shape);
/* "(2, 3, 64, 64)" into buf (at least 64 bytes); returns buf. */
char *p2p_shape_str(char *buf, size_t n, int ndim, const int *shape);

/* ---- parameter sets ---- */

enum { P2P_INIT_NORMAL = 0, P2P_INIT_ZERO = 1, P2P_INIT_ONE = 2 };

typedef struct {
	const char *name;           /* e.g. "down.1.weight" (copied) */
	int ndim;
	int shape[P2P_MAXDIM];
	int init;                   /* P2P_INIT_*: weights normal(0, std), biases 0 */
} p2p_param_spec;

typedef struct {
	int count;
	char **name;                /* count names */
	int (*shape)[P2P_MAXDIM];   /* count shapes */
	int *ndim, *init;
	size_t *offset, *numel;     /* tensor i is data + offset[i], numel[i] floats */
	size_t total;               /* floats in each flat buffer */
	float *data, *grad, *m, *v; /* backend memory, total floats each; m, v are
	                             * zeroed at creation, grad by zero_grad */
	const p2p_backend *be;
} p2p_params;

/* Lay out count tensors (offsets aligned to 16 floats) and allocate the four
 * buffers; -1 + p2p_err on a bad or duplicate name or shape, or no memory. */
int p2p_params_create(p2p_params *ps, const p2p_backend *be,
                      const p2p_param_spec *spec, int count);
void p2p_params_free(p2p_params *ps);        /* safe on a zeroed or freed set */
/* Index of a name, or -1 (no message). */
int p2p_params_find(const p2p_params *ps, const char *name);
/* The tensor's data / gradient in backend memory; NULL if no such name. */
float *p2p_params_data(const p2p_params *ps, const char *name);
float *p2p_params_grad(const p2p_params *ps, const char *name);
/* Fill data in table order from r: P2P_INIT_NORMAL draws normal(0, std) for
 * each element in order, the others 0 or 1. Alignment gaps are zero. */
int p2p_params_init(p2p_params *ps, p2p_rng *r, float std);
void p2p_params_zero_grad(p2p_params *ps);
/* The sizes of data for sanity checks and logs. */
size_t p2p_params_count(const p2p_params *ps);  /* sum of numel, no gaps */

#endif
