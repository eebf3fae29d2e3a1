/* Seeded random numbers (xoshiro256**): same seed, same stream, on every
 * machine. The state is four words so it can be saved in a checkpoint. */
#ifndef P2P_RNG_H
#define P2P_RNG_H

#include <stdint.h>

typedef struct { uint64_t s[4]; } p2p_rng;

/* Seed from one number; p2p_rng_seed2 mixes two (seed, stream) so that
 * per-sample streams (seed, sample index) are independent of each other. */
void p2p_rng_seed(p2p_rng *r, uint64_t seed);
void p2p_rng_seed2(p2p_rng *r, uint64_t seed, uint64_t stream);
uint64_t p2p_rng_u64(p2p_rng *r);
double p2p_rng_uniform(p2p_rng *r);                 /* [0, 1) */
double p2p_rng_range(p2p_rng *r, double lo, double hi); /* [lo, hi) */
uint64_t p2p_rng_below(p2p_rng *r, uint64_t n);     /* [0, n), unbiased */
double p2p_rng_normal(p2p_rng *r);                  /* N(0, 1) */
/* Fisher-Yates shuffle of n ints. */
void p2p_rng_shuffle(p2p_rng *r, int *a, int n);

#endif
