/* p2p-train: train Pix2Pix (U-Net G, PatchGAN D) on a data set laid out as
 * ROOT/{train,val}/{A,B}/ID.{npy,jpg}, the seed's recipe: LSGAN + lambda_L1
 * L1 + lambda_perc VGG16 perceptual loss, Adam for G and D, D then G on each
 * batch, CosineAnnealingWarmRestarts per epoch, flip and ColorJitter on the
 * train split, validation each epoch, best model by val L1.
 *
 * Exact resume: every random draw is a function of (seed, epoch, sample
 * position, step), never of a running stream, and a checkpoint holds the
 * position inside an epoch, so a run stopped anywhere and resumed goes on
 * with the very same numbers (same seed, same threads). */
#include "adam.h"
#include "atomic.h"
#include "augment.h"
#include "backend.h"
#include "benchstat.h"
#include "checkpoint.h"
#include "cli.h"
#include "cpu_pool.h"
#include "dataset.h"
#include "dist.h"
#include "err.h"
#include "image.h"
#include "layers.h"
#include "metrics.h"
#include "models.h"
#include "ops_cuda.h"
#include "progress.h"
#include "rng.h"
#include "schedule.h"
#include "step.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage_text[] =
	"Usage: p2p-train --data ROOT --out RUN [options]\n"
	"Train Pix2Pix on ROOT/{train,val}/{A,B}; checkpoints, logs and sample grids in RUN.\n"
	"Resumes from RUN/last_checkpoint.safetensors when there is one.\n"
	"  --data ROOT          data set (splitset's layout)\n"
	"  --out RUN            run folder\n"
	"  --epochs N           epochs in all (100)\n"
	"  --batch N            batch size (24)\n"
	"  --lambda-l1 X        weight of the L1 loss (150)\n"
	"  --lambda-perc X      weight of the VGG16 perceptual loss (2; 0 = off)\n"
	"  --vgg16 FILE         VGG16 weights, torchvision names (scripts/vgg16-export)\n"
	"  --lr X, --lr-d X     Adam learning rates of G (2e-4) and D (1e-4)\n"
	"  --beta1 X, --beta2 X Adam betas (0.5, 0.999)\n"
	"  --t0 N, --t-mult N   CosineAnnealingWarmRestarts, per epoch (50, 2)\n"
	"  --ngf N, --ndf N     widths of G and D (64, 64)\n"
	"  --sample-every N     sample grid every N epochs (10; 0 = never)\n"
	"  --checkpoint-every N also checkpoint every N steps inside an epoch (0 = off)\n"
	"  --device cpu|cuda    where to compute (cpu)\n"
	"  --no-tf32            strict FP32 matrix products on the GPU (TF32 is the default)\n"
	"  --threads N          CPU threads (the libraries' default)\n"
	"  --seed N             seed of every random draw (42)\n"
	"  --no-resume          start over: remove RUN's checkpoints and log first\n"
	"  --max-steps N        stop after N optimiser steps in all, with a checkpoint\n"
	"  --bench              at the end, the training steps' speed as JSON on stderr\n"
	"  --quiet, --progress  no messages / force the progress bar\n"
	"  -h, --help, --version\n";

static void usage(void)
{
	fputs(usage_text, stdout);
}

/* ---- options ---- */

typedef struct {
	const char *data, *out, *vgg16, *device;
	long epochs, batch, t0, tmult, ngf, ndf, sample_every, checkpoint_every;
	long threads, max_steps;
	double lambda_l1, lambda_perc, lr, lr_d, beta1, beta2;
	unsigned long long seed;
	int resume, progress;       /* progress: -1 auto, 0 quiet, 1 forced */
	int bench;
	int tf32;                   /* TF32 matrix products on the GPU */
	int pipeline;               /* P2P_PIPELINE: 1 on, 0 off, -1 on a GPU only */
} opts;

enum {
	O_DATA = 256, O_OUT, O_EPOCHS, O_BATCH, O_L1, O_PERC, O_VGG, O_LR, O_LRD, O_B1, O_B2,
	O_T0, O_TMULT, O_NGF, O_NDF, O_SAMPLE, O_CKPT, O_DEVICE, O_THREADS, O_SEED,
	O_NORESUME, O_MAXSTEPS, O_QUIET, O_PROGRESS, O_NOTF32, O_BENCH
};

static void parse_opts(int argc, char **argv, opts *o)
{
	static const struct option lo[] = {
		{ "data", required_argument, 0, O_DATA }, { "out", required_argument, 0, O_OUT },
		{ "epochs", required_argument, 0, O_EPOCHS }, { "batch", required_argument, 0, O_BATCH },
		{ "lambda-l1", required_argument, 0, O_L1 }, { "lambda-perc", required_argument, 0, O_PERC },
		{ "vgg16", required_argument, 0, O_VGG }, { "lr", required_argument, 0, O_LR },
		{ "lr-d", required_argument, 0, O_LRD }, { "beta1", required_argument, 0, O_B1 },
		{ "beta2", required_argument, 0, O_B2 }, { "t0", required_argument, 0, O_T0 },
		{ "t-mult", required_argument, 0, O_TMULT }, { "ngf", required_argument, 0, O_NGF },
		{ "ndf", required_argument, 0, O_NDF }, { "sample-every", required_argument, 0, O_SAMPLE },
		{ "checkpoint-every", required_argument, 0, O_CKPT },
		{ "device", required_argument, 0, O_DEVICE }, { "threads", required_argument, 0, O_THREADS },
		{ "no-tf32", no_argument, 0, O_NOTF32 },
		{ "seed", required_argument, 0, O_SEED }, { "no-resume", no_argument, 0, O_NORESUME },
		{ "max-steps", required_argument, 0, O_MAXSTEPS }, { "quiet", no_argument, 0, O_QUIET },
		{ "progress", no_argument, 0, O_PROGRESS }, { "help", no_argument, 0, 'h' },
		{ "version", no_argument, 0, P2P_OPT_VERSION }, { "bench", no_argument, 0, O_BENCH },
		{ 0, 0, 0, 0 }
	};
	*o = (opts){ .device = "cpu", .epochs = 100, .batch = 24, .t0 = 50, .tmult = 2,
	             .ngf = 64, .ndf = 64, .sample_every = 10, .lambda_l1 = 150,
	             .lambda_perc = 2, .lr = 2e-4, .lr_d = 1e-4, .beta1 = 0.5, .beta2 = 0.999,
	             .seed = 42, .resume = 1, .progress = -1, .tf32 = 1 };
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		switch (c) {
		case O_DATA: o->data = optarg; break;
		case O_OUT: o->out = optarg; break;
		case O_EPOCHS: o->epochs = p2p_opt_long("--epochs", optarg, 1, 1000000); break;
		case O_BATCH: o->batch = p2p_opt_long("--batch", optarg, 1, 65536); break;
		case O_L1: o->lambda_l1 = p2p_opt_double("--lambda-l1", optarg, 0, 1e12); break;
		case O_PERC: o->lambda_perc = p2p_opt_double("--lambda-perc", optarg, 0, 1e12); break;
		case O_VGG: o->vgg16 = optarg; break;
		case O_LR: o->lr = p2p_opt_double("--lr", optarg, 0, 1e38); break;
		case O_LRD: o->lr_d = p2p_opt_double("--lr-d", optarg, 0, 1e38); break;
		case O_B1: o->beta1 = p2p_opt_double("--beta1", optarg, 0, 0.999999); break;
		case O_B2: o->beta2 = p2p_opt_double("--beta2", optarg, 0, 0.999999999); break;
		case O_T0: o->t0 = p2p_opt_long("--t0", optarg, 1, 1000000); break;
		case O_TMULT: o->tmult = p2p_opt_long("--t-mult", optarg, 1, 1000); break;
		case O_NGF: o->ngf = p2p_opt_long("--ngf", optarg, 1, 4096); break;
		case O_NDF: o->ndf = p2p_opt_long("--ndf", optarg, 1, 4096); break;
		case O_SAMPLE: o->sample_every = p2p_opt_long("--sample-every", optarg, 0, 1000000); break;
		case O_CKPT: o->checkpoint_every = p2p_opt_long("--checkpoint-every", optarg, 0, LONG_MAX); break;
		case O_DEVICE:
			if (strcmp(optarg, "cpu") && strcmp(optarg, "cuda"))
				p2p_usage_error("--device: expected cpu or cuda, got '%s'", optarg);
			o->device = optarg;
			break;
		case O_NOTF32: o->tf32 = 0; break;
		case O_THREADS: o->threads = p2p_opt_long("--threads", optarg, 1, 4096); break;
		case O_SEED: o->seed = (unsigned long long)p2p_opt_long("--seed", optarg, 0, LONG_MAX); break;
		case O_NORESUME: o->resume = 0; break;
		case O_MAXSTEPS: o->max_steps = p2p_opt_long("--max-steps", optarg, 1, LONG_MAX); break;
		case O_QUIET: o->progress = 0; break;
		case O_PROGRESS: o->progress = 1; break;
		case O_BENCH: o->bench = 1; break;
		default: p2p_opt_other(c, argv, usage);
		}
	}
	if (optind < argc)
		p2p_usage_error("unexpected argument '%s'", argv[optind]);
	/* the input pipeline runs on a GPU; the tests also run it on the CPU,
	 * whose run it must not change by a bit */
	const char *pe = getenv("P2P_PIPELINE");
	o->pipeline = pe && !strcmp(pe, "1") ? 1 : pe && !strcmp(pe, "0") ? 0 : -1;
	if (!o->data || !o->out)
		p2p_usage_error("--data ROOT and --out RUN are both required");
	if (o->lambda_perc > 0 && !o->vgg16)
		p2p_die(2, "--lambda-perc %g needs VGG16 weights: pass --vgg16 FILE (write it with "
		        "scripts/vgg16-export where torchvision can download its weights), or turn "
		        "the perceptual loss off with --lambda-perc 0", o->lambda_perc);
}

/* ---- the settings a checkpoint must share to be resumed ---- */

/* Everything that shapes the run's numbers, plus the data and the epoch
 * count for people; not where it runs (device, threads), what it shows
 * (--sample-every) nor when it stops (--max-steps, --checkpoint-every), so
 * those may change between a stop and a resume without changing a byte. */
static char *config_json(const opts *o, int size)
{
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "data", o->data);
	cJSON_AddNumberToObject(j, "size", size);
	cJSON_AddNumberToObject(j, "epochs", (double)o->epochs);
	cJSON_AddNumberToObject(j, "batch", (double)o->batch);
	cJSON_AddNumberToObject(j, "lambda_l1", o->lambda_l1);
	cJSON_AddNumberToObject(j, "lambda_perc", o->lambda_perc);
	if (o->vgg16 && o->lambda_perc > 0)
		cJSON_AddStringToObject(j, "vgg16", o->vgg16);
	cJSON_AddNumberToObject(j, "lr", o->lr);
	cJSON_AddNumberToObject(j, "lr_d", o->lr_d);
	cJSON_AddNumberToObject(j, "beta1", o->beta1);
	cJSON_AddNumberToObject(j, "beta2", o->beta2);
	cJSON_AddNumberToObject(j, "t0", (double)o->t0);
	cJSON_AddNumberToObject(j, "t_mult", (double)o->tmult);
	cJSON_AddNumberToObject(j, "ngf", (double)o->ngf);
	cJSON_AddNumberToObject(j, "ndf", (double)o->ndf);
	cJSON_AddNumberToObject(j, "seed", (double)o->seed);
	p2p_augment a = p2p_augment_default();
	cJSON *aug = cJSON_AddObjectToObject(j, "augment");
	cJSON_AddNumberToObject(aug, "flip", a.flip_p);
	cJSON_AddNumberToObject(aug, "brightness", a.brightness);
	cJSON_AddNumberToObject(aug, "contrast", a.contrast);
	cJSON_AddNumberToObject(aug, "saturation", a.saturation);
	cJSON_AddNumberToObject(aug, "hue", a.hue);
	char *s = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	if (!s)
		p2p_die(1, "out of memory");
	return s;
}

/* The checkpoint's settings against this run's: the first that differs is an
 * error, since resuming with it would not be the run that was started. */
static void check_config(const char *path, const char *saved, const opts *o)
{
	static const struct { const char *key, *flag; } keys[] = {
		{ "batch", "--batch" }, { "lambda_l1", "--lambda-l1" },
		{ "lambda_perc", "--lambda-perc" }, { "lr", "--lr" }, { "lr_d", "--lr-d" },
		{ "beta1", "--beta1" }, { "beta2", "--beta2" }, { "t0", "--t0" },
		{ "t_mult", "--t-mult" },
	};
	double now[] = { (double)o->batch, o->lambda_l1, o->lambda_perc,
	                 o->lr, o->lr_d, o->beta1, o->beta2, (double)o->t0, (double)o->tmult };
	cJSON *j = cJSON_Parse(saved);
	if (!j || !cJSON_IsObject(j))
		p2p_die(1, "%s: metadata \"config\" is not a JSON object", path);
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
		cJSON *v = cJSON_GetObjectItemCaseSensitive(j, keys[i].key);
		if (!cJSON_IsNumber(v))
			p2p_die(1, "%s: metadata \"config\" has no number \"%s\"", path, keys[i].key);
		if (v->valuedouble != now[i])
			p2p_die(1, "%s: trained with %s %.17g, this run asks for %s %.17g: pass the "
			        "same setting to resume, or --no-resume to start over", path,
			        keys[i].flag, v->valuedouble, keys[i].flag, now[i]);
	}
	cJSON_Delete(j);
}

/* ---- the trainer: models, optimisers, buffers for one batch ---- */

/* Purposes of the seeded streams; each draw is (purpose, index). */
enum { SEED_INIT_G = 1, SEED_INIT_D, SEED_SHUFFLE, SEED_AUGMENT, SEED_DROPOUT };

static uint64_t subseed(uint64_t seed, uint64_t purpose)
{
	return p2p_mix64(seed ^ p2p_mix64(purpose * 0x9e3779b97f4a7c15ULL));
}

typedef struct {
	const opts *o;
	const p2p_backend *be;
	int cpu;                    /* backend memory is host memory */
	int S, P, bm;               /* image size, D's patch grid, batch capacity */
	size_t ss;                  /* S*S */
	p2p_unet *G;
	p2p_patchgan *D;
	p2p_vgg *V;                 /* NULL without the perceptual loss */
	p2p_step st;                /* the step: its buffers and the Adam states */
	int n_all;                  /* the whole batch of this step (MPI) */
	float *a, *b;               /* batch: A (bm, 1, S, S), real B (bm, 3, S, S) */
	float *ha, *hb;             /* host staging for a and b (== a, b on the CPU;
	                             * page-locked elsewhere, hb right after ha as b
	                             * after a, so that a batch is one upload) */
	int staged;                 /* ha is not a: a batch is uploaded from it */
	int pinned;                 /* ha came from p2p_cuda_host_alloc */
	float *hout;                /* host copy of G's output (validation) */
	uint64_t seed_aug, seed_drop;
} trainer;

static float *balloc(const p2p_backend *be, size_t n)
{
	float *p = be->alloc(n > 0 ? n : 1);
	if (!p)
		p2p_die_lib();
	return p;
}

/* The host side of a batch: the batch buffers themselves on the CPU; on a
 * GPU, page-locked memory (uploads run at the bus's speed from it, and the
 * input pipeline fills it), or plain memory where none can be had. */
static void stage_alloc(trainer *t)
{
	size_t n = (size_t)t->bm * 4 * t->ss;
	t->staged = !t->cpu || t->o->pipeline == 1;
	if (!t->staged) {
		t->ha = t->a;
	} else if (t->cpu) {
		t->ha = malloc(n * sizeof(float));
	} else if ((t->ha = p2p_cuda_host_alloc(n * sizeof(float)))) {
		t->pinned = 1;
	} else {
		if (t->o->progress != 0)
			p2p_warn("%s; going on with pageable memory", p2p_errmsg());
		t->ha = malloc(n * sizeof(float));
	}
	t->hb = t->ha ? t->ha + (size_t)t->bm * t->ss : NULL;
}

/* ---- data parallelism (lib/dist.h; one rank without MPI) ----
 * Each rank takes its share of every batch (p2p_dist_share) and the ranks
 * sum their gradients before each Adam step, so every rank holds the same
 * weights and takes the same steps as one process with the whole batch. */

static int leader(void)
{
	return p2p_dist_rank() == 0;
}

/* The most samples of a batch of n that one rank takes. */
static int dist_capacity(int n)
{
	long first, end;
	p2p_dist_share(n, p2p_dist_size() - 1, p2p_dist_size(), &first, &end);  /* the last: a largest */
	return (int)(end - first);
}

/* Host memory for collectives over backend memory that is not host memory. */
static float *dist_host(size_t n)
{
	static float *buf;
	static size_t cap;
	if (n > cap) {
		free(buf);
		if (!(buf = malloc(n * sizeof *buf)))
			p2p_die(1, "out of memory");
		cap = n;
	}
	return buf;
}

/* The whole batch's gradient from each rank's: every loss is a mean over
 * the samples, so rank gradients weighted by n / n_all and summed are the
 * mean over all n_all, whatever the split. */
static void dist_average_grads(trainer *t, p2p_params *ps, int n, int n_all)
{
	if (p2p_dist_size() == 1)
		return;
	const p2p_backend *be = t->be;
	be->scale(ps->grad, ps->total, (float)n / (float)n_all);
	float *g = t->cpu ? ps->grad : dist_host(ps->total);
	if (!t->cpu)
		be->download(g, ps->grad, ps->total);
	if (p2p_dist_sum_float(g, ps->total))
		p2p_die_lib();
	if (!t->cpu)
		be->upload(ps->grad, g, ps->total);
}

/* The batch's losses from each rank's means over its n samples. */
static void dist_average_losses(double *loss, int k, int n, int n_all)
{
	if (p2p_dist_size() == 1)
		return;
	for (int i = 0; i < k; i++)
		loss[i] *= (double)n / n_all;
	if (p2p_dist_sum_double(loss, k))
		p2p_die_lib();
}

/* The step's gradient hook: this rank's share n of the batch t->n_all. */
static void step_grads(void *ctx, p2p_params *ps, int n)
{
	trainer *t = ctx;
	dist_average_grads(t, ps, n, t->n_all);
}

static void trainer_init(trainer *t, const opts *o, const p2p_backend *be, int size, int n_train)
{
	memset(t, 0, sizeof *t);
	t->o = o;
	t->be = be;
	t->cpu = strcmp(be->name, "cpu") == 0;
	t->S = size;
	t->ss = (size_t)size * size;
	t->bm = dist_capacity(o->batch < n_train ? (int)o->batch : n_train);
	p2p_unet_cfg gc = p2p_unet_default(size);
	gc.ngf = (int)o->ngf;
	p2p_patchgan_cfg dc = p2p_patchgan_default(size);
	dc.ndf = (int)o->ndf;
	if (!(t->G = p2p_unet_new(be, &gc, t->bm)) || !(t->D = p2p_patchgan_new(be, &dc, 2 * t->bm)))
		p2p_die_lib();
	if (o->lambda_perc > 0 && !(t->V = p2p_vgg_load(be, o->vgg16, size, t->bm)))
		p2p_die_lib();
	t->P = p2p_patchgan_out_size(t->D);
	size_t bm = t->bm;
	t->a = balloc(be, bm * 4 * t->ss);
	t->b = t->a + bm * t->ss;
	if (p2p_step_init(&t->st, be, t->G, t->D, t->V, t->bm, o->lambda_l1, o->lambda_perc,
	                  (float)o->lr, (float)o->lr_d, (float)o->beta1, (float)o->beta2))
		p2p_die_lib();
	t->st.grads = step_grads;
	t->st.grads_ctx = t;
	stage_alloc(t);
	t->hout = malloc(bm * 3 * t->ss * sizeof(float));
	if (!t->ha || !t->hb || !t->hout)
		p2p_die(1, "out of memory");
	t->seed_aug = subseed(o->seed, SEED_AUGMENT);
	t->seed_drop = subseed(o->seed, SEED_DROPOUT);
}

static void trainer_free(trainer *t)
{
	const p2p_backend *be = t->be;
	if (t->pinned)
		p2p_cuda_host_free(t->ha);
	else if (t->staged)
		free(t->ha);
	free(t->hout);
	be->free(t->a);
	p2p_step_free(&t->st);
	p2p_unet_free(t->G);
	p2p_patchgan_free(t->D);
	p2p_vgg_free(t->V);
}

static void init_weights(trainer *t)
{
	p2p_rng r;
	p2p_rng_seed2(&r, t->o->seed, SEED_INIT_G);
	if (p2p_params_init(p2p_unet_params(t->G), &r, 0.02f))
		p2p_die_lib();
	p2p_rng_seed2(&r, t->o->seed, SEED_INIT_D);
	if (p2p_params_init(p2p_patchgan_params(t->D), &r, 0.02f))
		p2p_die_lib();
}

/* The epoch's order of the train set: a function of (seed, epoch) alone. */
static void epoch_order(int *perm, int n, uint64_t seed, long epoch)
{
	p2p_rng r;
	p2p_rng_seed2(&r, subseed(seed, SEED_SHUFFLE), (uint64_t)epoch);
	for (int i = 0; i < n; i++)
		perm[i] = i;
	p2p_rng_shuffle(&r, perm, n);
}

/* Samples first .. first + n - 1 of the epoch's order into the batch buffers,
 * augmented: each from its own stream (seed, epoch * n_train + position). */
typedef struct {
	trainer *t;
	const p2p_dataset *ds;
	const int *perm;
	long epoch;
	int first;
} batch_job;

static void load_range(void *ctx, long j0, long j1)
{
	const batch_job *b = ctx;
	trainer *t = b->t;
	p2p_augment cfg = p2p_augment_default();
	for (long j = j0; j < j1; j++) {
		int pos = b->first + (int)j;
		float *a = t->ha + j * t->ss, *x = t->hb + j * 3 * t->ss;
		p2p_dataset_get(b->ds, b->perm[pos], a, x);
		p2p_rng r;
		p2p_rng_seed2(&r, t->seed_aug, (uint64_t)b->epoch * b->ds->n + pos);
		p2p_augment_draw d;
		p2p_augment_sample(&cfg, &r, &d);
		p2p_augment_apply(&d, a, x, t->S);
	}
}

/* Into t->ha, t->hb, on the backend's pool: its workers sleep between
 * jobs, leaving the cores to the GEMMs, where OpenMP's would spin. */
static void fill_batch(trainer *t, const p2p_dataset *ds, const int *perm, long epoch,
                       int first, int n)
{
	batch_job b = { t, ds, perm, epoch, first };
	p2p_pool_run(n, p2p_pool_threads(), load_range, &b);
}

/* The staged batch to the backend: A and B in one transfer (A's rows past
 * n are stale and unused). */
static void upload_batch(trainer *t, int n)
{
	t->be->upload(t->a, t->ha, (size_t)t->bm * t->ss + (size_t)n * 3 * t->ss);
}

/* ---- the input pipeline of a GPU run ----
 * A thread of its own assembles the next batch (the epoch's next samples,
 * flipped and jittered on the CPU pool) into the page-locked staging memory
 * while the GPU trains on the current one (this rank's share of it, with
 * MPI); taking a batch is then one upload, and asks for the one after it:
 * the next of the epoch, or the first of the next epoch. What a batch holds
 * depends on (epoch, position) alone, so the batches are the CPU run's,
 * whenever and wherever they are made. */
enum { PL_IDLE, PL_ASKED, PL_READY };

typedef struct {
	trainer *t;
	const p2p_dataset *ds;
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int state;                  /* PL_*: ASKED while the thread fills the staging */
	int quit;
	long epoch;                 /* the batch asked for, or staged */
	int first, n;
	int *perm;                  /* epoch perm_epoch's order, the thread's own */
	long perm_epoch;
} pipeline;

static void *pipeline_main(void *arg)
{
	pipeline *pl = arg;
	pthread_mutex_lock(&pl->mu);
	for (;;) {
		while (pl->state != PL_ASKED && !pl->quit)
			pthread_cond_wait(&pl->cv, &pl->mu);
		if (pl->quit)
			break;
		long e = pl->epoch, lo, hi;
		int first = pl->first, n = pl->n;
		pthread_mutex_unlock(&pl->mu);
		if (pl->perm_epoch != e) {
			epoch_order(pl->perm, pl->ds->n, pl->t->o->seed, e);
			pl->perm_epoch = e;
		}
		p2p_dist_share(n, p2p_dist_rank(), p2p_dist_size(), &lo, &hi);
		if (hi > lo)
			fill_batch(pl->t, pl->ds, pl->perm, e, first + (int)lo, (int)(hi - lo));
		pthread_mutex_lock(&pl->mu);
		pl->state = PL_READY;
		pthread_cond_broadcast(&pl->cv);
	}
	pthread_mutex_unlock(&pl->mu);
	return NULL;
}

static pipeline *pipeline_open(trainer *t, const p2p_dataset *ds)
{
	pipeline *pl = calloc(1, sizeof *pl);
	if (!pl || !(pl->perm = malloc(ds->n * sizeof *pl->perm)))
		p2p_die(1, "out of memory");
	pl->t = t;
	pl->ds = ds;
	pl->perm_epoch = -1;
	pthread_mutex_init(&pl->mu, NULL);
	pthread_cond_init(&pl->cv, NULL);
	/* signals go to the main thread, which stops the run cleanly */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int rc = pthread_create(&pl->th, NULL, pipeline_main, pl);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc)
		p2p_die(1, "cannot start the input thread: %s", strerror(rc));
	return pl;
}

/* Waits for a batch being made (it writes the staging memory) to finish. */
static void pipeline_close(pipeline *pl)
{
	if (!pl)
		return;
	pthread_mutex_lock(&pl->mu);
	pl->quit = 1;
	pthread_cond_broadcast(&pl->cv);
	pthread_mutex_unlock(&pl->mu);
	pthread_join(pl->th, NULL);
	pthread_mutex_destroy(&pl->mu);
	pthread_cond_destroy(&pl->cv);
	free(pl->perm);
	free(pl);
}

/* Caller holds mu; no batch is being made. */
static void pipeline_ask(pipeline *pl, long e, int first, int n)
{
	pl->epoch = e, pl->first = first, pl->n = n;
	pl->state = PL_ASKED;
	pthread_cond_broadcast(&pl->cv);
}

/* This rank's share of batch (e, first, n) to the backend, then the next
 * batch asked for. */
static void pipeline_take(pipeline *pl, long e, int first, int n)
{
	pthread_mutex_lock(&pl->mu);
	for (;;) {
		while (pl->state == PL_ASKED)
			pthread_cond_wait(&pl->cv, &pl->mu);
		if (pl->state == PL_READY && pl->epoch == e && pl->first == first && pl->n == n)
			break;
		pipeline_ask(pl, e, first, n);      /* the first batch of a run */
	}
	pthread_mutex_unlock(&pl->mu);
	long lo, hi;                            /* this rank's share */
	p2p_dist_share(n, p2p_dist_rank(), p2p_dist_size(), &lo, &hi);
	if (hi > lo)
		upload_batch(pl->t, (int)(hi - lo));    /* returns once the staging is free */
	int ntr = pl->ds->n, next = first + n;
	long batch = pl->t->o->batch;
	if (next >= ntr)
		next = 0, e++;
	pthread_mutex_lock(&pl->mu);
	pipeline_ask(pl, e, next, ntr - next < batch ? ntr - next : (int)batch);
	pthread_mutex_unlock(&pl->mu);
}

static const float *checked(const float *p)
{
	if (!p)
		p2p_die_lib();
	return p;
}

/* One optimiser step of D then G on the n samples in t->a, t->b (lib/step);
 * the five losses (as P2P_CKPT_NSUMS) into loss: this rank's share of a
 * batch of n_all (all of it without MPI; a rank with no share still takes
 * both Adam steps). `sample` is the run-wide position of the batch's first
 * sample: G's dropout masks are drawn from it, sample by sample. */
static void train_step(trainer *t, int n, int n_all, uint64_t sample, float lr_g, float lr_d,
                       double *loss)
{
	t->n_all = n_all;
	if (p2p_step_run(&t->st, t->a, t->b, n, t->seed_drop, sample, lr_g, lr_d, loss))
		p2p_die_lib();
}

/* ---- validation and sample grids ---- */

#define GRID_ROWS 4

typedef struct {
	double l1, psnr;
	int rows, idx[GRID_ROWS];
	unsigned char *gen;         /* rows * 3 * S * S, planar, quantised G output */
} val_result;

/* Validation split across the ranks: the sums of L1 and PSNR over every
 * rank's share, and each sample row of the grid from the rank that made it. */
static void dist_validation(val_result *vr, double *sums, int n_val, size_t img)
{
	if (p2p_dist_size() == 1)
		return;
	if (p2p_dist_sum_double(sums, 2))
		p2p_die_lib();
	for (int r = 0; r < vr->rows; r++) {
		int owner = 0;
		long first, end;
		for (int k = 0; k < p2p_dist_size(); k++) {
			p2p_dist_share(n_val, k, p2p_dist_size(), &first, &end);
			if (vr->idx[r] >= first && vr->idx[r] < end)
				owner = k;
		}
		if (p2p_dist_bcast(vr->gen + r * img, img, owner))
			p2p_die_lib();
	}
}

/* G in eval mode (dropout off) over the val split: mean |G(A) - B| on
 * [-1, 1], and 8-bit PSNR per image (G's output quantised as a saved PNG
 * holds it) averaged. Keeps the fixed sample rows' outputs. */
static void validate(trainer *t, const p2p_dataset *val, val_result *vr)
{
	size_t ss = t->ss, img = 3 * ss;
	unsigned char *q = malloc(img);
	float *bf = malloc(img * sizeof *bf);
	if (!q || !bf)
		p2p_die(1, "out of memory");
	double l1 = 0, psnr = 0;
	long lo, hi;                /* this rank's share */
	p2p_dist_share(val->n, p2p_dist_rank(), p2p_dist_size(), &lo, &hi);
	p2p_unet_weights_fixed(t->G, 1);    /* G's Winograd weights made once, not per batch */
	for (int first = (int)lo; first < hi; first += t->bm) {
		int n = hi - first < t->bm ? (int)hi - first : t->bm;
		const float *ha = val->a + first * ss;
		if (!t->cpu)
			t->be->upload(t->a, ha, n * ss);
		const float *out = checked(p2p_unet_forward(t->G, t->cpu ? ha : t->a, n, 0, 0, 0));
		t->be->download(t->hout, out, n * img);
		for (int j = 0; j < n; j++) {
			const float *g = t->hout + j * img;
			const unsigned char *truth = val->b + (first + j) * img;
			double s = 0;
			p2p_dataset_get(val, first + j, NULL, bf);
			for (size_t k = 0; k < img; k++) {
				s += fabs((double)g[k] - bf[k]);
				q[k] = p2p_unit_to_u8(g[k]);
			}
			l1 += s / img;
			psnr += p2p_metric_psnr(p2p_metric_mse(q, truth, img));
			for (int r = 0; r < vr->rows; r++)
				if (vr->idx[r] == first + j)
					memcpy(vr->gen + r * img, q, img);
		}
	}
	p2p_unet_weights_fixed(t->G, 0);
	double sums[2] = { l1, psnr };
	dist_validation(vr, sums, val->n, img);
	vr->l1 = sums[0] / val->n;
	vr->psnr = sums[1] / val->n;
	free(q);
	free(bf);
}

/* heatmap | generated | real, one row per fixed val sample. */
static int save_grid(const char *path, const p2p_dataset *val, const val_result *vr)
{
	int S = val->size;
	size_t ss = (size_t)S * S;
	p2p_image im;
	if (p2p_image_alloc(&im, 3 * S, vr->rows * S, 3))
		return -1;
	for (int r = 0; r < vr->rows; r++) {
		const float *a = val->a + vr->idx[r] * ss;
		const unsigned char *gen = vr->gen + r * 3 * ss, *real = val->b + vr->idx[r] * 3 * ss;
		for (int y = 0; y < S; y++)
			for (int x = 0; x < S; x++) {
				size_t k = (size_t)y * S + x;
				unsigned char *px = im.px + (((size_t)r * S + y) * 3 * S + x) * 3;
				for (int c = 0; c < 3; c++) {
					px[c] = p2p_unit_to_u8(a[k]);
					px[3 * S + c] = gen[c * ss + k];
					px[6 * S + c] = real[c * ss + k];
				}
			}
	}
	int rc = p2p_image_save(path, &im, 95);
	p2p_image_free(&im);
	return rc;
}

/* ---- the log, RUN/train.jsonl ---- */

typedef struct {
	char **line;
	int n, cap;
	char *path;
} train_log;

static void log_push(train_log *lg, char *s)
{
	if (lg->n == lg->cap) {
		lg->cap = lg->cap ? 2 * lg->cap : 64;
		lg->line = realloc(lg->line, lg->cap * sizeof *lg->line);
		if (!lg->line)
			p2p_die(1, "out of memory");
	}
	lg->line[lg->n++] = s;
}

/* Keep the lines of epochs up to `upto`: the checkpoint is the truth, and a
 * line written after it (a stop between the two writes) is redone. */
static void log_load(train_log *lg, const char *path, long upto)
{
	memset(lg, 0, sizeof *lg);
	lg->path = strdup(path);
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	char *buf = NULL;
	size_t cap = 0;
	while (getline(&buf, &cap, f) > 0) {
		cJSON *j = cJSON_Parse(buf);
		cJSON *e = j ? cJSON_GetObjectItemCaseSensitive(j, "epoch") : NULL;
		if (cJSON_IsNumber(e) && e->valuedouble >= 1 && e->valuedouble <= upto) {
			buf[strcspn(buf, "\n")] = 0;
			char *s = strdup(buf);
			if (!s)
				p2p_die(1, "out of memory");
			log_push(lg, s);
		}
		cJSON_Delete(j);
	}
	free(buf);
	fclose(f);
}

static int log_write(const train_log *lg)
{
	size_t total = 0;
	for (int i = 0; i < lg->n; i++)
		total += strlen(lg->line[i]) + 1;
	char *buf = malloc(total + 1), *p = buf;
	if (!buf)
		return p2p_err("%s: out of memory", lg->path);
	for (int i = 0; i < lg->n; i++)
		p += sprintf(p, "%s\n", lg->line[i]);
	int rc = p2p_write_file(lg->path, buf, total);
	free(buf);
	return rc;
}

static void log_free(train_log *lg)
{
	for (int i = 0; i < lg->n; i++)
		free(lg->line[i]);
	free(lg->line);
	free(lg->path);
}

/* ---- signals ---- */

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static void catch_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESETHAND;     /* a second one ends the run at once */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* mpirun passes SIGUSR1 on to every rank (SIGTERM it turns into a kill),
	 * and a Slurm job script sends it ahead of the time limit */
	sigaction(SIGUSR1, &sa, NULL);
}

/* ---- the run ---- */

typedef struct {
	char *last, *gbest, *dbest, *log, *samples;
} run_paths;

static char *path_in(const char *dir, const char *name)
{
	char *s;
	if (asprintf(&s, "%s/%s", dir, name) < 0)
		p2p_die(1, "out of memory");
	return s;
}

/* A NaN or an infinity: stop, leaving the last good checkpoint as it is. */
static _Noreturn void bad_number(const char *where, const char *what, double v,
                                 const run_paths *rp, long saved_step)
{
	if (saved_step >= 0)
		p2p_die(1, "%s: %s is %s: stopping; %s (step %ld) is kept", where, what,
		        isnan(v) ? "NaN" : "infinite", rp->last, saved_step);
	p2p_die(1, "%s: %s is %s: stopping; no checkpoint had been written", where, what,
	        isnan(v) ? "NaN" : "infinite");
}

/* Write the whole state, unless a parameter went bad. */
static void save_last(trainer *t, const run_paths *rp, p2p_ckpt *ck, long *saved_step)
{
	const p2p_backend *be = t->be;
	const p2p_params *ps[2] = { p2p_unet_params(t->G), p2p_patchgan_params(t->D) };
	if (!leader()) {            /* rank 0 alone writes; every rank has the same state */
		*saved_step = ck->step;
		return;
	}
	for (int i = 0; i < 2; i++) {
		double s = be->sum(ps[i]->data, ps[i]->total);
		if (!isfinite(s)) {
			char where[64];
			snprintf(where, sizeof where, "step %ld", ck->step);
			bad_number(where, i ? "a parameter of D" : "a parameter of G", s, rp, *saved_step);
		}
	}
	if (p2p_ckpt_save(rp->last, ck, p2p_unet_params(t->G), &t->st.ga, p2p_patchgan_params(t->D), &t->st.da))
		p2p_die_lib();
	*saved_step = ck->step;
}

static void remove_file(const char *path)
{
	if (unlink(path) && errno != ENOENT)
		p2p_die(1, "%s: cannot remove: %s", path, strerror(errno));
}

/* Everything one training run holds. */
typedef struct {
	const opts *o;
	p2p_dataset train, val;
	run_paths rp;
	trainer t;
	p2p_ckpt ck;            /* the state a checkpoint writes */
	long saved_step;        /* the step of the checkpoint on disk; -1: none */
	train_log lg;
	val_result vr;
	int *perm;              /* the epoch's order of the train set */
	pipeline *pl;           /* the input pipeline of a GPU run, or NULL */
	int nb;                 /* batches per epoch */
	int say, bar;           /* messages, progress bar */
	p2p_bench bench;        /* --bench: the train steps' times */
} run;

/* ---- data parallelism: the run ---- */

/* Every rank starts from rank 0's seed, whatever its command line said. */
static void dist_agree_seed(opts *o)
{
	if (p2p_dist_bcast(&o->seed, sizeof o->seed, 0))
		p2p_die_lib();
}

static void dist_bcast_floats(const trainer *t, float *x, size_t n)
{
	float *h = t->cpu ? x : dist_host(n);
	if (!t->cpu && leader())
		t->be->download(h, x, n);
	if (p2p_dist_bcast(h, n * sizeof *h, 0))
		p2p_die_lib();
	if (!t->cpu && !leader())
		t->be->upload(x, h, n);
}

/* After rank 0 has started afresh or resumed: its weights, Adam states and
 * place in the run to every rank, which must have loaded the same data. */
static void dist_start(run *r)
{
	if (p2p_dist_size() == 1)
		return;
	long mine[3] = { r->train.n, r->val.n, r->train.size }, first[3];
	memcpy(first, mine, sizeof mine);
	if (p2p_dist_bcast(first, sizeof first, 0))
		p2p_die_lib();
	if (memcmp(mine, first, sizeof mine))
		p2p_die(1, "%s: rank %d reads %ld train and %ld val samples of %ldx%ld, rank 0 "
		        "%ld and %ld of %ldx%ld: every rank needs the same data set", r->o->data,
		        p2p_dist_rank(), mine[0], mine[1], mine[2], mine[2], first[0], first[1],
		        first[2], first[2]);
	p2p_params *ps[2] = { p2p_unet_params(r->t.G), p2p_patchgan_params(r->t.D) };
	for (int i = 0; i < 2; i++) {
		dist_bcast_floats(&r->t, ps[i]->data, ps[i]->total);
		dist_bcast_floats(&r->t, ps[i]->m, ps[i]->total);
		dist_bcast_floats(&r->t, ps[i]->v, ps[i]->total);
	}
	p2p_ckpt *ck = &r->ck;
	struct {
		long epoch, batch, step, best_epoch, saved_step, gsteps, dsteps;
		double best, sums[P2P_CKPT_NSUMS];
	} at = { ck->epoch, ck->batch, ck->step, ck->best_epoch, r->saved_step, r->t.st.ga.step,
	         r->t.st.da.step, ck->best_val_l1, { 0 } };
	memcpy(at.sums, ck->sums, sizeof at.sums);
	if (p2p_dist_bcast(&at, sizeof at, 0))
		p2p_die_lib();
	ck->epoch = at.epoch;
	ck->batch = at.batch;
	ck->step = at.step;
	ck->best_epoch = at.best_epoch;
	ck->best_val_l1 = at.best;
	memcpy(ck->sums, at.sums, sizeof at.sums);
	r->saved_step = at.saved_step;
	r->t.st.ga.step = at.gsteps;
	r->t.st.da.step = at.dsteps;
}

/* A signal may reach the ranks at different steps: they stop together, at
 * the first step after which any rank had seen one. The decision is this
 * value, not stop_signal, which a signal may set in the meantime. */
static int dist_agree_stop(void)
{
	int sig = stop_signal;
	if (p2p_dist_max_int(&sig))
		p2p_die_lib();
	if (sig)
		stop_signal = sig;      /* the ranks that saw none exit as the others do */
	return sig;
}

/* Models, buffers and paths; the run folder once all of them exist. */
static void run_open(run *r, const opts *o, const p2p_backend *be)
{
	int S = r->train.size;
	r->o = o;
	r->rp = (run_paths){ path_in(o->out, "last_checkpoint.safetensors"),
	                     path_in(o->out, "G_best.safetensors"),
	                     path_in(o->out, "D_best.safetensors"),
	                     path_in(o->out, "train.jsonl"), path_in(o->out, "samples") };
	trainer_init(&r->t, o, be, S, r->train.n);
	if (leader() && p2p_mkdirs(o->out))
		p2p_die_lib();
	if (leader()) {
		/* what a run killed mid-write left beside its files */
		p2p_afile_sweep(o->out);
		p2p_afile_sweep(r->rp.samples);
	}
	r->ck = (p2p_ckpt){ .g = *p2p_unet_config(r->t.G), .d = p2p_patchgan_default(S),
	                    .n_train = r->train.n, .best_val_l1 = INFINITY, .seed = o->seed,
	                    .config = config_json(o, S) };
	r->ck.d.ndf = (int)o->ndf;
	r->saved_step = -1;
	r->vr.rows = r->val.n < GRID_ROWS ? r->val.n : GRID_ROWS;
	for (int i = 0; i < r->vr.rows; i++)
		r->vr.idx[i] = (int)((long)i * r->val.n / r->vr.rows);
	r->vr.gen = malloc((size_t)r->vr.rows * 3 * r->t.ss);
	r->perm = malloc(r->train.n * sizeof *r->perm);
	if (!r->vr.gen || !r->perm)
		p2p_die(1, "out of memory");
	r->nb = (int)((r->train.n + o->batch - 1) / o->batch);
	if (r->t.staged && o->pipeline != 0)
		r->pl = pipeline_open(&r->t, &r->train);
}

/* Go on from RUN/last_checkpoint.safetensors if there is one (and it may be
 * resumed: same architecture, size and settings), else start afresh. */
static void run_resume(run *r)
{
	const opts *o = r->o;
	const char *last = r->rp.last;
	p2p_ckpt *ck = &r->ck, old;
	struct stat sb;
	if (!o->resume) {
		remove_file(last);
		remove_file(r->rp.gbest);
		remove_file(r->rp.dbest);
		remove_file(r->rp.log);
	}
	if (!o->resume || stat(last, &sb) != 0) {
		init_weights(&r->t);
		log_load(&r->lg, r->rp.log, 0);
		return;
	}
	p2p_st *st = p2p_ckpt_open(last, &old);
	if (!st)
		p2p_die(1, "%s (pass --no-resume to start over)", p2p_errmsg());
	int S = r->train.size;
	if (old.g.size != S)
		p2p_die(1, "%s: trained on %dx%d images, the data set's are %dx%d: pass --no-resume "
		        "to start over", last, old.g.size, old.g.size, S, S);
	if (old.g.ngf != ck->g.ngf || old.g.in_ch != ck->g.in_ch || old.g.out_ch != ck->g.out_ch
	    || old.g.dropout != ck->g.dropout || old.d.ndf != ck->d.ndf
	    || old.d.in_ch != ck->d.in_ch || old.d.size != ck->d.size)
		p2p_die(1, "%s: a checkpoint of another architecture (G ngf %d, D ndf %d; this run: "
		        "ngf %d, ndf %d): pass the same widths to resume, or --no-resume to start "
		        "over", last, old.g.ngf, old.d.ndf, ck->g.ngf, ck->d.ndf);
	check_config(last, old.config, o);
	if (old.seed != o->seed)        /* the exact one: JSON numbers are doubles */
		p2p_die(1, "%s: trained with --seed %llu, this run asks for --seed %llu: pass the same "
		        "setting to resume, or --no-resume to start over", last,
		        (unsigned long long)old.seed, o->seed);
	if (old.batch > 0 && old.n_train != r->train.n)
		p2p_die(1, "%s: stopped inside an epoch of %ld train samples, the train split now "
		        "has %d: pass --no-resume to start over", last, old.n_train, r->train.n);
	if (p2p_ckpt_restore(st, last, p2p_unet_params(r->t.G), &r->t.st.ga,
	                     p2p_patchgan_params(r->t.D), &r->t.st.da))
		p2p_die_lib();
	p2p_st_free(st);
	ck->epoch = old.epoch;
	ck->batch = old.batch;
	ck->step = old.step;
	ck->best_val_l1 = old.best_val_l1;
	ck->best_epoch = old.best_epoch;
	memcpy(ck->sums, old.sums, sizeof ck->sums);
	p2p_ckpt_clear(&old);
	r->saved_step = ck->step;
	log_load(&r->lg, r->rp.log, ck->epoch);
}

/* Why to stop now, or NULL. */
static const char *stop_reason(const run *r)
{
	int sig = dist_agree_stop();
	if (sig)
		return sig == SIGINT ? "SIGINT" : sig == SIGUSR1 ? "SIGUSR1" : "SIGTERM";
	if (r->o->max_steps && r->ck.step >= r->o->max_steps)
		return "--max-steps";
	return NULL;
}

/* The epoch's end: validate, keep the best, draw the samples, log, checkpoint. */
static void epoch_end(run *r, double secs, long images, double lr_g, double lr_d)
{
	const opts *o = r->o;
	p2p_ckpt *ck = &r->ck;
	val_result *vr = &r->vr;
	long e = ck->epoch + 1;         /* from 1, for people */
	validate(&r->t, &r->val, vr);
	if (!isfinite(vr->l1)) {
		char where[32];
		snprintf(where, sizeof where, "epoch %ld", e);
		bad_number(where, "val L1", vr->l1, &r->rp, r->saved_step);
	}
	int best = vr->l1 < ck->best_val_l1;
	if (best) {
		ck->best_val_l1 = vr->l1;
		ck->best_epoch = e;
		if (leader() && (p2p_ckpt_save_g(r->rp.gbest, &ck->g, p2p_unet_params(r->t.G), e, vr->l1)
		    || p2p_ckpt_save_d(r->rp.dbest, &ck->d, p2p_patchgan_params(r->t.D), e, vr->l1)))
			p2p_die_lib();
	}
	if (o->sample_every && e % o->sample_every == 0 && leader()) {
		char name[64];
		snprintf(name, sizeof name, "epoch_%03ld.png", e);
		char *path = path_in(r->rp.samples, name);
		if (p2p_mkdirs(r->rp.samples) || save_grid(path, &r->val, vr))
			p2p_die_lib();
		free(path);
	}
	double m[P2P_CKPT_NSUMS];
	for (int i = 0; i < P2P_CKPT_NSUMS; i++)
		m[i] = ck->sums[i] / r->nb;
	cJSON *j = cJSON_CreateObject();
	cJSON_AddNumberToObject(j, "epoch", (double)e);
	cJSON_AddNumberToObject(j, "loss_d", m[P2P_LOSS_D]);
	cJSON_AddNumberToObject(j, "loss_g", m[P2P_LOSS_G]);
	cJSON_AddNumberToObject(j, "loss_g_gan", m[P2P_LOSS_GAN]);
	cJSON_AddNumberToObject(j, "loss_g_l1", m[P2P_LOSS_L1]);
	cJSON_AddNumberToObject(j, "loss_g_perc", m[P2P_LOSS_PERC]);
	cJSON_AddNumberToObject(j, "val_l1", vr->l1);
	cJSON_AddNumberToObject(j, "val_psnr", vr->psnr);
	cJSON_AddNumberToObject(j, "lr_g", lr_g);
	cJSON_AddNumberToObject(j, "lr_d", lr_d);
	cJSON_AddNumberToObject(j, "seconds", round(secs * 1000) / 1000);
	cJSON_AddNumberToObject(j, "images_per_s", secs > 0 ? round(images / secs * 100) / 100 : 0);
	char *line = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	if (!line)
		p2p_die(1, "out of memory");
	log_push(&r->lg, line);
	if (leader() && log_write(&r->lg))
		p2p_die_lib();
	ck->epoch++;
	ck->batch = 0;
	memset(ck->sums, 0, sizeof ck->sums);
	save_last(&r->t, &r->rp, ck, &r->saved_step);
	if (r->say)
		p2p_warn("epoch %ld/%ld: loss_D %.4f loss_G %.4f (L1 %.4f) val_L1 %.4f "
		         "val_PSNR %.2f dB%s, %.1f s", e, o->epochs, m[P2P_LOSS_D], m[P2P_LOSS_G], m[P2P_LOSS_L1],
		         vr->l1, vr->psnr, best ? " (best)" : "", secs);
}

/* The rest of epoch ck.epoch, from batch ck.batch on, then its end. Returns
 * why it stopped early, or NULL. */
static const char *run_epoch(run *r)
{
	const opts *o = r->o;
	p2p_ckpt *ck = &r->ck;
	long e = ck->epoch;
	int ntr = r->train.n;
	double lr_g = p2p_cosine_warm_restarts(o->lr, 0, o->t0, o->tmult, e);
	double lr_d = p2p_cosine_warm_restarts(o->lr_d, 0, o->t0, o->tmult, e);
	epoch_order(r->perm, ntr, o->seed, e);
	char label[48];
	snprintf(label, sizeof label, "epoch %ld/%ld", e + 1, o->epochs);
	int first = (int)(ck->batch * o->batch);
	p2p_progress pg;
	p2p_progress_start(&pg, label, ntr - first, r->bar);
	double t0 = p2p_now();
	long images = 0;
	while (ck->batch < r->nb) {
		int n = ntr - first < o->batch ? ntr - first : (int)o->batch;
		long lo, hi;                /* this rank's share of the batch */
		p2p_dist_share(n, p2p_dist_rank(), p2p_dist_size(), &lo, &hi);
		int mine = (int)(hi - lo);
		if (r->pl) {
			pipeline_take(r->pl, e, first, n);
		} else if (mine) {
			fill_batch(&r->t, &r->train, r->perm, e, first + (int)lo, mine);
			if (r->t.staged)
				upload_batch(&r->t, mine);
		}
		double loss[P2P_CKPT_NSUMS];
		if (o->bench)
			p2p_bench_begin(&r->bench);
		train_step(&r->t, mine, n, (uint64_t)e * ntr + first + lo, (float)lr_g, (float)lr_d,
		           loss);
		dist_average_losses(loss, P2P_CKPT_NSUMS, mine, n);
		if (o->bench) {
			if (r->t.be->sync)
				r->t.be->sync();
			p2p_bench_end(&r->bench, n);    /* the whole batch, every rank's share */
		}
		for (int i = 0; i < P2P_CKPT_NSUMS; i++)
			if (!isfinite(loss[i])) {
				static const char *names[] = { "loss_D", "loss_G", "loss_G_GAN",
				                               "loss_G_L1", "loss_G_perc" };
				char where[64];
				snprintf(where, sizeof where, "epoch %ld, step %ld", e + 1, ck->step + 1);
				p2p_progress_end(&pg);
				bad_number(where, names[i], loss[i], &r->rp, r->saved_step);
			}
		for (int i = 0; i < P2P_CKPT_NSUMS; i++)
			ck->sums[i] += loss[i];
		ck->step++;
		ck->batch++;
		first += n;
		images += n;
		char extra[64];
		snprintf(extra, sizeof extra, "D %.4f G %.4f", loss[P2P_LOSS_D], loss[P2P_LOSS_G]);
		p2p_progress_update(&pg, images, extra);
		if (ck->batch == r->nb)
			break;                  /* the epoch's end saves */
		const char *why = stop_reason(r);
		if (why || (o->checkpoint_every && ck->step % o->checkpoint_every == 0))
			save_last(&r->t, &r->rp, ck, &r->saved_step);
		if (why) {
			p2p_progress_end(&pg);
			return why;
		}
	}
	p2p_progress_end(&pg);
	epoch_end(r, p2p_now() - t0, images, lr_g, lr_d);
	return stop_reason(r);
}

/* --bench: one JSON line. A step's FLOPs, counted from the models' forward
 * FLOPs: G forward and backward (3 G); D forward and backward on real and
 * fake, then forward and backward (input gradient) on the fake (8 D); VGG16
 * forward on real and fake and backward (3 VGG). */
static void bench_report(run *r)
{
	trainer *t = &r->t;
	double f = 3.0 * p2p_unet_flops(t->G) + 8.0 * p2p_patchgan_flops(t->D);
	if (t->V)
		f += 3.0 * p2p_vgg_flops(t->V);
	int threads = r->o->threads ? (int)r->o->threads : t->cpu ? p2p_pool_threads() : 0;
	char *s = p2p_bench_json(&r->bench, "p2p-train", f, threads);
	if (!s)
		p2p_die(1, "out of memory");
	fprintf(stderr, "%s\n", s);
	free(s);
}

/* On a GPU: which one, and the backend's peak memory (weights, Adam,
 * activations, workspace), for people sizing a run. */
static void report_device(const run *r)
{
	if (r->say && strcmp(r->t.be->name, "cuda") == 0)
		p2p_warn("%s: %.0f MiB of GPU memory at most", p2p_cuda_device_name(),
		         p2p_cuda_mem_peak() / 1048576.0);
}

static void run_close(run *r)
{
	p2p_bench_free(&r->bench);
	pipeline_close(r->pl);      /* before the staging memory goes */
	free(r->perm);
	free(r->vr.gen);
	log_free(&r->lg);
	free(r->ck.config);
	trainer_free(&r->t);
	p2p_dataset_free(&r->train);
	p2p_dataset_free(&r->val);
	free(r->rp.last);
	free(r->rp.gbest);
	free(r->rp.dbest);
	free(r->rp.log);
	free(r->rp.samples);
}

int main(int argc, char **argv)
{
	p2p_cli_init(argv[0]);
	opts o;
	parse_opts(argc, argv, &o);
	p2p_cuda_set_tf32(o.tf32);
	if (p2p_dist_init(&argc, &argv))
		p2p_die_lib();
	dist_agree_seed(&o);
	if (strcmp(o.device, "cuda") == 0 && p2p_dist_bind_gpu())
		p2p_die_lib();
	const p2p_backend *be = p2p_backend_get(o.device);
	if (!be)
		p2p_die_lib();          /* "cuda: ..." names the device */
	if (o.threads > 0 && be->set_threads)
		be->set_threads((int)o.threads);
	if (p2p_image_init(argv[0]))
		p2p_die_lib();

	run r = { .say = o.progress != 0 && leader(),
	          .bar = leader() && p2p_want_progress(o.progress) };
	if (p2p_dataset_load(&r.train, o.data, "train", 0)
	    || p2p_dataset_load(&r.val, o.data, "val", r.train.size))
		p2p_die_lib();
	int S = r.train.size;
	if (S < 32 || S > 512 || (S & (S - 1)))
		p2p_die(1, "%s: the images are %dx%d; the U-Net takes a power of two from 32 to 512",
		        r.train.dir, S, S);
	run_open(&r, &o, be);
	if (leader())
		run_resume(&r);
	dist_start(&r);
	const char *why = NULL;
	int status = 0;
	if (r.ck.epoch >= o.epochs) {
		if (r.say)
			p2p_warn("%s: already %ld epochs trained (--epochs %ld): nothing to do",
			         r.rp.last, r.ck.epoch, o.epochs);
	} else if (o.max_steps && r.ck.step >= o.max_steps) {
		if (r.say)
			p2p_warn("%s: already %ld steps taken (--max-steps %ld): nothing to do",
			         r.rp.last, r.ck.step, o.max_steps);
	} else {
		if (r.saved_step >= 0 && r.say)
			p2p_warn("resuming %s at epoch %ld, step %ld", r.rp.last, r.ck.epoch + 1,
			         r.ck.step);
		catch_signals();
		while (r.ck.epoch < o.epochs && !(why = run_epoch(&r)))
			;
		if (r.ck.epoch < o.epochs) {
			if (r.say || (stop_signal && leader()))
				p2p_warn("stopped (%s) after step %ld: %s saved; run again to resume",
				         why, r.ck.step, r.rp.last);
			/* a signal: not done, and the caller (make, a job script) should know */
			status = stop_signal ? 128 + stop_signal : 0;
		} else if (r.say) {
			p2p_warn("%ld epochs done; best val L1 %.4f at epoch %ld: %s", r.ck.epoch,
			         r.ck.best_val_l1, r.ck.best_epoch, r.rp.gbest);
		}
	}
	if (o.bench && p2p_dist_rank() == 0)
		bench_report(&r);
	report_device(&r);
	run_close(&r);
	p2p_dist_finalize();
	return status;
}
