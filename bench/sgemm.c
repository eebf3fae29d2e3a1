/* bench/sgemm: the machine's cblas_sgemm rate, the yardstick of bench/train.
 *
 * Usage: bench/sgemm [-t THREADS] [-n SIZE] [-s SECONDS]
 *   -t  OpenBLAS threads (its default)   -n 2048: an n x n x n product
 *   -s  1: seconds of repeats after one warm-up product
 * Prints one JSON line: the best and median GFLOP/s by wall clock, the
 * OpenBLAS build and core, the threads, and the OPENBLAS_CORETYPE and
 * OPENBLAS_L2_SIZE settings it ran under (it never changes them). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	int threads = 0, n = 2048;
	double secs = 1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-t") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-n") && i + 1 < argc)
			n = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-s") && i + 1 < argc)
			secs = atof(argv[++i]);
		else {
			fprintf(stderr, "usage: sgemm [-t THREADS] [-n SIZE] [-s SECONDS]\n");
			return 2;
		}
	}
	if (n < 16 || n > 16384 || secs <= 0) {
		fprintf(stderr, "sgemm: size 16 to 16384, a positive time\n");
		return 2;
	}
	if (threads > 0)
		openblas_set_num_threads(threads);
	size_t nn = (size_t)n * n;
	float *a = malloc(nn * 4), *b = malloc(nn * 4), *c = malloc(nn * 4);
	if (!a || !b || !c) {
		fprintf(stderr, "sgemm: out of memory\n");
		return 1;
	}
	for (size_t i = 0; i < nn; i++)
		a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.1f;
	double t[1000];
	int k = 0;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
	for (double t0 = now(); k < 1000 && (k < 3 || now() - t0 < secs); k++) {
		double s = now();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
		t[k] = now() - s;
	}
	qsort(t, k, sizeof *t, cmp_d);
	double fl = 2.0 * n * n * (double)n * 1e-9, med = k % 2 ? t[k / 2] : (t[k / 2 - 1] + t[k / 2]) / 2;
	const char *ct = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
	printf("{\"bench\":\"sgemm\",\"n\":%d,\"threads\":%d,\"repeats\":%d,\"best_gflop_per_s\":%.1f,"
	       "\"median_gflop_per_s\":%.1f,\"openblas\":\"%s\",\"core\":\"%s\","
	       "\"OPENBLAS_CORETYPE\":\"%s\",\"OPENBLAS_L2_SIZE\":\"%s\"}\n",
	       n, openblas_get_num_threads(), k, fl / t[0], fl / med, openblas_get_config(),
	       openblas_get_corename(), ct ? ct : "(unset)", l2 ? l2 : "(unset)");
	free(a), free(b), free(c);
	return 0;
}
