/* Image quality scores of a prediction against its truth, as DESIGN.md
 * defines them ("Metric definitions"). Images are 8-bit, interleaved
 * (row-major, c channels), both w x h x c. */
#ifndef P2P_METRICS_H
#define P2P_METRICS_H

/* PSNR of identical images (MSE 0) and the cap on every PSNR: JSON has no
 * infinity, and a cap keeps an average over images finite. */
#define P2P_PSNR_MAX 100.0

/* SSIM's Gaussian window: sigma 1.5 truncated at 3.5 sigma, so radius 5 and
 * 11 taps (scikit-image's structural_similarity with gaussian_weights). */
#define P2P_SSIM_RADIUS 5
/* Smallest side SSIM accepts: the window must fit inside the image. */
#define P2P_SSIM_MIN_SIDE (2 * P2P_SSIM_RADIUS + 1)

typedef struct {
	double l1;      /* mean |a - b| on the [-1, 1] scale (v / 127.5 - 1) */
	double mse;     /* mean (a - b)^2 on 8-bit values */
	double psnr;    /* 10 log10(255^2 / mse), capped at P2P_PSNR_MAX */
	double ssim;    /* mean SSIM, averaged over channels */
} p2p_scores;

double p2p_metric_l1(const unsigned char *a, const unsigned char *b, long n);
double p2p_metric_mse(const unsigned char *a, const unsigned char *b, long n);
double p2p_metric_psnr(double mse);
/* Mean SSIM over the image with the border of P2P_SSIM_RADIUS cropped (as
 * scikit-image does), averaged over the c channels. -1 when a side is under
 * P2P_SSIM_MIN_SIDE or memory runs out (message set, naming no file). */
int p2p_metric_ssim(const unsigned char *a, const unsigned char *b,
                    int w, int h, int c, double *ssim);
/* All four scores; -1 as p2p_metric_ssim. */
int p2p_scores_compute(const unsigned char *a, const unsigned char *b,
                       int w, int h, int c, p2p_scores *s);

#endif
