// The launch configuration every decode kernel shares: one CTA per (split, head block, query row), a
// one-dimensional grid of b * s_q * ceil(h / head block) * num_splits CTAs ordered row, head block, split
// (cta_coordinates in tile_common.cuh), launched as a programmatic dependent of the previous kernel on the
// stream where the device supports it (programmatic_launch.h), optionally in clusters.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common/decode_params.h"
#include "common/split_grid.h"
#include "cuda/common/programmatic_launch.h"

namespace smla::detail::decode {

class DecodeLaunch {
 public:
  DecodeLaunch(const DecodeParams& params, int head_block, int threads, size_t shared_bytes, int device,
               cudaStream_t stream) {
    const int64_t rows = static_cast<int64_t>(params.batch) * params.seq_q;
    // A row's head blocks are adjacent in launch order, so they run at the same time: the first to load a
    // KV row brings it into L2 for the others. (With the head block in y, the second head block of every
    // row ran a wave later and read the row from DRAM again: docs/perf.md, v51.)
    const int64_t head_blocks = head_block_count(params.num_heads, head_block);
    // The body's rows in body_splits splits, the tail's in num_splits (common/split_grid.h).
    config_.gridDim = dim3(static_cast<unsigned>(
        decode_grid_ctas(rows, head_blocks, params.body_rows, params.body_splits, params.num_splits)));
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
