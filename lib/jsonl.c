#include "jsonl.h"
#include "err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define JSONL_MAX_LINE (16u << 20)   /* a sample record is a few kB */

int p2p_jsonl_open(p2p_jsonl *r, const char *path)
{
	memset(r, 0, sizeof *r);
	int is_stdin = strcmp(path, "-") == 0;
	r->name = strdup(is_stdin ? "stdin" : path);
	if (!r->name)
		return p2p_err("%s: out of memory", path);
	r->fp = is_stdin ? stdin : fopen(path, "r");
	if (!r->fp) {
		p2p_err_errno("%s: cannot open", path);
		free(r->name);
		r->name = NULL;
		return -1;
	}
	return 0;
}

void p2p_jsonl_close(p2p_jsonl *r)
{
	if (r->fp && r->fp != stdin)
		fclose(r->fp);
	free(r->name);
	free(r->buf);
	memset(r, 0, sizeof *r);
}

/* One line into r->buf without its '\n': its length, -1 at end of input,
 * -2 when it is too long (the rest of it is skipped). */
static long read_line(p2p_jsonl *r)
{
	size_t len = 0;
	int c, too_long = 0;
	while ((c = getc_unlocked(r->fp)) != EOF && c != '\n') {
		if (too_long)
			continue;
		if (len + 1 >= r->cap) {
			if (r->cap >= JSONL_MAX_LINE) {
				too_long = 1;
				continue;
			}
			size_t ncap = r->cap ? r->cap * 2 : 4096;
			char *nb = realloc(r->buf, ncap);
			if (!nb)
				return -3;
			r->buf = nb;
			r->cap = ncap;
		}
		r->buf[len++] = (char)c;
	}
	if (c == EOF && len == 0 && !too_long)
		return -1;
	if (too_long)
		return -2;
	if (!r->buf) {  /* an empty first line stored nothing: no buffer yet */
		if (!(r->buf = malloc(4096)))
			return -3;
		r->cap = 4096;
	}
	r->buf[len] = 0;
	return (long)len;
}

int p2p_jsonl_next(p2p_jsonl *r, cJSON **obj)
{
	*obj = NULL;
	for (;;) {
		long n = read_line(r);
		if (n == -1)
			return ferror(r->fp) ? p2p_err("%s: read error", r->name) : 0;
		r->line++;
		if (n == -2)
			return p2p_err("%s:%ld: line longer than %u bytes", r->name, r->line, JSONL_MAX_LINE);
		if (n == -3)
			return p2p_err("%s:%ld: out of memory", r->name, r->line);
		/* cJSON would end a string at a NUL, silently shortening it */
		if (memchr(r->buf, 0, (size_t)n))
			return p2p_err("%s:%ld: contains a NUL byte, not JSON", r->name, r->line);
		const char *s = r->buf;
		while (*s == ' ' || *s == '\t' || *s == '\r')
			s++;
		if (!*s)
			continue;   /* blank line */
		const char *end = NULL;
		cJSON *o = cJSON_ParseWithLengthOpts(r->buf, (size_t)n, &end, 0);
		/* cJSON stops after the first value: anything but blanks after it
		 * makes the line something other than one JSON object */
		while (o && end && end < r->buf + n && (*end == ' ' || *end == '\t' || *end == '\r'))
			end++;
		if (o && end != r->buf + n) {
			cJSON_Delete(o);
			o = NULL;
		}
		if (!o)
			return p2p_err("%s:%ld: not valid JSON", r->name, r->line);
		if (!cJSON_IsObject(o)) {
			cJSON_Delete(o);
			return p2p_err("%s:%ld: not a JSON object", r->name, r->line);
		}
		*obj = o;
		return 1;
	}
}

int p2p_jsonl_write(FILE *fp, const cJSON *obj)
{
	char *s = cJSON_PrintUnformatted(obj);
	if (!s)
		return p2p_err("JSON: out of memory");
	int bad = fputs(s, fp) == EOF || fputc('\n', fp) == EOF;
	free(s);
	return bad ? p2p_err_errno("write failed") : 0;
}

const char *p2p_json_string(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
	if (!v) {
		p2p_err("missing \"%s\"", key);
		return NULL;
	}
	if (!cJSON_IsString(v) || !v->valuestring || !*v->valuestring) {
		p2p_err("\"%s\" is not a non-empty string", key);
		return NULL;
	}
	return v->valuestring;
}

int p2p_json_numbers(const cJSON *arr, const char *key, double *out, int n)
{
	if (!arr)
		return p2p_err("missing \"%s\"", key);
	if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != n)
		return p2p_err("\"%s\" is not an array of %d numbers", key, n);
	int i = 0;
	for (const cJSON *e = arr->child; e; e = e->next, i++) {
		if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble))
			return p2p_err("\"%s\"[%d] is not a finite number", key, i);
		out[i] = e->valuedouble;
	}
	return 0;
}

int p2p_json_points(const cJSON *arr, const char *key, float **xy, int *n)
{
	*xy = NULL;
	*n = 0;
	if (!arr)
		return p2p_err("missing \"%s\"", key);
	if (!cJSON_IsArray(arr))
		return p2p_err("\"%s\" is not an array", key);
	int count = cJSON_GetArraySize(arr);
	if (count < 1 || count > 100000)
		return p2p_err("\"%s\" has %d points", key, count);
	float *p = malloc(2 * (size_t)count * sizeof *p);
	if (!p)
		return p2p_err("out of memory");
	int i = 0;
	for (const cJSON *e = arr->child; e; e = e->next, i++) {
		double v[2];
		char sub[64];
		snprintf(sub, sizeof sub, "%s[%d]", key, i);
		if (p2p_json_numbers(e, sub, v, 2)) {
			free(p);
			return p2p_err("\"%s\"[%d] is not a pair of finite numbers", key, i);
		}
		p[2 * i] = (float)v[0];
		p[2 * i + 1] = (float)v[1];
	}
	*xy = p;
	*n = count;
	return 0;
}

cJSON *p2p_json_new_points(const float *xy, int n)
{
	cJSON *a = cJSON_CreateArray();
	for (int i = 0; a && i < n; i++) {
		cJSON *pt = cJSON_CreateArray();
		if (!pt) {
			cJSON_Delete(a);
			return NULL;
		}
		cJSON_AddItemToArray(pt, cJSON_CreateNumber(xy[2 * i]));
		cJSON_AddItemToArray(pt, cJSON_CreateNumber(xy[2 * i + 1]));
		cJSON_AddItemToArray(a, pt);
	}
	return a;
}
