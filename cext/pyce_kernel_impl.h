/*
 * Row kernels, instantiated for T = float and T = double by pyce_kernels.c
 * (which defines T, SFX(name) and PYCE_EXP before including this file).
 * The algorithm and its precision are described at the top of that file.
 *
 * The row functions take the class strides (sx, sg, st) as arguments and are
 * always inlined: the block functions call them once with literal 1s for
 * contiguous rows, which GCC vectorizes, and once with run-time strides for
 * class-axis-1 (N, C, d...) inputs and other views.
 */

/* Maximum of a row; NaN handling does not matter here because a NaN anywhere
 * in the row reaches s through exp(NaN - m) or through m itself. */
PYCE_ALWAYS_INLINE T SFX(row_max)(const T *restrict xr, int64_t sx, int64_t c)
{
    T m = xr[0];
#pragma omp simd reduction(max : m)
    for (int64_t k = 0; k < c; k++) {
        const T v = xr[k * sx];
        m = v > m ? v : m;
    }
    return m;
}

/* sum_k exp(x_k - m) in double, storing each exp in er when er != NULL. */
PYCE_ALWAYS_INLINE double SFX(row_expsum)(const T *restrict xr, int64_t sx,
                                          T *restrict er, int64_t se,
                                          int64_t c, T m)
{
    double s = 0.0;
    if (er) {
#pragma omp simd reduction(+ : s)
        for (int64_t k = 0; k < c; k++) {
            const T e = PYCE_EXP(xr[k * sx] - m);
            er[k * se] = e;
            s += (double)e;
        }
    } else {
#pragma omp simd reduction(+ : s)
        for (int64_t k = 0; k < c; k++)
            s += (double)PYCE_EXP(xr[k * sx] - m);
    }
    return s;
}

/* Loss of one row (already multiplied by its sample weight); writes the
 * gradient row into gr when gr != NULL. */
PYCE_ALWAYS_INLINE double SFX(ce_row)(const pyce_ce_args *a, int64_t i,
                                      const T *restrict xr, int64_t sx,
                                      T *restrict gr, int64_t sg,
                                      const T *restrict tr, int64_t st)
{
    const int64_t c = a->c;
    const double *cw = a->class_weight;
    const double eps = a->label_smoothing;
    const double eps_c = eps / (double)c;
    int64_t y = -1;

    if (a->target) {
        y = a->target[i];
        if (y == a->ignore_index) {
            if (gr) {
#pragma omp simd
                for (int64_t k = 0; k < c; k++)
                    gr[k * sg] = (T)0;
            }
            return 0.0;
        }
    }

    /* Everything that reads the logits besides the exp sweep comes first, so
     * that the gradient may be written over the input (overwrite_input=True:
     * gr == xr with the same strides). */
    const T m = SFX(row_max)(xr, sx, c);
    const double md = (double)m;
    const double v = a->sample_weight ? a->sample_weight[i] : 1.0;

    double xm_part;  /* class targets: x_y - m; probability targets: sum_k a_k (x_k - m) */
    double pcoef;    /* coefficient of p_k in the gradient, and of log(s) in the loss */
    double smooth_x = 0.0;  /* label smoothing: eps/c sum_k w_k (x_k - m) */
    double target_w = 0.0;  /* (1-eps) w_y for class targets */
    if (a->target) {
        const double wy = cw ? cw[y] : 1.0;
        target_w = (1.0 - eps) * wy;
        /* A zero weight contributes nothing, even for a -inf logit (0 * -inf
         * would be NaN): classes are masked by weight 0 and logit -inf. */
        xm_part = target_w != 0.0 ? target_w * ((double)xr[y * sx] - md) : 0.0;
        pcoef = target_w;
        if (eps > 0.0) {
            double swx = 0.0;
            if (cw) {
#pragma omp simd reduction(+ : swx)
                for (int64_t k = 0; k < c; k++)
                    swx += cw[k] != 0.0 ? cw[k] * ((double)xr[k * sx] - md) : 0.0;
            } else {
#pragma omp simd reduction(+ : swx)
                for (int64_t k = 0; k < c; k++)
                    swx += (double)xr[k * sx] - md;
            }
            smooth_x = eps_c * swx;
            pcoef += eps_c * a->class_weight_sum;
        }
    } else {
        /* probability targets: a_k = w_k ((1-eps) t_k + eps/c) */
        double asum = 0.0, ax = 0.0;
        for (int64_t k = 0; k < c; k++) {
            double ak = (1.0 - eps) * (double)tr[k * st] + eps_c;
            if (cw)
                ak *= cw[k];
            asum += ak;
            if (ak != 0.0)
                ax += ak * ((double)xr[k * sx] - md);
        }
        xm_part = ax;
        pcoef = asum;
    }

    const double s = SFX(row_expsum)(xr, sx, gr, sg, c, m);
    const double ls = log(s);
    /* -sum_k a_k log p_k = (sum_k a_k) ls - sum_k a_k (x_k - m) */
    double loss = pcoef * ls - xm_part - smooth_x;
    if (a->z_loss != 0.0) {
        const double lse = md + ls;
        loss += a->z_loss * lse * lse;
        pcoef += 2.0 * a->z_loss * lse;
    }

    if (gr) {
        double g = a->grad_scale * v;
        if (a->grad_output)
            g *= a->grad_output[i];
        const T pc = (T)(g * pcoef / s);
        if (a->target) {
            const double ey = (double)gr[y * sg];
            if (eps > 0.0 && cw) {
                const double gb = g * eps_c;
#pragma omp simd
                for (int64_t k = 0; k < c; k++)
                    gr[k * sg] = gr[k * sg] * pc - (T)(gb * cw[k]);
            } else if (eps > 0.0) {
                const T b = (T)(g * eps_c);
#pragma omp simd
                for (int64_t k = 0; k < c; k++)
                    gr[k * sg] = gr[k * sg] * pc - b;
            } else {
#pragma omp simd
                for (int64_t k = 0; k < c; k++)
                    gr[k * sg] = gr[k * sg] * pc;
            }
            /* Target entry in double: p_y - 1 = (e_y - s)/s keeps its
             * relative accuracy when p_y ~ 1 (no float cancellation). */
            const double smooth_b = eps > 0.0 ? eps_c * (cw ? cw[y] : 1.0) : 0.0;
            gr[y * sg] = (T)(g * ((target_w * (ey - s) + (pcoef - target_w) * ey) / s
                                  - smooth_b));
        } else {
            for (int64_t k = 0; k < c; k++) {
                double ak = (1.0 - eps) * (double)tr[k * st] + eps_c;
                if (cw)
                    ak *= cw[k];
                gr[k * sg] = (T)((double)(gr[k * sg] * pc) - g * ak);
            }
        }
    }
    return v * loss;
}

/* Rows [i0, i1): returns the sum of their losses in row order. */
PYCE_CLONES double SFX(pyce_ce_block)(const pyce_ce_args *a, int64_t i0, int64_t i1)
{
    const T *x = (const T *)a->x;
    T *grad = (T *)a->grad;
    T *loss_out = (T *)a->loss;
    const T *tp = (const T *)a->target_prob;
    const int64_t d = a->d;
    const int contiguous = a->x_sc == 1 && (!grad || a->g_sc == 1) &&
                           (!tp || a->t_sc == 1);
    double total = 0.0;
    for (int64_t i = i0; i < i1; i++) {
        const int64_t n = d == 1 ? i : i / d;
        const int64_t p = d == 1 ? 0 : i % d;
        const T *xr = x + n * a->x_sn + p * a->x_sd;
        T *gr = grad ? grad + n * a->g_sn + p * a->g_sd : NULL;
        const T *tr = tp ? tp + n * a->t_sn + p * a->t_sd : NULL;
        double l;
        if (contiguous)
            l = SFX(ce_row)(a, i, xr, 1, gr, 1, tr, 1);
        else
            l = SFX(ce_row)(a, i, xr, a->x_sc, gr, a->g_sc, tr, a->t_sc);
        if (loss_out)
            loss_out[i] = (T)l;
        total += l;
    }
    return total;
}

double SFX(pyce_ce)(const pyce_ce_args *a)
{
    const int64_t rows = a->n * a->d;
    if (rows == 0)
        return 0.0;
    const int64_t bs = block_rows(rows);
    const int64_t nblocks = (rows + bs - 1) / bs;
    double partial[PYCE_MAX_BLOCKS];
    const int nt = choose_threads(a->n_threads, rows * a->c, nblocks);
    if (nt <= 1) {
        for (int64_t b = 0; b < nblocks; b++) {
            const int64_t hi = (b + 1) * bs < rows ? (b + 1) * bs : rows;
            partial[b] = SFX(pyce_ce_block)(a, b * bs, hi);
        }
    } else {
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t b = 0; b < nblocks; b++) {
            const int64_t hi = (b + 1) * bs < rows ? (b + 1) * bs : rows;
            partial[b] = SFX(pyce_ce_block)(a, b * bs, hi);
        }
    }
    double total = 0.0;
    for (int64_t b = 0; b < nblocks; b++)
        total += partial[b];
    return total;
}

/* ---- softmax / log_softmax ---- */

PYCE_ALWAYS_INLINE void SFX(softmax_row)(const T *restrict xr, int64_t sx,
                                         T *restrict orow, int64_t so,
                                         int64_t c, int log_out)
{
    const T m = SFX(row_max)(xr, sx, c);
    if (log_out) {
        const double md = (double)m;
        const double ls = log(SFX(row_expsum)(xr, sx, NULL, 0, c, m));
#pragma omp simd
        for (int64_t k = 0; k < c; k++)
            orow[k * so] = (T)(((double)xr[k * sx] - md) - ls);
    } else {
        const double s = SFX(row_expsum)(xr, sx, orow, so, c, m);
        const T inv = (T)(1.0 / s);
#pragma omp simd
        for (int64_t k = 0; k < c; k++)
            orow[k * so] = orow[k * so] * inv;
    }
}

PYCE_CLONES void SFX(pyce_softmax_block)(const pyce_softmax_args *a, int64_t i0, int64_t i1)
{
    const T *x = (const T *)a->x;
    T *out = (T *)a->out;
    const int64_t d = a->d;
    const int contiguous = a->x_sc == 1 && a->o_sc == 1;
    for (int64_t i = i0; i < i1; i++) {
        const int64_t n = d == 1 ? i : i / d;
        const int64_t p = d == 1 ? 0 : i % d;
        const T *xr = x + n * a->x_sn + p * a->x_sd;
        T *orow = out + n * a->o_sn + p * a->o_sd;
        if (contiguous)
            SFX(softmax_row)(xr, 1, orow, 1, a->c, a->log);
        else
            SFX(softmax_row)(xr, a->x_sc, orow, a->o_sc, a->c, a->log);
    }
}

void SFX(pyce_softmax)(const pyce_softmax_args *a)
{
    const int64_t rows = a->n * a->d;
    if (rows == 0 || a->c == 0)
        return;
    const int64_t bs = block_rows(rows);
    const int64_t nblocks = (rows + bs - 1) / bs;
    const int nt = choose_threads(a->n_threads, rows * a->c, nblocks);
    if (nt <= 1) {
        for (int64_t b = 0; b < nblocks; b++)
            SFX(pyce_softmax_block)(a, b * bs, (b + 1) * bs < rows ? (b + 1) * bs : rows);
    } else {
#pragma omp parallel for schedule(static) num_threads(nt)
        for (int64_t b = 0; b < nblocks; b++)
            SFX(pyce_softmax_block)(a, b * bs, (b + 1) * bs < rows ? (b + 1) * bs : rows);
    }
}
