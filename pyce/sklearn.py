"""A scikit-learn estimator on pyce's trainer: ``from pyce.sklearn import MLPClassifier``.

scikit-learn is an optional extra (``pip install ".[sklearn]"`` from the pyce
checkout); this module is not imported by ``import pyce``.

The estimator takes scikit-learn's ``MLPClassifier`` parameters with their
meanings and runs scikit-learn's epoch semantics (shuffle, mini-batches,
``loss_curve_`` with the L2 term, ``tol`` / ``n_iter_no_change``,
``early_stopping``, ``partial_fit``, ``warm_start``) on pyce's layers
(``pyce.nn``), optimizers (``pyce.optim``, PyTorch's update rules) and fused
softmax cross-entropy kernel (``pyce.cross_entropy_and_grad``), which owns
the loss and its gradient with respect to the logits, class weights, sample
weights and label smoothing included.
"""
import math
import numbers
import time
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.class_weight import compute_class_weight
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as _exc:  # scikit-learn missing, or older than 1.6 (no validate_data)
    raise ImportError(
        "pyce.sklearn needs scikit-learn >= 1.6, an optional dependency of pyce: install it "
        "with `pip install \".[sklearn]\"` from the pyce source checkout (or `pip install "
        f"\"scikit-learn>=1.6\"`). The import failed with: {_exc}") from _exc

import pyce.nn as _nn
import pyce.optim as _optim
import pyce.train as _train
from pyce._core import cross_entropy_and_grad, log_softmax, softmax
from pyce._progress import format_epoch
from pyce.trainer.fit import blas_policy, divergence_message
from pyce._validate import (check_float_dtype, check_nonneg_scalar, check_positive_int,
                            check_probability, check_row_array)

__all__ = ["MLPClassifier"]


class _Identity(_nn.Module):
    """f(x) = x (scikit-learn's 'identity' hidden activation)."""

    def forward(self, x):
        return x

    def backward(self, grad, *, input_grad=True):
        return grad if input_grad else None


class _Tanh(_nn.Module):
    """f(x) = tanh(x); backward grad * (1 - f(x)^2), from the output."""

    def __init__(self):
        self._y = None

    def forward(self, x):
        self._y = np.tanh(x)
        return self._y

    def backward(self, grad, *, input_grad=True):
        return grad * (1 - self._y * self._y) if input_grad else None


class _Logistic(_nn.Module):
    """f(x) = 1 / (1 + exp(-x)), as tanh(x/2)/2 + 1/2 (no overflow); backward
    grad * f(x) * (1 - f(x))."""

    def __init__(self):
        self._y = None

    def forward(self, x):
        y = np.tanh(x * x.dtype.type(0.5))
        y *= 0.5
        y += 0.5
        self._y = y
        return y

    def backward(self, grad, *, input_grad=True):
        return grad * self._y * (1 - self._y) if input_grad else None


_ACTIVATIONS = {"relu": _nn.ReLU, "elu": _nn.ELU, "tanh": _Tanh, "logistic": _Logistic,
                "identity": _Identity}
_SOLVERS = ("sgd", "adam")
_SCHEDULES = ("constant", "invscaling", "adaptive")


def _check_choice(value, name, choices):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, "
                         f"got {value!r}")
    return value


def _check_float(value, name, low, high, low_open=False, high_open=False):
    """A finite float in the interval; TypeError for a non-number, ValueError outside."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    v = float(value)
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    ok = math.isfinite(v) and (v > low if low_open else v >= low) \
        and (v < high if high_open else v <= high)
    if not ok:
        raise ValueError(f"{name} must be in {lo}{low}, {high}{hi}, got {value!r}")
    return v


def _hidden_sizes(value):
    sizes = [value] if isinstance(value, numbers.Integral) else value
    try:
        sizes = list(sizes)
    except TypeError:
        raise TypeError(f"hidden_layer_sizes must be an int or a sequence of ints, "
                        f"got {value!r}") from None
    return [check_positive_int(s, "hidden_layer_sizes entries") for s in sizes]


class _Settings:
    """The checked hyper-parameters of one fit call (nothing in __init__, as
    scikit-learn asks; everything here, before any work)."""

    def __init__(self, est):
        self.hidden = _hidden_sizes(est.hidden_layer_sizes)
        self.activation = _check_choice(est.activation, "activation", tuple(_ACTIVATIONS))
        self.solver = _check_choice(est.solver, "solver", _SOLVERS)
        self.schedule = _check_choice(est.learning_rate, "learning_rate", _SCHEDULES)
        self.alpha = check_nonneg_scalar(est.alpha, "alpha")
        self.batch_size = est.batch_size if isinstance(est.batch_size, str) \
            and est.batch_size == "auto" else check_positive_int(est.batch_size, "batch_size")
        self.lr = _check_float(est.learning_rate_init, "learning_rate_init", 0, math.inf,
                               low_open=True, high_open=True)
        self.power_t = check_nonneg_scalar(est.power_t, "power_t")
        self.max_iter = check_positive_int(est.max_iter, "max_iter")
        self.tol = check_nonneg_scalar(est.tol, "tol")
        self.momentum = _check_float(est.momentum, "momentum", 0, 1)
        self.validation_fraction = _check_float(est.validation_fraction,
                                                "validation_fraction", 0, 1, True, True)
        self.beta_1 = _check_float(est.beta_1, "beta_1", 0, 1, high_open=True)
        self.beta_2 = _check_float(est.beta_2, "beta_2", 0, 1, high_open=True)
        self.epsilon = _check_float(est.epsilon, "epsilon", 0, math.inf, True, True)
        self.n_iter_no_change = check_positive_int(est.n_iter_no_change, "n_iter_no_change")
        self.dtype = check_float_dtype(est.dtype, "dtype")
        self.label_smoothing = check_probability(est.label_smoothing, "label_smoothing")
        for name in ("shuffle", "nesterovs_momentum", "early_stopping", "warm_start"):
            if not isinstance(getattr(est, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {getattr(est, name)!r}")
        self.nesterov = bool(est.nesterovs_momentum) and self.momentum > 0


def _make_net(coefs, intercepts, activation):
    """A pyce.nn.Sequential holding copies of coefs (in, out) as Linear weights (out, in)."""
    dtype = coefs[0].dtype
    layers = []
    for i, (w, b) in enumerate(zip(coefs, intercepts)):
        lin = _nn.Linear(w.shape[0], w.shape[1], dtype=dtype, rng=0)
        np.copyto(lin.weight.data, w.T)
        np.copyto(lin.bias.data, b)
        layers.append(lin)
        if i < len(coefs) - 1:
            layers.append(_ACTIVATIONS[activation]())
    return _nn.Sequential(*layers)


def _linears(net):
    return [layer for layer in net.layers if isinstance(layer, _nn.Linear)]


def _two_column_logits(z):
    """Logits (N, 1) of a logistic output as softmax logits [0, z] (N, 2):
    softmax([0, z])[1] = 1 / (1 + exp(-z)), so the fused softmax kernel gives
    the binary log-loss and its gradient exactly (d loss / dz = column 1)."""
    z2 = np.zeros((z.shape[0], 2), z.dtype)
    z2[:, 1] = z[:, 0]
    return z2


def _loss_and_grad(z, target, class_weight, sample_weight, label_smoothing, out):
    """('mean' loss as a float, d loss / d z) from pyce's fused kernel, the gradient
    written into `out` (rows, max(2, z's columns)); a one-column z is a logistic
    output (see _two_column_logits)."""
    binary = z.shape[1] == 1
    logits = _two_column_logits(z) if binary else z
    # out= rather than overwrite_input=True: the kernel's Cython fast path takes it
    loss, grad = cross_entropy_and_grad(logits, target, weight=class_weight,
                                        sample_weight=sample_weight,
                                        label_smoothing=label_smoothing, out=out)
    if binary:
        grad = np.ascontiguousarray(grad[:, 1:])
    return float(loss), grad


class MLPClassifier(ClassifierMixin, BaseEstimator):
    """Multi-layer perceptron classifier: scikit-learn's interface, pyce's trainer.

    A drop-in for ``sklearn.neural_network.MLPClassifier`` with the solvers
    'sgd' and 'adam' (no 'lbfgs'). The parameters below with scikit-learn's
    names have its meanings; ``dtype``, ``label_smoothing`` and
    ``class_weight`` are pyce's own.

    Training runs scikit-learn's epochs: with ``shuffle`` a permutation per
    epoch drawn from ``check_random_state(random_state)`` (the same draws as
    scikit-learn, so the same ``random_state`` gives the same initial weights
    -- Glorot uniform, as scikit-learn -- and the same batches); batches of
    ``batch_size`` rows; per batch the mean loss plus the L2 term
    ``0.5 * alpha * sum ||W||^2 / S`` (S = the batch's rows, or the sum of its
    sample weights) and its gradient ``alpha * W / S`` on the weights (not the
    intercepts); ``loss_`` is the row-weighted mean of the batch losses. The
    loss and its gradient with respect to the logits come from
    ``pyce.cross_entropy_and_grad`` ('mean' reduction); the update from
    ``pyce.optim.SGD`` / ``pyce.optim.Adam`` (PyTorch's rules, see Notes).

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default=(100,)
        Units of each hidden layer.
    activation : {'relu', 'elu', 'tanh', 'logistic', 'identity'}, default='relu'
        Hidden-layer activation ('relu' and 'elu' run pyce's one-pass kernels).
    solver : {'adam', 'sgd'}, default='adam'
    alpha : float >= 0, default=1e-4
        L2 strength, scaled as scikit-learn scales it (see above).
    batch_size : int or 'auto', default='auto'
        'auto' is min(200, n_samples); a larger int is clipped to n_samples
        with a warning.
    learning_rate : {'constant', 'invscaling', 'adaptive'}, default='constant'
        Schedule for 'sgd' (ignored by 'adam'): 'invscaling' sets
        ``learning_rate_init / (t_ + 1) ** power_t`` after each epoch;
        'adaptive' divides the rate by 5 whenever ``n_iter_no_change`` epochs
        did not improve, and stops once it is <= 1e-6.
    learning_rate_init : float > 0, default=1e-3
    power_t : float >= 0, default=0.5
    max_iter : int >= 1, default=200
        Epochs per ``fit`` (``partial_fit`` runs one).
    shuffle : bool, default=True
    random_state : None, int or numpy RandomState, default=None
        Initial weights, the shuffles and the early-stopping split.
    tol : float >= 0, default=1e-4
        An epoch improves if the training loss fell by more than tol (or, with
        early_stopping, the validation accuracy rose by at least tol);
        training stops after more than ``n_iter_no_change`` epochs without.
    verbose : bool, default=False
        Print one line per epoch (pyce's epoch-line format; the accuracy is
        the running accuracy of the batches as they were trained).
    warm_start : bool, default=False
        ``fit`` continues from the current weights (with a fresh optimizer).
    momentum : float in [0, 1], default=0.9
        For 'sgd'.
    nesterovs_momentum : bool, default=True
        For 'sgd' with momentum > 0.
    early_stopping : bool, default=False
        Hold out a stratified ``validation_fraction`` of the training data,
        stop on its accuracy, and keep the best epoch's weights.
    validation_fraction : float in (0, 1), default=0.1
    beta_1, beta_2 : float in [0, 1), default=0.9, 0.999
        Adam's decay rates.
    epsilon : float > 0, default=1e-8
        Adam's epsilon (added as PyTorch adds it, see Notes).
    n_iter_no_change : int >= 1, default=10
    dtype : float32 or float64, default=np.float32
        Precision of the weights and of the whole training computation (the
        kernel accumulates its row sums and the batch loss in float64 in
        either case). X is converted to it.
    label_smoothing : float in [0, 1], default=0.0
        The kernel's label smoothing.
    class_weight : None, 'balanced' or dict {label: weight}, default=None
        Class weights in the kernel: each row's loss is multiplied by its
        class's weight and 'mean' divides by the sum of the weights in the
        batch (PyTorch's rule). 'balanced' is ``n_samples / (n_classes *
        count)`` from the y given to ``fit`` (not allowed in ``partial_fit``).

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    feature_names_in_ : ndarray of str, only when X had string column names
    loss_ : float
        The last epoch's loss (L2 term included).
    loss_curve_ : list of float
        ``loss_`` of every epoch, over all fit / partial_fit calls.
    best_loss_ : float or None
        The smallest ``loss_`` (None with early_stopping).
    validation_scores_ : list of float or None
        Validation accuracy per epoch (early_stopping only).
    best_validation_score_ : float or None
    n_iter_ : int
        Epochs run by the last call.
    t_ : int
        Training samples seen, over all calls.
    coefs_ : list of ndarray
        Weight matrices in scikit-learn's (n_in, n_out) layout.
    intercepts_ : list of ndarray
    n_layers_ : int
        Layers including the input and output layers.
    n_outputs_ : int
        Output units: n_classes, or 1 for two classes (as scikit-learn: one
        logistic unit, trained as the softmax of the logits [0, z]).
    out_activation_ : {'softmax', 'logistic'}

    Notes
    -----
    Differences from scikit-learn's update rules. SGD with momentum keeps
    PyTorch's buffer ``b = momentum * b + g; W -= lr * b`` where scikit-learn
    keeps ``v = momentum * v - lr * g; W += v``: the same iterates for a
    constant learning rate (``v = -lr * b``), rounded differently, but when
    the rate changes ('invscaling', 'adaptive') scikit-learn's velocity keeps
    the old rate and PyTorch's buffer does not. Adam adds epsilon to
    ``sqrt(v) / sqrt(1 - beta_2^t)`` (PyTorch) where scikit-learn adds it to
    ``sqrt(v)``: the same up to epsilon's size. Probabilities are not
    clipped to [eps, 1 - eps] in the loss (scikit-learn clips, which caps a
    row's loss at about 36 in float64). A batch whose sample weights (times
    class weights) are all 0 makes no update and adds 0 to the epoch loss
    (scikit-learn raises ZeroDivisionError). A non-finite loss stops training
    with pyce's ``pyce.train.DivergenceError`` (scikit-learn trains on and
    raises ValueError at the end); ``coefs_`` and ``intercepts_`` then keep
    the values they had when the call started.
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10,
                 dtype=np.float32, label_smoothing=0.0, class_weight=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight

    # ---- public API -----------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Train from scratch (or from the current weights with warm_start=True).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), class labels of any type
        sample_weight : array-like of shape (n_samples,), optional
            Non-negative weights of the rows, in the kernel ('mean' divides by
            their sum in each batch).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False, classes=None)

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), continuing from the current weights and optimizer state.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        sample_weight : array-like of shape (n_samples,), optional
        classes : array-like, required on the first call
            Every label that will ever appear in y.

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    def predict(self, X):
        """The most probable class of each row: array of shape (n_samples,) of classes_."""
        logits = self._logits(X)  # first: it raises NotFittedError before fit
        return self.classes_[np.argmax(logits, axis=1)]

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes), columns in classes_ order,
        computed by pyce.softmax in the model's dtype."""
        return softmax(self._logits(X), axis=1)

    def predict_log_proba(self, X):
        """Log-probabilities from pyce's stable log_softmax (finite where
        log(predict_proba) would underflow to -inf), shape (n_samples, n_classes)."""
        return log_softmax(self._logits(X), axis=1)

    # ---- prediction -----------------------------------------------------------------

    def _logits(self, X, chunk=4096):
        """Softmax logits (n_samples, n_classes) of X (two columns [0, z] for binary)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=self.coefs_[0].dtype)
        return self._forward(_make_net(self.coefs_, self.intercepts_, self.activation), X,
                             chunk)

    def _forward(self, net, X, chunk=4096):
        out = np.empty((X.shape[0], self.n_outputs_), self.coefs_[0].dtype)
        for s in range(0, X.shape[0], chunk):
            out[s:s + chunk] = net.forward(X[s:s + chunk])
        return _two_column_logits(out) if self.n_outputs_ == 1 else out

    # ---- training -------------------------------------------------------------------

    def _fit(self, X, y, sample_weight, incremental, classes):
        s = _Settings(self)
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        dtype = s.dtype if first else self.coefs_[0].dtype
        X, y = validate_data(self, X, y, reset=first, dtype=dtype)
        y = self._encode_labels(y, classes, first, incremental)
        if sample_weight is not None:
            sample_weight = check_row_array(sample_weight, (X.shape[0],), "sample_weight",
                                            nonneg=True)
            if not np.any(sample_weight):
                raise ValueError("sample_weight: every weight is zero; at least one row "
                                 "needs a positive weight")
        class_weight = self._class_weight_vector(y, incremental)
        rs = check_random_state(self.random_state)
        if first:
            self._initialize(s, X.shape[1], dtype, rs)
        train, val = self._split(s, X, y, sample_weight, rs)
        net = _make_net(self.coefs_, self.intercepts_, s.activation)
        opt = self._make_optimizer(s, net, incremental)
        # the trainer's BLAS thread policy (fit's blas_threads='auto'): small products
        # on a busy machine would otherwise wait for OpenBLAS threads (issue 12.3)
        with blas_policy("auto", net, self._batch_size(s, train[0].shape[0])) as blas:
            best = self._run(s, net, opt, train, val, class_weight, incremental, rs, blas)
        self._optimizer_state = opt.state_dict()
        source = best if best is not None else [p.data for p in net.parameters()]
        # copies in scikit-learn's (in, out) layout: w.T of a Linear weight is already
        # C-ordered (see pyce.nn.Linear), and coefs_ must not alias the network's arrays
        self.coefs_ = [w.T.copy(order="C") for w in source[0::2]]
        self.intercepts_ = [b.copy() for b in source[1::2]]
        return self

    def _encode_labels(self, y, classes, first, incremental):
        """Class indices (int64) of y into classes_, which the first call sets."""
        check_classification_targets(y)
        if first:
            if incremental and classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit "
                                 "(every label that will appear in y)")
            labels = np.unique(y if classes is None else np.asarray(classes))
            if len(labels) < 2:
                raise ValueError(f"MLPClassifier needs at least 2 classes, got 1 class: "
                                 f"{labels.tolist()}")
            self.classes_ = labels
        elif incremental and classes is not None \
                and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"classes={list(classes)!r} differs from the classes of the first "
                             f"call to partial_fit, {self.classes_.tolist()!r}")
        idx = np.searchsorted(self.classes_, y)
        idx[idx == len(self.classes_)] = 0
        unknown = self.classes_[idx] != y
        if np.any(unknown):
            where = "classes" if incremental else "the classes of the previous fit (warm_start)"
            raise ValueError(f"y contains labels not in {where} {self.classes_.tolist()!r}: "
                             f"{np.unique(y[unknown]).tolist()!r}")
        return idx.astype(np.int64)

    def _class_weight_vector(self, y, incremental):
        """class_weight as one weight per class of classes_ (None if not set)."""
        cw = self.class_weight
        if cw is None:
            return None
        if isinstance(cw, str) and cw == "balanced":
            if incremental:
                raise ValueError("class_weight='balanced' needs the whole y and is not "
                                 "supported by partial_fit: pass a dict (e.g. from "
                                 "sklearn.utils.class_weight.compute_class_weight)")
            return compute_class_weight("balanced", classes=np.arange(len(self.classes_)),
                                        y=y)
        if isinstance(cw, dict):
            return compute_class_weight(cw, classes=self.classes_, y=self.classes_[y])
        raise ValueError(f"class_weight must be None, 'balanced' or a dict, got {cw!r}")

    def _initialize(self, s, n_features, dtype, rs):
        """Glorot-uniform weights and intercepts drawn from rs in scikit-learn's order
        (bound sqrt(6 / (fan_in + fan_out)), sqrt(2 / ...) for 'logistic'), and empty
        training records."""
        n_classes = len(self.classes_)
        self.n_outputs_ = 1 if n_classes == 2 else n_classes
        self.out_activation_ = "logistic" if n_classes == 2 else "softmax"
        units = [n_features] + s.hidden + [self.n_outputs_]
        self.n_layers_ = len(units)
        factor = 2.0 if s.activation == "logistic" else 6.0
        self.coefs_, self.intercepts_ = [], []
        for fan_in, fan_out in zip(units[:-1], units[1:]):
            bound = math.sqrt(factor / (fan_in + fan_out))
            self.coefs_.append(rs.uniform(-bound, bound, (fan_in, fan_out)).astype(dtype))
            self.intercepts_.append(rs.uniform(-bound, bound, fan_out).astype(dtype))
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self._no_improvement_count = 0
        self._optimizer_state = None
        if self.early_stopping:
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def _split(self, s, X, y, sample_weight, rs):
        """(train, validation) as (X, y, sample_weight) triples; validation is None
        without early_stopping. The split is stratified and drawn from rs."""
        if not self.early_stopping:
            return (X, y, sample_weight), None
        arrays = (X, y) if sample_weight is None else (X, y, sample_weight)
        parts = train_test_split(*arrays, random_state=rs, test_size=s.validation_fraction,
                                 stratify=y)
        if parts[1].shape[0] < 2:
            raise ValueError(f"the validation set has {parts[1].shape[0]} rows "
                             f"(validation_fraction={s.validation_fraction} of {X.shape[0]}): "
                             f"increase validation_fraction or pass more data")
        sw_train, sw_val = (parts[4], parts[5]) if sample_weight is not None else (None, None)
        return (parts[0], parts[2], sw_train), (parts[1], parts[3], sw_val)

    def _make_optimizer(self, s, net, incremental):
        """pyce.optim.SGD or Adam over the net's parameters (keyword arguments only):
        one for the weights (L2 through its weight_decay), one for the intercepts;
        partial_fit resumes the saved optimizer state of the same solver."""
        weights = [lin.weight for lin in _linears(net)]
        biases = [lin.bias for lin in _linears(net)]
        if s.solver == "sgd":
            opts = [_optim.SGD(group, lr=s.lr, momentum=s.momentum, nesterov=s.nesterov)
                    for group in (weights, biases)]
        else:
            opts = [_optim.Adam(group, lr=s.lr, betas=(s.beta_1, s.beta_2), eps=s.epsilon)
                    for group in (weights, biases)]
        opt = _Optimizers(opts)
        state = getattr(self, "_optimizer_state", None)
        if incremental and state is not None \
                and [d.get("type") for d in state] == [type(o).__name__ for o in opts]:
            opt.load_state_dict(state)
        return opt

    def _batch_size(self, s, n):
        if s.batch_size == "auto":
            return min(200, n)
        if s.batch_size > n:
            warnings.warn(f"batch_size={s.batch_size} is larger than the {n} training samples; "
                          f"using batches of {n}", UserWarning, stacklevel=4)
        return min(s.batch_size, n)

    def _run(self, s, net, opt, train, val, class_weight, incremental, rs, blas):
        """The epochs of one fit / partial_fit call. Returns the best epoch's parameters
        with early_stopping (net.parameters() order), else None."""
        x, y, sw = train
        n = x.shape[0]
        batch_size = self._batch_size(s, n)
        ctx = _EpochContext(s, net, x, y, sw, class_weight, batch_size, bool(self.verbose),
                            blas)
        order = np.arange(n)
        best = None
        self.n_iter_ = 0
        for _ in range(s.max_iter):
            t0 = time.perf_counter()
            if self.shuffle:
                order = _shuffled(order, rs)
            loss, acc = ctx.epoch(opt, order, self.n_iter_ + 1)
            self.n_iter_ += 1
            self.loss_ = loss
            self.t_ += n
            self.loss_curve_.append(loss)
            improved_best = self._track_improvement(s, net, val, loss)
            if improved_best:
                best = [p.data.copy() for p in net.parameters()]
            if self.verbose:
                self._print_epoch(s, loss, acc, time.perf_counter() - t0)
            if s.solver == "sgd" and s.schedule == "invscaling":
                opt.lr = s.lr / (self.t_ + 1) ** s.power_t
            if self._no_improvement_count > s.n_iter_no_change and self._stop_or_slow_down(s, opt):
                break
            if incremental:
                break
            if self.n_iter_ == s.max_iter:
                warnings.warn(f"MLPClassifier: the stochastic optimizer reached max_iter="
                              f"{s.max_iter} epochs without converging (tol={s.tol}); raise "
                              f"max_iter or tol", ConvergenceWarning, stacklevel=4)
        return best if self.early_stopping else None

    def _track_improvement(self, s, net, val, loss):
        """Update the no-improvement count (scikit-learn's rule: on the training loss,
        or on the validation accuracy with early_stopping). True when this epoch has
        the best validation score so far (its weights are to be kept)."""
        if val is None:
            worse = loss > self.best_loss_ - s.tol
            self._no_improvement_count = self._no_improvement_count + 1 if worse else 0
            self.best_loss_ = min(self.best_loss_, loss)
            return False
        x, y, sw = val
        pred = np.argmax(self._forward(net, x), axis=1)
        score = float(accuracy_score(y, pred, sample_weight=sw))
        if self.validation_scores_ is None:  # warm start after a fit without early stopping
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
        self.validation_scores_.append(score)
        worse = score < self.best_validation_score_ + s.tol
        self._no_improvement_count = self._no_improvement_count + 1 if worse else 0
        if score > self.best_validation_score_:
            self.best_validation_score_ = score
            return True
        return False

    def _stop_or_slow_down(self, s, opt):
        """After too many epochs without improvement: stop (True), or with sgd's
        'adaptive' schedule divide the learning rate by 5 and go on (False)."""
        what = "validation accuracy" if self.early_stopping else "training loss"
        msg = (f"{what} did not improve by tol={s.tol} for {s.n_iter_no_change} "
               f"consecutive epochs")
        if s.solver == "sgd" and s.schedule == "adaptive" and opt.lr > 1e-6:
            opt.lr = opt.lr / 5.0
            self._no_improvement_count = 0
            if self.verbose:
                print(f"{msg}: learning rate now {opt.lr:g}")
            return False
        if self.verbose:
            print(f"{msg}: stopping")
        return True

    def _print_epoch(self, s, loss, acc, seconds):
        rec = {"epoch": self.n_iter_, "train_loss": loss, "train_accuracy": acc,
               "test_loss": None, "test_accuracy": None, "seconds": seconds}
        line = format_epoch(rec, s.max_iter)
        if self.early_stopping:
            line += f"  validation acc {100 * self.validation_scores_[-1]:6.2f}%"
        print(line)


class _Optimizers:
    """Two pyce optimizers stepped together: [weights (with weight decay), intercepts]."""

    def __init__(self, opts):
        self.opts = opts

    @property
    def lr(self):
        return self.opts[0].lr

    @lr.setter
    def lr(self, value):
        for o in self.opts:
            o.lr = value

    @property
    def weight_decay(self):
        return self.opts[0].weight_decay

    @weight_decay.setter
    def weight_decay(self, value):
        # torch's L2 weight decay (g = grad + weight_decay * W), read by every step
        self.opts[0].weight_decay = value

    def zero_grad(self):
        for o in self.opts:
            o.zero_grad()

    def step(self):
        for o in self.opts:
            o.step()

    def state_dict(self):
        return [o.state_dict() for o in self.opts]

    def load_state_dict(self, states):
        for o, d in zip(self.opts, states):
            o.load_state_dict(d)


class _EpochContext:
    """What every step of one fit call needs: the data, the reused batch buffers,
    the weights that get the L2 term, and the step counter for divergence messages."""

    def __init__(self, s, net, x, y, sw, class_weight, batch_size, count_correct, blas):
        self.s, self.net, self.x, self.y, self.sw = s, net, x, y, sw
        self.blas = blas  # the BLAS thread policy: tick() once per step
        self.class_weight = class_weight
        self.batch_size = batch_size
        self.count_correct = count_correct
        rows = min(batch_size, x.shape[0])
        self.x_buf = np.empty((rows, x.shape[1]), x.dtype)
        self.y_buf = np.empty(rows, np.int64)
        self.g_buf = np.empty((rows, max(2, _linears(net)[-1].out_features)), x.dtype)
        self.weights = [lin.weight for lin in _linears(net)]
        self.n_batches = -(-x.shape[0] // batch_size)
        self.step_count = 0

    def epoch(self, opt, order, epoch):
        """One pass over the rows in `order`; returns (loss_, running accuracy or None)."""
        total, correct = 0.0, 0
        for b in range(self.n_batches):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            rows = len(idx)
            xb, yb = self.x_buf[:rows], self.y_buf[:rows]
            np.take(self.x, idx, axis=0, out=xb, mode="clip")
            np.take(self.y, idx, out=yb, mode="clip")
            swb = None if self.sw is None else self.sw[idx]
            loss, hits = self.step(opt, xb, yb, swb, epoch, b)
            self.blas.tick()
            total += loss * rows
            correct += hits
        n = self.x.shape[0]
        return total / n, (correct / n if self.count_correct else None)

    def _has_weight(self, yb, swb):
        """False when every row of the batch has weight 0 (the kernel's 'mean' would
        be 0/0 there)."""
        cw = self.class_weight
        if swb is None:
            return cw is None or bool(np.any(cw[yb]))
        return bool(np.any(swb if cw is None else swb * cw[yb]))

    def _batch_weight(self, yb, swb):
        """The sum of the L2 scale S: the batch's rows, or its sample weights."""
        return float(yb.shape[0]) if swb is None else float(swb.sum())

    def step(self, opt, xb, yb, swb, epoch, b):
        """Forward, loss (+ L2), backward, update for one batch; (loss, correct rows)."""
        s, net = self.s, self.net
        self.step_count += 1
        if not self._has_weight(yb, swb):
            return 0.0, 0  # no weight in this batch: nothing to learn from it
        z = net.forward(xb)
        hits = int(np.count_nonzero(_argmax(z) == yb)) if self.count_correct else 0
        loss, dz = _loss_and_grad(z, yb, self.class_weight, swb, s.label_smoothing,
                                  self.g_buf[:yb.shape[0]])
        scale = self._batch_weight(yb, swb)
        if s.alpha:
            sq = sum(float(np.dot(v, v)) for v in (w.data.ravel("K") for w in self.weights))
            loss += 0.5 * s.alpha * sq / scale
        if not math.isfinite(loss):
            self._diverged(opt, xb, loss, epoch, b)
        opt.zero_grad()
        net.backward(dz, input_grad=False)
        opt.weight_decay = s.alpha / scale  # the L2 gradient alpha * W / S, in the step
        opt.step()
        return loss, hits

    def _diverged(self, opt, xb, loss, epoch, b):
        msg = divergence_message(step=self.step_count, epoch=epoch, batch=b + 1,
                                  n_batches=self.n_batches, loss=loss, reduction="mean",
                                  batch_size=self.batch_size, lr=opt.lr,
                                  bad_input=not np.isfinite(xb).all())
        history = _train.History()
        history.diverged = True
        history.message = msg
        raise _train.DivergenceError(msg, history)


def _shuffled(order, rs):
    """order permuted with the draws of scikit-learn's ``shuffle(order,
    random_state=rs)`` (its ``resample`` without replacement: one ``rs.shuffle``
    of ``arange(n)``, then indexing), so the epochs take scikit-learn's batches;
    without its per-call parameter validation (about 0.2 ms a call timed inside
    the digits fit, 6.4-7.8 ms of a 115 ms fit; 0.1 ms in a warm loop).
    tests/sklearn/test_sklearn.py checks it against the installed scikit-learn's
    shuffle."""
    idx = np.arange(order.shape[0])
    rs.shuffle(idx)
    return order[idx]


def _argmax(z):
    """Predicted class index from logits (one logistic column: z > 0)."""
    return (z[:, 0] > 0).astype(np.int64) if z.shape[1] == 1 else np.argmax(z, axis=1)
