"""Builds the mpconn Python package by driving the project's one CMake build.

CMake (bindings/CMakeLists.txt, target mpconn_python) runs SWIG on
bindings/python/mpconn_python.i and compiles the extension against the
core's static library, with the core's flags and warnings; this file only
tells it which interpreter to build for and where the two generated files
go (mpconn/_mpconn<EXT_SUFFIX> and SWIG's mpconn/core.py), then hands them
to setuptools.  Metadata lives in pyproject.toml.

Build requirements beyond pyproject.toml's: CMake >= 3.16 and SWIG >= 4 come
from PyPI (the cmake and swig wheels) only when the machine has none, so a
fresh machine needs just a C compiler and libssl-dev.

Environment: CMAKE_ARGS (extra -D options for the CMake configure),
CMAKE_BUILD_PARALLEL_LEVEL (default 2 jobs), SWIG (a swig to use),
MPCONN_SETUPTOOLS_BUILD (setuptools' build directory, default
build/setuptools).
"""

import os
import re
import shlex
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

try:  # setuptools >= 62.4
    from setuptools.command.build import build
except ImportError:  # pragma: no cover
    from distutils.command.build import build

HERE = os.path.dirname(os.path.abspath(__file__))
GENERATED = "core"  # SWIG's Python module: mpconn/core.py
CMAKE_MIN = (3, 16)
SWIG_MIN = 4


def _version_of(cmd, pattern):
    try:
        out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(pattern, out)
    return tuple(int(x) for x in m.groups()) if m else None


def find_cmake():
    """A cmake on PATH (which includes the build environment's bin/) that runs
    and is recent enough, else None."""
    path = shutil.which("cmake")
    if path and (_version_of([path, "--version"], r"cmake version (\d+)\.(\d+)") or (0,)) >= CMAKE_MIN:
        return path
    return None


def find_swig():
    for candidate in (os.environ.get("SWIG"), "swig", "swig4.0"):
        path = candidate and shutil.which(candidate)
        if path and (_version_of([path, "-version"], r"SWIG Version (\d+)") or (0,)) >= (SWIG_MIN,):
            return path
    return None


def missing_build_tools():
    """What pip must fetch from PyPI before building (setuptools' PEP 517
    backend turns setup_requires into build requirements)."""
    reqs = []
    if not find_cmake():
        reqs.append("cmake>=%d.%d" % CMAKE_MIN)
    if not find_swig():
        reqs.append("swig>=%d" % SWIG_MIN)
    return reqs


class CMakeBuild(build_ext):
    """Configures and builds the CMake target mpconn_python, with its output
    (the extension and core.py) written where setuptools wants the extension."""

    def build_extension(self, ext):
        cmake, swig = find_cmake(), find_swig()
        if not cmake or not swig:
            raise RuntimeError(
                "building mpconn needs CMake >= %d.%d and SWIG >= %d; pip fetches both from PyPI "
                "when they are missing (with build isolation, the default)" % (CMAKE_MIN + (SWIG_MIN,)))
        ext_path = os.path.abspath(self.get_ext_fullpath(ext.name))
        outdir = os.path.dirname(ext_path)
        builddir = os.path.abspath(os.path.join(self.build_temp, "cmake"))
        _forget_foreign_cache(builddir, cmake)
        os.makedirs(builddir, exist_ok=True)
        configure = [
            cmake, "-S", HERE, "-B", builddir,
            "-DCMAKE_BUILD_TYPE=" + ("Debug" if self.debug else "Release"),
            "-DMPCONN_BUILD_PYTHON=ON", "-DMPCONN_BUILD_LUA=OFF", "-DMPCONN_BUILD_TESTS=OFF",
            "-DMPCONN_BUILD_EXAMPLES=OFF", "-DMPCONN_BUILD_BENCH=OFF",
            "-DMPCONN_PYTHON_EXECUTABLE=" + sys.executable,
            "-DMPCONN_PYTHON_OUTPUT_DIR=" + outdir,
            "-DSWIG_EXECUTABLE=" + swig,
        ] + shlex.split(os.environ.get("CMAKE_ARGS", ""))
        jobs = os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL") or str(self.parallel or 2)
        self.spawn(configure)
        self.spawn([cmake, "--build", builddir, "--target", "mpconn_python", "-j", jobs])
        if not os.path.exists(ext_path):
            raise RuntimeError("CMake did not produce %s" % ext_path)
        if getattr(self, "editable_mode", False):
            # PEP 660 (setuptools >= 64) copies the extension into the source
            # package; SWIG's core.py has to go there too.
            src_pkg = os.path.join(HERE, "python", "mpconn")
            shutil.copy2(os.path.join(outdir, GENERATED + ".py"), src_pkg)


def _forget_foreign_cache(builddir, cmake):
    """pip's isolated build environments come and go: a CMake cache made by a
    cmake that is not this one (another path) is removed, not reused."""
    cache = os.path.join(builddir, "CMakeCache.txt")
    try:
        with open(cache) as f:
            m = re.search(r"^CMAKE_COMMAND:INTERNAL=(.*)$", f.read(), re.M)
    except OSError:
        return
    if not m or os.path.realpath(m.group(1)) != os.path.realpath(cmake):
        shutil.rmtree(builddir)


class BuildPy(build_py):
    """Never copies a python/mpconn/core.py left by an in-place or editable
    build over the one CMake just generated into the build directory."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [m for m in modules if not (m[0] == "mpconn" and m[1] == GENERATED)]


class Build(build):
    # build_ext first: CMake writes mpconn/core.py with the extension.
    sub_commands = [("build_ext", build.has_ext_modules)] + [
        cmd for cmd in build.sub_commands if cmd[0] != "build_ext"
    ]

    def initialize_options(self):
        super().initialize_options()
        # Keep setuptools' intermediates (CMake's build tree for the wheel
        # included) out of the top level of build/, which is the CMake build
        # tree of tests/run_all.sh.
        self.build_base = os.environ.get("MPCONN_SETUPTOOLS_BUILD", os.path.join("build", "setuptools"))


setup(
    ext_modules=[Extension("mpconn._mpconn", sources=[])],  # built by CMake
    cmdclass={"build_ext": CMakeBuild, "build_py": BuildPy, "build": Build},
    setup_requires=missing_build_tools(),
)
