"""smla.flashmla_compat with NumPy inputs (CPU backend): FlashMLA's argument names, shapes, lse view and
metadata object, the modes it refuses, and the per-signature validation cache."""

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
    assert isinstance(tile_scheduler_metadata.tile_scheduler_metadata, smla.Plan)
    assert tile_scheduler_metadata.num_splits == tile_scheduler_metadata.tile_scheduler_metadata.num_splits >= 1


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
    (dict(is_fp8_kvcache=False), NotImplementedError,
     r"is_fp8_kvcache=False \(a BF16 KV cache\) is not implemented: smla implements the DeepSeek-V4 sparse decode "
     "over 584-byte FP8 records"),
    (dict(indices=None), NotImplementedError,
     r"dense decode \(indices=None.*\) is not implemented: smla implements the DeepSeek-V4 sparse decode over "
     "584-byte FP8 records"),
    (dict(indices=None, block_table=np.zeros((1, 1), np.int32), cache_seqlens=np.ones(1, np.int32)),
     NotImplementedError, r"dense decode \(indices=None"),
    (dict(q=np.zeros((1, 1, 1, 576), np.uint16), k_cache=np.zeros((2, 64, 1, 656), np.uint8)), NotImplementedError,
     r"DeepSeek V3.2's FP8 cache format \(656-byte records, d_qk 576; got q \[..., 576\], k_cache \[..., 656\]\) "
     "is not implemented: smla implements the DeepSeek-V4 sparse decode over 584-byte FP8 records"),
    (dict(q=np.zeros((1, 1, 1, 576), np.uint16), k_cache=np.zeros((2, 64, 1, 656), np.uint8), indices=None),
     NotImplementedError, "DeepSeek V3.2's FP8 cache format"),
    (dict(k_cache=np.zeros((2, 64, 1, 656), np.uint8)), NotImplementedError, "DeepSeek V3.2's FP8 cache format"),
    (dict(head_dim_v=448), ValueError, "head_dim_v: expected 512"),
    (dict(extra_k_cache=np.zeros((1, 2, 1, 584), np.uint8)), ValueError, "extra_indices_in_kvcache: extra_k_cache and"),
    (dict(q=np.zeros((1, 1, 1, 576), np.uint16)), NotImplementedError, "DeepSeek V3.2's FP8 cache format"),
    (dict(q=np.zeros((1, 1, 1, 448), np.uint16)), ValueError, r"q: expected shape \[b, s_q, h, 512\]"),
])
def test_unsupported_modes_are_refused_clearly(kwargs, error, message):
    arguments = dict(q=np.zeros((1, 1, 1, 512), np.uint16), k_cache=_view(smla.allocate_cache(1, 64), 64),
                     indices=np.zeros((1, 1, 64), np.int32))
    arguments.update(kwargs)
    with pytest.raises(error, match=message):
        compat.flash_mla_with_kvcache(**arguments)


def _decode_case(name, batch=2, seq_q=1, num_heads=4, topk=64, extra_topk=64, extra_page_block_size=2):
    rng = ref.make_rng(name)
    swa = ref.RandomCache(rng, num_pages=2, page_block_size=64, num_tokens=90)
    extra = ref.RandomCache(rng, num_pages=40, page_block_size=extra_page_block_size, num_tokens=70)
    lengths = rng.integers(0, topk + 1, size=(batch,)).astype(np.int32)
    extra_lengths = rng.integers(0, extra_topk + 1, size=(batch,)).astype(np.int32)
    case = dict(q=ref.random_bf16(rng, (batch, seq_q, num_heads, 512)), k_cache=_view(swa.pool, 64),
                indices=ref.random_index_rows(rng, swa, batch, seq_q, topk, lengths), topk_length=lengths,
                extra_k_cache=_view(extra.pool, extra_page_block_size),
                extra_indices_in_kvcache=ref.random_index_rows(rng, extra, batch, seq_q, extra_topk, extra_lengths),
                extra_topk_length=extra_lengths, attn_sink=rng.standard_normal(num_heads).astype(np.float32))

    def reference():
        return ref.reference_decode(case["q"], [(swa, case["indices"], lengths),
                                                (extra, case["extra_indices_in_kvcache"], extra_lengths)],
                                    case["attn_sink"], 512 ** -0.5)
    return case, reference


def test_module_is_a_flash_mla_drop_in():
    import smla.flashmla_compat as flash_mla

    for name in ("FlashMLASchedMeta", "get_mla_metadata", "flash_mla_with_kvcache"):
        assert name in flash_mla.__all__ and hasattr(flash_mla, name)
    meta, num_splits = flash_mla.get_mla_metadata(np.ones(2, np.int32), 64, 1, 64, True, 128)  # old-style args
    assert isinstance(meta, flash_mla.FlashMLASchedMeta) and num_splits is None
    assert (meta.have_initialized, meta.config, meta.tile_scheduler_metadata, meta.num_splits) == (False, None, None,
                                                                                                    None)


def test_metadata_records_the_first_call_and_checks_later_ones():
    case, reference = _decode_case("test_metadata_records_the_first_call_and_checks_later_ones")
    meta, _ = compat.get_mla_metadata()
    out, lse = compat.flash_mla_with_kvcache(head_dim_v=512, tile_scheduler_metadata=meta, **case)
    expected_out, expected_lse = reference()
    ref.assert_close_bf16(out, expected_out, lse.transpose(0, 2, 1), expected_lse)
    assert meta.have_initialized
    assert meta.config == compat.FlashMLASchedMeta.Config(b=2, s_q=1, h_q=4, page_block_size=64, h_k=1, causal=False,
                                                           is_fp8_kvcache=True, topk=64, extra_page_block_size=2,
                                                           extra_topk=64)
    meta.num_splits = None  # engines may reset the FlashMLA fields; the next call fills them again
    compat.flash_mla_with_kvcache(tile_scheduler_metadata=meta, **case)
    assert meta.num_splits == meta.tile_scheduler_metadata.num_splits

    other_batch, _ = _decode_case("other batch", batch=3)
    with pytest.raises(ValueError, match=r"tile_scheduler_metadata: config.b is 2 \(from the first call on this "
                                         r"FlashMLASchedMeta\) but this call has 3"):
        compat.flash_mla_with_kvcache(tile_scheduler_metadata=meta, **other_batch)
    other_page, _ = _decode_case("other extra page size", extra_page_block_size=4)
    with pytest.raises(ValueError, match="config.extra_page_block_size is 2 .* but this call has 4"):
        compat.flash_mla_with_kvcache(tile_scheduler_metadata=meta, **other_page)
    other_topk, _ = _decode_case("other topk", topk=128)
    with pytest.raises(ValueError, match="config.topk is 64 .* but this call has 128"):
        compat.flash_mla_with_kvcache(tile_scheduler_metadata=meta, **other_topk)
    without_extra = {k: v for k, v in case.items() if not k.startswith("extra_")}
    with pytest.raises(ValueError, match="config.extra_page_block_size is 2 .* but this call has None"):
        compat.flash_mla_with_kvcache(tile_scheduler_metadata=meta, **without_extra)
    compat.flash_mla_with_kvcache(tile_scheduler_metadata=compat.get_mla_metadata()[0], **other_batch)  # a new one


def test_block_table_is_ignored_in_sparse_mode():
    case, reference = _decode_case("test_block_table_is_ignored_in_sparse_mode")
    block_table = np.arange(6, dtype=np.int32).reshape(2, 3)
    out, lse = compat.flash_mla_with_kvcache(block_table=block_table, cache_seqlens=np.array([5, 7], np.int32), **case)
    plain_out, plain_lse = compat.flash_mla_with_kvcache(**case)
    np.testing.assert_array_equal(out, plain_out)
    np.testing.assert_array_equal(lse, plain_lse)
    expected_out, expected_lse = reference()
    ref.assert_close_bf16(out, expected_out, lse.transpose(0, 2, 1), expected_lse)


def test_remembered_signature_still_checks_every_changed_argument():
    """A call signature is validated once; any change of shape, dtype or strides is a new signature and is
    refused with the message of a first call, and new data under an old signature gives new results."""
    compat.clear_plan_cache()
    case, reference = _decode_case("test_remembered_signature_still_checks_every_changed_argument")
    out, lse = compat.flash_mla_with_kvcache(**case)
    assert len(compat._call_cache) == 1
    for _ in range(2):  # same signature, new contents: no new entry, the new data is read
        fresh, fresh_reference = _decode_case("fresh data")
        out, lse = compat.flash_mla_with_kvcache(**fresh)
        expected_out, expected_lse = fresh_reference()
        ref.assert_close_bf16(out, expected_out, lse.transpose(0, 2, 1), expected_lse)
    assert len(compat._call_cache) == 1
    changes = [
        ("indices", case["indices"].astype(np.int64), "indices: expected dtype int32, got int64"),
        ("indices", np.zeros((2, 1, 128), np.int32)[..., ::2], "indices: the last dimension must be contiguous"),
        ("topk_length", np.zeros((4,), np.int32)[::2], "topk_length: must be contiguous"),
        ("attn_sink", case["attn_sink"].astype(np.float64), "attn_sink: expected dtype float32, got float64"),
        ("q", case["q"].astype(np.float32), "q: expected dtype bfloat16 or uint16"),
        ("k_cache", case["k_cache"].view(np.int16)[..., :292], r"k_cache: expected \[num_pages, P, 1, 584\]|cache"),
    ]
    for name, value, message in changes:
        with pytest.raises((ValueError, NotImplementedError), match=message):
            compat.flash_mla_with_kvcache(**{**case, name: value})
    out, lse = compat.flash_mla_with_kvcache(**case)  # the original signature still runs
    expected_out, expected_lse = reference()
    ref.assert_close_bf16(out, expected_out, lse.transpose(0, 2, 1), expected_lse)


def test_null_data_under_a_remembered_signature_is_refused_by_the_library():
    """Pointers are never cached: the library checks them on every call (here a null q)."""
    case, _ = _decode_case("test_null_data_under_a_remembered_signature_is_refused_by_the_library")
    compat.flash_mla_with_kvcache(**case)
    entry = next(iter(compat._call_cache.values()))
    plan = entry.plan
    pointers = (0,) + (1,) * 9
    with pytest.raises(smla.SmlaError, match="args.q must not be null"):
        plan._launch_packed(entry.template, pointers, None)


def test_device_guard_runs_on_the_plans_device_and_restores_the_callers(monkeypatch):
    """The guard logic of the torch path with stand-ins for torch's device calls (no GPU needed): the launch
    sees the plan's device current and the caller's device comes back through restore_device (which does not
    create a context on it), also when the launch fails."""
    import types

    from smla import _torch_ops

    state = dict(current=1, launched_on=[], restored=[])

    def set_device(index):
        state["current"] = index

    def restore_device(index):
        state["restored"].append(index)
        state["current"] = index

    fake = types.SimpleNamespace(current_device=lambda: state["current"], set_device=set_device,
                                 restore_device=restore_device, current_stream=lambda index: 1000 + index)
    monkeypatch.setattr(_torch_ops, "eager_helpers", lambda: fake)
    plan = smla.plan(1, 1, 1, 64, backend="cpu")
    plan.device_type, plan.device_index = "cuda", 0  # as a CUDA plan on device 0

    def launch(template, pointers, stream):
        state["launched_on"].append((state["current"], stream))
        if pointers == "fail":
            raise smla.SmlaError(1, "launch failed")

    monkeypatch.setattr(plan, "_launch_packed", launch)
    plan._launch_prepared_torch(None, (), None)
    assert state["launched_on"] == [(0, 1000)] and state["current"] == 1
    with pytest.raises(smla.SmlaError, match="launch failed"):
        plan._launch_prepared_torch(None, "fail", 77)
    assert state["launched_on"][-1] == (0, 77) and state["current"] == 1
    assert state["restored"] == [1, 1]
    state["current"] = 0  # already current: no switch
    plan._launch_prepared_torch(None, (), None)
    assert state["launched_on"][-1] == (0, 1000) and state["current"] == 0 and state["restored"] == [1, 1]


@pytest.mark.parametrize("torch_has_it", [True, False])
def test_the_callers_device_is_restored_without_creating_its_context_where_torch_can(monkeypatch, torch_has_it):
    """torch >= 2.1 has torch._C._cuda_maybeExchangeDevice (what its own device guards restore with: a device
    without a context is made current in torch's bookkeeping only, since setting it would create one); the
    torch path restores with it where it exists, else with torch's set_device."""
    torch = pytest.importorskip("torch")
    from smla import _torch_ops

    def maybe_exchange(index):
        return index

    if torch_has_it:
        monkeypatch.setattr(torch._C, "_cuda_maybeExchangeDevice", maybe_exchange, raising=False)
    else:
        monkeypatch.delattr(torch._C, "_cuda_maybeExchangeDevice", raising=False)
    monkeypatch.setattr(_torch_ops, "_eager", None)
    helpers = _torch_ops.eager_helpers()
    if torch_has_it:
        assert helpers.restore_device is maybe_exchange
    else:
        assert helpers.restore_device is helpers.set_device


def test_errors_name_the_arguments_as_flash_mla_with_kvcache_calls_them():
    """The checks are Plan.run's; their messages name flash_mla_with_kvcache's arguments (k_cache, not cache)."""
    compat.clear_plan_cache()
    case, _ = _decode_case("test_errors_name_the_arguments_as_flash_mla_with_kvcache_calls_them")
    changes = [
        ("extra_indices_in_kvcache", case["extra_indices_in_kvcache"].astype(np.int64),
         "^extra_indices_in_kvcache: expected dtype int32, got int64"),
        ("k_cache", case["k_cache"].view(np.float32), "^k_cache: expected a byte tensor"),
        ("extra_k_cache", np.zeros((4, 1728), np.uint8),
         r"^extra_k_cache: expected FlashMLA's view \[num_pages, page_block_size, 1, 584\], got shape \[4, 1728\]"),
        ("k_cache", np.zeros((2, 37440), np.uint8), r"^k_cache: expected FlashMLA's view"),
        ("extra_topk_length", case["extra_topk_length"].astype(np.int64), "^extra_topk_length: expected dtype int32"),
    ]
    for name, value, message in changes:
        with pytest.raises(ValueError, match=message):
            compat.flash_mla_with_kvcache(**{**case, name: value})
