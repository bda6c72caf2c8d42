"""pyce.linear_cross_entropy(_and_grad): the chunked linear + cross-entropy.

Oracle: the unfused computation in float64 -- logits = hidden @ weight.T + bias,
pyce.reference.cross_entropy_and_grad, then d_hidden = G @ weight,
d_weight = G.T @ hidden, d_bias = G.sum(0) -- plus finite differences and
torch autograd (when installed).  The blocked d_weight accumulation runs with
one and with several blocks per chunk.
"""
import tracemalloc
import warnings

import numpy as np
import pytest

import pyce
from pyce import _linear
from pyce import reference as ref


@pytest.fixture(params=["cblas", 16, 1024])
def dw_path(request, monkeypatch):
    """The products' path: NumPy's own cblas gemm (d_weight with beta = 1), or the
    NumPy-only path with d_weight blocks of 16 rows (several blocks per chunk)
    or 1024 rows (one block, V < 1024)."""
    if request.param == "cblas":
        if _linear._numpy_gemm(np.float64) is None:
            pytest.skip("this NumPy does not bundle scipy-openblas (NumPy-only path tested)")
    else:
        monkeypatch.setattr(_linear, "_numpy_gemm", lambda dtype: None)
        monkeypatch.setattr(_linear, "_DW_BLOCK_ROWS", request.param)
    return request.param


def _problem(rng, n=45, h=12, v=37, dtype=np.float64, ignore=True):
    hidden = rng.standard_normal((n, h)).astype(dtype)
    weight = (rng.standard_normal((v, h)) * 0.5).astype(dtype)
    bias = rng.standard_normal(v).astype(dtype)
    target = rng.integers(0, v, n)
    if ignore:
        target[::5] = -100
    return hidden, weight, bias, target


def _unfused(hidden, weight, target, bias=None, **kw):
    """float64 oracle: (loss, d_hidden, d_weight, d_bias) without chunking."""
    h64, w64 = hidden.astype(np.float64), weight.astype(np.float64)
    logits = h64 @ w64.T
    if bias is not None:
        logits = logits + bias.astype(np.float64)
    loss, g = ref.cross_entropy_and_grad(logits, target, **kw)
    return loss, g @ w64, g.T @ h64, (g.sum(axis=0) if bias is not None else None)


def _assert_close(got, want, dtype):
    tol = dict(rtol=3e-5, atol=3e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-13)
    for name, a, b in zip(("loss", "d_hidden", "d_weight", "d_bias"), got, want):
        if b is None:
            assert a is None, name
            continue
        assert np.asarray(a).dtype == dtype, name
        np.testing.assert_allclose(a, b, err_msg=name, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 7, 45, 1000, None])
def test_matches_unfused(dw_path, dtype, reduction, with_bias, chunk_size):
    rng = np.random.default_rng(0)
    hidden, weight, bias, target = _problem(rng, dtype=dtype)
    b = bias if with_bias else None
    kw = dict(reduction=reduction)
    want = _unfused(hidden, weight, target, b, **kw)
    got = pyce.linear_cross_entropy_and_grad(hidden, weight, target, b, **kw,
                                             chunk_size=chunk_size)
    _assert_close(got, want, dtype)
    loss_only = pyce.linear_cross_entropy(hidden, weight, target, b, **kw, chunk_size=chunk_size)
    _assert_close((loss_only,), want[:1], dtype)
    if reduction == "none":
        assert got[0].shape == (hidden.shape[0],)
        assert np.all(got[0][::5] == 0.0)  # ignored rows


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opts", [
    {"label_smoothing": 0.1},
    {"z_loss": 1e-3},
    {"label_smoothing": 0.25, "z_loss": 0.05, "reduction": "sum"},
    {"z_loss": 0.01, "reduction": "none"},
    {"ignore_index": 3},  # a valid class id used as the ignore marker
])
def test_options_match_unfused(dw_path, dtype, opts):
    rng = np.random.default_rng(1)
    hidden, weight, bias, target = _problem(rng, dtype=dtype)
    if opts.get("ignore_index") == 3:
        target[target == -100] = 3
    kw = {k: v for k, v in opts.items() if k != "z_loss"}
    z = opts.get("z_loss", 0.0)
    want = _unfused(hidden, weight, target, bias, **kw, z_loss=z)
    got = pyce.linear_cross_entropy_and_grad(hidden, weight, target, bias, **kw, z_loss=z,
                                             chunk_size=8)
    _assert_close(got, want, dtype)
    got = pyce.linear_cross_entropy_and_grad(hidden, weight, target, bias, **kw, z_loss=z,
                                             chunk_size=20, n_threads=2)
    _assert_close(got, want, dtype)


def test_finite_differences():
    """Gradients against central differences of the fused loss itself (no oracle)."""
    rng = np.random.default_rng(2)
    hidden, weight, bias, target = _problem(rng, n=6, h=3, v=5)
    kw = dict(label_smoothing=0.1, z_loss=0.1, chunk_size=4)
    _, dh, dw, db = pyce.linear_cross_entropy_and_grad(hidden, weight, target, bias, **kw)

    def loss(hh, ww, bb):
        return float(pyce.linear_cross_entropy(hh, ww, target, bb, **kw))

    eps = 1e-6
    for arr, grad, args in ((hidden, dh, 0), (weight, dw, 1), (bias, db, 2)):
        fd = np.empty_like(arr)
        for idx in np.ndindex(arr.shape):
            plus, minus = arr.copy(), arr.copy()
            plus[idx] += eps
            minus[idx] -= eps
            a = [hidden, weight, bias]
            a[args] = plus
            lp = loss(*a)
            a[args] = minus
            fd[idx] = (lp - loss(*a)) / (2 * eps)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_torch(reduction):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(3)
    hidden, weight, bias, target = _problem(rng, n=30, h=10, v=23)
    z, eps = 1e-2, 0.1
    ht, wt, bt = (torch.tensor(a, requires_grad=True) for a in (hidden, weight, bias))
    tt = torch.tensor(target)
    logits = F.linear(ht, wt, bt)
    keep = tt != -100
    rows = F.cross_entropy(logits, tt, reduction="none", label_smoothing=eps) \
        + z * torch.logsumexp(logits, dim=1) ** 2 * keep
    out = {"mean": rows.sum() / keep.sum(), "sum": rows.sum(), "none": rows}[reduction]
    out.sum().backward()
    got = pyce.linear_cross_entropy_and_grad(hidden, weight, target, bias, reduction=reduction,
                                             label_smoothing=eps, z_loss=z, chunk_size=7)
    want = (out.detach().numpy(), ht.grad.numpy(), wt.grad.numpy(), bt.grad.numpy())
    _assert_close(got, want, np.float64)


def test_matches_torch_float32_without_z_loss():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(4)
    hidden, weight, bias, target = _problem(rng, n=64, h=32, v=300, dtype=np.float32)
    ht, wt = torch.tensor(hidden, requires_grad=True), torch.tensor(weight, requires_grad=True)
    out = F.cross_entropy(F.linear(ht, wt), torch.tensor(target))
    out.backward()
    loss, dh, dw, db = pyce.linear_cross_entropy_and_grad(hidden, weight, target, chunk_size=10)
    assert db is None
    np.testing.assert_allclose(loss, out.item(), rtol=1e-5)
    np.testing.assert_allclose(dh, ht.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_all_rows_ignored_and_empty_batch(dw_path):
    rng = np.random.default_rng(5)
    hidden, weight, bias, _ = _problem(rng, n=9)
    target = np.full(9, -100)
    loss, dh, dw, db = pyce.linear_cross_entropy_and_grad(hidden, weight, target, bias,
                                                          chunk_size=4)
    assert np.isnan(loss)  # as pyce.cross_entropy and torch: 0 / 0
    assert not dh.any() and not dw.any() and not db.any()
    assert pyce.linear_cross_entropy(hidden, weight, target, reduction="sum") == 0.0
    loss, dh, dw, db = pyce.linear_cross_entropy_and_grad(hidden[:0], weight, target[:0], bias,
                                                          reduction="sum")
    assert loss == 0.0 and dh.shape == (0, hidden.shape[1])
    assert dw.shape == weight.shape and not dw.any() and not db.any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_inputs_and_no_mutation(dw_path, dtype):
    rng = np.random.default_rng(6)
    hidden, weight, bias, target = _problem(rng, n=40, h=16, v=29, dtype=dtype)
    hidden_strided = np.asfortranarray(np.repeat(hidden, 2, axis=1))[:, ::2]
    weight_f = np.asfortranarray(weight)
    copies = [a.copy() for a in (hidden_strided, weight_f, bias, target)]
    got = pyce.linear_cross_entropy_and_grad(hidden_strided, weight_f, target, bias,
                                             z_loss=0.01, chunk_size=6)
    _assert_close(got, _unfused(hidden, weight, target, bias, z_loss=0.01), dtype)
    for before, after in zip(copies, (hidden_strided, weight_f, bias, target)):
        assert np.array_equal(before, after)


def test_never_allocates_the_logits(dw_path):
    """tracemalloc (NumPy reports its allocations) sees one (chunk, V) buffer, not (N, V)."""
    rng = np.random.default_rng(7)
    n, h, v, chunk = 2048, 8, 2500, 64
    hidden, weight, bias, target = _problem(rng, n=n, h=h, v=v)
    logits_bytes = n * v * 8  # 41 MB
    outputs_bytes = (n * h + v * h + v) * 8
    tracemalloc.start()
    try:
        pyce.linear_cross_entropy_and_grad(hidden, weight, target, bias, chunk_size=chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    extra = peak - outputs_bytes
    assert extra < 0.05 * logits_bytes, (extra, logits_bytes)
    assert extra >= chunk * v * 8  # the chunk buffer itself is seen, so the check is live


def test_default_chunk_size_follows_the_budget():
    assert _linear.CHUNK_BUDGET_BYTES == 24 * 2**20
    # NumPy-only path: buffer 160 * 32000 * 4 + scratch 1024 * 1024 * 4 = 24.7 MB <= 25.2 MB
    assert _linear.default_chunk_size(32000, 1024, np.float32, scratch=True) == 160
    assert _linear.default_chunk_size(32000, 1024, np.float64, scratch=True) == 64   # the minimum
    assert _linear.default_chunk_size(32000, 64, np.float64, scratch=True) == 96
    assert _linear.default_chunk_size(256000, 1024, np.float32, scratch=True) == 64  # the minimum
    # cblas path, no scratch: buffer 192 * 32000 * 4 = 24.6 MB
    assert _linear.default_chunk_size(32000, 1024, np.float32, scratch=False) == 192
    assert _linear.default_chunk_size(32000, 1024, np.float64, scratch=False) == 96
    # big batch x big vocabulary: 4.5% of the (2048, 128000) float32 logits = 47 MB -> 80 rows
    assert _linear.CHUNK_BUDGET_FRACTION == 0.045
    assert _linear.default_chunk_size(128000, 1024, np.float32, scratch=False, n_rows=2048) == 80
    assert _linear.default_chunk_size(32000, 1024, np.float32, scratch=False, n_rows=4096) == 192


def _args():
    rng = np.random.default_rng(8)
    hidden, weight, bias, target = _problem(rng, n=4, h=3, v=5, ignore=False)
    return dict(hidden=hidden, weight=weight, target=target, bias=bias)


@pytest.mark.parametrize("change,exc,match", [
    ({"hidden": np.zeros(3)}, ValueError, "hidden must be 2-d"),
    ({"hidden": np.zeros((4, 3), np.int64)}, TypeError, "hidden must be a float32"),
    ({"weight": np.zeros((5, 4))}, ValueError, r"weight must have shape \(V, 3\)"),
    ({"weight": np.zeros(5)}, ValueError, "weight must be 2-d"),
    ({"weight": np.zeros((0, 3))}, ValueError, "weight has 0 rows"),
    ({"weight": np.zeros((5, 3), np.float32)}, TypeError, "weight must have hidden's dtype"),
    ({"bias": np.zeros(4)}, ValueError, r"bias must have shape \(5,\)"),
    ({"bias": np.zeros(5, np.float32)}, TypeError, "bias must have hidden's dtype"),
    ({"target": np.zeros(4)}, TypeError, "target must hold integer"),
    ({"target": np.zeros(3, np.int64)}, ValueError, r"target must have shape \(4,\)"),
    ({"target": np.array([0, 1, 5, 2])}, IndexError, r"target\[2\] = 5 is out of range"),
    ({"chunk_size": 0}, ValueError, "chunk_size must be None or a positive integer, got 0"),
    ({"chunk_size": -3}, ValueError, "chunk_size"),
    ({"chunk_size": 2.5}, TypeError, "chunk_size"),
    ({"chunk_size": True}, TypeError, "chunk_size"),
    ({"reduction": "avg"}, ValueError, "reduction must be one of"),
    ({"label_smoothing": 1.5}, ValueError, "label_smoothing"),
    ({"z_loss": -1.0}, ValueError, "z_loss"),
    ({"n_threads": 0}, ValueError, "n_threads"),
    ({"ignore_index": 1.0}, TypeError, "ignore_index"),
])
@pytest.mark.parametrize("fn", [pyce.linear_cross_entropy, pyce.linear_cross_entropy_and_grad])
def test_bad_arguments(fn, change, exc, match):
    kw = {**_args(), **change}
    with pytest.raises(exc, match=match):
        fn(**kw)


def test_exported():
    assert "linear_cross_entropy" in pyce.__all__
    assert "linear_cross_entropy_and_grad" in pyce.__all__
    with pytest.raises(TypeError):  # z_loss, chunk_size, n_threads are keyword-only
        pyce.linear_cross_entropy(*_args().values(), -100, "mean", 0.0, 0.1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_reference_twin_agrees(dtype, reduction):
    # pyce.reference.linear_cross_entropy(_and_grad): the unfused NumPy twin, same signature
    rng = np.random.default_rng(11)
    hidden, weight, bias, target = _problem(rng, dtype=dtype)
    kw = dict(bias=bias, reduction=reduction, label_smoothing=0.1, z_loss=1e-3)
    fast = pyce.linear_cross_entropy_and_grad(hidden, weight, target, chunk_size=8, **kw)
    twin = ref.linear_cross_entropy_and_grad(hidden, weight, target, **kw)
    _assert_close(fast, _unfused(hidden, weight, target, **kw), dtype)
    _assert_close(twin, _unfused(hidden, weight, target, **kw), dtype)
    np.testing.assert_allclose(np.asarray(ref.linear_cross_entropy(hidden, weight, target, **kw)),
                               np.asarray(fast[0]), rtol=3e-5 if dtype == np.float32 else 1e-11)
    with pytest.raises(ValueError, match="weight must have shape"):
        ref.linear_cross_entropy(hidden, weight[:, :-1], target)


# ---------------------------------------------------------------- the reduction rule is shared

@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_float32_total_beyond_float32_is_inf_without_warning(reduction):
    # issue 11's example: cross_entropy gave inf quietly, linear_cross_entropy warned
    # "overflow encountered in cast" (an error under -W error); both now reduce
    # through the one rule in pyce._ce
    h = np.full((4, 2), 1e19, np.float32)
    w = np.array([[1e19, 1e19], [-1e19, -1e19]], np.float32)
    t = np.array([1, 1, 1, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = pyce.cross_entropy(h @ w.T, t, reduction=reduction)
        b = pyce.linear_cross_entropy(h, w, t, reduction=reduction)
        c = pyce.linear_cross_entropy_and_grad(h, w, t, reduction=reduction)[0]
    assert a.dtype == b.dtype == c.dtype == np.float32
    assert a == b == c == np.inf


def test_linear_mean_of_no_rows_is_nan_with_zero_gradients():
    rng = np.random.default_rng(5)
    h, w = rng.standard_normal((6, 3)), rng.standard_normal((4, 3))
    t = np.full(6, -100)
    loss, dh, dw, db = pyce.linear_cross_entropy_and_grad(h, w, t, np.zeros(4))
    assert np.isnan(loss) and not dh.any() and not dw.any() and not db.any()
