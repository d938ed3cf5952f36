// The launch configuration every decode kernel shares: one CTA per (split, head block, query row), grid
// (b * s_q * num_splits, ceil(h / head block)), launched as a programmatic dependent of the previous kernel
// on the stream where the device supports it (programmatic_launch.h), optionally in clusters.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common/decode_params.h"
#include "cuda/common/programmatic_launch.h"

namespace smla::detail::decode {

class DecodeLaunch {
 public:
  DecodeLaunch(const DecodeParams& params, int head_block, int threads, size_t shared_bytes, int device,
               cudaStream_t stream) {
    const int64_t rows = static_cast<int64_t>(params.batch) * params.seq_q;
    config_.gridDim = dim3(static_cast<unsigned>(rows * params.num_splits),
                           static_cast<unsigned>((params.num_heads + head_block - 1) / head_block));
    config_.blockDim = dim3(static_cast<unsigned>(threads));
    config_.dynamicSmemBytes = shared_bytes;
    config_.stream = stream;
    config_.attrs = attributes_;
    if (device_has_programmatic_launch(device))
      attributes_[config_.numAttrs++] = programmatic_launch_attribute();
  }
  // config() points into this object: neither copied nor moved.
  DecodeLaunch(const DecodeLaunch&) = delete;
  DecodeLaunch& operator=(const DecodeLaunch&) = delete;

  // Clusters of `size` CTAs along x (the splits of a row are adjacent there).
  void set_cluster_size(int size) {
    cudaLaunchAttribute& cluster = attributes_[config_.numAttrs++];
    cluster.id = cudaLaunchAttributeClusterDimension;
    cluster.val.clusterDim.x = static_cast<unsigned>(size);
    cluster.val.clusterDim.y = 1;
    cluster.val.clusterDim.z = 1;
  }

  const cudaLaunchConfig_t* config() const { return &config_; }

 private:
  cudaLaunchConfig_t config_ = {};
  cudaLaunchAttribute attributes_[2] = {};
};

}  // namespace smla::detail::decode
