"""bench/flashmla_side_by_side.py without a GPU: its shape tables and byte model against bench/shapes.cpp and
docs/perf.md, its arguments, its messages when PyTorch or FlashMLA is missing, its float64 reference against
the NumPy model of the spec, and one whole run on the CPU backend with stand-ins for torch.cuda and FlashMLA
(so the script's own code runs end to end before it reaches a GPU). The real comparison runs only where
PyTorch sees a CUDA device and FlashMLA's peer build imports (scripts/peer-flashmla-build)."""

import contextlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import types

import numpy as np
import pytest

import smla_reference as ref

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SCRIPT = os.path.join(REPO, "bench", "flashmla_side_by_side.py")


def _load_script():
    spec = importlib.util.spec_from_file_location("flashmla_side_by_side", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


side = _load_script()


def _torch_or_skip():
    return pytest.importorskip("torch", reason="PyTorch is not installed")


def test_named_shapes_match_bench_shapes_cpp():
    text = open(os.path.join(REPO, "bench", "shapes.cpp")).read()
    constants = {name: int(value) for name, value in re.findall(r"constexpr int (k\w+) = (\d+);", text)}
    body = text[text.index("make_named_shapes() {"):]
    body = body[:body.index("};")]
    found = {name: [int(constants.get(item.strip(), item.strip())) for item in fields.split(",")]
             for name, fields in re.findall(r'\{"([\w-]+)",\s*([^{}]*?)\}', body)}
    expected = {name: [s.heads, s.seq_q, s.topk, s.main_page_block_size, s.extra_topk, s.extra_page_block_size]
                for name, s in side.NAMED_SHAPES.items()}
    assert found == expected


def test_dsv4_flash_step_model_matches_smla_bench():
    """bench/shapes.cpp's model_layer_types("dsv4-flash", context), as the script rebuilds it."""
    types_8k = side.dsv4_flash_layer_types(8192)
    assert [(t.shape.name, t.num_layers) for t in types_8k] == [("swa", 2), ("c4", 21), ("c128", 20)]
    assert sum(t.num_layers for t in types_8k) == 43
    swa, c4, c128 = types_8k
    assert (swa.shape.topk, swa.shape.extra_topk, swa.main_length, swa.main_tokens_per_seq) == (128, 0, 128, 128)
    assert (c4.shape.extra_topk, c4.shape.extra_page_block_size, c4.extra_length, c4.extra_tokens_per_seq) == (
        512, 64, 512, 2048)
    assert (c128.shape.extra_topk, c128.shape.extra_page_block_size, c128.extra_length) == (64, 2, 64)
    assert all(t.shape.heads == 64 and t.shape.main_page_block_size == 256 for t in types_8k)
    c128_64k = side.dsv4_flash_layer_types(65536)[2]
    assert (c128_64k.shape.extra_topk, c128_64k.extra_length) == (512, 512)
    short = side.dsv4_flash_layer_types(100)
    assert (short[0].main_length, short[1].extra_length, short[2].shape.extra_topk, short[2].extra_length) == (
        100, 25, 64, 0)


def test_bytes_per_call_match_the_roofline_table():
    """docs/perf.md's roofline table (smla-bench --roofline) in MB per call."""
    table = open(os.path.join(REPO, "docs", "perf.md")).read()
    for name, batch in (("flash-swa", 8), ("flash-c4", 64), ("pro-c4", 128), ("pro-c128-1m", 1)):
        match = re.search(rf"^\| {name} \| {batch} \| \d+ \| \d+ \| \d+ \| \d+ \| \d+ \| ([\d.]+) \|", table, re.M)
        assert match, f"{name} b={batch} not in docs/perf.md's roofline table"
        assert round(side.layer_call_bytes(side.NAMED_SHAPES[name], batch) / 1e6, 3) == float(match.group(1))


def test_arguments():
    options = side.parse_args(["--shapes", "pro-c4,flash-swa", "--batch", "2,4", "--step-batch", "1"])
    assert [s.name for s in options.shape_list] == ["pro-c4", "flash-swa"]
    assert (options.batches, options.step_batches) == ([2, 4], [1])
    defaults = side.parse_args([])
    assert [s.name for s in defaults.shape_list] == ["flash-c4", "flash-swa", "pro-c4", "pro-c128-1m"]
    assert (defaults.batches, defaults.step_batches, defaults.context) == ([1, 8, 32, 64, 128], [1, 4, 8, 32], 8192)
    for bad in (["--shapes", "flash-c5"], ["--batch", "0"], ["--batch", "x"], ["--index-sets", "0"]):
        with pytest.raises(SystemExit) as stopped:
            side.parse_args(bad)
        assert stopped.value.code == 2
    rows = side.planned_rows(side.parse_args(["--shapes", "flash-c4", "--batch", "1,64", "--step-batch", "1,32"]))
    assert [(part, name, batch) for part, name, batch, _ in rows] == [
        ("layer", "flash-c4", 1), ("layer", "flash-c4", 64), ("step", "dsv4-flash@8192", 1),
        ("step", "dsv4-flash@8192", 32)]


def test_dry_run_and_help_need_no_gpu():
    done = subprocess.run([sys.executable, SCRIPT, "--dry-run", "--shapes", "flash-c4", "--batch", "64"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "layer flash-c4 b=64: 32.473 MB per call" in done.stdout
    assert "step dsv4-flash@8192 b=32" in done.stdout
    done = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--calls-per-graph" in done.stdout


def test_missing_flashmla_is_named_and_exits_non_zero(tmp_path):
    environment = dict(os.environ, PYTHONPATH=os.path.join(REPO, "python"))
    done = subprocess.run([sys.executable, SCRIPT, "--flashmla", str(tmp_path), "--no-step", "--shapes", "flash-c4",
                           "--batch", "1"], capture_output=True, text=True, env=environment, cwd=str(tmp_path),
                          timeout=300)
    if importlib.util.find_spec("torch") is None:
        assert done.returncode == 2 and "needs PyTorch" in done.stderr
    elif importlib.util.find_spec("flash_mla") is None:
        assert done.returncode == 3, done.stderr
        assert "FlashMLA is not importable" in done.stderr and "scripts/peer-flashmla-build" in done.stderr


def _random_pool(torch, rng, page_block_size, num_pages, num_tokens):
    cache = ref.RandomCache(rng, num_pages=num_pages, page_block_size=page_block_size, num_tokens=num_tokens)
    return cache, torch.from_numpy(cache.pool)


def test_reference_matches_the_numpy_model_of_the_spec():
    torch = _torch_or_skip()
    rng = ref.make_rng("test_reference_matches_the_numpy_model_of_the_spec")
    batch, seq_q, heads, topk, extra_topk = 3, 2, 4, 64, 32
    swa, swa_pool = _random_pool(torch, rng, 64, 2, 90)
    c128, c128_pool = _random_pool(torch, rng, 2, 40, 60)
    lengths = np.array([64, 17, 0], np.int32)
    extra_lengths = np.array([5, 32, 0], np.int32)
    indices = ref.random_index_rows(rng, swa, batch, seq_q, topk, lengths)
    extra_indices = ref.random_index_rows(rng, c128, batch, seq_q, extra_topk, extra_lengths)
    q_bits = ref.random_bf16(rng, (batch, seq_q, heads, 512))
    sink = np.array([0.5, -np.inf, np.inf, -1.0], np.float32)
    expected_out, expected_lse = ref.reference_decode(
        q_bits, [(swa, indices, lengths), (c128, extra_indices, extra_lengths)], sink, 512 ** -0.5)
    q = torch.from_numpy(q_bits.view(np.int16)).view(torch.bfloat16)
    caches = [(swa_pool, 64, torch.from_numpy(indices), torch.from_numpy(lengths)),
              (c128_pool, 2, torch.from_numpy(extra_indices), torch.from_numpy(extra_lengths))]
    out, lse = side.reference_rows(torch, q, caches, torch.from_numpy(sink), [0, 1, 2])
    np.testing.assert_allclose(out.numpy(), expected_out, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(np.isinf(lse.numpy()), np.isinf(expected_lse))
    np.testing.assert_allclose(lse.numpy(), expected_lse, rtol=1e-12)

    # The check passes the reference rounded to bf16 and flags a perturbed element and a wrong lse.
    rounded = torch.from_numpy(ref.f64_to_bf16_bits(expected_out).view(np.int16)).view(torch.bfloat16)
    expected_out_t, expected_lse_t = torch.from_numpy(expected_out), torch.from_numpy(expected_lse)
    good = side.compare_to_reference(torch, rounded, lse.float(), expected_out_t, expected_lse_t)
    assert good["ok"] and good["out_elements_off"] == 0, good
    bad_out = rounded.clone()
    bad_out[0, 0, 0, 0] = float(expected_out[0, 0, 0, 0]) + 0.05
    bad = side.compare_to_reference(torch, bad_out, lse.float(), expected_out_t, expected_lse_t)
    assert not bad["ok"] and bad["out_elements_off"] == 1
    bad_lse = lse.float().clone()
    bad_lse[0, 0, 0] += 0.01
    assert side.compare_to_reference(torch, rounded, bad_lse, expected_out_t, expected_lse_t)["lse_elements_off"] == 1


def test_stratified_indices_are_distinct_and_spread():
    torch = _torch_or_skip()
    setup = types.SimpleNamespace(torch=torch, device="cpu", generator=torch.Generator(device="cpu"))
    setup.generator.manual_seed(5)
    indices = side.stratified_indices(setup, 16, 128, 1000).numpy()
    assert indices.dtype == np.int32 and indices.shape == (16, 128)
    for row in indices:
        assert len(set(row.tolist())) == 128 and row.min() >= 0 and row.max() < 1000
        assert all(i * 1000 // 128 <= value < (i + 1) * 1000 // 128 for i, value in enumerate(row))


class _FakeEvent:
    def __init__(self, enable_timing=False):
        self.time = None

    def record(self, stream=None):
        self.time = time.perf_counter()

    def synchronize(self):
        pass

    def elapsed_time(self, other):
        return (other.time - self.time) * 1e3


class _FakeStream:
    def wait_stream(self, other):
        pass


class _FakeGraph:
    def replay(self):
        pass


class _FakeFlashMLA:
    """FlashMLA's Python surface over smla's CPU path, with a FlashMLA-like metadata tensor."""

    def __init__(self, torch, compat):
        self.torch, self.compat = torch, compat
        self.__file__ = "fake flash_mla"

    def get_mla_metadata(self, *args, **kwargs):
        return types.SimpleNamespace(have_initialized=False, config=None, tile_scheduler_metadata=None,
                                     num_splits=None), None

    def flash_mla_with_kvcache(self, q, k_cache, block_table, cache_seqlens, head_dim_v, tile_scheduler_metadata,
                               num_splits=None, **kwargs):
        assert num_splits is None and head_dim_v == 512 and kwargs["is_fp8_kvcache"] and not kwargs["causal"]
        meta = tile_scheduler_metadata
        if meta.tile_scheduler_metadata is None:
            meta.tile_scheduler_metadata = self.torch.zeros((7, 8), dtype=self.torch.int32)
        return self.compat.flash_mla_with_kvcache(q, k_cache, block_table, cache_seqlens, head_dim_v, None, None,
                                                  **kwargs)


def test_whole_run_on_the_cpu_backend_with_stand_ins(tmp_path, monkeypatch):
    """main() end to end: per-layer rows and the whole step, check, graphs, timing, tables and JSON, with the
    CPU backend behind both implementations and no-op stand-ins for torch.cuda's streams, graphs and events."""
    torch = _torch_or_skip()
    import smla
    from smla import flashmla_compat as compat

    try:
        smla.version()
    except Exception as error:  # noqa: BLE001 - no libsmla.so built
        pytest.skip(f"libsmla.so not loadable: {error}")
    cuda = torch.cuda
    for name, value in dict(is_available=lambda: True, current_device=lambda: 0, synchronize=lambda *a: None,
                            empty_cache=lambda: None, _sleep=lambda cycles: None, Event=_FakeEvent,
                            Stream=_FakeStream, current_stream=lambda *a: _FakeStream(),
                            stream=lambda s: contextlib.nullcontext(), CUDAGraph=_FakeGraph,
                            graph=lambda g, **k: contextlib.nullcontext(),
                            get_device_properties=lambda d: types.SimpleNamespace(
                                name="stand-in", major=9, minor=0, multi_processor_count=132)).items():
        monkeypatch.setattr(cuda, name, value, raising=False)
    monkeypatch.setattr(smla, "cuda_available", lambda: True)
    monkeypatch.setattr(side, "pick_device", lambda torch: "cpu")
    monkeypatch.setattr(side, "copy_bandwidth_gbps", lambda torch, device: 1.0)
    monkeypatch.setattr(side, "import_flashmla", lambda directory: (_FakeFlashMLA(torch, compat), None))
    monkeypatch.setenv("SMLA_BACKEND", "cpu")
    json_path = tmp_path / "side.json"
    status = side.main(["--shapes", "flash-c4,flash-swa,flash-c4-tp4", "--batch", "1,3", "--step-batch", "1",
                        "--context", "512", "--pool-gb", "0.0005", "--index-sets", "2", "--calls-per-graph", "3",
                        "--replays", "2", "--rounds", "2", "--warmup", "1", "--json", str(json_path)])
    result = json.loads(json_path.read_text())
    assert status == 0, result["problems"]
    layers, steps = result["layers"], result["step"]
    assert [(row["shape"], row["b"]) for row in layers] == [
        ("flash-c4", 1), ("flash-c4", 3), ("flash-swa", 1), ("flash-swa", 3), ("flash-c4-tp4", 1), ("flash-c4-tp4", 3)]
    for row in layers:
        assert row["check"]["smla"]["ok"], row
        assert row["smla"]["samples"] == 4 and row["smla"]["median_us"] > 0
        if row["h"] == 16:
            assert "FlashMLA" not in row and "16 heads" in row["note"]
        else:
            assert row["check"]["FlashMLA"]["ok"] and row["check"]["max_abs_diff_out"] == 0
            assert row["ratio"] > 0 and row["flashmla_sm_parts"] == 7 and row["smla_kernel"]
    (step,) = steps
    assert step["layers"] == 43 and set(step["check"]) == {"swa", "c4", "c128"}
    assert {"smla", "FlashMLA", "FlashMLA, metadata in graph"} <= set(step) and step["ratio"] > 0
    assert result["metadata"]["method"]["calls_per_graph"] == 3


def test_side_by_side_on_the_gpu(tmp_path):
    """The real comparison, small: one shape and batch, no step. Needs PyTorch with a CUDA device, a CUDA build
    of libsmla and FlashMLA's peer build in .peers/build (scripts/peer-flashmla-build)."""
    torch = _torch_or_skip()
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device visible to PyTorch")
    build = os.path.join(REPO, ".peers", "build")
    if not os.path.isdir(os.path.join(build, "flash_mla")):
        pytest.skip("FlashMLA's peer build is not in .peers/build (scripts/peer-flashmla-build)")
    environment = dict(os.environ, PYTHONPATH=os.path.join(REPO, "python"))
    json_path = tmp_path / "side.json"
    done = subprocess.run([sys.executable, SCRIPT, "--shapes", "flash-c4", "--batch", "8", "--no-step",
                           "--pool-gb", "0.25", "--replays", "5", "--rounds", "2", "--json", str(json_path)],
                          capture_output=True, text=True, env=environment, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    (row,) = json.loads(json_path.read_text())["layers"]
    assert row["check"]["smla"]["ok"] and row["check"]["FlashMLA"]["ok"] and row["ratio"] > 0
