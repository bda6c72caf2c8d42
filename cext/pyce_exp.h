/*
 * Branch-free exp for the softmax sweeps, written so that GCC vectorizes it
 * inside `#pragma omp simd` loops without -ffast-math.
 *
 * Method (Cody-Waite range reduction, as in Cephes):
 *   n = round(x / ln 2),   r = x - n*ln2_hi - n*ln2_lo   (|r| <= ln2/2),
 *   exp(x) = 2^n * P(r)
 * with P a degree-5 polynomial in float (Cephes expf coefficients) and the
 * degree-13 Taylor polynomial in double.  Rounding to the nearest integer uses
 * the "add 1.5*2^23 (or 1.5*2^52)" trick, which needs no libm call and no
 * SSE4.1, and whose low mantissa bits hold n for building 2^n.
 *
 * Domain: these are used on x - max(row) <= 0 (and on NaN).  Arguments are
 * clamped with `x < lo ? lo : x` so that NaN passes through (the comparison
 * is false) and propagates to the result; below lo the result is exactly +0,
 * so masked -inf logits get probability 0.  Results that would be subnormal
 * are returned as 0: they cannot change a sum that contains exp(0) = 1.
 *
 * Measured error (tests/test_exp.py samples the whole used range densely):
 * float: at most 2 ulp over [-87.3, 0]; double: at most 2 ulp over [-708, 0].
 */
#ifndef PYCE_EXP_H
#define PYCE_EXP_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define PYCE_ALWAYS_INLINE static inline __attribute__((always_inline))
#else
#define PYCE_ALWAYS_INLINE static inline
#endif

/* The float32 exp's range reduction, shared by the scalar form below and the
 * vector forms of the few-class path (pyce_expneg_f32x16 / _f32x8). */
#define PYCE_EXPQ_LO (-87.3365402f)          /* exp(lo) ~ 1.18e-38, the smallest normal */
#define PYCE_EXPQ_LOG2E 1.44269504088896341f
#define PYCE_EXPQ_MAGIC 12582912.0f          /* 1.5 * 2^23 */
#define PYCE_EXPQ_LN2_HI 0.693359375f        /* few mantissa bits: n*ln2_hi is exact */
#define PYCE_EXPQ_LN2_LO (-2.12194440e-4f)

PYCE_ALWAYS_INLINE float pyce_exp_f32_impl(float x, int clamp_hi)
{
    const float lo = PYCE_EXPQ_LO;
    const float hi = 88.3762589f;
    const float log2e = PYCE_EXPQ_LOG2E;
    const float ln2_hi = PYCE_EXPQ_LN2_HI;
    const float ln2_lo = PYCE_EXPQ_LN2_LO;
    const float round_magic = PYCE_EXPQ_MAGIC;

    float xc = x < lo ? lo : x;  /* NaN stays NaN */
    if (clamp_hi)
        xc = xc > hi ? hi : xc;
    float t = xc * log2e + round_magic;
    float n = t - round_magic;   /* round(xc / ln2); not folded without -ffast-math */
    int32_t tbits;
    memcpy(&tbits, &t, sizeof tbits);
    float r = xc - n * ln2_hi;
    r = r - n * ln2_lo;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    /* low bits of t are n + 0x400000 (from the magic constant's mantissa) */
    uint32_t ebits = ((uint32_t)tbits - 0x4B400000u + 127u) << 23;
    float scale;
    memcpy(&scale, &ebits, sizeof scale);
    float y = p * scale;
    return x < lo ? 0.0f : y;
}

PYCE_ALWAYS_INLINE double pyce_exp_f64_impl(double x, int clamp_hi)
{
    const double lo = -708.3964185322641;   /* exp(lo) ~ 2.2e-308, the smallest normal */
    const double hi = 709.0;
    const double log2e = 1.4426950408889634074;
    const double ln2_hi = 6.93147180369123816490e-01;  /* fdlibm split of ln 2 */
    const double ln2_lo = 1.90821492927058770002e-10;
    const double round_magic = 6755399441055744.0;     /* 1.5 * 2^52 */

    double xc = x < lo ? lo : x;
    if (clamp_hi)
        xc = xc > hi ? hi : xc;
    double t = xc * log2e + round_magic;
    double n = t - round_magic;
    int64_t tbits;
    memcpy(&tbits, &t, sizeof tbits);
    double r = xc - n * ln2_hi;
    r = r - n * ln2_lo;
    /* Taylor to degree 13: truncation error (ln2/2)^14/14! < 4e-18 */
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r * r + r + 1.0;
    uint64_t ebits = ((uint64_t)tbits - 0x4338000000000000ull + 1023ull) << 52;
    double scale;
    memcpy(&scale, &ebits, sizeof scale);
    double y = p * scale;
    return x < lo ? 0.0 : y;
}

/* exp for any argument, and for arguments known to be <= 0 or NaN (the
 * softmax sweeps exponentiate x - max(row)): the upper clamp is dropped. */
PYCE_ALWAYS_INLINE float pyce_exp_f32(float x) { return pyce_exp_f32_impl(x, 1); }
PYCE_ALWAYS_INLINE float pyce_expneg_f32(float x) { return pyce_exp_f32_impl(x, 0); }
PYCE_ALWAYS_INLINE double pyce_exp_f64(double x) { return pyce_exp_f64_impl(x, 1); }
PYCE_ALWAYS_INLINE double pyce_expneg_f64(double x) { return pyce_exp_f64_impl(x, 0); }

/* Natural log for the lane-batched small-class path, where a libm call per
 * row would cost more than the row.  s = 2^e * f with f in [sqrt(1/2),
 * sqrt(2)); log f = 2 atanh(z), z = (f-1)/(f+1), |z| <= 0.1716, summed to
 * z^23 (truncation < 1e-19 relative).  Valid for positive normal s; NaN
 * propagates.  Measured within 2 ulp of libm (tests/test_exp.py). */
PYCE_ALWAYS_INLINE double pyce_log_f64(double s)
{
    uint64_t bits;
    memcpy(&bits, &s, sizeof bits);
    int64_t e = (int64_t)((bits >> 52) & 0x7ff) - 1023;
    uint64_t fbits = (bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
    double f;
    memcpy(&f, &fbits, sizeof f);
    const int big = f > 1.4142135623730951;
    f = big ? f * 0.5 : f;
    e = big ? e + 1 : e;
    const double z = (f - 1.0) / (f + 1.0);
    const double z2 = z * z;
    double p = 1.0 / 23.0;
    p = p * z2 + 1.0 / 21.0;
    p = p * z2 + 1.0 / 19.0;
    p = p * z2 + 1.0 / 17.0;
    p = p * z2 + 1.0 / 15.0;
    p = p * z2 + 1.0 / 13.0;
    p = p * z2 + 1.0 / 11.0;
    p = p * z2 + 1.0 / 9.0;
    p = p * z2 + 1.0 / 7.0;
    p = p * z2 + 1.0 / 5.0;
    p = p * z2 + 1.0 / 3.0;
    const double log_f = 2.0 * z + 2.0 * z * z2 * p;
    const double ed = (double)e;
    const double r = ed * 6.93147180369123816490e-01 + (log_f + ed * 1.90821492927058770002e-10);
    return s != s ? s : r;
}

/* The vector exp of the float32 few-class path (pyce_ce_small.c), in two
 * forms that give the same results bit for bit for x <= 0 and NaN, the
 * arguments the kernels pass (for large positive x the AVX2 form's 2^n would
 * overflow where scalef does not): pyce_expneg_f32x16 (AVX-512) and
 * pyce_expneg_f32x8 (AVX2 + FMA).  pyce_expneg_f32's range reduction
 * (n = round(x log2e) by the 1.5*2^23 trick, r = x - n ln2 in two FMA steps,
 * |r| <= ln2/2), then exp(r) = 1 + r q(r) with q of degree 5 (coefficients
 * below, fitted for minimal relative error on [-ln2/2, ln2/2]; 0.9 ulp before
 * rounding) by Horner's rule, 6 FMAs instead of the scalar function's 8
 * operations, and 2^n applied with one rounding: vscalefps in AVX-512; in AVX2
 * a multiply by 2^n built from n's bits (n >= -126 for x >= lo, so 2^n is a
 * normal float and p * 2^n rounds once, as scalef does).  Below lo the result
 * is exactly +0, NaN stays NaN.  Measured within 1.02 ulp over [-87.3, 0]
 * (tests/loss/test_exp.py checks <= 2 ulp and the two forms' equality through
 * pyce_expneg_x16_array_f32 / pyce_expneg_x8_array_f32); not bitwise the
 * scalar exp.  The caller's function must enable avx512f (x16) or avx2,fma (x8). */
#define PYCE_EXPQ_Q4 1.3843652559e-03f
#define PYCE_EXPQ_Q3 8.3741554990e-03f
#define PYCE_EXPQ_Q2 4.1668001562e-02f
#define PYCE_EXPQ_Q1 1.6666431725e-01f
#define PYCE_EXPQ_Q0 4.9999994040e-01f
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>
static inline __attribute__((always_inline, target("avx512f"))) __m512
pyce_expneg_f32x16(__m512 x)
{
    const __m512 magic = _mm512_set1_ps(PYCE_EXPQ_MAGIC);
    /* keep: !(x < lo), true for NaN */
    const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(PYCE_EXPQ_LO), _CMP_NLT_UQ);
    const __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(PYCE_EXPQ_LOG2E), magic),
                                   magic);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(PYCE_EXPQ_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(PYCE_EXPQ_LN2_LO), r);
    __m512 p = _mm512_set1_ps(PYCE_EXPQ_Q4);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(PYCE_EXPQ_Q3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(PYCE_EXPQ_Q2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(PYCE_EXPQ_Q1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(PYCE_EXPQ_Q0));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_scalef_ps(keep, p, n);
}

static inline __attribute__((always_inline, target("avx2,fma"))) __m256
pyce_expneg_f32x8(__m256 x)
{
    const __m256 magic = _mm256_set1_ps(PYCE_EXPQ_MAGIC);
    /* keep: !(x < lo), true for NaN */
    const __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(PYCE_EXPQ_LO), _CMP_NLT_UQ);
    const __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(PYCE_EXPQ_LOG2E), magic);
    const __m256 n = _mm256_sub_ps(t, magic);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(PYCE_EXPQ_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(PYCE_EXPQ_LN2_LO), r);
    __m256 p = _mm256_set1_ps(PYCE_EXPQ_Q4);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(PYCE_EXPQ_Q3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(PYCE_EXPQ_Q2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(PYCE_EXPQ_Q1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(PYCE_EXPQ_Q0));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* t's low mantissa bits hold n (two's complement, offset 2^22 which the
     * shift drops): (bits(t) + 127) << 23 is the float 2^n for -126 <= n <= 0 */
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_castps_si256(t),
                                                         _mm256_set1_epi32(127)), 23);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(e)), keep);
}

/* The atanh series both vector log1p forms below sum: log f = 2z + z^3 q(z^2),
 * q = 2/3 + 2/5 w + 2/7 w^2 + 2/9 w^3 + 2/11 w^4 (Horner from the top), and ln 2. */
#define PYCE_LOG1P_Q4 (2.0f / 11.0f)
#define PYCE_LOG1P_Q3 (2.0f / 9.0f)
#define PYCE_LOG1P_Q2 (2.0f / 7.0f)
#define PYCE_LOG1P_Q1 (2.0f / 5.0f)
#define PYCE_LOG1P_Q0 (2.0f / 3.0f)
#define PYCE_LN2_F 0.693147180559945309f

/* log(1 + t) of 16 floats for the few-class path, t = s - 1 >= 0 (s the row
 * sum, at most 16): relative accuracy also for tiny t (a confident row's loss).
 * 1 + t = 2^e f with f in [0.75, 1.5) (e from vgetexpps/vgetmantps of the
 * rounded 1 + t), log f = 2 atanh(z) with z = (f-1)/(f+1) formed from t
 * itself, z = (t + 1 - 2^e)/(t + 1 + 2^e) (exact numerator for e = 0),
 * |z| <= 0.2, summed to z^11 (truncation < 1e-8 relative); log(1 + t) =
 * e ln2 + log f in one FMA.  NaN propagates.  Error within 2 ulp of float
 * (tests/loss/test_exp.py, through pyce_log1p_x16_array_f32).  The caller's
 * function must enable avx512f. */
static inline __attribute__((always_inline, target("avx512f"))) __m512
pyce_log1p_f32x16(__m512 t)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    const __m512 u = _mm512_add_ps(one, t);
    const __m512 e = _mm512_sub_ps(
        _mm512_getexp_ps(u),
        _mm512_getexp_ps(_mm512_getmant_ps(u, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_src)));
    const __m512 p2 = _mm512_scalef_ps(one, e);
    const __m512 z = _mm512_div_ps(_mm512_add_ps(t, _mm512_sub_ps(one, p2)),
                                   _mm512_add_ps(t, _mm512_add_ps(one, p2)));
    const __m512 z2 = _mm512_mul_ps(z, z);
    __m512 p = _mm512_set1_ps(PYCE_LOG1P_Q4);
    p = _mm512_fmadd_ps(p, z2, _mm512_set1_ps(PYCE_LOG1P_Q3));
    p = _mm512_fmadd_ps(p, z2, _mm512_set1_ps(PYCE_LOG1P_Q2));
    p = _mm512_fmadd_ps(p, z2, _mm512_set1_ps(PYCE_LOG1P_Q1));
    p = _mm512_fmadd_ps(p, z2, _mm512_set1_ps(PYCE_LOG1P_Q0));
    /* log f = 2z + z (z^2 p): the leading term exact, one rounding after it */
    const __m512 lf = _mm512_fmadd_ps(z, _mm512_mul_ps(z2, p), _mm512_add_ps(z, z));
    return _mm512_fmadd_ps(e, _mm512_set1_ps(PYCE_LN2_F), lf);
}

/* pyce_log1p_f32x16's method for 8 floats in AVX2 (no vgetmantps/vgetexpps:
 * e and 2^e from the bits of the rounded 1 + t).  Same range, same error
 * bound (tests/loss/test_exp.py, through pyce_log1p_x8_array_f32).  The
 * caller's function must enable avx2 and fma. */
static inline __attribute__((always_inline, target("avx2,fma"))) __m256
pyce_log1p_f32x8(__m256 t)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256i ub = _mm256_castps_si256(_mm256_add_ps(one, t));
    /* 1 + t = 2^e f, f in [0.75, 1.5): e is the exponent, plus 1 when the
     * mantissa is >= 1.5 (its top fraction bit set) */
    const __m256i e = _mm256_add_epi32(_mm256_sub_epi32(_mm256_srli_epi32(ub, 23), _mm256_set1_epi32(127)),
                                       _mm256_srli_epi32(_mm256_and_si256(ub, _mm256_set1_epi32(0x400000)), 22));
    const __m256 p2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
    const __m256 z = _mm256_div_ps(_mm256_add_ps(t, _mm256_sub_ps(one, p2)),
                                   _mm256_add_ps(t, _mm256_add_ps(one, p2)));
    const __m256 z2 = _mm256_mul_ps(z, z);
    __m256 p = _mm256_set1_ps(PYCE_LOG1P_Q4);
    p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(PYCE_LOG1P_Q3));
    p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(PYCE_LOG1P_Q2));
    p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(PYCE_LOG1P_Q1));
    p = _mm256_fmadd_ps(p, z2, _mm256_set1_ps(PYCE_LOG1P_Q0));
    const __m256 lf = _mm256_fmadd_ps(z, _mm256_mul_ps(z2, p), _mm256_add_ps(z, z));
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(e), _mm256_set1_ps(PYCE_LN2_F), lf);
}

/* The vector exp and log1p of the float64 AVX-512 few-class path
 * (pyce_ce_small.c, 8 rows per group).
 *
 * pyce_expneg_f64x8, for x <= 0 and NaN: n16 = round(16 x / ln 2) by the
 * 1.5*2^52 trick, r = x - n16 (ln2/16) in two FMA steps (fdlibm's split of
 * ln 2, divided by 16: n16 ln2_hi/16 is exact), |r| <= ln2/32; then
 * exp(x) = 2^(n16 >> 4) T[n16 & 15] exp(r) with T[j] = 2^(j/16) (the table
 * below, each entry correctly rounded; one vpermt2pd looks it up from t's
 * low bits) and exp(r) = 1 + r q(r), q the Taylor polynomial to r^6
 * (truncation r^8/8! < 1.3e-18 relative at |r| = ln2/32): the result is
 * T + (T r) q in one FMA, scaled by vscalefpd (floor(n16/16) = n16 >> 4).
 * 8 FMAs and a lookup instead of the scalar exp's degree-13 polynomial.
 * Below lo the result is exactly +0, NaN stays NaN, exp(0) = 1 exactly.
 * Error: the table's rounding (<= 0.5 ulp of T) plus the final FMA's;
 * tests/loss/test_exp.py measures within 2 ulp of the float64 exp over
 * [-708, 0] (through pyce_expneg_x8_array_f64).
 *
 * pyce_log1p_f64x8, for t = s - 1 >= 0 (s a row sum, at most 16): the float32
 * form's method (1 + t = 2^e f, f in [0.75, 1.5), log f = 2 atanh(z) with
 * z = (t + 1 - 2^e)/(t + 1 + 2^e)), the series summed to z^23 (truncation
 * < 1e-18 relative), e ln 2 added in two FMAs (fdlibm's split).  NaN
 * propagates.  Within 2 ulp (tests/loss/test_exp.py, through
 * pyce_log1p_x8_array_f64).  The caller's function must enable avx512f. */
#define PYCE_EXPD_LO (-708.3964185322641)  /* exp(lo) ~ 2.2e-308, the smallest normal */
#define PYCE_LN2_HI_D 6.93147180369123816490e-01  /* fdlibm split of ln 2 */
#define PYCE_LN2_LO_D 1.90821492927058770002e-10
static inline __attribute__((always_inline, target("avx512f"))) __m512d
pyce_expneg_f64x8(__m512d x)
{
    /* 2^(j/16), j = 0..7 and 8..15, correctly rounded */
    const __m512d t0 = _mm512_setr_pd(0x1p+0, 0x1.0b5586cf9890fp+0, 0x1.172b83c7d517bp+0,
                                      0x1.2387a6e756238p+0, 0x1.306fe0a31b715p+0,
                                      0x1.3dea64c123422p+0, 0x1.4bfdad5362a27p+0,
                                      0x1.5ab07dd485429p+0);
    const __m512d t1 = _mm512_setr_pd(0x1.6a09e667f3bcdp+0, 0x1.7a11473eb0187p+0,
                                      0x1.8ace5422aa0dbp+0, 0x1.9c49182a3f090p+0,
                                      0x1.ae89f995ad3adp+0, 0x1.c199bdd85529cp+0,
                                      0x1.d5818dcfba487p+0, 0x1.ea4afa2a490dap+0);
    const __m512d magic = _mm512_set1_pd(6755399441055744.0);  /* 1.5 * 2^52 */
    const __mmask8 keep = _mm512_cmp_pd_mask(x, _mm512_set1_pd(PYCE_EXPD_LO), _CMP_NLT_UQ);
    const __m512d t = _mm512_fmadd_pd(x, _mm512_set1_pd(16.0 * 1.4426950408889634074), magic);
    const __m512d n16 = _mm512_sub_pd(t, magic);
    __m512d r = _mm512_fnmadd_pd(n16, _mm512_set1_pd(PYCE_LN2_HI_D / 16.0), x);
    r = _mm512_fnmadd_pd(n16, _mm512_set1_pd(PYCE_LN2_LO_D / 16.0), r);
    /* t's low mantissa bits hold n16 (offset 2^51): bits 0-3 pick T[n16 & 15] */
    const __m512d T = _mm512_permutex2var_pd(t0, _mm512_castpd_si512(t), t1);
    __m512d q = _mm512_set1_pd(1.0 / 5040.0);
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 720.0));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 120.0));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 24.0));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0 / 6.0));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(0.5));
    q = _mm512_fmadd_pd(q, r, _mm512_set1_pd(1.0));
    const __m512d y = _mm512_fmadd_pd(_mm512_mul_pd(T, r), q, T);
    return _mm512_maskz_scalef_pd(keep, y, _mm512_mul_pd(n16, _mm512_set1_pd(0.0625)));
}

/* The same two for 4 doubles in AVX2 + FMA (the float64 AVX2 few-class
 * path).  pyce_expneg_f64x4 is the scalar pyce_expneg_f64's method (|r| <=
 * ln2/2, the degree-13 Taylor polynomial, 2^n built from n's bits; 13 FMAs):
 * without vpermt2pd the x8 form's table lookup takes four vpermps and three
 * blends, and the kernel measured no faster with it (2026-12-02), so the
 * simpler form; its values are not the x8 form's bit for bit, both are within
 * 2 ulp (tests/loss/test_exp.py).  2^n (n >= -1022 for x >= lo, a normal
 * number) multiplies with one rounding.  pyce_log1p_f64x4 is the x8 form's
 * method with e and 2^e from the bits of the rounded 1 + t (no
 * vgetexppd/vgetmantpd): the same values bit for bit.  The caller's function
 * must enable avx2 and fma. */
static inline __attribute__((always_inline, target("avx2,fma"))) __m256d
pyce_expneg_f64x4(__m256d x)
{
    const __m256d magic = _mm256_set1_pd(6755399441055744.0);  /* 1.5 * 2^52 */
    const __m256d keep = _mm256_cmp_pd(x, _mm256_set1_pd(PYCE_EXPD_LO), _CMP_NLT_UQ);
    const __m256d t = _mm256_fmadd_pd(x, _mm256_set1_pd(1.4426950408889634074), magic);
    const __m256d n = _mm256_sub_pd(t, magic);
    __m256d r = _mm256_fnmadd_pd(n, _mm256_set1_pd(PYCE_LN2_HI_D), x);
    r = _mm256_fnmadd_pd(n, _mm256_set1_pd(PYCE_LN2_LO_D), r);
    /* exp(r) = 1 + r + r^2 q(r), q = sum of r^k / (k + 2)!, k = 0..11 */
    __m256d q = _mm256_set1_pd(1.0 / 6227020800.0);
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 479001600.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 39916800.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 3628800.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 362880.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 40320.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 5040.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 720.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 120.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 24.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0 / 6.0));
    q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(0.5));
    const __m256d y = _mm256_fmadd_pd(_mm256_fmadd_pd(q, r, _mm256_set1_pd(1.0)), r,
                                      _mm256_set1_pd(1.0));
    /* t's low mantissa bits hold n (offset 2^51, dropped by the shift):
     * (bits(t) + 1023) << 52 is the double 2^n for -1022 <= n <= 0 */
    const __m256i e = _mm256_slli_epi64(
        _mm256_add_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(1023)), 52);
    return _mm256_and_pd(_mm256_mul_pd(y, _mm256_castsi256_pd(e)), keep);
}

static inline __attribute__((always_inline, target("avx2,fma"))) __m256d
pyce_log1p_f64x4(__m256d t)
{
    const __m256d one = _mm256_set1_pd(1.0);
    const __m256i ub = _mm256_castpd_si256(_mm256_add_pd(one, t));
    /* 1 + t = 2^e f, f in [0.75, 1.5): e is the exponent, plus 1 when the
     * mantissa is >= 1.5 (its top fraction bit set) */
    const __m256i e = _mm256_add_epi64(
        _mm256_sub_epi64(_mm256_srli_epi64(ub, 52), _mm256_set1_epi64x(1023)),
        _mm256_srli_epi64(_mm256_and_si256(ub, _mm256_set1_epi64x(1LL << 51)), 51));
    const __m256d p2 = _mm256_castsi256_pd(
        _mm256_slli_epi64(_mm256_add_epi64(e, _mm256_set1_epi64x(1023)), 52));
    const __m256d z = _mm256_div_pd(_mm256_add_pd(t, _mm256_sub_pd(one, p2)),
                                    _mm256_add_pd(t, _mm256_add_pd(one, p2)));
    const __m256d z2 = _mm256_mul_pd(z, z);
    __m256d p = _mm256_set1_pd(2.0 / 23.0);
    p = _mm256_fmadd_pd(p, z2, _mm256_set1_pd(2.0 / 21.0));
    p = _mm256_fmadd_pd(p, z2, _mm256_set1_pd(2.0 / 19.0));
    p = _mm256_fmadd_pd(p, z2, _mm256_set1_pd(2.0 / 17.0));
    p = _mm256_fmadd_pd(p, z2, _mm256_set1_pd(2.0 / 15.0));
    p = _mm256_fmadd_pd(p, z2, _mm256_set1_pd(2.0 / 13.0));
    p = _mm256_fmadd_pd(p, z2, _mm256_set1_pd(2.0 / 11.0));
    p = _mm256_fmadd_pd(p, z2, _mm256_set1_pd(2.0 / 9.0));
    p = _mm256_fmadd_pd(p, z2, _mm256_set1_pd(2.0 / 7.0));
    p = _mm256_fmadd_pd(p, z2, _mm256_set1_pd(2.0 / 5.0));
    p = _mm256_fmadd_pd(p, z2, _mm256_set1_pd(2.0 / 3.0));
    const __m256d lf = _mm256_fmadd_pd(z, _mm256_mul_pd(z2, p), _mm256_add_pd(z, z));
    /* e (small) as a double by the magic trick */
    const __m256d magic = _mm256_set1_pd(6755399441055744.0);
    const __m256d ed = _mm256_sub_pd(
        _mm256_castsi256_pd(_mm256_add_epi64(e, _mm256_castpd_si256(magic))), magic);
    return _mm256_fmadd_pd(ed, _mm256_set1_pd(PYCE_LN2_HI_D),
                           _mm256_fmadd_pd(ed, _mm256_set1_pd(PYCE_LN2_LO_D), lf));
}

static inline __attribute__((always_inline, target("avx512f"))) __m512d
pyce_log1p_f64x8(__m512d t)
{
    const __m512d one = _mm512_set1_pd(1.0);
    const __m512d u = _mm512_add_pd(one, t);
    const __m512d e = _mm512_sub_pd(
        _mm512_getexp_pd(u),
        _mm512_getexp_pd(_mm512_getmant_pd(u, _MM_MANT_NORM_p75_1p5, _MM_MANT_SIGN_src)));
    const __m512d p2 = _mm512_scalef_pd(one, e);
    const __m512d z = _mm512_div_pd(_mm512_add_pd(t, _mm512_sub_pd(one, p2)),
                                    _mm512_add_pd(t, _mm512_add_pd(one, p2)));
    const __m512d z2 = _mm512_mul_pd(z, z);
    /* q = sum of 2 z2^(k-1)/(2k+1), k = 1..11, by Horner from the top */
    __m512d p = _mm512_set1_pd(2.0 / 23.0);
    p = _mm512_fmadd_pd(p, z2, _mm512_set1_pd(2.0 / 21.0));
    p = _mm512_fmadd_pd(p, z2, _mm512_set1_pd(2.0 / 19.0));
    p = _mm512_fmadd_pd(p, z2, _mm512_set1_pd(2.0 / 17.0));
    p = _mm512_fmadd_pd(p, z2, _mm512_set1_pd(2.0 / 15.0));
    p = _mm512_fmadd_pd(p, z2, _mm512_set1_pd(2.0 / 13.0));
    p = _mm512_fmadd_pd(p, z2, _mm512_set1_pd(2.0 / 11.0));
    p = _mm512_fmadd_pd(p, z2, _mm512_set1_pd(2.0 / 9.0));
    p = _mm512_fmadd_pd(p, z2, _mm512_set1_pd(2.0 / 7.0));
    p = _mm512_fmadd_pd(p, z2, _mm512_set1_pd(2.0 / 5.0));
    p = _mm512_fmadd_pd(p, z2, _mm512_set1_pd(2.0 / 3.0));
    const __m512d lf = _mm512_fmadd_pd(z, _mm512_mul_pd(z2, p), _mm512_add_pd(z, z));
    return _mm512_fmadd_pd(e, _mm512_set1_pd(PYCE_LN2_HI_D),
                           _mm512_fmadd_pd(e, _mm512_set1_pd(PYCE_LN2_LO_D), lf));
}
#endif

#endif /* PYCE_EXP_H */
