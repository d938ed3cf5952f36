// Turning CUDA runtime errors into smla::Status, with the failing call's file:line.
//
// Every CUDA runtime call and every kernel launch in the library goes through one of these macros, so a
// failure surfaces as SMLA_STATUS_CUDA_ERROR at the API instead of being silently dropped (the library
// never calls exit() or abort()). Host-only: include from .cpp files or the host side of .cu files.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "smla/status.h"

namespace smla::detail {

// Builds the CudaError status for a failed runtime call: "<file>:<line>: <call> failed: <name>: <text>".
inline Status cuda_error_status(cudaError_t error, const char* call_text, const char* file, int line) {
  std::string message = std::string(file) + ":" + std::to_string(line) + ": " + call_text +
                        " failed: " + cudaGetErrorName(error) + ": " + cudaGetErrorString(error);
  return Status::CudaError(std::move(message));
}

}  // namespace smla::detail

// Evaluates a cudaError_t expression; on failure returns a CudaError Status from the enclosing function
// (which must return smla::Status).
#define SMLA_CUDA_CHECK(expr)                                                                \
  do {                                                                                       \
    const cudaError_t smla_cuda_error_ = (expr);                                             \
    if (smla_cuda_error_ != cudaSuccess) {                                                   \
      return ::smla::detail::cuda_error_status(smla_cuda_error_, #expr, __FILE__, __LINE__); \
    }                                                                                        \
  } while (0)

// Checks the launch just issued (bad grid, too much shared memory, missing kernel image); kernel_name is
// a string literal used in the message. Launch errors are only reported through cudaGetLastError, which
// also clears them so they cannot leak into the next unrelated check. Does not synchronize: the decode
// run path must stay free of host syncs.
#define SMLA_CUDA_CHECK_LAUNCH(kernel_name)                                                            \
  do {                                                                                                 \
    const cudaError_t smla_launch_error_ = cudaGetLastError();                                         \
    if (smla_launch_error_ != cudaSuccess) {                                                           \
      return ::smla::detail::cuda_error_status(smla_launch_error_, "launch of " kernel_name, __FILE__, \
                                               __LINE__);                                              \
    }                                                                                                  \
  } while (0)
