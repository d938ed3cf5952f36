"""smla.flashmla_compat with NumPy inputs (CPU backend): FlashMLA's argument names, shapes and lse view."""

import numpy as np
import pytest

import smla
import smla_reference as ref
from smla import flashmla_compat as compat


def _view(pool, page_block_size):
    """FlashMLA's [pages, P, 1, 584] view of a pool whose page stride is stride(0)."""
    return np.lib.stride_tricks.as_strided(pool, shape=(pool.shape[0], page_block_size, 1, 584),
                                           strides=(pool.strides[0], 584, 584, 1))


def test_drop_in_decode_matches_reference_with_extra_cache():
    rng = ref.make_rng("test_drop_in_decode_matches_reference_with_extra_cache")
    batch, seq_q, num_heads, topk, extra_topk = 2, 2, 8, 64, 128
    swa = ref.RandomCache(rng, num_pages=2, page_block_size=64, num_tokens=80)
    c4 = ref.RandomCache(rng, num_pages=3, page_block_size=64, num_tokens=100)
    lengths = rng.integers(0, topk + 1, size=(batch,)).astype(np.int32)
    extra_lengths = rng.integers(0, extra_topk + 1, size=(batch, seq_q)).astype(np.int32)
    indices = ref.random_index_rows(rng, swa, batch, seq_q, topk, lengths)
    extra_indices = ref.random_index_rows(rng, c4, batch, seq_q, extra_topk, extra_lengths)
    q = ref.random_bf16(rng, (batch, seq_q, num_heads, 512))
    sink = rng.standard_normal(num_heads).astype(np.float32)
    expected_out, expected_lse = ref.reference_decode(
        q, [(swa, indices, lengths), (c4, extra_indices, extra_lengths)], sink, 512 ** -0.5)

    tile_scheduler_metadata, num_splits = compat.get_mla_metadata(None, 1, 1, num_heads, True, topk)
    out, lse = compat.flash_mla_with_kvcache(
        q, _view(swa.pool, 64), None, None, 512, tile_scheduler_metadata, num_splits, is_fp8_kvcache=True,
        indices=indices, attn_sink=sink, extra_k_cache=_view(c4.pool, 64), extra_indices_in_kvcache=extra_indices,
        topk_length=lengths, extra_topk_length=extra_lengths)
    assert out.shape == (batch, seq_q, num_heads, 512) and out.dtype == np.uint16
    assert lse.shape == (batch, num_heads, seq_q) and lse.dtype == np.float32
    assert lse.base is not None, "lse is the transposed view of a [b, s_q, h] buffer"
    ref.assert_close_bf16(out, expected_out, lse.transpose(0, 2, 1), expected_lse)
    assert tile_scheduler_metadata.plan is not None and tile_scheduler_metadata.num_splits >= 1


def test_plans_are_cached_per_shape():
    rng = ref.make_rng("test_plans_are_cached_per_shape")
    compat.clear_plan_cache()
    cache = ref.RandomCache(rng, num_pages=1, page_block_size=64, num_tokens=20)
    for num_heads in (1, 3, 128):
        q = ref.random_bf16(rng, (1, 1, num_heads, 512))
        indices = ref.random_index_rows(rng, cache, 1, 1, 64, np.array([64]))
        first = compat.flash_mla_with_kvcache(q, _view(cache.pool, 64), indices=indices)
        plan = compat.cached_plan(1, 1, num_heads, 64, 0, "cpu")
        second = compat.flash_mla_with_kvcache(q, _view(cache.pool, 64), indices=indices)
        assert compat.cached_plan(1, 1, num_heads, 64, 0, "cpu") is plan
        np.testing.assert_array_equal(first[0], second[0])
        expected = ref.reference_decode(q, [(cache, indices, None)], None, 512 ** -0.5)
        ref.assert_close_bf16(first[0], expected[0], first[1].transpose(0, 2, 1), expected[1])
    assert len(compat._plan_cache) == 3


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(causal=True), NotImplementedError, "causal=True: smla implements sparse FP8 decode only"),
    (dict(is_fp8_kvcache=False), NotImplementedError, "is_fp8_kvcache=False: smla implements sparse FP8 decode only"),
    (dict(block_table=np.zeros((1, 1), np.int32)), ValueError, "block_table: smla implements sparse FP8 decode only"),
    (dict(indices=None), ValueError, "indices: required"),
    (dict(head_dim_v=448), ValueError, "head_dim_v: expected 512"),
    (dict(extra_k_cache=np.zeros((1, 2, 1, 584), np.uint8)), ValueError, "extra_indices_in_kvcache: extra_k_cache and"),
    (dict(q=np.zeros((1, 1, 1, 576), np.uint16)), ValueError, r"q: expected shape \[b, s_q, h, 512\]"),
])
def test_unsupported_modes_are_refused_clearly(kwargs, error, message):
    arguments = dict(q=np.zeros((1, 1, 1, 512), np.uint16), k_cache=_view(smla.allocate_cache(1, 64), 64),
                     indices=np.zeros((1, 1, 64), np.int32))
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        compat.flash_mla_with_kvcache(**arguments)
