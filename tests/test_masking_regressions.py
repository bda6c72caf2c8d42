"""Regression tests for masking bugs found by the adversarial tests.

Expected values are written out in float64 math here, not taken from pyce.
"""
import math

import numpy as np
import pytest

import pyce
import pyce.reference as ref

# The reference is plain NumPy: it warns on the inf/NaN these tests feed it, by design.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

IMPLS = [pytest.param(pyce, id="fast"), pytest.param(ref, id="reference")]


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


@pytest.mark.parametrize("impl", IMPLS)
def test_zero_weight_target_with_minus_inf_logit(impl):
    # Target class has weight 0 and logit -inf: the row contributes 0, not NaN.
    x = np.array([[-np.inf, 0.0, 1.0]])
    loss = impl.cross_entropy(x, np.array([0]), weight=[0.0, 1.0, 1.0], reduction="none")
    assert loss.tolist() == [0.0]


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


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fn", ["softmax", "log_softmax"])
def test_softmax_of_empty_class_axis_is_empty(impl, fn):
    out = getattr(impl, fn)(np.zeros((3, 0)))
    assert out.shape == (3, 0)


@pytest.mark.parametrize("impl", IMPLS)
def test_nan_row_stays_nan_with_zero_weight_target(impl):
    # The masks above must not hide a NaN row that is not ignored.
    x = np.array([[np.nan, 0.0, 1.0], [0.0, np.inf, 1.0]])
    loss = impl.cross_entropy(x, np.array([0, 0]), weight=[0.0, 1.0, 1.0], reduction="none")
    assert np.isnan(loss).all()


@pytest.mark.parametrize("impl", IMPLS)
def test_mean_gradient_with_tiny_sample_weight_does_not_underflow(impl):
    # 'mean' divides by sum(sample_weight): v / sum(v) = 1 here, so the gradient is
    # (p - t) exactly; the reference used to multiply v = 2.2e-308 into 3.5e-232 first
    # and underflowed to 0.
    x = np.zeros((1, 2))
    t = np.array([[7.0e-232, 0.0]])
    grad = impl.cross_entropy_backward(x, t, sample_weight=np.array([2.2250738585072014e-308]))
    np.testing.assert_allclose(grad, [[-3.5e-232, 3.5e-232]], rtol=1e-14)
