/* The CAT label reader (lib/labels.c, NAME.jpg.cat) on arbitrary bytes:
 * either 9 finite points and no box, or one message naming the file. */
#include "labels_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	labels_fuzz(data, size, p2p_labels_parse_cat, P2P_CAT_POINTS, 0);
	return 0;
}
