"""smla's torch extension (smla/_ext/smla_torch_ext.cpp): the eager hot path of Plan.run and of the FlashMLA
drop-in in C++, so that an eager torch call costs little more than the library's own host time (issue 15). Python keeps every validation and its messages; the extension runs only call signatures that
Python validated before (see the C++ file's header).

Built on first use (the first eager call with torch tensors, or smla.load_torch_extension()) with the
compiler torch uses for its extensions: torch.utils.cpp_extension.load when ninja is installed, else a
setuptools build (torch's BuildExtension without ninja) in a subprocess. It is built once per source, smla,
torch and Python version into $SMLA_TORCH_EXTENSION_DIR (default $XDG_CACHE_HOME/smla/torch_extensions, i.e.
~/.cache/smla/torch_extensions), one directory per version hash, and loaded from there afterwards; concurrent
processes build it once (a file lock). It is not linked against libsmla: load() passes it the addresses of
smla_decode_run and smla_last_error from the library the ctypes binding loaded.

When it cannot be built or loaded, eager calls take the Python path (the same results and errors, more host
time) and one RuntimeWarning per process says why; a failed compilation is remembered in its directory (remove
the directory to try again). SMLA_TORCH_EXTENSION=0 turns it off (no warning). status() says which path
eager calls take.
"""

import contextlib
import dataclasses
import hashlib
import importlib.util
import os
import subprocess
import sys
import threading
import time
import warnings
from typing import Optional

from . import _lib
from ._version import __version__ as PACKAGE_VERSION

ENV_SWITCH = "SMLA_TORCH_EXTENSION"
ENV_DIRECTORY = "SMLA_TORCH_EXTENSION_DIR"
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_ext", "smla_torch_ext.cpp")
_CFLAGS = ("-O2",)
_CUDA_CFLAGS = ("-DSMLA_TORCH_EXT_CUDA",)

# The extension's entry points once loaded (None before, or when it is not used). Read per call by
# decode.Plan.run and flashmla_compat.flash_mla_with_kvcache.
module = None
plan_run = None
drop_in_run = None
# True inside python_path(): eager calls and the bookkeeping for the extension take the Python path.
suspended = False

_status = None
_lock = threading.Lock()
_warned = False


@dataclasses.dataclass(frozen=True)
class TorchExtensionStatus:
    """Which path eager torch calls take: `state` is "loaded" (the extension), "disabled"
    (SMLA_TORCH_EXTENSION=0), "unavailable" (it could not be built or loaded: `reason` says why) or
    "not loaded yet" (no eager torch call has needed it; smla.load_torch_extension() loads it now)."""

    state: str
    reason: str = ""
    path: Optional[str] = None  # the loaded module's file
    build_seconds: Optional[float] = None  # time this process spent compiling it (None: it was built before)
    cuda: bool = False  # built with CUDA support, i.e. it serves torch CUDA tensors (else CPU tensors only)

    @property
    def loaded(self):
        return self.state == "loaded"

    def __str__(self):
        if self.loaded:
            built = "cached" if self.build_seconds is None else f"built in {self.build_seconds:.1f} s"
            return f"loaded ({'CUDA' if self.cuda else 'CPU tensors only'}, {built}): {self.path}"
        return f"{self.state} ({self.reason})" if self.reason else self.state


def status():
    """The status without loading anything (see TorchExtensionStatus)."""
    if _status is not None:
        return _status
    return TorchExtensionStatus("not loaded yet", "no eager torch call has needed it yet; "
                                                  "smla.load_torch_extension() loads it now")


def load():
    """Builds (once per version) and loads the extension if that has not been tried in this process; returns
    the status. Never raises: when it cannot be used, warns once and eager calls take the Python path."""
    global _status
    if _status is not None:
        return _status
    with _lock:
        if _status is None:
            found = _load()
            if found.state == "unavailable":
                _warn_once(found.reason)
            _status = found
    return _status


def attach(plan):
    """The extension's state for `plan` (a capsule Plan.run passes back), or None when the extension does not
    serve this plan: not loaded, or a CUDA plan and an extension without CUDA support."""
    if load().state != "loaded":
        return None
    if plan.device_type == "cuda" and not module.CUDA:
        return None
    device = -1 if plan.device_type == "cpu" else int(plan.device_index)
    return module.plan_state(plan._handle_value, plan._workspace_ptr, plan.workspace_bytes, device)


def plan_remember(state, packed_args, *call):
    if module is not None and not suspended:
        module.plan_remember(state, packed_args, *call)


def drop_in_remember(plan, state, packed_args, meta, *call):
    if module is not None and not suspended:
        module.drop_in_remember(plan, state, packed_args, meta, *call)


def clear_drop_in():
    if module is not None:
        module.drop_in_clear()


def counters():
    """Calls the extension ran (hits) and handed back to Python (misses) in this process; {} when not loaded."""
    return {} if module is None else module.counters()


_python_path_lock = threading.Lock()
_python_path_depth = 0  # python_path() blocks open, in every thread
_python_path_saved = None  # the entry points the last one to leave puts back


@contextlib.contextmanager
def python_path():
    """Inside, eager calls take the Python path even when the extension is loaded (benchmarks and tests that
    compare the two paths); nothing is remembered for the extension meanwhile. Nested or concurrent blocks
    (several threads) are counted: the extension's entry points come back when the last one leaves, not when
    the first does (which put back the None another block had saved, for good)."""
    global plan_run, drop_in_run, suspended, _python_path_depth, _python_path_saved
    with _python_path_lock:
        if _python_path_depth == 0:
            _python_path_saved = plan_run, drop_in_run, suspended
            plan_run, drop_in_run, suspended = None, None, True
        _python_path_depth += 1
    try:
        yield
    finally:
        with _python_path_lock:
            _python_path_depth -= 1
            if _python_path_depth == 0:
                plan_run, drop_in_run, suspended = _python_path_saved
                _python_path_saved = None


@contextlib.contextmanager
def no_op_library():
    """Inside, the extension calls a function that returns OK in place of smla_decode_run (nothing runs): the
    benchmark's measure of the bindings' own host time."""
    previous = module.set_decode_run(module.NO_OP_DECODE_RUN)
    try:
        yield
    finally:
        module.set_decode_run(previous)


# ---- loading -------------------------------------------------------------------------------------------------
class _Unavailable(Exception):
    pass


def _warn_once(reason):
    global _warned
    if _warned:
        return
    _warned = True
    warnings.warn(f"smla: the torch extension for eager calls is not used: {reason}. Eager torch calls take the "
                  f"Python path (same results, more host time per call); {ENV_SWITCH}=0 turns the extension off "
                  "and silences this warning", RuntimeWarning, stacklevel=4)


def _load():
    if os.environ.get(ENV_SWITCH, "").strip().lower() in ("0", "off", "false", "no"):
        return TorchExtensionStatus("disabled", f"{ENV_SWITCH}={os.environ[ENV_SWITCH]}")
    try:
        torch = _import_torch()
        library = _lib.library()
        extension, path, build_seconds = _open(torch)
        _init(extension, library, torch)
    except _Unavailable as reason:
        return TorchExtensionStatus("unavailable", str(reason))
    except Exception as error:  # noqa: BLE001 - any failure means the Python path, with the reason
        return TorchExtensionStatus("unavailable", f"{type(error).__name__}: {_first_line(str(error))}")
    global module, plan_run, drop_in_run
    module, plan_run, drop_in_run = extension, extension.plan_run, extension.drop_in_run
    return TorchExtensionStatus("loaded", path=path, build_seconds=build_seconds, cuda=bool(extension.CUDA))


def _import_torch():
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch
    if os.environ.get("SMLA_NO_TORCH") == "1":
        raise _Unavailable("SMLA_NO_TORCH=1 and PyTorch is not imported")
    try:
        import torch
    except ImportError as error:
        raise _Unavailable(f"PyTorch is not importable ({error})") from None
    return torch


def _init(extension, library, torch):
    import ctypes

    from . import _torch_ops
    from .decode import DEFAULT_SOFTMAX_SCALE
    from .flashmla_compat import FlashMLASchedMeta

    _torch_ops.eager_helpers()  # is_compiling, which Plan.run and the drop-in ask before calling the extension
    address = lambda function: ctypes.cast(function, ctypes.c_void_p).value  # noqa: E731
    extension.init(address(library.smla_decode_run), address(library.smla_last_error),
                   ctypes.sizeof(_lib.DecodeArgsStruct), _lib.DECODE_ARGS_POINTER_OFFSETS, _lib.SmlaError,
                   float(DEFAULT_SOFTMAX_SCALE), torch.Tensor, torch.nn.Parameter, FlashMLASchedMeta)


def _first_line(text):
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0][:300] if lines else "(no message)"


def cache_root():
    """Where built extensions are kept: $SMLA_TORCH_EXTENSION_DIR, else $XDG_CACHE_HOME/smla/torch_extensions."""
    explicit = os.environ.get(ENV_DIRECTORY)
    if explicit:
        return os.path.abspath(explicit)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "smla", "torch_extensions")


def build_key(torch, cuda):
    """The version hash of a build: the source, smla, torch (and its CUDA and C++ ABI), Python, the flags and
    the build recipes."""
    with open(SOURCE, "rb") as handle:
        source = handle.read()
    facts = [PACKAGE_VERSION, torch.__version__, str(torch.version.cuda), str(getattr(torch.version, "hip", None)),
             str(getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", "")), sys.version, sys.platform, str(cuda),
             " ".join(_flags(cuda)), _CPP_EXTENSION_BUILD, _SETUPTOOLS_BUILD]
    digest = hashlib.sha256(source)
    digest.update("\0".join(facts).encode())
    return digest.hexdigest()[:16]


def _flags(cuda):
    return list(_CFLAGS) + (list(_CUDA_CFLAGS) if cuda else [])


def _variant(torch):
    """(module name, CUDA include directory or None) of the build for this torch. CUDA support (the current
    stream comes from c10/cuda, whose headers need the CUDA toolkit's) whenever torch is a CUDA build; without
    the toolkit's headers only where no GPU can be used (then CPU tensors only)."""
    cuda_include = _cuda_include() if torch.version.cuda is not None else None
    if torch.version.cuda is not None and cuda_include is None and torch.cuda.is_available():
        from torch.utils import cpp_extension

        home = cpp_extension.CUDA_HOME
        raise _Unavailable("torch is a CUDA build but the CUDA toolkit was not found for the extension's headers "
                           f"(no cuda_runtime_api.h in {os.path.join(home, 'include') if home else 'CUDA_HOME'}; "
                           "set CUDA_HOME)")
    return f"smla_torch_ext_{build_key(torch, cuda_include is not None)}", cuda_include


def _open(torch):
    """(module, path, build seconds or None) of the extension for this torch, built first if needed."""
    name, cuda_include = _variant(torch)
    directory = os.path.join(cache_root(), name)
    path = os.path.join(directory, name + ".so")
    ready = os.path.join(directory, "ready")
    failed = os.path.join(directory, "failed")
    build_seconds = None
    if not os.path.exists(ready):
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as error:
            raise _Unavailable(f"cannot create its build directory {directory} ({error.strerror}; set "
                               f"{ENV_DIRECTORY} to a writable directory)") from None
        with _file_lock(os.path.join(directory, "smla-build.lock")):  # "lock" is cpp_extension's
            if os.path.exists(failed):
                with open(failed, encoding="utf-8", errors="replace") as handle:
                    raise _Unavailable(handle.read().strip())
            if not os.path.exists(ready):
                build_seconds = _build(torch, name, directory, cuda_include, path, failed)
                with open(ready, "w", encoding="utf-8") as handle:
                    handle.write(f"built in {build_seconds:.1f} s for torch {torch.__version__}\n")
    return _import_module(name, path), path, build_seconds


@contextlib.contextmanager
def _file_lock(path):
    import fcntl

    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _import_module(name, path):
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    extension = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(extension)
    sys.modules[name] = extension
    return extension


def _cuda_include():
    """The CUDA toolkit's include directory (torch's CUDA_HOME), or None without cuda_runtime_api.h there."""
    from torch.utils import cpp_extension

    include = os.path.join(cpp_extension.CUDA_HOME, "include") if cpp_extension.CUDA_HOME else None
    return include if include and os.path.exists(os.path.join(include, "cuda_runtime_api.h")) else None


def _build(torch, name, directory, cuda_include, path, failed):
    """Compiles the extension into `path` (with CUDA support when `cuda_include` is the toolkit's include
    directory); returns the seconds it took. A compilation that fails is recorded in `failed` (with the
    compiler's output in build.log), so later processes do not try again."""
    from torch.utils import cpp_extension

    cuda = cuda_include is not None
    spec = {"name": name, "source": SOURCE, "directory": directory, "path": path, "cflags": _flags(cuda),
            "include_dirs": [], "libraries": []}
    if cuda:
        # The c10/cuda headers include the CUDA runtime's: only the toolkit's headers are needed, nothing of it
        # is linked (c10_cuda comes with torch) and no nvcc runs, so the toolkit's version need not be torch's.
        spec["include_dirs"] = [] if cuda_include == "/usr/include" else [cuda_include]  # the compiler's own
        spec["libraries"] = ["c10_cuda"]
    ninja = cpp_extension.is_ninja_available()
    builder = "torch.utils.cpp_extension.load" if ninja else "setuptools (no ninja)"
    print(f"smla: building the torch extension for eager calls with {builder} in {directory} (once per smla and "
          f"torch version; {ENV_SWITCH}=0 skips it)", file=sys.stderr, flush=True)
    start = time.perf_counter()
    log = os.path.join(directory, "build.log")
    try:
        _run_build(_CPP_EXTENSION_BUILD if ninja else _SETUPTOOLS_BUILD, spec, log)
        if not os.path.exists(path):
            raise RuntimeError(f"the build did not produce {path}")
    except Exception as error:  # noqa: BLE001 - recorded, then reported as the reason
        reason = (f"building it with {builder} failed: {_first_line(str(error))} (compiler output in {log}; remove "
                  f"{directory} to try again)")
        with open(failed, "w", encoding="utf-8") as handle:
            handle.write(reason + "\n")
        raise _Unavailable(reason) from None
    return time.perf_counter() - start


# The builds run in a subprocess: cpp_extension.load imports the module it built, and this process imports it
# from `path` itself (two copies of one extension module are to be avoided); the compiler output goes to a log.
_CPP_EXTENSION_BUILD = """
import json, sys
from torch.utils import cpp_extension
spec = json.loads(sys.argv[1])
cpp_extension.load(spec["name"], [spec["source"]], extra_cflags=spec["cflags"], extra_include_paths=spec["include_dirs"],
                   extra_ldflags=["-l" + library for library in spec["libraries"]], build_directory=spec["directory"],
                   with_cuda=False, verbose=True)
"""

_SETUPTOOLS_BUILD = """
import json, os, shutil, sys
from setuptools import setup
from torch.utils import cpp_extension
spec = json.loads(sys.argv[1])
name, directory = spec["name"], spec["directory"]
extension = cpp_extension.CppExtension(name, [spec["source"]], include_dirs=spec["include_dirs"],
                                       libraries=spec["libraries"], extra_compile_args={"cxx": spec["cflags"]})
build_lib = os.path.join(directory, "setuptools-lib")
setup(name=name, ext_modules=[extension], script_args=["build_ext", "--build-lib", build_lib, "--build-temp",
      os.path.join(directory, "setuptools-temp")],
      cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=False)})
built = [entry for entry in os.listdir(build_lib) if entry.startswith(name) and entry.endswith(".so")]
if len(built) != 1:
    sys.exit(f"expected one {name}*.so in {build_lib}, found {built}")
shutil.copyfile(os.path.join(build_lib, built[0]), spec["path"] + ".tmp")
os.replace(spec["path"] + ".tmp", spec["path"])
"""


def _run_build(script, spec, log):
    import json

    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)  # the torch this process uses
    command = [sys.executable, "-c", script, json.dumps(spec)]
    done = subprocess.run(command, cwd=spec["directory"], env=environment, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    with open(log, "w", encoding="utf-8") as handle:
        handle.write(f"{sys.executable} -c <script> {json.dumps(spec)}\n{script}\n{done.stdout}")
    if done.returncode != 0:
        errors = [line for line in done.stdout.splitlines() if "error" in line.lower()]
        raise RuntimeError(errors[0] if errors else (done.stdout.strip().splitlines() or ["exit status"])[-1])
