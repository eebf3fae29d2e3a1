/* The adaptive square (exact cases and random faces), the mapping into crop
 * space, and rendering: crop, pad, resize and encode, read back. */
#include "check.h"
#include "crop.h"
#include "err.h"

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>
#include <vips/vips.h>

static const p2p_crop_opts defaults = P2P_CROP_DEFAULTS;

#define CHECK_RECT(r, X0, Y0, SIDE) CHECKF((r).x0 == (X0) && (r).y0 == (Y0) && (r).side == (SIDE), \
	"got [%ld, %ld, %ld], want [%ld, %ld, %ld]", (r).x0, (r).y0, (r).side, (long)(X0), (long)(Y0), (long)(SIDE))

static void square_from_box(void)
{
	/* 100 x 50 box centred on (60, 45): side 100 + 2 * 10%, all points in */
	double box[4] = { 10, 20, 110, 70 };
	double xy[4] = { 20, 30, 100, 60 };
	p2p_crop_rect r;
	CHECK(p2p_crop_square(xy, 2, box, &defaults, "f", &r) == 0);
	CHECK_RECT(r, 0, -15, 120);
	CHECK_NEAR(p2p_crop_coverage(xy, 2, &r), 1, 0);
	/* no expansion: the box's longer side */
	p2p_crop_opts o = defaults;
	o.expand = 0;
	CHECK(p2p_crop_square(xy, 2, box, &o, "f", &r) == 0);
	CHECK_RECT(r, 10, -5, 100);
	/* a tall box */
	double tall[4] = { 0, 0, 10, 40 };
	CHECK(p2p_crop_square(NULL, 0, tall, &o, "f", &r) == 0);
	CHECK_RECT(r, -15, 0, 40);
}

static void square_rounds_outwards(void)
{
	/* centre (10.25, 10.25), side 5.5: exact square [7.5, 13] */
	double box[4] = { 7.5, 7.5, 13, 13 };
	p2p_crop_opts o = defaults;
	o.expand = 0;
	p2p_crop_rect r;
	CHECK(p2p_crop_square(NULL, 0, box, &o, "f", &r) == 0);
	CHECK_RECT(r, 7, 7, 6);
}

static void square_from_points(void)
{
	/* no box (.cat files): the points' extent */
	double xy[6] = { 10, 10, 50, 30, 30, 20 };
	p2p_crop_opts o = defaults;
	o.expand = 0.25;
	p2p_crop_rect r;
	CHECK(p2p_crop_square(xy, 3, NULL, &o, "f", &r) == 0);
	CHECK_RECT(r, 0, -10, 60);
	/* all points on one spot: a one-pixel face, expanded */
	double one[4] = { 5, 5, 5, 5 };
	o.expand = 1;
	CHECK(p2p_crop_square(one, 2, NULL, &o, "f", &r) == 0);
	CHECK_RECT(r, 3, 3, 4);
	CHECK(p2p_crop_square(NULL, 0, NULL, &o, "f", &r) == -1);
	CHECK(strcmp(p2p_errmsg(), "f: no box and no points to crop around") == 0);
}

/* Ten points: eight on the box, two further out along x. */
static void ten_points(double *xy, double far1, double far2)
{
	for (int i = 0; i < 8; i++) {
		xy[2 * i] = 40 + 20 * (i % 2);
		xy[2 * i + 1] = 40 + 20 * (i / 4);
	}
	xy[16] = far1;
	xy[17] = 50;
	xy[18] = far2;
	xy[19] = 50;
}

static void square_grows_for_coverage(void)
{
	double box[4] = { 40, 40, 60, 60 };   /* centre 50, side 20 */
	double xy[20];
	ten_points(xy, 80, 95);               /* distances 30 and 45 from the centre */
	p2p_crop_opts o = { 0.1, 0.9, 4.0 };
	p2p_crop_rect r;
	/* 9 of 10 needed: half-side 30, so side 60 */
	CHECK(p2p_crop_square(xy, 10, box, &o, "f", &r) == 0);
	CHECK_RECT(r, 20, 20, 60);
	CHECK_NEAR(p2p_crop_coverage(xy, 10, &r), 0.9, 1e-12);
	/* all 10: half-side 45 */
	o.min_coverage = 1;
	CHECK(p2p_crop_square(xy, 10, box, &o, "f", &r) == 0);
	CHECK_RECT(r, 5, 5, 90);
	CHECK_NEAR(p2p_crop_coverage(xy, 10, &r), 1, 0);
	/* 0.8 is already met by the expanded box (side 24) */
	o.min_coverage = 0.8;
	CHECK(p2p_crop_square(xy, 10, box, &o, "f", &r) == 0);
	CHECK_RECT(r, 38, 38, 24);
	/* the limit: at most twice the expanded side (48) */
	o.min_coverage = 1;
	o.max_grow = 2;
	CHECK(p2p_crop_square(xy, 10, box, &o, "f", &r) == 0);
	CHECK_RECT(r, 26, 26, 48);
	CHECK_NEAR(p2p_crop_coverage(xy, 10, &r), 0.8, 1e-12);
	/* no growth at all */
	o.max_grow = 1;
	CHECK(p2p_crop_square(xy, 10, box, &o, "f", &r) == 0);
	CHECK_RECT(r, 38, 38, 24);
	/* min_coverage 0: never grows */
	o.min_coverage = 0;
	o.max_grow = 4;
	CHECK(p2p_crop_square(xy, 10, box, &o, "f", &r) == 0);
	CHECK_RECT(r, 38, 38, 24);
}

static void square_too_large(void)
{
	double box[4] = { 0, 0, 60000, 100 };
	p2p_crop_rect r;
	CHECK(p2p_crop_square(NULL, 0, box, &defaults, "f.json", &r) == -1);
	CHECKF(strcmp(p2p_errmsg(), "f.json: the crop would be over 65536 pixels wide") == 0,
	       "got '%s'", p2p_errmsg());
}

static uint64_t lcg(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return *s >> 11;
}

static double unif(uint64_t *s, double lo, double hi)
{
	return lo + (hi - lo) * (double)lcg(s) / 9007199254740992.0;
}

/* Random faces: the square holds the expanded box, reaches the coverage
 * unless the limit stops it, and is no larger than rounding needs. */
static void square_random_faces(void)
{
	uint64_t s = 7;
	int capped = 0;
	for (int iter = 0; iter < 5000; iter++) {
		double box[4], xy[96];
		box[0] = unif(&s, -100, 400);
		box[1] = unif(&s, -100, 400);
		box[2] = box[0] + unif(&s, 1, 300);
		box[3] = box[1] + unif(&s, 1, 300);
		double spread = unif(&s, 0.5, 2.5);
		for (int i = 0; i < 48; i++) {
			double cx = 0.5 * (box[0] + box[2]), hw = 0.5 * (box[2] - box[0]);
			double cy = 0.5 * (box[1] + box[3]), hh = 0.5 * (box[3] - box[1]);
			xy[2 * i] = cx + hw * spread * unif(&s, -1, 1);
			xy[2 * i + 1] = cy + hh * spread * unif(&s, -1, 1);
		}
		p2p_crop_opts o = { unif(&s, 0, 0.5), unif(&s, 0, 1), unif(&s, 1, 3) };
		p2p_crop_rect r;
		CHECK(p2p_crop_square(xy, 48, box, &o, "f", &r) == 0);
		double side = fmax(box[2] - box[0], box[3] - box[1]) * (1 + 2 * o.expand);
		double cx = 0.5 * (box[0] + box[2]), cy = 0.5 * (box[1] + box[3]);
		CHECK(r.x0 <= cx - side / 2 && r.x0 + r.side >= cx + side / 2);
		CHECK(r.y0 <= cy - side / 2 && r.y0 + r.side >= cy + side / 2);
		CHECK(r.side <= ceil(o.max_grow * side) + 2);
		double cov = p2p_crop_coverage(xy, 48, &r);
		if (cov < o.min_coverage - 1e-9) {
			capped++;
			CHECK(r.side >= floor(o.max_grow * side));
		}
	}
	printf("# %d of 5000 random faces stopped at the growth limit\n", capped);
}

static void map_points(void)
{
	p2p_crop_rect r = { -10, 20, 200 };
	double xy[4] = { -10, 20, 90, 70 }, out[4];
	p2p_crop_map(&r, 256, xy, 2, out);
	/* centres map to centres: the crop's first pixel centre is at 0.5 / k - 0.5 */
	CHECK_NEAR(out[0], 0.5 * 1.28 - 0.5, 1e-12);
	CHECK_NEAR(out[1], 0.5 * 1.28 - 0.5, 1e-12);
	CHECK_NEAR(out[2], 100.5 * 1.28 - 0.5, 1e-12);
	CHECK_NEAR(out[3], 50.5 * 1.28 - 0.5, 1e-12);
	double c[2] = { -10 + 0.5 / 1.28 - 0.5, 20 + 0.5 / 1.28 - 0.5 };
	p2p_crop_map(&r, 256, c, 1, out);
	CHECK_NEAR(out[0], 0, 1e-12);
	CHECK_NEAR(out[1], 0, 1e-12);
}

/* ---- rendering ---- */

static char tmpdir[64];

/* A w x h grey-128 image with a white square [a, b) x [a, b), saved as path
 * (bands: 1 grey, 3 RGB, 4 RGBA). */
static void make_png(const char *path, int w, int h, int bands, int a, int b)
{
	unsigned char *px = malloc((size_t)w * h * bands);
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++)
			for (int c = 0; c < bands; c++) {
				int white = x >= a && x < b && y >= a && y < b;
				px[((size_t)y * w + x) * bands + c] = c == 3 ? 255 : white ? 255 : 128;
			}
	VipsImage *im = vips_image_new_from_memory(px, (size_t)w * h * bands, w, h, bands, VIPS_FORMAT_UCHAR);
	CHECK(vips_pngsave(im, path, NULL) == 0);
	g_object_unref(im);
	free(px);
}

/* Render r from path at size; returns the decoded pixels (size*size*3) or NULL. */
static unsigned char *render(const char *path, p2p_crop_rect r, int size, int pad)
{
	int w, h;
	p2p_crop_src *src = p2p_crop_open(path, &w, &h);
	CHECK(src != NULL);
	if (!src)
		return NULL;
	void *jpg;
	size_t n;
	int rc = p2p_crop_render(src, &r, size, pad, 95, &jpg, &n);
	p2p_crop_close(src);
	CHECKF(rc == 0, "%s", p2p_errmsg());
	if (rc)
		return NULL;
	CHECK(n > 2 && ((unsigned char *)jpg)[0] == 0xFF && ((unsigned char *)jpg)[1] == 0xD8);
	VipsImage *im = vips_image_new_from_buffer(jpg, n, "", NULL);
	CHECK(im && im->Xsize == size && im->Ysize == size && im->Bands == 3);
	size_t len;
	unsigned char *px = im ? vips_image_write_to_memory(im, &len) : NULL;
	if (im)
		g_object_unref(im);
	free(jpg);
	return px;
}

static int at(const unsigned char *px, int size, int x, int y)
{
	return px[((size_t)y * size + x) * 3];
}

#define CHECK_PX(px, size, x, y, want) do { int v_ = at(px, size, x, y); \
	CHECKF(abs(v_ - (want)) <= 6, "pixel (%d, %d) = %d, want %d", x, y, v_, want); } while (0)

static void render_shrink(void)
{
	char path[128];
	snprintf(path, sizeof path, "%s/sq.png", tmpdir);
	make_png(path, 300, 300, 3, 100, 150);
	/* [50, 250) to 100 px: the square lands on [25, 50) */
	unsigned char *px = render(path, (p2p_crop_rect){ 50, 50, 200 }, 100, P2P_PAD_BLACK);
	if (!px)
		return;
	CHECK_PX(px, 100, 37, 37, 255);
	CHECK_PX(px, 100, 27, 47, 255);
	CHECK_PX(px, 100, 22, 37, 128);
	CHECK_PX(px, 100, 53, 37, 128);
	CHECK_PX(px, 100, 10, 10, 128);
	CHECK_PX(px, 100, 90, 90, 128);
	g_free(px);
	/* over four times larger: a whole box shrink by 3 first, then Lanczos;
	 * the square lands on [8, 16) */
	px = render(path, (p2p_crop_rect){ 50, 50, 200 }, 32, P2P_PAD_BLACK);
	if (!px)
		return;
	CHECK_PX(px, 32, 11, 11, 255);
	CHECK_PX(px, 32, 12, 12, 255);
	CHECK_PX(px, 32, 5, 12, 128);
	CHECK_PX(px, 32, 18, 12, 128);
	CHECK_PX(px, 32, 12, 5, 128);
	CHECK_PX(px, 32, 12, 18, 128);
	g_free(px);
}

static void render_grow(void)
{
	char path[128];
	snprintf(path, sizeof path, "%s/sq.png", tmpdir);
	make_png(path, 300, 300, 3, 100, 150);
	/* [90, 170) to 160 px: twice, the square lands on [20, 120) */
	unsigned char *px = render(path, (p2p_crop_rect){ 90, 90, 80 }, 160, P2P_PAD_BLACK);
	if (!px)
		return;
	CHECK_PX(px, 160, 22, 70, 255);
	CHECK_PX(px, 160, 117, 70, 255);
	CHECK_PX(px, 160, 12, 70, 128);
	CHECK_PX(px, 160, 128, 70, 128);
	CHECK_PX(px, 160, 150, 150, 128);
	g_free(px);
	/* same size: a plain cut */
	px = render(path, (p2p_crop_rect){ 90, 90, 80 }, 80, P2P_PAD_BLACK);
	if (!px)
		return;
	CHECK_PX(px, 80, 10, 10, 255);
	CHECK_PX(px, 80, 8, 10, 128);
	g_free(px);
}

static void render_pad(void)
{
	char path[128];
	snprintf(path, sizeof path, "%s/sq.png", tmpdir);
	make_png(path, 300, 300, 3, 100, 150);
	/* [-100, 100) x [250, 450): left half and bottom 3/4 outside */
	unsigned char *px = render(path, (p2p_crop_rect){ -100, 250, 200 }, 100, P2P_PAD_BLACK);
	if (!px)
		return;
	CHECK_PX(px, 100, 20, 10, 0);
	CHECK_PX(px, 100, 80, 10, 128);
	CHECK_PX(px, 100, 80, 60, 0);
	g_free(px);
	px = render(path, (p2p_crop_rect){ -100, 250, 200 }, 100, P2P_PAD_EDGE);
	if (!px)
		return;
	CHECK_PX(px, 100, 20, 10, 128);
	CHECK_PX(px, 100, 80, 60, 128);
	g_free(px);
	/* entirely outside the image: all black, still an image */
	px = render(path, (p2p_crop_rect){ 1000, 1000, 50 }, 64, P2P_PAD_BLACK);
	if (!px)
		return;
	CHECK_PX(px, 64, 32, 32, 0);
	g_free(px);
}

static void render_bands(void)
{
	char path[128];
	for (int bands = 1; bands <= 4; bands++) {
		if (bands == 2)
			continue;
		snprintf(path, sizeof path, "%s/b%d.png", tmpdir, bands);
		make_png(path, 64, 64, bands, 16, 48);
		unsigned char *px = render(path, (p2p_crop_rect){ 0, 0, 64 }, 32, P2P_PAD_BLACK);
		if (!px)
			continue;
		CHECK_PX(px, 32, 16, 16, 255);
		CHECK_PX(px, 32, 2, 2, 128);
		g_free(px);
	}
}

static void render_deterministic(void)
{
	char path[128];
	snprintf(path, sizeof path, "%s/sq.png", tmpdir);
	make_png(path, 300, 300, 3, 100, 150);
	void *a = NULL, *b = NULL;
	size_t na = 0, nb = 0;
	int w, h;
	p2p_crop_rect r = { -20, 30, 257 };
	p2p_crop_src *s = p2p_crop_open(path, &w, &h);
	CHECK(s && p2p_crop_render(s, &r, 128, P2P_PAD_BLACK, 95, &a, &na) == 0);
	p2p_crop_close(s);
	s = p2p_crop_open(path, &w, &h);
	CHECK(s && p2p_crop_render(s, &r, 128, P2P_PAD_BLACK, 95, &b, &nb) == 0);
	p2p_crop_close(s);
	CHECK(na == nb && na > 0 && memcmp(a, b, na) == 0);
	free(a);
	free(b);
}

/* A smooth test card: gradients and waves, no hard edges. */
static unsigned char *card(int n)
{
	unsigned char *px = malloc((size_t)n * n * 3);
	for (int y = 0; y < n; y++)
		for (int x = 0; x < n; x++)
			for (int c = 0; c < 3; c++) {
				double v = 128 + 60 * sin(x * (0.05 + 0.03 * c)) * cos(y * 0.07) + 0.2 * (x - y);
				px[((size_t)y * n + x) * 3 + c] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
			}
	return px;
}

/* Ours against libvips' own Lanczos-3 (vips_resize shrinking, the centred
 * affine for enlarging is bicubic: a looser bound). */
static void resample_matches_vips(void)
{
	static const int sizes[][2] = { { 330, 256 }, { 512, 256 }, { 300, 64 }, { 257, 256 }, { 200, 256 } };
	for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
		int in = sizes[s][0], out = sizes[s][1];
		unsigned char *px = card(in), *ours = malloc((size_t)out * out * 3);
		unsigned char **rows = malloc(sizeof *rows * in);
		for (int y = 0; y < in; y++)
			rows[y] = px + (size_t)y * in * 3;
		CHECK(p2p_crop_resample(rows, in, in, out, ours) == 0);
		VipsImage *im = vips_image_new_from_memory(px, (size_t)in * in * 3, in, in, 3, VIPS_FORMAT_UCHAR);
		VipsImage *r = NULL;
		if (in > out)
			CHECK(vips_resize(im, &r, (double)out / in, "kernel", VIPS_KERNEL_LANCZOS3, NULL) == 0);
		else {
			VipsArrayInt *area = vips_array_int_newv(4, 0, 0, out, out);
			VipsInterpolate *bicubic = vips_interpolate_new("bicubic");
			CHECK(vips_affine(im, &r, (double)out / in, 0.0, 0.0, (double)out / in,
					  "interpolate", bicubic, "oarea", area,
					  "idx", 0.5, "idy", 0.5, "odx", -0.5, "ody", -0.5,
					  "extend", VIPS_EXTEND_COPY, NULL) == 0);
			vips_area_unref(VIPS_AREA(area));
			g_object_unref(bicubic);
		}
		size_t len;
		unsigned char *theirs = r ? vips_image_write_to_memory(r, &len) : NULL;
		CHECK(theirs && len == (size_t)out * out * 3);
		if (theirs) {
			double sum = 0;
			int worst = 0;
			/* the outer 4 pixels differ in how the edge is extended */
			for (int y = 4; y < out - 4; y++)
				for (int x = 4; x < out - 4; x++)
					for (int c = 0; c < 3; c++) {
						size_t i = ((size_t)y * out + x) * 3 + c;
						int d = abs(ours[i] - theirs[i]);
						sum += d;
						worst = d > worst ? d : worst;
					}
			double mean = sum / ((double)(out - 8) * (out - 8) * 3);
			printf("# %d -> %d: mean difference %.3f, largest %d\n", in, out, mean, worst);
			CHECK(mean < (in > out ? 0.6 : 1.0));
			CHECK(worst <= (in > out ? 3 : 6));
		}
		g_free(theirs);
		if (r)
			g_object_unref(r);
		g_object_unref(im);
		free(rows);
		free(ours);
		free(px);
	}
}

static void render_bad_files(void)
{
	char path[128], want[256];
	int w, h;
	snprintf(path, sizeof path, "%s/none.png", tmpdir);
	CHECK(p2p_crop_open(path, &w, &h) == NULL);
	snprintf(want, sizeof want, "%s: cannot open: No such file or directory", path);
	CHECKF(strcmp(p2p_errmsg(), want) == 0, "got '%s'", p2p_errmsg());

	snprintf(path, sizeof path, "%s/text.png", tmpdir);
	FILE *fp = fopen(path, "w");
	fputs("not a picture\n", fp);
	fclose(fp);
	CHECK(p2p_crop_open(path, &w, &h) == NULL);
	snprintf(want, sizeof want, "%s: not a PNG, JPEG, WebP or TIFF image", path);
	CHECKF(strcmp(p2p_errmsg(), want) == 0, "got '%s'", p2p_errmsg());

	/* a PNG signature and nothing after it */
	snprintf(path, sizeof path, "%s/sig.png", tmpdir);
	fp = fopen(path, "w");
	fputs("\x89PNG\r\n\x1a\n", fp);
	fclose(fp);
	CHECK(p2p_crop_open(path, &w, &h) == NULL);
	snprintf(want, sizeof want, "%s: corrupt image header", path);
	CHECKF(strcmp(p2p_errmsg(), want) == 0, "got '%s'", p2p_errmsg());

	/* a PNG cut in half: the header reads, the pixels do not */
	snprintf(path, sizeof path, "%s/cut.png", tmpdir);
	make_png(path, 300, 300, 3, 100, 150);
	fp = fopen(path, "rb");
	fseek(fp, 0, SEEK_END);
	long size = ftell(fp);
	fclose(fp);
	CHECK(truncate(path, size / 2) == 0);
	p2p_crop_src *s = p2p_crop_open(path, &w, &h);
	CHECK(s != NULL && w == 300 && h == 300);
	if (s) {
		void *jpg = NULL;
		size_t n;
		p2p_crop_rect r = { 0, 0, 300 };
		CHECK(p2p_crop_render(s, &r, 64, P2P_PAD_BLACK, 95, &jpg, &n) == -1);
		CHECK(jpg == NULL);
		snprintf(want, sizeof want, "%s: corrupt or truncated image", path);
		CHECKF(strcmp(p2p_errmsg(), want) == 0, "got '%s'", p2p_errmsg());
		p2p_crop_close(s);
	}

	snprintf(path, sizeof path, "%s/sq.png", tmpdir);
	make_png(path, 300, 300, 3, 100, 150);
	s = p2p_crop_open(path, &w, &h);
	CHECK(s != NULL);
	if (s) {
		void *jpg = NULL;
		size_t n;
		p2p_crop_rect r = { -20000000, 0, 300 };
		CHECK(p2p_crop_render(s, &r, 64, P2P_PAD_BLACK, 95, &jpg, &n) == -1);
		snprintf(want, sizeof want, "%s: the crop [-20000000, 0, 300] is out of reach", path);
		CHECKF(strcmp(p2p_errmsg(), want) == 0, "got '%s'", p2p_errmsg());
		p2p_crop_close(s);
	}
}

/* p2p_crop_render of r from path as a JPEG (malloc'd, *n bytes), or NULL. */
static unsigned char *render_jpeg(const char *path, p2p_crop_rect r, int size, int pad, size_t *n)
{
	int w, h;
	void *jpg = NULL;
	p2p_crop_src *src = p2p_crop_open(path, &w, &h);
	if (src && p2p_crop_render(src, &r, size, pad, 95, &jpg, n))
		jpg = NULL;
	p2p_crop_close(src);
	return jpg;
}

/* ---- a PNG written by hand, to choose each row's filter ---- */

static uint32_t crc_table[256];

static uint32_t crc32_png(const unsigned char *b, size_t n)
{
	if (!crc_table[1])
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
			crc_table[i] = c;
		}
	uint32_t c = 0xFFFFFFFFu;
	for (size_t i = 0; i < n; i++)
		c = crc_table[(c ^ b[i]) & 0xFF] ^ (c >> 8);
	return c ^ 0xFFFFFFFFu;
}

static void put32(unsigned char *b, uint32_t v)
{
	b[0] = (unsigned char)(v >> 24), b[1] = (unsigned char)(v >> 16);
	b[2] = (unsigned char)(v >> 8), b[3] = (unsigned char)v;
}

static void chunk(FILE *fp, const char *type, const unsigned char *data, size_t n)
{
	unsigned char *c = malloc(n + 4), len[4], crc[4];
	memcpy(c, type, 4);
	if (n)
		memcpy(c + 4, data, n);
	put32(len, (uint32_t)n);
	put32(crc, crc32_png(c, n + 4));
	fwrite(len, 1, 4, fp);
	fwrite(c, 1, n + 4, fp);
	fwrite(crc, 1, 4, fp);
	free(c);
}

static int paeth_pick(int a, int b, int c)
{
	int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
	return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* px (w x h RGB) as an 8-bit RGB PNG whose row y has filter y % 5, the zlib
 * stream in stored (uncompressed) blocks. */
static void png_every_filter(const char *path, const unsigned char *px, int w, int h)
{
	size_t len = (size_t)w * 3, nraw = (len + 1) * h;
	unsigned char *raw = malloc(nraw);
	for (int y = 0; y < h; y++) {
		const unsigned char *x = px + y * len, *up = y ? x - len : NULL;
		unsigned char *o = raw + y * (len + 1);
		o[0] = (unsigned char)(y % 5);
		for (size_t i = 0; i < len; i++) {
			int a = i >= 3 ? x[i - 3] : 0, b = up ? up[i] : 0, c = i >= 3 && up ? up[i - 3] : 0;
			int pred[5] = { 0, a, b, (a + b) >> 1, paeth_pick(a, b, c) };
			o[1 + i] = (unsigned char)(x[i] - pred[y % 5]);
		}
	}
	size_t nblk = (nraw + 65534) / 65535, nz = 2 + nraw + 5 * nblk + 4;
	unsigned char *z = malloc(nz), *q = z;
	*q++ = 0x78, *q++ = 0x01;
	uint32_t s1 = 1, s2 = 0;
	for (size_t at = 0; at < nraw; at += 65535) {
		size_t n = nraw - at < 65535 ? nraw - at : 65535;
		*q++ = at + n == nraw;
		*q++ = (unsigned char)n, *q++ = (unsigned char)(n >> 8);
		*q++ = (unsigned char)~n, *q++ = (unsigned char)(~n >> 8);
		memcpy(q, raw + at, n);
		q += n;
	}
	for (size_t i = 0; i < nraw; i++)
		s1 = (s1 + raw[i]) % 65521, s2 = (s2 + s1) % 65521;
	put32(q, s2 << 16 | s1);
	unsigned char ihdr[13] = { 0 };
	put32(ihdr, (uint32_t)w);
	put32(ihdr + 4, (uint32_t)h);
	ihdr[8] = 8, ihdr[9] = 2;
	FILE *fp = fopen(path, "wb");
	fwrite("\x89PNG\r\n\x1a\n", 1, 8, fp);
	chunk(fp, "IHDR", ihdr, 13);
	chunk(fp, "IDAT", z, nz / 2);   /* two IDAT chunks */
	chunk(fp, "IDAT", z + nz / 2, nz - nz / 2);
	chunk(fp, "IEND", NULL, 0);
	fclose(fp);
	free(raw);
	free(z);
}

/* 8-bit RGB PNGs are decoded by crop.c itself (libdeflate), unless they are
 * interlaced or anything in them is unusual: the crops must be the bytes
 * that libvips' decoding gives, for every PNG row filter and any square. */
static void png_decoded_as_libvips_does(void)
{
	enum { W = 97, H = 83 };
	unsigned char *px = malloc(W * H * 3);
	for (int i = 0; i < W * H * 3; i++)
		px[i] = (unsigned char)(i % 7 * 30 + i / (W * 3) * 3 + (i * 2654435761u >> 28));
	VipsImage *im = vips_image_new_from_memory(px, W * H * 3, W, H, 3, VIPS_FORMAT_UCHAR);
	const char *kind[] = { "filters.png", "none.png", "adam7.png", "plain.tif" };
	char path[4][128];
	for (int k = 0; k < 4; k++)
		snprintf(path[k], sizeof path[k], "%s/%s", tmpdir, kind[k]);
	png_every_filter(path[0], px, W, H);
	CHECK(vips_pngsave(im, path[1], "filter", VIPS_FOREIGN_PNG_FILTER_NONE, NULL) == 0);
	CHECK(vips_pngsave(im, path[2], "interlace", TRUE, NULL) == 0);
	CHECK(vips_tiffsave(im, path[3], NULL) == 0);
	g_object_unref(im);
	/* inside; over each edge; past a corner; around the whole image */
	p2p_crop_rect sq[] = { { 10, 5, 60 }, { -20, 10, 50 }, { 60, -15, 40 }, { 70, 50, 45 },
			       { -30, -30, 40 }, { -10, -10, 120 }, { 0, 0, 64 } };
	for (size_t q = 0; q < sizeof sq / sizeof *sq; q++)
		for (int pad = P2P_PAD_BLACK; pad <= P2P_PAD_EDGE; pad++) {
			size_t n[4];
			unsigned char *jpg[4];
			for (int k = 0; k < 4; k++)
				jpg[k] = render_jpeg(path[k], sq[q], 64, pad, &n[k]);
			for (int k = 1; k < 4; k++)
				CHECKF(jpg[0] && jpg[k] && n[k] == n[0] && memcmp(jpg[k], jpg[0], n[0]) == 0,
				       "square %zu, pad %d: %s differs from %s", q, pad, kind[k], kind[0]);
			for (int k = 0; k < 4; k++)
				free(jpg[k]);
		}

	/* A byte of the pixel data changed: its chunk's CRC no longer holds,
	 * libvips decodes it and finds it corrupt, as before. */
	free(px);
	FILE *fp = fopen(path[1], "rb");
	unsigned char file[65536];
	size_t got = fread(file, 1, sizeof file, fp);
	fclose(fp);
	unsigned char *idat = memmem(file, got, "IDAT", 4);
	CHECK(idat != NULL);
	if (idat) {
		idat[40] ^= 0x55;
		char bad[160];
		snprintf(bad, sizeof bad, "%s/flipped.png", tmpdir);
		fp = fopen(bad, "wb");
		fwrite(file, 1, got, fp);
		fclose(fp);
		size_t n;
		p2p_crop_rect r = { 0, 0, 64 };
		CHECK(render_jpeg(bad, r, 32, P2P_PAD_BLACK, &n) == NULL);
		char want[256];
		snprintf(want, sizeof want, "%s: corrupt or truncated image", bad);
		CHECKF(strcmp(p2p_errmsg(), want) == 0, "got '%s'", p2p_errmsg());
	}
}

static void quiet(const char *domain, GLogLevelFlags level, const char *msg, void *data)
{
}

int main(int argc, char **argv)
{
	RUN(square_from_box);
	RUN(square_rounds_outwards);
	RUN(square_from_points);
	RUN(square_grows_for_coverage);
	RUN(square_too_large);
	RUN(square_random_faces);
	RUN(map_points);

	if (VIPS_INIT(argv[0]))
		return printf("Bail out! libvips did not start\n"), 1;
	vips_cache_set_max(0);
	/* libvips warns on stderr about the truncated file; the test checks
	 * the error it returns instead. */
	g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING, quiet, NULL);
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_crop.XXXXXX");
	if (!mkdtemp(tmpdir))
		return printf("Bail out! no temp folder\n"), 1;
	RUN(render_shrink);
	RUN(render_grow);
	RUN(render_pad);
	RUN(render_bands);
	RUN(render_deterministic);
	RUN(resample_matches_vips);
	RUN(render_bad_files);
	RUN(png_decoded_as_libvips_does);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		printf("# could not remove %s\n", tmpdir);
	vips_shutdown();
	return CHECK_DONE();
}
