"""pyce: fast, numerically stable softmax cross-entropy for NumPy.

    >>> import numpy as np, pyce
    >>> logits = np.array([[2.0, 0.5, -1.0]], dtype=np.float32)
    >>> loss, grad = pyce.cross_entropy_and_grad(logits, np.array([0]))

The functions follow torch.nn.functional.cross_entropy's arguments and
semantics on NumPy arrays. `pyce.reference` holds the same functions in plain
NumPy; `pyce.nn`, `pyce.optim` and `pyce.train` are a small MLP trainer.
"""
try:
    from pyce import _ce
except ImportError as exc:  # pragma: no cover - depends on how pyce was installed
    raise ImportError(
        "pyce's compiled module pyce._ce could not be imported "
        f"({exc}). Build and install pyce with `pip install .` from the repository "
        "root; if you are running from a source checkout, run the tests with plain "
        "`pytest` (it imports the installed package, not the source tree)."
    ) from exc

from pyce._core import (cross_entropy, cross_entropy_and_grad, cross_entropy_backward,
                        log_softmax, softmax)
from pyce._config import show_config
from pyce._linear import linear_cross_entropy, linear_cross_entropy_and_grad
from pyce._gradcheck import gradcheck
from pyce import nn, optim, train  # noqa: E402  (the trainer, on top of the kernels)

__version__ = "0.1.0"

__all__ = ["cross_entropy", "cross_entropy_backward", "cross_entropy_and_grad",
           "log_softmax", "softmax", "linear_cross_entropy", "linear_cross_entropy_and_grad",
           "show_config", "gradcheck", "__version__"]
