// library_kernel_ptx_version: which compiled form of the library's kernels the driver loads on a device,
// asked of an empty kernel built with the same CUDA architectures as every other library kernel.
#include <cuda_runtime.h>

#include "cuda/common/programmatic_launch.h"

namespace smla::detail {

namespace {

__global__ void programmatic_launch_probe_kernel() {}

}  // namespace

int library_kernel_ptx_version(int device) {
  int current = -1;
  if (cudaGetDevice(&current) != cudaSuccess) {
    (void)cudaGetLastError();  // a failed query is not the caller's error
    return 0;
  }
  // cudaFuncGetAttributes answers for the current device.
  if (current != device && cudaSetDevice(device) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  cudaFuncAttributes attributes = {};
  const bool queried = cudaFuncGetAttributes(&attributes, programmatic_launch_probe_kernel) == cudaSuccess;
  if (current != device) (void)cudaSetDevice(current);
  if (!queried) {
    (void)cudaGetLastError();
    return 0;
  }
  return attributes.ptxVersion;
}

}  // namespace smla::detail
