#!/usr/bin/env python3
"""Builds FlashMLA's sm90 sparse FP8 decode as the torch extension `flash_mla.cuda`, for sm_90a only.

    python3 scripts/lib/flashmla_peer/build.py [--peers .peers] [--out .peers/build]
    python3 scripts/lib/flashmla_peer/build.py --compile-check csrc/smxx/decode/combine/combine.cu [...]
    python3 scripts/lib/flashmla_peer/build.py --print-sources

Run through scripts/peer-flashmla-build. The FlashMLA sources and the CUTLASS headers come from the ignored
`.peers/` (scripts/peer-flashmla-fetch); nothing of FlashMLA is part of smla. Only what the sparse decode
entry (FlashMLA's csrc/api/sparse_decode.h) runs on an H100/H200 with DeepSeek-V4's 584-byte records is
compiled: the MODEL1 sm90 instantiations (64 and 128 heads), the split-KV combine and the scheduler
(get_decoding_sched_meta) kernels, plus two files of ours: the Python module (module.cpp, FlashMLA's
sparse_decode_fwd alone) and definitions that raise an error for the kernels the entry can also dispatch to
but this build leaves out (unbuilt_kernels.cpp: sm100, and DeepSeek V3.2's format on sm90).

Output: OUT/flash_mla/ holds FlashMLA's Python package and cuda.<abi>.so: `PYTHONPATH=OUT python3 -c
"import flash_mla"`. The compiler flags are FlashMLA's setup.py flags at the pinned commit, less the
sm_100f target and `--threads` (one target only). `--compile-check` compiles the given FlashMLA kernel
sources with plain nvcc and these flags, without torch (a check of include paths and flags on a machine
without PyTorch's CUDA headers).
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))

# FlashMLA sources (relative to .peers/FlashMLA) for the sm90 sparse decode path.
FLASHMLA_CUDA_SOURCES = [
    "csrc/smxx/decode/get_decoding_sched_meta/get_decoding_sched_meta.cu",
    "csrc/smxx/decode/combine/combine.cu",
    # The h128 instantiation is the longest compile: listed first so that ninja starts it first.
    "csrc/sm90/decode/sparse_fp8/instantiations/model1_persistent_h128.cu",
    "csrc/sm90/decode/sparse_fp8/instantiations/model1_persistent_h64.cu",
]
OWN_SOURCES = [os.path.join(HERE, "module.cpp"), os.path.join(HERE, "unbuilt_kernels.cpp")]

# FlashMLA's setup.py flags; the target is sm_90a only.
CXX_FLAGS = ["-O3", "-std=c++20", "-DNDEBUG", "-Wno-deprecated-declarations"]
NVCC_FLAGS = [
    "-O3", "-std=c++20", "-DNDEBUG", "-D_USE_MATH_DEFINES", "-Wno-deprecated-declarations",
    "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__", "-U__CUDA_NO_HALF2_OPERATORS__",
    "-U__CUDA_NO_BFLOAT16_CONVERSIONS__", "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math",
    "--ptxas-options=-v,--register-usage-level=10,--warn-on-spills,--warn-on-local-memory-usage,"
    "--warn-on-double-precision-use",
    "-lineinfo", "--source-in-ptx",
]
ARCH_FLAGS = ["-gencode", "arch=compute_90a,code=sm_90a"]


def include_dirs(peers):
    """FlashMLA's include directories, in its setup.py's order."""
    flashmla = os.path.join(peers, "FlashMLA")
    cutlass = os.path.join(peers, "cutlass")
    return [os.path.join(flashmla, "csrc"), os.path.join(flashmla, "csrc", "kerutils", "include"),
            os.path.join(flashmla, "csrc", "sm90"), os.path.join(cutlass, "include"),
            os.path.join(cutlass, "tools", "util", "include")]


def check_tree(peers):
    """Every input the build reads, or SystemExit naming the first one missing."""
    flashmla = os.path.join(peers, "FlashMLA")
    needed = [os.path.join(flashmla, source) for source in FLASHMLA_CUDA_SOURCES] + OWN_SOURCES + [
        os.path.join(flashmla, "csrc", "api", "sparse_decode.h"),
        os.path.join(flashmla, "flash_mla", "__init__.py"),
        os.path.join(flashmla, "flash_mla", "flash_mla_interface.py"),
        os.path.join(peers, "cutlass", "include", "cute", "tensor.hpp"),
        os.path.join(peers, "cutlass", "include", "cutlass", "cutlass.h"),
    ]
    for path in needed:
        if not os.path.exists(path):
            raise SystemExit(f"flashmla_peer/build.py: {path} is missing: run scripts/peer-flashmla-fetch (on a "
                             "machine with network access) and carry .peers to the device")


def warn_on_flag_drift(peers):
    """FlashMLA's setup.py is the reference for the flags: say which of ours it no longer has."""
    setup_py = os.path.join(peers, "FlashMLA", "setup.py")
    if not os.path.exists(setup_py):
        return
    with open(setup_py) as handle:
        text = handle.read()
    missing = [flag for flag in CXX_FLAGS + NVCC_FLAGS if flag not in text]
    if "arch=compute_90a,code=sm_90a" not in text:
        missing.append("arch=compute_90a,code=sm_90a")
    if missing:
        print(f"flashmla_peer/build.py: warning: FlashMLA's setup.py no longer lists {missing}; check the flags",
              file=sys.stderr)


def nvcc_path():
    for candidate in (os.environ.get("NVCC"), shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise SystemExit("flashmla_peer/build.py: nvcc not found (PATH, /usr/local/cuda/bin)")


def compile_check(peers, sources, jobs):
    """Compiles FlashMLA kernel sources with plain nvcc and the build's flags (no torch); returns the exit code."""
    from concurrent.futures import ThreadPoolExecutor

    nvcc = nvcc_path()
    out_dir = os.path.join(peers, "build", "compile-check")
    os.makedirs(out_dir, exist_ok=True)

    def run(source):
        path = source if os.path.isabs(source) else os.path.join(peers, "FlashMLA", source)
        command = [nvcc, "-c", path, "-o", os.path.join(out_dir, os.path.basename(path) + ".o"),
                   "-Xcompiler", "-fPIC"] + NVCC_FLAGS + ARCH_FLAGS + [f"-I{d}" for d in include_dirs(peers)]
        start = time.time()
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return command, done, time.time() - start

    status = 0
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for command, done, seconds in pool.map(run, sources):
            print(" ".join(command))
            lines = done.stdout.splitlines()
            shown = lines if done.returncode != 0 else [line for line in lines if "error" in line.lower() or
                                                        "spill" in line.lower() or "registers" in line.lower()]
            print("\n".join(shown))
            print(f"== {os.path.basename(command[2])}: exit {done.returncode}, {seconds:.0f} s", flush=True)
            status = status or done.returncode
    return status


def build(peers, out, jobs):
    """The torch extension flash_mla.cuda in OUT/flash_mla/, FlashMLA's Python package beside it."""
    import setuptools  # noqa: F401 - torch's BuildExtension needs setuptools' build_ext
    from setuptools import setup
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CUDAExtension, is_ninja_available

    import torch

    if torch.version.cuda is None or CUDA_HOME is None:
        raise SystemExit(f"flashmla_peer/build.py: needs PyTorch built with CUDA (torch {torch.__version__}, CUDA "
                         f"{torch.version.cuda}) and a CUDA toolkit (CUDA_HOME={CUDA_HOME}; set CUDA_HOME or put nvcc "
                         "on PATH)")
    os.environ["MAX_JOBS"] = str(jobs)
    # ninja may come with this interpreter's environment (pip's ninja) without being on PATH.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    if not is_ninja_available():
        print("flashmla_peer/build.py: warning: ninja not found, the sources compile one after another",
              file=sys.stderr)
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "9.0a")  # unused: the nvcc flags name the target
    flashmla = os.path.join(peers, "FlashMLA")
    sources = [os.path.join(flashmla, source) for source in FLASHMLA_CUDA_SOURCES] + OWN_SOURCES
    extension = CUDAExtension(
        name="flash_mla.cuda", sources=sources, include_dirs=include_dirs(peers),
        extra_compile_args={"cxx": CXX_FLAGS, "nvcc": NVCC_FLAGS + ARCH_FLAGS})
    package = os.path.join(out, "flash_mla")
    os.makedirs(package, exist_ok=True)
    for name in os.listdir(os.path.join(flashmla, "flash_mla")):
        if name.endswith(".py"):
            shutil.copy2(os.path.join(flashmla, "flash_mla", name), os.path.join(package, name))
    start = time.time()
    setup(name="flash_mla_peer_build", ext_modules=[extension], cmdclass={"build_ext": BuildExtension},
          script_args=["-q", "build_ext", "--build-lib", out, "--build-temp", os.path.join(out, "obj")])
    built = [name for name in os.listdir(package) if name.startswith("cuda") and name.endswith(".so")]
    if not built:
        raise SystemExit(f"flashmla_peer/build.py: no cuda*.so in {package} after the build")
    print(f"flashmla_peer/build.py: built {os.path.join(package, built[0])} in {time.time() - start:.1f} s "
          f"({len(sources)} sources, MAX_JOBS={jobs}, CUDA_HOME={CUDA_HOME})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", default=os.path.join(REPO, ".peers"), help="the fetched peers (default .peers)")
    parser.add_argument("--out", default=None, help="build directory (default PEERS/build)")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MAX_JOBS") or os.cpu_count() or 4))
    parser.add_argument("--compile-check", nargs="+", metavar="SOURCE", default=None,
                        help="compile these FlashMLA .cu files (paths under PEERS/FlashMLA) with plain nvcc")
    parser.add_argument("--print-sources", action="store_true", help="list the sources and flags, build nothing")
    options = parser.parse_args()
    peers = os.path.abspath(options.peers)
    if options.print_sources:
        print("\n".join(FLASHMLA_CUDA_SOURCES + [os.path.relpath(path, REPO) for path in OWN_SOURCES]))
        print("cxx:", " ".join(CXX_FLAGS))
        print("nvcc:", " ".join(NVCC_FLAGS + ARCH_FLAGS))
        print("include:", " ".join(os.path.relpath(path, REPO) for path in include_dirs(peers)))
        return 0
    check_tree(peers)
    warn_on_flag_drift(peers)
    if options.compile_check:
        return compile_check(peers, options.compile_check, max(1, options.jobs))
    build(peers, os.path.abspath(options.out or os.path.join(peers, "build")), max(1, options.jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
