"""Argument checking shared by the fast functions and pyce.reference.

Everything a caller can get wrong is checked here, once, before any kernel
runs; the kernels then trust their arguments.  Both implementations use the
same checks, so they raise the same exception for the same bad input.

The result of checking a cross-entropy call is a `Problem`: the logits seen
as a 3-d (n, c, d) view (class axis in the middle, as in PyTorch), targets as
contiguous int64 class indices or as probabilities of the input's dtype, and
the weights as contiguous float64.
"""
import math
import numbers

import numpy as np

REDUCTIONS = ("mean", "sum", "none")
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float_array(a, name):
    """`a` as an aligned, native-byte-order float32/float64 ndarray (no copy when it is one)."""
    if type(a) is not np.ndarray:
        try:
            a = np.asarray(a)
        except ValueError as exc:  # ragged nested lists
            raise ValueError(f"{name} could not be converted to an array: {exc}") from None
    dt = a.dtype
    if dt not in FLOAT_DTYPES:
        if dt.kind == "f" and dt.itemsize in (4, 8) and not dt.isnative:
            a = a.astype(dt.newbyteorder("="))
        elif dt.kind == "O":
            raise ValueError(f"{name} could not be converted to a numeric array "
                             f"(got an object array; are the nested lists ragged?)")
        else:
            raise TypeError(f"{name} must be a float32 or float64 array, got dtype {dt}")
    if not a.flags.aligned:
        a = np.require(a, requirements="A")
    return a


def element_strides(a):
    """Strides in elements, or None when some stride is not a multiple of the itemsize."""
    isz = a.itemsize
    out = []
    for s in a.strides:
        if s % isz:
            return None
        out.append(s // isz)
    return out


def as_3d(a, shape):
    """View `a` as the 3-d `shape` and return (view, element strides).

    A copy is made only when the axes cannot be merged into that shape
    without one (a non-contiguous view) or a stride is not a multiple of the
    itemsize.
    """
    v = a.view()
    try:
        v.shape = shape
    except AttributeError:
        v = np.ascontiguousarray(a).reshape(shape)
    st = element_strides(v)
    if st is None:
        v = np.ascontiguousarray(v)
        st = element_strides(v)
    return v, st


def as_ncd(a):
    """View `a` (ndim >= 1) as (n, c, d) and return (view3d, (sn, sc, sd)).

    (C,) -> (1, C, 1); (N, C) -> (N, C, 1); (N, C, d1..dk) -> (N, C, d1*...*dk).
    A copy is made only when d1..dk cannot be merged into one stride (a
    non-contiguous view of a K-dimensional input) or a stride is not a
    multiple of the itemsize.
    """
    if a.ndim == 1:
        return as_3d(a, (1, a.shape[0], 1))
    d = 1
    for k in a.shape[2:]:
        d *= k
    return as_3d(a, (a.shape[0], a.shape[1], d))


def check_reduction(reduction):
    """`reduction` must be one of REDUCTIONS (ValueError otherwise)."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}, "
                         f"got {reduction!r}")
    return reduction


def check_positive_int(value, name, *, allow_none=False):
    """`value` as a Python int >= 1 (the one positive-integer check of the package).

    A non-integer (bool included) raises TypeError, an integer < 1 ValueError;
    with allow_none, None is returned unchanged.  Every layer (kernels'
    n_threads, layer sizes, batch sizes, epochs, command-line numbers) calls
    this, so the same mistake gives the same error type everywhere.
    """
    if value is None and allow_none:
        return None
    expected = "None or a positive integer" if allow_none else "a positive integer"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def check_float_dtype(dtype, name="dtype"):
    """`dtype` as np.dtype float32 or float64; anything else raises TypeError."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}")
    return dt


def check_n_threads(n_threads):
    """None -> 0 (all usable cores); a positive int -> itself."""
    return check_positive_int(n_threads, "n_threads", allow_none=True) or 0


def check_probability(value, name):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a float in [0, 1], got {value!r}") from None
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return v


def check_nonneg_scalar(value, name):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a non-negative float, got {value!r}") from None
    if not (v >= 0.0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite non-negative float, got {value!r}")
    return v


def check_weight_vector(weight, c, name="weight"):
    """(c,) finite float64 class weights; negative weights are accepted, as in PyTorch."""
    try:
        w = np.asarray(weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of {c} finite floats, got {weight!r}") from None
    if w.shape != (c,):
        raise ValueError(f"{name} must have shape ({c},) (one weight per class), got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name} must be finite, got {w[~np.isfinite(w)][:3]} at "
                         f"positions {np.flatnonzero(~np.isfinite(w))[:3].tolist()}")
    return np.ascontiguousarray(w)


def check_row_array(value, shape, name, nonneg):
    """A float64 contiguous array of exactly `shape` (the per-sample loss's shape)."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a float array of shape {shape}, got {value!r}") from None
    if a.shape != shape:
        raise ValueError(f"{name} must have the per-sample loss's shape {shape}, got shape {a.shape}")
    if nonneg:
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be finite")
        if np.any(a < 0):
            raise ValueError(f"{name} must be non-negative, got {a[a < 0].ravel()[:3]}")
    return np.ascontiguousarray(a).reshape(-1)


class Problem:
    """A validated cross-entropy call (see the module docstring)."""

    __slots__ = ("x", "x3", "xs", "n", "c", "d", "rows", "loss_shape", "target", "target_prob",
                 "t3", "ts", "class_weight",
                 "sample_weight", "ignore_index", "label_smoothing", "z_loss", "reduction",
                 "n_threads", "denom", "f64")


def check_ce(input, target, weight, ignore_index, reduction, label_smoothing,
             sample_weight=None, z_loss=0.0, n_threads=None, *, scan_targets):
    """Validate a cross-entropy call; returns a Problem with the 'mean' denominator.

    `scan_targets(target, rows, c, ignore_index, class_weight, sample_weight)`
    -> (first bad position or -1, denominator) checks class-index targets:
    the fast functions pass the compiled scan (pyce._ce.scan_targets),
    pyce.reference its own NumPy one, so neither checks the other.
    """
    p = _check_input(input)
    p.reduction = check_reduction(reduction)
    p.n_threads = check_n_threads(n_threads)
    p.label_smoothing = 0.0 if label_smoothing == 0.0 else check_probability(label_smoothing, "label_smoothing")
    p.z_loss = 0.0 if z_loss == 0.0 else check_nonneg_scalar(z_loss, "z_loss")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"ignore_index must be an integer, got {ignore_index!r}")
    p.ignore_index = int(ignore_index)
    t = target if type(target) is np.ndarray else _as_target_array(target)
    if t.dtype.kind in "iu":
        _check_class_targets(p, t)
    elif t.dtype.kind == "f":
        _check_prob_targets(p, t)
    else:
        raise TypeError(f"target must hold integer class indices or float class probabilities, "
                        f"got dtype {t.dtype}")
    _check_weights(p, weight, sample_weight)
    if p.target is None:
        p.denom = float(p.rows) if p.sample_weight is None else float(p.sample_weight.sum())
        return p
    bad, p.denom = scan_targets(p.target, p.rows, p.c, p.ignore_index, p.class_weight,
                                p.sample_weight)
    if bad >= 0:
        _raise_bad_target(p, t, bad)
    return p


def _check_input(input):
    """A Problem holding the logits and their (n, c, d) geometry."""
    x = as_float_array(input, "input")
    if x.ndim == 0:
        raise ValueError("input must have at least 1 dimension (C,) or (N, C, ...), got a 0-d array")
    p = Problem()
    p.x = x
    p.f64 = x.dtype == FLOAT_DTYPES[1]
    p.x3, p.xs = as_ncd(x)
    p.n, p.c, p.d = p.x3.shape
    if p.c == 0:
        raise ValueError(f"input has 0 classes (shape {x.shape}); the class axis is "
                         f"{0 if x.ndim == 1 else 1}")
    p.rows = p.n * p.d
    p.loss_shape = () if x.ndim == 1 else (x.shape[0],) + x.shape[2:]
    return p


def _check_class_targets(p, t):
    x = p.x
    if t.shape != p.loss_shape:
        if t.shape == x.shape:
            raise ValueError(f"an integer target of the input's shape {x.shape} looks like one-hot "
                             f"labels; pass class indices of shape {p.loss_shape} (e.g. "
                             f"target.argmax(axis={0 if x.ndim == 1 else 1})) or float class "
                             f"probabilities (e.g. target.astype(input.dtype))")
        if x.ndim == 1:
            raise ValueError(f"target must be a 0-d class index for unbatched input of shape "
                             f"{x.shape}, got shape {t.shape}")
        raise ValueError(f"target must have shape {p.loss_shape} for input of shape {x.shape} "
                         f"(one class index per sample), got shape {t.shape}")
    ti = t if (t.dtype == np.int64 and t.flags.c_contiguous) else np.ascontiguousarray(t, dtype=np.int64)
    p.target = ti.reshape(-1)
    p.target_prob = p.t3 = None
    p.ts = (0, 0, 0)


def _check_prob_targets(p, t):
    x = p.x
    if t.shape != x.shape:
        raise ValueError(f"a float target holds class probabilities and must have the input's "
                         f"shape {x.shape}, got shape {t.shape} (pass integer class indices "
                         f"of shape {p.loss_shape} for hard labels)")
    if p.ignore_index >= 0:
        raise ValueError(f"ignore_index={p.ignore_index} is not supported with probability "
                         f"(float) targets, which have no class index to ignore; leave it at "
                         f"its default (-100), as PyTorch requires")
    tp = t if t.dtype == x.dtype else t.astype(x.dtype)
    if not tp.flags.aligned or not tp.dtype.isnative:
        tp = np.ascontiguousarray(tp, dtype=x.dtype)
    p.target = None
    p.target_prob = tp
    p.t3, p.ts = as_ncd(tp)


def _check_weights(p, weight, sample_weight):
    p.class_weight = None if weight is None else check_weight_vector(weight, p.c)
    p.sample_weight = (None if sample_weight is None else
                       check_row_array(sample_weight, p.loss_shape, "sample_weight", nonneg=True))


def _raise_bad_target(p, t, bad):
    pos = np.unravel_index(bad, p.loss_shape) if p.loss_shape else ()
    value = t[pos] if p.loss_shape else t[()]
    where = f"target[{', '.join(map(str, pos))}]" if p.loss_shape else "target"
    raise IndexError(f"{where} = {value} is out of range for {p.c} classes "
                     f"(valid: 0..{p.c - 1}, or ignore_index={p.ignore_index})")


def rows_problem(logits, target, ignore_index, label_smoothing, z_loss, n_threads):
    """A Problem for a C-contiguous (m, C) logits block whose arguments were
    checked already (pyce._linear's chunks): no validation here."""
    p = Problem()
    p.x = p.x3 = logits
    m, c = logits.shape
    p.n, p.c, p.d, p.rows = m, c, 1, m
    p.xs = (c, 1, 0)
    p.f64 = logits.dtype == FLOAT_DTYPES[1]
    p.target, p.target_prob, p.t3, p.ts = target, None, None, (0, 0, 0)
    p.class_weight, p.sample_weight = None, None
    p.ignore_index, p.label_smoothing, p.z_loss = ignore_index, label_smoothing, z_loss
    p.n_threads = n_threads
    return p


def _as_target_array(target):
    try:
        return np.asarray(target)
    except ValueError as exc:
        raise ValueError(f"target could not be converted to an array: {exc}") from None


def check_out(out, x, name="out"):
    """`out` must be a writeable ndarray of x's shape and dtype that does not
    overlap x unless it is exactly x (same memory and strides)."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != x.shape:
        raise ValueError(f"{name} must have the input's shape {x.shape}, got {out.shape}")
    if out.dtype != x.dtype:
        raise ValueError(f"{name} must have the input's dtype {x.dtype}, got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    if not out.flags.aligned or not out.dtype.isnative:
        raise ValueError(f"{name} must be aligned and in native byte order")
    if np.may_share_memory(out, x) and not (
            out.__array_interface__["data"][0] == x.__array_interface__["data"][0]
            and out.strides == x.strides):
        raise ValueError(f"{name} overlaps input without being the same array; pass "
                         f"overwrite_input=True to write the gradient over input")
    return out


def check_linear(hidden, weight, target, bias, chunk_size):
    """The arguments of a linear_cross_entropy call that are its own (the
    cross-entropy options are check_ce's): (hidden, weight, bias, target) as
    arrays.  hidden (N, H) float32/float64, weight (V, H) and bias (V,) of
    hidden's dtype, target (N,) integers, chunk_size None or a positive int."""
    hid = as_float_array(hidden, "hidden")
    _check_2d(hid, "hidden", "(N, H)")
    w = as_float_array(weight, "weight")
    _check_2d(w, "weight", "(V, H) as torch.nn.Linear stores it")
    n, h = hid.shape
    v = w.shape[0]
    if w.shape[1] != h:
        raise ValueError(f"weight must have shape (V, {h}) to match hidden of shape {hid.shape} "
                         f"(H = {h}), got shape {w.shape}")
    if v == 0:
        raise ValueError(f"weight has 0 rows (shape {w.shape}): there must be at least 1 class")
    _check_same_dtype(w, hid, "weight")
    if bias is not None:
        bias = as_float_array(bias, "bias")
        if bias.shape != (v,):
            raise ValueError(f"bias must have shape ({v},) (one entry per row of weight), "
                             f"got shape {bias.shape}")
        _check_same_dtype(bias, hid, "bias")
    t = target if type(target) is np.ndarray else _as_target_array(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"target must hold integer class indices (one per row of hidden), "
                        f"got dtype {t.dtype}")
    if t.shape != (n,):
        raise ValueError(f"target must have shape ({n},) (one class index per row of hidden), "
                         f"got shape {t.shape}")
    check_positive_int(chunk_size, "chunk_size", allow_none=True)
    return hid, w, bias, t


def _check_2d(a, name, shape_doc):
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-d {shape_doc}, got shape {a.shape}")


def _check_same_dtype(a, hidden, name):
    if a.dtype != hidden.dtype:
        raise TypeError(f"{name} must have hidden's dtype {hidden.dtype}, got dtype {a.dtype}")
