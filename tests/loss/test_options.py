"""PyTorch-parity options: class and sample weights, ignore_index, label
smoothing, probability targets, K-dimensional inputs.

Every combination (dtype x reduction x weight x ignore x smoothing x target
kind x shape) is compared with pyce.reference (always) and with
torch.nn.functional.cross_entropy (when torch is installed).
"""
import itertools
import math

import numpy as np
import pytest

import pyce
import pyce.reference as ref

SHAPES = [(6,), (24, 7), (5, 7, 3), (3, 7, 2, 4)]   # (C,), (N, C), (N, C, d1), (N, C, d1, d2)
C = 7
COMBOS = [combo for combo in itertools.product(
    [np.float32, np.float64],       # dtype
    ["mean", "sum", "none"],        # reduction
    [False, True],                  # class weights
    [False, True],                  # some targets ignored
    [0.0, 0.15],                    # label smoothing
    ["index", "prob"],              # target kind
    SHAPES,
) if not (combo[5] == "prob" and combo[3])]   # ignore_index does not apply to probabilities


def case(dtype, weighted, ignored, kind, shape):
    rng = np.random.default_rng(abs(hash((weighted, ignored, kind, shape))) % 2**32)
    c = shape[0] if len(shape) == 1 else shape[1]
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    w = rng.uniform(0.2, 2.0, c) if weighted else None
    if kind == "index":
        tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
        t = rng.integers(0, c, tshape)
        if ignored and t.ndim:
            t[rng.random(tshape) < 0.3] = -100
    else:
        p = rng.random(shape) ** 3
        t = (p / p.sum(axis=0 if len(shape) == 1 else 1, keepdims=True)).astype(dtype)
    return x, t, w


def tol(dtype):
    return dict(rtol=3e-6, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("dtype,reduction,weighted,ignored,eps,kind,shape", COMBOS)
def test_every_combination_against_reference_and_torch(dtype, reduction, weighted, ignored, eps,
                                                       kind, shape):
    x, t, w = case(dtype, weighted, ignored, kind, shape)
    kw = dict(weight=w, reduction=reduction, label_smoothing=eps)
    t64 = t.astype(np.float64) if kind == "prob" else t
    l_ref, g_ref = ref.cross_entropy_and_grad(x.astype(np.float64), t64, **kw)
    loss, grad = pyce.cross_entropy_and_grad(x, t, **kw)
    assert grad.shape == x.shape and grad.dtype == dtype
    np.testing.assert_allclose(np.asarray(loss, np.float64), l_ref, **tol(dtype))
    np.testing.assert_allclose(grad, g_ref, **tol(dtype))
    np.testing.assert_allclose(np.asarray(pyce.cross_entropy(x, t, **kw), np.float64), l_ref,
                               **tol(dtype))
    go = 0.5 if reduction != "none" else np.linspace(-1, 2, np.size(l_ref)).reshape(np.shape(l_ref))
    np.testing.assert_allclose(pyce.cross_entropy_backward(x, t, grad_output=go, **kw),
                               ref.cross_entropy_backward(x.astype(np.float64), t64,
                                                          grad_output=go, **kw), **tol(dtype))

    torch = pytest.importorskip("torch")
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    tt = torch.tensor(t64)
    lt = torch.nn.functional.cross_entropy(
        xt, tt, weight=None if w is None else torch.tensor(w), reduction=reduction,
        label_smoothing=eps)
    lt.backward(torch.ones_like(lt))
    np.testing.assert_allclose(l_ref, lt.detach().numpy(), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(g_ref, xt.grad.numpy(), rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(np.asarray(loss, np.float64), lt.detach().numpy(), **tol(dtype))
    np.testing.assert_allclose(grad, xt.grad.numpy(), **tol(dtype))


def test_weighted_mean_by_hand():
    # two samples, three classes; computed by hand from the definition:
    # loss_i = -w[y_i] * log softmax(x_i)[y_i]; mean = sum_i loss_i / sum_i w[y_i]
    x = np.array([[0.0, 0.0, 0.0], [np.log(2.0), 0.0, 0.0]])
    t = np.array([0, 1])
    w = np.array([2.0, 1.0, 5.0])
    l0 = 2.0 * np.log(3.0)                 # uniform row: p = 1/3
    l1 = 1.0 * -np.log(1.0 / 4.0)          # exp = (2, 1, 1): p_1 = 1/4
    expected = (l0 + l1) / (2.0 + 1.0)
    assert pyce.cross_entropy(x, t, weight=w) == pytest.approx(expected, rel=1e-14)
    np.testing.assert_allclose(pyce.cross_entropy(x, t, weight=w, reduction="none"), [l0, l1],
                               rtol=1e-14)
    # gradient by hand: w[y] * (p - onehot) / sum w[y]
    g = pyce.cross_entropy_backward(x, t, weight=w)
    expect_g = np.array([2.0 * np.array([1 / 3 - 1, 1 / 3, 1 / 3]),
                         1.0 * np.array([0.5, 0.25 - 1, 0.25])]) / 3.0
    np.testing.assert_allclose(g, expect_g, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_targets_ignored(dtype):
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(dtype)
    t = np.full(5, -100)
    loss, grad = pyce.cross_entropy_and_grad(x, t)
    assert np.isnan(loss) and loss.dtype == dtype
    assert np.all(grad == 0)
    assert pyce.cross_entropy(x, t, reduction="sum") == 0
    assert np.all(pyce.cross_entropy(x, t, reduction="none") == 0)
    assert np.isnan(pyce.cross_entropy(x, t, label_smoothing=0.3, weight=np.ones(4)))


def test_custom_ignore_index():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 4))
    t = rng.integers(0, 4, 10)
    t[[1, 5]] = 2
    kept = t != 2
    # ignoring class 2 equals dropping those rows
    assert pyce.cross_entropy(x, t, ignore_index=2) == pytest.approx(
        ref.cross_entropy(x[kept], t[kept]), rel=1e-13)
    g = pyce.cross_entropy_backward(x, t, ignore_index=2)
    assert np.all(g[~kept] == 0)
    np.testing.assert_allclose(g[kept], ref.cross_entropy_backward(x[kept], t[kept]), rtol=1e-12)
    # an ignore_index inside [0, C) only matters where the target equals it; 7 is out of range
    t[3] = 7
    np.testing.assert_allclose(pyce.cross_entropy(x, t, ignore_index=7, reduction="none")[3], 0)
    with pytest.raises(IndexError, match="target\\[3\\] = 7"):
        pyce.cross_entropy(x, t)


@pytest.mark.parametrize("impl", [pyce, ref], ids=["fast", "reference"])
def test_ignore_index_with_probability_targets_follows_torch(impl):
    # torch 2.13: a negative ignore_index is accepted (and means nothing for
    # probabilities); ignore_index >= 0 raises "ignore_index is not supported for
    # floating point target".  pyce raises ValueError, naming the argument.
    x = np.random.default_rng(2).standard_normal((4, 3))
    p = np.full((4, 3), 1 / 3)
    assert impl.cross_entropy(x, p, ignore_index=-1) == impl.cross_entropy(x, p)
    for bad in (0, 2, 5):
        with pytest.raises(ValueError, match=f"ignore_index={bad} is not supported with probability"):
            impl.cross_entropy(x, p, ignore_index=bad)
        with pytest.raises(ValueError, match="ignore_index"):
            impl.cross_entropy_and_grad(x, p.astype(np.float32), ignore_index=bad)


def test_probability_targets_mean_divides_by_n_even_with_weights():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4))
    p = rng.dirichlet(np.ones(4), 6)
    w = rng.uniform(0.5, 3, 4)
    expect = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(p),
                                               weight=torch.tensor(w)).item()
    assert pyce.cross_entropy(x, p, weight=w) == pytest.approx(expect, rel=1e-13)
    assert pyce.cross_entropy(x, p, weight=w) == pytest.approx(
        float(pyce.cross_entropy(x, p, weight=w, reduction="sum")) / 6, rel=1e-13)


def test_one_hot_probability_targets_equal_index_targets():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 5))
    t = rng.integers(0, 5, 8)
    onehot = np.eye(5)[t]
    for eps in (0.0, 0.2):
        a, ga = pyce.cross_entropy_and_grad(x, t, label_smoothing=eps)
        b, gb = pyce.cross_entropy_and_grad(x, onehot, label_smoothing=eps)
        assert a == pytest.approx(b, rel=1e-13)
        np.testing.assert_allclose(ga, gb, rtol=1e-12, atol=1e-15)


def test_zero_probability_on_masked_class_is_finite():
    x = np.array([[0.0, -np.inf, 1.0]])
    p = np.array([[0.5, 0.0, 0.5]])
    loss, grad = pyce.cross_entropy_and_grad(x, p)
    assert np.isfinite(loss) and np.all(np.isfinite(grad)) and grad[0, 1] == 0


# ---------------------------------------------------------------- sample_weight

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_sample_weight_against_reference(dtype, kind, reduction):
    x, t, w = case(dtype, True, kind == "index", kind, (12, 7, 3))
    sw = np.random.default_rng(5).uniform(0, 2, (12, 3))
    t64 = t.astype(np.float64) if kind == "prob" else t
    kw = dict(weight=w, reduction=reduction, label_smoothing=0.1, sample_weight=sw)
    l_ref, g_ref = ref.cross_entropy_and_grad(x.astype(np.float64), t64, **kw)
    loss, grad = pyce.cross_entropy_and_grad(x, t, **kw)
    np.testing.assert_allclose(np.asarray(loss, np.float64), l_ref, **tol(dtype))
    np.testing.assert_allclose(grad, g_ref, **tol(dtype))


def test_sample_weight_semantics_by_hand():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((5, 3))
    t = np.array([0, 1, 2, -100, 1])
    w = np.array([1.0, 2.0, 0.5])
    sw = np.array([1.0, 0.0, 3.0, 10.0, 2.0])
    per_row = ref.cross_entropy(x, np.where(t < 0, 0, t), weight=w, reduction="none")
    per_row = np.where(t < 0, 0.0, per_row)
    expect = np.sum(sw * per_row) / np.sum((sw * w[np.where(t < 0, 0, t)])[t >= 0])
    assert pyce.cross_entropy(x, t, weight=w, sample_weight=sw) == pytest.approx(expect, rel=1e-13)
    # integer sample weights equal repeated rows
    rep = np.repeat(np.arange(5), [1, 0, 3, 10, 2])
    rep = rep[t[rep] >= 0]
    assert pyce.cross_entropy(x, t, weight=w, sample_weight=sw) == pytest.approx(
        pyce.cross_entropy(x[rep], t[rep], weight=w), rel=1e-13)


# ---------------------------------------------------------------- K-dimensional inputs

def test_k_dim_equals_moving_the_class_axis_last():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 5, 4, 2)).astype(np.float32)
    t = rng.integers(0, 5, (3, 4, 2))
    flat_x = np.moveaxis(x, 1, -1).reshape(-1, 5)
    loss, grad = pyce.cross_entropy_and_grad(x, t, reduction="none")
    l2, g2 = pyce.cross_entropy_and_grad(flat_x, t.reshape(-1), reduction="none")
    # (N, C, d) float32 takes the general lanes path (row sums and log in float64),
    # the flat (N, C) array the few-class fast path (float32 sums and log on
    # AVX-512 or AVX2): equal within the float32 bound, not bitwise
    np.testing.assert_allclose(loss.reshape(-1), l2, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(np.moveaxis(grad, 1, -1).reshape(-1, 5), g2, rtol=1e-5, atol=1e-12)


def test_k_dim_non_contiguous_views():
    rng = np.random.default_rng(8)
    base = rng.standard_normal((4, 6, 5, 3))
    t = rng.integers(0, 6, (4, 5, 3))
    for x in (base[:, :, ::2, :], np.asfortranarray(base), base.transpose(0, 1, 3, 2).copy()
              .transpose(0, 1, 3, 2)):
        tt = t[:, ::2, :] if x.shape[2] == 3 else t
        l_ref, g_ref = ref.cross_entropy_and_grad(np.ascontiguousarray(x), tt, reduction="sum")
        loss, grad = pyce.cross_entropy_and_grad(x, tt, reduction="sum")
        assert loss == pytest.approx(l_ref, rel=1e-12)
        np.testing.assert_allclose(grad, g_ref, rtol=1e-11, atol=1e-14)


def test_k_dim_overwrite_input_and_out():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 4, 3, 3))
    t = rng.integers(0, 4, (2, 3, 3))
    expect_loss, expect_grad = pyce.cross_entropy_and_grad(x, t)
    out = np.empty_like(x)
    assert pyce.cross_entropy_and_grad(x, t, out=out)[1] is out
    np.testing.assert_array_equal(out, expect_grad)
    loss, g = pyce.cross_entropy_and_grad(x, t, overwrite_input=True)
    assert g is x and loss == expect_loss
    np.testing.assert_array_equal(x, expect_grad)


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("kwargs,exc,pattern", [
    (dict(label_smoothing=-0.1), ValueError, "label_smoothing"),
    (dict(label_smoothing=1.5), ValueError, "label_smoothing"),
    (dict(label_smoothing=float("nan")), ValueError, "label_smoothing"),
    (dict(label_smoothing="x"), TypeError, "label_smoothing"),
    (dict(weight=np.ones(3)), ValueError, r"weight.*\(4,\)"),
    (dict(weight=np.ones((4, 1))), ValueError, "weight"),
    (dict(weight=np.array([1.0, np.nan, 1, 1])), ValueError, "weight.*finite"),
    (dict(sample_weight=np.ones(4)), ValueError, r"sample_weight.*\(5,\)"),
    (dict(sample_weight=-np.ones(5)), ValueError, "sample_weight.*non-negative"),
    (dict(ignore_index=1.0), TypeError, "ignore_index"),
    (dict(z_loss=-1.0), ValueError, "z_loss"),
])
def test_option_errors(kwargs, exc, pattern):
    x = np.zeros((5, 4))
    with pytest.raises(exc, match=pattern):
        pyce.cross_entropy(x, [0, 1, 2, 3, 0], **kwargs)
    with pytest.raises(exc, match=pattern):
        ref.cross_entropy(x, [0, 1, 2, 3, 0], **kwargs)


def test_target_kind_errors():
    x = np.zeros((5, 4))
    with pytest.raises(ValueError, match="probabilities.*shape"):
        pyce.cross_entropy(x, np.zeros(5))            # float where indices are expected
    with pytest.raises(ValueError, match="target.*shape"):
        pyce.cross_entropy(x, np.zeros((5, 4), np.int64))  # indices where probabilities are given
    with pytest.raises(ValueError, match="probabilities.*shape"):
        pyce.cross_entropy(x, np.zeros((5, 3)))
    with pytest.raises(TypeError, match="target.*bool"):
        pyce.cross_entropy(x, np.zeros(5, bool))


@pytest.mark.parametrize("c", [2, 40])   # the lanes path and the row path
def test_zero_sample_weight_masks_a_minus_inf_target(c):
    # found by the 100k fuzz run: the lanes path gave 0, the row path and the reference NaN;
    # the rule now everywhere: weight 0 (class or sample) masks the row's infinite loss,
    # while a NaN row stays NaN
    x = np.zeros((3, c), np.float32)
    x[0, 0] = -np.inf          # target logit -inf: infinite loss
    x[1, 1] = np.nan           # undefined softmax
    t = np.array([0, 0, 1])
    sw = np.array([0.0, 0.0, 1.0])
    for fn in (pyce.cross_entropy, ref.cross_entropy):
        loss = fn(x, t, sample_weight=sw, reduction="none")
        assert loss[0] == 0 and np.isnan(loss[1]) and np.isfinite(loss[2])
    g = pyce.cross_entropy_backward(x, t, sample_weight=sw, reduction="sum")
    assert np.all(g[0] == 0) and np.all(np.isnan(g[1]))


# ---------------------------------------------------------------- masking regressions
# Found by the adversarial tests; expected values written out in float64 math here.
IMPLS = [pytest.param(pyce, id="fast"), pytest.param(ref, id="reference")]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference is plain NumPy: it warns on inf/NaN
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_weight_class_with_minus_inf_logit_and_label_smoothing(impl, dtype):
    # Class 1 is masked twice: logit -inf and weight 0. Its smoothing term
    # w_1 * log p_1 = 0 * -inf must count as 0, not NaN (was NaN in the kernel).
    x = np.array([[0.0, -np.inf, 1.0]], dtype)
    eps = 0.1
    loss = impl.cross_entropy(x, np.array([0]), weight=[1.0, 0.0, 1.0],
                              reduction="none", label_smoothing=eps)
    lse = math.log(1.0 + math.e)
    want = (1 - eps) * lse + eps / 3 * (lse + (lse - 1.0))
    np.testing.assert_allclose(loss, [want], rtol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference is plain NumPy: it warns on inf/NaN
@pytest.mark.parametrize("impl", IMPLS)
def test_zero_weight_target_with_minus_inf_logit(impl):
    # Target class has weight 0 and logit -inf: the row contributes 0, not NaN.
    x = np.array([[-np.inf, 0.0, 1.0]])
    loss = impl.cross_entropy(x, np.array([0]), weight=[0.0, 1.0, 1.0], reduction="none")
    assert loss.tolist() == [0.0]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference is plain NumPy: it warns on inf/NaN
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("opts", [{}, {"z_loss": 0.1}, {"label_smoothing": 0.2}])
def test_ignored_row_with_nan_logits_has_zero_loss(impl, opts):
    # An ignored row is not read: a NaN in it must not reach the loss
    # (the reference multiplied by a 0/1 mask, giving 0 * NaN = NaN).
    x = np.array([[0.0, 1.0], [np.nan, 0.0]])
    t = np.array([1, -100])
    rows = impl.cross_entropy(x, t, reduction="none", **opts)
    assert rows[1] == 0.0 and np.isfinite(rows[0])
    mean = impl.cross_entropy(x, t, **opts)
    assert mean == pytest.approx(rows[0], rel=1e-14)
    _, grad = impl.cross_entropy_and_grad(x, t, **opts)
    assert grad[1].tolist() == [0.0, 0.0]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference is plain NumPy: it warns on inf/NaN
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax_of_empty_class_axis_is_empty(impl, fn):
    out = getattr(impl, fn)(np.zeros((3, 0)))
    assert out.shape == (3, 0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference is plain NumPy: it warns on inf/NaN
@pytest.mark.parametrize("impl", IMPLS)
def test_nan_row_stays_nan_with_zero_weight_target(impl):
    # The masks above must not hide a NaN row that is not ignored.
    x = np.array([[np.nan, 0.0, 1.0], [0.0, np.inf, 1.0]])
    loss = impl.cross_entropy(x, np.array([0, 0]), weight=[0.0, 1.0, 1.0], reduction="none")
    assert np.isnan(loss).all()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference is plain NumPy: it warns on inf/NaN
@pytest.mark.parametrize("impl", IMPLS)
def test_mean_gradient_with_tiny_sample_weight_does_not_underflow(impl):
    # 'mean' divides by sum(sample_weight): v / sum(v) = 1 here, so the gradient is
    # (p - t) exactly; the reference used to multiply v = 2.2e-308 into 3.5e-232 first
    # and underflowed to 0.
    x = np.zeros((1, 2))
    t = np.array([[7.0e-232, 0.0]])
    grad = impl.cross_entropy_backward(x, t, sample_weight=np.array([2.2250738585072014e-308]))
    np.testing.assert_allclose(grad, [[-3.5e-232, 3.5e-232]], rtol=1e-14)


# ---------------------------------------------------------------- weights summing to <= 0 (torch's rule)

def _hand_weighted(x, t, w):
    """Per-row w_y * (logsumexp(x_i) - x_i[y]) and the weighted 'sum' gradient, in float64 math."""
    rows, grad = [], np.zeros_like(x, dtype=np.float64)
    for i, (row, y) in enumerate(zip(x.tolist(), t.tolist())):
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        rows.append(w[y] * (lse - row[y]))
        grad[i] = [w[y] * (math.exp(v - lse) - (k == y)) for k, v in enumerate(row)]
    return rows, grad


NEG_X = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [0.0, 0.0, 1.0]])
NEG_T = np.array([0, 2, 1])


@pytest.mark.parametrize("impl", [pyce, ref], ids=["fast", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("w", [[-1.0, 1.0, -2.0], [2.0, -0.5, 1.0], [-1.0, -1.0, -1.0]])
def test_negative_class_weights_hand_computed(impl, dtype, w):
    x = NEG_X.astype(dtype)
    rows, gsum = _hand_weighted(NEG_X, NEG_T, w)
    denom = sum(w[y] for y in NEG_T)
    rt = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(impl.cross_entropy(x, NEG_T, weight=w, reduction="none"), rows, rtol=rt)
    assert impl.cross_entropy(x, NEG_T, weight=w, reduction="sum") == pytest.approx(sum(rows), rel=rt)
    loss, grad = impl.cross_entropy_and_grad(x, NEG_T, weight=w)
    assert loss == pytest.approx(sum(rows) / denom, rel=rt)   # a negative denominator flips the sign
    np.testing.assert_allclose(grad, gsum / denom, rtol=rt, atol=1e-7 if dtype == np.float32 else 1e-15)


@pytest.mark.parametrize("impl", [pyce, ref], ids=["fast", "reference"])
def test_mean_with_zero_weight_sum_is_ieee_division(impl):
    # denominator w[0] + w[2] + w[1] = 2 - 3 + 1 = 0 with a non-zero total: +-inf
    w = [2.0, 1.0, -3.0]
    rows, gsum = _hand_weighted(NEG_X, NEG_T, w)
    with np.errstate(all="ignore"):
        want = np.float64(sum(rows)) / np.float64(0.0)
    assert np.isinf(want)
    loss, grad = impl.cross_entropy_and_grad(NEG_X, NEG_T, weight=w)
    assert loss == want
    # the gradient is the 'sum' gradient times 1/0 = inf: +-inf by sign (no entry is 0 here)
    assert np.array_equal(grad, np.sign(gsum) * np.inf)
    # 0/0 = NaN: every row of weight 0 (as PyTorch: NaN loss and NaN gradient)
    loss0, grad0 = impl.cross_entropy_and_grad(NEG_X, NEG_T, weight=[0.0, 0.0, 0.0])
    assert np.isnan(loss0) and np.isnan(grad0).all()
    # every row ignored: 0/0 = NaN loss, all-zero gradient (ignored rows are masked)
    loss_i, grad_i = impl.cross_entropy_and_grad(NEG_X, np.full(3, -100))
    assert np.isnan(loss_i) and not grad_i.any()


@pytest.mark.parametrize("c,opts", [(3, {}), (3, {"label_smoothing": 0.2}), (20, {}),
                                    (20, {"label_smoothing": 0.1, "z_loss": 0.01})],
                         ids=["lanes_plain", "lanes", "row", "row+options"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_zero_and_negative_denominators_kernels_agree_with_reference(c, opts, dtype):
    # every kernel path's overflow-safe scaling against the reference, -inf logits included
    rng = np.random.default_rng(c)
    x = rng.standard_normal((40, c)).astype(dtype)
    x[::7, 1] = -np.inf
    t = rng.integers(0, c, 40)
    t[::5] = -100
    # integer weights: their sums are exact in every order, so "exactly 0" holds in the
    # kernels (sequential sums) and in the reference (NumPy's pairwise sums) alike
    for w in (np.where(np.arange(c) % 2, 1.0, -1.0), np.zeros(c), -rng.integers(0, 4, c) * 1.0):
        kept = t[t != -100]
        w = w.copy()
        if w.any():
            w[kept[0]] -= w[kept].sum()   # the kept rows' weights sum to exactly 0 ...
        for ww in (w, w - 0.25):          # ... and to < 0
            with np.errstate(all="ignore"):
                want = ref.cross_entropy_and_grad(x.astype(np.float64), t, weight=ww, **opts)
            got = pyce.cross_entropy_and_grad(x, t, weight=ww, **opts)
            rt = 1e-4 if dtype == np.float32 else 1e-10
            np.testing.assert_allclose(float(got[0]), float(want[0]), rtol=rt)
            np.testing.assert_allclose(got[1], want[1].astype(dtype), rtol=rt, atol=1e-5 * rt)


def test_negative_and_zero_sum_weights_match_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    for w in ([-1.0, 1.0, -2.0], [2.0, -0.5, 1.0], [2.0, 1.0, -3.0], [1.0, 2.0, -1.0]):
        for red in ("mean", "sum", "none"):
            xt = torch.tensor(NEG_X, requires_grad=True)
            lt = F.cross_entropy(xt, torch.tensor(NEG_T), weight=torch.tensor(w, dtype=torch.float64),
                                 reduction=red)
            (gt,) = torch.autograd.grad(lt.sum(), xt)
            loss, grad = pyce.cross_entropy_and_grad(NEG_X, NEG_T, weight=w, reduction=red)
            np.testing.assert_allclose(loss, lt.detach().numpy(), rtol=1e-12)
            gt = gt.numpy()
            # torch's unfused backward turns the target entry of a zero denominator into
            # inf - inf = NaN where pyce keeps the sign of the 'sum' gradient; elsewhere equal
            ok = ~np.isnan(gt)
            np.testing.assert_allclose(grad[ok], gt[ok], rtol=1e-12)
            assert np.array_equal(np.isinf(grad[ok]), np.isinf(gt[ok]))
