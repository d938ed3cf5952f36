// library_kernel_ptx_version: which compiled form of the library's kernels the driver loads on a device,
// asked of an empty kernel built with the same CUDA architectures as every other library kernel.
#include <cuda_runtime.h>

#include "cuda/common/device_scope.h"
#include "cuda/common/programmatic_launch.h"

namespace smla::detail {

namespace {

__global__ void programmatic_launch_probe_kernel() {}

}  // namespace

int library_kernel_ptx_version(int device) {
  // cudaFuncGetAttributes answers for the current device.
  const DeviceScope scope(device);
  if (scope.error() != cudaSuccess) return 0;
  cudaFuncAttributes attributes = {};
  if (cudaFuncGetAttributes(&attributes, programmatic_launch_probe_kernel) != cudaSuccess) {
    (void)cudaGetLastError();  // a failed query is not the caller's error
    return 0;
  }
  return attributes.ptxVersion;
}

}  // namespace smla::detail
