"""pyce's functions in plain NumPy: the readable twin of every fast function.

Same names, signatures and semantics as the top-level pyce functions, and
plain NumPy end to end: this module imports nothing compiled (no pyce._ce, no
BLAS through ctypes).  The argument checks that are plain Python live in
pyce._validate and are shared, so bad input raises the same errors; the
target scan (range check and 'mean' denominator) and the reduction are this
module's own NumPy code, independent of the compiled ones they check.  Tests prove the fast path against these; benchmarks time the fast
path against these.  They compute in the input's dtype, the way careful NumPy
code would (stable log-softmax, no one-hot matrix), so float64 input gives a
float64 oracle.

At the bottom, clearly named, is the naive formulation that from-scratch
NumPy code usually starts with (`naive_cross_entropy`): softmax, a one-hot
matrix and -(1/N) * sum(y * log(p + 1e-6)).  It is here to show what it costs:
several temporaries of the input's size, and a biased loss -- log(p + 1e-6)
caps every per-sample loss at -log(1e-6) = 13.8, and its gradient is not the
gradient of the true loss.
"""
import numpy as np

from pyce._validate import (as_float_array, check_ce, check_linear, check_n_threads, check_out,
                            check_row_array)

__all__ = ["cross_entropy", "cross_entropy_backward", "cross_entropy_and_grad",
           "log_softmax", "softmax", "linear_cross_entropy", "linear_cross_entropy_and_grad",
           "naive_cross_entropy", "naive_cross_entropy_and_grad"]


def _softmax_parts(x, axis, n_threads):
    """(x as a float array, x seen with at least 1 dimension, the axis, shifted = x - max)."""
    x = as_float_array(x, "x")
    check_n_threads(n_threads)
    x1 = x.reshape(1) if x.ndim == 0 else x  # a 0-d x is one class, as in PyTorch
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    if not -x1.ndim <= axis < x1.ndim:
        raise ValueError(f"axis {axis} is out of bounds for x with {x.ndim} dimensions")
    # initial=-inf: an empty class axis gives an empty result, as the fast path does
    with np.errstate(invalid="ignore"):  # inf - inf = NaN, by design
        return x, x1, axis, x1 - np.max(x1, axis=axis, keepdims=True, initial=-np.inf)


def _softmax_out(x, res, out):
    res = res.reshape(x.shape)
    if out is not None:
        check_out(out, x)
        out[...] = res
        return out
    return res


def log_softmax(x, axis=-1, *, out=None, n_threads=None):
    """(x - max) - log(sum(exp(x - max))) along axis (see pyce.log_softmax)."""
    x, x1, axis, shifted = _softmax_parts(x, axis, n_threads)
    res = shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
    return _softmax_out(x, res, out)


def softmax(x, axis=-1, *, out=None, n_threads=None):
    """exp(x - max) / sum(exp(x - max)) along axis (see pyce.softmax)."""
    x, x1, axis, shifted = _softmax_parts(x, axis, n_threads)
    e = np.exp(shifted)
    return _softmax_out(x, e / np.sum(e, axis=axis, keepdims=True), out)


def scan_targets(target, rows, c, ignore_index, class_weight, sample_weight):
    """(first position of a target neither in [0, c) nor ignore_index, or -1;
    the 'mean' denominator sum_i sample_weight_i * class_weight[target_i] over
    kept rows), in NumPy: the reference's own check of class-index targets."""
    keep = target != ignore_index
    bad = np.flatnonzero(keep & ((target < 0) | (target >= c)))
    if bad.size:
        return int(bad[0]), 0.0
    w = np.ones(rows) if class_weight is None else class_weight[np.where(keep, target, 0)]
    if sample_weight is not None:
        w = w * sample_weight
    # summed in row order (np.cumsum is sequential), so a denominator that is
    # exactly 0 in row order -- weights of both signs -- is 0 here too, not the
    # 1e-16 a differently ordered sum can leave ('mean' divides by it)
    w = np.where(keep, w, 0.0)
    return -1, float(np.cumsum(w)[-1]) if w.size else 0.0


def _check(input, target, weight, ignore_index, reduction, label_smoothing, sample_weight,
           z_loss, n_threads):
    return check_ce(input, target, weight, ignore_index, reduction, label_smoothing,
                    sample_weight, z_loss, n_threads, scan_targets=scan_targets)


def _rows(p):
    """Logits as (rows, C) with the class axis last (rows = N * d1 * ... * dk)."""
    return np.moveaxis(p.x3, 1, 2).reshape(-1, p.c)


def _class_index_terms(p, logp, w):
    """Hard labels: (kept rows, per-row loss before z-loss and sample weights,
    coef (rows, C): the target distribution (1-eps) onehot(y) + eps/C times w)."""
    eps = p.label_smoothing
    keep = p.target != p.ignore_index
    y = np.where(keep, p.target, 0)
    r = np.arange(p.rows)
    w_y = w[y] * keep
    nll = -logp[r, y]
    # np.where, not multiplication, for every mask: an ignored row or a
    # zero-weight class contributes 0 even when its logits are NaN or -inf
    # (0 * NaN and 0 * -inf would be NaN).
    tw = (1 - eps) * w_y
    loss = np.where(tw != 0, tw * nll, 0)
    if eps > 0:
        # sum over classes of w_c * (-log p_c)
        smooth = -np.sum(np.where(w != 0, w * logp, 0), axis=1)
        loss = loss + np.where(keep, (eps / p.c) * smooth, 0)
    coef = np.zeros((p.rows, p.c), logp.dtype)
    coef[r, y] = (1 - eps) * w_y
    coef += keep[:, None] * (eps / p.c) * w
    return keep, loss, coef


def _probability_terms(p, logp, w):
    """Soft labels: as _class_index_terms, every row kept."""
    t = np.moveaxis(p.t3, 1, 2).reshape(-1, p.c)
    coef = w * ((1 - p.label_smoothing) * t + p.label_smoothing / p.c)
    return np.ones(p.rows, bool), -np.sum(np.where(coef != 0, coef * logp, 0), axis=1), coef


def _loss_and_grad(p, grad_scale=None):
    """Per-row losses (rows,) and, given the upstream gradient per row grad_scale
    (rows, 1), the gradient with respect to the logits as (rows, C)."""
    x = _rows(p)
    dt = x.dtype
    w = np.ones(p.c, dt) if p.class_weight is None else p.class_weight.astype(dt)
    v = np.ones(p.rows, dt) if p.sample_weight is None else p.sample_weight.astype(dt)
    m = np.max(x, axis=1, keepdims=True)
    shifted = x - m
    log_sum = np.log(np.sum(np.exp(shifted), axis=1, keepdims=True))
    logp = shifted - log_sum
    lse = (m + log_sum)[:, 0]
    terms = _class_index_terms if p.target is not None else _probability_terms
    keep, loss, coef = terms(p, logp, w)
    # A row whose softmax is undefined (a NaN, a +inf, or every logit -inf) has
    # a NaN loss even where the masks above gave 0 (zero-weight target).
    loss = np.where(keep & np.isnan(log_sum[:, 0]), np.nan, loss)
    if p.z_loss:
        loss = loss + np.where(keep, p.z_loss * lse * lse, 0)
    # a sample weight of 0 masks the row like a class weight of 0 (an infinite
    # loss becomes 0); a NaN loss (undefined softmax) stays NaN
    with np.errstate(invalid="ignore"):  # 0 * inf, discarded by the where
        loss = np.where(v != 0, v * loss, np.where(np.isnan(loss), np.nan, 0))
    if grad_scale is None:
        return loss, None
    pcoef = np.sum(coef, axis=1, keepdims=True)
    if p.z_loss:
        pcoef = pcoef + (keep * 2 * p.z_loss * lse)[:, None]
    return loss, _grad(np.exp(logp), coef, pcoef, v[:, None] * grad_scale, keep)


def _grad(prob, coef, pcoef, g, keep):
    """d/dx_k of g * sum_c coef_c * (-log p_c) = g (p_k * sum_c coef_c - coef_k).

    g is the sample weight times the upstream gradient, multiplied first: with
    'mean' they often cancel (v / sum v), and multiplying either into the
    small terms first can underflow."""
    with np.errstate(invalid="ignore", over="ignore"):
        grad = g * (prob * pcoef - coef)
        # under an infinite scale (a zero 'mean' denominator), a class with
        # probability 0 and no target term keeps gradient 0 (no 0 * inf), unless
        # the row's factor g * pcoef is itself NaN (a row of weight 0)
        zero = (prob == 0) & (coef == 0) & np.isinf(g) & ~np.isnan(g * pcoef)
    grad[zero] = 0
    grad[~keep] = 0
    return grad


def _reduce(p, loss_rows):
    """'mean': the float64 sum / denominator by IEEE arithmetic (0/0 = NaN, x/0 =
    +-inf); a float32 result beyond float32's range is +-inf, quietly."""
    dt = p.x.dtype.type
    if p.reduction == "none":
        return loss_rows.astype(p.x.dtype).reshape(p.loss_shape)
    total = np.sum(loss_rows, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return dt(total if p.reduction == "sum" else total / np.float64(p.denom))


def _grad_scale(p, grad_output):
    """Upstream gradient per row, as (rows, 1) ('mean': / denominator, by IEEE)."""
    if p.reduction == "none":
        g = np.broadcast_to(np.asarray(grad_output, np.float64), p.loss_shape) \
            if np.ndim(grad_output) == 0 else \
            check_row_array(grad_output, p.loss_shape, "grad_output", nonneg=False)
        return np.asarray(g, np.float64).reshape(-1, 1)
    try:
        g = np.float64(float(grad_output))
    except (TypeError, ValueError):
        raise ValueError(f"grad_output must be a scalar for reduction={p.reduction!r}, "
                         f"got {grad_output!r}") from None
    if p.reduction == "mean":
        with np.errstate(divide="ignore", invalid="ignore"):
            g = g / np.float64(p.denom)
    return np.full((p.rows, 1), g)


def _to_input_layout(p, grad_rows):
    """(rows, C) class-last gradient back to the input's shape."""
    shape = p.x.shape
    if p.x.ndim == 1:
        return grad_rows.reshape(shape)
    g = grad_rows.reshape((shape[0],) + shape[2:] + (p.c,))
    return np.ascontiguousarray(np.moveaxis(g, -1, 1))


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0, *, sample_weight=None, z_loss=0.0, n_threads=None):
    """Reference softmax cross-entropy (see pyce.cross_entropy)."""
    p = _check(input, target, weight, ignore_index, reduction, label_smoothing, sample_weight,
               z_loss, n_threads)
    loss_rows, _ = _loss_and_grad(p)
    return _reduce(p, loss_rows)


def cross_entropy_backward(input, target, grad_output=1.0, weight=None, ignore_index=-100,
                           reduction="mean", label_smoothing=0.0, *, sample_weight=None,
                           z_loss=0.0, out=None, n_threads=None):
    """Reference gradient of cross_entropy (see pyce.cross_entropy_backward)."""
    p = _check(input, target, weight, ignore_index, reduction, label_smoothing, sample_weight,
               z_loss, n_threads)
    _, grad_rows = _loss_and_grad(p, _grad_scale(p, grad_output))
    grad = _to_input_layout(p, grad_rows.astype(p.x.dtype))
    if out is not None:
        check_out(out, p.x)
        out[...] = grad
        return out
    return grad


def cross_entropy_and_grad(input, target, weight=None, ignore_index=-100, reduction="mean",
                           label_smoothing=0.0, *, sample_weight=None, z_loss=0.0, out=None,
                           overwrite_input=False, n_threads=None):
    """Reference (loss, grad) (see pyce.cross_entropy_and_grad)."""
    p = _check(input, target, weight, ignore_index, reduction, label_smoothing, sample_weight,
               z_loss, n_threads)
    loss_rows, grad_rows = _loss_and_grad(p, _grad_scale(p, 1.0))
    grad = _to_input_layout(p, grad_rows.astype(p.x.dtype))
    if overwrite_input:
        if out is not None:
            raise ValueError("pass either out= or overwrite_input=True, not both")
        if p.x is not input or not p.x.flags.writeable:
            raise ValueError("overwrite_input=True needs a writeable float32/float64 numpy array")
        out = p.x
    elif out is not None:
        check_out(out, p.x)
    if out is not None:
        out[...] = grad
        grad = out
    return _reduce(p, loss_rows), grad


def naive_cross_entropy(input, target):
    """What from-scratch NumPy code often writes first: -(1/N) sum(y * log(p + 1e-6)).

    input (N, C) logits, target (N,) class indices; returns the 'mean' loss.
    Biased: the 1e-6 caps each sample's loss at 13.8 and adds ~1e-6 * C to
    every probability's denominator; exp overflows for logits > 88 (float32).
    """
    x = np.asarray(input)
    n, c = x.shape
    e = np.exp(x)  # no max subtraction: the classic overflow
    p = e / e.sum(axis=1, keepdims=True)
    onehot = np.zeros_like(p)
    onehot[np.arange(n), target] = 1
    return -(1.0 / n) * np.sum(onehot * np.log(p + 1e-6))


def naive_cross_entropy_and_grad(input, target):
    """The naive loss with the textbook gradient (p - onehot) / N, built from temporaries."""
    x = np.asarray(input)
    n, c = x.shape
    e = np.exp(x)
    p = e / e.sum(axis=1, keepdims=True)
    onehot = np.zeros_like(p)
    onehot[np.arange(n), target] = 1
    loss = -(1.0 / n) * np.sum(onehot * np.log(p + 1e-6))
    return loss, (p - onehot) / n


def linear_cross_entropy_and_grad(hidden, weight, target, bias=None, ignore_index=-100,
                                  reduction="mean", label_smoothing=0.0, *, z_loss=0.0,
                                  chunk_size=None, n_threads=None):
    """Reference of pyce.linear_cross_entropy_and_grad, unfused: it builds the (N, V) logits.

    logits = hidden @ weight.T (+ bias); (loss, G) = cross_entropy_and_grad(logits, ...);
    d_hidden = G @ weight, d_weight = G.T @ hidden, d_bias = G.sum(0) (None without bias).
    chunk_size is accepted for the same signature and ignored.
    """
    hid, w, bias, t = check_linear(hidden, weight, target, bias, chunk_size)
    logits = hid @ w.T
    if bias is not None:
        logits = logits + bias
    loss, g = cross_entropy_and_grad(logits, t, ignore_index=ignore_index, reduction=reduction,
                                     label_smoothing=label_smoothing, z_loss=z_loss,
                                     n_threads=n_threads)
    if reduction == "none":
        loss = np.asarray(loss).reshape(-1)
    return loss, g @ w, g.T @ hid, g.sum(axis=0) if bias is not None else None


def linear_cross_entropy(hidden, weight, target, bias=None, ignore_index=-100, reduction="mean",
                         label_smoothing=0.0, *, z_loss=0.0, chunk_size=None, n_threads=None):
    """Reference of pyce.linear_cross_entropy (unfused: builds the logits)."""
    return linear_cross_entropy_and_grad(hidden, weight, target, bias, ignore_index, reduction,
                                         label_smoothing, z_loss=z_loss, chunk_size=chunk_size,
                                         n_threads=n_threads)[0]
