/* The CPU backend's thread pool (see cpu_pool.h). Workers start on first
 * use and are joined at exit, so valgrind sees no lost thread. A second
 * caller while a job runs (another thread, or a job's own function) runs
 * its loop inline rather than wait; a forked child starts its own workers. */
#include "cpu_pool.h"

#include <cblas.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define MAXT 64

static struct {
	pthread_mutex_t mu;
	pthread_cond_t go, done;
	pthread_t th[MAXT];
	long born[MAXT];        /* the job generation a worker starts after */
	int nth;                /* workers running */
	int want;               /* threads wanted, caller included; 0 = not set */
	int stop, pending, registered;
	atomic_int busy;
	long gen;
	p2p_range_fn fn;
	void *ctx;
	long n;
	int parts;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER, .go = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER};

static void *worker(void *arg)
{
	int id = (int)(long)arg;
	pthread_mutex_lock(&pool.mu);
	long seen = pool.born[id];
	for (;;) {
		while (pool.gen == seen && !pool.stop)
			pthread_cond_wait(&pool.go, &pool.mu);
		if (pool.stop)
			break;
		seen = pool.gen;
		p2p_range_fn fn = pool.fn;
		void *ctx = pool.ctx;
		long n = pool.n;
		int parts = pool.parts;
		pthread_mutex_unlock(&pool.mu);
		if (id < parts)
			fn(ctx, n * id / parts, n * (id + 1) / parts);
		pthread_mutex_lock(&pool.mu);
		if (--pool.pending == 0)
			pthread_cond_signal(&pool.done);
	}
	pthread_mutex_unlock(&pool.mu);
	return NULL;
}

static void pool_stop(void)
{
	pthread_mutex_lock(&pool.mu);
	pool.stop = 1;
	pthread_cond_broadcast(&pool.go);
	pthread_mutex_unlock(&pool.mu);
	for (int i = 1; i <= pool.nth; i++)
		pthread_join(pool.th[i], NULL);
	pool.nth = 0;
	pool.stop = 0;
}

int p2p_pool_threads(void)
{
	if (!pool.want) {
		int n = openblas_get_num_threads();
		pool.want = n < 1 ? 1 : n > MAXT ? MAXT : n;
	}
	return pool.want;
}

void p2p_pool_set_threads(int n)
{
	pool_stop();
	pool.want = n < 1 ? 1 : n > MAXT ? MAXT : n;
}

/* The child of a fork has none of the parent's workers. */
static void pool_forked(void)
{
	pthread_mutex_init(&pool.mu, NULL);
	pthread_cond_init(&pool.go, NULL);
	pthread_cond_init(&pool.done, NULL);
	pool.nth = 0;
	pool.stop = 0;
	atomic_store(&pool.busy, 0);
}

/* Start the workers (ids 1..want-1); on failure run with fewer. */
static void pool_start(void)
{
	if (!pool.registered) {
		atexit(pool_stop);
		pthread_atfork(NULL, NULL, pool_forked);
		pool.registered = 1;
	}
	int want = p2p_pool_threads();
	while (pool.nth + 1 < want) {
		int id = pool.nth + 1;
		pool.born[id] = pool.gen;
		if (pthread_create(&pool.th[id], NULL, worker, (void *)(long)id) != 0)
			break;
		pool.nth++;
	}
}

void p2p_pool_run(long n, int parts, p2p_range_fn fn, void *ctx)
{
	if (parts <= 1 || n <= 1 || atomic_exchange(&pool.busy, 1)) {
		fn(ctx, 0, n);
		return;
	}
	if (pool.nth + 1 < parts)
		pool_start();
	if (parts > pool.nth + 1)
		parts = pool.nth + 1;
	if (parts <= 1) {
		fn(ctx, 0, n);
		atomic_store(&pool.busy, 0);
		return;
	}
	pthread_mutex_lock(&pool.mu);
	pool.fn = fn, pool.ctx = ctx, pool.n = n, pool.parts = parts;
	pool.pending = pool.nth;
	pool.gen++;
	pthread_cond_broadcast(&pool.go);
	pthread_mutex_unlock(&pool.mu);
	fn(ctx, 0, n / parts);
	pthread_mutex_lock(&pool.mu);
	while (pool.pending > 0)
		pthread_cond_wait(&pool.done, &pool.mu);
	pthread_mutex_unlock(&pool.mu);
	atomic_store(&pool.busy, 0);
}
