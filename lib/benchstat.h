/* Step timing for the programs' opt-in --bench output: the wall-clock and
 * process CPU seconds of each step (a training step, a generation batch),
 * summarised as medians over the steps after the first, which pays for
 * page faults and the libraries' start-up. The summary is one JSON line
 * that bench/train reads. */
#ifndef P2P_BENCHSTAT_H
#define P2P_BENCHSTAT_H

typedef struct {
	double *wall, *cpu;         /* seconds per recorded step */
	int *images;                /* images per step */
	int n, cap;
	double w0, c0;              /* the open step's start */
} p2p_bench;

/* Around each step; end records it (images: how many it did). A step that
 * cannot be recorded (no memory) is dropped, never an error. */
void p2p_bench_begin(p2p_bench *b);
void p2p_bench_end(p2p_bench *b, int images);
void p2p_bench_free(p2p_bench *b);
/* The summary, malloc'd (NULL without memory): {"bench": what, "steps",
 * "timed_steps", "seconds_per_step", "cpu_seconds_per_step",
 * "images_per_s", "gflop_per_image", "gflop_per_s", "threads"} with
 * medians over the steps after the first (all of them when there is only
 * one); images_per_s is the median of the steps' own rates. */
char *p2p_bench_json(const p2p_bench *b, const char *what, double flop_per_image, int threads);

#endif
