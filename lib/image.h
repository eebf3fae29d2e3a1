/* 8-bit images through libvips, interleaved (row-major, c channels). */
#ifndef P2P_IMAGE_H
#define P2P_IMAGE_H

#include <stddef.h>

typedef struct {
	int w, h, c;
	unsigned char *px;      /* w*h*c bytes, malloc'd */
} p2p_image;

/* Start libvips once per program (argv0 for its messages); 0 or -1. */
int p2p_image_init(const char *argv0);
/* Load any format libvips reads, converted to c channels (1 grey, 3 RGB). */
int p2p_image_load(const char *path, int c, p2p_image *img);
int p2p_image_load_mem(const void *buf, size_t n, const char *name, int c, p2p_image *img);
/* Save by extension (.png, .jpg/.jpeg with quality), atomically. */
int p2p_image_save(const char *path, const p2p_image *img, int quality);
/* Encode to a malloc'd buffer; fmt ".png" or ".jpg". */
int p2p_image_encode(const p2p_image *img, const char *fmt, int quality, void **buf, size_t *n);
/* Resize to w x h with a Lanczos-3 kernel (antialiased when shrinking). */
int p2p_image_resize(const p2p_image *src, int w, int h, p2p_image *dst);
int p2p_image_alloc(p2p_image *img, int w, int h, int c);   /* zeroed */
/* A PNG's chunk lengths against its size, before libvips sees it: libpng
 * allocates what a chunk claims before reading it, so 60 bytes that claim a
 * 1.5 GB text chunk cost 1.5 GB. -1 + p2p_err naming name when a chunk
 * other than IDAT (read in pieces) runs past the end of the n bytes; 0
 * otherwise, or when b is not a PNG. The loaders above check;
 * p2p_png_check_file is the same for a file. */
int p2p_png_check(const unsigned char *b, size_t n, const char *name);
int p2p_png_check_file(const char *path);
void p2p_image_free(p2p_image *img);

#endif
