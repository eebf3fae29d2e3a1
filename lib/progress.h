/* A progress bar on stderr: label, bar, count, rate, ETA and a caller's text.
 * Redraws at most ten times a second; does nothing when disabled. */
#ifndef P2P_PROGRESS_H
#define P2P_PROGRESS_H

typedef struct {
	const char *label;
	long total, done;
	int enabled;
	double t0, last;
} p2p_progress;

void p2p_progress_start(p2p_progress *p, const char *label, long total, int enabled);
/* extra may be NULL; e.g. "D 0.25 G 12.1". Thread-safe only from one thread. */
void p2p_progress_update(p2p_progress *p, long done, const char *extra);
/* Final redraw and newline. */
void p2p_progress_end(p2p_progress *p);
/* Monotonic seconds. */
double p2p_now(void);

#endif
