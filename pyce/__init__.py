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
    import os as _os
    _here = _os.path.dirname(_os.path.abspath(__file__))
    if _os.path.isdir(_os.path.join(_here, _os.pardir, "cext")):
        raise ImportError(
            f"pyce was imported from its source checkout ({_here}), which has no compiled "
            f"module ({exc}). Python puts the current directory first on sys.path for "
            "`python -m ...` and `python -c ...`, so from the repository root these find the "
            "sources, not the installed package. Install with `pip install .`, then run the "
            "`pyce` command (`pyce train`) or run Python from another directory; the tests "
            "run with plain `pytest`, which imports the installed package."
        ) from exc
    raise ImportError(
        "pyce's compiled module pyce._ce could not be imported "
        f"({exc}). Build and install pyce with `pip install .` from the repository root."
    ) from exc

from pyce._core import (cross_entropy, cross_entropy_and_grad, cross_entropy_backward,
                        log_softmax, softmax)
from pyce._config import show_config
from pyce._linear import linear_cross_entropy, linear_cross_entropy_and_grad
from pyce.trainer.gradcheck import gradcheck
from pyce import reference  # noqa: E402  (the plain-NumPy twin, an attribute after `import pyce`)
from pyce import nn, optim, train  # noqa: E402  (the trainer's public paths)

__version__ = "0.1.0"

__all__ = ["cross_entropy", "cross_entropy_backward", "cross_entropy_and_grad",
           "log_softmax", "softmax", "linear_cross_entropy", "linear_cross_entropy_and_grad",
           "show_config", "gradcheck", "__version__"]
