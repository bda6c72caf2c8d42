"""Core cross-entropy: against the float64 reference, finite differences, the
published worked example, the reductions' relations, edge numerics and bad input.

Tolerances: float64 results agree with the float64 reference to ~1e-12
relative; float32 results (exp in float32 within 2 ulp, sums in float64) agree
with the float64 reference run on the same values to ~2e-6 relative for
losses and ~1e-6 of the gradient's scale (grad_output / denominator).
"""
import os
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest

import pyce
import pyce.reference as ref

DTYPES = [np.float32, np.float64]
REDUCTIONS = ["mean", "sum", "none"]


def tol(dtype):
    return dict(rtol=2e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


def make(rng, n, c, dtype, scale=3.0):
    x = (rng.standard_normal((n, c)) * scale).astype(dtype)
    t = rng.integers(0, c, n)
    return x, t


# ---------------------------------------------------------------- worked example

def test_published_worked_example():
    # fastai / PyTorch worked example: these numbers come from the publication, not from pyce
    logits = np.array([[-1.6453, 1.8893], [1.9800, 1.7681], [2.8183, 4.6643],
                       [-0.3635, -0.0614], [0.4064, -0.4668], [-3.3801, 3.2484]])
    target = np.array([0, 1, 0, 1, 1, 0])
    expected = [3.5634, 0.8047, 1.9925, 0.5534, 1.2222, 6.6298]
    for dt in DTYPES:
        x = logits.astype(dt)
        np.testing.assert_allclose(pyce.cross_entropy(x, target, reduction="none"), expected,
                                   atol=1e-4)
        np.testing.assert_allclose(pyce.cross_entropy(x, target), 2.4610, atol=1e-4)


# ---------------------------------------------------------------- vs reference

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,c", [(1, 1), (1, 5), (3, 1), (4, 2), (7, 3), (64, 10), (33, 17),
                                 (5, 1000), (2, 4099)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_against_float64_reference(dtype, n, c, reduction):
    rng = np.random.default_rng(n * 1000 + c)
    x, t = make(rng, n, c, dtype)
    x64 = x.astype(np.float64)
    l_ref, g_ref = ref.cross_entropy_and_grad(x64, t, reduction=reduction)
    loss, grad = pyce.cross_entropy_and_grad(x, t, reduction=reduction)
    assert grad.dtype == dtype and grad.shape == x.shape
    assert np.asarray(loss).dtype == dtype
    np.testing.assert_allclose(np.asarray(loss, np.float64), l_ref, **tol(dtype))
    np.testing.assert_allclose(grad, g_ref, **tol(dtype))
    np.testing.assert_allclose(np.asarray(pyce.cross_entropy(x, t, reduction=reduction), np.float64),
                               l_ref, **tol(dtype))
    np.testing.assert_allclose(pyce.cross_entropy_backward(x, t, reduction=reduction), g_ref,
                               **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_scalar_results_are_numpy_scalars_of_input_dtype(dtype):
    x, t = make(np.random.default_rng(0), 8, 4, dtype)
    for red in ("mean", "sum"):
        loss = pyce.cross_entropy(x, t, reduction=red)
        assert isinstance(loss, np.generic) and loss.dtype == dtype
        loss2, _ = pyce.cross_entropy_and_grad(x, t, reduction=red)
        assert isinstance(loss2, np.generic) and loss2.dtype == dtype


@pytest.mark.parametrize("int_dtype", [np.int8, np.uint8, np.int16, np.int32, np.int64, np.uint64])
def test_any_integer_target_dtype(int_dtype):
    x, t = make(np.random.default_rng(1), 20, 7, np.float64)
    expect = ref.cross_entropy(x, t)
    assert pyce.cross_entropy(x, t.astype(int_dtype)) == pytest.approx(expect, rel=1e-13)


def test_nested_lists_are_accepted():
    x = [[1.0, 2.0, 3.0], [0.5, 0.1, -1.0]]
    assert pyce.cross_entropy(x, [2, 0]) == pytest.approx(ref.cross_entropy(np.array(x), [2, 0]))


# ---------------------------------------------------------------- finite differences

def fd4(f, x, h=1e-4):
    """4th-order central differences of scalar f at every element of x (float64)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        xs = []
        for k in (2, 1, -1, -2):
            xk = x.copy()
            xk[i] += k * h
            xs.append(float(f(xk)))
        g[i] = (-xs[0] + 8 * xs[1] - 8 * xs[2] + xs[3]) / (12 * h)
    return g


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("n,c", [(1, 1), (3, 2), (5, 7)])
def test_gradient_matches_finite_differences(reduction, n, c):
    x, t = make(np.random.default_rng(7), n, c, np.float64, scale=2.0)
    num = fd4(lambda z: pyce.cross_entropy(z, t, reduction=reduction), x)
    _, grad = pyce.cross_entropy_and_grad(x, t, reduction=reduction)
    np.testing.assert_allclose(grad, num, rtol=1e-7, atol=1e-9)


def test_none_gradient_matches_finite_differences_with_grad_output():
    x, t = make(np.random.default_rng(8), 4, 5, np.float64)
    g_out = np.array([0.5, -2.0, 1.5, 3.0])
    num = fd4(lambda z: np.dot(g_out, pyce.cross_entropy(z, t, reduction="none")), x)
    grad = pyce.cross_entropy_backward(x, t, grad_output=g_out, reduction="none")
    np.testing.assert_allclose(grad, num, rtol=1e-7, atol=1e-9)


def test_float32_gradient_matches_finite_differences_of_float64():
    x, t = make(np.random.default_rng(9), 6, 9, np.float32)
    num = fd4(lambda z: ref.cross_entropy(z, t), x.astype(np.float64))
    _, grad = pyce.cross_entropy_and_grad(x, t)
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------- reductions' relations

@pytest.mark.parametrize("dtype", DTYPES)
def test_reductions_relations(dtype):
    x, t = make(np.random.default_rng(3), 50, 6, dtype)
    none = pyce.cross_entropy(x, t, reduction="none").astype(np.float64)
    s = float(pyce.cross_entropy(x, t, reduction="sum"))
    m = float(pyce.cross_entropy(x, t, reduction="mean"))
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    assert s == pytest.approx(none.sum(), rel=rtol)
    assert m == pytest.approx(s / 50, rel=rtol)
    g_sum = pyce.cross_entropy_backward(x, t, reduction="sum")
    g_mean = pyce.cross_entropy_backward(x, t, reduction="mean")
    np.testing.assert_allclose(g_mean * 50, g_sum, rtol=rtol, atol=1e-7)
    g_out = np.linspace(-2, 3, 50)
    g_none = pyce.cross_entropy_backward(x, t, grad_output=g_out.astype(dtype), reduction="none")
    np.testing.assert_allclose(g_none, g_out[:, None] * g_sum, rtol=rtol, atol=1e-6)
    g_half = pyce.cross_entropy_backward(x, t, grad_output=0.5, reduction="sum")
    np.testing.assert_allclose(g_half, 0.5 * g_sum, rtol=rtol, atol=1e-7)


def test_rows_of_the_gradient_sum_to_zero():
    x, t = make(np.random.default_rng(4), 100, 30, np.float64)
    _, g = pyce.cross_entropy_and_grad(x, t, reduction="sum")
    np.testing.assert_allclose(g.sum(axis=1), 0, atol=1e-14)


# ---------------------------------------------------------------- edge numerics

@pytest.mark.parametrize("dtype", DTYPES)
def test_huge_logits_are_finite(dtype):
    x = np.array([[1e30, -1e30, 0.0], [1e30, 1e30, -1e30], [-1e30, -1e30, -1e30]], dtype)
    t = np.array([1, 0, 2])
    loss, grad = pyce.cross_entropy_and_grad(x, t, reduction="none")
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(loss, [2e30, np.log(2), np.log(3)], rtol=1e-6)
    np.testing.assert_allclose(grad, [[1, -1, 0], [-0.5, 0.5, 0], [1 / 3, 1 / 3, -2 / 3]],
                               atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_minus_inf_logits_are_masked_classes(dtype):
    x = np.array([[-np.inf, 1.0, 2.0, -np.inf], [0.0, -np.inf, -np.inf, -np.inf]], dtype)
    t = np.array([2, 0])
    loss, grad = pyce.cross_entropy_and_grad(x, t, reduction="none")
    p = np.exp([1.0, 2.0]) / np.exp([1.0, 2.0]).sum()
    np.testing.assert_allclose(loss, [-np.log(p[1]), 0.0], atol=1e-6)
    assert grad[0, 0] == 0 and grad[0, 3] == 0 and np.all(grad[1] == 0)
    np.testing.assert_allclose(grad[0, 1:3], [p[0], p[1] - 1], atol=1e-6)
    np.testing.assert_allclose(pyce.softmax(x)[0], [0, p[0], p[1], 0], atol=1e-7)
    # the target itself at -inf: infinite loss, reported as such
    assert pyce.cross_entropy(x, np.array([0, 0]), reduction="none")[0] == np.inf


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_stays_in_its_row(dtype):
    rng = np.random.default_rng(5)
    x, t = make(rng, 6, 5, dtype)
    x[2, 3] = np.nan
    x[4, 0] = np.nan
    loss, grad = pyce.cross_entropy_and_grad(x, t, reduction="none")
    assert np.isnan(loss[2]) and np.isnan(loss[4])
    assert np.all(np.isnan(grad[2])) and np.all(np.isnan(grad[4]))
    ok = [0, 1, 3, 5]
    l_ref, g_ref = ref.cross_entropy_and_grad(x[ok].astype(np.float64), t[ok], reduction="none")
    np.testing.assert_allclose(loss[ok], l_ref, **tol(dtype))
    np.testing.assert_allclose(grad[ok], g_ref, **tol(dtype))
    assert np.isnan(pyce.cross_entropy(x, t))


@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_batch(dtype):
    x = np.zeros((0, 4), dtype)
    t = np.zeros(0, np.int64)
    assert np.isnan(pyce.cross_entropy(x, t))
    assert pyce.cross_entropy(x, t, reduction="sum") == 0
    assert pyce.cross_entropy(x, t, reduction="none").shape == (0,)
    loss, grad = pyce.cross_entropy_and_grad(x, t)
    assert np.isnan(loss) and grad.shape == (0, 4) and grad.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_single_class(dtype):
    x = np.array([[3.0], [-1e30], [0.0]], dtype)
    loss, grad = pyce.cross_entropy_and_grad(x, np.zeros(3, int), reduction="none")
    assert np.all(loss == 0) and np.all(grad == 0)


def test_unbatched_input():
    x = np.array([0.2, -1.0, 3.0])
    loss = pyce.cross_entropy(x, np.int64(2))
    assert loss == pytest.approx(ref.cross_entropy(x[None], np.array([2])))
    none = pyce.cross_entropy(x, 2, reduction="none")
    assert np.shape(none) == ()
    loss2, grad = pyce.cross_entropy_and_grad(x, 2)
    assert grad.shape == (3,)
    np.testing.assert_allclose(grad, ref.cross_entropy_and_grad(x[None], [2])[1][0])


# ---------------------------------------------------------------- memory layouts

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["fortran", "transposed", "strided_rows", "strided_cols",
                                    "readonly", "negative_strides"])
def test_memory_layouts(dtype, layout):
    rng = np.random.default_rng(11)
    base = (rng.standard_normal((40, 26)) * 3).astype(dtype)
    if layout == "fortran":
        x = np.asfortranarray(base)
    elif layout == "transposed":
        x = np.ascontiguousarray(base.T).T
    elif layout == "strided_rows":
        x = np.repeat(base, 2, axis=0)[::2]
    elif layout == "strided_cols":
        x = np.repeat(base, 3, axis=1)[:, ::3]
    elif layout == "readonly":
        x = base.copy()
        x.setflags(write=False)
    else:
        x = base[::-1, ::-1].copy()[::-1, ::-1]
    t = rng.integers(0, 26, 40)
    l_ref, g_ref = ref.cross_entropy_and_grad(base.astype(np.float64), t, reduction="none")
    loss, grad = pyce.cross_entropy_and_grad(x, t, reduction="none")
    np.testing.assert_allclose(loss, l_ref, **tol(dtype))
    np.testing.assert_allclose(grad, g_ref, **tol(dtype))
    np.testing.assert_allclose(pyce.softmax(x), ref.softmax(base.astype(np.float64)), **tol(dtype))


# ---------------------------------------------------------------- out=, overwrite_input, no mutation

def test_nothing_is_mutated():
    x, t = make(np.random.default_rng(12), 30, 8, np.float32)
    x0, t0 = x.copy(), t.copy()
    w = np.linspace(0.5, 2, 8)
    w0 = w.copy()
    pyce.cross_entropy(x, t, weight=w)
    pyce.cross_entropy_and_grad(x, t, weight=w, label_smoothing=0.1)
    pyce.cross_entropy_backward(x, t, weight=w, reduction="none", grad_output=np.ones(30))
    pyce.softmax(x)
    pyce.log_softmax(x)
    assert np.array_equal(x, x0) and np.array_equal(t, t0) and np.array_equal(w, w0)


def test_out_receives_the_gradient():
    x, t = make(np.random.default_rng(13), 30, 8, np.float32)
    out = np.empty_like(x)
    loss, grad = pyce.cross_entropy_and_grad(x, t, out=out)
    assert grad is out
    np.testing.assert_allclose(out, pyce.cross_entropy_backward(x, t), rtol=1e-6, atol=1e-8)
    out2 = np.empty_like(x)
    assert pyce.cross_entropy_backward(x, t, out=out2) is out2
    out_f = np.empty_like(x, order="F")
    _, g_f = pyce.cross_entropy_and_grad(x, t, out=out_f)
    assert g_f is out_f
    # a Fortran-ordered out= takes the general lanes path (row sums and log in
    # float64), a C-ordered one the few-class fast path (float32 sums and log on
    # AVX-512 or AVX2): equal within the float32 bound, not bitwise
    np.testing.assert_allclose(out_f, out, rtol=1e-5, atol=1e-12)


def test_overwrite_input():
    x, t = make(np.random.default_rng(14), 30, 8, np.float64)
    expect_loss, expect_grad = pyce.cross_entropy_and_grad(x, t, label_smoothing=0.2)
    loss, grad = pyce.cross_entropy_and_grad(x, t, label_smoothing=0.2, overwrite_input=True)
    assert grad is x and np.shares_memory(grad, x)
    assert loss == expect_loss
    np.testing.assert_array_equal(x, expect_grad)


def test_overwrite_input_refuses_converted_or_readonly_input():
    with pytest.raises(ValueError, match="overwrite_input"):
        pyce.cross_entropy_and_grad([[1.0, 2.0]], [0], overwrite_input=True)
    x = np.ones((2, 3))
    x.setflags(write=False)
    with pytest.raises(ValueError, match="read-only"):
        pyce.cross_entropy_and_grad(x, [0, 1], overwrite_input=True)


def test_out_overlapping_input_is_refused():
    x = np.ones((4, 6))
    with pytest.raises(ValueError, match="overlaps"):
        pyce.cross_entropy_and_grad(x[:, :3], [0, 1, 2, 0], out=x[:, 3:])


# ---------------------------------------------------------------- bad input

def test_target_out_of_range_names_value_and_position():
    x = np.zeros((4, 3))
    with pytest.raises(IndexError, match=r"target\[2\] = 3 .*3 classes"):
        pyce.cross_entropy(x, [0, 1, 3, 1])
    with pytest.raises(IndexError, match=r"target\[0\] = -1"):
        pyce.cross_entropy_and_grad(x, [-1, 1, 2, 1])
    with pytest.raises(IndexError, match=r"target\[1, 2\] = 7"):
        pyce.cross_entropy(np.zeros((2, 3, 4)), [[0, 0, 0, 0], [0, 0, 7, 0]])


@pytest.mark.parametrize("call", [
    lambda: pyce.cross_entropy(np.zeros((4, 3)), [0, 1, 2]),
    lambda: pyce.cross_entropy(np.zeros((4, 3)), [[0, 1, 2, 0]]),
    lambda: pyce.cross_entropy(np.zeros(3), [0, 1, 2]),
])
def test_target_shape_mismatch(call):
    with pytest.raises(ValueError, match="target"):
        call()


def test_unknown_reduction_lists_valid_ones():
    with pytest.raises(ValueError, match=r"reduction.*'mean', 'sum', 'none'.*'avg'"):
        pyce.cross_entropy(np.zeros((2, 2)), [0, 1], reduction="avg")


def test_zero_dim_input():
    with pytest.raises(ValueError, match="input.*0-d"):
        pyce.cross_entropy(np.float64(1.0), 0)


@pytest.mark.parametrize("bad", [np.zeros((2, 2), np.int64), np.zeros((2, 2), np.float16),
                                 np.zeros((2, 2), np.complex128), np.zeros((2, 2), bool)])
def test_non_float_input_is_a_type_error(bad):
    with pytest.raises(TypeError, match=f"input.*{bad.dtype}"):
        pyce.cross_entropy(bad, [0, 1])


def test_ragged_lists():
    with pytest.raises(ValueError, match="input"):
        pyce.cross_entropy([[1.0, 2.0], [3.0]], [0, 1])


def test_out_of_wrong_shape_or_dtype():
    x = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match=r"out.*shape"):
        pyce.cross_entropy_and_grad(x, [0, 1, 2], out=np.zeros((3, 5), np.float32))
    with pytest.raises(ValueError, match=r"out.*dtype"):
        pyce.cross_entropy_backward(x, [0, 1, 2], out=np.zeros((3, 4), np.float64))
    with pytest.raises(TypeError, match="out"):
        pyce.cross_entropy_backward(x, [0, 1, 2], out=[[0.0] * 4] * 3)


@pytest.mark.parametrize("n_threads", [0, -1])
def test_bad_n_threads(n_threads):
    with pytest.raises(ValueError, match="n_threads"):
        pyce.cross_entropy(np.zeros((2, 2)), [0, 1], n_threads=n_threads)
    with pytest.raises(TypeError, match="n_threads"):
        pyce.cross_entropy(np.zeros((2, 2)), [0, 1], n_threads=1.5)


def test_bad_grad_output():
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match="grad_output"):
        pyce.cross_entropy_backward(x, [0, 1, 2], grad_output=np.ones(3), reduction="mean")
    with pytest.raises(ValueError, match="grad_output"):
        pyce.cross_entropy_backward(x, [0, 1, 2], grad_output=np.ones(4), reduction="none")


# ---------------------------------------------------------------- softmax / log_softmax

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", [((5,), 0), ((7, 9), -1), ((7, 9), 0), ((3, 4, 5), 1),
                                        ((2, 3, 4, 5), 2), ((0, 3), -1), ((4, 1), 1)])
def test_softmax_and_log_softmax(dtype, shape, axis):
    x = (np.random.default_rng(2).standard_normal(shape) * 5).astype(dtype)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(pyce.softmax(x, axis), ref.softmax(x64, axis), **tol(dtype))
    np.testing.assert_allclose(pyce.log_softmax(x, axis), ref.log_softmax(x64, axis), **tol(dtype))
    out = np.empty_like(x)
    assert pyce.log_softmax(x, axis, out=out) is out
    np.testing.assert_allclose(out, ref.log_softmax(x64, axis), **tol(dtype))


def test_softmax_in_place_and_errors():
    x = np.random.default_rng(3).standard_normal((4, 6))
    expect = ref.softmax(x)
    assert pyce.softmax(x, out=x) is x
    np.testing.assert_allclose(x, expect, rtol=1e-13)
    with pytest.raises(ValueError, match="axis"):
        pyce.softmax(x, axis=2)
    with pytest.raises(TypeError, match="x.*int64"):
        pyce.log_softmax(np.arange(3))


# ---------------------------------------------------------------- naive formulation

def test_naive_formulation_is_biased_and_overflows():
    rng = np.random.default_rng(0)
    x, t = make(rng, 200, 1000, np.float64, scale=10)
    exact = ref.cross_entropy(x, t)
    naive = ref.naive_cross_entropy(x, t)
    assert abs(naive - exact) > 0.1  # the 1e-6 caps confident mistakes at 13.8
    with np.errstate(over="ignore", invalid="ignore"):
        assert not np.isfinite(ref.naive_cross_entropy(np.array([[1000.0, 0.0]]), [0]))
    assert np.isfinite(pyce.cross_entropy(np.array([[1000.0, 0.0]]), [0]))


# ---------------------------------------------------------------- torch

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_against_torch(dtype, reduction):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, t = make(np.random.default_rng(21), 64, 13, dtype)
    xt = torch.tensor(x, requires_grad=True)
    lt = F.cross_entropy(xt, torch.tensor(t), reduction=reduction)
    lt.backward(torch.ones_like(lt))
    loss, grad = pyce.cross_entropy_and_grad(x, t, reduction=reduction)
    t_tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(loss, lt.detach().numpy(), **t_tol)
    np.testing.assert_allclose(grad, xt.grad.numpy(), **t_tol)


# ---------------------------------------------------------------- build and import

def test_show_config_names_what_the_build_has(capsys):
    pyce.show_config()
    text = capsys.readouterr().out
    for word in ("OpenMP", "SIMD path", "compile flags", "Cython", "NumPy"):
        assert word in text
    assert "-march=native" not in text


def test_unbuilt_source_tree_import_error_says_how_to_build():
    root = pathlib.Path(__file__).resolve().parents[2]
    if list((root / "pyce").glob("_ce*.so")) or list((root / "pyce").glob("_ce*.pyd")):
        pytest.skip("the source tree holds a built extension (in-place build)")
    env = dict(os.environ, PYTHONPATH=str(root))
    proc = subprocess.run([sys.executable, "-c", "import pyce"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "pip install ." in proc.stderr


# ---------------------------------------------------------------- gradients beyond the dtype's range

@pytest.mark.parametrize("c", [3, 40])   # the 16-rows-across-lanes path and the row path
def test_gradient_overflow_rounds_to_inf_not_nan(c):
    # grad_output 1e39 is beyond float32: entries overflow to +-inf as IEEE rounding says,
    # a masked class (p = 0) keeps gradient 0, and finite entries stay finite
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, c)).astype(np.float32)
    x[0, 1] = -np.inf
    t = rng.integers(0, c, 5)
    t[0] = 0
    g = pyce.cross_entropy_backward(x, t, grad_output=1e39, reduction="sum")
    with np.errstate(over="ignore"):
        expect = ref.cross_entropy_backward(x.astype(np.float64), t, grad_output=1e39,
                                            reduction="sum").astype(np.float32)
    assert not np.any(np.isnan(g)) and g[0, 1] == 0
    np.testing.assert_array_equal(np.isinf(g), np.isinf(expect))
    finite = np.isfinite(expect)
    np.testing.assert_allclose(g[finite], expect[finite], rtol=1e-5)


def test_tiny_mean_denominator_with_smoothing_overflows_cleanly():
    # found by the long fuzz run: a class weight of 3.5e-180 as the only target makes the
    # 'mean' gradient ~1e179: -inf/+inf in float32, not inf - inf = NaN
    x = np.zeros(2, np.float32)
    w = np.array([3.48876787e-180, 1.0])
    g = pyce.cross_entropy_backward(x, np.int64(0), weight=w, label_smoothing=1.0)
    with np.errstate(over="ignore"):
        expect = ref.cross_entropy_backward(x.astype(np.float64), np.int64(0), weight=w,
                                            label_smoothing=1.0).astype(np.float32)
    np.testing.assert_array_equal(g, expect)
    assert np.all(np.isinf(g))


# ---------------------------------------------------------------- float32 totals beyond float32
# (Found by `pyce train --reduction sum`: a diverging network printed NumPy's
# "overflow encountered in cast" from inside pyce/_core.py.)
@pytest.mark.parametrize("order", ["C", "F"])  # the Cython fast path, and _core's general path
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_float32_loss_overflow_is_inf_without_warning(reduction, order):
    x = np.zeros((4, 2), np.float32, order=order)
    x[:, 0], x[:, 1] = 3e38, -3e38
    y = np.ones(4, np.int64)
    # float64 math: each row's loss is 6e38, beyond float32's max (3.4e38)
    assert 6e38 > float(np.finfo(np.float32).max)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = pyce.cross_entropy(x, y, reduction=reduction)
        loss2, grad = pyce.cross_entropy_and_grad(x, y, reduction=reduction)
    assert loss.dtype == np.float32 and loss == np.inf and loss2 == np.inf
    assert np.all(np.isfinite(grad))


def test_float32_sum_near_the_limit_stays_finite():
    # 4 rows of 6e37 each: 2.4e38 fits in float32; the float64 total is exact
    x = np.zeros((4, 2), np.float32)
    x[:, 0] = 6e37
    y = np.ones(4, np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = pyce.cross_entropy(x, y, reduction="sum")
    np.testing.assert_allclose(float(loss), 4 * float(np.float32(6e37)), rtol=1e-6)


# ---------------------------------------------------------------- 0-d softmax (torch's rule)

@pytest.mark.parametrize("impl", [pyce, ref], ids=["fast", "reference"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_of_0d_input_is_one_class(impl, dtype):
    # torch 2.13: softmax(tensor(3.)) = 1., log_softmax = 0., NaN/inf give NaN; axis in [-1, 0]
    for fn, want in ((impl.softmax, 1.0), (impl.log_softmax, 0.0)):
        r = fn(np.array(3.5, dtype))
        assert r.shape == () and r.dtype == dtype and r == want
        assert fn(dtype(-1e30), axis=0) == want
        with np.errstate(invalid="ignore"):
            assert np.isnan(fn(np.array(np.nan, dtype))) and np.isnan(fn(np.array(np.inf, dtype)))
        out = np.empty((), dtype)
        assert fn(np.array(2.0, dtype), out=out) is out and out == want
        with pytest.raises(ValueError, match="axis 1 is out of bounds"):
            fn(np.array(1.0, dtype), axis=1)


def test_softmax_of_0d_input_matches_torch():
    torch = pytest.importorskip("torch")
    for v in (3.0, -2.0, np.inf, np.nan):
        for fn in ("softmax", "log_softmax"):
            want = getattr(torch, fn)(torch.tensor(v, dtype=torch.float64), 0).item()
            with np.errstate(invalid="ignore"):
                got = float(getattr(pyce, fn)(np.float64(v)))
            assert got == want or (np.isnan(got) and np.isnan(want)), (fn, v, got, want)


# ---------------------------------------------------------------- which targets are accepted

@pytest.mark.parametrize("impl", [pyce, ref], ids=["fast", "reference"])
@pytest.mark.parametrize("tdtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64])
def test_every_integer_target_dtype_is_accepted(impl, tdtype):
    x = np.random.default_rng(0).standard_normal((5, 4))
    t = np.array([0, 3, 1, 2, 2])
    assert impl.cross_entropy(x, t.astype(tdtype)) == pytest.approx(impl.cross_entropy(x, t), rel=1e-15)


@pytest.mark.parametrize("impl", [pyce, ref], ids=["fast", "reference"])
@pytest.mark.parametrize("shape", [(5, 4), (4,), (2, 4, 3)])
def test_one_hot_integer_target_is_rejected_with_a_hint(impl, shape):
    x = np.zeros(shape)
    onehot = np.zeros(shape, np.int64)
    with pytest.raises(ValueError, match=r"looks like one-hot labels.*argmax.*float class probabilities"):
        impl.cross_entropy(x, onehot)
    # the hint's two ways both work
    axis = 0 if len(shape) == 1 else 1
    impl.cross_entropy(x, onehot.argmax(axis=axis))
    impl.cross_entropy(x, np.full(shape, 1.0 / shape[axis]))


# ---------------------------------------------------------------- weights on the Cython fast entry
# A C-contiguous float64 class weight (C,) or sample weight (N,) is checked and run by
# _ce.fast_2d; a list of the same values takes the general path (pyce._validate): both
# must give the same bits, and bad values the general path's errors.

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", [3, 10, 40])   # few-class, lanes and row kernels
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_weight_arrays_on_the_fast_entry_match_the_general_path(dtype, c, reduction, smoothing,
                                                                monkeypatch):
    import pyce._core as core
    general = core.check_ce_fast
    calls = []
    monkeypatch.setattr(core, "check_ce_fast", lambda *a, **k: calls.append(1) or general(*a, **k))
    rng = np.random.default_rng(c)
    x, t = make(rng, 37, c, dtype)
    t[5] = -100
    w = rng.uniform(0.1, 2.0, c)
    sw = rng.uniform(0.0, 3.0, 37)
    cases = [dict(sample_weight=sw)] if smoothing else [dict(weight=w), dict(sample_weight=sw),
                                                        dict(weight=w, sample_weight=sw)]
    for kw in cases:
        calls.clear()
        as_lists = {k: v.tolist() for k, v in kw.items()}
        opts = dict(reduction=reduction, label_smoothing=smoothing)
        loss, grad = pyce.cross_entropy_and_grad(x, t, **kw, **opts)
        assert not calls, "float64 weight arrays should not need the general path"
        loss_l, grad_l = pyce.cross_entropy_and_grad(x, t, **as_lists, **opts)
        assert calls, "lists should take the general path"
        np.testing.assert_array_equal(loss, loss_l, err_msg=str(kw.keys()))
        np.testing.assert_array_equal(grad, grad_l, err_msg=str(kw.keys()))
        np.testing.assert_array_equal(pyce.cross_entropy(x, t, **kw, **opts), loss_l)
        if reduction != "none":
            np.testing.assert_array_equal(
                pyce.cross_entropy_backward(x, t, 0.5, **kw, **opts),
                pyce.cross_entropy_backward(x, t, 0.5, **as_lists, **opts))
        want = ref.cross_entropy(x.astype(np.float64), t, **kw, **opts)
        np.testing.assert_allclose(loss, want, **tol(dtype))


def test_bad_weight_arrays_on_the_fast_entry_get_the_general_errors():
    x = np.zeros((3, 4))
    t = np.array([0, 1, 2])
    with pytest.raises(ValueError, match="sample_weight"):
        pyce.cross_entropy(x, t, sample_weight=np.array([1.0, -1.0, 1.0]))
    with pytest.raises((ValueError, TypeError), match="sample_weight"):
        pyce.cross_entropy(x, t, sample_weight=np.array([1.0, np.nan, 1.0]))
    with pytest.raises((ValueError, TypeError), match="weight"):
        pyce.cross_entropy(x, t, weight=np.array([1.0, np.inf, 1.0, 1.0]))
    with pytest.raises(ValueError, match="weight"):
        pyce.cross_entropy(x, t, weight=np.ones(3))
    # the caller's arrays are not touched
    w, sw = np.array([1.0, -2.0, 0.5, 1.0]), np.array([1.0, 0.0, 2.0])
    w0, sw0 = w.copy(), sw.copy()
    pyce.cross_entropy_and_grad(x, t, weight=w, sample_weight=sw)
    np.testing.assert_array_equal(w, w0)
    np.testing.assert_array_equal(sw, sw0)
