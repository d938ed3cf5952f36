"""The package version. Its one source is `project(smla VERSION x.y.z)` in the repository's top-level
CMakeLists.txt, which also gives libsmla.so its version (smla_version()): a built wheel carries the value
in `_generated_version.py` (written by setup.py), a checkout (PYTHONPATH=python) reads CMakeLists.txt.

This file is also loaded on its own by setup.py, so it imports nothing from the package at module level.
"""

import os
import re

_PROJECT_VERSION = re.compile(r"project\(\s*smla\s+VERSION\s+([0-9]+\.[0-9]+\.[0-9]+)", re.IGNORECASE)
UNKNOWN_VERSION = "unknown"


def version_from_cmake_lists(path):
    """The x.y.z of `project(smla VERSION x.y.z ...)` in the CMakeLists.txt at `path`."""
    with open(path, encoding="utf-8") as handle:
        match = _PROJECT_VERSION.search(handle.read())
    if not match:
        raise ValueError(f"{path} has no 'project(smla VERSION x.y.z' line")
    return match.group(1)


def _package_version():
    try:
        from ._generated_version import VERSION  # an installed wheel

        return VERSION
    except ImportError:
        pass
    checkout_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        return version_from_cmake_lists(os.path.join(checkout_root, "CMakeLists.txt"))
    except (OSError, ValueError):
        return UNKNOWN_VERSION


__version__ = _package_version()
