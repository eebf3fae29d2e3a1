/* NumPy .npy v1.0 files: dtypes |u1 and <f4, C order, up to 4 dimensions.
 * Readers check the header strictly and never trust its sizes: the declared
 * shape must match the bytes actually present. */
#ifndef P2P_NPY_H
#define P2P_NPY_H

#include <stddef.h>

enum { P2P_U8 = 1, P2P_F32 = 4 };   /* the value is the item size */

typedef struct {
	int dtype;          /* P2P_U8 or P2P_F32 */
	int ndim;
	long shape[4];
	size_t count;       /* product of shape */
	void *data;         /* count items, malloc'd */
} p2p_npy;

int p2p_npy_read(const char *path, p2p_npy *a);          /* "-" = stdin */
/* Parse an in-memory file; name is used in messages. */
int p2p_npy_parse(const void *buf, size_t n, const char *name, p2p_npy *a);
/* Write atomically ("-" = stdout, not atomic). */
int p2p_npy_write(const char *path, int dtype, int ndim, const long *shape, const void *data);
/* Encode into a malloc'd buffer. */
int p2p_npy_encode(int dtype, int ndim, const long *shape, const void *data, void **buf, size_t *n);
void p2p_npy_free(p2p_npy *a);

/* A 2-D heatmap as floats in [0, 1]: |u1 is divided by 255, <f4 taken as is.
 * *out is malloc'd (h*w floats). */
int p2p_heatmap_read(const char *path, int *h, int *w, float **out);

#endif
