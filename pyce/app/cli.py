"""pyce's command line: `pyce {train,compare-reductions,bench}` (or `python -m pyce ...`).

The command line parses, prints and writes; the experiments themselves are
library functions (`pyce.app.experiments`, `pyce.train.fit`).

Exit status: 0 success; 1 a download or file error; 2 bad arguments,
including an --out that cannot be written (a one-line message on stderr, no
traceback, checked before any training); 3 the training diverged (NaN or inf
loss; history.json is still written); 130 interrupted (Ctrl-C: `pyce train`
writes what finished first).  `compare-reductions` never exits 3: a diverged
run is one of its results.
"""
import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pyce._progress import format_epoch
from pyce._validate import check_positive_int
from pyce.app import datasets, experiments, installed_version

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

DEFAULT_OUT = {"train": Path("pyce-run"), "compare-reductions": Path("pyce-reductions")}


class UsageError(Exception):
    """A bad argument found after parsing (e.g. a data directory that does not exist)."""


class DataError(Exception):
    """A data file that exists but cannot be read (truncated, wrong format, unreadable)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line on stderr and exit status 2 (no usage dump)."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


# ---------------------------------------------------------------- argument types

def _arg_type(convert, check, what):
    """An argparse type: convert the text, then check(value) (raises TypeError/ValueError)."""
    def parse(text):
        try:
            return check(convert(text))
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    return parse


def _require(ok):
    """A check for _arg_type from a predicate."""
    def check(value):
        if not ok(value):
            raise ValueError(value)
        return value
    return check


_positive_int = _arg_type(int, lambda v: check_positive_int(v, "value"), "a positive integer")
_seed = _arg_type(int, _require(lambda v: v >= 0), "a non-negative integer")
_positive_float = _arg_type(float, _require(lambda v: math.isfinite(v) and v > 0),
                            "a positive number")
_momentum = _arg_type(float, _require(lambda v: 0.0 <= v < 1.0), "a number in [0, 1)")


def _int_list(text, *, allow_empty):
    """'256,128' -> [256, 128]; '' or 'none' -> [] when allow_empty (no hidden layer)."""
    if allow_empty and text.strip().lower() in ("", "none"):
        return []
    try:
        return [check_positive_int(int(part), "size") for part in text.split(",")]
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated positive integers such as 256,128, got {text!r}") from None


def _hidden(text):
    return _int_list(text, allow_empty=True)


def _batch_sizes(text):
    return _int_list(text, allow_empty=False)


# ---------------------------------------------------------------- parser

def _add_data_args(p):
    p.add_argument("--dataset", choices=datasets.DATASETS, default="digits",
                   help="data set (default: digits, embedded in the package)")
    p.add_argument("--data-dir", metavar="PATH",
                   help="folder with the data set's standard files (not needed for digits)")
    p.add_argument("--download", action="store_true",
                   help="fetch the data set from its official location (checksums verified) "
                        "into --data-dir or ~/.cache/pyce")


def _add_model_args(p, *, command, epochs):
    _add_data_args(p)
    p.add_argument("--hidden", type=_hidden, default=[256, 128], metavar="256,128",
                   help="hidden layer sizes (default: 256,128; 'none' for a linear model)")
    p.add_argument("--activation", choices=("elu", "relu"), default="elu",
                   help="default: elu")
    p.add_argument("--epochs", type=_positive_int, default=epochs,
                   help=f"passes over the training data (default: {epochs})")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="default: 64")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default: 0.05 for sgd, 0.001 for adam)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd", help="default: sgd")
    p.add_argument("--momentum", type=_momentum, default=None,
                   help="SGD momentum (default: 0.9; an error with --optimizer adam)")
    p.add_argument("--seed", type=_seed, default=0,
                   help="seeds the weights, the batch order and the digits split (default: 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="default: float32")
    p.add_argument("--out", metavar="DIR", type=Path, default=DEFAULT_OUT[command],
                   help="where to write the results (created if needed; default: %(default)s)")


def build_parser():
    """The argparse parser of the `pyce` command (errors: one line, exit status 2)."""
    parser = _Parser(prog="pyce", description="pyce: fast softmax cross-entropy for NumPy, "
                     "and a small NumPy MLP trainer.")
    parser.add_argument("--version", action="version", version=f"pyce {installed_version()}")
    sub = parser.add_subparsers(dest="command", metavar="{train,compare-reductions,bench}",
                                parser_class=_Parser)
    sub.required = True

    train = sub.add_parser(
        "train", help="train an MLP classifier and report its test accuracy",
        description="Train an MLP with softmax cross-entropy; writes DIR/history.json, "
                    "DIR/model.npz and DIR/curves.png (with matplotlib). Ctrl-C keeps what "
                    "finished: history.json and the model of the last finished epoch.")
    _add_model_args(train, command="train", epochs=30)
    train.add_argument("--reduction", choices=("mean", "sum"), default="mean",
                       help="how the loss combines a batch (default: mean; sum makes the step "
                            "grow with the batch size)")
    train.add_argument("--checkpoint", metavar="PATH", type=Path,
                       help="write a checkpoint (model, optimizer, shuffle state, history) "
                            "to PATH after every epoch")
    train.add_argument("--resume", metavar="PATH", type=Path,
                       help="continue from a checkpoint written with --checkpoint, up to "
                            "--epochs in total (same model and --batch-size)")
    train.set_defaults(func=_cmd_train)

    cmp = sub.add_parser(
        "compare-reductions", help="train with reduction='mean' and 'sum' and plot both",
        description="Train the same model from the same initial weights with reduction='mean' "
                    "and 'sum' at the same learning rate; print a summary and write "
                    "DIR/reductions.json and DIR/reductions.png (with matplotlib).")
    _add_model_args(cmp, command="compare-reductions", epochs=10)
    cmp.add_argument("--batch-sizes", type=_batch_sizes, metavar="16,64,256",
                     help="compare several batch sizes (overrides --batch-size)")
    cmp.set_defaults(func=_cmd_compare)

    bench = sub.add_parser("bench", help="print the kernel benchmark table",
                           description="Time pyce's fused loss+gradient against pyce.reference "
                                       "(and torch, if installed).")
    bench.add_argument("--quick", action="store_true", help="three small shapes, a few seconds")
    bench.set_defaults(func=_cmd_bench)
    return parser


# ---------------------------------------------------------------- shared steps

def _load_data(args):
    if args.data_dir is not None and not args.download and not Path(args.data_dir).is_dir():
        raise UsageError(f"--data-dir {args.data_dir}: no such directory")
    try:
        return datasets.load(args.dataset, args.data_dir, download_missing=args.download,
                             dtype=np.dtype(args.dtype), seed=args.seed)
    except datasets.DatasetNotFoundError as exc:
        raise UsageError(str(exc)) from None
    except datasets.DownloadError:
        raise
    except (OSError, ValueError) as exc:
        raise DataError(str(exc)) from None


def _learning_rate(args):
    return args.lr if args.lr is not None else experiments.DEFAULT_LR[args.optimizer]


def _check_optimizer_args(args):
    """--momentum belongs to SGD: with adam it is an error (experiments.check_optimizer)."""
    try:
        experiments.check_optimizer(args.optimizer, args.momentum)
    except ValueError:
        raise UsageError(f"--momentum {args.momentum:g}: adam has no momentum "
                         f"(it is an SGD option; drop --momentum or use --optimizer sgd)") from None


def _check_writable(directory, flag):
    """Raise UsageError unless a file can be created in `directory` (probed: create, delete)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".pyce-write-test-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"{flag}: cannot write into {directory} "
                         f"({exc.strerror or exc})") from None


def _out_dir(args):
    """args.out, created if needed and probed for writing before any training."""
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is an existing file, not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create the directory ({exc.strerror})") from None
    _check_writable(out, f"--out {out}")
    return out


def _json_safe(obj):
    """obj with NaN/inf floats as strings ("nan", "inf"), which strict JSON cannot hold."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else str(value)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def _write_json(path, obj):
    path.write_text(json.dumps(_json_safe(obj), indent=1) + "\n")
    return path


def _config(args):
    return {"dataset": args.dataset, "hidden": args.hidden, "activation": args.activation,
            "epochs": args.epochs, "batch_size": args.batch_size, "lr": _learning_rate(args),
            "optimizer": args.optimizer,
            "momentum": (experiments.DEFAULT_MOMENTUM if args.momentum is None
                         else args.momentum) if args.optimizer == "sgd" else None,
            "seed": args.seed, "dtype": args.dtype}


def _optimizer_text(args):
    """e.g. 'sgd lr=0.05 momentum=0.9' or 'adam lr=0.001'."""
    config = _config(args)
    text = f"{args.optimizer} lr={config['lr']:g}"
    return text + (f" momentum={config['momentum']:g}" if args.optimizer == "sgd" else "")


def _count(n, word):
    """'1 epoch', '2 epochs'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _wrote(paths):
    return "wrote " + ", ".join(str(p) for p in paths)


# ---------------------------------------------------------------- train

class _EpochWatcher:
    """fit's on_epoch callback: prints the epoch line (off a terminal) and keeps what finished.

    Keeps the History and a copy of the weights after each finished epoch, so
    an interrupt in the middle of an epoch can still save the last finished
    one (a trainer that raises TrainingInterrupted restores it itself).
    """

    def __init__(self, model, epochs, print_lines):
        self.model, self.epochs, self.print_lines = model, epochs, print_lines
        self.history, self.snapshot = None, (0, None)

    def __call__(self, history):
        self.history = history
        # one attribute store, so an interrupt cannot leave a count and weights that disagree
        self.snapshot = (len(history.epochs), self.model.state_dict())
        if self.print_lines:
            print(format_epoch(history.epochs[-1], self.epochs), flush=True)


def _fit(args, model, loss_fn, optimizer, data, watcher):
    """(history, divergence error or None); KeyboardInterrupt propagates."""
    import pyce.train as train
    # On a terminal the trainer draws its progress bar and one line per epoch
    # on stderr; elsewhere (a pipe, a log file) a redrawn bar is noise, so
    # the watcher prints the per-epoch line.
    try:
        # A diverging run overflows in the layers before the trainer sees a
        # non-finite loss; its message explains that, NumPy's warnings do not.
        with np.errstate(over="ignore", invalid="ignore"):
            return train.fit(model, loss_fn, optimizer, data.x_train, data.y_train,
                             epochs=args.epochs, batch_size=args.batch_size,
                             x_test=data.x_test, y_test=data.y_test, seed=args.seed,
                             verbose=0 if watcher.print_lines else 1, on_epoch=watcher,
                             checkpoint=args.checkpoint, resume=args.resume), None
    except train.DivergenceError as exc:
        return exc.history, exc
    except (ValueError, KeyError, OSError) as exc:
        if args.resume is None:
            raise
        raise UsageError(f"--resume {args.resume}: cannot resume from it ({exc})") from None


def _prepare_train(args):
    """Everything that can fail before training: data, model, optimizer, output paths."""
    import pyce.nn as nn
    data = _load_data(args)
    _check_optimizer_args(args)
    model = experiments.make_model(data, args.hidden, args.activation, dtype=args.dtype,
                                   seed=args.seed)
    optimizer = experiments.make_optimizer(args.optimizer, model.parameters(), lr=args.lr,
                                           momentum=args.momentum)
    if args.resume is not None and not args.resume.is_file():
        raise UsageError(f"--resume {args.resume}: no such file")
    out = _out_dir(args)
    if args.checkpoint is not None:
        if args.checkpoint.is_dir():
            raise UsageError(f"--checkpoint {args.checkpoint}: is a directory, not a file")
        _check_writable(args.checkpoint.parent, f"--checkpoint {args.checkpoint}")
    return data, model, nn.CrossEntropyLoss(reduction=args.reduction), optimizer, out


def _train_record(args, history, seconds, **extra):
    record = history.to_dict() if history is not None else {"epochs": []}
    record.update(extra)
    record["config"] = dict(_config(args), reduction=args.reduction)
    record["seconds"] = seconds
    return record


def _interrupted(args, exc, watcher, model, out, seconds):
    """Write what finished when Ctrl-C stopped training; return exit status 130."""
    import pyce.train as train
    history = getattr(exc, "history", None)  # the trainer's TrainingInterrupted
    if history is None and watcher.history is not None:
        # A plain KeyboardInterrupt: the model is mid-epoch, go back to the last finished one.
        history = watcher.history
        finished, state = watcher.snapshot
        del history.epochs[finished:]
        if state is not None:
            model.load_state_dict(state)
    finished = len(history.epochs) if history is not None else 0
    written = [_write_json(out / "history.json",
                           _train_record(args, history, seconds, interrupted=True))]
    if finished:
        train.save_model(out / "model.npz", model)
        written.append(out / "model.npz")
    print(f"pyce train: interrupted after {_count(finished, 'finished epoch')}; "
          + _wrote(written), file=sys.stderr)
    return EXIT_INTERRUPTED


def _cmd_train(args):
    import pyce.train as train
    from pyce.app import plots
    data, model, loss_fn, optimizer, out = _prepare_train(args)
    print(data.describe())
    sizes = [data.n_features, *args.hidden, data.n_classes]
    print(f"model: {' -> '.join(map(str, sizes))} {args.activation.upper()} MLP, "
          f"{_optimizer_text(args)}, batch {args.batch_size}, reduction='{args.reduction}', "
          f"{args.dtype}")
    watcher = _EpochWatcher(model, args.epochs,
                            print_lines=not getattr(sys.stderr, "isatty", lambda: False)())
    t0 = time.perf_counter()
    try:
        history, error = _fit(args, model, loss_fn, optimizer, data, watcher)
    except KeyboardInterrupt as exc:
        return _interrupted(args, exc, watcher, model, out, time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    written = [_write_json(out / "history.json", _train_record(args, history, seconds))]
    if error is not None:
        print(f"pyce train: diverged: {error}", file=sys.stderr)
        print(f"wrote {written[0]} ({_count(len(history.epochs), 'complete epoch')})",
              file=sys.stderr)
        return EXIT_DIVERGED
    train.save_model(out / "model.npz", model)
    written.append(out / "model.npz")
    title = (f"{args.dataset}: {args.activation.upper()} MLP, {_optimizer_text(args)}, "
             f"batch {args.batch_size}, reduction='{args.reduction}'")
    if plots.plot_curves(history.epochs, out / "curves.png", title=title,
                         file=sys.stdout) is not None:
        written.append(out / "curves.png")
    last = history.epochs[-1]
    print(f"test accuracy: {100 * last['test_accuracy']:.2f}% (test loss "
          f"{last['test_loss']:.4f}) after {_count(len(history.epochs), 'epoch')} "
          f"in {seconds:.1f} s")
    print(_wrote(written))
    return EXIT_OK


# ---------------------------------------------------------------- compare-reductions

def _cmd_compare(args):
    from pyce.app import plots
    data = _load_data(args)
    _check_optimizer_args(args)
    out = _out_dir(args)
    batch_sizes = args.batch_sizes or [args.batch_size]
    print(data.describe())
    print(f"same initial weights, {_optimizer_text(args)}, {_count(args.epochs, 'epoch')}, "
          f"batch sizes {','.join(map(str, batch_sizes))}")
    runs = experiments.compare_reductions(
        data, hidden=args.hidden, activation=args.activation, batch_sizes=batch_sizes,
        optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, epochs=args.epochs,
        seed=args.seed, dtype=args.dtype)
    _print_summary(runs)
    written = [_write_json(out / "reductions.json", {"config": _config(args), "runs": runs})]
    title = (f"{data.name}: same initial weights, {_optimizer_text(args)}, "
             f"{_count(args.epochs, 'epoch')}")
    if plots.plot_reductions(runs, out / "reductions.png", title=title,
                             file=sys.stdout) is not None:
        written.append(out / "reductions.png")
    print(_wrote(written))
    return EXIT_OK


def _summary_row(r):
    """One line of the compare-reductions table for run record r."""
    step = f"{r['first_step_size']:11.3g}"
    loss = f"{r['final_loss']:11.4g}" if r["final_loss"] is not None else f"{'-':>11}"
    acc = f"{100 * r['test_accuracy']:8.2f}%" if r["test_accuracy"] is not None else f"{'-':>9}"
    if r["diverged_at_step"] is not None:
        div = f"yes, non-finite loss at step {r['diverged_at_step']}"
    elif r["loss_grew"]:
        div = f"yes, the loss grew from {r['first_loss']:.3g} to {r['final_loss']:.3g}"
    else:
        div = "no"
    return f"{r['reduction']:>9} {r['batch_size']:>6} {step} {loss} {acc}  {div}"


def _print_summary(runs):
    header = (f"{'reduction':>9} {'batch':>6} {'first step':>11} {'last loss':>11} "
              f"{'test acc':>9}  diverged")
    print(header)
    print("-" * len(header))
    for r in runs:
        print(_summary_row(r))
    print("first step: lr x gradient norm on the first batch, the size of the first update; "
          "last loss: the last finite training loss per sample (a 'sum' loss divided by the "
          "batch size)")


# ---------------------------------------------------------------- bench

def _cmd_bench(args):
    from pyce.app.bench import report
    report(quick=args.quick)
    return EXIT_OK


# ---------------------------------------------------------------- entry point

def main(argv=None):
    """Run the command line with `argv` (default sys.argv[1:]); return the exit status."""
    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except UsageError as exc:
        message = str(exc)
        if not message.startswith("pyce"):
            message = f"pyce {getattr(args, 'command', '')}: error: {message}".replace("  ", " ")
        print(message, file=sys.stderr)
        return EXIT_USAGE
    except datasets.DownloadError as exc:
        print(f"pyce: download failed: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except DataError as exc:
        print(f"pyce: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("pyce: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
