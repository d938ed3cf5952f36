"""The ctypes loader's search (python/smla/_lib.py) passes over a libsmla.so built with a sanitizer unless
SMLA_LIBRARY names it: its runtime must be loaded first, and loading it into a plain Python aborts the
process (the README's sanitizer build leaves one in build-asan/, often the newest build tree)."""

import os
import struct

import pytest

from smla import _lib

SHT_STRTAB, SHT_DYNSYM = 3, 11


def write_elf(path, dynamic_strings, elf_class=2):
    """A minimal little-endian ELF file: the header, a null section, a string table holding
    `dynamic_strings` and a dynamic symbol table whose sh_link names it (all the search reads)."""
    strings = b"\0" + b"\0".join(dynamic_strings) + b"\0"
    header_size, entry_size = 64, 64
    strings_offset = header_size
    sections_offset = strings_offset + len(strings)
    header = bytearray(header_size)
    header[:4] = b"\x7fELF"
    header[4] = elf_class
    header[5] = 1  # little-endian
    struct.pack_into("<Q", header, 0x28, sections_offset)
    struct.pack_into("<HH", header, 0x3A, entry_size, 3)

    def section(kind, offset, size, link):
        entry = bytearray(entry_size)
        struct.pack_into("<I", entry, 4, kind)
        struct.pack_into("<QQ", entry, 24, offset, size)
        struct.pack_into("<I", entry, 40, link)
        return bytes(entry)

    table = section(0, 0, 0, 0) + section(SHT_STRTAB, strings_offset, len(strings), 0) + \
        section(SHT_DYNSYM, 0, 0, 1)
    with open(path, "wb") as stream:
        stream.write(bytes(header) + strings + table)
    return str(path)


def test_sanitizer_runtimes_from_the_dynamic_string_table(tmp_path):
    asan = write_elf(tmp_path / "asan.so", [b"libasan.so.8", b"__asan_init", b"smla_version"])
    ubsan = write_elf(tmp_path / "ubsan.so", [b"__ubsan_handle_add_overflow", b"__asan_report_load4"])
    fuzz = write_elf(tmp_path / "fuzz.so", [b"__sanitizer_cov_trace_pc_guard"])
    plain = write_elf(tmp_path / "plain.so", [b"libstdc++.so.6", b"smla_version", b"sanitize_this_name"])
    assert _lib.sanitizer_runtimes(asan) == ["address"]
    assert _lib.sanitizer_runtimes(ubsan) == ["address", "undefined-behaviour"]
    assert _lib.sanitizer_runtimes(fuzz) == ["coverage"]
    assert _lib.sanitizer_runtimes(plain) == []


def test_what_is_not_a_readable_elf64_counts_as_plain(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_bytes(b"__asan_init " * 20)
    truncated = tmp_path / "truncated.so"
    write_elf(tmp_path / "whole.so", [b"__asan_init"])
    truncated.write_bytes((tmp_path / "whole.so").read_bytes()[:100])
    elf32 = write_elf(tmp_path / "elf32.so", [b"__asan_init"], elf_class=1)
    for path in (text, truncated, elf32, tmp_path / "missing.so"):
        assert _lib.sanitizer_runtimes(str(path)) == [], path


def test_the_loaded_library_is_a_plain_build():
    assert _lib.sanitizer_runtimes(_lib.library_path()) == []


def test_the_search_passes_over_a_sanitizer_build(tmp_path, monkeypatch):
    sanitized = write_elf(tmp_path / "libsmla.so", [b"libasan.so.8", b"__asan_init"])
    plain = _lib.library_path()
    monkeypatch.delenv("SMLA_LIBRARY", raising=False)
    monkeypatch.setattr(_lib, "candidate_library_paths", lambda: [sanitized, plain])
    assert _lib._load().smla_library_path == os.path.abspath(plain)
    monkeypatch.setattr(_lib, "candidate_library_paths", lambda: [sanitized])
    with pytest.raises(OSError) as error:
        _lib._load()
    assert f"{sanitized} (built with the address sanitizer" in str(error.value)
    assert "SMLA_LIBRARY" in str(error.value)


def test_smla_library_is_loaded_whatever_it_was_built_with(tmp_path, monkeypatch):
    # The caller who names a library may have preloaded its runtime: no sanitizer check, so this fake file
    # reaches the dynamic loader, which refuses it for its own reason.
    sanitized = write_elf(tmp_path / "libsmla.so", [b"__asan_init"])
    monkeypatch.setenv("SMLA_LIBRARY", sanitized)
    with pytest.raises(OSError) as error:
        _lib._load()
    assert "sanitizer" not in str(error.value)
    assert sanitized in str(error.value)
