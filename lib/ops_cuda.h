/* What the CUDA backend offers beyond the backend table: the TF32 switch,
 * pinned host memory for an overlapped input pipeline, and memory figures
 * for benchmarks. Plain C, no CUDA types, so cmd/ and bench/ include it.
 *
 * These exist only in builds with the CUDA backend (P2P_CUDA defined); in a
 * CPU-only build ops_cuda_stub.c gives the same names that do nothing or fail
 * with "cuda: this build has no CUDA backend". */
#ifndef P2P_OPS_CUDA_H
#define P2P_OPS_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* TF32 tensor-core math for the matrix products: on by default (as PyTorch
 * does for convolutions); off gives strict FP32 (--no-tf32). May be called
 * before or after the backend's init. */
void p2p_cuda_set_tf32(int on);
int p2p_cuda_tf32(void);

/* Page-locked host memory, so that uploads run at full speed; the input
 * pipeline fills it on CPU threads. NULL + p2p_err (no device, no memory).
 * upload() returns once its host source may be reused, pinned or not. */
void *p2p_cuda_host_alloc(size_t bytes);
void p2p_cuda_host_free(void *p);           /* NULL is fine */

/* Bytes of backend memory allocated now and at most so far (alloc/free of
 * the table, plus the backend's own scratch); p2p_cuda_peak_reset starts the
 * peak again from the current figure. */
size_t p2p_cuda_mem_live(void);
size_t p2p_cuda_mem_peak(void);
void p2p_cuda_peak_reset(void);

/* "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)" once init has run,
 * else "none". */
const char *p2p_cuda_device_name(void);

#ifdef __cplusplus
}
#endif

#endif
