"""Builds the smla Python package. The version comes from project(VERSION) in ../CMakeLists.txt (the one
place it is written) and is stored in the built package as smla/_generated_version.py.

With SMLA_BUNDLE_LIBRARY=/path/to/libsmla.so (or a libsmla.so copied into python/smla/) the library is
put inside the package, so no SMLA_LIBRARY is needed at run time, and the wheel is tagged for this
platform (py3-none-linux_x86_64: the bindings use ctypes, so any CPython 3 works, but the library is a
native binary). Without a bundled library the wheel is pure (py3-none-any). scripts/wheel builds one."""

import importlib.util
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

try:  # setuptools >= 70.1 has its own bdist_wheel; older ones use the wheel package's
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:
    try:
        from wheel.bdist_wheel import bdist_wheel
    except ImportError:
        bdist_wheel = None

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)


def project_version():
    """x.y.z of project(smla VERSION ...) in ../CMakeLists.txt, read by smla/_version.py's parser."""
    spec = importlib.util.spec_from_file_location("_smla_version", os.path.join(HERE, "smla", "_version.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cmake_lists = os.path.join(REPO_ROOT, "CMakeLists.txt")
    if not os.path.isfile(cmake_lists):
        raise RuntimeError(f"smla's version is read from {cmake_lists}, which is missing: build the package "
                           "from a checkout of the repository (pip builds ./python in place)")
    return module.version_from_cmake_lists(cmake_lists)


def bundled_library():
    """The libsmla.so to put into the package, or None."""
    library = os.environ.get("SMLA_BUNDLE_LIBRARY")
    if library:
        if not os.path.isfile(library):
            raise FileNotFoundError(f"SMLA_BUNDLE_LIBRARY={library} is not a file (give an absolute path: pip "
                                    "may build in another directory)")
        return library
    in_package = os.path.join(HERE, "smla", "libsmla.so")
    return in_package if os.path.isfile(in_package) else None


VERSION = project_version()


class BuildPyWithVersionAndLibrary(build_py):
    def run(self):
        super().run()
        package_dir = os.path.join(self.build_lib, "smla")
        with open(os.path.join(package_dir, "_generated_version.py"), "w", encoding="utf-8") as handle:
            handle.write(f'"""Written by setup.py from project(VERSION) in CMakeLists.txt."""\n'
                         f'VERSION = "{VERSION}"\n')
        license_file = os.path.join(REPO_ROOT, "LICENSE")
        if os.path.isfile(license_file):
            shutil.copyfile(license_file, os.path.join(package_dir, "LICENSE"))
        library = bundled_library()
        destination = os.path.join(package_dir, "libsmla.so")
        if library:
            # Copy the real file (not a symlink to libsmla.so.x.y.z) so the wheel holds the library itself.
            if os.path.realpath(library) != os.path.realpath(destination):
                shutil.copyfile(os.path.realpath(library), destination)
        elif os.path.exists(destination):
            os.remove(destination)  # left in build/ by an earlier bundled build: not this wheel's


class DistributionWithLibrary(Distribution):
    """A package holding libsmla.so is not pure Python: it builds into platlib and the wheel gets a
    platform tag (bdist_wheel asks has_ext_modules)."""

    def has_ext_modules(self):
        return bundled_library() is not None or super().has_ext_modules()


commands = {"build_py": BuildPyWithVersionAndLibrary}

if bdist_wheel is not None:

    class BdistWheelTaggedForBundledLibrary(bdist_wheel):
        def get_tag(self):
            python, abi, platform = super().get_tag()
            if bundled_library():
                return "py3", "none", platform  # ctypes only: no CPython ABI, but this platform's binary
            return python, abi, platform

    commands["bdist_wheel"] = BdistWheelTaggedForBundledLibrary

setup(version=VERSION, cmdclass=commands, distclass=DistributionWithLibrary)
