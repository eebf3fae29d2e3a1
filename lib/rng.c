#include "rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void p2p_rng_seed(p2p_rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

void p2p_rng_seed2(p2p_rng *r, uint64_t seed, uint64_t stream)
{
	uint64_t x = seed;
	uint64_t h = splitmix64(&x) ^ (stream * 0xd1b54a32d192ed03ULL);
	p2p_rng_seed(r, h);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t p2p_rng_u64(p2p_rng *r)
{
	uint64_t *s = r->s;
	uint64_t out = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return out;
}

double p2p_rng_uniform(p2p_rng *r)
{
	return (p2p_rng_u64(r) >> 11) * 0x1.0p-53;
}

double p2p_rng_range(p2p_rng *r, double lo, double hi)
{
	return lo + (hi - lo) * p2p_rng_uniform(r);
}

uint64_t p2p_rng_below(p2p_rng *r, uint64_t n)
{
	if (n == 0)
		return 0;
	/* reject the top partial block so every value is equally likely */
	uint64_t limit = UINT64_MAX - UINT64_MAX % n;
	uint64_t x;
	do
		x = p2p_rng_u64(r);
	while (x >= limit);
	return x % n;
}

double p2p_rng_normal(p2p_rng *r)
{
	/* Box-Muller; one value per call keeps the state a plain 4 words */
	double u = 1.0 - p2p_rng_uniform(r), v = p2p_rng_uniform(r);
	return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

void p2p_rng_shuffle(p2p_rng *r, int *a, int n)
{
	for (int i = n - 1; i > 0; i--) {
		int j = (int)p2p_rng_below(r, (uint64_t)i + 1);
		int t = a[i];
		a[i] = a[j];
		a[j] = t;
	}
}
