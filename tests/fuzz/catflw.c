/* The CatFLW label reader (lib/labels.c, JSON) on arbitrary bytes: either 48
 * finite points and a proper box, or one message naming the file. */
#include "labels_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	labels_fuzz(data, size, p2p_labels_parse_catflw, P2P_CATFLW_POINTS, 1);
	return 0;
}
