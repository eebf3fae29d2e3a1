/* The CUDA extras of ops_cuda.h in a build without the CUDA backend, so
 * that callers need no #ifdef: TF32 is a no-op, pinned memory fails with a
 * message, the figures are zero. */
#ifndef P2P_CUDA
#include "err.h"
#include "ops_cuda.h"

void p2p_cuda_set_tf32(int on) { (void)on; }
int p2p_cuda_tf32(void) { return 0; }

void *p2p_cuda_host_alloc(size_t bytes)
{
	p2p_err("cuda: this build has no CUDA backend (nvcc was not found or CUDA=0)");
	return NULL;
}

void p2p_cuda_host_free(void *p) { (void)p; }
size_t p2p_cuda_mem_live(void) { return 0; }
size_t p2p_cuda_mem_peak(void) { return 0; }
void p2p_cuda_peak_reset(void) {}
const char *p2p_cuda_device_name(void) { return "none"; }
#else
/* ISO C wants something in a translation unit. */
typedef int p2p_ops_cuda_stub_unused;
#endif
