#!/usr/bin/env python3
"""Where a kernel's main loop waits for its global loads, read from an sm_90a cubin without cuobjdump.

  nvcc -std=c++20 -O3 -DNDEBUG --expt-relaxed-constexpr -arch=sm_90a -Iinclude -Isrc -cubin -o x.cubin \\
      src/cuda/decode/instantiations/compact32.cu
  scripts/micro/load_waits.py x.cubin [KERNEL_NAME_SUBSTRING]

For each tile loop (a guarded backward branch over at least 100 instructions) it prints each global load
(LDG, LD), the scoreboard it sets when its data lands, and the first instruction of the loop after it that
waits on that scoreboard. A scoreboard counts every load outstanding on it, so a wait a few instructions
after a load that is meant to be used a tile later waits for that load too: v114 (docs/perf.md) lost 60 %
that way, and the check here would have shown it before its device call.

The scheduling control sits in an instruction's second 64-bit word from bit 41: stall (4 bits), yield (1),
the scoreboard set when the result lands (3 bits, 7 = none), the one set when the operands are read (3),
and the mask of scoreboards waited on (6). A branch's signed offset from the next instruction has its bits
8 and up in bits 32-63 of the first word and its bits 2-9 in bits 16-23; the guard predicate is bits 12-15
(7 = none). All of this was read off `cuobjdump -sass` dumps of our kernels (2026-12-07). The cubin reader
and the opcode names are sass_census.py's (sm_90a only).
"""

import importlib.util
import json
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("sass_census", os.path.join(_HERE, "sass_census.py"))
sass_census = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sass_census)

NO_SCOREBOARD = 7
NO_GUARD = 7
# Loads from global memory by opcode key: LDG, and LD (generic addressing; not in the dumps' table).
GLOBAL_LOADS = {0x981: "LDG", 0x980: "LD"}
BRANCH = 0x947
MIN_LOOP_INSTRUCTIONS = 100  # shorter loops are the prologue's and the epilogue's, not a tile loop


def decode(words, opcode_map):
    """The fields this check reads, for each (first word, second word) of a kernel."""
    out = []
    for index, (first, second) in enumerate(words):
        control = second >> 41
        key = sass_census.opcode_key(first)
        out.append({
            "address": 16 * index, "first": first, "key": key,
            "name": GLOBAL_LOADS.get(key) or opcode_map.get("%03x" % key, "?%03x" % key).split(".")[0],
            "guard": (first >> 12) & 0xF, "sets": (control >> 5) & 7, "waits": (control >> 11) & 0x3F,
        })
    return out


def branch_target(instruction):
    upper = (instruction["first"] >> 32) & 0xFFFFFFFF
    if upper >> 31:
        upper -= 1 << 32
    return instruction["address"] + 16 + (upper << 8) + ((instruction["first"] >> 16) & 0xFF) * 4


def loops(instructions, min_instructions=MIN_LOOP_INSTRUCTIONS):
    """(first, last) addresses of the tile loops: guarded backward branches over at least min_instructions
    (a kernel may hold one per code path, e.g. v115's two gathers); unguarded backward branches are the
    out-of-line paths' returns (a divergent shuffle's fallback), not loops."""
    found = set()
    for instruction in instructions:
        if instruction["key"] == BRANCH and instruction["guard"] != NO_GUARD:
            target, end = branch_target(instruction), instruction["address"]
            if target < end and (end - target) // 16 >= min_instructions:
                found.add((target, end))
    return sorted(found)


def load_waits(instructions, loop):
    """[(load, first waiting instruction of the loop after it, or None)] for the loop's global loads."""
    body = [i for i in instructions if loop[0] <= i["address"] <= loop[1]]
    out = []
    for k, load in enumerate(body):
        if load["key"] in GLOBAL_LOADS and load["sets"] != NO_SCOREBOARD:
            waiter = next((i for i in body[k + 1:] if i["waits"] >> load["sets"] & 1), None)
            out.append((load, waiter))
    return out


def report_lines(kernel, instructions):
    found = loops(instructions)
    if not found:
        return [kernel, "  no guarded backward branch over %d instructions" % MIN_LOOP_INSTRUCTIONS]
    lines = [kernel]
    for loop in found:
        lines.append("  loop %#x..%#x" % loop)
        for load, waiter in load_waits(instructions, loop):
            if waiter is None:
                where = "no wait after it inside the loop (its data is used from the next pass on)"
            else:
                where = "first wait %d instructions later, at %#x (%s)" % (
                    (waiter["address"] - load["address"]) // 16, waiter["address"], waiter["name"])
            lines.append("    %s at %#x sets SB%d: %s" % (load["name"], load["address"], load["sets"], where))
    return lines


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(argv) >= 2 else 2
    with open(sass_census.DEFAULT_MAP) as f:
        opcode_map = json.load(f)
    with open(argv[1], "rb") as f:
        kernels = sass_census.kernel_instructions(f.read())
    wanted = argv[2] if len(argv) > 2 else ""
    matched = [name for name in kernels if wanted in name]
    if not matched:
        print("no kernel matching %r in %s" % (wanted, argv[1]), file=sys.stderr)
        return 1
    for name in matched:
        print("\n".join(report_lines(name, decode(kernels[name], opcode_map))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
