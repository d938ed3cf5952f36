"""Independent NumPy model of the spec (docs/dsv4-sparse-mla.md) for the Python tests: the e4m3/UE8M0
codec of section 3, the footer layout of section 2 and the float64 decode of section 4. It shares no
code with smla, so a test comparing the two checks both."""

import math
import os

import numpy as np

D, D_NOPE, GROUP, ROW_BYTES, RECORD_BYTES = 512, 448, 64, 576, 584


def make_rng(test_name):
    """Random generator seeded from SMLA_TEST_SEED or fresh entropy; the seed is printed for replay."""
    seed = int(os.environ.get("SMLA_TEST_SEED", np.random.SeedSequence().entropy % (2 ** 32)))
    print(f"{test_name}: seed {seed} (replay with SMLA_TEST_SEED={seed})")
    return np.random.default_rng(seed)


# ---- bf16 ----
def bf16_bits_to_f64(bits):
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def f64_to_bf16_bits(values):
    """Round to nearest even via float32 (values here are exactly representable in float32 first)."""
    f32 = np.asarray(values, dtype=np.float32)
    bits = f32.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def random_bf16(rng, shape, sigma=0.1):
    """q and cache values ~ N(0, 1)/10 clipped to [-1, 1] (spec section 8), as bf16 bits."""
    return f64_to_bf16_bits(np.clip(rng.standard_normal(shape) * sigma, -1.0, 1.0))


# ---- e4m3 (OCP e4m3fn) ----
def _e4m3_table():
    codes = np.arange(256)
    sign = np.where(codes & 0x80, -1.0, 1.0)
    exponent = (codes >> 3) & 0xF
    mantissa = codes & 0x7
    magnitude = np.where(exponent == 0, mantissa / 8.0 * 2.0 ** -6, (1 + mantissa / 8.0) * 2.0 ** (exponent - 7.0))
    values = sign * magnitude
    values[(codes & 0x7F) == 0x7F] = np.nan
    return values


E4M3_VALUES = _e4m3_table()
_POSITIVE_CODES = np.arange(0x7F)  # 0x00..0x7E, increasing in value; 0x7E = 448
_POSITIVE_VALUES = E4M3_VALUES[:0x7F]


def e4m3_encode(values):
    """Round to nearest e4m3, ties to even (even mantissa = even code), saturating to +-448."""
    values = np.asarray(values, dtype=np.float64)
    magnitude = np.minimum(np.abs(values), 448.0)
    upper = np.clip(np.searchsorted(_POSITIVE_VALUES, magnitude), 1, 0x7E)
    lower = upper - 1
    distance_lower = magnitude - _POSITIVE_VALUES[lower]
    distance_upper = _POSITIVE_VALUES[upper] - magnitude
    choose_upper = (distance_upper < distance_lower) | ((distance_upper == distance_lower) & (upper % 2 == 0))
    code = np.where(choose_upper, upper, lower)
    code = np.where(magnitude == 0, 0, code)
    return (code | np.where(np.signbit(values), 0x80, 0)).astype(np.uint8)


# ---- one token record ----
def quantize_token(token_bits):
    """bf16 bits [512] -> (576 data bytes, 8 footer bytes) per spec section 3."""
    x = bf16_bits_to_f64(token_bits)
    data = np.zeros(ROW_BYTES, dtype=np.uint8)
    footer = np.zeros(8, dtype=np.uint8)
    for group in range(D_NOPE // GROUP):
        chunk = x[group * GROUP:(group + 1) * GROUP]
        amax = np.float32(max(np.max(np.abs(chunk)), 1e-4))
        ratio = float(np.float32(amax) / np.float32(448.0))
        mantissa, exponent = math.frexp(ratio)  # ratio = mantissa * 2^exponent, mantissa in [0.5, 1)
        scale_exponent = exponent - 1 if mantissa == 0.5 else exponent  # ceil(log2(ratio))
        data[group * GROUP:(group + 1) * GROUP] = e4m3_encode(chunk / 2.0 ** scale_exponent)
        footer[group] = scale_exponent + 127
    data[D_NOPE:] = np.asarray(token_bits[D_NOPE:], dtype="<u2").view(np.uint8)
    return data, footer


def dequantize_record(data, footer):
    values = np.empty(D, dtype=np.float64)
    for group in range(D_NOPE // GROUP):
        scale = 2.0 ** (int(footer[group]) - 127)
        values[group * GROUP:(group + 1) * GROUP] = E4M3_VALUES[data[group * GROUP:(group + 1) * GROUP]] * scale
    values[D_NOPE:] = bf16_bits_to_f64(np.ascontiguousarray(data[D_NOPE:]).view("<u2"))
    return values


# ---- paged pool [num_pages, page_stride] uint8 ----
def slot_location(page_block_size, slot):
    return slot // page_block_size, slot % page_block_size


def write_token(pool, page_block_size, slot, token_bits):
    page, row = slot_location(page_block_size, slot)
    data, footer = quantize_token(token_bits)
    pool[page, row * ROW_BYTES:(row + 1) * ROW_BYTES] = data
    footer_start = page_block_size * ROW_BYTES + row * 8
    pool[page, footer_start:footer_start + 8] = footer


def read_record(pool, page_block_size, slot):
    page, row = slot_location(page_block_size, slot)
    data = pool[page, row * ROW_BYTES:(row + 1) * ROW_BYTES]
    footer_start = page_block_size * ROW_BYTES + row * 8
    return data, pool[page, footer_start:footer_start + 8]


def read_token(pool, page_block_size, slot):
    return dequantize_record(*read_record(pool, page_block_size, slot))


class RandomCache:
    """A pool filled with NaN bytes (0xFF) where `num_tokens` random slots hold random tokens."""

    def __init__(self, rng, num_pages, page_block_size, num_tokens, page_stride=None):
        self.page_block_size = page_block_size
        stride = page_stride or -(-page_block_size * RECORD_BYTES // ROW_BYTES) * ROW_BYTES
        self.pool = np.full((num_pages, stride), 0xFF, dtype=np.uint8)
        self.slots = rng.choice(num_pages * page_block_size, size=num_tokens, replace=False).astype(np.int32)
        self.values = {}
        for slot in self.slots:
            write_token(self.pool, page_block_size, int(slot), random_bf16(rng, D))
            self.values[int(slot)] = read_token(self.pool, page_block_size, int(slot))


def random_index_rows(rng, cache, batch, seq_q, width, lengths):
    """[b, s_q, width] slot ids: written slots (with duplicates and some -1) before each row's length,
    unwritten NaN-byte slots after it, which a correct decode never reads."""
    all_slots = cache.pool.shape[0] * cache.page_block_size
    unwritten = np.setdiff1d(np.arange(all_slots, dtype=np.int32), cache.slots)
    indices = rng.choice(cache.slots, size=(batch, seq_q, width)).astype(np.int32)
    indices[rng.random(indices.shape) < 0.1] = -1
    for b in range(batch):
        for t in range(seq_q):
            length = lengths[b] if np.ndim(lengths) == 1 else lengths[b, t]
            if length < width and unwritten.size:
                indices[b, t, length:] = rng.choice(unwritten, size=width - length)
    return indices


# ---- decode (spec section 4), float64 ----
def reference_decode(q_bits, lists, attn_sink, softmax_scale):
    """lists: [(cache, indices [b, s_q, w], lengths [b] / [b, s_q] / None)]. Returns out [b,s,h,512], lse [b,s,h]."""
    q = bf16_bits_to_f64(q_bits)
    batch, seq_q, num_heads, _ = q.shape
    out = np.zeros((batch, seq_q, num_heads, D))
    lse = np.full((batch, seq_q, num_heads), np.inf)
    for b in range(batch):
        for t in range(seq_q):
            keys = []
            for cache, indices, lengths in lists:
                width = indices.shape[-1]
                length = width if lengths is None else (lengths[b] if np.ndim(lengths) == 1 else lengths[b, t])
                length = min(max(int(length), 0), width)
                keys += [cache.values[int(s)] for s in indices[b, t, :length] if s >= 0]
            if not keys:
                continue
            K = np.stack(keys)
            logits = softmax_scale * (q[b, t] @ K.T)  # [h, n]
            peak = logits.max(axis=1, keepdims=True)
            weights = np.exp(logits - peak)
            total = weights.sum(axis=1)
            lse[b, t] = np.log(total) + peak[:, 0]
            sink = np.full(num_heads, -np.inf) if attn_sink is None else attn_sink.astype(np.float64)
            with np.errstate(over="ignore"):
                denominator = total + np.exp(sink - peak[:, 0])
            out[b, t] = (weights @ K) / denominator[:, None]
    return out, lse


def assert_close_bf16(actual_bits, reference, lse=None, reference_lse=None):
    """Spec section 8 tolerances for bf16 outputs: per element abs 1e-3 or rel 2.01/128, cosine
    difference <= 5e-6; lse abs 1e-6 or rel 8.01/65536 with +-inf and NaN positions matching."""
    actual = bf16_bits_to_f64(actual_bits)
    assert not np.isnan(actual).any(), "out has NaN"
    error = np.abs(actual - reference)
    element_ok = (error < 1e-3) | (error / (np.abs(reference) + 1e-6) < 2.01 / 128)
    assert element_ok.all(), f"out: {np.count_nonzero(~element_ok)} elements off, worst abs error {error.max()}"
    denominator = np.sum(actual * actual + reference * reference)
    if denominator > 0:
        cosine_difference = 1 - 2 * np.sum(actual * reference) / denominator
        assert cosine_difference <= 5e-6, f"out: cosine difference {cosine_difference}"
    if reference_lse is not None:
        lse = np.asarray(lse, dtype=np.float64)
        assert np.array_equal(np.isposinf(lse), np.isposinf(reference_lse)), "lse: +inf positions differ"
        assert np.array_equal(np.isneginf(lse), np.isneginf(reference_lse)), "lse: -inf positions differ"
        assert not np.isnan(lse).any(), "lse has NaN"
        finite = np.isfinite(reference_lse)
        lse_error = np.abs(lse[finite] - reference_lse[finite])
        lse_ok = (lse_error < 1e-6) | (lse_error / np.abs(reference_lse[finite]) < 8.01 / 65536)
        assert lse_ok.all(), f"lse: worst abs error {lse_error.max() if lse_error.size else 0}"
