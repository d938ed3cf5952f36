"""Installs the pure-Python package; with SMLA_BUNDLE_LIBRARY=/path/to/libsmla.so the built library is
copied into the installed package, so no SMLA_LIBRARY is needed at run time (see README.md)."""

import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyBundlingLibrary(build_py):
    def run(self):
        super().run()
        library = os.environ.get("SMLA_BUNDLE_LIBRARY")
        if not library:
            return
        if not os.path.isfile(library):
            raise FileNotFoundError(f"SMLA_BUNDLE_LIBRARY={library} is not a file (give an absolute path: pip "
                                    "builds in another directory)")
        destination = os.path.join(self.build_lib, "smla", "libsmla.so")
        # Copy the real file (not a symlink to libsmla.so.0.1.0) so the wheel holds the library itself.
        shutil.copyfile(os.path.realpath(library), destination)


setup(cmdclass={"build_py": BuildPyBundlingLibrary})
