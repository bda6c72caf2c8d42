"""A/B timing of the few-classes and huge-row fast paths (cext/pyce_ce_small.c,
cext/pyce_ce_online.c) against the older kernel paths, one process per path.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/ab_fast_paths.py

Each line: medians of fused cross_entropy_and_grad(out=) with 2 threads and with
1, the forward alone, np.copyto and np.sum of the same array, timed in turns in
one process; PYCE_SMALL_ISA (avx512, avx2, none = the older paths) picks the path
at import, so every path runs in its own subprocess. Run it from outside the
repository checkout (or with python -P) so the installed pyce is imported.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

CASES = [(1024, 10, "float32"), (262144, 10, "float32"), (1024, 10, "float64"),
         (262144, 10, "float64"), (64, 1_000_000, "float32")]


def measure(n, c, dtype, rounds=7):
    """Median seconds per implementation for one (N, C) case."""
    import pyce
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((n, c), dtype=np.float32) * 3).astype(dtype)
    t = rng.integers(0, c, n)
    out = np.empty_like(x)
    fns = {"copy": lambda: np.copyto(out, x), "sum": lambda: np.sum(x),
           "fused": lambda: pyce.cross_entropy_and_grad(x, t, out=out),
           "fused_1t": lambda: pyce.cross_entropy_and_grad(x, t, out=out, n_threads=1),
           "forward": lambda: pyce.cross_entropy(x, t)}
    reps = max(3, int(2e7 // (n * c)))
    times = {k: [] for k in fns}
    for f in fns.values():
        f()
    for _ in range(rounds):
        for k, f in fns.items():
            for _ in range(reps):
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default="avx512,avx2,none")
    parser.add_argument("--one", nargs=3, metavar=("N", "C", "DTYPE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        n, c, dt = int(args.one[0]), int(args.one[1]), args.one[2]
        r = measure(n, c, dt)
        print(f"{os.environ.get('PYCE_SMALL_ISA', '-'):>6} {n:>7} x {c:<7} {dt:>7} | "
              f"fused {r['fused'] * 1e6:9.1f} us {r['fused'] / r['copy']:5.2f}x copy | "
              f"1 thread {r['fused_1t'] * 1e6:9.1f} us {r['fused_1t'] / r['copy']:5.2f}x | "
              f"forward {r['forward'] * 1e6:9.1f} us {r['forward'] / r['sum']:5.2f}x sum | "
              f"copy {r['copy'] * 1e6:8.1f} us  sum {r['sum'] * 1e6:8.1f} us", flush=True)
        return
    for n, c, dt in CASES:
        for path in args.paths.split(","):
            env = dict(os.environ, PYCE_SMALL_ISA=path)
            subprocess.run([sys.executable, "-P", os.path.abspath(__file__), "--one", str(n),
                            str(c), dt], env=env, check=True)


if __name__ == "__main__":
    main()
