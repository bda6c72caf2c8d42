"""Fused linear + softmax cross-entropy for large vocabularies (CPU, NumPy).

A language-model head computes logits = hidden @ weight.T (+ bias) over V
classes and then the cross-entropy.  The (N, V) logits and their gradient
are usually the largest arrays of a training step (N = 4096 tokens and
V = 32000 classes are 524 MB in float32).  Here they are never built: the
rows of `hidden` are processed in chunks of `chunk_size` rows, and per chunk

    logits = chunk @ weight.T (+ bias)     into ONE reused (chunk_size, V) buffer
    gradient over the buffer, in place     pyce's fused kernel, already scaled
                                           by 1/denominator for 'mean'
    d_hidden[chunk]  = g @ weight          straight into the output
    d_weight        += g.T @ chunk         see "d_weight accumulation"
    d_bias          += g.sum(axis=0)

Memory beyond the inputs and the returned arrays is O(chunk_size * V), never
O(N * V).

d_weight accumulation.  d_weight += g.T @ chunk needs a gemm with beta = 1,
which NumPy's matmul does not offer.  When NumPy's wheel bundles its
scipy-openblas library (the usual case), the three products call that
library's cblas gemm directly through ctypes: the same loaded instance and
thread pool NumPy uses, d_weight accumulated by gemm itself, no scratch
(_CblasMatmuls).  Otherwise (another BLAS, or rows that are not contiguous)
NumPy's matmul does them: the first chunk writes g.T @ chunk straight into
d_weight; later chunks compute it in blocks of _DW_BLOCK_ROWS rows of
d_weight into a reused (_DW_BLOCK_ROWS, H) scratch and add each block while
it is in cache (_NumpyMatmuls; 4 MiB extra for H = 1024 float32).
SciPy's gemm with beta = 1 was tried and was slower: its second OpenBLAS
thread pool alternating with NumPy's steals the cores the other needs.

Threads.  The matmuls run on BLAS's threads.  pyce's kernel runs serially
here unless n_threads is given: it is ~5% of the work, and OpenMP workers
that spin-wait after each chunk's region would compete with BLAS's threads.
"""
import numpy as np

from pyce._core import _ce_rows_inplace, check_ce_fast, grad_scale, loss_value
from pyce._validate import check_linear, rows_problem

__all__ = ["linear_cross_entropy", "linear_cross_entropy_and_grad", "CHUNK_BUDGET_BYTES",
           "CHUNK_BUDGET_FRACTION"]

#: Default working-memory budget in bytes: the (chunk_size, V) logits buffer
#: (plus, on the NumPy-only path, the (min(1024, V), H) d_weight scratch).  The
#: default chunk_size is the largest multiple of 16 rows that fits, but at
#: least MIN_CHUNK_ROWS: for V = 32000, H = 1024 float32, 192 rows (24.6 MB)
#: with NumPy's cblas, 160 rows (20.5 MB + 4.2 MB) on the NumPy-only path.
CHUNK_BUDGET_BYTES = 24 * 2**20
#: ... or, when larger, this fraction of the (N, V) logits that are never built:
#: big batches over big vocabularies get chunks that keep the products
#: efficient while the extra memory stays under 5% of the unfused path's.
CHUNK_BUDGET_FRACTION = 0.045
#: Below this many rows per chunk the matmuls are limited by reading weight
#: (V x H) from memory once per chunk rather than by arithmetic, so very large
#: vocabularies get this many rows (64 x 256000 float32 = 66 MB) instead.
MIN_CHUNK_ROWS = 64

# Rows of d_weight per block of the NumPy-only d_weight accumulation.
_DW_BLOCK_ROWS = 1024


class _NumpyMatmuls:
    """The chunk's three products with NumPy's matmul (see the module docstring)."""

    def __init__(self, weight):
        self.weight = weight
        self.scratch = None

    def logits(self, rows, out):
        np.matmul(rows, self.weight.T, out=out)

    def d_hidden(self, g, out):
        np.matmul(g, self.weight, out=out)

    def d_weight(self, g, rows, d_weight, first):
        if first:
            np.matmul(g.T, rows, out=d_weight)
            return
        v, h = d_weight.shape
        if self.scratch is None:
            self.scratch = np.empty((min(_DW_BLOCK_ROWS, v), h), d_weight.dtype)
        for v0 in range(0, v, _DW_BLOCK_ROWS):
            v1 = min(v0 + _DW_BLOCK_ROWS, v)
            block = self.scratch[:v1 - v0]
            np.matmul(g[:, v0:v1].T, rows, out=block)
            d_weight[v0:v1] += block


class _CblasMatmuls:
    """The chunk's three products with gemm from the BLAS NumPy itself uses.

    Through cblas, d_weight += g.T @ chunk is one gemm with beta = 1: no
    scratch and no separate pass adding it in.  The library is the one
    NumPy's wheels bundle (scipy-openblas, ILP64: `scipy_cblas_?gemm64_`),
    opened by path, so it is the already-loaded instance with NumPy's own
    thread pool -- unlike SciPy's BLAS, whose second pool competes with it.
    Used when found and the arrays' rows are contiguous; otherwise
    _NumpyMatmuls.
    """

    _ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112

    def __init__(self, gemm, weight):
        self.gemm = gemm
        self.weight = weight
        self.h = weight.shape[1]

    def _call(self, trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc):
        self.gemm(self._ROW_MAJOR, self._TRANS if trans_a else self._NO_TRANS,
                  self._TRANS if trans_b else self._NO_TRANS, m, n, k, 1.0,
                  a.ctypes.data, lda, b.ctypes.data, ldb, beta, c.ctypes.data, ldc)

    @staticmethod
    def _ld(a):
        return a.strides[0] // a.itemsize

    def logits(self, rows, out):
        v = out.shape[1]
        self._call(False, True, rows.shape[0], v, self.h, rows, self._ld(rows),
                   self.weight, self.h, 0.0, out, v)

    def d_hidden(self, g, out):
        self._call(False, False, g.shape[0], self.h, g.shape[1], g, g.shape[1],
                   self.weight, self.h, 0.0, out, self.h)

    def d_weight(self, g, rows, d_weight, first):
        v = d_weight.shape[0]
        self._call(True, False, v, self.h, g.shape[0], g, v, rows, self._ld(rows),
                   0.0 if first else 1.0, d_weight, self.h)


def _numpy_gemm(dtype):
    """NumPy's bundled cblas_?gemm (ILP64) through ctypes, or None (see pyce._blas)."""
    from pyce._blas import gemm
    return gemm(dtype)


def _matmuls(hidden, weight):
    gemm = _numpy_gemm(hidden.dtype)
    # row-major operands for gemm: unit stride along a row, rows at a positive
    # stride of at least one row (lda >= H); anything else takes the NumPy path
    isz = hidden.itemsize
    rows_ok = (hidden.shape[1] >= 1 and hidden.strides[1] == isz
               and hidden.strides[0] % isz == 0 and hidden.strides[0] >= hidden.shape[1] * isz)
    if gemm is not None and rows_ok and weight.flags.c_contiguous:
        return _CblasMatmuls(gemm, weight)
    return _NumpyMatmuls(weight)


def default_chunk_size(n_classes, n_features, dtype, scratch=None, n_rows=0):
    """Rows per chunk for the default memory budget: CHUNK_BUDGET_BYTES, or
    CHUNK_BUDGET_FRACTION of the (n_rows, n_classes) logits if that is more.

    `scratch`: whether the d_weight scratch of the NumPy-only path counts
    (None: whether that path is the one that will run for this dtype).
    """
    itemsize = np.dtype(dtype).itemsize
    if scratch is None:
        scratch = _numpy_gemm(dtype) is None
    scratch = min(_DW_BLOCK_ROWS, n_classes) * n_features * itemsize if scratch else 0
    budget = max(CHUNK_BUDGET_BYTES, int(CHUNK_BUDGET_FRACTION * n_rows * n_classes * itemsize))
    rows = max(budget - scratch, 0) // (max(int(n_classes), 1) * itemsize)
    return max(MIN_CHUNK_ROWS, rows // 16 * 16)


class _Head:
    """A validated linear_cross_entropy call."""

    __slots__ = ("hidden", "weight", "bias", "target", "n", "h", "v", "reduction",
                 "ignore_index", "label_smoothing", "z_loss", "n_threads", "denom", "chunk")


def _check(hidden, weight, target, bias, ignore_index, reduction, label_smoothing, z_loss,
           chunk_size, n_threads):
    hid, w, bias, t = check_linear(hidden, weight, target, bias, chunk_size)
    n, h = hid.shape
    v = w.shape[0]
    # The shared checks (target range, ignore_index, label_smoothing, z_loss,
    # n_threads) and the 'mean' denominator, on a zero-stride stand-in for the
    # (N, V) logits: no (N, V) memory is touched or allocated.
    stand_in = np.broadcast_to(np.zeros((), hid.dtype), (n, v))
    p = check_ce_fast(stand_in, t, None, ignore_index, reduction, label_smoothing, None, z_loss,
                      n_threads)
    hd = _Head()
    hd.hidden, hd.weight, hd.bias, hd.target = hid, w, bias, p.target
    hd.n, hd.h, hd.v = n, h, v
    hd.reduction, hd.ignore_index = reduction, p.ignore_index
    hd.label_smoothing, hd.z_loss = p.label_smoothing, p.z_loss
    hd.n_threads = 1 if n_threads is None else p.n_threads  # see "Threads" above
    hd.denom = p.denom
    hd.chunk = min(int(chunk_size) if chunk_size is not None
                   else default_chunk_size(v, h, hid.dtype, n_rows=n,
                                           scratch=not isinstance(_matmuls(hid, w), _CblasMatmuls)),
                   max(n, 1))
    return hd


def _chunk_loss_and_grad(hd, mm, r0, r1, logits, loss_rows, scale, want_grad, grads):
    """One chunk: logits, the fused kernel in place, and the three products."""
    rows = hd.hidden[r0:r1]
    mm.logits(rows, logits)
    if hd.bias is not None:
        logits += hd.bias
    p = rows_problem(logits, hd.target[r0:r1], hd.ignore_index, hd.label_smoothing, hd.z_loss,
                     hd.n_threads)
    total = _ce_rows_inplace(p, None if loss_rows is None else loss_rows[r0:r1], scale,
                             want_grad)
    if want_grad:
        d_hidden, d_weight, d_bias = grads
        g = logits  # now the gradient with respect to this chunk's logits
        mm.d_hidden(g, d_hidden[r0:r1])
        mm.d_weight(g, rows, d_weight, first=r0 == 0)
        if d_bias is not None:
            d_bias += g.sum(axis=0)  # a (V,) temporary per chunk: negligible
    return total


def _run(hd, want_grad):
    dt = hd.hidden.dtype
    n, v = hd.n, hd.v
    # 'none': the gradient of the sum of the per-row losses
    scale = grad_scale(1.0, hd.denom, "sum" if hd.reduction == "none" else hd.reduction)
    loss_rows = np.empty(n, dt) if hd.reduction == "none" else None
    logits_buf = np.empty((hd.chunk, v), dt)
    grads = None
    if want_grad:
        grads = (np.empty((n, hd.h), dt), np.zeros((v, hd.h), dt),
                 np.zeros(v, dt) if hd.bias is not None else None)
    mm = _matmuls(hd.hidden, hd.weight)
    total = 0.0
    for r0 in range(0, n, hd.chunk):
        r1 = min(r0 + hd.chunk, n)
        total += _chunk_loss_and_grad(hd, mm, r0, r1, logits_buf[:r1 - r0], loss_rows, scale,
                                      want_grad, grads)
    loss = loss_rows if hd.reduction == "none" else loss_value(total, hd.denom, hd.reduction,
                                                               dt == np.float64)
    if not want_grad:
        return loss
    return (loss,) + grads


def linear_cross_entropy(hidden, weight, target, bias=None, ignore_index=-100, reduction="mean",
                         label_smoothing=0.0, *, z_loss=0.0, chunk_size=None, n_threads=None):
    """Cross-entropy of logits = hidden @ weight.T (+ bias), without building the logits.

    Equal (to float rounding) to
    pyce.cross_entropy(hidden @ weight.T + bias, target, ...).

    Parameters
    ----------
    hidden : (N, H) float32 or float64 array
        The rows fed to the linear layer (any memory order; a chunk of a
        non-C-contiguous hidden may be copied by NumPy's matmul, O(chunk * H)).
    weight : (V, H) array of hidden's dtype
        The layer's weight as torch.nn.Linear (and an LM head) stores it:
        logits = hidden @ weight.T + bias.
    target : (N,) integer array
        Class indices in [0, V), or ignore_index.
    bias : (V,) array of hidden's dtype, optional
    ignore_index : int
        Rows whose target equals it have loss 0 and gradient 0 and are left
        out of 'mean''s denominator; when every row is ignored 'mean' is NaN
        with all-zero gradients (as pyce.cross_entropy).
    reduction : {'mean', 'sum', 'none'}
        'none' returns the (N,) per-row losses (and the gradients of their sum).
    label_smoothing : float in [0, 1]
        As pyce.cross_entropy (no class weights here).
    z_loss : float >= 0 (keyword)
        Adds z_loss * logsumexp(logits_i)^2 to each non-ignored row's loss
        (PaLM's z-loss, Liger's lse_square_scale); same denominator for
        'mean'. Free when 0.
    chunk_size : positive int or None (keyword)
        Rows per chunk. None picks the largest multiple of 16 rows whose
        (chunk_size, V) logits buffer (and, on the NumPy-only path, d_weight
        scratch) fit in pyce._linear.CHUNK_BUDGET_BYTES (24 MiB: 192 rows for
        V = 32000, H = 1024 float32) or, if that is more, in
        CHUNK_BUDGET_FRACTION (4.5%) of the (N, V) logits; at least 64 rows.
    n_threads : int or None (keyword)
        Threads of pyce's cross-entropy kernel. None runs it serially (it is
        ~5% of the work, and idle OpenMP workers would compete with BLAS's
        threads between chunks). The matmuls run on NumPy's BLAS with its
        own threads (threadpoolctl controls them).

    Memory: beyond the inputs and the returned arrays, one (chunk_size, V)
    logits buffer (and, for the gradients on the NumPy-only path, a
    (min(1024, V), H) scratch for accumulating d_weight); never an (N, V)
    array.

    Precision: the matmuls are NumPy's (BLAS, in the input's dtype); the
    cross-entropy is pyce's fused kernel (float32 exp within 2 ulp, row sums,
    logs and the loss total in float64).  Results match the unfused
    computation to float rounding, not bitwise: chunking changes the order
    of BLAS's sums over rows for d_weight.

    Returns
    -------
    loss : NumPy scalar of hidden's dtype for 'mean' and 'sum' (the same
        reduction rule as pyce.cross_entropy: a float32 total beyond float32's
        range is +-inf without a warning), the (N,) per-row losses for 'none'.
    """
    hd = _check(hidden, weight, target, bias, ignore_index, reduction, label_smoothing, z_loss,
                chunk_size, n_threads)
    return _run(hd, False)


def linear_cross_entropy_and_grad(hidden, weight, target, bias=None, ignore_index=-100,
                                  reduction="mean", label_smoothing=0.0, *, z_loss=0.0,
                                  chunk_size=None, n_threads=None):
    """(loss, d_hidden, d_weight, d_bias) of linear_cross_entropy, chunked.

    Each chunk's logits gradient is computed in place in the chunk buffer,
    already scaled by 1/denominator for 'mean', and consumed by the matmuls
    at once.

    Parameters
    ----------
    hidden : (N, H) float32 or float64 array
        The rows fed to the linear layer (any memory order; a chunk of a
        non-C-contiguous hidden may be copied by NumPy's matmul, O(chunk * H)).
    weight : (V, H) array of hidden's dtype
        The layer's weight as torch.nn.Linear (and an LM head) stores it:
        logits = hidden @ weight.T + bias.
    target : (N,) integer array
        Class indices in [0, V), or ignore_index.
    bias : (V,) array of hidden's dtype, optional
    ignore_index : int
        Rows whose target equals it have loss 0 and gradient 0 and are left
        out of 'mean''s denominator; when every row is ignored 'mean' is NaN
        with all-zero gradients (as pyce.cross_entropy).
    reduction : {'mean', 'sum', 'none'}
        'none' returns the (N,) per-row losses (and the gradients of their sum).
    label_smoothing : float in [0, 1]
        As pyce.cross_entropy (no class weights here).
    z_loss : float >= 0 (keyword)
        Adds z_loss * logsumexp(logits_i)^2 to each non-ignored row's loss
        (PaLM's z-loss, Liger's lse_square_scale); same denominator for
        'mean'. Free when 0.
    chunk_size : positive int or None (keyword)
        Rows per chunk. None picks the largest multiple of 16 rows whose
        (chunk_size, V) logits buffer (and, on the NumPy-only path, d_weight
        scratch) fit in pyce._linear.CHUNK_BUDGET_BYTES (24 MiB: 192 rows for
        V = 32000, H = 1024 float32) or, if that is more, in
        CHUNK_BUDGET_FRACTION (4.5%) of the (N, V) logits; at least 64 rows.
    n_threads : int or None (keyword)
        Threads of pyce's cross-entropy kernel. None runs it serially (it is
        ~5% of the work, and idle OpenMP workers would compete with BLAS's
        threads between chunks). The matmuls run on NumPy's BLAS with its
        own threads (threadpoolctl controls them).

    Memory: beyond the inputs and the returned arrays, one (chunk_size, V)
    logits buffer (and, for the gradients on the NumPy-only path, a
    (min(1024, V), H) scratch for accumulating d_weight); never an (N, V)
    array.

    Precision: the matmuls are NumPy's (BLAS, in the input's dtype); the
    cross-entropy is pyce's fused kernel (float32 exp within 2 ulp, row sums,
    logs and the loss total in float64).  Results match the unfused
    computation to float rounding, not bitwise: chunking changes the order
    of BLAS's sums over rows for d_weight.

    Returns
    -------
    (loss, d_hidden, d_weight, d_bias) : loss as linear_cross_entropy returns
        it; d_hidden (N, H), d_weight (V, H) and d_bias (V,) -- None without
        bias -- the gradients of the loss ('none': of the sum of the per-row
        losses) with respect to hidden, weight and bias, in hidden's dtype.
    """
    hd = _check(hidden, weight, target, bias, ignore_index, reduction, label_smoothing, z_loss,
                chunk_size, n_threads)
    return _run(hd, True)
