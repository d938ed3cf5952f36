"""The torch op smla::sparse_decode (CUDA-graph capture inside torch.compile, torch.compile tracing) and
the helpers of the eager path.

The op mutates out and lse and returns nothing; its fake (meta) implementation does nothing, which is
all torch.compile needs to trace through it without a graph break. The plan is found by id because an
op schema holds only tensors and scalars; the plan's workspace is its own device memory, not an op
argument. Eager calls (no compilation, no torch dispatch mode) skip the op: the torch dispatcher would
cost more than the whole call (issue 15), and nothing needs to see the call.
"""

import types
from typing import List, Optional

from . import _tensors as T
from .cache import CacheLayout, cache_geometry


def _never_compiling():
    return False


_registered = False
_eager = None
# Set by eager_helpers(); module globals, so torch.compile traces needs_op() without a graph break.
# _is_compiling is callable from the start: Plan.run and the drop-in ask it before anything else.
_is_compiling = _never_compiling
_tensor_type = _dispatch_modes = None


def registered():
    return _registered


def needs_op(q):
    """True when a run with torch input q must go through the op: torch.compile is tracing, a torch
    dispatch mode (fake tensors, make_fx, functionalization) is active, or q is a tensor subclass."""
    if not _registered:
        return False
    # _is_compiling first: under dynamo it is the constant True, so nothing after it is traced.
    return _is_compiling() or type(q) is not _tensor_type or _dispatch_modes() > 0


def eager_helpers():
    """Fast accessors of torch's current device and stream (private torch._C functions where they exist,
    the public ones otherwise), looked up once."""
    global _eager, _is_compiling, _tensor_type, _dispatch_modes
    if _eager is None:
        import torch

        is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
        if is_compiling is None:
            try:
                from torch._dynamo import is_compiling
            except ImportError:
                def is_compiling():
                    return False
        _is_compiling, _tensor_type = is_compiling, torch.Tensor
        _dispatch_modes = getattr(torch._C, "_len_torch_dispatch_stack", lambda: 0)
        raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)
        set_device = getattr(torch._C, "_cuda_setDevice", None) or torch.cuda.set_device
        # Restoring the caller's device: since CUDA 12 setting a device creates its context, so torch >= 2.1
        # restores one that has none only in its own bookkeeping (as its device guards do); older torch sets it.
        restore_device = getattr(torch._C, "_cuda_maybeExchangeDevice", None) or set_device
        _eager = types.SimpleNamespace(
            current_device=getattr(torch._C, "_cuda_getDevice", None) or torch.cuda.current_device,
            set_device=set_device,
            restore_device=restore_device,
            current_stream=raw_stream or (lambda device: torch.cuda.current_stream(device).cuda_stream),
        )
    return _eager


def register():
    """Registers smla::sparse_decode once; returns False when this torch has no torch.library.custom_op."""
    global _registered
    if _registered:
        return True
    import torch

    T.TORCH = torch
    if not hasattr(torch.library, "custom_op"):
        return False

    @torch.library.custom_op("smla::sparse_decode", mutates_args=("out", "lse"))
    def sparse_decode(q: torch.Tensor, main_cache: torch.Tensor, indices: torch.Tensor,
                      topk_length: Optional[torch.Tensor], extra_cache: Optional[torch.Tensor],
                      extra_indices: Optional[torch.Tensor], extra_topk_length: Optional[torch.Tensor],
                      attn_sink: Optional[torch.Tensor], out: torch.Tensor, lse: torch.Tensor,
                      plan_id: int, main_geometry: List[int], extra_geometry: List[int],
                      softmax_scale: float) -> None:
        _launch(q, main_cache, indices, topk_length, extra_cache, extra_indices, extra_topk_length, attn_sink,
                out, lse, plan_id, main_geometry, extra_geometry, softmax_scale)

    @sparse_decode.register_fake
    def _(q, main_cache, indices, topk_length, extra_cache, extra_indices, extra_topk_length, attn_sink, out, lse,
          plan_id, main_geometry, extra_geometry, softmax_scale):
        return None

    _registered = True
    eager_helpers()  # looked up now, so torch.compile never traces the lookup
    return True


def _layout_of(cache, geometry):
    page_block_size, page_stride_bytes, num_pages = geometry
    return CacheLayout(cache.data_ptr(), page_block_size, page_stride_bytes, num_pages, device=str(cache.device),
                       tensor=cache)


def _launch(q, main_cache, indices, topk_length, extra_cache, extra_indices, extra_topk_length, attn_sink, out,
            lse, plan_id, main_geometry, extra_geometry, softmax_scale):
    from .decode import plan_by_id

    plan = plan_by_id(plan_id)
    main_layout = _layout_of(main_cache, main_geometry)
    extra_layout = None if extra_cache is None else _layout_of(extra_cache, extra_geometry)
    plan._launch_torch(q, main_layout, indices, topk_length, extra_layout, extra_indices, extra_topk_length,
                       attn_sink, out, lse, softmax_scale, None, None, None)


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
                                 attn_sink, out, lse, plan.plan_id, main[1], extra_geometry,
                                 float(softmax_scale))
    return out, lse
