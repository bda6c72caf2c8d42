# cython: language_level=3
"""Cython layer over cext/pyce_trainer_kernels.c (the trainer kernels): pyce.nn's activation kernels and
pyce.optim's fused SGD/Adam steps.

Activation arguments are validated by pyce/nn.py: C-contiguous arrays of one
dtype (float32 or float64) and equal size. The optimizer steps validate their
arrays here (cheap C checks, every step) because parameters can be replaced
by the user between steps. Each call is one pass without the GIL.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t

cnp.import_array()

cdef extern from "pyce_trainer_kernels.h" nogil:
    void pyce_elu_fwd_f32(const float *x, float *y, int64_t n, float alpha)
    void pyce_elu_fwd_f64(const double *x, double *y, int64_t n, double alpha)
    void pyce_elu_bwd_f32(const float *x, const float *y, const float *g, float *dx,
                          int64_t n, float alpha)
    void pyce_elu_bwd_f64(const double *x, const double *y, const double *g, double *dx,
                          int64_t n, double alpha)
    void pyce_relu_fwd_f32(const float *x, float *y, int64_t n)
    void pyce_relu_fwd_f64(const double *x, double *y, int64_t n)
    void pyce_relu_bwd_f32(const float *y, const float *g, float *dx, int64_t n)
    void pyce_relu_bwd_f64(const double *y, const double *g, double *dx, int64_t n)
    void pyce_expm1_f32(const float *x, float *y, int64_t n)
    void pyce_expm1_f64(const double *x, double *y, int64_t n)
    void pyce_sgd_step_f32(float *p, const float *g, float *buf, int64_t n,
                           float lr, float mu, float damp1, float wd, int nesterov, int first)
    void pyce_sgd_step_f64(double *p, const double *g, double *buf, int64_t n,
                           double lr, double mu, double damp1, double wd, int nesterov,
                           int first)
    void pyce_sgd_apply_f32(float *p, float *buf, int64_t n, float lr, float c)
    void pyce_sgd_apply_f64(double *p, double *buf, int64_t n, double lr, double c)
    void pyce_adam_step_f32(float *p, const float *g, float *m, float *v, int64_t n,
                            float wd, float w1, float beta2, float w2, float neg_step,
                            float bc2_sqrt, float eps)
    void pyce_adam_step_f64(double *p, const double *g, double *m, double *v, int64_t n,
                            double wd, double w1, double beta2, double w2, double neg_step,
                            double bc2_sqrt, double eps)
    void pyce_add_row_bias_f32(float *y, const float *b, int64_t rows, int64_t cols)
    void pyce_add_row_bias_f64(double *y, const double *b, int64_t rows, int64_t cols)
    void pyce_column_sum_f32(const float *g, float *out, int64_t rows, int64_t cols,
                             int accumulate)
    void pyce_column_sum_f64(const double *g, double *out, int64_t rows, int64_t cols,
                             int accumulate)


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


def relu_forward(cnp.ndarray x, cnp.ndarray y):
    """y = max(x, 0) (NaN stays NaN, -0 becomes +0: np.maximum(x, 0)); x and y
    C-contiguous arrays of one float dtype and size (the caller checks)."""
    cdef int64_t n = cnp.PyArray_SIZE(x)
    cdef bint f64 = cnp.PyArray_TYPE(x) == cnp.NPY_DOUBLE
    with nogil:
        if f64:
            pyce_relu_fwd_f64(<const double *>_p(x), <double *>_p(y), n)
        else:
            pyce_relu_fwd_f32(<const float *>_p(x), <float *>_p(y), n)


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


def add_row_bias(cnp.ndarray y, cnp.ndarray b):
    """y[i, :] += b in place; y (rows, cols), b (cols,), one dtype, C-contiguous
    (checked by pyce.nn.Linear)."""
    cdef int64_t cols = cnp.PyArray_SIZE(b)
    cdef int64_t rows = cnp.PyArray_SIZE(y) // cols if cols else 0
    with nogil:
        if cnp.PyArray_TYPE(y) == cnp.NPY_DOUBLE:
            pyce_add_row_bias_f64(<double *>_p(y), <const double *>_p(b), rows, cols)
        else:
            pyce_add_row_bias_f32(<float *>_p(y), <const float *>_p(b), rows, cols)


def column_sum(cnp.ndarray g, cnp.ndarray out, bint accumulate):
    """out = sum(g, axis=0), or out += it with accumulate; g (rows, cols) and out
    (cols,) of one dtype, C-contiguous (checked by pyce.nn.Linear). float32 sums
    in double and rounds once."""
    cdef int64_t cols = cnp.PyArray_SIZE(out)
    cdef int64_t rows = cnp.PyArray_SIZE(g) // cols if cols else 0
    with nogil:
        if cnp.PyArray_TYPE(g) == cnp.NPY_DOUBLE:
            pyce_column_sum_f64(<const double *>_p(g), <double *>_p(out), rows, cols, accumulate)
        else:
            pyce_column_sum_f32(<const float *>_p(g), <float *>_p(out), rows, cols, accumulate)


cdef bint _in_p_order(cnp.ndarray p, cnp.ndarray a):
    """a is contiguous in p's memory order (C, or Fortran for a Fortran-ordered p):
    the kernels walk both arrays' memory in step."""
    if cnp.PyArray_IS_C_CONTIGUOUS(p):
        return cnp.PyArray_IS_C_CONTIGUOUS(a)
    return cnp.PyArray_IS_F_CONTIGUOUS(a)


cdef int _check_state(cnp.ndarray p, object arr, str what, str name) except -1:
    """arr must be an array like p (same dtype and shape), contiguous in p's
    memory order, writeable if it is state."""
    if not isinstance(arr, cnp.ndarray):
        raise TypeError(f"parameter {name!r}: {what} must be a NumPy array, got "
                        f"{type(arr).__name__}")
    cdef cnp.ndarray a = <cnp.ndarray>arr
    if cnp.PyArray_TYPE(a) != cnp.PyArray_TYPE(p) or not _in_p_order(p, a) \
            or cnp.PyArray_NDIM(a) != cnp.PyArray_NDIM(p) \
            or not cnp.PyArray_SAMESHAPE(a, p):
        po, ao = <object>p, <object>a  # Python views for the message
        order = "C" if po.flags.c_contiguous else "Fortran"
        ok = ao.flags.c_contiguous if order == "C" else ao.flags.f_contiguous
        raise ValueError(f"parameter {name!r}: {what} must be a {order}-contiguous {po.dtype} "
                         f"array of shape {po.shape} like the parameter, got {ao.dtype} "
                         f"{ao.shape}{'' if ok else f' (not {order}-contiguous)'}")
    if what != "grad" and not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"parameter {name!r}: {what} is read-only")
    return 0


cdef int _check_param(cnp.ndarray p, str name) except -1:
    cdef int t = cnp.PyArray_TYPE(p)
    if t != cnp.NPY_FLOAT and t != cnp.NPY_DOUBLE:
        raise TypeError(f"parameter {name!r}: data must be float32 or float64, got "
                        f"{(<object>p).dtype}")
    if not (cnp.PyArray_IS_C_CONTIGUOUS(p) or cnp.PyArray_IS_F_CONTIGUOUS(p)) \
            or not cnp.PyArray_ISWRITEABLE(p):
        raise ValueError(f"parameter {name!r}: data must be a writeable contiguous array "
                         f"(C- or Fortran-ordered)")
    return 0


def sgd_step(cnp.ndarray p, object g, object buf, double lr, double momentum,
             double dampening, double weight_decay, bint nesterov, bint first, str name=""):
    """One fused SGD step in place on p (and buf), PyTorch's rule:
    d = g + weight_decay*p; buf = d if first else momentum*buf + (1 - dampening)*d;
    d = d + momentum*buf if nesterov else buf; p -= lr*d.
    buf is None (and unused) when momentum == 0; nesterov needs dampening == 0
    (checked by pyce.optim.SGD). Arithmetic in p's dtype, 1 - dampening
    computed in double and rounded once."""
    _check_param(p, name)
    _check_state(p, g, "grad", name)
    cdef bint use_buf = momentum != 0
    if use_buf:
        _check_state(p, buf, "momentum_buffer", name)
    cdef int64_t n = cnp.PyArray_SIZE(p)
    cdef void *gp = _p(<cnp.ndarray>g)
    cdef void *bp = _p(<cnp.ndarray>buf) if use_buf else NULL
    cdef double damp1 = 1.0 - dampening
    with nogil:
        if cnp.PyArray_TYPE(p) == cnp.NPY_DOUBLE:
            pyce_sgd_step_f64(<double *>_p(p), <const double *>gp, <double *>bp, n,
                              lr, momentum, damp1, weight_decay, nesterov, first)
        else:
            pyce_sgd_step_f32(<float *>_p(p), <const float *>gp, <float *>bp, n,
                              <float>lr, <float>momentum, <float>damp1, <float>weight_decay,
                              nesterov, first)


def sgd_apply(cnp.ndarray p, object buf, double lr, double c, str name=""):
    """The rest of an SGD momentum step after a gemm wrote the weight gradient
    into the buffer (buf = momentum*buf + (1 - dampening)*grad): buf += c*p
    when c != 0 (c = (1 - dampening)*weight_decay, or weight_decay on the
    buffer's first step), then p -= lr*buf; one pass, in p's dtype."""
    _check_param(p, name)
    _check_state(p, buf, "momentum_buffer", name)
    cdef int64_t n = cnp.PyArray_SIZE(p)
    cdef void *bp = _p(<cnp.ndarray>buf)
    with nogil:
        if cnp.PyArray_TYPE(p) == cnp.NPY_DOUBLE:
            pyce_sgd_apply_f64(<double *>_p(p), <double *>bp, n, lr, c)
        else:
            pyce_sgd_apply_f32(<float *>_p(p), <float *>bp, n, <float>lr, <float>c)


def adam_step(cnp.ndarray p, object g, object exp_avg, object exp_avg_sq,
              double weight_decay, double beta1, double beta2, double step_size,
              double bc2_sqrt, double eps, str name=""):
    """One fused Adam step in place on p, exp_avg, exp_avg_sq (torch.optim.Adam,
    L2 weight decay): d = g + weight_decay*p; exp_avg = lerp(exp_avg, d, 1 - beta1);
    exp_avg_sq = beta2*exp_avg_sq + (1 - beta2)*d*d;
    p -= step_size*exp_avg / (sqrt(exp_avg_sq)/bc2_sqrt + eps).
    The caller computes step_size = lr/(1 - beta1^t) and bc2_sqrt = sqrt(1 - beta2^t)
    in double. Arithmetic in p's dtype."""
    _check_param(p, name)
    _check_state(p, g, "grad", name)
    _check_state(p, exp_avg, "exp_avg", name)
    _check_state(p, exp_avg_sq, "exp_avg_sq", name)
    cdef int64_t n = cnp.PyArray_SIZE(p)
    cdef void *gp = _p(<cnp.ndarray>g)
    cdef void *mp = _p(<cnp.ndarray>exp_avg)
    cdef void *vp = _p(<cnp.ndarray>exp_avg_sq)
    # 1 - beta in double, then rounded to the dtype (as torch with Python floats)
    cdef double w1 = 1.0 - beta1, w2 = 1.0 - beta2, neg_step = -step_size
    with nogil:
        if cnp.PyArray_TYPE(p) == cnp.NPY_DOUBLE:
            pyce_adam_step_f64(<double *>_p(p), <const double *>gp, <double *>mp,
                               <double *>vp, n, weight_decay, w1, beta2, w2, neg_step,
                               bc2_sqrt, eps)
        else:
            pyce_adam_step_f32(<float *>_p(p), <const float *>gp, <float *>mp, <float *>vp, n,
                               <float>weight_decay, <float>w1, <float>beta2, <float>w2,
                               <float>neg_step, <float>bc2_sqrt, <float>eps)
