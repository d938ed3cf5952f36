"""Cache allocation, append (against the NumPy codec model, byte for byte), dequantize, bf16 helpers."""

import numpy as np
import pytest

import smla
import smla_reference as ref


def test_writer_page_strides():
    assert [smla.writer_page_stride_bytes(p) for p in (2, 64, 256)] == [1728, 37440, 149760]
    for page_block_size in (1, 3, 64, 100):
        stride = smla.writer_page_stride_bytes(page_block_size)
        assert stride % 576 == 0 and stride >= page_block_size * 584 and stride - 576 < page_block_size * 584


def test_allocate_cache_shape_alignment_and_fill():
    cache = smla.allocate_cache(5, 64)
    assert cache.shape == (5, 37440) and cache.dtype == np.uint8 and not cache.any()
    assert cache.__array_interface__["data"][0] % 16 == 0
    nan_filled = smla.allocate_cache(2, 2, fill=0xFF)
    assert nan_filled.shape == (2, 1728) and (nan_filled == 0xFF).all()
    layout = smla.CacheLayout.from_tensor(cache, 64)
    assert (layout.page_block_size, layout.page_stride_bytes, layout.num_pages, layout.num_slots) == (64, 37440, 5, 320)
    layout.validate()


@pytest.mark.parametrize("page_block_size", [2, 64, 256])
def test_append_matches_the_spec_codec_byte_for_byte(page_block_size):
    rng = ref.make_rng(f"test_append_matches_the_spec_codec_byte_for_byte[P={page_block_size}]")
    num_pages = max(2, 96 // page_block_size)
    cache = smla.allocate_cache(num_pages, page_block_size, fill=0xFF)
    expected = np.full_like(cache, 0xFF)
    slots = rng.choice(num_pages * page_block_size, size=24, replace=False).astype(np.int32)
    tokens = ref.random_bf16(rng, (24, 512))
    tokens[0, :64] = 0  # an all-zero group takes the 1e-4 floor of the scale rule
    tokens[1, 64:128] = ref.f64_to_bf16_bits(np.linspace(-448.0, 448.0, 64))  # large values, exact scale 1
    smla.append(cache, tokens, slots, page_block_size=page_block_size)
    for token, slot in zip(tokens, slots):
        ref.write_token(expected, page_block_size, int(slot), token)
    footer = page_block_size * 576
    data_mismatch = [(p, b) for p, b in zip(*np.nonzero(cache != expected))]
    assert not data_mismatch, f"{len(data_mismatch)} bytes differ, first (page, byte) {data_mismatch[:4]}, footer at {footer}"

    dequantized = smla.dequantize(cache, np.append(slots, -1), page_block_size=page_block_size)
    assert dequantized.dtype == np.float32 and dequantized.shape == (25, 512)
    for row, slot in enumerate(slots):
        np.testing.assert_array_equal(dequantized[row], ref.read_token(expected, page_block_size, int(slot)))
    assert not dequantized[-1].any(), "a negative slot dequantizes to a zero row"
    values = ref.bf16_bits_to_f64(tokens)
    np.testing.assert_array_equal(dequantized[:-1, 448:], values[:, 448:], "rope dims are stored exactly")
    # e4m3 keeps 3 mantissa bits: RNE error is at most 2^-4 of the value, or half a subnormal step.
    nope_error = np.abs(dequantized[:-1, :448] - values[:, :448])
    assert np.all(nope_error <= np.abs(values[:, :448]) * 2 ** -4 + 2.0 ** -10 * 2 ** -6 * 4), nope_error.max()


def test_append_strided_tokens_and_view_cache():
    rng = ref.make_rng("test_append_strided_tokens_and_view_cache")
    pool = smla.allocate_cache(2, 64)
    view = np.lib.stride_tricks.as_strided(pool, shape=(2, 64, 1, 584), strides=(pool.strides[0], 584, 584, 1))
    buffer = ref.random_bf16(rng, (3, 1024))
    smla.append(view, buffer[:, 256:768], [5, 70, 127])
    for row, slot in enumerate((5, 70, 127)):
        data, footer = ref.quantize_token(buffer[row, 256:768])
        np.testing.assert_array_equal(ref.read_record(pool, 64, slot)[0], data)
        np.testing.assert_array_equal(ref.read_record(pool, 64, slot)[1], footer)


def test_dequantize_of_a_device_cache_is_refused():
    layout = smla.CacheLayout(0x1000, 64, 37440, 1, device="cuda:0")
    with pytest.raises(ValueError, match="cache: dequantize reads host memory only"):
        smla.dequantize(layout, [0])


def test_bf16_helpers_round_to_nearest_even():
    values = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -2.5, np.inf, -np.inf, 3.4e38, 2 ** -133], np.float32)
    bits = smla.float_to_bf16(values)
    assert bits.dtype == np.uint16
    np.testing.assert_array_equal(smla.bf16_to_float(bits),
                                  np.array([1.0, 1.0, 1 + 2 ** -6, -2.5, np.inf, -np.inf, np.inf, 2 ** -133], np.float32))
    assert np.isnan(smla.bf16_to_float(smla.float_to_bf16(np.array([np.nan], np.float32))))[0]
    rng = ref.make_rng("test_bf16_helpers_round_to_nearest_even")
    random = (rng.standard_normal(1000) * 10).astype(np.float32)
    np.testing.assert_array_equal(smla.float_to_bf16(random), ref.f64_to_bf16_bits(random))
    with pytest.raises(ValueError, match="bf16_to_float: expected a uint16 array"):
        smla.bf16_to_float(np.zeros(2, np.int16))
