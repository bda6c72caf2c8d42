"""Build of pyce's compiled modules, pyce._ce and pyce._nnk (sources in cext/).

Every build setting is here:
- two Extensions (cross-entropy kernels; pyce.nn's activation kernels),
  NumPy's headers, NPY_NO_DEPRECATED_API pinned;
- -O3 and -fno-trapping-math (so GCC vectorizes the branch-free exp), never
  -ffast-math (NaN and inf must keep their meaning) and never -march=native
  (runtime dispatch between x86-64 levels happens in cext/pyce_kernels.c);
- OpenMP is probed by compiling and running a tiny program, as scikit-learn
  does; without it the module is built serial and a warning is printed.
  PYCE_OPENMP=0 turns it off, PYCE_OPENMP=1 makes a failed probe an error.
- PYCE_SANITIZE=address builds with AddressSanitizer (see README, developers).
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


def _probe_openmp(compiler, flags):
    """Compile, link and run a tiny OpenMP program; True when it works."""
    tmp = tempfile.mkdtemp(prefix="pyce-omp-")
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(OPENMP_PROBE)
        objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags)
        exe = os.path.join(tmp, "probe")
        compiler.link_executable(objs, "probe", output_dir=tmp, extra_postargs=flags)
        out = subprocess.run([exe], capture_output=True, text=True, timeout=60)
        return out.returncode == 0 and out.stdout.strip() == "1"
    except Exception:  # any failure to compile, link or run means "no OpenMP"
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class BuildExt(build_ext):
    def build_extensions(self):
        kind = _compiler_kind(self.compiler)
        if kind == "msvc":
            compile_args = ["/O2", "/fp:precise"]
            omp_flags = ["/openmp"]
        else:
            compile_args = ["-O3", "-fno-trapping-math", "-fno-math-errno",
                            "-fopenmp-simd", "-std=gnu11", "-Wall", "-Wextra"]
            omp_flags = ["-fopenmp"]
        link_args = []

        sanitize = os.environ.get("PYCE_SANITIZE", "")
        if sanitize:
            compile_args += [f"-fsanitize={sanitize}", "-fno-omit-frame-pointer", "-g"]
            compile_args = [a for a in compile_args if a != "-O3"] + ["-O1"]
            link_args += [f"-fsanitize={sanitize}"]

        want = os.environ.get("PYCE_OPENMP", "auto").lower()
        use_openmp = False
        if want not in ("0", "off", "false", "no"):
            use_openmp = _probe_openmp(self.compiler, omp_flags)
            if not use_openmp:
                msg = ("pyce: OpenMP was not found (a test program did not compile, link or "
                       "run with %s); building the serial version. Install your compiler's "
                       "OpenMP runtime (libgomp / libomp) for multi-threaded kernels."
                       % " ".join(omp_flags))
                if want in ("1", "on", "true", "yes"):
                    raise RuntimeError(msg)
                warnings.warn(msg)
                print("WARNING: " + msg, file=sys.stderr)
        if use_openmp:
            compile_args += omp_flags
            link_args += omp_flags

        build_info = {
            "openmp": use_openmp,
            "compile_args": " ".join(compile_args),
            "link_args": " ".join(link_args),
            "cython": __import__("Cython").__version__,
            "numpy_build": np.__version__,
            "python": sys.version.split()[0],
            "platform": sysconfig.get_platform(),
        }
        for ext in self.extensions:
            ext.extra_compile_args = compile_args
            ext.extra_link_args = link_args
            ext.define_macros = list(ext.define_macros or []) + [
                (f"PYCE_BUILD_{k.upper()}", '"%s"' % str(v).replace('"', "'"))
                for k, v in build_info.items()
            ]
        super().build_extensions()


extensions = [
    Extension(
        "pyce._ce",
        sources=["cext/_ce.pyx", "cext/pyce_kernels.c", "cext/pyce_ce_small.c",
                 "cext/pyce_ce_online.c"],
        depends=["cext/pyce_kernels.h", "cext/pyce_kernel_impl.h", "cext/pyce_exp.h",
                 "cext/pyce_dispatch.h", "cext/pyce_ce_small.h", "cext/pyce_ce_rules.h",
                 "cext/pyce_ce_online_impl.h"],
        include_dirs=[np.get_include(), "cext"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
    ),
    Extension(
        "pyce._nnk",
        sources=["cext/_nnk.pyx", "cext/pyce_nn_kernels.c"],
        depends=["cext/pyce_nn_kernels.h", "cext/pyce_exp.h", "cext/pyce_dispatch.h"],
        include_dirs=[np.get_include(), "cext"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
    ),
]

setup(
    ext_modules=cythonize(extensions, compiler_directives=CYTHON_DIRECTIVES),
    cmdclass={"build_ext": BuildExt},
)
