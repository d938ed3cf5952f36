// Split-KV schedule of the tensor-core backend (host heuristic, kept apart from device code).
//
// A CTA handles one (query row, head block); with few rows the grid leaves SMs idle, so the row's 64-token
// tiles are split across CTAs. We pick the fewest splits that fill the device, keep >= 2 tiles per split
// where possible (a split costs a partial write + combine read), and never leave a split statically empty.
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
  schedule.head_block = decode::head_block_for(shape.num_heads);
  schedule.total_tiles =
      ceil_div(shape.topk, kTileTokens) + ceil_div(std::max(shape.extra_topk, 0), kTileTokens);
  const int total_tiles = std::max(schedule.total_tiles, 1);

  int num_splits = 1;
  if (requested_splits > 0) {
    num_splits = std::clamp(requested_splits, 1, total_tiles);
  } else {
    const int64_t ctas =
        static_cast<int64_t>(shape.batch) * shape.seq_q * ceil_div(shape.num_heads, schedule.head_block);
    const int max_splits = std::max(1, total_tiles / 2);  // >= 2 tiles per split when possible
    if (device.sm_count > 0 && ctas < device.sm_count) {
      num_splits = std::min(ceil_div(device.sm_count, ctas), max_splits);
    }
  }
  schedule.tiles_per_split = ceil_div(total_tiles, num_splits);
  schedule.num_splits = ceil_div(total_tiles, schedule.tiles_per_split);
  return schedule;
}

}  // namespace smla::detail
