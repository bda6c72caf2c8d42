"""The kernel benchmark table behind `python -m pyce bench` and bench/report.py.

It times one training step's worth of cross-entropy work, loss and gradient
of a float32 (N, C) batch with 'mean' reduction, with pyce's fused kernel,
with pyce.reference (plain NumPy) and, when it is installed, with torch
(forward + backward through autograd on the CPU).  Each cell is the median of
`repeats` timings with time.perf_counter after one warm-up call; the median
ignores the occasional slow run on a shared machine.
"""
import platform
import statistics
import sys
import time

import numpy as np

__all__ = ["SHAPES", "QUICK_SHAPES", "report", "time_call"]

# (N, C): a small-MLP batch, an ImageNet-sized head, a language-model vocabulary.
SHAPES = [(256, 10), (1024, 1000), (4096, 1000), (64, 32000)]
QUICK_SHAPES = [(256, 10), (1024, 1000)]


def time_call(fn, repeats):
    """Median wall time of fn() in seconds over `repeats` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _torch_step():
    try:
        import torch
    except ImportError:
        return None

    def make(x, y):
        xt = torch.from_numpy(x).requires_grad_(True)
        yt = torch.from_numpy(y)

        def step():
            xt.grad = None
            loss = torch.nn.functional.cross_entropy(xt, yt)
            loss.backward()
            return loss
        return step
    return make


def report(quick=False, file=None):
    """Print the benchmark table (median microseconds per loss+gradient call) to `file`.

    quick=True uses two small shapes and fewer repeats (a few seconds in
    all).  Returns the rows as a list of dicts (shape, pyce_us, reference_us,
    torch_us or None, speedup over the reference and over torch).
    """
    import pyce
    from pyce import reference

    out = file if file is not None else sys.stdout
    shapes = QUICK_SHAPES if quick else SHAPES
    torch_make = _torch_step()
    rng = np.random.default_rng(0)
    rows = []
    for n, c in shapes:
        x = rng.standard_normal((n, c)).astype(np.float32)
        y = rng.integers(0, c, n)
        repeats = max(3, min(50, int(2e7 // (n * c)))) if not quick else 5
        row = {"shape": (n, c),
               "pyce_us": 1e6 * time_call(lambda: pyce.cross_entropy_and_grad(x, y), repeats),
               "reference_us": 1e6 * time_call(lambda: reference.cross_entropy_and_grad(x, y),
                                               repeats),
               "torch_us": None}
        if torch_make is not None:
            row["torch_us"] = 1e6 * time_call(torch_make(x, y), repeats)
        rows.append(row)

    print(f"pyce {pyce.__version__} benchmark: float32 loss + gradient, reduction='mean', "
          f"median of repeated calls (microseconds); {platform.machine()}, "
          f"NumPy {np.__version__}", file=out)
    header = f"{'N x C':>14} {'pyce':>10} {'reference':>10} {'torch':>10} {'vs ref':>8} {'vs torch':>9}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for r in rows:
        n, c = r["shape"]
        torch_cell = f"{r['torch_us']:10.1f}" if r["torch_us"] is not None else f"{'-':>10}"
        vs_torch = (f"{r['torch_us'] / r['pyce_us']:8.1f}x" if r["torch_us"] is not None
                    else f"{'-':>9}")
        print(f"{f'{n} x {c}':>14} {r['pyce_us']:10.1f} {r['reference_us']:10.1f} {torch_cell} "
              f"{r['reference_us'] / r['pyce_us']:7.1f}x {vs_torch}", file=out)
    if torch_make is None:
        print("(torch is not installed: its column is empty)", file=out)
    return rows
