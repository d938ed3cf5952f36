// The warp-specialized sm_90a kernel (kernel_sm90.cuh): 64 heads per CTA. Built in every architecture
// pass, but only the sm_90a pass emits its instructions (the others compile a trap); the launcher runs
// it only on a compute capability 9.0 device whose loaded binary for it is the sm_90 one.
#include <atomic>
#include <string>

#include "common/split_grid.h"
#include "cuda/common/cuda_check.h"
#include "cuda/common/device_scope.h"
#include "cuda/common/shared_memory_limit.h"
#include "cuda/decode/kernel.h"
#include "cuda/decode/kernel_sm90.cuh"
#include "cuda/decode/launch_config.h"

namespace smla::detail::decode {

namespace {
std::atomic<bool> hopper_decode_enabled{true};
}  // namespace

void set_hopper_decode_enabled(bool enabled) { hopper_decode_enabled.store(enabled); }

bool hopper_decode_available(int device) {
  if (!hopper_decode_enabled.load(std::memory_order_relaxed)) return false;
  static std::atomic<uint64_t> known{0}, available{0};  // bit d: device d answered / can run it (d < 64)
  if (device < 0 || device >= 64) return false;
  const uint64_t bit = uint64_t{1} << device;
  if ((known.load(std::memory_order_acquire) & bit) == 0) {
    int major = 0, minor = 0;
    cudaFuncAttributes attributes = {};
    const DeviceScope scope(device);  // the kernel's attributes are the current device's
    const bool queried =
        scope.error() == cudaSuccess &&
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess &&
        cudaFuncGetAttributes(&attributes, sparse_mla_decode_sm90_kernel<false>) == cudaSuccess;
    if (!queried) {
      (void)cudaGetLastError();  // a failed query is not the caller's error
      return false;
    }
    if (sm90_kernel_binary_usable(major, minor, attributes.binaryVersion, attributes.ptxVersion))
      available.fetch_or(bit, std::memory_order_acq_rel);
    known.fetch_or(bit, std::memory_order_acq_rel);
  }
  return (available.load(std::memory_order_acquire) & bit) != 0;
}

namespace {

template <bool ClusterCombine>
Status ensure_sm90_kernel_configured(int device) {
  return ensure_shared_memory_limit<sparse_mla_decode_sm90_kernel<ClusterCombine>>(
      device, DecodeConfigSm90::kSharedBytes);
}

}  // namespace

int sm90_max_active_clusters(int device, int cluster_size) {
  if (device < 0 || device >= 64 || cluster_size < 2 || cluster_size > kMaxClusterSplits) return 0;
  static std::atomic<int> known[64][kMaxClusterSplits + 1] = {};  // value + 1; 0 = not asked yet
  const int cached = known[device][cluster_size].load(std::memory_order_acquire);
  if (cached != 0) return cached - 1;
  int clusters = 0;
  const DeviceScope scope(device);  // the opt-in and the occupancy query are the current device's
  if (scope.error() == cudaSuccess && ensure_sm90_kernel_configured<true>(device).ok()) {
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(static_cast<unsigned>(cluster_size * 132), 1);
    config.blockDim = dim3(DecodeConfigSm90::kThreads);
    config.dynamicSmemBytes = DecodeConfigSm90::kSharedBytes;
    cudaLaunchAttribute attribute = {};
    attribute.id = cudaLaunchAttributeClusterDimension;
    attribute.val.clusterDim.x = static_cast<unsigned>(cluster_size);
    attribute.val.clusterDim.y = 1;
    attribute.val.clusterDim.z = 1;
    config.attrs = &attribute;
    config.numAttrs = 1;
    if (cudaOccupancyMaxActiveClusters(&clusters, sparse_mla_decode_sm90_kernel<true>, &config) !=
        cudaSuccess) {
      (void)cudaGetLastError();  // a failed query is not the caller's error
      clusters = 0;
    }
  }
  known[device][cluster_size].store(clusters + 1, std::memory_order_release);
  return clusters;
}

Status launch_sparse_decode_heads64_sm90(const DecodeParams& params, int device, cudaStream_t stream) {
  using Config = DecodeConfigSm90;
  DecodeLaunch launch(params, Config::kHeadBlock, Config::kThreads, Config::kSharedBytes, device, stream);
  DecodeParams placed = params;
  set_split_grid_divisors(placed, Config::kHeadBlock);
  if (params.cluster_combine != 0 && !sm90_combines_in_cluster(params.num_splits)) {
    return Status::Internal("sm90-h64: a cluster combine of " + std::to_string(params.num_splits) +
                            " splits (at most " + std::to_string(kMaxClusterSplits) + " CTAs a cluster)");
  }
  if (params.cluster_combine != 0 && params.body_rows != 0) {
    return Status::Internal(
        "sm90-h64: a cluster combine with a body and a tail split (every row's splits are one cluster)");
  }
  if (params.cluster_combine == 0) {
    SMLA_RETURN_IF_ERROR(ensure_sm90_kernel_configured<false>(device));
    SMLA_CUDA_CHECK(cudaLaunchKernelEx(launch.config(), sparse_mla_decode_sm90_kernel<false>, placed));
    return Status::Ok();
  }
  // One cluster per row: its splits combine inside the kernel.
  launch.set_cluster_size(params.num_splits);
  SMLA_RETURN_IF_ERROR(ensure_sm90_kernel_configured<true>(device));
  SMLA_CUDA_CHECK(cudaLaunchKernelEx(launch.config(), sparse_mla_decode_sm90_kernel<true>, placed));
  return Status::Ok();
}

}  // namespace smla::detail::decode
