"""The trainer's protocols: Module.backward(grad, *, input_grad), Module.to(dtype),
the Loss base that owns reduction, the shared validators, and fit's
evaluation through the loss layer's own function."""
import numpy as np
import pytest

from pyce import reference
import pyce.nn as nn
import pyce.optim as optim
import pyce.train as train


class Scale(nn.Module):
    """A parameter-free layer written only against the Module protocol."""

    def __init__(self):
        self.calls = []

    def forward(self, x):
        return 2.0 * x

    def backward(self, grad, *, input_grad=True):
        self.calls.append(input_grad)
        return 2.0 * grad if input_grad else None


def test_sequential_passes_input_grad_to_any_first_layer_and_true_to_the_rest():
    first, middle = Scale(), Scale()
    model = nn.Sequential(first, nn.Linear(3, 4, rng=0), middle, nn.ELU(), nn.Linear(4, 2, rng=1))
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    g = np.ones((5, 2), np.float32)
    model.forward(x)
    assert model.backward(g, input_grad=False) is None
    assert first.calls == [False] and middle.calls == [True]
    model.forward(x)
    dx = model.backward(g)
    assert dx.shape == x.shape and first.calls == [False, True]


def test_layers_honour_input_grad_false_and_still_accumulate_parameter_grads():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 3))
    g = rng.standard_normal((6, 2))
    lin = nn.Linear(3, 2, dtype=np.float64, rng=0)
    lin.forward(x)
    assert lin.backward(g, input_grad=False) is None
    np.testing.assert_allclose(lin.weight.grad, g.T @ x, rtol=1e-14)
    for act in (nn.ELU(), nn.ReLU()):
        act.forward(x)
        assert act.backward(np.ones_like(x), input_grad=False) is None


def test_fit_trains_a_model_that_only_follows_the_protocol():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 4))
    y = rng.integers(0, 3, 50)
    scale = Scale()
    model = nn.Sequential(scale, nn.Linear(4, 3, dtype=np.float64, rng=0))
    h = train.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), x, y,
                  epochs=2, batch_size=10, verbose=0)
    assert len(h.epochs) == 2 and scale.calls == [False] * 10


def test_sequential_and_fit_reject_what_is_not_a_module():
    with pytest.raises(TypeError, match="layer 1"):
        nn.Sequential(nn.Linear(2, 2), lambda x: x)
    with pytest.raises(TypeError, match="layer 0"):
        nn.Sequential(nn.CrossEntropyLoss())
    x, y = np.zeros((4, 2)), np.zeros(4, np.int64)
    model = nn.mlp([2, 2], rng=0)
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="loss_fn"):
        train.fit(model, lambda a, b: 0.0, opt, x, y, epochs=1, batch_size=2)
    with pytest.raises(TypeError, match="model"):
        train.fit(object(), nn.CrossEntropyLoss(), opt, x, y, epochs=1, batch_size=2)


@pytest.mark.parametrize("dtype", [np.float64, "float32"])
def test_to_casts_every_parameter_and_layer_dtype(dtype):
    model = nn.mlp([3, 5, 2], dtype=np.float32 if dtype == np.float64 else np.float64, rng=0)
    before = {k: v.astype(np.float64) for k, v in model.state_dict().items()}
    assert model.to(dtype) is model
    dt = np.dtype(dtype)
    assert model.dtype == dt and all(layer.dtype == dt for layer in model.layers
                                     if isinstance(layer, nn.Linear))
    for p in model.parameters():
        assert p.data.dtype == dt and p.grad.dtype == dt and not p.grad.any()
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(v, before[k], rtol=1e-7)
    out = model.forward(np.ones((2, 3)))
    assert out.dtype == dt


def test_to_rejects_a_non_float_dtype():
    with pytest.raises(TypeError, match="dtype"):
        nn.mlp([3, 2], rng=0).to(np.int32)


def test_loss_base_owns_and_checks_reduction():
    loss = nn.CrossEntropyLoss()
    assert isinstance(loss, nn.Loss) and loss.reduction == "mean"
    loss.reduction = "sum"
    assert loss.batch_sum(3.0, 4) == 3.0
    loss.reduction = "mean"
    assert loss.batch_sum(3.0, 4) == 12.0
    with pytest.raises(ValueError, match="reduction"):
        loss.reduction = "avg"
    with pytest.raises(ValueError, match="reduction"):
        nn.CrossEntropyLoss(reduction="none").batch_sum(1.0, 2)
    with pytest.raises(ValueError, match="label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=1.5)


def test_shared_validators_give_type_and_value_errors_naming_the_argument():
    with pytest.raises(TypeError, match="in_features"):
        nn.Linear(2.5, 3)
    with pytest.raises(ValueError, match="out_features"):
        nn.Linear(2, 0)
    with pytest.raises(TypeError, match=r"sizes\[1\]"):
        nn.mlp([2, "3", 4])
    with pytest.raises(TypeError, match="patience"):
        train.EarlyStopping(patience=1.5)
    with pytest.raises(ValueError, match="patience"):
        train.EarlyStopping(patience=0)
    with pytest.raises(ValueError, match="min_delta"):
        train.EarlyStopping(min_delta=-1)
    model = nn.mlp([2, 2], rng=0)
    x, y = np.zeros((4, 2)), np.zeros(4, np.int64)
    with pytest.raises(TypeError, match="epochs"):
        train.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), x, y,
                  epochs=1.0, batch_size=2)


def test_test_loss_is_the_loss_layers_mean_with_weights_ignored_rows_and_smoothing():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5000, 6))  # more than one evaluation chunk
    y = rng.integers(0, 4, 5000)
    y[::7] = 2  # ignored below
    weight = np.array([0.5, 2.0, 1.0, 3.0])
    loss = nn.CrossEntropyLoss(weight=weight, ignore_index=2, label_smoothing=0.1)
    model = nn.mlp([6, 8, 4], dtype=np.float64, rng=0)
    got_loss, got_acc = train.evaluate(model, loss, x, y)
    logits = model.forward(x)
    want = reference.cross_entropy(logits, y, weight, 2, "mean", 0.1)
    assert got_loss == pytest.approx(float(want), rel=1e-12)
    keep = y != 2
    assert got_acc == pytest.approx(np.mean(logits.argmax(1)[keep] == y[keep]), abs=1e-15)
    h = train.fit(model, loss, optim.SGD(model.parameters(), lr=0.0), x[:100], y[:100],
                  epochs=1, batch_size=50, x_test=x, y_test=y, verbose=0)
    assert h.epochs[0]["test_loss"] == pytest.approx(float(want), rel=1e-12)


def test_weights_summing_to_zero_give_nan_test_loss_as_the_loss_layer_does():
    x = np.random.default_rng(4).standard_normal((10, 3))
    y = np.zeros(10, np.int64)
    loss = nn.CrossEntropyLoss(weight=np.array([0.0, 1.0]))
    model = nn.mlp([3, 2], dtype=np.float64, rng=0)
    got, _ = train.evaluate(model, loss, x, y)
    assert np.isnan(got) and np.isnan(float(loss.value(model.forward(x), y)))
