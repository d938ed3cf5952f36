"""The torch op smla::sparse_decode, so decode works inside CUDA-graph capture and torch.compile.

The op mutates out, lse and workspace and returns nothing; its fake (meta) implementation does
nothing, which is all torch.compile needs to trace through it without a graph break. The plan is
found by id because an op schema holds only tensors and scalars.
"""

from typing import List, Optional

from . import _tensors as T
from .cache import CacheLayout, cache_geometry

_registered = False


def registered():
    return _registered


def register():
    """Registers smla::sparse_decode once; returns False when this torch has no torch.library.custom_op."""
    global _registered
    if _registered:
        return True
    import torch

    T.TORCH = torch
    if not hasattr(torch.library, "custom_op"):
        return False

    @torch.library.custom_op("smla::sparse_decode", mutates_args=("out", "lse", "workspace"))
    def sparse_decode(q: torch.Tensor, main_cache: torch.Tensor, indices: torch.Tensor,
                      topk_length: Optional[torch.Tensor], extra_cache: Optional[torch.Tensor],
                      extra_indices: Optional[torch.Tensor], extra_topk_length: Optional[torch.Tensor],
                      attn_sink: Optional[torch.Tensor], out: torch.Tensor, lse: torch.Tensor,
                      workspace: torch.Tensor, plan_id: int, main_geometry: List[int], extra_geometry: List[int],
                      softmax_scale: float) -> None:
        _launch(q, main_cache, indices, topk_length, extra_cache, extra_indices, extra_topk_length, attn_sink,
                out, lse, workspace, plan_id, main_geometry, extra_geometry, softmax_scale)

    @sparse_decode.register_fake
    def _(q, main_cache, indices, topk_length, extra_cache, extra_indices, extra_topk_length, attn_sink, out, lse,
          workspace, plan_id, main_geometry, extra_geometry, softmax_scale):
        return None

    _registered = True
    return True


def _layout_of(cache, geometry):
    page_block_size, page_stride_bytes, num_pages = geometry
    return CacheLayout(cache.data_ptr(), page_block_size, page_stride_bytes, num_pages, device=str(cache.device),
                       tensor=cache)


def _launch(q, main_cache, indices, topk_length, extra_cache, extra_indices, extra_topk_length, attn_sink, out,
            lse, workspace, plan_id, main_geometry, extra_geometry, softmax_scale):
    import ctypes

    from .decode import launch_infos, plan_by_id

    plan = plan_by_id(plan_id)
    infos = launch_infos(T.tensor_info(q, "q"), indices, topk_length, extra_indices, extra_topk_length, attn_sink,
                         out, lse)
    main_layout = _layout_of(main_cache, main_geometry)
    extra_layout = None if extra_cache is None else _layout_of(extra_cache, extra_geometry)
    stream = None
    if q.is_cuda:
        stream = T.torch_module().cuda.current_stream(q.device).cuda_stream
    plan.launch(infos, main_layout, extra_layout, softmax_scale, ctypes.c_void_p(stream),
                workspace=T.tensor_info(workspace, "workspace"))


def _torch_cache(cache, page_block_size, name):
    """(tensor, [P, page_stride_bytes, num_pages]) of a torch cache, or None when it has no torch tensor."""
    if isinstance(cache, CacheLayout):
        if not T.is_torch_tensor(cache.tensor):
            return None
        return cache.tensor, [cache.page_block_size, cache.page_stride_bytes, cache.num_pages]
    if not T.is_torch_tensor(cache):
        return None
    return cache, list(cache_geometry(cache, page_block_size, name))


def run_plan(plan, q, cache, indices, topk_length, extra_cache, extra_indices, extra_topk_length, attn_sink,
             softmax_scale, out, lse, page_block_size, extra_page_block_size):
    """Plan.run for torch inputs through the op; None when some input is not a torch tensor."""
    torch = T.torch_module()
    main = _torch_cache(cache, page_block_size, "cache")
    extra = None if extra_cache is None else _torch_cache(extra_cache, extra_page_block_size, "extra_cache")
    if main is None or (extra_cache is not None and extra is None):
        return None
    for value in (indices, topk_length, extra_indices, extra_topk_length, attn_sink, out, lse):
        if value is not None and not isinstance(value, torch.Tensor):
            return None
    if out is None:
        out = torch.empty((plan.batch, plan.seq_q, plan.num_heads, 512), dtype=torch.bfloat16, device=q.device)
    if lse is None:
        lse = torch.empty((plan.batch, plan.seq_q, plan.num_heads), dtype=torch.float32, device=q.device)
    extra_tensor, extra_geometry = (None, [0, 0, 0]) if extra is None else extra
    torch.ops.smla.sparse_decode(q, main[0], indices, topk_length, extra_tensor, extra_indices, extra_topk_length,
                                 attn_sink, out, lse, plan.workspace_tensor(), plan.plan_id, main[1], extra_geometry,
                                 float(softmax_scale))
    return out, lse
