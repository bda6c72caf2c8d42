"""Observed precision of pyce against its float64 reference, per dtype and output.

    python bench/precision.py        (python -P bench/precision.py inside a checkout)

The README ("What pyce promises", "Precision per dtype") states the tested bound

    |pyce - exact| <= rtol * (|value| + scale) (+ an absolute part below tiny)

with rtol = 1e-5 for float32 and 1e-12 for float64.  This script measures how
close pyce comes to it: the worst per-element ratio

    max(|fast - ref| - atol, 0) / (|ref| + scale)

(the quantity the bound limits by rtol; 0 for results whose absolute part
dominates, i.e. near or below the dtype's smallest normal number, and for NaN /
inf values that match the reference exactly; inf for ones that do not).  The
bound, its scale, the float64 reference and this ratio are not re-implemented
here: they are tests/loss/adversarial.py's (`run_against_reference`,
`error_ratio`), the same functions the reliability tests assert with.

Inputs, for float32 and float64:
  adversarial  every adversarial array of tests/loss/adversarial.py in every
               memory order, with every call its Specs build (the calls
               tests/loss/test_adversarial.py checks);
  C<=16 ...    random few-class problems: C = 1..16, N = 16, 37, 100, logits
               offset + spread * N(0, 1) with spread 0.01, 1, 10, 100 and
               offset 0 or 1e4, random targets (~10% ignore_index), reductions
               'none' / 'mean' / 'sum', with and without class weights, sample
               weights, label smoothing; cross_entropy, cross_entropy_and_grad,
               cross_entropy_backward, softmax and log_softmax.  Calls the
               few-class path (cext/pyce_ce_small.c: class-index targets, no
               z-loss, no class weights together with label smoothing,
               C-contiguous, AVX-512 or AVX2) takes are reported apart from the
               others ("C<=16 general path": class weights with label smoothing,
               or a CPU without AVX2);
  large C      C = 1000 (N = 37) and C = 32000 (N = 5), same spreads and offsets.

One line per (dtype, inputs, output): the worst ratio, as a fraction of rtol,
how many values were compared, and where it occurred (function, shape, pattern
and options, element index, reference value).  Any ratio above rtol (or a NaN /
inf mismatch, or an exception only one side raises) is a bug: it is listed at
the end and the exit status is 1.

PYCE_SMALL_ISA=avx2 (or =none) before the command measures the AVX2 form of the
few-class path (or the older lanes path) on an AVX-512 machine.  One core,
~1-2 minutes.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import ctypes  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(_HERE), "tests", "loss"))

import adversarial as adv  # noqa: E402  (the bound, its scale and the reference)
import pyce  # noqa: E402
from pyce._config import build_config  # noqa: E402
from pyce.app.bench import machine_summary  # noqa: E402

DTYPES = [np.dtype(d) for d in adv.DTYPES]
SMALL_NS = (16, 37, 100)
SPREADS = (0.01, 1.0, 10.0, 100.0)
OFFSETS = (0.0, 1e4)
LARGE = ((37, 1000), (5, 32000))


def small_isa():
    """The ISA of the few-class path in this process: avx512, avx2, none (or unknown)."""
    try:
        from pyce import _ce
        fn = ctypes.CDLL(_ce.__file__).pyce_ce_small_isa
        fn.restype = ctypes.c_char_p
        return fn().decode()
    except (AttributeError, OSError):
        return "unknown"


class Worst:
    """The worst ratio per (dtype, inputs, output), with where it occurred."""

    def __init__(self):
        self.rows = {}       # key -> [worst ratio, where, values compared, calls]
        self.bugs = []

    def add(self, key, ratio, where, ref_value):
        ratio = np.asarray(ratio, np.float64)
        ref_value = np.broadcast_to(np.asarray(ref_value, np.float64), ratio.shape)
        row = self.rows.setdefault(key, [0.0, "-", 0, 0])
        row[2] += ratio.size
        row[3] += 1
        if not ratio.size:
            return
        i = int(np.argmax(ratio))
        r = float(ratio.flat[i])
        idx = [int(k) for k in np.unravel_index(i, ratio.shape)] if ratio.ndim else []
        at = f"{where} at {idx} (ref {float(ref_value.flat[i]):.3g})"
        if r > row[0]:
            row[0], row[1] = r, at
        dtype = np.dtype(key[0])
        bad = ~(ratio <= adv.RTOL[dtype])
        if np.any(bad):
            self.bugs.append(f"{key}: {int(bad.sum())} values beyond rtol, worst {r:.3g}: {at}")


def measure(worst, source, spec, args, kwargs, where):
    dtype = np.dtype(np.asarray(args[0]).dtype).newbyteorder("=")
    try:
        res = adv.run_against_reference(spec, args, kwargs, where)
    except AssertionError as exc:          # one side raised, the other did not
        worst.bugs.append(str(exc))
        return
    for oname, fast, ref, scale, atol_scale in res.outputs:
        output = spec.name if oname == "out" else oname
        ratio = adv.error_ratio(fast, ref, dtype, scale, atol_scale)
        worst.add((dtype.name, source, output), ratio, where, ref)


def where_of(spec, x, label):
    return f"{spec.name} {tuple(np.shape(x))} {label}"


# ---------------------------------------------------------------- (a) adversarial arrays

def run_adversarial(worst, dtype, tmp):
    arrays = adv.adversarial_arrays(dtype, tmp)
    for spec in adv.FUNCTIONS:
        rng = np.random.default_rng(1)       # as tests/loss/test_adversarial.py
        for label, x in arrays:
            for clabel, args, kwargs in spec.calls(x, rng):
                measure(worst, "adversarial", spec, args, kwargs,
                        where_of(spec, x, f"{label} {clabel}"))


# ---------------------------------------------------------------- (b) random problems

def _option_sets(rng, n, c):
    w = rng.uniform(0.1, 2.0, c)
    sw = rng.uniform(0.0, 2.0, n)
    yield "plain", {}
    yield "weight", {"weight": w}
    yield "sample_weight", {"sample_weight": sw}
    yield "smoothing=0.1", {"label_smoothing": 0.1}
    yield "weight+smoothing=0.2", {"weight": w, "label_smoothing": 0.2}


def _takes_small_path(dtype, c, kwargs, isa):
    """Whether pyce_ce_small_* computes this call: a label for the report's rows only,
    restating the rule whose owner is small_handles in cext/pyce_ce_small.c (with its
    ISA choice); a drift would mislabel rows, not change a verdict."""
    if c > 16 or kwargs.get("z_loss", 0.0):
        return False
    if kwargs.get("label_smoothing", 0.0) and kwargs.get("weight") is not None:
        return False
    return isa in ("avx512", "avx2")


def random_calls(rng, x, t):
    """(spec, args, kwargs, label) for one logits array: every function and option set."""
    n, c = x.shape
    for oname, opts in _option_sets(rng, n, c):
        for red in ("none", "mean", "sum"):
            kw = dict(opts, reduction=red)
            lab = f"{oname},reduction={red}"
            yield adv.SPECS["cross_entropy"], (x, t), kw, lab
            yield adv.SPECS["cross_entropy_and_grad"], (x, t), kw, lab
            go = rng.standard_normal(n) if red == "none" else 0.7
            yield adv.SPECS["cross_entropy_backward"], (x, t, go), kw, lab
    yield adv.SPECS["softmax"], (x,), {"axis": 1}, "axis=1"
    yield adv.SPECS["log_softmax"], (x,), {"axis": 1}, "axis=1"


def run_random(worst, dtype, rng, shapes, source_of):
    for n, c in shapes:
        for spread in SPREADS:
            for offset in OFFSETS:
                x = (offset + spread * rng.standard_normal((n, c))).astype(dtype)
                t = rng.integers(0, c, n)
                t[rng.random(n) < 0.1] = -100
                pattern = f"spread={spread:g},offset={offset:g}"
                for spec, args, kw, lab in random_calls(rng, x, t):
                    measure(worst, source_of(spec, c, kw), spec, args, kw,
                            where_of(spec, x, f"{pattern} {lab}"))


# ---------------------------------------------------------------- report

def main():
    t0 = time.perf_counter()
    cfg = build_config()
    isa = small_isa()
    print("pyce precision against the float64 reference: worst max(|fast - ref| - atol, 0) "
          "/ (|ref| + scale)")
    print("  (tests/loss/adversarial.py error_ratio; the tested bound is ratio <= rtol)")
    print(f"{machine_summary()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    print(f"pyce     : {getattr(pyce, '__version__', '?')} ({os.path.dirname(pyce.__file__)}), "
          f"NumPy {np.__version__}, Python {platform.python_version()}")
    print(f"ISA      : SIMD path {cfg.get('simd_path')}; few-class path (C <= 16) {isa}"
          f" (PYCE_SMALL_ISA={os.environ.get('PYCE_SMALL_ISA', 'unset')})")
    print("rtol     : " + ", ".join(f"{d.name} {adv.RTOL[d]:g}" for d in DTYPES))
    print()
    worst = Worst()
    rng = np.random.default_rng(2026)
    small_shapes = [(n, c) for c in range(1, 17) for n in SMALL_NS]
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in DTYPES:
            run_adversarial(worst, dtype, tmp)

            def few_class_source(spec, c, kw, dtype=dtype):
                if spec.name in ("softmax", "log_softmax"):
                    return "C<=16 softmax"
                return "C<=16 few-class path" if _takes_small_path(dtype, c, kw, isa) \
                    else "C<=16 general path"
            run_random(worst, dtype, rng, small_shapes, few_class_source)
            run_random(worst, dtype, rng, LARGE, lambda spec, c, kw: "C=1000,32000")

    order = ["loss", "grad", "softmax", "log_softmax"]
    sources = ["adversarial", "C<=16 few-class path", "C<=16 general path", "C<=16 softmax",
               "C=1000,32000"]
    print(f"{'dtype':8} {'inputs':21} {'output':12} {'worst':>8} {'/rtol':>7} {'values':>8}  where")
    for dtype in DTYPES:
        rtol = adv.RTOL[dtype]
        for src in sources:
            for out in order:
                row = worst.rows.get((dtype.name, src, out))
                if row is None:
                    continue
                print(f"{dtype.name:8} {src:21} {out:12} {row[0]:8.2e} {row[0] / rtol:7.4f} "
                      f"{row[2]:8d}  {row[1]}")
    print()
    for dtype in DTYPES:
        rows = [(r[0], k) for k, r in worst.rows.items() if k[0] == dtype.name]
        r, k = max(rows)
        print(f"{dtype.name}: worst {r:.2e} ({r / adv.RTOL[dtype]:.3f} of rtol "
              f"{adv.RTOL[dtype]:g}), {k[1]} {k[2]}")
    print(f"calls: {sum(r[3] for r in worst.rows.values())} outputs compared, "
          f"{time.perf_counter() - t0:.0f} s")
    if worst.bugs:
        print(f"\nBEYOND THE BOUND ({len(worst.bugs)}):")
        for b in worst.bugs[:20]:
            print("  " + b)
        return 1
    print("no value beyond the bound")
    return 0


if __name__ == "__main__":
    sys.exit(main())
