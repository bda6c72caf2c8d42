"""Ctrl-C during fit: the model, optimizer and Generator go back to the end of
the last finished epoch and TrainingInterrupted (a KeyboardInterrupt) carries
the finished epochs."""
import numpy as np
import pytest

import pyce.nn as nn
import pyce.optim as optim
import pyce.train as train


def _problem():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((90, 5))
    return x, rng.integers(0, 3, 90)


def _setup(make_opt):
    model = nn.mlp([5, 7, 3], dtype=np.float64, rng=0)
    return model, make_opt(model.parameters())


OPTIMIZERS = {"sgd": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-3),
              "adam": lambda ps: optim.Adam(ps, lr=0.01)}


def _reference(make_opt, epochs):
    x, y = _problem()
    model, opt = _setup(make_opt)
    h = train.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=epochs, batch_size=20,
                  seed=3, verbose=0)
    return model, opt, h


class _StepBomb:
    """Wraps optimizer.step; raises KeyboardInterrupt after `after` steps, in the
    middle of the update of the parameters (the first one already updated)."""

    def __init__(self, opt, after):
        self.opt, self.after, self.calls = opt, after, 0
        self.step = opt.step

    def __call__(self):
        self.calls += 1
        if self.calls > self.after:
            p = self.opt.params[0]
            p.data -= 1.0  # a half-done update must not survive
            raise KeyboardInterrupt
        self.step()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("finished", [0, 2])
def test_interrupt_mid_epoch_restores_the_last_finished_epoch(name, finished):
    make_opt = OPTIMIZERS[name]
    x, y = _problem()
    model, opt = _setup(make_opt)
    opt.step = _StepBomb(opt, after=finished * 5 + 2)  # 5 batches per epoch
    with pytest.raises(train.TrainingInterrupted) as info:
        train.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=5, batch_size=20, seed=3,
                  verbose=0)
    assert isinstance(info.value, KeyboardInterrupt)
    h = info.value.history
    assert h.interrupted and len(h.epochs) == finished and len(h.step_losses) == finished * 5
    assert f"epoch {finished + 1}" in str(info.value)
    if finished:
        ref_model, ref_opt, ref_h = _reference(make_opt, finished)
        want_model, want_opt = ref_model.state_dict(), ref_opt.state_dict()
        assert h.step_losses == ref_h.step_losses
    else:
        fresh_model, fresh_opt = _setup(make_opt)
        want_model, want_opt = fresh_model.state_dict(), fresh_opt.state_dict()
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, want_model[k])
    del opt.step
    got_opt = opt.state_dict()
    assert sorted(got_opt) == sorted(want_opt)
    for k, v in got_opt.items():
        np.testing.assert_array_equal(v, want_opt[k])


def test_interrupt_in_on_epoch_keeps_that_epoch_and_training_can_go_on():
    x, y = _problem()
    model, opt = _setup(OPTIMIZERS["sgd"])

    def on_epoch(history):
        if len(history.epochs) == 2:
            raise KeyboardInterrupt
    with pytest.raises(train.TrainingInterrupted) as info:
        train.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=4, batch_size=20, seed=3,
                  verbose=0, on_epoch=on_epoch)
    assert len(info.value.history.epochs) == 2
    ref_model, _, ref_h = _reference(OPTIMIZERS["sgd"], 2)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, ref_model.state_dict()[k])
    assert info.value.history.epochs[1]["train_loss"] == ref_h.epochs[1]["train_loss"]


def test_interrupt_then_resume_from_checkpoint_equals_an_uninterrupted_run(tmp_path):
    x, y = _problem()
    ck = tmp_path / "ck.npz"
    model, opt = _setup(OPTIMIZERS["sgd"])
    opt.step = _StepBomb(opt, after=12)  # in epoch 3
    with pytest.raises(train.TrainingInterrupted):
        train.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=4, batch_size=20, seed=3,
                  verbose=0, checkpoint=ck)
    del opt.step
    model2, opt2 = _setup(OPTIMIZERS["sgd"])
    h = train.fit(model2, nn.CrossEntropyLoss(), opt2, x, y, epochs=4, batch_size=20, seed=3,
                  verbose=0, resume=ck)
    ref_model, _, ref_h = _reference(OPTIMIZERS["sgd"], 4)
    assert h.step_losses == ref_h.step_losses
    for k, v in model2.state_dict().items():
        np.testing.assert_array_equal(v, ref_model.state_dict()[k])
