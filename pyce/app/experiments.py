"""The experiments the command line runs, as functions usable from Python.

    >>> from pyce.datasets import load_digits
    >>> from pyce.app.experiments import compare_reductions
    >>> runs = compare_reductions(load_digits(), hidden=[32], batch_sizes=[16, 64], epochs=1)
    >>> [(r["reduction"], r["batch_size"], r["diverged"]) for r in runs]   # doctest: +SKIP

The command line (`pyce compare-reductions`) only parses the arguments,
prints the records these functions return and writes them; the library owns
the experiment: how a run is built, what counts as diverged, where the
divergence happened.
"""
import math
import time

import numpy as np

from pyce._validate import check_float_dtype, check_positive_int

__all__ = ["DEFAULT_LR", "DEFAULT_MOMENTUM", "make_model", "check_optimizer", "make_optimizer", "diverged_at_step",
           "first_step_size", "compare_reductions"]

DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3}
DEFAULT_MOMENTUM = 0.9


def make_model(data, hidden, activation="elu", *, dtype=np.float32, seed=0):
    """A freshly initialized MLP for `data`: n_features -> *hidden -> n_classes.

    data : a pyce.datasets.Dataset (gives n_features and n_classes).
    hidden : sequence of positive ints, the hidden layer sizes ([] for a linear model).
    activation : 'elu' or 'relu'.
    dtype : float32 or float64, the parameters' dtype.
    seed : int, seeds numpy.random.default_rng for the initial weights.
    Returns a pyce.nn.Sequential.
    """
    import pyce.nn as nn
    sizes = [data.n_features, *[check_positive_int(h, "hidden size") for h in hidden],
             data.n_classes]
    return nn.mlp(sizes, activation=activation, dtype=check_float_dtype(dtype),
                  rng=np.random.default_rng(seed))


def check_optimizer(name, momentum):
    """Raise ValueError unless `name` is 'sgd' or 'adam' and `momentum` fits it.

    momentum : None or a float; a number with 'adam' is an error (Adam has no
    momentum), so that it is never silently ignored.
    """
    if name not in DEFAULT_LR:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")
    if name == "adam" and momentum is not None:
        raise ValueError(f"momentum={momentum!r}: adam has no momentum (it is an SGD option)")


def make_optimizer(name, params, *, lr=None, momentum=None):
    """The optimizer `name` ('sgd' or 'adam') over `params`.

    lr : float or None; None takes DEFAULT_LR[name] (0.05 for sgd, 0.001 for adam).
    momentum : float or None, SGD's momentum; None takes DEFAULT_MOMENTUM (0.9).
        Adam has no momentum: a number with 'adam' raises ValueError rather
        than being silently ignored.
    Returns a pyce.optim.SGD or pyce.optim.Adam (built with keyword arguments only).
    """
    import pyce.optim as optim
    check_optimizer(name, momentum)
    lr = DEFAULT_LR[name] if lr is None else lr
    if name == "sgd":
        return optim.SGD(params, lr=lr,
                         momentum=DEFAULT_MOMENTUM if momentum is None else momentum)
    return optim.Adam(params, lr=lr)


def diverged_at_step(step_losses, diverged):
    """The 1-based step whose training loss was NaN or inf, or None.

    step_losses : the losses a History recorded, one per step.
    diverged : bool, whether fit stopped on a non-finite loss (DivergenceError).
    This is the one place that knows how fit records a divergence: it stops
    *before* recording the bad loss, so the bad step is the one after the
    last recorded loss. A non-finite value inside step_losses (a History
    from elsewhere) is reported where it is.
    """
    bad = next((i for i, v in enumerate(step_losses) if not math.isfinite(v)), None)
    if bad is not None:
        return bad + 1
    return len(step_losses) + 1 if diverged else None


def first_step_size(model, loss_fn, x, y, lr):
    """lr * ||gradient|| of the loss on (x, y) at the model's current weights.

    This is the length of a first plain-SGD step (momentum starts from zero),
    computed with the model's own forward/backward; the gradients are zeroed
    again afterwards and the weights are not changed. Returns a float.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        loss_fn.forward(model.forward(x), y)
        model.zero_grad()
        model.backward(loss_fn.backward())
    norm2 = sum(float(np.sum(np.square(p.grad, dtype=np.float64))) for p in model.parameters())
    model.zero_grad()
    return lr * math.sqrt(norm2)


def _fit_quietly(model, loss_fn, optimizer, data, *, epochs, batch_size, seed):
    """(history, message): fit without printing; message is the divergence message or None."""
    import pyce.train as train
    try:
        # A diverging run overflows in the layers before the trainer sees a
        # non-finite loss; the record says so, NumPy's warnings would not.
        with np.errstate(over="ignore", invalid="ignore"):
            history = train.fit(model, loss_fn, optimizer, data.x_train, data.y_train,
                                epochs=epochs, batch_size=batch_size, x_test=data.x_test,
                                y_test=data.y_test, seed=seed, verbose=0)
    except train.DivergenceError as exc:
        return exc.history, str(exc)
    return history, None


def _run_record(history, message, *, reduction, batch_size, lr, step):
    """The record of one run (see compare_reductions)."""
    per_sample = batch_size if reduction == "sum" else 1
    steps = [float(v) for v in history.step_losses]
    bad = diverged_at_step(steps, message is not None)
    finite = [v / per_sample for v in steps if math.isfinite(v)]
    # A run also counts as diverged when its loss stayed finite but ended
    # above where it started (saturated units can keep a blown-up network
    # finite: training made it worse, not better).
    grew = bad is None and len(finite) > 1 and finite[-1] > finite[0]
    last = history.epochs[-1] if history.epochs else {}
    return {
        "reduction": reduction, "batch_size": batch_size, "lr": lr,
        "first_step_size": step, "step_losses": steps,
        "first_loss": finite[0] if finite else None,
        "final_loss": finite[-1] if finite else None,
        "test_accuracy": last.get("test_accuracy") if bad is None else None,
        "diverged": bad is not None or grew, "diverged_at_step": bad,
        "loss_grew": grew, "message": message,
    }


def compare_reductions(data, *, hidden=(256, 128), activation="elu", batch_sizes=(64,),
                       reductions=("mean", "sum"), optimizer="sgd", lr=None, momentum=None,
                       epochs=10, seed=0, dtype=np.float32, on_run=None):
    """Train one model per (batch size, reduction) from the same initial weights; return records.

    data : a pyce.datasets.Dataset (e.g. pyce.datasets.load_digits()).
    hidden, activation, dtype, seed : the model (see make_model); every run
        starts from the same weights, drawn once with `seed`, and shuffles with `seed`.
    batch_sizes : sequence of positive ints.
    reductions : sequence of 'mean' / 'sum'.
    optimizer, lr, momentum : see make_optimizer; the same learning rate for every run.
    epochs : positive int, epochs per run.
    on_run : None or a callable receiving each record as soon as its run ends.
    Returns a list of dicts, one per run in the order batch size, then reduction,
    with keys reduction, batch_size, lr; first_step_size (lr x the gradient norm
    at the initial weights on the first batch_size training rows); step_losses
    (the loss of every recorded step, as the loss returned it); first_loss,
    final_loss (the first and last finite step loss per sample: a 'sum' loss
    divided by the batch size; None if none); test_accuracy (after the last
    epoch, None for a run that diverged); diverged (a non-finite loss, or a loss
    that ended above where it started); diverged_at_step (1-based step of the
    non-finite loss, else None); loss_grew; message (the trainer's divergence
    message or None); seconds. A diverged run is a result, not an error.
    """
    import pyce.nn as nn
    epochs = check_positive_int(epochs, "epochs")
    batch_sizes = [check_positive_int(b, "batch size") for b in batch_sizes]
    check_optimizer(optimizer, momentum)
    lr = DEFAULT_LR[optimizer] if lr is None else lr
    initial = make_model(data, hidden, activation, dtype=dtype, seed=seed).state_dict()
    initial = {k: np.array(v, copy=True) for k, v in initial.items()}
    runs = []
    for batch_size in batch_sizes:
        for reduction in reductions:
            model = make_model(data, hidden, activation, dtype=dtype, seed=seed)
            model.load_state_dict(initial)
            loss_fn = nn.CrossEntropyLoss(reduction=reduction)
            step = first_step_size(model, loss_fn, data.x_train[:batch_size],
                                   data.y_train[:batch_size], lr)
            opt = make_optimizer(optimizer, model.parameters(), lr=lr, momentum=momentum)
            t0 = time.perf_counter()
            history, message = _fit_quietly(model, loss_fn, opt, data, epochs=epochs,
                                            batch_size=batch_size, seed=seed)
            record = _run_record(history, message, reduction=reduction,
                                 batch_size=batch_size, lr=lr, step=step)
            record["seconds"] = time.perf_counter() - t0
            runs.append(record)
            if on_run is not None:
                on_run(record)
    return runs
