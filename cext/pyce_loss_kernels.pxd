# The C interface of the loss kernels, mirrored once from cext/pyce_loss_kernels.h
# (field for field, in the header's order); cext/_ce.pyx cimports it.
from libc.stdint cimport int64_t

cdef extern from "pyce_loss_kernels.h" nogil:
    ctypedef struct pyce_ce_args:
        int64_t n, c, d
        int64_t x_sn, x_sc, x_sd
        int64_t g_sn, g_sc, g_sd
        int64_t t_sn, t_sc, t_sd
        const void *x
        void *grad
        void *loss
        const int64_t *target
        const void *target_prob
        const double *class_weight
        const double *sample_weight
        const double *grad_output
        double grad_scale
        double class_weight_sum
        double class_weight_abs_sum
        int64_t ignore_index
        double label_smoothing
        double z_loss
        int n_threads

    ctypedef struct pyce_softmax_args:
        int64_t n, c, d
        int64_t x_sn, x_sc, x_sd
        int64_t o_sn, o_sc, o_sd
        const void *x
        void *out
        int log
        int n_threads

    double pyce_ce_f32(const pyce_ce_args *args)
    double pyce_ce_f64(const pyce_ce_args *args)
    void pyce_softmax_f32(const pyce_softmax_args *args)
    void pyce_softmax_f64(const pyce_softmax_args *args)
    int64_t pyce_scan_targets(const int64_t *target, int64_t rows, int64_t c,
                              int64_t ignore_index, const double *class_weight,
                              const double *sample_weight, double *denom)
    void pyce_expneg_array_f32(const float *x, float *out, int64_t n)
    void pyce_expneg_array_f64(const double *x, double *out, int64_t n)
    void pyce_log_array_f64(const double *x, double *out, int64_t n)
    int pyce_have_openmp()
    int pyce_max_threads()
    int pyce_threads_for(int requested, int64_t rows, int64_t c)
    const char *pyce_simd_path()
    const char *pyce_compiler()
