"""Hardening: our C and Cython code compile with -Wall -Wextra without warnings.

- cext/pyce_kernels.c and cext/pyce_trainer_kernels.c (with their headers) must compile with
  -Wall -Wextra -Werror, with and without OpenMP.
- cext/_ce.pyx is cythonized with setup.py's directives and the generated C
  compiled with -Wall -Wextra; no warning may point at our code: lines of
  _ce.pyx (Cython's `#line`-free output marks them with the .pyx source in
  the C comments, so we check warnings located in cext/ files and in _ce.c
  lines generated from _ce.pyx code).  Warnings inside NumPy's or Python's
  headers are not ours and are ignored.

Skipped (not passed) when gcc or Cython is not available.
"""
import os
import re
import shutil
import subprocess
import sysconfig

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CEXT = os.path.join(ROOT, "cext")
GCC = shutil.which("gcc")
WARN_FLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra"]

pytestmark = pytest.mark.skipif(GCC is None or not os.path.isdir(CEXT),
                                reason="needs gcc and the source tree (cext/)")


def _gcc(args, cwd):
    return subprocess.run([GCC, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("source", ["pyce_kernels.c", "pyce_trainer_kernels.c"])
@pytest.mark.parametrize("openmp", [True, False], ids=["openmp", "serial"])
def test_kernels_compile_without_warnings(tmp_path, openmp, source):
    args = WARN_FLAGS + ["-Werror", "-fno-trapping-math", "-fopenmp-simd", f"-I{CEXT}",
                         "-c", os.path.join(CEXT, source), "-o", "k.o"]
    if openmp:
        args.append("-fopenmp")
    r = _gcc(args, tmp_path)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr


def test_cython_module_has_no_warnings_in_our_code(tmp_path):
    pytest.importorskip("Cython")
    shutil.copy(os.path.join(CEXT, "_ce.pyx"), tmp_path / "_ce.pyx")
    directives = {"language_level": 3, "boundscheck": False, "wraparound": False,
                  "cdivision": True, "initializedcheck": False, "embedsignature": True}
    from Cython.Compiler.Main import compile as cy_compile, CompilationOptions, default_options
    opts = CompilationOptions(default_options, compiler_directives=directives,
                              emit_linenums=True, output_file=str(tmp_path / "_ce.c"))
    res = cy_compile(str(tmp_path / "_ce.pyx"), opts)
    assert res.num_errors == 0
    build_macros = [f'-DPYCE_BUILD_{k}="x"' for k in
                    ("OPENMP", "COMPILE_ARGS", "LINK_ARGS", "CYTHON", "NUMPY_BUILD", "PLATFORM")]
    r = _gcc(WARN_FLAGS + ["-fPIC", "-DNPY_NO_DEPRECATED_API=NPY_2_0_API_VERSION",
                           f"-I{np.get_include()}", f"-I{sysconfig.get_paths()['include']}",
                           f"-I{CEXT}", *build_macros, "-c", "_ce.c", "-o", "ce.o"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    # With emit_linenums, code generated from _ce.pyx is reported at "_ce.pyx:LINE";
    # our headers are reported at their cext/ path.
    ours = [ln for ln in r.stderr.splitlines()
            if "warning" in ln and re.match(r"^(\S*_ce\.pyx|\S*cext/\S+\.h):\d+", ln)]
    assert not ours, "\n".join(ours)
    print(f"{r.stderr.count('warning:')} warnings, none in our code")
