"""scripts/micro/sass_census.py: the opcode table from dumps, the ELF reader and the census (no GPU needed)."""

import importlib.util
import json
import os
import struct

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "micro", "sass_census.py")

spec = importlib.util.spec_from_file_location("sass_census", SCRIPT)
sass_census = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sass_census)

HMMA, MOV, FMUL = 0x23C, 0x802, 0x220


def dump_line(address, text, word):
    return "        /*%04x*/  %s ;  /* 0x%016x */" % (address, text, word)


def test_map_takes_the_most_frequent_mnemonic_and_drops_guards():
    dump = "\n".join([
        dump_line(0x00, "HMMA.16816.F32.BF16 R4, R8, R12, RZ", 0x000000A028AC0000 | HMMA),
        dump_line(0x10, "@!P0 IMAD.MOV.U32 R1, RZ, RZ, R2", 0x1000 | MOV),
        dump_line(0x20, "MOV R1, R2", 0x2000 | MOV),
        dump_line(0x30, "MOV R3, R4", 0x3000 | MOV),
        "                                         /* 0x000fe200000418ff */",
    ])
    table = sass_census.build_map([dump])
    assert table == {"%03x" % HMMA: "HMMA.16816.F32.BF16", "%03x" % MOV: "MOV"}


def test_census_counts_the_span_between_the_first_and_last_hmma():
    table = {"%03x" % HMMA: "HMMA.16816.F32.BF16", "%03x" % MOV: "MOV", "%03x" % FMUL: "FMUL"}
    words = [MOV, HMMA, MOV, FMUL, 0x7FF, HMMA, MOV]
    c = sass_census.census(words, table)
    assert (c["instructions"], c["hmma"], c["span"], c["span_moves"]) == (7, 2, 5, 1)
    assert c["span_opcodes"]["?7ff"] == 1
    assert sass_census.census([MOV], table)["span"] == 0


def minimal_elf(sections):
    """A 64-bit little-endian ELF holding `sections` (name, bytes) and a section-name table."""
    names = b"\0" + b"".join(n.encode() + b"\0" for n, _ in sections) + b".shstrtab\0"
    body = b"".join(data for _, data in sections)
    data_offset = 64
    names_offset = data_offset + len(body)
    shoff = names_offset + len(names)
    header = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header += struct.pack("<HHIQQQIHHHHHH", 2, 190, 1, 0, 0, shoff, 0, 64, 0, 0, 64, len(sections) + 2,
                          len(sections) + 1)
    shdrs = [struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)]
    name_at, offset = 1, data_offset
    for name, blob in sections:
        shdrs.append(struct.pack("<IIQQQQIIQQ", name_at, 1, 0, 0, offset, len(blob), 0, 0, 16, 0))
        name_at += len(name) + 1
        offset += len(blob)
    shdrs.append(struct.pack("<IIQQQQIIQQ", name_at, 3, 0, 0, names_offset, len(names), 0, 0, 1, 0))
    return header + body + names + b"".join(shdrs)


def test_kernel_instructions_reads_both_words_of_each_instruction():
    text = b"".join(struct.pack("<QQ", w, 0xFFFF) for w in (HMMA, MOV, HMMA))
    elf = minimal_elf([(".nv.info", b"\1" * 8), (".text.kernel_a", text)])
    assert sass_census.kernel_instructions(elf) == {"kernel_a": [(HMMA, 0xFFFF), (MOV, 0xFFFF), (HMMA, 0xFFFF)]}


def test_committed_table_names_the_mma_and_move_opcodes():
    assert sass_census.build_map([]) == {}
    with open(sass_census.DEFAULT_MAP) as f:
        committed = json.load(f)
    assert committed["%03x" % HMMA].startswith("HMMA")
    assert "MOV" in committed.values() and "IMAD.MOV.U32" in committed.values()


# Shared-memory accesses as ptxas (CUDA 13.0) encoded them for sm_90a: st.shared / ld.shared .u32, .v2.u32 and
# .v4.u32 (first word, second word).
STS_32 = (0x0000000405007388, 0x000FE80000000800)
STS_64 = (0x0000000600007388, 0x000FE80000000A00)
STS_128 = (0x0000000400007388, 0x000FE80000000C00)
LDS_32 = (0x00000004FF057984, 0x000E620008000800)
LDS_128 = (0x00000004FF047984, 0x000E220008000C00)


def test_shared_access_widths_reads_the_width_field():
    widths = sass_census.shared_access_widths([STS_32, STS_128, STS_128, STS_64, LDS_32, LDS_128, (MOV, 0)])
    assert widths == {"LDS.128": 1, "LDS.32": 1, "STS.128": 2, "STS.32": 1, "STS.64": 1}
    assert sass_census.shared_access_widths([(STS_32[0], 0x0000), (LDS_32[0], 0x0600)]) == {"LDS.S16": 1, "STS.U8": 1}
    assert sass_census.shared_access_widths([(STS_32[0], 0x0E00)]) == {"STS.w7": 1}


def test_cubin_census_line_names_the_shared_access_widths(tmp_path, capsys):
    text = b"".join(struct.pack("<QQ", *w) for w in (STS_128, (HMMA, 0), LDS_32, (HMMA, 0)))
    cubin = tmp_path / "k.cubin"
    cubin.write_bytes(minimal_elf([(".text.kernel_a", text)]))
    assert sass_census.main([str(cubin)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("k.cubin kernel_a: 4 instructions, 2 HMMA")
    assert line.endswith("; shared memory LDS.32:1 STS.128:1")
