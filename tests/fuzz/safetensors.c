/* The safetensors reader (lib/safetensors.c) on arbitrary bytes, through both
 * of its entries (in memory and from a file), and the checkpoint and model
 * metadata readers on top of it (lib/checkpoint.c, lib/unet.c,
 * lib/patchgan.c): every tensor of a parsed file lies inside its data, and
 * the two entries agree. */
#include "checkpoint.h"
#include "fuzz.h"
#include "models.h"

static void use_file(const p2p_st *st, size_t size)
{
	size_t total = 0;
	for (int i = 0; i < p2p_st_count(st); i++) {
		const char *name = p2p_st_name(st, i);
		int nd;
		const int64_t *shape;
		size_t numel;
		const float *x = p2p_st_get(st, name, &nd, &shape, &numel);
		FUZZ_ASSERT(x && nd >= 0 && nd <= P2P_ST_MAXDIM);
		size_t prod = 1;
		for (int d = 0; d < nd; d++)
			prod *= (size_t)shape[d];
		FUZZ_ASSERT(prod == numel && numel * 4 <= size);
		volatile float sink = 0;
		for (size_t k = 0; k < numel; k++)   /* every byte is readable */
			sink += x[k];
		(void)sink;
		total += numel * 4;
		int ishape[P2P_ST_MAXDIM];
		for (int d = 0; d < nd; d++)
			ishape[d] = (int)shape[d];
		const float *y;
		if (p2p_st_get_shaped(st, name, nd, ishape, &y) == 0)
			FUZZ_ASSERT(y == x);
	}
	FUZZ_ASSERT(total <= size);
	for (int i = 0; i < p2p_st_meta_count(st); i++) {
		const char *k = p2p_st_meta_key(st, i);
		FUZZ_ASSERT(k && p2p_st_meta(st, k));
	}
	p2p_unet_cfg g;
	p2p_patchgan_cfg d;
	fuzz_clear_err();
	if (p2p_unet_meta_read(st, FUZZ_NAME, &g) == 0)
		FUZZ_ASSERT(g.size >= 1 && g.ngf >= 1 && p2p_unet_param_count(&g) > 0);
	else
		fuzz_check_err(FUZZ_NAME);
	fuzz_clear_err();
	if (p2p_patchgan_meta_read(st, FUZZ_NAME, &d) != 0)
		fuzz_check_err(FUZZ_NAME);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_clear_err();
	p2p_st *st = p2p_st_parse(data, size, FUZZ_NAME);
	if (st)
		use_file(st, size);
	else
		fuzz_check_err(FUZZ_NAME);

	char path[64];
	int fd = fuzz_memfile(data, size, path, sizeof path);
	if (fd < 0) {
		p2p_st_free(st);
		return 0;
	}
	fuzz_clear_err();
	p2p_st *fst = p2p_st_read(path);
	FUZZ_ASSERT(!fst == !st);
	if (fst)
		FUZZ_ASSERT(p2p_st_count(fst) == p2p_st_count(st) &&
		            p2p_st_meta_count(fst) == p2p_st_meta_count(st));
	else
		fuzz_check_err(path);
	p2p_st_free(fst);
	p2p_st_free(st);

	p2p_ckpt c;
	fuzz_clear_err();
	p2p_st *ck = p2p_ckpt_open(path, &c);
	if (ck) {
		FUZZ_ASSERT(c.config && c.epoch >= 0 && c.step >= 0);
		p2p_ckpt_clear(&c);
		p2p_st_free(ck);
	} else {
		fuzz_check_err(path);
		FUZZ_ASSERT(!c.config);
	}
	close(fd);
	return 0;
}
