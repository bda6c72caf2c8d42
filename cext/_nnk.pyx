# cython: language_level=3
"""Cython layer over cext/pyce_nn_kernels.c: pyce.nn's activation kernels.

Arguments are validated by pyce/nn.py: C-contiguous arrays of one dtype
(float32 or float64) and equal size. Each call is one pass without the GIL.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t

cnp.import_array()

cdef extern from "pyce_nn_kernels.h" nogil:
    void pyce_elu_fwd_f32(const float *x, float *y, int64_t n, float alpha)
    void pyce_elu_fwd_f64(const double *x, double *y, int64_t n, double alpha)
    void pyce_elu_bwd_f32(const float *x, const float *y, const float *g, float *dx,
                          int64_t n, float alpha)
    void pyce_elu_bwd_f64(const double *x, const double *y, const double *g, double *dx,
                          int64_t n, double alpha)
    void pyce_relu_bwd_f32(const float *y, const float *g, float *dx, int64_t n)
    void pyce_relu_bwd_f64(const double *y, const double *g, double *dx, int64_t n)
    void pyce_expm1_f32(const float *x, float *y, int64_t n)
    void pyce_expm1_f64(const double *x, double *y, int64_t n)


cdef inline void *_p(cnp.ndarray a) noexcept nogil:
    return cnp.PyArray_DATA(a)


def elu_forward(cnp.ndarray x, cnp.ndarray y, double alpha):
    """y = x > 0 ? x : alpha * expm1(x)."""
    cdef int64_t n = cnp.PyArray_SIZE(x)
    cdef bint f64 = cnp.PyArray_TYPE(x) == cnp.NPY_DOUBLE
    with nogil:
        if f64:
            pyce_elu_fwd_f64(<const double *>_p(x), <double *>_p(y), n, alpha)
        else:
            pyce_elu_fwd_f32(<const float *>_p(x), <float *>_p(y), n, <float>alpha)


def elu_backward(cnp.ndarray x, cnp.ndarray y, cnp.ndarray g, cnp.ndarray dx, double alpha):
    """dx = x > 0 ? g : g * (y + alpha)."""
    cdef int64_t n = cnp.PyArray_SIZE(x)
    cdef bint f64 = cnp.PyArray_TYPE(x) == cnp.NPY_DOUBLE
    with nogil:
        if f64:
            pyce_elu_bwd_f64(<const double *>_p(x), <const double *>_p(y),
                             <const double *>_p(g), <double *>_p(dx), n, alpha)
        else:
            pyce_elu_bwd_f32(<const float *>_p(x), <const float *>_p(y),
                             <const float *>_p(g), <float *>_p(dx), n, <float>alpha)


def relu_backward(cnp.ndarray y, cnp.ndarray g, cnp.ndarray dx):
    """dx = y <= 0 ? 0 : g."""
    cdef int64_t n = cnp.PyArray_SIZE(y)
    cdef bint f64 = cnp.PyArray_TYPE(y) == cnp.NPY_DOUBLE
    with nogil:
        if f64:
            pyce_relu_bwd_f64(<const double *>_p(y), <const double *>_p(g),
                              <double *>_p(dx), n)
        else:
            pyce_relu_bwd_f32(<const float *>_p(y), <const float *>_p(g),
                              <float *>_p(dx), n)


def expm1_nonpositive(cnp.ndarray x, cnp.ndarray y):
    """y = expm1(x) for x <= 0 with the kernels' own expm1 (exposed for tests)."""
    cdef int64_t n = cnp.PyArray_SIZE(x)
    cdef bint f64 = cnp.PyArray_TYPE(x) == cnp.NPY_DOUBLE
    with nogil:
        if f64:
            pyce_expm1_f64(<const double *>_p(x), <double *>_p(y), n)
        else:
            pyce_expm1_f32(<const float *>_p(x), <float *>_p(y), n)
