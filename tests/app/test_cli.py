"""pyce.app.cli: `python -m pyce train / compare-reductions / bench`, run in-process on tiny jobs.

Exit codes: 0 ok, 1 download/file error, 2 bad arguments (one line, no
traceback), 3 diverged.  The data sets are the embedded digits or tiny files
written in the standard formats; nothing needs the internet.
"""
import gzip
import io
import json
import math
import os
import socket
import struct
import subprocess
import sys

import numpy as np
import pytest

from pyce import train
from pyce.app import cli, datasets

TINY = ["--epochs", "2", "--hidden", "16", "--batch-size", "128"]


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_python_m_pyce_help_in_a_subprocess(tmp_path):
    # from a temporary directory, so the installed package is the one imported
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "pyce", "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for sub in ("train", "compare-reductions", "bench"):
        assert sub in done.stdout
    done = subprocess.run([sys.executable, "-m", "pyce", "train", "--lr", "-1"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("argv, needle", [
    (["train", "--dataset", "svhn"], "invalid choice: 'svhn'"),
    (["train", "--dataset", "mnist", "--data-dir", "/nonexistent/pyce-data"],
     "/nonexistent/pyce-data: no such directory"),
    (["train", "--lr", "-0.1"], "must be a positive number, got '-0.1'"),
    (["train", "--lr", "nan"], "must be a positive number, got 'nan'"),
    (["train", "--batch-size", "3.5"], "must be a positive integer, got '3.5'"),
    (["train", "--epochs", "0"], "must be a positive integer, got '0'"),
    (["train", "--hidden", "256,x"], "comma-separated positive integers"),
    (["train", "--momentum", "1.5"], "[0, 1)"),
    (["train", "--reduction", "none"], "invalid choice: 'none'"),
    (["compare-reductions", "--batch-sizes", "16,0"], "comma-separated positive integers"),
    (["train", "--bogus"], "unrecognized arguments: --bogus"),
    ([], "required"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert needle in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_dataset_files_missing_is_a_usage_error(capsys, tmp_path):
    code, _, err = run(capsys, "train", "--dataset", "cifar10", "--data-dir", str(tmp_path))
    assert code == 2 and "cifar-10-python.tar.gz" in err and err.count("\n") == 1


def test_train_writes_history_model_and_curves(capsys, tmp_path):
    out_dir = tmp_path / "run"
    code, out, err = run(capsys, "train", *TINY, "--out", str(out_dir))
    assert code == 0, err
    hist = json.loads((out_dir / "history.json").read_text())
    assert hist["diverged"] is False and len(hist["epochs"]) == 2
    for e in hist["epochs"]:
        for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds"):
            assert math.isfinite(e[key])
        assert 0.0 <= e["test_accuracy"] <= 1.0
    assert hist["config"]["reduction"] == "mean" and hist["config"]["hidden"] == [16]
    # one line per epoch (stderr is not a terminal here) and the final accuracy
    assert out.count("epoch ") == 2
    # the saved model reproduces the reported test accuracy on an independent reload
    model = train.load_model(out_dir / "model.npz")
    data = datasets.load_digits()
    acc = float(np.mean(np.argmax(model.forward(data.x_test), axis=1) == data.y_test))
    assert acc == pytest.approx(hist["epochs"][-1]["test_accuracy"], abs=1e-12)
    assert f"test accuracy: {100 * acc:.2f}%" in out
    if _has_matplotlib():
        assert (out_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def test_train_curves_png_needs_matplotlib(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    code, out, _ = run(capsys, "train", "--epochs", "1", "--hidden", "8", "--out", str(tmp_path))
    assert code == 0 and (tmp_path / "curves.png").is_file()
    assert "curves.png" in out


def test_train_without_matplotlib_says_how_to_get_plots(capsys, tmp_path, monkeypatch):
    for name in ("matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import fail
    code, out, _ = run(capsys, "train", "--epochs", "1", "--hidden", "8", "--out", str(tmp_path))
    assert code == 0
    assert 'pip install ".[plot]"' in out and "pyce[" not in out
    assert (tmp_path / "history.json").is_file() and (tmp_path / "model.npz").is_file()
    assert not (tmp_path / "curves.png").exists()


def test_sum_reduction_diverges_with_exit_3_and_still_writes_history(capsys, tmp_path):
    # the default model and learning rate, one epoch: 'sum' makes the step 64x larger
    code, out, err = run(capsys, "train", "--reduction", "sum", "--epochs", "1",
                         "--out", str(tmp_path))
    assert code == 3
    assert "diverged" in err and "reduction='sum'" in err and "Traceback" not in err
    hist = json.loads((tmp_path / "history.json").read_text())
    assert hist["diverged"] is True and "reduction='sum'" in hist["message"]
    assert not (tmp_path / "model.npz").exists()


def test_float64_and_adam_and_relu(capsys, tmp_path):
    code, out, err = run(capsys, "train", *TINY, "--dtype", "float64", "--optimizer", "adam",
                         "--activation", "relu", "--out", str(tmp_path))
    assert code == 0, err
    model = train.load_model(tmp_path / "model.npz")
    assert model.parameters()[0].data.dtype == np.float64
    hist = json.loads((tmp_path / "history.json").read_text())
    assert hist["config"]["lr"] == 1e-3 and hist["config"]["momentum"] is None
    assert "adam lr=0.001" in out


def test_same_seed_same_run(capsys, tmp_path):
    for d in ("a", "b"):
        assert run(capsys, "train", *TINY, "--seed", "3", "--out", str(tmp_path / d))[0] == 0
    ha, hb = (json.loads((tmp_path / d / "history.json").read_text())["epochs"] for d in "ab")
    assert [e["train_loss"] for e in ha] == [e["train_loss"] for e in hb]


# ---------------------------------------------------------------- compare-reductions

def test_compare_reductions_batch_sizes(capsys, tmp_path):
    # the default model and learning rate, one epoch
    code, out, err = run(capsys, "compare-reductions", "--epochs", "1",
                         "--batch-sizes", "16,128", "--out", str(tmp_path))
    assert code == 0, err  # diverged runs are a result, not a failure
    runs = json.loads((tmp_path / "reductions.json").read_text())["runs"]
    by = {(r["reduction"], r["batch_size"]): r for r in runs}
    assert set(by) == {("mean", 16), ("sum", 16), ("mean", 128), ("sum", 128)}
    # the same lr: with 'sum' the first step grows with the batch, with 'mean' it does not
    grow_sum = by["sum", 128]["first_step_size"] / by["sum", 16]["first_step_size"]
    grow_mean = by["mean", 128]["first_step_size"] / by["mean", 16]["first_step_size"]
    assert grow_sum > 4 and grow_mean < 2
    # and at one batch size, 'sum' steps exactly batch-size times further than 'mean'
    for b in (16, 128):
        assert by["sum", b]["first_step_size"] == pytest.approx(
            b * by["mean", b]["first_step_size"], rel=1e-4)
    assert by["sum", 128]["diverged"] and by["sum", 128]["diverged_at_step"] is not None
    assert by["sum", 128]["test_accuracy"] is None
    for b in (16, 128):
        mean = by["mean", b]
        assert not mean["diverged"] and mean["final_loss"] < mean["first_loss"]
        assert mean["test_accuracy"] > 0.8
    assert "yes, non-finite loss at step" in out
    if _has_matplotlib():
        assert (tmp_path / "reductions.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_reductions_same_initial_weights(capsys, tmp_path, monkeypatch):
    seen = []
    real_fit = train.fit

    def spy(model, *a, **kw):
        seen.append({k: v.copy() for k, v in model.state_dict().items()})
        return real_fit(model, *a, **kw)
    monkeypatch.setattr(train, "fit", spy)
    code, *_ = run(capsys, "compare-reductions", "--epochs", "1", "--hidden", "8",
                   "--out", str(tmp_path))
    assert code == 0 and len(seen) == 2
    for k in seen[0]:
        np.testing.assert_array_equal(seen[0][k], seen[1][k])


# ---------------------------------------------------------------- other data sets

def _idx(arr):
    return bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def test_train_on_mnist_files(capsys, tmp_path):
    rng = np.random.default_rng(0)
    for stem, shape in (("train-images-idx3-ubyte", (40, 28, 28)), ("train-labels-idx1-ubyte", 40),
                        ("t10k-images-idx3-ubyte", (10, 28, 28)), ("t10k-labels-idx1-ubyte", 10)):
        high = 10 if "labels" in stem else 256
        arr = rng.integers(0, high, shape, dtype=np.uint8)
        (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(_idx(arr)))
    code, out, err = run(capsys, "train", "--dataset", "mnist", "--data-dir", str(tmp_path),
                         "--epochs", "1", "--hidden", "8", "--batch-size", "16",
                         "--out", str(tmp_path / "o"))
    assert code == 0, err
    assert "mnist: 40 training and 10 test samples, 784 features" in out
    assert train.load_model(tmp_path / "o" / "model.npz").parameters()[0].data.shape in \
        ((8, 784), (784, 8))


def test_download_offline_exit_1(capsys, tmp_path, monkeypatch):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setitem(datasets.MIRRORS, "fashion-mnist", [f"http://127.0.0.1:{port}/"])
    code, _, err = run(capsys, "train", "--dataset", "fashion-mnist", "--download",
                       "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"))
    assert code == 1 and "offline" in err and "Traceback" not in err


def test_corrupt_data_file_exit_1(capsys, tmp_path):
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (tmp_path / stem).write_bytes(b"garbage!")
    code, _, err = run(capsys, "train", "--dataset", "mnist", "--data-dir", str(tmp_path))
    assert code == 1 and "not an IDX file" in err and err.count("\n") == 1


# ---------------------------------------------------------------- bench

def test_bench_table():
    from pyce.app import bench as _bench
    buf = io.StringIO()
    rows = _bench.report(quick=True, file=buf, dtypes=("float32",), budget=0.05)
    text = buf.getvalue()
    assert [r["shape"] for r in rows] == _bench.QUICK_SHAPES
    assert "machine:" in text and "128 x 10" in text and "4096 x 1000" in text
    for r in rows:
        assert r["pyce"] > 0 and r["copy"] > 0 and r["reference"] > 0


def test_timing_in_turns_runs_every_function():
    from pyce.app import bench as _bench
    calls = {"a": 0, "b": 0}

    def a():
        calls["a"] += 1

    def b():
        calls["b"] += 1
    res = _bench._time_round_robin({"a": a, "b": b}, budget=0.01, blocks=2)
    assert set(res) == {"a", "b"} and all(v >= 0 for v in res.values())
    assert calls["a"] >= 1 + 2 * 3 and calls["b"] >= 1 + 2 * 3  # warm-up, then >= 3 per turn
