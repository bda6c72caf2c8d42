/*
 * The per-row rules of the loss kernels, written once: masking, the sample
 * weight, the row factor, overflow-safe scaling and the target entry.  Every
 * path calls these: ce_row_finish, ce_lanes and ce_lanes_plain
 * (pyce_loss_template.h), and the fast paths for few classes and huge rows
 * (pyce_ce_small.c and pyce_ce_online.c, through pyce_ce_rules.h).
 */
#ifndef PYCE_LOSS_RULES_H
#define PYCE_LOSS_RULES_H

#include <math.h>
#include <stdint.h>

#include "pyce_loss_kernels.h"
#include "pyce_exp.h"   /* PYCE_ALWAYS_INLINE */

/* Whether row i is ignored (target == ignore_index): loss 0, gradient 0, and
 * its logits are never read, so a NaN in it reaches nothing. */
PYCE_ALWAYS_INLINE int pyce_row_ignored(const pyce_ce_args *a, int64_t i)
{
    return a->target != NULL && a->target[i] == a->ignore_index;
}

/* Masking: weight times term, where a zero weight contributes exactly 0 even
 * against an infinite term (a -inf logit of a class of weight 0 or without
 * target mass: 0 * -inf would be NaN).  Classes are masked by weight 0 and
 * by logit -inf. */
PYCE_ALWAYS_INLINE double pyce_weighted(double w, double term)
{
    return w != 0.0 ? w * term : 0.0;
}

/* A row's loss times its sample weight v: v = 0 masks the row like a class
 * weight of 0 (an infinite loss becomes 0), but a NaN loss (undefined
 * softmax) stays NaN. */
PYCE_ALWAYS_INLINE double pyce_sample_weighted(double v, double loss)
{
    return v != 0.0 ? v * loss : (loss != loss ? loss : 0.0);
}

/* g, the factor of row i's gradient: grad_scale (grad_output / denominator
 * for 'mean', from the reduction rule in _ce.pyx), times the row's sample
 * weight, times its upstream gradient ('none' with an array grad_output). */
PYCE_ALWAYS_INLINE double pyce_row_gscale(const pyce_ce_args *a, int64_t i)
{
    double g = a->grad_scale;
    if (a->sample_weight)
        g *= a->sample_weight[i];
    if (a->grad_output)
        g *= a->grad_output[i];
    return g;
}

/* Overflow-safe scaling.  A gradient entry is g (e_k pcoef/s - coef_k): the
 * row factor g (pyce_row_gscale) times the entry of the 'sum' gradient, where
 * coef_k is the smoothing share or target mass.  The ordinary path folds g
 * into pcd = g pcoef/s and works in T.  When pcd or the largest g coef_k is
 * beyond T's range (pyce_beyond: a tiny, zero or negative 'mean'
 * denominator, a huge grad_output), the row is computed here instead, in
 * double and rounded once: entries overflow to +-inf as IEEE says instead of
 * inf - inf = NaN, and a class with probability 0 and no target term stays 0
 * (no 0 * inf) unless the row's own factor g pcoef/s is NaN (a row of weight 0
 * under an infinite scale: NaN, as PyTorch).  A NaN compares false in
 * pyce_beyond: a NaN row keeps the ordinary path and stays NaN. */
PYCE_ALWAYS_INLINE int pyce_beyond(double v, double t_max)
{
    return fabs(v) > t_max;
}

/* The entry of a class with probability 0 and no target term: 0, even under
 * an infinite g, unless the row's factor g pcoef/s is NaN. */
PYCE_ALWAYS_INLINE double pyce_masked_entry(double g, double pcoef_s)
{
    const double f = g * pcoef_s;
    return f != f ? f : 0.0;
}

PYCE_ALWAYS_INLINE double pyce_wide_entry(double g, double e, double pcoef_s, double coef)
{
    if (e == 0.0 && coef == 0.0)
        return pyce_masked_entry(g, pcoef_s);
    return g * (e * pcoef_s - coef);
}

/* The target entry of a class-index row's gradient, in double (every path):
 *   g [ tw (p_y - 1) + (pcoef - tw) p_y - smooth_b ],  p_y - 1 = (e_y - s)/s,
 * which keeps its relative accuracy when p_y ~ 1 (no cancellation in T);
 * masked like pyce_wide_entry when p_y = 0 and the target has no weight. */
PYCE_ALWAYS_INLINE double pyce_target_grad(double g, double tw, double pcoef, double ey,
                                           double s, double smooth_b)
{
    if (ey == 0.0 && tw == 0.0 && smooth_b == 0.0)
        return pyce_masked_entry(g, pcoef / s);
    return g * ((tw * (ey - s) + (pcoef - tw) * ey) / s - smooth_b);
}

#endif /* PYCE_LOSS_RULES_H */
