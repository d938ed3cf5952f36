"""Drop-in replacements for FlashMLA's sparse FP8 decode entry points.

    from smla.flashmla_compat import get_mla_metadata, flash_mla_with_kvcache
    tile_scheduler_metadata, num_splits = get_mla_metadata()
    out, lse = flash_mla_with_kvcache(q, k_cache, None, None, 512, tile_scheduler_metadata, num_splits,
                                      indices=indices, attn_sink=sink, extra_k_cache=c4_cache,
                                      extra_indices_in_kvcache=c4_indices, topk_length=lengths)

Argument names and shapes follow FlashMLA's sparse decode: q [b, s_q, h, 512] bf16, k_cache viewed as
[pages, P, 1, 584] bytes (uint8 or fp8) whose stride(0) is the page stride, indices [b, s_q, topk]
int32 physical slot ids; returns out [b, s_q, h, 512] bf16 and lse [b, h, s_q] float32 (a transposed
view of a [b, s_q, h] buffer, as FlashMLA returns it). Any head count 1..128.

Plans and their workspaces are cached per (b, s_q, h, topk, extra_topk, device), so after the first
call for a shape nothing is planned or zeroed again. out and lse are allocated fresh on every call
(through torch's caching allocator for torch inputs, which CUDA-graph capture supports); callers that
want no allocation at all use smla.Plan.run with their own out/lse.
"""

import os

from . import _tensors as T
from .decode import Plan

_plan_cache = {}


class SchedulerMetadata:
    """What get_mla_metadata returns in the tile_scheduler_metadata slot: smla plans per shape itself,
    so this only records the plan the first call used (for inspection: plan, num_splits)."""

    def __init__(self):
        self.plan = None

    @property
    def num_splits(self):
        return None if self.plan is None else self.plan.num_splits

    def __repr__(self):
        return f"SchedulerMetadata(plan={self.plan!r})"


def get_mla_metadata(*args, **kwargs):
    """FlashMLA-compatible: returns (tile_scheduler_metadata, num_splits).

    The FlashMLA arguments (cache_seqlens, num_q_tokens_per_head_k, num_heads_k, num_heads_q,
    is_fp8_kvcache, topk) are accepted and not needed: smla's split schedule comes from the plan, so
    num_splits is None and flash_mla_with_kvcache ignores it.
    """
    return SchedulerMetadata(), None


def _shape_of(tensor):
    return tuple(int(size) for size in tensor.shape)


def _device_of(tensor):
    if T.is_torch_tensor(tensor):
        return "cpu" if tensor.device.type == "cpu" else f"cuda:{tensor.device.index or 0}"
    return T.tensor_info(tensor, "q").device


def cached_plan(batch, seq_q, num_heads, topk, extra_topk, device):
    """The Plan for one shape and device, made on first use (backend from SMLA_BACKEND, default auto)."""
    key = (batch, seq_q, num_heads, topk, extra_topk, device)
    found = _plan_cache.get(key)
    if found is None:
        backend = os.environ.get("SMLA_BACKEND", "auto") if device != "cpu" else "cpu"
        found = Plan(batch, seq_q, num_heads, topk, extra_topk, backend=backend, device=device)
        _plan_cache[key] = found
    return found


def clear_plan_cache():
    _plan_cache.clear()


def flash_mla_with_kvcache(q, k_cache, block_table=None, cache_seqlens=None, head_dim_v=512,
                           tile_scheduler_metadata=None, num_splits=None, softmax_scale=None, causal=False,
                           is_fp8_kvcache=True, indices=None, attn_sink=None, extra_k_cache=None,
                           extra_indices_in_kvcache=None, topk_length=None, extra_topk_length=None):
    """FlashMLA's sparse FP8 decode with smla's kernels; see the module docstring.

    cache_seqlens and num_splits are accepted and unused (lengths come from topk_length).
    """
    if causal:
        raise NotImplementedError("causal=True: smla implements sparse FP8 decode only; the tokens attended are "
                                  "the ones `indices` selects, so there is no causal mask")
    if not is_fp8_kvcache:
        raise NotImplementedError("is_fp8_kvcache=False: smla implements sparse FP8 decode only (the DSv4 "
                                  "584-byte FP8 record cache)")
    if block_table is not None:
        raise ValueError("block_table: smla implements sparse FP8 decode only; indices are physical slot ids "
                         "(page * page_block_size + row), so pass block_table=None")
    if indices is None:
        raise ValueError("indices: required; smla implements sparse FP8 decode only ([b, s_q, topk] int32 slot ids)")
    if head_dim_v != 512:
        raise ValueError(f"head_dim_v: expected 512 (DSv4 latent dim), got {head_dim_v}")
    if (extra_k_cache is None) != (extra_indices_in_kvcache is None):
        missing = "extra_indices_in_kvcache" if extra_k_cache is not None else "extra_k_cache"
        raise ValueError(f"{missing}: extra_k_cache and extra_indices_in_kvcache must be given together")
    q_shape = _shape_of(q)
    if len(q_shape) != 4 or q_shape[-1] != 512:
        raise ValueError(f"q: expected shape [b, s_q, h, 512], got {list(q_shape)}")
    index_shape = _shape_of(indices)
    if len(index_shape) != 3:
        raise ValueError(f"indices: expected shape [b, s_q, topk], got {list(index_shape)}")
    extra_topk = 0
    if extra_indices_in_kvcache is not None:
        extra_shape = _shape_of(extra_indices_in_kvcache)
        if len(extra_shape) != 3:
            raise ValueError(f"extra_indices_in_kvcache: expected shape [b, s_q, extra_topk], got {list(extra_shape)}")
        extra_topk = extra_shape[2]
    batch, seq_q, num_heads = q_shape[:3]
    plan = cached_plan(batch, seq_q, num_heads, index_shape[2], extra_topk, _device_of(q))
    if isinstance(tile_scheduler_metadata, SchedulerMetadata) and tile_scheduler_metadata.plan is None:
        tile_scheduler_metadata.plan = plan

    if T.is_torch_tensor(q):
        torch = T.torch_module()
        out = torch.empty((batch, seq_q, num_heads, 512), dtype=torch.bfloat16, device=q.device)
        lse = torch.empty((batch, seq_q, num_heads), dtype=torch.float32, device=q.device)
    else:
        import numpy as np

        out = T.aligned_empty((batch, seq_q, num_heads, 512), np.uint16)
        lse = T.aligned_empty((batch, seq_q, num_heads), np.float32)
    plan.run(q, k_cache, indices, topk_length=topk_length, extra_cache=extra_k_cache,
             extra_indices=extra_indices_in_kvcache, extra_topk_length=extra_topk_length, attn_sink=attn_sink,
             softmax_scale=softmax_scale, out=out, lse=lse)
    return out, lse.transpose(1, 2) if T.is_torch_tensor(lse) else lse.transpose(0, 2, 1)
