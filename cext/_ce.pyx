# cython: language_level=3
"""Thin Cython layer over cext/pyce_kernels.c.

It takes arrays that pyce/_core.py has already validated (dtype, shape,
strides, target range), fills the kernel's argument struct with their raw
data pointers (no typed memoryviews: acquiring one costs more than a small
batch's whole computation) and runs the kernel without the GIL.
"""
cimport numpy as cnp
import numpy as np
from libc.stdint cimport int64_t

cnp.import_array()

cdef extern from "pyce_kernels.h" nogil:
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
    int pyce_have_openmp()
    int pyce_max_threads()
    const char *pyce_simd_path()
    const char *pyce_compiler()

# ---- fork safety (issue 15): cext/pyce_threads.h
cdef extern from "pyce_threads.h" nogil:
    int pyce_threads_init()
    int pyce_threads_allowed()
    int pyce_threads_pool_started()

cdef extern from "pyce_kernels.h" nogil:
    int pyce_threads_for(int requested, int64_t rows, int64_t c)

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
    const char *PYCE_BUILD_OPENMP
    const char *PYCE_BUILD_COMPILE_ARGS
    const char *PYCE_BUILD_LINK_ARGS
    const char *PYCE_BUILD_CYTHON
    const char *PYCE_BUILD_NUMPY_BUILD
    const char *PYCE_BUILD_PLATFORM


cdef inline void *_ptr(object a):
    if a is None:
        return NULL
    return cnp.PyArray_DATA(<cnp.ndarray>a)


def ce(x, grad, loss, target, target_prob, class_weight, sample_weight, grad_output,
       int64_t n, int64_t c, int64_t d,
       int64_t x_sn, int64_t x_sc, int64_t x_sd,
       int64_t g_sn, int64_t g_sc, int64_t g_sd,
       int64_t t_sn, int64_t t_sc, int64_t t_sd,
       double grad_scale, double class_weight_sum, int64_t ignore_index,
       double label_smoothing, double z_loss, int n_threads, bint f64):
    """Run the fused kernel; returns the sum of the per-row losses (double)."""
    cdef pyce_ce_args a
    cdef double total
    a.n = n; a.c = c; a.d = d
    a.x_sn = x_sn; a.x_sc = x_sc; a.x_sd = x_sd
    a.g_sn = g_sn; a.g_sc = g_sc; a.g_sd = g_sd
    a.t_sn = t_sn; a.t_sc = t_sc; a.t_sd = t_sd
    a.x = _ptr(x)
    a.grad = _ptr(grad)
    a.loss = _ptr(loss)
    a.target = <const int64_t *>_ptr(target)
    a.target_prob = _ptr(target_prob)
    a.class_weight = <const double *>_ptr(class_weight)
    a.sample_weight = <const double *>_ptr(sample_weight)
    a.grad_output = <const double *>_ptr(grad_output)
    a.grad_scale = grad_scale
    a.class_weight_sum = class_weight_sum
    a.ignore_index = ignore_index
    a.label_smoothing = label_smoothing
    a.z_loss = z_loss
    a.n_threads = n_threads
    with nogil:
        if f64:
            total = pyce_ce_f64(&a)
        else:
            total = pyce_ce_f32(&a)
    return total


def softmax(x, out, int64_t n, int64_t c, int64_t d,
            int64_t x_sn, int64_t x_sc, int64_t x_sd,
            int64_t o_sn, int64_t o_sc, int64_t o_sd,
            bint log, int n_threads, bint f64):
    cdef pyce_softmax_args a
    a.n = n; a.c = c; a.d = d
    a.x_sn = x_sn; a.x_sc = x_sc; a.x_sd = x_sd
    a.o_sn = o_sn; a.o_sc = o_sc; a.o_sd = o_sd
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
    """(first bad position or -1, 'mean' denominator)."""
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


cdef inline bint _plain(object a, int ndim):
    """a is an exact ndarray of ndim dimensions, C-contiguous, aligned, native byte order."""
    if type(a) is not cnp.ndarray:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    return (cnp.PyArray_NDIM(arr) == ndim and cnp.PyArray_IS_C_CONTIGUOUS(arr)
            and cnp.PyArray_ISALIGNED(arr) and cnp.PyArray_ISNOTSWAPPED(arr))


_float32 = np.float32
_float64 = np.float64
cdef double _FLT_MAX = 3.4028234663852886e38  # float32's largest finite value
_nan = float("nan")
_inf = float("inf")


def fast_2d(x, target, out, reduction, int64_t ignore_index, n_threads, int mode,
            double grad_output=1.0):
    """The commonest call, with its checks done here at C speed: x a C-contiguous
    (N, C) float32/float64 array, target a contiguous int64 (N,) array, no
    weights, smoothing or z-loss, out None or a C-contiguous array of x's shape
    and dtype not overlapping x.  mode 0: loss; 1: gradient; 2: (loss, gradient).

    Returns None whenever any of that does not hold, or a target is out of
    range: the caller then takes the general path, which raises the right error.
    """
    cdef cnp.ndarray xa, ta, g = None
    cdef int typenum, red
    cdef int64_t n, c, bad, nt
    cdef double denom = 0.0, total = 0.0, scale = 0.0
    cdef pyce_ce_args a
    cdef cnp.npy_intp dims[2]
    if not _plain(x, 2) or not _plain(target, 1):
        return None
    xa = <cnp.ndarray>x
    ta = <cnp.ndarray>target
    typenum = cnp.PyArray_TYPE(xa)
    if typenum != cnp.NPY_FLOAT and typenum != cnp.NPY_DOUBLE:
        return None
    if cnp.PyArray_TYPE(ta) != cnp.NPY_INT64:
        return None
    n = cnp.PyArray_DIM(xa, 0)
    c = cnp.PyArray_DIM(xa, 1)
    if c < 1 or cnp.PyArray_DIM(ta, 0) != n:
        return None
    if reduction == "mean":
        red = 0
    elif reduction == "sum":
        red = 1
    elif reduction == "none":
        if mode == 1:
            return None
        red = 2
    else:
        return None
    if n_threads is None:
        nt = 0
    elif type(n_threads) is int and n_threads > 0:
        nt = n_threads
    else:
        return None
    if mode != 0:
        if out is None:
            dims[0] = n
            dims[1] = c
            g = cnp.PyArray_EMPTY(2, dims, typenum, 0)
        else:
            if (not _plain(out, 2) or cnp.PyArray_TYPE(<cnp.ndarray>out) != typenum
                    or cnp.PyArray_DIM(<cnp.ndarray>out, 0) != n
                    or cnp.PyArray_DIM(<cnp.ndarray>out, 1) != c
                    or not cnp.PyArray_ISWRITEABLE(<cnp.ndarray>out)):
                return None
            g = <cnp.ndarray>out
            if n * c and (<char *>cnp.PyArray_DATA(g) < <char *>cnp.PyArray_DATA(xa) + cnp.PyArray_NBYTES(xa)
                          and <char *>cnp.PyArray_DATA(xa) < <char *>cnp.PyArray_DATA(g) + cnp.PyArray_NBYTES(g)):
                return None
    with nogil:
        bad = pyce_scan_targets(<const int64_t *>cnp.PyArray_DATA(ta), n, c, ignore_index,
                                NULL, NULL, &denom)
    if bad >= 0:
        return None
    loss_rows = None
    if red == 2:
        dims[0] = n
        loss_rows = cnp.PyArray_EMPTY(1, dims, typenum, 0)
    if red == 0:
        scale = grad_output / denom if denom != 0.0 else 0.0
    else:
        scale = grad_output
    a.n = n; a.c = c; a.d = 1
    a.x_sn = c; a.x_sc = 1; a.x_sd = 0
    a.g_sn = c; a.g_sc = 1; a.g_sd = 0
    a.t_sn = 0; a.t_sc = 0; a.t_sd = 0
    a.x = cnp.PyArray_DATA(xa)
    a.grad = NULL if g is None else cnp.PyArray_DATA(g)
    a.loss = _ptr(loss_rows)
    a.target = <const int64_t *>cnp.PyArray_DATA(ta)
    a.target_prob = NULL
    a.class_weight = NULL
    a.sample_weight = NULL
    a.grad_output = NULL
    a.grad_scale = scale
    a.class_weight_sum = <double>c
    a.ignore_index = ignore_index
    a.label_smoothing = 0.0
    a.z_loss = 0.0
    a.n_threads = <int>nt
    with nogil:
        if typenum == cnp.NPY_DOUBLE:
            total = pyce_ce_f64(&a)
        else:
            total = pyce_ce_f32(&a)
    if mode == 1:
        return g
    if red == 2:
        loss = loss_rows
    else:
        if red == 0:
            total = total / denom if denom != 0.0 else _nan
        if typenum != cnp.NPY_DOUBLE and (total > _FLT_MAX or total < -_FLT_MAX):
            # beyond float32's range: inf, as _core._reduce gives, without
            # NumPy's "overflow encountered in cast" warning
            total = _inf if total > 0 else -_inf
        loss = _float64(total) if typenum == cnp.NPY_DOUBLE else _float32(total)
    if mode == 0:
        return loss
    return loss, g


cdef extern from "pyce_kernels.h" nogil:
    void pyce_expneg_array_f32(const float *x, float *out, int64_t n)
    void pyce_expneg_array_f64(const double *x, double *out, int64_t n)
    void pyce_log_array_f64(const double *x, double *out, int64_t n)


def _elementwise(name, x):
    """The kernels' own exp ('exp_f32', 'exp_f64': for arguments <= 0 or NaN,
    as in the softmax sweeps) or log ('log_f64') on a 1-d array, compiled as in
    the kernels; for tests of their error bounds (tests/test_exp.py)."""
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
