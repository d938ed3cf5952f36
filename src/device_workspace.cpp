// smla_device_workspace_create / _destroy (include/smla/device_workspace.h).
#include "smla/device_workspace.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <optional>
#include <string>

#include "cuda/common/device_scope.h"

namespace {

using smla::detail::DeviceScope;

smla_status_t fail(smla_status_t status, const std::string& text, char* message, size_t message_bytes) {
  if (message != nullptr && message_bytes > 0) std::snprintf(message, message_bytes, "%s", text.c_str());
  return status;
}

smla_status_t cuda_failure(cudaError_t error, const char* what, char* message, size_t message_bytes) {
  cudaGetLastError();  // not sticky: leave no trace for unrelated later checks
  return fail(SMLA_STATUS_CUDA_ERROR, std::string(what) + ": " + cudaGetErrorString(error), message,
              message_bytes);
}

// The device argument of create and destroy: checked, then made current for the caller's scope.
smla_status_t enter_device(int32_t device, std::optional<DeviceScope>& scope, char* message,
                           size_t message_bytes) {
  if (device < 0) {
    return fail(SMLA_STATUS_INVALID_ARGUMENT, "device must be >= 0 (got " + std::to_string(device) + ")",
                message, message_bytes);
  }
  scope.emplace(device);
  if (scope->error() != cudaSuccess)
    return cuda_failure(scope->error(), ("cudaSetDevice(device " + std::to_string(device) + ")").c_str(),
                        message, message_bytes);
  return SMLA_STATUS_OK;
}

}  // namespace

extern "C" {

smla_status_t smla_device_workspace_create(int32_t device, size_t bytes, void** workspace, char* message,
                                           size_t message_bytes) {
  if (workspace == nullptr)
    return fail(SMLA_STATUS_INVALID_ARGUMENT, "workspace must not be NULL", message, message_bytes);
  *workspace = nullptr;
  std::optional<DeviceScope> scope;
  if (const smla_status_t status = enter_device(device, scope, message, message_bytes);
      status != SMLA_STATUS_OK)
    return status;
  void* memory = nullptr;
  cudaError_t error = cudaMalloc(&memory, bytes > 0 ? bytes : 16);
  if (error != cudaSuccess) return cuda_failure(error, "cudaMalloc(workspace)", message, message_bytes);
  // A private stream, neither the legacy stream nor one being captured: the zeroing runs now.
  cudaStream_t stream = nullptr;
  error = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  if (error == cudaSuccess) {
    error = cudaMemsetAsync(memory, 0, bytes > 0 ? bytes : 16, stream);
    const cudaError_t sync_error = cudaStreamSynchronize(stream);
    if (error == cudaSuccess) error = sync_error;
    cudaStreamDestroy(stream);
  }
  if (error != cudaSuccess) {
    cudaFree(memory);
    return cuda_failure(error, "zeroing the workspace", message, message_bytes);
  }
  *workspace = memory;
  return SMLA_STATUS_OK;
}

smla_status_t smla_device_workspace_destroy(int32_t device, void* workspace, char* message,
                                            size_t message_bytes) {
  if (workspace == nullptr) return SMLA_STATUS_OK;
  std::optional<DeviceScope> scope;
  if (const smla_status_t status = enter_device(device, scope, message, message_bytes);
      status != SMLA_STATUS_OK)
    return status;
  const cudaError_t error = cudaFree(workspace);
  if (error != cudaSuccess) return cuda_failure(error, "cudaFree(workspace)", message, message_bytes);
  return SMLA_STATUS_OK;
}

}  // extern "C"
