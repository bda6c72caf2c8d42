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
