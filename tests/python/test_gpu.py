"""GPU checks: the drop-in against the float64 model, CUDA-graph capture and replay with changing inputs,
torch.compile(fullgraph=True) through the smla::sparse_decode op, GPU append and page re-layout.
Skipped (visibly) without PyTorch or a CUDA device."""

import numpy as np
import pytest

import smla
import smla_reference as ref
from smla import flashmla_compat as compat

torch = pytest.importorskip("torch", reason="PyTorch is not installed: GPU tests need it")
if not torch.cuda.is_available() or not smla.cuda_available():
    pytest.skip("no CUDA device usable by smla: GPU tests skipped", allow_module_level=True)

DEVICE = "cuda:0"


def to_device_bf16(bits):
    return torch.from_numpy(np.ascontiguousarray(bits).view(np.int16)).view(torch.bfloat16).to(DEVICE)


def to_bits(tensor):
    return tensor.detach().contiguous().view(torch.int16).cpu().numpy().view(np.uint16)


def to_device(array):
    return torch.from_numpy(np.ascontiguousarray(array)).to(DEVICE)


def flashmla_view(pool_tensor, page_block_size):
    return pool_tensor.as_strided((pool_tensor.shape[0], page_block_size, 1, 584),
                                  (pool_tensor.stride(0), 584, 584, 1))


class DecodeCase:
    """A DSv4-like layer on random data: SWA cache (P=64) + C128-style extra cache (P=2)."""

    def __init__(self, rng, batch, seq_q, num_heads, topk=128, extra_topk=64):
        self.swa = ref.RandomCache(rng, num_pages=4, page_block_size=64, num_tokens=200)
        self.extra = ref.RandomCache(rng, num_pages=40, page_block_size=2, num_tokens=60)
        self.swa_pool, self.extra_pool = to_device(self.swa.pool), to_device(self.extra.pool)
        self.shape = (batch, seq_q, num_heads, topk, extra_topk)
        self.refresh(rng)

    def refresh(self, rng):
        batch, seq_q, num_heads, topk, extra_topk = self.shape
        self.q = ref.random_bf16(rng, (batch, seq_q, num_heads, 512))
        self.lengths = rng.integers(0, topk + 1, size=(batch,)).astype(np.int32)
        self.extra_lengths = rng.integers(0, extra_topk + 1, size=(batch, seq_q)).astype(np.int32)
        self.lengths[0], self.extra_lengths[0, 0] = 0, 0  # row (0, 0) attends nothing: out 0, lse +inf
        self.indices = ref.random_index_rows(rng, self.swa, batch, seq_q, topk, self.lengths)
        self.extra_indices = ref.random_index_rows(rng, self.extra, batch, seq_q, extra_topk, self.extra_lengths)
        self.sink = rng.standard_normal(num_heads).astype(np.float32)
        self.sink[0] = np.inf
        if num_heads > 1:
            self.sink[-1] = -np.inf

    def reference(self, softmax_scale=512 ** -0.5):
        return ref.reference_decode(self.q, [(self.swa, self.indices, self.lengths),
                                             (self.extra, self.extra_indices, self.extra_lengths)],
                                    self.sink, softmax_scale)

    def device_inputs(self):
        return dict(q=to_device_bf16(self.q), indices=to_device(self.indices), topk_length=to_device(self.lengths),
                    extra_indices=to_device(self.extra_indices), extra_topk_length=to_device(self.extra_lengths),
                    attn_sink=to_device(self.sink))

    def run_and_check(self, plan):
        """Runs `plan` on this case's device inputs (Plan.run, fresh outputs) against the float64 model."""
        inputs = self.device_inputs()
        out, lse = plan.run(inputs["q"], smla.CacheLayout.from_tensor(self.swa_pool, 64), inputs["indices"],
                            inputs["topk_length"], smla.CacheLayout.from_tensor(self.extra_pool, 2),
                            inputs["extra_indices"], inputs["extra_topk_length"], inputs["attn_sink"])
        expected_out, expected_lse = self.reference()
        ref.assert_close_bf16(to_bits(out), expected_out, lse.cpu().numpy(), expected_lse)


@pytest.mark.parametrize("num_heads", [1, 16, 64, 128])
@pytest.mark.parametrize("seq_q", [1, 2])
def test_drop_in_matches_reference(num_heads, seq_q):
    rng = ref.make_rng(f"test_drop_in_matches_reference[h={num_heads}, s_q={seq_q}]")
    case = DecodeCase(rng, batch=3, seq_q=seq_q, num_heads=num_heads)
    inputs = case.device_inputs()
    out, lse = compat.flash_mla_with_kvcache(
        inputs["q"], flashmla_view(case.swa_pool, 64), None, None, 512, *compat.get_mla_metadata(),
        indices=inputs["indices"], attn_sink=inputs["attn_sink"], extra_k_cache=flashmla_view(case.extra_pool, 2),
        extra_indices_in_kvcache=inputs["extra_indices"], topk_length=inputs["topk_length"],
        extra_topk_length=inputs["extra_topk_length"])
    assert out.shape == (3, seq_q, num_heads, 512) and out.dtype == torch.bfloat16 and out.is_cuda
    assert lse.shape == (3, num_heads, seq_q) and lse.dtype == torch.float32
    expected_out, expected_lse = case.reference()
    ref.assert_close_bf16(to_bits(out), expected_out, lse.transpose(1, 2).cpu().numpy(), expected_lse)


@pytest.mark.parametrize("backend", ["cuda-ref", "cuda"])
def test_plan_run_each_cuda_backend(backend):
    rng = ref.make_rng(f"test_plan_run_each_cuda_backend[{backend}]")
    case = DecodeCase(rng, batch=2, seq_q=1, num_heads=32)
    plan = smla.plan(2, 1, 32, 128, extra_topk=64, backend=backend, device=DEVICE)
    assert plan.backend_name == backend and plan.device == DEVICE
    assert plan.kernel_name != "none" and (backend == "cuda" or plan.kernel_name == "cuda-ref")
    case.run_and_check(plan)


def test_cuda_graph_capture_replays_with_changing_inputs():
    rng = ref.make_rng("test_cuda_graph_capture_replays_with_changing_inputs")
    case = DecodeCase(rng, batch=4, seq_q=1, num_heads=64)
    plan = smla.plan(4, 1, 64, 128, extra_topk=64, device=DEVICE)
    static = case.device_inputs()
    out = torch.empty((4, 1, 64, 512), dtype=torch.bfloat16, device=DEVICE)
    lse = torch.empty((4, 1, 64), dtype=torch.float32, device=DEVICE)
    main_cache, extra_cache = flashmla_view(case.swa_pool, 64), flashmla_view(case.extra_pool, 2)

    def decode():
        plan.run(static["q"], main_cache, static["indices"], static["topk_length"], extra_cache,
                 static["extra_indices"], static["extra_topk_length"], static["attn_sink"], out=out, lse=lse)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        decode()  # warm-up outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        decode()
    for _ in range(3):
        case.refresh(rng)
        for name, value in case.device_inputs().items():
            static[name].copy_(value)
        out.fill_(float("nan"))
        lse.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        expected_out, expected_lse = case.reference()
        ref.assert_close_bf16(to_bits(out), expected_out, lse.cpu().numpy(), expected_lse)


def test_torch_compile_fullgraph_matches_eager():
    rng = ref.make_rng("test_torch_compile_fullgraph_matches_eager")
    case = DecodeCase(rng, batch=2, seq_q=1, num_heads=16)
    plan = smla.plan(2, 1, 16, 128, extra_topk=64, device=DEVICE)
    inputs = case.device_inputs()

    def attention(q, indices, topk_length, extra_indices, extra_topk_length, attn_sink):
        out, lse = plan.run(q * 2, case.swa_pool, indices, topk_length, case.extra_pool, extra_indices,
                            extra_topk_length, attn_sink, page_block_size=64, extra_page_block_size=2)
        return out, out.float() * 3, lse

    compiled = torch.compile(attention, fullgraph=True)
    eager = attention(**inputs)
    compiled_results = compiled(**inputs)
    for compiled_value, eager_value in zip(compiled_results, eager):
        torch.testing.assert_close(compiled_value, eager_value, rtol=0, atol=0)
    case.q = ref.f64_to_bf16_bits(ref.bf16_bits_to_f64(case.q) * 2)  # exact: doubling a bf16
    expected_out, expected_lse = case.reference()
    ref.assert_close_bf16(to_bits(compiled_results[0]), expected_out, compiled_results[2].cpu().numpy(), expected_lse)


def test_append_on_gpu_writes_the_same_bytes_as_the_host_codec():
    rng = ref.make_rng("test_append_on_gpu_writes_the_same_bytes_as_the_host_codec")
    host = smla.allocate_cache(3, 64, fill=0xFF)
    device = smla.allocate_cache(3, 64, device=DEVICE, fill=0xFF)
    assert device.shape == (3, 37440) and device.dtype == torch.uint8 and device.is_cuda
    tokens = ref.random_bf16(rng, (50, 512))
    slots = rng.choice(192, size=50, replace=False).astype(np.int32)
    smla.append(host, tokens, slots, page_block_size=64)
    smla.append(device, to_device_bf16(tokens), to_device(slots), page_block_size=64)
    torch.cuda.synchronize()
    np.testing.assert_array_equal(device.cpu().numpy(), host)


@pytest.mark.parametrize("touched_only", [False, True])
def test_relayout_pages_moves_sub_pages(touched_only):
    rng = ref.make_rng(f"test_relayout_pages_moves_sub_pages[{touched_only}]")
    source = ref.RandomCache(rng, num_pages=3, page_block_size=256, num_tokens=300)
    source_pool = to_device(source.pool)
    destination = smla.allocate_cache(12, 64, device=DEVICE, fill=0xAB)
    indices = source.slots[:40].reshape(1, 1, 40).copy()
    smla.relayout_pages(smla.CacheLayout.from_tensor(source_pool, 256), smla.CacheLayout.from_tensor(destination, 64),
                        index_sets=[to_device(indices)] if touched_only else None)
    torch.cuda.synchronize()
    result = destination.cpu().numpy()
    pages = sorted({int(s) // 64 for s in indices.reshape(-1)}) if touched_only else range(12)
    for page in pages:  # spec section 6: destination page 4p+i <- source page p, sub-page i
        source_page, sub_page = divmod(page, 4)
        np.testing.assert_array_equal(result[page, :36864],
                                      source.pool[source_page, sub_page * 36864:(sub_page + 1) * 36864])
        footer = 147456 + sub_page * 512
        np.testing.assert_array_equal(result[page, 36864:36864 + 512], source.pool[source_page, footer:footer + 512])
    for slot in indices.reshape(-1):  # slot ids are unchanged
        np.testing.assert_array_equal(ref.read_token(result, 64, int(slot)), source.values[int(slot)])


@pytest.mark.parametrize("num_heads", [8, 64])
def test_shared_memory_cap_picks_the_99kb_kernel(num_heads):
    # 16 rows: past the small-call rule (<= 8 rows take 16-head blocks), so 64 heads get the 32-head kernel.
    batch = 16
    rng = ref.make_rng(f"test_shared_memory_cap_picks_the_99kb_kernel[{num_heads}]")
    case = DecodeCase(rng, batch=batch, seq_q=1, num_heads=num_heads)
    plan = smla.plan(batch, 1, num_heads, 128, extra_topk=64, backend="cuda", device=DEVICE, max_shared_bytes=101376)
    assert plan.kernel_name == ("mma99-h16" if num_heads <= 16 else "mma99-h32")
    case.run_and_check(plan)
    fallback = smla.plan(batch, 1, num_heads, 128, extra_topk=64, backend="auto", device=DEVICE,
                         max_shared_bytes=40000)
    assert fallback.kernel_name == "cuda-ref" and fallback.backend_name == "cuda-ref"


@pytest.mark.parametrize("sm_count", [188, 170])
def test_sm_count_option_plans_another_gpus_schedule(sm_count, monkeypatch):
    # With the 99 KB cap, an RTX PRO 6000's (188 SMs) or an RTX 5090's (170) schedule, run on this GPU.
    monkeypatch.delenv("SMLA_SM_COUNT", raising=False)
    rng = ref.make_rng(f"test_sm_count_option_plans_another_gpus_schedule[{sm_count}]")
    case = DecodeCase(rng, batch=2, seq_q=1, num_heads=64)
    plan = smla.plan(2, 1, 64, 128, extra_topk=64, backend="cuda", device=DEVICE, max_shared_bytes=101376,
                     sm_count=sm_count)
    assert plan.sm_count == sm_count
    assert plan.kernel_name in ("mma99-h16", "mma99-h32")
    case.run_and_check(plan)
    own = smla.plan(2, 1, 64, 128, extra_topk=64, backend="cuda", device=DEVICE, max_shared_bytes=101376)
    assert own.sm_count == torch.cuda.get_device_properties(DEVICE).multi_processor_count


def test_cuda_plan_rejects_host_inputs():
    plan = smla.plan(1, 1, 1, 64, device=DEVICE)
    with pytest.raises(ValueError, match=r"q: expected a tensor on cuda:0 \(the plan's device\), got one on cpu"):
        plan.run(torch.zeros((1, 1, 1, 512), dtype=torch.bfloat16), smla.allocate_cache(1, 64, device=DEVICE),
                 torch.zeros((1, 1, 64), dtype=torch.int32, device=DEVICE), page_block_size=64)


# ---- the FlashMLA drop-in itself: CUDA graphs, torch.compile, first calls in other modes, device guard ----
def _drop_in(case, inputs, meta):
    return compat.flash_mla_with_kvcache(
        inputs["q"], flashmla_view(case.swa_pool, 64), None, None, 512, meta, None, is_fp8_kvcache=True,
        indices=inputs["indices"], attn_sink=inputs["attn_sink"], extra_k_cache=flashmla_view(case.extra_pool, 2),
        extra_indices_in_kvcache=inputs["extra_indices"], topk_length=inputs["topk_length"],
        extra_topk_length=inputs["extra_topk_length"])


def _check(case, out, lse):
    expected_out, expected_lse = case.reference()
    ref.assert_close_bf16(to_bits(out), expected_out, lse.transpose(1, 2).cpu().numpy(), expected_lse)


@pytest.mark.parametrize("first_call", ["eager", "in_capture"])
def test_drop_in_under_cuda_graph_capture(first_call):
    """The drop-in captured in a CUDA graph replays with new inputs. in_capture: the first call for the shape
    (plan and workspace creation) happens inside the capture, and eager calls work afterwards."""
    compat.clear_plan_cache()
    rng = ref.make_rng(f"test_drop_in_under_cuda_graph_capture[{first_call}]")
    case = DecodeCase(rng, batch=4, seq_q=1, num_heads=64)
    static = case.device_inputs()
    meta, _ = compat.get_mla_metadata()
    if first_call == "eager":
        _check(case, *_drop_in(case, static, meta))
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out, lse = _drop_in(case, static, meta)
    for _ in range(3):
        case.refresh(rng)
        for name, value in case.device_inputs().items():
            static[name].copy_(value)
        out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        _check(case, out, lse)
    _check(case, *_drop_in(case, static, meta))  # eager after the capture
    torch.cuda.synchronize()
    assert meta.tile_scheduler_metadata.errors() == 0


@pytest.mark.parametrize("first_call", ["inference_mode", "normal"])
def test_drop_in_first_call_mode_does_not_matter(first_call):
    """A plan made under torch.inference_mode() serves normal-mode, inference-mode and compiled calls, and
    the other way round (its workspace is not a torch tensor)."""
    compat.clear_plan_cache()
    rng = ref.make_rng(f"test_drop_in_first_call_mode_does_not_matter[{first_call}]")
    case = DecodeCase(rng, batch=2, seq_q=1, num_heads=16)
    inputs = case.device_inputs()
    meta, _ = compat.get_mla_metadata()
    modes = ["inference_mode", "normal"] if first_call == "inference_mode" else ["normal", "inference_mode"]
    for mode in modes:
        if mode == "inference_mode":
            with torch.inference_mode():
                _check(case, *_drop_in(case, inputs, meta))
        else:
            _check(case, *_drop_in(case, inputs, meta))

    def attention(q, indices, topk_length, extra_indices, extra_topk_length, attn_sink):
        out, lse = _drop_in(case, dict(q=q, indices=indices, topk_length=topk_length, extra_indices=extra_indices,
                                       extra_topk_length=extra_topk_length, attn_sink=attn_sink), meta)
        return out, lse

    compiled = torch.compile(attention, fullgraph=True)
    _check(case, *compiled(**inputs))


def test_drop_in_under_torch_compile_matches_eager():
    rng = ref.make_rng("test_drop_in_under_torch_compile_matches_eager")
    case = DecodeCase(rng, batch=3, seq_q=2, num_heads=64)
    inputs = case.device_inputs()
    meta, _ = compat.get_mla_metadata()

    def attention(q, indices, topk_length, extra_indices, extra_topk_length, attn_sink):
        out, lse = _drop_in(case, dict(q=q * 2, indices=indices, topk_length=topk_length, extra_indices=extra_indices,
                                       extra_topk_length=extra_topk_length, attn_sink=attn_sink), meta)
        return out, out.float() * 3, lse

    eager = attention(**inputs)
    compiled_results = torch.compile(attention, fullgraph=True)(**inputs)
    for compiled_value, eager_value in zip(compiled_results, eager):
        torch.testing.assert_close(compiled_value, eager_value, rtol=0, atol=0)
    case.q = ref.f64_to_bf16_bits(ref.bf16_bits_to_f64(case.q) * 2)  # exact: doubling a bf16
    _check(case, compiled_results[0], compiled_results[2])


def test_drop_in_changed_tensor_after_a_remembered_call_is_refused():
    rng = ref.make_rng("test_drop_in_changed_tensor_after_a_remembered_call_is_refused")
    case = DecodeCase(rng, batch=2, seq_q=1, num_heads=16)
    inputs = case.device_inputs()
    meta, _ = compat.get_mla_metadata()
    _check(case, *_drop_in(case, inputs, meta))
    with pytest.raises(ValueError, match="indices: expected dtype int32, got int64"):
        _drop_in(case, {**inputs, "indices": inputs["indices"].long()}, meta)
    with pytest.raises(ValueError,
                       match=r"attn_sink: expected a tensor on cuda:0 \(the plan's device\), got one on cpu"):
        _drop_in(case, {**inputs, "attn_sink": inputs["attn_sink"].cpu()}, meta)
    _check(case, *_drop_in(case, inputs, meta))


def test_drop_in_runs_on_the_tensors_device_and_restores_the_current_one():
    if torch.cuda.device_count() < 2:
        pytest.skip("device guard: needs two CUDA devices")
    rng = ref.make_rng("test_drop_in_runs_on_the_tensors_device_and_restores_the_current_one")
    case = DecodeCase(rng, batch=2, seq_q=1, num_heads=64)
    inputs = case.device_inputs()
    meta, _ = compat.get_mla_metadata()
    with torch.cuda.device(1):
        out, lse = _drop_in(case, inputs, meta)
        assert torch.cuda.current_device() == 1
    assert out.device == torch.device(DEVICE)
    torch.cuda.synchronize(0)
    _check(case, out, lse)


def test_eager_calls_skip_the_torch_op():
    """Eager torch calls go straight to the library; only tracing needs smla::sparse_decode (issue 15)."""
    from smla import _torch_ops

    q = torch.zeros((1, 1, 64, 512), dtype=torch.bfloat16, device=DEVICE)
    assert not _torch_ops.needs_op(q)
    with torch._subclasses.fake_tensor.FakeTensorMode():
        assert _torch_ops.needs_op(torch.empty(1))
