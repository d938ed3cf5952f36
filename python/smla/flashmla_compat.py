"""Drop-in replacements for FlashMLA's sparse FP8 decode entry points.

    import smla.flashmla_compat as flash_mla
    sched_meta, _ = flash_mla.get_mla_metadata()
    out, lse = flash_mla.flash_mla_with_kvcache(q, k_cache, None, None, 512, sched_meta, None,
                                                is_fp8_kvcache=True, indices=indices, attn_sink=sink,
                                                extra_k_cache=c4_cache, extra_indices_in_kvcache=c4_indices,
                                                topk_length=lengths, extra_topk_length=c4_lengths)

Argument names, shapes and the metadata object follow FlashMLA's sparse decode: q [b, s_q, h, 512] bf16,
k_cache viewed as [pages, P, 1, 584] bytes (uint8 or fp8) whose stride(0) is the page stride, indices
[b, s_q, topk] int32 physical slot ids; returns out [b, s_q, h, 512] bf16 and lse [b, h, s_q] float32 (a
transposed view of a [b, s_q, h] buffer, as FlashMLA returns it). Any head count 1..128. block_table and
cache_seqlens are ignored when indices are given, as FlashMLA does.

Only the DeepSeek-V4 sparse decode over 584-byte FP8 records is implemented: dense decode (indices=None),
BF16 caches, causal masks and DeepSeek V3.2's 656-byte records (d_qk 576) raise NotImplementedError saying so.

Plans are cached per (b, s_q, h, topk, extra_topk, device) and their workspaces are device memory of their
own, so a first call inside torch.inference_mode() or a CUDA-graph capture leaves nothing behind that later
calls in another mode cannot use. Each call signature (shapes, strides, dtypes, devices) is validated once
and remembered; the data pointers of every call are checked by the library. out and lse are allocated on
every call (through torch's caching allocator for torch inputs, which CUDA-graph capture supports); callers
that want no allocation at all use smla.Plan.run with their own out/lse.
"""

import dataclasses
import os
from typing import Any, Optional

import numpy as np

from . import _lib
from . import _tensors as T
from . import _torch_ext
from . import _torch_ops
from .decode import DEFAULT_SOFTMAX_SCALE, HEAD_DIM, Plan, _facts, _pointer, _Unkeyed

__all__ = ["FlashMLASchedMeta", "clear_plan_cache", "cached_plan", "flash_mla_with_kvcache", "get_mla_metadata"]

RECORD_BYTES = 584  # DeepSeek-V4: 448 FP8 + 64 BF16 values, 7 scale bytes + 1 pad byte per token
V32_HEAD_DIM = 576  # DeepSeek V3.2: q/k head dim 512 + 64
V32_RECORD_BYTES = 656  # DeepSeek V3.2: 512 FP8 + 4 float32 scales + 64 BF16 per token

_plan_cache = {}
# Validated call signatures -> _CallEntry: torch calls keyed by their tensors' facts read inline, other
# calls by decode._facts.
_torch_call_cache = {}
_call_cache = {}
_MAX_CALL_SIGNATURES = 256


@dataclasses.dataclass
class FlashMLASchedMeta:
    """What get_mla_metadata returns, with FlashMLA's fields.

    The first flash_mla_with_kvcache call on an object records its shapes in `config`; a later call with
    other shapes raises a ValueError naming the field that differs (make one object per layer kind, as
    with FlashMLA). smla plans the split schedule per shape itself: after the first call
    tile_scheduler_metadata holds the smla.Plan that ran and num_splits its split count.
    """

    @dataclasses.dataclass
    class Config:
        b: int
        s_q: int
        h_q: int
        page_block_size: int
        h_k: int
        causal: bool
        is_fp8_kvcache: bool
        topk: Optional[int]
        extra_page_block_size: Optional[int]
        extra_topk: Optional[int]

    have_initialized: bool = False
    config: Optional[Config] = None
    tile_scheduler_metadata: Any = None
    num_splits: Any = None


_CONFIG_FIELDS = tuple(field.name for field in dataclasses.fields(FlashMLASchedMeta.Config))


def get_mla_metadata(*args, **kwargs):
    """FlashMLA-compatible: returns (FlashMLASchedMeta(), None).

    FlashMLA's older arguments (cache_seqlens, num_q_tokens_per_head_k, num_heads_k, ...) are accepted and
    not needed: the split schedule comes from the plan of the first call's shapes.
    """
    return FlashMLASchedMeta(), None


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
    _torch_call_cache.clear()
    _call_cache.clear()
    _torch_ext.clear_drop_in()


def _shape_of(value, name):
    shape = getattr(value, "shape", None)
    if shape is None:
        shape = T.tensor_info(value, name).shape
    return tuple(int(size) for size in shape)


def _unsupported_mode(q, k_cache, indices, causal, is_fp8_kvcache, head_dim_v):
    """NotImplementedError for a FlashMLA mode smla does not implement, None for the sparse FP8 decode."""
    q_dim = _shape_of(q, "q")[-1:]
    cache_dim = _shape_of(k_cache, "k_cache")[-1:]
    implemented = ("smla implements the DeepSeek-V4 sparse decode over 584-byte FP8 records (d_qk 512: 448 FP8 + "
                   "64 BF16 values and 8 scale bytes per token, docs/dsv4-sparse-mla.md)")
    if q_dim == (V32_HEAD_DIM,) or cache_dim == (V32_RECORD_BYTES,):
        return NotImplementedError(
            f"DeepSeek V3.2's FP8 cache format (656-byte records, d_qk 576; got q [..., {q_dim[0] if q_dim else '?'}]"
            f", k_cache [..., {cache_dim[0] if cache_dim else '?'}]) is not implemented: {implemented}")
    if indices is None:
        return NotImplementedError(
            "dense decode (indices=None: attention over block_table / cache_seqlens) is not implemented: "
            f"{implemented}; pass indices [b, s_q, topk] of slot ids (page * page_block_size + row)")
    if not is_fp8_kvcache:
        return NotImplementedError(f"is_fp8_kvcache=False (a BF16 KV cache) is not implemented: {implemented}")
    if causal:
        return NotImplementedError("causal=True: smla implements sparse FP8 decode only; the tokens attended are "
                                   "the ones `indices` selects, so there is no causal mask")
    if head_dim_v != HEAD_DIM:
        return ValueError(f"head_dim_v: expected 512 (DSv4 latent dim), got {head_dim_v}")
    return None


class _CallEntry:
    """Everything a validated call signature needs on later calls."""

    __slots__ = ("plan", "template", "config", "out_shape", "out_like", "lse_like", "all_torch", "packed",
                 "to_extension")

    def __init__(self, plan, template, config, out_shape, out_like, lse_like, all_torch):
        self.plan, self.template, self.config, self.out_shape = plan, template, config, out_shape
        # torch: tensors whose empty_like is a new out / lse (one argument to parse, half the host time
        # of torch.empty): out's is a broadcast scalar (no memory, contiguous result), lse's a small dense
        # tensor with the transposed strides, which empty_like keeps.
        self.out_like, self.lse_like, self.all_torch = out_like, lse_like, all_torch
        # The torch extension: the packed arguments it remembers, and whether to hand it this signature.
        self.packed, self.to_extension = None, all_torch


def _device_of(tensor):
    if T.is_torch_tensor(tensor):
        device = tensor.device
        return "cpu" if device.type == "cpu" else f"cuda:{device.index if device.index is not None else 0}"
    return T.tensor_info(tensor, "q").device


def _new_outputs(q, batch, seq_q, num_heads):
    """(out [b, s_q, h, 512], lse [b, h, s_q] as the transposed view of a [b, s_q, h] buffer)."""
    if T.is_torch_tensor(q):
        torch = T.torch_module()
        out = torch.empty((batch, seq_q, num_heads, HEAD_DIM), dtype=torch.bfloat16, device=q.device)
        lse = torch.empty_strided((batch, num_heads, seq_q), (seq_q * num_heads, 1, num_heads), dtype=torch.float32,
                                  device=q.device)
        return out, lse
    return (T.aligned_empty((batch, seq_q, num_heads, HEAD_DIM), np.uint16),
            T.aligned_empty((batch, seq_q, num_heads), np.float32).transpose(0, 2, 1))


def _prepare(q, k_cache, indices, topk_length, extra_k_cache, extra_indices, extra_topk_length, attn_sink,
             softmax_scale):
    """The first call of a signature: format and shape checks, the plan, full validation.

    Returns (entry, out, lse, pointers)."""
    error = _unsupported_mode(q, k_cache, indices, False, True, HEAD_DIM)  # DeepSeek V3.2 records
    if error is not None:
        raise error
    q_shape = _shape_of(q, "q")
    if len(q_shape) != 4 or q_shape[-1] != HEAD_DIM:
        raise ValueError(f"q: expected shape [b, s_q, h, 512], got {list(q_shape)}")
    index_shape = _shape_of(indices, "indices")
    if len(index_shape) != 3:
        raise ValueError(f"indices: expected shape [b, s_q, topk], got {list(index_shape)}")
    cache_shape = _shape_of(k_cache, "k_cache")
    _check_cache_view(cache_shape, "k_cache")
    extra_topk, extra_page_block_size = None, None
    if extra_indices is not None:
        extra_shape = _shape_of(extra_indices, "extra_indices_in_kvcache")
        if len(extra_shape) != 3:
            raise ValueError(f"extra_indices_in_kvcache: expected shape [b, s_q, extra_topk], got {list(extra_shape)}")
        extra_topk = extra_shape[2]
        extra_cache_shape = _shape_of(extra_k_cache, "extra_k_cache")
        _check_cache_view(extra_cache_shape, "extra_k_cache")
        extra_page_block_size = extra_cache_shape[1] if len(extra_cache_shape) >= 2 else None
    batch, seq_q, num_heads = q_shape[:3]
    plan = cached_plan(batch, seq_q, num_heads, index_shape[2], extra_topk or 0, _device_of(q))
    out, lse = _new_outputs(q, batch, seq_q, num_heads)
    lse_rows = lse.transpose(1, 2) if T.is_torch_tensor(lse) else lse.transpose(0, 2, 1)  # [b, s_q, h]
    try:
        template, pointers = plan._prepared((q, k_cache, indices, topk_length, extra_k_cache, extra_indices,
                                             extra_topk_length, attn_sink, out, lse_rows), softmax_scale, None, None)
    except ValueError as error:
        raise _in_flashmla_names(error) from None
    config = (batch, seq_q, num_heads, cache_shape[1] if len(cache_shape) >= 2 else None,
              cache_shape[2] if len(cache_shape) == 4 else 1, False, True, index_shape[2], extra_page_block_size,
              extra_topk)
    arguments = (q, k_cache, indices, topk_length, extra_k_cache, extra_indices, extra_topk_length, attn_sink)
    all_torch = all(value is None or type(value) is type(q) for value in arguments) and T.is_torch_tensor(q)
    out_like = lse_like = None
    if all_torch:
        torch = T.torch_module()
        out_like = torch.empty((), dtype=out.dtype, device=out.device).expand(out.shape)
        lse_like = torch.empty_strided(lse.shape, lse.stride(), dtype=lse.dtype, device=lse.device)
    entry = _CallEntry(plan, template, config, tuple(out.shape), out_like, lse_like, all_torch)
    return entry, out, lse, pointers


# Plan.run's argument names -> flash_mla_with_kvcache's, for the messages of its checks (each begins "<name>: ").
_FLASHMLA_NAMES = {"cache": "k_cache", "extra_cache": "extra_k_cache", "extra_indices": "extra_indices_in_kvcache"}


def _in_flashmla_names(error):
    """The same error, naming the argument as the caller of flash_mla_with_kvcache wrote it."""
    text = str(error)
    name, colon, rest = text.partition(":")
    if colon and name in _FLASHMLA_NAMES:
        return type(error)(_FLASHMLA_NAMES[name] + colon + rest)
    return error


def _check_cache_view(shape, name):
    """FlashMLA's caches are views [num_pages, page_block_size, 1, 584] (or [num_pages, page_block_size, 584]):
    the page block size comes from shape[1], so a flat [num_pages, page_stride] pool cannot be taken here."""
    if len(shape) not in (3, 4):
        raise ValueError(f"{name}: expected FlashMLA's view [num_pages, page_block_size, 1, 584], got shape "
                         f"{list(shape)} (smla.Plan.run takes [num_pages, page_stride] pools with page_block_size)")


def _check_metadata(meta, config):
    """FlashMLA's rule for a reused FlashMLASchedMeta: the shapes of its first call, or a ValueError."""
    if not meta.have_initialized:
        meta.config = FlashMLASchedMeta.Config(*config)
        meta.have_initialized = True
        meta._smla_signature = (meta.config, config)
        return
    recorded = getattr(meta, "_smla_signature", None)
    if recorded is None or recorded[0] is not meta.config:  # config made or replaced by the caller
        recorded = (meta.config, tuple(getattr(meta.config, name) for name in _CONFIG_FIELDS))
        meta._smla_signature = recorded
    if recorded[1] == config:
        return
    for name, first, now in zip(_CONFIG_FIELDS, recorded[1], config):
        if first != now:
            raise ValueError(
                f"tile_scheduler_metadata: config.{name} is {first} (from the first call on this FlashMLASchedMeta) "
                f"but this call has {now}; a FlashMLASchedMeta serves one set of shapes, as in FlashMLA: get one "
                f"from get_mla_metadata() per layer kind")


def flash_mla_with_kvcache(q, k_cache, block_table=None, cache_seqlens=None, head_dim_v=512,
                           tile_scheduler_metadata=None, num_splits=None, softmax_scale=None, causal=False,
                           is_fp8_kvcache=True, indices=None, attn_sink=None, extra_k_cache=None,
                           extra_indices_in_kvcache=None, topk_length=None, extra_topk_length=None):
    """FlashMLA's sparse FP8 decode with smla's kernels; see the module docstring.

    block_table, cache_seqlens and num_splits are accepted and unused (sparse mode: indices are slot ids
    and lengths come from topk_length / extra_topk_length).
    """
    # The torch extension runs a call signature validated before, whole, outputs included (is_compiling
    # first: under torch.compile it is the constant True, so nothing else here is traced).
    if not _torch_ops._is_compiling():
        run_in_extension = _torch_ext.drop_in_run
        if run_in_extension is not None and not causal and is_fp8_kvcache and head_dim_v == HEAD_DIM:
            outputs = run_in_extension(q, k_cache, indices, topk_length, extra_k_cache, extra_indices_in_kvcache,
                                       extra_topk_length, attn_sink, softmax_scale, tile_scheduler_metadata)
            if outputs is not None:
                return outputs
    if indices is None or causal or not is_fp8_kvcache or head_dim_v != HEAD_DIM:
        error = _unsupported_mode(q, k_cache, indices, causal, is_fp8_kvcache, head_dim_v)
        if error is not None:
            raise error
    if (extra_k_cache is None) != (extra_indices_in_kvcache is None):
        missing = "extra_indices_in_kvcache" if extra_k_cache is not None else "extra_k_cache"
        raise ValueError(f"{missing}: extra_k_cache and extra_indices_in_kvcache must be given together")
    if softmax_scale is None:
        softmax_scale = DEFAULT_SOFTMAX_SCALE
    signature = entry = None
    calls = _call_cache
    if T.is_torch_tensor(q):
        if _torch_ops.needs_op(q):  # torch.compile tracing: through the op
            return _run_through_plan(q, k_cache, indices, topk_length, extra_k_cache, extra_indices_in_kvcache,
                                     extra_topk_length, attn_sink, softmax_scale, tile_scheduler_metadata)
        try:  # the facts of torch tensors read inline: this is most of the host time of a call
            signature = (
                q.shape, q.stride(), q.dtype, q.device, k_cache.shape, k_cache.stride(), k_cache.dtype, k_cache.device,
                indices.shape, indices.stride(), indices.dtype, indices.device,
                None if topk_length is None else
                (topk_length.shape, topk_length.stride(), topk_length.dtype, topk_length.device),
                None if extra_k_cache is None else
                (extra_k_cache.shape, extra_k_cache.stride(), extra_k_cache.dtype, extra_k_cache.device),
                None if extra_indices_in_kvcache is None else
                (extra_indices_in_kvcache.shape, extra_indices_in_kvcache.stride(), extra_indices_in_kvcache.dtype,
                 extra_indices_in_kvcache.device),
                None if extra_topk_length is None else
                (extra_topk_length.shape, extra_topk_length.stride(), extra_topk_length.dtype,
                 extra_topk_length.device),
                None if attn_sink is None else (attn_sink.shape, attn_sink.stride(), attn_sink.dtype, attn_sink.device),
                softmax_scale,
                # A negative view fails validation (_tensors.tensor_info): any one makes another signature.
                q.is_neg() or k_cache.is_neg() or indices.is_neg() or
                (topk_length is not None and topk_length.is_neg()) or
                (extra_k_cache is not None and extra_k_cache.is_neg()) or
                (extra_indices_in_kvcache is not None and extra_indices_in_kvcache.is_neg()) or
                (extra_topk_length is not None and extra_topk_length.is_neg()) or
                (attn_sink is not None and attn_sink.is_neg()))
            calls = _torch_call_cache
            entry = calls.get(signature)
        except (AttributeError, TypeError):  # an argument that is not a torch tensor, an unhashable scale
            signature = None
    if signature is None and calls is _call_cache:
        try:
            signature = (_facts(q), _facts(k_cache), _facts(indices), _facts(topk_length), _facts(extra_k_cache),
                         _facts(extra_indices_in_kvcache), _facts(extra_topk_length), _facts(attn_sink), softmax_scale)
            entry = calls.get(signature)
        except (_Unkeyed, TypeError):  # DLPack objects, unhashable scalars: validate every call
            signature = None
    if entry is None:
        entry, out, lse, pointers = _prepare(q, k_cache, indices, topk_length, extra_k_cache, extra_indices_in_kvcache,
                                             extra_topk_length, attn_sink, softmax_scale)
        if signature is not None:
            if len(calls) >= _MAX_CALL_SIGNATURES:
                calls.clear()
            calls[signature] = entry
    elif entry.all_torch:
        empty_like = T.TORCH.empty_like
        out, lse = empty_like(entry.out_like), empty_like(entry.lse_like)
        pointers = (q.data_ptr(), k_cache.data_ptr(), indices.data_ptr(),
                    0 if topk_length is None else topk_length.data_ptr(),
                    0 if extra_k_cache is None else extra_k_cache.data_ptr(),
                    0 if extra_indices_in_kvcache is None else extra_indices_in_kvcache.data_ptr(),
                    0 if extra_topk_length is None else extra_topk_length.data_ptr(),
                    0 if attn_sink is None else attn_sink.data_ptr(), out.data_ptr(), lse.data_ptr())
    else:
        out, lse = _new_outputs(q, *entry.out_shape[:3])
        pointers = tuple(map(_pointer, (q, k_cache, indices, topk_length, extra_k_cache, extra_indices_in_kvcache,
                                        extra_topk_length, attn_sink, out, lse)))
    if isinstance(tile_scheduler_metadata, FlashMLASchedMeta):
        _check_metadata(tile_scheduler_metadata, entry.config)
        tile_scheduler_metadata.tile_scheduler_metadata = entry.plan
        tile_scheduler_metadata.num_splits = entry.plan.num_splits
    if entry.all_torch or T.is_torch_tensor(q):
        entry.plan._launch_prepared_torch(entry.template, pointers, None)
    else:
        entry.plan._launch_packed(entry.template, pointers, _host_or_dlpack_stream(q))
    if entry.to_extension and calls is _torch_call_cache and not _torch_ext.suspended:
        _hand_to_extension(entry, tile_scheduler_metadata, q, k_cache, indices, topk_length, extra_k_cache,
                           extra_indices_in_kvcache, extra_topk_length, attn_sink, softmax_scale)
    return out, lse


def _hand_to_extension(entry, meta, *call):
    """After a call Python validated and ran: the torch extension runs this signature, with this
    FlashMLASchedMeta, from now on (loads the extension on the first call in the process)."""
    state = entry.plan._extension_state()
    if state is None:  # the extension does not serve this plan: do not ask again
        entry.to_extension = False
        return
    if entry.packed is None:
        entry.packed = _lib.DECODE_ARGS.pack(*entry.template)
    _torch_ext.drop_in_remember(entry.plan, state, entry.packed, meta if isinstance(meta, FlashMLASchedMeta) else None,
                                *call)


def _host_or_dlpack_stream(q):
    """NumPy: no stream. DLPack on a GPU: torch's current stream when torch is loaded, else the default."""
    if type(q) is np.ndarray:
        return None
    from .cache import _current_stream

    return _current_stream(T.tensor_info(q, "q"), None).value


def _run_through_plan(q, k_cache, indices, topk_length, extra_k_cache, extra_indices, extra_topk_length, attn_sink,
                      softmax_scale, meta):
    """The traced (torch.compile) form: shapes only, then Plan.run, which goes through the smla op."""
    q_shape, index_shape = tuple(q.shape), tuple(indices.shape)
    if len(q_shape) != 4 or q_shape[-1] != HEAD_DIM:
        raise ValueError(f"q: expected shape [b, s_q, h, 512], got {list(q_shape)}")
    if len(index_shape) != 3:
        raise ValueError(f"indices: expected shape [b, s_q, topk], got {list(index_shape)}")
    extra_topk = 0 if extra_indices is None else int(extra_indices.shape[-1])
    batch, seq_q, num_heads = (int(size) for size in q_shape[:3])
    plan = cached_plan(batch, seq_q, num_heads, int(index_shape[2]), extra_topk, _device_of(q))
    if isinstance(meta, FlashMLASchedMeta):
        extra_page_block_size = None if extra_k_cache is None else int(extra_k_cache.shape[1])
        _check_metadata(meta, (batch, seq_q, num_heads, int(k_cache.shape[1]),
                               int(k_cache.shape[2]) if k_cache.dim() == 4 else 1, False, True, int(index_shape[2]),
                               extra_page_block_size, extra_topk or None))
    torch = T.torch_module()
    out = torch.empty((batch, seq_q, num_heads, HEAD_DIM), dtype=torch.bfloat16, device=q.device)
    lse = torch.empty((batch, seq_q, num_heads), dtype=torch.float32, device=q.device)
    try:
        plan.run(q, k_cache, indices, topk_length=topk_length, extra_cache=extra_k_cache, extra_indices=extra_indices,
                 extra_topk_length=extra_topk_length, attn_sink=attn_sink, softmax_scale=softmax_scale, out=out,
                 lse=lse)
    except ValueError as error:
        raise _in_flashmla_names(error) from None
    return out, lse.transpose(1, 2)
