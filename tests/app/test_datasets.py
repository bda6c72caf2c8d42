"""pyce.app.datasets (public path pyce.datasets): the embedded digits, the IDX and CIFAR-10 readers, and the download path.

Every file here is built in the standard format by the test itself (struct /
gzip / pickle / tarfile), and the download is served by http.server on
127.0.0.1: no test needs the internet.
"""
import gzip
import hashlib
import http.server
import io
import pickle
import socket
import struct
import tarfile
import threading

import numpy as np
import pytest

from pyce.app import datasets


# ---------------------------------------------------------------- digits

def test_digits_shapes_split_and_classes():
    ds = datasets.load_digits()
    assert ds.x_train.shape[1] == 64 and ds.x_test.shape[1] == 64
    assert len(ds.y_train) + len(ds.y_test) == 1797
    assert 0.18 < len(ds.y_test) / 1797 < 0.22
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    # stratified: every class is in the test part, in proportion
    counts = np.bincount(ds.y_test, minlength=10)
    assert counts.min() >= 30 and counts.max() <= 40


def test_digits_split_is_fixed_by_the_seed_and_disjoint():
    a, b, c = datasets.load_digits(seed=0), datasets.load_digits(seed=0), datasets.load_digits(seed=1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_train, c.y_train)
    # the split is a partition of the rows of the raw file
    x_raw, y_raw = datasets._read_digits_csv()
    assert x_raw.shape == (1797, 64) and x_raw.min() == 0 and x_raw.max() == 16
    assert np.array_equal(np.bincount(y_raw), np.bincount(a.y_train) + np.bincount(a.y_test))


def test_digits_standardization_uses_training_statistics_only():
    ds = datasets.load_digits(dtype=np.float64)
    # The pixels are the integers 0..16, so x = (raw - m) / s takes 17
    # evenly spaced levels: recover s from the spacing and m from level 0.
    levels = np.unique(ds.x_train)
    assert levels.size == 17
    s = 1.0 / np.diff(levels).mean()
    m = -levels[0] * s
    raw_train = ds.x_train * s + m
    raw_test = ds.x_test * s + m
    np.testing.assert_allclose(raw_train, np.round(raw_train), atol=1e-9)
    np.testing.assert_allclose(raw_test, np.round(raw_test), atol=1e-9)
    raw_train, raw_test = np.round(raw_train), np.round(raw_test)
    # the recovered rows are exactly the file's rows, split in two
    x_raw, _ = datasets._read_digits_csv()
    key = lambda a: sorted(map(tuple, a.astype(int)))  # noqa: E731
    assert key(np.vstack([raw_train, raw_test])) == key(x_raw)
    # m and s are the training part's statistics, not those of all the rows
    np.testing.assert_allclose([m, s], [raw_train.mean(), raw_train.std()], rtol=1e-9)
    assert abs(x_raw.mean() - m) > 1e-4


def test_standardize_by_hand_and_no_mutation():
    xtr = np.array([[1.0, 5.0], [3.0, 7.0]])   # mean 4, std sqrt(5)
    xte = np.array([[4.0, 9.0]])
    before = xtr.copy()
    a, b = datasets.standardize(xtr, xte)
    s5 = np.sqrt(5.0)
    np.testing.assert_allclose(a, [[-3 / s5, 1 / s5], [-1 / s5, 3 / s5]], rtol=1e-15)
    np.testing.assert_allclose(b, [[0.0, 5 / s5]], rtol=1e-15)
    np.testing.assert_array_equal(xtr, before)
    a, b = datasets.standardize(np.full((2, 2), 3.0), xte)  # constant: shift only
    np.testing.assert_array_equal(a, 0.0)
    np.testing.assert_array_equal(b, [[1.0, 6.0]])


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1])
def test_digits_bad_test_fraction(bad):
    with pytest.raises(ValueError, match="test_fraction"):
        datasets.load_digits(test_fraction=bad)


def test_bad_dtype_is_named():
    with pytest.raises(TypeError, match="float32 or float64.*int32"):
        datasets.load("digits", dtype=np.int32)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown data set 'svhn'"):
        datasets.load("svhn")


# ---------------------------------------------------------------- IDX / MNIST

def idx_bytes(arr):
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int16): 0x0B, np.dtype(np.float32): 0x0D}
    header = bytes([0, 0, codes[arr.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_mnist(folder, rng, n_train=12, n_test=5, gz=True, dotted=False):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train).astype(np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for stem, arr in arrays.items():
        if dotted:
            stem = stem.replace("-idx", ".idx")
        data = idx_bytes(arr)
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return arrays


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, dtype, gz):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype) if dtype != np.uint8 \
        else np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    data = idx_bytes(arr)
    p = tmp_path / "a.idx"
    p.write_bytes(gzip.compress(data) if gz else data)
    out = datasets.read_idx(p)
    assert out.dtype.isnative and out.dtype == arr.dtype
    np.testing.assert_array_equal(out, arr)


def test_read_idx_rejects_bad_files(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        datasets.read_idx(p)
    p.write_bytes(idx_bytes(np.zeros((3, 2), np.uint8))[:-1])
    with pytest.raises(ValueError, match=r"shape \(3, 2\)"):
        datasets.read_idx(p)


@pytest.mark.parametrize("gz, dotted, sub", [(True, False, False), (False, False, True),
                                              (False, True, False)])
def test_load_mnist_from_idx_files(tmp_path, gz, dotted, sub):
    rng = np.random.default_rng(0)
    arrays = write_mnist(tmp_path / "fashion-mnist" if sub else tmp_path, rng, gz=gz, dotted=dotted)
    ds = datasets.load("fashion-mnist", tmp_path, dtype=np.float64)
    assert ds.x_train.shape == (12, 784) and ds.x_test.shape == (5, 784)
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])
    # features are the pixels in row-major order, standardized with training statistics
    raw_tr = arrays["train-images-idx3-ubyte"].reshape(12, -1).astype(np.float64)
    raw_te = arrays["t10k-images-idx3-ubyte"].reshape(5, -1).astype(np.float64)
    mu, sd = raw_tr.mean(), raw_tr.std()  # one mean and std over all training pixels
    np.testing.assert_allclose(ds.x_test, (raw_te - mu) / sd, rtol=1e-12)


def test_load_mnist_missing_files_and_dir(tmp_path):
    with pytest.raises(datasets.DatasetNotFoundError, match="t10k-labels-idx1-ubyte"):
        rng = np.random.default_rng(0)
        write_mnist(tmp_path, rng)
        (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
        datasets.load("mnist", tmp_path)
    with pytest.raises(datasets.DatasetNotFoundError, match="does not exist"):
        datasets.load("mnist", tmp_path / "nowhere")


def test_load_mnist_mismatched_counts(tmp_path):
    rng = np.random.default_rng(0)
    write_mnist(tmp_path, rng)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress(idx_bytes(np.zeros(4, np.uint8))))
    with pytest.raises(ValueError, match="do not match"):
        datasets.load("mnist", tmp_path)


# ---------------------------------------------------------------- CIFAR-10

def cifar_batches(rng, n=4):
    out = {}
    for i, name in enumerate(datasets._CIFAR_BATCHES):
        out[name] = {b"batch_label": name.encode(),
                     b"labels": [int(v) for v in rng.integers(0, 10, n)],
                     b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                     b"filenames": [b"x.png"] * n}
    return out


def write_cifar_folder(folder, batches):
    folder.mkdir(parents=True, exist_ok=True)
    for name, d in batches.items():
        (folder / name).write_bytes(pickle.dumps(d, protocol=2))


def cifar_tar_bytes(batches):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, d in batches.items():
            data = pickle.dumps(d, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def check_cifar(ds, batches):
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    np.testing.assert_array_equal(ds.y_train, sum((b[b"labels"] for b in train), []))
    np.testing.assert_array_equal(ds.y_test, batches["test_batch"][b"labels"])
    raw = np.concatenate([b[b"data"] for b in train]).astype(np.float64)
    np.testing.assert_allclose(ds.x_train, (raw - raw.mean()) / raw.std(), rtol=1e-12)
    assert ds.x_train.shape == (20, 3072) and ds.x_test.shape == (4, 3072)


@pytest.mark.parametrize("layout", ["parent", "batches-folder", "tar"])
def test_load_cifar10(tmp_path, layout):
    batches = cifar_batches(np.random.default_rng(1))
    if layout == "tar":
        (tmp_path / "cifar-10-python.tar.gz").write_bytes(cifar_tar_bytes(batches))
        where = tmp_path
    else:
        write_cifar_folder(tmp_path / "cifar-10-batches-py", batches)
        where = tmp_path if layout == "parent" else tmp_path / "cifar-10-batches-py"
    check_cifar(datasets.load("cifar10", where, dtype=np.float64), batches)


def test_cifar_refuses_pickles_that_run_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    batches = cifar_batches(np.random.default_rng(1))
    batches["test_batch"][b"data"] = Evil()
    write_cifar_folder(tmp_path, batches)
    with pytest.raises(ValueError, match="refusing to load .*print"):
        datasets.load("cifar10", tmp_path)


def test_cifar_missing(tmp_path):
    with pytest.raises(datasets.DatasetNotFoundError, match="cifar-10-python.tar.gz"):
        datasets.load("cifar10", tmp_path)


def test_no_data_dir_and_no_download(tmp_path, monkeypatch):
    monkeypatch.setenv("PYCE_DATA_DIR", str(tmp_path))
    with pytest.raises(datasets.DatasetNotFoundError, match="--data-dir"):
        datasets.load("mnist")


# ---------------------------------------------------------------- download

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_dir(tmp_path):
    """A folder served over http://127.0.0.1:<port>/ for the duration of a test."""
    root = tmp_path / "served"
    root.mkdir()

    def handler(*a, **kw):
        return _Quiet(*a, directory=str(root), **kw)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _serve_mnist(root, monkeypatch, url, name="mnist"):
    write_mnist(root, np.random.default_rng(3))
    files = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.glob("*.gz"))}
    monkeypatch.setitem(datasets.FILES, name, files)
    monkeypatch.setitem(datasets.MIRRORS, name, [url])
    return files


def _closed_port_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connection refused, like being offline
    return f"http://127.0.0.1:{port}/"


def test_download_then_load(http_dir, tmp_path, monkeypatch):
    root, url = http_dir
    files = _serve_mnist(root, monkeypatch, url)
    progress = io.StringIO()
    ds = datasets.load("mnist", tmp_path / "data", download_missing=True, progress_file=progress)
    assert ds.x_train.shape == (12, 784)
    for fname, md5 in files.items():
        got = tmp_path / "data" / "mnist" / fname
        assert hashlib.md5(got.read_bytes()).hexdigest() == md5
    assert "100%" in progress.getvalue() and "train-images-idx3-ubyte.gz" in progress.getvalue()
    assert not list((tmp_path / "data" / "mnist").glob("*.part"))


def test_download_falls_back_to_the_next_mirror_and_keeps_good_files(http_dir, tmp_path,
                                                                      monkeypatch):
    root, url = http_dir
    _serve_mnist(root, monkeypatch, url)
    monkeypatch.setitem(datasets.MIRRORS, "mnist", [_closed_port_url(), url])
    folder = datasets.download("mnist", tmp_path, progress_file=io.StringIO())
    assert len(list(folder.glob("*.gz"))) == 4
    # a second call finds the verified files and does not need any server
    monkeypatch.setitem(datasets.MIRRORS, "mnist", [_closed_port_url()])
    assert datasets.download("mnist", tmp_path, progress_file=io.StringIO()) == folder


def test_download_checksum_mismatch_deletes_the_file(http_dir, tmp_path, monkeypatch):
    root, url = http_dir
    files = _serve_mnist(root, monkeypatch, url)
    first = next(iter(files))
    monkeypatch.setitem(datasets.FILES, "mnist", {first: "0" * 32})
    with pytest.raises(datasets.DownloadError, match="checksum mismatch"):
        datasets.download("mnist", tmp_path, progress_file=io.StringIO())
    assert not list((tmp_path / "mnist").iterdir())


def test_download_offline_says_so(tmp_path, monkeypatch):
    monkeypatch.setitem(datasets.MIRRORS, "cifar10", [_closed_port_url()])
    with pytest.raises(datasets.DownloadError, match="are you offline"):
        datasets.download("cifar10", tmp_path, timeout=5, progress_file=io.StringIO())


def test_download_missing_file_on_server(http_dir, tmp_path, monkeypatch):
    root, url = http_dir
    monkeypatch.setitem(datasets.MIRRORS, "cifar10", [url])
    with pytest.raises(datasets.DownloadError, match="HTTP 404"):
        datasets.download("cifar10", tmp_path, progress_file=io.StringIO())


def test_published_checksums_look_like_md5():
    for name, files in datasets.FILES.items():
        assert name in datasets.MIRRORS
        for md5 in files.values():
            assert len(md5) == 32 and int(md5, 16) >= 0
