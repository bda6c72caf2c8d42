"""pyce.train.fit: learning, History, checkpoints and resume, early stopping, divergence."""
import gzip
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import pyce.nn as nn
import pyce.optim as optim
import pyce.train as train

DIGITS = Path(__file__).resolve().parents[2] / "pyce" / "data" / "digits.csv.gz"


@pytest.fixture(scope="module")
def digits():
    with gzip.open(DIGITS, "rt") as f:
        d = np.loadtxt(f, delimiter=",", dtype=np.int64)
    return (d[:, :64] / 16.0).astype(np.float32), d[:, 64]


def _setup(seed=0, dtype=np.float32, lr=0.05, reduction="mean"):
    model = nn.mlp([64, 32, 10], dtype=dtype, rng=seed)
    return model, nn.CrossEntropyLoss(reduction=reduction), \
        optim.SGD(model.parameters(), lr=lr, momentum=0.9)


def test_fit_learns_digits_and_records_history(digits):
    x, y = digits
    model, loss, opt = _setup()
    seen = []
    h = train.fit(model, loss, opt, x[:1400], y[:1400], epochs=3, batch_size=64,
                  x_test=x[1400:], y_test=y[1400:], verbose=0, on_epoch=lambda h: seen.append(
                      len(h.epochs)))
    assert seen == [1, 2, 3]
    assert len(h.step_losses) == 3 * 22
    assert h.epochs[-1]["test_accuracy"] > 0.85
    assert h.epochs[-1]["train_loss"] < h.epochs[0]["train_loss"]
    assert set(h.epochs[0]) == {"epoch", "train_loss", "train_accuracy", "test_loss",
                                "test_accuracy", "seconds", "lr"}
    # test_loss is the 'mean' cross-entropy of the final model, computed independently
    logits = model.forward(x[1400:]).astype(np.float64)
    logp = logits - logits.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    assert h.epochs[-1]["test_loss"] == pytest.approx(-logp[np.arange(397), y[1400:]].mean(),
                                                      rel=1e-5)
    assert h.epochs[-1]["test_accuracy"] == pytest.approx(
        (logits.argmax(1) == y[1400:]).mean())
    d = json.loads(json.dumps(h.to_dict()))
    assert d["diverged"] is False and d["message"] is None and len(d["epochs"]) == 3


def test_same_seed_same_run_and_silent_when_not_a_tty(digits, capsys):
    x, y = digits
    runs = []
    for _ in range(2):
        model, loss, opt = _setup()
        runs.append(train.fit(model, loss, opt, x[:500], y[:500], epochs=2, batch_size=50,
                              seed=4, verbose=1).step_losses)
    assert runs[0] == runs[1]
    assert capsys.readouterr().err == ""


def test_checkpoint_round_trips_and_resume_equals_uninterrupted(digits, tmp_path):
    x, y = digits
    x, y = x[:600], y[:600]
    full_model, loss, full_opt = _setup()
    full = train.fit(full_model, loss, full_opt, x, y, epochs=4, batch_size=32, seed=9,
                     verbose=0)

    ck = tmp_path / "ck.npz"
    model, loss, opt = _setup()
    train.fit(model, loss, opt, x, y, epochs=2, batch_size=32, seed=9, verbose=0,
              checkpoint=ck)
    saved = train.load_checkpoint(ck)
    assert saved["epoch"] == 2
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(saved["model"][k], v)
        assert saved["model"][k].dtype == v.dtype
    for k, v in opt.state_dict().items():
        if isinstance(v, np.ndarray):
            np.testing.assert_array_equal(saved["optim"][k], v)

    model2, loss2, opt2 = _setup(seed=123)  # different initial weights: resume overwrites
    resumed = train.fit(model2, loss2, opt2, x, y, epochs=4, batch_size=32, seed=9,
                        verbose=0, resume=ck)
    assert resumed.step_losses == full.step_losses
    assert [e["train_loss"] for e in resumed.epochs] == [e["train_loss"] for e in full.epochs]
    for k, v in full_model.state_dict().items():
        np.testing.assert_array_equal(model2.state_dict()[k], v)
    with pytest.raises(ValueError, match="batch_size"):
        train.fit(model2, loss2, opt2, x, y, epochs=4, batch_size=16, verbose=0, resume=ck)


def test_save_and_load_model(tmp_path):
    m = nn.mlp([5, 7, 3], activation="relu", dtype=np.float64, rng=0)
    train.save_model(tmp_path / "m.npz", m)
    z = np.load(tmp_path / "m.npz")
    np.testing.assert_array_equal(z["0.weight"], m[0].weight.data)
    back = train.load_model(tmp_path / "m.npz")
    assert back.sizes == [5, 7, 3] and back.activation == "relu"
    x = np.random.default_rng(0).standard_normal((4, 5))
    np.testing.assert_array_equal(back.forward(x), m.forward(x))


def test_early_stopping_restores_best(digits):
    x, y = digits
    model, loss, opt = _setup(lr=0.05)
    # patience 1 on a metric that cannot improve past the first epoch's maximum
    es = train.EarlyStopping(metric="test_accuracy", patience=1, min_delta=1.0)
    h = train.fit(model, loss, opt, x[:300], y[:300], epochs=10, batch_size=30,
                  x_test=x[300:500], y_test=y[300:500], verbose=0, early_stopping=es)
    assert len(h.epochs) == 2 and h.stopped_early and not h.diverged
    assert "stopped early" in h.message
    with pytest.raises(ValueError, match="x_test"):
        train.fit(model, loss, opt, x, y, epochs=1, batch_size=8, early_stopping=es)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_divergence_stops_with_actionable_message(digits):
    x, y = digits
    x = x * 1e6  # badly scaled inputs: 'sum' at batch 256 overflows, 'mean' does not
    model, loss, opt = _setup(lr=1.0, reduction="sum")
    with pytest.raises(train.DivergenceError) as info:
        train.fit(model, loss, opt, x, y, epochs=3, batch_size=256, verbose=0)
    err = info.value
    msg = str(err)
    assert "reduction='sum'" in msg and "batch_size=256" in msg and "lr=1" in msg
    assert "use reduction='mean'" in msg and "divide the learning rate" in msg
    h = err.history
    assert h.diverged and h.message == msg and h.to_dict()["diverged"] is True
    assert h.epochs == [] and len(h.step_losses) >= 1 and all(np.isfinite(h.step_losses))
    step = int(msg.split("step ")[1].split()[0])
    assert step == len(h.step_losses) + 1
    for p in model.parameters():  # the diverging step was not applied
        assert np.isfinite(p.data).all()
    model, loss, opt = _setup(lr=1.0, reduction="mean")
    h = train.fit(model, loss, opt, x, y, epochs=3, batch_size=256, verbose=0)
    assert not h.diverged and len(h.step_losses) == 3 * 8


def test_fit_validates_arguments(digits):
    x, y = digits
    model, loss, opt = _setup()
    with pytest.raises(ValueError, match="batch_size"):
        train.fit(model, loss, opt, x, y, epochs=1, batch_size=0)
    with pytest.raises(ValueError, match="y_train"):
        train.fit(model, loss, opt, x, y[:-1], epochs=1, batch_size=8)
    with pytest.raises(TypeError, match="y_train"):
        train.fit(model, loss, opt, x, y.astype(float), epochs=1, batch_size=8)
    with pytest.raises(ValueError, match="reduction"):
        train.fit(model, nn.CrossEntropyLoss(reduction="none"), opt, x, y, epochs=1,
                  batch_size=8)


def test_train_accuracy_counts_every_row_once_without_ignored_labels():
    # lr=0 keeps the weights, so the epoch's accuracy must equal predict()'s;
    # 103 rows in batches of 10 leave a partial last batch
    rng = np.random.default_rng(8)
    x = rng.standard_normal((103, 6))
    y = rng.integers(0, 3, 103)
    y[[0, 17, 55]] = -100
    model = nn.mlp([6, 8, 3], rng=0)
    h = train.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.0), x, y,
                  epochs=2, batch_size=10, verbose=0)
    keep = y != -100
    want = np.mean(model.predict(x)[keep] == y[keep])
    assert h.epochs[0]["train_accuracy"] == pytest.approx(want, abs=1e-12)
    assert h.epochs[1]["train_accuracy"] == pytest.approx(want, abs=1e-12)


def _tiny_problem():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((40, 5))
    return x, rng.integers(0, 3, 40)


def test_blas_threads_limits_blas_during_fit_and_restores_it():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    def numpys_blas():
        # fit limits NumPy's bundled OpenBLAS (numpy.libs); SciPy's own copy, loaded
        # by other tests (scikit-learn), is a separate pool that fit leaves alone
        return [i["num_threads"] for i in threadpoolctl.threadpool_info()
                if i["user_api"] == "blas" and "numpy" in os.path.basename(
                    os.path.dirname(i["filepath"]))]

    blas = numpys_blas()
    if not blas:
        pytest.skip("NumPy's BLAS is not visible to threadpoolctl")
    before = blas
    seen = []

    def on_epoch(history):
        seen.append(numpys_blas())

    x, y = _tiny_problem()
    model = nn.mlp([5, 6, 3], rng=0)
    train.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), x, y,
              epochs=2, batch_size=8, verbose=0, blas_threads=1, on_epoch=on_epoch)
    assert seen == [[1] * len(blas)] * 2
    assert numpys_blas() == before


def test_blas_threads_without_numpys_openblas_warns_and_trains(monkeypatch):
    import pyce._blas as blas
    monkeypatch.setattr(blas, "get_num_threads", lambda: None)  # as with another BLAS
    x, y = _tiny_problem()
    model = nn.mlp([5, 6, 3], rng=0)
    with pytest.warns(RuntimeWarning, match="blas_threads"):
        h = train.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1),
                      x, y, epochs=1, batch_size=8, verbose=0, blas_threads=1)
    assert len(h.epochs) == 1


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError), ("2", ValueError),
                                        (1.5, TypeError), (True, TypeError)])
def test_blas_threads_must_be_auto_none_or_a_positive_int(bad, error):
    x, y = _tiny_problem()
    model = nn.mlp([5, 6, 3], rng=0)
    with pytest.raises(error, match="blas_threads"):
        train.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), x, y,
                  epochs=1, batch_size=8, verbose=0, blas_threads=bad)


def test_divergence_message_is_public_and_is_what_fit_raises():
    x = np.full((8, 3), np.nan)
    y = np.zeros(8, np.int64)
    model = nn.mlp([3, 2], rng=0)
    with pytest.raises(train.DivergenceError) as info:
        train.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), x, y,
                  epochs=1, batch_size=4, verbose=0)
    want = train.divergence_message(step=1, epoch=1, batch=1, n_batches=2, loss=float("nan"),
                                    reduction="mean", batch_size=4, lr=0.1, bad_input=True)
    assert str(info.value) == want and "NaN or inf" in want
