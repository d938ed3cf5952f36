#!/usr/bin/env python3
"""Checks that every CUDA translation unit of the library is compiled to native code for each named
architecture (and to PTX where asked), from the build's compile_commands.json. It stands in for
`cuobjdump --list-elf libsmla.so` on machines without cuobjdump (CI); scripts/gpu-check runs cuobjdump.

    check_cuda_archs.py COMPILE_COMMANDS.json SOURCE_DIR sm_80 sm_86 ... [compute_120]
"""
import json
import os
import re
import sys


def targets_of(command):
    """(native, ptx) architecture sets of one nvcc command line (-gencode / --generate-code forms)."""
    native, ptx = set(), set()
    for code in re.findall(r"(?:-gencode[= ]|--generate-code=)\S*?code=\[?([^\s\]]+)\]?", command):
        for target in code.split(","):
            (native if target.startswith("sm_") else ptx).add(target)
    for arch in re.findall(r"-arch=(sm_\w+)", command):
        native.add(arch)
    return native, ptx


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    path, source_dir, wanted = argv[1], os.path.realpath(argv[2]), argv[3:]
    with open(path) as handle:
        entries = json.load(handle)
    library_units = [e for e in entries if e["file"].endswith(".cu")
                     and os.path.realpath(e["file"]).startswith(os.path.join(source_dir, "src") + os.sep)]
    if not library_units:
        print(f"check_cuda_archs: no library .cu files in {path}", file=sys.stderr)
        return 1
    failures = 0
    for entry in library_units:
        native, ptx = targets_of(entry.get("command") or " ".join(entry.get("arguments", [])))
        missing = [w for w in wanted if w not in (native if w.startswith("sm_") else ptx)]
        if missing:
            failures += 1
            print(f"{os.path.relpath(entry['file'], source_dir)}: missing {' '.join(missing)} "
                  f"(native: {' '.join(sorted(native))}; ptx: {' '.join(sorted(ptx))})")
    print(f"check_cuda_archs: {len(library_units)} library CUDA files, {failures} missing targets "
          f"of {' '.join(wanted)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
