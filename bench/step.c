/* bench/step: where the time of one training step goes, phase by phase.
 *
 * Builds G, D and VGG16[:16] (random weights) as p2p-train does and runs its
 * step on random data: G forward; D forward and backward on real and fake
 * as one batch, D's Adam; D forward and backward (input gradient only) on
 * the fake; VGG16 on real and fake, its backward; G backward, G's Adam.
 * Per phase: median milliseconds over the timed steps, its GFLOP as the
 * models count them (2 * MACs of a direct convolution, as p2p-train --bench
 * and bench/train do: Winograd's layers do fewer), GFLOP/s, and the share of
 * its time that the calling thread spent inside sgemm. The step mirrors
 * p2p-train's train_step; keep them alike.
 *
 * Usage: bench/step [-s SIZE] [-b BATCH] [-n STEPS] [-t THREADS] [-p] [-1]
 *   -s 256  -b 4  -n 3 timed steps after one warm-up  -t: OpenBLAS's count
 *   -p      without the perceptual loss (no VGG16)
 *   -1      one thread, timed by its CPU clock (steady on a busy machine)
 * Not a test: it prints a table and exits 0. */
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "adam.h"
#include "cpu_pool.h"
#include "err.h"
#include "layers.h"
#include "models.h"
#include "rng.h"

static clockid_t clock_id = CLOCK_MONOTONIC;

static double now(void)
{
	struct timespec t;
	clock_gettime(clock_id, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

#include "gemm_timer.h"

/* ---- phases ---- */

enum { P_GF, P_DF2, P_DB2, P_DADAM, P_DF, P_DB, P_VR, P_VF, P_VB, P_GB, P_GADAM, P_REST, NP };
static const char *phase_name[NP] = {
	"G forward", "D forward, real+fake", "D backward (params)", "D Adam",
	"D forward, fake", "D backward (input)", "VGG forward, real", "VGG forward, fake",
	"VGG backward", "G backward", "G Adam", "losses, copies"
};

#define MAXSTEPS 64
static double ph_t[NP][MAXSTEPS], ph_g[NP][MAXSTEPS], ph_f[NP];
static const double ph_fw[NP] = {1, 2, 4, 0, 1, 1, 1, 1, 1, 2, 0, 0};   /* model forwards per image */
static double mark_t, mark_g;

static void mark(void)
{
	mark_t = now();
	mark_g = gemm_secs;
}

static void done(int p, int step)
{
	ph_t[p][step] += now() - mark_t;
	ph_g[p][step] += gemm_secs - mark_g;
	mark();
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(const double *v, int n)
{
	double s[MAXSTEPS];
	memcpy(s, v, n * sizeof *s);
	qsort(s, n, sizeof *s, cmp_d);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static const float *ok(const float *p)
{
	if (!p) {
		fprintf(stderr, "step: %s\n", p2p_errmsg());
		exit(1);
	}
	return p;
}

static void ck(int rc)
{
	if (rc) {
		fprintf(stderr, "step: %s\n", p2p_errmsg());
		exit(1);
	}
}

static float *balloc(const p2p_backend *be, size_t n, p2p_rng *r)
{
	float *p = be->alloc(n);
	if (!p) {
		fprintf(stderr, "step: out of memory\n");
		exit(1);
	}
	float *h = malloc(n * sizeof *h);
	for (size_t i = 0; i < n; i++)
		h[i] = r ? (float)(2 * p2p_rng_uniform(r) - 1) : 0;
	be->upload(p, h, n);
	free(h);
	return p;
}

int main(int argc, char **argv)
{
	int S = 256, n = 4, steps = 3, threads = 0, perc = 1, one = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-s") && i + 1 < argc)
			S = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-b") && i + 1 < argc)
			n = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-n") && i + 1 < argc)
			steps = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-t") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-p"))
			perc = 0;
		else if (!strcmp(argv[i], "-1"))
			one = 1;
		else {
			fprintf(stderr, "usage: step [-s SIZE] [-b BATCH] [-n STEPS] [-t THREADS] [-p] [-1]\n");
			return 2;
		}
	}
	if (steps < 1 || steps > MAXSTEPS - 1 || n < 1) {
		fprintf(stderr, "step: 1 to %d steps, a batch of at least 1\n", MAXSTEPS - 1);
		return 2;
	}
	main_thread = pthread_self();
	const p2p_backend *cpu = p2p_backend_get("cpu");
	if (one) {
		threads = 1;
		clock_id = CLOCK_THREAD_CPUTIME_ID;
	}
	if (threads > 0)
		cpu->set_threads(threads);
	const p2p_backend *be = recorder(cpu);
	const char *ct = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
	printf("OpenBLAS %s; core %s; OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s; %d thread(s), %s\n",
	       openblas_get_config(), openblas_get_corename(), ct ? ct : "(unset)",
	       l2 ? l2 : "(unset)", p2p_pool_threads(),
	       one ? "the thread's CPU time" : "wall-clock time");
	printf("size %d, batch %d, %s, median of %d steps after one warm-up\n\n", S, n,
	       perc ? "perceptual loss on" : "no perceptual loss", steps);

	p2p_rng r;
	p2p_rng_seed(&r, 1);
	p2p_unet_cfg gc = p2p_unet_default(S);
	p2p_patchgan_cfg dc = p2p_patchgan_default(S);
	p2p_unet *G = p2p_unet_new(be, &gc, n);
	p2p_patchgan *D = p2p_patchgan_new(be, &dc, 2 * n);
	p2p_vgg *V = perc ? p2p_vgg_random(be, S, n, 2) : NULL;
	if (!G || !D || (perc && !V)) {
		fprintf(stderr, "step: %s\n", p2p_errmsg());
		return 1;
	}
	p2p_params *gp = p2p_unet_params(G), *dp = p2p_patchgan_params(D);
	/* a phase's FLOPs: its model's forward FLOPs times ph_fw, times n */
	for (int p = 0; p < NP; p++) {
		double f = p == P_GF || p == P_GB || p == P_GADAM ? p2p_unet_flops(G)
		         : p >= P_VR && p <= P_VB ? (V ? p2p_vgg_flops(V) : 0) : p2p_patchgan_flops(D);
		ph_f[p] = f * ph_fw[p] * n;
	}
	ck(p2p_params_init(gp, &r, 0.02f));
	ck(p2p_params_init(dp, &r, 0.02f));
	p2p_adam ga, da;
	p2p_adam_init(&ga, 2e-4f, 0.5f, 0.999f);
	p2p_adam_init(&da, 1e-4f, 0.5f, 0.999f);
	size_t ss = (size_t)S * S, P = p2p_patchgan_out_size(D), pp = P * P;
	size_t nfeat = 256 * (ss / 16);
	float *a = balloc(be, n * ss, &r), *b = balloc(be, n * 3 * ss, &r);
	float *xd = balloc(be, 2 * n * 4 * ss, NULL), *dd = balloc(be, 2 * n * pp, NULL);
	float *dxd = balloc(be, n * 4 * ss, NULL), *dfake = balloc(be, n * 3 * ss, NULL);
	float *dfeat = perc ? balloc(be, 2 * n * nfeat, NULL) : NULL;
	float *freal = perc ? balloc(be, n * nfeat, NULL) : NULL;

	for (int st = 0; st <= steps; st++) {
		int i = st ? st - 1 : MAXSTEPS - 1;    /* the warm-up's own slot */
		mark();
		double t0 = now();
		const float *fake = ok(p2p_unet_forward(G, a, n, 1, 7, (uint64_t)st * n));
		done(P_GF, i);
		float *xfake = xd + (size_t)n * 4 * ss;
		p2p_concat_forward(be, xd, a, b, n, 1, 3, ss);
		p2p_concat_forward(be, xfake, a, fake, n, 1, 3, ss);
		p2p_params_zero_grad(dp);
		done(P_REST, i);
		const float *dout = ok(p2p_patchgan_forward(D, xd, 2 * n));
		done(P_DF2, i);
		be->zero(dd, 2 * n * pp);
		p2p_mse_const_loss(be, dout, n * pp, 1.0f, dd, 0.5f);
		p2p_mse_const_loss(be, dout + n * pp, n * pp, 0.0f, dd + n * pp, 0.5f);
		done(P_REST, i);
		ck(p2p_patchgan_backward(D, dd, NULL, 1));
		done(P_DB2, i);
		p2p_adam_step(&da, dp);
		done(P_DADAM, i);
		dout = ok(p2p_patchgan_forward(D, xfake, n));
		done(P_DF, i);
		be->zero(dd, n * pp);
		p2p_mse_const_loss(be, dout, n * pp, 1.0f, dd, 1.0f);
		be->zero(dxd, n * 4 * ss);
		done(P_REST, i);
		ck(p2p_patchgan_backward(D, dd, dxd, 0));
		done(P_DB, i);
		be->zero(dfake, n * 3 * ss);
		p2p_concat_backward(be, NULL, dfake, dxd, n, 1, 3, ss);
		p2p_l1_loss(be, fake, b, n * 3 * ss, dfake, 150.0f);
		done(P_REST, i);
		if (V) {
			be->copy(freal, ok(p2p_vgg_forward(V, b, n)), n * nfeat);
			done(P_VR, i);
			const float *ffake = ok(p2p_vgg_forward(V, fake, n));
			done(P_VF, i);
			be->zero(dfeat, n * nfeat);
			p2p_mse_loss(be, ffake, freal, n * nfeat, dfeat, 2.0f);
			done(P_REST, i);
			ck(p2p_vgg_backward(V, dfeat, dfake));
			done(P_VB, i);
		}
		p2p_params_zero_grad(gp);
		done(P_REST, i);
		ck(p2p_unet_backward(G, dfake, NULL));
		done(P_GB, i);
		p2p_adam_step(&ga, gp);
		done(P_GADAM, i);
		if (st == 0)
			printf("warm-up step: %.2f s\n", now() - t0);
	}

	double peak_t = 0, tot_t = 0, tot_g = 0, tot_f = 0;
	printf("%-22s %9s %8s %7s %6s\n", "phase", "ms", "GFLOP", "GF/s", "gemm");
	for (int p = 0; p < NP; p++) {
		if (!V && (p == P_VR || p == P_VF || p == P_VB))
			continue;
		double t = median(ph_t[p], steps), g = median(ph_g[p], steps);
		printf("%-22s %9.1f %8.2f %7.1f %5.0f%%\n", phase_name[p], t * 1e3, ph_f[p] * 1e-9,
		       t > 0 ? ph_f[p] / t * 1e-9 : 0, t > 0 ? 100 * g / t : 0);
		tot_t += t, tot_g += g, tot_f += ph_f[p];
	}
	peak_t = tot_t;
	printf("%-22s %9.1f %8.2f %7.1f %5.0f%%\n", "step", peak_t * 1e3, tot_f * 1e-9,
	       tot_f / tot_t * 1e-9, 100 * tot_g / tot_t);
	printf("%.3f images/s; %.1f GFLOP per image\n", n / tot_t, tot_f / n * 1e-9);

	float *bufs[] = { a, b, xd, dd, dxd, dfake, dfeat, freal };
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
		cpu->free(bufs[i]);
	p2p_unet_free(G);
	p2p_patchgan_free(D);
	p2p_vgg_free(V);
	return 0;
}
