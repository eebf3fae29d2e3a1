/* One split of a Pix2Pix data set in memory: ROOT/SPLIT/A/ID.npy (heatmap)
 * paired by stem with ROOT/SPLIT/B/ID.jpg (photo; .jpeg and .png are taken
 * too), every sample square and of one size.
 *
 * Heatmaps are kept as floats in [-1, 1] (x * 2 - 1 of the [0, 1] heatmap);
 * photos as their 8-bit values, planar (3, S, S): the exact truth for 8-bit
 * PSNR at a quarter of the memory, turned into v / 127.5 - 1 on demand. */
#ifndef P2P_DATASET_H
#define P2P_DATASET_H

typedef struct {
	char *dir;              /* "ROOT/SPLIT", for messages */
	int n;                  /* samples, sorted by id (byte order) */
	int size;               /* S: every A is (S, S), every B (S, S, 3) */
	char **id;              /* n stems */
	float *a;               /* n * S * S, [-1, 1] */
	unsigned char *b;       /* n * 3 * S * S, planar RGB */
} p2p_dataset;

/* Load ROOT/SPLIT. size 0 takes the size of the first sample; otherwise
 * every sample must be size x size. -1 + p2p_err naming the file or folder at
 * fault: a missing split, an A without its B or the reverse, two photos for
 * one id, an unreadable file, a sample that is not square or of another size,
 * an empty split. */
int p2p_dataset_load(p2p_dataset *ds, const char *root, const char *split, int size);
void p2p_dataset_free(p2p_dataset *ds);     /* safe on a zeroed or freed set */

/* Sample i as floats in [-1, 1]: a (1, S, S), b (3, S, S); either may be NULL. */
void p2p_dataset_get(const p2p_dataset *ds, int i, float *a, float *b);

/* The 8-bit value a saved image holds for x in [-1, 1]: (x + 1) * 127.5
 * rounded half up, clamped to [0, 255]; NaN gives 0. */
static inline unsigned char p2p_unit_to_u8(float x)
{
	float v = (x + 1.0f) * 127.5f;
	if (!(v > 0.0f))
		return 0;
	if (v >= 255.0f)
		return 255;
	return (unsigned char)(v + 0.5f);
}

#endif
