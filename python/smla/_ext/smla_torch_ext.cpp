// smla's torch extension: the eager hot path of Plan.run and of the FlashMLA drop-in in C++ (issue 15).
//
// smla/_torch_ext.py builds this file once per smla, torch and Python version and loads it. It is not
// linked against libsmla: init() receives the addresses of smla_decode_run and smla_last_error from the
// ctypes binding, so the extension calls the very library instance Python loaded, and the layout of
// smla_decode_args_t (its size and the byte offsets of its ten pointers) from the ctypes mirror in _lib.py,
// which the loader checked against the library (smla_struct_size). No smla header is needed.
//
// Validation stays in Python, with its messages. Python remembers here each call signature it validated
// (every tensor's shape, strides, dtype and device, the softmax scale, the page block sizes) with the
// packed arguments of that call minus its pointers. A call whose signature matches one remembered gets its
// data pointers written and runs; the library checks the pointers (null, alignment, memory space) on every
// call, as on the Python path. Anything else is a miss (False / None) and Python takes the call: other
// argument types, tensor subclasses, a torch dispatch mode, an unknown signature, an unverified
// FlashMLASchedMeta. torch.compile never gets here (Python checks is_compiling first).
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_strided.h>
#include <c10/core/GradMode.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/version.h>

#ifdef SMLA_TORCH_EXT_CUDA
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace {

// int smla_decode_run(smla_plan_t, const smla_decode_args_t*, void* workspace, size_t bytes, void* stream)
using DecodeRunFn = int (*)(void*, const void*, void*, size_t, void*);
using LastErrorFn = const char* (*)();

// The pointers of smla_decode_args_t, in the order of _POINTER_SLOTS in decode.py.
enum Pointer {
  kQ,
  kCache,
  kIndices,
  kTopkLength,
  kExtraCache,
  kExtraIndices,
  kExtraTopkLength,
  kAttnSink,
  kOut,
  kLse
};
constexpr int kPointers = 10;
constexpr int kDropInInputs = 8;  // the drop-in's tensors: all but out and lse, which it allocates
constexpr int kMaxDims = 6;       // more than any argument has; a larger tensor is a miss (Python refuses it)
constexpr size_t kMaxArgsBytes = 512;
// As in decode.py / flashmla_compat.py: callers whose signatures change on every call cannot grow these.
constexpr size_t kMaxPlanSignatures = 64;
constexpr size_t kMaxDropInEntries = 256;
constexpr size_t kMaxVerifiedMetas = 4;

struct Library {
  DecodeRunFn decode_run = nullptr;
  LastErrorFn last_error = nullptr;
  size_t args_bytes = 0;
  size_t pointer_offsets[kPointers] = {};
  double default_softmax_scale = 0;
  PyObject* smla_error = nullptr;       // smla.SmlaError
  PyTypeObject* tensor_type = nullptr;  // torch.Tensor
  // torch.nn.Parameter: a Tensor to C++ (as THPVariable_CheckExact has it)
  PyTypeObject* parameter_type = nullptr;
  PyObject* sched_meta_type = nullptr;  // smla.flashmla_compat.FlashMLASchedMeta
  PyObject* name_config = nullptr;
  PyObject* name_have_initialized = nullptr;
  PyObject* name_tile_scheduler_metadata = nullptr;
  PyObject* name_num_splits = nullptr;
};
Library library;

struct Counters {
  uint64_t plan_hits = 0, plan_misses = 0, drop_in_hits = 0, drop_in_misses = 0;
};
Counters counters;

// What Python's signature key holds of one tensor argument (decode._facts): shape, strides, dtype, device.
struct TensorFacts {
  bool present = false;
  int8_t dim = 0;
  int8_t dtype = 0;
  int8_t device_type = 0;
  int16_t device_index = 0;
  int64_t sizes[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};
};

bool same_facts(const TensorFacts& a, const TensorFacts& b) {
  if (a.present != b.present) return false;
  if (!a.present) return true;
  if (a.dim != b.dim || a.dtype != b.dtype || a.device_type != b.device_type ||
      a.device_index != b.device_index)
    return false;
  for (int i = 0; i < a.dim; ++i) {
    if (a.sizes[i] != b.sizes[i] || a.strides[i] != b.strides[i]) return false;
  }
  return true;
}

// The tensor behind `object` when the fast path takes it: a torch.Tensor or nn.Parameter (another subclass
// may answer shape or data_ptr differently in Python), strided, without a Python dispatch key, not a negative
// view (Python refuses those: the stored values are the negated ones).
const at::Tensor* plain_tensor(PyObject* object) {
  const PyTypeObject* type = Py_TYPE(object);
  if (type != library.tensor_type && type != library.parameter_type) return nullptr;
  const at::Tensor& tensor = THPVariable_Unpack(object);
  if (!tensor.defined() || tensor.layout() != c10::kStrided ||
      tensor.key_set().has(c10::DispatchKey::Python) || tensor.is_neg())
    return nullptr;
  return &tensor;
}

// An output that autograd tracks while grad mode is on: Python refuses to write it (check_writeable).
bool tracked_by_autograd(const at::Tensor& tensor) {
  return tensor.requires_grad() && c10::GradMode::is_enabled();
}

// Facts of one argument (None gives absent facts when `optional`); false when the fast path does not take it.
bool read_facts(PyObject* object, bool optional, TensorFacts* facts, const at::Tensor** tensor) {
  *tensor = nullptr;
  if (object == Py_None) {
    facts->present = false;
    return optional;
  }
  const at::Tensor* found = plain_tensor(object);
  if (found == nullptr) return false;
  try {
    const int64_t dim = found->dim();
    if (dim > kMaxDims) return false;
    const c10::IntArrayRef sizes = found->sizes();
    const c10::IntArrayRef strides = found->strides();
    facts->present = true;
    facts->dim = static_cast<int8_t>(dim);
    facts->dtype = static_cast<int8_t>(found->scalar_type());
    const c10::Device device = found->device();
    facts->device_type = static_cast<int8_t>(device.type());
    facts->device_index = device.index();
    for (int64_t i = 0; i < dim; ++i) {
      facts->sizes[i] = sizes[i];
      facts->strides[i] = strides[i];
    }
  } catch (const std::exception&) {  // e.g. symbolic sizes: not a tensor for the fast path
    return false;
  }
  *tensor = found;
  return true;
}

// softmax_scale as the Python key has it: None is the default scale; a float (or a subclass such as
// numpy.float64) or an int, whose value Python's key compares (1 == 1.0). Anything else is a miss.
bool read_scale(PyObject* object, double* scale) {
  if (object == Py_None) {
    *scale = library.default_softmax_scale;
    return true;
  }
  if (!PyFloat_Check(object) && !PyLong_Check(object)) return false;
  *scale = PyFloat_AsDouble(object);
  if (*scale == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    return false;
  }
  return true;
}

// A page block size: None (-1) or an integer (anything with __index__, as numpy integers).
bool read_page_block_size(PyObject* object, int64_t* value) {
  if (object == Py_None) {
    *value = -1;
    return true;
  }
  if (!PyIndex_Check(object)) return false;
  int overflow = 0;
  *value = PyLong_AsLongLongAndOverflow(object, &overflow);
  if (PyErr_Occurred()) {
    PyErr_Clear();
    return false;
  }
  return overflow == 0 && *value >= 0;
}

// A torch dispatch mode (fake tensors, functionalization, make_fx) must see the call: Python routes it
// through the smla::sparse_decode op.
bool dispatch_mode_active() { return c10::impl::TorchDispatchModeTLS::stack_len() > 0; }

// A Plan.run call signature Python validated, with the packed arguments of that call minus its pointers.
struct PlanSignature {
  TensorFacts tensors[kPointers];
  double softmax_scale = 0;
  int64_t page_block_size = -1;
  int64_t extra_page_block_size = -1;
  std::vector<uint8_t> args;  // packed smla_decode_args_t, pointers 0
};

// One smla.Plan: what a run passes to the library besides the arguments, and its remembered signatures.
struct PlanState {
  void* handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  int device = -1;  // CUDA ordinal, -1 for the cpu backend
  std::vector<PlanSignature> signatures;
};

constexpr const char* kPlanCapsule = "smla.PlanState";

void destroy_plan_state(PyObject* capsule) {
  delete static_cast<PlanState*>(PyCapsule_GetPointer(capsule, kPlanCapsule));
}

PlanState* plan_state_of(PyObject* capsule) {
  if (!PyCapsule_CheckExact(capsule)) {
    PyErr_SetString(PyExc_TypeError, "smla torch extension: expected a plan state capsule");
    return nullptr;
  }
  return static_cast<PlanState*>(PyCapsule_GetPointer(capsule, kPlanCapsule));
}

void raise_smla_error(int status, const std::string& message) {
  // The Python path's message: smla_last_error(), or this when it is empty.
  const std::string text = message.empty() ? std::string("smla_decode_run failed") : message;
  PyObject* text_object = PyUnicode_DecodeUTF8(text.data(), static_cast<Py_ssize_t>(text.size()), "replace");
  if (text_object == nullptr) return;
  PyObject* error = PyObject_CallFunction(library.smla_error, "iO", status, text_object);
  Py_DECREF(text_object);
  if (error == nullptr) return;
  PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error)), error);
  Py_DECREF(error);
}

#ifdef SMLA_TORCH_EXT_CUDA
// Makes `device` the caller's current device again after a call. Since CUDA 12 setting a device creates its
// context, so torch >= 2.1 restores a device that has none only in its own bookkeeping (MaybeSetDevice, as its
// device guards do); older torch sets it.
void restore_device(c10::DeviceIndex device) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
  C10_CUDA_CHECK(c10::cuda::MaybeSetDevice(device));
#else
  c10::cuda::set_device(device);
#endif
}
#endif

// Runs the library on `args` as the Python path does: on torch's current stream of the plan's device, with
// that device made current for the call and the caller's restored after. False with a Python exception set
// on failure (SmlaError for a failed status, with the library's message).
bool launch(const PlanState& plan, const uint8_t* args) {
  void* stream = nullptr;
  int previous_device = -1;
#ifdef SMLA_TORCH_EXT_CUDA
  if (plan.device >= 0) {
    try {
      const auto device = static_cast<c10::DeviceIndex>(plan.device);
      stream = c10::cuda::getCurrentCUDAStream(device).stream();
      const c10::DeviceIndex current = c10::cuda::current_device();
      if (current != device) {
        c10::cuda::set_device(device);
        previous_device = current;
      }
    } catch (...) {
      torch::translate_exception_to_python(std::current_exception());
      return false;
    }
  }
#endif
  int status = 0;
  std::string message;
  void* const handle = plan.handle;
  void* const workspace = plan.workspace;
  const size_t workspace_bytes = plan.workspace_bytes;
  // As ctypes did: other Python threads run while the library launches (or computes, on the cpu backend).
  Py_BEGIN_ALLOW_THREADS;
  status = library.decode_run(handle, args, workspace, workspace_bytes, stream);
  if (status != 0) {
    const char* text = library.last_error();
    message = text != nullptr ? text : "";
  }
  Py_END_ALLOW_THREADS;
#ifdef SMLA_TORCH_EXT_CUDA
  if (previous_device >= 0) {
    try {
      restore_device(static_cast<c10::DeviceIndex>(previous_device));
    } catch (...) {
      if (status == 0) {
        torch::translate_exception_to_python(std::current_exception());
        return false;
      }
    }
  }
#else
  (void)previous_device;
#endif
  if (status != 0) {
    raise_smla_error(status, message);
    return false;
  }
  return true;
}

// The packed arguments of one call: a remembered template with this call's pointers written in.
struct PackedArgs {
  alignas(8) uint8_t bytes[kMaxArgsBytes];
};
void write_pointers(void* const pointers[kPointers], PackedArgs* packed) {
  for (int i = 0; i < kPointers; ++i) {
    const uint64_t value = reinterpret_cast<uintptr_t>(pointers[i]);
    std::memcpy(packed->bytes + library.pointer_offsets[i], &value, sizeof(value));
  }
}

bool read_args_template(PyObject* object, std::vector<uint8_t>* args) {
  if (!PyBytes_CheckExact(object) || static_cast<size_t>(PyBytes_GET_SIZE(object)) != library.args_bytes) {
    PyErr_SetString(PyExc_ValueError, "smla torch extension: packed arguments of the wrong size");
    return false;
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(PyBytes_AS_STRING(object));
  args->assign(bytes, bytes + library.args_bytes);
  return true;
}

bool initialized(const char* function) {
  if (library.decode_run != nullptr) return true;
  PyErr_Format(PyExc_RuntimeError, "smla torch extension: %s called before init()", function);
  return false;
}

// ---- Plan.run ---------------------------------------------------------------------------------------------
// Arguments after the plan state, in Plan.run's order: q, cache, indices, topk_length, extra_cache,
// extra_indices, extra_topk_length, attn_sink, softmax_scale, out, lse, page_block_size,
// extra_page_block_size.
constexpr Py_ssize_t kPlanCallArgs = 13;
constexpr int kPlanTensorArg[kPointers] = {0, 1, 2, 3, 4, 5, 6, 7, 9, 10};
constexpr bool kRequired[kPointers] = {true, true, true, false, false, false, false, false, true, true};

// The signature of one Plan.run call and its tensors; false when the fast path does not take the call.
bool read_plan_call(PyObject* const* call, PlanSignature* key, const at::Tensor* tensors[kPointers]) {
  for (int i = 0; i < kPointers; ++i) {
    if (!read_facts(call[kPlanTensorArg[i]], !kRequired[i], &key->tensors[i], &tensors[i])) return false;
  }
  if (tracked_by_autograd(*tensors[kOut]) || tracked_by_autograd(*tensors[kLse])) return false;
  return read_scale(call[8], &key->softmax_scale) && read_page_block_size(call[11], &key->page_block_size) &&
         read_page_block_size(call[12], &key->extra_page_block_size);
}

bool same_plan_signature(const PlanSignature& a, const PlanSignature& b) {
  if (a.softmax_scale != b.softmax_scale || a.page_block_size != b.page_block_size ||
      a.extra_page_block_size != b.extra_page_block_size)
    return false;
  for (int i = 0; i < kPointers; ++i) {
    if (!same_facts(a.tensors[i], b.tensors[i])) return false;
  }
  return true;
}

bool read_pointers(const at::Tensor* const tensors[], int count, void* pointers[kPointers]) {
  try {
    for (int i = 0; i < count; ++i) pointers[i] = tensors[i] == nullptr ? nullptr : tensors[i]->data_ptr();
  } catch (const std::exception&) {  // no storage: Python reports it
    return false;
  }
  return true;
}

// plan_run(state, <Plan.run's 13 arguments>) -> True when it ran, False for a miss (nothing done).
PyObject* plan_run(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 1 + kPlanCallArgs) {
    PyErr_SetString(PyExc_TypeError, "plan_run: expected the plan state and 13 arguments");
    return nullptr;
  }
  PlanState* plan = plan_state_of(args[0]);
  if (plan == nullptr || !initialized("plan_run")) return nullptr;
  PlanSignature key;
  const at::Tensor* tensors[kPointers];
  const PlanSignature* found = nullptr;
  if (!dispatch_mode_active() && read_plan_call(args + 1, &key, tensors)) {
    for (const PlanSignature& signature : plan->signatures) {
      if (same_plan_signature(signature, key)) {
        found = &signature;
        break;
      }
    }
  }
  void* pointers[kPointers];
  if (found == nullptr || !read_pointers(tensors, kPointers, pointers)) {
    ++counters.plan_misses;
    Py_RETURN_FALSE;
  }
  PackedArgs packed;
  std::memcpy(packed.bytes, found->args.data(), library.args_bytes);
  write_pointers(pointers, &packed);
  ++counters.plan_hits;
  if (!launch(*plan, packed.bytes)) return nullptr;
  Py_RETURN_TRUE;
}

// plan_remember(state, packed_args, <Plan.run's 13 arguments>) -> True when remembered. Python calls it after
// validating a call, with that call's packed smla_decode_args_t (pointers 0).
PyObject* plan_remember(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 2 + kPlanCallArgs) {
    PyErr_SetString(PyExc_TypeError,
                    "plan_remember: expected the plan state, packed arguments and 13 arguments");
    return nullptr;
  }
  PlanState* plan = plan_state_of(args[0]);
  if (plan == nullptr || !initialized("plan_remember")) return nullptr;
  try {  // no Python references here: out of memory leaves the table as it was, or empty
    PlanSignature signature;
    const at::Tensor* tensors[kPointers];
    if (!read_plan_call(args + 2, &signature, tensors)) Py_RETURN_FALSE;
    if (!read_args_template(args[1], &signature.args)) return nullptr;
    for (PlanSignature& known : plan->signatures) {
      if (same_plan_signature(known, signature)) {
        known.args = std::move(signature.args);
        Py_RETURN_TRUE;
      }
    }
    if (plan->signatures.size() >= kMaxPlanSignatures) plan->signatures.clear();
    plan->signatures.push_back(std::move(signature));
  } catch (const std::bad_alloc&) {
    return PyErr_NoMemory();
  }
  Py_RETURN_TRUE;
}

// plan_state(handle, workspace, workspace_bytes, device) -> the capsule Plan keeps for plan_run.
PyObject* plan_state(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 4) {
    PyErr_SetString(PyExc_TypeError, "plan_state: expected handle, workspace, workspace_bytes, device");
    return nullptr;
  }
  std::unique_ptr<PlanState> state;
  try {
    state = std::make_unique<PlanState>();
  } catch (const std::bad_alloc&) {
    return PyErr_NoMemory();
  }
  state->handle = PyLong_AsVoidPtr(args[0]);
  state->workspace = args[1] == Py_None ? nullptr : PyLong_AsVoidPtr(args[1]);
  state->workspace_bytes = PyLong_AsSize_t(args[2]);
  state->device = static_cast<int>(PyLong_AsLong(args[3]));
  if (PyErr_Occurred()) return nullptr;
#ifndef SMLA_TORCH_EXT_CUDA
  if (state->device >= 0) {
    PyErr_SetString(PyExc_ValueError, "plan_state: this build of the extension has no CUDA support");
    return nullptr;
  }
#endif
  PyObject* capsule = PyCapsule_New(state.get(), kPlanCapsule, destroy_plan_state);
  if (capsule != nullptr) state.release();
  return capsule;
}

PyObject* plan_signature_count(PyObject*, PyObject* capsule) {
  PlanState* plan = plan_state_of(capsule);
  if (plan == nullptr) return nullptr;
  return PyLong_FromSize_t(plan->signatures.size());
}

// ---- the FlashMLA drop-in ---------------------------------------------------------------------------------
// Arguments: q, k_cache, indices, topk_length, extra_k_cache, extra_indices, extra_topk_length, attn_sink,
// softmax_scale, tile_scheduler_metadata.
constexpr Py_ssize_t kDropInCallArgs = 10;

// A FlashMLASchedMeta that Python checked against an entry's shapes (_check_metadata) and updated: while its
// fields are still the ones Python left, the check passes again and the update would change nothing.
struct VerifiedMeta {
  PyObject* meta = nullptr;
  PyObject* config = nullptr;
  PyObject* num_splits = nullptr;
};

struct DropInEntry {
  TensorFacts inputs[kDropInInputs];
  double softmax_scale = 0;
  PyObject* plan = nullptr;        // the smla.Plan (strong: keeps its handle alive)
  PyObject* plan_state = nullptr;  // its PlanState capsule (strong)
  std::vector<uint8_t> args;       // packed smla_decode_args_t, pointers 0
  std::vector<VerifiedMeta> metas;

  DropInEntry() = default;
  DropInEntry(const DropInEntry&) = delete;
  DropInEntry& operator=(const DropInEntry&) = delete;
  ~DropInEntry() {
    for (VerifiedMeta& verified : metas) release(&verified);
    Py_XDECREF(plan);
    Py_XDECREF(plan_state);
  }
  static void release(VerifiedMeta* verified) {
    Py_XDECREF(verified->meta);
    Py_XDECREF(verified->config);
    Py_XDECREF(verified->num_splits);
    *verified = VerifiedMeta{};
  }
};
// Never destroyed: its entries hold Python references, which must not be released after Python has finalized.
std::vector<std::unique_ptr<DropInEntry>>& drop_in_entries = *new std::vector<std::unique_ptr<DropInEntry>>();

struct DropInKey {
  TensorFacts inputs[kDropInInputs];
  double softmax_scale = 0;
};

bool read_drop_in_call(PyObject* const* call, DropInKey* key, const at::Tensor* tensors[kDropInInputs]) {
  for (int i = 0; i < kDropInInputs; ++i) {
    if (!read_facts(call[i], !kRequired[i], &key->inputs[i], &tensors[i])) return false;
  }
  return read_scale(call[8], &key->softmax_scale);
}

bool same_drop_in_key(const DropInEntry& entry, const DropInKey& key) {
  if (entry.softmax_scale != key.softmax_scale) return false;
  for (int i = 0; i < kDropInInputs; ++i) {
    if (!same_facts(entry.inputs[i], key.inputs[i])) return false;
  }
  return true;
}

// getattr(object, name) is expected: true when identical (no exception left set either way).
bool attribute_is(PyObject* object, PyObject* name, PyObject* expected) {
  PyObject* value = PyObject_GetAttr(object, name);
  if (value == nullptr) {
    PyErr_Clear();
    return false;
  }
  const bool same = value == expected;
  Py_DECREF(value);
  return same;
}

// The record of `meta` among the entry's verified ones, or nullptr (pointer comparisons: no Python code
// runs).
const VerifiedMeta* verified_record(const DropInEntry& entry, PyObject* meta) {
  for (const VerifiedMeta& verified : entry.metas) {
    if (verified.meta == meta) return &verified;
  }
  return nullptr;
}

// Whether `meta` (tile_scheduler_metadata) lets the call run without Python: anything but a FlashMLASchedMeta
// is ignored (as in Python); a FlashMLASchedMeta must be one Python verified (`config` and `num_splits` are
// what it held then, null when it was never verified) and still hold what Python left in it.
bool meta_accepted(PyObject* meta, PyObject* config, PyObject* num_splits, PyObject* plan) {
  if (meta == Py_None) return true;
  const int is_sched_meta = PyObject_IsInstance(meta, library.sched_meta_type);
  if (is_sched_meta < 0) {
    PyErr_Clear();
    return false;
  }
  if (is_sched_meta == 0) return true;
  return config != nullptr && attribute_is(meta, library.name_have_initialized, Py_True) &&
         attribute_is(meta, library.name_config, config) &&
         attribute_is(meta, library.name_tile_scheduler_metadata, plan) &&
         attribute_is(meta, library.name_num_splits, num_splits);
}

// drop_in_run(<10 arguments>) -> (out, lse) when it ran, None for a miss (nothing done).
PyObject* drop_in_run(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != kDropInCallArgs) {
    PyErr_SetString(PyExc_TypeError, "drop_in_run: expected 10 arguments");
    return nullptr;
  }
  if (!initialized("drop_in_run")) return nullptr;
  DropInKey key;
  const at::Tensor* tensors[kDropInInputs];
  const DropInEntry* found = nullptr;
  if (!dispatch_mode_active() && read_drop_in_call(args, &key, tensors)) {
    for (const auto& entry : drop_in_entries) {
      if (same_drop_in_key(*entry, key)) {
        found = entry.get();
        break;
      }
    }
  }
  if (found == nullptr) {
    ++counters.drop_in_misses;
    Py_RETURN_NONE;
  }
  // Everything the call needs from the entry, copied out first: the metadata's attribute lookups run Python
  // code, and the GIL is released during the launch, so the entry may be gone by then.
  PyObject* const meta = args[9];
  const VerifiedMeta* record = meta == Py_None ? nullptr : verified_record(*found, meta);
  PyObject* verified_config = record == nullptr ? nullptr : record->config;
  PyObject* verified_num_splits = record == nullptr ? nullptr : record->num_splits;
  PyObject* const plan_object = found->plan;
  PyObject* const plan_capsule = found->plan_state;
  for (PyObject* object : {verified_config, verified_num_splits, plan_object, plan_capsule})
    Py_XINCREF(object);
  PackedArgs packed;
  std::memcpy(packed.bytes, found->args.data(), library.args_bytes);
  // out [b, s_q, h, 512] bf16 and lse [b, h, s_q] float32 as the transposed view of a [b, s_q, h] buffer,
  // as flashmla_compat._new_outputs makes them (and as the remembered arguments describe them).
  const int64_t batch = key.inputs[kQ].sizes[0], seq_q = key.inputs[kQ].sizes[1],
                heads = key.inputs[kQ].sizes[2];
  found = nullptr;

  PyObject* result = nullptr;
  void* pointers[kPointers] = {};
  const bool accepted = meta_accepted(meta, verified_config, verified_num_splits, plan_object) &&
                        read_pointers(tensors, kDropInInputs, pointers);
  if (!accepted) {
    ++counters.drop_in_misses;
    Py_INCREF(Py_None);
    result = Py_None;
  } else {
    try {
      const at::TensorOptions options = at::TensorOptions().device(tensors[kQ]->device());
      at::Tensor out = at::empty({batch, seq_q, heads, 512}, options.dtype(at::kBFloat16));
      at::Tensor lse =
          at::empty_strided({batch, heads, seq_q}, {seq_q * heads, 1, heads}, options.dtype(at::kFloat));
      pointers[kOut] = out.data_ptr();
      pointers[kLse] = lse.data_ptr();
      write_pointers(pointers, &packed);
      ++counters.drop_in_hits;
      if (launch(*static_cast<PlanState*>(PyCapsule_GetPointer(plan_capsule, kPlanCapsule)), packed.bytes)) {
        PyObject* out_object = THPVariable_Wrap(std::move(out));
        PyObject* lse_object = out_object == nullptr ? nullptr : THPVariable_Wrap(std::move(lse));
        if (lse_object != nullptr) result = PyTuple_Pack(2, out_object, lse_object);
        Py_XDECREF(out_object);
        Py_XDECREF(lse_object);
      }
    } catch (...) {
      torch::translate_exception_to_python(std::current_exception());
      result = nullptr;
    }
  }
  for (PyObject* object : {verified_config, verified_num_splits, plan_object, plan_capsule})
    Py_XDECREF(object);
  return result;
}

// drop_in_remember(plan, plan_state, packed_args, meta, <the 9 call arguments up to softmax_scale>) -> True
// when remembered. Python calls it after a call it validated, checked `meta` for and ran (meta None when it
// is not a FlashMLASchedMeta).
//
// Dropping a reference may run Python code (a Plan's finalizer, and any garbage collection it sets off),
// which may call back into this extension. So the Python code this function runs (the metadata's attribute
// lookups) runs before the table is touched, and every reference it drops is released at its end, with the
// table consistent.
PyObject* drop_in_remember(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 4 + kDropInCallArgs - 1) {
    PyErr_SetString(PyExc_TypeError,
                    "drop_in_remember: expected plan, plan state, packed arguments, meta and 9 "
                    "call arguments");
    return nullptr;
  }
  if (!initialized("drop_in_remember") || plan_state_of(args[1]) == nullptr) return nullptr;
  DropInKey key;
  const at::Tensor* tensors[kDropInInputs];
  if (!read_drop_in_call(args + 4, &key, tensors) || tensors[kQ]->dim() != 4) Py_RETURN_FALSE;
  PyObject* const meta = args[3];
  VerifiedMeta verified;  // owns its references until it is stored
  if (meta != Py_None) {
    verified.config = PyObject_GetAttr(meta, library.name_config);
    verified.num_splits =
        verified.config == nullptr ? nullptr : PyObject_GetAttr(meta, library.name_num_splits);
    if (verified.num_splits == nullptr) {
      DropInEntry::release(&verified);
      return nullptr;
    }
    Py_INCREF(meta);
    verified.meta = meta;
  }
  // References this call drops, and entries it evicts: released last. Room for every reference it may
  // drop is reserved first, so nothing below allocates once a reference has changed hands but `metas`'s
  // growth, which the entry reserved when it was made.
  std::vector<std::unique_ptr<DropInEntry>> evicted;
  std::vector<PyObject*> dropped;
  try {
    dropped.reserve(3 * kMaxVerifiedMetas + 11);
    std::vector<uint8_t> packed;
    if (!read_args_template(args[2], &packed)) {
      DropInEntry::release(&verified);
      return nullptr;
    }
    DropInEntry* entry = nullptr;
    for (const auto& known : drop_in_entries) {
      if (same_drop_in_key(*known, key)) entry = known.get();
    }
    if (entry == nullptr) {
      auto fresh = std::make_unique<DropInEntry>();
      fresh->metas.reserve(kMaxVerifiedMetas);
      std::memcpy(fresh->inputs, key.inputs, sizeof(key.inputs));
      fresh->softmax_scale = key.softmax_scale;
      if (drop_in_entries.size() >= kMaxDropInEntries) {
        evicted.swap(drop_in_entries);
        drop_in_entries.reserve(kMaxDropInEntries);
      }
      drop_in_entries.push_back(std::move(fresh));
      entry = drop_in_entries.back().get();
    }
    if (entry->plan != args[0]) {
      for (const VerifiedMeta& known : entry->metas)
        dropped.insert(dropped.end(), {known.meta, known.config, known.num_splits});
      entry->metas.clear();
      dropped.insert(dropped.end(), {entry->plan, entry->plan_state});
      Py_INCREF(args[0]);
      Py_INCREF(args[1]);
      entry->plan = args[0];
      entry->plan_state = args[1];
    }
    entry->args = std::move(packed);
    // Python checked `meta` against this entry just now: remember it (newest last, at most
    // kMaxVerifiedMetas).
    if (verified.meta != nullptr) {
      std::vector<VerifiedMeta>& metas = entry->metas;
      for (auto known = metas.begin(); known != metas.end();) {
        if (known->meta == meta) {
          dropped.insert(dropped.end(), {known->meta, known->config, known->num_splits});
          known = metas.erase(known);
        } else {
          ++known;
        }
      }
      if (metas.size() >= kMaxVerifiedMetas) {
        dropped.insert(dropped.end(), {metas.front().meta, metas.front().config, metas.front().num_splits});
        metas.erase(metas.begin());
      }
      metas.push_back(verified);  // within the reserved capacity
      verified = VerifiedMeta{};
    }
  } catch (const std::bad_alloc&) {
    DropInEntry::release(&verified);
    for (PyObject* object : dropped) Py_XDECREF(object);
    return PyErr_NoMemory();
  }
  for (PyObject* object : dropped) Py_XDECREF(object);
  evicted.clear();
  Py_RETURN_TRUE;
}

PyObject* drop_in_clear(PyObject*, PyObject*) {
  // The table is empty before any entry is released (a released Plan's finalizer may call back here).
  std::vector<std::unique_ptr<DropInEntry>> released;
  released.swap(drop_in_entries);
  released.clear();
  Py_RETURN_NONE;
}

PyObject* drop_in_entry_count(PyObject*, PyObject*) { return PyLong_FromSize_t(drop_in_entries.size()); }

PyObject* counters_dict(PyObject*, PyObject*) {
  return Py_BuildValue("{s:K,s:K,s:K,s:K}", "plan_hits", (unsigned long long)counters.plan_hits,
                       "plan_misses", (unsigned long long)counters.plan_misses, "drop_in_hits",
                       (unsigned long long)counters.drop_in_hits, "drop_in_misses",
                       (unsigned long long)counters.drop_in_misses);
}

// What the benchmark puts in place of smla_decode_run to time the bindings alone (no_op_library()).
int no_op_decode_run(void*, const void*, void*, size_t, void*) { return 0; }

// set_decode_run(address) -> the previous address.
PyObject* set_decode_run(PyObject*, PyObject* address) {
  if (!initialized("set_decode_run")) return nullptr;
  auto function = reinterpret_cast<DecodeRunFn>(PyLong_AsVoidPtr(address));
  if (PyErr_Occurred()) return nullptr;
  if (function == nullptr) {
    PyErr_SetString(PyExc_ValueError, "set_decode_run: null address");
    return nullptr;
  }
  PyObject* previous = PyLong_FromVoidPtr(reinterpret_cast<void*>(library.decode_run));
  library.decode_run = function;
  return previous;
}

// init(decode_run_address, last_error_address, args_bytes, pointer_offsets, SmlaError, default_softmax_scale,
//      torch.Tensor, torch.nn.Parameter, FlashMLASchedMeta)
PyObject* init(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
  if (nargs != 9) {
    PyErr_SetString(PyExc_TypeError, "init: expected 9 arguments");
    return nullptr;
  }
  Library loaded;
  loaded.decode_run = reinterpret_cast<DecodeRunFn>(PyLong_AsVoidPtr(args[0]));
  loaded.last_error = reinterpret_cast<LastErrorFn>(PyLong_AsVoidPtr(args[1]));
  loaded.args_bytes = PyLong_AsSize_t(args[2]);
  if (PyErr_Occurred()) return nullptr;
  if (loaded.decode_run == nullptr || loaded.last_error == nullptr || loaded.args_bytes == 0 ||
      loaded.args_bytes > kMaxArgsBytes) {
    PyErr_SetString(PyExc_ValueError, "init: null function address or packed-argument size out of range");
    return nullptr;
  }
  if (!PyTuple_Check(args[3]) || PyTuple_GET_SIZE(args[3]) != kPointers) {
    PyErr_SetString(PyExc_ValueError, "init: expected a tuple of 10 pointer offsets");
    return nullptr;
  }
  for (int i = 0; i < kPointers; ++i) {
    loaded.pointer_offsets[i] = PyLong_AsSize_t(PyTuple_GET_ITEM(args[3], i));
    if (PyErr_Occurred()) return nullptr;
    if (loaded.pointer_offsets[i] % 8 != 0 || loaded.pointer_offsets[i] + 8 > loaded.args_bytes) {
      PyErr_SetString(PyExc_ValueError, "init: a pointer offset lies outside the packed arguments");
      return nullptr;
    }
  }
  loaded.default_softmax_scale = PyFloat_AsDouble(args[5]);
  if (PyErr_Occurred()) return nullptr;
  if (!PyType_Check(args[6]) || !PyType_Check(args[7]) || !PyType_Check(args[8])) {
    PyErr_SetString(PyExc_TypeError,
                    "init: expected torch.Tensor, torch.nn.Parameter and FlashMLASchedMeta types");
    return nullptr;
  }
  loaded.tensor_type = reinterpret_cast<PyTypeObject*>(args[6]);
  loaded.parameter_type = reinterpret_cast<PyTypeObject*>(args[7]);
  loaded.sched_meta_type = args[8];
  loaded.smla_error = args[4];
  loaded.name_config = PyUnicode_InternFromString("config");
  loaded.name_have_initialized = PyUnicode_InternFromString("have_initialized");
  loaded.name_tile_scheduler_metadata = PyUnicode_InternFromString("tile_scheduler_metadata");
  loaded.name_num_splits = PyUnicode_InternFromString("num_splits");
  if (loaded.name_config == nullptr || loaded.name_have_initialized == nullptr ||
      loaded.name_tile_scheduler_metadata == nullptr || loaded.name_num_splits == nullptr)
    return nullptr;
  // Kept for the life of the process: the extension cannot be unloaded.
  for (PyObject* object : {args[4], args[6], args[7], args[8]}) Py_INCREF(object);
  library = loaded;
  return drop_in_clear(nullptr, nullptr);
}

PyMethodDef methods[] = {
    {"init", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(init)), METH_FASTCALL,
     "init(decode_run, last_error, args_bytes, pointer_offsets, SmlaError, default_scale, Tensor, Parameter, "
     "FlashMLASchedMeta)"},
    {"plan_state", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(plan_state)), METH_FASTCALL,
     "plan_state(handle, workspace, workspace_bytes, device) -> capsule"},
    {"plan_run", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(plan_run)), METH_FASTCALL,
     "plan_run(state, <Plan.run arguments>) -> bool (False: not run, take the Python path)"},
    {"plan_remember", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(plan_remember)),
     METH_FASTCALL, "plan_remember(state, packed_args, <Plan.run arguments>) -> bool"},
    {"plan_signature_count", plan_signature_count, METH_O, "plan_signature_count(state) -> int"},
    {"drop_in_run", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(drop_in_run)), METH_FASTCALL,
     "drop_in_run(<drop-in arguments>, meta) -> (out, lse) or None (not run, take the Python path)"},
    {"drop_in_remember", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(drop_in_remember)),
     METH_FASTCALL, "drop_in_remember(plan, plan_state, packed_args, meta, <drop-in arguments>) -> bool"},
    {"drop_in_clear", drop_in_clear, METH_NOARGS, "forget every remembered drop-in call"},
    {"drop_in_entry_count", drop_in_entry_count, METH_NOARGS, "number of remembered drop-in call signatures"},
    {"counters", counters_dict, METH_NOARGS, "calls run (hits) and handed back to Python (misses)"},
    {"set_decode_run", set_decode_run, METH_O, "set_decode_run(address) -> previous address (benchmarks)"},
    {nullptr, nullptr, 0, nullptr},
};

#define SMLA_STRING_(name) #name
#define SMLA_STRING(name) SMLA_STRING_(name)
PyModuleDef module_def = {PyModuleDef_HEAD_INIT,
                          SMLA_STRING(TORCH_EXTENSION_NAME),
                          "smla's eager hot path (see smla/_torch_ext.py)",
                          -1,
                          methods,
                          nullptr,
                          nullptr,
                          nullptr,
                          nullptr};

}  // namespace

#define SMLA_CONCAT_(a, b) a##b
#define SMLA_CONCAT(a, b) SMLA_CONCAT_(a, b)

PyMODINIT_FUNC SMLA_CONCAT(PyInit_, TORCH_EXTENSION_NAME)(void) {
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
#ifdef SMLA_TORCH_EXT_CUDA
  const long cuda = 1;
#else
  const long cuda = 0;
#endif
  if (PyModule_AddIntConstant(module, "CUDA", cuda) != 0 ||
      PyModule_AddObject(module, "NO_OP_DECODE_RUN",
                         PyLong_FromVoidPtr(reinterpret_cast<void*>(&no_op_decode_run))) != 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
