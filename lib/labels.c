#include "labels.h"
#include "err.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Coordinates beyond this are not pixels of any image we could read; keeping
 * them out keeps every later computation far from overflow. */
#define COORD_MAX 1e7

static int coord_ok(double v)
{
	return isfinite(v) && fabs(v) <= COORD_MAX;
}

/* The 1-based line of byte offset off. */
static long line_of(const char *buf, size_t n, size_t off)
{
	long line = 1;
	for (size_t i = 0; i < off && i < n; i++)
		line += buf[i] == '\n';
	return line;
}

/* Python's json module writes these for non-finite floats. */
static int looks_nonfinite(const char *s, size_t left)
{
	static const char *const words[] = { "nan", "-nan", "inf", "-inf", "+inf", "infinity", "-infinity" };
	for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
		size_t k = strlen(words[i]);
		if (k <= left && strncasecmp(s, words[i], k) == 0)
			return 1;
	}
	return 0;
}

/* The one item called key, NULL if absent; -1 (message set) if repeated. */
static int get_unique(const cJSON *obj, const char *key, const char *name, const cJSON **item)
{
	*item = NULL;
	for (const cJSON *c = obj->child; c; c = c->next) {
		if (!c->string || strcmp(c->string, key) != 0)
			continue;
		if (*item)
			return p2p_err("%s: duplicate key \"%s\"", name, key);
		*item = c;
	}
	return 0;
}

static int parse_points(const cJSON *arr, const char *name, p2p_labels *l)
{
	if (!cJSON_IsArray(arr))
		return p2p_err("%s: \"labels\" is not an array", name);
	int n = cJSON_GetArraySize(arr);
	if (n != P2P_CATFLW_POINTS)
		return p2p_err("%s: \"labels\" has %d points, expected %d", name, n, P2P_CATFLW_POINTS);
	int i = 0;
	for (const cJSON *p = arr->child; p; p = p->next, i++) {
		const cJSON *x = p->child, *y = x ? x->next : NULL;
		if (!cJSON_IsArray(p) || !cJSON_IsNumber(x) || !cJSON_IsNumber(y) || y->next)
			return p2p_err("%s: point %d is not a pair of numbers", name, i);
		if (!coord_ok(x->valuedouble) || !coord_ok(y->valuedouble))
			return p2p_err("%s: point %d is out of range", name, i);
		l->xy[2 * i] = x->valuedouble;
		l->xy[2 * i + 1] = y->valuedouble;
	}
	l->n = n;
	return 0;
}

static int parse_box(const cJSON *arr, const char *name, p2p_labels *l)
{
	if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != 4)
		return p2p_err("%s: \"bounding_boxes\" is not 4 numbers", name);
	int i = 0;
	for (const cJSON *v = arr->child; v; v = v->next, i++) {
		if (!cJSON_IsNumber(v))
			return p2p_err("%s: \"bounding_boxes\" is not 4 numbers", name);
		if (!coord_ok(v->valuedouble))
			return p2p_err("%s: \"bounding_boxes\" is out of range", name);
		l->box[i] = v->valuedouble;
	}
	if (!(l->box[0] < l->box[2] && l->box[1] < l->box[3]))
		return p2p_err("%s: \"bounding_boxes\" is inverted or empty (x1 >= x2 or y1 >= y2)", name);
	l->has_box = 1;
	return 0;
}

int p2p_labels_parse_catflw(const char *buf, size_t n, const char *name, p2p_labels *l)
{
	memset(l, 0, sizeof *l);
	if (n == 0)
		return p2p_err("%s: empty file", name);
	if (n > P2P_LABELS_MAX_BYTES)
		return p2p_err("%s: larger than %d bytes", name, P2P_LABELS_MAX_BYTES);
	if (memchr(buf, 0, n))
		return p2p_err("%s: contains a NUL byte, not JSON", name);
	/* cJSON wants the text NUL-terminated to check that nothing follows it. */
	char *text = malloc(n + 1);
	if (!text)
		return p2p_err("%s: out of memory", name);
	memcpy(text, buf, n);
	text[n] = 0;
	const char *end = NULL;
	cJSON *root;
	/* cJSON records a failed parse in a global; keep parsers from racing
	 * on it when samples are read in parallel. */
#pragma omp critical(p2p_cjson_parse)
	root = cJSON_ParseWithLengthOpts(text, n + 1, &end, 1);
	if (!root) {
		size_t off = end && end >= text && end <= text + n ? (size_t)(end - text) : n;
		while (off < n && isspace((unsigned char)text[off]))
			off++;
		int nonfinite = looks_nonfinite(text + off, n - off);
		long line = line_of(text, n, off);
		free(text);
		return p2p_err("%s:%ld: not valid JSON%s", name, line,
			       nonfinite ? " (NaN and Infinity are not JSON numbers)" : "");
	}
	free(text);
	int rc = -1;
	const cJSON *pts, *box;
	if (!cJSON_IsObject(root))
		p2p_err("%s: not a JSON object", name);
	else if (get_unique(root, "labels", name, &pts) || get_unique(root, "bounding_boxes", name, &box))
		;
	else if (!pts)
		p2p_err("%s: missing \"labels\"", name);
	else if (!box)
		p2p_err("%s: missing \"bounding_boxes\"", name);
	else if (!parse_points(pts, name, l) && !parse_box(box, name, l))
		rc = 0;
	cJSON_Delete(root);
	return rc;
}

/* Next whitespace-separated token of a .cat file into tok (NUL-terminated);
 * 1 found, 0 at the end, -1 too long for a number. */
static int next_token(const char *buf, size_t n, size_t *pos, char *tok, size_t cap)
{
	size_t i = *pos;
	while (i < n && isspace((unsigned char)buf[i]))
		i++;
	if (i == n) {
		*pos = i;
		return 0;
	}
	size_t k = 0;
	while (i < n && !isspace((unsigned char)buf[i])) {
		if (k + 1 >= cap)
			return -1;
		tok[k++] = buf[i++];
	}
	tok[k] = 0;
	*pos = i;
	return 1;
}

/* The whole token is one finite number. */
static int token_number(const char *tok, double *v)
{
	char *end;
	errno = 0;
	*v = strtod(tok, &end);
	return *tok && !*end && errno == 0 && coord_ok(*v);
}

int p2p_labels_parse_cat(const char *buf, size_t n, const char *name, p2p_labels *l)
{
	memset(l, 0, sizeof *l);
	if (n == 0)
		return p2p_err("%s: empty file", name);
	if (n > P2P_LABELS_MAX_BYTES)
		return p2p_err("%s: larger than %d bytes", name, P2P_LABELS_MAX_BYTES);
	if (memchr(buf, 0, n))
		return p2p_err("%s: contains a NUL byte, not a .cat file", name);
	char tok[64];
	size_t pos = 0;
	double count;
	if (next_token(buf, n, &pos, tok, sizeof tok) != 1 || !token_number(tok, &count) || count != floor(count))
		return p2p_err("%s: does not start with the point count", name);
	if (count != P2P_CAT_POINTS)
		return p2p_err("%s: point count is %.0f, expected %d", name, count, P2P_CAT_POINTS);
	for (int i = 0; i < 2 * P2P_CAT_POINTS; i++) {
		int t = next_token(buf, n, &pos, tok, sizeof tok);
		if (t == 0)
			return p2p_err("%s: %d points, expected %d", name, i / 2, P2P_CAT_POINTS);
		if (t < 0 || !token_number(tok, &l->xy[i]))
			return p2p_err("%s: point %d is not a pair of numbers", name, i / 2);
	}
	if (next_token(buf, n, &pos, tok, sizeof tok) != 0)
		return p2p_err("%s: more than %d points", name, P2P_CAT_POINTS);
	l->n = P2P_CAT_POINTS;
	return 0;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

int p2p_labels_read(const char *path, p2p_labels *l)
{
	memset(l, 0, sizeof *l);
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return p2p_err_errno("%s: cannot open", path);
	/* One byte more than allowed, to tell "too large" from "just fits". */
	char *buf = malloc(P2P_LABELS_MAX_BYTES + 1);
	if (!buf) {
		fclose(fp);
		return p2p_err("%s: out of memory", path);
	}
	errno = 0;
	size_t n = fread(buf, 1, P2P_LABELS_MAX_BYTES + 1, fp);
	int bad = ferror(fp), e = errno ? errno : EIO;
	fclose(fp);
	int rc;
	if (bad) {
		errno = e;
		rc = p2p_err_errno("%s: cannot read", path);
	} else if (ends_with(path, ".cat")) {
		rc = p2p_labels_parse_cat(buf, n, path, l);
	} else {
		rc = p2p_labels_parse_catflw(buf, n, path, l);
	}
	free(buf);
	return rc;
}

void p2p_labels_extent(const p2p_labels *l, double ext[4])
{
	ext[0] = ext[2] = l->n ? l->xy[0] : 0;
	ext[1] = ext[3] = l->n ? l->xy[1] : 0;
	for (int i = 1; i < l->n; i++) {
		double x = l->xy[2 * i], y = l->xy[2 * i + 1];
		ext[0] = fmin(ext[0], x);
		ext[1] = fmin(ext[1], y);
		ext[2] = fmax(ext[2], x);
		ext[3] = fmax(ext[3], y);
	}
}

static int near_image(double x, double y, int w, int h)
{
	return x >= -0.5 * w && x <= 1.5 * w && y >= -0.5 * h && y <= 1.5 * h;
}

int p2p_labels_check_bounds(const p2p_labels *l, const char *path, int w, int h)
{
	for (int i = 0; i < l->n; i++) {
		double x = l->xy[2 * i], y = l->xy[2 * i + 1];
		if (!near_image(x, y, w, h))
			return p2p_err("%s: point %d (%g, %g) lies far outside the %dx%d image",
				       path, i, x, y, w, h);
	}
	if (l->has_box && (!near_image(l->box[0], l->box[1], w, h) || !near_image(l->box[2], l->box[3], w, h)))
		return p2p_err("%s: the bounding box lies far outside the %dx%d image", path, w, h);
	return 0;
}
