"""Trainer benchmarks (not timed tests). The report, with the load average and
the CPU share other processes took next to every number:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_trainer.py \
        [digits] [cifar] [threads]

or through pytest-benchmark (same measurements, pytest's table):

    pytest bench/bench_trainer.py --benchmark-only -q -s

digits: one epoch of a 64-256-128-10 ELU MLP, batch 64, float32, SGD with
momentum 0.9: pyce.train.fit against the same model in torch (pyce's initial
weights loaded into it, the same permutation, so the same batches), with the
BLAS / torch limited to 1 thread and with their defaults (skipped without
torch).

cifar-sized: 3072-256-128-10 ELU MLP on 50,000 synthetic samples, batch 64,
one epoch of fit; every matrix product of the layers goes through
pyce.nn._matmul, which is rebound to a timed np.matmul, so "inside the
matrix products" is measured directly and everything else (gather, bias,
ELU, loss, zero_grad, optimizer step, Python) is the rest of the epoch.

threads: the digits epoch and its largest product with the BLAS at 1 and at
2 threads, alternating, to tell the cost of threads on tiny products from
the cost of other processes holding the cores.
"""
import gzip
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pyce.nn as nn
import pyce.optim as optim
import pyce.train as train

DIGITS = Path(__file__).resolve().parents[1] / "pyce" / "data" / "digits.csv.gz"
SIZES = [64, 256, 128, 10]
LR, MOMENTUM, BATCH, SEED = 0.05, 0.9, 64, 0


def _digits():
    with gzip.open(DIGITS, "rt") as f:
        d = np.loadtxt(f, delimiter=",", dtype=np.int64)
    return (d[:, :64] / 16.0).astype(np.float32), d[:, 64]


class _Load:
    """Load average at the end, and the share of all cores that *other*
    processes used during the block (from /proc/stat minus this process's
    CPU time; None where /proc/stat does not exist)."""

    def __enter__(self):
        self._t0, self._own0 = _cpu_jiffies(), _own_cpu()
        return self

    def __exit__(self, *exc):
        t1, own1 = _cpu_jiffies(), _own_cpu()
        self.loadavg = os.getloadavg()[0]
        self.others = None
        if self._t0 is not None and t1 is not None and t1[0] > self._t0[0]:
            total = t1[0] - self._t0[0]
            busy = total - (t1[1] - self._t0[1])
            own = (own1 - self._own0) * os.sysconf("SC_CLK_TCK")
            self.others = max(0.0, (busy - own) / total)
        return False

    def __str__(self):
        others = "n/a" if self.others is None else f"{self.others:.0%}"
        return f"load avg {self.loadavg:.2f}, others' CPU {others} of {os.cpu_count()} cores"


def _cpu_jiffies():
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    return sum(v), v[3] + v[4]  # total, idle + iowait


def _own_cpu():
    t = os.times()
    return t.user + t.system


def _pyce_digits(x, y, blas_threads):
    model = nn.mlp(SIZES, rng=0)
    opt = optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss = nn.CrossEntropyLoss()

    def epoch():
        train.fit(model, loss, opt, x, y, epochs=1, batch_size=BATCH, seed=SEED, verbose=0,
                  blas_threads=blas_threads)
    return epoch


def _torch_digits(torch, x, y):
    """The same model (pyce's initial weights) and the batches of fit(seed=SEED)."""
    ref = nn.mlp(SIZES, rng=0)
    tm = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ELU(), torch.nn.Linear(256, 128),
                             torch.nn.ELU(), torch.nn.Linear(128, 10))
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in ref.state_dict().items()})
    opt = torch.optim.SGD(tm.parameters(), lr=LR, momentum=MOMENTUM)
    lossf = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    perm = torch.from_numpy(np.random.default_rng(SEED).permutation(len(x)))

    def epoch():
        for s in range(0, len(x), BATCH):
            idx = perm[s:s + BATCH]
            out = tm(xt[idx])
            loss = lossf(out, yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()  # fit reads every loss (divergence check, History)
    return epoch


def _time(fn, repeats=20, warmup=3):
    for _ in range(warmup):
        fn()
    ts = []
    with _Load() as load:
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t)
    return np.median(ts), min(ts), load


def _torch_threads(torch, threads):
    """Context: torch limited to `threads` intra-op threads (None: unchanged)."""
    class _Ctx:
        def __enter__(self):
            self.before = torch.get_num_threads()
            if threads is not None:
                torch.set_num_threads(threads)

        def __exit__(self, *exc):
            torch.set_num_threads(self.before)
    return _Ctx()


def digits_report(out=sys.stdout):
    x, y = _digits()
    try:
        import torch
    except ImportError:
        torch = None
    print(f"digits epoch ({len(x)} samples, {'-'.join(map(str, SIZES))} ELU, batch {BATCH}, "
          f"float32, SGD momentum): median / best of 20 epochs", file=out)
    for threads in (1, None):
        label = "1 thread " if threads == 1 else "default  "
        med, best, load = _time(_pyce_digits(x, y, threads))
        print(f"  pyce  {label}: {med * 1e3:7.2f} / {best * 1e3:6.2f} ms   ({load})", file=out)
        if torch is not None:
            with _torch_threads(torch, threads):
                med, best, load = _time(_torch_digits(torch, x, y))
            print(f"  torch {label}: {med * 1e3:7.2f} / {best * 1e3:6.2f} ms   ({load})",
                  file=out)


def cifar_share(n=50_000, blas_threads=None, batch=BATCH):
    """(epoch seconds, seconds inside the matrix products, seconds in optimizer.step, load)."""
    rng = np.random.default_rng(0)
    x = rng.random((n, 3072), dtype=np.float32)
    y = rng.integers(0, 10, n)
    model = nn.mlp([3072, 256, 128, 10], rng=0)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=MOMENTUM)
    loss = nn.CrossEntropyLoss()
    spent = {"matmul": 0.0, "step": 0.0}
    matmul = np.matmul

    def timed_matmul(*a, **k):
        t = time.perf_counter()
        r = matmul(*a, **k)
        spent["matmul"] += time.perf_counter() - t
        return r

    step = opt.step

    def timed_step():
        t = time.perf_counter()
        step()
        spent["step"] += time.perf_counter() - t

    # warm-up on a slice (allocations, BLAS buffers, first-step momentum buffers)
    train.fit(model, loss, opt, x[:1024], y[:1024], epochs=1, batch_size=batch, verbose=0,
              blas_threads=blas_threads)
    nn._matmul, opt.step = timed_matmul, timed_step
    try:
        with _Load() as load:
            t = time.perf_counter()
            train.fit(model, loss, opt, x, y, epochs=1, batch_size=batch, verbose=0,
                      blas_threads=blas_threads)
            total = time.perf_counter() - t
    finally:
        nn._matmul = matmul
        del opt.step
    return total, spent["matmul"], spent["step"], load


def cifar_report(out=sys.stdout, n=50_000, batch=BATCH):
    print(f"cifar-sized epoch ({n} x 3072 synthetic, 3072-256-128-10 ELU, batch {batch}, "
          f"float32, SGD momentum):", file=out)
    for threads in (1, None):
        total, mm, step, load = cifar_share(n, threads, batch)
        label = "1 BLAS thread" if threads == 1 else "default BLAS "
        print(f"  {label}: {total:.2f} s; matrix products {mm / total:.1%}, everything else "
              f"{1 - mm / total:.1%} (optimizer step {step / total:.1%})   ({load})", file=out)


def blas_threads_report(out=sys.stdout, rounds=3):
    """Digits epoch and its largest product (64x64 @ 64x256, float32) with the
    BLAS limited to 1 and to 2 threads, alternating, each with the CPU share
    other processes took meanwhile (threadpoolctl, skipped without it)."""
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        print("blas threads: threadpoolctl is not installed, skipped", file=out)
        return
    blas = [(i["internal_api"], i["num_threads"], i.get("architecture"))
            for i in threadpool_info() if i["user_api"] == "blas"]
    print(f"BLAS threads (NumPy's BLAS: {blas}): median / best", file=out)
    x, y = _digits()
    a = np.random.default_rng(0).random((64, 64), dtype=np.float32)
    b = np.random.default_rng(1).random((64, 256), dtype=np.float32)

    def products():
        for _ in range(100):
            a @ b
    for _ in range(rounds):
        for threads in (1, 2):
            with threadpool_limits(threads, user_api="blas"):
                med, best, load = _time(_pyce_digits(x, y, None), repeats=15)
                pm, pb, pload = _time(products, repeats=15)
            print(f"  {threads} thread{'s' if threads > 1 else ' '}: digits epoch "
                  f"{med * 1e3:6.2f} / {best * 1e3:6.2f} ms ({load}); 64x64 @ 64x256 "
                  f"{pm * 1e4:6.1f} / {pb * 1e4:5.1f} us ({pload})", file=out)


# ---------------------------------------------------------------- pytest-benchmark

@pytest.mark.benchmark(group="digits-epoch")
@pytest.mark.parametrize("threads", [1, None], ids=["1thread", "default"])
def test_pyce_digits_epoch(benchmark, threads):
    x, y = _digits()
    epoch = _pyce_digits(x, y, threads)
    epoch()
    with _Load() as load:
        benchmark.pedantic(epoch, rounds=20, iterations=1)
    benchmark.extra_info["load"] = str(load)
    print(f"\npyce digits epoch, threads={threads}: {load}")


@pytest.mark.benchmark(group="digits-epoch")
@pytest.mark.parametrize("threads", [1, None], ids=["1thread", "default"])
def test_torch_digits_epoch(benchmark, threads):
    torch = pytest.importorskip("torch")
    x, y = _digits()
    epoch = _torch_digits(torch, x, y)
    with _torch_threads(torch, threads):
        epoch()
        with _Load() as load:
            benchmark.pedantic(epoch, rounds=20, iterations=1)
    benchmark.extra_info["load"] = str(load)
    print(f"\ntorch digits epoch, threads={threads}: {load}")


@pytest.mark.large
@pytest.mark.benchmark(group="cifar-epoch")
def test_cifar_non_matmul_share(benchmark):
    res = {}

    def run():
        res["r"] = cifar_share(blas_threads=1)
    benchmark.pedantic(run, rounds=1, iterations=1)
    total, mm, step, load = res["r"]
    benchmark.extra_info.update(non_matmul_share=1 - mm / total, step_share=step / total,
                                load=str(load))
    print(f"\ncifar-sized epoch, 1 BLAS thread: {total:.2f} s; matrix products {mm / total:.1%}, "
          f"everything else {1 - mm / total:.1%} (optimizer step {step / total:.1%}) ({load})")


if __name__ == "__main__":
    what = sys.argv[1:] or ["digits", "cifar", "threads"]
    if "digits" in what:
        digits_report()
    if "cifar" in what:
        for batch in (BATCH, 256):
            cifar_report(batch=batch)
    if "threads" in what:
        blas_threads_report()
