// DeviceScope: makes a CUDA device current for a C++ scope and gives the caller's device back at its end.
//
// Several runtime queries answer for the current device only (cudaFuncGetAttributes,
// cudaOccupancyMaxActiveClusters, cudaFuncSetAttribute), and the library remembers their answers per device.
// A plan may be made for a device that is not the caller's current one (PlanOptions::device), so every such
// query runs inside a DeviceScope for the device it answers for. The scope also relaxes the thread's
// stream-capture mode: the library may be entered while the caller captures a graph (the Python bindings plan
// on a first call), and these one-time queries and allocations are not part of the capture.
#pragma once

#include <cuda_runtime.h>

namespace smla::detail {

class DeviceScope {
 public:
  explicit DeviceScope(int device) {
    capture_mode_ = cudaStreamCaptureModeRelaxed;
    mode_exchanged_ = cudaThreadExchangeStreamCaptureMode(&capture_mode_) == cudaSuccess;
    if (cudaGetDevice(&previous_) != cudaSuccess) {
      (void)cudaGetLastError();  // no current device yet is not the caller's error
      previous_ = -1;
    }
    if (previous_ != device) {
      error_ = cudaSetDevice(device);
      switched_ = error_ == cudaSuccess;
      if (error_ != cudaSuccess) (void)cudaGetLastError();  // reported through error(), not left sticky
    }
  }
  ~DeviceScope() {
    // Only a switch is undone: a scope for the device already current costs no runtime call. Without a
    // current device before (previous_ < 0) the runtime's own default stays current.
    if (switched_ && previous_ >= 0) (void)cudaSetDevice(previous_);
    if (mode_exchanged_) (void)cudaThreadExchangeStreamCaptureMode(&capture_mode_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

  // cudaSuccess when the device is current for the scope.
  cudaError_t error() const { return error_; }

 private:
  cudaStreamCaptureMode capture_mode_;
  bool mode_exchanged_ = false;
  int previous_ = -1;
  bool switched_ = false;
  cudaError_t error_ = cudaSuccess;
};

}  // namespace smla::detail
