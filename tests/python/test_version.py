"""The version has one source (project(VERSION) in CMakeLists.txt), and the ctypes loader refuses a
libsmla.so whose version or mirrored struct sizes differ from the Python package's."""

import ctypes
import os

import pytest

import smla
from smla import _lib
from smla._version import version_from_cmake_lists

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXPECTED_MIRRORS = {"smla_cache_layout_t", "smla_decode_shape_t", "smla_plan_options_t", "smla_decode_args_t",
                    "smla_relayout_index_set_t"}


def test_one_version_everywhere():
    project_version = version_from_cmake_lists(os.path.join(REPO, "CMakeLists.txt"))
    assert smla.__version__ == project_version
    assert smla.version() == project_version  # the loaded library's smla_version()
    with open(os.path.join(REPO, "python", "pyproject.toml"), encoding="utf-8") as handle:
        pyproject = handle.read()
    assert 'dynamic = ["version"]' in pyproject and "\nversion =" not in pyproject


def test_loaded_library_passes_the_check():
    lib = _lib.library()
    assert _lib.check_library(lib) == []
    names = {_lib.c_struct_name(struct) for struct in _lib.mirrored_structs()}
    assert EXPECTED_MIRRORS <= names
    for struct in _lib.mirrored_structs():
        assert lib.smla_struct_size(_lib.c_struct_name(struct).encode()) == ctypes.sizeof(struct)
    assert lib.smla_struct_size(b"smla_no_such_t") == 0


def _load_again():
    """Loads and checks the library as the first smla call would (the cached one stays: finalizers of
    other tests' plans may call into it at any time)."""
    return _lib._load()


def test_version_mismatch_is_refused(monkeypatch):
    library_version = smla.version()
    monkeypatch.setattr(_lib, "PACKAGE_VERSION", "99.0.0")
    with pytest.raises(OSError) as error:
        _load_again()
    message = str(error.value)
    assert "does not match this Python package" in message
    assert f"library version {library_version}, Python package version 99.0.0" in message
    assert "smla 99.0.0 Python package" in message


def test_struct_size_mismatch_is_refused(monkeypatch):
    # A PlanOptionsStruct with one more field than the library's smla_plan_options_t: what a binding
    # updated without rebuilding the library (or the reverse) would look like.
    original = _lib.PlanOptionsStruct
    grown = type("PlanOptionsStruct", (ctypes.Structure,),
                 {"_fields_": list(original._fields_) + [("added_field", ctypes.c_int64)],
                  "__module__": _lib.__name__})
    library_size = ctypes.sizeof(original)
    monkeypatch.setattr(_lib, "PlanOptionsStruct", grown)
    with pytest.raises(OSError) as error:
        _load_again()
    assert (f"smla_plan_options_t is {library_size} bytes in the library but {ctypes.sizeof(grown)} in "
            "smla._lib.PlanOptionsStruct") in str(error.value)


def test_unknown_mirrored_struct_is_refused(monkeypatch):
    made_up = type("MadeUpStruct", (ctypes.Structure,),
                   {"_fields_": [("value", ctypes.c_int32)], "__module__": _lib.__name__})
    monkeypatch.setattr(_lib, "MadeUpStruct", made_up, raising=False)
    with pytest.raises(OSError, match="the library does not know smla_made_up_t"):
        _load_again()
