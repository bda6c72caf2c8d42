"""pyce.gradcheck: correct models pass at every size with a wide margin, planted bugs fail.

The margins asserted here (correct models at least 100x below the tolerance,
bugs at least 1e4x above it, 1e3x for a single wrong row of 256) are what makes the verdict trustworthy: the
measured values are in the report of the gradcheck branch and the module
docstring of pyce/trainer/gradcheck.py.
"""
import numpy as np
import pytest

import pyce
import pyce.nn as nn
import pyce.optim as optim
import pyce.train as train
from pyce.datasets import load_digits

RTOL = 1e-5  # gradcheck's default tolerance


def _batch(n=16, d=7, c=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.integers(0, c, n)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def _smooth_images(n, seed):
    """CIFAR-shaped (n, 3072) standardized images: blocky, blurred random fields,
    so neighbouring pixels (columns) are strongly correlated."""
    rng = np.random.default_rng(seed)
    img = np.kron(rng.standard_normal((n, 3, 4, 4)), np.ones((8, 8)))
    for ax in (2, 3):
        img = (img + np.roll(img, 1, ax) + np.roll(img, -1, ax)) / 3
    x = (1 / (1 + np.exp(-img))).reshape(n, -1)
    return (x - x.mean()) / x.std(), rng.integers(0, 10, n)


def _cifar_batch(kind, seed, n=32):
    if kind == "structured":
        return _smooth_images(n, 100 + seed)
    rng = np.random.default_rng(100 + seed)
    return rng.standard_normal((n, 3072)), rng.integers(0, 10, n)


@pytest.mark.parametrize("seed", range(10))
def test_readme_example_passes_for_every_seed(digits, seed):
    """The README's example (64-256-128-10 ELU, 32 digits rows) printed FAILED for
    seeds 0, 2 and 4: entries of 1e-5 were judged on 5e-10 of rounding noise."""
    model = nn.mlp([64, 256, 128, 10], activation="elu", rng=seed)
    report = pyce.gradcheck(model, digits.x_train[:32], digits.y_train[:32])
    assert report.passed, str(report)
    assert report.rtol == RTOL
    assert report.max_rel_error < RTOL / 100  # measured <= 6e-9
    assert "PASSED" in str(report)


def test_readme_example_after_training_passes(digits):
    """The README checks the model after training, when the gradients are small
    (here 100 steps on the first 640 rows: the loss on the 32 checked rows is
    about 0.003, 1000x below its value at initialization)."""
    model = nn.mlp([64, 256, 128, 10], activation="elu", rng=0)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = digits.x_train[:640], digits.y_train[:640]
    train.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=10, batch_size=64, verbose=0)
    report = pyce.gradcheck(model, x[:32], y[:32])
    assert report.passed, str(report)
    assert float(nn.CrossEntropyLoss().forward(model.forward(x[:32]), y[:32])) < 0.01
    assert report.max_rel_error < RTOL / 100  # measured <= 6e-8 (20 epochs on all rows)


@pytest.mark.parametrize("kind,seed", [("random", 0), ("random", 1), ("random", 2),
                                       ("structured", 0)])
def test_cifar_sized_model_passes(kind, seed):
    """3072-512-256-10: every parameter larger than max_per_param is compared along
    5 directions (two loss evaluations each), so this takes about a second."""
    x, y = _cifar_batch(kind, seed)
    model = nn.mlp([3072, 512, 256, 10], activation="elu", rng=seed)
    report = pyce.gradcheck(model, x, y)
    assert report.passed, str(report)
    assert report.max_rel_error < RTOL / 100  # measured <= 1.1e-8
    modes = {p.name: (p.mode, p.checked) for p in report.params}
    assert modes["0.weight"] == ("directions", 5) and modes["4.bias"] == ("entries", 10)


@pytest.mark.parametrize("activation", ["elu", "relu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradcheck_passes_on_linear_activation_stacks(activation, dtype):
    x, y = _batch()
    model = nn.mlp([7, 9, 6, 4], activation=activation, dtype=dtype, rng=1)
    before = model.state_dict()
    report = pyce.gradcheck(model, x, y)
    assert report.passed, str(report)  # max_rel_error <= 1e-5; the planted bugs give > 0.1
    assert set(report.per_param) == set(before)
    for k, v in model.state_dict().items():  # the caller's model is untouched
        np.testing.assert_array_equal(v, before[k])
        assert v.dtype == dtype


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_with_loss_options_and_elu_alpha(reduction):
    x, y = _batch(seed=3)
    y[2] = -1
    model = nn.Sequential(nn.Linear(7, 5, dtype=np.float64, rng=0), nn.ELU(0.5),
                          nn.Linear(5, 4, dtype=np.float64, rng=1, nonlinearity="linear"))
    loss = nn.CrossEntropyLoss(weight=[1.0, 2.0, 0.5, 1.5], ignore_index=-1,
                               reduction=reduction, label_smoothing=0.2)
    assert pyce.gradcheck(model, x, y, loss).max_rel_error < 1e-7


# ------------------------------------------------------------------ planted bugs

class _SumGradientLoss(nn.CrossEntropyLoss):
    """The planted bug: reports the 'mean' loss but returns the 'sum' gradient."""

    def backward(self, grad=None):
        return super().backward(grad) * self._grad.shape[0]


def _assert_fails(report, wrong, margin=1e4):
    assert not report.passed
    assert report.max_rel_error > margin * RTOL, str(report)
    bad = {p.name for p in report.params if p.max_rel_error > report.rtol}
    assert bad == wrong, str(report)
    assert all(p.max_rel_error < RTOL / 100 for p in report.params if p.name not in wrong)
    text = str(report)
    assert "FAILED" in text
    assert sum(line.endswith("WRONG") for line in text.splitlines()) == len(wrong)


def test_gradcheck_catches_a_batch_size_scaled_gradient():
    x, y = _batch(n=32)
    model = nn.mlp([7, 9, 4], rng=0)
    report = pyce.gradcheck(model, x, y, _SumGradientLoss())
    _assert_fails(report, {"0.weight", "0.bias", "2.weight", "2.bias"})
    assert report.max_rel_error == pytest.approx(31 / 32, rel=1e-6)  # |32a - a| / 32a
    for p in report.params:
        assert p.scale == pytest.approx(32, rel=1e-6)
    text = str(report)
    assert "batch size" in text and "'sum'" in text


@pytest.mark.parametrize("seed", range(3))
def test_batch_size_scaled_gradient_fails_on_the_readme_model(digits, seed):
    model = nn.mlp([64, 256, 128, 10], activation="elu", rng=seed)
    report = pyce.gradcheck(model, digits.x_train[:32], digits.y_train[:32],
                            _SumGradientLoss())
    _assert_fails(report, {p.name for p in report.params})
    assert all(p.scale == pytest.approx(32, rel=1e-6) for p in report.params)
    assert "'sum'" in str(report)


def _pass_through(self, grad, *, input_grad=True):
    return grad  # the bug: ELU's derivative taken as 1


@pytest.mark.parametrize("seed", range(3))
def test_activation_derivative_taken_as_one_fails(digits, monkeypatch, seed):
    monkeypatch.setattr(nn.ELU, "backward", _pass_through)
    model = nn.mlp([64, 256, 128, 10], activation="elu", rng=seed)
    report = pyce.gradcheck(model, digits.x_train[:32], digits.y_train[:32])
    # the last layer sits after every ELU: its gradient is still right
    _assert_fails(report, {"0.weight", "0.bias", "2.weight", "2.bias"})
    assert not any(p.scale_fits for p in report.params if p.name[0] in "02")
    assert "No constant factor" in str(report) and "batch size" not in str(report)


def test_activation_derivative_taken_as_one_fails_at_cifar_size(monkeypatch):
    monkeypatch.setattr(nn.ELU, "backward", _pass_through)
    x, y = _cifar_batch("structured", 0)
    model = nn.mlp([3072, 512, 256, 10], activation="elu", rng=0)
    _assert_fails(pyce.gradcheck(model, x, y), {"0.weight", "0.bias", "2.weight", "2.bias"})


class _TransposedWeightGrad(nn.Linear):
    """The planted bug: a square layer that writes the transpose of its weight gradient."""

    def backward(self, grad, *, input_grad=True):
        out = super().backward(grad, input_grad=input_grad)
        self.weight.grad[...] = self.weight.grad.T.copy()
        return out


@pytest.mark.parametrize("seed", range(3))
def test_transposed_weight_gradient_fails(digits, seed):
    model = nn.mlp([64, 128, 128, 10], activation="elu", rng=seed)
    model.layers[2].__class__ = _TransposedWeightGrad  # the 128 x 128 layer
    report = pyce.gradcheck(model, digits.x_train[:32], digits.y_train[:32])
    _assert_fails(report, {"2.weight"})
    assert "No constant factor" in str(report)


class _ForgottenBiasGrad(nn.Linear):
    def backward(self, grad, *, input_grad=True):
        out = super().backward(grad, input_grad=input_grad)
        self.bias.grad[...] = 0
        return out


def test_gradcheck_names_the_wrong_parameter():
    x, y = _batch()
    model = nn.Sequential(nn.Linear(7, 5, rng=0), nn.ELU(), _ForgottenBiasGrad(5, 4, rng=1))
    report = pyce.gradcheck(model, x, y)
    _assert_fails(report, {"2.bias"})
    assert report.per_param["2.bias"] == 1.0 and "are 0 where the true ones are not" in str(report)


class _OneRowForgotten(nn.Linear):
    def backward(self, grad, *, input_grad=True):
        out = super().backward(grad, input_grad=input_grad)
        self.weight.grad[7] = 0
        return out


def test_random_directions_find_one_wrong_row_of_a_large_weight(digits):
    """A sampled subset of entries would miss a wrong row of 256 most of the time,
    and the gradient's own direction cannot see a dropped part (a . a = a . g
    then); random directions mix every entry and see it."""
    model = nn.mlp([64, 256, 128, 10], activation="elu", rng=0)
    model.layers[0].__class__ = _OneRowForgotten
    report = pyce.gradcheck(model, digits.x_train[:32], digits.y_train[:32])
    _assert_fails(report, {"0.weight"}, margin=1e3)  # about |row| / |a| = 1/16: 0.098


# ------------------------------------------------------------------ options

def test_small_parameters_are_checked_entry_by_entry():
    x, y = _batch(n=4, d=30)
    model = nn.mlp([30, 40, 4], rng=0)
    report = pyce.gradcheck(model, x, y, max_per_param=40, directions=3)
    assert [(p.mode, p.checked) for p in report.params] == [
        ("directions", 4), ("entries", 40), ("directions", 4), ("entries", 4)]
    assert report.passed
    every = pyce.gradcheck(model, x, y, max_per_param=None)
    assert [p.checked for p in every.params] == [1200, 40, 160, 4]
    assert every.passed and "1200 entries" in str(every)


def test_the_seed_fixes_the_random_directions():
    x, y = _batch(n=8, d=30)
    model = nn.mlp([30, 40, 4], rng=0)
    a, b = pyce.gradcheck(model, x, y, seed=3), pyce.gradcheck(model, x, y, seed=3)
    c = pyce.gradcheck(model, x, y, seed=4)
    assert [p.max_abs_error for p in a.params] == [p.max_abs_error for p in b.params]
    assert [p.max_abs_error for p in a.params] != [p.max_abs_error for p in c.params]


class _OwnForward(nn.Sequential):
    def forward(self, x):  # gradcheck cannot know what this does: full forward passes
        return super().forward(x)


def test_re_running_only_the_later_layers_gives_the_full_forward_result(digits):
    """For a plain Sequential a perturbed parameter re-runs the layers from its
    own on; any other model runs the whole forward pass. Same numbers, bit for bit."""
    x, y = digits.x_train[:32], digits.y_train[:32]
    def layers():
        return [nn.Linear(64, 32, rng=0), nn.ELU(), nn.Linear(32, 16, rng=1), nn.ELU(),
                nn.Linear(16, 10, rng=2)]
    plain, other = nn.Sequential(*layers()), _OwnForward(*layers())
    a, b = pyce.gradcheck(plain, x, y), pyce.gradcheck(other, x, y)
    assert a.passed and b.passed
    assert [(p.max_abs_error, p.scale) for p in a.params] == \
        [(p.max_abs_error, p.scale) for p in b.params]


def test_a_parameter_with_no_gradient_passes():
    """Dead ReLU units: the first layer's gradient is exactly 0 and so are its
    finite differences; atol keeps 0 / 0 from being called an error."""
    x, y = _batch()
    model = nn.mlp([7, 9, 4], activation="relu", dtype=np.float64, rng=0)
    model.layers[0].bias.data[:] = -100.0
    report = pyce.gradcheck(model, x, y)
    assert report.params[0].max_abs_error == 0.0 and report.passed


def test_a_non_finite_value_fails_and_says_so():
    x, y = _batch()
    model = nn.mlp([7, 9, 4], dtype=np.float64, rng=0)
    model.layers[2].weight.data[0, 0] = np.nan
    report = pyce.gradcheck(model, x, y)
    assert not report.passed and report.max_rel_error == np.inf
    assert "not finite" in str(report)


@pytest.mark.parametrize("kw,exc,text", [
    ({"eps": 0.0}, ValueError, "eps"), ({"eps": float("nan")}, ValueError, "eps"),
    ({"eps": "1e-5"}, TypeError, "eps"), ({"rtol": -1.0}, ValueError, "rtol"),
    ({"atol": float("inf")}, ValueError, "atol"), ({"directions": 0}, ValueError, "directions"),
    ({"directions": 2.0}, TypeError, "directions"),
    ({"max_per_param": 0}, ValueError, "max_per_param"),
])
def test_bad_options_name_the_argument(kw, exc, text):
    x, y = _batch()
    with pytest.raises(exc, match=text):
        pyce.gradcheck(nn.mlp([7, 4], rng=0), x, y, **kw)


def test_a_relu_kink_next_to_the_point_is_not_a_failure():
    """A hidden unit's pre-activation is 3e-6: the step h = 1e-5 on its bias
    crosses ReLU's kink and the central difference averages the two slopes.
    gradcheck measures such a comparison again with h/10 and h/100, which stay
    on one side; with eps = 1e-3 every step crosses the kink and it fails."""
    model = nn.Sequential(nn.Linear(2, 3, dtype=np.float64, rng=0), nn.ReLU(),
                          nn.Linear(3, 2, dtype=np.float64, rng=1))
    x, y = np.array([[1.0, 0.5]]), np.array([1])
    w, b = model.layers[0].weight.data, model.layers[0].bias.data
    b[0] = 3e-6 - w[0] @ x[0]  # pre-activation of unit 0 = 3e-6
    assert abs(model.layers[2].weight.data[1, 0] - model.layers[2].weight.data[0, 0]) > 0.1
    report = pyce.gradcheck(model, x, y)
    assert report.passed, str(report)
    assert report.max_rel_error < RTOL / 100
    crossed = pyce.gradcheck(model, x, y, eps=1e-3)
    assert not crossed.passed and crossed.per_param["0.bias"] > 0.1
