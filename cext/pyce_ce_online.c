/*
 * Rows longer than L2: fused softmax cross-entropy reading each row from
 * memory once (a segmented max-and-sum).
 *
 * The row path (pyce_loss_template.h, ce_row) sweeps a row three times: max,
 * exp into the gradient row, scale.  While a row fits in L2 (up to ~250K
 * float32 classes on a 1 MiB L2) the second and third sweeps hit the cache.
 * Beyond, the first sweep has pushed the row's start out of L2 before the
 * second begins.  Here the row is cut into segments of `seg` elements (1024
 * by default: 4 KiB of float, 8 KiB of double, so a segment stays in L1
 * between its two sweeps, with the next segment's lines requested meanwhile;
 * on the EPYC, 64 x 1 000 000 with one thread, 1024 measured 12% (float) and
 * 7% (double) faster than 4096 for the fused call, the forward alike):
 *   pass 1: per segment j, its maximum m_j (read from memory), then
 *           e_k = exp(x_k - m_j) (read again, from L1/L2), stored into the
 *           gradient row, and s_j = sum e_k (four in T, then double: the rule
 *           of row_expsum);
 *   combine: m = max_j m_j, s = sum_j s_j exp(m_j - m), in double, segments in
 *           order;
 *   pass 2: grad_k = e_k * (T)(exp(m_j - m) g/s), the gradient row still in
 *           L2/L3 from pass 1; the target entry g (e_y - s)/s in double (the
 *           rules of pyce_ce_rules.h, shared with pyce_ce_small.c).
 * One exp per element, x read once from memory.  Memory traffic per element
 * (float32, 4 bytes): x read 4, gradient 4 written plus 4 read for the
 * write-allocate = 12, against np.copyto's 8 (glibc copies an array this
 * large with non-temporal stores); the row path moves as much (its second
 * read of x comes from L3 while a row fits there).  The forward (no gradient)
 * reads x once in a single sweep with a running maximum instead
 * (row_sum_running: chunks of 64, the partial sums scaled when the maximum
 * rises), measured 10% faster than the segments when nothing is stored.
 *
 * The segments are fixed by c alone (online_segment), never by the thread
 * count, and combined in order; the forward's chunks likewise: results are
 * bitwise identical for every n_threads.  Threads split rows: blocks of one
 * row at this size (pyce_loss_kernels.c's block_rows), handed out
 * dynamically (pyce_ce in pyce_loss_template.h).  Before, 64 rows of 1M
 * classes were one block of 64 rows, so every call ran on one thread.
 *
 * Where the time goes (AMD EPYC Zen 4, 1 MiB L2, 32 MiB L3; 64 x 1 000 000
 * float32, one thread, a C harness): np.copyto's memcpy 18-19 ms; the fused
 * call 29 ms, of which 25.7 ms remain with the exp replaced by one FMA (the
 * 12 bytes per element above at one core's ~30 GB/s); the forward 18.5 ms,
 * 9.4 ms without the exp (np.sum: 10 ms).  So one thread is bound by the
 * write-allocate of the gradient (fused) and by the exp (forward); two threads
 * have twice the exp throughput and more bandwidth (two cores' streams reach
 * ~60 GB/s here).
 *
 * Precision: e_k and the factor are each rounded to T once, so a gradient
 * entry carries one more rounding (0.5 ulp) than on the row path; s, log(s)
 * and the loss are double.  Segment maxima are exact, so the m that enters
 * the loss is the row's maximum as elsewhere.
 *
 * Edge values: NaN is skipped by the maxima and reaches s through its exp; a
 * segment of only -inf (and NaN) uses 0 instead of its maximum -inf for its
 * exps (0 and NaN, never exp(-inf - -inf) = NaN for the whole segment) and
 * gets the factor 0; a row of only -inf is NaN as on every path; a +inf
 * logit gives exp(inf - inf) = NaN, a NaN row.
 *
 * Cases: class-index targets, no smoothing, no z-loss, d = 1, contiguous class
 * axis, C * sizeof(T) >= the threshold (1 MiB by default); everything else
 * returns 0 (the row path runs).  Compiled for the x86-64 levels with
 * target_clones like the other kernels (portable C, no intrinsics).
 */
#include "pyce_ce_small.h"
#include "pyce_exp.h"
#include "pyce_dispatch.h"

#include <float.h>
#include <math.h>
#include <stdint.h>

/* Rows from 1 MiB up: the L2 of current x86 cores is 1-2 MiB, and below it
 * the three-sweep row path reads its second and third sweeps from cache. */
#define PYCE_ON_MIN_BYTES (1 << 20)
/* Elements per segment (a multiple of PYCE_ON_ACC), at most PYCE_ON_MAX_SEGS
 * segments per row (their maxima and sums live on the stack, 12-16 KiB):
 * beyond 1M classes the segments grow. */
#define PYCE_ON_SEG 1024
#define PYCE_ON_MAX_SEGS 1024
/* Independent partial maxima and sums per sweep. */
#define PYCE_ON_ACC 64

#if defined(__GNUC__) || defined(__clang__)
#define PYCE_ON_PREFETCH(p) __builtin_prefetch((p), 0, 3)
#define PYCE_ON_PREFETCHW(p) __builtin_prefetch((p), 1, 3)
#else
#define PYCE_ON_PREFETCH(p) ((void)(p))
#define PYCE_ON_PREFETCHW(p) ((void)(p))
#endif

/* small_row_weights, small_row_loss, small_row_grad_coefs: the per-row rules
 * of the plain class-target case, shared with pyce_ce_small.c. */
#include "pyce_ce_rules.h"

/* Private tuning for tests (tests/loss/test_huge_rows.py through ctypes): the
 * row size from which this path runs and the segment length, so that small
 * arrays reach it and cross many segment boundaries.  0 restores a default.
 * Read at every call; not meant for concurrent use with running kernels. */
#if defined(__GNUC__) || defined(__clang__)
#define PYCE_ON_LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define PYCE_ON_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#else
#define PYCE_ON_LOAD(p) (*(p))
#define PYCE_ON_STORE(p, v) (*(p) = (v))
#endif
static int64_t online_min_bytes = PYCE_ON_MIN_BYTES;
static int64_t online_seg = PYCE_ON_SEG;

void pyce_ce_online_tune(int64_t min_bytes, int64_t seg);
void pyce_ce_online_tune(int64_t min_bytes, int64_t seg)
{
    PYCE_ON_STORE(&online_min_bytes, min_bytes > 0 ? min_bytes : (int64_t)PYCE_ON_MIN_BYTES);
    seg = seg > 0 ? (seg + PYCE_ON_ACC - 1) / PYCE_ON_ACC * PYCE_ON_ACC : PYCE_ON_SEG;
    PYCE_ON_STORE(&online_seg, seg);
}

/* The segment length for rows of c classes: a function of c alone. */
static int64_t online_segment(int64_t c)
{
    const int64_t seg = PYCE_ON_LOAD(&online_seg);
    if ((c + seg - 1) / seg <= PYCE_ON_MAX_SEGS)
        return seg;
    const int64_t s = (c + PYCE_ON_MAX_SEGS - 1) / PYCE_ON_MAX_SEGS;
    return (s + PYCE_ON_ACC - 1) / PYCE_ON_ACC * PYCE_ON_ACC;
}

static int online_handles(const pyce_ce_args *a, int64_t elem_bytes)
{
    return a->target && !a->target_prob && a->d == 1 && a->label_smoothing == 0.0 &&
           a->z_loss == 0.0 && a->x_sc == 1 && (!a->grad || a->g_sc == 1) &&
           a->c * elem_bytes >= PYCE_ON_LOAD(&online_min_bytes);
}

#define T float
#define SFX(name) name##_f32
#define T_MAX FLT_MAX
#define PYCE_EXP pyce_expneg_f32
#include "pyce_ce_online_impl.h"
#undef T
#undef SFX
#undef T_MAX
#undef PYCE_EXP

#define T double
#define SFX(name) name##_f64
#define T_MAX DBL_MAX
#define PYCE_EXP pyce_expneg_f64
#include "pyce_ce_online_impl.h"
#undef T
#undef SFX
#undef T_MAX
#undef PYCE_EXP
