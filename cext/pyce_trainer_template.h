/*
 * Trainer kernels, instantiated for T = float and T = double by
 * pyce_trainer_kernels.c, which defines T, ACC (column_sum's accumulator)
 * and SFX(name) before including this file; the formulas, their precision
 * and the measurements behind them are described at the top of that file.
 * No include guard: included once per type.
 */

/* ---- activations ---- */

PYCE_CLONES void SFX(pyce_elu_fwd)(const T *x, T *y, int64_t n, T alpha)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const T v = x[i];
        const T neg = v > 0 ? (T)0 : v; /* NaN stays NaN */
        const T e = alpha * SFX(expm1_nonpos)(neg);
        y[i] = v > 0 ? v : e;
    }
}

PYCE_CLONES void SFX(pyce_elu_bwd)(const T *x, const T *y, const T *g, T *dx, int64_t n,
                                   T alpha)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const T gi = g[i];
        dx[i] = x[i] > 0 ? gi : gi * (y[i] + alpha);
    }
}

/* max(x, 0) as NumPy's np.maximum(x, 0) gives it: NaN stays NaN, -0 becomes +0
 * (one vectorized pass; NumPy's NaN-propagating maximum took ~7 us for 64 x 256). */
PYCE_CLONES void SFX(pyce_relu_fwd)(const T *x, T *y, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const T v = x[i];
        y[i] = (v > 0 || v != v) ? v : (T)0;
    }
}

PYCE_CLONES void SFX(pyce_relu_bwd)(const T *y, const T *g, T *dx, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        dx[i] = y[i] <= 0 ? (T)0 : g[i];
}

void SFX(pyce_expm1)(const T *x, T *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = SFX(expm1_nonpos)(x[i]);
}

/* ---- SGD ---- */

/* The SGD loop; the int options are literals at every call site below, so
 * each call inlines to a loop without the branches of the options that are
 * off. damp1 = 1 - dampening (used only when DAMP). */
PYCE_ALWAYS_INLINE void SFX(sgd_loop)(T *p, const T *g, T *buf, int64_t n, T lr, T mu,
                                      T damp1, T wd, int WD, int MOM, int DAMP, int NEST,
                                      int FIRST)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        T d = g[i];
        if (WD)
            d = d + wd * p[i];
        if (MOM) {
            const T b = FIRST ? d : (DAMP ? mu * buf[i] + damp1 * d : mu * buf[i] + d);
            buf[i] = b;
            d = NEST ? d + mu * b : b;
        }
        p[i] = p[i] - lr * d;
    }
}

/* The loops of the momentum steps for one weight-decay setting (WD literal). */
PYCE_ALWAYS_INLINE void SFX(sgd_momentum)(T *p, const T *g, T *buf, int64_t n, T lr, T mu,
                                          T damp1, T wd, int WD, int damp, int nesterov,
                                          int first)
{
    if (first && nesterov)
        SFX(sgd_loop)(p, g, buf, n, lr, mu, damp1, wd, WD, 1, 0, 1, 1);
    else if (first)
        SFX(sgd_loop)(p, g, buf, n, lr, mu, damp1, wd, WD, 1, 0, 0, 1);
    else if (nesterov)  /* torch: nesterov needs dampening 0 (checked by pyce.optim) */
        SFX(sgd_loop)(p, g, buf, n, lr, mu, damp1, wd, WD, 1, 0, 1, 0);
    else if (damp)
        SFX(sgd_loop)(p, g, buf, n, lr, mu, damp1, wd, WD, 1, 1, 0, 0);
    else
        SFX(sgd_loop)(p, g, buf, n, lr, mu, damp1, wd, WD, 1, 0, 0, 0);
}

PYCE_CLONES void SFX(pyce_sgd_step)(T *p, const T *g, T *buf, int64_t n, T lr, T mu,
                                    T damp1, T wd, int nesterov, int first)
{
    const int mom = mu != 0 && buf != NULL, damp = damp1 != (T)1;
    if (!mom && wd != 0)
        SFX(sgd_loop)(p, g, buf, n, lr, mu, damp1, wd, 1, 0, 0, 0, 0);
    else if (!mom)
        SFX(sgd_loop)(p, g, buf, n, lr, mu, damp1, wd, 0, 0, 0, 0, 0);
    else if (wd != 0)
        SFX(sgd_momentum)(p, g, buf, n, lr, mu, damp1, wd, 1, damp, nesterov, first);
    else
        SFX(sgd_momentum)(p, g, buf, n, lr, mu, damp1, wd, 0, damp, nesterov, first);
}

/* The rest of an SGD momentum step whose buffer a gemm already updated with
 * the weight gradient (buf = mu*buf + (1 - dampening)*G, pyce.optim's fused
 * path): buf += c*p (the weight decay term, c = (1 - dampening)*wd, or wd on
 * the buffer's first step; skipped when c == 0), then p -= lr*buf. */
PYCE_CLONES void SFX(pyce_sgd_apply)(T *p, T *buf, int64_t n, T lr, T c)
{
    if (c != 0) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) {
            const T b = buf[i] + c * p[i];
            buf[i] = b;
            p[i] = p[i] - lr * b;
        }
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++)
            p[i] = p[i] - lr * buf[i];
    }
}

/* ---- Adam ---- */

/* The Adam loop (WD and SMALL_W1 literals at each call). m follows PyTorch's
 * lerp(start, end, w): start + w*(end - start) for |w| < 0.5, else
 * end - (end - start)*(1 - w) (exact at both ends); SMALL_W1 picks the side. */
PYCE_ALWAYS_INLINE void SFX(adam_loop)(T *p, const T *g, T *m, T *v, int64_t n, T wd, T w1,
                                       T w1c, T beta2, T w2, T neg_step, T bc2_sqrt, T eps,
                                       int WD, int SMALL_W1)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        T d = g[i];
        if (WD)
            d = d + wd * p[i];
        T mi = m[i];
        const T diff = d - mi;
        mi = SMALL_W1 ? mi + w1 * diff : d - diff * w1c;
        T vi = beta2 * v[i];
        vi = vi + (w2 * d) * d;
        m[i] = mi;
        v[i] = vi;
        const T denom = SFX(pyce_sqrt)(vi) / bc2_sqrt + eps;
        p[i] = p[i] + (neg_step * mi) / denom;
    }
}

PYCE_CLONES void SFX(pyce_adam_step)(T *p, const T *g, T *m, T *v, int64_t n, T wd, T w1,
                                     T beta2, T w2, T neg_step, T bc2_sqrt, T eps)
{
    const T w1c = (T)1 - w1;  /* in T from T's w1, as PyTorch's lerp */
    const int wd_on = wd != 0, small = w1 < (T)0.5;
    if (wd_on && small)
        SFX(adam_loop)(p, g, m, v, n, wd, w1, w1c, beta2, w2, neg_step, bc2_sqrt, eps, 1, 1);
    else if (wd_on)
        SFX(adam_loop)(p, g, m, v, n, wd, w1, w1c, beta2, w2, neg_step, bc2_sqrt, eps, 1, 0);
    else if (small)
        SFX(adam_loop)(p, g, m, v, n, wd, w1, w1c, beta2, w2, neg_step, bc2_sqrt, eps, 0, 1);
    else
        SFX(adam_loop)(p, g, m, v, n, wd, w1, w1c, beta2, w2, neg_step, bc2_sqrt, eps, 0, 0);
}

/* ---- Linear's bias ---- */

PYCE_CLONES void SFX(pyce_add_row_bias)(T *y, const T *b, int64_t rows, int64_t cols)
{
    for (int64_t i = 0; i < rows; i++) {
        T *yi = y + i * cols;
#pragma omp simd
        for (int64_t j = 0; j < cols; j++)
            yi[j] = yi[j] + b[j];
    }
}

PYCE_CLONES void SFX(pyce_column_sum)(const T *g, T *out, int64_t rows, int64_t cols,
                                      int accumulate)
{
    ACC acc[PYCE_COLSUM_BLOCK];
    for (int64_t j0 = 0; j0 < cols; j0 += PYCE_COLSUM_BLOCK) {
        const int64_t w = cols - j0 < PYCE_COLSUM_BLOCK ? cols - j0 : PYCE_COLSUM_BLOCK;
        for (int64_t j = 0; j < w; j++)
            acc[j] = 0;
        for (int64_t i = 0; i < rows; i++) {
            const T *gi = g + i * cols + j0;
#pragma omp simd
            for (int64_t j = 0; j < w; j++)
                acc[j] += (ACC)gi[j];
        }
        if (accumulate) {
            for (int64_t j = 0; j < w; j++)
                out[j0 + j] = (T)((ACC)out[j0 + j] + acc[j]);
        } else {
            for (int64_t j = 0; j < w; j++)
                out[j0 + j] = (T)acc[j];
        }
    }
}
