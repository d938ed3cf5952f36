// run_decode_cuda: the tensor-core backend's entry (src/common/backend_entry.h). One decode launch, plus
// the combine launch when the plan splits the KV tiles; nothing else (CUDA-graph friendly).
#include <cuda_runtime.h>

#include <atomic>
#include <string>

#include "common/backend_entry.h"
#include "common/split_grid.h"
#include "cuda/combine/kernel.h"
#include "cuda/decode/config.h"
#include "cuda/decode/config_sm90.h"
#include "cuda/decode/kernel.h"

namespace smla::detail {

namespace decode {
namespace {
std::atomic<Compact32Gather> compact32_gather{Compact32Gather::kBySchedule};
}  // namespace

void set_compact32_gather(Compact32Gather gather) { compact32_gather.store(gather); }

bool compact32_runs_register_gather(const Plan& plan) {
  switch (compact32_gather.load(std::memory_order_relaxed)) {
    case Compact32Gather::kStaging:
      return false;
    case Compact32Gather::kRegisters:
      return true;
    case Compact32Gather::kBySchedule:
    default:
      return plan.register_gather();
  }
}
}  // namespace decode

Status run_decode_cuda(const Plan& plan, const DecodeParams& params, void* stream) {
  const cudaStream_t cuda_stream = static_cast<cudaStream_t>(stream);
  // The kernel the planner chose from the device's properties (decode/kernel_choice.cpp); its shared
  // memory fits the device, and the split schedule in params was made for it.
  switch (static_cast<DecodeKernel>(plan.kernel_id())) {
    case DecodeKernel::kSm90Heads64:
      SMLA_RETURN_IF_ERROR(decode::launch_sparse_decode_heads64_sm90(params, plan.device(), cuda_stream));
      // The plan's clusters (2..kMaxClusterSplits splits) combine the splits inside the kernel.
      if (params.cluster_combine != 0) return Status::Ok();
      break;
    case DecodeKernel::kMmaHeads64:
      SMLA_RETURN_IF_ERROR(decode::launch_sparse_decode_heads64(params, plan.device(), cuda_stream));
      break;
    case DecodeKernel::kCompactHeads32:
      // Two builds of one kernel: the register gather for calls whose CTAs walk many tiles (the plan's pick).
      SMLA_RETURN_IF_ERROR(
          decode::compact32_runs_register_gather(plan)
              ? decode::launch_sparse_decode_compact32_registers(params, plan.device(), cuda_stream)
              : decode::launch_sparse_decode_compact32(params, plan.device(), cuda_stream));
      break;
    case DecodeKernel::kCompactHeads16:
      SMLA_RETURN_IF_ERROR(decode::launch_sparse_decode_compact16(params, plan.device(), cuda_stream));
      break;
    case DecodeKernel::kNone:
    default:
      return Status::Internal(std::string("plan has no tensor-core kernel (kernel '") + plan.kernel_name() +
                              "')");
  }
  // The split parts' partials (the body's and the tail's, common/split_grid.h) through the combine kernel.
  if (call_has_split_part(params.body_rows, params.body_splits, params.num_splits))
    SMLA_RETURN_IF_ERROR(launch_split_combine(params, plan.device(), cuda_stream));
  return Status::Ok();
}

}  // namespace smla::detail
