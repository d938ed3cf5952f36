"""The torch extension's loader (smla/_torch_ext.py) without building anything, so these run everywhere,
PyTorch or not: SMLA_TORCH_EXTENSION=0, PyTorch missing, a build that fails (recorded, not retried), one
warning per process, the status API and the cache directory and key."""

import os
import sys
import types
import warnings

import pytest

import smla
from smla import _torch_ext


@pytest.fixture
def fresh_loader(monkeypatch, tmp_path):
    """The loader as in a new process (nothing tried, nothing warned), with its cache in tmp_path; the real
    state (an extension another test loaded) comes back afterwards."""
    for name in ("_status", "_warned", "module", "plan_run", "drop_in_run", "suspended"):
        monkeypatch.setattr(_torch_ext, name, getattr(_torch_ext, name))
    _torch_ext._status, _torch_ext._warned, _torch_ext.suspended = None, False, False
    _torch_ext.module = _torch_ext.plan_run = _torch_ext.drop_in_run = None
    monkeypatch.setenv(_torch_ext.ENV_DIRECTORY, str(tmp_path / "cache"))
    monkeypatch.delenv(_torch_ext.ENV_SWITCH, raising=False)
    return tmp_path


def _fake_torch(version="9.9.0", cuda=None, gpu=False):
    """A stand-in for torch with what the loader reads before it compiles."""
    torch = types.ModuleType("torch")
    torch.__version__ = version
    torch.version = types.SimpleNamespace(cuda=cuda, hip=None)
    torch.cuda = types.SimpleNamespace(is_available=lambda: gpu)
    torch._C = types.SimpleNamespace(_GLIBCXX_USE_CXX11_ABI=True)
    cpp_extension = types.ModuleType("torch.utils.cpp_extension")
    cpp_extension.CUDA_HOME = None
    cpp_extension.is_ninja_available = lambda: True
    torch.utils = types.SimpleNamespace(cpp_extension=cpp_extension)
    return torch, cpp_extension


def _load_recording_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = smla.load_torch_extension()
    return status, [warning for warning in caught if "torch extension" in str(warning.message)]


def test_status_before_any_load_says_not_loaded_yet(fresh_loader):
    status = smla.torch_extension_status()
    assert status.state == "not loaded yet" and not status.loaded
    assert "smla.load_torch_extension()" in str(status)
    assert _torch_ext.plan_run is None and _torch_ext.drop_in_run is None


def test_disabled_by_the_environment_variable_without_a_warning(fresh_loader, monkeypatch):
    monkeypatch.setenv("SMLA_TORCH_EXTENSION", "0")
    status, warned = _load_recording_warnings()
    assert status.state == "disabled" and str(status) == "disabled (SMLA_TORCH_EXTENSION=0)"
    assert warned == []
    assert smla.torch_extension_status() is status
    assert _torch_ext.plan_run is None and _torch_ext.drop_in_run is None
    assert not os.path.exists(fresh_loader / "cache")  # nothing built


def test_without_pytorch_the_python_path_is_used_and_one_warning_says_why(fresh_loader, monkeypatch):
    monkeypatch.delenv("SMLA_NO_TORCH", raising=False)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails as if it were not installed
    status, warned = _load_recording_warnings()
    assert status.state == "unavailable" and "PyTorch is not importable" in status.reason
    assert len(warned) == 1 and warned[0].category is RuntimeWarning
    assert "PyTorch is not importable" in str(warned[0].message) and "SMLA_TORCH_EXTENSION=0" in str(warned[0].message)
    again, warned_again = _load_recording_warnings()  # tried once per process: same status, no second warning
    assert again is status and warned_again == []
    assert _torch_ext.plan_run is None and _torch_ext.drop_in_run is None


def test_a_failed_build_is_recorded_reported_once_and_not_retried(fresh_loader, monkeypatch):
    torch, cpp_extension = _fake_torch()
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch.utils", torch.utils)
    monkeypatch.setitem(sys.modules, "torch.utils.cpp_extension", cpp_extension)
    builds = []

    def failing_build(script, spec, log):
        builds.append(spec["directory"])
        with open(log, "w") as handle:
            handle.write("smla_torch_ext.cpp:1: error: something the compiler did not like\n")
        raise RuntimeError("smla_torch_ext.cpp:1: error: something the compiler did not like")

    monkeypatch.setattr(_torch_ext, "_run_build", failing_build)
    status, warned = _load_recording_warnings()
    assert status.state == "unavailable" and len(builds) == 1
    assert "building it with torch.utils.cpp_extension.load failed" in status.reason
    assert "something the compiler did not like" in status.reason
    directory = builds[0]
    assert os.path.dirname(directory) == str(fresh_loader / "cache")
    assert f"compiler output in {os.path.join(directory, 'build.log')}" in status.reason
    assert f"remove {directory} to try again" in status.reason
    assert os.path.exists(os.path.join(directory, "failed")) and not os.path.exists(os.path.join(directory, "ready"))
    assert len(warned) == 1 and "something the compiler did not like" in str(warned[0].message)

    # A later process finds the recorded failure: same reason, no second compilation.
    _torch_ext._status, _torch_ext._warned = None, False
    status_later, warned_later = _load_recording_warnings()
    assert status_later.reason == status.reason and len(builds) == 1 and len(warned_later) == 1


@pytest.mark.parametrize("gpu", [True, False])
def test_a_cuda_torch_without_the_cuda_toolkit(fresh_loader, monkeypatch, gpu):
    """With a GPU the CUDA headers are needed (reported); without one, a CPU-tensors-only build is made."""
    torch, cpp_extension = _fake_torch(cuda="13.0", gpu=gpu)
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch.utils", torch.utils)
    monkeypatch.setitem(sys.modules, "torch.utils.cpp_extension", cpp_extension)
    specs = []

    def failing_build(script, spec, log):
        specs.append(spec)
        raise RuntimeError("stop here")

    monkeypatch.setattr(_torch_ext, "_run_build", failing_build)
    status, warned = _load_recording_warnings()
    assert status.state == "unavailable" and len(warned) == 1
    if gpu:
        assert "CUDA toolkit was not found" in status.reason and "CUDA_HOME" in status.reason and specs == []
    else:
        assert "stop here" in status.reason
        assert [(spec["cflags"], spec["include_dirs"], spec["libraries"]) for spec in specs] == [(["-O2"], [], [])]


def test_a_cuda_build_compiles_against_the_toolkit_headers_and_links_c10_cuda_only(fresh_loader, monkeypatch):
    torch, cpp_extension = _fake_torch(cuda="12.8", gpu=True)
    cuda_home = fresh_loader / "cuda"
    (cuda_home / "include").mkdir(parents=True)
    (cuda_home / "include" / "cuda_runtime_api.h").write_text("")
    cpp_extension.CUDA_HOME = str(cuda_home)
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch.utils", torch.utils)
    monkeypatch.setitem(sys.modules, "torch.utils.cpp_extension", cpp_extension)
    specs = []

    def failing_build(script, spec, log):
        specs.append((script, spec))
        raise RuntimeError("stop here")

    monkeypatch.setattr(_torch_ext, "_run_build", failing_build)
    _load_recording_warnings()
    [(script, spec)] = specs
    assert script is _torch_ext._CPP_EXTENSION_BUILD and "with_cuda=False" in script
    assert spec["cflags"] == ["-O2", "-DSMLA_TORCH_EXT_CUDA"]
    assert spec["include_dirs"] == [str(cuda_home / "include")] and spec["libraries"] == ["c10_cuda"]
    assert spec["name"] == os.path.basename(spec["directory"]) and spec["path"].endswith(spec["name"] + ".so")


def test_an_unwritable_cache_directory_is_reported(fresh_loader, monkeypatch):
    torch, cpp_extension = _fake_torch()
    monkeypatch.setitem(sys.modules, "torch", torch)
    blocker = fresh_loader / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv(_torch_ext.ENV_DIRECTORY, str(blocker))
    status, warned = _load_recording_warnings()
    assert status.state == "unavailable" and "cannot create its build directory" in status.reason
    assert "SMLA_TORCH_EXTENSION_DIR" in status.reason and len(warned) == 1


def test_cache_directory_and_build_key(fresh_loader, monkeypatch):
    assert _torch_ext.cache_root() == str(fresh_loader / "cache")
    monkeypatch.delenv(_torch_ext.ENV_DIRECTORY)
    monkeypatch.setenv("XDG_CACHE_HOME", str(fresh_loader / "xdg"))
    assert _torch_ext.cache_root() == str(fresh_loader / "xdg" / "smla" / "torch_extensions")
    torch, _ = _fake_torch()
    key = _torch_ext.build_key(torch, cuda=False)
    assert len(key) == 16 and key == _torch_ext.build_key(torch, cuda=False)
    assert key != _torch_ext.build_key(torch, cuda=True)
    assert key != _torch_ext.build_key(_fake_torch(version="9.9.1")[0], cuda=False)


def test_status_strings():
    loaded = _torch_ext.TorchExtensionStatus("loaded", path="/x/ext.so", build_seconds=12.34, cuda=True)
    assert loaded.loaded and str(loaded) == "loaded (CUDA, built in 12.3 s): /x/ext.so"
    cached = _torch_ext.TorchExtensionStatus("loaded", path="/x/ext.so")
    assert str(cached) == "loaded (CPU tensors only, cached): /x/ext.so"
    assert str(_torch_ext.TorchExtensionStatus("unavailable", "why")) == "unavailable (why)"


def test_the_extension_source_ships_with_the_package():
    assert os.path.isfile(_torch_ext.SOURCE)
    assert _torch_ext.SOURCE.endswith(os.path.join("smla", "_ext", "smla_torch_ext.cpp"))


def test_python_path_blocks_overlapping_in_threads_restore_the_entry_points_once(fresh_loader):
    """Two threads' python_path() blocks that overlap (A enters, B enters, A leaves, B leaves): the Python path
    holds until the last one leaves, and then the extension's entry points are back (the first form put back
    the None that B had saved when A left... and B then restored None for good)."""
    import threading

    run_entry, drop_in_entry = object(), object()
    _torch_ext.plan_run, _torch_ext.drop_in_run = run_entry, drop_in_entry
    a_inside, b_inside, a_left = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def thread_a():
        with _torch_ext.python_path():
            a_inside.set()
            b_inside.wait(5)
        a_left.set()

    def thread_b():
        a_inside.wait(5)
        with _torch_ext.python_path():
            b_inside.set()
            a_left.wait(5)
            seen["inside after A left"] = (_torch_ext.plan_run, _torch_ext.drop_in_run, _torch_ext.suspended)

    threads = [threading.Thread(target=thread_a), threading.Thread(target=thread_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert seen["inside after A left"] == (None, None, True)
    assert (_torch_ext.plan_run, _torch_ext.drop_in_run, _torch_ext.suspended) == (run_entry, drop_in_entry, False)
    with _torch_ext.python_path():  # nested in one thread
        with _torch_ext.python_path():
            pass
        assert _torch_ext.plan_run is None and _torch_ext.suspended
    assert _torch_ext.plan_run is run_entry and not _torch_ext.suspended
