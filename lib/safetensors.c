/* safetensors reading and writing, F32 only. Every size in a file is checked
 * against the bytes actually present before anything is allocated from it. */
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "atomic.h"
#include "err.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

/* Offsets are exact as JSON numbers (doubles) up to 2^53. */
#define MAX_INT_JSON 9007199254740992.0

typedef struct {
	char *name;
	int ndim;
	int64_t shape[P2P_ST_MAXDIM];
	size_t numel;
	uint64_t begin, end;
} entry;

struct p2p_st {
	char *path;
	int count;
	entry *e;
	int nmeta;
	char **mkey, **mval;
	float *data;        /* the whole data section */
	uint64_t dsize;
};

void p2p_st_free(p2p_st *st)
{
	if (!st)
		return;
	for (int i = 0; i < st->count; i++)
		free(st->e[i].name);
	for (int i = 0; i < st->nmeta; i++)
		free(st->mkey[i]), free(st->mval[i]);
	free(st->e);
	free(st->mkey);
	free(st->mval);
	free(st->data);
	free(st->path);
	free(st);
}

static void shape_str64(char *buf, size_t n, int ndim, const int64_t *s)
{
	size_t k = snprintf(buf, n, "(");
	for (int i = 0; i < ndim && k < n; i++)
		k += snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)s[i]);
	if (k < n)
		snprintf(buf + k, n - k, ")");
}

/* A JSON number that is an integer in [0, 2^53]; -1 otherwise. */
static int json_uint(const cJSON *j, uint64_t *v)
{
	if (!cJSON_IsNumber(j))
		return -1;
	double d = j->valuedouble;
	if (!(d >= 0 && d <= MAX_INT_JSON) || d != (double)(uint64_t)d)
		return -1;
	*v = (uint64_t)d;
	return 0;
}

static int parse_meta(p2p_st *st, const cJSON *m)
{
	const char *path = st->path;
	if (!cJSON_IsObject(m))
		return p2p_err("%s: __metadata__ is not a JSON object", path);
	int n = cJSON_GetArraySize(m);
	st->mkey = calloc(n ? n : 1, sizeof *st->mkey);
	st->mval = calloc(n ? n : 1, sizeof *st->mval);
	if (!st->mkey || !st->mval)
		return p2p_err("%s: out of memory", path);
	const cJSON *it;
	cJSON_ArrayForEach(it, m) {
		if (!cJSON_IsString(it))
			return p2p_err("%s: __metadata__ value of \"%s\" is not a string", path, it->string);
		for (int i = 0; i < st->nmeta; i++)
			if (strcmp(st->mkey[i], it->string) == 0)
				return p2p_err("%s: __metadata__ key \"%s\" appears twice", path, it->string);
		st->mkey[st->nmeta] = strdup(it->string);
		st->mval[st->nmeta] = strdup(it->valuestring);
		st->nmeta++;
		if (!st->mkey[st->nmeta - 1] || !st->mval[st->nmeta - 1])
			return p2p_err("%s: out of memory", path);
	}
	return 0;
}

static int parse_entry(p2p_st *st, entry *e, const cJSON *t)
{
	const char *path = st->path, *name = t->string;
	if (!cJSON_IsObject(t))
		return p2p_err("%s: tensor \"%s\" is not a JSON object", path, name);
	const cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
	const cJSON *sh = cJSON_GetObjectItemCaseSensitive(t, "shape");
	const cJSON *off = cJSON_GetObjectItemCaseSensitive(t, "data_offsets");
	if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || !cJSON_IsArray(off))
		return p2p_err("%s: tensor \"%s\" lacks dtype, shape or data_offsets", path, name);
	if (strcmp(dt->valuestring, "F32") != 0)
		return p2p_err("%s: tensor \"%s\": dtype %.20s is not supported (F32 only)",
		               path, name, dt->valuestring);
	int nd = cJSON_GetArraySize(sh);
	if (nd > P2P_ST_MAXDIM)
		return p2p_err("%s: tensor \"%s\": %d dimensions (at most %d)", path, name, nd, P2P_ST_MAXDIM);
	e->ndim = nd;
	e->numel = 1;
	int overflow = 0;
	for (int i = 0; i < nd; i++) {
		uint64_t d;
		if (json_uint(cJSON_GetArrayItem(sh, i), &d) != 0)
			return p2p_err("%s: tensor \"%s\": shape is not a list of sizes", path, name);
		e->shape[i] = (int64_t)d;
		/* the product stays below 2^60 or it cannot match any file */
		if (d && e->numel > ((uint64_t)1 << 60) / d)
			overflow = 1;
		else
			e->numel *= d;
	}
	uint64_t b, en;
	if (cJSON_GetArraySize(off) != 2 || json_uint(cJSON_GetArrayItem(off, 0), &b) != 0 ||
	    json_uint(cJSON_GetArrayItem(off, 1), &en) != 0 || en < b)
		return p2p_err("%s: tensor \"%s\": data_offsets is not [begin, end]", path, name);
	if (en > st->dsize)
		return p2p_err("%s: tensor \"%s\": data_offsets [%llu, %llu] run past the end of the data (%llu bytes)",
		               path, name, (unsigned long long)b, (unsigned long long)en,
		               (unsigned long long)st->dsize);
	if (overflow)
		return p2p_err("%s: tensor \"%s\": shape needs more bytes than any file holds", path, name);
	if (e->numel * 4 != en - b) {
		char sh[160];
		shape_str64(sh, sizeof sh, e->ndim, e->shape);
		return p2p_err("%s: tensor \"%s\": shape %s needs %llu bytes, data_offsets give %llu",
		               path, name, sh, (unsigned long long)e->numel * 4,
		               (unsigned long long)(en - b));
	}
	e->begin = b;
	e->end = en;
	e->name = strdup(name);
	if (!e->name)
		return p2p_err("%s: out of memory", path);
	return 0;
}

static int by_begin(const void *a, const void *b)
{
	const entry *x = *(entry *const *)a, *y = *(entry *const *)b;
	if (x->begin != y->begin)
		return x->begin < y->begin ? -1 : 1;
	return x->end < y->end ? -1 : x->end > y->end;
}

static int by_name(const void *a, const void *b)
{
	return strcmp((*(entry *const *)a)->name, (*(entry *const *)b)->name);
}

/* The entries' byte ranges must tile [0, dsize): no overlap, no gap. */
static int check_layout(p2p_st *st)
{
	const char *path = st->path;
	entry **s = malloc((st->count ? st->count : 1) * sizeof *s);
	if (!s)
		return p2p_err("%s: out of memory", path);
	for (int i = 0; i < st->count; i++)
		s[i] = &st->e[i];
	qsort(s, st->count, sizeof *s, by_name);
	for (int i = 1; i < st->count; i++)
		if (strcmp(s[i - 1]->name, s[i]->name) == 0) {
			p2p_err("%s: tensor \"%s\" appears twice", path, s[i]->name);
			free(s);
			return -1;
		}
	qsort(s, st->count, sizeof *s, by_begin);
	uint64_t at = 0;
	for (int i = 0; i < st->count; i++) {
		if (s[i]->begin < at) {
			p2p_err("%s: tensors \"%s\" and \"%s\" overlap", path, s[i - 1]->name, s[i]->name);
			free(s);
			return -1;
		}
		if (s[i]->begin > at) {
			p2p_err("%s: data bytes %llu to %llu belong to no tensor", path,
			        (unsigned long long)at, (unsigned long long)s[i]->begin);
			free(s);
			return -1;
		}
		at = s[i]->end;
	}
	free(s);
	if (at != st->dsize)
		return p2p_err("%s: data bytes %llu to %llu belong to no tensor", path,
		               (unsigned long long)at, (unsigned long long)st->dsize);
	return 0;
}

/* The header (hlen bytes at hdr, not NUL-terminated) for dsize data bytes. */
static int parse_header(p2p_st *st, const char *hdr, size_t hlen)
{
	const char *path = st->path;
	const char *end = NULL;
	cJSON *j = cJSON_ParseWithLengthOpts(hdr, hlen, &end, 0);
	if (!j)
		return p2p_err("%s: the safetensors header is not valid JSON", path);
	for (const char *p = end; p < hdr + hlen; p++)
		if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
			cJSON_Delete(j);
			return p2p_err("%s: the safetensors header has bytes after its JSON", path);
		}
	if (!cJSON_IsObject(j)) {
		cJSON_Delete(j);
		return p2p_err("%s: the safetensors header is not a JSON object", path);
	}
	int n = cJSON_GetArraySize(j), rc = 0, seen_meta = 0;
	st->e = calloc(n ? n : 1, sizeof *st->e);
	if (!st->e) {
		cJSON_Delete(j);
		return p2p_err("%s: out of memory", path);
	}
	const cJSON *it;
	cJSON_ArrayForEach(it, j) {
		if (strcmp(it->string, "__metadata__") == 0) {
			if (seen_meta++) {
				rc = p2p_err("%s: __metadata__ appears twice", path);
				break;
			}
			if ((rc = parse_meta(st, it)) != 0)
				break;
			continue;
		}
		if ((rc = parse_entry(st, &st->e[st->count], it)) != 0)
			break;
		st->count++;
	}
	cJSON_Delete(j);
	return rc ? rc : check_layout(st);
}

static uint64_t le64(const unsigned char *b)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	return v;
}

/* Validate the length word against the file's real size. */
static int check_hlen(const char *path, uint64_t hlen, uint64_t fsize)
{
	if (fsize < 8)
		return p2p_err("%s: too short for a safetensors file (%llu bytes)", path,
		               (unsigned long long)fsize);
	if (hlen > P2P_ST_MAX_HEADER)
		return p2p_err("%s: the header claims %llu bytes (limit %u): not a safetensors file?",
		               path, (unsigned long long)hlen, P2P_ST_MAX_HEADER);
	if (hlen > fsize - 8)
		return p2p_err("%s: the header claims %llu bytes but the file has %llu after the length",
		               path, (unsigned long long)hlen, (unsigned long long)(fsize - 8));
	if (hlen < 2)
		return p2p_err("%s: the header is %llu bytes: too short for JSON", path,
		               (unsigned long long)hlen);
	return 0;
}

static p2p_st *new_st(const char *path)
{
	p2p_st *st = calloc(1, sizeof *st);
	if (!st || !(st->path = strdup(path))) {
		free(st);
		p2p_err("%s: out of memory", path);
		return NULL;
	}
	return st;
}

p2p_st *p2p_st_parse(const void *buf, size_t n, const char *name)
{
	const unsigned char *b = buf;
	uint64_t hlen = n >= 8 ? le64(b) : 0;
	if (check_hlen(name, hlen, n) != 0)
		return NULL;
	p2p_st *st = new_st(name);
	if (!st)
		return NULL;
	st->dsize = n - 8 - hlen;
	if (parse_header(st, (const char *)b + 8, hlen) != 0) {
		p2p_st_free(st);
		return NULL;
	}
	st->data = malloc(st->dsize ? st->dsize : 1);
	if (!st->data) {
		p2p_err("%s: out of memory", name);
		p2p_st_free(st);
		return NULL;
	}
	memcpy(st->data, b + 8 + hlen, st->dsize);
	return st;
}

p2p_st *p2p_st_read(const char *path)
{
	FILE *fp = fopen(path, "rb");
	if (!fp) {
		p2p_err_errno("%s: cannot open", path);
		return NULL;
	}
	struct stat sb;
	unsigned char lenb[8];
	p2p_st *st = NULL;
	char *hdr = NULL;
	if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
		p2p_err("%s: not a regular file", path);
		goto fail;
	}
	uint64_t fsize = (uint64_t)sb.st_size;
	if (fsize >= 8 && fread(lenb, 1, 8, fp) != 8) {
		p2p_err_errno("%s: cannot read", path);
		goto fail;
	}
	uint64_t hlen = fsize >= 8 ? le64(lenb) : 0;
	if (check_hlen(path, hlen, fsize) != 0)
		goto fail;
	if (!(st = new_st(path)))
		goto fail;
	st->dsize = fsize - 8 - hlen;
	hdr = malloc(hlen);
	if (!hdr) {
		p2p_err("%s: out of memory", path);
		goto fail;
	}
	if (fread(hdr, 1, hlen, fp) != hlen) {
		p2p_err("%s: truncated while reading the header", path);
		goto fail;
	}
	if (parse_header(st, hdr, hlen) != 0)
		goto fail;
	free(hdr);
	hdr = NULL;
	st->data = malloc(st->dsize ? st->dsize : 1);
	if (!st->data) {
		p2p_err("%s: out of memory for %llu bytes of data", path, (unsigned long long)st->dsize);
		goto fail;
	}
	if (fread(st->data, 1, st->dsize, fp) != st->dsize) {
		p2p_err("%s: truncated while reading the data", path);
		goto fail;
	}
	fclose(fp);
	return st;
fail:
	free(hdr);
	p2p_st_free(st);
	fclose(fp);
	return NULL;
}

int p2p_st_count(const p2p_st *st) { return st->count; }

const char *p2p_st_name(const p2p_st *st, int i)
{
	return i >= 0 && i < st->count ? st->e[i].name : NULL;
}

static const entry *find(const p2p_st *st, const char *name)
{
	for (int i = 0; i < st->count; i++)
		if (strcmp(st->e[i].name, name) == 0)
			return &st->e[i];
	return NULL;
}

const float *p2p_st_get(const p2p_st *st, const char *name, int *ndim,
                        const int64_t **shape, size_t *numel)
{
	const entry *e = find(st, name);
	if (!e)
		return NULL;
	if (ndim)
		*ndim = e->ndim;
	if (shape)
		*shape = e->shape;
	if (numel)
		*numel = e->numel;
	/* every offset is a multiple of 4: F32 sizes tile the data from 0 */
	return (const float *)((const char *)st->data + e->begin);
}

int p2p_st_get_shaped(const p2p_st *st, const char *name, int ndim,
                      const int *shape, const float **data)
{
	const entry *e = find(st, name);
	if (!e)
		return p2p_err("%s: no tensor \"%s\"", st->path, name);
	int same = e->ndim == ndim;
	for (int i = 0; same && i < ndim; i++)
		same = e->shape[i] == shape[i];
	if (!same) {
		char a[160], b[160];
		int64_t s[P2P_ST_MAXDIM];
		int nd = ndim < P2P_ST_MAXDIM ? ndim : P2P_ST_MAXDIM;
		for (int i = 0; i < nd; i++)
			s[i] = shape[i];
		shape_str64(a, sizeof a, e->ndim, e->shape);
		shape_str64(b, sizeof b, nd, s);
		return p2p_err("%s: tensor \"%s\" has shape %s, expected %s", st->path, name, a, b);
	}
	*data = p2p_st_get(st, name, NULL, NULL, NULL);
	return 0;
}

const char *p2p_st_meta(const p2p_st *st, const char *key)
{
	for (int i = 0; i < st->nmeta; i++)
		if (strcmp(st->mkey[i], key) == 0)
			return st->mval[i];
	return NULL;
}

int p2p_st_meta_count(const p2p_st *st) { return st->nmeta; }

const char *p2p_st_meta_key(const p2p_st *st, int i)
{
	return i >= 0 && i < st->nmeta ? st->mkey[i] : NULL;
}

/* ---- writing ---- */

struct p2p_st_writer {
	int count, cap;
	entry *e;
	const float **data;
	int nmeta, mcap;
	char **mkey, **mval;
};

p2p_st_writer *p2p_st_writer_new(void)
{
	p2p_st_writer *w = calloc(1, sizeof *w);
	if (!w)
		p2p_err("safetensors: out of memory");
	return w;
}

void p2p_st_writer_free(p2p_st_writer *w)
{
	if (!w)
		return;
	for (int i = 0; i < w->count; i++)
		free(w->e[i].name);
	for (int i = 0; i < w->nmeta; i++)
		free(w->mkey[i]), free(w->mval[i]);
	free(w->e);
	free(w->data);
	free(w->mkey);
	free(w->mval);
	free(w);
}

int p2p_st_add(p2p_st_writer *w, const char *name, int ndim, const int64_t *shape,
               const float *data)
{
	if (!name || !*name || strcmp(name, "__metadata__") == 0)
		return p2p_err("safetensors: bad tensor name \"%s\"", name ? name : "");
	if (ndim < 0 || ndim > P2P_ST_MAXDIM)
		return p2p_err("safetensors: %s: %d dimensions (at most %d)", name, ndim, P2P_ST_MAXDIM);
	for (int i = 0; i < w->count; i++)
		if (strcmp(w->e[i].name, name) == 0)
			return p2p_err("safetensors: %s: added twice", name);
	size_t numel = 1;
	for (int i = 0; i < ndim; i++) {
		if (shape[i] < 0 || (shape[i] && numel > ((size_t)1 << 40) / (size_t)shape[i]))
			return p2p_err("safetensors: %s: bad shape", name);
		numel *= (size_t)shape[i];
	}
	if (w->count == w->cap) {
		int cap = w->cap ? 2 * w->cap : 16;
		entry *e = realloc(w->e, cap * sizeof *e);
		if (e)
			w->e = e;
		const float **d = realloc(w->data, cap * sizeof *d);
		if (d)
			w->data = d;
		if (!e || !d)
			return p2p_err("safetensors: out of memory");
		w->cap = cap;
	}
	entry *e = &w->e[w->count];
	memset(e, 0, sizeof *e);
	if (!(e->name = strdup(name)))
		return p2p_err("safetensors: out of memory");
	e->ndim = ndim;
	for (int i = 0; i < ndim; i++)
		e->shape[i] = shape[i];
	e->numel = numel;
	w->data[w->count++] = data;
	return 0;
}

int p2p_st_add_meta(p2p_st_writer *w, const char *key, const char *value)
{
	for (int i = 0; i < w->nmeta; i++)
		if (strcmp(w->mkey[i], key) == 0) {
			char *v = strdup(value);
			if (!v)
				return p2p_err("safetensors: out of memory");
			free(w->mval[i]);
			w->mval[i] = v;
			return 0;
		}
	if (w->nmeta == w->mcap) {
		int cap = w->mcap ? 2 * w->mcap : 8;
		char **k = realloc(w->mkey, cap * sizeof *k);
		if (k)
			w->mkey = k;
		char **v = realloc(w->mval, cap * sizeof *v);
		if (v)
			w->mval = v;
		if (!k || !v)
			return p2p_err("safetensors: out of memory");
		w->mcap = cap;
	}
	w->mkey[w->nmeta] = strdup(key);
	w->mval[w->nmeta] = strdup(value);
	if (!w->mkey[w->nmeta] || !w->mval[w->nmeta]) {
		free(w->mkey[w->nmeta]), free(w->mval[w->nmeta]);
		return p2p_err("safetensors: out of memory");
	}
	w->nmeta++;
	return 0;
}

/* The header JSON, padded with spaces so the data starts 8-byte aligned. */
static char *build_header(const p2p_st_writer *w, size_t *len)
{
	cJSON *j = cJSON_CreateObject(), *m = NULL;
	int bad = !j;
	if (!bad && w->nmeta) {
		m = cJSON_AddObjectToObject(j, "__metadata__");
		bad = !m;
		for (int i = 0; !bad && i < w->nmeta; i++)
			bad = !cJSON_AddStringToObject(m, w->mkey[i], w->mval[i]);
	}
	uint64_t at = 0;
	for (int i = 0; !bad && i < w->count; i++) {
		const entry *e = &w->e[i];
		cJSON *t = cJSON_AddObjectToObject(j, e->name), *s, *o;
		bad = !t || !cJSON_AddStringToObject(t, "dtype", "F32") ||
		      !(s = cJSON_AddArrayToObject(t, "shape")) ||
		      !(o = cJSON_AddArrayToObject(t, "data_offsets"));
		for (int d = 0; !bad && d < e->ndim; d++)
			bad = !cJSON_AddItemToArray(s, cJSON_CreateNumber((double)e->shape[d]));
		if (!bad)
			bad = !cJSON_AddItemToArray(o, cJSON_CreateNumber((double)at)) ||
			      !cJSON_AddItemToArray(o, cJSON_CreateNumber((double)(at + 4 * e->numel)));
		at += 4 * e->numel;
	}
	char *s = bad ? NULL : cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	if (!s)
		return NULL;
	size_t n = strlen(s), padded = (n + 7) & ~(size_t)7;
	char *h = realloc(s, padded + 1);
	if (!h) {
		free(s);
		return NULL;
	}
	memset(h + n, ' ', padded - n);
	h[padded] = 0;
	*len = padded;
	return h;
}

int p2p_st_save(p2p_st_writer *w, const char *path)
{
	size_t hlen;
	char *hdr = build_header(w, &hlen);
	if (!hdr)
		return p2p_err("%s: out of memory building the header", path);
	p2p_afile f;
	if (p2p_afile_open(&f, path) != 0) {
		free(hdr);
		return -1;
	}
	unsigned char lenb[8];
	for (int i = 0; i < 8; i++)
		lenb[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
	int bad = fwrite(lenb, 1, 8, f.fp) != 8 || fwrite(hdr, 1, hlen, f.fp) != hlen;
	free(hdr);
	for (int i = 0; !bad && i < w->count; i++)   /* an empty tensor may have no data */
		bad = w->e[i].numel && fwrite(w->data[i], 4, w->e[i].numel, f.fp) != w->e[i].numel;
	if (bad) {
		p2p_err_errno("%s: write failed", path);
		p2p_afile_abort(&f);
		return -1;
	}
	return p2p_afile_commit(&f);
}

/* ---- parameter sets ---- */

static char *joined(const char *prefix, const char *name)
{
	size_t a = strlen(prefix), b = strlen(name);
	char *s = malloc(a + b + 1);
	if (s) {
		memcpy(s, prefix, a);
		memcpy(s + a, name, b + 1);
	}
	return s;
}

int p2p_st_add_params(p2p_st_writer *w, const p2p_params *ps, const char *prefix,
                      const float *host)
{
	for (int i = 0; i < ps->count; i++) {
		char *name = joined(prefix ? prefix : "", ps->name[i]);
		if (!name)
			return p2p_err("safetensors: out of memory");
		int64_t s[P2P_MAXDIM];
		for (int d = 0; d < ps->ndim[i]; d++)
			s[d] = ps->shape[i][d];
		int rc = p2p_st_add(w, name, ps->ndim[i], s, host + ps->offset[i]);
		free(name);
		if (rc)
			return -1;
	}
	return 0;
}

int p2p_st_load_params(const p2p_st *st, const p2p_params *ps, const char *prefix,
                       float *host)
{
	memset(host, 0, ps->total * sizeof *host);   /* alignment gaps */
	for (int i = 0; i < ps->count; i++) {
		char *name = joined(prefix ? prefix : "", ps->name[i]);
		if (!name)
			return p2p_err("%s: out of memory", st->path);
		const float *d;
		int rc = p2p_st_get_shaped(st, name, ps->ndim[i], ps->shape[i], &d);
		free(name);
		if (rc)
			return -1;
		memcpy(host + ps->offset[i], d, ps->numel[i] * sizeof *host);
	}
	return 0;
}

int p2p_st_meta_int(const p2p_st *st, const char *path, const char *key, int *out)
{
	const char *s = p2p_st_meta(st, key);
	if (!s)
		return p2p_err("%s: no \"%s\" in the metadata", path, key);
	char *end;
	long v = strtol(s, &end, 10);
	if (end == s || *end || v < 0 || v > 1 << 20)
		return p2p_err("%s: metadata \"%s\": bad value \"%s\"", path, key, s);
	*out = (int)v;
	return 0;
}
