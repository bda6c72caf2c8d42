"""Training pictures for the command line: curves.png and reductions.png.

matplotlib is an optional extra (`pip install ".[plot]"` from a pyce checkout).  It is imported
only when a picture is drawn, and only its object-oriented API is used (a
Figure with an Agg canvas, never pyplot), so drawing changes no global
matplotlib state and needs no display.  Without matplotlib the functions
print PLOT_HINT and return None; everything else the command line writes is
unaffected.
"""
import math
import sys

__all__ = ["PLOT_HINT", "have_matplotlib", "plot_curves", "plot_reductions",
           "divergence_marker"]

PLOT_HINT = ('no plots: matplotlib is not installed; get it with pip install matplotlib '
             '(or pip install ".[plot]" from the pyce checkout)')


def _figure_class():
    """matplotlib's Figure class, or None when matplotlib cannot be imported."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure


def have_matplotlib():
    """True when matplotlib can be imported (the plots can be drawn)."""
    return _figure_class() is not None


def _no_matplotlib(file):
    print(PLOT_HINT, file=file if file is not None else sys.stderr)
    return None


def _finite_prefix(values):
    """(finite values before the first NaN/inf, index of that first non-finite value or None)."""
    for i, v in enumerate(values):
        if not math.isfinite(v):
            return list(values[:i]), i
    return list(values), None


def plot_curves(epochs, path, *, title=None, file=None):
    """Draw loss and accuracy per epoch (train and test) into `path`; return path or None.

    `epochs` is a list of dicts with the keys of history.json's "epochs"
    (train_loss, train_accuracy and, when a test part exists, test_loss,
    test_accuracy).  Non-finite losses end the curve.  path : where the PNG
    goes; title : str or None, drawn above both panels; file : where the hint
    goes without matplotlib (default stderr).  Returns path, or None (after
    printing PLOT_HINT to `file`) without matplotlib.
    """
    Figure = _figure_class()
    if Figure is None:
        return _no_matplotlib(file)
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax_loss, ax_acc = fig.subplots(1, 2)
    x = [e.get("epoch", i + 1) for i, e in enumerate(epochs)]
    for part, style in (("train", "-"), ("test", "--")):
        if not epochs or epochs[0].get(f"{part}_loss") is None:
            continue
        losses, bad = _finite_prefix([float(e[f"{part}_loss"]) for e in epochs])
        ax_loss.plot(x[:len(losses)], losses, style, marker=".", label=part)
        if bad is not None and losses:
            ax_loss.plot([x[len(losses) - 1]], [losses[-1]], "x", color="red", markersize=10,
                         label=f"{part}: diverged at epoch {x[bad]}")
        acc = [100.0 * float(e[f"{part}_accuracy"]) for e in epochs]
        ax_acc.plot(x, acc, style, marker=".", label=part)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return path


def _per_sample(run):
    """A run's step losses per sample: a 'sum' loss divided by the batch size."""
    scale = run["batch_size"] if run["reduction"] == "sum" else 1
    return [float(v) / scale for v in run["step_losses"]]


def divergence_marker(run):
    """(step, loss) where plot_reductions draws a run's red x, or None if it did not diverge.

    run : a record of pyce.app.experiments.compare_reductions (reduction,
        batch_size, step_losses, diverged_at_step).
    The step is the run's diverged_at_step (the 1-based step whose loss was
    not finite; when absent, the first non-finite value of step_losses); the
    height is the last finite loss per sample before it, since the bad loss
    itself cannot be drawn (1.0 when there is none).
    """
    finite, bad = _finite_prefix(_per_sample(run))
    step = run.get("diverged_at_step") or (bad + 1 if bad is not None else None)
    if step is None:
        return None
    return step, (finite[-1] if finite else 1.0)


def plot_reductions(runs, path, *, title=None, file=None):
    """Draw the training loss per step of each run, one panel per reduction; return path or None.

    `runs` is a list of dicts with keys reduction ('sum' or 'mean'),
    batch_size, step_losses (the loss the optimizer saw at each step) and
    optionally label and diverged_at_step (1-based, the step whose loss was
    not finite), as compare_reductions returns them.  'sum' losses are divided
    by the batch size so both panels show the loss per sample on the same log
    scale.  A run whose loss became NaN or inf is drawn up to its last finite
    step and marked with a red x at the step that diverged (see
    divergence_marker).  path : where the PNG goes; title : str or None;
    file : where the hint goes without matplotlib (default stderr).
    Returns path, or None (after printing PLOT_HINT) without matplotlib.
    """
    Figure = _figure_class()
    if Figure is None:
        return _no_matplotlib(file)
    reductions = [r for r in ("sum", "mean") if any(run["reduction"] == r for run in runs)]
    fig = Figure(figsize=(5.2 * len(reductions), 4.0), layout="constrained")
    # Separate y axes: on a shared one a diverged 'sum' run (1e30 and up)
    # would flatten the 'mean' curve into a line.
    axes = fig.subplots(1, len(reductions), squeeze=False)[0]
    batch_sizes = sorted({run["batch_size"] for run in runs})
    colors = {b: f"C{i}" for i, b in enumerate(batch_sizes)}
    for ax, reduction in zip(axes, reductions):
        for run in (r for r in runs if r["reduction"] == reduction):
            finite, _ = _finite_prefix(_per_sample(run))
            label = run.get("label") or f"batch {run['batch_size']}"
            color = colors[run["batch_size"]]
            ax.plot(range(1, len(finite) + 1), finite, color=color, linewidth=1.0, label=label)
            marker = divergence_marker(run)
            if marker is not None:
                if finite:  # from the last finite loss to the step that was not finite
                    ax.plot([len(finite), marker[0]], [finite[-1], marker[1]], ":", color=color)
                ax.plot([marker[0]], [marker[1]], "x", color="red", markersize=12,
                        markeredgewidth=2.5)
                ax.annotate(f"diverged at step {marker[0]}", marker,
                            textcoords="offset points", xytext=(-8, -16), color="red",
                            fontsize=9, ha="right")
        ax.set(yscale="log", xlabel="training step",
               title=f"reduction='{reduction}'")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower left")
        ax.set_ylabel("training loss per sample")
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return path
