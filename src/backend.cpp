// Backend names and the choice of backend: an explicit request wins, AUTO consults SMLA_BACKEND and
// then the hardware.
#include "smla/backend.h"

#include <cuda_runtime.h>

#include <cstdlib>
#include <string>

#include "common/backend_entry.h"

namespace smla {
namespace {

constexpr const char* kValidBackendNames = "auto, cpu, cuda-ref, cuda";
// Both CUDA backends use bf16 mma.sync and cp.async, which need sm_80 or newer.
constexpr int kMinComputeCapability = 80;

bool is_cuda_backend(Backend backend) {
  return backend == SMLA_BACKEND_CUDA || backend == SMLA_BACKEND_CUDA_REF;
}

// A usable device for an explicit CUDA request: the requested ordinal (or the current device) exists and
// is sm_80+. The message says which of these failed.
Status check_cuda_device_usable(Backend backend, int device) {
  detail::CudaDeviceInfo info;
  const Status query = detail::query_cuda_device(device, &info);
  if (!query.ok()) {
    return Status::NoDevice(std::string("backend '") + backend_name(backend) +
                            "' needs a CUDA device: " + query.message());
  }
  if (info.compute_capability < kMinComputeCapability) {
    return Status::NoDevice(std::string("backend '") + backend_name(backend) +
                            "' needs compute capability >= " + std::to_string(kMinComputeCapability) +
                            "; device " + std::to_string(info.ordinal) + " has " +
                            std::to_string(info.compute_capability));
  }
  return Status::Ok();
}

}  // namespace

const char* backend_name(Backend backend) {
  switch (backend) {
    case SMLA_BACKEND_AUTO:
      return "auto";
    case SMLA_BACKEND_CPU:
      return "cpu";
    case SMLA_BACKEND_CUDA_REF:
      return "cuda-ref";
    case SMLA_BACKEND_CUDA:
      return "cuda";
  }
  return "unknown";
}

Status parse_backend(std::string_view name, Backend* backend) {
  if (backend == nullptr) return Status::InvalidArgument("backend must not be null");
  for (Backend candidate : {SMLA_BACKEND_AUTO, SMLA_BACKEND_CPU, SMLA_BACKEND_CUDA_REF, SMLA_BACKEND_CUDA}) {
    if (name == backend_name(candidate)) {
      *backend = candidate;
      return Status::Ok();
    }
  }
  return Status::InvalidArgument("unknown backend '" + std::string(name) +
                                 "'; valid names: " + kValidBackendNames);
}

bool cuda_device_available() {
  int device_count = 0;
  if (cudaGetDeviceCount(&device_count) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: clear the sticky error
    return false;
  }
  for (int ordinal = 0; ordinal < device_count; ++ordinal) {
    int major = 0;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, ordinal) == cudaSuccess &&
        major * 10 >= kMinComputeCapability) {
      return true;
    }
  }
  cudaGetLastError();
  return false;
}

Status resolve_backend(int32_t requested, int device, Backend* resolved) {
  if (resolved == nullptr) return Status::InvalidArgument("resolved must not be null");
  // Checked as an integer before the conversion: an out-of-range enum value is undefined behaviour.
  if (requested < SMLA_BACKEND_AUTO || requested > SMLA_BACKEND_CUDA) {
    return Status::InvalidArgument("backend must be one of " + std::string(kValidBackendNames) + " (got " +
                                   std::to_string(requested) + ")");
  }
  Backend choice = static_cast<Backend>(requested);
  bool from_environment = false;
  if (choice == SMLA_BACKEND_AUTO) {
    // Only AUTO reads the environment: an explicit request in code must not be overridden by it.
    const char* env_value = std::getenv("SMLA_BACKEND");
    if (env_value != nullptr && env_value[0] != '\0') {
      Backend from_env = SMLA_BACKEND_AUTO;
      if (!parse_backend(env_value, &from_env).ok()) {
        return Status::InvalidArgument(std::string("SMLA_BACKEND='") + env_value +
                                       "' is not a backend; valid names: " + kValidBackendNames);
      }
      choice = from_env;
      from_environment = choice != SMLA_BACKEND_AUTO;
    }
  }
  if (choice == SMLA_BACKEND_AUTO) {
    *resolved = cuda_device_available() ? SMLA_BACKEND_CUDA : SMLA_BACKEND_CPU;
    return Status::Ok();
  }
  if (is_cuda_backend(choice)) {
    const Status usable = check_cuda_device_usable(choice, device);
    if (!usable.ok()) {
      return from_environment ? Status::NoDevice("SMLA_BACKEND=" + std::string(backend_name(choice)) + ": " +
                                                 usable.message())
                              : usable;
    }
  }
  *resolved = choice;
  return Status::Ok();
}

}  // namespace smla
