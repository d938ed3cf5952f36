"""The torch eager path on the CPU backend (torch CPU tensors, no GPU needed): the drop-in and Plan.run against
the float64 model, first calls under torch.inference_mode(), and changed tensors refused after a remembered
call signature. Skipped (visibly) without PyTorch."""

import numpy as np
import pytest

import smla
import smla_reference as ref
from smla import flashmla_compat as compat

torch = pytest.importorskip("torch", reason="PyTorch is not installed: torch CPU tests need it")


def _case(name, batch=2, seq_q=1, num_heads=8, topk=64, extra_topk=64):
    rng = ref.make_rng(name)
    swa = ref.RandomCache(rng, num_pages=2, page_block_size=64, num_tokens=80)
    extra = ref.RandomCache(rng, num_pages=40, page_block_size=2, num_tokens=60)
    lengths = rng.integers(0, topk + 1, size=(batch,)).astype(np.int32)
    extra_lengths = rng.integers(0, extra_topk + 1, size=(batch, seq_q)).astype(np.int32)
    q = ref.random_bf16(rng, (batch, seq_q, num_heads, 512))
    indices = ref.random_index_rows(rng, swa, batch, seq_q, topk, lengths)
    extra_indices = ref.random_index_rows(rng, extra, batch, seq_q, extra_topk, extra_lengths)
    sink = rng.standard_normal(num_heads).astype(np.float32)
    expected = ref.reference_decode(q, [(swa, indices, lengths), (extra, extra_indices, extra_lengths)], sink,
                                    512 ** -0.5)

    def view(pool, page_block_size):
        pool = torch.from_numpy(pool)
        return pool.as_strided((pool.shape[0], page_block_size, 1, 584), (pool.stride(0), 584, 584, 1))

    tensors = dict(q=torch.from_numpy(q.view(np.int16)).view(torch.bfloat16), k_cache=view(swa.pool, 64),
                   indices=torch.from_numpy(indices), topk_length=torch.from_numpy(lengths),
                   extra_k_cache=view(extra.pool, 2), extra_indices_in_kvcache=torch.from_numpy(extra_indices),
                   extra_topk_length=torch.from_numpy(extra_lengths), attn_sink=torch.from_numpy(sink))
    return tensors, expected


def _check(out, lse_rows, expected):
    ref.assert_close_bf16(out.view(torch.int16).numpy().view(np.uint16), expected[0], lse_rows.numpy(), expected[1])


def test_drop_in_and_plan_run_with_torch_cpu_tensors():
    tensors, expected = _case("test_drop_in_and_plan_run_with_torch_cpu_tensors")
    meta, _ = compat.get_mla_metadata()
    for _ in range(2):  # the second call runs under the remembered signature
        out, lse = compat.flash_mla_with_kvcache(tile_scheduler_metadata=meta, **tensors)
        assert out.dtype == torch.bfloat16 and lse.shape == (2, 8, 1) and lse.stride() == (8, 1, 8)
        _check(out, lse.transpose(1, 2), expected)
    plan = smla.plan(2, 1, 8, 64, extra_topk=64, backend="cpu")
    out = torch.empty((2, 1, 8, 512), dtype=torch.bfloat16)
    lse = torch.empty((2, 8, 1)).transpose(1, 2)
    for _ in range(2):
        plan.run(tensors["q"], tensors["k_cache"], tensors["indices"], tensors["topk_length"], tensors["extra_k_cache"],
                 tensors["extra_indices_in_kvcache"], tensors["extra_topk_length"], tensors["attn_sink"], out=out,
                 lse=lse)
        _check(out, lse, expected)
    assert len(plan._signatures) == 1


@pytest.mark.parametrize("first", ["inference_mode", "normal"])
def test_first_call_under_inference_mode_or_not(first):
    compat.clear_plan_cache()
    tensors, expected = _case(f"test_first_call_under_inference_mode_or_not[{first}]")
    meta, _ = compat.get_mla_metadata()
    for mode in ([first, "normal" if first == "inference_mode" else "inference_mode"]):
        if mode == "inference_mode":
            with torch.inference_mode():
                out, lse = compat.flash_mla_with_kvcache(tile_scheduler_metadata=meta, **tensors)
        else:
            out, lse = compat.flash_mla_with_kvcache(tile_scheduler_metadata=meta, **tensors)
        _check(out, lse.transpose(1, 2), expected)


def test_changed_torch_tensor_after_a_remembered_signature_is_refused():
    tensors, expected = _case("test_changed_torch_tensor_after_a_remembered_signature_is_refused")
    compat.flash_mla_with_kvcache(**tensors)
    changes = [
        ("indices", tensors["indices"].long(), "indices: expected dtype int32, got int64"),
        ("topk_length", torch.zeros(4, dtype=torch.int32)[::2], "topk_length: must be contiguous"),
        ("attn_sink", torch.zeros(9), r"attn_sink: expected shape \[h=8\]"),
        ("attn_sink", torch.empty(8, device="meta"), "unsupported torch device meta"),
        ("q", tensors["q"].float(), "q: expected dtype bfloat16"),
        ("extra_indices_in_kvcache", tensors["extra_indices_in_kvcache"].transpose(0, 1),
         "extra_indices_in_kvcache: expected shape|contiguous"),
    ]
    for name, value, message in changes:
        with pytest.raises(ValueError, match=message):
            compat.flash_mla_with_kvcache(**{**tensors, name: value})
    out, lse = compat.flash_mla_with_kvcache(**tensors)
    _check(out, lse.transpose(1, 2), expected)


def test_plain_tensors_take_the_eager_path():
    from smla import _torch_ops

    assert not _torch_ops.needs_op(torch.zeros(1))


def test_drop_in_outputs_are_fresh_tensors_with_flashmla_layouts():
    tensors, expected = _case("test_drop_in_outputs_are_fresh_tensors_with_flashmla_layouts", batch=3, seq_q=2)
    first = compat.flash_mla_with_kvcache(**tensors)
    second = compat.flash_mla_with_kvcache(**tensors)  # remembered signature: outputs from the entry's templates
    for out, lse in (first, second):
        assert out.shape == (3, 2, 8, 512) and out.is_contiguous() and out.dtype == torch.bfloat16
        assert lse.shape == (3, 8, 2) and lse.stride() == (16, 1, 8) and lse.dtype == torch.float32
        _check(out, lse.transpose(1, 2), expected)
    assert first[0].data_ptr() != second[0].data_ptr() and first[1].data_ptr() != second[1].data_ptr()
    with torch.inference_mode():
        out, lse = compat.flash_mla_with_kvcache(**tensors)
    assert out.is_inference() and lse.stride() == (16, 1, 8)
    out, lse = compat.flash_mla_with_kvcache(**tensors)
    assert not out.is_inference() and not lse.is_inference()
