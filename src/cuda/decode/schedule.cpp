// Split-KV schedule of the tensor-core backend (host heuristic, kept apart from device code).
//
// A CTA handles one (query row, head block); with few rows the grid leaves SMs idle, so the row's 64-token
// tiles are split across CTAs. The kernels run one CTA per SM and every CTA of a launch has the same
// number of tiles, so the launch takes waves * (tiles per split + fixed cost) tile times, where waves =
// ceil(CTAs / SMs) and the fixed cost (Q load, pipeline fill, epilogue) is about one tile. Splits are
// combined either by the combine kernel, which reads back fp32 partials (2 KiB + lse per row, head and
// split; charged in tile times from the DRAM an SM moves in one tile time, plus the second launch), or,
// on the sm_90a kernel with at most kMaxClusterSplits splits, inside the kernel's clusters (a small fixed
// cost). We pick the split count with the lowest cost (fewest splits on ties), never leaving a split
// statically empty.
#include <algorithm>

#include "common/backend_entry.h"
#include "cuda/decode/config.h"
#include "cuda/decode/config_sm90.h"

namespace smla::detail {

namespace {
int ceil_div(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }
}  // namespace

SplitSchedule plan_cuda_decode_splits(const DecodeShape& shape, const CudaDeviceInfo& device,
                                      const KernelChoice& kernel, int requested_splits) {
  constexpr int kTileTokens = decode::DecodeConfigHeads64::kTileTokens;
  SplitSchedule schedule;
  schedule.total_tiles =
      ceil_div(shape.topk, kTileTokens) + ceil_div(std::max(shape.extra_topk, 0), kTileTokens);
  schedule.head_block = kernel.head_block;
  // The call runs the warp-specialized kernel (else a serialized mma.sync kernel).
  const bool sm90_kernel = kernel.kernel == DecodeKernel::kSm90Heads64;
  const int total_tiles = std::max(schedule.total_tiles, 1);

  int num_splits = 1;
  if (requested_splits > 0) {
    num_splits = std::clamp(requested_splits, 1, total_tiles);
  } else if (device.sm_count > 0) {
    constexpr double kFixedCostTiles = 1;
    // DRAM bytes an SM moves in one tile time (~22 GB/s per SM on an H100): the serialized kernels take
    // ~7 us a tile, the warp-specialized one ~2.5 us.
    const double partial_bytes_per_sm_tile = (sm90_kernel ? 56.0 : 160.0) * 1024;
    // The combine kernel's launch and drain in tile times, and the in-cluster combine (stage, three
    // cluster barriers, the distributed sum). On the sm_90a kernel partials that fit the L2 with room to
    // spare (<= 20 MB written) are read back from it: charged a tenth (flash-c4 b=8: 10 splits + combine
    // measured 20.2 us against 23.0 for 5-CTA clusters of 2 tiles).
    const double combine_launch_tiles = sm90_kernel ? 0.3 : 0.0;
    constexpr double kClusterCombineTiles = 0.4;
    constexpr double kL2ResidentPartialBytes = 20.0 * 1024 * 1024;
    constexpr double kL2ResidentPartialFactor = 0.1;
    constexpr double kPartialBytesPerRowHeadSplit = 2.0 * (kHeadDim * 4 + 4);  // written + read back
    const int64_t query_rows = static_cast<int64_t>(shape.batch) * shape.seq_q;
    const int64_t ctas_per_split = query_rows * ceil_div(shape.num_heads, schedule.head_block);
    double best_cost = -1;
    for (int splits = 1; splits <= total_tiles; ++splits) {
      const int tiles_per_split = ceil_div(total_tiles, splits);
      if (ceil_div(total_tiles, tiles_per_split) != splits) continue;  // same as a smaller count
      int64_t waves = ceil_div(ctas_per_split * splits, device.sm_count);
      double combine_tiles = 0.0;
      if (splits > 1 && sm90_kernel && decode::sm90_combines_in_cluster(splits)) {
        combine_tiles = kClusterCombineTiles;
        // One cluster per (row, head block); GPC boundaries leave fewer resident clusters than
        // sm_count / splits (e.g. 4-CTA clusters: a second wave at 128 CTAs on an H100).
        const int resident = device.max_active_clusters[splits];
        if (resident > 0) waves = std::max(waves, static_cast<int64_t>(ceil_div(ctas_per_split, resident)));
      } else if (splits > 1) {
        const double partial_bytes =
            static_cast<double>(query_rows) * shape.num_heads * splits * kPartialBytesPerRowHeadSplit;
        const double l2_factor =
            sm90_kernel && partial_bytes / 2 <= kL2ResidentPartialBytes ? kL2ResidentPartialFactor : 1.0;
        combine_tiles =
            combine_launch_tiles + l2_factor * partial_bytes / device.sm_count / partial_bytes_per_sm_tile;
      }
      const double cost = static_cast<double>(waves) * (tiles_per_split + kFixedCostTiles) + combine_tiles;
      if (best_cost < 0 || cost < best_cost) {
        best_cost = cost;
        num_splits = splits;
      }
    }
  }
  schedule.tiles_per_split = ceil_div(total_tiles, num_splits);
  schedule.num_splits = ceil_div(total_tiles, schedule.tiles_per_split);
  return schedule;
}

}  // namespace smla::detail
