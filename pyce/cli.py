"""pyce's command line: `python -m pyce {train,compare-reductions,bench}` (or `pyce ...`).

Exit status: 0 success; 1 a download or file error; 2 bad arguments (a
one-line message on stderr, no traceback); 3 the training diverged (NaN or
inf loss; history.json is still written).  `compare-reductions` never exits
3: a diverged run is one of its results.
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from pyce._progress import format_epoch

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_DIVERGED = 0, 1, 2, 3

DEFAULT_LR = {"sgd": 0.05, "adam": 1e-3}


class UsageError(Exception):
    """A bad argument found after parsing (e.g. a data directory that does not exist)."""


class DataError(Exception):
    """A data file that exists but cannot be read (truncated, wrong format, unreadable)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but an error is one line on stderr and exit status 2 (no usage dump)."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


# ---------------------------------------------------------------- argument types

def _checked(convert, ok, what):
    """An argparse type: convert the text, then require ok(value); errors say `what`."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value
    return parse


_positive_int = _checked(int, lambda v: v > 0, "a positive integer")
_positive_float = _checked(float, lambda v: math.isfinite(v) and v > 0, "a positive number")
_momentum = _checked(float, lambda v: 0.0 <= v < 1.0, "a number in [0, 1)")


def _int_list(text, *, allow_empty):
    """'256,128' -> [256, 128]; '' or 'none' -> [] when allow_empty (no hidden layer)."""
    if allow_empty and text.strip().lower() in ("", "none"):
        return []
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(
            f"must be comma-separated positive integers such as 256,128, got {text!r}")
    return values


def _hidden(text):
    return _int_list(text, allow_empty=True)


def _batch_sizes(text):
    return _int_list(text, allow_empty=False)


# ---------------------------------------------------------------- parser

def _add_model_args(p, *, epochs):
    from pyce.datasets import DATASETS
    p.add_argument("--dataset", choices=DATASETS, default="digits",
                   help="data set (default: digits, embedded in the package)")
    p.add_argument("--data-dir", metavar="PATH",
                   help="folder with the data set's standard files (not needed for digits)")
    p.add_argument("--download", action="store_true",
                   help="fetch the data set from its official location (checksums verified) "
                        "into --data-dir or ~/.cache/pyce")
    p.add_argument("--hidden", type=_hidden, default=[256, 128], metavar="256,128",
                   help="hidden layer sizes (default: 256,128; 'none' for a linear model)")
    p.add_argument("--activation", choices=("elu", "relu"), default="elu")
    p.add_argument("--epochs", type=_positive_int, default=epochs,
                   help=f"passes over the training data (default: {epochs})")
    p.add_argument("--batch-size", type=_positive_int, default=64, help="default: 64")
    p.add_argument("--lr", type=_positive_float, default=None,
                   help="learning rate (default: 0.05 for sgd, 0.001 for adam)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    p.add_argument("--momentum", type=_momentum, default=0.9,
                   help="SGD momentum (default: 0.9; not used by adam)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the weights, the batch order and the digits split (default: 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--out", metavar="DIR", type=Path,
                   help="where to write the results (created if needed)")


def build_parser():
    parser = _Parser(prog="pyce", description="pyce: fast softmax cross-entropy for NumPy, "
                     "and a small NumPy MLP trainer.")
    sub = parser.add_subparsers(dest="command", metavar="{train,compare-reductions,bench}",
                                parser_class=_Parser)
    sub.required = True

    train = sub.add_parser(
        "train", help="train an MLP classifier and report its test accuracy",
        description="Train an MLP with softmax cross-entropy; writes DIR/history.json, "
                    "DIR/model.npz and (with matplotlib) DIR/curves.png.")
    _add_model_args(train, epochs=30)
    train.add_argument("--reduction", choices=("mean", "sum"), default="mean",
                       help="how the loss combines a batch (default: mean; sum makes the step "
                            "grow with the batch size)")
    train.set_defaults(out=None, func=_cmd_train)

    cmp = sub.add_parser(
        "compare-reductions", help="train with reduction='mean' and 'sum' and plot both",
        description="Train the same model from the same initial weights with reduction='mean' "
                    "and 'sum' at the same learning rate; print a summary and draw "
                    "DIR/reductions.png.")
    _add_model_args(cmp, epochs=10)
    cmp.add_argument("--batch-sizes", type=_batch_sizes, metavar="16,64,256",
                     help="compare several batch sizes (overrides --batch-size)")
    cmp.set_defaults(func=_cmd_compare)

    bench = sub.add_parser("bench", help="print the kernel benchmark table",
                           description="Time pyce's fused loss+gradient against pyce.reference "
                                       "(and torch, if installed).")
    bench.add_argument("--quick", action="store_true", help="two small shapes, a few seconds")
    bench.set_defaults(func=_cmd_bench)
    return parser


# ---------------------------------------------------------------- shared steps

def _load_data(args):
    from pyce import datasets
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
    return args.lr if args.lr is not None else DEFAULT_LR[args.optimizer]


def _make_optimizer(args, model):
    from pyce import optim
    if args.optimizer == "sgd":
        return optim.SGD(model.parameters(), lr=_learning_rate(args), momentum=args.momentum)
    return optim.Adam(model.parameters(), lr=_learning_rate(args))


def _make_model(args, data):
    from pyce import nn
    sizes = [data.n_features, *args.hidden, data.n_classes]
    return nn.mlp(sizes, args.activation, dtype=np.dtype(args.dtype),
                  rng=np.random.default_rng(args.seed))


def _out_dir(args, default):
    out = Path(args.out if args.out is not None else default)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create the directory ({exc.strerror})") from None
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


def _config(args):
    return {"dataset": args.dataset, "hidden": args.hidden, "activation": args.activation,
            "epochs": args.epochs, "batch_size": args.batch_size, "lr": _learning_rate(args),
            "optimizer": args.optimizer,
            "momentum": args.momentum if args.optimizer == "sgd" else None,
            "seed": args.seed, "dtype": args.dtype}


# ---------------------------------------------------------------- train

def _print_epoch(epochs):
    def on_epoch(history):
        print(format_epoch(history.epochs[-1], epochs), flush=True)
    return on_epoch


def _cmd_train(args):
    from pyce import nn, plots, train

    data = _load_data(args)
    out = _out_dir(args, "pyce-run")
    model = _make_model(args, data)
    loss_fn = nn.CrossEntropyLoss(reduction=args.reduction)
    optimizer = _make_optimizer(args, model)
    print(f"{data.describe()}")
    print(f"model: {' -> '.join(str(s) for s in [data.n_features, *args.hidden, data.n_classes])} "
          f"{args.activation.upper()} MLP, {args.optimizer} lr={_learning_rate(args):g}"
          + (f" momentum={args.momentum:g}" if args.optimizer == "sgd" else "")
          + f", batch {args.batch_size}, reduction='{args.reduction}', {args.dtype}")

    # On a terminal the trainer draws its progress bar and one line per epoch
    # on stderr; elsewhere (a pipe, a log file) a redrawn bar is noise, so
    # the command prints the per-epoch line itself.
    on_terminal = getattr(sys.stderr, "isatty", lambda: False)()
    t0 = time.perf_counter()
    error = None
    try:
        # A diverging run overflows in the layers before the trainer sees a
        # non-finite loss; its message explains that, NumPy's warnings do not.
        with np.errstate(over="ignore", invalid="ignore"):
            history = train.fit(model, loss_fn, optimizer, data.x_train, data.y_train,
                                epochs=args.epochs, batch_size=args.batch_size,
                                x_test=data.x_test, y_test=data.y_test, seed=args.seed,
                                verbose=1 if on_terminal else 0,
                                on_epoch=None if on_terminal else _print_epoch(args.epochs))
    except train.DivergenceError as exc:
        error, history = exc, exc.history
    seconds = time.perf_counter() - t0

    record = history.to_dict()
    record["config"] = dict(_config(args), reduction=args.reduction)
    record["seconds"] = seconds
    (out / "history.json").write_text(json.dumps(_json_safe(record), indent=1) + "\n")
    if error is not None:
        print(f"pyce train: diverged: {error}", file=sys.stderr)
        print(f"wrote {out / 'history.json'} ({len(history.epochs)} complete epochs)",
              file=sys.stderr)
        return EXIT_DIVERGED

    train.save_model(out / "model.npz", model)
    written = [out / "history.json", out / "model.npz"]
    title = (f"{args.dataset}: {args.activation.upper()} MLP, {args.optimizer} "
             f"lr={_learning_rate(args):g}, batch {args.batch_size}, reduction='{args.reduction}'")
    if plots.plot_curves(history.epochs, out / "curves.png", title=title,
                         file=sys.stdout) is not None:
        written.append(out / "curves.png")
    last = history.epochs[-1]
    print(f"test accuracy: {100 * last['test_accuracy']:.2f}% "
          f"(test loss {last['test_loss']:.4f}) after {len(history.epochs)} epochs "
          f"in {seconds:.1f} s")
    print("wrote " + ", ".join(str(p) for p in written))
    return EXIT_OK


# ---------------------------------------------------------------- compare-reductions

def _first_step_size(model, loss_fn, x, y, lr):
    """lr * ||gradient|| of the first batch: the length of the first plain-SGD step.

    Uses the Sequential's backward pass and each Parameter's .grad; returns
    None if the model does not expose them.
    """
    try:
        logits = model.forward(x)
        loss_fn.forward(logits, y)
        model.zero_grad()
        model.backward(loss_fn.backward())
        norm2 = sum(float(np.sum(np.square(p.grad, dtype=np.float64))) for p in model.parameters())
        model.zero_grad()
    except (AttributeError, TypeError):
        return None
    return lr * math.sqrt(norm2)


def _cmd_compare(args):
    from pyce import nn, plots, train

    data = _load_data(args)
    out = _out_dir(args, "pyce-reductions")
    batch_sizes = args.batch_sizes or [args.batch_size]
    lr = _learning_rate(args)
    # One set of initial weights, loaded into every run, so the runs differ
    # only in the reduction and the batch size.
    initial = {k: np.array(v, copy=True) for k, v in _make_model(args, data).state_dict().items()}
    print(data.describe())
    print(f"same initial weights, {args.optimizer} lr={lr:g}"
          + (f" momentum={args.momentum:g}" if args.optimizer == "sgd" else "")
          + f", {args.epochs} epochs, batch sizes {','.join(map(str, batch_sizes))}")

    runs = []
    for batch_size in batch_sizes:
        for reduction in ("mean", "sum"):
            model = _make_model(args, data)
            model.load_state_dict(initial)
            loss_fn = nn.CrossEntropyLoss(reduction=reduction)
            step = _first_step_size(model, loss_fn, data.x_train[:batch_size],
                                    data.y_train[:batch_size], lr)
            optimizer = _make_optimizer(args, model)
            message = None
            t0 = time.perf_counter()
            try:
                with np.errstate(over="ignore", invalid="ignore"):  # see _cmd_train
                    history = train.fit(model, loss_fn, optimizer, data.x_train, data.y_train,
                                        epochs=args.epochs, batch_size=batch_size,
                                        x_test=data.x_test, y_test=data.y_test,
                                        seed=args.seed, verbose=0)
            except train.DivergenceError as exc:
                history, message = exc.history, str(exc)
            per_sample = batch_size if reduction == "sum" else 1
            steps = [float(v) for v in history.step_losses]
            bad = next((i for i, v in enumerate(steps) if not math.isfinite(v)), None)
            if message is not None and bad is None:
                bad = len(steps)  # the trainer stops before recording the bad loss
            finite = [v / per_sample for v in steps if math.isfinite(v)]
            # A run also counts as diverged when its loss stayed finite but
            # ended above where it started (saturated units can keep a
            # blown-up network finite: training made it worse, not better).
            blew_up = bad is None and len(finite) > 1 and finite[-1] > finite[0]
            if bad is not None:
                accuracy = None
            else:
                with np.errstate(over="ignore", invalid="ignore"):
                    logits = model.forward(data.x_test)
                accuracy = float(np.mean(np.argmax(logits, axis=1) == data.y_test))
            runs.append({
                "reduction": reduction, "batch_size": batch_size, "lr": lr,
                "first_step_size": step, "step_losses": steps,
                "first_loss": finite[0] if finite else None,
                "final_loss": finite[-1] if finite else None,
                "test_accuracy": accuracy, "diverged": bad is not None or blew_up,
                "diverged_at_step": bad + 1 if bad is not None else None,
                "loss_grew": blew_up, "message": message,
                "seconds": time.perf_counter() - t0,
            })

    _print_summary(runs)
    (out / "reductions.json").write_text(
        json.dumps(_json_safe({"config": _config(args), "runs": runs}), indent=1) + "\n")
    written = [out / "reductions.json"]
    title = (f"{data.name}: same initial weights, {args.optimizer} lr={lr:g}, "
             f"{args.epochs} epochs")
    if plots.plot_reductions(runs, out / "reductions.png", title=title,
                             file=sys.stdout) is not None:
        written.append(out / "reductions.png")
    print("wrote " + ", ".join(str(p) for p in written))
    return EXIT_OK


def _print_summary(runs):
    header = (f"{'reduction':>9} {'batch':>6} {'first step':>11} {'last loss':>11} "
              f"{'test acc':>9}  diverged")
    print(header)
    print("-" * len(header))
    for r in runs:
        step = f"{r['first_step_size']:11.3g}" if r["first_step_size"] is not None else f"{'-':>11}"
        loss = f"{r['final_loss']:11.4g}" if r["final_loss"] is not None else f"{'-':>11}"
        acc = f"{100 * r['test_accuracy']:8.2f}%" if r["test_accuracy"] is not None else f"{'-':>9}"
        if r["diverged_at_step"] is not None:
            div = f"yes, non-finite loss at step {r['diverged_at_step']}"
        elif r["loss_grew"]:
            div = f"yes, the loss grew from {r['first_loss']:.3g} to {r['final_loss']:.3g}"
        else:
            div = "no"
        print(f"{r['reduction']:>9} {r['batch_size']:>6} {step} {loss} {acc}  {div}")
    print("first step: lr x gradient norm on the first batch, the size of the first update; "
          "last loss: the last finite training loss per sample (a 'sum' loss divided by the "
          "batch size)")


# ---------------------------------------------------------------- bench

def _cmd_bench(args):
    from pyce._bench import report
    report(quick=args.quick)
    return EXIT_OK


# ---------------------------------------------------------------- entry point

def main(argv=None):
    """Run the command line with `argv` (default sys.argv[1:]); return the exit status."""
    from pyce import datasets
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
        return 130
