/* lib/dist: the shares of a batch, and the single-rank build's collectives
 * (every rank of one: nothing changes). The MPI build is tested by
 * tests/mpi.bats. */
#include "check.h"
#include "dist.h"

/* Every n and R: the shares cover [0, n) in order, none longer than
 * ceil(n / R), none shorter than floor(n / R), the last the longest. */
static void test_share_partition(void)
{
	for (long n = 0; n <= 40; n++)
		for (int R = 1; R <= 9; R++) {
			long at = 0, k = 0;
			for (int r = 0; r < R; r++) {
				long first, end;
				p2p_dist_share(n, r, R, &first, &end);
				CHECKF(first == at, "n %ld R %d rank %d starts at %ld, not %ld", n, R, r, first, at);
				k = end - first;
				CHECK(k == n / R || k == (n + R - 1) / R);
				at = end;
			}
			CHECKF(at == n, "n %ld R %d ends at %ld", n, R, at);
			CHECK(k == (n + R - 1) / R);
		}
}

/* The example of the man page and a batch of 24 on 4 ranks; big n. */
static void test_share_values(void)
{
	long f, e;
	p2p_dist_share(5, 0, 2, &f, &e);
	CHECK(f == 0 && e == 2);
	p2p_dist_share(5, 1, 2, &f, &e);
	CHECK(f == 2 && e == 5);
	p2p_dist_share(2, 0, 3, &f, &e);
	CHECK(f == 0 && e == 0);            /* a rank with none */
	p2p_dist_share(24, 3, 4, &f, &e);
	CHECK(f == 18 && e == 24);
	p2p_dist_share(2000000000L, 7, 8, &f, &e);
	CHECK(f == 1750000000L && e == 2000000000L);
}

static void test_single_rank(void)
{
	int argc = 1;
	char *args[] = { "test_dist", NULL }, **argv = args;
	CHECK(p2p_dist_init(&argc, &argv) == 0);
	CHECK(p2p_dist_rank() == 0 && p2p_dist_size() == 1 && p2p_dist_local_rank() == 0);
	float x[3] = { 1, 2.5f, -3 };
	double d[2] = { 0.25, 7 };
	int m = 5;
	char b[4] = "abc";
	CHECK(p2p_dist_sum_float(x, 3) == 0 && p2p_dist_sum_double(d, 2) == 0);
	CHECK(p2p_dist_max_int(&m) == 0 && p2p_dist_bcast(b, 4, 0) == 0);
	CHECK(x[0] == 1 && x[1] == 2.5f && x[2] == -3 && d[0] == 0.25 && d[1] == 7);
	CHECK(m == 5 && strcmp(b, "abc") == 0);
	CHECK(p2p_dist_bind_gpu() == 0);    /* one rank: CUDA picks as it would */
	p2p_dist_finalize();
}

int main(void)
{
	RUN(test_share_partition);
	RUN(test_share_values);
	RUN(test_single_rank);
	return CHECK_DONE();
}
