"""The torch extension of the eager path (smla/_torch_ext.py, smla/_ext/smla_torch_ext.cpp) against the Python
path it replaces: the same bits, the same errors (type and message), calls it hands back to Python, the
FlashMLASchedMeta rules, and on a GPU CUDA-graph capture and torch.compile. torch CPU tensors on the cpu
backend run wherever PyTorch and a compiler are; the GPU tests need a CUDA device and fail (not skip) when
the extension does not load there. Skipped (visibly) without PyTorch."""

import numpy as np
import pytest

import smla
import smla_reference as ref
from smla import _torch_ext
from smla import flashmla_compat as compat

torch = pytest.importorskip("torch", reason="PyTorch is not installed: torch extension tests need it")
CUDA = torch.cuda.is_available() and smla.cuda_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device usable by smla: GPU extension tests skipped")


@pytest.fixture(scope="module")
def extension():
    status = smla.load_torch_extension()
    if not status.loaded:
        if CUDA:
            pytest.fail(f"the torch extension did not load on a machine with torch CUDA: {status}")
        pytest.skip(f"the torch extension is not available here: {status}")
    return status


def _hits(before, kind):
    return _torch_ext.counters()[f"{kind}_hits"] - before[f"{kind}_hits"]


def _bits(tensor):
    """The tensor's bytes as integers (NaN and inf compare as bits)."""
    integer = {torch.bfloat16: torch.int16, torch.float32: torch.int32}[tensor.dtype]
    return tensor.contiguous().view(integer).cpu()


class Case:
    """One layer's inputs on `device`: SWA cache (P=64) + extra cache (P=2), as FlashMLA views."""

    def __init__(self, name, device="cpu", batch=2, seq_q=1, num_heads=8, topk=64, extra_topk=64):
        rng = ref.make_rng(name)
        self.swa = ref.RandomCache(rng, num_pages=2, page_block_size=64, num_tokens=80)
        self.extra = ref.RandomCache(rng, num_pages=40, page_block_size=2, num_tokens=60)
        lengths = rng.integers(0, topk + 1, size=(batch,)).astype(np.int32)
        extra_lengths = rng.integers(0, extra_topk + 1, size=(batch, seq_q)).astype(np.int32)
        self.q_bits = ref.random_bf16(rng, (batch, seq_q, num_heads, 512))
        indices = ref.random_index_rows(rng, self.swa, batch, seq_q, topk, lengths)
        extra_indices = ref.random_index_rows(rng, self.extra, batch, seq_q, extra_topk, extra_lengths)
        sink = rng.standard_normal(num_heads).astype(np.float32)
        self.lists = [(self.swa, indices, lengths), (self.extra, extra_indices, extra_lengths)]
        self.sink = sink
        self.shape = (batch, seq_q, num_heads, topk, extra_topk)
        self.device = device

        def to(array):
            return torch.from_numpy(np.ascontiguousarray(array)).to(device)

        def view(pool, page_block_size):
            return pool.as_strided((pool.shape[0], page_block_size, 1, 584), (pool.stride(0), 584, 584, 1))

        self.pools = (to(self.swa.pool), to(self.extra.pool))  # [pages, page stride] bytes
        self.tensors = dict(q=to(self.q_bits.view(np.int16)).view(torch.bfloat16), k_cache=view(self.pools[0], 64),
                            indices=to(indices), topk_length=to(lengths), extra_k_cache=view(self.pools[1], 2),
                            extra_indices_in_kvcache=to(extra_indices), extra_topk_length=to(extra_lengths),
                            attn_sink=to(sink))

    def plan(self, **options):
        batch, seq_q, num_heads, topk, extra_topk = self.shape
        backend = "cpu" if self.device == "cpu" else "auto"
        return smla.plan(batch, seq_q, num_heads, topk, extra_topk=extra_topk, backend=backend, device=self.device,
                         **options)

    def outputs(self):
        batch, seq_q, num_heads = self.shape[:3]
        out = torch.empty((batch, seq_q, num_heads, 512), dtype=torch.bfloat16, device=self.device)
        lse = torch.empty((batch, num_heads, seq_q), device=self.device).transpose(1, 2)
        return out, lse

    def plan_run(self, plan, out, lse, **changes):
        t = {**self.tensors, **changes}
        return plan.run(t["q"], t["k_cache"], t["indices"], t["topk_length"], t["extra_k_cache"],
                        t["extra_indices_in_kvcache"], t["extra_topk_length"], t["attn_sink"], out=out, lse=lse)

    def drop_in(self, meta=None, **changes):
        return compat.flash_mla_with_kvcache(tile_scheduler_metadata=meta, **{**self.tensors, **changes})

    def check(self, out, lse_rows):
        expected = ref.reference_decode(self.q_bits, self.lists, self.sink, 512 ** -0.5)
        ref.assert_close_bf16(_bits(out).numpy().view(np.uint16), expected[0], lse_rows.cpu().numpy(), expected[1])


DEVICES = ["cpu", pytest.param("cuda:0", marks=needs_cuda)]


@needs_cuda
def test_extension_builds_and_loads_with_cuda_support(extension):
    assert extension.loaded and extension.cuda, str(extension)
    print(f"torch extension: {extension}")


@pytest.mark.parametrize("device", DEVICES)
def test_plan_run_through_the_extension_matches_the_python_path_bitwise(extension, device):
    case = Case(f"test_plan_run_through_the_extension_matches_the_python_path_bitwise[{device}]", device)
    plan = case.plan()
    out, lse = case.outputs()
    before = _torch_ext.counters()
    for _ in range(3):  # the first call is validated in Python and handed to the extension
        assert case.plan_run(plan, out, lse) == (out, lse)
    assert _hits(before, "plan") == 2 and _torch_ext.module.plan_signature_count(plan._ext_state) == 1
    python_out, python_lse = case.outputs()
    with _torch_ext.python_path():
        before = _torch_ext.counters()
        case.plan_run(plan, python_out, python_lse)
        assert _hits(before, "plan") == 0
    assert torch.equal(_bits(out), _bits(python_out)) and torch.equal(_bits(lse), _bits(python_lse))
    case.check(out, lse)
    # Outputs allocated by Plan.run: the extension runs those calls too once it knows the signature.
    batch, seq_q, num_heads = case.shape[:3]
    before = _torch_ext.counters()
    fresh = [plan.run(case.tensors["q"], case.tensors["k_cache"], case.tensors["indices"], case.tensors["topk_length"],
                      case.tensors["extra_k_cache"], case.tensors["extra_indices_in_kvcache"],
                      case.tensors["extra_topk_length"], case.tensors["attn_sink"]) for _ in range(2)]
    assert _hits(before, "plan") == 1
    for fresh_out, fresh_lse in fresh:
        assert fresh_lse.shape == (batch, seq_q, num_heads) and torch.equal(_bits(fresh_out), _bits(out))


@pytest.mark.parametrize("device", DEVICES)
def test_drop_in_through_the_extension_matches_the_python_path_bitwise(extension, device):
    compat.clear_plan_cache()
    case = Case(f"test_drop_in_through_the_extension_matches_the_python_path_bitwise[{device}]", device, seq_q=2)
    meta, _ = compat.get_mla_metadata()
    before = _torch_ext.counters()
    results = [case.drop_in(meta) for _ in range(3)]
    assert _hits(before, "drop_in") == 2
    with _torch_ext.python_path():
        python_out, python_lse = case.drop_in(meta)
    for out, lse in results:
        assert out.shape == (2, 2, 8, 512) and out.is_contiguous() and out.dtype == torch.bfloat16
        assert lse.shape == (2, 8, 2) and lse.stride() == (16, 1, 8) and lse.dtype == torch.float32
        assert out.device == torch.device(device) and lse.device == torch.device(device)
        assert torch.equal(_bits(out), _bits(python_out)) and torch.equal(_bits(lse), _bits(python_lse))
    assert len({out.data_ptr() for out, _ in results}) == 3  # fresh outputs every call
    case.check(results[-1][0], results[-1][1].transpose(1, 2))
    assert meta.tile_scheduler_metadata is compat.cached_plan(2, 2, 8, 64, 64, device)
    with torch.inference_mode():
        out, lse = case.drop_in(meta)
    assert out.is_inference() and lse.is_inference()
    out, _ = case.drop_in(meta)
    assert not out.is_inference()


def _bad_arguments(case, kind):
    """Arguments that fail validation (Python's checks or the library's), by kind."""
    t = case.tensors
    if kind == "dtype":
        return dict(indices=t["indices"].long())
    if kind == "shape":
        return dict(attn_sink=torch.zeros(9, device=case.device))
    if kind == "stride":  # q's head stride 513: not whole 16-byte vectors (the library's check)
        q = torch.zeros(t["q"].shape[:3] + (513,), dtype=torch.bfloat16, device=case.device)[..., :512]
        return dict(q=q.copy_(t["q"]))
    if kind == "pointer":  # q 2 bytes off 16-byte alignment, same shape and strides as the good q
        flat = torch.zeros(t["q"].numel() + 8, dtype=torch.bfloat16, device=case.device)
        return dict(q=flat[1:1 + t["q"].numel()].view(t["q"].shape).copy_(t["q"]))
    if kind == "device":
        return dict(attn_sink=t["attn_sink"].cpu())
    raise AssertionError(kind)


def _error_of(call):
    with pytest.raises(Exception) as caught:
        call()
    return type(caught.value), str(caught.value)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["dtype", "shape", "stride", "pointer", "device"])
def test_errors_are_the_same_through_both_paths(extension, device, kind):
    if kind == "device" and device == "cpu":
        pytest.skip("a CUDA tensor for a cpu plan needs a GPU; the cuda:0 case covers the device check")
    case = Case(f"test_errors_are_the_same_through_both_paths[{device}, {kind}]", device)
    plan = case.plan()
    out, lse = case.outputs()
    meta, _ = compat.get_mla_metadata()
    for _ in range(2):  # the good signature is known to the extension
        case.plan_run(plan, out, lse)
        case.drop_in(meta)
    bad = _bad_arguments(case, kind)
    before = _torch_ext.counters()
    through_extension = [_error_of(lambda: case.plan_run(plan, out, lse, **bad)),
                         _error_of(lambda: case.drop_in(meta, **bad))]
    # A changed shape, stride, dtype or device is a new signature, which Python validates; only the misaligned
    # pointer (same signature) runs in the extension, where the library refuses it.
    expected_hits = 1 if kind == "pointer" else 0
    assert _hits(before, "plan") == expected_hits and _hits(before, "drop_in") == expected_hits
    with _torch_ext.python_path():
        through_python = [_error_of(lambda: case.plan_run(plan, out, lse, **bad)),
                          _error_of(lambda: case.drop_in(meta, **bad))]
    assert through_extension == through_python
    expected = {"dtype": (ValueError, "indices: expected dtype int32, got int64"),
                "shape": (ValueError, "attn_sink: expected shape [h=8], got [9]"),
                "stride": (smla.SmlaError, "args.q_stride_head must be a multiple of 8 elements"),
                "pointer": (smla.SmlaError, "args.q must be 16-byte aligned"),
                "device": (ValueError, "attn_sink: expected a tensor on cuda:0 (the plan's device), got one on cpu")}
    for error_type, message in through_extension:
        assert error_type is expected[kind][0] and expected[kind][1] in message, message
    out_again, lse_again = case.plan_run(plan, out, lse)  # the good signature still runs
    case.check(out_again, lse_again)


def test_negative_views_and_tracked_outputs_are_refused_through_both_paths(extension):
    """A negative view stores x and means -x, so smla, which reads and writes the stored values, refuses one
    (q, an index list, out); an output that autograd tracks (requires_grad with grad mode on) is refused as
    torch refuses an in-place write to it. Same errors on the extension's path (a remembered signature of the
    same shapes) and Python's, nothing run; under torch.no_grad() the tracked output is written."""
    case = Case("test_negative_views_and_tracked_outputs_are_refused_through_both_paths")
    plan = case.plan()
    out, lse = case.outputs()
    for _ in range(2):  # the good signature is known to the extension
        case.plan_run(plan, out, lse)
        case.drop_in()
    negative = {name: torch._neg_view(case.tensors[name]) for name in ("q", "attn_sink")}
    tracked_out = torch.empty_like(out).requires_grad_(True)
    tracked_lse = torch.empty_like(lse.transpose(1, 2)).transpose(1, 2).requires_grad_(True)
    calls = [(lambda: case.plan_run(plan, out, lse, q=negative["q"]), "q: a negative view"),
             (lambda: case.drop_in(q=negative["q"]), "q: a negative view"),
             (lambda: case.drop_in(attn_sink=negative["attn_sink"]), "attn_sink: a negative view"),
             (lambda: case.plan_run(plan, torch._neg_view(out), lse), "out: a negative view"),
             (lambda: case.plan_run(plan, tracked_out, lse), "out: requires grad while grad mode is on"),
             (lambda: case.plan_run(plan, out, tracked_lse), "lse: requires grad while grad mode is on")]
    for call, message in calls:
        before = _torch_ext.counters()
        through_extension = _error_of(call)
        assert _hits(before, "plan") == 0 and _hits(before, "drop_in") == 0
        with _torch_ext.python_path():
            assert _error_of(call) == through_extension
        assert through_extension[0] is ValueError and message in through_extension[1], through_extension
    with torch.no_grad():
        case.check(*case.plan_run(plan, tracked_out, tracked_lse))


def test_clearing_the_drop_in_table_survives_a_finalizer_that_clears_it_again(extension):
    """Releasing a remembered call's Plan runs Python code (here a finalizer that clears the table again, as
    any code reached from a finalizer might): the table is empty before anything is released, so the nested
    clear finds nothing to free twice."""
    import weakref

    compat.clear_plan_cache()
    case = Case("test_clearing_the_drop_in_table_survives_a_finalizer_that_clears_it_again")
    case.drop_in()
    case.drop_in()
    assert _torch_ext.module.drop_in_entry_count() == 1
    plan = compat.cached_plan(*case.shape, "cpu")
    finalized = []
    weakref.finalize(plan, lambda: (_torch_ext.module.drop_in_clear(), finalized.append(True)))
    # Only the extension's table keeps the plan now.
    compat._plan_cache.clear()
    compat._torch_call_cache.clear()
    compat._call_cache.clear()
    del plan
    assert not finalized
    _torch_ext.module.drop_in_clear()
    assert finalized == [True] and _torch_ext.module.drop_in_entry_count() == 0
    out, lse = case.drop_in()  # remembered afresh
    case.check(out, lse.transpose(1, 2))
    assert _torch_ext.module.drop_in_entry_count() == 1


def test_sched_meta_rules_hold_through_the_extension(extension):
    compat.clear_plan_cache()
    case = Case("test_sched_meta_rules_hold_through_the_extension")
    meta, _ = compat.get_mla_metadata()
    case.drop_in(meta)
    before = _torch_ext.counters()
    case.drop_in(meta)
    assert _hits(before, "drop_in") == 1
    other, _ = compat.get_mla_metadata()  # a new object: Python checks it once, then the extension runs it
    before = _torch_ext.counters()
    for _ in range(3):
        case.drop_in(other)
    assert _hits(before, "drop_in") == 2 and other.config == meta.config
    # The same metadata with other shapes: FlashMLA's ValueError, whatever the extension remembers.
    smaller = Case("test_sched_meta_rules_hold_through_the_extension[b=1]", batch=1)
    with pytest.raises(ValueError, match="config.b is 2 .* but this call has 1"):
        smaller.drop_in(meta)
    # Fields changed by the caller send the call back to Python, which applies its rules again.
    meta.tile_scheduler_metadata = None
    before = _torch_ext.counters()
    case.drop_in(meta)
    assert _hits(before, "drop_in") == 0 and meta.tile_scheduler_metadata is not None
    meta.config = compat.FlashMLASchedMeta.Config(**{**vars(meta.config), "topk": 32})
    with pytest.raises(ValueError, match="config.topk is 32"):
        case.drop_in(meta)


def test_cache_layouts_and_other_arguments_take_the_python_path(extension):
    case = Case("test_cache_layouts_and_other_arguments_take_the_python_path")
    plan = case.plan()
    out, lse = case.outputs()
    layout = smla.CacheLayout.from_tensor(case.tensors["k_cache"])
    before = _torch_ext.counters()
    for _ in range(2):
        case.plan_run(plan, out, lse, k_cache=layout)
        plan.run(case.tensors["q"], case.pools[0], case.tensors["indices"], case.tensors["topk_length"],
                 case.tensors["extra_k_cache"], case.tensors["extra_indices_in_kvcache"],
                 case.tensors["extra_topk_length"], case.tensors["attn_sink"], out=out, lse=lse,
                 page_block_size=64.0)  # Python takes int(64.0); the extension only integers
    assert _hits(before, "plan") == 0
    case.check(*case.plan_run(plan, out, lse, k_cache=layout))


def test_numpy_scalars_and_byte_pools_take_the_extension(extension):
    """softmax_scale as numpy.float64 and page block sizes as numpy integers key like Python floats and ints."""
    case = Case("test_numpy_scalars_and_byte_pools_take_the_extension")
    plan = case.plan()
    t = case.tensors
    results = []
    for scale, main_page, extra_page in ((512 ** -0.5, 64, 2), (np.float64(512 ** -0.5), np.int64(64), np.int32(2))):
        out, lse = case.outputs()
        before = _torch_ext.counters()
        for _ in range(2):
            plan.run(t["q"], case.pools[0], t["indices"], t["topk_length"], case.pools[1], t["extra_indices_in_kvcache"],
                     t["extra_topk_length"], t["attn_sink"], softmax_scale=scale, out=out, lse=lse,
                     page_block_size=main_page, extra_page_block_size=extra_page)
        assert _hits(before, "plan") >= 1
        results.append((out, lse))
    assert torch.equal(_bits(results[0][0]), _bits(results[1][0]))
    assert torch.equal(_bits(results[0][1]), _bits(results[1][1]))
    case.check(*results[1])


def test_no_op_library_times_the_bindings_alone(extension):
    case = Case("test_no_op_library_times_the_bindings_alone")
    plan = case.plan()
    out, lse = case.outputs()
    case.plan_run(plan, out, lse)
    out.fill_(0)
    with _torch_ext.no_op_library():
        case.plan_run(plan, out, lse)
    assert not out.view(torch.int16).any()  # nothing ran
    case.check(*case.plan_run(plan, out, lse))


# ---- GPU: CUDA graphs and torch.compile through the extension ---------------------------------------------
@needs_cuda
def test_extension_path_is_captured_in_cuda_graphs(extension):
    rng = ref.make_rng("test_extension_path_is_captured_in_cuda_graphs")
    case = Case("test_extension_path_is_captured_in_cuda_graphs", "cuda:0", batch=4, num_heads=64)
    plan = case.plan()
    out, lse = case.outputs()
    meta, _ = compat.get_mla_metadata()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):  # warm-up outside the capture: the signatures reach the extension
            case.plan_run(plan, out, lse)
            case.drop_in(meta)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    before = _torch_ext.counters()
    with torch.cuda.graph(graph):
        case.plan_run(plan, out, lse)
        drop_in_out, drop_in_lse = case.drop_in(meta)
    assert _hits(before, "plan") == 1 and _hits(before, "drop_in") == 1
    batch, seq_q, num_heads, topk, extra_topk = case.shape
    for _ in range(3):  # new indices and lengths in the captured tensors
        lengths = rng.integers(0, topk + 1, size=(batch,)).astype(np.int32)
        extra_lengths = rng.integers(0, extra_topk + 1, size=(batch, seq_q)).astype(np.int32)
        indices = ref.random_index_rows(rng, case.swa, batch, seq_q, topk, lengths)
        extra_indices = ref.random_index_rows(rng, case.extra, batch, seq_q, extra_topk, extra_lengths)
        case.lists = [(case.swa, indices, lengths), (case.extra, extra_indices, extra_lengths)]
        for name, array in (("indices", indices), ("topk_length", lengths), ("extra_indices_in_kvcache", extra_indices),
                            ("extra_topk_length", extra_lengths)):
            case.tensors[name].copy_(torch.from_numpy(array))
        out.fill_(float("nan"))
        drop_in_out.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        case.check(out, lse)
        case.check(drop_in_out, drop_in_lse.transpose(1, 2))
    assert plan.errors() == 0


@needs_cuda
def test_torch_compile_still_goes_through_the_op(extension):
    case = Case("test_torch_compile_still_goes_through_the_op", "cuda:0", num_heads=16)
    plan = case.plan()
    meta, _ = compat.get_mla_metadata()
    out, lse = case.outputs()
    for _ in range(2):  # the extension knows both signatures before compiling
        case.plan_run(plan, out, lse)
        case.drop_in(meta)

    def attention(q, indices):
        plan_out, plan_lse = case.plan_run(plan, torch.empty_like(out), torch.empty_like(lse), q=q * 2, indices=indices)
        drop_out, drop_lse = case.drop_in(meta, q=q * 2, indices=indices)
        return plan_out, plan_lse, drop_out, drop_lse

    eager = attention(case.tensors["q"], case.tensors["indices"])
    compiled = torch.compile(attention, fullgraph=True)(case.tensors["q"], case.tensors["indices"])
    for compiled_value, eager_value in zip(compiled, eager):
        assert torch.equal(_bits(compiled_value), _bits(eager_value))


def test_builds_without_ninja_through_setuptools(extension, monkeypatch):
    """The fallback builder (torch's BuildExtension without ninja), built once per machine in its own cache
    directory and loaded in a subprocess (this process already holds a module of the same name)."""
    import os
    import subprocess
    import sys

    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        pytest.skip("no ninja here: the extension under test was built by the setuptools path already")
    pytest.importorskip("setuptools", reason="no setuptools: the build without ninja needs it")
    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: False)
    root = os.path.join(_torch_ext.cache_root(), "no-ninja-check")
    monkeypatch.setenv(_torch_ext.ENV_DIRECTORY, root)
    name, cuda_include = _torch_ext._variant(torch)
    cuda = cuda_include is not None
    directory = os.path.join(root, name)
    path = os.path.join(directory, name + ".so")
    if not os.path.exists(os.path.join(directory, "ready")):
        os.makedirs(directory, exist_ok=True)
        seconds = _torch_ext._build(torch, name, directory, cuda_include, path, os.path.join(directory, "failed"))
        print(f"built without ninja in {seconds:.1f} s")
        with open(os.path.join(directory, "ready"), "w") as handle:
            handle.write("built by test_builds_without_ninja_through_setuptools\n")
    with open(os.path.join(directory, "build.log")) as handle:
        assert "use_ninja=False" in handle.read()
    script = ("import importlib.util, sys, torch; spec = importlib.util.spec_from_file_location(sys.argv[1], "
              "sys.argv[2]); module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
              "print(module.CUDA, sorted(name for name in dir(module) if not name.startswith('_'))[:3])")
    done = subprocess.run([sys.executable, "-c", script, name, path], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == ("1" if cuda else "0")


def test_disabled_extension_leaves_eager_calls_on_the_python_path():
    """SMLA_TORCH_EXTENSION=0 in a fresh process: nothing is built or loaded, no warning, and calls run."""
    import os
    import subprocess
    import sys

    script = """
import warnings
warnings.simplefilter("error")  # a warning fails the run
import numpy as np, torch, smla
from smla import _torch_ext
plan = smla.plan(1, 1, 2, 64, backend="cpu")
q = torch.zeros((1, 1, 2, 512), dtype=torch.bfloat16)
cache = torch.from_numpy(smla.allocate_cache(1, 64))
indices = torch.full((1, 1, 64), -1, dtype=torch.int32)
for _ in range(2):
    out, lse = plan.run(q, cache, indices, page_block_size=64)
print(smla.torch_extension_status(), _torch_ext.module, plan._ext_state, bool(torch.isinf(lse).all()))
"""
    environment = dict(os.environ, SMLA_TORCH_EXTENSION="0",
                       PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["disabled", "(SMLA_TORCH_EXTENSION=0)", "None", "None", "True"], done.stdout
