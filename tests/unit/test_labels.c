/* The label readers: valid CatFLW and CAT files, and every way they reject
 * a bad one, with the message they leave. */
#include "check.h"
#include "err.h"
#include "labels.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

/* A CatFLW label text with npts points (x = 10 + i, y = 20 + 2i); extra is
 * spliced in before the closing brace. */
static char *catflw_text(int npts, const char *box, const char *extra)
{
	size_t cap = 4096 + (extra ? strlen(extra) : 0);
	char *s = malloc(cap);
	size_t k = (size_t)snprintf(s, cap, "{\n  \"labels\": [");
	for (int i = 0; i < npts; i++)
		k += (size_t)snprintf(s + k, cap - k, "%s[%d.5, %d]", i ? ", " : "", 10 + i, 20 + 2 * i);
	snprintf(s + k, cap - k, "],\n  \"bounding_boxes\": %s%s\n}\n", box, extra ? extra : "");
	return s;
}

static int parse(const char *text, p2p_labels *l)
{
	return p2p_labels_parse_catflw(text, strlen(text), "x.json", l);
}

/* parse text and expect the message msg. */
#define CHECK_REJECT(text, msg) do { p2p_labels l_; \
	CHECK(parse(text, &l_) == -1); \
	CHECKF(strcmp(p2p_errmsg(), msg) == 0, "got '%s'", p2p_errmsg()); } while (0)

static void catflw_valid(void)
{
	char *t = catflw_text(48, "[5, 6.25, 90, 140]", NULL);
	p2p_labels l;
	CHECK(parse(t, &l) == 0);
	CHECK(l.n == 48);
	CHECK(l.has_box);
	CHECK_NEAR(l.xy[0], 10.5, 0);
	CHECK_NEAR(l.xy[1], 20, 0);
	CHECK_NEAR(l.xy[94], 57.5, 0);
	CHECK_NEAR(l.xy[95], 114, 0);
	CHECK_NEAR(l.box[1], 6.25, 0);
	CHECK_NEAR(l.box[3], 140, 0);
	double e[4];
	p2p_labels_extent(&l, e);
	CHECK_NEAR(e[0], 10.5, 0);
	CHECK_NEAR(e[1], 20, 0);
	CHECK_NEAR(e[2], 57.5, 0);
	CHECK_NEAR(e[3], 114, 0);
	free(t);
}

static void catflw_unknown_keys_kept_out(void)
{
	char *t = catflw_text(48, "[5, 6, 90, 140]", ", \"source\": \"x\", \"extra\": [1, {\"a\": null}]");
	p2p_labels l;
	CHECK(parse(t, &l) == 0);
	free(t);
}

static void catflw_point_count(void)
{
	char *t = catflw_text(47, "[5, 6, 90, 140]", NULL);
	CHECK_REJECT(t, "x.json: \"labels\" has 47 points, expected 48");
	free(t);
	t = catflw_text(49, "[5, 6, 90, 140]", NULL);
	CHECK_REJECT(t, "x.json: \"labels\" has 49 points, expected 48");
	free(t);
	t = catflw_text(0, "[5, 6, 90, 140]", NULL);
	CHECK_REJECT(t, "x.json: \"labels\" has 0 points, expected 48");
	free(t);
}

/* Replace the first occurrence of from in a malloc'd s. */
static char *replace(char *s, const char *from, const char *to)
{
	char *p = strstr(s, from);
	if (!p)
		return s;
	size_t a = (size_t)(p - s), b = strlen(from), c = strlen(to);
	char *r = malloc(strlen(s) - b + c + 1);
	memcpy(r, s, a);
	memcpy(r + a, to, c);
	strcpy(r + a + c, p + b);
	free(s);
	return r;
}

static void catflw_bad_points(void)
{
	char *t = replace(catflw_text(48, "[5, 6, 90, 140]", NULL), "[13.5, 26]", "[13.5, \"26\"]");
	CHECK_REJECT(t, "x.json: point 3 is not a pair of numbers");
	free(t);
	t = replace(catflw_text(48, "[5, 6, 90, 140]", NULL), "[13.5, 26]", "[13.5, 26, 1]");
	CHECK_REJECT(t, "x.json: point 3 is not a pair of numbers");
	free(t);
	t = replace(catflw_text(48, "[5, 6, 90, 140]", NULL), "[13.5, 26]", "[13.5]");
	CHECK_REJECT(t, "x.json: point 3 is not a pair of numbers");
	free(t);
	t = replace(catflw_text(48, "[5, 6, 90, 140]", NULL), "[13.5, 26]", "{\"x\": 1, \"y\": 2}");
	CHECK_REJECT(t, "x.json: point 3 is not a pair of numbers");
	free(t);
	t = replace(catflw_text(48, "[5, 6, 90, 140]", NULL), "[13.5, 26]", "[13.5, null]");
	CHECK_REJECT(t, "x.json: point 3 is not a pair of numbers");
	free(t);
	/* overflows to infinity */
	t = replace(catflw_text(48, "[5, 6, 90, 140]", NULL), "[13.5, 26]", "[1e999, 26]");
	CHECK_REJECT(t, "x.json: point 3 is out of range");
	free(t);
	t = replace(catflw_text(48, "[5, 6, 90, 140]", NULL), "[13.5, 26]", "[13.5, -2e7]");
	CHECK_REJECT(t, "x.json: point 3 is out of range");
	free(t);
}

static void catflw_nan(void)
{
	/* what Python's json.dump writes for nan: not JSON, and said so */
	char *t = replace(catflw_text(48, "[5, 6, 90, 140]", NULL), "[13.5, 26]", "[NaN, 26]");
	CHECK_REJECT(t, "x.json:2: not valid JSON (NaN and Infinity are not JSON numbers)");
	free(t);
	t = replace(catflw_text(48, "[5, 6, 90, 140]", NULL), "[13.5, 26]", "[13.5, -Infinity]");
	CHECK_REJECT(t, "x.json:2: not valid JSON (NaN and Infinity are not JSON numbers)");
	free(t);
	t = catflw_text(48, "[5, 6, Infinity, 140]", NULL);
	CHECK_REJECT(t, "x.json:3: not valid JSON (NaN and Infinity are not JSON numbers)");
	free(t);
}

static void catflw_box(void)
{
	char *t = catflw_text(48, "[90, 6, 5, 140]", NULL);
	CHECK_REJECT(t, "x.json: \"bounding_boxes\" is inverted or empty (x1 >= x2 or y1 >= y2)");
	free(t);
	t = catflw_text(48, "[5, 140, 90, 6]", NULL);
	CHECK_REJECT(t, "x.json: \"bounding_boxes\" is inverted or empty (x1 >= x2 or y1 >= y2)");
	free(t);
	t = catflw_text(48, "[5, 6, 5, 140]", NULL);
	CHECK_REJECT(t, "x.json: \"bounding_boxes\" is inverted or empty (x1 >= x2 or y1 >= y2)");
	free(t);
	t = catflw_text(48, "[5, 6, 90]", NULL);
	CHECK_REJECT(t, "x.json: \"bounding_boxes\" is not 4 numbers");
	free(t);
	t = catflw_text(48, "[[5, 6, 90, 140]]", NULL);
	CHECK_REJECT(t, "x.json: \"bounding_boxes\" is not 4 numbers");
	free(t);
	t = catflw_text(48, "[5, 6, \"90\", 140]", NULL);
	CHECK_REJECT(t, "x.json: \"bounding_boxes\" is not 4 numbers");
	free(t);
	t = catflw_text(48, "{\"x1\": 5}", NULL);
	CHECK_REJECT(t, "x.json: \"bounding_boxes\" is not 4 numbers");
	free(t);
	t = catflw_text(48, "[5, 6, 1e30, 140]", NULL);
	CHECK_REJECT(t, "x.json: \"bounding_boxes\" is out of range");
	free(t);
}

static void catflw_structure(void)
{
	CHECK_REJECT("", "x.json: empty file");
	CHECK_REJECT("[1, 2]", "x.json: not a JSON object");
	CHECK_REJECT("42", "x.json: not a JSON object");
	CHECK_REJECT("{\"bounding_boxes\": [1, 2, 3, 4]}", "x.json: missing \"labels\"");
	char *t = catflw_text(48, "[5, 6, 90, 140]", NULL);
	t = replace(t, "\"bounding_boxes\"", "\"bbox\"");
	CHECK_REJECT(t, "x.json: missing \"bounding_boxes\"");
	free(t);
	t = catflw_text(48, "[5, 6, 90, 140]", ", \"labels\": []");
	CHECK_REJECT(t, "x.json: duplicate key \"labels\"");
	free(t);
	t = catflw_text(48, "[5, 6, 90, 140]", ", \"bounding_boxes\": [5, 6, 90, 140]");
	CHECK_REJECT(t, "x.json: duplicate key \"bounding_boxes\"");
	free(t);
	t = catflw_text(48, "[5, 6, 90, 140]", NULL);
	t = replace(t, "\"labels\": [", "\"labels\": {\"a\": [");
	t = replace(t, "],\n  \"bounding", "]},\n  \"bounding");
	CHECK_REJECT(t, "x.json: \"labels\" is not an array");
	free(t);
}

static void catflw_syntax(void)
{
	CHECK_REJECT("{\"labels\": [1, 2,]}", "x.json:1: not valid JSON");
	CHECK_REJECT("{\n\n\"labels\": [1, 2\n", "x.json:4: not valid JSON");
	CHECK_REJECT("{}\n{}\n", "x.json:2: not valid JSON");
	CHECK_REJECT("{} x", "x.json:1: not valid JSON");
	CHECK_REJECT("   \n  ", "x.json:2: not valid JSON");
	p2p_labels l;
	CHECK(p2p_labels_parse_catflw("{}\0{}", 5, "x.json", &l) == -1);
	CHECK(strcmp(p2p_errmsg(), "x.json: contains a NUL byte, not JSON") == 0);
	/* nesting far deeper than cJSON's limit: an error, not a stack overflow */
	size_t deep = 100000;
	char *t = malloc(deep + 1);
	memset(t, '[', deep);
	t[deep] = 0;
	CHECK_REJECT(t, "x.json:1: not valid JSON");
	free(t);
}

static void cat_valid(void)
{
	const char *t = "9 175 160 239 162 199 199 149 121 137 78 166 93 281 101 312 72 335 158 \n";
	p2p_labels l;
	CHECK(p2p_labels_parse_cat(t, strlen(t), "a.jpg.cat", &l) == 0);
	CHECK(l.n == 9);
	CHECK(!l.has_box);
	CHECK_NEAR(l.xy[0], 175, 0);
	CHECK_NEAR(l.xy[17], 158, 0);
	const char *f = "9\t1.5 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18";
	CHECK(p2p_labels_parse_cat(f, strlen(f), "a.jpg.cat", &l) == 0);
	CHECK_NEAR(l.xy[0], 1.5, 0);
}

#define CHECK_CAT(text, msg) do { p2p_labels l_; \
	CHECK(p2p_labels_parse_cat(text, strlen(text), "a.cat", &l_) == -1); \
	CHECKF(strcmp(p2p_errmsg(), msg) == 0, "got '%s'", p2p_errmsg()); } while (0)

static void cat_invalid(void)
{
	CHECK_CAT("", "a.cat: empty file");
	CHECK_CAT("  \n", "a.cat: does not start with the point count");
	CHECK_CAT("nine 1 2", "a.cat: does not start with the point count");
	CHECK_CAT("9.5 1 2", "a.cat: does not start with the point count");
	CHECK_CAT("8 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16", "a.cat: point count is 8, expected 9");
	CHECK_CAT("9 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16", "a.cat: 8 points, expected 9");
	CHECK_CAT("9 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17", "a.cat: 8 points, expected 9");
	CHECK_CAT("9 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20", "a.cat: more than 9 points");
	CHECK_CAT("9 1 2 3 x 5 6 7 8 9 10 11 12 13 14 15 16 17 18", "a.cat: point 1 is not a pair of numbers");
	CHECK_CAT("9 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 nan", "a.cat: point 8 is not a pair of numbers");
	CHECK_CAT("9 1 2 3 4 5 6 inf 8 9 10 11 12 13 14 15 16 17 18", "a.cat: point 3 is not a pair of numbers");
	CHECK_CAT("9 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 1e999", "a.cat: point 8 is not a pair of numbers");
	CHECK_CAT("9 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 "
		  "1111111111111111111111111111111111111111111111111111111111111111111111", "a.cat: point 8 is not a pair of numbers");
	p2p_labels l;
	CHECK(p2p_labels_parse_cat("9 1\0 2", 6, "a.cat", &l) == -1);
	CHECK(strcmp(p2p_errmsg(), "a.cat: contains a NUL byte, not a .cat file") == 0);
}

static void read_files(void)
{
	char dir[] = "/tmp/test_labels.XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[256];
	p2p_labels l;

	snprintf(path, sizeof path, "%s/missing.json", dir);
	CHECK(p2p_labels_read(path, &l) == -1);
	char want[300];
	snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
	CHECKF(strcmp(p2p_errmsg(), want) == 0, "got '%s'", p2p_errmsg());

	snprintf(path, sizeof path, "%s/a.json", dir);
	char *t = catflw_text(48, "[5, 6, 90, 140]", NULL);
	FILE *fp = fopen(path, "w");
	fputs(t, fp);
	fclose(fp);
	free(t);
	CHECK(p2p_labels_read(path, &l) == 0 && l.n == 48);
	unlink(path);

	snprintf(path, sizeof path, "%s/a.jpg.cat", dir);
	fp = fopen(path, "w");
	fputs("9 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18\n", fp);
	fclose(fp);
	CHECK(p2p_labels_read(path, &l) == 0 && l.n == 9);
	unlink(path);

	/* one byte over the limit, and a file that just fits (then fails as JSON) */
	snprintf(path, sizeof path, "%s/big.json", dir);
	fp = fopen(path, "w");
	for (long i = 0; i < P2P_LABELS_MAX_BYTES + 1L; i++)
		fputc(' ', fp);
	fclose(fp);
	CHECK(p2p_labels_read(path, &l) == -1);
	snprintf(want, sizeof want, "%s: larger than %d bytes", path, P2P_LABELS_MAX_BYTES);
	CHECKF(strcmp(p2p_errmsg(), want) == 0, "got '%s'", p2p_errmsg());
	CHECK(truncate(path, P2P_LABELS_MAX_BYTES) == 0);
	CHECK(p2p_labels_read(path, &l) == -1);
	CHECK(strstr(p2p_errmsg(), ": not valid JSON") != NULL);
	unlink(path);

	/* a folder is not a label file */
	CHECK(p2p_labels_read(dir, &l) == -1);
	snprintf(want, sizeof want, "%s: cannot read: Is a directory", dir);
	CHECKF(strcmp(p2p_errmsg(), want) == 0, "got '%s'", p2p_errmsg());
	rmdir(dir);
}

static void bounds(void)
{
	p2p_labels l;
	memset(&l, 0, sizeof l);
	l.n = 2;
	l.xy[0] = -40; l.xy[1] = 10;
	l.xy[2] = 140; l.xy[3] = 149;
	l.has_box = 1;
	l.box[0] = -10; l.box[1] = 0; l.box[2] = 110; l.box[3] = 100;
	/* partly outside a 100x100 image: fine */
	CHECK(p2p_labels_check_bounds(&l, "x.json", 100, 100) == 0);
	l.xy[2] = 151;
	CHECK(p2p_labels_check_bounds(&l, "x.json", 100, 100) == -1);
	CHECKF(strcmp(p2p_errmsg(), "x.json: point 1 (151, 149) lies far outside the 100x100 image") == 0,
	       "got '%s'", p2p_errmsg());
	l.xy[2] = 140;
	l.xy[1] = -51;
	CHECK(p2p_labels_check_bounds(&l, "x.json", 100, 100) == -1);
	CHECK(strstr(p2p_errmsg(), "point 0 (-40, -51)") != NULL);
	l.xy[1] = 10;
	l.box[2] = 300;
	CHECK(p2p_labels_check_bounds(&l, "x.json", 100, 100) == -1);
	CHECKF(strcmp(p2p_errmsg(), "x.json: the bounding box lies far outside the 100x100 image") == 0,
	       "got '%s'", p2p_errmsg());
	l.has_box = 0;
	CHECK(p2p_labels_check_bounds(&l, "x.json", 100, 100) == 0);
}

/* Random damage to a valid file: every result is a clean accept or reject
 * (run under valgrind this also checks for bad reads and leaks). */
static void mutations(void)
{
	char *good = catflw_text(48, "[5, 6, 90, 140]", NULL);
	const char *cat = "9 175 160 239 162 199 199 149 121 137 78 166 93 281 101 312 72 335 158\n";
	size_t n = strlen(good), nc = strlen(cat);
	char *buf = malloc(n + 16);
	uint64_t s = 12345;
	int accepted = 0;
	for (int iter = 0; iter < 3000; iter++) {
		const char *src = iter % 3 ? good : cat;
		size_t len = iter % 3 ? n : nc;
		memcpy(buf, src, len);
		int edits = 1 + iter % 4;
		for (int e = 0; e < edits; e++) {
			s = s * 6364136223846793005ULL + 1442695040888963407ULL;
			size_t at = (size_t)(s >> 33) % len;
			switch ((s >> 20) % 4) {
			case 0: buf[at] = (char)(s >> 8); break;          /* any byte */
			case 1: buf[at] = "[]{},:\"0-e.9 "[(s >> 12) % 13]; break;
			case 2: len = at; break;                          /* truncate */
			default: memmove(buf + at, buf + at + 1, len - at - 1); len--; break;
			}
			if (len == 0)
				break;
		}
		p2p_labels l;
		int rc = iter % 3 ? p2p_labels_parse_catflw(buf, len, "m.json", &l)
				  : p2p_labels_parse_cat(buf, len, "m.cat", &l);
		if (rc == 0) {
			accepted++;
			CHECK(l.n == 48 || l.n == 9);
			for (int i = 0; i < 2 * l.n; i++)
				CHECK(isfinite(l.xy[i]));
		} else {
			CHECK(strncmp(p2p_errmsg(), "m.", 2) == 0);
		}
	}
	printf("# %d of 3000 damaged files still valid\n", accepted);
	free(buf);
	free(good);
}

int main(void)
{
	RUN(catflw_valid);
	RUN(catflw_unknown_keys_kept_out);
	RUN(catflw_point_count);
	RUN(catflw_bad_points);
	RUN(catflw_nan);
	RUN(catflw_box);
	RUN(catflw_structure);
	RUN(catflw_syntax);
	RUN(cat_valid);
	RUN(cat_invalid);
	RUN(read_files);
	RUN(bounds);
	RUN(mutations);
	return CHECK_DONE();
}
