#!/usr/bin/env python3
"""smla against FlashMLA's sm90 sparse FP8 decode, side by side on the same tensors (issue 13).

    scripts/peer-flashmla-build        # once per machine: FlashMLA's sm90 decode into .peers/build
    PYTHONPATH=python SMLA_LIBRARY=build-gpu/libsmla.so python3 bench/flashmla_side_by_side.py \\
        [--shapes flash-c4,flash-swa,pro-c4,pro-c128-1m] [--batch 1,8,32,64,128] [--step-batch 1,4,8,32] \\
        [--json FILE] [--no-step] [--no-layers] [--dry-run] [--flashmla DIR]

For every named shape of smla-bench (bench/shapes.cpp) and batch, one process calls FlashMLA's
`flash_mla.flash_mla_with_kvcache` and smla's drop-in `smla.flashmla_compat.flash_mla_with_kvcache` with the
same arguments: q bf16 [b, s_q, h, 512], the main (sliding-window, P=256) cache and, for the c4/c128 shapes,
the extra (compressed) cache as FlashMLA's MODEL1 [pages, P, 1, 584] uint8 views of one KV pool of
--pool-gb (default 2.5 GB, split between the two caches in proportion to topk and extra_topk; every slot
written by smla's quantize-and-append, so every record is valid), random distinct slot ids (entry i of a row
drawn from the i-th of topk equal strata of the cache), full topk_length / extra_topk_length and a finite
per-head attn_sink. Each library's metadata object (get_mla_metadata) is filled by a first, untimed call
and reused, as an engine reuses one per step: FlashMLA's scheduler kernel is outside the timed region.

Check: the first index set's outputs of both against a float64 evaluation of the spec (section 4, on the
dequantized records) for up to 4 batch entries, with the spec's bf16-kernel tolerances (section 8: per
element abs 1e-3 or rel 2.01/128, cosine difference <= 5e-6, lse abs 1e-6 or rel 8.01/65536), plus the
largest difference between the two over the whole batch. Timing: each implementation's CUDA graph holds
--calls-per-graph calls (default 16) that rotate over --index-sets index sets (default 8, so that
consecutive calls read different tokens and not what L2 kept); a replay's time (CUDA events, after a spin
kernel that lets the host queue the replays) divided by the calls in it is one sample, --rounds rounds of
--replays replays (alternating the two implementations round by round), median (p10, p90 in the JSON).
Bytes are counted as smla-bench counts them (spec section 9: 584 per attended token, 1 KiB of q and of out
per head, 4 per index).

Whole step: one decode step of DSv4-Flash attention as `smla-bench --model dsv4-flash --context 8192`
models it (2 SWA + 21 C4 + 20 C128 layers, each with its own caches, scaled so that all of them fill the
pool, grouped by type), one CUDA graph per implementation holding --index-sets steps (each step its own
index sets); time per step = replay / steps. FlashMLA's metadata (one object per layer type) is computed
outside the graph; the "metadata in graph" column also times FlashMLA with its scheduler kernel captured
once per layer type and step, as an engine that builds the metadata inside its step graph would run it.

Output: a markdown table per part on stdout (ratio = FlashMLA time / smla time: > 1 means smla is faster)
and, with --json FILE, {"metadata": {...}, "layers": [...], "step": [...]}. Exit status: 0; 1 when a check
failed or a row could not run (all rows still printed); 2 without PyTorch or a CUDA device; 3 when FlashMLA
is not importable (build it with scripts/peer-flashmla-build).
"""

import argparse
import dataclasses
import datetime
import json
import math
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_FLASHMLA_DIR = os.path.join(REPO, ".peers", "build")

HEAD_DIM = 512
SOFTMAX_SCALE = HEAD_DIM ** -0.5
RECORD_BYTES, ROW_BYTES, NOPE_DIMS, GROUP_DIMS = 584, 576, 448, 64
# Spec section 9 (bench/shapes.h): what one call moves.
QUERY_BYTES_PER_HEAD = OUTPUT_BYTES_PER_HEAD = 1024
INDEX_BYTES = 4


@dataclasses.dataclass(frozen=True)
class LayerShape:
    """One decode call's geometry without the batch (bench/shapes.h)."""
    name: str
    heads: int
    seq_q: int
    topk: int
    main_page_block_size: int
    extra_topk: int = 0
    extra_page_block_size: int = 0


# bench/shapes.cpp's named shapes (tests/python/test_flashmla_side_by_side.py checks they agree).
SWA_PAGE, C4_PAGE, C128_PAGE, WINDOW = 256, 64, 2, 128
NAMED_SHAPES = {shape.name: shape for shape in (
    LayerShape("flash-swa", 64, 1, WINDOW, SWA_PAGE),
    LayerShape("flash-c4", 64, 1, WINDOW, SWA_PAGE, 512, C4_PAGE),
    LayerShape("flash-c4-tp4", 16, 1, WINDOW, SWA_PAGE, 512, C4_PAGE),
    LayerShape("flash-c4-tp8", 8, 1, WINDOW, SWA_PAGE, 512, C4_PAGE),
    LayerShape("flash-c128-64k", 64, 1, WINDOW, SWA_PAGE, 512, C128_PAGE),
    LayerShape("flash-c4-mtp", 64, 2, WINDOW, SWA_PAGE, 512, C4_PAGE),
    LayerShape("pro-c4", 128, 1, WINDOW, SWA_PAGE, 1024, C4_PAGE),
    LayerShape("pro-c128-1m", 128, 1, WINDOW, SWA_PAGE, 8192, C128_PAGE),
)}
DEFAULT_SHAPES = "flash-c4,flash-swa,pro-c4,pro-c128-1m"
FLASHMLA_HEADS = (64, 128)  # FlashMLA's sm90 sparse decode: 64 or 128 heads per call


@dataclasses.dataclass(frozen=True)
class ModelLayerType:
    """One layer type of a whole-model decode step (bench/shapes.h's ModelLayerType)."""
    shape: LayerShape
    num_layers: int
    main_length: int
    extra_length: int
    main_tokens_per_seq: int
    extra_tokens_per_seq: int


def round_up(value, multiple):
    return -(-value // multiple) * multiple


def dsv4_flash_layer_types(context):
    """bench/shapes.cpp's model_layer_types("dsv4-flash", context): 2 SWA + 21 C4 + 20 C128 layers, 64 heads."""
    if context < 1:
        raise ValueError("--context must be >= 1 token")
    heads, index_topk = 64, 512
    window_length = min(context, WINDOW)
    c4_entries, c128_entries = context // 4, context // 128
    swa = ModelLayerType(LayerShape("swa", heads, 1, WINDOW, SWA_PAGE), 2, window_length, 0, window_length, 0)
    c4 = ModelLayerType(LayerShape("c4", heads, 1, WINDOW, SWA_PAGE, index_topk, C4_PAGE), 21, window_length,
                        min(c4_entries, index_topk), window_length, max(c4_entries, 1))
    # Every compressed entry is attended; the index width is padded to a multiple of 64 (one tile).
    c128 = ModelLayerType(LayerShape("c128", heads, 1, WINDOW, SWA_PAGE, max(64, round_up(c128_entries, 64)),
                                     C128_PAGE), 20, window_length, c128_entries, window_length,
                          max(c128_entries, 1))
    return [swa, c4, c128]


def call_bytes(rows, heads, topk, extra_topk, attended_tokens):
    """bench/shapes.cpp's call_bytes: rows*(h*(q + out) + 4*(topk + extra_topk)) + 584*attended tokens."""
    per_row = heads * (QUERY_BYTES_PER_HEAD + OUTPUT_BYTES_PER_HEAD) + INDEX_BYTES * (topk + extra_topk)
    return rows * per_row + RECORD_BYTES * attended_tokens


def layer_call_bytes(shape, batch, main_length=None, extra_length=None):
    main = shape.topk if main_length is None else main_length
    extra = shape.extra_topk if extra_length is None else extra_length
    rows = batch * shape.seq_q
    return call_bytes(rows, shape.heads, shape.topk, shape.extra_topk, rows * (main + extra))


def parse_int_list(text, name):
    try:
        values = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise ValueError(f"{name} expects comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"{name} expects integers >= 1, got {text!r}")
    return values


def parse_shapes(text):
    names = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [name for name in names if name not in NAMED_SHAPES]
    if unknown or not names:
        raise ValueError(f"--shapes: unknown shape {', '.join(unknown) or repr(text)} (one of "
                         f"{', '.join(NAMED_SHAPES)})")
    return [NAMED_SHAPES[name] for name in names]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[2:]))
    parser.add_argument("--shapes", default=DEFAULT_SHAPES, help=f"named shapes (default {DEFAULT_SHAPES})")
    parser.add_argument("--batch", default="1,8,32,64,128", help="batches of the per-layer rows")
    parser.add_argument("--step-batch", default="1,4,8,32", help="batches of the whole DSv4-Flash step")
    parser.add_argument("--context", type=int, default=8192, help="context of the whole step (default 8192)")
    parser.add_argument("--no-step", action="store_true", help="skip the whole-step part")
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer part")
    parser.add_argument("--pool-gb", type=float, default=2.5, help="KV pool of each part, GB (default 2.5)")
    parser.add_argument("--index-sets", type=int, default=8, help="index sets rotated through (default 8)")
    parser.add_argument("--calls-per-graph", type=int, default=16, help="per-layer calls in one graph (default 16)")
    parser.add_argument("--replays", type=int, default=30, help="timed replays per round (default 30)")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds, implementations alternating (3)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed replays per graph before timing (3)")
    parser.add_argument("--check-rows", type=int, default=4, help="batch entries checked against float64 (4)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--json", default=None, help="also write the results as JSON to this file")
    parser.add_argument("--flashmla", default=DEFAULT_FLASHMLA_DIR,
                        help="directory holding the built flash_mla package (default .peers/build); an "
                             "installed flash_mla is used when it has none")
    parser.add_argument("--dry-run", action="store_true", help="print what would be measured; needs no GPU")
    options = parser.parse_args(argv)
    try:
        options.shape_list = parse_shapes(options.shapes)
        options.batches = parse_int_list(options.batch, "--batch")
        options.step_batches = parse_int_list(options.step_batch, "--step-batch")
    except ValueError as error:
        parser.error(str(error))
    for name in ("index_sets", "calls_per_graph", "replays", "rounds", "context", "check_rows"):
        if getattr(options, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if options.warmup < 0 or options.pool_gb <= 0:
        parser.error("--warmup must be >= 0 and --pool-gb > 0")
    return options


def planned_rows(options):
    """[(part, name, batch, bytes per call or step)] of a run, for --dry-run and the progress count."""
    rows = []
    if not options.no_layers:
        for shape in options.shape_list:
            rows += [("layer", shape.name, batch, layer_call_bytes(shape, batch)) for batch in options.batches]
    if not options.no_step:
        types = dsv4_flash_layer_types(options.context)
        for batch in options.step_batches:
            step_bytes = sum(t.num_layers * layer_call_bytes(t.shape, batch, t.main_length, t.extra_length)
                             for t in types)
            rows.append(("step", f"dsv4-flash@{options.context}", batch, step_bytes))
    return rows


# ---------------------------------------------------------------------------------------------------------
# Reference (spec sections 2-4) and tolerances (section 8) in torch: float64, on the tensors' device.

def e4m3_table(torch, device):
    """float64 value of each of the 256 e4m3fn codes (NaN for 0x7F and 0xFF)."""
    codes = torch.arange(256, dtype=torch.int64)
    sign = torch.where((codes & 0x80) != 0, -1.0, 1.0).double()
    exponent = ((codes >> 3) & 0xF).double()
    mantissa = (codes & 0x7).double()
    magnitude = torch.where(exponent == 0, mantissa / 8.0 * 2.0 ** -6, (1 + mantissa / 8.0) * 2.0 ** (exponent - 7))
    values = sign * magnitude
    values[(codes & 0x7F) == 0x7F] = float("nan")
    return values.to(device)


def bf16_bits_to_double(torch, bits):
    """int64 tensor of bf16 bit patterns -> float64."""
    word = (bits << 16) & 0xFFFFFFFF
    word = torch.where(word >= 2 ** 31, word - 2 ** 32, word).to(torch.int32)
    return word.view(torch.float32).double()


def dequantize_slots(torch, pool, page_block_size, slots, table=None):
    """float64 [n, 512] tokens at `slots` (int64 [n], all valid) of a pool [pages, page_stride] uint8."""
    stride = pool.shape[1]
    flat = pool.reshape(-1)
    slots = slots.to(torch.int64)
    page, row = slots // page_block_size, slots % page_block_size
    base = page * stride
    data = flat[(base + row * ROW_BYTES)[:, None] + torch.arange(ROW_BYTES, device=pool.device)].to(torch.int64)
    footer = flat[(base + page_block_size * ROW_BYTES + row * 8)[:, None] +
                  torch.arange(NOPE_DIMS // GROUP_DIMS, device=pool.device)].to(torch.int64)
    if table is None:
        table = e4m3_table(torch, pool.device)
    scales = torch.where((footer == 0) | (footer == 255), torch.zeros_like(footer, dtype=torch.float64),
                         torch.pow(2.0, (footer - 127).double()))
    nope = table[data[:, :NOPE_DIMS]] * scales.repeat_interleave(GROUP_DIMS, dim=1)
    rope_bytes = data[:, NOPE_DIMS:]
    rope = bf16_bits_to_double(torch, rope_bytes[:, 0::2] | (rope_bytes[:, 1::2] << 8))
    return torch.cat([nope, rope], dim=1)


def reference_rows(torch, q, caches, sink, rows, softmax_scale=SOFTMAX_SCALE):
    """float64 (out [r, s_q, h, 512], lse [r, s_q, h]) of batch entries `rows` (spec section 4).

    caches: [(pool, page_block_size, indices [b, s_q, w], lengths [b] or None)]; sink: [h] or None."""
    heads = q.shape[2]
    out = torch.zeros((len(rows), q.shape[1], heads, HEAD_DIM), dtype=torch.float64, device=q.device)
    lse = torch.full((len(rows), q.shape[1], heads), float("inf"), dtype=torch.float64, device=q.device)
    table = e4m3_table(torch, q.device)
    sink64 = (torch.full((heads,), float("-inf"), dtype=torch.float64, device=q.device) if sink is None
              else sink.double())
    for r, b in enumerate(rows):
        for t in range(q.shape[1]):
            keys = []
            for pool, page_block_size, indices, lengths in caches:
                width = indices.shape[-1]
                length = width if lengths is None else min(max(int(lengths[b]), 0), width)
                slots = indices[b, t, :length].to(torch.int64)
                slots = slots[slots >= 0]
                if slots.numel():
                    keys.append(dequantize_slots(torch, pool, page_block_size, slots, table))
            if not keys:
                continue
            k = torch.cat(keys)
            logits = softmax_scale * (q[b, t].double() @ k.T)  # [h, n]
            peak = logits.max(dim=1, keepdim=True).values
            weights = torch.exp(logits - peak)
            total = weights.sum(dim=1)
            lse[r, t] = torch.log(total) + peak[:, 0]
            out[r, t] = (weights @ k) / (total + torch.exp(sink64 - peak[:, 0]))[:, None]
    return out, lse


def compare_to_reference(torch, out, lse, reference_out, reference_lse):
    """Spec section 8 (bf16-MMA kernels) on out [r, s_q, h, 512] and lse [r, s_q, h] against float64."""
    actual = out.double()
    error = (actual - reference_out).abs()
    element_ok = (error < 1e-3) | (error / (reference_out.abs() + 1e-6) < 2.01 / 128)
    nan_out = int(torch.isnan(actual).sum())
    denominator = float((actual * actual + reference_out * reference_out).sum())
    cosine = 1 - 2 * float((actual * reference_out).sum()) / denominator if denominator > 0 else 0.0
    lse = lse.double()
    same_inf = bool(torch.equal(torch.isposinf(lse), torch.isposinf(reference_lse)) and
                    torch.equal(torch.isneginf(lse), torch.isneginf(reference_lse)))
    finite = torch.isfinite(reference_lse)
    lse_error = (lse[finite] - reference_lse[finite]).abs()
    lse_ok = (lse_error < 1e-6) | (lse_error / reference_lse[finite].abs() < 8.01 / 65536)
    result = dict(max_abs_err_out=float(error.nan_to_num(float("inf")).max()) if error.numel() else 0.0,
                  out_elements_off=int((~element_ok).sum()) + nan_out, cosine_difference=cosine,
                  max_abs_err_lse=float(lse_error.max()) if lse_error.numel() else 0.0,
                  lse_elements_off=int((~lse_ok).sum()) + int(torch.isnan(lse).sum()),
                  inf_positions_match=same_inf)
    result["ok"] = (result["out_elements_off"] == 0 and cosine <= 5e-6 and result["lse_elements_off"] == 0 and
                    same_inf)
    return result


# ---------------------------------------------------------------------------------------------------------
# GPU part.

class Setup:
    """Modules and device facts shared by every row."""

    def __init__(self, torch, smla, compat, flash_mla, device):
        self.torch, self.smla, self.compat, self.flash_mla, self.device = torch, smla, compat, flash_mla, device
        self.generator = torch.Generator(device=device)
        self.flashmla_cache_dtype = None  # "uint8", or "float8_e4m3fn" when this FlashMLA refuses uint8 views


def random_bf16(setup, shape):
    """q and KV values ~ N(0, 1)/10 clipped to [-1, 1] (spec section 8), bf16."""
    torch = setup.torch
    values = torch.randn(shape, generator=setup.generator, device=setup.device, dtype=torch.float32)
    return values.div_(10).clamp_(-1, 1).to(torch.bfloat16)


def make_cache(setup, page_block_size, min_tokens, budget_bytes):
    """A pool [pages, writer stride] uint8 of max(min_tokens, budget) tokens, every slot written by smla."""
    torch, smla = setup.torch, setup.smla
    stride = smla.writer_page_stride_bytes(page_block_size)
    pages = max(-(-min_tokens // page_block_size), int(budget_bytes // stride), 1)
    pages = min(pages, (2 ** 31 - 1) // page_block_size)  # slot ids are int32
    pool = torch.zeros((pages, stride), dtype=torch.uint8, device=setup.device)  # smla.allocate_cache's layout
    total = pages * page_block_size
    chunk = 1 << 18
    for first in range(0, total, chunk):
        count = min(chunk, total - first)
        slots = torch.arange(first, first + count, dtype=torch.int32, device=setup.device)
        smla.append(pool, random_bf16(setup, (count, HEAD_DIM)), slots, page_block_size=page_block_size)
    return pool


def flashmla_view(pool, page_block_size):
    """FlashMLA's [pages, P, 1, 584] view of a pool whose page stride is stride(0)."""
    return pool.as_strided((pool.shape[0], page_block_size, 1, RECORD_BYTES), (pool.stride(0), RECORD_BYTES,
                                                                               RECORD_BYTES, 1))


def stratified_indices(setup, rows, width, num_slots):
    """[rows, width] int32 distinct slot ids: entry i from the i-th of `width` equal strata of the slots."""
    torch = setup.torch
    position = torch.arange(width, dtype=torch.int64, device=setup.device)
    low = position * num_slots // width
    span = (position + 1) * num_slots // width - low
    draw = torch.rand((rows, width), generator=setup.generator, device=setup.device, dtype=torch.float64)
    offset = torch.minimum((draw * span).to(torch.int64), span - 1)
    return (low + offset).to(torch.int32)


class LayerCall:
    """One layer's tensors for one batch: caches (as FlashMLA views), index sets, lengths, q, sink."""

    def __init__(self, setup, shape, batch, main_pool, extra_pool, index_sets, main_length=None,
                 extra_length=None, q=None, sink=None):
        torch = setup.torch
        self.shape, self.batch = shape, batch
        self.main_pool, self.extra_pool = main_pool, extra_pool
        self.main_view = flashmla_view(main_pool, shape.main_page_block_size)
        self.extra_view = None if extra_pool is None else flashmla_view(extra_pool, shape.extra_page_block_size)
        rows = batch * shape.seq_q
        main_slots = main_pool.shape[0] * shape.main_page_block_size
        self.indices = [stratified_indices(setup, rows, shape.topk, main_slots).view(batch, shape.seq_q, shape.topk)
                        for _ in range(index_sets)]
        self.main_length = shape.topk if main_length is None else main_length
        self.topk_length = torch.full((batch,), self.main_length, dtype=torch.int32, device=setup.device)
        self.extra_indices = [None] * index_sets
        self.extra_topk_length = None
        self.extra_length = 0
        if extra_pool is not None:
            extra_slots = extra_pool.shape[0] * shape.extra_page_block_size
            self.extra_indices = [stratified_indices(setup, rows, shape.extra_topk, extra_slots).view(
                batch, shape.seq_q, shape.extra_topk) for _ in range(index_sets)]
            self.extra_length = shape.extra_topk if extra_length is None else extra_length
            self.extra_topk_length = torch.full((batch,), self.extra_length, dtype=torch.int32, device=setup.device)
        self.q = random_bf16(setup, (batch, shape.seq_q, shape.heads, HEAD_DIM)) if q is None else q
        self.sink = (torch.randn((shape.heads,), generator=setup.generator, device=setup.device, dtype=torch.float32)
                     if sink is None else sink)

    def bytes(self):
        return layer_call_bytes(self.shape, self.batch, self.main_length, self.extra_length)

    def call(self, module, meta, index_set, cache_dtype=None):
        """module.flash_mla_with_kvcache on index set `index_set`; returns (out, lse [b, h, s_q])."""
        main_view, extra_view = self.main_view, self.extra_view
        if cache_dtype is not None:
            main_view = main_view.view(cache_dtype)
            extra_view = None if extra_view is None else extra_view.view(cache_dtype)
        return module.flash_mla_with_kvcache(
            self.q, main_view, None, None, HEAD_DIM, meta, None, softmax_scale=SOFTMAX_SCALE, causal=False,
            is_fp8_kvcache=True, indices=self.indices[index_set], attn_sink=self.sink, extra_k_cache=extra_view,
            extra_indices_in_kvcache=self.extra_indices[index_set], topk_length=self.topk_length,
            extra_topk_length=self.extra_topk_length)

    def check_rows(self, count):
        entries = sorted({0, self.batch - 1, self.batch // 2, self.batch // 3})
        return entries[:max(1, count)]

    def reference(self, torch, rows, index_set=0):
        caches = [(self.main_pool, self.shape.main_page_block_size, self.indices[index_set], self.topk_length)]
        if self.extra_pool is not None:
            caches.append((self.extra_pool, self.shape.extra_page_block_size, self.extra_indices[index_set],
                           self.extra_topk_length))
        return reference_rows(torch, self.q, caches, self.sink, rows)


class Implementation:
    """smla's drop-in or FlashMLA, with one metadata object per layer kind (as an engine keeps them)."""

    def __init__(self, name, module, setup):
        self.name, self.module, self.setup = name, module, setup
        self.metas = {}

    def cache_dtype(self):
        if self.name == "FlashMLA" and self.setup.flashmla_cache_dtype == "float8_e4m3fn":
            return self.setup.torch.float8_e4m3fn
        return None

    def meta(self, key):
        if key not in self.metas:
            self.metas[key] = self.module.get_mla_metadata()[0]
        return self.metas[key]

    def call(self, layer, index_set, meta_key=None, meta=None):
        key = meta_key if meta_key is not None else (layer.shape.name, layer.batch)
        return layer.call(self.module, meta if meta is not None else self.meta(key), index_set, self.cache_dtype())


def first_flashmla_call(setup, flashmla, layer, meta_key=None):
    """FlashMLA's first call on `layer` (fills its metadata); falls back to fp8 cache views if uint8 is refused."""
    try:
        return flashmla.call(layer, 0, meta_key=meta_key)
    except (RuntimeError, TypeError, AssertionError) as error:
        if setup.flashmla_cache_dtype is not None or "dtype" not in str(error).lower():
            raise
        setup.flashmla_cache_dtype = "float8_e4m3fn"
        flashmla.metas.clear()
        return flashmla.call(layer, 0, meta_key=meta_key)


def capture(torch, enqueue):
    """(CUDA graph of enqueue(), its result): one eager run on a side stream first, as torch advises."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        enqueue()
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        result = enqueue()
    torch.cuda.synchronize()
    return graph, result


def percentile(values, fraction):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = fraction * (len(ordered) - 1)
    low = int(math.floor(position))
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def time_graphs(torch, graphs, options):
    """{name: [us per unit]} for graphs {name: (graph, units per replay)}: --rounds rounds of --replays replays
    each, the implementations alternating round by round, after --warmup replays of each."""
    for graph, _ in graphs.values():
        for _ in range(options.warmup):
            graph.replay()
    torch.cuda.synchronize()
    samples = {name: [] for name in graphs}
    names = list(graphs)
    sleep = getattr(torch.cuda, "_sleep", None)
    for round_index in range(options.rounds):
        for name in (names if round_index % 2 == 0 else names[::-1]):
            graph, units = graphs[name]
            events = [torch.cuda.Event(enable_timing=True) for _ in range(options.replays + 1)]
            if sleep is not None:
                sleep(10_000_000)  # ~5 ms of GPU spin while the host queues the replays
            events[0].record()
            for i in range(options.replays):
                graph.replay()
                events[i + 1].record()
            torch.cuda.synchronize()
            samples[name] += [events[i].elapsed_time(events[i + 1]) * 1000.0 / units for i in range(options.replays)]
    return samples


def summarize(samples):
    return dict(median_us=percentile(samples, 0.5), p10_us=percentile(samples, 0.1), p90_us=percentile(samples, 0.9),
                samples=len(samples))


def record_samples(row, samples):
    """Each implementation's timing summary in the row, with GB/s from the row's byte count."""
    for name, values in samples.items():
        row[name] = summarize(values)
        row[name]["GB_per_s"] = row["bytes"] / (row[name]["median_us"] * 1e-6) / 1e9


def max_abs_difference(torch, a, b):
    difference = (a.double() - b.double()).abs()
    finite = torch.isfinite(difference)
    return float(difference[finite].max()) if bool(finite.any()) else 0.0


def check_layer(torch, layer, results, check_rows):
    """{impl: spec check of its index-set-0 outputs} plus their largest difference over the whole batch."""
    rows = layer.check_rows(check_rows)
    reference_out, reference_lse = layer.reference(torch, rows)
    checks = {}
    for name, (out, lse) in results.items():
        lse_rows = lse.transpose(1, 2)  # [b, s_q, h]
        checks[name] = compare_to_reference(torch, out[rows], lse_rows[rows], reference_out, reference_lse)
    if len(results) == 2:
        (out_a, lse_a), (out_b, lse_b) = results.values()
        checks["max_abs_diff_out"] = max_abs_difference(torch, out_a, out_b)
        checks["max_abs_diff_lse"] = max_abs_difference(torch, lse_a, lse_b)
    checks["rows_checked"] = rows
    return checks


def smla_plan_facts(compat_meta):
    plan = getattr(compat_meta, "tile_scheduler_metadata", None)
    if plan is None:
        return {}
    return dict(smla_kernel=getattr(plan, "kernel_name", "?"), smla_splits=getattr(plan, "num_splits", None))


def flashmla_facts(meta):
    shape = getattr(getattr(meta, "tile_scheduler_metadata", None), "shape", None)
    return {} if not shape else dict(flashmla_sm_parts=int(shape[0]))


def run_layer_row(setup, options, shape, batch, main_pool, extra_pool):
    """One per-layer row: check, capture, time. Returns the row dict."""
    torch = setup.torch
    row = dict(part="layer", shape=shape.name, b=batch, h=shape.heads, s_q=shape.seq_q, topk=shape.topk,
               extra_topk=shape.extra_topk, P_main=shape.main_page_block_size, P_extra=shape.extra_page_block_size,
               errors=[])
    setup.generator.manual_seed(options.seed + batch)
    layer = LayerCall(setup, shape, batch, main_pool, extra_pool, options.index_sets)
    row["bytes"] = layer.bytes()
    smla_impl = Implementation("smla", setup.compat, setup)
    flash_impl = Implementation("FlashMLA", setup.flash_mla, setup)
    results, graphs, impls = {}, {}, []
    try:
        results["smla"] = smla_impl.call(layer, 0)
        impls.append(smla_impl)
    except Exception as error:  # noqa: BLE001 - one failing row must not stop the others
        row["errors"].append(f"smla: {type(error).__name__}: {error}")
    if shape.heads not in FLASHMLA_HEADS:
        row["note"] = f"FlashMLA not run: {shape.heads} heads (its sm90 decode takes 64 or 128)"
    else:
        try:
            results["FlashMLA"] = first_flashmla_call(setup, flash_impl, layer)
            impls.append(flash_impl)
        except Exception as error:  # noqa: BLE001
            row["errors"].append(f"FlashMLA: {type(error).__name__}: {str(error).splitlines()[0][:300]}")
    torch.cuda.synchronize()
    if results:
        row["check"] = check_layer(torch, layer, results, options.check_rows)
    row.update(smla_plan_facts(smla_impl.metas.get((shape.name, batch))))
    row.update(flashmla_facts(flash_impl.metas.get((shape.name, batch))))
    calls = options.calls_per_graph
    last_set = (calls - 1) % options.index_sets
    for impl in impls:
        def enqueue(impl=impl):
            result = None
            for k in range(calls):
                result = impl.call(layer, k % options.index_sets)
            return result
        try:
            graphs[impl.name] = capture(torch, enqueue)
        except Exception as error:  # noqa: BLE001
            row["errors"].append(f"{impl.name}: graph capture: {type(error).__name__}: {error}")
    if graphs:
        record_samples(row, time_graphs(torch, {name: (graph, calls) for name, (graph, _) in graphs.items()},
                                        options))
        for impl in impls:  # the graph's last call against the same call made eagerly
            if impl.name in graphs:
                graph_out = graphs[impl.name][1][0]
                eager_out = impl.call(layer, last_set)[0]
                torch.cuda.synchronize()
                row[impl.name]["graph_vs_eager_max_abs"] = max_abs_difference(torch, graph_out, eager_out)
    if "smla" in row and "FlashMLA" in row:
        row["ratio"] = row["FlashMLA"]["median_us"] / row["smla"]["median_us"]
    del graphs, results
    setup.compat.clear_plan_cache()
    return row


def run_layers(setup, options, progress, results):
    torch = setup.torch
    pool_bytes = options.pool_gb * 1e9
    for shape in options.shape_list:
        setup.generator.manual_seed(options.seed)
        main_share = shape.topk / (shape.topk + shape.extra_topk)
        main_pool = make_cache(setup, shape.main_page_block_size, shape.topk, pool_bytes * main_share)
        extra_pool = None
        if shape.extra_topk:
            extra_pool = make_cache(setup, shape.extra_page_block_size, shape.extra_topk, pool_bytes * (1 - main_share))
        torch.cuda.synchronize()
        for batch in options.batches:
            label = progress()
            try:
                row = run_layer_row(setup, options, shape, batch, main_pool, extra_pool)
            except Exception as error:  # noqa: BLE001 - e.g. out of memory: record it, go on
                row = dict(part="layer", shape=shape.name, b=batch, h=shape.heads,
                           errors=[f"{type(error).__name__}: {error}"])
                setup.compat.clear_plan_cache()
            results.add("layers", row)
            print(f"{label} {shape.name} b={batch}: {describe(row)}", file=sys.stderr, flush=True)
            torch.cuda.empty_cache()
        del main_pool, extra_pool
        torch.cuda.empty_cache()


def run_step(setup, options, batch):
    """One whole DSv4-Flash attention step per implementation (and FlashMLA with its metadata in the graph)."""
    torch = setup.torch
    types = dsv4_flash_layer_types(options.context)
    row = dict(part="step", model="dsv4-flash", context=options.context, b=batch,
               layers=sum(t.num_layers for t in types), errors=[])
    setup.generator.manual_seed(options.seed + 1000 + batch)
    natural = sum(t.num_layers * batch * (t.main_tokens_per_seq + t.extra_tokens_per_seq) * RECORD_BYTES
                  for t in types)
    scale = options.pool_gb * 1e9 / natural
    q = random_bf16(setup, (batch, 1, types[0].shape.heads, HEAD_DIM))
    sink = torch.randn((types[0].shape.heads,), generator=setup.generator, device=setup.device, dtype=torch.float32)
    layers = []  # (type name, LayerCall), grouped by type as smla-bench's step is
    for layer_type in types:
        shape = layer_type.shape
        for _ in range(layer_type.num_layers):
            main_pool = make_cache(setup, shape.main_page_block_size, shape.topk,
                                   scale * batch * layer_type.main_tokens_per_seq * RECORD_BYTES)
            extra_pool = None
            if shape.extra_topk:
                extra_pool = make_cache(setup, shape.extra_page_block_size, shape.extra_topk,
                                        scale * batch * layer_type.extra_tokens_per_seq * RECORD_BYTES)
            layers.append((shape.name, LayerCall(setup, shape, batch, main_pool, extra_pool, options.index_sets,
                                                 layer_type.main_length, layer_type.extra_length, q, sink)))
    torch.cuda.synchronize()
    row["bytes"] = sum(layer.bytes() for _, layer in layers)
    steps = options.index_sets
    smla_impl = Implementation("smla", setup.compat, setup)
    flash_impl = Implementation("FlashMLA", setup.flash_mla, setup)
    impls = []
    # First calls (untimed): fill each kind's metadata and check the first layer of each kind.
    first_layers = {}
    for kind, layer in layers:
        first_layers.setdefault(kind, layer)
    results = {kind: {} for kind in first_layers}
    for impl in (smla_impl, flash_impl):
        try:
            for kind, layer in first_layers.items():
                results[kind][impl.name] = (first_flashmla_call(setup, impl, layer, meta_key=kind)
                                            if impl is flash_impl else impl.call(layer, 0, meta_key=kind))
            impls.append(impl)
        except Exception as error:  # noqa: BLE001
            row["errors"].append(f"{impl.name}: {type(error).__name__}: {str(error).splitlines()[0][:300]}")
            for by_impl in results.values():
                by_impl.pop(impl.name, None)
    torch.cuda.synchronize()
    row["check"] = {kind: check_layer(torch, first_layers[kind], by_impl, options.check_rows)
                    for kind, by_impl in results.items() if by_impl}
    del results

    def step_enqueue(impl, fresh_metas=False):
        def enqueue():
            result = None
            for step in range(steps):
                metas = {kind: impl.module.get_mla_metadata()[0] for kind in impl.metas} if fresh_metas else None
                for kind, layer in layers:
                    if metas is None:
                        result = impl.call(layer, step % options.index_sets, meta_key=kind)
                    else:
                        result = impl.call(layer, step % options.index_sets, meta=metas[kind])
            return result
        return enqueue

    graphs = {}
    for impl in impls:
        try:
            graphs[impl.name] = capture(torch, step_enqueue(impl))
        except Exception as error:  # noqa: BLE001
            row["errors"].append(f"{impl.name}: step graph capture: {type(error).__name__}: {error}")
    if flash_impl in impls:
        try:
            graphs["FlashMLA, metadata in graph"] = capture(torch, step_enqueue(flash_impl, fresh_metas=True))
        except Exception as error:  # noqa: BLE001
            row["errors"].append(f"FlashMLA (metadata in graph): capture: {type(error).__name__}: {error}")
    if graphs:
        record_samples(row, time_graphs(torch, {name: (graph, steps) for name, (graph, _) in graphs.items()},
                                        options))
    if "smla" in row and "FlashMLA" in row:
        row["ratio"] = row["FlashMLA"]["median_us"] / row["smla"]["median_us"]
    if "smla" in row and "FlashMLA, metadata in graph" in row:
        row["ratio_metadata_in_graph"] = row["FlashMLA, metadata in graph"]["median_us"] / row["smla"]["median_us"]
    row["smla_kernels"] = sorted({smla_plan_facts(meta).get("smla_kernel", "?") for meta in smla_impl.metas.values()})
    del graphs, layers
    setup.compat.clear_plan_cache()
    return row


def run_steps(setup, options, progress, results):
    torch = setup.torch
    for batch in options.step_batches:
        label = progress()
        try:
            row = run_step(setup, options, batch)
        except Exception as error:  # noqa: BLE001
            row = dict(part="step", model="dsv4-flash", context=options.context, b=batch,
                       errors=[f"{type(error).__name__}: {error}"])
            setup.compat.clear_plan_cache()
        results.add("step", row)
        print(f"{label} dsv4-flash@{options.context} step b={batch}: {describe(row)}", file=sys.stderr, flush=True)
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------------------
# Reporting.

def check_passed(row):
    check = row.get("check") or {}
    if row.get("part") == "step":
        return all(per_kind.get(name, {}).get("ok", False) for per_kind in check.values()
                   for name in ("smla", "FlashMLA") if name in per_kind) and bool(check)
    return all(check.get(name, {}).get("ok", False) for name in ("smla", "FlashMLA") if name in check) and bool(check)


def check_cell(row):
    check = row.get("check") or {}
    if not check:
        return "not checked"
    per_kind = check.values() if row.get("part") == "step" else [check]
    parts = []
    for name in ("smla", "FlashMLA"):
        results = [kind[name] for kind in per_kind if name in kind]
        if results:
            parts.append(f"{name} {'ok' if all(r['ok'] for r in results) else 'FAILED'}")
    differences = [kind.get("max_abs_diff_out") for kind in per_kind if kind.get("max_abs_diff_out") is not None]
    if differences:
        parts.append(f"max abs diff {max(differences):.1e}")
    return ", ".join(parts)


def fmt_us(row, name):
    entry = row.get(name)
    return f"{entry['median_us']:.1f}" if entry else "-"


def describe(row):
    text = f"smla {fmt_us(row, 'smla')} us, FlashMLA {fmt_us(row, 'FlashMLA')} us"
    if "ratio" in row:
        text += f", FlashMLA/smla {row['ratio']:.2f}"
    text += f"; {check_cell(row)}"
    if row.get("note"):
        text += f"; {row['note']}"
    if row.get("errors"):
        text += "; errors: " + " | ".join(row["errors"])
    return text


def layer_table(rows):
    lines = ["| shape | b | h | topk+extra | smla us | FlashMLA us | FlashMLA/smla | smla GB/s | FlashMLA GB/s | "
             "smla kernel (splits) | FlashMLA sm parts | check |", "|" + "---|" * 12]
    for row in rows:
        def rate(name):
            return f"{row[name]['GB_per_s']:.0f}" if name in row else "-"
        ratio = f"{row['ratio']:.2f}" if "ratio" in row else "-"
        widths = f"{row.get('topk', '?')}+{row.get('extra_topk', '?')}"
        lines.append(f"| {row['shape']} | {row['b']} | {row['h']} | {widths} | {fmt_us(row, 'smla')} | "
                     f"{fmt_us(row, 'FlashMLA')} | {ratio} | {rate('smla')} | {rate('FlashMLA')} | "
                     f"{row.get('smla_kernel', '-')} ({row.get('smla_splits', '-')}) | "
                     f"{row.get('flashmla_sm_parts', '-')} | {check_cell(row)} |")
    return "\n".join(lines)


def step_table(rows):
    lines = ["| model | context | b | layers | smla us/step | FlashMLA us/step | FlashMLA/smla | "
             "FlashMLA, metadata in graph, us/step | its ratio | check |", "|" + "---|" * 10]
    for row in rows:
        ratio = f"{row['ratio']:.2f}" if "ratio" in row else "-"
        ratio_in_graph = f"{row['ratio_metadata_in_graph']:.2f}" if "ratio_metadata_in_graph" in row else "-"
        lines.append(f"| {row['model']} | {row['context']} | {row['b']} | {row.get('layers', '-')} | "
                     f"{fmt_us(row, 'smla')} | {fmt_us(row, 'FlashMLA')} | {ratio} | "
                     f"{fmt_us(row, 'FlashMLA, metadata in graph')} | {ratio_in_graph} | {check_cell(row)} |")
    return "\n".join(lines)


def short_sources(lines):
    """'FlashMLA 9241ae3, cutlass 147f567' from .peers/SOURCES.txt's first lines."""
    return ", ".join(" ".join(word[:7] if i == 1 else word for i, word in enumerate(line.split()[:2]))
                     for line in lines)


def git_commit():
    """scripts/source-id's name for the source tree: the short commit, with "-dirty-tree-<tree id>" when the
    files differ from it (the tree id still names them where the git metadata is older than the files)."""
    try:
        result = subprocess.run(["bash", os.path.join(REPO, "scripts", "source-id"), REPO], capture_output=True,
                                text=True, timeout=30)
        return result.stdout.strip() if result.returncode == 0 and result.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def copy_bandwidth_gbps(torch, device, nbytes=1 << 30):
    """Device-to-device copy, read + write counted, best of 10 (as smla-bench reports it)."""
    source = torch.empty(nbytes, dtype=torch.uint8, device=device)
    destination = torch.empty_like(source)
    destination.copy_(source)
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(10):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        destination.copy_(source)
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) * 1e-3)
    del source, destination
    torch.cuda.empty_cache()
    return 2 * nbytes / best / 1e9


class Results:
    """The rows so far; with a JSON path, rewritten after every row so that a crash keeps what was measured."""

    def __init__(self, path, metadata):
        self.path, self.metadata = path, metadata
        self.layers, self.step = [], []

    def add(self, part, row):
        getattr(self, part).append(row)
        self.save()

    def problems(self):
        return [f"{row.get('shape', row.get('model'))} b={row['b']}: " +
                ("; ".join(row.get("errors") or []) or "check failed")
                for row in self.layers + self.step if row.get("errors") or not check_passed(row)]

    def save(self):
        problems = self.problems()
        if self.path:
            with open(self.path, "w") as handle:
                json.dump(dict(metadata=self.metadata, layers=self.layers, step=self.step, problems=problems), handle,
                          indent=1)
        return problems


def pick_device(torch):
    return f"cuda:{torch.cuda.current_device()}"


def import_flashmla(directory):
    """(flash_mla module, None) or (None, reason)."""
    if directory and os.path.isdir(os.path.join(directory, "flash_mla")):
        sys.path.insert(0, os.path.abspath(directory))
    try:
        import flash_mla
        import flash_mla.cuda  # noqa: F401 - the extension, not only the Python package
    except Exception as error:  # noqa: BLE001 - ImportError, or a broken build (undefined symbol, ...)
        return None, f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    if not hasattr(flash_mla, "flash_mla_with_kvcache") or not hasattr(flash_mla, "get_mla_metadata"):
        return None, f"{flash_mla.__file__} has no flash_mla_with_kvcache / get_mla_metadata"
    return flash_mla, None


def main(argv=None):
    options = parse_args(argv)
    plan = planned_rows(options)
    if options.dry_run:
        for part, name, batch, nbytes in plan:
            print(f"{part} {name} b={batch}: {nbytes / 1e6:.3f} MB per {'call' if part == 'layer' else 'step'}")
        return 0
    try:
        import torch
    except ImportError as error:
        print(f"flashmla_side_by_side: needs PyTorch with CUDA ({error})", file=sys.stderr)
        return 2
    flash_mla, reason = import_flashmla(options.flashmla)
    if flash_mla is None:
        print(f"flashmla_side_by_side: FlashMLA is not importable ({reason}). Build it with "
              f"scripts/peer-flashmla-build (FlashMLA's sm90 sparse decode into .peers/build; the sources come from "
              f"scripts/peer-flashmla-fetch), or pass --flashmla DIR holding a built flash_mla package.",
              file=sys.stderr)
        return 3
    if not torch.cuda.is_available():
        print("flashmla_side_by_side: needs a CUDA device (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    sys.path.insert(0, os.path.join(REPO, "python"))
    import smla
    from smla import flashmla_compat
    if not smla.cuda_available():
        print(f"flashmla_side_by_side: smla sees no usable CUDA device ({smla.library_path()})", file=sys.stderr)
        return 2
    device = pick_device(torch)
    properties = torch.cuda.get_device_properties(device)
    if (properties.major, properties.minor) != (9, 0):
        print(f"flashmla_side_by_side: warning: {properties.name} is sm_{properties.major}{properties.minor}; the "
              "FlashMLA peer build holds sm_90a code only", file=sys.stderr)
    setup = Setup(torch, smla, flashmla_compat, flash_mla, device)
    sources = os.path.join(REPO, ".peers", "SOURCES.txt")
    metadata = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        command=" ".join([os.path.basename(sys.argv[0])] + (sys.argv[1:] if argv is None else list(argv))),
        device=f"{properties.name} ({device}, sm_{properties.major}{properties.minor}, "
               f"{properties.multi_processor_count} SMs)",
        torch=torch.__version__, torch_cuda=torch.version.cuda, smla_version=smla.version(),
        smla_library=smla.library_path(), smla_commit=git_commit(),
        flashmla=flash_mla.__file__,
        flashmla_sources=(open(sources).read().strip().splitlines()[:2] if os.path.exists(sources)
                          else ["unknown (no .peers/SOURCES.txt)"]),
        copy_GB_per_s=copy_bandwidth_gbps(torch, device),
        method=dict(pool_gb=options.pool_gb, index_sets=options.index_sets, calls_per_graph=options.calls_per_graph,
                    replays=options.replays, rounds=options.rounds, warmup=options.warmup, seed=options.seed,
                    statistic="median of per-call (per-step) times, one sample per graph replay / calls (steps)"))
    print(f"# smla vs FlashMLA sparse FP8 decode: {metadata['device']}, torch {metadata['torch']} "
          f"(CUDA {metadata['torch_cuda']}), copy {metadata['copy_GB_per_s']:.0f} GB/s")
    print(f"# smla {metadata['smla_version']} ({metadata['smla_commit']}, {metadata['smla_library']}); FlashMLA "
          f"{metadata['flashmla']} ({short_sources(metadata['flashmla_sources'])})")
    print(f"# method: CUDA graphs of {options.calls_per_graph} calls (per layer) or {options.index_sets} steps "
          f"(whole step) over {options.index_sets} rotating index sets, {options.pool_gb:g} GB KV pool, median of "
          f"{options.rounds}x{options.replays} replays; ratio = FlashMLA/smla (> 1: smla faster)", flush=True)
    counter = iter(range(1, len(plan) + 1))

    def progress():
        return f"[{next(counter)}/{len(plan)}]"

    results = Results(options.json, metadata)
    started = time.time()
    if not options.no_layers:
        run_layers(setup, options, progress, results)
    if not options.no_step:
        run_steps(setup, options, progress, results)
    metadata["wall_s"] = round(time.time() - started, 1)
    if results.layers:
        print("\n## Per layer call (us per call)\n")
        print(layer_table(results.layers))
    if results.step:
        print(f"\n## Whole DSv4-Flash attention step, context {options.context} (us per step, one graph per "
              f"implementation)\n")
        print(step_table(results.step))
    problems = results.save()
    if options.json:
        print(f"\n# JSON: {options.json}")
    print(f"# wall time {metadata['wall_s']} s")
    if problems:
        print("\n# PROBLEMS (exit status 1):\n" + "\n".join(f"#   {line}" for line in problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
