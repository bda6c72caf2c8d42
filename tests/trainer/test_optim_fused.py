"""The fused one-pass optimizer kernels (pyce._nnk.sgd_step / adam_step, used by
pyce.optim) against the update rules written out in float64 NumPy and against
torch.optim (skipped without torch), for both dtypes and every option
combination; lazy zero_grad semantics; bad input."""
import itertools

import numpy as np
import pytest

import pyce.nn as nn
import pyce.optim as optim
from pyce import _nnk

# sizes around the vector widths (4/8/16 lanes) so both the vector body and
# the scalar tail of the kernels run; (37, 29) is 1073 elements
SHAPES = [(1,), (7,), (16,), (37, 29)]
STEPS = 4
# float32 against the float64 rule: a few float32 roundings per step, STEPS steps
TOL = {np.float32: dict(rtol=2e-6, atol=2e-6), np.float64: dict(rtol=1e-13, atol=1e-14)}

SGD_OPTIONS = [dict(momentum=mu, dampening=damp, nesterov=nes, weight_decay=wd)
               for mu, damp, nes, wd in itertools.product([0.0, 0.9], [0.0, 0.3], [False, True],
                                                          [0.0, 0.01])
               if not (nes and (mu == 0 or damp != 0))]
ADAM_OPTIONS = [dict(betas=b, weight_decay=wd, eps=eps)
                # beta1 = 0.3: lerp weight 0.7 >= 0.5 takes PyTorch's other lerp branch;
                # beta1 = 0: m is the gradient itself
                for b, wd, eps in itertools.product([(0.9, 0.999), (0.3, 0.95), (0.0, 0.9)],
                                                    [0.0, 0.1], [1e-8, 1e-3])]


def _params(dtype, seed=0, order="C"):
    # order "F": the 2-D parameter Fortran-ordered, as Linear stores its weight
    rng = np.random.default_rng(seed)
    return [nn.Parameter(np.array(rng.standard_normal(s), dtype, order=order), f"p{i}")
            for i, s in enumerate(SHAPES)]


def _grads(step, dtype):
    rng = np.random.default_rng(100 + step)
    return [rng.standard_normal(s).astype(dtype) for s in SHAPES]


def _train(opt, ps, dtype):
    for t in range(STEPS):
        opt.zero_grad()
        for p, g in zip(ps, _grads(t, dtype)):
            p.grad[...] = g
        opt.step()


def _sgd_rule(p0, grads, lr, momentum, dampening, nesterov, weight_decay):
    """torch.optim.SGD's documented rule, float64 (the first step's buffer is
    the gradient itself, undampened)."""
    p, buf = p0.astype(np.float64), None
    for g in grads:
        d = g.astype(np.float64) + weight_decay * p
        if momentum:
            buf = d.copy() if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        p = p - lr * d
    return p


def _adam_rule(p0, grads, lr, betas, eps, weight_decay):
    """torch.optim.Adam's documented rule (L2 decay, bias corrections), float64."""
    b1, b2 = betas
    p = p0.astype(np.float64)
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, 1):
        d = g.astype(np.float64) + weight_decay * p
        m = b1 * m + (1 - b1) * d
        v = b2 * v + (1 - b2) * d * d
        mhat, vhat = m / (1 - b1 ** t), v / (1 - b2 ** t)
        p = p - lr * mhat / (np.sqrt(vhat) + eps)
    return p


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opts", SGD_OPTIONS, ids=str)
def test_sgd_matches_float64_rule(dtype, opts, order):
    ps = _params(dtype, order=order)
    p0 = [p.data.copy() for p in ps]
    opt = optim.SGD(ps, lr=0.1, **opts)
    _train(opt, ps, dtype)
    for i, p in enumerate(ps):
        assert p.data.dtype == dtype
        want = _sgd_rule(p0[i], [_grads(t, dtype)[i] for t in range(STEPS)], 0.1, **opts)
        np.testing.assert_allclose(p.data, want, **TOL[dtype])


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opts", ADAM_OPTIONS, ids=str)
def test_adam_matches_float64_rule(dtype, opts, order):
    ps = _params(dtype, order=order)
    p0 = [p.data.copy() for p in ps]
    opt = optim.Adam(ps, lr=0.01, **opts)
    _train(opt, ps, dtype)
    for i, p in enumerate(ps):
        assert p.data.dtype == dtype
        want = _adam_rule(p0[i], [_grads(t, dtype)[i] for t in range(STEPS)], 0.01, **opts)
        # float32: the step is lr * O(1); its rounding is relative to lr, not to p
        np.testing.assert_allclose(p.data, want, **TOL[dtype])


def _torch_run(torch, make_opt, ps, dtype):
    tps = [torch.tensor(p.data.copy(), requires_grad=True) for p in ps]
    topt = make_opt(tps)
    for t in range(STEPS):
        topt.zero_grad()
        for tp, g in zip(tps, _grads(t, dtype)):
            tp.grad = torch.from_numpy(g.copy())
        topt.step()
    return [tp.detach().numpy() for tp in tps]


# a few ulp of the dtype per step (products may be fused into adds differently)
TORCH_TOL = {np.float32: dict(rtol=5e-7, atol=5e-7), np.float64: dict(rtol=1e-14, atol=1e-15)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opts", SGD_OPTIONS, ids=str)
def test_sgd_matches_torch(dtype, opts):
    torch = pytest.importorskip("torch")
    ps = _params(dtype)
    want = _torch_run(torch, lambda tps: torch.optim.SGD(tps, lr=0.1, **opts), ps, dtype)
    _train(optim.SGD(ps, lr=0.1, **opts), ps, dtype)
    for p, w in zip(ps, want):
        np.testing.assert_allclose(p.data, w, **TORCH_TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opts", ADAM_OPTIONS, ids=str)
def test_adam_matches_torch(dtype, opts):
    torch = pytest.importorskip("torch")
    ps = _params(dtype)
    want = _torch_run(torch, lambda tps: torch.optim.Adam(tps, lr=0.01, **opts), ps, dtype)
    _train(optim.Adam(ps, lr=0.01, **opts), ps, dtype)
    for p, w in zip(ps, want):
        np.testing.assert_allclose(p.data, w, **TORCH_TOL[dtype])


def test_sgd_step_reads_grad_and_writes_only_param_and_buffer():
    ps = _params(np.float64)
    opt = optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01)
    grads = _grads(0, np.float64)
    for p, g in zip(ps, grads):
        p.grad[...] = g
    opt.step()
    for p, g, buf in zip(ps, grads, opt._momentum_buffer):
        np.testing.assert_array_equal(p.grad, g)
        assert buf is not p.grad and buf is not p.data


def test_off_options_are_skipped_not_multiplied_by_zero():
    # weight_decay=0 and momentum=0 must not compute 0 * inf = NaN (torch skips them)
    for opt_cls, kw in ((optim.SGD, dict(lr=0.1)), (optim.Adam, dict(lr=0.1))):
        p = nn.Parameter(np.array([np.inf, 1.0, -np.inf]), "w")
        p.grad[...] = [1.0, 1.0, 1.0]
        opt_cls([p], **kw).step()
        assert p.data[0] == np.inf and p.data[2] == -np.inf and np.isfinite(p.data[1])
        assert p.data[1] < 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_gradient_propagates(dtype):
    p = nn.Parameter(np.ones(20, dtype), "w")
    p.grad[...] = 1
    p.grad[5] = np.nan
    optim.SGD([p], lr=0.1, momentum=0.9).step()
    assert np.isnan(p.data[5]) and np.isfinite(np.delete(p.data, 5)).all()


def test_lazy_zero_grad_reads_as_zero_and_accumulation_still_works():
    rng = np.random.default_rng(3)
    lin = nn.Linear(6, 4, dtype=np.float64, rng=0)
    x, g = rng.standard_normal((5, 6)), rng.standard_normal((5, 4))
    lin.weight.grad[...] = 7.0  # stale values the lazy zero_grad must hide
    lin.zero_grad()
    assert not lin.weight.grad.any() and not lin.bias.grad.any()
    lin.zero_grad()
    lin.forward(x)
    lin.backward(g)  # after zero_grad: written with out=, no fill
    np.testing.assert_allclose(lin.weight.grad, g.T @ x, rtol=1e-14)
    np.testing.assert_allclose(lin.bias.grad, g.sum(0), rtol=1e-14)
    # a caller who writes into grad after zero_grad gets it accumulated into
    lin.zero_grad()
    lin.weight.grad[0, 0] = 1.0
    lin.forward(x)
    lin.backward(g)
    want = g.T @ x
    want[0, 0] += 1.0
    np.testing.assert_allclose(lin.weight.grad, want, rtol=1e-14)
    # and the bias (not read after zero_grad) holds exactly this backward's sum
    np.testing.assert_allclose(lin.bias.grad, g.sum(0), rtol=1e-14)


def test_optimizer_zero_grad_then_step_uses_zero_gradient():
    # a parameter that got no backward after zero_grad steps with a zero gradient
    p = nn.Parameter(np.ones(3), "w")
    p.grad[...] = 5.0
    opt = optim.SGD([p], lr=0.1, weight_decay=0.5)
    opt.zero_grad()
    opt.step()
    np.testing.assert_allclose(p.data, 1 - 0.1 * 0.5)


@pytest.mark.parametrize("bad, match", [
    (lambda p: np.zeros(p.data.shape, np.float32), "grad must be a C-contiguous float64"),
    (lambda p: np.zeros((4, 3), np.float32).T, "grad must be a C-contiguous float64"),
    (lambda p: np.zeros(12), r"shape \(3, 4\)"),
    (lambda p: [[0.0] * 4] * 3, "grad must be a NumPy array"),
])
def test_bad_grad_is_a_clear_error_naming_the_parameter(bad, match):
    p = nn.Parameter(np.ones((3, 4)), "layer.weight")
    p.grad = bad(p)
    for opt in (optim.SGD([p], lr=0.1, momentum=0.9), optim.Adam([p])):
        with pytest.raises((ValueError, TypeError), match="layer.weight") as e:
            opt.step()
        assert e.match(match)
        np.testing.assert_array_equal(p.data, 1.0)


@pytest.mark.parametrize("order", ["C", "F"])
def test_gradient_and_state_in_the_other_memory_order_are_taken_as_values(order):
    # a C- or Fortran-ordered parameter (Linear stores weights Fortran-ordered) with a
    # gradient the caller assigned in the other order, or strided, and momentum
    # buffers / Adam moments loaded while the parameter had the other order: the
    # step uses their values (the same result as with matching arrays), never memory
    rng = np.random.default_rng(5)
    w0, g0 = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    other = "F" if order == "C" else "C"
    for make in (lambda: optim.SGD, lambda: optim.Adam):
        results = []
        for g in (np.array(g0, order=order), np.array(g0, order=other),
                  np.repeat(g0, 2, axis=1)[:, ::2]):
            p = nn.Parameter(np.array(w0, order=order), "w")
            opt = make()([p], lr=0.1, **({"momentum": 0.9} if make() is optim.SGD else {}))
            for _ in range(2):
                p.grad = g
                opt.step()
            state = opt.state_dict()
            p.data = np.array(p.data, order=other)  # state now in the other order
            p.grad = g
            opt.step()
            opt.load_state_dict(state)
            p.grad = g
            opt.step()
            results.append(np.array(p.data))
        for r in results[1:]:
            np.testing.assert_array_equal(r, results[0])


def test_failed_first_sgd_step_leaves_no_uninitialized_buffer():
    p = nn.Parameter(np.ones(4), "w")
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    good = p.grad
    p.grad = np.ones(4, np.float32)
    with pytest.raises(ValueError):
        opt.step()
    assert opt._momentum_buffer[0] is None
    p.grad = good
    p.grad[...] = 2.0
    opt.step()  # a true first step: buf = grad
    np.testing.assert_allclose(p.data, 1 - 0.1 * 2.0)
    np.testing.assert_allclose(opt._momentum_buffer[0], 2.0)


def test_integer_parameter_is_a_type_error():
    p = nn.Parameter(np.ones(4, np.int64), "counts")
    with pytest.raises(TypeError, match="'counts'.*float32 or float64.*int64"):
        optim.SGD([p], lr=0.1).step()


def test_kernels_update_in_place_with_dtype_scalars():
    # the raw kernel API: float32 arrays, double scalars rounded to float32 once
    p = np.full(5, 1.0, np.float32)
    g = np.full(5, 0.5, np.float32)
    _nnk.sgd_step(p, g, None, 0.1, 0.0, 0.0, False, False, "x")
    np.testing.assert_array_equal(p, np.float32(1.0) - np.float32(0.1) * np.float32(0.5))
