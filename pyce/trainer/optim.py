"""SGD and Adam with PyTorch's update rules, in place on NumPy parameters.

Both take the list from ``model.parameters()`` (objects with ``.data``,
``.grad`` and ``.name``), have a settable ``lr``, ``zero_grad()``, ``step()``
and ``state_dict()`` / ``load_state_dict(d)`` for checkpoints. A state dict
is flat -- {str: Python scalar or NumPy array} -- so it fits in an .npz;
per-parameter buffers are keyed '<buffer>/<parameter name>'.

Each step is one fused pass per parameter in C (pyce._nnk, see
cext/pyce_trainer_kernels.c): one read of param, grad and state and one write of
param and state per element, no temporaries, no allocation per step. The
arithmetic is done in the parameters' dtype (float32 or float64; data is a
C- or Fortran-contiguous array -- pyce.nn.Linear keeps weights
Fortran-ordered -- and grad and state arrays of that dtype and shape are
walked in the same memory order: a grad assigned in the other order, or
strided, is copied into it first; checked every step) with torch.optim's
operations in torch.optim's order; results agree with torch to a few ulp per
step (products may be fused with the following addition, as PyTorch's own CPU
kernels do).
"""
import contextlib
import math

import numpy as np

from pyce import _blas, _nnk
from pyce._validate import check_nonneg_scalar

__all__ = ["Optimizer", "SGD", "Adam"]


def _same_order(a, b):
    """a and b are both C-contiguous or both Fortran-contiguous: the optimizers'
    one-pass kernels run over their memory in step."""
    return (a.flags.c_contiguous and b.flags.c_contiguous) or \
        (a.flags.f_contiguous and b.flags.f_contiguous)


def _in_order_of(p, g):
    """g, or a copy of it in p's memory order when g is an array of p's shape
    stored the other way (a gradient the caller assigned); anything else is
    passed on for the kernel to reject with its message."""
    if type(g) is np.ndarray and type(p) is np.ndarray and g.shape == p.shape \
            and not _same_order(p, g) and (p.flags.c_contiguous or p.flags.f_contiguous):
        return np.array(g, order="C" if p.flags.c_contiguous else "F")
    return g


def _run_step(kernel, p, arrays, args, name):
    """kernel(p.data, *arrays, *args, name), one of pyce._nnk's fused steps. When
    it rejects the arrays (its checks run before any write) and some of them are
    stored in the other memory order than p.data (or strided), it runs once more
    on copies in p.data's order. Returns the arrays it ran on, so an optimizer
    keeps state it converted. The common case pays no check in Python."""
    try:
        kernel(p.data, *arrays, *args, name)
        return arrays
    except ValueError:
        conv = tuple(_in_order_of(p.data, a) for a in arrays)
        if all(c is a for c, a in zip(conv, arrays)):
            raise
    kernel(p.data, *conv, *args, name)
    return conv


class Optimizer:
    """Base of SGD and Adam: the parameter list, lr, zero_grad and the state dict.

    params: the Parameter objects to update (``model.parameters()``); lr: the
    learning rate, a finite float >= 0 (settable between steps).
    """
    _hyper = ()      # names of the float hyper-parameters saved in state_dict
    _buffers = ()    # names of the per-parameter buffers saved in state_dict

    def __init__(self, params, lr):
        params = list(params)
        if not params:
            raise ValueError("params is empty: pass model.parameters()")
        names = [getattr(p, "name", "") or str(i) for i, p in enumerate(params)]
        if len(set(names)) != len(names):
            names = [str(i) for i in range(len(params))]
        self.params = params
        self._names = names
        self.lr = lr

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = check_nonneg_scalar(value, "lr")

    def fused_gradients(self):
        """A context in which the optimizer may take the weight gradients'
        products straight into its state (pyce.train.fit enters it around
        training); the base class does nothing (see SGD.fused_gradients)."""
        return contextlib.nullcontext()

    def zero_grad(self):
        """Set every parameter's .grad to 0 (for pyce.nn.Parameter lazily: see
        Parameter.zero_grad)."""
        for p in self.params:
            if hasattr(p, "zero_grad"):
                p.zero_grad()
            else:
                p.grad.fill(0)

    def state_dict(self):
        """{'type', 'lr', hyper-parameters, 'step', '<buffer>/<param name>': array copy}."""
        d = {"type": type(self).__name__, "lr": self.lr, "step": self.step_count}
        for h in self._hyper:
            d[h] = getattr(self, h)
        for b in self._buffers:
            for name, arr in zip(self._names, getattr(self, "_" + b)):
                if arr is not None:
                    d[f"{b}/{name}"] = arr.copy()
        return d

    def load_state_dict(self, d):
        """Restore lr, hyper-parameters, step and buffers (arrays are copied)."""
        d = {k: (v.item() if isinstance(v, np.ndarray) and v.ndim == 0 else v)
             for k, v in d.items()}
        if d.get("type") != type(self).__name__:
            raise ValueError(f"state_dict is for {d.get('type')!r}, not {type(self).__name__}")
        self.lr = d["lr"]
        self.step_count = int(d["step"])
        for h in self._hyper:
            setattr(self, h, d[h])
        for b in self._buffers:
            bufs = getattr(self, "_" + b)
            for i, (name, p) in enumerate(zip(self._names, self.params)):
                key = f"{b}/{name}"
                if key in d:
                    arr = np.asarray(d[key])
                    if arr.shape != p.data.shape:
                        raise ValueError(f"state_dict[{key!r}] has shape {arr.shape}, the "
                                         f"parameter has {p.data.shape}")
                    bufs[i] = np.empty_like(p.data)  # the parameter's memory order
                    np.copyto(bufs[i], arr, casting="unsafe")
                else:
                    bufs[i] = None
        self._after_load()

    def _after_load(self):
        pass


class SGD(Optimizer):
    """Stochastic gradient descent with torch.optim.SGD's arguments, in its
    positional order, and its rule:

        g = grad + weight_decay * p
        b = g (first step), b = momentum * b + (1 - dampening) * g (later)   if momentum
        g = g + momentum * b (nesterov) or g = b                             if momentum
        p -= lr * g

    params: model.parameters(); lr: learning rate (default 1e-3, as torch);
    momentum, dampening, weight_decay: finite floats >= 0; nesterov: needs
    momentum > 0 and dampening 0 (as torch). Arithmetic in the parameters'
    dtype (see the module docstring).
    """
    _hyper = ("momentum", "dampening", "nesterov", "weight_decay")
    _buffers = ("momentum_buffer",)

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params, lr)
        self.momentum = check_nonneg_scalar(momentum, "momentum")
        self.dampening = check_nonneg_scalar(dampening, "dampening")
        self.weight_decay = check_nonneg_scalar(weight_decay, "weight_decay")
        self.nesterov = bool(nesterov)
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ValueError(f"nesterov=True needs momentum > 0 and dampening 0, got "
                             f"momentum={momentum!r}, dampening={dampening!r}")
        self._momentum_buffer = [None] * len(self.params)
        self._fused_first = [False] * len(self.params)
        self.step_count = 0

    def load_state_dict(self, d):
        """Restore lr, hyper-parameters, step and momentum buffers (copied); a
        state dict written before SGD had dampening gets torch's default 0."""
        d = dict(d)
        d.setdefault("dampening", 0.0)
        super().load_state_dict(d)

    @contextlib.contextmanager
    def fused_gradients(self):
        """A context in which, with momentum and without nesterov, the weight
        gradient of every 2-D pyce.nn.Parameter goes straight into its
        momentum buffer: the backward pass calls one gemm of NumPy's BLAS
        (pyce._blas) with alpha = 1 - dampening and beta = momentum (alpha 1,
        beta 0 on the buffer's first step) instead of writing .grad, and
        step() finishes with one pass (weight decay, p -= lr * buf; without
        weight decay that pass is the BLAS's axpy, on its threads). torch's
        rule holds; only the rounding order differs (the weight-decay term is
        added to the buffer after the gradient). Such a .grad is not stored:
        reading it raises until the next zero_grad(), and on exit it reads as
        zeros. Products whose operands gemm cannot take take the usual path.
        Yields None."""
        hooked = []
        if self.momentum != 0 and not self.nesterov:
            for i, p in enumerate(self.params):
                if hasattr(p, "sink") and np.ndim(p.data) == 2 \
                        and _blas.gemm(p.data.dtype) is not None:
                    p.sink = self._sink_for(i)
                    hooked.append(p)
        try:
            yield
        finally:
            for p in hooked:
                p.sink = None
                if p.fused:
                    p.zero_grad()

    def _sink_for(self, i):
        def sink(p, a, b):
            return self._gemm_into_buffer(i, p.data, a, b)
        return sink

    def _gemm_into_buffer(self, i, w, a, b):
        """buf_i = momentum * buf_i + (1 - dampening) * (a @ b) by one gemm, or
        False when the operands do not suit it (a must be the transpose of a
        C-contiguous array, b have unit-stride rows, both of w's dtype; w and
        its buffer C-ordered, or both Fortran-ordered as Linear stores weights:
        then the gemm writes buf.T = b.T @ a.T, a C-ordered (in, out) array)."""
        at = a.T
        isz = w.itemsize
        wc = w.flags.c_contiguous
        if not (type(at) is np.ndarray and type(b) is np.ndarray and at.dtype == w.dtype
                and b.dtype == w.dtype and at.flags.c_contiguous
                and (wc or w.flags.f_contiguous)
                and b.ndim == 2 and b.strides[1] == isz and b.strides[0] % isz == 0
                and b.strides[0] >= b.shape[1] * isz and at.shape[0] == b.shape[0]
                and (at.shape[1], b.shape[1]) == w.shape):
            return False
        buf = self._momentum_buffer[i]
        first = buf is None
        if first:
            buf = self._momentum_buffer[i] = np.zeros_like(w)  # w's memory order
        elif not (buf.flags.c_contiguous if wc else buf.flags.f_contiguous):
            return False
        alpha, beta = (1.0, 0.0) if first else (1.0 - self.dampening, self.momentum)
        out, inp = w.shape
        gemm, ldb = _blas.gemm(w.dtype), b.strides[0] // isz
        if wc:                    # buf (out, in) = at.T @ b
            gemm(101, 112, 111, out, inp, at.shape[0], alpha, at.ctypes.data, out,
                 b.ctypes.data, ldb, beta, buf.ctypes.data, inp)
        else:                     # buf.T (in, out) = b.T @ at
            gemm(101, 112, 111, inp, out, at.shape[0], alpha, b.ctypes.data, ldb,
                 at.ctypes.data, out, beta, buf.ctypes.data, out)
        self._fused_first[i] = first
        return True

    def _apply_fused(self, i, p):
        if p.fused == 2:
            raise RuntimeError(f"parameter {self._names[i]!r}: step() twice after one "
                               f"backward pass whose gradient went into the momentum buffer")
        c = self.weight_decay * (1.0 if self._fused_first[i] else 1.0 - self.dampening)
        buf, axpy = self._momentum_buffer[i], _blas.axpy(p.data.dtype)
        w = p.data
        if c == 0 and axpy is not None and type(w) is np.ndarray and _same_order(w, buf) \
                and w.flags.writeable and w.shape == buf.shape and w.dtype == buf.dtype:
            # p -= lr * buf on the BLAS's own threads: the gemm just ran there, and
            # a second pool (OpenMP) would compete with its spinning workers
            axpy(w.size, -self.lr, buf.ctypes.data, 1, w.ctypes.data, 1)
        else:
            _nnk.sgd_apply(p.data, buf, self.lr, c, self._names[i])
        p.fused = 2

    def step(self):
        """One update of every parameter from its .grad (fused C pass each)."""
        lr, mu, damp, wd = self.lr, self.momentum, self.dampening, self.weight_decay
        bufs = self._momentum_buffer
        for i, p in enumerate(self.params):
            if getattr(p, "fused", 0):
                self._apply_fused(i, p)
                continue
            first = mu != 0 and bufs[i] is None
            if first:
                bufs[i] = np.empty_like(p.data)  # the kernel writes it: buf = d
            try:
                _, bufs[i] = _run_step(_nnk.sgd_step, p, (p.grad, bufs[i]),
                                       (lr, mu, damp, wd, self.nesterov, first), self._names[i])
            except Exception:
                if first:  # bad input: leave no uninitialized buffer behind
                    bufs[i] = None
                raise
        self.step_count += 1


class Adam(Optimizer):
    """Adam with PyTorch's rule (L2 weight decay added to the gradient, not AdamW):

        g = grad + weight_decay * p
        m = beta1 m + (1 - beta1) g    (as torch: m + (1 - beta1)(g - m))
        v = beta2 v + (1 - beta2) g^2
        p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    params: model.parameters(); lr: learning rate; betas: (beta1, beta2),
    each in [0, 1); eps, weight_decay: finite floats >= 0.
    """
    _hyper = ("beta1", "beta2", "eps", "weight_decay")
    _buffers = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise ValueError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
        self.beta1, self.beta2 = float(b1), float(b2)
        for nm, b in (("betas[0]", self.beta1), ("betas[1]", self.beta2)):
            if not 0.0 <= b < 1.0:
                raise ValueError(f"{nm} must be in [0, 1), got {b!r}")
        self.eps = check_nonneg_scalar(eps, "eps")
        self.weight_decay = check_nonneg_scalar(weight_decay, "weight_decay")
        self._exp_avg = [np.zeros_like(p.data) for p in self.params]
        self._exp_avg_sq = [np.zeros_like(p.data) for p in self.params]
        self.step_count = 0

    @property
    def betas(self):
        """(beta1, beta2)."""
        return (self.beta1, self.beta2)

    def _after_load(self):
        for bufs in (self._exp_avg, self._exp_avg_sq):
            for i, p in enumerate(self.params):
                if bufs[i] is None:
                    bufs[i] = np.zeros_like(p.data)

    def step(self):
        """One update of every parameter from its .grad (fused C pass each)."""
        self.step_count += 1
        t = self.step_count
        b1, b2 = self.beta1, self.beta2
        step_size = self.lr / (1.0 - b1 ** t)
        bc2_sqrt = math.sqrt(1.0 - b2 ** t)
        for i, p in enumerate(self.params):
            _, self._exp_avg[i], self._exp_avg_sq[i] = _run_step(
                _nnk.adam_step, p, (p.grad, self._exp_avg[i], self._exp_avg_sq[i]),
                (self.weight_decay, b1, b2, step_size, bc2_sqrt, self.eps), self._names[i])
