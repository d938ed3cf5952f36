// Split-KV schedule of the tensor-core backend (host heuristic, kept apart from device code).
//
// A CTA handles one (query row, head block); with few rows the grid leaves SMs idle, so the row's 64-token
// tiles are split across CTAs. The kernel runs one CTA per SM and every CTA of a launch has the same
// number of tiles, so the launch takes waves * (tiles per split + fixed cost) tile times, where waves =
// ceil(CTAs / SMs) and the fixed cost (Q load, pipeline fill, epilogue) is about one tile. More than one
// split also writes fp32 partials (2 KiB + lse per row, head and split) that the combine reads back; that
// traffic is charged in tile times (an SM moves ~160 KiB of DRAM traffic in one tile time on an H100:
// ~7 us x ~22 GB/s per SM), so a call whose partials outweigh its KV (flash-swa b=64: 2 tiles per row,
// 16.8 MB of partials for 4.8 MB of KV) stays unsplit. We pick the split count with the lowest cost
// (fewest splits on ties), never leaving a split statically empty.
#include <algorithm>

#include "common/backend_entry.h"
#include "cuda/decode/config.h"

namespace smla::detail {

namespace {
int ceil_div(int64_t a, int64_t b) { return static_cast<int>((a + b - 1) / b); }
}  // namespace

SplitSchedule plan_cuda_decode_splits(const DecodeShape& shape, const CudaDeviceInfo& device,
                                      int requested_splits) {
  constexpr int kTileTokens = decode::DecodeConfigHeads64::kTileTokens;
  SplitSchedule schedule;
  schedule.total_tiles =
      ceil_div(shape.topk, kTileTokens) + ceil_div(std::max(shape.extra_topk, 0), kTileTokens);
  schedule.head_block = decode::head_block_for(
      shape.num_heads, static_cast<int64_t>(shape.batch) * shape.seq_q, schedule.total_tiles);
  const int total_tiles = std::max(schedule.total_tiles, 1);

  int num_splits = 1;
  if (requested_splits > 0) {
    num_splits = std::clamp(requested_splits, 1, total_tiles);
  } else if (device.sm_count > 0) {
    constexpr double kFixedCostTiles = 1;
    constexpr double kPartialBytesPerSmTile = 160.0 * 1024;
    constexpr double kPartialBytesPerRowHeadSplit = 2.0 * (kHeadDim * 4 + 4);  // written + read back
    const int64_t query_rows = static_cast<int64_t>(shape.batch) * shape.seq_q;
    const int64_t ctas_per_split = query_rows * ceil_div(shape.num_heads, schedule.head_block);
    double best_cost = -1;
    for (int splits = 1; splits <= total_tiles; ++splits) {
      const int tiles_per_split = ceil_div(total_tiles, splits);
      if (ceil_div(total_tiles, tiles_per_split) != splits) continue;  // same as a smaller count
      const int64_t waves = ceil_div(ctas_per_split * splits, device.sm_count);
      const double partial_tiles = splits > 1 ? static_cast<double>(query_rows) * shape.num_heads * splits *
                                                    kPartialBytesPerRowHeadSplit / device.sm_count /
                                                    kPartialBytesPerSmTile
                                              : 0.0;
      const double cost = static_cast<double>(waves) * (tiles_per_split + kFixedCostTiles) + partial_tiles;
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
