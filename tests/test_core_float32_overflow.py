"""A float32 loss whose float64 total exceeds float32's range is inf, with no warning.

(Found by `pyce train --reduction sum`: a diverging network printed NumPy's
"overflow encountered in cast" from inside pyce/_core.py.)
"""
import warnings

import numpy as np
import pytest

import pyce


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
