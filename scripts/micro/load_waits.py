#!/usr/bin/env python3
"""Where a kernel's main loop waits for its global loads, read from an sm_90 cubin without cuobjdump.

Usage: scripts/micro/load_waits.py KERNEL.cubin [NAME_SUBSTRING]

The CI machine and this one have nvcc and ptxas but no cuobjdump or nvdisasm, so a candidate's scoreboard
use could only be checked on the device. This reads the cubin's .text section directly. Each sm_90
instruction is 128 bits; the scheduling control sits in the high word from bit 41: stall (4 bits), yield (1),
the scoreboard the instruction sets when its result lands (3 bits, 7 = none), the one it sets when its
operands are read (3), and the mask of scoreboards it waits on (6). The layout and the opcode numbers below
were read off `cuobjdump -sass` dumps of our kernels on the device (docs/perf.md, v114); they hold for sm_90
only.

For the main loop (the longest predicated backward branch) it prints each global load (LDG / LD), the
scoreboard it sets, and the first instruction in the loop after it that waits on that scoreboard. A wait a
few instructions after a load that is meant to be used a tile later means the loads are serialized (v114: a
register that one warp role was still loading became another role's temporary, and ptxas waited).
"""
import struct
import sys

# sm_90 opcode numbers (the low 12 bits of the instruction) of the instructions our kernels use.
OPCODES = {
    0x202: 'MOV', 0x207: 'SEL', 0x208: 'FSEL', 0x209: 'FMNMX', 0x20b: 'FSETP', 0x20c: 'ISETP', 0x210: 'IADD3',
    0x211: 'LEA', 0x212: 'LOP3', 0x219: 'SHF', 0x220: 'FMUL', 0x221: 'FADD', 0x223: 'FFMA', 0x224: 'IMAD',
    0x225: 'IMAD', 0x227: 'IMAD', 0x230: 'HADD2', 0x232: 'HMUL2', 0x23a: 'MOVM', 0x23c: 'HMMA', 0x23e: 'F2FP',
    0x308: 'MUFU', 0x348: 'WARPSYNC', 0x388: 'STS', 0x802: 'MOV', 0x805: 'CS2R', 0x806: 'VOTE', 0x810: 'IADD3',
    0x811: 'LEA', 0x812: 'LOP3', 0x819: 'SHF', 0x820: 'FMUL', 0x823: 'FFMA', 0x824: 'IMAD', 0x825: 'IMAD',
    0x836: 'VIADD', 0x83b: 'LDSM', 0x918: 'NOP', 0x919: 'S2R', 0x91a: 'DEPBAR', 0x91b: 'ENDCOLLECTIVE',
    0x941: 'BSYNC', 0x944: 'CALL', 0x945: 'BSSY', 0x947: 'BRA', 0x948: 'WARPSYNC', 0x94d: 'EXIT', 0x950: 'RET',
    0x980: 'LD', 0x981: 'LDG', 0x984: 'LDS', 0x986: 'STG', 0x988: 'STS', 0x98e: 'REDG', 0x9af: 'LDGDEPBAR',
    0xb1d: 'BAR', 0xb82: 'LDC', 0xc02: 'MOV', 0xc10: 'IADD3', 0xc24: 'IMAD', 0xf89: 'SHFL', 0xfae: 'LDGSTS',
}
NO_SCOREBOARD = 7
ALWAYS = 7  # the predicate field of an unpredicated instruction (PT)


def text_sections(path):
    """{section name: bytes} of an ELF64 file's sections whose names start with .text."""
    data = open(path, 'rb').read()
    shoff, = struct.unpack_from('<Q', data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from('<HHH', data, 0x3a)
    headers = [struct.unpack_from('<IIQQQQIIQQ', data, shoff + i * shentsize) for i in range(shnum)]
    names_at = headers[shstrndx][4]

    def name(offset):
        raw = data[names_at + offset:]
        return raw[:raw.index(b'\0')].decode()

    return {name(h[0]): data[h[4]:h[4] + h[5]] for h in headers if name(h[0]).startswith('.text.')}


def decode(text):
    instructions = []
    for address in range(0, len(text), 16):
        low, high = struct.unpack_from('<QQ', text, address)
        control = high >> 41
        instructions.append({
            'address': address, 'low': low, 'name': OPCODES.get(low & 0xfff, f'op{low & 0xfff:#05x}'),
            'predicate': (low >> 12) & 0xf, 'sets': (control >> 5) & 7, 'waits': (control >> 11) & 0x3f,
        })
    return instructions


def branch_target(instruction):
    # The signed offset from the next instruction: bits 32..63 give its bits 8 and up, bits 16..23 its
    # bits 2..9 (read off cuobjdump's targets).
    upper = (instruction['low'] >> 32) & 0xffffffff
    upper -= (1 << 32) if upper >> 31 else 0
    return instruction['address'] + 16 + (upper << 8) + ((instruction['low'] >> 16) & 0xff) * 4


def main_loop(instructions):
    loops = []
    for instruction in instructions:
        if instruction['name'] == 'BRA' and instruction['predicate'] != ALWAYS:
            target = branch_target(instruction)
            if target < instruction['address']:
                loops.append((instruction['address'] - target, target, instruction['address']))
    if not loops:
        return None
    _, start, end = max(loops)
    return start, end


def report(name, instructions):
    loop = main_loop(instructions)
    if loop is None:
        print(f'{name}: no predicated backward branch')
        return
    start, end = loop
    body = [i for i in instructions if start <= i['address'] <= end]
    print(f'{name}\n  main loop {start:#x}..{end:#x}, {len(body)} instructions')
    for k, load in enumerate(body):
        if load['name'] not in ('LDG', 'LD') or load['sets'] == NO_SCOREBOARD:
            continue
        board = load['sets']
        waiter = next((i for i in body[k + 1:] if i['waits'] >> board & 1), None)
        if waiter is None:
            where = 'not waited on inside the loop after it (the loop top or the next pass waits)'
        else:
            distance = (waiter['address'] - load['address']) // 16
            where = f"first wait {distance} instructions later at {waiter['address']:#x} ({waiter['name']})"
        print(f"  {load['name']} at {load['address']:#x} sets SB{board}: {where}")


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    sections = text_sections(argv[1])
    wanted = argv[2] if len(argv) > 2 else ''
    matched = [k for k in sections if wanted in k]
    if not matched:
        print(f'no kernel matching {wanted!r} in {argv[1]}', file=sys.stderr)
        return 1
    for key in matched:
        report(key[len('.text.'):], decode(sections[key]))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
