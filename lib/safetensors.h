/* safetensors files (F32 tensors only, plus the "__metadata__" string map):
 * an 8-byte little-endian header length, a JSON header naming each tensor's
 * dtype, shape and [begin, end) data offsets, then the raw little-endian data.
 *
 * Reading trusts nothing in the file: the header length must fit the file and
 * a sane limit, the header must be a JSON object, each entry F32 with a shape
 * whose size matches its offsets, and the offsets must tile the data exactly
 * (no overlap, no gap, nothing past the end). Writing is atomic. */
#ifndef P2P_SAFETENSORS_H
#define P2P_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

#define P2P_ST_MAXDIM 8
#define P2P_ST_MAX_HEADER (100u << 20)  /* larger headers are rejected */

/* ---- reading ---- */

typedef struct p2p_st p2p_st;   /* a whole file in memory */

/* NULL + p2p_err("PATH: what is wrong") on any error. */
p2p_st *p2p_st_read(const char *path);
/* Parse a file image held in memory (copied); name is used in messages. */
p2p_st *p2p_st_parse(const void *buf, size_t n, const char *name);
void p2p_st_free(p2p_st *st);               /* NULL is fine */

int p2p_st_count(const p2p_st *st);          /* tensors, in file order */
const char *p2p_st_name(const p2p_st *st, int i);
/* Tensor by name: its data (host memory, 4-byte aligned, owned by st) and
 * shape; NULL if there is no such tensor (no message). ndim, shape may be
 * NULL. numel is the product of the shape. */
const float *p2p_st_get(const p2p_st *st, const char *name, int *ndim,
                        const int64_t **shape, size_t *numel);
/* Same, but -1 + p2p_err unless the tensor exists with exactly this shape. */
int p2p_st_get_shaped(const p2p_st *st, const char *name, int ndim,
                      const int *shape, const float **data);
/* A "__metadata__" value, or NULL. */
const char *p2p_st_meta(const p2p_st *st, const char *key);
/* A metadata value that must be a whole number in [0, 2^20] (sizes, widths);
 * -1 + p2p_err naming path and key when it is missing or not one. */
int p2p_st_meta_int(const p2p_st *st, const char *path, const char *key, int *out);
int p2p_st_meta_count(const p2p_st *st);
const char *p2p_st_meta_key(const p2p_st *st, int i);

/* ---- writing ---- */

typedef struct p2p_st_writer p2p_st_writer;

p2p_st_writer *p2p_st_writer_new(void);      /* NULL + p2p_err */
/* Add a tensor; name and shape are copied, data (host memory, numel floats)
 * is NOT: it must stay valid until p2p_st_save. -1 + p2p_err on a duplicate
 * or empty name, or a bad shape. Tensors are written in the order added. */
int p2p_st_add(p2p_st_writer *w, const char *name, int ndim, const int64_t *shape,
               const float *data);
int p2p_st_add_meta(p2p_st_writer *w, const char *key, const char *value);
/* Write the file atomically (lib/atomic.h). */
int p2p_st_save(p2p_st_writer *w, const char *path);
void p2p_st_writer_free(p2p_st_writer *w);    /* NULL is fine */

/* ---- parameter sets <-> files ----
 * host is a host copy of one of ps's flat buffers (ps->total floats, e.g.
 * downloaded from ps->data or ps->m); tensor i is written as PREFIX + name[i].
 * Loading fills host from the file by the same names, checking every shape:
 * -1 + p2p_err naming the first missing or mis-shaped tensor. */
int p2p_st_add_params(p2p_st_writer *w, const p2p_params *ps, const char *prefix,
                      const float *host);
int p2p_st_load_params(const p2p_st *st, const p2p_params *ps, const char *prefix,
                       float *host);

#endif
