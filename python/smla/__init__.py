"""smla: DeepSeek-V4 sparse MLA decode over a paged FP8 KV cache, through the C API (ctypes).

    import smla
    cache = smla.allocate_cache(num_pages, page_block_size=64, device="cuda")
    smla.append(cache, tokens_bf16, slots, page_block_size=64)
    plan = smla.plan(batch, seq_q, num_heads, topk)
    out, lse = plan.run(q, smla.CacheLayout.from_tensor(cache, 64), indices)

Inputs may be PyTorch tensors (CUDA or CPU), NumPy arrays (CPU backend; bf16 as uint16 bits, see
float_to_bf16) or DLPack objects. PyTorch is optional: when it is importable, the op
smla::sparse_decode is registered at import (set SMLA_NO_TORCH=1 to skip importing torch).
"""

import importlib.util
import os

from ._lib import SmlaError, library_path
from ._version import __version__
from .bf16 import bf16_to_float, float_to_bf16
from .cache import (CacheLayout, allocate_cache, append, dequantize, relayout_pages, relayout_workspace_bytes,
                    writer_page_stride_bytes)
from .decode import DEFAULT_SOFTMAX_SCALE, Plan, backend_name, cuda_available, plan


def version():
    """Version string of the loaded libsmla.so (the loader refuses one that differs from __version__)."""
    from ._lib import library

    return library().smla_version().decode()


def torch_extension_status():
    """Which path eager torch calls take (see smla/_torch_ext.py): a TorchExtensionStatus whose `state` is
    "loaded", "disabled" (SMLA_TORCH_EXTENSION=0), "unavailable" (`reason` says why) or "not loaded yet".
    Loads nothing; str() of it is one line."""
    from . import _torch_ext

    return _torch_ext.status()


def load_torch_extension():
    """Builds (once per smla and torch version, cached) and loads the torch extension of the eager path now,
    rather than on the first eager torch call; returns torch_extension_status(). Never raises: when the
    extension cannot be used, one RuntimeWarning says why and eager calls take the Python path."""
    from . import _torch_ext

    return _torch_ext.load()


def _register_torch_op():
    if os.environ.get("SMLA_NO_TORCH") == "1" or importlib.util.find_spec("torch") is None:
        return False
    try:
        from . import _torch_ops

        return _torch_ops.register()
    except ImportError as error:  # a broken torch install must not break the NumPy path
        import warnings

        warnings.warn(f"smla: PyTorch found but not importable ({error}); torch op not registered")
        return False


TORCH_OP_REGISTERED = _register_torch_op()

__all__ = [
    "CacheLayout", "DEFAULT_SOFTMAX_SCALE", "Plan", "SmlaError", "TORCH_OP_REGISTERED", "allocate_cache", "append",
    "backend_name", "bf16_to_float", "cuda_available", "dequantize", "float_to_bf16", "library_path",
    "load_torch_extension", "plan", "relayout_pages", "relayout_workspace_bytes", "torch_extension_status",
    "version", "writer_page_stride_bytes", "__version__",
]
