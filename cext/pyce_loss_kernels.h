/*
 * pyce kernels: batched, numerically stable softmax cross-entropy.
 *
 * Geometry.  Every input is seen as a 3-d array (n, c, d): n samples of the
 * batch, c classes on the class axis, d positions (d = 1 for (N, C) input;
 * d = d1*...*dk for PyTorch's (N, C, d1, ..., dk)).  A "row" is one (n, d)
 * pair: its c logits sit at x + n*sn + k*sc + d*sd (strides in elements, so
 * C-, Fortran-ordered and strided views all work without a copy).  Row i is
 * (i / d, i % d); per-row arrays (targets, sample weights, grad_output,
 * per-row losses) are contiguous of length n*d.
 *
 * Work partition.  Rows are cut into blocks whose size depends on the shape
 * (row count and c) only, never on the thread count; each block sums its rows' losses in
 * order in double, and the block sums are added in order.  Results are thus
 * bitwise identical for every n_threads.
 *
 * The kernels trust their arguments: pyce/_validate.py's check_ce checks
 * them (shapes, strides, weights; the target range through
 * pyce_scan_targets) and cext/_ce.pyx fills this struct from the checked
 * problem in one place (_args_from_problem; _ce.pxd mirrors this header).
 */
#ifndef PYCE_KERNELS_H
#define PYCE_KERNELS_H

#include <stdint.h>

typedef struct {
    int64_t n, c, d;                 /* samples, classes, positions */
    int64_t x_sn, x_sc, x_sd;        /* input strides (elements) */
    int64_t g_sn, g_sc, g_sd;        /* gradient strides (elements) */
    int64_t t_sn, t_sc, t_sd;        /* probability-target strides (elements) */
    const void *x;                   /* logits, float or double */
    void *grad;                      /* gradient out (same dtype), or NULL */
    void *loss;                      /* per-row losses out (same dtype), or NULL */
    const int64_t *target;           /* class indices per row, or NULL */
    const void *target_prob;         /* class probabilities (same dtype), or NULL */
    const double *class_weight;      /* (c,) or NULL */
    const double *sample_weight;     /* (n*d,) or NULL */
    const double *grad_output;       /* (n*d,) upstream gradient, or NULL */
    double grad_scale;               /* multiplies every gradient row */
    double class_weight_sum;         /* sum(class_weight), or c */
    double class_weight_abs_sum;     /* sum(|class_weight|), or c: bounds the gradient's terms */
    int64_t ignore_index;
    double label_smoothing;
    double z_loss;
    int n_threads;
} pyce_ce_args;

/* Fused forward (and backward when args->grad != NULL).  Returns the sum of
 * the per-row (weighted) losses, accumulated in double. */
double pyce_ce_f32(const pyce_ce_args *args);
double pyce_ce_f64(const pyce_ce_args *args);

/* softmax (log = 0) or log_softmax (log = 1) over axis c of (n, c, d). */
typedef struct {
    int64_t n, c, d;
    int64_t x_sn, x_sc, x_sd;
    int64_t o_sn, o_sc, o_sd;
    const void *x;
    void *out;
    int log;
    int n_threads;
} pyce_softmax_args;

void pyce_softmax_f32(const pyce_softmax_args *args);
void pyce_softmax_f64(const pyce_softmax_args *args);

/* Scan class-index targets: returns the position of the first target that is
 * neither in [0, c) nor ignore_index, or -1.  On success stores in *denom the
 * 'mean' denominator sum_i sample_weight[i] * class_weight[target[i]] over
 * non-ignored rows (missing weights count as 1). */
int64_t pyce_scan_targets(const int64_t *target, int64_t rows, int64_t c,
                          int64_t ignore_index, const double *class_weight,
                          const double *sample_weight, double *denom);

/* The kernels' exp (for arguments <= 0 or NaN) and log, on arrays: for tests. */
void pyce_expneg_array_f32(const float *x, float *out, int64_t n);
void pyce_expneg_array_f64(const double *x, double *out, int64_t n);
void pyce_log_array_f64(const double *x, double *out, int64_t n);

/* Build information for pyce.show_config(). */
int pyce_have_openmp(void);
int pyce_max_threads(void);
/* Fork safety (issue 15): the thread count a kernel call would use. */
int pyce_threads_for(int requested, int64_t rows, int64_t c);
const char *pyce_simd_path(void);
const char *pyce_compiler(void);

#endif /* PYCE_KERNELS_H */
