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
    (["train", "--seed", "-5"], "argument --seed: must be a non-negative integer, got '-5'"),
    (["compare-reductions", "--seed", "x"], "argument --seed: must be a non-negative integer"),
    (["train", "--optimizer", "adam", "--momentum", "0.5"], "--momentum 0.5: adam has no momentum"),
    (["compare-reductions", "--optimizer", "adam", "--momentum", "0"], "adam has no momentum"),
    (["train", "--resume", "/nonexistent/ckpt.npz"], "--resume /nonexistent/ckpt.npz: no such file"),
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


# ---------------------------------------------------------------- issue 12: what a new user hits

def test_version_and_help_show_what_a_user_needs(capsys):
    from importlib.metadata import version
    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"pyce {version('pyce')}"
    for command, default in (("train", "pyce-run"), ("compare-reductions", "pyce-reductions")):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
        assert f"default: {default})" in out


def test_one_epoch_is_singular(capsys, tmp_path):
    code, out, _ = run(capsys, "train", *TINY[2:], "--epochs", "1", "--out", str(tmp_path))
    assert code == 0 and "after 1 epoch in" in out and "1 epochs" not in out


def _never_train(monkeypatch):
    def fit(*a, **kw):
        raise AssertionError("training started although the output cannot be written")
    monkeypatch.setattr(train, "fit", fit)


@pytest.mark.parametrize("command", ["train", "compare-reductions"])
def test_out_that_is_a_file_says_so(capsys, tmp_path, monkeypatch, command):
    _never_train(monkeypatch)
    (tmp_path / "f").write_text("x")
    code, _, err = run(capsys, command, "--out", str(tmp_path / "f"))
    assert code == 2 and err.count("\n") == 1
    assert f"--out {tmp_path / 'f'}: is an existing file, not a directory" in err


@pytest.mark.parametrize("command", ["train", "compare-reductions"])
def test_out_that_cannot_be_written_fails_before_training(capsys, tmp_path, monkeypatch,
                                                          command):
    # We may run as root, for whom chmod 555 does not stop a write: make the
    # probe's file creation fail the way a read-only mount does.
    import tempfile

    def read_only(*a, **kw):
        raise PermissionError(13, "Permission denied")
    _never_train(monkeypatch)
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    code, _, err = run(capsys, command, "--out", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"--out {tmp_path}: cannot write into {tmp_path} (Permission denied)" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not os.path.isdir("/sys/kernel"), reason="no /sys/kernel (not Linux)")
def test_out_on_a_read_only_system_directory(capsys, monkeypatch):
    # sysfs refuses new files even to root: the real case of issue 12
    _never_train(monkeypatch)
    code, _, err = run(capsys, "train", "--out", "/sys/kernel")
    assert code == 2 and "--out /sys/kernel: cannot write into /sys/kernel" in err
    assert err.count("\n") == 1


def _interrupt_after(monkeypatch, epochs_done):
    real = cli._EpochWatcher.__call__

    def call(self, history):
        real(self, history)
        if len(history.epochs) == epochs_done:
            raise KeyboardInterrupt
    monkeypatch.setattr(cli._EpochWatcher, "__call__", call)


def test_ctrl_c_keeps_the_finished_epochs(capsys, tmp_path, monkeypatch):
    _interrupt_after(monkeypatch, 2)
    code, out, err = run(capsys, "train", *TINY[2:], "--epochs", "5", "--out", str(tmp_path))
    assert code == 130
    assert err.strip() == (f"pyce train: interrupted after 2 finished epochs; wrote "
                           f"{tmp_path / 'history.json'}, {tmp_path / 'model.npz'}")
    hist = json.loads((tmp_path / "history.json").read_text())
    assert hist["interrupted"] is True and [e["epoch"] for e in hist["epochs"]] == [1, 2]
    model = train.load_model(tmp_path / "model.npz")
    data = datasets.load_digits()
    acc = float(np.mean(np.argmax(model.forward(data.x_test), axis=1) == data.y_test))
    assert acc == pytest.approx(hist["epochs"][-1]["test_accuracy"], abs=1e-12)


def test_ctrl_c_mid_epoch_saves_the_last_finished_epoch(capsys, tmp_path, monkeypatch):
    # A plain KeyboardInterrupt in the middle of epoch 2 (after a few of its
    # steps changed the weights): the saved model is the one of epoch 1.
    real_fit = train.fit
    seen = {}

    def fit(model, *a, on_epoch, **kw):
        def watch(history):
            on_epoch(history)
            seen["state"] = model.state_dict()
            model.parameters()[0].data[...] = 0.0  # "the next steps" change the weights
            raise KeyboardInterrupt
        return real_fit(model, *a, on_epoch=watch, **kw)
    monkeypatch.setattr(train, "fit", fit)
    code, _, err = run(capsys, "train", *TINY[2:], "--epochs", "3", "--out", str(tmp_path))
    assert code == 130 and "after 1 finished epoch;" in err
    saved = train.load_model(tmp_path / "model.npz").state_dict()
    for k, v in seen["state"].items():
        np.testing.assert_array_equal(saved[k], v)


def test_ctrl_c_uses_the_trainers_history_when_it_has_one(capsys, tmp_path, monkeypatch):
    # The trainer's TrainingInterrupted carries .history (and restores the model itself).
    class TrainingInterrupted(KeyboardInterrupt):
        def __init__(self, history):
            super().__init__()
            self.history = history

    def fit(*a, **kw):
        history = train.History()
        history.epochs.append({"epoch": 1, "train_loss": 0.5, "train_accuracy": 0.8,
                               "test_loss": 0.6, "test_accuracy": 0.75, "seconds": 0.1})
        raise TrainingInterrupted(history)
    monkeypatch.setattr(train, "fit", fit)
    code, _, err = run(capsys, "train", *TINY[2:], "--out", str(tmp_path))
    assert code == 130 and "after 1 finished epoch;" in err
    assert json.loads((tmp_path / "history.json").read_text())["epochs"][0]["train_loss"] == 0.5
    assert (tmp_path / "model.npz").is_file()


def test_ctrl_c_before_the_first_epoch_writes_history_only(capsys, tmp_path, monkeypatch):
    def fit(*a, **kw):
        raise KeyboardInterrupt
    monkeypatch.setattr(train, "fit", fit)
    code, _, err = run(capsys, "train", "--out", str(tmp_path))
    assert code == 130 and "after 0 finished epochs" in err
    assert json.loads((tmp_path / "history.json").read_text())["epochs"] == []
    assert not (tmp_path / "model.npz").exists()


def test_sigint_to_a_real_pyce_train(tmp_path):
    import signal
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # A shell without job control starts background jobs with SIGINT ignored, and Python
    # then installs no KeyboardInterrupt handler: give the child the default disposition,
    # as a terminal would, so the test does not depend on how pytest was started.
    proc = subprocess.Popen([sys.executable, "-m", "pyce", "train", "--epochs", "100000",
                             "--hidden", "16", "--out", str(tmp_path / "o")], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stdout:
            if line.startswith("epoch "):
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err.startswith("pyce train: interrupted after ") and err.count("\n") == 1
    hist = json.loads((tmp_path / "o" / "history.json").read_text())
    assert len(hist["epochs"]) >= 1 and hist["interrupted"] is True
    assert (tmp_path / "o" / "model.npz").is_file()


def test_checkpoint_then_resume_equals_one_run(capsys, tmp_path):
    ckpt = tmp_path / "ckpt.npz"
    assert run(capsys, "train", *TINY[2:], "--epochs", "3", "--out", str(tmp_path / "a"))[0] == 0
    assert run(capsys, "train", *TINY[2:], "--epochs", "2", "--checkpoint", str(ckpt),
               "--out", str(tmp_path / "b"))[0] == 0
    code, out, err = run(capsys, "train", *TINY[2:], "--epochs", "3", "--resume", str(ckpt),
                         "--out", str(tmp_path / "c"))
    assert code == 0, err
    whole, resumed = (json.loads((tmp_path / d / "history.json").read_text())["epochs"]
                      for d in "ac")
    assert [e["train_loss"] for e in resumed] == [e["train_loss"] for e in whole]
    assert out.count("epoch ") == 1  # only epoch 3 was trained


def test_checkpoint_that_is_a_directory_fails_before_training(capsys, tmp_path, monkeypatch):
    _never_train(monkeypatch)
    code, _, err = run(capsys, "train", "--checkpoint", str(tmp_path), "--out", str(tmp_path))
    assert code == 2 and f"--checkpoint {tmp_path}: is a directory" in err


def test_bench_row_without_torch_prints_a_dash():
    from pyce.app import bench
    r = {"pyce": 1e-3, "pyce_1thread": 2e-3, "copy": 1e-3, "pyce_forward": 1e-3, "sum": 1e-3,
         "reference": float("nan"), "torch": float("nan")}
    row = bench._row((128, 10), "float32", r)
    assert "nan" not in row and row.rstrip().endswith("-")
    assert bench._ratio(3e-3, 1e-3, 6, 2) == " 3.00x"


# ---------------------------------------------------------------- CIFAR files a user may have

def test_corrupt_cifar_archive_is_one_line_naming_the_file(capsys, tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    for content in (b"not a gzip file at all", gzip.compress(b"x" * 5000)[:100]):
        archive.write_bytes(content)
        code, _, err = run(capsys, "train", "--dataset", "cifar10", "--data-dir", str(tmp_path))
        assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
        assert f"{archive}: not a readable cifar-10-python.tar.gz" in err


def test_incomplete_cifar_folder_names_the_missing_file(capsys, tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "test_batch"):
        (folder / name).write_bytes(b"")
    code, _, err = run(capsys, "train", "--dataset", "cifar10", "--data-dir", str(tmp_path))
    assert code == 2 and err.count("\n") == 1
    assert f"{folder} is incomplete: data_batch_5 not found" in err
