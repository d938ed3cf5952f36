"""The device error counter through Python: plan.errors() / plan.reset_errors() (docs/safety.md).

CPU plans always report 0 (the cpu backend rejects out-of-range ids before running). The GPU part plants
out-of-range slot ids and lengths past topk in a cuda-ref run and checks that each one is counted once
and that reset_errors() clears the count; it is skipped without PyTorch or a CUDA device."""

import numpy as np
import pytest

import smla
import smla_reference as ref


def _cpu_inputs(rng, batch, num_heads, topk, lengths=None):
    """Inputs whose index rows hold written slots before each row's length (clamped to [0, topk]) and
    unwritten NaN-byte slots after it."""
    main = ref.RandomCache(rng, num_pages=2, page_block_size=64, num_tokens=40)
    if lengths is None:
        lengths = rng.integers(0, topk + 1, size=(batch,)).astype(np.int32)
    return dict(q=ref.random_bf16(rng, (batch, 1, num_heads, 512)), cache=main.pool,
                indices=ref.random_index_rows(rng, main, batch, 1, topk, np.clip(lengths, 0, topk)),
                topk_length=lengths,
                page_block_size=64)


def test_cpu_plan_reports_no_device_errors():
    rng = ref.make_rng("test_cpu_plan_reports_no_device_errors")
    plan = smla.plan(2, 1, 4, 64, backend="cpu")
    assert plan.errors() == 0
    plan.run(**_cpu_inputs(rng, 2, 4, 64))
    assert plan.errors() == 0
    plan.reset_errors()
    assert plan.errors() == 0


def test_cpu_plan_rejects_out_of_range_ids_instead_of_counting():
    rng = ref.make_rng("test_cpu_plan_rejects_out_of_range_ids_instead_of_counting")
    plan = smla.plan(2, 1, 4, 64, backend="cpu")
    inputs = _cpu_inputs(rng, 2, 4, 64)
    inputs["topk_length"] = np.full((2,), 64, dtype=np.int32)
    inputs["indices"][1, 0, 5] = 2 * 64  # the pool has 2 pages of 64 slots
    with pytest.raises(smla.SmlaError, match="indices"):
        plan.run(**inputs)
    assert plan.errors() == 0


def test_cuda_counter_counts_bad_ids_and_lengths_and_resets():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: GPU part needs it")
    if not torch.cuda.is_available() or not smla.cuda_available():
        pytest.skip("no CUDA device usable by smla: GPU part skipped")
    rng = ref.make_rng("test_cuda_counter_counts_bad_ids_and_lengths_and_resets")
    batch, num_heads, topk = 3, 16, 64  # two head blocks in cuda-ref: each bad entry still counts once
    # 2 bad lengths; the index rows are built for the clamped lengths, so every entry a clamped row
    # attends is a written slot (an unwritten one holds NaN bytes and would make lse NaN).
    inputs = _cpu_inputs(rng, batch, num_heads, topk, np.array([topk, topk + 5, -1], dtype=np.int32))
    num_slots = inputs["cache"].shape[0] * 64
    inputs["indices"][0, 0, 3] = num_slots           # 3 bad ids inside row 0's valid prefix
    inputs["indices"][0, 0, 7] = num_slots + 1000
    inputs["indices"][0, 0, 63] = 2 ** 31 - 1
    device = "cuda:0"
    plan = smla.plan(batch, 1, num_heads, topk, backend="cuda-ref", device=device)
    q = torch.from_numpy(inputs["q"].view(np.int16)).view(torch.bfloat16).to(device)
    cache = torch.from_numpy(inputs["cache"]).to(device)
    indices = torch.from_numpy(inputs["indices"]).to(device)
    lengths = torch.from_numpy(inputs["topk_length"]).to(device)
    assert plan.errors() == 0  # the plan's workspace starts zeroed
    out, lse = plan.run(q, cache, indices, topk_length=lengths, page_block_size=64)
    torch.cuda.synchronize()
    assert plan.errors() == 5
    assert torch.isfinite(lse[0]).all()  # the bad ids were masked, the rest of row 0 attended
    plan.run(q, cache, indices, topk_length=lengths, page_block_size=64, out=out, lse=lse)
    assert plan.errors() == 10  # runs only add to the counter
    plan.reset_errors()
    assert plan.errors() == 0
