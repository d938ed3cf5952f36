#!/usr/bin/env python3
"""Shared-memory wavefronts of the exchange and P layouts of a 48-token mma99-h32 tile (docs/perf.md,
"The 48-token tile"), counted the way the hardware splits a warp's access: 128 bytes a wavefront, lanes in
phases of 128 / width bytes, and in each phase as many wavefronts as the most distinct 4-byte words that
fall on one bank. Checked first on today's 32-token layout (exchange_offset in kernel_compact.cuh), which
is conflict-free, as the model must find.

The accesses modelled:
- exchange stores: a warp's C-fragment float2 stores (lane g = lane / 4, q = lane % 4: head
  mb * 16 + g + 8 r, tokens n * 8 + 2 q), one instruction per (mb, n, r);
- exchange loads: softmax thread t of a head (8 threads a head): one float4 of tokens 4t..4t + 3 and one
  float2 of tokens 32 + 2t, 33 + 2t (the 48-token mapping), one float4 of tokens 4t..4t + 3 (32-token);
- P's ldmatrix: 8 rows of 16 bytes a matrix, rows r0..r0 + 7 at one 16-byte chunk.

  scripts/micro/bank_layout_48.py      prints each layout's wavefronts against the ideal; exits 1 if the
                                       proposed layouts are not conflict-free
"""
import sys


def wavefronts(accesses, width):
    """accesses: (lane, byte address) of one warp instruction, `width` bytes a lane."""
    lanes_per_phase = 128 // width
    total = 0
    for first in range(0, 32, lanes_per_phase):
        banks = {}
        for lane, address in accesses:
            if first <= lane < first + lanes_per_phase:
                for word in range(address // 4, address // 4 + width // 4):
                    banks.setdefault(word % 32, set()).add(word)
        if banks:
            total += max(len(words) for words in banks.values())
    return total


def exchange_cost(offset, tile_tokens, softmax_loads):
    """(store wavefronts, ideal, load wavefronts, ideal) of a float offset(head, token) layout."""
    stores = sum(
        wavefronts([(lane, 4 * offset(mb * 16 + lane // 4 + 8 * r, n * 8 + 2 * (lane % 4))) for lane in range(32)], 8)
        for mb in range(2) for n in range(tile_tokens // 8) for r in range(2))
    loads = 0
    for warp in range(8):
        for first_token, width in softmax_loads:
            loads += wavefronts([(lane, 4 * offset((32 * warp + lane) // 8, first_token((32 * warp + lane) % 8)))
                                 for lane in range(32)], width)
    ideal_loads = 8 * sum(width // 4 for _, width in softmax_loads)  # 32 lanes x width / 128 bytes
    return stores, 2 * 2 * 2 * (tile_tokens // 8), loads, ideal_loads


def today_32(head, token):
    return head * 32 + (((token // 8) ^ (head & 3)) * 8) + token % 8


# The proposed 48-token exchange: rows of 48 floats, the six 8-token groups of head h placed by
# GROUP_SLOT[h & 3]. Derivation (rows are 48 floats = 16 banks apart, so in quarters of 8 banks head h
# starts at quarter 2 (h & 1)): the float4 loads need groups 0..3 of a head in four distinct quarters, the
# float2 loads of two adjacent heads groups 4, 5 in the other two halves, and the stores of four adjacent
# heads one group in four distinct quarters.
GROUP_SLOT = [(0, 1, 2, 3, 4, 5), (3, 0, 1, 2, 4, 5), (2, 3, 0, 1, 5, 4), (1, 2, 3, 0, 5, 4)]


def proposed_48(head, token):
    return head * 48 + GROUP_SLOT[head & 3][token // 8] * 8 + token % 8


# The proposed 48-token P: bf16 rows of 96 bytes (six 16-byte chunks), chunks c and c ^ 1 swapped in rows
# with bit 2 set, so that 8 consecutive rows of one chunk fall in 8 distinct 16-byte bank groups.
def proposed_p48(row, chunk):
    return row * 96 + 16 * (chunk ^ 1 if row & 4 else chunk)


def p_ldmatrix_cost(offset, chunks):
    total = ideal = 0
    for first_row in range(0, 32, 8):
        for chunk in range(chunks):
            total += wavefronts([(lane, offset(first_row + lane, chunk)) for lane in range(8)], 16)
            ideal += 1
    return total, ideal


def main():
    status = 0
    cost = exchange_cost(today_32, 32, [(lambda t: 4 * t, 16)])
    print("32-token exchange (today): stores %d / %d ideal, loads %d / %d ideal" % cost)
    if cost[0] != cost[1] or cost[2] != cost[3]:
        print("the model does not find today's layout conflict-free: it is wrong")
        status = 1
    cost = exchange_cost(proposed_48, 48, [(lambda t: 4 * t, 16), (lambda t: 32 + 2 * t, 8)])
    print("48-token exchange (proposed): stores %d / %d ideal, loads %d / %d ideal" % cost)
    plain = exchange_cost(lambda h, t: h * 48 + t, 48, [(lambda t: 4 * t, 16), (lambda t: 32 + 2 * t, 8)])
    print("48-token exchange without the permutation: stores %d / %d, loads %d / %d" % plain)
    if cost[0] != cost[1] or cost[2] != cost[3]:
        status = 1
    p_cost = p_ldmatrix_cost(proposed_p48, 6)
    print("48-token P ldmatrix (proposed): %d / %d ideal" % p_cost)
    print("48-token P ldmatrix without the swap: %d / %d" % p_ldmatrix_cost(lambda r, c: r * 96 + 16 * c, 6))
    if p_cost[0] != p_cost[1]:
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
