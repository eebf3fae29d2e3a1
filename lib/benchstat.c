/* Step timing for --bench (see benchstat.h). */
#include "benchstat.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double clock_s(clockid_t id)
{
	struct timespec t;
	clock_gettime(id, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

void p2p_bench_begin(p2p_bench *b)
{
	b->w0 = clock_s(CLOCK_MONOTONIC);
	b->c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
}

void p2p_bench_end(p2p_bench *b, int images)
{
	double w = clock_s(CLOCK_MONOTONIC) - b->w0, c = clock_s(CLOCK_PROCESS_CPUTIME_ID) - b->c0;
	if (b->n == b->cap) {
		int cap = b->cap ? 2 * b->cap : 64;
		double *nw = realloc(b->wall, cap * sizeof *nw);
		if (nw)
			b->wall = nw;
		double *nc = nw ? realloc(b->cpu, cap * sizeof *nc) : NULL;
		if (nc)
			b->cpu = nc;
		int *ni = nc ? realloc(b->images, cap * sizeof *ni) : NULL;
		if (!ni)
			return;
		b->images = ni;
		b->cap = cap;
	}
	b->wall[b->n] = w;
	b->cpu[b->n] = c;
	b->images[b->n] = images;
	b->n++;
}

void p2p_bench_free(p2p_bench *b)
{
	free(b->wall);
	free(b->cpu);
	free(b->images);
	memset(b, 0, sizeof *b);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The median of v[0..n), sorted in place. */
static double median(double *v, int n)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

char *p2p_bench_json(const p2p_bench *b, const char *what, double flop_per_image, int threads)
{
	int skip = b->n > 1, m = b->n - skip;
	double *t = malloc((m > 0 ? m : 1) * 3 * sizeof *t);
	if (!t)
		return NULL;
	double *w = t, *c = t + m, *rate = t + 2 * m;
	long images = 0;
	for (int i = 0; i < m; i++) {
		w[i] = b->wall[skip + i];
		c[i] = b->cpu[skip + i];
		rate[i] = w[i] > 0 ? b->images[skip + i] / w[i] : 0;
		images += b->images[skip + i];
	}
	double ips = median(rate, m);
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "bench", what);
	cJSON_AddNumberToObject(j, "steps", b->n);
	cJSON_AddNumberToObject(j, "timed_steps", m);
	cJSON_AddNumberToObject(j, "images", (double)images);
	cJSON_AddNumberToObject(j, "seconds_per_step", median(w, m));
	cJSON_AddNumberToObject(j, "cpu_seconds_per_step", median(c, m));
	cJSON_AddNumberToObject(j, "images_per_s", ips);
	cJSON_AddNumberToObject(j, "gflop_per_image", flop_per_image * 1e-9);
	cJSON_AddNumberToObject(j, "gflop_per_s", ips * flop_per_image * 1e-9);
	cJSON_AddNumberToObject(j, "threads", threads);
	char *s = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	free(t);
	return s;
}
