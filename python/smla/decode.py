"""Decode plans (spec sections 4-5): plan once per shape, then run allocation-free."""

import ctypes
import itertools
import math
import operator
import weakref

import numpy as np

from . import _lib
from . import _tensors as T
from . import _torch_ext
from . import _torch_ops
from .cache import CacheLayout, _current_stream, _parse_device, as_cache_layout

HEAD_DIM = 512
DEFAULT_SOFTMAX_SCALE = 512 ** -0.5
_CPU_PRECISIONS = {"float64": _lib.CPU_FLOAT64, "float32": _lib.CPU_FLOAT32}

# plan id -> Plan, so the torch op (whose schema holds only tensors and scalars) can find its plan.
_plans_by_id = weakref.WeakValueDictionary()
_plan_ids = itertools.count(1)

# Per-plan cache of validated call signatures (see Plan._prepared). Bounded so that callers whose
# strides change on every call cannot grow it without limit.
_MAX_SIGNATURES = 64
# Positions of the pointers in the packed smla_decode_args_t, in the order of _prepared's arguments.
_POINTER_SLOTS = tuple(_lib.DECODE_ARGS_INDEX[name] for name in _lib.DECODE_ARGS_POINTERS)


class _Unkeyed(Exception):
    """An argument whose facts cannot be read cheaply (DLPack objects): validate that call in full."""


def _facts(value):
    """Everything the validation reads from one argument except its data pointer, as a hashable key.

    torch tensors: shape, strides, dtype, device, the negative-view bit and whether autograd tracks them;
    NumPy arrays: shape, byte strides, dtype; CacheLayouts: their geometry and device. Two arguments with
    equal facts pass or fail validation alike, so a call whose facts all match an earlier validated call
    needs only its pointers checked (by the library).
    """
    if value is None:
        return None
    if type(value) is CacheLayout:
        return (CacheLayout, value.page_block_size, value.page_stride_bytes, value.num_pages, value.device_type,
                value.device_index)
    if type(value) is np.ndarray:
        return (value.shape, value.strides, value.dtype, value.flags.writeable)
    try:
        # torch; a negative view, and a tensor autograd tracks while grad mode is on, fail validation
        # (_tensors.tensor_info, check_writeable), so they are facts too.
        return (value.shape, value.stride(), value.dtype, value.device, value.is_neg(),
                value.requires_grad and T.torch_module().is_grad_enabled())
    except (AttributeError, TypeError):
        raise _Unkeyed() from None


def _stream_handle(stream):
    """A cudaStream_t as an int, from a torch.cuda.Stream-like object or an int."""
    return stream.cuda_stream if hasattr(stream, "cuda_stream") else int(stream)


def _pointer(value):
    if value is None:
        return 0
    if type(value) is CacheLayout:
        return value.data
    if type(value) is np.ndarray:
        return value.__array_interface__["data"][0]
    try:
        return value.data_ptr()
    except (AttributeError, TypeError):
        raise _Unkeyed() from None


def launch_infos(q_info, indices, topk_length, extra_indices, extra_topk_length, attn_sink, out, lse):
    """The tensor infos a plan's launch reads, by argument name (optional ones may be None)."""
    return {
        "q": q_info,
        "indices": T.tensor_info(indices, "indices"),
        "topk_length": T.optional_info(topk_length, "topk_length"),
        "extra_indices": T.optional_info(extra_indices, "extra_indices"),
        "extra_topk_length": T.optional_info(extra_topk_length, "extra_topk_length"),
        "attn_sink": T.optional_info(attn_sink, "attn_sink"),
        "out": T.tensor_info(out, "out"),
        "lse": T.tensor_info(lse, "lse"),
    }


def backend_from_name(name):
    value = ctypes.c_int()
    _lib.call("smla_backend_from_name", str(name).encode(), ctypes.byref(value))
    return value.value


def backend_name(backend=None, device=None):
    """Name of a backend: of a Plan, of a backend code, or of what a backend name (default "auto")
    resolves to on this machine for `device` (None = the current CUDA device)."""
    if isinstance(backend, Plan):
        return backend.backend_name
    if backend is None or isinstance(backend, str):
        requested = backend_from_name(backend or "auto")
        device_type, device_index = _parse_device(device) if device is not None else ("cuda", -1)
        if device_type == "cpu":
            if requested not in (_lib.BACKEND_AUTO, _lib.BACKEND_CPU):
                raise ValueError(f"device: backend {backend!r} runs on CUDA, got device={device!r}")
            requested, device_index = _lib.BACKEND_CPU, -1
        resolved = ctypes.c_int()
        _lib.call("smla_resolve_backend", requested, device_index, ctypes.byref(resolved))
        backend = resolved.value
    return _lib.library().smla_backend_name(int(backend)).decode()


def cuda_available():
    """True when a CUDA device usable by smla's CUDA backends exists."""
    return bool(_lib.library().smla_cuda_available())


def _int32(name, value):
    """An int32 field of the C structs: an integer (not a float or a string) in range, or a ValueError naming it.
    ctypes would otherwise keep the low 32 bits of a larger value (2**32 + 1 became 1)."""
    try:
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name}: expected an integer, got {value!r}") from None
    if not -2 ** 31 <= number < 2 ** 31:
        raise ValueError(f"{name}: expected a value in the int32 range, got {number}")
    return number


class Plan:
    """A decode plan for one (batch, seq_q, num_heads, topk, extra_topk, device) and its workspace.

    The workspace is allocated and zeroed once here (device memory of the plan's own on its GPU for the
    CUDA backends, see _DeviceWorkspace; a NumPy array for the CPU backend); `run` allocates nothing else
    unless it is asked to create `out`/`lse`.
    """

    def __init__(self, batch, seq_q, num_heads, topk, extra_topk=0, backend="auto", device=None, num_splits=0,
                 cpu_precision="float64", cpu_threads=0, max_shared_bytes=0, sm_count=0):
        self._handle = None
        self.batch, self.seq_q, self.num_heads = _int32("batch", batch), _int32("seq_q", seq_q), _int32(
            "num_heads", num_heads)
        self.topk, self.extra_topk = _int32("topk", topk), _int32("extra_topk", extra_topk)
        if cpu_precision not in _CPU_PRECISIONS:
            raise ValueError(f"cpu_precision: expected 'float64' or 'float32', got {cpu_precision!r}")
        requested = backend_from_name(backend)
        device_type, device_index = ("cpu", None) if device is None else _parse_device(device)
        if device_type == "cpu" and device is not None:
            if requested == _lib.BACKEND_AUTO:
                requested = _lib.BACKEND_CPU
            elif requested != _lib.BACKEND_CPU:
                raise ValueError(f"device: backend {backend!r} runs on CUDA, got device={device!r}")
        if device is None and requested != _lib.BACKEND_CPU:
            torch = T.torch_module()
            device_index = torch.cuda.current_device() if torch is not None and torch.cuda.is_available() else 0

        shape = _lib.DecodeShapeStruct(self.batch, self.seq_q, self.num_heads, self.topk, self.extra_topk)
        options = _lib.PlanOptionsStruct()
        _lib.library().smla_default_plan_options(ctypes.byref(options))
        options.backend = requested
        options.device = -1 if device_index is None else _int32("device", device_index)
        options.num_splits = _int32("num_splits", num_splits)
        options.cpu_precision = _CPU_PRECISIONS[cpu_precision]
        options.cpu_threads = _int32("cpu_threads", cpu_threads)
        options.max_shared_bytes = _int32("max_shared_bytes", max_shared_bytes)
        options.sm_count = _int32("sm_count", sm_count)
        handle = ctypes.c_void_p()
        _lib.call("smla_plan_create", ctypes.byref(shape), ctypes.byref(options), ctypes.byref(handle))
        self._handle = handle

        value, size, splits = ctypes.c_int(), ctypes.c_size_t(), ctypes.c_int32()
        _lib.call("smla_plan_backend", handle, ctypes.byref(value))
        _lib.call("smla_plan_workspace_bytes", handle, ctypes.byref(size))
        _lib.call("smla_plan_num_splits", handle, ctypes.byref(splits))
        kernel = ctypes.c_char_p()
        _lib.call("smla_plan_kernel_name", handle, ctypes.byref(kernel))
        # The kernel run() launches: "cpu", "cuda-ref" or a tensor-core kernel such as "sm90-h64" or
        # "mma99-h32" (picked from the device's shared-memory limit; see the README's backend section).
        self.kernel_name = kernel.value.decode()
        # The SM count the split schedule was made for (sm_count= or SMLA_SM_COUNT when set, else the
        # device's; 0 for the CPU backend).
        sm_count_value = ctypes.c_int32()
        _lib.call("smla_plan_sm_count", handle, ctypes.byref(sm_count_value))
        self.sm_count = int(sm_count_value.value)
        self.backend = value.value
        self.backend_name = _lib.library().smla_backend_name(self.backend).decode()
        self.workspace_bytes = int(size.value)
        self.num_splits = int(splits.value)
        self._device_workspace = None
        if self.backend == _lib.BACKEND_CPU:
            self.device_type, self.device_index = "cpu", None
            self.workspace = T.aligned_zeros((max(self.workspace_bytes, 1),), np.uint8)
            self._workspace_ptr = self.workspace.ctypes.data
        else:
            self.device_type, self.device_index = "cuda", device_index
            # Device memory of the plan's own, zeroed once (the CUDA backends keep a device error counter
            # in it, spec section 5). Not a torch tensor: a plan made on a first call inside
            # torch.inference_mode() or a CUDA-graph capture must not own an inference tensor or memory
            # of the graph's private pool (include/smla/device_workspace.h).
            self._device_workspace = _DeviceWorkspace(self.device_index, self.workspace_bytes)
            self.workspace = None
            self._workspace_ptr = self._device_workspace.ptr
        self._handle_value = handle.value
        self._signatures = {}
        # The torch extension's state for this plan (smla/_torch_ext.py), attached by the first eager torch call.
        self._ext_state = None
        self._ext_pending = True
        self.plan_id = next(_plan_ids)
        _plans_by_id[self.plan_id] = self

    @property
    def device(self):
        return "cpu" if self.device_type == "cpu" else f"cuda:{self.device_index}"

    def __del__(self):
        handle = getattr(self, "_handle", None)
        if handle:
            try:
                _lib.library().smla_plan_destroy(handle)
            except Exception:  # interpreter shutdown: the library may already be gone
                pass
            self._handle = None

    def __repr__(self):
        return (f"Plan(batch={self.batch}, seq_q={self.seq_q}, num_heads={self.num_heads}, topk={self.topk}, "
                f"extra_topk={self.extra_topk}, backend={self.backend_name!r}, device={self.device!r}, "
                f"kernel={self.kernel_name!r}, num_splits={self.num_splits}, workspace_bytes={self.workspace_bytes})")

    def errors(self, stream=None):
        """Bad slot ids and lengths the device met in runs on this plan's workspace (docs/safety.md).

        Such entries are masked and such lengths clamped; this count says the inputs were wrong. It
        waits for `stream` (default: torch's current stream on the plan's device), so call it after
        the runs, outside the hot path. Always 0 for CPU plans (the cpu backend rejects bad ids).
        """
        count = ctypes.c_uint64()
        _lib.call("smla_plan_check_errors", self._handle, ctypes.c_void_p(self._workspace_ptr),
                  self._stream_handle(stream), ctypes.byref(count))
        return int(count.value)

    def reset_errors(self, stream=None):
        """Zeroes the device error counter on `stream` (no host sync; capturable in a CUDA graph)."""
        _lib.call("smla_plan_reset_errors", self._handle, ctypes.c_void_p(self._workspace_ptr),
                  self._stream_handle(stream))

    def _stream_handle(self, stream):
        if stream is not None:
            return ctypes.c_void_p(int(stream) if not hasattr(stream, "cuda_stream") else stream.cuda_stream)
        torch = T.torch_module()
        if self.device_type == "cuda" and torch is not None:
            return ctypes.c_void_p(torch.cuda.current_stream(self.device_index).cuda_stream)
        return ctypes.c_void_p(None)

    def run(self, q, cache, indices, topk_length=None, extra_cache=None, extra_indices=None,
            extra_topk_length=None, attn_sink=None, softmax_scale=None, out=None, lse=None,
            page_block_size=None, extra_page_block_size=None, stream=None):
        """One decode. Returns (out [b, s_q, h, 512] bf16, lse [b, s_q, h] float32).

        Caches: a CacheLayout, a FlashMLA view [pages, P, 1, 584], or [pages, stride] bytes with
        page_block_size / extra_page_block_size. out/lse are created when not given (torch tensors for
        torch inputs, NumPy arrays otherwise); given ones may be strided (last dim of out contiguous).
        Torch inputs in eager mode call the library directly on torch's current stream of the plan's
        device (switching the current device for the call if needed), through the torch extension when it
        is loaded (smla/_torch_ext.py); under torch.compile (or a torch dispatch mode) they go through the
        smla::sparse_decode op.
        """
        # The torch extension runs a call signature validated before, whole (is_compiling first: under
        # torch.compile it is the constant True, so nothing else here is traced).
        if stream is None and out is not None and lse is not None and not _torch_ops._is_compiling():
            state = self._ext_state
            if state is not None:
                run_in_extension = _torch_ext.plan_run
                if run_in_extension is not None and run_in_extension(
                        state, q, cache, indices, topk_length, extra_cache, extra_indices, extra_topk_length,
                        attn_sink, softmax_scale, out, lse, page_block_size, extra_page_block_size):
                    return out, lse
        if softmax_scale is None:
            softmax_scale = DEFAULT_SOFTMAX_SCALE
        if T.is_torch_tensor(q):
            if stream is None and _torch_ops.needs_op(q):
                routed = _torch_ops.run_plan(self, q, cache, indices, topk_length, extra_cache, extra_indices,
                                             extra_topk_length, attn_sink, softmax_scale, out, lse, page_block_size,
                                             extra_page_block_size)
                if routed is not None:
                    return routed
            # The eager torch path, kept flat: every Python call level costs host time (issue 15).
            if out is None or lse is None:
                out, lse = self._new_torch_outputs(q, out, lse)
                if stream is None and self._ext_state is not None and _torch_ext.plan_run is not None:
                    if _torch_ext.plan_run(self._ext_state, q, cache, indices, topk_length, extra_cache, extra_indices,
                                           extra_topk_length, attn_sink, softmax_scale, out, lse, page_block_size,
                                           extra_page_block_size):
                        return out, lse
            arguments = (q, cache, indices, topk_length, extra_cache, extra_indices, extra_topk_length, attn_sink,
                         out, lse)
            template, pointers = self._prepared(arguments, softmax_scale, page_block_size, extra_page_block_size)
            self._launch_prepared_torch(template, pointers, None if stream is None else _stream_handle(stream))
            if stream is None and (self._ext_pending or self._ext_state is not None) and not _torch_ext.suspended:
                state = self._extension_state()
                if state is not None:  # validated and run: the extension takes this signature from now on
                    _torch_ext.plan_remember(state, _lib.DECODE_ARGS.pack(*template), q, cache, indices, topk_length,
                                             extra_cache, extra_indices, extra_topk_length, attn_sink, softmax_scale,
                                             out, lse, page_block_size, extra_page_block_size)
            return out, lse
        return self._run_direct(q, cache, indices, topk_length, extra_cache, extra_indices, extra_topk_length,
                                attn_sink, softmax_scale, out, lse, page_block_size, extra_page_block_size, stream)

    def _extension_state(self):
        """The torch extension's state for this plan, or None when the extension does not serve it (loads the
        extension on the first call in the process)."""
        if self._ext_pending:
            self._ext_pending = False
            self._ext_state = _torch_ext.attach(self)
        return self._ext_state

    def _new_torch_outputs(self, q, out, lse):
        torch = T.torch_module()
        if out is None:
            out = torch.empty((self.batch, self.seq_q, self.num_heads, HEAD_DIM), dtype=torch.bfloat16,
                              device=q.device)
        if lse is None:
            lse = torch.empty((self.batch, self.seq_q, self.num_heads), dtype=torch.float32, device=q.device)
        return out, lse

    def _launch_torch(self, q, cache, indices, topk_length, extra_cache, extra_indices, extra_topk_length, attn_sink,
                      out, lse, softmax_scale, page_block_size, extra_page_block_size, stream):
        """_launch_cached for torch tensors (see _launch_prepared_torch)."""
        template, pointers = self._prepared((q, cache, indices, topk_length, extra_cache, extra_indices,
                                             extra_topk_length, attn_sink, out, lse), softmax_scale, page_block_size,
                                            extra_page_block_size)
        self._launch_prepared_torch(template, pointers, stream)

    def _launch_prepared_torch(self, template, pointers, stream):
        """Runs on torch's current stream of the plan's device unless `stream` is given, with the plan's device
        made current for the call and the caller's restored after (as FlashMLA's device guard does)."""
        if self.device_type == "cpu":
            self._launch_packed(template, pointers, None)
            return
        eager = _torch_ops.eager_helpers()
        if stream is None:
            stream = eager.current_stream(self.device_index)
        current = eager.current_device()
        if current == self.device_index:
            self._launch_packed(template, pointers, stream)
            return
        eager.set_device(self.device_index)
        try:
            self._launch_packed(template, pointers, stream)
        finally:
            eager.restore_device(current)

    def _run_direct(self, q, cache, indices, topk_length, extra_cache, extra_indices, extra_topk_length,
                    attn_sink, softmax_scale, out, lse, page_block_size, extra_page_block_size, stream):
        q_info = None
        if out is None or lse is None:
            q_info = T.tensor_info(q, "q")
        if out is None:
            out = self._new_output(q_info, (self.batch, self.seq_q, self.num_heads, HEAD_DIM), "bf16", "out")
        if lse is None:
            lse = self._new_output(q_info, (self.batch, self.seq_q, self.num_heads), "float32", "lse")
        if stream is not None:
            handle = _stream_handle(stream)
        elif type(q) is np.ndarray:
            handle = None
        else:  # a DLPack input: torch's current stream when torch is loaded and q is on a GPU
            handle = _current_stream(q_info or T.tensor_info(q, "q"), None).value
        self._launch_cached(q, cache, indices, topk_length, extra_cache, extra_indices, extra_topk_length,
                            attn_sink, out, lse, softmax_scale, page_block_size, extra_page_block_size, handle)
        return out, lse

    def _launch_cached(self, q, cache, indices, topk_length, extra_cache, extra_indices, extra_topk_length,
                       attn_sink, out, lse, softmax_scale, page_block_size, extra_page_block_size, stream):
        """Validates (once per call signature, see _prepared) and runs. `stream` is a cudaStream_t as an int
        (None: the default stream; ignored by the CPU backend)."""
        template, pointers = self._prepared((q, cache, indices, topk_length, extra_cache, extra_indices,
                                             extra_topk_length, attn_sink, out, lse), softmax_scale, page_block_size,
                                            extra_page_block_size)
        self._launch_packed(template, pointers, stream)

    def _prepared(self, arguments, softmax_scale, page_block_size, extra_page_block_size):
        """(packed-argument template, data pointers) of one call, in _POINTER_SLOTS order.

        The signature of a call is every argument's facts (_facts: shape, strides, dtype, device, for torch
        the negative-view bit and autograd's tracking; cache geometry), softmax_scale and the page block
        sizes. A signature seen before was validated with exactly these facts, so only its data pointers are
        new, and the library checks pointers (null, alignment, memory space) on every call. A new signature
        runs the full validation, with the same messages, and is remembered.
        """
        try:
            if type(arguments[0]) is np.ndarray:
                facts = tuple(map(_facts, arguments))
            else:
                try:  # torch tensors (and CacheLayouts) inline, as _facts has them: most of a call's host time
                    facts = tuple([None if value is None else
                                   (value.shape, value.stride(), value.dtype, value.device, value.is_neg(),
                                    value.requires_grad and T.torch_module().is_grad_enabled())
                                   if type(value) is not CacheLayout else _facts(value) for value in arguments])
                except AttributeError:
                    facts = tuple(map(_facts, arguments))
            signature = (facts, softmax_scale, page_block_size, extra_page_block_size)
            template = self._signatures.get(signature)
            if template is not None:
                if type(arguments[0]) is np.ndarray:
                    return template, tuple(map(_pointer, arguments))
                try:
                    return template, tuple([0 if value is None else value.data_ptr()
                                            if type(value) is not CacheLayout else value.data for value in arguments])
                except AttributeError:
                    return template, tuple(map(_pointer, arguments))
        except (_Unkeyed, TypeError):  # DLPack objects, unhashable scalars: validate in full, remember nothing
            signature = None
        template, pointers = self._validated_template(arguments, softmax_scale, page_block_size,
                                                      extra_page_block_size)
        if signature is not None:
            if len(self._signatures) >= _MAX_SIGNATURES:
                self._signatures.clear()
            self._signatures[signature] = template
        return template, pointers

    def _launch_packed(self, template, pointers, stream):
        values = template[:]
        for slot, pointer in zip(_POINTER_SLOTS, pointers):
            values[slot] = pointer
        status = _lib.library().smla_decode_run_packed(self._handle_value, _lib.DECODE_ARGS.pack(*values),
                                                       self._workspace_ptr, self.workspace_bytes, stream)
        if status != _lib.STATUS_OK:
            raise _lib.SmlaError(status, _lib.last_error() or "smla_decode_run failed")

    def _validated_template(self, arguments, softmax_scale, page_block_size, extra_page_block_size):
        """Full validation of one call; returns (packed-argument values without pointers, pointers)."""
        q, cache, indices, topk_length, extra_cache, extra_indices, extra_topk_length, attn_sink, out, lse = arguments
        main_layout = as_cache_layout(cache, page_block_size, "cache")
        extra_layout = (None if extra_cache is None
                        else as_cache_layout(extra_cache, extra_page_block_size, "extra_cache"))
        infos = launch_infos(T.tensor_info(q, "q"), indices, topk_length, extra_indices, extra_topk_length, attn_sink,
                             out, lse)
        self.validate(infos, main_layout, extra_layout, softmax_scale)
        values = _lib.decode_args_values(self._fill_args(infos, main_layout, extra_layout, softmax_scale))
        pointers = tuple(values[slot] for slot in _POINTER_SLOTS)
        for slot in _POINTER_SLOTS:
            values[slot] = 0
        return values, pointers

    def _new_output(self, q_info, shape, kind, name):
        if q_info.framework == "torch":
            torch = T.torch_module()
            dtype = torch.bfloat16 if kind == "bf16" else torch.float32
            return torch.empty(shape, dtype=dtype, device=q_info.obj.device)
        if q_info.device_type != "cpu":
            raise ValueError(f"{name}: pass an output tensor for a {q_info.framework} input on {q_info.device} "
                             f"(only torch or host inputs get outputs allocated)")
        return T.aligned_empty(shape, np.uint16 if kind == "bf16" else np.float32)

    def validate(self, infos, main_layout, extra_layout, softmax_scale):
        """Checks every argument against the plan; ValueError names the argument (expected vs got)."""
        b, s, h = ("b", self.batch), ("s_q", self.seq_q), ("h", self.num_heads)
        q, out, lse = infos["q"], infos["out"], infos["lse"]
        T.check_bf16(q, "q")
        T.check_shape(q, "q", [b, s, h, ("D", HEAD_DIM)])
        T.check_bf16(out, "out")
        T.check_shape(out, "out", [b, s, h, ("D", HEAD_DIM)])
        T.check_dtype(lse, "lse", ("float32",))
        T.check_shape(lse, "lse", [b, s, h])
        for name in ("q", "out"):
            T.check_last_dim_contiguous(infos[name], name)
        for name in ("out", "lse"):
            T.check_writeable(infos[name], name)
        self._check_index_list(infos, "indices", "topk_length", self.topk, "topk")
        if self.extra_topk > 0:
            if extra_layout is None or infos["extra_indices"] is None:
                missing = "extra_cache" if extra_layout is None else "extra_indices"
                raise ValueError(f"{missing}: required, the plan was made with extra_topk={self.extra_topk}")
            self._check_index_list(infos, "extra_indices", "extra_topk_length", self.extra_topk, "extra_topk")
        elif extra_layout is not None or infos["extra_indices"] is not None or infos["extra_topk_length"] is not None:
            raise ValueError("extra_cache: the plan was made with extra_topk=0; make the plan with "
                             "extra_topk=<extra index width> to read an extra cache")
        sink = infos["attn_sink"]
        if sink is not None:
            T.check_dtype(sink, "attn_sink", ("float32",))
            T.check_shape(sink, "attn_sink", [h])
            T.check_contiguous(sink, "attn_sink")
        if not (isinstance(softmax_scale, (int, float)) and math.isfinite(softmax_scale) and softmax_scale > 0):
            raise ValueError(f"softmax_scale: expected a finite value > 0, got {softmax_scale!r}")
        for name, info in infos.items():
            if info is not None:
                T.check_nonnegative_strides(info, name)
                T.check_device(info, name, self.device_type, self.device_index)
        for name, layout in (("cache", main_layout), ("extra_cache", extra_layout)):
            if layout is not None and (layout.device_type != self.device_type or
                                       (self.device_type == "cuda" and layout.device_index != self.device_index)):
                raise ValueError(f"{name}: expected a cache on {self.device} (the plan's device), got one on "
                                 f"{layout.device}")

    def _check_index_list(self, infos, indices_name, lengths_name, width, width_name):
        indices = infos[indices_name]
        T.check_dtype(indices, indices_name, ("int32",))
        T.check_shape(indices, indices_name, [("b", self.batch), ("s_q", self.seq_q), (width_name, width)])
        T.check_last_dim_contiguous(indices, indices_name)
        lengths = infos[lengths_name]
        if lengths is not None:
            T.check_dtype(lengths, lengths_name, ("int32",))
            if lengths.shape not in ((self.batch,), (self.batch, self.seq_q)):
                raise ValueError(f"{lengths_name}: expected shape [b={self.batch}] or [b={self.batch}, "
                                 f"s_q={self.seq_q}], got {list(lengths.shape)}")
            T.check_contiguous(lengths, lengths_name)

    def _fill_args(self, infos, main_layout, extra_layout, softmax_scale):
        """smla_decode_args_t of validated arguments."""
        args = _lib.DecodeArgsStruct()
        q, indices, out, lse = infos["q"], infos["indices"], infos["out"], infos["lse"]
        args.q = q.ptr
        args.q_stride_batch, args.q_stride_seq, args.q_stride_head = q.strides[:3]
        args.main_cache = main_layout.to_struct()
        args.indices = indices.ptr
        args.indices_stride_batch, args.indices_stride_seq = indices.strides[:2]
        _set_lengths(args, "topk_length", infos["topk_length"])
        if self.extra_topk > 0:
            extra_indices = infos["extra_indices"]
            args.extra_cache = extra_layout.to_struct()
            args.extra_indices = extra_indices.ptr
            args.extra_indices_stride_batch, args.extra_indices_stride_seq = extra_indices.strides[:2]
            _set_lengths(args, "extra_topk_length", infos["extra_topk_length"])
        args.attn_sink = infos["attn_sink"].ptr if infos["attn_sink"] is not None else None
        args.softmax_scale = float(softmax_scale)
        args.out = out.ptr
        args.out_stride_batch, args.out_stride_seq, args.out_stride_head = out.strides[:3]
        args.lse = lse.ptr
        args.lse_stride_batch, args.lse_stride_seq, args.lse_stride_head = lse.strides
        return args

    def launch(self, infos, main_layout, extra_layout, softmax_scale, stream):
        """Validates tensor infos in full, fills smla_decode_args_t and calls smla_decode_run (no caching)."""
        self.validate(infos, main_layout, extra_layout, softmax_scale)
        args = self._fill_args(infos, main_layout, extra_layout, softmax_scale)
        _lib.call("smla_decode_run", self._handle, ctypes.byref(args), ctypes.c_void_p(self._workspace_ptr),
                  self.workspace_bytes, stream)


class _DeviceWorkspace:
    """A plan's device workspace (smla_device_workspace_create), freed with the plan.

    cudaFree synchronizes the device, which a running CUDA-graph capture forbids: a workspace dropped while
    torch's current stream is capturing is kept and freed by the next workspace freed outside a capture.
    """

    _deferred = []

    def __init__(self, device, size):
        self.device = int(device)
        pointer, message = ctypes.c_void_p(), ctypes.create_string_buffer(512)
        status = _lib.library().smla_device_workspace_create(self.device, max(int(size), 1), ctypes.byref(pointer),
                                                             message, len(message))
        if status != _lib.STATUS_OK:
            raise _lib.SmlaError(status, f"plan workspace ({size} bytes on cuda:{self.device}): "
                                         f"{message.value.decode('utf-8', 'replace')}")
        self.ptr = pointer.value

    @staticmethod
    def _capturing():
        torch = T.torch_module()
        try:
            return torch is not None and torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()
        except Exception:  # interpreter shutdown, a broken CUDA context: free as usual
            return False

    def __del__(self):
        try:
            if self._capturing():
                _DeviceWorkspace._deferred.append((self.device, self.ptr))
                return
            pending, _DeviceWorkspace._deferred = _DeviceWorkspace._deferred + [(self.device, self.ptr)], []
            for device, pointer in pending:
                _lib.library().smla_device_workspace_destroy(device, pointer, None, 0)
        except Exception:  # interpreter shutdown: the library may already be gone
            pass


def _set_lengths(args, name, info):
    if info is None:
        setattr(args, name, None)
        setattr(args, name + "_layout", _lib.LENGTHS_PER_BATCH)
        return
    setattr(args, name, info.ptr)
    per_query = len(info.shape) == 2
    setattr(args, name + "_layout", _lib.LENGTHS_PER_QUERY if per_query else _lib.LENGTHS_PER_BATCH)


def plan(batch, seq_q, num_heads, topk, extra_topk=0, backend="auto", device=None, num_splits=0, **options):
    """Makes a Plan (see Plan); `options` are cpu_precision ("float64"/"float32"), cpu_threads, and for the
    CUDA backend max_shared_bytes and sm_count (plan as a device with that shared-memory limit / SM count)."""
    return Plan(batch, seq_q, num_heads, topk, extra_topk, backend, device, num_splits, **options)


def plan_by_id(plan_id):
    found = _plans_by_id.get(plan_id)
    if found is None:
        raise ValueError(f"plan_id: no live smla Plan with id {plan_id} (was the plan garbage-collected?)")
    return found
