#include "npy.h"
#include "atomic.h"
#include "err.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NPY_MAX_BYTES ((size_t)1 << 32)   /* 4 GiB: far above any heatmap */
#define NPY_MAX_HEADER 65536

static const char *skip_ws(const char *s, const char *end)
{
	while (s < end && isspace((unsigned char)*s))
		s++;
	return s;
}

/* The value that follows 'key': in the header dict, or NULL. */
static const char *dict_value(const char *h, const char *end, const char *key)
{
	char pat[32];
	snprintf(pat, sizeof pat, "'%s'", key);
	size_t pl = strlen(pat);
	for (const char *s = h; s + pl <= end; s++) {
		if (memcmp(s, pat, pl) == 0) {
			s = skip_ws(s + pl, end);
			if (s < end && *s == ':')
				return skip_ws(s + 1, end);
			return NULL;
		}
	}
	return NULL;
}

int p2p_npy_parse(const void *buf, size_t n, const char *name, p2p_npy *a)
{
	const unsigned char *b = buf;
	memset(a, 0, sizeof *a);
	if (n < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
		return p2p_err("%s: not a .npy file", name);
	size_t hlen, off;
	if (b[6] == 1) {
		hlen = b[8] | (size_t)b[9] << 8;
		off = 10;
	} else if (b[6] == 2 || b[6] == 3) {
		if (n < 12)
			return p2p_err("%s: truncated header", name);
		hlen = b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
		off = 12;
	} else {
		return p2p_err("%s: unsupported .npy version %d.%d", name, b[6], b[7]);
	}
	if (hlen > NPY_MAX_HEADER)
		return p2p_err("%s: header too large (%zu bytes)", name, hlen);
	if (off + hlen > n)
		return p2p_err("%s: truncated header", name);
	const char *h = (const char *)b + off, *end = h + hlen;

	const char *v = dict_value(h, end, "descr");
	if (!v)
		return p2p_err("%s: header has no 'descr'", name);
	if (end - v >= 5 && memcmp(v, "'|u1'", 5) == 0)
		a->dtype = P2P_U8;
	else if (end - v >= 5 && (memcmp(v, "'<f4'", 5) == 0))
		a->dtype = P2P_F32;
	else
		return p2p_err("%s: unsupported dtype (want |u1 or <f4)", name);

	v = dict_value(h, end, "fortran_order");
	if (!v)
		return p2p_err("%s: header has no 'fortran_order'", name);
	if (end - v >= 4 && memcmp(v, "True", 4) == 0)
		return p2p_err("%s: Fortran order is not supported", name);
	if (!(end - v >= 5 && memcmp(v, "False", 5) == 0))
		return p2p_err("%s: bad 'fortran_order'", name);

	v = dict_value(h, end, "shape");
	if (!v || v >= end || *v != '(')
		return p2p_err("%s: header has no 'shape'", name);
	v++;
	size_t count = 1;
	for (;;) {
		v = skip_ws(v, end);
		if (v < end && *v == ')')
			break;
		if (a->ndim == 4)
			return p2p_err("%s: more than 4 dimensions", name);
		if (v >= end || !isdigit((unsigned char)*v))
			return p2p_err("%s: bad 'shape'", name);
		uint64_t d = 0;
		while (v < end && isdigit((unsigned char)*v)) {
			d = d * 10 + (uint64_t)(*v++ - '0');
			if (d > NPY_MAX_BYTES)
				return p2p_err("%s: shape too large", name);
		}
		if (count && d > NPY_MAX_BYTES / count)
			return p2p_err("%s: shape too large", name);
		count *= d;
		a->shape[a->ndim++] = (long)d;
		v = skip_ws(v, end);
		if (v < end && *v == ',')
			v++;
		else if (!(v < end && *v == ')'))
			return p2p_err("%s: bad 'shape'", name);
	}
	size_t bytes = count * (size_t)a->dtype;
	if (bytes > NPY_MAX_BYTES)
		return p2p_err("%s: shape too large", name);
	size_t have = n - off - hlen;
	if (have < bytes)
		return p2p_err("%s: truncated data (%zu of %zu bytes)", name, have, bytes);
	if (have > bytes)
		return p2p_err("%s: %zu bytes of trailing data", name, have - bytes);
	a->count = count;
	a->data = malloc(bytes ? bytes : 1);
	if (!a->data)
		return p2p_err("%s: out of memory", name);
	memcpy(a->data, b + off + hlen, bytes);
	return 0;
}

int p2p_npy_read(const char *path, p2p_npy *a)
{
	void *buf;
	size_t n;
	memset(a, 0, sizeof *a);
	if (p2p_read_file(path, NPY_MAX_BYTES + NPY_MAX_HEADER, &buf, &n))
		return -1;
	int rc = p2p_npy_parse(buf, n, strcmp(path, "-") ? path : "stdin", a);
	free(buf);
	return rc;
}

int p2p_npy_encode(int dtype, int ndim, const long *shape, const void *data, void **buf, size_t *n)
{
	char hdr[256];
	char dims[160] = "";
	size_t count = 1;
	if (ndim < 0 || ndim > 4 || (dtype != P2P_U8 && dtype != P2P_F32))
		return p2p_err("npy: bad array description");
	for (int i = 0; i < ndim; i++) {
		size_t l = strlen(dims);
		snprintf(dims + l, sizeof dims - l, "%ld,%s", shape[i], ndim > 1 && i < ndim - 1 ? " " : "");
		count *= (size_t)shape[i];
	}
	if (ndim > 1)
		dims[strlen(dims) - 1] = 0;   /* numpy writes (3, 4) but (3,) */
	int hl = snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
		dtype == P2P_U8 ? "|u1" : "<f4", dims);
	/* pad with spaces to a multiple of 64 including the 10-byte preamble, end with \n */
	size_t total = 10 + (size_t)hl + 1;
	size_t padded = (total + 63) / 64 * 64;
	size_t hlen = padded - 10;
	size_t bytes = count * (size_t)dtype;
	unsigned char *b = malloc(padded + bytes);
	if (!b)
		return p2p_err("npy: out of memory");
	memcpy(b, "\x93NUMPY\x01\x00", 8);
	b[8] = hlen & 0xff;
	b[9] = hlen >> 8;
	memcpy(b + 10, hdr, (size_t)hl);
	memset(b + 10 + hl, ' ', hlen - (size_t)hl - 1);
	b[padded - 1] = '\n';
	memcpy(b + padded, data, bytes);
	*buf = b;
	*n = padded + bytes;
	return 0;
}

int p2p_npy_write(const char *path, int dtype, int ndim, const long *shape, const void *data)
{
	void *buf;
	size_t n;
	if (p2p_npy_encode(dtype, ndim, shape, data, &buf, &n))
		return -1;
	int rc;
	if (strcmp(path, "-") == 0) {
		rc = fwrite(buf, 1, n, stdout) == n ? 0 : p2p_err_errno("stdout: write failed");
	} else {
		rc = p2p_write_file(path, buf, n);
	}
	free(buf);
	return rc;
}

void p2p_npy_free(p2p_npy *a)
{
	free(a->data);
	memset(a, 0, sizeof *a);
}

int p2p_heatmap_read(const char *path, int *h, int *w, float **out)
{
	p2p_npy a;
	if (p2p_npy_read(path, &a))
		return -1;
	const char *name = strcmp(path, "-") ? path : "stdin";
	if (a.ndim != 2 || a.shape[0] < 1 || a.shape[1] < 1 || a.shape[0] > 65536 || a.shape[1] > 65536) {
		p2p_npy_free(&a);
		return p2p_err("%s: expected a 2-D heatmap (H, W)", name);
	}
	float *f = malloc(a.count * sizeof *f);
	if (!f) {
		p2p_npy_free(&a);
		return p2p_err("%s: out of memory", name);
	}
	for (size_t i = 0; i < a.count; i++) {
		float v = a.dtype == P2P_U8 ? ((unsigned char *)a.data)[i] / 255.0f : ((float *)a.data)[i];
		if (!isfinite(v)) {
			free(f);
			p2p_npy_free(&a);
			return p2p_err("%s: value %zu is not finite", name, i);
		}
		f[i] = v;
	}
	*h = (int)a.shape[0];
	*w = (int)a.shape[1];
	*out = f;
	p2p_npy_free(&a);
	return 0;
}
