"""Error bounds of the kernels' own exp and log (cext/pyce_exp.h).

The exp is used on x - max(row), i.e. on [-inf, 0] and NaN; it is checked on
a dense sample of that range (every float32 in [-87.3, 0] with a stride of
97 in the bit pattern: ~11 million values) against a correctly rounded
reference (float64 exp rounded to float32). Stated bounds: exp_f32 <= 2 ulp,
exp_f64 <= 2 ulp on [-708, 0], log_f64 <= 2 ulp on [1, 1e6] (the row sums it
is used on lie in [1, C]).
"""
import numpy as np
import pytest

from pyce import _ce


def ulp_error(got, exact, dtype):
    """|got - exact| in units of the spacing of `exact` in `dtype`."""
    exact_t = exact.astype(dtype)
    spacing = np.spacing(np.abs(exact_t)).astype(np.float64)
    return np.abs(got.astype(np.float64) - exact) / spacing


def test_exp_f32_error_bound_over_the_used_range():
    lo_bits = np.array(-87.3, np.float32).view(np.uint32)
    hi_bits = np.array(-0.0, np.float32).view(np.uint32)   # negative floats: bits grow as values fall
    bits = np.arange(hi_bits, lo_bits, 97, dtype=np.uint32)
    x = bits.view(np.float32)
    assert x.min() >= -87.3 and x.max() <= 0 and x.size > 10_000_000
    got = _ce._elementwise("exp_f32", x)
    err = ulp_error(got, np.exp(x.astype(np.float64)), np.float32)
    assert err.max() <= 2.0, f"max error {err.max():.2f} ulp at x = {x[err.argmax()]!r}"


def test_exp_f64_error_bound():
    x = np.concatenate([-np.geomspace(1e-300, 708, 2_000_000), np.linspace(-708, 0, 1_000_000)])
    got = _ce._elementwise("exp_f64", x)
    # np.exp (glibc) is within 1 ulp; we allow 2 against it (so <= 3 against the truth)
    err = np.abs(got - np.exp(x)) / np.spacing(np.exp(x))
    assert err.max() <= 2.0, f"max error {err.max():.2f} ulp at x = {x[err.argmax()]!r}"


def test_log_f64_error_bound():
    s = np.concatenate([np.geomspace(1.0, 1e6, 2_000_000), 1 + np.geomspace(1e-16, 1e-2, 100_000)])
    got = _ce._elementwise("log_f64", s)
    err = np.abs(got - np.log(s)) / np.spacing(np.abs(np.log(s)) + 1e-300)
    # near s = 1 log(s) is tiny; measure there in absolute terms of eps instead
    near_one = s < 1.01
    assert err[~near_one].max() <= 2.0
    assert np.max(np.abs(got[near_one] - np.log(s[near_one]))) <= 2 * np.finfo(float).eps


@pytest.mark.parametrize("name,dtype", [("exp_f32", np.float32), ("exp_f64", np.float64)])
def test_exp_special_values(name, dtype):
    x = np.array([0.0, -0.0, -np.inf, np.nan, -1e30, -200.0, -88.0, -1.0], dtype)
    got = _ce._elementwise(name, x)
    assert got[0] == 1 and got[1] == 1
    assert got[2] == 0 and got[4] == 0 and got[5] == (0 if dtype == np.float32 else got[5])
    assert np.isnan(got[3])
    assert got[7] == pytest.approx(1 / np.e, rel=1e-6)


def test_log_special_values():
    got = _ce._elementwise("log_f64", np.array([1.0, 2.0, np.nan, 10.0]))
    assert got[0] == 0 and got[1] == pytest.approx(np.log(2), rel=1e-16)
    assert np.isnan(got[2])


# ---- the AVX-512 float32 few-class path's own exp and log1p (pyce_exp.h:
# pyce_expneg_f32x16, pyce_log1p_f32x16), called through their array wrappers in
# cext/pyce_ce_small.c; on CPUs without AVX-512 the wrappers decline (skip) ----

def _x16(name, x, dtype=np.float32):
    import ctypes
    x = np.ascontiguousarray(x, dtype=dtype)
    out = np.full_like(x, -1.0)
    fn = getattr(ctypes.CDLL(_ce.__file__), name)
    fn.restype = ctypes.c_int
    ptr = ctypes.POINTER(ctypes.c_float if dtype == np.float32 else ctypes.c_double)
    ok = fn(x.ctypes.data_as(ptr), out.ctypes.data_as(ptr), ctypes.c_int64(x.size))
    if not ok:
        pytest.skip(f"{name}: this CPU lacks its ISA (the few-class path does not use it)")
    return out


def _exp_test_points():
    lo_bits = np.array(-87.3, np.float32).view(np.uint32)
    hi_bits = np.array(-0.0, np.float32).view(np.uint32)
    x = np.arange(hi_bits, lo_bits, 97, dtype=np.uint32).view(np.float32)
    return np.concatenate([x, [-87.3365402, -87.33654, -87.5, -300.0, -np.inf, np.nan, 0.0, -0.0]]
                          ).astype(np.float32)


@pytest.mark.parametrize("wrapper", ["pyce_expneg_x16_array_f32", "pyce_expneg_x8_array_f32"])
def test_exp_x16_and_x8_error_bound(wrapper):
    # its own polynomial (degree 5 in exp = 1 + r q(r)): the scalar exp's 2-ulp bound;
    # the AVX-512 (x16) and AVX2 (x8) forms of the few-class paths
    hi_bits = np.array(-0.0, np.float32).view(np.uint32)
    x = _exp_test_points()
    got = _x16(wrapper, x)
    fin = np.isfinite(x) & (x >= -87.3)
    err = ulp_error(got[fin], np.exp(x[fin].astype(np.float64)), np.float32)
    assert err.max() <= 2.0, f"max error {err.max():.2f} ulp at x = {x[fin][err.argmax()]!r}"
    # below the smallest normal result exactly +0 (masked classes), NaN stays NaN
    assert np.all(got[(x < -87.3365402)] == 0) and np.isnan(got[np.isnan(x)]).all()
    assert got[-2] == 1 and got[-1] == 1
    # [-1, 0] more densely (where most probabilities of a trained model's rows lie)
    lo1 = np.array(-1.0, np.float32).view(np.uint32)
    x1 = np.arange(hi_bits + 5, lo1 + 1, 61, dtype=np.uint32).view(np.float32)
    err1 = ulp_error(_x16(wrapper, x1), np.exp(x1.astype(np.float64)), np.float32)
    assert err1.max() <= 2.0, f"max error {err1.max():.2f} ulp at x = {x1[err1.argmax()]!r}"


def test_exp_x8_equals_x16_bit_for_bit():
    # the AVX2 form applies 2^n by a multiply with 2^n built from n's bits, the AVX-512
    # form by vscalefps: one rounding each, so the same floats (NaN as NaN)
    x = np.concatenate([_exp_test_points(),
                        -np.geomspace(1e-30, 87.4, 200_001).astype(np.float32)])
    a = _x16("pyce_expneg_x16_array_f32", x)
    b = _x16("pyce_expneg_x8_array_f32", x)
    np.testing.assert_array_equal(a.view(np.uint32)[~np.isnan(a)], b.view(np.uint32)[~np.isnan(a)])
    assert np.isnan(b[np.isnan(a)]).all()


@pytest.mark.parametrize("wrapper", ["pyce_log1p_x16_array_f32", "pyce_log1p_x8_array_f32"])
def test_log1p_x16_and_x8_error_bound(wrapper):
    # the AVX-512 (x16) and AVX2 (x8) log1p of the float32 few-class paths;
    # t = s - 1 of a row sum: [0, 15], densely, and tiny t (confident rows)
    t = np.concatenate([np.linspace(0, 15, 3_000_001), np.geomspace(1e-38, 1, 1_000_000)]
                       ).astype(np.float32)
    got = _x16(wrapper, t)
    exact = np.log1p(t.astype(np.float64))
    pos = t > 0
    err = ulp_error(got[pos], exact[pos], np.float32)
    assert err.max() <= 2.0, f"max error {err.max():.2f} ulp at t = {t[pos][err.argmax()]!r}"
    assert np.all(got[~pos] == 0)
    special = _x16(wrapper, np.array([np.nan, 1.0, 15.0], np.float32))
    assert np.isnan(special[0]) and special[1] == np.float32(np.log(2.0))


# ---- the AVX-512 float64 few-class path's exp and log1p (pyce_expneg_f64x8,
# pyce_log1p_f64x8), against long double (x86: 64-bit significand) ----

def _ulp64(got, exact):
    """|got - exact| in ulps of float64 at exact (exact in long double)."""
    spacing = np.spacing(np.abs(exact).astype(np.float64)).astype(np.longdouble)
    return np.abs(got.astype(np.longdouble) - exact) / spacing


def _exp64_points():
    rng = np.random.default_rng(3)
    return np.concatenate([-np.geomspace(1e-300, 708.39, 2_000_000),
                           np.linspace(-708.39, 0, 2_000_000), -rng.uniform(0, 1, 1_000_000)])


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 60, reason="needs an 80-bit long double")
@pytest.mark.parametrize("wrapper", ["pyce_expneg_x8_array_f64", "pyce_expneg_x4_array_f64"])
def test_exp_f64x8_and_x4_error_bound(wrapper):
    # the AVX-512 (x8) and AVX2 (x4) forms of the float64 few-class paths
    x = _exp64_points()
    got = _x16(wrapper, x, np.float64)
    err = _ulp64(got, np.exp(x.astype(np.longdouble)))
    assert err.max() <= 2.0, f"max error {float(err.max()):.2f} ulp at x = {x[err.argmax()]!r}"
    special = _x16(wrapper, np.array([0.0, -0.0, -np.inf, np.nan, -708.4, -1e300]), np.float64)
    assert special[0] == 1 and special[1] == 1 and np.isnan(special[3])
    assert special[2] == 0 and special[4] == 0 and special[5] == 0


def test_log1p_f64x4_equals_x8_bit_for_bit():
    # the AVX2 form takes e and 2^e from the bits of 1 + t where the AVX-512 form has
    # vgetexppd / vgetmantpd: the same values (the two exps differ: see pyce_exp.h)
    t = np.concatenate([np.linspace(0, 15, 1_000_001), np.geomspace(1e-300, 1, 100_000),
                        [np.nan]])
    a = _x16("pyce_log1p_x8_array_f64", t, np.float64)
    b = _x16("pyce_log1p_x4_array_f64", t, np.float64)
    nan = np.isnan(a)
    np.testing.assert_array_equal(a.view(np.uint64)[~nan], b.view(np.uint64)[~nan])
    assert nan[-1] and np.isnan(b[nan]).all()


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 60, reason="needs an 80-bit long double")
@pytest.mark.parametrize("wrapper", ["pyce_log1p_x8_array_f64", "pyce_log1p_x4_array_f64"])
def test_log1p_f64x8_and_x4_error_bound(wrapper):
    t = np.concatenate([np.linspace(0, 15, 3_000_001), np.geomspace(1e-300, 1, 1_000_000)])
    got = _x16(wrapper, t, np.float64)
    pos = t > 0
    err = _ulp64(got[pos], np.log1p(t[pos].astype(np.longdouble)))
    worst = f"{float(err.max()):.2f} ulp at t = {t[pos][err.argmax()]!r}"
    assert err.max() <= 2.0, f"max error {worst}"
    assert np.all(got[~pos] == 0)
    special = _x16(wrapper, np.array([np.nan, 1.0, 15.0]), np.float64)
    assert np.isnan(special[0]) and special[1] == np.log(2.0) and special[2] == np.log(16.0)
