/* The .npy reader (lib/npy.c) on arbitrary bytes: a parsed array has the
 * size its header declares and survives a write and a read; the file reader
 * and the heatmap reader agree with the in-memory parser. */
#include <math.h>

#include "fuzz.h"
#include "npy.h"

static void round_trip(const p2p_npy *a)
{
	void *buf;
	size_t n;
	p2p_npy b;
	FUZZ_ASSERT(p2p_npy_encode(a->dtype, a->ndim, a->shape, a->data, &buf, &n) == 0);
	FUZZ_ASSERT(p2p_npy_parse(buf, n, FUZZ_NAME, &b) == 0);
	FUZZ_ASSERT(b.dtype == a->dtype && b.ndim == a->ndim && b.count == a->count);
	for (int i = 0; i < a->ndim; i++)
		FUZZ_ASSERT(b.shape[i] == a->shape[i]);
	FUZZ_ASSERT(memcmp(b.data, a->data, a->count * (size_t)a->dtype) == 0);
	p2p_npy_free(&b);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	p2p_npy a;
	fuzz_clear_err();
	int rc = p2p_npy_parse(data, size, FUZZ_NAME, &a);
	if (rc != 0) {
		fuzz_check_err(FUZZ_NAME);
		FUZZ_ASSERT(!a.data);
	} else {
		FUZZ_ASSERT(a.dtype == P2P_U8 || a.dtype == P2P_F32);
		FUZZ_ASSERT(a.ndim >= 0 && a.ndim <= 4 && a.data);
		size_t count = 1;
		for (int i = 0; i < a.ndim; i++) {
			FUZZ_ASSERT(a.shape[i] >= 0);
			count *= (size_t)a.shape[i];
		}
		FUZZ_ASSERT(count == a.count && count * (size_t)a.dtype <= size);
		round_trip(&a);
		p2p_npy_free(&a);
	}

	char path[64];
	int fd = fuzz_memfile(data, size, path, sizeof path);
	if (fd < 0)
		return 0;
	p2p_npy f;
	fuzz_clear_err();
	int frc = p2p_npy_read(path, &f);
	FUZZ_ASSERT(frc == rc);
	if (frc == 0)
		p2p_npy_free(&f);
	else
		fuzz_check_err(path);
	int h, w;
	float *hm = NULL;
	fuzz_clear_err();
	if (p2p_heatmap_read(path, &h, &w, &hm) == 0) {
		FUZZ_ASSERT(rc == 0 && h >= 1 && w >= 1);
		for (long i = 0; i < (long)h * w; i++)
			FUZZ_ASSERT(isfinite(hm[i]));
		free(hm);
	} else {
		fuzz_check_err(path);
	}
	close(fd);
	return 0;
}
