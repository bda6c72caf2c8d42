"""Data sets for the command line: the embedded digits, CIFAR-10, MNIST, Fashion-MNIST.

Every loader returns a `Dataset`: float features of shape (n, n_features) in
the requested dtype, standardized with the mean and standard deviation of
the training part's pixels (fitted on the training part only, so no test
statistic leaks into training), and int64 labels.

- `load_digits()`: the UCI optical handwritten digits (1797 8x8 images, 10
  classes) shipped inside the package (pyce/data/digits.csv.gz, attribution in
  pyce/data/README.md), split by a fixed seeded, stratified permutation into
  about 80% training and 20% test.
- `load_mnist(data_dir, name)`: MNIST or Fashion-MNIST from the standard IDX
  files (gzipped or not), with their official 60000/10000 split.
- `load_cifar10(data_dir)`: CIFAR-10 from cifar-10-python.tar.gz or its
  extracted cifar-10-batches-py folder, with its official 50000/10000 split.
- `download(name, data_dir)`: fetch the standard files from `MIRRORS` (tried
  in order) with a progress bar on stderr, verify the published MD5 checksums
  in `FILES` and fail with `DownloadError` when offline.  Both dicts are
  module-level so tests can point them at a local server.
"""
import gzip
import hashlib
import io
import os
import pickle
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from pyce._progress import ProgressBar
from pyce._validate import check_float_dtype

__all__ = ["Dataset", "DatasetNotFoundError", "DownloadError", "DATASETS", "FILES", "MIRRORS",
           "default_data_dir", "download", "load", "load_cifar10", "load_digits", "load_mnist",
           "read_idx", "standardize"]

DATASETS = ("digits", "cifar10", "mnist", "fashion-mnist")

# The official locations, tried in order.  MNIST's home page
# (yann.lecun.com) often refuses downloads now, so the PyTorch project's
# mirror, which serves the identical files, comes first.
MIRRORS = {
    "mnist": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
              "http://yann.lecun.com/exdb/mnist/"],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    "cifar10": ["https://www.cs.toronto.edu/~kriz/"],
}

# file name -> published MD5 (MNIST: as used by torchvision for these files;
# Fashion-MNIST: zalandoresearch/fashion-mnist README; CIFAR-10: the
# checksum published with the archive at cs.toronto.edu/~kriz/cifar.html).
FILES = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    "cifar10": {
        "cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a",
    },
}

DIGITS_TEST_FRACTION = 0.2


class DatasetNotFoundError(FileNotFoundError):
    """The data set's files are not where the caller said they are."""


class DownloadError(OSError):
    """A download failed (offline, server error) or its checksum did not match."""


@dataclass
class Dataset:
    """A train/test split: x_* float (n, n_features), y_* int64 (n,) in [0, n_classes)."""
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def n_features(self):
        """The number of features per sample (columns of x_train)."""
        return self.x_train.shape[1]

    def describe(self):
        """One line: name, training and test sizes, features, classes."""
        return (f"{self.name}: {len(self.y_train)} training and {len(self.y_test)} test samples, "
                f"{self.n_features} features, {self.n_classes} classes")


def standardize(x_train, x_test, dtype=np.float64):
    """(x_train, x_test) shifted and scaled by the training part's pixel mean and std.

    One mean and one standard deviation over all of x_train's values,
    computed in float64 from the training part only.  All the data sets here
    are images whose pixels share one scale; a per-pixel standard deviation
    would blow up border pixels that are almost always blank (on the digits,
    test values up to 300 standard deviations, and about half a point less
    test accuracy on average over seeds).  Returns new arrays of `dtype`; the
    inputs are not modified.
    """
    dt = check_float_dtype(dtype)
    xtr = np.asarray(x_train, dtype=np.float64)
    xte = np.asarray(x_test, dtype=np.float64)
    mean = xtr.mean()
    std = xtr.std()
    if std == 0.0:  # a constant training part: only shift
        std = 1.0
    return ((xtr - mean) / std).astype(dt), ((xte - mean) / std).astype(dt)


# ---------------------------------------------------------------- digits

def _read_digits_csv():
    with resources.files("pyce.data").joinpath("digits.csv.gz").open("rb") as raw:
        with gzip.open(raw, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    return table[:, :-1], table[:, -1]


def load_digits(*, seed=0, test_fraction=DIGITS_TEST_FRACTION, dtype=np.float32):
    """The embedded UCI digits, split by a seeded stratified permutation, standardized.

    Each class is shuffled with numpy.random.default_rng(seed) and
    round(test_fraction * class size) of its samples go to the test part, so
    the split (1438/359 for the default 0.2) is the same on every
    machine for a given seed.

    seed : int, the split and the training order.
    test_fraction : float in (0, 1), the share of each class in the test part.
    dtype : float32 or float64, the features' dtype.
    Returns a Dataset.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    x, y = _read_digits_csv()
    rng = np.random.default_rng(seed)
    test_idx = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        test_idx.append(idx[:int(round(test_fraction * idx.size))])
    is_test = np.zeros(y.size, dtype=bool)
    is_test[np.concatenate(test_idx)] = True
    # Shuffle the training order too, so a caller that does not shuffle still
    # gets mixed classes.
    train = rng.permutation(np.flatnonzero(~is_test))
    test = np.flatnonzero(is_test)
    xtr, xte = standardize(x[train], x[test], dtype)
    return Dataset("digits", xtr, y[train].astype(np.int64), xte, y[test].astype(np.int64), 10)


# ---------------------------------------------------------------- IDX (MNIST)

_IDX_DTYPES = {0x08: np.dtype(np.uint8), 0x09: np.dtype(np.int8), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _open_maybe_gzip(path):
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def read_idx(path):
    """The array stored in an IDX file (gzipped or not), in native byte order.

    Format (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code,
    the number of dimensions, one big-endian uint32 per dimension, then the
    big-endian data.  Raises ValueError naming the file when it is truncated
    or not an IDX file.
    """
    with _open_maybe_gzip(path) as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {data[:4]!r})")
    dt, ndim = _IDX_DTYPES[data[2]], data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != count * dt.itemsize:
        raise ValueError(f"{path}: the header announces shape {shape} ({count * dt.itemsize} "
                         f"bytes) but the file holds {len(data) - header} bytes of data")
    arr = np.frombuffer(data, dtype=dt, count=count, offset=header).reshape(shape)
    return arr.astype(dt.newbyteorder("="))


_IDX_STEMS = {"train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
              "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
              "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
              "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte")}


def _find_idx(folders, key):
    for folder in folders:
        for stem in _IDX_STEMS[key]:
            for name in (stem, stem + ".gz"):
                if (folder / name).is_file():
                    return folder / name
    return None


def _check_data_dir(data_dir):
    if data_dir is None:
        raise DatasetNotFoundError("no data directory given")
    d = Path(data_dir).expanduser()
    if not d.is_dir():
        raise DatasetNotFoundError(f"data directory {str(data_dir)!r} does not exist")
    return d


def load_mnist(data_dir, name="mnist", *, dtype=np.float32):
    """MNIST or Fashion-MNIST (name='fashion-mnist') from the standard IDX files.

    Looks in data_dir and in data_dir/<name> for train-images-idx3-ubyte,
    train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
    t10k-labels-idx1-ubyte, each optionally with .gz (the '.idx3-ubyte'
    spelling of some copies is accepted too).  Images are flattened to 784
    features and standardized with the training part's statistics.
    dtype : float32 or float64, the features' dtype.  Returns a Dataset.
    """
    if name not in ("mnist", "fashion-mnist"):
        raise ValueError(f"name must be 'mnist' or 'fashion-mnist', got {name!r}")
    d = _check_data_dir(data_dir)
    folders = [d, d / name]
    paths = {k: _find_idx(folders, k) for k in _IDX_STEMS}
    missing = [_IDX_STEMS[k][0] for k, p in paths.items() if p is None]
    if missing:
        raise DatasetNotFoundError(
            f"{name}: {', '.join(missing)}[.gz] not found in {d} or {d / name} "
            f"(use --download to fetch them)")
    arrays = {k: read_idx(p) for k, p in paths.items()}
    for part in ("train", "test"):
        xi, yi = arrays[part + "_images"], arrays[part + "_labels"]
        if xi.ndim < 2 or yi.ndim != 1 or xi.shape[0] != yi.shape[0]:
            raise ValueError(f"{name}: {part} images of shape {xi.shape} do not match "
                             f"labels of shape {yi.shape}")
    xtr = arrays["train_images"].reshape(arrays["train_images"].shape[0], -1)
    xte = arrays["test_images"].reshape(arrays["test_images"].shape[0], -1)
    xtr, xte = standardize(xtr, xte, dtype)
    return Dataset(name, xtr, arrays["train_labels"].astype(np.int64), xte,
                   arrays["test_labels"].astype(np.int64), 10)


# ---------------------------------------------------------------- CIFAR-10

class _ArrayUnpickler(pickle.Unpickler):
    """An unpickler that builds only NumPy arrays and plain containers.

    CIFAR-10's batches are pickles; refusing every other global means a
    tampered file cannot run code when it is loaded.
    """
    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        if module == "numpy.core.multiarray":  # NumPy 2 moved it; avoid the deprecation shim
            module = "numpy._core.multiarray"
        return super().find_class(module, name)


def _load_batch(fileobj, label):
    try:
        d = _ArrayUnpickler(fileobj, encoding="bytes").load()
    except Exception as exc:
        raise ValueError(f"{label}: not a CIFAR-10 batch ({exc})") from None
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise ValueError(f"{label}: expected a dict with b'data' and b'labels'")
    x = np.asarray(d[b"data"])
    y = np.asarray(d[b"labels"], dtype=np.int64)
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or x.shape[0] != y.shape[0]:
        raise ValueError(f"{label}: b'data' must be uint8 (N, 3072) matching {y.shape[0]} labels, "
                         f"got {x.dtype} {x.shape}")
    return x, y


_CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _cifar_from_folder(folder):
    parts = []
    for b in _CIFAR_BATCHES:
        with open(folder / b, "rb") as f:
            parts.append(_load_batch(f, folder / b))
    return parts


def _cifar_from_archive(archive):
    """The six batches from cifar-10-python.tar.gz; ValueError naming the file when it is bad."""
    parts = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for b in _CIFAR_BATCHES:
                try:
                    member = tar.extractfile(f"cifar-10-batches-py/{b}")
                except KeyError:
                    member = None
                if member is None:
                    raise ValueError(f"{archive}: cifar-10-batches-py/{b} is missing")
                parts.append(_load_batch(io.BytesIO(member.read()), f"{archive}:{b}"))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        # truncated download, not gzip, not a tar archive
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ValueError(f"{archive}: not a readable cifar-10-python.tar.gz ({reason}); "
                         f"delete it and download it again") from None
    return parts


def load_cifar10(data_dir, *, dtype=np.float32):
    """CIFAR-10 from cifar-10-python.tar.gz or its extracted cifar-10-batches-py folder.

    data_dir may be the folder holding either of them, or the
    cifar-10-batches-py folder itself.  The five data_batch_* files are the
    training part, test_batch the test part; the 3072 uint8 values per image
    are the features, standardized with the training part's statistics.
    dtype : float32 or float64, the features' dtype.  Returns a Dataset.
    Raises DatasetNotFoundError when neither is there, or when a
    cifar-10-batches-py folder lacks some batch files (they are named);
    ValueError naming the file when a file is corrupt.
    """
    d = _check_data_dir(data_dir)
    candidates = [d, d / "cifar-10-batches-py"]
    folder = next((f for f in candidates if all((f / b).is_file() for b in _CIFAR_BATCHES)),
                  None)
    archive = d / "cifar-10-python.tar.gz"
    if folder is not None:
        parts = _cifar_from_folder(folder)
    elif archive.is_file():
        parts = _cifar_from_archive(archive)
    else:
        for f in candidates:
            present = [b for b in _CIFAR_BATCHES if (f / b).is_file()]
            if present or f.name == "cifar-10-batches-py" and f.is_dir():
                missing = [b for b in _CIFAR_BATCHES if b not in present]
                raise DatasetNotFoundError(f"cifar10: {f} is incomplete: {', '.join(missing)} "
                                           f"not found")
        raise DatasetNotFoundError(
            f"cifar10: neither cifar-10-python.tar.gz nor cifar-10-batches-py/ found in {d} "
            f"(use --download to fetch it)")
    xtr = np.concatenate([p[0] for p in parts[:5]])
    ytr = np.concatenate([p[1] for p in parts[:5]])
    xtr, xte = standardize(xtr, parts[5][0], dtype)
    return Dataset("cifar10", xtr, ytr, xte, parts[5][1], 10)


# ---------------------------------------------------------------- download

def default_data_dir():
    """$PYCE_DATA_DIR, else ~/.cache/pyce: where --download puts files without --data-dir."""
    return Path(os.environ.get("PYCE_DATA_DIR") or Path.home() / ".cache" / "pyce").expanduser()


def _md5(path):
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url, dest, *, timeout, progress_file):
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(part, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            bar = ProgressBar(total, dest.name, file=progress_file, unit="B")
            while True:
                block = resp.read(1 << 16)
                if not block:
                    break
                out.write(block)
                bar.update(len(block))
            bar.close()
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return part


def download(name, data_dir=None, *, timeout=30.0, progress_file=None):
    """Fetch data set `name`'s standard files into data_dir/<name>; return that folder.

    Files already present with the published MD5 are kept.  Each file is
    downloaded to a '.part' file, its MD5 compared with `FILES[name]`, and
    only then renamed; a mismatch deletes it and raises DownloadError.  The
    mirrors in `MIRRORS[name]` are tried in order; when none answers,
    DownloadError says so (you may be offline) and how to supply the files.
    timeout : seconds per connection; progress_file : stream for the
    progress bar (default stderr).
    """
    if name not in FILES:
        raise ValueError(f"cannot download {name!r}; downloadable data sets: {sorted(FILES)}")
    folder = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    folder = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    for fname, md5 in FILES[name].items():
        dest = folder / fname
        if dest.is_file() and _md5(dest) == md5:
            continue
        errors, answered = [], False
        for base in MIRRORS[name]:
            url = base + fname
            try:
                part = _fetch(url, dest, timeout=timeout, progress_file=progress_file)
            except urllib.error.HTTPError as exc:  # the server answered, with an error
                errors.append(f"{url}: HTTP {exc.code} {exc.reason}")
                answered = True
                continue
            except (OSError, ValueError) as exc:  # no connection, timeout, bad URL
                errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
                continue
            got = _md5(part)
            if got != md5:
                part.unlink()
                raise DownloadError(f"{url}: checksum mismatch (MD5 {got}, expected {md5}); "
                                    f"the file was deleted")
            os.replace(part, dest)
            break
        else:
            hint = "" if answered else "are you offline? "
            raise DownloadError(f"could not download {fname} ({'; '.join(errors)}); {hint}"
                                f"put the files in a folder and pass --data-dir")
    return folder


def load(name, data_dir=None, *, download_missing=False, dtype=np.float32, seed=0,
         progress_file=None):
    """Load data set `name`, one of DATASETS ('digits', 'cifar10', 'mnist', 'fashion-mnist').

    data_dir : folder with the data set's standard files (None: the digits need
        none; the others look in default_data_dir()/<name>).
    download_missing : bool, download the files first (see download()).
    dtype : float32 or float64, the features' dtype.
    seed : int, the digits' split (the other data sets have an official split).
    progress_file : text stream for the download's progress bar (default stderr).
    Returns a Dataset. Raises DatasetNotFoundError when the files are not
    there, DownloadError when a download fails, ValueError for a corrupt file.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")
    check_float_dtype(dtype)
    if name == "digits":
        return load_digits(seed=seed, dtype=dtype)
    if download_missing:
        data_dir = download(name, data_dir, progress_file=progress_file)
    elif data_dir is None:
        data_dir = default_data_dir() / name
        if not data_dir.is_dir():
            raise DatasetNotFoundError(f"{name} needs --data-dir PATH (a folder with its standard "
                                       f"files) or --download")
    if name == "cifar10":
        return load_cifar10(data_dir, dtype=dtype)
    return load_mnist(data_dir, name, dtype=dtype)
