"""No argument is mutated, for every public function (adversarial.FUNCTIONS) and
every option combination the adversarial generator builds, except out= (the
result goes there) and the input under overwrite_input=True (it becomes the
gradient).  Values are compared bitwise (NaN-safe), and shape, strides and the
writeable flag must be unchanged too.  Calls that raise must not write either.
"""
import numpy as np
import pytest

import adversarial as adv

PATTERNS = ("normal", "inf_nan", "kdim", "unbatched", "equal_zero_c1")
LAYOUTS = ("C", "F", "strided", "memmap_readonly")


def _snapshot(v):
    if isinstance(v, np.ndarray):
        return ("array", v.tobytes(order="A"), v.shape, v.strides, v.flags.writeable,
                v.__array_interface__["data"][0])
    return ("other", repr(v))


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("memmaps")
    out = []
    for dt in adv.DTYPES:
        for label, x in adv.adversarial_arrays(dt, tmp):
            pattern, layout = label.split("/")
            if pattern in PATTERNS and layout in LAYOUTS:
                out.append((label, x))
    return out


@pytest.mark.parametrize("spec", adv.FUNCTIONS, ids=lambda s: s.name)
def test_arguments_are_not_mutated(spec, arrays):
    rng = np.random.default_rng(3)
    n_calls = 0
    for label, x in arrays:
        for clabel, args, kwargs in spec.calls(x, rng):
            if kwargs.get("overwrite_input"):
                args = (x.copy(order="K"),) + tuple(args[1:])
            exempt = {id(kwargs.get("out"))}
            if kwargs.get("overwrite_input"):
                exempt.add(id(args[0]))
            watched = [(f"arg{i}", a) for i, a in enumerate(args)] + list(kwargs.items())
            watched = [(n, v) for n, v in watched if id(v) not in exempt]
            before = [_snapshot(v) for _, v in watched]
            adv.run(spec.fast, args, kwargs)
            n_calls += 1
            for (name, v), snap in zip(watched, before):
                assert _snapshot(v) == snap, (
                    f"{adv.describe(spec, args, kwargs, label + ' ' + clabel)} "
                    f"mutated argument {name}")
    assert n_calls > 50


def test_snapshot_sees_a_write():
    # the check above can fail: a one-element write is seen
    a = np.zeros((3, 4))
    before = _snapshot(a)
    a[1, 2] = -0.0
    assert _snapshot(a) != before
