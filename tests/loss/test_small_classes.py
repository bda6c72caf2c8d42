"""The few-classes path (C <= 16, cext/pyce_ce_small.c) against the float64 reference.

The kernel's block function offers every block of an (N, C <= 16) class-target call to
pyce_ce_small_* first; on x86-64 with AVX-512 or AVX2 it computes the block with rows
across SIMD lanes (in-register transposes), elsewhere it declines and the older lanes
path runs. These tests check that path against `pyce.reference` within the documented
bound (adversarial.check_against_reference): every C from 1 to 16, N not a multiple of
the 16 (or 8) rows of a group, float32 and float64, the edge values (-inf, NaN, +inf,
ignore_index, zero weights, huge logits), weights, label smoothing (without class
weights; with them the lanes path runs), strided rows, out= / in place,
bitwise determinism across n_threads, and the exp error through the gradient.

`test_other_isas_in_a_subprocess` reruns this file with PYCE_SMALL_ISA=avx2 and =none,
so the AVX2 code and the fallback are tested on an AVX-512 machine too.
"""
import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

import pyce
from adversarial import SPECS, check_against_reference

DTYPES = [np.float32, np.float64]


def small_isa():
    """The implementation pyce_ce_small_* uses in this process: avx512, avx2 or none."""
    from pyce import _ce
    fn = ctypes.CDLL(_ce.__file__).pyce_ce_small_isa
    fn.restype = ctypes.c_char_p
    return fn().decode()


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _check(name, x, t, **kwargs):
    check_against_reference(SPECS[name], (x, t), kwargs,
                            f"{name} {x.dtype} {x.shape} {sorted(kwargs)}")


def _logits(rng, n, c, dtype, scale=4.0):
    return (rng.standard_normal((n, c)) * scale).astype(dtype)


def test_the_fast_path_is_used_where_the_cpu_allows():
    flags = _cpu_flags()
    cap = os.environ.get("PYCE_SMALL_ISA", "avx512")
    if {"avx512f", "avx512dq", "avx512bw", "avx512vl"} <= flags and cap == "avx512":
        assert small_isa() == "avx512"
    elif {"avx2", "fma"} <= flags and cap in ("avx512", "avx2"):
        assert small_isa() == "avx2"
    elif cap == "none":
        assert small_isa() == "none"
    else:
        pytest.skip(f"no AVX2/AVX-512 on this CPU: the fallback runs ({small_isa()})")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", range(1, 17))
def test_every_class_count_and_tail(c, dtype):
    rng = np.random.default_rng(c)
    for n in (1, 7, 15, 16, 17, 40, 100):
        x = _logits(rng, n, c, dtype)
        t = rng.integers(0, c, n)
        t[::5] = -100
        for red in ("mean", "sum", "none"):
            _check("cross_entropy_and_grad", x, t, reduction=red)
        _check("cross_entropy", x, t, reduction="none")


def _edge_batch(c, dtype, n=37):
    """Rows of every edge case, at positions that fall in different lanes and groups."""
    rng = np.random.default_rng(100 + c)
    x = _logits(rng, n, c, dtype)
    t = rng.integers(0, c, n)
    other = (t + 1) % c
    r = np.arange(n)
    x[1, other[1]] = -np.inf                      # masked class: p = 0, gradient 0
    x[2, t[2]] = -np.inf                          # -inf target logit: loss +inf
    x[3, other[3]] = np.nan                       # NaN row
    x[4, 0] = np.inf                              # +inf: NaN row
    x[5, :] = -np.inf                             # all -inf: NaN row
    x[6, :] = 1e30                                # equal huge logits
    x[7, :] = np.linspace(-1e30, 1e30, c)         # +-1e30
    x[8, :] += 1e6                                # offset row
    x[9, :] = np.nan                              # NaN, but ignored below
    t[9] = -100
    x[10, :] = -80.0                              # far below 0, all equal
    x[11, :] = np.where(r[:c] % 2 == 0, 0.0, -200.0)[:c]   # exps that are exactly 0
    if c == 1:
        x[1, 0] = x[3, 0] = 1.0                   # one class: masking it is a NaN row
        x[3, 0] = np.nan
    return x, t


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 2, 3, 5, 8, 10, 13, 16])
def test_edge_values(c, dtype):
    x, t = _edge_batch(c, dtype)
    for red in ("mean", "sum", "none"):
        _check("cross_entropy_and_grad", x, t, reduction=red)
        _check("cross_entropy", x, t, reduction=red)
    _check("cross_entropy_backward", x, t, grad_output=2.5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [2, 10, 16])
def test_ignore_index_that_is_a_class(c, dtype):
    rng = np.random.default_rng(7)
    x = _logits(rng, 50, c, dtype)
    t = rng.integers(0, c, 50)
    x[t == 1, 0] = np.nan   # rows that are ignored are not read into the result
    for red in ("mean", "sum", "none"):
        _check("cross_entropy_and_grad", x, t, ignore_index=1, reduction=red)
    _, g = pyce.cross_entropy_and_grad(x, t, ignore_index=1)
    assert np.all(g[t == 1] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [3, 10, 16])
def test_weights(c, dtype):
    rng = np.random.default_rng(11)
    x, t = _edge_batch(c, dtype, n=45)
    w = rng.uniform(0.1, 2.0, c)
    w[t[2]] = 0.0                     # the -inf target of row 2 has weight 0: loss 0
    sw = rng.uniform(0.0, 3.0, len(t))
    sw[12] = 0.0
    for red in ("mean", "sum", "none"):
        _check("cross_entropy_and_grad", x, t, weight=w, reduction=red)
        _check("cross_entropy_and_grad", x, t, sample_weight=sw, reduction=red)
        _check("cross_entropy_and_grad", x, t, weight=w, sample_weight=sw, reduction=red)
    go = rng.standard_normal(len(t))
    _check("cross_entropy_backward", x, t, grad_output=go, reduction="none", weight=w)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", range(1, 17))
def test_label_smoothing(c, dtype):
    # the few-class path takes label smoothing without class weights (small_smooth in
    # cext/pyce_ce_rules.h): every C, tails, eps up to 1 (the target term's weight 0),
    # sample weights, per-row grad_output, and the edge rows
    rng = np.random.default_rng(200 + c)
    for n in (1, 15, 17, 40):
        x = _logits(rng, n, c, dtype)
        t = rng.integers(0, c, n)
        t[::7] = -100
        for eps in (0.1, 1.0):
            for red in ("mean", "sum", "none"):
                _check("cross_entropy_and_grad", x, t, label_smoothing=eps, reduction=red)
            _check("cross_entropy", x, t, label_smoothing=eps)
    x, t = _edge_batch(c, dtype, n=45)
    sw = rng.uniform(0.0, 3.0, len(t))
    sw[12] = 0.0
    go = rng.standard_normal(len(t))
    for red in ("mean", "sum", "none"):
        _check("cross_entropy_and_grad", x, t, label_smoothing=0.2, reduction=red)
        _check("cross_entropy_and_grad", x, t, label_smoothing=0.2, sample_weight=sw,
               reduction=red)
        _check("cross_entropy", x, t, label_smoothing=0.05, reduction=red)
    _check("cross_entropy_backward", x, t, label_smoothing=0.2, grad_output=go, reduction="none")
    _check("cross_entropy_and_grad", x, t, label_smoothing=0.2, ignore_index=0)
    # with class weights the rule differs per class: the lanes path computes it
    _check("cross_entropy_and_grad", x, t, label_smoothing=0.2,
           weight=rng.uniform(0.1, 2.0, c))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [2, 10, 16])
def test_label_smoothing_of_logits_beyond_float32_differences(c, dtype):
    # x_k - m beyond float32's range (3e38 - -3e38): the float32 groups sum such rows
    # again in double, as the other paths do, so the smoothing term stays finite
    rng = np.random.default_rng(5)
    x = _logits(rng, 33, c, dtype)
    t = rng.integers(0, c, 33)
    x[3, :] = -3e38
    x[3, 0] = 3e38
    t[3] = 0
    x[20, :] = 3e38
    x[20, -1] = -3e38
    t[20] = 0                      # (a target logit of -3e38 would overflow the loss itself)
    for red in ("mean", "none"):
        _check("cross_entropy_and_grad", x, t, label_smoothing=0.1, reduction=red)
    rows = pyce.cross_entropy(x, t, label_smoothing=0.1, reduction="none")
    assert np.all(np.isfinite(rows)), rows


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_beyond_the_dtype_range(dtype):
    # tiny 'mean' denominators: g/s overflows; those blocks stay on the older path
    rng = np.random.default_rng(3)
    x = _logits(rng, 40, 10, dtype)
    t = rng.integers(0, 10, 40)
    sw = np.full(40, 1e-300)
    _check("cross_entropy_and_grad", x, t, sample_weight=sw)
    _check("cross_entropy_backward", x, t, grad_output=1e300, reduction="sum")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [4, 10, 16])
def test_strided_rows_out_and_in_place(c, dtype):
    rng = np.random.default_rng(5)
    wide = _logits(rng, 70, c + 5, dtype)
    x = wide[:, :c]                                  # rows c + 5 apart
    t = rng.integers(0, c, 70)
    _check("cross_entropy_and_grad", x, t)
    _check("cross_entropy_and_grad", x, t, out=np.empty((70, c), dtype))
    xc = np.ascontiguousarray(x)
    _check("cross_entropy_and_grad", xc, t, overwrite_input=True)
    loss, g = pyce.cross_entropy_and_grad(xc.copy(), t)
    y = xc.copy()
    loss2, g2 = pyce.cross_entropy_and_grad(y, t, overwrite_input=True)
    assert g2 is y
    assert loss2 == loss and np.array_equal(g2, g)   # in place: each group read before written


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 3, 5, 8, 10, 11, 13, 16])
def test_strided_out_rows_leave_the_memory_between_them_alone(c, dtype):
    # out= a column slice of a wider array: the gradient rows are c + 6 apart and the
    # 6 entries between them are the caller's (the AVX2 groups store 8 or 16 floats /
    # 4..16 doubles per row: such a store must not reach them)
    rng = np.random.default_rng(11)
    x = _logits(rng, 70, c, dtype)
    t = rng.integers(0, c, 70)
    big = np.full((70, c + 6), 7.0, dtype)
    loss, g = pyce.cross_entropy_and_grad(x, t, out=big[:, :c])
    assert np.all(big[:, c:] == 7.0)
    ref_loss, ref_g = pyce.cross_entropy_and_grad(x, t)
    assert loss == ref_loss and np.array_equal(big[:, :c], ref_g)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [1, 3, 8, 10, 11, 16])
def test_agrees_with_the_lanes_path(c, dtype):
    # A Fortran-ordered out= (class axis strided) is left to the older general lanes
    # path (ce_lanes), a C-ordered one takes the fast path. float32: the fast
    # path sums a row's exps in float32 and takes log(s) in float32 (pyce_ce_small.c's
    # design note), so the two paths are no longer bitwise equal: both are checked
    # against the float64 reference at the README bound, and against each other at
    # rtol 1e-5 (each within a few ulp of the exact value; 1e-37 absolute covers
    # gradient entries below float32's smallest normal number). float64 does the
    # same steps in double (row sum without the target term, one division, its own
    # exp and log1p): at rtol 1e-14 and 2e-15 absolute, for what the lanes path
    # loses to s = 1 + small where p_y is near 1: its log(s) (the fast path's
    # log1p(s - 1) keeps a small loss's relative accuracy) and its target entry
    # g (e_y - s)/s cancel up to an ulp of s times w or g (both <= 4 here).
    # Label smoothing without class weights takes the fast path too.
    rng = np.random.default_rng(40 + c)
    x, t = _edge_batch(c, dtype, n=75)
    w = rng.uniform(0.5, 2.0, c)
    sw = rng.uniform(0.0, 2.0, len(t))
    for kw in ({}, {"weight": w}, {"sample_weight": sw}, {"reduction": "sum"},
               {"reduction": "none"}, {"label_smoothing": 0.1},
               {"label_smoothing": 0.3, "sample_weight": sw, "reduction": "none"}):
        fast = pyce.cross_entropy_and_grad(x, t, out=np.empty_like(x), **kw)
        lanes = pyce.cross_entropy_and_grad(x, t, out=np.empty_like(x, order="F"), **kw)
        _check("cross_entropy_and_grad", x, t, out=np.empty_like(x), **kw)
        _check("cross_entropy_and_grad", x, t, out=np.empty_like(x, order="F"), **kw)
        if dtype == np.float32:
            for a, b in zip(fast, lanes):
                # label smoothing: p_k g - g eps/c cancels where p_k ~ eps/c, so there
                # the entries agree to a few ulps of the gradient's scale, not rtol
                scale = np.max(np.abs(b[np.isfinite(b)]), initial=0.0)
                atol = 8 * 2.0**-24 * scale if "label_smoothing" in kw else 1e-37
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=max(atol, 1e-37))
        else:
            for a, b in zip(fast, lanes):
                np.testing.assert_allclose(a, b, rtol=1e-14, atol=2e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(8192, 10), (65541, 3), (20000, 16)])
def test_bitwise_identical_for_every_n_threads(shape, dtype):
    rng = np.random.default_rng(9)
    x = _logits(rng, *shape, dtype)
    x[100, 1] = np.nan
    t = rng.integers(0, shape[1], shape[0])
    t[::13] = -100
    outs = []
    for nt in (1, 2, 3, None):
        loss, g = pyce.cross_entropy_and_grad(x, t, n_threads=nt)
        rows = pyce.cross_entropy(x, t, reduction="none", n_threads=nt)
        ls_loss, ls_g = pyce.cross_entropy_and_grad(x, t, n_threads=nt, label_smoothing=0.1)
        outs.append(np.asarray(loss).tobytes() + g.tobytes() + rows.tobytes() +
                    np.asarray(ls_loss).tobytes() + ls_g.tobytes())
    assert all(o == outs[0] for o in outs[1:])


def test_exp_error_through_the_gradient():
    # Rows [0, d] with target 0 and reduction 'sum': s = 1 + e rounds to a float
    # scale 1/s == 1 when e = exp(d) < 2^-25, so grad[:, 1] is the kernel's exp(d)
    # itself, compared in ulps with exp in float64 (the documented 2-ulp bound).
    d = np.linspace(-87.3, -17.5, 200003).astype(np.float32)
    x = np.stack([np.zeros_like(d), d], axis=1)
    t = np.zeros(len(d), np.int64)
    _, g = pyce.cross_entropy_and_grad(x, t, reduction="sum")
    exact = np.exp(d.astype(np.float64))
    ulp = np.spacing(exact.astype(np.float32)).astype(np.float64)
    err = np.abs(g[:, 1].astype(np.float64) - exact) / ulp
    assert err.max() <= 2.0, f"worst {err.max():.2f} ulp at d = {d[np.argmax(err)]}"
    # below the smallest normal number the exp is exactly 0 (masked classes stay 0)
    x2 = np.array([[0.0, -87.5], [0.0, -300.0]], np.float32)
    _, g2 = pyce.cross_entropy_and_grad(x2, np.zeros(2, np.int64), reduction="sum")
    assert np.all(g2[:, 1] == 0.0)


@pytest.mark.skipif(os.environ.get("PYCE_SMALL_ISA") is not None, reason="already a rerun")
@pytest.mark.parametrize("isa", ["avx2", "none"])
def test_other_isas_in_a_subprocess(isa):
    flags = _cpu_flags()
    if isa == "avx2" and not {"avx2", "fma"} <= flags:
        pytest.skip("no AVX2 on this CPU")
    env = dict(os.environ, PYCE_SMALL_ISA=isa)
    here = os.path.dirname(os.path.abspath(__file__))
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:randomly",
                          "-p", "no:cacheprovider", "--import-mode=importlib",
                          os.path.join(here, "test_small_classes.py")],
                         env=env, capture_output=True, text=True, timeout=900, cwd="/tmp")
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert " passed" in res.stdout


# ---- rows beyond L2 (>= 1 MiB): the online max-and-sum path, cext/pyce_ce_online.c ----
# (forward calls here; the fused calls' segmented path is tested in test_huge_rows.py)

def _huge_rows(dtype, c, rng):
    x = (rng.standard_normal((5, c)) * 4).astype(dtype)
    x[0, 7] = 60.0                              # the maximum early
    x[1, :] = np.linspace(-50, 50, c)           # rising: the running maximum moves every chunk
    x[1, c - 1] = 80.0                          # and the last one in the tail
    x[2, ::3] = -np.inf                         # masked classes
    x[3, 1000] = np.nan                         # NaN row
    x[4, :] += 1e6                              # offset row
    t = rng.integers(0, c, 5)
    return x, t


@pytest.mark.parametrize("dtype,c", [(np.float32, 300001), (np.float64, 140003)])
def test_rows_beyond_l2(dtype, c):
    rng = np.random.default_rng(21)
    x, t = _huge_rows(dtype, c, rng)
    for red in ("mean", "sum", "none"):
        _check("cross_entropy_and_grad", x, t, reduction=red)
        _check("cross_entropy", x, t, reduction=red)
    t2 = t.copy()
    t2[0] = -100
    w = rng.uniform(0.5, 2.0, c)
    for name in ("cross_entropy", "cross_entropy_and_grad"):
        _check(name, x, t2, weight=w, sample_weight=np.arange(5.0))
        _check(name, x, t2, weight=w, reduction="none")
    x2 = x.copy()
    x2[0, t[0]] = -np.inf                       # -inf target: loss +inf
    _check("cross_entropy", x2, t, reduction="none")
    _check("cross_entropy_and_grad", x2, t)
