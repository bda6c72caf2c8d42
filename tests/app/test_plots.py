"""pyce.app.plots: the pictures are written when matplotlib is there, a hint is printed when not."""
import io
import math
import sys

import numpy as np
import pytest

from pyce.app import plots

EPOCHS = [{"epoch": i + 1, "train_loss": 1.0 / (i + 1), "train_accuracy": 0.5 + 0.1 * i,
           "test_loss": 1.2 / (i + 1), "test_accuracy": 0.45 + 0.1 * i, "seconds": 0.1}
          for i in range(4)]


def _runs(diverge):
    smooth = [2.3 * math.exp(-0.05 * k) for k in range(60)]
    broken = [2.3 * 64 * math.exp(0.3 * k) for k in range(12)] + ([math.nan] if diverge else [])
    return [{"reduction": "mean", "batch_size": 64, "step_losses": smooth},
            {"reduction": "sum", "batch_size": 64, "step_losses": broken}]


def _red_pixels(path):
    image = pytest.importorskip("matplotlib.image").imread(path)
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    return int(np.sum((r > 0.9) & (g < 0.2) & (b < 0.2)))


def test_finite_prefix():
    assert plots._finite_prefix([1.0, 2.0, math.inf, 3.0]) == ([1.0, 2.0], 2)
    assert plots._finite_prefix([math.nan]) == ([], 0)
    assert plots._finite_prefix([1.0, 2.0]) == ([1.0, 2.0], None)


def test_curves_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = plots.plot_curves(EPOCHS, tmp_path / "curves.png", title="t")
    assert path == tmp_path / "curves.png"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    image = pytest.importorskip("matplotlib.image").imread(path)
    assert image.shape[:2] == (round(3.6 * 110), 9 * 110)  # figsize x dpi: both panels drawn


def test_reductions_png_marks_divergence_in_red(tmp_path):
    pytest.importorskip("matplotlib")
    with_x = plots.plot_reductions(_runs(diverge=True), tmp_path / "a.png")
    without = plots.plot_reductions(_runs(diverge=False), tmp_path / "b.png")
    assert with_x.read_bytes()[:4] == b"\x89PNG"
    # the red x and its "diverged at step 13" note appear only for a broken run
    assert _red_pixels(without) == 0
    assert _red_pixels(with_x) > 50
    # the trainer's step_losses stop before the bad step: diverged_at_step marks it instead
    runs = _runs(diverge=False)
    runs[1]["diverged_at_step"] = 13
    assert _red_pixels(plots.plot_reductions(runs, tmp_path / "c.png")) > 50


def test_reductions_several_batch_sizes_one_panel_per_reduction(tmp_path):
    pytest.importorskip("matplotlib")
    runs = [dict(r, batch_size=b) for b in (16, 64, 256) for r in _runs(diverge=False)]
    path = plots.plot_reductions(runs, tmp_path / "r.png")
    image = pytest.importorskip("matplotlib.image").imread(path)
    assert image.shape[:2] == (4 * 110, round(2 * 5.2 * 110))
    only_mean = plots.plot_reductions([r for r in runs if r["reduction"] == "mean"],
                                      tmp_path / "m.png")
    assert pytest.importorskip("matplotlib.image").imread(only_mean).shape[1] == round(5.2 * 110)


@pytest.fixture
def no_matplotlib(monkeypatch):
    # A None entry in sys.modules makes `import matplotlib...` raise ImportError.
    for name in ("matplotlib", "matplotlib.figure"):
        monkeypatch.setitem(sys.modules, name, None)


def test_without_matplotlib_prints_how_to_get_plots(tmp_path, no_matplotlib):
    assert not plots.have_matplotlib()
    err = io.StringIO()
    assert plots.plot_curves(EPOCHS, tmp_path / "c.png", file=err) is None
    assert plots.plot_reductions(_runs(True), tmp_path / "r.png", file=err) is None
    assert "pyce[" not in err.getvalue()  # not the package index's unrelated 'pyce'
    assert 'pip install ".[plot]"' in err.getvalue()
    assert not list(tmp_path.iterdir())
