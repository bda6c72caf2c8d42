"""The application layer of pyce: what the `pyce` command runs, on top of the loss and the trainer.

- `pyce.app.cli`: the command line (`pyce train`, `pyce compare-reductions`,
  `pyce bench`); it parses, prints and writes, nothing more.
- `pyce.app.experiments`: the experiments the command line runs, as functions
  that return run records (usable from Python).
- `pyce.app.datasets`: the embedded digits, CIFAR-10, MNIST, Fashion-MNIST
  (public path `pyce.datasets`).
- `pyce.app.plots`: curves.png and reductions.png (matplotlib).
- `pyce.app.bench`: the kernel benchmark table (`pyce bench`, bench/report.py).

Progress printing and the epoch line live in `pyce._progress`, shared with the
trainer.
"""


def installed_version():
    """The installed distribution's version (from pyproject.toml), e.g. '0.1.0'.

    Read from the package metadata, so the application layer does not import
    back through pyce/__init__.py; 'unknown' for a copy that was not installed.
    """
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("pyce")
    except PackageNotFoundError:  # pragma: no cover - an uninstalled copy
        return "unknown"
