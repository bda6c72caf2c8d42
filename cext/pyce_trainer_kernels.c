/*
 * pyce's trainer kernels: one-pass elementwise kernels for pyce.nn's
 * activations and Linear's bias, and pyce.optim's fused optimizer steps.
 * The loops are written once, in pyce_trainer_template.h, which this
 * file includes twice (T = float, then T = double; the same scheme as
 * pyce_loss_kernels.c with pyce_loss_template.h).
 *
 * ELU forward  y  = x > 0 ? x : alpha * expm1(x)
 * ELU backward dx = x > 0 ? g : g * (y + alpha)      (y + alpha = alpha * e^x;
 *                  PyTorch's formula from the result, no second exp)
 * ReLU backward dx = y <= 0 ? 0 : g              (as PyTorch: NaN passes g)
 *
 * NumPy needs four or five passes and temporaries for ELU (min, expm1, scale,
 * max/where); here each is one read of the inputs and one write, vectorized by
 * GCC (`omp simd`, branch-free selects) and dispatched between x86-64 levels
 * like cext/pyce_loss_kernels.c.
 *
 * expm1 on x <= 0 (the only part ELU needs), branch-free:
 *   x > -0.7 : the Taylor series x + x^2/2! + ... + x^D/D!, D = 9 (float) or
 *              16 (double): truncation 0.7^D/(D+1)! < 1.2e-8 resp. 1e-17
 *              relative; the final `x + x*x*p` keeps relative accuracy at
 *              tiny x.
 *   x <= -0.7: exp(x) - 1 with pyce_exp (<= 2 ulp): exp(x) < 0.5, so the
 *              subtraction loses nothing.
 * NaN propagates (every comparison with NaN is false and falls through to
 * exp(NaN) = NaN); -inf gives -1.  tests/test_nn.py measures the error
 * against NumPy's expm1 densely over [-90, 0].
 *
 * Optimizer steps (pyce.optim), one read of param/grad/state and one write
 * per element instead of NumPy's four to nine passes with temporaries. They
 * are memory-bound: a 3072x256 float32 SGD-momentum step moves 16 MB in
 * 0.32 ms, the bytes per second of np.add over the same arrays. They stay
 * serial: with 2 OpenMP threads the same step took 0.9-11 ms while other
 * processes held the 2 shared cores (load average 3.5). The operations and
 * their order are torch.optim's single-tensor ones:
 *   SGD  d = grad + wd*p;  buf = d (first step) or mu*buf + (1 - dampening)*d;
 *        d = d + mu*buf (nesterov) or buf;  p = p - lr*d
 *   Adam d = grad + wd*p;  m = lerp(m, d, 1 - beta1) (PyTorch's two-sided
 *        lerp);  v = beta2*v + ((1 - beta2)*d)*d;
 *        p = p + (-step_size*m) / (sqrt(v)/bc2_sqrt + eps)
 * in the parameter's dtype; the scalars (1 - dampening, 1 - beta1, 1 - beta2, -step_size,
 * bc2_sqrt = sqrt(1 - beta2^t)) are computed in double by the caller and
 * rounded once to the dtype, as PyTorch does with Python-float arguments.
 * Options are loop-invariant, so each call goes through a switch to a loop
 * specialized for them: the loop is an always-inline function whose option
 * arguments are literals at each call, so GCC drops the untaken branches (no
 * per-element branch; an option that is off is skipped, not multiplied by 0,
 * so inf/NaN in p behave as in torch). GCC
 * may fuse a product into the following add (FMA) in the x86-64-v3/v4
 * clones, as PyTorch's vectorized kernels do for add(alpha=)/lerp/addcmul;
 * results agree with torch to a few ulp (tests/test_optim_fused.py), not
 * necessarily bit for bit.
 *
 * Linear's bias, forward and backward (NumPy's broadcast add and its sum
 * over axis 0 walk the rows with per-row overhead: 5-9 us for 64x256):
 *   add_row_bias  y[i, :] += b                   one pass over y
 *   column_sum    out (=|+=) sum_i g[i, :]       accumulated in double for
 *                 float32 (rows summed in order; the error stays at one
 *                 float32 rounding for any batch size), in the dtype for
 *                 double; columns in blocks so the accumulators stay in L1.
 */
#include "pyce_trainer_kernels.h"
#include "pyce_exp.h"
#include "pyce_dispatch.h"

#include <math.h>

/* Columns per block of column_sum: 256 accumulators stay in L1. */
#define PYCE_COLSUM_BLOCK 256

/* expm1(x) for x <= 0, float: Taylor degree 9 above -0.7, exp - 1 below. */
PYCE_ALWAYS_INLINE float expm1_nonpos_f32(float x)
{
    float p = 1.0f / 362880.0f;
    p = p * x + 1.0f / 40320.0f;
    p = p * x + 1.0f / 5040.0f;
    p = p * x + 1.0f / 720.0f;
    p = p * x + 1.0f / 120.0f;
    p = p * x + 1.0f / 24.0f;
    p = p * x + 1.0f / 6.0f;
    p = p * x + 0.5f;
    float small = x + x * x * p;
    float big = pyce_exp_f32(x) - 1.0f;
    return x > -0.7f ? small : big;
}

/* expm1(x) for x <= 0, double: Taylor degree 16 above -0.7, exp - 1 below. */
PYCE_ALWAYS_INLINE double expm1_nonpos_f64(double x)
{
    double p = 1.0 / 20922789888000.0;   /* 1/16! */
    p = p * x + 1.0 / 1307674368000.0;
    p = p * x + 1.0 / 87178291200.0;
    p = p * x + 1.0 / 6227020800.0;
    p = p * x + 1.0 / 479001600.0;
    p = p * x + 1.0 / 39916800.0;
    p = p * x + 1.0 / 3628800.0;
    p = p * x + 1.0 / 362880.0;
    p = p * x + 1.0 / 40320.0;
    p = p * x + 1.0 / 5040.0;
    p = p * x + 1.0 / 720.0;
    p = p * x + 1.0 / 120.0;
    p = p * x + 1.0 / 24.0;
    p = p * x + 1.0 / 6.0;
    p = p * x + 0.5;
    double small = x + x * x * p;
    double big = pyce_exp_f64(x) - 1.0;
    return x > -0.7 ? small : big;
}

PYCE_ALWAYS_INLINE float pyce_sqrt_f32(float x) { return sqrtf(x); }
PYCE_ALWAYS_INLINE double pyce_sqrt_f64(double x) { return sqrt(x); }

/* ---- float and double instantiations (T, its accumulator ACC, SFX) ---- */
#define T float
#define ACC double
#define SFX(name) name##_f32
#include "pyce_trainer_template.h"
#undef T
#undef ACC
#undef SFX

#define T double
#define ACC double
#define SFX(name) name##_f64
#include "pyce_trainer_template.h"
#undef T
#undef ACC
#undef SFX
