/*
 * Rows longer than L2: fused softmax cross-entropy reading each row twice
 * instead of three times (an online max-and-sum).
 *
 * The row path (pyce_loss_template.h, ce_row) sweeps a row three times: max,
 * exp into the gradient row, scale.  While a row fits in L2 (up to ~250K
 * float32 classes on a 1 MiB L2) the second and third sweeps hit the cache.
 * Beyond, each sweep streams from memory: 3 reads + 2 writes per element.
 * Here:
 *   pass 1: per chunk of PYCE_ON_CHUNK elements, the chunk maximum cm; if it
 *           raises the running maximum m, the running sums are scaled by
 *           exp(m - cm) (double) and m = cm; then the exps exp(x - m) are
 *           added (four in T, then double, the rule of row_expsum);
 *   pass 2: grad_k = exp(x_k - m) * (g/s), the target entry g (e_y - s)/s in
 *           double (the rules of pyce_ce_small.c's small_row_* helpers).
 * 2 reads + 1 write per element, twice the exps (cheap next to memory).  m is
 * the exact row maximum, so the exps of pass 2 are those of the other paths;
 * s differs from their s by rounding only (the sums were partly formed at a
 * smaller running maximum and scaled).
 *
 * Cases: class-index targets, no smoothing, no z-loss, d = 1, contiguous class
 * axis, C * sizeof(T) >= PYCE_ON_MIN_BYTES, and (see online_handles) no
 * gradient unless built with -DPYCE_ON_FUSED=1; everything else returns 0
 * (the row path runs).  Compiled for the x86-64 levels with target_clones like the
 * other kernels (portable C, no intrinsics).
 */
#include "pyce_ce_small.h"
#include "pyce_exp.h"
#include "pyce_dispatch.h"

#include <float.h>
#include <math.h>

/* Rows from 1 MiB up: the L2 of current x86 cores is 1-2 MiB, and below it
 * the three-sweep row path reads its second and third sweeps from cache. */
#define PYCE_ON_MIN_BYTES (1 << 20)
#define PYCE_ON_CHUNK 64

/* small_row_weights, small_row_loss, small_row_grad_coefs: the per-row rules
 * of the plain class-target case, shared with pyce_ce_small.c. */
#include "pyce_ce_rules.h"

/* Forward only (no gradient): measured on the busy EPYC, 64 x 1 000 000
 * float32, the forward drops from 2.36x to 1.69x np.sum, but the fused call
 * was 1.65x np.copyto on the row path and 1.78x here (pass 2 computes every
 * exp a second time, and the machine was compute-bound), so fused calls keep
 * the row path until a quiet-machine measurement says otherwise (set
 * PYCE_ON_FUSED to 1 to try it). */
#ifndef PYCE_ON_FUSED
#define PYCE_ON_FUSED 0
#endif

static int online_handles(const pyce_ce_args *a, int64_t elem_bytes)
{
    return a->target && !a->target_prob && a->d == 1 && a->label_smoothing == 0.0 &&
           (PYCE_ON_FUSED || !a->grad) &&
           a->z_loss == 0.0 && a->x_sc == 1 && (!a->grad || a->g_sc == 1) &&
           a->c * elem_bytes >= PYCE_ON_MIN_BYTES;
}

#define T float
#define SFX(name) name##_f32
#define T_MAX FLT_MAX
#define PYCE_EXP pyce_expneg_f32
#include "pyce_ce_online_impl.h"
#undef T
#undef SFX
#undef T_MAX
#undef PYCE_EXP

#define T double
#define SFX(name) name##_f64
#define T_MAX DBL_MAX
#define PYCE_EXP pyce_expneg_f64
#include "pyce_ce_online_impl.h"
#undef T
#undef SFX
#undef T_MAX
#undef PYCE_EXP
