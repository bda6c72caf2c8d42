"""pyce.app.experiments: the experiments of the command line, called from Python."""
import math

import numpy as np
import pytest

import pyce.datasets
from pyce import train
from pyce.app import experiments, plots


@pytest.fixture(scope="module")
def digits():
    return pyce.datasets.load_digits()


@pytest.fixture(scope="module")
def runs(digits):
    # the default model and learning rate, one epoch: 'sum' at batch 64 diverges
    return experiments.compare_reductions(digits, batch_sizes=[64], epochs=1)


def test_public_path_is_the_app_module():
    from pyce.app import datasets
    assert pyce.datasets.load_digits is datasets.load_digits
    assert pyce.datasets.MIRRORS is datasets.MIRRORS


def test_diverged_at_step_is_the_step_after_the_last_recorded_loss():
    # fit stops before recording the bad loss
    assert experiments.diverged_at_step([2.0, 1.5, 9.0], diverged=True) == 4
    assert experiments.diverged_at_step([2.0, 1.5, 9.0], diverged=False) is None
    # a non-finite value that is in the record is reported where it is
    assert experiments.diverged_at_step([2.0, math.inf, 3.0], diverged=False) == 2
    assert experiments.diverged_at_step([], diverged=True) == 1


def test_compare_reductions_records(runs):
    mean, total = runs
    assert (mean["reduction"], total["reduction"]) == ("mean", "sum")
    assert not mean["diverged"] and mean["test_accuracy"] > 0.8
    assert mean["final_loss"] < mean["first_loss"]
    assert total["diverged"] and total["test_accuracy"] is None
    assert total["message"] is not None and "reduction='sum'" in total["message"]
    assert total["diverged_at_step"] == len(total["step_losses"]) + 1
    assert all(math.isfinite(v) for v in total["step_losses"])
    # 'sum' at batch 64 steps 64 times further than 'mean' from the same weights
    assert total["first_step_size"] == pytest.approx(64 * mean["first_step_size"], rel=1e-4)


def test_compare_reductions_accuracy_is_the_models(digits, monkeypatch):
    # the record's accuracy is the trained model's, recomputed here from its logits
    seen = []
    real_fit = train.fit

    def spy(model, *a, **kw):
        history = real_fit(model, *a, **kw)
        seen.append(model)
        return history
    monkeypatch.setattr(train, "fit", spy)
    (run,) = experiments.compare_reductions(digits, hidden=[16], batch_sizes=[32],
                                            reductions=["mean"], epochs=2, seed=1)
    logits = seen[0].forward(digits.x_test)
    assert run["test_accuracy"] == float(np.mean(np.argmax(logits, axis=1) == digits.y_test))


def test_first_step_size_leaves_the_model_alone(digits):
    from pyce import nn
    model = experiments.make_model(digits, [8], seed=0)
    before = model.state_dict()
    step = experiments.first_step_size(model, nn.CrossEntropyLoss(), digits.x_train[:16],
                                       digits.y_train[:16], 0.1)
    assert step > 0
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_the_red_x_sits_at_the_step_that_diverged(runs):
    # the data the plot uses: the 'sum' run's record
    total = runs[1]
    step, height = plots.divergence_marker(total)
    assert step == total["diverged_at_step"] == len(total["step_losses"]) + 1
    assert height == pytest.approx(total["step_losses"][-1] / 64)
    assert plots.divergence_marker(runs[0]) is None


def test_make_optimizer_refuses_momentum_for_adam(digits):
    params = experiments.make_model(digits, [4]).parameters()
    with pytest.raises(ValueError, match="momentum"):
        experiments.make_optimizer("adam", params, momentum=0.5)
    with pytest.raises(ValueError, match="optimizer"):
        experiments.make_optimizer("rmsprop", params)
    from pyce import optim
    assert isinstance(experiments.make_optimizer("sgd", params), optim.SGD)


@pytest.mark.parametrize("kw, exc", [({"epochs": 0}, ValueError), ({"epochs": 1.5}, TypeError),
                                     ({"batch_sizes": [0]}, ValueError),
                                     ({"optimizer": "x"}, ValueError),
                                     ({"optimizer": "adam", "momentum": 0.5}, ValueError)])
def test_compare_reductions_bad_arguments(digits, kw, exc, monkeypatch):
    def fit(*a, **k):
        raise AssertionError("trained although an argument was bad")
    monkeypatch.setattr(train, "fit", fit)
    with pytest.raises(exc):
        experiments.compare_reductions(digits, **kw)
