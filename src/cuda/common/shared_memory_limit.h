// The once-per-device opt-in that lets a kernel use more than 48 KiB of dynamic shared memory.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "cuda/common/cuda_check.h"

namespace smla::detail {

// cudaFuncSetAttribute(MaxDynamicSharedMemorySize) for `Kernel` on `device` (the current device), done on
// the first call per device and remembered, so the run path stays a bare launch.
template <auto Kernel>
Status ensure_shared_memory_limit(int device, size_t bytes) {
  static std::atomic<uint64_t> configured_devices{0};  // bit d: done for device d (d < 64)
  const uint64_t bit = device >= 0 && device < 64 ? (uint64_t{1} << device) : 0;
  if (bit != 0 && (configured_devices.load(std::memory_order_acquire) & bit) != 0) return Status::Ok();
  SMLA_CUDA_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  configured_devices.fetch_or(bit, std::memory_order_acq_rel);
  return Status::Ok();
}

}  // namespace smla::detail
