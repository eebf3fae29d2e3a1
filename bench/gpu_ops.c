/* gpu_ops: time the backend's ops on the layer shapes of the reference
 * configuration (256x256, batch 24): every convolution of G, D and
 * VGG16[:16] forward and backward, SGEMM with and without TF32, and the
 * memory-bound ops; then the convolution time of one training step, an
 * upper bound on training images/s before any other op. One table on
 * stdout; numbers, not a test.
 *
 *   gpu_ops [--device cuda|cpu] [--size 256] [--batch 24] [--iters 5] [--no-tf32] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "err.h"
#include "layers.h"
#include "models.h"
#include "ops_cuda.h"
#include "rng.h"
#include "tensor.h"

typedef struct {
	const char *device;
	int size, batch, iters, tf32;
} options;

static const p2p_backend *be;
static options opt;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *balloc(size_t n)
{
	float *p = be->alloc(n);
	if (!p)
		p2p_die_lib();
	return p;
}

/* Uniform-ish values without a host buffer: fill, then a dropout mask. */
static float *brand(size_t n)
{
	float *p = balloc(n);
	be->fill(p, n, 0.5f);
	be->dropout_fwd(p, p, n, 0.5f, 7, n);
	return p;
}

static void check_status(void)
{
	if (be->status() != 0)
		p2p_die_lib();
}

/* ---- convolutions ---- */

typedef struct {
	const char *name;
	int transposed, cin, cout, h, k, stride, pad;
	int need_dw;                /* VGG is frozen: dx only */
} layer;

typedef struct { double fwd, bwd, flops; } timing;

static float *ws;
static size_t ws_n;

static timing time_layer(const layer *l)
{
	p2p_conv g;
	int rc = l->transposed
	         ? p2p_convt2d_init(&g, opt.batch, l->cin, l->h, l->h, l->cout, l->k, l->stride, l->pad)
	         : p2p_conv2d_init(&g, opt.batch, l->cin, l->h, l->h, l->cout, l->k, l->stride, l->pad);
	if (rc)
		p2p_die_lib();
	size_t nx = (size_t)opt.batch * l->cin * l->h * l->h;
	size_t ny = (size_t)opt.batch * l->cout * g.oh * g.ow, nw = (size_t)l->cin * l->cout * l->k * l->k;
	float *x = brand(nx), *y = balloc(ny), *w = brand(nw), *b = brand(l->cout);
	float *dy = brand(ny), *dx = balloc(nx), *dw = balloc(nw), *db = balloc(l->cout);
	be->zero(dx, nx), be->zero(dw, nw), be->zero(db, l->cout);
	timing t = {0, 0, (double)p2p_conv_flops(&g)};
	for (int it = -1; it < opt.iters; it++) {     /* one warm-up round */
		be->sync();
		double t0 = now();
		if (l->transposed)
			rc = p2p_convt2d_forward(be, &g, y, x, w, b, ws, ws_n);
		else
			rc = p2p_conv2d_forward(be, &g, y, x, w, b, ws, ws_n);
		be->sync();
		double t1 = now();
		float *gw = l->need_dw ? dw : NULL, *gb = l->need_dw ? db : NULL;
		if (l->transposed)
			rc |= p2p_convt2d_backward(be, &g, dx, gw, gb, dy, x, w, ws, ws_n);
		else
			rc |= p2p_conv2d_backward(be, &g, dx, gw, gb, dy, x, w, ws, ws_n);
		be->sync();
		double t2 = now();
		if (rc)
			p2p_die_lib();
		if (it >= 0)
			t.fwd += t1 - t0, t.bwd += t2 - t1;
	}
	check_status();
	t.fwd /= opt.iters, t.bwd /= opt.iters;
	be->free(x), be->free(y), be->free(w), be->free(b);
	be->free(dy), be->free(dx), be->free(dw), be->free(db);
	return t;
}

/* The three networks' convolutions at size S (DESIGN.md, "The model"). */
static int net_layers(layer *out, int which)
{
	int s = opt.size, n = 0, levels = 0;
	while ((1 << levels) < s)
		levels++;
	static char names[64][24];
	if (which == 0) {           /* G: U-Net, ngf 64 */
		int ch[16];
		for (int i = 0; i < levels; i++)
			ch[i] = 64 * (i < 3 ? 1 << i : 8);
		for (int i = 0; i < levels; i++) {
			snprintf(names[n], sizeof names[n], "G down.%d", i);
			out[n] = (layer){names[n], 0, i ? ch[i - 1] : 1, ch[i], s >> i, 4, 2, 1, 1};
			n++;
		}
		for (int i = levels - 1; i >= 0; i--) {
			snprintf(names[n], sizeof names[n], "G up.%d", i);
			int cin = i == levels - 1 ? ch[i] : 2 * ch[i], cout = i ? ch[i - 1] : 3;
			out[n] = (layer){names[n], 1, cin, cout, s >> (i + 1), 4, 2, 1, 1};
			n++;
		}
	} else if (which == 1) {    /* D: PatchGAN, ndf 64 */
		int cin[] = {4, 64, 128, 256, 512}, cout[] = {64, 128, 256, 512, 1};
		int st[] = {2, 2, 2, 1, 1}, h = s;
		for (int i = 0; i < 5; i++) {
			snprintf(names[32 + i], sizeof names[32 + i], "D conv.%d", i);
			out[n++] = (layer){names[32 + i], 0, cin[i], cout[i], h, 4, st[i], 1, 1};
			h = st[i] == 2 ? h / 2 : h - 1;
		}
	} else {                    /* VGG16 features[:16], frozen */
		int cin[] = {3, 64, 64, 128, 128, 256, 256}, cout[] = {64, 64, 128, 128, 256, 256, 256};
		int idx[] = {0, 2, 5, 7, 10, 12, 14}, h[] = {s, s, s / 2, s / 2, s / 4, s / 4, s / 4};
		for (int i = 0; i < 7; i++) {
			snprintf(names[40 + i], sizeof names[40 + i], "VGG features.%d", idx[i]);
			out[n++] = (layer){names[40 + i], 0, cin[i], cout[i], h[i], 3, 1, 1, 0};
		}
	}
	return n;
}

static size_t layer_ws(const layer *l)
{
	p2p_conv g;
	int rc = l->transposed
	         ? p2p_convt2d_init(&g, opt.batch, l->cin, l->h, l->h, l->cout, l->k, l->stride, l->pad)
	         : p2p_conv2d_init(&g, opt.batch, l->cin, l->h, l->h, l->cout, l->k, l->stride, l->pad);
	return rc ? 0 : p2p_conv_ws(&g);
}

/* Per network: forward and backward totals in seconds. */
static void bench_net(int which, double *fwd, double *bwd)
{
	layer ls[64];
	int n = net_layers(ls, which);
	*fwd = *bwd = 0;
	for (int i = 0; i < n; i++) {
		timing t = time_layer(&ls[i]);
		double bflops = t.flops * (ls[i].need_dw ? 2 : 1);
		printf("%-18s %5d->%-5d %4dx%-4d %9.3f %9.3f %8.2f %8.2f\n", ls[i].name,
		       ls[i].cin, ls[i].cout, ls[i].h, ls[i].h, t.fwd * 1e3, t.bwd * 1e3,
		       t.flops / t.fwd * 1e-12, bflops / t.bwd * 1e-12);
		*fwd += t.fwd, *bwd += t.bwd;
	}
	printf("%-18s %22s %9.3f %9.3f\n", which == 0 ? "G total" : which == 1 ? "D total" : "VGG total",
	       "", *fwd * 1e3, *bwd * 1e3);
}

/* ---- SGEMM and memory-bound ops ---- */

static void bench_gemm(void)
{
	int m = 4096;
	size_t n = (size_t)m * m;
	float *a = brand(n), *b = brand(n), *c = balloc(n);
	for (int t = 1; t >= 0; t--) {
		p2p_cuda_set_tf32(t);
		be->gemm(0, 0, m, m, m, 1, a, m, b, m, 0, c, m);
		be->sync();
		double t0 = now();
		for (int i = 0; i < opt.iters; i++)
			be->gemm(0, 0, m, m, m, 1, a, m, b, m, 0, c, m);
		be->sync();
		double s = (now() - t0) / opt.iters;
		printf("sgemm %dx%dx%d %-6s %9.3f ms %8.1f TFLOP/s\n", m, m, m, t ? "TF32" : "FP32",
		       s * 1e3, 2.0 * m * m * m / s * 1e-12);
	}
	p2p_cuda_set_tf32(opt.tf32);
	check_status();
	be->free(a), be->free(b), be->free(c);
}

static void bandwidth(const char *what, double s, double bytes)
{
	printf("%-34s %9.3f ms %8.1f GB/s\n", what, s * 1e3, bytes / s * 1e-9);
}

static void bench_memops(void)
{
	int planes = opt.batch * 128;
	long p = (long)(opt.size / 4) * (opt.size / 4);
	size_t n = (size_t)planes * p, np = 54407555 + 2765761;
	float *x = brand(n), *y = balloc(n), *dx = balloc(n), *mean = balloc(planes), *rstd = balloc(planes);
	float *pp = brand(np), *g = brand(np), *m = balloc(np), *v = balloc(np);
	be->zero(dx, n), be->zero(m, np), be->zero(v, np);
	double t[6] = {0};
	for (int it = -1; it < opt.iters; it++) {
		double t0, acc[6];
		be->sync(), t0 = now();
		be->instnorm_fwd(x, y, mean, rstd, planes, p, P2P_IN_EPS);
		be->sync(), acc[0] = now() - t0, t0 = now();
		be->instnorm_bwd(x, y, rstd, dx, planes, p);
		be->sync(), acc[1] = now() - t0, t0 = now();
		be->leaky_fwd(x, y, n, 0.2f);
		be->sync(), acc[2] = now() - t0, t0 = now();
		be->dropout_fwd(x, y, n, 0.5f, 1, 0);
		be->sync(), acc[3] = now() - t0, t0 = now();
		be->l1(x, y, n, dx, 1);
		acc[4] = now() - t0, t0 = now();
		be->adam(pp, g, m, v, np, 2e-4f, 0.5f, 0.999f, 1e-8f, 0, it + 2);
		be->sync(), acc[5] = now() - t0;
		for (int k = 0; it >= 0 && k < 6; k++)
			t[k] += acc[k] / opt.iters;
	}
	char what[80];
	snprintf(what, sizeof what, "instnorm_fwd (%d, %ld)", planes, p);
	bandwidth(what, t[0], 3.0 * n * 4);
	snprintf(what, sizeof what, "instnorm_bwd (%d, %ld)", planes, p);
	bandwidth(what, t[1], 5.0 * n * 4);
	bandwidth("leaky_fwd", t[2], 2.0 * n * 4);
	bandwidth("dropout_fwd", t[3], 2.0 * n * 4);
	bandwidth("l1 with gradient (incl. readback)", t[4], 4.0 * n * 4);
	snprintf(what, sizeof what, "adam %zu params (G + D)", np);
	bandwidth(what, t[5], 7.0 * np * 4);
	check_status();
	be->free(x), be->free(y), be->free(dx), be->free(mean), be->free(rstd);
	be->free(pp), be->free(g), be->free(m), be->free(v);
}

/* The pieces of one chunk of a 3x3 convolution (VGG features.2 shape, one
 * image at S): how close im2col, col2im and swap01 come to the memory's
 * speed, and the GEMMs to the tensor cores'. */
static void bench_pieces(void)
{
	int c = 64, h = opt.size, k = 3;
	long p = (long)h * h, kk = (long)c * k * k;
	size_t nx = (size_t)c * p, ncol = (size_t)kk * p, nw = (size_t)c * kk;
	float *x = brand(nx), *col = balloc(ncol), *w = brand(nw), *y = balloc(nx);
	double t[6] = {0};
	for (int it = -1; it < opt.iters; it++) {
		double t0, acc[6];
		be->sync(), t0 = now();
		be->im2col(x, 1, c, h, h, k, 1, 1, h, h, col);
		be->sync(), acc[0] = now() - t0, t0 = now();
		be->gemm(0, 0, c, p, kk, 1, w, kk, col, p, 0, y, p);
		be->sync(), acc[1] = now() - t0, t0 = now();
		be->gemm(1, 0, kk, p, c, 1, w, kk, y, p, 0, col, p);
		be->sync(), acc[2] = now() - t0, t0 = now();
		be->col2im(col, 1, c, h, h, k, 1, 1, h, h, x);
		be->sync(), acc[3] = now() - t0, t0 = now();
		be->swap01(col, y, 8, c, p / 8, 0);
		be->sync(), acc[4] = now() - t0, t0 = now();
		be->copy(y, x, nx);
		be->sync(), acc[5] = now() - t0;
		for (int i = 0; it >= 0 && i < 6; i++)
			t[i] += acc[i] / opt.iters;
	}
	char what[80];
	snprintf(what, sizeof what, "im2col 3x3 (%d, %d, %d)", c, h, h);
	bandwidth(what, t[0], 4.0 * (ncol + nx));
	printf("%-34s %9.3f ms %8.1f TFLOP/s\n", "gemm NN 64 x S^2 x 576", t[1] * 1e3,
	       2.0 * c * p * kk / t[1] * 1e-12);
	printf("%-34s %9.3f ms %8.1f TFLOP/s\n", "gemm TN 576 x S^2 x 64", t[2] * 1e3,
	       2.0 * c * p * kk / t[2] * 1e-12);
	snprintf(what, sizeof what, "col2im 3x3 (%d, %d, %d)", c, h, h);
	bandwidth(what, t[3], 4.0 * (ncol + 2 * nx));
	bandwidth("swap01 (8, 64, S^2/8)", t[4], 8.0 * nx);
	bandwidth("copy", t[5], 8.0 * nx);
	check_status();
	be->free(x), be->free(col), be->free(w), be->free(y);
}

/* Generation as p2p-gen runs it on a batch: G forward with dropout off,
 * the images back to the host (their 8-bit encoding is the CPU's). */
static void bench_generate(void)
{
	p2p_unet_cfg cfg = p2p_unet_default(opt.size);
	p2p_unet *g = p2p_unet_new(be, &cfg, opt.batch);
	if (!g)
		p2p_die_lib();
	p2p_rng r;
	p2p_rng_seed(&r, 1);
	if (p2p_params_init(p2p_unet_params(g), &r, 0.02f))
		p2p_die_lib();
	size_t nx = (size_t)opt.batch * opt.size * opt.size;
	float *x = brand(nx), *host = malloc(3 * nx * sizeof *host);
	if (!host)
		p2p_die(1, "out of memory");
	double t = 0;
	for (int it = -1; it < opt.iters; it++) {
		be->sync();
		double t0 = now();
		const float *y = p2p_unet_forward(g, x, opt.batch, 0, 0, 0);
		if (!y)
			p2p_die_lib();
		be->download(host, y, 3 * nx);
		if (it >= 0)
			t += (now() - t0) / opt.iters;
	}
	check_status();
	printf("generation (G forward, images to the host), batch %d: %.2f ms -> %.1f images/s\n",
	       opt.batch, t * 1e3, opt.batch / t);
	free(host);
	be->free(x);
	p2p_unet_free(g);
}

static void usage(void)
{
	printf("usage: gpu_ops [--device cuda|cpu] [--size 256] [--batch 24] [--iters 5] [--no-tf32]\n");
}

int main(int argc, char **argv)
{
	p2p_cli_init(argv[0]);
	opt = (options){"cuda", 256, 24, 5, 1};
	static const struct option longopts[] = {
		{"device", required_argument, NULL, 'd'}, {"size", required_argument, NULL, 's'},
		{"batch", required_argument, NULL, 'b'}, {"iters", required_argument, NULL, 'i'},
		{"no-tf32", no_argument, NULL, 'T'}, {"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'}, {NULL, 0, NULL, 0},
	};
	int c;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'd': opt.device = optarg; break;
		case 's': opt.size = (int)p2p_opt_long("--size", optarg, 32, 1024); break;
		case 'b': opt.batch = (int)p2p_opt_long("--batch", optarg, 1, 1024); break;
		case 'i': opt.iters = (int)p2p_opt_long("--iters", optarg, 1, 1000); break;
		case 'T': opt.tf32 = 0; break;
		case 'h': usage(); return 0;
		case 'V': printf("gpu_ops p2pcat %s\n", P2P_VERSION); return 0;
		default: p2p_usage_error("unknown option");
		}
	}
	if (optind < argc)
		p2p_usage_error("%s: unexpected argument", argv[optind]);
	if (opt.size & (opt.size - 1))
		p2p_usage_error("--size %d: not a power of two", opt.size);
	p2p_cuda_set_tf32(opt.tf32);
	if (!(be = p2p_backend_get(opt.device)))
		p2p_die_lib();
	int gpu = strcmp(be->name, "cuda") == 0;
	printf("# gpu_ops: device %s%s, size %d, batch %d, %d iterations, TF32 %s\n", be->name,
	       gpu ? "" : " (host)", opt.size, opt.batch, opt.iters,
	       !gpu ? "n/a" : opt.tf32 ? "on" : "off");
	if (gpu)
		printf("# %s\n", p2p_cuda_device_name());

	layer ls[64];
	for (int w = 0; w < 3; w++) {
		int n = net_layers(ls, w);
		for (int i = 0; i < n; i++) {
			size_t k = layer_ws(&ls[i]);
			ws_n = k > ws_n ? k : ws_n;
		}
	}
	ws = balloc(ws_n);
	if (gpu)
		bench_gemm();
	printf("%-18s %11s %9s %9s %9s %8s %8s\n", "layer", "channels", "size", "fwd ms", "bwd ms",
	       "fwd TF/s", "bwd TF/s");
	double gf, gb, df, db, vf, vb;
	bench_net(0, &gf, &gb);
	bench_net(1, &df, &db);
	bench_net(2, &vf, &vb);
	/* A step: G forward and backward; D forward three times (real and fake
	 * for its own step, fake again for G's) and backward as often; VGG
	 * forward on fake and real, backward (dx only) once. */
	double step = gf + gb + 3 * (df + db) + 2 * vf + vb;
	printf("convolutions of one training step: %.1f ms -> at most %.1f images/s\n",
	       step * 1e3, opt.batch / step);
	be->free(ws);
	bench_generate();
	bench_memops();
	bench_pieces();
	if (gpu)
		printf("# peak backend memory %.1f MiB\n", p2p_cuda_mem_peak() / 1048576.0);
	check_status();
	return 0;
}
