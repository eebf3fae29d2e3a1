#include "schedule.h"

#include <math.h>

double p2p_cosine_warm_restarts(double base, double eta_min, long t0, long tmult, long epoch)
{
	long ti = t0 > 0 ? t0 : 1, tcur = epoch > 0 ? epoch : 0;
	/* one cycle at a time: at most log2(epoch) rounds when tmult >= 2 */
	if (tmult <= 1)
		tcur %= ti;
	else
		while (tcur >= ti) {
			tcur -= ti;
			ti *= tmult;
		}
	return eta_min + (base - eta_min) * (1.0 + cos(M_PI * (double)tcur / (double)ti)) / 2.0;
}
