// The decode entry points: shape and argument validation (the one boundary where inputs are checked),
// planning, and the single place that calls the backend launchers. Kernels trust what passes here.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "common/backend_entry.h"
#include "common/build_params.h"
#include "common/byte_range.h"
#include "common/decode_params.h"
#include "common/memory_space.h"
#include "common/split_grid.h"
#include "cuda/common/cuda_check.h"
#include "cuda/decode/config_compact.h"
#include "smla/cache.h"
#include "smla/decode.h"

namespace smla {
namespace {

using detail::ByteRange;

// Kernels index q/out elements, index-list entries and (row, head) pairs with int32 arithmetic
// (cheaper address math, fewer registers). So every flat element count of a call must fit int32:
// b*s_q*h*512 (q, out) and b*s_q*topk, b*s_q*extra_topk (index lists). 2^31-1 q elements is 4 GiB
// of bf16, far above any decode batch.
constexpr int64_t kMaxFlatElements = std::numeric_limits<int32_t>::max();
// Entries of one index list. Tile counts and token positions are int32 (ceil(width / 64) tiles of 64
// tokens), so a width near 2^31 would wrap them; 2^24 entries (9.8 GB of records a query row) is far above
// any model's list (DSv4: 512-8,192).
constexpr int64_t kMaxListWidth = int64_t{1} << 24;
// CPU backend threads: more than this only costs thread creation (and a failed creation must be handled
// before it happens); 0 still means one per hardware thread.
constexpr int64_t kMaxCpuThreads = 1024;
// q and out are read/written with 16-byte vectors (8 bf16 values).
constexpr int64_t kVectorBytes = 16;
constexpr int64_t kBf16PerVector = kVectorBytes / 2;

std::string str(int64_t value) { return std::to_string(value); }

std::string float_text(float value) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", static_cast<double>(value));
  return text;
}

Status check_range(const char* field, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi) {
    return Status::InvalidArgument(std::string(field) + " must be in " + str(lo) + ".." + str(hi) + " (got " +
                                   str(value) + ")");
  }
  return Status::Ok();
}

Status check_min(const char* field, int64_t value, int64_t lo) {
  if (value < lo) {
    return Status::InvalidArgument(std::string(field) + " must be >= " + str(lo) + " (got " + str(value) +
                                   ")");
  }
  return Status::Ok();
}

int32_t tiles_for(int32_t width) { return (width + kTileTokens - 1) / kTileTokens; }

bool is_aligned(const void* ptr, int64_t bytes) { return reinterpret_cast<uintptr_t>(ptr) % bytes == 0; }

Status check_not_null(const void* ptr, const char* name) {
  if (ptr == nullptr) return Status::InvalidArgument(std::string(name) + " must not be null");
  return Status::Ok();
}

Status check_alignment(const void* ptr, int64_t bytes, const char* name) {
  if (ptr != nullptr && !is_aligned(ptr, bytes)) {
    return Status::InvalidArgument(std::string(name) + " must be " + str(bytes) +
                                   "-byte aligned (got address " +
                                   str(static_cast<int64_t>(reinterpret_cast<uintptr_t>(ptr))) + ")");
  }
  return Status::Ok();
}

Status check_stride(const char* name, int64_t stride, int64_t multiple_of) {
  if (stride < 0)
    return Status::InvalidArgument(std::string(name) + " must be >= 0 (got " + str(stride) + ")");
  if (stride % multiple_of != 0) {
    return Status::InvalidArgument(std::string(name) + " must be a multiple of " + str(multiple_of) +
                                   " elements (16-byte vector access; got " + str(stride) + ")");
  }
  return Status::Ok();
}

// An output tensor written by many threads must not have two elements at one address. Sufficient test
// for any dimension order (so FlashMLA's transposed lse view [b, h, s_q] is accepted): with the
// dimensions of extent > 1 sorted by stride, each stride exceeds the span of all smaller ones.
struct TensorDim {
  const char* stride_name;
  int64_t extent;
  int64_t stride;
};
template <size_t N>
Status check_no_self_overlap(const char* name, std::array<TensorDim, N> dims) {
  std::sort(dims.begin(), dims.end(),
            [](const TensorDim& a, const TensorDim& b) { return a.stride < b.stride; });
  int64_t span = 0;  // largest element offset reachable through the dims seen so far
  for (const TensorDim& dim : dims) {
    if (dim.extent <= 1) continue;
    if (dim.stride <= span) {
      return Status::InvalidArgument(
          std::string(name) + " elements overlap: " + dim.stride_name + " = " + str(dim.stride) +
          " (extent " + str(dim.extent) + ") must be larger than the " + str(span) +
          " elements spanned by the smaller strides; outputs need distinct addresses");
    }
    span += (dim.extent - 1) * dim.stride;
  }
  return Status::Ok();
}

Status check_lengths_layout(int32_t layout, const char* name) {
  if (layout != SMLA_LENGTHS_PER_BATCH && layout != SMLA_LENGTHS_PER_QUERY) {
    return Status::InvalidArgument(std::string(name) +
                                   " must be SMLA_LENGTHS_PER_BATCH (0) or SMLA_LENGTHS_PER_QUERY (1) (got " +
                                   str(static_cast<int>(layout)) + ")");
  }
  return Status::Ok();
}

// Every pointer a backend will dereference, with its argument name, for the memory-space checks.
// A fixed array, so the per-call check allocates nothing.
struct NamedPointer {
  const void* ptr;
  const char* name;
};
struct NamedPointers {
  std::array<NamedPointer, 11> items;
  size_t count = 0;
  void add(const void* ptr, const char* name) { items[count++] = {ptr, name}; }
};
NamedPointers pointers_of(const Plan& plan, const DecodeArgs& args, const void* workspace) {
  NamedPointers pointers;
  pointers.add(args.q, "args.q");
  pointers.add(args.main_cache.data, "args.main_cache.data");
  pointers.add(args.indices, "args.indices");
  pointers.add(args.topk_length, "args.topk_length");
  pointers.add(args.attn_sink, "args.attn_sink");
  pointers.add(args.out, "args.out");
  pointers.add(args.lse, "args.lse");
  if (plan.shape().extra_topk > 0) {
    pointers.add(args.extra_cache.data, "args.extra_cache.data");
    pointers.add(args.extra_indices, "args.extra_indices");
    pointers.add(args.extra_topk_length, "args.extra_topk_length");
  }
  if (plan.workspace_bytes() > 0) pointers.add(workspace, "workspace");
  return pointers;
}

// Asked afresh on every call (detail::locate_pointer is one driver query per pointer, nothing cached),
// so a buffer freed and replaced by host memory between calls is still caught.
Status check_memory_space(const Plan& plan, const DecodeArgs& args, const void* workspace) {
  const bool cpu = plan.backend() == SMLA_BACKEND_CPU;
  const NamedPointers pointers = pointers_of(plan, args, workspace);
  for (size_t i = 0; i < pointers.count; ++i) {
    const NamedPointer& pointer = pointers.items[i];
    if (pointer.ptr == nullptr) continue;  // optional and absent; required ones were checked before
    const detail::PointerLocation location = detail::locate_pointer(pointer.ptr);
    // Managed memory is host accessible, so the CPU backend may read it.
    if (cpu && location.space == detail::MemorySpace::kDevice) {
      return Status::InvalidArgument(std::string(pointer.name) +
                                     " is CUDA device memory; the cpu backend needs host memory");
    }
    const bool on_plan_device =
        (location.space == detail::MemorySpace::kDevice || location.space == detail::MemorySpace::kManaged) &&
        location.device == plan.device();
    if (!cpu && !on_plan_device) {
      return Status::InvalidArgument(
          std::string(pointer.name) + " must be CUDA device or managed memory on device " +
          str(plan.device()) + " (got host memory or another device's memory: host " +
          "memory passed to the " + backend_name(plan.backend()) + " backend)");
    }
  }
  return Status::Ok();
}

// The bytes each argument can touch (overflow-checked: a huge stride must not wrap an element's offset to
// before its buffer), then the rule that out, lse and the workspace share memory with no other argument
// (an aliased output is a race on the GPU and silently wrong on the CPU). Strides are >= 0 here.
Status check_argument_ranges(const Plan& plan, const DecodeArgs& args, const void* workspace) {
  const DecodeShape& shape = plan.shape();
  const bool has_extra = shape.extra_topk > 0;
  const auto lengths_count = [&](int32_t layout) {
    return static_cast<int64_t>(shape.batch) * (layout == SMLA_LENGTHS_PER_QUERY ? shape.seq_q : 1);
  };
  ByteRange q, out, lse, indices, extra_indices, lengths, extra_lengths, sink, main_cache, extra_cache, work;
  SMLA_RETURN_IF_ERROR(
      detail::strided_byte_range("args.q", args.q,
                                 {{"args.q_stride_batch", shape.batch, args.q_stride_batch},
                                  {"args.q_stride_seq", shape.seq_q, args.q_stride_seq},
                                  {"args.q_stride_head", shape.num_heads, args.q_stride_head},
                                  {"the head dimension's stride", kHeadDim, 1}},
                                 2, &q));
  SMLA_RETURN_IF_ERROR(
      detail::strided_byte_range("args.out", args.out,
                                 {{"args.out_stride_batch", shape.batch, args.out_stride_batch},
                                  {"args.out_stride_seq", shape.seq_q, args.out_stride_seq},
                                  {"args.out_stride_head", shape.num_heads, args.out_stride_head},
                                  {"the head dimension's stride", kHeadDim, 1}},
                                 2, &out));
  SMLA_RETURN_IF_ERROR(
      detail::strided_byte_range("args.lse", args.lse,
                                 {{"args.lse_stride_batch", shape.batch, args.lse_stride_batch},
                                  {"args.lse_stride_seq", shape.seq_q, args.lse_stride_seq},
                                  {"args.lse_stride_head", shape.num_heads, args.lse_stride_head}},
                                 4, &lse));
  SMLA_RETURN_IF_ERROR(
      detail::strided_byte_range("args.indices", args.indices,
                                 {{"args.indices_stride_batch", shape.batch, args.indices_stride_batch},
                                  {"args.indices_stride_seq", shape.seq_q, args.indices_stride_seq},
                                  {"the index list's stride", shape.topk, 1}},
                                 4, &indices));
  SMLA_RETURN_IF_ERROR(detail::sized_byte_range("args.topk_length", args.topk_length,
                                                4 * lengths_count(args.topk_length_layout), &lengths));
  SMLA_RETURN_IF_ERROR(
      detail::sized_byte_range("args.attn_sink", args.attn_sink, 4 * int64_t{shape.num_heads}, &sink));
  SMLA_RETURN_IF_ERROR(detail::sized_byte_range("args.main_cache.data", args.main_cache.data,
                                                cache_pool_bytes(args.main_cache), &main_cache));
  if (has_extra) {
    SMLA_RETURN_IF_ERROR(detail::strided_byte_range(
        "args.extra_indices", args.extra_indices,
        {{"args.extra_indices_stride_batch", shape.batch, args.extra_indices_stride_batch},
         {"args.extra_indices_stride_seq", shape.seq_q, args.extra_indices_stride_seq},
         {"the extra index list's stride", shape.extra_topk, 1}},
        4, &extra_indices));
    SMLA_RETURN_IF_ERROR(detail::sized_byte_range("args.extra_topk_length", args.extra_topk_length,
                                                  4 * lengths_count(args.extra_topk_length_layout),
                                                  &extra_lengths));
    SMLA_RETURN_IF_ERROR(detail::sized_byte_range("args.extra_cache.data", args.extra_cache.data,
                                                  cache_pool_bytes(args.extra_cache), &extra_cache));
  }
  // The part of the workspace the backends write (a larger buffer's tail is never touched).
  SMLA_RETURN_IF_ERROR(
      detail::sized_byte_range("workspace", workspace, static_cast<int64_t>(plan.workspace_bytes()), &work));
  return detail::check_outputs_disjoint(
      {out, lse, work}, {q, indices, extra_indices, lengths, extra_lengths, sink, main_cache, extra_cache});
}

// The CPU backend reads indices on the host anyway, so it can afford to reject out-of-range slot ids
// up front instead of masking and counting them like the CUDA backends.
Status check_slot_ids_on_host(const detail::IndexListParams& list, int32_t batch, int32_t seq_q,
                              const char* name, const char* cache_name) {
  for (int32_t b = 0; b < batch; ++b) {
    for (int32_t t = 0; t < seq_q; ++t) {
      const int32_t length = detail::list_length(list, b, t, seq_q);
      const int32_t* row = detail::list_row(list, b, t);
      for (int32_t position = 0; position < length; ++position) {
        if (row[position] >= list.cache.num_slots) {
          return Status::InvalidArgument(std::string(name) + "[b=" + str(b) + ", t=" + str(t) +
                                         ", position=" + str(position) + "] = " + str(row[position]) +
                                         " is out of range: " + cache_name + " has " +
                                         str(list.cache.num_slots) + " slots (valid ids: 0.." +
                                         str(list.cache.num_slots - 1) + ", negative = no token)");
        }
      }
    }
  }
  return Status::Ok();
}

detail::CacheParams cache_params_of(const CacheLayout& layout) {
  detail::CacheParams cache;
  cache.data = static_cast<const uint8_t*>(layout.data);
  cache.page_block_size = layout.page_block_size;
  cache.page_stride_bytes = layout.page_stride_bytes;
  cache.num_slots = cache_num_slots(layout);
  cache.page_of_slot = detail::FastDivisor::make(layout.page_block_size);
  return cache;
}

// One index list's kernel view; main and extra lists differ only in which arguments feed it.
detail::IndexListParams index_list_params_of(const CacheLayout& cache, const int32_t* indices,
                                             int64_t stride_batch, int64_t stride_seq, int32_t width,
                                             const int32_t* lengths, int32_t lengths_layout) {
  detail::IndexListParams list;
  list.cache = cache_params_of(cache);
  list.indices = indices;
  list.stride_batch = stride_batch;
  list.stride_seq = stride_seq;
  list.width = width;
  list.lengths = lengths;
  list.lengths_per_query = lengths_layout == SMLA_LENGTHS_PER_QUERY ? 1 : 0;
  return list;
}

bool debug_checks_requested() {
  const char* value = std::getenv("SMLA_DEBUG_CHECKS");
  return value != nullptr && std::strcmp(value, "1") == 0;
}

}  // namespace

PlanOptions default_plan_options() {
  PlanOptions options{};
  options.backend = SMLA_BACKEND_AUTO;
  options.device = -1;
  options.num_splits = 0;
  options.cpu_precision = SMLA_CPU_FLOAT64;
  options.cpu_threads = 0;
  options.max_shared_bytes = 0;
  options.sm_count = 0;
  return options;
}

Status validate_decode_shape(const DecodeShape& shape) {
  SMLA_RETURN_IF_ERROR(check_min("shape.batch", shape.batch, 1));
  SMLA_RETURN_IF_ERROR(check_min("shape.seq_q", shape.seq_q, 1));
  SMLA_RETURN_IF_ERROR(check_range("shape.num_heads", shape.num_heads, 1, kMaxHeads));
  SMLA_RETURN_IF_ERROR(check_range("shape.topk", shape.topk, 1, kMaxListWidth));
  SMLA_RETURN_IF_ERROR(check_range("shape.extra_topk", shape.extra_topk, 0, kMaxListWidth));
  const int64_t rows = static_cast<int64_t>(shape.batch) * shape.seq_q;
  // Bounding rows first keeps the products below within int64 (an overflow wrapped them to 0 and
  // let absurd shapes through).
  if (rows > kMaxFlatElements) {
    return Status::InvalidArgument("shape.batch * seq_q must be <= " + str(kMaxFlatElements) +
                                   " for int32 kernel indexing (got " + str(rows) + ")");
  }
  const int64_t q_elements = rows * shape.num_heads * kHeadDim;
  if (q_elements > kMaxFlatElements) {
    return Status::InvalidArgument(
        "shape.batch * seq_q * num_heads * 512 must be <= " + str(kMaxFlatElements) +
        " for int32 kernel indexing (got " + str(q_elements) + ")");
  }
  if (rows * shape.topk > kMaxFlatElements) {
    return Status::InvalidArgument("shape.batch * seq_q * topk must be <= " + str(kMaxFlatElements) +
                                   " for int32 kernel indexing (got " + str(rows * shape.topk) + ")");
  }
  if (rows * shape.extra_topk > kMaxFlatElements) {
    return Status::InvalidArgument("shape.batch * seq_q * extra_topk must be <= " + str(kMaxFlatElements) +
                                   " for int32 kernel indexing (got " + str(rows * shape.extra_topk) + ")");
  }
  return Status::Ok();
}

namespace {

// True when the backend was left to AUTO (in options and in SMLA_BACKEND): then a device where no
// tensor-core kernel fits falls back to cuda-ref instead of failing.
bool backend_chosen_automatically(const PlanOptions& options) {
  if (options.backend != SMLA_BACKEND_AUTO) return false;
  const char* env_value = std::getenv("SMLA_BACKEND");
  return env_value == nullptr || env_value[0] == '\0' || std::string(env_value) == "auto";
}

}  // namespace

Status make_plan(const DecodeShape& shape, const PlanOptions& options, Plan* plan) {
  if (plan == nullptr) return Status::InvalidArgument("plan must not be null");
  *plan = Plan();  // a failed make_plan leaves an invalid plan behind
  SMLA_RETURN_IF_ERROR(validate_decode_shape(shape));
  SMLA_RETURN_IF_ERROR(check_min("options.num_splits", options.num_splits, 0));
  SMLA_RETURN_IF_ERROR(check_range("options.cpu_threads", options.cpu_threads, 0, kMaxCpuThreads));
  SMLA_RETURN_IF_ERROR(check_min("options.device", options.device, -1));
  if (options.cpu_precision != SMLA_CPU_FLOAT64 && options.cpu_precision != SMLA_CPU_FLOAT32) {
    return Status::InvalidArgument(
        "options.cpu_precision must be SMLA_CPU_FLOAT64 (0) or SMLA_CPU_FLOAT32 (1) (got " +
        str(static_cast<int>(options.cpu_precision)) + ")");
  }
  int64_t shared_cap = 0;
  SMLA_RETURN_IF_ERROR(
      detail::shared_memory_cap(options.max_shared_bytes, std::getenv("SMLA_MAX_SHARED_BYTES"), &shared_cap));
  int planned_sms = 0;
  SMLA_RETURN_IF_ERROR(
      detail::planned_sm_count(options.sm_count, std::getenv("SMLA_SM_COUNT"), &planned_sms));
  Backend backend = SMLA_BACKEND_AUTO;
  SMLA_RETURN_IF_ERROR(resolve_backend(options.backend, options.device, &backend));

  Plan result;
  result.backend_ = backend;
  result.shape_ = shape;
  result.options_ = options;
  result.total_tiles_ = static_cast<int32_t>(detail::total_tiles_of(shape));  // < 2^20: list widths <= 2^24
  const int64_t rows = static_cast<int64_t>(shape.batch) * shape.seq_q;
  if (backend == SMLA_BACKEND_CPU) {
    result.kernel_name_ = "cpu";
    result.device_ = -1;
    result.num_splits_ = 1;
    result.tiles_per_split_ = result.total_tiles_;
    result.workspace_bytes_ = 0;
  } else {
    detail::CudaDeviceInfo device_info;
    SMLA_RETURN_IF_ERROR(detail::query_cuda_device(options.device, &device_info));
    result.device_ = device_info.ordinal;
    result.compute_capability_ = device_info.compute_capability;
    detail::apply_planner_overrides(shared_cap, planned_sms, &device_info);
    result.sm_count_ = device_info.sm_count;
    result.max_shared_bytes_ = device_info.max_shared_bytes;
    const detail::KernelChoice kernel = detail::choose_decode_kernel(shape, device_info);
    if (backend == SMLA_BACKEND_CUDA && kernel.kernel == detail::DecodeKernel::kNone) {
      if (!backend_chosen_automatically(options)) {
        return Status::Unsupported(
            "backend 'cuda': no tensor-core decode kernel fits " + str(device_info.max_shared_bytes) +
            " bytes of shared memory per block on device " + str(device_info.ordinal) +
            (shared_cap > 0 ? " (capped by options.max_shared_bytes / SMLA_MAX_SHARED_BYTES)" : "") +
            "; the smallest for this shape needs " + str(detail::smallest_decode_kernel_bytes(shape)) +
            "; use backend 'cuda-ref'");
      }
      backend = SMLA_BACKEND_CUDA_REF;  // AUTO: the slower oracle rather than a launch that cannot run
      result.backend_ = backend;
    }
    if (backend == SMLA_BACKEND_CUDA_REF) {
      result.kernel_name_ = "cuda-ref";
      // The oracle never splits; its workspace is only the device error counter.
      result.num_splits_ = 1;
      result.tiles_per_split_ = result.total_tiles_;
    } else {
      result.kernel_name_ = detail::decode_kernel_name(kernel.kernel);
      result.kernel_id_ = static_cast<int32_t>(kernel.kernel);
      const detail::SplitSchedule schedule =
          detail::plan_cuda_decode_splits(shape, device_info, kernel, options.num_splits);
      if (schedule.num_splits < 1 || schedule.tiles_per_split < 1 ||
          static_cast<int64_t>(schedule.num_splits) * schedule.tiles_per_split < schedule.total_tiles) {
        return Status::Internal(
            "split schedule does not cover the tiles: num_splits=" + str(schedule.num_splits) +
            ", tiles_per_split=" + str(schedule.tiles_per_split) +
            ", total_tiles=" + str(schedule.total_tiles));
      }
      result.num_splits_ = schedule.num_splits;
      result.tiles_per_split_ = schedule.tiles_per_split;
      result.total_tiles_ = schedule.total_tiles;
      result.split_tile_tokens_ = schedule.tile_tokens;
      result.cluster_combine_ = schedule.cluster_combine;
      // A body (rows [0, body_rows)) needs a split tail after it, its own splits covering the tiles, and
      // the combine kernel (a cluster holds every split of one row).
      if (schedule.body_rows < 0 || schedule.body_rows >= rows ||
          (schedule.body_rows > 0 &&
           (schedule.num_splits < 2 || schedule.cluster_combine || schedule.body_splits < 1 ||
            schedule.body_tiles_per_split < 1 ||
            static_cast<int64_t>(schedule.body_splits) * schedule.body_tiles_per_split <
                schedule.total_tiles ||
            static_cast<int64_t>(schedule.body_splits - 1) * schedule.body_tiles_per_split >=
                schedule.total_tiles))) {
        return Status::Internal("split schedule: body_rows=" + str(schedule.body_rows) + " of " + str(rows) +
                                " rows in body_splits=" + str(schedule.body_splits) + " of " +
                                str(schedule.body_tiles_per_split) + " tiles, num_splits=" +
                                str(schedule.num_splits) + ", total_tiles=" + str(schedule.total_tiles));
      }
      result.body_rows_ = schedule.body_rows;
      result.body_splits_ = schedule.body_rows > 0 ? schedule.body_splits : 1;
      result.body_tiles_per_split_ =
          schedule.body_rows > 0 ? schedule.body_tiles_per_split : result.tiles_per_split_;
      result.register_gather_ = kernel.kernel == detail::DecodeKernel::kCompactHeads32 &&
                                detail::decode::register_gather_pays(schedule);
    }
    result.workspace_bytes_ =
        detail::WorkspaceLayout::for_partial_rows(
            detail::split_partial_rows(rows, result.body_rows_, result.body_splits_, result.num_splits_),
            shape.num_heads)
            .total_bytes;
  }
  result.valid_ = true;
  *plan = result;
  return Status::Ok();
}

Status validate_decode_args(const Plan& plan, const DecodeArgs& args, const void* workspace,
                            size_t workspace_bytes) {
  if (!plan.valid()) return Status::InvalidArgument("plan is not valid (make_plan has not succeeded on it)");
  const DecodeShape& shape = plan.shape();
  const bool has_extra = shape.extra_topk > 0;

  // Required pointers.
  SMLA_RETURN_IF_ERROR(check_not_null(args.q, "args.q"));
  SMLA_RETURN_IF_ERROR(check_not_null(args.indices, "args.indices"));
  SMLA_RETURN_IF_ERROR(check_not_null(args.out, "args.out"));
  SMLA_RETURN_IF_ERROR(check_not_null(args.lse, "args.lse"));
  if (has_extra) SMLA_RETURN_IF_ERROR(check_not_null(args.extra_indices, "args.extra_indices"));

  // Cache geometry (the extra cache is ignored without extra indices).
  SMLA_RETURN_IF_ERROR(validate_cache_layout(args.main_cache, "args.main_cache"));
  if (has_extra) SMLA_RETURN_IF_ERROR(validate_cache_layout(args.extra_cache, "args.extra_cache"));

  // Strides: non-negative; q/out in whole 16-byte vectors; outputs free of self-overlap.
  SMLA_RETURN_IF_ERROR(check_stride("args.q_stride_batch", args.q_stride_batch, kBf16PerVector));
  SMLA_RETURN_IF_ERROR(check_stride("args.q_stride_seq", args.q_stride_seq, kBf16PerVector));
  SMLA_RETURN_IF_ERROR(check_stride("args.q_stride_head", args.q_stride_head, kBf16PerVector));
  SMLA_RETURN_IF_ERROR(check_stride("args.indices_stride_batch", args.indices_stride_batch, 1));
  SMLA_RETURN_IF_ERROR(check_stride("args.indices_stride_seq", args.indices_stride_seq, 1));
  if (has_extra) {
    SMLA_RETURN_IF_ERROR(check_stride("args.extra_indices_stride_batch", args.extra_indices_stride_batch, 1));
    SMLA_RETURN_IF_ERROR(check_stride("args.extra_indices_stride_seq", args.extra_indices_stride_seq, 1));
  }
  SMLA_RETURN_IF_ERROR(check_stride("args.out_stride_batch", args.out_stride_batch, kBf16PerVector));
  SMLA_RETURN_IF_ERROR(check_stride("args.out_stride_seq", args.out_stride_seq, kBf16PerVector));
  SMLA_RETURN_IF_ERROR(check_stride("args.out_stride_head", args.out_stride_head, kBf16PerVector));
  SMLA_RETURN_IF_ERROR(check_stride("args.lse_stride_batch", args.lse_stride_batch, 1));
  SMLA_RETURN_IF_ERROR(check_stride("args.lse_stride_seq", args.lse_stride_seq, 1));
  SMLA_RETURN_IF_ERROR(check_stride("args.lse_stride_head", args.lse_stride_head, 1));
  SMLA_RETURN_IF_ERROR(check_lengths_layout(args.topk_length_layout, "args.topk_length_layout"));
  if (has_extra) {
    SMLA_RETURN_IF_ERROR(
        check_lengths_layout(args.extra_topk_length_layout, "args.extra_topk_length_layout"));
  }

  // Every element offset fits the address range, and no output shares memory with another argument.
  SMLA_RETURN_IF_ERROR(check_argument_ranges(plan, args, workspace));

  SMLA_RETURN_IF_ERROR(
      check_no_self_overlap<4>("args.out", {{{"args.out_stride_batch", shape.batch, args.out_stride_batch},
                                             {"args.out_stride_seq", shape.seq_q, args.out_stride_seq},
                                             {"args.out_stride_head", shape.num_heads, args.out_stride_head},
                                             {"the head dimension's stride", kHeadDim, 1}}}));
  SMLA_RETURN_IF_ERROR(check_no_self_overlap<3>(
      "args.lse", {{{"args.lse_stride_batch", shape.batch, args.lse_stride_batch},
                    {"args.lse_stride_seq", shape.seq_q, args.lse_stride_seq},
                    {"args.lse_stride_head", shape.num_heads, args.lse_stride_head}}}));

  // Alignment: 16-byte vector access for q/out, natural alignment for the 4-byte tensors.
  SMLA_RETURN_IF_ERROR(check_alignment(args.q, kVectorBytes, "args.q"));
  SMLA_RETURN_IF_ERROR(check_alignment(args.out, kVectorBytes, "args.out"));
  SMLA_RETURN_IF_ERROR(check_alignment(args.indices, 4, "args.indices"));
  SMLA_RETURN_IF_ERROR(check_alignment(args.topk_length, 4, "args.topk_length"));
  SMLA_RETURN_IF_ERROR(check_alignment(args.attn_sink, 4, "args.attn_sink"));
  SMLA_RETURN_IF_ERROR(check_alignment(args.lse, 4, "args.lse"));
  if (has_extra) {
    SMLA_RETURN_IF_ERROR(check_alignment(args.extra_indices, 4, "args.extra_indices"));
    SMLA_RETURN_IF_ERROR(check_alignment(args.extra_topk_length, 4, "args.extra_topk_length"));
  }

  if (!std::isfinite(args.softmax_scale) || !(args.softmax_scale > 0.f)) {
    return Status::InvalidArgument("args.softmax_scale must be finite and > 0 (got " +
                                   float_text(args.softmax_scale) + "; the model value is 512^-0.5)");
  }

  if (plan.workspace_bytes() > 0) {
    SMLA_RETURN_IF_ERROR(check_not_null(workspace, "workspace"));
    SMLA_RETURN_IF_ERROR(check_alignment(workspace, kVectorBytes, "workspace"));
    if (workspace_bytes < plan.workspace_bytes()) {
      return Status::InvalidArgument("workspace_bytes must be >= plan.workspace_bytes() = " +
                                     str(static_cast<int64_t>(plan.workspace_bytes())) + " (got " +
                                     str(static_cast<int64_t>(workspace_bytes)) + ")");
    }
  }

  SMLA_RETURN_IF_ERROR(check_memory_space(plan, args, workspace));

  if (plan.backend() == SMLA_BACKEND_CPU) {
    const detail::DecodeParams params = detail::build_decode_params(plan, args, nullptr);
    SMLA_RETURN_IF_ERROR(
        check_slot_ids_on_host(params.main, shape.batch, shape.seq_q, "args.indices", "args.main_cache"));
    if (has_extra) {
      SMLA_RETURN_IF_ERROR(check_slot_ids_on_host(params.extra, shape.batch, shape.seq_q,
                                                  "args.extra_indices", "args.extra_cache"));
    }
  }
  return Status::Ok();
}

namespace detail {

DecodeParams build_decode_params(const Plan& plan, const DecodeArgs& args, void* workspace) {
  const DecodeShape& shape = plan.shape();
  DecodeParams params;
  params.batch = shape.batch;
  params.seq_q = shape.seq_q;
  params.num_heads = shape.num_heads;

  params.q = static_cast<const uint16_t*>(args.q);
  params.q_stride_batch = args.q_stride_batch;
  params.q_stride_seq = args.q_stride_seq;
  params.q_stride_head = args.q_stride_head;

  params.main =
      index_list_params_of(args.main_cache, args.indices, args.indices_stride_batch, args.indices_stride_seq,
                           shape.topk, args.topk_length, args.topk_length_layout);
  if (shape.extra_topk > 0) {
    params.extra = index_list_params_of(args.extra_cache, args.extra_indices, args.extra_indices_stride_batch,
                                        args.extra_indices_stride_seq, shape.extra_topk,
                                        args.extra_topk_length, args.extra_topk_length_layout);
  }

  params.attn_sink = args.attn_sink;
  params.softmax_scale = args.softmax_scale;

  params.out = static_cast<uint16_t*>(args.out);
  params.out_stride_batch = args.out_stride_batch;
  params.out_stride_seq = args.out_stride_seq;
  params.out_stride_head = args.out_stride_head;
  params.lse = args.lse;
  params.lse_stride_batch = args.lse_stride_batch;
  params.lse_stride_seq = args.lse_stride_seq;
  params.lse_stride_head = args.lse_stride_head;

  params.main_tiles = tiles_for(shape.topk);
  params.total_tiles = plan.total_tiles();
  params.num_splits = plan.num_splits();
  params.tiles_per_split = plan.tiles_per_split();
  params.split_tile_tokens = plan.split_tile_tokens();
  params.cluster_combine = plan.cluster_combine() ? 1 : 0;
  params.body_rows = plan.body_rows();
  params.body_splits = plan.body_splits();
  params.body_tiles_per_split = plan.body_tiles_per_split();

  if (workspace != nullptr && plan.workspace_bytes() > 0) {
    const int64_t rows = static_cast<int64_t>(shape.batch) * shape.seq_q;
    const int64_t partial_rows =
        split_partial_rows(rows, plan.body_rows(), plan.body_splits(), plan.num_splits());
    const WorkspaceLayout layout = WorkspaceLayout::for_partial_rows(partial_rows, shape.num_heads);
    uint8_t* base = static_cast<uint8_t*>(workspace);
    params.error_counter = reinterpret_cast<uint32_t*>(base);
    if (partial_rows > 0) {
      params.partial_lse = reinterpret_cast<float*>(base + layout.partial_lse_offset);
      params.partial_out = reinterpret_cast<float*>(base + layout.partial_out_offset);
    }
  }
  params.debug_checks = debug_checks_requested() ? 1 : 0;
  return params;
}

}  // namespace detail

namespace {

Status launch_cuda_decode(const Plan& plan, const detail::DecodeParams& params, void* stream) {
  return plan.backend() == SMLA_BACKEND_CUDA ? detail::run_decode_cuda(plan, params, stream)
                                             : detail::run_decode_cuda_ref(plan, params, stream);
}

// SMLA_DEBUG_CHECKS=1: the run synchronizes and fails loudly when the device met bad slot ids or
// lengths (docs/safety.md). The counter is read before and after the launch, so only this run's
// findings count. A stream being captured into a graph cannot be synchronized: the launch is captured
// as usual and the check is skipped (read_device_errors after the replay reports the findings).
Status run_with_device_checks(const Plan& plan, const detail::DecodeParams& params, void* workspace,
                              void* stream) {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  SMLA_CUDA_CHECK(cudaStreamIsCapturing(static_cast<cudaStream_t>(stream), &capture));
  if (capture != cudaStreamCaptureStatusNone) return launch_cuda_decode(plan, params, stream);
  uint64_t errors_before = 0, errors_after = 0;
  SMLA_RETURN_IF_ERROR(read_device_errors(plan, workspace, &errors_before, stream));
  SMLA_RETURN_IF_ERROR(launch_cuda_decode(plan, params, stream));
  SMLA_RETURN_IF_ERROR(read_device_errors(plan, workspace, &errors_after, stream));
  // The device counter is a wrapping uint32.
  const uint32_t found = static_cast<uint32_t>(errors_after - errors_before);
  if (found != 0) {
    return Status(SMLA_STATUS_DEVICE_CHECK_FAILED,
                  std::to_string(found) + " invalid slot ids or lengths detected on the " +
                      "device by this " + backend_name(plan.backend()) +
                      " run (slot id >= the cache's pages * page_block_size, or a length outside " +
                      "[0, topk/extra_topk]); they were masked/clamped. SMLA_DEBUG_CHECKS=1 reports them; " +
                      "see docs/safety.md");
  }
  return Status::Ok();
}

}  // namespace

Status run(const Plan& plan, const DecodeArgs& args, void* workspace, size_t workspace_bytes, void* stream) {
  SMLA_RETURN_IF_ERROR(validate_decode_args(plan, args, workspace, workspace_bytes));
  const detail::DecodeParams params = detail::build_decode_params(plan, args, workspace);
  switch (plan.backend()) {
    case SMLA_BACKEND_CPU:
      return detail::run_decode_cpu(plan, params);
    case SMLA_BACKEND_CUDA_REF:
    case SMLA_BACKEND_CUDA: {
      // Kernels launch on the current device; a plan made for another device would read foreign
      // pointers. cudaGetDevice does not synchronize.
      int current_device = -1;
      SMLA_CUDA_CHECK(cudaGetDevice(&current_device));
      if (current_device != plan.device()) {
        return Status::InvalidArgument("the current CUDA device is " + str(current_device) +
                                       " but the plan was made for device " + str(plan.device()) +
                                       " (call cudaSetDevice before run)");
      }
      if (params.debug_checks == 0) return launch_cuda_decode(plan, params, stream);
      return run_with_device_checks(plan, params, workspace, stream);
    }
    case SMLA_BACKEND_AUTO:
      break;
  }
  return Status::Internal(std::string("plan has unresolved backend '") + backend_name(plan.backend()) + "'");
}

void set_contiguous_strides(const DecodeShape& shape, DecodeArgs* args) {
  if (args == nullptr) return;
  const int64_t head_elements = kHeadDim;
  const int64_t seq_elements = static_cast<int64_t>(shape.num_heads) * kHeadDim;
  const int64_t batch_elements = static_cast<int64_t>(shape.seq_q) * seq_elements;
  args->q_stride_head = head_elements;
  args->q_stride_seq = seq_elements;
  args->q_stride_batch = batch_elements;
  args->out_stride_head = head_elements;
  args->out_stride_seq = seq_elements;
  args->out_stride_batch = batch_elements;
  args->indices_stride_seq = shape.topk;
  args->indices_stride_batch = static_cast<int64_t>(shape.seq_q) * shape.topk;
  args->extra_indices_stride_seq = shape.extra_topk;
  args->extra_indices_stride_batch = static_cast<int64_t>(shape.seq_q) * shape.extra_topk;
  args->lse_stride_head = 1;
  args->lse_stride_seq = shape.num_heads;
  args->lse_stride_batch = static_cast<int64_t>(shape.seq_q) * shape.num_heads;
}

namespace {

// Runs a plan on a freshly allocated, zeroed device workspace and waits for it (decode() only).
Status run_with_device_workspace(const Plan& plan, const DecodeArgs& args, void* stream) {
  const cudaStream_t cuda_stream = static_cast<cudaStream_t>(stream);
  void* workspace = nullptr;
  SMLA_CUDA_CHECK(cudaMalloc(&workspace, plan.workspace_bytes()));
  Status status = Status::Ok();
  const cudaError_t clear_error = cudaMemsetAsync(workspace, 0, plan.workspace_bytes(), cuda_stream);
  if (clear_error != cudaSuccess) {
    status = detail::cuda_error_status(clear_error, "cudaMemsetAsync(workspace)", __FILE__, __LINE__);
  }
  if (status.ok()) status = run(plan, args, workspace, plan.workspace_bytes(), stream);
  // Synchronize even after a failed run: the memset may still be in flight when we free.
  const cudaError_t sync_error = cudaStreamSynchronize(cuda_stream);
  if (status.ok() && sync_error != cudaSuccess) {
    status = detail::cuda_error_status(sync_error, "cudaStreamSynchronize", __FILE__, __LINE__);
  }
  const cudaError_t free_error = cudaFree(workspace);
  if (status.ok() && free_error != cudaSuccess) {
    status = detail::cuda_error_status(free_error, "cudaFree(workspace)", __FILE__, __LINE__);
  }
  return status;
}

}  // namespace

Status decode(const DecodeShape& shape, const DecodeArgs& args, const PlanOptions& options, void* stream) {
  Plan plan;
  SMLA_RETURN_IF_ERROR(make_plan(shape, options, &plan));
  if (plan.backend() == SMLA_BACKEND_CPU) {
    // The CPU plan needs no workspace today; allocate whatever it asks for, 16-byte aligned.
    struct alignas(16) WorkspaceChunk {
      unsigned char bytes[16];
    };
    std::vector<WorkspaceChunk> workspace((plan.workspace_bytes() + 15) / 16);
    return run(plan, args, workspace.empty() ? nullptr : workspace.data(), plan.workspace_bytes(), stream);
  }
  return run_with_device_workspace(plan, args, stream);
}

}  // namespace smla
