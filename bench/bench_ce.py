"""Fused softmax cross-entropy: pyce beside the copy floor, the NumPy reference
and torch (when installed), one pytest-benchmark group per (operation, shape, dtype).

Run with `pytest --benchmark-only` (add `--benchmark-group-by=group` for one
table per group). On machines where OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are
set, unset them in the benchmark command only (`env -u ... pytest ...`).
"""
import importlib.util

import numpy as np
import pytest

import pyce
import pyce.reference as ref

HAVE_TORCH = importlib.util.find_spec("torch") is not None
LARGE = pytest.mark.large
SHAPES = [(128, 10), (1024, 10), pytest.param((262144, 10), marks=LARGE),
          pytest.param((4096, 1000), marks=LARGE), pytest.param((2048, 32000), marks=LARGE)]
DTYPES = ["float32", "float64"]
_DATA = {}


def logits_and_target(n, c, dtype, seed=0):
    """Standard-normal logits (scaled by 3) and uniform class targets, cached per shape and dtype."""
    key = (n, c, np.dtype(dtype).name, seed)
    if key not in _DATA:
        _DATA.clear()   # keep one large case in memory at a time
        rng = np.random.default_rng(seed)
        x = (rng.standard_normal((n, c), dtype=np.float32) * 3).astype(dtype)
        _DATA[key] = (x, rng.integers(0, c, n))
    return _DATA[key]


_EXPECTED_LOSS = {}


def expected_loss(x, t):
    """The float64 reference loss of a case, computed once."""
    key = (x.shape, x.dtype.name)
    if key not in _EXPECTED_LOSS:
        _EXPECTED_LOSS[key] = float(ref.cross_entropy(x.astype(np.float64), t))
    return _EXPECTED_LOSS[key]


IMPLS = ["pyce", "copy-floor", "reference"] + (["torch"] if HAVE_TORCH else [])


def _torch_fused(x, t):
    import torch
    xt = torch.from_numpy(x)
    tt = torch.from_numpy(t)

    def run():
        xx = xt.detach().requires_grad_()
        loss = torch.nn.functional.cross_entropy(xx, tt)
        loss.backward()
        return loss.item(), xx.grad
    return run


def _torch_forward(x, t):
    import torch
    xt = torch.from_numpy(x)
    tt = torch.from_numpy(t)

    def run():
        with torch.no_grad():
            return torch.nn.functional.cross_entropy(xt, tt).item()
    return run


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_fused_forward_backward(benchmark, shape, dtype, impl):
    """reduction='mean' loss and gradient; pyce writes into a preallocated out=."""
    x, t = logits_and_target(*shape, dtype)
    benchmark.group = f"fused {shape[0]}x{shape[1]} {dtype}"
    out = np.empty_like(x)
    if impl == "pyce":
        loss, _ = benchmark(pyce.cross_entropy_and_grad, x, t, out=out)
    elif impl == "copy-floor":
        benchmark(np.copyto, out, x)
        return
    elif impl == "reference":
        loss, out = benchmark(ref.cross_entropy_and_grad, x, t)
    else:
        loss, g = benchmark(_torch_fused(x, t))
        out = g.numpy()
    # the benchmarked call computed the right thing (checked on a few rows)
    rows = slice(0, 64)
    expect = ref.cross_entropy_and_grad(x[rows].astype(np.float64), t[rows], reduction="sum")[1]
    np.testing.assert_allclose(out[rows] * len(t), expect, rtol=1e-4, atol=1e-5)
    assert np.isfinite(loss)


@pytest.mark.parametrize("impl", ["pyce", "sum-floor", "reference"] + (["torch"] if HAVE_TORCH else []))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_forward(benchmark, shape, dtype, impl):
    """reduction='mean' loss only; the floor is one read pass (np.sum)."""
    x, t = logits_and_target(*shape, dtype)
    benchmark.group = f"forward {shape[0]}x{shape[1]} {dtype}"
    if impl == "pyce":
        loss = benchmark(pyce.cross_entropy, x, t)
    elif impl == "sum-floor":
        benchmark(np.sum, x)
        return
    elif impl == "reference":
        loss = benchmark(ref.cross_entropy, x, t)
    else:
        loss = benchmark(_torch_forward(x, t))
    assert float(loss) == pytest.approx(expected_loss(x, t), rel=1e-4)


@LARGE
@pytest.mark.parametrize("impl", ["pyce", "naive-numpy"])
def test_naive_formulation_cost(benchmark, impl):
    """What softmax + one-hot + log(p + 1e-6) costs against the fused kernel (4096 x 1000 float32)."""
    x, t = logits_and_target(4096, 1000, "float32")
    benchmark.group = "fused 4096x1000 float32: naive formulation"
    if impl == "pyce":
        loss, _ = benchmark(pyce.cross_entropy_and_grad, x, t)
    else:
        loss, _ = benchmark(ref.naive_cross_entropy_and_grad, x, t)
    assert np.isfinite(loss)


OPTIONS = {
    "none": {},
    "weight": {"weight": "w"},
    "ignore_index": {"ignore": True},
    "label_smoothing": {"label_smoothing": 0.1},
    "sample_weight": {"sample_weight": "sw"},
    "z_loss": {"z_loss": 1e-4},
}


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("shape", [(1024, 10), pytest.param((4096, 1000), marks=LARGE)],
                         ids=lambda s: f"{s[0]}x{s[1]}")
def test_option_cost(benchmark, shape, option):
    """What each option costs in the fused kernel (float32, out=): 'none' is the plain call."""
    x, t = logits_and_target(*shape, "float32")
    rng = np.random.default_rng(1)
    kw = dict(OPTIONS[option])
    if kw.pop("ignore", False):
        t = t.copy()
        t[::7] = -100          # one row in seven ignored
    if kw.get("weight") == "w":
        kw["weight"] = rng.uniform(0.5, 2.0, shape[1])
    if kw.get("sample_weight") == "sw":
        kw["sample_weight"] = rng.uniform(0.0, 1.0, shape[0])
    benchmark.group = f"options {shape[0]}x{shape[1]} float32"
    out = np.empty_like(x)
    loss, _ = benchmark(pyce.cross_entropy_and_grad, x, t, out=out, **kw)
    expect = ref.cross_entropy(x[:256].astype(np.float64), t[:256], **{
        k: (v[:256] if k == "sample_weight" else v) for k, v in kw.items()})
    assert np.isfinite(loss) and np.isfinite(expect)


HUGE = (64, 1_000_000)   # rows of 4 MB (float32): beyond L2, the online max-and-sum path


@LARGE
@pytest.mark.parametrize("impl", ["pyce", "copy-floor", "pyce-forward", "sum-floor"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_rows(benchmark, dtype, impl):
    """64 x 1 000 000: fused (out=) beside np.copyto, forward beside np.sum."""
    x, t = logits_and_target(*HUGE, dtype)
    benchmark.group = f"huge rows {HUGE[0]}x{HUGE[1]} {dtype}"
    out = np.empty_like(x)
    if impl == "copy-floor":
        benchmark(np.copyto, out, x)
        return
    if impl == "sum-floor":
        benchmark(np.sum, x)
        return
    rows = slice(0, 2)
    expect_loss = ref.cross_entropy(x[rows].astype(np.float64), t[rows], reduction="none")
    if impl == "pyce-forward":
        loss = benchmark(pyce.cross_entropy, x, t, reduction="none")
        np.testing.assert_allclose(loss[rows], expect_loss, rtol=1e-5)
        return
    benchmark(pyce.cross_entropy_and_grad, x, t, out=out)
    expect = ref.cross_entropy_and_grad(x[rows].astype(np.float64), t[rows], reduction="sum")[1]
    np.testing.assert_allclose(out[rows] * len(t), expect, rtol=1e-4, atol=1e-9)
