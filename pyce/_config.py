"""What the installed build has: pyce.show_config()."""
import sys

import numpy as np

from pyce import _ce


def build_config():
    """A dict describing the compiled module (OpenMP, SIMD path, flags, versions)."""
    info = dict(_ce.build_info())
    info["numpy_runtime"] = np.__version__
    info["python_runtime"] = sys.version.split()[0]
    return info


def show_config(file=None):
    """Print what the build has: OpenMP, the SIMD path in use, compiler flags, versions."""
    info = build_config()
    lines = [
        "pyce build configuration",
        f"  OpenMP          : {'on' if info['openmp'] else 'off (serial kernels)'}"
        + (f", {info['max_threads']} threads by default" if info["openmp"] else ""),
        f"  after fork      : {info['after_fork']}"  # fork safety (issue 15)
        + (" (this process is such a child: serial)" if info["serial_after_fork"] else ""),
        f"  SIMD path       : {info['simd_path']}",
        f"  compiler        : {info['compiler']}",
        f"  compile flags   : {info['compile_args']}",
        f"  link flags      : {info['link_args'] or '(none)'}",
        f"  Cython          : {info['cython']}",
        f"  NumPy           : built with {info['numpy_build']}, running {info['numpy_runtime']}",
        f"  platform        : {info['platform']}, Python {info['python_runtime']}",
    ]
    print("\n".join(lines), file=file or sys.stdout)
