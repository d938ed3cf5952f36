// Device-side test support: RAII device buffers, a DecodeProblem uploaded to the device with guard
// regions around out and lse (to catch stray writes), and a plan with its zeroed workspace.
//
// Functions return an empty string on success and a description of what failed otherwise, so they work
// on worker threads (no gtest assertions here); tests wrap them in ASSERT_EQ(..., "").
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/test_support.h"
#include "smla/decode.h"

// Asserts (gtest) that a CUDA call returned cudaSuccess, naming the call and the error. For test
// bodies only; the functions below return failures as strings instead.
#define ASSERT_CUDA_OK(expr)                                                                               \
  do {                                                                                                     \
    const cudaError_t assert_cuda_error_ = (expr);                                                         \
    ASSERT_EQ(assert_cuda_error_, cudaSuccess) << #expr << ": " << cudaGetErrorString(assert_cuda_error_); \
  } while (0)

// In a function returning a failure string: returns the failure of `expr` (a string) unless it is empty.
#define RETURN_IF_FAILED(expr)              \
  do {                                      \
    std::string failure_ = (expr);          \
    if (!failure_.empty()) return failure_; \
  } while (0)

namespace smla::test {

// One cudaMalloc'ed buffer, freed on destruction. Move-only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;

  // Frees any previous allocation; 0 bytes still allocates 16 so the pointer is non-null.
  std::string allocate(size_t bytes);
  void reset();
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// Empty on success, else "<what>: <CUDA error string>".
std::string cuda_failure(cudaError_t error, const std::string& what);

// Copies `bytes` host bytes to a (re)allocated buffer and waits, so work on non-blocking streams sees it.
std::string upload_bytes(const void* host, size_t bytes, DeviceBuffer* device, const std::string& what);
template <typename T>
std::string upload_vector(const std::vector<T>& host, DeviceBuffer* device, const std::string& what) {
  return upload_bytes(host.data(), host.size() * sizeof(T), device, what);
}
// The whole pool of a host cache (unused slots and page padding included).
std::string upload_pool(const HostCache& cache, DeviceBuffer* device, const std::string& what);

// Like upload_bytes, but into the existing buffer, which must hold exactly `bytes` (a captured graph or
// an args struct keeps pointing at it); a size mismatch is a failure, not a reallocation.
std::string upload_bytes_in_place(const void* host, size_t bytes, const DeviceBuffer& device,
                                  const std::string& what);
template <typename T>
std::string upload_vector_in_place(const std::vector<T>& host, const DeviceBuffer& device,
                                   const std::string& what) {
  return upload_bytes_in_place(host.data(), host.size() * sizeof(T), device, what);
}
std::string upload_pool_in_place(const HostCache& cache, const DeviceBuffer& device, const std::string& what);

// Bytes of guard before and after out and lse; filled with kGuardByte, checked by guards_intact.
inline constexpr size_t kGuardBytes = 4096;
inline constexpr uint8_t kGuardByte = 0xA5;

// A problem's inputs on the device and outputs with guard regions; `args` point at them with
// contiguous strides.
struct DeviceProblem {
  DeviceBuffer q, main_pool, indices, topk_length, extra_pool, extra_indices, extra_topk_length, sink;
  DeviceBuffer out_with_guards, lse_with_guards;
  DecodeArgs args{};
  size_t out_elements = 0, lse_elements = 0;
};
std::string upload_problem(const DecodeProblem& problem, DeviceProblem* device);

// Fills out and lse with 0xFF bytes (bf16/fp32 NaN) and rewrites the guard regions, on `stream`.
std::string poison_outputs(const DeviceProblem& device, cudaStream_t stream);

// Host copies of out and lse, compared bitwise (NaN payloads and signed zeros included).
struct HostOutputs {
  std::vector<uint16_t> out;
  std::vector<float> lse;
  bool bitwise_equal(const HostOutputs& other) const;
};
// Waits for the device, then copies out and lse (and checks nothing else).
std::string download_outputs(const DeviceProblem& device, HostOutputs* outputs);
// Empty when every guard byte around out and lse still holds kGuardByte, else where it does not.
std::string guards_intact(const DeviceProblem& device);

// A plan of `backend` for `shape` with its workspace, zeroed once (the device error counter).
struct DevicePlan {
  Plan plan;
  DeviceBuffer workspace;
};
// `max_shared_bytes` > 0 caps the plan's shared memory (options.max_shared_bytes; 101376 plans the 99 KB
// class).
std::string make_device_plan(const DecodeShape& shape, Backend backend, DevicePlan* device_plan,
                             int32_t max_shared_bytes = 0);

// make_device_plan, except that when the backend cannot serve `shape` on this device (make_plan says
// SMLA_STATUS_UNSUPPORTED, e.g. the tensor-core backend below sm_80) the failure starts with
// kUnsupportedPrefix, so tests can skip instead of failing (SMLA_DEVICE_PLAN_OR_SKIP).
inline constexpr char kUnsupportedPrefix[] = "unsupported: ";
std::string make_supported_device_plan(const DecodeShape& shape, Backend backend, DevicePlan* device_plan);

// Both pools again after their host bytes were edited, into the same buffers (the args point at them).
std::string reupload_pools(const DecodeProblem& problem, const DeviceProblem& device);

// Poisons the outputs, runs on `stream`, waits and downloads. Empty on success, else the failure.
std::string run_and_download(const DevicePlan& device_plan, const DeviceProblem& device, cudaStream_t stream,
                             HostOutputs* outputs);

}  // namespace smla::test

// In a test body: a DevicePlan from make_supported_device_plan; skips the test visibly when the backend
// cannot serve the shape here, fails it on any other failure.
#define SMLA_DEVICE_PLAN_OR_SKIP(shape, backend, device_plan)                  \
  do {                                                                         \
    const std::string smla_plan_failure_ =                                     \
        ::smla::test::make_supported_device_plan(shape, backend, device_plan); \
    if (smla_plan_failure_.rfind(::smla::test::kUnsupportedPrefix, 0) == 0)    \
      GTEST_SKIP() << smla_plan_failure_;                                      \
    ASSERT_EQ(smla_plan_failure_, "");                                         \
  } while (0)
