/* A small thread pool for the CPU backend's loops. Workers sleep on a
 * condition variable between jobs, never spinning, so they leave the cores
 * to OpenBLAS's own threads while a GEMM runs. A caller that finds the pool
 * busy (another thread's job) runs its loop on its own thread. */
#ifndef P2P_CPU_POOL_H
#define P2P_CPU_POOL_H

typedef void (*p2p_range_fn)(void *ctx, long i0, long i1);

/* fn(ctx, i0, i1) over [0, n) split into `parts` contiguous ranges of equal
 * size (part t is [n*t/parts, n*(t+1)/parts)), run on parts threads, the
 * caller's included; returns when all are done. parts <= 1: inline. */
void p2p_pool_run(long n, int parts, p2p_range_fn fn, void *ctx);
/* Threads used, the caller's included: OpenBLAS's count until set. */
int p2p_pool_threads(void);
void p2p_pool_set_threads(int n);

#endif
