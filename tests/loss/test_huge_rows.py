"""Rows beyond L2 (cext/pyce_ce_online.c): the segmented max-and-sum path.

Rows of at least 1 MiB (class-index targets, no smoothing, no z-loss) are cut
into fixed segments; each segment's maximum and exp-sum are combined in order
(design note at the top of pyce_ce_online.c).  To test that with arrays of a
few MB, the private `pyce_ce_online_tune(min_bytes, seg)` (through ctypes)
lowers the row size from which the path runs and the segment length, so small
rows cross many segment boundaries; every test restores the defaults.

Checked against `pyce.reference` in float64 within the documented bound
(adversarial.check_against_reference): NaN, +inf and -inf at segment
boundaries, segments of only -inf before any finite logit, the maximum moving
every segment or only in the tail, factors that underflow, ignore_index,
class and sample weights, every reduction, grad_output, out= and in place,
float32 and float64; bitwise determinism across n_threads; the thread split of
huge rows; and one row at the default 1 MiB threshold.
"""
import ctypes

import numpy as np
import pytest

import pyce
from pyce import _ce
from adversarial import SPECS, check_against_reference

DTYPES = [np.float32, np.float64]
SEG = 256  # elements per segment in the tuned tests (a multiple of 64)


def _tune(min_bytes, seg):
    fn = ctypes.CDLL(_ce.__file__).pyce_ce_online_tune
    fn.argtypes = [ctypes.c_int64, ctypes.c_int64]
    fn.restype = None
    fn(min_bytes, seg)


@pytest.fixture
def tuned():
    """Rows of any size take the online path, segments of SEG elements."""
    _tune(1, SEG)
    yield
    _tune(0, 0)


@pytest.fixture
def untuned():
    """The online path never runs (the row path computes every row)."""
    _tune(1 << 60, 0)
    yield
    _tune(0, 0)


def _check(name, x, t, **kwargs):
    check_against_reference(SPECS[name], (x, t) if name != "cross_entropy_backward"
                            else (x, t, kwargs.pop("grad_output", 1.0)), kwargs,
                            f"{name} {x.dtype} {x.shape} {sorted(kwargs)}")


def _edge_rows(dtype, c, seed=0):
    """One row per edge case, the special entries at segment boundaries."""
    rng = np.random.default_rng(seed)
    n = 16
    x = (rng.standard_normal((n, c)) * 4).astype(dtype)
    t = rng.integers(0, c, n)
    b = SEG * 3                                   # a segment boundary
    x[1, :] = np.linspace(-50, 50, c)             # the maximum moves every segment
    x[2, :2 * SEG + 5] = -np.inf                  # first segments only -inf, then finite
    t[2] = c - 1
    x[3, b - 1] = x[3, b] = -np.inf               # masked classes on both sides of a boundary
    x[3, ::7] = -np.inf
    t[3] = 1
    x[4, b] = np.nan                              # NaN at a boundary: NaN row
    x[5, b - 1] = np.inf                          # +inf at a boundary: NaN row
    x[6, :] = -np.inf                             # all -inf: NaN row
    x[7, :] += 1e6                                # offset row
    x[8, :] = np.nan                              # NaN, but ignored
    t[8] = -100
    x[9, :SEG] = np.nan                           # a first segment of NaN: NaN row
    x[9, SEG:2 * SEG] = -np.inf
    x[10, c - 3] = 90.0                           # the maximum in the tail segment only
    x[11, t[11]] = -np.inf                        # -inf target: loss +inf
    x[11, :SEG] = -np.inf
    x[12, :] = -100.0                             # segments whose factor underflows in float32
    x[12, b:b + SEG] = 100.0
    t[12] = b + 3
    x[13, :] = np.linspace(-1e30, 1e30, c)        # +-1e30
    x[14, :SEG] = -np.inf                         # -inf segment, then all -inf but a NaN
    x[14, SEG:] = -np.inf
    x[14, c - 1] = np.nan
    x[15, :] = 3.0                                # all equal
    return x, t


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [SEG * 9, SEG * 9 + 37, SEG * 5 + 63])
def test_edge_values_against_reference(tuned, dtype, c):
    x, t = _edge_rows(dtype, c)
    for red in ("mean", "sum", "none"):
        _check("cross_entropy_and_grad", x, t, reduction=red)
        _check("cross_entropy", x, t, reduction=red)
    _check("cross_entropy_backward", x, t, grad_output=2.5)
    go = np.linspace(-2, 3, x.shape[0])
    _check("cross_entropy_backward", x, t, grad_output=go, reduction="none")


@pytest.mark.parametrize("dtype", DTYPES)
def test_weights_ignore_index_out_and_in_place(tuned, dtype):
    rng = np.random.default_rng(3)
    c = SEG * 7 + 11
    x, t = _edge_rows(dtype, c, seed=3)
    w = rng.uniform(0.5, 2.0, c)
    w[t[0]] = 0.0                                 # a target of weight 0
    sw = rng.uniform(0.0, 2.0, x.shape[0])
    sw[5] = 0.0                                   # a NaN row of sample weight 0 stays NaN
    t2 = t.copy()
    t2[[0, 3]] = 7                                # ignore_index that is a class
    for name in ("cross_entropy", "cross_entropy_and_grad"):
        for red in ("mean", "sum", "none"):
            _check(name, x, t, weight=w, reduction=red)
            _check(name, x, t, sample_weight=sw, reduction=red)
            _check(name, x, t2, weight=w, sample_weight=sw, ignore_index=7, reduction=red)
    _check("cross_entropy_and_grad", x, t, out=np.full(x.shape, np.nan, dtype))
    _check("cross_entropy_and_grad", x, t, weight=w, overwrite_input=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_rows_and_many_segments(tuned, dtype):
    """Beyond PYCE_ON_MAX_SEGS segments of SEG elements the segments grow (70000 / 1024)."""
    rng = np.random.default_rng(5)
    for c in (64 * 1024 + 1, 70000):
        x = (rng.standard_normal((3, c)) * 6).astype(dtype)
        x[1, rng.integers(0, c, 50)] = -np.inf
        t = rng.integers(0, c, 3)
        _check("cross_entropy_and_grad", x, t)
        _check("cross_entropy", x, t, reduction="none")


def _openmp():
    # threads_for(..., 2) asks for two threads explicitly: it depends on OpenMP being
    # built in, not on the runtime's current default (which another library may lower)
    from pyce._config import build_config
    return build_config()["openmp"]


def _same_for_every_n_threads(x, t, **kw):
    results = []
    for nt in (1, 2, 3, 4):
        loss, g = pyce.cross_entropy_and_grad(x, t, n_threads=nt, **kw)
        lr = pyce.cross_entropy(x, t, reduction="none", n_threads=nt, **kw)
        results.append((np.asarray(loss).tobytes(), g.tobytes(), lr.tobytes()))
    assert all(r == results[0] for r in results[1:])


@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_identical_for_every_n_threads(tuned, dtype):
    """Rows of 70000 classes: one row per block, blocks split statically."""
    c = 70000
    x, t = _edge_rows(dtype, c, seed=9)
    x = x[:10]
    t = t[:10]
    if _openmp():
        assert _ce.threads_for(x.shape[0], c, 2) == 2   # the threads really split the rows
    _same_for_every_n_threads(x, t, weight=np.linspace(0.5, 1.5, c))


def test_bitwise_identical_for_every_n_threads_dynamic_blocks():
    """Rows of 2^20 classes (blocks of >= 1M elements are handed out dynamically),
    default segments: whichever thread takes a block, the same bits."""
    c = 1 << 20
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((3, c)) * 4).astype(np.float32)
    x[1, :3000] = -np.inf
    x[2, 77777] = 40.0
    t = np.array([5, c - 1, 77777])
    if _openmp():
        assert _ce.threads_for(3, c, 2) == 2
    _same_for_every_n_threads(x, t)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_online_path_runs(dtype):
    """Tuned and untuned calls agree within the bound but not bit for bit: another
    path (one more rounding per gradient entry) computed the tuned one."""
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((4, SEG * 12 + 7)) * 4).astype(dtype)
    t = rng.integers(0, x.shape[1], 4)
    _tune(1 << 60, 0)
    try:
        _, g_row = pyce.cross_entropy_and_grad(x, t)
    finally:
        _tune(0, 0)
    _tune(1, SEG)
    try:
        _, g_on = pyce.cross_entropy_and_grad(x, t)
    finally:
        _tune(0, 0)
    assert not np.array_equal(g_row, g_on)
    np.testing.assert_allclose(g_on, g_row, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=0)


def test_row_path_still_right_for_huge_rows(untuned):
    """The same edge rows through the row path (what the online path replaces)."""
    x, t = _edge_rows(np.float32, SEG * 9 + 37)
    _check("cross_entropy_and_grad", x, t)
    _check("cross_entropy", x, t, reduction="none")


@pytest.mark.parametrize("dtype", DTYPES)
def test_default_threshold_one_mib_row(dtype):
    """Untuned: rows of 1 MiB take the path with the default segments (and the
    -inf start that used to make the online forward NaN)."""
    c = (1 << 20) // np.dtype(dtype).itemsize + 100
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((3, c)) * 4).astype(dtype)
    x[0, :5000] = -np.inf
    x[1, 4095:4097] = -np.inf
    x[2, 4096] = 50.0
    t = np.array([c - 1, 10, 4096])
    _check("cross_entropy_and_grad", x, t)
    _check("cross_entropy", x, t, reduction="none")


def test_huge_rows_are_split_between_threads():
    """64 rows of 1M classes are 64 blocks (not one block of 64 rows on one thread)."""
    from pyce._config import build_config
    if not build_config()["openmp"]:
        pytest.skip("built without OpenMP")
    assert _ce.threads_for(64, 1_000_000, 2) == 2
    assert _ce.threads_for(2, 1_000_000, 2) == 2
    assert _ce.threads_for(2, 70_000, 2) == 2
    assert _ce.threads_for(64, 2048, 2) == 2       # two blocks of 32 rows (65536 elements each)
    assert _ce.threads_for(64, 1024, 2) == 1       # up to 1024 classes: blocks of 64 rows as before
