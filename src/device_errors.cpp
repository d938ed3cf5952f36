// The device error counter of the CUDA backends (issue 6 policy, docs/safety.md): reading it (a
// synchronizing call, outside the run path) and resetting it (stream-ordered, graph-capturable).
// The counter is the first uint32 of the workspace (WorkspaceLayout); kernels only atomicAdd to it.
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "common/backend_entry.h"
#include "cuda/common/cuda_check.h"
#include "smla/decode.h"

namespace smla {
namespace {

bool plan_has_device_counter(const Plan& plan) {
  return plan.backend() != SMLA_BACKEND_CPU && plan.workspace_bytes() >= sizeof(uint32_t);
}

Status check_counter_workspace(const Plan& plan, const void* workspace) {
  if (!plan.valid()) return Status::InvalidArgument("plan is not valid (make_plan has not succeeded on it)");
  if (!plan_has_device_counter(plan)) return Status::Ok();
  if (workspace == nullptr) return Status::InvalidArgument("workspace must not be null");
  if (!detail::pointer_is_device_memory(workspace, plan.device())) {
    return Status::InvalidArgument("workspace must be CUDA device or managed memory on device " +
                                   std::to_string(plan.device()) + " (the workspace given to run)");
  }
  return Status::Ok();
}

}  // namespace

Status read_device_errors(const Plan& plan, const void* workspace, uint64_t* error_count, void* stream) {
  if (error_count == nullptr) return Status::InvalidArgument("error_count must not be null");
  *error_count = 0;
  SMLA_RETURN_IF_ERROR(check_counter_workspace(plan, workspace));
  if (!plan_has_device_counter(plan)) return Status::Ok();
  const cudaStream_t cuda_stream = static_cast<cudaStream_t>(stream);
  // A pageable 4-byte destination is fine: the copy is complete once the stream is.
  uint32_t counter = 0;
  SMLA_CUDA_CHECK(cudaMemcpyAsync(&counter, workspace, sizeof(counter), cudaMemcpyDeviceToHost, cuda_stream));
  SMLA_CUDA_CHECK(cudaStreamSynchronize(cuda_stream));
  *error_count = counter;
  return Status::Ok();
}

Status reset_device_errors(const Plan& plan, void* workspace, void* stream) {
  SMLA_RETURN_IF_ERROR(check_counter_workspace(plan, workspace));
  if (!plan_has_device_counter(plan)) return Status::Ok();
  SMLA_CUDA_CHECK(cudaMemsetAsync(workspace, 0, sizeof(uint32_t), static_cast<cudaStream_t>(stream)));
  return Status::Ok();
}

}  // namespace smla
