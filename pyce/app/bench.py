"""The kernel benchmark table (`pyce bench [--quick]`, `python bench/report.py`).

For each shape: pyce's fused forward+backward writing into a preallocated
`out=` (2 threads and 1 thread), the copy floor (np.copyto of the same array),
the forward alone beside one read pass (np.sum), the NumPy reference and torch
(when installed; without it the torch columns show '-').  Implementations are timed in turns in one process, so
they see the same machine state; the table gives medians and the ratios that
matter (pyce / floor, reference / pyce, torch / pyce).
"""
import importlib.util
import os
import platform
import sys
import time

import numpy as np

from pyce import _ce

# C = 10 (MNIST, CIFAR-10, the digits) small and at memory size; 1000 and 32000 classes;
# 64 rows of 1 000 000 classes, each row beyond the L2 cache (the segmented max-and-sum
# path of cext/pyce_ce_online.c; one row per block, so both threads work)
SHAPES = [(128, 10), (1024, 10), (262144, 10), (4096, 1000), (2048, 32000), (64, 1000000)]
QUICK_SHAPES = [(128, 10), (1024, 10), (4096, 1000)]


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_summary():
    """One line (str) naming the CPU, cores, SIMD path, threads and BLAS (via threadpoolctl)."""
    from pyce._config import build_config
    from pyce.app import installed_version
    info = build_config()
    blas = ""
    if importlib.util.find_spec("threadpoolctl") is not None:
        from threadpoolctl import threadpool_info
        libs = [f"{d.get('internal_api')} {d.get('num_threads')} threads ({d.get('architecture')})"
                for d in threadpool_info() if d.get("user_api") == "blas"]
        blas = "; BLAS: " + ", ".join(libs) if libs else ""
    return (f"{_cpu_name()}, {os.cpu_count()} cores; pyce {installed_version()} "
            f"{info['simd_path']}, OpenMP {'on' if info['openmp'] else 'off'} "
            f"({info['max_threads']} threads); numpy {np.__version__}{blas}")


def _time_round_robin(fns, budget, blocks=5):
    """Median seconds of each function, timed in turns: `blocks` rounds in each of
    which every function runs for its share of the budget.  Turns rather than
    one call each, because thread pools (OpenMP, OpenBLAS, torch) keep spinning
    for a while after a call and would tax whichever call comes next."""
    for f in fns.values():
        f()  # warm up (page faults, caches, lazy imports)
    times = {k: [] for k in fns}
    share = budget / (blocks * len(fns))
    for _ in range(blocks):
        for k, f in fns.items():
            end = time.perf_counter() + share
            count = 0
            while count < 3 or (time.perf_counter() < end and count < 2000):
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
                count += 1
    return {k: float(np.median(v)) for k, v in times.items()}


def _fmt(seconds):
    """A time for the table: us below 1 ms, else ms; '-' for a missing (NaN) one."""
    if seconds != seconds:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    return f"{seconds * 1e3:.2f} ms"


def _import_torch():
    """torch, or None when it is not installed or cannot be imported (the columns show '-')."""
    if importlib.util.find_spec("torch") is None:
        return None
    try:
        import torch
    except ImportError:
        return None
    return torch


def measure(shape, dtype, budget=1.0, with_reference=True, with_torch=True):
    """Medians (seconds) of every implementation for one (N, C) float array.

    shape : (N, C); dtype : float32 or float64; budget : seconds of timing in all;
    with_reference, with_torch : include pyce.reference / torch (when importable).
    Returns {name: median seconds}; 'reference' and 'torch' are NaN when left out.
    """
    import pyce.reference as ref
    from pyce._core import cross_entropy, cross_entropy_and_grad
    n, c = shape
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((n, c), dtype=np.float32) * 3).astype(dtype)
    t = rng.integers(0, c, n)
    out = np.empty_like(x)
    fns = {
        "copy": lambda: np.copyto(out, x),
        "sum": lambda: np.sum(x),
        "pyce": lambda: cross_entropy_and_grad(x, t, out=out),
        "pyce_1thread": lambda: cross_entropy_and_grad(x, t, out=out, n_threads=1),
        "pyce_forward": lambda: cross_entropy(x, t),
    }
    if with_reference:
        fns["reference"] = lambda: ref.cross_entropy_and_grad(x, t)
    # fork safety (issue 15): in a forked child of a process whose OpenMP pool
    # was started, torch (whose libgomp.so.1 the loader shares with pyce's)
    # would wait forever for that pool; its column stays empty there.
    if _ce.threads_info()["serial_after_fork"]:
        with_torch = False
    torch = _import_torch() if with_torch else None
    if torch is not None:
        xt, tt = torch.from_numpy(x), torch.from_numpy(t)

        def torch_fused():
            xx = xt.detach().requires_grad_()
            torch.nn.functional.cross_entropy(xx, tt).backward()
        fns["torch"] = torch_fused
    res = _time_round_robin(fns, budget)
    res.setdefault("reference", float("nan"))
    res.setdefault("torch", float("nan"))
    return res


def _ratio(a, b, width, digits):
    """a / b as e.g. '  3.56x' right-aligned in `width`; '-' when either time is missing (NaN)."""
    value = a / b
    text = "-" if value != value else f"{value:.{digits}f}x"
    return f"{text:>{width}}"


def _row(shape, dtype, r):
    """One line of the table for the medians r of measure()."""
    return (f"{shape[0]:>6} x {shape[1]:<7} {dtype:>7} | {_fmt(r['pyce']):>9} "
            f"{_fmt(r['pyce_1thread']):>9} {_fmt(r['copy']):>9} "
            f"{_ratio(r['pyce'], r['copy'], 6, 2)} | "
            f"{_fmt(r['pyce_forward']):>9} {_fmt(r['sum']):>9} "
            f"{_ratio(r['pyce_forward'], r['sum'], 5, 2)} | "
            f"{_fmt(r['reference']):>9} {_ratio(r['reference'], r['pyce'], 8, 1)} | "
            f"{_fmt(r['torch']):>9} {_ratio(r['torch'], r['pyce'], 10, 1)}")


def report(quick=False, file=None, dtypes=("float32", "float64"), budget=None):
    """Print the benchmark table and return its rows.

    quick : bool, QUICK_SHAPES (a few seconds) instead of SHAPES.
    file : text stream (default sys.stdout).
    dtypes : the dtypes to time, each for every shape.
    budget : seconds of timing per shape (default 0.3 quick, 1.5 otherwise).
    Returns a list of dicts: shape, dtype and the medians of measure().
    """
    file = file or sys.stdout
    shapes = QUICK_SHAPES if quick else SHAPES
    budget = budget if budget is not None else (0.3 if quick else 1.5)
    print(f"machine: {machine_summary()}", file=file)
    print("fused = cross_entropy_and_grad(x, t, out=preallocated), reduction 'mean'; "
          "medians, timed in turns in one process", file=file)
    head = (f"{'N x C':>16} {'dtype':>7} | {'pyce':>9} {'1 thread':>9} {'copy':>9} {'/copy':>6} | "
            f"{'forward':>9} {'sum':>9} {'/sum':>5} | {'reference':>9} {'ref/pyce':>8} | "
            f"{'torch':>9} {'torch/pyce':>10}")
    print(head, file=file)
    print("-" * len(head), file=file)
    rows = []
    for dtype in dtypes:
        for shape in shapes:
            r = measure(shape, dtype, budget)
            rows.append(dict(shape=shape, dtype=dtype, **r))
            print(_row(shape, dtype, r), file=file, flush=True)
    return rows
