/* Data parallelism across processes: one rank per GPU or CPU socket, each
 * with its own share of every batch. Built with -DP2P_MPI (make MPI=1) it
 * runs over MPI; otherwise it is a single rank whose collectives do nothing,
 * so callers are written once, without #ifdefs.
 *
 * Every collective must be called by every rank in the same order. Buffers
 * are host memory. Errors return -1 with p2p_err ("MPI: what is wrong"). */
#ifndef P2P_DIST_H
#define P2P_DIST_H

#include <stddef.h>

/* Before anything else in main (MPI may take its own arguments out of argv);
 * a single-rank build just returns 0. */
int p2p_dist_init(int *argc, char ***argv);
/* Wait for every rank, then shut MPI down; at the end of main. A rank that
 * exits without it (p2p_die) makes mpirun end the others. */
void p2p_dist_finalize(void);

int p2p_dist_rank(void);            /* 0 .. size - 1 */
int p2p_dist_size(void);            /* 1 without MPI */
const char *p2p_dist_kind(void);    /* "MPI" or "single process" */
int p2p_dist_local_rank(void);      /* among the ranks on this machine */

/* One GPU per rank: with more than one rank, CUDA_VISIBLE_DEVICES is set to
 * the local rank's device (modulo the devices: the entries of
 * CUDA_VISIBLE_DEVICES when it is set, else those /proc/driver/nvidia
 * lists), before the CUDA backend starts. -1 + p2p_err if it cannot be set. */
int p2p_dist_bind_gpu(void);

/* [*first, *end) of items [0, n) for rank `rank` of `ranks`: rank r of R
 * takes [r n / R, (r + 1) n / R), so the shares cover [0, n) in order and
 * differ by at most one item, the last rank's being one of the largest; a
 * rank gets none when n < R. */
void p2p_dist_share(long n, int rank, int ranks, long *first, long *end);

/* x (n) = the sum of every rank's x, on every rank. */
int p2p_dist_sum_float(float *x, size_t n);
int p2p_dist_sum_double(double *x, size_t n);
/* The largest of every rank's v, on every rank. */
int p2p_dist_max_int(int *v);
/* Rank root's bytes into every rank's buf. */
int p2p_dist_bcast(void *buf, size_t bytes, int root);

#endif
