"""What a training run records (History) and how it ends early: DivergenceError,
TrainingInterrupted, EarlyStopping."""
import json

from pyce._validate import check_nonneg_scalar, check_positive_int

__all__ = ["History", "DivergenceError", "TrainingInterrupted", "EarlyStopping", "METRICS"]

METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


class History:
    """What fit() recorded.

    epochs: one dict per completed epoch with keys epoch (1-based),
      train_loss, train_accuracy (running averages over the epoch's
      mini-batches as they were trained, not a second pass; train_loss is the
      per-sample mean: a 'sum' batch loss is divided by the batch's rows),
      test_loss, test_accuracy (after the epoch, 'mean' cross-entropy with the
      loss's weight / ignore_index / label_smoothing whatever the training
      reduction; None without a test set), seconds, lr.
    step_losses: the loss of every training step of those epochs (and, after
      a divergence, of the epoch in progress), as the loss function returned
      it (a batch sum with reduction='sum').
    diverged, stopped_early, interrupted: how training ended early, if it
      did; message says why (and, for a divergence, what to do).
    """

    def __init__(self):
        self.epochs = []
        self.step_losses = []
        self.diverged = False
        self.stopped_early = False
        self.interrupted = False
        self.message = None

    def to_dict(self):
        """{'epochs': [dict per epoch], 'diverged', 'interrupted', 'message'} (JSON-ready)."""
        return {"epochs": [dict(e) for e in self.epochs], "diverged": self.diverged,
                "interrupted": self.interrupted, "message": self.message}

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
        h.interrupted = d.get("interrupted", False)
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


class TrainingInterrupted(KeyboardInterrupt):
    """fit() was interrupted (Ctrl-C: KeyboardInterrupt) during a run.

    Before this is raised the model, the optimizer state and the shuffling
    Generator are put back to where they were at the end of the last finished
    epoch (or at the start of the call when none finished). .history holds
    the finished epochs only (interrupted=True, message set). A subclass of
    KeyboardInterrupt, so code that does not know it still stops as on Ctrl-C.
    """

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


class EarlyStopping:
    """Stop when `metric` has not improved by more than min_delta for `patience` epochs.

    metric: 'test_loss' (default), 'test_accuracy', 'train_loss' or
    'train_accuracy'; losses must decrease, accuracies increase.
    patience: a positive int; min_delta: a finite float >= 0.
    restore_best: when stopping, load the weights of the best epoch back
    into the model.
    """

    def __init__(self, metric="test_loss", patience=5, min_delta=0.0, restore_best=True):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
        self.metric = metric
        self.patience = check_positive_int(patience, "patience")
        self.min_delta = check_nonneg_scalar(min_delta, "min_delta")
        self.restore_best = bool(restore_best)
        self.maximize = metric.endswith("accuracy")

    def __repr__(self):
        return (f"EarlyStopping(metric={self.metric!r}, patience={self.patience}, "
                f"min_delta={self.min_delta})")


class EarlyState:
    """The running state of an EarlyStopping during one fit (checkpointed)."""

    def __init__(self):
        self.best = None
        self.best_epoch = None
        self.wait = 0
        self.best_weights = None

    def copy(self):
        """A copy (best_weights shared: it is replaced, never changed in place)."""
        other = EarlyState()
        other.__dict__.update(self.__dict__)
        return other

    def update(self, cfg, rec, model, history):
        """Consult EarlyStopping `cfg` after the epoch record `rec`; returns True
        to stop (then history.stopped_early and message are set and, with
        restore_best, the best weights are loaded into model)."""
        value = rec[cfg.metric]
        if self.best is None:
            better = True
        elif cfg.maximize:
            better = value > self.best + cfg.min_delta
        else:
            better = value < self.best - cfg.min_delta
        if better:
            self.best, self.best_epoch, self.wait = value, rec["epoch"], 0
            if cfg.restore_best:
                self.best_weights = model.state_dict()
            return False
        self.wait += 1
        if self.wait < cfg.patience:
            return False
        history.stopped_early = True
        history.message = (
            f"stopped early after epoch {rec['epoch']}: {cfg.metric} did not improve by more "
            f"than {cfg.min_delta:g} for {cfg.patience} epochs (best {self.best:.6g} at epoch "
            f"{self.best_epoch}" + ("; its weights were restored)" if cfg.restore_best else ")"))
        if cfg.restore_best and self.best_weights is not None:
            model.load_state_dict(self.best_weights)
        return True

