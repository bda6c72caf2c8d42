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

cifar: the CIFAR-shaped network of issue 13 (3072-512-256-10 ELU, batch 128,
SGD momentum 0.9, one epoch of 50,000 synthetic rows, no evaluation): one
epoch of pyce.train.fit, the same matrix products alone (the calls the layers
make, on preallocated operands: what the epoch would cost if everything else
were free) and the same network and batches in torch, interleaved in one
process, with the BLAS (and torch) on 1 thread and on their defaults.

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


CIFAR_SIZES = [3072, 512, 256, 10]
CIFAR_BATCH, CIFAR_LR = 128, 0.01


def _cifar_data(n):
    rng = np.random.default_rng(0)
    return rng.random((n, 3072), dtype=np.float32), rng.integers(0, 10, n)


def _pyce_cifar(x, y, gemm_momentum=True):
    """One epoch of fit on the CIFAR-shaped network (no evaluation); with
    gemm_momentum=False SGD's fused_gradients is switched off (the weight
    gradients are written to .grad and read back by the step, as before)."""
    model = nn.mlp(CIFAR_SIZES, rng=0)
    opt = optim.SGD(model.parameters(), lr=CIFAR_LR, momentum=MOMENTUM)
    if not gemm_momentum:
        opt.fused_gradients = _nullctx
    loss = nn.CrossEntropyLoss()

    def epoch():
        train.fit(model, loss, opt, x, y, epochs=1, batch_size=CIFAR_BATCH, verbose=0,
                  blas_threads=None)  # the thread count is set by the caller
    return epoch


def _products_cifar(x, update=False):
    """The matrix products of one epoch of that network alone, with the calls
    the layers make: per batch three forward products, three weight-gradient
    products and two input-gradient products (the first layer's is skipped);
    the weight gradients go into preallocated arrays (as pyce's layers write
    them into .grad or the momentum buffer), the other results are new arrays
    (as the layers' np.matmul calls make them). Weights are stored as
    pyce.nn.Linear stores them: shape (out, in), Fortran-ordered, so the
    forward products are x @ W.T with W.T C-ordered and the weight gradients
    are written as their transposes, x.T @ g. Rows are contiguous slices: no
    gather.

    update=True adds the least an SGD momentum step can cost on top: each
    weight gradient goes by one gemm straight into its momentum buffer
    (beta = momentum, as SGD.fused_gradients does) and the weights are then
    updated by the BLAS's axpy (W -= lr * buf, as SGD does without weight
    decay). Returns None when NumPy's BLAS gives no gemm handle."""
    from pyce import _blas
    rng = np.random.default_rng(1)
    sizes = CIFAR_SIZES
    ws = [np.asfortranarray(rng.standard_normal((o, i)), np.float32)
          for i, o in zip(sizes, sizes[1:])]
    # with update the momentum buffers start at zero (beta scales what they hold)
    gs = [np.zeros_like(w) if update else np.empty_like(w) for w in ws]
    gemm, axpy = _blas.gemm(np.float32), _blas.axpy(np.float32)
    if update and (gemm is None or axpy is None):
        return None
    n = len(x)

    def weight_grad(i, g, a):
        if not update:
            np.matmul(a.T, g, out=gs[i].T)
            return
        out, inp = ws[i].shape  # gs[i] is the momentum buffer: Fortran-ordered, like W
        gemm(101, 112, 111, inp, out, g.shape[0], 1.0, a.ctypes.data, a.strides[0] // 4,
             g.ctypes.data, out, MOMENTUM, gs[i].ctypes.data, out)

    def epoch():
        for s in range(0, n, CIFAR_BATCH):
            xb = x[s:s + CIFAR_BATCH]
            acts = [xb]
            for w in ws:
                acts.append(np.matmul(acts[-1], w.T))
            g = acts[-1]
            for i in range(len(ws) - 1, -1, -1):
                weight_grad(i, g, acts[i])
                if i:
                    g = np.matmul(g, ws[i])
            if update:  # a step so small that the weights stay as they are
                for w, buf in zip(ws, gs):
                    axpy(w.size, -1e-30, buf.ctypes.data, 1, w.ctypes.data, 1)
    return epoch


def _torch_cifar(torch, x, y):
    """The same network and batches in torch (pyce's initial weights)."""
    ref = nn.mlp(CIFAR_SIZES, rng=0)
    tm = torch.nn.Sequential(torch.nn.Linear(3072, 512), torch.nn.ELU(),
                             torch.nn.Linear(512, 256), torch.nn.ELU(), torch.nn.Linear(256, 10))
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in ref.state_dict().items()})
    opt = torch.optim.SGD(tm.parameters(), lr=CIFAR_LR, momentum=MOMENTUM)
    lossf = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    perm = torch.from_numpy(np.random.default_rng(SEED).permutation(len(x)))

    def epoch():
        for s in range(0, len(x), CIFAR_BATCH):
            idx = perm[s:s + CIFAR_BATCH]
            loss = lossf(tm(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
    return epoch


def cifar_epoch_report(out=sys.stdout, n=50_000, threads=(1, None), rounds=2):
    """The CIFAR-shaped epoch (issue 13): pyce's fit, the same products alone,
    those products with the bare SGD momentum update (gemm into the buffer +
    axpy: what any momentum step must add, see _products_cifar), torch;
    interleaved in this process, `rounds` times, best time of each."""
    from pyce import _blas
    x, y = _cifar_data(n)
    try:
        import torch
    except ImportError:
        torch = None
    print(f"cifar-shaped epoch ({n} x 3072 synthetic, {'-'.join(map(str, CIFAR_SIZES))} ELU, "
          f"batch {CIFAR_BATCH}, float32, SGD momentum {MOMENTUM}, no evaluation): best of "
          f"{rounds}, interleaved", file=out)
    for th in threads:
        runs = {"pyce fit": _pyce_cifar(x, y),
                "pyce fit, momentum not via gemm": _pyce_cifar(x, y, gemm_momentum=False),
                "products alone": _products_cifar(x)}
        floor = _products_cifar(x, update=True)
        if floor is not None:
            runs["products + momentum update"] = floor
        if torch is not None:
            runs["torch"] = _torch_cifar(torch, x, y)
        best = {}
        with _blas.limit_threads(th), _torch_threads(torch, th) if torch else _nullctx(), \
                _Load() as load:
            for _ in range(rounds):
                for name, fn in runs.items():
                    t = time.perf_counter()
                    fn()
                    best[name] = min(best.get(name, np.inf), time.perf_counter() - t)
        label = "1 thread" if th == 1 else "default threads"
        mm = best["products alone"]
        cells = [f"{k} {v:.2f} s ({v / mm:.2f}x products)" for k, v in best.items()]
        print(f"  {label}: " + "; ".join(cells) + f"   ({load})", file=out)


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


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
@pytest.mark.parametrize("what", ["pyce", "products", "torch"])
def test_cifar_epoch(benchmark, what):
    x, y = _cifar_data(50_000)
    if what == "torch":
        torch = pytest.importorskip("torch")
        epoch = _torch_cifar(torch, x, y)
    else:
        epoch = _pyce_cifar(x, y) if what == "pyce" else _products_cifar(x)
    with _Load() as load:
        benchmark.pedantic(epoch, rounds=1, iterations=1)
    benchmark.extra_info["load"] = str(load)


if __name__ == "__main__":
    what = sys.argv[1:] or ["digits", "cifar", "threads"]
    if "digits" in what:
        digits_report()
    if "cifar" in what:
        cifar_epoch_report()
    if "threads" in what:
        blas_threads_report()
