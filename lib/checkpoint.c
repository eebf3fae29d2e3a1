#include "checkpoint.h"
#include "err.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A host view of one of a set's flat buffers: the buffer itself on the CPU
 * backend (no copy of hundreds of megabytes), a download elsewhere. *owned
 * is set when the caller must free the result. */
static const float *host_view(const p2p_params *ps, const float *buf, float **owned)
{
	*owned = NULL;
	if (strcmp(ps->be->name, "cpu") == 0)
		return buf;
	float *h = malloc(ps->total * sizeof *h);
	if (!h) {
		p2p_err("out of memory for a host copy of %zu floats", ps->total);
		return NULL;
	}
	ps->be->download(h, buf, ps->total);
	*owned = h;
	return h;
}

static int meta_long(p2p_st_writer *w, const char *key, long v)
{
	char s[32];
	snprintf(s, sizeof s, "%ld", v);
	return p2p_st_add_meta(w, key, s);
}

static int meta_double(p2p_st_writer *w, const char *key, double v)
{
	char s[40];
	snprintf(s, sizeof s, "%.17g", v);
	return p2p_st_add_meta(w, key, s);
}

/* Tensors PREFIX.NAME, PREFIX.adam.m.NAME, PREFIX.adam.v.NAME; the host
 * copies go to keep[] (freed by the caller after the save). */
static int add_set(p2p_st_writer *w, const p2p_params *ps, const char *who, float **keep)
{
	const float *bufs[3] = { ps->data, ps->m, ps->v };
	const char *fmt[3] = { "%s.", "%s.adam.m.", "%s.adam.v." };
	for (int i = 0; i < 3; i++) {
		char prefix[32];
		snprintf(prefix, sizeof prefix, fmt[i], who);
		const float *h = host_view(ps, bufs[i], &keep[i]);
		if (!h || p2p_st_add_params(w, ps, prefix, h))
			return -1;
	}
	return 0;
}

int p2p_ckpt_save(const char *path, const p2p_ckpt *c, const p2p_params *g,
                  const p2p_adam *ga, const p2p_params *d, const p2p_adam *da)
{
	float *keep[6] = { 0 };
	int rc = -1;
	p2p_st_writer *w = p2p_st_writer_new();
	if (!w)
		return -1;
	char sums[P2P_CKPT_NSUMS * 26 + 1] = "", seed[24];
	for (int i = 0; i < P2P_CKPT_NSUMS; i++)
		snprintf(sums + strlen(sums), sizeof sums - strlen(sums), "%s%.17g",
		         i ? "," : "", c->sums[i]);
	snprintf(seed, sizeof seed, "%" PRIu64, c->seed);
	if (p2p_st_add_meta(w, "format", P2P_CKPT_FORMAT)
	    || p2p_unet_meta_add(w, &c->g) || p2p_patchgan_meta_add(w, &c->d)
	    || meta_long(w, "epoch", c->epoch) || meta_long(w, "batch", c->batch)
	    || meta_long(w, "step", c->step) || meta_long(w, "n_train", c->n_train)
	    || meta_double(w, "best_val_l1", c->best_val_l1)
	    || meta_long(w, "best_epoch", c->best_epoch)
	    || p2p_st_add_meta(w, "sums", sums)
	    || meta_long(w, "G.adam.step", ga->step) || meta_long(w, "D.adam.step", da->step)
	    || p2p_st_add_meta(w, "seed", seed)
	    || p2p_st_add_meta(w, "config", c->config ? c->config : "{}"))
		goto out;
	if (add_set(w, g, "G", keep) || add_set(w, d, "D", keep + 3))
		goto out;
	rc = p2p_st_save(w, path);
out:
	if (rc && !strstr(p2p_errmsg(), path)) {
		char why[900];
		snprintf(why, sizeof why, "%s", p2p_errmsg());
		p2p_err("%s: %s", path, why);
	}
	for (int i = 0; i < 6; i++)
		free(keep[i]);
	p2p_st_writer_free(w);
	return rc;
}

/* Metadata numbers: the whole string must parse, in [lo, hi]. */
static int get_long(const p2p_st *st, const char *path, const char *key, long lo, long hi,
                    long *out)
{
	const char *s = p2p_st_meta(st, key);
	if (!s)
		return p2p_err("%s: not a complete p2p-train checkpoint: no \"%s\" in its metadata",
		               path, key);
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (!*s || *end || errno || v < lo || v > hi)
		return p2p_err("%s: metadata \"%s\" is not a valid value: '%s'", path, key, s);
	*out = v;
	return 0;
}

static int get_double(const p2p_st *st, const char *path, const char *key, double *out)
{
	const char *s = p2p_st_meta(st, key);
	if (!s)
		return p2p_err("%s: not a complete p2p-train checkpoint: no \"%s\" in its metadata",
		               path, key);
	char *end;
	double v = strtod(s, &end);
	if (!*s || *end || isnan(v))
		return p2p_err("%s: metadata \"%s\" is not a number: '%s'", path, key, s);
	*out = v;
	return 0;
}

static int get_sums(const p2p_st *st, const char *path, double *sums)
{
	const char *s = p2p_st_meta(st, "sums");
	if (!s)
		return p2p_err("%s: not a complete p2p-train checkpoint: no \"sums\" in its metadata",
		               path);
	for (int i = 0; i < P2P_CKPT_NSUMS; i++) {
		char *end;
		sums[i] = strtod(s, &end);
		if (end == s || !isfinite(sums[i]) || *end != (i + 1 < P2P_CKPT_NSUMS ? ',' : '\0'))
			return p2p_err("%s: metadata \"sums\" is not %d numbers", path, P2P_CKPT_NSUMS);
		s = end + 1;
	}
	return 0;
}

p2p_st *p2p_ckpt_open(const char *path, p2p_ckpt *c)
{
	memset(c, 0, sizeof *c);
	p2p_st *st = p2p_st_read(path);
	if (!st)
		return NULL;
	const char *fmt = p2p_st_meta(st, "format");
	if (!fmt || strcmp(fmt, P2P_CKPT_FORMAT) != 0) {
		p2p_err("%s: not a p2p-train checkpoint (no \"format\": \"%s\" in its metadata)",
		        path, P2P_CKPT_FORMAT);
		goto fail;
	}
	long steps;
	const char *seed = p2p_st_meta(st, "seed"), *cfg = p2p_st_meta(st, "config");
	char *end = NULL;
	if (p2p_unet_meta_read(st, path, &c->g) || p2p_patchgan_meta_read(st, path, &c->d)
	    || get_long(st, path, "epoch", 0, 1L << 40, &c->epoch)
	    || get_long(st, path, "batch", 0, 1L << 40, &c->batch)
	    || get_long(st, path, "step", 0, 1L << 50, &c->step)
	    || get_long(st, path, "n_train", 0, 1L << 40, &c->n_train)
	    || get_double(st, path, "best_val_l1", &c->best_val_l1)
	    || get_long(st, path, "best_epoch", 0, 1L << 40, &c->best_epoch)
	    || get_sums(st, path, c->sums)
	    || get_long(st, path, "G.adam.step", 0, 1L << 50, &steps)
	    || get_long(st, path, "D.adam.step", 0, 1L << 50, &steps))
		goto fail;
	errno = 0;
	if (!seed || !*seed || (c->seed = strtoull(seed, &end, 10), *end) || errno) {
		p2p_err("%s: metadata \"seed\" is missing or not a number", path);
		goto fail;
	}
	if (!cfg || !(c->config = strdup(cfg))) {
		p2p_err("%s: metadata \"config\" is missing", path);
		goto fail;
	}
	return st;
fail:
	p2p_ckpt_clear(c);
	p2p_st_free(st);
	return NULL;
}

static int load_set(const p2p_st *st, const char *path, p2p_params *ps, p2p_adam *a,
                    const char *who)
{
	float *bufs[3] = { ps->data, ps->m, ps->v };
	const char *fmt[3] = { "%s.", "%s.adam.m.", "%s.adam.v." };
	int cpu = strcmp(ps->be->name, "cpu") == 0;
	float *h = cpu ? NULL : malloc(ps->total * sizeof *h);
	if (!cpu && !h)
		return p2p_err("%s: out of memory", path);
	for (int i = 0; i < 3; i++) {
		char prefix[32];
		snprintf(prefix, sizeof prefix, fmt[i], who);
		if (p2p_st_load_params(st, ps, prefix, cpu ? bufs[i] : h)) {
			free(h);
			return -1;
		}
		if (!cpu)
			ps->be->upload(bufs[i], h, ps->total);
	}
	free(h);
	char key[32];
	snprintf(key, sizeof key, "%s.adam.step", who);
	return get_long(st, path, key, 0, 1L << 50, &a->step);
}

int p2p_ckpt_restore(const p2p_st *st, const char *path, p2p_params *g, p2p_adam *ga,
                     p2p_params *d, p2p_adam *da)
{
	return load_set(st, path, g, ga, "G") || load_set(st, path, d, da, "D") ? -1 : 0;
}

void p2p_ckpt_clear(p2p_ckpt *c)
{
	free(c->config);
	c->config = NULL;
}

static int save_weights(const char *path, p2p_st_writer *w, const p2p_params *ps,
                        long epoch, double val_l1)
{
	float *keep = NULL;
	const float *h = host_view(ps, ps->data, &keep);
	int rc = !h || p2p_st_add_params(w, ps, "", h)
	         || meta_long(w, "epoch", epoch) || meta_double(w, "val_l1", val_l1)
	         || p2p_st_save(w, path);
	if (rc && !strstr(p2p_errmsg(), path)) {
		char why[900];
		snprintf(why, sizeof why, "%s", p2p_errmsg());
		p2p_err("%s: %s", path, why);
	}
	free(keep);
	p2p_st_writer_free(w);
	return rc ? -1 : 0;
}

int p2p_ckpt_save_g(const char *path, const p2p_unet_cfg *cfg, const p2p_params *g,
                    long epoch, double val_l1)
{
	p2p_st_writer *w = p2p_st_writer_new();
	if (!w)
		return -1;
	if (p2p_unet_meta_add(w, cfg)) {
		p2p_st_writer_free(w);
		return -1;
	}
	return save_weights(path, w, g, epoch, val_l1);
}

int p2p_ckpt_save_d(const char *path, const p2p_patchgan_cfg *cfg, const p2p_params *d,
                    long epoch, double val_l1)
{
	p2p_st_writer *w = p2p_st_writer_new();
	if (!w)
		return -1;
	if (p2p_patchgan_meta_add(w, cfg)) {
		p2p_st_writer_free(w);
		return -1;
	}
	return save_weights(path, w, d, epoch, val_l1);
}
