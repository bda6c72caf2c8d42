"""Trainer benchmarks (pytest-benchmark; not timed tests).

    pytest bench/bench_trainer.py --benchmark-only -q

digits: one epoch of a 64-256-128-10 ELU MLP, batch 64, float32, SGD with
momentum, pyce against the same model in torch (skipped without torch).
cifar-sized: 3072 inputs, synthetic data; test_cifar_non_matmul_share also
prints the share of an epoch spent outside the matrix products.
"""
import gzip
import time
from pathlib import Path

import numpy as np
import pytest

import pyce.nn as nn
import pyce.optim as optim
import pyce.train as train

DIGITS = Path(__file__).resolve().parents[1] / "pyce" / "data" / "digits.csv.gz"


def _digits():
    with gzip.open(DIGITS, "rt") as f:
        d = np.loadtxt(f, delimiter=",", dtype=np.int64)
    return (d[:, :64] / 16.0).astype(np.float32), d[:, 64]


@pytest.mark.benchmark(group="digits-epoch")
def test_pyce_digits_epoch(benchmark):
    x, y = _digits()
    model = nn.mlp([64, 256, 128, 10], rng=0)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss = nn.CrossEntropyLoss()
    benchmark(lambda: train.fit(model, loss, opt, x, y, epochs=1, batch_size=64, verbose=0))


@pytest.mark.benchmark(group="digits-epoch")
def test_torch_digits_epoch(benchmark):
    torch = pytest.importorskip("torch")
    x, y = _digits()
    tm = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ELU(), torch.nn.Linear(256, 128),
                             torch.nn.ELU(), torch.nn.Linear(128, 10))
    opt = torch.optim.SGD(tm.parameters(), lr=0.05, momentum=0.9)
    lossf = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    rng = np.random.default_rng(0)

    def epoch():
        perm = torch.from_numpy(rng.permutation(len(x)))
        for s in range(0, len(x), 64):
            idx = perm[s:s + 64]
            opt.zero_grad()
            lossf(tm(xt[idx]), yt[idx]).backward()
            opt.step()
    benchmark(epoch)


@pytest.mark.benchmark(group="cifar-epoch")
def test_cifar_non_matmul_share(benchmark):
    """Time inside Linear.forward/backward (the matrix products, plus the bias
    add and sum, which are < 1% of them) against the whole epoch."""
    rng = np.random.default_rng(0)
    n = 50_000 // 10  # a tenth of an epoch keeps the run short; the shares do not depend on n
    x = rng.random((n, 3072), dtype=np.float32)
    y = rng.integers(0, 10, n)
    model = nn.mlp([3072, 256, 128, 10], rng=0)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss = nn.CrossEntropyLoss()
    spent = [0.0]
    for layer in model.layers:
        if isinstance(layer, nn.Linear):
            layer.forward = _timed(layer.forward, spent)
            layer.backward = _timed(layer.backward, spent)

    def one_epoch():
        spent[0] = 0.0
        t = time.perf_counter()
        train.fit(model, loss, opt, x, y, epochs=1, batch_size=64, verbose=0)
        return time.perf_counter() - t, spent[0]

    total, mm = benchmark.pedantic(one_epoch, rounds=1, iterations=1)
    benchmark.extra_info["non_matmul_share"] = 1 - mm / total
    print(f"\ncifar-sized, {n} samples: {total:.3f} s; Linear layers {mm / total:.1%}, "
          f"everything else {1 - mm / total:.1%}")


def _timed(fn, spent):
    def inner(*a, **k):
        t = time.perf_counter()
        r = fn(*a, **k)
        spent[0] += time.perf_counter() - t
        return r
    return inner
