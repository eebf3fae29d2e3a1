/* bench/conv: how close the CPU convolutions come to the machine's sgemm.
 *
 * In one run: cblas_sgemm GFLOP/s on a large square product; each conv
 * layer's forward and backward GFLOP/s for every layer shape of the U-Net
 * generator at 256 (batch 1 and 8), the PatchGAN and VGG16 features[:16],
 * with the ratio to sgemm; then a whole G forward at 256 against the time
 * its GEMMs alone take (the same calls, recorded and replayed). "/gemm" is
 * a layer's time over that of its own GEMMs replayed alone: the overhead
 * of im2col, col2im, transposes and bias, robust to a busy machine. Then
 * the layers training runs by Winograd, both ways.
 *
 * Usage: bench/conv [-q] [-g] [-w] [-1]
 *   -q  batch 1 only, shorter timings
 *   -g  only the whole G forward
 *   -w  only the layers run by Winograd, both ways
 *   -1  one thread, timed by its CPU clock: ratios that hold on a busy machine
 * Not a test: it prints a table and exits 0. */
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu_pool.h"
#include "layers.h"
#include "tensor.h"

/* Wall clock, or with -1 the calling thread's CPU clock: with one thread
 * all the work runs on the caller, and time spent waiting for a core that
 * other jobs hold is not counted. */
static clockid_t clock_id = CLOCK_MONOTONIC;

static double now(void)
{
	struct timespec t;
	clock_gettime(clock_id, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static double min_time = 0.3;   /* seconds of repeats per measurement */

static float *buf(const p2p_backend *be, size_t n, float v)
{
	float *p = be->alloc(n);
	if (!p) {
		fprintf(stderr, "conv: out of memory for %zu floats\n", n);
		exit(1);
	}
	be->fill(p, n, v);
	return p;
}

/* ---- sgemm ---- */

static double sgemm_gflops(int n)
{
	float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4), *c = malloc((size_t)n * n * 4);
	for (size_t i = 0; i < (size_t)n * n; i++)
		a[i] = (float)(i % 7) * 0.1f, b[i] = (float)(i % 5) * 0.1f;
	double best = 1e30;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
	for (double t0 = now(); now() - t0 < 2 * min_time;) {
		double t = now();
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
		t = now() - t;
		best = t < best ? t : best;
	}
	free(a), free(b), free(c);
	return 2.0 * n * n * n / best * 1e-9;
}

/* ---- GEMM recording (gemm_timer.h) ----
 * With threads "GEMMs inside" is the calling thread's share; with -1 all
 * of it. The Winograd layers' batched GEMMs are timed but not recorded:
 * the replays are of the direct layers. */
#include "gemm_timer.h"

/* Best time of the recorded GEMMs replayed alone, on the same buffers. */
static double replay(double secs)
{
	double best = 1e30;
	int reps = 0;
	for (double t0 = now(); reps < 2 || now() - t0 < secs; reps++) {
		double t = now();
		for (int i = 0; i < ncalls && i < MAX_CALLS; i++) {
			gemm_call *c = &calls[i];
			inner->gemm(c->ta, c->tb, c->m, c->n, c->k, c->alpha, c->a, c->lda, c->b, c->ldb,
			            c->beta, c->c, c->ldc);
		}
		t = now() - t;
		best = t < best ? t : best;
	}
	return best;
}


/* ---- one layer ---- */

typedef struct { const char *net; int transposed, n, cin, hw, cout, k, s, p; } shape;

static int layer_pass(const p2p_backend *be, const p2p_conv *g, int bwd, float **t, size_t wsn)
{
	float *x = t[0], *y = t[1], *dx = t[2], *dy = t[3], *w = t[4], *dw = t[5], *b = t[6];
	float *db = t[7], *ws = t[8];
	if (!bwd)
		return g->transposed ? p2p_convt2d_forward(be, g, y, x, w, b, ws, wsn)
		                     : p2p_conv2d_forward(be, g, y, x, w, b, ws, wsn);
	return g->transposed ? p2p_convt2d_backward(be, g, dx, dw, db, dy, x, w, ws, wsn)
	                     : p2p_conv2d_backward(be, g, dx, dw, db, dy, x, w, ws, wsn);
}

/* Forward and backward: best time, GFLOP/s, share of sgemm, and the time
 * over that of the layer's own GEMMs replayed alone. */
static void bench_layer(const p2p_backend *be, const shape *L, double peak)
{
	p2p_conv g;
	if (L->transposed)
		p2p_convt2d_init(&g, L->n, L->cin, L->hw, L->hw, L->cout, L->k, L->s, L->p);
	else
		p2p_conv2d_init(&g, L->n, L->cin, L->hw, L->hw, L->cout, L->k, L->s, L->p);
	size_t nx = (size_t)g.n * g.cin * g.h * g.w, ny = (size_t)g.n * g.cout * g.oh * g.ow;
	size_t nw = (size_t)g.cin * g.cout * g.k * g.k, wsn = p2p_conv_ws(&g);
	float *t[9] = {buf(be, nx, 0.1f), buf(be, ny, 0), buf(be, nx, 0), buf(be, ny, 0.01f),
	               buf(be, nw, 0.02f), buf(be, nw, 0), buf(be, g.cout, 0), buf(be, g.cout, 0),
	               buf(be, wsn, 0)};
	const p2p_backend *rec = recorder(be);
	double best[2] = {1e30, 1e30}, alone[2];
	for (int pass = 0; pass < 2; pass++) {
		ncalls = 0, recording = 1;
		layer_pass(rec, &g, pass, t, wsn);
		recording = 0;
		int reps = 0;
		for (double t0 = now(); reps < 2 || now() - t0 < min_time; reps++) {
			double s = now();
			layer_pass(be, &g, pass, t, wsn);
			s = now() - s;
			best[pass] = s < best[pass] ? s : best[pass];
		}
		alone[pass] = replay(min_time / 2);
	}
	double fl = (double)p2p_conv_flops(&g);
	double gf = fl / best[0] * 1e-9, gb = 2 * fl / best[1] * 1e-9;
	printf("%-4s %-6s %2d %4d->%-4d %4dx%-4d k%d s%d %8.2f %6.1f %4.0f%% %5.2f %8.2f %6.1f %4.0f%% %5.2f\n",
	       L->net, L->transposed ? "convT" : "conv", g.n, g.cin, g.cout, g.h, g.w, g.k, g.stride,
	       best[0] * 1e3, gf, 100 * gf / peak, best[0] / alone[0],
	       best[1] * 1e3, gb, 100 * gb / peak, best[1] / alone[1]);
	fflush(stdout);
	for (int i = 0; i < 9; i++)
		be->free(t[i]);
}

/* ---- the layers the models run by Winograd ----
 * VGG16's 3x3 layers after the first and D's stride-1 4x4 conv.3 run
 * forward and input gradient by Winograd in training (VGG16 needs no weight
 * gradient: it is frozen); G's stride-2 layers from 128x128 to 16x16 run
 * forward by Winograd F(5x5, 2x2). Both ways side by side, each rated by
 * the direct convolution's FLOPs, so that the ratio to sgemm is the speed a
 * layer is worth. */

static double best_of(const p2p_backend *be, int wino, int dx, const p2p_conv *g, float **t,
                      size_t wsn)
{
	float *x = t[0], *y = t[1], *dxb = t[2], *dy = t[3], *w = t[4], *u = t[5], *ut = t[6];
	float *b = t[7], *ws = t[8];
	p2p_conv tg;
	p2p_conv_wino_input_grad(&tg, g);
	double best = 1e30;
	for (int reps = 0; reps < 2 || best * reps < min_time; reps++) {
		double s = now();
		int rc;
		if (!dx && g->transposed)
			rc = wino ? p2p_convt2d_forward_wino(be, g, y, x, u, b, ws, wsn)
			          : p2p_convt2d_forward(be, g, y, x, w, b, ws, wsn);
		else if (!dx)
			rc = wino ? p2p_conv2d_forward_wino(be, g, y, x, u, b, ws, wsn)
			          : p2p_conv2d_forward(be, g, y, x, w, b, ws, wsn);
		else if (wino)
			rc = p2p_conv2d_forward_wino(be, &tg, dxb, dy, ut, NULL, ws, wsn);
		else
			rc = p2p_conv2d_backward(be, g, dxb, NULL, NULL, dy, NULL, w, ws, wsn);
		s = now() - s;
		if (rc != 0) {
			fprintf(stderr, "conv: a layer failed\n");
			exit(1);
		}
		best = s < best ? s : best;
	}
	return best;
}

static void bench_wino_layer(const p2p_backend *be, const shape *L, double peak)
{
	p2p_conv g;
	int tr = L->transposed;
	(tr ? p2p_convt2d_init : p2p_conv2d_init)(&g, L->n, L->cin, L->hw, L->hw, L->cout, L->k,
	                                          L->s, L->p);
	size_t nx = (size_t)g.n * g.cin * g.h * g.w, ny = (size_t)g.n * g.cout * g.oh * g.ow;
	int s2 = g.stride == 2;        /* the F(5x5, 2x2) forms: 4 times the weights, forward only */
	size_t nw = (size_t)g.cin * g.cout * g.k * g.k, nu = 36 * (size_t)g.cin * g.cout * (s2 ? 4 : 1);
	size_t a = p2p_conv_ws(&g), b = p2p_conv_wino_ws(&g), wsn = a > b ? a : b;
	float *t[9] = {buf(be, nx, 0.1f), buf(be, ny, 0), buf(be, nx, 0), buf(be, ny, 0.01f),
	               buf(be, nw, 0.02f), buf(be, nu, 0), buf(be, nu, 0), buf(be, g.cout, 0),
	               buf(be, wsn, 0)};
	be->wino_weights(t[4], g.cout, g.cin, g.k,
	                 tr ? P2P_WINO_UP : s2 ? P2P_WINO_DOWN : P2P_WINO_CONV, t[5]);
	if (!s2)
		be->wino_weights(t[4], g.cout, g.cin, g.k, P2P_WINO_GRAD, t[6]);
	double fl = (double)p2p_conv_flops(&g), tm[4];
	int ways = s2 ? 2 : 4;
	for (int i = 0; i < ways; i++)
		tm[i] = best_of(be, i & 1, i >> 1, &g, t, wsn);
	printf("%-4s %-6s %2d %4d->%-4d %4dx%-4d k%d s%d", L->net, tr ? "convT" : "conv", g.n, g.cin,
	       g.cout, g.h, g.w, g.k, g.stride);
	for (int i = 0; i < ways; i++)
		printf(" %8.2f %6.1f %4.0f%%", tm[i] * 1e3, fl / tm[i] * 1e-9,
		       100 * fl / tm[i] * 1e-9 / peak);
	printf("\n");
	fflush(stdout);
	for (int i = 0; i < 9; i++)
		be->free(t[i]);
}

/* ---- the generator's shapes ---- */

static int g_shapes(shape *out, int s, int n)
{
	int depth = 0, k = 0, ch[16];
	while ((1 << depth) < s)
		depth++;
	for (int i = 0; i < depth; i++)
		ch[i] = 64 * (i < 3 ? 1 << i : 8);
	for (int i = 0; i < depth; i++)
		out[k++] = (shape){"G", 0, n, i ? ch[i - 1] : 1, s >> i, ch[i], 4, 2, 1};
	for (int i = depth - 1; i >= 0; i--)
		out[k++] = (shape){"G", 1, n, i == depth - 1 ? ch[i] : 2 * ch[i], s >> (i + 1),
		                   i ? ch[i - 1] : 3, 4, 2, 1};
	return k;
}

/* ---- the whole G forward, and its GEMMs alone ---- */

typedef struct {
	int depth, n, s;
	p2p_conv down[16], up[16];
	float *x, *d[16], *a[16], *mean, *rstd, *u[16], *t[16], *out;
	float *wd[16], *bd[16], *wu[16], *bu[16], *ws;
	size_t wsn;
} unet;

static void unet_init(unet *G, const p2p_backend *be, int s, int n)
{
	memset(G, 0, sizeof *G);
	G->n = n, G->s = s;
	while ((1 << G->depth) < s)
		G->depth++;
	int ch[16];
	for (int i = 0; i < G->depth; i++)
		ch[i] = 64 * (i < 3 ? 1 << i : 8);
	G->x = buf(be, (size_t)n * s * s, 0.1f);
	for (int i = 0; i < G->depth; i++) {
		int cin = i ? ch[i - 1] : 1, hw = s >> i;
		p2p_conv2d_init(&G->down[i], n, cin, hw, hw, ch[i], 4, 2, 1);
		size_t o = (size_t)n * ch[i] * (hw / 2) * (hw / 2);
		G->d[i] = buf(be, o, 0);
		G->a[i] = buf(be, (size_t)n * 2 * cin * hw * hw, 0);   /* later the up concat */
		G->wd[i] = buf(be, (size_t)ch[i] * cin * 16, 0.02f);
		G->bd[i] = buf(be, ch[i], 0);
		size_t w = p2p_conv_ws(&G->down[i]);
		G->wsn = w > G->wsn ? w : G->wsn;
	}
	for (int i = G->depth - 1; i >= 0; i--) {
		int cin = i == G->depth - 1 ? ch[i] : 2 * ch[i], cout = i ? ch[i - 1] : 3;
		int hw = s >> (i + 1);
		p2p_convt2d_init(&G->up[i], n, cin, hw, hw, cout, 4, 2, 1);
		G->u[i] = buf(be, (size_t)n * cin * hw * hw, 0);     /* the block's input, ReLU'd */
		G->t[i] = buf(be, (size_t)n * cout * 4 * hw * hw, 0);
		G->wu[i] = buf(be, (size_t)cin * cout * 16, 0.02f);
		G->bu[i] = buf(be, cout, 0);
		size_t w = p2p_conv_ws(&G->up[i]);
		G->wsn = w > G->wsn ? w : G->wsn;
	}
	G->ws = buf(be, G->wsn, 0);
	G->mean = buf(be, (size_t)n * 1024, 0);
	G->rstd = buf(be, (size_t)n * 1024, 0);
	G->out = buf(be, (size_t)n * 3 * s * s, 0);
}

/* Down: conv, then LeakyReLU and InstanceNorm as DESIGN.md says; up: ReLU,
 * ConvTranspose, InstanceNorm, Dropout in the three blocks above the
 * innermost, skip concatenation, Tanh out. */
static void unet_forward(const p2p_backend *be, unet *G)
{
	int D = G->depth, n = G->n;
	for (int i = 0; i < D; i++) {
		p2p_conv *g = &G->down[i];
		const float *in = G->x;
		if (i) {
			p2p_leaky_forward(be, G->a[i], G->d[i - 1], (size_t)n * g->cin * g->h * g->w, 0.2f);
			in = G->a[i];
		}
		p2p_conv2d_forward(be, g, G->d[i], in, G->wd[i], G->bd[i], G->ws, G->wsn);
		if (i && i < D - 1)
			p2p_instnorm_forward(be, G->d[i], G->mean, G->rstd, G->d[i], n, g->cout,
			                     (long)g->oh * g->ow);
	}
	const float *below = G->d[D - 1];
	for (int i = D - 1; i >= 0; i--) {
		p2p_conv *g = &G->up[i];
		size_t nin = (size_t)n * g->cin * g->h * g->w, nout = (size_t)n * g->cout * g->oh * g->ow;
		p2p_relu_forward(be, G->u[i], below, nin);
		p2p_convt2d_forward(be, g, G->t[i], G->u[i], G->wu[i], G->bu[i], G->ws, G->wsn);
		if (i == 0) {
			p2p_tanh_forward(be, G->out, G->t[0], nout);
			break;
		}
		long hw = (long)g->oh * g->ow;
		p2p_instnorm_forward(be, G->t[i], G->mean, G->rstd, G->t[i], n, g->cout, hw);
		if (i < D - 1 && i >= D - 4)
			p2p_dropout_forward(be, G->t[i], G->t[i], nout, 0.5f, 1, 0);
		/* the next block's input: [skip | this], into a scratch the ReLU reads */
		float *cat = G->a[i];       /* (n, 2*cout, hw): the down block's input size */
		p2p_concat_forward(be, cat, G->d[i - 1], G->t[i], n, g->cout, g->cout, hw);
		below = cat;
	}
}

static void unet_free(const p2p_backend *be, unet *G)
{
	be->free(G->x), be->free(G->ws), be->free(G->mean), be->free(G->rstd), be->free(G->out);
	for (int i = 0; i < G->depth; i++) {
		be->free(G->d[i]), be->free(G->a[i]), be->free(G->wd[i]), be->free(G->bd[i]);
		be->free(G->u[i]), be->free(G->t[i]), be->free(G->wu[i]), be->free(G->bu[i]);
	}
}

static void bench_g_forward(const p2p_backend *cpu, int n)
{
	const p2p_backend *rec = recorder(cpu);
	unet G;
	unet_init(&G, rec, 256, n);
	/* record the GEMM calls of one forward, then time forwards */
	ncalls = 0, recording = 1;
	unet_forward(rec, &G);
	recording = 0;
	double best = 1e30, gin = 0;
	int reps = 0;
	for (double t0 = now(); reps < 2 || now() - t0 < 2 * min_time; reps++) {
		gemm_secs = 0;
		double t = now();
		unet_forward(rec, &G);
		t = now() - t;
		if (t < best)
			best = t, gin = gemm_secs;
	}
	/* the same GEMMs alone, on the same buffers (the activations they
	 * overwrite are not looked at again) */
	double galone = replay(2 * min_time);
	double fl = 0;
	for (int i = 0; i < ncalls && i < MAX_CALLS; i++)
		fl += 2.0 * calls[i].m * calls[i].n * calls[i].k;
	printf("G forward 256, batch %d: %.1f ms (GEMMs inside it %.1f ms); its %d GEMMs alone %.1f ms "
	       "(%.1f GFLOP/s); ratio %.2f\n", n, best * 1e3, gin * 1e3, ncalls, galone * 1e3,
	       fl / galone * 1e-9, best / galone);
	fflush(stdout);
	unet_free(cpu, &G);
}

int main(int argc, char **argv)
{
	int quick = 0, gonly = 0, wonly = 0, one = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-q") == 0)
			quick = 1;
		else if (strcmp(argv[i], "-g") == 0)
			gonly = 1;
		else if (strcmp(argv[i], "-w") == 0)
			wonly = 1;
		else if (strcmp(argv[i], "-1") == 0)
			one = 1;
		else {
			fprintf(stderr, "usage: conv [-q] [-g] [-w] [-1]\n");
			return 2;
		}
	}
	if (quick)
		min_time = 0.1;
	main_thread = pthread_self();
	const p2p_backend *be = p2p_backend_get("cpu");
	if (one) {
		be->set_threads(1);
		clock_id = CLOCK_THREAD_CPUTIME_ID;
	}
	const char *ct = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
	printf("OpenBLAS %s; core %s; OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s; "
	       "%d thread(s), %s\n",
	       openblas_get_config(), openblas_get_corename(), ct ? ct : "(unset)",
	       l2 ? l2 : "(unset)", p2p_pool_threads(),
	       one ? "the thread's CPU time" : "wall-clock time");
	/* the CPU backend leaves OpenBLAS one thread and splits GEMMs itself:
	 * the reference runs on OpenBLAS's own threads, as many */
	openblas_set_num_threads(p2p_pool_threads());
	double peak = sgemm_gflops(2048);
	openblas_set_num_threads(1);
	printf("sgemm 2048x2048x2048: %.1f GFLOP/s\n\n", peak);
	if (!gonly && !wonly)
		printf("%-4s %-6s %2s %10s %9s %5s %8s %6s %5s %5s %8s %6s %5s %5s\n", "net", "layer",
		       "n", "channels", "input", "", "fwd ms", "GF/s", "sgemm", "/gemm", "bwd ms", "GF/s",
		       "sgemm", "/gemm");
	shape L[64];
	int nl = 0;
	for (int n = 1; n <= (quick ? 1 : 8); n += 7)
		nl += g_shapes(L + nl, 256, n);
	int dc[6] = {4, 64, 128, 256, 512, 1}, ds[5] = {2, 2, 2, 1, 1}, hw = 256;
	for (int i = 0; i < 5; i++) {
		L[nl++] = (shape){"D", 0, 1, dc[i], hw, dc[i + 1], 4, ds[i], 1};
		hw = (hw + 2 - 4) / ds[i] + 1;
	}
	int vc[8] = {3, 64, 64, 128, 128, 256, 256, 256}, vs[7] = {256, 256, 128, 128, 64, 64, 64};
	for (int i = 0; i < 7; i++)
		L[nl++] = (shape){"VGG", 0, 1, vc[i], vs[i], vc[i + 1], 3, 1, 1};
	for (int i = 0; i < nl && !gonly && !wonly; i++)
		bench_layer(be, &L[i], peak);
	if (!gonly && be->wino_weights) {
		printf("\nAs the models run them (Winograd), GF/s by the direct convolution's FLOPs:\n");
		printf("%-4s %-6s %2s %10s %9s %5s %8s %6s %5s %8s %6s %5s %8s %6s %5s %8s %6s %5s\n",
		       "net", "layer", "n", "channels", "input", "", "fwd ms", "GF/s", "sgemm",
		       "wino ms", "GF/s", "sgemm", "dx ms", "GF/s", "sgemm", "wino ms", "GF/s", "sgemm");
		for (int i = 0; i < nl; i++) {
			p2p_conv g;
			(L[i].transposed ? p2p_convt2d_init : p2p_conv2d_init)(&g, L[i].n, L[i].cin,
			        L[i].hw, L[i].hw, L[i].cout, L[i].k, L[i].s, L[i].p);
			if (L[i].cin > 3 && L[i].cout > 3 && p2p_conv_wino_ok(be, &g))
				bench_wino_layer(be, &L[i], peak);
		}
	}
	printf("\n");
	if (wonly)
		return 0;
	bench_g_forward(be, 1);
	if (!quick)
		bench_g_forward(be, 8);
	return 0;
}
