"""pyce.reference is an independent oracle: plain NumPy end to end.

Every function of the compiled modules (pyce._ce, pyce._nnk, and whatever
module holds the ctypes BLAS lookup) is replaced by one that raises; the
reference must still return correct values -- checked against float64 values
computed here by hand with the formulas, not against the kernels -- and raise
the same exceptions as the fast functions (recorded before the replacement).
"""
import ctypes
import math
import sys

import numpy as np
import pytest

import pyce
import pyce.reference as ref


class CompiledCodeCalled(RuntimeError):
    pass


def _raiser(name):
    def raising(*args, **kwargs):
        raise CompiledCodeCalled(f"the reference called compiled code: {name}")
    return raising


def _compiled_modules():
    mods = [sys.modules[n] for n in ("pyce._ce", "pyce._nnk", "pyce._blas") if n in sys.modules]
    assert any(m.__name__ == "pyce._ce" for m in mods)
    return mods


def _block_compiled_code(monkeypatch):
    """Replace every function of the compiled modules (and every name bound to
    one elsewhere in pyce), the ctypes BLAS lookup and ctypes.CDLL itself."""
    compiled = _compiled_modules()
    names = {m.__name__ for m in compiled}
    for m in compiled:
        for attr, value in list(vars(m).items()):
            if callable(value) and not attr.startswith("__") and not isinstance(value, type):
                monkeypatch.setattr(m, attr, _raiser(f"{m.__name__}.{attr}"))
    for modname, m in list(sys.modules.items()):
        if not (modname == "pyce" or modname.startswith("pyce.")) or m is None:
            continue
        for attr, value in list(vars(m).items()):
            if getattr(value, "__module__", None) in names and callable(value):
                monkeypatch.setattr(m, attr, _raiser(f"{modname}.{attr}"))
    linear = sys.modules["pyce._linear"]
    if hasattr(linear, "_numpy_gemm"):
        monkeypatch.setattr(linear, "_numpy_gemm", _raiser("pyce._linear._numpy_gemm"))
    monkeypatch.setattr(ctypes, "CDLL", _raiser("ctypes.CDLL"))


@pytest.fixture
def no_compiled_code(monkeypatch):
    _block_compiled_code(monkeypatch)
    yield


def _lse(row):
    m = max(row)
    return m + math.log(sum(math.exp(v - m) for v in row))


def _softmax_rows(x):
    return np.array([[math.exp(v - _lse(row)) for v in row] for row in x])


X = np.array([[1.0, 2.0, 3.0, -1.0], [0.5, -2.0, 0.0, 4.0], [3.0, 3.0, -1.0, 0.0],
              [-0.5, 1.5, 2.5, 1.0]])
T = np.array([0, 3, -100, 2])
W = np.array([0.5, 2.0, 1.0, 3.0])


def test_the_fixture_really_blocks_the_fast_path(no_compiled_code):
    with pytest.raises(CompiledCodeCalled):
        pyce.cross_entropy(X, T)
    with pytest.raises(CompiledCodeCalled):
        pyce.softmax(X)
    with pytest.raises(CompiledCodeCalled):
        ctypes.CDLL("libc.so.6")


def test_reference_values_without_compiled_code(no_compiled_code):
    keep = [i for i in range(4) if T[i] != -100]
    rows = [W[T[i]] * (_lse(X[i]) - X[i, T[i]]) for i in keep]
    denom = sum(W[T[i]] for i in keep)
    assert ref.cross_entropy(X, T, weight=W) == pytest.approx(sum(rows) / denom, rel=1e-14)
    assert ref.cross_entropy(X, T, weight=W, reduction="sum") == pytest.approx(sum(rows), rel=1e-14)
    p = _softmax_rows(X)
    want = np.zeros_like(X)
    for i in keep:
        want[i] = W[T[i]] * (p[i] - np.eye(4)[T[i]]) / denom
    loss, grad = ref.cross_entropy_and_grad(X, T, weight=W)
    np.testing.assert_allclose(grad, want, rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(ref.cross_entropy_backward(X, T, 2.0, weight=W), 2 * want,
                               rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(ref.softmax(X), p, rtol=1e-14)
    np.testing.assert_allclose(ref.log_softmax(X, axis=0),
                               np.log(_softmax_rows(X.T)).T, rtol=1e-13)


def test_reference_probability_targets_and_sample_weight_without_compiled_code(no_compiled_code):
    q = np.abs(np.sin(np.arange(16.0).reshape(4, 4))) + 0.1
    q /= q.sum(axis=1, keepdims=True)
    v = np.array([1.0, 0.5, 2.0, 0.0])
    lp = np.log(_softmax_rows(X))
    rows = [-v[i] * float(np.dot(q[i], lp[i])) for i in range(4)]
    assert ref.cross_entropy(X, q, sample_weight=v) == pytest.approx(sum(rows) / v.sum(), rel=1e-14)
    np.testing.assert_allclose(ref.cross_entropy(X, q, reduction="none"),
                               [-float(np.dot(q[i], lp[i])) for i in range(4)], rtol=1e-14)


def test_reference_linear_without_compiled_code(no_compiled_code):
    rng = np.random.default_rng(0)
    h, w, b = rng.standard_normal((5, 3)), rng.standard_normal((4, 3)), rng.standard_normal(4)
    t = np.array([0, 3, 1, 1, 2])
    logits = [[sum(h[i, k] * w[j, k] for k in range(3)) + b[j] for j in range(4)] for i in range(5)]
    want = sum(_lse(logits[i]) - logits[i][t[i]] for i in range(5)) / 5
    loss, dh, dw, db = ref.linear_cross_entropy_and_grad(h, w, t, b)
    assert loss == pytest.approx(want, rel=1e-13)
    g = (_softmax_rows(logits) - np.eye(4)[t]) / 5
    np.testing.assert_allclose(dh, g @ w, rtol=1e-12)
    np.testing.assert_allclose(dw, g.T @ h, rtol=1e-12)
    np.testing.assert_allclose(db, g.sum(axis=0), rtol=1e-12, atol=1e-16)


x32 = X.astype(np.float32)
BAD_CALLS = [
    ("cross_entropy", (X, np.array([0, 4, 1, 1])), {}),                   # IndexError
    ("cross_entropy", (X, np.array([0, -3, 1, 1])), {"ignore_index": 7}),
    ("cross_entropy", (X, T), {"reduction": "avg"}),
    ("cross_entropy", (X, T.astype(np.float64)), {}),                     # shape of a float target
    ("cross_entropy", (X, np.eye(4, dtype=np.int64)), {}),                # one-hot hint
    ("cross_entropy", (X, np.full((4, 4), 0.25)), {"ignore_index": 1}),
    ("cross_entropy", (X, T.astype(str)), {}),
    ("cross_entropy", (X, T), {"weight": np.ones(3)}),
    ("cross_entropy", (X, T), {"weight": [1.0, np.inf, 1.0, 1.0]}),
    ("cross_entropy", (X, T), {"n_threads": 0}),
    ("cross_entropy", (X, T), {"n_threads": 1.5}),
    ("cross_entropy", (np.float64(1.0), T), {}),
    ("cross_entropy_backward", (X, T, np.ones(3)), {"reduction": "none"}),
    ("cross_entropy_and_grad", (X, T), {"out": np.empty((4, 4), np.float32)}),
    ("cross_entropy_and_grad", (x32, T), {"out": np.empty((4, 3), np.float32)}),
    ("cross_entropy_and_grad", (X.astype(np.int32), T), {}),
    ("softmax", (X,), {"axis": 2}),
    ("log_softmax", (X,), {"axis": 1.0}),
    ("softmax", (np.float32(1.0),), {"axis": 1}),
    ("linear_cross_entropy", (X, X[:, :3], T), {}),
    ("linear_cross_entropy", (X, X.astype(np.float32), T), {}),
    ("linear_cross_entropy", (X, X, np.array([0, 1, 2, 9])), {}),
    ("linear_cross_entropy", (X, X, T), {"chunk_size": 0}),
    ("linear_cross_entropy_and_grad", (X, X, T), {"bias": np.ones(3)}),
]


def _error(fn, args, kwargs):
    try:
        fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - recording whatever is raised
        return type(exc), str(exc)
    return None


def test_reference_raises_what_the_fast_functions_raise_without_compiled_code(monkeypatch):
    fast = [_error(getattr(pyce, name), args, kw) for name, args, kw in BAD_CALLS]
    assert all(e is not None and e[0] is not CompiledCodeCalled for e in fast)
    _block_compiled_code(monkeypatch)
    for (name, args, kw), want in zip(BAD_CALLS, fast):
        got = _error(getattr(ref, name), args, kw)
        assert got == want, f"{name}{kw}: fast raised {want}, the reference {got}"


def test_reference_module_imports_nothing_compiled():
    import ast
    tree = ast.parse(open(ref.__file__).read())
    imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"numpy", "pyce._validate"}, imported
    vtree = ast.parse(open(sys.modules["pyce._validate"].__file__).read())
    vimported = {a.name for node in ast.walk(vtree) if isinstance(node, ast.Import) for a in node.names}
    vimported |= {node.module for node in ast.walk(vtree) if isinstance(node, ast.ImportFrom)}
    assert vimported <= {"math", "numbers", "numpy"}, vimported


def test_reference_is_an_attribute_of_the_package():
    assert pyce.reference is ref
