"""Thread safety, GIL release and determinism across n_threads.

- 8 Python threads calling every public function at once give results
  bitwise identical to serial calls (the kernels keep no shared state).
- The kernels release the GIL: another Python thread runs while a kernel call
  is in progress.
- Results are bitwise identical for n_threads = 1, 2, 3, 4 and 8 (and None).
  The input must have >= 65536 elements for the kernels to split work at all
  (smaller inputs run serially), hence 2048 x 64, 512 x 1000 and a K-dim case.
"""
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import pyce


def _bits(result):
    """Bytes of every output, so NaN == NaN and -0.0 != 0.0 (bitwise identity)."""
    outs = result if isinstance(result, tuple) else (result,)
    return b"".join(np.ascontiguousarray(np.asarray(o)).tobytes() for o in outs)


def _calls(rng, dtype, n=256, c=40):
    """(function name, args, kwargs) covering every public function and its options."""
    x = (rng.standard_normal((n, c)) * 4).astype(dtype)
    x[3, 5] = -np.inf
    x[7, 1] = np.nan
    t = rng.integers(0, c, n)
    t[::17] = -100
    w = rng.uniform(0, 2, c)
    sw = rng.uniform(0, 2, n)
    tp = rng.dirichlet(np.ones(c), n).astype(dtype)
    x3 = (rng.standard_normal((8, c, 9)) * 3).astype(dtype)
    t3 = rng.integers(0, c, (8, 9))
    return [
        ("cross_entropy", (x, t), {"weight": w, "label_smoothing": 0.1}),
        ("cross_entropy", (x, tp), {"reduction": "none", "z_loss": 1e-3}),
        ("cross_entropy", (x3, t3), {"sample_weight": rng.uniform(0, 1, (8, 9))}),
        ("cross_entropy_backward", (x, t, 0.5), {"reduction": "sum", "weight": w}),
        ("cross_entropy_backward", (x3, t3, rng.standard_normal((8, 9))), {"reduction": "none"}),
        ("cross_entropy_and_grad", (x, t), {"sample_weight": sw, "z_loss": 1e-4}),
        ("cross_entropy_and_grad", (np.asfortranarray(x), tp), {"label_smoothing": 0.2}),
        ("softmax", (x,), {}),
        ("log_softmax", (x3,), {"axis": 1}),
        ("softmax", (x.T,), {"axis": 0}),
    ]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_eight_python_threads_match_serial_calls(dtype):
    rng = np.random.default_rng(0)
    calls = _calls(rng, dtype) * 4  # 40 calls over 8 threads, several at once
    serial = [_bits(getattr(pyce, f)(*a, **k)) for f, a, k in calls]
    start = threading.Barrier(8)

    def work(i):
        if i < 8:
            start.wait()  # all 8 threads start calling at the same moment
        f, a, k = calls[i]
        return _bits(getattr(pyce, f)(*a, **k))

    for _ in range(3):
        with ThreadPoolExecutor(8) as pool:
            threaded = list(pool.map(work, range(len(calls))))
        bad = [calls[i][0] for i in range(len(calls)) if threaded[i] != serial[i]]
        assert not bad, f"threaded results differ from serial for {bad}"


def test_kernels_release_the_gil():
    # With a switch interval of 10 s, the thread holding the GIL keeps it until it
    # blocks or releases it.  The worker marks `inside` and then runs only the
    # validation (Python, holds the GIL) and kernel calls; the main thread can only
    # see inside == True if some kernel call released the GIL.
    x = np.random.default_rng(1).standard_normal((2048, 1000))
    t = np.zeros(2048, np.int64)
    state = {"inside": False, "seen": 0}

    def worker():
        state["inside"] = True
        for _ in range(20):
            pyce.cross_entropy_and_grad(x, t, n_threads=1)
        state["inside"] = False

    old = sys.getswitchinterval()
    sys.setswitchinterval(10.0)
    try:
        th = threading.Thread(target=worker)
        th.start()
        while th.is_alive():
            if state["inside"]:
                state["seen"] += 1
            th.join(0.002)  # releases the GIL so the worker can take it back
    finally:
        sys.setswitchinterval(old)
    assert state["seen"] > 0, "the main thread never ran during a kernel call"


SHAPES = [(2048, 64), (512, 1000), (64, 32, 40)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_bitwise_identical_for_every_n_threads(shape, dtype):
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    assert x.size >= 65536  # below this the kernels never split work
    c = shape[1]
    t = rng.integers(0, c, (shape[0],) + shape[2:])
    tp = rng.random(shape).astype(dtype)
    sw = rng.uniform(0, 2, t.shape)
    calls = [
        ("cross_entropy", (x, t), {"label_smoothing": 0.1, "z_loss": 1e-4}),
        ("cross_entropy", (x, tp), {"reduction": "sum", "sample_weight": sw}),
        ("cross_entropy_backward", (x, t, 1.5), {"reduction": "sum"}),
        ("cross_entropy_and_grad", (x, t), {"weight": rng.uniform(0, 2, c)}),
        ("softmax", (x,), {"axis": 1}),
        ("log_softmax", (x,), {"axis": 1}),
    ]
    for f, a, k in calls:
        want = _bits(getattr(pyce, f)(*a, n_threads=1, **k))
        for nt in (2, 3, 4, 8, None):
            got = _bits(getattr(pyce, f)(*a, n_threads=nt, **k))
            assert got == want, f"{f} {shape} {np.dtype(dtype).name}: n_threads={nt} differs from 1"
