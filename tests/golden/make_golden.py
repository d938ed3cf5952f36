#!/usr/bin/python3
"""Writes the golden vectors for the codec and a small decode (docs/dsv4-sparse-mla.md sections 2-4).

An independent numpy implementation of the spec: its own e4m3 encoder (nearest of the 256 codes, ties
to the even code), its own cache layout and a float64 evaluation of the decode. It shares no code with
the C++ library, so tests/cpu/test_golden.cpp catches a bug that both the codec and the reference
would otherwise agree on.

    /usr/bin/python3 tests/golden/make_golden.py     # rewrites golden_codec.txt and golden_decode.txt

Output is deterministic (fixed seed). Text, one record per line: `key value...`, hex without 0x.
"""
import math
import os

import numpy as np

HEAD_DIM, NOPE_DIM, ROPE_DIM, GROUP, NUM_GROUPS = 512, 448, 64, 64, 7
ROW_BYTES, RECORD_BYTES = 576, 584
E4M3_MAX = 448.0
OUT_DIR = os.path.dirname(os.path.abspath(__file__))


# ---- scalar formats -------------------------------------------------------------------------------

def e4m3_value(code):
    """Value of an OCP e4m3fn code (1-4-3, bias 7, S.1111.111 = NaN, no infinities)."""
    sign = -1.0 if code & 0x80 else 1.0
    exponent, mantissa = (code >> 3) & 0xF, code & 0x7
    if exponent == 15 and mantissa == 7:
        return math.nan
    if exponent == 0:
        return sign * mantissa * 2.0 ** -9
    return sign * (1 + mantissa / 8) * 2.0 ** (exponent - 7)


# Non-negative finite codes 0x00..0x7e in increasing value order.
POSITIVE_CODES = list(range(0x7F))
POSITIVE_VALUES = [e4m3_value(c) for c in POSITIVE_CODES]
assert all(a < b for a, b in zip(POSITIVE_VALUES, POSITIVE_VALUES[1:]))


def e4m3_encode(x):
    """Nearest code, ties to the even code, saturating to +-448; the sign of zero is kept."""
    x = float(x)
    sign_bit = 0x80 if math.copysign(1.0, x) < 0 else 0
    magnitude = abs(x)
    if magnitude >= E4M3_MAX:
        return sign_bit | 0x7E
    best_code, best_distance = None, None
    for code, value in zip(POSITIVE_CODES, POSITIVE_VALUES):
        distance = abs(value - magnitude)  # exact: both are short binary fractions
        if best_distance is None or distance < best_distance or (distance == best_distance and code % 2 == 0):
            best_code, best_distance = code, distance
    return sign_bit | best_code


def bf16_to_float(bits):
    return np.array([bits << 16], dtype=np.uint32).view(np.float32)[0]


def float_to_bf16(value):
    """Round-to-nearest-even of a float32 to bf16 bits (finite inputs)."""
    bits = int(np.array([value], dtype=np.float32).view(np.uint32)[0])
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF


# ---- the codec (spec section 3) ------------------------------------------------------------------

def scale_exponent(group_values):
    """Smallest e with a / 448 <= 2^e, where a = max(max|x|, 1e-4) and the division is one fp32 op."""
    amax = np.float32(max(float(np.max(np.abs(group_values))), float(np.float32(1e-4))))
    ratio = float(np.float32(amax) / np.float32(E4M3_MAX))
    e = -200
    while 2.0 ** e < ratio:  # exact comparisons of doubles: a plain search, no log2 rounding
        e += 1
    return e


def encode_token(bits):
    """bf16 bits [512] -> 584 bytes: 576-byte row then the 8-byte footer entry."""
    values = np.array([bf16_to_float(b) for b in bits], dtype=np.float32)
    row, footer = bytearray(ROW_BYTES), bytearray(8)
    for g in range(NUM_GROUPS):
        group = values[g * GROUP:(g + 1) * GROUP]
        e = scale_exponent(group)
        for i, x in enumerate(group):
            # one fp32 multiply by a power of two, as the C++ codec does
            row[g * GROUP + i] = e4m3_encode(float(np.float32(x) * np.float32(2.0 ** -e)))
        footer[g] = e + 127
    for j in range(ROPE_DIM):
        row[NOPE_DIM + 2 * j] = bits[NOPE_DIM + j] & 0xFF
        row[NOPE_DIM + 2 * j + 1] = bits[NOPE_DIM + j] >> 8
    return bytes(row) + bytes(footer)


def decode_record(record):
    out = np.zeros(HEAD_DIM, dtype=np.float64)
    for g in range(NUM_GROUPS):
        scale = 2.0 ** (record[ROW_BYTES + g] - 127)
        for i in range(GROUP):
            out[g * GROUP + i] = e4m3_value(record[g * GROUP + i]) * scale
    for j in range(ROPE_DIM):
        out[NOPE_DIM + j] = bf16_to_float(record[NOPE_DIM + 2 * j] | (record[NOPE_DIM + 2 * j + 1] << 8))
    return out


# ---- golden tokens -------------------------------------------------------------------------------

def bits_of(values):
    return [float_to_bf16(v) for v in values]


def golden_tokens(rng):
    def random_token(sigma):
        return bits_of(np.clip(rng.standard_normal(HEAD_DIM) * sigma, -1e30, 1e30).astype(np.float32))

    tokens = []
    tokens.append(("all_zero", [0] * HEAD_DIM))
    tokens.append(("signed_zeros", [0x8000 if i % 3 else 0 for i in range(HEAD_DIM)]))
    tokens.append(("random_sigma_0.1", random_token(0.1)))

    exact = random_token(0.5)
    for g in range(NUM_GROUPS):  # group max exactly 448 * 2^k: the scale is 2^k, not 2^(k+1)
        k = 2 * g - 8
        exact[g * GROUP:(g + 1) * GROUP] = bits_of(np.float32(2.0 ** k) * rng.uniform(-400, 400, GROUP))
        exact[g * GROUP + (7 * g) % GROUP] = float_to_bf16((-1) ** g * 448.0 * 2.0 ** k)
    tokens.append(("group_max_exact", exact))

    above = list(exact)
    for g in range(NUM_GROUPS):  # one bf16 ulp above: the scale doubles
        position = g * GROUP + (7 * g) % GROUP
        above[position] = above[position] + 1
    tokens.append(("group_max_one_ulp_above", above))

    ties = [0] * HEAD_DIM  # group max 448 -> scale 1, so the other values are e4m3 midpoints as given
    # Midpoints of neighbouring codes have at most 5 significant bits: exact in bf16.
    midpoints = [(POSITIVE_VALUES[c] + POSITIVE_VALUES[c + 1]) / 2 for c in range(0x7E)]
    for g in range(NUM_GROUPS):
        ties[g * GROUP] = float_to_bf16(448.0)
        for i in range(1, GROUP):
            m = midpoints[(g * 63 + i) % len(midpoints)]
            assert float(bf16_to_float(float_to_bf16(m))) == m
            ties[g * GROUP + i] = float_to_bf16(-m if i % 2 else m)
    ties[NOPE_DIM:] = random_token(0.1)[NOPE_DIM:]
    tokens.append(("e4m3_ties_at_unit_scale", ties))

    tokens.append(("large_magnitudes", random_token(3e4)))
    huge = random_token(1.0)
    huge[0] = 0x7F7F  # largest finite bf16, ~3.39e38: scale 2^120
    huge[GROUP] = 0xFF7F
    tokens.append(("largest_bf16", huge))
    tokens.append(("tiny_magnitudes", random_token(1e-6)))
    subnormal = [(i % 5) | (0x8000 if i % 2 else 0) for i in range(HEAD_DIM)]  # bf16 subnormals
    tokens.append(("bf16_subnormals", subnormal))

    near_clamp = [0] * HEAD_DIM  # group max straddling the 1e-4 clamp
    for g in range(NUM_GROUPS):
        center = float_to_bf16(1e-4)
        near_clamp[g * GROUP:(g + 1) * GROUP] = [center + (g - 3)] * GROUP
        near_clamp[g * GROUP + 1] = (center + (g - 3)) | 0x8000  # negative twin
    tokens.append(("clamp_boundary_1e-4", near_clamp))

    boundary = random_token(0.2)  # ratio just below / at / above 224 * scale
    for g, k in zip(range(NUM_GROUPS), [0, 1, -1, 3, -5, 7, 2]):
        boundary[g * GROUP] = float_to_bf16(224.0 * 2.0 ** k)
        boundary[g * GROUP + 1] = float_to_bf16(-223.0 * 2.0 ** k)
    tokens.append(("half_range_boundary", boundary))

    alternating = random_token(1.0)
    for g in range(NUM_GROUPS):
        sign = 1 if g % 2 else -1
        alternating[g * GROUP:(g + 1) * GROUP] = bits_of(sign * np.abs(rng.standard_normal(GROUP)) * 10.0 ** (g - 3))
    tokens.append(("group_magnitudes_1e-3_to_1e3", alternating))
    tokens.append(("random_sigma_1", random_token(1.0)))
    tokens.append(("random_sigma_1e-3", random_token(1e-3)))
    special_rope = random_token(0.1)
    special_rope[NOPE_DIM:NOPE_DIM + 6] = [0x8000, 0x7F80, 0xFF80, 0x7FC1, 0x0001, 0xFFFF]
    tokens.append(("rope_special_bits", special_rope))
    return tokens


def write_codec(rng):
    lines = ["# Golden codec vectors (spec section 3), written by make_golden.py. Per token:",
             "#   token <name>",
             "#   bf16 <512 bf16 values, 4 hex digits each, no separators>",
             "#   record <584 bytes in hex: 448 e4m3 | 64 bf16 little-endian | 7 scale bytes | pad>"]
    for name, bits in golden_tokens(rng):
        assert len(bits) == HEAD_DIM and all(0 <= b <= 0xFFFF for b in bits)
        lines.append(f"token {name}")
        lines.append("bf16 " + "".join(f"{b:04x}" for b in bits))
        lines.append("record " + encode_token(bits).hex())
    with open(os.path.join(OUT_DIR, "golden_codec.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


# ---- the decode case (spec sections 2 and 4) ------------------------------------------------------

class Cache:
    def __init__(self, page_block_size, num_pages):
        self.page_block_size = page_block_size
        self.num_pages = num_pages
        # writer stride: smallest multiple of 576 holding P records
        self.stride = -(-page_block_size * RECORD_BYTES // ROW_BYTES) * ROW_BYTES
        self.pool = bytearray(b"\xff" * (self.stride * num_pages))  # unused slots: NaN bytes
        self.records = {}

    @property
    def num_slots(self):
        return self.page_block_size * self.num_pages

    def write(self, slot, bits):
        record = encode_token(bits)
        page, r = divmod(slot, self.page_block_size)
        row = page * self.stride + r * ROW_BYTES
        footer = page * self.stride + self.page_block_size * ROW_BYTES + 8 * r
        self.pool[row:row + ROW_BYTES] = record[:ROW_BYTES]
        self.pool[footer:footer + 8] = record[ROW_BYTES:]
        self.records[slot] = record

    def key(self, slot):
        return decode_record(self.records[slot])


def write_decode(rng):
    batch, seq_q, heads, topk, extra_topk = 2, 2, 4, 8, 4
    softmax_scale = np.float32(512 ** -0.5)
    main, extra = Cache(2, 9), Cache(3, 3)

    def random_bits(n, sigma=0.1):
        return bits_of(np.clip(rng.standard_normal(n) * sigma, -1, 1).astype(np.float32))

    main_written = [int(s) for s in rng.permutation(main.num_slots)[:12]]
    extra_written = [int(s) for s in rng.permutation(extra.num_slots)[:6]]
    appends = []
    for name, cache, slots in (("main", main, main_written), ("extra", extra, extra_written)):
        for slot in slots:
            bits = random_bits(HEAD_DIM, sigma=0.5)
            cache.write(slot, bits)
            appends.append((name, slot, bits))

    q = random_bits(batch * seq_q * heads * HEAD_DIM, sigma=0.5)
    # lengths: main per query [b, s_q], extra per batch [b]; row (1, 1) is empty (length 0 in both).
    topk_length = [8, 5, 3, 0]
    extra_topk_length = [4, 0]
    w = main_written
    indices = [
        [w[0], w[1], -1, w[2], w[3], w[1], w[4], w[5]],  # full length, one -1, one duplicate
        [w[6], w[7], w[8], -1, w[9], 2147483647, -1, main.num_slots + 5],  # garbage past length 5
        [w[10], w[11], w[0], w[3], -1, main.num_slots, 2 ** 30, w[5]],  # past length 3
        [w[2], -1, main.num_slots + 100, 7, 2147483647, -5, w[4], w[1]],  # length 0: all ignored
    ]
    x = extra_written
    extra_indices = [
        [x[0], x[1], -1, x[2]],
        [x[3], x[4], x[5], x[0]],
        [-1, extra.num_slots + 1, 2147483647, x[1]],  # batch 1: extra length 0
        [x[2], x[3], -1, 5],
    ]
    sink = [np.float32(0.3), np.float32(-np.inf), np.float32(np.inf), np.float32(-1.25)]

    out = np.zeros((batch, seq_q, heads, HEAD_DIM), dtype=np.float64)
    lse = np.zeros((batch, seq_q, heads), dtype=np.float64)
    q_values = np.array([bf16_to_float(b) for b in q], dtype=np.float64).reshape(batch, seq_q, heads, HEAD_DIM)
    for b in range(batch):
        for t in range(seq_q):
            row = b * seq_q + t
            keys = [main.key(s) for s in indices[row][:topk_length[row]] if 0 <= s < main.num_slots]
            keys += [extra.key(s) for s in extra_indices[row][:extra_topk_length[b]] if 0 <= s < extra.num_slots]
            for h in range(heads):
                if not keys:
                    out[b, t, h] = 0.0
                    lse[b, t, h] = np.inf
                    continue
                k = np.stack(keys)
                z = float(softmax_scale) * (k @ q_values[b, t, h])
                z_max = z.max()
                weights = np.exp(z - z_max)
                total = weights.sum()
                lse[b, t, h] = z_max + np.log(total)
                # out = sum e^z K / (sum e^z + e^sink), scaled by e^-z_max to stay finite
                sink_term = np.exp(float(sink[h]) - z_max) if np.isfinite(sink[h]) else (0.0 if sink[h] < 0 else np.inf)
                out[b, t, h] = (weights @ k) / (total + sink_term) if np.isfinite(sink_term) else 0.0

    def hex_words(words):
        return "".join(f"{w:04x}" for w in words)

    def f32_bits(value):
        return f"{int(np.array([value], dtype=np.float32).view(np.uint32)[0]):08x}"

    lines = ["# Golden decode case (spec section 4), written by make_golden.py. Keys:",
             "#   shape b s_q h topk extra_topk | softmax_scale <fp32 bits hex>",
             "#   cache <main|extra> <page_block_size> <num_pages> <page_stride_bytes>",
             "#   append <main|extra> <slot> <512 bf16 hex> (tokens written; unused slots stay 0xff)",
             "#   pool <main|extra> <the whole pool in hex after the appends>",
             "#   q <b*s_q*h*512 bf16 hex>, indices/extra_indices <ints>, topk_length per_query <ints>,",
             "#   extra_topk_length per_batch <ints>, sink <fp32 bits hex per head>",
             "#   out <b> <t> <h> <512 float64 values> (before bf16 rounding), lse <b*s_q*h float64 values>",
             f"shape {batch} {seq_q} {heads} {topk} {extra_topk}",
             f"softmax_scale {f32_bits(softmax_scale)}"]
    for name, cache in (("main", main), ("extra", extra)):
        lines.append(f"cache {name} {cache.page_block_size} {cache.num_pages} {cache.stride}")
    for name, slot, bits in appends:
        lines.append(f"append {name} {slot} {hex_words(bits)}")
    for name, cache in (("main", main), ("extra", extra)):
        lines.append(f"pool {name} {bytes(cache.pool).hex()}")
    lines.append("q " + hex_words(q))
    lines.append("indices " + " ".join(str(i) for r in indices for i in r))
    lines.append("topk_length per_query " + " ".join(map(str, topk_length)))
    lines.append("extra_indices " + " ".join(str(i) for r in extra_indices for i in r))
    lines.append("extra_topk_length per_batch " + " ".join(map(str, extra_topk_length)))
    lines.append("sink " + " ".join(f32_bits(s) for s in sink))
    for b in range(batch):
        for t in range(seq_q):
            for h in range(heads):
                lines.append(f"out {b} {t} {h} " + " ".join(repr(float(v)) for v in out[b, t, h]))
    lines.append("lse " + " ".join(repr(float(v)) for v in lse.reshape(-1)))
    with open(os.path.join(OUT_DIR, "golden_decode.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    rng = np.random.default_rng(20260521)
    write_codec(rng)
    write_decode(rng)
