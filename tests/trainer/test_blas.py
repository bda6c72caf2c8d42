"""pyce._blas: NumPy's own OpenBLAS through ctypes (gemm, thread count) and the
thread policy fit uses by default. Skipped where NumPy does not bundle
scipy-openblas (another BLAS: pyce falls back to NumPy there)."""
import numpy as np
import pytest

from pyce import _blas
import pyce.nn as nn
import pyce.optim as optim
import pyce.train as train

pytestmark = pytest.mark.skipif(_blas.get_num_threads() is None,
                                reason="NumPy's BLAS is not its bundled scipy-openblas")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_accumulates_alpha_a_b_plus_beta_c(dtype):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((5, 7)).astype(dtype), rng.standard_normal((4, 7)).astype(dtype)
    c = rng.standard_normal((5, 4)).astype(dtype)
    want = 0.5 * (a.astype(np.float64) @ b.T.astype(np.float64)) + 0.9 * c
    _blas.gemm(dtype)(101, 111, 112, 5, 4, 7, 0.5, a.ctypes.data, 7, b.ctypes.data, 7, 0.9,
                      c.ctypes.data, 4)
    np.testing.assert_allclose(c, want, rtol=1e-5 if dtype == np.float32 else 1e-13)
    assert _blas.gemm(np.int32) is None


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_axpy_adds_alpha_x_to_y_in_place(dtype):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(70_001).astype(dtype), rng.standard_normal(70_001).astype(dtype)
    want = y.astype(np.float64) - 0.25 * x.astype(np.float64)
    x0 = x.copy()
    _blas.axpy(dtype)(len(x), -0.25, x.ctypes.data, 1, y.ctypes.data, 1)
    np.testing.assert_allclose(y, want, rtol=1e-6 if dtype == np.float32 else 1e-15,
                               atol=1e-7 if dtype == np.float32 else 1e-16)
    assert np.array_equal(x, x0)
    assert _blas.axpy(np.int64) is None


def test_limit_threads_sets_and_restores():
    before = _blas.get_num_threads()
    with _blas.limit_threads(1) as n:
        assert n == 1 and _blas.get_num_threads() == 1
    assert _blas.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with _blas.limit_threads(1):
            raise RuntimeError
    assert _blas.get_num_threads() == before


def _fake_cpu(monkeypatch, others_busy_cores, cores=2):
    """/proc/stat as if other processes kept `others_busy_cores` busy (this
    process idle); 100 ticks per core per window."""
    state = {"t": 0}

    def sample():
        state["t"] += 100
        t = state["t"]
        return t * cores, t * (cores - others_busy_cores), cores, 0.0
    monkeypatch.setattr(_blas, "_cpu_sample", sample)
    monkeypatch.setattr(_blas, "_usable_cores", lambda: cores)
    monkeypatch.setattr(_blas, "WINDOW_SECONDS", 0.0)


@pytest.mark.parametrize("others, want", [(2.0, 1), (1.0, 1), (0.7, 1), (0.2, 2), (0.0, 2)])
def test_adaptive_threads_follow_the_cores_others_leave_idle(monkeypatch, others, want):
    _fake_cpu(monkeypatch, others)
    before = _blas.get_num_threads()
    with _blas.AdaptiveThreads(max_threads=2) as policy:
        assert _blas.get_num_threads() == 1  # starts on one thread
        policy.tick()
        assert _blas.get_num_threads() == want
    assert policy.counts == ([1] if want == 1 else [1, want])
    assert _blas.get_num_threads() == before


def test_adaptive_threads_without_proc_stat_stay_inactive(monkeypatch):
    monkeypatch.setattr(_blas, "_cpu_sample", lambda: None)
    before = _blas.get_num_threads()
    with _blas.AdaptiveThreads() as policy:
        policy.tick()
        assert _blas.get_num_threads() == before
    assert not policy.active


def test_fit_uses_one_blas_thread_under_load_by_default_and_restores(monkeypatch):
    _fake_cpu(monkeypatch, 2.0)
    before = _blas.get_num_threads()
    seen = []
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((40, 5)), rng.integers(0, 3, 40)
    model = nn.mlp([5, 6, 3], rng=0)
    train.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), x, y,
              epochs=2, batch_size=8, verbose=0,
              on_epoch=lambda h: seen.append(_blas.get_num_threads()))
    assert seen == [1, 1]
    assert _blas.get_num_threads() == before


@pytest.mark.parametrize("macs_limit, want_one", [(1 << 24, True), (10, False)])
def test_fit_without_proc_stat_decides_by_product_size(monkeypatch, macs_limit, want_one):
    monkeypatch.setattr(_blas, "_cpu_sample", lambda: None)
    monkeypatch.setattr(_blas, "SMALL_PRODUCT_MACS", macs_limit)
    before = _blas.get_num_threads()
    seen = []
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((40, 5)), rng.integers(0, 3, 40)
    model = nn.mlp([5, 6, 3], rng=0)  # largest product 8 x 6 x 5 = 240 multiply-adds
    train.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), x, y,
              epochs=1, batch_size=8, verbose=0,
              on_epoch=lambda h: seen.append(_blas.get_num_threads()))
    assert seen == [1 if want_one else before]
