// Split-KV combine (spec sections 4-5): merges the fp32 partial outputs and natural-log partial lse of
// every split of a (query row, head) and applies the attention sink. Host declaration only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "common/decode_params.h"
#include "smla/status.h"

namespace smla::detail {

// The combine's grid: one block per (query row, head), each reading that pair's splits in turn. The split
// planner (cuda/decode/schedule.cpp) charges a combine of at most one block per SM by this count.
constexpr int64_t split_combine_blocks(int64_t query_rows, int num_heads) { return query_rows * num_heads; }

// The most splits a combine of few blocks (at most 512) loads in one batch, every split's loads in flight
// at once (the grouped kernel: 2 or 4 groups of threads, each waiting for its share of the splits). The
// planner's small-call half-tile splits stay within it.
constexpr int kMaxOneBatchSplits = 32;

// Reads params.partial_out / partial_lse (the split rows' [partial row][head], common/split_grid.h) and
// writes those rows' params.out (bf16) and params.lse. One launch on `stream` of `device` (the current
// device) for each split part of the call (the body's and the tail's: split_combine_rows), each a
// programmatic dependent of the kernel before it where the device supports it; no allocation, no host
// synchronization.
Status launch_split_combine(const DecodeParams& params, int device, cudaStream_t stream);

}  // namespace smla::detail
