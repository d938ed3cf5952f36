#!/usr/bin/env python3
"""DeepSeek-V4-Flash attention decode loop with smla (spec section 7).

43 layers with the real mix (2 SWA-only, 21 C4, 20 C128), per-layer caches laid out as engines
allocate them (SWA P=256 as one ring page per request, C4 P=64, C128 P=2, pages scattered through a
random page table). Each step appends the new token's KV (random bf16) to every SWA cache, to the C4
caches every 4th position and to the C128 caches every 128th, builds the SWA indices (last 128
positions), random top-512 selections over the C4 entries and all C128 entries, and runs every layer.

On CUDA each batch size (1, 2, 4, 8, 12, 16) gets one CUDA graph holding all 43 layers' decodes;
attention time per step comes from CUDA events around the graph replays. With --device cpu the CPU
backend runs a tiny context with a few layers and steps and prints the same table.

    python3 examples/dsv4_decode_step.py                  # CUDA, needs PyTorch
    python3 examples/dsv4_decode_step.py --device cpu     # NumPy only
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import smla  # noqa: E402

WINDOW = 128  # sliding window: main topk
SWA_PAGE, C4_PAGE, C128_PAGE = 256, 64, 2
C4_TOPK = 512  # DSv4-Flash index_topk
SWA_ONLY, C4, C128 = "swa", "c4", "c128"


def dsv4_flash_layer_mix(num_layers):
    """The first `num_layers` of DSv4-Flash's 43: 2 SWA-only, then C4 and C128 alternating (21 + 20)."""
    full = [SWA_ONLY, SWA_ONLY] + [C4 if i % 2 == 0 else C128 for i in range(41)]
    if num_layers >= len(full):
        return full
    # A short run keeps one of each kind first, so every kind of call is exercised.
    short = [SWA_ONLY, C4, C128] + [C4 if i % 2 == 0 else C128 for i in range(num_layers)]
    return short[:num_layers]


def round_up(value, multiple):
    return -(-value // multiple) * multiple


class Device:
    """The few array operations the loop needs, on NumPy (CPU backend) or torch (CUDA)."""

    def __init__(self, name, seed):
        self.name = name
        self.rng = np.random.default_rng(seed)
        if name != "cpu":
            import torch

            self.torch = torch
            torch.manual_seed(seed)

    def random_tokens(self, count):
        """Random bf16 KV rows [count, 512] ~ N(0, 1)/10 clipped to [-1, 1]."""
        if self.name == "cpu":
            return smla.float_to_bf16(np.clip(self.rng.standard_normal((count, 512)) / 10, -1, 1))
        values = (self.torch.randn(count, 512, device=self.name) / 10).clamp_(-1, 1)
        return values.to(self.torch.bfloat16)

    def upload(self, array):
        """A device copy of a host int32/float32 array."""
        return array if self.name == "cpu" else self.torch.from_numpy(array).to(self.name)

    def copy_into(self, static, array):
        if self.name == "cpu":
            static[...] = array
        else:
            static.copy_(self.torch.from_numpy(array), non_blocking=False)


class LayerCaches:
    """One layer's SWA cache and its compressed cache (if any), with per-request page tables."""

    def __init__(self, device, kind, max_batch, max_positions, rng):
        self.kind = kind
        self.swa_pages = rng.permutation(max_batch).astype(np.int64)  # one ring page per request
        self.swa = smla.allocate_cache(max_batch, SWA_PAGE, device=device.name)
        self.extra = None
        if kind != SWA_ONLY:
            page_block_size, ratio = (C4_PAGE, 4) if kind == C4 else (C128_PAGE, 128)
            pages_per_request = max(1, round_up(max_positions // ratio, page_block_size) // page_block_size)
            self.extra_page_block_size, self.ratio = page_block_size, ratio
            self.extra_pages = rng.permutation(max_batch * pages_per_request).reshape(max_batch, pages_per_request)
            self.extra = smla.allocate_cache(max_batch * pages_per_request, page_block_size, device=device.name)
        self.swa_layout = smla.CacheLayout.from_tensor(self.swa, SWA_PAGE)
        self.extra_layout = (None if self.extra is None
                             else smla.CacheLayout.from_tensor(self.extra, self.extra_page_block_size))

    def swa_slots(self, requests, positions):
        """Ring slot of each (request, position): page of the request, row = position % 256."""
        return (self.swa_pages[requests] * SWA_PAGE + positions % SWA_PAGE).astype(np.int32)

    def extra_slots(self, requests, entries):
        pages = self.extra_pages[requests, entries // self.extra_page_block_size]
        return (pages * self.extra_page_block_size + entries % self.extra_page_block_size).astype(np.int32)


class Model:
    """Caches of every layer for up to max_batch requests, all at the same position."""

    def __init__(self, device, num_layers, max_batch, context, steps):
        self.device = device
        self.kinds = dsv4_flash_layer_mix(num_layers)
        self.max_batch = max_batch
        self.max_positions = context + steps + 1
        rng = device.rng
        self.layers = [LayerCaches(device, kind, max_batch, self.max_positions, rng) for kind in self.kinds]
        self.c128_width = max(64, round_up(self.max_positions // 128, 64))
        self.position = 0
        self.prefill(context)

    def _append(self, layout, slots):
        smla.append(layout, self.device.random_tokens(len(slots)), self.device.upload(slots))

    def prefill(self, context):
        """Writes the KV of positions [0, context) for every request (the SWA keeps the last 256)."""
        requests = np.arange(self.max_batch)
        for layer in self.layers:
            swa_positions = np.arange(max(0, context - SWA_PAGE), context)
            r, p = np.meshgrid(requests, swa_positions, indexing="ij")
            if r.size:
                self._append(layer.swa_layout, layer.swa_slots(r.ravel(), p.ravel()))
            if layer.extra is not None:
                entries = np.arange(context // layer.ratio)
                r, e = np.meshgrid(requests, entries, indexing="ij")
                if r.size:
                    self._append(layer.extra_layout, layer.extra_slots(r.ravel(), e.ravel()))
        self.position = context

    def append_step(self):
        """KV of the token at self.position for every request, then advance the position."""
        requests = np.arange(self.max_batch)
        position = np.full(self.max_batch, self.position)
        for layer in self.layers:
            self._append(layer.swa_layout, layer.swa_slots(requests, position))
            if layer.extra is not None and (self.position + 1) % layer.ratio == 0:
                entry = np.full(self.max_batch, (self.position + 1) // layer.ratio - 1)
                self._append(layer.extra_layout, layer.extra_slots(requests, entry))
        self.position += 1

    # ---- per-step index lists (host-side, as an engine's scheduler builds them) ----
    def swa_indices(self, batch):
        """[b, 1, 128] slot ids of the last 128 positions (ending at the current token), -1 beyond."""
        last = self.position - 1
        offsets = np.arange(WINDOW)
        positions = last - offsets
        requests = np.arange(batch)[:, None]
        slots = self.layers[0].swa_slots(np.broadcast_to(requests, (batch, WINDOW)),
                                         np.broadcast_to(np.maximum(positions, 0), (batch, WINDOW)))
        slots = np.where(positions >= 0, slots, -1)
        lengths = np.full(batch, min(self.position, WINDOW), np.int32)
        return slots.reshape(batch, 1, WINDOW).astype(np.int32), lengths

    def c4_indices(self, layer, batch):
        """Random top-512 selection over the C4 entries written so far (the indexer's output)."""
        count = self.position // 4
        length = min(count, C4_TOPK)
        indices = np.full((batch, 1, C4_TOPK), -1, np.int32)
        for request in range(batch):
            chosen = self.device.rng.choice(count, size=length, replace=False) if length else np.zeros(0, int)
            indices[request, 0, :length] = layer.extra_slots(np.full(length, request), chosen)
        return indices, np.full(batch, length, np.int32)

    def c128_indices(self, layer, batch):
        """All C128 entries written so far, padded with -1 to a multiple of 64."""
        count = self.position // 128
        indices = np.full((batch, 1, self.c128_width), -1, np.int32)
        for request in range(batch):
            indices[request, 0, :count] = layer.extra_slots(np.full(count, request), np.arange(count))
        return indices, np.full(batch, count, np.int32)


class BatchRunner:
    """Plans, static input buffers and (on CUDA) the captured graph for one batch size."""

    def __init__(self, model, batch, num_heads, backend):
        device = model.device
        self.model, self.batch, self.device = model, batch, device
        plan_device = "cpu" if device.name == "cpu" else device.name
        self.plans = {
            SWA_ONLY: smla.plan(batch, 1, num_heads, WINDOW, backend=backend, device=plan_device),
            C4: smla.plan(batch, 1, num_heads, WINDOW, C4_TOPK, backend=backend, device=plan_device),
            C128: smla.plan(batch, 1, num_heads, WINDOW, model.c128_width, backend=backend, device=plan_device),
        }
        rng = device.rng
        self.q = self._bf16_input(device, rng, (batch, 1, num_heads, 512))
        self.sink = device.upload(rng.standard_normal(num_heads).astype(np.float32))
        swa_indices, swa_lengths = model.swa_indices(batch)
        self.swa_indices, self.swa_lengths = device.upload(swa_indices), device.upload(swa_lengths)
        self.extra_inputs = []
        for layer in model.layers:
            if layer.kind == SWA_ONLY:
                self.extra_inputs.append(None)
                continue
            indices, lengths = self._layer_extra(layer)
            self.extra_inputs.append((device.upload(indices), device.upload(lengths)))
        if device.name == "cpu":
            self.out = np.empty((batch, 1, num_heads, 512), np.uint16)
            self.lse = np.empty((batch, 1, num_heads), np.float32)
        else:
            torch = device.torch
            self.out = torch.empty((batch, 1, num_heads, 512), dtype=torch.bfloat16, device=device.name)
            self.lse = torch.empty((batch, 1, num_heads), dtype=torch.float32, device=device.name)
        self.graph = None

    @staticmethod
    def _bf16_input(device, rng, shape):
        bits = smla.float_to_bf16(np.clip(rng.standard_normal(shape) / 10, -1, 1))
        if device.name == "cpu":
            return bits
        torch = device.torch
        return torch.from_numpy(bits.view(np.int16)).view(torch.bfloat16).to(device.name)

    def _layer_extra(self, layer):
        if layer.kind == C4:
            return self.model.c4_indices(layer, self.batch)
        return self.model.c128_indices(layer, self.batch)

    def refresh_inputs(self):
        """New step: indices and lengths for the current position, written into the static buffers."""
        swa_indices, swa_lengths = self.model.swa_indices(self.batch)
        self.device.copy_into(self.swa_indices, swa_indices)
        self.device.copy_into(self.swa_lengths, swa_lengths)
        for layer, inputs in zip(self.model.layers, self.extra_inputs):
            if inputs is not None:
                indices, lengths = self._layer_extra(layer)
                self.device.copy_into(inputs[0], indices)
                self.device.copy_into(inputs[1], lengths)

    def attention_step(self):
        """One decode call per layer (what a CUDA graph captures)."""
        for layer, inputs in zip(self.model.layers, self.extra_inputs):
            extra = {} if inputs is None else dict(extra_cache=layer.extra_layout, extra_indices=inputs[0],
                                                  extra_topk_length=inputs[1])
            self.plans[layer.kind].run(self.q, layer.swa_layout, self.swa_indices, topk_length=self.swa_lengths,
                                       attn_sink=self.sink, out=self.out, lse=self.lse, **extra)

    def capture(self):
        torch = self.device.torch
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self.attention_step()  # warm-up outside the capture
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.attention_step()

    def timed_step_ms(self):
        if self.device.name == "cpu":
            start = time.perf_counter()
            self.attention_step()
            return (time.perf_counter() - start) * 1e3
        torch = self.device.torch
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        self.graph.replay()
        end.record()
        end.synchronize()
        return begin.elapsed_time(end)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default=None, help="cuda (default when available), cuda:N or cpu")
    parser.add_argument("--layers", type=int, default=None, help="layers (default 43; cpu: 5)")
    parser.add_argument("--context", type=int, default=None, help="positions before the loop (default 8192; cpu: 300)")
    parser.add_argument("--steps", type=int, default=None, help="timed decode steps per batch (default 50; cpu: 3)")
    parser.add_argument("--batches", default=None, help="comma list (default 1,2,4,8,12,16; cpu: 1,2,4)")
    parser.add_argument("--heads", type=int, default=None, help="local heads (default 64; cpu: 16)")
    parser.add_argument("--backend", default="auto", help="smla backend: auto, cuda, cuda-ref, cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    name = args.device or ("cuda" if os.environ.get("SMLA_NO_TORCH") != "1" and smla.cuda_available() else "cpu")
    on_cpu = name == "cpu"
    if not on_cpu and ":" not in name:
        name = "cuda:0"
    layers = args.layers or (5 if on_cpu else 43)
    context = args.context if args.context is not None else (300 if on_cpu else 8192)
    steps = args.steps or (3 if on_cpu else 50)
    heads = args.heads or (16 if on_cpu else 64)
    batches = [int(b) for b in (args.batches or ("1,2,4" if on_cpu else "1,2,4,8,12,16")).split(",")]
    backend = "cpu" if on_cpu else args.backend

    device = Device(name, args.seed)
    model = Model(device, layers, max(batches), context, steps * len(batches) + 1)
    kinds = {kind: model.kinds.count(kind) for kind in (SWA_ONLY, C4, C128)}
    print(f"smla {smla.version()} on {name} ({smla.backend_name(backend, None if on_cpu else name)}): {layers} layers "
          f"{kinds}, {heads} heads, context {context}, {steps} steps per batch, C128 width {model.c128_width}")
    print(f"{'batch':>5} {'attention ms/step':>18} {'tokens/s':>10}")
    for batch in batches:
        runner = BatchRunner(model, batch, heads, backend)
        if not on_cpu:
            runner.capture()
        total_ms = 0.0
        for _ in range(steps):
            model.append_step()  # the new token's KV, written before its attention runs
            runner.refresh_inputs()
            total_ms += runner.timed_step_ms()
        step_ms = total_ms / steps
        print(f"{batch:>5} {step_ms:>18.3f} {batch / (step_ms / 1e3):>10.1f}")
        lse = runner.lse if on_cpu else runner.lse.cpu().numpy()
        if not np.isfinite(lse).all():
            raise SystemExit("non-finite lse: every row attends the current token, so lse must be finite")


if __name__ == "__main__":
    main()
