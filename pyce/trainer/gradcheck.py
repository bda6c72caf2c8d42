"""pyce.gradcheck: analytic gradients against central finite differences, in float64.

The check runs on a float64 copy of the model and of the loss, so the
caller's model (float32 or float64) is never modified, and the finite
differences are accurate to about 1e-9 relative (float32 could not tell a
correct gradient from a slightly wrong one).
"""
import copy
import math

import numpy as np

from pyce.trainer.nn import CrossEntropyLoss

__all__ = ["gradcheck", "GradcheckReport", "ParamCheck"]


class ParamCheck:
    """One parameter's comparison.

    max_rel_error: max over the checked entries of |a - n| / max(|a|, |n|, atol)
      (a analytic, n numeric);
    max_abs_error: max |a - n|;
    scale: the least-squares ratio sum(a*n) / sum(n*n), 1 for a correct
      gradient; a batch-size-scaled gradient shows the batch size here.
    """
    __slots__ = ("name", "shape", "checked", "max_abs_error", "max_rel_error", "scale")

    def __init__(self, name, shape, checked, max_abs_error, max_rel_error, scale):
        self.name, self.shape, self.checked = name, shape, checked
        self.max_abs_error, self.max_rel_error, self.scale = max_abs_error, max_rel_error, scale

    def __repr__(self):
        return (f"ParamCheck({self.name!r}, shape={self.shape}, checked={self.checked}, "
                f"max_rel_error={self.max_rel_error:.3g}, scale={self.scale:.6g})")


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
            rows.append((p.name, "x".join(map(str, p.shape)) or "()", str(p.checked),
                         f"{p.max_abs_error:.2e}", f"{p.max_rel_error:.2e}",
                         f"{p.scale:.6g}", ok))
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
        if self.passed:
            return ""
        scales = [p.scale for p in self.params if p.max_rel_error > self.rtol
                  and math.isfinite(p.scale)]
        if not scales:
            return ""
        s = float(np.median(scales))
        n = self.batch_size
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


def _float64_copy(obj):
    clone = copy.deepcopy(obj)
    if hasattr(clone, "_set_dtype"):
        clone._set_dtype(np.float64)
    if hasattr(clone, "layers"):
        for layer in clone.layers:
            if hasattr(layer, "_set_dtype"):
                layer.dtype = np.dtype(np.float64)
    return clone


def gradcheck(model, x, y, loss=None, *, eps=1e-6, rtol=1e-5, atol=1e-6, max_per_param=200,
              seed=0):
    """Compare every parameter's analytic gradient with central finite differences.

    model: a pyce.nn module (e.g. a Sequential); x, y: one batch; loss: the
    loss layer (default pyce.nn.CrossEntropyLoss(), i.e. 'mean'). Everything
    is copied to float64 first; the caller's model is left as it was.

    For each parameter, up to max_per_param entries (all of them if the
    parameter is smaller or max_per_param is None; otherwise a random subset
    drawn with `seed`) are perturbed by +-eps: numeric = (L(p + eps) -
    L(p - eps)) / (2 eps), whose error is about 1e-10 for an O(1) loss.
    The relative error of an entry is |a - n| / max(|a|, |n|, atol), so
    gradients below atol are judged on their absolute error. passed means
    max_rel_error <= rtol.

    Returns a GradcheckReport (max_rel_error, per-parameter errors and the
    ratio analytic/numeric, a str() table). ReLU networks: an entry whose
    perturbation crosses a kink can show a large error; use ELU to check.
    """
    if loss is None:
        loss = CrossEntropyLoss()
    eps = float(eps)
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if max_per_param is not None and (isinstance(max_per_param, bool) or max_per_param < 1):
        raise ValueError(f"max_per_param must be None or a positive integer, "
                         f"got {max_per_param!r}")
    m = _float64_copy(model)
    lf = _float64_copy(loss)
    x64 = np.asarray(x, np.float64)
    y = np.asarray(y)
    if y.dtype.kind == "f":
        y = y.astype(np.float64)

    def value():
        return float(np.sum(lf.forward(m.forward(x64), y)))

    params = m.parameters()
    if not params:
        raise ValueError("the model has no parameters to check")
    for p in params:
        p.zero_grad()
    out = lf.forward(m.forward(x64), y)
    g = lf.backward() if np.ndim(out) == 0 else lf.backward(np.ones(np.shape(out)))
    m.backward(g)
    rng = np.random.default_rng(seed)
    checks = []
    for p in params:
        flat = p.data.reshape(-1)
        size = flat.size
        if max_per_param is None or size <= max_per_param:
            idx = np.arange(size)
        else:
            idx = np.sort(rng.choice(size, int(max_per_param), replace=False))
        analytic = p.grad.reshape(-1)[idx].copy()
        numeric = np.empty(len(idx))
        for j, k in enumerate(idx):
            orig = flat[k]
            flat[k] = orig + eps
            lp = value()
            flat[k] = orig - eps
            lm = value()
            flat[k] = orig
            numeric[j] = (lp - lm) / (2 * eps)
        diff = np.abs(analytic - numeric)
        denom = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), atol)
        nn = float(numeric @ numeric)
        scale = float(analytic @ numeric) / nn if nn > 0 else float("nan")
        checks.append(ParamCheck(p.name or f"param{len(checks)}", tuple(p.data.shape), len(idx),
                                 float(diff.max(initial=0.0)),
                                 float((diff / denom).max(initial=0.0)), scale))
    return GradcheckReport(checks, rtol, len(x64))
