#!/usr/bin/env python3
"""Host time of one eager decode call (issue 15): smla's FlashMLA drop-in, Plan.run with preallocated
outputs, the C++ API (smla-eager-overhead), and FlashMLA's flash_mla_with_kvcache when `flash_mla` is
importable. The two smla paths are timed twice: through the torch extension (smla/_torch_ext.py, loaded
first so that its build is not timed) and through the Python path it replaces.

    PYTHONPATH=python python3 bench/eager_overhead.py [--cpp build/smla-eager-overhead] [--calls 500]
        [--repeats 5] [--shapes flash-c4:1,flash-c4:64,pro-c4:1] [--device cpu]

Method: torch CUDA tensors, the named shapes (main cache P=64 with topk 128, extra cache P=64), full
lengths; `calls` back-to-back calls on torch's current stream, host wall time per call, best of `repeats`
(the device is synchronized only between repeats). "bindings only": the same calls with the library call
replaced by one that returns at once, i.e. the host time of Python (and of the extension) alone. Without a
GPU (or with --device cpu) it measures the CPU backend with lengths 0 (torch CPU tensors when PyTorch is
importable, else NumPy inputs, which the extension does not take), a smoke test whose figures include the
CPU backend's own cost and are not comparable to the GPU ones; it says so in its output.
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "python"))

import smla  # noqa: E402
from smla import _torch_ext, flashmla_compat  # noqa: E402

# name: (heads, topk, extra_topk, main P, extra P), as in smla-bench and bench/eager/eager_overhead.cpp
SHAPES = {"flash-c4": (64, 128, 512, 64, 64), "flash-swa": (64, 128, 0, 64, 64), "pro-c4": (128, 128, 1024, 64, 64)}


def parse_shapes(text):
    shapes = []
    for item in text.split(","):
        name, _, batch = item.partition(":")
        if name not in SHAPES:
            raise SystemExit(f"eager_overhead: unknown shape {item!r} (one of {', '.join(SHAPES)}, with :batch)")
        shapes.append((name, int(batch or 1)))
    return shapes


def best_us_per_call(function, calls, repeats, synchronize):
    for _ in range(min(calls, 20)):  # warm-up: plans, signatures, first-launch costs
        function()
    synchronize()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
        synchronize()
    return best


class Inputs:
    """One decode call's tensors: torch CUDA tensors on a GPU; on the CPU (lengths 0) torch CPU tensors, or
    NumPy arrays without torch."""

    def __init__(self, name, batch, torch, device):
        heads, topk, extra_topk, main_page, extra_page = SHAPES[name]
        self.shape = (batch, 1, heads, topk, extra_topk)
        def rows(width):  # distinct slot ids 0.. for [b, 1, width]
            return np.arange(batch * max(width, 1), dtype=np.int32).reshape(batch, 1, max(width, 1))

        main_pool = smla.allocate_cache(-(-batch * topk // main_page), main_page)
        extra_pool = smla.allocate_cache(max(1, -(-batch * extra_topk // extra_page)), extra_page)
        full = device != "cpu"
        arrays = dict(q=np.zeros((batch, 1, heads, 512), np.uint16), indices=rows(topk),
                      topk_length=np.full((batch,), topk if full else 0, np.int32), extra_indices=rows(extra_topk),
                      extra_topk_length=np.full((batch,), extra_topk if full else 0, np.int32),
                      attn_sink=np.zeros((heads,), np.float32))
        if torch is None:
            self.tensors = arrays
            self.main_pool, self.extra_pool = main_pool, extra_pool
            self.out = np.zeros((batch, 1, heads, 512), np.uint16)
            self.lse = np.zeros((batch, 1, heads), np.float32)
        else:
            to = lambda array: torch.from_numpy(array).to(device)  # noqa: E731
            self.tensors = {key: to(value) for key, value in arrays.items() if key != "q"}
            self.tensors["q"] = torch.zeros((batch, 1, heads, 512), dtype=torch.bfloat16, device=device)
            self.main_pool, self.extra_pool = to(main_pool), to(extra_pool)
            self.out = torch.zeros((batch, 1, heads, 512), dtype=torch.bfloat16, device=device)
            self.lse = torch.zeros((batch, 1, heads), dtype=torch.float32, device=device)
        self.main_view = self._view(self.main_pool, main_page)
        self.extra_view = self._view(self.extra_pool, extra_page)
        if extra_topk == 0:
            self.tensors["extra_indices"] = self.tensors["extra_topk_length"] = self.extra_view = None

    @staticmethod
    def _view(pool, page_block_size):
        if isinstance(pool, np.ndarray):
            return np.lib.stride_tricks.as_strided(pool, shape=(pool.shape[0], page_block_size, 1, 584),
                                                   strides=(pool.strides[0], 584, 584, 1))
        return pool.as_strided((pool.shape[0], page_block_size, 1, 584), (pool.stride(0), 584, 584, 1))


def flashmla_row(flash_mla, torch, inputs, calls, repeats, synchronize):
    """FlashMLA's host time on the same tensors; its caches as uint8 views, else as float8_e4m3fn views."""
    t = inputs.tensors
    views = [(inputs.main_view, inputs.extra_view)]
    if hasattr(torch, "float8_e4m3fn"):
        views.append(tuple(None if view is None else view.view(torch.float8_e4m3fn)
                           for view in (inputs.main_view, inputs.extra_view)))
    for attempt, (main_view, extra_view) in enumerate(views):
        meta, _ = flash_mla.get_mla_metadata()

        def call():
            return flash_mla.flash_mla_with_kvcache(
                t["q"], main_view, None, None, 512, meta, None, is_fp8_kvcache=True, indices=t["indices"],
                attn_sink=t["attn_sink"], extra_k_cache=extra_view, extra_indices_in_kvcache=t["extra_indices"],
                topk_length=t["topk_length"], extra_topk_length=t["extra_topk_length"])

        try:
            return best_us_per_call(call, calls, repeats, synchronize)
        except Exception:  # noqa: BLE001 - try the next cache dtype, report the last failure
            if attempt == len(views) - 1:
                raise


def python_only_us(calls_to_time, calls, repeats):
    """Host us per call of each function on the Python path with smla_decode_run replaced by a no-op
    (nothing is launched)."""
    from smla import _lib

    library = _lib.library()
    real = library.smla_decode_run_packed
    library.smla_decode_run_packed = lambda *arguments: 0
    try:
        return [best_us_per_call(function, calls, repeats, lambda: None) for function in calls_to_time]
    finally:
        library.smla_decode_run_packed = real


def extension_only_us(calls_to_time, calls, repeats):
    """The same through the torch extension, which then calls a C function that returns at once."""
    with _torch_ext.no_op_library():
        return [best_us_per_call(function, calls, repeats, lambda: None) for function in calls_to_time]


def cpp_rows(binary, shapes, calls, repeats, backend):
    """{(name, batch): {field: value}} from smla-eager-overhead (run_us, validate_us and the breakdown), or a
    reason string."""
    if binary is None or not os.path.exists(binary):
        return f"not built ({binary or 'pass --cpp'}; cmake --build build --target smla-eager-overhead)"
    command = [binary, "--backend", backend, "--calls", str(calls), "--repeats", str(repeats),
               "--shapes", ",".join(f"{name}:{batch}" for name, batch in shapes)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return f"failed: {done.stderr.strip() or done.stdout.strip()}"
    rows = {}
    for line in done.stdout.splitlines():
        fields = dict(item.split("=", 1) for item in line.split() if "=" in item)
        rows[(fields["shape"], int(fields["b"]))] = {key: float(value) for key, value in fields.items()
                                                     if key.endswith("_us")}
    return rows


def cpp_breakdown(name, batch, row):
    """One line saying where the C++ call's host time goes (smla-eager-overhead's breakdown fields)."""
    if "run_burst16_us" not in row:
        return None
    return (f"# C++ {name} b={batch}: run {row['run_us']:.1f} us = validate {row['validate_us']:.2f} (of which the "
            f"pointers' memory-space queries {row['pointer_queries_us']:.2f}) + launches and the rest "
            f"{row['run_us'] - row['validate_us']:.1f}; SMLA_DEBUG_CHECKS and current-device lookups "
            f"{row['lookups_us']:.2f}; in bursts of 16 calls (shallow launch queue): {row['run_burst16_us']:.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="flash-c4:1,flash-c4:64,pro-c4:1",
                        help="SHAPE:BATCH list (default: %(default)s)")
    parser.add_argument("--calls", type=int, default=500, help="back-to-back calls a timing (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="timings a path, the best kept (default: %(default)s)")
    parser.add_argument("--cpp", default=None, help="path of smla-eager-overhead (default: newest build*/)")
    parser.add_argument("--device", default=None, help="cuda:N (default when a GPU is usable) or cpu")
    options = parser.parse_args()
    shapes = parse_shapes(options.shapes)
    if options.cpp is None:
        import glob

        built = sorted(glob.glob(os.path.join(REPO, "build*", "smla-eager-overhead")), key=os.path.getmtime)
        options.cpp = built[-1] if built else None

    torch = None
    if os.environ.get("SMLA_NO_TORCH") != "1":
        try:
            import torch
        except ImportError:
            torch = None
    on_gpu = (options.device != "cpu" and torch is not None and torch.cuda.is_available()
              and smla.cuda_available())
    if options.device not in (None, "cpu") and not on_gpu:
        raise SystemExit(f"eager_overhead: --device {options.device} needs PyTorch with a CUDA device usable by smla")
    device = (options.device or "cuda:0") if on_gpu else "cpu"
    if on_gpu:
        synchronize = torch.cuda.synchronize
        where = f"{torch.cuda.get_device_name(device)} ({device}), torch {torch.__version__}, torch CUDA tensors"
        backend = "auto"
        torch.cuda.set_device(device)
    else:
        synchronize = lambda: None  # noqa: E731
        inputs_kind = "torch CPU tensors" if torch is not None else "NumPy inputs"
        where = (f"CPU backend ({inputs_kind}, lengths 0): a smoke test; the figures include the CPU backend's own "
                 "per-call cost and are not comparable to GPU figures")
        backend = "cpu"

    flash_mla, flashmla_note = None, "not importable, row skipped"
    if on_gpu:
        try:
            import flash_mla
            flashmla_note = f"{getattr(flash_mla, '__file__', 'flash_mla')}"
        except Exception as error:  # not installed, or an extension built for another torch/CUDA
            flashmla_note = f"not importable ({type(error).__name__}: {str(error).splitlines()[0][:100]}), row skipped"
    # The extension is built (once per version) and loaded before anything is timed.
    if torch is not None:
        extension = smla.load_torch_extension()
        extension_note = str(extension)
    else:
        extension, extension_note = None, "not used (no PyTorch: NumPy inputs)"
    print(f"# eager host time per call, us (best of {options.repeats} x {options.calls} back-to-back calls): {where}")
    print(f"# smla {smla.version()} ({smla.library_path()}); FlashMLA: {flashmla_note}")
    print(f"# torch extension: {extension_note}")
    cpp = cpp_rows(options.cpp, shapes, options.calls, options.repeats, backend)
    if isinstance(cpp, str):
        print(f"# C++ API (smla-eager-overhead): {cpp}")
    # "bindings only": the same calls with the library call replaced by a no-op, i.e. the bindings' own share.
    header = ["shape", "b", "h", "topk+extra", "path", "drop-in", "Plan.run (prealloc out)", "C++ smla::run",
              "C++ validate only", "FlashMLA", "drop-in, bindings only", "Plan.run, bindings only"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, batch in shapes:
        inputs = Inputs(name, batch, torch, device)
        t = inputs.tensors
        b, s_q, heads, topk, extra_topk = inputs.shape
        plan = smla.plan(b, s_q, heads, topk, extra_topk=extra_topk, backend=backend, device=device)
        extra_cache = None if extra_topk == 0 else inputs.extra_view
        meta, _ = flashmla_compat.get_mla_metadata()

        def drop_in():
            return flashmla_compat.flash_mla_with_kvcache(
                t["q"], inputs.main_view, None, None, 512, meta, None, is_fp8_kvcache=True, indices=t["indices"],
                attn_sink=t["attn_sink"], extra_k_cache=extra_cache, extra_indices_in_kvcache=t["extra_indices"],
                topk_length=t["topk_length"], extra_topk_length=t["extra_topk_length"])

        def plan_run():
            return plan.run(t["q"], inputs.main_view, t["indices"], t["topk_length"], extra_cache, t["extra_indices"],
                            t["extra_topk_length"], t["attn_sink"], out=inputs.out, lse=inputs.lse)

        cpp_run, cpp_validate = ("n/a", "n/a") if isinstance(cpp, str) else (
            f"{cpp[(name, batch)]['run_us']:.1f}", f"{cpp[(name, batch)]['validate_us']:.2f}")
        flashmla_us = "n/a"
        if flash_mla is not None:
            try:
                flashmla_us = flashmla_row(flash_mla, torch, inputs, options.calls, options.repeats, synchronize)
                flashmla_us = f"{flashmla_us:.1f}"
            except Exception as error:  # a FlashMLA build without this mode: say why, keep the other rows
                flashmla_us = f"failed ({type(error).__name__}: {str(error).splitlines()[0][:80]})"
        rows = []
        if extension is not None and extension.loaded and (extension.cuda or not on_gpu):
            drop_in_us = best_us_per_call(drop_in, options.calls, options.repeats, synchronize)
            plan_us = best_us_per_call(plan_run, options.calls, options.repeats, synchronize)
            rows.append(("extension", drop_in_us, plan_us, extension_only_us([drop_in, plan_run], options.calls,
                                                                             options.repeats)))
        elif extension is not None:
            rows.append(("extension", None, None, None))
        with _torch_ext.python_path():
            drop_in_us = best_us_per_call(drop_in, options.calls, options.repeats, synchronize)
            plan_us = best_us_per_call(plan_run, options.calls, options.repeats, synchronize)
            rows.append(("Python", drop_in_us, plan_us, python_only_us([drop_in, plan_run], options.calls,
                                                                       options.repeats)))
        for path, drop_in_us, plan_us, bindings_only in rows:
            if drop_in_us is None:
                cells = ["n/a (not loaded)"] * 2 + [cpp_run, cpp_validate, flashmla_us] + ["n/a"] * 2
            else:
                cells = [f"{drop_in_us:.1f}", f"{plan_us:.1f}", cpp_run, cpp_validate, flashmla_us,
                         f"{bindings_only[0]:.1f}", f"{bindings_only[1]:.1f}"]
            print(f"| {name} | {batch} | {heads} | {topk}+{extra_topk} | {path} | " + " | ".join(cells) + " |")
        sys.stdout.flush()
    if extension is not None and extension.loaded:
        print(f"# torch extension calls (hits ran in it, misses went to Python): {_torch_ext.counters()}")
    if not isinstance(cpp, str):
        for name, batch in shapes:
            line = cpp_breakdown(name, batch, cpp[(name, batch)])
            if line:
                print(line)


if __name__ == "__main__":
    main()
