// The C API (include/smla/smla.h) over the C++ API. Each entry point checks its handle and pointer
// arguments, forwards, and turns the Status into a code plus a thread-local message. No exception
// crosses the C boundary.
#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "smla/backend.h"
#include "smla/cache.h"
#include "smla/codec.h"
#include "smla/decode.h"
#include "smla/relayout.h"
#include "smla/smla.h"
#include "smla/status.h"

struct smla_plan_s {
  smla::Plan plan;
};

namespace {

constexpr const char* kVersion = SMLA_VERSION_STRING;

// Every struct of the C API that a binding may mirror field for field (smla_struct_size).
struct StructSize {
  const char* name;
  size_t bytes;
};
constexpr StructSize kStructSizes[] = {
    {"smla_cache_layout_t", sizeof(smla_cache_layout_t)},
    {"smla_decode_shape_t", sizeof(smla_decode_shape_t)},
    {"smla_plan_options_t", sizeof(smla_plan_options_t)},
    {"smla_decode_args_t", sizeof(smla_decode_args_t)},
    {"smla_relayout_index_set_t", sizeof(smla_relayout_index_set_t)},
};

// The message of the last failed call on this thread. A successful call leaves it alone, so a caller
// that checks codes lazily still finds the message of the failure it is looking at.
thread_local std::string last_error_message;

smla_status_t report(const smla::Status& status) {
  if (!status.ok()) last_error_message = status.message();
  return status.code();
}

smla_status_t null_argument(const char* name) {
  return report(smla::Status::InvalidArgument(std::string(name) + " must not be NULL"));
}

// Runs `body` (returning smla::Status) and maps any escaping exception (allocation failure) to a status.
template <typename Body>
smla_status_t guarded(Body&& body) {
  try {
    return report(body());
  } catch (const std::bad_alloc&) {
    return report(smla::Status::Internal("out of host memory"));
  } catch (const std::exception& error) {
    return report(smla::Status::Internal(std::string("unexpected exception: ") + error.what()));
  } catch (...) {
    return report(smla::Status::Internal("unexpected exception"));
  }
}

}  // namespace

extern "C" {

const char* smla_version(void) { return kVersion; }

size_t smla_struct_size(const char* name) {
  if (name == nullptr) return 0;
  for (const StructSize& entry : kStructSizes) {
    if (std::strcmp(entry.name, name) == 0) return entry.bytes;
  }
  return 0;
}

const char* smla_last_error(void) { return last_error_message.c_str(); }

const char* smla_status_string(smla_status_t status) { return smla::status_code_name(status); }

const char* smla_backend_name(int32_t backend) {
  if (backend < SMLA_BACKEND_AUTO || backend > SMLA_BACKEND_CUDA) return "unknown";
  return smla::backend_name(static_cast<smla_backend_t>(backend));
}

smla_status_t smla_backend_from_name(const char* name, smla_backend_t* backend) {
  if (name == nullptr) return null_argument("name");
  if (backend == nullptr) return null_argument("backend");
  return guarded([&] { return smla::parse_backend(name, backend); });
}

smla_status_t smla_resolve_backend(int32_t requested, int32_t device, smla_backend_t* resolved) {
  if (resolved == nullptr) return null_argument("resolved");
  return guarded([&] { return smla::resolve_backend(requested, device, resolved); });
}

int smla_cuda_available(void) { return smla::cuda_device_available() ? 1 : 0; }

int64_t smla_writer_page_stride_bytes(int64_t page_block_size) {
  // Slot ids are int32, so no usable page holds more tokens (and P * 584 cannot overflow).
  if (page_block_size < 1 || page_block_size > std::numeric_limits<int32_t>::max()) {
    report(smla::Status::InvalidArgument("page_block_size must be in 1..2147483647 (got " +
                                         std::to_string(page_block_size) + ")"));
    return -1;
  }
  return smla::writer_page_stride_bytes(page_block_size);
}

smla_status_t smla_validate_cache_layout(const smla_cache_layout_t* cache) {
  if (cache == nullptr) return null_argument("cache");
  return guarded([&] { return smla::validate_cache_layout(*cache, "cache"); });
}

void smla_default_plan_options(smla_plan_options_t* options) {
  if (options == nullptr) {
    null_argument("options");
    return;
  }
  *options = smla::default_plan_options();
}

smla_status_t smla_plan_create(const smla_decode_shape_t* shape, const smla_plan_options_t* options,
                               smla_plan_t* plan) {
  if (plan == nullptr) return null_argument("plan");
  *plan = nullptr;
  if (shape == nullptr) return null_argument("shape");
  if (options == nullptr) return null_argument("options");
  return guarded([&] {
    // Owned until the plan is made: a failed or throwing make_plan frees it.
    auto handle = std::make_unique<smla_plan_s>();
    smla::Status status = smla::make_plan(*shape, *options, &handle->plan);
    if (status.ok()) *plan = handle.release();
    return status;
  });
}

smla_status_t smla_plan_destroy(smla_plan_t plan) {
  if (plan == nullptr) return null_argument("plan");
  delete plan;
  return SMLA_STATUS_OK;
}

smla_status_t smla_plan_workspace_bytes(smla_plan_t plan, size_t* bytes) {
  if (plan == nullptr) return null_argument("plan");
  if (bytes == nullptr) return null_argument("bytes");
  *bytes = plan->plan.workspace_bytes();
  return SMLA_STATUS_OK;
}

smla_status_t smla_plan_backend(smla_plan_t plan, smla_backend_t* backend) {
  if (plan == nullptr) return null_argument("plan");
  if (backend == nullptr) return null_argument("backend");
  *backend = plan->plan.backend();
  return SMLA_STATUS_OK;
}

smla_status_t smla_plan_num_splits(smla_plan_t plan, int32_t* num_splits) {
  if (plan == nullptr) return null_argument("plan");
  if (num_splits == nullptr) return null_argument("num_splits");
  *num_splits = plan->plan.num_splits();
  return SMLA_STATUS_OK;
}

smla_status_t smla_plan_kernel_name(smla_plan_t plan, const char** name) {
  if (plan == nullptr) return null_argument("plan");
  if (name == nullptr) return null_argument("name");
  *name = plan->plan.kernel_name();
  return SMLA_STATUS_OK;
}

smla_status_t smla_plan_sm_count(smla_plan_t plan, int32_t* sm_count) {
  if (plan == nullptr) return null_argument("plan");
  if (sm_count == nullptr) return null_argument("sm_count");
  *sm_count = plan->plan.sm_count();
  return SMLA_STATUS_OK;
}

smla_status_t smla_set_contiguous_strides(smla_plan_t plan, smla_decode_args_t* args) {
  if (plan == nullptr) return null_argument("plan");
  if (args == nullptr) return null_argument("args");
  smla::set_contiguous_strides(plan->plan.shape(), args);
  return SMLA_STATUS_OK;
}

smla_status_t smla_decode_run(smla_plan_t plan, const smla_decode_args_t* args, void* workspace,
                              size_t workspace_bytes, void* stream) {
  if (plan == nullptr) return null_argument("plan");
  if (args == nullptr) return null_argument("args");
  return guarded([&] { return smla::run(plan->plan, *args, workspace, workspace_bytes, stream); });
}

smla_status_t smla_plan_check_errors(smla_plan_t plan, const void* workspace, void* stream, uint64_t* count) {
  if (plan == nullptr) return null_argument("plan");
  if (count == nullptr) return null_argument("count");
  return guarded([&] { return smla::read_device_errors(plan->plan, workspace, count, stream); });
}

smla_status_t smla_plan_reset_errors(smla_plan_t plan, void* workspace, void* stream) {
  if (plan == nullptr) return null_argument("plan");
  return guarded([&] { return smla::reset_device_errors(plan->plan, workspace, stream); });
}

smla_status_t smla_append(const smla_cache_layout_t* cache, const void* tokens_bf16, int64_t num_tokens,
                          int64_t token_stride, const int32_t* slots, int32_t memory_space, void* stream) {
  if (cache == nullptr) return null_argument("cache");
  if (memory_space != 0 && memory_space != 1) {
    return report(smla::Status::InvalidArgument("memory_space must be 0 (host) or 1 (CUDA device) (got " +
                                                std::to_string(memory_space) + ")"));
  }
  const smla::MemorySpace where = memory_space == 0 ? smla::MemorySpace::kHost : smla::MemorySpace::kCuda;
  return guarded([&] {
    return smla::append_tokens(*cache, tokens_bf16, num_tokens, token_stride, slots, where, stream);
  });
}

smla_status_t smla_dequantize_gather(const smla_cache_layout_t* cache, const int32_t* slots,
                                     int64_t num_slots, float* out) {
  if (cache == nullptr) return null_argument("cache");
  return guarded([&] { return smla::dequantize_gather(*cache, slots, num_slots, out); });
}

int64_t smla_relayout_workspace_bytes(const smla_cache_layout_t* source) {
  if (source == nullptr) {
    null_argument("source");
    return -1;
  }
  const smla::Status status = smla::validate_relayout_source(*source);
  if (!status.ok()) {
    report(status);
    return -1;
  }
  return smla::relayout_workspace_bytes(*source);
}

smla_status_t smla_relayout_pages(const smla_cache_layout_t* source, const smla_cache_layout_t* destination,
                                  const smla_relayout_index_set_t* index_sets, int32_t num_index_sets,
                                  void* workspace, int64_t workspace_bytes, void* stream) {
  if (source == nullptr) return null_argument("source");
  if (destination == nullptr) return null_argument("destination");
  if (num_index_sets < 0) {
    return report(smla::Status::InvalidArgument("num_index_sets must be >= 0 (got " +
                                                std::to_string(num_index_sets) + ")"));
  }
  if (num_index_sets > smla::kMaxRelayoutIndexSets) {  // checked before the sets are copied from the caller
    return report(smla::Status::InvalidArgument("num_index_sets must be in [0, 8] (got " +
                                                std::to_string(num_index_sets) + ")"));
  }
  if (num_index_sets > 0 && index_sets == nullptr) return null_argument("index_sets (num_index_sets > 0)");
  return guarded([&] {
    std::vector<smla::RelayoutIndexSet> sets(static_cast<size_t>(num_index_sets));
    for (int32_t i = 0; i < num_index_sets; ++i) {
      sets[i] = smla::RelayoutIndexSet{index_sets[i].indices, index_sets[i].num_rows, index_sets[i].width,
                                       index_sets[i].row_stride};
    }
    return smla::relayout_pages(*source, *destination, sets.empty() ? nullptr : sets.data(), num_index_sets,
                                workspace, workspace_bytes, stream);
  });
}

}  // extern "C"
