"""The BLAS NumPy itself uses, through ctypes: cblas gemm and the thread count.

NumPy's wheels bundle scipy-openblas (ILP64: symbols ``scipy_cblas_?gemm64_``,
``scipy_openblas_{get,set}_num_threads64_``) in ``numpy.libs/``. Opening that
file by path gives the already-loaded instance, with NumPy's own thread pool,
so a gemm called here and a thread count set here are exactly those of
``np.matmul``. When NumPy was built against another BLAS (a conda or distro
NumPy), nothing is found: gemm() returns None, get_num_threads() returns None,
set_num_threads() does nothing, and callers fall back to NumPy.

Thread policy (AdaptiveThreads, used by pyce.train.fit by default). OpenBLAS
hands a product to its worker threads, which spin while they wait for work and
for each other. When other processes keep every core busy, a spinning worker
waits for a time slice, and a product of microseconds takes milliseconds:
`pyce train` on the digits took 17 s instead of 0.9 s with both cores busy.
On idle cores a second thread does help (7.0 instead of 8.0 ms per digits
epoch on the machine of issue 12). So the thread count follows the cores the
*other* processes leave idle, measured from /proc/stat (all CPU time minus
this process's own) over windows of WINDOW_SECONDS: it starts at one thread
and goes up to NumPy's default only while those cores are free. Where
/proc/stat does not exist, products below SMALL_PRODUCT_MACS multiply-adds
run on one thread and larger ones with NumPy's default (threads_for).
"""
import contextlib
import ctypes
import glob
import os
import threading
import time

import numpy as np

__all__ = ["gemm", "get_num_threads", "set_num_threads", "limit_threads", "threads_for",
           "AdaptiveThreads", "SMALL_PRODUCT_MACS", "WINDOW_SECONDS", "axpy"]

#: Length of the windows over which AdaptiveThreads measures the other
#: processes' CPU use: /proc/stat counts in ticks of 10 ms, so a quarter of a
#: second gives 25 ticks per core, enough to tell half a busy core.
WINDOW_SECONDS = 0.25

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


def axpy(dtype):
    """NumPy's cblas_saxpy / cblas_daxpy (ILP64) for dtype float32 / float64, or None.

    The returned function takes (n, alpha, x_ptr, incx, y_ptr, incy) and
    computes y = alpha x + y in place, on the BLAS's own threads (the count
    set_num_threads / limit_threads chose: no second thread pool competing
    for the cores). None when NumPy's BLAS is not the bundled scipy-openblas
    or the dtype is another one.
    """
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        return None
    real = ctypes.c_float if dt == np.float32 else ctypes.c_double
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    return _function(f"scipy_cblas_{'s' if dt == np.float32 else 'd'}axpy64_",
                     [i64, real, ptr, i64, ptr, i64], None)


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


def _cpu_sample():
    """(ticks of all cores, idle ticks, cores counted, this process's ticks), or
    None where /proc/stat cannot be read."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    v = [int(x) for x in lines[0].split()[1:]]
    cores = sum(1 for ln in lines[1:] if ln.startswith("cpu"))
    t = os.times()
    own = (t.user + t.system) * os.sysconf("SC_CLK_TCK")
    return sum(v), v[3] + v[4], max(cores, 1), own


def _usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class AdaptiveThreads:
    """NumPy's BLAS on as many threads as the other processes leave cores idle.

    max_threads: the ceiling (NumPy's default thread count when None).
    Starts at one thread; tick() (cheap: a clock read) is called once per
    training step, and every WINDOW_SECONDS it reads /proc/stat and sets the
    count to round(idle cores), clamped to [1, max_threads]. Use as a
    context: the thread count in effect before is restored on exit. `counts`
    lists the counts chosen, for tests and reports. Without NumPy's bundled
    OpenBLAS it does nothing; without /proc/stat it stays at one thread.
    """

    def __init__(self, max_threads=None):
        self.before = get_num_threads()
        self.max = max_threads or self.before or 1
        self.active = self.before is not None and _cpu_sample() is not None
        self.counts = []
        self._t0 = self._s0 = None

    def __enter__(self):
        if self.active:
            self._set(1)
            self._open_window()
        return self

    def __exit__(self, *exc):
        if self.active:
            set_num_threads(self.before)
        return False

    def _set(self, n):
        if not self.counts or self.counts[-1] != n:
            set_num_threads(n)
            self.counts.append(n)

    def _open_window(self):
        self._t0, self._s0 = time.perf_counter(), _cpu_sample()

    def tick(self):
        """Re-decide the thread count when the current window is over."""
        if not self.active or time.perf_counter() - self._t0 < WINDOW_SECONDS:
            return
        s1 = _cpu_sample()
        total = 0 if s1 is None else s1[0] - self._s0[0]
        if total > 0:
            busy = total - (s1[1] - self._s0[1])
            others = max(0.0, busy - (s1[3] - self._s0[3])) * s1[2] / total  # in cores
            idle = min(_usable_cores(), s1[2]) - others
            self._set(max(1, min(self.max, int(idle + 0.5))))
        self._open_window()
