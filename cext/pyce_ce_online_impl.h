/*
 * The segmented row kernel for rows beyond L2, instantiated for T = float and
 * double by pyce_ce_online.c (which defines T, SFX(name), T_MAX and PYCE_EXP).
 * The method and its precision are described at the top of pyce_ce_online.c.
 */

/* Maximum of xr[0..n) ignoring NaN (`v > m` is false for NaN), -inf when there
 * is no other value; PYCE_ON_ACC independent maxima (no chain on one register). */
PYCE_ALWAYS_INLINE T SFX(seg_max)(const T *xr, int64_t n)
{
    enum { A = PYCE_ON_ACC };
    T m = (T)-INFINITY;
    int64_t k = 0;
    if (n >= A) {
        T acc[A];
#pragma omp simd
        for (int j = 0; j < A; j++)
            acc[j] = (T)-INFINITY;
        for (; k + A <= n; k += A) {
#pragma omp simd
            for (int j = 0; j < A; j++) {
                const T v = xr[k + j];
                acc[j] = v > acc[j] ? v : acc[j];
            }
        }
#pragma omp simd reduction(max : m)
        for (int j = 0; j < A; j++)
            m = acc[j] > m ? acc[j] : m;
    }
    for (; k < n; k++)
        m = xr[k] > m ? xr[k] : m;
    return m;
}

/* Pass 1 over one segment xr[0..n): its maximum *mj and sum_k exp(x_k - mu) in
 * double, mu = *mj (0 when *mj = -inf: the segment holds only -inf and NaN,
 * whose exps are then exactly 0 and NaN instead of exp(-inf - -inf) = NaN for
 * every entry).  The exps are stored in er when er != NULL (the gradient row:
 * this is its only write before pass 2 scales it in cache).  Four exps are
 * added in T before the double accumulator, the rule of row_expsum in
 * pyce_loss_template.h. */
PYCE_ALWAYS_INLINE double SFX(seg_expsum)(const T *xr, T *er, int64_t n, T *mj,
                                          const T *next_x, T *next_e, int64_t next_n)
{
    enum { A = PYCE_ON_ACC };
    const T m = SFX(seg_max)(xr, n);
    const T mu = m == (T)-INFINITY ? (T)0 : m;
    *mj = m;
    double acc[A / 4];
    for (int j = 0; j < A / 4; j++)
        acc[j] = 0.0;
    int64_t k = 0;
    for (; k + A <= n; k += A) {
        T e4[A];
        /* the next segment's logits (and gradient lines) are requested while
         * this one is exponentiated, so memory streams during the compute */
        if (k < next_n) {
            for (int b = 0; b < A * (int)sizeof(T); b += 64) {
                PYCE_ON_PREFETCH((const char *)(next_x + k) + b);
                if (next_e)
                    PYCE_ON_PREFETCHW((char *)(next_e + k) + b);
            }
        }
        if (er) {
#pragma omp simd
            for (int j = 0; j < A; j++) {
                const T e = PYCE_EXP(xr[k + j] - mu);
                er[k + j] = e;
                e4[j] = e;
            }
        } else {
#pragma omp simd
            for (int j = 0; j < A; j++)
                e4[j] = PYCE_EXP(xr[k + j] - mu);
        }
#pragma omp simd
        for (int j = 0; j < A / 4; j++)
            acc[j] += (double)((e4[j] + e4[j + A / 4]) + (e4[j + A / 2] + e4[j + 3 * A / 4]));
    }
    double s = 0.0;
    for (int j = 0; j < A / 4; j++)
        s += acc[j];
    for (; k < n; k++) {
        const T e = PYCE_EXP(xr[k] - mu);
        if (er)
            er[k] = e;
        s += (double)e;
    }
    return s;
}

/* exp(mj - m) in double: the factor from a segment's maximum to the row's;
 * exactly 1 when mj = m, 0 for a segment of only -inf / NaN (mj = -inf; its
 * exps are 0 or NaN), NaN when m = +inf (a +inf logit: a NaN row anyway). */
PYCE_ALWAYS_INLINE double SFX(seg_factor)(T mj, double md)
{
    if (mj == (T)-INFINITY)
        return 0.0;
    return pyce_expneg_f64((double)mj - md);
}

/* Forward only: the row's sum of exp(x_k - m) (double) and its maximum *mout
 * in ONE sweep, chunk by chunk (PYCE_ON_ACC elements): a chunk's maximum cm,
 * and when it exceeds the running maximum m, the partial sums are scaled by
 * exp(m - cm) and m = cm; then the chunk's exps at m are added (four in T,
 * then double).  While m is -inf (only -inf and NaN so far) the exps are taken
 * at 0 (exactly 0 for -inf, NaN for NaN) and the later scaling by 0 keeps a
 * NaN.  Measured 10% faster than the segments below when nothing is stored
 * (the maxima and the exps of a chunk come from the same L1 lines). */
PYCE_ALWAYS_INLINE double SFX(row_sum_running)(const T *xr, int64_t c, T *mout)
{
    enum { A = PYCE_ON_ACC };
    T m = (T)-INFINITY;
    double acc[A / 4];
    for (int j = 0; j < A / 4; j++)
        acc[j] = 0.0;
    int64_t k = 0;
    for (; k + A <= c; k += A) {
        T cm = (T)-INFINITY;
#pragma omp simd reduction(max : cm)
        for (int j = 0; j < A; j++)
            cm = xr[k + j] > cm ? xr[k + j] : cm;
        if (cm > m) {
            const double f = m == (T)-INFINITY ? 0.0 : pyce_expneg_f64((double)m - (double)cm);
            for (int j = 0; j < A / 4; j++)
                acc[j] *= f;
            m = cm;
        }
        const T mu = m == (T)-INFINITY ? (T)0 : m;
        T e4[A];
#pragma omp simd
        for (int j = 0; j < A; j++)
            e4[j] = PYCE_EXP(xr[k + j] - mu);
#pragma omp simd
        for (int j = 0; j < A / 4; j++)
            acc[j] += (double)((e4[j] + e4[j + A / 4]) + (e4[j + A / 2] + e4[j + 3 * A / 4]));
    }
    double tail = 0.0;
    if (k < c) {
        T cm = (T)-INFINITY;
        for (int64_t kk = k; kk < c; kk++)
            cm = xr[kk] > cm ? xr[kk] : cm;
        if (cm > m) {
            const double f = m == (T)-INFINITY ? 0.0 : pyce_expneg_f64((double)m - (double)cm);
            for (int j = 0; j < A / 4; j++)
                acc[j] *= f;
            m = cm;
        }
        const T mu = m == (T)-INFINITY ? (T)0 : m;
        for (int64_t kk = k; kk < c; kk++)
            tail += (double)PYCE_EXP(xr[kk] - mu);
    }
    double s = 0.0;
    for (int j = 0; j < A / 4; j++)
        s += acc[j];
    *mout = m;
    return s + tail;
}

/* One row i: its loss; the gradient row when a->grad is set. */
PYCE_ALWAYS_INLINE double SFX(online_row)(const pyce_ce_args *a, int64_t i, int64_t seg)
{
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
    const T xy = xr[y]; /* before pass 1 may overwrite it (out= x, in place) */

    if (!gr) {
        T mr;
        double sr = SFX(row_sum_running)(xr, c, &mr);
        if (mr == (T)-INFINITY)
            sr = NAN;   /* a row of only -inf (and NaN), as on every path */
        return small_row_loss(1, w, log(sr), (double)xy - (double)mr);
    }

    /* pass 1: per segment its maximum and exp-sum (exps into the gradient row) */
    const int64_t nseg = (c + seg - 1) / seg;
    T mj[PYCE_ON_MAX_SEGS];
    double sj[PYCE_ON_MAX_SEGS];
    T m = (T)-INFINITY;
    for (int64_t j = 0; j < nseg; j++) {
        const int64_t k0 = j * seg;
        const int64_t n = c - k0 < seg ? c - k0 : seg;
        const int64_t nn = j + 1 < nseg ? (c - k0 - n < seg ? c - k0 - n : seg) : 0;
        sj[j] = SFX(seg_expsum)(xr + k0, gr ? gr + k0 : NULL, n, &mj[j],
                                xr + k0 + n, gr ? gr + k0 + n : NULL, nn);
        m = mj[j] > m ? mj[j] : m;
    }
    /* the row's sum at its maximum m, segments added in order (any thread
     * count gives the same s); a row of only -inf (and NaN) is NaN, as on
     * every other path */
    const double md = (double)m;
    double s = 0.0;
    for (int64_t j = 0; j < nseg; j++)
        s += sj[j] * SFX(seg_factor)(mj[j], md);
    if (m == (T)-INFINITY)
        s = NAN;
    const double loss = small_row_loss(1, w, log(s), (double)xy - md);

    /* pass 2: each segment's exps (in cache) times exp(mj - m) g/s */
    if (gr) {
        double pcd, fix;
        const double ey = (double)PYCE_EXP(xy - m);
        small_row_grad_coefs(g, ey, s, &pcd, &fix);
        for (int64_t j = 0; j < nseg; j++) {
            const int64_t k0 = j * seg;
            const int64_t n = c - k0 < seg ? c - k0 : seg;
            const T f = (T)(SFX(seg_factor)(mj[j], md) * pcd);
            T *gs = gr + k0;
#pragma omp simd
            for (int64_t k = 0; k < n; k++)
                gs[k] = gs[k] * f;
        }
        gr[y] = (T)fix;
    }
    return loss;
}

PYCE_CLONES static double SFX(online_block)(const pyce_ce_args *a, int64_t i0, int64_t i1,
                                           int64_t seg)
{
    T *loss_out = (T *)a->loss;
    double total = 0.0;
    for (int64_t i = i0; i < i1; i++) {
        const double l = SFX(online_row)(a, i, seg);
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
    *loss_sum = SFX(online_block)(a, i0, i1, online_segment(a->c));
    return 1;
}
