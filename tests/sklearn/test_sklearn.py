"""pyce.sklearn.MLPClassifier: scikit-learn integration, semantics, and parity with
scikit-learn's own MLPClassifier."""
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import load_digits, make_classification  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLP  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import pyce.reference as ref  # noqa: E402
import pyce.train  # noqa: E402
from pyce.sklearn import MLPClassifier  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x = (x - x.mean(0)) / (x.std(0) + 1e-9)
    return x[:600], y[:600]


@pytest.fixture(scope="module")
def blobs():
    x, y = make_classification(n_samples=240, n_features=8, n_informative=5, n_classes=3,
                               random_state=0)
    return x, y


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


# ---- scikit-learn integration ---------------------------------------------------------

def test_pipeline_grid_search_pickle(digits):
    x, y = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(max_iter=30, learning_rate_init=0.01,
                                                       random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__hidden_layer_sizes": [(16,), (32,)],
                               "mlpclassifier__alpha": [1e-4, 1e-2]}, cv=2, n_jobs=2)
    quiet(grid.fit, x, y)
    assert set(grid.best_params_) == {"mlpclassifier__hidden_layer_sizes",
                                      "mlpclassifier__alpha"}
    assert grid.best_score_ > 0.75  # chance: 0.1
    best = grid.best_estimator_
    again = pickle.loads(pickle.dumps(best))
    np.testing.assert_array_equal(again.predict(x), best.predict(x))
    np.testing.assert_array_equal(again.predict_proba(x), best.predict_proba(x))


def test_cross_val_score(digits):
    x, y = digits
    scores = quiet(cross_val_score, MLPClassifier(max_iter=30, learning_rate_init=0.01,
                                                 random_state=0), x, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.75  # chance: 0.1


@pytest.mark.parametrize("kind", ["strings", "sparse_ints", "integral_floats"])
def test_label_types(blobs, kind):
    x, y = blobs
    names = {"strings": np.array(["dog", "emu", "cat"]),
             "sparse_ints": np.array([1000, -7, 3]),
             "integral_floats": np.array([2.0, -1.0, 5.0])}[kind]
    labels = names[y]
    clf = quiet(MLPClassifier(max_iter=60, random_state=0).fit, x, labels)
    np.testing.assert_array_equal(clf.classes_, np.sort(names))
    pred = clf.predict(x)
    assert pred.dtype == labels.dtype and set(pred) <= set(names)
    assert np.mean(pred == labels) > 0.8
    # the same network as with labels 0..2 (classes_ sorted: index = rank of the label)
    plain = quiet(MLPClassifier(max_iter=60, random_state=0).fit, x, np.argsort(
        np.argsort(names))[y])
    np.testing.assert_array_equal(clf.coefs_[-1], plain.coefs_[-1])


def test_coefs_are_c_ordered_copies_of_their_own(blobs):
    # pyce.nn.Linear keeps weights Fortran-ordered, so weight.T is already (in, out)
    # C-ordered: coefs_ must still be copies, untouched by further training
    x, y = blobs
    clf = quiet(MLPClassifier(hidden_layer_sizes=(12,), max_iter=5, random_state=0).fit, x, y)
    before = clf.coefs_
    saved = [c.copy() for c in before]
    assert all(c.flags.c_contiguous and c.flags.owndata for c in before)
    quiet(clf.partial_fit, x, y)
    for c, s in zip(before, saved):
        np.testing.assert_array_equal(c, s)
    assert any(not np.array_equal(c, s) for c, s in zip(clf.coefs_, saved))


def test_binary_is_one_logistic_unit(blobs):
    x, y = blobs
    yb = np.where(y == 0, "no", "yes")
    clf = quiet(MLPClassifier(hidden_layer_sizes=(12, 6), max_iter=50, learning_rate_init=0.01,
                              random_state=0).fit, x, yb)
    assert clf.n_outputs_ == 1 and clf.out_activation_ == "logistic" and clf.n_layers_ == 4
    assert [c.shape for c in clf.coefs_] == [(8, 12), (12, 6), (6, 1)]
    # p(yes) = 1 / (1 + exp(-z)) of the output unit, z from coefs_ in float64
    h = x
    for w, b in zip(clf.coefs_[:-1], clf.intercepts_[:-1]):
        h = np.maximum(h @ w.astype(np.float64) + b, 0)
    z = (h @ clf.coefs_[-1].astype(np.float64) + clf.intercepts_[-1])[:, 0]
    proba = clf.predict_proba(x)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-z)), rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(proba.sum(1), 1, rtol=1e-6)
    np.testing.assert_array_equal(clf.predict(x), np.where(z > 0, "yes", "no"))
    assert np.mean(clf.predict(x) == yb) > 0.8


def test_predict_log_proba_is_stable(blobs):
    x, y = blobs
    clf = quiet(MLPClassifier(max_iter=5, random_state=0, dtype=np.float64).fit, x, y)
    clf.coefs_[-1] *= 1e4  # logits far apart: probabilities underflow to 0
    proba, log_proba = clf.predict_proba(x), clf.predict_log_proba(x)
    assert (proba == 0).any() and np.isfinite(log_proba).all()
    fine = proba > 1e-300
    np.testing.assert_allclose(log_proba[fine], np.log(proba[fine]), rtol=1e-12, atol=1e-12)


def test_not_fitted_and_bad_parameters(blobs):
    x, y = blobs
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(x)
    bad = [({"hidden_layer_sizes": (8, 0)}, ValueError, "hidden_layer_sizes"),
           ({"solver": "lbfgs"}, ValueError, "solver"),
           ({"activation": "gelu"}, ValueError, "activation"),
           ({"dtype": np.int32}, TypeError, "dtype"),
           ({"batch_size": 0}, ValueError, "batch_size"),
           ({"learning_rate_init": 0.0}, ValueError, "learning_rate_init"),
           ({"validation_fraction": 1.0}, ValueError, "validation_fraction"),
           ({"alpha": -1.0}, ValueError, "alpha"),
           ({"label_smoothing": 2.0}, ValueError, "label_smoothing"),
           ({"class_weight": "auto"}, ValueError, "class_weight"),
           ({"shuffle": "yes"}, TypeError, "shuffle")]
    for params, exc, name in bad:
        with pytest.raises(exc, match=name):
            MLPClassifier(max_iter=1, **params).fit(x, y)
    with pytest.raises(ValueError, match="2 classes"):
        MLPClassifier(max_iter=1).fit(x, np.zeros(len(x)))
    with pytest.raises(ValueError, match="classes must be passed"):
        MLPClassifier().partial_fit(x, y)


def test_import_error_names_the_extra():
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "try:\n    import pyce.sklearn\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.abspath(__file__)), check=True).stdout
    assert 'pip install ".[sklearn]"' in out and "scikit-learn >= 1.6" in out
    assert "pip install pyce[" not in out and "pip install \"pyce[" not in out
    # and `import pyce` alone does not need scikit-learn
    code = "import sys; sys.modules['sklearn'] = None; import pyce; print(pyce.__version__)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                   cwd=os.path.dirname(os.path.abspath(__file__)))


# ---- training semantics ---------------------------------------------------------------

def _coefs_close(a, b, rtol=1e-12, atol=1e-13):
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_allclose(u, v, rtol=rtol, atol=atol)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_partial_fit_in_chunks_equals_one_epoch(blobs, solver):
    """partial_fit on consecutive chunks of one batch each (no shuffle) takes the same
    optimizer steps, with the same momentum / Adam state, as one fit epoch."""
    x, y = blobs
    kw = dict(hidden_layer_sizes=(10,), solver=solver, batch_size=40, shuffle=False,
              learning_rate_init=0.05, dtype=np.float64, random_state=3, alpha=1e-3)
    whole = quiet(MLPClassifier(max_iter=1, **kw).fit, x, y)
    part = MLPClassifier(**kw)
    for s in range(0, len(x), 40):
        part.partial_fit(x[s:s + 40], y[s:s + 40], classes=np.unique(y))
        assert part.n_iter_ == 1
    assert part.t_ == whole.t_ == len(x) and len(part.loss_curve_) == len(x) // 40
    _coefs_close(part, whole)
    np.testing.assert_allclose(np.mean(part.loss_curve_), whole.loss_curve_[0], rtol=1e-12)
    with pytest.raises(ValueError, match="not in classes"):
        part.partial_fit(x[:5], np.full(5, 7))


def test_sample_weight_equals_repeated_rows(blobs):
    x, y = blobs[0][:60], blobs[1][:60]
    counts = np.random.default_rng(0).integers(0, 4, len(x))
    kw = dict(hidden_layer_sizes=(10,), solver="sgd", batch_size=1000, max_iter=25,
              learning_rate_init=0.1, dtype=np.float64, random_state=0, alpha=1e-2)
    with pytest.warns(UserWarning, match="batch_size"):
        weighted = quiet(MLPClassifier(**kw).fit, x, y, sample_weight=counts)
    with pytest.warns(UserWarning, match="batch_size"):
        repeated = quiet(MLPClassifier(**kw).fit, np.repeat(x, counts, 0), np.repeat(y, counts))
    _coefs_close(weighted, repeated, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-12)


def test_class_weight_dict_and_balanced(blobs):
    x, y = blobs
    x, y = x[y != 2][:150], y[y != 2][:150]
    y = y.copy()
    y[:100][y[:100] == 1] = 0  # imbalanced
    kw = dict(hidden_layer_sizes=(10,), solver="sgd", batch_size=32, max_iter=10,
              learning_rate_init=0.1, dtype=np.float64, random_state=0, alpha=0.0)
    cw = {0: 0.7, 1: 3.0}
    by_class = quiet(MLPClassifier(class_weight=cw, **kw).fit, x, y)
    by_row = quiet(MLPClassifier(**kw).fit, x, y, sample_weight=np.where(y == 1, 3.0, 0.7))
    _coefs_close(by_class, by_row, rtol=1e-10, atol=1e-12)
    counts = np.bincount(y)
    balanced = {c: len(y) / (2 * counts[c]) for c in (0, 1)}
    a = quiet(MLPClassifier(class_weight="balanced", **kw).fit, x, y)
    b = quiet(MLPClassifier(class_weight=balanced, **kw).fit, x, y)
    _coefs_close(a, b, rtol=1e-12, atol=1e-14)
    plain = quiet(MLPClassifier(**kw).fit, x, y)
    assert not np.allclose(plain.coefs_[0], a.coefs_[0])
    with pytest.raises(ValueError, match="partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(x, y, classes=[0, 1])


def test_warm_start_continues(blobs):
    x, y = blobs
    kw = dict(hidden_layer_sizes=(10,), solver="sgd", momentum=0.0, shuffle=False,
              learning_rate_init=0.05, dtype=np.float64, random_state=0, tol=0.0)
    six = quiet(MLPClassifier(max_iter=6, **kw).fit, x, y)
    warm = quiet(MLPClassifier(max_iter=3, warm_start=True, **kw).fit, x, y)
    quiet(warm.fit, x, y)
    assert warm.n_iter_ == 3 and warm.t_ == 6 * len(x) and len(warm.loss_curve_) == 6
    _coefs_close(warm, six)
    np.testing.assert_allclose(warm.loss_curve_, six.loss_curve_, rtol=1e-12)
    cold = quiet(MLPClassifier(max_iter=3, **kw).fit, x, y)
    first = [c.copy() for c in cold.coefs_]
    quiet(cold.fit, x, y)  # without warm_start: starts again from the same initial weights
    np.testing.assert_array_equal(cold.coefs_[0], first[0])
    assert len(cold.loss_curve_) == 3


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                            "ignore:invalid value encountered:RuntimeWarning")
def test_divergence_raises_pyce_message(blobs):
    x, y = blobs
    clf = MLPClassifier(solver="sgd", learning_rate_init=1e4, momentum=0.9, max_iter=20,
                        random_state=0)
    with pytest.raises(pyce.train.DivergenceError) as info:
        clf.fit(x * 100, y)
    msg = str(info.value)
    assert msg.startswith("training diverged at step ")
    assert "reduction='mean'" in msg and "lr=10000" in msg and "lower the learning rate" in msg
    assert info.value.history.diverged


def test_max_iter_warns_convergence_and_tol_stops(blobs):
    x, y = blobs
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        clf = MLPClassifier(max_iter=3, random_state=0).fit(x, y)
    assert clf.n_iter_ == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf = MLPClassifier(max_iter=500, tol=0.1, n_iter_no_change=2, random_state=0).fit(x, y)
    assert clf.n_iter_ < 500
    # scikit-learn's rule: stop after more than n_iter_no_change epochs without a
    # training-loss improvement of more than tol over the best so far
    curve = np.array(clf.loss_curve_)
    best = np.minimum.accumulate(np.r_[np.inf, curve[:-1]])
    worse = curve > best - 0.1
    assert worse[-3:].all() and clf.best_loss_ == curve.min()


def test_early_stopping(digits):
    x, y = digits
    clf = MLPClassifier(hidden_layer_sizes=(32,), early_stopping=True, max_iter=200,
                        n_iter_no_change=3, random_state=0, learning_rate_init=0.01)
    clf.fit(x, y)
    scores = clf.validation_scores_
    assert clf.n_iter_ < 200 and len(scores) == clf.n_iter_ and clf.best_loss_ is None
    assert clf.best_validation_score_ == max(scores) > 0.85
    # the kept weights are the best epoch's: refit for exactly that many epochs
    best_epoch = int(np.argmax(scores)) + 1
    again = quiet(MLPClassifier(hidden_layer_sizes=(32,), early_stopping=True,
                                max_iter=best_epoch, n_iter_no_change=1000, random_state=0,
                                learning_rate_init=0.01).fit, x, y)
    np.testing.assert_array_equal(again.coefs_[0], clf.coefs_[0])


def test_loss_includes_l2_label_smoothing_and_class_weight(blobs):
    """loss_ of a full-batch epoch is the loss at the weights it starts from: the
    kernel's weighted, smoothed mean plus 0.5 * alpha * sum ||W||^2 / n (reference in
    float64 from pyce.reference)."""
    x, y = blobs
    kw = dict(hidden_layer_sizes=(7,), activation="tanh", solver="sgd", batch_size=len(x),
              dtype=np.float64, random_state=0, alpha=0.3, label_smoothing=0.1,
              class_weight={0: 1.0, 1: 2.0, 2: 0.5}, warm_start=True)
    clf = quiet(MLPClassifier(max_iter=2, **kw).fit, x, y)
    w0, b0, w1, b1 = clf.coefs_[0], clf.intercepts_[0], clf.coefs_[1], clf.intercepts_[1]
    logits = np.tanh(x @ w0 + b0) @ w1 + b1
    expected = float(ref.cross_entropy(logits, y, weight=np.array([1.0, 2.0, 0.5]),
                                       label_smoothing=0.1))
    expected += 0.5 * 0.3 * (np.sum(w0 ** 2) + np.sum(w1 ** 2)) / len(x)
    quiet(clf.fit, x, y)
    np.testing.assert_allclose(clf.loss_curve_[2], expected, rtol=1e-12)


# ---- parity with scikit-learn's MLPClassifier -----------------------------------------

def _sk_then_pyce(x, y, epochs, **kw):
    """scikit-learn's MLPClassifier trains 1 epoch; its coefs_ are loaded into pyce's
    estimator; both go on for `epochs` more epochs from those weights (warm_start).
    Returns (scikit-learn's, pyce's) estimators."""
    sk = quiet(SkMLP(max_iter=1, warm_start=True, **kw).fit, x, y)
    ours = quiet(MLPClassifier(max_iter=1, warm_start=True, dtype=np.float64, **kw).fit, x, y)
    ours.coefs_ = [c.copy() for c in sk.coefs_]
    ours.intercepts_ = [b.copy() for b in sk.intercepts_]
    for est in (sk, ours):
        est.set_params(max_iter=epochs)
        quiet(est.fit, x, y)
    return sk, ours


SGD_PLAIN = dict(hidden_layer_sizes=(32, 16), solver="sgd", momentum=0.0,
                 learning_rate_init=0.05, batch_size=64, alpha=1e-3, random_state=0, tol=0.0)


@pytest.mark.parametrize("binary", [False, True], ids=["10 classes", "binary"])
@pytest.mark.parametrize("shuffle", [False, True], ids=["in order", "shuffled"])
def test_loss_curve_matches_sklearn_sgd_float64(digits, binary, shuffle):
    """SGD without momentum in float64, same architecture, batches and initial weights
    (scikit-learn's): the loss curves agree to float rounding. Each step is the same
    arithmetic; only the order of a few operations differs (scikit-learn scales the
    summed gradient by 1/n and adds alpha * W / n, the kernel returns the mean
    gradient; W - lr * g may be fused into one rounding)."""
    x, y = digits
    y = y >= 5 if binary else y
    sk, ours = _sk_then_pyce(x, y, 12, shuffle=shuffle, **SGD_PLAIN)
    assert len(ours.loss_curve_) == len(sk.loss_curve_) == 13
    np.testing.assert_allclose(ours.loss_curve_[1:], sk.loss_curve_[1:], rtol=1e-12)
    for a, b in zip(ours.coefs_ + ours.intercepts_, sk.coefs_ + sk.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
    assert ours.n_outputs_ == sk.n_outputs_ and ours.out_activation_ == sk.out_activation_
    np.testing.assert_allclose(ours.predict_proba(x), sk.predict_proba(x), rtol=1e-9,
                               atol=1e-12)


@pytest.mark.parametrize("variant", [
    dict(momentum=0.9, nesterovs_momentum=True),
    dict(momentum=0.9, nesterovs_momentum=False),
    dict(momentum=0.0, learning_rate="invscaling", power_t=0.25),
    dict(momentum=0.0, activation="tanh"),
    dict(momentum=0.0, activation="logistic"),
    dict(momentum=0.0, activation="identity"),
], ids=["nesterov", "momentum", "invscaling", "tanh", "logistic", "identity"])
def test_loss_curve_matches_sklearn_sgd_variants(digits, variant):
    """With momentum, scikit-learn's velocity v = momentum * v - lr * g equals -lr times
    PyTorch's buffer b = momentum * b + g at a constant rate: same curve, rounded
    differently. scikit-learn's other hidden activations (pyce.sklearn's own small
    layers) follow the same curve too."""
    x, y = digits
    sk, ours = _sk_then_pyce(x, y, 8, **{**SGD_PLAIN, **variant})
    np.testing.assert_allclose(ours.loss_curve_[1:], sk.loss_curve_[1:], rtol=1e-10)


@pytest.mark.parametrize("activation", ["relu", "logistic"])
def test_same_random_state_same_start_as_sklearn(digits, activation):
    """Without loading anything: the same random_state draws the same initial weights
    (Glorot bound sqrt(6 / (in + out)), sqrt(2 / ...) for 'logistic') and the same
    shuffles as scikit-learn."""
    x, y = digits
    sk = quiet(SkMLP(max_iter=4, activation=activation, **SGD_PLAIN).fit, x, y)
    ours = quiet(MLPClassifier(max_iter=4, dtype=np.float64, activation=activation,
                               **SGD_PLAIN).fit, x, y)
    np.testing.assert_allclose(ours.loss_curve_, sk.loss_curve_, rtol=1e-12)


@pytest.mark.parametrize("n", [0, 1, 2, 64, 1437])
def test_epoch_shuffle_takes_sklearn_draws(n):
    """The epoch permutation (pyce.sklearn._shuffled, which skips scikit-learn's
    per-call validation) equals the installed scikit-learn's
    shuffle(order, random_state=rs), over several epochs of one RandomState and
    on an order that is not arange."""
    from sklearn.utils import check_random_state, shuffle
    from pyce.sklearn import _shuffled
    base = np.arange(n)[::-1] * 3
    ours, theirs = base.copy(), base.copy()
    rs_ours, rs_theirs = check_random_state(7), check_random_state(7)
    for _ in range(4):
        ours = _shuffled(ours, rs_ours)
        theirs = shuffle(theirs, random_state=rs_theirs)
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_array_equal(np.sort(ours), np.sort(base))
    assert rs_ours.randint(1 << 30) == rs_theirs.randint(1 << 30)


def test_adam_differs_from_sklearn_only_by_epsilon_placement(digits):
    """Adam: PyTorch's rule (pyce.optim.Adam) adds epsilon to sqrt(v_hat), scikit-learn
    to sqrt(v) (v not bias-corrected): the same steps up to epsilon's size, so the
    curves agree closely but not to rounding; with epsilon -> 0 they agree to rounding."""
    x, y = digits
    kw = {**SGD_PLAIN, "solver": "adam", "learning_rate_init": 1e-3}
    sk, ours = _sk_then_pyce(x, y, 5, **kw)
    np.testing.assert_allclose(ours.loss_curve_[1:], sk.loss_curve_[1:], rtol=1e-4)
    sk, ours = _sk_then_pyce(x, y, 5, epsilon=1e-300, **kw)
    np.testing.assert_allclose(ours.loss_curve_[1:], sk.loss_curve_[1:], rtol=1e-11)


@pytest.mark.parametrize("schedule", ["constant", "adaptive"])
def test_stopping_epoch_matches_sklearn(blobs, schedule):
    """tol larger than any improvement: epoch 1 improves on best_loss_ = inf, then every
    epoch counts as no improvement, so 'constant' stops at epoch 3 (count 2 > 1);
    'adaptive' divides the rate by 5 at epochs 3, 5, ..., 15 (0.05 / 5^7 <= 1e-6) and stops
    at 17. scikit-learn stops at the same epoch."""
    x, y = blobs
    kw = dict(hidden_layer_sizes=(8,), solver="sgd", learning_rate=schedule, tol=10.0,
              n_iter_no_change=1, learning_rate_init=0.05, max_iter=100, random_state=0)
    ours = MLPClassifier(dtype=np.float64, **kw).fit(x, y)
    sk = SkMLP(**kw).fit(x, y)
    assert ours.n_iter_ == sk.n_iter_ == (3 if schedule == "constant" else 17)
    # after a rate change the curves part (momentum 0.9): scikit-learn's velocity carries
    # steps taken at the old rate, PyTorch's buffer does not (documented difference)
    # (the first change is after epoch 3; with 'constant' that is the whole curve)
    np.testing.assert_allclose(ours.loss_curve_[:3], sk.loss_curve_[:3], rtol=1e-10)
    if schedule == "adaptive":
        assert abs(ours.loss_curve_[4] - sk.loss_curve_[4]) > 1e-6


def test_verbose_prints_pyce_epoch_lines(blobs, capsys):
    x, y = blobs
    quiet(MLPClassifier(max_iter=3, verbose=True, random_state=0).fit, x, y)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3  loss ")
    assert "acc" in lines[0] and lines[0].endswith(" s")


def test_inputs_not_modified(blobs):
    x, y = blobs
    sw = np.linspace(0.5, 2.0, len(x))
    copies = x.copy(), y.copy(), sw.copy()
    clf = quiet(MLPClassifier(max_iter=3, random_state=0, dtype=np.float64).fit, x, y,
                sample_weight=sw)
    clf.predict_proba(x)
    clf.partial_fit(x, y, sample_weight=sw)
    for before, after in zip(copies, (x, y, sw)):
        np.testing.assert_array_equal(before, after)


def test_fit_trains_under_the_trainers_blas_thread_policy(monkeypatch):
    """The estimator uses fit's BLAS policy (issue 12.3: no OpenBLAS-threads cliff on a
    busy machine): the policy is entered with 'auto' and ticked once per step."""
    import pyce.sklearn as psk
    from pyce.trainer.fit import blas_policy
    calls = []

    def recording_policy(setting, model, rows):
        policy = blas_policy(setting, model, rows)
        calls.append({"setting": setting, "rows": rows, "ticks": 0})
        tick = policy.tick

        def counted_tick():
            calls[-1]["ticks"] += 1
            tick()
        policy.tick = counted_tick
        return policy

    monkeypatch.setattr(psk, "blas_policy", recording_policy)
    x, y = make_classification(n_samples=100, n_features=5, n_informative=3, n_classes=3,
                               random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(hidden_layer_sizes=(8,), batch_size=32, max_iter=3,
                      random_state=0).fit(x, y)
    assert calls == [{"setting": "auto", "rows": 32, "ticks": 3 * 4}]  # 3 epochs x 4 batches
