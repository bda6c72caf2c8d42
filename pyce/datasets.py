"""Public import path of the data sets: `pyce.datasets.load_digits()` and friends.

The code lives in `pyce.app.datasets` (the application layer); this module
re-exports its public names so that `import pyce.datasets` keeps working.
"""
from pyce.app.datasets import (DATASETS, FILES, MIRRORS, Dataset,  # noqa: F401
                               DatasetNotFoundError, DownloadError, default_data_dir, download,
                               load, load_cifar10, load_digits, load_mnist, read_idx, standardize)
from pyce.app.datasets import __all__  # noqa: F401
