/*
 * pyce kernels: fused, numerically stable softmax cross-entropy.
 *
 * Per row x (c logits), with target class y, class weights w (or 1),
 * sample weight v (or 1), label smoothing eps and z-loss coefficient z:
 *
 *   1. m   = max_k x_k                      one read sweep
 *   2. e_k = exp(x_k - m), s = sum_k e_k    e_k written into the gradient
 *                                           row while the row is in cache;
 *                                           s accumulated in double
 *   3. ls  = log(s);  log p_k = (x_k - m) - ls   (this order: x_k - m is
 *      exact-ish and <= 0, subtracting ls last never cancels large terms)
 *      loss = v * [ (1-eps) w_y (-log p_y)
 *                   + eps/c * sum_k w_k (-log p_k)  + z * lse^2 ],
 *      lse = m + ls
 *   4. grad_k = g v [ p_k ((1-eps) w_y + eps/c sum_j w_j + 2 z lse)
 *                     - (1-eps) w_y [k == y] - eps/c w_k ]
 *      one scaling sweep over the cached row; g is the upstream gradient
 *      (grad_output/denominator for 'mean', by IEEE division: cext/_ce.pyx
 *      owns that rule).  The target entry is recomputed in double as
 *      -(s - e_y)/s-style difference so p_y ~ 1 does not cancel.
 *
 * Probability targets t: q_k = (1-eps) t_k + eps/c, a_k = w_k q_k,
 *   loss = v [ sum_k a_k (-log p_k) + z lse^2 ]  (terms with a_k = 0 skipped,
 *   so -inf logits of classes with no mass do not give 0 * inf = NaN),
 *   grad_k = g v [ p_k (sum_j a_j + 2 z lse) - a_k ].
 *
 * Precision: float input is read and written as float; the exp is computed
 * in float (pyce_exp.h, <= 2 ulp); m, s, log(s), the loss and every row and
 * batch sum are in double.  double input is double throughout.
 *
 * Edge values: NaN anywhere in a row makes that row's loss and gradient NaN
 * (through s) and leaves other rows alone; -inf logits get p = 0; a row of
 * +-1e30 logits is finite because only x - m is exponentiated.
 *
 * Layout: this file holds the constants, the thread count (choose_threads),
 * the per-row rules every path calls (pyce_* helpers below), the float and
 * double instantiations of pyce_loss_template.h (row path, lanes paths,
 * softmax), the target scan, the test wrappers of the exp and build facts.
 */
#include "pyce_loss_kernels.h"
#include "pyce_exp.h"
#include "pyce_dispatch.h"
#include "pyce_ce_small.h"   /* the C <= 16 and huge-row fast paths */

#include <float.h>
#include <math.h>
#include <stddef.h>

#ifdef _OPENMP
#include <omp.h>
#endif
#include "pyce_threads.h" /* fork safety (issue 15) */


/* Below this many elements a call runs serially: entering an OpenMP region
 * costs about 1.5 us on 2 cores, more than the whole work of a small batch. */
#define PYCE_PARALLEL_MIN_ELEMENTS 65536
/* Block partition: at most this many blocks of at least PYCE_MIN_BLOCK rows,
 * or of fewer rows when they hold at least PYCE_MIN_BLOCK_ELEMS elements (long
 * rows: 64 rows of 1M classes are 64 blocks, not one block on one thread). */
#define PYCE_MAX_BLOCKS 256
#define PYCE_MIN_BLOCK 64
#define PYCE_MIN_BLOCK_ELEMS 65536
/* Blocks are handed out to threads dynamically (block_chunk): blocks of at
 * least this many elements one at a time, smaller ones PYCE_DYNAMIC_CHUNK at a
 * time, so that a hand-out (an atomic add) stays negligible.  Against the
 * static split used before for blocks below 1M elements, measured on the 2-core
 * VM (262144 x 10 float32 fused, 2 threads, medians of 60 calls, builds run
 * alternately, 2026-12-02): with one core kept busy by another process
 * (`python -c "while 1: pass"`) 2.0-5.2 ms static, 1.1-1.9 ms dynamic; idle,
 * 0.69-0.75 ms static, 0.68-0.70 ms dynamic. */
#define PYCE_DYNAMIC_BLOCK_ELEMS (1 << 20)
#define PYCE_DYNAMIC_CHUNK 4
/* Up to PYCE_SMALL_C classes, rows are processed PYCE_LANES at a time, one
 * per SIMD lane (16 floats fill an AVX-512 register). */
#define PYCE_SMALL_C 16
#define PYCE_LANES 16
/* Cache lines of the next row requested ahead (row path; see prefetch_row). */
#define PYCE_PREFETCH_LINES 64

/* Blocks per dynamic hand-out (see PYCE_DYNAMIC_BLOCK_ELEMS); inline: unused
 * in builds without OpenMP, where the pragma that calls it is ignored. */
static inline int block_chunk(int64_t bs, int64_t c)
{
    return bs * c >= PYCE_DYNAMIC_BLOCK_ELEMS ? 1 : PYCE_DYNAMIC_CHUNK;
}

/* Rows per block: a function of the shape (rows, c) alone, never of the
 * thread count, so results are bitwise identical for every n_threads.  Rows of
 * up to 1024 classes keep blocks of at least 64 rows; longer rows get blocks
 * of at least PYCE_MIN_BLOCK_ELEMS elements (one row from 65536 classes up). */
static int64_t block_rows(int64_t rows, int64_t c)
{
    int64_t b = (rows + PYCE_MAX_BLOCKS - 1) / PYCE_MAX_BLOCKS;
    int64_t min_rows = PYCE_MIN_BLOCK;
    if (c > PYCE_MIN_BLOCK_ELEMS / PYCE_MIN_BLOCK)
        min_rows = (PYCE_MIN_BLOCK_ELEMS + c - 1) / c;
    return b < min_rows ? min_rows : b;
}

/* THE place where the kernels (cross-entropy and softmax) resolve their
 * thread count: requested (0 = OpenMP's default), but serial below
 * PYCE_PARALLEL_MIN_ELEMENTS and never more threads than blocks. */
static int choose_threads(int requested, int64_t elements, int64_t nblocks)
{
#ifdef _OPENMP
    if (elements < PYCE_PARALLEL_MIN_ELEMENTS || nblocks < 2)
        return 1;
    if (!pyce_threads_allowed()) /* fork safety: serial in a forked child, pyce_threads.h */
        return 1;
    int t = requested > 0 ? requested : omp_get_max_threads();
    if (t > nblocks)
        t = (int)nblocks;
    return t < 1 ? 1 : t;
#else
    (void)requested; (void)elements; (void)nblocks;
    return 1;
#endif
}

/* Element offsets of rows i0 .. i0+nrows-1 of an (n, c, d) array with
 * strides (sn, sd); lanes past nrows repeat row i0 (computed, never stored). */
static inline void lanes_offsets(int64_t i0, int64_t nrows, int64_t d, int64_t sn, int64_t sd,
                                 int64_t *off)
{
    for (int64_t r = 0; r < PYCE_LANES; r++) {
        const int64_t i = i0 + (r < nrows ? r : 0);
        off[r] = d == 1 ? i * sn : (i / d) * sn + (i % d) * sd;
    }
}

/* __builtin_prefetch is GCC's and clang's; elsewhere (MSVC) rows are not prefetched. */
#if defined(__GNUC__) || defined(__clang__)
#define PYCE_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#else
#define PYCE_PREFETCH(p) ((void)(p))
#endif

#include "pyce_loss_rules.h" /* the per-row rules, written once for every path */

/* ---- float and double instantiations of the row kernels ---- */
#define T float
#define SFX(name) name##_f32
#define T_MAX_f32 FLT_MAX
#define PYCE_EXP pyce_expneg_f32
#include "pyce_loss_template.h"
#undef T
#undef SFX
#undef PYCE_EXP

#define T double
#define SFX(name) name##_f64
#define T_MAX_f64 DBL_MAX
#define PYCE_EXP pyce_expneg_f64
#include "pyce_loss_template.h"
#undef T
#undef SFX
#undef PYCE_EXP

/* pyce_scan_targets without weights (the common call): blocks of rows checked
 * without branches, so the loop vectorizes (a scalar loop with an early exit
 * took ~0.9 ns a row: 0.23 ms at 262144 rows, serial before every kernel
 * call); a block with a bad target is rescanned for its first position.  The
 * denominator is the count of rows kept, exactly what summing 1.0 per row in
 * double gives. */
PYCE_CLONES static int64_t scan_targets_plain(const int64_t *target, int64_t rows, int64_t c,
                                              int64_t ignore_index, double *denom)
{
    int64_t kept = 0;
    for (int64_t i0 = 0; i0 < rows; i0 += 4096) {
        const int64_t i1 = rows - i0 < 4096 ? rows : i0 + 4096;
        int64_t bad = 0, k = 0;
#pragma omp simd reduction(| : bad) reduction(+ : k)
        for (int64_t i = i0; i < i1; i++) {
            const int64_t y = target[i];
            const int64_t live = y != ignore_index;
            bad |= live & ((uint64_t)y >= (uint64_t)c);
            k += live;
        }
        if (bad) {
            for (int64_t i = i0; i < i1; i++)
                if (target[i] != ignore_index && (target[i] < 0 || target[i] >= c))
                    return i;
        }
        kept += k;
    }
    *denom = (double)kept;
    return -1;
}

int64_t pyce_scan_targets(const int64_t *target, int64_t rows, int64_t c,
                          int64_t ignore_index, const double *class_weight,
                          const double *sample_weight, double *denom)
{
    if (!class_weight && !sample_weight)
        return scan_targets_plain(target, rows, c, ignore_index, denom);
    double total = 0.0;
    for (int64_t i = 0; i < rows; i++) {
        const int64_t y = target[i];
        if (y == ignore_index)
            continue;
        if (y < 0 || y >= c)
            return i;
        double w = class_weight ? class_weight[y] : 1.0;
        if (sample_weight)
            w *= sample_weight[i];
        total += w;
    }
    *denom = total;
    return -1;
}

/* The kernels' exp and log applied to arrays, compiled and vectorized as in
 * the kernels (same clones, same loop shape): what tests/test_exp.py measures. */
PYCE_CLONES void pyce_expneg_array_f32(const float *x, float *out, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        out[i] = pyce_expneg_f32(x[i]);
}

PYCE_CLONES void pyce_expneg_array_f64(const double *x, double *out, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        out[i] = pyce_expneg_f64(x[i]);
}

PYCE_CLONES void pyce_log_array_f64(const double *x, double *out, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++)
        out[i] = pyce_log_f64(x[i]);
}

/* The thread count pyce_ce / pyce_softmax would use for `rows` rows of c
 * classes with n_threads = requested (0: the default): for tests and
 * introspection (fork safety, issue 15). */
int pyce_threads_for(int requested, int64_t rows, int64_t c)
{
    if (rows <= 0 || c <= 0)
        return 1;
    const int64_t bs = block_rows(rows, c);
    return choose_threads(requested, rows * c, (rows + bs - 1) / bs);
}

int pyce_have_openmp(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int pyce_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

const char *pyce_simd_path(void)
{
#if PYCE_HAVE_CLONES
    __builtin_cpu_init();
    if (__builtin_cpu_supports("x86-64-v4"))
        return "x86-64-v4 (AVX-512) clone";
    if (__builtin_cpu_supports("x86-64-v3"))
        return "x86-64-v3 (AVX2+FMA) clone";
    return "x86-64 baseline (SSE2) clone";
#elif defined(__aarch64__)
    return "aarch64 baseline (NEON)";
#else
    return "baseline (no runtime dispatch)";
#endif
}

const char *pyce_compiler(void)
{
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}
