"""z_loss (PaLM's z * logsumexp^2) in the three plain cross-entropy functions.

Oracles: pyce.reference, hand-computed values, central finite differences of
the float64 loss, and torch (F.cross_entropy + z * logsumexp^2 written out by
hand) when torch is installed.
"""
import math

import numpy as np
import pytest

import pyce
from pyce import reference as ref

Z = 1e-2


def _logits(rng, shape, dtype=np.float64, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def test_hand_computed_single_row():
    # logits [0, 0, 0]: p = 1/3, lse = log 3, target 0
    x = np.zeros((1, 3))
    lse = math.log(3.0)
    loss, grad = pyce.cross_entropy_and_grad(x, np.array([0]), z_loss=0.5)
    assert loss == pytest.approx(lse + 0.5 * lse * lse, rel=1e-15)
    # d/dx_k = p_k - [k == y] + 2 z lse p_k
    expected = np.array([[1 / 3 - 1, 1 / 3, 1 / 3]]) + 2 * 0.5 * lse / 3
    np.testing.assert_allclose(grad, expected, rtol=1e-14, atol=1e-16)


def test_ignored_rows_get_no_z_loss():
    x = np.array([[1.0, 2.0], [3.0, -1.0]])
    t = np.array([0, -100])
    rows = pyce.cross_entropy(x, t, reduction="none", z_loss=1.0)
    lse0 = math.log(math.exp(1.0) + math.exp(2.0))
    assert rows[0] == pytest.approx(lse0 - 1.0 + lse0 ** 2, rel=1e-14)
    assert rows[1] == 0.0
    grad = pyce.cross_entropy_backward(x, t, z_loss=1.0)
    assert np.all(grad[1] == 0.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("opts", [
    {},
    {"weight": "w"},
    {"sample_weight": "v"},
    {"weight": "w", "sample_weight": "v", "label_smoothing": 0.2},
    {"ignore": True, "label_smoothing": 0.1},
])
def test_matches_reference_class_targets(dtype, reduction, opts):
    rng = np.random.default_rng(1)
    n, c = 33, 11
    x = _logits(rng, (n, c), dtype)
    t = rng.integers(0, c, n)
    kw = {"reduction": reduction, "z_loss": Z}
    if opts.get("weight"):
        kw["weight"] = rng.uniform(0.1, 2.0, c)
    if opts.get("sample_weight"):
        kw["sample_weight"] = rng.uniform(0.0, 2.0, n)
    if opts.get("ignore"):
        t[::4] = -100
    if "label_smoothing" in opts:
        kw["label_smoothing"] = opts["label_smoothing"]
    tol = dict(rtol=2e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    x64 = x.astype(np.float64)
    ref_loss, ref_grad = ref.cross_entropy_and_grad(x64, t, **kw)
    loss, grad = pyce.cross_entropy_and_grad(x, t, **kw)
    np.testing.assert_allclose(loss, ref_loss, **tol)
    np.testing.assert_allclose(grad, ref_grad, **tol)
    np.testing.assert_allclose(pyce.cross_entropy(x, t, **kw), ref_loss, **tol)
    go = rng.standard_normal(n) if reduction == "none" else 0.7
    np.testing.assert_allclose(pyce.cross_entropy_backward(x, t, go, **kw),
                               ref.cross_entropy_backward(x64, t, go, **kw), **tol)
    # z_loss really contributes: the same call without it differs
    assert not np.allclose(grad, pyce.cross_entropy_and_grad(x, t, **{**kw, "z_loss": 0.0})[1])


def test_matches_reference_probability_and_kdim_targets():
    rng = np.random.default_rng(2)
    x = _logits(rng, (4, 5, 3, 2))
    probs = rng.dirichlet(np.ones(5), size=(4, 3, 2)).transpose(0, 3, 1, 2)
    for t in (probs, rng.integers(0, 5, (4, 3, 2))):
        for red in ("mean", "sum", "none"):
            lr, gr = ref.cross_entropy_and_grad(x, t, reduction=red, z_loss=0.3,
                                                label_smoothing=0.1)
            l, g = pyce.cross_entropy_and_grad(x, t, reduction=red, z_loss=0.3,
                                               label_smoothing=0.1)
            np.testing.assert_allclose(l, lr, rtol=1e-12)
            np.testing.assert_allclose(g, gr, rtol=1e-11, atol=1e-15)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_gradient_matches_finite_differences(reduction):
    rng = np.random.default_rng(3)
    n, c = 5, 7
    x = _logits(rng, (n, c), scale=2.0)
    t = np.array([0, 3, -100, 6, 2])
    w = rng.uniform(0.5, 1.5, c)
    kw = dict(weight=w, reduction=reduction, label_smoothing=0.1, z_loss=0.2)
    grad = pyce.cross_entropy_backward(x, t, **kw)
    h = 1e-6
    fd = np.empty_like(x)
    for i in range(n):
        for k in range(c):
            xp, xm = x.copy(), x.copy()
            xp[i, k] += h
            xm[i, k] -= h
            fd[i, k] = (float(pyce.cross_entropy(xp, t, **kw))
                        - float(pyce.cross_entropy(xm, t, **kw))) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_zero_z_loss_is_bitwise_identical_to_default():
    rng = np.random.default_rng(4)
    x = _logits(rng, (40, 9), np.float32)
    t = rng.integers(0, 9, 40)
    l0, g0 = pyce.cross_entropy_and_grad(x, t)
    l1, g1 = pyce.cross_entropy_and_grad(x, t, z_loss=0.0)
    assert l0 == l1
    assert np.array_equal(g0, g1)


@pytest.mark.parametrize("bad,exc", [(-0.1, ValueError), (float("nan"), ValueError),
                                     (float("inf"), ValueError), ("big", TypeError)])
def test_bad_z_loss_is_rejected(bad, exc):
    x = np.zeros((2, 3))
    for f in (pyce.cross_entropy, pyce.cross_entropy_and_grad, pyce.cross_entropy_backward,
              ref.cross_entropy):
        with pytest.raises(exc, match="z_loss"):
            f(x, np.array([0, 1]), z_loss=bad)


def test_z_loss_is_keyword_only():
    x = np.zeros((2, 3))
    t = np.array([0, 1])
    with pytest.raises(TypeError):
        pyce.cross_entropy(x, t, None, -100, "mean", 0.0, None, 0.1)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_matches_torch_written_out(reduction, smoothing):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(5)
    n, c, z = 24, 13, 0.05
    x = _logits(rng, (n, c))
    t = rng.integers(0, c, n)
    t[[1, 7, 8]] = -100
    xt = torch.tensor(x, requires_grad=True)
    tt = torch.tensor(t)
    keep = tt != -100
    ce = F.cross_entropy(xt, tt, reduction="none", label_smoothing=smoothing)
    zrows = z * torch.logsumexp(xt, dim=1) ** 2 * keep
    rows = ce + zrows
    if reduction == "mean":
        out = rows.sum() / keep.sum()
    elif reduction == "sum":
        out = rows.sum()
    else:
        out = rows
    out.sum().backward()
    loss, grad = pyce.cross_entropy_and_grad(x, t, reduction=reduction,
                                             label_smoothing=smoothing, z_loss=z)
    np.testing.assert_allclose(loss, out.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(grad, xt.grad.numpy(), rtol=1e-10, atol=1e-14)
