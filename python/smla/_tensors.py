"""Reads pointer, shape, strides, dtype and device from PyTorch tensors, NumPy arrays and DLPack
producers, and checks them with messages that name the argument (expected vs got).

No PyTorch import here: a torch tensor is recognised only when torch is already loaded.
"""

import ctypes
import sys

import numpy as np

# dtype names used in messages and checks (torch's spelling without the "torch." prefix).
BF16 = "bfloat16"
BF16_BITS = "uint16"  # NumPy has no bf16: uint16 arrays holding bf16 bits are accepted
CACHE_BYTE_DTYPES = ("uint8", "int8", "float8_e4m3fn")


class TensorInfo:
    """What the C API needs from one array-like argument. `keepalive` pins a DLPack capsule."""

    __slots__ = ("obj", "framework", "device_type", "device_index", "ptr", "shape", "strides", "dtype",
                 "itemsize", "keepalive")

    def __init__(self, obj, framework, device_type, device_index, ptr, shape, strides, dtype, itemsize,
                 keepalive=None):
        self.obj = obj
        self.framework = framework  # "torch", "numpy" or "dlpack"
        self.device_type = device_type  # "cpu" or "cuda"
        self.device_index = device_index  # CUDA ordinal, None for cpu
        self.ptr = ptr
        self.shape = tuple(int(s) for s in shape)
        self.strides = tuple(int(s) for s in strides)  # in elements
        self.dtype = dtype
        self.itemsize = itemsize
        self.keepalive = keepalive

    @property
    def device(self):
        return "cpu" if self.device_type == "cpu" else f"cuda:{self.device_index}"


# Set by the torch-op registration. Reading a module global (not sys.modules) keeps these helpers
# traceable by torch.compile without graph breaks.
TORCH = None


def torch_module():
    """The torch module if it is already imported (never imports it)."""
    return TORCH if TORCH is not None else sys.modules.get("torch")


def is_torch_tensor(obj):
    torch = torch_module()
    return torch is not None and isinstance(obj, torch.Tensor)


def _torch_info(tensor):
    device = tensor.device
    index = None
    if device.type == "cuda":
        index = device.index if device.index is not None else torch_module().cuda.current_device()
    elif device.type != "cpu":
        raise ValueError(f"unsupported torch device {device}")
    return TensorInfo(tensor, "torch", device.type, index, tensor.data_ptr(), tensor.shape, tensor.stride(),
                      str(tensor.dtype).replace("torch.", ""), tensor.element_size())


def _numpy_info(array, name):
    if not array.dtype.isnative:  # the library reads native-endian values; '>u2' still has the name "uint16"
        raise ValueError(f"{name}: expected native byte order, got dtype {array.dtype.str} (use "
                         f"array.astype(array.dtype.newbyteorder('='))")
    itemsize = array.dtype.itemsize
    if any(stride % itemsize for stride in array.strides):
        raise ValueError(f"{name}: strides {array.strides} (bytes) are not multiples of the item size {itemsize}")
    strides = tuple(stride // itemsize for stride in array.strides)
    return TensorInfo(array, "numpy", "cpu", None, array.__array_interface__["data"][0], array.shape, strides,
                      array.dtype.name, itemsize)


# ---- DLPack (minimal reader of the DLManagedTensor a capsule holds; dlpack.h v0.8 / v1 legacy) ----
class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED = 1, 2, 3, 13
# (type code, bits) -> dtype name. Code 10 is kDLFloat8_e4m3fn (DLPack 1.1).
_DL_DTYPES = {
    (0, 8): "int8", (0, 32): "int32", (0, 64): "int64", (1, 8): "uint8", (1, 16): "uint16",
    (2, 16): "float16", (2, 32): "float32", (2, 64): "float64", (4, 16): BF16, (10, 8): "float8_e4m3fn",
}

_capsule_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_get_pointer.restype = ctypes.c_void_p
_capsule_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def _dlpack_info(obj, name):
    # The capsule stays named "dltensor" (not consumed), so its destructor releases the producer's
    # tensor when `keepalive` goes away; the pointer is only used while the TensorInfo lives.
    capsule = obj.__dlpack__()
    address = _capsule_get_pointer(capsule, b"dltensor")
    tensor = _DLTensor.from_address(address)
    ndim = tensor.ndim
    shape = [tensor.shape[i] for i in range(ndim)]
    if tensor.strides:
        strides = [tensor.strides[i] for i in range(ndim)]
    else:  # NULL strides mean compact row-major
        strides, running = [0] * ndim, 1
        for i in reversed(range(ndim)):
            strides[i], running = running, running * shape[i]
    dtype_key = (tensor.dtype.code, tensor.dtype.bits)
    if tensor.dtype.lanes != 1 or dtype_key not in _DL_DTYPES:
        raise ValueError(f"{name}: unsupported DLPack dtype (code {dtype_key[0]}, bits {dtype_key[1]}, "
                         f"lanes {tensor.dtype.lanes})")
    device_type = tensor.device.device_type
    if device_type in (_DL_CPU, _DL_CUDA_HOST):
        device, index = "cpu", None
    elif device_type in (_DL_CUDA, _DL_CUDA_MANAGED):
        device, index = "cuda", tensor.device.device_id
    else:
        raise ValueError(f"{name}: unsupported DLPack device type {device_type}")
    ptr = (tensor.data or 0) + tensor.byte_offset
    return TensorInfo(obj, "dlpack", device, index, ptr, shape, strides, _DL_DTYPES[dtype_key],
                      dtype_key[1] // 8, keepalive=capsule)


def tensor_info(obj, name):
    """TensorInfo of a torch tensor, NumPy array or DLPack producer; TypeError for anything else."""
    if is_torch_tensor(obj):
        # A negative view (torch._neg_view, what conj().imag of a conjugate view gives) stores x and means -x;
        # smla reads and writes the stored values, so it would silently flip every sign.
        if getattr(obj, "is_neg", None) is not None and obj.is_neg():
            raise ValueError(f"{name}: a negative view (is_neg() is True): smla reads and writes the stored "
                             f"values; pass {name}.resolve_neg()")
        return _torch_info(obj)
    if isinstance(obj, np.ndarray):
        return _numpy_info(obj, name)
    if hasattr(obj, "__dlpack__"):
        return _dlpack_info(obj, name)
    raise TypeError(f"{name}: expected a torch tensor, NumPy array or DLPack object, got {type(obj).__name__}")


def optional_info(obj, name):
    return None if obj is None else tensor_info(obj, name)


# ---- checks (each raises ValueError naming the argument, with expected vs got) ----
def _format_shape(labels_and_sizes):
    return "[" + ", ".join(f"{label}={size}" for label, size in labels_and_sizes) + "]"


def check_shape(info, name, expected):
    """`expected` is a list of (label, size); the message shows the labels, e.g. [b=2, s_q=1, ...]."""
    sizes = tuple(size for _, size in expected)
    if info.shape != sizes:
        raise ValueError(f"{name}: expected shape {_format_shape(expected)}, got {list(info.shape)}")


def check_dtype(info, name, allowed):
    if info.dtype not in allowed:
        raise ValueError(f"{name}: expected dtype {' or '.join(allowed)}, got {info.dtype}")


def check_bf16(info, name):
    """bf16: torch.bfloat16 / DLPack bf16, or uint16 arrays of bf16 bits (NumPy has no bf16 dtype)."""
    allowed = (BF16,) if info.framework == "torch" else (BF16, BF16_BITS)
    if info.dtype not in allowed:
        hint = "" if info.framework == "torch" else " (NumPy: a uint16 array of bf16 bits, see smla.float_to_bf16)"
        raise ValueError(f"{name}: expected dtype {' or '.join(allowed)}{hint}, got {info.dtype}")


def check_last_dim_contiguous(info, name):
    if info.shape and info.shape[-1] > 1 and info.strides[-1] != 1:
        raise ValueError(f"{name}: the last dimension must be contiguous (stride 1), got strides "
                         f"{list(info.strides)}")


def check_nonnegative_strides(info, name):
    if any(stride < 0 for stride in info.strides):
        raise ValueError(f"{name}: negative strides are not supported, got {list(info.strides)}")


def check_contiguous(info, name):
    expected, running = [], 1
    for size in reversed(info.shape):
        expected.append(running)
        running *= size
    expected.reverse()
    for size, stride, want in zip(info.shape, info.strides, expected):
        if size > 1 and stride != want:
            raise ValueError(f"{name}: must be contiguous (strides {expected}), got strides {list(info.strides)}")


def check_device(info, name, device_type, device_index):
    if info.device_type != device_type or (device_type == "cuda" and info.device_index != device_index):
        want = "cpu" if device_type == "cpu" else f"cuda:{device_index}"
        raise ValueError(f"{name}: expected a tensor on {want} (the plan's device), got one on {info.device}")


def check_writeable(info, name):
    """Outputs and caches written to: a read-only NumPy array (or memmap) must not be written through its pointer;
    a torch tensor that autograd tracks must not be written behind its back (torch itself refuses an in-place
    write to a leaf that requires grad, and smla's write has no backward). DLPack's legacy capsule carries no
    read-only flag."""
    if info.framework == "numpy" and not info.obj.flags.writeable:
        raise ValueError(f"{name}: the array is read-only (flags.writeable is False); smla writes into it")
    if info.framework == "torch" and info.obj.requires_grad and torch_module().is_grad_enabled():
        raise ValueError(f"{name}: requires grad while grad mode is on; smla writes {name} outside autograd, "
                         f"which has no backward for it (pass {name}.detach(), or run under torch.no_grad())")


def check_aligned(info, name, alignment):
    if info.ptr % alignment:
        raise ValueError(f"{name}: data pointer must be {alignment}-byte aligned, got 0x{info.ptr:x}")


# ---- host allocation ----
def aligned_empty(shape, dtype, alignment=64):
    """A NumPy array whose data is `alignment`-byte aligned (smla wants 16-byte aligned bases)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64)) if len(shape) else 1
    nbytes = count * dtype.itemsize
    raw = np.empty(nbytes + alignment, dtype=np.uint8)
    offset = (-raw.__array_interface__["data"][0]) % alignment
    return raw[offset:offset + nbytes].view(dtype).reshape(shape)


def aligned_zeros(shape, dtype, alignment=64):
    array = aligned_empty(shape, dtype, alignment)
    array[...] = 0
    return array
