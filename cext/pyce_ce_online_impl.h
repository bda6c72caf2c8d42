/*
 * The online max-and-sum row kernel, instantiated for T = float and double by
 * pyce_ce_online.c (which defines T, SFX(name), T_MAX and PYCE_EXP).
 */

/* One row i: its loss; the gradient row when a->grad is set. */
PYCE_ALWAYS_INLINE double SFX(online_row)(const pyce_ce_args *a, int64_t i)
{
    enum { CH = PYCE_ON_CHUNK };
    const int64_t c = a->c;
    const T *xr = (const T *)a->x + i * a->x_sn;
    T *gr = a->grad ? (T *)a->grad + i * a->g_sn : NULL;
    const int64_t y = a->target[i];
    if (y == a->ignore_index) {
        if (gr) {
#pragma omp simd
            for (int64_t k = 0; k < c; k++)
                gr[k] = (T)0;
        }
        return 0.0;
    }
    double w, g;
    small_row_weights(a, i, y, &w, &g);

    /* pass 1: running maximum m and sums acc (at m) */
    T m = (T)-INFINITY;
    double acc[CH / 4];
    for (int j = 0; j < CH / 4; j++)
        acc[j] = 0.0;
    int64_t k = 0;
    for (; k + CH <= c; k += CH) {
        T cm = (T)-INFINITY;
#pragma omp simd reduction(max : cm)
        for (int j = 0; j < CH; j++)
            cm = xr[k + j] > cm ? xr[k + j] : cm;
        if (cm > m) {
            /* exp(-inf) = 0 for the first chunk; NaN rows stay NaN through acc */
            const double f = pyce_expneg_f64((double)m - (double)cm);
            for (int j = 0; j < CH / 4; j++)
                acc[j] *= f;
            m = cm;
        }
        T e4[CH];
#pragma omp simd
        for (int j = 0; j < CH; j++)
            e4[j] = PYCE_EXP(xr[k + j] - m);
        /* four exps in T, then double (as row_expsum) */
#pragma omp simd
        for (int j = 0; j < CH / 4; j++)
            acc[j] += (double)((e4[j] + e4[j + CH / 4]) + (e4[j + CH / 2] + e4[j + 3 * CH / 4]));
    }
    double tail = 0.0;
    if (k < c) {
        T cm = (T)-INFINITY;
        for (int64_t kk = k; kk < c; kk++)
            cm = xr[kk] > cm ? xr[kk] : cm;
        if (cm > m) {
            const double f = pyce_expneg_f64((double)m - (double)cm);
            for (int j = 0; j < CH / 4; j++)
                acc[j] *= f;
            m = cm;
        }
#pragma omp simd reduction(+ : tail)
        for (int64_t kk = k; kk < c; kk++)
            tail += (double)PYCE_EXP(xr[kk] - m);
    }
    double s = 0.0;
    for (int j = 0; j < CH / 4; j++)
        s += acc[j];
    s += tail;

    /* pass 2: the gradient, exps recomputed at the final maximum */
    const double md = (double)m;
    const double loss = small_row_loss(1, w, log(s), (double)xr[y] - md);
    if (gr) {
        double pcd, fix;
        const double ey = (double)PYCE_EXP(xr[y] - m);
        small_row_grad_coefs(g, ey, s, &pcd, &fix);
        const T pc = (T)pcd;
#pragma omp simd
        for (int64_t kk = 0; kk < c; kk++)
            gr[kk] = PYCE_EXP(xr[kk] - m) * pc;
        gr[y] = (T)fix;
    }
    return loss;
}

PYCE_CLONES static double SFX(online_block)(const pyce_ce_args *a, int64_t i0, int64_t i1)
{
    T *loss_out = (T *)a->loss;
    double total = 0.0;
    for (int64_t i = i0; i < i1; i++) {
        const double l = SFX(online_row)(a, i);
        if (loss_out)
            loss_out[i] = (T)l;
        total += l;
    }
    return total;
}

int SFX(pyce_ce_online)(const pyce_ce_args *a, int64_t i0, int64_t i1, double *loss_sum)
{
    if (!online_handles(a, (int64_t)sizeof(T)) || i1 <= i0 || !pyce_fast_paths_enabled() ||
        !small_grad_in_range(a, i0, i1, T_MAX))
        return 0;
    *loss_sum = SFX(online_block)(a, i0, i1);
    return 1;
}
