/*
 * Few classes (C <= 16) at memory speed: fused softmax cross-entropy with
 * rows across SIMD lanes, moved there by in-register transposes.
 *
 * DESIGN NOTE
 *
 * What is accelerated.  Class-index targets, no z-loss, 2-d (N, C) input
 * (d = 1) with a contiguous class axis (rows may have any stride), a
 * contiguous-class-axis gradient, C <= 16, float32 and float64 (AVX-512 and
 * AVX2), with or without a gradient, with class weights or label smoothing
 * (not both), sample weights, grad_output, ignore_index and per-row losses
 * ('none').  Everything else stays on the existing lanes path (ce_lanes /
 * ce_lanes_plain): pyce_ce_small_* returns 0 for probability targets, label
 * smoothing with class weights, z-loss, (N, C, d...) inputs, strided class axes (e.g. a
 * Fortran-ordered out=), gradients beyond the dtype's range (|g| > T_MAX),
 * and every CPU without AVX2 or compiler without GCC/clang target
 * attributes.
 *
 * How (AVX-512, float32):
 *   1-2. one register per class, lane r = row r.  A dense group (16 whole
 *      rows C floats apart, 8 < C <= 16: the common (N, 10) call) loads
 *      [row r | row r+8] 8 classes at a time (a 256-bit load and a masked
 *      256-bit merge) and transposes with two 8x8 transposes side by side
 *      (tr8x2_ps: unpcklps/unpckhps, shufps, vpermt2ps; 34 shuffles for
 *      C = 10).  Other groups (C <= 8, strided rows, the tail) load one row
 *      per register (masked loads of C floats) and use a 16x16 transpose
 *      (unpcklps, unpcklpd, two vshuff32x4 stages, only the outputs that are
 *      classes; 58 shuffles for C = 10),
 *   3. max across the C registers, d = x - m, exp(d) with pyce_expneg_f32x16
 *      (pyce_exp.h: the kernels' range reduction, its own degree-5 q in
 *      1 + r q(r), 2^n applied by vscalefps; <= 1.02 ulp measured),
 *   4. per class a compare mask (lane r: class == y_r) picks x_y and e_y, and
 *      so = the sum of the other classes' exps, in float32, class by class;
 *      s = so + e_y,
 *   5. gradient: ONE division per row, q = g/s; p_k = q e_k, the target entry
 *      g (e_y - s)/s = -q so (no cancellation at p_y ~ 1); rows not computed
 *      are 0; the transpose back (dense groups: tr8x2_back_ps and 256-bit
 *      stores in row order, each reaching into the next row, which is stored
 *      after it; the group's last store masked), else masked stores of C
 *      floats per row,
 *   6. log(s) = log1p((e_y - 1) + so) in float32 (pyce_log1p_f32x16), kept
 *      with x_y, m, w and y for the batch: after the groups of a batch of 64
 *      rows, the losses w log(s) - w (x_y - m) in double (small_row_loss;
 *      x_y - m in double, as it can overflow float), 16-row partial
 *      sums in row order.  Batching takes the log's latency off each group's
 *      critical path.
 *   Label smoothing eps (every function twice, NAME_table[1][C]: the
 *      smoothing is a constant of the code, so the plain case pays nothing):
 *      the group also sums d_k = x_k - m (all <= 0, so no cancellation;
 *      float32 rows whose sum is not finite, e.g. 3e38 - -3e38, are summed
 *      again in double from the logits, as ce_row_prep does), the gradient is
 *      p_k q - b with b = g eps/c and the target entry
 *      g ((pcoef - tw) e_y - tw so)/s - b (small_row_grad_coefs_smooth_*),
 *      and the loss pcoef log(s) - tw (x_y - m) - eps/c sum_k d_k
 *      (small_row_loss_smooth): ce_row_prep's rule with every class weight 1.
 *      Class weights make the smoothing share per class: those calls keep the
 *      lanes path.  About 10 more operations per group (one add and one
 *      blend per class): 1024 x 10 float32 takes about 10% longer than
 *      without smoothing, where the lanes path took 5x as long.
 *   All rows of a group are loaded before any store, and a store writes only
 *   its row's C entries, so overwrite_input (gradient in place) is safe.
 *   float32 AVX2: the same steps with 8 rows per group (8x8 transposes of
 *   unpcklps, shufps, vperm2f128; compare vectors and blendv instead of
 *   masks; pyce_expneg_f32x8, the AVX-512 exp's polynomial with 2^n built
 *   from n's bits, bit for bit pyce_expneg_f32x16; pyce_log1p_f32x8).
 *   float64 (AVX-512, 8 rows, 8x8 blocks of masked row loads): the float32
 *   group's steps in double, the losses formed per group: exp in registers
 *   with pyce_expneg_f64x8 (a 16-entry table of 2^(j/16) looked up by one
 *   vpermt2pd, then a degree-7 polynomial: 8 FMAs where the scalar exp has
 *   a degree-13 one), so and s = so + e_y, log1p((e_y - 1) + so) with
 *   pyce_log1p_f64x8, one division per row (small_row_grad_coefs_f64x8).
 *   float64 AVX2: 4 rows a group (4x4 transposes of unpcklpd and vperm2f128),
 *   the AVX2 float32 group's loads, blends and stores (rows loaded and
 *   stored 4, 8, 12 or 16 doubles wide, a stack buffer where that would pass
 *   the block; no vmaskmovpd), pyce_expneg_f64x4 (the scalar exp's degree-13
 *   method in registers) and pyce_log1p_f64x4.  Before, such CPUs took the
 *   lanes path, whose transposes compile to gathers.
 *   The AVX2 groups store a row 8 or 16 floats (4 to 16 doubles) wide and
 *   let the spill past its C entries land on the next row, which is stored
 *   after it; only when the gradient rows are C apart: with strided gradient
 *   rows (out= a column slice of a wider array) the spill would reach the
 *   caller's memory between them, so each row goes through a buffer (before
 *   2026-12-02 the float32 AVX2 group wrote there: fixed, tested by
 *   test_strided_out_rows_leave_the_memory_between_them_alone).

 * Vendor-specific choices, and why:
 *   - No gathers or scatters (the old lanes path compiled its transposes to
 *     them): microcoded on AMD Zen (vgatherdps zmm ~15 and vscatterdps ~20+
 *     cycles per instruction on Zen 4).  On Intel gathers are cheaper, but the
 *     shuffles used instead run there too (on port 5 only, one per cycle), so
 *     the same code serves both.
 *   - No vmaskmovps in the AVX2 code (microcoded on AMD, fast on Intel): a
 *     group whose full-width loads or stores would pass the block's last row,
 *     and every partial group, goes through a stack buffer instead.  Costs
 *     Intel a few copies per block, saves AMD far more.
 *   - AVX-512 masked loads and stores (vmovups zmm{k}) are single
 *     instructions on Zen 4 and on Intel, so the AVX-512 code needs no tail
 *     special case.  But on Zen 4 a zmm store masked to its upper half
 *     (writing row r+8 from [row r | row r+8]) made the dense group ~5%
 *     slower than vextractf32x8 + a 256-bit store: dense groups store ymm.
 *   - vpermt2ps (the last stage of tr8x2_ps) is one uop on Zen 4 and on
 *     Intel Ice Lake and later (3-cycle latency); on Skylake-SP too.  It needs
 *     its index vectors in registers (two constants).
 *   - exp: 2^n applied by vscalefps (AVX-512F, one uop on Zen 4 and Intel)
 *     instead of exponent-bit arithmetic (shift, add, multiply), and a
 *     polynomial of 6 FMAs instead of 8 operations: fewer operations on the
 *     FMA pipes, which bound the exp on Zen 4 (a zmm FMA occupies both 256-bit
 *     FMA units: one per cycle; the scalar method's exp alone measured 0.58
 *     TSC ticks per element, ~0.8 core cycles; the degree-5 q saved ~5% of
 *     the whole group).
 *   - 512-bit registers on every AVX-512 CPU.  Zen 4 runs a zmm operation as
 *     two 256-bit halves, so zmm buys no arithmetic throughput there; it halves
 *     the instructions and the per-row work per element (16 rows per group
 *     instead of 8).  Older Intel server parts (Skylake-SP, Cascade Lake)
 *     lower their clock under heavy zmm use; not measured here.
 *   Correction (2026-12-03): this VM's /proc/cpuinfo reports cpu family 26,
 *   model 2, i.e. Zen 5, not Zen 4 (flags include avx512_vp2intersect).  Zen 5
 *   server parts have full-width 512-bit units, so the "two 256-bit halves"
 *   and "~1.5 zmm operations a cycle" below are Zen 4 figures that were never
 *   measured here (no cycle counters in this VM).  The times themselves did not
 *   change (1024 x 10 float32 fused 4.5-4.8 us on 2026-12-02 and 12-03), so
 *   the operation count below describes the kernel but does not prove a floor.
 *   Measured on this AMD EPYC (2 cores; TSC 2.6 GHz, core ~3.6 GHz;
 *   busy machine, other builds running) in a C harness (the kernel alone, 1024
 *   rows a block as pyce_ce cuts 262144 rows, rdtsc minima, ticks of the
 *   TSC per element, float32, fused, 'mean'), before (the per-group form
 *   with double sums and three double divisions per row) and after:
 *     1024 x 10, 1 thread:            2.20 -> 1.60 (8.7 us -> 6.3 us)
 *     262144 x 10, 1 thread:          2.21 -> 1.64
 *     262144 x 10, 2 threads:         1.11 -> 0.83 (both scale ~2x in C)
 *     1024 x 10 forward only:         1.84 -> 1.26
 *   Where the 1.60 goes (ablations, +-0.05): exp 0.54 (FMA-pipe bound), the
 *   transposes 0.15 + 0.14, the per-class target masks, picks and masked sums
 *   0.17, log1p and the losses 0.04, the rest (loads, stores, max, x - m, the
 *   gradient's multiply and division, target preparation, the batch's loss
 *   step) ~0.55.  Tried and not kept: a max tree and four partial sums
 *   (slower: 2.0), two groups interleaved (no gain), overlapping full-width
 *   loads/stores instead of masked ones in the 16x16 form (no gain).  The
 *   older lanes path (PYCE_SMALL_ISA=none) costs ~5.8.  The goal of ~1.0-1.2
 *   (1.8 core cycles, the stand-alone prototype) is not reached: the exp's
 *   FMA work alone is ~0.5, and the "rest" did not yield to the attempts above.
 *   AVX2 float32 (PYCE_SMALL_ISA=avx2, same harness), 1024 x 10: 4.4 -> 3.1.
 *   Operation count (2026-12-02), one dense AVX-512 group, C = 10 (16 rows,
 *   160 elements), zmm operations: loads 32, transposes 34 in and 34 out,
 *   max 9, x - m 10, exp 110 (11 a class), target masks and picks 50 (5 a
 *   class), row sum, log1p and the batch's stores ~22, gradient 13, stores
 *   32, target preparation and the batch's losses ~30: ~376, 2.35 an
 *   element.  At Zen 4's ~1.5 zmm operations a cycle that is ~1.6 cycles an
 *   element, as measured.  Issue 13's 262144 x 10 goal (2x a copy with two
 *   threads) needs ~1.15 cycles, ~270 operations a group, of which the exp
 *   and the transposes alone take ~180: a design with far fewer operations
 *   an element, not tuning of this one.  A 16-entry-table float32 exp counts
 *   12 operations, not fewer (the lookup and the 2^(n/16) split cost what the
 *   shorter polynomial saves).
 *   float64, 2026-12-02 (Python loop of the call, n_threads=1, best of 7,
 *   the two builds run in turns, /tmp/ab64.py): 1024 x 10 fused 12.8-13.9 ->
 *   9.1-10.9 us, forward 10.4-10.9 -> 7.7-10.3 us; 262144 x 10 fused 3.3-4.3
 *   -> 2.4-2.7 ms.  Before, the exp went through a stack buffer with the
 *   scalar degree-13 exp, and each row took three double divisions.
 *   float64 AVX2 against the lanes path it replaces, measured on this
 *   machine with a build whose kernels have no x86-64-v4 clone (so the lanes
 *   path runs its x86-64-v3 code, as on an AVX2-only CPU) and
 *   PYCE_SMALL_ISA=avx2 against =none (loops of the call, one thread, best of
 *   7, /tmp/ab2.py): 1024 x 10 fused 29.4-30.7 -> 21.0 us, forward 20.7-21.4
 *   -> 17.2-17.4 us; 262144 x 10 fused 9.2-9.4 -> 5.2-6.2 ms, forward 7.0-7.3
 *   -> 4.2 ms.  On Zen 2/3, where gathers are microcoded, the lanes path is
 *   slower still (not measured here).
 *
 * Dispatch: per-ISA functions with __attribute__((target(...))) chosen with
 * __builtin_cpu_supports at every call (a load and a test); other CPUs and
 * compilers return 0 and use the existing path.  Never -march=native.
 * PYCE_SMALL_ISA=avx512|avx2|none caps the choice (tests, A/B benchmarks).
 *
 * Numerics.  float32 (AVX-512 and AVX2): the exp is within 2 ulp
 * (pyce_expneg_f32x16 and pyce_expneg_f32x8, the same values, measured 1.02
 * ulp; the two ISAs' log1p forms may still differ by rounding); the row sum s is summed in
 * float32 over C <= 16 terms each <= 1 (relative error <= (C-1) 2^-24 ~ 9e-7,
 * typically far less), log(s) in float32 within 2 ulp (as log1p of s - 1
 * formed without cancellation, so a confident row's small loss stays
 * relatively accurate), one rounding for q = g/s and one for each p_k = q e_k:
 * a gradient entry is within ~1.5e-6 relative of the exact value, a row loss
 * within ~1e-6 of its scale w; the losses and their sums are in double.  The
 * README bound (float32 rtol 1e-5 against a float64 reference) holds with a
 * ~7x margin in the worst case.  The results are no longer bitwise equal to
 * the lanes path (which sums and takes the log in double):
 * tests/loss/test_small_classes.py checks both against the float64 reference
 * at the README bound and against each other at rtol 1e-5.  float64: the
 * exp and log1p within 2 ulp (measured 1.02 and 1.9 against long double),
 * the row sum in double, one rounding for q = g/s and one per entry: a few
 * ulp of the exact value, and no longer bitwise the lanes path (which sums
 * in class order, takes log(s) and forms the target entry as g (e_y - s)/s,
 * cancelling where p_y ~ 1); the test compares them at rtol 1e-14 plus
 * 2e-15 of the row's scale, and each against the reference.  Results are bitwise identical for every n_threads
 * (blocks are cut by the caller independently of threads; batches and groups
 * within a block are fixed).
 */
#include "pyce_ce_small.h"
#include "pyce_exp.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(PYCE_NO_CLONES)
#define PYCE_SMALL_X86 1
#include <immintrin.h>
#else
#define PYCE_SMALL_X86 0
#endif

/* small_row_weights, small_row_loss, small_row_grad_coefs(_f32x16),
 * small_grad_in_range: the per-row rules of the plain class-target case (shared with pyce_ce_online.c). */
#include "pyce_ce_rules.h"

/* Rows per batch of the AVX-512 float32 path: its groups, then its losses. */
#define PYCE_SMALL_BATCH 64

typedef struct {
    int32_t y[16];   /* target class, -1 for a row not computed (ignored or past the range) */
    double w[16];    /* small_row_weights' w (0 when not computed) */
    double g[16];    /* its gradient factor g (0 when not computed) */
    uint32_t live;   /* bit r set: row r is computed */
} small_rows;

PYCE_ALWAYS_INLINE void small_prep(const pyce_ce_args *a, int64_t i0, int nrows, int lanes,
                                   small_rows *p)
{
    uint32_t live = 0;
    for (int r = 0; r < lanes; r++) {
        const int64_t i = i0 + (r < nrows ? r : 0);
        const int64_t y = a->target[i];
        const int lv = r < nrows && y != a->ignore_index;
        double w, g;
        small_row_weights(a, i, lv ? y : 0, &w, &g);
        p->y[r] = lv ? (int32_t)y : -1;
        p->w[r] = lv ? w : 0.0;
        p->g[r] = lv ? g : 0.0;
        live |= (uint32_t)lv << r;
    }
    p->live = live;
}

static int small_handles(const pyce_ce_args *a)
{
    return a->target && !a->target_prob && a->c >= 1 && a->c <= 16 && a->d == 1 &&
           (a->label_smoothing == 0.0 || !a->class_weight) && a->z_loss == 0.0 && a->x_sc == 1 &&
           (!a->grad || a->g_sc == 1);
}

#if PYCE_SMALL_X86

#if defined(__clang__)
#define PYCE_TGT_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")))
#define PYCE_TGT_AVX2 __attribute__((target("avx2,fma")))
#else
#define PYCE_TGT_AVX512 \
    __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,prefer-vector-width=512")))
#define PYCE_TGT_AVX2 __attribute__((target("avx2,fma")))
#endif
#define PYCE_INL static inline __attribute__((always_inline))

/* ============================ AVX-512, float32 ============================ */

/* 16x16 transpose: out[k] lane r = in[r] lane k.  Inputs nin.. do not matter
 * (their lanes of the outputs are never used) and only outputs < nout are
 * formed; both are constants after inlining, so the unused steps vanish. */
PYCE_TGT_AVX512 PYCE_INL void tr16_ps(const __m512 *in, __m512 *out, const int nin, const int nout)
{
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {
        if (2 * i >= nin) {
            t[2 * i] = t[2 * i + 1] = in[0];
            continue;
        }
        const __m512 b = 2 * i + 1 < nin ? in[2 * i + 1] : in[2 * i];
        t[2 * i] = _mm512_unpacklo_ps(in[2 * i], b);
        t[2 * i + 1] = _mm512_unpackhi_ps(in[2 * i], b);
    }
    /* u[4q + j], 128-bit block b: column 4b + j of rows 4q .. 4q+3 */
    for (int q = 0; q < 4; q++) {
        if (4 * q >= nin) {
            u[4 * q] = u[4 * q + 1] = u[4 * q + 2] = u[4 * q + 3] = t[0];
            continue;
        }
        const __m512d a0 = _mm512_castps_pd(t[4 * q]), a1 = _mm512_castps_pd(t[4 * q + 1]);
        const __m512d a2 = _mm512_castps_pd(t[4 * q + 2]), a3 = _mm512_castps_pd(t[4 * q + 3]);
        u[4 * q] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
        u[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
        u[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
        u[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
    }
    for (int j = 0; j < 4 && j < nout; j++) {
        const __m512 v88 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x88);
        const __m512 vdd = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xdd);
        const __m512 w88 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x88);
        const __m512 wdd = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xdd);
        out[j] = _mm512_shuffle_f32x4(v88, w88, 0x88);
        if (4 + j < nout)
            out[4 + j] = _mm512_shuffle_f32x4(vdd, wdd, 0x88);
        if (8 + j < nout)
            out[8 + j] = _mm512_shuffle_f32x4(v88, w88, 0xdd);
        if (12 + j < nout)
            out[12 + j] = _mm512_shuffle_f32x4(vdd, wdd, 0xdd);
    }
}

/* small_prep for 16 whole rows without weights or grad_output, vectorized. */
PYCE_TGT_AVX512 PYCE_INL void small_prep_plain16(const pyce_ce_args *a, int64_t i0, small_rows *p)
{
    const __m512i ig = _mm512_set1_epi64(a->ignore_index);
    const __m512i t0 = _mm512_loadu_si512((const void *)(a->target + i0));
    const __m512i t1 = _mm512_loadu_si512((const void *)(a->target + i0 + 8));
    const __mmask16 live = (__mmask16)(_mm512_cmpneq_epi64_mask(t0, ig) |
                                       ((unsigned)_mm512_cmpneq_epi64_mask(t1, ig) << 8));
    const __m512i y = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(t0)),
                                         _mm512_cvtepi64_epi32(t1), 1);
    _mm512_storeu_si512((void *)p->y, _mm512_mask_mov_epi32(_mm512_set1_epi32(-1), live, y));
    const __m512d one = _mm512_set1_pd(1.0), g = _mm512_set1_pd(a->grad_scale);
    _mm512_storeu_pd(p->w, _mm512_maskz_mov_pd((__mmask8)live, one));
    _mm512_storeu_pd(p->w + 8, _mm512_maskz_mov_pd((__mmask8)(live >> 8), one));
    _mm512_storeu_pd(p->g, _mm512_maskz_mov_pd((__mmask8)live, g));
    _mm512_storeu_pd(p->g + 8, _mm512_maskz_mov_pd((__mmask8)(live >> 8), g));
    p->live = live;
}

/* The per-row values a group leaves for the loss step of its batch
 * (f32_avx512_rows): log(s), x_y and m (x_y - m is formed in double: in float
 * it can overflow, e.g. FLT_MAX - -FLT_MAX), the row weight w and y (-1: not
 * computed). */
typedef struct {
    float ls[PYCE_SMALL_BATCH], xy[PYCE_SMALL_BATCH], m[PYCE_SMALL_BATCH];
    double w[PYCE_SMALL_BATCH];
    double sd[PYCE_SMALL_BATCH];   /* label smoothing: sum_k (x_k - m) */
    int32_t y[PYCE_SMALL_BATCH];
} small_batch;

/* sum_k (x_k - m) in double, as ce_row_prep forms it, for the rows of a
 * float32 group in the bit set rows (whose float32 sum is not finite: a -inf
 * or NaN logit, or x_k - m beyond float's range); x: the group's rows, sx
 * apart, read before any gradient store. */
static void small_sd_rows_f32(const float *x, int64_t sx, int C, const float *m, uint32_t rows,
                              double *sd)
{
    for (int r = 0; rows; r++, rows >>= 1)
        if (rows & 1) {
            double t = 0.0;
            for (int k = 0; k < C; k++)
                t += (double)x[r * sx + k] - (double)m[r];
            sd[r] = t;
        }
}

/* Dense groups (16 whole rows, C consecutive floats apart, 8 < C <= 16): the
 * classes 0-7 and 8-15 of a row are transposed apart, each as two 8x8
 * transposes side by side in the two 256-bit halves of a register:
 * Z[r] = [row r, classes h..h+7 | row r+8, classes h..h+7] (two 256-bit
 * loads, the second merged by mask), then unpcklps/unpckhps, shufps within
 * 128-bit blocks and one vpermt2ps per output (1 uop on Zen 4 and on Intel
 * Ice Lake and later): 24 shuffles for 8 classes instead of 58 for the 16x16
 * transpose, fewer when only some outputs are needed (10 for 2 classes).
 * out[k] lane r = row r, class h + k, for k < nout. */
PYCE_TGT_AVX512 PYCE_INL void tr8x2_ps(const __m512 *Z, __m512 *out, const int nout)
{
    const __m512i i0 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
    const __m512i i1 = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    const int need01 = nout > 0, need23 = nout > 2;   /* classes {0,1,4,5}, {2,3,6,7} */
    __m512 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = need01 ? _mm512_unpacklo_ps(Z[2 * i], Z[2 * i + 1]) : Z[0];
        t[2 * i + 1] = need23 ? _mm512_unpackhi_ps(Z[2 * i], Z[2 * i + 1]) : Z[0];
    }
    /* u[4h + j]: blocks [class j | class j+4] of rows 4h..4h+3 (low half) and
     * rows 4h+8.. (high half) */
    for (int h = 0; h < 2; h++)
        for (int j = 0; j < 4; j++) {
            if (j >= nout) {
                u[4 * h + j] = Z[0];
                continue;
            }
            const __m512 a = t[4 * h + (j >> 1)], b = t[4 * h + 2 + (j >> 1)];
            u[4 * h + j] = (j & 1) ? _mm512_shuffle_ps(a, b, 0xee) : _mm512_shuffle_ps(a, b, 0x44);
        }
    for (int j = 0; j < 4 && j < nout; j++) {
        out[j] = _mm512_permutex2var_ps(u[j], i0, u[4 + j]);
        if (j + 4 < nout)
            out[j + 4] = _mm512_permutex2var_ps(u[j], i1, u[4 + j]);
    }
}

/* The inverse of tr8x2_ps: in[k] lane r = row r, class h + k for k < nin
 * (the others do not matter) into Z[r] = [row r | row r+8], classes h..h+7. */
PYCE_TGT_AVX512 PYCE_INL void tr8x2_back_ps(const __m512 *in, __m512 *Z, const int nin)
{
    const __m512i i0 = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
    const __m512i i1 = _mm512_setr_epi32(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    __m512 u[8], t[8];
    for (int j = 0; j < 4; j++) {
        if (j >= nin) {
            u[j] = u[4 + j] = in[0];
            continue;
        }
        const __m512 b = j + 4 < nin ? in[j + 4] : in[j];
        u[j] = _mm512_permutex2var_ps(in[j], i0, b);
        u[4 + j] = _mm512_permutex2var_ps(in[j], i1, b);
    }
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < 2; i++) {
            if (2 * i >= nin) {
                t[4 * h + 2 * i] = t[4 * h + 2 * i + 1] = in[0];
                continue;
            }
            const __m512 a = u[4 * h + 2 * i], b = u[4 * h + 2 * i + 1];
            t[4 * h + 2 * i] = _mm512_unpacklo_ps(a, b);
            t[4 * h + 2 * i + 1] = _mm512_unpackhi_ps(a, b);
        }
    for (int h = 0; h < 2; h++) {
        Z[4 * h] = _mm512_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
        Z[4 * h + 1] = _mm512_shuffle_ps(t[4 * h], t[4 * h + 2], 0xee);
        Z[4 * h + 2] = _mm512_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
        Z[4 * h + 3] = _mm512_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xee);
    }
}

/* Rows i0 .. i0+nrows-1 (nrows <= 16; full: nrows == 16, a constant) with C
 * classes: the gradient, and lanes j .. j+15 of the batch b. */
PYCE_TGT_AVX512 PYCE_INL void group_f32_avx512(const pyce_ce_args *a, int64_t i0, int nrows,
                                               const int C, const int full, small_batch *b,
                                               int j, const int sm, const small_smooth *smv)
{
    enum { L = 16 };
    const int64_t sx = a->x_sn;
    const float *x = (const float *)a->x + i0 * sx;
    float *grad = a->grad ? (float *)a->grad + i0 * a->g_sn : NULL;
    const __mmask16 cm = (__mmask16)((1u << C) - 1u);
    const int64_t sg = a->g_sn;
    const int plain = !a->class_weight && !a->sample_weight && !a->grad_output;
    small_rows p;
    if (full)
        nrows = L;
    if (full && plain)
        small_prep_plain16(a, i0, &p);
    else
        small_prep(a, i0, nrows, L, &p);

    __m512 R[16], V[16], E[16];
    /* dense: 16 whole rows C floats apart, C > 8 (see tr8x2_ps); each
     * 256-bit access of classes 8-15 reaches into the next row, except the
     * last row's, which is masked */
    const int dense = full && C > 8 && sx == C && (!grad || a->g_sn == C);
    if (dense) {
        const __mmask16 hi = 0xff00, hi_last = (__mmask16)(((1u << (C - 8)) - 1u) << 8);
        for (int h = 0; h < 2; h++) {
            for (int r = 0; r < 8; r++) {
                const float *lo = x + r * C + 8 * h, *up = x + (r + 8) * C + 8 * h - 8;
                R[8 * h + r] = _mm512_mask_loadu_ps(_mm512_castps256_ps512(_mm256_loadu_ps(lo)),
                                                    h == 1 && r == 7 ? hi_last : hi, up);
            }
        }
        tr8x2_ps(R, V, 8);
        tr8x2_ps(R + 8, V + 8, C - 8);
    } else {
        for (int r = 0; r < L; r++)
            R[r] = _mm512_maskz_loadu_ps(r < nrows ? cm : 0, x + (r < nrows ? r : 0) * sx);
        tr16_ps(R, V, L, C);
    }

    __m512 m = V[0];
    for (int k = 1; k < C; k++)
        m = _mm512_max_ps(V[k], m);   /* V[k] > m ? V[k] : m, as lanes_load_max */

    /* exp(x - m); the target lanes' x_y and e_y picked by compare masks;
     * so = the row sum without the target term, in float, class by class */
    const __m512i yv = _mm512_loadu_si512((const void *)p.y);
    const __mmask16 live = (__mmask16)p.live;
    __mmask16 nt[16];   /* lane r: row r computed and k != y_r */
    __m512 xy = _mm512_setzero_ps(), ey = _mm512_setzero_ps(), so = _mm512_setzero_ps();
    __m512 sd = _mm512_setzero_ps();   /* label smoothing: sum_k (x_k - m) */
    for (int k = 0; k < C; k++) {
        const __m512 dk = _mm512_sub_ps(V[k], m);
        if (sm)
            sd = _mm512_add_ps(sd, dk);
        E[k] = pyce_expneg_f32x16(dk);
        const __mmask16 is_y = _mm512_cmpeq_epi32_mask(yv, _mm512_set1_epi32(k));
        nt[k] = _mm512_mask_cmpneq_epi32_mask(live, yv, _mm512_set1_epi32(k));
        xy = _mm512_mask_mov_ps(xy, is_y, V[k]);
        ey = _mm512_mask_mov_ps(ey, is_y, E[k]);
        so = _mm512_mask_add_ps(so, nt[k], so, E[k]);
    }
    const __m512 s = _mm512_add_ps(so, ey);

    /* the loss rows are formed by the batch (their log's latency overlaps) */
    /* log(s) = log1p((e_y - 1) + so): e_y - 1 is exact, and 0 when y is the
     * row's maximum, so a confident row's loss log1p(so) keeps its relative
     * accuracy */
    _mm512_store_ps(b->ls + j, pyce_log1p_f32x16(_mm512_add_ps(_mm512_sub_ps(ey, _mm512_set1_ps(1.0f)), so)));
    _mm512_store_ps(b->xy + j, xy);
    _mm512_store_ps(b->m + j, m);
    _mm512_store_pd(b->w + j, _mm512_loadu_pd(p.w));
    _mm512_store_pd(b->w + j + 8, _mm512_loadu_pd(p.w + 8));
    _mm512_store_si512((void *)(b->y + j), yv);
    if (sm) {
        /* every d_k <= 0: no cancellation in float32; rows where the sum is
         * not finite are summed again in double */
        _mm512_store_pd(b->sd + j, _mm512_cvtps_pd(_mm512_castps512_ps256(sd)));
        _mm512_store_pd(b->sd + j + 8, _mm512_cvtps_pd(_mm512_extractf32x8_ps(sd, 1)));
        const __mmask16 wide = _mm512_mask_cmp_ps_mask(live, sd, _mm512_set1_ps(-FLT_MAX), _CMP_NGE_UQ);
        if (wide)
            small_sd_rows_f32(x, sx, C, b->m + j, wide, b->sd + j);
    }

    if (grad) {
        /* one division per row: q = g/s; p_k = q e_k; the target entry
         * g (e_y - s)/s = -q so (no cancellation at p_y ~ 1) */
        __m512 gv;
        if (full && plain)
            gv = _mm512_set1_ps((float)a->grad_scale);
        else
            gv = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(_mm512_loadu_pd(p.g))),
                                    _mm512_cvtpd_ps(_mm512_loadu_pd(p.g + 8)), 1);
        __m512 q, fix;
        if (sm) {
            /* label smoothing: p_k q - b, the target entry fix */
            __m512 bs;
            small_row_grad_coefs_smooth_f32x16(gv, s, so, ey, live, smv, &q, &bs, &fix);
            for (int k = 0; k < C; k++)
                V[k] = _mm512_mask_mov_ps(fix, nt[k], _mm512_fmsub_ps(E[k], q, bs));
        } else {
            small_row_grad_coefs_f32x16(gv, s, so, live, &q, &fix);
            for (int k = 0; k < C; k++)
                V[k] = _mm512_mask_mul_ps(fix, nt[k], E[k], q);
        }
        if (dense) {
            tr8x2_back_ps(V, R, 8);
            tr8x2_back_ps(V + 8, R + 8, C - 8);
            /* in row order: a row's classes 8-15 store reaches into the next
             * row, whose own stores come after it; the last one is masked */
            const unsigned lo_last = (1u << (C - 8)) - 1u;
            for (int r = 0; r < 16; r++) {
                const int q = r & 7, up = r >> 3;
                float *g = grad + r * C;
                if (!up) {
                    _mm256_storeu_ps(g, _mm512_castps512_ps256(R[q]));
                    _mm256_storeu_ps(g + 8, _mm512_castps512_ps256(R[8 + q]));
                } else {
                    _mm256_storeu_ps(g, _mm512_extractf32x8_ps(R[q], 1));
                    if (r == 15)
                        _mm256_mask_storeu_ps(g + 8, (__mmask8)lo_last, _mm512_extractf32x8_ps(R[8 + q], 1));
                    else
                        _mm256_storeu_ps(g + 8, _mm512_extractf32x8_ps(R[8 + q], 1));
                }
            }
        } else {
            tr16_ps(V, R, C, L);
            for (int r = 0; r < L; r++)
                _mm512_mask_storeu_ps(grad + (r < nrows ? r : 0) * sg, r < nrows ? cm : 0, R[r]);
        }
    }
}

/* The loss step of a batch of nb rows starting at row i (lanes 0 .. nl-1
 * filled by its groups): losses w log(s) - w (x_y - m) in double
 * (small_row_loss), stored when asked, summed 16 rows at a time from 0 and
 * added to total in row order. */
#define PYCE_SMALL_BATCH_LOSSES(a, b, i, nb, nl, loss_out, total, SM, smv)              \
    do {                                                                                  \
        double lossv[PYCE_SMALL_BATCH] __attribute__((aligned(64)));                      \
        if (SM)                                                                           \
            for (int r = 0; r < (nl); r++)                                                \
                lossv[r] = small_row_loss_smooth((b).y[r] >= 0, (b).w[r], &(smv),         \
                                                 (double)(b).ls[r],                       \
                                                 (double)(b).xy[r] - (double)(b).m[r],    \
                                                 (b).sd[r]);                              \
        else {                                                                            \
            _Pragma("omp simd")                                                           \
            for (int r = 0; r < (nl); r++)                                                \
                lossv[r] = small_row_loss((b).y[r] >= 0, (b).w[r], (double)(b).ls[r],     \
                                          (double)(b).xy[r] - (double)(b).m[r]);          \
        }                                                                                 \
        if (loss_out)                                                                     \
            for (int r = 0; r < (nb); r++)                                                \
                (loss_out)[(i) + r] = (float)lossv[r];                                    \
        for (int r = 0; r < (nb); r += 16)                                                \
            (total) += small_sum_rows(lossv + r, (nb) - r < 16 ? (nb) - r : 16);          \
    } while (0)

/* Rows [i0, i1) of C classes, float32, AVX-512: batches of up to
 * PYCE_SMALL_BATCH rows; a batch's groups first (gradient, s, x_y - m), then
 * its losses w log(s) - w (x_y - m) in double (small_row_loss), summed 16 rows
 * at a time from 0 and added to the total in row order. */
#define PYCE_SMALL_ROWS_F32_AVX512(NAME, GROUP, LANES, C, SM)                             \
    static double NAME##_c##C##_##SM(const pyce_ce_args *a, int64_t i0, int64_t i1)      \
    {                                                                                     \
        double total = 0.0;                                                               \
        const small_smooth smv = small_smooth_of(a);                                      \
        float *loss_out = (float *)a->loss;                                               \
        small_batch b __attribute__((aligned(64)));                                       \
        for (int64_t i = i0; i < i1; i += PYCE_SMALL_BATCH) {                             \
            const int nb = i1 - i < PYCE_SMALL_BATCH ? (int)(i1 - i) : PYCE_SMALL_BATCH;  \
            int j = 0;                                                                    \
            for (; j + 16 <= nb; j += 16)                                                 \
                GROUP(a, i + j, 16, C, 1, &b, j, SM, &smv);                               \
            if (j < nb) {                                                                 \
                GROUP(a, i + j, nb - j, C, 0, &b, j, SM, &smv);                           \
                j += 16;                                                                  \
            }                                                                             \
            PYCE_SMALL_BATCH_LOSSES(a, b, i, nb, j, loss_out, total, SM, smv);            \
        }                                                                                 \
        return total;                                                                     \
    }


/* Rows [i0, i1) of C classes: groups of LANES rows (a group also gets the
 * block's end row i1, see group_f64_avx2), their losses summed 16 rows at a
 * time from 0 and then added to the total, as the lanes paths do. */
#define PYCE_SMALL_ROWS(NAME, GROUP, LANES, C, SM)                                        \
    static double NAME##_c##C##_##SM(const pyce_ce_args *a, int64_t i0, int64_t i1)      \
    {                                                                                     \
        double total = 0.0;                                                               \
        const small_smooth smv = small_smooth_of(a);                                      \
        for (int64_t i = i0; i < i1; i += 16) {                                           \
            double lv[16];                                                                \
            const int n16 = i1 - i < 16 ? (int)(i1 - i) : 16;                             \
            for (int j = 0; j < n16; j += LANES) {                                        \
                if (n16 - j >= LANES)                                                     \
                    GROUP(a, i + j, LANES, i1, C, 1, lv + j, SM, &smv);                   \
                else                                                                      \
                    GROUP(a, i + j, n16 - j, i1, C, 0, lv + j, SM, &smv);                 \
            }                                                                             \
            total += small_sum_rows(lv, n16);                                             \
        }                                                                                 \
        return total;                                                                     \
    }

/* Every C from 1 to 16 for SM = 0 (no label smoothing) or 1 (small_smooth):
 * NAME_c<C>_<SM>.  The SM = 1 functions are instantiated after all SM = 0
 * ones, before the tables (PYCE_SMALL_TABLES, at the end of the x86 code), so
 * the plain case's functions stay together as they were before. */
#define PYCE_SMALL_ALL_C(NAME, GROUP, LANES, TGT, ROWS, SM)                                  \
    TGT ROWS(NAME, GROUP, LANES, 1, SM) TGT ROWS(NAME, GROUP, LANES, 2, SM)                  \
    TGT ROWS(NAME, GROUP, LANES, 3, SM) TGT ROWS(NAME, GROUP, LANES, 4, SM)                  \
    TGT ROWS(NAME, GROUP, LANES, 5, SM) TGT ROWS(NAME, GROUP, LANES, 6, SM)                  \
    TGT ROWS(NAME, GROUP, LANES, 7, SM) TGT ROWS(NAME, GROUP, LANES, 8, SM)                  \
    TGT ROWS(NAME, GROUP, LANES, 9, SM) TGT ROWS(NAME, GROUP, LANES, 10, SM)                 \
    TGT ROWS(NAME, GROUP, LANES, 11, SM) TGT ROWS(NAME, GROUP, LANES, 12, SM)                \
    TGT ROWS(NAME, GROUP, LANES, 13, SM) TGT ROWS(NAME, GROUP, LANES, 14, SM)                \
    TGT ROWS(NAME, GROUP, LANES, 15, SM) TGT ROWS(NAME, GROUP, LANES, 16, SM)
#define PYCE_SMALL_TABLE_ROW(NAME, SM)                                                      \
    {NULL, NAME##_c1_##SM, NAME##_c2_##SM, NAME##_c3_##SM, NAME##_c4_##SM, NAME##_c5_##SM, \
     NAME##_c6_##SM, NAME##_c7_##SM, NAME##_c8_##SM, NAME##_c9_##SM, NAME##_c10_##SM,      \
     NAME##_c11_##SM, NAME##_c12_##SM, NAME##_c13_##SM, NAME##_c14_##SM, NAME##_c15_##SM,  \
     NAME##_c16_##SM}
/* NAME_table[SM][C] */
#define PYCE_SMALL_TABLES(NAME)                                                             \
    static double (*const NAME##_table[2][17])(const pyce_ce_args *, int64_t, int64_t) = {   \
        PYCE_SMALL_TABLE_ROW(NAME, 0), PYCE_SMALL_TABLE_ROW(NAME, 1)};

PYCE_SMALL_ALL_C(f32_avx512, group_f32_avx512, 16, PYCE_TGT_AVX512, PYCE_SMALL_ROWS_F32_AVX512, 0)

/* ============================ AVX-512, float64 ============================ */

/* 8x8 transpose of doubles: out[k] lane r = in[r] lane k; inputs nin.. do
 * not matter, only outputs < nout are formed. */
PYCE_TGT_AVX512 PYCE_INL void tr8_pd(const __m512d *in, __m512d *out, const int nin, const int nout)
{
    __m512d t[8];
    for (int i = 0; i < 4; i++) {
        if (2 * i >= nin) {
            t[2 * i] = t[2 * i + 1] = in[0];
            continue;
        }
        const __m512d b = 2 * i + 1 < nin ? in[2 * i + 1] : in[2 * i];
        t[2 * i] = _mm512_unpacklo_pd(in[2 * i], b);      /* block b: column 2b, rows 2i, 2i+1 */
        t[2 * i + 1] = _mm512_unpackhi_pd(in[2 * i], b);  /* column 2b + 1 */
    }
    for (int j = 0; j < 2 && j < nout; j++) {
        const __m512d v88 = _mm512_shuffle_f64x2(t[j], t[2 + j], 0x88);
        const __m512d vdd = _mm512_shuffle_f64x2(t[j], t[2 + j], 0xdd);
        const __m512d w88 = _mm512_shuffle_f64x2(t[4 + j], t[6 + j], 0x88);
        const __m512d wdd = _mm512_shuffle_f64x2(t[4 + j], t[6 + j], 0xdd);
        out[j] = _mm512_shuffle_f64x2(v88, w88, 0x88);
        if (2 + j < nout)
            out[2 + j] = _mm512_shuffle_f64x2(vdd, wdd, 0x88);
        if (4 + j < nout)
            out[4 + j] = _mm512_shuffle_f64x2(v88, w88, 0xdd);
        if (6 + j < nout)
            out[6 + j] = _mm512_shuffle_f64x2(vdd, wdd, 0xdd);
    }
}

/* small_prep for 8 whole rows without weights or grad_output, vectorized. */
PYCE_TGT_AVX512 PYCE_INL void small_prep_plain8(const pyce_ce_args *a, int64_t i0, small_rows *p)
{
    const __m512i t0 = _mm512_loadu_si512((const void *)(a->target + i0));
    const __mmask8 live = _mm512_cmpneq_epi64_mask(t0, _mm512_set1_epi64(a->ignore_index));
    _mm256_storeu_si256((__m256i *)p->y,
                        _mm256_mask_mov_epi32(_mm256_set1_epi32(-1), live, _mm512_cvtepi64_epi32(t0)));
    _mm512_storeu_pd(p->w, _mm512_maskz_mov_pd(live, _mm512_set1_pd(1.0)));
    _mm512_storeu_pd(p->g, _mm512_maskz_mov_pd(live, _mm512_set1_pd(a->grad_scale)));
    p->live = live;
}

/* Classes 8 .. 8+t-1 of a row (1 <= t <= 8, a constant), masked by m: a
 * 128- or 256-bit access when that covers them (C = 9-12), rather than a
 * 512-bit one reaching 48 or 32 bytes into the next row.  At 1024 x 10
 * (fused, one thread, the two forms switched at run time in one process,
 * 2026-12-03) 9.6-9.7 -> 8.8-9.2 us; at 262144 x 10 within the noise. */
PYCE_TGT_AVX512 PYCE_INL __m512d tail_load_pd(const __mmask8 m, const double *p, const int t)
{
    if (t <= 2)
        return _mm512_zextpd128_pd512(_mm_maskz_loadu_pd(m, p));
    if (t <= 4)
        return _mm512_zextpd256_pd512(_mm256_maskz_loadu_pd(m, p));
    return _mm512_maskz_loadu_pd(m, p);
}

PYCE_TGT_AVX512 PYCE_INL void tail_store_pd(const __mmask8 m, double *p, const __m512d v, const int t)
{
    if (t <= 2)
        _mm_mask_storeu_pd(p, m, _mm512_castpd512_pd128(v));
    else if (t <= 4)
        _mm256_mask_storeu_pd(p, m, _mm512_castpd512_pd256(v));
    else
        _mm512_mask_storeu_pd(p, m, v);
}

/* Rows i0 .. i0+nrows-1 (nrows <= 8; full: nrows == 8, a constant) with C
 * classes, float64; returns their loss sum. */
PYCE_TGT_AVX512 PYCE_INL void group_f64_avx512(const pyce_ce_args *a, int64_t i0, int nrows,
                                               int64_t iend, const int C, const int full,
                                               double *lv, const int sm, const small_smooth *smv)
{
    (void)iend;  /* masked loads and stores: no access past the group's rows */
    enum { L = 8 };
    const int64_t sx = a->x_sn, sg = a->g_sn;
    const double *x = (const double *)a->x + i0 * sx;
    double *grad = a->grad ? (double *)a->grad + i0 * sg : NULL;
    const __mmask8 cm0 = (__mmask8)(C >= 8 ? 0xffu : (1u << C) - 1u);
    const __mmask8 cm1 = (__mmask8)(C > 8 ? (1u << (C - 8)) - 1u : 0u);
    small_rows p;
    if (full)
        nrows = L;
    if (full && !a->class_weight && !a->sample_weight && !a->grad_output)
        small_prep_plain8(a, i0, &p);
    else
        small_prep(a, i0, nrows, L, &p);

    __m512d R[16], V[16], E[16];
    for (int r = 0; r < L; r++) {
        const double *xr = x + (r < nrows ? r : 0) * sx;
        R[r] = _mm512_maskz_loadu_pd(r < nrows ? cm0 : 0, xr);
        if (C > 8)
            R[8 + r] = tail_load_pd(r < nrows ? cm1 : 0, xr + 8, C - 8);
    }
    tr8_pd(R, V, L, C < 8 ? C : 8);
    if (C > 8)
        tr8_pd(R + 8, V + 8, L, C - 8);

    __m512d m = V[0];
    for (int k = 1; k < C; k++)
        m = _mm512_max_pd(V[k], m);   /* V[k] > m ? V[k] : m, as lanes_load_max */

    /* the float32 group's steps in double: exp(x - m) in registers, x_y and
     * e_y picked by compare masks, so = the row sum without the target term,
     * class by class */
    const __m256i yv = _mm256_loadu_si256((const __m256i *)p.y);
    const __mmask8 live = (__mmask8)p.live;
    __mmask8 nt[16];   /* lane r: row r computed and k != y_r */
    __m512d xy = _mm512_setzero_pd(), ey = _mm512_setzero_pd(), so = _mm512_setzero_pd();
    __m512d sd = _mm512_setzero_pd();   /* label smoothing: sum_k (x_k - m) */
    for (int k = 0; k < C; k++) {
        const __m512d dk = _mm512_sub_pd(V[k], m);
        if (sm)
            sd = _mm512_add_pd(sd, dk);
        E[k] = pyce_expneg_f64x8(dk);
        const __mmask8 is_y = _mm256_cmpeq_epi32_mask(yv, _mm256_set1_epi32(k));
        nt[k] = _mm256_mask_cmpneq_epi32_mask(live, yv, _mm256_set1_epi32(k));
        xy = _mm512_mask_mov_pd(xy, is_y, V[k]);
        ey = _mm512_mask_mov_pd(ey, is_y, E[k]);
        so = _mm512_mask_add_pd(so, nt[k], so, E[k]);
    }

    /* log(s) = log1p((e_y - 1) + so), as in float32: a confident row's small
     * loss keeps its relative accuracy */
    double lsv[8], mv[8], xyv[8], sdv[8], lossv[8];
    _mm512_storeu_pd(lsv, pyce_log1p_f64x8(_mm512_add_pd(_mm512_sub_pd(ey, _mm512_set1_pd(1.0)), so)));
    _mm512_storeu_pd(mv, m);
    _mm512_storeu_pd(xyv, xy);
    if (sm) {
        _mm512_storeu_pd(sdv, sd);
        for (int r = 0; r < L; r++)
            lossv[r] = small_row_loss_smooth(p.y[r] >= 0, p.w[r], smv, lsv[r], xyv[r] - mv[r], sdv[r]);
    } else {
#pragma omp simd
        for (int r = 0; r < L; r++)
            lossv[r] = small_row_loss(p.y[r] >= 0, p.w[r], lsv[r], xyv[r] - mv[r]);
    }

    if (grad) {
        /* one division per row: q = g/s; p_k = q e_k; the target entry -q so
         * (label smoothing: p_k q - b, the target entry fix) */
        __m512d q, fix;
        if (sm) {
            __m512d bs;
            small_row_grad_coefs_smooth_f64x8(_mm512_loadu_pd(p.g), _mm512_add_pd(so, ey), so, ey,
                                              live, smv, &q, &bs, &fix);
            for (int k = 0; k < C; k++)
                V[k] = _mm512_mask_mov_pd(fix, nt[k], _mm512_fmsub_pd(E[k], q, bs));
        } else {
            small_row_grad_coefs_f64x8(_mm512_loadu_pd(p.g), _mm512_add_pd(so, ey), so, live, &q,
                                       &fix);
            for (int k = 0; k < C; k++)
                V[k] = _mm512_mask_mul_pd(fix, nt[k], E[k], q);
        }
        tr8_pd(V, R, C < 8 ? C : 8, L);
        if (C > 8)
            tr8_pd(V + 8, R + 8, C - 8, L);
        for (int r = 0; r < L; r++) {
            double *gr = grad + (r < nrows ? r : 0) * sg;
            _mm512_mask_storeu_pd(gr, r < nrows ? cm0 : 0, R[r]);
            if (C > 8)
                tail_store_pd(r < nrows ? cm1 : 0, gr + 8, R[8 + r], C - 8);
        }
    }
    double *loss_out = (double *)a->loss;
    for (int r = 0; r < nrows; r++) {
        if (loss_out)
            loss_out[i0 + r] = lossv[r];
        lv[r] = lossv[r];
    }
}

PYCE_SMALL_ALL_C(f64_avx512, group_f64_avx512, 8, PYCE_TGT_AVX512, PYCE_SMALL_ROWS, 0)

/* ============================== AVX2, float32 ============================== */

/* 8x8 transpose of out[k] lane r = in[r] lane k (unpcklps, shufps, vperm2f128);
 * inputs nin.. do not matter, only outputs < nout are formed. */
PYCE_TGT_AVX2 PYCE_INL void tr8_ps(const __m256 *in, __m256 *out, const int nin, const int nout)
{
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        if (2 * i >= nin) {
            t[2 * i] = t[2 * i + 1] = in[0];
            continue;
        }
        const __m256 b = 2 * i + 1 < nin ? in[2 * i + 1] : in[2 * i];
        t[2 * i] = _mm256_unpacklo_ps(in[2 * i], b);
        t[2 * i + 1] = _mm256_unpackhi_ps(in[2 * i], b);
    }
    /* u[4h + j], 128-bit half b: column 4b + j of rows 4h .. 4h+3 */
    for (int h = 0; h < 2; h++) {
        if (4 * h >= nin) {
            u[4 * h] = u[4 * h + 1] = u[4 * h + 2] = u[4 * h + 3] = t[0];
            continue;
        }
        u[4 * h] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
        u[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xee);
        u[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
        u[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xee);
    }
    for (int j = 0; j < 4 && j < nout; j++) {
        out[j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x20);
        if (4 + j < nout)
            out[4 + j] = _mm256_permute2f128_ps(u[j], u[4 + j], 0x31);
    }
}

/* Rows i0 .. i0+nrows-1 (nrows <= 8) with C classes, rows of the block end
 * before row iend; returns their loss sum.  Each row is loaded as 8 or 16
 * floats from its start: a group whose loads would pass the block's last row,
 * or a partial group, is copied to a stack buffer first (no masked loads or
 * stores: vmaskmovps is microcoded on AMD). */
PYCE_TGT_AVX2 PYCE_INL void group_f32_avx2(const pyce_ce_args *a, int64_t i0, int nrows,
                                           int64_t iend, const int C, small_batch *b, int j,
                                           const int sm, const small_smooth *smv)
{
    enum { L = 8 };
    const int W = C <= 8 ? 8 : 16;        /* floats loaded and stored per row */
    const int64_t sx0 = a->x_sn, sg0 = a->g_sn;
    float *grad0 = a->grad ? (float *)a->grad + i0 * sg0 : NULL;
    const float *x = (const float *)a->x + i0 * sx0;
    int64_t sx = sx0;
    float xb[8 * 16] __attribute__((aligned(32)));
    float gb[8 * 16] __attribute__((aligned(32)));
    const int direct = nrows == L && (i0 + L - 1) * sx0 + W <= (iend - 1) * sx0 + C;
    if (!direct) {
        memset(xb, 0, sizeof xb);
        for (int r = 0; r < nrows; r++)
            memcpy(xb + 16 * r, x + r * sx0, (size_t)C * sizeof(float));
        x = xb;
        sx = 16;
    }
    small_rows p;
    small_prep(a, i0, nrows, L, &p);

    __m256 R[16], V[16], E[16];
    for (int r = 0; r < L; r++) {
        R[r] = _mm256_loadu_ps(x + r * sx);
        if (W == 16)
            R[8 + r] = _mm256_loadu_ps(x + r * sx + 8);
    }
    tr8_ps(R, V, L, C < 8 ? C : 8);
    if (C > 8)
        tr8_ps(R + 8, V + 8, L, C - 8);

    __m256 m = V[0];
    for (int k = 1; k < C; k++)
        m = _mm256_max_ps(V[k], m);
    __m256 sd = _mm256_setzero_ps();   /* label smoothing: sum_k (x_k - m) */
    for (int k = 0; k < C; k++) {
        const __m256 dk = _mm256_sub_ps(V[k], m);
        if (sm)
            sd = _mm256_add_ps(sd, dk);
        E[k] = pyce_expneg_f32x8(dk);
    }

    /* as the AVX-512 path: x_y and e_y by compare masks, so = the sum of the
     * other classes' exps in float32, s = so + e_y, log(s) = log1p((e_y - 1)
     * + so) for the batch, one division per row */
    const __m256i yv = _mm256_loadu_si256((const __m256i *)p.y);
    const __m256 live = _mm256_castsi256_ps(_mm256_cmpgt_epi32(yv, _mm256_set1_epi32(-1)));
    __m256 mk[16];
    __m256 xy = _mm256_setzero_ps(), ey = _mm256_setzero_ps(), so = _mm256_setzero_ps();
    for (int k = 0; k < C; k++) {
        mk[k] = _mm256_castsi256_ps(_mm256_cmpeq_epi32(yv, _mm256_set1_epi32(k)));
        xy = _mm256_blendv_ps(xy, V[k], mk[k]);
        ey = _mm256_blendv_ps(ey, E[k], mk[k]);
        so = _mm256_add_ps(so, _mm256_andnot_ps(mk[k], E[k]));
    }
    const __m256 s = _mm256_add_ps(so, ey);
    _mm256_store_ps(b->ls + j, pyce_log1p_f32x8(_mm256_add_ps(_mm256_sub_ps(ey, _mm256_set1_ps(1.0f)), so)));
    _mm256_store_ps(b->xy + j, xy);
    _mm256_store_ps(b->m + j, m);
    _mm256_store_pd(b->w + j, _mm256_loadu_pd(p.w));
    _mm256_store_pd(b->w + j + 4, _mm256_loadu_pd(p.w + 4));
    _mm256_store_si256((__m256i *)(b->y + j), yv);
    if (sm) {
        /* as the AVX-512 path: rows whose float32 sum is not finite again in double */
        _mm256_store_pd(b->sd + j, _mm256_cvtps_pd(_mm256_castps256_ps128(sd)));
        _mm256_store_pd(b->sd + j + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(sd, 1)));
        const unsigned wide = (unsigned)_mm256_movemask_ps(
            _mm256_and_ps(live, _mm256_cmp_ps(sd, _mm256_set1_ps(-FLT_MAX), _CMP_NGE_UQ)));
        if (wide)
            small_sd_rows_f32(x, sx, C, b->m + j, wide, b->sd + j);
    }

    if (grad0) {
        const __m256 gv = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(_mm256_loadu_pd(p.g))),
                                               _mm256_cvtpd_ps(_mm256_loadu_pd(p.g + 4)), 1);
        __m256 q, fix;
        if (sm) {
            /* label smoothing: p_k q - b, the target entry fix */
            __m256 bs;
            small_row_grad_coefs_smooth_f32x8(gv, s, so, ey, live, smv, &q, &bs, &fix);
            for (int k = 0; k < C; k++)
                V[k] = _mm256_blendv_ps(_mm256_and_ps(_mm256_fmsub_ps(E[k], q, bs), live), fix, mk[k]);
        } else {
            small_row_grad_coefs_f32x8(gv, s, so, live, &q, &fix);
            for (int k = 0; k < C; k++)
                V[k] = _mm256_blendv_ps(_mm256_and_ps(_mm256_mul_ps(E[k], q), live), fix, mk[k]);
        }
        for (int k = C; k < 16; k++)
            V[k] = V[0];
        tr8_ps(V, R, C < 8 ? C : 8, L);
        if (C > 8)
            tr8_ps(V + 8, R + 8, C - 8, L);
        /* in order, so a row's spill into the next row is overwritten by that
         * row; rows whose W floats pass the group's last row, or would spill
         * into the caller's memory between strided gradient rows, go through
         * tmp */
        const int64_t sg = direct ? sg0 : 16;
        float *g = direct ? grad0 : gb;
        const int spill_ok = !direct || sg0 == C || W <= C;
        for (int r = 0; r < L; r++) {
            if (spill_ok && (!direct || r * sg + W <= (L - 1) * sg + C)) {
                _mm256_storeu_ps(g + r * sg, R[r]);
                if (W == 16)
                    _mm256_storeu_ps(g + r * sg + 8, R[8 + r]);
            } else {
                float tmp[16];
                _mm256_storeu_ps(tmp, R[r]);
                if (W == 16)
                    _mm256_storeu_ps(tmp + 8, R[8 + r]);
                memcpy(g + r * sg, tmp, (size_t)C * sizeof(float));
            }
        }
        if (!direct)
            for (int r = 0; r < nrows; r++)
                memcpy(grad0 + r * sg0, gb + 16 * r, (size_t)C * sizeof(float));
    }
}

/* Rows [i0, i1), float32, AVX2: batches as f32_avx512 (groups of 8 rows; a
 * group also needs the block's end row, see group_f32_avx2). */
#define PYCE_SMALL_ROWS_END(NAME, GROUP, LANES, C, SM)                                    \
    static double NAME##_c##C##_##SM(const pyce_ce_args *a, int64_t i0, int64_t i1)      \
    {                                                                                     \
        double total = 0.0;                                                               \
        const small_smooth smv = small_smooth_of(a);                                      \
        float *loss_out = (float *)a->loss;                                               \
        small_batch b __attribute__((aligned(64)));                                       \
        for (int64_t i = i0; i < i1; i += PYCE_SMALL_BATCH) {                             \
            const int nb = i1 - i < PYCE_SMALL_BATCH ? (int)(i1 - i) : PYCE_SMALL_BATCH;  \
            int j = 0;                                                                    \
            for (; j < nb; j += 8)                                                        \
                GROUP(a, i + j, nb - j < 8 ? nb - j : 8, i1, C, &b, j, SM, &smv);         \
            PYCE_SMALL_BATCH_LOSSES(a, b, i, nb, j, loss_out, total, SM, smv);            \
        }                                                                                 \
        return total;                                                                     \
    }

PYCE_SMALL_ALL_C(f32_avx2, group_f32_avx2, 8, PYCE_TGT_AVX2, PYCE_SMALL_ROWS_END, 0)

/* ============================== AVX2, float64 ============================== */

/* 4x4 transpose of doubles: out[k] lane r = in[r] lane k (unpcklpd/unpckhpd,
 * vperm2f128); inputs nin.. do not matter, only outputs < nout are formed. */
PYCE_TGT_AVX2 PYCE_INL void tr4_pd(const __m256d *in, __m256d *out, const int nin, const int nout)
{
    const __m256d i1 = nin > 1 ? in[1] : in[0], i2 = nin > 2 ? in[2] : in[0];
    const __m256d i3 = nin > 3 ? in[3] : in[0];
    const __m256d t0 = _mm256_unpacklo_pd(in[0], i1);   /* [r0 c0, r1 c0 | r0 c2, r1 c2] */
    const __m256d t1 = _mm256_unpackhi_pd(in[0], i1);   /* [r0 c1, r1 c1 | r0 c3, r1 c3] */
    const __m256d t2 = _mm256_unpacklo_pd(i2, i3);
    const __m256d t3 = _mm256_unpackhi_pd(i2, i3);
    out[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    if (nout > 1)
        out[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    if (nout > 2)
        out[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    if (nout > 3)
        out[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}

/* small_prep for 4 whole rows without weights or grad_output, vectorized. */
PYCE_TGT_AVX2 PYCE_INL void small_prep_plain4(const pyce_ce_args *a, int64_t i0, small_rows *p)
{
    const __m256i t = _mm256_loadu_si256((const __m256i *)(a->target + i0));
    const __m256i ign = _mm256_cmpeq_epi64(t, _mm256_set1_epi64x(a->ignore_index));
    /* y (int32, -1 when ignored): the low halves of the int64 lanes */
    const __m256i y = _mm256_or_si256(t, ign);
    const __m256i lo = _mm256_permutevar8x32_epi32(y, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6));
    _mm_storeu_si128((__m128i *)p->y, _mm256_castsi256_si128(lo));
    const __m256d keep = _mm256_castsi256_pd(_mm256_xor_si256(ign, _mm256_set1_epi64x(-1)));
    _mm256_storeu_pd(p->w, _mm256_and_pd(keep, _mm256_set1_pd(1.0)));
    _mm256_storeu_pd(p->g, _mm256_and_pd(keep, _mm256_set1_pd(a->grad_scale)));
    p->live = (uint32_t)_mm256_movemask_pd(keep);
}

/* Rows i0 .. i0+nrows-1 (nrows <= 4) with C classes, rows of the block end
 * before row iend: the float32 AVX2 group's steps in double, 4 rows a group
 * (one per 64-bit lane), each row loaded and stored as 4, 8, 12 or 16 doubles
 * from its start; a group whose loads would pass the block's last row, or a
 * partial group, goes through a stack buffer (no vmaskmovpd: microcoded on
 * AMD).  exp and log1p: pyce_expneg_f64x4 / pyce_log1p_f64x4, the values of
 * the AVX-512 path's x8 forms. */
PYCE_TGT_AVX2 PYCE_INL void group_f64_avx2(const pyce_ce_args *a, int64_t i0, int nrows,
                                           int64_t iend, const int C, const int full,
                                           double *lv, const int sm, const small_smooth *smv)
{
    enum { L = 4 };
    const int NQ = (C + 3) / 4, W = 4 * NQ;   /* doubles loaded and stored per row */
    const int64_t sx0 = a->x_sn, sg0 = a->g_sn;
    double *grad0 = a->grad ? (double *)a->grad + i0 * sg0 : NULL;
    const double *x = (const double *)a->x + i0 * sx0;
    int64_t sx = sx0;
    double xb[4 * 16] __attribute__((aligned(32)));
    double gb[4 * 16] __attribute__((aligned(32)));
    if (full)
        nrows = L;
    const int direct = nrows == L && (i0 + L - 1) * sx0 + W <= (iend - 1) * sx0 + C;
    if (!direct) {
        memset(xb, 0, sizeof xb);
        for (int r = 0; r < nrows; r++)
            memcpy(xb + 16 * r, x + r * sx0, (size_t)C * sizeof(double));
        x = xb;
        sx = 16;
    }
    small_rows p;
    if (full && !a->class_weight && !a->sample_weight && !a->grad_output)
        small_prep_plain4(a, i0, &p);
    else
        small_prep(a, i0, nrows, L, &p);

    __m256d R[16], V[16], E[16];
    for (int q = 0; q < NQ; q++) {
        for (int r = 0; r < L; r++)
            R[4 * q + r] = _mm256_loadu_pd(x + r * sx + 4 * q);
        tr4_pd(R + 4 * q, V + 4 * q, L, C - 4 * q < 4 ? C - 4 * q : 4);
    }

    __m256d m = V[0];
    for (int k = 1; k < C; k++)
        m = _mm256_max_pd(V[k], m);   /* V[k] > m ? V[k] : m, as lanes_load_max */
    __m256d sd = _mm256_setzero_pd();   /* label smoothing: sum_k (x_k - m) */
    for (int k = 0; k < C; k++) {
        const __m256d dk = _mm256_sub_pd(V[k], m);
        if (sm)
            sd = _mm256_add_pd(sd, dk);
        E[k] = pyce_expneg_f64x4(dk);
    }

    const __m256i yv = _mm256_cvtepi32_epi64(_mm_loadu_si128((const __m128i *)p.y));
    const __m256d live = _mm256_castsi256_pd(_mm256_cmpgt_epi64(yv, _mm256_set1_epi64x(-1)));
    __m256d mk[16];
    __m256d xy = _mm256_setzero_pd(), ey = _mm256_setzero_pd(), so = _mm256_setzero_pd();
    for (int k = 0; k < C; k++) {
        mk[k] = _mm256_castsi256_pd(_mm256_cmpeq_epi64(yv, _mm256_set1_epi64x(k)));
        xy = _mm256_blendv_pd(xy, V[k], mk[k]);
        ey = _mm256_blendv_pd(ey, E[k], mk[k]);
        so = _mm256_add_pd(so, _mm256_andnot_pd(mk[k], E[k]));
    }
    double lsv[4], mv[4], xyv[4], sdv[4], lossv[4];
    _mm256_storeu_pd(lsv, pyce_log1p_f64x4(_mm256_add_pd(_mm256_sub_pd(ey, _mm256_set1_pd(1.0)), so)));
    _mm256_storeu_pd(mv, m);
    _mm256_storeu_pd(xyv, xy);
    _mm256_storeu_pd(sdv, sd);
    for (int r = 0; r < L; r++)
        lossv[r] = sm ? small_row_loss_smooth(p.y[r] >= 0, p.w[r], smv, lsv[r], xyv[r] - mv[r], sdv[r])
                      : small_row_loss(p.y[r] >= 0, p.w[r], lsv[r], xyv[r] - mv[r]);

    if (grad0) {
        __m256d q, fix;
        if (sm) {
            /* label smoothing: p_k q - b, the target entry fix */
            __m256d bs;
            small_row_grad_coefs_smooth_f64x4(_mm256_loadu_pd(p.g), _mm256_add_pd(so, ey), so, ey,
                                              live, smv, &q, &bs, &fix);
            for (int k = 0; k < C; k++)
                V[k] = _mm256_blendv_pd(_mm256_and_pd(_mm256_fmsub_pd(E[k], q, bs), live), fix, mk[k]);
        } else {
            small_row_grad_coefs_f64x4(_mm256_loadu_pd(p.g), _mm256_add_pd(so, ey), so, live, &q,
                                       &fix);
            for (int k = 0; k < C; k++)
                V[k] = _mm256_blendv_pd(_mm256_and_pd(_mm256_mul_pd(E[k], q), live), fix, mk[k]);
        }
        for (int q4 = 0; q4 < NQ; q4++)
            tr4_pd(V + 4 * q4, R + 4 * q4, C - 4 * q4 < 4 ? C - 4 * q4 : 4, L);
        /* as the float32 group: in order, spills only into the next row */
        const int64_t sg = direct ? sg0 : 16;
        double *g = direct ? grad0 : gb;
        const int spill_ok = !direct || sg0 == C || W <= C;
        for (int r = 0; r < L; r++) {
            if (spill_ok && (!direct || r * sg + W <= (L - 1) * sg + C)) {
                for (int q4 = 0; q4 < NQ; q4++)
                    _mm256_storeu_pd(g + r * sg + 4 * q4, R[4 * q4 + r]);
            } else {
                double tmp[16];
                for (int q4 = 0; q4 < NQ; q4++)
                    _mm256_storeu_pd(tmp + 4 * q4, R[4 * q4 + r]);
                memcpy(g + r * sg, tmp, (size_t)C * sizeof(double));
            }
        }
        if (!direct)
            for (int r = 0; r < nrows; r++)
                memcpy(grad0 + r * sg0, gb + 16 * r, (size_t)C * sizeof(double));
    }
    double *loss_out = (double *)a->loss;
    for (int r = 0; r < nrows; r++) {
        if (loss_out)
            loss_out[i0 + r] = lossv[r];
        lv[r] = lossv[r];
    }
}

PYCE_SMALL_ALL_C(f64_avx2, group_f64_avx2, 4, PYCE_TGT_AVX2, PYCE_SMALL_ROWS, 0)

/* The label-smoothing functions (SM = 1) after every plain one, then the tables. */
PYCE_SMALL_ALL_C(f32_avx512, group_f32_avx512, 16, PYCE_TGT_AVX512, PYCE_SMALL_ROWS_F32_AVX512, 1)
PYCE_SMALL_ALL_C(f64_avx512, group_f64_avx512, 8, PYCE_TGT_AVX512, PYCE_SMALL_ROWS, 1)
PYCE_SMALL_ALL_C(f32_avx2, group_f32_avx2, 8, PYCE_TGT_AVX2, PYCE_SMALL_ROWS_END, 1)
PYCE_SMALL_ALL_C(f64_avx2, group_f64_avx2, 4, PYCE_TGT_AVX2, PYCE_SMALL_ROWS, 1)
PYCE_SMALL_TABLES(f32_avx512)
PYCE_SMALL_TABLES(f64_avx512)
PYCE_SMALL_TABLES(f32_avx2)
PYCE_SMALL_TABLES(f64_avx2)

static int have_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static int have_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

#endif /* PYCE_SMALL_X86 */

/* The vector exp and log1p of the few-class paths (pyce_exp.h) on arrays, for tests/loss/test_exp.py: return 0, touching
 * nothing, on CPUs without the ISA (or builds without the x86 paths). */
#if PYCE_SMALL_X86
PYCE_TGT_AVX512 static void x16_array(const float *x, float *out, int64_t n, int log)
{
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        const __m512 v = _mm512_maskz_loadu_ps(k, x + i);
        _mm512_mask_storeu_ps(out + i, k, log ? pyce_log1p_f32x16(v) : pyce_expneg_f32x16(v));
    }
}

PYCE_TGT_AVX2 static void x8_array(const float *x, float *out, int64_t n, int log)
{
    for (int64_t i = 0; i < n; i += 8) {
        float in[8] = {0}, res[8];
        const int m = n - i >= 8 ? 8 : (int)(n - i);
        memcpy(in, x + i, (size_t)m * sizeof(float));
        const __m256 v = _mm256_loadu_ps(in);
        _mm256_storeu_ps(res, log ? pyce_log1p_f32x8(v) : pyce_expneg_f32x8(v));
        memcpy(out + i, res, (size_t)m * sizeof(float));
    }
}

PYCE_TGT_AVX512 static void x8d_array(const double *x, double *out, int64_t n, int log)
{
    for (int64_t i = 0; i < n; i += 8) {
        const __mmask8 k = n - i >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (n - i)) - 1u);
        const __m512d v = _mm512_maskz_loadu_pd(k, x + i);
        _mm512_mask_storeu_pd(out + i, k, log ? pyce_log1p_f64x8(v) : pyce_expneg_f64x8(v));
    }
}

PYCE_TGT_AVX2 static void x4d_array(const double *x, double *out, int64_t n, int log)
{
    for (int64_t i = 0; i < n; i += 4) {
        double in[4] = {0}, res[4];
        const int m = n - i >= 4 ? 4 : (int)(n - i);
        memcpy(in, x + i, (size_t)m * sizeof(double));
        const __m256d v = _mm256_loadu_pd(in);
        _mm256_storeu_pd(res, log ? pyce_log1p_f64x4(v) : pyce_expneg_f64x4(v));
        memcpy(out + i, res, (size_t)m * sizeof(double));
    }
}
#endif

enum { FORM_F32X8, FORM_F32X16, FORM_F64X8, FORM_F64X4 };

/* One of the wrappers below: a form (float32 AVX2, float32 AVX-512, float64
 * AVX-512, float64 AVX2), exp or log1p; 0, touching nothing, without the
 * form's ISA. */
static int vector_array(int form, int log, const void *x, void *out, int64_t n)
{
#if PYCE_SMALL_X86
    const int avx2 = form == FORM_F32X8 || form == FORM_F64X4;
    if (avx2 ? have_avx2() : have_avx512()) {
        if (form == FORM_F32X16)
            x16_array((const float *)x, (float *)out, n, log);
        else if (form == FORM_F32X8)
            x8_array((const float *)x, (float *)out, n, log);
        else if (form == FORM_F64X8)
            x8d_array((const double *)x, (double *)out, n, log);
        else
            x4d_array((const double *)x, (double *)out, n, log);
        return 1;
    }
#endif
    (void)form; (void)log; (void)x; (void)out; (void)n;
    return 0;
}

int pyce_expneg_x16_array_f32(const float *x, float *out, int64_t n)
{
    return vector_array(FORM_F32X16, 0, x, out, n);
}

int pyce_log1p_x16_array_f32(const float *x, float *out, int64_t n)
{
    return vector_array(FORM_F32X16, 1, x, out, n);
}

int pyce_expneg_x8_array_f32(const float *x, float *out, int64_t n)
{
    return vector_array(FORM_F32X8, 0, x, out, n);
}

int pyce_log1p_x8_array_f32(const float *x, float *out, int64_t n)
{
    return vector_array(FORM_F32X8, 1, x, out, n);
}

int pyce_expneg_x8_array_f64(const double *x, double *out, int64_t n)
{
    return vector_array(FORM_F64X8, 0, x, out, n);
}

int pyce_log1p_x8_array_f64(const double *x, double *out, int64_t n)
{
    return vector_array(FORM_F64X8, 1, x, out, n);
}

int pyce_expneg_x4_array_f64(const double *x, double *out, int64_t n)
{
    return vector_array(FORM_F64X4, 0, x, out, n);
}

int pyce_log1p_x4_array_f64(const double *x, double *out, int64_t n)
{
    return vector_array(FORM_F64X4, 1, x, out, n);
}

/* PYCE_SMALL_ISA=none|avx2|avx512 caps the choice (tests, benchmarks); none
 * also turns the online path of pyce_ce_online.c off. */
#if defined(__GNUC__) || defined(__clang__)
#define PYCE_LOAD_RELAXED(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define PYCE_STORE_RELAXED(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#else
#define PYCE_LOAD_RELAXED(p) (*(p))
#define PYCE_STORE_RELAXED(p, v) (*(p) = (v))
#endif

static int small_isa_cap(void)
{
    static int cap = -1;   /* every thread that reads -1 computes the same value */
    int c = PYCE_LOAD_RELAXED(&cap);
    if (c < 0) {
        const char *e = getenv("PYCE_SMALL_ISA");
        c = 2;
        if (e && strcmp(e, "none") == 0)
            c = 0;
        else if (e && strcmp(e, "avx2") == 0)
            c = 1;
        PYCE_STORE_RELAXED(&cap, c);
    }
    return c;
}

int pyce_fast_paths_enabled(void)
{
    return small_isa_cap() != 0;
}

static int small_isa(void)
{
#if PYCE_SMALL_X86
    const int cap = small_isa_cap();
    if (cap >= 2 && have_avx512())
        return 2;
    if (cap >= 1 && have_avx2())
        return 1;
#endif
    return 0;
}

const char *pyce_ce_small_isa(void)
{
    switch (small_isa()) {
    case 2: return "avx512";
    case 1: return "avx2";
    default: return "none";
    }
}

int pyce_ce_small_f32(const pyce_ce_args *a, int64_t i0, int64_t i1, double *loss_sum)
{
    if (!small_handles(a) || i1 <= i0 || !small_grad_in_range(a, i0, i1, FLT_MAX))
        return 0;
    (void)loss_sum;  /* unused without an x86 path */
#if PYCE_SMALL_X86
    if (small_isa() == 2) {
        *loss_sum = f32_avx512_table[a->label_smoothing > 0.0][a->c](a, i0, i1);
        return 1;
    }
    if (small_isa() == 1) {
        *loss_sum = f32_avx2_table[a->label_smoothing > 0.0][a->c](a, i0, i1);
        return 1;
    }
#endif
    return 0;
}

int pyce_ce_small_f64(const pyce_ce_args *a, int64_t i0, int64_t i1, double *loss_sum)
{
    if (!small_handles(a) || i1 <= i0 || !small_grad_in_range(a, i0, i1, DBL_MAX))
        return 0;
    (void)loss_sum;  /* unused without an x86 path */
#if PYCE_SMALL_X86
    if (small_isa() == 2) {
        *loss_sum = f64_avx512_table[a->label_smoothing > 0.0][a->c](a, i0, i1);
        return 1;
    }
    if (small_isa() == 1) {
        *loss_sum = f64_avx2_table[a->label_smoothing > 0.0][a->c](a, i0, i1);
        return 1;
    }
#endif
    return 0;
}
