# cython: language_level=3
"""Thin Cython layer over the loss kernels (cext/pyce_loss_kernels.c).

The C interface is declared once, in pyce_loss_kernels.pxd (a mirror of
cext/pyce_loss_kernels.h).  This module

- owns the reduction rule (`loss_value`, `grad_scale`, `loss_scalar` below):
  every caller -- pyce/_core.py's general path, `fast_2d` here and
  pyce/_linear.py -- reduces through them;
- fills the kernel's argument struct in one place (`_args_from_problem`) from
  a checked `pyce._validate.Problem`, with the arrays' raw data pointers (no
  typed memoryviews: acquiring one costs more than a small batch's whole
  computation), and runs the kernel without the GIL;
- holds `fast_2d`, the commonest call checked and run at C speed.
"""
cimport numpy as cnp
import numpy as np
from libc.math cimport fabs, isfinite
from libc.stdint cimport int64_t
from libc.string cimport memset

from pyce_loss_kernels cimport *

cnp.import_array()

# ---- fork safety (issue 15): cext/pyce_threads.h
cdef extern from "pyce_threads.h" nogil:
    int pyce_threads_init()
    int pyce_threads_allowed()
    int pyce_threads_pool_started()

if pyce_threads_init() != 0:
    raise ImportError("pyce: could not register its fork handler (pthread_atfork failed)")

AFTER_FORK_POLICY = "serial in a child of a parent that used threads (pyce's, or had torch loaded)"


def threads_info():
    """This process's fork-safety state: 'pool_started' (a kernel entered an
    OpenMP region with several threads here or in a process this one was
    forked from, or this process was forked while torch, which shares the
    OpenMP runtime, was loaded) and 'serial_after_fork' (this process was
    forked after that, so every kernel runs serially in it)."""
    return {"pool_started": pyce_threads_pool_started() == 1,
            "serial_after_fork": pyce_threads_allowed() == 0}


def threads_for(int64_t n, int64_t c, int n_threads):
    """The number of threads a kernel call on an (n, c) batch would use in this
    process (for tests); n_threads as the kernels take it (0: the default,
    what pyce._validate.check_n_threads makes of None)."""
    return pyce_threads_for(n_threads, n, c)
# ---- end fork safety


cdef extern from *:
    const char *PYCE_BUILD_COMPILE_ARGS
    const char *PYCE_BUILD_LINK_ARGS
    const char *PYCE_BUILD_CYTHON
    const char *PYCE_BUILD_NUMPY_BUILD
    const char *PYCE_BUILD_PLATFORM


cdef inline void *_ptr(object a):
    if a is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>a)


# ---------------------------------------------------------------- the reduction rule
# One owner for 'mean' / 'sum' / 'none'.  'mean' divides the float64 sum of the
# per-row losses by the denominator (the weighted count of kept rows) and its
# gradient scale is grad_output / denominator, both by IEEE arithmetic, as
# PyTorch does: no kept rows gives 0/0 = NaN (with an all-zero gradient: every
# row is masked), a denominator of 0 with kept rows gives +-inf or NaN, a
# negative denominator flips the sign.  A float32 result beyond float32's range
# rounds to +-inf (C's conversion), without NumPy's "overflow encountered in
# cast" warning.

cdef enum:
    RED_MEAN = 0
    RED_SUM = 1
    RED_NONE = 2

cdef int _reduction_code(object reduction) except -1:
    if reduction == "mean":
        return RED_MEAN
    if reduction == "sum":
        return RED_SUM
    if reduction == "none":
        return RED_NONE
    # callers have run pyce._validate.check_reduction: this is an internal error
    raise ValueError(f"internal: unknown reduction {reduction!r} (not checked by check_reduction)")


cdef inline double _loss_value(double total, double denom, int red) noexcept nogil:
    return total / denom if red == RED_MEAN else total


cdef inline double _grad_scale(double grad_output, double denom, int red) noexcept nogil:
    return grad_output / denom if red == RED_MEAN else grad_output


_float32 = np.float32
_float64 = np.float64


cdef inline object _loss_scalar(double value, bint f64):
    if f64:
        return _float64(value)
    return _float32(<float>value)  # IEEE rounding: beyond FLT_MAX gives +-inf, quietly


def loss_value(double total, double denom, reduction, bint f64):
    """The reduced loss ('mean' or 'sum') of a float64 total, as a NumPy scalar."""
    return _loss_scalar(_loss_value(total, denom, _reduction_code(reduction)), f64)


def grad_scale(double grad_output, double denom, reduction):
    """What every gradient row is multiplied by: grad_output ('mean': / denom)."""
    return _grad_scale(grad_output, denom, _reduction_code(reduction))


# ---------------------------------------------------------------- kernels on a Problem

cdef inline void _class_weight_sums(const double *cw, int64_t c, double *wsum,
                                    double *wabs) noexcept nogil:
    """The kernels' class_weight_sum and class_weight_abs_sum (the one place
    they are formed, for the general path and fast_2d alike): sum(w) and
    sum(|w|) of the (c,) class weights, added in order in double; both c
    without class weights (every weight 1)."""
    cdef int64_t i
    cdef double s = 0.0, sa = 0.0
    if cw == NULL:
        wsum[0] = wabs[0] = <double>c
        return
    for i in range(c):
        s += cw[i]
        sa += fabs(cw[i])
    wsum[0] = s
    wabs[0] = sa


cdef _args_from_problem(pyce_ce_args *a, object p, object grad, object gstrides, object loss,
                        double grad_scale, object grad_output):
    """Fill the kernel's arguments from a checked Problem (the one place that does)."""
    xs, ts = p.xs, p.ts
    memset(a, 0, sizeof(pyce_ce_args))
    a.n = p.n
    a.c = p.c
    a.d = p.d
    a.x_sn = xs[0]; a.x_sc = xs[1]; a.x_sd = xs[2]
    if grad is not None:
        a.g_sn = gstrides[0]; a.g_sc = gstrides[1]; a.g_sd = gstrides[2]
    a.t_sn = ts[0]; a.t_sc = ts[1]; a.t_sd = ts[2]
    a.x = _ptr(p.x3)
    a.grad = _ptr(grad)
    a.loss = _ptr(loss)
    a.target = <const int64_t *>_ptr(p.target)
    a.target_prob = _ptr(p.t3)
    a.class_weight = <const double *>_ptr(p.class_weight)
    a.sample_weight = <const double *>_ptr(p.sample_weight)
    a.grad_output = <const double *>_ptr(grad_output)
    a.grad_scale = grad_scale
    _class_weight_sums(a.class_weight, a.c, &a.class_weight_sum, &a.class_weight_abs_sum)
    a.ignore_index = p.ignore_index
    a.label_smoothing = p.label_smoothing
    a.z_loss = p.z_loss
    a.n_threads = p.n_threads


def ce(p, grad=None, gstrides=None, loss=None, double grad_scale=0.0, grad_output=None):
    """Run the fused kernel on a checked Problem `p`.

    grad: None or an array the gradient is written to, seen through the element
    strides `gstrides` (sn, sc, sd); loss: None or a contiguous (rows,) array
    of per-row losses; grad_output: None or contiguous float64 (rows,).
    Returns the sum of the per-row losses (a float, accumulated in double).
    """
    cdef pyce_ce_args a
    cdef double total
    cdef bint f64 = p.f64
    _args_from_problem(&a, p, grad, gstrides, loss, grad_scale, grad_output)
    with nogil:
        total = pyce_ce_f64(&a) if f64 else pyce_ce_f32(&a)
    return total


def softmax(x, out, shape, xstrides, ostrides, bint log, int n_threads, bint f64):
    """softmax (log False) or log_softmax over axis 1 of the 3-d views x, out."""
    cdef pyce_softmax_args a
    a.n = shape[0]; a.c = shape[1]; a.d = shape[2]
    a.x_sn = xstrides[0]; a.x_sc = xstrides[1]; a.x_sd = xstrides[2]
    a.o_sn = ostrides[0]; a.o_sc = ostrides[1]; a.o_sd = ostrides[2]
    a.x = _ptr(x)
    a.out = _ptr(out)
    a.log = log
    a.n_threads = n_threads
    with nogil:
        if f64:
            pyce_softmax_f64(&a)
        else:
            pyce_softmax_f32(&a)


def scan_targets(target, int64_t rows, int64_t c, int64_t ignore_index,
                 class_weight, sample_weight):
    """(first bad position or -1, 'mean' denominator) of contiguous int64 targets."""
    cdef double denom = 0.0
    cdef int64_t bad
    cdef const int64_t *t = <const int64_t *>_ptr(target)
    cdef const double *cw = <const double *>_ptr(class_weight)
    cdef const double *sw = <const double *>_ptr(sample_weight)
    with nogil:
        bad = pyce_scan_targets(t, rows, c, ignore_index, cw, sw, &denom)
    return bad, denom


def build_info():
    return {
        "openmp": pyce_have_openmp() == 1,
        "max_threads": pyce_max_threads(),
        "after_fork": (AFTER_FORK_POLICY if pyce_have_openmp()  # fork safety (issue 15)
                       else "serial kernels everywhere (no OpenMP)"),
        "serial_after_fork": pyce_threads_allowed() == 0,
        "simd_path": pyce_simd_path().decode(),
        "compiler": pyce_compiler().decode(),
        "compile_args": PYCE_BUILD_COMPILE_ARGS.decode(),
        "link_args": PYCE_BUILD_LINK_ARGS.decode(),
        "cython": PYCE_BUILD_CYTHON.decode(),
        "numpy_build": PYCE_BUILD_NUMPY_BUILD.decode(),
        "platform": PYCE_BUILD_PLATFORM.decode(),
    }


# ---------------------------------------------------------------- the fast path

cdef inline bint _plain(object a, int ndim):
    """a is an exact ndarray of ndim dimensions, C-contiguous, aligned, native byte order."""
    if type(a) is not cnp.ndarray:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    return (cnp.PyArray_NDIM(arr) == ndim and cnp.PyArray_IS_C_CONTIGUOUS(arr)
            and cnp.PyArray_ISALIGNED(arr) and cnp.PyArray_ISNOTSWAPPED(arr))


cdef inline int _fast_reduction(object reduction, int mode):
    """The reduction's code, or -1 when fast_2d does not take it."""
    if reduction == "mean":
        return RED_MEAN
    if reduction == "sum":
        return RED_SUM
    if reduction == "none" and mode != 1:
        return RED_NONE
    return -1


cdef inline int64_t _fast_threads(object n_threads):
    """None -> 0 (all cores), a positive Python int -> itself, anything else -1."""
    if n_threads is None:
        return 0
    if type(n_threads) is int and n_threads > 0:
        return n_threads
    return -1


cdef object _fast_grad(cnp.ndarray xa, object out, int typenum, int64_t n, int64_t c):
    """The gradient array: a new one, or `out` when it fits; False when it does not."""
    cdef cnp.npy_intp dims[2]
    cdef cnp.ndarray g
    if out is None:
        dims[0] = n
        dims[1] = c
        return cnp.PyArray_EMPTY(2, dims, typenum, 0)
    if (not _plain(out, 2) or cnp.PyArray_TYPE(<cnp.ndarray>out) != typenum
            or cnp.PyArray_DIM(<cnp.ndarray>out, 0) != n
            or cnp.PyArray_DIM(<cnp.ndarray>out, 1) != c
            or not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out)):
        return False
    g = <cnp.ndarray>out
    if n * c and (<char *>cnp.PyArray_DATA(g) < <char *>cnp.PyArray_DATA(xa) + cnp.PyArray_NBYTES(xa)
                  and <char *>cnp.PyArray_DATA(xa) < <char *>cnp.PyArray_DATA(g) + cnp.PyArray_NBYTES(g)):
        return False  # overlaps x: the general path explains
    return g


cdef inline bint _fast_weights(object w, int64_t length, bint nonneg) noexcept:
    """w is None, or a C-contiguous float64 (length,) array of finite values
    (>= 0 when nonneg), the arrays pyce._validate would pass through unchanged.
    False sends the call to the general path, whose checks raise the errors."""
    cdef const double *p
    cdef int64_t i
    cdef bint ok = True
    if w is None:
        return True
    if (not _plain(w, 1) or cnp.PyArray_TYPE(<cnp.ndarray>w) != cnp.NPY_DOUBLE
            or cnp.PyArray_DIM(<cnp.ndarray>w, 0) != length):
        return False
    p = <const double *>cnp.PyArray_DATA(<cnp.ndarray>w)
    with nogil:
        for i in range(length):
            ok = ok and isfinite(p[i]) and (p[i] >= 0.0 or not nonneg)
    return ok


def fast_2d(x, target, out, reduction, int64_t ignore_index, n_threads, int mode,
            double grad_output=1.0, double label_smoothing=0.0, weight=None,
            sample_weight=None):
    """The commonest calls, with their checks done here at C speed: x a
    C-contiguous (N, C) float32/float64 array, target a contiguous int64 (N,)
    array, no z-loss, label smoothing in [0, 1], class weights None or a
    C-contiguous float64 (C,) array of finite values (not together with label
    smoothing), sample weights None or a
    C-contiguous float64 (N,) array of finite values >= 0, out None or a
    C-contiguous array of x's shape and dtype not overlapping x.  mode 0: loss;
    1: gradient; 2: (loss, gradient).

    Returns None whenever any of that does not hold, or a target is out of
    range: the caller then takes the general path (pyce._validate.check_ce),
    which converts what it can and raises the right error for the rest.
    """
    cdef cnp.ndarray xa, ta
    cdef int typenum, red
    cdef int64_t n, c, bad, nt
    cdef double denom = 0.0, total = 0.0
    cdef const double *cw
    cdef const double *sw
    cdef cnp.npy_intp dims[1]
    cdef pyce_ce_args a
    if not _plain(x, 2) or not _plain(target, 1):
        return None
    xa = <cnp.ndarray>x
    ta = <cnp.ndarray>target
    typenum = cnp.PyArray_TYPE(xa)
    if (typenum != cnp.NPY_FLOAT and typenum != cnp.NPY_DOUBLE) or cnp.PyArray_TYPE(ta) != cnp.NPY_INT64:
        return None
    n = cnp.PyArray_DIM(xa, 0)
    c = cnp.PyArray_DIM(xa, 1)
    red = _fast_reduction(reduction, mode)
    nt = _fast_threads(n_threads)
    if c < 1 or cnp.PyArray_DIM(ta, 0) != n or red < 0 or nt < 0 or not (
            0.0 <= label_smoothing <= 1.0):
        return None
    # class weights with label smoothing: the general path (the few-class path
    # does not take them; the lanes path checks them there)
    if weight is not None and label_smoothing != 0.0:
        return None
    if not _fast_weights(weight, c, False) or not _fast_weights(sample_weight, n, True):
        return None
    g = None if mode == 0 else _fast_grad(xa, out, typenum, n, c)
    if g is False:
        return None
    cw = <const double *>_ptr(weight)
    sw = <const double *>_ptr(sample_weight)
    with nogil:
        bad = pyce_scan_targets(<const int64_t *>cnp.PyArray_DATA(ta), n, c, ignore_index, cw, sw,
                                &denom)
    if bad >= 0:
        return None
    loss_rows = None
    if red == RED_NONE:
        dims[0] = n
        loss_rows = cnp.PyArray_EMPTY(1, dims, typenum, 0)
    memset(&a, 0, sizeof(pyce_ce_args))
    a.n = n; a.c = c; a.d = 1
    a.x_sn = c; a.x_sc = 1
    a.g_sn = c; a.g_sc = 1
    a.x = cnp.PyArray_DATA(xa)
    a.grad = _ptr(g)
    a.loss = _ptr(loss_rows)
    a.target = <const int64_t *>cnp.PyArray_DATA(ta)
    a.grad_scale = _grad_scale(grad_output, denom, red)
    a.class_weight = cw
    a.sample_weight = sw
    _class_weight_sums(cw, c, &a.class_weight_sum, &a.class_weight_abs_sum)
    a.ignore_index = ignore_index
    a.label_smoothing = label_smoothing
    a.n_threads = <int>nt
    with nogil:
        total = pyce_ce_f64(&a) if typenum == cnp.NPY_DOUBLE else pyce_ce_f32(&a)
    if mode == 1:
        return g
    loss = loss_rows if red == RED_NONE else _loss_scalar(_loss_value(total, denom, red),
                                                          typenum == cnp.NPY_DOUBLE)
    return loss if mode == 0 else (loss, g)


def _elementwise(name, x):
    """The kernels' own exp ('exp_f32', 'exp_f64': for arguments <= 0 or NaN,
    as in the softmax sweeps) or log ('log_f64') on a 1-d array, compiled as in
    the kernels; for tests of their error bounds (tests/loss/test_exp.py)."""
    cdef cnp.ndarray xa, out
    cdef int64_t n
    if name == "exp_f32":
        xa = np.ascontiguousarray(x, dtype=np.float32)
    elif name in ("exp_f64", "log_f64"):
        xa = np.ascontiguousarray(x, dtype=np.float64)
    else:
        raise ValueError(f"unknown function {name!r}")
    out = np.empty_like(xa)
    n = xa.shape[0]
    with nogil:
        if name == "exp_f32":
            pyce_expneg_array_f32(<const float *>cnp.PyArray_DATA(xa), <float *>cnp.PyArray_DATA(out), n)
        elif name == "exp_f64":
            pyce_expneg_array_f64(<const double *>cnp.PyArray_DATA(xa), <double *>cnp.PyArray_DATA(out), n)
        else:
            pyce_log_array_f64(<const double *>cnp.PyArray_DATA(xa), <double *>cnp.PyArray_DATA(out), n)
    return out
