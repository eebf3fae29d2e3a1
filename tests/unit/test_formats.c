/* lib/ basics: rng, atomic files, .npy, JSON Lines, images. */
#include "check.h"
#include "tmpdir.h"
#include "atomic.h"
#include "crop.h"
#include "err.h"
#include "image.h"
#include "jsonl.h"
#include "npy.h"
#include "rng.h"

#include <vips/vips.h>

#include <dirent.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>


static int count_files(void)
{
	DIR *d = opendir(dir);
	int n = 0;
	for (struct dirent *e; (e = readdir(d));)
		n += e->d_name[0] != '.' || (e->d_name[1] && e->d_name[1] != '.' && e->d_name[1]);
	closedir(d);
	return n;
}

static void rng_is_deterministic_and_in_range(void)
{
	p2p_rng a, b;
	p2p_rng_seed(&a, 42);
	p2p_rng_seed(&b, 42);
	for (int i = 0; i < 1000; i++)
		CHECK(p2p_rng_u64(&a) == p2p_rng_u64(&b));
	p2p_rng_seed2(&a, 42, 1);
	p2p_rng_seed2(&b, 42, 2);
	CHECK(p2p_rng_u64(&a) != p2p_rng_u64(&b));
	double sum = 0, sq = 0;
	int hist[7] = {0};
	for (int i = 0; i < 100000; i++) {
		double u = p2p_rng_uniform(&a);
		CHECK(u >= 0 && u < 1);
		hist[p2p_rng_below(&a, 7)]++;
		double z = p2p_rng_normal(&a);
		sum += z;
		sq += z * z;
	}
	CHECK_NEAR(sum / 100000, 0, 0.02);
	CHECK_NEAR(sq / 100000, 1, 0.02);
	for (int i = 0; i < 7; i++)
		CHECKF(abs(hist[i] - 100000 / 7) < 600, "bucket %d has %d", i, hist[i]);
	int p[10];
	for (int i = 0; i < 10; i++)
		p[i] = i;
	p2p_rng_shuffle(&a, p, 10);
	int seen = 0;
	for (int i = 0; i < 10; i++)
		seen |= 1 << p[i];
	CHECK(seen == 1023);
}

static void atomic_write_leaves_no_temp(void)
{
	int before = count_files();
	CHECK(p2p_write_file(tmp("a.txt"), "hello", 5) == 0);
	CHECK(count_files() == before + 1);
	void *buf;
	size_t n;
	CHECK(p2p_read_file(tmp("a.txt"), 100, &buf, &n) == 0 && n == 5 && memcmp(buf, "hello", 5) == 0);
	free(buf);
	CHECK(p2p_read_file(tmp("a.txt"), 4, &buf, &n) == -1);
	CHECK(strstr(p2p_errmsg(), "larger than 4 bytes") != NULL);
	p2p_afile f;
	CHECK(p2p_afile_open(&f, tmp("a.txt")) == 0);
	fputs("half", f.fp);
	p2p_afile_abort(&f);
	CHECK(count_files() == before + 1);
	CHECK(p2p_read_file(tmp("a.txt"), 100, &buf, &n) == 0 && n == 5);
	free(buf);
	CHECK(p2p_write_file("/nonexistent-dir/x", "x", 1) == -1);
	CHECK(strncmp(p2p_errmsg(), "/nonexistent-dir/x: cannot create", 33) == 0);
	/* a killed writer's temp file is swept; other dot files stay */
	CHECK(p2p_write_file(tmp(".a.txt.tmp.Ab12Cd"), "x", 1) == 0);
	CHECK(p2p_write_file(tmp(".keep"), "x", 1) == 0);
	CHECK(p2p_afile_sweep(dir) == 1);
	CHECK(access(tmp(".a.txt.tmp.Ab12Cd"), F_OK) != 0 && access(tmp(".keep"), F_OK) == 0);
	CHECK(p2p_afile_sweep(tmp("no-such-folder")) == 0);
	CHECK(p2p_mkdirs(tmp("d1/d2/d3")) == 0);
	CHECK(p2p_mkdirs(tmp("d1/d2/d3")) == 0);
	CHECK(p2p_mkdirs(tmp("a.txt")) == -1);
}

static void npy_round_trip(void)
{
	unsigned char u[6] = {0, 1, 2, 253, 254, 255};
	long shape[2] = {2, 3};
	CHECK(p2p_npy_write(tmp("u.npy"), P2P_U8, 2, shape, u) == 0);
	p2p_npy a;
	CHECK(p2p_npy_read(tmp("u.npy"), &a) == 0);
	CHECK(a.dtype == P2P_U8 && a.ndim == 2 && a.shape[0] == 2 && a.shape[1] == 3);
	CHECK(a.count == 6 && memcmp(a.data, u, 6) == 0);
	p2p_npy_free(&a);
	/* the header is the one numpy writes: 64-byte aligned, '\n' ended */
	void *buf;
	size_t n;
	CHECK(p2p_read_file(tmp("u.npy"), 1000, &buf, &n) == 0);
	CHECK(n == 128 + 6 && ((char *)buf)[127] == '\n');
	CHECK(memmem(buf, n, "'shape': (2, 3), }", 18) != NULL);
	free(buf);
	float f[3] = {-1.5f, 0, 3.25f};
	long s1[1] = {3};
	CHECK(p2p_npy_write(tmp("f.npy"), P2P_F32, 1, s1, f) == 0);
	CHECK(p2p_read_file(tmp("f.npy"), 1000, &buf, &n) == 0);
	CHECK(memmem(buf, n, "'shape': (3,), }", 16) != NULL);
	free(buf);
	CHECK(p2p_npy_read(tmp("f.npy"), &a) == 0);
	CHECK(a.dtype == P2P_F32 && a.ndim == 1 && memcmp(a.data, f, 12) == 0);
	p2p_npy_free(&a);
	int h, w;
	float *hm;
	CHECK(p2p_heatmap_read(tmp("u.npy"), &h, &w, &hm) == 0);
	CHECK(h == 2 && w == 3 && hm[5] == 1.0f && hm[0] == 0.0f);
	free(hm);
	CHECK(p2p_heatmap_read(tmp("f.npy"), &h, &w, &hm) == -1);
	CHECK(strstr(p2p_errmsg(), "expected a 2-D heatmap") != NULL);
}

/* A .npy file with the given header text and n data bytes. */
static int parse_with(const char *hdr, size_t data, const char *want)
{
	char b[512];
	size_t hl = strlen(hdr);
	memcpy(b, "\x93NUMPY\x01\x00", 8);
	b[8] = (char)hl;
	b[9] = 0;
	memcpy(b + 10, hdr, hl);
	memset(b + 10 + hl, 7, data);
	p2p_npy a;
	int rc = p2p_npy_parse(b, 10 + hl + data, "x.npy", &a);
	if (rc == 0)
		p2p_npy_free(&a);
	if (want && (rc == 0 || !strstr(p2p_errmsg(), want))) {
		printf("#   header %s: got '%s', want '%s'\n", hdr, rc ? p2p_errmsg() : "ok", want);
		return 0;
	}
	return want ? 1 : rc == 0;
}

static void npy_rejects_malformed(void)
{
	CHECK(parse_with("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2), }", 4, NULL));
	CHECK(parse_with("{'shape': (4,), 'fortran_order': False, 'descr': '<f4'}", 16, NULL));
	CHECK(parse_with("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2), }", 3, "truncated data"));
	CHECK(parse_with("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2), }", 5, "trailing"));
	CHECK(parse_with("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", 16, "unsupported dtype"));
	CHECK(parse_with("{'descr': '|u1', 'fortran_order': True, 'shape': (2,), }", 2, "Fortran"));
	CHECK(parse_with("{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999, 99999999999), }", 0, "too large"));
	CHECK(parse_with("{'descr': '|u1', 'fortran_order': False, 'shape': (1,1,1,1,1), }", 1, "more than 4"));
	CHECK(parse_with("{'descr': '|u1', 'fortran_order': False, 'shape': (2, x), }", 2, "bad 'shape'"));
	CHECK(parse_with("{'descr': '|u1', 'fortran_order': False}", 0, "no 'shape'"));
	/* found by fuzzing: the header ends where the shape should begin */
	CHECK(parse_with("{'descr': '|u1', 'fortran_order': False, 'shape':   ", 0, "no 'shape'"));
	p2p_npy a;
	CHECK(p2p_npy_parse("\x93NUMPY\x01\x00\xff\x00{", 11, "t.npy", &a) == -1);
	CHECK(strcmp(p2p_errmsg(), "t.npy: truncated header") == 0);
	CHECK(p2p_npy_parse("PK\x03\x04", 4, "z.npy", &a) == -1);
	CHECK(strcmp(p2p_errmsg(), "z.npy: not a .npy file") == 0);
	CHECK(p2p_npy_read(tmp("missing.npy"), &a) == -1);
	CHECK(strstr(p2p_errmsg(), "missing.npy: cannot open") != NULL);
}

static void jsonl_reads_and_reports_lines(void)
{
	const char *text =
		"{\"id\": \"a\", \"points\": [[1, 2], [3.5, 4]], \"extra\": {\"k\": [1]}}\n"
		"\n"
		"{\"id\": \"b\", \"points\": [[1, 2], [3, \"x\"]]}\n"
		"{not json\n"
		"[1, 2]\n"
		"{\"id\": \"\"}";   /* no final newline */
	CHECK(p2p_write_file(tmp("s.jsonl"), text, strlen(text)) == 0);
	p2p_jsonl r;
	cJSON *o;
	float *xy;
	int n;
	CHECK(p2p_jsonl_open(&r, tmp("s.jsonl")) == 0);
	CHECK(p2p_jsonl_next(&r, &o) == 1 && r.line == 1);
	CHECK(strcmp(p2p_json_string(o, "id"), "a") == 0);
	CHECK(p2p_json_points(cJSON_GetObjectItem(o, "points"), "points", &xy, &n) == 0);
	CHECK(n == 2 && xy[2] == 3.5f && xy[3] == 4.0f);
	/* written back, unknown keys are kept */
	FILE *fp = fopen(tmp("out.jsonl"), "w");
	CHECK(p2p_jsonl_write(fp, o) == 0);
	fclose(fp);
	free(xy);
	cJSON_Delete(o);
	CHECK(p2p_jsonl_next(&r, &o) == 1 && r.line == 3);
	CHECK(p2p_json_points(cJSON_GetObjectItem(o, "points"), "points", &xy, &n) == -1);
	CHECK(strcmp(p2p_errmsg(), "\"points\"[1] is not a pair of finite numbers") == 0);
	cJSON_Delete(o);
	CHECK(p2p_jsonl_next(&r, &o) == -1);
	CHECKF(strstr(p2p_errmsg(), "s.jsonl:4: not valid JSON") != NULL, "%s", p2p_errmsg());
	CHECK(p2p_jsonl_next(&r, &o) == -1);
	CHECK(strstr(p2p_errmsg(), "s.jsonl:5: not a JSON object") != NULL);
	CHECK(p2p_jsonl_next(&r, &o) == 1 && r.line == 6);
	CHECK(p2p_json_string(o, "id") == NULL);
	CHECK(strcmp(p2p_errmsg(), "\"id\" is not a non-empty string") == 0);
	CHECK(p2p_json_string(o, "image") == NULL);
	CHECK(strcmp(p2p_errmsg(), "missing \"image\"") == 0);
	cJSON_Delete(o);
	CHECK(p2p_jsonl_next(&r, &o) == 0);
	p2p_jsonl_close(&r);
	void *buf;
	size_t len;
	CHECK(p2p_read_file(tmp("out.jsonl"), 1000, &buf, &len) == 0);
	CHECK(len > 0 && memmem(buf, len, "\"extra\":{\"k\":[1]}}\n", 19) != NULL);
	free(buf);
	double box[4];
	cJSON *arr = cJSON_Parse("[1, 2, 3]");
	CHECK(p2p_json_numbers(arr, "box", box, 4) == -1);
	CHECK(strcmp(p2p_errmsg(), "\"box\" is not an array of 4 numbers") == 0);
	cJSON_Delete(arr);
	float pts[4] = {1, 2, 3, 4};
	cJSON *pa = p2p_json_new_points(pts, 2);
	char *s = cJSON_PrintUnformatted(pa);
	CHECK(strcmp(s, "[[1,2],[3,4]]") == 0);
	free(s);
	cJSON_Delete(pa);
}

/* Found by fuzzing (tests/fuzz/regress/jsonl/): a blank first line, a NUL
 * byte, text after the object. */
static void jsonl_rejects_what_is_not_one_object(void)
{
	const char text[] = "\n{\"id\": \"a\"}\n{\"id\": \"b\"} {}\n{\"i\0d\": \"c\"}\n"
	                    "{\"id\": \"d\"} \t\r\n";
	CHECK(p2p_write_file(tmp("z.jsonl"), text, sizeof text - 1) == 0);
	p2p_jsonl r;
	cJSON *o;
	CHECK(p2p_jsonl_open(&r, tmp("z.jsonl")) == 0);
	CHECK(p2p_jsonl_next(&r, &o) == 1 && r.line == 2);
	cJSON_Delete(o);
	CHECK(p2p_jsonl_next(&r, &o) == -1 && !o);
	CHECKF(strstr(p2p_errmsg(), "z.jsonl:3: not valid JSON") != NULL, "%s", p2p_errmsg());
	CHECK(p2p_jsonl_next(&r, &o) == -1 && !o);
	CHECKF(strstr(p2p_errmsg(), "z.jsonl:4: contains a NUL byte, not JSON") != NULL, "%s",
	       p2p_errmsg());
	CHECK(p2p_jsonl_next(&r, &o) == 1 && r.line == 5);
	cJSON_Delete(o);
	CHECK(p2p_jsonl_next(&r, &o) == 0);
	p2p_jsonl_close(&r);
}

static void image_round_trip_and_resize(void)
{
	p2p_image a, b, c;
	CHECK(p2p_image_alloc(&a, 37, 20, 3) == 0);
	for (int i = 0; i < 37 * 20 * 3; i++)
		a.px[i] = (unsigned char)(i * 7);
	CHECK(p2p_image_save(tmp("a.png"), &a, 0) == 0);
	CHECK(p2p_image_load(tmp("a.png"), 3, &b) == 0);
	CHECK(b.w == 37 && b.h == 20 && b.c == 3 && memcmp(a.px, b.px, 37 * 20 * 3) == 0);
	p2p_image_free(&b);
	CHECK(p2p_image_save(tmp("a.jpg"), &a, 95) == 0);
	CHECK(p2p_image_load(tmp("a.jpg"), 1, &b) == 0);
	CHECK(b.w == 37 && b.h == 20 && b.c == 1);
	p2p_image_free(&b);
	CHECK(p2p_image_resize(&a, 16, 9, &c) == 0);
	CHECK(c.w == 16 && c.h == 9 && c.c == 3);
	p2p_image_free(&c);
	/* a constant image stays constant through the resampling kernel */
	memset(a.px, 200, 37 * 20 * 3);
	CHECK(p2p_image_resize(&a, 13, 7, &c) == 0);
	int worst = 0;
	for (int i = 0; i < 13 * 7 * 3; i++)
		if (abs(c.px[i] - 200) > worst)
			worst = abs(c.px[i] - 200);
	CHECKF(worst <= 1, "off by %d", worst);
	p2p_image_free(&c);
	CHECK(p2p_image_save(tmp("a.gif"), &a, 0) == -1);
	p2p_image_free(&a);
	/* a truncated PNG is an error naming the file, not a crash */
	void *buf;
	size_t n;
	CHECK(p2p_read_file(tmp("a.png"), 1 << 20, &buf, &n) == 0);
	CHECK(p2p_write_file(tmp("cut.png"), buf, n / 2) == 0);
	free(buf);
	CHECK(p2p_image_load(tmp("cut.png"), 3, &b) == -1);
	CHECKF(strncmp(p2p_errmsg(), tmp("cut.png"), strlen(tmp("cut.png"))) == 0, "%s", p2p_errmsg());
	CHECK(p2p_image_load(tmp("none.png"), 3, &b) == -1);
}

/* 60 bytes whose second chunk claims 1.5 GB (0x5b000003): libpng would
 * allocate that before reading it. Every loader refuses it from the chunk
 * lengths, naming the file, and the process does not grow. */
static const unsigned char claims_gb[60] = {
	0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d,
	0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x05,
	0x08, 0x02, 0x00, 0x00, 0x00, 0xfe, 0x18, 0x9a, 0x78, 0x5b, 0x00, 0x00,
	0x03, 0x74, 0x45, 0x58, 0x74, 0x6b, 0x00, 0x49, 0x44, 0x41, 0x54, 0x78,
	0x9c, 0x21, 0x68, 0xff, 0x46, 0x8d, 0xff, 0x81, 0xff, 0xff, 0xff, 0xff,
};

static long max_rss_kib(void)
{
	struct rusage u;
	getrusage(RUSAGE_SELF, &u);
	return u.ru_maxrss;
}

static void png_chunk_lengths_are_checked(void)
{
	const char *f = tmp("gb.png");
	CHECK(p2p_write_file(f, claims_gb, sizeof claims_gb) == 0);
	long before = max_rss_kib();
	p2p_image img;
	CHECK(p2p_png_check(claims_gb, sizeof claims_gb, "mem.png") == -1);
	CHECKF(strstr(p2p_errmsg(), "mem.png: corrupt PNG: a tEXt chunk claims 1526726659 bytes"),
	       "%s", p2p_errmsg());
	CHECK(p2p_png_check_file(f) == -1);
	CHECK(strncmp(p2p_errmsg(), f, strlen(f)) == 0);
	CHECK(p2p_image_load(f, 3, &img) == -1 && !img.px);
	CHECK(p2p_image_load_mem(claims_gb, sizeof claims_gb, "mem.png", 3, &img) == -1);
	int w, h;
	CHECK(p2p_crop_open(f, &w, &h) == NULL);
	CHECK(strncmp(p2p_errmsg(), f, strlen(f)) == 0);
	long grew = max_rss_kib() - before;
	CHECKF(grew < 100 * 1024, "grew by %ld KiB", grew);
	/* a whole PNG and what is not a PNG pass */
	CHECK(p2p_image_alloc(&img, 5, 4, 3) == 0);
	CHECK(p2p_image_save(tmp("ok.png"), &img, 0) == 0);
	p2p_image_free(&img);
	CHECK(p2p_png_check_file(tmp("ok.png")) == 0);
	CHECK(p2p_png_check((const unsigned char *)"GIF89a..", 8, "x") == 0);
}

int main(void)
{
	if (tmpdir_make("formats"))
		return 1;
	if (p2p_image_init("test_formats"))
		return 1;
	RUN(rng_is_deterministic_and_in_range);
	RUN(atomic_write_leaves_no_temp);
	RUN(npy_round_trip);
	RUN(npy_rejects_malformed);
	RUN(jsonl_reads_and_reports_lines);
	RUN(jsonl_rejects_what_is_not_one_object);
	RUN(image_round_trip_and_resize);
	RUN(png_chunk_lengths_are_checked);
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		return 1;
	vips_shutdown();
	return CHECK_DONE();
}
