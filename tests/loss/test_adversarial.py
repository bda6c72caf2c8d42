"""Every public function, over every adversarial array (tests/adversarial.py), against
pyce.reference: same exception type, or agreement within the bound stated in
adversarial.py's docstring (float32 rtol 1e-5 against the float64 reference, float64
rtol 1e-12, relative to max(|value|, scale of the row's terms); NaN and inf must match).
A failure names the function, options, dtype, shape and memory order.
"""
import numpy as np
import pytest

import adversarial as adv


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("memmaps")
    return {np.dtype(dt).name: adv.adversarial_arrays(dt, tmp) for dt in adv.DTYPES}


@pytest.mark.parametrize("dtype", [np.dtype(d).name for d in adv.DTYPES])
@pytest.mark.parametrize("spec", adv.FUNCTIONS, ids=lambda s: s.name)
def test_matches_reference_on_adversarial_arrays(spec, dtype, arrays):
    rng = np.random.default_rng(1)
    failures, n_ok, n_raise = [], 0, 0
    for label, x in arrays[dtype]:
        for clabel, args, kwargs in spec.calls(x, rng):
            context = adv.describe(spec, args, kwargs, f"{label} {clabel}")
            try:
                verdict = adv.check_against_reference(spec, args, kwargs, context)
            except AssertionError as exc:
                failures.append(str(exc))
                continue
            n_ok += verdict == "ok"
            n_raise += verdict == "raise"
    assert not failures, f"{len(failures)} failing calls:\n" + "\n".join(failures[:15])
    # the generator must exercise the computing path, not only argument errors
    assert n_ok > 3 * n_raise


def test_generator_covers_what_it_promises(tmp_path):
    labels = [lab for lab, _ in adv.adversarial_arrays(np.float32, tmp_path)]
    for pattern in ("equal", "one_huge", "minus_inf_but_one", "denormal", "offset_1e6",
                    "inf_nan", "empty_batch", "equal_zero_c1", "kdim"):
        assert any(lab.startswith(pattern + "/") for lab in labels), pattern
    orders = {lab.split("/")[1] for lab in labels}
    assert {"C", "F", "transposed", "strided", "readonly", "memmap_readonly",
            "unaligned", "byteswapped", "negative_strides"} <= orders
    arrs = dict(adv.adversarial_arrays(np.float64, tmp_path))
    assert not arrs["normal/unaligned"].flags.aligned
    assert isinstance(arrs["normal/memmap_readonly"], np.memmap)
    assert not arrs["normal/transposed"].flags.c_contiguous
    assert np.all(np.isfinite(arrs["denormal/C"]))
    assert np.any((arrs["denormal/C"] != 0) & (np.abs(arrs["denormal/C"]) < np.finfo(np.float64).tiny))


def test_comparison_detects_a_wrong_answer():
    # The checker must be able to fail: a 1% error, a NaN where a value is expected,
    # and a swapped exception are all reported with the function's name.
    spec = adv.SPECS["softmax"]
    x = np.array([[0.0, 1.0, 2.0]])
    right = np.exp(x - 2) / np.exp(x - 2).sum()
    with pytest.raises(AssertionError, match="outside the bound"):
        adv.assert_close(right * 1.01, right, np.float64, 0.0, 1.0, "softmax")
    with pytest.raises(AssertionError, match="NaN positions differ"):
        adv.assert_close(np.where(x > 1, np.nan, right), right, np.float64, 0.0, 1.0, "softmax")
    with pytest.raises(AssertionError, match="inf positions"):
        adv.assert_close(np.where(x > 1, np.inf, right), right, np.float64, 0.0, 1.0, "softmax")
    with pytest.raises(AssertionError, match=r"softmax.*fast raised ValueError"):
        adv.check_against_reference(_AlwaysRaises("softmax", *spec_fields(spec)),
                                    (x,), {}, "softmax")


def spec_fields(spec):
    return spec.calls, spec.outputs, spec.scales


class _AlwaysRaises(adv.Spec):
    """A stand-in fast function that raises where the reference returns."""

    @property
    def fast(self):
        def broken(*args, **kwargs):
            raise ValueError("broken on purpose")
        return broken
