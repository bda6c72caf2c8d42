"""SGD.fused_gradients: the weight gradient goes into the momentum buffer by one
gemm (beta = momentum) and step() finishes in one pass; torch's rule holds
(float64 to rounding) with dampening and weight decay; .grad semantics."""
import itertools

import numpy as np
import pytest

from pyce import _blas
import pyce.nn as nn
import pyce.optim as optim
import pyce.train as train

pytestmark = pytest.mark.skipif(_blas.gemm(np.float64) is None,
                                reason="NumPy's BLAS is not its bundled scipy-openblas")

OPTIONS = [dict(momentum=0.9, dampening=d, weight_decay=wd)
           for d, wd in itertools.product([0.0, 0.3], [0.0, 0.01])]


def _batches(dtype, steps=4):
    rng = np.random.default_rng(5)
    return [(rng.standard_normal((9, 6)).astype(dtype), rng.standard_normal((9, 4)).astype(dtype))
            for _ in range(steps)]


def _train(opts, dtype, fused, order="F"):
    lin = nn.Linear(6, 4, dtype=dtype, rng=0)
    assert lin.weight.data.flags.f_contiguous  # Linear's layout (its docstring)
    if order == "C":  # a C-ordered weight the caller assigned takes the other gemm form
        lin.weight.data = np.ascontiguousarray(lin.weight.data)
        lin.weight.grad = np.zeros_like(lin.weight.data)
    opt = optim.SGD(lin.parameters(), lr=0.1, **opts)
    ctx = opt.fused_gradients() if fused else _null()
    with ctx:
        for x, g in _batches(dtype):
            opt.zero_grad()
            lin.forward(x)
            lin.backward(g, input_grad=False)
            opt.step()
    return lin, opt


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("order", ["F", "C"])
@pytest.mark.parametrize("opts", OPTIONS, ids=str)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_steps_equal_the_plain_steps(opts, dtype, order):
    plain, popt = _train(opts, dtype, fused=False, order=order)
    fused, fopt = _train(opts, dtype, fused=True, order=order)
    tol = dict(rtol=1e-13, atol=1e-15) if dtype == np.float64 else dict(rtol=2e-6, atol=2e-7)
    for k, v in plain.state_dict().items():
        np.testing.assert_allclose(fused.state_dict()[k], v, **tol)
    for k, v in popt.state_dict().items():
        if isinstance(v, np.ndarray):
            np.testing.assert_allclose(fopt.state_dict()[k], v, **tol)
    # after the context the fused weight's grad reads as zeros, the bias's is kept
    assert not fused.weight.grad.any() and fused.bias.grad.any()


def test_fused_gradient_is_not_stored_and_misuse_is_an_error():
    lin = nn.Linear(6, 4, dtype=np.float64, rng=0)
    opt = optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
    (x, g), = _batches(np.float64, 1)
    with opt.fused_gradients():
        opt.zero_grad()
        lin.forward(x)
        lin.backward(g)
        with pytest.raises(RuntimeError, match="momentum buffer"):
            lin.weight.grad
        with pytest.raises(RuntimeError, match="zero_grad"):
            lin.backward(g)
        opt.step()
        with pytest.raises(RuntimeError, match="step"):
            opt.step()


def test_nesterov_and_plain_sgd_keep_the_gradient():
    for kw in (dict(momentum=0.9, nesterov=True), dict(momentum=0.0)):
        lin = nn.Linear(6, 4, dtype=np.float64, rng=0)
        opt = optim.SGD(lin.parameters(), lr=0.1, **kw)
        (x, g), = _batches(np.float64, 1)
        with opt.fused_gradients():
            opt.zero_grad()
            lin.forward(x)
            lin.backward(g)
            np.testing.assert_allclose(lin.weight.grad, g.T @ x, rtol=1e-14)
            opt.step()


def test_fit_takes_the_fused_path_with_momentum_sgd():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((40, 5)), rng.integers(0, 3, 40)
    model = nn.mlp([5, 6, 3], dtype=np.float64, rng=0)
    train.fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
              x, y, epochs=1, batch_size=8, verbose=0)
    assert not model[0].weight.grad.any() and model[0].bias.grad.any()
