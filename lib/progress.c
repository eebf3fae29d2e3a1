#include "progress.h"

#include <stdio.h>
#include <time.h>

double p2p_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void p2p_progress_start(p2p_progress *p, const char *label, long total, int enabled)
{
	p->label = label;
	p->total = total;
	p->done = 0;
	p->enabled = enabled;
	p->t0 = p2p_now();
	p->last = 0;
}

static void fmt_time(char *buf, size_t n, double s)
{
	if (s < 0 || s > 359999)
		snprintf(buf, n, "--:--");
	else if (s >= 3600)
		snprintf(buf, n, "%d:%02d:%02d", (int)s / 3600, (int)s / 60 % 60, (int)s % 60);
	else
		snprintf(buf, n, "%02d:%02d", (int)s / 60, (int)s % 60);
}

static void draw(p2p_progress *p, const char *extra, double now)
{
	const int width = 24;
	double el = now - p->t0;
	double frac = p->total > 0 ? (double)p->done / p->total : 0;
	if (frac > 1)
		frac = 1;
	char bar[32];
	int full = (int)(frac * width);
	for (int i = 0; i < width; i++)
		bar[i] = i < full ? '#' : (i == full ? '>' : '.');
	if (full >= width)
		bar[width - 1] = '#';
	bar[width] = 0;
	double rate = el > 0 ? p->done / el : 0;
	char eta[16], spent[16];
	fmt_time(spent, sizeof spent, el);
	fmt_time(eta, sizeof eta, rate > 0 ? (p->total - p->done) / rate : -1);
	fprintf(stderr, "\r\033[K%s [%s] %ld/%ld %.1f/s %s<%s%s%s", p->label ? p->label : "",
		bar, p->done, p->total, rate, spent, eta, extra ? " " : "", extra ? extra : "");
	fflush(stderr);
}

void p2p_progress_update(p2p_progress *p, long done, const char *extra)
{
	p->done = done;
	if (!p->enabled)
		return;
	double now = p2p_now();
	if (now - p->last < 0.1 && done < p->total)
		return;
	p->last = now;
	draw(p, extra, now);
}

void p2p_progress_end(p2p_progress *p)
{
	if (!p->enabled)
		return;
	draw(p, NULL, p2p_now());
	fputc('\n', stderr);
}
