"""scripts/micro/load_waits.py: control-bit and branch decoding, and the loop's load waits (no GPU needed).
The encoded words are instructions of the v114 candidate's sm_90a cubin as `cuobjdump -sass` printed them."""

import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(REPO, "scripts", "micro", "load_waits.py")
spec = importlib.util.spec_from_file_location("load_waits", SCRIPT)
load_waits = importlib.util.module_from_spec(spec)
spec.loader.exec_module(load_waits)

TABLE = {"202": "MOV", "984": "LDS", "947": "BRA", "220": "FMUL"}
# /*5e00*/ LDG.E.NA.128.CONSTANT R56, desc[UR8][R172.64+0x1d0]  (sets SB5 when its data lands)
LDG_SB5 = (0x0001D008AC387981, 0x000562000C5E9D00)
# /*5e20*/ LDS.64 R48, [R41+0x155c0]  (waits on SB5: it overwrites a register a load was still filling)
LDS_WAITING_SB5 = (0x0155C00029307984, 0x020E620000000A00)


def control(sets=7, reads=7, waits=0):
    return ((sets << 5) | (reads << 8) | (waits << 11)) << 41


def guarded_branch(offset_from_next, guard=0):
    upper, low = offset_from_next >> 8, (offset_from_next & 0xFF) // 4
    return ((upper & 0xFFFFFFFF) << 32) | (low << 16) | (guard << 12) | load_waits.BRANCH


def test_control_bits_of_dumped_instructions():
    ldg, lds = load_waits.decode([LDG_SB5, LDS_WAITING_SB5], TABLE)
    assert (ldg["name"], ldg["sets"], ldg["waits"]) == ("LDG", 5, 0)
    assert lds["name"] == "LDS" and lds["waits"] >> 5 & 1


def test_branch_targets_of_dumped_branches():
    # /*8e10*/ @P4 BRA 0x4af0 and /*4630*/ @!P0 BRA 0x8e20
    back = {"first": 0xFFFFFFBC00344947, "address": 0x8E10}
    forward = {"first": 0x0000004400F88947, "address": 0x4630}
    assert load_waits.branch_target(back) == 0x4AF0
    assert load_waits.branch_target(forward) == 0x8E20


def test_reports_the_first_wait_on_a_loads_scoreboard_inside_the_guarded_loop():
    words = [
        (0x202, control()),                                   # 0x00 loop top
        (LDG_SB5[0], control(sets=5)),                        # 0x10 load, sets SB5
        (0x202, control()),                                   # 0x20
        (0x220, control(waits=1 << 5)),                       # 0x30 waits on SB5: 2 instructions later
        (guarded_branch(-0x50), control()),                   # 0x40 @P0 BRA 0x00
        (guarded_branch(-0x60, guard=7), control()),          # 0x50 BRA 0x00, unguarded: not the loop
    ]
    instructions = load_waits.decode(words, TABLE)
    assert load_waits.loops(instructions, min_instructions=2) == [(0x00, 0x40)]
    [(load, waiter)] = load_waits.load_waits(instructions, (0x00, 0x40))
    assert (load["address"], waiter["address"], waiter["name"]) == (0x10, 0x30, "FMUL")
    assert load_waits.loops(instructions) == []  # 5 instructions: not a tile loop


def test_a_load_used_from_the_next_pass_has_no_wait_inside_the_loop():
    words = [(0x202, control()), (LDG_SB5[0], control(sets=5)), (0x202, control(waits=1 << 2)),
             (guarded_branch(-0x40), control())]
    instructions = load_waits.decode(words, TABLE)
    [loop] = load_waits.loops(instructions, min_instructions=2)
    assert load_waits.load_waits(instructions, loop)[0][1] is None
