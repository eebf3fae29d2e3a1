#include "dataset.h"
#include "cpu_pool.h"
#include "err.h"
#include "image.h"
#include "npy.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A folder's entries with one of the wanted extensions, as (stem, file name)
 * sorted by stem, then file name. */
typedef struct {
	char *stem, *file;
} entry;

static int entry_cmp(const void *a, const void *b)
{
	const entry *x = a, *y = b;
	int c = strcmp(x->stem, y->stem);
	return c ? c : strcmp(x->file, y->file);
}

static void entries_free(entry *e, int n)
{
	for (int i = 0; i < n; i++) {
		free(e[i].stem);
		free(e[i].file);
	}
	free(e);
}

static char *join(const char *a, const char *b)
{
	char *s;
	return asprintf(&s, "%s/%s", a, b) < 0 ? NULL : s;
}

/* exts: NULL-terminated, compared without case. */
static int list_dir(const char *dir, const char *const *exts, entry **out, int *count)
{
	DIR *d = opendir(dir);
	if (!d)
		return p2p_err_errno("%s", dir);
	entry *e = NULL;
	int n = 0, cap = 0, rc = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		const char *name = de->d_name, *dot = strrchr(name, '.');
		if (name[0] == '.' || !dot || dot == name)
			continue;
		int want = 0;
		for (int i = 0; exts[i]; i++)
			want |= strcasecmp(dot + 1, exts[i]) == 0;
		if (!want)
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 256;
			entry *t = realloc(e, cap * sizeof *e);
			if (!t) {
				rc = p2p_err("%s: out of memory", dir);
				break;
			}
			e = t;
		}
		e[n].stem = strndup(name, dot - name);
		e[n].file = strdup(name);
		n++;
		if (!e[n - 1].stem || !e[n - 1].file) {
			rc = p2p_err("%s: out of memory", dir);
			break;
		}
	}
	closedir(d);
	if (rc) {
		entries_free(e, n);
		return -1;
	}
	if (n > 1)   /* e is NULL in an empty folder */
		qsort(e, n, sizeof *e, entry_cmp);
	*out = e;
	*count = n;
	return 0;
}

/* Read sample i's two files into ds; size is the size every sample must have. */
static int load_one(p2p_dataset *ds, int i, const char *apath, const char *bpath, int size)
{
	int h, w;
	float *hm;
	if (p2p_heatmap_read(apath, &h, &w, &hm))
		return -1;
	if (h != size || w != size) {
		free(hm);
		return p2p_err("%s: heatmap is %dx%d, expected %dx%d", apath, w, h, size, size);
	}
	long p = (long)size * size;
	float *a = ds->a + i * p;
	for (long k = 0; k < p; k++)
		a[k] = hm[k] * 2.0f - 1.0f;
	free(hm);

	p2p_image img;
	if (p2p_image_load(bpath, 3, &img))
		return -1;
	if (img.w != size || img.h != size) {
		p2p_err("%s: image is %dx%d, expected %dx%d", bpath, img.w, img.h, size, size);
		p2p_image_free(&img);
		return -1;
	}
	unsigned char *b = ds->b + i * 3 * p;
	for (long k = 0; k < p; k++)
		for (int c = 0; c < 3; c++)
			b[c * p + k] = img.px[3 * k + c];
	p2p_image_free(&img);
	return 0;
}

typedef struct {
	p2p_dataset *ds;
	char **apaths, **bpaths, **errs;
	int size;
} load_job;

static void load_range(void *ctx, long i0, long i1)
{
	load_job *j = ctx;
	for (long i = i0; i < i1; i++)
		if (load_one(j->ds, (int)i, j->apaths[i], j->bpaths[i], j->size))
			j->errs[i] = strdup(p2p_errmsg());
}

/* The size of the first sample's heatmap, which sets it for the rest. */
static int first_size(const char *apath, int *size)
{
	p2p_npy a;
	if (p2p_npy_read(apath, &a))
		return -1;
	int ok = a.ndim == 2 && a.shape[0] == a.shape[1] && a.shape[0] >= 1 && a.shape[0] <= 65536;
	long s = a.shape[0], t = a.ndim == 2 ? a.shape[1] : 0;
	p2p_npy_free(&a);
	if (!ok)
		return p2p_err("%s: expected a square 2-D heatmap, got %ldx%ld", apath, t, s);
	*size = (int)s;
	return 0;
}

/* Pair A and B by stem; fills ds->id and the two path lists (n each). */
static int pair(p2p_dataset *ds, const char *adir, const char *bdir,
                char ***apaths, char ***bpaths)
{
	static const char *const aext[] = { "npy", NULL };
	static const char *const bext[] = { "jpg", "jpeg", "png", NULL };
	entry *ea = NULL, *eb = NULL;
	int na = 0, nb = 0, rc = -1;
	if (list_dir(adir, aext, &ea, &na) || list_dir(bdir, bext, &eb, &nb))
		goto out;
	for (int j = 1; j < nb; j++)
		if (strcmp(eb[j].stem, eb[j - 1].stem) == 0) {
			p2p_err("%s/%s: a second photo for id '%s' (%s)", bdir, eb[j].file,
			        eb[j].stem, eb[j - 1].file);
			goto out;
		}
	/* sorted lists: walk both; the first one without a partner is the error */
	int i = 0, j = 0;
	while (i < na || j < nb) {
		int c = i == na ? 1 : j == nb ? -1 : strcmp(ea[i].stem, eb[j].stem);
		if (c < 0) {
			p2p_err("%s/%s: no matching photo %s/%s.jpg", adir, ea[i].file, bdir, ea[i].stem);
			goto out;
		}
		if (c > 0) {
			p2p_err("%s/%s: no matching heatmap %s/%s.npy", bdir, eb[j].file, adir, eb[j].stem);
			goto out;
		}
		i++, j++;
	}
	if (na == 0) {
		p2p_err("%s: no samples (no .npy in %s)", ds->dir, adir);
		goto out;
	}
	ds->id = calloc(na, sizeof *ds->id);
	*apaths = calloc(na, sizeof **apaths);
	*bpaths = calloc(na, sizeof **bpaths);
	if (!ds->id || !*apaths || !*bpaths) {
		p2p_err("%s: out of memory", ds->dir);
		goto out;
	}
	ds->n = na;
	for (int k = 0; k < na; k++) {
		ds->id[k] = ea[k].stem;
		ea[k].stem = NULL;
		(*apaths)[k] = join(adir, ea[k].file);
		(*bpaths)[k] = join(bdir, eb[k].file);
		if (!(*apaths)[k] || !(*bpaths)[k]) {
			p2p_err("%s: out of memory", ds->dir);
			goto out;
		}
	}
	rc = 0;
out:
	entries_free(ea, na);
	entries_free(eb, nb);
	return rc;
}

int p2p_dataset_load(p2p_dataset *ds, const char *root, const char *split, int size)
{
	memset(ds, 0, sizeof *ds);
	char *adir = NULL, *bdir = NULL, **apaths = NULL, **bpaths = NULL, **errs = NULL;
	int rc = -1;
	if (asprintf(&ds->dir, "%s/%s", root, split) < 0) {
		ds->dir = NULL;
		return p2p_err("%s: out of memory", root);
	}
	adir = join(ds->dir, "A");
	bdir = join(ds->dir, "B");
	if (!adir || !bdir) {
		p2p_err("%s: out of memory", ds->dir);
		goto out;
	}
	if (pair(ds, adir, bdir, &apaths, &bpaths))
		goto out;
	if (size <= 0 && first_size(apaths[0], &size))
		goto out;
	ds->size = size;
	size_t p = (size_t)size * size;
	ds->a = malloc(ds->n * p * sizeof *ds->a);
	ds->b = malloc(ds->n * 3 * p);
	errs = calloc(ds->n, sizeof *errs);
	if (!ds->a || !ds->b || !errs) {
		p2p_err("%s: out of memory for %d samples of %dx%d", ds->dir, ds->n, size, size);
		goto out;
	}
	/* decode in parallel; report the first failure in id order, so the
	 * message does not depend on the thread count */
	load_job job = { ds, apaths, bpaths, errs, size };
	p2p_pool_run(ds->n, p2p_pool_threads(), load_range, &job);
	for (int i = 0; i < ds->n; i++)
		if (errs[i]) {
			p2p_err("%s", errs[i]);
			goto out;
		}
	rc = 0;
out:
	for (int i = 0; i < ds->n; i++) {
		if (apaths)
			free(apaths[i]);
		if (bpaths)
			free(bpaths[i]);
		if (errs)
			free(errs[i]);
	}
	free(apaths);
	free(bpaths);
	free(errs);
	free(adir);
	free(bdir);
	if (rc)
		p2p_dataset_free(ds);   /* sets no message */
	return rc;
}

void p2p_dataset_free(p2p_dataset *ds)
{
	if (ds->id)
		for (int i = 0; i < ds->n; i++)
			free(ds->id[i]);
	free(ds->id);
	free(ds->a);
	free(ds->b);
	free(ds->dir);
	memset(ds, 0, sizeof *ds);
}

void p2p_dataset_get(const p2p_dataset *ds, int i, float *a, float *b)
{
	size_t p = (size_t)ds->size * ds->size;
	if (a)
		memcpy(a, ds->a + i * p, p * sizeof *a);
	if (b) {
		const unsigned char *s = ds->b + i * 3 * p;
		for (size_t k = 0; k < 3 * p; k++)
			b[k] = s[k] / 127.5f - 1.0f;
	}
}
