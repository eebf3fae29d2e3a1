/* The crop path (lib/crop.c) on arbitrary bytes as an image file: libvips
 * for any format, and for 8-bit RGB PNGs the decoder of our own, which
 * walks the chunks, inflates the IDATs and undoes the row filters. A file
 * that opens renders a crop that runs out of the image on two sides (both
 * paddings) to a JPEG, or fails with one line naming the file; never a
 * crash, a read out of bounds or an allocation the file's size does not
 * bound. */
#include <vips/vips.h>

#include "crop.h"
#include "fuzz.h"
#include "image.h"

/* libFuzzer's memory limit: images that claim more are opened, not drawn */
#define MAX_PIXELS (1L << 22)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int started;
	if (!started) {
		FUZZ_ASSERT(p2p_image_init("fuzz") == 0);
		atexit(vips_shutdown);  /* its worker threads end with the process */
		started = 1;
	}
	char path[64];
	int fd = fuzz_memfile(data, size, path, sizeof path);
	if (fd < 0)
		return 0;
	int w = 0, h = 0;
	fuzz_clear_err();
	p2p_crop_src *src = p2p_crop_open(path, &w, &h);
	if (!src) {
		fuzz_check_err(path);
		close(fd);
		return 0;
	}
	FUZZ_ASSERT(w > 0 && h > 0);
	if ((long)w * h <= MAX_PIXELS) {
		int side = (w < h ? w : h) / 2 + 2;
		p2p_crop_rect r = { w - side / 2 - 1, -side / 2, side };
		for (int pad = P2P_PAD_BLACK; pad <= P2P_PAD_EDGE; pad++) {
			void *buf = NULL;
			size_t n = 0;
			fuzz_clear_err();
			if (p2p_crop_render(src, &r, 16, pad, 90, &buf, &n) == 0) {
				const unsigned char *j = buf;
				FUZZ_ASSERT(n > 4 && j[0] == 0xff && j[1] == 0xd8);
				free(buf);
			} else {
				fuzz_check_err(path);
				FUZZ_ASSERT(!buf);
			}
		}
	}
	p2p_crop_close(src);
	close(fd);
	return 0;
}
