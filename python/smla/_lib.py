"""ctypes binding of the smla C API (include/smla/smla.h, include/smla/types.h).

The structs below mirror types.h field for field; keep them in the same order. The library is found
through SMLA_LIBRARY, else a libsmla.so installed next to this package, else the repository's build
trees (build*/libsmla.so, newest first), so `PYTHONPATH=python` works straight from a checkout. Outside
SMLA_LIBRARY a library built with a sanitizer (e.g. build-asan/, the README's sanitizer build) is passed
over: its runtime must come first in the process, so loading it into a plain Python aborts the process
instead of failing in a way the search could recover from.

A library is used only when it matches this package (check_library): the same version (both come from
project(VERSION) in CMakeLists.txt) and, for every ctypes.Structure defined in this module, the same
size as the C struct it mirrors (smla_struct_size). A struct class `FooBarStruct` mirrors
`smla_foo_bar_t`; a new mirror is checked without further code.
"""

import ctypes
import glob
import os
import re
import struct
import threading

from ._version import __version__ as PACKAGE_VERSION

STATUS_OK = 0
STATUS_NAMES = {
    0: "OK",
    1: "INVALID_ARGUMENT",
    2: "UNSUPPORTED",
    3: "NO_DEVICE",
    4: "CUDA_ERROR",
    5: "DEVICE_CHECK_FAILED",
    6: "INTERNAL",
}

BACKEND_AUTO, BACKEND_CPU, BACKEND_CUDA_REF, BACKEND_CUDA = 0, 1, 2, 3
LENGTHS_PER_BATCH, LENGTHS_PER_QUERY = 0, 1
CPU_FLOAT64, CPU_FLOAT32 = 0, 1
MEMORY_HOST, MEMORY_DEVICE = 0, 1


class SmlaError(RuntimeError):
    """A failed smla call: `status` is the smla_status_t code, `message` smla_last_error()."""

    def __init__(self, status, message):
        self.status = int(status)
        self.status_name = STATUS_NAMES.get(self.status, str(self.status))
        self.message = message
        super().__init__(f"smla error {self.status_name} ({self.status}): {message}")


class CacheLayoutStruct(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("page_block_size", ctypes.c_int64),
        ("page_stride_bytes", ctypes.c_int64),
        ("num_pages", ctypes.c_int64),
    ]


class DecodeShapeStruct(ctypes.Structure):
    _fields_ = [
        ("batch", ctypes.c_int32),
        ("seq_q", ctypes.c_int32),
        ("num_heads", ctypes.c_int32),
        ("topk", ctypes.c_int32),
        ("extra_topk", ctypes.c_int32),
    ]


class PlanOptionsStruct(ctypes.Structure):
    _fields_ = [
        ("backend", ctypes.c_int),
        ("device", ctypes.c_int32),
        ("num_splits", ctypes.c_int32),
        ("cpu_precision", ctypes.c_int),
        ("cpu_threads", ctypes.c_int32),
        ("max_shared_bytes", ctypes.c_int32),
        ("sm_count", ctypes.c_int32),
    ]


class DecodeArgsStruct(ctypes.Structure):
    _fields_ = [
        ("q", ctypes.c_void_p),
        ("q_stride_batch", ctypes.c_int64),
        ("q_stride_seq", ctypes.c_int64),
        ("q_stride_head", ctypes.c_int64),
        ("main_cache", CacheLayoutStruct),
        ("indices", ctypes.c_void_p),
        ("indices_stride_batch", ctypes.c_int64),
        ("indices_stride_seq", ctypes.c_int64),
        ("topk_length", ctypes.c_void_p),
        ("topk_length_layout", ctypes.c_int),
        ("extra_cache", CacheLayoutStruct),
        ("extra_indices", ctypes.c_void_p),
        ("extra_indices_stride_batch", ctypes.c_int64),
        ("extra_indices_stride_seq", ctypes.c_int64),
        ("extra_topk_length", ctypes.c_void_p),
        ("extra_topk_length_layout", ctypes.c_int),
        ("attn_sink", ctypes.c_void_p),
        ("softmax_scale", ctypes.c_float),
        ("out", ctypes.c_void_p),
        ("out_stride_batch", ctypes.c_int64),
        ("out_stride_seq", ctypes.c_int64),
        ("out_stride_head", ctypes.c_int64),
        ("lse", ctypes.c_void_p),
        ("lse_stride_batch", ctypes.c_int64),
        ("lse_stride_seq", ctypes.c_int64),
        ("lse_stride_head", ctypes.c_int64),
    ]


class RelayoutIndexSetStruct(ctypes.Structure):
    _fields_ = [
        ("indices", ctypes.c_void_p),
        ("num_rows", ctypes.c_int64),
        ("width", ctypes.c_int64),
        ("row_stride", ctypes.c_int64),
    ]


_P = ctypes.POINTER
# name: (restype, argtypes). Status-returning functions are checked by `call`.
_SIGNATURES = {
    "smla_version": (ctypes.c_char_p, []),
    "smla_struct_size": (ctypes.c_size_t, [ctypes.c_char_p]),
    "smla_last_error": (ctypes.c_char_p, []),
    "smla_status_string": (ctypes.c_char_p, [ctypes.c_int]),
    "smla_backend_name": (ctypes.c_char_p, [ctypes.c_int]),
    "smla_backend_from_name": (ctypes.c_int, [ctypes.c_char_p, _P(ctypes.c_int)]),
    "smla_resolve_backend": (ctypes.c_int, [ctypes.c_int, ctypes.c_int32, _P(ctypes.c_int)]),
    "smla_cuda_available": (ctypes.c_int, []),
    "smla_writer_page_stride_bytes": (ctypes.c_int64, [ctypes.c_int64]),
    "smla_validate_cache_layout": (ctypes.c_int, [_P(CacheLayoutStruct)]),
    "smla_default_plan_options": (None, [_P(PlanOptionsStruct)]),
    "smla_plan_create": (ctypes.c_int, [_P(DecodeShapeStruct), _P(PlanOptionsStruct), _P(ctypes.c_void_p)]),
    "smla_plan_destroy": (ctypes.c_int, [ctypes.c_void_p]),
    "smla_plan_workspace_bytes": (ctypes.c_int, [ctypes.c_void_p, _P(ctypes.c_size_t)]),
    "smla_plan_backend": (ctypes.c_int, [ctypes.c_void_p, _P(ctypes.c_int)]),
    "smla_plan_num_splits": (ctypes.c_int, [ctypes.c_void_p, _P(ctypes.c_int32)]),
    "smla_plan_kernel_name": (ctypes.c_int, [ctypes.c_void_p, _P(ctypes.c_char_p)]),
    "smla_plan_sm_count": (ctypes.c_int, [ctypes.c_void_p, _P(ctypes.c_int32)]),
    "smla_set_contiguous_strides": (ctypes.c_int, [ctypes.c_void_p, _P(DecodeArgsStruct)]),
    "smla_plan_check_errors": (
        ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, _P(ctypes.c_uint64)]
    ),
    "smla_plan_reset_errors": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]),
    "smla_decode_run": (
        ctypes.c_int,
        [ctypes.c_void_p, _P(DecodeArgsStruct), ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p],
    ),
    "smla_append": (
        ctypes.c_int,
        [_P(CacheLayoutStruct), ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
         ctypes.c_int32, ctypes.c_void_p],
    ),
    "smla_dequantize_gather": (
        ctypes.c_int, [_P(CacheLayoutStruct), ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p]
    ),
    "smla_device_workspace_create": (
        ctypes.c_int, [ctypes.c_int32, ctypes.c_size_t, _P(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_size_t]
    ),
    "smla_device_workspace_destroy": (
        ctypes.c_int, [ctypes.c_int32, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
    ),
    "smla_relayout_workspace_bytes": (ctypes.c_int64, [_P(CacheLayoutStruct)]),
    "smla_relayout_pages": (
        ctypes.c_int,
        [_P(CacheLayoutStruct), _P(CacheLayoutStruct), _P(RelayoutIndexSetStruct), ctypes.c_int32,
         ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p],
    ),
}

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO_ROOT = os.path.dirname(os.path.dirname(_PACKAGE_DIR))


def candidate_library_paths():
    """Where libsmla.so is looked for, in order (see the module docstring)."""
    explicit = os.environ.get("SMLA_LIBRARY")
    if explicit:
        return [explicit]
    paths = [os.path.join(_PACKAGE_DIR, "libsmla.so")]
    # Newest build tree first, so a fresh build wins over a stale one.
    built = glob.glob(os.path.join(_REPO_ROOT, "build*", "libsmla.so"))
    paths += sorted(built, key=os.path.getmtime, reverse=True)
    return paths


# Names a sanitizer's runtime puts in an instrumented library's dynamic string table (its imported symbols
# and the runtime it links against).
_SANITIZER_MARKERS = (
    (b"__asan_", "address"),
    (b"__ubsan_", "undefined-behaviour"),
    (b"__tsan_", "thread"),
    (b"__msan_", "memory"),
    (b"__sanitizer_cov", "coverage"),
)


def sanitizer_runtimes(path):
    """The sanitizers whose runtime the shared library at `path` needs, from the dynamic string table of a
    little-endian ELF64 file (sorted names; empty for a plain build, and for anything that is not such a file
    or cannot be read, which loading will then report)."""
    try:
        with open(path, "rb") as stream:
            header = stream.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2 or header[5] != 1:
                return []
            (section_offset,) = struct.unpack_from("<Q", header, 0x28)
            entry_size, count = struct.unpack_from("<HH", header, 0x3A)
            if entry_size < 64 or count == 0:
                return []
            stream.seek(section_offset)
            table = stream.read(entry_size * count)
            sections = []
            for index in range(len(table) // entry_size):
                kind, = struct.unpack_from("<I", table, index * entry_size + 4)
                offset, size = struct.unpack_from("<QQ", table, index * entry_size + 24)
                link, = struct.unpack_from("<I", table, index * entry_size + 40)
                sections.append((kind, offset, size, link))
            names = set()
            for kind, _, _, link in sections:
                if kind != 11 or link >= len(sections):  # SHT_DYNSYM, whose sh_link is its string table
                    continue
                _, offset, size, _ = sections[link]
                stream.seek(offset)
                strings = stream.read(size)
                names.update(name for marker, name in _SANITIZER_MARKERS if marker in strings)
            return sorted(names)
    except (OSError, struct.error):
        return []


def c_struct_name(struct):
    """The C type a mirror class stands for: CacheLayoutStruct -> smla_cache_layout_t."""
    stem = struct.__name__[: -len("Struct")] if struct.__name__.endswith("Struct") else struct.__name__
    return "smla_" + re.sub(r"(?<!^)(?=[A-Z])", "_", stem).lower() + "_t"


def mirrored_structs():
    """Every ctypes.Structure class defined in this module, i.e. every C struct the bindings mirror."""
    return [value for value in globals().values()
            if isinstance(value, type) and issubclass(value, ctypes.Structure) and value.__module__ == __name__]


def check_library(lib):
    """Why `lib` (a loaded libsmla.so with its signatures set) cannot be used by this package: a list of
    sentences, empty when its version and the size of every mirrored struct match."""
    problems = []
    library_version = lib.smla_version().decode("utf-8", "replace")
    if library_version != PACKAGE_VERSION:
        problems.append(f"library version {library_version}, Python package version {PACKAGE_VERSION}")
    for struct in mirrored_structs():
        name = c_struct_name(struct)
        library_size = lib.smla_struct_size(name.encode())
        if library_size == 0:
            problems.append(f"the library does not know {name} (mirrored by {struct.__name__})")
        elif library_size != ctypes.sizeof(struct):
            problems.append(f"{name} is {library_size} bytes in the library but {ctypes.sizeof(struct)} in "
                            f"smla._lib.{struct.__name__}")
    return problems


_library = None
_library_lock = threading.Lock()


def library():
    """The loaded libsmla.so (loaded on first use, so importing smla never fails on a missing build)."""
    global _library
    if _library is not None:
        return _library
    with _library_lock:
        if _library is None:
            _library = _load()
    return _library


def _load():
    tried = []
    explicit = bool(os.environ.get("SMLA_LIBRARY"))
    for path in candidate_library_paths():
        if not os.path.exists(path):
            tried.append(f"{path} (missing)")
            continue
        sanitizers = [] if explicit else sanitizer_runtimes(path)
        if sanitizers:
            tried.append(f"{path} (built with the {' and '.join(sanitizers)} sanitizer, whose runtime must be "
                         "loaded first: name it in SMLA_LIBRARY to use it anyway)")
            continue
        try:
            lib = ctypes.CDLL(os.path.abspath(path))
        except OSError as error:  # e.g. a half-built library with undefined symbols
            tried.append(f"{path} ({error})")
            continue
        missing = [name for name in _SIGNATURES if not hasattr(lib, name)]
        if missing:
            tried.append(f"{path} (lacks {', '.join(missing[:3])}{'...' if len(missing) > 3 else ''})")
            continue
        for name, (restype, argtypes) in _SIGNATURES.items():
            function = getattr(lib, name)
            function.restype = restype
            function.argtypes = argtypes
        problems = check_library(lib)
        if problems:
            # Calls through mismatched structs would read and write the wrong bytes: refuse it.
            tried.append(f"{path} (does not match this Python package: {'; '.join(problems)})")
            continue
        lib.smla_library_path = os.path.abspath(path)
        # The per-call entry of the run path: smla_decode_run taking the packed bytes of
        # smla_decode_args_t (see pack_decode_args), so a call builds no ctypes struct.
        lib.smla_decode_run_packed = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p
        )(("smla_decode_run", lib))
        return lib
    raise OSError(
        f"smla: no usable libsmla.so found for the smla {PACKAGE_VERSION} Python package; set "
        "SMLA_LIBRARY=/path/to/libsmla.so or build it with `cmake --build build --target smla` (a library "
        "from another version or source tree is refused: rebuild it, or install the matching package). "
        "Tried: " + "; ".join(tried)
    )


def library_path():
    return library().smla_library_path


def last_error():
    message = library().smla_last_error()
    return message.decode("utf-8", "replace") if message else ""


def call(name, *args):
    """Calls a status-returning C function and raises SmlaError with smla_last_error() on failure."""
    status = getattr(library(), name)(*args)
    if status != STATUS_OK:
        raise SmlaError(status, last_error() or f"{name} failed")
    return status


def _flat_fields(struct_type, prefix="", base=0):
    """(dotted name, byte offset, ctypes type) of every scalar field of a ctypes struct, nested ones flattened."""
    fields = []
    for name, field_type in struct_type._fields_:
        offset = base + getattr(struct_type, name).offset
        if issubclass(field_type, ctypes.Structure):
            fields += _flat_fields(field_type, f"{prefix}{name}.", offset)
        else:
            fields.append((prefix + name, offset, field_type))
    return fields


_STRUCT_CODES = {ctypes.c_void_p: "Q", ctypes.c_int64: "q", ctypes.c_int32: "i", ctypes.c_int: "i",
                 ctypes.c_float: "f"}


def _packer(struct_type):
    """A struct.Struct with the byte layout of `struct_type` (padding included) and its field names in order."""
    import struct

    layout, names, position = "=", [], 0
    for name, offset, field_type in _flat_fields(struct_type):
        layout += "x" * (offset - position)
        layout += _STRUCT_CODES[field_type]
        position = offset + ctypes.sizeof(field_type)
        names.append(name)
    layout += "x" * (ctypes.sizeof(struct_type) - position)
    packer = struct.Struct(layout)
    assert packer.size == ctypes.sizeof(struct_type), "DecodeArgsStruct packing disagrees with ctypes"
    return packer, names


# smla_decode_args_t as packed bytes: DECODE_ARGS.pack(*values) with one value per name in
# DECODE_ARGS_FIELDS (pointers as ints, 0 for NULL). Derived from DecodeArgsStruct, so both stay in step.
DECODE_ARGS, DECODE_ARGS_FIELDS = _packer(DecodeArgsStruct)
DECODE_ARGS_INDEX = {name: position for position, name in enumerate(DECODE_ARGS_FIELDS)}
# The data pointers of a call, in the order the bindings pass them (decode.py, the torch extension), and
# their byte offsets in smla_decode_args_t.
DECODE_ARGS_POINTERS = ("q", "main_cache.data", "indices", "topk_length", "extra_cache.data", "extra_indices",
                        "extra_topk_length", "attn_sink", "out", "lse")
DECODE_ARGS_POINTER_OFFSETS = tuple({name: offset for name, offset, _ in _flat_fields(DecodeArgsStruct)}[name]
                                    for name in DECODE_ARGS_POINTERS)


def decode_args_values(args):
    """The DECODE_ARGS_FIELDS values of a DecodeArgsStruct, in order."""
    values = []
    for name in DECODE_ARGS_FIELDS:
        value = args
        for part in name.split("."):
            value = getattr(value, part)
        values.append(0 if value is None else value)
    return values
