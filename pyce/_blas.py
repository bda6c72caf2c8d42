"""The BLAS NumPy itself uses, through ctypes: cblas gemm and the thread count.

NumPy's wheels bundle scipy-openblas (ILP64: symbols ``scipy_cblas_?gemm64_``,
``scipy_openblas_{get,set}_num_threads64_``) in ``numpy.libs/``. Opening that
file by path gives the already-loaded instance, with NumPy's own thread pool,
so a gemm called here and a thread count set here are exactly those of
``np.matmul``. When NumPy was built against another BLAS (a conda or distro
NumPy), nothing is found: gemm() returns None, get_num_threads() returns None,
set_num_threads() does nothing, and callers fall back to NumPy.

Thread policy for small products (``threads_for``, used by pyce.train.fit):
OpenBLAS hands a product to its worker threads when it is large enough, and
the workers spin while they wait for work and for each other. On a machine
whose cores are all busy with other processes, a spinning worker waits for a
time slice, and a tiny product (microseconds of arithmetic) then takes
milliseconds: `pyce train` on the digits took 17 s instead of 0.9 s with both
cores busy. Products below SMALL_PRODUCT_MACS multiply-adds gain little from
a second thread even when the cores are idle (README, "The trainer", has the
measurements), so they run on one thread; larger ones keep NumPy's default.
"""
import contextlib
import ctypes
import glob
import os
import threading

import numpy as np

__all__ = ["gemm", "get_num_threads", "set_num_threads", "limit_threads", "threads_for",
           "SMALL_PRODUCT_MACS"]

#: Below this many multiply-adds (m * n * k) per product a step's products run
#: on one BLAS thread (see the module docstring). 2**24 = 16.8 M: the digits
#: network's largest product is 64 x 64 x 256 = 1 M, the CIFAR network's
#: 128 x 3072 x 512 = 201 M.
SMALL_PRODUCT_MACS = 1 << 24

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

_LOCK = threading.Lock()
_STATE = {}


def _library():
    """The ctypes handle of NumPy's bundled scipy-openblas, or None."""
    if "lib" not in _STATE:
        lib = None
        try:
            libdir = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
            paths = sorted(glob.glob(os.path.join(libdir, "libscipy_openblas64_*.so*")))
            if paths:
                lib = ctypes.CDLL(paths[0])
        except OSError:
            lib = None
        _STATE["lib"] = lib
    return _STATE["lib"]


def _function(name, argtypes, restype):
    key = "fn:" + name
    if key not in _STATE:
        lib, fn = _library(), None
        if lib is not None:
            fn = getattr(lib, name, None)
            if fn is not None:
                fn.argtypes, fn.restype = argtypes, restype
        _STATE[key] = fn
    return _STATE[key]


def gemm(dtype):
    """NumPy's cblas_sgemm / cblas_dgemm (ILP64) for dtype float32 / float64, or None.

    The returned function takes (order, trans_a, trans_b, m, n, k, alpha,
    a_ptr, lda, b_ptr, ldb, beta, c_ptr, ldc) as cblas_?gemm does (order
    101 = row major, trans 111 = no, 112 = yes; pointers as ints, e.g.
    ``a.ctypes.data``) and computes C = alpha op(A) op(B) + beta C in place.
    None when NumPy's BLAS is not the bundled scipy-openblas or the dtype is
    another one.
    """
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        return None
    real = ctypes.c_float if dt == np.float32 else ctypes.c_double
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    return _function(f"scipy_cblas_{'s' if dt == np.float32 else 'd'}gemm64_",
                     [ctypes.c_int, ctypes.c_int, ctypes.c_int, i64, i64, i64, real,
                      ptr, i64, ptr, i64, real, ptr, i64], None)


def get_num_threads():
    """The number of threads NumPy's BLAS uses now, or None when not found."""
    fn = _function("scipy_openblas_get_num_threads64_", [], ctypes.c_int)
    return None if fn is None else int(fn())


def set_num_threads(n):
    """Set the number of threads of NumPy's BLAS (a positive int); returns the
    previous number, or None (and does nothing) when the BLAS was not found."""
    fn = _function("scipy_openblas_set_num_threads64_", [ctypes.c_int], None)
    if fn is None:
        return None
    with _LOCK:
        before = get_num_threads()
        fn(int(n))
    return before


@contextlib.contextmanager
def limit_threads(n):
    """Context: NumPy's BLAS on at most n threads (None: unchanged) inside the
    block, the previous count restored on exit (also on an exception). Yields
    the count in effect inside (None when the BLAS was not found)."""
    before = get_num_threads()
    if n is None or before is None or n >= before:
        yield before
        return
    set_num_threads(n)
    try:
        yield n
    finally:
        set_num_threads(before)


def threads_for(macs):
    """The BLAS thread limit for products of at most `macs` multiply-adds:
    1 below SMALL_PRODUCT_MACS, None (NumPy's default) from there on."""
    return 1 if macs < SMALL_PRODUCT_MACS else None
