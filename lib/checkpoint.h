/* The run folder's safetensors files.
 *
 * last_checkpoint.safetensors holds everything a run needs to go on exactly
 * where it stopped: tensors G.NAME, G.adam.m.NAME, G.adam.v.NAME and the same
 * for D; metadata strings for the rest: "format" "p2pcat-train", the
 * architectures (p2p_unet_meta_add's and p2p_patchgan_meta_add's keys,
 * which do not collide), the position ("epoch" completed, "batch" done in
 * the next one, "step"), "n_train", "best_val_l1", "best_epoch", the
 * running loss sums of the epoch in progress ("sums"), the Adam step counts,
 * "seed" and "config" (the run's settings as a JSON object). Numbers are written with 17
 * significant digits, so they read back exactly. Nothing in it depends on
 * the clock: the same run gives the same bytes.
 *
 * Randomness has no running state to save: every draw is a function of
 * (seed, epoch, step, sample), see cmd/p2p-train.c.
 *
 * G_best.safetensors holds G's weights under their plain names with G's
 * architecture, D_best.safetensors D's with D's: p2p-gen needs nothing else. */
#ifndef P2P_CHECKPOINT_H
#define P2P_CHECKPOINT_H

#include <stdint.h>

#include "adam.h"
#include "models.h"
#include "safetensors.h"

#define P2P_CKPT_FORMAT "p2pcat-train"
#define P2P_CKPT_NSUMS 5    /* loss_d, loss_g, loss_g_gan, loss_g_l1, loss_g_perc */

typedef struct {
	p2p_unet_cfg g;
	p2p_patchgan_cfg d;
	long epoch;         /* epochs completed */
	long batch;         /* batches done in epoch `epoch` + 1; 0 at a boundary */
	long step;          /* optimiser steps taken, all epochs */
	long n_train;       /* train samples that batch counts in */
	double best_val_l1; /* INFINITY before the first validation */
	long best_epoch;    /* 0 before the first validation */
	double sums[P2P_CKPT_NSUMS];    /* loss sums over the epoch's batches so far */
	uint64_t seed;
	char *config;       /* JSON object; malloc'd by p2p_ckpt_open */
} p2p_ckpt;

/* Write the whole state atomically. g, d are the models' parameter sets;
 * their buffers are read from backend memory. */
int p2p_ckpt_save(const char *path, const p2p_ckpt *c, const p2p_params *g,
                  const p2p_adam *ga, const p2p_params *d, const p2p_adam *da);

/* Read a checkpoint and its metadata into c (the caller compares the
 * architectures with its own before restoring). NULL + p2p_err naming the
 * file: unreadable, truncated, not a p2p-train checkpoint, a bad value. */
p2p_st *p2p_ckpt_open(const char *path, p2p_ckpt *c);
/* Fill the parameter sets and Adam states from an opened checkpoint (both
 * built with the checkpoint's architectures); -1 + p2p_err naming the first
 * missing or mis-shaped tensor. */
int p2p_ckpt_restore(const p2p_st *st, const char *path, p2p_params *g, p2p_adam *ga,
                     p2p_params *d, p2p_adam *da);
void p2p_ckpt_clear(p2p_ckpt *c);   /* frees config */

/* G_best / D_best: weights under plain names, the architecture, and
 * "epoch" and "val_l1" for people. */
int p2p_ckpt_save_g(const char *path, const p2p_unet_cfg *cfg, const p2p_params *g,
                    long epoch, double val_l1);
int p2p_ckpt_save_d(const char *path, const p2p_patchgan_cfg *cfg, const p2p_params *d,
                    long epoch, double val_l1);

#endif
