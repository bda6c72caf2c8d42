"""No leaks: many calls of every public function, including calls that raise,
do not grow memory.

Run in a fresh subprocess (this file doubles as the script), so its peak RSS
(ru_maxrss) is not hidden by whatever the test session allocated before.  The
child warms up, records ru_maxrss, makes PYCE_LEAK_CALLS calls (default 3000 in
CI; `PYCE_LEAK_CALLS=100000` for the full run), and reports the growth of the
peak; it must be < 4 MB.  Each call handles ~16 KB arrays, so leaking one
input-sized buffer per call would grow the peak by ~48 MB in CI (1.6 GB full).

Separately, in-process: reference counts of the arguments and the number of
gc-tracked objects are unchanged after many calls (catches a leaked
reference even when it is too small for the RSS check).
"""
import gc
import json
import os
import resource
import subprocess
import sys

import numpy as np

import pyce

LIMIT_BYTES = 4 * 2**20


def _workload(rng):
    """(function, args, kwargs, raises) tuples: every public function, ok and raising."""
    x = rng.standard_normal((64, 32))
    x32 = x.astype(np.float32)
    t = rng.integers(0, 32, 64)
    tp = rng.dirichlet(np.ones(32), 64)
    out = np.empty_like(x)
    bad_t = t.copy()
    bad_t[5] = 99
    return [
        (pyce.cross_entropy, (x, t), {"weight": np.ones(32), "label_smoothing": 0.1}, False),
        (pyce.cross_entropy, (x32, t), {"reduction": "none", "z_loss": 1e-3}, False),
        (pyce.cross_entropy, (x, tp), {"sample_weight": np.ones(64)}, False),
        (pyce.cross_entropy_backward, (x, t, np.ones(64)), {"reduction": "none"}, False),
        (pyce.cross_entropy_and_grad, (x, t), {"out": out}, False),
        (pyce.cross_entropy_and_grad, (x.copy(), t), {"overwrite_input": True}, False),
        (pyce.softmax, (x32,), {}, False),
        (pyce.log_softmax, (x.T,), {"axis": 0}, False),
        # calls that raise, at different stages of validation
        (pyce.cross_entropy, (x, bad_t), {}, True),                      # IndexError, after scan
        (pyce.cross_entropy, (x, t), {"weight": np.ones(3)}, True),      # ValueError
        (pyce.cross_entropy_and_grad, (x, t), {"out": out, "overwrite_input": True}, True),
        (pyce.cross_entropy_backward, (x, t, np.ones(3)), {"reduction": "none"}, True),
        (pyce.softmax, (x,), {"out": np.empty((2, 2))}, True),
        (pyce.cross_entropy, (x.astype(np.int64), t), {}, True),         # TypeError
    ]


def _run(work, calls):
    for i in range(calls):
        f, a, k, raises = work[i % len(work)]
        try:
            f(*a, **k)
        except (ValueError, TypeError, IndexError):
            if not raises:
                raise
        else:
            if raises:
                raise AssertionError(f"{f.__name__} should have raised")


def _child(calls):
    work = _workload(np.random.default_rng(0))
    _run(work, 2000)  # warm-up: caches, allocator pools
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _run(work, calls)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KB on Linux
    print(json.dumps({"growth_bytes": (after - before) * scale, "calls": calls}))


def test_peak_memory_does_not_grow(tmp_path):
    calls = int(os.environ.get("PYCE_LEAK_CALLS", "3000"))
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), str(calls)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["calls"] == calls
    assert res["growth_bytes"] < LIMIT_BYTES, (
        f"peak RSS grew by {res['growth_bytes'] / 2**20:.1f} MB over {calls} calls")


def test_arguments_reference_counts_and_gc_objects_are_stable():
    work = _workload(np.random.default_rng(1))
    _run(work, 3 * len(work))
    args = [obj for _, a, k, _ in work for obj in (*a, *k.values())
            if isinstance(obj, np.ndarray)]
    refs = [sys.getrefcount(o) for o in args]
    gc.collect()
    n_objects = len(gc.get_objects())
    _run(work, 50 * len(work))
    gc.collect()
    assert [sys.getrefcount(o) for o in args] == refs
    assert len(gc.get_objects()) <= n_objects + 50


if __name__ == "__main__":
    _child(int(sys.argv[1]))
