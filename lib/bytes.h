/* Big-endian integers and the PNG signature, as the file formats store
 * them; shared by the loaders that read headers themselves (image.c,
 * crop.c, lm2heat). */
#ifndef P2P_BYTES_H
#define P2P_BYTES_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t p2p_be16(const unsigned char *b)
{
	return (uint32_t)b[0] << 8 | b[1];
}

static inline uint32_t p2p_be32(const unsigned char *b)
{
	return p2p_be16(b) << 16 | p2p_be16(b + 2);
}

/* The 8 bytes every PNG opens with. */
#define P2P_PNG_SIG "\x89PNG\r\n\x1a\n"

static inline int p2p_is_png(const unsigned char *b, size_t n)
{
	return n >= 8 && memcmp(b, P2P_PNG_SIG, 8) == 0;
}

#endif
