/*
 * The plain class-target case's per-row rules (class-index targets, no
 * z-loss; label smoothing without class weights for the few-class path) in
 * the form the fast paths for few classes and huge rows use
 * (pyce_ce_small.c, pyce_ce_online.c).  The rules themselves are
 * pyce_loss_rules.h's, shared with every other path: masking is
 * pyce_weighted.  One difference of form, not of rule: these fold the sample
 * weight into the row weight (w = class_weight[y] * sample_weight[i], g =
 * grad_scale * grad_output[i] * w), so with sample weights their results can
 * differ from ce_lanes_plain's (which multiplies the sample weight last) by
 * rounding.  The few-class paths form the gradient
 * coefficients from row sums without the target term (so), one division per
 * row: in float32 from float32 sums (small_row_grad_coefs_f32x16 / _f32x8
 * below), in float64 in double (_f64x8), so their results differ from the
 * lanes path's (small_row_grad_coefs) by rounding, and keep the target entry
 * where the lanes path's cancels (tests/loss/test_small_classes.py compares
 * the paths at the README bound).
 */
#ifndef PYCE_CE_RULES_H
#define PYCE_CE_RULES_H

#include <math.h>
#include <stdint.h>
#include "pyce_loss_rules.h"

/* The weight w = class_weight[y] * sample_weight[i] of a computed row and its
 * gradient factor g = grad_scale * grad_output[i] * w. */
PYCE_ALWAYS_INLINE void small_row_weights(const pyce_ce_args *a, int64_t i, int64_t y,
                                          double *w, double *g)
{
    double wr = a->class_weight ? a->class_weight[y] : 1.0;
    double gr = a->grad_scale;
    if (a->sample_weight)
        wr *= a->sample_weight[i];
    if (a->grad_output)
        gr *= a->grad_output[i];
    *w = wr;
    *g = gr * wr;
}

/* Loss of a row: w log(s) - w (x_y - m), where a zero weight makes the second
 * term exactly 0 (a -inf target logit must not give NaN); a NaN row stays NaN
 * through log(s); a row not computed (ignored) is 0. */
PYCE_ALWAYS_INLINE double small_row_loss(int live, double w, double ls, double xy_minus_m)
{
    return live ? w * ls - pyce_weighted(w, xy_minus_m) : 0.0;
}

/* Label smoothing eps without class weights, the few-class paths' other
 * case: ce_row_prep's and pyce_target_grad's rule with every w_k = 1, i.e.
 * the target term's weight tw = 1 - eps, the share eps/c of each class, and
 * p_k's coefficient pcoef = tw + eps/c * c (class_weight_sum is c). */
typedef struct {
    double tw, eps_c, pcoef;
} small_smooth;

PYCE_ALWAYS_INLINE small_smooth small_smooth_of(const pyce_ce_args *a)
{
    small_smooth sm;
    sm.tw = 1.0 - a->label_smoothing;
    sm.eps_c = a->label_smoothing / (double)a->c;
    sm.pcoef = sm.tw + sm.eps_c * a->class_weight_sum;
    return sm;
}

/* Loss of a row under label smoothing: ce_row_finish's
 * pcoef log(s) - tw (x_y - m) - eps/c sum_k (x_k - m), masked as there
 * (pyce_weighted: tw = 0 at eps = 1 keeps a -inf target logit out), times
 * the row's sample weight v (pyce_sample_weighted); sd = sum_k (x_k - m)
 * in double.  A row not computed is 0. */
PYCE_ALWAYS_INLINE double small_row_loss_smooth(int live, double v, const small_smooth *sm,
                                                double ls, double xy_minus_m, double sd)
{
    return live ? pyce_sample_weighted(v, sm->pcoef * ls - pyce_weighted(sm->tw, xy_minus_m) -
                                              sm->eps_c * sd)
                : 0.0;
}

/* The gradient coefficients of a row, in double: p_k's factor g/s, and the
 * target entry g (e_y - s)/s; both are rounded to T afterwards (as
 * ce_lanes_plain computes them).  e_y - s itself is exact (no cancellation
 * error), but s has already absorbed the other classes' exps below half an ulp
 * of e_y: when p_y is within ~1e-16 of 1 the entry is exactly 0 where the
 * true value is -g (1 - p_y) (logits [0, -123, -200], target 0: -3.8e-54 g;
 * the float64 NumPy reference gives 0 too), inside the README bound, which is
 * relative to the row's scale.  The few-class forms below sum the other
 * classes separately (so) and keep that value while those exps are above the
 * dtype's smallest normal number. */
PYCE_ALWAYS_INLINE void small_row_grad_coefs(double g, double ey, double s, double *pcd,
                                             double *fix)
{
    *pcd = g / s;
    *fix = g * (ey - s) / s;
}

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>
/* The same coefficients for 16 rows in float32 (the AVX-512 float32 few-class
 * path): with so = the row sum without the target term and s = so + e_y,
 * q = g/s (one division per row) is p_k's factor and the target entry
 * g (e_y - s)/s is -q so (no cancellation at p_y ~ 1).  Rows not computed
 * (live bit 0) get q = 0 and fix = 0, whatever their logits were (a NaN in an
 * ignored row reaches nothing).  The caller's function must enable avx512f. */
static inline __attribute__((always_inline, target("avx512f"))) void
small_row_grad_coefs_f32x16(__m512 g, __m512 s, __m512 so, __mmask16 live, __m512 *q, __m512 *fix)
{
    *q = _mm512_maskz_div_ps(live, g, s);
    *fix = _mm512_maskz_mul_ps(live, *q, _mm512_sub_ps(_mm512_setzero_ps(), so));
}

/* The same under label smoothing (small_smooth), for 16 rows in float32:
 * p_k's factor q = g pcoef/s, the share b = g eps/c subtracted from every
 * entry (p_k q - b), and the target entry pyce_target_grad's
 * g ((pcoef - tw) e_y - tw so)/s - b, from so as above.  Rows not computed get
 * q = b = fix = 0. */
static inline __attribute__((always_inline, target("avx512f"))) void
small_row_grad_coefs_smooth_f32x16(__m512 g, __m512 s, __m512 so, __m512 ey, __mmask16 live,
                                   const small_smooth *sm, __m512 *q, __m512 *b, __m512 *fix)
{
    const __m512 r = _mm512_maskz_div_ps(live, g, s);
    const __m512 t = _mm512_fmsub_ps(_mm512_set1_ps((float)(sm->pcoef - sm->tw)), ey,
                                     _mm512_mul_ps(_mm512_set1_ps((float)sm->tw), so));
    *q = _mm512_mul_ps(r, _mm512_set1_ps((float)sm->pcoef));
    *b = _mm512_maskz_mul_ps(live, g, _mm512_set1_ps((float)sm->eps_c));
    *fix = _mm512_maskz_fmsub_ps(live, r, t, *b);
}

/* The same for 8 rows in float64 (the AVX-512 float64 few-class path), in
 * double.  The caller's function must enable avx512f. */
static inline __attribute__((always_inline, target("avx512f"))) void
small_row_grad_coefs_f64x8(__m512d g, __m512d s, __m512d so, __mmask8 live, __m512d *q,
                           __m512d *fix)
{
    *q = _mm512_maskz_div_pd(live, g, s);
    *fix = _mm512_maskz_mul_pd(live, *q, _mm512_sub_pd(_mm512_setzero_pd(), so));
}

/* small_row_grad_coefs_smooth_f32x16 for 8 rows in float64, in double. */
static inline __attribute__((always_inline, target("avx512f"))) void
small_row_grad_coefs_smooth_f64x8(__m512d g, __m512d s, __m512d so, __m512d ey, __mmask8 live,
                                  const small_smooth *sm, __m512d *q, __m512d *b, __m512d *fix)
{
    const __m512d r = _mm512_maskz_div_pd(live, g, s);
    const __m512d t = _mm512_fmsub_pd(_mm512_set1_pd(sm->pcoef - sm->tw), ey,
                                      _mm512_mul_pd(_mm512_set1_pd(sm->tw), so));
    *q = _mm512_mul_pd(r, _mm512_set1_pd(sm->pcoef));
    *b = _mm512_maskz_mul_pd(live, g, _mm512_set1_pd(sm->eps_c));
    *fix = _mm512_maskz_fmsub_pd(live, r, t, *b);
}

/* The same for 4 rows in float64 AVX2: live is all-ones in the lanes of rows
 * that are computed.  The caller's function must enable avx2. */
static inline __attribute__((always_inline, target("avx2"))) void
small_row_grad_coefs_f64x4(__m256d g, __m256d s, __m256d so, __m256d live, __m256d *q,
                           __m256d *fix)
{
    *q = _mm256_and_pd(live, _mm256_div_pd(g, s));
    *fix = _mm256_and_pd(live, _mm256_mul_pd(*q, _mm256_sub_pd(_mm256_setzero_pd(), so)));
}

/* The same for 8 rows in AVX2: live is all-ones in the lanes of rows that are
 * computed.  The caller's function must enable avx2. */
static inline __attribute__((always_inline, target("avx2"))) void
small_row_grad_coefs_f32x8(__m256 g, __m256 s, __m256 so, __m256 live, __m256 *q, __m256 *fix)
{
    *q = _mm256_and_ps(live, _mm256_div_ps(g, s));
    *fix = _mm256_and_ps(live, _mm256_mul_ps(*q, _mm256_sub_ps(_mm256_setzero_ps(), so)));
}

/* small_row_grad_coefs_smooth_f32x16 in AVX2 (live as above), float32 and
 * float64.  The caller's function must enable avx2 and fma. */
static inline __attribute__((always_inline, target("avx2,fma"))) void
small_row_grad_coefs_smooth_f32x8(__m256 g, __m256 s, __m256 so, __m256 ey, __m256 live,
                                  const small_smooth *sm, __m256 *q, __m256 *b, __m256 *fix)
{
    const __m256 r = _mm256_and_ps(live, _mm256_div_ps(g, s));
    const __m256 t = _mm256_fmsub_ps(_mm256_set1_ps((float)(sm->pcoef - sm->tw)), ey,
                                     _mm256_mul_ps(_mm256_set1_ps((float)sm->tw), so));
    *q = _mm256_mul_ps(r, _mm256_set1_ps((float)sm->pcoef));
    *b = _mm256_and_ps(live, _mm256_mul_ps(g, _mm256_set1_ps((float)sm->eps_c)));
    *fix = _mm256_and_ps(live, _mm256_fmsub_ps(r, t, *b));
}

static inline __attribute__((always_inline, target("avx2,fma"))) void
small_row_grad_coefs_smooth_f64x4(__m256d g, __m256d s, __m256d so, __m256d ey, __m256d live,
                                  const small_smooth *sm, __m256d *q, __m256d *b, __m256d *fix)
{
    const __m256d r = _mm256_and_pd(live, _mm256_div_pd(g, s));
    const __m256d t = _mm256_fmsub_pd(_mm256_set1_pd(sm->pcoef - sm->tw), ey,
                                      _mm256_mul_pd(_mm256_set1_pd(sm->tw), so));
    *q = _mm256_mul_pd(r, _mm256_set1_pd(sm->pcoef));
    *b = _mm256_and_pd(live, _mm256_mul_pd(g, _mm256_set1_pd(sm->eps_c)));
    *fix = _mm256_and_pd(live, _mm256_fmsub_pd(r, t, *b));
}
#endif

/* The losses of up to 16 consecutive rows summed in row order from 0, the
 * partial sum the lanes paths add to their block's total (so a block's total
 * is the same whichever path computed it). */
PYCE_ALWAYS_INLINE double small_sum_rows(const double *loss, int n)
{
    double t = 0.0;
    for (int r = 0; r < n; r++)
        t += loss[r];
    return t;
}

/* The normal gradient path needs |g/s| <= T's largest value; s >= 1 for every
 * row that is not NaN (its maximum contributes exp(0) = 1), so |g| <= tmax is
 * enough.  Otherwise the range is left to the existing path, which combines
 * such gradients in double (overflow to +-inf, never inf - inf). */
static inline int small_grad_in_range(const pyce_ce_args *a, int64_t i0, int64_t i1, double tmax)
{
    if (!a->grad)
        return 1;
    if (a->label_smoothing > 0.0)   /* p_k's factor is g pcoef/s (small_smooth) */
        tmax = fmin(tmax, tmax / small_smooth_of(a).pcoef);
    if (!a->class_weight && !a->sample_weight && !a->grad_output)
        return !(fabs(a->grad_scale) > tmax);
    for (int64_t i = i0; i < i1; i++) {
        const int64_t y = a->target[i];
        if (y == a->ignore_index)
            continue;
        double w, g;
        small_row_weights(a, i, y, &w, &g);
        if (fabs(g) > tmax)
            return 0;
    }
    return 1;
}

#endif /* PYCE_CE_RULES_H */
