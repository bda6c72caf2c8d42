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
 */
#include "pyce_nn_kernels.h"
#include "pyce_exp.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__) && !defined(PYCE_NO_CLONES)
#define PYCE_NN_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PYCE_NN_CLONES
#endif

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
    PYCE_NN_CLONES void pyce_elu_fwd_##SFX(const T *x, T *y, int64_t n, T alpha)     \
    {                                                                                \
        _Pragma("omp simd")                                                          \
        for (int64_t i = 0; i < n; i++) {                                            \
            T v = x[i];                                                              \
            T neg = v > 0 ? (T)0 : v; /* NaN stays NaN */                            \
            T e = alpha * expm1_nonpos_##SFX(neg);                                   \
            y[i] = v > 0 ? v : e;                                                    \
        }                                                                            \
    }                                                                                \
    PYCE_NN_CLONES void pyce_elu_bwd_##SFX(const T *x, const T *y, const T *g, T *dx, \
                                           int64_t n, T alpha)                       \
    {                                                                                \
        _Pragma("omp simd")                                                          \
        for (int64_t i = 0; i < n; i++) {                                            \
            T gi = g[i];                                                             \
            dx[i] = x[i] > 0 ? gi : gi * (y[i] + alpha);                             \
        }                                                                            \
    }                                                                                \
    PYCE_NN_CLONES void pyce_relu_bwd_##SFX(const T *y, const T *g, T *dx, int64_t n) \
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
