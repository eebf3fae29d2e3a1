#include "crop.h"
#include "image.h"
#include "bytes.h"
#include "err.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <vips/vips.h>

/* Larger images are refused before decoding: a small file can declare a huge
 * size (a decompression bomb). CatFLW's largest photos are far below this. */
#define MAX_PIXELS (1L << 27)
#define MAX_FILE (1L << 28)

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int p2p_crop_square(const double *xy, int n, const double *box, const p2p_crop_opts *o,
		    const char *path, p2p_crop_rect *r)
{
	double b[4];
	if (box) {
		memcpy(b, box, sizeof b);
	} else if (n > 0) {
		b[0] = b[2] = xy[0];
		b[1] = b[3] = xy[1];
		for (int i = 1; i < n; i++) {
			b[0] = fmin(b[0], xy[2 * i]);
			b[1] = fmin(b[1], xy[2 * i + 1]);
			b[2] = fmax(b[2], xy[2 * i]);
			b[3] = fmax(b[3], xy[2 * i + 1]);
		}
	} else {
		return p2p_err("%s: no box and no points to crop around", path);
	}
	double cx = 0.5 * (b[0] + b[2]), cy = 0.5 * (b[1] + b[3]);
	/* A single point (or a degenerate extent) still gets a one-pixel face. */
	double s = fmax(fmax(b[2] - b[0], b[3] - b[1]), 1.0);
	s *= 1 + 2 * o->expand;

	/* A point is inside the square of side t about the centre when its
	 * Chebyshev distance to the centre is at most t/2: the side needed for k
	 * points is twice the k-th smallest such distance. */
	int k = (int)ceil(o->min_coverage * n - 1e-9);
	if (k > n)
		k = n;
	if (k > 0) {
		double *d = malloc(sizeof *d * (size_t)n);
		if (!d)
			return p2p_err("%s: out of memory", path);
		for (int i = 0; i < n; i++)
			d[i] = fmax(fabs(xy[2 * i] - cx), fabs(xy[2 * i + 1] - cy));
		qsort(d, (size_t)n, sizeof *d, cmp_double);
		double need = 2 * d[k - 1];
		free(d);
		s = fmax(s, fmin(need, o->max_grow * s));
	}
	if (!(s <= P2P_CROP_MAX_SIDE))
		return p2p_err("%s: the crop would be over %ld pixels wide", path, P2P_CROP_MAX_SIDE);

	/* Outwards to whole pixels: the integer square holds the exact one. */
	double x0 = floor(cx - s / 2), y0 = floor(cy - s / 2);
	double side = fmax(ceil(cx + s / 2) - x0, ceil(cy + s / 2) - y0);
	if (side < 1)
		side = 1;
	if (side > P2P_CROP_MAX_SIDE)
		return p2p_err("%s: the crop would be over %ld pixels wide", path, P2P_CROP_MAX_SIDE);
	r->x0 = (long)x0;
	r->y0 = (long)y0;
	r->side = (long)side;
	return 0;
}

double p2p_crop_coverage(const double *xy, int n, const p2p_crop_rect *r)
{
	if (n <= 0)
		return 1;
	int in = 0;
	for (int i = 0; i < n; i++) {
		double x = xy[2 * i], y = xy[2 * i + 1];
		in += x >= r->x0 && x <= r->x0 + r->side && y >= r->y0 && y <= r->y0 + r->side;
	}
	return (double)in / n;
}

/* Pixel centres sit on integer coordinates (as catflw-synth and lm2heat
 * have them): the 0.5 shifts map centres to centres, not edges to edges. */
void p2p_crop_map(const p2p_crop_rect *r, int size, const double *xy, int n, double *out)
{
	double k = (double)size / (double)r->side;
	for (int i = 0; i < n; i++) {
		out[2 * i] = (xy[2 * i] - (double)r->x0 + 0.5) * k - 0.5;
		out[2 * i + 1] = (xy[2 * i + 1] - (double)r->y0 + 0.5) * k - 0.5;
	}
}

typedef int (*loader)(void *buf, size_t len, VipsImage **out, ...);

/* The loader for a file's first bytes: only the common photo formats, whose
 * libvips loaders are fuzzed and trusted, never the catch-all ones
 * (ImageMagick, PDF, SVG) that libvips would otherwise try. */
static loader sniff(const unsigned char *b, size_t n)
{
	if (p2p_is_png(b, n))
		return vips_pngload_buffer;
	if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF)
		return vips_jpegload_buffer;
	if (n >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0)
		return vips_webpload_buffer;
	if (n >= 4 && (memcmp(b, "II*\0", 4) == 0 || memcmp(b, "MM\0*", 4) == 0))
		return vips_tiffload_buffer;
	return NULL;
}

/* The whole file in one read: libvips' own file loaders open a file several
 * times and read it in small pieces, which costs more than the decoding for
 * the small photos this is made for. */
static int slurp(const char *path, unsigned char **buf, size_t *n)
{
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return p2p_err_errno("%s: cannot open", path);
	struct stat st;
	if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
		fclose(fp);
		return p2p_err("%s: not a regular file", path);
	}
	if (st.st_size > MAX_FILE) {
		fclose(fp);
		return p2p_err("%s: larger than %ld bytes", path, (long)MAX_FILE);
	}
	*buf = malloc((size_t)st.st_size + 1);
	if (!*buf) {
		fclose(fp);
		return p2p_err("%s: out of memory", path);
	}
	errno = 0;
	*n = fread(*buf, 1, (size_t)st.st_size, fp);
	int bad = ferror(fp), e = errno;
	fclose(fp);
	if (bad) {
		free(*buf);
		errno = e;
		return p2p_err_errno("%s: cannot read", path);
	}
	return 0;
}

struct p2p_crop_src {
	VipsImage *im;
	unsigned char *file;    /* the loader reads from here: kept until close */
	size_t size;
	int png_rgb8;           /* an 8-bit RGB PNG, not interlaced: ours to decode */
	char *path;
};

/* ---- PNG, decoded here ----
 * zlib's inflate was half the time of a crop; libdeflate inflates the same
 * stream three times as fast (0.6 against 1.7 ms for a 512 x 512 photo).
 * It is looked up at run time: libvips' TIFF loader brings it wherever
 * libvips is installed, and where it is missing, or a PNG is anything but
 * plain 8-bit RGB, or anything in one is unusual, libvips decodes as before.
 * Any PNG decoder gives the same pixels, hence the same crops. */

/* Larger PNGs are left to libvips, which decodes in strips: ours holds the
 * whole image. */
#define MAX_PNG_RAW (64L << 20)

typedef struct {
	void *(*alloc)(void);
	int (*zlib_ex)(void *d, const void *in, size_t nin, void *out, size_t nout,
		       size_t *used_in, size_t *used_out);
	void (*free)(void *d);
	uint32_t (*crc32)(uint32_t crc, const void *buf, size_t n);
} deflate_api;

static deflate_api inflater;
static pthread_once_t inflater_once = PTHREAD_ONCE_INIT;

static void find_inflater(void)
{
	void *h = dlopen("libdeflate.so.0", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return;
	deflate_api a;
	*(void **)&a.alloc = dlsym(h, "libdeflate_alloc_decompressor");
	*(void **)&a.zlib_ex = dlsym(h, "libdeflate_zlib_decompress_ex");
	*(void **)&a.free = dlsym(h, "libdeflate_free_decompressor");
	*(void **)&a.crc32 = dlsym(h, "libdeflate_crc32");
	if (a.alloc && a.zlib_ex && a.free && a.crc32)
		inflater = a;
	else
		dlclose(h);
}

/* IHDR first, as PNG wants: 8-bit RGB (colour type 2), the standard
 * compression and filters, no interlace. */
static int is_png_rgb8(const unsigned char *b, size_t n)
{
	return n >= 33 && p2p_be32(b + 8) == 13 && memcmp(b + 12, "IHDR", 4) == 0 && b[24] == 8 &&
	       b[25] == 2 && b[26] == 0 && b[27] == 0 && b[28] == 0;
}

static unsigned char paeth(unsigned char a, unsigned char b, unsigned char c)
{
	int p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c);
	return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/* Undo row y's filter, in place (rows of 1 + len bytes, 3 bytes a pixel);
 * -1 for a filter type PNG does not have. */
static int unfilter(unsigned char *raw, size_t len, long y)
{
	unsigned char *r = raw + (size_t)y * (len + 1), *x = r + 1;
	const unsigned char *up = y ? r - len : NULL;   /* the row above's pixels */
	switch (r[0]) {
	case 0:
		break;
	case 1:
		for (size_t i = 3; i < len; i++)
			x[i] += x[i - 3];
		break;
	case 2:
		for (size_t i = 0; up && i < len; i++)
			x[i] += up[i];
		break;
	case 3:
		for (size_t i = 0; i < len; i++)
			x[i] += ((i >= 3 ? x[i - 3] : 0) + (up ? up[i] : 0)) >> 1;
		break;
	case 4:
		for (size_t i = 0; i < len; i++)
			x[i] += paeth(i >= 3 ? x[i - 3] : 0, up ? up[i] : 0, i >= 3 && up ? up[i - 3] : 0);
		break;
	default:
		return -1;
	}
	return 0;
}

/* Rows 0 .. last of src's PNG, unfiltered, in *raw (malloc'd: rows of a
 * filter byte and 3 w bytes). -1, nothing to free, when libvips should
 * decode it instead: no libdeflate; a bad CRC, an unknown critical chunk,
 * IDAT chunks apart or missing, no IEND; a stream that is not exactly the
 * image; a bad filter type. */
static int png_decode(const p2p_crop_src *src, long w, long h, long last, unsigned char **raw)
{
	pthread_once(&inflater_once, find_inflater);
	if (!inflater.alloc)
		return -1;
	const unsigned char *b = src->file;
	size_t n = src->size, len = (size_t)w * 3, total = (len + 1) * (size_t)h;
	if (total > MAX_PNG_RAW)
		return -1;      /* libvips decodes it in strips */
	/* The chunks: every CRC right, the IDATs one run, then IEND. */
	size_t at = 8, idat = 0, first = 0;
	int run = 0, ended = 0;     /* run: 0 before the IDATs, 1 in them, 2 after */
	while (!ended && at + 12 <= n) {
		size_t clen = p2p_be32(b + at);
		const unsigned char *type = b + at + 4;
		if (clen > n - at - 12 || inflater.crc32(0, type, clen + 4) != p2p_be32(b + at + 8 + clen))
			return -1;
		if (memcmp(type, "IDAT", 4) == 0) {
			if (run == 2)
				return -1;
			if (run == 0)
				first = at;
			run = 1;
			idat += clen;
		} else {
			if (run == 1)
				run = 2;
			if (memcmp(type, "IEND", 4) == 0)
				ended = 1;
			else if (!(type[0] & 0x20) && (at == 8 ? memcmp(type, "IHDR", 4) : memcmp(type, "PLTE", 4)))
				return -1;      /* critical, and not one we know here */
		}
		at += 12 + clen;
	}
	if (!ended || !run)
		return -1;
	/* The stream, in one piece. */
	unsigned char *z = malloc(idat ? idat : 1), *out = malloc(total);
	void *d = inflater.alloc();
	int rc = -1;
	if (!z || !out || !d)
		goto done;
	size_t got = 0, used = 0, made = 0;
	for (at = first; got < idat; at += 12 + p2p_be32(b + at)) {
		size_t clen = p2p_be32(b + at);
		memcpy(z + got, b + at + 8, clen);
		got += clen;
	}
	if (inflater.zlib_ex(d, z, idat, out, total, &used, &made) != 0 || used != idat || made != total)
		goto done;
	/* Every row's filter type is checked (a bad one anywhere is a corrupt
	 * file, for libvips to judge), rows below the square are not undone. */
	for (long y = 0; y < h; y++)
		if (out[(size_t)y * (len + 1)] > 4 || (y <= last && unfilter(out, len, y)))
			goto done;
	rc = 0;
done:
	if (d)
		inflater.free(d);
	free(z);
	if (rc)
		free(out);
	else
		*raw = out;
	return rc;
}

p2p_crop_src *p2p_crop_open(const char *path, int *w, int *h)
{
	unsigned char *file = NULL;
	size_t n = 0;
	if (slurp(path, &file, &n))
		return NULL;
	loader load = sniff(file, n);
	p2p_crop_src *s = calloc(1, sizeof *s);
	if (!s || !(s->path = strdup(path))) {
		p2p_err("%s: out of memory", path);
		goto fail;
	}
	s->file = file;
	s->size = n;
	s->png_rgb8 = load == vips_pngload_buffer && is_png_rgb8(file, n);
	if (!load) {
		p2p_err("%s: not a PNG, JPEG, WebP or TIFF image", path);
		goto fail;
	}
	if (p2p_png_check(file, n, path))
		goto fail;
	if (load(file, n, &s->im, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on", VIPS_FAIL_ON_ERROR, NULL)) {
		vips_error_clear();
		s->im = NULL;
		p2p_err("%s: corrupt image header", path);
		goto fail;
	}
	if ((long)s->im->Xsize * s->im->Ysize > MAX_PIXELS) {
		p2p_err("%s: %dx%d is too large an image", path, s->im->Xsize, s->im->Ysize);
		goto fail;
	}
	*w = s->im->Xsize;
	*h = s->im->Ysize;
	return s;
fail:
	if (s)
		p2p_crop_close(s);
	else
		free(file);
	return NULL;
}

void p2p_crop_close(p2p_crop_src *src)
{
	if (!src)
		return;
	if (src->im)
		g_object_unref(src->im);
	free(src->file);
	free(src->path);
	free(src);
}

/* in as 8-bit RGB without alpha (alpha flattened onto black), in *out. */
static int to_rgb8(VipsObject *scope, VipsImage *in, VipsImage **out)
{
	VipsImage **t = (VipsImage **)vips_object_local_array(scope, 5);
	if (vips_image_hasalpha(in)) {
		if (vips_flatten(in, &t[0], NULL))
			return -1;
		in = t[0];
	}
	if (in->BandFmt != VIPS_FORMAT_UCHAR || in->Type == VIPS_INTERPRETATION_CMYK) {
		if (vips_colourspace(in, &t[1], VIPS_INTERPRETATION_sRGB, NULL))
			return -1;
		in = t[1];
	}
	if (in->BandFmt != VIPS_FORMAT_UCHAR) {
		if (vips_cast_uchar(in, &t[2], NULL))
			return -1;
		in = t[2];
	}
	if (in->Bands < 3) {
		if (vips_extract_band(in, &t[3], 0, NULL))
			return -1;
		VipsImage *grey[3] = { t[3], t[3], t[3] };
		if (vips_bandjoin(grey, &t[4], 3, NULL))
			return -1;
		in = t[4];
	} else if (in->Bands > 3) {
		if (vips_extract_band(in, &t[3], 0, "n", 3, NULL))
			return -1;
		in = t[3];
	}
	*out = in;
	return 0;
}

/* ---- resampling ----
 * Ours rather than vips_resize: the same Lanczos-3 kernel, stretched when
 * shrinking so it does not alias, with pixel centres aligned, but written as
 * vector loops over whole rows. vips_resize took more CPU than decoding the
 * photo (2.6 against 2.2 ms for a typical 330 px face). */

/* The weights of one axis: output o is the sum over t < taps of
 * w[o * taps + t] times input idx[o * taps + t]. */
typedef struct {
	int taps;
	int *idx;
	float *w;
} axis;

static double lanczos3(double x)
{
	x = fabs(x);
	if (x < 1e-9)
		return 1;
	if (x >= 3)
		return 0;
	double px = M_PI * x;
	return 3 * sin(px) * sin(px / 3) / (px * px);
}

/* out samples from in samples spanning span input pixels (span may exceed
 * in by a fraction after an integer shrink); taps beyond the ends take the
 * end pixel. */
static int axis_make(axis *a, int in, double span, int out)
{
	double k = out / span;                  /* output pixels per input pixel */
	double f = k < 1 ? 1 / k : 1;           /* kernel stretch */
	if (!(f <= 4096))
		return -1;
	int taps = (int)ceil(6 * f) + 1;
	a->taps = taps;
	a->idx = malloc(sizeof *a->idx * (size_t)out * taps);
	a->w = malloc(sizeof *a->w * (size_t)out * taps);
	double *wt = malloc(sizeof *wt * (size_t)taps);
	if (!a->idx || !a->w || !wt) {
		free(wt);
		return -1;
	}
	for (int o = 0; o < out; o++) {
		double u = (o + 0.5) / k - 0.5;     /* the output centre, in input pixels */
		int first = (int)floor(u - 3 * f) + 1;
		double sum = 0;
		for (int t = 0; t < taps; t++)
			sum += wt[t] = lanczos3((first + t - u) / f);
		for (int t = 0; t < taps; t++) {
			int i = first + t;
			a->idx[(size_t)o * taps + t] = i < 0 ? 0 : i >= in ? in - 1 : i;
			a->w[(size_t)o * taps + t] = (float)(wt[t] / sum);
		}
	}
	free(wt);
	return 0;
}

static void axis_free(axis *a)
{
	free(a->idx);
	free(a->w);
}

/* Both passes add their taps in tap order, starting from 0 and skipping
 * zero weights: that order fixes the float rounding, so these loops give
 * the bytes the plain ones gave. GCC's vector types rather than intrinsics:
 * the same code is SSE2 in the default build and AVX2 in its clone, and
 * no contraction into FMA (AVX-512 would bring it) changes the rounding. */
#define XB 32           /* floats of a row summed in registers at once */
#define YB 8            /* rows of the second pass done at once */

typedef float v8 __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));

/* Unaligned loads and stores; macros, as a function passing an AVX vector
 * would have a different ABI in the default clone. */
#define LD8(p) __extension__({ v8 v_; memcpy(&v_, (p), sizeof v_); v_; })
#define ST8(p, v) do { v8 v_ = (v); memcpy((p), &v_, sizeof v_); } while (0)

#if defined(__x86_64__) && defined(__GNUC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define WIDE __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef WIDE
#define WIDE
#endif

/* Scratch of one resample. */
typedef struct {
	size_t used, len;       /* floats of an input row; rounded up past it to XB */
	float *ring;            /* taps input rows as floats, row i in slot i % taps */
	int *tag;               /* the row in each slot, -1 none */
	const float **rows;     /* one output row's input rows and weights */
	float *wts;
	float *mid;             /* pass 1's result: out rows (and up to YB more) of len */
	float *blk;             /* YB rows of mid turned: len x YB */
} scratch;

/* Pass 1, down the columns: row o of s->mid is the sum over taps of the
 * weight times the input row. Each input row becomes floats once, in the
 * ring, where the output rows that use it find it. */
WIDE static void pass_down(unsigned char *const *src, const axis *a, int out, scratch *s)
{
	int nr = a->taps;
	size_t len = s->len;
	for (int k = 0; k < nr; k++)
		s->tag[k] = -1;
	for (int o = 0; o < out; o++) {
		int m = 0;
		for (int t = 0; t < nr; t++) {
			float w = a->w[(size_t)o * nr + t];
			int i = a->idx[(size_t)o * nr + t];
			if (w == 0)
				continue;
			float *f = s->ring + (size_t)(i % nr) * len;
			if (s->tag[i % nr] != i) {
				const unsigned char *u = src[i];
#pragma omp simd
				for (size_t x = 0; x < s->used; x++)
					f[x] = u[x];
				s->tag[i % nr] = i;
			}
			s->rows[m] = f;
			s->wts[m++] = w;
		}
		float *d = s->mid + (size_t)o * len;
		for (size_t x = 0; x < len; x += XB) {
			v8 a0 = { 0 }, a1 = { 0 }, a2 = { 0 }, a3 = { 0 };
			for (int t = 0; t < m; t++) {
				const float *r = s->rows[t] + x;
				float w = s->wts[t];
				a0 += w * LD8(r);
				a1 += w * LD8(r + 8);
				a2 += w * LD8(r + 16);
				a3 += w * LD8(r + 24);
			}
			ST8(d + x, a0);
			ST8(d + x + 8, a1);
			ST8(d + x + 16, a2);
			ST8(d + x + 24, a3);
		}
	}
}

/* The 8 x 8 block at src (rows stride floats apart) turned into dst (8
 * rows of 8 floats): unpack pairs, then quads, then halves. */
#if defined(__clang__)        /* the same indices into a then b */
#define SH(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SH(a, b, ...) __builtin_shuffle(a, b, (v8i){ __VA_ARGS__ })
#endif
#define TRANSPOSE8(src, stride, dst) do { \
	const float *s_ = (src); \
	size_t n_ = (stride); \
	v8 r0 = LD8(s_), r1 = LD8(s_ + n_), r2 = LD8(s_ + 2 * n_), r3 = LD8(s_ + 3 * n_); \
	v8 r4 = LD8(s_ + 4 * n_), r5 = LD8(s_ + 5 * n_), r6 = LD8(s_ + 6 * n_), r7 = LD8(s_ + 7 * n_); \
	v8 t0 = SH(r0, r1, 0, 8, 1, 9, 4, 12, 5, 13), t1 = SH(r0, r1, 2, 10, 3, 11, 6, 14, 7, 15); \
	v8 t2 = SH(r2, r3, 0, 8, 1, 9, 4, 12, 5, 13), t3 = SH(r2, r3, 2, 10, 3, 11, 6, 14, 7, 15); \
	v8 t4 = SH(r4, r5, 0, 8, 1, 9, 4, 12, 5, 13), t5 = SH(r4, r5, 2, 10, 3, 11, 6, 14, 7, 15); \
	v8 t6 = SH(r6, r7, 0, 8, 1, 9, 4, 12, 5, 13), t7 = SH(r6, r7, 2, 10, 3, 11, 6, 14, 7, 15); \
	v8 u0 = SH(t0, t2, 0, 1, 8, 9, 4, 5, 12, 13), u1 = SH(t0, t2, 2, 3, 10, 11, 6, 7, 14, 15); \
	v8 u2 = SH(t1, t3, 0, 1, 8, 9, 4, 5, 12, 13), u3 = SH(t1, t3, 2, 3, 10, 11, 6, 7, 14, 15); \
	v8 u4 = SH(t4, t6, 0, 1, 8, 9, 4, 5, 12, 13), u5 = SH(t4, t6, 2, 3, 10, 11, 6, 7, 14, 15); \
	v8 u6 = SH(t5, t7, 0, 1, 8, 9, 4, 5, 12, 13), u7 = SH(t5, t7, 2, 3, 10, 11, 6, 7, 14, 15); \
	float *d_ = (dst); \
	ST8(d_, SH(u0, u4, 0, 1, 2, 3, 8, 9, 10, 11)); \
	ST8(d_ + 8, SH(u1, u5, 0, 1, 2, 3, 8, 9, 10, 11)); \
	ST8(d_ + 16, SH(u2, u6, 0, 1, 2, 3, 8, 9, 10, 11)); \
	ST8(d_ + 24, SH(u3, u7, 0, 1, 2, 3, 8, 9, 10, 11)); \
	ST8(d_ + 32, SH(u0, u4, 4, 5, 6, 7, 12, 13, 14, 15)); \
	ST8(d_ + 40, SH(u1, u5, 4, 5, 6, 7, 12, 13, 14, 15)); \
	ST8(d_ + 48, SH(u2, u6, 4, 5, 6, 7, 12, 13, 14, 15)); \
	ST8(d_ + 56, SH(u3, u7, 4, 5, 6, 7, 12, 13, 14, 15)); \
} while (0)

/* Bytes of 8 sums: v + 0.5 truncated, then clamped to 0..255. For every
 * value a resample can give (far inside the int range) that is the byte
 * of v <= 0 ? 0 : v >= 255 ? 255 : (unsigned char)(v + 0.5f). */
#define TO_U8(v) __extension__({ v8i i_ = __builtin_convertvector((v) + 0.5f, v8i); \
	i_ &= i_ > 0; v8i big_ = i_ > 255; (i_ & ~big_) | (255 & big_); })

/* Pass 2, along the rows, YB rows at a time: the block is turned so that
 * the YB values of one column lie together, and each output sample is a
 * sum of whole vectors, one per tap. */
WIDE static void pass_across(const axis *a, int out, scratch *s, unsigned char *dst)
{
	size_t stride = (size_t)out * 3, len = s->len;
	for (int y0 = 0; y0 < out; y0 += YB) {
		for (size_t p = 0; p < len; p += 8)
			TRANSPOSE8(s->mid + (size_t)y0 * len + p, len, s->blk + p * YB);
		int nrow = out - y0 < YB ? out - y0 : YB;
		for (int x = 0; x < out; x++) {
			const float *w = a->w + (size_t)x * a->taps;
			const int *idx = a->idx + (size_t)x * a->taps;
			v8 c0 = { 0 }, c1 = { 0 }, c2 = { 0 };
			for (int t = 0; t < a->taps; t++) {
				if (w[t] == 0)
					continue;
				const float *b = s->blk + (size_t)idx[t] * 3 * YB;
				c0 += w[t] * LD8(b);
				c1 += w[t] * LD8(b + YB);
				c2 += w[t] * LD8(b + 2 * YB);
			}
			v8i b0 = TO_U8(c0), b1 = TO_U8(c1), b2 = TO_U8(c2);
			unsigned char *d = dst + (size_t)y0 * stride + (size_t)x * 3;
			for (int r = 0; r < nrow; r++) {
				d[(size_t)r * stride] = (unsigned char)b0[r];
				d[(size_t)r * stride + 1] = (unsigned char)b1[r];
				d[(size_t)r * stride + 2] = (unsigned char)b2[r];
			}
		}
	}
}

/* Columns first, then rows; the same axis serves both (the crop is square). */
int p2p_crop_resample(unsigned char *const *rows, int in, double span, int out, unsigned char *dst)
{
	axis a = { 0 };
	scratch s = { 0 };
	int rc = -1;
	if (axis_make(&a, in, span, out))
		goto done;
	s.used = (size_t)in * 3;
	s.len = (s.used + XB) / XB * XB;        /* a float to spare: pass 2 reads 8 from a pixel's 3 */
	size_t outp = ((size_t)out + YB - 1) / YB * YB;
	s.ring = malloc(sizeof *s.ring * (size_t)a.taps * s.len);
	s.tag = malloc(sizeof *s.tag * (size_t)a.taps);
	s.rows = malloc(sizeof *s.rows * (size_t)a.taps);
	s.wts = malloc(sizeof *s.wts * (size_t)a.taps);
	s.mid = malloc(sizeof *s.mid * outp * s.len);
	s.blk = malloc(sizeof *s.blk * s.len * YB);
	if (!s.ring || !s.tag || !s.rows || !s.wts || !s.mid || !s.blk)
		goto done;
	/* the padding is read and must be numbers; its sums are never stored */
	memset(s.ring, 0, sizeof *s.ring * (size_t)a.taps * s.len);
	memset(s.mid + (size_t)out * s.len, 0, sizeof *s.mid * (outp - (size_t)out) * s.len);
	pass_down(rows, &a, out, &s);
	pass_across(&a, out, &s, dst);
	rc = 0;
done:
	axis_free(&a);
	free(s.ring);
	free(s.tag);
	free(s.rows);
	free(s.wts);
	free(s.mid);
	free(s.blk);
	return rc;
}

static long clampl(long v, long lo, long hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* The part of a w x h image the square r reaches: columns cx0 .. cx1 and
 * rows cy0 .. cy1, at least the nearest pixel (edge padding repeats it). */
typedef struct {
	long cx0, cx1, cy0, cy1;
} reach;

static reach reach_of(const p2p_crop_rect *r, long w, long h)
{
	return (reach){ clampl(r->x0, 0, w - 1), clampl(r->x0 + r->side - 1, 0, w - 1),
			clampl(r->y0, 0, h - 1), clampl(r->y0 + r->side - 1, 0, h - 1) };
}

/* The square r of a w x h RGB image whose reach (pixel (x, y) for x, y in
 * it) lies at base + (y - cy0) * stride + (x - cx0) * 3, padded as pad
 * says and resampled into px (size x size). 0, or -2 when out of memory. */
static int square_resample(const unsigned char *base, size_t stride, long w, long h,
			   const p2p_crop_rect *r, int size, int pad, unsigned char *px)
{
	long x0 = r->x0, y0 = r->y0, side = r->side;
	reach c = reach_of(r, w, h);
	int across = x0 < 0 || x0 + side > w;   /* rows padded left or right */
	size_t row = (size_t)side * 3;
	unsigned char **rows = malloc(sizeof *rows * (size_t)side);
	unsigned char *padded = across ? malloc(row * (size_t)(c.cy1 - c.cy0 + 1)) : NULL;
	unsigned char *black = calloc(row, 1);
	int rc = -2;
	if (!rows || (across && !padded) || !black)
		goto done;
	if (across) {
		long in0 = clampl(x0, 0, w), in1 = clampl(x0 + side, 0, w);   /* columns inside */
		for (long y = c.cy0; y <= c.cy1; y++) {
			unsigned char *d = padded + (size_t)(y - c.cy0) * row;
			const unsigned char *s = base + (size_t)(y - c.cy0) * stride;
			for (long j = 0; j < side; j++) {
				long x = x0 + j;
				if (x >= in0 && x < in1) {
					memcpy(d + 3 * j, s + 3 * (x - c.cx0), (size_t)(in1 - x) * 3);
					j += in1 - x - 1;
				} else if (pad == P2P_PAD_EDGE) {
					memcpy(d + 3 * j, s + 3 * (clampl(x, 0, w - 1) - c.cx0), 3);
				} else {
					memset(d + 3 * j, 0, 3);
				}
			}
		}
	}
	for (long i = 0; i < side; i++) {
		long y = y0 + i, yc = clampl(y, 0, h - 1);
		if ((y < 0 || y >= h) && pad != P2P_PAD_EDGE)
			rows[i] = black;
		else if (across)
			rows[i] = padded + (size_t)(yc - c.cy0) * row;
		else
			rows[i] = (unsigned char *)base + (size_t)(yc - c.cy0) * stride + (size_t)(x0 - c.cx0) * 3;
	}
	if (side == size) {
		for (int y = 0; y < size; y++)
			memcpy(px + (size_t)y * size * 3, rows[y], (size_t)size * 3);
		rc = 0;
	} else if (p2p_crop_resample(rows, (int)side, (double)side, size, px) == 0) {
		rc = 0;
	}
done:
	free(rows);
	free(padded);
	free(black);
	return rc;
}

/* The square's rows straight from the decoded photo into the resample, for
 * an 8-bit RGB photo (what to_rgb8 leaves as it is) that needs no shrink:
 * a PNG decoded here, anything else by libvips into a region of its own.
 * The libvips operations this skips (extract, embed, their buffers) cost a
 * tenth of a crop and give the same pixels. 0, -1 when the decoder fails
 * (a corrupt or truncated file), -2 when out of memory. */
static int render_direct(p2p_crop_src *src, const p2p_crop_rect *r, int size, int pad,
			 unsigned char *px)
{
	VipsImage *im = src->im;
	long w = im->Xsize, h = im->Ysize;
	reach c = reach_of(r, w, h);
	unsigned char *raw;
	if (pad != P2P_PAD_EDGE && (r->x0 >= w || r->y0 >= h || r->x0 + r->side <= 0 || r->y0 + r->side <= 0)) {
		/* all padding: black, whatever the photo holds (nothing is decoded) */
		memset(px, 0, (size_t)size * size * 3);
		return 0;
	}
	if (src->png_rgb8 && png_decode(src, w, h, c.cy1, &raw) == 0) {
		size_t stride = (size_t)w * 3 + 1;
		int rc = square_resample(raw + (size_t)c.cy0 * stride + 1 + (size_t)c.cx0 * 3, stride,
					 w, h, r, size, pad, px);
		free(raw);
		return rc;
	}
	VipsRect area = { (int)c.cx0, (int)c.cy0, (int)(c.cx1 - c.cx0 + 1), (int)(c.cy1 - c.cy0 + 1) };
	VipsRegion *reg = vips_region_new(im);
	if (!reg || vips_region_prepare(reg, &area)) {
		if (reg)
			g_object_unref(reg);
		return -1;
	}
	int rc = square_resample((unsigned char *)VIPS_REGION_ADDR(reg, area.left, area.top),
				 VIPS_REGION_LSKIP(reg), w, h, r, size, pad, px);
	g_object_unref(reg);
	return rc;
}

/* The general way, for every other image: libvips converts to 8-bit RGB,
 * pads, cuts out the square and, for one far larger than the output,
 * shrinks it by a whole factor first. Same return values. */
static int render_vips(p2p_crop_src *src, const p2p_crop_rect *r, int size, int pad,
		       unsigned char *px)
{
	VipsObject *scope = VIPS_OBJECT(vips_image_new());
	VipsImage **t = (VipsImage **)vips_object_local_array(scope, 3);
	VipsImage *in;
	VipsRegion *reg = NULL;
	unsigned char **rows = NULL;
	int w = src->im->Xsize, h = src->im->Ysize;
	int x0 = (int)r->x0, y0 = (int)r->y0, side = (int)r->side;
	int rc = -1;

	if (to_rgb8(scope, src->im, &in))
		goto out;
	if (x0 >= 0 && y0 >= 0 && x0 + side <= w && y0 + side <= h) {
		if (vips_extract_area(in, &t[0], x0, y0, side, side, NULL))
			goto out;
	} else {
		/* Embed in a canvas that holds both the image and the square
		 * (vips_embed wants them to overlap), then cut the square. */
		VipsExtend ext = pad == P2P_PAD_EDGE ? VIPS_EXTEND_COPY : VIPS_EXTEND_BLACK;
		int ux = x0 < 0 ? x0 : 0, uy = y0 < 0 ? y0 : 0;
		int uw = (x0 + side > w ? x0 + side : w) - ux, uh = (y0 + side > h ? y0 + side : h) - uy;
		if (vips_embed(in, &t[1], -ux, -uy, uw, uh, "extend", ext, NULL) ||
		    vips_extract_area(t[1], &t[0], x0 - ux, y0 - uy, side, side, NULL))
			goto out;
	}
	in = t[0];
	/* Far larger than the output: box-average by a whole factor first, as
	 * vips_resize does, so that memory stays near the output's size. */
	double span = side;
	int shrink = side / (2 * size);
	if (shrink >= 2) {
		if (vips_shrink(in, &t[2], shrink, shrink, NULL))
			goto out;
		in = t[2];
		span = (double)side / shrink;
	}
	/* Computed here, in this thread: a libvips sink would hand the work
	 * to its thread pool and back, tile by tile. */
	reg = vips_region_new(in);
	VipsRect all = { 0, 0, in->Xsize, in->Ysize };
	if (!reg || vips_region_prepare(reg, &all))
		goto out;
	rows = malloc(sizeof *rows * (size_t)in->Ysize);
	if (!rows) {
		rc = -2;
		goto out;
	}
	for (int y = 0; y < in->Ysize; y++)
		rows[y] = (unsigned char *)VIPS_REGION_ADDR(reg, 0, y);
	if (in->Xsize == size && in->Ysize == size) {
		for (int y = 0; y < size; y++)
			memcpy(px + (size_t)y * size * 3, rows[y], (size_t)size * 3);
		rc = 0;
	} else {
		rc = p2p_crop_resample(rows, in->Xsize, span, size, px) ? -2 : 0;
	}
out:
	if (reg)
		g_object_unref(reg);
	g_object_unref(scope);
	free(rows);
	return rc;
}

int p2p_crop_render(p2p_crop_src *src, const p2p_crop_rect *r, int size, int pad, int quality,
		    void **buf, size_t *n)
{
	*buf = NULL;
	*n = 0;
	if (labs(r->x0) > 10000000L || labs(r->y0) > 10000000L || r->side < 1 || r->side > P2P_CROP_MAX_SIDE)
		return p2p_err("%s: the crop [%ld, %ld, %ld] is out of reach", src->path, r->x0, r->y0, r->side);
	if (size < 1 || size > P2P_CROP_MAX_SIZE)
		return p2p_err("%s: crops of %d pixels are not made", src->path, size);
	VipsImage *im = src->im;
	unsigned char *px = malloc((size_t)size * size * 3);
	if (!px)
		return p2p_err("%s: out of memory", src->path);
	int direct = im->BandFmt == VIPS_FORMAT_UCHAR && im->Bands == 3 && r->side / (2 * size) < 2;
	int rc = direct ? render_direct(src, r, size, pad, px) : render_vips(src, r, size, pad, px);
	if (rc == 0) {
		VipsImage *m = vips_image_new_from_memory(px, (size_t)size * size * 3, size, size, 3,
							  VIPS_FORMAT_UCHAR);
		void *jpg = NULL;
		size_t len = 0;
		if (!m || vips_jpegsave_buffer(m, &jpg, &len, "Q", quality, "strip", TRUE, NULL))
			rc = -1;
		if (m)
			g_object_unref(m);
		/* Ours to free with free(), whatever allocator glib uses. */
		if (rc == 0 && !(*buf = malloc(len)))
			rc = -2;
		if (rc == 0) {
			memcpy(*buf, jpg, len);
			*n = len;
		}
		g_free(jpg);
	}
	free(px);
	if (rc == -2)
		return p2p_err("%s: out of memory", src->path);
	if (rc) {
		vips_error_clear();
		return p2p_err("%s: corrupt or truncated image", src->path);
	}
	return 0;
}
