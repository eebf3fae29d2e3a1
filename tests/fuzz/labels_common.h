/* What both label harnesses check of a parse that succeeded. */
#ifndef P2P_FUZZ_LABELS_H
#define P2P_FUZZ_LABELS_H

#include <math.h>

#include "fuzz.h"
#include "labels.h"

typedef int (*labels_parser)(const char *, size_t, const char *, p2p_labels *);

static void labels_fuzz(const uint8_t *data, size_t size, labels_parser parse, int points, int box)
{
	p2p_labels l;
	fuzz_clear_err();
	if (parse((const char *)data, size, FUZZ_NAME, &l) != 0) {
		fuzz_check_err(FUZZ_NAME);
		return;
	}
	FUZZ_ASSERT(l.n == points && l.has_box == box);
	for (int i = 0; i < 2 * l.n; i++)
		FUZZ_ASSERT(isfinite(l.xy[i]) && fabs(l.xy[i]) <= 1e7);
	if (box)
		FUZZ_ASSERT(l.box[0] < l.box[2] && l.box[1] < l.box[3]);
	double ext[4];
	p2p_labels_extent(&l, ext);
	FUZZ_ASSERT(ext[0] <= ext[2] && ext[1] <= ext[3]);
	/* the image size a crop would check the points against */
	int w = size > 0 ? 1 + data[0] * 8 : 1, h = size > 1 ? 1 + data[size - 1] * 8 : 1;
	fuzz_clear_err();
	if (p2p_labels_check_bounds(&l, FUZZ_NAME, w, h) != 0)
		fuzz_check_err(FUZZ_NAME);
}

#endif
