"""pyce.sklearn.MLPClassifier against scikit-learn's MLPClassifier (and torch): fit time
and test accuracy with the same settings. A benchmark, not a timed test:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_sklearn.py \
        [digits] [mnist] [threads=default,1] [rounds=N]

threads: the BLAS thread counts to run under (threadpoolctl limits NumPy's BLAS and
torch's intra-op threads for every implementation alike; 'default' leaves them alone).
Every row gives the median wall time and the median CPU time of the process (on a busy
machine the CPU time of a 1-thread run is the steadier number).

or through pytest-benchmark (the same fits, pytest's table; digits with 1 BLAS thread; the
MNIST-sized cases are marked `large` and run only when benchmarking):

    pytest bench/bench_sklearn.py --benchmark-only -q -s

digits: the UCI digits shipped with scikit-learn (1797 x 64), a stratified 80/20 split
(random_state 0), standardized with the training statistics; hidden (256, 128), relu,
SGD lr 0.05 momentum 0.9 (Nesterov, scikit-learn's default), batch 64, alpha 1e-4,
30 epochs (tol=0 and n_iter_no_change=1000: no early stop), random_state 0. pyce in
float32 (its default) against scikit-learn on float32 input (it then computes in
float32) and on float64 input (its usual path), and the matrix products of the same
30 epochs alone in each dtype (the part of every fit the BLAS does; no implementation
on this BLAS can be faster than it). The fits run in turns, `rounds` times; medians
are reported.

mnist: 60 000 x 784 synthetic float32 samples of 10 classes (noisy class centres) and
10 000 test samples; hidden (512, 256), relu, adam lr 1e-3, batch 128, alpha 1e-4,
5 epochs; pyce, scikit-learn (float32 input) and the same network in torch
(torch.optim.Adam, L2 on the weights as scikit-learn scales it, the same batch order),
one fit each unless rounds is given. Torch is skipped when it is not installed.
"""
import contextlib
import importlib.util
import os
import sys
import time
import warnings

import numpy as np
import pytest

try:
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier as SkMLP
except ImportError:  # pragma: no cover - the benchmark needs the optional extra
    if __name__ == "__main__":
        sys.exit('bench_sklearn.py needs scikit-learn: pip install ".[sklearn]"')
    pytest.skip("scikit-learn is not installed", allow_module_level=True)

from pyce.app.bench import machine_summary
from pyce.sklearn import MLPClassifier

DIGITS = dict(hidden_layer_sizes=(256, 128), activation="relu", solver="sgd",
              learning_rate_init=0.05, momentum=0.9, batch_size=64, alpha=1e-4, max_iter=30,
              tol=0.0, n_iter_no_change=1000, random_state=0)
MNIST = dict(hidden_layer_sizes=(512, 256), activation="relu", solver="adam",
             learning_rate_init=1e-3, batch_size=128, alpha=1e-4, max_iter=5, tol=0.0,
             n_iter_no_change=1000, random_state=0)


def digits_data(dtype=np.float32):
    x, y = load_digits(return_X_y=True)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    mu, sd = xtr.mean(0), xtr.std(0)
    sd[sd == 0] = 1.0
    return ((xtr - mu) / sd).astype(dtype), ytr, ((xte - mu) / sd).astype(dtype), yte


def mnist_like(n_train=60_000, n_test=10_000, d=784, classes=10, seed=0):
    """Noisy class centres: float32 (n, d) arrays with labels 0..classes-1."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, d), dtype=np.float32) * 0.1
    y = rng.integers(0, classes, n_train + n_test)
    x = rng.standard_normal((n_train + n_test, d), dtype=np.float32)
    x += centres[y]
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def _fit_sklearn_like(make, xtr, ytr, xte, yte):
    """((wall seconds, CPU seconds), test accuracy) of make().fit(xtr, ytr)."""
    est = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t0, c0 = time.perf_counter(), time.process_time()
        est.fit(xtr, ytr)
        seconds = (time.perf_counter() - t0, time.process_time() - c0)
    return seconds, float(np.mean(est.predict(xte) == yte))


def _fit_torch(settings, xtr, ytr, xte, yte):
    """The same MLP in torch: (seconds, test accuracy). L2 as scikit-learn scales it:
    alpha / batch rows on the weights, none on the biases."""
    import torch
    torch.manual_seed(0)
    sizes = [xtr.shape[1], *settings["hidden_layer_sizes"], int(ytr.max()) + 1]
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    bs, alpha = settings["batch_size"], settings["alpha"]
    opt = torch.optim.Adam([{"params": weights, "weight_decay": alpha / bs},
                            {"params": biases}], lr=settings["learning_rate_init"])
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr.astype(np.int64))
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(settings["max_iter"]):
        order = torch.from_numpy(rng.permutation(len(xtr)))
        for s in range(0, len(xtr), bs):
            idx = order[s:s + bs]
            opt.zero_grad()
            loss_fn(model(xt[idx]), yt[idx]).backward()
            opt.step()
    seconds = (time.perf_counter() - t0, time.process_time() - c0)
    with torch.no_grad():
        pred = model(torch.from_numpy(xte)).argmax(1).numpy()
    return seconds, float(np.mean(pred == yte))


def _products_alone(settings, xtr, n_classes, dtype):
    """The matrix products of the same fit and nothing else: per batch of the
    same sizes, three forward products, three weight-gradient products (into
    preallocated arrays) and the input-gradient products of the hidden layers.
    What any implementation calling this BLAS spends at least; ((wall, CPU), None)."""
    sizes = [xtr.shape[1], *settings["hidden_layer_sizes"], n_classes]
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal((o, i)).astype(dtype) for i, o in zip(sizes, sizes[1:])]
    gs = [np.empty_like(w) for w in ws]
    x, bs = xtr.astype(dtype), settings["batch_size"]
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(settings["max_iter"]):
        for s in range(0, len(x), bs):
            acts = [x[s:s + bs]]
            for w in ws:
                acts.append(np.matmul(acts[-1], w.T))
            g = acts[-1]
            for i in range(len(ws) - 1, -1, -1):
                np.matmul(g.T, acts[i], out=gs[i])
                if i:
                    g = np.matmul(g, ws[i])
    return (time.perf_counter() - t0, time.process_time() - c0), None


def _median_in_turns(fits, rounds):
    """{name: (median wall s, median CPU s, test accuracy of the last fit)}, fits in turns."""
    times = {k: [] for k in fits}
    acc = {}
    for _ in range(rounds):
        for k, fit in fits.items():
            seconds, acc[k] = fit()
            times[k].append(seconds)
    return {k: (float(np.median([t[0] for t in v])), float(np.median([t[1] for t in v])),
                acc[k]) for k, v in times.items()}


def _threads(threads):
    """A context limiting the BLAS (and torch) to `threads` threads; None: no limit."""
    if threads is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=threads)


def _table(title, results, base, out):
    print(title, file=out)
    print(f"  {'implementation':<42} {'wall':>9} {'/ pyce':>7} {'CPU':>9} {'/ pyce':>7} "
          f"{'test acc':>9}", file=out)
    for name, (wall, cpu, acc) in results.items():
        shown = "-" if acc is None else f"{100 * acc:.2f}%"
        print(f"  {name:<42} {wall:>7.3f} s {wall / results[base][0]:>6.2f}x {cpu:>7.3f} s "
              f"{cpu / results[base][1]:>6.2f}x {shown:>9}", file=out, flush=True)


def _run(fits, rounds, threads):
    """Run the fits under the thread limit; returns (results, load before, load after)."""
    load0 = os.getloadavg()[0]
    with _threads(threads):
        res = _median_in_turns(fits, rounds)
    return res, load0, os.getloadavg()[0]


def digits_report(rounds=5, threads=None, out=sys.stdout):
    """Fit-time medians and test accuracy on digits; returns the results dict."""
    xtr, ytr, xte, yte = digits_data(np.float32)
    x64, _, xte64, _ = digits_data(np.float64)
    fits = {
        "pyce.sklearn.MLPClassifier (float32)":
            lambda: _fit_sklearn_like(lambda: MLPClassifier(**DIGITS), xtr, ytr, xte, yte),
        "sklearn MLPClassifier (float32 input)":
            lambda: _fit_sklearn_like(lambda: SkMLP(**DIGITS), xtr, ytr, xte, yte),
        "sklearn MLPClassifier (float64 input)":
            lambda: _fit_sklearn_like(lambda: SkMLP(**DIGITS), x64, ytr, xte64, yte),
        "matrix products alone (float32)": lambda: _products_alone(DIGITS, xtr, 10, np.float32),
        "matrix products alone (float64)": lambda: _products_alone(DIGITS, xtr, 10, np.float64),
    }
    res, load0, load1 = _run(fits, rounds, threads)
    _table(f"digits {len(xtr)}+{len(xte)} x 64, hidden (256, 128) relu, sgd lr 0.05 momentum "
           f"0.9, batch 64, 30 epochs; BLAS threads: {threads or 'default'}; median of "
           f"{rounds} fits each, in turns (load avg {load0:.2f} -> {load1:.2f})", res,
           "pyce.sklearn.MLPClassifier (float32)", out)
    return res


def mnist_report(rounds=1, threads=None, out=sys.stdout):
    """Fit time and test accuracy on the MNIST-sized problem; returns the results dict."""
    xtr, ytr, xte, yte = mnist_like()
    fits = {
        "pyce.sklearn.MLPClassifier (float32)":
            lambda: _fit_sklearn_like(lambda: MLPClassifier(**MNIST), xtr, ytr, xte, yte),
        "sklearn MLPClassifier (float32 input)":
            lambda: _fit_sklearn_like(lambda: SkMLP(**MNIST), xtr, ytr, xte, yte),
    }
    if importlib.util.find_spec("torch") is not None:
        import torch
        fits[f"torch {torch.__version__.split('+')[0]} (float32)"] = \
            lambda: _fit_torch(MNIST, xtr, ytr, xte, yte)
    res, load0, load1 = _run(fits, rounds, threads)
    _table(f"MNIST-sized synthetic 60000+10000 x 784, hidden (512, 256) relu, adam lr 1e-3, "
           f"batch 128, 5 epochs; BLAS/torch threads: {threads or 'default'}; {rounds} fit(s) "
           f"each, in turns (load avg {load0:.2f} -> {load1:.2f})", res,
           "pyce.sklearn.MLPClassifier (float32)", out)
    return res


# ---------------------------------------------------------------- pytest-benchmark

def _bench_fit(benchmark, make, data, rounds, threads=None):
    xtr, ytr, xte, yte = data
    result = {}

    def run():
        result["acc"] = _fit_sklearn_like(make, xtr, ytr, xte, yte)[1]
    with _threads(threads):
        benchmark.pedantic(run, rounds=rounds, iterations=1)
    benchmark.extra_info["test_accuracy"] = result["acc"]
    return result["acc"]


@pytest.fixture(scope="module")
def digits_accuracy():
    return {}


@pytest.mark.benchmark(group="sklearn-digits-fit")
@pytest.mark.parametrize("impl", ["pyce", "sklearn"])
def test_digits_fit(benchmark, impl, digits_accuracy):
    make = (lambda: MLPClassifier(**DIGITS)) if impl == "pyce" else (lambda: SkMLP(**DIGITS))
    pytest.importorskip("threadpoolctl")
    acc = _bench_fit(benchmark, make, digits_data(np.float32), rounds=3, threads=1)
    digits_accuracy[impl] = acc
    assert acc > 0.9
    if len(digits_accuracy) == 2:  # the goal: the same accuracy within one point
        assert abs(digits_accuracy["pyce"] - digits_accuracy["sklearn"]) <= 0.01


@pytest.mark.large
@pytest.mark.benchmark(group="sklearn-mnist-fit")
@pytest.mark.parametrize("impl", ["pyce", "sklearn"])
def test_mnist_fit(benchmark, impl):
    make = (lambda: MLPClassifier(**MNIST)) if impl == "pyce" else (lambda: SkMLP(**MNIST))
    assert _bench_fit(benchmark, make, mnist_like(), rounds=1) > 0.5  # chance: 0.1


@pytest.mark.large
@pytest.mark.benchmark(group="sklearn-mnist-fit")
def test_mnist_fit_torch(benchmark):
    pytest.importorskip("torch")
    data = mnist_like()
    benchmark.pedantic(lambda: _fit_torch(MNIST, *data), rounds=1, iterations=1)


def main(argv):
    opts = dict(a.split("=", 1) for a in argv if "=" in a)
    which = [a for a in argv if "=" not in a] or ["digits", "mnist"]
    threads = [None if t == "default" else int(t)
               for t in opts.get("threads", "1,default").split(",")]
    print(f"machine: {machine_summary()}")
    for t in threads:
        if "digits" in which:
            digits_report(rounds=int(opts.get("rounds", 5)), threads=t)
        if "mnist" in which:
            mnist_report(rounds=int(opts.get("rounds", 1)), threads=t)


if __name__ == "__main__":
    main(sys.argv[1:])
