/* safetensors: bit-exact round trips (tensors, metadata, parameter sets),
 * and every kind of malformed file rejected with a message that says what
 * is wrong, both from memory and from disk. */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "err.h"
#include "safetensors.h"

static char dir[] = "/tmp/p2p-st-XXXXXX";
static char path[256];

static uint64_t rs = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }

static void write_raw(const char *p, const void *buf, size_t n)
{
	FILE *fp = fopen(p, "wb");
	fwrite(buf, 1, n, fp);
	fclose(fp);
}

static void test_round_trip(void)
{
	/* every bit pattern survives: NaNs with payloads, -0, denormals, inf */
	size_t na = 2 * 3 * 4 * 5;
	uint32_t *a = malloc(na * 4);
	for (size_t i = 0; i < na; i++)
		a[i] = (uint32_t)rnd();
	a[0] = 0x7fc12345, a[1] = 0x80000000, a[2] = 0x00000001, a[3] = 0x7f800000;
	float b[7] = {1, 2, 3, 4, 5, 6, 7}, c[1] = {42};
	int64_t sa[4] = {2, 3, 4, 5}, sb[1] = {7}, sz[2] = {0, 3};
	p2p_st_writer *w = p2p_st_writer_new();
	CHECK(p2p_st_add(w, "down.0.weight", 4, sa, (float *)a) == 0);
	CHECK(p2p_st_add(w, "down.0.bias", 1, sb, b) == 0);
	CHECK(p2p_st_add(w, "scalar \"quoted\" \xc3\xa9", 0, NULL, c) == 0);
	CHECK(p2p_st_add(w, "empty", 2, sz, NULL) == 0);
	CHECK(p2p_st_add(w, "down.0.bias", 1, sb, b) == -1);
	CHECK(strstr(p2p_errmsg(), "added twice") != NULL);
	CHECK(p2p_st_add(w, "__metadata__", 1, sb, b) == -1);
	CHECK(p2p_st_add_meta(w, "size", "256") == 0);
	CHECK(p2p_st_add_meta(w, "config", "{\"ngf\": 64}") == 0);
	CHECK(p2p_st_add_meta(w, "size", "64") == 0);      /* replaces */
	CHECK(p2p_st_save(w, path) == 0);
	p2p_st_writer_free(w);

	p2p_st *st = p2p_st_read(path);
	CHECKF(st != NULL, "%s", p2p_errmsg());
	if (!st)
		return;
	CHECK(p2p_st_count(st) == 4);
	CHECK(strcmp(p2p_st_name(st, 0), "down.0.weight") == 0);
	CHECK(strcmp(p2p_st_name(st, 2), "scalar \"quoted\" \xc3\xa9") == 0);
	CHECK(p2p_st_name(st, 4) == NULL);
	int nd;
	const int64_t *sh;
	size_t n;
	const float *d = p2p_st_get(st, "down.0.weight", &nd, &sh, &n);
	CHECK(d && nd == 4 && sh[0] == 2 && sh[3] == 5 && n == na);
	CHECK(d && memcmp(d, a, na * 4) == 0);
	d = p2p_st_get(st, "down.0.bias", &nd, &sh, &n);
	CHECK(d && nd == 1 && n == 7 && memcmp(d, b, sizeof b) == 0);
	d = p2p_st_get(st, "scalar \"quoted\" \xc3\xa9", &nd, NULL, &n);
	CHECK(d && nd == 0 && n == 1 && d[0] == 42);
	d = p2p_st_get(st, "empty", &nd, &sh, &n);
	CHECK(d && nd == 2 && n == 0);
	CHECK(p2p_st_get(st, "nope", NULL, NULL, NULL) == NULL);
	CHECK(strcmp(p2p_st_meta(st, "size"), "64") == 0);
	CHECK(strcmp(p2p_st_meta(st, "config"), "{\"ngf\": 64}") == 0);
	CHECK(p2p_st_meta(st, "nope") == NULL);
	CHECK(p2p_st_meta_count(st) == 2);
	int shape[4] = {2, 3, 4, 5}, wrong[4] = {2, 3, 5, 4};
	CHECK(p2p_st_get_shaped(st, "down.0.weight", 4, shape, &d) == 0);
	CHECK(p2p_st_get_shaped(st, "down.0.weight", 4, wrong, &d) == -1);
	CHECKF(strstr(p2p_errmsg(), "has shape (2, 3, 4, 5), expected (2, 3, 5, 4)") != NULL, "%s", p2p_errmsg());
	CHECK(p2p_st_get_shaped(st, "missing", 1, shape, &d) == -1);
	CHECKF(strstr(p2p_errmsg(), "no tensor \"missing\"") != NULL, "%s", p2p_errmsg());
	p2p_st_free(st);

	/* the header is padded so the data starts 8-byte aligned */
	FILE *fp = fopen(path, "rb");
	unsigned char len[8];
	CHECK(fread(len, 1, 8, fp) == 8);
	fclose(fp);
	CHECK(len[0] % 8 == 0);
	free(a);
}

static void test_empty_and_atomic(void)
{
	p2p_st_writer *w = p2p_st_writer_new();
	CHECK(p2p_st_save(w, path) == 0);           /* "{}" and no data */
	p2p_st *st = p2p_st_read(path);
	CHECK(st && p2p_st_count(st) == 0 && p2p_st_meta_count(st) == 0);
	p2p_st_free(st);
	char bad[300];
	snprintf(bad, sizeof bad, "%s/no/such/dir/x.safetensors", dir);
	CHECK(p2p_st_save(w, bad) == -1);
	CHECKF(strstr(p2p_errmsg(), "x.safetensors") != NULL, "%s", p2p_errmsg());
	p2p_st_writer_free(w);
	CHECK(p2p_st_read(bad) == NULL);
	CHECKF(strstr(p2p_errmsg(), "cannot open") != NULL, "%s", p2p_errmsg());
	CHECK(p2p_st_read(dir) == NULL);
	CHECKF(strstr(p2p_errmsg(), "not a regular file") != NULL, "%s", p2p_errmsg());
}

static void test_params(void)
{
	const p2p_backend *be = p2p_backend_get("cpu");
	p2p_param_spec spec[3] = {
		{"conv.weight", 4, {8, 3, 4, 4}, P2P_INIT_NORMAL},
		{"conv.bias", 1, {8}, P2P_INIT_ZERO},
		{"up.weight", 4, {8, 5, 4, 4}, P2P_INIT_NORMAL},
	};
	p2p_params ps;
	CHECK(p2p_params_create(&ps, be, spec, 3) == 0);
	p2p_rng r;
	p2p_rng_seed(&r, 7);
	p2p_params_init(&ps, &r, 0.02f);
	float *host = malloc(ps.total * 4), *back = malloc(ps.total * 4);
	be->download(host, ps.data, ps.total);
	p2p_st_writer *w = p2p_st_writer_new();
	CHECK(p2p_st_add_params(w, &ps, "G.", host) == 0);
	CHECK(p2p_st_add_meta(w, "net", "G") == 0);
	CHECK(p2p_st_save(w, path) == 0);
	p2p_st_writer_free(w);
	p2p_st *st = p2p_st_read(path);
	CHECK(st && p2p_st_count(st) == 3);
	CHECK(st && p2p_st_load_params(st, &ps, "G.", back) == 0);
	CHECK(memcmp(host, back, ps.total * 4) == 0);
	CHECK(st && p2p_st_load_params(st, &ps, "D.", back) == -1);
	CHECKF(strstr(p2p_errmsg(), "no tensor \"D.conv.weight\"") != NULL, "%s", p2p_errmsg());
	p2p_st_free(st);
	/* a set whose shapes differ is refused by name */
	spec[2].shape[1] = 6;
	p2p_params ps2;
	CHECK(p2p_params_create(&ps2, be, spec, 3) == 0);
	st = p2p_st_read(path);
	float *back2 = malloc(ps2.total * 4);
	CHECK(st && p2p_st_load_params(st, &ps2, "G.", back2) == -1);
	free(back2);
	CHECKF(strstr(p2p_errmsg(), "\"G.up.weight\" has shape (8, 5, 4, 4), expected (8, 6, 4, 4)") != NULL,
	       "%s", p2p_errmsg());
	p2p_st_free(st);
	p2p_params_free(&ps2);
	p2p_params_free(&ps);
	free(host), free(back);
}

/* A file from its header text and data size; len overrides the length word. */
static size_t make(unsigned char *buf, const char *hdr, size_t dbytes, int64_t len)
{
	size_t h = strlen(hdr);
	uint64_t l = len >= 0 ? (uint64_t)len : h;
	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)(l >> (8 * i));
	memcpy(buf + 8, hdr, h);
	memset(buf + 8 + h, 0x3f, dbytes);
	return 8 + h + dbytes;
}

static void reject(const char *hdr, size_t dbytes, int64_t len, const char *want)
{
	static unsigned char buf[4096];
	size_t n = make(buf, hdr, dbytes, len);
	p2p_st *st = p2p_st_parse(buf, n, "mem");
	CHECKF(st == NULL, "accepted: %s", hdr);
	CHECKF(strstr(p2p_errmsg(), want) != NULL, "%s: got \"%s\", want \"%s\"", hdr, p2p_errmsg(), want);
	p2p_st_free(st);
	write_raw(path, buf, n);
	st = p2p_st_read(path);
	CHECKF(st == NULL, "accepted from disk: %s", hdr);
	printf("# %s\n", p2p_errmsg());
	CHECKF(strstr(p2p_errmsg(), want) != NULL && strstr(p2p_errmsg(), path) == p2p_errmsg(),
	       "%s: got \"%s\"", hdr, p2p_errmsg());
	p2p_st_free(st);
}

#define T(name, shape, off) "\"" name "\":{\"dtype\":\"F32\",\"shape\":" shape ",\"data_offsets\":" off "}"

static void test_malformed(void)
{
	/* a good file, as the safetensors library writes it, parses */
	unsigned char buf[256];
	size_t n = make(buf, "{" T("a", "[2]", "[0,8]") "," T("b", "[1,1]", "[8,12]") "}  ", 12, -1);
	p2p_st *st = p2p_st_parse(buf, n, "mem");
	CHECKF(st != NULL, "%s", p2p_errmsg());
	p2p_st_free(st);

	reject("", 0, -1, "too short for JSON");
	CHECK(p2p_st_parse(buf, 5, "mem") == NULL);
	CHECK(strstr(p2p_errmsg(), "too short for a safetensors file") != NULL);
	reject("{}", 0, 100, "the header claims 100 bytes but the file has 2");
	reject("{}", 0, 5000000000LL, "the header claims 5000000000 bytes (limit");
	reject("{}", 0, INT64_MAX, "the header claims 9223372036854775807 bytes (limit");
	reject("{nope}", 0, -1, "not valid JSON");
	reject("[1, 2]", 0, -1, "not a JSON object");
	reject("{} x", 0, -1, "bytes after its JSON");
	/* a NUL inside the header */
	memcpy(buf, "\5\0\0\0\0\0\0\0{}\0  ", 13);
	CHECK(p2p_st_parse(buf, 13, "mem") == NULL);
	CHECKF(strstr(p2p_errmsg(), "bytes after its JSON") != NULL, "%s", p2p_errmsg());
	reject("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, -1,
	       "dtype F16 is not supported (F32 only)");
	reject("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, -1, "lacks dtype, shape or data_offsets");
	reject("{\"a\":[1]}", 0, -1, "tensor \"a\" is not a JSON object");
	reject("{" T("a", "[3]", "[0,8]") "}", 8, -1, "shape (3) needs 12 bytes, data_offsets give 8");
	reject("{" T("a", "[2,-1]", "[0,8]") "}", 8, -1, "shape is not a list of sizes");
	reject("{" T("a", "[2.5]", "[0,8]") "}", 8, -1, "shape is not a list of sizes");
	reject("{" T("a", "[1,2,3,4,5,6,7,8,9]", "[0,8]") "}", 8, -1, "9 dimensions");
	reject("{" T("a", "[4294967296,4294967296]", "[0,8]") "}", 8, -1, "shape needs more bytes than any file holds");
	reject("{" T("a", "[2]", "[0,8]") "}", 4, -1, "run past the end of the data (4 bytes)");
	reject("{" T("a", "[2]", "[8,0]") "}", 8, -1, "data_offsets is not [begin, end]");
	reject("{" T("a", "[2]", "[0]") "}", 8, -1, "data_offsets is not [begin, end]");
	reject("{" T("a", "[2]", "[0,8]") "," T("b", "[2]", "[4,12]") "}", 12, -1,
	       "tensors \"a\" and \"b\" overlap");
	reject("{" T("a", "[1]", "[0,4]") "," T("b", "[1]", "[8,12]") "}", 12, -1,
	       "data bytes 4 to 8 belong to no tensor");
	reject("{" T("a", "[1]", "[0,4]") "}", 12, -1, "data bytes 4 to 12 belong to no tensor");
	reject("{" T("a", "[1]", "[0,4]") "," T("a", "[1]", "[4,8]") "}", 8, -1,
	       "tensor \"a\" appears twice");
	reject("{\"__metadata__\":{\"k\":1}}", 0, -1, "value of \"k\" is not a string");
	reject("{\"__metadata__\":[]}", 0, -1, "__metadata__ is not a JSON object");
	reject("{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, -1, "key \"k\" appears twice");
}

/* A truncated copy of a real file never parses. */
static void test_truncated(void)
{
	float x[16] = {0};
	int64_t s[1] = {16};
	p2p_st_writer *w = p2p_st_writer_new();
	p2p_st_add(w, "x", 1, s, x);
	p2p_st_save(w, path);
	p2p_st_writer_free(w);
	FILE *fp = fopen(path, "rb");
	unsigned char buf[512];
	size_t n = fread(buf, 1, sizeof buf, fp);
	fclose(fp);
	int accepted = 0;
	for (size_t k = 0; k < n; k++) {
		p2p_st *st = p2p_st_parse(buf, k, "cut");
		accepted += st != NULL;
		p2p_st_free(st);
	}
	CHECK(accepted == 0);
	p2p_st *st = p2p_st_parse(buf, n, "whole");
	CHECK(st != NULL);
	p2p_st_free(st);
}

int main(void)
{
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(path, sizeof path, "%s/t.safetensors", dir);
	RUN(test_round_trip);
	RUN(test_empty_and_atomic);
	RUN(test_params);
	RUN(test_malformed);
	RUN(test_truncated);
	unlink(path);
	rmdir(dir);
	return CHECK_DONE();
}
