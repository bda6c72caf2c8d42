"""Benchmark: fused linear + cross-entropy vs the unfused NumPy + pyce path (and torch).

Two ways to run it (neither is a timed test):

  pytest bench/bench_linear.py --benchmark-only        # pytest-benchmark, "small" size only
  PYCE_BENCH_LARGE=1 pytest bench/bench_linear.py --benchmark-only   # + N=4096, H=1024, V=32000

  python bench/bench_linear.py [N H V ...]             # side-by-side report for the README:
      medians of interleaved runs of fused (default chunk), fused with chunk_size=768
      and unfused in one process, torch in a child process (its own thread pool would
      disturb the others); extra peak memory by tracemalloc and by RSS (each variant
      in a fresh subprocess, after a warm-up call); BLAS in use (threadpoolctl).

"Unfused" is the best plain path: logits = hidden @ weight.T, then
pyce.cross_entropy_and_grad(logits, overwrite_input=True) (gradient written over the
logits), d_hidden = G @ weight, d_weight = G.T @ hidden. "Extra" memory is the peak
beyond the inputs and the returned gradients.

On a shared machine, prefix with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` if
those are set (they slow OpenBLAS down there).
"""
import os
import statistics
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

import pyce

SMALL = (1024, 256, 32000)  # logits 131 MB, default chunk 192 rows: a few seconds
LARGE = [(4096, 1024, 32000), (2048, 1024, 128000)]


def make_problem(n, h, v, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    hidden = rng.standard_normal((n, h), dtype=np.float32).astype(dtype, copy=False)
    weight = rng.standard_normal((v, h), dtype=np.float32).astype(dtype, copy=False)
    weight *= h ** -0.5  # in place: no (V, H) temporary to inflate the RSS baseline
    target = rng.integers(0, v, n)
    target[::17] = -100  # a few ignored rows, as padding would be
    return hidden, weight, target


def fused(hidden, weight, target):
    return pyce.linear_cross_entropy_and_grad(hidden, weight, target)


def fused_chunk768(hidden, weight, target):
    """A 4x larger chunk than the default: BLAS is faster for products with more rows
    (g @ weight has K = V >> M = chunk), at 4x the buffer memory."""
    return pyce.linear_cross_entropy_and_grad(hidden, weight, target, chunk_size=768)


def unfused(hidden, weight, target):
    logits = hidden @ weight.T
    loss, g = pyce.cross_entropy_and_grad(logits, target, overwrite_input=True)
    return loss, g @ weight, g.T @ hidden, None


def torch_unfused(hidden, weight, target):
    import torch
    F = torch.nn.functional
    ht = torch.from_numpy(hidden).requires_grad_()
    wt = torch.from_numpy(weight).requires_grad_()
    loss = F.cross_entropy(F.linear(ht, wt), torch.from_numpy(target))
    loss.backward()
    return loss.item(), ht.grad, wt.grad, None


VARIANTS = {"fused": fused, "fused-chunk768": fused_chunk768,
            "unfused": unfused,
            "torch-unfused": torch_unfused}


def _have_torch():
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


def _sizes():
    sizes = [SMALL]
    if os.environ.get("PYCE_BENCH_LARGE") == "1":
        sizes += LARGE
    return sizes


@pytest.mark.parametrize("size", _sizes(), ids=lambda s: "N%d-H%d-V%d" % s)
@pytest.mark.parametrize("variant", ["fused", "unfused", "torch-unfused"])
def test_linear_ce(benchmark, variant, size):
    if variant == "torch-unfused":
        pytest.importorskip("torch")
    benchmark.group = "linear-ce N=%d H=%d V=%d float32" % size
    hidden, weight, target = make_problem(*size)
    f = VARIANTS[variant]
    rounds = 3 if size == SMALL else 2
    benchmark.pedantic(f, args=(hidden, weight, target), rounds=rounds, iterations=1,
                       warmup_rounds=1)


# ---- side-by-side report (python bench/bench_linear.py) ----

def _output_bytes(n, h, v, itemsize=4):
    return (n * h + v * h) * itemsize


def tracemalloc_extra(variant, n, h, v):
    hidden, weight, target = make_problem(n, h, v)
    VARIANTS[variant](hidden[:32], weight, target[:32])  # warm up imports and BLAS buffers
    tracemalloc.start()
    try:
        VARIANTS[variant](hidden, weight, target)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - _output_bytes(n, h, v)


def _proc_status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def _rss_child(variant, n, h, v):
    """In a fresh process: peak RSS growth of one call, minus the returned gradients.

    A first full-size call warms up (BLAS touches more of its preallocated
    workspace for larger products: process-wide, not per call).  Linux: the
    peak (VmHWM) is then reset to the current RSS (writing 5 to
    /proc/self/clear_refs), so setup and warm-up do not count.
    """
    hidden, weight, target = make_problem(n, h, v)
    out = VARIANTS[variant](hidden, weight, target)
    del out
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _proc_status_bytes("VmRSS")
    out = VARIANTS[variant](hidden, weight, target)
    after = _proc_status_bytes("VmHWM")
    del out
    print(after - before - _output_bytes(n, h, v))


def rss_extra(variant, n, h, v):
    res = subprocess.run([sys.executable, __file__, "--rss-child", variant, str(n), str(h),
                          str(v)], capture_output=True, text=True, check=True)
    return int(res.stdout.strip().splitlines()[-1])


def _time_child(variant, n, h, v, rounds):
    """In a fresh process (torch's own thread pool must not disturb the others): median time."""
    hidden, weight, target = make_problem(n, h, v)
    VARIANTS[variant](hidden[:64], weight, target[:64])
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        VARIANTS[variant](hidden, weight, target)
        times.append(time.perf_counter() - t0)
    print(" ".join(map(str, times)))


def report(sizes, rounds=3):
    """fused, fused-chunk768 and unfused interleaved in this process; torch in a child."""
    from threadpoolctl import threadpool_info
    variants = ["fused", "fused-chunk768", "unfused"]
    for n, h, v in sizes:
        hidden, weight, target = make_problem(n, h, v)
        logits_mb = n * v * 4 / 1e6
        print(f"\nN={n} H={h} V={v} float32: the (N, V) logits are {logits_mb:.0f} MB; "
              f"default chunk {pyce._linear.default_chunk_size(v, h, np.float32, n_rows=n)} rows")
        for k in variants:  # warm-up
            VARIANTS[k](hidden[:64], weight, target[:64])
        times = {k: [] for k in variants}
        for _ in range(rounds):  # interleaved, so load from other processes hits all alike
            for k in variants:
                t0 = time.perf_counter()
                VARIANTS[k](hidden, weight, target)
                times[k].append(time.perf_counter() - t0)
        del hidden, weight, target
        if _have_torch():
            res = subprocess.run([sys.executable, __file__, "--time-child", "torch-unfused",
                                  str(n), str(h), str(v), str(rounds)],
                                 capture_output=True, text=True, check=True)
            times["torch-unfused"] = [float(t) for t in res.stdout.split()]
            variants.append("torch-unfused")
        base = statistics.median(times["unfused"])
        for k in variants:
            med = statistics.median(times[k])
            rss = rss_extra(k, n, h, v) / 1e6
            if k == "torch-unfused":  # torch's allocator is invisible to tracemalloc
                tm_txt = "n/a"
            else:
                tm = tracemalloc_extra(k, n, h, v) / 1e6
                tm_txt = f"{tm:.1f} MB ({100 * tm / logits_mb:.1f}%)"
            print(f"  {k:14s} median {med:7.3f} s ({med / base:4.2f}x unfused)  "
                  f"runs {[round(t, 2) for t in times[k]]}  extra peak: tracemalloc "
                  f"{tm_txt}, RSS {rss:.1f} MB ({100 * rss / logits_mb:.1f}%)")
    print("\nBLAS:", [(i["internal_api"], i.get("architecture"), i["num_threads"],
                       os.path.basename(i["filepath"])) for i in threadpool_info()])
    print("OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s" % (os.environ.get("OPENBLAS_CORETYPE"),
                                                        os.environ.get("OPENBLAS_L2_SIZE")))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--rss-child":
        _rss_child(sys.argv[2], *map(int, sys.argv[3:6]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--time-child":
        _time_child(sys.argv[2], *map(int, sys.argv[3:7]))
    else:
        args = list(map(int, sys.argv[1:]))
        report([tuple(args[i:i + 3]) for i in range(0, len(args), 3)] if args else [SMALL])
