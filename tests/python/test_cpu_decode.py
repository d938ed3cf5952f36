"""CPU-backend decode through the Python API against the float64 NumPy model (spec sections 4 and 8)."""

import numpy as np
import pytest

import smla
import smla_reference as ref

SCALE = 512 ** -0.5


def _sinks(rng, num_heads):
    sink = rng.standard_normal(num_heads).astype(np.float32)
    sink[0] = np.inf
    if num_heads > 2:
        sink[1] = -np.inf
    return sink


def _case(rng, batch, seq_q, num_heads, topk, extra_topk=0, per_query_lengths=False):
    main = ref.RandomCache(rng, num_pages=3, page_block_size=64, num_tokens=90)
    length_shape = (batch, seq_q) if per_query_lengths else (batch,)
    lengths = rng.integers(0, topk + 1, size=length_shape).astype(np.int32)
    lengths.reshape(-1)[0] = 0  # always one row with no main entries
    case = {
        "q": ref.random_bf16(rng, (batch, seq_q, num_heads, 512)),
        "main": main,
        "indices": ref.random_index_rows(rng, main, batch, seq_q, topk, lengths),
        "topk_length": lengths,
        "attn_sink": _sinks(rng, num_heads),
    }
    lists = [(main, case["indices"], lengths)]
    if extra_topk:
        extra = ref.RandomCache(rng, num_pages=20, page_block_size=2, num_tokens=30)
        extra_lengths = rng.integers(0, extra_topk + 1, size=length_shape).astype(np.int32)
        extra_lengths.reshape(-1)[0] = 0  # the first row is empty: out 0, lse +inf
        case.update(extra=extra, extra_lengths=extra_lengths,
                    extra_indices=ref.random_index_rows(rng, extra, batch, seq_q, extra_topk, extra_lengths))
        lists.append((extra, case["extra_indices"], extra_lengths))
    case["reference"] = ref.reference_decode(case["q"], lists, case["attn_sink"], SCALE)
    return case


def _run(plan, case, **overrides):
    kwargs = dict(topk_length=case["topk_length"], attn_sink=case["attn_sink"], page_block_size=64)
    if "extra" in case:
        kwargs.update(extra_cache=case["extra"].pool, extra_indices=case["extra_indices"],
                      extra_topk_length=case["extra_lengths"], extra_page_block_size=2)
    kwargs.update(overrides)
    return plan.run(case["q"], case["main"].pool, case["indices"], **kwargs)


@pytest.mark.parametrize("num_heads", [1, 16, 64])
def test_main_cache_only(num_heads):
    rng = ref.make_rng(f"test_main_cache_only[h={num_heads}]")
    case = _case(rng, batch=3, seq_q=1, num_heads=num_heads, topk=64)
    plan = smla.plan(3, 1, num_heads, 64, backend="cpu")
    out, lse = _run(plan, case)
    assert out.dtype == np.uint16 and out.shape == (3, 1, num_heads, 512)
    assert lse.dtype == np.float32 and lse.shape == (3, 1, num_heads)
    ref.assert_close_bf16(out, case["reference"][0], lse, case["reference"][1])


@pytest.mark.parametrize("per_query_lengths", [False, True])
def test_main_and_extra_cache_mtp(per_query_lengths):
    rng = ref.make_rng(f"test_main_and_extra_cache_mtp[{per_query_lengths}]")
    case = _case(rng, batch=2, seq_q=3, num_heads=8, topk=64, extra_topk=128, per_query_lengths=per_query_lengths)
    plan = smla.plan(2, 3, 8, 64, extra_topk=128, backend="cpu")
    out, lse = _run(plan, case)
    ref.assert_close_bf16(out, case["reference"][0], lse, case["reference"][1])
    assert np.isposinf(lse[0, 0]).all() and not bf16_any_nonzero(out[0, 0])


def bf16_any_nonzero(bits):
    return bool(np.any(ref.bf16_bits_to_f64(bits) != 0))


def test_strided_outputs_and_q_pass_through():
    """q and out inside larger buffers, lse as the transpose of a [b, h, s_q] buffer (FlashMLA's view)."""
    rng = ref.make_rng("test_strided_outputs_and_q_pass_through")
    case = _case(rng, batch=2, seq_q=2, num_heads=4, topk=64)
    q_buffer = ref.random_bf16(rng, (2, 2, 6, 512))
    q_buffer[:, :, 1:5] = case["q"]
    out_buffer = np.full((2, 2, 4, 1024), 0x7FC0, dtype=np.uint16)  # NaN poison
    lse_buffer = np.full((2, 4, 2), np.nan, dtype=np.float32)
    plan = smla.plan(2, 2, 4, 64, backend="cpu")
    out, lse = _run(plan, case, out=out_buffer[..., :512], lse=lse_buffer.transpose(0, 2, 1))
    assert out.base is not None and np.shares_memory(out, out_buffer)
    ref.assert_close_bf16(out_buffer[..., :512], case["reference"][0], lse_buffer.transpose(0, 2, 1),
                          case["reference"][1])
    assert (out_buffer[..., 512:] == 0x7FC0).all(), "decode wrote outside out's view"
    out2, lse2 = plan.run(q_buffer[:, :, 1:5], case["main"].pool, case["indices"], topk_length=case["topk_length"],
                          attn_sink=case["attn_sink"], page_block_size=64)
    ref.assert_close_bf16(out2, case["reference"][0], lse2, case["reference"][1])


def test_plan_reuse_with_new_inputs():
    rng = ref.make_rng("test_plan_reuse_with_new_inputs")
    plan = smla.plan(2, 1, 8, 128, backend="cpu")
    for _ in range(3):
        case = _case(rng, batch=2, seq_q=1, num_heads=8, topk=128)
        out, lse = _run(plan, case)
        ref.assert_close_bf16(out, case["reference"][0], lse, case["reference"][1])


def test_plan_names_its_kernel_and_rejects_a_negative_shared_memory_cap():
    plan = smla.plan(2, 1, 8, 128, backend="cpu")
    assert plan.kernel_name == "cpu"
    assert "kernel='cpu'" in repr(plan)
    with pytest.raises(smla.SmlaError, match="options.max_shared_bytes must be >= 0"):
        smla.plan(2, 1, 8, 128, backend="cpu", max_shared_bytes=-1)


def test_sm_count_option_and_variable_are_checked_by_name(monkeypatch):
    plan = smla.plan(2, 1, 8, 128, backend="cpu", sm_count=188)
    assert plan.sm_count == 0  # the CPU backend schedules no SMs
    for bad in (-1, 1025):
        with pytest.raises(smla.SmlaError, match=r"options.sm_count must be in 0\.\.1024"):
            smla.plan(2, 1, 8, 128, backend="cpu", sm_count=bad)
    monkeypatch.setenv("SMLA_SM_COUNT", "lots")
    with pytest.raises(smla.SmlaError, match="SMLA_SM_COUNT='lots' must be a positive integer up to 1024"):
        smla.plan(2, 1, 8, 128, backend="cpu")


def test_cache_layout_and_flashmla_view_inputs():
    """The same decode through a CacheLayout, a [pages, P, 1, 584] view and a padded page stride."""
    rng = ref.make_rng("test_cache_layout_and_flashmla_view_inputs")
    main = ref.RandomCache(rng, num_pages=3, page_block_size=64, num_tokens=90, page_stride=37440 + 64)
    indices = ref.random_index_rows(rng, main, 1, 1, 64, np.array([64]))
    q = ref.random_bf16(rng, (1, 1, 2, 512))
    expected = ref.reference_decode(q, [(main, indices, None)], None, SCALE)
    view = np.lib.stride_tricks.as_strided(main.pool, shape=(3, 64, 1, 584), strides=(main.pool.strides[0], 584, 584, 1))
    plan = smla.plan(1, 1, 2, 64, backend="cpu")
    for cache in (smla.CacheLayout.from_tensor(main.pool, 64), view):
        out, lse = plan.run(q, cache, indices)
        ref.assert_close_bf16(out, expected[0], lse, expected[1])


class _DLPackOnly:
    """Exposes only the DLPack protocol, like a tensor from a third framework."""

    def __init__(self, array):
        self._array = array

    def __dlpack__(self, stream=None):
        return self._array.__dlpack__()

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


def test_dlpack_inputs():
    rng = ref.make_rng("test_dlpack_inputs")
    case = _case(rng, batch=2, seq_q=1, num_heads=4, topk=64)
    out = np.zeros((2, 1, 4, 512), np.uint16)
    lse = np.zeros((2, 1, 4), np.float32)
    plan = smla.plan(2, 1, 4, 64, backend="cpu")
    plan.run(_DLPackOnly(case["q"]), case["main"].pool, _DLPackOnly(case["indices"]),
             topk_length=_DLPackOnly(case["topk_length"]), attn_sink=_DLPackOnly(case["attn_sink"]),
             out=_DLPackOnly(out), lse=_DLPackOnly(lse), page_block_size=64)
    ref.assert_close_bf16(out, case["reference"][0], lse, case["reference"][1])


def test_float32_cpu_precision_within_tolerance():
    rng = ref.make_rng("test_float32_cpu_precision_within_tolerance")
    case = _case(rng, batch=2, seq_q=1, num_heads=8, topk=64, extra_topk=64)
    plan = smla.plan(2, 1, 8, 64, extra_topk=64, backend="cpu", cpu_precision="float32", cpu_threads=1)
    out, lse = _run(plan, case)
    ref.assert_close_bf16(out, case["reference"][0], lse, case["reference"][1])


def test_softmax_scale_is_applied():
    """With the model's 512^-0.5 and N(0, 0.1) inputs the softmax is nearly flat, so a large explicit
    scale is what shows a dropped or misapplied softmax_scale."""
    rng = ref.make_rng("test_softmax_scale_is_applied")
    main = ref.RandomCache(rng, num_pages=2, page_block_size=64, num_tokens=60)
    indices = ref.random_index_rows(rng, main, 2, 1, 64, np.array([64, 40]))
    q = ref.random_bf16(rng, (2, 1, 4, 512), sigma=1.0)
    plan = smla.plan(2, 1, 4, 64, backend="cpu")
    for scale in (0.5, 8.0):
        expected = ref.reference_decode(q, [(main, indices, np.array([64, 40]))], None, scale)
        out, lse = plan.run(q, main.pool, indices, topk_length=np.array([64, 40], np.int32), softmax_scale=scale,
                            page_block_size=64)
        ref.assert_close_bf16(out, expected[0], lse, expected[1])
