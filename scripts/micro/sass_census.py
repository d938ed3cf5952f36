#!/usr/bin/env python3
"""Instruction census of a kernel's cubin without a disassembler (this machine has no cuobjdump/nvdisasm).

The opcode of a Hopper / Blackwell instruction sits in the low 12 bits of its first 64-bit word. An opcode
table built from `cuobjdump -sass` dumps made on the device machine (--build-map) names them here, so a
cubin compiled on this machine can be counted: instructions, HMMAs, and between the first and the last HMMA
(where the mma.sync kernels' tile loop lies) the instructions and the register moves (MOV, IMAD.MOV.U32);
for a cubin also its shared-memory loads and stores by access width (SHARED_ACCESS_KINDS below).
A key can stand for several mnemonics of one family (ISETP.GE / ISETP.NE ...); the table keeps the most
frequent, which is enough for counting classes. The table here (sass_opcodes_sm90a.json) comes from four
sm_90a dumps of the mma99-h32 kernel (2026-12-03); other architectures need their own. docs/perf.md ("The tile loop's SASS", v64) shows the use:
the moves that v64's Q loads cost every tile.

  # on the device machine: cuobjdump -sass a.cubin > a.sass (any number of dumps)
  scripts/micro/sass_census.py --build-map scripts/micro/sass_opcodes_sm90a.json a.sass b.sass
  # here:
  nvcc -std=c++20 -O3 -gencode arch=compute_90a,code=sm_90a -Iinclude -Isrc -cubin -o x.cubin \\
      src/cuda/decode/instantiations/compact32.cu
  scripts/micro/sass_census.py x.cubin [more.cubin ...]
  # a dump counts with its own mnemonics (scripts/ab-bench run --sass writes them):
  scripts/micro/sass_census.py base.sass
"""

import argparse
import collections
import json
import os
import re
import struct
import sys

DEFAULT_MAP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sass_opcodes_sm90a.json")
MOVES = ("MOV", "IMAD.MOV.U32")
DUMP_LINE = re.compile(r"\s+/\*([0-9a-f]{4,6})\*/\s+(.*?)\s*;\s+/\* 0x([0-9a-f]{16}) \*/")


def opcode_key(first_word):
    return first_word & 0xFFF


def dump_instructions(text):
    """(first word, mnemonic) of every instruction of a cuobjdump -sass dump; guards (@P0) dropped."""
    out = []
    for line in text.splitlines():
        m = DUMP_LINE.match(line)
        if m:
            body = re.sub(r"^@!?U?P\w+\s+", "", m.group(2).strip())
            out.append((int(m.group(3), 16), body.split()[0]))
    return out


def build_map(texts):
    """Opcode key -> most frequent mnemonic over the dumps."""
    counts = collections.defaultdict(collections.Counter)
    for text in texts:
        for word, mnemonic in dump_instructions(text):
            counts[opcode_key(word)][mnemonic] += 1
    return {"%03x" % key: c.most_common(1)[0][0] for key, c in sorted(counts.items())}


def elf_sections(data):
    """(name, offset, size) of a 64-bit little-endian ELF's sections."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names_offset = headers[shstrndx][4]

    def name(offset):
        end = data.index(b"\0", names_offset + offset)
        return data[names_offset + offset:end].decode()

    return [(name(h[0]), h[4], h[5]) for h in headers]


def kernel_instructions(data):
    """{kernel section name: [(first word, second word)]} of the cubin's .text.* sections (16-byte
    instructions)."""
    out = {}
    for name, offset, size in elf_sections(data):
        if name.startswith(".text."):
            out[name[len(".text."):]] = [struct.unpack_from("<QQ", data, offset + i) for i in range(0, size, 16)]
    return out


# Shared-memory loads and stores on sm_90a, by opcode key (register and uniform-register address forms), and
# their access width: bits 9-11 of the second word, 0 / 1 / 2 / 3 = U8 / S8 / U16 / S16, 4 / 5 / 6 = 32 / 64
# / 128 bits (read from cubins of st.shared / ld.shared of each width compiled with CUDA 13.0, 2026-12-05).
# The opcode table names both STS keys "STS.64", its most frequent form, so the width has to come from here.
SHARED_ACCESS_KINDS = {0x388: "STS", 0x988: "STS", 0x984: "LDS"}
SHARED_ACCESS_WIDTHS = {0: "U8", 1: "S8", 2: "U16", 3: "S16", 4: "32", 5: "64", 6: "128"}


def shared_access_widths(instructions):
    """{"STS.128": n, "LDS.32": n, ...} over a kernel's (first word, second word) pairs; a width field this
    table does not know counts as e.g. "STS.w7"."""
    counts = collections.Counter()
    for first, second in instructions:
        kind = SHARED_ACCESS_KINDS.get(opcode_key(first))
        if kind:
            field = (second >> 9) & 7
            counts["%s.%s" % (kind, SHARED_ACCESS_WIDTHS.get(field, "w%d" % field))] += 1
    return dict(sorted(counts.items()))


def dump_functions(text):
    """{function: [mnemonics]} of a cuobjdump -sass dump (the sections after each "Function : name"); a
    function compiled for several architectures is named name@sm_XX."""
    out, current, arch = {}, None, ""
    for line in text.splitlines():
        target = re.match(r"\s*code for (sm_\w+)", line)
        if target:
            arch = target.group(1)
            continue
        function = re.match(r"\s*Function : (\S+)", line)
        if function:
            current = function.group(1) + ("@" + arch if arch else "")
            out[current] = []
            continue
        m = DUMP_LINE.match(line)
        if m and current is not None:
            out[current].append(re.sub(r"^@!?U?P\w+\s+", "", m.group(2).strip()).split()[0])
    return out


def census(words, opcode_map):
    """Counts of one kernel: instructions, HMMAs, and the first-to-last HMMA span's size, moves, opcodes."""
    names = [opcode_map.get("%03x" % opcode_key(w), "?%03x" % opcode_key(w)) for w in words]
    return census_of_names(names)


def census_of_names(names):
    """census() of a kernel's mnemonics."""
    hmma = [i for i, n in enumerate(names) if n.startswith("HMMA")]
    result = {"instructions": len(names), "hmma": len(hmma), "span": 0, "span_moves": 0, "span_opcodes": {}}
    if hmma:
        span = names[hmma[0]:hmma[-1] + 1]
        result["span"] = len(span)
        result["span_moves"] = sum(1 for n in span if n in MOVES)
        result["span_opcodes"] = dict(collections.Counter(span).most_common(12))
    return result


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build-map", metavar="JSON", help="write the opcode table from the given dumps")
    parser.add_argument("--map", default=DEFAULT_MAP, help="opcode table (default: %(default)s)")
    parser.add_argument("files", nargs="+", help="cuobjdump -sass dumps (--build-map), or cubins and dumps to count")
    args = parser.parse_args(argv)
    if args.build_map:
        texts = [open(path).read() for path in args.files]
        table = build_map(texts)
        with open(args.build_map, "w") as f:
            json.dump(table, f, indent=0, sort_keys=True)
            f.write("\n")
        print("%d opcodes from %d dumps -> %s" % (len(table), len(texts), args.build_map))
        return 0
    opcode_map = None
    for path in args.files:
        with open(path, "rb") as f:
            data = f.read()
        if data[:4] == b"\x7fELF":
            if opcode_map is None:
                with open(args.map) as f:
                    opcode_map = json.load(f)
            counts = {}
            for k, w in kernel_instructions(data).items():
                counts[k] = census([first for first, _ in w], opcode_map)
                counts[k]["shared_widths"] = shared_access_widths(w)
        else:  # a cuobjdump -sass dump: its own mnemonics
            counts = {k: census_of_names(n) for k, n in dump_functions(data.decode(errors="replace")).items()}
        for kernel, c in sorted(counts.items()):
            print(census_line(os.path.basename(path), kernel, c))
    return 0


def census_line(label, kernel, c):
    line = "%s %s: %d instructions, %d HMMA; first to last HMMA: %d instructions, %d moves; %s" % (
        label, kernel, c["instructions"], c["hmma"], c["span"], c["span_moves"],
        " ".join("%s:%d" % kv for kv in c["span_opcodes"].items()))
    if "shared_widths" in c:  # cubins only (a dump's mnemonics carry the width themselves)
        line += "; shared memory " + " ".join("%s:%d" % kv for kv in c["shared_widths"].items())
    return line


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
