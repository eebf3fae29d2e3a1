/* A backend for the benchmarks that passes every call to the CPU backend
 * and times its GEMMs (gemm and gemm_batched) on the calling thread; while
 * `recording` is set, the gemm calls of every thread are also kept, to be
 * replayed alone. bench/conv and bench/step include it after defining
 * now(), their clock.
 *
 * GEMMs also run on the backend's worker threads (the convolutions'
 * chunks): their time is counted on the calling thread only, so with
 * threads the timed share is a lower bound. With one thread it is all. */
#ifndef P2P_BENCH_GEMM_TIMER_H
#define P2P_BENCH_GEMM_TIMER_H

#include <pthread.h>

#include "backend.h"

typedef struct {
	int ta, tb, m, n, k, lda, ldb, ldc;
	float alpha, beta;
	const float *a, *b;
	float *c;
} gemm_call;

#define MAX_CALLS 8192

static const p2p_backend *inner;
static double gemm_secs;            /* GEMM time on main_thread */
static pthread_t main_thread;       /* set by the includer */
static gemm_call calls[MAX_CALLS];
static int ncalls, recording;

static void rec_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                     const float *b, int ldb, float beta, float *c, int ldc)
{
	if (recording) {
		int i = __atomic_fetch_add(&ncalls, 1, __ATOMIC_RELAXED);
		if (i < MAX_CALLS)
			calls[i] = (gemm_call){ta, tb, m, n, k, lda, ldb, ldc, alpha, beta, a, b, c};
	}
	int mine = pthread_equal(pthread_self(), main_thread);
	double t = mine ? now() : 0;
	inner->gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
	if (mine)
		gemm_secs += now() - t;
}

static void rec_gemm_batched(int ta, int tb, int m, int n, int k, float alpha,
                             const float *a, int lda, long sa, const float *b, int ldb, long sb,
                             float beta, float *c, int ldc, long sc, int batch)
{
	int mine = pthread_equal(pthread_self(), main_thread);
	double t = mine ? now() : 0;
	inner->gemm_batched(ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch);
	if (mine)
		gemm_secs += now() - t;
}

static const p2p_backend *recorder(const p2p_backend *cpu)
{
	static p2p_backend rec;
	inner = cpu;
	rec = *cpu;
	rec.gemm = rec_gemm;
	rec.gemm_batched = rec_gemm_batched;
	return &rec;
}

#endif
