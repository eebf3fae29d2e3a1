/* catflw-synth: a synthetic data set in the CatFLW layout. Each image is a
 * procedurally drawn cartoon cat face; its 48 landmarks are computed from the
 * very geometry that is drawn, so the points and the picture always agree.
 *
 * Every shape is built in face coordinates (head half-width 1, y down, origin
 * at the centre of the head), bent by a small pseudo-3-D head turn, then
 * placed by a similarity transform (scale, rotation, translation). */
#include "atomic.h"
#include "cli.h"
#include "draw.h"
#include "err.h"
#include "image.h"
#include "progress.h"
#include "rng.h"

#include <getopt.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NLM 48
#define PI_F 3.14159265f

/* Landmark indices (the man page lists them; keep the two in step).
 * "Left" is the viewer's left in an upright face. */
enum {
	LM_EAR_L = 0,           /* outer base, outer edge, tip, inner edge, inner base */
	LM_EAR_R = 5,
	LM_EYE_L = 10,          /* outer corner, upper lid, inner corner, lower lid, pupil */
	LM_EYE_R = 15,
	LM_NOSE = 20,           /* bridge, top, left corner, right corner, tip */
	LM_MOUTH = 25,          /* centre, left corner, left upper lip, right upper lip,
	                           right corner, lower lip */
	LM_FOREHEAD = 31,
	LM_PAD_L = 32,
	LM_PAD_R = 33,
	LM_TOP = 34,
	LM_CONTOUR_L = 35,      /* six points, temple to jaw */
	LM_CHIN = 41,
	LM_CONTOUR_R = 42,      /* six points, jaw to temple */
};

/* Contour landmarks as angles on the head outline (degrees, y down: 90 is
 * the chin), in landmark order from LM_CONTOUR_L to the last right point. */
static const float contour_deg[13] = {
	190, 172, 154, 136, 118, 104, 90, 76, 62, 44, 26, 8, -10,
};

typedef struct {
	const char *out;
	long count;
	int size;
	unsigned long long seed;
	int jobs;               /* 0: OpenMP's default */
	int progress;           /* -1 auto, 0 off, 1 on */
	int quiet;
	int shard, nshards;
} options;

enum { COAT_SOLID, COAT_TABBY, COAT_BICOLOUR, COAT_CALICO, COAT_POINT, NCOATS };

/* Everything random about one picture, drawn in a fixed order. */
typedef struct {
	int size;
	/* head outline */
	float htop, hbot, sexp, cheek;
	/* ears: angles of the bases on the outline, length, tilt, bulge, tip */
	float ear_to[2], ear_ti[2], ear_len[2], ear_tilt[2], ear_bulge, ear_round;
	/* eyes */
	float eye_x, eye_y, eye_w, eye_h, eye_lo, eye_slant, pupil, gaze_x, gaze_y;
	float iris[2][3];
	/* nose and mouth */
	float nose_y, nose_w, nose_h, mouth_len, mouth_w, mouth_depth, mouth_corner, lip;
	float nose_col[3];
	/* coat */
	int coat;
	float base[3], dark[3], light[3], patch[3], lining[3], mouth_col[3], whisker_col[3];
	float muzzle_light, outline;
	/* whiskers */
	int nwhisk;
	float whisk_len, whisk_spread, whisk_droop;
	/* pose */
	float yaw, pitch, angle, scale;
	p2p_affine m, inv;
	float light_x, light_y;  /* towards the light, image axes */
	int bg;
} cat;

/* Per-thread buffers, reused from one image to the next. */
typedef struct {
	p2p_canvas cv;
	float *fur;             /* coverage of fur (head, ears, body) */
	float *small;           /* low-resolution background, 3 channels */
	float *wide;            /* the same, upsampled across only */
	p2p_image img;
	p2p_path a, b, c;
	p2p_noise nz;
} workspace;

/* ---- random helpers ---- */

static float U(p2p_rng *r, float lo, float hi)
{
	return (float)p2p_rng_range(r, lo, hi);
}

static int chance(p2p_rng *r, double p)
{
	return p2p_rng_uniform(r) < p;
}

static void jitter(p2p_rng *r, const float in[3], float amount, float out[3])
{
	for (int i = 0; i < 3; i++) {
		float v = in[i] + U(r, -amount, amount);
		out[i] = v < 0 ? 0 : v > 1 ? 1 : v;
	}
}

static void mix(const float a[3], const float b[3], float t, float out[3])
{
	for (int i = 0; i < 3; i++)
		out[i] = a[i] + (b[i] - a[i]) * t;
}

static void scale3(const float a[3], float k, float out[3])
{
	for (int i = 0; i < 3; i++) {
		float v = a[i] * k;
		out[i] = v > 1 ? 1 : v;
	}
}

static const float WHITE[3] = { 0.96f, 0.95f, 0.93f };
static const float BLACK[3] = { 0.06f, 0.05f, 0.05f };

/* Coat colours, from dark to light. */
static const float furs[][3] = {
	{ 0.09f, 0.08f, 0.08f },        /* black */
	{ 0.34f, 0.22f, 0.14f },        /* chocolate */
	{ 0.48f, 0.37f, 0.25f },        /* brown */
	{ 0.46f, 0.48f, 0.53f },        /* blue-grey */
	{ 0.66f, 0.65f, 0.64f },        /* silver */
	{ 0.84f, 0.50f, 0.21f },        /* red */
	{ 0.90f, 0.70f, 0.45f },        /* ginger-cream */
	{ 0.93f, 0.85f, 0.70f },        /* cream */
	{ 0.95f, 0.94f, 0.91f },        /* white */
};
#define NFURS (int)(sizeof furs / sizeof furs[0])

static const float irises[][3] = {
	{ 0.42f, 0.68f, 0.22f },        /* green */
	{ 0.62f, 0.78f, 0.30f },        /* light green */
	{ 0.90f, 0.78f, 0.18f },        /* yellow */
	{ 0.90f, 0.58f, 0.12f },        /* amber */
	{ 0.80f, 0.42f, 0.12f },        /* copper */
	{ 0.58f, 0.60f, 0.25f },        /* hazel */
	{ 0.35f, 0.60f, 0.90f },        /* blue */
};
#define NIRISES (int)(sizeof irises / sizeof irises[0])

/* Backgrounds: walls, floors, wood and fabric of a room, out of focus. */
static const float rooms[][3] = {
	{ 0.82f, 0.78f, 0.70f },        /* cream */
	{ 0.72f, 0.66f, 0.56f },        /* beige */
	{ 0.63f, 0.62f, 0.59f },        /* warm grey */
	{ 0.56f, 0.59f, 0.63f },        /* cool grey */
	{ 0.62f, 0.68f, 0.73f },        /* pale blue */
	{ 0.60f, 0.66f, 0.55f },        /* sage */
	{ 0.68f, 0.53f, 0.45f },        /* terracotta */
	{ 0.55f, 0.42f, 0.31f },        /* wood */
	{ 0.40f, 0.37f, 0.35f },        /* shadow */
};
#define NROOMS (int)(sizeof rooms / sizeof rooms[0])

static const float noses[][3] = {
	{ 0.88f, 0.56f, 0.60f },        /* pink */
	{ 0.74f, 0.42f, 0.45f },        /* rose */
	{ 0.62f, 0.33f, 0.28f },        /* brick */
	{ 0.20f, 0.15f, 0.15f },        /* dark */
	{ 0.45f, 0.44f, 0.50f },        /* slate */
};

/* A house cat of no breed: any coat, any ground colour. */
static void moggy_coat(p2p_rng *r, int *coat, int *f)
{
	double u = p2p_rng_uniform(r);
	*coat = u < 0.22 ? COAT_SOLID : u < 0.55 ? COAT_TABBY : u < 0.77 ? COAT_BICOLOUR
		: u < 0.90 ? COAT_CALICO : COAT_POINT;
	switch (*coat) {
	case COAT_TABBY:        /* brown, grey, silver, red, cream tabbies */
		*f = (int[]){ 2, 3, 4, 5, 6, 2, 5 }[p2p_rng_below(r, 7)];
		break;
	case COAT_CALICO:       /* a white or black ground under patches */
		*f = chance(r, 0.5) ? 8 : 0;
		break;
	case COAT_POINT:
		*f = 7;
		break;
	default:
		*f = (int)p2p_rng_below(r, NFURS);
	}
}

/* The coat's colours, from its kind and ground colour furs[f]. */
static void pick_coat(cat *k, p2p_rng *r, int coat, int f)
{
	k->coat = coat;
	jitter(r, furs[f], 0.05f, k->base);
	float lum = 0.3f * k->base[0] + 0.59f * k->base[1] + 0.11f * k->base[2];
	/* stripes darker; on dark coats a lighter shade reads better */
	if (lum > 0.25f)
		scale3(k->base, U(r, 0.35f, 0.55f), k->dark);
	else
		scale3(k->base, U(r, 1.8f, 2.4f), k->dark);
	mix(k->base, WHITE, U(r, 0.35f, 0.7f), k->light);
	if (k->coat == COAT_CALICO) {
		static const float red[3] = { 0.86f, 0.52f, 0.20f };
		jitter(r, red, 0.06f, k->patch);
		if (f == 0)
			mix(k->base, WHITE, 0.2f, k->light);
	} else if (k->coat == COAT_POINT) {
		static const float seal[3] = { 0.30f, 0.22f, 0.17f }, blue[3] = { 0.42f, 0.42f, 0.47f };
		jitter(r, chance(r, 0.6) ? seal : blue, 0.05f, k->patch);
	} else {
		memcpy(k->patch, WHITE, sizeof WHITE);
	}
	k->muzzle_light = k->coat == COAT_POINT ? 0 : U(r, 0.2f, 0.6f);
	static const float pink[3] = { 0.93f, 0.66f, 0.68f };
	mix(pink, k->base, U(r, 0.1f, 0.45f), k->lining);
	/* whiskers light, except on the palest coats */
	if (lum > 0.8f)
		jitter(r, (float[]){ 0.55f, 0.52f, 0.50f }, 0.08f, k->whisker_col);
	else
		jitter(r, WHITE, 0.04f, k->whisker_col);
	mix(BLACK, k->base, U(r, 0.0f, 0.3f), k->mouth_col);
	k->outline = U(r, 0.25f, 0.55f);
}

typedef struct { float lo, hi; } span;

/* A breed ties the shape of the head, ears and eyes to the coat and eye
 * colours, as real breeds do. The landmarks show the shape, so they tell
 * something of the colours as well; the moggy, the last, ties nothing. */
typedef struct {
	int percent;
	span htop, hbot, sexp, cheek;           /* head */
	span ear_len, ear_tilt, ear_round;
	span eye_w, eye_open, eye_slant;        /* height and slant per width */
	span nose_w;
	int coat, fur[3];       /* the coat on one of these furs[] (-1 ends) */
	int iris[3];            /* and eyes of one of these irises[] */
} breed;

static const breed breeds[] = {
	{ 12, /* Siamese: long wedge head, very big flared ears, slanted blue eyes */
	  { .90f, .95f }, { .94f, 1.0f }, { 1.9f, 2.05f }, { 0, .02f },
	  { .92f, 1.02f }, { 26, 36 }, { .06f, .12f },
	  { .17f, .20f }, { .42f, .55f }, { .28f, .38f }, { .09f, .11f },
	  COAT_POINT, { 7, -1 }, { 6, -1 } },
	{ 12, /* British Blue: round, full cheeks, small round ears, big copper eyes */
	  { .76f, .80f }, { .78f, .82f }, { 2.4f, 2.6f }, { .12f, .16f },
	  { .40f, .50f }, { 30, 38 }, { .25f, .32f },
	  { .21f, .24f }, { .88f, .98f }, { 0, .06f }, { .14f, .17f },
	  COAT_SOLID, { 3, -1 }, { 3, 4, -1 } },
	{ 10, /* Bombay: black, rounded, mid-sized ears, round gold eyes */
	  { .80f, .84f }, { .84f, .88f }, { 2.1f, 2.3f }, { .06f, .10f },
	  { .58f, .66f }, { 10, 18 }, { .16f, .22f },
	  { .20f, .23f }, { .82f, .94f }, { .05f, .12f }, { .11f, .14f },
	  COAT_SOLID, { 0, -1 }, { 2, 3, 4 } },
	{ 14, /* brown tabby of the Maine Coon kind: tall upright ears, long square muzzle */
	  { .86f, .90f }, { .92f, .97f }, { 2.4f, 2.6f }, { 0, .04f },
	  { .86f, .96f }, { 2, 9 }, { .06f, .10f },
	  { .16f, .18f }, { .58f, .70f }, { .15f, .25f }, { .14f, .17f },
	  COAT_TABBY, { 2, -1 }, { 0, 1, 5 } },
	{ 14, /* ginger tabby: round, middling ears, amber eyes */
	  { .80f, .86f }, { .82f, .88f }, { 2.0f, 2.2f }, { .06f, .12f },
	  { .64f, .72f }, { 14, 22 }, { .14f, .20f },
	  { .17f, .20f }, { .70f, .82f }, { .10f, .20f }, { .12f, .15f },
	  COAT_TABBY, { 5, 6, -1 }, { 3, 2, -1 } },
	{ 12, /* tuxedo: black and white, small eyes */
	  { .82f, .88f }, { .84f, .90f }, { 2.1f, 2.3f }, { 0, .06f },
	  { .70f, .78f }, { 18, 26 }, { .12f, .18f },
	  { .14f, .16f }, { .62f, .75f }, { .15f, .25f }, { .10f, .13f },
	  COAT_BICOLOUR, { 0, -1 }, { 0, 2, -1 } },
	{ 10, /* calico on white: short upright rounded ears, long jaw */
	  { .80f, .84f }, { .88f, .94f }, { 2.2f, 2.4f }, { .03f, .08f },
	  { .50f, .58f }, { 4, 10 }, { .24f, .30f },
	  { .18f, .21f }, { .75f, .88f }, { .05f, .15f }, { .12f, .15f },
	  COAT_CALICO, { 8, -1 }, { 3, 2, 5 } },
	{ 6, /* Turkish Angora: white, tall ears, large round blue or green eyes */
	  { .86f, .90f }, { .86f, .92f }, { 2.0f, 2.15f }, { 0, .04f },
	  { .78f, .88f }, { 10, 18 }, { .10f, .14f },
	  { .21f, .24f }, { .88f, .98f }, { 0, .08f }, { .10f, .13f },
	  COAT_SOLID, { 8, -1 }, { 6, 1, -1 } },
	{ 10, /* moggy: anything */
	  { .78f, .92f }, { .80f, .95f }, { 2.0f, 2.5f }, { 0, .14f },
	  { .50f, .90f }, { 5, 35 }, { .08f, .30f },
	  { .15f, .23f }, { .45f, .95f }, { 0, .35f }, { .10f, .17f },
	  -1, { -1 }, { -1 } },
};
#define NBREEDS (int)(sizeof breeds / sizeof breeds[0])

static float draw_span(p2p_rng *r, span s)
{
	return U(r, s.lo, s.hi);
}

/* One of a -1-terminated list of up to three. */
static int draw_of(p2p_rng *r, const int *list)
{
	int n = 0;
	while (n < 3 && list[n] >= 0)
		n++;
	return list[p2p_rng_below(r, (uint64_t)n)];
}

static const breed *draw_breed(p2p_rng *r)
{
	int u = (int)p2p_rng_below(r, 100);
	for (int i = 0; i < NBREEDS - 1; i++) {
		if (u < breeds[i].percent)
			return &breeds[i];
		u -= breeds[i].percent;
	}
	return &breeds[NBREEDS - 1];
}

static void cat_random(cat *k, p2p_rng *r, int size)
{
	memset(k, 0, sizeof *k);
	k->size = size;
	const breed *br = draw_breed(r);
	k->htop = draw_span(r, br->htop);
	k->hbot = draw_span(r, br->hbot);
	k->sexp = draw_span(r, br->sexp);
	k->cheek = draw_span(r, br->cheek);
	for (int s = 0; s < 2; s++) {   /* the ears differ a little */
		float base_o = s ? k->ear_to[0] : U(r, 205, 222), base_i = s ? k->ear_ti[0] : U(r, 240, 256);
		k->ear_to[s] = base_o + (s ? U(r, -3, 3) : 0);
		k->ear_ti[s] = base_i + (s ? U(r, -3, 3) : 0);
		k->ear_len[s] = s ? k->ear_len[0] * U(r, 0.93f, 1.07f) : draw_span(r, br->ear_len);
		k->ear_tilt[s] = s ? k->ear_tilt[0] + U(r, -5, 5) : draw_span(r, br->ear_tilt);
	}
	k->ear_bulge = U(r, -0.02f, 0.12f);
	k->ear_round = draw_span(r, br->ear_round);
	k->eye_x = U(r, 0.32f, 0.44f);
	k->eye_y = U(r, -0.14f, 0.04f);
	k->eye_w = draw_span(r, br->eye_w);
	k->eye_h = k->eye_w * draw_span(r, br->eye_open);
	k->eye_lo = k->eye_h * U(r, 0.75f, 1.05f);
	k->eye_slant = k->eye_w * draw_span(r, br->eye_slant);
	k->pupil = U(r, 0.08f, 0.85f);
	k->gaze_x = U(r, -1, 1);
	k->gaze_y = U(r, -1, 1);
	k->nose_y = U(r, 0.26f, 0.38f);
	k->nose_w = draw_span(r, br->nose_w);
	k->nose_h = k->nose_w * U(r, 0.6f, 0.95f);
	k->mouth_len = U(r, 0.05f, 0.12f);
	k->mouth_w = U(r, 0.12f, 0.22f);
	k->mouth_depth = U(r, 0.03f, 0.08f);
	k->mouth_corner = U(r, -0.02f, 0.04f);
	k->lip = U(r, 0.05f, 0.10f);
	int coat, f, e;
	if (br->coat < 0) {
		moggy_coat(r, &coat, &f);
		e = coat == COAT_POINT ? 6 : (int)p2p_rng_below(r, NIRISES);
	} else {
		coat = br->coat;
		f = draw_of(r, br->fur);
		e = draw_of(r, br->iris);
	}
	pick_coat(k, r, coat, f);
	jitter(r, irises[e], 0.05f, k->iris[0]);
	if (chance(r, 0.05))        /* odd eyes */
		e = 6;
	jitter(r, irises[e], 0.05f, k->iris[1]);
	int n = (int)p2p_rng_below(r, 5);
	if (k->coat == COAT_POINT && n == 3)
		n = 0;
	jitter(r, noses[n], 0.04f, k->nose_col);
	k->nwhisk = 3 + (int)p2p_rng_below(r, 3);
	k->whisk_len = U(r, 0.8f, 1.4f);
	k->whisk_spread = U(r, 0.5f, 0.8f);
	k->whisk_droop = U(r, -0.05f, 0.25f);
	/* pose: turns and tilts within what annotators accept as a frontal face */
	k->yaw = U(r, -0.3f, 0.3f);
	k->pitch = U(r, -0.15f, 0.15f);
	k->angle = (U(r, -15, 15) + U(r, -15, 15)) * PI_F / 180;
	float la = U(r, -2.6f, -0.5f);   /* light from above, left or right */
	k->light_x = cosf(la);
	k->light_y = sinf(la);
	k->bg = (int)p2p_rng_below(r, 5);
}

/* ---- geometry in face coordinates ---- */

/* The head outline at angle t (radians, y down). */
static void head_point(const cat *k, float t, float *u, float *v)
{
	float c = cosf(t), s = sinf(t), e = 2 / k->sexp;
	float x = copysignf(powf(fabsf(c), e), c), y = copysignf(powf(fabsf(s), e), s);
	float w = 1;
	if (s > 0) {            /* fuller cheeks below the eyes */
		float a = atan2f(s, fabsf(c)) - 0.6f;
		w += k->cheek * expf(-a * a / 0.12f);
	}
	*u = x * w;
	*v = y * (s < 0 ? k->htop : k->hbot);
}

static void head_deg(const cat *k, float deg, float *u, float *v)
{
	head_point(k, deg * PI_F / 180, u, v);
}

/* Pseudo-3-D turn: points shift by their depth on a rounded head with a
 * muzzle, so the nose moves more than the eyes and the outline stays. */
static void pose_map(const cat *k, float u, float v, float *x, float *y)
{
	float z = 0.55f * fmaxf(0, 1 - u * u - v * v);
	float dm = u * u + (v - 0.42f) * (v - 0.42f);
	z += 0.2f * expf(-dm / 0.05f);
	u += sinf(k->yaw) * z;
	v += sinf(k->pitch) * z;
	const p2p_affine *m = &k->m;
	*x = (float)(m->a * u + m->b * v + m->c);
	*y = (float)(m->d * u + m->e * v + m->f);
}

static void path_pose(const cat *k, p2p_path *p)
{
	for (int i = 0; i < p->n; i++)
		pose_map(k, p->xy[2 * i], p->xy[2 * i + 1], &p->xy[2 * i], &p->xy[2 * i + 1]);
}

static void quad_at(const float p0[2], const float c[2], const float p1[2], float t, float out[2])
{
	float s = 1 - t;
	out[0] = s * s * p0[0] + 2 * s * t * c[0] + t * t * p1[0];
	out[1] = s * s * p0[1] + 2 * s * t * c[1] + t * t * p1[1];
}

/* Ear side: 0 left, 1 right (mirrored). The polygon goes outer base, outer
 * edge, rounded tip, inner edge, inner base, then closes inside the head. */
typedef struct {
	float o[2], i[2], t[2];         /* bases and the sharp tip */
	float co[2], ci[2];             /* edge controls */
	float t1[2], t2[2];             /* where the rounding of the tip starts and ends */
} ear_geom;

static void ear_geometry(const cat *k, int side, ear_geom *g)
{
	float sx = side ? -1 : 1;       /* mirror the left ear's angles */
	float to = k->ear_to[side], ti = k->ear_ti[side];
	if (side) {
		to = 180 - to;
		ti = 180 - ti;
	}
	head_deg(k, to, &g->o[0], &g->o[1]);
	head_deg(k, ti, &g->i[0], &g->i[1]);
	float mx = 0.5f * (g->o[0] + g->i[0]), my = 0.5f * (g->o[1] + g->i[1]);
	float tilt = k->ear_tilt[side] * PI_F / 180, len = k->ear_len[side];
	g->t[0] = mx - sx * sinf(tilt) * len;
	g->t[1] = my - cosf(tilt) * len;
	/* edges bulge outwards from the ear's own middle */
	float cx = (g->o[0] + g->i[0] + g->t[0]) / 3, cy = (g->o[1] + g->i[1] + g->t[1]) / 3;
	const float *ends[2][2] = { { g->o, g->t }, { g->t, g->i } };
	float *ctl[2] = { g->co, g->ci };
	for (int e = 0; e < 2; e++) {
		float ex = 0.5f * (ends[e][0][0] + ends[e][1][0]), ey = 0.5f * (ends[e][0][1] + ends[e][1][1]);
		float dx = ex - cx, dy = ey - cy, d = hypotf(dx, dy);
		ctl[e][0] = ex + dx / d * k->ear_bulge * len;
		ctl[e][1] = ey + dy / d * k->ear_bulge * len;
	}
	float r = k->ear_round;
	quad_at(g->o, g->co, g->t, 1 - r, g->t1);
	quad_at(g->t, g->ci, g->i, r, g->t2);
}

static void ear_landmarks(const cat *k, int side, float *lm)
{
	ear_geom g;
	ear_geometry(k, side, &g);
	float *p = lm + 2 * (side ? LM_EAR_R : LM_EAR_L);
	memcpy(p, g.o, sizeof g.o);
	quad_at(g.o, g.co, g.t, 0.5f * (1 - k->ear_round), p + 2);
	quad_at(g.t1, g.t, g.t2, 0.5f, p + 4);
	quad_at(g.t, g.ci, g.i, 0.5f + 0.5f * k->ear_round, p + 6);
	memcpy(p + 8, g.i, sizeof g.i);
}

/* The ear outline (inset > 0: the lining inside it). */
static void ear_path(const cat *k, int side, float inset, p2p_path *p)
{
	ear_geom g;
	ear_geometry(k, side, &g);
	p2p_path_clear(p);
	if (inset > 0) {        /* shrink towards a point low in the ear */
		float cx = 0.5f * (g.o[0] + g.i[0]) * 0.8f + g.t[0] * 0.2f;
		float cy = 0.5f * (g.o[1] + g.i[1]) * 0.8f + g.t[1] * 0.2f + 0.08f;
		float *pts[7] = { g.o, g.i, g.t, g.co, g.ci, g.t1, g.t2 };
		for (int j = 0; j < 7; j++) {
			pts[j][0] = cx + (pts[j][0] - cx) * (1 - inset);
			pts[j][1] = cy + (pts[j][1] - cy) * (1 - inset);
		}
	}
	/* the outer edge up to the rounding, the tip, the inner edge down */
	for (int j = 0; j <= 12; j++) {
		float q[2];
		quad_at(g.o, g.co, g.t, (1 - k->ear_round) * j / 12, q);
		p2p_path_add(p, q[0], q[1]);
	}
	for (int j = 1; j <= 8; j++) {
		float q[2];
		quad_at(g.t1, g.t, g.t2, j / 8.0f, q);
		p2p_path_add(p, q[0], q[1]);
	}
	for (int j = 1; j <= 12; j++) {
		float q[2];
		quad_at(g.t, g.ci, g.i, k->ear_round + (1 - k->ear_round) * j / 12, q);
		p2p_path_add(p, q[0], q[1]);
	}
	if (inset <= 0) {       /* close inside the head, which covers it */
		p2p_path_add(p, g.i[0] * 0.7f, g.i[1] * 0.7f + 0.1f);
		p2p_path_add(p, g.o[0] * 0.7f, g.o[1] * 0.7f + 0.1f);
	}
}

typedef struct {
	float oc[2], ic[2], cu[2], cl[2];       /* corners and lid controls */
	float pupil[2];
} eye_geom;

static void eye_geometry(const cat *k, int side, eye_geom *g)
{
	float sx = side ? 1 : -1;
	float cx = sx * k->eye_x, cy = k->eye_y;
	/* the outer corner sits higher: the slant of a cat's eye */
	g->oc[0] = cx + sx * k->eye_w;
	g->oc[1] = cy - 0.5f * k->eye_slant;
	g->ic[0] = cx - sx * k->eye_w;
	g->ic[1] = cy + 0.5f * k->eye_slant;
	/* a quadratic's middle lies halfway to its control */
	g->cu[0] = cx - sx * 0.1f * k->eye_w;
	g->cu[1] = cy - 2 * k->eye_h;
	g->cl[0] = cx + sx * 0.05f * k->eye_w;
	g->cl[1] = cy + 2 * k->eye_lo;
	g->pupil[0] = cx + k->gaze_x * 0.3f * k->eye_w;
	g->pupil[1] = cy + k->gaze_y * 0.2f * k->eye_h;
}

static void eye_landmarks(const cat *k, int side, float *lm)
{
	eye_geom g;
	eye_geometry(k, side, &g);
	float *p = lm + 2 * (side ? LM_EYE_R : LM_EYE_L);
	memcpy(p, g.oc, sizeof g.oc);
	quad_at(g.oc, g.cu, g.ic, 0.5f, p + 2);
	memcpy(p + 4, g.ic, sizeof g.ic);
	quad_at(g.ic, g.cl, g.oc, 0.5f, p + 6);
	memcpy(p + 8, g.pupil, sizeof g.pupil);
}

/* The eye outline grown by grow about its middle. */
static void eye_path(const cat *k, int side, float grow, p2p_path *p)
{
	eye_geom g;
	eye_geometry(k, side, &g);
	float mx = 0.5f * (g.oc[0] + g.ic[0]), my = 0.5f * (g.oc[1] + g.ic[1]);
	p2p_path_clear(p);
	for (int j = 0; j < 16; j++) {
		float q[2];
		quad_at(g.oc, g.cu, g.ic, j / 16.0f, q);
		p2p_path_add(p, mx + (q[0] - mx) * grow, my + (q[1] - my) * grow);
	}
	for (int j = 0; j < 16; j++) {
		float q[2];
		quad_at(g.ic, g.cl, g.oc, j / 16.0f, q);
		p2p_path_add(p, mx + (q[0] - mx) * grow, my + (q[1] - my) * grow);
	}
}

/* Nose: a rounded triangle, point down. */
static void nose_corners(const cat *k, float l[2], float r[2], float b[2])
{
	l[0] = -k->nose_w;
	l[1] = k->nose_y - 0.45f * k->nose_h;
	r[0] = k->nose_w;
	r[1] = l[1];
	b[0] = 0;
	b[1] = k->nose_y + 0.55f * k->nose_h;
}

static void lerp2(const float a[2], const float b[2], float t, float out[2])
{
	out[0] = a[0] + (b[0] - a[0]) * t;
	out[1] = a[1] + (b[1] - a[1]) * t;
}

static void nose_path(const cat *k, p2p_path *p)
{
	float c[3][2];
	nose_corners(k, c[0], c[1], c[2]);
	p2p_path_clear(p);
	for (int j = 0; j < 3; j++) {   /* round each corner with a quadratic */
		const float *prev = c[(j + 2) % 3], *cur = c[j], *next = c[(j + 1) % 3];
		float a[2], b[2];
		lerp2(cur, prev, 0.35f, a);
		lerp2(cur, next, 0.35f, b);
		for (int i = 0; i <= 8; i++) {
			float q[2];
			quad_at(a, cur, b, i / 8.0f, q);
			p2p_path_add(p, q[0], q[1]);
		}
	}
}

static void nose_landmarks(const cat *k, float *lm)
{
	float c[3][2];
	nose_corners(k, c[0], c[1], c[2]);
	float *p = lm + 2 * LM_NOSE;
	p[0] = 0;
	p[1] = k->eye_y + 0.3f * k->eye_slant + 0.04f;       /* between the eyes */
	p[2] = 0;
	p[3] = c[0][1];
	for (int j = 0; j < 3; j++) {   /* the middle of each rounded corner */
		const float *prev = c[(j + 2) % 3], *cur = c[j], *next = c[(j + 1) % 3];
		float a[2], b[2];
		lerp2(cur, prev, 0.35f, a);
		lerp2(cur, next, 0.35f, b);
		quad_at(a, cur, b, 0.5f, p + 4 + 2 * j);
	}
}

/* Mouth: centre below the nose, two upper lips curving to the corners. */
typedef struct {
	float top[2], mc[2], lc[2], rc[2], lctl[2], rctl[2], lip[2];
} mouth_geom;

static void mouth_geometry(const cat *k, mouth_geom *g)
{
	float l[2], r[2];
	nose_corners(k, l, r, g->top);
	g->mc[0] = 0;
	g->mc[1] = g->top[1] + k->mouth_len;
	g->lc[0] = -k->mouth_w;
	g->rc[0] = k->mouth_w;
	g->lc[1] = g->rc[1] = g->mc[1] + k->mouth_corner;
	g->lctl[0] = -0.5f * k->mouth_w;
	g->rctl[0] = 0.5f * k->mouth_w;
	g->lctl[1] = g->rctl[1] = g->mc[1] + 2 * k->mouth_depth;
	g->lip[0] = 0;
	g->lip[1] = g->mc[1] + k->mouth_depth + k->lip;
}

static void mouth_landmarks(const cat *k, float *lm)
{
	mouth_geom g;
	mouth_geometry(k, &g);
	float *p = lm + 2 * LM_MOUTH;
	memcpy(p, g.mc, sizeof g.mc);
	memcpy(p + 2, g.lc, sizeof g.lc);
	quad_at(g.mc, g.lctl, g.lc, 0.5f, p + 4);
	quad_at(g.mc, g.rctl, g.rc, 0.5f, p + 6);
	memcpy(p + 8, g.rc, sizeof g.rc);
	memcpy(p + 10, g.lip, sizeof g.lip);
}

static void pad_centre(const cat *k, int side, float out[2])
{
	mouth_geom g;
	mouth_geometry(k, &g);
	out[0] = (side ? 1 : -1) * (0.75f * k->mouth_w + 0.08f);
	out[1] = g.mc[1] - 0.03f;
}

/* All 48 points in face coordinates. */
static void face_landmarks(const cat *k, float *lm)
{
	ear_landmarks(k, 0, lm);
	ear_landmarks(k, 1, lm);
	eye_landmarks(k, 0, lm);
	eye_landmarks(k, 1, lm);
	nose_landmarks(k, lm);
	mouth_landmarks(k, lm);
	lm[2 * LM_FOREHEAD] = 0;
	lm[2 * LM_FOREHEAD + 1] = 0.5f * (-k->htop) + 0.5f * (k->eye_y - k->eye_h);
	pad_centre(k, 0, lm + 2 * LM_PAD_L);
	pad_centre(k, 1, lm + 2 * LM_PAD_R);
	head_deg(k, -90, &lm[2 * LM_TOP], &lm[2 * LM_TOP + 1]);
	for (int j = 0; j < 13; j++)
		head_deg(k, contour_deg[j], &lm[2 * (LM_CONTOUR_L + j)], &lm[2 * (LM_CONTOUR_L + j) + 1]);
}

/* ---- placement ---- */

/* Scale, rotation and position; some faces run partly out of the frame. */
static void place(cat *k, p2p_rng *r, const float *lm)
{
	float S = (float)k->size;
	/* the face (ears to chin is about 2.8 units) fills 35-85% of the height */
	k->scale = S * U(r, 0.4f, 0.85f) / 2.8f;
	k->m = p2p_affine_similarity(k->scale, k->angle, 0, 0);
	float x0 = 1e30f, x1 = -1e30f, y0 = 1e30f, y1 = -1e30f;
	for (int i = 0; i < NLM; i++) {
		float x, y;
		pose_map(k, lm[2 * i], lm[2 * i + 1], &x, &y);
		x0 = fminf(x0, x); x1 = fmaxf(x1, x);
		y0 = fminf(y0, y); y1 = fmaxf(y1, y);
	}
	float over = chance(r, 0.15) ? U(r, 0.05f, 0.2f) : 0;
	float ox = over * (x1 - x0), oy = over * (y1 - y0);
	/* the range of shifts that keeps all but `over` of the face inside */
	float lo_x = -x0 - ox, hi_x = S - x1 + ox, lo_y = -y0 - oy, hi_y = S - y1 + oy;
	float tx = lo_x < hi_x ? U(r, lo_x, hi_x) : 0.5f * (lo_x + hi_x);
	float ty = lo_y < hi_y ? U(r, lo_y, hi_y) : 0.5f * (lo_y + hi_y);
	k->m = p2p_affine_similarity(k->scale, k->angle, tx, ty);
	k->inv = p2p_affine_invert(k->m);
}

/* ---- painting ---- */

static void fill_pose(workspace *w, const cat *k, p2p_path *p, const float rgb[3], float alpha)
{
	path_pose(k, p);
	p2p_fill(&w->cv, p, rgb, alpha);
}

/* A soft-edged ellipse in face coordinates: layers of growing size. */
static void soft_ellipse(workspace *w, const cat *k, float cx, float cy, float rx, float ry,
                         float angle, const float rgb[3], float alpha, float soft)
{
	int layers = soft > 0.5f ? 8 : 4;
	for (int l = 0; l < layers; l++) {
		float g = 1 + soft * (l - 0.5f * (layers - 1)) / layers;
		p2p_path_clear(&w->a);
		p2p_path_ellipse(&w->a, cx, cy, rx * g, ry * g, angle, 48);
		fill_pose(w, k, &w->a, rgb, 1 - powf(1 - alpha, 1.0f / layers));
	}
}

/* A tapered stroke along a quadratic curve, in face coordinates. */
static void stroke_quad(workspace *w, const cat *k, const float p0[2], const float c[2],
                        const float p1[2], float w0, float w1, const float rgb[3], float alpha)
{
	p2p_path_clear(&w->b);
	p2p_path_quad(&w->b, p0[0], p0[1], c[0], c[1], p1[0], p1[1], 16);
	path_pose(k, &w->b);
	p2p_path_stroke(&w->a, &w->b, w0 * k->scale, w1 * k->scale, 1);
	p2p_fill(&w->cv, &w->a, rgb, alpha);
}

static float clampf(float v, float lo, float hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* Background: a low-resolution field (soft, like a blurred room behind the
 * cat), upsampled, then out-of-focus discs on some of them. */
static void draw_background(workspace *w, const cat *k, p2p_rng *r)
{
	int S = k->size, L = S / 4 < 16 ? 16 : S / 4;
	/* rooms are mostly muted: household colours, shifted a little and
	 * washed out further, a second one near the first */
	float c1[3], c2[3], c3[3];
	jitter(r, rooms[p2p_rng_below(r, NROOMS)], 0.08f, c1);
	for (int i = 0; i < 3; i++)
		c2[i] = clampf(c1[i] + U(r, -0.15f, 0.15f), 0.03f, 1);
	jitter(r, rooms[p2p_rng_below(r, NROOMS)], 0.08f, c3);
	float desat = U(r, 0.0f, 0.5f);
	float g1 = (c1[0] + c1[1] + c1[2]) / 3, g2 = (c2[0] + c2[1] + c2[2]) / 3;
	for (int i = 0; i < 3; i++) {
		c1[i] += (g1 - c1[i]) * desat;
		c2[i] += (g2 - c2[i]) * desat;
	}
	float freq = U(r, 1.5f, 5), ang = U(r, 0, PI_F), ca = cosf(ang), sa = sinf(ang);
	float period = U(r, 4, 14), split = U(r, 0.45f, 0.8f);
	int type = k->bg;
	for (int y = 0; y < L; y++)
		for (int x = 0; x < L; x++) {
			float u = (float)x / L, v = (float)y / L, t, col[3];
			float n = p2p_noise_fbm(&w->nz, u * freq, v * freq, 3, 0.5f);
			switch (type) {
			case 0:         /* a wall: blotches and a gradient */
				t = clampf(1.6f * (n - 0.5f) + 0.5f + 0.3f * (v - 0.5f), 0, 1);
				mix(c1, c2, t, col);
				break;
			case 1: {       /* boards with grain */
				float a = (u * ca + v * sa) * period;
				float g = p2p_noise2(&w->nz, (u * sa - v * ca) * 4, a * 3 + 40);
				/* wide enough to survive the low resolution without aliasing */
				float e = clampf((fabsf(a - floorf(a) - 0.5f) - 0.5f + 2.5f * period / L) /
				                 (2.5f * period / L), 0, 1);
				float edge = 1 - 0.35f * e;
				mix(c1, c2, 0.3f * g, col);
				scale3(col, edge * (0.85f + 0.3f * n), col);
				break;
			}
			case 2:         /* fabric: soft stripes */
				t = 0.5f + 0.5f * sinf((u * ca + v * sa) * period * 6.283f + 2 * n);
				mix(c1, c2, t * t, col);
				break;
			case 3:         /* floor and wall */
				{
					float fl[3], wall[3];
					mix(c2, c3, 0.3f + 0.5f * n, fl);
					scale3(fl, 0.8f, fl);
					mix(c1, c2, 0.3f * n + 0.4f * v, wall);
					t = clampf((v + 0.1f * (u - 0.5f) * sa - split) * L * 0.5f + 0.5f, 0, 1);
					mix(wall, fl, t, col);
				}
				break;
			default:        /* outdoors: foliage over a light sky */
				t = clampf((n - 0.35f) * 3, 0, 1);
				{
					float sky[3] = { 0.75f, 0.85f, 0.95f }, leaf[3];
					mix(c3, (float[]){ 0.25f, 0.45f, 0.18f }, 0.6f, leaf);
					mix(sky, leaf, t, col);
				}
			}
			memcpy(w->small + 3 * (y * L + x), col, sizeof col);
		}
	/* bilinear upsampling: every low row across to full width, then
	 * each output row between two of those */
	float step = (float)L / S;
	for (int y = 0; y < L; y++) {
		const float *src = w->small + 3 * y * L;
		float *dst = w->wide + (size_t)3 * y * S;
		for (int x = 0; x < S; x++) {
			float fx = clampf((x + 0.5f) * step - 0.5f, 0, L - 1.001f);
			int x0 = (int)fx;
			float tx = fx - x0;
			for (int c = 0; c < 3; c++)
				dst[3 * x + c] = src[3 * x0 + c] + (src[3 * x0 + 3 + c] - src[3 * x0 + c]) * tx;
		}
	}
	for (int y = 0; y < S; y++) {
		float fy = clampf((y + 0.5f) * step - 0.5f, 0, L - 1.001f);
		int y0 = (int)fy;
		float ty = fy - y0;
		const float *r0 = w->wide + (size_t)3 * y0 * S, *r1 = r0 + 3 * S;
		float *dst = w->cv.rgb + (size_t)3 * y * S;
		for (int i = 0; i < 3 * S; i++)
			dst[i] = r0[i] + (r1[i] - r0[i]) * ty;
	}
	if (chance(r, 0.35)) {          /* bokeh */
		int n = 8 + (int)p2p_rng_below(r, 25);
		for (int i = 0; i < n; i++) {
			float col[3], cx = U(r, 0, S), cy = U(r, 0, S), rad = S * U(r, 0.02f, 0.09f);
			jitter(r, (float[]){ 0.9f, 0.85f, 0.7f }, 0.15f, col);
			p2p_path_clear(&w->a);
			p2p_path_ellipse(&w->a, cx, cy, rad, rad, 0, 0);
			p2p_fill(&w->cv, &w->a, col, U(r, 0.08f, 0.3f));
		}
	}
}

/* The head outline as a polygon in face coordinates. */
static void head_path(const cat *k, p2p_path *p)
{
	p2p_path_clear(p);
	for (int j = 0; j < 128; j++) {
		float u, v;
		head_point(k, 2 * PI_F * j / 128, &u, &v);
		p2p_path_add(p, u, v);
	}
}

/* The body: a rounded block under the head, shoulders to off the frame. */
#define BODY_DY 1.55f
#define BODY_RX 1.3f
#define BODY_RY 1.7f

static void body_path(const cat *k, p2p_path *p)
{
	p2p_path_clear(p);
	float cy = k->hbot + BODY_DY;
	for (int j = 0; j < 96; j++) {
		float t = 2 * PI_F * j / 96, c = cosf(t), s = sinf(t);
		/* squarer than an ellipse: a superellipse of exponent 3 */
		float x = copysignf(powf(fabsf(c), 2 / 3.0f), c), y = copysignf(powf(fabsf(s), 2 / 3.0f), s);
		/* narrower at the neck than at the shoulders */
		p2p_path_add(p, BODY_RX * x * (0.8f + 0.1f * (y + 1)), cy + BODY_RY * y);
	}
}

/* Fill in face coordinates and add the shape to the fur mask. */
static void fur_shape(workspace *w, const cat *k, p2p_path *p, const float rgb[3])
{
	path_pose(k, p);
	p2p_fill(&w->cv, p, rgb, 1);
	p2p_fill_mask(&w->cv, p, w->fur);
}

/* Irregular blob for calico patches. */
static void blob_path(workspace *w, p2p_rng *r, float cx, float cy, float rad, p2p_path *p)
{
	float off = U(r, 0, 100);
	p2p_path_clear(p);
	for (int j = 0; j < 40; j++) {
		float a = 2 * PI_F * j / 40;
		float n = p2p_noise2(&w->nz, off + 1.5f * cosf(a), off + 1.5f * sinf(a));
		float rr = rad * (0.6f + 0.8f * n);
		p2p_path_add(p, cx + rr * cosf(a), cy + rr * sinf(a));
	}
}

static void draw_markings(workspace *w, const cat *k, p2p_rng *r)
{
	w->cv.clip = w->fur;
	if (k->coat == COAT_TABBY) {
		/* forehead: the "M" of lines running down between the ears */
		int n = 3 + (int)p2p_rng_below(r, 3);
		float top = -k->htop * 0.95f, bot = k->eye_y - k->eye_h - 0.08f;
		for (int i = 0; i < n; i++) {
			float x = (i - (n - 1) * 0.5f) * U(r, 0.1f, 0.14f);
			float p0[2] = { x * 1.3f, top }, c[2] = { x * 1.15f, 0.5f * (top + bot) },
			      p1[2] = { x * 0.8f, bot - fabsf(x) * 0.4f };
			stroke_quad(w, k, p0, c, p1, U(r, 0.05f, 0.08f), 0.015f, k->dark, 0.85f);
		}
		/* cheeks: lines from the outer eye corners back to the edge */
		for (int s = 0; s < 2; s++) {
			float sx = s ? 1 : -1;
			int m = 1 + (int)p2p_rng_below(r, 3);
			for (int i = 0; i < m; i++) {
				float y = k->eye_y + 0.05f + i * U(r, 0.12f, 0.18f);
				float p0[2] = { sx * (k->eye_x + k->eye_w * 0.9f), y },
				      c[2] = { sx * 0.8f, y + U(r, -0.05f, 0.1f) },
				      p1[2] = { sx * 1.15f, y + U(r, -0.1f, 0.15f) };
				stroke_quad(w, k, p0, c, p1, 0.02f, U(r, 0.05f, 0.09f), k->dark, 0.8f);
			}
			/* sides of the head */
			for (int i = 0; i < 3; i++) {
				float y = -0.65f + i * 0.17f + U(r, -0.04f, 0.04f);
				float p0[2] = { sx * 0.55f, y - 0.05f }, c[2] = { sx * 0.8f, y },
				      p1[2] = { sx * 1.1f, y + 0.1f };
				stroke_quad(w, k, p0, c, p1, 0.02f, 0.07f, k->dark, 0.7f);
			}
		}
		/* rings round the body */
		for (int i = 0; i < 6; i++) {
			float y = k->hbot + 0.25f + i * 0.3f;
			float p0[2] = { -2, y + 0.3f }, c[2] = { 0, y - 0.2f }, p1[2] = { 2, y + 0.3f };
			stroke_quad(w, k, p0, c, p1, 0.1f, 0.1f, k->dark, 0.6f);
		}
	} else if (k->coat == COAT_CALICO) {
		int n = 3 + (int)p2p_rng_below(r, 4);
		for (int i = 0; i < n; i++) {
			float cx = U(r, -1, 1), cy = U(r, -1.2f, 1.6f);
			blob_path(w, r, cx, cy, U(r, 0.25f, 0.6f), &w->c);
			fill_pose(w, k, &w->c, i % 2 ? k->dark : k->patch, 1);
		}
	} else if (k->coat == COAT_POINT) {
		/* the darker mask round the nose, and darker ears */
		soft_ellipse(w, k, 0, k->nose_y, 0.55f, 0.6f, 0, k->patch, 0.85f, 1.0f);
	}
	if (k->coat == COAT_BICOLOUR || (k->coat == COAT_CALICO && chance(r, 0.5))) {
		/* white muzzle and chest, sometimes a blaze up the forehead */
		float cy = k->nose_y + U(r, 0.1f, 0.3f);
		soft_ellipse(w, k, 0, cy, U(r, 0.35f, 0.6f), U(r, 0.35f, 0.6f), 0, WHITE, 1, 0.08f);
		soft_ellipse(w, k, 0, k->hbot + 1.0f, U(r, 0.5f, 0.9f), 0.9f, 0, WHITE, 1, 0.1f);
		if (chance(r, 0.5)) {
			p2p_path_clear(&w->c);
			float wb = U(r, 0.05f, 0.2f);
			p2p_path_add(&w->c, -wb * 0.4f, -k->htop);
			p2p_path_add(&w->c, wb * 0.4f, -k->htop);
			p2p_path_add(&w->c, wb + 0.1f, cy);
			p2p_path_add(&w->c, -wb - 0.1f, cy);
			fill_pose(w, k, &w->c, WHITE, 1);
		}
	}
	/* lighter muzzle and chin */
	if (k->muzzle_light > 0) {
		float pl[2], pr[2];
		pad_centre(k, 0, pl);
		pad_centre(k, 1, pr);
		float col[3];
		mix(k->base, k->light, 1, col);
		soft_ellipse(w, k, pl[0], pl[1], 0.2f, 0.15f, 0, col, k->muzzle_light, 0.3f);
		soft_ellipse(w, k, pr[0], pr[1], 0.2f, 0.15f, 0, col, k->muzzle_light, 0.3f);
		soft_ellipse(w, k, 0, k->hbot - 0.15f, 0.25f, 0.15f, 0, col, k->muzzle_light, 0.3f);
	}
	w->cv.clip = NULL;
}

/* atan2 within 0.005 radians, continuous, several times cheaper */
static float fast_atan2(float y, float x)
{
	float ax = fabsf(x), ay = fabsf(y);
	float mx = fmaxf(ax, ay), mn = fminf(ax, ay);
	float a = mx > 0 ? mn / mx : 0;
	float r = a * (PI_F / 4 + 0.273f * (1 - a));
	if (ay > ax)
		r = PI_F / 2 - r;
	if (x < 0)
		r = PI_F - r;
	return y < 0 ? -r : r;
}

/* Fur: streaky noise flowing out from the nose, and shading of a round head
 * lit from one side. Applied to everything in the fur mask. */
static void fur_pass(workspace *w, const cat *k)
{
	int S = k->size;
	/* the light in face axes */
	float ca = cosf(-k->angle), sa = sinf(-k->angle);
	float lx = ca * k->light_x - sa * k->light_y, ly = sa * k->light_x + ca * k->light_y;
	float lz = 0.8f, ln = 1 / sqrtf(lx * lx + ly * ly + lz * lz);
	lx *= ln * 0.6f;
	ly *= ln * 0.6f;
	lz *= ln;
	float fine = 24;        /* strands per radian */
	float bcy = k->hbot + BODY_DY;
	const p2p_affine *m = &k->inv;
	for (int y = 0; y < S; y++) {
		const float *mask = w->fur + (size_t)y * S;
		float *px = w->cv.rgb + (size_t)3 * y * S;
		for (int x = 0; x < S; x++) {
			float a = mask[x];
			if (a <= 0)
				continue;
			float u = (float)(m->a * (x + 0.5) + m->b * (y + 0.5) + m->c);
			float v = (float)(m->d * (x + 0.5) + m->e * (y + 0.5) + m->f);
			/* the normal of the head, or below it of the body */
			float rho2 = u * u + v * v, nx = u, ny = v, nz;
			if (rho2 >= 1 && v > 0) {
				nx = u / BODY_RX;
				ny = (v - bcy) / BODY_RY;
				rho2 = nx * nx + ny * ny;
			}
			if (rho2 < 1) {
				nz = sqrtf(1 - rho2);
			} else {
				float inv = 1 / sqrtf(rho2);
				nx *= inv;
				ny *= inv;
				nz = 0;
			}
			float shade = 0.78f + 0.32f * (lx * nx + ly * ny + lz * nz);
			/* strands: fast across, slow along the direction from the nose */
			float du = u, dv = v - 0.35f;
			float along = sqrtf(du * du + dv * dv) + 1e-3f;
			float across = fast_atan2(dv, du);
			float n1 = p2p_noise2(&w->nz, across * fine, along * 5);
			/* strands crowd together at the nose: fade them there */
			n1 = 0.5f + (n1 - 0.5f) * (along < 0.25f ? along * 4 : 1);
			float n2 = p2p_noise2(&w->nz, u * 5 + 50, v * 5 + 50);
			float f = shade * (0.86f + 0.28f * n1) * (0.92f + 0.16f * n2);
			f = 1 + (f - 1) * a;
			px[3 * x] *= f;
			px[3 * x + 1] *= f;
			px[3 * x + 2] *= f;
		}
	}
}

struct eye_paint {
	float px, py, c, s, rx, ry, rad;
	float in[3], out[3];
};

/* Iris: lighter round the pupil, darker at the rim and under the upper lid;
 * the pupil's edge anti-aliased from its normalised radius. */
static void paint_eye(void *ctx, int x, int y, float rgb[3])
{
	const struct eye_paint *e = ctx;
	float dx = x + 0.5f - e->px, dy = y + 0.5f - e->py;
	float lx = e->c * dx + e->s * dy, ly = -e->s * dx + e->c * dy;
	float d = hypotf(lx, ly) / e->rad;
	float t = clampf(d, 0, 1);
	float lid = clampf(-ly / e->rad, 0, 1);
	float k = (1 - 0.35f * lid * lid) * (1 - 0.25f * t * t);
	for (int i = 0; i < 3; i++)
		rgb[i] = (e->in[i] + (e->out[i] - e->in[i]) * t) * k;
	float q = hypotf(lx / e->rx, ly / e->ry);
	float cover = clampf(0.5f - (q - 1) * fminf(e->rx, e->ry), 0, 1);
	for (int i = 0; i < 3; i++)
		rgb[i] += (0.02f - rgb[i]) * cover;
}

static void draw_eye(workspace *w, const cat *k, int side)
{
	eye_geom g;
	eye_geometry(k, side, &g);
	float dark[3];
	scale3(k->base, 0.25f, dark);
	mix(dark, BLACK, 0.6f, dark);
	/* light fur round the eye, then the dark rim */
	eye_path(k, side, 1.45f, &w->a);
	fill_pose(w, k, &w->a, k->light, 0.35f);
	eye_path(k, side, 1.14f, &w->a);
	fill_pose(w, k, &w->a, dark, 1);
	struct eye_paint e;
	pose_map(k, g.pupil[0], g.pupil[1], &e.px, &e.py);
	e.c = cosf(k->angle);
	e.s = sinf(k->angle);
	float ry = k->eye_h * 1.1f;
	e.ry = ry * k->scale;
	e.rx = fminf(k->pupil * k->eye_w * 0.8f, ry) * k->scale + 0.6f;
	e.rad = fmaxf(k->eye_w, k->eye_h) * k->scale;
	const float *iris = k->iris[side];
	mix(iris, WHITE, 0.3f, e.in);
	scale3(iris, 0.55f, e.out);
	eye_path(k, side, 1, &w->a);
	path_pose(k, &w->a);
	p2p_fill_paint(&w->cv, &w->a, paint_eye, &e, 1);
	/* the catch light, towards the light */
	float hx = e.px + k->light_x * 0.45f * e.rad, hy = e.py + k->light_y * 0.35f * e.rad;
	p2p_path_clear(&w->a);
	float hr = 0.16f * e.rad + 0.5f;
	p2p_path_ellipse(&w->a, hx, hy, hr, hr * 0.8f, k->angle, 0);
	p2p_fill(&w->cv, &w->a, WHITE, 0.85f);
}

static void draw_whiskers(workspace *w, const cat *k, p2p_rng *r)
{
	for (int s = 0; s < 2; s++) {
		float sx = s ? 1 : -1, pad[2];
		pad_centre(k, s, pad);
		/* the dots the whiskers grow from */
		float dot[3];
		mix(k->dark, BLACK, 0.4f, dot);
		for (int row = 0; row < 3; row++)
			for (int i = 0; i < 3; i++) {
				p2p_path_clear(&w->a);
				float cx = pad[0] + sx * (i - 1) * 0.06f, cy = pad[1] + (row - 1) * 0.045f;
				p2p_path_ellipse(&w->a, cx, cy, 0.012f, 0.012f, 0, 8);
				fill_pose(w, k, &w->a, dot, 0.45f);
			}
		for (int i = 0; i < k->nwhisk; i++) {
			float f = k->nwhisk > 1 ? (float)i / (k->nwhisk - 1) - 0.5f : 0;
			float ang = f * k->whisk_spread + U(r, -0.06f, 0.06f) + 0.1f;
			float len = k->whisk_len * U(r, 0.85f, 1.1f);
			float p0[2] = { pad[0] + sx * 0.06f, pad[1] + f * 0.08f };
			float dx = sx * cosf(ang), dy = sinf(ang);
			float c[2] = { p0[0] + dx * len * 0.5f, p0[1] + dy * len * 0.5f };
			float p1[2] = { p0[0] + dx * len, p0[1] + dy * len + k->whisk_droop * len };
			stroke_quad(w, k, p0, c, p1, 0.022f, 0.004f, k->whisker_col, 0.9f);
		}
		/* two above each eye */
		for (int i = 0; i < 2; i++) {
			float p0[2] = { sx * (k->eye_x + 0.05f * i), k->eye_y - k->eye_h - 0.08f };
			float p1[2] = { sx * (k->eye_x + 0.35f + 0.1f * i), p0[1] - 0.35f - 0.1f * i };
			float c[2] = { sx * (k->eye_x + 0.15f), p0[1] - 0.3f };
			stroke_quad(w, k, p0, c, p1, 0.012f, 0.003f, k->whisker_col, 0.8f);
		}
	}
}

static void draw_nose_mouth(workspace *w, const cat *k)
{
	mouth_geom g;
	mouth_geometry(k, &g);
	float lw = 0.022f;
	/* the lower lip, a small dark shape under the mouth */
	float lipcol[3];
	mix(k->mouth_col, k->nose_col, 0.3f, lipcol);
	p2p_path_clear(&w->a);
	p2p_path_quad(&w->a, -0.45f * k->mouth_w, g.mc[1] + k->mouth_depth, 0, g.lip[1] + 0.6f * k->lip,
	              0.45f * k->mouth_w, g.mc[1] + k->mouth_depth, 12);
	fill_pose(w, k, &w->a, lipcol, 0.6f);
	float c[2] = { 0, 0.5f * (g.top[1] + g.mc[1]) };
	stroke_quad(w, k, g.top, c, g.mc, lw, lw, k->mouth_col, 1);
	stroke_quad(w, k, g.mc, g.lctl, g.lc, lw, lw * 0.5f, k->mouth_col, 1);
	stroke_quad(w, k, g.mc, g.rctl, g.rc, lw, lw * 0.5f, k->mouth_col, 1);
	/* the nose, its shadow and a highlight on top */
	float shadow[3];
	scale3(k->nose_col, 0.5f, shadow);
	nose_path(k, &w->a);
	for (int i = 0; i < w->a.n; i++)
		w->a.xy[2 * i + 1] += 0.012f;
	fill_pose(w, k, &w->a, shadow, 0.6f);
	nose_path(k, &w->a);
	fill_pose(w, k, &w->a, k->nose_col, 1);
	p2p_path_clear(&w->a);
	p2p_path_ellipse(&w->a, -0.2f * k->nose_w, k->nose_y - 0.15f * k->nose_h, 0.35f * k->nose_w,
	                 0.18f * k->nose_h, 0, 16);
	fill_pose(w, k, &w->a, WHITE, 0.3f);
}

static void draw_cat(workspace *w, const cat *k, p2p_rng *r)
{
	int S = k->size;
	memset(w->fur, 0, (size_t)S * S * sizeof(float));
	draw_background(w, k, r);
	/* the body: shoulders and chest, sitting on a soft shadow */
	float bcy = k->hbot + BODY_DY;
	soft_ellipse(w, k, 0, bcy + BODY_RY * 0.95f, BODY_RX * 1.2f, 0.3f, 0, BLACK, 0.3f, 0.4f);
	float body[3];
	scale3(k->base, 0.92f, body);
	body_path(k, &w->a);
	fur_shape(w, k, &w->a, body);
	const float *earcol = k->coat == COAT_POINT ? k->patch : k->base;
	for (int s = 0; s < 2; s++) {
		ear_path(k, s, 0, &w->a);
		fur_shape(w, k, &w->a, earcol);
	}
	/* the chin's shadow on the chest */
	w->cv.clip = w->fur;
	soft_ellipse(w, k, 0, k->hbot + 0.05f, 0.7f, 0.25f, 0, BLACK, 0.4f, 0.4f);
	w->cv.clip = NULL;
	head_path(k, &w->a);
	fur_shape(w, k, &w->a, k->base);
	draw_markings(w, k, r);
	fur_pass(w, k);
	/* the outline, drawn like a cartoon's ink line */
	float ink[3];
	scale3(k->base, 0.3f, ink);
	head_path(k, &w->b);
	p2p_path_add(&w->b, w->b.xy[0], w->b.xy[1]);
	path_pose(k, &w->b);
	p2p_path_stroke(&w->a, &w->b, 0.018f * k->scale, 0.018f * k->scale, 0);
	p2p_fill(&w->cv, &w->a, ink, k->outline);
	for (int s = 0; s < 2; s++) {
		ear_path(k, s, 0.28f, &w->a);
		fill_pose(w, k, &w->a, k->lining, 0.9f);
	}
	draw_eye(w, k, 0);
	draw_eye(w, k, 1);
	draw_nose_mouth(w, k);
	draw_whiskers(w, k, r);
}

/* ---- output ---- */

static int write_labels(const char *path, const float *lm, const float box[4])
{
	char buf[4096];
	int n = snprintf(buf, sizeof buf, "{\"labels\": [");
	for (int i = 0; i < NLM; i++)
		n += snprintf(buf + n, sizeof buf - n, "%s[%.3f, %.3f]", i ? ", " : "",
		              lm[2 * i], lm[2 * i + 1]);
	n += snprintf(buf + n, sizeof buf - n, "], \"bounding_boxes\": [%.3f, %.3f, %.3f, %.3f]}\n",
	              box[0], box[1], box[2], box[3]);
	return p2p_write_file(path, buf, (size_t)n);
}

/* Draw and write sample idx. */
static int make_one(workspace *w, const options *o, long idx)
{
	p2p_rng r;
	p2p_rng_seed2(&r, o->seed, (uint64_t)idx);
	cat k;
	cat_random(&k, &r, o->size);
	float face[2 * NLM], lm[2 * NLM];
	face_landmarks(&k, face);
	place(&k, &r, face);
	p2p_noise_init(&w->nz, &r);
	draw_cat(w, &k, &r);
	/* pixel centres are at +0.5 in drawing space; labels count from pixel 0 */
	float x0 = 1e30f, y0 = 1e30f, x1 = -1e30f, y1 = -1e30f;
	for (int i = 0; i < NLM; i++) {
		pose_map(&k, face[2 * i], face[2 * i + 1], &lm[2 * i], &lm[2 * i + 1]);
		lm[2 * i] -= 0.5f;
		lm[2 * i + 1] -= 0.5f;
		x0 = fminf(x0, lm[2 * i]); x1 = fmaxf(x1, lm[2 * i]);
		y0 = fminf(y0, lm[2 * i + 1]); y1 = fmaxf(y1, lm[2 * i + 1]);
	}
	/* the face box: the points' extent with a small margin, inside the image */
	float mx = 0.04f * (x1 - x0), my = 0.04f * (y1 - y0), hi = (float)(o->size - 1);
	float box[4] = { clampf(x0 - mx, 0, hi), clampf(y0 - my, 0, hi),
	                 clampf(x1 + mx, 0, hi), clampf(y1 + my, 0, hi) };
	p2p_canvas_to_image(&w->cv, &w->img);
	char path[4096];
	snprintf(path, sizeof path, "%s/images/%08ld_000.png", o->out, idx);
	if (p2p_image_save(path, &w->img, 0))
		return -1;
	snprintf(path, sizeof path, "%s/labels/%08ld_000.json", o->out, idx);
	return write_labels(path, lm, box);
}

static int workspace_init(workspace *w, int S)
{
	memset(w, 0, sizeof *w);
	int L = S / 4 < 16 ? 16 : S / 4;
	if (p2p_canvas_init(&w->cv, S, S) || p2p_image_alloc(&w->img, S, S, 3))
		return -1;
	w->fur = malloc((size_t)S * S * sizeof(float));
	w->small = malloc((size_t)L * L * 3 * sizeof(float));
	w->wide = malloc((size_t)L * S * 3 * sizeof(float));
	return w->fur && w->small && w->wide ? 0 : p2p_err("out of memory");
}

static void workspace_free(workspace *w)
{
	p2p_canvas_free(&w->cv);
	p2p_image_free(&w->img);
	free(w->fur);
	free(w->small);
	free(w->wide);
	p2p_path_free(&w->a);
	p2p_path_free(&w->b);
	p2p_path_free(&w->c);
}

static int run(const options *o)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/images", o->out);
	if (p2p_mkdirs(dir))
		return -1;
	snprintf(dir, sizeof dir, "%s/labels", o->out);
	if (p2p_mkdirs(dir))
		return -1;
	if (o->jobs > 0)
		omp_set_num_threads(o->jobs);
	long mine = o->count / o->nshards + (o->shard < o->count % o->nshards);
	p2p_progress bar;
	p2p_progress_start(&bar, "catflw-synth", mine, p2p_want_progress(o->progress));
	long done = 0;
	int failed = 0;
	char msg[1024] = "";
	#pragma omp parallel
	{
		workspace w;
		int ok = workspace_init(&w, o->size) == 0;
		if (!ok) {
			#pragma omp critical
			if (!failed) {
				failed = 1;
				snprintf(msg, sizeof msg, "%s", p2p_errmsg());
			}
		}
		#pragma omp for schedule(dynamic, 1)
		for (long j = 0; j < mine; j++) {
			int stop;
			#pragma omp atomic read
			stop = failed;
			if (stop || !ok)
				continue;
			if (make_one(&w, o, o->shard + j * o->nshards)) {
				#pragma omp critical
				if (!failed) {
					failed = 1;
					snprintf(msg, sizeof msg, "%s", p2p_errmsg());
				}
				continue;
			}
			long d;
			#pragma omp atomic capture
			d = ++done;
			if (omp_get_thread_num() == 0)
				p2p_progress_update(&bar, d, NULL);
		}
		workspace_free(&w);
	}
	p2p_progress_update(&bar, done, NULL);
	p2p_progress_end(&bar);
	if (failed)
		return p2p_err("%s", msg);
	if (!o->quiet)
		p2p_warn("%ld written to %s", done, o->out);
	return 0;
}

/* ---- command line ---- */

static void usage(void)
{
	printf("usage: %s -o DIR [-n COUNT] [-s SIZE] [--seed N] [-j JOBS]\n"
	       "       [--shard I/N] [--progress | --quiet]\n"
	       "Draw COUNT synthetic cat faces with 48 landmarks each, in the CatFLW\n"
	       "layout: DIR/images/NAME.png and DIR/labels/NAME.json.\n"
	       "  -o, --output DIR   where to write (created if missing)\n"
	       "  -n, --count N      number of images (default 100)\n"
	       "  -s, --size N       width and height in pixels (default 512)\n"
	       "      --seed N       random seed (default 1); same seed, same bytes\n"
	       "  -j, --jobs N       threads (default: all cores)\n"
	       "      --shard I/N    write only images I, I+N, I+2N, ...\n"
	       "      --progress     show a progress bar even when stderr is not a terminal\n"
	       "  -q, --quiet        no progress bar and no summary\n"
	       "  -h, --help         this help\n"
	       "      --version      print the version\n", p2p_prog);
}

static void parse(int argc, char **argv, options *o)
{
	enum { OPT_SEED = 256, OPT_SHARD, OPT_PROGRESS };
	static const struct option longs[] = {
		{ "output", required_argument, 0, 'o' },
		{ "count", required_argument, 0, 'n' },
		{ "size", required_argument, 0, 's' },
		{ "seed", required_argument, 0, OPT_SEED },
		{ "jobs", required_argument, 0, 'j' },
		{ "shard", required_argument, 0, OPT_SHARD },
		{ "progress", no_argument, 0, OPT_PROGRESS },
		{ "quiet", no_argument, 0, 'q' },
		{ "help", no_argument, 0, 'h' },
		{ "version", no_argument, 0, P2P_OPT_VERSION },
		{ 0, 0, 0, 0 },
	};
	*o = (options){ .count = 100, .size = 512, .seed = 1, .progress = -1 };
	p2p_shard_default(&o->shard, &o->nshards);
	int c;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":o:n:s:j:qh", longs, NULL)) != -1) {
		switch (c) {
		case 'o': o->out = optarg; break;
		case 'n': o->count = p2p_opt_long("-n", optarg, 1, 99999999); break;
		case 's': o->size = (int)p2p_opt_long("-s", optarg, 32, 4096); break;
		case OPT_SEED:
			o->seed = (unsigned long long)p2p_opt_long("--seed", optarg, 0, 0x7fffffffffffffffL);
			break;
		case 'j': o->jobs = (int)p2p_opt_long("-j", optarg, 1, 1024); break;
		case OPT_SHARD: p2p_opt_shard(optarg, &o->shard, &o->nshards); break;
		case OPT_PROGRESS: o->progress = 1; break;
		case 'q': o->progress = 0; o->quiet = 1; break;
		default: p2p_opt_other(c, argv, usage);
		}
	}
	if (optind < argc)
		p2p_usage_error("unexpected argument '%s'", argv[optind]);
	if (!o->out)
		p2p_usage_error("-o DIR is required");
	if (!*o->out)
		p2p_usage_error("-o: empty folder name");
}

int main(int argc, char **argv)
{
	p2p_cli_init(argv[0]);
	options o;
	parse(argc, argv, &o);
	/* images are drawn in parallel already: libvips's own worker threads
	 * for each PNG would only wait on each other */
	setenv("VIPS_CONCURRENCY", "1", 0);
	if (p2p_image_init(argv[0]))
		p2p_die_lib();
	if (run(&o))
		p2p_die_lib();
	return 0;
}
