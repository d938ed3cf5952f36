// The launchers dispatch.cpp calls, one per backend. Each receives fully validated params.
#pragma once

#include "common/decode_params.h"
#include "smla/decode.h"
#include "smla/status.h"

namespace smla::detail {

// CPU reference (src/cpu). Uses plan.options().cpu_precision and cpu_threads.
Status run_decode_cpu(const Plan& plan, const DecodeParams& params);

// CUDA oracle (src/cuda/decode_ref): fp32 scalar/warp math, no split (num_splits ignored).
Status run_decode_cuda_ref(const Plan& plan, const DecodeParams& params, void* stream);

// Tensor-core CUDA backend (src/cuda/decode): split-KV + combine as planned.
Status run_decode_cuda(const Plan& plan, const DecodeParams& params, void* stream);

// Device properties for the planner (src/cuda/common): false when no usable device.
struct CudaDeviceInfo {
  int ordinal = -1;
  int sm_count = 0;
  int compute_capability = 0;
  // The sm_90a warp-specialized decode kernel runs here (compute capability 9.0 and an sm_90a build);
  // it changes the planner's head block and split costs.
  bool warp_specialized_decode = false;
  // For that kernel: how many thread-block clusters of n CTAs (index n = 2..8) can be resident at once
  // (cudaOccupancyMaxActiveClusters; GPC boundaries make it less than sm_count / n). 0 = unknown.
  int max_active_clusters[9] = {};
};
Status query_cuda_device(int requested_ordinal, CudaDeviceInfo* info);

// Memory-space check of a pointer used by the validation layer: true when `ptr` is CUDA device (or
// managed) memory on `device`. Host-only builds always answer false.
bool pointer_is_device_memory(const void* ptr, int device);

}  // namespace smla::detail

namespace smla::detail {

// Split-KV schedule of the tensor-core backend (src/cuda/decode/schedule.cpp): how many CTAs share
// one (query row, head block) so that the grid fills the device. `requested_splits` > 0 forces the
// number of splits (clamped to [1, total_tiles]).
struct SplitSchedule {
  int num_splits = 1;
  int tiles_per_split = 0;
  int total_tiles = 0;
  int head_block = 64;  // heads per CTA the kernel will use for this shape
};
SplitSchedule plan_cuda_decode_splits(const DecodeShape& shape, const CudaDeviceInfo& device,
                                      int requested_splits);

}  // namespace smla::detail
