/* The CUDA backend: matrix products through cuBLAS, everything else as
 * kernels written here, in the order of ops_cpu.c so that one can be held
 * against the other. All work goes to one stream; only the scalar results
 * of reductions (and download) wait for it.
 *
 * Reproducible: no float atomics. col2im gathers each input element's taps
 * in the CPU's order, reductions add fixed per-thread strides and then a
 * fixed shared-memory tree, so a run gives the same bits every time on the
 * same GPU. Elementwise arithmetic uses the round-to-nearest intrinsics
 * (__fmul_rn, __fadd_rn...) where the compiler would otherwise fuse a
 * multiply and an add: the CPU build does not, and Adam, dropout, the
 * activations' backward and the losses' gradients then match it bit for bit.
 *
 * Errors: every CUDA and cuBLAS call goes through CK, which keeps the first
 * failure as "cuda: CALL failed at FILE:LINE: reason"; status() hands it to
 * p2p_err. Kernel launches are checked the same way. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "backend.h"
#include "err.h"
}
#include "ops_cuda.h"

/* ---- cuBLAS, loaded when the backend starts ----
 * Linked directly, libcublasLt would be loaded (and would run its start-up
 * code) in every program that links the tensor library, even on the CPU:
 * slow, and the source of false errors under valgrind in every unit test.
 * So it is opened by init and its few entry points taken from it; the names
 * below make the calls read as the cuBLAS API does.
 * dlopen is in libc from glibc 2.34 and in libdl before (which libcudart
 * brings in): weak, so the link wants no -ldl either way. */
#pragma weak dlopen
#pragma weak dlsym
#pragma weak dlerror

static struct {
	decltype(&cublasCreate_v2) create;
	decltype(&cublasSetStream_v2) set_stream;
	decltype(&cublasSetMathMode) set_math_mode;
	decltype(&cublasSgemm_v2) sgemm;
	decltype(&cublasSgemmStridedBatched) sgemm_strided_batched;
	decltype(&cublasGetStatusString) get_status_string;
} cublas;

#undef cublasCreate
#undef cublasSetStream
#undef cublasSgemm
#define cublasCreate cublas.create
#define cublasSetStream cublas.set_stream
#define cublasSetMathMode cublas.set_math_mode
#define cublasSgemm cublas.sgemm
#define cublasSgemmStridedBatched cublas.sgemm_strided_batched
#define cublasGetStatusString cublas.get_status_string

#define STR_(x) #x
#define STR(x) STR_(x)

static int cublas_load(void)
{
	static const char *const names[] = {"libcublas.so." STR(CUBLAS_VER_MAJOR), "libcublas.so"};
	void *h = NULL;
	const char *why = "dlopen is not available";
	for (int i = 0; i < 2 && dlopen && !h; i++)
		if (!(h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL)))
			why = dlerror();
	if (!h)
		return p2p_err("cuda: cannot load cuBLAS: %s", why ? why : names[0]);
	struct { void **fn; const char *sym; } t[] = {
		{(void **)&cublas.create, "cublasCreate_v2"},
		{(void **)&cublas.set_stream, "cublasSetStream_v2"},
		{(void **)&cublas.set_math_mode, "cublasSetMathMode"},
		{(void **)&cublas.sgemm, "cublasSgemm_v2"},
		{(void **)&cublas.sgemm_strided_batched, "cublasSgemmStridedBatched"},
		{(void **)&cublas.get_status_string, "cublasGetStatusString"},
	};
	for (size_t i = 0; i < sizeof t / sizeof *t; i++)
		if (!(*t[i].fn = dlsym(h, t[i].sym)))
			return p2p_err("cuda: cuBLAS has no %s: %s", t[i].sym, dlerror());
	return 0;
}

/* The table, filled at the end of this file; init may tune it. */
static p2p_backend make_table(void);
static p2p_backend cuda_backend = make_table();

/* ---- failure record and check macro ---- */

static int failed;
static char fail_msg[512];

static void fail_note(const char *call, const char *file, int line, const char *why)
{
	if (failed)
		return;     /* the first failure is the one worth reading */
	failed = 1;
	/* the called function's name, without its argument list */
	int len = (int)strcspn(call, "(");
	snprintf(fail_msg, sizeof fail_msg, "cuda: %.*s failed at %s:%d: %s", len, call,
	         file, line, why);
}

static bool ck(cudaError_t e, const char *call, const char *file, int line)
{
	if (e == cudaSuccess)
		return true;
	fail_note(call, file, line, cudaGetErrorString(e));
	return false;
}

static bool ck(cublasStatus_t s, const char *call, const char *file, int line)
{
	if (s == CUBLAS_STATUS_SUCCESS)
		return true;
	fail_note(call, file, line, cublasGetStatusString(s));
	return false;
}

#define CK(call) ck((call), #call, __FILE__, __LINE__)

/* ---- state ---- */

static int ready;
static int tf32 = 1;
static cudaStream_t stream;
static cublasHandle_t blas;
static double *host_res;        /* pinned: a reduction's result comes back here */
static char dev_name[320] = "none";

#define TPB 256                 /* threads per block of the elementwise kernels */
#define MAX_GRID 65536          /* grid-stride loops cover the rest */

static unsigned grid_for(size_t n)
{
	size_t b = (n + TPB - 1) / TPB;
	return b > MAX_GRID ? MAX_GRID : (unsigned)b;
}

/* Launch on the stream and check the launch; the kernel's name is the call. */
#define LAUNCH(kernel, grid, block, ...) do { \
	kernel<<<(grid), (block), 0, stream>>>(__VA_ARGS__); \
	ck(cudaGetLastError(), #kernel "<<<>>>", __FILE__, __LINE__); } while (0)

/* Kernels that split a flat index into coordinates do it in 32 bits when
 * every index fits (divisions are much cheaper), else in 64. The bound
 * leaves room for the grid stride, so i + stride never wraps. */
#define IDX32_MAX 0x7fffffffULL
#define LAUNCH_IDX(total, kernel, grid, ...) do { \
	if ((unsigned long long)(total) <= IDX32_MAX) \
		LAUNCH(kernel<unsigned>, grid, TPB, __VA_ARGS__); \
	else \
		LAUNCH(kernel<unsigned long long>, grid, TPB, __VA_ARGS__); } while (0)

#define FOR_EACH(i, n) \
	for (I i = (I)blockIdx.x * blockDim.x + threadIdx.x; i < (I)(n); \
	     i += (I)gridDim.x * blockDim.x)
#define FOR_EACH_SZ(i, n) \
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
	     i += (size_t)gridDim.x * blockDim.x)

/* ---- memory accounting: live and peak bytes of what this backend holds ---- */

typedef struct { void *p; size_t bytes; } mem_rec;
static mem_rec *mem_tab;
static size_t mem_n, mem_cap, mem_live, mem_peak;

static void mem_add(void *p, size_t bytes)
{
	if (mem_n == mem_cap) {
		size_t cap = mem_cap ? 2 * mem_cap : 256;
		mem_rec *t = (mem_rec *)realloc(mem_tab, cap * sizeof *t);
		if (!t)
			return;     /* figures only; the memory itself is fine */
		mem_tab = t, mem_cap = cap;
	}
	mem_tab[mem_n].p = p;
	mem_tab[mem_n++].bytes = bytes;
	mem_live += bytes;
	if (mem_live > mem_peak)
		mem_peak = mem_live;
}

static void mem_del(void *p)
{
	for (size_t i = mem_n; i-- > 0;)
		if (mem_tab[i].p == p) {
			mem_live -= mem_tab[i].bytes;
			mem_tab[i] = mem_tab[--mem_n];
			return;
		}
}

/* Scratch for reductions' partial sums: grows, never shrinks. */
static void *scr;
static size_t scr_bytes;

static void *scratch(size_t bytes)
{
	if (bytes <= scr_bytes)
		return scr;
	size_t want = 65536;
	while (want < bytes)
		want *= 2;
	if (scr) {
		/* queued kernels may still read the old one */
		CK(cudaStreamSynchronize(stream));
		CK(cudaFree(scr));
		mem_del(scr);
		scr = NULL, scr_bytes = 0;
	}
	if (!CK(cudaMalloc(&scr, want))) {
		scr = NULL;
		return NULL;
	}
	mem_add(scr, want);
	scr_bytes = want;
	return scr;
}

/* ---- the convolutions' workspace ----
 * One buffer for every layer of every model (they run one after another on
 * the one stream), so that a chunk can span many images: GEMMs of
 * CONV_COLS columns and more run several times faster than one image's at
 * the inner layers. A grant is at most CONV_WS_MAX floats (more only when
 * one image needs more), so the chunks depend on the layer alone. Both are
 * tunable for experiments: P2P_CUDA_CHUNK_COLS, P2P_CUDA_CONV_WS_MB. */
#define CONV_COLS 131072
#define CONV_WS_MAX ((size_t)64 << 20)          /* floats: 256 MiB */

static size_t conv_ws_max = CONV_WS_MAX;
static void *conv_buf;
static size_t conv_floats;

static float *cu_conv_ws(size_t need, size_t want, size_t *got)
{
	size_t g = want < conv_ws_max ? want : conv_ws_max;
	if (g < need)
		g = need;
	if (g > conv_floats) {
		/* grow by half at least (up to the cap): a few sizes in the first
		 * step, not one per layer */
		size_t grow = conv_floats + conv_floats / 2;
		size_t bytes = (g > grow ? g : grow < conv_ws_max ? grow : g) * sizeof(float);
		if (conv_buf) {
			/* queued kernels may still read the old one */
			CK(cudaStreamSynchronize(stream));
			CK(cudaFree(conv_buf));
			mem_del(conv_buf);
			conv_buf = NULL, conv_floats = 0;
		}
		cudaError_t e = cudaMalloc(&conv_buf, bytes);
		if (e != cudaSuccess) {
			/* out of memory is not sticky: the caller's workspace serves */
			cudaGetLastError();
			conv_buf = NULL;
			return NULL;
		}
		mem_add(conv_buf, bytes);
		conv_floats = bytes / sizeof(float);
	}
	*got = g;
	return (float *)conv_buf;
}

/* A positive whole number from the environment, else def. */
static long env_long(const char *name, long def)
{
	const char *s = getenv(name);
	char *end;
	long v = s ? strtol(s, &end, 10) : 0;
	return s && *s && !*end && v > 0 ? v : def;
}

/* ---- set-up ---- */

static void apply_math_mode(void)
{
	CK(cublasSetMathMode(blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
}

static int cu_init(void)
{
	if (ready)
		return 0;
	int count = 0;
	cudaError_t e = cudaGetDeviceCount(&count);
	if (e != cudaSuccess || count == 0) {
		cudaGetLastError();     /* not sticky: leave nothing behind */
		if (e != cudaSuccess && e != cudaErrorNoDevice)
			return p2p_err("cuda: no CUDA device found (%s)", cudaGetErrorString(e));
		return p2p_err("cuda: no CUDA device found");
	}
	if (!cublas.sgemm && cublas_load() != 0)
		return -1;
	cudaDeviceProp prop;
	if (!CK(cudaSetDevice(0)) || !CK(cudaGetDeviceProperties(&prop, 0)) ||
	    !CK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking)) ||
	    !CK(cublasCreate(&blas)) || !CK(cublasSetStream(blas, stream)) ||
	    !CK(cudaMallocHost((void **)&host_res, sizeof *host_res)))
		return p2p_err("%s", fail_msg);
	apply_math_mode();
	if (failed)
		return p2p_err("%s", fail_msg);
	conv_ws_max = (size_t)env_long("P2P_CUDA_CONV_WS_MB", (long)(CONV_WS_MAX >> 18)) << 18;
	cuda_backend.conv_chunk_cols = (int)env_long("P2P_CUDA_CHUNK_COLS", CONV_COLS);
	snprintf(dev_name, sizeof dev_name, "%.200s (sm_%d%d, %d SMs, %.1f GiB)", prop.name,
	         prop.major, prop.minor, prop.multiProcessorCount,
	         prop.totalGlobalMem / 1073741824.0);
	ready = 1;
	return 0;
}

static int cu_status(void)
{
	if (ready && !failed) {
		/* a kernel's fault shows up on the next call into the runtime */
		cudaError_t e = cudaStreamQuery(stream);
		if (e != cudaErrorNotReady)
			ck(e, "cudaStreamQuery(stream)", __FILE__, __LINE__);
	}
	return failed ? p2p_err("%s", fail_msg) : 0;
}

static void cu_sync(void)
{
	CK(cudaStreamSynchronize(stream));
}

extern "C" void p2p_cuda_set_tf32(int on)
{
	tf32 = on != 0;
	if (ready)
		apply_math_mode();
}

extern "C" int p2p_cuda_tf32(void) { return tf32; }

extern "C" void *p2p_cuda_host_alloc(size_t bytes)
{
	void *p = NULL;
	cudaError_t e = cudaMallocHost(&p, bytes ? bytes : 1);
	if (e != cudaSuccess) {
		cudaGetLastError();
		p2p_err("cuda: cannot allocate %zu bytes of pinned host memory: %s", bytes,
		        cudaGetErrorString(e));
		return NULL;
	}
	return p;
}

extern "C" void p2p_cuda_host_free(void *p)
{
	if (p)
		CK(cudaFreeHost(p));
}

extern "C" size_t p2p_cuda_mem_live(void) { return mem_live; }
extern "C" size_t p2p_cuda_mem_peak(void) { return mem_peak; }
extern "C" void p2p_cuda_peak_reset(void) { mem_peak = mem_live; }
extern "C" const char *p2p_cuda_device_name(void) { return dev_name; }

/* ---- memory ---- */

static float *cu_alloc(size_t n)
{
	void *p = NULL;
	size_t bytes = (n ? n : 1) * sizeof(float);
	cudaError_t e = n > ((size_t)1 << 40) ? cudaErrorMemoryAllocation : cudaMalloc(&p, bytes);
	if (e != cudaSuccess) {
		cudaGetLastError();     /* out of memory is not sticky */
		p2p_err("cuda: out of GPU memory allocating %zu floats: %s", n, cudaGetErrorString(e));
		return NULL;
	}
	mem_add(p, bytes);
	return (float *)p;
}

static void cu_free(float *p)
{
	if (!p)
		return;
	CK(cudaStreamSynchronize(stream));     /* queued work may still use it */
	CK(cudaFree(p));
	mem_del(p);
}

static void cu_zero(float *x, size_t n)
{
	if (n)
		CK(cudaMemsetAsync(x, 0, n * sizeof *x, stream));
}

__global__ void k_fill(float *x, size_t n, float v)
{
	FOR_EACH_SZ(i, n)
		x[i] = v;
}

static void cu_fill(float *x, size_t n, float v)
{
	if (n)
		LAUNCH(k_fill, grid_for(n), TPB, x, n, v);
}

static void cu_copy(float *dst, const float *src, size_t n)
{
	if (n && dst != src)
		CK(cudaMemcpyAsync(dst, src, n * sizeof *dst, cudaMemcpyDeviceToDevice, stream));
}

/* Both wait, so the host buffer may be reused (or read) on return. */
static void cu_upload(float *dst, const float *host_src, size_t n)
{
	if (!n)
		return;
	CK(cudaMemcpyAsync(dst, host_src, n * sizeof *dst, cudaMemcpyHostToDevice, stream));
	CK(cudaStreamSynchronize(stream));
}

static void cu_download(float *host_dst, const float *src, size_t n)
{
	if (!n)
		return;
	CK(cudaMemcpyAsync(host_dst, src, n * sizeof *src, cudaMemcpyDeviceToHost, stream));
	CK(cudaStreamSynchronize(stream));
}

template <typename I>
__global__ void k_copy2d(float *dst, long dld, const float *src, long sld, int rows,
                         long cols, int acc)
{
	FOR_EACH(i, (I)rows * (I)cols) {
		I r = i / (I)cols, j = i % (I)cols;
		float *d = dst + r * dld + j;
		float s = src[r * sld + j];
		*d = acc ? *d + s : s;
	}
}

static void cu_copy2d(float *dst, long dld, const float *src, long sld,
                      int rows, long cols, float beta)
{
	size_t n = (size_t)rows * cols;
	if (!n)
		return;
	if (beta == 0 && dld >= cols && sld >= cols)
		CK(cudaMemcpy2DAsync(dst, dld * sizeof *dst, src, sld * sizeof *src,
		                     cols * sizeof *dst, rows, cudaMemcpyDeviceToDevice, stream));
	else
		LAUNCH_IDX(n + (size_t)rows * (dld > sld ? dld : sld), k_copy2d, grid_for(n),
		           dst, dld, src, sld, rows, cols, beta != 0);
}

/* y[j][i][:] = x[i][j][:], walking y so that writes are coalesced */
template <typename I>
__global__ void k_swap01(const float *x, float *y, int a, int b, long p, int acc)
{
	FOR_EACH(t, (I)a * (I)b * (I)p) {
		I q = t % (I)p, r = t / (I)p;
		I i = r % (I)a, j = r / (I)a;
		float s = x[(i * (I)b + j) * (I)p + q];
		y[t] = acc ? y[t] + s : s;
	}
}

static void cu_swap01(const float *x, float *y, int a, int b, long p, float beta)
{
	size_t n = (size_t)a * b * p;
	if (n)
		LAUNCH_IDX(n, k_swap01, grid_for(n), x, y, a, b, p, beta != 0);
}

/* ---- matrix products ----
 * cuBLAS is column-major; a row-major X with row stride ld is X^T to it. So
 * C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T: swap the operands
 * and m with n, keep each transpose flag with its own matrix. */

static void cu_gemm(int ta, int tb, int m, int n, int k, float alpha,
                    const float *a, int lda, const float *b, int ldb,
                    float beta, float *c, int ldc)
{
	if (m <= 0 || n <= 0)
		return;
	CK(cublasSgemm(blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N, ta ? CUBLAS_OP_T : CUBLAS_OP_N,
	               n, m, k, &alpha, b, ldb, a, lda, &beta, c, ldc));
}

static void cu_gemm_batched(int ta, int tb, int m, int n, int k, float alpha,
                            const float *a, int lda, long sa,
                            const float *b, int ldb, long sb,
                            float beta, float *c, int ldc, long sc, int batch)
{
	if (m <= 0 || n <= 0 || batch <= 0)
		return;
	CK(cublasSgemmStridedBatched(blas, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
	                             ta ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha,
	                             b, ldb, sb, a, lda, sa, &beta, c, ldc, sc, batch));
}

/* ---- convolution helpers ---- */

/* One thread per (channel, column): column = (img, oy, ox), so neighbouring
 * threads write neighbouring entries of each of the k*k rows they fill. */
template <typename I>
__global__ void k_im2col(const float *x, int n, int c, int h, int w, int k,
                         int stride, int pad, int oh, int ow, float *col)
{
	I p = (I)oh * ow, ncols = (I)n * p;
	FOR_EACH(t, (I)c * ncols) {
		I ci = t / ncols, cx = t % ncols;
		I img = cx / p, pix = cx % p;
		int oy = (int)(pix / (I)ow), ox = (int)(pix % (I)ow);
		const float *xp = x + (img * (I)c + ci) * (I)h * (I)w;
		float *d = col + ci * (I)(k * k) * ncols + cx;
		for (int ky = 0; ky < k; ky++) {
			int iy = oy * stride - pad + ky;
			bool yin = iy >= 0 && iy < h;
			for (int kx = 0; kx < k; kx++) {
				int ix = ox * stride - pad + kx;
				*d = yin && ix >= 0 && ix < w ? xp[(I)iy * w + ix] : 0.0f;
				d += ncols;
			}
		}
	}
}

static void cu_im2col(const float *x, int n, int c, int h, int w, int k,
                      int stride, int pad, int oh, int ow, float *col)
{
	size_t threads = (size_t)c * n * oh * ow;
	size_t big = (size_t)c * k * k * n * oh * ow + (size_t)n * c * h * w;
	if (threads && k > 0)
		LAUNCH_IDX(big, k_im2col, grid_for(threads), x, n, c, h, w, k, stride, pad,
		           oh, ow, col);
}

/* The adjoint without atomics: one thread per element of x gathers the
 * entries of col that im2col took from it, in (ky, kx) order as the CPU
 * scatters them, and adds them to x one by one: the same sum, bit for bit.
 * Only the taps whose offset is a multiple of the stride are visited. K and
 * S fix the kernel size and stride at compile time for the common shapes
 * (0: as passed). */
template <typename I, int K, int S>
__global__ void k_col2im(const float *col, int n, int c, int h, int w, int k,
                         int stride, int pad, int oh, int ow, float *x)
{
	const int kk = K ? K : k, st = S ? S : stride;
	I p = (I)oh * ow, ncols = (I)n * p;
	FOR_EACH(t, (I)n * c * h * w) {
		int ix = (int)(t % (I)w), iy = (int)(t / (I)w % (I)h);
		I pl = t / ((I)w * h);
		I ci = pl % (I)c, img = pl / (I)c;
		const float *cp = col + ci * (I)(kk * kk) * ncols + img * p;
		float v = x[t];
		for (int ky = (iy + pad) % st; ky < kk; ky += st) {
			int ty = iy + pad - ky;     /* oy * stride */
			if (ty < 0)
				break;
			int oy = ty / st;
			if (oy >= oh)
				continue;
			for (int kx = (ix + pad) % st; kx < kk; kx += st) {
				int tx = ix + pad - kx;
				if (tx < 0)
					break;
				if (tx / st >= ow)
					continue;
				v += cp[(I)(ky * kk + kx) * ncols + (I)oy * ow + tx / st];
			}
		}
		x[t] = v;
	}
}

template <int K, int S>
static void col2im_launch(size_t big, size_t threads, const float *col, int n, int c,
                          int h, int w, int k, int stride, int pad, int oh, int ow, float *x)
{
	if (big <= IDX32_MAX)
		k_col2im<unsigned, K, S><<<grid_for(threads), TPB, 0, stream>>>(
			col, n, c, h, w, k, stride, pad, oh, ow, x);
	else
		k_col2im<unsigned long long, K, S><<<grid_for(threads), TPB, 0, stream>>>(
			col, n, c, h, w, k, stride, pad, oh, ow, x);
	ck(cudaGetLastError(), "k_col2im<<<>>>", __FILE__, __LINE__);
}

static void cu_col2im(const float *col, int n, int c, int h, int w, int k,
                      int stride, int pad, int oh, int ow, float *x)
{
	size_t threads = (size_t)n * c * h * w;
	size_t big = (size_t)c * k * k * n * oh * ow + threads;
	if (!threads || k <= 0 || stride <= 0)
		return;
	if (k == 4 && stride == 2)          /* the U-Net's and PatchGAN's */
		col2im_launch<4, 2>(big, threads, col, n, c, h, w, k, stride, pad, oh, ow, x);
	else if (k == 4 && stride == 1)     /* the PatchGAN's last two */
		col2im_launch<4, 1>(big, threads, col, n, c, h, w, k, stride, pad, oh, ow, x);
	else if (k == 3 && stride == 1)     /* VGG16's */
		col2im_launch<3, 1>(big, threads, col, n, c, h, w, k, stride, pad, oh, ow, x);
	else
		col2im_launch<0, 0>(big, threads, col, n, c, h, w, k, stride, pad, oh, ow, x);
}

/* A block's threads add their values in a fixed tree: deterministic.
 * Every thread must call it; the result goes to all of them. */
template <int BS>
__device__ double block_sum(double v)
{
	__shared__ double sh[BS];
	sh[threadIdx.x] = v;
	__syncthreads();
	for (int s = BS / 2; s > 0; s >>= 1) {
		if (threadIdx.x < s)
			sh[threadIdx.x] += sh[threadIdx.x + s];
		__syncthreads();
	}
	double r = sh[0];
	__syncthreads();            /* sh may be reused by the next call */
	return r;
}

template <typename I>
__global__ void k_bias_add(float *y, const float *b, int c, I p, I n)
{
	FOR_EACH(t, n)
		y[t] += b[t / p % (I)c];
}

static void cu_bias_add(float *y, const float *b, int n, int c, long p)
{
	size_t total = (size_t)n * c * p;
	if (total)
		LAUNCH_IDX(total, k_bias_add, grid_for(total), y, b, c, p, total);
}

/* Sums of segments of planes: block s sums segment s % segs of plane
 * s / segs (SEG floats, the last one shorter) into part[s]. A plane of any
 * size then spreads over many blocks, in an order fixed by SEG alone. */
#define SEG 8192
#define SUM_TPB 256

__global__ void k_seg_sum(const float *x, long p, int segs, double *part)
{
	size_t plane = blockIdx.x / segs;
	long q0 = (long)(blockIdx.x % segs) * SEG, q1 = q0 + SEG < p ? q0 + SEG : p;
	const float *xp = x + plane * p;
	double s = 0;
	for (long q = q0 + threadIdx.x; q < q1; q += SUM_TPB)
		s += xp[q];
	s = block_sum<SUM_TPB>(s);
	if (threadIdx.x == 0)
		part[blockIdx.x] = s;
}

__global__ void k_bias_grad_fin(float *db, const double *part, int n, int c, int segs)
{
	int j = blockIdx.x * blockDim.x + threadIdx.x;
	if (j >= c)
		return;
	double s = 0;
	for (int i = 0; i < n; i++)
		for (int g = 0; g < segs; g++)
			s += part[((size_t)i * c + j) * segs + g];
	db[j] += (float)s;
}

static void cu_bias_grad(float *db, const float *dy, int n, int c, long p)
{
	if (n <= 0 || c <= 0 || p <= 0)
		return;
	int segs = (int)((p + SEG - 1) / SEG);
	size_t blocks = (size_t)n * c * segs;
	double *part = (double *)scratch(blocks * sizeof *part);
	if (!part)
		return;
	if (blocks > 0x7fffffff) {
		fail_note("bias_grad", __FILE__, __LINE__, "too many planes");
		return;
	}
	LAUNCH(k_seg_sum, (unsigned)blocks, SUM_TPB, dy, p, segs, part);
	LAUNCH(k_bias_grad_fin, (c + TPB - 1) / TPB, TPB, db, part, n, c, segs);
}

template <typename I>
__global__ void k_chan_affine(const float *x, float *y, int c, I p, I n,
                              const float *scale, const float *shift)
{
	FOR_EACH(t, n) {
		I j = t / p % (I)c;
		y[t] = __fadd_rn(__fmul_rn(x[t], scale[j]), shift ? shift[j] : 0.0f);
	}
}

static void cu_chan_affine(const float *x, float *y, int n, int c, long p,
                           const float *scale, const float *shift)
{
	size_t total = (size_t)n * c * p;
	if (total)
		LAUNCH_IDX(total, k_chan_affine, grid_for(total), x, y, c, p, total, scale, shift);
}

template <typename I>
__global__ void k_chan_affine_bwd(const float *dy, float *dx, int c, I p, I n,
                                  const float *scale)
{
	FOR_EACH(t, n)
		dx[t] = __fadd_rn(dx[t], __fmul_rn(dy[t], scale[t / p % (I)c]));
}

static void cu_chan_affine_bwd(const float *dy, float *dx, int n, int c, long p,
                               const float *scale)
{
	size_t total = (size_t)n * c * p;
	if (total)
		LAUNCH_IDX(total, k_chan_affine_bwd, grid_for(total), dy, dx, c, p, total, scale);
}

/* ---- InstanceNorm: one block per plane ---- */

#define IN_TPB 256

__global__ void k_instnorm_fwd(const float *x, float *y, float *mean, float *rstd,
                               long p, float eps)
{
	const float *xp = x + (size_t)blockIdx.x * p;
	float *yp = y + (size_t)blockIdx.x * p;
	double s = 0;
	for (long q = threadIdx.x; q < p; q += IN_TPB)
		s += xp[q];
	float mu = (float)(block_sum<IN_TPB>(s) / p);
	double v = 0;
	for (long q = threadIdx.x; q < p; q += IN_TPB) {
		float d = xp[q] - mu;
		v += __fmul_rn(d, d);
	}
	float rs = (float)(1 / sqrt(block_sum<IN_TPB>(v) / p + eps));
	for (long q = threadIdx.x; q < p; q += IN_TPB)
		yp[q] = (xp[q] - mu) * rs;
	if (threadIdx.x == 0) {
		mean[blockIdx.x] = mu;
		rstd[blockIdx.x] = rs;
	}
}

static void cu_instnorm_fwd(const float *x, float *y, float *mean, float *rstd,
                            int planes, long p, float eps)
{
	if (planes > 0 && p > 0)
		LAUNCH(k_instnorm_fwd, planes, IN_TPB, x, y, mean, rstd, p, eps);
}

__global__ void k_instnorm_bwd(const float *dy, const float *y, const float *rstd,
                               float *dx, long p)
{
	size_t o = (size_t)blockIdx.x * p;
	const float *g = dy + o, *yp = y + o;
	float *d = dx + o;
	double sg = 0, sgy = 0;
	for (long q = threadIdx.x; q < p; q += IN_TPB) {
		sg += g[q];
		sgy += __fmul_rn(g[q], yp[q]);
	}
	float mg = (float)(block_sum<IN_TPB>(sg) / p);
	float mgy = (float)(block_sum<IN_TPB>(sgy) / p);
	float rs = rstd[blockIdx.x];
	for (long q = threadIdx.x; q < p; q += IN_TPB)
		d[q] = __fadd_rn(d[q], __fmul_rn(rs, __fsub_rn(__fsub_rn(g[q], mg),
		                                                __fmul_rn(yp[q], mgy))));
}

static void cu_instnorm_bwd(const float *dy, const float *y, const float *rstd,
                            float *dx, int planes, long p)
{
	if (planes > 0 && p > 0)
		LAUNCH(k_instnorm_bwd, planes, IN_TPB, dy, y, rstd, dx, p);
}

/* ---- elementwise ---- */

__global__ void k_leaky_fwd(const float *x, float *y, size_t n, float slope)
{
	FOR_EACH_SZ(i, n)
		y[i] = x[i] > 0 ? x[i] : slope * x[i];
}

static void cu_leaky_fwd(const float *x, float *y, size_t n, float slope)
{
	if (n)
		LAUNCH(k_leaky_fwd, grid_for(n), TPB, x, y, n, slope);
}

__global__ void k_leaky_bwd(const float *y, const float *dy, float *dx, size_t n, float slope)
{
	FOR_EACH_SZ(i, n)
		dx[i] = __fadd_rn(dx[i], y[i] > 0 ? dy[i] : __fmul_rn(slope, dy[i]));
}

static void cu_leaky_bwd(const float *y, const float *dy, float *dx, size_t n, float slope)
{
	if (n)
		LAUNCH(k_leaky_bwd, grid_for(n), TPB, y, dy, dx, n, slope);
}

__global__ void k_tanh_fwd(const float *x, float *y, size_t n)
{
	FOR_EACH_SZ(i, n)
		y[i] = tanhf(x[i]);
}

static void cu_tanh_fwd(const float *x, float *y, size_t n)
{
	if (n)
		LAUNCH(k_tanh_fwd, grid_for(n), TPB, x, y, n);
}

__global__ void k_tanh_bwd(const float *y, const float *dy, float *dx, size_t n)
{
	FOR_EACH_SZ(i, n)
		dx[i] = __fadd_rn(dx[i], __fmul_rn(dy[i], __fsub_rn(1.0f, __fmul_rn(y[i], y[i]))));
}

static void cu_tanh_bwd(const float *y, const float *dy, float *dx, size_t n)
{
	if (n)
		LAUNCH(k_tanh_bwd, grid_for(n), TPB, y, dy, dx, n);
}

__global__ void k_dropout_fwd(const float *x, float *y, size_t n, float p, float s,
                              uint64_t seed, uint64_t counter)
{
	FOR_EACH_SZ(i, n)
		y[i] = p2p_dropout_keep(seed, counter + i, p) ? x[i] * s : 0.0f;
}

static void cu_dropout_fwd(const float *x, float *y, size_t n, float p,
                           uint64_t seed, uint64_t counter)
{
	float s = p < 1 ? 1 / (1 - p) : 0;
	if (n)
		LAUNCH(k_dropout_fwd, grid_for(n), TPB, x, y, n, p, s, seed, counter);
}

__global__ void k_dropout_bwd(const float *dy, float *dx, size_t n, float p, float s,
                              uint64_t seed, uint64_t counter)
{
	FOR_EACH_SZ(i, n)
		if (p2p_dropout_keep(seed, counter + i, p))
			dx[i] = __fadd_rn(dx[i], __fmul_rn(dy[i], s));
}

static void cu_dropout_bwd(const float *dy, float *dx, size_t n, float p,
                           uint64_t seed, uint64_t counter)
{
	float s = p < 1 ? 1 / (1 - p) : 0;
	if (n)
		LAUNCH(k_dropout_bwd, grid_for(n), TPB, dy, dx, n, p, s, seed, counter);
}

/* One thread per output (window); windows do not overlap, so backward's
 * adds never meet. */
template <typename I>
__global__ void k_maxpool2_fwd(const float *x, float *y, int planes, int h, int w)
{
	int oh = h / 2, ow = w / 2;
	FOR_EACH(t, (I)planes * oh * ow) {
		int ox = (int)(t % (I)ow), oy = (int)(t / (I)ow % (I)oh);
		I i = t / ((I)ow * oh);
		const float *r0 = x + (i * h + 2 * oy) * (I)w, *r1 = r0 + w;
		float m = r0[2 * ox];
		m = r0[2 * ox + 1] > m ? r0[2 * ox + 1] : m;
		m = r1[2 * ox] > m ? r1[2 * ox] : m;
		m = r1[2 * ox + 1] > m ? r1[2 * ox + 1] : m;
		y[t] = m;
	}
}

static void cu_maxpool2_fwd(const float *x, float *y, int planes, int h, int w)
{
	size_t n = (size_t)planes * (h / 2) * (w / 2);
	if (n)
		LAUNCH_IDX((size_t)planes * h * w, k_maxpool2_fwd, grid_for(n), x, y, planes, h, w);
}

template <typename I>
__global__ void k_maxpool2_bwd(const float *x, const float *dy, float *dx,
                               int planes, int h, int w)
{
	int oh = h / 2, ow = w / 2;
	FOR_EACH(t, (I)planes * oh * ow) {
		int ox = (int)(t % (I)ow), oy = (int)(t / (I)ow % (I)oh);
		I i = t / ((I)ow * oh);
		I o0 = (i * h + 2 * oy) * (I)w, o1 = o0 + w;
		/* the first maximum in scan order, as PyTorch */
		I best = o0 + 2 * ox;
		if (x[o0 + 2 * ox + 1] > x[best]) best = o0 + 2 * ox + 1;
		if (x[o1 + 2 * ox] > x[best]) best = o1 + 2 * ox;
		if (x[o1 + 2 * ox + 1] > x[best]) best = o1 + 2 * ox + 1;
		dx[best] += dy[t];
	}
}

static void cu_maxpool2_bwd(const float *x, const float *dy, float *dx,
                            int planes, int h, int w)
{
	size_t n = (size_t)planes * (h / 2) * (w / 2);
	if (n)
		LAUNCH_IDX((size_t)planes * h * w, k_maxpool2_bwd, grid_for(n), x, dy, dx,
		           planes, h, w);
}

__global__ void k_scale(float *x, size_t n, float a)
{
	FOR_EACH_SZ(i, n)
		x[i] *= a;
}

static void cu_scale(float *x, size_t n, float a)
{
	if (n)
		LAUNCH(k_scale, grid_for(n), TPB, x, n, a);
}

__global__ void k_axpy(float *y, const float *x, size_t n, float a)
{
	FOR_EACH_SZ(i, n)
		y[i] = __fadd_rn(y[i], __fmul_rn(a, x[i]));
}

static void cu_axpy(float *y, const float *x, size_t n, float a)
{
	if (n)
		LAUNCH(k_axpy, grid_for(n), TPB, y, x, n, a);
}

/* ---- reductions and losses ----
 * A fixed grid of RED_BLOCKS blocks: thread t of the grid adds elements t,
 * t + grid, ... in double (and does the gradient of those elements), each
 * block sums its threads in a fixed tree, and one block sums the blocks.
 * Same grid whatever the GPU: the same bits on every run. */

#define RED_BLOCKS 512
#define RED_TPB 256

enum { L_SUM, L_MSEC, L_MSE, L_L1 };

template <int KIND>
__global__ void k_reduce(const float *a, const float *b, float t, size_t n,
                         float *da, float gs, double *part)
{
	double s = 0;
	float g2 = 2.0f * gs;
	FOR_EACH_SZ(j, n) {
		if (KIND == L_SUM) {
			s += a[j];
		} else if (KIND == L_L1) {
			float d = a[j] - b[j];
			s += fabsf(d);
			if (da)
				da[j] += d > 0 ? gs : d < 0 ? -gs : 0.0f;
		} else {
			float d = a[j] - (KIND == L_MSEC ? t : b[j]);
			s += __fmul_rn(d, d);
			if (da)
				da[j] = __fadd_rn(da[j], __fmul_rn(g2, d));
		}
	}
	s = block_sum<RED_TPB>(s);
	if (threadIdx.x == 0)
		part[blockIdx.x] = s;
}

__global__ void k_reduce_fin(double *part)
{
	double s = block_sum<RED_BLOCKS>(part[threadIdx.x]);
	if (threadIdx.x == 0)
		part[RED_BLOCKS] = s;
}

static double reduce(int kind, const float *a, const float *b, float t,
                     size_t n, float *da, float gscale)
{
	if (!n)
		return 0;
	double *part = (double *)scratch((RED_BLOCKS + 1) * sizeof *part);
	if (!part)
		return 0;
	float gs = gscale / (float)n;
	switch (kind) {
	case L_SUM: LAUNCH(k_reduce<L_SUM>, RED_BLOCKS, RED_TPB, a, b, t, n, da, gs, part); break;
	case L_MSEC: LAUNCH(k_reduce<L_MSEC>, RED_BLOCKS, RED_TPB, a, b, t, n, da, gs, part); break;
	case L_MSE: LAUNCH(k_reduce<L_MSE>, RED_BLOCKS, RED_TPB, a, b, t, n, da, gs, part); break;
	case L_L1: LAUNCH(k_reduce<L_L1>, RED_BLOCKS, RED_TPB, a, b, t, n, da, gs, part); break;
	}
	LAUNCH(k_reduce_fin, 1, RED_BLOCKS, part);
	*host_res = 0;
	CK(cudaMemcpyAsync(host_res, part + RED_BLOCKS, sizeof *host_res,
	                   cudaMemcpyDeviceToHost, stream));
	CK(cudaStreamSynchronize(stream));
	double s = *host_res;
	return kind == L_SUM ? s : s / n;
}

static double cu_sum(const float *x, size_t n)
{
	return reduce(L_SUM, x, NULL, 0, n, NULL, 0);
}

static double cu_mse_const(const float *a, size_t n, float target, float *da, float gscale)
{
	return reduce(L_MSEC, a, NULL, target, n, da, gscale);
}

static double cu_mse(const float *a, const float *b, size_t n, float *da, float gscale)
{
	return reduce(L_MSE, a, b, 0, n, da, gscale);
}

static double cu_l1(const float *a, const float *b, size_t n, float *da, float gscale)
{
	return reduce(L_L1, a, b, 0, n, da, gscale);
}

/* ---- Adam: one fused pass, the CPU's float operations in its order ---- */

__global__ void k_adam(float *p, const float *g, float *m, float *v, size_t n,
                       float b1, float b2, float omb1, float omb2, float eps, float wd,
                       float step_size, float rbc2)
{
	FOR_EACH_SZ(i, n) {
		float gi = __fadd_rn(g[i], __fmul_rn(wd, p[i]));
		float mi = __fadd_rn(__fmul_rn(b1, m[i]), __fmul_rn(omb1, gi));
		float vi = __fadd_rn(__fmul_rn(b2, v[i]), __fmul_rn(__fmul_rn(omb2, gi), gi));
		m[i] = mi;
		v[i] = vi;
		float den = __fadd_rn(__fmul_rn(__fsqrt_rn(vi), rbc2), eps);
		p[i] = __fsub_rn(p[i], __fdiv_rn(__fmul_rn(step_size, mi), den));
	}
}

static void cu_adam(float *p, const float *g, float *m, float *v, size_t n,
                    float lr, float beta1, float beta2, float eps, float wd, long step)
{
	double bc1 = 1 - pow(beta1, (double)step), bc2 = 1 - pow(beta2, (double)step);
	float step_size = (float)(lr / bc1), rbc2 = (float)(1 / sqrt(bc2));
	if (n)
		LAUNCH(k_adam, grid_for(n), TPB, p, g, m, v, n, beta1, beta2, 1 - beta1,
		       1 - beta2, eps, wd, step_size, rbc2);
}

/* Filled by name (C++17 has no designated initialisers). */
static p2p_backend make_table(void)
{
	p2p_backend t;
	memset(&t, 0, sizeof t);
	t.name = "cuda";
	t.init = cu_init;
	t.set_threads = NULL;
	t.status = cu_status;
	t.sync = cu_sync;
	t.alloc = cu_alloc;
	t.free = cu_free;
	t.zero = cu_zero;
	t.fill = cu_fill;
	t.copy = cu_copy;
	t.upload = cu_upload;
	t.download = cu_download;
	t.copy2d = cu_copy2d;
	t.swap01 = cu_swap01;
	t.gemm = cu_gemm;
	t.gemm_batched = cu_gemm_batched;
	t.im2col = cu_im2col;
	t.col2im = cu_col2im;
	t.bias_add = cu_bias_add;
	t.bias_grad = cu_bias_grad;
	t.chan_affine = cu_chan_affine;
	t.chan_affine_bwd = cu_chan_affine_bwd;
	t.instnorm_fwd = cu_instnorm_fwd;
	t.instnorm_bwd = cu_instnorm_bwd;
	t.leaky_fwd = cu_leaky_fwd;
	t.leaky_bwd = cu_leaky_bwd;
	t.tanh_fwd = cu_tanh_fwd;
	t.tanh_bwd = cu_tanh_bwd;
	t.dropout_fwd = cu_dropout_fwd;
	t.dropout_bwd = cu_dropout_bwd;
	t.maxpool2_fwd = cu_maxpool2_fwd;
	t.maxpool2_bwd = cu_maxpool2_bwd;
	t.scale = cu_scale;
	t.axpy = cu_axpy;
	t.sum = cu_sum;
	t.mse_const = cu_mse_const;
	t.mse = cu_mse;
	t.l1 = cu_l1;
	t.adam = cu_adam;
	t.conv_chunk_cols = CONV_COLS;
	t.conv_ws = cu_conv_ws;
	return t;
}

extern "C" const p2p_backend *p2p_backend_cuda(void)
{
	return &cuda_backend;
}
