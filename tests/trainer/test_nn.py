"""pyce.nn layers: shapes, state_dict, init, ELU/ReLU kernels against float64 NumPy."""
import numpy as np
import pytest

import pyce.nn as nn
from pyce import _nnk, reference


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_expm1_kernel_within_2_ulp_over_the_used_range(dtype):
    x = np.concatenate([np.linspace(-90.0, 0.0, 400_001),
                        -np.logspace(-30, 1.5, 40_001)]).astype(dtype)
    got = np.empty_like(x)
    _nnk.expm1_nonpositive(x, got)
    exact = np.expm1(x.astype(np.float64))  # float64 libm: the exact value for float32
    ulp = np.spacing(np.abs(exact.astype(dtype))).astype(np.float64)
    assert np.max(np.abs(got - exact) / ulp) <= 2.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("alpha", [1.0, 0.3, 2.5])
def test_elu_forward_backward_match_float64_formula(dtype, alpha):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((33, 70)) * 3).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    layer = nn.ELU(alpha)
    y = layer.forward(x)
    dx = layer.backward(g)
    x64 = x.astype(np.float64)
    y_ref = np.where(x64 > 0, x64, alpha * np.expm1(x64))
    dx_ref = np.where(x64 > 0, 1.0, alpha * np.exp(x64)) * g
    tol = 2e-7 if dtype == np.float32 else 1e-15
    assert y.dtype == dtype and dx.dtype == dtype
    np.testing.assert_allclose(y, y_ref, rtol=2 * tol, atol=tol * alpha)
    np.testing.assert_allclose(dx, dx_ref, rtol=4 * tol, atol=4 * tol * alpha * np.abs(g).max())


def test_elu_nan_and_inf():
    layer = nn.ELU()
    y = layer.forward(np.array([[np.nan, -np.inf, np.inf, 0.0]]))
    assert np.isnan(y[0, 0]) and y[0, 1] == -1.0 and y[0, 2] == np.inf and y[0, 3] == 0.0


def test_relu_forward_backward():
    x = np.array([[-1.0, 0.0, 2.0, np.nan]], np.float32)
    layer = nn.ReLU()
    np.testing.assert_array_equal(layer.forward(x), [[0.0, 0.0, 2.0, np.nan]])
    g = np.array([[5.0, 6.0, 7.0, 8.0]], np.float32)
    np.testing.assert_array_equal(layer.backward(g), [[0.0, 0.0, 7.0, 8.0]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_forward_equals_numpy_maximum_bit_for_bit(dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((67, 129)).astype(dtype)
    x.flat[:8] = [-0.0, 0.0, np.nan, -np.nan, np.inf, -np.inf, 1e-45, -1e-45]
    x0 = x.copy()
    y = nn.ReLU().forward(x)
    assert y.dtype == dtype and y.tobytes() == np.maximum(x, 0).tobytes()
    assert not np.signbit(y[0, 0]) and np.isnan(y[0, 2]) and np.isnan(y[0, 3])
    assert x.tobytes() == x0.tobytes()   # the input is not written


def test_linear_matches_float64_math_and_accumulates_grads():
    rng = np.random.default_rng(2)
    lin = nn.Linear(5, 3, dtype=np.float64, rng=0)
    x = rng.standard_normal((4, 5))
    g = rng.standard_normal((4, 3))
    W, b = lin.weight.data.copy(), lin.bias.data.copy()
    np.testing.assert_allclose(lin.forward(x), x @ W.T + b, rtol=1e-14)
    dx = lin.backward(g)
    np.testing.assert_allclose(dx, g @ W, rtol=1e-14)
    np.testing.assert_allclose(lin.weight.grad, g.T @ x, rtol=1e-14)
    np.testing.assert_allclose(lin.bias.grad, g.sum(0), rtol=1e-14)
    lin.forward(x)
    lin.backward(g)  # no zero_grad: accumulates, as PyTorch
    np.testing.assert_allclose(lin.weight.grad, 2 * (g.T @ x), rtol=1e-14)
    lin.zero_grad()
    assert not lin.weight.grad.any() and not lin.bias.grad.any()


def test_kaiming_init_statistics_and_seed():
    a = nn.Linear(1000, 400, rng=7)
    b = nn.Linear(1000, 400, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert a.weight.data.dtype == np.float32 and a.weight.data.shape == (400, 1000)
    assert abs(a.weight.data.std() - np.sqrt(2 / 1000)) < 0.01 * np.sqrt(2 / 1000)
    assert not a.bias.data.any()
    m = nn.mlp([50, 80, 10], rng=0)
    assert abs(m[2].weight.data.std() - np.sqrt(1 / 80)) < 0.1 * np.sqrt(1 / 80)  # output: gain 1


def test_mlp_structure_state_dict_keys_and_round_trip():
    m = nn.mlp([64, 256, 128, 10], activation="relu", dtype=np.float64, rng=3)
    assert [type(l).__name__ for l in m.layers] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    sd = m.state_dict()
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"]
    assert sd["2.weight"].shape == (128, 256)
    assert [p.name for p in m.parameters()] == list(sd)
    other = nn.mlp([64, 256, 128, 10], activation="relu", dtype=np.float64, rng=4)
    other.load_state_dict(sd)
    x = np.random.default_rng(0).standard_normal((5, 64))
    np.testing.assert_array_equal(other.forward(x), m.forward(x))
    sd["0.weight"][:] = 0  # state_dict returns copies
    assert m[0].weight.data.any()


def test_load_state_dict_rejects_bad_keys_and_shapes():
    m = nn.mlp([4, 3, 2], rng=0)
    with pytest.raises(KeyError, match="missing"):
        m.load_state_dict({"0.weight": np.zeros((3, 4))})
    sd = m.state_dict()
    sd["0.weight"] = np.zeros((4, 3))
    with pytest.raises(ValueError, match="0.weight"):
        m.load_state_dict(sd)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(0, 3)
    with pytest.raises(TypeError, match="dtype"):
        nn.Linear(2, 3, dtype=np.int32)
    with pytest.raises(ValueError, match="activation"):
        nn.mlp([2, 3], activation="tanh")
    with pytest.raises(ValueError, match="sizes"):
        nn.mlp([2])
    with pytest.raises(ValueError, match="reduction"):
        nn.CrossEntropyLoss(reduction="avg")
    with pytest.raises(ValueError, match=r"\(batch, 4\)"):
        nn.Linear(4, 2).forward(np.zeros((3, 5)))


def test_cross_entropy_loss_layer_matches_reference_and_scales_upstream():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((6, 4))
    target = rng.integers(0, 4, 6)
    w = rng.uniform(0.5, 2, 4)
    for reduction in ("mean", "sum"):
        lf = nn.CrossEntropyLoss(weight=w, reduction=reduction, label_smoothing=0.1)
        loss = lf.forward(logits, target)
        ref = reference.cross_entropy(logits, target, w, reduction=reduction,
                                      label_smoothing=0.1)
        np.testing.assert_allclose(loss, ref, rtol=1e-13)
        gref = reference.cross_entropy_backward(logits, target, 1.0, w, reduction=reduction,
                                                label_smoothing=0.1)
        np.testing.assert_allclose(lf.backward(), gref, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(lf.backward(3.0), 3 * gref, rtol=1e-12, atol=1e-15)
    lf = nn.CrossEntropyLoss(reduction="none")
    lf.forward(logits, target)
    go = rng.standard_normal(6)
    gref = reference.cross_entropy_backward(logits, target, go, reduction="none")
    np.testing.assert_allclose(lf.backward(go), gref, rtol=1e-12, atol=1e-15)


def test_loss_backward_is_the_fused_pass_not_a_second_one(monkeypatch):
    import pyce._core as core
    import pyce.trainer.nn as nn_impl
    calls = []
    real = core.cross_entropy_and_grad
    monkeypatch.setattr(nn_impl, "cross_entropy_and_grad",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    for mod, name in ((core, "cross_entropy"), (core, "cross_entropy_backward"),
                      (nn_impl, "cross_entropy")):
        monkeypatch.setattr(mod, name, lambda *a, **k: pytest.fail("second pass"))
    lf = nn.CrossEntropyLoss()
    lf.forward(np.zeros((2, 3), np.float32), np.array([0, 1]))
    lf.backward()
    assert calls == [1]


def test_predict_is_argmax_of_forward():
    m = nn.mlp([6, 8, 4], rng=0)
    x = np.random.default_rng(0).standard_normal((10, 6)).astype(np.float32)
    np.testing.assert_array_equal(m.predict(x, batch_size=3), m.forward(x).argmax(1))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1), (64, 256), (3, 600), (1000, 7)])
def test_bias_kernels_match_float64(dtype, shape):
    rng = np.random.default_rng(4)
    g = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(shape[1]).astype(dtype)
    y = g.copy()
    _nnk.add_row_bias(y, b)
    np.testing.assert_array_equal(y, g + b)  # one rounding each: exact either way
    exact = g.astype(np.float64).sum(axis=0)
    out = np.full(shape[1], np.nan, dtype)  # written, not read, without accumulate
    _nnk.column_sum(g, out, False)
    # float32 is summed in double and rounded once; float64 in order, n roundings
    tol = dict(rtol=6e-8, atol=6e-8 * np.abs(g).max()) if dtype == np.float32 else \
        dict(rtol=0, atol=shape[0] * 2e-16 * np.abs(g).max())
    np.testing.assert_allclose(out, exact, **tol)
    out2 = b.copy()
    _nnk.column_sum(g, out2, True)
    np.testing.assert_allclose(out2, b.astype(np.float64) + exact,
                               rtol=tol["rtol"] * 2, atol=tol["atol"] * 2)


def test_linear_non_contiguous_grad_takes_the_numpy_path_with_same_result():
    rng = np.random.default_rng(5)
    lin = nn.Linear(5, 3, dtype=np.float64, rng=0)
    x = rng.standard_normal((4, 5))
    g = np.asfortranarray(rng.standard_normal((4, 3)))
    lin.forward(x)
    lin.zero_grad()
    lin.backward(g)
    np.testing.assert_allclose(lin.bias.grad, g.sum(0), rtol=1e-14)
    lin.backward(g)
    np.testing.assert_allclose(lin.bias.grad, 2 * g.sum(0), rtol=1e-14)
    np.testing.assert_allclose(lin.weight.grad, 2 * (g.T @ x), rtol=1e-14)
