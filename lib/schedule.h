/* Learning-rate schedule: PyTorch's CosineAnnealingWarmRestarts(T_0, T_mult,
 * eta_min), stepped once per epoch. */
#ifndef P2P_SCHEDULE_H
#define P2P_SCHEDULE_H

/* The rate for an epoch after `epoch` scheduler steps (0 for the first
 * epoch): walk the cycles T_0, T_0 T_mult, T_0 T_mult^2... to find T_cur and
 * T_i as the scheduler's integer step() does, then
 * eta_min + (base - eta_min) (1 + cos(pi T_cur / T_i)) / 2, in double as
 * Python computes it. t0 >= 1, tmult >= 1, epoch >= 0. */
double p2p_cosine_warm_restarts(double base, double eta_min, long t0, long tmult, long epoch);

#endif
