// Device queries the planner and the validation layer need (host code over the CUDA runtime).
#include <cuda_runtime.h>

#include <string>

#include "common/backend_entry.h"
#include "cuda/common/cuda_check.h"
#include "cuda/common/programmatic_launch.h"
#include "cuda/decode/config_sm90.h"
#include "cuda/decode/kernel.h"

namespace smla::detail {

Status query_cuda_device(int requested_ordinal, CudaDeviceInfo* info) {
  int device_count = 0;
  const cudaError_t count_error = cudaGetDeviceCount(&device_count);
  if (count_error != cudaSuccess || device_count == 0) {
    // A missing driver or GPU leaves a sticky "last error"; clear it so later checks start clean.
    cudaGetLastError();
    return Status::NoDevice(std::string("no CUDA device available") +
                            (count_error != cudaSuccess ? std::string(" (cudaGetDeviceCount: ") +
                                                              cudaGetErrorString(count_error) + ")"
                                                        : std::string()));
  }
  int ordinal = requested_ordinal;
  if (ordinal < 0) {
    SMLA_CUDA_CHECK(cudaGetDevice(&ordinal));
  }
  if (ordinal >= device_count) {
    return Status::NoDevice("options.device must be in -1.." + std::to_string(device_count - 1) + " (got " +
                            std::to_string(requested_ordinal) + ")");
  }
  int major = 0, minor = 0, sm_count = 0;
  SMLA_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, ordinal));
  SMLA_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, ordinal));
  SMLA_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count, cudaDevAttrMultiProcessorCount, ordinal));
  int max_shared_bytes = 0;
  SMLA_CUDA_CHECK(
      cudaDeviceGetAttribute(&max_shared_bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, ordinal));
  info->max_shared_bytes = max_shared_bytes;
  info->ordinal = ordinal;
  info->sm_count = sm_count;
  info->compute_capability = major * 10 + minor;
  info->warp_specialized_decode = decode::hopper_decode_available(ordinal);
  // Asks (and remembers) whether launches on this device may be programmatic at plan time, so that the
  // kernel-image query behind it never first runs inside a stream capture.
  (void)device_has_programmatic_launch(ordinal);
  if (info->warp_specialized_decode) {
    for (int size = 2; size <= decode::kMaxClusterSplits; ++size)
      info->max_active_clusters[size] = decode::sm90_max_active_clusters(ordinal, size);
  }
  return Status::Ok();
}

bool pointer_is_device_memory(const void* ptr, int device) {
  if (ptr == nullptr) return false;
  cudaPointerAttributes attributes{};
  if (cudaPointerGetAttributes(&attributes, ptr) != cudaSuccess) {
    // No driver, no device, or an unrecognised pointer on old runtimes: not device memory. Clear the
    // error so it does not surface from an unrelated later check.
    cudaGetLastError();
    return false;
  }
  const bool device_accessible =
      attributes.type == cudaMemoryTypeDevice || attributes.type == cudaMemoryTypeManaged;
  return device_accessible && attributes.device == device;
}

}  // namespace smla::detail
