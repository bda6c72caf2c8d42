"""pyce.gradcheck: analytic gradients against central finite differences, in float64.

The check runs on a float64 copy of the model and of the loss, so the
caller's model (float32 or float64) is never modified; in float32 the
finite differences could not tell a correct gradient from a slightly wrong
one.

What is compared. For each parameter p with analytic gradient a (n entries)
gradcheck takes unit directions u and compares the analytic directional
derivative A = a . u with the central difference
N = (L(p + h u) - L(p - h u)) / (2 h):

- a parameter with at most `max_per_param` (16) entries: every entry
  (u = e_k), i.e. the whole gradient;
- a larger one: the analytic gradient's own direction u = a / |a| (A = |a|,
  the largest a directional derivative can be, so the noise matters least
  there and a wrong scale shows exactly) and `directions` (4) random unit
  directions (Gaussian, from `seed`): the random directional derivatives of
  torch.autograd.gradcheck's fast mode. A random direction mixes all n
  entries, so an error anywhere in the gradient shows in it, in proportion
  to |error| / |a|; 16 sampled entries would miss a wrong row of a 512-row
  weight 97% of the time, and the gradient's own direction cannot see a
  dropped part of it (a . a = a . g when a is g with some entries zeroed).
  Two loss evaluations per direction whatever n is: a 3072-512-256-10
  network on 32 rows takes 22 full forward passes (a perturbed later layer
  re-runs only the layers from it on), about a second with one BLAS
  thread, where comparing 200 sampled entries per parameter took 13 s.

Error measure. relative error = |A - N| / max(|A|, |N|, rms(a), atol), with
rms(a) = |a| / sqrt(n), the typical size of an entry of a and of the
derivative along a random unit direction. The cs231n convention
|A - N| / max(|A|, |N|) judges the smallest entries on their noise alone:
in the README's 64-256-128-10 network on 32 digits rows some entries are
1e-5 while a central difference carries ~5e-10 of rounding (at h = 1e-6),
which failed 6 of seeds 0..9 at 1e-5. Against rms(a) (1e-2 there) the noise
is 1e-8, while a real bug stays of order 1: a batch-size factor N gives
(N - 1) / N, an activation derivative taken as 1 or a transposed weight
gradient 0.5 to 1.9, one forgotten row of 256 about 0.1. atol (1e-4) only
matters when a whole parameter's gradient is smaller (long training, dead
units): then |A - N| must stay below rtol * atol = 1e-9, ~100x the rounding
noise. torch.autograd.gradcheck's rule |A - N| <= atol + rtol * |N| (atol
1e-5, rtol 1e-3) has the same shape, with an absolute floor that would pass
any gradient whose entries are all below 1e-5 (the README's network after
200 epochs has rms(a) ~ 1e-5).

Step size h (`eps`). A central difference has truncation error
h^2 |f'''| / 6 and rounding error ~ delta / h, delta the rounding error of
one loss evaluation (~3e-16 for a mean cross-entropy of 2.5 in float64).
The sum is smallest near h = (3 delta / |f'''|)^(1/3), i.e. eps_machine^(1/3)
= 6e-6 times the distance over which the loss bends. Measured along unit
directions in the digits and CIFAR-sized networks (ELU, standardized
inputs, He init): at h = 1e-6 the absolute error is 1e-10 to 5e-10
(rounding), at h = 1e-5 at most 6e-11 along entries and random directions
and 6e-10 along the gradient's direction (truncation: the loss bends fastest
there), at h = 1e-4 up to 6e-8 along the gradient's direction. Largest
relative error over 5 seeds, for h = 1e-7 / 1e-6 / 1e-5 / 1e-4 / 1e-3:
README network 5e-7 / 4e-8 / 6e-9 / 2e-8 / 1e-6; after 200 epochs
3e-6 / 4e-7 / 4e-8 / 1e-6 / 1e-4; 3072-512-256-10 on Gaussian input
8e-7 / 6e-8 / 8e-9 / 1e-8 / 1e-6; on unscaled 0..255 pixels
2e-5 / 2e-6 / 7e-7 / 1e-5 / 1e-3: h = 1e-5 is the best of the five in
every case.

ReLU kinks. When a ReLU input lies within h of 0, the two evaluations sit
on different sides of the kink and N averages two slopes (a correct
3072-512-256-10 ReLU network failed this way for 3 of 20 seeds). A
comparison off by more than rtol is therefore measured again with h / 10
and h / 100 and keeps its best result: a kink is crossed 10 and 100 times
less often, a wrong gradient is wrong at every step.

Measured with the defaults, max relative error of correct models: README
network 5.6e-9 (100 seeds; ReLU 7.1e-9), after 20 / 200 epochs 5.2e-8 /
4.1e-8, 3072-512-256-10 on Gaussian and on correlated image-like input
7.8e-9 / 9.1e-9 (20 seeds), unscaled 0..255 pixels 6.6e-7; planted bugs
(10 seeds each, both sizes): at least 0.97 (sum for mean), 0.50 (ELU
derivative taken as 1), 0.98 (transposed square weight gradient).
"""
import copy
import math

import numpy as np

from pyce._validate import check_positive_int
from pyce.trainer.nn import CrossEntropyLoss, Sequential

__all__ = ["gradcheck", "GradcheckReport", "ParamCheck"]


class ParamCheck:
    """One parameter's comparison.

    mode: 'entries' (every entry compared) or 'directions' (the analytic
      gradient's direction and random unit directions);
    checked: how many entries or directions were compared;
    max_rel_error: max over them of |a - n| / max(|a|, |n|, rms, atol)
      (a analytic, n numeric, rms = the root mean square of the parameter's
      analytic gradient);
    max_abs_error: max |a - n|;
    scale: the least-squares ratio sum(a*n) / sum(n*n), 1 for a correct
      gradient; a batch-size-scaled gradient shows the batch size here;
    scale_fits: whether a = scale * n holds to 0.1% (a constant factor
      explains the errors); the table shows '-' for the scale otherwise.
    A NaN or inf analytic or numeric value makes max_rel_error inf.
    """
    __slots__ = ("name", "shape", "checked", "max_abs_error", "max_rel_error", "scale", "mode",
                 "scale_fits")

    def __init__(self, name, shape, checked, max_abs_error, max_rel_error, scale,
                 mode="entries", scale_fits=True):
        self.name, self.shape, self.checked = name, shape, checked
        self.max_abs_error, self.max_rel_error, self.scale = max_abs_error, max_rel_error, scale
        self.mode, self.scale_fits = mode, scale_fits

    def __repr__(self):
        return (f"ParamCheck({self.name!r}, shape={self.shape}, checked={self.checked} "
                f"{self.mode}, max_rel_error={self.max_rel_error:.3g}, scale={self.scale:.6g})")


class GradcheckReport:
    """Result of gradcheck: max_rel_error (float, over all parameters),
    params (list of ParamCheck), per_param ({name: max_rel_error}), passed
    (max_rel_error <= rtol), rtol, batch_size; str() is a readable table."""

    def __init__(self, params, rtol, batch_size):
        self.params = params
        self.rtol = rtol
        self.batch_size = batch_size
        self.max_rel_error = max((p.max_rel_error for p in params), default=0.0)
        self.per_param = {p.name: p.max_rel_error for p in params}
        self.passed = bool(self.max_rel_error <= rtol)

    def __bool__(self):
        return self.passed

    def __str__(self):
        rows = [("parameter", "shape", "checked", "max abs err", "max rel err", "scale", "")]
        for p in self.params:
            ok = "ok" if p.max_rel_error <= self.rtol else "WRONG"
            rows.append((p.name, "x".join(map(str, p.shape)) or "()",
                         f"{p.checked} {p.mode}",
                         f"{p.max_abs_error:.2e}", f"{p.max_rel_error:.2e}",
                         f"{p.scale:.6g}" if p.scale_fits else "-", ok))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        verdict = "PASSED" if self.passed else "FAILED"
        lines.append(f"gradcheck {verdict}: max relative error {self.max_rel_error:.3g} "
                     f"(tolerance {self.rtol:g})")
        hint = self._hint()
        if hint:
            lines.append(hint)
        return "\n".join(lines)

    def _hint(self):
        wrong = [p for p in self.params if not p.max_rel_error <= self.rtol]
        if not wrong:
            return ""
        if any(math.isinf(p.max_rel_error) for p in wrong):
            return ("A gradient or loss value is not finite (NaN or inf): check the forward "
                    "pass and the loss at this point before the gradients.")
        if not all(p.scale_fits for p in wrong):
            return ("No constant factor explains the errors: look at the backward pass of "
                    "the parameters marked WRONG (a derivative taken as 1 or at the wrong "
                    "point, a transposed or misplaced product, a missing term).")
        s = float(np.median([p.scale for p in wrong]))
        n = self.batch_size
        if s == 0.0:
            return ("The analytic gradients marked WRONG are 0 where the true ones are not: "
                    "a backward pass that does not write them (or overwrites them with 0).")
        if n > 1 and abs(s - n) <= 0.01 * n:
            return (f"The analytic gradients are {s:.4g}x the true ones, the batch size: a "
                    f"'sum' where 'mean' was meant (or a missing division by the batch size).")
        if n > 1 and abs(s - 1.0 / n) <= 0.01 / n:
            return (f"The analytic gradients are 1/{n} of the true ones: a division by the "
                    f"batch size too many ('mean' where 'sum' was meant).")
        if abs(s - 1.0) > 0.01:
            return f"The analytic gradients are about {s:.4g}x the true ones."
        return ""

    def __repr__(self):
        return (f"GradcheckReport(max_rel_error={self.max_rel_error:.3g}, "
                f"passed={self.passed})")


def _to_dtype(module, dtype):
    """Cast `module` (a Module or a loss with a `to(dtype)`) to dtype in place:
    the one place gradcheck changes a model's dtype."""
    if hasattr(module, "to"):
        module.to(dtype)


def _float64_copy(obj):
    clone = copy.deepcopy(obj)
    _to_dtype(clone, np.float64)
    return clone


class _Objective:
    """L(parameters) on one batch, as a Python float: the sum of the loss's
    output (the scalar of 'mean'/'sum', the per-sample losses of 'none').

    For a plain Sequential the input of every layer at the unperturbed point
    is kept (a copy), and a perturbation of a parameter re-runs only the
    layers from its own on: the same operations on the same arrays as a full
    forward pass, so the same result, without the first layer's product
    (most of the work in a 3072-512-256-10 network) for the later layers.
    """

    def __init__(self, model, loss, x, y):
        self.model, self.loss, self.x, self.y = model, loss, x, y
        self.layer_of, self.inputs = {}, []
        if isinstance(model, Sequential) and type(model).forward is Sequential.forward:
            h = x
            for i, layer in enumerate(model.layers):
                self.inputs.append(np.array(h, copy=True))
                for p in layer.parameters():
                    self.layer_of[id(p)] = i
                h = layer.forward(h)

    def __call__(self, param):
        i = self.layer_of.get(id(param))
        if i is None:
            out = self.model.forward(self.x)
        else:
            out = self.inputs[i]
            for layer in self.model.layers[i:]:
                out = layer.forward(out)
        return float(np.sum(self.loss.forward(out, self.y)))


def _directions(a, max_per_param, directions, rng):
    """('entries', [entry indices]) or ('directions', [unit vectors]) for one
    parameter's flattened analytic gradient `a` (see the module docstring)."""
    if max_per_param is None or a.size <= max_per_param:
        return "entries", list(range(a.size))
    norm = float(np.linalg.norm(a))
    dirs = [a / norm] if norm > 0 else []
    for _ in range(directions):
        u = rng.standard_normal(a.size)
        dirs.append(u / np.linalg.norm(u))
    return "directions", dirs


def _order(p):
    """'F' for a Fortran-ordered p.data (Linear's weights), else 'C': the order
    whose reshape(-1) of p.data is a view, the one entries are numbered in."""
    d = p.data
    return "F" if d.flags.f_contiguous and not d.flags.c_contiguous else "C"


def _central(objective, p, orig, u, h):
    """(L(p + h u) - L(p - h u)) / (2 h); u an entry index or a unit vector.
    p.data is restored bit for bit afterwards."""
    flat = p.data.reshape(-1, order=_order(p))  # a view: writing it perturbs the model
    if isinstance(u, int):
        flat[u] = orig[u] + h
        lp = objective(p)
        flat[u] = orig[u] - h
        lm = objective(p)
        flat[u] = orig[u]
    else:
        np.add(orig, h * u, out=flat)
        lp = objective(p)
        np.subtract(orig, h * u, out=flat)
        lm = objective(p)
        flat[...] = orig
    return (lp - lm) / (2 * h)


def _relative_error(a, n, floor):
    """|a - n| / max(|a|, |n|, floor); 0 for 0 / 0; inf when a, n or floor is NaN or inf."""
    if not (math.isfinite(a) and math.isfinite(n) and math.isfinite(floor)):
        return math.inf
    denom = max(abs(a), abs(n), floor)
    return abs(a - n) / denom if denom > 0 else 0.0


def _compare(objective, p, analytic, opts, rng):
    """One parameter's ParamCheck: analytic directional derivatives against
    central differences (see the module docstring). A comparison off by more
    than rtol is measured again with steps h/10 and h/100 and keeps its best
    result: a wrong gradient is wrong at every step, a ReLU kink within h of
    the point is crossed 10 and 100 times less often by the smaller steps."""
    eps, rtol, atol, max_per_param, directions = opts
    a = analytic.reshape(-1, order=_order(p))  # entries in p.data's memory order
    mode, dirs = _directions(a, max_per_param, directions, rng)
    floor = max(float(np.linalg.norm(a)) / math.sqrt(a.size) if a.size else 0.0, atol)
    orig = p.data.reshape(-1, order=_order(p)).copy()
    ana = np.array([a[u] if mode == "entries" else float(a @ u) for u in dirs])
    num = np.empty(len(dirs))
    rel = np.zeros(len(dirs))
    for j, u in enumerate(dirs):
        for h in (eps, eps / 10, eps / 100):
            n = _central(objective, p, orig, u, h)
            r = _relative_error(ana[j], n, floor)
            if h == eps or r < rel[j]:
                num[j], rel[j] = n, r
            if rel[j] <= rtol:
                break
    diff = np.abs(ana - num)
    nn = float(num @ num)
    scale = float(ana @ num) / nn if nn > 0 else float("nan")
    fits = bool(np.linalg.norm(ana - scale * num) <= 1e-3 * np.linalg.norm(ana))
    return ParamCheck(p.name, tuple(p.data.shape), len(dirs), float(diff.max(initial=0.0)),
                      float(rel.max(initial=0.0)), scale, mode, fits)


def _check_options(eps, rtol, atol, max_per_param, directions):
    for name, v in (("eps", eps), ("rtol", rtol), ("atol", atol)):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a float, got {v!r}")
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be finite and > 0, got {eps!r}")
    for name, v in (("rtol", rtol), ("atol", atol)):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {v!r}")
    check_positive_int(max_per_param, "max_per_param", allow_none=True)
    check_positive_int(directions, "directions")


def gradcheck(model, x, y, loss=None, *, eps=1e-5, rtol=1e-5, atol=1e-4, max_per_param=16,
              directions=4, seed=0):
    """Compare every parameter's analytic gradient with central finite differences.

    model: a pyce.nn module (e.g. a Sequential); x, y: one batch; loss: the
    loss layer (default pyce.nn.CrossEntropyLoss(), i.e. 'mean'; with
    'none' the per-sample losses are summed). Everything is copied to
    float64 first; the caller's model and loss are left as they were.

    eps: the finite-difference step h along unit directions (default 1e-5,
      near float64's optimum; the module docstring has the measurements). A
      comparison off by more than rtol is repeated with h/10 and h/100 and
      keeps its best result (a ReLU kink within h of the point).
    rtol: the verdict: passed = max relative error <= rtol (default 1e-5;
      correct models measure 1e-9 to 1e-6, the planted bugs 0.1 to 2).
    atol: the smallest derivative size the relative error is taken against
      (default 1e-4): a parameter whose whole gradient is below it is
      judged on |a - n| <= rtol * atol.
    max_per_param: a parameter with at most this many entries (default 16)
      has every entry compared; a larger one is compared along its analytic
      gradient's direction and `directions` random unit directions. None
      compares every entry of every parameter (two loss evaluations each:
      slow for large layers).
    directions: random directions per large parameter (default 4).
    seed: seeds the random directions (numpy.random.default_rng(seed)).

    The relative error of a comparison is |a - n| / max(|a|, |n|, rms, atol)
    (a analytic, n numeric, rms = the root mean square of that parameter's
    analytic gradient), so an entry far smaller than its neighbours is not
    judged on finite-difference noise alone; NaN or inf counts as an
    infinite error.

    Returns a GradcheckReport: truthy when it passed; .max_rel_error;
    .params, one ParamCheck per parameter (entries or directions checked,
    max errors, scale = the analytic/numeric ratio: the batch size for a
    'sum' where 'mean' was meant); str() is a table with a verdict and a
    hint. Cost: two loss evaluations per compared entry or direction.
    Raises ValueError for a model without parameters or an out-of-range
    option, TypeError for an option of the wrong type.
    """
    if loss is None:
        loss = CrossEntropyLoss()
    _check_options(eps, rtol, atol, max_per_param, directions)
    m = _float64_copy(model)
    lf = _float64_copy(loss)
    x64 = np.asarray(x, np.float64)
    y = np.asarray(y)
    if y.dtype.kind == "f":
        y = y.astype(np.float64)
    params = m.parameters()
    if not params:
        raise ValueError("the model has no parameters to check")
    for p in params:
        p.zero_grad()
    out = lf.forward(m.forward(x64), y)
    g = lf.backward() if np.ndim(out) == 0 else lf.backward(np.ones(np.shape(out)))
    m.backward(g)
    grads = [p.grad.copy() for p in params]
    objective = _Objective(m, lf, x64, y)
    rng = np.random.default_rng(seed)
    opts = (float(eps), float(rtol), float(atol), max_per_param, directions)
    checks = []
    for i, (p, a) in enumerate(zip(params, grads)):
        c = _compare(objective, p, a, opts, rng)
        c.name = p.name or f"param{i}"
        checks.append(c)
    return GradcheckReport(checks, float(rtol), len(x64))
