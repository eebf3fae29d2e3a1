#include "image.h"
#include "atomic.h"
#include "bytes.h"
#include "err.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <vips/vips.h>

/* Images are decoded whole: a few bytes of header can declare gigapixels
 * (a small file of one repeated colour compresses that well), so larger
 * images are refused before any pixel is read. catflw-crop's limit. */
#define MAX_PIXELS (1L << 27)

/* libvips' own warnings duplicate the one-line errors the programs print */
static void quiet(const char *domain, GLogLevelFlags level, const char *msg, void *data)
{
}

int p2p_image_init(const char *argv0)
{
	if (VIPS_INIT(argv0 ? argv0 : "p2pcat"))
		return p2p_err("libvips: cannot start: %s", vips_error_buffer());
	g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING, quiet, NULL);
	vips_cache_set_max(0);   /* every image is used once: caching only costs memory */
	return 0;
}

/* The first line of libvips' error buffer, then clear it. */
static void vips_reason(char *buf, size_t n)
{
	char *e = vips_error_buffer_copy();
	const char *s = e ? e : "";
	size_t len = strcspn(s, "\n");
	if (len >= n)
		len = n - 1;
	memcpy(buf, s, len);
	buf[len] = 0;
	g_free(e);
}

static int too_large(VipsImage *in, const char *name)
{
	int w = vips_image_get_width(in), h = vips_image_get_height(in);
	if ((long)w * h > MAX_PIXELS)
		return p2p_err("%s: %dx%d is too large an image", name, w, h);
	return 0;
}

/* Convert any loaded image to c 8-bit channels and copy its pixels out. */
static int to_pixels(VipsImage *in, const char *name, int c, p2p_image *img)
{
	VipsImage *t[4] = {0};
	VipsImage *x = in;
	int rc = -1;
	char why[256];
	if (vips_image_hasalpha(x)) {
		if (vips_flatten(x, &t[0], NULL))
			goto fail;
		x = t[0];
	}
	if (vips_colourspace(x, &t[1], c == 1 ? VIPS_INTERPRETATION_B_W : VIPS_INTERPRETATION_sRGB, NULL))
		goto fail;
	x = t[1];
	if (vips_cast_uchar(x, &t[2], NULL))
		goto fail;
	x = t[2];
	if (vips_image_get_bands(x) != c) {
		p2p_err("%s: cannot convert %d bands to %d", name, vips_image_get_bands(x), c);
		goto out;
	}
	size_t size;
	void *px = vips_image_write_to_memory(x, &size);
	if (!px)
		goto fail;
	img->w = vips_image_get_width(x);
	img->h = vips_image_get_height(x);
	img->c = c;
	img->px = px;   /* g_malloc is the system malloc: free() releases it */
	rc = 0;
	goto out;
fail:
	vips_reason(why, sizeof why);
	p2p_err("%s: cannot read image: %s", name, why);
out:
	for (int i = 0; i < 4; i++)
		if (t[i])
			g_object_unref(t[i]);
	return rc;
}

/* A chunk type for a message: its four bytes when they are in 'A'..'z',
 * else "????" (the walk stops at the first bad length, so the type may be
 * anything). */
static const char *chunk_type(const unsigned char *t)
{
	for (int i = 0; i < 4; i++)
		if (t[i] < 'A' || t[i] > 'z')
			return "????";
	return (const char *)t;
}

/* Walk the chunks of a PNG of n bytes (signature already seen): head(at)
 * gives the 8 bytes of length and type at offset at, or -1. */
static int png_walk(size_t n, int (*head)(void *ctx, size_t at, unsigned char h[8]), void *ctx,
                    const char *name)
{
	unsigned char h[8];
	for (size_t at = 8; at + 12 <= n; ) {
		if (head(ctx, at, h))
			return p2p_err("%s: cannot read its chunks", name);
		uint32_t len = p2p_be32(h);
		size_t left = n - at - 12;
		if (len > left) {
			/* IDAT is read in pieces, never allocated whole: one cut
			 * short is a truncated image, for the decoder to report */
			if (memcmp(h + 4, "IDAT", 4) == 0)
				break;
			return p2p_err("%s: corrupt PNG: a %.4s chunk claims %lu bytes, %zu are left",
			               name, chunk_type(h + 4), (unsigned long)len, left);
		}
		if (memcmp(h + 4, "IEND", 4) == 0)
			break;
		at += 12 + (size_t)len;
	}
	return 0;
}

static int mem_head(void *ctx, size_t at, unsigned char h[8])
{
	memcpy(h, (const unsigned char *)ctx + at, 8);
	return 0;
}

int p2p_png_check(const unsigned char *b, size_t n, const char *name)
{
	if (!p2p_is_png(b, n))
		return 0;
	return png_walk(n, mem_head, (void *)b, name);
}

static int file_head(void *ctx, size_t at, unsigned char h[8])
{
	FILE *f = ctx;
	return fseeko(f, (off_t)at, SEEK_SET) != 0 || fread(h, 1, 8, f) != 8 ? -1 : 0;
}

int p2p_png_check_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;       /* the loader says why */
	unsigned char sig[8];
	int rc = 0;
	if (fread(sig, 1, 8, f) == 8 && p2p_is_png(sig, 8) && fseeko(f, 0, SEEK_END) == 0) {
		off_t n = ftello(f);
		rc = n < 0 ? 0 : png_walk((size_t)n, file_head, f, path);
	}
	fclose(f);
	return rc;
}

int p2p_image_load(const char *path, int c, p2p_image *img)
{
	memset(img, 0, sizeof *img);
	if (p2p_png_check_file(path))
		return -1;
	char why[256];
	VipsImage *in = vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL,
		"fail_on", VIPS_FAIL_ON_ERROR, NULL);
	if (!in) {
		vips_reason(why, sizeof why);
		return p2p_err("%s: cannot read image: %s", path, why);
	}
	int rc = too_large(in, path) ? -1 : to_pixels(in, path, c, img);
	g_object_unref(in);
	return rc;
}

int p2p_image_load_mem(const void *buf, size_t n, const char *name, int c, p2p_image *img)
{
	memset(img, 0, sizeof *img);
	if (p2p_png_check(buf, n, name))
		return -1;
	char why[256];
	VipsImage *in = vips_image_new_from_buffer(buf, n, "", "access", VIPS_ACCESS_SEQUENTIAL,
		"fail_on", VIPS_FAIL_ON_ERROR, NULL);
	if (!in) {
		vips_reason(why, sizeof why);
		return p2p_err("%s: cannot read image: %s", name, why);
	}
	int rc = too_large(in, name) ? -1 : to_pixels(in, name, c, img);
	g_object_unref(in);
	return rc;
}

/* A libvips view of img's pixels (no copy). */
static VipsImage *wrap(const p2p_image *img)
{
	VipsImage *m = vips_image_new_from_memory(img->px, (size_t)img->w * img->h * img->c,
		img->w, img->h, img->c, VIPS_FORMAT_UCHAR);
	if (!m)
		return NULL;
	VipsImage *out;
	int rc = vips_copy(m, &out, "interpretation",
		img->c >= 3 ? VIPS_INTERPRETATION_sRGB : VIPS_INTERPRETATION_B_W, NULL);
	g_object_unref(m);
	return rc ? NULL : out;
}

static int is_ext(const char *s, const char *ext)
{
	size_t ls = strlen(s), le = strlen(ext);
	return ls >= le && strcasecmp(s + ls - le, ext) == 0;
}

int p2p_image_encode(const p2p_image *img, const char *fmt, int quality, void **buf, size_t *n)
{
	char why[256];
	VipsImage *v = wrap(img);
	if (!v) {
		vips_reason(why, sizeof why);
		return p2p_err("image: %s", why);
	}
	int rc;
	if (is_ext(fmt, ".jpg") || is_ext(fmt, ".jpeg"))
		rc = vips_jpegsave_buffer(v, buf, n, "Q", quality, NULL);
	else if (is_ext(fmt, ".png"))
		/* level 2: zlib's default level 6 costs twice the time for 15% less */
		rc = vips_pngsave_buffer(v, buf, n, "compression", 2, NULL);
	else {
		g_object_unref(v);
		return p2p_err("%s: unknown image format (use .png or .jpg)", fmt);
	}
	g_object_unref(v);
	if (rc) {
		vips_reason(why, sizeof why);
		return p2p_err("image: cannot encode: %s", why);
	}
	return 0;
}

int p2p_image_save(const char *path, const p2p_image *img, int quality)
{
	void *buf;
	size_t n;
	if (p2p_image_encode(img, path, quality, &buf, &n)) {
		char m[1024];
		snprintf(m, sizeof m, "%s", p2p_errmsg());
		return p2p_err("%s: %s", path, m);
	}
	int rc = p2p_write_file(path, buf, n);
	g_free(buf);
	return rc;
}

int p2p_image_resize(const p2p_image *src, int w, int h, p2p_image *dst)
{
	char why[256];
	memset(dst, 0, sizeof *dst);
	if (w < 1 || h < 1)
		return p2p_err("image: bad size %dx%d", w, h);
	VipsImage *v = wrap(src), *r = NULL, *e = NULL;
	if (!v)
		goto fail;
	if (vips_resize(v, &r, (double)w / src->w, "vscale", (double)h / src->h,
			"kernel", VIPS_KERNEL_LANCZOS3, NULL))
		goto fail;
	/* rounding can leave a pixel more or less: pin the exact size */
	if (vips_image_get_width(r) != w || vips_image_get_height(r) != h) {
		if (vips_embed(r, &e, 0, 0, w, h, "extend", VIPS_EXTEND_COPY, NULL))
			goto fail;
		g_object_unref(r);
		r = e;
	}
	size_t size;
	void *px = vips_image_write_to_memory(r, &size);
	if (!px)
		goto fail;
	dst->w = w;
	dst->h = h;
	dst->c = src->c;
	dst->px = px;
	g_object_unref(r);
	g_object_unref(v);
	return 0;
fail:
	vips_reason(why, sizeof why);
	if (r)
		g_object_unref(r);
	if (v)
		g_object_unref(v);
	return p2p_err("image: cannot resize: %s", why);
}

int p2p_image_alloc(p2p_image *img, int w, int h, int c)
{
	memset(img, 0, sizeof *img);
	if (w < 1 || h < 1 || c < 1 || (size_t)w * h > ((size_t)1 << 30) / c)
		return p2p_err("image: bad size %dx%dx%d", w, h, c);
	img->px = calloc((size_t)w * h * c, 1);
	if (!img->px)
		return p2p_err("image: out of memory");
	img->w = w;
	img->h = h;
	img->c = c;
	return 0;
}

void p2p_image_free(p2p_image *img)
{
	free(img->px);
	memset(img, 0, sizeof *img);
}
