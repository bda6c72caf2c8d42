"""pyce.optim SGD/Adam against the update rules written out in float64 NumPy."""
import numpy as np
import pytest

import pyce.optim as optim
from pyce.nn import Parameter


def _params(seed=0):
    rng = np.random.default_rng(seed)
    ps = [Parameter(rng.standard_normal((3, 4)), "w"), Parameter(rng.standard_normal(3), "b")]
    return ps


def _grads(step, seed=1):
    rng = np.random.default_rng(seed + step)
    return [rng.standard_normal((3, 4)), rng.standard_normal(3)]


def _run(opt, ps, steps):
    for t in range(steps):
        opt.zero_grad()
        for p, g in zip(ps, _grads(t)):
            p.grad += g
        opt.step()


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_weight_decay_rule(nesterov):
    ps = _params()
    ref = [p.data.copy() for p in ps]
    opt = optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=0.01)
    _run(opt, ps, 4)
    bufs = [None, None]
    for t in range(4):
        for i, g in enumerate(_grads(t)):
            d = g + 0.01 * ref[i]
            bufs[i] = d.copy() if bufs[i] is None else 0.9 * bufs[i] + d
            d = d + 0.9 * bufs[i] if nesterov else bufs[i]
            ref[i] = ref[i] - 0.1 * d
    for p, r in zip(ps, ref):
        np.testing.assert_allclose(p.data, r, rtol=1e-14, atol=1e-15)


def test_plain_sgd_does_not_touch_grads():
    ps = _params()
    w0 = ps[0].data.copy()
    opt = optim.SGD(ps, lr=0.5)
    ps[0].grad[...] = 2.0
    opt.step()
    np.testing.assert_allclose(ps[0].data, w0 - 1.0)
    assert (ps[0].grad == 2.0).all()


def test_adam_rule_with_weight_decay():
    ps = _params()
    ref = [p.data.copy() for p in ps]
    opt = optim.Adam(ps, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)
    _run(opt, ps, 5)
    m = [np.zeros_like(r) for r in ref]
    v = [np.zeros_like(r) for r in ref]
    for t in range(1, 6):
        for i, g in enumerate(_grads(t - 1)):
            g = g + 0.1 * ref[i]
            m[i] = 0.8 * m[i] + 0.2 * g
            v[i] = 0.99 * v[i] + 0.01 * g * g
            mhat, vhat = m[i] / (1 - 0.8 ** t), v[i] / (1 - 0.99 ** t)
            ref[i] = ref[i] - 0.01 * mhat / (np.sqrt(vhat) + 1e-6)
    for p, r in zip(ps, ref):
        np.testing.assert_allclose(p.data, r, rtol=1e-12)


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-3),
    lambda ps: optim.Adam(ps, lr=0.01)])
def test_state_dict_round_trip_continues_identically(make):
    a = _params()
    opt_a = make(a)
    _run(opt_a, a, 3)
    state = opt_a.state_dict()
    b = _params()
    for pa, pb in zip(a, b):
        pb.data[...] = pa.data
    opt_b = make(b)
    opt_b.load_state_dict(state)
    for opt, ps in ((opt_a, a), (opt_b, b)):
        opt.zero_grad()
        for p, g in zip(ps, _grads(10)):
            p.grad += g
        opt.step()
    for pa, pb in zip(a, b):
        np.testing.assert_array_equal(pa.data, pb.data)


def test_lr_is_settable_and_validated():
    opt = optim.SGD(_params(), lr=0.1)
    opt.lr = 0.05
    assert opt.lr == 0.05 and opt.state_dict()["lr"] == 0.05
    with pytest.raises(ValueError, match="lr"):
        opt.lr = -1
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD(_params(), lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="dampening"):
        optim.SGD(_params(), 0.1, 0.9, 0.1, 0.0, True)  # torch: nesterov needs dampening 0
    with pytest.raises(ValueError, match="dampening"):
        optim.SGD(_params(), lr=0.1, momentum=0.9, dampening=-0.5)
    with pytest.raises(TypeError, match="momentum"):
        optim.SGD(_params(), lr=0.1, momentum="fast")
    with pytest.raises(ValueError, match="betas"):
        optim.Adam(_params(), betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="params"):
        optim.Adam([])
    with pytest.raises(ValueError, match="SGD"):
        optim.Adam(_params()).load_state_dict(optim.SGD(_params(), lr=1).state_dict())


def test_sgd_positional_arguments_are_torchs_order():
    # torch.optim.SGD(params, lr, momentum, dampening, weight_decay, nesterov)
    opt = optim.SGD(_params(), 0.1, 0.9, 0.25, 0.01, False)
    assert (opt.lr, opt.momentum, opt.dampening, opt.weight_decay, opt.nesterov) == \
        (0.1, 0.9, 0.25, 0.01, False)
    assert optim.SGD(_params()).lr == 1e-3  # torch's default lr


def test_sgd_dampening_scales_later_gradients_not_the_first():
    ps = _params()
    p0 = [p.data.copy() for p in ps]
    opt = optim.SGD(ps, lr=1.0, momentum=0.5, dampening=0.75)
    _run(opt, ps, 2)
    g0, g1 = _grads(0), _grads(1)
    for i, p in enumerate(ps):
        b1 = 0.5 * g0[i] + 0.25 * g1[i]
        np.testing.assert_allclose(p.data, p0[i] - g0[i] - b1, rtol=1e-14, atol=1e-15)


def test_sgd_state_dict_keeps_dampening_and_old_dicts_load_with_torchs_default():
    opt = optim.SGD(_params(), lr=0.1, momentum=0.9, dampening=0.2)
    d = opt.state_dict()
    assert d["dampening"] == 0.2
    other = optim.SGD(_params(), lr=0.1, momentum=0.9, dampening=0.7)
    other.load_state_dict(d)
    assert other.dampening == 0.2
    del d["dampening"]  # written before SGD had dampening
    other.load_state_dict(d)
    assert other.dampening == 0.0
