"""pyce.gradcheck passes on correct stacks and catches a batch-size-scaled gradient."""
import numpy as np
import pytest

import pyce
import pyce.nn as nn


def _batch(n=16, d=7, c=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, c, n)


@pytest.mark.parametrize("activation", ["elu", "relu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradcheck_passes_on_linear_activation_stacks(activation, dtype):
    x, y = _batch()
    model = nn.mlp([7, 9, 6, 4], activation=activation, dtype=dtype, rng=1)
    before = model.state_dict()
    report = pyce.gradcheck(model, x, y)
    assert report.passed, str(report)  # max_rel_error <= 1e-5; the planted bug gives ~1
    assert set(report.per_param) == set(before)
    for k, v in model.state_dict().items():  # the caller's model is untouched
        np.testing.assert_array_equal(v, before[k])
        assert v.dtype == dtype


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_gradcheck_with_loss_options_and_elu_alpha(reduction):
    x, y = _batch(seed=3)
    y[2] = -1
    model = nn.Sequential(nn.Linear(7, 5, dtype=np.float64, rng=0), nn.ELU(0.5),
                          nn.Linear(5, 4, dtype=np.float64, rng=1, nonlinearity="linear"))
    loss = nn.CrossEntropyLoss(weight=[1.0, 2.0, 0.5, 1.5], ignore_index=-1,
                               reduction=reduction, label_smoothing=0.2)
    assert pyce.gradcheck(model, x, y, loss).max_rel_error < 1e-6


class _SumGradientLoss(nn.CrossEntropyLoss):
    """The planted bug: reports the 'mean' loss but returns the 'sum' gradient."""

    def backward(self, grad=None):
        return super().backward(grad) * self._grad.shape[0]


def test_gradcheck_catches_a_batch_size_scaled_gradient():
    x, y = _batch(n=32)
    model = nn.mlp([7, 9, 4], rng=0)
    report = pyce.gradcheck(model, x, y, _SumGradientLoss())
    assert not report.passed
    assert report.max_rel_error > 0.9  # |32a - a| / 32a
    for p in report.params:
        assert p.scale == pytest.approx(32, rel=1e-4)
    text = str(report)
    assert "FAILED" in text and "WRONG" in text and "batch size" in text and "'sum'" in text


class _ForgottenBiasGrad(nn.Linear):
    def backward(self, grad, *, input_grad=True):
        out = super().backward(grad, input_grad=input_grad)
        self.bias.grad[...] = 0
        return out


def test_gradcheck_names_the_wrong_parameter():
    x, y = _batch()
    model = nn.Sequential(nn.Linear(7, 5, rng=0), nn.ELU(), _ForgottenBiasGrad(5, 4, rng=1))
    report = pyce.gradcheck(model, x, y)
    bad = {p.name for p in report.params if p.max_rel_error > report.rtol}
    assert bad == {"2.bias"}


def test_gradcheck_samples_large_parameters():
    x, y = _batch(n=4, d=30)
    model = nn.mlp([30, 40, 4], rng=0)
    report = pyce.gradcheck(model, x, y, max_per_param=25)
    assert [p.checked for p in report.params] == [25, 25, 25, 4]
    assert report.passed
