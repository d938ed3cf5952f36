"""Paged FP8 KV caches (spec section 2): layout descriptions, allocation, append, dequantize, re-layout."""

import ctypes

import numpy as np

from . import _lib
from . import _tensors as T

RECORD_BYTES = 584  # logical bytes of one token: 576 data + 8 footer
ROW_BYTES = 576
HEAD_DIM = 512
RELAYOUT_PAGE_BLOCK_SIZE = 64


def writer_page_stride_bytes(page_block_size):
    """The page stride writers use: ceil(P*584/576)*576 (P=2: 1728, P=64: 37440, P=256: 149760)."""
    return int(_lib.library().smla_writer_page_stride_bytes(int(page_block_size)))


def cache_geometry(cache, page_block_size=None, name="cache"):
    """(P, page_stride_bytes, num_pages) of a cache tensor without touching its data pointer.

    Accepted: [num_pages, page_stride] bytes (page_block_size required), or FlashMLA's view
    [num_pages, P, 1, 584] / [num_pages, P, 584] whose stride(0) is the page stride in bytes.
    """
    if T.is_torch_tensor(cache):
        # Only shape, stride and dtype comparisons here, so torch.compile traces it without a break.
        torch = T.torch_module()
        byte_dtypes = (torch.uint8, torch.int8, getattr(torch, "float8_e4m3fn", torch.uint8))
        if cache.dtype not in byte_dtypes:
            raise ValueError(f"{name}: expected a byte tensor ({' or '.join(T.CACHE_BYTE_DTYPES)}), got dtype "
                             f"{cache.dtype}")
        shape, strides, itemsize = tuple(cache.shape), tuple(cache.stride()), 1
    else:
        info = T.tensor_info(cache, name)
        shape, strides, itemsize = info.shape, info.strides, info.itemsize
        if info.dtype not in T.CACHE_BYTE_DTYPES:
            raise ValueError(f"{name}: expected a byte tensor ({' or '.join(T.CACHE_BYTE_DTYPES)}), got dtype "
                             f"{info.dtype}")
    ndim = len(shape)
    if ndim == 2:
        if page_block_size is None:
            raise ValueError(f"{name}: a [num_pages, page_stride] cache needs page_block_size (tokens per page)")
        if strides[1] != 1 and shape[1] > 1:
            raise ValueError(f"{name}: the page dimension must be contiguous (stride 1), got strides {list(strides)}")
        tokens_per_page = int(page_block_size)
        if tokens_per_page < 1:
            raise ValueError(f"{name}: page_block_size must be >= 1, got {tokens_per_page}")
        # The library reads and writes P*584 bytes from each page's start: the tensor must hold them (a
        # narrower slice of a wider pool would let it touch bytes past the tensor's end).
        if shape[1] * itemsize < tokens_per_page * RECORD_BYTES:
            raise ValueError(f"{name}: each page row holds {shape[1] * itemsize} bytes, below P*584 = "
                             f"{tokens_per_page * RECORD_BYTES} (P={tokens_per_page}); expected shape "
                             f"[num_pages, >= {tokens_per_page * RECORD_BYTES}]")
    elif ndim in (3, 4):
        if shape[-1] != RECORD_BYTES or (ndim == 4 and shape[2] != 1):
            want = "[num_pages, P, 1, 584]" if ndim == 4 else "[num_pages, P, 584]"
            raise ValueError(f"{name}: expected shape {want}, got {list(shape)}")
        tokens_per_page = shape[1]
        if page_block_size is not None and int(page_block_size) != tokens_per_page:
            raise ValueError(f"{name}: page_block_size={page_block_size} disagrees with shape[1]={tokens_per_page}")
        # A page is read as P*584 contiguous bytes: the view's records must lie that way (a transposed or
        # strided view would be read as something else).
        if strides[-1] * itemsize != 1 or (tokens_per_page > 1 and strides[1] * itemsize != RECORD_BYTES):
            raise ValueError(f"{name}: each page must be P*584 contiguous bytes (record stride 584, byte stride "
                             f"1), got strides {list(strides)} (in elements of {itemsize} bytes)")
    else:
        raise ValueError(f"{name}: expected [num_pages, page_stride] or [num_pages, P, 1, 584], got shape "
                         f"{list(shape)}")
    page_stride_bytes = strides[0] * itemsize
    if shape[0] == 1 and ndim != 2:
        # stride(0) of a one-page view is never used for addressing and may be anything.
        page_stride_bytes = max(page_stride_bytes, tokens_per_page * RECORD_BYTES)
    if page_stride_bytes < tokens_per_page * RECORD_BYTES:
        raise ValueError(f"{name}: page stride {page_stride_bytes} bytes is below P*584 = "
                         f"{tokens_per_page * RECORD_BYTES} (P={tokens_per_page})")
    return tokens_per_page, page_stride_bytes, shape[0]


class CacheLayout:
    """One paged cache: base pointer, P, page stride and page count (smla_cache_layout_t).

    Build it from a tensor with CacheLayout.from_tensor (the tensor is kept alive), or from a raw
    pointer with CacheLayout(data_ptr, P, page_stride_bytes, num_pages, device="cuda:0").
    """

    def __init__(self, data, page_block_size, page_stride_bytes, num_pages, device="cpu", tensor=None):
        self.data = int(data)
        self.page_block_size = int(page_block_size)
        self.page_stride_bytes = int(page_stride_bytes)
        self.num_pages = int(num_pages)
        self.device_type, self.device_index = _parse_device(device)
        self.tensor = tensor

    @classmethod
    def from_tensor(cls, tensor, page_block_size=None, name="cache"):
        tokens_per_page, page_stride_bytes, num_pages = cache_geometry(tensor, page_block_size, name)
        info = T.tensor_info(tensor, name)
        return cls(info.ptr, tokens_per_page, page_stride_bytes, num_pages, info.device, tensor=tensor)

    @property
    def device(self):
        return "cpu" if self.device_type == "cpu" else f"cuda:{self.device_index}"

    @property
    def num_slots(self):
        return self.num_pages * self.page_block_size

    def to_struct(self):
        return _lib.CacheLayoutStruct(self.data, self.page_block_size, self.page_stride_bytes, self.num_pages)

    def validate(self):
        """Runs the library's layout checks (stride, alignment, sizes); raises SmlaError."""
        struct = self.to_struct()
        _lib.call("smla_validate_cache_layout", ctypes.byref(struct))

    def __repr__(self):
        return (f"CacheLayout(data=0x{self.data:x}, page_block_size={self.page_block_size}, "
                f"page_stride_bytes={self.page_stride_bytes}, num_pages={self.num_pages}, device={self.device!r})")


def as_cache_layout(cache, page_block_size=None, name="cache"):
    if isinstance(cache, CacheLayout):
        if page_block_size is not None and int(page_block_size) != cache.page_block_size:
            raise ValueError(f"{name}: page_block_size={page_block_size} disagrees with the CacheLayout's "
                             f"{cache.page_block_size}")
        return cache
    return CacheLayout.from_tensor(cache, page_block_size, name)


def _parse_device(device):
    """("cpu", None) or ("cuda", ordinal) from "cpu", "cuda", "cuda:1", an int or a torch.device."""
    if device is None:
        return "cpu", None
    if isinstance(device, int):
        return "cuda", device
    text = str(device)
    if text == "cpu":
        return "cpu", None
    if text.startswith("cuda"):
        if ":" in text:
            return "cuda", int(text.split(":", 1)[1])
        torch = T.torch_module()
        return "cuda", (torch.cuda.current_device() if torch is not None and torch.cuda.is_available() else 0)
    raise ValueError(f"device: expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def allocate_cache(num_pages, page_block_size, device="cpu", fill=0):
    """A zero-filled cache pool [num_pages, page_stride] uint8 with the writer's padded page stride.

    device "cpu" returns a 64-byte aligned NumPy array; "cuda"/"cuda:N" a torch tensor (needs torch).
    `fill` sets every byte (0xFF fills unused slots with NaN bytes, as the tests do).
    """
    num_pages, page_block_size = int(num_pages), int(page_block_size)
    if num_pages < 1:
        raise ValueError(f"num_pages: expected >= 1, got {num_pages}")
    if page_block_size < 1:
        raise ValueError(f"page_block_size: expected >= 1, got {page_block_size}")
    stride = writer_page_stride_bytes(page_block_size)
    device_type, device_index = _parse_device(device)
    if device_type == "cpu":
        pool = T.aligned_empty((num_pages, stride), np.uint8)
        pool[...] = fill
        return pool
    torch = T.torch_module()
    if torch is None:
        import torch  # noqa: F811 - only CUDA caches need it
    return torch.full((num_pages, stride), fill, dtype=torch.uint8, device=f"cuda:{device_index}")


def _current_stream(info, stream):
    if stream is not None:
        return ctypes.c_void_p(int(stream) if not hasattr(stream, "cuda_stream") else stream.cuda_stream)
    if info.device_type == "cuda" and T.torch_module() is not None:
        torch = T.torch_module()
        return ctypes.c_void_p(torch.cuda.current_stream(info.device_index).cuda_stream)
    return ctypes.c_void_p(None)


def _int32_slot_ids(values, name):
    """Integers as a contiguous int32 array, or a ValueError naming the argument: floats, or integers outside
    int32, must not be cast (2**32 + 3 would become slot 3, 1.9 slot 1)."""
    array = np.asarray(values)
    if array.size and array.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integer slot ids, got dtype {array.dtype}")
    if array.size and (int(array.min()) < -2 ** 31 or int(array.max()) >= 2 ** 31):
        raise ValueError(f"{name}: slot ids must fit int32, got values in [{array.min()}, {array.max()}]")
    return np.ascontiguousarray(array, dtype=np.int32)


def _as_int32_array(values, name):
    """Python sequences become int32 arrays (checked); tensors and arrays are taken as they are (their dtype
    is checked against int32 by the caller)."""
    if isinstance(values, (list, tuple, range)):
        return _int32_slot_ids(values, name)
    return values


def append(cache, tokens, slots, page_block_size=None, stream=None):
    """Quantizes bf16 tokens [n, 512] and writes them at `slots` [n] int32 (spec section 3).

    Host caches take host tokens (NumPy: uint16 bf16 bits); CUDA caches take CUDA tensors and the
    write is enqueued on `stream` (default: torch's current stream).
    """
    layout = as_cache_layout(cache, page_block_size)
    if layout.tensor is not None:
        T.check_writeable(T.tensor_info(layout.tensor, "cache"), "cache")
    token_info = T.tensor_info(tokens, "tokens")
    slot_info = T.tensor_info(_as_int32_array(slots, "slots"), "slots")
    T.check_bf16(token_info, "tokens")
    if len(token_info.shape) != 2 or token_info.shape[1] != HEAD_DIM:
        raise ValueError(f"tokens: expected shape [n, 512], got {list(token_info.shape)}")
    T.check_last_dim_contiguous(token_info, "tokens")
    T.check_nonnegative_strides(token_info, "tokens")
    num_tokens = token_info.shape[0]
    T.check_dtype(slot_info, "slots", ("int32",))
    T.check_shape(slot_info, "slots", [("n", num_tokens)])
    T.check_contiguous(slot_info, "slots")
    for info, name in ((token_info, "tokens"), (slot_info, "slots")):
        T.check_device(info, name, layout.device_type, layout.device_index)
    memory_space = _lib.MEMORY_HOST if layout.device_type == "cpu" else _lib.MEMORY_DEVICE
    struct = layout.to_struct()
    _lib.call("smla_append", ctypes.byref(struct), ctypes.c_void_p(token_info.ptr), num_tokens,
              token_info.strides[0] if num_tokens > 1 else HEAD_DIM, ctypes.c_void_p(slot_info.ptr),
              memory_space, _current_stream(token_info, stream))


def dequantize(cache, slots, page_block_size=None):
    """Host only: float32 [n, 512] values of the tokens at `slots` (a negative slot gives a zero row)."""
    layout = as_cache_layout(cache, page_block_size)
    if layout.device_type != "cpu":
        raise ValueError(f"cache: dequantize reads host memory only, got a cache on {layout.device}")
    slot_array = _int32_slot_ids(slots.cpu().numpy() if T.is_torch_tensor(slots) else slots, "slots").reshape(-1)
    out = T.aligned_empty((slot_array.shape[0], HEAD_DIM), np.float32)
    struct = layout.to_struct()
    _lib.call("smla_dequantize_gather", ctypes.byref(struct), ctypes.c_void_p(slot_array.ctypes.data),
              slot_array.shape[0], ctypes.c_void_p(out.ctypes.data))
    return out


def relayout_workspace_bytes(source, page_block_size=None):
    layout = as_cache_layout(source, page_block_size, "source")
    struct = layout.to_struct()
    return int(_lib.library().smla_relayout_workspace_bytes(ctypes.byref(struct)))


def _index_set_struct(indices, position):
    name = f"index_sets[{position}]"
    info = T.tensor_info(indices, name)
    T.check_dtype(info, name, ("int32",))
    if len(info.shape) not in (2, 3):
        raise ValueError(f"{name}: expected [rows, width] or [b, s_q, width] int32, got shape {list(info.shape)}")
    T.check_last_dim_contiguous(info, name)
    T.check_nonnegative_strides(info, name)
    # The library walks rows [rows, width] at one row stride: the stride of the row dimensions that have
    # more than one row (a size-1 dimension's stride says nothing about where the rows are).
    row_dims = [(size, stride) for size, stride in zip(info.shape[:-1], info.strides[:-1]) if size > 1]
    if len(row_dims) == 2 and row_dims[0][1] != row_dims[1][0] * row_dims[1][1]:
        raise ValueError(f"{name}: a [b, s_q, width] index tensor must have stride(0) == s_q * stride(1) so its "
                         f"rows are evenly spaced, got strides {list(info.strides)}")
    row_stride = row_dims[-1][1] if row_dims else info.shape[-1]
    rows = int(np.prod(info.shape[:-1]))
    return info, _lib.RelayoutIndexSetStruct(info.ptr, rows, info.shape[-1], row_stride)


def relayout_pages(source, destination, index_sets=None, workspace=None, stream=None,
                   source_page_block_size=256, destination_page_block_size=RELAYOUT_PAGE_BLOCK_SIZE):
    """Copies a P=256 cache into 64-token pages (spec section 6), on the GPU.

    index_sets: None (every page) or a list of int32 slot-id tensors; only the pages they touch
    are copied. workspace: a uint8 CUDA tensor of relayout_workspace_bytes(source) bytes; allocated
    (zeroed) here when not given, so pass one in the serving path.
    """
    source_layout = as_cache_layout(source, None if isinstance(source, CacheLayout) or
                                    _is_view(source) else source_page_block_size, "source")
    destination_layout = as_cache_layout(destination, None if isinstance(destination, CacheLayout) or
                                         _is_view(destination) else destination_page_block_size, "destination")
    if source_layout.device_type != "cuda" or destination_layout.device_type != "cuda":
        raise ValueError(f"relayout_pages runs on CUDA memory: source is on {source_layout.device}, destination "
                         f"on {destination_layout.device}")
    if source_layout.device_index != destination_layout.device_index:
        raise ValueError(f"destination: expected a cache on {source_layout.device}, got {destination_layout.device}")
    sets, keepalive = None, []
    if index_sets is not None:
        if not isinstance(index_sets, (list, tuple)):
            index_sets = [index_sets]
        array_type = _lib.RelayoutIndexSetStruct * max(len(index_sets), 1)
        sets = array_type()
        for position, indices in enumerate(index_sets):
            info, struct = _index_set_struct(indices, position)
            T.check_device(info, f"index_sets[{position}]", "cuda", source_layout.device_index)
            keepalive.append(info)
            sets[position] = struct
    source_struct, destination_struct = source_layout.to_struct(), destination_layout.to_struct()
    needed = int(_lib.library().smla_relayout_workspace_bytes(ctypes.byref(source_struct)))
    if workspace is None:
        torch = T.torch_module()
        if torch is None:
            raise RuntimeError("relayout_pages: pass a workspace (PyTorch is not loaded to allocate one)")
        workspace = torch.zeros(max(needed, 1), dtype=torch.uint8, device=source_layout.device)
    workspace_info = T.tensor_info(workspace, "workspace")
    T.check_device(workspace_info, "workspace", "cuda", source_layout.device_index)
    workspace_bytes = int(np.prod(workspace_info.shape)) * workspace_info.itemsize
    if workspace_bytes < needed:
        raise ValueError(f"workspace: expected at least {needed} bytes, got {workspace_bytes}")
    _lib.call("smla_relayout_pages", ctypes.byref(source_struct), ctypes.byref(destination_struct), sets,
              len(index_sets) if index_sets is not None else 0, ctypes.c_void_p(workspace_info.ptr),
              workspace_bytes, _current_stream(workspace_info, stream))
    return destination


def _is_view(cache):
    shape = getattr(cache, "shape", ())
    return len(shape) in (3, 4)
