"""Adversarial inputs and the fast-vs-reference comparison shared by the reliability tests.

Three parts:

1. `adversarial_arrays(dtype, tmpdir)` -- logits nobody planned for (equal
   logits, one huge logit, all -inf but one, denormals, +1e6 offsets, +-inf
   and NaN, extreme magnitudes, C = 1, N = 0, large C) in every memory order
   pyce claims to accept without trouble (C, Fortran, transposed and strided
   views, negative strides, read-only, memory-mapped, unaligned, byte-swapped).

2. `FUNCTIONS` -- one `Spec` per public function: how to build calls for a
   given logits array, and which outputs it returns.  A new public function
   (e.g. pyce.linear_cross_entropy) is covered by every reliability test
   once a Spec for it is appended to this list.

3. `check_against_reference(spec, args, kwargs, context)` -- runs the fast
   function and pyce.reference.<name> (`run_against_reference`); both must
   raise the same exception type, or agree within the bound below, which
   `error_ratio` states per element (within the bound iff ratio <= RTOL).
   bench/precision.py measures the observed worst ratio with the same two
   functions.

The bound (stated once, used by every test):

    |fast - ref| <= RTOL[dtype] * (|ref| + scale) + atol

  ref    pyce.reference run in float64 (float32 inputs and float32
         probability targets are cast exactly to float64 first);
  scale  the magnitude of the terms whose difference the output is, per
         element, computed in float64 from the inputs: for a loss row
         v * (sum_k |a_k| + 2 z |lse|), for a gradient entry
         |g| v (p_k (sum_j |a_j| + 2 z |lse|) + |a_k|), where a_k are the
         target coefficients (1-eps) w_y [k = y] + eps/C w_k (or
         w_k ((1-eps) t_k + eps/C)), v the sample weight, g the upstream
         gradient (divided by the 'mean' denominator), z the z-loss; 1 for
         log_softmax, 0 for softmax.  Sums over rows for 'sum', divided by the
         denominator for 'mean'.
  RTOL   float32: 1e-5 (~84 ulp).  What float32 costs: exp of x - m in float32
         (<= 2 ulp, plus the rounding of x - m, so the row sum s is within
         ~2.4e-7 + 6e-8 log C relative), log(s) and the sums in float64 (the
         few-class path, C <= 16: s summed in float32, log(s) a float32
         log1p), one rounding to float32 at the end.  Rounding x - m itself
         (half an ulp of x - m, absolute) is that much relative error in
         exp(x - m): 2^-18 = 3.8e-6 for x - m in [-87, -64] (below -87, exp
         is under tiny).  Observed worst (python bench/precision.py): 3.9e-6
         (softmax of random logits, probabilities ~1e-29, that rounding),
         2.0e-6 (gradients, few-class and general paths alike), losses 6.1e-8
         on the few-class path (near-equal logits: the float32 sum) and 3.3e-8
         elsewhere; over the adversarial set alone 1.1e-6 (softmax, C = 1000)
         and 5.5e-7 (gradients).  1e-5 leaves a 2.5x margin.  float64: 1e-12
         (~4500 ulp): exp within 2 ulp, sums in a different order than NumPy's
         pairwise sums (relative error up to ~n * 1.1e-16 for n terms, n <=
         ~10^4 here), and the same rounding of x - m (2^-44 = 5.7e-14 for
         x - m in [-708, -512]; the float64 reference is no more exact there:
         its gradients use exp((x - m) - log s), rounded twice).
         Observed worst 2.9e-14 (gradients at x - m ~ -550); 4.2e-15 over the
         adversarial set.
  atol   2 * tiny(dtype) * (row scale) + RTOL * tiny(dtype): exp results
         below the smallest normal number tiny are returned as 0 by design
         (pyce_exp.h), and a subnormal result (e.g. from a subnormal
         grad_output) carries fewer significant bits, so below tiny the bound
         is absolute: RTOL relative to tiny.

Under the infinite gradient scale of a 'mean' denominator of exactly 0, entries
whose probability is below float32's smallest normal number are not compared
(0 in the kernels, whose exp returns 0 there; +-inf or NaN in the reference).

NaN positions must match (NaN == NaN).  Infinite values must match exactly,
sign included, after the float64 reference is rounded to the output dtype
(so a float32 result that overflows to inf is right when the exact value
exceeds float32's range).
"""
import inspect
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

import pyce
import pyce.reference as ref
from pyce._validate import check_ce

RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
DTYPES = (np.float32, np.float64)


# --------------------------------------------------------------------------------------
# 1. adversarial arrays
# --------------------------------------------------------------------------------------

def _patterns(dtype, rng):
    """(name, logical float64 array) pairs; the class axis is axis 1 (axis 0 for 1-d)."""
    fi = np.finfo(dtype)
    tiny_sub = float(fi.smallest_subnormal)
    inf, nan = np.inf, np.nan

    def one_per_row(base, value):
        a = base.copy()
        a[np.arange(a.shape[0]), rng.integers(0, a.shape[1], a.shape[0])] = value
        return a

    normal = rng.standard_normal((7, 5)) * 3
    minus_inf = np.full((6, 5), -inf)
    denormal = rng.integers(0, 50, (5, 6)) * tiny_sub
    wide = np.sign(rng.standard_normal((6, 7))) * 10.0 ** rng.uniform(-30, 30, (6, 7))
    specials = rng.standard_normal((8, 4))
    specials[0, 1] = inf          # +inf logit: row is NaN (inf - inf)
    specials[1, :] = inf
    specials[2, 2] = nan
    specials[3, :] = -inf         # every class masked: row is NaN
    specials[4, 0] = -inf         # one masked class
    specials[5, [0, 3]] = -inf
    specials[6, :] = nan
    return [
        ("normal", normal),
        ("equal", np.full((6, 4), 2.5)),
        ("equal_zero_c1", np.zeros((5, 1))),                     # C = 1
        ("one_huge", one_per_row(rng.standard_normal((5, 6)), 1e30)),
        ("one_huge_negative", one_per_row(rng.standard_normal((5, 6)), -1e30)),
        ("huge_row", np.full((3, 4), 1e30) * rng.choice([-1, 1], (3, 4))),
        ("minus_inf_but_one", one_per_row(minus_inf, 0.75)),
        ("denormal", denormal),
        ("offset_1e6", rng.standard_normal((6, 5)) + 1e6),
        ("wide_1e30", wide),
        ("extremes", np.array([[fi.max, 0.0, -fi.max], [-fi.max, -fi.max, 0.0],
                               [fi.tiny, -fi.tiny, 0.0]])),
        ("inf_nan", specials),
        ("empty_batch", np.zeros((0, 5))),                       # N = 0
        ("large_c", rng.standard_normal((3, 1000)) * 5),
        ("unbatched", rng.standard_normal(6) * 2),               # (C,)
        ("kdim", rng.standard_normal((3, 4, 5))),                # (N, C, d)
        ("kdim2_one_huge", np.where(rng.random((2, 3, 2, 3)) < 0.2, 1e30,
                                    rng.standard_normal((2, 3, 2, 3)))),
    ]


def _layouts(a, dtype, tmpdir):
    """(memory-order name, array holding a's values in that layout) pairs."""
    a = a.astype(dtype)
    rev = tuple(range(a.ndim))[::-1]
    out = [("C", np.ascontiguousarray(a)), ("F", np.asfortranarray(a))]
    out.append(("transposed", np.ascontiguousarray(a.transpose(rev)).transpose(rev)))
    big = np.full(tuple(2 * s + 1 for s in a.shape), np.nan, dtype)
    out.append(("strided", _fill(big[tuple(slice(1, None, 2) for _ in a.shape)], a)))
    big2 = np.full(a.shape, np.nan, dtype)
    neg = big2[tuple(slice(None, None, -1) for _ in a.shape)]
    out.append(("negative_strides", _fill(neg, a)))
    ro = a.copy()
    ro.flags.writeable = False
    out.append(("readonly", ro))
    if tmpdir is not None and a.size:
        path = os.path.join(str(tmpdir), f"mm_{len(os.listdir(str(tmpdir)))}.dat")
        mm = np.memmap(path, dtype=dtype, mode="w+", shape=a.shape)
        mm[...] = a
        mm.flush()
        out.append(("memmap_readonly", np.memmap(path, dtype=dtype, mode="r", shape=a.shape)))
    buf = np.zeros(a.nbytes + 1, np.uint8)
    una = np.frombuffer(buf.data, dtype=dtype, count=a.size, offset=1).reshape(a.shape)
    una[...] = a
    out.append(("unaligned", una))
    out.append(("byteswapped", a.astype(np.dtype(dtype).newbyteorder())))
    return out


def _fill(view, a):
    view[...] = a
    return view


def adversarial_arrays(dtype, tmpdir=None, seed=0):
    """List of (label, array) with label 'pattern/memory-order'."""
    rng = np.random.default_rng(seed)
    cases = []
    for pname, base in _patterns(dtype, rng):
        for lname, arr in _layouts(base, dtype, tmpdir):
            cases.append((f"{pname}/{lname}", arr))
    return cases


def memory_order(a):
    """Short description of an array's memory layout for failure messages."""
    if not isinstance(a, np.ndarray):
        return type(a).__name__
    f = a.flags
    bits = ["C" if f.c_contiguous else "F" if f.f_contiguous else f"strides={a.strides}"]
    if not f.writeable:
        bits.append("read-only")
    if isinstance(a, np.memmap):
        bits.append("memmap")
    if not f.aligned:
        bits.append("unaligned")
    if not a.dtype.isnative:
        bits.append("byte-swapped")
    return ",".join(bits)


# --------------------------------------------------------------------------------------
# 2. the public functions
# --------------------------------------------------------------------------------------

@dataclass
class Spec:
    """A public function: `calls(x, rng)` -> [(label, args, kwargs)], outputs' names."""
    name: str
    calls: Callable
    outputs: tuple
    scales: Callable  # (args64, kwargs64) -> {output name: scale array}

    @property
    def fast(self):
        return getattr(pyce, self.name)

    @property
    def ref(self):
        return getattr(ref, self.name)


def class_targets(x, rng, ignore=True):
    """Integer targets for logits x (class axis 1; 0-d for 1-d x), a few set to -100."""
    c = x.shape[0] if x.ndim == 1 else x.shape[1]
    shape = () if x.ndim == 1 else (x.shape[0],) + x.shape[2:]
    t = rng.integers(0, c, shape)
    if ignore and t.size > 1:
        t.flat[rng.integers(0, t.size)] = -100
    return t


def prob_targets(x, rng):
    """Non-negative class probabilities of x's shape and dtype (rows sum to 1)."""
    axis = 0 if x.ndim == 1 else 1
    t = rng.random(x.shape) ** 3
    t /= np.maximum(t.sum(axis=axis, keepdims=True), 1e-300)
    return t.astype(np.dtype(x.dtype).newbyteorder("="))


def _option_sets(x, rng):
    c = x.shape[0] if x.ndim == 1 else x.shape[1]
    loss_shape = () if x.ndim == 1 else (x.shape[0],) + x.shape[2:]
    w = rng.uniform(0, 2, c)
    w[rng.integers(0, c)] = 0.0
    sw = rng.uniform(0, 2, loss_shape)
    finite = np.abs(x[np.isfinite(x)])
    # Restriction, not a promise: with logits near the dtype's largest value the z-loss
    # term z * lse^2 is inf (in both implementations) and whether a gradient entry
    # 2 z lse * p_k * v overflows to inf (and 0 * inf to NaN) depends on the order of
    # the multiplications.  Both orders are IEEE-correct; pyce promises nothing there.
    z_ok = not finite.size or finite.max() < np.finfo(x.dtype).max / 1e3
    yield "plain", {}
    yield "weight", {"weight": w}
    yield "smoothing", {"label_smoothing": 0.1}
    yield "weight+smoothing+z", {"weight": w, "label_smoothing": 0.3,
                                 "z_loss": 1e-3 if z_ok else 0.0}
    yield "sample_weight+z", {"sample_weight": sw, "z_loss": 0.5 if z_ok else 0.0}
    yield "prob_target", {"target": prob_targets(x, rng)}
    yield "prob_target+weight+smoothing", {"target": prob_targets(x, rng), "weight": w,
                                           "label_smoothing": 0.2}
    if c > 1:
        yield "ignore_index=1", {"ignore_index": 1}
    yield "bad_target", {"target": np.full(loss_shape, c)}   # IndexError from both


def _ce_calls(name):
    def calls(x, rng):
        out = []
        loss_shape = () if x.ndim == 1 else (x.shape[0],) + x.shape[2:]
        for oname, opts in _option_sets(x, rng):
            opts = dict(opts)
            target = opts.pop("target", None)
            if target is None:
                target = class_targets(x, rng)
                if "ignore_index" in opts:
                    target = np.where(target == -100, opts["ignore_index"], target)
            for red in ("mean", "sum", "none"):
                kw = dict(opts, reduction=red)
                label = f"{oname},reduction={red}"
                if name == "cross_entropy_backward":
                    go = rng.standard_normal(loss_shape) if red == "none" and loss_shape else 0.7
                    out.append((label, (x, target, go), kw))
                else:
                    out.append((label, (x, target), kw))
            if name == "cross_entropy_and_grad":
                out.append((f"{oname},out=", (x, target),
                            dict(opts, out=np.full(x.shape, np.nan, x.dtype.newbyteorder("=")))))
                out.append((f"{oname},overwrite_input", (x, target),
                            dict(opts, overwrite_input=True)))
        return out
    return calls


def _softmax_calls(x, rng):
    axes = [-1] if x.ndim == 1 else [1, -1, 0]
    out = [(f"axis={ax}", (x,), {"axis": ax}) for ax in axes]
    out.append(("axis=-1,out=", (x,), {"out": np.full(x.shape, np.nan, x.dtype.newbyteorder("="))}))
    return out


def _bind(name, args, kwargs):
    b = inspect.signature(getattr(ref, name)).bind(*args, **kwargs)
    b.apply_defaults()
    return b.arguments


def _rows_to_input_layout(rows, shape):
    """(rows, C) class-last array back to the input's shape (class axis 1)."""
    c = rows.shape[1]
    if len(shape) == 1:
        return rows.reshape(shape)
    g = rows.reshape((shape[0],) + tuple(shape[2:]) + (c,))
    return np.moveaxis(g, -1, 1)


def ce_scales(name, args, kwargs):
    """Per-output scales of the error bound (see the module docstring), in float64."""
    b = _bind(name, args, kwargs)
    p = check_ce(b["input"], b["target"], b["weight"], b["ignore_index"], b["reduction"],
                 b["label_smoothing"], b["sample_weight"], b["z_loss"], scan_targets=ref.scan_targets)
    c, eps, z = p.c, p.label_smoothing, p.z_loss
    with np.errstate(all="ignore"):
        x = np.moveaxis(p.x3, 1, 2).reshape(-1, c).astype(np.float64)
        w = np.ones(c) if p.class_weight is None else p.class_weight
        v = np.ones(p.rows) if p.sample_weight is None else p.sample_weight
        m = np.max(x, axis=1, keepdims=True, initial=-np.inf)
        e = np.exp(x - m)
        s = e.sum(axis=1, keepdims=True)
        prob = e / s
        lse = (m + np.log(s))[:, 0]
        if p.target is not None:
            keep = p.target != p.ignore_index
            y = np.where(keep, p.target, 0)
            coef = np.zeros((p.rows, c))
            coef[np.arange(p.rows), y] = (1 - eps) * w[y]
            coef += (eps / c) * w
            coef[~keep] = 0
        else:
            keep = np.ones(p.rows, bool)
            t = np.moveaxis(p.t3, 1, 2).reshape(-1, c).astype(np.float64)
            coef = w * ((1 - eps) * t + eps / c)
        pc = np.abs(coef).sum(axis=1) + np.where(keep, 2 * z * np.abs(lse), 0)
        # the loss is sum_k coef_k * (-log p_k) (+ z lse^2): its terms' size is
        # sum_k |coef_k| |log p_k|, which exceeds |loss| when coefficients of both
        # signs cancel (probability targets outside [0, 1])
        logp = x - lse[:, None]
        terms = np.where(coef != 0, np.abs(coef) * np.abs(logp), 0).sum(axis=1)
        loss_rows = v * (pc + terms + np.where(keep, z * lse * lse, 0))
        if p.reduction == "none":
            go = b.get("grad_output", 1.0)
            g = np.broadcast_to(np.asarray(go, np.float64), p.loss_shape).reshape(-1)
            loss_scale = loss_rows.reshape(p.loss_shape)
        else:
            g = np.full(p.rows, float(b.get("grad_output", 1.0)))
            loss_scale = np.sum(np.where(np.isfinite(loss_rows), loss_rows, 0))
            if p.reduction == "mean":
                g = g / p.denom if p.denom else 0 * g
                loss_scale = loss_scale / abs(p.denom) if p.denom else 0.0
        gv = (np.abs(g) * v)[:, None]
        grad_scale = gv * (prob * pc[:, None] + np.abs(coef))
        grad_atol = np.broadcast_to(gv * pc[:, None], grad_scale.shape)
    grads = {"grad": (_rows_to_input_layout(grad_scale, p.x.shape),
                      _rows_to_input_layout(grad_atol, p.x.shape))}
    if p.reduction == "mean" and p.denom == 0:
        # Restriction: under the infinite scale of a zero 'mean' denominator, an entry
        # whose probability is below float32's smallest normal number is 0 in the
        # kernels (their exp returns 0 there, by design) and +-inf or NaN in the
        # float64 reference (which keeps the subnormal or tiny value): not compared.
        under = (prob < np.finfo(np.float32).tiny) & keep[:, None]
        grads = {"grad": grads["grad"] + (_rows_to_input_layout(under, p.x.shape),)}
    return {"loss": (loss_scale, loss_scale), **grads}


def _softmax_scales(log):
    def scales(args, kwargs):
        shape = np.shape(args[0])
        return {"out": (np.full(shape, 1.0 if log else 0.0), np.ones(shape))}
    return scales


FUNCTIONS = [
    Spec("cross_entropy", _ce_calls("cross_entropy"), ("loss",),
         lambda a, k: ce_scales("cross_entropy", a, k)),
    Spec("cross_entropy_backward", _ce_calls("cross_entropy_backward"), ("grad",),
         lambda a, k: ce_scales("cross_entropy_backward", a, k)),
    Spec("cross_entropy_and_grad", _ce_calls("cross_entropy_and_grad"), ("loss", "grad"),
         lambda a, k: ce_scales("cross_entropy_and_grad", a, k)),
    Spec("softmax", _softmax_calls, ("out",), _softmax_scales(False)),
    Spec("log_softmax", _softmax_calls, ("out",), _softmax_scales(True)),
]
SPECS = {s.name: s for s in FUNCTIONS}


# --------------------------------------------------------------------------------------
# 3. comparison
# --------------------------------------------------------------------------------------

def to_float64(v):
    """float32 arrays (logits, probability targets) cast exactly to float64; rest unchanged."""
    if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.dtype.itemsize == 4:
        return np.asarray(v, dtype=np.float64)
    return v


def describe(spec, args, kwargs, label=""):
    x = args[0]
    return (f"{spec.name}[{label}] dtype={np.dtype(x.dtype).name} shape={np.shape(x)} "
            f"memory={memory_order(x)} options={_short(kwargs)}")


def _short(kwargs):
    return {k: (f"array{np.shape(v)}" if isinstance(v, np.ndarray) else v)
            for k, v in kwargs.items()}


def run(fn, args, kwargs):
    """('ok', result) or ('raise', exception)."""
    try:
        with np.errstate(all="ignore"):
            return "ok", fn(*args, **kwargs)
    except Exception as exc:  # the comparison is about which exception
        return "raise", exc


@dataclass
class Outcome:
    """What `run_against_reference` saw: 'raise' (both raised the same exception type)
    or 'ok' with, per output, (name, fast, reference, scale, atol_scale) ready for
    `error_ratio` / `assert_close`."""
    verdict: str
    dtype: np.dtype
    outputs: list
    fast_out: tuple = ()
    x_in: object = None


def run_against_reference(spec, args, kwargs, context):
    """Run the fast function and the float64 reference on the same call.

    Raises AssertionError when one raises and the other does not, or when they raise
    different exception types.  Entries the bound says nothing about (see ce_scales)
    are set to 0 in both outputs."""
    dtype = np.dtype(np.asarray(args[0]).dtype).newbyteorder("=")
    ref_args = tuple(to_float64(a) for a in args)
    ref_kwargs = {k: to_float64(v) for k, v in kwargs.items()
                  if k not in ("out", "overwrite_input")}
    fast_kwargs = dict(kwargs)
    x_in = args[0]
    if kwargs.get("overwrite_input") and isinstance(x_in, np.ndarray) and x_in.flags.writeable:
        x_in = x_in.copy(order="K")  # never scribble over the shared test array
    fast_args = (x_in,) + tuple(args[1:])
    kf, rf = run(spec.fast, fast_args, fast_kwargs)
    kr, rr = run(spec.ref, ref_args, ref_kwargs)
    if kwargs.get("overwrite_input") and kr == "ok" and not (
            isinstance(args[0], np.ndarray) and args[0].flags.writeable
            and args[0].dtype.isnative and args[0].dtype in (np.float32, np.float64)):
        # overwrite_input is refused for arrays that are read-only or would need a
        # conversion; the float64 reference call above could not see that, so ask the
        # reference about the caller's own array (it raises before writing anything).
        kr, rr = run(spec.ref, args, kwargs)
    if kf != kr or (kf == "raise" and type(rf) is not type(rr)):
        raise AssertionError(f"{context}: fast {'raised ' + repr(rf) if kf == 'raise' else 'returned'}"
                             f", reference {'raised ' + repr(rr) if kr == 'raise' else 'returned'}")
    if kf == "raise":
        return Outcome("raise", dtype, [])
    fast_out = rf if isinstance(rf, tuple) else (rf,)
    ref_out = rr if isinstance(rr, tuple) else (rr,)
    scales = spec.scales(ref_args, ref_kwargs)
    outputs = []
    for oname, a, r in zip(spec.outputs, fast_out, ref_out):
        scale, atol_scale, *unspecified = scales[oname]
        if unspecified:  # entries the bound says nothing about (see ce_scales)
            a, r = np.where(unspecified[0], 0, a).astype(a.dtype), np.where(unspecified[0], 0, r)
        outputs.append((oname, a, r, scale, atol_scale))
    return Outcome("ok", dtype, outputs, fast_out, x_in)


def check_against_reference(spec, args, kwargs, context):
    """Fast and reference raise the same exception type or agree within the bound."""
    res = run_against_reference(spec, args, kwargs, context)
    if res.verdict == "raise":
        return "raise"
    for oname, a, r, scale, atol_scale in res.outputs:
        assert_close(a, r, res.dtype, scale, atol_scale, f"{context}: output {oname!r}")
    if "out" in kwargs and kwargs["out"] is not None:
        assert res.fast_out[-1] is kwargs["out"], f"{context}: result is not out="
    if kwargs.get("overwrite_input"):
        assert res.fast_out[-1] is res.x_in, f"{context}: overwrite_input result is not the input"
    return "ok"


def _as_compared(actual, expected, dtype):
    """(fast as float64, reference in float64, reference rounded to the output dtype)."""
    a = np.asarray(actual).astype(np.float64)
    e = np.asarray(expected, np.float64)
    with np.errstate(all="ignore"):
        e_rounded = e.astype(dtype).astype(np.float64)  # overflow to inf as the dtype does
    return a, e, e_rounded


def _bound_parts(e, dtype, scale, atol_scale):
    """The bound's two parts for reference values e: (|e| + scale, atol), so that an
    entry is within it when |fast - ref| <= RTOL * (|e| + scale) + atol."""
    fi = np.finfo(dtype)
    with np.errstate(all="ignore"):
        scale = np.where(np.isfinite(scale), scale, 0.0)
        atol_scale = np.where(np.isfinite(atol_scale), atol_scale, 0.0)
        atol = 2 * float(fi.tiny) * atol_scale + RTOL[dtype] * float(fi.tiny)
        return np.abs(e) + scale, atol


def error_ratio(actual, expected, dtype, scale, atol_scale):
    """Per element, the error the bound limits by RTOL: an entry is within the bound
    (module docstring) when its ratio is <= RTOL[dtype] (up to the rounding of this
    division at the boundary: assert_close decides with |fast - ref| <= RTOL (|ref| +
    scale) + atol itself, and uses the ratio to report).

        ratio = max(|fast - ref| - atol, 0) / (|ref| + scale)

    For a normal-range result atol (2 tiny times a row scale) is negligible and the ratio is
    |fast - ref| / (|ref| + scale); where the absolute part dominates (results below or
    near the smallest normal number) the ratio is 0 unless the error exceeds atol.
    NaN and infinite values count as exact (0) where fast and the dtype-rounded
    reference agree (NaN == NaN, inf sign included), as inf where they do not.
    """
    dtype = np.dtype(dtype)
    a, e, e_rounded = _as_compared(actual, expected, dtype)
    rel, atol = _bound_parts(e, dtype, scale, atol_scale)
    with np.errstate(all="ignore"):
        excess = np.maximum(np.abs(a - e) - atol, 0.0)
        ratio = np.where(excess == 0, 0.0, excess / rel)   # rel = 0 with an excess: inf
        ratio = np.where(np.isnan(ratio), np.inf, ratio)    # inf excess over an inf rel
        special = ~np.isfinite(a) | ~np.isfinite(e_rounded)
        same = (a == e_rounded) | (np.isnan(a) & np.isnan(e_rounded))
        return np.where(special, np.where(same, 0.0, np.inf), ratio)


def assert_close(actual, expected, dtype, scale, atol_scale, what):
    dtype = np.dtype(dtype)
    a = np.asarray(actual)
    if a.dtype != dtype:
        raise AssertionError(f"{what}: dtype {a.dtype}, expected {dtype}")
    if a.shape != np.shape(expected):
        raise AssertionError(f"{what}: shape {a.shape}, expected {np.shape(expected)}")
    a, e, e_rounded = _as_compared(actual, expected, dtype)
    nan_a, nan_e = np.isnan(a), np.isnan(e_rounded)
    if not np.array_equal(nan_a, nan_e):
        bad = np.argwhere(nan_a != nan_e)[:5].tolist()
        raise AssertionError(f"{what}: NaN positions differ at {bad}: "
                             f"fast {a[nan_a != nan_e][:5]}, reference {e[nan_a != nan_e][:5]}")
    inf_a, inf_e = np.isinf(a), np.isinf(e_rounded)
    if not np.array_equal(inf_a, inf_e) or not np.array_equal(a[inf_a], e_rounded[inf_e]):
        bad = np.argwhere((inf_a != inf_e) | (inf_a & (a != e_rounded)))[:5].tolist()
        raise AssertionError(f"{what}: inf positions/signs differ at {bad}")
    rel, atol = _bound_parts(e, dtype, scale, atol_scale)
    with np.errstate(all="ignore"):
        tol = np.broadcast_to(RTOL[dtype] * rel + atol, a.shape)
        bad = np.isfinite(a) & ~(np.abs(a - e) <= tol)
    if np.any(bad):
        ratio = error_ratio(actual, expected, dtype, scale, atol_scale)
        idx = np.argwhere(bad)[:5].tolist() if a.ndim else []
        raise AssertionError(
            f"{what}: {int(np.sum(bad))} of {a.size} values outside the bound "
            f"(rtol={RTOL[dtype]}); first at {idx}: fast {a[bad][:3]}, reference "
            f"{e[bad][:3]}, tolerance {tol[bad][:3]}; "
            f"worst error ratio / rtol = {np.max(ratio[bad]) / RTOL[dtype]:.3g}")
