"""Builds mpconn: SWIG generates the binding from bindings/python/, and the
extension is compiled together with the C core (c_core/src/*.c), linked to
libcrypto.  Configuration lives in pyproject.toml; this file only holds what
needs code: running SWIG (from PyPI, see [build-system]) and putting the
generated mpconn/core.py into the build (and so the wheel).

Order: build_ext runs before build_py, and SWIG writes core.py straight into
the build directory (or into python/mpconn/ for --inplace builds).
"""

import glob
import os
import shutil
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

try:  # setuptools >= 62.4
    from setuptools.command.build import build
except ImportError:  # pragma: no cover
    from distutils.command.build import build

HERE = os.path.dirname(os.path.abspath(__file__))
INTERFACE = os.path.join("bindings", "python", "mpconn_python.i")
GENERATED = "core"  # SWIG's Python module: mpconn/core.py


def _rel(path):
    return os.path.relpath(path, HERE)


def core_sources():
    return sorted(_rel(p) for p in glob.glob(os.path.join(HERE, "c_core", "src", "*.c")))


def find_swig():
    for candidate in (os.environ.get("SWIG"), "swig", "swig4.0"):
        if candidate:
            path = shutil.which(candidate)
            if path:
                return path
    # The swig wheel from PyPI installs its launcher next to the interpreter.
    for d in (os.path.dirname(sys.executable), os.path.join(sys.prefix, "bin")):
        path = shutil.which("swig", path=d)
        if path:
            return path
    raise RuntimeError("SWIG >= 4 is needed to build mpconn (pip installs it from PyPI; "
                       "or set SWIG=/path/to/swig)")


class BuildExt(build_ext):
    """Runs SWIG, then compiles the wrapper with the C core sources."""

    def run(self):
        os.chdir(HERE)
        swig = find_swig()
        wrap_dir = os.path.join(self.build_temp, "swig")
        os.makedirs(wrap_dir, exist_ok=True)
        wrapper = os.path.join(wrap_dir, "mpconn_python_wrap.c")
        if self.inplace:
            py_outdir = os.path.join("python", "mpconn")
        else:
            py_outdir = os.path.join(self.build_lib, "mpconn")
        os.makedirs(py_outdir, exist_ok=True)
        self.spawn([swig, "-python", "-I" + os.path.join("c_core", "include"),
                    "-outdir", py_outdir, "-o", wrapper, INTERFACE])
        for ext in self.extensions:
            ext.sources = [wrapper] + core_sources()
        super().run()


class BuildPy(build_py):
    """Never copies a python/mpconn/core.py left by an --inplace build over
    the one SWIG just generated into the build directory."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if not (m[0] == "mpconn" and m[1] == GENERATED)]


class Build(build):
    # build_ext first: SWIG must have written mpconn/core.py before the
    # pure-Python files are collected.
    sub_commands = [("build_ext", build.has_ext_modules)] + [
        cmd for cmd in build.sub_commands if cmd[0] != "build_ext"
    ]

    def initialize_options(self):
        super().initialize_options()
        # Keep setuptools' intermediates out of the top level of build/,
        # which is CMake's build tree (MPCONN_SETUPTOOLS_BUILD overrides).
        self.build_base = os.environ.get("MPCONN_SETUPTOOLS_BUILD",
                                         os.path.join("build", "setuptools"))


extension = Extension(
    "mpconn._mpconn",
    sources=core_sources(),  # the SWIG wrapper is added by BuildExt
    include_dirs=[os.path.join("c_core", "include"), os.path.join("c_core", "src")],
    define_macros=[("MPC_BUILDING", None), ("_GNU_SOURCE", None)],
    libraries=["crypto", "m"],
    extra_compile_args=["-std=gnu11", "-fvisibility=hidden", "-Wno-unused-parameter",
                        "-Wno-missing-field-initializers"],
    depends=glob.glob(os.path.join("c_core", "include", "*.h"))
    + glob.glob(os.path.join("c_core", "src", "*.h"))
    + glob.glob(os.path.join("bindings", "*.i"))
    + glob.glob(os.path.join("bindings", "python", "*.i")),
)

setup(ext_modules=[extension], cmdclass={"build_ext": BuildExt, "build_py": BuildPy, "build": Build})
