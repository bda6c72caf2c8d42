"""Mini-batch training: fit(), History, EarlyStopping, checkpoints, divergence stop.

    >>> model = pyce.nn.mlp([64, 256, 128, 10], rng=0)
    >>> opt = pyce.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> hist = pyce.train.fit(model, pyce.nn.CrossEntropyLoss(), opt, x, y,
    ...                       epochs=10, batch_size=64, x_test=xt, y_test=yt)

Each epoch draws one permutation from a numpy Generator seeded with `seed`
(nothing else uses it), so a run is reproducible, and a checkpoint holding
the Generator's state resumes to exactly the result of an uninterrupted run.
"""
import contextlib
import json
import math
import os
import sys
import time
import warnings

import numpy as np

from pyce._core import cross_entropy
from pyce._progress import ProgressBar, format_epoch
from pyce import nn as _nn

__all__ = ["fit", "History", "EarlyStopping", "DivergenceError", "save_model", "load_model",
           "save_checkpoint", "load_checkpoint"]

_METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
_CKPT_FORMAT = "pyce-checkpoint-1"


class History:
    """What fit() recorded.

    epochs: one dict per completed epoch with keys epoch (1-based),
      train_loss, train_accuracy (running averages over the epoch's
      mini-batches as they were trained, not a second pass; train_loss is the
      per-sample mean: a 'sum' batch loss is divided by the batch's rows),
      test_loss, test_accuracy (after the epoch, 'mean' cross-entropy with the
      loss's weight / ignore_index / label_smoothing whatever the training
      reduction; None without a test set), seconds, lr.
    step_losses: the loss of every training step, as the loss function
      returned it (a batch sum with reduction='sum').
    diverged, message: set when training stopped on a NaN/inf loss (message
      says why and what to do) or stopped early (message says so).
    """

    def __init__(self):
        self.epochs = []
        self.step_losses = []
        self.diverged = False
        self.stopped_early = False
        self.message = None

    def to_dict(self):
        return {"epochs": [dict(e) for e in self.epochs], "diverged": self.diverged,
                "message": self.message}

    def _to_json(self):
        d = self.to_dict()
        d["stopped_early"] = self.stopped_early
        return json.dumps(d)

    @classmethod
    def _from_json(cls, text, step_losses):
        d = json.loads(text)
        h = cls()
        h.epochs = d["epochs"]
        h.diverged = d["diverged"]
        h.message = d["message"]
        h.stopped_early = d.get("stopped_early", False)
        h.step_losses = [float(v) for v in step_losses]
        return h

    def __repr__(self):
        return (f"History({len(self.epochs)} epochs, {len(self.step_losses)} steps, "
                f"diverged={self.diverged})")


class DivergenceError(RuntimeError):
    """The training loss became NaN or inf. str() says where and what to do;
    .history is the History up to the last completed epoch (the epoch in
    progress is not in history.epochs; its finite step losses are in
    history.step_losses), with diverged=True and message set."""

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


class EarlyStopping:
    """Stop when `metric` has not improved by more than min_delta for `patience` epochs.

    metric: 'test_loss' (default), 'test_accuracy', 'train_loss' or
    'train_accuracy'; losses must decrease, accuracies increase.
    restore_best: when stopping, load the weights of the best epoch back
    into the model.
    """

    def __init__(self, metric="test_loss", patience=5, min_delta=0.0, restore_best=True):
        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) \
                or patience < 1:
            raise ValueError(f"patience must be a positive integer, got {patience!r}")
        min_delta = float(min_delta)
        if not min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta!r}")
        self.metric, self.patience, self.min_delta = metric, int(patience), min_delta
        self.restore_best = bool(restore_best)
        self.maximize = metric.endswith("accuracy")

    def __repr__(self):
        return (f"EarlyStopping(metric={self.metric!r}, patience={self.patience}, "
                f"min_delta={self.min_delta})")


class _EarlyState:
    def __init__(self):
        self.best = None
        self.best_epoch = None
        self.wait = 0
        self.best_weights = None


def _model_dtype(model):
    params = model.parameters()
    if not params:
        raise ValueError("the model has no parameters")
    return params[0].data.dtype


def _check_xy(x, y, dtype, xname, yname):
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{xname} must be 2-D (samples, features), got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number):
        raise TypeError(f"{xname} must be numeric, got dtype {x.dtype}")
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{yname} must be 1-D with one label per row of {xname} "
                         f"({len(x)}), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{yname} must hold integer class labels, got dtype {y.dtype}")
    # converted once here (a copy only if the dtype differs), never per batch
    return np.ascontiguousarray(x, dtype=dtype), np.ascontiguousarray(y, dtype=np.int64)


def _positive_int(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _evaluate(model, loss_fn, x, y, chunk=2048):
    """('mean' cross-entropy, accuracy) over (x, y), in chunks; ignored rows left out."""
    weight = getattr(loss_fn, "weight", None)
    ignore = getattr(loss_fn, "ignore_index", -100)
    smoothing = getattr(loss_fn, "label_smoothing", 0.0)
    total = denom = 0.0
    correct = counted = 0
    for s in range(0, len(x), chunk):
        xb, yb = x[s:s + chunk], y[s:s + chunk]
        logits = model.forward(xb)
        rows = cross_entropy(logits, yb, weight, ignore, "none", smoothing)
        keep = yb != ignore
        total += float(rows.sum(dtype=np.float64))
        denom += float(weight[yb[keep]].sum()) if weight is not None else int(keep.sum())
        correct += int((logits.argmax(axis=1)[keep] == yb[keep]).sum())
        counted += int(keep.sum())
    loss = total / denom if denom else float("nan")
    return loss, (correct / counted if counted else float("nan"))


def _divergence_message(step, epoch, batch, n_batches, loss, reduction, batch_size, lr,
                        bad_input):
    msg = (f"training diverged at step {step} (epoch {epoch}, batch {batch} of {n_batches}): "
           f"the loss is {loss}. Settings: reduction={reduction!r}, batch_size={batch_size}, "
           f"lr={lr:g}. ")
    if bad_input:
        return msg + ("The input batch itself contains NaN or inf: clean or impute the data "
                      "before training.")
    if reduction == "sum":
        return msg + (f"With reduction='sum' the loss and its gradient are summed over the "
                      f"batch, so the step grows with the batch size ({batch_size}x that of "
                      f"one sample): use reduction='mean', or divide the learning rate by "
                      f"the batch size (lr={lr / batch_size:.3g}).")
    return msg + (f"With reduction={reduction!r} the step does not grow with the batch size: "
                  f"lower the learning rate (try lr={lr / 10:.3g}) and check that the inputs "
                  f"are scaled (e.g. to [0, 1]).")


def fit(model, loss_fn, optimizer, x_train, y_train, *, epochs, batch_size, x_test=None,
        y_test=None, seed=0, verbose=1, early_stopping=None, checkpoint=None, resume=None,
        on_epoch=None, blas_threads=None):
    """Train `model` with mini-batch steps; returns a History.

    Per epoch: one permutation of the training rows from
    np.random.default_rng(seed) (carried across epochs), batches of
    batch_size rows (the last one may be smaller), for each: forward, loss,
    zero_grad, backward, step. Then the test set (if given) is evaluated,
    the epoch is recorded, `checkpoint` (a path) is written, on_epoch(history)
    is called and `early_stopping` (an EarlyStopping) is consulted.

    x_* are converted once to the model's dtype; y_* must be integer labels.
    The loss must reduce to a scalar ('mean' or 'sum'). Each batch is
    gathered into a buffer reused by every step: model.forward receives a
    view that is overwritten by the next batch (pyce.nn's layers keep it
    only until their backward pass).

    Progress: a bar on stderr only when stderr is a terminal and verbose > 0.

    Divergence: when a training loss is NaN or inf, training stops before
    that step's update and DivergenceError is raised (see its doc; the
    message names the step, reduction, batch size and learning rate and
    says what to do).

    resume: the path of a checkpoint written by an earlier call with the same
    model architecture, optimizer type and batch_size; training continues
    after its last epoch up to `epochs` in total and gives the same weights
    and History as an uninterrupted run.

    blas_threads: None (default) leaves NumPy's BLAS as configured; a
    positive int limits it to that many threads during the call, through
    threadpoolctl when it is installed (an optional package: without it a
    RuntimeWarning says so and training runs with the BLAS default). The
    products of a small MLP (e.g. 64x64 @ 64x256) are too small to gain from
    threads: on the 2-core machine of bench/bench_trainer.py blas_threads=1
    was faster even when idle, and several times faster when other
    processes kept the cores busy.
    """
    if blas_threads is not None:
        blas_threads = _positive_int("blas_threads", blas_threads)
    with _blas_limit(blas_threads):
        return _fit(model, loss_fn, optimizer, x_train, y_train, epochs=epochs,
                    batch_size=batch_size, x_test=x_test, y_test=y_test, seed=seed,
                    verbose=verbose, early_stopping=early_stopping, checkpoint=checkpoint,
                    resume=resume, on_epoch=on_epoch)


def _blas_limit(threads):
    """A context limiting NumPy's BLAS to `threads` threads (threadpoolctl, optional)."""
    if threads is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        warnings.warn(f"blas_threads={threads} needs the optional package threadpoolctl "
                      f"(pip install threadpoolctl); training with the BLAS's default threads",
                      RuntimeWarning, stacklevel=3)
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def _fit(model, loss_fn, optimizer, x_train, y_train, *, epochs, batch_size, x_test, y_test,
         seed, verbose, early_stopping, checkpoint, resume, on_epoch):
    epochs = _positive_int("epochs", epochs)
    batch_size = _positive_int("batch_size", batch_size)
    if getattr(loss_fn, "reduction", "mean") not in ("mean", "sum"):
        raise ValueError(f"fit needs a scalar loss: loss_fn.reduction must be 'mean' or 'sum', "
                         f"got {loss_fn.reduction!r}")
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise TypeError(f"early_stopping must be None or an EarlyStopping, got "
                        f"{early_stopping!r}")
    if (x_test is None) != (y_test is None):
        raise ValueError("pass both x_test and y_test, or neither")
    if early_stopping is not None and early_stopping.metric.startswith("test") \
            and x_test is None:
        raise ValueError(f"early_stopping metric {early_stopping.metric!r} needs x_test and "
                         f"y_test")
    dtype = _model_dtype(model)
    x_train, y_train = _check_xy(x_train, y_train, dtype, "x_train", "y_train")
    if x_test is not None:
        x_test, y_test = _check_xy(x_test, y_test, dtype, "x_test", "y_test")
    n = len(x_train)
    if n == 0:
        raise ValueError("x_train is empty")
    reduction = getattr(loss_fn, "reduction", "mean")

    rng = np.random.default_rng(seed)
    history = History()
    es = _EarlyState()
    start = 0
    if resume is not None:
        start = _resume(resume, model, optimizer, rng, batch_size, es)
        history = start[1]
        start = start[0]
        if history.stopped_early or history.diverged:
            return history

    n_batches = -(-n // batch_size)
    on_terminal = verbose and getattr(sys.stderr, "isatty", lambda: False)()
    has_input_grad = isinstance(model, _nn.Sequential)
    ignore = getattr(loss_fn, "ignore_index", -100)
    step = len(history.step_losses)

    # The batches are gathered into these buffers (np.take(out=)) instead of
    # a fresh fancy-indexed copy per step; the model sees views of them that
    # are valid until the next step.
    rows_max = min(batch_size, n)
    x_buf = np.empty((rows_max,) + x_train.shape[1:], x_train.dtype)
    y_buf = np.empty(rows_max, y_train.dtype)
    pred = np.empty(n, np.intp)  # argmax per trained row, in permutation order
    for epoch in range(start + 1, epochs + 1):
        t0 = time.perf_counter()
        bar = ProgressBar(n_batches, f"epoch {epoch}/{epochs}", width=24) if on_terminal else None
        perm = rng.permutation(n)
        loss_sum = 0.0
        for b in range(n_batches):
            lo = b * batch_size
            idx = perm[lo:lo + batch_size]
            rows = len(idx)
            xb, yb = x_buf[:rows], y_buf[:rows]
            # mode='clip': a permutation is always in range, and the default
            # 'raise' would gather into a temporary buffer and copy
            np.take(x_train, idx, axis=0, out=xb, mode="clip")
            np.take(y_train, idx, out=yb, mode="clip")
            logits = model.forward(xb)
            loss = float(loss_fn.forward(logits, yb))
            step += 1
            if not math.isfinite(loss):
                if bar is not None:
                    bar.close()
                history.diverged = True
                history.message = _divergence_message(
                    step, epoch, b + 1, n_batches, loss, reduction, batch_size, optimizer.lr,
                    not np.isfinite(xb).all())
                raise DivergenceError(history.message, history)
            optimizer.zero_grad()
            dlogits = loss_fn.backward()
            if has_input_grad:
                model.backward(dlogits, input_grad=False)
            else:
                model.backward(dlogits)
            optimizer.step()
            history.step_losses.append(loss)
            loss_sum += loss if reduction == "sum" else loss * rows
            np.argmax(logits, axis=1, out=pred[lo:lo + rows])  # accuracy once per epoch
            if bar is not None:
                bar.update(1, f"loss {loss:.4f}")
        y_perm = y_train[perm]
        keep = y_perm != ignore
        correct = int(np.count_nonzero((pred == y_perm) & keep))
        counted = int(np.count_nonzero(keep))
        rec = {"epoch": epoch, "train_loss": loss_sum / n,
               "train_accuracy": correct / counted if counted else float("nan"),
               "test_loss": None, "test_accuracy": None, "seconds": 0.0,
               "lr": float(optimizer.lr)}
        if x_test is not None:
            rec["test_loss"], rec["test_accuracy"] = _evaluate(model, loss_fn, x_test, y_test)
        rec["seconds"] = time.perf_counter() - t0
        history.epochs.append(rec)
        if bar is not None:
            bar.close(format_epoch(rec, epochs))
        stop = early_stopping is not None and _early_stop(early_stopping, es, rec, model,
                                                          history)
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, optimizer, rng, history, epoch, batch_size, es)
        if on_epoch is not None:
            on_epoch(history)
        if stop:
            break
    return history


def _early_stop(cfg, es, rec, model, history):
    value = rec[cfg.metric]
    if es.best is None:
        better = True
    elif cfg.maximize:
        better = value > es.best + cfg.min_delta
    else:
        better = value < es.best - cfg.min_delta
    if better:
        es.best, es.best_epoch, es.wait = value, rec["epoch"], 0
        if cfg.restore_best:
            es.best_weights = model.state_dict()
        return False
    es.wait += 1
    if es.wait < cfg.patience:
        return False
    history.stopped_early = True
    history.message = (f"stopped early after epoch {rec['epoch']}: {cfg.metric} did not improve "
                       f"by more than {cfg.min_delta:g} for {cfg.patience} epochs (best "
                       f"{es.best:.6g} at epoch {es.best_epoch}"
                       + ("; its weights were restored)" if cfg.restore_best else ")"))
    if cfg.restore_best and es.best_weights is not None:
        model.load_state_dict(es.best_weights)
    return True


# ---------------------------------------------------------------- checkpoints

def _write_npz(path, arrays):
    """Write atomically: a crash mid-write never leaves a truncated file at `path`."""
    path = os.fspath(path)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def save_checkpoint(path, model, optimizer, rng, history, epoch, batch_size, es=None):
    """Write model, optimizer state, epoch, Generator state and History to an .npz."""
    arrays = {"format": np.array(_CKPT_FORMAT), "epoch": np.array(epoch),
              "batch_size": np.array(batch_size),
              "rng_state": np.array(json.dumps(rng.bit_generator.state)),
              "history": np.array(history._to_json()),
              "step_losses": np.array(history.step_losses, np.float64),
              "spec": np.array(json.dumps(_spec(model)))}
    for k, v in model.state_dict().items():
        arrays["model/" + k] = v
    for k, v in optimizer.state_dict().items():
        arrays["optim/" + k] = np.asarray(v)
    if es is not None:
        arrays["early"] = np.array(json.dumps({"best": es.best, "best_epoch": es.best_epoch,
                                               "wait": es.wait}))
        for k, v in (es.best_weights or {}).items():
            arrays["best/" + k] = v
    _write_npz(path, arrays)


def load_checkpoint(path):
    """The checkpoint as a dict: epoch, batch_size, rng_state (dict), history
    (History), model (state_dict), optim (state_dict), early (dict or None),
    best (state_dict or None)."""
    with np.load(os.fspath(path), allow_pickle=False) as z:
        if "format" not in z.files or str(z["format"]) != _CKPT_FORMAT:
            raise ValueError(f"{path} is not a pyce checkpoint")
        out = {"epoch": int(z["epoch"]), "batch_size": int(z["batch_size"]),
               "rng_state": json.loads(str(z["rng_state"])),
               "history": History._from_json(str(z["history"]), z["step_losses"]),
               "spec": json.loads(str(z["spec"])),
               "model": {k[6:]: z[k] for k in z.files if k.startswith("model/")},
               "optim": {k[6:]: z[k] for k in z.files if k.startswith("optim/")},
               "early": json.loads(str(z["early"])) if "early" in z.files else None,
               "best": {k[5:]: z[k] for k in z.files if k.startswith("best/")} or None}
    return out


def _resume(path, model, optimizer, rng, batch_size, es):
    ck = load_checkpoint(path)
    if ck["batch_size"] != batch_size:
        raise ValueError(f"resume: the checkpoint was trained with batch_size="
                         f"{ck['batch_size']}, this call has batch_size={batch_size}; "
                         f"the batches would differ")
    if ck["spec"] is not None and ck["spec"] != _spec(model):
        raise ValueError(f"resume: the checkpoint's model {ck['spec']} is not this model "
                         f"{_spec(model)}")
    model.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optim"])
    rng.bit_generator.state = ck["rng_state"]
    if ck["early"] is not None:
        es.best, es.best_epoch, es.wait = (ck["early"]["best"], ck["early"]["best_epoch"],
                                           ck["early"]["wait"])
        es.best_weights = ck["best"]
    return ck["epoch"], ck["history"]


def _spec(model):
    return model._spec() if hasattr(model, "_spec") else None


# ---------------------------------------------------------------- models

def save_model(path, model):
    """Save a Sequential to an .npz: its state_dict arrays under their PyTorch
    keys ('0.weight', ...) plus '__spec__' (the layer list, JSON), '__dtype__',
    and '__sizes__' / '__activation__' when it was built by pyce.nn.mlp."""
    arrays = dict(model.state_dict())
    arrays["__spec__"] = np.array(json.dumps(_spec(model)))
    arrays["__dtype__"] = np.array(_model_dtype(model).name)
    if getattr(model, "sizes", None) is not None:
        arrays["__sizes__"] = np.array(model.sizes, np.int64)
        arrays["__activation__"] = np.array(model.activation)
    _write_npz(path, arrays)


def load_model(path):
    """Rebuild the Sequential written by save_model, with its weights and dtype."""
    with np.load(os.fspath(path), allow_pickle=False) as z:
        if "__spec__" not in z.files:
            raise ValueError(f"{path} was not written by pyce.train.save_model (no __spec__)")
        spec = json.loads(str(z["__spec__"]))
        dtype = np.dtype(str(z["__dtype__"]))
        model = _nn.from_spec(spec, dtype)
        model.load_state_dict({k: z[k] for k in z.files if not k.startswith("__")})
        if "__sizes__" in z.files:
            model.sizes = [int(s) for s in z["__sizes__"]]
            model.activation = str(z["__activation__"])
    return model
