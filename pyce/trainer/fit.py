"""Mini-batch training: fit(), with History, EarlyStopping, checkpoints, the
divergence stop and Ctrl-C (TrainingInterrupted).

    >>> model = pyce.nn.mlp([64, 256, 128, 10], rng=0)
    >>> opt = pyce.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    >>> hist = pyce.train.fit(model, pyce.nn.CrossEntropyLoss(), opt, x, y,
    ...                       epochs=10, batch_size=64, x_test=xt, y_test=yt)

Each epoch draws one permutation from a numpy Generator seeded with `seed`
(nothing else uses it), so a run is reproducible, and a checkpoint holding
the Generator's state resumes to exactly the result of an uninterrupted run.
"""
import math
import sys
import time
import warnings

import numpy as np

from pyce import _blas
from pyce._progress import ProgressBar, format_epoch
from pyce._validate import check_positive_int
from pyce.trainer.checkpoints import (load_checkpoint, load_model, restore_checkpoint,
                                      save_checkpoint, save_model)
from pyce.trainer.history import (DivergenceError, EarlyState, EarlyStopping, History,
                                  TrainingInterrupted)
from pyce.trainer.nn import Loss, Module
from pyce.trainer.optim import Optimizer

__all__ = ["fit", "evaluate", "divergence_message", "History", "EarlyStopping",
           "DivergenceError", "TrainingInterrupted", "save_model", "load_model",
           "save_checkpoint", "load_checkpoint"]


def fit(model, loss_fn, optimizer, x_train, y_train, *, epochs, batch_size, x_test=None,
        y_test=None, seed=0, verbose=1, early_stopping=None, checkpoint=None, resume=None,
        on_epoch=None, blas_threads="auto"):
    """Train `model` with mini-batch steps; returns a History.

    model: a pyce.nn.Module (e.g. pyce.nn.mlp(...)); loss_fn: a pyce.nn.Loss
    with reduction 'mean' or 'sum' (e.g. CrossEntropyLoss()); optimizer: a
    pyce.optim optimizer over model.parameters(). x_train (rows, features),
    y_train (rows,) integer labels; x_test / y_test the same or both None.
    All x are converted once to the model's dtype.

    Per epoch (`epochs` in total, a positive int): one permutation of the
    training rows from np.random.default_rng(seed) (carried across epochs),
    batches of batch_size rows (the last one may be smaller), for each:
    forward, loss, zero_grad, backward, step. Then the test set is evaluated
    ('mean' loss through loss_fn.value, and accuracy), the epoch is recorded,
    early_stopping (an EarlyStopping or None) is consulted, `checkpoint` (a
    path or None) is written and on_epoch(history) is called. Each batch is
    gathered into a buffer reused by every step: model.forward receives a
    view that the next batch overwrites (pyce.nn's layers keep it only until
    their backward pass). verbose > 0 draws a progress bar on stderr when it
    is a terminal.

    Divergence: when a training loss is NaN or inf, training stops before
    that step's update and DivergenceError is raised (its message names the
    step, reduction, batch size and learning rate and says what to do).

    Interrupt: on KeyboardInterrupt (Ctrl-C) the model, the optimizer and the
    shuffling Generator are put back to the end of the last finished epoch
    (a copy is kept in memory at every epoch end) and TrainingInterrupted,
    a KeyboardInterrupt, is raised with .history holding the finished epochs.

    With SGD with momentum (not nesterov), the weight gradients go straight
    into the momentum buffers during fit (SGD.fused_gradients: one gemm with
    beta = momentum instead of writing .grad and reading it back); those
    weights' .grad read as zeros after fit.

    resume: the path of a checkpoint written by an earlier call with the same
    model architecture, optimizer type and batch_size; training continues
    after its last epoch up to `epochs` in total and gives the same weights
    and History as an uninterrupted run.

    blas_threads: 'auto' (default) gives NumPy's BLAS as many threads as the
    other processes leave cores idle, re-measured every quarter second
    (pyce._blas.AdaptiveThreads; one thread at the start): threads help a
    little on idle cores and stall badly when other processes keep every core
    busy (the README's trainer section has the measurements). Without
    /proc/stat, one thread for small products (the largest product of a step
    below pyce._blas.SMALL_PRODUCT_MACS multiply-adds), NumPy's default
    otherwise. A positive int limits the BLAS to that many threads; None
    leaves it as configured. The setting is restored when fit returns or
    raises.
    """
    run = _Run(model, loss_fn, optimizer, epochs=epochs, batch_size=batch_size, seed=seed,
               verbose=verbose, early_stopping=early_stopping, checkpoint=checkpoint,
               on_epoch=on_epoch)
    run.set_data(x_train, y_train, x_test, y_test)
    policy = blas_policy(blas_threads, model, min(run.batch_size, len(run.x_train)))
    if resume is not None and run.resume(resume):
        return run.history
    with policy, optimizer.fused_gradients():
        if policy.in_effect is None and blas_threads not in (None, "auto"):
            warnings.warn(f"blas_threads={blas_threads} has no effect: NumPy's BLAS is not "
                          f"the scipy-openblas its wheels bundle (see pyce._blas)",
                          RuntimeWarning, stacklevel=2)
        run.blas = policy
        return run.train()


class _FixedThreads:
    """fit's BLAS setting for blas_threads=None or an int (tick does nothing)."""

    def __init__(self, threads):
        self.threads = threads
        self.in_effect = None

    def __enter__(self):
        self._ctx = _blas.limit_threads(self.threads)
        self.in_effect = self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)

    def tick(self):
        pass


def blas_policy(setting, model, rows):
    """The BLAS thread policy for a `blas_threads` setting (see fit): a context
    manager whose tick() is called once per training step.

    setting: 'auto', None or a positive int, as fit's blas_threads.
    model: the Module being trained (its largest weight sizes the fallback).
    rows: the rows of a training batch.
    Returns an object usable as `with policy: ... policy.tick()`. Used by fit and
    by pyce.sklearn.MLPClassifier, so both train under the same policy.
    """
    if setting is None:
        return _FixedThreads(None)
    if isinstance(setting, str):
        if setting != "auto":
            raise ValueError(f"blas_threads must be 'auto', None or a positive integer, got "
                             f"{setting!r}")
        adaptive = _blas.AdaptiveThreads()
        if adaptive.active:
            adaptive.in_effect = adaptive.before
            return adaptive
        # a weight matrix (out, in) takes part in products of rows * out * in
        sizes = [p.data.size for p in model.parameters() if np.ndim(p.data) == 2]
        return _FixedThreads(_blas.threads_for(rows * max(sizes, default=0)))
    return _FixedThreads(check_positive_int(setting, "blas_threads"))


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


def _check_parts(model, loss_fn, optimizer, early_stopping):
    if not isinstance(model, Module) or isinstance(model, Loss):
        raise TypeError(f"model must be a pyce.nn.Module (e.g. pyce.nn.mlp(...)), got "
                        f"{model!r}")
    if not model.parameters():
        raise ValueError("the model has no parameters")
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a pyce.optim optimizer (SGD, Adam, or a subclass "
                        f"of pyce.optim.Optimizer), got {optimizer!r}")
    if not isinstance(loss_fn, Loss):
        raise TypeError(f"loss_fn must be a pyce.nn.Loss (e.g. pyce.nn.CrossEntropyLoss()), "
                        f"got {loss_fn!r}")
    if loss_fn.reduction not in ("mean", "sum"):
        raise ValueError(f"fit needs a scalar loss: loss_fn.reduction must be 'mean' or 'sum', "
                         f"got {loss_fn.reduction!r}")
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise TypeError(f"early_stopping must be None or an EarlyStopping, got "
                        f"{early_stopping!r}")


def evaluate(model, loss_fn, x, y, chunk=2048):
    """(loss, accuracy) of `model` on (x, y): the logits are computed in chunks
    of `chunk` rows into one (rows, classes) array and the loss is
    loss_fn.value(logits, y, reduction='mean'), so the reduction rule is the
    loss layer's own; accuracy counts the rows loss_fn.counted(y) keeps (NaN
    when none)."""
    parts = [model.forward(x[s:s + chunk]) for s in range(0, len(x), chunk)]
    logits = parts[0] if len(parts) == 1 else np.concatenate(parts)
    loss = float(loss_fn.value(logits, y, reduction="mean"))
    keep = loss_fn.counted(y)
    counted = int(np.count_nonzero(keep))
    correct = int(np.count_nonzero((logits.argmax(axis=1) == y) & keep))
    return loss, (correct / counted if counted else float("nan"))


def divergence_message(*, step, epoch, batch, n_batches, loss, reduction, batch_size, lr,
                       bad_input):
    """The message of a DivergenceError (the one owner of its text; also used by
    pyce.sklearn): where training diverged (step, epoch, batch of n_batches,
    all 1-based), the loss value, the settings (reduction, batch_size, lr) and
    what to do; bad_input says whether the batch itself held NaN or inf.
    Returns the text."""
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


class _Snapshot:
    """Model, optimizer, Generator and early-stopping state at an epoch end, in
    memory, with the lengths of the History lists at that point."""

    def __init__(self, run):
        self.model = run.model.state_dict()
        self.optim = run.optimizer.state_dict()
        self.rng = run.rng.bit_generator.state
        self.es = run.es.copy()
        self.n_epochs = len(run.history.epochs)
        self.n_steps = len(run.history.step_losses)

    def restore(self, run):
        """Put `run` back to this state (History truncated to it)."""
        run.model.load_state_dict(self.model)
        run.optimizer.load_state_dict(self.optim)
        run.rng.bit_generator.state = self.rng
        run.es = self.es.copy()
        del run.history.epochs[self.n_epochs:]
        del run.history.step_losses[self.n_steps:]
        run.step = self.n_steps


class _Run:
    """One call of fit: its arguments, data, buffers and state."""

    def __init__(self, model, loss_fn, optimizer, *, epochs, batch_size, seed, verbose,
                 early_stopping, checkpoint, on_epoch):
        _check_parts(model, loss_fn, optimizer, early_stopping)
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.epochs = check_positive_int(epochs, "epochs")
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.early_stopping, self.checkpoint, self.on_epoch = early_stopping, checkpoint, on_epoch
        self.bar_on = bool(verbose) and getattr(sys.stderr, "isatty", lambda: False)()
        self.rng = np.random.default_rng(seed)
        self.history, self.es = History(), EarlyState()
        self.start = self.step = 0
        self.blas = _FixedThreads(None)

    def set_data(self, x_train, y_train, x_test, y_test):
        """Check and convert the data; allocate the batch buffers."""
        if (x_test is None) != (y_test is None):
            raise ValueError("pass both x_test and y_test, or neither")
        es = self.early_stopping
        if es is not None and es.metric.startswith("test") and x_test is None:
            raise ValueError(f"early_stopping metric {es.metric!r} needs x_test and y_test")
        dtype = self.model.parameters()[0].data.dtype
        self.x_train, self.y_train = _check_xy(x_train, y_train, dtype, "x_train", "y_train")
        self.x_test = self.y_test = None
        if x_test is not None:
            self.x_test, self.y_test = _check_xy(x_test, y_test, dtype, "x_test", "y_test")
        n = len(self.x_train)
        if n == 0:
            raise ValueError("x_train is empty")
        self.n_batches = -(-n // self.batch_size)
        # Batches are gathered into these buffers (np.take(out=)) instead of a
        # fresh fancy-indexed copy per step; the model sees views of them that
        # are valid until the next step.
        rows = min(self.batch_size, n)
        self.x_buf = np.empty((rows,) + self.x_train.shape[1:], self.x_train.dtype)
        self.y_buf = np.empty(rows, self.y_train.dtype)
        self.pred = np.empty(n, np.intp)  # argmax per trained row, in permutation order

    def resume(self, path):
        """Continue from the checkpoint at `path`; True when that run had already ended."""
        self.start, self.history = restore_checkpoint(path, self.model, self.optimizer,
                                                      self.rng, self.batch_size, self.es)
        self.step = len(self.history.step_losses)
        return self.history.stopped_early or self.history.diverged

    def train(self):
        """The epoch loop; returns the History (see fit for interrupts)."""
        snap = _Snapshot(self)
        epoch = self.start
        try:
            for epoch in range(self.start + 1, self.epochs + 1):
                rec = self._train_epoch(epoch)
                stop = self._judge_epoch(rec)
                snap = _Snapshot(self)
                self._after_epoch(epoch)
                if stop:
                    break
        except KeyboardInterrupt:
            raise self._interrupted(snap, epoch) from None
        return self.history

    def _interrupted(self, snap, epoch):
        snap.restore(self)
        done = len(self.history.epochs)
        self.history.interrupted = True
        self.history.message = (
            f"interrupted during epoch {epoch}: the model and optimizer were restored to the "
            f"end of epoch {done}" if done else
            f"interrupted during epoch {epoch}: no epoch finished; the model and optimizer "
            f"were restored to their state at the start")
        return TrainingInterrupted(self.history.message, self.history)

    def _train_epoch(self, epoch):
        """Train one epoch; returns its record (also appended to the History)."""
        t0 = time.perf_counter()
        bar = ProgressBar(self.n_batches, f"epoch {epoch}/{self.epochs}", width=24) \
            if self.bar_on else None
        perm = self.rng.permutation(len(self.x_train))
        loss_sum = 0.0
        try:
            for b in range(self.n_batches):
                loss_sum += self._step(perm, (epoch, b))
                if bar is not None:
                    bar.update(1, f"loss {self.history.step_losses[-1]:.4f}")
        except BaseException:
            if bar is not None:
                bar.close()
            raise
        rec = self._record(epoch, perm, loss_sum)
        rec["seconds"] = time.perf_counter() - t0
        self.history.epochs.append(rec)
        if bar is not None:
            bar.close(format_epoch(rec, self.epochs))
        return rec

    def _step(self, perm, where):
        """One training step on batch where[1] of `perm`; returns its loss as a
        sum over the batch's rows (Loss.batch_sum)."""
        lo = where[1] * self.batch_size
        idx = perm[lo:lo + self.batch_size]
        rows = len(idx)
        xb, yb = self.x_buf[:rows], self.y_buf[:rows]
        # mode='clip': a permutation is always in range, and the default 'raise'
        # would gather into a temporary buffer and copy
        np.take(self.x_train, idx, axis=0, out=xb, mode="clip")
        np.take(self.y_train, idx, out=yb, mode="clip")
        logits = self.model.forward(xb)
        loss = float(self.loss_fn.forward(logits, yb))
        self.step += 1
        if not math.isfinite(loss):
            self._diverged(where, loss, xb)
        self.optimizer.zero_grad()
        self.model.backward(self.loss_fn.backward(), input_grad=False)
        self.optimizer.step()
        self.blas.tick()
        self.history.step_losses.append(loss)
        np.argmax(logits, axis=1, out=self.pred[lo:lo + rows])  # accuracy once per epoch
        return self.loss_fn.batch_sum(loss, rows)

    def _diverged(self, where, loss, xb):
        h = self.history
        h.diverged = True
        h.message = divergence_message(
            step=self.step, epoch=where[0], batch=where[1] + 1, n_batches=self.n_batches,
            loss=loss, reduction=self.loss_fn.reduction, batch_size=self.batch_size,
            lr=self.optimizer.lr, bad_input=not np.isfinite(xb).all())
        raise DivergenceError(h.message, h)

    def _record(self, epoch, perm, loss_sum):
        y_perm = self.y_train[perm]
        keep = self.loss_fn.counted(y_perm)
        correct = int(np.count_nonzero((self.pred == y_perm) & keep))
        counted = int(np.count_nonzero(keep))
        rec = {"epoch": epoch, "train_loss": loss_sum / len(perm),
               "train_accuracy": correct / counted if counted else float("nan"),
               "test_loss": None, "test_accuracy": None, "seconds": 0.0,
               "lr": float(self.optimizer.lr)}
        if self.x_test is not None:
            rec["test_loss"], rec["test_accuracy"] = evaluate(self.model, self.loss_fn,
                                                              self.x_test, self.y_test)
        return rec

    def _judge_epoch(self, rec):
        """Consult early stopping; True to stop after this epoch."""
        if self.early_stopping is None:
            return False
        return self.es.update(self.early_stopping, rec, self.model, self.history)

    def _after_epoch(self, epoch):
        if self.checkpoint is not None:
            save_checkpoint(self.checkpoint, self.model, self.optimizer, self.rng,
                            self.history, epoch, self.batch_size, self.es)
        if self.on_epoch is not None:
            self.on_epoch(self.history)
