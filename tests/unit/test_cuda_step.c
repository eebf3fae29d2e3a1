/* A whole training step of G and D (with the perceptual loss) on two
 * backends from the same weights and batch, compared.
 *
 * Without a GPU: the "trap" backend below is the CPU backend with every
 * buffer's address moved out of the address space, so that model,
 * checkpoint or step code that reads backend memory from the host (instead
 * of through download/upload) crashes here rather than on a GPU. Its step
 * must give the CPU's bits exactly, with no transfer inside the step but
 * the loss values; its checkpoints must be the CPU's bytes.
 *
 * With a GPU: the same step on the CUDA backend against the CPU at 64
 * (batch 4) and 256 (batch 2), full widths; normwise relative error
 * ||gpu - cpu|| / ||cpu|| of the gradients and of the updated weights of G
 * and D under 1e-4 with TF32 off and under 1e-2 with it on, or under twice
 * the FP32 floor measured in the same run where that is more (gpu_step
 * says why). Each comparison prints its error as a TAP comment. Without a device the GPU
 * tests are reported as skipped. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adam.h"
#include "check.h"
#include "checkpoint.h"
#include "err.h"
#include "layers.h"
#include "models.h"
#include "ops_cuda.h"
#include "rng.h"
#include "step.h"
#include "tensor.h"

#define TOL 1e-4
#define TOL_TF32 1e-2

static const p2p_backend *cpu, *gpu;
/* Under valgrind the trap tests leave VGG16 out of the step (at 32x32 it
 * would take minutes there) and check it alone at 8x8 instead. */
static int light;

/* ---- the trap backend ----
 * Buffers are CPU buffers at an address moved by TRAP_SHIFT: beyond 2^62,
 * not canonical on x86-64 (nor mapped anywhere else), so a host access
 * faults at once. Each op moves its pointers back and calls the CPU's. */

#define TRAP_SHIFT ((uintptr_t)1 << 62)

static struct {
	size_t live, peak;          /* bytes */
	long uploads, downloads, reductions;
} trap_n;

typedef struct { float *p; size_t bytes; } trap_rec;
static trap_rec trap_tab[4096];
static int trap_count;

static float *R(const float *p)             /* backend address -> real one */
{
	return p ? (float *)((uintptr_t)p - TRAP_SHIFT) : NULL;
}

static float *tr_alloc(size_t n)
{
	float *p = cpu->alloc(n);
	if (!p)
		return NULL;
	if (trap_count < (int)(sizeof trap_tab / sizeof *trap_tab))
		trap_tab[trap_count++] = (trap_rec){p, (n ? n : 1) * sizeof(float)};
	trap_n.live += (n ? n : 1) * sizeof(float);
	if (trap_n.live > trap_n.peak)
		trap_n.peak = trap_n.live;
	return (float *)((uintptr_t)p + TRAP_SHIFT);
}

static void tr_free(float *p)
{
	if (!p)
		return;
	float *r = R(p);
	for (int i = 0; i < trap_count; i++)
		if (trap_tab[i].p == r) {
			trap_n.live -= trap_tab[i].bytes;
			trap_tab[i] = trap_tab[--trap_count];
			break;
		}
	cpu->free(r);
}

static int tr_status(void) { return cpu->status ? cpu->status() : 0; }
static void tr_sync(void) { if (cpu->sync) cpu->sync(); }
static void tr_set_threads(int n) { if (cpu->set_threads) cpu->set_threads(n); }
static void tr_zero(float *x, size_t n) { cpu->zero(R(x), n); }
static void tr_fill(float *x, size_t n, float v) { cpu->fill(R(x), n, v); }
static void tr_copy(float *d, const float *s, size_t n) { cpu->copy(R(d), R(s), n); }

static void tr_upload(float *d, const float *h, size_t n)
{
	trap_n.uploads++;
	cpu->upload(R(d), h, n);
}

static void tr_download(float *h, const float *s, size_t n)
{
	trap_n.downloads++;
	cpu->download(h, R(s), n);
}

static void tr_copy2d(float *d, long dld, const float *s, long sld, int rows, long cols,
                      float beta)
{
	cpu->copy2d(R(d), dld, R(s), sld, rows, cols, beta);
}

static void tr_swap01(const float *x, float *y, int a, int b, long p, float beta)
{
	cpu->swap01(R(x), R(y), a, b, p, beta);
}

static void tr_gemm(int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                    const float *b, int ldb, float beta, float *c, int ldc)
{
	cpu->gemm(ta, tb, m, n, k, alpha, R(a), lda, R(b), ldb, beta, R(c), ldc);
}

static void tr_gemm_batched(int ta, int tb, int m, int n, int k, float alpha,
                            const float *a, int lda, long sa, const float *b, int ldb, long sb,
                            float beta, float *c, int ldc, long sc, int batch)
{
	cpu->gemm_batched(ta, tb, m, n, k, alpha, R(a), lda, sa, R(b), ldb, sb, beta, R(c), ldc,
	                  sc, batch);
}

static void tr_im2col(const float *x, int n, int c, int h, int w, int k, int stride, int pad,
                      int oh, int ow, float *col)
{
	cpu->im2col(R(x), n, c, h, w, k, stride, pad, oh, ow, R(col));
}

static void tr_col2im(const float *col, int n, int c, int h, int w, int k, int stride, int pad,
                      int oh, int ow, float *x)
{
	cpu->col2im(R(col), n, c, h, w, k, stride, pad, oh, ow, R(x));
}

/* The CPU's optional ops (chunks of rows, Winograd); `parallel` touches no
 * memory of its own and stays the CPU's. */
static void tr_im2col_rows(const float *x, int c, int h, int w, int k, int stride, int pad,
                           int oh, int ow, int oy0, int oy1, float *col)
{
	cpu->im2col_rows(R(x), c, h, w, k, stride, pad, oh, ow, oy0, oy1, R(col));
}

static void tr_col2im_rows(const float *col, int c, int h, int w, int k, int stride, int pad,
                           int oh, int ow, int oy0, int oy1, float *x)
{
	cpu->col2im_rows(R(col), c, h, w, k, stride, pad, oh, ow, oy0, oy1, R(x));
}

static void tr_wino_in(const float *x, int c, int h, int w, int k, int pad, int t0, int t1,
                       float *v, long ld, int s2)
{
	cpu->wino_in(R(x), c, h, w, k, pad, t0, t1, R(v), ld, s2);
}

static void tr_wino_out(const float *m, long ld, int c, int oh, int ow, int k, int t0, int t1,
                        const float *b, float *y)
{
	cpu->wino_out(R(m), ld, c, oh, ow, k, t0, t1, R(b), R(y));
}

static void tr_wino_out_up(const float *m, long ld, int c, int oh, int ow, int t0, int t1,
                           const float *b, float *y)
{
	cpu->wino_out_up(R(m), ld, c, oh, ow, t0, t1, R(b), R(y));
}

static void tr_wino_weights(const float *w, int cout, int cin, int k, int mode, float *u)
{
	cpu->wino_weights(R(w), cout, cin, k, mode, R(u));
}

static void tr_bias_add(float *y, const float *b, int n, int c, long p)
{
	cpu->bias_add(R(y), R(b), n, c, p);
}

static void tr_bias_grad(float *db, const float *dy, int n, int c, long p)
{
	cpu->bias_grad(R(db), R(dy), n, c, p);
}

static void tr_chan_affine(const float *x, float *y, int n, int c, long p, const float *scale,
                           const float *shift)
{
	cpu->chan_affine(R(x), R(y), n, c, p, R(scale), R(shift));
}

static void tr_chan_affine_bwd(const float *dy, float *dx, int n, int c, long p,
                               const float *scale)
{
	cpu->chan_affine_bwd(R(dy), R(dx), n, c, p, R(scale));
}

static void tr_instnorm_fwd(const float *x, float *y, float *mean, float *rstd, int planes,
                            long p, float eps)
{
	cpu->instnorm_fwd(R(x), R(y), R(mean), R(rstd), planes, p, eps);
}

static void tr_instnorm_bwd(const float *dy, const float *y, const float *rstd, float *dx,
                            int planes, long p)
{
	cpu->instnorm_bwd(R(dy), R(y), R(rstd), R(dx), planes, p);
}

static void tr_leaky_fwd(const float *x, float *y, size_t n, float s)
{
	cpu->leaky_fwd(R(x), R(y), n, s);
}

static void tr_leaky_bwd(const float *y, const float *dy, float *dx, size_t n, float s)
{
	cpu->leaky_bwd(R(y), R(dy), R(dx), n, s);
}

static void tr_tanh_fwd(const float *x, float *y, size_t n) { cpu->tanh_fwd(R(x), R(y), n); }

static void tr_tanh_bwd(const float *y, const float *dy, float *dx, size_t n)
{
	cpu->tanh_bwd(R(y), R(dy), R(dx), n);
}

static void tr_dropout_fwd(const float *x, float *y, size_t n, float p, uint64_t seed,
                           uint64_t counter)
{
	cpu->dropout_fwd(R(x), R(y), n, p, seed, counter);
}

static void tr_dropout_bwd(const float *dy, float *dx, size_t n, float p, uint64_t seed,
                           uint64_t counter)
{
	cpu->dropout_bwd(R(dy), R(dx), n, p, seed, counter);
}

static void tr_maxpool2_fwd(const float *x, float *y, int planes, int h, int w)
{
	cpu->maxpool2_fwd(R(x), R(y), planes, h, w);
}

static void tr_maxpool2_bwd(const float *x, const float *dy, float *dx, int planes, int h, int w)
{
	cpu->maxpool2_bwd(R(x), R(dy), R(dx), planes, h, w);
}

static void tr_scale(float *x, size_t n, float a) { cpu->scale(R(x), n, a); }
static void tr_axpy(float *y, const float *x, size_t n, float a) { cpu->axpy(R(y), R(x), n, a); }

static double tr_sum(const float *x, size_t n)
{
	trap_n.reductions++;
	return cpu->sum(R(x), n);
}

static double tr_mse_const(const float *a, size_t n, float t, float *da, float gs)
{
	trap_n.reductions++;
	return cpu->mse_const(R(a), n, t, R(da), gs);
}

static double tr_mse(const float *a, const float *b, size_t n, float *da, float gs)
{
	trap_n.reductions++;
	return cpu->mse(R(a), R(b), n, R(da), gs);
}

static double tr_l1(const float *a, const float *b, size_t n, float *da, float gs)
{
	trap_n.reductions++;
	return cpu->l1(R(a), R(b), n, R(da), gs);
}

static void tr_adam(float *p, const float *g, float *m, float *v, size_t n, float lr, float b1,
                    float b2, float eps, float wd, long step)
{
	cpu->adam(R(p), R(g), R(m), R(v), n, lr, b1, b2, eps, wd, step);
}

/* The workspace of a backend of its own (conv_ws), as the CUDA backend
 * has it: one growing buffer, grants capped; every grant is checked
 * against the table's contract. */
#define TRAP_WS_CAP 300000
static float *trap_ws;
static size_t trap_ws_n;
static long trap_ws_calls, trap_ws_bad;

static float *tr_conv_ws(size_t need, size_t want, size_t *got)
{
	size_t g = want < TRAP_WS_CAP ? want : TRAP_WS_CAP;
	if (g < need)
		g = need;
	trap_ws_calls++;
	trap_ws_bad += !(need <= g && g <= want);
	if (g > trap_ws_n) {
		tr_free(trap_ws);
		trap_ws = tr_alloc(g);
		trap_ws_n = trap_ws ? g : 0;
	}
	*got = g;
	return trap_ws;
}

static p2p_backend trap, trap_wide;

static void trap_init(void)
{
	trap = *cpu;            /* whatever the table gains later starts as the CPU's */
	trap.name = "trap";
	trap.init = NULL;
	trap.set_threads = tr_set_threads;
	trap.status = tr_status;
	trap.sync = tr_sync;
	trap.alloc = tr_alloc;
	trap.free = tr_free;
	trap.zero = tr_zero;
	trap.fill = tr_fill;
	trap.copy = tr_copy;
	trap.upload = tr_upload;
	trap.download = tr_download;
	trap.copy2d = tr_copy2d;
	trap.swap01 = tr_swap01;
	trap.gemm = tr_gemm;
	trap.gemm_batched = tr_gemm_batched;
	trap.im2col = tr_im2col;
	trap.col2im = tr_col2im;
	trap.bias_add = tr_bias_add;
	trap.bias_grad = tr_bias_grad;
	trap.chan_affine = tr_chan_affine;
	trap.chan_affine_bwd = tr_chan_affine_bwd;
	trap.instnorm_fwd = tr_instnorm_fwd;
	trap.instnorm_bwd = tr_instnorm_bwd;
	trap.leaky_fwd = tr_leaky_fwd;
	trap.leaky_bwd = tr_leaky_bwd;
	trap.tanh_fwd = tr_tanh_fwd;
	trap.tanh_bwd = tr_tanh_bwd;
	trap.dropout_fwd = tr_dropout_fwd;
	trap.dropout_bwd = tr_dropout_bwd;
	trap.maxpool2_fwd = tr_maxpool2_fwd;
	trap.maxpool2_bwd = tr_maxpool2_bwd;
	trap.scale = tr_scale;
	trap.axpy = tr_axpy;
	trap.sum = tr_sum;
	trap.mse_const = tr_mse_const;
	trap.mse = tr_mse;
	trap.l1 = tr_l1;
	trap.adam = tr_adam;
	trap.im2col_rows = cpu->im2col_rows ? tr_im2col_rows : NULL;
	trap.col2im_rows = cpu->col2im_rows ? tr_col2im_rows : NULL;
	trap.wino_in = cpu->wino_in ? tr_wino_in : NULL;
	trap.wino_out = cpu->wino_out ? tr_wino_out : NULL;
	trap.wino_out_up = cpu->wino_out_up ? tr_wino_out_up : NULL;
	trap.wino_weights = cpu->wino_weights ? tr_wino_weights : NULL;
	trap_wide = trap;
	trap_wide.name = "trap-wide";
	trap_wide.conv_chunk_cols = 1 << 20;
	trap_wide.conv_ws = tr_conv_ws;
}

/* ---- one training step: lib/step's, which p2p-train runs ---- */

#define NLOSS P2P_NLOSS
static const char *const loss_name[NLOSS] = {"loss_D", "loss_G", "loss_G_GAN", "loss_G_L1",
                                             "loss_G_perc"};

#define LAMBDA_L1 150.0f
#define LAMBDA_PERC 2.0f
#define SEED_DROP 0x5eedULL

typedef struct {
	const p2p_backend *be;
	int S, n;
	size_t ss;
	p2p_unet *G;
	p2p_patchgan *D;
	p2p_vgg *V;                 /* NULL: no perceptual loss */
	p2p_step step;              /* its buffers, ga and da */
	float *a, *b;
	double loss[NLOSS];
} stepper;

static float *must(float *p)
{
	if (!p) {
		printf("# out of backend memory: %s\n", p2p_errmsg());
		exit(1);
	}
	return p;
}

/* VGG16's weights He-scaled, as trained ones are, so that the perceptual
 * loss and its gradient are of their usual size (0.02 would all but zero
 * relu3_3); biases small. */
static void vgg_he(p2p_vgg *v)
{
	p2p_params *ps = p2p_vgg_params(v);
	float *h = calloc(ps->total, sizeof *h);
	p2p_rng r;
	p2p_rng_seed(&r, 16);
	for (int i = 0; i < ps->count; i++) {
		float *d = h + ps->offset[i];
		double std = ps->ndim[i] == 4 ? sqrt(2.0 / (ps->shape[i][1] * 9)) : 0.01;
		for (size_t j = 0; j < ps->numel[i]; j++)
			d[j] = (float)(ps->ndim[i] == 4 ? std * p2p_rng_normal(&r)
			                                : std * (2 * p2p_rng_uniform(&r) - 1));
	}
	ps->be->upload(ps->data, h, ps->total);
	free(h);
}

/* G, D, VGG (random) and the buffers for a batch of n at S on be, from
 * the seeds every backend shares, the batch uploaded from ha, hb. */
static void step_new(stepper *st, const p2p_backend *be, int S, int n, int ngf, int ndf,
                     int perc, const float *ha, const float *hb)
{
	memset(st, 0, sizeof *st);
	st->be = be, st->S = S, st->n = n;
	st->ss = (size_t)S * S;
	p2p_unet_cfg gc = p2p_unet_default(S);
	p2p_patchgan_cfg dc = p2p_patchgan_default(S);
	gc.ngf = ngf, dc.ndf = ndf;
	st->G = p2p_unet_new(be, &gc, n);
	st->D = p2p_patchgan_new(be, &dc, 2 * n);
	st->V = perc ? p2p_vgg_random(be, S, n, 7) : NULL;
	if (!st->G || !st->D || (perc && !st->V)) {
		printf("# models: %s\n", p2p_errmsg());
		exit(1);
	}
	if (st->V)
		vgg_he(st->V);
	p2p_rng r;
	p2p_rng_seed2(&r, 42, 1);
	p2p_params_init(p2p_unet_params(st->G), &r, 0.02f);
	p2p_rng_seed2(&r, 42, 2);
	p2p_params_init(p2p_patchgan_params(st->D), &r, 0.02f);
	size_t ss = st->ss;
	st->a = must(be->alloc(n * ss));
	st->b = must(be->alloc(n * 3 * ss));
	be->upload(st->a, ha, n * ss);
	be->upload(st->b, hb, n * 3 * ss);
	if (p2p_step_init(&st->step, be, st->G, st->D, st->V, n, LAMBDA_L1, LAMBDA_PERC, 2e-4f,
	                  1e-4f, 0.5f, 0.999f)) {
		printf("# out of backend memory: %s\n", p2p_errmsg());
		exit(1);
	}
}

static void step_free(stepper *st)
{
	st->be->free(st->a);
	st->be->free(st->b);
	p2p_step_free(&st->step);
	p2p_unet_free(st->G);
	p2p_patchgan_free(st->D);
	p2p_vgg_free(st->V);
}

static const float *ok(const float *p)
{
	CHECKF(p != NULL, "forward: %s", p2p_errmsg());
	if (!p)
		exit(1);
	return p;
}

/* D then G on the batch, dropout on; the losses into st->loss. */
static void step_run(stepper *st, uint64_t counter)
{
	const p2p_backend *be = st->be;
	CHECKF(p2p_step_run(&st->step, st->a, st->b, st->n, SEED_DROP, counter, st->step.ga.lr,
	                    st->step.da.lr, st->loss) == 0, "step: %s", p2p_errmsg());
	int s = be->status ? be->status() : 0;
	CHECKF(s == 0, "status after the step: %s", p2p_errmsg());
}

/* ---- comparisons ---- */

static float *host_of(const p2p_backend *be, const float *p, size_t n)
{
	float *h = malloc((n ? n : 1) * sizeof *h);
	if (!h)
		exit(1);
	be->download(h, p, n);
	return h;
}

static double nerr(const float *got, const float *ref, size_t n)
{
	double e = 0, r = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)got[i] - ref[i];
		e += d * d;
		r += (double)ref[i] * ref[i];
	}
	return e == 0 ? 0 : sqrt(e) / sqrt(r > 0 ? r : 1);
}

/* Normwise error of one flat buffer of two parameter sets (same layout),
 * and its worst tensor. */
static double buf_err(const p2p_params *got, const float *gbuf, const p2p_params *ref,
                      const float *rbuf, int *wi, double *worst)
{
	float *g = host_of(got->be, gbuf, got->total), *r = host_of(ref->be, rbuf, ref->total);
	double e = nerr(g, r, ref->total);
	*worst = -1, *wi = 0;
	for (int i = 0; i < ref->count; i++) {
		double ei = nerr(g + ref->offset[i], r + ref->offset[i], ref->numel[i]);
		if (ei > *worst)
			*worst = ei, *wi = i;
	}
	free(g);
	free(r);
	return e;
}

/* The limit of one comparison: tol, or where a floor run is given, twice
 * the floor's error if that is more (see gpu_step). */
static double limit_of(double tol, double floor)
{
	return floor >= 0 && 2 * floor > tol ? 2 * floor : tol;
}

/* One flat buffer: the normwise error against the limit (tol 0: the same
 * bits), and the worst tensor, for reading. fl: the floor run's buffer
 * (NULL: none). */
static void cmp_buf(const char *what, const p2p_params *got, const float *gbuf,
                    const p2p_params *ref, const float *rbuf, const p2p_params *flp,
                    const float *fl, double tol)
{
	if (tol > 0) {
		int wi, fi;
		double worst, fw;
		double e = buf_err(got, gbuf, ref, rbuf, &wi, &worst);
		double f = fl ? buf_err(flp, fl, ref, rbuf, &fi, &fw) : -1, lim = limit_of(tol, f);
		printf("#   %-24s error %.2e (limit %.1e", what, e, lim);
		if (f >= 0)
			printf("; floor %.2e", f);
		printf("); worst tensor %s %.2e\n", ref->name[wi], worst);
		CHECKF(e < lim, "%s: normwise error %.3g", what, e);
		return;
	}
	float *g = host_of(got->be, gbuf, got->total), *r = host_of(ref->be, rbuf, ref->total);
	size_t bad = 0;
	for (size_t i = 0; i < ref->total; i++)
		bad += memcmp(&g[i], &r[i], sizeof *g) != 0;
	printf("#   %-24s %s (%zu of %zu differ)\n", what, bad ? "DIFFER" : "identical", bad,
	       ref->total);
	CHECKF(bad == 0, "%s: %zu of %zu floats differ", what, bad, ref->total);
	free(g);
	free(r);
}

/* The weights after Adam. Its first step moves each weight by about
 * lr * g / (|g| + 1e-8): where the true gradient is 0, g is rounding noise
 * and the move is +-lr on one backend, -+lr on the other. That is so of the
 * biases of the convolutions that InstanceNorm follows (the norm removes
 * any constant a bias adds): G's down.1 .. down.(k-2) and up.0 .. up.(k-2),
 * D's conv.1 .. conv.3. Their weights are left out of the comparison (and
 * reported); their gradients are compared with the rest. Exact comparisons
 * (tol 0) take all. */
static int bias_under_norm(const char *name, int k)
{
	int i;
	char kind[8], tail[8];
	if (sscanf(name, "%7[a-z].%d.%7s", kind, &i, tail) != 3 || strcmp(tail, "bias"))
		return 0;
	if (!strcmp(kind, "down"))
		return i >= 1 && i <= k - 2;
	if (!strcmp(kind, "up"))
		return i <= k - 2;
	return !strcmp(kind, "conv") && i >= 1 && i <= 3;
}

/* Normwise error of the weights, leaving out the biases under a norm
 * (*left: how many), and with them (*all). */
static double weights_err(const p2p_params *got, const p2p_params *ref, int k, size_t *left,
                          double *all)
{
	size_t n = ref->total;
	float *g = host_of(got->be, got->data, n), *r = host_of(ref->be, ref->data, n);
	double e = 0, w = 0, eall = 0;
	*left = 0;
	for (int t = 0; t < ref->count; t++) {
		int skip = bias_under_norm(ref->name[t], k);
		*left += skip ? ref->numel[t] : 0;
		for (size_t i = ref->offset[t]; i < ref->offset[t] + ref->numel[t]; i++) {
			double d = (double)g[i] - r[i];
			eall += d * d;
			w += (double)r[i] * r[i];
			e += skip ? 0 : d * d;
		}
	}
	free(g), free(r);
	*all = sqrt(eall) / sqrt(w > 0 ? w : 1);
	return sqrt(e) / sqrt(w > 0 ? w : 1);
}

static void cmp_weights(const char *what, const p2p_params *got, const p2p_params *ref,
                        const p2p_params *flp, int k, double tol)
{
	if (tol == 0) {
		cmp_buf(what, got, got->data, ref, ref->data, NULL, NULL, 0);
		return;
	}
	size_t left;
	double eall, fall, e = weights_err(got, ref, k, &left, &eall);
	double f = flp ? weights_err(flp, ref, k, &left, &fall) : -1, lim = limit_of(tol, f);
	printf("#   %-24s error %.2e (limit %.1e", what, e, lim);
	if (f >= 0)
		printf("; floor %.2e", f);
	printf("); %zu biases under a norm left out (error with them %.2e)\n", left, eall);
	CHECKF(e < lim, "%s: normwise error %.3g", what, e);
}

/* got against ref; fl (NULL: none) is ref's step again from G's weights
 * moved by one ulp each, whose distance from ref sets the floor. */
static void cmp_steps(const char *tag, const stepper *got, const stepper *ref,
                      const stepper *fl, double tol)
{
	const p2p_params *gg = p2p_unet_params(got->G), *gr = p2p_unet_params(ref->G);
	const p2p_params *dg = p2p_patchgan_params(got->D), *dr = p2p_patchgan_params(ref->D);
	const p2p_params *gf = fl ? p2p_unet_params(fl->G) : NULL;
	const p2p_params *df = fl ? p2p_patchgan_params(fl->D) : NULL;
	char what[64];
	snprintf(what, sizeof what, "%s G gradient", tag);
	cmp_buf(what, gg, gg->grad, gr, gr->grad, gf, gf ? gf->grad : NULL, tol);
	snprintf(what, sizeof what, "%s D gradient", tag);
	cmp_buf(what, dg, dg->grad, dr, dr->grad, df, df ? df->grad : NULL, tol);
	int k = 0;
	while ((1 << k) < ref->S)
		k++;
	snprintf(what, sizeof what, "%s G weights", tag);
	cmp_weights(what, gg, gr, gf, k, tol);
	snprintf(what, sizeof what, "%s D weights", tag);
	cmp_weights(what, dg, dr, df, k, tol);
	snprintf(what, sizeof what, "%s G Adam v", tag);
	cmp_buf(what, gg, gg->v, gr, gr->v, gf, gf ? gf->v : NULL, tol);
	for (int i = 0; i < NLOSS; i++) {
		double g = got->loss[i], r = ref->loss[i];
		double e = fabs(g - r) / (fabs(r) > 1e-30 ? fabs(r) : 1);
		double f = fl ? fabs(fl->loss[i] - r) / (fabs(r) > 1e-30 ? fabs(r) : 1) : -1;
		double lim = limit_of(tol, f);
		printf("#   %s %-12s %.9g vs %.9g, error %.2e\n", tag, loss_name[i], g, r, e);
		if (tol > 0)
			CHECKF(e < lim, "%s %s: %.9g vs %.9g", tag, loss_name[i], g, r);
		else
			CHECKF(g == r, "%s %s: %.17g vs %.17g", tag, loss_name[i], g, r);
	}
}

/* A batch in [-1, 1]: heatmap-like A, photo-like B, seeded. */
static void make_batch(int S, int n, float **ha, float **hb)
{
	size_t ss = (size_t)S * S;
	*ha = malloc(n * ss * sizeof **ha);
	*hb = malloc(n * 3 * ss * sizeof **hb);
	p2p_rng r;
	p2p_rng_seed(&r, 99);
	for (size_t i = 0; i < n * ss; i++)
		(*ha)[i] = (float)(2 * p2p_rng_uniform(&r) - 1);
	for (size_t i = 0; i < n * 3 * ss; i++)
		(*hb)[i] = (float)(2 * p2p_rng_uniform(&r) - 1);
}

/* ---- without a GPU: the trap backend ---- */

#define TS 32           /* small, for valgrind */
#define TN 2

static void test_trap_step(void)
{
	float *ha, *hb;
	make_batch(TS, TN, &ha, &hb);
	stepper c, t;
	step_new(&c, cpu, TS, TN, 8, 8, !light, ha, hb);
	step_new(&t, &trap, TS, TN, 8, 8, !light, ha, hb);
	trap_n.uploads = trap_n.downloads = trap_n.reductions = 0;
	step_run(&c, 1000);
	step_run(&t, 1000);
	/* inside a step: no transfer at all, and one reduction per loss */
	CHECKF(trap_n.uploads == 0 && trap_n.downloads == 0, "%ld uploads, %ld downloads in a step",
	       trap_n.uploads, trap_n.downloads);
	long want = light ? 4 : 5;
	CHECKF(trap_n.reductions == want, "%ld reductions in a step (%ld losses)",
	       trap_n.reductions, want);
	printf("#   trap backend: peak %.1f MiB for the models at %d, batch %d\n",
	       trap_n.peak / 1048576.0, TS, TN);
	cmp_steps("trap", &t, &c, NULL, 0);
	if (!light) {
		/* a second step, another counter: still the same bits */
		step_run(&c, 2000);
		step_run(&t, 2000);
		cmp_steps("trap step 2", &t, &c, NULL, 0);
	}
	step_free(&c);
	step_free(&t);
	CHECKF(trap_n.live == 0, "%zu bytes of trap memory left", trap_n.live);
	free(ha);
	free(hb);
}

static int same_file(const char *a, const char *b)
{
	FILE *f = fopen(a, "rb"), *g = fopen(b, "rb");
	int same = f && g;
	while (same) {
		int x = fgetc(f), y = fgetc(g);
		same = x == y;
		if (x == EOF || y == EOF)
			break;
	}
	if (f)
		fclose(f);
	if (g)
		fclose(g);
	return same;
}

/* Adam's moments of a set: seeded values, as after some steps (the
 * alignment gaps, which no file holds, stay zero). */
static void adam_fill(p2p_params *ps, int seed)
{
	float *h = calloc(ps->total, sizeof *h);
	p2p_rng r;
	p2p_rng_seed(&r, 50 + seed);
	for (int k = 0; k < 2; k++) {
		for (int t = 0; t < ps->count; t++)
			for (size_t i = 0; i < ps->numel[t]; i++)
				h[ps->offset[t] + i] = (float)p2p_rng_uniform(&r) * (k ? 1e-6f : 1e-3f);
		ps->be->upload(k ? ps->v : ps->m, h, ps->total);
	}
	free(h);
}

/* Wide chunks in the backend's own workspace (conv_chunk_cols, conv_ws):
 * the same step up to rounding (GEMMs of other shapes, dw summed over
 * other chunks). */
static void test_trap_wide_chunks(void)
{
	float *ha, *hb;
	make_batch(TS, 3, &ha, &hb);
	stepper c, t;
	step_new(&c, cpu, TS, 3, 8, 8, !light, ha, hb);
	step_new(&t, &trap_wide, TS, 3, 8, 8, !light, ha, hb);
	step_run(&c, 3);
	step_run(&t, 3);
	CHECK(trap_ws_calls > 0 && trap_ws_bad == 0);
	cmp_steps("wide", &t, &c, NULL, 1e-5);
	step_free(&c);
	step_free(&t);
	tr_free(trap_ws);
	trap_ws = NULL, trap_ws_n = 0;
	CHECKF(trap_n.live == 0, "%zu bytes of trap memory left", trap_n.live);
	free(ha);
	free(hb);
}

/* Checkpoints written from trap memory are the CPU's bytes; restored into
 * trap memory they give the CPU's buffers back. */
static void test_trap_checkpoint(void)
{
	float *ha, *hb;
	make_batch(TS, TN, &ha, &hb);
	stepper c, t;
	step_new(&c, cpu, TS, TN, 8, 8, 0, ha, hb);
	step_new(&t, &trap, TS, TN, 8, 8, 0, ha, hb);
	p2p_params *sets[4] = {p2p_unet_params(c.G), p2p_unet_params(t.G),
	                       p2p_patchgan_params(c.D), p2p_patchgan_params(t.D)};
	for (int i = 0; i < 4; i++)
		adam_fill(sets[i], i / 2);
	c.step.ga.step = t.step.ga.step = 3;
	c.step.da.step = t.step.da.step = 4;
	char dir[] = "/tmp/p2p-cuda-step-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char pc[64], pt[64], gc[64], gt[64];
	snprintf(pc, sizeof pc, "%s/cpu.safetensors", dir);
	snprintf(pt, sizeof pt, "%s/trap.safetensors", dir);
	snprintf(gc, sizeof gc, "%s/gcpu.safetensors", dir);
	snprintf(gt, sizeof gt, "%s/gtrap.safetensors", dir);
	p2p_ckpt ck = {.g = *p2p_unet_config(c.G), .d = p2p_patchgan_default(TS), .epoch = 1,
	               .step = 1, .n_train = TN, .best_val_l1 = 0.5, .seed = 42,
	               .config = "{}"};
	ck.d.ndf = 8;
	CHECK(p2p_ckpt_save(pc, &ck, p2p_unet_params(c.G), &c.step.ga, p2p_patchgan_params(c.D),
	                    &c.step.da) == 0);
	CHECK(p2p_ckpt_save(pt, &ck, p2p_unet_params(t.G), &t.step.ga, p2p_patchgan_params(t.D),
	                    &t.step.da) == 0);
	CHECKF(same_file(pc, pt), "%s and %s differ", pc, pt);
	CHECK(p2p_ckpt_save_g(gc, &ck.g, p2p_unet_params(c.G), 1, 0.5) == 0);
	CHECK(p2p_ckpt_save_g(gt, &ck.g, p2p_unet_params(t.G), 1, 0.5) == 0);
	CHECKF(same_file(gc, gt), "%s and %s differ", gc, gt);
	/* restore into fresh trap models */
	stepper r;
	step_new(&r, &trap, TS, TN, 8, 8, 0, ha, hb);
	p2p_ckpt old;
	p2p_st *st = p2p_ckpt_open(pc, &old);
	CHECKF(st != NULL, "%s", p2p_errmsg());
	if (st) {
		CHECK(p2p_ckpt_restore(st, pc, p2p_unet_params(r.G), &r.step.ga, p2p_patchgan_params(r.D),
		                       &r.step.da) == 0);
		p2p_st_free(st);
		p2p_ckpt_clear(&old);
		const p2p_params *a = p2p_unet_params(r.G), *b = p2p_unet_params(c.G);
		cmp_buf("restored G weights", a, a->data, b, b->data, NULL, NULL, 0);
		cmp_buf("restored G Adam m", a, a->m, b, b->m, NULL, NULL, 0);
		const p2p_params *x = p2p_patchgan_params(r.D), *y = p2p_patchgan_params(c.D);
		cmp_buf("restored D Adam v", x, x->v, y, y->v, NULL, NULL, 0);
		CHECK(r.step.ga.step == c.step.ga.step && r.step.da.step == c.step.da.step);
	}
	unlink(pc), unlink(pt), unlink(gc), unlink(gt), rmdir(dir);
	step_free(&c);
	step_free(&t);
	step_free(&r);
	free(ha);
	free(hb);
}

/* p2p-gen's path: a batch of per-sample counters, and plain inference. */
static void test_trap_generate(void)
{
	float *ha, *hb;
	make_batch(TS, 3, &ha, &hb);
	stepper c, t;
	step_new(&c, cpu, TS, 3, 8, 8, 0, ha, hb);
	step_new(&t, &trap, TS, 3, 8, 8, 0, ha, hb);
	uint64_t counters[3] = {77, 5, 1u << 30};
	size_t ny = 3 * 3 * (size_t)TS * TS;
	for (int stoch = 0; stoch < 2; stoch++) {
		const float *yc = stoch ? p2p_unet_forward_each(c.G, c.a, 3, 9, counters)
		                        : p2p_unet_forward(c.G, c.a, 3, 0, 0, 0);
		const float *yt = stoch ? p2p_unet_forward_each(t.G, t.a, 3, 9, counters)
		                        : p2p_unet_forward(t.G, t.a, 3, 0, 0, 0);
		float *hc = host_of(cpu, ok(yc), ny), *ht = host_of(&trap, ok(yt), ny);
		CHECKF(memcmp(hc, ht, ny * sizeof *hc) == 0, "%s output differs",
		       stoch ? "stochastic" : "plain");
		free(hc);
		free(ht);
	}
	step_free(&c);
	step_free(&t);
	free(ha);
	free(hb);
}

/* VGG16 alone, forward and backward, on trap memory: the CPU's bits. */
static void test_trap_vgg(void)
{
	int S = light ? 8 : 32, n = 2;
	size_t nx = (size_t)n * 3 * S * S, nf = (size_t)n * 256 * (S / 4) * (S / 4);
	p2p_vgg *vc = p2p_vgg_random(cpu, S, n, 3), *vt = p2p_vgg_random(&trap, S, n, 3);
	CHECK(vc && vt);
	if (!vc || !vt)
		return;
	vgg_he(vc);
	vgg_he(vt);
	float *hx, *hf;
	make_batch(S, n, &hf, &hx);
	float *hd = malloc(nf * sizeof *hd);
	for (size_t i = 0; i < nf; i++)
		hd[i] = hx[i % nx] * 1e-3f;
	const p2p_backend *bes[2] = {cpu, &trap};
	float *out[2], *dx[2];
	for (int k = 0; k < 2; k++) {
		const p2p_backend *be = bes[k];
		p2p_vgg *v = k ? vt : vc;
		float *x = must(be->alloc(nx)), *d = must(be->alloc(nf)), *g = must(be->alloc(nx));
		be->upload(x, hx, nx);
		be->upload(d, hd, nf);
		be->zero(g, nx);
		out[k] = host_of(be, ok(p2p_vgg_forward(v, x, n)), nf);
		CHECK(p2p_vgg_backward(v, d, g) == 0);
		dx[k] = host_of(be, g, nx);
		be->free(x), be->free(d), be->free(g);
	}
	CHECK(memcmp(out[0], out[1], nf * sizeof(float)) == 0);
	CHECK(memcmp(dx[0], dx[1], nx * sizeof(float)) == 0);
	for (int k = 0; k < 2; k++)
		free(out[k]), free(dx[k]);
	free(hx), free(hf), free(hd);
	p2p_vgg_free(vc);
	p2p_vgg_free(vt);
}

/* ---- with a GPU ---- */

/* G's weights moved by one ulp each, up or down at random (seeded); with
 * tf32, rounded to TF32's 10-bit mantissa instead, as its GEMMs round them. */
static void nudge_g(stepper *st, int tf32)
{
	p2p_params *gp = p2p_unet_params(st->G);
	float *h = host_of(st->be, gp->data, gp->total);
	p2p_rng r;
	p2p_rng_seed(&r, 99);
	for (size_t i = 0; i < gp->total; i++) {
		if (tf32) {
			uint32_t u;
			memcpy(&u, &h[i], sizeof u);
			u = (u + 0x1000u) & ~0x1fffu;   /* to nearest, ties away */
			memcpy(&h[i], &u, sizeof u);
		} else {
			h[i] = nextafterf(h[i], p2p_rng_uniform(&r) < 0.5 ? -INFINITY : INFINITY);
		}
	}
	st->be->upload(gp->data, h, gp->total);
	free(h);
}

/* The CPU's step once, the GPU's with TF32 off and on against it.
 *
 * The floor: the CPU's own step again from G's weights moved by one ulp
 * each (for TF32: rounded to its precision). A whole step is
 * ill-conditioned in FP32: on the development CPU one ulp of G's weights
 * moves G's gradient by 1.3e-2 at 64 and 7.8e-3 at 256, normwise (1.1e-2 at
 * 64 without the perceptual loss), and D's by 2.6e-3 and 2.2e-4, far more
 * than 1e-4; the worst tensors are the biases of convolutions under
 * InstanceNorm, whose true gradient is 0. No two implementations of the
 * same precision can agree closer than such a floor, so each comparison's
 * limit is 1e-4 (1e-2 with TF32) or twice the floor's error, whichever is
 * more. */
static void gpu_step(int S, int n)
{
	float *ha, *hb;
	make_batch(S, n, &ha, &hb);
	stepper c, f, g;
	step_new(&c, cpu, S, n, 64, 64, 1, ha, hb);
	step_run(&c, 12345);
	for (int tf32 = 0; tf32 < 2; tf32++) {
		step_new(&f, cpu, S, n, 64, 64, 1, ha, hb);
		nudge_g(&f, tf32);
		step_run(&f, 12345);
		p2p_cuda_set_tf32(tf32);
		step_new(&g, gpu, S, n, 64, 64, 1, ha, hb);
		step_run(&g, 12345);
		char tag[32];
		snprintf(tag, sizeof tag, "%d b%d %s", S, n, tf32 ? "TF32" : "FP32");
		cmp_steps(tag, &g, &c, &f, tf32 ? TOL_TF32 : TOL);
		step_free(&g);
		step_free(&f);
	}
	p2p_cuda_set_tf32(1);
	step_free(&c);
	free(ha);
	free(hb);
}

static void test_gpu_step_64(void) { gpu_step(64, 4); }
static void test_gpu_step_256(void) { gpu_step(256, 2); }

int main(void)
{
	cpu = p2p_backend_get("cpu");
	trap_init();
	const char *why = "no CUDA device";
#ifdef P2P_CUDA
	if (getenv("VALGRIND") && *getenv("VALGRIND")) {
		why = "VALGRIND set";   /* valgrind cannot see into the GPU */
		light = 1;
	}
	else if (!(gpu = p2p_backend_get("cuda")))
		printf("# %s\n", p2p_errmsg());
#else
	why = "no CUDA backend in this build";
#endif
	if (gpu)
		printf("# device: %s\n", p2p_cuda_device_name());
	RUN(test_trap_step);
	RUN(test_trap_wide_chunks);
	RUN(test_trap_checkpoint);
	RUN(test_trap_generate);
	RUN(test_trap_vgg);
#define GPU_TEST(fn) do { if (gpu) RUN(fn); else SKIP(fn, why); } while (0)
	GPU_TEST(test_gpu_step_64);
	GPU_TEST(test_gpu_step_256);
	return CHECK_DONE();
}
