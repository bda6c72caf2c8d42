/*
 * One-pass elementwise kernels for pyce.nn's activations.
 *
 * ELU forward  y  = x > 0 ? x : alpha * expm1(x)
 * ELU backward dx = x > 0 ? g : g * (y + alpha)      (y + alpha = alpha * e^x;
 *                  PyTorch's formula from the result, no second exp)
 * ReLU backward dx = y <= 0 ? 0 : g              (as PyTorch: NaN passes g)
 *
 * NumPy needs four or five passes and temporaries for ELU (min, expm1, scale,
 * max/where); here each is one read of the inputs and one write, vectorized by
 * GCC (`omp simd`, branch-free selects) and dispatched between x86-64 levels
 * like cext/pyce_kernels.c.
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
 *   SGD  d = grad + wd*p;  buf = d (first step) or mu*buf + d;
 *        d = d + mu*buf (nesterov) or buf;  p = p - lr*d
 *   Adam d = grad + wd*p;  m = lerp(m, d, 1 - beta1) (PyTorch's two-sided
 *        lerp);  v = beta2*v + ((1 - beta2)*d)*d;
 *        p = p + (-step_size*m) / (sqrt(v)/bc2_sqrt + eps)
 * in the parameter's dtype; the scalars (1 - beta1, 1 - beta2, -step_size,
 * bc2_sqrt = sqrt(1 - beta2^t)) are computed in double by the caller and
 * rounded once to the dtype, as PyTorch does with Python-float arguments.
 * Options are loop-invariant, so each call goes through a switch to a loop
 * specialized for them (no per-element branch; an option that is off is
 * skipped, not multiplied by 0, so inf/NaN in p behave as in torch). GCC
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
#include "pyce_nn_kernels.h"
#include "pyce_exp.h"
#include "pyce_dispatch.h"

#include <math.h>


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

#define PYCE_NN_DEFINE(T, SFX)                                                       \
    PYCE_CLONES void pyce_elu_fwd_##SFX(const T *x, T *y, int64_t n, T alpha)     \
    {                                                                                \
        _Pragma("omp simd")                                                          \
        for (int64_t i = 0; i < n; i++) {                                            \
            T v = x[i];                                                              \
            T neg = v > 0 ? (T)0 : v; /* NaN stays NaN */                            \
            T e = alpha * expm1_nonpos_##SFX(neg);                                   \
            y[i] = v > 0 ? v : e;                                                    \
        }                                                                            \
    }                                                                                \
    PYCE_CLONES void pyce_elu_bwd_##SFX(const T *x, const T *y, const T *g, T *dx, \
                                           int64_t n, T alpha)                       \
    {                                                                                \
        _Pragma("omp simd")                                                          \
        for (int64_t i = 0; i < n; i++) {                                            \
            T gi = g[i];                                                             \
            dx[i] = x[i] > 0 ? gi : gi * (y[i] + alpha);                             \
        }                                                                            \
    }                                                                                \
    PYCE_CLONES void pyce_relu_bwd_##SFX(const T *y, const T *g, T *dx, int64_t n) \
    {                                                                                \
        _Pragma("omp simd")                                                          \
        for (int64_t i = 0; i < n; i++)                                              \
            dx[i] = y[i] <= 0 ? (T)0 : g[i];                                        \
    }                                                                                \
    void pyce_expm1_##SFX(const T *x, T *y, int64_t n)                               \
    {                                                                                \
        for (int64_t i = 0; i < n; i++)                                              \
            y[i] = expm1_nonpos_##SFX(x[i]);                                         \
    }

PYCE_NN_DEFINE(float, f32)
PYCE_NN_DEFINE(double, f64)

/* The loop body with the options as compile-time constants after inlining. */
#define PYCE_SGD_BODY(T, WD, MOM, NEST, FIRST)                                       \
    _Pragma("omp simd")                                                              \
    for (int64_t i = 0; i < n; i++) {                                                \
        T d = g[i];                                                                  \
        if (WD) d = d + wd * p[i];                                                   \
        if (MOM) {                                                                   \
            T b = (FIRST) ? d : mu * buf[i] + d;                                     \
            buf[i] = b;                                                              \
            d = (NEST) ? d + mu * b : b;                                             \
        }                                                                            \
        p[i] = p[i] - lr * d;                                                        \
    }

/* PyTorch's lerp(start, end, w): start + w*(end - start) for |w| < 0.5, else
   end - (end - start)*(1 - w) (exact at both ends). SMALL_W1 picks the side. */
#define PYCE_ADAM_BODY(T, SFX, WD, SMALL_W1)                                         \
    _Pragma("omp simd")                                                              \
    for (int64_t i = 0; i < n; i++) {                                                \
        T d = g[i];                                                                  \
        if (WD) d = d + wd * p[i];                                                   \
        T mi = m[i], diff = d - mi;                                                  \
        mi = (SMALL_W1) ? mi + w1 * diff : d - diff * w1c;                           \
        T vi = beta2 * v[i];                                                         \
        vi = vi + (w2 * d) * d;                                                      \
        m[i] = mi;                                                                   \
        v[i] = vi;                                                                   \
        T denom = pyce_sqrt_##SFX(vi) / bc2_sqrt + eps;                              \
        p[i] = p[i] + (neg_step * mi) / denom;                                       \
    }

PYCE_ALWAYS_INLINE float pyce_sqrt_f32(float x) { return sqrtf(x); }
PYCE_ALWAYS_INLINE double pyce_sqrt_f64(double x) { return sqrt(x); }

#define PYCE_OPTIM_DEFINE(T, SFX)                                                    \
    PYCE_CLONES void pyce_sgd_step_##SFX(T *p, const T *g, T *buf, int64_t n,     \
                                            T lr, T mu, T wd, int nesterov, int first) \
    {                                                                                \
        int wd_on = wd != 0, mom = mu != 0 && buf != NULL;                           \
        switch (wd_on * 8 + mom * 4 + (mom && nesterov) * 2 + (mom && first)) {     \
        case 0:  PYCE_SGD_BODY(T, 0, 0, 0, 0) break;                                 \
        case 4:  PYCE_SGD_BODY(T, 0, 1, 0, 0) break;                                 \
        case 5:  PYCE_SGD_BODY(T, 0, 1, 0, 1) break;                                 \
        case 6:  PYCE_SGD_BODY(T, 0, 1, 1, 0) break;                                 \
        case 7:  PYCE_SGD_BODY(T, 0, 1, 1, 1) break;                                 \
        case 8:  PYCE_SGD_BODY(T, 1, 0, 0, 0) break;                                 \
        case 12: PYCE_SGD_BODY(T, 1, 1, 0, 0) break;                                 \
        case 13: PYCE_SGD_BODY(T, 1, 1, 0, 1) break;                                 \
        case 14: PYCE_SGD_BODY(T, 1, 1, 1, 0) break;                                 \
        default: PYCE_SGD_BODY(T, 1, 1, 1, 1) break;                                 \
        }                                                                            \
    }                                                                                \
    PYCE_CLONES void pyce_adam_step_##SFX(T *p, const T *g, T *m, T *v, int64_t n, \
                                             T wd, T w1, T beta2, T w2, T neg_step,  \
                                             T bc2_sqrt, T eps)                      \
    {                                                                                \
        const T w1c = (T)1 - w1;  /* in T from T's w1, as PyTorch's lerp */          \
        switch ((wd != 0) * 2 + (w1 < (T)0.5)) {                                     \
        case 0:  PYCE_ADAM_BODY(T, SFX, 0, 0) break;                                 \
        case 1:  PYCE_ADAM_BODY(T, SFX, 0, 1) break;                                 \
        case 2:  PYCE_ADAM_BODY(T, SFX, 1, 0) break;                                 \
        default: PYCE_ADAM_BODY(T, SFX, 1, 1) break;                                 \
        }                                                                            \
    }

PYCE_OPTIM_DEFINE(float, f32)
PYCE_OPTIM_DEFINE(double, f64)

#define PYCE_COLSUM_BLOCK 256

#define PYCE_BIAS_DEFINE(T, ACC, SFX)                                                \
    PYCE_CLONES void pyce_add_row_bias_##SFX(T *y, const T *b, int64_t rows,       \
                                                int64_t cols)                        \
    {                                                                                \
        for (int64_t i = 0; i < rows; i++) {                                         \
            T *yi = y + i * cols;                                                    \
            _Pragma("omp simd")                                                      \
            for (int64_t j = 0; j < cols; j++)                                       \
                yi[j] = yi[j] + b[j];                                                \
        }                                                                            \
    }                                                                                \
    PYCE_CLONES void pyce_column_sum_##SFX(const T *g, T *out, int64_t rows,       \
                                              int64_t cols, int accumulate)          \
    {                                                                                \
        ACC acc[PYCE_COLSUM_BLOCK];                                                  \
        for (int64_t j0 = 0; j0 < cols; j0 += PYCE_COLSUM_BLOCK) {                   \
            int64_t w = cols - j0 < PYCE_COLSUM_BLOCK ? cols - j0 : PYCE_COLSUM_BLOCK; \
            for (int64_t j = 0; j < w; j++)                                          \
                acc[j] = 0;                                                          \
            for (int64_t i = 0; i < rows; i++) {                                     \
                const T *gi = g + i * cols + j0;                                     \
                _Pragma("omp simd")                                                  \
                for (int64_t j = 0; j < w; j++)                                      \
                    acc[j] += (ACC)gi[j];                                            \
            }                                                                        \
            if (accumulate) {                                                        \
                for (int64_t j = 0; j < w; j++)                                      \
                    out[j0 + j] = (T)((ACC)out[j0 + j] + acc[j]);                    \
            } else {                                                                 \
                for (int64_t j = 0; j < w; j++)                                      \
                    out[j0 + j] = (T)acc[j];                                         \
            }                                                                        \
        }                                                                            \
    }

PYCE_BIAS_DEFINE(float, double, f32)
PYCE_BIAS_DEFINE(double, double, f64)
