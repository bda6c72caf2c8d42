"""The public cross-entropy functions: validate in Python, compute in C.

The arithmetic lives in cext/pyce_loss_kernels.c (design note at its top) and
its template cext/pyce_loss_template.h; the reduction rule ('mean', 'sum') in
cext/_ce.pyx (`loss_value`, `grad_scale`), which every path calls.  This
module decides shapes, allocation and threads.
"""
import numpy as np

from pyce import _ce
from pyce._ce import grad_scale, loss_value
from pyce._validate import (as_3d, as_float_array, as_ncd, check_ce, check_n_threads, check_out,
                            check_row_array)

__all__ = ["cross_entropy", "cross_entropy_backward", "cross_entropy_and_grad",
           "log_softmax", "softmax"]


def check_ce_fast(input, target, weight, ignore_index, reduction, label_smoothing,
                  sample_weight=None, z_loss=0.0, n_threads=None):
    """pyce._validate.check_ce with the compiled target scan (the fast functions' checks)."""
    return check_ce(input, target, weight, ignore_index, reduction, label_smoothing,
                    sample_weight, z_loss, n_threads, scan_targets=_ce.scan_targets)


def _run(p, grad, loss_rows, scale, grad_output):
    """The fused kernel on Problem p; returns the float64 sum of the per-row losses."""
    if grad is None:
        return _ce.ce(p, None, None, loss_rows, scale, grad_output)
    g3, gs = as_ncd(grad)
    return _ce.ce(p, g3, gs, loss_rows, scale, grad_output)


def _reduce(p, total):
    return loss_value(total, p.denom, p.reduction, p.f64)


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
    return grad_scale(g, p.denom, p.reduction), None


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, *, sample_weight=None, z_loss=0.0, n_threads=None):
    """Softmax cross-entropy between logits and targets (forward only).

    Parameters
    ----------
    input : float32 or float64 array
        Logits, class axis 1 as in PyTorch: (C,) unbatched, (N, C), or
        (N, C, d1, ..., dk).  Any memory order (C, Fortran, strided,
        read-only, memory-mapped) is read in place, without a copy; a copy is
        made only of a K-dimensional input whose trailing axes cannot be
        merged into one stride, and of a misaligned or byte-swapped array.
    target : integer array, or float array of the input's shape
        Integer dtypes (any signed or unsigned width; non-int64 or
        non-contiguous targets are copied to int64, O(N)): class indices in
        [0, C) or ignore_index, of shape () for (C,) input, (N,) for (N, C),
        (N, d1, ..., dk) for (N, C, d1, ..., dk).  Float dtypes: class
        probabilities (soft labels) of the input's shape, converted to the
        input's dtype.  An integer array of the input's shape (one-hot labels)
        is rejected: pass target.argmax(axis=1) or float probabilities.
    weight : (C,) array of finite floats, optional
        Class weights, negative ones included (as PyTorch).  Row i's loss is
        multiplied by weight[y_i]; 'mean' divides by sum_i weight[y_i] over
        kept rows (see reduction).
    ignore_index : int, default -100
        Rows whose target equals it have loss 0 and gradient 0 and are left
        out of 'mean''s denominator.  With probability targets only negative
        values are accepted (PyTorch raises for ignore_index >= 0 there).
    reduction : {'mean', 'sum', 'none'}
        'mean' is the float64 sum of the row losses divided by the
        denominator (the weighted count of kept rows), by IEEE arithmetic as
        PyTorch: every row ignored (or N = 0) gives 0/0 = NaN ('sum' gives 0);
        weights summing to 0 give NaN or +-inf; a negative sum flips the sign.
    label_smoothing : float in [0, 1], default 0
        loss = (1 - eps) * nll + eps/C * sum_c w_c * (-log p_c), masked on
        ignored rows, same denominator.  With probability targets t, the
        target becomes (1 - eps) * t + eps/C.
    sample_weight : array of the per-sample loss's shape, optional (keyword)
        Non-negative; multiplies each row's loss.  'mean' then divides by
        sum_i sample_weight_i * weight[y_i] over kept rows (by
        sum_i sample_weight_i for probability targets, whose 'mean' otherwise
        divides by the number of rows, PyTorch's rule).
    z_loss : float >= 0, default 0 (keyword)
        Adds z_loss * logsumexp(x_i)^2 to each kept row's loss (PaLM's
        z-loss), times the sample weight but not the class weight.
    n_threads : positive int or None (keyword)
        None uses all usable cores, 1 is serial; inputs under 65536 elements
        always run serially.  Results are bitwise identical for every value.

    Returns
    -------
    loss : NumPy scalar of the input's dtype ('mean', 'sum'), or an array of
        the per-sample loss's shape (the target's shape) for 'none'.

    Precision: float32 input is computed in float32 (exp within 2 ulp) with
    every row sum, log and batch reduction in float64; a float32 total beyond
    float32's range is +-inf, without a warning.  float64 is float64
    throughout.  Logits of +-1e30 are fine; -inf logits have probability 0
    and gradient 0; a NaN in a row makes that row's loss NaN and leaves the
    other rows alone.
    """
    # the commonest calls (float64 weight arrays, label smoothing, no z-loss) are
    # checked and run in Cython, _ce.fast_2d; None means "take the general path".
    # (Inline conditions: a helper call costs ~10%.)
    if (z_loss == 0.0 and type(ignore_index) is int
            and (label_smoothing == 0.0 or type(label_smoothing) is float)):
        res = _ce.fast_2d(input, target, None, reduction, ignore_index, n_threads, 0, 1.0,
                          label_smoothing, weight, sample_weight)
        if res is not None:
            return res
    p = check_ce_fast(input, target, weight, ignore_index, reduction, label_smoothing,
                      sample_weight, z_loss, n_threads)
    if reduction == "none":
        rows = np.empty(p.rows, p.x.dtype)
        _run(p, None, rows, 0.0, None)
        return rows.reshape(p.loss_shape)
    return _reduce(p, _run(p, None, None, 0.0, None))


def cross_entropy_backward(input, target, grad_output=1.0, weight=None, ignore_index=-100,
                           reduction="mean", label_smoothing=0.0, *, sample_weight=None,
                           z_loss=0.0, out=None, n_threads=None):
    """Gradient of cross_entropy with respect to input.

    Parameters
    ----------
    input, target, weight, ignore_index, reduction, label_smoothing, sample_weight, z_loss, n_threads
        As in pyce.cross_entropy (same dtypes and shapes accepted).
    grad_output : float, or array of the per-sample loss's shape, default 1.0
        The upstream gradient: a scalar for 'mean' and 'sum'; for 'none' a
        scalar or one value per sample (row i's gradient is multiplied by
        grad_output_i).  The gradient of 'mean' is that of 'sum' times
        grad_output / denominator (IEEE: a zero denominator gives +-inf or
        NaN entries on kept rows, ignored rows stay 0).
    out : ndarray of the input's shape and dtype, optional (keyword)
        Receives the gradient (no allocation); it may not overlap input.

    Returns
    -------
    grad : array of the input's shape and dtype (`out` when given).
        Entries are computed in the input's dtype from float64 row factors;
        a gradient beyond float32's range is combined in float64 and rounded
        once, so it overflows to +-inf rather than NaN.
    """
    if (z_loss == 0.0 and type(ignore_index) is int
            and (label_smoothing == 0.0 or type(label_smoothing) is float)
            and type(grad_output) in (float, int)):
        res = _ce.fast_2d(input, target, out, reduction, ignore_index, n_threads, 1, grad_output,
                          label_smoothing, weight, sample_weight)
        if res is not None:
            return res
    p = check_ce_fast(input, target, weight, ignore_index, reduction, label_smoothing,
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
    """(loss, dloss/dinput) from ONE fused pass over input: the training path.

    Each row is read from memory once: its max, its exp-and-sum (written into
    the gradient while the row is in cache), its loss and its gradient come
    from that row in cache.

    Parameters
    ----------
    input, target, weight, ignore_index, reduction, label_smoothing, sample_weight, z_loss, n_threads
        As in pyce.cross_entropy (same dtypes and shapes accepted).
    out : ndarray of the input's shape and dtype, optional (keyword)
        Receives the gradient (no allocation); it may not overlap input.
    overwrite_input : bool, default False (keyword)
        Write the gradient over `input` (which must then be a writeable
        float32/float64 ndarray in native byte order); opt-in: by default no
        argument is ever mutated.  Not together with `out`.

    Returns
    -------
    (loss, grad) : loss as pyce.cross_entropy returns it; grad as
        pyce.cross_entropy_backward with grad_output=1 ('none': the gradient
        of the sum of the per-sample losses), `out` or `input` when given.
    """
    if (z_loss == 0.0 and not overwrite_input and type(ignore_index) is int
            and (label_smoothing == 0.0 or type(label_smoothing) is float)):
        res = _ce.fast_2d(input, target, out, reduction, ignore_index, n_threads, 2, 1.0,
                          label_smoothing, weight, sample_weight)
        if res is not None:
            return res
    p = check_ce_fast(input, target, weight, ignore_index, reduction, label_smoothing,
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


def _softmax_axis(a, axis):
    """axis as a non-negative int; a 0-d array counts as one class (axis 0 or -1)."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    ndim = max(a.ndim, 1)
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of bounds for x with {a.ndim} dimensions")
    return axis % ndim


def _softmax(x, axis, out, log, n_threads):
    a = as_float_array(x, "x")
    axis = _softmax_axis(a, axis)
    nt = check_n_threads(n_threads)
    res = np.empty(a.shape, a.dtype) if out is None else check_out(out, a)
    a1, res1 = (a.reshape(1), res.reshape(1)) if a.ndim == 0 else (a, res)
    outer = int(np.prod(a1.shape[:axis], dtype=np.int64))
    c = a1.shape[axis]
    inner = int(np.prod(a1.shape[axis + 1:], dtype=np.int64))
    xv, xs = as_3d(a1, (outer, c, inner))
    ov, os_ = as_3d(res1, (outer, c, inner))
    copy_back = res.size and not np.shares_memory(ov, res)
    if copy_back:
        ov = np.empty((outer, c, inner), a.dtype)
        os_ = [c * inner, inner, 1]
    _ce.softmax(xv, ov, (outer, c, inner), xs, os_, log, nt, a.dtype == np.float64)
    if copy_back:
        np.copyto(res, ov.reshape(a.shape))
    return res


def softmax(x, axis=-1, *, out=None, n_threads=None):
    """Numerically stable softmax along `axis`: exp(x - max) / sum(exp(x - max)).

    Parameters
    ----------
    x : float32 or float64 array, any memory order (read without a copy)
        A 0-d x is one class: the result is 1.0 (NaN for NaN or +-inf), as in
        PyTorch.
    axis : int, default -1
    out : ndarray of x's shape and dtype, optional (keyword); may be x itself.
    n_threads : positive int or None (keyword); as in pyce.cross_entropy.

    Returns
    -------
    An array of x's shape and dtype (`out` when given).  float32 stays
    float32 (exp within 2 ulp, the row sum in float64).
    """
    return _softmax(x, axis, out, False, n_threads)


def log_softmax(x, axis=-1, *, out=None, n_threads=None):
    """Numerically stable log-softmax along `axis`: (x - max) - log(sum(exp(x - max))).

    Parameters
    ----------
    x : float32 or float64 array, any memory order (read without a copy)
        A 0-d x is one class: the result is 0.0 (NaN for NaN or +-inf), as in
        PyTorch.
    axis : int, default -1
    out : ndarray of x's shape and dtype, optional (keyword); may be x itself.
    n_threads : positive int or None (keyword); as in pyce.cross_entropy.

    Returns
    -------
    An array of x's shape and dtype (`out` when given).  The subtraction is
    done in float64 and rounded once, so float32 results are correctly
    rounded up to the error of log(sum) (~1e-16 relative).
    """
    return _softmax(x, axis, out, True, n_threads)


def _ce_rows_inplace(p, loss_rows, scale, want_grad):
    """Fused cross-entropy over the C-contiguous (m, C) logits block of Problem
    `p` (from pyce._validate.rows_problem), the gradient written over it.

    Private helper of pyce._linear (the chunked linear + cross-entropy): no
    validation, the caller has checked everything (targets contiguous int64
    in [0, C) or ignore_index; no class or sample weights).  When want_grad,
    the gradient of sum_i loss_i times `scale` replaces the logits in place
    (each row is read before it is overwritten), so a caller that knows the
    global 'mean' denominator passes grad_scale(1, denom, 'mean') and needs no
    second scaling pass.  `loss_rows` is None or a contiguous (m,) array of
    the logits' dtype for the per-row losses.  Returns the float64 sum of the
    per-row losses.
    """
    if want_grad:
        return _ce.ce(p, p.x3, (p.c, 1, 0), loss_rows, scale, None)
    return _ce.ce(p, None, None, loss_rows, scale, None)
