/*
 * TEMPLATE of the loss and softmax kernels: included twice by
 * pyce_loss_kernels.c, once for T = float and once for T = double (it defines
 * T, SFX(name) and PYCE_EXP before each inclusion; SFX(f) names f_f32 / f_f64,
 * so grep and ctags find e.g. ce_row_finish_f32).  The algorithm and its
 * precision are described at the top of pyce_loss_kernels.c; the per-row rules
 * every path shares (masking, the target entry, overflow-safe scaling) are the
 * pyce_* helpers defined there before the inclusions.
 *
 * The row functions take the class strides (sx, sg, st) as arguments and are
 * always inlined: the block functions call them once with literal 1s for
 * contiguous rows, which GCC vectorizes, and once with run-time strides for
 * class-axis-1 (N, C, d...) inputs and other views.
 */

/* Unit-stride sweeps keep PYCE_ACC independent partial results (several
 * vector registers): a single accumulator would chain every vector add or
 * max on the previous one's latency. */
#define PYCE_ACC 64

/* Maximum of a row; NaN handling does not matter here because a NaN anywhere
 * in the row reaches s through exp(NaN - m) or through m itself. */
PYCE_ALWAYS_INLINE T SFX(row_max)(const T *xr, int64_t sx, int64_t c)
{
    T m = xr[0];
    int64_t k = 0;
    if (sx == 1 && c >= PYCE_ACC) {
        T acc[PYCE_ACC];
#pragma omp simd
        for (int64_t j = 0; j < PYCE_ACC; j++)
            acc[j] = xr[j];
        for (k = PYCE_ACC; k + PYCE_ACC <= c; k += PYCE_ACC) {
#pragma omp simd
            for (int64_t j = 0; j < PYCE_ACC; j++) {
                const T v = xr[k + j];
                acc[j] = v > acc[j] ? v : acc[j];
            }
        }
#pragma omp simd reduction(max : m)
        for (int64_t j = 0; j < PYCE_ACC; j++)
            m = acc[j] > m ? acc[j] : m;
    }
#pragma omp simd reduction(max : m)
    for (int64_t kk = k; kk < c; kk++) {
        const T v = xr[kk * sx];
        m = v > m ? v : m;
    }
    return m;
}

/* sum_k exp(x_k - m) in double, storing each exp in er when er != NULL
 * (er may be xr itself: each element is read before it is written). */
PYCE_ALWAYS_INLINE double SFX(row_expsum)(const T *xr, int64_t sx,
                                          T *er, int64_t se,
                                          int64_t c, T m)
{
    double s = 0.0;
    int64_t k = 0;
    if (sx == 1 && se <= 1 && c >= PYCE_ACC) {
        double acc[PYCE_ACC];
#pragma omp simd
        for (int64_t j = 0; j < PYCE_ACC; j++)
            acc[j] = 0.0;
        for (; k + PYCE_ACC <= c; k += PYCE_ACC) {
            if (er) {
                /* four exps are added in T before the double accumulator:
                 * a rounding of <= 2 ulp of a partial sum, below the exps'
                 * own error, for a quarter of the conversions */
                T e4[PYCE_ACC];
#pragma omp simd
                for (int64_t j = 0; j < PYCE_ACC; j++) {
                    const T e = PYCE_EXP(xr[k + j] - m);
                    er[k + j] = e;
                    e4[j] = e;
                }
#pragma omp simd
                for (int64_t j = 0; j < PYCE_ACC / 4; j++)
                    acc[j] += (double)((e4[j] + e4[j + PYCE_ACC / 4]) +
                                       (e4[j + PYCE_ACC / 2] + e4[j + 3 * PYCE_ACC / 4]));
            } else {
                T e4[PYCE_ACC];
#pragma omp simd
                for (int64_t j = 0; j < PYCE_ACC; j++)
                    e4[j] = PYCE_EXP(xr[k + j] - m);
#pragma omp simd
                for (int64_t j = 0; j < PYCE_ACC / 4; j++)
                    acc[j] += (double)((e4[j] + e4[j + PYCE_ACC / 4]) +
                                       (e4[j + PYCE_ACC / 2] + e4[j + 3 * PYCE_ACC / 4]));
            }
        }
        for (int64_t j = 0; j < PYCE_ACC; j++)
            s += acc[j];
    }
    if (er) {
#pragma omp simd reduction(+ : s)
        for (int64_t kk = k; kk < c; kk++) {
            const T e = PYCE_EXP(xr[kk * sx] - m);
            er[kk * se] = e;
            s += (double)e;
        }
    } else {
#pragma omp simd reduction(+ : s)
        for (int64_t kk = k; kk < c; kk++)
            s += (double)PYCE_EXP(xr[kk * sx] - m);
    }
    return s;
}

/* What a row contributes besides its exp-sum: filled by ce_row_prep from
 * the logits (before the exp sweep may overwrite them in place), used by
 * ce_row_finish once log(s) is known. */
typedef struct {
    double xm_part;   /* class targets: (1-eps) w_y (x_y - m); probabilities: sum_k a_k (x_k - m) */
    double pcoef;     /* coefficient of p_k in the gradient and of log(s) in the loss */
    double smooth_x;  /* label smoothing: eps/c sum_k w_k (x_k - m) */
    double target_w;  /* (1-eps) w_y for class targets */
    int64_t y;        /* target class, or -1 for probability targets */
} SFX(rowstate);

/* a_k = w_k ((1-eps) t_k + eps/c): the target mass of class k of a
 * probability-target row (its coefficient in -sum_k a_k log p_k). */
PYCE_ALWAYS_INLINE double SFX(prob_coef)(const pyce_ce_args *a, const T *tr, int64_t st, int64_t k)
{
    const double eps = a->label_smoothing;
    const double ak = (1.0 - eps) * (double)tr[k * st] + eps / (double)a->c;
    return a->class_weight ? ak * a->class_weight[k] : ak;
}

/* eps/c w_k: the label-smoothing share of class k of a class-index row. */
PYCE_ALWAYS_INLINE double SFX(smooth_coef)(const pyce_ce_args *a, int64_t k)
{
    const double eps_c = a->label_smoothing / (double)a->c;
    return a->class_weight ? eps_c * a->class_weight[k] : eps_c;
}

/* Reads of the logits other than the exp sweep; returns 0 for an ignored row. */
PYCE_ALWAYS_INLINE int SFX(ce_row_prep)(const pyce_ce_args *a, int64_t i,
                                        const T *xr, int64_t sx,
                                        const T *tr, int64_t st,
                                        double md, SFX(rowstate) *rs)
{
    const int64_t c = a->c;
    const double *cw = a->class_weight;
    const double eps = a->label_smoothing;
    rs->xm_part = 0.0;
    rs->pcoef = 0.0;
    rs->smooth_x = 0.0;
    rs->target_w = 0.0;
    rs->y = -1;
    if (!a->target) {
        double asum = 0.0, ax = 0.0;
        for (int64_t k = 0; k < c; k++) {
            const double ak = SFX(prob_coef)(a, tr, st, k);
            asum += ak;
            ax += pyce_weighted(ak, (double)xr[k * sx] - md);
        }
        rs->xm_part = ax;
        rs->pcoef = asum;
        return 1;
    }
    const int64_t y = a->target[i];
    rs->y = y;
    if (pyce_row_ignored(a, i))
        return 0;
    rs->target_w = (1.0 - eps) * (cw ? cw[y] : 1.0);
    rs->xm_part = pyce_weighted(rs->target_w, (double)xr[y * sx] - md);
    rs->pcoef = rs->target_w;
    if (eps > 0.0) {
        const double eps_c = eps / (double)c;
        double swx = 0.0;
        if (cw) {
#pragma omp simd reduction(+ : swx)
            for (int64_t k = 0; k < c; k++)
                swx += pyce_weighted(cw[k], (double)xr[k * sx] - md);
        } else {
#pragma omp simd reduction(+ : swx)
            for (int64_t k = 0; k < c; k++)
                swx += (double)xr[k * sx] - md;
        }
        rs->smooth_x = eps_c * swx;
        rs->pcoef += eps_c * a->class_weight_sum;
    }
    return 1;
}

/* The gradient row beyond T's range (see pyce_beyond): in double, rounded once. */
PYCE_ALWAYS_INLINE void SFX(grad_row_wide)(const pyce_ce_args *a, const SFX(rowstate) *rs,
                                           double g, double pcoef_s,
                                           const T *er, int64_t se, T *gr, int64_t sg,
                                           const T *tr, int64_t st)
{
    const int smoothing = a->label_smoothing > 0.0;
    for (int64_t k = 0; k < a->c; k++) {
        double coef = 0.0;
        if (rs->y < 0)
            coef = SFX(prob_coef)(a, tr, st, k);
        else if (smoothing)
            coef = SFX(smooth_coef)(a, k);
        gr[k * sg] = (T)pyce_wide_entry(g, (double)er[k * se], pcoef_s, coef);
    }
}

/* The gradient row in T: p_k * pcd - (smoothing share or target mass) * g. */
PYCE_ALWAYS_INLINE void SFX(grad_row)(const pyce_ce_args *a, const SFX(rowstate) *rs,
                                      double g, double pcd,
                                      const T *er, int64_t se, T *gr, int64_t sg,
                                      const T *tr, int64_t st)
{
    const int64_t c = a->c;
    const T pc = (T)pcd;
    if (rs->y < 0) {
        for (int64_t k = 0; k < c; k++)
            gr[k * sg] = (T)((double)(er[k * se] * pc) - g * SFX(prob_coef)(a, tr, st, k));
    } else if (a->label_smoothing > 0.0 && a->class_weight) {
#pragma omp simd
        for (int64_t k = 0; k < c; k++)
            gr[k * sg] = er[k * se] * pc - (T)(g * SFX(smooth_coef)(a, k));
    } else if (a->label_smoothing > 0.0) {
        const T b = (T)(g * SFX(smooth_coef)(a, 0));
#pragma omp simd
        for (int64_t k = 0; k < c; k++)
            gr[k * sg] = er[k * se] * pc - b;
    } else {
#pragma omp simd
        for (int64_t k = 0; k < c; k++)
            gr[k * sg] = er[k * se] * pc;
    }
}

/* Turns the exps er[k*se] of a row into its gradient gr[k*sg] (er may be gr). */
PYCE_ALWAYS_INLINE void SFX(ce_row_grad)(const pyce_ce_args *a, int64_t i,
                                         const SFX(rowstate) *rs, double pcoef, double s,
                                         const T *er, int64_t se, T *gr, int64_t sg,
                                         const T *tr, int64_t st)
{
    const double g = pyce_row_gscale(a, i);
    const double pcd = g * pcoef / s;
    /* e_y before the sweeps below overwrite er (er may be gr) */
    const double ey = rs->y >= 0 ? (double)er[rs->y * se] : 0.0;
    /* Largest term subtracted from p_k * pcd: the smoothing share or the
     * probability-target mass (|a_k| <= |w_k| (1 - eps + eps/c) <= sum_j |w_j|). */
    const double share = rs->y < 0 ? 1.0 : a->label_smoothing / (double)a->c;
    const double sub_max = fabs(g) * share * (a->class_weight ? a->class_weight_abs_sum : 1.0);
    if (pyce_beyond(pcd, SFX(T_MAX)) || pyce_beyond(sub_max, SFX(T_MAX)))
        SFX(grad_row_wide)(a, rs, g, pcoef / s, er, se, gr, sg, tr, st);
    else
        SFX(grad_row)(a, rs, g, pcd, er, se, gr, sg, tr, st);
    if (rs->y >= 0) {
        const double smooth_b = a->label_smoothing > 0.0 ? SFX(smooth_coef)(a, rs->y) : 0.0;
        gr[rs->y * sg] = (T)pyce_target_grad(g, rs->target_w, pcoef, ey, s, smooth_b);
    }
}

/* The row's loss (times its sample weight) from log(s); when gr != NULL, turns
 * the exps er[k*se] into the gradient gr[k*sg] (er may be gr itself). */
PYCE_ALWAYS_INLINE double SFX(ce_row_finish)(const pyce_ce_args *a, int64_t i,
                                             const SFX(rowstate) *rs, double md,
                                             double s, double ls,
                                             const T *er, int64_t se,
                                             T *gr, int64_t sg,
                                             const T *tr, int64_t st)
{
    double pcoef = rs->pcoef;
    /* -sum_k a_k log p_k = (sum_k a_k) ls - sum_k a_k (x_k - m) */
    double loss = pcoef * ls - rs->xm_part - rs->smooth_x;
    if (a->z_loss != 0.0) {
        const double lse = md + ls;
        loss += a->z_loss * lse * lse;
        pcoef += 2.0 * a->z_loss * lse;
    }
    if (gr)
        SFX(ce_row_grad)(a, i, rs, pcoef, s, er, se, gr, sg, tr, st);
    return pyce_sample_weighted(a->sample_weight ? a->sample_weight[i] : 1.0, loss);
}

PYCE_ALWAYS_INLINE void SFX(zero_row)(T *gr, int64_t sg, int64_t c)
{
#pragma omp simd
    for (int64_t k = 0; k < c; k++)
        gr[k * sg] = (T)0;
}

/* Asks for the start of the next row while this one is computed: each row
 * begins a new stream that the hardware prefetcher would only pick up after
 * a few misses, and the max sweep would wait for memory. */
PYCE_ALWAYS_INLINE void SFX(prefetch_row)(const T *next, int64_t c)
{
    const int64_t lines = c * (int64_t)sizeof(T) / 64 < PYCE_PREFETCH_LINES
                              ? c * (int64_t)sizeof(T) / 64 : PYCE_PREFETCH_LINES;
    for (int64_t l = 0; l < lines; l++)
        PYCE_PREFETCH((const char *)next + 64 * l);
}

/* One row, in place: max sweep, prep, exp sweep into the gradient row, finish. */
PYCE_ALWAYS_INLINE double SFX(ce_row)(const pyce_ce_args *a, int64_t i,
                                      const T *xr, int64_t sx,
                                      T *gr, int64_t sg,
                                      const T *tr, int64_t st)
{
    SFX(rowstate) rs;
    if (pyce_row_ignored(a, i)) {
        if (gr)
            SFX(zero_row)(gr, sg, a->c);
        return 0.0;
    }
    const T m = SFX(row_max)(xr, sx, a->c);
    const double md = (double)m;
    SFX(ce_row_prep)(a, i, xr, sx, tr, st, md, &rs);
    const double s = SFX(row_expsum)(xr, sx, gr, sg, a->c, m);
    return SFX(ce_row_finish)(a, i, &rs, md, s, log(s), gr, sg, gr, sg, tr, st);
}

/* Small class counts: a per-row loop would leave most SIMD lanes idle and
 * pay its loop overhead per row, so LANES rows are processed at once, one
 * per lane: their logits are transposed into buf[k][lane] (in L1), then the
 * max, the exp-sum and the log run across lanes; the per-row bookkeeping
 * (prep/finish, the same code as the row path) reads the transposed exps. */
/* ---- lanes: PYCE_LANES rows at once, one per SIMD lane ---- */

/* Transposes rows x + xoff[r] (class stride sx) into buf[k * PYCE_LANES + r]
 * and returns their maxima in mv. */
PYCE_ALWAYS_INLINE void SFX(lanes_load_max)(const T *x, const int64_t *xoff, int64_t sx,
                                            int64_t c, T *buf, T *mv)
{
    enum { L = PYCE_LANES };
    for (int64_t k = 0; k < c; k++) {
#pragma omp simd
        for (int64_t r = 0; r < L; r++)
            buf[k * L + r] = x[xoff[r] + k * sx];
    }
#pragma omp simd
    for (int64_t r = 0; r < L; r++)
        mv[r] = x[xoff[r]];
    for (int64_t k = 1; k < c; k++) {
#pragma omp simd
        for (int64_t r = 0; r < L; r++) {
            const T v = buf[k * L + r];
            mv[r] = v > mv[r] ? v : mv[r];
        }
    }
}

/* exp(buf - m) in place, with the row sums in sv (double). */
PYCE_ALWAYS_INLINE void SFX(lanes_expsum)(T *buf, const T *mv, int64_t c, double *sv)
{
    enum { L = PYCE_LANES };
#pragma omp simd
    for (int64_t r = 0; r < L; r++)
        sv[r] = 0.0;
    for (int64_t k = 0; k < c; k++) {
#pragma omp simd
        for (int64_t r = 0; r < L; r++) {
            const T e = PYCE_EXP(buf[k * L + r] - mv[r]);
            buf[k * L + r] = e;
            sv[r] += (double)e;
        }
    }
}

PYCE_ALWAYS_INLINE double SFX(ce_lanes)(const pyce_ce_args *a, int64_t i0, int64_t nrows,
                                        const T *x, T *grad, const T *tp, T *loss_out)
{
    enum { L = PYCE_LANES };
    const int64_t c = a->c;
    T buf[PYCE_SMALL_C * L];
    T mv[L];
    double sv[L], lsv[L];
    int64_t xoff[L], goff[L], toff[L];
    lanes_offsets(i0, nrows, a->d, a->x_sn, a->x_sd, xoff);
    lanes_offsets(i0, nrows, a->d, a->g_sn, a->g_sd, goff);
    lanes_offsets(i0, nrows, a->d, a->t_sn, a->t_sd, toff);
    SFX(lanes_load_max)(x, xoff, a->x_sc, c, buf, mv);
    SFX(rowstate) rs[L];
    int live[L];
    for (int64_t r = 0; r < nrows; r++)
        live[r] = SFX(ce_row_prep)(a, i0 + r, &buf[r], L, tp ? tp + toff[r] : NULL, a->t_sc,
                                   (double)mv[r], &rs[r]);
    SFX(lanes_expsum)(buf, mv, c, sv);
#pragma omp simd
    for (int64_t r = 0; r < L; r++)
        lsv[r] = pyce_log_f64(sv[r]);
    double total = 0.0;
    for (int64_t r = 0; r < nrows; r++) {
        double l = 0.0;
        if (live[r])
            l = SFX(ce_row_finish)(a, i0 + r, &rs[r], (double)mv[r], sv[r], lsv[r],
                                   &buf[r], L, grad ? grad + goff[r] : NULL, a->g_sc,
                                   tp ? tp + toff[r] : NULL, a->t_sc);
        else if (grad)
            SFX(zero_row)(grad + goff[r], a->g_sc, c);
        if (loss_out)
            loss_out[i0 + r] = (T)l;
        total += l;
    }
    return total;
}

/* ---- lanes_plain: the common small-class case -- class-index targets, no
 * label smoothing, no z-loss, contiguous class axis -- with the per-row
 * bookkeeping done across lanes too, through the same per-row rules
 * (pyce_weighted, pyce_sample_weighted, pyce_row_gscale, pyce_target_grad,
 * pyce_beyond / pyce_wide_entry) as ce_row_finish. ---- */

/* Lanes that hold a kept row (live), their target class (0 when not live) and
 * its class weight; lanes past nrows repeat row i0 and are not live. */
PYCE_ALWAYS_INLINE void SFX(lanes_plain_targets)(const pyce_ce_args *a, int64_t i0, int64_t nrows,
                                                 int *livev, int64_t *yv, double *wv)
{
    for (int64_t r = 0; r < PYCE_LANES; r++) {
        const int64_t i = i0 + (r < nrows ? r : 0);
        livev[r] = r < nrows && !pyce_row_ignored(a, i);
        yv[r] = livev[r] ? a->target[i] : 0;
        wv[r] = livev[r] ? (a->class_weight ? a->class_weight[yv[r]] : 1.0) : 0.0;
    }
}

/* Per-row losses w_y (ls - (x_y - m)), times the sample weight. */
PYCE_ALWAYS_INLINE void SFX(lanes_plain_loss)(const pyce_ce_args *a, int64_t i0, int64_t nrows,
                                              const int *livev, const double *wv,
                                              const double *xyv, const T *mv, const double *sv,
                                              double *lossv)
{
    enum { L = PYCE_LANES };
#pragma omp simd
    for (int64_t r = 0; r < L; r++) {
        const double l = wv[r] * pyce_log_f64(sv[r]) - pyce_weighted(wv[r], xyv[r] - (double)mv[r]);
        lossv[r] = livev[r] ? l : 0.0;
    }
    if (a->sample_weight)
        for (int64_t r = 0; r < nrows; r++)
            lossv[r] = pyce_sample_weighted(a->sample_weight[i0 + r], lossv[r]);
}

/* The exps in buf become the rows' gradients, stored to grad. */
PYCE_ALWAYS_INLINE void SFX(lanes_plain_grad)(const pyce_ce_args *a, int64_t i0, int64_t nrows,
                                              const int *livev, const int64_t *yv,
                                              const double *wv, const double *eyv,
                                              const double *sv, T *buf, T *grad)
{
    enum { L = PYCE_LANES };
    const int64_t c = a->c;
    double gv[L], pcdv[L];
    T pcv[L];
    int64_t goff[L];
    int in_range = 1;
    for (int64_t r = 0; r < L; r++)
        gv[r] = livev[r] ? pyce_row_gscale(a, i0 + r) : 0.0;
#pragma omp simd reduction(&& : in_range)
    for (int64_t r = 0; r < L; r++) {
        pcdv[r] = gv[r] * wv[r] / sv[r];
        pcv[r] = (T)pcdv[r];
        in_range = in_range && !pyce_beyond(pcdv[r], SFX(T_MAX));
    }
    for (int64_t k = 0; k < c; k++) {
        if (in_range) {
#pragma omp simd
            for (int64_t r = 0; r < L; r++) {
                const T v = buf[k * L + r] * pcv[r];
                buf[k * L + r] = livev[r] ? v : (T)0;
            }
        } else {
            for (int64_t r = 0; r < L; r++)
                buf[k * L + r] = livev[r] ? (T)pyce_wide_entry(gv[r], (double)buf[k * L + r],
                                                               wv[r] / sv[r], 0.0)
                                          : (T)0;
        }
    }
    for (int64_t r = 0; r < nrows; r++)
        if (livev[r])
            buf[yv[r] * L + r] = (T)pyce_target_grad(gv[r], wv[r], wv[r], eyv[r], sv[r], 0.0);
    lanes_offsets(i0, nrows, a->d, a->g_sn, a->g_sd, goff);
    if (nrows == L) {
        for (int64_t k = 0; k < c; k++) {
#pragma omp simd
            for (int64_t r = 0; r < L; r++)
                grad[goff[r] + k] = buf[k * L + r];
        }
    } else {
        for (int64_t r = 0; r < nrows; r++)
            for (int64_t k = 0; k < c; k++)
                grad[goff[r] + k] = buf[k * L + r];
    }
}

PYCE_ALWAYS_INLINE double SFX(ce_lanes_plain)(const pyce_ce_args *a, int64_t i0, int64_t nrows,
                                              const T *x, T *grad, T *loss_out)
{
    enum { L = PYCE_LANES };
    T buf[PYCE_SMALL_C * L];
    T mv[L];
    double sv[L], xyv[L], eyv[L], wv[L], lossv[L];
    int64_t xoff[L], yv[L];
    int livev[L];
    SFX(lanes_plain_targets)(a, i0, nrows, livev, yv, wv);
    lanes_offsets(i0, nrows, a->d, a->x_sn, a->x_sd, xoff);
    SFX(lanes_load_max)(x, xoff, 1, a->c, buf, mv);
    for (int64_t r = 0; r < L; r++)
        xyv[r] = (double)buf[yv[r] * L + r];
    SFX(lanes_expsum)(buf, mv, a->c, sv);
    for (int64_t r = 0; r < L; r++)
        eyv[r] = (double)buf[yv[r] * L + r];
    SFX(lanes_plain_loss)(a, i0, nrows, livev, wv, xyv, mv, sv, lossv);
    if (grad)
        SFX(lanes_plain_grad)(a, i0, nrows, livev, yv, wv, eyv, sv, buf, grad);
    double total = 0.0;
    for (int64_t r = 0; r < nrows; r++) {
        if (loss_out)
            loss_out[i0 + r] = (T)lossv[r];
        total += lossv[r];
    }
    return total;
}

/* Rows [i0, i1): returns the sum of their losses in row order.  This is where
 * the kernel family is chosen: the two `c <= PYCE_SMALL_C` branches (lanes
 * paths) first, then the row path. */
PYCE_CLONES double SFX(pyce_ce_block)(const pyce_ce_args *a, int64_t i0, int64_t i1)
{
    const T *x = (const T *)a->x;
    T *grad = (T *)a->grad;
    T *loss_out = (T *)a->loss;
    const T *tp = (const T *)a->target_prob;
    const int64_t d = a->d;
    double total = 0.0;
    /* PYCE_FAST_HOOK: few classes transposed in registers
     * (cext/pyce_ce_small.c), rows beyond L2 with an online max-and-sum
     * (cext/pyce_ce_online.c); each returns 0 for the cases it leaves to the
     * paths below. */
    if (a->c <= PYCE_SMALL_C ? SFX(pyce_ce_small)(a, i0, i1, &total)
                             : SFX(pyce_ce_online)(a, i0, i1, &total))
        return total;
    if (a->c <= PYCE_SMALL_C && a->target && a->label_smoothing == 0.0 && a->z_loss == 0.0 &&
        a->x_sc == 1 && (!grad || a->g_sc == 1)) {
        for (int64_t i = i0; i < i1; i += PYCE_LANES) {
            const int64_t nrows = i1 - i < PYCE_LANES ? i1 - i : PYCE_LANES;
            total += SFX(ce_lanes_plain)(a, i, nrows, x, grad, loss_out);
        }
        return total;
    }
    if (a->c <= PYCE_SMALL_C) {
        for (int64_t i = i0; i < i1; i += PYCE_LANES) {
            const int64_t nrows = i1 - i < PYCE_LANES ? i1 - i : PYCE_LANES;
            total += SFX(ce_lanes)(a, i, nrows, x, grad, tp, loss_out);
        }
        return total;
    }
    const int contiguous = a->x_sc == 1 && (!grad || a->g_sc == 1) &&
                           (!tp || a->t_sc == 1);
    for (int64_t i = i0; i < i1; i++) {
        const int64_t n = d == 1 ? i : i / d;
        const int64_t p = d == 1 ? 0 : i % d;
        const T *xr = x + n * a->x_sn + p * a->x_sd;
        T *gr = grad ? grad + n * a->g_sn + p * a->g_sd : NULL;
        const T *tr = tp ? tp + n * a->t_sn + p * a->t_sd : NULL;
        double l;
        if (contiguous && d == 1 && i + 1 < i1)
            SFX(prefetch_row)(xr + a->x_sn, a->c);
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
    const int64_t bs = block_rows(rows, a->c);
    const int64_t nblocks = (rows + bs - 1) / bs;
    double partial[PYCE_MAX_BLOCKS];
    const int nt = choose_threads(a->n_threads, rows * a->c, nblocks);
    if (nt <= 1) {
        for (int64_t b = 0; b < nblocks; b++) {
            const int64_t hi = (b + 1) * bs < rows ? (b + 1) * bs : rows;
            partial[b] = SFX(pyce_ce_block)(a, b * bs, hi);
        }
    } else {
        pyce_threads_mark_pool(); /* fork safety: see pyce_threads.h */
        /* blocks handed out as threads become free (block_chunk), so a thread
         * slowed by another process on its core does not hold half of the rows;
         * each block's sum lands in partial[b] whichever thread computed it, so
         * results stay bitwise identical */
#pragma omp parallel for schedule(dynamic, block_chunk(bs, a->c)) num_threads(nt)
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

/* Small class counts: 16 rows at once across SIMD lanes, as in ce_lanes. */
PYCE_ALWAYS_INLINE void SFX(softmax_lanes)(const pyce_softmax_args *a, int64_t i0, int64_t nrows)
{
    enum { L = PYCE_LANES };
    const T *x = (const T *)a->x;
    T *out = (T *)a->out;
    const int64_t c = a->c, d = a->d;
    T buf[PYCE_SMALL_C * L];
    T mv[L], scale[L];
    double sv[L], lsv[L];
    int64_t xoff[L], ooff[L];
    lanes_offsets(i0, nrows, d, a->x_sn, a->x_sd, xoff);
    lanes_offsets(i0, nrows, d, a->o_sn, a->o_sd, ooff);
    SFX(lanes_load_max)(x, xoff, a->x_sc, c, buf, mv);
#pragma omp simd
    for (int64_t r = 0; r < L; r++)
        sv[r] = 0.0;
    if (a->log) {
        for (int64_t k = 0; k < c; k++) {
#pragma omp simd
            for (int64_t r = 0; r < L; r++)
                sv[r] += (double)PYCE_EXP(buf[k * L + r] - mv[r]);
        }
#pragma omp simd
        for (int64_t r = 0; r < L; r++)
            lsv[r] = pyce_log_f64(sv[r]);
        for (int64_t k = 0; k < c; k++) {
#pragma omp simd
            for (int64_t r = 0; r < L; r++)
                buf[k * L + r] = (T)(((double)buf[k * L + r] - (double)mv[r]) - lsv[r]);
        }
    } else {
        SFX(lanes_expsum)(buf, mv, c, sv);
#pragma omp simd
        for (int64_t r = 0; r < L; r++)
            scale[r] = (T)(1.0 / sv[r]);
        for (int64_t k = 0; k < c; k++) {
#pragma omp simd
            for (int64_t r = 0; r < L; r++)
                buf[k * L + r] = buf[k * L + r] * scale[r];
        }
    }
    for (int64_t r = 0; r < nrows; r++)
        for (int64_t k = 0; k < c; k++)
            out[ooff[r] + k * a->o_sc] = buf[k * L + r];
}

PYCE_CLONES void SFX(pyce_softmax_block)(const pyce_softmax_args *a, int64_t i0, int64_t i1)
{
    if (a->c <= PYCE_SMALL_C) {
        for (int64_t i = i0; i < i1; i += PYCE_LANES)
            SFX(softmax_lanes)(a, i, i1 - i < PYCE_LANES ? i1 - i : PYCE_LANES);
        return;
    }
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
    const int64_t bs = block_rows(rows, a->c);
    const int64_t nblocks = (rows + bs - 1) / bs;
    const int nt = choose_threads(a->n_threads, rows * a->c, nblocks);
    if (nt <= 1) {
        for (int64_t b = 0; b < nblocks; b++)
            SFX(pyce_softmax_block)(a, b * bs, (b + 1) * bs < rows ? (b + 1) * bs : rows);
    } else {
        pyce_threads_mark_pool(); /* fork safety: see pyce_threads.h */
#pragma omp parallel for schedule(dynamic, block_chunk(bs, a->c)) num_threads(nt)
        for (int64_t b = 0; b < nblocks; b++)
            SFX(pyce_softmax_block)(a, b * bs, (b + 1) * bs < rows ? (b + 1) * bs : rows);
    }
}
