"""Layers of a NumPy MLP: Linear, ELU, ReLU, Sequential, CrossEntropyLoss.

The protocol (class Module): every layer has ``forward(x)``, which caches
what the backward pass needs, and ``backward(grad, *, input_grad=True)``,
which *accumulates* (``+=``) into its parameters' ``.grad``, as PyTorch
does, and returns the gradient of the loss with respect to the layer's
input -- or None with ``input_grad=False``, which lets the first layer of a
network skip its largest product. Call ``optimizer.zero_grad()`` (or
``model.zero_grad()``) before each backward pass. ``Module.to(dtype)``
casts the parameters. Loss layers derive from Loss, which owns
``reduction`` (as torch's ``_Loss``).

Parameters are stored as PyTorch stores them -- ``Linear.weight`` is
(out_features, in_features), ``bias`` is (out_features,) -- and
``Sequential.state_dict()`` uses PyTorch's key names ('0.weight', '0.bias',
'2.weight', ...), so ``torch_model.load_state_dict({k: torch.from_numpy(v)
for k, v in model.state_dict().items()})`` moves the weights across.

Precision: float32 by default, float64 on request (``dtype=``); inputs of
another dtype are converted once in ``forward``. Matrix products go through
NumPy's BLAS; ELU and ReLU run one-pass kernels (cext/pyce_trainer_kernels.c).
"""
import math

import numpy as np

from pyce import _nnk
from pyce._core import cross_entropy, cross_entropy_and_grad
from pyce._validate import (check_float_dtype, check_positive_int, check_probability,
                            check_reduction)

__all__ = ["Parameter", "Module", "Linear", "ELU", "ReLU", "Sequential", "Loss",
           "CrossEntropyLoss", "mlp", "kaiming_gain"]


def _as_generator(rng):
    if rng is None or isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(rng)
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(f"rng must be None, an int seed or a numpy.random.Generator, got {rng!r}")


def kaiming_gain(nonlinearity):
    """The He gain for the activation that follows a layer.

    'relu' and 'elu': sqrt(2) (He et al. 2015; ELU is the identity for x > 0
    and saturates for x < 0, and Clevert et al. initialize it as ReLU);
    'linear' (a layer that feeds softmax or nothing): 1.
    """
    gains = {"relu": math.sqrt(2.0), "elu": math.sqrt(2.0), "linear": 1.0}
    try:
        return gains[nonlinearity]
    except KeyError:
        raise ValueError(f"nonlinearity must be one of {sorted(gains)}, "
                         f"got {nonlinearity!r}") from None


class Parameter:
    """A trainable array ``data`` with its gradient ``grad`` (same shape and dtype).

    ``grad`` always exists (zeros until a backward pass). ``name`` is the
    PyTorch-style key ('weight', or '0.weight' inside a Sequential).

    zero_grad() is lazy: it only marks the gradient as zero. The next
    backward pass then writes its product straight into the array
    (``np.matmul(..., out=)``) instead of zero-filling it and adding, which
    saves a full pass over every weight per step. Reading ``grad`` while it
    is marked zero fills it with zeros first, so callers always see PyTorch's
    semantics: zeros after zero_grad(), accumulation (``+=``) over several
    backward passes without one. (An array reference taken from ``grad``
    before zero_grad() keeps its old values until ``grad`` is read again.)

    A product may instead go straight into an optimizer's state: while
    ``sink`` is set (pyce.optim.SGD.fused_gradients(), used by
    pyce.train.fit) the first backward after zero_grad() hands the weight
    gradient's product to sink(param, a, b), which folds it into the momentum
    buffer with one gemm, and the gradient is not stored: reading ``grad``
    then raises until the next zero_grad().
    """
    __slots__ = ("data", "_grad", "name", "_grad_pending_zero", "sink", "fused")

    def __init__(self, data, name=""):
        self.data = data
        self._grad = np.zeros_like(data)
        self.name = name
        self._grad_pending_zero = False
        self.sink = None
        self.fused = 0  # 1: gradient in the optimizer's buffer; 2: that step was taken

    @property
    def grad(self):
        """The gradient array (zeros after zero_grad, PyTorch's semantics)."""
        if self.fused:
            raise RuntimeError(f"parameter {self.name!r}: its gradient went straight into "
                               f"the optimizer's momentum buffer (SGD.fused_gradients, used "
                               f"by pyce.train.fit) and was not stored")
        if self._grad_pending_zero:
            self._grad.fill(0)
            self._grad_pending_zero = False
        return self._grad

    @grad.setter
    def grad(self, value):
        self._grad = value
        self._grad_pending_zero = False
        self.fused = 0

    def zero_grad(self):
        """Mark the gradient as zero (filled on the next read, or overwritten
        by the next backward pass)."""
        self._grad_pending_zero = True
        self.fused = 0

    def _matmul_into_grad(self, a, b):
        """grad += a @ b; written in place (no temporary, no zero fill) after
        zero_grad, or handed to `sink` (see the class docstring)."""
        if self.fused:
            raise RuntimeError(f"parameter {self.name!r}: a second backward pass without "
                               f"zero_grad while its gradient goes into the optimizer's buffer")
        if self._grad_pending_zero:
            if self.sink is not None and self.sink(self, a, b):
                self.fused = 1
                return
            if _f_only(self._grad):  # (a @ b).T = b.T @ a.T into the C-ordered transpose
                np.matmul(b.T, a.T, out=self._grad.T)
            else:
                np.matmul(a, b, out=self._grad)
            self._grad_pending_zero = False
        elif _f_only(self._grad):
            gt = self._grad.T
            gt += np.matmul(b.T, a.T)
        else:
            self._grad += np.matmul(a, b)

    def _sum_into_grad(self, g):
        """grad += g.sum(axis=0); written in place after zero_grad. One pass in C
        (float32 summed in double) when g is a C-contiguous 2-D array of grad's
        dtype, else NumPy."""
        grad = self._grad
        if _is_c_array(g, grad.dtype, 2) and _is_c_array(grad, g.dtype, 1) \
                and grad.shape[0] == g.shape[1]:
            _nnk.column_sum(g, grad, not self._grad_pending_zero)
        elif self._grad_pending_zero:
            np.sum(g, axis=0, out=grad)
        else:
            grad += g.sum(axis=0)
        self._grad_pending_zero = False

    def __repr__(self):
        return f"Parameter(name={self.name!r}, shape={self.data.shape}, dtype={self.data.dtype})"


def _f_only(a):
    """True for a Fortran-ordered array that is not also C-ordered (a 2-D
    weight's layout: see Linear)."""
    return a.flags.f_contiguous and not a.flags.c_contiguous


def _is_c_array(a, dtype, ndim):
    return (type(a) is np.ndarray and a.dtype == dtype and a.ndim == ndim
            and a.flags.c_contiguous)


class Module:
    """Base class of every layer, network and loss.

    A subclass implements forward() and backward(grad, *, input_grad=True)
    (see the module docstring) and, when it holds parameters, parameters();
    a container lists its sub-modules in children(). The base provides
    __call__ (= forward), named_parameters, zero_grad, state_dict /
    load_state_dict, modules() and to(dtype).
    """

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, x):
        """The layer's output for input x (a subclass implements it)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def backward(self, grad, *, input_grad=True):
        """Accumulate into the parameters' .grad the gradient of the loss given
        grad = dloss/doutput; return dloss/dinput, or None when input_grad is
        False (a subclass implements it)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement backward")

    def parameters(self):
        """The Parameter objects, in state_dict order."""
        return []

    def children(self):
        """The direct sub-modules (none for a single layer)."""
        return []

    def modules(self):
        """This module and every sub-module, depth first."""
        out = [self]
        for child in self.children():
            out.extend(child.modules())
        return out

    def named_parameters(self):
        """[(PyTorch key, Parameter)] in state_dict order."""
        return [(p.name, p) for p in self.parameters()]

    def zero_grad(self):
        """Mark every parameter's gradient as zero (see Parameter.zero_grad)."""
        for p in self.parameters():
            p.zero_grad()

    def state_dict(self):
        """{PyTorch key: copy of the parameter array}."""
        return {p.name: p.data.copy() for p in self.parameters()}

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays (NumPy, or anything np.asarray accepts, e.g. torch CPU
        tensors) into the parameters, in place and cast to their dtype.

        state_dict: {key: array}; strict: when True the keys must match
        exactly (KeyError otherwise); shapes always must (ValueError).
        Returns None.
        """
        params = {p.name: p for p in self.parameters()}
        if strict:
            missing = sorted(set(params) - set(state_dict))
            unexpected = sorted(set(state_dict) - set(params))
            if missing or unexpected:
                raise KeyError(f"state_dict keys do not match the model: missing {missing}, "
                               f"unexpected {unexpected}")
        for name, value in state_dict.items():
            if name not in params:
                continue
            p = params[name]
            arr = np.asarray(value)
            if arr.shape != p.data.shape:
                raise ValueError(f"state_dict[{name!r}] has shape {arr.shape}, the model's "
                                 f"parameter has {p.data.shape}")
            np.copyto(p.data, arr, casting="unsafe")

    def to(self, dtype):
        """Cast every parameter (data and grad, in this module and its
        sub-modules) to dtype, float32 or float64, in place; returns self.

        New arrays replace the old ones, so an optimizer built before the
        call keeps the old arrays: build it afterwards (as in PyTorch).
        Layers whose forward converts inputs (Linear) convert to dtype from
        then on.
        """
        dt = check_float_dtype(dtype, "dtype")
        for p in self.parameters():
            p.data = p.data.astype(dt)
            p.grad = np.zeros_like(p.data)
        for m in self.modules():
            if "dtype" in vars(m):
                m.dtype = dt
        return self


class Linear(Module):
    """y = x @ weight.T + bias, weight (out_features, in_features), bias (out_features,).

    Initialization (He/Kaiming normal, fan-in mode): weight ~ N(0, (gain /
    sqrt(in_features))^2) with gain = kaiming_gain(nonlinearity) -- sqrt(2)
    for the default 'relu' (right for ReLU and ELU), 1 for 'linear' -- and
    bias = 0, drawn from `rng` (None, an int seed or a numpy Generator).
    (PyTorch's own default is a uniform +-1/sqrt(in_features); load its
    weights with load_state_dict to match a torch model exactly.)

    backward(grad) accumulates grad.T @ x into weight.grad and grad.sum(0)
    into bias.grad and returns grad @ weight (skipped with input_grad=False,
    which Sequential uses for its first layer).

    Memory layout: weight.data (and its grad and optimizer state) has PyTorch's
    shape (out_features, in_features) but is stored Fortran-ordered, i.e. as a
    C-ordered (in_features, out_features) array (scikit-learn's coefs_ layout):
    then the forward product x @ weight.T is a BLAS product of two untransposed
    operands, which OpenBLAS computes faster than the transposed form (float32,
    this project's AMD EPYC: 128 x 3072 @ 3072 x 512 2.26 ms against 2.48 ms,
    64 x 64 @ 64 x 256 12.8 against 16.7 us; the CIFAR-shaped epoch's products
    6-14% faster). Values, shapes, state_dict() (C-ordered copies) and
    load_state_dict() are unchanged; every pyce path also accepts a C-ordered
    weight assigned by the caller. Perturbing entries by hand: weight.data.reshape(-1)
    and .ravel() are copies of a Fortran-ordered array (writes to them do not
    reach the model); index weight.data itself or use the view .ravel("K").
    """

    def __init__(self, in_features, out_features, *, bias=True, dtype=np.float32, rng=None,
                 nonlinearity="relu"):
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        self.dtype = check_float_dtype(dtype, "dtype")
        gen = _as_generator(rng)
        std = kaiming_gain(nonlinearity) / math.sqrt(self.in_features)
        w = gen.standard_normal((self.out_features, self.in_features)) * std
        self.weight = Parameter(np.asfortranarray(w, dtype=self.dtype), "weight")
        self.bias = Parameter(np.zeros(self.out_features, self.dtype), "bias") if bias else None
        self._x = None

    def parameters(self):
        """[weight] or [weight, bias]."""
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def forward(self, x):
        """x (batch, in_features), converted to the layer's dtype if needed;
        returns x @ weight.T + bias, (batch, out_features). Keeps x for backward."""
        x = _as_input(x, self.dtype, self.in_features, "Linear")
        self._x = x
        y = np.matmul(x, self.weight.data.T)
        if self.bias is not None:
            b = self.bias.data
            if _is_c_array(b, y.dtype, 1) and b.shape[0] == y.shape[1] \
                    and y.flags.c_contiguous:
                _nnk.add_row_bias(y, b)  # one pass; NumPy's broadcast add is ~4x slower
            else:
                y += b
        return y

    def backward(self, grad, *, input_grad=True):
        """grad (batch, out_features) = dloss/doutput: accumulates grad.T @ x into
        weight.grad and grad.sum(0) into bias.grad; returns grad @ weight
        (batch, in_features), or None with input_grad=False."""
        if self._x is None:
            raise RuntimeError("Linear.backward called before forward")
        self.weight._matmul_into_grad(grad.T, self._x)
        if self.bias is not None:
            self.bias._sum_into_grad(grad)
        return np.matmul(grad, self.weight.data) if input_grad else None

    def _spec(self):
        return ["Linear", self.in_features, self.out_features, self.bias is not None]

    def __repr__(self):
        return (f"Linear(in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, dtype={self.dtype.name})")


def _as_input(x, dtype, features, who):
    x = np.asarray(x)
    if x.dtype != dtype:
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            raise TypeError(f"{who}: input must be numeric, got dtype {x.dtype}")
        x = x.astype(dtype)
    if x.ndim != 2 or x.shape[1] != features:
        raise ValueError(f"{who}: input must have shape (batch, {features}), got {x.shape}")
    return x


def _contiguous(x, dtype):
    x = np.asarray(x)
    if x.dtype != dtype:
        x = x.astype(dtype)
    return np.ascontiguousarray(x)


class ELU(Module):
    """ELU(x) = x for x > 0, alpha * (exp(x) - 1) otherwise (PyTorch's ELU).

    One pass each way (cext/pyce_trainer_kernels.c): the forward's expm1 is within
    2 ulp of the exact value (tests/test_nn.py measures it), the backward is
    grad * (y + alpha) for x <= 0, PyTorch's formula from the output. The
    output keeps the input's dtype (float32 or float64).
    """

    def __init__(self, alpha=1.0):
        alpha = float(alpha)
        if not math.isfinite(alpha):
            raise ValueError(f"alpha must be finite, got {alpha!r}")
        self.alpha = alpha
        self._x = self._y = None

    def forward(self, x):
        """ELU of x (float64 stays float64, anything else becomes float32); a new array."""
        x = _contiguous(x, np.float64 if np.asarray(x).dtype == np.float64 else np.float32)
        y = np.empty_like(x)
        _nnk.elu_forward(x, y, self.alpha)
        self._x, self._y = x, y
        return y

    def backward(self, grad, *, input_grad=True):
        """dloss/dinput for grad = dloss/doutput (the output's shape), or None
        with input_grad=False (ELU has no parameters)."""
        if self._y is None:
            raise RuntimeError("ELU.backward called before forward")
        if not input_grad:  # no parameters: nothing else to do
            return None
        grad = _contiguous(grad, self._y.dtype)
        _check_grad_shape(grad, self._y, "ELU")
        dx = np.empty_like(self._y)
        _nnk.elu_backward(self._x, self._y, grad, dx, self.alpha)
        return dx

    def _spec(self):
        return ["ELU", self.alpha]

    def __repr__(self):
        return f"ELU(alpha={self.alpha})"


class ReLU(Module):
    """ReLU(x) = max(x, 0); backward passes grad where the output is > 0 (NaN
    outputs pass it too, as in PyTorch)."""

    def __init__(self):
        self._y = None

    def forward(self, x):
        """max(x, 0) (float64 stays float64, anything else becomes float32)."""
        x = _contiguous(x, np.float64 if np.asarray(x).dtype == np.float64 else np.float32)
        self._y = np.empty_like(x)
        _nnk.relu_forward(x, self._y)   # np.maximum(x, 0) in one vectorized pass
        return self._y

    def backward(self, grad, *, input_grad=True):
        """dloss/dinput for grad = dloss/doutput, or None with input_grad=False."""
        if self._y is None:
            raise RuntimeError("ReLU.backward called before forward")
        if not input_grad:  # no parameters: nothing else to do
            return None
        grad = _contiguous(grad, self._y.dtype)
        _check_grad_shape(grad, self._y, "ReLU")
        dx = np.empty_like(self._y)
        _nnk.relu_backward(self._y, grad, dx)
        return dx

    def _spec(self):
        return ["ReLU"]

    def __repr__(self):
        return "ReLU()"


def _check_grad_shape(grad, y, who):
    if grad.shape != y.shape:
        raise ValueError(f"{who}.backward: grad has shape {grad.shape}, the output had {y.shape}")


class Sequential(Module):
    """Layers applied in order; parameters named '<index>.<name>' as in PyTorch."""

    def __init__(self, *layers):
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module) or isinstance(layer, Loss):
                raise TypeError(f"layer {i} must be a pyce.nn.Module layer (Linear, ELU, "
                                f"ReLU, Sequential, or a subclass of Module), got {layer!r}")
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            for p in layer.parameters():
                p.name = f"{i}.{p.name}"  # names are relative to the layer until here
        dts = {layer.dtype for layer in self.layers if getattr(layer, "dtype", None) is not None}
        self.dtype = dts.pop() if len(dts) == 1 else None

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)

    def parameters(self):
        """Every layer's parameters, in order."""
        return [p for layer in self.layers for p in layer.parameters()]

    def children(self):
        """The layers."""
        return list(self.layers)

    def forward(self, x):
        """The layers applied in order to x; returns the last one's output."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad, *, input_grad=True):
        """Backpropagate grad (dloss/doutput) through the layers in reverse;
        returns dloss/dinput, or None with input_grad=False (then the first
        layer skips its input gradient: for a Linear, its largest product)."""
        for i in range(len(self.layers) - 1, -1, -1):
            grad = self.layers[i].backward(grad, input_grad=input_grad or i > 0)
        return grad

    def predict(self, x, batch_size=4096):
        """Class indices argmax(forward(x), axis=1), in chunks of batch_size rows."""
        x = np.asarray(x)
        if x.ndim != 2:
            raise ValueError(f"x must be 2-D (samples, features), got shape {x.shape}")
        out = np.empty(len(x), np.int64)
        for s in range(0, len(x), batch_size):
            out[s:s + batch_size] = self.forward(x[s:s + batch_size]).argmax(axis=1)
        return out

    def _spec(self):
        return [layer._spec() for layer in self.layers]

    def __repr__(self):
        inner = "\n".join(f"  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        return f"Sequential(\n{inner}\n)"


class Loss(Module):
    """Base of the loss layers; owns `reduction` ('mean', 'sum' or 'none'),
    checked by pyce._validate.check_reduction when set (as torch's _Loss).

    A subclass implements forward(input, target) (the loss under
    self.reduction, keeping what backward needs), backward(grad=None) and
    value(input, target, reduction) (the loss alone, nothing kept).
    """

    def __init__(self, reduction="mean"):
        self.reduction = reduction

    @property
    def reduction(self):
        """'mean', 'sum' or 'none'."""
        return self._reduction

    @reduction.setter
    def reduction(self, value):
        check_reduction(value)
        self._reduction = value

    def forward(self, input, target):
        """The loss of input against target, reduced by self.reduction."""
        raise NotImplementedError(f"{type(self).__name__} does not implement forward")

    def value(self, input, target, reduction=None):
        """The loss under `reduction` (default self.reduction), computed by the
        loss layer's own function and without keeping a gradient."""
        raise NotImplementedError(f"{type(self).__name__} does not implement value")

    def counted(self, target):
        """Boolean mask of the rows of `target` that count in accuracies (all
        rows here; a loss with an ignore_index leaves those rows out)."""
        return np.ones(len(target), bool)

    def batch_sum(self, loss, rows):
        """A scalar batch loss expressed as a sum over the batch's `rows` rows:
        the loss itself for 'sum', loss * rows for 'mean' (exact without class
        weights or ignored rows). pyce.train.fit sums these over an epoch and
        divides by the number of rows for History's train_loss."""
        if self.reduction == "sum":
            return loss
        if self.reduction == "mean":
            return loss * rows
        raise ValueError(f"{type(self).__name__}.batch_sum needs a scalar loss, "
                         f"reduction is {self.reduction!r}")


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy as a layer, arguments as torch.nn.CrossEntropyLoss.

    weight: per-class weights or None; ignore_index: a target class that
    contributes nothing; reduction: 'mean', 'sum' or 'none';
    label_smoothing: in [0, 1]. These are checked against the logits by
    pyce.cross_entropy on each call (reduction and label_smoothing also here).

    forward(logits, target) returns the loss (a NumPy scalar of the logits'
    dtype for 'mean' and 'sum', per-sample losses for 'none') and keeps
    dloss/dlogits, computed in the same fused pass by
    pyce.cross_entropy_and_grad; backward(grad=None) returns it, multiplied
    by grad when given (a scalar, or per-sample values for 'none').
    """

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        self.weight = None if weight is None else np.asarray(weight, np.float64)
        self.ignore_index = ignore_index
        self.label_smoothing = check_probability(label_smoothing, "label_smoothing")
        self._grad = None

    def forward(self, logits, target):
        """pyce.cross_entropy_and_grad(logits, target, ...) with this layer's
        options: returns the loss, keeps dloss/dlogits for backward."""
        loss, self._grad = cross_entropy_and_grad(
            logits, target, self.weight, self.ignore_index, self.reduction,
            self.label_smoothing)
        return loss

    def value(self, logits, target, reduction=None):
        """pyce.cross_entropy(logits, target) with this layer's weight,
        ignore_index and label_smoothing, under `reduction` (default
        self.reduction); no gradient is computed or kept."""
        reduction = self.reduction if reduction is None else reduction
        return cross_entropy(logits, target, self.weight, self.ignore_index, reduction,
                             self.label_smoothing)

    def counted(self, target):
        """Boolean mask of the rows whose target is not ignore_index."""
        return np.asarray(target) != self.ignore_index

    def backward(self, grad=None):
        """dloss/dlogits of the last forward, times grad when given (a scalar,
        or for 'none' per-sample values); returns a new array."""
        if self._grad is None:
            raise RuntimeError("CrossEntropyLoss.backward called before forward")
        g = self._grad
        if grad is None:
            return g
        if self.reduction == "none":
            grad = np.asarray(grad, g.dtype)
            if grad.shape != g.shape[:1] + g.shape[2:] and grad.ndim != 0:
                raise ValueError(f"grad must be a scalar or have the per-sample loss's shape "
                                 f"{g.shape[:1] + g.shape[2:]}, got {grad.shape}")
            return g * np.expand_dims(grad, 1) if grad.ndim else g * grad
        return g * g.dtype.type(grad)

    def __repr__(self):
        return (f"CrossEntropyLoss(reduction={self.reduction!r}, ignore_index="
                f"{self.ignore_index}, label_smoothing={self.label_smoothing})")


_ACTIVATIONS = {"elu": ELU, "relu": ReLU}


def mlp(sizes, activation="elu", *, dtype=np.float32, rng=None, bias=True):
    """Linear(sizes[0], sizes[1]), act, ..., Linear(sizes[-2], sizes[-1]); returns
    the Sequential (with .sizes and .activation set).

    sizes: at least two positive ints (inputs, hidden..., outputs);
    activation: 'elu' or 'relu' (none after the last layer: it feeds the
    softmax of CrossEntropyLoss); dtype: float32 or float64; bias: whether
    the Linear layers have biases. Hidden layers get He-normal weights with
    gain sqrt(2), the output layer gain 1 ('linear'); biases are 0. rng:
    None, an int seed or a numpy Generator; one Generator draws all layers in
    order, so a seed fixes the whole model.
    """
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"sizes needs at least 2 entries (inputs, outputs), got {sizes!r}")
    sizes = [check_positive_int(s, f"sizes[{i}]") for i, s in enumerate(sizes)]
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    gen = _as_generator(rng)
    layers = []
    for i in range(len(sizes) - 1):
        last = i == len(sizes) - 2
        layers.append(Linear(sizes[i], sizes[i + 1], bias=bias, dtype=dtype, rng=gen,
                             nonlinearity="linear" if last else activation))
        if not last:
            layers.append(_ACTIVATIONS[activation]())
    model = Sequential(*layers)
    model.sizes = [int(s) for s in sizes]
    model.activation = activation
    return model


def from_spec(spec, dtype=np.float32):
    """Rebuild a Sequential from Sequential._spec() (used by pyce.train.load_model)."""
    layers = []
    for item in spec:
        kind = item[0]
        if kind == "Linear":
            layers.append(Linear(int(item[1]), int(item[2]), bias=bool(item[3]), dtype=dtype,
                                 rng=0))
        elif kind == "ELU":
            layers.append(ELU(float(item[1])))
        elif kind == "ReLU":
            layers.append(ReLU())
        else:
            raise ValueError(f"unknown layer kind {kind!r} in a saved model")
    return Sequential(*layers)
