// The call geometry the b = 1 latency microbenchmarks (layer_chain_floor.cu, fresh_partials_read.cu)
// model: DSv4-Flash's C4 layer at b = 1 as the 16-head 99 KB-class kernel runs it (docs/perf.md, "Where a
// b = 1 call's time goes"): 4 head blocks of 16 heads, 10 splits, 512-dim fp32 partial rows.
#pragma once

namespace flash_c4_b1 {
inline constexpr int kSplits = 10;
inline constexpr int kHeadBlocks = 4;
inline constexpr int kHeadsPerBlock = 16;
inline constexpr int kHeads = kHeadBlocks * kHeadsPerBlock;
inline constexpr int kDims = 512;
}  // namespace flash_c4_b1
