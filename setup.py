"""Build of pyce's compiled modules, pyce._ce and pyce._nnk (sources in cext/).

Every build setting is here:
- two Extensions: the loss kernels (cext/_ce.pyx over pyce_loss_kernels.c,
  which includes the template pyce_loss_template.h twice) and the trainer's
  kernels (cext/_nnk.pyx over pyce_trainer_kernels.c); both share the exp
  (pyce_exp.h) and the runtime dispatch (pyce_dispatch.h).  NumPy's headers,
  NPY_NO_DEPRECATED_API pinned;
- -O3 and -fno-trapping-math (so GCC vectorizes the branch-free exp), never
  -ffast-math (NaN and inf must keep their meaning) and never -march=native
  (runtime dispatch between x86-64 levels: GCC target_clones, in
  cext/pyce_dispatch.h);
- a C compiler is required: without one the build stops with that message
  (not with an OpenMP hint);
- OpenMP is probed by compiling and running a tiny program, as scikit-learn
  does; without it the module is built serial and a warning is printed.
  PYCE_OPENMP=0 turns it off, PYCE_OPENMP=1 makes a failed probe an error.
- PYCE_SANITIZE=address builds with AddressSanitizer (see README, developers).
- The build facts pyce.show_config() prints are baked into pyce._ce as the
  PYCE_BUILD_* macros.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

CYTHON_DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
    "embedsignature": True,
}

PLAIN_C_PROBE = "int main(void) { return 0; }\n"

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d", n == omp_get_max_threads());
        return 0;
    }
    """
)


def _compiler_kind(compiler):
    cc = " ".join(getattr(compiler, "compiler", []) or [])
    if compiler.compiler_type == "msvc":
        return "msvc"
    return "clang" if "clang" in cc else "gcc"


def _probe(compiler, source, flags):
    """Compile, link and run `source`; its stdout, or None when any step fails."""
    tmp = tempfile.mkdtemp(prefix="pyce-probe-")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(source)
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags)
        exe = os.path.join(tmp, "probe")
        compiler.link_executable(objs, "probe", output_dir=tmp, extra_postargs=flags)
        out = subprocess.run([exe], capture_output=True, text=True, timeout=60)
        return out.stdout if out.returncode == 0 else None
    except Exception:  # any failure to compile, link or run
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_c_compiler(compiler):
    """Stop with a clear message when no working C compiler is found."""
    if _probe(compiler, PLAIN_C_PROBE, []) is None:
        cc = " ".join(getattr(compiler, "compiler", []) or [compiler.compiler_type])
        raise RuntimeError(
            f"pyce: no working C compiler was found (a trivial C program did not compile, "
            f"link or run with `{cc}`). pyce's kernels are C: install a C compiler (on "
            f"Debian/Ubuntu `apt install gcc`, on macOS `xcode-select --install`, on Windows "
            f"the Visual Studio Build Tools) and build again.")


def _probe_openmp(compiler, flags):
    """True when a tiny OpenMP program compiles, links and runs with `flags`."""
    out = _probe(compiler, OPENMP_PROBE, flags)
    return out is not None and out.strip() == "1"


def _compile_args(kind):
    """(compile flags, OpenMP flags) for the compiler kind."""
    if kind == "msvc":
        # MSVC: C11 for `restrict`; its OpenMP 2.0 ignores `omp simd` (a
        # warning); __builtin_prefetch and target_clones are compiled out.
        return ["/O2", "/fp:precise", "/std:c11"], ["/openmp"]
    return (["-O3", "-fno-trapping-math", "-fno-math-errno", "-fopenmp-simd", "-std=gnu11",
             "-Wall", "-Wextra"], ["-fopenmp"])


def _openmp(compiler, omp_flags):
    """Whether to build with OpenMP (PYCE_OPENMP: auto, 0 or 1)."""
    want = os.environ.get("PYCE_OPENMP", "auto").lower()
    if want in ("0", "off", "false", "no"):
        return False
    if _probe_openmp(compiler, omp_flags):
        return True
    msg = ("pyce: OpenMP was not found (a test program did not compile, link or "
           "run with %s, although plain C works); building the serial version. Install "
           "your compiler's OpenMP runtime (libgomp / libomp) for multi-threaded kernels."
           % " ".join(omp_flags))
    if want in ("1", "on", "true", "yes"):
        raise RuntimeError(msg)
    warnings.warn(msg)
    print("WARNING: " + msg, file=sys.stderr)
    return False


class BuildExt(build_ext):
    def build_extensions(self):
        _check_c_compiler(self.compiler)
        compile_args, omp_flags = _compile_args(_compiler_kind(self.compiler))
        link_args = []
        sanitize = os.environ.get("PYCE_SANITIZE", "")
        if sanitize:
            compile_args += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-g"]
            compile_args = [a for a in compile_args if a != "-O3"] + ["-O1"]
            link_args += [f"-fsanitize={sanitize}"]
        if _openmp(self.compiler, omp_flags):
            compile_args += omp_flags
            link_args += omp_flags
        # what pyce.show_config() prints (pyce._ce's build_info); OpenMP itself
        # is reported at run time (pyce_have_openmp)
        build_info = {
            "compile_args": " ".join(compile_args),
            "link_args": " ".join(link_args),
            "cython": __import__("Cython").__version__,
            "numpy_build": np.__version__,
            "platform": sysconfig.get_platform(),
        }
        for ext in self.extensions:
            ext.extra_compile_args = compile_args
            ext.extra_link_args = link_args
            if ext.name == "pyce._ce":
                ext.define_macros = list(ext.define_macros or []) + [
                    (f"PYCE_BUILD_{k.upper()}", '"%s"' % str(v).replace('"', "'"))
                    for k, v in build_info.items()
                ]
        super().build_extensions()


extensions = [
    Extension(
        "pyce._ce",
        sources=["cext/_ce.pyx", "cext/pyce_loss_kernels.c", "cext/pyce_threads.c",
                 "cext/pyce_ce_small.c", "cext/pyce_ce_online.c"],
        depends=["cext/pyce_loss_kernels.pxd", "cext/pyce_loss_kernels.h", "cext/pyce_loss_template.h",
                 "cext/pyce_loss_rules.h",
                 "cext/pyce_exp.h", "cext/pyce_dispatch.h", "cext/pyce_threads.h",
                 "cext/pyce_ce_small.h", "cext/pyce_ce_rules.h", "cext/pyce_ce_online_impl.h"],
        include_dirs=[np.get_include(), "cext"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
    ),
    Extension(
        "pyce._nnk",
        sources=["cext/_nnk.pyx", "cext/pyce_trainer_kernels.c"],
        depends=["cext/pyce_trainer_kernels.h", "cext/pyce_trainer_template.h",
                 "cext/pyce_exp.h", "cext/pyce_dispatch.h"],
        include_dirs=[np.get_include(), "cext"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
    ),
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=CYTHON_DIRECTIVES, include_path=["cext"]),
    cmdclass={"build_ext": BuildExt},
)
