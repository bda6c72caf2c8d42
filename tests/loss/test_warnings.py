"""Hardening: our C and Cython code compile with -Wall -Wextra without warnings.

- cext/pyce_loss_kernels.c and the trainer's kernels (with their headers) must
  compile with -Wall -Wextra -Werror, with and without OpenMP.
- every cext/*.pyx (_ce.pyx and the trainer's module) is cythonized with
  setup.py's directives and the generated C compiled with -Wall -Wextra; no
  warning may point at our code (with emit_linenums, lines generated from a
  .pyx/.pxd are reported at that file, our headers at their cext/ path).
  Warnings inside NumPy's or Python's headers are not ours and are ignored.
- a build without a C compiler says so (not "install libgomp").

Skipped (not passed) when gcc or Cython is not available.
"""
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CEXT = os.path.join(ROOT, "cext")
GCC = shutil.which("gcc")
WARN_FLAGS = ["-std=c11", "-O2", "-Wall", "-Wextra"]

pytestmark = pytest.mark.skipif(GCC is None or not os.path.isdir(CEXT),
                                reason="needs gcc and the source tree (cext/)")


def _gcc(args, cwd):
    return subprocess.run([GCC, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("source", sorted(f for f in os.listdir(CEXT)
                                           if f.startswith("pyce_") and f.endswith(".c")))
@pytest.mark.parametrize("openmp", [True, False], ids=["openmp", "serial"])
def test_kernels_compile_without_warnings(tmp_path, openmp, source):
    args = WARN_FLAGS + ["-Werror", "-fno-trapping-math", "-fopenmp-simd", f"-I{CEXT}",
                         "-c", os.path.join(CEXT, source), "-o", "k.o"]
    if openmp:
        args.append("-fopenmp")
    r = _gcc(args, tmp_path)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr


PYX_FILES = sorted(f for f in os.listdir(CEXT) if f.endswith(".pyx"))


def test_every_cython_module_is_checked():
    # the loss layer's _ce.pyx and the trainer's kernels' module, whatever its name
    assert "_ce.pyx" in PYX_FILES and len(PYX_FILES) >= 2, PYX_FILES


@pytest.mark.parametrize("pyx", PYX_FILES)
def test_cython_module_has_no_warnings_in_our_code(tmp_path, pyx):
    pytest.importorskip("Cython")
    for f in os.listdir(CEXT):
        if f.endswith((".pyx", ".pxd")):
            shutil.copy(os.path.join(CEXT, f), tmp_path / f)
    directives = {"language_level": 3, "boundscheck": False, "wraparound": False,
                  "cdivision": True, "initializedcheck": False, "embedsignature": True}
    from Cython.Compiler.Main import compile as cy_compile, CompilationOptions, default_options
    stem = pyx[:-4]
    opts = CompilationOptions(default_options, compiler_directives=directives,
                              emit_linenums=True, output_file=str(tmp_path / f"{stem}.c"),
                              include_path=[str(tmp_path)])
    res = cy_compile(str(tmp_path / pyx), opts)
    assert res.num_errors == 0
    build_macros = [f'-DPYCE_BUILD_{k}="x"' for k in
                    ("COMPILE_ARGS", "LINK_ARGS", "CYTHON", "NUMPY_BUILD", "PLATFORM")]
    r = _gcc(WARN_FLAGS + ["-fPIC", "-DNPY_NO_DEPRECATED_API=NPY_2_0_API_VERSION",
                           f"-I{np.get_include()}", f"-I{sysconfig.get_paths()['include']}",
                           f"-I{CEXT}", *build_macros, "-c", f"{stem}.c", "-o", "m.o"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    # With emit_linenums, code generated from the .pyx is reported at "NAME.pyx:LINE";
    # our headers are reported at their cext/ path.
    ours = [ln for ln in r.stderr.splitlines()
            if "warning" in ln and re.match(r"^(\S*\.pyx|\S*\.pxd|\S*cext/\S+\.h):\d+", ln)]
    assert not ours, "\n".join(ours)
    print(f"{r.stderr.count('warning:')} warnings, none in our code")


def test_build_without_a_c_compiler_says_so_not_install_libgomp(tmp_path):
    # setup.py probes plain C before OpenMP: a missing compiler must not be reported
    # as a missing OpenMP runtime (issue 12.9)
    pytest.importorskip("Cython")
    shutil.copytree(CEXT, tmp_path / "cext", ignore=shutil.ignore_patterns("*.c", "*.so"))
    for name in ("pyce_loss_kernels.c", "pyce_trainer_kernels.c", "pyce_threads.c"):
        if os.path.exists(os.path.join(CEXT, name)):
            shutil.copy(os.path.join(CEXT, name), tmp_path / "cext" / name)
    shutil.copy(os.path.join(ROOT, "setup.py"), tmp_path / "setup.py")
    env = dict(os.environ, CC="/nonexistent/cc", PYCE_OPENMP="auto")
    r = subprocess.run([sys.executable, "setup.py", "build_ext", "--build-temp", "bt",
                        "--build-lib", "bl"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "no working C compiler was found" in out, out[-3000:]
    assert "libgomp" not in out and "OpenMP was not found" not in out, out[-3000:]
