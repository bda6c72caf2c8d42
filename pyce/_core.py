"""The public cross-entropy functions: validate in Python, compute in C.

The arithmetic lives in cext/pyce_kernels.c (design note at its top); this
module decides shapes, allocation, reductions and threads.
"""
import numpy as np

from pyce import _ce
from pyce._validate import (as_float_array, as_ncd, check_ce, check_n_threads, check_out,
                            check_row_array)

__all__ = ["cross_entropy", "cross_entropy_backward", "cross_entropy_and_grad",
           "log_softmax", "softmax"]

_DOC_SHAPES = """
    Shapes (class axis 1, as in PyTorch):
      input (C,) with a 0-d target (unbatched); (N, C) with target (N,);
      (N, C, d1, ..., dk) with target (N, d1, ..., dk).  A float target of the
      input's shape holds class probabilities (soft labels) instead.
    No copy is made of an input in any memory order (C, Fortran, strided,
    read-only, memory-mapped): the kernel reads it through its strides.  A
    copy is made only of a K-dimensional input whose trailing axes cannot be
    merged into one stride, of a misaligned or byte-swapped array, and of
    integer targets that are not contiguous int64 (O(N), not O(N*C)).
"""

_DOC_OPTIONS = """
    weight : (C,) array, optional
        Non-negative class weights. Row i's loss is multiplied by weight[y_i];
        'mean' divides by sum_i weight[y_i] over non-ignored rows.
    ignore_index : int
        Rows whose target equals it have loss 0 and gradient 0 and are left
        out of 'mean''s denominator. When every row is ignored (or N = 0),
        'mean' returns NaN with an all-zero gradient and 'sum' returns 0, as
        PyTorch does. Not used with probability targets.
    reduction : {'mean', 'sum', 'none'}
    label_smoothing : float in [0, 1]
        loss = (1 - eps) * nll + eps/C * sum_c w_c * (-log p_c), masked on
        ignored rows, same denominator as the nll term. With probability
        targets t, the target becomes (1 - eps) * t + eps/C.
    sample_weight : array of the per-sample loss's shape, optional (keyword)
        Multiplies each row's loss; 'mean' then divides by
        sum_i sample_weight_i * weight[y_i] over non-ignored rows (by
        sum_i sample_weight_i for probability targets, whose 'mean' otherwise
        divides by the number of rows, PyTorch's rule).
    z_loss : float >= 0 (keyword)
        Adds z_loss * logsumexp(x_i)^2 to each non-ignored row's loss (PaLM's
        z-loss), multiplied by the sample weight but not by the class weight,
        and divided by the same denominator for 'mean'. Free when 0.
    n_threads : int or None (keyword)
        None uses all usable cores, 1 is serial. Small inputs (< 65536
        elements) always run serially. Results are bitwise identical for
        every value.

    Precision: float32 input is computed in float32 (exp to within 2 ulp)
    with every row sum, log and batch reduction in float64; float64 input is
    float64 throughout. Logits of +-1e30 are fine; -inf logits have
    probability 0 and gradient 0; a NaN in a row makes that row's loss and
    gradient NaN and leaves other rows alone.
"""


def _run(p, grad, loss_rows, grad_scale, grad_output):
    if grad is not None:
        g3, gs = as_ncd(grad)
    else:
        g3, gs = None, (0, 0, 0)
    return _ce.ce(p.x3, g3, loss_rows, p.target, p.t3, p.class_weight, p.sample_weight,
                  grad_output, p.n, p.c, p.d, p.xs[0], p.xs[1], p.xs[2], gs[0], gs[1], gs[2],
                  p.ts[0], p.ts[1], p.ts[2], grad_scale, p.class_weight_sum, p.ignore_index,
                  p.label_smoothing, p.z_loss, p.n_threads, p.f64)


def _reduce(p, total):
    # The float64 total may exceed float32's range (a diverging network):
    # the float32 loss is then inf, as in PyTorch, without NumPy's
    # "overflow encountered in cast" warning pointing into pyce.
    with np.errstate(over="ignore"):
        if p.reduction == "sum":
            return p.x.dtype.type(total)
        if p.denom == 0.0:
            return p.x.dtype.type(np.nan)
        return p.x.dtype.type(total / p.denom)


def _grad_target(p, out, overwrite_input):
    """Where the gradient goes: a fresh array, out=, or the input itself."""
    if overwrite_input:
        if out is not None:
            raise ValueError("pass either out= or overwrite_input=True, not both")
        if not p.x.flags.writeable:
            raise ValueError("overwrite_input=True but input is read-only")
        if not np.shares_memory(p.x3, p.x):  # K-dim input whose axes could not merge
            return np.empty(p.x.shape, p.x.dtype), p.x
        return p.x, None
    if out is None:
        return np.empty(p.x.shape, p.x.dtype), None
    check_out(out, p.x)
    if p.x.ndim >= 3:
        v3, _ = as_ncd(out)
        if not np.shares_memory(v3, out):  # K-dim out whose axes could not merge
            return np.empty(p.x.shape, p.x.dtype), out
    return out, None


def _scale_for(p, grad_output):
    """(grad_scale, per-row grad_output array or None)."""
    if p.reduction == "none" and np.ndim(grad_output) != 0:
        return 1.0, check_row_array(grad_output, p.loss_shape, "grad_output", nonneg=False)
    try:
        g = float(grad_output)
    except (TypeError, ValueError):
        expected = ("a scalar or an array of the per-sample loss's shape " + str(p.loss_shape)
                    if p.reduction == "none" else f"a scalar for reduction={p.reduction!r}")
        raise ValueError(f"grad_output must be {expected}, got {grad_output!r}") from None
    if p.reduction == "mean":
        return (g / p.denom if p.denom != 0.0 else 0.0), None
    return g, None


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, *, sample_weight=None, z_loss=0.0, n_threads=None):
    if (weight is None and sample_weight is None and label_smoothing == 0.0 and z_loss == 0.0
            and type(ignore_index) is int):
        res = _ce.fast_2d(input, target, None, reduction, ignore_index, n_threads, 0)
        if res is not None:
            return res
    p = check_ce(input, target, weight, ignore_index, reduction, label_smoothing,
                 sample_weight, z_loss, n_threads)
    if reduction == "none":
        rows = np.empty(p.rows, p.x.dtype)
        _run(p, None, rows, 0.0, None)
        return rows.reshape(p.loss_shape)
    return _reduce(p, _run(p, None, None, 0.0, None))


def cross_entropy_backward(input, target, grad_output=1.0, weight=None, ignore_index=-100,
                           reduction="mean", label_smoothing=0.0, *, sample_weight=None,
                           z_loss=0.0, out=None, n_threads=None):
    if (weight is None and sample_weight is None and label_smoothing == 0.0 and z_loss == 0.0
            and type(ignore_index) is int and type(grad_output) in (float, int)):
        res = _ce.fast_2d(input, target, out, reduction, ignore_index, n_threads, 1, grad_output)
        if res is not None:
            return res
    p = check_ce(input, target, weight, ignore_index, reduction, label_smoothing,
                 sample_weight, z_loss, n_threads)
    grad, copy_to = _grad_target(p, out, False)
    scale, go = _scale_for(p, grad_output)
    _run(p, grad, None, scale, go)
    if copy_to is not None:
        np.copyto(copy_to, grad)
        return copy_to
    return grad


def cross_entropy_and_grad(input, target, weight=None, ignore_index=-100, reduction="mean",
                           label_smoothing=0.0, *, sample_weight=None, z_loss=0.0, out=None,
                           overwrite_input=False, n_threads=None):
    if (weight is None and sample_weight is None and label_smoothing == 0.0 and z_loss == 0.0
            and not overwrite_input and type(ignore_index) is int):
        # the commonest call, checked and run in Cython; None means "take the general path"
        res = _ce.fast_2d(input, target, out, reduction, ignore_index, n_threads, 2)
        if res is not None:
            return res
    p = check_ce(input, target, weight, ignore_index, reduction, label_smoothing,
                 sample_weight, z_loss, n_threads)
    if overwrite_input and p.x is not input:
        raise ValueError("overwrite_input=True needs input to be a float32/float64 numpy "
                         "array in native byte order (it had to be converted, so writing "
                         "over the conversion would not reach the caller)")
    grad, copy_to = _grad_target(p, out, overwrite_input)
    scale, _ = _scale_for(p, 1.0)
    if reduction == "none":
        rows = np.empty(p.rows, p.x.dtype)
        _run(p, grad, rows, scale, None)
        loss = rows.reshape(p.loss_shape)
    else:
        loss = _reduce(p, _run(p, grad, None, scale, None))
    if copy_to is not None:
        np.copyto(copy_to, grad)
        grad = copy_to
    return loss, grad


def _softmax(x, axis, out, log, n_threads):
    a = as_float_array(x, "x")
    if a.ndim == 0:
        raise ValueError("x must have at least 1 dimension, got a 0-d array")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    if not -a.ndim <= axis < a.ndim:
        raise ValueError(f"axis {axis} is out of bounds for x with {a.ndim} dimensions")
    nt = check_n_threads(n_threads)
    axis = axis % a.ndim
    if out is None:
        res = np.empty(a.shape, a.dtype)
    else:
        res = check_out(out, a)
    outer = int(np.prod(a.shape[:axis], dtype=np.int64))
    c = a.shape[axis]
    inner = int(np.prod(a.shape[axis + 1:], dtype=np.int64))
    xv = _as_3d(a, outer, c, inner)
    ov = _as_3d(res, outer, c, inner)
    copy_back = not np.shares_memory(ov, res) if res.size else False
    if copy_back:
        ov = np.empty((outer, c, inner), a.dtype)
    xs, os_ = _strides(xv), _strides(ov)
    _ce.softmax(xv, ov, outer, c, inner, xs[0], xs[1], xs[2], os_[0], os_[1], os_[2],
                log, nt, a.dtype == np.float64)
    if copy_back:
        np.copyto(res, ov.reshape(a.shape))
    return res


def _as_3d(a, outer, c, inner):
    v = a.view()
    try:
        v.shape = (outer, c, inner)
    except AttributeError:
        v = np.ascontiguousarray(a).reshape(outer, c, inner)
    if any(s % a.itemsize for s in v.strides):
        v = np.ascontiguousarray(v)
    return v


def _strides(v):
    return [s // v.itemsize for s in v.strides]


def softmax(x, axis=-1, *, out=None, n_threads=None):
    """Numerically stable softmax along `axis` (exp(x - max) / sum, sums in float64).

    float32 stays float32 (exp within 2 ulp, the row sum in float64); any
    memory order works without a copy of x. `out` (x's shape and dtype) may
    be x itself.
    """
    return _softmax(x, axis, out, False, n_threads)


def log_softmax(x, axis=-1, *, out=None, n_threads=None):
    """Numerically stable log-softmax along `axis`: (x - max) - log(sum(exp(x - max))).

    The subtraction is done in float64 and rounded once to x's dtype, so
    float32 results are correctly rounded up to the error of log(sum) (~1e-16
    relative). `out` (x's shape and dtype) may be x itself.
    """
    return _softmax(x, axis, out, True, n_threads)


cross_entropy.__doc__ = """Softmax cross-entropy between logits and targets (forward only).

    Returns a NumPy scalar of the input's dtype for 'mean' and 'sum', and an
    array of per-sample losses of the target's shape for 'none'.
""" + _DOC_SHAPES + "\n    Parameters\n    ----------\n" + _DOC_OPTIONS

cross_entropy_backward.__doc__ = """Gradient of cross_entropy with respect to input (same shape and dtype).

    grad_output is the upstream gradient: a scalar for 'mean' and 'sum', an
    array of the per-sample loss's shape (or a scalar) for 'none'. The
    gradient of 'mean' is that of 'sum' divided by the denominator; 'none'
    with grad_output g gives g_i times row i's gradient. `out=` (input's
    shape and dtype) receives the gradient.
""" + _DOC_SHAPES + "\n    Parameters\n    ----------\n" + _DOC_OPTIONS

cross_entropy_and_grad.__doc__ = """(loss, dloss/dinput) from ONE fused pass over input: the training path.

    Each row is read from memory once: its max, its exp-and-sum (written into
    the gradient while the row is in cache), its loss and its gradient come
    from that row in cache. `out=` receives the gradient (no allocation);
    `overwrite_input=True` writes the gradient over `input` (opt-in; by
    default no argument is ever mutated).
""" + _DOC_SHAPES + "\n    Parameters\n    ----------\n" + _DOC_OPTIONS


def _ce_rows_inplace(logits, target, loss_rows, grad_scale, ignore_index, label_smoothing,
                     z_loss, n_threads, want_grad):
    """Fused cross-entropy over a C-contiguous (m, C) logits block, gradient written over it.

    Private helper of pyce._linear (the chunked linear + cross-entropy): no
    validation, the caller has checked everything.  `target` is contiguous
    int64 (m,) with every entry in [0, C) or equal to ignore_index; no class
    or sample weights.  When want_grad, the gradient of sum_i loss_i times
    grad_scale replaces the logits in place (each row is read before it is
    overwritten, as with overwrite_input=True), so a caller that knows the
    global 'mean' denominator passes grad_scale = 1/denom and needs no second
    scaling pass.  `loss_rows` is None or a contiguous (m,) array of the
    logits' dtype that receives the per-row losses.  Returns the sum of the
    per-row losses (a Python float, accumulated in double).
    """
    m, c = logits.shape
    grad = logits if want_grad else None
    return _ce.ce(logits, grad, loss_rows, target, None, None, None, None,
                  m, c, 1, c, 1, 1, c, 1, 1, 0, 0, 0, grad_scale, float(c), ignore_index,
                  label_smoothing, z_loss, n_threads, logits.dtype == np.float64)
